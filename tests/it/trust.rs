//! Node-to-node trust with the cluster secret: requests between nodes are
//! signed; unsigned, wrongly signed, oversized and malformed peer requests
//! are refused and change nothing; a node of a multi-node cluster does not
//! start without a secret; answers carry no internal paths; a node whose
//! storage fails stops and says so; a node waits for its snapshot store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ramrod::internals::node::peer_auth::{HEADER, PeerAuth};
use ramrod::internals::snapshot::ObjectInfo;
use ramrod::{DirStore, Node, NodeError, SnapshotStore, SnapshotStoreSpec, StoreError};

use crate::cluster::{leader, start_cluster_on};
use crate::compaction::write_keys;

/// What refused peer requests must not change: every node's state hash
/// and Raft term.
pub(crate) fn hashes_and_terms(nodes: &[Node]) -> Vec<(String, u64)> {
    nodes
        .iter()
        .map(|n| {
            let i = n.internals();
            (i.sm.state_hash(), i.raft.metrics().borrow().current_term)
        })
        .collect()
}

/// Waits until `back` has applied everything `lead` has (writes stopped),
/// then checks their states are the same.
pub(crate) async fn caught_up(back: &Node, lead: &Node, limit: Duration) {
    let applied = |n: &Node| n.internals().sm.last_applied().map_or(0, |l| l.index);
    let target = applied(lead);
    crate::compaction::eventually(limit, "the node caught up", || applied(back) >= target).await;
    assert_eq!(
        back.internals().sm.state_hash(),
        lead.internals().sm.state_hash()
    );
}

/// A segment of `node`'s current snapshot.
pub(crate) fn a_segment_of(node: &Node) -> String {
    node.internals()
        .sm
        .current_manifest()
        .expect("a snapshot")
        .segments()
        .next()
        .expect("a segment")
        .name
        .clone()
}

fn url(n: &Node, path: &str) -> String {
    format!("http://{}{path}", n.addr().unwrap())
}

