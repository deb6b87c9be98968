//! Where snapshots live: one trait, a local directory and any S3-compatible
//! object store.
//!
//! A store holds two kinds of objects. Segments are content-addressed
//! (`segments/<hash>`): writing one is idempotent and never overwrites
//! different bytes. Manifests (`manifests/<group>/<id>`) are written last,
//! atomically and only if absent; a snapshot exists once its manifest does.

use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
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
#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync + Debug {
    /// A short description for messages: `dir:PATH` or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Stores a segment under its content hash; a no-op if it exists.
    /// Returns whether bytes were written.
    async fn put_segment(&self, name: &str, bytes: Bytes) -> Result<bool, StoreError>;
    /// Reads a segment.
    async fn get_segment(&self, name: &str) -> Result<Bytes, StoreError>;
    /// Whether a segment exists.
    async fn has_segment(&self, name: &str) -> Result<bool, StoreError>;
    /// Every segment.
    async fn list_segments(&self) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deletes a segment (no error if it is gone).
    async fn delete_segment(&self, name: &str) -> Result<(), StoreError>;
    /// Writes a manifest atomically, failing if `name` (`group/id`) exists.
    async fn put_manifest(&self, name: &str, bytes: Bytes) -> Result<(), StoreError>;
    /// Reads a manifest.
    async fn get_manifest(&self, name: &str) -> Result<Bytes, StoreError>;
    /// Every manifest of every group, as `group/id`.
    async fn list_manifests(&self) -> Result<Vec<ObjectInfo>, StoreError>;
    /// Deletes a manifest (no error if it is gone).
    async fn delete_manifest(&self, name: &str) -> Result<(), StoreError>;
}

/// Checks a segment or manifest name: no path tricks.
fn check_name(store: &str, name: &str, manifest: bool) -> Result<(), StoreError> {
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

// --- local directory --------------------------------------------------------

/// A local directory: `DIR/segments/<hash>` and `DIR/manifests/<group>/<id>`.
/// Every write goes to a temporary file that is synced, then renamed (or
/// linked, for manifests, so an existing one is never replaced), and the
/// directory is synced.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// Opens (creating if needed) a store rooted at `root`.
    ///
    /// # Errors
    /// If the directories cannot be created.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let store = DirStore {
            root: root.to_path_buf(),
        };
        let existed = root.is_dir();
        for d in ["segments", "manifests"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| store.err(d, e))?;
        }
        // New directories must survive a power loss too.
        Self::sync_dir(root).map_err(|e| store.err("the store directory", e))?;
        if !existed && let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            Self::sync_dir(parent).map_err(|e| store.err("the parent directory", e))?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn err(&self, key: &str, e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound {
                store: self.describe(),
                key: key.to_string(),
            }
        } else {
            StoreError::Other {
                store: self.describe(),
                key: key.to_string(),
                reason: e.to_string(),
            }
        }
    }

    fn segment_path(&self, name: &str) -> PathBuf {
        self.root.join("segments").join(name)
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.root.join("manifests").join(name)
    }

    /// Writes `bytes` to a synced temporary file next to `dest`.
    fn write_temp(dest: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let dir = dest.parent().expect("store paths have a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        Ok(tmp)
    }

    fn sync_dir(dir: &Path) -> std::io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn list_dir(&self, dir: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".tmp-") {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_file() {
                out.push(ObjectInfo {
                    name: format!("{prefix}{name}"),
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
        Ok(())
    }
}

static TEMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Other {
            store: "dir".into(),
            key: String::new(),
            reason: format!("blocking task failed: {e}"),
        })
    })
}

