//! The unix socket a node serves its client and admin API on
//! (`listen-unix`): created with mode 0600 and never reachable with looser
//! permissions, a stale one left by a crash replaced, removed on clean
//! shutdown (only if it is still the one this node created).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A bound socket and how to recognise it later.
#[derive(Debug)]
pub(super) struct BoundSocket {
    pub(super) listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file this node created.
    id: (u64, u64),
}

/// Binds the socket at `path`.
///
/// The socket is bound inside a fresh directory of mode 0700 next to
/// `path`, set to 0600, then linked into place (failing if anything took
/// `path` meanwhile): no one can connect to it before its mode is set. A socket file already at `path` is removed if
/// nothing accepts on it (a crash left it); one that answers is another
/// process's, and the bind fails. Anything else at `path` is left alone and
/// the bind fails.
pub(super) fn bind(path: &Path) -> io::Result<BoundSocket> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is serving on this socket",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::warn!(path = %path.display(), "removing a stale socket (a crash left it)");
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // A directory of our own (short name: socket paths are limited to
    // about 107 bytes), created, never reused.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let private = parent.join(format!(".rs{:x}-{n:x}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inside = private.join(name);
    let result = (|| {
        let listener = UnixListener::bind(&inside)?;
        std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600))?;
        // A link, not a rename: it fails if anything appeared at `path`
        // since the check above, instead of replacing it.
        std::fs::hard_link(&inside, path)?;
        let m = std::fs::symlink_metadata(path)?;
        Ok(BoundSocket {
            listener,
            path: path.to_path_buf(),
            id: (m.dev(), m.ino()),
        })
    })();
    let _ = std::fs::remove_file(&inside);
    let _ = std::fs::remove_dir(&private);
    result
}

impl BoundSocket {
    /// Where it is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// What removes the socket file once the server has stopped.
    pub(super) fn remover(&self) -> SocketFile {
        SocketFile {
            path: self.path.clone(),
            id: self.id,
        }
    }
}

/// The socket file a node created, to remove on shutdown.
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    /// Removes the file if it is still the socket this node created (not
    /// one another process put there since).
    pub(super) fn remove(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && (m.dev(), m.ino()) == self.id
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the socket");
        }
    }
}
