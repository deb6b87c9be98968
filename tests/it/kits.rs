//! The policy kits (`examples/policies/`): each language's `entries`
//! decides exactly as the built-in `entries` on every scenario and on random
//! facts, refuses a bad config naming the key, and hot swaps into a running
//! 3-node cluster, on one node and by a rollout, under writes, after which
//! the decisions are its own; each kit's own policy loads and decides.
//!
//! The components are what `examples/policies/build.sh` builds into
//! `target/policy-kits/dist` (or `RAMROD_POLICY_KITS`). Without them these
//! tests say so and pass, unless `RAMROD_REQUIRE_KITS=1`, which
//! `scripts/test.sh` sets after building them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ramrod::internals::node::Node;
use ramrod::internals::policy::DecidedBy;
use ramrod::internals::raft::Request;
use ramrod::sdk::testing::{configure, scenarios};
use ramrod::sdk::{Bounds, Policy, clamp};
use ramrod::{PolicyChoice, Scope};
use ramrod_policies::Entries;

use crate::cluster::leader;
use crate::compaction::{applied, eventually, policy_config};
use crate::support::{Rng, random_facts, runtime};

/// The languages with a kit.
const LANGS: [&str; 5] = ["c", "go", "python", "js", "rust"];
/// Each kit's policy of its own, with a config for it.
const OWN: [(&str, &str, &str); 5] = [
    ("c", "disk-guard", "low_free_bytes = 1_000_000_000"),
    ("go", "age-or-size", "max_age = \"2m\"\nmax_log = \"64MiB\""),
    ("python", "rate-aware", "horizon_s = 5"),
    ("js", "off-peak", "off_peak = \"01:00-04:00\""),
    ("rust", "tiered", "full_after = 4"),
];

/// The configs the equivalence test runs `entries` with.
const CONFIGS: [&str; 3] = [
    "",
    "snapshot_every = 7\nkeep_entries = 3\nkind = \"incremental\"",
    "snapshot_every = 100\nkeep_entries = 0\ncheck_ms = 250\nretain_snapshots = 4",
];

fn dist() -> Option<PathBuf> {
    let dir = std::env::var_os("RAMROD_POLICY_KITS").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target/policy-kits/dist")
        },
        PathBuf::from,
    );
    let complete = LANGS
        .iter()
        .all(|l| dir.join(format!("{l}-entries.wasm")).is_file());
    if complete {
        return Some(dir);
    }
    assert!(
        std::env::var_os("RAMROD_REQUIRE_KITS").is_none(),
        "RAMROD_REQUIRE_KITS is set but {} lacks the kits' components: run examples/policies/build.sh",
        dir.display()
    );
    eprintln!(
        "skipped: no kit components in {} (examples/policies/build.sh builds them)",
        dir.display()
    );
    None
}

