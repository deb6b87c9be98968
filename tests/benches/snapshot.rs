//! Snapshot benchmark: a state of 1M keys with ~100-byte values.
//!
//! - full vs incremental snapshot (1% of the keys changed): time and bytes;
//! - restore of a base + 10 deltas against reading the same segment files
//!   sequentially, both from a cold page cache (`POSIX_FADV_DONTNEED`), in
//!   the same run, alternating;
//! - apply throughput while a full snapshot is written vs without;
//! - the same snapshot and restore figures on an S3 store (SeaweedFS) when
//!   `RAMROD_S3_ENDPOINT` is set (`scripts/bench.sh` starts one).
//!
//! `cargo bench -p ramrod-tests --bench snapshot` prints a report and writes
//! it to `target/bench-reports/snapshot.md`. `RAMROD_BENCH_KEYS` changes the
//! key count.

use std::fmt::Write as _;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};
use ramrod::internals::raft::{Command, Entry, LogId, Request};
use ramrod::internals::snapshot::{
    DirStore, Manifest, S3Config, S3Store, SnapshotConfig, SnapshotKind, SnapshotStore, Snapshots,
};
use ramrod::internals::state_machine::KvStateMachine;

const VALUE_BYTES: usize = 100;

fn value(i: u64, round: u64) -> Vec<u8> {
    // A JSON-like microVM record: structure plus an id-like random part, so
    // it compresses about as well as real specs (not to nothing).
    let mut x = (i ^ (round << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut hex = String::new();
    while hex.len() < 48 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        hex.push_str(&format!("{x:016x}"));
    }
    let mut v = format!(
        "{{\"vm\":{i},\"rev\":{round},\"image\":\"{}\",\"cpu\":2}}",
        &hex[..48]
    )
    .into_bytes();
    v.resize(VALUE_BYTES, b' ');
    v
}

fn key(i: u64) -> Vec<u8> {
    format!("microvm/{:08}", i).into_bytes()
}

struct Bench {
    sm: KvStateMachine,
    index: u64,
}

impl Bench {
    async fn apply(&mut self, commands: Vec<Command>) {
        self.index += 1;
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(Request { commands }),
        };
        self.sm.apply([e]).await.unwrap();
    }

    /// Puts keys `range` with revision `round`, 1,000 per entry.
    async fn put_range(&mut self, keys: impl Iterator<Item = u64>, round: u64) {
        let keys: Vec<u64> = keys.collect();
        for chunk in keys.chunks(1_000) {
            let cmds = chunk
                .iter()
                .map(|&i| Command::Put {
                    key: key(i),
                    value: value(i, round),
                })
                .collect();
            self.apply(cmds).await;
        }
    }
}

