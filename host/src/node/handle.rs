//! [`NodeHandle`]: the typed operations on a running node. The HTTP API is
//! a thin layer over them; an embedding service calls them directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};

use super::Recovery;
use super::builder::PolicyChoice;
use super::controller::{ControllerError, ControllerHandle};
use super::raft_rpc::SentBytes;
use super::status::{PolicyStatus, SnapshotInfo, Status};
use crate::log_store::LogStore;
use crate::policy::{PolicyError, dry_run};
use crate::raft::{
    Command, Compare, KeyValue, Listing, MAX_LIST_LIMIT, MAX_TXN_COMPARES, MAX_TXN_OPS, NodeId,
    OpResult, PolicyRef, Request, Txn, TxnOp, TxnResult, TypeConfig,
};
use crate::sdk::Clamp;
use crate::snapshot::SnapshotKind;
use crate::state_machine::{Filter, WatchError, Watcher};
use crate::state_machine::{KvStateMachine, is_reserved};

/// The largest request (keys and values of one write or batch) accepted.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// How long a leader being removed waits for another voter to take over.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest policy component a node accepts by default (its
/// `policy.max-upload-bytes`). A rollout's entry carries only the
/// component's hash; the bytes go through the snapshot store.
pub const DEFAULT_MAX_POLICY_BYTES: usize = 64 << 20;

/// Why an operation on a node did not happen. Nothing was applied unless
/// the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// This node is not the leader; writes and linearizable reads go to
    /// `leader` (when known).
    #[error("not the leader (the leader is {})", leader.map_or_else(|| "unknown".to_string(), |l| format!("node {l} at {}", leader_addr.as_deref().unwrap_or("?"))))]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<NodeId>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// The node is shutting down or its Raft has stopped.
    #[error("the node has shut down")]
    Shutdown,
    /// The node's Raft core stopped on a fatal error (a storage failure,
    /// a full disk): the node serves nothing until it is restarted.
    /// `ramrod serve` exits non-zero when this happens.
    #[error("node {node} stopped: {cause}; it serves nothing until it is restarted")]
    Stopped {
        /// The node.
        node: NodeId,
        /// Why (openraft's fatal error, naming the storage call and file).
        cause: String,
    },
    /// The request is malformed or too large; the message names the value
    /// at fault.
    #[error("{0}")]
    Invalid(String),
    /// The cluster exists already ([`NodeHandle::initialize`]).
    #[error("the cluster is already initialized")]
    AlreadyInitialized,
    /// A policy was refused (the running one stays).
    #[error("policy refused: {0}")]
    Policy(#[from] PolicyError),
    /// A snapshot could not be built.
    #[error(transparent)]
    Snapshot(#[from] ControllerError),
    /// What was sent is over a configured size limit; the message names
    /// the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Waiting for something took too long.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// Another change is in progress (a membership change); retry.
    #[error("busy: {0}")]
    Busy(String),
    /// A guarded write's condition did not hold; nothing was written.
    #[error(
        "the guard failed: the key's mod revision is {mod_revision} (0: absent), the store's revision {revision}"
    )]
    GuardFailed {
        /// The store's revision when the guard was evaluated.
        revision: u64,
        /// The key's mod revision then (0: the key was absent).
        mod_revision: u64,
    },
    /// A watch could not start.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// Raft could not serve the request (no quorum, a storage error).
    #[error("raft: {0}")]
    Raft(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl OpError {
    fn forward(f: &ForwardToLeader<NodeId, BasicNode>) -> OpError {
        OpError::NotLeader {
            leader: f.leader_id,
            leader_addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
        }
    }

    fn raft<E>(e: RaftError<NodeId, E>, api: impl FnOnce(&E) -> Option<OpError>) -> OpError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match e {
            RaftError::APIError(inner) => {
                api(&inner).unwrap_or_else(|| OpError::Raft(Box::new(inner)))
            }
            RaftError::Fatal(openraft::error::Fatal::Stopped) => OpError::Shutdown,
            RaftError::Fatal(f) => OpError::Raft(Box::new(f)),
        }
    }
}

/// One change of a [`batch`](NodeHandle::batch).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Remove every key in `start..end`.
    DeleteRange {
        /// First key removed.
        start: Vec<u8>,
        /// First key kept.
        end: Vec<u8>,
    },
    /// Remove every key that starts with `prefix`.
    DeletePrefix {
        /// The prefix.
        prefix: Vec<u8>,
    },
}

impl Op {
    /// [`Op::Put`].
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// [`Op::Delete`].
    pub fn delete(key: impl Into<Vec<u8>>) -> Op {
        Op::Delete { key: key.into() }
    }

