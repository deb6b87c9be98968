//! A follower that was down catches up: with one snapshot install that
//! fetches only the segments it lacks (or the deltas merged), and with a
//! shared snapshot store, fetching nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use ramrod::internals::config::NodeConfig;
use ramrod::internals::node::Node;

use crate::cluster::{Ports, leader};
use crate::compaction::{applied, eventually, policy_config, start_with, write_keys};

/// Stops node `id`, runs `during` (writes on the leader), restarts it and
/// waits until it has applied everything. Returns the restarted node and
/// the segments its store held while it was down.
async fn down_while(
    nodes: &mut Vec<Node>,
    id: u64,
    (ports, start): (&Ports, impl FnOnce() -> NodeConfig),
    during: impl AsyncFnOnce(&Node),
    dir: &Path,
) -> BTreeSet<String> {
    let pos = nodes.iter().position(|n| n.id() == id).unwrap();
    ramrod_tests::stop(ports, nodes.remove(pos)).await;
    let had =
        ramrod_tests::stored_segments(&dir.join(format!("node-{id}")).join("snapshots")).await;
    let lead = leader_of(nodes).await;
    during(lead).await;
    let last = applied(lead);
    let back = ramrod_tests::start(ports, start()).await.unwrap();
    eventually(Duration::from_secs(90), "the follower caught up", || {
        applied(&back) >= last
    })
    .await;
    nodes.push(back);
    had
}

async fn leader_of(nodes: &[Node]) -> &Node {
    let id = leader(nodes).await;
    nodes.iter().find(|n| n.id() == id).unwrap()
}

#[test]
fn a_follower_down_for_50k_writes_catches_up_with_one_install() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let policy = "entries";
        let cfg =
            "snapshot_every = 5000\nkeep_entries = 500\ncheck_ms = 100\nkind = \"incremental\"";
        let (mut nodes, ports) = start_with(dir.path(), policy, cfg).await;
        let leader_id = leader(&nodes).await;
        let id = nodes
            .iter()
            .map(|n| n.id())
            .find(|&i| i != leader_id)
            .unwrap();
        let restart = || policy_config(id, &ports, dir.path(), policy, cfg);
        write_keys(leader_of(&nodes).await, "before/", 1_000, 32).await;

        // Round 1: down for 6,000 writes, past the leader's first snapshot
        // and purge: the follower installs the leader's base.
        down_while(
            &mut nodes,
            id,
            (&ports, restart),
            async |lead: &Node| {
                write_keys(lead, "r1/", 6_000, 64).await;
                eventually(Duration::from_secs(30), "the leader purged", || {
                    lead.internals().log.stats().first_index > 1_500
                })
                .await;
            },
            dir.path(),
        )
        .await;
        let back = nodes.last().unwrap();
        assert_eq!(
            back.internals().sm.stats().installed,
            1,
            "round 1: one install"
        );

        // Round 2: down for 50,000 writes. The leader's chain is its base plus
        // deltas: the follower fetches the deltas, not the base again.
        let had = down_while(
            &mut nodes,
            id,
            (&ports, restart),
            async |lead: &Node| {
                write_keys(lead, "during/", 50_000, 64).await;
                let target = applied(lead) - 2_000;
                eventually(Duration::from_secs(30), "the leader purged", || {
                    lead.internals().log.stats().first_index > target.min(40_000)
                })
                .await;
            },
            dir.path(),
        )
        .await;
        // Stay a while: no second install (no loop).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let back = nodes.last().unwrap();
        let stats = back.internals().sm.stats();
        assert_eq!(stats.installed, 1, "exactly one install: {stats:?}");
        let (manifest, fetched) = back.internals().sm.last_install().unwrap();
        let missing: u64 = manifest
            .segments()
            .filter(|s| !had.contains(&s.name))
            .map(|s| s.bytes)
            .sum();
        assert_eq!(fetched, missing, "fetched exactly the segments it lacked");
        assert!(
            fetched < manifest.chain_bytes(),
            "the base was not fetched again: {fetched} of a {}-byte chain",
            manifest.chain_bytes()
        );
        assert!(!manifest.deltas.is_empty());
        // The leader's deltas since the follower's point came merged, as one
        // layer: each changed key once.
        let lacked = std::iter::once(&manifest.base)
            .chain(&manifest.deltas)
            .filter(|l| l.segments.iter().any(|s| !had.contains(&s.name)))
            .count();
        assert_eq!(lacked, 1, "one merged layer: {manifest:?}");
        let lead = leader_of(&nodes).await;
        eventually(Duration::from_secs(10), "equal states", || {
            back.internals().sm.state_hash() == lead.internals().sm.state_hash()
        })
        .await;
        assert_eq!(back.internals().sm.len(), 57_000);
        // Revisions are the same records on every node, after installs and
        // restarts (the state hash covers them; compare them outright too).
        let sample = lead.list_local(b"r1/", None, 6_000).unwrap();
        assert_eq!(sample.kvs.len(), 6_000);
        assert!(
            sample
                .kvs
                .iter()
                .all(|kv| kv.version == 1 && kv.create_revision == kv.mod_revision)
        );
        for n in &nodes {
            assert_eq!(
                n.list_local(b"r1/", None, 6_000).unwrap().kvs,
                sample.kvs,
                "node {}",
                n.id()
            );
        }
        for n in nodes {
            n.shutdown().await;
        }
    });
}

