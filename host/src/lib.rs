//! ramrod keeps a Raft cluster's log bounded and its recovery fast. When to
//! snapshot and how much log to drop is decided by sandboxed WebAssembly
//! policies that operators write in any language and swap at runtime.
//!
//! - [`policy`]: the policy runtime (wasmtime), host, native fallback and hot swap.
//! - [`log_store`]: the Raft log: segment files with group commit, a redb
//!   index, background purge, live log facts.
//! - [`raft`]: the openraft type configuration and the KV commands.
//! - [`state_machine`]: the KV state machine with incremental snapshots.
//! - [`snapshot`]: snapshot segments, manifests, stores (directory, S3),
//!   verified restore, retention and garbage collection.
//! - [`config`]: a node's TOML configuration.
//!
//! Policy authors want the `ramrod-policy-sdk` crate instead, whose types this
//! crate re-exports as [`sdk`].

#![deny(missing_docs)]

pub mod config;
pub mod policy;

pub use ramrod_policy_sdk as sdk;
pub mod log_store;
pub mod node;
mod platform;
pub mod raft;
pub mod record;
pub mod snapshot;
pub mod state_machine;
