//! The KV model: a base map plus an overlay while a snapshot writer holds
//! the base, the running state hash, the changed-key map, and how commands
//! (transactions included) apply. Plain data, no I/O, no locks.
//!
//! A client key's stored value is its record: the revisions
//! (`create_revision`, `mod_revision`, `version`, each u64 LE) in front of
//! the value. So revisions are in every snapshot segment and in the state
//! hash, and travel, restore and install with the values, through the same
//! code. Reserved keys hold their value alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::SnapshotStats;
use super::policy::{AppliedPolicy, POLICY_KEY, is_reserved};
use super::watch::{Event, EventKind, Hub};
use crate::raft::{
    Command, KeyValue, LogId, OpResult, PolicyRef, Request, Response, Txn, TxnOp, TxnResult,
};
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
    /// Changes made by the `apply` call running, for watchers.
    pub(super) events: Vec<Event>,
    /// Recent changes and the watchers' broadcast.
    pub(super) hub: Hub,
}

/// Bytes of revisions in front of a client key's value.
const RECORD_HEAD: usize = 24;

/// A client key's stored value: its revisions, then the value.
fn encode_record(create: u64, modified: u64, version: u64, value: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(RECORD_HEAD + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(value);
    Bytes::from(out)
}

/// The record of client key `key` from its stored value (a value shorter
/// than the revisions, which no build writes, reads as a value with none).
pub fn decode_record(key: &[u8], stored: &Bytes) -> KeyValue {
    let (create_revision, mod_revision, version, value) = split_record(stored);
    KeyValue {
        key: key.to_vec(),
        value,
        create_revision,
        mod_revision,
        version,
    }
}

/// A stored record's revisions (create, mod, version) and value, without
/// copying it.
fn split_record(stored: &Bytes) -> (u64, u64, u64, Bytes) {
    if stored.len() < RECORD_HEAD {
        return (0, 0, 0, stored.clone());
    }
    let u = |i: usize| u64::from_le_bytes(stored[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    (u(0), u(1), u(2), stored.slice(RECORD_HEAD..))
}

/// A stored record's value, without copying it.
pub(super) fn record_value(stored: &Bytes) -> Bytes {
    split_record(stored).3
}

impl Inner {
    /// The store's revision: the last applied index.
    pub(super) fn revision(&self) -> u64 {
        self.last_applied.map_or(0, |l| l.index)
    }

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

    /// Stores `stored` under `key` as it is (a reserved key's value, or a
    /// record), in place of `old` (what the key holds now); returns `old`.
    pub(super) fn put_stored(
        &mut self,
        key: Bytes,
        stored: Bytes,
        old: Option<Bytes>,
    ) -> Option<Bytes> {
        self.hash = self.hash.wrapping_add(entry_hash(&key, &stored));
        self.bytes += (key.len() + stored.len()) as u64;
        match &old {
            Some(old) => {
                self.hash = self.hash.wrapping_sub(entry_hash(&key, old));
                self.bytes -= (key.len() + old.len()) as u64;
            }
            None => self.len += 1,
        }
        self.set(key.clone(), Some(stored.clone()));
        self.dirty.insert(key, Some(stored));
        old
    }

    /// The record of client key `key`, if it exists.
    pub(super) fn record(&self, key: &[u8]) -> Option<KeyValue> {
        self.get(key).map(|stored| decode_record(key, stored))
    }

    /// Sets client key `key` to `value` at `revision`; returns the stored
    /// record it replaced.
    fn put(&mut self, key: Bytes, value: &[u8], revision: u64) -> Option<Bytes> {
        let old = self.get(&key).cloned();
        let (create, version) = old.as_ref().map_or((revision, 1), |o| {
            let (create, _, version, _) = split_record(o);
            (create, version + 1)
        });
        let stored = encode_record(create, revision, version, value);
        self.events.push(Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_vec(),
                value: stored.slice(RECORD_HEAD..),
                create_revision: create,
                mod_revision: revision,
                version,
            },
        });
        self.put_stored(key, stored, old)
    }

    /// Removes `key` at `revision`; false if it was not set.
    fn delete(&mut self, key: &[u8], revision: u64) -> bool {
        let Some((old_hash, old_len)) = self.get(key).map(|old| (entry_hash(key, old), old.len()))
        else {
            return false;
        };
        self.hash = self.hash.wrapping_sub(old_hash);
        self.bytes -= (key.len() + old_len) as u64;
        self.len -= 1;
        let key = Bytes::copy_from_slice(key);
        self.set(key.clone(), None);
        self.dirty.insert(key.clone(), None);
        if !is_reserved(&key) {
            self.events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.to_vec(),
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: revision,
                    version: 0,
                },
            });
        }
        true
    }

    fn delete_keys(&mut self, keys: Vec<Bytes>, revision: u64) -> u64 {
        keys.iter().filter(|k| self.delete(k, revision)).count() as u64
    }

    /// Client keys in `start..end` (`None`: to the end of the prefix).
    fn keys_from(&self, start: &[u8], keep: impl Fn(&[u8]) -> bool) -> Vec<Bytes> {
        self.scan(&Bytes::copy_from_slice(start), keep, usize::MAX)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn delete_prefix(&mut self, prefix: &[u8], revision: u64) -> u64 {
        let doomed = self.keys_from(prefix, |k| k.starts_with(prefix));
        self.delete_keys(doomed, revision)
    }

    /// Up to `limit` records of client keys starting with `prefix` (after
    /// `after`), and whether more match.
    pub(super) fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> (Vec<KeyValue>, bool) {
        let start = match after {
            Some(a) if a >= prefix => {
                let mut k = a.to_vec();
                k.push(0);
                Bytes::from(k)
            }
            _ => Bytes::copy_from_slice(prefix),
        };
        let mut page = self.scan(&start, |k| k.starts_with(prefix), limit.saturating_add(1));
        let more = page.len() > limit;
        page.truncate(limit);
        let kvs = page
            .iter()
            .map(|(k, stored)| decode_record(k, stored))
            .collect();
        (kvs, more)
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

    /// Applies the commands of the entry at `index` (the revision of every
    /// change it makes). Client commands never touch reserved keys (scans
    /// skip them; puts and deletes of them are ignored).
    pub(super) fn apply(&mut self, req: Request, index: u64) -> Response {
        let mut r = Response::default();
        for c in req.commands {
            match c {
                Command::Put { key, .. } | Command::Delete { key } if is_reserved(&key) => {}
                Command::Put { key, value } => {
                    self.put(Bytes::from(key), &value, index);
                    r.changed_keys += 1;
                }
                Command::Delete { key } => r.changed_keys += u64::from(self.delete(&key, index)),
                Command::SetPolicy(spec) => {
                    let policy = PolicyRef::of(&spec.label, &spec.wasm, &spec.config);
                    self.set_policy(policy, Some(Bytes::from(spec.wasm)), index);
                }
                Command::RollOut(policy) => self.set_policy(policy, None, index),
                Command::DeleteRange { start, end } => {
                    if start < end {
                        let doomed = self.keys_from(&start, |k| k < &end[..]);
                        r.changed_keys += self.delete_keys(doomed, index);
                    }
                }
                Command::DeletePrefix { prefix } => {
                    r.changed_keys += self.delete_prefix(&prefix, index);
                }
                Command::Txn(txn) => {
                    let (result, changed) = self.txn(txn, index);
                    r.changed_keys += changed;
                    r.txn = Some(result);
                }
            }
        }
        r
    }

    /// Evaluates `txn`'s compares and runs the branch they choose, at
    /// `index`; returns what it did and how many keys it changed.
    fn txn(&mut self, txn: Txn, index: u64) -> (TxnResult, u64) {
        let succeeded = txn.compares.iter().all(|c| {
            !is_reserved(&c.key) && c.problem().is_none() && c.holds(self.record(&c.key).as_ref())
        });
        let ops = if succeeded { txn.success } else { txn.failure };
        let mut changed = 0;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match op {
                // Refused before proposing; a reserved key is never touched.
                TxnOp::Put { key, .. } if is_reserved(&key) => OpResult::Put { prev: None },
                TxnOp::Delete { key } | TxnOp::DeletePrefix { prefix: key }
                    if is_reserved(&key) =>
                {
                    OpResult::Delete { deleted: 0 }
                }
                TxnOp::Get { key } if is_reserved(&key) => OpResult::Get { kv: None },
                TxnOp::Put { key, value } => {
                    changed += 1;
                    let key = Bytes::from(key);
                    let prev = self.put(key.clone(), &value, index);
                    OpResult::Put {
                        prev: prev.map(|old| decode_record(&key, &old)),
                    }
                }
                TxnOp::Delete { key } => {
                    let deleted = u64::from(self.delete(&key, index));
                    changed += deleted;
                    OpResult::Delete { deleted }
                }
                TxnOp::DeletePrefix { prefix } => {
                    let deleted = self.delete_prefix(&prefix, index);
                    changed += deleted;
                    OpResult::Delete { deleted }
                }
                TxnOp::Get { key } => OpResult::Get {
                    kv: self.record(&key),
                },
                TxnOp::List { prefix, limit } => {
                    let limit = (limit as usize).min(crate::raft::MAX_LIST_LIMIT);
                    let (kvs, more) = self.list(&prefix, None, limit);
                    OpResult::List { kvs, more }
                }
            });
        }
        (
            TxnResult {
                succeeded,
                results,
                revision: index,
            },
            changed,
        )
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

    #[test]
    fn records_carry_revisions_and_transactions_choose_a_branch() {
        use crate::raft::{Compare, OpResult, Txn, TxnOp};
        let mut inner = Inner::default();
        inner.apply(
            Request {
                commands: vec![put("a")],
            },
            5,
        );
        inner.apply(
            Request {
                commands: vec![put("a")],
            },
            7,
        );
        let a = inner.record(b"a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 7, 2));
        assert_eq!(&a.value[..], b"v");
        // A save guarded by a stale revision runs the failure branch.
        let save = |rev| Txn {
            compares: vec![Compare::mod_revision("a", rev)],
            success: vec![TxnOp::Put {
                key: b"a".to_vec(),
                value: b"w".to_vec(),
            }],
            failure: vec![TxnOp::Get { key: b"a".to_vec() }],
        };
        let r = inner.apply(
            Request {
                commands: vec![Command::Txn(save(5))],
            },
            8,
        );
        let t = r.txn.unwrap();
        assert!(!t.succeeded);
        assert_eq!(
            t.results,
            vec![OpResult::Get {
                kv: Some(a.clone())
            }]
        );
        assert_eq!(r.changed_keys, 0);
        let r = inner.apply(
            Request {
                commands: vec![Command::Txn(save(7))],
            },
            9,
        );
        assert!(r.txn.unwrap().succeeded);
        let a = inner.record(b"a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 9, 3));
        // Deleted, then created again: a new life.
        inner.apply(
            Request {
                commands: vec![Command::Delete { key: b"a".to_vec() }],
            },
            10,
        );
        assert!(inner.record(b"a").is_none());
        inner.apply(
            Request {
                commands: vec![put("a")],
            },
            11,
        );
        let a = inner.record(b"a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (11, 11, 1));
        // Every change was an event, with its revision; the hash covers
        // the revisions.
        let revs: Vec<u64> = inner.events.iter().map(|e| e.revision()).collect();
        assert_eq!(revs, vec![5, 7, 9, 10, 11]);
        assert_eq!(inner.hash, crate::snapshot::state_hash(&inner.base));
        let mut other = Inner::default();
        other.apply(
            Request {
                commands: vec![put("a")],
            },
            12,
        );
        assert_ne!(other.hash, inner.hash, "same value, other revisions");
    }
}
