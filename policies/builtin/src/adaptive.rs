use std::fmt::Write as _;

use ramrod_policy_sdk::{
    Decision, LogFacts, Policy, Role, SnapshotFacts, SnapshotKind, purge_limit,
};
use serde::{Deserialize, Serialize};

/// Configuration of [`Adaptive`] (`[policy.config]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Snapshot once this many bytes of log were appended since the last one.
    pub max_bytes: u64,
    /// Snapshot once this many entries were applied since the last one.
    pub max_entries: u64,
    /// Snapshot once the last one is older than this (ms), if anything changed.
    pub max_age_ms: u64,
    /// Rebase (full snapshot) once the chain holds this many snapshots.
    pub max_chain_length: u32,
    /// Rebase once the deltas weigh more than this fraction of the base.
    pub max_delta_ratio: f64,
    /// Rebase when more than this fraction of the keys changed since the last
    /// snapshot: a delta would be nearly as big as a new base.
    pub max_dirty_ratio: f64,
    /// Followers at most this many entries behind keep the log they need;
    /// followers further behind are cut off and get a snapshot instead.
    pub lag_budget_entries: u64,
    /// Entries to keep behind the newest snapshot in any case.
    pub keep_entries: u64,
    /// Below this many free bytes on the log volume, snapshot and purge as much
    /// as is safe, ignoring the lag budget and `keep_entries`.
    pub low_disk_bytes: u64,
    /// Snapshots to retain.
    pub retain_snapshots: u32,
    /// The shortest wait between two checks (ms), used under heavy load.
    pub min_check_ms: u32,
    /// The longest wait between two checks (ms), used when idle.
    pub max_check_ms: u32,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            max_bytes: 128 << 20,
            max_entries: 500_000,
            max_age_ms: 30 * 60_000,
            max_chain_length: 16,
            max_delta_ratio: 1.0,
            max_dirty_ratio: 0.5,
            lag_budget_entries: 100_000,
            keep_entries: 1_000,
            low_disk_bytes: 1 << 30,
            retain_snapshots: 2,
            min_check_ms: 100,
            max_check_ms: 10_000,
        }
    }
}

/// The policy for production clusters: snapshots on bytes, entries, age or
/// low disk; chooses incremental or full from the chain's shape; keeps the log
/// that followers within a lag budget still need; never purges what a follower
/// installing a snapshot needs; asks again sooner when the write rate is high.
#[derive(Clone, Debug)]
pub struct Adaptive(AdaptiveConfig);

impl Policy for Adaptive {
    const NAME: &'static str = "adaptive";
    type Config = AdaptiveConfig;

