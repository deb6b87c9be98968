//! The JSON shapes of the client and admin API: request parameters and
//! bodies, and the error body. The server decodes them, the typed client
//! ([`crate::client`]) encodes them.

use serde::{Deserialize, Serialize};

use crate::raft::{
    Compare, CompareOp, KeyValue, Listing, NodeId, OpResult, Target, Txn, TxnOp, TxnResult,
};
use crate::snapshot::SnapshotKind;
use crate::state_machine::{Event, EventKind, WatchError};

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
    /// The store's revision (a failed guard, 412; a compacted watch, 410).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The key's mod revision when a guard failed (0: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    /// The oldest revision a watch may start from (a compacted watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_revision: Option<u64>,
}

impl ErrorBody {
    /// An error with only a message.
    pub fn new(msg: impl Into<String>) -> Self {
        ErrorBody {
            error: msg.into(),
            leader_id: None,
            leader_addr: None,
            revision: None,
            mod_revision: None,
            oldest_revision: None,
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

pub use crate::raft::MAX_LIST_LIMIT;

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

/// A key with its value and revisions, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key (UTF-8, lossy).
    pub key: String,
    /// The value (UTF-8, lossy); left out of watch events with
    /// `values=false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The revision that created the key.
    pub create_revision: u64,
    /// The revision of its last write.
    pub mod_revision: u64,
    /// Writes since it was created.
    pub version: u64,
}

impl Record {
    /// `kv` as JSON, with its value or without.
    pub fn of(kv: &KeyValue, value: bool) -> Record {
        Record {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: value.then(|| String::from_utf8_lossy(&kv.value).into_owned()),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }

    /// Back to a record.
    pub fn into_kv(self) -> KeyValue {
        KeyValue {
            key: self.key.into_bytes(),
            value: self.value.unwrap_or_default().into(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// The answer to `GET /kv`: a page of records and the revision it was read
/// at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListReply {
    /// The records, in key order.
    pub kvs: Vec<Record>,
    /// The store's revision when it was read: watch from it to miss
    /// nothing.
    pub revision: u64,
    /// Whether more keys match (page on with `after`).
    pub more: bool,
}

impl From<&Listing> for ListReply {
    fn from(l: &Listing) -> Self {
        ListReply {
            kvs: l.kvs.iter().map(|kv| Record::of(kv, true)).collect(),
            revision: l.revision,
            more: l.more,
        }
    }
}

impl From<ListReply> for Listing {
    fn from(l: ListReply) -> Self {
        Listing {
            kvs: l.kvs.into_iter().map(Record::into_kv).collect(),
            revision: l.revision,
            more: l.more,
        }
    }
}

/// `PUT /kv/{key}` and `DELETE /kv/{key}` parameters: an optional guard.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteQuery {
    /// Write only if the key's mod revision is this (0: absent); else 412.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_mod_revision: Option<u64>,
    /// Write only if the key is absent; else 412.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub if_absent: bool,
}

/// How a compare compares, as JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    /// `=` (the default)
    #[default]
    #[serde(rename = "=")]
    Equal,
    /// `!=`
    #[serde(rename = "!=")]
    NotEqual,
    /// `<`
    #[serde(rename = "<")]
    Less,
    /// `>`
    #[serde(rename = ">")]
    Greater,
}

impl From<Cmp> for CompareOp {
    fn from(c: Cmp) -> Self {
        match c {
            Cmp::Equal => CompareOp::Equal,
            Cmp::NotEqual => CompareOp::NotEqual,
            Cmp::Less => CompareOp::Less,
            Cmp::Greater => CompareOp::Greater,
        }
    }
}

impl From<CompareOp> for Cmp {
    fn from(c: CompareOp) -> Self {
        match c {
            CompareOp::Equal => Cmp::Equal,
            CompareOp::NotEqual => Cmp::NotEqual,
            CompareOp::Less => Cmp::Less,
            CompareOp::Greater => Cmp::Greater,
        }
    }
}

/// One compare of `POST /kv/txn`: `{"target": "mod_revision", "key": K,
/// "cmp": "=", "value": N}`; `{"target": "absent", "key": K}` holds when
/// the key does not exist, `{"target": "exists", "key": K}` when it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case", deny_unknown_fields)]
pub enum CompareJson {
    /// The key's value (a string).
    Value {
        /// The key.
        key: String,
        /// The comparison (default `=`).
        #[serde(default)]
        cmp: Cmp,
        /// Compared with.
        value: String,
    },
    /// Its version.
    Version {
        /// The key.
        key: String,
        /// The comparison (default `=`).
        #[serde(default)]
        cmp: Cmp,
        /// Compared with.
        value: u64,
    },
    /// Its mod revision.
    ModRevision {
        /// The key.
        key: String,
        /// The comparison (default `=`).
        #[serde(default)]
        cmp: Cmp,
        /// Compared with.
        value: u64,
    },
    /// Its create revision.
    CreateRevision {
        /// The key.
        key: String,
        /// The comparison (default `=`).
        #[serde(default)]
        cmp: Cmp,
        /// Compared with.
        value: u64,
    },
    /// The key does not exist.
    Absent {
        /// The key.
        key: String,
    },
    /// The key exists.
    Exists {
        /// The key.
        key: String,
    },
}

impl From<CompareJson> for Compare {
    fn from(c: CompareJson) -> Self {
        let (key, op, target) = match c {
            CompareJson::Value { key, cmp, value } => (key, cmp, Target::Value(value.into_bytes())),
            CompareJson::Version { key, cmp, value } => (key, cmp, Target::Version(value)),
            CompareJson::ModRevision { key, cmp, value } => (key, cmp, Target::ModRevision(value)),
            CompareJson::CreateRevision { key, cmp, value } => {
                (key, cmp, Target::CreateRevision(value))
            }
            CompareJson::Absent { key } => (key, Cmp::Equal, Target::Exists(false)),
            CompareJson::Exists { key } => (key, Cmp::Equal, Target::Exists(true)),
        };
        Compare {
            key: key.into_bytes(),
            op: op.into(),
            target,
        }
    }
}

impl CompareJson {
    /// `c` as JSON; `None` for what JSON cannot carry (a value that is not
    /// UTF-8, `exists` with `<`/`>`).
    pub fn of(c: &Compare) -> Option<CompareJson> {
        let key = String::from_utf8(c.key.clone()).ok()?;
        let cmp = Cmp::from(c.op);
        Some(match (&c.target, c.op) {
            (Target::Value(v), _) => CompareJson::Value {
                key,
                cmp,
                value: String::from_utf8(v.clone()).ok()?,
            },
            (Target::Version(n), _) => CompareJson::Version {
                key,
                cmp,
                value: *n,
            },
            (Target::ModRevision(n), _) => CompareJson::ModRevision {
                key,
                cmp,
                value: *n,
            },
            (Target::CreateRevision(n), _) => CompareJson::CreateRevision {
                key,
                cmp,
                value: *n,
            },
            (Target::Exists(e), CompareOp::Equal) if !*e => CompareJson::Absent { key },
            (Target::Exists(e), CompareOp::NotEqual) if *e => CompareJson::Absent { key },
            (Target::Exists(_), CompareOp::Equal | CompareOp::NotEqual) => {
                CompareJson::Exists { key }
            }
            (Target::Exists(_), _) => return None,
        })
    }
}

/// One operation of `POST /kv/txn`, tagged by `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TxnOpJson {
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
    /// Remove keys starting with `prefix`.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: String,
    },
    /// Read keys starting with `prefix` (at most `limit`, default 100).
    List {
        /// The prefix.
        prefix: String,
        /// At most this many.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

impl From<TxnOpJson> for TxnOp {
    fn from(o: TxnOpJson) -> Self {
        match o {
            TxnOpJson::Put { key, value } => TxnOp::Put {
                key: key.into_bytes(),
                value: value.into_bytes(),
            },
            TxnOpJson::Delete { key } => TxnOp::Delete {
                key: key.into_bytes(),
            },
            TxnOpJson::DeletePrefix { prefix } => TxnOp::DeletePrefix {
                prefix: prefix.into_bytes(),
            },
            TxnOpJson::Get { key } => TxnOp::Get {
                key: key.into_bytes(),
            },
            TxnOpJson::List { prefix, limit } => TxnOp::List {
                prefix: prefix.into_bytes(),
                limit: limit.unwrap_or(100),
            },
        }
    }
}

impl TxnOpJson {
    /// `o` as JSON; `None` when a key or value is not UTF-8.
    pub fn of(o: &TxnOp) -> Option<TxnOpJson> {
        let s = |b: &Vec<u8>| String::from_utf8(b.clone()).ok();
        Some(match o {
            TxnOp::Put { key, value } => TxnOpJson::Put {
                key: s(key)?,
                value: s(value)?,
            },
            TxnOp::Delete { key } => TxnOpJson::Delete { key: s(key)? },
            TxnOp::DeletePrefix { prefix } => TxnOpJson::DeletePrefix { prefix: s(prefix)? },
            TxnOp::Get { key } => TxnOpJson::Get { key: s(key)? },
            TxnOp::List { prefix, limit } => TxnOpJson::List {
                prefix: s(prefix)?,
                limit: Some(*limit),
            },
        })
    }
}

/// `POST /kv/txn` body: if every compare holds, `success` runs, else
/// `failure`, as one atomic step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// The conditions.
    #[serde(default)]
    pub compare: Vec<CompareJson>,
    /// Run when all hold.
    #[serde(default)]
    pub success: Vec<TxnOpJson>,
    /// Run otherwise.
    #[serde(default)]
    pub failure: Vec<TxnOpJson>,
}

impl From<TxnRequest> for Txn {
    fn from(t: TxnRequest) -> Self {
        Txn {
            compares: t.compare.into_iter().map(Compare::from).collect(),
            success: t.success.into_iter().map(TxnOp::from).collect(),
            failure: t.failure.into_iter().map(TxnOp::from).collect(),
        }
    }
}

/// What one operation of a transaction did, as JSON, tagged by `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OpResultJson {
    /// A put, and the record it replaced.
    Put {
        /// The previous record (none: created).
        prev: Option<Record>,
    },
    /// A delete or delete-prefix.
    Delete {
        /// Keys removed.
        deleted: u64,
    },
    /// A get.
    Get {
        /// The record (none: absent).
        kv: Option<Record>,
    },
    /// A list.
    List {
        /// The records.
        kvs: Vec<Record>,
        /// Whether more match.
        more: bool,
    },
}

/// The answer to `POST /kv/txn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnReply {
    /// Whether every compare held (`success` ran).
    pub succeeded: bool,
    /// The transaction's revision.
    pub revision: u64,
    /// What each operation of the branch that ran did.
    pub results: Vec<OpResultJson>,
}

impl From<&TxnResult> for TxnReply {
    fn from(r: &TxnResult) -> Self {
        let rec = |kv: &Option<KeyValue>| kv.as_ref().map(|kv| Record::of(kv, true));
        TxnReply {
            succeeded: r.succeeded,
            revision: r.revision,
            results: r
                .results
                .iter()
                .map(|o| match o {
                    OpResult::Put { prev } => OpResultJson::Put { prev: rec(prev) },
                    OpResult::Delete { deleted } => OpResultJson::Delete { deleted: *deleted },
                    OpResult::Get { kv } => OpResultJson::Get { kv: rec(kv) },
                    OpResult::List { kvs, more } => OpResultJson::List {
                        kvs: kvs.iter().map(|kv| Record::of(kv, true)).collect(),
                        more: *more,
                    },
                })
                .collect(),
        }
    }
}

impl From<TxnReply> for TxnResult {
    fn from(r: TxnReply) -> Self {
        let kv = |r: Option<Record>| r.map(Record::into_kv);
        TxnResult {
            succeeded: r.succeeded,
            revision: r.revision,
            results: r
                .results
                .into_iter()
                .map(|o| match o {
                    OpResultJson::Put { prev } => OpResult::Put { prev: kv(prev) },
                    OpResultJson::Delete { deleted } => OpResult::Delete { deleted },
                    OpResultJson::Get { kv: k } => OpResult::Get { kv: kv(k) },
                    OpResultJson::List { kvs, more } => OpResult::List {
                        kvs: kvs.into_iter().map(Record::into_kv).collect(),
                        more,
                    },
                })
                .collect(),
        }
    }
}

/// `GET /kv/watch` parameters: `key` or `prefix` (one of them), from after
/// `from_revision` (default: now), with values unless `values=false`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    /// Watch this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Watch keys starting with this (empty: every key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Every change after this revision (default: from now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<u64>,
    /// Include values in events (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<bool>,
}