/// With one snapshot store shared by every node (a directory here, and the
/// S3 server when one is configured), a returning follower finds every
/// segment already there: its install fetches nothing.
#[test]
fn a_follower_sharing_the_snapshot_store_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![ramrod::internals::config::StoreConfig {
        dir: Some(dir.path().join("shared")),
        s3: None,
    }];
    if let Some(s3) = crate::support::s3_test_config() {
        stores.push(ramrod::internals::config::StoreConfig {
            dir: None,
            s3: Some(s3),
        });
    }
    for (round, store) in stores.into_iter().enumerate() {
        crate::support::rt().block_on(async {
            let base = dir.path().join(format!("round-{round}"));
            let policy = "entries";
            let cfg =
                "snapshot_every = 1000\nkeep_entries = 100\ncheck_ms = 50\nkind = \"incremental\"";
            let ports = Ports::bind(3);
            let make = |id: u64| {
                let mut c = policy_config(id, &ports, &base, policy, cfg);
                c.snapshot_store = store.clone();
                c
            };
            let mut nodes = Vec::new();
            for id in 1..=3 {
                nodes.push(ramrod_tests::start(&ports, make(id)).await.unwrap());
            }
            nodes[0].initialize().await.unwrap();
            let leader_id = leader(&nodes).await;
            let id = nodes
                .iter()
                .map(|n| n.id())
                .find(|&i| i != leader_id)
                .unwrap();
            write_keys(leader_of(&nodes).await, "a/", 500, 32).await;
            let pos = nodes.iter().position(|n| n.id() == id).unwrap();
            let down = nodes.remove(pos);
            let had = applied(&down);
            ramrod_tests::stop(&ports, down).await;
            let lead = leader_of(&nodes).await;
            write_keys(lead, "b/", 3_000, 64).await;
            let last = applied(lead);
            eventually(Duration::from_secs(30), "the leader purged", || {
                lead.internals().log.stats().first_index > had + 1
            })
            .await;
            let back = ramrod_tests::start(&ports, make(id)).await.unwrap();
            eventually(Duration::from_secs(60), "the follower caught up", || {
                applied(&back) >= last
            })
            .await;
            let stats = back.internals().sm.stats();
            assert_eq!(stats.installed, 1, "round {round}: {stats:?}");
            assert_eq!(stats.bytes_fetched, 0, "round {round}: the store is shared");
            assert_eq!(back.internals().sm.len(), 3_500);
            back.shutdown().await;
            for n in nodes {
                n.shutdown().await;
            }
        });
    }
}
