//! The redb log store: openraft's storage Suite, crash safety, purge under
//! load, damaged files.

use openraft::testing::{StoreBuilder, Suite};
use ramrod::internals::log_store::{Durability, LogStore};
use ramrod::internals::raft::{StorageError, TypeConfig};
use ramrod::internals::snapshot::SnapshotConfig;
use ramrod::internals::state_machine::{KvStateMachine, open_in_dir};

/// Builds a log store and the real KV state machine per Suite case. All
/// state machines share one snapshot store (as nodes sharing an object
/// store do), each under its own group, so a snapshot built by one can be
/// installed by another.
struct Builder {
    snapshots: tempfile::TempDir,
    next: std::sync::atomic::AtomicU64,
}

impl StoreBuilder<TypeConfig, LogStore, KvStateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, KvStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LogStore::open(dir.path(), Durability::Durable).expect("open log store");
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sm, _) = open_in_dir(
            self.snapshots.path(),
            &format!("node-{n}"),
            SnapshotConfig::default(),
        )
        .await
        .expect("open state machine");
        Ok((dir, store, sm))
    }
}

/// openraft's own storage test suite, against our log store and state machine.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder {
        snapshots: tempfile::tempdir().unwrap(),
        next: Default::default(),
    })
    .unwrap();
}

use std::path::Path;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};
use ramrod::internals::log_store::{LogOptions, LogStoreError};
use ramrod::internals::raft::{Entry, LogId, Request, Vote};

use crate::support::{Rng, rt, run_then_kill};

fn entry(term: u64, index: u64, payload: Vec<u8>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Request::put(format!("k{index}"), payload)),
    }
}

fn entries(term: u64, range: std::ops::Range<u64>) -> Vec<Entry> {
    range
        .map(|i| entry(term, i, vec![(i % 251) as u8; 64]))
        .collect()
}

/// Waits for the background deletion of purged entries, failing after `limit`.
async fn wait_for_purge(store: &LogStore, limit: Duration) {
    let deadline = Instant::now() + limit;
    while store.purge_in_progress() {
        assert!(
            Instant::now() < deadline,
            "background purge did not finish within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks that the log in `dir` holds `floor..=last` with no hole.
fn check_contiguous(store: &LogStore) -> (u64, u64) {
    let last = store.last_log_id().map_or(0, |l| l.index);
    let floor = store.purged().map_or(1, |p| p.index + 1);
    let got = store.read(floor, last + 1).unwrap();
    assert_eq!(
        got.len() as u64,
        last + 1 - floor,
        "hole in {floor}..={last}"
    );
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.log_id.index, floor + i as u64);
    }
    (floor, last)
}

/// A child appends continuously and acknowledges each durable append; it is
/// killed with SIGKILL at random moments. After each kill, every acknowledged
/// entry, the vote and the purge point are intact, with no hole.
#[test]
fn kill9_keeps_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2024);
    let (mut acked, mut acked_purge, mut acked_term) = (0u64, 0u64, 0u64);
    // 24 rounds at least; more (up to 96) while the child has not yet
    // filled enough segments, which a loaded machine slows down.
    let enough = |acked: u64, purged: u64| acked * 200 > 40 * (64 << 10) && purged > 0;
    for round in 0..96 {
        if round >= 24 && enough(acked, acked_purge) {
            break;
        }
        let run = Duration::from_millis(20 + rng.below(250));
        for line in run_then_kill(env!("CARGO_BIN_EXE_log-crash-child"), dir.path(), run) {
            let (what, n) = line.split_once(' ').unwrap();
            let n: u64 = n.parse().unwrap();
            match what {
                "ACK" => acked = acked.max(n),
                "PURGED" => acked_purge = acked_purge.max(n),
                "VOTE" => acked_term = acked_term.max(n),
                other => panic!("unexpected line {other}"),
            }
        }

        let store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        assert!(
            store.index_rebuild().is_none(),
            "round {round}: a kill -9 is not damage: {:?}",
            store.index_rebuild()
        );
        store.verify_entries().unwrap();
        let (_, last) = check_contiguous(&store);
        assert!(
            last >= acked,
            "round {round}: acknowledged {acked}, log ends at {last}"
        );
        let purged = store.purged().map_or(0, |p| p.index);
        assert!(
            purged >= acked_purge,
            "round {round}: purged {purged} < acknowledged {acked_purge}"
        );
        let term = store.vote().map_or(0, |v| v.leader_id.term);
        assert!(
            term >= acked_term,
            "round {round}: vote term {term} < {acked_term}"
        );
    }
    assert!(
        acked > 1_000,
        "the child made too little progress to test anything: {acked}"
    );
    assert!(acked_purge > 0, "no purge was acknowledged");
    // 64 KiB segments: the kills also landed around segment changes.
    assert!(
        acked * 200 > 40 * (64 << 10),
        "too few segments were filled: {acked} entries"
    );
}

