//! The batch index in redb and the segment files it points into, shared by
//! the writer thread, recovery and readers.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{ReadableTable, Table};

use super::WriteError;
use super::format::Row;
use super::segment;

/// Read handles on segment files, opened on first use.
#[derive(Debug)]
pub(crate) struct Files {
    dir: PathBuf,
    open: Mutex<HashMap<u64, Arc<File>>>,
}

impl Files {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Files {
            dir,
            open: Mutex::default(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment::file_name(seq))
    }

    /// Reads `len` bytes at `offset` of segment `seq`.
    pub(crate) fn read_at(&self, seq: u64, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let file = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            match open.get(&seq) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(File::open(self.path(seq))?);
                    open.insert(seq, f.clone());
                    f
                }
            }
        };
        let mut buf = vec![0; len as usize];
        read_exact_at(&file, &mut buf, offset)?;
        Ok(buf)
    }

    /// Forgets the handle of a deleted segment.
    pub(crate) fn evict(&self, seq: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&seq);
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Reads the bytes of a record: `(segment, offset, len)`.
pub(crate) type ReadRecord<'a> = dyn Fn(u64, u64, u32) -> Result<Vec<u8>, WriteError> + 'a;

/// Removes every indexed entry at or after `index` (keeping the head of a
/// batch that straddles it) and returns the entry bytes removed.
pub(crate) fn remove_from(
    table: &mut Table<'_, u64, Row>,
    index: u64,
    read: &ReadRecord<'_>,
) -> Result<u64, WriteError> {
    let db = |e: redb::StorageError| WriteError::db("truncating the index")(e.into());
    let mut removed = 0u64;
    for item in table.extract_from_if(index.., |_, _| true).map_err(db)? {
        let (_, v) = item.map_err(db)?;
        removed += u64::from(v.value().bytes);
    }
    let straddling = table
        .range(..index)
        .map_err(db)?
        .next_back()
        .transpose()
        .map_err(db)?
        .map(|(k, v)| (k.value(), v.value()));
    if let Some((key, row)) = straddling
        && row.last(key) >= index
    {
        let keep = (index - key) as u32;
        let kept = entry_bytes(&row, row.skip, keep, read)?;
        removed += u64::from(row.bytes) - kept;
        let row = Row {
            count: keep,
            bytes: kept as u32,
            ..row
        };
        table.insert(key, row).map_err(db)?;
    }
    Ok(removed)
}

/// Drops the head of the row at `key` so that it starts at `new_key`, and
/// returns the entry bytes dropped.
pub(crate) fn trim_head(
    table: &mut Table<'_, u64, Row>,
    key: u64,
    row: Row,
    new_key: u64,
    read: &ReadRecord<'_>,
) -> Result<u64, WriteError> {
    let db = |e: redb::StorageError| WriteError::db("trimming the index")(e.into());
    let drop = (new_key - key) as u32;
    let gone = entry_bytes(&row, row.skip, drop, read)?;
    table.remove(key).map_err(db)?;
    let row = Row {
        skip: row.skip + drop,
        count: row.count - drop,
        bytes: row.bytes - gone as u32,
        ..row
    };
    table.insert(new_key, row).map_err(db)?;
    Ok(gone)
}

/// Bytes of the entry records `from..from + n` of a row's record.
fn entry_bytes(row: &Row, from: u32, n: u32, read: &ReadRecord<'_>) -> Result<u64, WriteError> {
    let bad = |reason: String| WriteError::Record {
        segment: row.segment,
        offset: row.offset,
        reason,
    };
    let raw = read(row.segment, row.offset, row.len)?;
    let record = segment::parse_entries(&raw).map_err(|e| bad(e.to_string()))?;
    let (from, n) = (from as usize, n as usize);
    if record.count() < from + n {
        return Err(bad(format!(
            "{} entries, the index expects at least {}",
            record.count(),
            from + n
        )));
    }
    Ok(record.entry_bytes(from..from + n))
}
