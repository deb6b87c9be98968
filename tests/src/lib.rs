//! Integration tests live in `it/`, benchmarks in `benches/`; this library
//! holds what both need.

#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use ramrod::internals::harness::HeldSocket;
use ramrod::{Listen, Node, NodeBuilder, NodeConfig, NodeError, Peer};

/// Loopback listeners for the nodes of an in-process cluster, bound once
/// for the test's whole life: a node (re)started on its port gets a copy of
/// the listener, so no other process can take the port in between; while a
/// node is down ([`stop`]) its port refuses connections at once.
#[derive(Debug)]
pub struct Ports(Vec<Mutex<HeldSocket>>);

impl Ports {
    /// `n` listeners on `127.0.0.1`, for nodes `1..=n`.
    pub fn bind(n: usize) -> Ports {
        Ports(
            (0..n)
                .map(|_| Mutex::new(HeldSocket::bind_loopback().expect("a loopback port")))
                .collect(),
        )
    }

    fn socket(&self, id: u64) -> std::sync::MutexGuard<'_, HeldSocket> {
        self.0[id as usize - 1]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Node `id`'s address.
    pub fn addr(&self, id: u64) -> SocketAddr {
        self.socket(id).addr()
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Node `id`'s listener, for [`NodeBuilder::listen`].
    pub fn listen(&self, id: u64) -> Listen {
        Listen::Listener(self.socket(id).hand_out().expect("a listener duplicates"))
    }
}

/// Starts the node `config` describes on its listener from `ports`.
///
/// # Errors
/// Why the node did not start.
pub async fn start(ports: &Ports, config: NodeConfig) -> Result<Node, NodeError> {
    let id = config.id;
    let started = NodeBuilder::from_config(config)
        .listen(ports.listen(id))
        .start()
        .await;
    if started.is_err() {
        let _ = ports.socket(id).park();
    }
    started
}

/// Shuts `node` down; its port refuses connections until it is started
/// again.
pub async fn stop(ports: &Ports, node: Node) {
    let id = node.id();
    node.shutdown().await;
    let _ = ports.socket(id).park();
}

/// The cluster secret [`node_config`] gives every node.
pub const CLUSTER_SECRET: &str = "ramrod-tests-cluster-secret";

/// The config of node `id` of a loopback cluster on `ports`, its data in
/// `dir/node-{id}`, quick Raft timings, admin token `token`, the cluster
/// secret [`CLUSTER_SECRET`].
pub fn node_config(id: u64, ports: &Ports, dir: &Path, token: &str) -> NodeConfig {
    let mut c = NodeConfig::new(id, dir.join(format!("node-{id}")));
    c.listen = ports.addr(id);
    c.peers = (1..=ports.len() as u64)
        .filter(|&p| p != id)
        .map(|p| Peer {
            id: p,
            addr: ports.addr(p).to_string(),
        })
        .collect();
    c.token = Some(token.into());
    c.cluster_secret = Some(CLUSTER_SECRET.into());
    c.raft.heartbeat_ms = 50;
    c.raft.election_min_ms = 300;
    c.raft.election_max_ms = 600;
    c
}

/// Names of the segments in the snapshot directory `dir` (empty if there is
/// none yet).
pub async fn stored_segments(dir: &Path) -> std::collections::BTreeSet<String> {
    use ramrod::internals::snapshot::SnapshotStore;
    match ramrod::internals::snapshot::DirStore::open(dir) {
        Ok(store) => store
            .list_segments()
            .await
            .expect("a snapshot directory lists")
            .into_iter()
            .map(|o| o.name)
            .collect(),
        Err(_) => Default::default(),
    }
}
