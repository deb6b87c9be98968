//! The simulator: a trace's workload replayed against a model of the log,
//! the snapshot chain and snapshot builds, with a real policy (through a
//! [`PolicyHost`], so clamping and fallbacks are the node's) deciding when
//! the node's controller would.

use std::collections::VecDeque;

use super::trace::{Sample, Trace};
use crate::policy::{DecidedBy, PolicyHost};
use crate::sdk::{Facts, Follower, LogFacts, Role, SnapshotFacts, SnapshotKind};

/// How the model is calibrated and what it reports.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The model's time step, ms (decisions fall on steps).
    pub tick_ms: u64,
    /// How long "a follower that is away" has been away, for the catch-up
    /// estimate.
    pub away_ms: u64,
    /// Snapshot bytes written per ms of build (the node's, from the trace,
    /// unless given).
    pub build_bytes_per_ms: Option<f64>,
    /// Snapshot bytes per byte of state (compression; from the trace's
    /// builds unless given).
    pub written_per_state_byte: Option<f64>,
    /// Bytes of snapshot a restart restores per second (from the trace's
    /// header, else 200 MB/s).
    pub restore_bytes_per_s: Option<f64>,
    /// Entries a restart replays per second (from the trace's header,
    /// else 50,000).
    pub replay_entries_per_s: Option<f64>,
    /// Snapshots kept when a policy says nothing (`snapshots.retain`).
    pub retain: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            tick_ms: 50,
            away_ms: 60_000,
            build_bytes_per_ms: None,
            written_per_state_byte: None,
            restore_bytes_per_s: None,
            replay_entries_per_s: None,
            retain: 3,
        }
    }
}

/// What the model used, from the trace or the config.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// Snapshot bytes written per ms of build.
    pub build_bytes_per_ms: f64,
    /// Snapshot bytes per byte of state.
    pub written_per_state_byte: f64,
    /// Restore rate, bytes per second.
    pub restore_bytes_per_s: f64,
    /// Replay rate, entries per second.
    pub replay_entries_per_s: f64,
}

impl Calibration {
    /// The calibration `cfg` and `trace` give: the node's own build rate
    /// (bytes written over build time) and compression (bytes written by
    /// full snapshots over the state's bytes then), where the trace has
    /// builds; defaults otherwise.
    pub fn of(trace: &Trace, cfg: &SimConfig) -> Calibration {
        let (bytes, ms) = trace.samples.iter().fold((0u64, 0u64), |(b, m), s| {
            (b + s.snapshot_bytes, m + s.build_ms)
        });
        let measured_rate = (ms > 0 && bytes > 0).then(|| bytes as f64 / ms as f64);
        let full: Vec<&Sample> = trace
            .samples
            .iter()
            .filter(|s| s.snapshots_full > 0 && s.snapshots_incremental == 0 && s.state_bytes > 0)
            .collect();
        let measured_ratio = (!full.is_empty()).then(|| {
            full.iter()
                .map(|s| s.snapshot_bytes as f64 / s.snapshots_full as f64 / s.state_bytes as f64)
                .sum::<f64>()
                / full.len() as f64
        });
        Calibration {
            build_bytes_per_ms: cfg
                .build_bytes_per_ms
                .or(measured_rate)
                .unwrap_or(100_000.0),
            written_per_state_byte: cfg
                .written_per_state_byte
                .or(measured_ratio)
                .unwrap_or(0.5)
                .clamp(0.01, 4.0),
            restore_bytes_per_s: cfg
                .restore_bytes_per_s
                .or(trace.header.restore_bytes_per_s)
                .unwrap_or(200e6),
            replay_entries_per_s: cfg
                .replay_entries_per_s
                .or(trace.header.replay_entries_per_s)
                .unwrap_or(50_000.0),
        }
    }
}

/// The model's state at one step, for charts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Point {
    /// ms since the trace's start.
    pub t_ms: u64,
    /// Bytes in the log.
    pub log_bytes: u64,
    /// Entries in the log.
    pub log_entries: u64,
    /// Layers of the snapshot chain.
    pub chain_length: u32,
    /// Snapshot bytes written so far.
    pub snapshot_bytes: u64,
    /// Estimated time for a restart to be ready now, ms.
    pub restart_ms: u64,
    /// Bytes a follower away for `away_ms` would need now (`None` in the
    /// first `away_ms`).
    pub catch_up_bytes: Option<u64>,
}

