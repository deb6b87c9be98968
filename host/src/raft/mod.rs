//! The project's openraft type configuration and the KV commands a Raft
//! entry carries.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

mod txn;
pub use txn::{
    Compare, CompareOp, KeyValue, Listing, MAX_LIST_LIMIT, MAX_TXN_COMPARES, MAX_TXN_OPS, OpResult,
    Target, Txn, TxnOp, TxnResult,
};

openraft::declare_raft_types!(
    /// ramrod's Raft types: `u64` node ids, nodes addressed by a string, KV
    /// command batches as entries.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A node's id.
pub type NodeId = u64;
/// A Raft log id of this configuration.
pub type LogId = openraft::LogId<NodeId>;
/// A Raft log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// A vote of this configuration.
pub type Vote = openraft::Vote<NodeId>;
/// A storage error of this configuration.
pub type StorageError = openraft::StorageError<NodeId>;

/// One change to the key-value state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Removes every key in `start..end`.
    DeleteRange {
        /// First key removed.
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        /// First key kept.
        #[serde(with = "serde_bytes")]
        end: Vec<u8>,
    },
    /// Removes every key that starts with `prefix`.
    DeletePrefix {
        /// The prefix.
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
    /// A rollout carrying the component itself, as versions before
    /// [`Command::RollOut`] wrote it: still applied (like a `RollOut` of the
    /// same component, whose bytes the node then stores as a blob), never
    /// proposed any more.
    SetPolicy(PolicySpec),
    /// A guarded transaction ([`Txn`]): its compares are evaluated as the
    /// entry applies, then one branch runs.
    Txn(Txn),
    /// Makes the policy `PolicyRef` names the cluster's compaction policy
    /// from this entry's index on (a cluster-wide rollout). The entry
    /// carries the component's hash; its bytes are a blob in the snapshot
    /// store, put there before the entry is proposed, that every node
    /// fetches and verifies by hash. Only the admin API proposes it, after
    /// validating the component.
    RollOut(PolicyRef),
}

/// A rolled-out policy as the log and the state carry it: the component's
/// hash, not its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Where it came from (`builtin:NAME` or a file name), for messages.
    pub label: String,
    /// The blake3 hash of the component (hex): the name of its blob in the
    /// snapshot store.
    pub hash: String,
    /// The component's size in bytes.
    pub size: u64,
    /// Its configuration (TOML text).
    pub config: String,
}

impl PolicyRef {
    /// The reference to `wasm`, configured by `config`.
    pub fn of(label: &str, wasm: &[u8], config: &str) -> Self {
        PolicyRef {
            label: label.to_string(),
            hash: blake3::hash(wasm).to_hex().to_string(),
            size: wasm.len() as u64,
            config: config.to_string(),
        }
    }

    /// The hash, shortened for messages.
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(12)]
    }
}

/// A compaction policy with its component inline: what a
/// [`Command::SetPolicy`] entry (written by earlier versions) carries.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    /// Where it came from (`builtin:NAME` or a file name), for messages.
    pub label: String,
    /// The component.
    #[serde(with = "serde_bytes")]
    pub wasm: Vec<u8>,
    /// Its configuration (TOML text).
    pub config: String,
}

impl fmt::Debug for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySpec")
            .field("label", &self.label)
            .field("wasm_bytes", &self.wasm.len())
            .field("config", &self.config)
            .finish()
    }
}

impl PolicySpec {
    /// The blake3 hash of the component, hex (as `PolicyMeta::hash`).
    pub fn hash(&self) -> String {
        blake3::hash(&self.wasm).to_hex().to_string()
    }
}

/// What a client asks the cluster to apply: a batch of commands applied
/// atomically, as one Raft entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The commands, applied in order.
    pub commands: Vec<Command>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request of {} commands", self.commands.len())
    }
}

impl Request {
    /// A request that puts one key.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Request {
            commands: vec![Command::Put {
                key: key.into(),
                value: value.into(),
            }],
        }
    }
}

/// What applying a [`Request`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Keys written or removed.
    pub changed_keys: u64,
    /// What a transaction did (its entry held one).
    pub txn: Option<TxnResult>,
}
