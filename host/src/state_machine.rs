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
//! Snapshots travel as their manifest: the [`Snapshot`] openraft sends holds
//! the manifest bytes, and [`install_snapshot`](RaftStateMachine::install_snapshot)
//! takes the segments from the store (fetching the missing ones from a
//! configured source first).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};

use crate::raft::{
    Command, Entry, LogId, NodeId, PolicySpec, Request, Response, StorageError, TypeConfig,
};
use crate::snapshot::{
    self, KvMap, Manifest, Membership, RestoreReport, SegmentSource, SnapshotError, SnapshotKind,
    SnapshotStore, Snapshots, WriteRequest, entry_hash,
};

/// The key under which the state holds the cluster's policy. Keys that start
/// with `0xFF` are reserved: client commands never read or change them (and
/// the HTTP API, whose keys are UTF-8, cannot name them), but they are part
/// of the state, its hash and its snapshots.
pub const POLICY_KEY: &[u8] = b"\xfframrod/policy";

/// Whether `key` is reserved for ramrod (starts with `0xFF`).
pub fn is_reserved(key: &[u8]) -> bool {
    key.first() == Some(&0xFF)
}

/// The cluster's policy as the state holds it: what a rollout entry set, and
/// the index of that entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedPolicy {
    /// The log index of the rollout entry: every node runs this policy for
    /// every decision made after applying it.
    pub index: u64,
    /// The policy.
    pub spec: Arc<PolicySpec>,
}

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

#[derive(Debug, Default)]
struct Inner {
    /// The state, except what `overlay` overrides.
    base: Arc<KvMap>,
    /// Changes not yet in `base`: a value, or `None` for a removal.
    overlay: std::collections::BTreeMap<Bytes, Option<Bytes>>,
    /// A snapshot writer holds `base`: changes go to `overlay`.
    frozen: bool,
    len: usize,
    hash: u128,
    /// Keys changed since the last snapshot, with their new value (`None`:
    /// removed), so an incremental snapshot never searches the whole state.
    dirty: BTreeMap<Bytes, Option<Bytes>>,
    last_applied: Option<LogId>,
    membership: Membership,
    /// The newest snapshot and its encoded manifest.
    current: Option<(Manifest, Vec<u8>)>,
    /// A snapshot built by [`KvStateMachine::build`] that openraft has not
    /// been told about yet: its next `build_snapshot` returns it.
    handoff: Option<Manifest>,
    /// Bytes of keys and values in the state.
    bytes: u64,
    /// A rollout entry applied by the last `apply` call.
    policy_changed: Option<AppliedPolicy>,
    /// The last snapshot installed from another node, and the segment
    /// bytes that install fetched.
    last_install: Option<(Manifest, u64)>,
    stats: SnapshotStats,
}

impl Inner {
    fn with_state(state: KvMap, hash: u128) -> Inner {
        Inner {
            len: state.len(),
            bytes: state.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum(),
            base: Arc::new(state),
            hash,
            ..Inner::default()
        }
    }

    fn get(&self, key: &[u8]) -> Option<&Bytes> {
        match self.overlay.get(key) {
            Some(v) => v.as_ref(),
            None => self.base.get(key),
        }
    }

