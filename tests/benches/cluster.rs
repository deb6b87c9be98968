//! Cluster benchmark: three nodes in one process over loopback HTTP.
//!
//! - write throughput and latency under four compaction setups, in one run,
//!   interleaved: the `adaptive` Wasm policy, the `entries` Wasm policy, the
//!   same `entries` logic compiled in (the native fallback), and openraft's
//!   own `LogsSinceLast` with full snapshots (the baseline);
//! - the bytes a follower that was down receives to catch up (segments it
//!   fetched plus Raft RPC bodies) against the data changed meanwhile and
//!   the full state;
//! - time for a restarted node to be ready (all entries applied) from its
//!   snapshot chain plus the log tail, against replaying its whole log.
//!
//! `cargo bench -p ramrod-tests --bench cluster` prints a report and writes
//! it to `target/bench-reports/cluster.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ramrod::NodeConfig;
use ramrod::internals::node::Node;
use ramrod::internals::raft::{Command, Request};
use ramrod_tests::Ports;

const TOKEN: &str = "bench-token-123";
const VALUE_BYTES: usize = 256;

/// A compaction setup under test.
#[derive(Clone)]
struct Setup {
    label: &'static str,
    policy: &'static str,
    policy_toml: String,
    /// openraft's own snapshot policy instead of the controller.
    builtin: Option<(u64, u64)>,
    max_chain: Option<usize>,
}

fn setups(every: u64, keep: u64) -> Vec<Setup> {
    let entries = format!(
        "snapshot_every = {every}\nkeep_entries = {keep}\ncheck_ms = 100\nkind = \"incremental\""
    );
    vec![
        Setup {
            label: "adaptive (Wasm)",
            policy: "adaptive",
            policy_toml: format!(
                "max_entries = {every}\nkeep_entries = {keep}\nmax_bytes = 1073741824\n\
                 max_age_ms = 3600000\nmin_check_ms = 50\nmax_check_ms = 500\n\
                 lag_budget_entries = 1000000"
            ),
            builtin: None,
            max_chain: None,
        },
        Setup {
            label: "entries (Wasm)",
            policy: "entries",
            policy_toml: entries.clone(),
            builtin: None,
            max_chain: None,
        },
        Setup {
            label: "entries (native fallback)",
            policy: "native",
            policy_toml: entries,
            builtin: None,
            max_chain: None,
        },
        Setup {
            label: "openraft LogsSinceLast, full",
            policy: "native",
            policy_toml: String::new(),
            builtin: Some((every, keep)),
            max_chain: Some(1),
        },
    ]
}

fn config(id: u64, ports: &Ports, dir: &Path, s: &Setup) -> NodeConfig {
    let mut c = ramrod_tests::node_config(id, ports, dir, TOKEN);
    c.policy.name = Some(s.policy.into());
    c.policy.config = toml::from_str(&s.policy_toml).expect("policy config");
    if let Some((every, keep)) = s.builtin {
        c.raft.builtin_snapshot_every = Some(every);
        c.raft.builtin_keep = keep;
    }
    if let Some(m) = s.max_chain {
        c.snapshots.max_chain = m;
    }
    c
}

async fn start(dir: &Path, s: &Setup, n: usize) -> (Vec<Node>, Ports) {
    let ports = Ports::bind(n);
    let mut nodes = Vec::new();
    for id in 1..=n as u64 {
        nodes.push(
            ramrod_tests::start(&ports, config(id, &ports, dir, s))
                .await
                .unwrap(),
        );
    }
    nodes[0].initialize().await.unwrap();
    nodes[0]
        .internals()
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap();
    (nodes, ports)
}

fn leader(nodes: &[Node]) -> &Node {
    let id = nodes[0]
        .internals()
        .raft
        .metrics()
        .borrow()
        .current_leader
        .unwrap();
    nodes.iter().find(|n| n.id() == id).unwrap()
}

fn rand_value(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(VALUE_BYTES);
    while v.len() < VALUE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(VALUE_BYTES);
    v
}

fn key(i: u64) -> Vec<u8> {
    format!("microvm/{i:08}").into_bytes()
}

