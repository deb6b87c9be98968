//! A minimal in-memory KV state machine with whole-state snapshots.
//!
//! It applies [`Request`]s to an ordered map and serves openraft's state
//! machine and snapshot traits, so the log store can be exercised (openraft's
//! storage `Suite`, cluster tests) before the incremental, segment-based state
//! machine lands. Its snapshot is the whole map in one framed, checksummed
//! record (version byte, crc32c, postcard), verified on install.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::raft::{Command, Entry, LogId, NodeId, Request, Response, StorageError, TypeConfig};
use crate::record as format_record;

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Data {
    last_applied: Option<LogId>,
    membership: Membership,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, Default)]
struct Inner {
    data: Data,
    snapshot: Option<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The in-memory KV state machine. Cheap to clone; clones share the state.
#[derive(Debug, Default, Clone)]
pub struct MemStateMachine {
    inner: Arc<Mutex<Inner>>,
}

impl MemStateMachine {
    /// An empty state machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.lock().data.kv.get(key).cloned()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.lock().data.kv.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn apply_request(kv: &mut BTreeMap<Vec<u8>, Vec<u8>>, req: &Request) -> Response {
    let mut changed = 0u64;
    for c in &req.commands {
        match c {
            Command::Put { key, value } => {
                kv.insert(key.clone(), value.clone());
                changed += 1;
            }
            Command::Delete { key } => changed += u64::from(kv.remove(key).is_some()),
            Command::DeleteRange { start, end } => {
                if start < end {
                    let doomed: Vec<Vec<u8>> = kv
                        .range(start.clone()..end.clone())
                        .map(|(k, _)| k.clone())
                        .collect();
                    changed += doomed.len() as u64;
                    for k in doomed {
                        kv.remove(&k);
                    }
                }
            }
            Command::DeletePrefix { prefix } => {
                let doomed: Vec<Vec<u8>> = kv
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                changed += doomed.len() as u64;
                for k in doomed {
                    kv.remove(&k);
                }
            }
        }
    }
    Response {
        changed_keys: changed,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut inner = self.lock();
        let bytes = format_record::encode(&inner.data);
        inner.snapshots_built += 1;
        let last = inner.data.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: inner.data.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index),
                inner.snapshots_built
            ),
        };
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let inner = self.lock();
        Ok((inner.data.last_applied, inner.data.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for e in entries {
            inner.data.last_applied = Some(e.log_id);
            let r = match &e.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(req) => apply_request(&mut inner.data.kv, req),
                EntryPayload::Membership(m) => {
                    inner.data.membership = StoredMembership::new(Some(e.log_id), m.clone());
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
        let data: Data = format_record::decode(&bytes).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        let mut inner = self.lock();
        inner.data = data;
        inner.data.last_applied = meta.last_log_id;
        inner.data.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_apply_in_order() {
        let mut kv = BTreeMap::new();
        let put = |k: &str| Command::Put {
            key: k.into(),
            value: b"v".to_vec(),
        };
        let r = apply_request(
            &mut kv,
            &Request {
                commands: vec![put("a/1"), put("a/2"), put("b/1"), put("c")],
            },
        );
        assert_eq!(r.changed_keys, 4);
        let r = apply_request(
            &mut kv,
            &Request {
                commands: vec![Command::DeletePrefix {
                    prefix: b"a/".to_vec(),
                }],
            },
        );
        assert_eq!(r.changed_keys, 2);
        let r = apply_request(
            &mut kv,
            &Request {
                commands: vec![Command::DeleteRange {
                    start: b"b".to_vec(),
                    end: b"c".to_vec(),
                }],
            },
        );
        assert_eq!(r.changed_keys, 1);
        assert_eq!(kv.keys().collect::<Vec<_>>(), vec![&b"c".to_vec()]);
        let r = apply_request(
            &mut kv,
            &Request {
                commands: vec![Command::Delete {
                    key: b"zz".to_vec(),
                }],
            },
        );
        assert_eq!(r.changed_keys, 0);
    }
}
