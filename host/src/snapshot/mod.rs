//! Incremental snapshots: content-addressed segments, manifests written
//! last, verified restore, retention and garbage collection.
//!
//! A [`Snapshots`] handle writes the snapshots of one *group* (a node) into a
//! [`SnapshotStore`] that several groups may share: segments are
//! content-addressed and shared, manifests live under `manifests/<group>/`.
//!
//! - [`Snapshots::write`] streams a frozen state (a full snapshot) or the keys
//!   changed since the parent (an incremental one) into bounded segments,
//!   stores each (idempotent), then writes the manifest atomically. Memory
//!   stays bounded by a few segments.
//! - [`Snapshots::load`] verifies every segment (its hash is its name, every
//!   block is checksummed), applies the base then the deltas in order, and
//!   checks the key count and the state hash recorded in the manifest.
//! - [`Snapshots::restore_latest`] loads the newest snapshot that verifies and
//!   reports every newer one it had to skip, with the reason.
//! - [`Snapshots::retain`] keeps the newest N manifests of the group and
//!   deletes segments that no manifest of any group references, unless a
//!   write in progress pins them or they are younger than the grace period.

mod gc;
mod install;
pub mod manifest;
mod restore;
pub mod segment;
pub mod store;
pub mod testing;
mod write;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use std::collections::BTreeMap;

pub use manifest::{Layer, Manifest, Membership, SegmentRef, SnapshotKind};
pub use store::{
    DirStore, ObjectInfo, S3Config, S3Store, SegmentSource, SnapshotStore, StoreError, StoreSource,
};

use crate::raft::LogId;

/// The key-value state a snapshot holds.
pub type KvMap = BTreeMap<Bytes, Bytes>;

/// Order-independent hash of one key-value pair (XXH3-128 of the key length,
/// key and value); a state's hash is the wrapping sum over its pairs, so it
/// is maintained in O(1) per change. It checks that a chain rebuilds the
/// state it recorded; the bytes themselves are protected by each segment's
/// blake3 name and block checksums.
pub fn entry_hash(key: &[u8], value: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(value);
    h.digest128()
}

/// The hash of a whole state (sum of [`entry_hash`]).
pub fn state_hash(map: &KvMap) -> u128 {
    map.iter()
        .fold(0u128, |acc, (k, v)| acc.wrapping_add(entry_hash(k, v)))
}

/// A state hash as text.
pub fn hash_hex(h: u128) -> String {
    format!("{h:032x}")
}

/// Snapshot settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SnapshotConfig {
    /// Raw bytes of records per segment.
    pub segment_bytes: usize,
    /// Raw bytes per compressed, checksummed block.
    pub block_bytes: usize,
    /// Snapshots kept (a policy's `retain-snapshots` overrides it).
    pub retain: usize,
    /// The longest chain (base + deltas) kept: an incremental snapshot that
    /// would make it longer is written full, whoever asked (a policy, an
    /// operator, openraft). A host safety bound, like the purge clamp.
    pub max_chain: usize,
    /// Unreferenced segments younger than this are kept (another process may
    /// be writing a snapshot that uses them).
    #[serde(with = "secs")]
    pub gc_grace: Duration,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            segment_bytes: 4 << 20,
            block_bytes: 64 << 10,
            retain: 3,
            max_chain: crate::sdk::DEFAULT_MAX_CHAIN as usize,
            gc_grace: Duration::from_secs(600),
        }
    }
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest is damaged or unreadable.
    #[error("manifest {name}: {reason}")]
    Manifest {
        /// The manifest.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A segment is damaged.
    #[error("segment {name}: {source}")]
    Segment {
        /// The segment.
        name: String,
        /// What is wrong.
        source: segment::SegmentError,
    },
    /// The chain loaded, but not to the state the manifest describes.
    #[error("manifest {name}: restored state does not match: {what}")]
    Mismatch {
        /// The manifest.
        name: String,
        /// Key count or hash, expected and found.
        what: String,
    },
    /// An incremental snapshot was asked for without a parent.
    #[error("an incremental snapshot needs a parent snapshot")]
    NoParent,
    /// A background task failed.
    #[error("snapshot writer: {0}")]
    Task(String),
}

