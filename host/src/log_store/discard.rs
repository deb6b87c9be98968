//! Giving up a log store that cannot be trusted: what can still be read of
//! it ([`salvage`]: the vote above all, which a node must never lose), and
//! moving it aside ([`discard`]) so that a fresh one can take its place and
//! the node can recover from its cluster.

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable};

use super::format::{self, INDEX, KEY_COMMITTED, KEY_VOTE, META};
use super::segment::{self, Meta};
use super::{LOG_FILE, LogStoreError, SEGMENT_DIR};
use crate::raft::{LogId, Vote};

/// Where discarded log stores go: `DATA_DIR/discarded-UNIX_MS/`.
pub const DISCARDED_PREFIX: &str = "discarded-";

/// What could be read of a damaged log store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    /// The newest vote found in the index or the segments.
    pub vote: Option<Vote>,
    /// The committed log id the index held.
    pub committed: Option<LogId>,
    /// The highest entry index found (what the node may have acknowledged).
    pub last_index: Option<u64>,
}

fn newer(a: Option<Vote>, b: Option<Vote>) -> Option<Vote> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Reads what it can of the log store in `dir`, never failing: the index's
/// meta table and last row if redb can read them, then every segment's
/// meta records and entry indexes up to any damage.
pub fn salvage(dir: &Path) -> Salvage {
    let mut found = Salvage::default();
    let path = dir.join(LOG_FILE);
    if path.exists() {
        let read = std::panic::catch_unwind(|| {
            let db = redb::Database::open(&path).ok()?;
            let txn = db.begin_read().ok()?;
            let meta = txn.open_table(META).ok()?;
            let get = |k: &str| meta.get(k).ok().flatten().map(|v| v.value().to_vec());
            let vote = get(KEY_VOTE)
                .and_then(|b| format::decode::<Option<Vote>>(&b).ok())
                .flatten();
            let committed = get(KEY_COMMITTED)
                .and_then(|b| format::decode::<Option<LogId>>(&b).ok())
                .flatten();
            let last = txn.open_table(INDEX).ok().and_then(|t| {
                t.last()
                    .ok()
                    .flatten()
                    .map(|(k, v)| v.value().last(k.value()))
            });
            Some((vote, committed, last))
        });
        if let Ok(Some((vote, committed, last))) = read {
            found.vote = vote;
            found.committed = committed;
            found.last_index = last;
        }
    }
    let seg_dir = dir.join(SEGMENT_DIR);
    let mut seqs: Vec<u64> = std::fs::read_dir(&seg_dir)
        .map(|it| {
            it.filter_map(|e| segment::parse_name(&e.ok()?.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    seqs.sort_unstable();
    for seq in seqs {
        let _ = segment::scan(&seg_dir.join(segment::file_name(seq)), 0, |_, rec| {
            match &rec.meta {
                Some(Meta::Vote(v)) => {
                    let v = format::decode::<Option<Vote>>(v).ok().flatten();
                    found.vote = newer(found.vote, v);
                }
                Some(_) => {}
                None => {
                    let last = rec.first_index + rec.count() as u64 - 1;
                    found.last_index = Some(found.last_index.map_or(last, |l| l.max(last)));
                }
            }
            Ok(())
        });
    }
    found
}

/// A log store moved aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discarded {
    /// Where it went.
    pub moved_to: PathBuf,
    /// What could be read of it first.
    pub salvage: Salvage,
}

/// Salvages the log store in `dir`, then moves it (the segment directory,
/// the index and any damaged index kept beside it) into
/// `dir/discarded-UNIX_MS/`. The store must not be open.
///
/// # Errors
/// If the files cannot be moved.
pub fn discard(dir: &Path) -> Result<Discarded, LogStoreError> {
    let salvage = salvage(dir);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let to = dir.join(format!("{DISCARDED_PREFIX}{at}"));
    let moving = |e: std::io::Error| LogStoreError::Segment {
        path: dir.join(SEGMENT_DIR),
        what: format!("moving the damaged log store into {}: {e}", to.display()),
    };
    std::fs::create_dir(&to).map_err(moving)?;
    for entry in std::fs::read_dir(dir).map_err(moving)? {
        let name = entry.map_err(moving)?.file_name();
        let n = name.to_string_lossy();
        if n == SEGMENT_DIR || n == LOG_FILE || n.starts_with(&format!("{LOG_FILE}.damaged-")) {
            std::fs::rename(dir.join(&name), to.join(&name)).map_err(moving)?;
        }
    }
    segment::sync_dir(dir).map_err(moving)?;
    Ok(Discarded {
        moved_to: to,
        salvage,
    })
}

/// How many log stores were discarded in `dir` (recoveries from the
/// cluster, or by hand).
pub fn discards(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |it| {
        it.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(DISCARDED_PREFIX)
            })
            .count()
    })
}
