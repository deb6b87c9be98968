//! Observing: the facts a decision is made on, read from the log store, the
//! state machine, openraft's metrics, the network's transfer tracker, the
//! file system and the clock. Reads only (the one exception: the transfer
//! tracker learns each follower's progress from the same metrics).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ServerState;

use super::{Controller, LAG_EVENT_ENTRIES, Trigger};
use crate::raft::NodeId;
use crate::sdk::{Facts, Follower, LogFacts, Role, SnapshotFacts};
use crate::snapshot::Manifest;

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What makes a change of openraft's metrics worth a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Notable {
    state: Option<ServerState>,
    leader: Option<NodeId>,
    behind: BTreeSet<NodeId>,
}

impl Notable {
    /// The trigger, if `now` differs from `self` in a way worth a decision.
    pub(super) fn trigger(&self, now: &Notable) -> Option<Trigger> {
        if now.state != self.state {
            Some(Trigger::RoleChanged)
        } else if now.leader != self.leader {
            Some(Trigger::LeaderChanged)
        } else if now.behind.difference(&self.behind).next().is_some() {
            Some(Trigger::FollowerBehind)
        } else {
            None
        }
    }
}

impl Controller {
    pub(super) fn notable(
        &self,
        m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
    ) -> Notable {
        let mut behind = BTreeSet::new();
        if let (Some(repl), Some(last)) = (&m.replication, m.last_log_index) {
            let first = self.log.stats().first_index;
            for (id, matched) in repl {
                let matched = matched.map_or(0, |l| l.index);
                if *id != self.id
                    && (last.saturating_sub(matched) > LAG_EVENT_ENTRIES || matched + 1 < first)
                {
                    behind.insert(*id);
                }
            }
        }
        Notable {
            state: Some(m.state),
            leader: m.current_leader,
            behind,
        }
    }

    /// The facts for a decision now.
    pub(super) fn facts(&self) -> Facts {
        let m = self.raft.metrics().borrow().clone();
        let st = self.log.stats();
        let now_ms = unix_ms();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Follower | ServerState::Shutdown => Role::Follower,
        };
        let applied = self.sm.last_applied().map_or(0, |l| l.index);
        let mut followers = Vec::new();
        if let Some(repl) = &m.replication {
            for (id, matched) in repl {
                if *id == self.id {
                    continue;
                }
                let matched = matched.map(|l| l.index);
                self.in_flight.settle(*id, matched, st.last_index);
                followers.push(Follower {
                    id: *id,
                    matched,
                    lag_entries: st.last_index.saturating_sub(matched.unwrap_or(0)),
                    snapshot_in_flight: self.in_flight.get(*id),
                });
            }
        }
        let log = LogFacts {
            now_ms,
            role,
            first_index: st.first_index,
            last_index: st.last_index,
            committed: st.committed.unwrap_or(0).max(applied),
            applied,
            entries: st.entries,
            bytes: st.bytes,
            append_rate: st.append_rate,
            byte_rate: st.byte_rate,
            followers,
            disk_free_bytes: crate::platform::disk_free(&self.data_dir),
        };
        let manifest = self.sm.current_manifest();
        let last_index = manifest
            .as_ref()
            .and_then(|m| m.last_log_id)
            .map(|l| l.index);
        let entries_since = applied.saturating_sub(last_index.unwrap_or(0));
        // The log's bytes per entry, times the entries since the snapshot.
        let bytes_since = if st.entries == 0 {
            0
        } else {
            (st.bytes as u128 * u128::from(entries_since.min(st.entries)) / u128::from(st.entries))
                as u64
        };
        let stats = self.sm.stats();
        let snapshot = SnapshotFacts {
            last_index,
            age_ms: manifest.as_ref().map_or_else(
                || self.started.elapsed().as_millis() as u64,
                |m| now_ms.saturating_sub(m.created_unix_ms),
            ),
            entries_since,
            bytes_since,
            chain_length: manifest.as_ref().map_or(0, Manifest::layers),
            chain_bytes: manifest.as_ref().map_or(0, Manifest::chain_bytes),
            base_bytes: manifest.as_ref().map_or(0, |m| m.base.bytes()),
            state_keys: self.sm.len() as u64,
            state_bytes: self.sm.state_bytes(),
            dirty_keys: stats.dirty_keys,
            last_build_ms: self.last_build_ms,
            in_progress: self.building.is_some(),
        };
        Facts { log, snapshot }
    }
}
