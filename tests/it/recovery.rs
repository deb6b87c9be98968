//! Recovering from the cluster: a node whose local state is damaged beyond
//! repair (its newest snapshots damaged, so what verifies ends before its
//! log begins; or damaged acknowledged data in its log) discards its log,
//! keeps its vote, withholds its votes until it has what it may have
//! acknowledged, and catches up from the leader, with no wipe by hand. With
//! too few peers answering, or alone, it stops and says what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ramrod::{Node, NodeError};
use ramrod_tests::Ports;

use crate::cluster::leader;
use crate::compaction::{eventually, policy_config, write_keys};
use crate::trust::caught_up;

const MARK: &[u8] = b"RAMROD-RECOVERY-MARK-0123456789abcdef";
const POLICY: &str = "entries";
const POLICY_TOML: &str = "snapshot_every = 500\nkeep_entries = 50\ncheck_ms = 100";

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

/// A cluster under the `entries` policy with snapshots and purges on every
/// node; the leader's id.
async fn compacted_cluster(dir: &Path, ports: &Ports) -> (Vec<Node>, u64) {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let c = policy_config(id, ports, dir, POLICY, POLICY_TOML);
        nodes.push(ramrod_tests::start(ports, c).await.unwrap());
    }
    nodes[0].initialize().await.unwrap();
    let leader_id = leader(&nodes).await;
    let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
    write_keys(lead, "k/", 2_000, 32).await;
    for n in &nodes {
        eventually(
            Duration::from_secs(30),
            "every node snapshotted and purged",
            || {
                n.internals().log.stats().first_index > 1_000
                    && n.internals().sm.current_manifest().is_some()
            },
        )
        .await;
    }
    (nodes, leader_id)
}

fn restart_config(id: u64, ports: &Ports, dir: &Path) -> ramrod::NodeConfig {
    policy_config(id, ports, dir, POLICY, POLICY_TOML)
}

/// Checks a node that recovered: it says so, catches up with the leader,
/// and votes again.
async fn recovered(back: &Node, lead: &Node) {
    let r = back.internals().recovery.clone();
    assert!(
        r.discarded
            .as_deref()
            .is_some_and(|d| d.contains("discarded-")),
        "{r:?}"
    );
    assert!(r.votes_withheld_until.is_some() && r.discards == 1, "{r:?}");
    write_keys(lead, "after/", 200, 16).await;
    caught_up(back, lead, Duration::from_secs(60)).await;
    eventually(Duration::from_secs(10), "it votes again", || {
        back.internals()
            .votes_withheld
            .load(std::sync::atomic::Ordering::Acquire)
            == 0
    })
    .await;
}

