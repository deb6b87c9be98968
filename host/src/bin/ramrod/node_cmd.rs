//! `ramrod serve` and `ramrod status`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use ramrod::client::Client;
use ramrod::{Listen, NodeBuilder, NodeConfig};

/// Runs a node until Ctrl-C or SIGTERM.
pub fn serve(config: PathBuf, listen_fd: Option<i32>) -> Result<ExitCode> {
    let cfg = NodeConfig::load(&config)?;
    let mut builder = NodeBuilder::from_config(cfg.clone());
    if let Some(fd) = listen_fd {
        // SAFETY: `--listen-fd` hands this process the descriptor to own
        // (its parent passed it for this purpose); nothing else in the
        // process uses it.
        #[expect(unsafe_code, reason = "adopting the inherited listening socket")]
        let listener = unsafe { ramrod::internals::inherited_listener(fd) }
            .with_context(|| format!("--listen-fd {fd}"))?;
        let addr = listener.local_addr()?;
        anyhow::ensure!(
            addr == cfg.listen,
            "--listen-fd {fd} listens on {addr}, but the config says listen = \"{}\"",
            cfg.listen
        );
        builder = builder.listen(Listen::Listener(listener));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let node = builder
            .start()
            .await
            .with_context(|| format!("starting node {}", cfg.id))?;
        if let Some(addr) = node.addr() {
            println!("node {} listening on http://{addr}", node.id());
        }
        if let Some(path) = &cfg.listen_unix {
            println!("node {} listening on unix:{}", node.id(), path.display());
        }
        // The smallest id of a new cluster creates it; the others join
        // when it contacts them. A joining node waits to be added.
        let smallest = cfg.peers.iter().all(|p| p.id > cfg.id);
        if cfg.join {
            println!(
                "node {} waits to be added to a cluster (join = true)",
                node.id()
            );
        } else if smallest && !node.is_initialized().await? {
            // Only if no peer belongs to a cluster already (a wiped node
            // rejoins its own); in the background, so signals still work.
            let creator = node.handle();
            let n = 1 + cfg.peers.len();
            tokio::spawn(async move {
                match creator.create_cluster_unless_it_exists().await {
                    Ok(ramrod::ClusterStart::Created) => {
                        println!("initialized a cluster of {n} nodes")
                    }
                    Ok(ramrod::ClusterStart::Exists) => println!(
                        "the cluster exists already: this node waits to be contacted by its leader"
                    ),
                    Ok(ramrod::ClusterStart::Member) => {}
                    Err(e) => eprintln!("error: creating the cluster: {e}"),
                }
            });
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // A node whose Raft core stopped on a fatal error (a storage
        // failure, a full disk) exits non-zero naming the cause, so that a
        // supervisor restarts it: never a live port in front of a stopped
        // core.
        let fatal = tokio::select! {
            _ = tokio::signal::ctrl_c() => None,
            _ = term.recv() => None,
            Some(cause) = node.fatal_stop() => Some(cause),
        };
        println!("node {} stopping", node.id());
        node.shutdown().await;
        match fatal {
            None => Ok(ExitCode::SUCCESS),
            Some(cause) => {
                eprintln!(
                    "error: node {} stopped: {cause}; exiting so that a supervisor restarts it",
                    cfg.id
                );
                Ok(ExitCode::from(3))
            }
        }
    })
}

/// Which node an admin command talks to, and how.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// A node's URL (http://127.0.0.1:7001, or https:// with RAMROD_CA set
    /// to the cluster CA's file) or unix socket (unix:PATH); a change is
    /// sent on to the leader.
    #[arg(long)]
    pub node: String,
    /// The admin bearer token (else RAMROD_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The admin token: `--token`, else `RAMROD_TOKEN`.
pub fn token_or_env(token: Option<String>) -> Result<String> {
    token
        .or_else(|| std::env::var("RAMROD_TOKEN").ok())
        .context("no token: pass --token or set RAMROD_TOKEN")
}

/// A client of `node`: an `http://host:port` or `https://host:port` URL,
/// or `unix:PATH` for a node's unix socket. `RAMROD_CA`, if set, names the
/// cluster CA's certificate file that HTTPS nodes are checked against.
pub fn node_client(node: &str) -> Result<Client> {
    let client = match node.strip_prefix("unix:") {
        Some(path) => Client::unix(path)?,
        None => Client::new(node)?,
    };
    Ok(match std::env::var_os("RAMROD_CA") {
        Some(path) => {
            let pem = std::fs::read(&path)
                .with_context(|| format!("RAMROD_CA {}", std::path::Path::new(&path).display()))?;
            client.with_ca_pem(&pem)?
        }
        None => client,
    })
}

/// A runtime for one-shot admin calls.
pub fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Prints a node's status.
pub fn status(node: String, token: Option<String>, json: bool) -> Result<ExitCode> {
    let token = token_or_env(token)?;
    client_runtime()?.block_on(async {
        let s = node_client(&node)?.with_token(token).status().await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else {
            let opt = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
            println!("node        {} ({}, term {})", s.id, s.role, s.term);
            println!("leader      {}", opt(s.leader));
            println!("applied     {}", opt(s.last_applied));
            println!(
                "log         {} entries, {} bytes, {}..={}",
                s.log.entries, s.log.bytes, s.log.first_index, s.log.last_index
            );
            println!(
                "snapshots   {} full, {} incremental, current {}",
                s.snapshots.full,
                s.snapshots.incremental,
                s.current_snapshot
                    .as_ref()
                    .map_or("none", |c| c.id.as_str())
            );
            println!("state       {} keys, hash {}", s.keys, s.state_hash);
            let p = &s.policy;
            println!(
                "policy      {} ({}) from {}{}",
                p.name,
                &p.hash[..12.min(p.hash.len())],
                p.origin,
                p.index
                    .map(|i| format!(" at index {i}"))
                    .unwrap_or_default()
            );
            let c = &s.controller;
            println!(
                "controller  {} decisions, {} builds, {} purges ({} entries)",
                c.decisions,
                c.builds_full + c.builds_incremental,
                c.purges,
                c.purged_entries
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
