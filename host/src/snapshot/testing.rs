//! A conformance suite for [`SnapshotStore`]s: what the trait's contract
//! promises, checked from outside, like openraft's storage `Suite`. Every
//! store ramrod ships runs it in CI (`DirStore` on a directory, `S3Store`
//! on a real SeaweedFS); a store of your own should too.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use ramrod::{DirStore, SnapshotStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let open = || Arc::new(DirStore::open(dir.path()).unwrap()) as Arc<dyn SnapshotStore>;
//! ramrod::snapshot_store_suite(open).await;
//! # }
//! ```

use std::sync::Arc;

use bytes::Bytes;

use super::{SnapshotStore, StoreError};

/// Runs every check of the contract on stores `open` returns. Each call of
/// `open` must give a new handle on the same, initially empty, store (the
/// suite checks that what one handle wrote, another reads).
///
/// # Panics
/// On the first broken promise, naming it and the store.
pub async fn run_suite<F>(open: F)
where
    F: Fn() -> Arc<dyn SnapshotStore>,
{
    let store = open();
    let name = store.describe();
    let check = |ok: bool, what: &str| assert!(ok, "{name}: {what}");

    check(
        store
            .list_segments()
            .await
            .expect("listing segments")
            .is_empty()
            && store
                .list_manifests()
                .await
                .expect("listing manifests")
                .is_empty(),
        "a new store is empty",
    );

    // Segments: written once, read back exactly, idempotent.
    let (seg, bytes) = ("0123abcd", Bytes::from_static(b"segment bytes"));
    check(
        store
            .put_segment(seg, bytes.clone())
            .await
            .expect("put_segment"),
        "a new segment reports that it was written",
    );
    check(
        !store
            .put_segment(seg, bytes.clone())
            .await
            .expect("put_segment again"),
        "writing a segment that exists is a no-op",
    );
    check(
        store.has_segment(seg).await.expect("has_segment"),
        "has_segment sees a written segment",
    );
    let other = open();
    check(
        other.get_segment(seg).await.expect("get_segment") == bytes,
        "another handle reads the exact bytes written",
    );
    let listed = store.list_segments().await.expect("listing segments");
    check(
        listed.len() == 1 && listed[0].name == seg && listed[0].size == bytes.len() as u64,
        "list_segments names the segment with its size",
    );

    // Missing objects are NotFound, never empty bytes.
    check(
        matches!(
            store.get_segment("ffff0000").await,
            Err(StoreError::NotFound { .. })
        ),
        "a missing segment is NotFound",
    );
    check(
        !store.has_segment("ffff0000").await.expect("has_segment"),
        "has_segment of a missing segment is false",
    );
    check(
        matches!(
            store.get_manifest("g/missing").await,
            Err(StoreError::NotFound { .. })
        ),
        "a missing manifest is NotFound",
    );

    // Manifests: create-only, and never replaced.
    let (m, first) = ("node-1/0001", Bytes::from_static(b"first manifest"));
    store
        .put_manifest(m, first.clone())
        .await
        .expect("put_manifest");
    check(
        matches!(
            other.put_manifest(m, Bytes::from_static(b"second")).await,
            Err(StoreError::AlreadyExists { .. })
        ),
        "put_manifest refuses a name that exists (AlreadyExists)",
    );
    check(
        store.get_manifest(m).await.expect("get_manifest") == first,
        "a refused put_manifest leaves the first manifest",
    );
    store
        .put_manifest("node-2/0001", Bytes::from_static(b"another group"))
        .await
        .expect("put_manifest of another group");
    let mut names: Vec<String> = store
        .list_manifests()
        .await
        .expect("listing manifests")
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort();
    check(
        names == ["node-1/0001", "node-2/0001"],
        "list_manifests names every manifest of every group as group/id",
    );

    // Bad names are refused before any I/O, never panic.
    for bad in ["", ".", "..", "../x", "a/b", "a b", "seg\0"] {
        check(
            store.put_segment(bad, Bytes::new()).await.is_err(),
            &format!("the segment name {bad:?} is refused"),
        );
    }
    for bad in [
        "", "group", "g/", "/id", "g/../x", "g/a/b", "../g/id", "g/..",
    ] {
        check(
            store.put_manifest(bad, Bytes::new()).await.is_err(),
            &format!("the manifest name {bad:?} is refused"),
        );
    }
    check(
        store.list_segments().await.expect("listing segments").len() == 1
            && store
                .list_manifests()
                .await
                .expect("listing manifests")
                .len()
                == 2,
        "refused names wrote nothing",
    );

    // Deletes are idempotent.
    store.delete_segment(seg).await.expect("delete_segment");
    store
        .delete_segment(seg)
        .await
        .expect("delete_segment of a missing segment");
    check(
        !store.has_segment(seg).await.expect("has_segment"),
        "a deleted segment is gone",
    );
    store.delete_manifest(m).await.expect("delete_manifest");
    store
        .delete_manifest(m)
        .await
        .expect("delete_manifest of a missing manifest");
    check(
        matches!(
            other.get_manifest(m).await,
            Err(StoreError::NotFound { .. })
        ),
        "a deleted manifest is gone for every handle",
    );
    // A deleted manifest's name can be written again.
    store
        .put_manifest(m, Bytes::from_static(b"again"))
        .await
        .expect("put_manifest after delete");
}
