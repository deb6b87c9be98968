//! `ramrod demo`: a 3-node cluster on loopback under a Flintlock-like
//! workload, with live progress, a cluster-wide policy hot swap, kill -9 and
//! restart of a follower, and a check that every acknowledged write is on
//! every node.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ramrod::client::{Client, ClientError, PolicyUpload};
use ramrod::internals::harness::{ClusterSpec, ProcessCluster};
use ramrod::{Scope, Status};
use serde_json::{Value, json};

const TOKEN: &str = "demo-token";
const NODES: u64 = 3;
/// Writers; each owns its namespace, so the last acknowledged value of a
/// key is well defined.
const WRITERS: usize = 12;

/// `ramrod demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long the workload runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Where the nodes keep their data (default: a fresh temporary
    /// directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the data directory at the end.
    #[arg(long)]
    keep: bool,
    /// Run the cluster over mutual TLS (a fresh cluster CA and node
    /// certificates in DIR/certs) instead of the cluster secret.
    #[arg(long)]
    tls: bool,
}

fn spec(tls: bool) -> ClusterSpec {
    ClusterSpec {
        nodes: NODES,
        token: TOKEN.into(),
        // Thresholds sized for a one-minute demo; production defaults are
        // far larger (see `ramrod policy check adaptive`).
        extra_toml: "[policy]\nname = \"adaptive\"\n\
              config = { max_entries = 4000, max_bytes = 4194304, keep_entries = 1000, \
              max_age_ms = 8000, max_chain_length = 6, lag_budget_entries = 5000, \
              retain_snapshots = 3, min_check_ms = 100, max_check_ms = 1000 }\n"
            .into(),
        raft_ms: (100, 600, 1200),
        rust_log: "warn,ramrod::controller=info".into(),
        log_files: true,
        tls,
        // A fresh secret for this demo's cluster.
        ..ClusterSpec::default()
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ramrod-demo-{}", std::process::id())),
            true,
        ),
    };
    if dir.join("node-1").exists() {
        bail!(
            "{} already holds a demo cluster; give another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cluster = ProcessCluster::new(&std::env::current_exe()?, &dir, spec(args.tls))
        .context("setting up the cluster")?;
    println!(
        "ramrod demo: 3 nodes on loopback, data in {}; peers authenticated by {}",
        dir.display(),
        match cluster.ca_file() {
            Some(ca) => format!("mutual TLS (CA {})", ca.display()),
            None => "a fresh cluster secret".to_string(),
        }
    );
    for id in 1..=NODES {
        cluster
            .start(id)
            .with_context(|| format!("starting node {id}"))?;
        println!("  node {id}: {} (log: node-{id}.log)", cluster.url(id));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(demo(&mut cluster, args.seconds.max(10)));
    drop(cluster);
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("data kept in {}", dir.display());
    }
    result
}

#[derive(Default)]
struct Totals {
    acked: AtomicU64,
    retries: AtomicU64,
}

/// A microVM spec as Flintlock stores it (abridged).
fn microvm(ns: usize, n: u64, generation: u64, state: &str) -> Value {
    json!({
        "id": {"namespace": format!("tenant-{ns:02}"), "name": format!("vm-{n:05}"), "uid": format!("{:016x}", (ns as u64) << 40 | n)},
        "spec": {
            "vcpu": 1 + n % 4,
            "memory_in_mb": 512 << (n % 3),
            "kernel": {"image": "ghcr.io/weaveworks-liquidmetal/flintlock-kernel:5.10.77", "cmdline": {"console": "ttyS0", "reboot": "k", "panic": "1"}},
            "root_volume": {"id": "root", "source": {"container_source": "ghcr.io/weaveworks-liquidmetal/capmvm-k8s-os:1.23.5"}},
            "interfaces": [{"device_id": "eth0", "type": "macvtap", "guest_mac": format!("02:00:00:{:02x}:{:02x}:{:02x}", ns, (n >> 8) & 0xff, n & 0xff)}],
            "metadata": {"meta-data": "instance_id: vm", "user-data": "#cloud-config\nhostname: vm"},
            "labels": {"cluster": format!("tenant-{ns:02}"), "role": if n.is_multiple_of(3) { "control-plane" } else { "worker" }},
        },
        "status": {"state": state, "generation": generation, "host": format!("host-{}", n % 7)},
    })
}

/// One writer: creates microVMs in its namespace, updates their status,
/// deletes some. Every write is retried until acknowledged; returns the
/// last acknowledged value of each key (`None`: deleted) and latencies (µs).
async fn writer(
    ns: usize,
    nodes: Vec<Client>,
    leader: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) -> (BTreeMap<String, Option<String>>, Vec<u32>) {
    let mut model = BTreeMap::new();
    let mut lat = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ns as u64;
    let mut next = 0u64;
    let mut live: Vec<(u64, u64)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let (key, value) = match rng % 10 {
            // Update a running VM's status.
            0..=5 if !live.is_empty() => {
                let i = (rng >> 8) as usize % live.len();
                live[i].1 += 1;
                let (n, g) = live[i];
                let state = ["running", "pending", "running", "stopped"][(g % 4) as usize];
                (
                    format!("microvms/tenant-{ns:02}/vm-{n:05}"),
                    Some(microvm(ns, n, g, state).to_string()),
                )
            }
            // Delete one.
            6 if live.len() > 50 => {
                let i = (rng >> 8) as usize % live.len();
                let (n, _) = live.swap_remove(i);
                (format!("microvms/tenant-{ns:02}/vm-{n:05}"), None)
            }
            // Create one.
            _ => {
                let n = next;
                next += 1;
                live.push((n, 1));
                (
                    format!("microvms/tenant-{ns:02}/vm-{n:05}"),
                    Some(microvm(ns, n, 1, "pending").to_string()),
                )
            }
        };
        let t = Instant::now();
        loop {
            // The node the leader was last seen on; the client follows a
            // 421 from there if the leader moved.
            let at = leader.load(Ordering::Relaxed) as usize % nodes.len();
            let node = &nodes[at];
            let done = match &value {
                Some(v) => node.put(&key, v.clone()).await,
                None => node.delete(&key).await,
            };
            match done {
                Ok(_) => break,
                Err(e) => {
                    // No leader yet (an election), or that node is down: try
                    // the next one a little later; it points at the leader.
                    if !matches!(
                        e,
                        ClientError::NotLeader {
                            leader: Some(_),
                            ..
                        }
                    ) {
                        leader.store(at as u64 + 1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            totals.retries.fetch_add(1, Ordering::Relaxed);
        }
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        totals.acked.fetch_add(1, Ordering::Relaxed);
        model.insert(key, value);
    }
    (model, lat)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// One status line per node.
fn node_cell(id: u64, s: &Option<Status>) -> String {
    match s {
        None => format!("n{id} down"),
        Some(s) => format!(
            "n{id} {} log {:>6} e {:>5.1} MB snaps {}f+{}i purged {:>6}",
            if s.is_leader() { "L" } else { "F" },
            s.log.entries,
            mb(s.log.bytes),
            s.snapshots.full,
            s.snapshots.incremental,
            s.controller.purged_entries,
        ),
    }
}

async fn demo(cluster: &mut ProcessCluster, seconds: u64) -> Result<ExitCode> {
    let nodes: Vec<Client> = (1..=NODES).map(|i| cluster.client(i)).collect();
    let Some(leader_id) = cluster.leader(Duration::from_secs(30)).await else {
        bail!(
            "no leader after 30 s; see the node logs in {}",
            cluster.dir().display()
        );
    };
    println!("node {leader_id} leads; writing microVM specs for {seconds} s ({WRITERS} writers)\n");
    // The leader as an index into `nodes`.
    let leader = Arc::new(AtomicU64::new(leader_id - 1));
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|ns| {
            tokio::spawn(writer(
                ns,
                nodes.clone(),
                leader.clone(),
                stop.clone(),
                totals.clone(),
            ))
        })
        .collect();

    let victim = (1..=NODES).find(|&i| i != leader_id).unwrap_or(NODES);
    let swap_at = seconds * 35 / 100;
    let kill_at = seconds / 2;
    let restart_at = seconds * 75 / 100;
    let (mut swapped, mut killed, mut restarted) = (false, false, false);
    let mut last_seq: Option<u64> = None;
    let start = Instant::now();
    let mut last_acked = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while start.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let t = start.elapsed().as_secs();
        let acked = totals.acked.load(Ordering::Relaxed);
        let mut cells = Vec::new();
        for id in 1..=NODES {
            let s = cluster.status(id).await;
            if s.as_ref().is_some_and(Status::is_leader) {
                leader.store(id - 1, Ordering::Relaxed);
            }
            cells.push(node_cell(id, &s));
        }
        println!(
            "{t:>3}s {acked:>7} writes {:>5}/s | {}",
            acked - last_acked,
            cells.join(" | ")
        );
        last_acked = acked;
        // The leader's latest decisions that did something.
        let lead = &nodes[leader.load(Ordering::Relaxed) as usize % nodes.len()];
        if let Ok(ds) = lead.decisions(20).await {
            for d in ds {
                if last_seq.is_some_and(|l| d.seq <= l) {
                    continue;
                }
                last_seq = Some(d.seq);
                let acts: Vec<String> = d.actions.iter().map(ToString::to_string).collect();
                if !acts.is_empty() {
                    println!(
                        "      leader decision by {} ({}): {} -> {}",
                        d.record.policy,
                        d.trigger,
                        d.record.decision.reason,
                        acts.join("; ")
                    );
                }
            }
        }
        if !swapped && t >= swap_at {
            swapped = true;
            let config = "max_bytes = 2097152\nmax_age_ms = 5000\nkeep_entries = 1000\n\
                          kind = \"incremental\"\ncheck_ms = 250";
            let upload = PolicyUpload::Builtin("bytes-or-age".into());
            match lead.swap_policy(upload, config, Scope::Cluster).await {
                Ok(s) => println!(
                    "  >>> hot swap: rolled out bytes-or-age ({}) through the Raft log at index {}; every node switches there",
                    s.hash.get(..12).unwrap_or(&s.hash),
                    s.index.map_or_else(|| "?".into(), |i| i.to_string())
                ),
                Err(e) => println!("  >>> hot swap refused: {e}"),
            }
        }
        if !killed && t >= kill_at {
            killed = true;
            cluster.kill(victim);
            println!("  >>> kill -9 node {victim} (a follower); writes go on");
        }
        if killed && !restarted && t >= restart_at {
            restarted = true;
            cluster.start(victim)?;
            println!("  >>> restarting node {victim}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut model = BTreeMap::new();
    let mut lat = Vec::new();
    for w in writers {
        let (m, l) = w.await?;
        model.extend(m);
        lat.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if !restarted {
        cluster.start(victim)?;
    }

    // Recovery of the restarted node.
    let t = Instant::now();
    let back = loop {
        if let Some(s) = cluster.status(victim).await {
            break s;
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("node {victim} did not come back");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = &back.recovery;
    let opt = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
    match r.snapshot_index {
        None => println!(
            "\nnode {victim} recovered: no snapshot yet, replayed its log to index {}; ready in {} ms",
            opt(r.applied_at_ready),
            r.ready_ms
        ),
        Some(index) => println!(
            "\nnode {victim} recovered: snapshot chain of {} layers at index {index} ({:.1} MB verified in {} ms), log tail replayed to index {}; ready in {} ms",
            r.layers,
            mb(r.bytes_read),
            r.restore_ms,
            opt(r.applied_at_ready),
            r.ready_ms
        ),
    }

    // Wait until every node applied the same state.
    print!("waiting for every node to converge ... ");
    std::io::stdout().flush()?;
    let t = Instant::now();
    let finals = loop {
        let mut all = Vec::new();
        for id in 1..=NODES {
            all.push(cluster.status(id).await);
        }
        let hashes: Vec<Option<&str>> = all
            .iter()
            .map(|s| s.as_ref().map(|s| s.state_hash.as_str()))
            .collect();
        if hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
            break all.into_iter().flatten().collect::<Vec<_>>();
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("the nodes did not converge: {hashes:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("done in {} ms", t.elapsed().as_millis());

    // Every acknowledged write, read back from every node's own state.
    let mut missing = 0usize;
    for (id, node) in (1..=NODES).zip(&nodes) {
        let mut seen = BTreeMap::new();
        for ns in 0..WRITERS {
            let prefix = format!("microvms/tenant-{ns:02}/");
            let mut after: Option<String> = None;
            loop {
                let page = node.list(&prefix, after.as_deref(), 5000, true).await?;
                for kv in &page.kvs {
                    seen.insert(
                        String::from_utf8_lossy(&kv.key).into_owned(),
                        String::from_utf8_lossy(&kv.value).into_owned(),
                    );
                }
                after = page
                    .kvs
                    .last()
                    .map(|kv| String::from_utf8_lossy(&kv.key).into_owned());
                if !page.more {
                    break;
                }
            }
        }
        let bad = model
            .iter()
            .filter(|(k, v)| seen.get(*k) != v.as_ref())
            .count();
        let extra = seen.keys().filter(|k| !model.contains_key(*k)).count();
        missing += bad + extra;
        println!(
            "node {id}: {} keys; {} acknowledged writes checked, {} wrong or missing, {} unexpected",
            seen.len(),
            model.len(),
            bad,
            extra
        );
    }

    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |v| f64::from(*v) / 1000.0)
    };
    let acked = totals.acked.load(Ordering::Relaxed);
    println!("\nsummary");
    println!(
        "  workload   {acked} acknowledged writes in {elapsed:.0} s ({:.0}/s), latency p50 {:.1} ms, p99 {:.1} ms",
        acked as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    for s in &finals {
        let p = &s.policy;
        println!(
            "  node {}  log {} entries ({:.1} MB) | snapshots {} full + {} incremental, {} installed ({:.1} MB fetched) | {} decisions, {} entries purged | policy {} from {} at {}",
            s.id,
            s.log.entries,
            mb(s.log.bytes),
            s.snapshots.full,
            s.snapshots.incremental,
            s.snapshots.installed,
            mb(s.snapshots.bytes_fetched),
            s.controller.decisions,
            s.controller.purged_entries,
            p.name,
            p.origin,
            opt(p.index)
        );
    }
    if missing == 0 {
        println!(
            "  verified   every acknowledged write is on every node; state hashes equal ({})",
            finals[0].state_hash
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("  FAILED     {missing} keys differ from the acknowledged writes");
        Ok(ExitCode::FAILURE)
    }
}
