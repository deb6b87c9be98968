//! Snapshot stores and collection: both stores pass the store conformance
//! suite; retention and garbage collection keep exactly what retained
//! snapshots use, never the current one, and never a segment a write in
//! progress uses.

use std::sync::Arc;

use bytes::Bytes;
use ramrod::internals::raft::Command;
use ramrod::internals::snapshot::{DirStore, S3Store, SnapshotConfig, SnapshotKind, SnapshotStore};

use crate::snapshot::{Model, all_stores, apply, dir_store, open, random_commands, same, small};
use crate::support::{Rng, rt};

/// Both stores keep the `SnapshotStore` contract (the conformance suite):
/// durable idempotent segments, create-only manifests, NotFound for what is
/// missing, refused names, idempotent deletes. S3 runs against SeaweedFS.
#[test]
fn every_store_passes_the_store_conformance_suite() {
    crate::support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        ramrod::snapshot_store_suite(|| {
            Arc::new(DirStore::open(&root).unwrap()) as Arc<dyn SnapshotStore>
        })
        .await;
        if let Some(cfg) = crate::support::s3_test_config() {
            ramrod::snapshot_store_suite(|| {
                Arc::new(S3Store::new(&cfg).unwrap()) as Arc<dyn SnapshotStore>
            })
            .await;
        }
    });
}

/// Retention keeps the newest N; garbage collection then leaves no
/// unreferenced segment, and every retained snapshot still restores.
#[test]
fn gc_keeps_exactly_what_retained_snapshots_use() {
    let rt = rt();
    for s in all_stores() {
        rt.block_on(async {
            let store = &s.store;
            let cfg = SnapshotConfig {
                retain: 3,
                max_chain: 3,
                ..small()
            };
            let mut sm = open(store, "g", cfg.clone()).await;
            let mut rng = Rng::new(5);
            let mut model = Model::new();
            for index in 1..=120 {
                apply(&mut sm, &mut model, index, random_commands(&mut rng, 6)).await;
                if index % 10 == 0 {
                    sm.build(None).await.unwrap();
                }
            }
            let snaps = sm.snapshots().clone();
            let names = snaps.names().await.unwrap();
            assert_eq!(names.len(), 3, "{}: {names:?}", s.label);
            let mut used = std::collections::HashSet::new();
            for name in &names {
                let m = snaps.manifest(name).await.unwrap();
                snaps.load(name, &m).await.unwrap();
                used.extend(m.segments().map(|x| x.name.clone()));
            }
            let stored: std::collections::HashSet<String> = store
                .list_segments()
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.name)
                .collect();
            assert_eq!(
                stored, used,
                "{}: stored segments = referenced ones",
                s.label
            );
            let stats = sm.stats();
            assert!(stats.full >= 3 && stats.incremental >= 6, "{stats:?}");
        });
    }
}

/// Retention never deletes the snapshot just written, even when another
/// manifest's name sorts after it (a newer one that failed to verify, or a
/// leader's with a clock ahead).
#[test]
fn retention_keeps_the_current_snapshot() {
    let rt = rt();
    rt.block_on(async {
        let s = dir_store();
        let cfg = SnapshotConfig {
            retain: 1,
            ..small()
        };
        let mut sm = open(&s.store, "r", cfg).await;
        let mut model = Model::new();
        let mut rng = Rng::new(3);
        apply(&mut sm, &mut model, 1, random_commands(&mut rng, 20)).await;
        let s1 = sm.build(Some(SnapshotKind::Full)).await.unwrap();
        // A manifest that sorts after everything this node will write.
        let high = format!("r/{}-9999999999999-9999", "9".repeat(20));
        s.store
            .put_manifest(&high, Bytes::from(s1.encode()))
            .await
            .unwrap();
        apply(&mut sm, &mut model, 2, random_commands(&mut rng, 20)).await;
        let s2 = sm.build(Some(SnapshotKind::Incremental)).await.unwrap();
        let snaps = sm.snapshots().clone();
        let names = snaps.names().await.unwrap();
        assert_eq!(names, vec![format!("r/{}", s2.id)]);
        let loaded = snaps.load(&names[0], &s2).await.unwrap();
        assert!(same(&loaded.state, &model));
    });
}

/// Collecting garbage while a snapshot is being written never deletes a
/// segment that snapshot uses.
#[test]
fn gc_is_safe_during_a_write() {
    let rt = rt();
    rt.block_on(async {
        let s = dir_store();
        let cfg = SnapshotConfig {
            retain: 1,
            ..small()
        };
        let mut sm = open(&s.store, "w", cfg).await;
        let mut model = Model::new();
        let big: Vec<Command> = (0..20_000)
            .map(|i| Command::Put {
                key: format!("big/{i:06}").into_bytes(),
                value: vec![(i % 251) as u8; 64],
            })
            .collect();
        apply(&mut sm, &mut model, 1, big).await;
        let snaps = sm.snapshots().clone();
        let builder = sm.clone();
        let build = tokio::spawn(async move { builder.build(Some(SnapshotKind::Full)).await });
        let mut sweeps = 0;
        while !build.is_finished() {
            snaps.retain(1).await.unwrap();
            sweeps += 1;
        }
        let m = build.await.unwrap().unwrap();
        assert!(sweeps > 0);
        let loaded = snaps.load(&format!("w/{}", m.id), &m).await.unwrap();
        assert!(same(&loaded.state, &model));
    });
}
