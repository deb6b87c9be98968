//! Workload traces: what a node's log and state did, interval by interval,
//! recorded from its admin API, as JSON lines: a header, then one sample
//! per interval.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError};
use crate::node::Status;

/// The trace format this version writes and reads.
pub const TRACE_FORMAT: u32 = 1;

/// The first line of a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceHeader {
    /// The format ([`TRACE_FORMAT`]).
    pub ramrod_trace: u32,
    /// The node it was recorded from.
    pub node: String,
    /// That node's id.
    pub node_id: u64,
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// When recording started (ms since the Unix epoch).
    pub started_unix_ms: u64,
    /// The policy the node ran, and its config.
    pub policy: String,
    /// The policy's config (TOML).
    pub policy_config: String,
    /// How fast the node restored its snapshot chain when it last started
    /// (bytes per second), if it restored one.
    pub restore_bytes_per_s: Option<f64>,
    /// How fast it replayed its log then (entries per second), if it did.
    pub replay_entries_per_s: Option<f64>,
}

/// A follower's distance from the leader's last index, in entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowerSample {
    /// The follower.
    pub id: u64,
    /// Entries it is behind (the whole log when nothing is known).
    pub behind: u64,
}

/// One interval of a trace: the workload in it, the state and the
/// node's own measurements at its end, and what the node's compaction did
/// (to compare a simulation with).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The end of the interval, ms since recording started.
    pub t_ms: u64,
    /// Entries appended to the log in the interval.
    pub appended_entries: u64,
    /// Bytes of entries appended in the interval.
    pub appended_bytes: u64,
    /// Distinct keys changed in the interval (an estimate: the growth of
    /// the node's changed-key set; after a snapshot, the changes since it).
    pub keys_changed: u64,
    /// Keys in the state.
    pub state_keys: u64,
    /// Bytes of keys and values in the state.
    pub state_bytes: u64,
    /// Followers' distance from the leader.
    pub followers: Vec<FollowerSample>,
    /// Free bytes on the node's data volume.
    pub disk_free_bytes: u64,
    /// Milliseconds of snapshot builds finished in the interval.
    pub build_ms: u64,
    /// Snapshot bytes those builds wrote.
    pub snapshot_bytes: u64,
    /// Full snapshots the node wrote in the interval.
    pub snapshots_full: u64,
    /// Incremental snapshots it wrote.
    pub snapshots_incremental: u64,
    /// Entries in the node's log at the end of the interval.
    pub log_entries: u64,
    /// Bytes of its log.
    pub log_bytes: u64,
    /// Layers of its snapshot chain.
    pub chain_length: u32,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// The header.
    pub header: TraceHeader,
    /// The samples, in time order.
    pub samples: Vec<Sample>,
}