/// A large purge runs in the background while appends keep succeeding.
#[test]
fn appends_flow_during_a_large_purge() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        // Batches of 16, so the purge has thousands of index rows to delete.
        const N: u64 = 60_000;
        for start in (1..=N).step_by(16) {
            store
                .blocking_append(entries(1, start..start + 16))
                .await
                .unwrap();
        }
        let purge_to = store.read(N - 1_000, N - 999).unwrap()[0].log_id;
        let mut appender = store.clone();
        let writes = tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for i in 0..200 {
                let t = Instant::now();
                let at = N + 1 + i * 5;
                appender
                    .blocking_append(entries(1, at..at + 5))
                    .await
                    .unwrap();
                worst = worst.max(t.elapsed());
            }
            worst
        });
        store.purge(purge_to).await.unwrap();
        // The purge point is durable and reads respect it at once.
        assert!(store.read(1, 10).unwrap().is_empty());
        assert_eq!(store.read(1, N - 999).unwrap().len(), 0);
        let worst = writes.await.unwrap();
        wait_for_purge(&store, Duration::from_secs(60)).await;
        store.flush().await.unwrap();
        assert_eq!(store.stored_entries().unwrap(), 2_000);
        let stats = store.stats();
        assert_eq!(stats.first_index, N - 999);
        assert_eq!(stats.last_index, N + 1_000);

        assert_eq!(stats.entries, 2_000);
        check_contiguous(&store);
        eprintln!("longest append during the purge: {worst:?}");
    });
}

/// Log facts are maintained incrementally and survive a restart.
#[test]
fn log_facts_follow_appends_truncates_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        let s = store.stats();
        assert_eq!(
            (s.entries, s.bytes, s.purged, s.committed),
            (0, 0, None, None)
        );
        store.blocking_append(entries(1, 1..101)).await.unwrap();
        // Byte totals follow the index, which trails the callback by one
        // commit; flush waits for it.
        store.flush().await.unwrap();
        let s = store.stats();
        assert_eq!((s.first_index, s.last_index, s.entries), (1, 100, 100));
        assert!(s.bytes > 100 * 64 && s.append_rate > 0.0 && s.byte_rate > s.append_rate);
        let one = s.bytes / 100;

        store
            .truncate(store.read(91, 92).unwrap()[0].log_id)
            .await
            .unwrap();
        store
            .save_committed(Some(store.read(80, 81).unwrap()[0].log_id))
            .await
            .unwrap();
        store
            .purge(store.read(40, 41).unwrap()[0].log_id)
            .await
            .unwrap();
        store.flush().await.unwrap();
        let s = store.stats();
        assert_eq!(
            (s.first_index, s.last_index, s.entries, s.committed),
            (41, 90, 50, Some(80))
        );
        assert_eq!(store.last_log_id().unwrap().index, 90);
        wait_for_purge(&store, Duration::from_secs(10)).await;
        // Bytes follow the deletions.
        store.flush().await.unwrap();
        let kept = store.stats().bytes;
        assert!(
            kept.abs_diff(50 * one) <= 50 * one / 20,
            "{kept} vs {}",
            50 * one
        );
        let before = store.stats();
        drop(store);

        let store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        let s = store.stats();
        assert_eq!(
            (s.first_index, s.last_index, s.entries, s.committed, s.bytes),
            (
                before.first_index,
                before.last_index,
                before.entries,
                before.committed,
                before.bytes
            )
        );
        assert_eq!(store.vote(), None);
    });
}

