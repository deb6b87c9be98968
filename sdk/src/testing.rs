//! Test a policy natively, with plain `cargo test` and no Wasm runtime.
//!
//! [`configure`] goes through the same TOML path the guest uses, and
//! [`scenarios`] is the table of synthetic facts that `ramrod policy check`
//! and the host's dry-run use, so a policy that passes here behaves the same
//! when loaded by a node.
//!
//! ```
//! use ramrod_policy_sdk::testing::{check, configure, scenario};
//! # use ramrod_policy_sdk::{Decision, LogFacts, NoConfig, Policy, SnapshotFacts};
//! # struct Never;
//! # impl Policy for Never {
//! #     const NAME: &'static str = "never";
//! #     type Config = NoConfig;
//! #     fn new(_: NoConfig) -> Result<Self, String> { Ok(Never) }
//! #     fn decide(&self, _: &LogFacts, _: &SnapshotFacts) -> Decision {
//! #         Decision::wait(1000, "never")
//! #     }
//! # }
//! let policy: Never = configure("").unwrap();
//! let checked = check(&policy, &scenario("idle").unwrap().facts);
//! assert!(checked.clamps.is_empty(), "{:?}", checked.clamps);
//! // A stray key is an error that names it.
//! assert!(configure::<Never>("every = 3").err().unwrap().contains("every"));
//! ```

use crate::Policy;
use crate::clamp::{Bounds, Clamped, clamp};
use crate::types::{Facts, Follower, LogFacts, Role, SnapshotFacts};

/// Parses `config_toml` into the policy's config and builds the policy, exactly
/// as the guest does when the host calls `configure`.
///
/// # Errors
/// The TOML error (naming the key or value at fault) or the policy's own.
pub fn configure<P: Policy>(config_toml: &str) -> Result<P, String> {
    crate::configure_from_toml(config_toml)
}

/// Runs `policy` on `facts` and clamps the result with the host's default
/// [`Bounds`]. `clamps` is empty when the host would carry out the decision as is.
pub fn check<P: Policy>(policy: &P, facts: &Facts) -> Clamped {
    let decision = policy.decide(&facts.log, &facts.snapshot);
    clamp(decision, &facts.log, &facts.snapshot, &Bounds::default())
}

/// A named set of synthetic facts.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Short name, e.g. `idle`.
    pub name: &'static str,
    /// What situation it depicts.
    pub about: &'static str,
    /// The facts.
    pub facts: Facts,
}

/// The scenario named `name`, if there is one.
pub fn scenario(name: &str) -> Option<Scenario> {
    scenarios().into_iter().find(|s| s.name == name)
}

