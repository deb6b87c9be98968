//! The host's safety net: whatever a policy returns, [`clamp`] turns it into a
//! decision that is safe to carry out (invariant 2 of the design), and says
//! what it changed. Pure and free of I/O, so policy authors can run the same
//! check in their own tests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{Decision, LogFacts, SnapshotFacts, SnapshotKind};

/// The bounds the host holds every decision to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bounds {
    /// The shortest `next-check-ms` honoured.
    pub min_check_ms: u32,
    /// The longest `next-check-ms` honoured.
    pub max_check_ms: u32,
    /// The most snapshots a policy may ask to retain.
    pub max_retain: u32,
    /// The longest reason kept, in bytes; longer ones are cut.
    pub max_reason_bytes: usize,
    /// The longest snapshot chain (base + deltas) the host keeps: an
    /// incremental snapshot that would make it longer is built full. A node
    /// takes it from its `snapshots.max-chain` setting, not from `[bounds]`.
    #[serde(skip, default = "default_max_chain")]
    pub max_chain: u32,
}

fn default_max_chain() -> u32 {
    DEFAULT_MAX_CHAIN
}

/// The default of [`Bounds::max_chain`].
pub const DEFAULT_MAX_CHAIN: u32 = 16;

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            min_check_ms: 10,
            max_check_ms: 300_000,
            max_retain: 64,
            max_reason_bytes: 256,
            max_chain: DEFAULT_MAX_CHAIN,
        }
    }
}

/// One correction the host made to a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Clamp {
    /// A snapshot was asked for while one is already being built; it is
    /// deferred until that build ends ([`Clamped::deferred`]).
    SnapshotInProgress,
    /// A snapshot was asked for but nothing was applied since the last one.
    SnapshotNothingNew,
    /// An incremental snapshot was asked for with no base to build on; a full
    /// one is built instead.
    IncrementalWithoutBase,
    /// An incremental snapshot would make the chain longer than the host
    /// allows; a full one is built instead.
    ChainTooLong {
        /// The chain's length (base + deltas) now.
        length: u32,
        /// The longest chain the host keeps ([`Bounds::max_chain`]).
        max: u32,
    },
    /// A purge was asked for past the highest safe index.
    PurgeLimited {
        /// The index the policy asked for.
        asked: u64,
        /// The index the host allows (`None`: no purge at all).
        allowed: Option<u64>,
        /// What limited it.
        by: PurgeLimit,
    },
    /// A purge was asked for below the first index still in the log: a no-op.
    PurgeAlreadyDone {
        /// The index the policy asked for.
        asked: u64,
        /// The first index still in the log.
        first_index: u64,
    },
    /// `retain-snapshots` was outside `1..=max_retain`.
    Retain {
        /// What the policy asked for.
        asked: u32,
        /// What the host keeps.
        allowed: u32,
    },
    /// `next-check-ms` was outside the host's bounds.
    NextCheck {
        /// What the policy asked for.
        asked: u32,
        /// What the host uses.
        allowed: u32,
    },
    /// The reason was too long or held control characters.
    Reason {
        /// Its length in bytes as given.
        len: usize,
    },
}

/// Why a purge was limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PurgeLimit {
    /// No durable snapshot exists: nothing may be purged.
    NoSnapshot,
    /// The newest durable snapshot covers less.
    Snapshot,
    /// Less has been applied to the state machine.
    Applied,
    /// A follower is installing a snapshot and needs the entries after it.
    SnapshotInFlight,
}

impl fmt::Display for Clamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clamp::SnapshotInProgress => {
                write!(f, "snapshot deferred: a snapshot is already being built")
            }
            Clamp::SnapshotNothingNew => {
                write!(
                    f,
                    "snapshot dropped: nothing applied since the last snapshot"
                )
            }
            Clamp::IncrementalWithoutBase => {
                write!(
                    f,
                    "incremental snapshot turned full: there is no base snapshot"
                )
            }
            Clamp::ChainTooLong { length, max } => write!(
                f,
                "incremental snapshot turned full: the chain has {length} layers, at most {max} are kept"
            ),
            Clamp::PurgeLimited { asked, allowed, by } => {
                let why = match by {
                    PurgeLimit::NoSnapshot => "no durable snapshot exists",
                    PurgeLimit::Snapshot => "the newest durable snapshot ends there",
                    PurgeLimit::Applied => "only that much is applied",
                    PurgeLimit::SnapshotInFlight => {
                        "a follower installing a snapshot needs the entries after it"
                    }
                };
                match allowed {
                    Some(a) => write!(f, "purge-up-to {asked} lowered to {a}: {why}"),
                    None => write!(f, "purge-up-to {asked} dropped: {why}"),
                }
            }
            Clamp::PurgeAlreadyDone { asked, first_index } => write!(
                f,
                "purge-up-to {asked} dropped: the log already starts at {first_index}"
            ),
            Clamp::Retain { asked, allowed } => {
                write!(f, "retain-snapshots {asked} changed to {allowed}")
            }
            Clamp::NextCheck { asked, allowed } => {
                write!(f, "next-check-ms {asked} changed to {allowed}")
            }
            Clamp::Reason { len } => write!(f, "reason of {len} bytes cut or cleaned"),
        }
    }
}