    fn into_command(self) -> Result<(Command, usize), OpError> {
        let reserved = |k: &[u8]| not_reserved(k, "");
        Ok(match self {
            Op::Put { key, value } => {
                reserved(&key)?;
                let n = key.len() + value.len();
                (Command::Put { key, value }, n)
            }
            Op::Delete { key } => {
                reserved(&key)?;
                let n = key.len();
                (Command::Delete { key }, n)
            }
            Op::DeleteRange { start, end } => {
                let n = start.len() + end.len();
                (Command::DeleteRange { start, end }, n)
            }
            Op::DeletePrefix { prefix } => {
                let n = prefix.len();
                (Command::DeletePrefix { prefix }, n)
            }
        })
    }
}

/// Refuses a reserved key, naming where it was (`what`).
fn not_reserved(key: &[u8], what: &str) -> Result<(), OpError> {
    if is_reserved(key) {
        Err(OpError::Invalid(format!(
            "{what}keys that start with byte 0xFF are reserved for ramrod"
        )))
    } else {
        Ok(())
    }
}

/// Checks a transaction before it is proposed: limits, reserved keys,
/// compares that cannot be evaluated, list limits, size. Messages name the
/// compare or operation at fault (`compare[0]`, `success[2]`, ...).
pub(crate) fn check_txn(txn: &Txn) -> Result<(), OpError> {
    if txn.compares.len() > MAX_TXN_COMPARES {
        return Err(OpError::Invalid(format!(
            "compare: a transaction holds at most {MAX_TXN_COMPARES} compares; this one has {}",
            txn.compares.len()
        )));
    }
    let mut size = 0;
    for (i, c) in txn.compares.iter().enumerate() {
        not_reserved(&c.key, &format!("compare[{i}]: "))?;
        if let Some(p) = c.problem() {
            return Err(OpError::Invalid(format!("compare[{i}]: {p}")));
        }
        size += c.key.len()
            + match &c.target {
                crate::raft::Target::Value(v) => v.len(),
                _ => 8,
            };
    }
    for (branch, ops) in [("success", &txn.success), ("failure", &txn.failure)] {
        if ops.len() > MAX_TXN_OPS {
            return Err(OpError::Invalid(format!(
                "{branch}: a branch holds at most {MAX_TXN_OPS} operations; this one has {}",
                ops.len()
            )));
        }
        for (i, op) in ops.iter().enumerate() {
            let at = format!("{branch}[{i}]: ");
            match op {
                TxnOp::Put { key, value } => {
                    not_reserved(key, &at)?;
                    size += key.len() + value.len();
                }
                TxnOp::Delete { key } | TxnOp::Get { key } => {
                    not_reserved(key, &at)?;
                    size += key.len();
                }
                TxnOp::DeletePrefix { prefix } => size += prefix.len(),
                TxnOp::List { prefix, limit } => {
                    if *limit as usize > MAX_LIST_LIMIT {
                        return Err(OpError::Invalid(format!(
                            "{at}limit must be at most {MAX_LIST_LIMIT}"
                        )));
                    }
                    size += prefix.len();
                }
            }
        }
    }
    if size > MAX_REQUEST_BYTES {
        return Err(OpError::Invalid(format!(
            "the transaction holds {size} bytes of keys and values; at most {MAX_REQUEST_BYTES} are accepted"
        )));
    }
    Ok(())
}

/// The condition of a guarded single-key write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// The key's mod revision is this (0: the key is absent).
    ModRevision(u64),
    /// The key is absent.
    Absent,
}

impl Guard {
    fn compare(self, key: &[u8]) -> Compare {
        match self {
            Guard::ModRevision(r) => Compare::mod_revision(key, r),
            Guard::Absent => Compare::absent(key),
        }
    }
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The log index it was applied at: the revision of its changes.
    pub index: u64,
    /// Keys written or removed.
    pub changed_keys: u64,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Where the others reach it (`host:port`).
    pub addr: String,
}

/// The cluster's members as a node knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// The voters.
    pub voters: Vec<Member>,
    /// The learners (catching up before they vote).
    pub learners: Vec<Member>,
    /// A membership change is in progress (a joint configuration).
    pub changing: bool,
}

/// An openraft membership change's error as an [`OpError`].
fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> OpError {
    OpError::raft(e, |api| match api {
        ClientWriteError::ForwardToLeader(f) => Some(OpError::forward(f)),
        ClientWriteError::ChangeMembershipError(
            c @ openraft::error::ChangeMembershipError::InProgress(_),
        ) => Some(OpError::Busy(c.to_string())),
        ClientWriteError::ChangeMembershipError(c) => Some(OpError::Invalid(c.to_string())),
    })
}

/// What [`NodeHandle::create_cluster_unless_it_exists`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterStart {
    /// It created the cluster.
    Created,
    /// A peer belongs to a cluster: this node waits to be contacted.
    Exists,
    /// This node is a member already.
    Member,
}

