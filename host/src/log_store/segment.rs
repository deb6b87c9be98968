//! Segment files: where entry payloads live.
//!
//! Entries are written to append-only, pre-allocated segment files, one
//! record per appended batch, and made durable with a single `fdatasync` per
//! group commit. redb keeps the index (batch first index -> segment, offset)
//! and the meta records. A record:
//!
//! ```text
//! magic u32 LE = "RLOG" | version u8 = 1 | kind u8 | reserved u16 = 0
//! | group_start u32 LE | payload_len u32 LE | crc32c u32 LE (of the 16 bytes above + payload)
//! | payload: first_index u64 LE | count u32 LE | body
//! kind 1 (plain):  body = section
//! kind 2 (lz4):    body = section_len u32 LE | lz4 block of section
//! section = count x (len u32 LE | entry, postcard)
//! kind 3 (meta):   first_index = the truncate point (else 0), count = 0,
//!                  body = tag u8 (1 vote, 2 purge point, 3 truncate,
//!                  4 segment start) | value
//! ```
//!
//! Meta records ([`Meta`]) carry what the index's meta table holds that the
//! log cannot do without: every saved vote, purge point and truncation is
//! written to the active segment in its group, and every segment (a new one
//! at each roll and each open) begins with a segment-start record, then the
//! current vote and purge point. (A store whose segments hold no
//! segment-start record was written by a build before meta records: its
//! votes are in the index only.)
//! Only whole segments older than the active one are ever deleted, so the
//! segments on disk always say the latest vote and purge point, and the
//! index can be rebuilt from them alone (`open::rebuild`).
//!
//! Batches whose section is at least [`COMPRESS_FROM`] bytes are compressed
//! when that saves at least an eighth; the checksum covers the bytes as
//! stored. `group_start` is the offset at which the record's group commit
//! began in this segment. Recovery uses it to tell a torn tail (damage inside
//! the last, never acknowledged group) from damage to acknowledged data (a
//! later group was written after it, so it had been synced).
//!
//! Sans I/O except for [`create`] and [`scan`], which work on whole files.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Bytes before the payload.
pub(crate) const HEADER: usize = 20;
const MAGIC: u32 = u32::from_le_bytes(*b"RLOG");
const VERSION: u8 = 1;
const KIND_PLAIN: u8 = 1;
const KIND_LZ4: u8 = 2;
const KIND_META: u8 = 3;
const TAG_VOTE: u8 = 1;
const TAG_PURGED: u8 = 2;
const TAG_TRUNCATE: u8 = 3;
const TAG_START: u8 = 4;
/// Bytes of the payload before the body.
const PAYLOAD_HEAD: usize = 12;
/// Sections this large or larger are worth compressing.
pub(crate) const COMPRESS_FROM: usize = 8 << 10;
/// Refuse to inflate a section beyond this (a hostile length field).
const MAX_SECTION: usize = 1 << 30;

/// A segment file's name for sequence number `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

/// The sequence number of a segment file name, if it is one.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where each entry lies in a section: `(start, end)`.
fn section_bounds(section: &[u8], count: usize) -> Result<Vec<(u32, u32)>, BadRecord> {
    let mut bounds = Vec::with_capacity(count.min(section.len() / 4));
    let mut at = 0usize;
    for _ in 0..count {
        let n = section
            .get(at..at + 4)
            .ok_or(BadRecord::Payload("entry length past the end"))?;
        let n = u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize;
        if at + 4 + n > section.len() {
            return Err(BadRecord::Payload("entry past the end"));
        }
        bounds.push(((at + 4) as u32, (at + 4 + n) as u32));
        at += 4 + n;
    }
    if at != section.len() || count == 0 {
        return Err(BadRecord::Payload("entry count does not match the length"));
    }
    Ok(bounds)
}

/// An appended batch, encoded once by the appending thread as a complete
/// record except for two header fields (`group_start` and the checksum) that
/// only the writer knows; [`put`] fills them in.
#[derive(Debug)]
pub(crate) struct Batch {
    record: Vec<u8>,
    /// The section, when the record holds it compressed.
    inflated: Option<Vec<u8>>,
    first_index: u64,
    /// Where each entry lies in the section.
    bounds: Vec<(u32, u32)>,
}

