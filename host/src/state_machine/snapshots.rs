//! Snapshotting the state machine: building (full or incremental, while
//! applying goes on), handing a built snapshot to openraft, installing one
//! from the leader (fetching what the store lacks, or the merged catch-up),
//! and keeping snapshots being sent safe from retention.

use std::sync::Arc;

use openraft::SnapshotMeta;

use super::model::Inner;
use super::{KvStateMachine, MERGE_CHUNK, SENDING_GRACE};
use crate::raft::NodeId;
use crate::snapshot::{self, Manifest, SegmentSource, SnapshotError, SnapshotKind, WriteRequest};

impl KvStateMachine {
    /// Manifests being sent to followers (handed to openraft within the
    /// install timeout), which retention must keep.
    pub(super) fn sending(&self) -> Vec<String> {
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
    pub(super) fn bounded_kind(&self, asked: Option<SnapshotKind>) -> SnapshotKind {
        let layers = self.chain().1;
        self.bound(asked.unwrap_or(SnapshotKind::Incremental), layers)
    }

    /// `asked` on a chain of `layers` (0: none), with the chain bound
    /// applied: full without a parent or when an incremental would make the
    /// chain longer than `max-chain`.
    fn bound(&self, asked: SnapshotKind, layers: u32) -> SnapshotKind {
        let max_chain = u32::try_from(self.shared.snapshots.config().max_chain).unwrap_or(u32::MAX);
        crate::sdk::snapshot_kind(asked, layers > 0, layers, max_chain).0
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
            let kind = self.bound(kind, parent.as_ref().map_or(0, Manifest::layers));
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
                blobs: inner
                    .stored_policy()
                    .map(|p| vec![p.policy.hash.clone()])
                    .unwrap_or_default(),
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
        let source = self.segment_source();
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
        let mut hub = std::mem::take(&mut inner.hub);
        *inner = Inner::with_state(loaded.state, loaded.state_hash);
        inner.stats = stats;
        // What came before the snapshot is not history any more: watchers
        // that had not reached it are told so.
        hub.reset(manifest.last_log_id.map_or(0, |l| l.index));
        inner.hub = hub;
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

    pub(super) fn meta_of(m: &Manifest) -> SnapshotMeta<NodeId, openraft::BasicNode> {
        SnapshotMeta {
            last_log_id: m.last_log_id,
            last_membership: m.membership.clone(),
            snapshot_id: m.id.clone(),
        }
    }
}
