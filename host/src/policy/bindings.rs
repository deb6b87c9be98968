//! All `bindgen!` output, and the conversions between its types and the SDK's.

use ramrod_policy_sdk as sdk;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "compaction-policy",
});

use self::ramrod::policy::types as wit;

/// The name of the interface every policy must export.
pub(crate) const POLICY_EXPORT: &str = "ramrod:policy/policy@0.1.0";

/// The types-only interface policies import.
pub(crate) const TYPES_IMPORT: &str = "ramrod:policy/types@0.1.0";

pub(crate) fn log_facts(l: &sdk::LogFacts) -> wit::LogFacts {
    wit::LogFacts {
        now_ms: l.now_ms,
        role: match l.role {
            sdk::Role::Leader => wit::Role::Leader,
            sdk::Role::Follower => wit::Role::Follower,
            sdk::Role::Candidate => wit::Role::Candidate,
            sdk::Role::Learner => wit::Role::Learner,
        },
        first_index: l.first_index,
        last_index: l.last_index,
        committed: l.committed,
        applied: l.applied,
        entries: l.entries,
        bytes: l.bytes,
        append_rate: l.append_rate,
        byte_rate: l.byte_rate,
        followers: l
            .followers
            .iter()
            .map(|f| wit::Follower {
                id: f.id,
                matched: f.matched,
                lag_entries: f.lag_entries,
                snapshot_in_flight: f.snapshot_in_flight,
            })
            .collect(),
        disk_free_bytes: l.disk_free_bytes,
    }
}

pub(crate) fn snapshot_facts(s: &sdk::SnapshotFacts) -> wit::SnapshotFacts {
    wit::SnapshotFacts {
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

pub(crate) fn decision(d: wit::Decision) -> sdk::Decision {
    sdk::Decision {
        snapshot: d.snapshot.map(|k| match k {
            wit::SnapshotKind::Incremental => sdk::SnapshotKind::Incremental,
            wit::SnapshotKind::Full => sdk::SnapshotKind::Full,
        }),
        purge_up_to: d.purge_up_to,
        retain_snapshots: d.retain_snapshots,
        next_check_ms: d.next_check_ms,
        reason: d.reason,
    }
}

#[cfg(test)]
mod tests {
    /// The names the host looks for carry the version the SDK (and so the
    /// WIT file, which the SDK checks) declares.
    #[test]
    fn export_names_carry_the_wit_version() {
        let v = crate::sdk::WIT_VERSION;
        assert_eq!(super::POLICY_EXPORT, format!("ramrod:policy/policy@{v}"));
        assert_eq!(super::TYPES_IMPORT, format!("ramrod:policy/types@{v}"));
    }
}