#[async_trait::async_trait]
impl SnapshotStore for DirStore {
    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    async fn put_segment(&self, name: &str, bytes: Bytes) -> Result<bool, StoreError> {
        check_name(&self.describe(), name, false)?;
        let (this, name) = (self.clone(), name.to_string());
        blocking(move || {
            let dest = this.segment_path(&name);
            if dest.exists() {
                // Reused: make it young again, so that a collection in
                // another process (which spares young segments) keeps it
                // until the manifest that reuses it is written.
                std::fs::File::options()
                    .write(true)
                    .open(&dest)
                    .and_then(|f| f.set_modified(SystemTime::now()))
                    .map_err(|e| this.err(&name, e))?;
                return Ok(false);
            }
            let tmp = Self::write_temp(&dest, &bytes).map_err(|e| this.err(&name, e))?;
            std::fs::rename(&tmp, &dest).map_err(|e| this.err(&name, e))?;
            Self::sync_dir(dest.parent().expect("parent")).map_err(|e| this.err(&name, e))?;
            Ok(true)
        })
        .await
    }

    async fn get_segment(&self, name: &str) -> Result<Bytes, StoreError> {
        check_name(&self.describe(), name, false)?;
        let (this, name) = (self.clone(), name.to_string());
        blocking(move || {
            std::fs::read(this.segment_path(&name))
                .map(Bytes::from)
                .map_err(|e| this.err(&name, e))
        })
        .await
    }

    async fn has_segment(&self, name: &str) -> Result<bool, StoreError> {
        check_name(&self.describe(), name, false)?;
        Ok(self.segment_path(name).exists())
    }

    async fn list_segments(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        let this = self.clone();
        blocking(move || {
            let mut out = Vec::new();
            this.list_dir(&this.root.join("segments"), "", &mut out)
                .map_err(|e| this.err("segments", e))?;
            Ok(out)
        })
        .await
    }

    async fn delete_segment(&self, name: &str) -> Result<(), StoreError> {
        check_name(&self.describe(), name, false)?;
        match std::fs::remove_file(self.segment_path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }

    async fn put_manifest(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        check_name(&self.describe(), name, true)?;
        let (this, name) = (self.clone(), name.to_string());
        blocking(move || {
            let dest = this.manifest_path(&name);
            let tmp = Self::write_temp(&dest, &bytes).map_err(|e| this.err(&name, e))?;
            // A hard link never replaces an existing file.
            let linked = std::fs::hard_link(&tmp, &dest);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::AlreadyExists {
                        store: this.describe(),
                        key: name,
                    });
                }
                Err(e) => return Err(this.err(&name, e)),
            }
            let group_dir = dest.parent().expect("parent");
            Self::sync_dir(group_dir).map_err(|e| this.err(&name, e))?;
            // The group's directory may be new: its entry must be durable.
            Self::sync_dir(&this.root.join("manifests")).map_err(|e| this.err(&name, e))?;
            Ok(())
        })
        .await
    }

    async fn get_manifest(&self, name: &str) -> Result<Bytes, StoreError> {
        check_name(&self.describe(), name, true)?;
        let (this, name) = (self.clone(), name.to_string());
        blocking(move || {
            std::fs::read(this.manifest_path(&name))
                .map(Bytes::from)
                .map_err(|e| this.err(&name, e))
        })
        .await
    }

    async fn list_manifests(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        let this = self.clone();
        blocking(move || {
            let mut out = Vec::new();
            let root = this.root.join("manifests");
            for group in std::fs::read_dir(&root).map_err(|e| this.err("manifests", e))? {
                let group = group.map_err(|e| this.err("manifests", e))?;
                if group.path().is_dir() {
                    let g = group.file_name().to_string_lossy().to_string();
                    this.list_dir(&group.path(), &format!("{g}/"), &mut out)
                        .map_err(|e| this.err("manifests", e))?;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_manifest(&self, name: &str) -> Result<(), StoreError> {
        check_name(&self.describe(), name, true)?;
        match std::fs::remove_file(self.manifest_path(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }
}

// --- S3-compatible object store ------------------------------------------------

/// Where an S3-compatible store is and how to reach it. Unset fields come
/// from the standard AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

impl S3Config {
    /// Parses `s3://bucket/prefix`.
    pub fn from_url(url: &str) -> Option<S3Config> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            ..S3Config::default()
        })
    }
}

/// Any S3-compatible object store, through the `object_store` crate.
/// Manifests are written with a conditional put (create only).
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Connects (lazily: the first request does the I/O).
    ///
    /// # Errors
    /// If the configuration is incomplete.
    pub fn new(config: &S3Config) -> Result<Self, StoreError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_allow_http(true);
        let env = |k: &str| std::env::var(k).ok();
        if let Some(e) = config.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")) {
            b = b.with_endpoint(e);
        }
        b = b.with_region(
            config
                .region
                .clone()
                .or_else(|| env("AWS_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
        );
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &config.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let store = b.build().map_err(|e| StoreError::Other {
            store: format!("s3://{}", config.bucket),
            key: String::new(),
            reason: e.to_string(),
        })?;
        Ok(S3Store {
            inner: Arc::new(store),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        })
    }

    fn path(&self, kind: &str, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(format!("{kind}/{name}"))
        } else {
            ObjectPath::from(format!("{}/{kind}/{name}", self.prefix))
        }
    }

    fn err(&self, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                store: self.describe(),
                key: key.to_string(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => StoreError::AlreadyExists {
                store: self.describe(),
                key: key.to_string(),
            },
            other => StoreError::Other {
                store: self.describe(),
                key: key.to_string(),
                reason: other.to_string(),
            },
        }
    }

    async fn list(&self, kind: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let base = self.path(kind, "");
        let base_str = format!("{}/", base.as_ref().trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&ObjectPath::from(base_str.trim_end_matches('/'))))
            .try_collect()
            .await
            .map_err(|e| self.err(kind, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref();
                let name = full.strip_prefix(&base_str)?.to_string();
                Some(ObjectInfo {
                    name,
                    size: m.size,
                    modified: m.last_modified.into(),
                })
            })
            .collect())
    }

    async fn put_create(&self, kind: &str, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.inner
            .put_opts(&self.path(kind, name), PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err(name, e))
    }
}

