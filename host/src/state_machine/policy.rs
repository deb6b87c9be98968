//! The reserved policy key: the cluster's rolled-out policy is part of the
//! state (and so of every snapshot and the state hash), under a key no
//! client command can name.

use std::sync::Arc;

use super::model::Inner;
use crate::raft::PolicySpec;

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
/// the index of that entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedPolicy {
    /// The log index of the rollout entry: every node runs this policy for
    /// every decision made after applying it.
    pub index: u64,
    /// The policy.
    pub spec: Arc<PolicySpec>,
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
}
