//! Incremental snapshots: accuracy (property-based), every kind of damage on
//! both stores, kill -9 while writing, and applying while a snapshot is
//! written. (Stores and collection: `snapshot_store`.)
//!
//! The S3 cases run against the server in `RAMROD_S3_ENDPOINT` (bucket
//! `RAMROD_S3_BUCKET`, credentials in the AWS variables); `scripts/test.sh`
//! starts SeaweedFS and sets them, and sets `RAMROD_REQUIRE_S3=1` so that a
//! missing server fails the run instead of skipping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};
use proptest::prelude::*;
use ramrod::internals::raft::{Command, Compare, Entry, LogId, Request, Target, Txn, TxnOp};
use ramrod::internals::snapshot::{
    DirStore, Manifest, S3Store, SnapshotConfig, SnapshotKind, SnapshotStore, Snapshots,
};
use ramrod::internals::state_machine::{KvStateMachine, decode_record};

use crate::support::{Rng, rt, run_then_kill};

/// What the model holds per key: the value and its revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: u64,
    pub(crate) mod_revision: u64,
    pub(crate) version: u64,
}

pub(crate) type Model = BTreeMap<Vec<u8>, Rec>;

/// The model's put of `key` at revision `index`.
fn model_put(model: &mut Model, key: &[u8], value: &[u8], index: u64) {
    let (create_revision, version) = model
        .get(key)
        .map_or((index, 1), |r| (r.create_revision, r.version + 1));
    model.insert(
        key.to_vec(),
        Rec {
            value: value.to_vec(),
            create_revision,
            mod_revision: index,
            version,
        },
    );
}

/// Small segments and blocks, so a few hundred keys span many of each;
/// everything retained; no grace period.
pub(crate) fn small() -> SnapshotConfig {
    SnapshotConfig {
        segment_bytes: 2_048,
        block_bytes: 512,
        retain: 1_000,
        max_chain: 1_000,
        gc_grace: Duration::ZERO,
    }
}

/// A store under test, with what keeps it alive.
pub(crate) struct TestStore {
    pub(crate) label: &'static str,
    pub(crate) store: Arc<dyn SnapshotStore>,
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn dir_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    TestStore {
        label: "dir",
        store: Arc::new(DirStore::open(dir.path()).unwrap()),
        _dir: Some(dir),
    }
}

/// A fresh prefix in the S3 test bucket, if a server is configured.
fn s3_store() -> Option<TestStore> {
    let cfg = crate::support::s3_test_config()?;
    Some(TestStore {
        label: "s3",
        store: Arc::new(S3Store::new(&cfg).unwrap()),
        _dir: None,
    })
}

pub(crate) fn all_stores() -> Vec<TestStore> {
    std::iter::once(dir_store()).chain(s3_store()).collect()
}

pub(crate) async fn open(
    store: &Arc<dyn SnapshotStore>,
    group: &str,
    cfg: SnapshotConfig,
) -> KvStateMachine {
    let snaps = Arc::new(Snapshots::new(store.clone(), group, cfg));
    KvStateMachine::open(snaps).await.unwrap().0
}

/// Applies `commands` as the entry at `index` and mirrors them in `model`.
pub(crate) async fn apply(
    sm: &mut KvStateMachine,
    model: &mut Model,
    index: u64,
    commands: Vec<Command>,
) {
    for c in &commands {
        match c {
            Command::Put { key, value } => model_put(model, key, value, index),
            Command::Delete { key } => {
                model.remove(key);
            }
            Command::DeleteRange { start, end } => {
                if start < end {
                    let doomed: Vec<_> = model
                        .range(start.clone()..end.clone())
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        model.remove(&k);
                    }
                }
            }
            Command::DeletePrefix { prefix } => model.retain(|k, _| !k.starts_with(prefix)),
            Command::Txn(txn) => {
                let holds = txn.compares.iter().all(|c| {
                    let now = model.get(&c.key).map_or(0, |r| r.mod_revision);
                    match c.target {
                        Target::ModRevision(want) => now == want,
                        Target::Exists(want) => (now != 0) == want,
                        _ => unreachable!("the histories compare mod revisions and absence"),
                    }
                });
                for op in if holds { &txn.success } else { &txn.failure } {
                    match op {
                        TxnOp::Put { key, value } => model_put(model, key, value, index),
                        TxnOp::Delete { key } => {
                            model.remove(key);
                        }
                        _ => unreachable!("the histories' transactions put and delete"),
                    }
                }
            }
            Command::SetPolicy(_) | Command::RollOut(_) => {
                unreachable!("the model's histories have no rollouts")
            }
        }
    }
    let e = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request { commands }),
    };
    sm.apply([e]).await.unwrap();
}

