//! Live facts about the log, maintained incrementally (never by scanning).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// What the log holds now, as the controller reads it for a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct LogStats {
    /// First index still in the log (`last_purged + 1`).
    pub first_index: u64,
    /// Last index in the log (`first_index - 1` when empty).
    pub last_index: u64,
    /// Highest committed index saved, if any.
    pub committed: Option<u64>,
    /// Highest purged index, if any.
    pub purged: Option<u64>,
    /// Entries in the log.
    pub entries: u64,
    /// Bytes of encoded entries in the index (uncompressed; including
    /// entries below the purge point whose background deletion has not
    /// reached them yet). Updated by each index commit, which follows an
    /// append's callback by one commit.
    pub bytes: u64,
    /// Smoothed append rate, entries per second.
    pub append_rate: f64,
    /// Smoothed append rate, bytes per second.
    pub byte_rate: f64,
    /// Entries appended since the store opened (a counter: workload traces
    /// take differences).
    #[serde(default)]
    pub appended_entries: u64,
    /// Bytes of entries appended since the store opened.
    #[serde(default)]
    pub appended_bytes: u64,
}

/// Exponentially decaying rate: each event adds `n / tau`, and the sum decays
/// with time constant `tau`, so a steady flow of `r` per second reads `r`.
#[derive(Debug)]
pub(crate) struct Ewma {
    tau_s: f64,
    entries: f64,
    bytes: f64,
    at: Instant,
}

impl Ewma {
    pub(crate) fn new(tau_s: f64) -> Self {
        Ewma {
            tau_s,
            entries: 0.0,
            bytes: 0.0,
            at: Instant::now(),
        }
    }

    fn decay_to(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        let k = (-dt / self.tau_s).exp();
        self.entries *= k;
        self.bytes *= k;
        self.at = now;
    }

    pub(crate) fn add(&mut self, now: Instant, entries: u64, bytes: u64) {
        self.decay_to(now);
        self.entries += entries as f64 / self.tau_s;
        self.bytes += bytes as f64 / self.tau_s;
    }

    pub(crate) fn read(&mut self, now: Instant) -> (f64, f64) {
        self.decay_to(now);
        (self.entries, self.bytes)
    }
}

/// Counters shared by the store, its writer thread and readers.
#[derive(Debug)]
pub(crate) struct Counters {
    /// `u64::MAX` when the log has never held an entry.
    pub(crate) last_index: AtomicU64,
    /// The first index ever appended since the log was last empty
    /// (`u64::MAX` when empty); the purge point overrides it.
    pub(crate) first_index: AtomicU64,
    /// `u64::MAX` when nothing was purged.
    pub(crate) purged: AtomicU64,
    /// `u64::MAX` when nothing was committed.
    pub(crate) committed: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Whether entries below the purge point are still being deleted.
    pub(crate) purging: std::sync::atomic::AtomicBool,
    pub(crate) rates: Mutex<Ewma>,
    pub(crate) appended_entries: AtomicU64,
    pub(crate) appended_bytes: AtomicU64,
}

pub(crate) const NONE: u64 = u64::MAX;

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            last_index: AtomicU64::new(NONE),
            first_index: AtomicU64::new(NONE),
            purged: AtomicU64::new(NONE),
            committed: AtomicU64::new(NONE),
            bytes: AtomicU64::new(0),
            purging: std::sync::atomic::AtomicBool::new(false),
            rates: Mutex::new(Ewma::new(10.0)),
            appended_entries: AtomicU64::new(0),
            appended_bytes: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> LogStats {
        let get = |a: &AtomicU64| a.load(Ordering::Acquire);
        let opt = |v: u64| (v != NONE).then_some(v);
        let purged = opt(get(&self.purged));
        let first_index = match (purged, opt(get(&self.first_index))) {
            (Some(p), Some(f)) => f.max(p + 1),
            (Some(p), None) => p + 1,
            (None, Some(f)) => f,
            (None, None) => 0,
        };
        let (last_index, entries) = match opt(get(&self.last_index)) {
            Some(last) if last >= first_index => (last, last + 1 - first_index),
            _ => (first_index.saturating_sub(1), 0),
        };
        let (append_rate, byte_rate) = self
            .rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(Instant::now());
        LogStats {
            first_index,
            last_index,
            committed: opt(get(&self.committed)),
            purged,
            entries,
            bytes: get(&self.bytes),
            append_rate,
            byte_rate,
            appended_entries: get(&self.appended_entries),
            appended_bytes: get(&self.appended_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ewma_tracks_a_steady_rate_and_decays() {
        let mut e = Ewma::new(1.0);
        let t0 = Instant::now();
        // 1000 entries/s of 100 bytes for 10 s, in 10 ms steps.
        for i in 1..=1000 {
            e.add(t0 + Duration::from_millis(10 * i), 10, 1000);
        }
        let (r, b) = e.read(t0 + Duration::from_secs(10));
        assert!((r - 1000.0).abs() < 20.0, "{r}");
        assert!((b - 100_000.0).abs() < 2000.0, "{b}");
        let (r, _) = e.read(t0 + Duration::from_secs(20));
        assert!(r < 1.0, "{r}");
    }
}