/// A decision after clamping, with what was changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clamped {
    /// The decision to carry out.
    pub decision: Decision,
    /// What the host changed; empty when the policy's decision was safe as is.
    pub clamps: Vec<Clamp>,
    /// A snapshot the policy asked for while one was being built: not in
    /// `decision`, to be built (with the chain bound applied again) once the
    /// running build ends.
    pub deferred: Option<SnapshotKind>,
}

/// Returns the highest index that may be purged now and what limits it, or
/// `None` when nothing may be purged (no durable snapshot).
pub fn purge_limit(log: &LogFacts, snapshot: &SnapshotFacts) -> Option<(u64, PurgeLimit)> {
    let mut limit = (snapshot.last_index?, PurgeLimit::Snapshot);
    if log.applied < limit.0 {
        limit = (log.applied, PurgeLimit::Applied);
    }
    if let Some(floor) = log.in_flight_floor()
        && floor < limit.0
    {
        limit = (floor, PurgeLimit::SnapshotInFlight);
    }
    Some(limit)
}

/// The index to purge up to so that `keep` entries stay in the log behind the
/// newest durable snapshot, within the limits [`clamp`] enforces; `None` when
/// that would purge nothing. A helper for policies: what it returns is never
/// clamped.
pub fn purge_keeping(log: &LogFacts, snapshot: &SnapshotFacts, keep: u64) -> Option<u64> {
    let (limit, _) = purge_limit(log, snapshot)?;
    let target = snapshot.last_index?.checked_sub(keep)?.min(limit);
    (target >= log.first_index).then_some(target)
}

/// Clamps `decision` to what is safe given the facts it was made on.
///
/// The rules, in order:
/// - no snapshot while one is being built (it is [deferred](Clamped::deferred)
///   instead), nor when nothing was applied since the last one; an
///   incremental snapshot without a base, or one that would make the chain
///   longer than `bounds.max_chain`, becomes full;
/// - purge never past the newest durable snapshot, the applied index, or the
///   snapshot index of any follower with a transfer in flight; a purge below
///   the first index is dropped as a no-op;
/// - `retain-snapshots` within `1..=bounds.max_retain`;
/// - `next-check-ms` within `bounds.min_check_ms..=bounds.max_check_ms`;
/// - the reason cut to `bounds.max_reason_bytes` and stripped of control
///   characters.
pub fn clamp(
    mut decision: Decision,
    log: &LogFacts,
    snapshot: &SnapshotFacts,
    bounds: &Bounds,
) -> Clamped {
    let mut clamps = Vec::new();
    let mut deferred = None;

    if let Some(kind) = decision.snapshot {
        let covered = snapshot.last_index.unwrap_or(0);
        if snapshot.in_progress {
            decision.snapshot = None;
            deferred = Some(kind);
            clamps.push(Clamp::SnapshotInProgress);
        } else if log.applied <= covered {
            decision.snapshot = None;
            clamps.push(Clamp::SnapshotNothingNew);
        } else {
            let has_base = snapshot.last_index.is_some();
            let (kind, clamp) =
                snapshot_kind(kind, has_base, snapshot.chain_length, bounds.max_chain);
            decision.snapshot = Some(kind);
            clamps.extend(clamp);
        }
    }

    if let Some(asked) = decision.purge_up_to {
        match purge_limit(log, snapshot) {
            None => {
                decision.purge_up_to = None;
                clamps.push(Clamp::PurgeLimited {
                    asked,
                    allowed: None,
                    by: PurgeLimit::NoSnapshot,
                });
            }
            Some((limit, by)) if asked > limit => {
                let allowed = (limit >= log.first_index).then_some(limit);
                decision.purge_up_to = allowed;
                clamps.push(Clamp::PurgeLimited { asked, allowed, by });
            }
            Some(_) if asked < log.first_index => {
                decision.purge_up_to = None;
                clamps.push(Clamp::PurgeAlreadyDone {
                    asked,
                    first_index: log.first_index,
                });
            }
            Some(_) => {}
        }
    }

    if let Some(asked) = decision.retain_snapshots {
        let allowed = asked.clamp(1, bounds.max_retain.max(1));
        if allowed != asked {
            decision.retain_snapshots = Some(allowed);
            clamps.push(Clamp::Retain { asked, allowed });
        }
    }

    let asked = decision.next_check_ms;
    let allowed = asked.clamp(
        bounds.min_check_ms,
        bounds.max_check_ms.max(bounds.min_check_ms),
    );
    if allowed != asked {
        decision.next_check_ms = allowed;
        clamps.push(Clamp::NextCheck { asked, allowed });
    }

    let len = decision.reason.len();
    if len > bounds.max_reason_bytes || decision.reason.chars().any(char::is_control) {
        decision.reason = clean_reason(&decision.reason, bounds.max_reason_bytes);
        clamps.push(Clamp::Reason { len });
    }

    Clamped {
        decision,
        clamps,
        deferred,
    }
}

