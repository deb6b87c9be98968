//! `ramrod log ...`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use ramrod::internals::log_store::{Durability, LogStore};

#[derive(Debug, Subcommand)]
pub enum LogCommand {
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
