//! ramrod keeps a Raft cluster's log bounded and its recovery fast. When to
//! snapshot and how much log to drop is decided by sandboxed WebAssembly
//! policies that operators write in any language and swap at runtime.
//!
//! A service embeds a node: build it, start it, use it.
//!
//! ```
//! use ramrod::{Listen, Node, PolicyChoice};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let node = Node::builder(1, dir.path())
//!     .listen(Listen::Nowhere) // a single node, in-process only
//!     .policy(PolicyChoice::builtin("entries").config("snapshot_every = 100"))
//!     .start()
//!     .await?;
//! node.initialize().await?;
//! node.wait_for_leader(std::time::Duration::from_secs(10)).await?;
//!
//! node.put("microvm/default/vm-1", r#"{"vcpu":2}"#).await?;
//! let spec = node.get(b"microvm/default/vm-1").await?;
//! assert_eq!(spec.as_deref(), Some(&br#"{"vcpu":2}"#[..]));
//! let snapshot = node.snapshot_now(None).await?;
//! assert_eq!(node.status()?.current_snapshot.unwrap().id, snapshot.id);
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! What is here:
//! - **A node** ([`Node`], [`NodeBuilder`], [`NodeHandle`]): typed
//!   operations (`put`, `get`, `delete`, `scan`, `batch`, `status`,
//!   `snapshot_now`, `swap_policy`) with typed errors ([`OpError`]), and an
//!   optional HTTP API (Raft RPCs, client KV API, admin API).
//! - **A client** of that HTTP API: [`client`].
//! - **Configuration**: [`NodeConfig`], the TOML file a node can be built
//!   from ([`NodeBuilder::from_config`]).
//! - **The policy runtime** ([`PolicyRuntime`], [`PolicyHost`]): wasmtime,
//!   sandbox limits, a native fallback, hot swap; usable on its own.
//! - **The Raft log store** ([`LogStore`]), an openraft `RaftLogStorage`.
//! - **Snapshot stores** ([`SnapshotStore`], [`DirStore`], [`S3Store`]).
//!
//! Policy authors want the `ramrod-policy-sdk` crate instead, whose types this
//! crate re-exports as [`sdk`]. What only ramrod's own tools, tests and
//! benchmarks need is in [`internals`], with no stability promise.

#![deny(missing_docs)]

pub mod client;
mod config;
pub mod failpoint;
pub mod fuzzing;
mod harness;
pub mod linearizability;
mod log_store;
mod node;
mod platform;
mod policy;
pub mod powerloss;
mod raft;
mod record;
pub mod sim;
mod snapshot;
mod state_machine;

pub use ramrod_policy_sdk as sdk;

// A node and its typed operations.
pub use node::controller::{
    Action, AuditEntry, ControllerError, ControllerStats, Done, PolicyOrigin, Trigger,
};
pub use node::{
    ClusterStart, Endpoints, FollowerProgress, Listen, Node, NodeBuilder, NodeError, NodeHandle,
    Op, OpError, PolicyChoice, PolicyStatus, Recovery, Scope, SnapshotInfo, SnapshotStoreSpec,
    SnapshotSummary, Status, Swapped, Written,
};
pub use raft::NodeId;
pub use state_machine::SnapshotStats;

// Records, transactions and watches: what a control plane builds on.
pub use node::{Guard, Member, Members};
pub use raft::{
    Compare, CompareOp, KeyValue, Listing, MAX_LIST_LIMIT, MAX_TXN_COMPARES, MAX_TXN_OPS, OpResult,
    Target, Txn, TxnOp, TxnResult,
};
pub use state_machine::{Event, EventKind, Filter, WatchError, WatchLimits, WatchUpdate, Watcher};

// Configuration.
pub use config::{
    ConfigError, NodeConfig, Peer, PolicyConfig, RaftTiming, StoreConfig, TlsConfig, WatchConfig,
};

// The policy runtime.
pub use policy::{
    DecidedBy, DecisionRecord, FailureKind, PolicyError, PolicyFailure, PolicyHost, PolicyMeta,
    PolicyRuntime, PolicySource, PolicyStats, SandboxLimits, SwapReport,
};

// The Raft log store.
pub use log_store::{IndexRebuild, LogOptions, LogStats, LogStore, LogStoreError};

// Snapshots and their stores, and the suite every store must pass.
pub use snapshot::testing::run_suite as snapshot_store_suite;
pub use snapshot::{
    DirStore, S3Config, S3Store, SnapshotConfig, SnapshotError, SnapshotKind, SnapshotStore,
    StoreError,
};

/// The building blocks below the embedding API, for ramrod's own command
/// line, tests and benchmarks: the state machine, the snapshot format, the
/// openraft type configuration, the controller's parts. No stability
/// promise: what is here may change in any release.
pub mod internals {
    /// The node's configuration file.
    pub mod config {
        pub use crate::config::*;
    }
    /// The Raft log store.
    pub mod log_store {
        pub use crate::log_store::*;
    }
    /// The node, its controller, its HTTP API and Raft RPCs.
    pub mod node {
        pub use crate::node::*;
    }
    /// The policy runtime and host.
    pub mod policy {
        pub use crate::policy::*;
    }
    /// The openraft type configuration and the KV commands.
    pub mod raft {
        pub use crate::raft::*;
    }
    /// The framed on-disk record.
    pub mod record {
        pub use crate::record::*;
    }
    /// Snapshot segments, manifests, stores, restore and collection.
    pub mod snapshot {
        pub use crate::snapshot::*;
    }
    /// The KV state machine.
    pub mod state_machine {
        pub use crate::state_machine::*;
    }
    /// Clusters of `ramrod serve` processes on loopback (the demo's and the
    /// process tests' harness).
    pub mod harness {
        pub use crate::harness::*;
    }
    pub use crate::platform::inherited_listener;
}
