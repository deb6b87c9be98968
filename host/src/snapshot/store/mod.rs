//! Where snapshots live: one trait with its contract, a local directory
//! ([`dir`]) and any S3-compatible object store ([`s3`]).
//!
//! A store holds two kinds of objects. Segments are content-addressed
//! (`segments/<hash>`): writing one is idempotent and never overwrites
//! different bytes. Manifests (`manifests/<group>/<id>`) are written last,
//! atomically and only if absent; a snapshot exists once its manifest does.

mod dir;
mod s3;

pub use dir::DirStore;
pub use s3::{S3Config, S3Store};

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("{store}: {key} does not exist")]
    NotFound {
        /// The store.
        store: String,
        /// The object.
        key: String,
    },
    /// A manifest with this name already exists.
    #[error("{store}: {key} already exists")]
    AlreadyExists {
        /// The store.
        store: String,
        /// The object.
        key: String,
    },
    /// Anything else: I/O, network, permissions.
    #[error("{store}: {key}: {reason}")]
    Other {
        /// The store.
        store: String,
        /// The object.
        key: String,
        /// What went wrong.
        reason: String,
    },
}

/// An object's name, size and age.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Segment name, or `group/id` for a manifest.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub modified: SystemTime,
}

/// Where a node installing a snapshot gets the segments its own store lacks:
/// another store (a shared object store), or the leader over HTTP.
#[async_trait::async_trait]
pub trait SegmentSource: Send + Sync + Debug {
    /// A short description for messages.
    fn describe_source(&self) -> String;
    /// Reads a segment. The caller verifies it against its name.
    async fn fetch_segment(&self, name: &str) -> Result<Bytes, StoreError>;
    /// Reads a blob (an object of the segment namespace that no manifest
    /// may reference yet, such as a policy component) from wherever this
    /// source can find it; by default like a segment. The caller verifies
    /// it against its name.
    async fn fetch_blob(&self, name: &str) -> Result<Bytes, StoreError> {
        self.fetch_segment(name).await
    }
    /// The delta layers `from..` of `manifest` merged into new segments (a
    /// later layer wins), if this source can build them; `None` if it
    /// cannot (then the caller fetches the layers' own segments). The
    /// caller verifies the result against the manifest's state hash.
    async fn merged_layers(
        &self,
        _manifest: &super::Manifest,
        _from: usize,
    ) -> Option<Result<Vec<Bytes>, StoreError>> {
        None
    }
}

/// A snapshot store used as a [`SegmentSource`].
#[derive(Debug, Clone)]
pub struct StoreSource(pub std::sync::Arc<dyn SnapshotStore>);

#[async_trait::async_trait]
impl SegmentSource for StoreSource {
    fn describe_source(&self) -> String {
        self.0.describe()
    }
    async fn fetch_segment(&self, name: &str) -> Result<Bytes, StoreError> {
        self.0.get_segment(name).await
    }
}

/// A snapshot store.
///
/// # The contract
/// ramrod's crash safety rests on these; [`testing::run_suite`](super::testing::run_suite)
/// checks what can be checked from outside, and every store must pass it:
/// - **`put_segment` is durable before it returns `Ok`**: after a crash of
///   this process or the host, a segment whose put returned is there, whole.
///   A segment's name is the hash of its bytes, so a name stands for one
///   content. Writing a name that exists is a no-op (`Ok(false)`) that makes
///   the object young again (its modification time is now), so a
///   collection in another process that spares young segments and lists
///   after the touch keeps it; a collection that listed before the touch
///   may not (the grace period is what covers that window).
/// - **`put_manifest` is create-only and durable**: it fails with
///   [`StoreError::AlreadyExists`] if `name` exists (never replacing it),
///   and once it returns `Ok` the manifest survives a crash. A reader sees
///   either no manifest or all of it. Once deleted, a name can be written
///   again.
/// - Reads return exactly the bytes written; a missing object is
///   [`StoreError::NotFound`], never empty bytes.
/// - Deletes are idempotent (`Ok` if the object is gone).
/// - Names are checked: a segment name is one part of `[A-Za-z0-9._-]`
///   (not `.` or `..`), a manifest name is `group/id` of two such parts;
///   anything else is refused, before any I/O.
/// - Lists return every object written and not deleted (segments by name,
///   manifests as `group/id`), with their sizes.
#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync + Debug {
    /// A short description for messages: `dir:PATH` or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Stores a segment under its content hash, durably; a no-op if it
    /// exists. Returns whether bytes were written.
    async fn put_segment(&self, name: &str, bytes: Bytes) -> Result<bool, StoreError>;
    /// Reads a segment.
    async fn get_segment(&self, name: &str) -> Result<Bytes, StoreError>;
    /// Whether a segment exists.
    async fn has_segment(&self, name: &str) -> Result<bool, StoreError>;
    /// Every segment.
    async fn list_segments(&self) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deletes a segment (no error if it is gone).
    async fn delete_segment(&self, name: &str) -> Result<(), StoreError>;
    /// Writes a manifest atomically and durably, failing with
    /// [`StoreError::AlreadyExists`] if `name` (`group/id`) exists.
    async fn put_manifest(&self, name: &str, bytes: Bytes) -> Result<(), StoreError>;
    /// Reads a manifest.
    async fn get_manifest(&self, name: &str) -> Result<Bytes, StoreError>;
    /// Every manifest of every group, as `group/id`.
    async fn list_manifests(&self) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deletes a manifest (no error if it is gone).
    async fn delete_manifest(&self, name: &str) -> Result<(), StoreError>;
}

/// Checks a segment or manifest name: no path tricks.
pub(super) fn check_name(store: &str, name: &str, manifest: bool) -> Result<(), StoreError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let ok = if manifest {
        let mut parts = name.split('/');
        matches!((parts.next(), parts.next(), parts.next()), (Some(g), Some(i), None) if ok_part(g) && ok_part(i))
    } else {
        ok_part(name)
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Other {
            store: store.to_string(),
            key: name.to_string(),
            reason: "invalid object name".into(),
        })
    }
}

/// Opens an existing store from a command-line spec: a directory path, or
/// `s3://bucket/prefix` (endpoint and credentials from the AWS variables).
///
/// # Errors
/// If the directory does not exist or the S3 configuration is incomplete.
pub fn open_spec(spec: &str) -> Result<Arc<dyn SnapshotStore>, StoreError> {
    match S3Config::from_url(spec) {
        Some(cfg) => Ok(Arc::new(S3Store::new(&cfg)?)),
        None if !Path::new(spec).is_dir() => Err(StoreError::NotFound {
            store: format!("dir:{spec}"),
            key: "the directory".into(),
        }),
        None => Ok(Arc::new(DirStore::open(Path::new(spec))?)),
    }
}