/// Vote, committed id and purge point are durable across reopen.
#[test]
fn vote_and_pointers_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        store.save_vote(&Vote::new(7, 3)).await.unwrap();
        store.blocking_append(entries(7, 0..10)).await.unwrap();
        let c = store.read(5, 6).unwrap()[0].log_id;
        store.save_committed(Some(c)).await.unwrap();
        store.flush().await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(7, 3)));
        assert_eq!(store.read_committed().await.unwrap(), Some(c));
        assert_eq!(
            store
                .get_log_state()
                .await
                .unwrap()
                .last_log_id
                .unwrap()
                .index,
            9
        );
    });
}

fn open_err(dir: &Path) -> LogStoreError {
    LogStore::open(dir, Durability::Durable).expect_err("open must fail")
}

/// A missing directory, a file that is not a database, a database that is
/// not ours, and a damaged record are clear errors that name the file.
#[test]
fn bad_files_are_clear_errors() {
    let missing = Path::new("no/such/data-dir");
    let e = open_err(missing);
    assert!(
        matches!(e, LogStoreError::MissingDir(_)) && e.to_string().contains("no/such/data-dir"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(ramrod::internals::log_store::LOG_FILE),
        vec![0x5a; 8192],
    )
    .unwrap();
    let e = open_err(dir.path());
    assert!(e.to_string().contains("raft-log.redb"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join(ramrod::internals::log_store::LOG_FILE))
            .unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &str>::new("users"))
            .unwrap()
            .insert("a", "b")
            .unwrap();
        txn.commit().unwrap();
    }
    let e = open_err(dir.path());
    assert!(
        matches!(e, LogStoreError::Foreign { .. }) && e.to_string().contains("users"),
        "{e}"
    );
}

/// The segment files of a log store, in order.
fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(ramrod::internals::log_store::SEGMENT_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Flips one byte of the first segment file holding `needle`.
fn flip_in_segments(dir: &Path, needle: &[u8], delta: usize) -> std::path::PathBuf {
    for path in segment_files(dir) {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + delta] ^= 0x20;
            std::fs::write(&path, &bytes).unwrap();
            return path;
        }
    }
    panic!("payload not found in any segment");
}

const MARKER: &[u8] = b"RAMROD-MARKER-PAYLOAD-0123456789";

/// Appends 1..50, then a batch 50..60 holding a marker, then 60..70, each
/// batch durable.
async fn append_marked(store: &mut LogStore) {
    store.blocking_append(entries(1, 1..50)).await.unwrap();
    let mut list = vec![entry(1, 50, MARKER.to_vec())];
    list.extend(entries(1, 51..60));
    store.blocking_append(list).await.unwrap();
    store.blocking_append(entries(1, 60..70)).await.unwrap();
}

fn write_marked(dir: &Path) {
    rt().block_on(async {
        append_marked(&mut LogStore::open(dir, Durability::Durable).unwrap()).await;
    });
}

/// A flipped byte inside a stored batch is detected when it is read (after a
/// clean shutdown the batch is not rescanned at open).
#[test]
fn damaged_entry_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    write_marked(dir.path());
    let seg = flip_in_segments(dir.path(), MARKER, 3);
    let store = LogStore::open(dir.path(), Durability::Durable).unwrap();
    assert_eq!(store.read(1, 50).unwrap().len(), 49, "other batches read");
    assert_eq!(store.read(60, 70).unwrap().len(), 10, "other batches read");
    let e = store
        .read(1, 70)
        .expect_err("the damaged batch must not be returned");
    let msg = e.to_string();
    assert!(
        msg.contains(&seg.file_name().unwrap().to_string_lossy().to_string())
            && msg.contains("50..=59")
            && msg.contains("checksum"),
        "{msg}"
    );
}

