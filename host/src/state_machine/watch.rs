//! Watching changes: a bounded history of recent changes and a broadcast of
//! new ones, fed by `apply` under the state lock, so a watcher from
//! revision R gets every change after R exactly once, in revision order.
//!
//! - The history holds the newest changes, bounded by count and bytes. A
//!   watch from a revision older than the history's floor is refused as
//!   [`WatchError::Compacted`], never served with a gap. At start-up the
//!   floor is the restored snapshot's index (the log replay after it refills
//!   the history); installing a snapshot from the leader resets it to the
//!   snapshot's index, and ends watchers that had not reached it.
//! - New changes are broadcast per `apply` call on a bounded channel. A
//!   watcher that falls more than that behind is ended with
//!   [`WatchError::Lagged`] rather than buffered without bound.
//! - On a follower a watcher sees the changes as that node applies them: in
//!   order and exactly once, possibly behind the leader; progress reports
//!   say which revision it has seen everything up to.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::raft::KeyValue;

/// What a change did to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The key was set.
    Put,
    /// The key was removed.
    Delete,
}

/// One change: the key's record after it (for a delete, an empty value,
/// create revision and version 0, and the deletion's revision as
/// `mod_revision`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The record.
    pub kv: KeyValue,
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }

    fn bytes(&self) -> u64 {
        (self.kv.key.len() + self.kv.value.len() + 64) as u64
    }
}

/// How much history a node keeps for watchers, and how watchers are fed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchLimits {
    /// Changes kept for watchers that start from an earlier revision.
    pub history_events: usize,
    /// Bytes of keys and values those changes may hold.
    pub history_bytes: u64,
    /// Apply batches a watcher may fall behind before it is ended.
    pub buffer: usize,
    /// How often an idle watcher is told the current revision.
    pub progress: Duration,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            history_events: 100_000,
            history_bytes: 64 << 20,
            buffer: 4_096,
            progress: Duration::from_secs(1),
        }
    }
}

/// Why a watch cannot go on (or start).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The node no longer holds the changes after the revision asked for:
    /// list again (which gives a revision to watch from).
    #[error(
        "revision {asked} is compacted: this node serves watches from revision {oldest} on (current {current})"
    )]
    Compacted {
        /// The revision asked for.
        asked: u64,
        /// The oldest revision a watch may start from.
        oldest: u64,
        /// The current revision.
        current: u64,
    },
    /// The watcher fell too far behind and was ended.
    #[error("the watcher fell more than {buffer} apply batches behind and was ended")]
    Lagged {
        /// The batches it may fall behind.
        buffer: usize,
    },
    /// The node is shutting down.
    #[error("the node has shut down")]
    Shutdown,
}

/// What the hub broadcasts.
#[derive(Clone, Debug)]
enum Note {
    /// The changes of one `apply` call, in revision order.
    Events(Arc<[Event]>),
    /// A snapshot was installed: changes before `floor` are unknown.
    Reset { floor: u64 },
    /// The node is shutting down.
    Closed,
}

/// The history and the broadcast; lives under the state machine's lock.
#[derive(Debug)]
pub(super) struct Hub {
    history: VecDeque<Event>,
    bytes: u64,
    floor: u64,
    current: Arc<AtomicU64>,
    tx: broadcast::Sender<Note>,
    limits: WatchLimits,
    closed: bool,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(0, WatchLimits::default())
    }
}

impl Hub {
    pub(super) fn new(revision: u64, limits: WatchLimits) -> Hub {
        Hub {
            history: VecDeque::new(),
            bytes: 0,
            floor: revision,
            current: Arc::new(AtomicU64::new(revision)),
            tx: broadcast::channel(limits.buffer.max(1)).0,
            limits,
            closed: false,
        }
    }

    /// New limits (at start-up, before anyone watches).
    pub(super) fn set_limits(&mut self, limits: WatchLimits) {
        if self.tx.receiver_count() == 0 {
            self.tx = broadcast::channel(limits.buffer.max(1)).0;
        }
        self.limits = limits;
        self.evict();
    }

    /// Records the changes of one `apply` call, which brought the state to
    /// `revision`.
    pub(super) fn publish(&mut self, events: Vec<Event>, revision: u64) {
        if !events.is_empty() {
            for e in &events {
                self.bytes += e.bytes();
            }
            self.history.extend(events.iter().cloned());
            self.evict();
            let _ = self.tx.send(Note::Events(events.into()));
        }
        // After the send: a watcher that reads the revision then drains its
        // channel has every change up to it.
        self.current.store(revision, Ordering::Release);
    }

