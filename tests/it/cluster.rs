//! A 3-node cluster in one process, over HTTP on loopback: election,
//! replicated writes, linearizable reads, followers pointing at the leader,
//! and bad requests answered 4xx with nothing applied.

use std::time::Duration;

use ramrod::client::wire::ListReply;
use ramrod::client::{BatchCommand, Client, ClientError};
use ramrod::internals::config::NodeConfig;
use ramrod::internals::node::Node;
use ramrod::internals::node::http::wire::ErrorBody;
use ramrod::{SnapshotInfo, SnapshotKind, Status, Written};

pub(crate) const TOKEN: &str = "cluster-test-token";

pub(crate) use ramrod_tests::Ports;

pub(crate) fn config(id: u64, ports: &Ports, dir: &std::path::Path) -> NodeConfig {
    ramrod_tests::node_config(id, ports, dir, TOKEN)
}

pub(crate) async fn start_cluster(dir: &std::path::Path) -> Vec<Node> {
    start_cluster_on(dir).await.0
}

/// A 3-node cluster, initialized, and the ports its nodes listen on (to
/// stop and start them).
pub(crate) async fn start_cluster_on(dir: &std::path::Path) -> (Vec<Node>, Ports) {
    let ports = Ports::bind(3);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(
            ramrod_tests::start(&ports, config(id, &ports, dir))
                .await
                .unwrap(),
        );
    }
    nodes[0].initialize().await.unwrap();
    (nodes, ports)
}

pub(crate) async fn leader(nodes: &[Node]) -> u64 {
    nodes[0]
        .internals()
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap()
        .current_leader
        .unwrap()
}

