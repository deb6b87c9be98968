//! Loading and verifying a snapshot chain, and restoring the newest one
//! that verifies.

use std::collections::btree_map::Entry;

use bytes::Bytes;

use super::*;

impl Snapshots {
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
    /// If the store cannot list, or holds a snapshot of format 1 (written
    /// before revisions: [`manifest::OLD_FORMAT`]); damaged snapshots are
    /// skipped.
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
                // Not damage: the whole store predates this build.
                Err(SnapshotError::Manifest { reason, .. }) if reason == manifest::OLD_FORMAT => {
                    return Err(SnapshotError::Manifest { name, reason });
                }
                // Not damage either: the store did not answer. Skipping
                // the snapshot would restore an older one, maybe below the
                // purged log; the caller retries instead.
                Err(e @ SnapshotError::Store(StoreError::Other { .. })) => return Err(e),
                Err(e) => {
                    tracing::warn!(snapshot = %name, error = %e, "skipping a damaged snapshot");
                    // A segment whose bytes are not its name's is damaged
                    // for good: removed, so that an install fetches a good
                    // copy instead of trusting this one.
                    if let SnapshotError::Segment {
                        name: seg,
                        source: segment::SegmentError::Hash { .. },
                    } = &e
                    {
                        match self.store.delete_segment(seg).await {
                            Ok(()) => tracing::warn!(segment = %seg, "removed a damaged segment"),
                            Err(d) => {
                                tracing::warn!(segment = %seg, error = %d, "could not remove a damaged segment")
                            }
                        }
                    }
                    report.skipped.push((name, e.to_string()));
                }
            }
        }
        Ok(report)
    }
}