fn drop_cache(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        // SAFETY: a valid descriptor; the advice only drops clean cached pages.
        #[expect(unsafe_code, reason = "dropping the page cache has no safe wrapper")]
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Run {
    full: (Duration, u64),
    incr: (Duration, u64),
    restore: Duration,
    restore_bytes: u64,
    layers: usize,
}

/// Builds the state, a full snapshot, an incremental one with 1% changed,
/// then 9 more incrementals (base + 10 deltas) and restores the chain.
async fn snapshot_run(store: Arc<dyn SnapshotStore>, keys: u64) -> (Run, Manifest, Arc<Snapshots>) {
    let cfg = SnapshotConfig {
        retain: 100,
        max_chain: 100,
        ..SnapshotConfig::default()
    };
    let snaps = Arc::new(Snapshots::new(store, "bench", cfg));
    let (sm, _) = KvStateMachine::open(snaps.clone()).await.unwrap();
    let mut b = Bench { sm, index: 0 };
    b.put_range(0..keys, 0).await;
    let t = Instant::now();
    let full = b.sm.build(Some(SnapshotKind::Full)).await.unwrap();
    let full_t = t.elapsed();
    let mut incr = None;
    let mut last = full.clone();
    for round in 1..=10u64 {
        // 1% of the keys, spread over the key space.
        let step = 100;
        b.put_range((round..keys).step_by(step), round).await;
        let t = Instant::now();
        let m = b.sm.build(Some(SnapshotKind::Incremental)).await.unwrap();
        if round == 1 {
            incr = Some((t.elapsed(), m.bytes_written));
        }
        last = m;
    }
    let t = Instant::now();
    let loaded = snaps
        .load(&format!("bench/{}", last.id), &last)
        .await
        .unwrap();
    let restore = t.elapsed();
    assert_eq!(loaded.state.len() as u64, keys);
    (
        Run {
            full: (full_t, full.bytes_written),
            incr: incr.unwrap(),
            restore,
            restore_bytes: loaded.bytes_read,
            layers: 1 + last.deltas.len(),
        },
        last,
        snaps,
    )
}

/// The `i`-th entry of an apply run: 10 puts spread over the key space.
fn ten_puts(i: u64, keys: u64, round: u64) -> Vec<Command> {
    (0..10)
        .map(|j| {
            let k = (i * 7919 + j) % keys;
            Command::Put {
                key: key(k),
                value: value(k, round),
            }
        })
        .collect()
}

/// The full vs incremental table of one store.
fn snapshot_table(report: &mut String, title: &str, run: &Run) {
    let _ = writeln!(report, "## {title}\n");
    let _ = writeln!(report, "| | time | bytes written |");
    let _ = writeln!(report, "|---|---:|---:|");
    let _ = writeln!(
        report,
        "| full snapshot | {:.0} ms | {} |",
        ms(run.full.0),
        run.full.1
    );
    let _ = writeln!(
        report,
        "| incremental, 1% changed | {:.1} ms | {} |",
        ms(run.incr.0),
        run.incr.1
    );
    let _ = writeln!(
        report,
        "| incremental / full | {:.2}% | {:.2}% |",
        100.0 * run.incr.0.as_secs_f64() / run.full.0.as_secs_f64(),
        100.0 * run.incr.1 as f64 / run.full.1 as f64
    );
}

/// Apply throughput (entries of 10 puts per second) for `d`.
async fn apply_rate(b: &mut Bench, keys: u64, d: Duration, round: u64) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    let mut i = 0u64;
    while t.elapsed() < d {
        b.apply(ten_puts(i, keys, round)).await;
        i += 1;
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let keys: u64 = std::env::var("RAMROD_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 1_000_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("RAMROD_BENCH_DIR").unwrap_or_else(|| ".".into());
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# Snapshot benchmark\n\n{keys} keys of ~{VALUE_BYTES}-byte values (JSON-like); machine: {} cores.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // --- local directory ---
    let dir = tempfile::tempdir_in(&base).unwrap();
    let store: Arc<dyn SnapshotStore> = Arc::new(DirStore::open(dir.path()).unwrap());
    let (run, last, snaps) = rt.block_on(snapshot_run(store, keys));

    // Restore vs sequential read of the same files, cold cache, alternating.
    let files: Vec<_> = last
        .segments()
        .map(|s| dir.path().join("segments").join(&s.name))
        .collect();
    let mut restores = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..5 {
        files.iter().for_each(|f| drop_cache(f));
        let t = Instant::now();
        let mut total = 0usize;
        for f in &files {
            total += std::fs::read(f).unwrap().len();
        }
        reads.push(t.elapsed());
        assert_eq!(total as u64, run.restore_bytes);
        files.iter().for_each(|f| drop_cache(f));
        let t = Instant::now();
        let loaded = rt
            .block_on(snaps.load(&format!("bench/{}", last.id), &last))
            .unwrap();
        restores.push(t.elapsed());
        // Freeing a million pairs is not part of restoring them.
        drop(loaded);
    }
    restores.sort();
    reads.sort();
    let (restore, read) = (restores[2], reads[2]);

    // Apply throughput with and without a full snapshot being written,
    // alternating, 3 rounds; medians.
    let (normal, during, snap_time) = rt.block_on(async {
        let (sm, _) = KvStateMachine::open(snaps.clone()).await.unwrap();
        let mut b = Bench {
            index: sm.last_applied().map_or(0, |l| l.index),
            sm,
        };
        let (mut normals, mut durings, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..3u64 {
            normals.push(apply_rate(&mut b, keys, Duration::from_secs(1), 100 + round).await);
            let builder = b.sm.clone();
            let t = Instant::now();
            let build = tokio::spawn(async move { builder.build(Some(SnapshotKind::Full)).await });
            let mut n = 0u64;
            let mut i = 0u64;
            while !build.is_finished() {
                b.apply(ten_puts(i, keys, 200 + round)).await;
                i += 1;
                n += 1;
            }
            let took = t.elapsed();
            build.await.unwrap().unwrap();
            durings.push(n as f64 / took.as_secs_f64());
            times.push(took);
        }
        let mid = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[1]
        };
        times.sort();
        (mid(normals), mid(durings), times[1])
    });

    snapshot_table(&mut report, "Local directory store", &run);
    let _ = writeln!(report);
    let _ = writeln!(
        report,
        "Restore of base + {} deltas ({} segment bytes), cold page cache, median of 5 alternating:\n",
        run.layers - 1,
        run.restore_bytes
    );
    let _ = writeln!(report, "| | time |");
    let _ = writeln!(report, "|---|---:|");
    let _ = writeln!(
        report,
        "| sequential read of the same files | {:.0} ms |",
        ms(read)
    );
    let _ = writeln!(
        report,
        "| restore (verify, decode, build the map, check the hash) | {:.0} ms |",
        ms(restore)
    );
    let _ = writeln!(
        report,
        "| restore / read | {:.2}x |\n",
        restore.as_secs_f64() / read.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "Apply throughput (entries of 10 puts), medians of 3 alternating rounds:\n"
    );
    let _ = writeln!(report, "| | entries/s |");
    let _ = writeln!(report, "|---|---:|");
    let _ = writeln!(report, "| no snapshot | {normal:.0} |");
    let _ = writeln!(
        report,
        "| during a full snapshot ({:.0} ms) | {during:.0} |",
        ms(snap_time)
    );
    let _ = writeln!(report, "| during / normal | {:.2}x |", during / normal);

    // --- S3 ---
    match std::env::var("RAMROD_S3_ENDPOINT") {
        Ok(endpoint) => {
            let cfg = S3Config {
                endpoint: Some(endpoint),
                bucket: std::env::var("RAMROD_S3_BUCKET").unwrap_or_else(|_| "ramrod".into()),
                prefix: format!("bench-{}", std::process::id()),
                ..S3Config::default()
            };
            let store: Arc<dyn SnapshotStore> = Arc::new(S3Store::new(&cfg).unwrap());
            let (run, ..) = rt.block_on(snapshot_run(store, keys));
            let _ = writeln!(report);
            snapshot_table(&mut report, "S3 store (SeaweedFS on loopback)", &run);
            let _ = writeln!(
                report,
                "| restore of base + {} deltas | {:.0} ms | {} read |",
                run.layers - 1,
                ms(run.restore),
                run.restore_bytes
            );
        }
        Err(_) => {
            let _ = writeln!(
                report,
                "\n(S3 store skipped: RAMROD_S3_ENDPOINT is not set; `scripts/bench.sh` starts SeaweedFS.)"
            );
        }
    }

    print!("{report}");
    if !quick {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-reports");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("snapshot.md"), &report).unwrap();
        println!("written to target/bench-reports/snapshot.md");
    }
}