impl Batch {
    /// Encodes `entries` (postcard), the first one at `first_index`.
    ///
    /// # Panics
    /// If there are no entries, or if serializing one fails (ramrod's types
    /// never do).
    pub(crate) fn encode<'a, T: serde::Serialize + 'a>(
        first_index: u64,
        entries: impl ExactSizeIterator<Item = &'a T>,
    ) -> Batch {
        const BODY: usize = HEADER + PAYLOAD_HEAD;
        let count = entries.len();
        assert!(count > 0, "a batch holds at least one entry");
        let mut record = Vec::with_capacity(BODY + count * 64);
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&[VERSION, KIND_PLAIN, 0, 0]);
        record.extend_from_slice(&[0; 12]); // group_start, payload_len, crc
        record.extend_from_slice(&first_index.to_le_bytes());
        record.extend_from_slice(&(count as u32).to_le_bytes());
        let mut bounds = Vec::with_capacity(count);
        for e in entries {
            let len_at = record.len();
            record.extend_from_slice(&[0; 4]);
            record = postcard::to_extend(e, record).expect("postcard serializes ramrod's types");
            let n = (record.len() - len_at - 4) as u32;
            record[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
            bounds.push(((len_at + 4 - BODY) as u32, (record.len() - BODY) as u32));
        }
        let mut inflated = None;
        let section = &record[BODY..];
        if section.len() >= COMPRESS_FROM {
            let packed = lz4_flex::block::compress(section);
            if packed.len() + 4 <= section.len() - section.len() / 8 {
                let section = record.split_off(BODY);
                record[5] = KIND_LZ4;
                record.extend_from_slice(&(section.len() as u32).to_le_bytes());
                record.extend_from_slice(&packed);
                inflated = Some(section);
            }
        }
        let payload_len = (record.len() - HEADER) as u32;
        record[12..16].copy_from_slice(&payload_len.to_le_bytes());
        Batch {
            record,
            inflated,
            first_index,
            bounds,
        }
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    pub(crate) fn count(&self) -> usize {
        self.bounds.len()
    }

    /// The record's length in bytes, as stored.
    pub(crate) fn stored_len(&self) -> usize {
        self.record.len()
    }

    fn section(&self) -> &[u8] {
        match &self.inflated {
            Some(s) => s,
            None => &self.record[HEADER + PAYLOAD_HEAD..],
        }
    }

    /// The encoded entry at position `i`.
    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        let (a, b) = self.bounds[i];
        &self.section()[a as usize..b as usize]
    }

    /// Bytes of the encoded entries (uncompressed).
    pub(crate) fn entry_bytes(&self) -> u64 {
        self.bounds.iter().map(|&(a, b)| u64::from(b - a)).sum()
    }
}

/// Appends `batch` to the write buffer as a record of the group that began
/// at `group_start`.
pub(crate) fn put(buf: &mut Vec<u8>, batch: &Batch, group_start: u32) {
    let at = buf.len();
    buf.extend_from_slice(&batch.record);
    buf[at + 8..at + 12].copy_from_slice(&group_start.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[at..at + 16]), &buf[at + HEADER..]);
    buf[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
}

/// A meta record: a change to the log's state that is not an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Meta {
    /// A saved vote (the framed record the index's meta table holds).
    Vote(Vec<u8>),
    /// A purge point (the framed log id).
    Purged(Vec<u8>),
    /// Entries from this index on were removed.
    Truncate(u64),
    /// The first record of a segment: the state records follow.
    Start,
}

impl Meta {
    /// Its length as a record.
    pub(crate) fn stored_len(&self) -> usize {
        HEADER
            + PAYLOAD_HEAD
            + 1
            + match self {
                Meta::Vote(v) | Meta::Purged(v) => v.len(),
                Meta::Truncate(_) | Meta::Start => 0,
            }
    }
}

/// Appends `meta` to the write buffer as a record of the group that began
/// at `group_start`.
pub(crate) fn put_meta(buf: &mut Vec<u8>, meta: &Meta, group_start: u32) {
    let at = buf.len();
    let (first, tag, value): (u64, u8, &[u8]) = match meta {
        Meta::Vote(v) => (0, TAG_VOTE, v),
        Meta::Purged(v) => (0, TAG_PURGED, v),
        Meta::Truncate(i) => (*i, TAG_TRUNCATE, &[]),
        Meta::Start => (0, TAG_START, &[]),
    };
    let payload_len = (PAYLOAD_HEAD + 1 + value.len()) as u32;
    buf.extend_from_slice(&MAGIC.to_le_bytes());
    buf.extend_from_slice(&[VERSION, KIND_META, 0, 0]);
    buf.extend_from_slice(&group_start.to_le_bytes());
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // crc
    buf.extend_from_slice(&first.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.push(tag);
    buf.extend_from_slice(value);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[at..at + 16]), &buf[at + HEADER..]);
    buf[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
}

