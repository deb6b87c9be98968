//! A ramrod node: openraft with ramrod's log store, state machine and
//! snapshot store, Raft RPCs and the client API over HTTP.
//!
//! openraft's own snapshot policy is `Never` and it keeps every log entry
//! after a snapshot: snapshots and purges are left to the compaction
//! controller.

pub mod api;
pub mod controller;
pub mod network;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Raft, SnapshotPolicy};

use crate::config::NodeConfig;
use crate::log_store::LogStore;
use crate::policy::{PolicyHost, PolicyRuntime};
use crate::raft::{NodeId, TypeConfig};
use crate::snapshot::{DirStore, S3Store, SnapshotStore, Snapshots};
use crate::state_machine::KvStateMachine;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration does not make sense.
    #[error("config: {0}")]
    Config(String),
    /// The data directory could not be prepared.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The log store did not open.
    #[error(transparent)]
    Log(#[from] crate::log_store::LogStoreError),
    /// The snapshot store or state machine did not open.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
    /// The configured policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How a node came up: the snapshot chain it restored and the log tail
/// openraft replayed on top.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
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
}

/// A running node.
pub struct Node {
    /// Its Raft.
    pub raft: Raft<TypeConfig>,
    /// Its state machine.
    pub sm: KvStateMachine,
    /// Its log store.
    pub log: LogStore,
    /// Bytes of Raft RPCs sent, by target.
    pub sent: network::SentBytes,
    /// How it came up.
    pub recovery: Arc<Recovery>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its compaction controller.
    pub controller: controller::ControllerHandle,
    controller_task: tokio::task::JoinHandle<()>,
    config: NodeConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.config.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the node's stores, starts Raft and the HTTP server.
    ///
    /// # Errors
    /// [`NodeError`] naming what could not be opened or bound.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.validate().map_err(NodeError::Config)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let log = LogStore::open_with(&config.data_dir, config.log)?;
        let store: Arc<dyn SnapshotStore> = match &config.snapshot_store.s3 {
            Some(s3) => Arc::new(S3Store::new(s3).map_err(crate::snapshot::SnapshotError::from)?),
            None => Arc::new(
                DirStore::open(&config.snapshot_dir())
                    .map_err(crate::snapshot::SnapshotError::from)?,
            ),
        };
        let group = format!("node-{}", config.id);
        let snaps = Arc::new(Snapshots::new(store, &group, config.snapshots.clone()));
        let started = std::time::Instant::now();
        let (sm, report) = KvStateMachine::open(snaps).await?;
        let restore_ms = started.elapsed().as_millis() as u64;
        for (name, why) in &report.skipped {
            tracing::warn!(snapshot = %name, reason = %why, "skipped a damaged snapshot at start-up");
        }
        let (host, origin) = start_policy(&config, &sm).await?;

        let t = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: "ramrod".into(),
            heartbeat_interval: t.heartbeat_ms,
            election_timeout_min: t.election_min_ms,
            election_timeout_max: t.election_max_ms,
            snapshot_policy: match t.builtin_snapshot_every {
                Some(n) => SnapshotPolicy::LogsSinceLast(n),
                None => SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: match t.builtin_snapshot_every {
                Some(_) => t.builtin_keep,
                None => u64::MAX,
            },
            install_snapshot_timeout: t.install_timeout_ms.max(t.rpc_timeout_ms),
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let network = network::HttpNetwork::new(Duration::from_millis(t.rpc_timeout_ms));
        let in_flight = network.in_flight();
        let sent = network.sent();
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            network,
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        // A follower installing a snapshot fetches the segments its store
        // lacks from the leader.
        sm.set_segment_source(Some(Arc::new(network::LeaderSource::new(
            raft.metrics(),
            Duration::from_millis(t.install_timeout_ms),
        ))));
        let recovery = Arc::new(Recovery {
            snapshot: report.loaded.as_ref().map(|l| l.manifest.id.clone()),
            snapshot_index: report
                .loaded
                .as_ref()
                .and_then(|l| l.manifest.last_log_id)
                .map(|l| l.index),
            layers: report
                .loaded
                .as_ref()
                .map_or(0, |l| 1 + l.manifest.deltas.len()),
            bytes_read: report.loaded.as_ref().map_or(0, |l| l.bytes_read),
            skipped: report.skipped.len(),
            restore_ms,
            applied_at_ready: sm.last_applied().map(|l| l.index),
            ready_ms: started.elapsed().as_millis() as u64,
        });
        let (controller, controller_task) = controller::start(controller::Parts {
            id: config.id,
            raft: raft.clone(),
            sm: sm.clone(),
            log: log.clone(),
            host,
            data_dir: config.data_dir.clone(),
            in_flight,
            origin,
            decide: t.builtin_snapshot_every.is_none(),
        });

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
        let app = api::router(api::AppState {
            raft: raft.clone(),
            sm: sm.clone(),
            log: log.clone(),
            token: config.token.clone(),
            controller: controller.clone(),
            recovery: recovery.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        Ok(Node {
            raft,
            sm,
            log,
            addr,
            sent,
            recovery,
            controller,
            controller_task,
            config,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Initializes a new cluster of this node and its configured peers (a
    /// no-op error if it is already initialized).
    ///
    /// # Errors
    /// If openraft refuses (for instance, the cluster already exists).
    pub async fn initialize(&self) -> Result<(), NodeError> {
        let mut members = BTreeMap::new();
        members.insert(self.config.id, BasicNode::new(self.addr.to_string()));
        for p in &self.config.peers {
            members.insert(p.id, BasicNode::new(p.addr.clone()));
        }
        self.raft
            .initialize(members)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Stops the HTTP server and Raft, and flushes the log.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.controller_task.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let _ = self.log.flush().await;
    }
}

/// The policy host with the node's first policy in: the one the state holds
/// (the last rollout), else the configured one.
async fn start_policy(
    config: &NodeConfig,
    sm: &KvStateMachine,
) -> Result<(Arc<PolicyHost>, controller::PolicyOrigin), NodeError> {
    let runtime = PolicyRuntime::new(
        config.limits.clone(),
        Some(config.data_dir.join("policy-cache")),
    )?;
    let native = config.policy.name.as_deref() == Some("native");
    let fallback = if native {
        toml::to_string(&config.policy.config)
            .map_err(|e| NodeError::Config(format!("policy.config: {e}")))?
    } else {
        String::new()
    };
    let bounds = crate::sdk::Bounds {
        max_chain: u32::try_from(config.snapshots.max_chain).unwrap_or(u32::MAX),
        ..config.bounds.clone()
    };
    let host = Arc::new(PolicyHost::new(runtime, bounds, &fallback)?);
    let mut origin = controller::PolicyOrigin::default();
    if let Some(applied) = sm.policy() {
        match controller::swap_spec(&host, &applied.spec).await {
            Ok(_) => {
                origin.origin = "rollout".into();
                origin.index = Some(applied.index);
                return Ok((host, origin));
            }
            Err(e) => {
                tracing::error!(index = applied.index, error = %e, "the rolled-out policy in the state does not load here; using the configured one");
                origin.last_error = Some(format!("rollout at index {}: {e}", applied.index));
            }
        }
    }
    if native {
        origin.origin = "config".into();
        return Ok((host, origin));
    }
    let source = config.policy.source();
    let text = toml::to_string(&config.policy.config)
        .map_err(|e| NodeError::Config(format!("policy.config: {e}")))?;
    controller::swap_in(&host, source, text).await?;
    origin.origin = "config".into();
    Ok((host, origin))
}
