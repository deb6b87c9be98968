//! The JSON shapes of the client and admin API: request parameters and
//! bodies, and the error body. The server decodes them, the typed client
//! ([`crate::client`]) encodes them.

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;
use crate::snapshot::SnapshotKind;

/// The JSON body of an error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The leader's id, when the request must go there (421).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<NodeId>,
    /// The leader's address (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_addr: Option<String>,
}

impl ErrorBody {
    /// An error with only a message.
    pub fn new(msg: impl Into<String>) -> Self {
        ErrorBody {
            error: msg.into(),
            leader_id: None,
            leader_addr: None,
        }
    }
}

/// `GET /kv/{key}` parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Read this node's state as it is, without asking the leader: possibly
    /// stale, served by any node.
    #[serde(default)]
    pub local: bool,
}

/// The most pairs one listing returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// `GET /kv` parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// At most this many (default 100, at most [`MAX_LIST_LIMIT`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only keys after this one (to page through a listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Read this node's state without asking the leader (possibly stale).
    #[serde(default)]
    pub local: bool,
}

/// One pair of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// The key (UTF-8, lossy).
    pub key: String,
    /// The value (UTF-8, lossy).
    pub value: String,
}

/// One command of a batch, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BatchCommand {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Remove keys in `start..end`.
    DeleteRange {
        /// First key removed.
        start: String,
        /// First key kept.
        end: String,
    },
    /// Remove keys starting with `prefix`.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
}

impl From<BatchCommand> for crate::node::Op {
    fn from(c: BatchCommand) -> Self {
        use crate::node::Op;
        match c {
            BatchCommand::Put { key, value } => Op::put(key, value),
            BatchCommand::Delete { key } => Op::delete(key),
            BatchCommand::DeleteRange { start, end } => Op::DeleteRange {
                start: start.into_bytes(),
                end: end.into_bytes(),
            },
            BatchCommand::DeletePrefix { prefix } => Op::DeletePrefix {
                prefix: prefix.into_bytes(),
            },
        }
    }
}

/// `POST /kv/batch` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Applied in order, atomically.
    pub commands: Vec<BatchCommand>,
}

/// `POST /admin/snapshot?kind=full|incremental` parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// The kind; default: what the chain calls for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<SnapshotKind>,
}

/// `GET /admin/decisions?limit=N` parameters.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    /// The newest N decisions (default 50, at most the audit log's size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `PUT /admin/policy` parameters. The body is the component (`.wasm`)
/// unless `builtin` names a built-in policy.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// A built-in policy by name instead of a body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// The policy's configuration (TOML text); default empty.
    #[serde(default)]
    pub config: String,
    /// A label for messages (default: `builtin:NAME` or `upload`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Roll out to the whole cluster through the Raft log (on the leader)
    /// instead of swapping this node's policy only.
    #[serde(default)]
    pub cluster: bool,
}