/// What is wrong with the bytes at a record position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRecord {
    /// All zeros: nothing was ever written here.
    #[error("no record (zeros)")]
    Empty,
    /// Shorter than the header or than its declared length.
    #[error("record cut short")]
    Short,
    /// Not a record header.
    #[error("bad record header")]
    Header,
    /// A version or kind this build does not know.
    #[error("unknown record version {0} or kind {1}")]
    Unknown(u8, u8),
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload is inconsistent with itself.
    #[error("malformed payload: {0}")]
    Payload(&'static str),
}

/// A checked record: a batch of entries, or (`meta`) a [`Meta`] record
/// with no entries.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub(crate) group_start: u32,
    pub(crate) first_index: u64,
    /// Total length of the record as stored (header included).
    pub(crate) len: usize,
    section: Cow<'a, [u8]>,
    bounds: Vec<(u32, u32)>,
    pub(crate) meta: Option<Meta>,
}

impl Record<'_> {
    pub(crate) fn count(&self) -> usize {
        self.bounds.len()
    }

    /// The encoded entry at position `i`.
    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        let (a, b) = self.bounds[i];
        &self.section[a as usize..b as usize]
    }

    /// Bytes of the encoded entries at positions `range`.
    pub(crate) fn entry_bytes(&self, range: std::ops::Range<usize>) -> u64 {
        self.bounds[range]
            .iter()
            .map(|&(a, b)| u64::from(b - a))
            .sum()
    }
}

/// Checks and parses the record at the start of `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Result<Record<'_>, BadRecord> {
    if bytes.len() < HEADER {
        return Err(if bytes.iter().all(|&b| b == 0) {
            BadRecord::Empty
        } else {
            BadRecord::Short
        });
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    if u32_at(0) != MAGIC {
        return Err(if bytes[..HEADER].iter().all(|&b| b == 0) {
            BadRecord::Empty
        } else {
            BadRecord::Header
        });
    }
    if bytes[4] != VERSION || !matches!(bytes[5], KIND_PLAIN | KIND_LZ4 | KIND_META) {
        return Err(BadRecord::Unknown(bytes[4], bytes[5]));
    }
    let group_start = u32_at(8);
    let payload_len = u32_at(12) as usize;
    let len = HEADER + payload_len;
    if bytes.len() < len {
        return Err(BadRecord::Short);
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..16]), &bytes[HEADER..len]);
    if crc != u32_at(16) {
        return Err(BadRecord::Checksum);
    }
    let payload = &bytes[HEADER..len];
    if payload.len() < PAYLOAD_HEAD {
        return Err(BadRecord::Payload("shorter than its head"));
    }
    let first_index = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(payload[8..12].try_into().expect("4 bytes")) as usize;
    let body = &payload[PAYLOAD_HEAD..];
    if bytes[5] == KIND_META {
        let meta = match (body.first(), &body[body.len().min(1)..], count) {
            (Some(&TAG_VOTE), v, 0) if !v.is_empty() && first_index == 0 => Meta::Vote(v.to_vec()),
            (Some(&TAG_PURGED), v, 0) if !v.is_empty() && first_index == 0 => {
                Meta::Purged(v.to_vec())
            }
            (Some(&TAG_TRUNCATE), [], 0) => Meta::Truncate(first_index),
            (Some(&TAG_START), [], 0) if first_index == 0 => Meta::Start,
            _ => return Err(BadRecord::Payload("malformed meta record")),
        };
        return Ok(Record {
            group_start,
            first_index,
            len,
            section: Cow::Borrowed(&[]),
            bounds: Vec::new(),
            meta: Some(meta),
        });
    }
    let section = if bytes[5] == KIND_LZ4 {
        let raw_len = body
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(BadRecord::Payload("no section length"))?;
        // lz4 inflates at most 255 to 1: a larger claim is a lie, and
        // would be allocated before the inflating fails.
        if raw_len > MAX_SECTION || raw_len > (body.len() - 4).saturating_mul(255) + 16 {
            return Err(BadRecord::Payload("section length out of range"));
        }
        let raw = lz4_flex::block::decompress(&body[4..], raw_len)
            .map_err(|_| BadRecord::Payload("compressed section does not inflate"))?;
        if raw.len() != raw_len {
            return Err(BadRecord::Payload("section length does not match"));
        }
        Cow::Owned(raw)
    } else {
        Cow::Borrowed(body)
    };
    let bounds = section_bounds(&section, count)?;
    Ok(Record {
        group_start,
        first_index,
        len,
        section,
        bounds,
        meta: None,
    })
}

