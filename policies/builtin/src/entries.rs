use ramrod_policy_sdk::{Decision, LogFacts, Policy, SnapshotFacts, SnapshotKind, purge_keeping};
use serde::{Deserialize, Serialize};

/// Configuration of [`Entries`] (`[policy.config]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntriesConfig {
    /// Snapshot once this many entries were applied since the last snapshot.
    pub snapshot_every: u64,
    /// Entries to keep in the log behind the newest snapshot, for followers
    /// that are slightly behind.
    pub keep_entries: u64,
    /// The kind of snapshot to build.
    pub kind: SnapshotKind,
    /// How often to ask, in milliseconds.
    pub check_ms: u32,
    /// Snapshots to retain; unset keeps the host's setting.
    pub retain_snapshots: Option<u32>,
}

impl Default for EntriesConfig {
    fn default() -> Self {
        EntriesConfig {
            snapshot_every: 10_000,
            keep_entries: 5_000,
            kind: SnapshotKind::Full,
            check_ms: 1_000,
            retain_snapshots: None,
        }
    }
}

/// Snapshot every N applied entries, keep M entries behind the snapshot: what
/// openraft, etcd and hashicorp/raft do by default. Also the host's native
/// fallback. Like those, it never compacts an idle cluster that is short of N.
#[derive(Clone, Debug)]
pub struct Entries(EntriesConfig);

impl Policy for Entries {
    const NAME: &'static str = "entries";
    type Config = EntriesConfig;

    fn new(config: EntriesConfig) -> Result<Self, String> {
        if config.snapshot_every == 0 {
            return Err("`snapshot_every` must be at least 1".into());
        }
        if config.check_ms == 0 {
            return Err("`check_ms` must be at least 1".into());
        }
        Ok(Entries(config))
    }

    fn decide(&self, log: &LogFacts, snap: &SnapshotFacts) -> Decision {
        let c = &self.0;
        let purge = purge_keeping(log, snap, c.keep_entries);
        let mut d = Decision::wait(c.check_ms, "").purge_opt(purge);
        d.retain_snapshots = c.retain_snapshots;
        if snap.entries_since >= c.snapshot_every && !snap.in_progress {
            let kind = if snap.last_index.is_none() {
                SnapshotKind::Full
            } else {
                c.kind
            };
            d.snapshot = Some(kind);
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

impl Entries {
    /// The configuration in force.
    pub fn config(&self) -> &EntriesConfig {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Expect, run};

    #[test]
    fn decisions() {
        run::<Entries>(
            "",
            &[
                ("fresh", Expect::nothing().no_purge()),
                ("idle", Expect::nothing().purge(95_000)),
                (
                    "steady",
                    Expect::snapshot(SnapshotKind::Full).purge(1_005_000),
                ),
                (
                    "burst",
                    Expect::snapshot(SnapshotKind::Full).purge(4_095_000),
                ),
                (
                    "lagging-follower",
                    Expect::snapshot(SnapshotKind::Full).purge(2_495_000),
                ),
                (
                    "snapshot-in-flight",
                    Expect::snapshot(SnapshotKind::Full).purge(3_200_000),
                ),
                (
                    "long-chain",
                    Expect::snapshot(SnapshotKind::Full).purge(4_995_000),
                ),
            ],
        );
        run::<Entries>(
            "snapshot_every = 100\nkeep_entries = 0\nkind = \"incremental\"",
            &[
                ("fresh", Expect::snapshot(SnapshotKind::Full).no_purge()),
                ("idle", Expect::nothing().purge(100_000)),
                (
                    "steady",
                    Expect::snapshot(SnapshotKind::Incremental).purge(1_010_000),
                ),
            ],
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = ramrod_policy_sdk::testing::configure::<Entries>("snapshot_evry = 3").unwrap_err();
        assert!(e.contains("snapshot_evry"), "{e}");
        let e = ramrod_policy_sdk::testing::configure::<Entries>("snapshot_every = 0").unwrap_err();
        assert!(e.contains("snapshot_every"), "{e}");
        let e = ramrod_policy_sdk::testing::configure::<Entries>("kind = \"huge\"").unwrap_err();
        assert!(e.contains("huge"), "{e}");
    }
}
