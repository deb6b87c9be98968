//! Guest glue, compiled for WebAssembly only: the wit-bindgen output and the
//! conversions between its types and the SDK's. Not part of the API.

use std::sync::Mutex;

use crate::{Decision, Follower, LogFacts, Policy, Role, SnapshotFacts, SnapshotKind};

#[allow(missing_docs, reason = "generated code")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "compaction-policy",
        pub_export_macro: true,
        export_macro_name: "__export_compaction_policy",
        default_bindings_module: "ramrod_policy_sdk::__private::bindings",
    });
}

pub use bindings::exports::ramrod::policy::policy::Guest;
use bindings::ramrod::policy::types as wit;
pub use wit::{
    Decision as WitDecision, LogFacts as WitLogFacts, SnapshotFacts as WitSnapshotFacts,
};

/// The configured policy of this instance.
pub struct State<P>(Mutex<Option<P>>);

impl<P> std::fmt::Debug for State<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("State")
    }
}

impl<P: Policy> State<P> {
    /// An unconfigured state.
    pub const fn new() -> Self {
        State(Mutex::new(None))
    }

    /// Handles `configure`.
    pub fn configure(&self, config: &str) -> Result<(), String> {
        let policy = crate::configure_from_toml::<P>(config)?;
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(policy);
        Ok(())
    }

    /// Handles `decide`, configuring with defaults if `configure` never ran.
    pub fn decide(&self, log: WitLogFacts, snapshot: WitSnapshotFacts) -> WitDecision {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            match crate::configure_from_toml::<P>("") {
                Ok(p) => *guard = Some(p),
                Err(e) => panic!("{e}"),
            }
        }
        let policy = guard.as_ref().expect("configured above");
        policy.decide(&log.into(), &snapshot.into()).into()
    }
}

impl From<wit::Role> for Role {
    fn from(r: wit::Role) -> Self {
        match r {
            wit::Role::Leader => Role::Leader,
            wit::Role::Follower => Role::Follower,
            wit::Role::Candidate => Role::Candidate,
            wit::Role::Learner => Role::Learner,
        }
    }
}

impl From<wit::Follower> for Follower {
    fn from(f: wit::Follower) -> Self {
        Follower {
            id: f.id,
            matched: f.matched,
            lag_entries: f.lag_entries,
            snapshot_in_flight: f.snapshot_in_flight,
        }
    }
}

impl From<WitLogFacts> for LogFacts {
    fn from(l: WitLogFacts) -> Self {
        LogFacts {
            now_ms: l.now_ms,
            role: l.role.into(),
            first_index: l.first_index,
            last_index: l.last_index,
            committed: l.committed,
            applied: l.applied,
            entries: l.entries,
            bytes: l.bytes,
            append_rate: l.append_rate,
            byte_rate: l.byte_rate,
            followers: l.followers.into_iter().map(Into::into).collect(),
            disk_free_bytes: l.disk_free_bytes,
        }
    }
}

impl From<WitSnapshotFacts> for SnapshotFacts {
    fn from(s: WitSnapshotFacts) -> Self {
        SnapshotFacts {
            last_index: s.last_index,
            age_ms: s.age_ms,
            entries_since: s.entries_since,
            bytes_since: s.bytes_since,
            chain_length: s.chain_length,
            chain_bytes: s.chain_bytes,
            base_bytes: s.base_bytes,
            state_keys: s.state_keys,
            state_bytes: s.state_bytes,
            dirty_keys: s.dirty_keys,
            last_build_ms: s.last_build_ms,
            in_progress: s.in_progress,
        }
    }
}

impl From<Decision> for WitDecision {
    fn from(d: Decision) -> Self {
        WitDecision {
            snapshot: d.snapshot.map(|k| match k {
                SnapshotKind::Incremental => wit::SnapshotKind::Incremental,
                SnapshotKind::Full => wit::SnapshotKind::Full,
            }),
            purge_up_to: d.purge_up_to,
            retain_snapshots: d.retain_snapshots,
            next_check_ms: d.next_check_ms,
            reason: d.reason,
        }
    }
}
