//! `ramrod log ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use ramrod::internals::log_store::{Durability, LogStore};

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Move a node's log store aside (into DATA_DIR/discarded-UNIX_MS/),
    /// keeping its vote in a fresh one: the node then starts from its newest
    /// snapshot that verifies, and the writes after it are lost. For a lone
    /// node whose log is damaged beyond repair (a node of a cluster does
    /// this by itself and recovers the lost writes from the others).
    ///
    /// The node must not be running.
    Discard {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Show what a node's log store holds: ids, vote, entry count, bytes, file size.
    ///
    /// Opens the store like a node does, so the node must not be running.
    Inspect {
        /// The node's data directory (it holds `raft-log.redb`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: LogCommand) -> Result<ExitCode> {
    match cmd {
        LogCommand::Discard { data_dir } => {
            use ramrod::internals::log_store::{LOG_FILE, SEGMENT_DIR, discard};
            anyhow::ensure!(
                data_dir.join(LOG_FILE).exists() || data_dir.join(SEGMENT_DIR).exists(),
                "{} holds no log store",
                data_dir.display()
            );
            let d = discard(&data_dir)?;
            let mut store = LogStore::open(&data_dir, Durability::Durable)?;
            if let Some(vote) = d.salvage.vote {
                let rt = tokio::runtime::Builder::new_current_thread().build()?;
                rt.block_on(openraft::storage::RaftLogStorage::save_vote(
                    &mut store, &vote,
                ))?;
            }
            println!(
                "moved the log store to {}; kept the vote {}; the entries up to {} are gone",
                d.moved_to.display(),
                d.salvage
                    .vote
                    .map_or_else(|| "(none could be read)".to_string(), |v| v.to_string()),
                d.salvage
                    .last_index
                    .map_or_else(|| "?".to_string(), |i| format!("index {i}"))
            );
            Ok(ExitCode::SUCCESS)
        }
        LogCommand::Inspect { data_dir, json } => {
            let store = LogStore::open(&data_dir, Durability::Durable)?;
            if let Some(r) = store.index_rebuild() {
                eprintln!(
                    "the index was damaged ({}): rebuilt it from the segments; the damaged file \
                     is {}",
                    r.reason,
                    r.damaged.display()
                );
            }
            let stats = store.stats();
            let id = |l: Option<ramrod::internals::raft::LogId>| {
                l.map_or("-".to_string(), |l| format!("{}-{}", l.leader_id, l.index))
            };
            let file_size = store.file_size()?;
            let stored = store.stored_entries()?;
            if json {
                let v = serde_json::json!({
                    "path": store.path(),
                    "first_index": stats.first_index,
                    "last_log_id": store.last_log_id(),
                    "committed": store.committed(),
                    "purged": store.purged(),
                    "vote": store.vote(),
                    "entries": stats.entries,
                    "stored_entries": stored,
                    "bytes": stats.bytes,
                    "disk_bytes": file_size,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("log store     {}", store.path().display());
                println!("first index   {}", stats.first_index);
                println!("last log id   {}", id(store.last_log_id()));
                println!("committed     {}", id(store.committed()));
                println!("purged        {}", id(store.purged()));
                println!(
                    "vote          {}",
                    store.vote().map_or("-".to_string(), |v| v.to_string())
                );
                println!(
                    "entries       {} ({} stored, including ones awaiting background purge)",
                    stats.entries, stored
                );
                println!("entry bytes   {}", stats.bytes);
                println!("disk bytes    {file_size} (index database + segment files)");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
