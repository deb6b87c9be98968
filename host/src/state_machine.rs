//! The key-value state machine: an ordered map of bytes to bytes that
//! remembers which keys changed since the last snapshot, with incremental,
//! segment-based snapshots.
//!
//! The map is persistent (`imbl::OrdMap`): freezing it for a snapshot is an
//! `O(1)` clone, so applying goes on while a snapshot of a large state is
//! written, and the writer's memory is bounded by a few segments. The state
//! hash (an order-independent sum of per-pair hashes) is maintained with
//! every change and recorded in each manifest; a restore that does not
//! reproduce it is refused.
//!
//! Snapshots travel as their manifest: the [`Snapshot`] openraft sends holds
//! the manifest bytes, and [`install_snapshot`](RaftStateMachine::install_snapshot)
//! takes the segments from the store (fetching the missing ones from a
//! configured source first).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};

use crate::raft::{Command, Entry, LogId, NodeId, Request, Response, StorageError, TypeConfig};
use crate::snapshot::{
    self, KvMap, Manifest, Membership, RestoreReport, SnapshotError, SnapshotKind, SnapshotStore,
    Snapshots, WriteRequest, entry_hash,
};

/// Counters about snapshots, for metrics and the controller.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Keys changed since the last snapshot.
    pub dirty_keys: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: KvMap,
    hash: u128,
    /// Keys changed since the last snapshot.
    dirty: BTreeSet<Bytes>,
    last_applied: Option<LogId>,
    membership: Membership,
    /// The newest snapshot and its encoded manifest.
    current: Option<(Manifest, Vec<u8>)>,
    /// What the next build should be, and who asked.
    next: Option<(SnapshotKind, String)>,
    stats: SnapshotStats,
}

impl Inner {
    fn put(&mut self, key: Bytes, value: Bytes) -> bool {
        self.hash = self.hash.wrapping_add(entry_hash(&key, &value));
        if let Some(old) = self.map.insert(key.clone(), value) {
            self.hash = self.hash.wrapping_sub(entry_hash(&key, &old));
        }
        self.dirty.insert(key);
        true
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        match self.map.remove_with_key(key) {
            Some((k, old)) => {
                self.hash = self.hash.wrapping_sub(entry_hash(&k, &old));
                self.dirty.insert(k);
                true
            }
            None => false,
        }
    }

    fn delete_keys(&mut self, keys: Vec<Bytes>) -> u64 {
        keys.iter().filter(|k| self.delete(k)).count() as u64
    }

