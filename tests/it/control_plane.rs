//! What a control plane builds on: records with revisions, guarded writes
//! and transactions, and watches, over the typed API and HTTP, on a 3-node
//! cluster in one process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ramrod::client::{Client, ClientError};
use ramrod::internals::node::Node;
use ramrod::internals::node::http::wire::ErrorBody;
use ramrod::{
    Compare, CompareOp, EventKind, Filter, Guard, OpError, OpResult, Target, Txn, TxnOp,
    WatchError, WatchUpdate,
};

use crate::cluster::{Ports, TOKEN, config, leader};

fn client(n: &Node) -> Client {
    Client::new(&n.addr().unwrap().to_string())
        .unwrap()
        .with_token(TOKEN)
}

async fn cluster(dir: &std::path::Path) -> (Vec<Node>, Ports) {
    let (nodes, ports) = crate::cluster::start_cluster_on(dir).await;
    leader(&nodes).await;
    (nodes, ports)
}

fn by_id(nodes: &[Node], id: u64) -> &Node {
    nodes.iter().find(|n| n.id() == id).unwrap()
}

async fn leader_node(nodes: &[Node]) -> &Node {
    let id = leader(nodes).await;
    by_id(nodes, id)
}

#[test]
fn records_carry_revisions_and_guards_refuse_stale_writes() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _ports) = cluster(dir.path()).await;
        let lead = leader_node(&nodes).await;
        let c = client(lead);

        let w1 = c.put("vm/a", "one").await.unwrap();
        let kv = c.get_kv("vm/a", false).await.unwrap().unwrap();
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version),
            (w1.index, w1.index, 1)
        );
        let w2 = c.put("vm/a", "two").await.unwrap();
        let kv = c.get_kv("vm/a", false).await.unwrap().unwrap();
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version),
            (w1.index, w2.index, 2)
        );
        assert_eq!(&kv.value[..], b"two");

        // A stale guard is refused with the current mod revision; nothing
        // is written.
        match c
            .put_if("vm/a", "stale", Guard::ModRevision(w1.index))
            .await
        {
            Err(ClientError::GuardFailed {
                mod_revision,
                revision,
                ..
            }) => {
                assert_eq!(mod_revision, w2.index);
                assert!(revision > w2.index);
            }
            other => panic!("a stale save went through: {other:?}"),
        }
        assert_eq!(c.get("vm/a").await.unwrap().unwrap(), b"two");
        let w3 = c
            .put_if("vm/a", "three", Guard::ModRevision(w2.index))
            .await
            .unwrap();
        assert_eq!(w3.changed_keys, 1);
        // The same through the typed API, on the leader.
        match lead.put_if("vm/a", "x", Guard::Absent).await {
            Err(OpError::GuardFailed { mod_revision, .. }) => assert_eq!(mod_revision, w3.index),
            other => panic!("{other:?}"),
        }
        let w4 = lead.put_if("vm/b", "new", Guard::Absent).await.unwrap();
        assert!(w4.index > w3.index);
        assert!(matches!(
            lead.put_if("vm/b", "again", Guard::ModRevision(0)).await,
            Err(OpError::GuardFailed { .. })
        ));

        // Over raw HTTP: 412 with the revisions in the body; a bad guard is 400.
        let http = reqwest::Client::new();
        let url = |p: &str| format!("http://{}{p}", lead.addr().unwrap());
        let r = http
            .put(url("/kv/vm/a?if_absent=true"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        let body: ErrorBody = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body.mod_revision, Some(w3.index));
        assert!(body.revision.is_some());
        for bad in [
            "/kv/vm/a?if_absent=true&if_mod_revision=3",
            "/kv/vm/a?if_mod_revision=soon",
            "/kv/vm/a?if_newer=1",
        ] {
            let r = http.put(url(bad)).body("x").send().await.unwrap();
            assert_eq!(r.status(), 400, "{bad}");
        }
        let r = http.get(url("/kv/vm/a")).send().await.unwrap();
        let h = |n: &str| r.headers()[n].to_str().unwrap().parse::<u64>().unwrap();
        assert_eq!(
            (
                h("x-ramrod-create-revision"),
                h("x-ramrod-mod-revision"),
                h("x-ramrod-version")
            ),
            (w1.index, w3.index, 3)
        );

        // Delete, then create again: a new create revision, version 1.
        assert!(matches!(
            c.delete_if("vm/a", Guard::ModRevision(w2.index)).await,
            Err(ClientError::GuardFailed { .. })
        ));
        c.delete_if("vm/a", Guard::ModRevision(w3.index))
            .await
            .unwrap();
        let w5 = c.put("vm/a", "reborn").await.unwrap();
        let kv = c.get_kv("vm/a", false).await.unwrap().unwrap();
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version),
            (w5.index, w5.index, 1)
        );

        // A listing carries every record's revisions and the revision it
        // was read at; followers hold the same records.
        let page = c.list("vm/", None, 10, false).await.unwrap();
        assert_eq!(page.kvs.len(), 2);
        assert!(page.kvs.iter().all(|kv| kv.mod_revision <= page.revision));
        for n in &nodes {
            crate::compaction::eventually(Duration::from_secs(10), "the follower applied", || {
                n.revision().unwrap() >= page.revision
            })
            .await;
            let local = n.list_local(b"vm/", None, 10).unwrap();
            assert_eq!(local.kvs, page.kvs, "node {}", n.id());
        }
        for n in nodes {
            n.shutdown().await;
        }
    });
}

