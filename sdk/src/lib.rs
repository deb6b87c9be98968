//! Write ramrod compaction policies in Rust.
//!
//! A policy decides, from facts about the Raft log and the snapshot chain,
//! when a ramrod node snapshots and how much log it purges. It runs sandboxed
//! in the node as a WebAssembly component; this crate hides the component ABI
//! behind the plain [`Policy`] trait and the [`export_policy!`] macro.
//!
//! A complete policy, configuration included:
//!
//! ```
//! use ramrod_policy_sdk::{Decision, LogFacts, Policy, SnapshotFacts, SnapshotKind};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields, default)]
//! pub struct Config { every: u64, keep: u64 }
//! impl Default for Config {
//!     fn default() -> Self { Config { every: 10_000, keep: 1_000 } }
//! }
//!
//! pub struct EveryN(Config);
//! impl Policy for EveryN {
//!     const NAME: &'static str = "every-n";
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, String> {
//!         if config.every == 0 { return Err("`every` must be at least 1".into()) }
//!         Ok(EveryN(config))
//!     }
//!     fn decide(&self, log: &LogFacts, snap: &SnapshotFacts) -> Decision {
//!         let purge = snap.last_index.and_then(|i| i.checked_sub(self.0.keep));
//!         let purge = purge.filter(|&p| p >= log.first_index);
//!         if snap.entries_since >= self.0.every {
//!             return Decision::wait(1_000, "every N").snapshot(SnapshotKind::Full).purge_opt(purge);
//!         }
//!         Decision::wait(1_000, "waiting").purge_opt(purge)
//!     }
//! }
//! ramrod_policy_sdk::export_policy!(EveryN);
//! ```
//!
//! Build it with `cargo build --target wasm32-unknown-unknown --release` as a
//! `cdylib`, and turn the module into a component with `wasm-tools component
//! new` (or build for `wasm32-wasip2`, which makes a component directly; its
//! WASI imports are linked with no capabilities). ramrod's own policies are
//! built by `cargo xtask guests`.
//!
//! Test it natively with [`testing`]: the same TOML path, the same synthetic
//! facts, the same clamping the host applies.

#![deny(missing_docs)]

mod clamp;
pub mod testing;
mod types;

pub use clamp::{
    Bounds, Clamp, Clamped, DEFAULT_MAX_CHAIN, PurgeLimit, clamp, purge_keeping, purge_limit,
    snapshot_kind,
};
pub use types::{Decision, Facts, Follower, LogFacts, Role, SnapshotFacts, SnapshotKind};

/// The version of the `ramrod:policy` WIT package this SDK builds against.
pub const WIT_VERSION: &str = "0.1.0";

/// A compaction policy.
///
/// Implement it, then export the type with [`export_policy!`]. The host calls
/// [`Policy::new`] once per instance with the operator's `[policy.config]`
/// table, then [`Policy::decide`] whenever it wants a decision.
///
/// Keep `decide` a function of its arguments: the host may run several
/// instances at once, and throws an instance away and makes a fresh one after
/// any failure, so state kept between calls is not reliable.
pub trait Policy: Sized + Send + Sync + 'static {
    /// The policy's name, for logs and metrics.
    const NAME: &'static str;

    /// The configuration, read from TOML. Use `#[serde(deny_unknown_fields)]`
    /// so a misspelled key is an error that names it, and `#[serde(default)]`
    /// so an empty table works.
    type Config: serde::de::DeserializeOwned;

    /// Builds the policy from its configuration.
    ///
    /// # Errors
    /// A message naming the key or value at fault; the host refuses the policy.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Decides what to do now. The host clamps the result to what is safe.
    fn decide(&self, log: &LogFacts, snapshot: &SnapshotFacts) -> Decision;
}

/// The config of a policy that has no settings: accepts only an empty table,
/// so a stray key is still an error that names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Parses the TOML text into `P::Config` and builds `P`.
fn configure_from_toml<P: Policy>(config_toml: &str) -> Result<P, String> {
    let config: P::Config = toml::from_str(config_toml).map_err(|e| {
        // One line that names the offending line of the config, then the error.
        let at = e.span().map(|span| {
            let start = config_toml[..span.start.min(config_toml.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let line_no = config_toml[..start].matches('\n').count() + 1;
            let line = config_toml[start..].lines().next().unwrap_or("").trim();
            format!("line {line_no} (`{line}`): ")
        });
        format!(
            "invalid config for policy `{}`: {}{}",
            P::NAME,
            at.unwrap_or_default(),
            e.message()
        )
    })?;
    P::new(config).map_err(|e| format!("invalid config for policy `{}`: {e}", P::NAME))
}

/// Exports a [`Policy`] type as the component's `ramrod:policy/policy`
/// interface. Use it once per crate, at the top level. On targets other than
/// WebAssembly it expands to nothing, so the crate still builds and tests
/// natively.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            static STATE: $crate::__private::State<$policy> = $crate::__private::State::new();

            struct Export;

            impl $crate::__private::Guest for Export {
                fn name() -> ::std::string::String {
                    ::std::string::String::from(<$policy as $crate::Policy>::NAME)
                }
                fn configure(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    STATE.configure(&config)
                }
                fn decide(
                    log: $crate::__private::WitLogFacts,
                    snapshot: $crate::__private::WitSnapshotFacts,
                ) -> $crate::__private::WitDecision {
                    STATE.decide(log, snapshot)
                }
            }

            $crate::__private::bindings::__export_compaction_policy!(
                Export with_types_in $crate::__private::bindings
            );
        };
    };
}

#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod __private;

#[cfg(test)]
mod tests {
    /// The SDK's version constant is the one the WIT file declares.
    #[test]
    fn wit_version_matches_the_wit_file() {
        let wit = include_str!("../../wit/policy.wit");
        let package = format!("package ramrod:policy@{};", super::WIT_VERSION);
        assert!(
            wit.lines().any(|l| l.trim() == package),
            "wit/policy.wit does not declare `{package}`"
        );
    }
}
