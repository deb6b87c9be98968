//! Calls into the operating system that the standard library does not wrap
//! (`statvfs`, `posix_fallocate`, signals, handing a listening socket to a
//! child process, mounting a tmpfs for the disk-full tests). Every `unsafe` libc call of the crate lives here, each
//! with its `SAFETY` proof.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Command;

/// The descriptor a child process finds its inherited listener on.
pub const LISTEN_FD: RawFd = 3;

/// Makes `cmd`'s process start with a copy of `listener` as its descriptor
/// [`LISTEN_FD`] (inherited across `exec`). The copy belongs to `cmd`, so it
/// stays valid however long `cmd` lives; the parent keeps its own.
///
/// # Errors
/// If the listener cannot be duplicated.
pub fn pass_listener(cmd: &mut Command, listener: &std::net::TcpListener) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    // Owned by the closure, so by `cmd`: the descriptor cannot be closed or
    // reused before the child is forked.
    let copy: OwnedFd = listener.try_clone()?.into();
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it calls dup2 and fcntl,
    // both async-signal-safe, and allocates nothing. `copy` is an open
    // descriptor owned by the closure, hence valid in the forked child.
    #[expect(
        unsafe_code,
        reason = "pre_exec: the one way to place a descriptor in a child"
    )]
    unsafe {
        cmd.pre_exec(move || {
            let fd = copy.as_raw_fd();
            if fd == LISTEN_FD {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Takes the listening TCP socket this process inherited as descriptor
/// `fd` (as the process harness passes it with `pass_listener`).
///
/// # Errors
/// If `fd` is not an open socket, or not a listening TCP one.
///
/// # Safety
/// `fd` must have been handed to this process to own (by its parent, as
/// `--listen-fd` documents) and nothing else in the process may use or
/// close it: the returned listener closes it when dropped.
#[expect(
    unsafe_code,
    reason = "its caller must own the descriptor, which no type can prove"
)]
pub unsafe fn inherited_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `accepting`, a
    // c_int-sized local, and only reads `fd`.
    #[expect(unsafe_code, reason = "getsockopt has no safe wrapper in std")]
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut accepting).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::other(format!(
            "descriptor {fd} is not a socket: {}",
            io::Error::last_os_error()
        )));
    }
    if accepting == 0 {
        return Err(io::Error::other(format!(
            "descriptor {fd} is a socket that is not listening"
        )));
    }
    let int_opt = |opt: libc::c_int| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as above: getsockopt writes at most `len` bytes into `v`.
        #[expect(unsafe_code, reason = "getsockopt has no safe wrapper in std")]
        let rc = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut v).cast(), &raw mut len)
        };
        if rc == 0 {
            Ok(v)
        } else {
            Err(io::Error::last_os_error())
        }
    };
    let domain = int_opt(libc::SO_DOMAIN)?;
    if (domain != libc::AF_INET && domain != libc::AF_INET6)
        || int_opt(libc::SO_TYPE)? != libc::SOCK_STREAM
    {
        return Err(io::Error::other(format!(
            "descriptor {fd} is a listening socket, but not a TCP one"
        )));
    }
    // Whatever the node starts later must not inherit the listener.
    // SAFETY: fcntl on an open descriptor, changing only its flags.
    #[expect(unsafe_code, reason = "fcntl has no safe wrapper in std")]
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the caller hands us ownership of `fd` (this function's
    // contract), and it is an open, listening socket (checked above).
    #[expect(unsafe_code, reason = "adopting an inherited descriptor")]
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.local_addr()?;
    Ok(listener)
}

/// Asks the process `pid` to stop (SIGTERM).
///
/// # Errors
/// If the signal could not be sent (no such process, not ours).
pub fn terminate(pid: u32) -> io::Result<()> {
    signal(pid, libc::SIGTERM)
}

/// Freezes process `pid` (SIGSTOP) or lets it go on (SIGCONT): a node
/// that stops answering without dying, for fault tests.
///
/// # Errors
/// If the signal could not be sent (no such process, not ours).
pub fn pause(pid: u32, paused: bool) -> io::Result<()> {
    signal(pid, if paused { libc::SIGSTOP } else { libc::SIGCONT })
}

fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill has no memory-safety preconditions; it only sends a
    // signal to `pid`, a process the caller started and has not reaped.
    #[expect(unsafe_code, reason = "kill has no safe wrapper in std")]
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reserves `size` bytes for `file` (blocks really allocated, so later
/// writes up to `size` cannot fail for lack of space).
#[cfg(target_os = "linux")]
pub fn allocate(file: &File, size: u64) -> io::Result<()> {
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

/// Mounts a tmpfs of `bytes` bytes on the directory `dir`: a small file
/// system that fills up for real, for the disk-full fault tests. Needs the
/// right to mount (root, or `CAP_SYS_ADMIN`).
///
/// # Errors
/// If the mount is refused (the usual case without root), or on a system
/// other than Linux.
#[cfg(target_os = "linux")]
pub fn mount_tmpfs(dir: &Path, bytes: u64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let options =
        std::ffi::CString::new(format!("size={bytes},mode=0700")).map_err(io::Error::other)?;
    // SAFETY: every pointer is a valid NUL-terminated C string that
    // outlives the call; mount only reads them.
    #[expect(unsafe_code, reason = "mount has no safe wrapper in std")]
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Not on this system.
///
/// # Errors
/// Always.
#[cfg(not(target_os = "linux"))]
pub fn mount_tmpfs(_dir: &Path, _bytes: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Detaches the file system mounted on `dir` (lazily: it goes when the
/// last file open on it is closed).
///
/// # Errors
/// If nothing is mounted there or the right is missing.
#[cfg(target_os = "linux")]
pub fn unmount(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `target` is a valid NUL-terminated C string that outlives
    // the call; umount2 only reads it.
    #[expect(unsafe_code, reason = "umount2 has no safe wrapper in std")]
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Not on this system.
///
/// # Errors
/// Always.
#[cfg(not(target_os = "linux"))]
pub fn unmount(_dir: &Path) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listening_socket_is_adopted() {
        let file = tempfile::tempfile().unwrap();
        // SAFETY (test): the descriptor is refused before it is adopted.
        #[expect(unsafe_code, reason = "the function under test is unsafe")]
        let e = unsafe { inherited_listener(file.as_raw_fd()) }.unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(unix);
        // SAFETY (test): `fd` came from into_raw_fd; refused, it stays ours.
        #[expect(unsafe_code, reason = "the function under test is unsafe")]
        let e = unsafe { inherited_listener(fd) }.unwrap_err();
        assert!(e.to_string().contains("not a TCP one"), "{e}");
        // SAFETY (test): `fd` is ours and open; close it.
        #[expect(unsafe_code, reason = "closing the refused test descriptor")]
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(l);
        // SAFETY (test): `fd` came from into_raw_fd, so nothing else owns it.
        #[expect(unsafe_code, reason = "the function under test is unsafe")]
        let back = unsafe { inherited_listener(fd) }.unwrap();
        assert_eq!(back.local_addr().unwrap(), addr);
    }

    #[test]
    fn free_space_is_known_for_a_real_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(disk_free(dir.path()) > 0);
        assert_eq!(disk_free(&dir.path().join("missing")), 0);
    }
}
