//! `ramrod certs`: a cluster CA and node certificates for `[tls]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use ramrod::internals::node::tls;

/// Make the certificates of a TLS cluster.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a cluster CA: DIR/ca.pem (give it to every node and client) and
    /// DIR/ca.key (mode 0600; keep it off the nodes).
    Init {
        /// Where the files go (created if missing; existing files are
        /// never replaced).
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// A name for the cluster, in the CA's subject.
        #[arg(long, default_value = "ramrod")]
        name: String,
        /// How long the CA is valid, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Make node ID's certificate, signed by DIR/ca.pem and DIR/ca.key:
    /// DIR/node-ID.pem and DIR/node-ID.key (mode 0600).
    Node {
        /// The directory of the CA (and of the new files).
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// A host name or IP address clients and peers reach the node by
        /// (repeat for several).
        #[arg(long = "host", default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
        hosts: Vec<String>,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

/// Runs a `certs` subcommand.
pub fn run(cmd: CertsCommand) -> Result<ExitCode> {
    match cmd {
        CertsCommand::Init { dir, name, days } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
            let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
            refuse_existing(&[&cert, &key])?;
            let ca = tls::make_ca(&name, days).map_err(anyhow::Error::msg)?;
            write(&key, &ca.key, 0o600)?;
            write(&cert, &ca.cert, 0o644)?;
            println!("wrote {} and {}", cert.display(), key.display());
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Node {
            dir,
            id,
            hosts,
            days,
        } => {
            anyhow::ensure!(id != 0, "a node id is not 0");
            let read = |name: &str| {
                let p = dir.join(name);
                std::fs::read_to_string(&p).with_context(|| {
                    format!("{} (make the CA first: `ramrod certs init`)", p.display())
                })
            };
            let ca = tls::CaPem {
                cert: read("ca.pem")?,
                key: read("ca.key")?,
            };
            let (cert, key) = (
                dir.join(format!("node-{id}.pem")),
                dir.join(format!("node-{id}.key")),
            );
            refuse_existing(&[&cert, &key])?;
            let node = tls::make_node_cert(&ca, id, &hosts, days).map_err(anyhow::Error::msg)?;
            write(&key, &node.key, 0o600)?;
            write(&cert, &node.cert, 0o644)?;
            println!(
                "wrote {} and {} (names {} and {})",
                cert.display(),
                key.display(),
                tls::node_name(id),
                hosts.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn refuse_existing(paths: &[&Path]) -> Result<()> {
    for p in paths {
        anyhow::ensure!(
            !p.exists(),
            "{} exists: remove it first to make a new one",
            p.display()
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    tls::write_new(path, text, mode).with_context(|| format!("writing {}", path.display()))
}