#[test]
fn peer_requests_without_the_cluster_secret_are_refused_and_change_nothing() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, _ports) = start_cluster_on(dir.path()).await;
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        write_keys(lead, "k/", 50, 4).await;
        // The nodes themselves replicate (they sign with the secret).
        let applied = |n: &Node| n.internals().sm.last_applied().map_or(0, |l| l.index);
        let target = applied(lead);
        crate::compaction::eventually(Duration::from_secs(10), "replicated", || {
            nodes.iter().all(|n| applied(n) >= target)
        })
        .await;
        lead.snapshot_now(None).await.unwrap();
        let before = hashes_and_terms(&nodes);
        let segment = a_segment_of(lead);

        let http = reqwest::Client::new();
        let wrong = PeerAuth::new("not the cluster's secret at all", leader_id);
        let right = PeerAuth::new(ramrod_tests::CLUSTER_SECRET, leader_id);
        for (what, header) in [
            ("unsigned", None),
            ("wrong secret", Some(wrong.sign("POST", "/raft/append"))),
            (
                "signed for another path",
                Some(right.sign("POST", "/raft/vote")),
            ),
            ("garbage", Some("1.2.3".to_string())),
        ] {
            let mut r = http.post(url(follower, "/raft/append")).body(vec![0u8; 64]);
            if let Some(h) = header {
                r = r.header(HEADER, h);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{what}");
        }
        for _ in 0..20 {
            let r = http
                .post(url(follower, "/raft/vote"))
                .body(vec![1u8; 64])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let r = http
            .get(url(lead, &format!("/raft/segment/{segment}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "segments are behind peer authentication");
        let r = http
            .post(url(lead, "/raft/catchup"))
            .body(vec![0u8; 8])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // With the secret: the segment is served; an oversized append or a
        // huge name is refused with no internals in the answer.
        let path = format!("/raft/segment/{segment}");
        let r = http
            .get(url(lead, &path))
            .header(HEADER, right.sign("GET", &path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let long = format!("/raft/segment/{}", "a".repeat(10_000));
        let r = http
            .get(url(lead, &long))
            .header(HEADER, right.sign("GET", &long))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let text = r.text().await.unwrap();
        let data = dir.path().display().to_string();
        assert!(!text.contains(&data) && !text.contains("/tmp"), "{text}");
        let r = http
            .post(url(follower, "/raft/append"))
            .header(HEADER, right.sign("POST", "/raft/append"))
            .body(vec![0u8; 40 << 20])
            .send()
            .await;
        // The node may answer before it has read the body.
        if let Ok(r) = r {
            assert_eq!(r.status(), 413);
        }

        // Nothing changed: the same state everywhere, no term pushed up,
        // and the cluster still takes writes.
        assert_eq!(
            hashes_and_terms(&nodes),
            before,
            "refused requests changed a state or a term"
        );
        write_keys(lead, "after/", 20, 4).await;
        for n in nodes {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_node_of_a_cluster_needs_a_long_enough_secret() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = ramrod_tests::Ports::bind(3);
        let mut c = crate::cluster::config(1, &ports, dir.path());
        c.cluster_secret = None;
        let e = ramrod_tests::start(&ports, c.clone()).await.unwrap_err();
        assert!(
            matches!(&e, NodeError::Config { reason } if reason.contains("cluster-secret")),
            "{e}"
        );
        c.join = true;
        c.peers.clear();
        let e = ramrod_tests::start(&ports, c.clone()).await.unwrap_err();
        assert!(e.to_string().contains("cluster-secret"), "{e}");
        c.join = false;
        c.cluster_secret = Some("short".into());
        let e = ramrod_tests::start(&ports, c.clone()).await.unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
        // From a file: its first line.
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{}\n", ramrod_tests::CLUSTER_SECRET)).unwrap();
        c.cluster_secret = None;
        c.cluster_secret_file = Some(file.clone());
        c.join = true;
        let n = ramrod_tests::start(&ports, c.clone()).await.unwrap();
        n.shutdown().await;
        c.cluster_secret = Some(ramrod_tests::CLUSTER_SECRET.into());
        let e = ramrod_tests::start(&ports, c).await.unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    });
}

/// A node whose log store fails to sync (a failpoint: a disk that errors)
/// stops its Raft core and says so: its typed operations and its HTTP API
/// answer "stopped" with the cause (not "channel closed"), `fatal_stop`
/// resolves (what `ramrod serve` exits on), the others go on; restarted,
/// it catches up with every acknowledged write.
#[test]
fn a_node_whose_storage_fails_stops_and_says_why() {
    use ramrod::failpoint;
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, ports) = start_cluster_on(dir.path()).await;
        let leader_id = leader(&nodes).await;
        let pos = nodes.iter().position(|n| n.id() != leader_id).unwrap();
        let id = nodes[pos].id();
        let data = dir.path().join(format!("node-{id}"));
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "before/", 20, 4).await;
        failpoint::arm("log.sync", &data);
        write_keys(lead, "during/", 50, 4).await;
        let follower = &nodes[pos];
        let cause = tokio::time::timeout(Duration::from_secs(20), follower.fatal_stop())
            .await
            .expect("the failing node stops")
            .expect("on a fatal error, not a shutdown");
        assert!(cause.contains("failpoint log.sync"), "{cause}");
        assert!(follower.fatal().is_some());
        let e = follower.get_local(b"before/000001").unwrap_err();
        assert!(
            matches!(&e, ramrod::OpError::Stopped { node, .. } if *node == id),
            "{e}"
        );
        let r = reqwest::Client::new()
            .put(url(follower, "/kv/x"))
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let text = r.text().await.unwrap();
        // Which node, and no paths: the details are in its log.
        assert!(text.contains(&format!("node {id} stopped")), "{text}");
        assert!(!text.contains("raft-log"), "{text}");
        // The others have a quorum.
        write_keys(lead, "after/", 50, 4).await;
        // Restarted with a disk that works: it catches up.
        failpoint::disarm("log.sync", &data);
        ramrod_tests::stop(&ports, nodes.remove(pos)).await;
        let back = ramrod_tests::start(&ports, crate::cluster::config(id, &ports, dir.path()))
            .await
            .unwrap();
        let target = nodes
            .iter()
            .map(|n| n.internals().sm.last_applied().map_or(0, |l| l.index))
            .max()
            .unwrap();
        crate::compaction::eventually(
            Duration::from_secs(30),
            "the restarted node caught up",
            || back.internals().sm.last_applied().map_or(0, |l| l.index) >= target,
        )
        .await;
        for key in ["before/000019", "during/000049", "after/000049"] {
            assert!(back.get_local(key.as_bytes()).unwrap().is_some(), "{key}");
        }
        assert!(back.fatal().is_none());
        back.shutdown().await;
        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// A snapshot store that does not answer its first `failures` listings
/// (a store that is down when the node starts).
#[derive(Debug)]
struct DownAtFirst {
    inner: Arc<dyn SnapshotStore>,
    failures: AtomicU32,
}

#[async_trait::async_trait]
impl SnapshotStore for DownAtFirst {
    fn describe(&self) -> String {
        format!("down-at-first {}", self.inner.describe())
    }
    async fn put_segment(&self, name: &str, bytes: Bytes) -> Result<bool, StoreError> {
        self.inner.put_segment(name, bytes).await
    }
    async fn get_segment(&self, name: &str) -> Result<Bytes, StoreError> {
        self.inner.get_segment(name).await
    }
    async fn has_segment(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.has_segment(name).await
    }
    async fn list_segments(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list_segments().await
    }
    async fn delete_segment(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_segment(name).await
    }
    async fn put_manifest(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.inner.put_manifest(name, bytes).await
    }
    async fn get_manifest(&self, name: &str) -> Result<Bytes, StoreError> {
        self.inner.get_manifest(name).await
    }
    async fn list_manifests(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        let down = self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if down {
            return Err(StoreError::Other {
                store: self.describe(),
                key: "manifests".into(),
                reason: "connection refused".into(),
            });
        }
        self.inner.list_manifests().await
    }
    async fn delete_manifest(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_manifest(name).await
    }
}

/// A node started while its snapshot store is down waits for it, with
/// backoff, and starts when it answers, restoring what it holds.
#[test]
fn a_node_waits_for_its_snapshot_store() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SnapshotStore> =
            Arc::new(DirStore::open(&dir.path().join("store")).unwrap());
        let start = |failures| {
            let s = Arc::new(DownAtFirst {
                inner: store.clone(),
                failures: AtomicU32::new(failures),
            });
            let node = Node::builder(1, dir.path().join("node"))
                .listen(ramrod::Listen::Nowhere)
                .snapshot_store(SnapshotStoreSpec::Custom(s.clone()))
                .start();
            (node, s)
        };
        let (node, s) = start(0);
        let node = node.await.unwrap();
        node.initialize().await.unwrap();
        node.put("k", b"v".to_vec()).await.unwrap();
        node.snapshot_now(None).await.unwrap();
        node.shutdown().await;
        drop(s);
        let (node, s) = start(3);
        let node = node.await.expect("the node starts once the store answers");
        assert_eq!(
            s.failures.load(Ordering::Relaxed),
            0,
            "it asked until it answered"
        );
        assert!(
            node.internals().recovery.snapshot.is_some(),
            "it restored the snapshot"
        );
        assert_eq!(node.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
        node.shutdown().await;
    });
}

/// The node that creates a cluster asks its peers first: on a fresh
/// cluster it creates it (once every peer answers), and after its data
/// directory was wiped it joins the cluster it was in instead of creating
/// a second one, and catches up.
#[test]
fn a_wiped_first_node_rejoins_its_cluster_instead_of_creating_one() {
    use ramrod::ClusterStart;
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = ramrod_tests::Ports::bind(3);
        let config = |id| crate::cluster::config(id, &ports, dir.path());
        // Node 1 alone: its peers do not answer, so it waits.
        let first = ramrod_tests::start(&ports, config(1)).await.unwrap();
        let creating = {
            let h = first.handle();
            tokio::spawn(async move { h.create_cluster_unless_it_exists().await })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !creating.is_finished(),
            "it created a cluster without asking its peers"
        );
        let mut nodes = vec![first];
        for id in 2..=3 {
            nodes.push(ramrod_tests::start(&ports, config(id)).await.unwrap());
        }
        assert_eq!(creating.await.unwrap().unwrap(), ClusterStart::Created);
        assert_eq!(
            nodes[0].create_cluster_unless_it_exists().await.unwrap(),
            ClusterStart::Member
        );
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "k/", 100, 4).await;

        // Node 1 loses its data.
        ramrod_tests::stop(&ports, nodes.remove(0)).await;
        std::fs::remove_dir_all(dir.path().join("node-1")).unwrap();
        let back = ramrod_tests::start(&ports, config(1)).await.unwrap();
        let found = back.create_cluster_unless_it_exists().await.unwrap();
        assert!(
            matches!(found, ClusterStart::Exists | ClusterStart::Member),
            "{found:?}"
        );
        // A leader among the two that kept their data (node 1 may have led).
        let leads = || {
            nodes
                .iter()
                .position(|n| n.internals().raft.metrics().borrow().current_leader == Some(n.id()))
        };
        crate::compaction::eventually(Duration::from_secs(10), "a leader", || leads().is_some())
            .await;
        let lead = &nodes[leads().unwrap()];
        write_keys(lead, "after/", 20, 4).await;
        let target = lead.internals().sm.last_applied().map_or(0, |l| l.index);
        crate::compaction::eventually(Duration::from_secs(30), "node 1 caught up", || {
            back.internals().sm.last_applied().map_or(0, |l| l.index) >= target
        })
        .await;
        assert!(back.get_local(b"k/000099").unwrap().is_some());
        // One cluster: node 1 follows the same leader, in the same term.
        let m = back.internals().raft.metrics().borrow().clone();
        let lm = lead.internals().raft.metrics().borrow().clone();
        assert_eq!(
            (m.current_leader, m.current_term),
            (lm.current_leader, lm.current_term)
        );
        back.shutdown().await;
        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// A snapshot store that fails its writes (failpoints at a segment's and at
/// a manifest's write): the build fails and is counted, nothing half-made
/// is used, the node goes on; once the store works, the next build has
/// every change, and a restart restores it.
#[test]
fn a_failing_snapshot_store_fails_builds_and_nothing_else() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        failing_store_fails_builds(&data, None, &data).await;
        // The same over S3 (SeaweedFS), when there is one.
        if let Some(mut s3) = crate::support::s3_test_config() {
            s3.prefix = format!("{}/failing-{}", s3.prefix, std::process::id());
            let at = std::path::PathBuf::from(format!("s3://{}/{}", s3.bucket, s3.prefix));
            let data = dir.path().join("node-s3");
            failing_store_fails_builds(&data, Some(SnapshotStoreSpec::S3(s3)), &at).await;
        }
    });
}

