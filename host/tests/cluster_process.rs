//! A 3-node cluster of `ramrod serve` processes on loopback: acknowledged
//! writes survive kill -9 of a follower and of the leader, a partitioned
//! leader and a full disk; a restarted or healed node catches up to the
//! same state.

use std::time::{Duration, Instant};

use ramrod::client::BatchCommand;
use ramrod::internals::harness::{ClusterSpec, Cut, ProcessCluster, SmallDisk};
use ramrod::{NodeId, Status};

const WAIT: Duration = Duration::from_secs(30);

/// A started 3-node cluster whose node configs end with `extra` (TOML), in a
/// temporary directory removed with it.
struct Cluster {
    procs: ProcessCluster,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Over mutual TLS (no cluster secret).
    fn tls() -> Cluster {
        Cluster::with_spec(ClusterSpec {
            tls: true,
            ..ClusterSpec::default()
        })
    }

    fn with_extra(extra: &str) -> Cluster {
        Cluster::with_spec(ClusterSpec {
            extra_toml: extra.into(),
            ..ClusterSpec::default()
        })
    }

    fn with_spec(spec: ClusterSpec) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut procs =
            ProcessCluster::new(env!("CARGO_BIN_EXE_ramrod").as_ref(), dir.path(), spec).unwrap();
        procs.start_all().unwrap();
        Cluster { procs, _dir: dir }
    }

    async fn leader(&self) -> NodeId {
        self.procs.leader(WAIT).await.expect("a leader within 30 s")
    }

    async fn status(&self, id: NodeId) -> Status {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.procs.status(id).await {
                return s;
            }
            assert!(Instant::now() < deadline, "node {id} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `key = value` through the cluster; returns its index.
    async fn put(&self, key: &str, value: &str) -> u64 {
        self.procs
            .put(key, value, WAIT)
            .await
            .unwrap_or_else(|e| panic!("write of {key} never acknowledged: {e}"))
            .index
    }

    /// Waits until node `id` has applied `index`; returns its status.
    async fn applied(&self, id: NodeId, index: u64) -> Status {
        self.procs
            .applied(id, index, WAIT)
            .await
            .unwrap_or_else(|| panic!("node {id} never applied {index}"))
    }

    /// Every pair under `prefix` in node `id`'s own state.
    async fn local_pairs(&self, id: NodeId, prefix: &str) -> Vec<(String, String)> {
        let pairs = self
            .procs
            .client(id)
            .list(prefix, None, 10_000, true)
            .await
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        pairs
            .kvs
            .iter()
            .map(|kv| (text(&kv.key), text(&kv.value)))
            .collect()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Over mutual TLS: the nodes authenticate each other by certificate alone.
#[test]
fn acknowledged_writes_survive_kill9_of_a_follower_and_of_the_leader() {
    rt().block_on(async {
        let mut c = Cluster::tls();
        let first = c.leader().await;
        for i in 0..40 {
            c.put(&format!("vm/{i:03}"), &format!("spec {i}")).await;
        }

        // kill -9 a follower; the other two keep acknowledging writes.
        let follower = (1..=3).find(|&i| i != first).unwrap();
        c.procs.kill(follower);
        for i in 40..80 {
            c.put(&format!("vm/{i:03}"), &format!("spec {i}")).await;
        }

        // kill -9 the leader; a new one is elected from the survivors once
        // the follower is back, and nothing acknowledged is lost.
        c.procs.start(follower).unwrap();
        let mut last = c.put("vm/080", "spec 80").await;
        let leader = c.leader().await;
        c.procs.kill(leader);
        for i in 81..100 {
            last = c.put(&format!("vm/{i:03}"), &format!("spec {i}")).await;
        }
        c.procs.start(leader).unwrap();

        let mut hashes = Vec::new();
        for id in 1..=3 {
            let s = c.applied(id, last).await;
            assert_eq!(s.keys, 100, "node {id}: {s:?}");
            assert!(
                s.recovery.discarded.is_none() && s.recovery.index_rebuilt.is_none(),
                "node {id}: a kill -9 is not damage: {:?}",
                s.recovery
            );
            hashes.push(s.state_hash);
        }
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
        let now = c.leader().await;
        let v = c.procs.client(now).get("vm/042").await.unwrap();
        assert_eq!(v.as_deref(), Some(&b"spec 42"[..]));
    });
}

/// kill -9 of the leader while it builds a snapshot, then while it purges:
/// no acknowledged write is lost, the log stays bounded, and the killed node
/// comes back from its snapshot chain plus the log tail.
#[test]
fn kill9_of_the_leader_during_a_snapshot_build_and_a_purge_loses_nothing() {
    rt().block_on(async {
        // Full snapshots every 300 entries of a state of a few MB: the
        // leader spends much of its time building, and purges often.
        let mut c = Cluster::with_extra(
            "[policy]\nname = \"entries\"\n\
             config = { snapshot_every = 300, keep_entries = 50, check_ms = 20, kind = \"full\" }\n",
        );
        c.leader().await;
        let big = "x".repeat(2_000);
        let mut acked: Vec<(String, String)> = Vec::new();
        for b in 0..20 {
            let leader = c.leader().await;
            let commands = (0..100)
                .map(|i| BatchCommand::Put {
                    key: format!("base/{b:02}/{i:03}"),
                    value: big.clone(),
                })
                .collect();
            c.procs.client(leader).batch(commands).await.unwrap();
            for i in 0..100 {
                acked.push((format!("base/{b:02}/{i:03}"), big.clone()));
            }
        }

        for (round, moment) in ["build", "purge"].into_iter().enumerate() {
            // A writer keeps writing while we watch the leader.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = {
                let clients: Vec<_> = (1..=3).map(|id| c.procs.client(id)).collect();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    let mut i = 0;
                    let mut target = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (k, v) = (format!("r{round}/{i:05}"), format!("value {i}"));
                        // Through whichever node answers; it leads to the
                        // leader. Retried until acknowledged.
                        let deadline = Instant::now() + WAIT;
                        while let Err(e) = clients[target % 3].put(&k, v.as_str()).await {
                            assert!(Instant::now() < deadline, "write of {k} never acknowledged: {e}");
                            target += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        done.push((k, v));
                        i += 1;
                    }
                    done
                })
            };
            let leader = c.leader().await;
            // Kill it during a build or purge after its first snapshot, so
            // it has a chain to come back from.
            let deadline = Instant::now() + Duration::from_secs(60);
            while c.status(leader).await.current_snapshot.is_none() {
                assert!(Instant::now() < deadline, "the leader never snapshotted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let before = c.status(leader).await.controller.purges;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = c.status(leader).await;
                let hit = match moment {
                    "build" => s.controller.building,
                    _ => s.controller.purges > before,
                };
                if hit {
                    break;
                }
                assert!(Instant::now() < deadline, "the leader never started a {moment}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            c.procs.kill(leader);
            // The survivors elect a leader and keep acknowledging writes.
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.procs.start(leader).unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            acked.extend(writer.await.unwrap());

            // Every node converges on every acknowledged write.
            let now = c.leader().await;
            let last = c.put(&format!("marker/{round}"), "m").await;
            acked.push((format!("marker/{round}"), "m".into()));
            let mut hashes = Vec::new();
            for id in 1..=3 {
                hashes.push(c.applied(id, last).await.state_hash);
            }
            assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{moment}: {hashes:?}");
            let back = c.applied(leader, last).await;
            assert!(
                back.recovery.snapshot_index.is_some(),
                "{moment}: node {leader} came back from a snapshot chain: {:?}",
                back.recovery
            );
            // A kill -9 is not damage: nothing was discarded or rebuilt.
            assert!(
                back.recovery.discarded.is_none() && back.recovery.index_rebuilt.is_none(),
                "{moment}: {:?}",
                back.recovery
            );
            for id in 1..=3 {
                let mut seen = std::collections::BTreeMap::new();
                for prefix in ["base/", "r0/", "r1/", "marker/"] {
                    seen.extend(c.local_pairs(id, prefix).await);
                }
                for (k, v) in &acked {
                    assert_eq!(seen.get(k), Some(v), "{moment}: node {id} lost {k}");
                }
            }
            // The log stays bounded on the leader.
            let s = c.status(now).await;
            assert!(
                s.log.entries < 2_000,
                "{moment}: the leader's log holds {}",
                s.log.entries
            );
        }
    });
}

/// A leader cut off from both peers (its packets dropped, through the fault
/// proxies) loses the cluster: the other two elect a leader and take
/// writes, and the old one never answers a read with what it had; healed,
/// it follows and comes to the same state.
#[test]
fn a_partitioned_leader_is_replaced_and_catches_up_when_healed() {
    rt().block_on(async {
        let c = Cluster::with_spec(ClusterSpec {
            proxied: true,
            ..ClusterSpec::default()
        });
        let old = c.leader().await;
        for i in 0..20 {
            c.put(&format!("vm/{i:03}"), "spec").await;
        }
        c.put("generation", "before").await;
        let net = c.procs.network().expect("proxied");
        net.isolate(old, 1..=3, Cut::Drop);

        let deadline = Instant::now() + WAIT;
        let new = 'found: loop {
            for id in (1..=3).filter(|&i| i != old) {
                if c.procs.status(id).await.is_some_and(|s| s.is_leader()) {
                    break 'found id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no new leader while {old} is cut off"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let client = c.procs.client(new);
        let mut last = 0;
        for i in 20..60 {
            let key = format!("vm/{i:03}");
            last = loop {
                match client.put(&key, "spec").await {
                    Ok(w) => break w.index,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "{key} not taken by {new}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
        }
        last = last.max(client.put("generation", "after").await.unwrap().index);
        let stale = c
            .procs
            .client(old)
            .with_timeout(Duration::from_secs(3))
            .get("generation")
            .await;
        assert!(
            !matches!(&stale, Ok(Some(v)) if v == b"before"),
            "the cut-off leader answered a stale read: {stale:?}"
        );

        net.heal();
        let healed = c.applied(old, last).await;
        let leader = c.applied(new, last).await;
        assert_eq!(healed.keys, 61);
        assert_eq!(healed.state_hash, leader.state_hash);
        assert!(!healed.is_leader() || healed.term > leader.term);
    });
}

/// A follower whose disk fills up (a real tmpfs, where the test may mount
/// one: root on Linux) ends with exit code 3 and a log naming the full disk
/// while the other two go on taking writes, instead of living on with a
/// stopped core; with space freed and restarted, it catches up, and nothing
/// acknowledged is lost.
#[test]
fn a_follower_on_a_full_disk_ends_saying_so_and_catches_up_when_freed() {
    let dir = tempfile::tempdir().unwrap();
    let disks = match (1..=3)
        .map(|id| SmallDisk::mount(&dir.path().join(format!("node-{id}")), 32 << 20))
        .collect::<std::io::Result<Vec<_>>>()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: a tmpfs cannot be mounted here ({e}; it needs root)");
            return;
        }
    };
    let spec = ClusterSpec {
        extra_toml: "[log]\nsegment-bytes = 65536\n".into(),
        rust_log: "warn".into(),
        log_files: true,
        ..ClusterSpec::default()
    };
    let mut procs =
        ProcessCluster::new(env!("CARGO_BIN_EXE_ramrod").as_ref(), dir.path(), spec).unwrap();
    procs.start_all().unwrap();
    rt().block_on(async {
        let leader = procs.leader(WAIT).await.expect("a leader");
        let follower = (1..=3).find(|&i| i != leader).unwrap();
        // 1 KiB that does not compress, so that each write takes its size
        // in the log (whose sections are lz4-compressed).
        let value = |i: u64| -> String {
            (0..16u64)
                .map(|j| {
                    let seed = [i.to_le_bytes(), j.to_le_bytes()].concat();
                    blake3::hash(&seed).to_hex().to_string()
                })
                .collect()
        };
        for i in 0..20 {
            procs
                .put(&format!("vm/{i:03}"), &value(i), WAIT)
                .await
                .unwrap();
        }
        let taken = disks[follower as usize - 1].fill().unwrap();
        assert!(taken > 0 && disks[follower as usize - 1].free_bytes() < 64 << 10);

        // Writes go on through the leader; the follower runs out of space
        // when it needs a new segment (the one made ahead, then the next)
        // and ends.
        let deadline = Instant::now() + WAIT;
        let mut last = 0;
        let mut i = 20;
        let client = procs.client(leader);
        while procs.running(follower) {
            assert!(
                Instant::now() < deadline,
                "node {follower} kept running on a full disk"
            );
            let w = client.put(&format!("vm/{i:03}"), value(i)).await;
            last = w.expect("the other two take writes").index;
            i += 1;
        }
        assert_eq!(
            procs.exit_status(follower).and_then(|s| s.code()),
            Some(3),
            "a storage failure ends with 3"
        );
        let log = std::fs::read_to_string(dir.path().join(format!("node-{follower}.log"))).unwrap();
        assert!(
            log.contains("No space left on device"),
            "the log names the full disk: {log}"
        );
        for j in 0..20 {
            last = procs
                .put(&format!("after/{j:03}"), &value(j), WAIT)
                .await
                .unwrap()
                .index;
        }

        disks[follower as usize - 1].free().unwrap();
        procs.start(follower).unwrap();
        let caught_up = procs
            .applied(follower, last, WAIT)
            .await
            .expect("caught up");
        let leader_status = procs.applied(leader, last, WAIT).await.unwrap();
        assert_eq!(caught_up.keys as u64, i + 20);
        assert_eq!(caught_up.state_hash, leader_status.state_hash);
    });
    drop(procs);
    drop(disks);
}