    /// The policy the state holds, if a rollout set one.
    fn stored_policy(&self) -> Option<AppliedPolicy> {
        let bytes = self.get(POLICY_KEY)?;
        match postcard::from_bytes(bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, "the state's policy record does not decode; ignoring it");
                None
            }
        }
    }

    /// Keys visible to clients.
    fn client_len(&self) -> usize {
        self.len - usize::from(self.get(POLICY_KEY).is_some())
    }

    /// The base, for writing; only called when no writer holds it.
    fn base_mut(&mut self) -> &mut KvMap {
        if Arc::get_mut(&mut self.base).is_none() {
            tracing::warn!("state base still shared after a snapshot; copying it");
        }
        Arc::make_mut(&mut self.base)
    }

    fn set(&mut self, key: Bytes, value: Option<Bytes>) {
        if self.frozen {
            self.overlay.insert(key, value);
        } else {
            self.overlay.remove(&key);
            match value {
                Some(v) => {
                    self.base_mut().insert(key, v);
                }
                None => {
                    self.base_mut().remove(&key);
                }
            }
        }
    }

    fn put(&mut self, key: Bytes, value: Bytes) -> bool {
        self.hash = self.hash.wrapping_add(entry_hash(&key, &value));
        self.bytes += (key.len() + value.len()) as u64;
        match self.get(&key).map(|old| (entry_hash(&key, old), old.len())) {
            Some((old_hash, old_len)) => {
                self.hash = self.hash.wrapping_sub(old_hash);
                self.bytes -= (key.len() + old_len) as u64;
            }
            None => self.len += 1,
        }
        self.set(key.clone(), Some(value.clone()));
        self.dirty.insert(key, Some(value));
        true
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        let Some((old_hash, old_len)) = self.get(key).map(|old| (entry_hash(key, old), old.len()))
        else {
            return false;
        };
        self.hash = self.hash.wrapping_sub(old_hash);
        self.bytes -= (key.len() + old_len) as u64;
        self.len -= 1;
        let key = Bytes::copy_from_slice(key);
        self.set(key.clone(), None);
        self.dirty.insert(key, None);
        true
    }

    fn delete_keys(&mut self, keys: Vec<Bytes>) -> u64 {
        keys.iter().filter(|k| self.delete(k)).count() as u64
    }

    /// Pairs with keys from `start` (while `keep` holds), base and overlay
    /// merged, in key order.
    fn scan(
        &self,
        start: &Bytes,
        keep: impl Fn(&[u8]) -> bool,
        limit: usize,
    ) -> Vec<(Bytes, Bytes)> {
        let mut out = Vec::new();
        let mut base = self
            .base
            .range(start.clone()..)
            .take_while(|(k, _)| keep(k))
            .peekable();
        let mut over = self
            .overlay
            .range(start.clone()..)
            .take_while(|(k, _)| keep(k))
            .peekable();
        while out.len() < limit {
            let pick_overlay = match (base.peek(), over.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((bk, _)), Some((ok, _))) => ok <= bk,
            };
            if pick_overlay {
                let (k, v) = over.next().expect("peeked");
                if base.peek().is_some_and(|(bk, _)| *bk == k) {
                    base.next();
                }
                if let Some(v) = v
                    && !is_reserved(k)
                {
                    out.push((k.clone(), v.clone()));
                }
            } else {
                let (k, v) = base.next().expect("peeked");
                if !is_reserved(k) {
                    out.push((k.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// Moves up to `n` overlay entries into the base; true when none is left.
    fn merge_some(&mut self, n: usize) -> bool {
        for _ in 0..n {
            let Some((k, v)) = self.overlay.pop_first() else {
                return true;
            };
            match v {
                Some(v) => {
                    self.base_mut().insert(k, v);
                }
                None => {
                    self.base_mut().remove(&k);
                }
            }
        }
        self.overlay.is_empty()
    }

    /// Applies the commands of the entry at `index`. Client commands never
    /// touch reserved keys (scans skip them; puts and deletes of them are
    /// ignored).
    fn apply(&mut self, req: Request, index: u64) -> Response {
        let mut changed = 0u64;
        for c in req.commands {
            match c {
                Command::Put { key, .. } | Command::Delete { key } if is_reserved(&key) => {}
                Command::Put { key, value } => {
                    changed += u64::from(self.put(Bytes::from(key), Bytes::from(value)));
                }
                Command::Delete { key } => changed += u64::from(self.delete(&key)),
                Command::SetPolicy(spec) => {
                    let applied = AppliedPolicy {
                        index,
                        spec: Arc::new(spec),
                    };
                    let value = postcard::to_allocvec(&applied).expect("a policy serializes");
                    self.put(Bytes::from_static(POLICY_KEY), Bytes::from(value));
                    self.policy_changed = Some(applied);
                }
                Command::DeleteRange { start, end } => {
                    if start < end {
                        let doomed: Vec<Bytes> = self
                            .scan(&Bytes::from(start), |k| k < &end[..], usize::MAX)
                            .into_iter()
                            .map(|(k, _)| k)
                            .collect();
                        changed += self.delete_keys(doomed);
                    }
                }
                Command::DeletePrefix { prefix } => {
                    let doomed: Vec<Bytes> = self
                        .scan(
                            &Bytes::from(prefix.clone()),
                            |k| k.starts_with(&prefix),
                            usize::MAX,
                        )
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect();
                    changed += self.delete_keys(doomed);
                }
            }
        }
        Response {
            changed_keys: changed,
        }
    }
}

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

    /// The value of `key`, if set.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.lock().get(key).cloned()
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
        let start = match after {
            Some(a) if a >= prefix => {
                let mut k = a.to_vec();
                k.push(0);
                Bytes::from(k)
            }
            _ => Bytes::copy_from_slice(prefix),
        };
        self.lock().scan(&start, |k| k.starts_with(prefix), limit)
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

    /// Manifests being sent to followers (handed to openraft within the
    /// install timeout), which retention must keep.
    fn sending(&self) -> Vec<String> {
        let mut map = self
            .shared
            .sending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.retain(|_, at| at.elapsed() < SENDING_GRACE);
        map.keys().cloned().collect()
    }

    /// Tells openraft about a snapshot [`build`](Self::build) wrote: the
    /// next `build_snapshot` openraft runs (after `trigger().snapshot()`)
    /// returns `manifest` instead of writing a new one.
    pub fn hand_off(&self, manifest: Manifest) {
        self.lock().handoff = Some(manifest);
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

    /// Builds a snapshot of `kind` (`None`: incremental when a parent
    /// exists), with the chain bound applied (an incremental that would make
    /// the chain longer than `max-chain` is full), then applies retention.
    /// Applying continues while it runs.
    ///
    /// # Errors
    /// If writing fails; the changed keys are then kept for the next one.
    pub async fn build(&self, kind: Option<SnapshotKind>) -> Result<Manifest, SnapshotError> {
        let kind = self.bounded_kind(kind);
        self.build_for(kind, "caller").await
    }

    /// The kind a build asked to be `asked` is once the chain bound applies.
    fn bounded_kind(&self, asked: Option<SnapshotKind>) -> SnapshotKind {
        let parent = self.lock().current.as_ref().map(|(m, _)| m.clone());
        self.bound(asked.unwrap_or(SnapshotKind::Incremental), parent.as_ref())
    }

    /// `asked` on top of `parent`, with the chain bound applied: full
    /// without a parent or when an incremental would make the chain longer
    /// than `max-chain`.
    fn bound(&self, asked: SnapshotKind, parent: Option<&Manifest>) -> SnapshotKind {
        let chain = parent.map_or(0, |m| u32::try_from(1 + m.deltas.len()).unwrap_or(u32::MAX));
        let bounds = crate::sdk::Bounds {
            max_chain: u32::try_from(self.shared.snapshots.config().max_chain).unwrap_or(u32::MAX),
            ..crate::sdk::Bounds::default()
        };
        crate::sdk::snapshot_kind(asked, parent.is_some(), chain, &bounds).0
    }

    /// Builds a snapshot of `kind` as the caller planned it, recording
    /// `requested_by` in the manifest, then applies retention. The chain
    /// bound is checked again under the build lock (an install may have
    /// changed the chain since the caller planned): full without a parent,
    /// or when an incremental would make the chain too long.
    ///
    /// # Errors
    /// If writing fails; the changed keys are then kept for the next one.
    pub async fn build_for(
        &self,
        kind: SnapshotKind,
        requested_by: &str,
    ) -> Result<Manifest, SnapshotError> {
        let _one = self.shared.build.lock().await;
        let req = {
            let mut inner = self.lock();
            let parent = inner.current.as_ref().map(|(m, _)| m.clone());
            let kind = self.bound(kind, parent.as_ref());
            // Later changes go to the overlay until the writer is done.
            if !inner.overlay.is_empty() {
                // A previous merge is unfinished: finish it first (bounded
                // by what was applied during the last snapshot).
                inner.frozen = false;
                inner.merge_some(usize::MAX);
            }
            inner.frozen = true;
            WriteRequest {
                kind,
                parent,
                state: inner.base.clone(),
                changed: Arc::new(std::mem::take(&mut inner.dirty)),
                last_log_id: inner.last_applied,
                membership: inner.membership.clone(),
                state_hash: inner.hash,
                requested_by: requested_by.to_string(),
            }
        };
        let kind = req.kind;
        let changed = req.changed.clone();
        let result = self.shared.snapshots.write(req).await;
        // The writer has dropped its hold on the base: merge the overlay in
        // chunks, releasing the lock between them.
        self.lock().frozen = false;
        loop {
            let done = self.lock().merge_some(MERGE_CHUNK);
            if done {
                break;
            }
            tokio::task::yield_now().await;
        }
        match result {
            Ok(m) => {
                {
                    let mut inner = self.lock();
                    match kind {
                        SnapshotKind::Full => inner.stats.full += 1,
                        SnapshotKind::Incremental => inner.stats.incremental += 1,
                    }
                    inner.stats.bytes_written += m.bytes_written;
                    inner.current = Some((m.clone(), m.encode()));
                }
                let keep = self
                    .shared
                    .retain
                    .load(std::sync::atomic::Ordering::Relaxed);
                let snaps = &self.shared.snapshots;
                let current = format!("{}/{}", snaps.group(), m.id);
                let sending = self.sending();
                if let Err(e) = snaps
                    .retain_protecting(keep, Some(&current), &sending)
                    .await
                {
                    tracing::warn!(error = %e, "snapshot retention failed; will retry after the next one");
                }
                Ok(m)
            }
            Err(e) => {
                // Keep the changes for the next snapshot.
                // Keep the changes for the next snapshot; newer ones win.
                let mut inner = self.lock();
                for (k, v) in changed.iter() {
                    inner.dirty.entry(k.clone()).or_insert_with(|| v.clone());
                }
                Err(e)
            }
        }
    }

    /// Installs the snapshot described by `manifest`: fetches missing
    /// segments, verifies and loads the chain, adopts the manifest, and
    /// replaces the state. Returns the bytes fetched.
    ///
    /// # Errors
    /// If a segment is missing everywhere or damaged; the state is unchanged.
    pub async fn install(&self, manifest: &Manifest) -> Result<u64, SnapshotError> {
        let _one = self.shared.build.lock().await;
        let snaps = &self.shared.snapshots;
        let source = self
            .shared
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let name = format!("{}/{}", snaps.group(), manifest.id);
        // The merged catch-up when it applies; the manifest's own layers
        // otherwise, or if the merged chain does not restore the state.
        let merged = self.catch_up(manifest, source.as_deref()).await;
        let (local, fetched, loaded) = match merged {
            Some((local, fetched)) => match snaps.load(&name, &local).await {
                Ok(loaded) => (local, fetched, loaded),
                Err(e) => {
                    tracing::warn!(error = %e, "the merged catch-up did not restore the snapshot; fetching its layers");
                    let more = snaps.fetch_missing(manifest, source.as_deref()).await?;
                    let loaded = snaps.load(&name, manifest).await?;
                    (manifest.clone(), fetched + more, loaded)
                }
            },
            None => {
                let fetched = snaps.fetch_missing(manifest, source.as_deref()).await?;
                let loaded = snaps.load(&name, manifest).await?;
                (manifest.clone(), fetched, loaded)
            }
        };
        snaps.adopt(&local).await?;
        let manifest = &local;
        let mut inner = self.lock();
        let stats = std::mem::take(&mut inner.stats);
        *inner = Inner::with_state(loaded.state, loaded.state_hash);
        inner.stats = stats;
        inner.last_install = Some((manifest.clone(), fetched));
        inner.last_applied = manifest.last_log_id;
        inner.membership = manifest.membership.clone();
        inner.current = Some((manifest.clone(), manifest.encode()));
        inner.stats.installed += 1;
        inner.stats.bytes_fetched += fetched;
        inner.stats.last_install_fetched = fetched;
        let policy = inner.stored_policy();
        drop(inner);
        self.shared.policy.send_if_modified(|p| {
            let changed = *p != policy;
            *p = policy;
            changed
        });
        tracing::info!(snapshot = %manifest.id, fetched, "installed a snapshot from the leader");
        Ok(fetched)
    }

    /// A follower that holds the base and the first deltas of `m` but lacks
    /// two or more of its later deltas asks `source` for those deltas
    /// merged (each changed key once) instead of fetching each. Returns the
    /// local chain (same id, index, keys and state hash as `m`; the lacking
    /// deltas replaced by the merged layer) and the bytes fetched; `None`
    /// when it does not apply or the source cannot merge.
    async fn catch_up(
        &self,
        m: &Manifest,
        source: Option<&dyn SegmentSource>,
    ) -> Option<(Manifest, u64)> {
        let source = source?;
        let store = self.shared.snapshots.store();
        let layers: Vec<&snapshot::Layer> = std::iter::once(&m.base).chain(&m.deltas).collect();
        let mut have = 0;
        'layers: for l in &layers {
            for seg in &l.segments {
                if !store.has_segment(&seg.name).await.ok()? {
                    break 'layers;
                }
            }
            have += 1;
        }
        if have == 0 || layers.len() - have < 2 {
            return None;
        }
        let segments = match source.merged_layers(m, have).await? {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no merged catch-up; fetching the layers");
                return None;
            }
        };
        let mut refs = Vec::new();
        let mut fetched = 0;
        for bytes in segments {
            let name = snapshot::segment::name_of(&bytes);
            let records = match snapshot::segment::read(&name, &bytes, |_, _| {}) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "a merged catch-up segment is damaged; fetching the layers");
                    return None;
                }
            };
            let len = bytes.len() as u64;
            fetched += len;
            store.put_segment(&name, bytes).await.ok()?;
            refs.push(snapshot::SegmentRef {
                name,
                bytes: len,
                records,
            });
        }
        let mut local = m.clone();
        local.deltas.truncate(have - 1);
        local.deltas.push(snapshot::Layer {
            last_log_id: m.last_log_id,
            segments: refs,
        });
        Some((local, fetched))
    }

    fn meta_of(m: &Manifest) -> SnapshotMeta<NodeId, openraft::BasicNode> {
        SnapshotMeta {
            last_log_id: m.last_log_id,
            last_membership: m.membership.clone(),
            snapshot_id: m.id.clone(),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for KvStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let handed = {
            let mut inner = self.lock();
            let current = inner.current.as_ref().map(|(m, _)| m.id.clone());
            // Only the newest snapshot: an older hand-off (openraft ignored
            // the trigger) is stale.
            inner
                .handoff
                .take()
                .filter(|m| Some(&m.id) == current.as_ref())
        };
        let m = match handed {
            Some(m) => m,
            // openraft's own snapshot policy (the baseline mode) asked.
            None => self
                .build_for(self.bounded_kind(None), "openraft")
                .await
                .map_err(|e| {
                    StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e)))
                })?,
        };
        Ok(Snapshot {
            meta: Self::meta_of(&m),
            snapshot: Box::new(Cursor::new(m.encode())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        let mut policy = None;
        for e in entries {
            inner.last_applied = Some(e.log_id);
            let r = match e.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(req) => inner.apply(req, e.log_id.index),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(e.log_id), m);
                    Response::default()
                }
            };
            out.push(r);
            if let Some(p) = inner.policy_changed.take() {
                policy = Some(p);
            }
        }
        drop(inner);
        if let Some(p) = policy {
            tracing::info!(index = p.index, policy = %p.spec.label, "applied a policy rollout");
            self.shared.policy.send_replace(Some(p));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let read_err = |e: String| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(e),
            ))
        };
        let manifest = Manifest::decode(&bytes).map_err(read_err)?;
        if manifest.last_log_id != meta.last_log_id || manifest.id != meta.snapshot_id {
            return Err(read_err(format!(
                "the manifest ({}) does not match the snapshot meta ({})",
                manifest.id, meta.snapshot_id
            )));
        }
        self.install(&manifest)
            .await
            .map_err(|e| read_err(e.to_string()))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let inner = self.lock();
        if let Some((m, _)) = &inner.current {
            // openraft asks for it to send it: keep it from retention.
            let name = format!("{}/{}", self.shared.snapshots.group(), m.id);
            self.shared
                .sending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, std::time::Instant::now());
        }
        Ok(inner.current.as_ref().map(|(m, bytes)| Snapshot {
            meta: Self::meta_of(m),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> Command {
        Command::Put {
            key: k.into(),
            value: b"v".to_vec(),
        }
    }

    impl Inner {
        fn apply_test(&mut self, req: Request) -> Response {
            self.apply(req, 1)
        }
    }

    #[test]
    fn commands_apply_in_order_and_keep_the_hash() {
        let mut inner = Inner::default();
        let r = inner.apply_test(Request {
            commands: vec![put("a/1"), put("a/2"), put("b/1"), put("c")],
        });
        assert_eq!(r.changed_keys, 4);
        let r = inner.apply_test(Request {
            commands: vec![Command::DeletePrefix {
                prefix: b"a/".to_vec(),
            }],
        });
        assert_eq!(r.changed_keys, 2);
        let r = inner.apply_test(Request {
            commands: vec![Command::DeleteRange {
                start: b"b".to_vec(),
                end: b"c".to_vec(),
            }],
        });
        assert_eq!(r.changed_keys, 1);
        assert_eq!(
            inner.base.keys().collect::<Vec<_>>(),
            vec![&Bytes::from("c")]
        );
        let r = inner.apply_test(Request {
            commands: vec![Command::Delete {
                key: b"zz".to_vec(),
            }],
        });
        assert_eq!(r.changed_keys, 0);
        assert_eq!(inner.hash, snapshot::state_hash(&inner.base));
        assert_eq!(inner.dirty.len(), 4, "every key touched is dirty");
        inner.apply_test(Request {
            commands: vec![Command::Put {
                key: b"c".to_vec(),
                value: b"w".to_vec(),
            }],
        });
        assert_eq!(inner.hash, snapshot::state_hash(&inner.base));
    }

    #[test]
    fn a_frozen_base_is_untouched_and_the_overlay_merges_back() {
        let mut inner = Inner::default();
        inner.apply_test(Request {
            commands: vec![put("a"), put("b"), put("c")],
        });
        inner.frozen = true;
        let frozen = inner.base.clone();
        inner.apply_test(Request {
            commands: vec![
                put("d"),
                Command::Delete { key: b"a".to_vec() },
                Command::DeletePrefix {
                    prefix: b"c".to_vec(),
                },
            ],
        });
        assert_eq!(frozen.len(), 3, "the writer's view does not change");
        assert_eq!(inner.len, 2);
        assert!(inner.get(b"a").is_none() && inner.get(b"d").is_some());
        let keys: Vec<Bytes> = inner
            .scan(&Bytes::new(), |_| true, 10)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![Bytes::from("b"), Bytes::from("d")]);
        drop(frozen);
        inner.frozen = false;
        assert!(inner.merge_some(1) || inner.merge_some(usize::MAX));
        assert_eq!(inner.base.len(), 2);
        assert_eq!(inner.hash, snapshot::state_hash(&inner.base));
    }
}
