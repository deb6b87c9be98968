//! The compaction controller in a 3-node cluster (in one process, HTTP on
//! loopback): built-in policies keep the log bounded, an idle cluster still
//! compacts, the chain bound holds, and a policy rolls out to every node at
//! the same log index. (Catching up after being down: `catch_up`.)

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ramrod::internals::config::NodeConfig;
use ramrod::internals::node::Node;
use ramrod::internals::raft::Request;

use crate::cluster::{Ports, TOKEN, config, leader};

pub(crate) fn policy_config(
    id: u64,
    ports: &Ports,
    dir: &Path,
    policy: &str,
    policy_toml: &str,
) -> NodeConfig {
    let mut c = config(id, ports, dir);
    c.policy.name = Some(policy.into());
    c.policy.config = toml::from_str(policy_toml).unwrap();
    c
}

pub(crate) async fn start_with(dir: &Path, policy: &str, policy_toml: &str) -> (Vec<Node>, Ports) {
    let ports = Ports::bind(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let c = policy_config(id, &ports, dir, policy, policy_toml);
        nodes.push(ramrod_tests::start(&ports, c).await.unwrap());
    }
    nodes[0].initialize().await.unwrap();
    (nodes, ports)
}

/// Writes `n` keys `{prefix}{i}` through `node` (the leader), `concurrency`
/// at a time; every write must be acknowledged.
pub(crate) async fn write_keys(node: &Node, prefix: &str, n: usize, concurrency: usize) {
    let raft = node.internals().raft.clone();
    let prefix = prefix.to_string();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let raft = raft.clone();
            let key = format!("{prefix}{i:06}");
            async move {
                raft.client_write(Request::put(key, vec![b'v'; 100]))
                    .await
                    .expect("write acknowledged")
            }
        })
        .buffer_unordered(concurrency)
        .for_each(|_| async {})
        .await;
}

/// Waits until `cond` holds, up to `limit`; panics with `what` otherwise.
pub(crate) async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn applied(n: &Node) -> u64 {
    n.internals().sm.last_applied().map_or(0, |l| l.index)
}

#[test]
fn each_builtin_policy_keeps_the_log_bounded_under_writes() {
    const WRITES: usize = 4_000;
    let cases = [
        (
            "entries",
            "snapshot_every = 500\nkeep_entries = 100\ncheck_ms = 50",
        ),
        (
            "bytes-or-age",
            "max_bytes = 65536\nkeep_entries = 100\ncheck_ms = 50",
        ),
        (
            "adaptive",
            "max_entries = 500\nkeep_entries = 100\nmin_check_ms = 20\nmax_check_ms = 200\nlag_budget_entries = 1000",
        ),
    ];
    for (policy, cfg) in cases {
        crate::support::rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (nodes, _) = start_with(dir.path(), policy, cfg).await;
            let leader_id = leader(&nodes).await;
            let lead = &nodes[leader_id as usize - 1];
            // Sample the largest log any node holds while the writes run.
            let logs: Vec<_> = nodes.iter().map(|n| n.internals().log.clone()).collect();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sampler = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut max = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for l in &logs {
                            max = max.max(l.stats().entries);
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    max
                })
            };
            write_keys(lead, "k/", WRITES, 32).await;
            let last = applied(lead);
            for n in &nodes {
                eventually(Duration::from_secs(20), "every node applied", || {
                    applied(n) >= last
                })
                .await;
            }
            // Once the writes are in, every node compacts to its bound.
            for n in &nodes {
                eventually(
                    Duration::from_secs(20),
                    &format!("{policy}: node {} compacted", n.id()),
                    || n.internals().log.stats().entries <= 1_000,
                )
                .await;
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let max = sampler.await.unwrap();
            assert!(
                max < WRITES as u64 / 2,
                "{policy}: a log held {max} entries of {WRITES} written"
            );
            for n in &nodes {
                let c = n.internals().controller.shared().stats();
                assert!(
                    c.builds_full + c.builds_incremental >= 2,
                    "{policy}: node {} built {c:?}",
                    n.id()
                );
                assert!(
                    c.purged_entries > 0,
                    "{policy}: node {} purged nothing",
                    n.id()
                );
                let audit = n.internals().controller.shared().audit(usize::MAX);
                assert!(
                    audit.iter().all(|e| e.record.policy == policy),
                    "{policy}: every decision is the policy's"
                );
                assert!(audit.iter().any(|e| !e.actions.is_empty()));
                assert_eq!(
                    n.internals().sm.len(),
                    WRITES,
                    "{policy}: node {} lost keys",
                    n.id()
                );
            }
            for n in nodes {
                n.shutdown().await;
            }
        });
    }
}

