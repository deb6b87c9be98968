//! A node's configuration: one TOML file, defaults that work, and unknown
//! keys rejected by name.
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7001"
//! # advertise = "10.0.0.1:7001"  # the address peers reach it at (default: listen)
//! data-dir = "data/node-1"
//! token = "change-me"
//! cluster-secret = "the same long secret on every node"   # or cluster-secret-file
//!
//! [[peers]]
//! id = 2
//! addr = "127.0.0.1:7002"
//!
//! # listen-unix = "ramrod.sock"  # the client and admin API on a unix socket too (mode 0600)
//! # join = true                  # a new node: joins a running cluster, never creates one
//!
//! # [tls]                   # HTTPS for clients and peers, mutual TLS between nodes
//! # ca-file = "ca.pem"      # `ramrod certs init` makes the cluster CA
//! # cert-file = "node-1.pem"  # `ramrod certs node --id 1` makes these two
//! # key-file = "node-1.key"
//!
//! [watch]
//! history-events = 100000   # changes kept for watchers that start from an earlier revision
//!
//! [snapshot-store]          # default: a directory inside data-dir
//! s3 = { endpoint = "http://127.0.0.1:8333", bucket = "ramrod", prefix = "cluster-a" }
//!
//! [snapshots]
//! retain = 3                # snapshots kept (a policy may change it)
//! max-chain = 16            # longest chain: an incremental beyond it is built full
//!
//! [policy]
//! name = "adaptive"         # or file = "my-policy.wasm"
//! config = { max_bytes = 67108864 }
//! # max-upload-bytes = 67108864  # largest component a swap or rollout may upload
//! # cache-dir = "policy-cache"   # compiled policies (default: inside data-dir)
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log_store::LogOptions;
use crate::policy::SandboxLimits;
use crate::sdk::Bounds;
use crate::snapshot::{S3Config, SnapshotConfig};
use crate::state_machine::WatchLimits;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys or wrong types; the
    /// message names the key and the line.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said (key, line, column).
        reason: String,
    },
    /// The values parse but do not make sense together.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Another member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its node id.
    pub id: u64,
    /// Where it listens (`host:port`).
    pub addr: String,
}

/// Where snapshots go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// A local directory (default: `DATA_DIR/snapshots`).
    pub dir: Option<PathBuf>,
    /// An S3-compatible object store instead of a directory.
    pub s3: Option<S3Config>,
}

/// Which compaction policy runs first (default: the built-in `adaptive`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyConfig {
    /// A built-in policy by name (`entries`, `bytes-or-age`, `adaptive`), or
    /// `native`: no Wasm at all, the compiled-in `entries` logic (the
    /// fallback) decides, configured by `config`.
    pub name: Option<String>,
    /// A policy component file instead of a built-in.
    pub file: Option<PathBuf>,
    /// The policy's own configuration (its keys are checked by the policy).
    #[serde(default)]
    pub config: toml::Table,
    /// The largest policy component this node accepts for a swap or a
    /// rollout, in bytes (default 64 MiB; an upload over it is answered
    /// `413` naming the limit).
    pub max_upload_bytes: Option<usize>,
    /// Where compiled policies are cached (default `DATA_DIR/policy-cache`).
    /// Nodes on one machine may share one: entries are verified, and
    /// written atomically.
    pub cache_dir: Option<PathBuf>,
}

impl PolicyConfig {
    /// `max-upload-bytes`, or its default.
    pub fn max_upload_bytes(&self) -> usize {
        self.max_upload_bytes
            .unwrap_or(crate::node::handle::DEFAULT_MAX_POLICY_BYTES)
    }

    /// The built-in's name when no file is set.
    pub fn builtin(&self) -> Option<&str> {
        match (&self.file, &self.name) {
            (Some(_), _) => None,
            (None, Some(n)) => Some(n),
            (None, None) => Some("adaptive"),
        }
    }

    /// Where the first policy comes from: the file, else the built-in.
    pub fn source(&self) -> crate::policy::PolicySource {
        match (&self.file, self.builtin()) {
            (Some(f), _) => crate::policy::PolicySource::File(f.clone()),
            (None, name) => {
                crate::policy::PolicySource::Builtin(name.unwrap_or("adaptive").to_string())
            }
        }
    }
}

