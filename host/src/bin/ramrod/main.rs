//! The `ramrod` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod log_cmd;
mod policy_cmd;
mod snapshot_cmd;

/// ramrod: Raft log compaction decided by sandboxed WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "ramrod", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, check and try compaction policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Inspect a node's Raft log store.
    #[command(subcommand)]
    Log(log_cmd::LogCommand),
    /// List, verify and restore snapshots in a store.
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => policy_cmd::run(cmd),
        Command::Log(cmd) => log_cmd::run(cmd),
        Command::Snapshot(cmd) => snapshot_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
