//! `ramrod serve` and `ramrod status`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ramrod::config::NodeConfig;
use ramrod::node::Node;

/// Runs a node until Ctrl-C or SIGTERM.
pub fn serve(config: PathBuf) -> Result<ExitCode> {
    let cfg = NodeConfig::load(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let node = Node::start(cfg.clone())
            .await
            .with_context(|| format!("starting node {}", cfg.id))?;
        println!("node {} listening on http://{}", node.id(), node.addr);
        // The smallest id of a new cluster creates it; the others join
        // when it contacts them.
        let smallest = cfg.peers.iter().all(|p| p.id > cfg.id);
        if smallest && !node.raft.is_initialized().await? {
            node.initialize().await?;
            println!("initialized a cluster of {} nodes", 1 + cfg.peers.len());
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        println!("node {} stopping", node.id());
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// The admin token: `--token`, else `RAMROD_TOKEN`.
pub fn token_or_env(token: Option<String>) -> Result<String> {
    token
        .or_else(|| std::env::var("RAMROD_TOKEN").ok())
        .context("no token: pass --token or set RAMROD_TOKEN")
}

/// A runtime for one-shot admin calls.
pub fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `GET {base}{path}` on the admin API; the body, or an error naming the
/// node and its answer.
pub async fn admin_get(base: &str, path: &str, token: &str) -> Result<String> {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("reaching {base}"))?;
    let code = r.status();
    let text = r.text().await?;
    if !code.is_success() {
        bail!("{base} answered {code}: {text}");
    }
    Ok(text)
}

/// Prints a node's status.
pub fn status(node: String, token: Option<String>, json: bool) -> Result<ExitCode> {
    let token = token_or_env(token)?;
    let base = node.trim_end_matches('/').to_string();
    client_runtime()?.block_on(async {
        let text = admin_get(&base, "/admin/status", &token).await?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!(
                "node        {} ({}, term {})",
                v["id"],
                v["role"].as_str().unwrap_or("?"),
                v["term"]
            );
            println!("leader      {}", v["leader"]);
            println!("applied     {}", v["last_applied"]);
            println!(
                "log         {} entries, {} bytes, {}..={}",
                v["log"]["entries"],
                v["log"]["bytes"],
                v["log"]["first_index"],
                v["log"]["last_index"]
            );
            println!(
                "snapshots   {} full, {} incremental, current {}",
                v["snapshots"]["full"], v["snapshots"]["incremental"], v["current_snapshot"]["id"]
            );
            println!(
                "state       {} keys, hash {}",
                v["keys"],
                v["state_hash"].as_str().unwrap_or("?")
            );
            let p = &v["policy"];
            let hash = p["hash"].as_str().unwrap_or("");
            println!(
                "policy      {} ({}) from {}{}",
                p["name"].as_str().unwrap_or("?"),
                &hash[..12.min(hash.len())],
                p["origin"].as_str().unwrap_or("?"),
                p["index"]
                    .as_u64()
                    .map(|i| format!(" at index {i}"))
                    .unwrap_or_default()
            );
            let c = &v["controller"];
            println!(
                "controller  {} decisions, {} builds, {} purges ({} entries)",
                c["decisions"],
                c["builds_full"].as_u64().unwrap_or(0)
                    + c["builds_incremental"].as_u64().unwrap_or(0),
                c["purges"],
                c["purged_entries"]
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