/// Damage found while recovering: acknowledged data followed by a later
/// write is an error naming the segment; a torn last write is dropped.
#[test]
fn recovery_tells_damage_from_a_torn_tail() {
    // Leave the batches after the last durable checkpoint by killing the
    // writer's chance to checkpoint: copy the files while the store is open.
    let crashed = |dir: &Path| {
        let copy = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let mut store = LogStore::open(dir, Durability::Durable).unwrap();
            append_marked(&mut store).await;
            copy_dir(dir, copy.path());
        });
        copy
    };
    // Damage in the middle batch, with a later batch after it.
    let src = tempfile::tempdir().unwrap();
    let copy = crashed(src.path());
    let seg = flip_in_segments(copy.path(), MARKER, 3);
    let e = open_err(copy.path());
    let msg = e.to_string();
    assert!(
        msg.contains(&seg.file_name().unwrap().to_string_lossy().to_string())
            && msg.contains("damaged")
            && msg.contains("checksum"),
        "{msg}"
    );

    // Damage in the last batch: a write that was never acknowledged.
    let src = tempfile::tempdir().unwrap();
    let copy = crashed(src.path());
    let (seg, mut bytes, end) = segment_files(copy.path())
        .into_iter()
        .rev()
        .find_map(|p| {
            let b = std::fs::read(&p).unwrap();
            let end = b.iter().rposition(|&x| x != 0)?;
            Some((p, b, end))
        })
        .expect("a segment with data");
    bytes[end] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let store = LogStore::open(copy.path(), Durability::Durable).unwrap();
    assert_eq!(store.last_log_id().unwrap().index, 59, "torn batch dropped");
    check_contiguous(&store);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A purge deletes whole segment files below the purge point, and the log
/// reopens with exactly the retained entries.
#[test]
fn purge_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes: 64 << 10,
        ..LogOptions::default()
    };
    rt().block_on(async {
        let mut store = LogStore::open_with(dir.path(), options).unwrap();
        for start in (1..10_000).step_by(10) {
            store
                .blocking_append(entries(1, start..start + 10))
                .await
                .unwrap();
        }
        let before = segment_files(dir.path()).len();
        assert!(before > 8, "{before} segments");
        store
            .purge(store.read(9_000, 9_001).unwrap()[0].log_id)
            .await
            .unwrap();
        wait_for_purge(&store, Duration::from_secs(10)).await;
        store.flush().await.unwrap();
        // Files are unlinked off the append path: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = segment_files(dir.path()).len();
        while after > 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            after = segment_files(dir.path()).len();
        }
        assert!(after <= 4, "{before} -> {after} segments");
        assert_eq!(store.stored_entries().unwrap(), 1_000);
        assert_eq!(store.stats().entries, 1_000);
        let bytes = store.stats().bytes;
        drop(store);
        let store = LogStore::open_with(dir.path(), options).unwrap();
        assert_eq!(check_contiguous(&store), (9_001, 10_000));
        assert_eq!(store.stats().bytes, bytes);
    });
}

/// An append whose first index is at or below the last one replaces the log
/// from that index on (Raft: entries after a replaced one are invalid).
#[test]
fn overlapping_append_replaces_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        store.blocking_append(entries(1, 1..12)).await.unwrap();
        store.blocking_append(entries(1, 12..30)).await.unwrap();
        // Term 2 from 5: the tail of one batch and all of the next go.
        store.blocking_append(entries(2, 5..20)).await.unwrap();
        let check = |store: &LogStore| {
            let got = store.read(1, 40).unwrap();
            assert_eq!(got.len(), 19);
            for e in &got {
                let want = if e.log_id.index >= 5 { 2 } else { 1 };
                assert_eq!(e.log_id.leader_id.term, want, "entry {}", e.log_id.index);
            }
            assert_eq!(store.last_log_id().unwrap().index, 19);
        };
        check(&store);
        store.flush().await.unwrap();
        assert_eq!(store.stored_entries().unwrap(), 19);
        let bytes = store.stats().bytes;
        drop(store);
        let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        check(&store);
        assert_eq!(store.stats().bytes, bytes);
        // Truncating inside a batch keeps its head.
        let at = store.read(7, 8).unwrap()[0].log_id;
        store.truncate(at).await.unwrap();
        assert_eq!(store.read(1, 30).unwrap().len(), 6);
        assert_eq!(store.last_log_id().unwrap().index, 6);
    });
}