/// What a policy did over a trace.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SimResult {
    /// The policy's name.
    pub policy: String,
    /// The model's state at every sample of the trace.
    pub points: Vec<Point>,
    /// Full snapshots built.
    pub snapshots_full: u64,
    /// Incremental snapshots built.
    pub snapshots_incremental: u64,
    /// Snapshot bytes written.
    pub snapshot_bytes: u64,
    /// Decisions asked of the policy.
    pub decisions: u64,
    /// Decisions the native fallback made because the policy failed.
    pub fallbacks: u64,
    /// Decisions the host had to clamp.
    pub clamped: u64,
    /// Entries purged.
    pub purged_entries: u64,
}

impl SimResult {
    fn stat(&self, f: impl Fn(&Point) -> Option<u64>) -> (u64, f64) {
        let v: Vec<u64> = self.points.iter().filter_map(f).collect();
        let peak = v.iter().copied().max().unwrap_or(0);
        let mean = if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<u64>() as f64 / v.len() as f64
        };
        (peak, mean)
    }

    /// Peak and mean bytes in the log.
    pub fn log_bytes(&self) -> (u64, f64) {
        self.stat(|p| Some(p.log_bytes))
    }

    /// Peak and mean entries in the log.
    pub fn log_entries(&self) -> (u64, f64) {
        self.stat(|p| Some(p.log_entries))
    }

    /// The longest chain.
    pub fn max_chain(&self) -> u32 {
        self.points
            .iter()
            .map(|p| p.chain_length)
            .max()
            .unwrap_or(0)
    }

    /// Peak and mean restart-to-ready estimate, ms.
    pub fn restart_ms(&self) -> (u64, f64) {
        self.stat(|p| Some(p.restart_ms))
    }

    /// Peak and mean catch-up bytes of a follower away for `away_ms`.
    pub fn catch_up_bytes(&self) -> (u64, f64) {
        self.stat(|p| p.catch_up_bytes)
    }
}

/// Appended entries, as the model's log holds them: one chunk per step.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    first: u64,
    last: u64,
    bytes: u64,
}

impl Chunk {
    /// Bytes of the entries in `from..=to`, pro rata.
    fn bytes_in(&self, from: u64, to: u64) -> u64 {
        let (a, b) = (from.max(self.first), to.min(self.last));
        if a > b {
            return 0;
        }
        let n = self.last - self.first + 1;
        (u128::from(self.bytes) * u128::from(b - a + 1) / u128::from(n)) as u64
    }
}

#[derive(Clone, Copy, Debug)]
struct Layer {
    last_index: u64,
    bytes: u64,
    created_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Build {
    kind: SnapshotKind,
    last_index: u64,
    bytes: u64,
    dirty: u64,
    done_ms: u64,
    started_ms: u64,
}

struct Model<'a> {
    trace: &'a Trace,
    cal: Calibration,
    cfg: &'a SimConfig,
    t_ms: u64,
    first_index: u64,
    last_index: u64,
    log: VecDeque<Chunk>,
    log_bytes: u64,
    state_keys: u64,
    state_bytes: u64,
    dirty: u64,
    chain: Vec<Layer>,
    building: Option<Build>,
    deferred: Option<SnapshotKind>,
    last_build_ms: u64,
    rate: (f64, f64),
    /// (t_ms, last_index) at each step, for "where was a follower".
    history: VecDeque<(u64, u64)>,
    followers: Vec<(u64, u64)>,
    disk_free: u64,
    result: SimResult,
}

/// The EWMA time constant the node's log store uses for its rates.
const RATE_TAU_S: f64 = 10.0;