fn key(rng: &mut Rng) -> Vec<u8> {
    format!("k/{}/{}", rng.below(4), rng.below(64)).into_bytes()
}

pub(crate) fn random_commands(rng: &mut Rng, n: usize) -> Vec<Command> {
    (0..n)
        .map(|_| match rng.below(20) {
            0..=13 => Command::Put {
                key: key(rng),
                value: vec![rng.below(256) as u8; rng.below(60) as usize],
            },
            14..=16 => Command::Delete { key: key(rng) },
            // A guarded write: on a key's mod revision (often the current
            // one, as a save does: the model decides) or its absence.
            17 => {
                let k = key(rng);
                let compare = if rng.below(2) == 0 {
                    Compare::absent(k.clone())
                } else {
                    Compare::mod_revision(k.clone(), rng.below(40))
                };
                Command::Txn(Txn {
                    compares: vec![compare],
                    success: vec![TxnOp::Put {
                        key: k.clone(),
                        value: vec![7; rng.below(30) as usize],
                    }],
                    failure: vec![TxnOp::Delete { key: key(rng) }],
                })
            }
            18 => Command::DeletePrefix {
                prefix: format!("k/{}/", rng.below(4)).into_bytes(),
            },
            _ => {
                let (a, b) = (key(rng), key(rng));
                Command::DeleteRange {
                    start: a.clone().min(b.clone()),
                    end: a.max(b),
                }
            }
        })
        .collect()
}

/// Whether a restored state holds exactly the model's keys, values and
/// revisions.
pub(crate) fn same(state: &ramrod::internals::snapshot::KvMap, model: &Model) -> bool {
    state.len() == model.len()
        && state.iter().zip(model.iter()).all(|((k, v), (mk, m))| {
            let kv = decode_record(k, v);
            k[..] == mk[..]
                && kv.value[..] == m.value[..]
                && (kv.create_revision, kv.mod_revision, kv.version)
                    == (m.create_revision, m.mod_revision, m.version)
        })
}

/// Runs a random history with snapshots of random kinds at random points,
/// then restores every snapshot and compares it with the model at that point.
async fn history_restores_exactly(store: &Arc<dyn SnapshotStore>, seed: u64, steps: usize) {
    let mut rng = Rng::new(seed);
    let mut sm = open(store, "h", small()).await;
    let mut model = Model::new();
    let mut taken: Vec<(Manifest, Model)> = Vec::new();
    for index in 1..=steps as u64 {
        let n = 1 + rng.below(12) as usize;
        apply(&mut sm, &mut model, index, random_commands(&mut rng, n)).await;
        // Random points, plus the middle and the end so every history has some.
        if rng.below(6) == 0 || index == steps as u64 / 2 || index == steps as u64 {
            let kind = if rng.below(3) == 0 {
                SnapshotKind::Full
            } else {
                SnapshotKind::Incremental
            };
            let m = sm.build(Some(kind)).await.unwrap();
            assert_eq!(m.last_log_id.unwrap().index, index);
            taken.push((m, model.clone()));
        }
    }
    assert!(taken.len() >= 2, "seed {seed}: {} snapshots", taken.len());
    let snaps = sm.snapshots().clone();
    for (m, model_then) in &taken {
        let name = format!("h/{}", m.id);
        let loaded = snaps.load(&name, m).await.unwrap();
        assert!(
            same(&loaded.state, model_then),
            "seed {seed}: snapshot {} ({} after {} deltas) differs from the model",
            m.id,
            m.kind,
            m.deltas.len()
        );
        assert_eq!(loaded.state.len() as u64, m.keys);
    }
    // A restart restores the newest one.
    let (sm2, report) = KvStateMachine::open(snaps).await.unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let (last, model_last) = taken.last().unwrap();
    assert_eq!(sm2.last_applied(), last.last_log_id);
    assert_eq!(sm2.len(), model_last.len());
    assert_eq!(sm2.state_hash(), last.state_hash);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random histories on the local store: every snapshot restores exactly.
    #[test]
    fn random_histories_restore_exactly(seed in any::<u64>(), steps in 30usize..120) {
        let s = dir_store();
        rt().block_on(history_restores_exactly(&s.store, seed, steps));
    }
}

