//! The key-value state machine: an ordered map of bytes to bytes that
//! remembers which keys changed since the last snapshot, with incremental,
//! segment-based snapshots.
//!
//! Applying never waits for a snapshot: a snapshot writer gets the base map
//! (an `Arc`, no copy) and, while it holds it, changes go to a small overlay
//! map (a value, or a tombstone) that reads consult first. When the writer is
//! done, the overlay is merged into the base in bounded chunks. The writer's
//! own memory is bounded by a few segments. The state hash (an
//! order-independent sum of per-pair hashes) is maintained with every change
//! and recorded in each manifest; a restore that does not reproduce it is
//! refused.
//!
//! Snapshots travel as their manifest: the [`openraft::Snapshot`] openraft
//! sends holds the manifest bytes, and `install_snapshot` takes the segments
//! from the store (fetching the missing ones from a configured source
//! first).
//!
//! - `model`: the KV model (base, overlay, hash, changed keys) and how
//!   commands apply; plain data;
//! - `snapshots`: build, hand-off to openraft, install, catch-up;
//! - `adapter`: openraft's `RaftStateMachine` and `RaftSnapshotBuilder`;
//! - `policy`: the reserved key that holds the cluster's policy.

mod adapter;
mod model;
mod policy;
mod snapshots;
mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

pub use model::decode_record;
pub use policy::{AppliedPolicy, POLICY_KEY, is_reserved};
pub use watch::{Event, EventKind, Filter, WatchError, WatchLimits, WatchUpdate, Watcher};

use crate::raft::{KeyValue, Listing, LogId};
use crate::snapshot::{
    self, Manifest, RestoreReport, SegmentSource, SnapshotError, SnapshotStore, Snapshots,
};
use model::Inner;

/// Counters about snapshots, for metrics and the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotStats {
    /// Full snapshots written.
    pub full: u64,
    /// Incremental snapshots written.
    pub incremental: u64,
    /// Segment bytes written (new to the store).
    pub bytes_written: u64,
    /// Snapshots installed from another node.
    pub installed: u64,
    /// Segment bytes fetched from elsewhere while installing.
    pub bytes_fetched: u64,
    /// Segment bytes fetched by the last install.
    pub last_install_fetched: u64,
    /// Keys changed since the last snapshot.
    pub dirty_keys: u64,
}

/// How long a snapshot handed to openraft for sending stays protected from
/// retention (longer than the default install timeout).
const SENDING_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// Overlay entries merged into the base per lock hold after a snapshot.
const MERGE_CHUNK: usize = 4_096;

struct Shared {
    inner: Mutex<Inner>,
    snapshots: Arc<Snapshots>,
    /// One snapshot build or install at a time.
    build: tokio::sync::Mutex<()>,
    /// Where to fetch segments the store lacks when installing.
    source: Mutex<Option<Arc<dyn SegmentSource>>>,
    /// The cluster's policy as last applied (or restored).
    policy: tokio::sync::watch::Sender<Option<AppliedPolicy>>,
    /// Snapshots handed to openraft to send to followers, by manifest name,
    /// with when: retention keeps them while followers may still fetch
    /// their segments.
    sending: Mutex<BTreeMap<String, std::time::Instant>>,
    /// Snapshots to keep (a policy may change it).
    retain: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStateMachine")
            .field("group", &self.snapshots.group())
            .finish_non_exhaustive()
    }
}

/// The KV state machine. Cheap to clone; clones share the state.
#[derive(Clone, Debug)]
pub struct KvStateMachine {
    shared: Arc<Shared>,
}

