//! What a follower installing a snapshot needs: fetching the segments its
//! store lacks, the merged catch-up of delta layers, adopting the manifest.

use bytes::Bytes;

use super::*;

impl Snapshots {
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
        // The blobs the state refers to: a source that lacks one (a node
        // that had not fetched the policy yet) does not stop the install;
        // the controller fetches it from any member before using it.
        for blob in &manifest.blobs {
            if self.store.has_segment(blob).await? {
                continue;
            }
            let Some(source) = source else { continue };
            match source.fetch_segment(blob).await {
                Ok(bytes) => match self.put_blob(blob, bytes.clone()).await {
                    Ok(()) => fetched += bytes.len() as u64,
                    Err(e) => {
                        tracing::warn!(blob = %blob, error = %e, "a blob of the snapshot was refused")
                    }
                },
                Err(e) => {
                    tracing::warn!(blob = %blob, error = %e, "a blob of the snapshot is not at the source")
                }
            }
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
