//! The log store's redb tables and meta keys. Meta values are framed records
//! ([`crate::record`]); index and segment keys are `u64`s (stored by redb as
//! fixed-width little-endian).

use redb::TableDefinition;

pub(crate) use crate::record::{decode, encode};

/// Where each appended batch lives: first index -> [`Row`].
pub(crate) const INDEX: TableDefinition<u64, Row> = TableDefinition::new("ramrod_log_index");
/// Segment files in use: sequence number -> highest index written to it
/// (`u64::MAX` for none).
pub(crate) const SEGMENTS: TableDefinition<u64, u64> = TableDefinition::new("ramrod_log_segments");
/// Vote, committed id, last purged id, byte total, checkpoint and the format
/// marker.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("ramrod_log_meta");

/// An index row: where a batch's entries are. The record at `offset` in
/// segment `segment` is `len` bytes long; the row's entries are its entries
/// `skip..skip + count` (a purge trims the head, a truncate the tail), and
/// their records take `bytes` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) skip: u32,
    pub(crate) count: u32,
    pub(crate) bytes: u32,
}

impl Row {
    /// The last index of a row whose key is `key`.
    pub(crate) fn last(&self, key: u64) -> u64 {
        key + u64::from(self.count) - 1
    }
}

const ROW_BYTES: usize = 32;

impl redb::Value for Row {
    type SelfType<'a> = Row;
    type AsBytes<'a> = [u8; ROW_BYTES];

    fn fixed_width() -> Option<usize> {
        Some(ROW_BYTES)
    }

    fn from_bytes<'a>(data: &'a [u8]) -> Row
    where
        Self: 'a,
    {
        let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
        Row {
            segment: u64_at(0),
            offset: u64_at(8),
            len: u32_at(16),
            skip: u32_at(20),
            count: u32_at(24),
            bytes: u32_at(28),
        }
    }

    fn as_bytes<'a, 'b: 'a>(row: &'a Row) -> [u8; ROW_BYTES]
    where
        Self: 'b,
    {
        let mut out = [0; ROW_BYTES];
        out[0..8].copy_from_slice(&row.segment.to_le_bytes());
        out[8..16].copy_from_slice(&row.offset.to_le_bytes());
        out[16..20].copy_from_slice(&row.len.to_le_bytes());
        out[20..24].copy_from_slice(&row.skip.to_le_bytes());
        out[24..28].copy_from_slice(&row.count.to_le_bytes());
        out[28..32].copy_from_slice(&row.bytes.to_le_bytes());
        out
    }

    fn type_name() -> redb::TypeName {
        redb::TypeName::new("ramrod::log_store::Row")
    }
}

pub(crate) const KEY_FORMAT: &str = "format";
pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_PURGED: &str = "purged";
/// Running total of entry bytes, saved with every commit so it never has to
/// be recomputed by scanning.
pub(crate) const KEY_BYTES: &str = "bytes";
/// `(segment, offset)`: every record before this position is in the index
/// as of this commit; recovery scans the segments from here.
pub(crate) const KEY_CHECKPOINT: &str = "checkpoint";

/// The value of `KEY_FORMAT`: identifies a ramrod log store and its version.
pub(crate) const FORMAT_MARKER: &[u8] = b"ramrod-log-store/2";
/// The first format (entries stored in redb), which this build does not read.
pub(crate) const FORMAT_V1: &[u8] = b"ramrod-log-store/1";
