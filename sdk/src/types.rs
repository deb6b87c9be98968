//! The facts a policy reads and the decision it returns: plain Rust mirrors of
//! the `ramrod:policy/types` WIT interface.

use serde::{Deserialize, Serialize};

/// The Raft role of the node asking for a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The node leads the cluster and replicates to followers.
    Leader,
    /// The node follows a leader.
    #[default]
    Follower,
    /// The node is campaigning for leadership.
    Candidate,
    /// The node receives the log but does not vote.
    Learner,
}

/// Which kind of snapshot to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// Only the keys changed since the previous snapshot, as a delta on the chain.
    Incremental,
    /// The whole state as a new base; resets the chain.
    Full,
}

impl std::fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotKind::Full => "full",
            SnapshotKind::Incremental => "incremental",
        })
    }
}

/// Replication progress of one follower, as seen by the leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follower {
    /// The follower's node id.
    pub id: u64,
    /// The highest log index known to be replicated on the follower, if any.
    pub matched: Option<u64>,
    /// How many entries the follower is behind the leader's last index.
    pub lag_entries: u64,
    /// The last log index covered by a snapshot being sent to this follower, if
    /// one is in flight. The follower needs every entry after it.
    pub snapshot_in_flight: Option<u64>,
}

/// What the log holds now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFacts {
    /// Milliseconds since the Unix epoch, from the host's clock.
    pub now_ms: u64,
    /// The role of this node.
    pub role: Role,
    /// The first index still in the log.
    pub first_index: u64,
    /// The last index in the log.
    pub last_index: u64,
    /// The highest index known to be committed.
    pub committed: u64,
    /// The highest index applied to the state machine.
    pub applied: u64,
    /// Number of entries the log holds now.
    pub entries: u64,
    /// Bytes of entry payload the log holds now.
    pub bytes: u64,
    /// Smoothed append rate, entries per second.
    pub append_rate: f64,
    /// Smoothed append rate, bytes per second.
    pub byte_rate: f64,
    /// Replication progress of each follower; empty unless this node leads.
    pub followers: Vec<Follower>,
    /// Free bytes on the volume that holds the log.
    pub disk_free_bytes: u64,
}

/// What the snapshot chain holds now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFacts {
    /// The last log index covered by the newest durable snapshot, if any.
    pub last_index: Option<u64>,
    /// Milliseconds since the newest durable snapshot was made (0 if none).
    pub age_ms: u64,
    /// Entries applied since the newest snapshot.
    pub entries_since: u64,
    /// Bytes of log appended since the newest snapshot.
    pub bytes_since: u64,
    /// Snapshots in the current chain: 1 for a lone base, plus 1 per delta.
    pub chain_length: u32,
    /// Bytes of the whole chain (base and deltas).
    pub chain_bytes: u64,
    /// Bytes of the base snapshot alone.
    pub base_bytes: u64,
    /// Keys in the state machine now.
    pub state_keys: u64,
    /// Bytes of keys and values in the state machine now.
    pub state_bytes: u64,
    /// Keys changed or deleted since the newest snapshot.
    pub dirty_keys: u64,
    /// Milliseconds the last snapshot build took.
    pub last_build_ms: u64,
    /// Whether a snapshot is being built right now.
    pub in_progress: bool,
}

/// Everything a policy is told for one decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The log.
    pub log: LogFacts,
    /// The snapshot chain.
    pub snapshot: SnapshotFacts,
}

/// What a policy wants done. The host clamps every field to what is safe
/// (see [`clamp`](crate::clamp())).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Build a snapshot now, of this kind.
    pub snapshot: Option<SnapshotKind>,
    /// Purge log entries up to and including this index.
    pub purge_up_to: Option<u64>,
    /// Keep this many snapshots; `None` keeps the host's setting.
    pub retain_snapshots: Option<u32>,
    /// Ask again after this many milliseconds.
    pub next_check_ms: u32,
    /// Why, in a few words.
    pub reason: String,
}

impl Decision {
    /// A decision to do nothing now and ask again after `next_check_ms`.
    pub fn wait(next_check_ms: u32, reason: impl Into<String>) -> Self {
        Decision {
            snapshot: None,
            purge_up_to: None,
            retain_snapshots: None,
            next_check_ms,
            reason: reason.into(),
        }
    }

    /// Also build a snapshot of `kind`.
    pub fn snapshot(mut self, kind: SnapshotKind) -> Self {
        self.snapshot = Some(kind);
        self
    }

    /// Also purge the log up to and including `index`.
    pub fn purge(mut self, index: u64) -> Self {
        self.purge_up_to = Some(index);
        self
    }

    /// Also purge up to `index` if it is `Some`.
    pub fn purge_opt(mut self, index: Option<u64>) -> Self {
        self.purge_up_to = index;
        self
    }

    /// Also ask the host to keep `count` snapshots.
    pub fn retain(mut self, count: u32) -> Self {
        self.retain_snapshots = Some(count);
        self
    }
}

impl LogFacts {
    /// The lowest index that a follower with a snapshot in flight still needs
    /// minus one: the highest index that may be purged without forcing that
    /// follower to start over. `None` when no transfer is in flight.
    pub fn in_flight_floor(&self) -> Option<u64> {
        self.followers
            .iter()
            .filter_map(|f| f.snapshot_in_flight)
            .min()
    }
}
