//! `entries` with the Rust SDK: snapshot every N applied entries, keep M
//! entries behind the snapshot. The reference the other kits' `entries`
//! are checked against (it decides exactly as the built-in `entries`).

use ramrod_policy_sdk::{Decision, LogFacts, Policy, SnapshotFacts, SnapshotKind, purge_keeping};
use serde::Deserialize;

/// `[policy.config]`: unknown keys are refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Snapshot once this many entries were applied since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the snapshot.
    pub keep_entries: u64,
    /// The kind of snapshot (the first is always full).
    pub kind: SnapshotKind,
    /// How often to ask, in milliseconds.
    pub check_ms: u32,
    /// Snapshots to keep; unset keeps the host's setting.
    pub retain_snapshots: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            snapshot_every: 10_000,
            keep_entries: 5_000,
            kind: SnapshotKind::Full,
            check_ms: 1_000,
            retain_snapshots: None,
        }
    }
}

/// The policy.
#[derive(Debug)]
pub struct Entries(Config);

impl Policy for Entries {
    const NAME: &'static str = "rust-entries";
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        if c.snapshot_every == 0 {
            return Err("`snapshot_every` must be at least 1".into());
        }
        if c.check_ms == 0 {
            return Err("`check_ms` must be at least 1".into());
        }
        Ok(Entries(c))
    }

    fn decide(&self, log: &LogFacts, snap: &SnapshotFacts) -> Decision {
        let c = &self.0;
        let mut d =
            Decision::wait(c.check_ms, "").purge_opt(purge_keeping(log, snap, c.keep_entries));
        d.retain_snapshots = c.retain_snapshots;
        if snap.entries_since >= c.snapshot_every && !snap.in_progress {
            d.snapshot = Some(if snap.last_index.is_none() {
                SnapshotKind::Full
            } else {
                c.kind
            });
            d.reason = format!(
                "{} entries since the last snapshot >= {}",
                snap.entries_since, c.snapshot_every
            );
        } else {
            d.reason = format!("{} of {} entries", snap.entries_since, c.snapshot_every);
        }
        d
    }
}

ramrod_policy_sdk::export_policy!(Entries);

#[cfg(test)]
mod tests {
    use super::*;
    use ramrod_policy_sdk::testing::{check, configure, scenario};

    #[test]
    fn decides_on_the_sdk_scenarios() {
        let p: Entries = configure("snapshot_every = 1000\nkeep_entries = 100").unwrap();
        let steady = scenario("steady").unwrap();
        let out = check(&p, &steady.facts);
        assert!(out.clamps.is_empty(), "{:?}", out.clamps);
        assert_eq!(out.decision.snapshot, Some(SnapshotKind::Full));
        let fresh = check(&p, &scenario("fresh").unwrap().facts);
        assert_eq!(fresh.decision.purge_up_to, None);
    }

    #[test]
    fn config_errors_name_the_key() {
        for (toml, key) in [
            ("snapshot_evry = 3", "snapshot_evry"),
            ("snapshot_every = 0", "snapshot_every"),
            ("kind = \"huge\"", "huge"),
        ] {
            let e = configure::<Entries>(toml).unwrap_err();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
