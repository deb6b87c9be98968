//! The writer thread: the only place that writes the database.
//!
//! It takes every operation queued since its last commit, applies them in
//! order in one write transaction, commits once (group commit), and only then
//! reports completion: appends' callbacks fire after their entries are
//! durable. A purge records the new purge point in the first transaction and
//! deletes the entries below it in bounded batches, one batch per commit, so
//! appends keep flowing while millions of entries go.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, RwLock};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::oneshot;

use super::facts::Counters;
use super::format::{self, ENTRIES, KEY_PURGED, META};

/// Meta key of the running total of entry bytes, saved with every commit so
/// it never has to be recomputed by scanning.
pub(crate) const KEY_BYTES: &str = "bytes";

/// Entries deleted per transaction while purging.
pub(crate) const PURGE_BATCH: u64 = 2_048;
/// Most operations folded into one transaction.
const MAX_OPS_PER_COMMIT: usize = 4_096;

pub(crate) type Reply = oneshot::Sender<Result<(), String>>;
/// Runs once an append is durable (or failed).
pub(crate) type Callback = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Encoded entry records waiting to be durable, by index.
pub(crate) type Pending = RwLock<BTreeMap<u64, Arc<Vec<u8>>>>;

pub(crate) enum Op {
    /// Entries (index, record); `done` runs once they are durable.
    Append {
        entries: Vec<(u64, Arc<Vec<u8>>)>,
        done: Callback,
    },
    /// A framed record for a meta key.
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

pub(crate) struct Writer {
    pub(crate) db: Arc<Database>,
    pub(crate) rx: Receiver<Op>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) pending: Arc<Pending>,
    pub(crate) durable: bool,
    /// Highest index physically deleted (or about to be) by purging, and the
    /// purge point still to reach.
    pub(crate) purge_target: Option<u64>,
}

struct Done {
    appended: Vec<(u64, Arc<Vec<u8>>)>,
    callbacks: Vec<Callback>,
    replies: Vec<Reply>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        loop {
            // Block for work unless a purge is still deleting.
            let first = if self.purge_target.is_some() {
                match self.rx.try_recv() {
                    Ok(op) => Some(op),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return self.finish_purge(),
                }
            } else {
                match self.rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => return,
                }
            };
            let mut ops: Vec<Op> = first.into_iter().collect();
            while ops.len() < MAX_OPS_PER_COMMIT {
                match self.rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let shutdown = ops.iter().any(|o| matches!(o, Op::Shutdown));
            self.commit(ops);
            if shutdown {
                return;
            }
        }
    }

    fn finish_purge(mut self) {
        while self.purge_target.is_some() {
            self.commit(Vec::new());
        }
    }

    fn commit(&mut self, ops: Vec<Op>) {
        let mut done = Done {
            appended: Vec::new(),
            callbacks: Vec::new(),
            replies: Vec::new(),
        };
        let result = self.apply(ops, &mut done);
        self.counters
            .purging
            .store(self.purge_target.is_some(), Ordering::Release);
        let result = result.map_err(|e| e.to_string());
        if result.is_ok() {
            // The entries are in the database now: readers find them there.
            let mut pending = self.pending.write().unwrap_or_else(|e| e.into_inner());
            for (index, record) in &done.appended {
                if pending.get(index).is_some_and(|r| Arc::ptr_eq(r, record)) {
                    pending.remove(index);
                }
            }
        } else if let Err(e) = &result {
            tracing::error!(error = %e, "log store write failed");
        }
        for cb in done.callbacks {
            cb(result.clone());
        }
        for r in done.replies {
            let _ = r.send(result.clone());
        }
    }

    fn apply(&mut self, ops: Vec<Op>, done: &mut Done) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if self.durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| redb::Error::Corrupted(format!("setting durability: {e}")))?;
        let mut bytes_added: i64 = 0;
        let total;
        {
            let mut entries = txn.open_table(ENTRIES)?;
            let mut meta = txn.open_table(META)?;
            for op in ops {
                match op {
                    Op::Append {
                        entries: list,
                        done: cb,
                    } => {
                        for (index, record) in &list {
                            if let Some(old) = entries.insert(*index, record.as_slice())? {
                                bytes_added -= old.value().len() as i64;
                            }
                            bytes_added += record.len() as i64;
                        }
                        done.appended.extend(list);
                        done.callbacks.push(cb);
                    }
                    Op::Meta { key, record, reply } => {
                        meta.insert(key, record.as_slice())?;
                        done.replies.extend(reply);
                    }
                    Op::Truncate { index, reply } => {
                        let removed = entries.extract_from_if(index.., |_, _| true)?;
                        for item in removed {
                            let (_, v) = item?;
                            bytes_added -= v.value().len() as i64;
                        }
                        done.replies.push(reply);
                    }
                    Op::Purge {
                        index,
                        record,
                        reply,
                    } => {
                        meta.insert(KEY_PURGED, record.as_slice())?;
                        self.purge_target = Some(self.purge_target.map_or(index, |t| t.max(index)));
                        done.replies.push(reply);
                    }
                    Op::Shutdown => {}
                }
            }
            if let Some(target) = self.purge_target {
                let first = entries.first()?.map(|(k, _)| k.value());
                match first {
                    Some(first) if first <= target => {
                        let end = target.min(first.saturating_add(PURGE_BATCH - 1));
                        let removed = entries.extract_from_if(first..=end, |_, _| true)?;
                        for item in removed {
                            let (_, v) = item?;
                            bytes_added -= v.value().len() as i64;
                        }
                        if end >= target {
                            self.purge_target = None;
                        }
                    }
                    _ => self.purge_target = None,
                }
            }
            let before = self.counters.bytes.load(Ordering::Acquire);
            total = before.saturating_add_signed(bytes_added);
            if bytes_added != 0 {
                meta.insert(KEY_BYTES, format::encode(&Some(total)).as_slice())?;
            }
        }
        txn.commit()?;
        self.counters.bytes.store(total, Ordering::Release);
        Ok(())
    }
}