/// Makes the checksum of the record at the start of `buf` right, if its
/// declared length fits (fuzzing: so that the payload parsers are reached).
pub(crate) fn fix_checksum(buf: &mut [u8]) {
    if buf.len() < HEADER {
        return;
    }
    let len = HEADER + u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
    if len <= buf.len() {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[..16]), &buf[HEADER..len]);
        buf[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

/// [`parse`] for a position the index points at: a batch of entries.
pub(crate) fn parse_entries(bytes: &[u8]) -> Result<Record<'_>, BadRecord> {
    let r = parse(bytes)?;
    if r.meta.is_some() {
        return Err(BadRecord::Payload("a meta record where entries should be"));
    }
    Ok(r)
}

/// Creates segment `seq` in `dir`, pre-allocated to `size` bytes, and makes
/// its existence durable (file and directory synced).
pub(crate) fn create(dir: &Path, seq: u64, size: u64) -> io::Result<File> {
    let path = dir.join(file_name(seq));
    crate::failpoint::check("log.segment-create", &path)?;
    crate::powerloss::check(&path)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    crate::platform::allocate(&file, size)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

/// Grows a segment to `size` bytes (pre-allocated) and syncs its length.
pub(crate) fn grow(file: &File, size: u64) -> io::Result<()> {
    crate::platform::allocate(file, size)?;
    file.sync_all()
}

/// Makes the entries of `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Where scanning a segment stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Zeros or the end of the file: everything written was read.
    Clean(u64),
    /// Damage at this offset, and no later group: a torn, never acknowledged
    /// tail. Nothing after it is used.
    Torn(u64, BadRecord),
    /// Damage at this offset with a later group after it: acknowledged data
    /// is damaged.
    Damaged(u64, BadRecord),
}

