//! `ramrod policy ...`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use ramrod::internals::policy::builtin_names;
use ramrod::sdk::testing::scenarios;
use ramrod::sdk::{Bounds, Clamp, SnapshotKind, clamp};
use ramrod::{PolicyRuntime, PolicySource, SandboxLimits};

use ramrod::Scope;
use ramrod::client::PolicyUpload;

use crate::node_cmd::{client_runtime, token_or_env};

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
        /// Keep compiled components here, as a node does in its data
        /// directory (default: `$XDG_CACHE_HOME/ramrod` or
        /// `~/.cache/ramrod`; `--cache-dir ""` compiles every time).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// List the built-in policies.
    List,
    /// Swap a running node's policy, or roll it out to the whole cluster.
    ///
    /// The node validates the policy (compile, instantiate, configure, dry
    /// run) before anything changes. With --cluster the policy goes through
    /// the Raft log: every node runs it from the same log index on, and it
    /// survives restarts. Without, only this node changes, until its next
    /// restart or the next rollout.
    Swap {
        /// The node's URL, e.g. http://127.0.0.1:7001.
        #[arg(long)]
        node: String,
        /// Roll out to every node through the Raft log (sent to the leader).
        #[arg(long)]
        cluster: bool,
        /// The policy's config (the `[policy.config]` table), as a TOML file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The admin bearer token (default: RAMROD_TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// A component file, or the name of a built-in policy.
        policy: String,
    },
    /// What would these policies have done? Replays a recorded workload
    /// (`ramrod trace record`) against a model of the log, the snapshot
    /// chain and builds calibrated from the trace, with each policy
    /// deciding (clamped as a node clamps), and reports per policy the log
    /// size, snapshots and bytes written, the longest chain, the estimated
    /// restart time and catch-up bytes, decisions and fallbacks: a table,
    /// and an HTML page with charts (--out).
    Simulate {
        /// The trace (JSON lines from `ramrod trace record`).
        #[arg(long)]
        trace: PathBuf,
        /// Each policy's config, in the order of the policies (TOML files;
        /// give `-` for a policy's defaults). Missing ones use defaults.
        #[arg(long)]
        config: Vec<PathBuf>,
        /// Write the HTML report here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The follower of the catch-up estimate has been away this long.
        #[arg(long, default_value_t = 60)]
        away_seconds: u64,
        /// Snapshots are built at this rate, MB/s (default: the rate the
        /// trace measured on the node, else 100).
        #[arg(long)]
        build_mb_per_s: Option<f64>,
        /// Component files or built-in names.
        #[arg(required = true)]
        policies: Vec<String>,
    },
    /// Show a node's latest policy decisions (the audit log).
    Decisions {
        /// The node's URL.
        #[arg(long)]
        node: String,
        /// The admin bearer token (default: RAMROD_TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
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
            cache_dir,
        } => check(&policy, config, limits, calls.max(1), cache_dir),
        PolicyCommand::Swap {
            node,
            cluster,
            config,
            token,
            policy,
        } => swap(&node, cluster, config, token, &policy),
        PolicyCommand::Decisions {
            node,
            token,
            limit,
            json,
        } => decisions(&node, token, limit, json),
        PolicyCommand::Simulate {
            trace,
            config,
            out,
            away_seconds,
            build_mb_per_s,
            policies,
        } => simulate(
            &trace,
            &config,
            out,
            away_seconds,
            build_mb_per_s,
            &policies,
        ),
    }
}

