//! The Raft log on redb: entries, vote, committed id and purge point in one
//! database file per node, written by one thread with group commit.
//!
//! # Crash guarantees (openraft's "to ensure correctness", per method)
//!
//! - [`append`](RaftLogStorage::append): the entries are readable when it
//!   returns; the callback fires only after the transaction holding them is
//!   durable. After a crash, a prefix of the appended entries survives, never
//!   a hole: entries are applied in order, and a transaction is all or nothing.
//! - [`save_vote`](RaftLogStorage::save_vote): returns once the vote is durable.
//! - [`save_committed`](RaftLogStorage::save_committed): durable with the next
//!   commit (openraft allows it to lag).
//! - [`truncate`](RaftLogStorage::truncate): returns once the removal is
//!   durable; the last log id is updated in the same transaction.
//! - [`purge`](RaftLogStorage::purge): returns once the new purge point is
//!   durable; entries at or below it are deleted afterwards in bounded batches
//!   (reads never return them, and a restart resumes the deletion), so a crash
//!   never leaves a stale purge point or a hole above it.

mod facts;
mod format;
mod writer;

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};
use serde::de::DeserializeOwned;

pub use facts::LogStats;

use crate::record::RecordError;

use crate::raft::{Entry, LogId, StorageError, TypeConfig, Vote};
use facts::{Counters, NONE};
use format::{ENTRIES, FORMAT_MARKER, KEY_COMMITTED, KEY_FORMAT, KEY_PURGED, KEY_VOTE, META};
use writer::{Op, Pending, Writer};

