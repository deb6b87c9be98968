//! The writer thread: the only place that writes segments and the index.
//!
//! It takes every operation queued since its last commit (group commit) and,
//! in one redb write transaction, indexes the group's appended batches while
//! it encodes them into one buffer. Then it writes the buffer to the active
//! segment with one `fdatasync`, fires the appends' callbacks (their entries
//! are durable: recovery finds them in the segment), and commits the index.
//! The index commit is durable only when an operation needs it (vote,
//! truncate, purge, flush, shutdown), every [`CHECKPOINT_BYTES`] of segment
//! data, and after a second of idleness; recovery rescans the segments after
//! the last durable commit's checkpoint.
//!
//! A purge records the new purge point durably, then deletes index rows below
//! it in bounded batches (one batch per commit, so appends keep flowing) and
//! deletes segment files whose entries are all purged.
//!
//! Votes, purge points and truncations are also written to the segment, as
//! meta records in their group, and every segment starts with the current
//! vote and purge point ([`segment::Meta`]): the index can be rebuilt from
//! the segments.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;

use super::WriteError;
use super::facts::{Counters, NONE};
use super::format::{self, INDEX, KEY_BYTES, KEY_CHECKPOINT, KEY_PURGED, KEY_VOTE, META, SEGMENTS};
use super::index::{self, Files};
use super::segment::{self, Batch, Meta};

/// Index rows deleted per transaction while purging.
pub(crate) const PURGE_BATCH: usize = 2_048;
/// Most operations folded into one group commit.
const MAX_OPS_PER_COMMIT: usize = 4_096;
/// Segment bytes written between durable index commits (bounds the rescan
/// after a crash).
pub(crate) const CHECKPOINT_BYTES: u64 = 64 << 20;
/// Idle time after which un-checkpointed index changes are made durable.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

pub(crate) type Reply = oneshot::Sender<Result<(), Arc<WriteError>>>;
/// Runs once an append is durable (or failed).
pub(crate) type Callback = Box<dyn FnOnce(Result<(), Arc<WriteError>>) + Send>;
/// Batches not yet in the index, by first index, with how many of their
/// entries are still in the log (a truncate may cut a batch).
pub(crate) type Pending = RwLock<BTreeMap<u64, (Arc<Batch>, u32)>>;

pub(crate) enum Op {
    /// An encoded batch; `done` runs once it is durable.
    Append { batch: Arc<Batch>, done: Callback },
    /// A framed record for a meta key; durable before `reply` is answered,
    /// if there is one.
    Meta {
        key: &'static str,
        record: Vec<u8>,
        reply: Option<Reply>,
    },
    /// Remove entries from `index` on.
    Truncate { index: u64, reply: Reply },
    /// Set the purge point to `index` (record holds the log id) and delete up to it.
    Purge {
        index: u64,
        record: Vec<u8>,
        reply: Reply,
    },
    /// Stop after finishing what is queued.
    Shutdown,
}

/// An operation of a group, its waiter (callback or reply) taken out first,
/// so that it is answered whatever fails.
enum Staged {
    Append(Arc<Batch>),
    /// A meta record; `durable` if its caller waits for it.
    Meta {
        key: &'static str,
        record: Vec<u8>,
        durable: bool,
    },
    Truncate(u64),
    Purge {
        index: u64,
        record: Vec<u8>,
    },
    Shutdown,
}

/// A group's operation, after its bytes are written.
enum Action {
    /// Index an appended batch.
    Index(Arc<Batch>, format::Row),
    /// Anything else, applied in order.
    Op(Staged),
}

/// The segment being appended to.
pub(crate) struct Active {
    pub(crate) seq: u64,
    pub(crate) file: File,
    /// Where the next record goes.
    pub(crate) pos: u64,
    /// Pre-allocated size.
    pub(crate) cap: u64,
}

