//! Every sandbox limit in one place.

use serde::{Deserialize, Serialize};

/// The limits every policy runs under (`[policy.limits]` in the node config).
///
/// The defaults leave room for interpreted guests (Python and JavaScript
/// components need ~10^5 fuel and a few tens of MiB per call) while stopping a
/// runaway Rust guest within milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// Fuel (roughly, Wasm instructions) one `decide` call may burn. `0`
    /// turns fuel metering off for the engine (the wall-clock limit still
    /// stops runaway calls): decisions get cheaper, but the cost of a call is
    /// no longer measured in fuel.
    pub fuel_per_call: u64,
    /// Fuel instantiating and configuring one instance may burn.
    pub fuel_per_configure: u64,
    /// Wall-clock limit of one `decide` call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Wall-clock limit of instantiating and configuring, in milliseconds.
    pub configure_timeout_ms: u64,
    /// The most linear memory one instance may hold, in bytes.
    pub memory_bytes: usize,
    /// The most table elements one instance may hold.
    pub table_elements: usize,
    /// The deepest Wasm stack, in bytes (an engine-wide setting).
    pub stack_bytes: usize,
    /// Consecutive failed decisions after which the previous good policy is
    /// restored (or the native fallback, if there is none).
    pub failures_before_rollback: u32,
    /// Idle instances kept ready per policy, for concurrent callers.
    pub pooled_instances: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            fuel_per_call: 10_000_000,
            fuel_per_configure: 2_000_000_000,
            call_timeout_ms: 100,
            configure_timeout_ms: 10_000,
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            stack_bytes: 1 << 20,
            failures_before_rollback: 3,
            pooled_instances: 8,
        }
    }
}