/// The database file inside a node's data directory.
pub const LOG_FILE: &str = "raft-log.redb";

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
    /// Opens (or creates) the log store in the data directory `dir`.
    ///
    /// # Errors
    /// [`LogStoreError::MissingDir`] if `dir` does not exist; `Open`, `Foreign`
    /// or `Corrupt` (each naming the file) if the file is not a healthy ramrod
    /// log store.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, LogStoreError> {
        if !dir.is_dir() {
            return Err(LogStoreError::MissingDir(dir.to_path_buf()));
        }
        let path = dir.join(LOG_FILE);
        let db = Database::create(&path).map_err(|e| LogStoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let db = Arc::new(db);
        let dbe = db_err(&path);

        // Claim a new file, or check that an existing one is ours.
        let txn = db.begin_write().map_err(|e| dbe(e.into()))?;
        {
            let foreign: Vec<String> = txn
                .list_tables()
                .map_err(|e| dbe(e.into()))?
                .map(|t| t.name().to_string())
                .filter(|n| n != ENTRIES.name() && n != META.name())
                .collect();
            let mut meta = txn.open_table(META).map_err(|e| dbe(e.into()))?;
            let marker = meta
                .get(KEY_FORMAT)
                .map_err(|e| dbe(e.into()))?
                .map(|v| v.value().to_vec());
            match marker {
                Some(m) if m == FORMAT_MARKER => {}
                Some(m) => {
                    return Err(LogStoreError::Foreign {
                        path: path.clone(),
                        reason: format!("unknown format marker {:?}", String::from_utf8_lossy(&m)),
                    });
                }
                None if !foreign.is_empty() => {
                    return Err(LogStoreError::Foreign {
                        path: path.clone(),
                        reason: format!("it holds the tables {foreign:?}"),
                    });
                }
                None => {
                    meta.insert(KEY_FORMAT, FORMAT_MARKER)
                        .map_err(|e| dbe(e.into()))?;
                }
            }
            txn.open_table(ENTRIES).map_err(|e| dbe(e.into()))?;
        }
        txn.commit().map_err(|e| dbe(e.into()))?;

        // Load the state.
        let counters = Arc::new(Counters::new());
        let mut state = State::default();
        let (first_key, bytes) = {
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
            let bytes: Option<u64> =
                decode_meta(&path, writer::KEY_BYTES, load(writer::KEY_BYTES)?)?;
            let entries = txn.open_table(ENTRIES).map_err(|e| dbe(e.into()))?;
            let first = entries
                .first()
                .map_err(|e| dbe(e.into()))?
                .map(|(k, _)| k.value());
            if let Some((k, v)) = entries.last().map_err(|e| dbe(e.into()))? {
                let e = decode_entry(&path, k.value(), v.value())?;
                state.last = Some(e.log_id);
            }
            (first, bytes.unwrap_or(0))
        };
        if state.last.is_none() || state.last.map(|l| l.index) <= state.purged.map(|p| p.index) {
            state.last = state.purged;
        }
        counters
            .last_index
            .store(state.last.map_or(NONE, |l| l.index), Ordering::Release);
        counters
            .purged
            .store(state.purged.map_or(NONE, |l| l.index), Ordering::Release);
        counters
            .committed
            .store(state.committed.map_or(NONE, |l| l.index), Ordering::Release);
        counters.bytes.store(bytes, Ordering::Release);

        // Resume a purge that a crash or shutdown interrupted.
        let purge_target = match (first_key, state.purged) {
            (Some(f), Some(p)) if f <= p.index => Some(p.index),
            _ => None,
        };
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
            durable: durability == Durability::Durable,
            purge_target,
        };
        let handle = std::thread::Builder::new()
            .name("ramrod-log-writer".into())
            .spawn(move || w.run())
            .map_err(|e| LogStoreError::Db {
                path: path.clone(),
                reason: format!("starting the writer: {e}"),
            })?;
        Ok(LogStore {
            shared: Arc::new(Shared {
                db,
                path: path.clone(),
                tx,
                counters,
                pending,
                state: Mutex::new(state),
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// The database file.
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
        // Pending first: an entry leaves it only after it is in the database.
        let pending: Vec<(u64, Arc<Vec<u8>>)> = {
            let p = self
                .shared
                .pending
                .read()
                .unwrap_or_else(|e| e.into_inner());
            p.range(start..end).map(|(k, v)| (*k, v.clone())).collect()
        };
        let path = &self.shared.path;
        let dbe = db_err(path);
        let txn = self.shared.db.begin_read().map_err(|e| dbe(e.into()))?;
        let table = txn.open_table(ENTRIES).map_err(|e| dbe(e.into()))?;
        let mut out: std::collections::BTreeMap<u64, Entry> = std::collections::BTreeMap::new();
        for item in table.range(start..end).map_err(|e| dbe(e.into()))? {
            let (k, v) = item.map_err(|e| dbe(e.into()))?;
            out.insert(k.value(), decode_entry(path, k.value(), v.value())?);
        }
        for (k, v) in pending {
            out.insert(k, decode_entry(path, k, &v)?);
        }
        Ok(out.into_values().collect())
    }

    /// Size of the database file in bytes.
    pub fn file_size(&self) -> std::io::Result<u64> {
        std::fs::metadata(&self.shared.path).map(|m| m.len())
    }

    /// Entries physically present in the file (including ones below the purge
    /// point that background deletion has not reached yet).
    pub fn stored_entries(&self) -> Result<u64, LogStoreError> {
        let dbe = db_err(&self.shared.path);
        let txn = self.shared.db.begin_read().map_err(|e| dbe(e.into()))?;
        let table = txn.open_table(ENTRIES).map_err(|e| dbe(e.into()))?;
        table.len().map_err(|e| dbe(e.into()))
    }

    /// Whether entries below the purge point are still being deleted in the
    /// background.
    pub fn purge_in_progress(&self) -> bool {
        self.shared.counters.purging.load(Ordering::Acquire)
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

fn decode_entry(path: &Path, index: u64, bytes: &[u8]) -> Result<Entry, LogStoreError> {
    let e: Entry = format::decode(bytes).map_err(|source| LogStoreError::Corrupt {
        path: path.to_path_buf(),
        what: format!("entry {index}"),
        source,
    })?;
    if e.log_id.index != index {
        return Err(LogStoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!("entry {index}"),
            source: RecordError::Decode(format!("it holds the entry of index {}", e.log_id.index)),
        });
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
        let mut list = Vec::new();
        let mut bytes = 0u64;
        let mut last = None;
        for e in entries {
            let record = Arc::new(format::encode(&e));
            bytes += record.len() as u64;
            last = Some(e.log_id);
            list.push((e.log_id.index, record));
        }
        let Some(last) = last else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let n = list.len() as u64;
        {
            let mut p = self
                .shared
                .pending
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for (i, r) in &list {
                p.insert(*i, r.clone());
            }
        }
        self.state().last = Some(last);
        let c = &self.shared.counters;
        let first = list[0].0;
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
        self.send(Op::Append {
            entries: list,
            done,
        })
        .map_err(io_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        self.shared
            .pending
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .split_off(&index);
        self.send_and_wait(|reply| Op::Truncate { index, reply })
            .await
            .map_err(io_err)?;
        let prev = match index.checked_sub(1) {
            Some(i) => self
                .read(i, index)
                .map_err(read_err)?
                .pop()
                .map(|e| e.log_id),
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
