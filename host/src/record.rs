//! Framed records: the one on-disk value format of ramrod's stores.
//!
//! ```text
//! version u8 = 1 | crc32c(payload) u32 LE | payload (postcard)
//! ```
//!
//! Sans I/O: plain functions over bytes. An unknown version, a short record or
//! a checksum mismatch is an error, never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

const RECORD_VERSION: u8 = 1;
const HEADER: usize = 5;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Shorter than the header.
    #[error("record of {0} bytes is shorter than its 5-byte header")]
    Truncated(usize),
    /// A version this build does not know.
    #[error("unknown record version {0}")]
    Version(u8),
    /// The checksum does not match.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The checksum in the record.
        stored: u32,
        /// The checksum of the payload as read.
        computed: u32,
    },
    /// The payload does not decode.
    #[error("payload does not decode: {0}")]
    Decode(String),
}

/// Frames `value` as a record.
///
/// # Panics
/// If `value`'s `Serialize` implementation fails (ramrod's types never do).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION, 0, 0, 0, 0];
    // Serializing ramrod's types into a Vec cannot fail.
    out = postcard::to_extend(value, out).expect("postcard serializes ramrod's types");
    let crc = crc32c::crc32c(&out[HEADER..]);
    out[1..HEADER].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks and decodes a record.
///
/// # Errors
/// [`RecordError`] naming what is wrong.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() < HEADER {
        return Err(RecordError::Truncated(bytes.len()));
    }
    if bytes[0] != RECORD_VERSION {
        return Err(RecordError::Version(bytes[0]));
    }
    let stored = u32::from_le_bytes(bytes[1..HEADER].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[HEADER..]);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    postcard::from_bytes(&bytes[HEADER..]).map_err(|e| RecordError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, LogId, Request};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload: EntryPayload::Normal(Request::put(b"k".to_vec(), vec![7; 100])),
        }
    }

    #[test]
    fn round_trip() {
        let e = entry(42);
        let b = encode(&e);
        let back: Entry = decode(&b).unwrap();
        assert_eq!(back.log_id, e.log_id);
        assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
    }

    #[test]
    fn damage_is_detected() {
        let b = encode(&entry(1));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x01;
            assert!(
                decode::<Entry>(&d).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        assert_eq!(
            decode::<Entry>(&b[..3]).unwrap_err(),
            RecordError::Truncated(3)
        );
        let mut v = b.clone();
        v[0] = 9;
        assert_eq!(decode::<Entry>(&v).unwrap_err(), RecordError::Version(9));
        assert!(matches!(
            decode::<Entry>(&b[..b.len() - 1]),
            Err(RecordError::Checksum { .. })
        ));
    }
}
