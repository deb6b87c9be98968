//! Opening a log store: claiming the database, and recovering what was
//! written after the last durable index commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle};

use super::*;

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
    /// A damaged index (`raft-log.redb`) is rebuilt from the segments, which
    /// carry every entry, vote and purge point: the damaged file is moved
    /// aside (`raft-log.redb.damaged-UNIX_MS`), the rebuild is logged as an
    /// error, and [`index_rebuild`](Self::index_rebuild) says it happened.
    pub fn open_with(dir: &Path, options: LogOptions) -> Result<Self, LogStoreError> {
        let first = Self::open_caught(dir, options);
        let why = match &first {
            Err(e) => match index_damage(e) {
                Some(why) => why,
                None => return first,
            },
            Ok(_) => return first,
        };
        let seg_dir = dir.join(SEGMENT_DIR);
        if !segments_hold_records(&seg_dir) {
            // Nothing to rebuild from (and perhaps not ours at all).
            return first;
        }
        drop(first);
        let path = dir.join(LOG_FILE);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let aside = dir.join(format!("{LOG_FILE}.damaged-{at}"));
        tracing::error!(
            index = %path.display(),
            moved_to = %aside.display(),
            reason = %why,
            "the log index is damaged: rebuilding it from the segments"
        );
        std::fs::rename(&path, &aside)
            .and_then(|()| segment::sync_dir(dir))
            .map_err(|source| LogStoreError::Unreadable {
                path: path.clone(),
                source,
            })?;
        rebuild(&path, &seg_dir)?;
        let store = Self::open_caught(dir, options)?;
        let rebuilt = IndexRebuild {
            damaged: aside,
            reason: why,
        };
        tracing::warn!(
            moved_to = %rebuilt.damaged.display(),
            "the log index was rebuilt from the segments"
        );
        *store
            .shared
            .rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(rebuilt);
        Ok(store)
    }

    fn open_caught(dir: &Path, options: LogOptions) -> Result<Self, LogStoreError> {
        // redb can panic on some damage (a flipped byte in a table's name):
        // a damaged index is an error to report, not a crash.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::open_inner(dir, options)
        }))
        .unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(LogStoreError::Open {
                path: dir.join(LOG_FILE),
                reason: format!("the index is damaged (reading it failed: {msg})"),
            })
        })
    }

    fn open_inner(dir: &Path, options: LogOptions) -> Result<Self, LogStoreError> {
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
        let existed = path.exists();
        let db = create_db(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => LogStoreError::InUse(path.clone()),
            // redb says "not a redb database" as invalid data: damage.
            redb::DatabaseError::Storage(redb::StorageError::Io(source))
                if source.kind() != std::io::ErrorKind::InvalidData =>
            {
                LogStoreError::Unreadable {
                    path: path.clone(),
                    source,
                }
            }
            e => LogStoreError::Open {
                path: path.clone(),
                reason: e.to_string(),
            },
        })?;
        let db = Arc::new(db);
        let dbe = db_err(&path);
        claim(&db, &path)?;
        if !existed && segments_hold_records(&seg_dir) {
            return Err(LogStoreError::Open {
                path: path.clone(),
                reason: "the index file is missing, but the segments hold records".into(),
            });
        }

        // Load the state.
        let counters = Arc::new(Counters::new());
        let mut state = State::default();
        let (vote_record, purged_record);
        let (checkpoint, bytes, mut segments) = {
            let txn = db.begin_read().map_err(|e| dbe(e.into()))?;
            let meta = txn.open_table(META).map_err(|e| dbe(e.into()))?;
            let load = |key: &str| -> Result<Option<Vec<u8>>, LogStoreError> {
                Ok(meta
                    .get(key)
                    .map_err(|e| dbe(e.into()))?
                    .map(|v| v.value().to_vec()))
            };
            vote_record = load(KEY_VOTE)?;
            purged_record = load(KEY_PURGED)?;
            state.vote = decode_meta(&path, KEY_VOTE, vote_record.clone())?;
            state.committed = decode_meta(&path, KEY_COMMITTED, load(KEY_COMMITTED)?)?;
            state.purged = decode_meta(&path, KEY_PURGED, purged_record.clone())?;
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
        for seq in &recovered.empty {
            segments.remove(seq);
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
        let mut w = Writer {
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
            vote: vote_record,
            purged: purged_record,
        };
        // The new segment starts with the state, as every segment does;
        // then the segments without entries are redundant.
        w.start_segment().map_err(|source| LogStoreError::Write {
            path: path.clone(),
            source: Arc::new(source),
        })?;
        for &seq in &recovered.empty {
            let _ = std::fs::remove_file(files.path(seq));
        }
        let handle = std::thread::Builder::new()
            .name("ramrod-log-writer".into())
            .spawn(move || w.run())
            .map_err(|source| LogStoreError::Write {
                path: path.clone(),
                source: Arc::new(WriteError::Io {
                    path: path.clone(),
                    op: "starting the writer thread for",
                    source,
                }),
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
                rebuilt: Mutex::new(None),
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
            Some(m) if m == FORMAT_MARKER => {
                // Every store has its three tables from its first claim: a
                // missing one, or one of another name (a damaged name),
                // would otherwise be opened empty.
                let have: Vec<String> = txn
                    .list_tables()
                    .map_err(|e| dbe(e.into()))?
                    .map(|t| t.name().to_string())
                    .collect();
                let missing: Vec<&str> = ours
                    .iter()
                    .copied()
                    .filter(|n| !have.iter().any(|h| h == n))
                    .collect();
                if !missing.is_empty() || !foreign.is_empty() {
                    return Err(LogStoreError::Open {
                        path: path.to_path_buf(),
                        reason: format!(
                            "the index is damaged: tables missing {missing:?}, unknown {foreign:?}"
                        ),
                    });
                }
            }
            Some(m) if m == FORMAT_V1 => {
                return Err(LogStoreError::OldFormat {
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
    /// Segment files without entries or truncations, to delete once the new
    /// segment holds the state.
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
        .map_err(|e| dbe(e.into()))?;
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
            // Whether the segment holds entries or a truncation: one with
            // only state records is superseded by the new segment's.
            let mut substantive = false;
            let read = |s: u64, o: u64, l: u32| {
                files
                    .read_at(s, o, l)
                    .map_err(WriteError::io("reading", files.path(s)))
            };
            let end = segment::scan(&seg_path, from, |offset, rec| {
                if let Some(meta) = &rec.meta {
                    substantive |= matches!(meta, segment::Meta::Truncate(_));
                    segments.entry(seq).or_insert(NONE);
                    // A truncation the index may not have recorded (its
                    // commit did not finish): what openraft asked for.
                    if let segment::Meta::Truncate(index) = *meta
                        && last.is_some_and(|l| index <= l)
                    {
                        let removed = index::remove_from(&mut table, index, &read)
                            .map_err(|e| e.to_string())?;
                        bytes = bytes.saturating_sub(removed);
                        last = table
                            .last()
                            .map_err(|e| e.to_string())?
                            .map(|(k, v)| v.value().last(k.value()));
                    }
                    return Ok(());
                }
                substantive = true;
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
                    let removed =
                        index::remove_from(&mut table, first, &read).map_err(|e| e.to_string())?;
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
            if !substantive && from == 0 {
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

/// Why `e` means the index file is damaged (rather than in use, unreadable,
/// of another format, or not a ramrod store beside no segments), if it does.
fn index_damage(e: &LogStoreError) -> Option<String> {
    match e {
        LogStoreError::Open { reason, .. } => Some(reason.clone()),
        LogStoreError::Corrupt { what, source, .. } => Some(format!("{what}: {source}")),
        LogStoreError::Db {
            source: redb::Error::Corrupted(why),
            ..
        } => Some(why.clone()),
        // Damage to a table name reads as a table of someone else's; the
        // segments beside it say whose the file is.
        LogStoreError::Foreign { reason, .. } => Some(format!("not readable as ours: {reason}")),
        _ => None,
    }
}

/// Whether the segment directory holds a segment that begins with a valid
/// record (a store with something to rebuild from).
fn segments_hold_records(seg_dir: &Path) -> bool {
    list_segments(seg_dir).is_ok_and(|seqs| {
        seqs.iter().any(|&seq| {
            std::fs::read(seg_dir.join(segment::file_name(seq)))
                .is_ok_and(|b| segment::parse(&b).is_ok())
        })
    })
}

/// The sequence numbers of the segment files in `seg_dir`, in order.
fn list_segments(seg_dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(seg_dir)? {
        if let Some(seq) = segment::parse_name(&entry?.file_name().to_string_lossy()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Makes a new index at `path` from the segments in `seg_dir`: the latest
/// vote and purge point their meta records carry go into its meta table;
/// the entries are indexed by the recovery of the open that follows (a
/// scan of every segment from the start, as after a crash).
///
/// # Errors
/// If a segment is damaged before its end (not a torn tail), or the
/// segments were written before they carried votes.
fn rebuild(path: &Path, seg_dir: &Path) -> Result<(), LogStoreError> {
    let seg_err = |p: PathBuf, what: String| LogStoreError::Segment { path: p, what };
    let seqs = list_segments(seg_dir)
        .map_err(|e| seg_err(seg_dir.to_path_buf(), format!("listing: {e}")))?;
    let (mut vote, mut purged, mut entries, mut started) = (None, None, false, false);
    for &seq in &seqs {
        let seg_path = seg_dir.join(segment::file_name(seq));
        let end = segment::scan(&seg_path, 0, |_, rec| {
            match &rec.meta {
                Some(segment::Meta::Vote(v)) => vote = Some(v.clone()),
                Some(segment::Meta::Purged(p)) => purged = Some(p.clone()),
                Some(segment::Meta::Truncate(_)) => {}
                Some(segment::Meta::Start) => started = true,
                None => entries = true,
            }
            Ok(())
        })
        .map_err(|e| match e {
            segment::ScanError::Io(p, e) => seg_err(p, format!("reading: {e}")),
            segment::ScanError::Bad(p, at, what) => seg_err(p, format!("at offset {at}: {what}")),
        })?;
        match end {
            segment::ScanEnd::Clean(_) => {}
            // A torn tail: what follows was never acknowledged (recovery
            // checks that no later segment holds records).
            segment::ScanEnd::Torn(..) => break,
            segment::ScanEnd::Damaged(at, bad) => {
                return Err(seg_err(
                    seg_path,
                    format!(
                        "acknowledged data is damaged at offset {at} ({bad}): the index cannot \
                         be rebuilt from the segments"
                    ),
                ));
            }
        }
    }
    if entries && !started {
        return Err(seg_err(
            seg_dir.to_path_buf(),
            "the segments were written by a build before they carried the vote: the index \
             cannot be rebuilt safely (recover the node from the cluster)"
                .into(),
        ));
    }
    // The records must decode, or the open after this fails on them.
    decode_meta::<Vote>(path, KEY_VOTE, vote.clone())?;
    decode_meta::<LogId>(path, KEY_PURGED, purged.clone())?;
    let db = Database::create(path).map_err(|e| LogStoreError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    claim(&db, path)?;
    let dbe = db_err(path);
    let mut txn = db.begin_write().map_err(|e| dbe(e.into()))?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(|e| dbe(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| dbe(e.into()))?;
        for (key, value) in [(KEY_VOTE, &vote), (KEY_PURGED, &purged)] {
            if let Some(v) = value {
                meta.insert(key, v.as_slice()).map_err(|e| dbe(e.into()))?;
            }
        }
    }
    txn.commit().map_err(|e| dbe(e.into()))
}

/// Opens (or creates) the index file; under a simulated power cut
/// (`crate::powerloss`, tests only) through its storage backend.
fn create_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    #[cfg(feature = "failpoints")]
    if let Some(sim) = crate::powerloss::sim_for(path) {
        let backend = crate::powerloss::Backend::open(path, sim)
            .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?;
        return Database::builder().create_with_backend(backend);
    }
    Database::create(path)
}
