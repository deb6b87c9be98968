//! Records with revisions, and guarded transactions: what a control plane
//! builds on. A transaction is one [`Command`](super::Command) in one Raft
//! entry: its compares are evaluated against the state as that entry
//! applies, and one of its two branches runs, so it is atomic and
//! linearizable.
//!
//! Revisions are Raft log indexes: the revision of a change is the index of
//! the entry that made it, and the store's revision is its last applied
//! index. Every node applies the same entries at the same indexes, so
//! revisions are the same on every node, in every snapshot and after every
//! restart, with no counter of their own to keep.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The most compares one transaction holds.
pub const MAX_TXN_COMPARES: usize = 128;

/// The most keys one listing returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// The most operations one branch of a transaction holds.
pub const MAX_TXN_OPS: usize = 128;

/// A key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value.
    pub value: Bytes,
    /// The revision of the write that created the key (since it last did
    /// not exist).
    pub create_revision: u64,
    /// The revision of the last write to the key.
    pub mod_revision: u64,
    /// Writes to the key since it was created (1 after the first).
    pub version: u64,
}

/// A page of keys, and the revision it was read at: a watch from that
/// revision sees every later change, with no gap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The keys, in order.
    pub kvs: Vec<KeyValue>,
    /// The store's revision when the page was read.
    pub revision: u64,
    /// Whether more keys match after the last one returned.
    pub more: bool,
}

/// What a compare looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The value (an absent key has none: every value compare on it fails).
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The version (0 when the key is absent).
    Version(u64),
    /// The mod revision (0 when absent).
    ModRevision(u64),
    /// The create revision (0 when absent).
    CreateRevision(u64),
    /// Whether the key exists (`=` only: `Exists(false)` is "key absent").
    Exists(bool),
}

/// How a compare compares (the key's field on the left).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

impl CompareOp {
    fn holds<T: Ord + ?Sized>(self, left: &T, right: &T) -> bool {
        match self {
            CompareOp::Equal => left == right,
            CompareOp::NotEqual => left != right,
            CompareOp::Less => left < right,
            CompareOp::Greater => left > right,
        }
    }
}

/// One condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key looked at.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The comparison.
    pub op: CompareOp,
    /// The field and the value it is compared with.
    pub target: Target,
}

impl Compare {
    /// `key`'s mod revision is `revision` (0: the key is absent).
    pub fn mod_revision(key: impl Into<Vec<u8>>, revision: u64) -> Compare {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: Target::ModRevision(revision),
        }
    }

    /// `key` is absent.
    pub fn absent(key: impl Into<Vec<u8>>) -> Compare {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: Target::Exists(false),
        }
    }

    /// Whether the compare holds for `kv` (`None`: the key is absent).
    pub fn holds(&self, kv: Option<&KeyValue>) -> bool {
        let num = |f: fn(&KeyValue) -> u64, want: u64| self.op.holds(&kv.map_or(0, f), &want);
        match &self.target {
            Target::Value(want) => kv.is_some_and(|kv| self.op.holds(&kv.value[..], &want[..])),
            Target::Version(n) => num(|kv| kv.version, *n),
            Target::ModRevision(n) => num(|kv| kv.mod_revision, *n),
            Target::CreateRevision(n) => num(|kv| kv.create_revision, *n),
            Target::Exists(want) => self.op.holds(&kv.is_some(), want),
        }
    }

    /// Why the compare cannot be evaluated, if it cannot.
    pub fn problem(&self) -> Option<String> {
        match (&self.target, self.op) {
            (Target::Exists(_), CompareOp::Less | CompareOp::Greater) => {
                Some("an `exists`/`absent` compare takes `=` or `!=`".into())
            }
            _ => None,
        }
    }
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Remove every key that starts with `prefix`.
    DeletePrefix {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
    /// Read `key` as the transaction sees it.
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Read up to `limit` keys that start with `prefix`.
    List {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
        /// At most this many.
        limit: u32,
    },
}

/// A guarded transaction: if every compare holds, `success` runs, else
/// `failure`; each branch's operations apply in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// The conditions (all must hold; none: `success` runs).
    pub compares: Vec<Compare>,
    /// Run when every compare holds.
    pub success: Vec<TxnOp>,
    /// Run otherwise.
    pub failure: Vec<TxnOp>,
}

/// What one operation of the branch that ran did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// A put: the key's record before it (`None`: it was created).
    Put {
        /// The previous record.
        prev: Option<KeyValue>,
    },
    /// A delete or delete-prefix: how many keys it removed.
    Delete {
        /// Keys removed.
        deleted: u64,
    },
    /// A get: the record, if the key exists.
    Get {
        /// The record.
        kv: Option<KeyValue>,
    },
    /// A list.
    List {
        /// The records, in key order.
        kvs: Vec<KeyValue>,
        /// Whether more keys match.
        more: bool,
    },
}

/// What a transaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    /// Whether every compare held (`success` ran).
    pub succeeded: bool,
    /// The result of each operation of the branch that ran, in order.
    pub results: Vec<OpResult>,
    /// The revision of the transaction (its entry's index): the mod
    /// revision of every key it wrote, and the revision its reads saw.
    pub revision: u64,
}
