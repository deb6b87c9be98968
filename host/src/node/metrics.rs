//! A node's metrics in the Prometheus text format (`GET /admin/metrics`):
//! Raft, the log, snapshots, installs and bytes fetched, policy decisions by
//! who made them, policy failures, clamps, builds and purges.

use super::handle::Parts;

/// Renders the node's metrics in the Prometheus text format.
pub fn render(s: &Parts) -> String {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    let m = s.raft.metrics().borrow().clone();
    let log = s.log.stats();
    let snaps = s.sm.stats();
    let mut reg = Registry::with_prefix("ramrod");
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        reg.register(name, help, g);
    };
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        &mut reg,
        "raft_term",
        "Current Raft term",
        i(m.current_term),
    );
    gauge(
        &mut reg,
        "raft_is_leader",
        "1 if this node is the leader",
        i64::from(m.current_leader == Some(m.id)),
    );
    gauge(
        &mut reg,
        "raft_last_applied_index",
        "Last applied log index",
        i(m.last_applied.map_or(0, |l| l.index)),
    );
    gauge(
        &mut reg,
        "log_entries",
        "Entries in the log",
        i(log.entries),
    );
    gauge(
        &mut reg,
        "log_bytes",
        "Bytes of encoded entries in the log",
        i(log.bytes),
    );
    gauge(
        &mut reg,
        "log_first_index",
        "First index in the log",
        i(log.first_index),
    );
    gauge(
        &mut reg,
        "log_last_index",
        "Last index in the log",
        i(log.last_index),
    );
    counter(
        &mut reg,
        "log_discards",
        "Untrusted log stores this node discarded to recover from the cluster (or by hand)",
        s.recovery.discards as u64,
    );
    gauge(
        &mut reg,
        "votes_withheld",
        "1 while the node recovers from the cluster and grants no votes",
        i64::from(s.votes_withheld.load(std::sync::atomic::Ordering::Acquire) > 0),
    );
    counter(
        &mut reg,
        "log_index_rebuilds",
        "Damaged log indexes rebuilt from the segments at this start",
        u64::from(s.recovery.index_rebuilt.is_some()),
    );
    let rate: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    rate.set(log.append_rate);
    reg.register("log_append_rate", "Smoothed appends per second", rate);
    let snapshots = Family::<Vec<(String, String)>, Counter>::default();
    snapshots
        .get_or_create(&vec![("kind".into(), "full".into())])
        .inc_by(snaps.full);
    snapshots
        .get_or_create(&vec![("kind".into(), "incremental".into())])
        .inc_by(snaps.incremental);
    reg.register("snapshots", "Snapshots written, by kind", snapshots);
    counter(
        &mut reg,
        "snapshot_bytes_written",
        "Segment bytes written by snapshots",
        snaps.bytes_written,
    );
    counter(
        &mut reg,
        "snapshots_installed",
        "Snapshots installed from another node",
        snaps.installed,
    );
    counter(
        &mut reg,
        "snapshot_bytes_fetched",
        "Segment bytes fetched while installing snapshots",
        snaps.bytes_fetched,
    );
    gauge(
        &mut reg,
        "state_keys",
        "Keys in the state",
        i(s.sm.len() as u64),
    );
    gauge(
        &mut reg,
        "state_dirty_keys",
        "Keys changed since the last snapshot",
        i(snaps.dirty_keys),
    );
    let ps = s.controller.shared().host().stats();
    let cs = s.controller.shared().stats();
    let decisions = Family::<Vec<(String, String)>, Counter>::default();
    for (by, n) in [
        ("policy", ps.by_policy),
        ("fallback", ps.by_fallback),
        ("native", ps.by_native),
    ] {
        decisions
            .get_or_create(&vec![("by".into(), by.into())])
            .inc_by(n);
    }
    reg.register(
        "policy_decisions",
        "Compaction decisions, by who made them",
        decisions,
    );
    let failures = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, n) in &ps.failures {
        failures
            .get_or_create(&vec![("kind".into(), kind.to_string())])
            .inc_by(*n);
    }
    reg.register(
        "policy_failures",
        "Failed policy calls (the fallback decided), by kind",
        failures,
    );
    counter(
        &mut reg,
        "policy_clamped",
        "Decisions the host had to clamp",
        ps.clamped,
    );
    counter(
        &mut reg,
        "policy_rollbacks",
        "Policies rolled back after repeated failures",
        ps.rollbacks,
    );
    counter(&mut reg, "policy_swaps", "Policy swaps", ps.swaps);
    let builds = Family::<Vec<(String, String)>, Counter>::default();
    builds
        .get_or_create(&vec![("kind".into(), "full".into())])
        .inc_by(cs.builds_full);
    builds
        .get_or_create(&vec![("kind".into(), "incremental".into())])
        .inc_by(cs.builds_incremental);
    reg.register(
        "controller_builds",
        "Snapshot builds the controller started, by kind",
        builds,
    );
    counter(
        &mut reg,
        "controller_build_failures",
        "Snapshot builds that failed",
        cs.build_failures,
    );
    counter(
        &mut reg,
        "controller_queued",
        "Snapshot requests queued behind a running build",
        cs.queued,
    );
    counter(
        &mut reg,
        "controller_purges",
        "Purges asked of Raft",
        cs.purges,
    );
    counter(
        &mut reg,
        "log_purged_entries",
        "Entries purged from the log's head",
        cs.purged_entries,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
    out
}
