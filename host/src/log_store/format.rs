//! The log store's redb tables and meta keys. Values are framed records
//! ([`crate::record`]); entry keys are log indexes (`u64`, stored by redb as
//! fixed-width little-endian).

use redb::TableDefinition;

pub(crate) use crate::record::{decode, encode};

/// Log entries by index.
pub(crate) const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("ramrod_log_entries");
/// Vote, committed id, last purged id and the format marker.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("ramrod_log_meta");

pub(crate) const KEY_FORMAT: &str = "format";
pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_PURGED: &str = "purged";

/// The value of `KEY_FORMAT`: identifies a ramrod log store and its version.
pub(crate) const FORMAT_MARKER: &[u8] = b"ramrod-log-store/1";
