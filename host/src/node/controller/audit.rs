//! What the controller records: the bounded audit log of decisions, its
//! counters, and where the running policy came from. Shared with the API.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{AUDIT_CAPACITY, Action, Trigger};
use crate::policy::{DecisionRecord, PolicyHost};
use crate::sdk::Facts;

/// One action of a decision and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// What was done.
    pub action: Action,
    /// Why it was refused, if it was (openraft may refuse a purge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.refused {
            None => write!(f, "{}", self.action),
            Some(why) => write!(f, "{} refused: {why}", self.action),
        }
    }
}

/// One decision, as the audit log keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number since the node started.
    pub seq: u64,
    /// When (Unix milliseconds).
    pub at_unix_ms: u64,
    /// What made the controller decide.
    pub trigger: Trigger,
    /// The facts the policy saw.
    pub facts: Facts,
    /// The policy, what it chose, what the host clamped.
    pub record: DecisionRecord,
    /// What the controller did about it.
    pub actions: Vec<Done>,
}

/// The controller's counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControllerStats {
    /// Decisions made.
    pub decisions: u64,
    /// Snapshot builds started, full.
    pub builds_full: u64,
    /// Snapshot builds started, incremental.
    pub builds_incremental: u64,
    /// Builds that failed (their changes are kept for the next one).
    pub build_failures: u64,
    /// Snapshot requests queued behind a running build.
    pub queued: u64,
    /// Purges asked of openraft.
    pub purges: u64,
    /// Entries removed from the log's head since the node started.
    pub purged_entries: u64,
    /// Policy swaps that a rollout entry caused.
    pub rollouts_applied: u64,
    /// Rollouts this node could not load (it kept its policy), and
    /// rollouts it refused to propose (validation failed on the leader).
    pub rollout_failures: u64,
    /// Local swaps this node refused (it kept its policy).
    #[serde(default)]
    pub swap_failures: u64,
    /// Whether a snapshot build is running now.
    pub building: bool,
    /// Milliseconds spent on finished builds (with `SnapshotStats::
    /// bytes_written`, the rate this node writes snapshots at).
    #[serde(default)]
    pub build_ms: u64,
    /// How long the last finished build took, in milliseconds.
    #[serde(default)]
    pub last_build_ms: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) decisions: AtomicU64,
    pub(super) builds_full: AtomicU64,
    pub(super) builds_incremental: AtomicU64,
    pub(super) build_failures: AtomicU64,
    pub(super) queued: AtomicU64,
    pub(super) purges: AtomicU64,
    pub(super) purged_entries: AtomicU64,
    pub(super) rollouts_applied: AtomicU64,
    pub(super) rollout_failures: AtomicU64,
    pub(super) swap_failures: AtomicU64,
    pub(super) building: AtomicBool,
    pub(super) build_ms: AtomicU64,
    pub(super) last_build_ms: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Which policy runs and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyOrigin {
    /// `config`, `rollout` or `local` (an operator's swap on this node only).
    pub origin: String,
    /// For a rollout: the index of its entry.
    pub index: Option<u64>,
    /// The last rollout this node could not load, and why.
    pub last_error: Option<String>,
}

/// What the controller shares with the API.
#[derive(Debug)]
pub struct ControllerShared {
    pub(super) host: Arc<PolicyHost>,
    pub(super) audit: Mutex<VecDeque<AuditEntry>>,
    pub(super) seq: AtomicU64,
    pub(super) counters: Counters,
    pub(super) origin: Mutex<PolicyOrigin>,
}

impl ControllerShared {
    /// The policy host.
    pub fn host(&self) -> &Arc<PolicyHost> {
        &self.host
    }

    /// The newest `limit` decisions, oldest first.
    pub fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        let audit = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        let skip = audit.len().saturating_sub(limit);
        audit.iter().skip(skip).cloned().collect()
    }

    /// The counters.
    pub fn stats(&self) -> ControllerStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ControllerStats {
            decisions: g(&c.decisions),
            builds_full: g(&c.builds_full),
            builds_incremental: g(&c.builds_incremental),
            build_failures: g(&c.build_failures),
            queued: g(&c.queued),
            purges: g(&c.purges),
            purged_entries: g(&c.purged_entries),
            rollouts_applied: g(&c.rollouts_applied),
            rollout_failures: g(&c.rollout_failures),
            swap_failures: g(&c.swap_failures),
            building: c.building.load(Ordering::Relaxed),
            build_ms: g(&c.build_ms),
            last_build_ms: g(&c.last_build_ms),
        }
    }

    /// Which policy runs and why.
    pub fn origin(&self) -> PolicyOrigin {
        self.origin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a refused swap (`rollout`: a rollout refused before it was
    /// proposed; else a local swap): counted, logged, and kept as the
    /// last error. The running policy stays.
    pub fn note_refused(&self, rollout: bool, why: &str) {
        let c = &self.counters;
        let what = if rollout {
            Counters::add(&c.rollout_failures, 1);
            "rollout"
        } else {
            Counters::add(&c.swap_failures, 1);
            "local swap"
        };
        tracing::warn!(error = %why, "refused a policy {what}; the running policy stays");
        self.origin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some(format!("refused {what}: {why}"));
    }

    /// Records that an operator swapped this node's policy by hand.
    pub fn note_local_swap(&self) {
        let mut o = self.origin.lock().unwrap_or_else(|e| e.into_inner());
        o.origin = "local".into();
        o.index = None;
    }

    pub(super) fn push(&self, mut entry: AuditEntry) {
        entry.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut audit = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        if audit.len() == AUDIT_CAPACITY {
            audit.pop_front();
        }
        audit.push_back(entry);
    }
}
