//! The embedding API: a node built in code, its typed operations and their
//! typed errors, what it serves over HTTP, and what it refuses to start.

use std::time::Duration;

use ramrod::{Endpoints, Listen, Node, NodeError, Op, OpError, PolicyChoice, Scope, SnapshotKind};

/// A single node that listens nowhere, led by itself.
async fn single(dir: &std::path::Path) -> Node {
    let node = Node::builder(1, dir)
        .listen(Listen::Nowhere)
        .policy(PolicyChoice::builtin("entries"))
        .start()
        .await
        .unwrap();
    node.initialize().await.unwrap();
    node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    node
}

#[test]
fn typed_operations_on_an_embedded_node() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let node = single(dir.path()).await;
        assert_eq!(node.addr(), None);

        let w = node.put("vm/1", "a").await.unwrap();
        assert_eq!(w.changed_keys, 1);
        let w2 = node
            .batch(vec![
                Op::put("vm/2", "b"),
                Op::put("vm/3", "c"),
                Op::delete("vm/1"),
                Op::DeletePrefix {
                    prefix: b"none/".to_vec(),
                },
            ])
            .await
            .unwrap();
        assert!(w2.index > w.index);
        assert_eq!(w2.changed_keys, 3);
        assert_eq!(node.get(b"vm/1").await.unwrap(), None);
        assert_eq!(node.get(b"vm/2").await.unwrap().as_deref(), Some(&b"b"[..]));
        let keys: Vec<_> = node
            .scan(b"vm/", Some(b"vm/2"), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![bytes::Bytes::from("vm/3")]);
        assert_eq!(node.delete("vm/9").await.unwrap().changed_keys, 0);

        let snap = node.snapshot_now(Some(SnapshotKind::Full)).await.unwrap();
        let status = node.status().unwrap();
        assert!(status.is_leader());
        assert_eq!(status.keys, 2);
        assert_eq!(status.current_snapshot.unwrap().id, snap.id);
        assert_eq!(status.policy.name, "entries");

        let swapped = node
            .swap_policy(PolicyChoice::builtin("adaptive"), Scope::Local)
            .await
            .unwrap();
        assert_eq!((swapped.name.as_str(), swapped.index), ("adaptive", None));
        assert_eq!(node.policy().unwrap().origin, "local");

        // Bad input: typed errors, nothing applied.
        let applied = node.status().unwrap().last_applied;
        let invalid = |r: Result<ramrod::Written, OpError>, says: &str| match r {
            Err(OpError::Invalid(msg)) => assert!(msg.contains(says), "{msg}"),
            other => panic!("expected Invalid({says}), got {other:?}"),
        };
        invalid(node.put(b"\xffsecret".to_vec(), "x").await, "reserved");
        invalid(node.batch(Vec::new()).await, "at least one");
        invalid(node.put("big", vec![0u8; 9 << 20]).await, "at most 8388608");
        assert_eq!(node.status().unwrap().last_applied, applied);
        assert!(matches!(
            node.swap_policy(PolicyChoice::builtin("no-such"), Scope::Local)
                .await,
            Err(OpError::Policy(_))
        ));
        assert!(matches!(
            node.initialize().await,
            Err(OpError::AlreadyInitialized)
        ));

        // A handle outlives the node: its operations then say so.
        let handle = node.handle();
        node.shutdown().await;
        assert!(matches!(handle.put("k", "v").await, Err(OpError::Shutdown)));
        assert!(matches!(handle.get(b"vm/2").await, Err(OpError::Shutdown)));

        // Restarted from its data directory: the state and the local
        // policy's origin come back from the config, the data from disk.
        let node = Node::builder(1, dir.path())
            .listen(Listen::Nowhere)
            .start()
            .await
            .unwrap();
        node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
        assert_eq!(node.get(b"vm/3").await.unwrap().as_deref(), Some(&b"c"[..]));
        node.shutdown().await;
    });
}

#[test]
fn a_node_refuses_settings_that_cannot_work() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let e = Node::builder(1, dir.path())
            .listen(Listen::Nowhere)
            .peers([(2, "127.0.0.1:1")])
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NodeError::Config { reason } if reason.contains("must listen")),
            "{e}"
        );
        let e = Node::builder(0, dir.path()).start().await.unwrap_err();
        assert!(e.to_string().contains("`id`"), "{e}");
        let e = Node::builder(1, dir.path())
            .listen(Listen::Nowhere)
            .policy(PolicyChoice::builtin("entries").config("snapshot_evry = 5"))
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(e, NodeError::Policy(_)) && e.to_string().contains("snapshot_evry"),
            "{e}"
        );
        // A port in use is a clear error, not a half-started node.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = Node::builder(1, dir.path().join("b"))
            .listen(Listen::Addr(addr))
            .start()
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::Listen { .. }), "{e}");
    });
}

#[test]
fn a_raft_only_node_serves_no_client_or_admin_api() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::builder(1, dir.path())
            .listen(Listen::Addr("127.0.0.1:0".parse().unwrap()))
            .endpoints(Endpoints::RaftOnly)
            .token("a-long-token")
            .start()
            .await
            .unwrap();
        let addr = node.addr().expect("bound");
        assert_ne!(addr.port(), 0, "the bound port is reported");
        let http = reqwest::Client::new();
        for path in ["/kv/a", "/admin/status"] {
            let r = http
                .get(format!("http://{addr}{path}"))
                .bearer_auth("a-long-token")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{path}");
        }
        // The Raft endpoints are there, behind peer authentication (this
        // lone node has no cluster secret: it takes no peer requests).
        let r = http
            .post(format!("http://{addr}/raft/vote"))
            .body("garbage")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "the Raft endpoints are there");
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("neither a cluster secret nor TLS")
        );
        node.shutdown().await;
    });
}
