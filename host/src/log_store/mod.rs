//! The Raft log: entry payloads in append-only segment files, the index,
//! vote, committed id and purge point in one redb database per node, all
//! written by one thread with group commit.
//!
//! ```text
//! DATA_DIR/raft-log.redb          index (batch first index -> segment, offset), meta
//! DATA_DIR/raft-log/NNNN....seg   pre-allocated segments, one record per appended batch
//! ```
//!
//! A group commit costs one `write` and one `fdatasync` of a pre-allocated
//! file (the cost of the physical limit); the index commit that follows is
//! made durable only now and then, because recovery re-reads the segments
//! written after the last durable one (see [`writer`]).
//!
//! # Crash guarantees (openraft's "to ensure correctness", per method)
//!
//! - [`append`](RaftLogStorage::append): the entries are readable when it
//!   returns; the callback fires only after the segment bytes holding them
//!   are synced. After a crash, a prefix of the appended entries survives,
//!   never a hole: batches are written in order, each record is checksummed,
//!   and recovery stops at the first incomplete record of the last group
//!   (one that was never acknowledged). Damage to a record that a later group
//!   follows is reported as corruption, never silently cut. An append whose
//!   first index is at or below the last one replaces the log from that
//!   index on (Raft's rule: the entries after a replaced one are invalid).
//! - [`save_vote`](RaftLogStorage::save_vote): returns once the vote is durable.
//! - [`save_committed`](RaftLogStorage::save_committed): durable with the next
//!   durable commit (openraft allows it to lag).
//! - [`truncate`](RaftLogStorage::truncate): returns once the removal is
//!   durable, with a checkpoint after the removed records, so recovery never
//!   brings them back.
//! - [`purge`](RaftLogStorage::purge): returns once the new purge point is
//!   durable; index rows and segment files at or below it are deleted
//!   afterwards in bounded batches (reads never return them, and a restart
//!   resumes the deletion), so a crash never leaves a stale purge point or a
//!   hole above it.

mod discard;
mod error;
mod facts;
mod format;
mod index;
mod open;
mod reader;
mod segment;
mod writer;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, StorageIOError};
use redb::Database;
use serde::de::DeserializeOwned;

/// Fuzzing entry points for the log store's decoders (see `crate::fuzzing`).
pub(crate) mod fuzz {
    use super::segment;

    fn one(data: &[u8]) -> usize {
        match segment::parse(data) {
            Ok(r) => {
                for i in 0..r.count() {
                    let _ = super::reader::decode_entry(
                        std::path::Path::new("fuzz"),
                        r.first_index + i as u64,
                        r.entry(i),
                    );
                }
                r.count()
            }
            Err(_) => 0,
        }
    }

    /// Parses `data` as a segment record (as is, and with its checksum made
    /// right) and decodes the entries of an entries record; how many.
    pub(crate) fn record(data: &[u8]) -> usize {
        let mut n = one(data);
        let mut fixed = data.to_vec();
        segment::fix_checksum(&mut fixed);
        n += one(&fixed);
        // The framed meta values a meta record carries.
        if let Ok(r) = segment::parse(&fixed)
            && let Some(segment::Meta::Vote(v) | segment::Meta::Purged(v)) = &r.meta
        {
            let _ = super::format::decode::<Option<crate::raft::Vote>>(v);
            let _ = super::format::decode::<Option<crate::raft::LogId>>(v);
        }
        n
    }

    /// Valid records: batches (plain and compressed) and meta records.
    pub(crate) fn seeds() -> Vec<Vec<u8>> {
        let entry = |i: u64, n: usize| crate::raft::Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), i),
            payload: openraft::EntryPayload::Normal(crate::raft::Request::put(
                format!("k{i}"),
                vec![b'v'; n],
            )),
        };
        let mut out = Vec::new();
        for (count, size) in [(1, 8), (5, 100), (40, 600)] {
            let entries: Vec<_> = (1..=count).map(|i| entry(i, size)).collect();
            let batch = segment::Batch::encode(1, entries.iter());
            let mut buf = Vec::new();
            segment::put(&mut buf, &batch, 0);
            out.push(buf);
        }
        for meta in [
            segment::Meta::Vote(super::format::encode(&Some(openraft::Vote::<u64>::new(
                3, 1,
            )))),
            segment::Meta::Purged(super::format::encode(&Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 1),
                9,
            )))),
            segment::Meta::Truncate(7),
            segment::Meta::Start,
        ] {
            let mut buf = Vec::new();
            segment::put_meta(&mut buf, &meta, 0);
            out.push(buf);
        }
        out
    }
}