pub(crate) struct Writer {
    pub(crate) db: Arc<Database>,
    pub(crate) rx: Receiver<Op>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) pending: Arc<Pending>,
    pub(crate) files: Arc<Files>,
    pub(crate) durable: bool,
    pub(crate) segment_bytes: u64,
    pub(crate) active: Active,
    /// Segments before the active one: sequence -> highest index written.
    pub(crate) segments: BTreeMap<u64, u64>,
    /// Highest index written to the active segment, `NONE` if none.
    pub(crate) active_last: u64,
    /// Highest index in the index, `NONE` if it is empty.
    pub(crate) last_indexed: u64,
    /// The purge point still to reach by deleting rows and segments.
    pub(crate) purge_target: Option<u64>,
    /// Segment bytes written since the last durable commit.
    pub(crate) since_durable: u64,
    /// Index changes not yet durable.
    pub(crate) dirty: bool,
    pub(crate) spare: Option<JoinHandle<io::Result<File>>>,
    /// Threads deleting purged segment files.
    pub(crate) janitors: Vec<JoinHandle<()>>,
    /// Segments left during this group, with their last index, for the
    /// segments table.
    pub(crate) rolled: Vec<(u64, u64)>,
    /// Set after an I/O failure: nothing is written any more.
    pub(crate) failed: Option<Arc<WriteError>>,
    /// The last vote and purge point saved (framed records), which every
    /// new segment starts with.
    pub(crate) vote: Option<Vec<u8>>,
    pub(crate) purged: Option<Vec<u8>>,
}

