//! `ramrod trace ...`: workload traces for `ramrod policy simulate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::node_cmd::{client_runtime, node_client, token_or_env};

#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Record a node's workload: per interval, the entries and bytes
    /// appended, keys changed, the state's size, followers' progress, and
    /// the node's own snapshot builds (their time and bytes, which
    /// calibrate the simulator), as JSON lines. Record the leader.
    Record {
        /// A node's URL (http://127.0.0.1:7001) or unix socket (unix:PATH).
        #[arg(long)]
        node: String,
        /// The admin bearer token (else RAMROD_TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// How long to record.
        #[arg(long)]
        seconds: u64,
        /// Milliseconds between samples.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Where to write the trace (`-`: standard output).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: TraceCommand) -> Result<ExitCode> {
    match cmd {
        TraceCommand::Record {
            node,
            token,
            seconds,
            interval_ms,
            out,
        } => {
            anyhow::ensure!(seconds > 0, "--seconds must be at least 1");
            anyhow::ensure!(
                (10..=3_600_000).contains(&interval_ms),
                "--interval-ms must be from 10 to 3600000"
            );
            let token = token_or_env(token)?;
            let client = node_client(&node)?.with_token(token);
            let writer: Box<dyn std::io::Write> = if out.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&out)
                        .with_context(|| format!("creating {}", out.display()))?,
                ))
            };
            let n = client_runtime()?.block_on(ramrod::sim::record(
                &client,
                Duration::from_millis(interval_ms),
                Duration::from_secs(seconds),
                writer,
            ))?;
            if out.as_os_str() != "-" {
                eprintln!(
                    "recorded {n} samples of {} to {}",
                    client.base(),
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