/// Raft timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RaftTiming {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
    /// Timeout of one RPC between nodes.
    pub rpc_timeout_ms: u64,
    /// Timeout of a snapshot install on a follower, which includes fetching
    /// the segments it lacks.
    pub install_timeout_ms: u64,
    /// Baseline mode, for comparisons: openraft snapshots by itself every
    /// this many entries (`SnapshotPolicy::LogsSinceLast`) and purges
    /// keeping `builtin-keep` entries; the controller then makes no
    /// decisions (operator snapshots still work). Unset (the default): the
    /// policy decides.
    pub builtin_snapshot_every: Option<u64>,
    /// Entries openraft keeps behind its snapshot in baseline mode.
    pub builtin_keep: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_ms: 100,
            election_min_ms: 400,
            election_max_ms: 800,
            rpc_timeout_ms: 2_000,
            install_timeout_ms: 60_000,
            builtin_snapshot_every: None,
            builtin_keep: 1_000,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7001))
}

/// A node's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeConfig {
    /// This node's id (not 0).
    pub id: u64,
    /// Where it listens (default `127.0.0.1:7001`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The address peers (and clients sent on to this node) are told to
    /// reach it at, `host:port`: written into the cluster's membership
    /// when this node creates the cluster. Default: where it listens. For
    /// a node behind a proxy, NAT or a port mapping.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Its data directory (log store; snapshots unless a store is set).
    pub data_dir: PathBuf,
    /// The admin API's bearer token; without one the admin API is closed.
    pub token: Option<String>,
    /// The other members.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Where snapshots go.
    #[serde(default)]
    pub snapshot_store: StoreConfig,
    /// Snapshot format, retention and collection.
    #[serde(default)]
    pub snapshots: SnapshotConfig,
    /// Log store options.
    #[serde(default)]
    pub log: LogOptions,
    /// The first policy.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Sandbox limits of policies.
    #[serde(default)]
    pub limits: SandboxLimits,
    /// Bounds every decision is clamped to.
    #[serde(default)]
    pub bounds: Bounds,
    /// Raft timing.
    #[serde(default)]
    pub raft: RaftTiming,
    /// Also serve the client and admin API on this unix socket (created
    /// with mode 0600, removed on clean shutdown; a stale one left by a
    /// crash is replaced).
    #[serde(default)]
    pub listen_unix: Option<PathBuf>,
    /// This node joins a running cluster (an operator adds it with
    /// `ramrod members add`): `ramrod serve` never creates a cluster with
    /// it, and it needs no peers.
    #[serde(default)]
    pub join: bool,
    /// How much change history watchers get.
    #[serde(default)]
    pub watch: WatchConfig,
    /// The secret every request between the cluster's nodes is signed
    /// with (at least 16 characters, the same on every node). A node of a
    /// multi-node cluster (with `peers`, or `join`) does not start without
    /// one: any local process can reach a loopback port.
    #[serde(default)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret instead (its first line).
    #[serde(default)]
    pub cluster_secret_file: Option<PathBuf>,
    /// TLS for the listener and for requests to peers (mutual, under the
    /// cluster CA). With it, a multi-node cluster needs no cluster secret;
    /// with both, peers are checked both ways.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// The `[tls]` section: the files of a node's TLS setup (PEM).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    /// The cluster CA's certificate: peers must present a certificate it
    /// signed, and peers' and clients' servers are checked against it.
    pub ca_file: PathBuf,
    /// This node's certificate (`ramrod certs node`): it names the node
    /// (`node-ID.ramrod`) and the hosts it is reached by.
    pub cert_file: PathBuf,
    /// This node's private key.
    pub key_file: PathBuf,
}

/// The `[watch]` section: how much history a node keeps for watchers and
/// how they are fed. The history is in memory: after a restart it starts
/// at the restored snapshot's index and the replayed log refills it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct WatchConfig {
    /// Changes kept for watchers that start from an earlier revision
    /// (default 100 000); a watch from before them is refused as compacted.
    pub history_events: usize,
    /// Bytes of keys and values those changes may hold (default 64 MiB).
    pub history_bytes: u64,
    /// Apply batches a watcher may fall behind before it is ended with a
    /// reason (default 4096).
    pub buffer: usize,
    /// How often an idle watcher gets a progress line (default 1000 ms).
    pub progress_ms: u64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        let d = WatchLimits::default();
        WatchConfig {
            history_events: d.history_events,
            history_bytes: d.history_bytes,
            buffer: d.buffer,
            progress_ms: d.progress.as_millis() as u64,
        }
    }
}

impl WatchConfig {
    /// As the state machine takes them.
    pub fn limits(&self) -> WatchLimits {
        WatchLimits {
            history_events: self.history_events,
            history_bytes: self.history_bytes,
            buffer: self.buffer,
            progress: std::time::Duration::from_millis(self.progress_ms),
        }
    }
}

