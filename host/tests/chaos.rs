//! Chaos: three `ramrod serve` processes under concurrent reads and writes
//! while a nemesis, the leader more often than not, with snapshots and
//! purges going on:
//! - kills nodes (SIGKILL, then a restart) and freezes them (SIGSTOP, then
//!   SIGCONT);
//! - partitions them, through a fault proxy in front of every node
//!   (`harness::Network`): a node cut off both ways, or one way (it cannot
//!   reach the others, they reach it), connections refused or their packets
//!   dropped;
//! - fills a node's disk (a tmpfs on its data directory, where the test may
//!   mount one: root on Linux), waits for it to end with exit code 3,
//!   frees the space and restarts it, as a supervisor would;
//! - cuts off the S3 snapshot store (SeaweedFS behind a proxy, where
//!   `RAMROD_S3_ENDPOINT` names one), sometimes restarting a node meanwhile.
//!
//! Every client operation is recorded (call and answer times on one clock,
//! outcome), the cluster is healed, every key is read once more, the nodes
//! must come to the same state, and the whole history is checked for
//! linearizability (`ramrod::linearizability`), which an acknowledged write
//! that was lost fails too.
//!
//! `RAMROD_CHAOS_SECONDS` sets how long the faults go on (default 60, the
//! bounded run of the test suite); `scripts/chaos.sh SECONDS` runs longer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ramrod::client::ClientError;
use ramrod::internals::harness::{ClusterSpec, Cut, Network, ProcessCluster, Proxy, SmallDisk};
use ramrod::linearizability::{Event, Op, check};

/// Keys the clients share, at least (more in longer runs); each gets at most
/// this many operations (the checker's bound), then the clients move on to
/// others.
const MIN_KEYS: usize = 256;
const MAX_PER_KEY: u64 = 100;
const CLIENTS: usize = 6;
/// Each node's disk (a tmpfs), when the test can mount one.
const DISK_BYTES: u64 = 64 << 20;

/// What a write of `v` stores: `v`, then 512 bytes that do not compress,
/// so that the log grows as it would with real records (a full disk is
/// then found at the next segment within a second or two).
fn value_bytes(v: u64) -> Vec<u8> {
    let mut b = v.to_string().into_bytes();
    for j in 0..8u64 {
        b.push(b' ');
        let seed = [v.to_le_bytes(), j.to_le_bytes()].concat();
        b.extend_from_slice(blake3::hash(&seed).to_hex().as_bytes());
    }
    b
}

/// The `v` a value read back was written with.
fn value_of(b: &[u8]) -> u64 {
    let text = std::str::from_utf8(b).expect("values are text");
    let v = text.split(' ').next().unwrap_or_default();
    v.parse()
        .unwrap_or_else(|_| panic!("not a value this test wrote: {text:?}"))
}

/// The S3 test server (`RAMROD_S3_ENDPOINT`, as `scripts/test.sh` starts
/// it) behind a proxy of its own network, and the bucket.
fn s3_store() -> Option<(Network, Proxy, String)> {
    let Ok(endpoint) = std::env::var("RAMROD_S3_ENDPOINT") else {
        assert!(
            std::env::var("RAMROD_REQUIRE_S3").is_err(),
            "RAMROD_REQUIRE_S3 is set but RAMROD_S3_ENDPOINT is not"
        );
        println!("store faults skipped: RAMROD_S3_ENDPOINT is not set (snapshots in a directory)");
        return None;
    };
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .unwrap_or_else(|e| panic!("RAMROD_S3_ENDPOINT {endpoint:?}: {e}"))
        .next()
        .expect("an address");
    let net = Network::new().unwrap();
    let proxy = net.proxy(upstream, None).unwrap();
    let bucket = std::env::var("RAMROD_S3_BUCKET").unwrap_or_else(|_| "ramrod".into());
    Some((net, proxy, bucket))
}

/// The nemesis's faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// SIGKILL, then a restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Cut off from both other nodes, both ways.
    Partition,
    /// Cannot reach the others; they still reach it.
    OneWay,
    /// Its disk filled up, then freed (and the node restarted if it ended).
    DiskFull,
    /// The S3 snapshot store unreachable, sometimes with a node restarted
    /// meanwhile.
    StoreDown,
}

#[derive(Default)]
struct Tally {
    /// How many of each fault, and of those that hit the leader.
    faults: std::collections::BTreeMap<Fault, (u64, u64)>,
    /// Disk-full faults after which the node ended by itself (exit 3).
    disk_full_exits: u64,
    /// Nodes restarted while the store was down.
    store_down_restarts: u64,
}

/// Whether an error means the request certainly did nothing: refused
/// before it was proposed (not the leader, bad request).
fn certainly_not_applied(e: &ClientError) -> bool {
    match e {
        ClientError::NotLeader { .. } => true,
        _ => e.status().is_some_and(|s| s.is_client_error()),
    }
}