/// What to snapshot.
#[derive(Debug)]
pub struct WriteRequest {
    /// Full or incremental.
    pub kind: SnapshotKind,
    /// The snapshot an incremental one builds on (its chain is reused).
    pub parent: Option<Manifest>,
    /// The state, frozen: the state machine applies to an overlay while a
    /// writer holds it.
    pub state: std::sync::Arc<KvMap>,
    /// Keys changed since `parent` with their values at the freeze (`None`:
    /// removed); incremental only.
    pub changed: std::sync::Arc<BTreeMap<Bytes, Option<Bytes>>>,
    /// The last log id the state includes.
    pub last_log_id: Option<LogId>,
    /// The membership the state includes.
    pub membership: Membership,
    /// The state's hash.
    pub state_hash: u128,
    /// What asked for it.
    pub requested_by: String,
    /// Blobs the state refers to (its policy's component), recorded in the
    /// manifest so that retention keeps them.
    pub blobs: Vec<String>,
}

/// A verified, loaded snapshot.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Its manifest.
    pub manifest: Manifest,
    /// The manifest's name in the store (`group/id`).
    pub name: String,
    /// The state.
    pub state: KvMap,
    /// Its hash.
    pub state_hash: u128,
    /// Segment bytes read.
    pub bytes_read: u64,
}

/// What [`Snapshots::restore_latest`] did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// The snapshot restored, if any verified.
    pub loaded: Option<Loaded>,
    /// Newer manifests that were skipped, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// What [`Snapshots::retain`] deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Manifests deleted.
    pub manifests: Vec<String>,
    /// Segments deleted.
    pub segments: usize,
    /// Bytes of the deleted segments.
    pub segment_bytes: u64,
}

/// The snapshots of one group in a store.
#[derive(Debug)]
pub struct Snapshots {
    store: std::sync::Arc<dyn SnapshotStore>,
    group: String,
    config: SnapshotConfig,
    /// Segments a write in progress will reference: never collected.
    pins: Mutex<HashMap<String, usize>>,
    /// Held by a collection for its whole sweep, and by a writer to unpin:
    /// a manifest published during a sweep keeps its segments pinned until
    /// the sweep (which may have listed manifests before it) is over.
    sweep: tokio::sync::Mutex<()>,
    /// Segments of each manifest seen (manifests are immutable once
    /// written), so a collection does not re-read every manifest.
    known: Mutex<HashMap<String, std::sync::Arc<Vec<String>>>>,
    /// The blob the running state refers to (the policy's component),
    /// which no snapshot may reference yet: never collected.
    held: Mutex<Option<String>>,
    seq: AtomicU64,
}

struct Pinned<'a> {
    owner: &'a Snapshots,
    names: Vec<String>,
}

