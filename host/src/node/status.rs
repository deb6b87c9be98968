//! What a node reports about itself: [`Status`], [`PolicyStatus`] and the
//! summaries of snapshots. The same types travel over HTTP (JSON) and are
//! what the typed client returns.

use serde::{Deserialize, Serialize};

use super::Recovery;
use super::controller::ControllerStats;
use super::handle::Parts;
use crate::log_store::LogStats;
use crate::policy::PolicyStats;
use crate::raft::NodeId;
use crate::snapshot::{Manifest, SnapshotKind};
use crate::state_machine::SnapshotStats;

/// A node's status (`GET /admin/status`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// Node id.
    pub id: NodeId,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last applied index.
    pub last_applied: Option<u64>,
    /// Live log facts.
    pub log: LogStats,
    /// Snapshot counters.
    pub snapshots: SnapshotStats,
    /// The newest snapshot.
    pub current_snapshot: Option<SnapshotSummary>,
    /// Keys in the state.
    pub keys: usize,
    /// Bytes of keys and values in the state.
    #[serde(default)]
    pub state_bytes: u64,
    /// Each follower's replication progress (on the leader).
    #[serde(default)]
    pub followers: Vec<FollowerProgress>,
    /// Free bytes on the volume of the data directory.
    #[serde(default)]
    pub disk_free_bytes: u64,
    /// The state's hash.
    pub state_hash: String,
    /// The running policy.
    pub policy: PolicyStatus,
    /// The controller's counters.
    pub controller: ControllerStats,
    /// How the node came up.
    pub recovery: Recovery,
}

impl Status {
    pub(super) fn of(p: &Parts) -> Status {
        let m = p.raft.metrics().borrow().clone();
        Status {
            id: m.id,
            role: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_applied: m.last_applied.map(|l| l.index),
            log: p.log.stats(),
            snapshots: p.sm.stats(),
            current_snapshot: p.sm.current_manifest().map(|m| SnapshotSummary::of(&m)),
            keys: p.sm.len(),
            state_bytes: p.sm.state_bytes(),
            followers: m
                .replication
                .iter()
                .flatten()
                .filter(|(id, _)| **id != m.id)
                .map(|(id, matched)| FollowerProgress {
                    id: *id,
                    matched: matched.map(|l| l.index),
                })
                .collect(),
            disk_free_bytes: crate::platform::disk_free(&p.data_dir),
            state_hash: p.sm.state_hash(),
            policy: PolicyStatus::of(p),
            controller: p.controller.shared().stats(),
            recovery: (*p.recovery).clone(),
        }
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.role == "Leader"
    }
}

/// A follower's replication progress, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerProgress {
    /// The follower.
    pub id: NodeId,
    /// The highest index known to be replicated on it.
    pub matched: Option<u64>,
}

/// The newest snapshot, as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Its id.
    pub id: String,
    /// Full or incremental.
    pub kind: SnapshotKind,
    /// The last log index it covers.
    pub last_index: Option<u64>,
    /// Layers of its chain (base + deltas).
    pub layers: usize,
    /// Bytes of every segment of its chain.
    pub chain_bytes: u64,
}

impl SnapshotSummary {
    fn of(m: &Manifest) -> SnapshotSummary {
        SnapshotSummary {
            id: m.id.clone(),
            kind: m.kind,
            last_index: m.last_log_id.map(|l| l.index),
            layers: m.layers() as usize,
            chain_bytes: m.chain_bytes(),
        }
    }
}

/// A snapshot just built (`POST /admin/snapshot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Its id.
    pub id: String,
    /// Full or incremental (the chain bound may have made it full).
    pub kind: SnapshotKind,
    /// The last log index it covers.
    pub last_index: Option<u64>,
    /// Segment bytes it wrote that the store did not hold.
    pub bytes_written: u64,
}

impl SnapshotInfo {
    pub(super) fn of(m: &Manifest) -> SnapshotInfo {
        SnapshotInfo {
            id: m.id.clone(),
            kind: m.kind,
            last_index: m.last_log_id.map(|l| l.index),
            bytes_written: m.bytes_written,
        }
    }
}

/// The running policy (`GET /admin/policy`, and in the status).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Its name (`native-entries` when only the native fallback runs).
    pub name: String,
    /// Its full hash (empty for the native one).
    pub hash: String,
    /// Where it was loaded from.
    pub source: String,
    /// Its configuration (TOML text).
    pub config: String,
    /// `config`, `rollout` or `local`.
    pub origin: String,
    /// For a rollout: the index of its entry.
    pub index: Option<u64>,
    /// The last rollout this node could not load, or swap it refused.
    pub last_error: Option<String>,
    /// Rollouts this node could not load or refused to propose.
    #[serde(default)]
    pub rollout_failures: u64,
    /// Local swaps this node refused.
    #[serde(default)]
    pub swap_failures: u64,
    /// The largest component this node accepts (`policy.max-upload-bytes`).
    #[serde(default)]
    pub max_upload_bytes: u64,
    /// The policy host's counters.
    pub stats: PolicyStats,
}

impl PolicyStatus {
    pub(super) fn of(p: &Parts) -> PolicyStatus {
        let shared = p.controller.shared();
        let host = shared.host();
        let origin = shared.origin();
        let (name, hash, source, config) = match host.active_meta() {
            Some(m) => (m.name, m.hash, m.source, m.config),
            None => (
                crate::policy::NATIVE_NAME.to_string(),
                String::new(),
                "native".into(),
                String::new(),
            ),
        };
        PolicyStatus {
            name,
            hash,
            source,
            config,
            origin: origin.origin,
            index: origin.index,
            last_error: origin.last_error,
            rollout_failures: shared.stats().rollout_failures,
            swap_failures: shared.stats().swap_failures,
            max_upload_bytes: p.max_policy_bytes as u64,
            stats: host.stats(),
        }
    }
}