/// Where a policy swap applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// This node only, until its restart or the next rollout.
    Local,
    /// Every node, through the Raft log (on the leader): each switches at
    /// the same log index, and the policy is part of the state.
    Cluster,
}

/// What a policy swap or rollout did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapped {
    /// The policy's name.
    pub name: String,
    /// Its hash.
    pub hash: String,
    /// Where it applies.
    pub scope: Scope,
    /// For a rollout: the index of its entry; every node runs the policy
    /// from there on.
    pub index: Option<u64>,
    /// Decisions of the dry run the host would clamp, by scenario.
    pub dry_run_clamps: Vec<(String, Vec<Clamp>)>,
}

/// The parts of a running node, for tools, tests and benchmarks that look
/// below the typed operations (see [`crate::internals`]).
#[derive(Clone)]
pub struct Parts {
    /// The node's id.
    pub id: NodeId,
    /// Its Raft.
    pub raft: Raft<TypeConfig>,
    /// Its state machine.
    pub sm: KvStateMachine,
    /// Its log store.
    pub log: LogStore,
    /// Its compaction controller.
    pub controller: ControllerHandle,
    /// How it came up.
    pub recovery: Arc<Recovery>,
    /// Bytes of Raft RPCs sent, by target.
    pub sent: SentBytes,
    /// Where it listens, if anywhere.
    pub addr: Option<SocketAddr>,
    /// The members [`NodeHandle::initialize`] creates the cluster with.
    pub members: BTreeMap<NodeId, BasicNode>,
    /// The node joins a running cluster: it never creates one.
    pub join: bool,
    /// The node is handing its leadership over (before its removal):
    /// writes are refused meanwhile.
    pub handing_over: Arc<std::sync::atomic::AtomicBool>,
    /// Who sent the last snapshot install (see
    /// [`LeaderHint`](super::raft_rpc::LeaderHint)).
    pub leader_hint: super::raft_rpc::LeaderHint,
    /// The largest policy component accepted (`policy.max-upload-bytes`).
    pub max_policy_bytes: usize,
    /// The data directory.
    pub data_dir: std::path::PathBuf,
    /// How this node signs and checks requests between nodes (the cluster
    /// secret), if it has one.
    pub peer_auth: Option<super::peer_auth::PeerAuth>,
    /// While recovering from the cluster: the index until which this node
    /// grants no votes (0: it votes).
    pub votes_withheld: Arc<std::sync::atomic::AtomicU64>,
}

/// The cause of a Raft core's stop, unless it was asked to stop.
fn fatal_cause(f: &openraft::error::Fatal<NodeId>) -> Option<String> {
    (!matches!(f, openraft::error::Fatal::Stopped)).then(|| f.to_string())
}

impl Parts {
    /// Why the Raft core stopped on its own, if it did.
    pub fn fatal(&self) -> Option<String> {
        match &self.raft.metrics().borrow().running_state {
            Err(f) => fatal_cause(f),
            Ok(()) => None,
        }
    }
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A cheap, cloneable handle on a running node: every typed operation.
/// [`Node`](super::Node) derefs to it. A handle does not keep the node
/// alive: once the node has shut down (or was dropped), its operations fail
/// with [`OpError::Shutdown`], and once the calls in flight have returned
/// its files are closed, so the node can be started again in the same
/// process.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    parts: Weak<Parts>,
    id: NodeId,
    addr: Option<SocketAddr>,
}

impl NodeHandle {
    pub(super) fn new(parts: &Arc<Parts>) -> NodeHandle {
        NodeHandle {
            parts: Arc::downgrade(parts),
            id: parts.id,
            addr: parts.addr,
        }
    }

    pub(crate) fn parts(&self) -> Result<Arc<Parts>, OpError> {
        let parts = self.parts.upgrade().ok_or(OpError::Shutdown)?;
        if let Some(cause) = parts.fatal() {
            return Err(OpError::Stopped {
                node: parts.id,
                cause,
            });
        }
        Ok(parts)
    }

    /// Why the node's Raft core stopped on its own, if it did (a storage
    /// failure); `None` while it runs or after a shutdown.
    pub fn fatal(&self) -> Option<String> {
        self.parts.upgrade().and_then(|p| p.fatal())
    }

    /// Waits until the node's Raft core stops on a fatal error and returns
    /// the cause; `None` if the node shuts down instead. What a supervisor
    /// loop selects on to exit (`ramrod serve` does).
    pub async fn fatal_stop(&self) -> Option<String> {
        let mut metrics = self.parts.upgrade()?.raft.metrics();
        loop {
            if let Err(f) = &metrics.borrow_and_update().running_state {
                return fatal_cause(f);
            }
            metrics.changed().await.ok()?;
        }
    }