#[test]
fn an_idle_cluster_compacts_under_bytes_or_age() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // Far more bytes than will be written: only the age can trigger.
        let cfg = "max_bytes = 1073741824\nmax_age_ms = 400\nkeep_entries = 0\ncheck_ms = 100";
        let (nodes, _) = start_with(dir.path(), "bytes-or-age", cfg).await;
        let leader_id = leader(&nodes).await;
        write_keys(&nodes[leader_id as usize - 1], "idle/", 300, 16).await;
        let last = applied(&nodes[leader_id as usize - 1]);
        // No more writes. Each node's snapshot comes to cover everything and
        // its log empties.
        for n in &nodes {
            eventually(
                Duration::from_secs(20),
                &format!("node {} snapshot covers the log and purges it", n.id()),
                || {
                    let covered = n
                        .internals()
                        .sm
                        .current_manifest()
                        .and_then(|m| m.last_log_id)
                        .map_or(0, |l| l.index);
                    covered >= last && n.internals().log.stats().first_index > last
                },
            )
            .await;
        }
        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// Regression: `bytes-or-age` with `kind = "incremental"` built 39
/// incrementals in a row on one base in a 60 s demo run. A policy asking for
/// incrementals for ever now gets a full snapshot whenever the chain is at
/// `snapshots.max-chain`, and the audit says it was clamped.
#[test]
fn a_policy_asking_for_incrementals_for_ever_never_grows_the_chain_past_the_bound() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::bind(1);
        let mut c = policy_config(
            1,
            &ports,
            dir.path(),
            "entries",
            "snapshot_every = 40\nkeep_entries = 0\nkind = \"incremental\"\ncheck_ms = 20",
        );
        c.snapshots.max_chain = 3;
        let node = ramrod_tests::start(&ports, c).await.unwrap();
        node.initialize().await.unwrap();
        leader(std::slice::from_ref(&node)).await;
        let mut longest = 0;
        for round in 0..10 {
            write_keys(&node, &format!("r{round}/"), 50, 8).await;
            let last = applied(&node);
            // Until a snapshot covers all but what the policy lets pass.
            eventually(
                Duration::from_secs(20),
                "a snapshot after the round",
                || {
                    let m = node.internals().sm.current_manifest();
                    longest = longest.max(m.as_ref().map_or(0, |m| 1 + m.deltas.len()));
                    m.and_then(|m| m.last_log_id).map_or(0, |l| l.index) + 40 > last
                },
            )
            .await;
        }
        assert_eq!(
            longest, 3,
            "the chain reached the bound and never passed it"
        );
        let stats = node.internals().controller.shared().stats();
        assert!(stats.builds_full >= 3, "{stats:?}");
        let audit = node.internals().controller.shared().audit(usize::MAX);
        assert!(
            audit.iter().any(|e| e
                .record
                .clamps
                .contains(&ramrod::sdk::Clamp::ChainTooLong { length: 3, max: 3 })
                && e.actions.iter().any(|d| d.action
                    == ramrod::internals::node::controller::Action::Build(
                        ramrod::sdk::SnapshotKind::Full
                    ))),
            "the audit names the clamp and the full build"
        );
        node.shutdown().await;
    });
}