/// What a log store says about itself: vote, purge point, last log id,
/// how many entries it holds and a hash of them (log ids and payloads).
fn snapshot_of(store: &mut LogStore) -> (Option<Vote>, Option<LogId>, Option<LogId>, usize, u32) {
    rt().block_on(async {
        let vote = store.read_vote().await.unwrap();
        let state = store.get_log_state().await.unwrap();
        let from = state.last_purged_log_id.map_or(0, |l| l.index + 1);
        let to = state.last_log_id.map_or(0, |l| l.index + 1);
        let held = store.read(from, to).unwrap();
        let hash = held.iter().fold(0, |h, e| {
            crc32c::crc32c_append(h, &serde_json::to_vec(&(e.log_id, &e.payload)).unwrap())
        });
        (
            vote,
            state.last_purged_log_id,
            state.last_log_id,
            held.len(),
            hash,
        )
    })
}

/// A store with a vote, entries, a truncation (and new entries in a later
/// term over the cut), a purge, and a second vote after it.
fn write_history(dir: &Path) {
    rt().block_on(async {
        let mut store = LogStore::open_with(
            dir,
            LogOptions {
                // Small segments: the history spans several, and the purge
                // deletes some.
                segment_bytes: 64 << 10,
                ..LogOptions::default()
            },
        )
        .unwrap();
        store.save_vote(&Vote::new(7, 3)).await.unwrap();
        for start in (1..400).step_by(50) {
            store
                .blocking_append(entries(7, start..start + 50))
                .await
                .unwrap();
        }
        store
            .truncate(store.read(380, 381).unwrap()[0].log_id)
            .await
            .unwrap();
        store.save_vote(&Vote::new(8, 2)).await.unwrap();
        store.blocking_append(entries(8, 380..390)).await.unwrap();
        store
            .purge(store.read(200, 201).unwrap()[0].log_id)
            .await
            .unwrap();
        wait_for_purge(&store, Duration::from_secs(10)).await;
        store.save_vote(&Vote::new_committed(8, 2)).await.unwrap();
        store.flush().await.unwrap();
    });
}

