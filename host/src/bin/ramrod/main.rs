//! The `ramrod` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod certs_cmd;
mod demo;
mod log_cmd;
mod members_cmd;
mod node_cmd;
mod policy_cmd;
mod snapshot_cmd;
mod trace_cmd;

/// ramrod: Raft log compaction decided by sandboxed WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "ramrod", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a 3-node cluster on loopback under a microVM workload: live
    /// progress, a policy hot swap, kill -9 and restart of a follower, and a
    /// check of every acknowledged write on every node.
    Demo(demo::DemoArgs),
    /// Inspect, check and try compaction policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Inspect a node's Raft log store.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// List, verify and restore snapshots in a store.
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCommand),
    /// List, add and remove the cluster's members.
    #[command(subcommand)]
    Members(members_cmd::MembersCommand),
    /// Make a cluster CA and node certificates, for `[tls]`.
    #[command(subcommand)]
    Certs(certs_cmd::CertsCommand),
    /// Record a node's workload, for `ramrod policy simulate`.
    #[command(subcommand)]
    Trace(trace_cmd::TraceCommand),
    /// Run a node (until Ctrl-C or SIGTERM).
    Serve {
        /// The node's TOML configuration.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Serve on the listening socket this process inherited as
        /// descriptor N (bound by a supervisor, as in socket activation)
        /// instead of binding `listen`; its address must be `listen`'s.
        #[arg(long, value_name = "N")]
        listen_fd: Option<i32>,
    },
    /// Show a node's status (admin API; token from --token or RAMROD_TOKEN).
    Status(node_cmd::Target),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: logs in files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Log(cmd) => log_cmd::run(cmd),
        Command::Snapshot(cmd) => snapshot_cmd::run(cmd),
        Command::Members(cmd) => members_cmd::run(cmd),
        Command::Trace(cmd) => trace_cmd::run(cmd),
        Command::Certs(cmd) => certs_cmd::run(cmd),
        Command::Serve { config, listen_fd } => node_cmd::serve(config, listen_fd),
        Command::Status(t) => node_cmd::status(t.node, t.token, t.json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes, each once: a message that already ends with its
/// cause's text (typed errors name their source) does not repeat it.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