    /// The node's parts (Raft, state machine, log store, controller), for
    /// what the typed operations do not cover. No stability promise.
    ///
    /// # Panics
    /// If the node has shut down.
    pub fn internals(&self) -> Arc<Parts> {
        self.parts
            .upgrade()
            .expect("the internals of a node that has shut down")
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the node listens (`None`: [`Listen::Nowhere`](super::Listen)).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Creates a new cluster of this node and its configured peers.
    ///
    /// # Errors
    /// [`OpError::AlreadyInitialized`] when the cluster exists (this node
    /// has a log or a membership already); [`OpError::Invalid`] on a node
    /// configured to join one; [`OpError::Shutdown`].
    pub async fn initialize(&self) -> Result<(), OpError> {
        let parts = self.parts()?;
        if parts.join {
            return Err(OpError::Invalid(
                "this node is configured to join a running cluster (`join = true`): add it with `ramrod members add` on the cluster instead".into(),
            ));
        }
        parts
            .raft
            .initialize(parts.members.clone())
            .await
            .map_err(|e| {
                OpError::raft(e, |api| match api {
                    InitializeError::NotAllowed(_) => Some(OpError::AlreadyInitialized),
                    InitializeError::NotInMembers(_) => None,
                })
            })
    }

    /// Whether this node belongs to a cluster already (it was initialized,
    /// or joined one).
    ///
    /// # Errors
    /// [`OpError::Shutdown`].
    pub async fn is_initialized(&self) -> Result<bool, OpError> {
        self.parts()?
            .raft
            .is_initialized()
            .await
            .map_err(|e| match e {
                openraft::error::Fatal::Stopped => OpError::Shutdown,
                other => OpError::Raft(Box::new(other)),
            })
    }

    /// Creates the cluster with this node's configured members, unless it
    /// exists already: asks every peer first (`GET /raft/initialized`,
    /// signed) and creates it only when all of them answer that they are
    /// not part of one. While a peer does not answer, it asks again every
    /// second; it stops asking when a leader contacts this node. So a node
    /// whose data directory was wiped, the one that created the cluster
    /// included, joins the cluster it was in instead of creating a second
    /// one.
    ///
    /// # Errors
    /// [`OpError::Invalid`] for a node that joins (`join = true`); what
    /// [`initialize`](Self::initialize) returns.
    pub async fn create_cluster_unless_it_exists(&self) -> Result<ClusterStart, OpError> {
        let mut waiting_logged = false;
        loop {
            if self.is_initialized().await? {
                return Ok(ClusterStart::Member);
            }
            let parts = self.parts()?;
            if parts.join {
                return Err(OpError::Invalid(
                    "this node joins a running cluster (`join = true`): it never creates one"
                        .into(),
                ));
            }
            let peers: Vec<(NodeId, String)> = parts
                .members
                .iter()
                .filter(|(id, _)| **id != parts.id)
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect();
            let (mut exists, mut silent) = (false, Vec::new());
            for (id, addr) in &peers {
                match super::raft_rpc::peer_initialized(addr, parts.peer_auth.as_ref()).await {
                    Ok(true) => exists = true,
                    Ok(false) => {}
                    Err(e) => silent.push(format!("node {id} at {addr}: {e}")),
                }
            }
            drop(parts);
            if exists {
                tracing::warn!(
                    "a peer belongs to a cluster already: this node waits to be contacted by its leader instead of creating one"
                );
                return Ok(ClusterStart::Exists);
            }
            if silent.is_empty() {
                return match self.initialize().await {
                    Ok(()) => Ok(ClusterStart::Created),
                    Err(OpError::AlreadyInitialized) => Ok(ClusterStart::Member),
                    Err(e) => Err(e),
                };
            }
            if !waiting_logged {
                tracing::warn!(peers = ?silent, "waiting for every peer to answer before creating the cluster");
                waiting_logged = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits until the cluster has a leader, and returns its id.
    ///
    /// # Errors
    /// [`OpError::Timeout`] after `timeout`; [`OpError::Shutdown`].
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, OpError> {
        let m = self
            .parts()?
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => OpError::Timeout {
                    what: "a leader",
                    after: timeout,
                },
                openraft::metrics::WaitError::ShuttingDown => OpError::Shutdown,
            })?;
        m.current_leader.ok_or(OpError::Shutdown)
    }

    /// Sets `key` to `value` (on the leader; acknowledged once committed and
    /// applied).
    ///
    /// # Errors
    /// [`OpError::NotLeader`] on a follower, [`OpError::Invalid`] for a
    /// reserved key or an oversized request, [`OpError::Shutdown`].
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Written, OpError> {
        self.batch(vec![Op::put(key, value)]).await
    }

    /// Removes `key` (`changed_keys` is 0 if it was not set).
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<Written, OpError> {
        self.batch(vec![Op::delete(key)]).await
    }

    /// Applies `ops` in order, atomically, as one Raft entry.
    ///
    /// # Errors
    /// As [`put`](Self::put); [`OpError::Invalid`] for an empty batch.
    pub async fn batch(&self, ops: Vec<Op>) -> Result<Written, OpError> {
        if ops.is_empty() {
            return Err(OpError::Invalid(
                "a batch needs at least one command".into(),
            ));
        }
        let mut size = 0;
        let mut commands = Vec::with_capacity(ops.len());
        for op in ops {
            let (c, n) = op.into_command()?;
            size += n;
            commands.push(c);
        }
        if size > MAX_REQUEST_BYTES {
            return Err(OpError::Invalid(format!(
                "the request holds {size} bytes of keys and values; at most {MAX_REQUEST_BYTES} are accepted"
            )));
        }
        self.write(Request { commands }).await
    }

    async fn write(&self, req: Request) -> Result<Written, OpError> {
        Ok(self.write_full(req).await?.1)
    }

    async fn write_full(&self, req: Request) -> Result<(Option<TxnResult>, Written), OpError> {
        let parts = self.parts()?;
        Self::not_handing_over(&parts)?;
        let r = parts.raft.client_write(req).await.map_err(|e| {
            OpError::raft(e, |api| match api {
                ClientWriteError::ForwardToLeader(f) => Some(OpError::forward(f)),
                ClientWriteError::ChangeMembershipError(_) => None,
            })
        })?;
        let written = Written {
            index: r.log_id.index,
            changed_keys: r.data.changed_keys,
        };
        Ok((r.data.txn, written))
    }

    /// Waits until this node may serve a linearizable read (it is the
    /// leader and has applied everything committed before the call).
    ///
    /// # Errors
    /// [`OpError::NotLeader`] on a follower, [`OpError::Shutdown`].
    pub async fn linearizable(&self) -> Result<(), OpError> {
        let parts = self.parts()?;
        // Its heartbeats would keep the other voters from electing.
        Self::not_handing_over(&parts)?;
        parts
            .raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|e| {
                OpError::raft(e, |api| match api {
                    CheckIsLeaderError::ForwardToLeader(f) => Some(OpError::forward(f)),
                    CheckIsLeaderError::QuorumNotEnough(_) => None,
                })
            })
    }

    /// The value of `key`, linearizable (on the leader).
    ///
    /// # Errors
    /// As [`linearizable`](Self::linearizable).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, OpError> {
        self.linearizable().await?;
        self.get_local(key)
    }

