//! Compiled components, cached in memory and (optionally) on disk.
//!
//! Keys are the blake3 hash of the component bytes plus the engine's
//! precompile-compatibility hash, so a cache entry is only ever loaded into an
//! engine that can run it. On disk, an entry is
//!
//! ```text
//! magic "RMRDCWSM" | version u8 = 1 | blake3(payload) [32] | payload len u64 LE | payload
//! ```
//!
//! and is verified before it is deserialized; a damaged entry is logged,
//! ignored and rewritten.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::PolicyError;

const MAGIC: &[u8; 8] = b"RMRDCWSM";
const VERSION: u8 = 1;
const HEADER: usize = 8 + 1 + 32 + 8;

/// Where a compiled component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompileSource {
    /// Already compiled in this process.
    Memory,
    /// Loaded from the on-disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

pub(crate) struct CompileCache {
    memory: Mutex<HashMap<[u8; 32], Component>>,
    dir: Option<PathBuf>,
    engine_hash: String,
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into blake3, so the engine hash is stable across runs.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let h = self.0.finalize();
        u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self, PolicyError> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(|source| PolicyError::Cache {
                path: d.clone(),
                source,
            })?;
        }
        let mut h = Blake3Hasher(blake3::Hasher::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_hash = h.0.finalize().to_hex()[..16].to_string();
        Ok(CompileCache {
            memory: Mutex::new(HashMap::new()),
            dir,
            engine_hash,
        })
    }

    /// Returns the compiled component for `bytes` (whose blake3 hash is `hash`).
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        hash: &blake3::Hash,
        bytes: &[u8],
        label: &str,
    ) -> Result<(Component, CompileSource), PolicyError> {
        let key = *hash.as_bytes();
        if let Some(c) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok((c.clone(), CompileSource::Memory));
        }
        let path = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.cwasm", hash.to_hex(), self.engine_hash)));
        if let Some(path) = &path {
            match load(engine, path) {
                Ok(Some(c)) => {
                    self.remember(key, &c);
                    return Ok((c, CompileSource::Disk));
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(path = %path.display(), %why, "ignoring damaged compile cache entry")
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| PolicyError::Invalid {
            label: label.to_string(),
            reason: format!("{e:#}"),
        })?;
        if let Some(path) = &path
            && let Err(why) = store(&component, path)
        {
            tracing::warn!(path = %path.display(), %why, "could not write compile cache entry");
        }
        self.remember(key, &component);
        Ok((component, CompileSource::Compiled))
    }

    fn remember(&self, key: [u8; 32], c: &Component) {
        let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        // Policies are few; bound the map anyway so a swap loop of distinct
        // components cannot grow it without end.
        if m.len() >= 64 {
            m.clear();
        }
        m.insert(key, c.clone());
    }
}

/// Reads a cache entry; `Ok(None)` when there is none, `Err` when it is damaged.
fn load(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let payload = verify(&bytes)?;
    // SAFETY: `Component::deserialize` trusts its input to be the output of
    // `precompile_component` from a compatible engine. The payload was written
    // by `store` below from `Component::serialize` of an engine with the same
    // compatibility hash (it is part of the file name, and wasmtime checks it
    // again), and its blake3 checksum was verified just above, so it is the
    // exact bytes we wrote. The cache directory belongs to the node: whoever
    // can write it could replace the node's binary too.
    #[expect(
        unsafe_code,
        reason = "loading a precompiled component; see SAFETY above"
    )]
    let c = unsafe { Component::deserialize(engine, payload) }.map_err(|e| format!("{e:#}"))?;
    Ok(Some(c))
}

/// Checks the header and checksum of a cache entry and returns its payload.
pub(crate) fn verify(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a ramrod compile cache entry".into());
    }
    if bytes[8] != VERSION {
        return Err(format!("unknown cache entry version {}", bytes[8]));
    }
    let sum = &bytes[9..41];
    let len = u64::from_le_bytes(bytes[41..49].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if blake3::hash(payload).as_bytes() != sum {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// `payload` framed as a cache entry: header, checksum and length.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn store(component: &Component, path: &Path) -> Result<(), String> {
    let payload = component.serialize().map_err(|e| format!("{e:#}"))?;
    let out = frame(&payload);
    // Unique per writer: several runtimes (nodes) in one process may share
    // a cache directory and store the same component at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, &out).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_rejects_damage() {
        let payload = b"compiled bytes".to_vec();
        let mut ok = Vec::new();
        ok.extend_from_slice(MAGIC);
        ok.push(VERSION);
        ok.extend_from_slice(blake3::hash(&payload).as_bytes());
        ok.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        ok.extend_from_slice(&payload);
        assert_eq!(verify(&ok).unwrap(), &payload[..]);

        let mut flipped = ok.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(verify(&flipped).unwrap_err().contains("checksum"));
        assert!(
            verify(&ok[..ok.len() - 1])
                .unwrap_err()
                .contains("header says")
        );
        let mut v2 = ok.clone();
        v2[8] = 2;
        assert!(verify(&v2).unwrap_err().contains("version 2"));
        assert!(verify(b"garbage").is_err());
    }
}