#[test]
fn a_policy_rolls_out_to_every_node_at_one_index_and_survives_a_restart() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, ports) = start_with(dir.path(), "adaptive", "").await;
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "k/", 100, 8).await;
        let http = reqwest::Client::new();
        let url = |n: &Node, path: &str| format!("http://{}{path}", n.addr().unwrap());
        let put = |n: &Node, query: &str, body: Vec<u8>| {
            http.put(url(n, &format!("/admin/policy?{query}")))
                .bearer_auth(TOKEN)
                .body(body)
                .send()
        };

        // Refused before entering the log: garbage, a bad config, no token.
        let before = lead.internals().log.stats().last_index;
        let r = put(lead, "cluster=true", b"\0asm not really".to_vec())
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("policy refused"));
        let r = put(
            lead,
            "cluster=true&builtin=entries&config=no_such_key%3D1",
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        let text = r.text().await.unwrap();
        assert!(text.contains("no_such_key"), "{text}");
        let r = http
            .put(url(lead, "/admin/policy?cluster=true&builtin=entries"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            lead.internals().log.stats().last_index,
            before,
            "nothing entered the log"
        );
        // Each refusal is counted and kept as the last error; a refused
        // local swap too.
        let p = lead.policy().unwrap();
        assert_eq!((p.rollout_failures, p.swap_failures), (2, 0), "{p:?}");
        assert!(
            p.last_error
                .as_deref()
                .unwrap_or("")
                .contains("refused rollout"),
            "{p:?}"
        );
        let r = put(lead, "builtin=entries&config=no_such_key%3D1", vec![])
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let p = lead.policy().unwrap();
        assert_eq!((p.rollout_failures, p.swap_failures), (2, 1), "{p:?}");
        assert!(
            p.last_error
                .as_deref()
                .unwrap_or("")
                .contains("refused local swap"),
            "{p:?}"
        );

        // A follower answers with the leader.
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        let r = put(follower, "cluster=true&builtin=entries", vec![])
            .await
            .unwrap();
        assert_eq!(r.status(), 421);

        // The rollout.
        let wasm = ramrod::internals::policy::builtin("bytes-or-age")
            .unwrap()
            .to_vec();
        let r = put(
            lead,
            "cluster=true&label=ops.wasm&config=max_age_ms%3D60000",
            wasm.clone(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let reply: ramrod::Swapped = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let index = reply.index.unwrap();
        let hash = blake3_hex(&wasm);
        assert_eq!(reply.hash, hash);
        assert_eq!(reply.scope, ramrod::Scope::Cluster);
        for n in &nodes {
            let shared = n.internals().controller.shared().clone();
            eventually(Duration::from_secs(10), "every node swapped", || {
                shared.origin().index == Some(index)
                    && shared.host().active_meta().is_some_and(|m| m.hash == hash)
            })
            .await;
            let c = ramrod::client::Client::new(&url(n, ""))
                .unwrap()
                .with_token(TOKEN);
            let p = c.policy().await.unwrap();
            assert_eq!(p.name, "bytes-or-age");
            assert_eq!(p.origin, "rollout");
            assert_eq!(p.index, Some(index));
            assert!(p.config.contains("60000"));
        }
        // Decisions after the rollout are the new policy's.
        nodes[0].internals().controller.check();
        eventually(
            Duration::from_secs(10),
            "a decision by the new policy",
            || {
                nodes[0]
                    .internals()
                    .controller
                    .shared()
                    .audit(1)
                    .last()
                    .is_some_and(|e| e.record.policy == "bytes-or-age")
            },
        )
        .await;

        // A restart keeps it: a follower restored from a snapshot taken
        // after the rollout, and the other one from whatever it has.
        let r = http
            .post(url(follower, "/admin/snapshot?kind=full"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let followers: Vec<u64> = nodes
            .iter()
            .map(|n| n.id())
            .filter(|&i| i != leader_id)
            .collect();
        for restart_id in followers {
            let pos = nodes.iter().position(|n| n.id() == restart_id).unwrap();
            ramrod_tests::stop(&ports, nodes.remove(pos)).await;
            let back = ramrod_tests::start(
                &ports,
                policy_config(restart_id, &ports, dir.path(), "adaptive", ""),
            )
            .await
            .unwrap();
            let shared = back.internals().controller.shared().clone();
            eventually(
                Duration::from_secs(10),
                "the restarted node runs the rollout",
                || {
                    shared.origin().index == Some(index)
                        && shared.host().active_meta().is_some_and(|m| m.hash == hash)
                },
            )
            .await;
            eventually(
                Duration::from_secs(10),
                "the restarted node applied",
                || applied(&back) >= index,
            )
            .await;
            assert_eq!(
                back.internals().sm.len(),
                100,
                "the policy record is not a client key"
            );
            nodes.push(back);
        }
        for n in nodes {
            n.shutdown().await;
        }
    });
}

fn blake3_hex(bytes: &[u8]) -> String {
    ramrod::internals::raft::PolicySpec {
        label: String::new(),
        wasm: bytes.to_vec(),
        config: String::new(),
    }
    .hash()
}

/// `wasm` with a custom section of `extra` incompressible bytes appended:
/// a component as large as an interpreted language's, deciding exactly as
/// `wasm` does.
fn padded(wasm: &[u8], extra: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let name = b"ramrod-test-padding";
    let mut payload = Vec::with_capacity(extra + name.len() + 1);
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    payload.extend((0..extra).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    let mut out = wasm.to_vec();
    out.push(0); // a custom section
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

#[test]
fn a_large_policy_rolls_out_by_hash_and_every_node_keeps_its_bytes() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::bind(3);
        let node_config = |id: u64| {
            let mut c = policy_config(id, &ports, dir.path(), "adaptive", "");
            c.policy.max_upload_bytes = Some(24 << 20);
            // No grace period: collection spares only what is referenced.
            c.snapshots.gc_grace = Duration::ZERO;
            c
        };
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(ramrod_tests::start(&ports, node_config(id)).await.unwrap());
        }
        nodes[0].initialize().await.unwrap();
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "k/", 100, 8).await;
        let entries = ramrod::internals::policy::builtin("entries").unwrap();
        let big = padded(entries, 20 << 20);
        let hash = blake3_hex(&big);
        let client = ramrod::client::Client::new(&format!("http://{}", lead.addr().unwrap()))
            .unwrap()
            .with_token(TOKEN)
            .with_timeout(Duration::from_secs(120));

        // Over the node's limit: refused with the limit before uploading
        // by the client, and with a 413 naming it by the node.
        let over = padded(entries, 25 << 20);
        let e = client
            .swap_policy(
                ramrod::client::PolicyUpload::Wasm {
                    label: "over.wasm".into(),
                    bytes: over.clone(),
                },
                "",
                ramrod::Scope::Cluster,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains(&(24 << 20).to_string()), "{e}");
        let r = reqwest::Client::new()
            .put(format!(
                "http://{}/admin/policy?cluster=true",
                lead.addr().unwrap()
            ))
            .bearer_auth(TOKEN)
            .body(over)
            .send()
            .await;
        // The node answers before it has read the body; a client may see
        // the answer or a connection it closed.
        if let Ok(r) = r {
            assert_eq!(r.status(), 413);
            let text = r.text().await.unwrap();
            assert!(text.contains("max-upload-bytes"), "{text}");
        }

        // The rollout: the entry carries the hash, the bytes go through
        // the stores.
        let log_bytes = lead.internals().log.stats().bytes;
        let swapped = client
            .swap_policy(
                ramrod::client::PolicyUpload::Wasm {
                    label: "big.wasm".into(),
                    bytes: big.clone(),
                },
                "snapshot_every = 50",
                ramrod::Scope::Cluster,
            )
            .await
            .unwrap();
        assert_eq!(swapped.hash, hash);
        let index = swapped.index.unwrap();
        for n in &nodes {
            let shared = n.internals().controller.shared().clone();
            eventually(Duration::from_secs(60), "every node runs it", || {
                shared.origin().index == Some(index)
                    && shared.host().active_meta().is_some_and(|m| m.hash == hash)
            })
            .await;
            let store = n.internals().sm.snapshots().store().clone();
            assert!(store.has_segment(&hash).await.unwrap(), "node {}", n.id());
        }
        eventually(Duration::from_secs(10), "the log index commit", || {
            lead.internals().log.stats().bytes > log_bytes
        })
        .await;
        let grown = lead.internals().log.stats().bytes - log_bytes;
        assert!(grown < 64 << 10, "the log grew by {grown} bytes");

        // Snapshots record it and retention keeps it (no grace period).
        for n in &nodes {
            n.snapshot_now(None).await.unwrap();
            let m = n.internals().sm.current_manifest().unwrap();
            assert_eq!(m.blobs, vec![hash.clone()], "node {}", n.id());
            n.internals().sm.snapshots().retain(1).await.unwrap();
            let store = n.internals().sm.snapshots().store().clone();
            assert!(store.has_segment(&hash).await.unwrap(), "node {}", n.id());
        }

        // A follower whose copy is gone (or damaged) fetches it again from
        // a member when it restarts.
        let follower = nodes.iter().position(|n| n.id() != leader_id).unwrap();
        let id = nodes[follower].id();
        let store = nodes[follower].internals().sm.snapshots().store().clone();
        ramrod_tests::stop(&ports, nodes.remove(follower)).await;
        store.delete_segment(&hash).await.unwrap();
        let back = ramrod_tests::start(&ports, node_config(id)).await.unwrap();
        let shared = back.internals().controller.shared().clone();
        eventually(
            Duration::from_secs(60),
            "the restarted node fetched the policy and runs it",
            || {
                shared.origin().index == Some(index)
                    && shared.host().active_meta().is_some_and(|m| m.hash == hash)
            },
        )
        .await;
        let store = back.internals().sm.snapshots().store().clone();
        assert!(store.has_segment(&hash).await.unwrap());
        assert_eq!(back.policy().unwrap().last_error, None);
        nodes.push(back);
        for n in nodes {
            n.shutdown().await;
        }
    });
}