/// A damaged or missing index is rebuilt from the segments: the same vote,
/// purge point, last log id and entries (the truncated ones stay gone),
/// the damaged file kept aside, and the store goes on working. Damage to a
/// table name (redb panics on some) is among the cases.
#[test]
fn a_damaged_index_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    write_history(dir.path());
    let file = dir.path().join(ramrod::internals::log_store::LOG_FILE);
    let clean = std::fs::read(&file).unwrap();
    let want = snapshot_of(&mut LogStore::open(dir.path(), Durability::Durable).unwrap());
    assert_eq!(want.0, Some(Vote::new_committed(8, 2)));
    assert_eq!(want.1.unwrap().index, 200);
    assert_eq!(
        want.2.unwrap(),
        LogId::new(CommittedLeaderId::new(8, 1), 389)
    );
    assert_eq!(want.3, 189);
    let clean_segments: Vec<(std::path::PathBuf, Vec<u8>)> = segment_files(dir.path())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let restore = || {
        for p in segment_files(dir.path()) {
            std::fs::remove_file(p).unwrap();
        }
        for (p, b) in &clean_segments {
            std::fs::write(p, b).unwrap();
        }
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.to_string_lossy().contains(".damaged-") {
                std::fs::remove_file(p).unwrap();
            }
        }
    };

    let mut damages: Vec<(String, Option<Vec<u8>>)> = vec![
        ("missing".into(), None),
        ("garbage".into(), Some(vec![0x5a; clean.len()])),
        (
            "cut in half".into(),
            Some(clean[..clean.len() / 2].to_vec()),
        ),
    ];
    for name in [
        &b"ramrod_log_index"[..],
        b"ramrod_log_segments",
        b"ramrod_log_meta",
    ] {
        let mut at = 0;
        while let Some(p) = clean[at..].windows(name.len()).position(|w| w == name) {
            let pos = at + p + name.len() / 2;
            let mut bytes = clean.clone();
            bytes[pos] ^= 0x20;
            damages.push((
                format!("a flipped byte in {}", String::from_utf8_lossy(name)),
                Some(bytes),
            ));
            at = pos + 1;
        }
    }
    assert!(
        damages.len() >= 6,
        "the table names were not found in the index file"
    );
    let mut rebuilt = 0;
    for (what, bytes) in &damages {
        restore();
        match bytes {
            Some(b) => std::fs::write(&file, b).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        let mut store = LogStore::open(dir.path(), Durability::Durable)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if let Some(r) = store.index_rebuild() {
            rebuilt += 1;
            assert!(r.damaged.exists(), "{what}: the damaged file is kept");
        }
        assert_eq!(snapshot_of(&mut store), want, "{what}");
        // It goes on: appends, and an ordinary reopen.
        rt().block_on(store.blocking_append(entries(8, 390..400)))
            .unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
        assert!(store.index_rebuild().is_none(), "{what}: rebuilt again");
        assert_eq!(snapshot_of(&mut store).2.unwrap().index, 399, "{what}");
    }
    // redb keeps a second copy of some of what was damaged: not every
    // flip needs a rebuild, but most do.
    assert!(rebuilt >= 4, "only {rebuilt} of {} rebuilt", damages.len());

    // Damaged acknowledged data in a segment as well: a clear error naming
    // the segment, and the damaged index is kept for a look.
    restore();
    std::fs::write(&file, vec![0x5a; clean.len()]).unwrap();
    // The segment holding the most: its first records have later groups
    // after them, so damage there is to acknowledged data.
    let (seg, bytes) = clean_segments
        .iter()
        .max_by_key(|(_, b)| b.iter().filter(|&&x| x != 0).count())
        .unwrap();
    let mut bad = bytes.clone();
    bad[30] ^= 0x01;
    std::fs::write(seg, &bad).unwrap();
    let e = open_err(dir.path());
    assert!(
        e.to_string()
            .contains(&seg.file_name().unwrap().to_string_lossy().to_string()),
        "{e}"
    );
}

/// A damaged index is rebuilt only from segments that carry the vote: a
/// store with no segments (or someone else's database file) stays an
/// error, and another process holding the index is "in use", not damage.
#[test]
fn an_index_in_use_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), Durability::Durable).unwrap();
    let e = open_err(dir.path());
    assert!(matches!(e, LogStoreError::InUse(_)), "{e}");
    assert!(e.to_string().contains("another process"), "{e}");
    drop(store);
    LogStore::open(dir.path(), Durability::Durable).unwrap();
}

