//! Control-plane benchmark: three nodes in one process over loopback HTTP,
//! 64 concurrent clients through the typed HTTP client.
//!
//! - guarded saves (a linearizable read of the record, then a write guarded
//!   by its mod revision: a registry's read-compare-write) against plain
//!   puts, in the same run, interleaved, each client on its own key;
//! - watch delivery latency at that load: from a write being sent to its
//!   event arriving at watchers on the leader and on a follower (over HTTP,
//!   newline-delimited JSON).
//!
//! `cargo bench -p ramrod-tests --bench control_plane` prints a report and
//! writes it to `target/bench-reports/control_plane.md`; without `--bench`
//! (as `cargo test` runs benches) it runs a short smoke version.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ramrod::client::Client;
use ramrod::internals::node::Node;
use ramrod::{Filter, Guard, WatchUpdate};
use ramrod_tests::Ports;

const TOKEN: &str = "bench-token-123";
const CLIENTS: usize = 64;
const VALUE_BYTES: usize = 512;

/// When each write was sent, by key and value, for the watchers.
type Sent = Arc<Mutex<HashMap<(String, String), Instant>>>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Guarded,
}

struct Run {
    ops: f64,
    p50: f64,
    p99: f64,
    /// Writes that did not go through: a save refused by its guard (none
    /// expected: each client owns its key), or an error under load.
    refused: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn cluster(dir: &Path) -> (Vec<Node>, Ports) {
    let ports = Ports::bind(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let mut c = ramrod_tests::node_config(id, &ports, dir, TOKEN);
        // The defaults, not the tests' quick elections: 64 clients load the
        // machine.
        c.raft = ramrod::RaftTiming::default();
        c.policy.name = Some("entries".into());
        c.policy.config =
            toml::from_str("snapshot_every = 20000\nkeep_entries = 2000\ncheck_ms = 200").unwrap();
        nodes.push(ramrod_tests::start(&ports, c).await.unwrap());
    }
    nodes[0].initialize().await.unwrap();
    nodes[0]
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    (nodes, ports)
}

/// `CLIENTS` clients for `secs`, each writing its own key.
async fn run(leader: &Client, mode: Mode, secs: f64, round: usize, sent: &Sent) -> Run {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let client = leader.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                let key = format!("bench/vm-{c:03}");
                let (mut lat, mut refused, mut n) = (Vec::new(), 0u64, 0u64);
                while Instant::now() < until {
                    let value = format!("{round}-{n}-{}", "x".repeat(VALUE_BYTES));
                    let t = Instant::now();
                    sent.lock().unwrap().insert((key.clone(), value.clone()), t);
                    let ok = match mode {
                        Mode::Plain => client.put(&key, value).await.is_ok(),
                        Mode::Guarded => match client.get_kv(&key, false).await {
                            Ok(seen) => {
                                let guard = seen.map_or(Guard::Absent, |kv| {
                                    Guard::ModRevision(kv.mod_revision)
                                });
                                client.put_if(&key, value, guard).await.is_ok()
                            }
                            Err(_) => false,
                        },
                    };
                    if ok {
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    } else {
                        refused += 1;
                    }
                    n += 1;
                }
                (lat, refused)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (l, r) = t.await.unwrap();
        all.extend(l);
        refused += r;
    }
    all.sort_by(f64::total_cmp);
    Run {
        ops: all.len() as f64 / secs,
        p50: pct(&all, 0.5),
        p99: pct(&all, 0.99),
        refused,
    }
}

