//! [`NodeBuilder`]: every way to configure a node before it starts, in
//! code; a [`NodeConfig`] (the TOML file) is one way to fill it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{NodeConfig, Peer, RaftTiming};
use crate::log_store::LogOptions;
use crate::policy::{PolicySource, SandboxLimits};
use crate::raft::NodeId;
use crate::sdk::Bounds;
use crate::snapshot::{S3Config, SnapshotConfig, SnapshotStore};

use super::{Node, NodeError};

/// Where a node listens for HTTP.
#[derive(Debug)]
pub enum Listen {
    /// Bind this address (port 0: any free port; [`NodeHandle::addr`](super::NodeHandle::addr) tells which).
    Addr(SocketAddr),
    /// Serve on a listener the caller bound already (so no other process can
    /// take the port between choosing and binding it).
    Listener(std::net::TcpListener),
    /// Listen nowhere: a single-node cluster used only in-process.
    Nowhere,
}

/// Which HTTP endpoints a node serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Endpoints {
    /// The Raft RPCs between members, the client KV API and the admin API.
    #[default]
    All,
    /// Only the Raft RPCs between members (`/raft/*`): an embedded node
    /// whose service offers its own API.
    RaftOnly,
}

/// Where a node keeps its snapshots.
#[derive(Clone)]
pub enum SnapshotStoreSpec {
    /// A local directory.
    Dir(PathBuf),
    /// An S3-compatible object store.
    S3(S3Config),
    /// A store of the caller's (it must keep the [`SnapshotStore`] contract).
    Custom(Arc<dyn SnapshotStore>),
}

