//! `tiered` with the Rust SDK: what Rust makes easy, a structured config
//! checked by types. Thresholds tighten as the log grows: each tier says,
//! for a log holding at least `log_bytes`, how many entries may come
//! between snapshots and how long a tail to keep. Small logs snapshot
//! rarely and keep a long tail for followers; a log that grows past a tier
//! snapshots sooner and keeps less. Incrementals until the chain reaches
//! `full_after` layers, then a full snapshot.
//!
//! ```toml
//! full_after = 8
//! tiers = [
//!   { log_bytes = 0,         snapshot_every = 100000, keep_entries = 20000 },
//!   { log_bytes = 67108864,  snapshot_every = 20000,  keep_entries = 5000 },
//!   { log_bytes = 268435456, snapshot_every = 1,      keep_entries = 0 },
//! ]
//! ```

use ramrod_policy_sdk::{Decision, LogFacts, Policy, SnapshotFacts, SnapshotKind, purge_keeping};
use serde::Deserialize;

/// One tier: from `log_bytes` of log on.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The tier applies to a log of at least this many bytes.
    pub log_bytes: u64,
    /// Entries between snapshots in this tier.
    pub snapshot_every: u64,
    /// Entries kept behind the snapshot in this tier.
    pub keep_entries: u64,
}

/// `[policy.config]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The tiers, by rising `log_bytes`; the first starts at 0.
    pub tiers: Vec<Tier>,
    /// A full snapshot once the chain has this many layers.
    pub full_after: u32,
    /// How often to ask, in milliseconds.
    pub check_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        let tier = |log_bytes, snapshot_every, keep_entries| Tier {
            log_bytes,
            snapshot_every,
            keep_entries,
        };
        Config {
            tiers: vec![
                tier(0, 100_000, 20_000),
                tier(64 << 20, 20_000, 5_000),
                tier(256 << 20, 1, 0),
            ],
            full_after: 8,
            check_ms: 1_000,
        }
    }
}

/// The policy.
#[derive(Debug)]
pub struct Tiered(Config);

impl Policy for Tiered {
    const NAME: &'static str = "rust-tiered";
    type Config = Config;

    fn new(c: Config) -> Result<Self, String> {
        match c.tiers.first() {
            None => return Err("`tiers`: give at least one tier".into()),
            Some(t) if t.log_bytes != 0 => {
                return Err("`tiers`: the first tier must start at `log_bytes = 0`".into());
            }
            Some(_) => {}
        }
        if let Some(w) = c
            .tiers
            .windows(2)
            .find(|w| w[1].log_bytes <= w[0].log_bytes)
        {
            return Err(format!(
                "`tiers`: `log_bytes` must rise from tier to tier ({} then {})",
                w[0].log_bytes, w[1].log_bytes
            ));
        }
        if let Some(i) = c.tiers.iter().position(|t| t.snapshot_every == 0) {
            return Err(format!("`tiers[{i}].snapshot_every` must be at least 1"));
        }
        if c.check_ms == 0 || c.full_after == 0 {
            return Err("`check_ms` and `full_after` must be at least 1".into());
        }
        Ok(Tiered(c))
    }

    fn decide(&self, log: &LogFacts, snap: &SnapshotFacts) -> Decision {
        let c = &self.0;
        let (n, tier) = c
            .tiers
            .iter()
            .enumerate()
            .rev()
            .find(|(_, t)| log.bytes >= t.log_bytes)
            .expect("the first tier starts at 0");
        let mut d =
            Decision::wait(c.check_ms, "").purge_opt(purge_keeping(log, snap, tier.keep_entries));
        if snap.entries_since >= tier.snapshot_every && snap.entries_since > 0 && !snap.in_progress
        {
            let full = snap.last_index.is_none() || snap.chain_length >= c.full_after;
            d.snapshot = Some(if full {
                SnapshotKind::Full
            } else {
                SnapshotKind::Incremental
            });
        }
        d.reason = format!(
            "tier {n} ({} MiB of log): {} of {} entries",
            log.bytes >> 20,
            snap.entries_since,
            tier.snapshot_every
        );
        d
    }
}

ramrod_policy_sdk::export_policy!(Tiered);

#[cfg(test)]
mod tests {
    use super::*;
    use ramrod_policy_sdk::testing::{check, configure, scenario};

    #[test]
    fn a_bigger_log_snapshots_sooner() {
        let p: Tiered = configure(
            "tiers = [{ log_bytes = 0, snapshot_every = 100000, keep_entries = 100 },\
             { log_bytes = 1000, snapshot_every = 10, keep_entries = 0 }]",
        )
        .unwrap();
        let mut facts = scenario("steady").unwrap().facts;
        facts.log.bytes = 10;
        facts.snapshot.entries_since = 50;
        assert_eq!(check(&p, &facts).decision.snapshot, None);
        facts.log.bytes = 5000;
        let out = check(&p, &facts);
        assert_eq!(out.decision.snapshot, Some(SnapshotKind::Incremental));
        assert!(
            out.decision.reason.starts_with("tier 1"),
            "{}",
            out.decision.reason
        );
        facts.snapshot.chain_length = 8;
        assert_eq!(
            check(&p, &facts).decision.snapshot,
            Some(SnapshotKind::Full)
        );
    }

    #[test]
    fn config_errors_name_what_is_wrong() {
        for (toml, want) in [
            ("tiers = []", "at least one"),
            (
                "tiers = [{ log_bytes = 5, snapshot_every = 1, keep_entries = 0 }]",
                "log_bytes = 0",
            ),
            (
                "tiers = [{ log_bytes = 0, snapshot_every = 1, keep_entries = 0 },\
                 { log_bytes = 0, snapshot_every = 1, keep_entries = 0 }]",
                "rise",
            ),
            (
                "tiers = [{ log_bytes = 0, snapshot_evry = 1, keep_entries = 0 }]",
                "snapshot_evry",
            ),
            ("full_aftr = 2", "full_aftr"),
        ] {
            let e = configure::<Tiered>(toml).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }
}
