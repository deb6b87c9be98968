//! The policy runtime: built-ins through Wasm, hostile guests, hot swap,
//! rollback, the compile cache and the file watcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ramrod::internals::policy::{
    ActivePolicy, CompileSource, DecidedBy, FailureKind, PolicyError, PolicyHost, PolicyRuntime,
    PolicySource, PolicyWatcher, SandboxLimits, builtin,
};
use ramrod::sdk::testing::{configure, scenarios};
use ramrod::sdk::{Bounds, Clamp, Facts, Policy, clamp};
use ramrod_policies::{Adaptive, BytesOrAge, Entries};

use crate::support::{
    COMPATIBLE_VERSION, HOSTILE, HOSTILE_WASI, Rng, WRONG_VERSION, WRONG_WORLD, bytes, host,
    random_facts, runtime,
};

/// Facts that set off a `trigger = "magic"` hostile fixture.
fn magic(mut f: Facts) -> Facts {
    f.log.now_ms = ramrod_policy_fixtures::MAGIC_NOW_MS;
    f
}

fn steady() -> Facts {
    ramrod::sdk::testing::scenario("steady").unwrap().facts
}

fn hostile(behavior: &str, trigger: &str) -> (PolicySource, String) {
    (
        bytes("hostile.wasm", HOSTILE),
        format!("behavior = \"{behavior}\"\ntrigger = \"{trigger}\""),
    )
}

/// The Wasm build of each built-in decides exactly as its native build, on
/// the scenario table and on 300 random sets of facts.
#[test]
fn builtins_decide_the_same_in_wasm_and_natively() {
    fn check<P: Policy>(name: &str, config: &str) {
        let (wasm, _) = runtime()
            .load(builtin(name).unwrap(), name, config)
            .unwrap();
        let native: P = configure(config).unwrap();
        let mut rng = Rng::new(7);
        let facts = scenarios()
            .into_iter()
            .map(|s| s.facts)
            .chain((0..300).map(|_| random_facts(&mut rng)));
        for (i, f) in facts.enumerate() {
            let got = wasm.decide(&f).unwrap().decision;
            let want = native.decide(&f.log, &f.snapshot);
            assert_eq!(got, want, "{name} [{config}] case {i}: {f:?}");
        }
    }
    check::<Entries>("entries", "");
    check::<Entries>(
        "entries",
        "snapshot_every = 7\nkeep_entries = 3\nkind = \"incremental\"",
    );
    check::<BytesOrAge>("bytes-or-age", "");
    check::<BytesOrAge>("bytes-or-age", "max_bytes = 1000\nmax_age_ms = 5000");
    check::<Adaptive>("adaptive", "");
    check::<Adaptive>("adaptive", "lag_budget_entries = 10\nmax_chain_length = 3");
}

/// The native fallback makes the same decisions as the `entries` Wasm policy.
#[test]
fn native_fallback_matches_entries_policy() {
    let h = host();
    let mut rng = Rng::new(99);
    let facts: Vec<Facts> = (0..200).map(|_| random_facts(&mut rng)).collect();
    let native: Vec<_> = facts.iter().map(|f| h.decide(f)).collect();
    h.swap(&PolicySource::Builtin("entries".into()), "")
        .unwrap();
    for (f, n) in facts.iter().zip(native) {
        assert_eq!(n.decided_by, DecidedBy::Native);
        let w = h.decide(f);
        assert_eq!(w.decided_by, DecidedBy::Policy);
        assert_eq!(w.proposed, n.proposed);
        assert_eq!(w.decision, n.decision);
    }
}

