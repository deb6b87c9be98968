//! Policy runtime benchmark: decide latency of the built-ins through wasmtime
//! against the same logic compiled natively, swap latency (cached, from the
//! disk cache, uncached) and instance start-up.
//!
//! `cargo bench -p ramrod --bench policy` prints a report and writes it to
//! `target/bench-reports/policy.md`. Measurements are interleaved round by
//! round so a noisy machine affects every column alike.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ramrod::internals::policy::{PolicyHost, PolicyRuntime, PolicySource, SandboxLimits, builtin};
use ramrod::sdk::testing::{configure, scenarios};
use ramrod::sdk::{Bounds, Facts, Policy};
use ramrod_policies::{Adaptive, BytesOrAge, Entries};

const ROUNDS: usize = 10;
const CALLS_PER_ROUND: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Series {
    name: String,
    samples: Vec<Duration>,
}

impl Series {
    fn new(name: impl Into<String>) -> Self {
        Series {
            name: name.into(),
            samples: Vec::new(),
        }
    }
    fn stats(&mut self) -> (Duration, Duration) {
        self.samples.sort();
        (
            percentile(&self.samples, 0.5),
            percentile(&self.samples, 0.99),
        )
    }
}

fn native_series<P: Policy>(config: &str) -> impl FnMut(&Facts) {
    let p: P = configure(config).unwrap();
    move |f: &Facts| {
        black_box(p.decide(black_box(&f.log), black_box(&f.snapshot)));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too,
    // briefly, so it is kept quick unless benchmarking.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { ROUNDS };
    let calls = if quick { 50 } else { CALLS_PER_ROUND };

    let facts: Vec<Facts> = scenarios().into_iter().map(|s| s.facts).collect();
    let rt = PolicyRuntime::new(SandboxLimits::default(), None).unwrap();
    let mut report = String::new();
    let _ = writeln!(report, "# Policy runtime benchmark\n");
    let _ = writeln!(
        report,
        "{} rounds x {} calls per series, interleaved; facts cycle through the {} synthetic scenarios.\n",
        rounds,
        calls,
        facts.len()
    );

    // --- decide latency -------------------------------------------------
    type Call = Box<dyn FnMut(&Facts)>;
    let mut series: Vec<(Series, Call)> = Vec::new();
    for (name, native) in [
        ("entries", Box::new(native_series::<Entries>("")) as Call),
        ("bytes-or-age", Box::new(native_series::<BytesOrAge>(""))),
        ("adaptive", Box::new(native_series::<Adaptive>(""))),
    ] {
        let (wasm, _) = rt.load(builtin(name).unwrap(), name, "").unwrap();
        let wasm_call: Call = Box::new(move |f: &Facts| {
            black_box(wasm.decide(black_box(f)).unwrap());
        });
        series.push((Series::new(format!("{name} wasm")), wasm_call));
        series.push((Series::new(format!("{name} native")), native));
    }
    let no_fuel = PolicyRuntime::new(
        SandboxLimits {
            fuel_per_call: 0,
            ..SandboxLimits::default()
        },
        None,
    )
    .unwrap();
    let (wasm, _) = no_fuel
        .load(builtin("adaptive").unwrap(), "adaptive", "")
        .unwrap();
    let no_fuel_call: Call = Box::new(move |f: &Facts| {
        black_box(wasm.decide(black_box(f)).unwrap());
    });
    series.push((
        Series::new("adaptive wasm, fuel metering off (epoch only)"),
        no_fuel_call,
    ));
    let host = PolicyHost::new(rt.clone(), Bounds::default(), "").unwrap();
    host.swap(&PolicySource::Builtin("adaptive".into()), "")
        .unwrap();
    let host_call: Call = Box::new(move |f: &Facts| {
        black_box(host.decide(black_box(f)));
    });
    series.push((
        Series::new("adaptive via PolicyHost (wasm + clamp + audit)"),
        host_call,
    ));
    let fallback_host = PolicyHost::new(rt.clone(), Bounds::default(), "").unwrap();
    let fallback_call: Call = Box::new(move |f: &Facts| {
        black_box(fallback_host.decide(black_box(f)));
    });
    series.push((Series::new("native fallback via PolicyHost"), fallback_call));

    for (_, call) in series.iter_mut() {
        for f in &facts {
            call(f); // warm up
        }
    }
    for _ in 0..rounds {
        for (s, call) in series.iter_mut() {
            for i in 0..calls {
                let f = &facts[i % facts.len()];
                let t = Instant::now();
                call(f);
                s.samples.push(t.elapsed());
            }
        }
    }
    let _ = writeln!(report, "## decide latency\n");
    let _ = writeln!(report, "| series | median µs | p99 µs |");
    let _ = writeln!(report, "|---|---:|---:|");
    let mut medians = Vec::new();
    for (s, _) in series.iter_mut() {
        let (m, p99) = s.stats();
        medians.push((s.name.clone(), m));
        let _ = writeln!(report, "| {} | {:.3} | {:.3} |", s.name, us(m), us(p99));
    }
    let _ = writeln!(report);
    for name in ["entries", "bytes-or-age", "adaptive"] {
        let w = medians
            .iter()
            .find(|(n, _)| *n == format!("{name} wasm"))
            .unwrap()
            .1;
        let n = medians
            .iter()
            .find(|(n, _)| *n == format!("{name} native"))
            .unwrap()
            .1;
        let _ = writeln!(
            report,
            "- {name}: wasm median is {:.3} µs over native ({:.1}x native)",
            us(w.saturating_sub(n)),
            w.as_secs_f64() / n.as_secs_f64().max(1e-12)
        );
    }

    // --- swaps and start-up ---------------------------------------------
    let reps = if quick { 2 } else { 20 };
    let host = PolicyHost::new(rt.clone(), Bounds::default(), "").unwrap();
    let mut cached = Series::new("swap, component compiled in this process");
    let mut start = Series::new("instantiate + configure (from InstancePre)");
    let mut disk = Series::new("swap, new runtime, component in the disk cache");
    let mut uncached = Series::new("swap, new runtime, component compiled");
    let dir = std::env::temp_dir().join(format!("ramrod-bench-cache-{}", std::process::id()));
    for i in 0..reps {
        let name = ["entries", "bytes-or-age"][i % 2];
        let r = host.swap(&PolicySource::Builtin(name.into()), "").unwrap();
        cached.samples.push(r.total);
        start.samples.push(r.load.instantiate);

        let _ = std::fs::remove_dir_all(&dir);
        let fresh = PolicyRuntime::new(SandboxLimits::default(), Some(dir.clone())).unwrap();
        let h = PolicyHost::new(fresh, Bounds::default(), "").unwrap();
        uncached.samples.push(
            h.swap(&PolicySource::Builtin("adaptive".into()), "")
                .unwrap()
                .total,
        );
        let again = PolicyRuntime::new(SandboxLimits::default(), Some(dir.clone())).unwrap();
        let h = PolicyHost::new(again, Bounds::default(), "").unwrap();
        disk.samples.push(
            h.swap(&PolicySource::Builtin("adaptive".into()), "")
                .unwrap()
                .total,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = writeln!(
        report,
        "\n## swap and start-up ({reps} each; a swap includes the dry run on every scenario)\n"
    );
    let _ = writeln!(report, "| what | median ms | p99 ms |");
    let _ = writeln!(report, "|---|---:|---:|");
    for s in [&mut cached, &mut disk, &mut uncached, &mut start] {
        let (m, p) = s.stats();
        let _ = writeln!(
            report,
            "| {} | {:.3} | {:.3} |",
            s.name,
            us(m) / 1e3,
            us(p) / 1e3
        );
    }

    println!("{report}");
    if !quick {
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-reports");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("policy.md"), &report).unwrap();
        println!("written to target/bench-reports/policy.md");
    }
}