/// The same property on both stores (the S3 one when configured).
#[test]
fn history_restores_exactly_on_every_store() {
    let rt = rt();
    for s in all_stores() {
        eprintln!("store {}", s.label);
        rt.block_on(history_restores_exactly(&s.store, 7, 150));
    }
}

/// Three snapshots: full S1, incremental S2, incremental S3, with the model
/// state at S2.
async fn three_snapshots(store: &Arc<dyn SnapshotStore>) -> (Manifest, Manifest, Manifest, Model) {
    async fn steps(
        sm: &mut KvStateMachine,
        model: &mut Model,
        rng: &mut Rng,
        index: &mut u64,
        n: u64,
    ) {
        for _ in 0..n {
            *index += 1;
            let cmds = random_commands(rng, 8);
            apply(sm, model, *index, cmds).await;
        }
    }
    let mut rng = Rng::new(11);
    let mut sm = open(store, "c", small()).await;
    let mut model = Model::new();
    let mut index = 0;
    steps(&mut sm, &mut model, &mut rng, &mut index, 40).await;
    let s1 = sm.build(Some(SnapshotKind::Full)).await.unwrap();
    steps(&mut sm, &mut model, &mut rng, &mut index, 10).await;
    let s2 = sm.build(Some(SnapshotKind::Incremental)).await.unwrap();
    let at_s2 = model.clone();
    steps(&mut sm, &mut model, &mut rng, &mut index, 10).await;
    let s3 = sm.build(Some(SnapshotKind::Incremental)).await.unwrap();
    assert_eq!(s3.deltas.len(), 2);
    (s1, s2, s3, at_s2)
}

/// Replaces segment `name` with `bytes` (stores never overwrite on their own).
async fn replace_segment(store: &Arc<dyn SnapshotStore>, name: &str, bytes: Vec<u8>) {
    store.delete_segment(name).await.unwrap();
    store.put_segment(name, Bytes::from(bytes)).await.unwrap();
}

async fn replace_manifest(store: &Arc<dyn SnapshotStore>, name: &str, bytes: Vec<u8>) {
    store.delete_manifest(name).await.unwrap();
    store.put_manifest(name, Bytes::from(bytes)).await.unwrap();
}

