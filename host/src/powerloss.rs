//! A simulated power cut for the log store, which kill -9 cannot show (the
//! page cache survives a killed process). Compiled in with the `failpoints`
//! feature only.
//!
//! [`arm`] a data directory and the log store under it writes through a
//! layer that keeps unsynced bytes apart: segment writes and the index's
//! (redb, through a [`redb::StorageBackend`]) stay in memory until their
//! file is synced. After a chosen number of syncs the power goes: that sync
//! and every later I/O fails, so the store acknowledges nothing more. Then
//! [`cut`] decides what the disk kept of the unsynced writes: each one
//! independently, whole, torn at a 512-byte sector, or not at all (the
//! page cache writes back in any order). The store is then opened as usual
//! and must hold every entry, vote and purge point it acknowledged.
//!
//! Not modelled: file creation, length changes and unlinks are durable at
//! once (segments are created and synced, with their directory, before
//! use; redb sets its length before writing).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A write not synced yet.
#[derive(Debug)]
struct Pending {
    path: PathBuf,
    offset: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<Pending>,
    /// Syncs left before the power goes (then 0 and `off`).
    syncs_left: u64,
    off: bool,
    syncs: u64,
}

/// A directory under simulated power.
#[derive(Debug)]
#[cfg_attr(
    not(feature = "failpoints"),
    allow(dead_code, reason = "made only by `arm`, a test-only function")
)]
pub struct Sim {
    dir: PathBuf,
    state: Mutex<State>,
}

#[cfg(feature = "failpoints")]
fn armed() -> &'static Mutex<Vec<Arc<Sim>>> {
    static ARMED: std::sync::OnceLock<Mutex<Vec<Arc<Sim>>>> = std::sync::OnceLock::new();
    ARMED.get_or_init(Mutex::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn power_off() -> std::io::Error {
    std::io::Error::other("power cut (simulated)")
}

/// Puts the files under `dir` on simulated power that goes out at its
/// `syncs`-th sync (counting the segments' and the index's).
#[cfg(feature = "failpoints")]
pub fn arm(dir: &Path, syncs: u64) -> Arc<Sim> {
    let sim = Arc::new(Sim {
        dir: dir.to_path_buf(),
        state: Mutex::new(State {
            syncs_left: syncs.max(1),
            ..State::default()
        }),
    });
    let mut a = lock(armed());
    a.retain(|s| s.dir != dir);
    a.push(sim.clone());
    sim
}

/// The simulation `path` is under, if any.
pub(crate) fn sim_for(path: &Path) -> Option<Arc<Sim>> {
    #[cfg(feature = "failpoints")]
    {
        lock(armed())
            .iter()
            .find(|s| path.starts_with(&s.dir))
            .cloned()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = path;
        None
    }
}

/// What a power cut left.
#[cfg(feature = "failpoints")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// Syncs that completed before it.
    pub syncs: u64,
    /// Unsynced writes the disk kept whole, torn, or lost.
    pub kept: u64,
    /// Torn: a prefix of whole sectors kept.
    pub torn: u64,
    /// Lost.
    pub lost: u64,
}

/// Ends the simulation of `dir`: the power goes (if it had not), and each
/// unsynced write is kept, torn or lost as `seed` picks; then the files are
/// ordinary again.
///
/// # Errors
/// If a kept write cannot be written to its file.
#[cfg(feature = "failpoints")]
pub fn cut(dir: &Path, seed: u64) -> std::io::Result<Cut> {
    let sim = {
        let mut a = lock(armed());
        let Some(pos) = a.iter().position(|s| s.dir == dir) else {
            return Ok(Cut::default());
        };
        a.remove(pos)
    };
    let mut st = lock(&sim.state);
    st.off = true;
    let mut cut = Cut {
        syncs: st.syncs,
        ..Cut::default()
    };
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for p in st.pending.drain(..) {
        let keep = match next() % 3 {
            0 => {
                cut.lost += 1;
                continue;
            }
            1 => p.bytes.len(),
            _ => {
                cut.torn += 1;
                let sectors = p.bytes.len().div_ceil(512) as u64;
                ((next() % sectors.max(1)) * 512) as usize
            }
        };
        cut.kept += 1;
        if keep > 0 {
            let f = std::fs::OpenOptions::new().write(true).open(&p.path)?;
            std::os::unix::fs::FileExt::write_all_at(
                &f,
                &p.bytes[..keep.min(p.bytes.len())],
                p.offset,
            )?;
        }
    }
    Ok(cut)
}