/// Storage that fails (failpoints at the `fdatasync` of appends, at the
/// index commit and at segment creation): the store reports the failure
/// and stops writing (every later write fails too, rather than some
/// silently not being durable); reopened on a disk that works, every append
/// it acknowledged is there.
#[test]
fn a_failing_disk_loses_no_acknowledged_append() {
    use ramrod::failpoint;
    let rt = rt();
    // Small segments: a segment is created every few dozen appends.
    let small = LogOptions {
        segment_bytes: 64 << 10,
        ..LogOptions::default()
    };
    for point in ["log.sync", "log.index-commit", "log.segment-create"] {
        let dir = tempfile::tempdir().unwrap();
        let acked = rt.block_on(async {
            let mut store = LogStore::open_with(dir.path(), small).unwrap();
            let mut acked = 0;
            for start in (1..4_000).step_by(10) {
                if start == 201 {
                    failpoint::arm(point, dir.path());
                }
                match store.blocking_append(entries(1, start..start + 10)).await {
                    Ok(()) => acked = start + 9,
                    Err(e) => {
                        assert!(start >= 201, "{point}: failed before it was armed: {e}");
                        assert!(e.to_string().contains(point), "{point}: {e}");
                        break;
                    }
                }
            }
            assert!(
                (200..3_999).contains(&acked),
                "{point}: acknowledged {acked}"
            );
            // Stopped: nothing more is accepted.
            let again = store
                .blocking_append(entries(1, acked + 1..acked + 2))
                .await;
            assert!(
                again.is_err(),
                "{point}: a write after the failure succeeded"
            );
            acked
        });
        // A store that cannot make its segment does not open.
        if point == "log.segment-create" {
            let e = LogStore::open_with(dir.path(), small).unwrap_err();
            assert!(e.to_string().contains(point), "{e}");
        }
        failpoint::disarm(point, dir.path());
        let store = LogStore::open_with(dir.path(), small).unwrap();
        let (_, last) = check_contiguous(&store);
        assert!(
            last >= acked,
            "{point}: acknowledged {acked}, the log ends at {last}"
        );
        drop(store);
        // And it goes on.
        rt.block_on(async {
            let mut store = LogStore::open(dir.path(), Durability::Durable).unwrap();
            let (_, last) = check_contiguous(&store);
            store
                .blocking_append(entries(1, last + 1..last + 11))
                .await
                .unwrap();
        });
    }
}