/// Every kind of damage to the newest snapshot is detected, reported with
/// what was wrong, and restore falls back to the previous one; damage to the
/// shared base leaves nothing loadable, and nothing is loaded.
#[test]
fn damaged_snapshots_are_detected_and_skipped() {
    let rt = rt();
    let cases: &[(&str, &str)] = &[
        ("flipped byte", "does not match the name"),
        ("truncated segment", "does not match the name"),
        ("missing segment", "does not exist"),
        ("garbage manifest", "not a ramrod snapshot manifest"),
        ("unknown manifest version", "unknown manifest version 9"),
        ("unknown segment version", "unknown segment version 3"),
        ("format 1 segment", "written before keys carried revisions"),
    ];
    for s in all_stores() {
        for (case, expect) in cases {
            // A fresh store per case.
            let fresh = if s.label == "dir" {
                dir_store()
            } else {
                s3_store().unwrap()
            };
            let store = &fresh.store;
            rt.block_on(async {
                let (_s1, s2, s3, at_s2) = three_snapshots(store).await;
                let newest = s3.deltas.last().unwrap().segments[0].name.clone();
                let m3 = format!("c/{}", s3.id);
                match *case {
                    "flipped byte" => {
                        let mut b = store.get_segment(&newest).await.unwrap().to_vec();
                        let at = b.len() / 2;
                        b[at] ^= 0x01;
                        replace_segment(store, &newest, b).await;
                    }
                    "truncated segment" => {
                        let b = store.get_segment(&newest).await.unwrap();
                        replace_segment(store, &newest, b[..b.len() - 7].to_vec()).await;
                    }
                    "missing segment" => store.delete_segment(&newest).await.unwrap(),
                    "garbage manifest" => {
                        replace_manifest(store, &m3, b"{\"not\": \"a manifest\"}".to_vec()).await
                    }
                    "unknown manifest version" => {
                        let mut b = s3.encode();
                        b[4] = 9;
                        replace_manifest(store, &m3, b).await;
                    }
                    "unknown segment version" | "format 1 segment" => {
                        // A well-formed segment of another version, under
                        // its own hash, referenced by a valid manifest.
                        let old = store.get_segment(&newest).await.unwrap().to_vec();
                        let mut b = old.clone();
                        b[4] = if *case == "format 1 segment" { 1 } else { 3 };
                        let crc = crc32c::crc32c(&b[..20]);
                        b[20..24].copy_from_slice(&crc.to_le_bytes());
                        let name = ramrod::internals::snapshot::segment::name_of(&b);
                        store.put_segment(&name, Bytes::from(b)).await.unwrap();
                        let mut m = s3.clone();
                        m.deltas.last_mut().unwrap().segments[0].name = name;
                        replace_manifest(store, &m3, m.encode()).await;
                    }
                    other => unreachable!("{other}"),
                }
                let snaps = Arc::new(Snapshots::new(store.clone(), "c", small()));
                let report = snaps.restore_latest().await.unwrap();
                let loaded = report.loaded.as_ref().unwrap_or_else(|| {
                    panic!("{} {case}: nothing restored: {:?}", s.label, report.skipped)
                });
                assert_eq!(
                    loaded.manifest.id, s2.id,
                    "{} {case}: fell back to S2",
                    s.label
                );
                assert!(same(&loaded.state, &at_s2), "{} {case}: S2 state", s.label);
                assert_eq!(report.skipped.len(), 1, "{} {case}", s.label);
                let (name, why) = &report.skipped[0];
                assert_eq!(name, &m3);
                assert!(why.contains(expect), "{} {case}: {why}", s.label);
            });
        }
        // Damage to the base that every snapshot shares: nothing is loaded.
        let fresh = if s.label == "dir" {
            dir_store()
        } else {
            s3_store().unwrap()
        };
        rt.block_on(async {
            let store = &fresh.store;
            let (s1, ..) = three_snapshots(store).await;
            let base = s1.base.segments[0].name.clone();
            let mut b = store.get_segment(&base).await.unwrap().to_vec();
            b[30] ^= 0x80;
            replace_segment(store, &base, b).await;
            let snaps = Arc::new(Snapshots::new(store.clone(), "c", small()));
            let (sm, report) = KvStateMachine::open(snaps).await.unwrap();
            assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);
            assert!(report.loaded.is_none());
            assert!(sm.is_empty() && sm.last_applied().is_none());
        });
    }
}

/// A snapshot of format 1 (written before keys carried revisions) is not
/// damage to skip past: the state machine refuses to open on it, naming
/// the format, instead of starting without that state.
#[test]
fn a_format_1_snapshot_stops_the_open_with_a_clear_message() {
    rt().block_on(async {
        let s = dir_store();
        let (_s1, _s2, s3, _) = three_snapshots(&s.store).await;
        let mut b = s3.encode();
        b[4] = 1;
        replace_manifest(&s.store, &format!("c/{}", s3.id), b).await;
        let snaps = Arc::new(Snapshots::new(s.store.clone(), "c", small()));
        let e = KvStateMachine::open(snaps).await.unwrap_err().to_string();
        assert!(e.contains("format 1") && e.contains(&s3.id), "{e}");
        assert!(e.contains("catch up from its cluster"), "{e}");
    });
}

