//! A 3-node cluster of `ramrod serve` processes on loopback: acknowledged
//! writes survive kill -9 of a follower and of the leader; a restarted node
//! catches up to the same state.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "process-test-token";

/// Kills the node process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    procs: Vec<Option<Proc>>,
    http: reqwest::Client,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_extra("")
    }

    /// A cluster whose node configs end with `extra` (TOML).
    fn with_extra(extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        for id in 1..=3u64 {
            let mut text = format!(
                "id = {id}\nlisten = \"127.0.0.1:{}\"\ndata-dir = \"node-{id}\"\ntoken = \"{TOKEN}\"\n\
                 [raft]\nheartbeat-ms = 50\nelection-min-ms = 300\nelection-max-ms = 600\n",
                ports[id as usize - 1]
            );
            for p in (1..=3u64).filter(|&p| p != id) {
                text.push_str(&format!(
                    "[[peers]]\nid = {p}\naddr = \"127.0.0.1:{}\"\n",
                    ports[p as usize - 1]
                ));
            }
            text.push_str(extra);
            std::fs::write(dir.path().join(format!("node-{id}.toml")), text).unwrap();
        }
        let mut c = Cluster {
            dir,
            ports,
            procs: vec![None, None, None],
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        for id in 1..=3 {
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: u64) {
        let cfg = self.dir.path().join(format!("node-{id}.toml"));
        let child = Command::new(env!("CARGO_BIN_EXE_ramrod"))
            .arg("serve")
            .arg("--config")
            .arg(cfg)
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.procs[id as usize - 1] = Some(Proc(child));
    }

    /// SIGKILL.
    fn kill(&mut self, id: u64) {
        self.procs[id as usize - 1] = None;
    }

    fn url(&self, id: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[id as usize - 1])
    }

    async fn status(&self, id: u64) -> Option<serde_json::Value> {
        let r = self
            .http
            .get(self.url(id, "/admin/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        serde_json::from_str(&r.text().await.ok()?).ok()
    }

    /// Waits for a leader among the running nodes.
    async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for id in 1..=3 {
                if self.procs[id as usize - 1].is_some()
                    && let Some(s) = self.status(id).await
                    && s["role"] == "Leader"
                {
                    return id;
                }
            }
            assert!(Instant::now() < deadline, "no leader within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes `key = value` through the current leader; returns its index.
    async fn put(&self, key: &str, value: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self.leader().await;
            if let Ok(r) = self
                .http
                .put(self.url(leader, &format!("/kv/{key}")))
                .body(value.to_string())
                .send()
                .await
                && r.status() == 200
            {
                let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
                return v["index"].as_u64().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "write of {key} never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `id` has applied `index`; returns its status.
    async fn applied(&self, id: u64, index: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.status(id).await
                && s["last_applied"].as_u64().is_some_and(|a| a >= index)
            {
                return s;
            }
            assert!(Instant::now() < deadline, "node {id} never applied {index}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn acknowledged_writes_survive_kill9_of_a_follower_and_of_the_leader() {
    rt().block_on(async {
        let mut c = Cluster::new();
        let first = c.leader().await;
        for i in 0..40 {
            c.put(&format!("vm/{i:03}"), &format!("spec {i}")).await;
        }

        // kill -9 a follower; the other two keep acknowledging writes.
        let follower = (1..=3).find(|&i| i != first).unwrap();
        c.kill(follower);
        for i in 40..80 {
            c.put(&format!("vm/{i:03}"), &format!("spec {i}")).await;
        }

        // kill -9 the leader; a new one is elected from the survivors once
        // the follower is back, and nothing acknowledged is lost.
        c.start(follower);
        let mut last = c.put("vm/080", "spec 80").await;
        let leader = c.leader().await;
        c.kill(leader);
        for i in 81..100 {
            last = c.put(&format!("vm/{i:03}"), &format!("spec {i}")).await;
        }
        c.start(leader);

        let mut hashes = Vec::new();
        for id in 1..=3 {
            let s = c.applied(id, last).await;
            assert_eq!(s["keys"], 100, "node {id}: {s}");
            hashes.push(s["state_hash"].as_str().unwrap().to_string());
        }
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
        let now = c.leader().await;
        let r = c.http.get(c.url(now, "/kv/vm/042")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "spec 42");
    });
}

/// Writes through whichever node leads (following 421), until acknowledged.
async fn put_anywhere(http: &reqwest::Client, ports: &[u16], key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut target = 0usize;
    loop {
        let url = format!("http://127.0.0.1:{}/kv/{key}", ports[target % ports.len()]);
        match http.put(url).body(value.to_string()).send().await {
            Ok(r) if r.status() == 200 => return,
            Ok(r) if r.status() == 421 => {
                let v: serde_json::Value =
                    serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default();
                match v["leader_addr"]
                    .as_str()
                    .and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok())
                    .and_then(|p| ports.iter().position(|&q| q == p))
                {
                    Some(i) => target = i,
                    None => {
                        target += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            _ => {
                target += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(
            Instant::now() < deadline,
            "write of {key} never acknowledged"
        );
    }
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
            let commands: Vec<serde_json::Value> = (0..100)
                .map(|i| serde_json::json!({"op": "put", "key": format!("base/{b:02}/{i:03}"), "value": big}))
                .collect();
            let r = c
                .http
                .post(c.url(leader, "/kv/batch"))
                .body(serde_json::json!({ "commands": commands }).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            for i in 0..100 {
                acked.push((format!("base/{b:02}/{i:03}"), big.clone()));
            }
        }

        for (round, moment) in ["build", "purge"].into_iter().enumerate() {
            // A writer keeps writing while we watch the leader.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = {
                let (http, ports, stop) = (c.http.clone(), c.ports.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (k, v) = (format!("r{round}/{i:05}"), format!("value {i}"));
                        put_anywhere(&http, &ports, &k, &v).await;
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
            while c.status(leader).await.unwrap()["current_snapshot"].is_null() {
                assert!(Instant::now() < deadline, "the leader never snapshotted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let before = c.status(leader).await.unwrap()["controller"]["purges"]
                .as_u64()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = c.status(leader).await.unwrap();
                let hit = match moment {
                    "build" => s["controller"]["building"] == true,
                    _ => s["controller"]["purges"].as_u64().unwrap() > before,
                };
                if hit {
                    break;
                }
                assert!(Instant::now() < deadline, "the leader never started a {moment}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            c.kill(leader);
            // The survivors elect a leader and keep acknowledging writes.
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.start(leader);
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            acked.extend(writer.await.unwrap());

            // Every node converges on every acknowledged write.
            let now = c.leader().await;
            let last = c.put(&format!("marker/{round}"), "m").await;
            acked.push((format!("marker/{round}"), "m".into()));
            let mut hashes = Vec::new();
            for id in 1..=3 {
                let s = c.applied(id, last).await;
                hashes.push(s["state_hash"].as_str().unwrap().to_string());
            }
            assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{moment}: {hashes:?}");
            let back = c.applied(leader, last).await;
            assert!(
                !back["recovery"]["snapshot_index"].is_null(),
                "{moment}: node {leader} came back from a snapshot chain: {}",
                back["recovery"]
            );
            for id in 1..=3 {
                let mut seen = std::collections::BTreeMap::new();
                for prefix in ["base/", "r0/", "r1/", "marker/"] {
                    let r = c
                        .http
                        .get(c.url(id, &format!("/kv?prefix={prefix}&limit=10000&local=true")))
                        .send()
                        .await
                        .unwrap();
                    let pairs: serde_json::Value =
                        serde_json::from_str(&r.text().await.unwrap()).unwrap();
                    for p in pairs.as_array().unwrap() {
                        seen.insert(
                            p["key"].as_str().unwrap().to_string(),
                            p["value"].as_str().unwrap().to_string(),
                        );
                    }
                }
                for (k, v) in &acked {
                    assert_eq!(seen.get(k), Some(v), "{moment}: node {id} lost {k}");
                }
            }
            // The log stays bounded on the leader.
            let s = c.status(now).await.unwrap();
            assert!(
                s["log"]["entries"].as_u64().unwrap() < 2_000,
                "{moment}: the leader's log holds {}",
                s["log"]["entries"]
            );
        }
    });
}
