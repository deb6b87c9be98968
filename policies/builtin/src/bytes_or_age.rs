use ramrod_policy_sdk::{Decision, LogFacts, Policy, SnapshotFacts, SnapshotKind, purge_keeping};
use serde::{Deserialize, Serialize};

/// Configuration of [`BytesOrAge`] (`[policy.config]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BytesOrAgeConfig {
    /// Snapshot once this many bytes of log were appended since the last one.
    pub max_bytes: u64,
    /// Snapshot once the last snapshot is older than this (milliseconds), if at
    /// least `min_entries` entries were applied since.
    pub max_age_ms: u64,
    /// The fewest new entries that make an old snapshot worth replacing.
    pub min_entries: u64,
    /// Entries to keep in the log behind the newest snapshot.
    pub keep_entries: u64,
    /// The kind of snapshot to build (the first one is always full).
    pub kind: SnapshotKind,
    /// The longest wait between two checks, in milliseconds.
    pub check_ms: u32,
    /// Snapshots to retain; unset keeps the host's setting.
    pub retain_snapshots: Option<u32>,
}

impl Default for BytesOrAgeConfig {
    fn default() -> Self {
        BytesOrAgeConfig {
            max_bytes: 64 << 20,
            max_age_ms: 3_600_000,
            min_entries: 1,
            keep_entries: 1_000,
            kind: SnapshotKind::Incremental,
            check_ms: 1_000,
            retain_snapshots: None,
        }
    }
}

/// Snapshot when the log since the last snapshot exceeds B bytes or the last
/// snapshot is older than T, so an idle cluster still compacts. A node with no
/// snapshot yet takes its first one as soon as it has `min_entries` entries.
#[derive(Clone, Debug)]
pub struct BytesOrAge(BytesOrAgeConfig);

impl Policy for BytesOrAge {
    const NAME: &'static str = "bytes-or-age";
    type Config = BytesOrAgeConfig;

    fn new(config: BytesOrAgeConfig) -> Result<Self, String> {
        if config.max_bytes == 0 {
            return Err("`max_bytes` must be at least 1".into());
        }
        if config.check_ms == 0 {
            return Err("`check_ms` must be at least 1".into());
        }
        Ok(BytesOrAge(config))
    }

    fn decide(&self, log: &LogFacts, snap: &SnapshotFacts) -> Decision {
        let c = &self.0;
        let purge = purge_keeping(log, snap, c.keep_entries);
        let enough = snap.entries_since >= c.min_entries.max(1);
        let why = if snap.in_progress {
            None
        } else if snap.last_index.is_none() && enough {
            Some(format!("first snapshot, {} entries", snap.entries_since))
        } else if snap.bytes_since >= c.max_bytes && snap.entries_since > 0 {
            Some(format!(
                "{} bytes since the last snapshot >= {}",
                snap.bytes_since, c.max_bytes
            ))
        } else if snap.age_ms >= c.max_age_ms && enough {
            Some(format!(
                "last snapshot is {} ms old >= {}",
                snap.age_ms, c.max_age_ms
            ))
        } else {
            None
        };
        // Wake up in time for the age threshold.
        let next = if snap.age_ms < c.max_age_ms {
            let until_age = (c.max_age_ms - snap.age_ms).max(100);
            u64::from(c.check_ms).min(until_age) as u32
        } else {
            c.check_ms
        };
        let mut d = Decision::wait(next, "").purge_opt(purge);
        d.retain_snapshots = c.retain_snapshots;
        match why {
            Some(why) => {
                let kind = if snap.last_index.is_none() {
                    SnapshotKind::Full
                } else {
                    c.kind
                };
                d.snapshot = Some(kind);
                d.reason = why;
            }
            None if snap.in_progress => d.reason = "a snapshot is being built".into(),
            None => {
                d.reason = format!(
                    "{} of {} bytes, {} of {} ms",
                    snap.bytes_since, c.max_bytes, snap.age_ms, c.max_age_ms
                )
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Expect, run};
    use SnapshotKind::*;

    #[test]
    fn decisions() {
        run::<BytesOrAge>(
            "",
            &[
                ("fresh", Expect::snapshot(Full).no_purge()),
                // Idle for 2 h with 40 new entries: the age trigger fires.
                ("idle", Expect::snapshot(Incremental).purge(99_000)),
                // 15k entries * 256 B = 3.8 MB < 64 MiB, 30 s old.
                ("steady", Expect::nothing().purge(1_009_000)),
                ("burst", Expect::snapshot(Incremental).purge(4_099_000)),
                ("lagging-follower", Expect::nothing().purge(2_499_000)),
                ("snapshot-in-flight", Expect::nothing().purge(3_200_000)),
            ],
        );
        run::<BytesOrAge>(
            "max_bytes = 1000000\nkind = \"full\"\nmax_age_ms = 10000\nmin_entries = 100",
            &[
                ("idle", Expect::nothing().next_check_at_most(1_000)),
                ("steady", Expect::snapshot(Full)),
            ],
        );
    }

    #[test]
    fn wakes_up_for_the_age_threshold() {
        let p: BytesOrAge =
            ramrod_policy_sdk::testing::configure("max_age_ms = 60000\ncheck_ms = 30000").unwrap();
        let mut s = ramrod_policy_sdk::testing::scenario("steady")
            .unwrap()
            .facts;
        s.snapshot.age_ms = 59_900;
        let d = p.decide(&s.log, &s.snapshot);
        assert_eq!(d.next_check_ms, 100);
    }
}