/// Applying goes on while a full snapshot of a large state is written, and
/// the snapshot holds exactly the state at the moment it began.
#[test]
fn applies_continue_during_a_full_snapshot() {
    let rt = rt();
    rt.block_on(async {
        let s = dir_store();
        let cfg = SnapshotConfig {
            segment_bytes: 256 << 10,
            block_bytes: 32 << 10,
            ..small()
        };
        let mut sm = open(&s.store, "a", cfg).await;
        let mut model = Model::new();
        let big: Vec<Command> = (0..100_000)
            .map(|i| Command::Put {
                key: format!("big/{i:07}").into_bytes(),
                value: vec![(i % 251) as u8; 100],
            })
            .collect();
        apply(&mut sm, &mut model, 1, big).await;
        let at_start = model.clone();
        let builder = sm.clone();
        let build = tokio::spawn(async move { builder.build(Some(SnapshotKind::Full)).await });
        // Wait until the build has frozen the state (the dirty set empties).
        while sm.stats().dirty_keys > 0 {
            tokio::task::yield_now().await;
        }
        let mut during = 0u64;
        let mut index = 1;
        while !build.is_finished() {
            index += 1;
            apply(
                &mut sm,
                &mut model,
                index,
                vec![Command::Put {
                    key: format!("new/{index}").into_bytes(),
                    value: b"x".to_vec(),
                }],
            )
            .await;
            during += 1;
            tokio::task::yield_now().await;
        }
        let m = build.await.unwrap().unwrap();
        assert!(
            during > 0,
            "no entry was applied while the snapshot was written"
        );
        assert_eq!(m.last_log_id.unwrap().index, 1);
        let loaded = sm
            .snapshots()
            .load(&format!("a/{}", m.id), &m)
            .await
            .unwrap();
        assert!(same(&loaded.state, &at_start));
        // The entries applied meanwhile are the next incremental snapshot.
        let m2 = sm.build(Some(SnapshotKind::Incremental)).await.unwrap();
        assert_eq!(m2.deltas.last().unwrap().records(), during);
        eprintln!("{during} entries applied during the full snapshot");
    });
}

/// A child process applies and snapshots for ever; it is killed with SIGKILL
/// at random moments (24 rounds). Every restart restores the last complete
/// snapshot or a newer one, never skips a damaged one, and continues.
#[test]
fn kill9_while_writing_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(99);
    let mut acked = 0u64;
    for round in 0..24 {
        let run = Duration::from_millis(50 + rng.below(400));
        let exe = env!("CARGO_BIN_EXE_snapshot-crash-child");
        for line in run_then_kill(exe, dir.path(), run) {
            let (what, rest) = line.split_once(' ').unwrap();
            match what {
                "SNAP" => acked = acked.max(rest.parse().unwrap()),
                "RESTORED" => {
                    let (index, skipped) = rest.split_once(' ').unwrap();
                    let index: u64 = index.parse().unwrap();
                    assert_eq!(skipped, "0", "round {round}: a snapshot was skipped");
                    assert!(
                        index >= acked,
                        "round {round}: restored {index} < acknowledged {acked}"
                    );
                }
                other => panic!("unexpected line {other}"),
            }
        }
    }
    // The parent restores too, with full verification.
    rt().block_on(async {
        let store: Arc<dyn SnapshotStore> = Arc::new(DirStore::open(dir.path()).unwrap());
        let snaps = Arc::new(Snapshots::new(store, "crash", SnapshotConfig::default()));
        let report = snaps.restore_latest().await.unwrap();
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        let loaded = report.loaded.expect("a snapshot");
        assert!(loaded.manifest.last_log_id.unwrap().index >= acked);
    });
    assert!(acked > 0, "no snapshot was acknowledged");
}

/// A follower's catch-up: the deltas it lacks, merged into one layer, load
/// to exactly the state of the chain they replace (the load checks the key
/// count and state hash); out-of-range layers are refused.
#[test]
fn merged_deltas_restore_the_same_state() {
    crate::support::rt().block_on(async {
        let t = dir_store();
        let (_, _, s3, _) = three_snapshots(&t.store).await;
        let snaps = Snapshots::new(t.store.clone(), "c", small());
        let whole = snaps.load("c/whole", &s3).await.unwrap();
        let merged = snaps.merge_layers(&s3, 1).await.unwrap();
        let records: u64 = merged.iter().map(|s| s.records).sum();
        let layers: u64 = s3.deltas.iter().map(|l| l.records()).sum();
        assert!(
            records <= layers,
            "each changed key once: {records} of {layers}"
        );
        let mut local = s3.clone();
        local.deltas = vec![ramrod::internals::snapshot::Layer {
            last_log_id: s3.last_log_id,
            segments: Vec::new(),
        }];
        for seg in merged {
            local.deltas[0]
                .segments
                .push(ramrod::internals::snapshot::SegmentRef {
                    name: seg.name.clone(),
                    bytes: seg.bytes.len() as u64,
                    records: seg.records,
                });
            t.store.put_segment(&seg.name, seg.bytes).await.unwrap();
        }
        let again = snaps.load("c/merged", &local).await.unwrap();
        assert_eq!(again.state, whole.state);
        assert_eq!(again.state_hash, whole.state_hash);
        for from in [0, 3] {
            assert!(snaps.merge_layers(&s3, from).await.is_err(), "layer {from}");
        }
    });
}

