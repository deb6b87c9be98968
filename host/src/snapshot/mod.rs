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

pub mod manifest;
pub mod segment;
pub mod store;
pub mod testing;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

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

    fn remember(&self, name: &str, m: &Manifest) -> std::sync::Arc<Vec<String>> {
        let segs = std::sync::Arc::new(m.segments().map(|s| s.name.clone()).collect::<Vec<_>>());
        self.known_segments().insert(name.to_string(), segs.clone());
        segs
    }

    fn pinned(&self) -> Pinned<'_> {
        Pinned {
            owner: self,
            names: Vec::new(),
        }
    }

    /// Writes a snapshot: segments first, then the manifest. The snapshot
    /// exists once this returns.
    ///
    /// # Errors
    /// If the store fails, or an incremental snapshot has no parent. Nothing
    /// half-written is ever visible: without its manifest, a segment is only
    /// garbage for [`retain`](Self::retain).
    pub async fn write(&self, req: WriteRequest) -> Result<Manifest, SnapshotError> {
        let mut pins = self.pinned();
        let (mut base, mut deltas, parent_id) = match (req.kind, &req.parent) {
            (SnapshotKind::Incremental, Some(p)) => {
                for s in p.segments() {
                    pins.add(&s.name);
                }
                (p.base.clone(), p.deltas.clone(), Some(p.id.clone()))
            }
            (SnapshotKind::Incremental, None) => return Err(SnapshotError::NoParent),
            (SnapshotKind::Full, p) => (
                Layer {
                    last_log_id: None,
                    segments: Vec::new(),
                },
                Vec::new(),
                p.as_ref().map(|p| p.id.clone()),
            ),
        };

        // Encode on a blocking thread; store from here. The channel holds at
        // most two finished segments, so memory stays bounded.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<segment::Segment>(2);
        let (seg_bytes, block_bytes) = (self.config.segment_bytes, self.config.block_bytes);
        let kind = req.kind;
        let keys = req.state.len() as u64;
        let state = req.state;
        let changed = req.changed;
        let encoder = tokio::task::spawn_blocking(move || {
            let mut b = segment::SegmentBuilder::new(seg_bytes, block_bytes);
            let send = |s: segment::Segment| tx.blocking_send(s).is_ok();
            match kind {
                SnapshotKind::Full => {
                    for (k, v) in state.iter() {
                        if let Some(s) = b.push(k, Some(v))
                            && !send(s)
                        {
                            return;
                        }
                    }
                }
                SnapshotKind::Incremental => {
                    for (k, v) in changed.iter() {
                        if let Some(s) = b.push(k, v.as_deref())
                            && !send(s)
                        {
                            return;
                        }
                    }
                }
            }
            if let Some(s) = b.finish() {
                send(s);
            }
        });
        let mut layer = Layer {
            last_log_id: req.last_log_id,
            segments: Vec::new(),
        };
        let mut written = 0u64;
        let mut stored = Ok(());
        while let Some(seg) = rx.recv().await {
            pins.add(&seg.name);
            let size = seg.bytes.len() as u64;
            match self.store.put_segment(&seg.name, seg.bytes).await {
                Ok(new) => written += if new { size } else { 0 },
                Err(e) => {
                    stored = Err(e);
                    break;
                }
            }
            layer.segments.push(SegmentRef {
                name: seg.name,
                bytes: size,
                records: seg.records,
            });
        }
        // Always wait for the encoder, so that the state it holds is
        // released before this returns, even on failure.
        drop(rx);
        encoder
            .await
            .map_err(|e| SnapshotError::Task(e.to_string()))?;
        stored?;
        match kind {
            SnapshotKind::Full => base = layer,
            SnapshotKind::Incremental => deltas.push(layer),
        }
        let created = now_ms();
        let index = req.last_log_id.map_or(0, |l| l.index + 1);
        let id = format!(
            "{index:020}-{created:013}-{:04}",
            self.seq.fetch_add(1, Ordering::Relaxed) % 10_000
        );
        let manifest = Manifest {
            id: id.clone(),
            kind,
            parent: parent_id,
            last_log_id: req.last_log_id,
            membership: req.membership,
            created_unix_ms: created,
            requested_by: req.requested_by,
            base,
            deltas,
            keys,
            state_hash: hash_hex(req.state_hash),
            bytes_written: written,
        };
        let name = format!("{}/{}", self.group, id);
        self.store
            .put_manifest(&name, Bytes::from(manifest.encode()))
            .await?;
        self.remember(&name, &manifest);
        let _sweep = self.sweep.lock().await;
        drop(pins);
        Ok(manifest)
    }

    /// Loads and verifies the snapshot `manifest` (named `name` for messages).
    ///
    /// # Errors
    /// A missing or damaged segment, or a chain that does not produce the
    /// manifest's key count and state hash.
    pub async fn load(&self, name: &str, manifest: &Manifest) -> Result<Loaded, SnapshotError> {
        // Fetch here (at most two segments ahead), decode and build the map
        // on a blocking thread: I/O and CPU overlap, memory stays bounded.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Result<(SegmentRef, Bytes, bool), SnapshotError>>(2);
        // Stage 1 (this blocking thread): verify and decode each segment
        // into records, hashing as it goes. Stage 2 (another): insert them.
        // Records of one segment, and whether they belong to the base.
        type Records = (bool, Vec<(Bytes, Option<Bytes>, u128)>);
        let (rec_tx, rec_rx) = std::sync::mpsc::sync_channel::<Records>(2);
        let builder = std::thread::spawn(move || {
            // The base is sorted and has no tombstones: collect it and build
            // the map in one O(n) pass; then apply the deltas.
            let mut base: Vec<(Bytes, Bytes)> = Vec::new();
            let mut state: Option<KvMap> = None;
            let mut hash = 0u128;
            for (is_base, batch) in rec_rx {
                if is_base && state.is_none() {
                    for (k, v, h) in batch {
                        if let Some(v) = v {
                            hash = hash.wrapping_add(h);
                            base.push((k, v));
                        }
                    }
                    continue;
                }
                let map =
                    state.get_or_insert_with(|| std::mem::take(&mut base).into_iter().collect());
                for (k, v, h) in batch {
                    match (map.entry(k), v) {
                        (Entry::Vacant(e), Some(v)) => {
                            hash = hash.wrapping_add(h);
                            e.insert(v);
                        }
                        (Entry::Occupied(mut e), Some(v)) => {
                            hash = hash
                                .wrapping_add(h)
                                .wrapping_sub(entry_hash(e.key(), e.get()));
                            e.insert(v);
                        }
                        (Entry::Occupied(e), None) => {
                            hash = hash.wrapping_sub(entry_hash(e.key(), e.get()));
                            e.remove();
                        }
                        (Entry::Vacant(_), None) => {}
                    }
                }
            }
            let state = state.unwrap_or_else(|| base.into_iter().collect());
            (state, hash)
        });
        let decoder = tokio::task::spawn_blocking(move || {
            let mut bytes_read = 0u64;
            let decoded = (|| {
                while let Some(item) = rx.blocking_recv() {
                    let (seg, bytes, is_base) = item?;
                    bytes_read += bytes.len() as u64;
                    // The manifest is not trusted yet: bound the allocation by
                    // what the bytes can hold (a record takes at least 9).
                    let cap = (seg.records as usize).min(bytes.len() / 9 + 1);
                    let mut batch = Vec::with_capacity(cap);
                    let records = segment::read(&seg.name, &bytes, |k, v| {
                        let h = v.as_ref().map_or(0, |v| entry_hash(&k, v));
                        batch.push((k, v, h));
                    })
                    .map_err(|source| SnapshotError::Segment {
                        name: seg.name.clone(),
                        source,
                    })?;
                    if records != seg.records {
                        return Err(SnapshotError::Segment {
                            name: seg.name.clone(),
                            source: segment::SegmentError::Format(format!(
                                "holds {records} records, the manifest says {}",
                                seg.records
                            )),
                        });
                    }
                    if rec_tx.send((is_base, batch)).is_err() {
                        break;
                    }
                }
                Ok(())
            })();
            drop(rec_tx);
            let (state, hash) = builder
                .join()
                .map_err(|_| SnapshotError::Task("the map builder panicked".into()))?;
            decoded.map(|()| (state, hash, bytes_read))
        });
        let base_count = manifest.base.segments.len();
        for (i, seg) in manifest.segments().enumerate() {
            let item = self
                .store
                .get_segment(&seg.name)
                .await
                .map(|b| (seg.clone(), b, i < base_count))
                .map_err(SnapshotError::from);
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        let (state, hash, bytes_read) = decoder
            .await
            .map_err(|e| SnapshotError::Task(e.to_string()))??;
        if state.len() as u64 != manifest.keys || hash_hex(hash) != manifest.state_hash {
            return Err(SnapshotError::Mismatch {
                name: name.to_string(),
                what: format!(
                    "expected {} keys with hash {}, found {} keys with hash {}",
                    manifest.keys,
                    manifest.state_hash,
                    state.len(),
                    hash_hex(hash)
                ),
            });
        }
        Ok(Loaded {
            manifest: manifest.clone(),
            name: name.to_string(),
            state,
            state_hash: hash,
            bytes_read,
        })
    }

    /// The group's manifest names, newest first.
    ///
    /// # Errors
    /// If the store cannot list.
    pub async fn names(&self) -> Result<Vec<String>, SnapshotError> {
        let prefix = format!("{}/", self.group);
        let mut names = manifest_names(self.store.as_ref()).await?;
        names.retain(|n| n.starts_with(&prefix));
        Ok(names)
    }

    /// Reads and decodes a manifest.
    ///
    /// # Errors
    /// If it is missing or damaged.
    pub async fn manifest(&self, name: &str) -> Result<Manifest, SnapshotError> {
        let bytes = self.store.get_manifest(name).await?;
        Manifest::decode(&bytes).map_err(|reason| SnapshotError::Manifest {
            name: name.to_string(),
            reason,
        })
    }

    /// Loads the newest snapshot of the group that verifies; newer ones that
    /// do not are reported and skipped, never loaded.
    ///
    /// # Errors
    /// Only if the store cannot list; damaged snapshots are skipped.
    pub async fn restore_latest(&self) -> Result<RestoreReport, SnapshotError> {
        let mut report = RestoreReport::default();
        for name in self.names().await? {
            let attempt = async {
                let m = self.manifest(&name).await?;
                self.load(&name, &m).await
            };
            match attempt.await {
                Ok(loaded) => {
                    report.loaded = Some(loaded);
                    break;
                }
                Err(e) => {
                    tracing::warn!(snapshot = %name, error = %e, "skipping a damaged snapshot");
                    report.skipped.push((name, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    /// Keeps the newest `keep` manifests of the group (at least one), then
    /// deletes every segment that no manifest of any group references and
    /// that is neither pinned by a write in progress nor younger than the
    /// grace period.
    ///
    /// # Errors
    /// If the store fails; what was deleted before stays deleted.
    pub async fn retain(&self, keep: usize) -> Result<GcReport, SnapshotError> {
        self.retain_protecting(keep, None, &[]).await
    }

    /// [`retain`](Self::retain), never deleting the manifest `protect` (the
    /// caller's current snapshot, counted in `keep`) whatever the names'
    /// order says, nor any of `also` (snapshots being sent to followers,
    /// not counted).
    ///
    /// # Errors
    /// If the store fails; what was deleted before stays deleted.
    pub async fn retain_protecting(
        &self,
        keep: usize,
        protect: Option<&str>,
        also: &[String],
    ) -> Result<GcReport, SnapshotError> {
        let _sweep = self.sweep.lock().await;
        let mut report = GcReport::default();
        let mut kept = usize::from(protect.is_some());
        for name in self.names().await? {
            if Some(name.as_str()) == protect || also.contains(&name) {
                continue;
            }
            if kept < keep.max(1) {
                kept += 1;
                continue;
            }
            self.store.delete_manifest(&name).await?;
            report.manifests.push(name);
        }
        let mut referenced: HashSet<String> = HashSet::new();
        let listed = self.store.list_manifests().await?;
        {
            let live: HashSet<&str> = listed.iter().map(|o| o.name.as_str()).collect();
            self.known_segments()
                .retain(|name, _| live.contains(name.as_str()));
        }
        for info in listed {
            let cached = self.known_segments().get(&info.name).cloned();
            let segments = match cached {
                Some(s) => s,
                None => match self.manifest(&info.name).await {
                    Ok(m) => self.remember(&info.name, &m),
                    // A damaged manifest cannot be restored: it protects nothing.
                    Err(e) => {
                        tracing::warn!(manifest = %info.name, error = %e, "unreadable manifest");
                        continue;
                    }
                },
            };
            referenced.extend(segments.iter().cloned());
        }
        let now = SystemTime::now();
        for seg in self.store.list_segments().await? {
            if referenced.contains(&seg.name) {
                continue;
            }
            let young = now
                .duration_since(seg.modified)
                .map_or(true, |age| age < self.config.gc_grace);
            let pinned = self
                .pins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&seg.name);
            if young || pinned {
                continue;
            }
            self.store.delete_segment(&seg.name).await?;
            report.segments += 1;
            report.segment_bytes += seg.size;
        }
        Ok(report)
    }

    /// Copies the segments of `manifest` that the store lacks from `source`,
    /// verifying each against its name. Returns the bytes fetched.
    ///
    /// # Errors
    /// If a segment is missing from both, damaged, or a store fails.
    pub async fn fetch_missing(
        &self,
        manifest: &Manifest,
        source: Option<&dyn SegmentSource>,
    ) -> Result<u64, SnapshotError> {
        let mut fetched = 0;
        for seg in manifest.segments() {
            if self.store.has_segment(&seg.name).await? {
                continue;
            }
            let Some(source) = source else {
                return Err(SnapshotError::Store(StoreError::NotFound {
                    store: self.store.describe(),
                    key: seg.name.clone(),
                }));
            };
            let bytes = source.fetch_segment(&seg.name).await?;
            let actual = segment::name_of(&bytes);
            if actual != seg.name {
                return Err(SnapshotError::Segment {
                    name: seg.name.clone(),
                    source: segment::SegmentError::Hash { actual },
                });
            }
            fetched += bytes.len() as u64;
            self.store.put_segment(&seg.name, bytes).await?;
        }
        Ok(fetched)
    }

    /// The changes of the delta layers `from..` of `manifest` (1 is the
    /// first delta), merged so that a later layer wins, as new segments:
    /// what a node holding the layers before `from` needs, each key once.
    /// Every segment read is verified.
    ///
    /// # Errors
    /// If `from` is not a delta of `manifest`, or a segment is missing or
    /// damaged.
    pub async fn merge_layers(
        &self,
        manifest: &Manifest,
        from: usize,
    ) -> Result<Vec<segment::Segment>, SnapshotError> {
        if from == 0 || from > manifest.deltas.len() {
            return Err(SnapshotError::Manifest {
                name: manifest.id.clone(),
                reason: format!("no delta layer {from} (it has {})", manifest.deltas.len()),
            });
        }
        let mut merged: std::collections::BTreeMap<Bytes, Option<Bytes>> =
            std::collections::BTreeMap::new();
        for layer in &manifest.deltas[from - 1..] {
            for s in &layer.segments {
                let bytes = self.store.get_segment(&s.name).await?;
                segment::read(&s.name, &bytes, |k, v| {
                    merged.insert(k, v);
                })
                .map_err(|source| SnapshotError::Segment {
                    name: s.name.clone(),
                    source,
                })?;
            }
        }
        let (seg_bytes, block_bytes) = (self.config.segment_bytes, self.config.block_bytes);
        tokio::task::spawn_blocking(move || {
            let mut b = segment::SegmentBuilder::new(seg_bytes, block_bytes);
            let mut out = Vec::new();
            for (k, v) in &merged {
                out.extend(b.push(k, v.as_deref()));
            }
            out.extend(b.finish());
            out
        })
        .await
        .map_err(|e| SnapshotError::Task(e.to_string()))
    }

    /// Records `manifest` (received from another node) as a snapshot of this
    /// group, so a restart restores it. A manifest already there is kept.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn adopt(&self, manifest: &Manifest) -> Result<String, SnapshotError> {
        let name = format!("{}/{}", self.group, manifest.id);
        match self
            .store
            .put_manifest(&name, Bytes::from(manifest.encode()))
            .await
        {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => Ok(name),
            Err(e) => Err(e.into()),
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
