//! Snapshot segments: sorted key-value records, cut into checksummed,
//! compressed blocks, the whole segment named by its blake3 hash.
//!
//! ```text
//! header (24 bytes): magic u32 LE = "RSEG" | version u8 = 2 | reserved [u8; 3] = 0
//!                    | block_count u32 LE | record_count u64 LE | crc32c u32 LE (of the 20 bytes before)
//! block:             raw_len u32 LE | stored_len u32 LE | codec u8 (0 = none, 1 = lz4)
//!                    | crc32c u32 LE (of the stored bytes) | stored bytes
//! record (raw):      tag u8 (1 = put, 2 = tombstone) | key_len u32 LE | key
//!                    | put only: value_len u32 LE | value
//! ```
//!
//! A client key's value is its record: its revisions (create, mod, version;
//! u64 LE each), then the value (`state_machine::model`). Format 1 (before
//! revisions) is refused by name.
//!
//! Keys are strictly increasing within a segment. The name is the lowercase
//! hex blake3 of all the segment's bytes, so writing is idempotent and a
//! segment is verified before anything in it is used.
//!
//! Sans I/O: builders and parsers over bytes.

use bytes::Bytes;

const MAGIC: u32 = u32::from_le_bytes(*b"RSEG");
const VERSION: u8 = 2;
const HEADER: usize = 24;
const BLOCK_HEAD: usize = 13;
const CODEC_NONE: u8 = 0;
const CODEC_LZ4: u8 = 1;
const TAG_PUT: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;
/// Refuse to inflate a block beyond this (a hostile length field).
const MAX_BLOCK: usize = 64 << 20;

/// Why a segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The bytes do not hash to the segment's name.
    #[error("content hash {actual} does not match the name")]
    Hash {
        /// The hash of the bytes read.
        actual: String,
    },
    /// Shorter than its structure says.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// Not a segment, or a version this build does not read.
    #[error("{0}")]
    Format(String),
    /// A block's checksum does not match.
    #[error("block {block}: checksum mismatch")]
    Checksum {
        /// Which block.
        block: u32,
    },
    /// Records out of order or malformed.
    #[error("block {block}: {what}")]
    Record {
        /// Which block.
        block: u32,
        /// What is wrong.
        what: String,
    },
}

/// The name of a segment: the hex blake3 of its bytes.
pub fn name_of(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A finished segment, ready to store.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Content hash (hex blake3).
    pub name: String,
    /// The encoded segment.
    pub bytes: Bytes,
    /// Records in it.
    pub records: u64,
}

/// Builds segments from records given in strictly increasing key order; a
/// segment is finished once its raw records reach the target size, so
/// memory stays bounded by one segment.
#[derive(Debug)]
pub struct SegmentBuilder {
    target: usize,
    block_target: usize,
    block: Vec<u8>,
    blocks: Vec<u8>,
    block_count: u32,
    records: u64,
    raw: usize,
}

impl SegmentBuilder {
    /// A builder that cuts segments of about `target` raw bytes, in blocks of
    /// about `block_target` bytes.
    pub fn new(target: usize, block_target: usize) -> Self {
        SegmentBuilder {
            target: target.max(1),
            block_target: block_target.max(1),
            block: Vec::new(),
            blocks: Vec::new(),
            block_count: 0,
            records: 0,
            raw: 0,
        }
    }

