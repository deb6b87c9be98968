//! Chaos: three `ramrod serve` processes under concurrent reads and writes
//! while a nemesis kills nodes (SIGKILL, then a restart) and freezes them
//! (SIGSTOP, then SIGCONT), the leader more often than not, with snapshots
//! and purges going on. Every client operation is recorded (call and answer
//! times on one clock, outcome), the cluster is healed, every key is read
//! once more, and the whole history is checked for linearizability
//! (`ramrod::linearizability`), which an acknowledged write that was lost
//! fails too.
//!
//! `RAMROD_CHAOS_SECONDS` sets how long the faults go on (default 40, the
//! bounded run of the test suite); `scripts/chaos.sh SECONDS` runs longer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ramrod::client::ClientError;
use ramrod::internals::harness::{ClusterSpec, ProcessCluster};
use ramrod::linearizability::{Event, Op, check};

/// Keys the clients share; each gets at most this many operations (the
/// checker's bound), then the clients move on to others.
const KEYS: usize = 256;
const MAX_PER_KEY: u64 = 100;
const CLIENTS: usize = 6;

#[derive(Default)]
struct Faults {
    kills: u64,
    leader_kills: u64,
    pauses: u64,
    leader_pauses: u64,
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
fn linearizable_under_kills_and_pauses() {
    let seconds: u64 = std::env::var("RAMROD_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        extra_toml: "[policy]\nname = \"entries\"\n\
                     config = { snapshot_every = 300, keep_entries = 50, check_ms = 50 }\n"
            .into(),
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
        let per_key: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
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
                    let first = rand(KEYS as u64) as usize;
                    let Some(k) = (0..KEYS)
                        .map(|i| (first + i) % KEYS)
                        .find(|&k| per_key[k].fetch_add(1, Ordering::Relaxed) < MAX_PER_KEY)
                    else {
                        break;
                    };
                    let key = format!("chaos/{k:03}");
                    let client = &clients[rand(3) as usize];
                    let call = now();
                    if rand(2) == 0 {
                        let v = values.fetch_add(1, Ordering::Relaxed);
                        let r = client.put(&key, v.to_string().into_bytes()).await;
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
                        let got = got.map(|b| String::from_utf8(b).unwrap().parse().unwrap());
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
        let mut faults = Faults::default();
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
            if rand(2) == 0 {
                cluster.kill(victim);
                faults.kills += 1;
                faults.leader_kills += u64::from(victim == leader);
                tokio::time::sleep(down).await;
                cluster.start(victim).unwrap();
            } else {
                cluster.pause(victim, true);
                faults.pauses += 1;
                faults.leader_pauses += u64::from(victim == leader);
                tokio::time::sleep(down).await;
                cluster.pause(victim, false);
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
        for k in 0..KEYS {
            let key = format!("chaos/{k:03}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let call = now();
                match c.client(leader).get(&key).await {
                    Ok(got) => {
                        let got = got.map(|b| String::from_utf8(b).unwrap().parse().unwrap());
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
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let healing = healed.elapsed();
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
            "chaos: {seconds} s of faults: {} kills ({} of the leader), {} pauses ({} of the leader); \
             {acked} writes acknowledged, {unknown} of unknown fate, {refused} refused, {reads} reads \
             (+{KEYS} after healing, in {healing:?}); {} operations checked in {took:?}",
            faults.kills,
            faults.leader_kills,
            faults.pauses,
            faults.leader_pauses,
            history.len()
        );
        match result {
            Ok(stats) => println!("linearizable: {stats:?}"),
            Err(v) => panic!("not linearizable: key {}: {:#?}", v.key, v.events),
        }
        assert!(acked > 100, "too few writes were acknowledged to tell: {acked}");
        assert!(
            faults.kills + faults.pauses >= seconds / 8,
            "too few faults in {seconds} s"
        );
    });
}
