//! Retention and garbage collection: keep the newest manifests, delete
//! the segments nothing references, pins and grace period respected.

use std::collections::HashSet;
use std::time::SystemTime;

use super::*;

impl Snapshots {
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
                .contains_key(&seg.name)
                || self
                    .held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_deref()
                    == Some(seg.name.as_str());
            if young || pinned {
                continue;
            }
            self.store.delete_segment(&seg.name).await?;
            report.segments += 1;
            report.segment_bytes += seg.size;
        }
        Ok(report)
    }
}