/// Reads a watch until `stop`, recording each event's delay since its
/// write was sent.
async fn watcher(
    client: Client,
    sent: Sent,
    delays: Arc<Mutex<Vec<f64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut w = client
        .watch(&Filter::Prefix(b"bench/".to_vec()), None, true)
        .await
        .unwrap();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(500), w.next()).await {
            Ok(Ok(WatchUpdate::Event(e))) => {
                let k = (
                    String::from_utf8_lossy(&e.kv.key).into_owned(),
                    String::from_utf8_lossy(&e.kv.value).into_owned(),
                );
                let at = sent.lock().unwrap().get(&k).copied();
                if let Some(at) = at {
                    delays
                        .lock()
                        .unwrap()
                        .push(at.elapsed().as_secs_f64() * 1e3);
                }
            }
            Ok(Ok(WatchUpdate::Progress { .. })) | Err(_) => {}
            Ok(Err(e)) => panic!("the watch ended: {e}"),
        }
    }
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (secs, rounds) = if quick { (0.3, 1) } else { (4.0, 5) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _ports) = cluster(dir.path()).await;
        let leader_id = nodes[0].wait_for_leader(Duration::from_secs(10)).await.unwrap();
        let leader = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        let client = |n: &Node| {
            Client::new(&n.addr().unwrap().to_string())
                .unwrap()
                .with_token(TOKEN)
        };
        let sent: Sent = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (on_leader, on_follower) = (Arc::default(), Arc::default());
        let w1 = tokio::spawn(watcher(
            client(leader),
            sent.clone(),
            Arc::clone(&on_leader),
            stop.clone(),
        ));
        let w2 = tokio::spawn(watcher(
            client(follower),
            sent.clone(),
            Arc::clone(&on_follower),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lead_client = client(leader);
        let mut plain = Vec::new();
        let mut guarded = Vec::new();
        for round in 0..rounds {
            for mode in [Mode::Plain, Mode::Guarded] {
                let r = run(&lead_client, mode, secs, round, &sent).await;
                eprintln!(
                    "round {round} {:<8} {:>7.0}/s p50 {:.2} ms p99 {:.2} ms refused {}",
                    if mode == Mode::Plain { "plain" } else { "guarded" },
                    r.ops,
                    r.p50,
                    r.p99,
                    r.refused
                );
                if mode == Mode::Plain {
                    plain.push(r);
                } else {
                    guarded.push(r);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = tokio::join!(w1, w2);
        let med = |rs: &[Run], f: fn(&Run) -> f64| median(&mut rs.iter().map(f).collect::<Vec<_>>());
        let (p_ops, g_ops) = (med(&plain, |r| r.ops), med(&guarded, |r| r.ops));
        let mut lat_l = on_leader.lock().unwrap().clone();
        let mut lat_f = on_follower.lock().unwrap().clone();
        lat_l.sort_by(f64::total_cmp);
        lat_f.sort_by(f64::total_cmp);
        let mut report = String::new();
        writeln!(
            report,
            "# Control-plane benchmark\n\n3 nodes in one process over loopback HTTP, {cores} cores, \
             {CLIENTS} concurrent clients on the leader through the typed HTTP client, each on its \
             own key, {VALUE_BYTES}-byte values, {secs} s per run, {rounds} rounds, plain and guarded \
             interleaved; medians of the rounds. Two watchers (prefix, with values) over HTTP, one on \
             the leader and one on a follower, run throughout.\n\n\
             | writes | per second | p50 ms | p99 ms | vs plain | refused |\n|---|---|---|---|---|---|\n\
             | plain puts | {:.0} | {:.2} | {:.2} | 1.00x | {} |\n\
             | guarded saves (linearizable read, then put if mod revision) | {:.0} | {:.2} | {:.2} | {:.2}x | {} |\n\n\
             Watch delivery, from a write being sent to its event arriving (both phases; events \
             delivered: leader {}, follower {}):\n\n\
             | watcher | p50 ms | p99 ms |\n|---|---|---|\n\
             | on the leader | {:.2} | {:.2} |\n\
             | on a follower | {:.2} | {:.2} |",
            p_ops,
            med(&plain, |r| r.p50),
            med(&plain, |r| r.p99),
            plain.iter().map(|r| r.refused).sum::<u64>(),
            g_ops,
            med(&guarded, |r| r.p50),
            med(&guarded, |r| r.p99),
            g_ops / p_ops,
            guarded.iter().map(|r| r.refused).sum::<u64>(),
            lat_l.len(),
            lat_f.len(),
            pct(&lat_l, 0.5),
            pct(&lat_l, 0.99),
            pct(&lat_f, 0.5),
            pct(&lat_f, 0.99),
        )
        .unwrap();
        for n in nodes {
            n.shutdown().await;
        }
        report
    });
    print!("{report}");
    if !quick {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-reports");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("control_plane.md"), &report).unwrap();
        println!("written to target/bench-reports/control_plane.md");
    }
}
