//! Table-driven decision tests: one line per scenario.

use ramrod_policy_sdk::testing::{check, configure, scenario};
use ramrod_policy_sdk::{Policy, SnapshotKind};

/// What a decision must contain. Fields left `None` are not checked.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    snapshot: Option<Option<SnapshotKind>>,
    purge: Option<Option<u64>>,
    retain: Option<Option<u32>>,
    max_next_check: Option<u32>,
}

impl Expect {
    pub fn nothing() -> Self {
        Expect {
            snapshot: Some(None),
            ..Expect::default()
        }
    }
    pub fn snapshot(kind: SnapshotKind) -> Self {
        Expect {
            snapshot: Some(Some(kind)),
            ..Expect::default()
        }
    }
    pub fn purge(mut self, index: u64) -> Self {
        self.purge = Some(Some(index));
        self
    }
    pub fn no_purge(mut self) -> Self {
        self.purge = Some(None);
        self
    }
    pub fn retain(mut self, n: u32) -> Self {
        self.retain = Some(Some(n));
        self
    }
    pub fn next_check_at_most(mut self, ms: u32) -> Self {
        self.max_next_check = Some(ms);
        self
    }
}

/// Configures `P` from `config` and checks each `(scenario, expectation)`;
/// every decision must also pass the host's clamp unchanged.
pub fn run<P: Policy>(config: &str, table: &[(&str, Expect)]) {
    let policy: P = configure(config).unwrap_or_else(|e| panic!("{e}"));
    for (name, want) in table {
        let s = scenario(name).unwrap_or_else(|| panic!("no scenario {name}"));
        let got = check(&policy, &s.facts);
        let d = &got.decision;
        let ctx = format!("{} [{config}] on {name}: {d:?}", P::NAME);
        assert!(
            got.clamps.is_empty(),
            "{ctx}: host clamped {:?}",
            got.clamps
        );
        assert!(!d.reason.is_empty(), "{ctx}: empty reason");
        if let Some(k) = want.snapshot {
            assert_eq!(d.snapshot, k, "{ctx}: snapshot");
        }
        if let Some(p) = want.purge {
            assert_eq!(d.purge_up_to, p, "{ctx}: purge");
        }
        if let Some(r) = want.retain {
            assert_eq!(d.retain_snapshots, r, "{ctx}: retain");
        }
        if let Some(ms) = want.max_next_check {
            assert!(
                d.next_check_ms <= ms,
                "{ctx}: next check {} > {ms}",
                d.next_check_ms
            );
        }
    }
}