    /// The value of `key` in this node's state as it is now (any node;
    /// possibly stale on a follower).
    ///
    /// # Errors
    /// [`OpError::Shutdown`].
    pub fn get_local(&self, key: &[u8]) -> Result<Option<Bytes>, OpError> {
        let parts = self.parts()?;
        Ok((!is_reserved(key)).then(|| parts.sm.get(key)).flatten())
    }

    /// Up to `limit` pairs whose key starts with `prefix`, after `after`
    /// (for paging), in key order; linearizable (on the leader).
    ///
    /// # Errors
    /// As [`linearizable`](Self::linearizable).
    pub async fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, OpError> {
        self.linearizable().await?;
        self.scan_local(prefix, after, limit)
    }

    /// [`scan`](Self::scan) of this node's state as it is (any node).
    pub fn scan_local(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, OpError> {
        Ok(self.parts()?.sm.scan_prefix_after(prefix, after, limit))
    }

    /// The record (value and revisions) of `key`, linearizable (on the
    /// leader).
    ///
    /// # Errors
    /// As [`linearizable`](Self::linearizable).
    pub async fn get_kv(&self, key: &[u8]) -> Result<Option<KeyValue>, OpError> {
        self.linearizable().await?;
        self.get_kv_local(key)
    }

    /// [`get_kv`](Self::get_kv) of this node's state as it is (any node).
    ///
    /// # Errors
    /// [`OpError::Shutdown`].
    pub fn get_kv_local(&self, key: &[u8]) -> Result<Option<KeyValue>, OpError> {
        Ok(self.parts()?.sm.get_kv(key))
    }

    /// Up to `limit` records whose key starts with `prefix`, after `after`,
    /// in key order, with the revision they were read at (watch from it to
    /// miss nothing); linearizable (on the leader).
    ///
    /// # Errors
    /// As [`linearizable`](Self::linearizable); [`OpError::Invalid`] for a
    /// limit over [`MAX_LIST_LIMIT`].
    pub async fn list(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Listing, OpError> {
        self.linearizable().await?;
        self.list_local(prefix, after, limit)
    }

    /// [`list`](Self::list) of this node's state as it is (any node).
    ///
    /// # Errors
    /// [`OpError::Invalid`] for a limit over [`MAX_LIST_LIMIT`];
    /// [`OpError::Shutdown`].
    pub fn list_local(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Listing, OpError> {
        if limit > MAX_LIST_LIMIT {
            return Err(OpError::Invalid(format!(
                "limit must be at most {MAX_LIST_LIMIT}"
            )));
        }
        Ok(self.parts()?.sm.list(prefix, after, limit))
    }

    /// Runs a guarded transaction as one Raft entry (on the leader): if
    /// every compare holds, its `success` operations apply, else its
    /// `failure` ones; atomically and linearizably.
    ///
    /// # Errors
    /// [`OpError::Invalid`] naming the compare or operation at fault (limits
    /// [`MAX_TXN_COMPARES`] and [`MAX_TXN_OPS`], reserved keys, list limits,
    /// size); as [`put`](Self::put).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, OpError> {
        check_txn(&txn)?;
        let (r, _) = self
            .write_full(Request {
                commands: vec![Command::Txn(txn)],
            })
            .await?;
        r.ok_or_else(|| OpError::Raft("a transaction entry applied without a result".into()))
    }

    /// Sets `key` to `value` if `guard` holds (one read-compare-write step).
    ///
    /// # Errors
    /// [`OpError::GuardFailed`] with the key's current mod revision when it
    /// does not (nothing is written); as [`put`](Self::put).
    pub async fn put_if(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        guard: Guard,
    ) -> Result<Written, OpError> {
        let key = key.into();
        let value = value.into();
        self.guarded(
            guard,
            &key,
            TxnOp::Put {
                key: key.clone(),
                value,
            },
        )
        .await
    }

    /// Removes `key` if `guard` holds.
    ///
    /// # Errors
    /// As [`put_if`](Self::put_if).
    pub async fn delete_if(
        &self,
        key: impl Into<Vec<u8>>,
        guard: Guard,
    ) -> Result<Written, OpError> {
        let key = key.into();
        self.guarded(guard, &key, TxnOp::Delete { key: key.clone() })
            .await
    }

    async fn guarded(&self, guard: Guard, key: &[u8], op: TxnOp) -> Result<Written, OpError> {
        let r = self
            .txn(Txn {
                compares: vec![guard.compare(key)],
                success: vec![op],
                failure: vec![TxnOp::Get { key: key.to_vec() }],
            })
            .await?;
        if r.succeeded {
            let changed_keys = match r.results.first() {
                Some(OpResult::Delete { deleted }) => *deleted,
                _ => 1,
            };
            return Ok(Written {
                index: r.revision,
                changed_keys,
            });
        }
        let mod_revision = match r.results.first() {
            Some(OpResult::Get { kv }) => kv.as_ref().map_or(0, |kv| kv.mod_revision),
            _ => 0,
        };
        Err(OpError::GuardFailed {
            revision: r.revision,
            mod_revision,
        })
    }

    /// Watches the keys `filter` selects: every change after revision
    /// `from` (`None`: from now), exactly once, in revision order, with
    /// progress reports. Any node serves it from its own applied state: on
    /// a follower the changes come as that node applies them (in order,
    /// possibly behind the leader; progress says how far it is).
    ///
    /// # Errors
    /// [`OpError::Watch`] with [`WatchError::Compacted`] when this node no
    /// longer holds the changes after `from` (list again, then watch from
    /// the listing's revision); [`OpError::Shutdown`].
    pub fn watch(&self, filter: Filter, from: Option<u64>) -> Result<Watcher, OpError> {
        Ok(self.parts()?.sm.watch(filter, from)?)
    }

    /// The store's revision on this node: the index of the last entry it
    /// applied.
    ///
    /// # Errors
    /// [`OpError::Shutdown`].
    pub fn revision(&self) -> Result<u64, OpError> {
        Ok(self.parts()?.sm.revision())
    }

    /// The cluster's members as this node knows them (any node).
    ///
    /// # Errors
    /// [`OpError::Shutdown`].
    pub fn members(&self) -> Result<Members, OpError> {
        let parts = self.parts()?;
        let m = parts.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let member = |id: NodeId| Member {
            id,
            addr: membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default(),
        };
        Ok(Members {
            leader: m.current_leader,
            voters: membership.voter_ids().map(member).collect(),
            learners: membership.learner_ids().map(member).collect(),
            changing: membership.get_joint_config().len() > 1,
        })
    }

    /// Adds node `id`, reachable at `addr` (`host:port`), to the cluster
    /// (on the leader): first as a learner, which catches up through the
    /// snapshot chain and the log (fetching only the segments it lacks),
    /// then as a voter. Returns once it votes. The new node starts empty,
    /// configured to join ([`NodeBuilder::join`](super::NodeBuilder::join)).
    ///
    /// # Errors
    /// [`OpError::Invalid`] for id 0, an address that is not `host:port`,
    /// or a node that votes already; [`OpError::NotLeader`] on a follower.
    pub async fn add_member(&self, id: NodeId, addr: &str) -> Result<Members, OpError> {
        if id == 0 {
            return Err(OpError::Invalid("id: a node id is not 0".into()));
        }
        let valid = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(OpError::Invalid(format!("addr: {addr:?} is not host:port")));
        }
        if self.members()?.voters.iter().any(|m| m.id == id) {
            return Err(OpError::Invalid(format!(
                "id: node {id} is a voter already"
            )));
        }
        let parts = self.parts()?;
        if parts.peer_auth.is_none() {
            return Err(OpError::Invalid(
                "this node has neither `cluster-secret` nor `[tls]`: give every node the same \
                 secret or certificates of one CA (and restart this one with them) before \
                 adding members"
                    .into(),
            ));
        }
        Self::not_handing_over(&parts)?;
        parts
            .raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(membership_error)?;
        parts
            .raft
            .change_membership(
                openraft::ChangeMembers::AddVoterIds(std::iter::once(id).collect()),
                false,
            )
            .await
            .map_err(membership_error)?;
        self.members()
    }

    /// Removes node `id` from the cluster (on the leader). Removing the
    /// leader itself first hands leadership to another voter: this node
    /// stops taking writes and heartbeats until one is elected, then answers
    /// [`OpError::NotLeader`] naming it, where the removal is to be asked
    /// for again (the HTTP client does this by itself). A removed node
    /// takes no writes; shut it down.
    ///
    /// # Errors
    /// [`OpError::Invalid`] for a node that is not a member or the last
    /// voter; [`OpError::NotLeader`] as above or on a follower;
    /// [`OpError::Timeout`] if no other voter took over.
    pub async fn remove_member(&self, id: NodeId) -> Result<Members, OpError> {
        let members = self.members()?;
        let voter = members.voters.iter().any(|m| m.id == id);
        if !voter && !members.learners.iter().any(|m| m.id == id) {
            return Err(OpError::Invalid(format!("id: node {id} is not a member")));
        }
        if voter && members.voters.len() == 1 {
            return Err(OpError::Invalid(format!(
                "id: node {id} is the last voter; a cluster needs one"
            )));
        }
        let parts = self.parts()?;
        Self::not_handing_over(&parts)?;
        if id == self.id && members.leader == Some(self.id) {
            return Err(self.hand_over(&parts).await);
        }
        let ids = std::iter::once(id).collect();
        let change = if voter {
            openraft::ChangeMembers::RemoveVoters(ids)
        } else {
            openraft::ChangeMembers::RemoveNodes(ids)
        };
        parts
            .raft
            .change_membership(change, false)
            .await
            .map_err(membership_error)?;
        self.members()
    }

    /// Hands this leader's leadership over: no writes, linearizable reads,
    /// membership changes, heartbeats or elections of its own until the
    /// other voters elect one of themselves; the answer names it. Runs as
    /// its own task, so a caller that goes away does not leave the node
    /// half handed over.
    async fn hand_over(&self, parts: &Arc<Parts>) -> OpError {
        use std::sync::atomic::Ordering;
        if parts.handing_over.swap(true, Ordering::AcqRel) {
            return OpError::NotLeader {
                leader: None,
                leader_addr: None,
            };
        }
        let raft = parts.raft.clone();
        let flag = parts.handing_over.clone();
        let me = self.id;
        let task = tokio::spawn(async move {
            let config = raft.runtime_config();
            config.heartbeat(false);
            config.elect(false);
            let waited = raft
                .wait(Some(HAND_OVER_TIMEOUT))
                .metrics(
                    |m| m.current_leader.is_some_and(|l| l != me),
                    "another leader",
                )
                .await;
            config.heartbeat(true);
            config.elect(true);
            flag.store(false, Ordering::Release);
            waited
        });
        match task.await {
            Ok(Ok(m)) => {
                let leader = m.current_leader;
                let leader_addr = leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.addr.clone())
                });
                tracing::info!(?leader, "handed leadership over before this node's removal");
                OpError::NotLeader {
                    leader,
                    leader_addr,
                }
            }
            Ok(Err(openraft::metrics::WaitError::Timeout(..))) => OpError::Timeout {
                what: "another voter to take the leadership over",
                after: HAND_OVER_TIMEOUT,
            },
            Ok(Err(openraft::metrics::WaitError::ShuttingDown)) | Err(_) => OpError::Shutdown,
        }
    }

    /// [`OpError::NotLeader`] while this node hands its leadership over.
    fn not_handing_over(parts: &Parts) -> Result<(), OpError> {
        if parts
            .handing_over
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(OpError::NotLeader {
                leader: None,
                leader_addr: None,
            });
        }
        Ok(())
    }

    /// Role, term, log and snapshot facts, policy, controller counters and
    /// how the node came up (what `GET /admin/status` answers).
    ///
    /// # Errors
    /// [`OpError::Shutdown`].
    pub fn status(&self) -> Result<Status, OpError> {
        Ok(Status::of(&*self.parts()?))
    }

    /// The running policy and its counters (what `GET /admin/policy`
    /// answers).
    ///
    /// # Errors
    /// [`OpError::Shutdown`].
    pub fn policy(&self) -> Result<PolicyStatus, OpError> {
        Ok(PolicyStatus::of(&*self.parts()?))
    }

    /// Builds a snapshot now (of `kind`, or what the chain calls for; the
    /// chain bound applies), or right after the running build.
    ///
    /// # Errors
    /// [`OpError::Snapshot`] if the build failed (its changes are kept for
    /// the next one) or the node is shutting down.
    pub async fn snapshot_now(&self, kind: Option<SnapshotKind>) -> Result<SnapshotInfo, OpError> {
        let m = self.parts()?.controller.snapshot(kind).await?;
        Ok(SnapshotInfo::of(&m))
    }

    /// Swaps the compaction policy: on this node only, or on every node
    /// through the Raft log (`Scope::Cluster`, on the leader). The module is
    /// compiled, instantiated, configured and dry-run first; if any step
    /// fails the running policy stays (and, for a rollout, nothing enters
    /// the log).
    ///
    /// # Errors
    /// [`OpError::Policy`] naming why the policy was refused;
    /// [`OpError::TooLarge`] for a component over the node's `policy.max-upload-bytes`;
    /// [`OpError::NotLeader`] for a rollout sent to a follower.
    pub async fn swap_policy(
        &self,
        choice: PolicyChoice,
        scope: Scope,
    ) -> Result<Swapped, OpError> {
        let r = self.swap_policy_unrecorded(choice, scope).await;
        if let Err(e) = &r
            && !matches!(e, OpError::NotLeader { .. } | OpError::Shutdown)
            && let Ok(parts) = self.parts()
        {
            parts
                .controller
                .shared()
                .note_refused(scope == Scope::Cluster, &e.to_string());
        }
        r
    }

    async fn swap_policy_unrecorded(
        &self,
        choice: PolicyChoice,
        scope: Scope,
    ) -> Result<Swapped, OpError> {
        let Some(source) = choice.source else {
            return Err(OpError::Invalid(
                "the native policy is a start-up setting (`policy.name = \"native\"`), not a swap"
                    .into(),
            ));
        };
        let label = source.to_string();
        let wasm = source.bytes()?;
        let parts = self.parts()?;
        let max = parts.max_policy_bytes;
        if wasm.len() > max {
            return Err(OpError::TooLarge(format!(
                "the policy is {} bytes; this node accepts policies of at most {max} bytes \
                 (`policy.max-upload-bytes`)",
                wasm.len()
            )));
        }
        let controller = &parts.controller;
        let host = controller.shared().host().clone();
        if scope == Scope::Local {
            let report = super::controller::swap_in(&host, source, choice.config).await?;
            controller.shared().note_local_swap();
            controller.check();
            return Ok(Swapped {
                name: report.meta.name,
                hash: report.meta.hash,
                scope,
                index: None,
                dry_run_clamps: report.dry_run_clamps,
            });
        }
        // A rollout: validate here, before the entry enters the log.
        let (bytes, lbl, config) = (wasm.clone(), label.clone(), choice.config.clone());
        let checked = tokio::task::spawn_blocking(move || {
            let (policy, _) = host.runtime().load(&bytes, &lbl, &config)?;
            let (_, clamps) = dry_run(&policy, host.bounds())?;
            Ok::<_, PolicyError>((policy.meta().clone(), clamps))
        })
        .await
        .map_err(|e| {
            OpError::Policy(PolicyError::Engine(format!(
                "the validation task failed: {e}"
            )))
        })?;
        let (meta, clamps) = checked?;
        let policy = PolicyRef::of(&label, &wasm, &choice.config);
        // The bytes go to the snapshot store before the entry that names
        // them enters the log; every node fetches them from there (or from
        // a member) by hash.
        parts
            .sm
            .snapshots()
            .put_blob(&policy.hash, bytes::Bytes::copy_from_slice(&wasm))
            .await
            .map_err(|e| OpError::Raft(Box::new(e)))?;
        let w = self
            .write(Request {
                commands: vec![Command::RollOut(policy)],
            })
            .await?;
        Ok(Swapped {
            name: meta.name,
            hash: meta.hash,
            scope,
            index: Some(w.index),
            dry_run_clamps: clamps,
        })
    }
}
