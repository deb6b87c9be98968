//! Failpoints: named places in the I/O path where a test can make the
//! next operations fail. Compiled in only with the `failpoints` feature
//! (the tests enable it); without it every check is `Ok(())` and costs
//! nothing.
//!
//! A failpoint is armed for the files under one directory (a node's data
//! directory), so that in a test running several nodes in one process only
//! the chosen node fails: [`arm`] in-process, or `RAMROD_FAILPOINTS=NAME`
//! (every directory) in a child process's environment.
//!
//! The names: `log.sync` (the log store's `fdatasync` of appended entries),
//! `log.index-commit` (its redb commit of the batch index, vote and purge
//! point, which follows the appends' callbacks), `log.segment-create`
//! (creating a segment file: at open and when the active one is full),
//! `snapshot.put-segment` and `snapshot.put-manifest` (a snapshot store's
//! writes: a directory store's files, or an S3 store's objects, armed for
//! the path `s3://BUCKET/PREFIX`).

use std::path::Path;

/// Fails with an I/O error if the failpoint `name` is armed for `path`.
///
/// # Errors
/// The injected error, naming the failpoint.
#[cfg(feature = "failpoints")]
pub fn check(name: &str, path: &Path) -> std::io::Result<()> {
    let armed = armed()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(n, dir)| n == name && dir.as_ref().is_none_or(|d| path.starts_with(d)));
    if armed {
        return Err(std::io::Error::other(format!(
            "failpoint {name} (injected)"
        )));
    }
    Ok(())
}

/// Without the `failpoints` feature: never fails.
///
/// # Errors
/// Never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn check(_name: &str, _path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(feature = "failpoints")]
type Armed = std::sync::Mutex<Vec<(String, Option<std::path::PathBuf>)>>;

#[cfg(feature = "failpoints")]
fn armed() -> &'static Armed {
    static ARMED: std::sync::OnceLock<Armed> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| {
        let from_env = std::env::var("RAMROD_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|n| (n.to_string(), None))
            .collect();
        std::sync::Mutex::new(from_env)
    })
}

/// Arms `name` for the files under `dir`.
#[cfg(feature = "failpoints")]
pub fn arm(name: &str, dir: &Path) {
    armed()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_string(), Some(dir.to_path_buf())));
}

/// Disarms `name` for `dir`.
#[cfg(feature = "failpoints")]
pub fn disarm(name: &str, dir: &Path) {
    armed()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(n, d)| !(n == name && d.as_deref() == Some(dir)));
}