/// Why a trace could not be read or recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// A line is not what the format says; the message names the line.
    #[error("line {line}: {reason}")]
    Format {
        /// The line (1-based).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The node could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Trace {
    /// Reads a trace (JSON lines).
    ///
    /// # Errors
    /// [`TraceError::Format`] naming the first line that is not a header
    /// or sample of this format, or samples out of time order.
    pub fn read(input: impl BufRead) -> Result<Trace, TraceError> {
        let mut header = None;
        let mut samples: Vec<Sample> = Vec::new();
        for (i, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| TraceError::Format {
                line: i + 1,
                reason,
            };
            if header.is_none() {
                let h: TraceHeader = serde_json::from_str(&line)
                    .map_err(|e| bad(format!("not a trace header: {e}")))?;
                if h.ramrod_trace != TRACE_FORMAT {
                    return Err(bad(format!(
                        "trace format {} (this version reads {TRACE_FORMAT})",
                        h.ramrod_trace
                    )));
                }
                if h.interval_ms == 0 {
                    return Err(bad("`interval_ms` must be at least 1".into()));
                }
                header = Some(h);
                continue;
            }
            let s: Sample =
                serde_json::from_str(&line).map_err(|e| bad(format!("not a sample: {e}")))?;
            if samples.last().is_some_and(|p| p.t_ms >= s.t_ms) {
                return Err(bad(format!(
                    "`t_ms` {} does not follow the one before",
                    s.t_ms
                )));
            }
            samples.push(s);
        }
        let header = header.ok_or(TraceError::Format {
            line: 1,
            reason: "empty: no trace header".into(),
        })?;
        Ok(Trace { header, samples })
    }

    /// The trace's length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.t_ms)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn sample(t_ms: u64, prev: &Status, now: &Status) -> Sample {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let (ps, ns) = (&prev.snapshots, &now.snapshots);
    let snapshots_full = d(ns.full, ps.full);
    let snapshots_incremental = d(ns.incremental, ps.incremental);
    let keys_changed = if snapshots_full + snapshots_incremental > 0 {
        ns.dirty_keys
    } else {
        d(ns.dirty_keys, ps.dirty_keys)
    };
    Sample {
        t_ms,
        appended_entries: d(now.log.appended_entries, prev.log.appended_entries),
        appended_bytes: d(now.log.appended_bytes, prev.log.appended_bytes),
        keys_changed,
        state_keys: now.keys as u64,
        state_bytes: now.state_bytes,
        followers: now
            .followers
            .iter()
            .map(|f| FollowerSample {
                id: f.id,
                behind: now.log.last_index.saturating_sub(f.matched.unwrap_or(0)),
            })
            .collect(),
        disk_free_bytes: now.disk_free_bytes,
        build_ms: d(now.controller.build_ms, prev.controller.build_ms),
        snapshot_bytes: d(ns.bytes_written, ps.bytes_written),
        snapshots_full,
        snapshots_incremental,
        log_entries: now.log.entries,
        log_bytes: now.log.bytes,
        chain_length: now.current_snapshot.as_ref().map_or(0, |s| s.layers as u32),
    }
}

/// Records a trace of the node `client` talks to: its status every
/// `interval` for `duration`, written to `out` line by line (flushed after
/// each, so a trace cut short is still readable). Returns the samples
/// written.
///
/// # Errors
/// If the node cannot be asked (the trace so far stays written), or
/// writing fails.
pub async fn record(
    client: &Client,
    interval: Duration,
    duration: Duration,
    mut out: impl Write,
) -> Result<usize, TraceError> {
    let first = client.status().await?;
    let rate = |n: f64, ms: u64| (ms > 0 && n > 0.0).then(|| n * 1000.0 / ms as f64);
    let r = &first.recovery;
    let header = TraceHeader {
        ramrod_trace: TRACE_FORMAT,
        node: client.base().to_string(),
        node_id: first.id,
        interval_ms: interval.as_millis().max(1) as u64,
        started_unix_ms: unix_ms(),
        policy: first.policy.name.clone(),
        policy_config: first.policy.config.clone(),
        restore_bytes_per_s: rate(r.bytes_read as f64, r.restore_ms),
        replay_entries_per_s: r.applied_at_ready.and_then(|a| {
            let replayed = a.saturating_sub(r.snapshot_index.unwrap_or(0));
            rate(replayed as f64, r.ready_ms.saturating_sub(r.restore_ms))
        }),
    };
    writeln!(
        out,
        "{}",
        serde_json::to_string(&header).expect("a header serializes")
    )?;
    out.flush()?;
    let start = Instant::now();
    let mut prev = first;
    let mut written = 0;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while start.elapsed() < duration {
        tick.tick().await;
        let now = client.status().await?;
        let s = sample(start.elapsed().as_millis() as u64, &prev, &now);
        writeln!(
            out,
            "{}",
            serde_json::to_string(&s).expect("a sample serializes")
        )?;
        out.flush()?;
        written += 1;
        prev = now;
    }
    Ok(written)
}
