//! Writing a snapshot: segments first, then the manifest.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::*;

impl Snapshots {
    /// Writes a snapshot: segments first, then the manifest. The snapshot
    /// exists once this returns.
    ///
    /// # Errors
    /// If the store fails, or an incremental snapshot has no parent. Nothing
    /// half-written is ever visible: without its manifest, a segment is only
    /// garbage for [`retain`](Self::retain).
    pub async fn write(&self, req: WriteRequest) -> Result<Manifest, SnapshotError> {
        let mut pins = self.pinned();
        for b in &req.blobs {
            pins.add(b);
        }
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
            blobs: req.blobs,
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
}
