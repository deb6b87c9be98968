//! Integration tests live in `it/`, benchmarks in `benches/`; this library
//! holds what both need.

#![deny(missing_docs)]

use std::path::Path;

use ramrod::internals::config::{NodeConfig, Peer};

/// Free loopback ports (bound then released; the OS does not hand them out
/// again at once).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

/// The config of node `id` of a loopback cluster listening on `ports`
/// (node `i` on `ports[i - 1]`), its data in `dir/node-{id}`, quick Raft
/// timings, admin token `token`.
pub fn node_config(id: u64, ports: &[u16], dir: &Path, token: &str) -> NodeConfig {
    let mut c = NodeConfig::parse(&format!("id = {id}\ndata-dir = \"x\"\n"))
        .expect("a minimal config parses");
    c.listen = format!("127.0.0.1:{}", ports[id as usize - 1])
        .parse()
        .expect("a loopback address");
    c.data_dir = dir.join(format!("node-{id}"));
    c.peers = (1..=ports.len() as u64)
        .filter(|&p| p != id)
        .map(|p| Peer {
            id: p,
            addr: format!("127.0.0.1:{}", ports[p as usize - 1]),
        })
        .collect();
    c.token = Some(token.into());
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
