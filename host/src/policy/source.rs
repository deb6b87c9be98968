//! Where a policy component comes from.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::builtin::builtin;
use super::error::PolicyError;

/// Where to load a policy component from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// A built-in policy, by name (`entries`, `bytes-or-age`, `adaptive`).
    Builtin(String),
    /// A component file.
    File(PathBuf),
    /// Component bytes the caller already holds, with a label for messages.
    Bytes {
        /// Names the component in logs and errors.
        label: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
}

impl PolicySource {
    /// Parses what a user typed: `builtin:NAME`, the bare name of a built-in
    /// (when no file of that name exists), or a path.
    pub fn parse(s: &str) -> PolicySource {
        if let Some(name) = s.strip_prefix("builtin:") {
            return PolicySource::Builtin(name.to_string());
        }
        if builtin(s).is_some() && !std::path::Path::new(s).exists() {
            return PolicySource::Builtin(s.to_string());
        }
        PolicySource::File(PathBuf::from(s))
    }

    /// Reads the component bytes.
    ///
    /// # Errors
    /// [`PolicyError::Read`] or [`PolicyError::UnknownBuiltin`].
    pub fn bytes(&self) -> Result<Arc<[u8]>, PolicyError> {
        match self {
            PolicySource::Builtin(name) => builtin(name)
                .map(Arc::from)
                .ok_or_else(|| PolicyError::UnknownBuiltin { name: name.clone() }),
            PolicySource::File(path) => {
                std::fs::read(path)
                    .map(Arc::from)
                    .map_err(|source| PolicyError::Read {
                        path: path.clone(),
                        source,
                    })
            }
            PolicySource::Bytes { bytes, .. } => Ok(bytes.clone()),
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Builtin(name) => write!(f, "builtin:{name}"),
            PolicySource::File(path) => write!(f, "{}", path.display()),
            PolicySource::Bytes { label, .. } => f.write_str(label),
        }
    }
}