/// A rolled-out policy's component is a blob: stored from an entry that
/// carried it, found in the store by hash, recorded in the manifests of
/// snapshots whose state refers to it, and kept by collection while one
/// does (or while the state does); a blob nothing refers to any more goes.
async fn policy_blobs(store: &Arc<dyn SnapshotStore>) {
    use ramrod::internals::raft::{PolicyRef, PolicySpec};
    let mut sm = open(store, "blobs", small()).await;
    let mut model = Model::new();
    let entry = |index: u64, c: Command| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request { commands: vec![c] }),
    };
    apply(
        &mut sm,
        &mut model,
        1,
        vec![Command::Put {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        }],
    )
    .await;
    // An entry written by an earlier version carries the component.
    let old = b"\0asm an old policy".to_vec();
    let spec = PolicySpec {
        label: "old.wasm".into(),
        wasm: old.clone(),
        config: String::new(),
    };
    let old_hash = spec.hash();
    sm.apply([entry(2, Command::SetPolicy(spec))])
        .await
        .unwrap();
    let applied = sm.policy().unwrap();
    assert_eq!(
        (applied.index, applied.policy.hash.as_str()),
        (2, old_hash.as_str())
    );
    assert_eq!(&sm.policy_bytes(&applied).await.unwrap()[..], &old[..]);
    assert!(store.has_segment(&old_hash).await.unwrap());

    // A rollout by hash: the bytes are looked up in the store.
    let new = b"\0asm a new policy".to_vec();
    let r = PolicyRef::of("new.wasm", &new, "k = 1");
    sm.apply([entry(3, Command::RollOut(r.clone()))])
        .await
        .unwrap();
    let applied = sm.policy().unwrap();
    let e = sm.policy_bytes(&applied).await.unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    // The wrong bytes under its name are refused.
    assert!(
        sm.snapshots()
            .put_blob(&r.hash, Bytes::from_static(b"other"))
            .await
            .is_err()
    );
    sm.snapshots()
        .put_blob(&r.hash, Bytes::from(new.clone()))
        .await
        .unwrap();
    assert_eq!(&sm.policy_bytes(&applied).await.unwrap()[..], &new[..]);

    // A snapshot records the state's blob; collection keeps it, and drops
    // the old one that nothing refers to.
    sm.build(Some(SnapshotKind::Full)).await.unwrap();
    let m = sm.current_manifest().unwrap();
    assert_eq!(m.blobs, vec![r.hash.clone()]);
    // (The build collects too.)
    sm.snapshots().retain(1).await.unwrap();
    assert!(store.has_segment(&r.hash).await.unwrap());
    assert!(!store.has_segment(&old_hash).await.unwrap());

    // A reopened state machine restores the reference; its bytes are there.
    drop(sm);
    let sm = open(store, "blobs", small()).await;
    let applied = sm.policy().unwrap();
    assert_eq!(applied.policy.as_ref(), &r);
    assert_eq!(&sm.policy_bytes(&applied).await.unwrap()[..], &new[..]);
    // A damaged copy is not used.
    replace_segment(store, &r.hash, b"\0asm a new pol1cy".to_vec()).await;
    let e = sm.policy_bytes(&applied).await.unwrap_err();
    assert!(
        e.to_string().contains("does not exist") || e.to_string().contains("hash"),
        "{e}"
    );
}

#[test]
fn policy_blobs_are_stored_referenced_and_collected_on_every_store() {
    let rt = rt();
    for s in all_stores() {
        eprintln!("store {}", s.label);
        rt.block_on(policy_blobs(&s.store));
    }
}
