//! The reserved policy key: the cluster's rolled-out policy is part of the
//! state (and so of every snapshot and the state hash), under a key no
//! client command can name.

use std::sync::Arc;

use bytes::Bytes;

use super::KvStateMachine;
use super::model::Inner;
use crate::raft::PolicyRef;
use crate::snapshot::{SnapshotError, StoreError};

/// The key under which the state holds the cluster's policy. Keys that start
/// with `0xFF` are reserved: client commands never read or change them (and
/// the HTTP API, whose keys are UTF-8, cannot name them), but they are part
/// of the state, its hash and its snapshots.
pub const POLICY_KEY: &[u8] = b"\xfframrod/policy";

/// Whether `key` is reserved for ramrod (starts with `0xFF`).
pub fn is_reserved(key: &[u8]) -> bool {
    key.first() == Some(&0xFF)
}

/// The cluster's policy as the state holds it: what a rollout entry set, and
/// the index of that entry. The state holds the component's hash; its bytes
/// are a blob in the snapshot store (see
/// [`KvStateMachine::policy_bytes`](super::KvStateMachine::policy_bytes)).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedPolicy {
    /// The log index of the rollout entry: every node runs this policy for
    /// every decision made after applying it.
    pub index: u64,
    /// The policy.
    pub policy: Arc<PolicyRef>,
    /// The component, when the entry carried it (a rollout written by an
    /// earlier version): the node stores it as the blob. Not part of the
    /// state.
    #[serde(skip)]
    pub inline: Option<Bytes>,
}

impl Inner {
    /// The policy the state holds, if a rollout set one.
    pub(super) fn stored_policy(&self) -> Option<AppliedPolicy> {
        let bytes = self.get(POLICY_KEY)?;
        match postcard::from_bytes(bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, "the state's policy record does not decode; ignoring it");
                None
            }
        }
    }

    /// Applies a rollout at `index`.
    pub(super) fn set_policy(&mut self, policy: PolicyRef, inline: Option<Bytes>, index: u64) {
        let applied = AppliedPolicy {
            index,
            policy: Arc::new(policy),
            inline: None,
        };
        let value = postcard::to_allocvec(&applied).expect("a policy serializes");
        let old = self.get(POLICY_KEY).cloned();
        self.put_stored(Bytes::from_static(POLICY_KEY), Bytes::from(value), old);
        self.policy_changed = Some(AppliedPolicy { inline, ..applied });
    }
}

impl KvStateMachine {
    /// The component of the rollout `applied`, verified against its hash:
    /// from the entry (a rollout that carried it), else this node's
    /// snapshot store, else another node (the segment source: the leader,
    /// then any member). What was fetched is stored, and the blob is held
    /// so that collection keeps it while the state refers to it.
    ///
    /// # Errors
    /// If no copy that matches the hash can be found, or the store fails.
    pub async fn policy_bytes(&self, applied: &AppliedPolicy) -> Result<Bytes, SnapshotError> {
        let name = &applied.policy.hash;
        let snapshots = self.snapshots();
        let bytes = if let Some(inline) = &applied.inline {
            snapshots.put_blob(name, inline.clone()).await?;
            inline.clone()
        } else {
            match snapshots.get_blob(name).await {
                Ok(b) => b,
                Err(
                    e @ (SnapshotError::Store(StoreError::NotFound { .. })
                    | SnapshotError::Segment { .. }),
                ) => {
                    if matches!(e, SnapshotError::Segment { .. }) {
                        // A damaged local copy: replaced by a good one.
                        tracing::warn!(blob = %name, error = %e, "the local copy of the policy is damaged; fetching it again");
                        snapshots.store().delete_segment(name).await?;
                    }
                    let Some(source) = self.segment_source() else {
                        return Err(e);
                    };
                    let fetched = source.fetch_blob(name).await?;
                    snapshots.put_blob(name, fetched.clone()).await?;
                    tracing::info!(blob = %name, bytes = fetched.len(), from = %source.describe_source(), "fetched the rolled-out policy");
                    fetched
                }
                Err(e) => return Err(e),
            }
        };
        snapshots.hold_blob(Some(name.clone()));
        Ok(bytes)
    }
}