#[test]
fn a_node_whose_newest_snapshot_is_damaged_recovers_from_the_cluster() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::bind(3);
        let (mut nodes, leader_id) = compacted_cluster(dir.path(), &ports).await;
        let pos = nodes.iter().position(|n| n.id() != leader_id).unwrap();
        let id = nodes[pos].id();
        let newest = nodes[pos]
            .internals()
            .sm
            .current_manifest()
            .unwrap()
            .id
            .clone();
        let vote = nodes[pos].internals().log.vote();
        ramrod_tests::stop(&ports, nodes.remove(pos)).await;
        // Its newest snapshot's manifest is damaged: the one that verifies
        // is older, and its log was purged past that.
        let manifests = dir.path().join(format!("node-{id}/snapshots/manifests"));
        let file = files_under(&manifests)
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(&newest))
            .expect("the newest manifest's file");
        flip(&file, 40);

        let back = ramrod_tests::start(&ports, restart_config(id, &ports, dir.path()))
            .await
            .unwrap();
        assert_eq!(
            back.internals().log.vote().map(|v| v.leader_id),
            vote.map(|v| v.leader_id),
            "the vote is kept"
        );
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        recovered(&back, lead).await;
        nodes.push(back);
        for n in nodes {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_node_whose_log_is_damaged_recovers_once_enough_peers_answer() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::bind(3);
        let (mut nodes, leader_id) = compacted_cluster(dir.path(), &ports).await;
        // A marked entry in the live log (not purged by the time the
        // follower stops), with more after it.
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        let pos = nodes.iter().position(|n| n.id() != leader_id).unwrap();
        let id = nodes[pos].id();
        let mut attempt = 0;
        let mark = loop {
            let mark = format!("{}-{attempt}", String::from_utf8_lossy(MARK)).into_bytes();
            let at = lead.put(b"marked".to_vec(), mark.clone()).await.unwrap().index;
            write_keys(lead, &format!("later{attempt}/"), 100, 8).await;
            let target = lead.internals().sm.last_applied().unwrap().index;
            eventually(Duration::from_secs(10), "the follower has it all", || {
                nodes[pos].internals().sm.last_applied().unwrap().index >= target
            })
            .await;
            // A purge the last snapshot asked for has had its time.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if nodes[pos].internals().log.purged().map_or(0, |p| p.index) < at {
                break mark;
            }
            attempt += 1;
            assert!(attempt < 5, "every marked entry was purged at once");
        };
        ramrod_tests::stop(&ports, nodes.remove(pos)).await;
        // Damage inside acknowledged log data: the marked entry.
        let segs = dir.path().join(format!("node-{id}/raft-log"));
        let (seg, at) = files_under(&segs)
            .into_iter()
            .find_map(|p| {
                let b = std::fs::read(&p).unwrap();
                let at = b.windows(mark.len()).position(|w| w == mark.as_slice())?;
                Some((p, at + mark.len() / 2))
            })
            .expect("the marked entry in a segment");
        flip(&seg, at);
        // The other follower down too: no majority of the other voters.
        let other = nodes.iter().position(|n| n.id() != leader_id).unwrap();
        let other_id = nodes[other].id();
        ramrod_tests::stop(&ports, nodes.remove(other)).await;
        let e = ramrod_tests::start(&ports, restart_config(id, &ports, dir.path()))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NodeError::Damaged { remedy, .. } if remedy.contains("only 1 of the 2 other voters")),
            "{e}"
        );
        assert!(e.to_string().contains("damaged"), "{e}");
        // Nothing was moved: it tries again when started again.
        assert_eq!(ramrod::internals::log_store::discards(&dir.path().join(format!("node-{id}"))), 0);
        nodes.push(
            ramrod_tests::start(&ports, restart_config(other_id, &ports, dir.path()))
                .await
                .unwrap(),
        );
        let back = ramrod_tests::start(&ports, restart_config(id, &ports, dir.path()))
            .await
            .unwrap();
        let lead_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == lead_id).unwrap();
        recovered(&back, lead).await;
        // Started again, it is an ordinary node.
        let id = back.id();
        ramrod_tests::stop(&ports, back).await;
        let again = ramrod_tests::start(&ports, restart_config(id, &ports, dir.path()))
            .await
            .unwrap();
        assert!(again.internals().recovery.discarded.is_none());
        nodes.push(again);
        for n in nodes {
            n.shutdown().await;
        }
    });
}

#[test]
fn a_lone_node_with_a_damaged_log_stops_and_says_what_to_do() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("solo");
        let start = || {
            ramrod::Node::builder(1, data.clone())
                .listen(ramrod::Listen::Nowhere)
                .start()
        };
        let node = start().await.unwrap();
        node.initialize().await.unwrap();
        node.internals()
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(1), "it leads")
            .await
            .unwrap();
        for i in 0..300u32 {
            node.put(format!("k/{i}").as_bytes(), b"v".to_vec()).await.unwrap();
        }
        node.shutdown().await;
        let seg = files_under(&data.join("raft-log"))
            .into_iter()
            .max_by_key(|p| std::fs::read(p).unwrap().iter().filter(|&&b| b != 0).count())
            .unwrap();
        flip(&seg, 200);
        let e = start().await.unwrap_err();
        assert!(
            matches!(&e, NodeError::Damaged { remedy, .. } if remedy.contains("ramrod log discard")),
            "{e}"
        );
    });
}