/// One line of a watch stream (newline-delimited JSON): `{"event": ...}`,
/// `{"progress": {"revision": N}}`, or a last `{"end": ...}` saying why
/// the stream stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchLine {
    /// A change.
    Event {
        /// Put or delete.
        kind: EventKind,
        /// The key's record after the change.
        #[serde(flatten)]
        kv: Record,
    },
    /// Every change up to `revision` has been sent.
    Progress {
        /// The revision.
        revision: u64,
    },
    /// The stream is over.
    End {
        /// `compacted`, `lagged` or `shutdown`.
        reason: String,
        /// What happened.
        error: String,
        /// For `compacted`: the oldest revision a watch may start from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oldest_revision: Option<u64>,
        /// For `compacted`: the current revision.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<u64>,
    },
}

impl WatchLine {
    /// An event as a line.
    pub fn event(e: &Event, values: bool) -> WatchLine {
        WatchLine::Event {
            kind: e.kind,
            kv: Record::of(&e.kv, values && e.kind == EventKind::Put),
        }
    }

    /// Why a watch ended, as a line.
    pub fn end(e: &WatchError) -> WatchLine {
        let (reason, oldest, current) = match e {
            WatchError::Compacted {
                oldest, current, ..
            } => ("compacted", Some(*oldest), Some(*current)),
            WatchError::Lagged { .. } => ("lagged", None, None),
            _ => ("shutdown", None, None),
        };
        WatchLine::End {
            reason: reason.into(),
            error: e.to_string(),
            oldest_revision: oldest,
            revision: current,
        }
    }
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

/// `POST /admin/members` body: the node to add.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Its id.
    pub id: NodeId,
    /// Where the others reach it (`host:port`).
    pub addr: String,
}