#[test]
fn concurrent_guarded_saves_on_one_key_lose_no_update() {
    const CLIENTS: usize = 16;
    const SAVES: u64 = 8;
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _ports) = cluster(dir.path()).await;
        let lead = leader_node(&nodes).await;
        lead.put("counter", "0").await.unwrap();
        // Half the clients over HTTP (sent to any node, following the
        // leader), half through the typed API on the leader.
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let http = client(&nodes[i % nodes.len()]);
                let handle = lead.handle();
                tokio::spawn(async move {
                    let (mut saved, mut refused) = (Vec::new(), 0u64);
                    for _ in 0..2_000 {
                        if saved.len() as u64 == SAVES {
                            break;
                        }
                        let kv = if i % 2 == 0 {
                            http.get_kv("counter", false).await.unwrap().unwrap()
                        } else {
                            handle.get_kv(b"counter").await.unwrap().unwrap()
                        };
                        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        let next = (n + 1).to_string();
                        let guard = Guard::ModRevision(kv.mod_revision);
                        let r = if i % 2 == 0 {
                            http.put_if("counter", next, guard)
                                .await
                                .map_err(|e| match e {
                                    ClientError::GuardFailed { mod_revision, .. } => mod_revision,
                                    e => panic!("{e}"),
                                })
                        } else {
                            handle
                                .put_if("counter", next, guard)
                                .await
                                .map_err(|e| match e {
                                    OpError::GuardFailed { mod_revision, .. } => mod_revision,
                                    e => panic!("{e}"),
                                })
                        };
                        match r {
                            Ok(w) => saved.push((w.index, n + 1)),
                            Err(now) => {
                                assert!(now > kv.mod_revision, "refused, yet not stale");
                                refused += 1;
                            }
                        }
                    }
                    (saved, refused)
                })
            })
            .collect();
        let mut saves = BTreeMap::new();
        let mut refused = 0;
        for t in tasks {
            let (s, r) = t.await.unwrap();
            assert_eq!(s.len() as u64, SAVES, "a client gave up");
            for (rev, value) in s {
                assert!(
                    saves.insert(rev, value).is_none(),
                    "two saves at one revision"
                );
            }
            refused += r;
        }
        // Each save incremented what the previous one wrote: in revision
        // order the values are 1, 2, 3, ...
        let values: Vec<u64> = saves.values().copied().collect();
        let expect: Vec<u64> = (1..=CLIENTS as u64 * SAVES).collect();
        assert_eq!(
            values, expect,
            "an update was lost or applied on a stale read"
        );
        let v = lead.get(b"counter").await.unwrap().unwrap();
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            (CLIENTS as u64 * SAVES).to_string()
        );
        eprintln!("{} saves, {refused} stale ones refused", values.len());
        for n in nodes {
            n.shutdown().await;
        }
    });
}