pub use discard::{DISCARDED_PREFIX, Discarded, Salvage, discard, discards, salvage};
pub use error::{LogStoreError, WriteError};
pub use facts::LogStats;

use crate::record::RecordError;

use crate::raft::{Entry, LogId, StorageError, TypeConfig, Vote};
use facts::{Counters, NONE};
use format::{
    FORMAT_MARKER, FORMAT_V1, INDEX, KEY_BYTES, KEY_CHECKPOINT, KEY_COMMITTED, KEY_FORMAT,
    KEY_PURGED, KEY_VOTE, META, SEGMENTS,
};
use index::Files;
use segment::Batch;
use writer::{Active, Op, Pending, Writer};

/// The index database inside a node's data directory.
pub const LOG_FILE: &str = "raft-log.redb";
/// The directory of segment files inside a node's data directory.
pub const SEGMENT_DIR: &str = "raft-log";

/// When a write counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync before acknowledging (the default).
    #[default]
    Durable,
    /// Acknowledge without fsync: a crash of the machine may lose
    /// acknowledged entries. Only for measuring the upper bound.
    NotDurable,
}

/// How a log store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LogOptions {
    /// When a write counts as done.
    pub durability: Durability,
    /// Size of each pre-allocated segment file (a batch larger than this gets
    /// a segment of its own). Between 64 KiB and 1 GiB.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Durable,
            segment_bytes: 4 << 20,
        }
    }
}

/// A redb-backed Raft log store. Cheap to clone; clones share the database.
#[derive(Clone, Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
}

struct Shared {
    db: Arc<Database>,
    path: PathBuf,
    files: Arc<Files>,
    tx: Sender<Op>,
    counters: Arc<Counters>,
    pending: Arc<Pending>,
    state: Mutex<State>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set when this open rebuilt a damaged index.
    rebuilt: Mutex<Option<IndexRebuild>>,
}

/// A damaged index that opening the store rebuilt from the segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRebuild {
    /// Where the damaged index file was moved (kept for a look).
    pub damaged: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

#[derive(Debug, Default)]
struct State {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    last: Option<LogId>,
}

impl Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.tx.send(Op::Shutdown);
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
    }
}

fn db_err(path: &Path) -> impl Fn(redb::Error) -> LogStoreError + '_ {
    move |source| LogStoreError::Db {
        path: path.to_path_buf(),
        source,
    }
}

fn io_err(e: LogStoreError) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn read_err(e: LogStoreError) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

impl LogStore {
    /// The index database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The damaged index this open rebuilt from the segments, if it did.
    pub fn index_rebuild(&self) -> Option<IndexRebuild> {
        self.shared
            .rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Live facts about the log (no I/O).
    pub fn stats(&self) -> LogStats {
        self.shared.counters.stats()
    }

    /// The saved vote, if any.
    pub fn vote(&self) -> Option<Vote> {
        self.state().vote
    }

    /// The last purged log id, if any.
    pub fn purged(&self) -> Option<LogId> {
        self.state().purged
    }

    /// The saved committed log id, if any.
    pub fn committed(&self) -> Option<LogId> {
        self.state().committed
    }

    /// The last log id, if any.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.state().last
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, op: Op) -> Result<(), LogStoreError> {
        self.shared
            .tx
            .send(op)
            .map_err(|_| LogStoreError::Stopped(self.shared.path.clone()))
    }