impl std::fmt::Debug for SnapshotStoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotStoreSpec::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            SnapshotStoreSpec::S3(s) => f.debug_tuple("S3").field(s).finish(),
            SnapshotStoreSpec::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The policy a node starts with (unless its state holds a rolled-out one,
/// which wins), and its configuration.
#[derive(Clone, Debug)]
pub struct PolicyChoice {
    /// `None`: no Wasm at all, the compiled-in `entries` logic decides.
    pub(crate) source: Option<PolicySource>,
    /// The policy's configuration, TOML text.
    pub(crate) config: String,
}

impl PolicyChoice {
    /// A built-in policy by name (`entries`, `bytes-or-age`, `adaptive`).
    pub fn builtin(name: &str) -> PolicyChoice {
        PolicyChoice {
            source: Some(PolicySource::Builtin(name.to_string())),
            config: String::new(),
        }
    }

    /// A policy component file.
    pub fn file(path: impl Into<PathBuf>) -> PolicyChoice {
        PolicyChoice {
            source: Some(PolicySource::File(path.into())),
            config: String::new(),
        }
    }

    /// A policy component in memory; `label` names it in messages.
    pub fn wasm(label: &str, bytes: impl Into<Arc<[u8]>>) -> PolicyChoice {
        PolicyChoice {
            source: Some(PolicySource::Bytes {
                label: label.to_string(),
                bytes: bytes.into(),
            }),
            config: String::new(),
        }
    }

    /// No Wasm: the compiled-in `entries` logic (the fallback) decides.
    pub fn native() -> PolicyChoice {
        PolicyChoice {
            source: None,
            config: String::new(),
        }
    }

    /// The policy's configuration, as TOML text (its keys are the
    /// policy's; unknown ones are refused when the node starts).
    pub fn config(mut self, toml: impl Into<String>) -> PolicyChoice {
        self.config = toml.into();
        self
    }
}

/// Builds a [`Node`]: `Node::builder(id, data_dir)`, the settings that
/// differ from the defaults, then [`start`](NodeBuilder::start).
///
/// The defaults are those of a [`NodeConfig`] with only `id` and `data-dir`
/// set: listen on `127.0.0.1:7001` with every endpoint, snapshots in
/// `DATA_DIR/snapshots`, the built-in `adaptive` policy, no admin token.
#[derive(Debug)]
pub struct NodeBuilder {
    config: NodeConfig,
    listen: Listen,
    endpoints: Endpoints,
    store: Option<SnapshotStoreSpec>,
    policy: Option<PolicyChoice>,
}

impl NodeBuilder {
    pub(super) fn new(id: NodeId, data_dir: PathBuf) -> NodeBuilder {
        let config = NodeConfig::new(id, data_dir);
        NodeBuilder::from_config(config)
    }

    /// A builder filled from a configuration (for instance a TOML file read
    /// with [`NodeConfig::load`]); later calls override it.
    pub fn from_config(config: NodeConfig) -> NodeBuilder {
        NodeBuilder {
            listen: Listen::Addr(config.listen),
            config,
            endpoints: Endpoints::All,
            store: None,
            policy: None,
        }
    }

    /// Where to listen (default `127.0.0.1:7001`).
    pub fn listen(mut self, listen: Listen) -> Self {
        self.listen = listen;
        self
    }

    /// Which endpoints to serve (default: all).
    pub fn endpoints(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// The other members of the cluster, as `(id, "host:port")`.
    pub fn peers<A: Into<String>>(mut self, peers: impl IntoIterator<Item = (NodeId, A)>) -> Self {
        self.config.peers = peers
            .into_iter()
            .map(|(id, addr)| Peer {
                id,
                addr: addr.into(),
            })
            .collect();
        self
    }

    /// The secret requests between the cluster's nodes are signed with (at
    /// least 16 characters, the same on every node); a node with peers or
    /// joining a cluster needs one.
    pub fn cluster_secret(mut self, secret: impl Into<String>) -> Self {
        self.config.cluster_secret = Some(secret.into());
        self.config.cluster_secret_file = None;
        self
    }

    /// TLS for the listener and requests to peers: the cluster CA's
    /// certificate, this node's certificate and its key (PEM files; see
    /// [`TlsConfig`](crate::config::TlsConfig)).
    pub fn tls(mut self, files: crate::config::TlsConfig) -> Self {
        self.config.tls = Some(files);
        self
    }

    /// Where snapshots go (default: `DATA_DIR/snapshots`).
    pub fn snapshot_store(mut self, store: SnapshotStoreSpec) -> Self {
        self.store = Some(store);
        self
    }

    /// Snapshot format, retention and chain bound.
    pub fn snapshots(mut self, snapshots: SnapshotConfig) -> Self {
        self.config.snapshots = snapshots;
        self
    }

    /// The first policy (default: the built-in `adaptive`).
    pub fn policy(mut self, policy: PolicyChoice) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The largest policy component a swap or rollout may upload (default
    /// 64 MiB).
    pub fn max_policy_bytes(mut self, bytes: usize) -> Self {
        self.config.policy.max_upload_bytes = Some(bytes);
        self
    }

    /// Where compiled policies are cached (default `DATA_DIR/policy-cache`).
    pub fn policy_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.policy.cache_dir = Some(dir.into());
        self
    }

    /// The sandbox limits of policies.
    pub fn limits(mut self, limits: SandboxLimits) -> Self {
        self.config.limits = limits;
        self
    }

    /// The bounds every decision is clamped to.
    pub fn bounds(mut self, bounds: Bounds) -> Self {
        self.config.bounds = bounds;
        self
    }

    /// Raft timing.
    pub fn raft_timing(mut self, timing: RaftTiming) -> Self {
        self.config.raft = timing;
        self
    }

    /// Log store options.
    pub fn log_options(mut self, log: LogOptions) -> Self {
        self.config.log = log;
        self
    }

    /// Also serve the client and admin API on a unix socket at `path`
    /// (mode 0600; removed on shutdown; a stale one is replaced).
    pub fn listen_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.listen_unix = Some(path.into());
        self
    }

    /// Marks the node as joining a running cluster: it refuses to
    /// [`initialize`](super::NodeHandle::initialize) one, and waits for the
    /// leader to add it ([`add_member`](super::NodeHandle::add_member)).
    pub fn join(mut self, join: bool) -> Self {
        self.config.join = join;
        self
    }

    /// How much change history watchers get.
    pub fn watch(mut self, watch: crate::config::WatchConfig) -> Self {
        self.config.watch = watch;
        self
    }

    /// The admin API's bearer token (at least 8 characters); without one the
    /// admin API answers 403.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(token.into());
        self
    }

    /// Opens the stores, restores the newest snapshot that verifies, starts
    /// Raft, the compaction controller and (unless [`Listen::Nowhere`]) the
    /// HTTP server. The node does not create a cluster:
    /// [`initialize`](super::NodeHandle::initialize) does, on one node.
    ///
    /// # Errors
    /// [`NodeError`] naming what could not be opened, bound or loaded, or
    /// which setting is wrong.
    pub async fn start(self) -> Result<Node, NodeError> {
        let NodeBuilder {
            mut config,
            listen,
            endpoints,
            store,
            policy,
        } = self;
        let store = store.unwrap_or_else(|| match &config.snapshot_store.s3 {
            Some(s3) => SnapshotStoreSpec::S3(s3.clone()),
            None => SnapshotStoreSpec::Dir(config.snapshot_dir()),
        });
        let policy = match policy {
            Some(p) => p,
            None => policy_of(&config)?,
        };
        if let Listen::Addr(a) = &listen {
            config.listen = *a;
        }
        super::start::start(super::start::Plan {
            config,
            listen,
            endpoints,
            store,
            policy,
        })
        .await
    }
}

/// The first policy a [`NodeConfig`] names.
fn policy_of(config: &NodeConfig) -> Result<PolicyChoice, NodeError> {
    let text = toml::to_string(&config.policy.config).map_err(|e| NodeError::Config {
        reason: format!("policy.config: {e}"),
    })?;
    let source = match config.policy.name.as_deref() {
        Some("native") => None,
        _ => Some(config.policy.source()),
    };
    Ok(PolicyChoice {
        source,
        config: text,
    })
}
