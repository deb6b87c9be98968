//! Calls into the operating system that the standard library does not wrap
//! (`statvfs`, `posix_fallocate`). Every `unsafe` libc call of the
//! crate lives here, each with its `SAFETY` proof.

use std::fs::File;
use std::io;
use std::path::Path;

/// Reserves `size` bytes for `file` (blocks really allocated, so later
/// writes up to `size` cannot fail for lack of space).
#[cfg(target_os = "linux")]
pub fn allocate(file: &File, size: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(size).map_err(io::Error::other)?;
    // SAFETY: `file` is open for the whole call, so its descriptor is
    // valid, and `len` is non-negative (it came from a u64 that fit).
    #[expect(unsafe_code, reason = "posix_fallocate has no safe wrapper in std")]
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Sets the length of `file` to `size` (no reservation on this platform).
#[cfg(not(target_os = "linux"))]
pub fn allocate(file: &File, size: u64) -> io::Result<()> {
    file.set_len(size)
}

/// Free bytes, for an unprivileged writer, on the file system that holds
/// `dir`; 0 if they cannot be known (the path does not exist, or holds a
/// NUL byte).
pub fn disk_free(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is a valid NUL-terminated C string that outlives the
    // call, and `st` points to writable memory of the type statvfs fills;
    // statvfs only writes into it.
    #[expect(unsafe_code, reason = "statvfs has no safe wrapper in std")]
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: statvfs returned 0, so it initialised `st` completely.
    #[expect(unsafe_code, reason = "reading what statvfs wrote")]
    let st = unsafe { st.assume_init() };
    #[expect(
        clippy::unnecessary_cast,
        reason = "the field types differ between platforms (c_ulong, fsblkcnt_t)"
    )]
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_known_for_a_real_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(disk_free(dir.path()) > 0);
        assert_eq!(disk_free(&dir.path().join("missing")), 0);
    }
}