impl Model<'_> {
    fn append(&mut self, entries: u64, bytes: u64, dt_s: f64) {
        let k = (-dt_s / RATE_TAU_S).exp();
        self.rate.0 = self.rate.0 * k + entries as f64 / RATE_TAU_S;
        self.rate.1 = self.rate.1 * k + bytes as f64 / RATE_TAU_S;
        if entries == 0 {
            return;
        }
        let first = self.last_index + 1;
        self.last_index += entries;
        self.log.push_back(Chunk {
            first,
            last: self.last_index,
            bytes,
        });
        self.log_bytes += bytes;
    }

    fn purge(&mut self, upto: u64) {
        if upto < self.first_index {
            return;
        }
        let upto = upto.min(self.last_index);
        while let Some(c) = self.log.front_mut() {
            if c.last <= upto {
                self.log_bytes -= c.bytes;
                self.log.pop_front();
            } else {
                if c.first <= upto {
                    let gone = c.bytes_in(c.first, upto);
                    c.bytes -= gone;
                    c.first = upto + 1;
                    self.log_bytes -= gone;
                }
                break;
            }
        }
        self.result.purged_entries += upto + 1 - self.first_index;
        self.first_index = upto + 1;
    }

    fn log_bytes_in(&self, from: u64, to: u64) -> u64 {
        self.log.iter().map(|c| c.bytes_in(from, to)).sum()
    }

    fn record_bytes(&self) -> f64 {
        if self.state_keys == 0 {
            0.0
        } else {
            self.state_bytes as f64 / self.state_keys as f64
        }
    }

    fn start_build(&mut self, mut kind: SnapshotKind) {
        if self.chain.is_empty() {
            kind = SnapshotKind::Full;
        }
        let raw = match kind {
            SnapshotKind::Full => self.state_bytes as f64,
            SnapshotKind::Incremental => self.dirty as f64 * self.record_bytes(),
        };
        let bytes = (raw * self.cal.written_per_state_byte).ceil() as u64;
        let ms = (bytes as f64 / self.cal.build_bytes_per_ms).ceil() as u64;
        self.building = Some(Build {
            kind,
            last_index: self.last_index,
            bytes,
            dirty: self.dirty,
            done_ms: self.t_ms + ms.max(1),
            started_ms: self.t_ms,
        });
    }

    /// Finishes the running build if it is done; whether it was.
    fn advance_build(&mut self) -> bool {
        let Some(b) = self.building else { return false };
        if b.done_ms > self.t_ms {
            return false;
        }
        self.building = None;
        self.last_build_ms = b.done_ms - b.started_ms;
        let layer = Layer {
            last_index: b.last_index,
            bytes: b.bytes,
            created_ms: b.done_ms,
        };
        match b.kind {
            SnapshotKind::Full => {
                self.chain = vec![layer];
                self.result.snapshots_full += 1;
            }
            SnapshotKind::Incremental => {
                self.chain.push(layer);
                self.result.snapshots_incremental += 1;
            }
        }
        self.result.snapshot_bytes += b.bytes;
        self.dirty = self.dirty.saturating_sub(b.dirty);
        if let Some(kind) = self.deferred.take() {
            self.start_build(kind);
        }
        true
    }

    fn facts(&self) -> Facts {
        let snap_last = self.chain.last().map(|l| l.last_index);
        let entries = self.last_index + 1 - self.first_index;
        let entries_since = self.last_index - snap_last.unwrap_or(0);
        let since_from = snap_last.map_or(self.first_index, |s| s + 1);
        Facts {
            log: LogFacts {
                now_ms: self.trace.header.started_unix_ms + self.t_ms,
                role: Role::Leader,
                first_index: self.first_index,
                last_index: self.last_index,
                committed: self.last_index,
                applied: self.last_index,
                entries,
                bytes: self.log_bytes,
                append_rate: self.rate.0,
                byte_rate: self.rate.1,
                followers: self
                    .followers
                    .iter()
                    .map(|&(id, behind)| {
                        let matched = self.last_index.saturating_sub(behind);
                        Follower {
                            id,
                            matched: Some(matched),
                            lag_entries: self.last_index - matched,
                            snapshot_in_flight: None,
                        }
                    })
                    .collect(),
                disk_free_bytes: self.disk_free,
            },
            snapshot: SnapshotFacts {
                last_index: snap_last,
                age_ms: self
                    .chain
                    .last()
                    .map_or(self.t_ms, |l| self.t_ms - l.created_ms),
                entries_since,
                bytes_since: self.log_bytes_in(since_from, self.last_index),
                chain_length: self.chain.len() as u32,
                chain_bytes: self.chain.iter().map(|l| l.bytes).sum(),
                base_bytes: self.chain.first().map_or(0, |l| l.bytes),
                state_keys: self.state_keys,
                state_bytes: self.state_bytes,
                dirty_keys: self.dirty,
                last_build_ms: self.last_build_ms,
                in_progress: self.building.is_some(),
            },
        }
    }

    /// Asks the policy, then carries out what the host allows; the ms to
    /// the next decision.
    fn decide(&mut self, host: &PolicyHost) -> u64 {
        let facts = self.facts();
        let r = host.decide(&facts);
        self.result.decisions += 1;
        if matches!(r.decided_by, DecidedBy::Fallback { .. }) {
            self.result.fallbacks += 1;
        }
        if !r.clamps.is_empty() {
            self.result.clamped += 1;
        }
        if let Some(kind) = r.deferred {
            self.deferred = Some(match (self.deferred, kind) {
                (Some(SnapshotKind::Full), _) | (_, SnapshotKind::Full) => SnapshotKind::Full,
                _ => SnapshotKind::Incremental,
            });
        }
        let d = r.decision;
        if let Some(kind) = d.snapshot
            && self.building.is_none()
        {
            self.start_build(kind);
        }
        if let Some(upto) = d.purge_up_to {
            self.purge(upto);
        }
        u64::from(d.next_check_ms.max(1))
    }

    fn point(&self) -> Point {
        let snap_last = self.chain.last().map_or(0, |l| l.last_index);
        let chain_bytes: u64 = self.chain.iter().map(|l| l.bytes).sum();
        let restart_s = chain_bytes as f64 / self.cal.restore_bytes_per_s
            + (self.last_index - snap_last) as f64 / self.cal.replay_entries_per_s;
        let catch_up_bytes = (self.t_ms >= self.cfg.away_ms).then(|| {
            let since = self.t_ms - self.cfg.away_ms;
            let was = self
                .history
                .iter()
                .rev()
                .find(|(t, _)| *t <= since)
                .map_or(0, |&(_, i)| i);
            if was + 1 >= self.first_index {
                self.log_bytes_in(was + 1, self.last_index)
            } else {
                // A snapshot: the layers made while it was away (all of
                // them if the base is new to it), then the log after it.
                let base_new = self.chain.first().is_none_or(|b| b.created_ms > since);
                let layers: u64 = self
                    .chain
                    .iter()
                    .filter(|l| base_new || l.created_ms > since)
                    .map(|l| l.bytes)
                    .sum();
                layers + self.log_bytes_in(snap_last + 1, self.last_index)
            }
        });
        Point {
            t_ms: self.t_ms,
            log_bytes: self.log_bytes,
            log_entries: self.last_index + 1 - self.first_index,
            chain_length: self.chain.len() as u32,
            snapshot_bytes: self.result.snapshot_bytes,
            restart_ms: (restart_s * 1000.0) as u64,
            catch_up_bytes,
        }
    }
}