/// A node on `store` (default: its directory) whose store's writes fail
/// (failpoints armed for `armed_at`) fails its builds, counts them, keeps
/// its snapshot and takes writes; restarted, it has them all.
async fn failing_store_fails_builds(
    data: &std::path::Path,
    store: Option<SnapshotStoreSpec>,
    armed_at: &std::path::Path,
) {
    use ramrod::failpoint;
    {
        let start = || {
            let b = Node::builder(1, data).listen(ramrod::Listen::Nowhere);
            match store.clone() {
                Some(s) => b.snapshot_store(s),
                None => b,
            }
            .start()
        };
        let node = start().await.unwrap();
        node.initialize().await.unwrap();
        node.put("a", b"1".to_vec()).await.unwrap();
        let first = node.snapshot_now(None).await.unwrap();
        for (i, point) in ["snapshot.put-segment", "snapshot.put-manifest"]
            .into_iter()
            .enumerate()
        {
            node.put(format!("k{i}"), b"v".to_vec()).await.unwrap();
            failpoint::arm(point, armed_at);
            let e = node.snapshot_now(None).await.unwrap_err();
            assert!(e.to_string().contains(point), "{point}: {e}");
            failpoint::disarm(point, armed_at);
            let stats = node.internals().controller.shared().stats();
            assert_eq!(stats.build_failures, i as u64 + 1, "{point}");
            assert_eq!(
                node.internals().sm.current_manifest().unwrap().id,
                first.id,
                "{point}: a failed build replaced the snapshot"
            );
            // The node still takes writes.
            node.put(format!("after{i}"), b"v".to_vec()).await.unwrap();
        }
        let last = node.snapshot_now(None).await.unwrap();
        node.shutdown().await;
        let node = start().await.unwrap();
        assert_eq!(
            node.internals().recovery.snapshot.as_deref(),
            Some(last.id.as_str())
        );
        for key in ["a", "k0", "k1", "after0", "after1"] {
            assert!(node.get_local(key.as_bytes()).unwrap().is_some(), "{key}");
        }
        node.shutdown().await;
    }
}

