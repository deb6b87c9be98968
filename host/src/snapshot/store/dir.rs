//! A local directory as a snapshot store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

use super::{ObjectInfo, SnapshotStore, StoreError, check_name};

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
            crate::failpoint::check("snapshot.put-segment", &dest)
                .map_err(|e| this.err(&name, e))?;
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
            crate::failpoint::check("snapshot.put-manifest", &dest)
                .map_err(|e| this.err(&name, e))?;
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