fn swap(
    node: &str,
    cluster: bool,
    config: Option<PathBuf>,
    token: Option<String>,
    policy: &str,
) -> Result<ExitCode> {
    let token = token_or_env(token)?;
    let config_text = read_toml_file(&config, "policy config")?;
    let upload = if builtin_names().contains(&policy) {
        PolicyUpload::Builtin(policy.to_string())
    } else {
        let path = PathBuf::from(policy);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {policy} (not a file, nor a built-in: {})",
                builtin_names().join(", ")
            )
        })?;
        let label = path
            .file_name()
            .map_or_else(|| policy.to_string(), |f| f.to_string_lossy().into_owned());
        PolicyUpload::Wasm { label, bytes }
    };
    let scope = if cluster {
        Scope::Cluster
    } else {
        Scope::Local
    };
    client_runtime()?.block_on(async {
        let client = crate::node_cmd::node_client(node)?
            .with_token(token)
            .with_timeout(Duration::from_secs(60));
        // A rollout goes to the leader: the client follows the node's 421.
        let swapped = client
            .swap_policy(upload, &config_text, scope)
            .await
            .with_context(|| format!("{} refused the policy", client.base()))?;
        let hash = &swapped.hash[..12.min(swapped.hash.len())];
        match swapped.index {
            Some(i) => println!(
                "rolled out {} ({hash}) to the cluster at log index {i}: every node runs it from there on",
                swapped.name
            ),
            None => println!(
                "{} now runs {} ({hash}) (this node only, until its restart or the next rollout)",
                client.base(),
                swapped.name
            ),
        }
        if !swapped.dry_run_clamps.is_empty() {
            println!(
                "note: the host clamps its decisions in {} synthetic scenarios (see `ramrod policy check`)",
                swapped.dry_run_clamps.len()
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn decisions(node: &str, token: Option<String>, limit: usize, json: bool) -> Result<ExitCode> {
    let token = token_or_env(token)?;
    client_runtime()?.block_on(async {
        let entries = crate::node_cmd::node_client(node)?
            .with_token(token)
            .decisions(limit)
            .await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
            return Ok(ExitCode::SUCCESS);
        }
        for e in entries {
            let r = &e.record;
            let actions: Vec<String> = e.actions.iter().map(ToString::to_string).collect();
            println!(
                "#{:<5} {:<24} {} ({}) by {}: {}{}{}",
                e.seq,
                e.trigger.to_string(),
                r.policy,
                r.hash,
                r.decided_by.label(),
                r.decision.reason,
                if actions.is_empty() {
                    String::new()
                } else {
                    format!(" -> {}", actions.join("; "))
                },
                if r.clamps.is_empty() {
                    String::new()
                } else {
                    format!(" [clamped: {}]", r.clamps.len())
                },
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn read_toml_file(path: &Option<PathBuf>, what: &str) -> Result<String> {
    match path {
        None => Ok(String::new()),
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {what} {}", p.display()))
        }
    }
}

/// Where `policy check` keeps compiled components.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ramrod").join("policy-cache"))
}

fn check(
    policy: &str,
    config: Option<PathBuf>,
    limits: Option<PathBuf>,
    calls: usize,
    cache_dir: Option<PathBuf>,
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
    let runtime = match cache_dir {
        Some(d) if d.as_os_str().is_empty() => PolicyRuntime::new(limits.clone(), None)?,
        Some(d) => PolicyRuntime::new(limits.clone(), Some(d))?,
        // The default cache is a convenience: without it, compile.
        None => match PolicyRuntime::new(limits.clone(), default_cache_dir()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("warning: no compile cache ({e}); compiling");
                PolicyRuntime::new(limits.clone(), None)?
            }
        },
    };
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
    let max = ramrod::internals::node::handle::DEFAULT_MAX_POLICY_BYTES;
    if meta.size > max {
        println!(
            "warning: {} bytes is over the {max} bytes a node accepts by default: raise the \
             node's `policy.max-upload-bytes` to swap it in or roll it out",
            meta.size
        );
    }
    println!(
        "compiled in {:.1} ms ({:?}), instantiated and configured in {:.2} ms",
        ms(report.compile),
        report.compiled,
        ms(report.instantiate)
    );
    println!();
    println!(
        "{:<19} {:<12} {:>12} {:>6} {:>7} {:>10} {:>8} {:>8}  reason",
        "scenario",
        "snapshot",
        "purge-up-to",
        "retain",
        "next-ms",
        "peak fuel",
        "peak KiB",
        "us/call"
    );
    let bounds = Bounds::default();
    let mut clamped: Vec<(&str, Vec<Clamp>)> = Vec::new();
    let (mut need_fuel, mut need_memory) = (0u64, 0usize);
    for s in scenarios() {
        let mut times = Vec::with_capacity(calls);
        let mut last = None;
        let (mut fuel, mut memory) = (0u64, 0usize);
        for _ in 0..calls {
            let out = loaded
                .decide(&s.facts)
                .with_context(|| format!("policy failed on the `{}` scenario", s.name))?;
            times.push(out.elapsed);
            fuel = fuel.max(out.fuel);
            memory = memory.max(out.memory_bytes);
            last = Some(out);
        }
        need_fuel = need_fuel.max(fuel);
        need_memory = need_memory.max(memory);
        times.sort();
        let out = last.expect("at least one call");
        let d = &out.decision;
        println!(
            "{:<19} {:<12} {:>12} {:>6} {:>7} {:>10} {:>8} {:>8.2}  {}",
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
            fuel,
            memory.div_ceil(1024),
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
    println!(
        "needs: fuel-per-call >= {need_fuel} (limit {}), memory-bytes >= {need_memory} (limit {}); \
         the peaks over {calls} calls per scenario",
        limits.fuel_per_call, limits.memory_bytes
    );
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

fn simulate(
    trace_path: &PathBuf,
    configs: &[PathBuf],
    out: Option<PathBuf>,
    away_seconds: u64,
    build_mb_per_s: Option<f64>,
    policies: &[String],
) -> Result<ExitCode> {
    use ramrod::sim::{SimConfig, Trace, report, simulate};
    anyhow::ensure!(
        configs.len() <= policies.len(),
        "{} configs for {} policies (give one per policy, in order; `-` for defaults)",
        configs.len(),
        policies.len()
    );
    let file = std::fs::File::open(trace_path)
        .with_context(|| format!("opening {}", trace_path.display()))?;
    let trace = Trace::read(std::io::BufReader::new(file))
        .with_context(|| format!("reading the trace {}", trace_path.display()))?;
    anyhow::ensure!(
        !trace.samples.is_empty(),
        "{} has no samples",
        trace_path.display()
    );
    let cfg = SimConfig {
        away_ms: away_seconds * 1000,
        build_bytes_per_ms: build_mb_per_s.map(|r| r * 1000.0),
        ..SimConfig::default()
    };
    let runtime = PolicyRuntime::new(SandboxLimits::default(), default_cache_dir())?;
    let mut results = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let config = match configs.get(i) {
            Some(p) if p.as_os_str() != "-" => read_toml_file(&Some(p.clone()), "policy config")?,
            _ => String::new(),
        };
        let host = ramrod::PolicyHost::new(runtime.clone(), Bounds::default(), "")?;
        host.swap(&PolicySource::parse(policy), &config)
            .with_context(|| format!("loading {policy}"))?;
        results.push(simulate(&trace, &host, &cfg));
    }
    let cal = ramrod::sim::Calibration::of(&trace, &cfg);
    println!(
        "{} samples, {:.0} s of {} (recorded under {})",
        trace.samples.len(),
        trace.duration_ms() as f64 / 1000.0,
        trace.header.node,
        trace.header.policy
    );
    println!("{}", report::table(&trace, &results, cfg.away_ms));
    if let Some(out) = out {
        std::fs::write(&out, report::html(&trace, &results, &cal, cfg.away_ms))
            .with_context(|| format!("writing {}", out.display()))?;
        println!("report: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