/// A follower whose log index is damaged while it is down starts again:
/// the index is rebuilt from its segments (said in its recovery report),
/// its log and vote are what they were, and it catches up.
#[test]
fn a_node_with_a_damaged_index_rebuilds_it_and_catches_up() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, ports) = start_cluster_on(dir.path()).await;
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "k/", 200, 8).await;
        let follower = nodes.iter().position(|n| n.id() != leader_id).unwrap();
        let id = nodes[follower].id();
        let had = nodes[follower].internals().log.last_log_id();
        let vote = nodes[follower].internals().log.vote();
        ramrod_tests::stop(&ports, nodes.remove(follower)).await;
        let index = dir
            .path()
            .join(format!("node-{id}"))
            .join(ramrod::internals::log_store::LOG_FILE);
        let len = std::fs::metadata(&index).unwrap().len() as usize;
        std::fs::write(&index, vec![0xa5; len]).unwrap();

        let back = ramrod_tests::start(&ports, crate::cluster::config(id, &ports, dir.path()))
            .await
            .unwrap();
        let rebuilt = back.internals().recovery.index_rebuilt.clone();
        assert!(
            rebuilt.as_deref().is_some_and(|r| r.contains(".damaged-")),
            "{rebuilt:?}"
        );
        assert!(back.internals().log.last_log_id() >= had);
        assert_eq!(
            back.internals().log.vote().map(|v| v.leader_id),
            vote.map(|v| v.leader_id)
        );
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "after/", 50, 8).await;
        caught_up(&back, lead, Duration::from_secs(30)).await;
        nodes.push(back);
        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// A follower whose data directory is wiped while the leader runs on