impl Pinned<'_> {
    fn add(&mut self, name: &str) {
        *self
            .owner
            .pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default() += 1;
        self.names.push(name.to_string());
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let mut pins = self.owner.pins.lock().unwrap_or_else(|e| e.into_inner());
        for n in &self.names {
            if let Some(c) = pins.get_mut(n) {
                *c -= 1;
                if *c == 0 {
                    pins.remove(n);
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Snapshots {
    /// The snapshots of `group` in `store`.
    pub fn new(
        store: std::sync::Arc<dyn SnapshotStore>,
        group: &str,
        config: SnapshotConfig,
    ) -> Self {
        Snapshots {
            store,
            group: group.to_string(),
            config,
            pins: Mutex::default(),
            sweep: tokio::sync::Mutex::new(()),
            known: Mutex::default(),
            held: Mutex::default(),
            seq: AtomicU64::new(0),
        }
    }

    /// The store.
    pub fn store(&self) -> &std::sync::Arc<dyn SnapshotStore> {
        &self.store
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The settings.
    pub fn config(&self) -> &SnapshotConfig {
        &self.config
    }

    fn known_segments(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, std::sync::Arc<Vec<String>>>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `blob` (the state's policy component) from collection whether
    /// or not a manifest references it yet; replaces the blob held before.
    pub fn hold_blob(&self, blob: Option<String>) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = blob;
    }

    /// Stores `bytes` as the blob `name` (its blake3 hash), durably, after
    /// checking that the name is the bytes' hash.
    ///
    /// # Errors
    /// If `name` is not the hash of `bytes`, or the store fails.
    pub async fn put_blob(&self, name: &str, bytes: Bytes) -> Result<(), SnapshotError> {
        let actual = segment::name_of(&bytes);
        if actual != name {
            return Err(SnapshotError::Segment {
                name: name.to_string(),
                source: segment::SegmentError::Hash { actual },
            });
        }
        self.store.put_segment(name, bytes).await?;
        Ok(())
    }

    /// Reads the blob `name` from the store, verified against its name.
    ///
    /// # Errors
    /// `StoreError::NotFound` if the store lacks it; a hash error if the
    /// bytes are not what the name says; any other store failure.
    pub async fn get_blob(&self, name: &str) -> Result<Bytes, SnapshotError> {
        let bytes = self.store.get_segment(name).await?;
        let actual = segment::name_of(&bytes);
        if actual != name {
            return Err(SnapshotError::Segment {
                name: name.to_string(),
                source: segment::SegmentError::Hash { actual },
            });
        }
        Ok(bytes)
    }

    fn remember(&self, name: &str, m: &Manifest) -> std::sync::Arc<Vec<String>> {
        let segs = std::sync::Arc::new(
            m.segments()
                .map(|s| s.name.clone())
                .chain(m.blobs.iter().cloned())
                .collect::<Vec<_>>(),
        );
        self.known_segments().insert(name.to_string(), segs.clone());
        segs
    }

    fn pinned(&self) -> Pinned<'_> {
        Pinned {
            owner: self,
            names: Vec::new(),
        }
    }
}

/// Every manifest name in `store` (`group/id`), newest first within a group
/// (ids sort by last log index, then creation time).
///
/// # Errors
/// If the store cannot list.
pub async fn manifest_names(store: &dyn SnapshotStore) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = store
        .list_manifests()
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// The outcome of verifying one manifest.
#[derive(Debug)]
pub struct Verified {
    /// The manifest's name (`group/id`).
    pub name: String,
    /// The manifest, if it decoded.
    pub manifest: Option<Manifest>,
    /// `Ok` with the restored key count, or what is wrong.
    pub result: Result<u64, String>,
    /// How long loading took.
    pub elapsed: Duration,
}

/// Verifies every manifest of every group in `store`: each decodes, each
/// segment matches its hash and checksums, and each chain restores to the
/// recorded key count and state hash.
///
/// # Errors
/// Only if the store cannot list.
pub async fn verify_store(
    store: std::sync::Arc<dyn SnapshotStore>,
) -> Result<Vec<Verified>, SnapshotError> {
    let mut names = manifest_names(store.as_ref()).await?;
    names.reverse();
    let mut out = Vec::new();
    for name in names {
        let group = name.split('/').next().unwrap_or_default().to_string();
        let snaps = Snapshots::new(store.clone(), &group, SnapshotConfig::default());
        let t = Instant::now();
        let manifest = snaps.manifest(&name).await;
        let (manifest, result) = match manifest {
            Ok(m) => {
                let r = snaps
                    .load(&name, &m)
                    .await
                    .map(|l| l.state.len() as u64)
                    .map_err(|e| e.to_string());
                (Some(m), r)
            }
            Err(e) => (None, Err(e.to_string())),
        };
        out.push(Verified {
            name,
            manifest,
            result,
            elapsed: t.elapsed(),
        });
    }
    Ok(out)
}