/// Each hostile behaviour: the host survives, the fallback decides, the
/// failure is classified and counted, and the next decision works.
#[test]
fn hostile_policies_fall_back_and_recover() {
    let cases = [
        ("spin", FailureKind::OutOfFuel),
        ("alloc-bomb", FailureKind::MemoryLimit),
        ("panic", FailureKind::Trap),
        ("deep-recursion", FailureKind::StackOverflow),
    ];
    for (behavior, kind) in cases {
        let h = host();
        let (src, cfg) = hostile(behavior, "magic");
        h.swap(&src, &cfg)
            .unwrap_or_else(|e| panic!("{behavior}: {e}"));
        let bad = h.decide(&magic(steady()));
        match &bad.decided_by {
            DecidedBy::Fallback { failure } => {
                assert_eq!(failure.kind, kind, "{behavior}: {failure}")
            }
            other => panic!("{behavior}: decided by {other:?}"),
        }
        let native: Entries = configure("").unwrap();
        let f = magic(steady());
        assert_eq!(
            bad.proposed,
            native.decide(&f.log, &f.snapshot),
            "{behavior}: fallback decision"
        );
        let stats = h.stats();
        assert_eq!(stats.by_fallback, 1, "{behavior}");
        assert_eq!(
            stats.failures.iter().find(|(k, _)| *k == kind).unwrap().1,
            1,
            "{behavior}"
        );
        // A fresh instance answers the next call.
        let good = h.decide(&steady());
        assert_eq!(good.decided_by, DecidedBy::Policy, "{behavior}");
        assert!(
            good.decision.reason.starts_with("good"),
            "{behavior}: {}",
            good.decision.reason
        );
    }
}