/// Writes random updates over `keys` keys with `concurrency` writers for
/// `secs`; returns acknowledged writes and their latencies (µs).
async fn load(node: &Node, keys: u64, concurrency: u64, secs: f64) -> (u64, Vec<u32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (raft, stop, seq) = (node.internals().raft.clone(), stop.clone(), seq.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = seq.fetch_add(1, Ordering::Relaxed);
                    let k = i.wrapping_mul(0x2545_F491_4F6C_DD1D) % keys;
                    let t = Instant::now();
                    raft.client_write(Request::put(key(k), rand_value(i)))
                        .await
                        .expect("write acknowledged");
                    lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as u64, all)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    f64::from(sorted[i]) / 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Run {
    ops: f64,
    p50: f64,
    p99: f64,
    snapshots: u64,
    log_entries: u64,
    /// Decisions per node per second.
    decisions: f64,
    /// Time spent deciding, as a share of the run, per node.
    decide_share: f64,
}

async fn throughput(s: &Setup, secs: f64, keys: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _) = start(dir.path(), s, 3).await;
    let lead = leader(&nodes);
    let t = Instant::now();
    // Warm up: connections, policy instances, first snapshot.
    load(lead, keys, 32, secs / 4.0).await;
    let (n, mut lat) = load(lead, keys, 32, secs).await;
    let wall = t.elapsed().as_secs_f64() * nodes.len() as f64;
    let audit: Vec<_> = nodes
        .iter()
        .flat_map(|n| {
            n.internals()
                .controller
                .shared()
                .audit(ramrod::internals::node::controller::AUDIT_CAPACITY)
        })
        .collect();
    let deciding = audit
        .iter()
        .fold(0.0, |acc, e| acc + e.record.elapsed.as_secs_f64());
    lat.sort_unstable();
    let st = lead.internals().sm.stats();
    let run = Run {
        ops: n as f64 / secs,
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        snapshots: st.full + st.incremental,
        log_entries: lead.internals().log.stats().entries,
        decisions: audit.len() as f64 / wall,
        decide_share: deciding / wall,
    };
    for n in nodes {
        n.shutdown().await;
    }
    run
}

/// Waits until `cond` holds (up to 120 s).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(120), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn applied(n: &Node) -> u64 {
    n.internals().sm.last_applied().map_or(0, |l| l.index)
}

/// Writes `writes` single-key updates to keys from `pick`, 64 at a time.
async fn updates(node: &Node, writes: u64, pick: impl Fn(u64) -> u64, round: u64) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..writes {
        let raft = node.internals().raft.clone();
        let k = pick(i);
        set.spawn(async move {
            raft.client_write(Request::put(key(k), rand_value(round << 32 | i)))
                .await
                .expect("write acknowledged");
        });
        if set.len() >= 64 {
            set.join_next().await;
        }
    }
    while set.join_next().await.is_some() {}
}

struct CatchUp {
    state_bytes: u64,
    changed_bytes: u64,
    written_bytes: u64,
    /// Layers of the installed chain with a segment the follower lacked.
    layers: usize,
    fetched: u64,
    rpc_bytes: u64,
    installs: u64,
}

