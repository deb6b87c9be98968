//! Embedding ramrod: a 3-node cluster in one process, built with
//! `Node::builder` and driven through the typed API only (no TOML file, no
//! HTTP client). The nodes talk Raft to each other over loopback HTTP and
//! serve nothing else (`Endpoints::RaftOnly`): the service that embeds them
//! offers its own API.
//!
//! Run with `cargo run -p ramrod-examples --example embed`.

use std::time::Duration;

use ramrod::{
    Endpoints, Listen, Node, NodeId, OpError, PolicyChoice, RaftTiming, Scope, SnapshotKind,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Bind first, so each node gets a port no other process can take.
    let listeners = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<std::io::Result<_>>()?;

    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as NodeId + 1;
        let peers = (1..=3u64)
            .filter(|&p| p != id)
            .map(|p| (p, addrs[p as usize - 1].clone()));
        let node = Node::builder(id, dir.path().join(format!("node-{id}")))
            .listen(Listen::Listener(listener))
            .endpoints(Endpoints::RaftOnly)
            .peers(peers)
            // Signs every request between the nodes (the same on each).
            .cluster_secret("embed-example-cluster-secret")
            .raft_timing(RaftTiming {
                heartbeat_ms: 50,
                election_min_ms: 300,
                election_max_ms: 600,
                ..RaftTiming::default()
            })
            .policy(
                PolicyChoice::builtin("entries").config("snapshot_every = 200\nkeep_entries = 50"),
            )
            .start()
            .await?;
        nodes.push(node);
    }
    nodes[0].initialize().await?;
    let leader_id = nodes[0].wait_for_leader(Duration::from_secs(10)).await?;
    let leader = &nodes[leader_id as usize - 1];
    println!("node {leader_id} leads a cluster of {}", nodes.len());

    // Writes go to the leader; a follower says where the leader is.
    for i in 0..500 {
        leader
            .put(format!("microvm/default/vm-{i:03}"), format!("spec {i}"))
            .await?;
    }
    let follower = nodes
        .iter()
        .find(|n| n.id() != leader_id)
        .expect("a follower");
    match follower.put("microvm/default/vm-x", "spec").await {
        Err(OpError::NotLeader { leader, .. }) => {
            println!(
                "node {} refused a write: the leader is {leader:?}",
                follower.id()
            )
        }
        other => anyhow::bail!("a follower accepted a write: {other:?}"),
    }

    // A linearizable read on the leader, a local one on the follower.
    let v = leader.get(b"microvm/default/vm-042").await?;
    println!("vm-042 = {:?}", v.as_deref().map(String::from_utf8_lossy));
    let page = leader.scan(b"microvm/default/", None, 3).await?;
    println!(
        "first keys: {:?}",
        page.iter()
            .map(|(k, _)| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );

    // A snapshot on demand, then a policy rolled out to every node.
    let snap = leader.snapshot_now(Some(SnapshotKind::Full)).await?;
    println!("snapshot {} covers index {:?}", snap.id, snap.last_index);
    let swapped = leader
        .swap_policy(PolicyChoice::builtin("adaptive"), Scope::Cluster)
        .await?;
    println!("rolled out {} at index {:?}", swapped.name, swapped.index);

    // Every node applies the rollout and converges on the same state.
    let index = swapped.index.unwrap_or(0);
    for n in &nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = n.status()?;
            if s.last_applied >= Some(index) && s.policy.name == "adaptive" {
                println!(
                    "node {}: {} keys, state {}, policy {} from {}, log {} entries",
                    s.id, s.keys, s.state_hash, s.policy.name, s.policy.origin, s.log.entries
                );
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "node {} did not apply the rollout",
                n.id()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let hashes: Vec<String> = nodes
        .iter()
        .map(|n| Ok(n.status()?.state_hash))
        .collect::<Result<_, ramrod::OpError>>()?;
    anyhow::ensure!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "states differ: {hashes:?}"
    );
    println!("every node holds the same state");
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// CI runs the example as it is shipped.
    #[test]
    fn the_example_runs() {
        super::main().unwrap();
    }
}
