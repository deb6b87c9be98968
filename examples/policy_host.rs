//! Embedding the policy host: load a built-in policy, ask it for decisions,
//! hot-swap another one in, and read the counters.
//!
//! Run with `cargo run -p ramrod-examples --example policy_host`.

use ramrod::sdk::Bounds;
use ramrod::sdk::testing::scenarios;
use ramrod::{PolicyHost, PolicyRuntime, PolicySource, SandboxLimits};

fn main() -> anyhow::Result<()> {
    let runtime = PolicyRuntime::new(SandboxLimits::default(), None)?;
    // Until a Wasm policy is swapped in, the native `entries` fallback decides.
    let host = PolicyHost::new(runtime, Bounds::default(), "snapshot_every = 50000")?;

    let report = host.swap(&PolicySource::parse("adaptive"), "max_chain_length = 8")?;
    println!(
        "running {} ({}), ready in {:.1} ms",
        report.meta.name,
        report.meta.short_hash(),
        report.total.as_secs_f64() * 1e3
    );

    for s in scenarios() {
        let r = host.decide(&s.facts);
        println!(
            "{:<19} snapshot={:<12} purge={:<10} by={:?}: {}",
            s.name,
            format!("{:?}", r.decision.snapshot),
            format!("{:?}", r.decision.purge_up_to),
            r.decided_by,
            r.decision.reason
        );
    }

    host.swap(&PolicySource::parse("bytes-or-age"), "max_bytes = 1048576")?;
    let idle = &scenarios()[1].facts;
    println!(
        "after the swap, idle: {}",
        host.decide(idle).decision.reason
    );
    println!("{:?}", host.stats());
    Ok(())
}

#[cfg(test)]
mod tests {
    /// CI runs the example as it is shipped.
    #[test]
    fn the_example_runs() {
        super::main().unwrap();
    }
}