    fn new(c: AdaptiveConfig) -> Result<Self, String> {
        let positive = [
            ("max_bytes", c.max_bytes),
            ("max_entries", c.max_entries),
            ("max_chain_length", u64::from(c.max_chain_length)),
            ("retain_snapshots", u64::from(c.retain_snapshots)),
            ("min_check_ms", u64::from(c.min_check_ms)),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{key}` must be at least 1"));
        }
        for (key, v) in [
            ("max_delta_ratio", c.max_delta_ratio),
            ("max_dirty_ratio", c.max_dirty_ratio),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("`{key}` must be a positive number, not {v}"));
            }
        }
        if c.max_check_ms < c.min_check_ms {
            return Err(format!(
                "`max_check_ms` ({}) is below `min_check_ms` ({})",
                c.max_check_ms, c.min_check_ms
            ));
        }
        Ok(Adaptive(c))
    }

    fn decide(&self, log: &LogFacts, snap: &SnapshotFacts) -> Decision {
        let c = &self.0;
        let disk_low = log.disk_free_bytes < c.low_disk_bytes;
        let mut reason = String::new();

        let trigger = self.trigger(snap, disk_low);
        let snapshot = trigger.as_ref().map(|why| {
            let (kind, how) = self.kind(snap);
            let _ = write!(reason, "{how} snapshot: {why}");
            kind
        });

        let purge = self.purge(log, snap, disk_low, &mut reason);

        let next = if snapshot.is_some() || disk_low {
            c.min_check_ms
        } else {
            self.next_check(log, snap)
        };
        if reason.is_empty() {
            let _ = write!(
                reason,
                "waiting: {} of {} bytes, {} of {} entries",
                snap.bytes_since, c.max_bytes, snap.entries_since, c.max_entries
            );
        }
        Decision {
            snapshot,
            purge_up_to: purge,
            retain_snapshots: Some(c.retain_snapshots),
            next_check_ms: next,
            reason,
        }
    }
}

impl Adaptive {
    /// Why a snapshot is due now, if it is.
    fn trigger(&self, snap: &SnapshotFacts, disk_low: bool) -> Option<String> {
        let c = &self.0;
        if snap.in_progress || snap.entries_since == 0 {
            return None;
        }
        if snap.last_index.is_none() {
            Some("no snapshot yet".into())
        } else if disk_low {
            Some("disk space is low".into())
        } else if snap.bytes_since >= c.max_bytes {
            Some(format!(
                "{} bytes of log >= {}",
                snap.bytes_since, c.max_bytes
            ))
        } else if snap.entries_since >= c.max_entries {
            Some(format!(
                "{} entries >= {}",
                snap.entries_since, c.max_entries
            ))
        } else if snap.age_ms >= c.max_age_ms {
            Some(format!("{} ms old >= {}", snap.age_ms, c.max_age_ms))
        } else {
            None
        }
    }

    /// Incremental unless the chain is long, heavy, or most keys changed.
    fn kind(&self, snap: &SnapshotFacts) -> (SnapshotKind, String) {
        let c = &self.0;
        let full = |why: String| (SnapshotKind::Full, format!("full ({why})"));
        if snap.last_index.is_none() {
            return full("first base".into());
        }
        if snap.chain_length >= c.max_chain_length {
            return full(format!(
                "chain of {} >= {}",
                snap.chain_length, c.max_chain_length
            ));
        }
        let deltas = snap.chain_bytes.saturating_sub(snap.base_bytes) as f64;
        if snap.base_bytes > 0 && deltas / snap.base_bytes as f64 > c.max_delta_ratio {
            return full(format!(
                "deltas {:.2}x the base > {}",
                deltas / snap.base_bytes as f64,
                c.max_delta_ratio
            ));
        }
        if snap.state_keys > 0
            && snap.dirty_keys as f64 / snap.state_keys as f64 > c.max_dirty_ratio
        {
            return full(format!(
                "{} of {} keys changed",
                snap.dirty_keys, snap.state_keys
            ));
        }
        (SnapshotKind::Incremental, "incremental".into())
    }

    /// The highest index to purge: behind the snapshot, keeping what followers
    /// within the lag budget need (all of it is capped by the host's limit).
    fn purge(
        &self,
        log: &LogFacts,
        snap: &SnapshotFacts,
        disk_low: bool,
        reason: &mut String,
    ) -> Option<u64> {
        let c = &self.0;
        let (limit, _) = purge_limit(log, snap)?;
        let keep = if disk_low { 0 } else { c.keep_entries };
        let mut target = snap.last_index?.checked_sub(keep)?.min(limit);
        if log.role == Role::Leader && !disk_low {
            let mut kept = Vec::new();
            for f in &log.followers {
                if f.lag_entries > c.lag_budget_entries {
                    continue;
                }
                if let Some(m) = f.matched
                    && m < target
                {
                    target = m;
                    kept.push(f.id);
                }
            }
            if !kept.is_empty() {
                let sep = if reason.is_empty() { "" } else { "; " };
                let _ = write!(reason, "{sep}purge held back for followers {kept:?}");
            }
        }
        let cut: Vec<u64> = log
            .followers
            .iter()
            .filter(|f| f.lag_entries > c.lag_budget_entries && f.snapshot_in_flight.is_none())
            .filter(|f| f.matched.is_none_or(|m| m < target))
            .map(|f| f.id)
            .collect();
        if target < log.first_index {
            return None;
        }
        if !cut.is_empty() {
            let sep = if reason.is_empty() { "" } else { "; " };
            let _ = write!(
                reason,
                "{sep}followers {cut:?} beyond the lag budget will need a snapshot"
            );
        }
        Some(target)
    }

    /// Sooner when writes come fast: half the time the current rates need to
    /// reach a threshold, within `min_check_ms..=max_check_ms`.
    fn next_check(&self, log: &LogFacts, snap: &SnapshotFacts) -> u32 {
        let c = &self.0;
        let mut ms = f64::from(c.max_check_ms);
        if log.byte_rate > 0.0 {
            let left = c.max_bytes.saturating_sub(snap.bytes_since) as f64;
            ms = ms.min(left / log.byte_rate * 500.0);
        }
        if log.append_rate > 0.0 {
            let left = c.max_entries.saturating_sub(snap.entries_since) as f64;
            ms = ms.min(left / log.append_rate * 500.0);
        }
        if snap.entries_since > 0 && snap.age_ms < c.max_age_ms {
            ms = ms.min((c.max_age_ms - snap.age_ms) as f64);
        }
        ms.clamp(f64::from(c.min_check_ms), f64::from(c.max_check_ms)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Expect, run};
    use SnapshotKind::*;
    use ramrod_policy_sdk::testing::{configure, scenario};

    #[test]
    fn decisions() {
        run::<Adaptive>(
            "",
            &[
                ("fresh", Expect::snapshot(Full).no_purge()),
                // Idle for 2 h with 40 new entries: the age trigger fires.
                (
                    "idle",
                    Expect::snapshot(Incremental).purge(99_000).retain(2),
                ),
                ("steady", Expect::nothing().purge(1_009_000)),
                (
                    "burst",
                    Expect::snapshot(Incremental)
                        .purge(4_099_000)
                        .next_check_at_most(100),
                ),
                // Follower 2 (10 behind) is in budget, follower 3 (550k) is cut off.
                ("lagging-follower", Expect::nothing().purge(2_499_000)),
                ("snapshot-in-flight", Expect::nothing().purge(3_200_000)),
                ("long-chain", Expect::nothing().purge(4_999_000)),
                ("disk-low", Expect::snapshot(Incremental).purge(6_850_000)),
            ],
        );
    }

    #[test]
    fn keeps_log_for_followers_within_budget() {
        let p: Adaptive = configure("keep_entries = 0").unwrap();
        let mut f = scenario("lagging-follower").unwrap().facts;
        f.log.followers[1].matched = Some(2_450_000);
        f.log.followers[1].lag_entries = 150_000;
        // 150k > budget of 100k: cut off, purge to the snapshot.
        assert_eq!(p.decide(&f.log, &f.snapshot).purge_up_to, Some(2_500_000));
        f.log.followers[1].lag_entries = 90_000;
        let d = p.decide(&f.log, &f.snapshot);
        assert_eq!(d.purge_up_to, Some(2_450_000), "{}", d.reason);
    }

    #[test]
    fn rebases_long_or_heavy_chains() {
        let p: Adaptive = configure("max_entries = 10").unwrap();
        let f = scenario("long-chain").unwrap().facts;
        assert_eq!(p.decide(&f.log, &f.snapshot).snapshot, Some(Full));
        let mut f = scenario("steady").unwrap().facts;
        assert_eq!(p.decide(&f.log, &f.snapshot).snapshot, Some(Incremental));
        f.snapshot.chain_bytes = f.snapshot.base_bytes * 3;
        assert_eq!(p.decide(&f.log, &f.snapshot).snapshot, Some(Full));
        let mut f = scenario("steady").unwrap().facts;
        f.snapshot.dirty_keys = f.snapshot.state_keys * 6 / 10;
        assert_eq!(p.decide(&f.log, &f.snapshot).snapshot, Some(Full));
    }

    #[test]
    fn asks_sooner_under_load() {
        let p: Adaptive = configure("").unwrap();
        let mut f = scenario("steady").unwrap().facts;
        f.snapshot.bytes_since = 0;
        f.log.byte_rate = 1_000.0;
        let slow = p.decide(&f.log, &f.snapshot).next_check_ms;
        f.log.byte_rate = 50_000_000.0;
        let fast = p.decide(&f.log, &f.snapshot).next_check_ms;
        assert_eq!(slow, 10_000);
        assert!((100..2_000).contains(&fast), "{fast}");
    }

    #[test]
    fn bad_config_is_named() {
        for (cfg, key) in [
            ("max_bytes = 0", "max_bytes"),
            ("max_delta_ratio = -1.0", "max_delta_ratio"),
            ("max_check_ms = 5", "max_check_ms"),
            ("lag_budget = 5", "lag_budget"),
        ] {
            let e = configure::<Adaptive>(cfg).unwrap_err();
            assert!(e.contains(key), "{cfg}: {e}");
        }
    }
}
