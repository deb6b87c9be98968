//! The openraft adapter: `RaftStateMachine` and `RaftSnapshotBuilder` for
//! [`KvStateMachine`]. A snapshot travels as its manifest.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};

use super::KvStateMachine;
use crate::raft::{Entry, LogId, NodeId, Response, StorageError, TypeConfig};
use crate::snapshot::{Manifest, Membership};

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
        let (events, revision) = (std::mem::take(&mut inner.events), inner.revision());
        inner.hub.publish(events, revision);
        drop(inner);
        if let Some(p) = policy {
            tracing::info!(index = p.index, policy = %p.policy.label, hash = %p.policy.short_hash(), "applied a policy rollout");
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
