//! `cargo xtask guests [--check]`: builds every policy component reproducibly.
//!
//! Guests are built with a pinned toolchain (`GUEST_TOOLCHAIN`), the `guest`
//! profile, a target directory of their own and path prefixes remapped, so the
//! same sources give the same bytes on any machine. Modules built for
//! `wasm32-unknown-unknown` are turned into components here (with
//! `wit-component`); `wasm32-wasip2` builds are components already.
//!
//! The built components are committed (`policies/dist`, `policies/fixtures/dist`)
//! so neither a node nor the tests need a Wasm toolchain; `--check` rebuilds
//! them and fails if a committed file differs from what its sources give.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The toolchain guests are built with. Changing it changes the built bytes.
const GUEST_TOOLCHAIN: &str = "1.95.0";
const TARGETS: [&str; 2] = ["wasm32-unknown-unknown", "wasm32-wasip2"];

struct Guest {
    /// File name under `dir`, without `.wasm`.
    name: &'static str,
    dir: &'static str,
    package: &'static str,
    target: &'static str,
    features: &'static str,
}

const GUESTS: &[Guest] = &[
    Guest {
        name: "entries",
        dir: "policies/dist",
        package: "ramrod-policy-entries",
        target: TARGETS[0],
        features: "",
    },
    Guest {
        name: "bytes-or-age",
        dir: "policies/dist",
        package: "ramrod-policy-bytes-or-age",
        target: TARGETS[0],
        features: "",
    },
    Guest {
        name: "adaptive",
        dir: "policies/dist",
        package: "ramrod-policy-adaptive",
        target: TARGETS[0],
        features: "",
    },
    Guest {
        name: "hostile",
        dir: "policies/fixtures/dist",
        package: "ramrod-policy-fixtures",
        target: TARGETS[0],
        features: "",
    },
    Guest {
        name: "hostile-wasi",
        dir: "policies/fixtures/dist",
        package: "ramrod-policy-fixtures",
        target: TARGETS[1],
        features: "",
    },
    Guest {
        name: "wrong-world",
        dir: "policies/fixtures/dist",
        package: "ramrod-policy-fixtures",
        target: TARGETS[0],
        features: "wrong-world",
    },
    Guest {
        name: "wrong-version",
        dir: "policies/fixtures/dist",
        package: "ramrod-policy-fixtures",
        target: TARGETS[0],
        features: "wrong-version",
    },
    Guest {
        name: "compatible-version",
        dir: "policies/fixtures/dist",
        package: "ramrod-policy-fixtures",
        target: TARGETS[0],
        features: "compatible-version",
    },
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["guests"] => guests(false),
        ["guests", "--check"] => guests(true),
        ["adapter", path] => {
            let bytes =
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
            std::fs::write(path, bytes).with_context(|| format!("writing {path}"))?;
            println!(
                "wrote the WASI reactor adapter ({} bytes) to {path}",
                bytes.len()
            );
            Ok(())
        }
        _ => bail!("usage: cargo xtask guests [--check] | cargo xtask adapter PATH"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn guests(check: bool) -> Result<()> {
    let root = root();
    install_toolchain()?;
    let mut drift = Vec::new();
    for g in GUESTS {
        let bytes = build(&root, g).with_context(|| format!("building guest `{}`", g.name))?;
        let out = root.join(g.dir).join(format!("{}.wasm", g.name));
        let rel = out
            .strip_prefix(&root)
            .unwrap_or(&out)
            .display()
            .to_string();
        if check {
            let committed = std::fs::read(&out).with_context(|| format!("reading {rel}"))?;
            if committed != bytes {
                drift.push(rel.clone());
            }
            println!("checked {rel} ({} bytes)", bytes.len());
        } else {
            std::fs::create_dir_all(out.parent().expect("has a parent"))?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {rel}"))?;
            println!("wrote {rel} ({} bytes)", bytes.len());
        }
    }
    if !drift.is_empty() {
        bail!(
            "built guests differ from the committed ones: {}\nrun `cargo xtask guests` and commit the result",
            drift.join(", ")
        );
    }
    Ok(())
}

/// Installs the pinned guest toolchain and its Wasm targets (a no-op when present).
fn install_toolchain() -> Result<()> {
    let status = Command::new("rustup")
        .args([
            "toolchain",
            "install",
            GUEST_TOOLCHAIN,
            "--profile",
            "minimal",
            "--no-self-update",
        ])
        .args(TARGETS.iter().flat_map(|t| ["--target", t]))
        .status()
        .context("running rustup (guests are built with a rustup-managed toolchain)")?;
    if !status.success() {
        bail!("rustup could not install toolchain {GUEST_TOOLCHAIN} with targets {TARGETS:?}");
    }
    Ok(())
}

fn build(root: &Path, g: &Guest) -> Result<Vec<u8>> {
    let target_dir = root.join("target").join("guest");
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    // Remap the paths that end up in panic messages so the bytes do not
    // depend on where the checkout or the cargo home is.
    let flags = [
        format!("--remap-path-prefix={}=/ramrod", root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ]
    .join("\x1f");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .arg(format!("+{GUEST_TOOLCHAIN}"))
        .args([
            "build",
            "--quiet",
            "--locked",
            "--profile",
            "guest",
            "--target",
            g.target,
            "--package",
            g.package,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_ENCODED_RUSTFLAGS", flags);
    if !g.features.is_empty() {
        cmd.args(["--features", g.features]);
    }
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed for {} ({})", g.package, g.target);
    }
    let artifact = target_dir
        .join(g.target)
        .join("guest")
        .join(format!("{}.wasm", g.package.replace('-', "_")));
    let bytes =
        std::fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
    if g.target == "wasm32-wasip2" {
        return Ok(bytes);
    }
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .context("reading the module's component type")?
        .validate(true)
        .encode()
        .context("encoding the component")?;
    Ok(component)
}
