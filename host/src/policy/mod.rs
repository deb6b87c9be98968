//! Compaction policies: sandboxed WebAssembly components that decide when to
//! snapshot and how much log to purge, with a native fallback and hot swap.
//!
//! This module knows nothing about Raft storage: it turns [`Facts`] into a
//! clamped [`Decision`]; the controller gathers the facts and carries the
//! decision out.
//!
//! ```
//! use ramrod::{PolicyHost, PolicyRuntime, PolicySource, SandboxLimits};
//! use ramrod_policy_sdk::{Bounds, testing::scenario};
//!
//! let runtime = PolicyRuntime::new(SandboxLimits::default(), None)?;
//! let host = PolicyHost::new(runtime, Bounds::default(), "")?;
//! host.swap(&PolicySource::parse("adaptive"), "max_chain_length = 8")?;
//! let record = host.decide(&scenario("burst").unwrap().facts);
//! println!("{}: {:?}", record.decision.reason, record.decision.snapshot);
//! # Ok::<(), ramrod::PolicyError>(())
//! ```
//!
//! [`Facts`]: ramrod_policy_sdk::Facts
//! [`Decision`]: ramrod_policy_sdk::Decision

mod bindings;
mod builtin;
pub(crate) mod cache;
mod error;
mod host;
mod limits;
mod runtime;
mod sandbox;
mod source;
mod validate;
mod watch;

pub use builtin::{BUILTINS, builtin, names as builtin_names};
pub use cache::CompileSource;
pub use error::{FailureKind, PolicyError, PolicyFailure};
pub use host::{
    ActivePolicy, DecidedBy, DecisionRecord, NATIVE_NAME, PolicyHost, PolicyStats, SwapReport,
    dry_run,
};
pub use limits::SandboxLimits;
pub use runtime::{CallOutcome, LoadReport, PolicyMeta, PolicyRuntime, WasmPolicy};
pub use source::PolicySource;
pub use watch::PolicyWatcher;
