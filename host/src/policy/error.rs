//! Errors of the policy module, by operation.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why one call into a policy failed. The host answers with the native
/// fallback instead, counts the failure and logs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The detail, as wasmtime or the guest gave it.
    pub message: String,
}

/// The kinds of [`PolicyFailure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The call burnt all its fuel.
    OutOfFuel,
    /// The call ran past its wall-clock limit.
    Timeout,
    /// The instance asked for more memory than its cap.
    MemoryLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The guest trapped (a Rust panic is a trap).
    Trap,
    /// A fresh instance could not be made or configured.
    Instantiate,
    /// Anything else wasmtime reported, e.g. a malformed return value.
    Other,
}

impl FailureKind {
    /// All kinds, for metrics.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::OutOfFuel,
        FailureKind::Timeout,
        FailureKind::MemoryLimit,
        FailureKind::StackOverflow,
        FailureKind::Trap,
        FailureKind::Instantiate,
        FailureKind::Other,
    ];

    /// A short, stable name (`out-of-fuel`, `timeout`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::OutOfFuel => "out-of-fuel",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Trap => "trap",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PolicyFailure {}

/// Why a policy could not be loaded, validated or swapped in. The policy that
/// was running before stays in place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("reading policy file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No built-in policy has this name.
    #[error("no built-in policy is named `{name}` (the built-ins are {})", super::builtin::names().join(", "))]
    UnknownBuiltin {
        /// The name asked for.
        name: String,
    },
    /// The bytes are not WebAssembly at all.
    #[error("{label} is not WebAssembly: it does not start with the `\\0asm` magic bytes")]
    NotWasm {
        /// Where the bytes came from.
        label: String,
    },
    /// The bytes are a core module, not a component.
    #[error(
        "{label} is a core WebAssembly module, not a component: build for wasm32-wasip2 or \
         turn it into a component with `wasm-tools component new`"
    )]
    CoreModule {
        /// Where the bytes came from.
        label: String,
    },
    /// The component failed validation or compilation.
    #[error("{label} is not a valid component: {reason}")]
    Invalid {
        /// Where the bytes came from.
        label: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component does not export the policy interface this host speaks.
    #[error("{label} does not implement `{expected}`: {reason}")]
    WrongContract {
        /// Where the bytes came from.
        label: String,
        /// The export this host needs.
        expected: &'static str,
        /// What it has instead.
        reason: String,
    },
    /// The component imports something other than WASI.
    #[error(
        "{label} imports `{import}`, which the host does not provide \
         (a policy may import WASI only, and gets no capabilities through it)"
    )]
    Import {
        /// Where the bytes came from.
        label: String,
        /// The import.
        import: String,
    },
    /// The policy's `configure` rejected its config.
    #[error("{label} rejected its config: {message}")]
    Config {
        /// The policy.
        label: String,
        /// The policy's message, which should name the key at fault.
        message: String,
    },
    /// Instantiating or configuring failed (trap, fuel, time, memory).
    #[error("{label} failed while starting: {failure}")]
    Start {
        /// The policy.
        label: String,
        /// What went wrong.
        failure: PolicyFailure,
    },
    /// A dry-run decision on synthetic facts failed.
    #[error("{label} failed its dry run on the `{scenario}` scenario: {failure}")]
    DryRun {
        /// The policy.
        label: String,
        /// The synthetic scenario.
        scenario: &'static str,
        /// What went wrong.
        failure: PolicyFailure,
    },
    /// The engine could not be built (bad limits).
    #[error("building the Wasm engine: {0}")]
    Engine(String),
    /// The compile cache directory is unusable.
    #[error("compile cache at {}: {source}", path.display())]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