impl NodeConfig {
    /// The configuration of node `id` keeping its data in `data_dir`, every
    /// other setting at its default.
    pub fn new(id: u64, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            id,
            listen: default_listen(),
            advertise: None,
            data_dir: data_dir.into(),
            token: None,
            peers: Vec::new(),
            snapshot_store: StoreConfig::default(),
            snapshots: SnapshotConfig::default(),
            log: LogOptions::default(),
            policy: PolicyConfig::default(),
            limits: SandboxLimits::default(),
            bounds: Bounds::default(),
            raft: RaftTiming::default(),
            listen_unix: None,
            join: false,
            watch: WatchConfig::default(),
            cluster_secret: None,
            cluster_secret_file: None,
            tls: None,
        }
    }

    /// The cluster secret: `cluster-secret`, or the first line of
    /// `cluster-secret-file`.
    ///
    /// # Errors
    /// If the file cannot be read, or the secret is too short.
    pub fn cluster_secret(&self) -> Result<Option<String>, String> {
        let secret = match (&self.cluster_secret, &self.cluster_secret_file) {
            (Some(s), None) => s.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("`cluster-secret-file` {}: {e}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("set `cluster-secret` or `cluster-secret-file`, not both".into());
            }
        };
        let min = crate::node::peer_auth::MIN_SECRET_CHARS;
        if secret.chars().count() < min {
            return Err(format!(
                "the cluster secret must be at least {min} characters"
            ));
        }
        Ok(Some(secret))
    }

    /// Whether this node is (or will be) one of several: it has peers or
    /// joins a cluster.
    pub fn multi_node(&self) -> bool {
        self.join || !self.peers.is_empty()
    }

    /// Reads and checks a configuration file; relative paths in it are taken
    /// relative to the file's directory.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|reason| ConfigError::Parse {
            path: path.to_path_buf(),
            reason,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.data_dir);
        if let Some(d) = cfg.snapshot_store.dir.as_mut() {
            rebase(d);
        }
        if let Some(f) = cfg.policy.file.as_mut() {
            rebase(f);
        }
        if let Some(d) = cfg.policy.cache_dir.as_mut() {
            rebase(d);
        }
        if let Some(f) = cfg.cluster_secret_file.as_mut() {
            rebase(f);
        }
        if let Some(u) = cfg.listen_unix.as_mut() {
            rebase(u);
        }
        if let Some(t) = cfg.tls.as_mut() {
            rebase(&mut t.ca_file);
            rebase(&mut t.cert_file);
            rebase(&mut t.key_file);
        }
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Parses TOML text (no path rebasing, no validation).
    ///
    /// # Errors
    /// toml's message: the key, the line and the column.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_string())
    }

    /// Checks values that parse but do not fit together.
    ///
    /// # Errors
    /// What is wrong, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("`id` must not be 0".into());
        }
        if let Some(a) = &self.advertise
            && a.parse::<SocketAddr>().is_err()
        {
            return Err(format!("`advertise`: {a:?} is not host:port"));
        }
        let mut ids = BTreeSet::from([self.id]);
        for p in &self.peers {
            if !ids.insert(p.id) {
                return Err(format!("`peers`: node id {} appears twice", p.id));
            }
            if p.addr.parse::<SocketAddr>().is_err() {
                return Err(format!(
                    "`peers`: address {:?} of node {} is not host:port",
                    p.addr, p.id
                ));
            }
        }
        if self.snapshot_store.dir.is_some() && self.snapshot_store.s3.is_some() {
            return Err("`snapshot-store`: set `dir` or `s3`, not both".into());
        }
        if self.policy.name.is_some() && self.policy.file.is_some() {
            return Err("`policy`: set `name` or `file`, not both".into());
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_min_ms <= r.heartbeat_ms {
            return Err("`raft`: need 0 < heartbeat-ms < election-min-ms".into());
        }
        if r.election_max_ms <= r.election_min_ms {
            return Err("`raft`: election-max-ms must exceed election-min-ms".into());
        }
        if r.builtin_snapshot_every == Some(0) {
            return Err("`raft`: builtin-snapshot-every must be at least 1".into());
        }
        if self.snapshots.max_chain == 0 {
            return Err("`snapshots`: max-chain must be at least 1".into());
        }
        let w = &self.watch;
        if w.buffer == 0 || w.progress_ms == 0 {
            return Err("`watch`: buffer and progress-ms must be at least 1".into());
        }
        if self.join && !self.peers.is_empty() {
            return Err(
                "`join`: a joining node takes its members from the cluster; remove `peers`".into(),
            );
        }
        if self.token.as_deref().is_some_and(|t| t.len() < 8) {
            return Err("`token` must be at least 8 characters".into());
        }
        if self.cluster_secret.is_some() {
            self.cluster_secret()?;
        }
        if self.cluster_secret.is_some() && self.cluster_secret_file.is_some() {
            return Err("set `cluster-secret` or `cluster-secret-file`, not both".into());
        }
        Ok(())
    }

    /// The snapshot directory when no store is configured.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshot_store
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("snapshots"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "id = 1\ndata-dir = \"d\"\n";

    #[test]
    fn defaults_work() {
        let c = NodeConfig::parse(MINIMAL).unwrap();
        assert_eq!(c, NodeConfig::new(1, "d"), "new() has the file's defaults");
        c.validate().unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.policy.builtin(), Some("adaptive"));
        assert_eq!(c.snapshot_dir(), PathBuf::from("d/snapshots"));
        assert!(c.token.is_none());
    }

    #[test]
    fn a_full_file_parses() {
        let c = NodeConfig::parse(
            r#"
id = 2
listen = "127.0.0.1:7002"
data-dir = "/var/lib/ramrod"
token = "a-long-enough-token"

[[peers]]
id = 1
addr = "127.0.0.1:7001"

[snapshot-store]
s3 = { endpoint = "http://127.0.0.1:8333", bucket = "ramrod", prefix = "a" }

[snapshots]
retain = 5

[policy]
name = "bytes-or-age"
config = { max_bytes = 1000 }

[raft]
heartbeat-ms = 50
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.snapshots.retain, 5);
        assert_eq!(c.snapshot_store.s3.as_ref().unwrap().bucket, "ramrod");
        assert_eq!(c.policy.config["max_bytes"].as_integer(), Some(1000));
        assert_eq!(c.raft.election_min_ms, 400);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = NodeConfig::parse("id = 1\ndata-dir = \"d\"\nlisten-addr = \"x\"\n").unwrap_err();
        assert!(e.contains("listen-addr") && e.contains("line 3"), "{e}");
        let e = NodeConfig::parse("id = 1\ndata-dir = \"d\"\n[raft]\nheartbeat = 5\n").unwrap_err();
        assert!(e.contains("heartbeat"), "{e}");
        let e = NodeConfig::parse("id = \"one\"\ndata-dir = \"d\"\n").unwrap_err();
        assert!(e.contains("id"), "{e}");
        let bad = |extra: &str| {
            NodeConfig::parse(&format!("{MINIMAL}{extra}"))
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert!(bad("[[peers]]\nid = 1\naddr = \"127.0.0.1:1\"\n").contains("twice"));
        assert!(bad("[[peers]]\nid = 2\naddr = \"nowhere\"\n").contains("host:port"));
        assert!(bad("advertise = \"proxy\"\n").contains("`advertise`"));
        assert!(bad("token = \"short\"\n").contains("token"));
        assert!(bad("[policy]\nname = \"entries\"\nfile = \"p.wasm\"\n").contains("policy"));
        assert!(bad("[raft]\nheartbeat-ms = 500\n").contains("raft"));
        assert!(bad("[snapshots]\nmax-chain = 0\n").contains("max-chain"));
        assert!(bad("[watch]\nbuffer = 0\n").contains("watch"));
        assert!(bad("join = true\n[[peers]]\nid = 2\naddr = \"127.0.0.1:2\"\n").contains("join"));
        let e = NodeConfig::parse(&format!("{MINIMAL}[watch]\nhistory-evnts = 5\n")).unwrap_err();
        assert!(e.contains("history-evnts"), "{e}");
        let w = NodeConfig::parse(&format!("{MINIMAL}[watch]\nhistory-events = 5\n")).unwrap();
        assert_eq!(w.watch.limits().history_events, 5);
    }

    #[test]
    fn load_names_the_file_and_rebases_paths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(
            &p,
            "id = 1\ndata-dir = \"data\"\n[policy]\nfile = \"p.wasm\"\n",
        )
        .unwrap();
        let c = NodeConfig::load(&p).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.policy.file, Some(dir.path().join("p.wasm")));
        std::fs::write(&p, "id = 0\ndata-dir = \"d\"\n").unwrap();
        let e = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("node.toml") && e.contains("id"), "{e}");
        let e = NodeConfig::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }
}