const NOW: u64 = 1_800_000_000_000;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The table of synthetic facts every policy is checked against: a fresh
/// node, an idle cluster, steady load, a burst, a lagging follower, a
/// snapshot in flight, a long snapshot chain and a nearly full disk.
pub fn scenarios() -> Vec<Scenario> {
    let follower = |id, matched: u64, last: u64| Follower {
        id,
        matched: Some(matched),
        lag_entries: last - matched,
        snapshot_in_flight: None,
    };
    let leader_log = |first: u64, last: u64, bytes_per_entry: u64, rate: f64| LogFacts {
        now_ms: NOW,
        role: Role::Leader,
        first_index: first,
        last_index: last,
        committed: last,
        applied: last,
        entries: last + 1 - first,
        bytes: (last + 1 - first) * bytes_per_entry,
        append_rate: rate,
        byte_rate: rate * bytes_per_entry as f64,
        followers: vec![follower(2, last, last), follower(3, last - 3, last)],
        disk_free_bytes: 200 * GIB,
    };
    let snap = |last: u64, applied: u64, age_ms: u64, bytes_per_entry: u64| SnapshotFacts {
        last_index: Some(last),
        age_ms,
        entries_since: applied - last,
        bytes_since: (applied - last) * bytes_per_entry,
        chain_length: 2,
        chain_bytes: 60 * MIB,
        base_bytes: 50 * MIB,
        state_keys: 400_000,
        state_bytes: 48 * MIB,
        dirty_keys: (applied - last).min(400_000) / 2,
        last_build_ms: 800,
        in_progress: false,
    };

    let mut out = Vec::new();

    let mut log = leader_log(1, 2_000, 256, 40.0);
    log.followers.clear();
    log.role = Role::Follower;
    out.push(Scenario {
        name: "fresh",
        about: "a follower that has never snapshotted, 2k entries in the log",
        facts: Facts {
            log,
            snapshot: SnapshotFacts {
                entries_since: 2_000,
                bytes_since: 2_000 * 256,
                state_keys: 1_500,
                state_bytes: 400_000,
                dirty_keys: 1_500,
                ..SnapshotFacts::default()
            },
        },
    });

    let mut log = leader_log(90_001, 100_040, 256, 0.0);
    log.followers = vec![follower(2, 100_040, 100_040), follower(3, 100_040, 100_040)];
    out.push(Scenario {
        name: "idle",
        about: "no writes for 2 hours, 40 entries since a 2-hour-old snapshot",
        facts: Facts {
            log,
            snapshot: snap(100_000, 100_040, 2 * 3_600_000, 256),
        },
    });

    out.push(Scenario {
        name: "steady",
        about: "500 entries/s of 256 B, last snapshot 30 s ago",
        facts: Facts {
            log: leader_log(1_000_001, 1_025_000, 256, 500.0),
            snapshot: snap(1_010_000, 1_025_000, 30_000, 256),
        },
    });

    out.push(Scenario {
        name: "burst",
        about: "20k entries/s of 4 KiB, 300k entries (1.2 GB) since the last snapshot",
        facts: Facts {
            log: leader_log(4_000_001, 4_400_000, 4096, 20_000.0),
            snapshot: snap(4_100_000, 4_400_000, 15_000, 4096),
        },
    });

    let mut log = leader_log(2_000_001, 2_600_000, 256, 800.0);
    log.followers = vec![
        follower(2, 2_599_990, 2_600_000),
        follower(3, 2_050_000, 2_600_000),
    ];
    out.push(Scenario {
        name: "lagging-follower",
        about: "follower 3 is 550k entries behind, follower 2 is in step",
        facts: Facts {
            log,
            snapshot: snap(2_500_000, 2_600_000, 60_000, 256),
        },
    });

    let mut log = leader_log(3_000_001, 3_400_000, 256, 800.0);
    log.followers = vec![
        follower(2, 3_400_000, 3_400_000),
        Follower {
            id: 3,
            matched: Some(2_900_000),
            lag_entries: 500_000,
            snapshot_in_flight: Some(3_200_000),
        },
    ];
    out.push(Scenario {
        name: "snapshot-in-flight",
        about: "follower 3 is installing the snapshot at 3.2M; a newer one exists at 3.35M",
        facts: Facts {
            log,
            snapshot: snap(3_350_000, 3_400_000, 20_000, 256),
        },
    });

    let mut s = snap(5_000_000, 5_080_000, 40_000, 512);
    s.chain_length = 24;
    s.chain_bytes = 140 * MIB;
    s.base_bytes = 50 * MIB;
    out.push(Scenario {
        name: "long-chain",
        about: "24 snapshots in the chain, deltas weigh 1.8x the base",
        facts: Facts {
            log: leader_log(4_900_001, 5_080_000, 512, 1_000.0),
            snapshot: s,
        },
    });

    let mut log = leader_log(6_000_001, 6_900_000, 1024, 300.0);
    log.disk_free_bytes = 300 * MIB;
    out.push(Scenario {
        name: "disk-low",
        about: "300 MiB free on the log volume, 900k entries in the log",
        facts: Facts {
            log,
            snapshot: snap(6_850_000, 6_900_000, 50_000, 1024),
        },
    });

    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_consistent() {
        let all = scenarios();
        assert!(all.len() >= 5);
        for s in &all {
            let l = &s.facts.log;
            assert!(l.first_index <= l.last_index + 1, "{}", s.name);
            assert!(
                l.applied <= l.committed && l.committed <= l.last_index,
                "{}",
                s.name
            );
            if let Some(i) = s.facts.snapshot.last_index {
                assert!(i <= l.applied, "{}", s.name);
                assert!(i + 1 >= l.first_index, "{}: the log has a hole", s.name);
            }
        }
        for name in [
            "idle",
            "steady",
            "burst",
            "lagging-follower",
            "snapshot-in-flight",
        ] {
            assert!(scenario(name).is_some(), "{name}");
        }
    }
}
