//! The built-in policies, embedded as components so a node never needs a Wasm
//! toolchain. They are built by `cargo xtask guests` from `policies/`, and CI
//! checks that these bytes match their sources.

/// `(name, component bytes)` of every built-in policy.
pub const BUILTINS: [(&str, &[u8]); 3] = [
    (
        "entries",
        include_bytes!("../../../policies/dist/entries.wasm"),
    ),
    (
        "bytes-or-age",
        include_bytes!("../../../policies/dist/bytes-or-age.wasm"),
    ),
    (
        "adaptive",
        include_bytes!("../../../policies/dist/adaptive.wasm"),
    ),
];

/// The component bytes of the built-in policy `name`.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The names of the built-in policies.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(n, _)| *n).collect()
}
