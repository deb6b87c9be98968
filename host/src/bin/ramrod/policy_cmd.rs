//! `ramrod policy ...`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use ramrod::policy::{PolicyRuntime, PolicySource, SandboxLimits, builtin_names};
use ramrod::sdk::testing::scenarios;
use ramrod::sdk::{Bounds, Clamp, SnapshotKind, clamp};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy, validate it and show its decisions on synthetic facts.
    ///
    /// Exits non-zero if the policy cannot be loaded, rejects its config,
    /// fails on any scenario, or makes a decision the host has to clamp.
    Check {
        /// A component file, or the name of a built-in policy
        /// (`entries`, `bytes-or-age`, `adaptive`).
        policy: String,
        /// The policy's config (the `[policy.config]` table), as a TOML file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Sandbox limits, as a TOML file with `SandboxLimits` keys.
        #[arg(long)]
        limits: Option<PathBuf>,
        /// Calls per scenario, to time them (the median is shown).
        #[arg(long, default_value_t = 201)]
        calls: usize,
    },
    /// List the built-in policies.
    List,
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::List => {
            for name in builtin_names() {
                println!("{name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check {
            policy,
            config,
            limits,
            calls,
        } => check(&policy, config, limits, calls.max(1)),
    }
}

fn read_toml_file(path: &Option<PathBuf>, what: &str) -> Result<String> {
    match path {
        None => Ok(String::new()),
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {what} {}", p.display()))
        }
    }
}

fn check(
    policy: &str,
    config: Option<PathBuf>,
    limits: Option<PathBuf>,
    calls: usize,
) -> Result<ExitCode> {
    let config_text = read_toml_file(&config, "policy config")?;
    let limits_text = read_toml_file(&limits, "limits file")?;
    let limits: SandboxLimits = toml::from_str(&limits_text).with_context(|| {
        format!(
            "invalid limits file {}",
            limits
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    })?;
    let runtime = PolicyRuntime::new(limits, None)?;
    let source = PolicySource::parse(policy);
    let bytes = source.bytes()?;
    let (loaded, report) = runtime.load(&bytes, &source.to_string(), &config_text)?;
    let meta = loaded.meta();
    println!(
        "policy `{}` from {} ({} bytes, blake3 {}, {})",
        meta.name,
        meta.source,
        meta.size,
        meta.short_hash(),
        if meta.imports_wasi {
            "imports WASI: linked with no capabilities"
        } else {
            "imports nothing"
        }
    );
    println!(
        "compiled in {:.1} ms ({:?}), instantiated and configured in {:.2} ms",
        ms(report.compile),
        report.compiled,
        ms(report.instantiate)
    );
    println!();
    println!(
        "{:<19} {:<12} {:>12} {:>6} {:>7} {:>8} {:>8}  reason",
        "scenario", "snapshot", "purge-up-to", "retain", "next-ms", "fuel", "us/call"
    );
    let bounds = Bounds::default();
    let mut clamped: Vec<(&str, Vec<Clamp>)> = Vec::new();
    for s in scenarios() {
        let mut times = Vec::with_capacity(calls);
        let mut last = None;
        for _ in 0..calls {
            let out = loaded
                .decide(&s.facts)
                .with_context(|| format!("policy failed on the `{}` scenario", s.name))?;
            times.push(out.elapsed);
            last = Some(out);
        }
        times.sort();
        let out = last.expect("at least one call");
        let d = &out.decision;
        println!(
            "{:<19} {:<12} {:>12} {:>6} {:>7} {:>8} {:>8.2}  {}",
            s.name,
            match d.snapshot {
                None => "-",
                Some(SnapshotKind::Full) => "full",
                Some(SnapshotKind::Incremental) => "incremental",
            },
            d.purge_up_to.map_or("-".to_string(), |p| p.to_string()),
            d.retain_snapshots
                .map_or("-".to_string(), |r| r.to_string()),
            d.next_check_ms,
            out.fuel,
            times[times.len() / 2].as_secs_f64() * 1e6,
            d.reason
                .chars()
                .take(100)
                .collect::<String>()
                .replace(['\n', '\r'], " "),
        );
        let c = clamp(out.decision, &s.facts.log, &s.facts.snapshot, &bounds);
        if !c.clamps.is_empty() {
            clamped.push((s.name, c.clamps));
        }
    }
    println!();
    if clamped.is_empty() {
        println!("ok: every decision is safe as returned (nothing clamped)");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: the host had to clamp {} of the decisions:",
        clamped.len()
    );
    for (name, clamps) in &clamped {
        for c in clamps {
            eprintln!("  {name}: {c}");
        }
    }
    Ok(ExitCode::from(2))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