/// A follower down while the leader writes `windows` times its snapshot
/// interval (plus a little) of updates to 2% of the keys; the leader's
/// policy snapshots and purges as it would.
async fn catch_up(keys: u64, windows: u64) -> CatchUp {
    let every = (keys / 10).max(500);
    let s = Setup {
        label: "catch-up",
        policy: "entries",
        policy_toml: format!(
            "snapshot_every = {every}\nkeep_entries = 100\ncheck_ms = 50\nkind = \"incremental\""
        ),
        builtin: None,
        max_chain: Some(64),
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, ports) = start(dir.path(), &s, 3).await;
    // The initial state, in batches.
    for b in 0..keys.div_ceil(100) {
        let commands = (b * 100..((b + 1) * 100).min(keys))
            .map(|i| Command::Put {
                key: key(i),
                value: rand_value(i),
            })
            .collect();
        leader(&nodes)
            .internals()
            .raft
            .client_write(Request { commands })
            .await
            .unwrap();
    }
    let lead_id = leader(&nodes).id();
    let f = nodes
        .iter()
        .map(|n| n.id())
        .find(|&i| i != lead_id)
        .unwrap();
    let take_down = |nodes: &mut Vec<Node>| {
        let pos = nodes.iter().position(|n| n.id() == f).unwrap();
        nodes.remove(pos)
    };
    // Round 1: down past a snapshot and purge: it installs the leader's base.
    let down = take_down(&mut nodes);
    let had = applied(&down);
    ramrod_tests::stop(&ports, down).await;
    updates(leader(&nodes), every + 500, |i| i % keys, 1).await;
    let target = applied(leader(&nodes));
    // A snapshot of everything, so the follower installs exactly the state
    // it will later be behind from.
    leader(&nodes)
        .internals()
        .controller
        .snapshot(Some(ramrod::internals::snapshot::SnapshotKind::Incremental))
        .await
        .unwrap();
    until("leader purged (1)", || {
        leader(&nodes).internals().log.stats().first_index > had + 1
    })
    .await;
    let back = ramrod_tests::start(&ports, config(f, &ports, dir.path(), &s))
        .await
        .unwrap();
    until("caught up (1)", || applied(&back) >= target).await;
    nodes.push(back);

    // Round 2: 2% of the keys change (each several times) while it is down.
    let changed = (keys / 50).max(10);
    let down = take_down(&mut nodes);
    let had = applied(&down);
    ramrod_tests::stop(&ports, down).await;
    let writes = windows * every + 500;
    updates(
        leader(&nodes),
        writes,
        |i| (i % changed).wrapping_mul(7919) % keys,
        2,
    )
    .await;
    let target = applied(leader(&nodes));
    until("leader purged (2)", || {
        leader(&nodes).internals().log.stats().first_index > had + 1
    })
    .await;
    let had_segments =
        ramrod_tests::stored_segments(&dir.path().join(format!("node-{f}/snapshots"))).await;
    let lead = leader(&nodes);
    let sent_before = lead.internals().sent.to(f);
    let back = ramrod_tests::start(&ports, config(f, &ports, dir.path(), &s))
        .await
        .unwrap();
    until("caught up (2)", || applied(&back) >= target).await;
    let lead = leader(&nodes);
    let rpc_bytes = lead.internals().sent.to(f) - sent_before;
    let fetched = back.internals().sm.last_install().map_or(0, |(_, f)| f);
    let layers = back.internals().sm.last_install().map_or(0, |(m, _)| {
        std::iter::once(&m.base)
            .chain(&m.deltas)
            .filter(|l| l.segments.iter().any(|s| !had_segments.contains(&s.name)))
            .count()
    });
    let r = CatchUp {
        state_bytes: lead.internals().sm.state_bytes(),
        changed_bytes: changed * (key(0).len() + VALUE_BYTES) as u64,
        written_bytes: writes * (key(0).len() + VALUE_BYTES) as u64,
        layers,
        fetched,
        rpc_bytes,
        installs: back.internals().sm.stats().installed,
    };
    nodes.push(back);
    for n in nodes {
        n.shutdown().await;
    }
    r
}

/// Time to ready after a restart: with snapshots (chain + tail) and without
/// (the whole log replayed), same writes.
/// `(ready ms, log entries at restart, snapshot restore ms)`.
type Ready = (f64, u64, u64);

