//! `ramrod snapshot ...`

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use ramrod::internals::snapshot::{self, Manifest, SnapshotConfig, SnapshotStore, Snapshots};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List the snapshots in a store, newest first within each group.
    List {
        /// A directory, or `s3://bucket/prefix` (endpoint and credentials
        /// from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
        #[arg(long)]
        store: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check every manifest and every segment, and restore every chain to
    /// its recorded key count and state hash. Exits 1 on any damage.
    Verify {
        /// A directory or `s3://bucket/prefix`.
        #[arg(long)]
        store: String,
    },
    /// Restore the newest snapshot of a group that verifies, report its key
    /// count, state hash and log id, and optionally write the state out.
    Restore {
        /// A directory or `s3://bucket/prefix`.
        #[arg(long)]
        store: String,
        /// The group (node) whose snapshots to restore; needed when the
        /// store holds several.
        #[arg(long)]
        group: Option<String>,
        /// Write `manifest.json` and `state.jsonl` (one key per line, with
        /// its value and revisions) into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn open(spec: &str) -> Result<Arc<dyn SnapshotStore>> {
    snapshot::store::open_spec(spec).with_context(|| format!("opening snapshot store {spec}"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Manifest names with the manifest, or why it could not be read.
type Listing = Vec<(String, Result<Manifest, String>)>;

/// Manifests by group, newest first, with a decode error where one failed.
async fn by_group(store: &Arc<dyn SnapshotStore>) -> Result<BTreeMap<String, Listing>> {
    let mut groups: BTreeMap<String, Listing> = BTreeMap::new();
    for name in snapshot::manifest_names(store.as_ref()).await? {
        let group = name.split('/').next().unwrap_or_default().to_string();
        let m = match store.get_manifest(&name).await {
            Ok(b) => Manifest::decode(&b),
            Err(e) => Err(e.to_string()),
        };
        groups.entry(group).or_default().push((name, m));
    }
    Ok(groups)
}

fn log_id(l: Option<ramrod::internals::raft::LogId>) -> String {
    l.map_or("-".into(), |l| format!("{}-{}", l.leader_id, l.index))
}

fn text_or_hex(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::json!(s),
        Err(_) => {
            serde_json::json!({ "hex": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }
    }
}

pub fn run(cmd: SnapshotCommand) -> Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        SnapshotCommand::List { store, json } => rt.block_on(async {
            let store = open(&store)?;
            let groups = by_group(&store).await?;
            if json {
                let v: Vec<serde_json::Value> = groups
                    .values()
                    .flatten()
                    .map(|(name, m)| match m {
                        Ok(m) => serde_json::json!({ "name": name, "manifest": m }),
                        Err(e) => serde_json::json!({ "name": name, "error": e }),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            if groups.is_empty() {
                println!("no snapshots in {}", store.describe());
            }
            for (group, list) in &groups {
                println!("group {group}");
                for (name, m) in list {
                    match m {
                        Ok(m) => println!(
                            "  {:<46} {:<11} last {:<10} keys {:>9}  layers {:>2}  chain {:>11} B  new {:>11} B  by {}",
                            m.id,
                            m.kind.to_string(),
                            log_id(m.last_log_id),
                            m.keys,
                            m.layers(),
                            m.chain_bytes(),
                            m.bytes_written,
                            m.requested_by
                        ),
                        Err(e) => println!("  {name}: DAMAGED: {e}"),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        SnapshotCommand::Verify { store } => rt.block_on(async {
            let store = open(&store)?;
            let results = snapshot::verify_store(store.clone()).await?;
            let mut bad = 0;
            for v in &results {
                match &v.result {
                    Ok(keys) => println!(
                        "ok       {}  ({keys} keys, {:.1} ms)",
                        v.name,
                        v.elapsed.as_secs_f64() * 1e3
                    ),
                    Err(e) => {
                        bad += 1;
                        println!("DAMAGED  {}: {e}", v.name);
                    }
                }
            }
            // Segments no manifest uses are not damage, but worth knowing.
            let used: std::collections::HashSet<String> = results
                .iter()
                .filter_map(|v| v.manifest.as_ref())
                .flat_map(|m| m.segments().map(|s| s.name.clone()))
                .collect();
            let stray = store
                .list_segments()
                .await?
                .into_iter()
                .filter(|s| !used.contains(&s.name))
                .count();
            println!(
                "{} snapshots, {bad} damaged, {stray} unreferenced segments in {}",
                results.len(),
                store.describe()
            );
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
        SnapshotCommand::Restore { store, group, out } => rt.block_on(async {
            let store = open(&store)?;
            let groups = by_group(&store).await?;
            let group = match group {
                Some(g) => g,
                None if groups.len() == 1 => groups.keys().next().cloned().unwrap_or_default(),
                None if groups.is_empty() => bail!("no snapshots in {}", store.describe()),
                None => bail!(
                    "{} holds several groups ({}); pick one with --group",
                    store.describe(),
                    groups.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            let snaps = Snapshots::new(store.clone(), &group, SnapshotConfig::default());
            let report = snaps.restore_latest().await?;
            for (name, why) in &report.skipped {
                eprintln!("skipped {name}: {why}");
            }
            let Some(loaded) = report.loaded else {
                bail!("no snapshot of group {group} in {} verifies", store.describe());
            };
            let m = &loaded.manifest;
            println!("restored   {}", loaded.name);
            println!("kind       {} ({} layers)", m.kind, m.layers());
            println!("last log   {}", log_id(m.last_log_id));
            println!("keys       {}", loaded.state.len());
            println!("state hash {}", snapshot::hash_hex(loaded.state_hash));
            println!("read       {} bytes", loaded.bytes_read);
            if let Some(dir) = out {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(m)?)?;
                let f = std::fs::File::create(dir.join("state.jsonl"))?;
                let mut w = std::io::BufWriter::new(f);
                for (k, v) in loaded.state.iter() {
                    let line = if ramrod::internals::state_machine::is_reserved(k) {
                        serde_json::json!({ "key": text_or_hex(k), "value": text_or_hex(v) })
                    } else {
                        let kv = ramrod::internals::state_machine::decode_record(k, v);
                        serde_json::json!({
                            "key": text_or_hex(k),
                            "value": text_or_hex(&kv.value),
                            "create_revision": kv.create_revision,
                            "mod_revision": kv.mod_revision,
                            "version": kv.version,
                        })
                    };
                    writeln!(w, "{line}")?;
                }
                w.flush()?;
                println!("wrote      {}", dir.display());
            }
            Ok(if report.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                // Restored, but newer snapshots were damaged.
                ExitCode::from(2)
            })
        }),
    }
}