/// A guest that spins with unlimited fuel is stopped by the wall clock.
#[test]
fn spinning_policy_times_out() {
    let limits = SandboxLimits {
        fuel_per_call: u64::MAX / 4,
        call_timeout_ms: 50,
        ..SandboxLimits::default()
    };
    let rt = PolicyRuntime::new(limits, Some(crate::support::cache_dir())).unwrap();
    let h = PolicyHost::new(rt, Bounds::default(), "").unwrap();
    let (src, cfg) = hostile("spin", "magic");
    h.swap(&src, &cfg).unwrap();
    let t = std::time::Instant::now();
    let r = h.decide(&magic(steady()));
    assert!(
        matches!(&r.decided_by, DecidedBy::Fallback { failure } if failure.kind == FailureKind::Timeout),
        "{r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

/// Decisions that are unsafe or silly are clamped, not failed.
#[test]
fn unsafe_decisions_are_clamped() {
    let h = host();
    let b = Bounds::default();
    let f = steady();
    type IsClamp = fn(&Clamp) -> bool;
    let cases: [(&str, IsClamp); 4] = [
        ("purge-past", |c| {
            matches!(
                c,
                Clamp::PurgeLimited {
                    asked: u64::MAX,
                    allowed: Some(1_010_000),
                    ..
                }
            )
        }),
        ("next-check-zero", |c| {
            matches!(c, Clamp::NextCheck { asked: 0, .. })
        }),
        ("next-check-huge", |c| {
            matches!(
                c,
                Clamp::NextCheck {
                    asked: u32::MAX,
                    ..
                }
            )
        }),
        (
            "huge-reason",
            |c| matches!(c, Clamp::Reason { len } if *len > 1 << 20),
        ),
    ];
    for (behavior, want) in cases {
        let (src, cfg) = hostile(behavior, "always");
        let report = h.swap(&src, &cfg).unwrap();
        assert!(
            !report.dry_run_clamps.is_empty(),
            "{behavior}: the dry run reports the clamps"
        );
        let r = h.decide(&f);
        assert_eq!(r.decided_by, DecidedBy::Policy, "{behavior}");
        assert!(r.clamps.iter().any(want), "{behavior}: {:?}", r.clamps);
        let d = &r.decision;
        assert!(
            d.purge_up_to
                .is_none_or(|p| p <= f.snapshot.last_index.unwrap())
        );
        assert!((b.min_check_ms..=b.max_check_ms).contains(&d.next_check_ms));
        assert!(d.reason.len() <= b.max_reason_bytes && !d.reason.chars().any(char::is_control));
    }
    assert_eq!(h.stats().clamped, 4);
}

/// Every bad component or config is refused with a clear error, and the
/// policy that ran before keeps running.
#[test]
fn failed_swaps_leave_the_old_policy_running() {
    let h = host();
    h.swap(&PolicySource::Builtin("adaptive".into()), "")
        .unwrap();
    let before = h.active_meta().unwrap();
    type Check = fn(&PolicyError) -> bool;
    let cases: Vec<(&str, PolicySource, &str, Check, &str)> = vec![
        (
            "not wasm",
            bytes("notes.txt", b"this is not wasm at all"),
            "",
            |e| matches!(e, PolicyError::NotWasm { .. }),
            "not WebAssembly",
        ),
        (
            "core module",
            bytes("core.wasm", b"\0asm\x01\0\0\0"),
            "",
            |e| matches!(e, PolicyError::CoreModule { .. }),
            "core WebAssembly module",
        ),
        (
            "truncated",
            bytes("cut.wasm", &HOSTILE[..HOSTILE.len() / 2]),
            "",
            |e| matches!(e, PolicyError::Invalid { .. }),
            "not a valid component",
        ),
        (
            "wrong world",
            bytes("wrong-world.wasm", WRONG_WORLD),
            "",
            |e| matches!(e, PolicyError::WrongContract { .. }),
            "type mismatch",
        ),
        (
            "wrong version",
            bytes("wrong-version.wasm", WRONG_VERSION),
            "",
            |e| matches!(e, PolicyError::WrongContract { .. }),
            "this host speaks ramrod:policy@0.1.x",
        ),
        (
            "missing file",
            PolicySource::File("no/such/policy.wasm".into()),
            "",
            |e| matches!(e, PolicyError::Read { .. }),
            "no/such/policy.wasm",
        ),
        (
            "unknown builtin",
            PolicySource::Builtin("fastest".into()),
            "",
            |e| matches!(e, PolicyError::UnknownBuiltin { .. }),
            "entries, bytes-or-age, adaptive",
        ),
        (
            "unknown config key",
            PolicySource::Builtin("entries".into()),
            "snapshot_evry = 5",
            |e| matches!(e, PolicyError::Config { .. }),
            "snapshot_evry",
        ),
        (
            "bad config value",
            PolicySource::Builtin("adaptive".into()),
            "max_bytes = \"lots\"",
            |e| matches!(e, PolicyError::Config { .. }),
            "max_bytes",
        ),
        (
            "config rejected",
            bytes("hostile.wasm", HOSTILE),
            "behavior = \"reject-config\"",
            |e| matches!(e, PolicyError::Config { .. }),
            "rejects every config",
        ),
        (
            "spins in configure",
            bytes("hostile.wasm", HOSTILE),
            "behavior = \"spin-configure\"",
            |e| matches!(e, PolicyError::Start { failure, .. } if failure.kind == FailureKind::OutOfFuel),
            "out-of-fuel",
        ),
        (
            "spins",
            bytes("hostile.wasm", HOSTILE),
            "behavior = \"spin\"",
            |e| matches!(e, PolicyError::DryRun { .. }),
            "dry run",
        ),
        (
            "allocates",
            bytes("hostile.wasm", HOSTILE),
            "behavior = \"alloc-bomb\"",
            |e| matches!(e, PolicyError::DryRun { .. }),
            "memory-limit",
        ),
        (
            "panics",
            bytes("hostile.wasm", HOSTILE),
            "behavior = \"panic\"",
            |e| matches!(e, PolicyError::DryRun { .. }),
            "trap",
        ),
    ];
    let n = cases.len() as u64;
    for (what, src, cfg, is, says) in cases {
        let e = h
            .swap(&src, cfg)
            .err()
            .unwrap_or_else(|| panic!("{what}: swap succeeded"));
        assert!(is(&e), "{what}: wrong error {e:?}");
        assert!(
            e.to_string().contains(says),
            "{what}: `{e}` does not say `{says}`"
        );
        assert_eq!(
            h.active_meta().as_ref(),
            Some(&before),
            "{what}: the old policy must stay"
        );
        assert_eq!(h.decide(&steady()).decided_by, DecidedBy::Policy, "{what}");
    }
    let s = h.stats();
    assert_eq!((s.swaps, s.failed_swaps), (1, n));
}

/// After K consecutive failures the previous good policy comes back; with
/// no previous policy, the native fallback takes over.
#[test]
fn repeated_failures_roll_back() {
    let h = host();
    h.swap(&PolicySource::Builtin("bytes-or-age".into()), "")
        .unwrap();
    let (src, cfg) = hostile("panic", "magic");
    h.swap(&src, &cfg).unwrap();
    assert_eq!(h.active_meta().unwrap().name, "hostile");
    let k = h.runtime().limits().failures_before_rollback;
    // Failures that are not consecutive do not add up.
    h.decide(&magic(steady()));
    h.decide(&steady());
    for i in 0..k {
        assert_eq!(
            h.active_meta().unwrap().name,
            "hostile",
            "after {i} failures"
        );
        assert!(matches!(
            h.decide(&magic(steady())).decided_by,
            DecidedBy::Fallback { .. }
        ));
    }
    assert_eq!(h.active_meta().unwrap().name, "bytes-or-age");
    assert_eq!(h.stats().rollbacks, 1);
    assert_eq!(h.decide(&magic(steady())).decided_by, DecidedBy::Policy);

    let h = host();
    h.swap(&src, &cfg).unwrap();
    for _ in 0..k {
        h.decide(&magic(steady()));
    }
    assert!(matches!(h.active(), ActivePolicy::Native));
    assert_eq!(h.decide(&steady()).decided_by, DecidedBy::Native);
}

/// A policy built against a later patch version of the contract (0.1.1)
/// loads and decides on a host that speaks 0.1.0.
#[test]
fn a_semver_compatible_contract_version_loads() {
    let h = host();
    let report = h
        .swap(&bytes("compatible-version.wasm", COMPATIBLE_VERSION), "")
        .unwrap();
    assert_eq!(report.meta.name, "compatible-0.1.1");
    let r = h.decide(&steady());
    assert_eq!(r.decided_by, DecidedBy::Policy);
    assert!(
        r.decision.reason.starts_with("built against 0.1.1"),
        "{}",
        r.decision.reason
    );
}

/// A guest that imports WASI loads, but reaches no file, variable or socket.
#[test]
fn wasi_guest_has_no_capabilities() {
    let h = host();
    let report = h
        .swap(
            &bytes("hostile-wasi.wasm", HOSTILE_WASI),
            "behavior = \"probe-wasi\"",
        )
        .unwrap();
    assert!(report.meta.imports_wasi);
    let facts = steady();
    let r = h.decide(&facts);
    assert_eq!(r.decided_by, DecidedBy::Policy);
    // Its clocks: monotonic time moves (and does not start at 0, which
    // Go's runtime refuses); wall time is the call's `now-ms`.
    assert_eq!(
        r.decision.reason,
        format!(
            "env=0 read=denied write=denied tcp=denied mono=advances wall_ms={}",
            facts.log.now_ms
        )
    );
    assert!(!std::path::Path::new("ramrod-probe.txt").exists());
}

/// A guest's own words reach its failure: the panic message a WASI guest
/// writes to stderr is attached to the trap (bounded), and to nothing else.
#[test]
fn a_failing_wasi_guest_s_stderr_is_attached_to_its_failure() {
    let h = host();
    h.swap(
        &bytes("hostile-wasi.wasm", HOSTILE_WASI),
        "behavior = \"panic\"\ntrigger = \"magic\"",
    )
    .unwrap();
    let good = h.decide(&steady());
    assert_eq!(good.decided_by, DecidedBy::Policy);
    match &h.decide(&magic(steady())).decided_by {
        DecidedBy::Fallback { failure } => {
            assert_eq!(failure.kind, FailureKind::Trap);
            assert!(
                failure.message.contains("guest stderr:")
                    && failure.message.contains("hostile policy panics on purpose"),
                "{failure}"
            );
            assert!(
                failure.message.len() < 8 << 10,
                "bounded: {}",
                failure.message.len()
            );
        }
        other => panic!("decided by {other:?}"),
    }
}

/// Threads decide continuously while the policy is swapped 1,000 times
/// between two versions: no call fails, and every decision is wholly one
/// version's (it equals that version's native decision on those facts).
#[test]
fn hot_swap_under_load_is_atomic() {
    let h = host();
    let entries = PolicySource::Builtin("entries".into());
    let bytes_or_age = PolicySource::Builtin("bytes-or-age".into());
    h.swap(&entries, "").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let e: Entries = configure("").unwrap();
                let b: BytesOrAge = configure("").unwrap();
                let mut rng = Rng::new(t + 1);
                let mut seen = [0u64; 2];
                while !stop.load(Ordering::Relaxed) {
                    let f = random_facts(&mut rng);
                    let r = h.decide(&f);
                    assert_eq!(r.decided_by, DecidedBy::Policy, "{r:?}");
                    let want = match r.policy.as_str() {
                        "entries" => {
                            seen[0] += 1;
                            e.decide(&f.log, &f.snapshot)
                        }
                        "bytes-or-age" => {
                            seen[1] += 1;
                            b.decide(&f.log, &f.snapshot)
                        }
                        other => panic!("decided by {other}"),
                    };
                    assert_eq!(r.proposed, want, "a decision mixed versions");
                    assert_eq!(
                        r.decision,
                        clamp(want, &f.log, &f.snapshot, &Bounds::default()).decision
                    );
                }
                seen
            })
        })
        .collect();
    for i in 0..1_000 {
        let src = if i % 2 == 0 { &bytes_or_age } else { &entries };
        let report = h.swap(src, "").unwrap();
        assert_ne!(
            report.load.compiled,
            CompileSource::Compiled,
            "swap {i} recompiled a cached policy"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = [0u64; 2];
    for t in threads {
        let s = t.join().expect("a decide thread failed");
        seen[0] += s[0];
        seen[1] += s[1];
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both versions decided: {seen:?}"
    );
    let s = h.stats();
    assert_eq!((s.swaps, s.failed_swaps, s.by_fallback), (1_001, 0, 0));
}

/// Compiled components are reused from disk by a new runtime; a damaged
/// cache entry is ignored and rewritten.
#[test]
fn compile_cache_survives_restarts_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let load = |rt: &PolicyRuntime| {
        rt.load(builtin("entries").unwrap(), "entries", "")
            .unwrap()
            .1
            .compiled
    };
    let rt = PolicyRuntime::new(SandboxLimits::default(), Some(dir.path().into())).unwrap();
    assert_eq!(load(&rt), CompileSource::Compiled);
    assert_eq!(load(&rt), CompileSource::Memory);
    let rt = PolicyRuntime::new(SandboxLimits::default(), Some(dir.path().into())).unwrap();
    assert_eq!(load(&rt), CompileSource::Disk);

    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut b = std::fs::read(&entry).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&entry, &b).unwrap();
    let rt = PolicyRuntime::new(SandboxLimits::default(), Some(dir.path().into())).unwrap();
    assert_eq!(
        load(&rt),
        CompileSource::Compiled,
        "a damaged entry must not be loaded"
    );
    let rt = PolicyRuntime::new(SandboxLimits::default(), Some(dir.path().into())).unwrap();
    assert_eq!(
        load(&rt),
        CompileSource::Disk,
        "the damaged entry was rewritten"
    );
}

/// The watcher swaps in a changed file, and keeps the running policy when
/// the new content is bad.
#[test]
fn watcher_reloads_a_changed_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::write(&path, builtin("entries").unwrap()).unwrap();
    let h = host();
    let w = PolicyWatcher::start(
        h.clone(),
        path.clone(),
        String::new(),
        Duration::from_millis(20),
    );
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        for _ in 0..500 {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}");
    };
    wait("first load", &|| w.reloads() == 1);
    assert_eq!(h.active_meta().unwrap().name, "entries");
    std::fs::write(&path, builtin("adaptive").unwrap()).unwrap();
    wait("reload", &|| w.reloads() == 2);
    assert_eq!(h.active_meta().unwrap().name, "adaptive");
    std::fs::write(&path, b"garbage").unwrap();
    wait("refusal", &|| w.last_error().is_some());
    assert!(w.last_error().unwrap().contains("not WebAssembly"));
    assert_eq!(h.active_meta().unwrap().name, "adaptive");
}