async fn restart(writes: u64, keys: u64) -> (Ready, Ready) {
    let with = Setup {
        label: "snapshots",
        policy: "adaptive",
        policy_toml: format!(
            "max_entries = {}\nkeep_entries = 1000\nmax_bytes = 1073741824\nmin_check_ms = 50\nmax_check_ms = 500",
            (writes / 20).clamp(1_000, 10_000)
        ),
        builtin: None,
        max_chain: None,
    };
    let without = Setup {
        label: "no snapshots",
        policy: "entries",
        policy_toml: "snapshot_every = 1000000000000\ncheck_ms = 1000".into(),
        builtin: None,
        max_chain: None,
    };
    let mut out = Vec::new();
    for s in [&with, &without] {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, ports) = start(dir.path(), s, 1).await;
        updates(&nodes[0], writes, |i| i % keys, 3).await;
        let last = applied(&nodes[0]);
        // Let the controller finish its last snapshot and purge.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let entries = nodes[0].internals().log.stats().entries;
        for n in nodes {
            n.shutdown().await;
        }
        let t = Instant::now();
        let node = ramrod_tests::start(&ports, config(1, &ports, dir.path(), s))
            .await
            .unwrap();
        until("ready", || applied(&node) >= last).await;
        out.push((
            t.elapsed().as_secs_f64() * 1000.0,
            entries,
            node.internals().recovery.restore_ms,
        ));
        node.shutdown().await;
    }
    (out[0], out[1])
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (secs, rounds, keys) = if quick {
        (0.5, 1, 2_000)
    } else {
        (4.0, 5, 20_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut report = String::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    writeln!(
        report,
        "# Cluster benchmark\n\n3 nodes in one process over loopback HTTP, {cores} cores. \
         Writes of {VALUE_BYTES}-byte values over {keys} keys, 32 concurrent writers on the leader, \
         {secs} s per run, {rounds} rounds, setups interleaved; medians.\n"
    )
    .unwrap();

    let every = 5_000;
    let list = setups(every, 1_000);
    let mut results: Vec<Vec<Run>> = list.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, s) in list.iter().enumerate() {
            let r = rt.block_on(throughput(s, secs, keys));
            eprintln!(
                "round {round} {:<30} {:>8.0} writes/s p99 {:.2} ms",
                s.label, r.ops, r.p99
            );
            results[i].push(r);
        }
    }
    writeln!(
        report,
        "## Write throughput (snapshot every {every} entries, keep 1000)\n\n\
         | setup | writes/s | p50 ms | p99 ms | vs native | snapshots per run | leader log at end | decisions/s per node | time deciding |\n|---|---|---|---|---|---|---|---|---|"
    )
    .unwrap();
    let med: Vec<(f64, f64, f64)> = results
        .iter_mut()
        .map(|rs| {
            (
                median(&mut rs.iter().map(|r| r.ops).collect::<Vec<_>>()),
                median(&mut rs.iter().map(|r| r.p50).collect::<Vec<_>>()),
                median(&mut rs.iter().map(|r| r.p99).collect::<Vec<_>>()),
            )
        })
        .collect();
    let native = med[2].0;
    for (i, s) in list.iter().enumerate() {
        let last = results[i].last().unwrap();
        writeln!(
            report,
            "| {} | {:.0} | {:.2} | {:.2} | {:.3}x | {} | {} | {:.1} | {:.4}% |",
            s.label,
            med[i].0,
            med[i].1,
            med[i].2,
            med[i].0 / native,
            last.snapshots,
            last.log_entries,
            last.decisions,
            last.decide_share * 100.0
        )
        .unwrap();
    }

    let one = rt.block_on(catch_up(keys, 1));
    let three = rt.block_on(catch_up(keys, 3));
    let every_c = (keys / 10).max(500);
    writeln!(
        report,
        "\n## Follower catch-up\n\nA follower that holds the leader's state up to a snapshot is down \
         while 2% of {keys} keys change (random, incompressible values, each key many times); the \
         leader's `entries` policy snapshots (incremental) every {every_c} entries and purges as \
         usual. Down for one snapshot interval, then for three. Ratios are to the distinct data \
         changed (distinct keys × (key + value)).\n\n\
         | | down 1 interval | down 3 intervals |\n|---|---|---|\n\
         | installs on return | {} | {} |\n\
         | layers the follower lacked | {} | {} |\n\
         | data changed, distinct | {} B | {} B |\n\
         | data written (every update) | {:.2}x | {:.2}x |\n\
         | segments fetched | {:.2}x | {:.2}x |\n\
         | Raft RPC bodies (manifest, log tail, heartbeats) | {:.2}x | {:.2}x |\n\
         | total transferred | {:.2}x | {:.2}x |\n\
         | full state | {:.2}x | {:.2}x |",
        one.installs,
        three.installs,
        one.layers,
        three.layers,
        one.changed_bytes,
        three.changed_bytes,
        one.written_bytes as f64 / one.changed_bytes as f64,
        three.written_bytes as f64 / three.changed_bytes as f64,
        one.fetched as f64 / one.changed_bytes as f64,
        three.fetched as f64 / three.changed_bytes as f64,
        one.rpc_bytes as f64 / one.changed_bytes as f64,
        three.rpc_bytes as f64 / three.changed_bytes as f64,
        (one.fetched + one.rpc_bytes) as f64 / one.changed_bytes as f64,
        (three.fetched + three.rpc_bytes) as f64 / three.changed_bytes as f64,
        one.state_bytes as f64 / one.changed_bytes as f64,
        three.state_bytes as f64 / three.changed_bytes as f64,
    )
    .unwrap();

    let writes = if quick { 5_000 } else { 200_000 };
    let ((with, e_with, r_with), (without, e_without, _)) = rt.block_on(restart(writes, keys));
    writeln!(
        report,
        "\n## Restart to ready\n\nOne node, {writes} writes over {keys} keys (a history ten times \
         the state), restarted; time until every entry is applied. With snapshots: the `adaptive` \
         policy, every 10,000 entries (or a twentieth of the writes), keeping 1,000; it rebases \
         when the deltas outweigh the base.\n\n| | log entries at restart | ready ms | of which snapshot restore |\n|---|---|---|---|\n\
         | snapshot chain + log tail | {e_with} | {with:.0} | {r_with} |\n\
         | whole log replayed (no snapshots) | {e_without} | {without:.0} | 0 |\n\n\
         Replay / snapshot: {:.1}x.",
        without / with
    )
    .unwrap();

    print!("{report}");
    if !quick {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-reports");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("cluster.md"), &report).unwrap();
        println!("written to target/bench-reports/cluster.md");
    }
}
