//! What a component must be to load: a component (not a core module) that
//! exports the policy interface of the contract version the host speaks and
//! imports nothing but the contract's types and, optionally, WASI.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{POLICY_EXPORT, TYPES_IMPORT};
use super::error::PolicyError;

pub(super) fn check_header(bytes: &[u8], label: &str) -> Result<(), PolicyError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PolicyError::NotWasm {
            label: label.to_string(),
        });
    }
    // Bytes 4..8 are the version and layer: 0x0001_0000 for a core module,
    // layer 1 for a component.
    if bytes[6..8] == [0, 0] {
        return Err(PolicyError::CoreModule {
            label: label.to_string(),
        });
    }
    Ok(())
}

/// Returns whether the component imports WASI; refuses any other import.
pub(super) fn check_imports(
    component: &Component,
    engine: &Engine,
    label: &str,
) -> Result<bool, PolicyError> {
    let mut wasi = false;
    for (name, _) in component.component_type().imports(engine) {
        if name.starts_with("wasi:") {
            wasi = true;
        } else if name == TYPES_IMPORT {
            // Types only: nothing to link.
        } else if name.starts_with("ramrod:policy/") {
            return Err(PolicyError::WrongContract {
                label: label.to_string(),
                expected: POLICY_EXPORT,
                reason: format!(
                    "it imports `{name}`, an incompatible version of the policy contract"
                ),
            });
        } else {
            return Err(PolicyError::Import {
                label: label.to_string(),
                import: name.to_string(),
            });
        }
    }
    Ok(wasi)
}

pub(super) fn check_exports(
    component: &Component,
    engine: &Engine,
    label: &str,
) -> Result<(), PolicyError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .collect();
    if exports.iter().any(|e| e == POLICY_EXPORT) {
        return Ok(());
    }
    let reason = match exports
        .iter()
        .find(|e| e.starts_with("ramrod:policy/policy@"))
    {
        Some(other) => format!(
            "it exports `{other}`, an incompatible version of the policy contract; rebuild it against \
             ramrod:policy@0.1.0"
        ),
        None if exports.is_empty() => "it exports nothing".to_string(),
        None => format!(
            "it exports {}",
            exports
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(PolicyError::WrongContract {
        label: label.to_string(),
        expected: POLICY_EXPORT,
        reason,
    })
}
