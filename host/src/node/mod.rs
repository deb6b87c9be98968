//! A ramrod node: openraft with ramrod's log store, state machine and
//! snapshot store, the compaction controller, and (optionally) HTTP for the
//! Raft RPCs between members and the client and admin API.
//!
//! openraft's own snapshot policy is `Never` and it keeps every log entry
//! after a snapshot: snapshots and purges are left to the compaction
//! controller.
//!
//! - [`builder`]: [`NodeBuilder`], everything about a node before it starts;
//! - `start`: the start-up sequence;
//! - [`handle`]: [`NodeHandle`], the typed operations on a running node;
//! - [`status`]: what a node reports about itself;
//! - [`controller`]: observe, plan, execute: the compaction controller;
//! - [`raft_rpc`]: Raft RPCs over HTTP, client and server side;
//! - [`http`]: the client and admin API; [`metrics`]: Prometheus text.

pub mod builder;
pub mod controller;
pub mod handle;
pub mod http;
pub mod metrics;
pub mod peer_auth;
pub mod raft_rpc;
mod socket;
mod start;
pub mod status;
pub mod tls;

use std::path::PathBuf;

pub use builder::{Endpoints, Listen, NodeBuilder, PolicyChoice, SnapshotStoreSpec};
pub use handle::{
    ClusterStart, Guard, Member, Members, NodeHandle, Op, OpError, Scope, Swapped, Written,
};
pub use status::{FollowerProgress, PolicyStatus, SnapshotInfo, SnapshotSummary, Status};

use crate::config::NodeConfig;
use crate::raft::NodeId;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A setting is wrong or settings do not fit together.
    #[error("config: {reason}")]
    Config {
        /// What is wrong, naming the setting.
        reason: String,
    },
    /// The data directory could not be prepared.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node's local state is damaged beyond repair, and it cannot be
    /// recovered from the cluster now.
    #[error("{reason}. {remedy}")]
    Damaged {
        /// What is damaged.
        reason: String,
        /// Why the cluster cannot help now, and what to do.
        remedy: String,
    },
    /// The log store did not open.
    #[error(transparent)]
    Log(#[from] crate::log_store::LogStoreError),
    /// The snapshot store or state machine did not open.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// openraft refused to start (its configuration, or its storage).
    #[error("raft: {0}")]
    Raft(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The first policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The unix socket (`listen-unix`) could not be bound.
    #[error("listening on unix socket {}: {source}", path.display())]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How a node came up: the snapshot chain it restored and the log tail
/// openraft replayed on top.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recovery {
    /// The snapshot restored, if any.
    pub snapshot: Option<String>,
    /// The last log index it covers.
    pub snapshot_index: Option<u64>,
    /// Its layers (base + deltas).
    pub layers: usize,
    /// Segment bytes read and verified.
    pub bytes_read: u64,
    /// Newer snapshots skipped as damaged.
    pub skipped: usize,
    /// Time to restore the snapshot.
    pub restore_ms: u64,
    /// The applied index once Raft had started (snapshot plus the replayed
    /// log tail).
    pub applied_at_ready: Option<u64>,
    /// Time from opening the stores to Raft running.
    pub ready_ms: u64,
    /// A damaged log index rebuilt from the segments at this start: what
    /// was wrong, and where the damaged file was kept.
    #[serde(default)]
    pub index_rebuilt: Option<String>,
    /// A local state damaged beyond repair that this start discarded to
    /// recover from the cluster: what was wrong, and where it went.
    #[serde(default)]
    pub discarded: Option<String>,
    /// While recovering from the cluster, the node grants no votes and
    /// starts no election until it has applied this index (what it may
    /// have acknowledged before).
    #[serde(default)]
    pub votes_withheld_until: Option<u64>,
    /// Log stores discarded in this data directory so far.
    #[serde(default)]
    pub discards: usize,
}

/// How long shutdown waits for open HTTP answers before cutting them.
const SERVER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A running node. It derefs to its [`NodeHandle`], which has every typed
/// operation (`put`, `get`, `status`, `snapshot_now`, `swap_policy`, ...);
/// [`shutdown`](Node::shutdown) stops it.
#[derive(Debug)]
pub struct Node {
    parts: std::sync::Arc<handle::Parts>,
    handle: NodeHandle,
    controller_task: tokio::task::JoinHandle<()>,
    /// The HTTP servers (TCP, unix socket) and what stops each.
    servers: Vec<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    /// The unix socket file to remove once the servers have stopped.
    socket: Option<socket::SocketFile>,
}

impl std::ops::Deref for Node {
    type Target = NodeHandle;

    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl Node {
    /// A builder for node `id` (not 0) keeping its data in `data_dir`.
    pub fn builder(id: NodeId, data_dir: impl Into<PathBuf>) -> NodeBuilder {
        NodeBuilder::new(id, data_dir.into())
    }

    /// Starts a node as `config` (a TOML file's content) says:
    /// `NodeBuilder::from_config(config).start()`.
    ///
    /// # Errors
    /// [`NodeError`] naming what could not be opened, bound or loaded.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        NodeBuilder::from_config(config).start().await
    }

    /// A handle on the node that can be cloned into other tasks.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Ends open watches, stops the HTTP servers (removing the unix socket),
    /// the controller (aborting a snapshot build) and Raft, and flushes the
    /// log. Operations on handles after this fail
    /// with [`OpError::Shutdown`]; the stores are closed once the calls in
    /// flight on handles have returned.
    pub async fn shutdown(self) {
        let Node {
            parts,
            handle: _,
            controller_task,
            servers,
            socket,
        } = self;
        // Watch streams end with a reason first: the servers' graceful
        // shutdown waits for open answers.
        parts.sm.close_watches();
        let servers: Vec<_> = servers
            .into_iter()
            .map(|(stop, task)| {
                let _ = stop.send(());
                task
            })
            .collect();
        // No snapshot is written once the controller has stopped.
        parts.controller.stop().await;
        let _ = controller_task.await;
        if let Err(e) = parts.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        // Open answers get a while to finish (a watch's last line, one
        // that stopped reading included); then they are cut.
        for mut task in servers {
            if tokio::time::timeout(SERVER_DRAIN, &mut task).await.is_err() {
                tracing::warn!("HTTP connections still open after shutdown; closing them");
                task.abort();
                let _ = task.await;
            }
        }
        if let Some(s) = socket {
            s.remove();
        }
        let _ = parts.log.flush().await;
        // The last strong reference: dropping it closes the stores, so the
        // node can start again in this process while handles live on.
        drop(parts);
    }
}
