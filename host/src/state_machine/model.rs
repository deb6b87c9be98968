//! The KV model: a base map plus an overlay while a snapshot writer holds
//! the base, the running state hash, the changed-key map, and how commands
//! apply. Plain data, no I/O, no locks.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::SnapshotStats;
use super::policy::{AppliedPolicy, POLICY_KEY, is_reserved};
use crate::raft::{Command, LogId, Request, Response};
use crate::snapshot::{KvMap, Manifest, Membership, entry_hash};

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// The state, except what `overlay` overrides.
    pub(super) base: Arc<KvMap>,
    /// Changes not yet in `base`: a value, or `None` for a removal.
    pub(super) overlay: std::collections::BTreeMap<Bytes, Option<Bytes>>,
    /// A snapshot writer holds `base`: changes go to `overlay`.
    pub(super) frozen: bool,
    pub(super) len: usize,
    pub(super) hash: u128,
    /// Keys changed since the last snapshot, with their new value (`None`:
    /// removed), so an incremental snapshot never searches the whole state.
    pub(super) dirty: BTreeMap<Bytes, Option<Bytes>>,
    pub(super) last_applied: Option<LogId>,
    pub(super) membership: Membership,
    /// The newest snapshot and its encoded manifest.
    pub(super) current: Option<(Manifest, Vec<u8>)>,
    /// A snapshot built by [`KvStateMachine::build`] that openraft has not
    /// been told about yet: its next `build_snapshot` returns it.
    pub(super) handoff: Option<Manifest>,
    /// Bytes of keys and values in the state.
    pub(super) bytes: u64,
    /// A rollout entry applied by the last `apply` call.
    pub(super) policy_changed: Option<AppliedPolicy>,
    /// The last snapshot installed from another node, and the segment
    /// bytes that install fetched.
    pub(super) last_install: Option<(Manifest, u64)>,
    pub(super) stats: SnapshotStats,
}

impl Inner {
    pub(super) fn with_state(state: KvMap, hash: u128) -> Inner {
        Inner {
            len: state.len(),
            bytes: state.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum(),
            base: Arc::new(state),
            hash,
            ..Inner::default()
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&Bytes> {
        match self.overlay.get(key) {
            Some(v) => v.as_ref(),
            None => self.base.get(key),
        }
    }

    /// Keys visible to clients.
    pub(super) fn client_len(&self) -> usize {
        self.len - usize::from(self.get(POLICY_KEY).is_some())
    }

    /// The base, for writing; only called when no writer holds it.
    pub(super) fn base_mut(&mut self) -> &mut KvMap {
        if Arc::get_mut(&mut self.base).is_none() {
            tracing::warn!("state base still shared after a snapshot; copying it");
        }
        Arc::make_mut(&mut self.base)
    }

    pub(super) fn set(&mut self, key: Bytes, value: Option<Bytes>) {
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

    pub(super) fn put(&mut self, key: Bytes, value: Bytes) -> bool {
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

    pub(super) fn delete(&mut self, key: &[u8]) -> bool {
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

    pub(super) fn delete_keys(&mut self, keys: Vec<Bytes>) -> u64 {
        keys.iter().filter(|k| self.delete(k)).count() as u64
    }

    /// Pairs with keys from `start` (while `keep` holds), base and overlay
    /// merged, in key order.
    pub(super) fn scan(
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
    pub(super) fn merge_some(&mut self, n: usize) -> bool {
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
    pub(super) fn apply(&mut self, req: Request, index: u64) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn put(k: &str) -> Command {
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
    pub(super) fn commands_apply_in_order_and_keep_the_hash() {
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
        assert_eq!(inner.hash, crate::snapshot::state_hash(&inner.base));
        assert_eq!(inner.dirty.len(), 4, "every key touched is dirty");
        inner.apply_test(Request {
            commands: vec![Command::Put {
                key: b"c".to_vec(),
                value: b"w".to_vec(),
            }],
        });
        assert_eq!(inner.hash, crate::snapshot::state_hash(&inner.base));
    }

    #[test]
    pub(super) fn a_frozen_base_is_untouched_and_the_overlay_merges_back() {
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
        assert_eq!(inner.hash, crate::snapshot::state_hash(&inner.base));
    }
}
