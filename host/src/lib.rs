//! ramrod keeps a Raft cluster's log bounded and its recovery fast. When to
//! snapshot and how much log to drop is decided by sandboxed WebAssembly
//! policies that operators write in any language and swap at runtime.
//!
//! - [`policy`]: the policy runtime (wasmtime), host, native fallback and hot swap.
//!
//! Policy authors want the `ramrod-policy-sdk` crate instead, whose types this
//! crate re-exports as [`sdk`].

#![deny(missing_docs)]

pub mod policy;

pub use ramrod_policy_sdk as sdk;