    async fn send_and_wait(
        &self,
        make: impl FnOnce(writer::Reply) -> Op,
    ) -> Result<(), LogStoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(make(reply))?;
        let result = rx
            .await
            .map_err(|_| LogStoreError::Stopped(self.shared.path.clone()))?;
        result.map_err(|source| LogStoreError::Write {
            path: self.shared.path.clone(),
            source,
        })
    }

    /// Whether entries below the purge point are still being deleted in the
    /// background.
    pub fn purge_in_progress(&self) -> bool {
        self.shared.counters.purging.load(Ordering::Acquire)
    }

    /// Removes the entries from `index` on, durably.
    async fn truncate_from(&self, index: u64) -> Result<(), LogStoreError> {
        {
            let mut p = self
                .shared
                .pending
                .write()
                .unwrap_or_else(|e| e.into_inner());
            p.split_off(&index);
            if let Some((&first, (_, visible))) = p.iter_mut().next_back() {
                let keep = index.saturating_sub(first).min(u64::from(*visible));
                *visible = keep as u32;
            }
        }
        self.send_and_wait(|reply| Op::Truncate { index, reply })
            .await?;
        let prev = match index.checked_sub(1) {
            Some(i) => self.read(i, index)?.pop().map(|e| e.log_id),
            None => None,
        };
        let mut s = self.state();
        s.last = prev.or(s.purged);
        self.shared
            .counters
            .last_index
            .store(s.last.map_or(NONE, |l| l.index), Ordering::Release);
        Ok(())
    }

    /// Waits until every operation queued so far is durable.
    ///
    /// # Errors
    /// If the writer has stopped or the commit failed.
    pub async fn flush(&self) -> Result<(), LogStoreError> {
        let record = format::encode(&self.state().committed);
        self.send_and_wait(|reply| Op::Meta {
            key: KEY_COMMITTED,
            record,
            reply: Some(reply),
        })
        .await
    }
}

fn decode_meta<T: DeserializeOwned>(
    path: &Path,
    key: &str,
    bytes: Option<Vec<u8>>,
) -> Result<Option<T>, LogStoreError> {
    match bytes {
        None => Ok(None),
        Some(b) => format::decode::<Option<T>>(&b).map_err(|source| LogStoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!("the `{key}` record"),
            source,
        }),
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let s = self.state();
        Ok(LogState {
            last_purged_log_id: s.purged,
            last_log_id: s.last.or(s.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let record = format::encode(&Some(*vote));
        self.send_and_wait(|reply| Op::Meta {
            key: KEY_VOTE,
            record,
            reply: Some(reply),
        })
        .await
        .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        self.state().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.state().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.state().committed = committed;
        let c = committed.map_or(NONE, |l| l.index);
        self.shared.counters.committed.store(c, Ordering::Release);
        self.send(Op::Meta {
            key: KEY_COMMITTED,
            record: format::encode(&committed),
            reply: None,
        })
        .map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.state().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let list: Vec<Entry> = entries.into_iter().collect();
        let (Some(head), Some(tail)) = (list.first(), list.last()) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let (first, last) = (head.log_id.index, tail.log_id);
        if list
            .iter()
            .enumerate()
            .any(|(i, e)| e.log_id.index != first + i as u64)
        {
            return Err(io_err(LogStoreError::Options(format!(
                "append: the indexes of a batch must be consecutive from {first}"
            ))));
        }
        let batch = Arc::new(Batch::encode(first, list.iter()));
        drop(list);
        let n = batch.count() as u64;
        let bytes = batch.entry_bytes();
        if self.state().last.is_some_and(|l| l.index >= first) {
            // The batch replaces the log from its first index on: remove the
            // old tail first, so that no reader sees it next to the new one.
            self.truncate_from(first).await.map_err(io_err)?;
        }
        self.shared
            .pending
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(first, (batch.clone(), n as u32));
        self.state().last = Some(last);
        let c = &self.shared.counters;
        let _ = c
            .first_index
            .compare_exchange(NONE, first, Ordering::AcqRel, Ordering::Acquire);
        c.last_index.store(last.index, Ordering::Release);
        c.rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(Instant::now(), n, bytes);
        c.appended_entries.fetch_add(n, Ordering::Relaxed);
        c.appended_bytes.fetch_add(bytes, Ordering::Relaxed);
        let done = Box::new(move |r: Result<(), Arc<WriteError>>| {
            callback.log_io_completed(r.map_err(std::io::Error::other))
        });
        self.send(Op::Append { batch, done }).map_err(io_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.truncate_from(log_id.index).await.map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut s = self.state();
            s.purged = Some(log_id);
            if s.last.is_none_or(|l| l.index < log_id.index) {
                s.last = Some(log_id);
                self.shared
                    .counters
                    .last_index
                    .store(log_id.index, Ordering::Release);
            }
        }
        self.shared
            .counters
            .purged
            .store(log_id.index, Ordering::Release);
        let record = format::encode(&Some(log_id));
        self.send_and_wait(|reply| Op::Purge {
            index: log_id.index,
            record,
            reply,
        })
        .await
        .map_err(io_err)
    }
}
