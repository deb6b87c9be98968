//! Reading the log: the pending map first, then the index and the
//! segment files; openraft's `RaftLogReader`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::RaftLogReader;
use redb::{ReadableDatabase, ReadableTable};

use super::*;

impl LogStore {
    /// Reads every entry in the log once, checking each record (a node does
    /// this at start-up: damage found later would stop it while running).
    /// Returns how many entries it read.
    ///
    /// # Errors
    /// The first damaged record or failed read, naming the file.
    pub fn verify_entries(&self) -> Result<u64, LogStoreError> {
        let (first, last) = {
            let s = self.state();
            (
                s.purged.map_or(0, |p| p.index + 1),
                s.last.map_or(0, |l| l.index + 1),
            )
        };
        let mut read = 0;
        let mut at = first;
        while at < last {
            let end = (at + 4_096).min(last);
            read += self.read(at, end)?.len() as u64;
            at = end;
        }
        Ok(read)
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
            let record = segment::parse_entries(&raw)
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
}

pub(crate) fn decode_entry(path: &Path, index: u64, bytes: &[u8]) -> Result<Entry, LogStoreError> {
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