    fn evict(&mut self) {
        while self.history.len() > self.limits.history_events
            || self.bytes > self.limits.history_bytes
        {
            let Some(e) = self.history.pop_front() else {
                break;
            };
            self.bytes -= e.bytes();
            self.floor = self.floor.max(e.revision());
        }
    }

    /// A snapshot brought the state to `revision`: what came before is not
    /// history any more.
    pub(super) fn reset(&mut self, revision: u64) {
        self.history.clear();
        self.bytes = 0;
        self.floor = revision;
        // The note first, as in `publish`: a watcher that reads the new
        // revision then drains its channel finds the reset, and never
        // reports progress past changes it did not get.
        let _ = self.tx.send(Note::Reset { floor: revision });
        self.current.store(revision, Ordering::Release);
    }

    /// Ends every watcher (shutdown).
    pub(super) fn close(&mut self) {
        self.closed = true;
        let _ = self.tx.send(Note::Closed);
    }

    /// The oldest revision a watch may start from, and the current one.
    pub(super) fn bounds(&self) -> (u64, u64) {
        (self.floor, self.current.load(Ordering::Acquire))
    }

    /// A watcher of the keys `filter` selects, from revision `from` (`None`:
    /// the current one).
    pub(super) fn watch(&self, filter: Filter, from: Option<u64>) -> Result<Watcher, WatchError> {
        if self.closed {
            return Err(WatchError::Shutdown);
        }
        let current = self.current.load(Ordering::Acquire);
        let from = from.unwrap_or(current);
        if from < self.floor {
            return Err(WatchError::Compacted {
                asked: from,
                oldest: self.floor,
                current,
            });
        }
        let backlog = self
            .history
            .iter()
            .filter(|e| e.revision() > from && filter.matches(&e.kv.key))
            .cloned()
            .collect();
        Ok(Watcher {
            filter,
            seen: from,
            backlog,
            rx: self.tx.subscribe(),
            current: self.current.clone(),
            ended: None,
            buffer: self.limits.buffer,
            progress: self.limits.progress,
            next_progress: tokio::time::Instant::now() + self.limits.progress,
        })
    }
}

/// Which keys a watcher follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// One key.
    Key(Vec<u8>),
    /// Every key that starts with this.
    Prefix(Vec<u8>),
}

impl Filter {
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            Filter::Key(k) => key == &k[..],
            Filter::Prefix(p) => key.starts_with(p),
        }
    }
}

/// What a watcher reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchUpdate {
    /// A change of a watched key.
    Event(Event),
    /// Every change up to `revision` has been reported.
    Progress {
        /// The revision.
        revision: u64,
    },
}

/// A watch: every change of the watched keys after its start revision,
/// exactly once and in revision order, with periodic progress reports.
/// Holds no reference to the node: it ends with [`WatchError::Shutdown`]
/// when the node shuts down.
#[derive(Debug)]
pub struct Watcher {
    filter: Filter,
    /// Every change up to this revision has been reported or skipped.
    seen: u64,
    backlog: VecDeque<Event>,
    rx: broadcast::Receiver<Note>,
    current: Arc<AtomicU64>,
    /// Why the watch is over, once the changes before it are reported.
    ended: Option<WatchError>,
    buffer: usize,
    progress: Duration,
    next_progress: tokio::time::Instant,
}

