//! Chunks: the value format of the entry table. One append is stored as one
//! value, keyed by the index of its first entry, so a batch of N entries costs
//! one B-tree insert instead of N.
//!
//! ```text
//! version u8 = 1 | count u32 LE | count x (len u32 LE | framed entry record)
//! ```
//!
//! Entry `i` of a chunk keyed `k` has index `k + i`. Each entry keeps its own
//! framed record (version, crc32c), so damage is found per entry. Sans I/O.

use crate::record::RecordError;

const VERSION: u8 = 1;
const HEADER: usize = 5;

/// Builds a chunk from entry records, in index order.
pub(crate) fn encode<R: AsRef<[u8]>>(records: &[R]) -> Vec<u8> {
    let len: usize = records.iter().map(|r| 4 + r.as_ref().len()).sum();
    let mut out = Vec::with_capacity(HEADER + len);
    out.push(VERSION);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let r = r.as_ref();
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// The number of entries in a chunk, from its header alone.
pub(crate) fn count(chunk: &[u8]) -> Result<u64, RecordError> {
    if chunk.len() < HEADER {
        return Err(RecordError::Truncated(chunk.len()));
    }
    if chunk[0] != VERSION {
        return Err(RecordError::Version(chunk[0]));
    }
    Ok(u64::from(u32::from_le_bytes(
        chunk[1..HEADER].try_into().expect("4 bytes"),
    )))
}

/// The entry records of a chunk, in order.
pub(crate) fn records(chunk: &[u8]) -> Result<Vec<&[u8]>, RecordError> {
    let n = count(chunk)? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    let mut at = HEADER;
    for _ in 0..n {
        let len_bytes = chunk
            .get(at..at + 4)
            .ok_or(RecordError::Truncated(chunk.len()))?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        at += 4;
        let r = chunk
            .get(at..at + len)
            .ok_or(RecordError::Truncated(chunk.len()))?;
        out.push(r);
        at += len;
    }
    if at != chunk.len() {
        return Err(RecordError::Decode(format!(
            "{} trailing bytes after {n} entries",
            chunk.len() - at
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let recs = vec![b"one".to_vec(), b"".to_vec(), b"three!".to_vec()];
        let c = encode(&recs);
        assert_eq!(count(&c).unwrap(), 3);
        assert_eq!(
            records(&c).unwrap(),
            vec![&b"one"[..], &b""[..], &b"three!"[..]]
        );
        assert_eq!(records(&encode::<Vec<u8>>(&[])).unwrap().len(), 0);
        assert!(records(&c[..c.len() - 1]).is_err());
        let mut longer = c.clone();
        longer.push(0);
        assert!(records(&longer).is_err());
        let mut v = c.clone();
        v[0] = 2;
        assert_eq!(count(&v).unwrap_err(), RecordError::Version(2));
        let mut huge = c.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(records(&huge).is_err());
    }
}