/// Replays `trace` against the policy `host` runs (swap the policy in
/// first), stepping `cfg.tick_ms` at a time: each sample's appends spread
/// evenly over its interval, the state's size and the followers as the
/// sample says, builds taking what the calibration says, and a decision
/// whenever the policy's `next-check-ms` (as the host bounds it) comes
/// round or a build finishes.
pub fn simulate(trace: &Trace, host: &PolicyHost, cfg: &SimConfig) -> SimResult {
    let cal = Calibration::of(trace, cfg);
    let name = host
        .active_meta()
        .map_or_else(|| crate::policy::NATIVE_NAME.to_string(), |m| m.name);
    let min_gap = u64::from(host.bounds().min_check_ms);
    let mut m = Model {
        trace,
        cal,
        cfg,
        t_ms: 0,
        first_index: 1,
        last_index: 0,
        log: VecDeque::new(),
        log_bytes: 0,
        state_keys: 0,
        state_bytes: 0,
        dirty: 0,
        chain: Vec::new(),
        building: None,
        deferred: None,
        last_build_ms: 0,
        rate: (0.0, 0.0),
        history: VecDeque::new(),
        followers: Vec::new(),
        disk_free: u64::MAX,
        result: SimResult {
            policy: name,
            points: Vec::with_capacity(trace.samples.len()),
            snapshots_full: 0,
            snapshots_incremental: 0,
            snapshot_bytes: 0,
            decisions: 0,
            fallbacks: 0,
            clamped: 0,
            purged_entries: 0,
        },
    };
    let tick = cfg.tick_ms.max(1);
    let mut next_decision = 0u64;
    let mut prev_t = 0u64;
    for s in &trace.samples {
        let span = s.t_ms - prev_t;
        let steps = span.div_ceil(tick).max(1);
        let (mut entries_left, mut bytes_left, mut keys_left) =
            (s.appended_entries, s.appended_bytes, s.keys_changed);
        m.state_keys = s.state_keys;
        m.state_bytes = s.state_bytes;
        m.followers = s.followers.iter().map(|f| (f.id, f.behind)).collect();
        m.disk_free = s.disk_free_bytes;
        for step in 0..steps {
            let remaining = steps - step;
            let (e, b, k) = (
                entries_left / remaining,
                bytes_left / remaining,
                keys_left / remaining,
            );
            entries_left -= e;
            bytes_left -= b;
            keys_left -= k;
            let t = (prev_t + (step + 1) * tick).min(s.t_ms);
            let dt_s = (t - m.t_ms) as f64 / 1000.0;
            m.t_ms = t;
            m.append(e, b, dt_s);
            m.dirty = (m.dirty + k).min(m.state_keys.max(m.dirty));
            m.history.push_back((t, m.last_index));
            while m
                .history
                .front()
                .is_some_and(|(h, _)| *h + cfg.away_ms + tick < t)
            {
                m.history.pop_front();
            }
            if m.advance_build() {
                next_decision = next_decision.min(t + min_gap);
            }
            if t >= next_decision {
                next_decision = t + m.decide(host);
            }
        }
        prev_t = s.t_ms;
        let p = m.point();
        m.result.points.push(p);
    }
    m.result
}