impl Watcher {
    /// The next change, or a progress report when none came for the
    /// progress interval.
    ///
    /// # Errors
    /// [`WatchError`]: the watch is over.
    pub async fn next(&mut self) -> Result<WatchUpdate, WatchError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.seen = self.seen.max(e.revision());
                return Ok(WatchUpdate::Event(e));
            }
            if let Some(end) = &self.ended {
                return Err(end.clone());
            }
            tokio::select! {
                note = self.rx.recv() => match note {
                    Ok(note) => self.take(note),
                    Err(broadcast::error::RecvError::Closed) => self.end(WatchError::Shutdown),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.end(self.lagged()),
                },
                () = tokio::time::sleep_until(self.next_progress) => {
                    // Everything sent before the revision was stored is in
                    // the channel now: take it first.
                    let revision = self.current.load(Ordering::Acquire);
                    while self.ended.is_none() {
                        match self.rx.try_recv() {
                            Ok(note) => self.take(note),
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(broadcast::error::TryRecvError::Closed) => {
                                self.end(WatchError::Shutdown);
                            }
                            Err(broadcast::error::TryRecvError::Lagged(_)) => {
                                self.end(self.lagged());
                            }
                        }
                    }
                    self.next_progress = tokio::time::Instant::now() + self.progress;
                    if self.backlog.is_empty() && self.ended.is_none() {
                        self.seen = self.seen.max(revision);
                        return Ok(WatchUpdate::Progress { revision: self.seen });
                    }
                }
            }
        }
    }

    /// Takes in a note: changes after what was seen go to the backlog; a
    /// reset past it, a shutdown, ends the watch once the backlog is out.
    fn take(&mut self, note: Note) {
        match note {
            Note::Events(events) => {
                for e in events.iter() {
                    if e.revision() > self.seen && self.filter.matches(&e.kv.key) {
                        self.backlog.push_back(e.clone());
                    }
                }
                if let Some(last) = events.last()
                    && self.backlog.is_empty()
                {
                    self.seen = self.seen.max(last.revision());
                }
            }
            Note::Reset { floor } => {
                let reached = self.backlog.back().map_or(self.seen, Event::revision);
                if floor > reached {
                    self.end(WatchError::Compacted {
                        asked: reached,
                        oldest: floor,
                        current: floor,
                    });
                }
            }
            Note::Closed => self.end(WatchError::Shutdown),
        }
    }

    fn end(&mut self, why: WatchError) {
        self.ended.get_or_insert(why);
    }

    fn lagged(&self) -> WatchError {
        WatchError::Lagged {
            buffer: self.buffer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, revision: u64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                value: bytes::Bytes::from_static(b"v"),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            },
        }
    }

    fn limits(history_events: usize) -> WatchLimits {
        WatchLimits {
            history_events,
            buffer: 8,
            progress: Duration::from_millis(20),
            ..WatchLimits::default()
        }
    }

    async fn revisions(w: &mut Watcher, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        while out.len() < n {
            if let WatchUpdate::Event(e) = w.next().await.unwrap() {
                out.push(e.revision());
            }
        }
        out
    }

    #[tokio::test]
    async fn history_then_broadcast_without_gap_or_repeat() {
        let mut hub = Hub::new(0, limits(100));
        hub.publish(vec![put("a/1", 1), put("b/1", 1)], 1);
        hub.publish(vec![put("a/2", 2)], 2);
        let mut w = hub.watch(Filter::Prefix(b"a/".to_vec()), Some(1)).unwrap();
        hub.publish(vec![put("a/3", 3), put("b/3", 3)], 3);
        hub.publish(Vec::new(), 4);
        assert_eq!(revisions(&mut w, 2).await, vec![2, 3]);
        // Idle: progress says the watcher has everything up to 4.
        assert_eq!(
            w.next().await.unwrap(),
            WatchUpdate::Progress { revision: 4 }
        );
        let mut key = hub.watch(Filter::Key(b"b/1".to_vec()), Some(0)).unwrap();
        assert_eq!(revisions(&mut key, 1).await, vec![1]);
    }

    #[tokio::test]
    async fn eviction_raises_the_floor_and_old_watches_are_refused() {
        let mut hub = Hub::new(0, limits(3));
        for r in 1..=5 {
            hub.publish(vec![put("k", r)], r);
        }
        assert_eq!(hub.bounds(), (2, 5));
        assert_eq!(
            hub.watch(Filter::Key(b"k".to_vec()), Some(1)).unwrap_err(),
            WatchError::Compacted {
                asked: 1,
                oldest: 2,
                current: 5
            }
        );
        let mut w = hub.watch(Filter::Key(b"k".to_vec()), Some(2)).unwrap();
        assert_eq!(revisions(&mut w, 3).await, vec![3, 4, 5]);
    }

    #[tokio::test]
    async fn an_install_ends_watchers_behind_it_and_a_slow_one_lags() {
        let mut hub = Hub::new(0, limits(100));
        hub.publish(vec![put("k", 1)], 1);
        let mut behind = hub.watch(Filter::Key(b"k".to_vec()), Some(0)).unwrap();
        let mut slow = hub.watch(Filter::Key(b"k".to_vec()), Some(1)).unwrap();
        hub.reset(10);
        assert_eq!(revisions(&mut behind, 1).await, vec![1]);
        assert!(matches!(
            behind.next().await,
            Err(WatchError::Compacted { oldest: 10, .. })
        ));
        for r in 11..40 {
            hub.publish(vec![put("k", r)], r);
        }
        // The install is behind `slow` too (it had seen 1 < 10).
        assert!(slow.next().await.is_err());
        let mut lagging = hub.watch(Filter::Key(b"k".to_vec()), None).unwrap();
        for r in 40..60 {
            hub.publish(vec![put("k", r)], r);
        }
        assert_eq!(
            lagging.next().await.unwrap_err(),
            WatchError::Lagged { buffer: 8 }
        );
        hub.close();
        assert_eq!(
            hub.watch(Filter::Key(b"k".to_vec()), None).unwrap_err(),
            WatchError::Shutdown
        );
    }
}