#[test]
fn linearizable_under_kills_pauses_partitions_full_disks_and_store_outages() {
    let seconds: u64 = std::env::var("RAMROD_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // About 10 keys a second's worth of room: the clients do
    // not run out of keys before the faults end.
    let keys = MIN_KEYS.max(seconds as usize * 10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A small disk per node, if this machine lets the test mount one.
    let disks: Option<Vec<SmallDisk>> = (1..=3)
        .map(|id| SmallDisk::mount(&dir.path().join(format!("node-{id}")), DISK_BYTES))
        .collect::<std::io::Result<_>>()
        .inspect_err(|e| {
            println!(
                "disk-full faults skipped: a tmpfs cannot be mounted here ({e}; it needs root)"
            );
        })
        .ok();
    // The S3 store behind a proxy that can cut it off, if there is one.
    let store = s3_store();
    let mut extra = "[policy]\nname = \"entries\"\n\
                     config = { snapshot_every = 300, keep_entries = 50, check_ms = 50 }\n\n\
                     [log]\nsegment-bytes = 65536\n\n"
        .to_string();
    if let Some((_, proxy, bucket)) = &store {
        extra += &format!(
            "[snapshot-store]\ns3 = {{ endpoint = \"http://{}\", bucket = \"{bucket}\", \
             prefix = \"chaos-{}-{}\" }}\n",
            proxy.addr(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
    }
    let spec = ClusterSpec {
        extra_toml: extra,
        proxied: true,
        ..ClusterSpec::default()
    };
    let mut cluster =
        ProcessCluster::new(env!("CARGO_BIN_EXE_ramrod").as_ref(), dir.path(), spec).unwrap();
    cluster.start_all().unwrap();
    let clock = Instant::now();
    let now = move || clock.elapsed().as_nanos() as u64;

    rt.block_on(async {
        let leader = cluster
            .leader(Duration::from_secs(30))
            .await
            .expect("a leader");
        let history: Arc<Mutex<Vec<Event>>> = Arc::default();
        let per_key: Arc<Vec<AtomicU64>> = Arc::new((0..keys).map(|_| AtomicU64::new(0)).collect());
        let values = Arc::new(AtomicU64::new(1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (acked, unknown, refused, reads) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let mut workers = Vec::new();
        for w in 0..CLIENTS {
            let clients: Vec<_> = (1..=3)
                .map(|id| cluster.client(id).with_timeout(Duration::from_secs(3)))
                .collect();
            let (history, per_key, values, stop) =
                (history.clone(), per_key.clone(), values.clone(), stop.clone());
            let (acked, unknown, refused, reads) =
                (acked.clone(), unknown.clone(), refused.clone(), reads.clone());
            workers.push(tokio::spawn(async move {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ w as u64;
                let mut rand = move |n: u64| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % n
                };
                while !stop.load(Ordering::Relaxed) {
                    // A key with room left in its history, if any.
                    let first = rand(keys as u64) as usize;
                    let Some(k) = (0..keys)
                        .map(|i| (first + i) % keys)
                        .find(|&k| per_key[k].fetch_add(1, Ordering::Relaxed) < MAX_PER_KEY)
                    else {
                        break;
                    };
                    let key = format!("chaos/{k:03}");
                    let client = &clients[rand(3) as usize];
                    let call = now();
                    if rand(2) == 0 {
                        let v = values.fetch_add(1, Ordering::Relaxed);
                        let r = client.put(&key, value_bytes(v)).await;
                        let answer = match &r {
                            Ok(_) => {
                                acked.fetch_add(1, Ordering::Relaxed);
                                Some(now())
                            }
                            Err(e) if certainly_not_applied(e) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Err(_) => {
                                unknown.fetch_add(1, Ordering::Relaxed);
                                None
                            }
                        };
                        history.lock().unwrap().push(Event {
                            key,
                            op: Op::Write(v),
                            call,
                            answer,
                        });
                    } else {
                        let Ok(got) = client.get(&key).await else {
                            continue;
                        };
                        let answer = now();
                        reads.fetch_add(1, Ordering::Relaxed);
                        let got = got.map(|b| value_of(&b));
                        history.lock().unwrap().push(Event {
                            key,
                            op: Op::Read(got),
                            call,
                            answer: Some(answer),
                        });
                    }
                }
            }));
        }

        // The nemesis.
        let net = cluster.network().expect("a proxied cluster").clone();
        let mut kinds = vec![Fault::Kill, Fault::Pause, Fault::Partition, Fault::OneWay];
        if disks.is_some() {
            kinds.push(Fault::DiskFull);
        }
        if store.is_some() {
            kinds.push(Fault::StoreDown);
        }
        let mut tally = Tally::default();
        let mut x = 0x2545_f491u64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut last_leader = leader;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500 + rand(1_000))).await;
            let leader = cluster
                .leader(Duration::from_secs(10))
                .await
                .unwrap_or(last_leader);
            last_leader = leader;
            let victim = if rand(3) < 2 { leader } else { 1 + rand(3) };
            let down = Duration::from_millis(300 + rand(2_000));
            let how = if rand(2) == 0 { Cut::Refuse } else { Cut::Drop };
            let fault = kinds[rand(kinds.len() as u64) as usize];
            let counts = tally.faults.entry(fault).or_default();
            counts.0 += 1;
            counts.1 += u64::from(victim == leader);
            match fault {
                Fault::Kill => {
                    cluster.kill(victim);
                    tokio::time::sleep(down).await;
                    cluster.start(victim).unwrap();
                }
                Fault::Pause => {
                    cluster.pause(victim, true);
                    tokio::time::sleep(down).await;
                    cluster.pause(victim, false);
                }
                Fault::Partition => {
                    net.isolate(victim, 1..=3, how);
                    tokio::time::sleep(down).await;
                    net.heal();
                }
                Fault::OneWay => {
                    for other in (1..=3).filter(|&o| o != victim) {
                        net.cut(victim, other, how);
                    }
                    tokio::time::sleep(down).await;
                    net.heal();
                }
                Fault::DiskFull => {
                    let disk = &disks.as_ref().expect("disks")[victim as usize - 1];
                    disk.fill().unwrap();
                    // Writes go on: the node runs out of space at its
                    // next segment or index growth, and ends.
                    let full = Instant::now();
                    while cluster.running(victim) && full.elapsed() < Duration::from_secs(5) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    disk.free().unwrap();
                    if !cluster.running(victim) {
                        let status = cluster.exit_status(victim);
                        assert_eq!(
                            status.and_then(|s| s.code()),
                            Some(3),
                            "node {victim} on a full disk ended with {status:?}, not 3 (a storage failure)"
                        );
                        tally.disk_full_exits += 1;
                        cluster.start(victim).unwrap();
                    }
                }
                Fault::StoreDown => {
                    let (store_net, _, _) = store.as_ref().expect("a store");
                    store_net.cut_all(how);
                    // A node started meanwhile waits for the store.
                    if rand(2) == 0 {
                        cluster.kill(victim);
                        cluster.start(victim).unwrap();
                        tally.store_down_restarts += 1;
                    }
                    tokio::time::sleep(down + Duration::from_secs(1)).await;
                    store_net.heal();
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }

        // Healed: every key read once more, through the leader.
        let c = &cluster;
        let healed = Instant::now();
        let mut leader = c
            .leader(Duration::from_secs(30))
            .await
            .expect("a leader after healing");
        let mut client = c.client(leader);
        for k in 0..keys {
            let key = format!("chaos/{k:03}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let call = now();
                match client.get(&key).await {
                    Ok(got) => {
                        let got = got.map(|b| value_of(&b));
                        history.lock().unwrap().push(Event {
                            key,
                            op: Op::Read(got),
                            call,
                            answer: Some(now()),
                        });
                        break;
                    }
                    Err(e) => {
                        assert!(
                            Instant::now() < deadline,
                            "{key} unreadable after healing: {e}"
                        );
                        leader = c
                            .leader(Duration::from_secs(10))
                            .await
                            .unwrap_or(leader);
                        client = c.client(leader);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        let healing = healed.elapsed();

        // Every node runs and comes to the same state: none is left
        // half-dead or behind.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut states = Vec::new();
            for id in c.ids() {
                states.push(c.status(id).await.map(|s| (s.last_applied, s.state_hash)));
            }
            if states.iter().all(|s| s.is_some() && *s == states[0]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes did not converge after healing: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let history = history.lock().unwrap().clone();
        let started = Instant::now();
        let result = check(&history);
        let took = started.elapsed();
        let (acked, unknown, refused, reads) = (
            acked.load(Ordering::Relaxed),
            unknown.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            reads.load(Ordering::Relaxed),
        );
        println!(
            "chaos: {seconds} s of faults: {}; {} disk-full exits, {} restarts while the store \
             was down; {acked} writes acknowledged, {unknown} of unknown fate, {refused} refused, \
             {reads} reads (+{keys} after healing, in {healing:?}); {} operations checked in {took:?}",
            tally
                .faults
                .iter()
                .map(|(f, (n, l))| format!("{n} {f:?} ({l} of the leader)"))
                .collect::<Vec<_>>()
                .join(", "),
            tally.disk_full_exits,
            tally.store_down_restarts,
            history.len()
        );
        match result {
            Ok(stats) => println!("linearizable: {stats:?}"),
            Err(v) => panic!("not linearizable: key {}: {:#?}", v.key, v.events),
        }
        assert!(acked > 100, "too few writes were acknowledged to tell: {acked}");
        let faults: u64 = tally.faults.values().map(|(n, _)| n).sum();
        assert!(faults >= seconds / 8, "too few faults in {seconds} s");
    });
}
