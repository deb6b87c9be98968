//! What a component must be to load: a component (not a core module) that
//! exports the policy interface of a contract version the host speaks (the
//! host's, or a semver-compatible one: `0.1.x` for a host of `0.1.0`) and
//! imports nothing but the contract's types and, optionally, WASI.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::bindings::{POLICY_EXPORT, TYPES_IMPORT};
use super::error::PolicyError;

/// The versions a name `ramrod:policy/{iface}@VERSION` may carry for this
/// host: its own, or any with the same major (and, before 1.0, minor)
/// version. wasmtime's lookups match those names to the host's.
pub(super) const SPEAKS: &str = "0.1.x";

/// Whether `name` is `ramrod:policy/{iface}@` at a version this host speaks.
fn compatible(name: &str, ours: &str) -> bool {
    let (Some((base, version)), Some((our_base, our_version))) =
        (name.rsplit_once('@'), ours.rsplit_once('@'))
    else {
        return false;
    };
    let parts = |v: &str| -> Option<(u64, u64, u64)> {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    match (parts(version), parts(our_version)) {
        (Some((a, b, _)), Some((x, y, _))) => base == our_base && a == x && (a > 0 || b == y),
        _ => false,
    }
}

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
        } else if compatible(name, TYPES_IMPORT) {
            // Types only: nothing to link.
        } else if name.starts_with("ramrod:policy/") {
            return Err(PolicyError::WrongContract {
                label: label.to_string(),
                expected: POLICY_EXPORT,
                reason: format!(
                    "it imports `{name}`, an incompatible version of the policy contract \
                     (this host speaks ramrod:policy@{SPEAKS})"
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
    if exports.iter().any(|e| compatible(e, POLICY_EXPORT)) {
        return Ok(());
    }
    let reason = match exports
        .iter()
        .find(|e| e.starts_with("ramrod:policy/policy@"))
    {
        Some(other) => format!(
            "it exports `{other}`, an incompatible version of the policy contract: this host \
             speaks ramrod:policy@{SPEAKS}; rebuild it against one of those"
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

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn patch_versions_are_compatible_minor_ones_are_not_before_1_0() {
        let ours = "ramrod:policy/policy@0.1.0";
        assert!(compatible("ramrod:policy/policy@0.1.0", ours));
        assert!(compatible("ramrod:policy/policy@0.1.7", ours));
        assert!(!compatible("ramrod:policy/policy@0.2.0", ours));
        assert!(!compatible("ramrod:policy/policy@1.1.0", ours));
        assert!(!compatible("ramrod:policy/types@0.1.0", ours));
        assert!(!compatible("ramrod:policy/policy", ours));
        assert!(!compatible("ramrod:policy/policy@0.1", ours));
        assert!(compatible("a:b/c@1.4.0", "a:b/c@1.0.0"));
    }
}
