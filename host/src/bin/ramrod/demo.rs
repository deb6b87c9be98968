//! `ramrod demo`: a 3-node cluster on loopback under a Flintlock-like
//! workload, with live progress, a cluster-wide policy hot swap, kill -9 and
//! restart of a follower, and a check that every acknowledged write is on
//! every node.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
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
}

struct Cluster {
    dir: PathBuf,
    exe: PathBuf,
    ports: Vec<u16>,
    children: BTreeMap<u64, Child>,
}

impl Cluster {
    fn url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[id as usize - 1])
    }

    fn spawn(&mut self, id: u64) -> Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("node-{id}.log")))?;
        let child = Command::new(&self.exe)
            .arg("serve")
            .arg("--config")
            .arg(self.dir.join(format!("node-{id}.toml")))
            .env("RUST_LOG", "warn,ramrod::controller=info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        self.children.insert(id, child);
        Ok(())
    }

    fn kill9(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            // SIGTERM for a clean stop, SIGKILL if it hangs.
            // SAFETY: plain libc call on a child pid we own.
            #[expect(unsafe_code, reason = "SIGTERM has no safe wrapper in std")]
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    Ok(ls
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0))
        .collect())
}

fn write_configs(dir: &Path, ports: &[u16]) -> Result<()> {
    for id in 1..=NODES {
        let mut t = format!(
            "id = {id}\nlisten = \"127.0.0.1:{}\"\ndata-dir = \"node-{id}\"\ntoken = \"{TOKEN}\"\n\n",
            ports[id as usize - 1]
        );
        for p in (1..=NODES).filter(|&p| p != id) {
            t += &format!(
                "[[peers]]\nid = {p}\naddr = \"127.0.0.1:{}\"\n\n",
                ports[p as usize - 1]
            );
        }
        // Thresholds sized for a one-minute demo; production defaults are
        // far larger (see `ramrod policy check adaptive`).
        t += "[raft]\nheartbeat-ms = 100\nelection-min-ms = 600\nelection-max-ms = 1200\n\n\
              [policy]\nname = \"adaptive\"\n\
              config = { max_entries = 4000, max_bytes = 4194304, keep_entries = 1000, \
              max_age_ms = 8000, max_chain_length = 6, lag_budget_entries = 5000, \
              retain_snapshots = 3, min_check_ms = 100, max_check_ms = 1000 }\n";
        std::fs::write(dir.join(format!("node-{id}.toml")), t)?;
    }
    Ok(())
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
    let ports = free_ports(NODES as usize)?;
    write_configs(&dir, &ports)?;
    let mut cluster = Cluster {
        dir: dir.clone(),
        exe: std::env::current_exe()?,
        ports,
        children: BTreeMap::new(),
    };
    println!(
        "ramrod demo: 3 nodes on loopback, data in {}",
        dir.display()
    );
    for id in 1..=NODES {
        cluster.spawn(id)?;
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
    urls: Vec<String>,
    leader: Arc<std::sync::Mutex<String>>,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) -> (BTreeMap<String, Option<String>>, Vec<u32>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
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
        let mut attempt = 0;
        loop {
            let base = leader.lock().map(|l| l.clone()).unwrap_or_default();
            let req = match &value {
                Some(v) => http.put(format!("{base}/kv/{key}")).body(v.clone()),
                None => http.delete(format!("{base}/kv/{key}")),
            };
            match req.send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) if r.status() == reqwest::StatusCode::MISDIRECTED_REQUEST => {
                    let v: Value = serde_json::from_str(&r.text().await.unwrap_or_default())
                        .unwrap_or_default();
                    if let Some(addr) = v["leader_addr"].as_str()
                        && let Ok(mut l) = leader.lock()
                    {
                        *l = format!("http://{addr}");
                    } else {
                        // No leader yet (an election): wait a little.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                _ => {
                    // Try another node; it points at the leader.
                    attempt += 1;
                    if let Ok(mut l) = leader.lock() {
                        *l = urls[attempt % urls.len()].clone();
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

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).bearer_auth(TOKEN).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    serde_json::from_str(&r.text().await.ok()?).ok()
}

fn mb(v: &Value) -> f64 {
    v.as_u64().unwrap_or(0) as f64 / 1e6
}

/// One status line per node.
fn node_cell(id: u64, s: &Option<Value>) -> String {
    match s {
        None => format!("n{id} down"),
        Some(s) => format!(
            "n{id} {} log {:>6} e {:>5.1} MB snaps {}f+{}i purged {:>6}",
            if s["role"] == "Leader" { "L" } else { "F" },
            s["log"]["entries"],
            mb(&s["log"]["bytes"]),
            s["snapshots"]["full"],
            s["snapshots"]["incremental"],
            s["controller"]["purged_entries"],
        ),
    }
}

async fn demo(cluster: &mut Cluster, seconds: u64) -> Result<ExitCode> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let urls: Vec<String> = (1..=NODES).map(|i| cluster.url(i)).collect();
    // Wait for a leader.
    let t0 = Instant::now();
    let leader_id = loop {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "no leader after 30 s; see the node logs in {}",
                cluster.dir.display()
            );
        }
        if let Some(s) = get_json(&http, &format!("{}/admin/status", urls[0])).await
            && let Some(l) = s["leader"].as_u64()
        {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("node {leader_id} leads; writing microVM specs for {seconds} s ({WRITERS} writers)\n");
    let leader = Arc::new(std::sync::Mutex::new(cluster.url(leader_id)));
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|ns| {
            tokio::spawn(writer(
                ns,
                urls.clone(),
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
        let mut statuses = Vec::new();
        for id in 1..=NODES {
            let s = if cluster.children.contains_key(&id) {
                get_json(&http, &format!("{}/admin/status", cluster.url(id))).await
            } else {
                None
            };
            cells.push(node_cell(id, &s));
            statuses.push(s);
        }
        println!(
            "{t:>3}s {acked:>7} writes {:>5}/s | {}",
            acked - last_acked,
            cells.join(" | ")
        );
        last_acked = acked;
        // The leader's latest decisions that did something.
        let lead = leader.lock().map(|l| l.clone()).unwrap_or_default();
        if let Some(Value::Array(ds)) =
            get_json(&http, &format!("{lead}/admin/decisions?limit=20")).await
        {
            let ds: Vec<ramrod::AuditEntry> =
                serde_json::from_value(Value::Array(ds)).unwrap_or_default();
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
            let r = http
                .put(format!(
                    "{lead}/admin/policy?cluster=true&builtin=bytes-or-age&config=max_bytes%3D2097152%0Amax_age_ms%3D5000%0Akeep_entries%3D1000%0Akind%3D%22incremental%22%0Acheck_ms%3D250"
                ))
                .bearer_auth(TOKEN)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    let v: Value = serde_json::from_str(&r.text().await?)?;
                    let hash = v["hash"].as_str().unwrap_or("");
                    println!(
                        "  >>> hot swap: rolled out bytes-or-age ({}) through the Raft log at index {}; every node switches there",
                        hash.get(..12).unwrap_or(hash),
                        v["index"]
                    );
                }
                Ok(r) => println!("  >>> hot swap refused: {}", r.text().await?),
                Err(e) => println!("  >>> hot swap failed: {e}"),
            }
        }
        if !killed && t >= kill_at {
            killed = true;
            cluster.kill9(victim);
            println!("  >>> kill -9 node {victim} (a follower); writes go on");
        }
        if killed && !restarted && t >= restart_at {
            restarted = true;
            cluster.spawn(victim)?;
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
        cluster.spawn(victim)?;
    }

    // Recovery of the restarted node.
    let t = Instant::now();
    let recovery = loop {
        if let Some(s) = get_json(&http, &format!("{}/admin/status", cluster.url(victim))).await {
            break s;
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("node {victim} did not come back");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = &recovery["recovery"];
    if r["snapshot_index"].is_null() {
        println!(
            "\nnode {victim} recovered: no snapshot yet, replayed its log to index {}; ready in {} ms",
            r["applied_at_ready"], r["ready_ms"]
        );
    } else {
        println!(
            "\nnode {victim} recovered: snapshot chain of {} layers at index {} ({:.1} MB verified in {} ms), log tail replayed to index {}; ready in {} ms",
            r["layers"],
            r["snapshot_index"],
            mb(&r["bytes_read"]),
            r["restore_ms"],
            r["applied_at_ready"],
            r["ready_ms"]
        );
    }

    // Wait until every node applied the same state.
    print!("waiting for every node to converge ... ");
    std::io::stdout().flush()?;
    let t = Instant::now();
    let finals = loop {
        let mut all = Vec::new();
        for id in 1..=NODES {
            all.push(get_json(&http, &format!("{}/admin/status", cluster.url(id))).await);
        }
        let hashes: Vec<Option<String>> = all
            .iter()
            .map(|s| {
                s.as_ref()
                    .and_then(|s| s["state_hash"].as_str().map(str::to_string))
            })
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
    for id in 1..=NODES {
        let mut seen = BTreeMap::new();
        for ns in 0..WRITERS {
            let mut after = String::new();
            loop {
                let mut url = reqwest::Url::parse(&format!("{}/kv", cluster.url(id)))?;
                url.query_pairs_mut()
                    .append_pair("prefix", &format!("microvms/tenant-{ns:02}/"))
                    .append_pair("limit", "5000")
                    .append_pair("local", "true")
                    .append_pair("after", &after);
                let r = http.get(url).send().await?;
                let pairs: Value = serde_json::from_str(&r.text().await?)?;
                let page = pairs.as_array().cloned().unwrap_or_default();
                for p in &page {
                    after = p["key"].as_str().unwrap_or("").to_string();
                    seen.insert(after.clone(), p["value"].as_str().unwrap_or("").to_string());
                }
                if page.len() < 5000 {
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
        let p = &s["policy"];
        println!(
            "  node {}  log {} entries ({:.1} MB) | snapshots {} full + {} incremental, {} installed ({:.1} MB fetched) | {} decisions, {} entries purged | policy {} from {} at {}",
            s["id"],
            s["log"]["entries"],
            mb(&s["log"]["bytes"]),
            s["snapshots"]["full"],
            s["snapshots"]["incremental"],
            s["snapshots"]["installed"],
            mb(&s["snapshots"]["bytes_fetched"]),
            s["controller"]["decisions"],
            s["controller"]["purged_entries"],
            p["name"].as_str().unwrap_or("?"),
            p["origin"].as_str().unwrap_or("?"),
            p["index"]
        );
    }
    if missing == 0 {
        println!(
            "  verified   every acknowledged write is on every node; state hashes equal ({})",
            finals[0]["state_hash"].as_str().unwrap_or("")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("  FAILED     {missing} keys differ from the acknowledged writes");
        Ok(ExitCode::FAILURE)
    }
}