/// Reads segment file `path` from `from` and calls `each(offset, record)` for
/// every valid record up to where it stops.
pub(crate) fn scan(
    path: &Path,
    from: u64,
    mut each: impl FnMut(u64, &Record<'_>) -> Result<(), String>,
) -> Result<ScanEnd, ScanError> {
    let bytes = std::fs::read(path).map_err(|e| ScanError::Io(path.to_path_buf(), e))?;
    let mut at = from as usize;
    while at < bytes.len() {
        match parse(&bytes[at..]) {
            Ok(r) => {
                each(at as u64, &r)
                    .map_err(|e| ScanError::Bad(path.to_path_buf(), at as u64, e))?;
                at += r.len;
            }
            // The usual end: nothing but zeros up to the end of the file.
            Err(BadRecord::Empty) if all_zero(&bytes[at..]) => {
                return Ok(ScanEnd::Clean(at as u64));
            }
            Err(bad) => {
                // Any valid record of a group that began after this point
                // proves the group here had been synced: zeros or garbage
                // here then mean damaged acknowledged data.
                let later = (at + 1..bytes.len().saturating_sub(HEADER))
                    .filter(|&o| bytes[o..o + 4] == MAGIC.to_le_bytes())
                    .filter_map(|o| parse(&bytes[o..]).ok().map(|r| (o, r.group_start)))
                    .any(|(o, g)| (g as usize) > at && (g as usize) <= o);
                return Ok(match (bad, later) {
                    (bad, true) => ScanEnd::Damaged(at as u64, bad),
                    (BadRecord::Empty, false) => ScanEnd::Clean(at as u64),
                    (bad, false) => ScanEnd::Torn(at as u64, bad),
                });
            }
        }
    }
    Ok(ScanEnd::Clean(at as u64))
}

/// Whether `b` holds only zeros (word by word: this runs over the unused
/// tail of every segment recovery scans).
fn all_zero(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(16);
    words.all(|w| u128::from_le_bytes(w.try_into().expect("16 bytes")) == 0)
        && words.remainder().iter().all(|&x| x == 0)
}

/// Scanning a segment failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("reading {path}: {error}", path = .0.display(), error = .1)]
    Io(PathBuf, io::Error),
    #[error("{path} at offset {at}: {what}", path = .0.display(), at = .1, what = .2)]
    Bad(PathBuf, u64, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(group_start: u32, first: u64, n: usize) -> Vec<u8> {
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 10 + i]).collect();
        let batch = Batch::encode(first, payloads.iter());
        assert_eq!(batch.count(), n);
        assert_eq!(
            batch.entry(n - 1),
            postcard::to_allocvec(&payloads[n - 1]).unwrap()
        );
        let mut buf = Vec::new();
        put(&mut buf, &batch, group_start);
        buf
    }

    fn round_trip(n: usize, size: usize) -> Vec<u8> {
        let payloads: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 7) as u8; size]).collect();
        let batch = Batch::encode(7, payloads.iter());
        let mut buf = Vec::new();
        put(&mut buf, &batch, 0);
        let r = parse(&buf).unwrap();
        assert_eq!((r.first_index, r.count(), r.len), (7, n, buf.len()));
        for (i, p) in payloads.iter().enumerate() {
            let want = postcard::to_allocvec(p).unwrap();
            assert_eq!(r.entry(i), want.as_slice());
            assert_eq!(batch.entry(i), want.as_slice());
        }
        assert_eq!(r.entry_bytes(0..n), batch.entry_bytes());
        buf
    }

    #[test]
    fn round_trip_and_every_damage_is_caught() {
        let plain = round_trip(3, 12);
        assert_eq!(plain[5], KIND_PLAIN);
        let packed = round_trip(200, 100);
        assert_eq!(
            packed[5], KIND_LZ4,
            "a large repetitive batch is compressed"
        );
        assert!(packed.len() < 200 * 100 / 4);
        for buf in [plain, packed] {
            for i in 0..buf.len() {
                let mut bad = buf.clone();
                bad[i] ^= 0x01;
                assert!(parse(&bad).is_err(), "flip at {i} not caught");
            }
            for n in 0..buf.len() {
                assert!(parse(&buf[..n]).is_err(), "cut at {n} not caught");
            }
        }
        assert_eq!(parse(&[0; 64]).unwrap_err(), BadRecord::Empty);
    }

    #[test]
    fn meta_records_round_trip_and_damage_is_caught() {
        for meta in [
            Meta::Vote(vec![1, 2, 3]),
            Meta::Purged(vec![9; 40]),
            Meta::Truncate(77),
            Meta::Start,
        ] {
            let mut buf = Vec::new();
            put_meta(&mut buf, &meta, 5);
            assert_eq!(buf.len(), meta.stored_len());
            let r = parse(&buf).unwrap();
            assert_eq!(
                (r.meta.as_ref(), r.count(), r.group_start),
                (Some(&meta), 0, 5)
            );
            assert!(parse_entries(&buf).is_err());
            for i in 0..buf.len() {
                let mut bad = buf.clone();
                bad[i] ^= 0x01;
                assert!(
                    parse(&bad).map_or(true, |r| r.meta.as_ref() != Some(&meta)),
                    "flip at {i} not caught"
                );
            }
        }
        // A vote with no value: malformed even with a good checksum.
        let mut buf = Vec::new();
        put_meta(&mut buf, &Meta::Vote(Vec::new()), 0);
        assert_eq!(
            parse(&buf).unwrap_err(),
            BadRecord::Payload("malformed meta record")
        );
    }

    #[test]
    fn names() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("0000000000000000004x.seg"), None);
    }

    #[test]
    fn scan_tells_a_torn_tail_from_damaged_acknowledged_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(1));
        // Group A (two records) then group B (one record).
        let mut bytes = record(0, 1, 2);
        let b_start = {
            let r2 = record(0, 3, 2);
            bytes.extend_from_slice(&r2);
            bytes.len()
        };
        bytes.extend_from_slice(&record(b_start as u32, 5, 2));
        let end = bytes.len();
        bytes.extend_from_slice(&[0; 100]);
        std::fs::write(&path, &bytes).unwrap();
        let mut seen = Vec::new();
        let got = scan(&path, 0, |_, r| {
            seen.push(r.first_index);
            Ok(())
        })
        .unwrap();
        assert_eq!((got, seen), (ScanEnd::Clean(end as u64), vec![1, 3, 5]));

        // Damage in group B, the last one: a torn tail.
        let mut torn = bytes.clone();
        torn[b_start + 30] ^= 1;
        std::fs::write(&path, &torn).unwrap();
        let got = scan(&path, 0, |_, _| Ok(())).unwrap();
        assert!(
            matches!(got, ScanEnd::Torn(o, _) if o == b_start as u64),
            "{got:?}"
        );

        // Group A's second record zeroed (a lost write), group B after it:
        // damaged, not a clean end.
        let mut zeroed = bytes.clone();
        let a2 = record(0, 1, 2).len();
        zeroed[a2..a2 + HEADER].fill(0);
        std::fs::write(&path, &zeroed).unwrap();
        let got = scan(&path, 0, |_, _| Ok(())).unwrap();
        assert!(
            matches!(got, ScanEnd::Damaged(o, BadRecord::Empty) if o == a2 as u64),
            "{got:?}"
        );

        // Damage in group A's second record, with group B after it: damaged.
        let mut damaged = bytes.clone();
        damaged[b_start - 5] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let got = scan(&path, 0, |_, _| Ok(())).unwrap();
        assert!(
            matches!(got, ScanEnd::Damaged(_, BadRecord::Checksum)),
            "{got:?}"
        );
    }
}