    /// Adds a record (`None`: a tombstone); returns a segment when one is
    /// finished.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> Option<Segment> {
        let before = self.block.len();
        match value {
            Some(v) => {
                self.block.push(TAG_PUT);
                put_bytes(&mut self.block, key);
                put_bytes(&mut self.block, v);
            }
            None => {
                self.block.push(TAG_TOMBSTONE);
                put_bytes(&mut self.block, key);
            }
        }
        self.raw += self.block.len() - before;
        self.records += 1;
        if self.block.len() >= self.block_target {
            self.seal_block();
        }
        (self.raw >= self.target).then(|| self.take())
    }

    /// Finishes the last segment, if it holds any record.
    pub fn finish(&mut self) -> Option<Segment> {
        (self.records > 0).then(|| self.take())
    }

    fn seal_block(&mut self) {
        if self.block.is_empty() {
            return;
        }
        let packed = lz4_flex::block::compress(&self.block);
        let (codec, stored): (u8, &[u8]) = if packed.len() < self.block.len() {
            (CODEC_LZ4, &packed)
        } else {
            (CODEC_NONE, &self.block)
        };
        self.blocks
            .extend_from_slice(&(self.block.len() as u32).to_le_bytes());
        self.blocks
            .extend_from_slice(&(stored.len() as u32).to_le_bytes());
        self.blocks.push(codec);
        self.blocks
            .extend_from_slice(&crc32c::crc32c(stored).to_le_bytes());
        self.blocks.extend_from_slice(stored);
        self.block_count += 1;
        self.block.clear();
    }

    fn take(&mut self) -> Segment {
        self.seal_block();
        let mut bytes = Vec::with_capacity(HEADER + self.blocks.len());
        bytes.extend_from_slice(&MAGIC.to_le_bytes());
        bytes.extend_from_slice(&[VERSION, 0, 0, 0]);
        bytes.extend_from_slice(&self.block_count.to_le_bytes());
        bytes.extend_from_slice(&self.records.to_le_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.append(&mut self.blocks);
        let records = self.records;
        self.block_count = 0;
        self.records = 0;
        self.raw = 0;
        Segment {
            name: name_of(&bytes),
            bytes: Bytes::from(bytes),
            records,
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks a segment against its name and calls `each(key, value)` for every
/// record, in key order (`None`: a tombstone). Returns the record count.
///
/// # Errors
/// [`SegmentError`] naming what is wrong; `each` is not called for anything
/// in a segment whose hash does not match.
pub fn read(
    name: &str,
    bytes: &Bytes,
    mut each: impl FnMut(Bytes, Option<Bytes>),
) -> Result<u64, SegmentError> {
    let actual = name_of(bytes);
    if actual != name {
        return Err(SegmentError::Hash { actual });
    }
    if bytes.len() < HEADER {
        return Err(SegmentError::Truncated(bytes.len()));
    }
    if u32_at(bytes, 0) != Some(MAGIC) {
        return Err(SegmentError::Format("not a ramrod snapshot segment".into()));
    }
    if bytes[4] == 1 {
        return Err(SegmentError::Format(
            "segment format 1 was written before keys carried revisions; this build reads format 2"
                .into(),
        ));
    }
    if bytes[4] != VERSION {
        return Err(SegmentError::Format(format!(
            "unknown segment version {}",
            bytes[4]
        )));
    }
    if crc32c::crc32c(&bytes[..20]) != u32_at(bytes, 20).unwrap_or(0) {
        return Err(SegmentError::Format("header checksum mismatch".into()));
    }
    let block_count = u32_at(bytes, 8).unwrap_or(0);
    let records = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let mut at = HEADER;
    let mut seen = 0u64;
    let mut last_key: Option<Bytes> = None;
    for block in 0..block_count {
        let head = bytes
            .get(at..at + BLOCK_HEAD)
            .ok_or(SegmentError::Truncated(at))?;
        let raw_len = u32_at(head, 0).unwrap_or(0) as usize;
        let stored_len = u32_at(head, 4).unwrap_or(0) as usize;
        let codec = head[8];
        let crc = u32_at(head, 9).unwrap_or(0);
        let start = at + BLOCK_HEAD;
        let stored = bytes
            .get(start..start + stored_len)
            .ok_or(SegmentError::Truncated(start))?;
        if crc32c::crc32c(stored) != crc {
            return Err(SegmentError::Checksum { block });
        }
        if raw_len > MAX_BLOCK {
            return Err(SegmentError::Record {
                block,
                what: format!("block length {raw_len} out of range"),
            });
        }
        let raw: Bytes = match codec {
            CODEC_NONE if raw_len == stored_len => bytes.slice(start..start + stored_len),
            CODEC_LZ4 => Bytes::from(
                lz4_flex::block::decompress(stored, raw_len)
                    .ok()
                    .filter(|r| r.len() == raw_len)
                    .ok_or_else(|| SegmentError::Record {
                        block,
                        what: "compressed block does not inflate".into(),
                    })?,
            ),
            other => {
                return Err(SegmentError::Record {
                    block,
                    what: format!("unknown codec {other} or length mismatch"),
                });
            }
        };
        seen += parse_block(block, &raw, &mut last_key, &mut each)?;
        at = start + stored_len;
    }
    if at != bytes.len() {
        return Err(SegmentError::Format(format!(
            "{} bytes after the last block",
            bytes.len() - at
        )));
    }
    if seen != records {
        return Err(SegmentError::Format(format!(
            "header says {records} records, blocks hold {seen}"
        )));
    }
    Ok(records)
}

fn parse_block(
    block: u32,
    raw: &Bytes,
    last_key: &mut Option<Bytes>,
    each: &mut impl FnMut(Bytes, Option<Bytes>),
) -> Result<u64, SegmentError> {
    let bad = |what: &str| SegmentError::Record {
        block,
        what: what.to_string(),
    };
    let take = |at: &mut usize| -> Result<Bytes, SegmentError> {
        let n = u32_at(raw, *at).ok_or_else(|| bad("length past the end"))? as usize;
        let s = *at + 4;
        if s + n > raw.len() {
            return Err(bad("bytes past the end"));
        }
        *at = s + n;
        Ok(raw.slice(s..s + n))
    };
    let mut at = 0;
    let mut n = 0;
    while at < raw.len() {
        let tag = raw[at];
        at += 1;
        let key = take(&mut at)?;
        let value = match tag {
            TAG_PUT => Some(take(&mut at)?),
            TAG_TOMBSTONE => None,
            _ => return Err(bad("unknown record tag")),
        };
        if last_key.as_ref().is_some_and(|k| *k >= key) {
            return Err(bad("keys out of order"));
        }
        *last_key = Some(key.clone());
        each(key, value);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(n: usize, target: usize) -> Vec<Segment> {
        let mut b = SegmentBuilder::new(target, 256);
        let mut out = Vec::new();
        for i in 0..n {
            let key = format!("key-{i:06}");
            let value = (i % 3 != 0).then(|| vec![(i % 7) as u8; 40]);
            out.extend(b.push(key.as_bytes(), value.as_deref()));
        }
        out.extend(b.finish());
        out
    }

    #[test]
    fn round_trip_in_bounded_segments() {
        let segs = build(1_000, 4_096);
        assert!(segs.len() > 5, "{} segments", segs.len());
        let mut got = Vec::new();
        for s in &segs {
            assert!(s.bytes.len() < 4_096 + 512, "segment of {}", s.bytes.len());
            let n = read(&s.name, &s.bytes, |k, v| got.push((k, v))).unwrap();
            assert_eq!(n, s.records);
        }
        assert_eq!(got.len(), 1_000);
        assert_eq!(&got[4].0[..], b"key-000004");
        assert_eq!(got[3].1, None);
        assert_eq!(got[4].1.as_deref(), Some(&[4u8; 40][..]));
    }

    #[test]
    fn every_damage_is_refused() {
        let seg = build(60, 1 << 20).pop().unwrap();
        for i in 0..seg.bytes.len() {
            let mut bad = seg.bytes.to_vec();
            bad[i] ^= 0x10;
            let bad = Bytes::from(bad);
            assert!(read(&seg.name, &bad, |_, _| ()).is_err(), "flip at {i}");
            // Even renamed to its new hash, the structure checks catch it.
            let renamed = name_of(&bad);
            assert!(
                read(&renamed, &bad, |_, _| ()).is_err(),
                "flip at {i} with a matching name"
            );
        }
        let cut = seg.bytes.slice(..seg.bytes.len() - 3);
        let e = read(&name_of(&cut), &cut, |_, _| ()).unwrap_err();
        assert!(matches!(e, SegmentError::Truncated(_)), "{e}");
    }
}
