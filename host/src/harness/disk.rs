//! A small disk for one node: a tmpfs mounted on its data directory, that
//! the disk-full tests fill up for real and free again.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a directory; unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
}

/// The file that fills a disk.
const FILLER: &str = ".disk-filler";

impl SmallDisk {
    /// Creates `dir` and mounts a tmpfs of `bytes` bytes on it.
    ///
    /// # Errors
    /// If the directory cannot be made or the mount is refused (it needs
    /// root, or `CAP_SYS_ADMIN`, on Linux).
    pub fn mount(dir: &Path, bytes: u64) -> io::Result<SmallDisk> {
        std::fs::create_dir_all(dir)?;
        crate::platform::mount_tmpfs(dir, bytes)?;
        Ok(SmallDisk {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills the disk: writes a file until the file system says it has no
    /// space left. Returns the bytes it took.
    ///
    /// # Errors
    /// Any error other than a full disk.
    pub fn fill(&self) -> io::Result<u64> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(FILLER))?;
        let mut taken = 0u64;
        for chunk in [1 << 20, 4 << 10] {
            let zeros = vec![0u8; chunk];
            loop {
                match f.write(&zeros) {
                    Ok(0) => break,
                    Ok(n) => taken += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(taken)
    }

    /// Frees what [`fill`](Self::fill) took.
    ///
    /// # Errors
    /// If the filler cannot be removed.
    pub fn free(&self) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(FILLER)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Free bytes left on it.
    pub fn free_bytes(&self) -> u64 {
        crate::platform::disk_free(&self.dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Err(e) = crate::platform::unmount(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not unmount a test disk");
        }
    }
}
