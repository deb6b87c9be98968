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

mod facts;
mod format;
mod index;
mod segment;
mod writer;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};
use serde::de::DeserializeOwned;

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

/// Why the log store could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreError {
    /// The data directory does not exist.
    #[error("data directory {} does not exist", .0.display())]
    MissingDir(PathBuf),
    /// redb could not open the file (damaged, locked, not a database).
    #[error("opening log store at {}: {reason}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// The file is a database, but not a ramrod log store.
    #[error("{} is not a ramrod log store: {reason}", path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// A stored record is damaged.
    #[error("log store at {}: {what} is damaged: {source}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which record.
        what: String,
        /// How.
        source: RecordError,
    },
    /// A redb operation failed.
    #[error("log store at {}: {reason}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// A segment file is damaged or cannot be read.
    #[error("log segment {}: {what}", path.display())]
    Segment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong, and where.
        what: String,
    },
    /// The options are out of range.
    #[error("log store options: {0}")]
    Options(String),
    /// The writer thread is gone (the store is shutting down or failed).
    #[error("log store at {}: the writer thread has stopped", .0.display())]
    Stopped(PathBuf),
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
    move |e| LogStoreError::Db {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn io_err(e: LogStoreError) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn read_err(e: LogStoreError) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

impl LogStore {
    /// Opens (or creates) the log store in the data directory `dir` with the
    /// default options and the given durability.
    ///
    /// # Errors
    /// See [`LogStore::open_with`].
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, LogStoreError> {
        Self::open_with(
            dir,
            LogOptions {
                durability,
                ..LogOptions::default()
            },
        )
    }

    /// Opens (or creates) the log store in the data directory `dir`, and
    /// recovers the batches written after the last durable index commit.
    ///
    /// # Errors
    /// [`LogStoreError::MissingDir`] if `dir` does not exist; `Open`,
    /// `Foreign`, `Corrupt` or `Segment` (each naming the file) if the store
    /// is not a healthy ramrod log store; `Options` for options out of range.
    pub fn open_with(dir: &Path, options: LogOptions) -> Result<Self, LogStoreError> {
        if !(64 << 10..=1 << 30).contains(&options.segment_bytes) {
            return Err(LogStoreError::Options(format!(
                "segment-bytes = {} is outside 64 KiB..=1 GiB",
                options.segment_bytes
            )));
        }
        if !dir.is_dir() {
            return Err(LogStoreError::MissingDir(dir.to_path_buf()));
        }
        let path = dir.join(LOG_FILE);
        let seg_dir = dir.join(SEGMENT_DIR);
        let io = |what: &str, e: std::io::Error| LogStoreError::Segment {
            path: seg_dir.clone(),
            what: format!("{what}: {e}"),
        };
        if !seg_dir.is_dir() {
            std::fs::create_dir(&seg_dir).map_err(|e| io("creating the directory", e))?;
            segment::sync_dir(dir).map_err(|e| io("syncing the data directory", e))?;
        }
        let db = Database::create(&path).map_err(|e| LogStoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let db = Arc::new(db);
        let dbe = db_err(&path);
        claim(&db, &path)?;

        // Load the state.
        let counters = Arc::new(Counters::new());
        let mut state = State::default();
        let (checkpoint, bytes, mut segments) = {
            let txn = db.begin_read().map_err(|e| dbe(e.into()))?;
            let meta = txn.open_table(META).map_err(|e| dbe(e.into()))?;
            let load = |key: &str| -> Result<Option<Vec<u8>>, LogStoreError> {
                Ok(meta
                    .get(key)
                    .map_err(|e| dbe(e.into()))?
                    .map(|v| v.value().to_vec()))
            };
            state.vote = decode_meta(&path, KEY_VOTE, load(KEY_VOTE)?)?;
            state.committed = decode_meta(&path, KEY_COMMITTED, load(KEY_COMMITTED)?)?;
            state.purged = decode_meta(&path, KEY_PURGED, load(KEY_PURGED)?)?;
            let bytes: Option<u64> = decode_meta(&path, KEY_BYTES, load(KEY_BYTES)?)?;
            let checkpoint: Option<(u64, u64)> =
                decode_meta(&path, KEY_CHECKPOINT, load(KEY_CHECKPOINT)?)?;
            let table = txn.open_table(SEGMENTS).map_err(|e| dbe(e.into()))?;
            let mut segments = BTreeMap::new();
            for item in table.iter().map_err(|e| dbe(e.into()))? {
                let (k, v) = item.map_err(|e| dbe(e.into()))?;
                segments.insert(k.value(), v.value());
            }
            (checkpoint.unwrap_or((0, 0)), bytes.unwrap_or(0), segments)
        };
        let files = Arc::new(Files::new(seg_dir.clone()));
        let recovered = recover(&db, &path, &files, &state, checkpoint, bytes, &mut segments)?;
        let active_seq = recovered.next_seq;
        let file = segment::create(&seg_dir, active_seq, options.segment_bytes)
            .map_err(|e| io(&format!("creating {}", segment::file_name(active_seq)), e))?;
        for seq in recovered.empty {
            segments.remove(&seq);
            let _ = std::fs::remove_file(files.path(seq));
        }

        counters.bytes.store(recovered.bytes, Ordering::Release);
        counters
            .purged
            .store(state.purged.map_or(NONE, |l| l.index), Ordering::Release);
        counters
            .committed
            .store(state.committed.map_or(NONE, |l| l.index), Ordering::Release);
        if let Some(first) = recovered.first {
            counters.first_index.store(first, Ordering::Release);
        }
        let purged_index = state.purged.map(|p| p.index);
        // Resume a purge that a crash or shutdown interrupted.
        let purge_target = purged_index.filter(|&p| {
            recovered.first.is_some_and(|f| f <= p)
                || segments.values().any(|&last| last == NONE || last <= p)
        });
        counters
            .purging
            .store(purge_target.is_some(), Ordering::Release);
        let (tx, rx) = std::sync::mpsc::channel();
        let pending: Arc<Pending> = Arc::default();
        let w = Writer {
            db: db.clone(),
            rx,
            counters: counters.clone(),
            pending: pending.clone(),
            files: files.clone(),
            durable: options.durability == Durability::Durable,
            segment_bytes: options.segment_bytes,
            active: Active {
                seq: active_seq,
                file,
                pos: 0,
                cap: options.segment_bytes,
            },
            segments,
            active_last: NONE,
            last_indexed: recovered.last.unwrap_or(NONE),
            purge_target,
            since_durable: 0,
            dirty: false,
            spare: None,
            janitors: Vec::new(),
            rolled: Vec::new(),
            failed: None,
        };
        let handle = std::thread::Builder::new()
            .name("ramrod-log-writer".into())
            .spawn(move || w.run())
            .map_err(|e| LogStoreError::Db {
                path: path.clone(),
                reason: format!("starting the writer: {e}"),
            })?;
        let store = LogStore {
            shared: Arc::new(Shared {
                db,
                path: path.clone(),
                files,
                tx,
                counters,
                pending,
                state: Mutex::new(state),
                writer: Mutex::new(Some(handle)),
            }),
        };
        // The last log id is the one of the last indexed entry.
        let last = match recovered.last {
            Some(i) if purged_index.is_none_or(|p| i > p) => {
                store.read(i, i + 1)?.pop().map(|e| e.log_id)
            }
            _ => None,
        };
        {
            let mut s = store.state();
            s.last = last.or(s.purged);
            store
                .shared
                .counters
                .last_index
                .store(s.last.map_or(NONE, |l| l.index), Ordering::Release);
        }
        Ok(store)
    }

    /// The index database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
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
        result.map_err(|reason| LogStoreError::Db {
            path: self.shared.path.clone(),
            reason,
        })
    }

    /// Reads the entries with indexes in `start..end` that are in the log.
    ///
    /// # Errors
    /// A damaged record or a failed read, naming the file.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, LogStoreError> {
        let floor = self.state().purged.map_or(0, |p| p.index + 1);
        let start = start.max(floor);
        if start >= end {
            return Ok(Vec::new());
        }
        // Pending first: a batch leaves it only after it is in the index.
        let pending: Vec<(Arc<Batch>, u32)> = {
            let p = self
                .shared
                .pending
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let head = p.range(..=start).next_back();
            let rest = p.range(start + 1..end);
            head.into_iter()
                .chain(rest)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let path = &self.shared.path;
        let dbe = db_err(path);
        let mut rows = Vec::new();
        {
            let txn = self.shared.db.begin_read().map_err(|e| dbe(e.into()))?;
            let table = txn.open_table(INDEX).map_err(|e| dbe(e.into()))?;
            let head = table
                .range(..=start)
                .map_err(|e| dbe(e.into()))?
                .next_back()
                .transpose()
                .map_err(|e| dbe(e.into()))?;
            rows.extend(head.map(|(k, v)| (k.value(), v.value())));
            if start + 1 < end {
                for item in table.range(start + 1..end).map_err(|e| dbe(e.into()))? {
                    let (k, v) = item.map_err(|e| dbe(e.into()))?;
                    rows.push((k.value(), v.value()));
                }
            }
        }
        let files = &self.shared.files;
        let mut out: BTreeMap<u64, Entry> = BTreeMap::new();
        for (key, row) in rows {
            let (seq, offset, count) = (row.segment, row.offset, row.count);
            let (lo, hi) = (start.max(key), end.min(key + u64::from(count)));
            if lo >= hi {
                continue;
            }
            let seg_path = files.path(seq);
            let batch = || {
                format!(
                    "the batch of entries {key}..={}",
                    key + u64::from(count) - 1
                )
            };
            let raw = match files.read_at(seq, offset, row.len) {
                Ok(raw) => raw,
                // Purged (and its segment deleted) since this read began.
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && self
                            .state()
                            .purged
                            .is_some_and(|p| p.index >= key + u64::from(count) - 1) =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(LogStoreError::Segment {
                        path: seg_path,
                        what: format!("reading {} at offset {offset}: {e}", batch()),
                    });
                }
            };
            let record = segment::parse(&raw)
                .map_err(|e| LogStoreError::Segment {
                    path: seg_path.clone(),
                    what: format!("{} at offset {offset}: {e}", batch()),
                })
                .and_then(|r| {
                    let skip = u64::from(row.skip);
                    if key.checked_sub(skip) == Some(r.first_index)
                        && r.count() as u64 >= skip + u64::from(count)
                    {
                        Ok(r)
                    } else {
                        Err(LogStoreError::Segment {
                            path: seg_path.clone(),
                            what: format!(
                                "{} at offset {offset}: the record holds entries from {}",
                                batch(),
                                r.first_index
                            ),
                        })
                    }
                })?;
            for i in lo..hi {
                let bytes = record.entry((i - key + u64::from(row.skip)) as usize);
                out.insert(i, decode_entry(&seg_path, i, bytes)?);
            }
        }
        for (batch, visible) in pending {
            let first = batch.first_index();
            let (lo, hi) = (start.max(first), end.min(first + u64::from(visible)));
            for i in lo..hi {
                out.insert(i, decode_entry(path, i, batch.entry((i - first) as usize))?);
            }
        }
        Ok(out.into_values().collect())
    }

    /// Bytes the log takes on disk: the index database plus the segment
    /// files (pre-allocated space included).
    pub fn file_size(&self) -> std::io::Result<u64> {
        let mut total = std::fs::metadata(&self.shared.path)?.len();
        for entry in std::fs::read_dir(self.shared.files.dir())? {
            let entry = entry?;
            if segment::parse_name(&entry.file_name().to_string_lossy()).is_some() {
                match entry.metadata() {
                    Ok(m) => total += m.len(),
                    // Deleted by a purge since the listing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }

    /// Entries in the index (including ones below the purge point that
    /// background deletion has not reached yet). Scans the index.
    pub fn stored_entries(&self) -> Result<u64, LogStoreError> {
        let dbe = db_err(&self.shared.path);
        let txn = self.shared.db.begin_read().map_err(|e| dbe(e.into()))?;
        let table = txn.open_table(INDEX).map_err(|e| dbe(e.into()))?;
        let mut n = 0;
        for item in table.iter().map_err(|e| dbe(e.into()))? {
            let (_, v) = item.map_err(|e| dbe(e.into()))?;
            n += u64::from(v.value().count);
        }
        Ok(n)
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

/// Claims a new database file, or checks that an existing one is ours.
fn claim(db: &Database, path: &Path) -> Result<(), LogStoreError> {
    let dbe = db_err(path);
    let txn = db.begin_write().map_err(|e| dbe(e.into()))?;
    {
        let ours = [INDEX.name(), SEGMENTS.name(), META.name()];
        let foreign: Vec<String> = txn
            .list_tables()
            .map_err(|e| dbe(e.into()))?
            .map(|t| t.name().to_string())
            .filter(|n| !ours.contains(&n.as_str()))
            .collect();
        let mut meta = txn.open_table(META).map_err(|e| dbe(e.into()))?;
        let marker = meta
            .get(KEY_FORMAT)
            .map_err(|e| dbe(e.into()))?
            .map(|v| v.value().to_vec());
        match marker {
            Some(m) if m == FORMAT_MARKER => {}
            Some(m) if m == FORMAT_V1 => {
                return Err(LogStoreError::Foreign {
                    path: path.to_path_buf(),
                    reason: "it is in format 1 (entries inside redb), written by an older \
                             ramrod; this build reads format 2"
                        .into(),
                });
            }
            Some(m) => {
                return Err(LogStoreError::Foreign {
                    path: path.to_path_buf(),
                    reason: format!("unknown format marker {:?}", String::from_utf8_lossy(&m)),
                });
            }
            None if !foreign.is_empty() => {
                return Err(LogStoreError::Foreign {
                    path: path.to_path_buf(),
                    reason: format!("it holds the tables {foreign:?}"),
                });
            }
            None => {
                meta.insert(KEY_FORMAT, FORMAT_MARKER)
                    .map_err(|e| dbe(e.into()))?;
            }
        }
        txn.open_table(INDEX).map_err(|e| dbe(e.into()))?;
        txn.open_table(SEGMENTS).map_err(|e| dbe(e.into()))?;
    }
    txn.commit().map_err(|e| dbe(e.into()))
}

/// What recovery found.
struct Recovered {
    /// The sequence number for the new active segment.
    next_seq: u64,
    /// First and last indexed entry.
    first: Option<u64>,
    last: Option<u64>,
    /// Entry bytes in the index.
    bytes: u64,
    /// Segment files without a record, to delete.
    empty: Vec<u64>,
}

/// Indexes the batches written after the last durable checkpoint, and makes
/// the result durable with a checkpoint at the start of a new segment.
fn recover(
    db: &Database,
    path: &Path,
    files: &Files,
    state: &State,
    (ckpt_seq, ckpt_offset): (u64, u64),
    bytes: u64,
    segments: &mut BTreeMap<u64, u64>,
) -> Result<Recovered, LogStoreError> {
    let dbe = db_err(path);
    let seg_err = |p: PathBuf, what: String| LogStoreError::Segment { path: p, what };
    let mut on_disk = Vec::new();
    let listing = std::fs::read_dir(files.dir())
        .map_err(|e| seg_err(files.dir().to_path_buf(), format!("listing: {e}")))?;
    for entry in listing {
        let entry =
            entry.map_err(|e| seg_err(files.dir().to_path_buf(), format!("listing: {e}")))?;
        if let Some(seq) = segment::parse_name(&entry.file_name().to_string_lossy()) {
            on_disk.push(seq);
        }
    }
    on_disk.sort_unstable();
    // Segments before the checkpoint that the index no longer knows were
    // being deleted when the process stopped.
    on_disk.retain(|&seq| {
        let orphan = seq < ckpt_seq && !segments.contains_key(&seq);
        if orphan {
            let _ = std::fs::remove_file(files.path(seq));
        }
        !orphan
    });
    let purged = state.purged.map(|p| p.index);
    let mut bytes = bytes;
    let mut empty = Vec::new();
    let mut scanned = Vec::new();
    let next_seq = on_disk.last().copied().unwrap_or(0).max(ckpt_seq) + 1;
    let mut txn = db.begin_write().map_err(|e| dbe(e.into()))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| dbe(redb::Error::Corrupted(e.to_string())))?;
    let (first, last) = {
        let mut table = txn.open_table(INDEX).map_err(|e| dbe(e.into()))?;
        let mut last = table
            .last()
            .map_err(|e| dbe(e.into()))?
            .map(|(k, v)| v.value().last(k.value()));
        let to_scan: Vec<u64> = on_disk.iter().copied().filter(|&s| s >= ckpt_seq).collect();
        for (i, &seq) in to_scan.iter().enumerate() {
            let from = if seq == ckpt_seq { ckpt_offset } else { 0 };
            let seg_path = files.path(seq);
            let mut found = false;
            let read = |s: u64, o: u64, l: u32| {
                files
                    .read_at(s, o, l)
                    .map_err(|e| format!("reading segment {s}: {e}"))
            };
            let end = segment::scan(&seg_path, from, |offset, rec| {
                found = true;
                let first = rec.first_index;
                let count = rec.count() as u64;
                let rec_last = first + count - 1;
                let seg_last = segments.entry(seq).or_insert(NONE);
                if *seg_last == NONE || *seg_last < rec_last {
                    *seg_last = rec_last;
                }
                if purged.is_some_and(|p| rec_last <= p) {
                    return Ok(());
                }
                let floor = match (last, purged) {
                    (Some(l), Some(p)) => Some(l.max(p)),
                    (l, p) => l.or(p),
                };
                if let Some(f) = floor
                    && first > f + 1
                {
                    return Err(format!(
                        "the batch at {first} leaves entries {}..{first} missing",
                        f + 1
                    ));
                }
                if last.is_some_and(|l| first <= l) {
                    let removed = index::remove_from(&mut table, first, &read)?;
                    bytes = bytes.saturating_sub(removed);
                }
                let entry_bytes = rec.entry_bytes(0..rec.count());
                table
                    .insert(
                        first,
                        format::Row {
                            segment: seq,
                            offset,
                            len: rec.len as u32,
                            skip: 0,
                            count: count as u32,
                            bytes: entry_bytes as u32,
                        },
                    )
                    .map_err(|e| e.to_string())?;
                bytes += entry_bytes;
                last = Some(rec_last);
                Ok(())
            })
            .map_err(|e| match e {
                segment::ScanError::Io(p, e) => seg_err(p, format!("reading: {e}")),
                segment::ScanError::Bad(p, at, what) => {
                    seg_err(p, format!("at offset {at}: {what}"))
                }
            })?;
            if !found && from == 0 {
                empty.push(seq);
            } else {
                scanned.push(seq);
            }
            match end {
                segment::ScanEnd::Clean(_) => {}
                segment::ScanEnd::Torn(at, bad) => {
                    let later = &to_scan[i + 1..];
                    if let Some(&proof) = later.iter().find(|&&s| starts_with_record(files, s)) {
                        return Err(seg_err(
                            seg_path,
                            format!(
                                "acknowledged data is damaged at offset {at} ({bad}): segment \
                                 {proof} was written after it"
                            ),
                        ));
                    }
                    tracing::warn!(
                        segment = %seg_path.display(),
                        offset = at,
                        reason = %bad,
                        "dropping a torn tail: a write that was never acknowledged"
                    );
                    empty.extend_from_slice(later);
                    break;
                }
                segment::ScanEnd::Damaged(at, bad) => {
                    return Err(seg_err(
                        seg_path,
                        format!(
                            "acknowledged data is damaged at offset {at} ({bad}): a later \
                             group was written after it"
                        ),
                    ));
                }
            }
        }
        let first = table
            .first()
            .map_err(|e| dbe(e.into()))?
            .map(|(k, _)| k.value());
        let mut segs = txn.open_table(SEGMENTS).map_err(|e| dbe(e.into()))?;
        for seq in &scanned {
            if let Some(&l) = segments.get(seq) {
                segs.insert(*seq, l).map_err(|e| dbe(e.into()))?;
            }
        }
        for seq in &empty {
            segs.remove(*seq).map_err(|e| dbe(e.into()))?;
        }
        let mut meta = txn.open_table(META).map_err(|e| dbe(e.into()))?;
        meta.insert(KEY_BYTES, format::encode(&Some(bytes)).as_slice())
            .map_err(|e| dbe(e.into()))?;
        meta.insert(
            KEY_CHECKPOINT,
            format::encode(&Some((next_seq, 0u64))).as_slice(),
        )
        .map_err(|e| dbe(e.into()))?;
        (first, last)
    };
    txn.commit().map_err(|e| dbe(e.into()))?;
    Ok(Recovered {
        next_seq,
        first,
        last,
        bytes,
        empty,
    })
}

/// Whether segment `seq` begins with a valid record.
fn starts_with_record(files: &Files, seq: u64) -> bool {
    std::fs::read(files.path(seq)).is_ok_and(|b| segment::parse(&b).is_ok())
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

fn decode_entry(path: &Path, index: u64, bytes: &[u8]) -> Result<Entry, LogStoreError> {
    let corrupt = |reason: String| LogStoreError::Corrupt {
        path: path.to_path_buf(),
        what: format!("entry {index}"),
        source: RecordError::Decode(reason),
    };
    let e: Entry = postcard::from_bytes(bytes).map_err(|e| corrupt(e.to_string()))?;
    if e.log_id.index != index {
        return Err(corrupt(format!(
            "it holds the entry of index {}",
            e.log_id.index
        )));
    }
    Ok(e)
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        self.read(start, end).map_err(read_err)
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
        let done = Box::new(move |r: Result<(), String>| {
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