/// Power loss, which kill -9 cannot show: the store runs on a simulated
/// disk that keeps unsynced bytes apart (segments and the redb index), the
/// power goes at a random sync, and what was not synced is kept, torn at a
/// sector or lost, write by write. Reopened, the store holds every entry,
/// vote and purge point it acknowledged, needs no rebuild, and goes on from
/// there, round after round on the same directory.
#[test]
fn power_loss_keeps_every_acknowledged_entry_vote_and_purge_point() {
    use ramrod::powerloss;
    const ROUNDS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let small = LogOptions {
        segment_bytes: 64 << 10,
        ..LogOptions::default()
    };
    let rt = rt();
    let mut rng = Rng::new(7);
    // What was acknowledged: the term of every entry up to `last`, the
    // vote's term, the purge point.
    let mut terms: std::collections::BTreeMap<u64, u64> = Default::default();
    let (mut vote_term, mut purged) = (1u64, 0u64);
    let (mut cuts, mut torn, mut lost, mut acked_ops) = (0, 0, 0, 0u64);
    for round in 0..ROUNDS {
        // A truncation that failed when the power went: done or not.
        let mut unsure_from: Option<u64> = None;
        powerloss::arm(dir.path(), 1 + rng.below(40));
        if let Ok(mut store) = LogStore::open_with(dir.path(), small) {
            rt.block_on(async {
                for _ in 0..40 {
                    let last = terms.keys().next_back().copied().unwrap_or(purged);
                    let ok = match rng.below(10) {
                        0 => {
                            let v = Vote::new(vote_term + 1, 1);
                            let ok = store.save_vote(&v).await.is_ok();
                            if ok {
                                vote_term += 1;
                            }
                            ok
                        }
                        1 if last > purged + 20 => {
                            let to = purged + 1 + rng.below(last - purged - 10);
                            let id = LogId::new(CommittedLeaderId::new(terms[&to], 1), to);
                            let ok = store.purge(id).await.is_ok();
                            if ok {
                                purged = to;
                                terms.retain(|&i, _| i > to);
                            }
                            ok
                        }
                        2 if last > purged + 5 => {
                            // A new leader's entries over the last few.
                            let from = last - rng.below(4);
                            let id = LogId::new(CommittedLeaderId::new(terms[&from], 1), from);
                            let ok = store.truncate(id).await.is_ok();
                            if ok {
                                terms.retain(|&i, _| i < from);
                            } else {
                                // Its fate is unknown, as any failed write's.
                                unsure_from = Some(from);
                            }
                            ok
                        }
                        _ => {
                            let n = 1 + rng.below(30);
                            let term = vote_term;
                            let ok = store
                                .blocking_append(entries(term, last + 1..last + 1 + n))
                                .await
                                .is_ok();
                            if ok {
                                for i in last + 1..last + 1 + n {
                                    terms.insert(i, term);
                                }
                            }
                            ok
                        }
                    };
                    if !ok {
                        break;
                    }
                    acked_ops += 1;
                }
            });
            drop(store);
        }
        let cut = powerloss::cut(dir.path(), rng.next_u64()).unwrap();
        cuts += 1;
        torn += cut.torn;
        lost += cut.lost;

        // Back on: everything acknowledged is there.
        let store =
            LogStore::open_with(dir.path(), small).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            store.index_rebuild().is_none(),
            "round {round}: {:?}",
            store.index_rebuild()
        );
        store.verify_entries().unwrap();
        let have_vote = store.vote().map_or(1, |v| v.leader_id.term);
        assert!(
            have_vote >= vote_term,
            "round {round}: vote {have_vote} < acknowledged {vote_term}"
        );
        let have_purged = store.purged().map_or(0, |p| p.index);
        assert!(
            have_purged >= purged,
            "round {round}: purged {have_purged} < {purged}"
        );
        if let Some((&last, _)) = terms.iter().next_back() {
            let got = store.read(purged + 1, last + 1).unwrap();
            for e in &got {
                if let Some(&t) = terms.get(&e.log_id.index) {
                    assert_eq!(
                        e.log_id.leader_id.term, t,
                        "round {round}: entry {}",
                        e.log_id.index
                    );
                }
            }
            let from = have_purged.max(purged) + 1;
            let sure_end = unsure_from.unwrap_or(u64::MAX).max(from);
            let want = terms.range(from..sure_end).count();
            let counted = |lo: u64, hi: u64| {
                got.iter()
                    .filter(|e| {
                        (lo..hi).contains(&e.log_id.index) && terms.contains_key(&e.log_id.index)
                    })
                    .count()
            };
            let got_acked = counted(from, sure_end);
            // After an unsure truncation: all of what it would cut, or none.
            let tail = counted(sure_end, u64::MAX);
            assert!(
                tail == 0 || tail == terms.range(sure_end..).count(),
                "round {round}: part of the entries after an unsure truncation at {sure_end}"
            );
            let have: std::collections::BTreeSet<u64> =
                got.iter().map(|e| e.log_id.index).collect();
            let missing: Vec<u64> = terms
                .range(from..sure_end)
                .map(|(i, _)| *i)
                .filter(|i| !have.contains(i))
                .collect();
            assert_eq!(
                got_acked,
                want,
                "round {round}: acknowledged entries missing: {missing:?}; store purged {have_purged} last {:?}; model purged {purged} last {last}; cut {cut:?}",
                store.last_log_id()
            );
        }
        // Go on from what the store has now (it may hold writes that were
        // not acknowledged but reached the disk).
        vote_term = vote_term.max(have_vote);
        purged = have_purged;
        terms.clear();
        let last = store.last_log_id().map_or(purged, |l| l.index);
        for e in store.read(purged + 1, last + 1).unwrap() {
            terms.insert(e.log_id.index, e.log_id.leader_id.term);
        }
        drop(store);
    }
    assert_eq!(cuts, ROUNDS);
    assert!(
        acked_ops > ROUNDS,
        "too little was acknowledged to test anything: {acked_ops}"
    );
    assert!(
        torn > 0 && lost > 0,
        "no unsynced write was torn ({torn}) or lost ({lost})"
    );
    println!(
        "power loss: {ROUNDS} cuts, {acked_ops} acknowledged operations, {torn} torn and {lost} lost unsynced writes"
    );
}