/// rejoins on its first start: the leader takes a follower whose log went
/// back (it does not stop), sends it the log, and nothing is lost.
#[test]
fn a_wiped_follower_rejoins_on_its_first_start() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut nodes, ports) = start_cluster_on(dir.path()).await;
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "k/", 300, 8).await;
        let pos = nodes.iter().position(|n| n.id() != leader_id).unwrap();
        let id = nodes[pos].id();
        crate::compaction::eventually(Duration::from_secs(10), "the follower has it all", || {
            nodes[pos].internals().sm.last_applied() == lead.internals().sm.last_applied()
        })
        .await;
        ramrod_tests::stop(&ports, nodes.remove(pos)).await;
        std::fs::remove_dir_all(dir.path().join(format!("node-{id}"))).unwrap();
        let back = ramrod_tests::start(&ports, crate::cluster::config(id, &ports, dir.path()))
            .await
            .unwrap();
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        write_keys(lead, "after/", 50, 8).await;
        caught_up(&back, lead, Duration::from_secs(30)).await;
        assert!(
            lead.internals()
                .raft
                .metrics()
                .borrow()
                .running_state
                .is_ok()
        );
        assert!(back.get_local(b"k/000299").unwrap().is_some());
        nodes.push(back);
        for n in nodes {
            n.shutdown().await;
        }
    });
}
