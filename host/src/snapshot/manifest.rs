//! Snapshot manifests: the chain (base segments, then deltas in order), the
//! Raft position, the state's key count and hash, and where the snapshot
//! came from.
//!
//! ```text
//! magic u32 LE = "RMAN" | version u8 = 2 | reserved [u8; 3] = 0
//! | body_len u32 LE | crc32c u32 LE (of the body) | body (JSON)
//! ```
//!
//! Format 2 snapshots hold keys with their revisions; a format 1 manifest
//! (written before revisions) is refused with [`OLD_FORMAT`], and a node
//! does not start on it (it would otherwise start without that state).
//!
//! The body is JSON so that an operator can read a manifest with any tool;
//! the frame makes damage and unknown versions clear errors.

use serde::{Deserialize, Serialize};

use crate::raft::{LogId, NodeId};

const MAGIC: u32 = u32::from_le_bytes(*b"RMAN");
const VERSION: u8 = 2;

/// Why a format 1 snapshot is refused.
pub const OLD_FORMAT: &str = "snapshot format 1 was written before keys carried revisions; \
this build reads format 2. Move the snapshot directory (or prefix) aside and let the node \
catch up from its cluster, or read it with the release that wrote it";
const HEADER: usize = 16;

/// Whether a snapshot holds the whole state or the changes since its parent:
/// the policies' own type, so a decision's kind is the manifest's kind.
pub use ramrod_policy_sdk::SnapshotKind;

/// One stored segment of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Content hash (hex blake3), which is also its name in the store.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Records in it.
    pub records: u64,
}

/// A base or a delta: segments in key order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The Raft position this layer brings the state to.
    pub last_log_id: Option<LogId>,
    /// Segments, in key order.
    pub segments: Vec<SegmentRef>,
}

impl Layer {
    /// Bytes of the layer's segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Records in the layer.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }
}

/// Raft membership as stored in a snapshot.
pub type Membership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// A snapshot: it exists once its manifest is durable in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Unique id, also the manifest's file name without its group.
    pub id: String,
    /// What this snapshot wrote.
    pub kind: SnapshotKind,
    /// The snapshot an incremental one builds on.
    pub parent: Option<String>,
    /// The last log id the state includes.
    pub last_log_id: Option<LogId>,
    /// The membership the state includes.
    pub membership: Membership,
    /// When it was written (ms since the Unix epoch).
    pub created_unix_ms: u64,
    /// What asked for it (a policy decision, an operator, openraft).
    pub requested_by: String,
    /// The base layer.
    pub base: Layer,
    /// Deltas on top of the base, oldest first.
    pub deltas: Vec<Layer>,
    /// Keys in the state.
    pub keys: u64,
    /// Order-independent hash of the state (hex), checked after a restore.
    pub state_hash: String,
    /// Bytes written for this snapshot (segments that were new to the store).
    pub bytes_written: u64,
    /// Other objects of the segment namespace the state refers to by hash
    /// (the rolled-out policy's component): kept while this manifest is,
    /// and fetched with the segments by a node installing the snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<String>,
}

impl Manifest {
    /// Layers of the chain: the base and each delta.
    pub fn layers(&self) -> u32 {
        u32::try_from(1 + self.deltas.len()).unwrap_or(u32::MAX)
    }

    /// Every segment of the chain: base first, then each delta.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentRef> {
        self.base
            .segments
            .iter()
            .chain(self.deltas.iter().flat_map(|d| d.segments.iter()))
    }

    /// Bytes of the whole chain.
    pub fn chain_bytes(&self) -> u64 {
        self.base.bytes() + self.deltas.iter().map(Layer::bytes).sum::<u64>()
    }

    /// Encodes the manifest.
    ///
    /// # Panics
    /// Never: serializing this type to JSON cannot fail.
    pub fn encode(&self) -> Vec<u8> {
        frame(&serde_json::to_vec(self).expect("manifest serializes"))
    }

    /// Checks and decodes a manifest.
    ///
    /// # Errors
    /// A message naming what is wrong: not a manifest, unknown version,
    /// truncated, checksum mismatch, or a body that does not parse.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() < HEADER {
            return Err(format!("{} bytes is too short for a manifest", bytes.len()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        if u32_at(0) != MAGIC {
            return Err("not a ramrod snapshot manifest".into());
        }
        if bytes[4] == 1 {
            return Err(OLD_FORMAT.into());
        }
        if bytes[4] != VERSION {
            return Err(format!("unknown manifest version {}", bytes[4]));
        }
        if bytes[5..8] != [0, 0, 0] {
            return Err("reserved header bytes are not zero".into());
        }
        let len = u32_at(8) as usize;
        let body = bytes
            .get(HEADER..HEADER + len)
            .ok_or_else(|| format!("truncated: {} of {len} body bytes", bytes.len() - HEADER))?;
        if bytes.len() != HEADER + len {
            return Err(format!(
                "{} bytes after the body",
                bytes.len() - HEADER - len
            ));
        }
        if crc32c::crc32c(body) != u32_at(12) {
            return Err("checksum mismatch".into());
        }
        serde_json::from_slice(body).map_err(|e| format!("body does not parse: {e}"))
    }
}

/// `body` framed as a manifest: header, length and checksum.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A small manifest (tests and fuzzing seeds).
pub(crate) fn sample() -> Manifest {
    Manifest {
        id: "00000000000000000042-0000001700000000000".into(),
        kind: SnapshotKind::Incremental,
        parent: Some("p".into()),
        last_log_id: None,
        membership: Membership::default(),
        created_unix_ms: 1,
        requested_by: "test".into(),
        base: Layer {
            last_log_id: None,
            segments: vec![SegmentRef {
                name: "ab".into(),
                bytes: 10,
                records: 2,
            }],
        },
        deltas: vec![],
        keys: 2,
        state_hash: "00".into(),
        bytes_written: 10,
        blobs: vec!["b".repeat(64)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let m = sample();
        let b = m.encode();
        assert_eq!(Manifest::decode(&b).unwrap(), m);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x04;
            assert!(Manifest::decode(&d).is_err(), "flip at {i}");
        }
        assert!(Manifest::decode(&b[..b.len() - 1]).is_err());
        let mut v = b.clone();
        v[4] = 9;
        assert!(Manifest::decode(&v).unwrap_err().contains("version 9"));
        v[4] = 1;
        assert_eq!(Manifest::decode(&v).unwrap_err(), OLD_FORMAT);
        assert!(Manifest::decode(b"garbage garbage garbage").is_err());
    }
}