#[test]
fn three_nodes_replicate_and_answer_over_http() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let nodes = start_cluster(dir.path()).await;
        let leader_id = leader(&nodes).await;
        let leader = &nodes[leader_id as usize - 1];
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        // No connection reuse: the server closes a connection after refusing
        // an oversized body, and a pooled one would fail the next request.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = |n: &Node, path: &str| format!("http://{}{path}", n.addr().unwrap());

        for i in 0..50 {
            let r = http
                .put(url(leader, &format!("/kv/vm/{i:03}")))
                .body(format!("spec {i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        let r = http
            .post(url(leader, "/kv/batch"))
            .body(r#"{"commands":[{"op":"put","key":"a","value":"1"},{"op":"delete","key":"vm/000"}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let reply: Written = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(reply.changed_keys, 2);
        let last = reply.index;

        // Linearizable reads on the leader.
        let r = http.get(url(leader, "/kv/vm/007")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "spec 7");
        let r = http.get(url(leader, "/kv/vm/000")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let r = http
            .get(url(leader, "/kv?prefix=vm/&limit=5"))
            .send()
            .await
            .unwrap();
        let list: ListReply = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(list.kvs.len(), 5);
        assert!(list.more);
        assert_eq!(list.kvs[0].key, "vm/001");
        assert_eq!(list.kvs[0].version, 1);
        assert!(list.kvs[0].mod_revision <= list.revision);

        // A follower points at the leader, for writes and reads.
        for req in [
            http.put(url(follower, "/kv/x")).body("y"),
            http.get(url(follower, "/kv/vm/001")),
        ] {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 421);
            let body: ErrorBody = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(body.leader_id, Some(leader_id));
            assert_eq!(body.leader_addr, Some(leader.addr().unwrap().to_string()));
        }

        // Every node applies every write.
        for n in &nodes {
            n.internals().raft
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(last), "all writes applied")
                .await
                .unwrap();
            assert_eq!(n.internals().sm.len(), 50, "node {}", n.id());
            assert_eq!(n.internals().sm.get(b"vm/049").as_deref(), Some(&b"spec 49"[..]));
        }
        let hashes: Vec<String> = nodes.iter().map(|n| n.internals().sm.state_hash()).collect();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");

        // Bad requests: 4xx with a message, nothing applied.
        let before = leader.internals().sm.state_hash();
        let bad = [
            http.post(url(leader, "/kv/batch")).body("{not json"),
            http.post(url(leader, "/kv/batch")).body(r#"{"commands":[]}"#),
            http.post(url(leader, "/kv/batch"))
                .body(r#"{"commands":[{"op":"rename","key":"a"}]}"#),
            http.get(url(leader, "/kv?limit=99999999")),
            http.get(url(leader, "/kv?colour=blue")),
            http.post(url(leader, "/raft/append")).body(vec![0xff; 7]),
            http.put(url(leader, "/kv/huge")).body(vec![b'x'; 9 << 20]),
            http.get(url(leader, "/admin/decisions?limit=100000"))
                .bearer_auth(TOKEN),
            http.put(url(leader, "/admin/policy?builtin=nope"))
                .bearer_auth(TOKEN),
            http.put(url(leader, "/admin/policy?builtin=entries"))
                .bearer_auth(TOKEN)
                .body("x"),
            http.put(url(leader, "/admin/policy")).bearer_auth(TOKEN),
            http.put(url(leader, "/admin/policy?cluster=true"))
                .bearer_auth(TOKEN)
                .body(vec![0u8; 5 << 20]),
            http.post(url(leader, "/admin/snapshot?kind=half"))
                .bearer_auth(TOKEN),
            http.get(url(leader, "/raft/segment/not-hex!")),
            http.get(url(leader, "/raft/segment/abcdef0123")),
        ];
        let mut too_large = 0;
        for req in bad {
            let r = req.send().await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            assert!(status.is_client_error(), "{status}: {text}");
            assert!(!text.is_empty(), "{status} without a message");
            if status == 413 {
                // Too large: JSON naming the limit.
                let e: ErrorBody = serde_json::from_str(&text).unwrap();
                assert!(e.error.contains("-byte limit"), "{}", e.error);
                too_large += 1;
            }
        }
        assert_eq!(too_large, 1, "the 9 MiB value is answered 413");
        assert_eq!(leader.internals().sm.state_hash(), before, "a bad request changed the state");
        assert_eq!(
            leader.internals().controller.shared().origin().origin,
            "config",
            "a refused policy changed nothing"
        );

        // Listings page with `after`; `local` reads work on a follower.
        let r = http
            .get(url(follower, "/kv?prefix=vm/&limit=10&after=vm/009&local=true"))
            .send()
            .await
            .unwrap();
        let page: ListReply = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        let keys: Vec<&str> = page.kvs.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys.first(), Some(&"vm/010"));
        assert_eq!(keys.len(), 10);
        let r = http.get(url(follower, "/kv/vm/001")).send().await.unwrap();
        assert_eq!(r.status(), 421, "a linearizable read goes to the leader");

        // The admin API: a token is required; with it, status and a
        // snapshot on demand.
        for (auth, want) in [(None, 401), (Some("wrong-token-000"), 401)] {
            let mut req = http.get(url(leader, "/admin/status"));
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), want);
        }
        let r = http
            .get(url(leader, "/admin/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let status: Status = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(status.is_leader());
        assert_eq!(status.keys, 50);
        let r = http
            .post(url(follower, "/admin/snapshot?kind=full"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let snap: SnapshotInfo = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(snap.kind, SnapshotKind::Full);
        assert_eq!(follower.internals().sm.current_manifest().unwrap().keys, 50);

        let r = http
            .get(url(leader, "/admin/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        for line in [
            "ramrod_raft_is_leader 1",
            "ramrod_state_keys 50",
            "ramrod_snapshots_total{kind=\"full\"} ",
            "ramrod_policy_decisions_total{by=\"policy\"} ",
            "ramrod_log_purged_entries_total ",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let r = http.get(url(leader, "/admin/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 401);

        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// The typed client: a follower's client follows 421 to the leader for
/// writes and linearizable reads, reads the follower's own state with
/// `local`, and names what went wrong with a typed error.
#[test]
fn the_typed_client_follows_the_leader_and_types_its_errors() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let nodes = start_cluster(dir.path()).await;
        let leader_id = leader(&nodes).await;
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        let url = format!("http://{}", follower.addr().unwrap());
        let c = Client::new(&url).unwrap().with_token(TOKEN);

        let w = c.put("vm/a", "spec a").await.unwrap();
        assert_eq!(w.changed_keys, 1);
        let w = c
            .batch(vec![
                BatchCommand::Put {
                    key: "vm/b".into(),
                    value: "spec b".into(),
                },
                BatchCommand::Delete { key: "vm/a".into() },
            ])
            .await
            .unwrap();
        assert_eq!(w.changed_keys, 2);
        assert_eq!(
            c.get("vm/b").await.unwrap().as_deref(),
            Some(&b"spec b"[..])
        );
        assert_eq!(
            c.get("vm/a").await.unwrap(),
            None,
            "deleted: None, not an error"
        );
        let page = c.list("vm/", None, 10, false).await.unwrap();
        let kvs: Vec<(&[u8], &[u8])> = page
            .kvs
            .iter()
            .map(|kv| (&kv.key[..], &kv.value[..]))
            .collect();
        assert_eq!(kvs, vec![(&b"vm/b"[..], &b"spec b"[..])]);
        assert!(!page.more);
        follower
            .internals()
            .raft
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(w.index), "the batch")
            .await
            .unwrap();
        assert_eq!(
            c.get_local("vm/b").await.unwrap().as_deref(),
            Some(&b"spec b"[..])
        );

        // Admin calls answer for the node asked, typed.
        let s = c.status().await.unwrap();
        assert_eq!((s.id, s.leader), (follower.id(), Some(leader_id)));
        let snap = c.snapshot(Some(SnapshotKind::Full)).await.unwrap();
        assert_eq!(snap.kind, SnapshotKind::Full);
        assert!(c.metrics().await.unwrap().contains("ramrod_state_keys 1"));
        assert_eq!(c.policy().await.unwrap().origin, "config");
        assert!(c.decisions(5).await.unwrap().len() <= 5);

        // Errors say what was wrong.
        let e = c.batch(Vec::new()).await.unwrap_err();
        assert!(
            matches!(&e, ClientError::Status { status, message, .. }
                if status.as_u16() == 400 && message.contains("at least one")),
            "{e}"
        );
        assert!(matches!(
            c.put("vm/../x", "v").await,
            Err(ClientError::Key { .. })
        ));
        let e = Client::new(&url)
            .unwrap()
            .with_token("wrong-token-000")
            .status()
            .await
            .unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(401), "{e}");
        let e = Client::new("http://127.0.0.1:1")
            .unwrap()
            .status()
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Transport { .. }), "{e}");
        for n in nodes {
            n.shutdown().await;
        }
    });
}