#[test]
fn transactions_apply_whole_and_report_their_branch() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _ports) = cluster(dir.path()).await;
        let lead = leader_node(&nodes).await;
        let a = lead.put("t/a", "1").await.unwrap();
        lead.put("t/list/1", "x").await.unwrap();
        lead.put("t/list/2", "y").await.unwrap();

        // A registry's save: the latest record is what the caller read, the
        // new version's key is free; write it, prune the old one, read back.
        let save = Txn {
            compares: vec![
                Compare::mod_revision("t/a", a.index),
                Compare::absent("t/b"),
                Compare {
                    key: b"t/a".to_vec(),
                    op: CompareOp::Equal,
                    target: Target::Value(b"1".to_vec()),
                },
                Compare {
                    key: b"t/a".to_vec(),
                    op: CompareOp::Less,
                    target: Target::Version(2),
                },
                Compare {
                    key: b"t/a".to_vec(),
                    op: CompareOp::Greater,
                    target: Target::CreateRevision(0),
                },
            ],
            success: vec![
                TxnOp::Put {
                    key: b"t/b".to_vec(),
                    value: b"2".to_vec(),
                },
                TxnOp::Delete {
                    key: b"t/a".to_vec(),
                },
                TxnOp::Get {
                    key: b"t/b".to_vec(),
                },
                TxnOp::List {
                    prefix: b"t/list/".to_vec(),
                    limit: 1,
                },
                TxnOp::DeletePrefix {
                    prefix: b"t/list/".to_vec(),
                },
            ],
            failure: vec![TxnOp::Get {
                key: b"t/a".to_vec(),
            }],
        };
        let r = lead.txn(save.clone()).await.unwrap();
        assert!(r.succeeded);
        assert_eq!(r.results.len(), 5);
        assert_eq!(r.results[0], OpResult::Put { prev: None });
        assert_eq!(r.results[1], OpResult::Delete { deleted: 1 });
        match &r.results[2] {
            OpResult::Get { kv: Some(kv) } => {
                assert_eq!((kv.mod_revision, kv.version), (r.revision, 1));
            }
            other => panic!("{other:?}"),
        }
        match &r.results[3] {
            OpResult::List { kvs, more } => {
                assert_eq!(kvs.len(), 1);
                assert!(*more);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.results[4], OpResult::Delete { deleted: 2 });
        // Again: the compares fail now, the failure branch runs, nothing of
        // the success branch applies.
        let again = client(&nodes[0]).txn(&save).await.unwrap();
        assert!(!again.succeeded);
        assert_eq!(again.results, vec![OpResult::Get { kv: None }]);
        let b = lead.get_kv(b"t/b").await.unwrap().unwrap();
        assert_eq!(b.mod_revision, r.revision, "t/b was not written again");

        // Bad transactions: 4xx naming what is wrong, nothing applied.
        let before = lead.revision().unwrap();
        let http = reqwest::Client::new();
        let url = format!("http://{}/kv/txn", lead.addr().unwrap());
        let many_compares = serde_json::json!({
            "compare": (0..129).map(|i| serde_json::json!({"target": "absent", "key": format!("k{i}")})).collect::<Vec<_>>(),
            "success": [{"op": "put", "key": "t/x", "value": "1"}],
        });
        let many_ops = serde_json::json!({
            "success": (0..129).map(|i| serde_json::json!({"op": "put", "key": format!("k{i}"), "value": "v"})).collect::<Vec<_>>(),
        });
        let cases: Vec<(String, &str)> = vec![
            (many_compares.to_string(), "at most 128 compares"),
            (many_ops.to_string(), "success: a branch holds at most 128"),
            (
                r#"{"compare":[{"target":"mod_revision","key":"t/b","cmp":"~","value":1}],"success":[]}"#.into(),
                "unknown variant `~`",
            ),
            (
                r#"{"compare":[{"target":"colour","key":"t/b"}]}"#.into(),
                "colour",
            ),
            (
                r#"{"success":[{"op":"put","key":"t/x"}]}"#.into(),
                "missing field `value`",
            ),
            (
                r#"{"success":[{"op":"list","prefix":"t/","limit":100000}]}"#.into(),
                "success[0]: limit must be at most",
            ),
            (
                r#"{"failure":[{"op":"put","key":"t/x","value":"1"}],"oops":1}"#.into(),
                "oops",
            ),
            ("not json".into(), "malformed transaction"),
        ];
        for (body, expect) in cases {
            let r = http.post(&url).body(body.clone()).send().await.unwrap();
            assert_eq!(r.status(), 400, "{body}");
            let e: ErrorBody = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert!(e.error.contains(expect), "{body}: {}", e.error);
        }
        let exists_less = Txn {
            compares: vec![Compare {
                key: b"t/b".to_vec(),
                op: CompareOp::Less,
                target: Target::Exists(true),
            }],
            ..Txn::default()
        };
        match lead.txn(exists_less).await {
            Err(OpError::Invalid(m)) => assert!(m.starts_with("compare[0]"), "{m}"),
            other => panic!("{other:?}"),
        }
        let reserved = Txn {
            success: vec![TxnOp::Put {
                key: b"\xfframrod/policy".to_vec(),
                value: b"evil".to_vec(),
            }],
            ..Txn::default()
        };
        match lead.txn(reserved).await {
            Err(OpError::Invalid(m)) => assert!(m.contains("success[0]") && m.contains("reserved")),
            other => panic!("{other:?}"),
        }
        assert_eq!(lead.revision().unwrap(), before, "nothing reached the log");
        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// Writes `n` puts of `w/k-{i % 7}` through `clients` (trying each in turn
/// while a leader change settles); returns the acknowledged writes as
/// (revision, key, value).
async fn write_through(
    clients: &[Client],
    from: usize,
    n: usize,
    acked: &mut Vec<(u64, String, String)>,
) {
    for i in from..from + n {
        let (key, value) = (format!("w/k-{}", i % 7), format!("v{i}"));
        let mut tries = 0;
        loop {
            let c = &clients[tries % clients.len()];
            match c.put(&key, value.clone()).await {
                Ok(w) => {
                    acked.push((w.index, key.clone(), value.clone()));
                    break;
                }
                Err(e) => {
                    tries += 1;
                    assert!(tries < 200, "no leader for write {i}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Reads `stream` until it has reported everything up to `upto`; events as
/// (revision, key, value).
async fn drain_until(
    stream: &mut ramrod::client::WatchStream,
    upto: u64,
    seen: &mut Vec<(u64, String, String)>,
) -> Result<(), ClientError> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut at = seen.last().map_or(0, |s| s.0);
    while at < upto {
        match tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("the watch went quiet")?
        {
            WatchUpdate::Event(e) => {
                assert_eq!(e.kind, EventKind::Put);
                at = e.kv.mod_revision;
                seen.push((at, text(&e.kv.key), text(&e.kv.value)));
            }
            WatchUpdate::Progress { revision } => at = at.max(revision),
        }
    }
    Ok(())
}

#[test]
fn list_then_watch_sees_every_change_exactly_once_across_a_leader_change() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, ports) = cluster(dir.path()).await;
        let old_leader = leader(&nodes).await;
        let stay = nodes.iter().find(|n| n.id() != old_leader).unwrap().id();
        let clients: Vec<Client> = nodes.iter().map(client).collect();
        let mut acked = Vec::new();
        write_through(&clients, 0, 20, &mut acked).await;

        // List, then watch from the listing's revision: on a follower that
        // stays up, and on the leader that is about to go.
        let listing = clients[0].list("w/", None, 100, false).await.unwrap();
        assert_eq!(listing.kvs.len(), 7);
        let from = listing.revision;
        let mut on_follower = client(by_id(&nodes, stay))
            .watch(&Filter::Prefix(b"w/".to_vec()), Some(from), true)
            .await
            .unwrap();
        let mut on_leader = client(by_id(&nodes, old_leader))
            .watch(&Filter::Prefix(b"w/".to_vec()), Some(from), true)
            .await
            .unwrap();
        write_through(&clients, 20, 20, &mut acked).await;
        let mut seen_leader = Vec::new();
        drain_until(&mut on_leader, acked.last().unwrap().0, &mut seen_leader)
            .await
            .unwrap();

        // The leader goes away; its watcher ends, and resumes on the
        // follower from the last revision it saw.
        let pos = nodes.iter().position(|n| n.id() == old_leader).unwrap();
        ramrod_tests::stop(&ports, nodes.remove(pos)).await;
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(20), on_leader.next())
                .await
                .expect("the stopped leader's watch ended")
            {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                ended,
                ClientError::Watch {
                    source: WatchError::Shutdown,
                    ..
                } | ClientError::Transport { .. }
            ),
            "{ended}"
        );
        let resume_from = seen_leader.last().unwrap().0;
        write_through(&clients, 40, 30, &mut acked).await;
        let mut resumed = client(by_id(&nodes, stay))
            .watch(&Filter::Prefix(b"w/".to_vec()), Some(resume_from), true)
            .await
            .unwrap();
        // And comes back.
        nodes.push(
            ramrod_tests::start(&ports, config(old_leader, &ports, dir.path()))
                .await
                .unwrap(),
        );
        write_through(&clients, 70, 20, &mut acked).await;
        let last = acked.last().unwrap().0;
        let mut seen_follower = Vec::new();
        drain_until(&mut on_follower, last, &mut seen_follower)
            .await
            .unwrap();
        drain_until(&mut resumed, last, &mut seen_leader)
            .await
            .unwrap();

        // Each watcher saw every acknowledged write after the listing, once,
        // in revision order, and nothing that was not written.
        let after: Vec<_> = acked.iter().filter(|a| a.0 > from).cloned().collect();
        assert_eq!(after.len(), acked.len() - 20);
        for (name, seen) in [("follower", &seen_follower), ("resumed", &seen_leader)] {
            let revs: Vec<u64> = seen.iter().map(|s| s.0).collect();
            let mut sorted = revs.clone();
            sorted.dedup();
            assert_eq!(revs, sorted, "{name}: out of order or twice");
            assert!(revs.windows(2).all(|w| w[0] < w[1]), "{name}: order");
            let seen_set: BTreeSet<_> = seen.iter().cloned().collect();
            for a in &after {
                assert!(seen_set.contains(a), "{name}: missed {a:?}");
            }
            // Writes retried after a lost answer may apply twice; every
            // event is one of the values written to that key.
            for s in seen.iter() {
                let i: usize = s.2[1..].parse().unwrap();
                assert_eq!(s.1, format!("w/k-{}", i % 7), "{name}: {s:?}");
            }
        }
        for n in nodes {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_watch_from_a_compacted_revision_is_refused_with_what_the_node_can_serve() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::bind(1);
        let mut cfg = config(1, &ports, dir.path());
        cfg.watch.history_events = 10;
        cfg.watch.progress_ms = 100;
        cfg.watch.buffer = 4;
        // No snapshot but the one the test asks for.
        cfg.policy.name = Some("entries".into());
        cfg.policy.config = toml::from_str("snapshot_every = 1000000\ncheck_ms = 1000").unwrap();
        let node = ramrod_tests::start(&ports, cfg.clone()).await.unwrap();
        node.initialize().await.unwrap();
        node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
        let first = node.put("c/0", "v").await.unwrap().index;
        for i in 1..30 {
            node.put(format!("c/{i}"), "v").await.unwrap();
        }
        let current = node.revision().unwrap();
        let c = client(&node);
        let prefix = Filter::Prefix(b"c/".to_vec());
        let oldest = match c.watch(&prefix, Some(first), true).await {
            Err(ClientError::Watch {
                source:
                    WatchError::Compacted {
                        asked,
                        oldest,
                        current: now,
                    },
                ..
            }) => {
                assert_eq!((asked, now), (first, current));
                assert!(oldest > first && oldest < current, "{oldest}");
                oldest
            }
            other => panic!("{other:?}"),
        };
        let r = reqwest::get(format!(
            "http://{}/kv/watch?prefix=c/&from_revision={first}",
            node.addr().unwrap()
        ))
        .await
        .unwrap();
        assert_eq!(r.status(), 410);
        let e: ErrorBody = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(
            (e.oldest_revision, e.revision),
            (Some(oldest), Some(current))
        );
        assert!(e.error.contains("compacted"), "{}", e.error);
        // From the oldest it names, the watch serves every change since,
        // then progress once idle; without values when asked.
        let mut w = c.watch(&prefix, Some(oldest), false).await.unwrap();
        let mut revs = Vec::new();
        loop {
            match w.next().await.unwrap() {
                WatchUpdate::Event(e) => {
                    assert!(e.kv.value.is_empty(), "values=false");
                    revs.push(e.kv.mod_revision);
                }
                WatchUpdate::Progress { revision } => {
                    assert_eq!(revision, current);
                    break;
                }
            }
        }
        assert_eq!(revs, ((oldest + 1)..=current).collect::<Vec<_>>());

        // Bad parameters: 400 naming them.
        let http = reqwest::Client::new();
        for (q, expect) in [
            ("", "`key` or `prefix`"),
            ("key=a&prefix=b", "`key` or `prefix`"),
            ("key=a&from_revision=soon", "from_revision"),
            ("key=a&colour=blue", "colour"),
        ] {
            let r = http
                .get(format!("http://{}/kv/watch?{q}", node.addr().unwrap()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{q}");
            let text = r.text().await.unwrap();
            assert!(text.contains(expect), "{q}: {text}");
        }

        // A watcher that does not read is ended, not buffered for.
        let handle = node.handle();
        let mut slow = handle.watch(Filter::Prefix(b"c/".to_vec()), None).unwrap();
        for i in 0..(cfg.watch.buffer + 8) {
            handle.put(format!("c/slow/{i}"), "v").await.unwrap();
        }
        let ended = loop {
            match slow.next().await {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(ended, WatchError::Lagged { .. }), "{ended}");

        // A restart keeps history from the newest snapshot on.
        let snap = node.snapshot_now(None).await.unwrap();
        for i in 0..5 {
            node.put(format!("c/after/{i}"), "v").await.unwrap();
        }
        let current = node.revision().unwrap();
        let mut open = c.watch(&prefix, None, true).await.unwrap();
        ramrod_tests::stop(&ports, node).await;
        match open.next().await {
            Err(ClientError::Watch {
                source: WatchError::Shutdown,
                ..
            }) => {}
            other => panic!("a watch ends with a reason on shutdown: {other:?}"),
        }
        let node = ramrod_tests::start(&ports, cfg).await.unwrap();
        crate::compaction::eventually(Duration::from_secs(10), "the log replayed", || {
            node.revision().unwrap() >= current
        })
        .await;
        let (oldest, _) = node.internals().sm.watch_bounds();
        assert_eq!(
            oldest,
            snap.last_index.unwrap(),
            "history starts at the snapshot"
        );
        assert!(matches!(
            node.watch(prefix.clone(), Some(oldest - 1)),
            Err(OpError::Watch(WatchError::Compacted { .. }))
        ));
        let mut w = node.watch(prefix, Some(oldest)).unwrap();
        let mut n = 0;
        while let WatchUpdate::Event(_) = w.next().await.unwrap() {
            n += 1;
        }
        assert_eq!(n, 5, "the replayed tail is history again");
        node.shutdown().await;
    });
}

#[test]
fn the_api_listens_on_a_private_unix_socket() {
    use std::os::unix::fs::PermissionsExt;
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::bind(2);
        let sock = dir.path().join("ramrod.sock");
        let mut cfg = config(1, &ports, dir.path());
        cfg.peers.clear();
        cfg.listen_unix = Some(sock.clone());
        // A stale socket a crash left behind is replaced.
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        let node = ramrod_tests::start(&ports, cfg.clone()).await.unwrap();
        node.initialize().await.unwrap();
        node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "records hold secrets: {mode:o}");

        // The client and admin API, and watches, over the socket.
        let c = Client::unix(&sock).unwrap().with_token(TOKEN);
        let mut w = c
            .watch(&Filter::Key(b"vm/1".to_vec()), None, true)
            .await
            .unwrap();
        let put = c.put("vm/1", "cloud-init: secret").await.unwrap();
        assert_eq!(
            c.get("vm/1").await.unwrap().as_deref(),
            Some(&b"cloud-init: secret"[..])
        );
        assert_eq!(c.status().await.unwrap().id, 1);
        loop {
            if let WatchUpdate::Event(e) = w.next().await.unwrap() {
                assert_eq!(e.kv.mod_revision, put.index);
                break;
            }
        }

        // A second node on the same socket is refused: it is in use.
        let mut other = config(2, &ports, &dir.path().join("other"));
        other.peers.clear();
        other.listen_unix = Some(sock.clone());
        let e = ramrod_tests::start(&ports, other.clone())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("another process is serving"), "{e}");
        // Nor does a node take over a path that is not a socket.
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        other.listen_unix = Some(file.clone());
        let e = ramrod_tests::start(&ports, other).await.unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

        // A clean shutdown removes the socket.
        ramrod_tests::stop(&ports, node).await;
        assert!(!sock.exists(), "the socket is removed on shutdown");
    });
}