fn component(dir: &std::path::Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

#[test]
fn every_kits_entries_decides_exactly_like_the_builtin() {
    let Some(dir) = dist() else { return };
    for lang in LANGS {
        let file = format!("{lang}-entries.wasm");
        let wasm = component(&dir, &file);
        for config in CONFIGS {
            let (policy, _) = runtime()
                .load(&wasm, &file, config)
                .unwrap_or_else(|e| panic!("{file} [{config}]: {e}"));
            assert_eq!(policy.meta().name, format!("{lang}-entries"));
            let native: Entries = configure(config).unwrap();
            let mut rng = Rng::new(11);
            let facts = scenarios()
                .into_iter()
                .map(|s| s.facts)
                .chain((0..300).map(|_| random_facts(&mut rng)));
            for (i, f) in facts.enumerate() {
                let got = policy
                    .decide(&f)
                    .unwrap_or_else(|e| panic!("{file} [{config}] case {i}: {e}"))
                    .decision;
                let want = native.decide(&f.log, &f.snapshot);
                assert_eq!(got, want, "{file} [{config}] case {i}: {f:?}");
            }
        }
        // A bad config is refused, naming the key.
        for (config, key) in [
            ("snapshot_evry = 3", "snapshot_evry"),
            ("snapshot_every = 0", "snapshot_every"),
            ("kind = \"huge\"", "kind"),
        ] {
            let e = runtime().load(&wasm, &file, config).unwrap_err();
            assert!(e.to_string().contains(key), "{file} [{config}]: {e}");
        }
    }
}

#[test]
fn every_kits_own_policy_loads_and_decides() {
    let Some(dir) = dist() else { return };
    for (lang, name, config) in OWN {
        let file = format!("{lang}-{name}.wasm");
        let wasm = component(&dir, &file);
        for config in ["", config] {
            let (policy, _) = runtime()
                .load(&wasm, &file, config)
                .unwrap_or_else(|e| panic!("{file} [{config}]: {e}"));
            assert_eq!(policy.meta().name, format!("{lang}-{name}"));
            let mut rng = Rng::new(5);
            let facts = scenarios()
                .into_iter()
                .map(|s| s.facts)
                .chain((0..100).map(|_| random_facts(&mut rng)));
            for (i, f) in facts.enumerate() {
                let out = policy
                    .decide(&f)
                    .unwrap_or_else(|e| panic!("{file} [{config}] case {i}: {e}"));
                let d = out.decision;
                assert!(!d.reason.is_empty(), "{file} case {i}: no reason");
                // Whatever it asks, the host's clamp makes it safe; what it
                // asks within the rules stays as it is.
                let c = clamp(d.clone(), &f.log, &f.snapshot, &Bounds::default());
                if c.clamps.is_empty() {
                    assert_eq!(c.decision, d);
                }
            }
        }
        let e = runtime().load(&wasm, &file, "no_such_key = 1").unwrap_err();
        assert!(e.to_string().contains("no_such_key"), "{file}: {e}");
    }
}

/// Writes keys through `node` until `stop`, counting the acknowledged ones.
fn writer(
    node: &Node,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let raft = node.internals().raft.clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let i = acked.load(Ordering::Relaxed);
            raft.client_write(Request::put(format!("w/{i:08}"), vec![b'x'; 200]))
                .await
                .expect("a write during the swaps is acknowledged");
            acked.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Whether `node`'s newest decision was made by the policy `name` itself.
fn decided_by(node: &Node, name: &str) -> bool {
    node.internals()
        .controller
        .shared()
        .audit(1)
        .last()
        .is_some_and(|e| e.record.policy == name && e.record.decided_by == DecidedBy::Policy)
}

#[test]
fn each_kits_entries_hot_swaps_into_a_cluster_under_writes() {
    let Some(dist) = dist() else { return };
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // The nodes share the test binary's compile cache: the other tests
        // compile the same components.
        let ports = crate::cluster::Ports::bind(3);
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let mut c = policy_config(id, &ports, dir.path(), "adaptive", "");
            c.policy.cache_dir = Some(crate::support::cache_dir());
            nodes.push(ramrod_tests::start(&ports, c).await.unwrap());
        }
        nodes[0].initialize().await.unwrap();
        let leader_id = leader(&nodes).await;
        let lead = nodes.iter().find(|n| n.id() == leader_id).unwrap();
        let follower = nodes.iter().find(|n| n.id() != leader_id).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let writes = writer(lead, stop.clone(), acked.clone());
        let config = "snapshot_every = 300\nkeep_entries = 100\ncheck_ms = 100";
        for lang in LANGS {
            let file = format!("{lang}-entries.wasm");
            let name = format!("{lang}-entries");
            let wasm: Arc<[u8]> = component(&dist, &file).into();
            // On one node: a follower.
            let swapped = follower
                .swap_policy(
                    PolicyChoice::wasm(&file, wasm.clone()).config(config),
                    Scope::Local,
                )
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(
                (swapped.name.as_str(), swapped.index),
                (name.as_str(), None)
            );
            follower.internals().controller.check();
            eventually(
                Duration::from_secs(60),
                "a decision by the swapped-in policy",
                || decided_by(follower, &name),
            )
            .await;
            // By a rollout: every node, from one log index on.
            let swapped = lead
                .swap_policy(
                    PolicyChoice::wasm(&file, wasm.clone()).config(config),
                    Scope::Cluster,
                )
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let index = swapped.index.expect("a rollout has an index");
            for n in &nodes {
                let shared = n.internals().controller.shared().clone();
                eventually(
                    Duration::from_secs(120),
                    "every node runs the rollout",
                    || {
                        shared.origin().index == Some(index)
                            && shared.host().active_meta().is_some_and(|m| m.name == name)
                    },
                )
                .await;
                n.internals().controller.check();
                eventually(
                    Duration::from_secs(60),
                    "a decision by the rolled-out policy",
                    || decided_by(n, &name),
                )
                .await;
            }
            let p = lead.policy().unwrap();
            assert_eq!(
                (p.name.as_str(), p.origin.as_str()),
                (name.as_str(), "rollout")
            );
        }
        // The log is compacted by the last kit's decisions (the writes go on
        // until it is: how many there were by now depends on the machine).
        eventually(
            Duration::from_secs(60),
            "a purge by the kits' decisions",
            || lead.internals().log.stats().first_index > 1,
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        writes.await.unwrap();
        // Every acknowledged write is on every node.
        let written = acked.load(Ordering::Relaxed);
        assert!(written > 0);
        let last = applied(lead);
        for n in &nodes {
            eventually(Duration::from_secs(30), "every node applied", || {
                applied(n) >= last
            })
            .await;
            for i in (0..written).step_by(97).chain([written - 1]) {
                let key = format!("w/{i:08}");
                assert!(
                    n.internals().sm.get(key.as_bytes()).is_some(),
                    "node {} lacks {key}",
                    n.id()
                );
            }
        }
        for n in nodes {
            n.shutdown().await;
        }
    });
}
