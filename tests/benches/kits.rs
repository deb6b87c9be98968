//! The policy kits (examples/policies) measured: component size, compile
//! time, peak fuel and guest memory over the SDK scenarios, and decide
//! latency, for every language's components, against the built-in
//! `entries` (Rust, no_std) and the same logic compiled natively, in the
//! same run. Calls are interleaved round by round, so a noisy machine
//! affects every row alike.
//!
//! `examples/policies/build.sh && cargo bench -p ramrod-tests --bench kits`
//! writes `target/bench-reports/kits.md`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ramrod::internals::policy::{PolicyRuntime, SandboxLimits, builtin};
use ramrod::sdk::Policy;
use ramrod::sdk::testing::{configure, scenarios};
use ramrod_policies::Entries;

const ROUNDS: usize = 10;
const CALLS_PER_ROUND: usize = 500;

fn median(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (rounds, calls) = if quick {
        (1, 20)
    } else {
        (ROUNDS, CALLS_PER_ROUND)
    };
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/policy-kits/dist");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "wasm"));
    files.sort();
    if files.is_empty() {
        eprintln!(
            "no kit components in {}: run examples/policies/build.sh",
            dist.display()
        );
        std::process::exit(1);
    }
    let facts: Vec<_> = scenarios().into_iter().map(|s| s.facts).collect();
    // Compiled without a cache: what a first swap on a node costs.
    let rt = PolicyRuntime::new(SandboxLimits::default(), None).unwrap();

    struct Row {
        name: String,
        size: usize,
        compile: Duration,
        fuel: u64,
        memory: usize,
        call: Box<dyn FnMut(usize)>,
        samples: Vec<Duration>,
    }
    let mut rows = Vec::new();
    let mut add = |name: String, wasm: Vec<u8>| {
        let t = Instant::now();
        let (p, _) = rt
            .load(&wasm, &name, "")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let compile = t.elapsed();
        let (mut fuel, mut memory) = (0, 0);
        for f in &facts {
            for _ in 0..20 {
                let out = p.decide(f).unwrap();
                fuel = fuel.max(out.fuel);
                memory = memory.max(out.memory_bytes);
            }
        }
        let facts = facts.clone();
        rows.push(Row {
            name,
            size: wasm.len(),
            compile,
            fuel,
            memory,
            call: Box::new(move |i| {
                black_box(p.decide(black_box(&facts[i % facts.len()])).unwrap());
            }),
            samples: Vec::new(),
        });
    };
    add(
        "built-in entries (Rust, no_std)".into(),
        builtin("entries").unwrap().to_vec(),
    );
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        add(name, std::fs::read(f).unwrap());
    }
    let native: Entries = configure("").unwrap();
    let native_facts = facts.clone();
    rows.push(Row {
        name: "entries, native (no Wasm)".into(),
        size: 0,
        compile: Duration::ZERO,
        fuel: 0,
        memory: 0,
        call: Box::new(move |i| {
            let f = &native_facts[i % native_facts.len()];
            black_box(native.decide(black_box(&f.log), black_box(&f.snapshot)));
        }),
        samples: Vec::new(),
    });
    for _ in 0..rounds {
        for r in rows.iter_mut() {
            for i in 0..calls {
                let t = Instant::now();
                (r.call)(i);
                r.samples.push(t.elapsed());
            }
        }
    }
    let mut report = String::new();
    let _ = writeln!(report, "# Policy kits benchmark\n");
    let _ = writeln!(
        report,
        "Each component with its default config; fuel and memory are the peaks over 20 calls on each of the {} SDK scenarios; latency over {rounds} interleaved rounds of {calls} calls (facts cycling through the scenarios); compile without a cache.\n",
        facts.len()
    );
    let _ = writeln!(
        report,
        "| component | size KiB | compile ms | peak fuel | peak memory KiB | decide median µs | p99 µs | x built-in |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let base = median(rows[0].samples.clone(), 0.5).as_secs_f64();
    for r in &rows {
        let m = median(r.samples.clone(), 0.5);
        let p99 = median(r.samples.clone(), 0.99);
        let _ = writeln!(
            report,
            "| {} | {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.1} |",
            r.name,
            r.size / 1024,
            r.compile.as_secs_f64() * 1e3,
            r.fuel,
            r.memory / 1024,
            m.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            m.as_secs_f64() / base.max(1e-12)
        );
    }
    println!("{report}");
    if !quick {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-reports");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("kits.md"), &report).unwrap();
        println!("written to target/bench-reports/kits.md");
    }
}