impl Sim {
    fn write(&self, path: &Path, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut st = lock(&self.state);
        if st.off {
            return Err(power_off());
        }
        st.pending.push(Pending {
            path: path.to_path_buf(),
            offset,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    /// Makes `path`'s pending writes durable, unless the power goes now.
    fn sync(&self, path: &Path, file: &File) -> std::io::Result<()> {
        let mut st = lock(&self.state);
        if st.off {
            return Err(power_off());
        }
        st.syncs_left -= 1;
        if st.syncs_left == 0 {
            st.off = true;
            return Err(power_off());
        }
        let (mine, rest): (Vec<_>, Vec<_>) = st.pending.drain(..).partition(|p| p.path == path);
        st.pending = rest;
        for p in mine {
            std::os::unix::fs::FileExt::write_all_at(file, &p.bytes, p.offset)?;
        }
        file.sync_data()?;
        st.syncs += 1;
        Ok(())
    }

    /// Fails once the power is out.
    fn check(&self) -> std::io::Result<()> {
        if lock(&self.state).off {
            return Err(power_off());
        }
        Ok(())
    }

    /// `out` at `offset` of `path`, as written (synced or not).
    #[cfg(feature = "failpoints")]
    fn overlay(&self, path: &Path, offset: u64, out: &mut [u8]) {
        let st = lock(&self.state);
        let end = offset + out.len() as u64;
        for p in st.pending.iter().filter(|p| p.path == path) {
            let (ps, pe) = (p.offset, p.offset + p.bytes.len() as u64);
            let (s, e) = (ps.max(offset), pe.min(end));
            if s < e {
                out[(s - offset) as usize..(e - offset) as usize]
                    .copy_from_slice(&p.bytes[(s - ps) as usize..(e - ps) as usize]);
            }
        }
    }
}

/// Writes `buf` at `offset` of `file` (at `path`): held until synced under
/// a simulation.
pub(crate) fn write_at(file: &File, path: &Path, buf: &[u8], offset: u64) -> std::io::Result<()> {
    match sim_for(path) {
        Some(sim) => sim.write(path, offset, buf),
        None => std::os::unix::fs::FileExt::write_all_at(file, buf, offset),
    }
}

/// `fdatasync`s `file` (at `path`).
pub(crate) fn sync_data(file: &File, path: &Path) -> std::io::Result<()> {
    match sim_for(path) {
        Some(sim) => sim.sync(path, file),
        None => file.sync_data(),
    }
}

/// Fails if `path` is under a simulation whose power is out.
pub(crate) fn check(path: &Path) -> std::io::Result<()> {
    match sim_for(path) {
        Some(sim) => sim.check(),
        None => Ok(()),
    }
}

/// redb's file under a simulation: unsynced page writes held apart.
#[cfg(feature = "failpoints")]
#[derive(Debug)]
pub(crate) struct Backend {
    path: PathBuf,
    file: File,
    sim: Arc<Sim>,
}

#[cfg(feature = "failpoints")]
impl Backend {
    /// Opens (or creates) the database file at `path` under `sim`.
    pub(crate) fn open(path: &Path, sim: Arc<Sim>) -> std::io::Result<Backend> {
        sim.check()?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Backend {
            path: path.to_path_buf(),
            file,
            sim,
        })
    }
}

#[cfg(feature = "failpoints")]
impl redb::StorageBackend for Backend {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, out, offset)?;
        self.sim.overlay(&self.path, offset, out);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.sim.check()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.sim.sync(&self.path, &self.file)
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.sim.write(&self.path, offset, data)
    }
}
