//! The log store's errors: [`LogStoreError`] for callers, [`WriteError`]
//! for what the writer thread was doing when it failed.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::record::RecordError;

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
    /// Another process has the index open (a node already running on this
    /// data directory).
    #[error(
        "log store at {}: another process has it open (is a node already running on this data \
         directory?)",
        .0.display()
    )]
    InUse(PathBuf),
    /// The index file cannot be read (an I/O error, not damage).
    #[error("reading log store at {}: {source}", path.display())]
    Unreadable {
        /// The database file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The store is in a format this build does not read.
    #[error("{} is a ramrod log store of another format: {reason}", path.display())]
    OldFormat {
        /// The database file.
        path: PathBuf,
        /// Which format.
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
    #[error("log store at {}: {source}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::Error,
    },
    /// The writer thread failed; the store has stopped writing (every later
    /// write fails the same way) until it is opened again.
    #[error("log store at {}: {source}", path.display())]
    Write {
        /// The database file.
        path: PathBuf,
        /// What the writer was doing, on which file.
        #[source]
        source: Arc<WriteError>,
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

/// What the writer thread was doing, on which file, when it failed. Once
/// it has failed, the writer answers every later operation with the same
/// error (so nothing is written after a failure).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`writing`, `syncing`, `creating`, ...).
        op: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A redb operation failed.
    #[error("{op}: {source}")]
    Db {
        /// What was being done (`indexing`, `commit`, `purging`, ...).
        op: &'static str,
        /// What redb said.
        #[source]
        source: redb::Error,
    },
    /// An indexed record does not read back as the index says.
    #[error("segment {segment} at offset {offset}: {reason}")]
    Record {
        /// The segment's sequence number.
        segment: u64,
        /// The record's offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A batch or offset beyond the format's 32-bit fields.
    #[error("{what} of {value} does not fit the format's 32-bit field")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
}

impl WriteError {
    /// A redb error while doing `op`.
    pub(crate) fn db(op: &'static str) -> impl Fn(redb::Error) -> WriteError {
        move |source| WriteError::Db { op, source }
    }

    /// An I/O error while doing `op` on `path`.
    pub(crate) fn io(op: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> WriteError {
        move |source| WriteError::Io { path, op, source }
    }
}