#[derive(Default)]
struct Done {
    appended: Vec<Arc<Batch>>,
    callbacks: Vec<Callback>,
    replies: Vec<Reply>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        loop {
            let first = if self.purge_target.is_some() {
                // Keep deleting between groups.
                match self.rx.try_recv() {
                    Ok(op) => Some(op),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return self.finish(),
                }
            } else if self.dirty {
                match self.rx.recv_timeout(IDLE_CHECKPOINT) {
                    Ok(op) => Some(op),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.finish(),
                }
            } else {
                match self.rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => return self.finish(),
                }
            };
            let idle = first.is_none() && self.purge_target.is_none();
            let mut ops: Vec<Op> = first.into_iter().collect();
            while ops.len() < MAX_OPS_PER_COMMIT {
                match self.rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let shutdown = ops.iter().any(|o| matches!(o, Op::Shutdown));
            self.commit(ops, idle);
            if shutdown {
                return self.finish();
            }
        }
    }

    /// Finishes a pending purge and leaves a durable checkpoint.
    fn finish(mut self) {
        while self.purge_target.is_some() && self.failed.is_none() {
            self.commit(Vec::new(), false);
        }
        if self.dirty && self.failed.is_none() {
            self.commit(Vec::new(), true);
        }
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
        for janitor in self.janitors.drain(..) {
            let _ = janitor.join();
        }
    }

    fn commit(&mut self, ops: Vec<Op>, force_durable: bool) {
        let mut done = Done::default();
        let result = match &self.failed {
            Some(f) => {
                for op in ops {
                    collect_waiters(op, &mut done);
                }
                Err(f.clone())
            }
            None => self.apply(ops, force_durable, &mut done).map_err(Arc::new),
        };
        self.counters
            .purging
            .store(self.purge_target.is_some(), Ordering::Release);
        match &result {
            Ok(()) => {
                // The entries are in the index now: readers find them there.
                let mut pending = self.pending.write().unwrap_or_else(|e| e.into_inner());
                for batch in &done.appended {
                    let first = batch.first_index();
                    if pending
                        .get(&first)
                        .is_some_and(|(b, _)| Arc::ptr_eq(b, batch))
                    {
                        pending.remove(&first);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "log store write failed; the store stops writing");
                self.failed.get_or_insert_with(|| e.clone());
            }
        }
        for cb in done.callbacks {
            cb(result.clone());
        }
        for r in done.replies {
            let _ = r.send(result.clone());
        }
        if self.failed.is_none() && self.spare.is_none() {
            let (dir, seq, size) = (
                self.files.dir().to_path_buf(),
                self.active.seq + 1,
                self.segment_bytes,
            );
            self.spare = Some(std::thread::spawn(move || segment::create(&dir, seq, size)));
        }
    }

    fn apply(
        &mut self,
        ops: Vec<Op>,
        force_durable: bool,
        done: &mut Done,
    ) -> Result<(), WriteError> {
        let err = WriteError::db;
        // Phase 1, no database work: encode the group's batches into one
        // buffer, write it, sync it, and tell the appenders.
        let mut need_durable = force_durable;
        let mut buf: Vec<u8> = Vec::new();
        let mut group_start = self.active.pos;
        let mut actions = Vec::with_capacity(ops.len());
        let group = |start: u64| {
            u32::try_from(start).map_err(|_| WriteError::TooLarge {
                what: "group offset",
                value: start,
            })
        };
        // Every waiter first: whatever fails below, each is answered.
        let staged: Vec<Staged> = ops
            .into_iter()
            .map(|op| match op {
                Op::Append { batch, done: cb } => {
                    done.callbacks.push(cb);
                    Staged::Append(batch)
                }
                Op::Meta { key, record, reply } => {
                    let durable = reply.is_some();
                    done.replies.extend(reply);
                    Staged::Meta {
                        key,
                        record,
                        durable,
                    }
                }
                Op::Truncate { index, reply } => {
                    done.replies.push(reply);
                    Staged::Truncate(index)
                }
                Op::Purge {
                    index,
                    record,
                    reply,
                } => {
                    done.replies.push(reply);
                    Staged::Purge { index, record }
                }
                Op::Shutdown => Staged::Shutdown,
            })
            .collect();
        for op in staged {
            let meta = match &op {
                Staged::Meta {
                    key: KEY_VOTE,
                    record,
                    ..
                } => Some(Meta::Vote(record.clone())),
                Staged::Purge { record, .. } => Some(Meta::Purged(record.clone())),
                Staged::Truncate(index) => Some(Meta::Truncate(*index)),
                _ => None,
            };
            if let Some(meta) = meta {
                self.make_room(&mut buf, &mut group_start, meta.stored_len() as u64)?;
                segment::put_meta(&mut buf, &meta, group(group_start)?);
                match meta {
                    Meta::Vote(v) => self.vote = Some(v),
                    Meta::Purged(p) => self.purged = Some(p),
                    Meta::Truncate(_) | Meta::Start => {}
                }
            }
            let Staged::Append(batch) = op else {
                actions.push(Action::Op(op));
                continue;
            };
            let size = batch.stored_len() as u64;
            self.make_room(&mut buf, &mut group_start, size)?;
            let offset = self.active.pos + buf.len() as u64;
            segment::put(&mut buf, &batch, group(group_start)?);
            let last = batch.first_index() + batch.count() as u64 - 1;
            if self.active_last == NONE || self.active_last < last {
                self.active_last = last;
            }
            let row = format::Row {
                segment: self.active.seq,
                offset,
                len: u32::try_from(size).map_err(|_| WriteError::TooLarge {
                    what: "batch",
                    value: size,
                })?,
                skip: 0,
                count: batch.count() as u32,
                bytes: u32::try_from(batch.entry_bytes()).map_err(|_| WriteError::TooLarge {
                    what: "batch entries",
                    value: batch.entry_bytes(),
                })?,
            };
            actions.push(Action::Index(batch, row));
        }
        self.since_durable += buf.len() as u64;
        self.write_out(&mut buf)?;
        for cb in done.callbacks.drain(..) {
            cb(Ok(()));
        }

        // Phase 2: the index, in operation order, in one transaction.
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| err("starting a transaction")(e.into()))?;
        let mut bytes_delta: i64 = 0;
        let mut doomed: Vec<u64> = Vec::new();
        {
            let mut table = txn.open_table(INDEX).map_err(|e| err("index")(e.into()))?;
            let mut meta = txn.open_table(META).map_err(|e| err("meta")(e.into()))?;
            for action in actions {
                match action {
                    Action::Index(batch, row) => {
                        let first = batch.first_index();
                        if self.last_indexed != NONE && first <= self.last_indexed {
                            let removed = self.remove_from(&mut table, first)?;
                            bytes_delta -= removed as i64;
                        }
                        table
                            .insert(first, row)
                            .map_err(|e| err("indexing")(e.into()))?;
                        bytes_delta += i64::from(row.bytes);
                        self.last_indexed = row.last(first);
                        done.appended.push(batch);
                    }
                    Action::Op(Staged::Meta {
                        key,
                        record,
                        durable,
                    }) => {
                        meta.insert(key, record.as_slice())
                            .map_err(|e| err(key)(e.into()))?;
                        need_durable |= durable;
                    }
                    Action::Op(Staged::Truncate(index)) => {
                        let removed = self.remove_from(&mut table, index)?;
                        bytes_delta -= removed as i64;
                        self.last_indexed = last_key(&table)?;
                        need_durable = true;
                    }
                    Action::Op(Staged::Purge { index, record }) => {
                        meta.insert(KEY_PURGED, record.as_slice())
                            .map_err(|e| err("purge point")(e.into()))?;
                        self.purge_target = Some(self.purge_target.map_or(index, |t| t.max(index)));
                        need_durable = true;
                    }
                    Action::Op(Staged::Shutdown) => need_durable = true,
                    Action::Op(Staged::Append(_)) => unreachable!("appends become Index actions"),
                }
            }
            if let Some(target) = self.purge_target {
                bytes_delta -= self.purge_step(&mut table, target, &mut doomed)? as i64;
            }
            let total = self
                .counters
                .bytes
                .load(Ordering::Acquire)
                .saturating_add_signed(bytes_delta);
            if bytes_delta != 0 {
                meta.insert(KEY_BYTES, format::encode(&Some(total)).as_slice())
                    .map_err(|e| err("byte total")(e.into()))?;
            }
            self.counters.bytes.store(total, Ordering::Release);
            meta.insert(
                KEY_CHECKPOINT,
                format::encode(&Some((self.active.seq, self.active.pos))).as_slice(),
            )
            .map_err(|e| err("checkpoint")(e.into()))?;
            let mut segs = txn
                .open_table(SEGMENTS)
                .map_err(|e| err("segments")(e.into()))?;
            for (seq, last) in self.rolled.drain(..) {
                segs.insert(seq, last)
                    .map_err(|e| err("segments")(e.into()))?;
            }
            segs.insert(self.active.seq, self.active_last)
                .map_err(|e| err("segments")(e.into()))?;
            for seq in &doomed {
                segs.remove(seq).map_err(|e| err("segments")(e.into()))?;
            }
        }
        need_durable |= self.since_durable >= CHECKPOINT_BYTES;
        let durable = need_durable && (self.durable || force_durable);
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| err("setting durability")(e.into()))?;
        crate::failpoint::check("log.index-commit", self.files.dir()).map_err(WriteError::io(
            "committing the index of",
            self.files.dir().to_path_buf(),
        ))?;
        txn.commit().map_err(|e| err("commit")(e.into()))?;
        if durable {
            self.since_durable = 0;
            self.dirty = false;
        } else {
            self.dirty = true;
        }
        if !doomed.is_empty() {
            // Unlinking big files takes milliseconds: not on the append path.
            // A crash before it is done leaves orphans, which open() removes.
            for seq in &doomed {
                self.segments.remove(seq);
                self.files.evict(*seq);
            }
            let paths: Vec<_> = doomed.iter().map(|&s| self.files.path(s)).collect();
            self.janitors.retain(|h| !h.is_finished());
            self.janitors.push(std::thread::spawn(move || {
                for path in paths {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(
                            segment = %path.display(), error = %e, "deleting a purged segment"
                        ),
                    }
                }
            }));
        }
        Ok(())
    }

    /// Reads a record of a written segment.
    fn read_record(&self, seq: u64, offset: u64, len: u32) -> Result<Vec<u8>, WriteError> {
        self.files
            .read_at(seq, offset, len)
            .map_err(WriteError::io("reading", self.files.path(seq)))
    }

    /// Removes entries from `index` on.
    fn remove_from(
        &self,
        table: &mut redb::Table<'_, u64, format::Row>,
        index: u64,
    ) -> Result<u64, WriteError> {
        index::remove_from(table, index, &|s, o, l| self.read_record(s, o, l))
    }

    /// Deletes up to [`PURGE_BATCH`] index rows at or below `target` (the
    /// head of a row straddling it is trimmed) and picks the segments that no
    /// longer hold a live entry. Returns the entry bytes removed.
    fn purge_step(
        &mut self,
        table: &mut redb::Table<'_, u64, format::Row>,
        target: u64,
        doomed: &mut Vec<u64>,
    ) -> Result<u64, WriteError> {
        let e = |e: redb::StorageError| WriteError::db("purging")(e.into());
        let mut rows = Vec::new();
        let mut straddling = None;
        let mut more = false;
        for item in table.range(..=target).map_err(e)? {
            let (k, v) = item.map_err(e)?;
            let (key, row) = (k.value(), v.value());
            if rows.len() == PURGE_BATCH {
                more = true;
                break;
            }
            if row.last(key) > target {
                straddling = Some((key, row));
                break;
            }
            rows.push((key, row.bytes));
        }
        let mut removed = 0;
        for (key, bytes) in rows {
            table.remove(key).map_err(e)?;
            removed += u64::from(bytes);
        }
        if let Some((key, row)) = straddling {
            removed += index::trim_head(table, key, row, target + 1, &|s, o, l| {
                self.read_record(s, o, l)
            })?;
        }
        let first_live = table.first().map_err(e)?.map_or(NONE, |(k, _)| k.value());
        for (&seq, &last) in &self.segments {
            if seq < self.active.seq && (last == NONE || (last <= target && last < first_live)) {
                doomed.push(seq);
            }
        }
        if !more {
            self.purge_target = None;
        }
        Ok(removed)
    }

    /// Writes `buf` at the end of the active segment and makes it durable.
    fn write_out(&mut self, buf: &mut Vec<u8>) -> Result<(), WriteError> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.files.path(self.active.seq);
        crate::powerloss::write_at(&self.active.file, &path, buf, self.active.pos)
            .map_err(WriteError::io("writing", path.clone()))?;
        if self.durable {
            crate::failpoint::check("log.sync", &path)
                .and_then(|()| crate::powerloss::sync_data(&self.active.file, &path))
                .map_err(WriteError::io("syncing", path))?;
        }
        self.active.pos += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Makes room in the active segment for a record of `size` bytes after
    /// what `buf` holds: when there is none, writes `buf` out and moves to
    /// the next segment, which starts a new group with the current state.
    fn make_room(
        &mut self,
        buf: &mut Vec<u8>,
        group_start: &mut u64,
        size: u64,
    ) -> Result<(), WriteError> {
        if self.active.pos + buf.len() as u64 + size <= self.active.cap {
            return Ok(());
        }
        self.write_out(buf)?;
        let state = self.state_records();
        self.roll(size + state.len() as u64)?;
        *group_start = 0;
        buf.extend_from_slice(&state);
        Ok(())
    }

    /// The records every segment starts with: a segment start, then the
    /// current vote and purge point.
    fn state_records(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        segment::put_meta(&mut buf, &Meta::Start, 0);
        if let Some(v) = &self.vote {
            segment::put_meta(&mut buf, &Meta::Vote(v.clone()), 0);
        }
        if let Some(p) = &self.purged {
            segment::put_meta(&mut buf, &Meta::Purged(p.clone()), 0);
        }
        buf
    }

    /// Writes the current state at the start of the (new, empty) active
    /// segment: what a store opened does before it takes any operation.
    pub(crate) fn start_segment(&mut self) -> Result<(), WriteError> {
        debug_assert_eq!(self.active.pos, 0);
        let mut state = self.state_records();
        self.write_out(&mut state)
    }

    /// Moves to the next segment, big enough for a record of `size` bytes.
    fn roll(&mut self, size: u64) -> Result<(), WriteError> {
        let seq = self.active.seq + 1;
        let cap = self.segment_bytes.max(size);
        let path = self.files.path(seq);
        let spare = self.spare.take().map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("segment creator panicked")))
        });
        let file = match spare {
            Some(Ok(file)) => file,
            _ => {
                let _ = std::fs::remove_file(&path);
                segment::create(self.files.dir(), seq, cap)
                    .map_err(WriteError::io("creating", path.clone()))?
            }
        };
        if cap > self.segment_bytes {
            segment::grow(&file, cap).map_err(WriteError::io("growing", path))?;
        }
        let old = std::mem::replace(
            &mut self.active,
            Active {
                seq,
                file,
                pos: 0,
                cap,
            },
        );
        self.segments.insert(old.seq, self.active_last);
        self.rolled.push((old.seq, self.active_last));
        self.active_last = NONE;
        Ok(())
    }
}

fn collect_waiters(op: Op, done: &mut Done) {
    match op {
        Op::Append { done: cb, .. } => done.callbacks.push(cb),
        Op::Meta { reply, .. } => done.replies.extend(reply),
        Op::Truncate { reply, .. } | Op::Purge { reply, .. } => done.replies.push(reply),
        Op::Shutdown => {}
    }
}

fn last_key(table: &redb::Table<'_, u64, format::Row>) -> Result<u64, WriteError> {
    Ok(table
        .last()
        .map_err(|e| WriteError::db("reading the index")(e.into()))?
        .map_or(NONE, |(k, v)| v.value().last(k.value())))
}