impl KvStateMachine {
    /// Opens the state machine on `snapshots`, restoring the newest snapshot
    /// that verifies (the report lists the newer ones it skipped, and why).
    ///
    /// # Errors
    /// Only if the store cannot be listed.
    pub async fn open(snapshots: Arc<Snapshots>) -> Result<(Self, RestoreReport), SnapshotError> {
        let mut report = snapshots.restore_latest().await?;
        let mut inner = Inner::default();
        if let Some(mut loaded) = report.loaded.take() {
            inner = Inner::with_state(std::mem::take(&mut loaded.state), loaded.state_hash);
            inner.last_applied = loaded.manifest.last_log_id;
            inner.membership = loaded.manifest.membership.clone();
            inner.hub = watch::Hub::new(inner.revision(), WatchLimits::default());
            let bytes = loaded.manifest.encode();
            inner.current = Some((loaded.manifest.clone(), bytes));
            report.loaded = Some(loaded);
        }
        let retain = snapshots.config().retain;
        let policy = inner.stored_policy();
        Ok((
            KvStateMachine {
                shared: Arc::new(Shared {
                    inner: Mutex::new(inner),
                    snapshots,
                    build: tokio::sync::Mutex::new(()),
                    source: Mutex::new(None),
                    policy: tokio::sync::watch::Sender::new(policy),
                    sending: Mutex::new(BTreeMap::new()),
                    retain: std::sync::atomic::AtomicUsize::new(retain),
                }),
            },
            report,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The snapshots this state machine writes.
    pub fn snapshots(&self) -> &Arc<Snapshots> {
        &self.shared.snapshots
    }

    /// The value of client key `key`, if set.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        if is_reserved(key) {
            return None;
        }
        self.lock().get(key).map(model::record_value)
    }

    /// The record (value and revisions) of client key `key`, if set.
    pub fn get_kv(&self, key: &[u8]) -> Option<KeyValue> {
        if is_reserved(key) {
            return None;
        }
        self.lock().record(key)
    }

    /// The reserved key `key`'s value as stored.
    pub fn get_reserved(&self, key: &[u8]) -> Option<Bytes> {
        self.lock().get(key).filter(|_| is_reserved(key)).cloned()
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Vec<(Bytes, Bytes)> {
        self.scan_prefix_after(prefix, None, limit)
    }

    /// [`scan_prefix`](Self::scan_prefix) from the first key after `after`
    /// (for paging).
    pub fn scan_prefix_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Bytes, Bytes)> {
        self.list(prefix, after, limit)
            .kvs
            .into_iter()
            .map(|kv| (Bytes::from(kv.key), kv.value))
            .collect()
    }

    /// Up to `limit` records whose key starts with `prefix`, after `after`
    /// (for paging), in key order, with the revision they were read at.
    pub fn list(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Listing {
        let inner = self.lock();
        let (kvs, more) = inner.list(prefix, after, limit);
        Listing {
            kvs,
            revision: inner.revision(),
            more,
        }
    }

    /// The store's revision: the index of the last applied entry (0 when
    /// nothing was).
    pub fn revision(&self) -> u64 {
        self.lock().revision()
    }

    /// Watches the keys `filter` selects, from after revision `from`
    /// (`None`: from now).
    ///
    /// # Errors
    /// [`WatchError::Compacted`] when the history no longer reaches back to
    /// `from`; [`WatchError::Shutdown`].
    pub fn watch(&self, filter: Filter, from: Option<u64>) -> Result<Watcher, WatchError> {
        self.lock().hub.watch(filter, from)
    }

    /// The oldest revision a watch may start from, and the current one.
    pub fn watch_bounds(&self) -> (u64, u64) {
        self.lock().hub.bounds()
    }

    /// Sets how much history watchers get (at start-up).
    pub fn set_watch_limits(&self, limits: WatchLimits) {
        self.lock().hub.set_limits(limits);
    }

    /// Ends every watcher (the node is shutting down).
    pub fn close_watches(&self) {
        self.lock().hub.close();
    }

    /// Number of keys (reserved keys not counted).
    pub fn len(&self) -> usize {
        self.lock().client_len()
    }

    /// Bytes of keys and values in the state.
    pub fn state_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The cluster's policy as the state holds it (set by the last rollout
    /// entry applied or restored), if any.
    pub fn policy(&self) -> Option<AppliedPolicy> {
        self.shared.policy.borrow().clone()
    }

    /// Follows the cluster's policy: the receiver sees every change, in
    /// apply order (a rollout, or a snapshot install or restore).
    pub fn subscribe_policy(&self) -> tokio::sync::watch::Receiver<Option<AppliedPolicy>> {
        self.shared.policy.subscribe()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state's hash (hex), as recorded in manifests.
    pub fn state_hash(&self) -> String {
        snapshot::hash_hex(self.lock().hash)
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.lock().last_applied
    }

    /// Snapshot counters.
    pub fn stats(&self) -> SnapshotStats {
        let inner = self.lock();
        SnapshotStats {
            dirty_keys: inner.dirty.len() as u64,
            ..inner.stats.clone()
        }
    }

    /// The last snapshot installed from another node since this state
    /// machine opened, with the segment bytes its install fetched.
    pub fn last_install(&self) -> Option<(Manifest, u64)> {
        self.lock().last_install.clone()
    }

    /// The newest snapshot's last log index and its chain's layers (0
    /// without a snapshot), without copying its manifest.
    pub fn chain(&self) -> (Option<u64>, u32) {
        let inner = self.lock();
        let m = inner.current.as_ref().map(|(m, _)| m);
        (
            m.and_then(|m| m.last_log_id).map(|l| l.index),
            m.map_or(0, Manifest::layers),
        )
    }

    /// The newest snapshot's manifest.
    pub fn current_manifest(&self) -> Option<Manifest> {
        self.lock().current.as_ref().map(|(m, _)| m.clone())
    }

    /// Sets how many snapshots to keep.
    pub fn set_retain(&self, n: usize) {
        self.shared
            .retain
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Where to fetch segments this node's store lacks when installing a
    /// snapshot from another node.
    pub fn set_segment_source(&self, source: Option<Arc<dyn SegmentSource>>) {
        *self.shared.source.lock().unwrap_or_else(|e| e.into_inner()) = source;
    }

    /// Where segments and blobs this node's store lacks come from, if set.
    pub(crate) fn segment_source(&self) -> Option<Arc<dyn SegmentSource>> {
        self.shared
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Opens a state machine whose snapshots go to a local directory.
///
/// # Errors
/// If the directory cannot be created or listed.
pub async fn open_in_dir(
    dir: &std::path::Path,
    group: &str,
    config: snapshot::SnapshotConfig,
) -> Result<(KvStateMachine, RestoreReport), SnapshotError> {
    let store: Arc<dyn SnapshotStore> = Arc::new(snapshot::DirStore::open(dir)?);
    KvStateMachine::open(Arc::new(Snapshots::new(store, group, config))).await
}