    fn apply(&mut self, req: Request) -> Response {
        let mut changed = 0u64;
        for c in req.commands {
            match c {
                Command::Put { key, value } => {
                    changed += u64::from(self.put(Bytes::from(key), Bytes::from(value)));
                }
                Command::Delete { key } => changed += u64::from(self.delete(&key)),
                Command::DeleteRange { start, end } => {
                    if start < end {
                        let doomed: Vec<Bytes> = self
                            .map
                            .range(Bytes::from(start)..Bytes::from(end))
                            .map(|(k, _)| k.clone())
                            .collect();
                        changed += self.delete_keys(doomed);
                    }
                }
                Command::DeletePrefix { prefix } => {
                    let doomed: Vec<Bytes> = self
                        .map
                        .range(Bytes::from(prefix.clone())..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, _)| k.clone())
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
    source: Mutex<Option<Arc<dyn SnapshotStore>>>,
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
        if let Some(loaded) = report.loaded.take() {
            inner.map = loaded.state.clone();
            inner.hash = loaded.state_hash;
            inner.last_applied = loaded.manifest.last_log_id;
            inner.membership = loaded.manifest.membership.clone();
            let bytes = loaded.manifest.encode();
            inner.current = Some((loaded.manifest.clone(), bytes));
            report.loaded = Some(loaded);
        }
        let retain = snapshots.config().retain;
        Ok((
            KvStateMachine {
                shared: Arc::new(Shared {
                    inner: Mutex::new(inner),
                    snapshots,
                    build: tokio::sync::Mutex::new(()),
                    source: Mutex::new(None),
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
        self.lock().map.get(key).cloned()
    }

    /// Up to `limit` pairs whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Vec<(Bytes, Bytes)> {
        let map = self.lock().map.clone();
        map.range(Bytes::copy_from_slice(prefix)..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.lock().map.len()
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

    /// The newest snapshot's manifest.
    pub fn current_manifest(&self) -> Option<Manifest> {
        self.lock().current.as_ref().map(|(m, _)| m.clone())
    }

    /// Makes the next snapshot openraft builds of `kind`, recording who asked.
    pub fn request_kind(&self, kind: SnapshotKind, requested_by: &str) {
        self.lock().next = Some((kind, requested_by.to_string()));
    }

    /// Sets how many snapshots to keep.
    pub fn set_retain(&self, n: usize) {
        self.shared
            .retain
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Where to fetch segments this node's store lacks when installing a
    /// snapshot from another node.
    pub fn set_segment_source(&self, source: Option<Arc<dyn SnapshotStore>>) {
        *self.shared.source.lock().unwrap_or_else(|e| e.into_inner()) = source;
    }

    /// Builds a snapshot of `kind` (`None`: the requested kind, else
    /// incremental when a parent exists and the chain is shorter than
    /// `max_chain`, else full), then applies retention. Applying continues
    /// while it runs.
    ///
    /// # Errors
    /// If writing fails; the changed keys are then kept for the next one.
    pub async fn build(&self, kind: Option<SnapshotKind>) -> Result<Manifest, SnapshotError> {
        let _one = self.shared.build.lock().await;
        let max_chain = self.shared.snapshots.config().max_chain;
        let req = {
            let mut inner = self.lock();
            let (asked, by) = match (kind, inner.next.take()) {
                (Some(k), _) => (Some(k), "caller".to_string()),
                (None, Some((k, by))) => (Some(k), by),
                (None, None) => (None, "openraft".to_string()),
            };
            let parent = inner.current.as_ref().map(|(m, _)| m.clone());
            let kind = match (asked, &parent) {
                (_, None) => SnapshotKind::Full,
                (Some(k), Some(_)) => k,
                (None, Some(p)) if 1 + p.deltas.len() < max_chain => SnapshotKind::Incremental,
                (None, Some(_)) => SnapshotKind::Full,
            };
            WriteRequest {
                kind,
                parent,
                state: inner.map.clone(),
                changed: Arc::new(std::mem::take(&mut inner.dirty)),
                last_log_id: inner.last_applied,
                membership: inner.membership.clone(),
                state_hash: inner.hash,
                requested_by: by,
            }
        };
        let kind = req.kind;
        let changed = req.changed.clone();
        match self.shared.snapshots.write(req).await {
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
                if let Err(e) = self.shared.snapshots.retain(keep).await {
                    tracing::warn!(error = %e, "snapshot retention failed; will retry after the next one");
                }
                Ok(m)
            }
            Err(e) => {
                // Keep the changes for the next snapshot.
                self.lock().dirty.extend(changed.iter().cloned());
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
        let fetched = snaps.fetch_missing(manifest, source.as_deref()).await?;
        let name = format!("{}/{}", snaps.group(), manifest.id);
        let loaded = snaps.load(&name, manifest).await?;
        snaps.adopt(manifest).await?;
        let mut inner = self.lock();
        inner.map = loaded.state;
        inner.hash = loaded.state_hash;
        inner.dirty.clear();
        inner.last_applied = manifest.last_log_id;
        inner.membership = manifest.membership.clone();
        inner.current = Some((manifest.clone(), manifest.encode()));
        inner.stats.installed += 1;
        inner.stats.bytes_fetched += fetched;
        Ok(fetched)
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
        let m = self.build(None).await.map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(None, AnyError::new(&e)))
        })?;
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
        for e in entries {
            inner.last_applied = Some(e.log_id);
            let r = match e.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(req) => inner.apply(req),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(e.log_id), m);
                    Response::default()
                }
            };
            out.push(r);
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

    #[test]
    fn commands_apply_in_order_and_keep_the_hash() {
        let mut inner = Inner::default();
        let r = inner.apply(Request {
            commands: vec![put("a/1"), put("a/2"), put("b/1"), put("c")],
        });
        assert_eq!(r.changed_keys, 4);
        let r = inner.apply(Request {
            commands: vec![Command::DeletePrefix {
                prefix: b"a/".to_vec(),
            }],
        });
        assert_eq!(r.changed_keys, 2);
        let r = inner.apply(Request {
            commands: vec![Command::DeleteRange {
                start: b"b".to_vec(),
                end: b"c".to_vec(),
            }],
        });
        assert_eq!(r.changed_keys, 1);
        assert_eq!(
            inner.map.keys().collect::<Vec<_>>(),
            vec![&Bytes::from("c")]
        );
        let r = inner.apply(Request {
            commands: vec![Command::Delete {
                key: b"zz".to_vec(),
            }],
        });
        assert_eq!(r.changed_keys, 0);
        assert_eq!(inner.hash, snapshot::state_hash(&inner.map));
        assert_eq!(inner.dirty.len(), 4, "every key touched is dirty");
        inner.apply(Request {
            commands: vec![Command::Put {
                key: b"c".to_vec(),
                value: b"w".to_vec(),
            }],
        });
        assert_eq!(inner.hash, snapshot::state_hash(&inner.map));
    }
}