#[async_trait::async_trait]
impl SnapshotStore for S3Store {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn put_segment(&self, name: &str, bytes: Bytes) -> Result<bool, StoreError> {
        check_name(&self.describe(), name, false)?;
        match self.put_create("segments", name, bytes.clone()).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => {
                // Reused: write it again (same content, by its name) so its
                // age restarts and a collection elsewhere spares it until
                // the manifest that reuses it is written.
                self.inner
                    .put(&self.path("segments", name), PutPayload::from(bytes))
                    .await
                    .map_err(|e| self.err(name, e))?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn get_segment(&self, name: &str) -> Result<Bytes, StoreError> {
        check_name(&self.describe(), name, false)?;
        let r = self
            .inner
            .get(&self.path("segments", name))
            .await
            .map_err(|e| self.err(name, e))?;
        r.bytes().await.map_err(|e| self.err(name, e))
    }

    async fn has_segment(&self, name: &str) -> Result<bool, StoreError> {
        check_name(&self.describe(), name, false)?;
        match self.inner.head(&self.path("segments", name)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(name, e)),
        }
    }

    async fn list_segments(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list("segments").await
    }

    async fn delete_segment(&self, name: &str) -> Result<(), StoreError> {
        check_name(&self.describe(), name, false)?;
        match self.inner.delete(&self.path("segments", name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }

    async fn put_manifest(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        check_name(&self.describe(), name, true)?;
        self.put_create("manifests", name, bytes).await
    }

    async fn get_manifest(&self, name: &str) -> Result<Bytes, StoreError> {
        check_name(&self.describe(), name, true)?;
        let r = self
            .inner
            .get(&self.path("manifests", name))
            .await
            .map_err(|e| self.err(name, e))?;
        r.bytes().await.map_err(|e| self.err(name, e))
    }

    async fn list_manifests(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        self.list("manifests").await
    }

    async fn delete_manifest(&self, name: &str) -> Result<(), StoreError> {
        check_name(&self.describe(), name, true)?;
        match self.inner.delete(&self.path("manifests", name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
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
