//! ramrod's built-in compaction policies as plain Rust.
//!
//! Each one is compiled twice: to a Wasm component (the `ramrod-policy-*`
//! crates next to this one, embedded in the host) and natively, where the host
//! uses [`Entries`] as the fallback that answers when a Wasm policy fails.
//!
//! | policy | snapshots when | purges |
//! |---|---|---|
//! | [`Entries`] | every N applied entries | keeping M entries behind the snapshot |
//! | [`BytesOrAge`] | B bytes of log, or the last snapshot is older than T | keeping M entries |
//! | [`Adaptive`] | bytes, entries, age or low disk; incremental or full by chain shape | keeping what followers within a lag budget need |

#![deny(missing_docs)]

mod adaptive;
mod bytes_or_age;
mod entries;

pub use adaptive::{Adaptive, AdaptiveConfig};
pub use bytes_or_age::{BytesOrAge, BytesOrAgeConfig};
pub use entries::{Entries, EntriesConfig};

/// The names of the built-in policies, as `Policy::NAME` gives them.
pub const BUILTIN_NAMES: [&str; 3] = ["entries", "bytes-or-age", "adaptive"];

#[cfg(test)]
mod check;
