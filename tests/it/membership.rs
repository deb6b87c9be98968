//! Membership changes under writes: a 3-node cluster grows to 4 (the new
//! node starts empty, joins, catches up through the snapshot chain and the
//! log, runs the policy rolled out to the cluster, not its configured one), then shrinks to 3 by removing its
//! leader (which hands leadership over first); every acknowledged write is
//! on every member, and the removed node takes no writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ramrod::client::Client;
use ramrod::{OpError, PolicyChoice, Scope};

use crate::cluster::{Ports, TOKEN, leader};
use crate::compaction::{applied, eventually, policy_config};

const POLICY: &str = "entries";
const POLICY_TOML: &str = "snapshot_every = 300\nkeep_entries = 50\ncheck_ms = 50";

fn client(addr: std::net::SocketAddr) -> Client {
    Client::new(&addr.to_string())
        .unwrap()
        .with_token(TOKEN)
        .with_timeout(Duration::from_secs(120))
}

/// Writes `w/{i}` = `i` through any node until `stop`, retrying while
/// leadership moves; returns the acknowledged indexes.
async fn writer(clients: Vec<Client>, stop: Arc<AtomicBool>) -> Vec<(u64, usize)> {
    let mut acked = Vec::new();
    let (mut i, mut tries) = (0usize, 0usize);
    while !stop.load(Ordering::Relaxed) && i < 20_000 {
        // Another node after a failure: the one tried may be handing over,
        // or removed.
        let c = &clients[(i + tries) % clients.len()];
        match c.put(&format!("w/{i:06}"), i.to_string()).await {
            Ok(w) => {
                acked.push((w.index, i));
                i += 1;
            }
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acked
}

#[test]
fn a_cluster_grows_to_four_and_shrinks_to_three_under_writes() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::bind(4);
        let cfg = |id: u64| {
            let mut c = policy_config(id, &ports, dir.path(), POLICY, POLICY_TOML);
            c.peers.retain(|p| p.id <= 3);
            c
        };
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(ramrod_tests::start(&ports, cfg(id)).await.unwrap());
        }
        nodes[0].initialize().await.unwrap();
        let first_leader = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == first_leader).unwrap();
        // The cluster's policy is in its state: the new node must run it.
        let rolled = lead
            .swap_policy(
                PolicyChoice::builtin("bytes-or-age")
                    .config("max_bytes = 8192\nkeep_entries = 40\ncheck_ms = 50"),
                Scope::Cluster,
            )
            .await
            .unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let clients = (1..=3).map(|id| client(ports.addr(id))).collect();
        let writes = tokio::spawn(writer(clients, stop.clone()));
        eventually(Duration::from_secs(60), "a snapshot and a purge", || {
            lead.internals().log.stats().first_index > 1
                && lead.internals().sm.current_manifest().is_some()
        })
        .await;

        // Node 4 starts empty, configured to join: it creates no cluster.
        let mut c4 = cfg(4);
        c4.peers.clear();
        c4.join = true;
        let four = ramrod_tests::start(&ports, c4).await.unwrap();
        assert!(matches!(four.initialize().await, Err(OpError::Invalid(_))));
        let members = client(ports.addr(1))
            .add_member(4, &ports.addr(4).to_string())
            .await
            .unwrap();
        assert_eq!(members.voters.len(), 4, "{members:?}");
        assert!(members.learners.is_empty());
        // The learner's log is caught up when the leader promotes it; its
        // state comes from the snapshot install, applied in the background.
        eventually(
            Duration::from_secs(60),
            "node 4 installed a snapshot",
            || four.internals().sm.stats().installed >= 1 && applied(&four) > 0,
        )
        .await;
        let fetched = four.internals().sm.stats().bytes_fetched;
        assert!(fetched > 0, "it fetched the segments it lacked");
        eventually(
            Duration::from_secs(10),
            "node 4 switched to the rollout",
            || four.policy().unwrap().hash == rolled.hash,
        )
        .await;
        // Bad requests name what is wrong.
        let c = client(ports.addr(1));
        for (result, expect) in [
            (
                c.add_member(4, &ports.addr(4).to_string()).await,
                "a voter already",
            ),
            (c.add_member(0, "127.0.0.1:1").await, "id"),
            (c.add_member(9, "nowhere").await, "addr"),
            (c.remove_member(9).await, "not a member"),
        ] {
            let e = result.unwrap_err().to_string();
            assert!(e.contains(expect), "{e}");
        }
        // Malformed membership requests over HTTP: 400 naming the field.
        let http = reqwest::Client::new();
        let admin = |path: &str| format!("http://{}{path}", ports.addr(1));
        for (req, expect) in [
            (
                http.post(admin("/admin/members")).body(r#"{"id": 5}"#),
                "missing field `addr`",
            ),
            (
                http.post(admin("/admin/members"))
                    .body(r#"{"id": 5, "addr": "127.0.0.1:1", "role": "boss"}"#),
                "role",
            ),
            (http.delete(admin("/admin/members/five")), "not a node id"),
        ] {
            let r = req.bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(r.status(), 400);
            let text = r.text().await.unwrap();
            assert!(text.contains(expect), "{text}");
        }
        nodes.push(four);

        // Remove the leader while writes go on: it hands over first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old = leader(&nodes).await;
        let members = client(ports.addr(old)).remove_member(old).await.unwrap();
        assert_eq!(members.voters.len(), 3, "{members:?}");
        assert!(members.voters.iter().all(|m| m.id != old));
        assert!(members.leader.is_some_and(|l| l != old), "{members:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let acked = writes.await.unwrap();
        assert!(acked.len() > 100, "{} writes", acked.len());

        // The removed node takes no writes, directly or over HTTP.
        let pos = nodes.iter().position(|n| n.id() == old).unwrap();
        let removed = nodes.remove(pos);
        assert!(matches!(
            removed.put("after", "removal").await,
            Err(OpError::NotLeader { .. })
        ));
        let r = reqwest::Client::new()
            .put(format!("http://{}/kv/after", ports.addr(old)))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 421);

        // Every acknowledged write is on every member.
        let last = acked.iter().map(|a| a.0).max().unwrap();
        for n in &nodes {
            eventually(Duration::from_secs(60), "members applied", || {
                applied(n) >= last
            })
            .await;
            for (_, i) in &acked {
                let v = n.get_local(format!("w/{i:06}").as_bytes()).unwrap();
                assert_eq!(
                    v.as_deref(),
                    Some(i.to_string().as_bytes()),
                    "node {} lacks write {i}",
                    n.id()
                );
            }
        }
        eventually(Duration::from_secs(10), "equal states", || {
            let h: Vec<String> = nodes
                .iter()
                .map(|n| n.internals().sm.state_hash())
                .collect();
            h.windows(2).all(|w| w[0] == w[1])
        })
        .await;
        ramrod_tests::stop(&ports, removed).await;
        for n in nodes {
            n.shutdown().await;
        }
    });
}