/// The kind of snapshot the host builds when `asked` is asked for on a chain
/// of `chain_length` layers (`has_base`: a snapshot exists to build on), and
/// the correction it made, if any: an incremental without a base, or one
/// that would make the chain longer than `max_chain` (at least 1), is full.
pub fn snapshot_kind(
    asked: SnapshotKind,
    has_base: bool,
    chain_length: u32,
    max_chain: u32,
) -> (SnapshotKind, Option<Clamp>) {
    let max = max_chain.max(1);
    match asked {
        SnapshotKind::Full => (SnapshotKind::Full, None),
        SnapshotKind::Incremental if !has_base => {
            (SnapshotKind::Full, Some(Clamp::IncrementalWithoutBase))
        }
        SnapshotKind::Incremental if chain_length >= max => (
            SnapshotKind::Full,
            Some(Clamp::ChainTooLong {
                length: chain_length,
                max,
            }),
        ),
        SnapshotKind::Incremental => (SnapshotKind::Incremental, None),
    }
}

fn clean_reason(reason: &str, max: usize) -> String {
    let mut out = String::with_capacity(reason.len().min(max));
    for c in reason.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Follower;

    fn facts() -> (LogFacts, SnapshotFacts) {
        let log = LogFacts {
            first_index: 101,
            last_index: 1000,
            committed: 990,
            applied: 980,
            ..LogFacts::default()
        };
        let snap = SnapshotFacts {
            last_index: Some(900),
            ..SnapshotFacts::default()
        };
        (log, snap)
    }

    fn check(d: Decision, log: &LogFacts, snap: &SnapshotFacts) -> Clamped {
        clamp(d, log, snap, &Bounds::default())
    }

    #[test]
    fn safe_decision_is_untouched() {
        let (log, snap) = facts();
        let d = Decision::wait(1000, "ok").purge(800).retain(3);
        let c = check(d.clone(), &log, &snap);
        assert_eq!(c.decision, d);
        assert!(c.clamps.is_empty());
    }

    #[test]
    fn purge_never_passes_the_durable_snapshot() {
        let (log, snap) = facts();
        let c = check(Decision::wait(1000, "").purge(u64::MAX), &log, &snap);
        assert_eq!(c.decision.purge_up_to, Some(900));
        assert!(matches!(
            c.clamps[0],
            Clamp::PurgeLimited {
                by: PurgeLimit::Snapshot,
                ..
            }
        ));
    }

    #[test]
    fn purge_without_snapshot_is_dropped() {
        let (log, mut snap) = facts();
        snap.last_index = None;
        let c = check(Decision::wait(1000, "").purge(500), &log, &snap);
        assert_eq!(c.decision.purge_up_to, None);
    }

    #[test]
    fn purge_respects_a_follower_with_snapshot_in_flight() {
        let (mut log, snap) = facts();
        log.followers = vec![
            Follower {
                id: 2,
                snapshot_in_flight: Some(700),
                ..Follower::default()
            },
            Follower {
                id: 3,
                snapshot_in_flight: None,
                matched: Some(10),
                ..Follower::default()
            },
        ];
        let c = check(Decision::wait(1000, "").purge(900), &log, &snap);
        assert_eq!(c.decision.purge_up_to, Some(700));
        // A floor below the first index means nothing may be purged.
        log.followers[0].snapshot_in_flight = Some(50);
        let c = check(Decision::wait(1000, "").purge(900), &log, &snap);
        assert_eq!(c.decision.purge_up_to, None);
    }

    #[test]
    fn purge_respects_applied_index() {
        let (mut log, snap) = facts();
        log.applied = 850;
        let c = check(Decision::wait(1000, "").purge(900), &log, &snap);
        assert_eq!(c.decision.purge_up_to, Some(850));
    }

    #[test]
    fn purge_below_first_index_is_a_noop() {
        let (log, snap) = facts();
        let c = check(Decision::wait(1000, "").purge(50), &log, &snap);
        assert_eq!(c.decision.purge_up_to, None);
        assert_eq!(
            c.clamps,
            vec![Clamp::PurgeAlreadyDone {
                asked: 50,
                first_index: 101
            }]
        );
    }

    #[test]
    fn snapshot_rules() {
        let (log, mut snap) = facts();
        snap.in_progress = true;
        let c = check(
            Decision::wait(1000, "").snapshot(SnapshotKind::Full),
            &log,
            &snap,
        );
        assert_eq!(c.decision.snapshot, None);
        assert_eq!(c.deferred, Some(SnapshotKind::Full), "deferred, not lost");

        snap.in_progress = false;
        snap.last_index = None;
        let c = check(
            Decision::wait(1000, "").snapshot(SnapshotKind::Incremental),
            &log,
            &snap,
        );
        assert_eq!(c.decision.snapshot, Some(SnapshotKind::Full));

        snap.last_index = Some(log.applied);
        let c = check(
            Decision::wait(1000, "").snapshot(SnapshotKind::Full),
            &log,
            &snap,
        );
        assert_eq!(c.decision.snapshot, None);
        assert_eq!(c.clamps, vec![Clamp::SnapshotNothingNew]);
        assert_eq!(c.deferred, None);
    }

    #[test]
    fn the_chain_never_grows_past_its_bound() {
        let (log, mut snap) = facts();
        let bounds = Bounds {
            max_chain: 4,
            ..Bounds::default()
        };
        let inc = || Decision::wait(1000, "").snapshot(SnapshotKind::Incremental);
        snap.chain_length = 3;
        let c = clamp(inc(), &log, &snap, &bounds);
        assert_eq!(c.decision.snapshot, Some(SnapshotKind::Incremental));
        assert!(c.clamps.is_empty());
        snap.chain_length = 4;
        let c = clamp(inc(), &log, &snap, &bounds);
        assert_eq!(c.decision.snapshot, Some(SnapshotKind::Full));
        assert_eq!(c.clamps, vec![Clamp::ChainTooLong { length: 4, max: 4 }]);
        // A bound of 0 is read as 1: every snapshot is full.
        let c = clamp(
            inc(),
            &log,
            &SnapshotFacts {
                chain_length: 1,
                ..snap.clone()
            },
            &Bounds {
                max_chain: 0,
                ..Bounds::default()
            },
        );
        assert_eq!(c.decision.snapshot, Some(SnapshotKind::Full));
    }

    #[test]
    fn next_check_retain_and_reason_are_bounded() {
        let (log, snap) = facts();
        let b = Bounds::default();
        let c = check(Decision::wait(0, "").retain(0), &log, &snap);
        assert_eq!(c.decision.next_check_ms, b.min_check_ms);
        assert_eq!(c.decision.retain_snapshots, Some(1));
        let c = check(
            Decision::wait(u32::MAX, "x".repeat(10_000)).retain(1 << 30),
            &log,
            &snap,
        );
        assert_eq!(c.decision.next_check_ms, b.max_check_ms);
        assert_eq!(c.decision.retain_snapshots, Some(b.max_retain));
        assert_eq!(c.decision.reason.len(), b.max_reason_bytes);
        let c = check(Decision::wait(100, "a\nb\u{7}é".repeat(100)), &log, &snap);
        assert!(!c.decision.reason.chars().any(char::is_control));
        assert!(c.decision.reason.len() <= b.max_reason_bytes);
    }
}
