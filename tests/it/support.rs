//! Helpers shared by the test modules.

use std::sync::{Arc, OnceLock};

use ramrod::internals::policy::{PolicyHost, PolicyRuntime, PolicySource, SandboxLimits};
use ramrod::sdk::{Bounds, Facts, Follower, LogFacts, Role, SnapshotFacts};

/// The hostile fixture (imports nothing).
pub const HOSTILE: &[u8] = include_bytes!("../../policies/fixtures/dist/hostile.wasm");
/// The hostile fixture built for wasm32-wasip2 (imports WASI).
pub const HOSTILE_WASI: &[u8] = include_bytes!("../../policies/fixtures/dist/hostile-wasi.wasm");
/// Exports `ramrod:policy/policy@0.1.0` with the wrong signatures.
pub const WRONG_WORLD: &[u8] = include_bytes!("../../policies/fixtures/dist/wrong-world.wasm");
/// Exports `ramrod:policy/policy@0.2.0`.
pub const WRONG_VERSION: &[u8] = include_bytes!("../../policies/fixtures/dist/wrong-version.wasm");
/// Built against `ramrod:policy@0.1.1` (a compatible patch version).
pub const COMPATIBLE_VERSION: &[u8] =
    include_bytes!("../../policies/fixtures/dist/compatible-version.wasm");

/// A directory for the on-disk compile cache shared by test runs, so each
/// component is compiled once per machine, not once per test.
pub fn cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-cache")
}

/// One runtime with default limits for the whole test binary.
pub fn runtime() -> PolicyRuntime {
    static RT: OnceLock<PolicyRuntime> = OnceLock::new();
    RT.get_or_init(|| PolicyRuntime::new(SandboxLimits::default(), Some(cache_dir())).unwrap())
        .clone()
}

/// A host on the shared runtime, native fallback with its defaults.
pub fn host() -> Arc<PolicyHost> {
    Arc::new(PolicyHost::new(runtime(), Bounds::default(), "").unwrap())
}

/// A source for in-memory bytes.
pub fn bytes(label: &str, b: &[u8]) -> PolicySource {
    PolicySource::Bytes {
        label: label.into(),
        bytes: Arc::from(b),
    }
}

/// A small, deterministic random generator (xorshift64*).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `p`/100.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// Random but self-consistent facts: indexes in order, the snapshot within
/// the applied prefix, followers behind the leader.
pub fn random_facts(rng: &mut Rng) -> Facts {
    let first = 1 + rng.below(5_000_000);
    let last = first + rng.below(2_000_000);
    let committed = first.saturating_sub(1) + rng.below(last - first + 2);
    let applied = first.saturating_sub(1) + rng.below(committed + 2 - first);
    let snap_last = if rng.chance(85) && applied > 0 {
        Some((first.saturating_sub(1) + rng.below(applied + 2 - first)).min(applied))
    } else {
        None
    };
    let role =
        [Role::Leader, Role::Follower, Role::Candidate, Role::Learner][rng.below(4) as usize];
    let followers = if role == Role::Leader {
        (0..rng.below(5))
            .map(|i| {
                let matched = rng.chance(90).then(|| rng.below(last + 1));
                Follower {
                    id: i + 2,
                    matched,
                    lag_entries: last - matched.unwrap_or(0),
                    snapshot_in_flight: (rng.chance(20)).then(|| rng.below(last + 1)),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let entries_since = applied - snap_last.unwrap_or(0);
    let per_entry = 16 + rng.below(8192);
    let state_keys = rng.below(2_000_000);
    let base_bytes = rng.below(1 << 32);
    Facts {
        log: LogFacts {
            now_ms: 1_800_000_000_000 + rng.below(1 << 30),
            role,
            first_index: first,
            last_index: last,
            committed,
            applied,
            entries: last + 1 - first,
            bytes: (last + 1 - first) * per_entry,
            append_rate: rng.below(50_000) as f64 * if rng.chance(20) { 0.0 } else { 1.0 },
            byte_rate: rng.below(200_000_000) as f64,
            followers,
            disk_free_bytes: rng.below(1 << 40),
        },
        snapshot: SnapshotFacts {
            last_index: snap_last,
            age_ms: rng.below(10_000_000),
            entries_since,
            bytes_since: entries_since * per_entry,
            chain_length: rng.below(40) as u32,
            chain_bytes: base_bytes + rng.below(1 << 33),
            base_bytes,
            state_keys,
            state_bytes: state_keys * 100,
            dirty_keys: rng.below(state_keys + 1),
            last_build_ms: rng.below(100_000),
            in_progress: rng.chance(10),
        },
    }
}

/// Runs `exe DIR` for `run`, kills it with SIGKILL, and returns every line
/// it printed before it died (each one acknowledges something durable).
pub fn run_then_kill(exe: &str, dir: &std::path::Path, run: std::time::Duration) -> Vec<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(exe)
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(run);
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

/// The multi-threaded runtime the async tests run on (2 workers, as the
/// machine has 2 cores).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The S3 test server's config with a fresh prefix, if `RAMROD_S3_ENDPOINT`
/// is set (`scripts/test.sh` starts SeaweedFS and sets it); panics if
/// `RAMROD_REQUIRE_S3` is set without it.
pub fn s3_test_config() -> Option<ramrod::internals::snapshot::S3Config> {
    let Ok(endpoint) = std::env::var("RAMROD_S3_ENDPOINT") else {
        assert!(
            std::env::var("RAMROD_REQUIRE_S3").is_err(),
            "RAMROD_REQUIRE_S3 is set but RAMROD_S3_ENDPOINT is not"
        );
        eprintln!("S3 cases skipped: RAMROD_S3_ENDPOINT is not set");
        return None;
    };
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = format!(
        "test-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    Some(ramrod::internals::snapshot::S3Config {
        endpoint: Some(endpoint),
        bucket: std::env::var("RAMROD_S3_BUCKET").unwrap_or_else(|_| "ramrod".into()),
        prefix,
        ..ramrod::internals::snapshot::S3Config::default()
    })
}
