//! A typed client of a node's HTTP API: the client KV API and the admin API.
//!
//! Writes and linearizable reads sent to a follower are answered `421` with
//! the leader's address; the client follows that to the leader (a few hops
//! at most, while an election settles) and remembers nothing: every call
//! starts at the node it was made for.
//!
//! ```no_run
//! # async fn run() -> Result<(), ramrod::client::ClientError> {
//! let node = ramrod::client::Client::new("http://127.0.0.1:7001")?.with_token("change-me");
//! node.put("microvm/default/vm-1", "spec").await?;
//! assert_eq!(node.get("microvm/default/vm-1").await?.as_deref(), Some(&b"spec"[..]));
//! println!("leader is {:?}", node.status().await?.leader);
//! # Ok(()) }
//! ```

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use crate::node::http::wire::{BatchCommand, Pair};

use crate::node::http::wire::{Batch, ErrorBody};
use crate::{
    AuditEntry, NodeId, PolicyStatus, Scope, SnapshotInfo, SnapshotKind, Status, Swapped, Written,
};

/// The message of the node's 404 for an unset key.
const NO_SUCH_KEY: &str = "no such key";

/// How many 421 answers a call follows before giving up.
const MAX_HOPS: usize = 3;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address is not an `http://host:port` URL.
    #[error("{addr:?} is not a node address (http://host:port): {reason}")]
    Address {
        /// What was given.
        addr: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The node could not be reached, or the connection broke.
    #[error("reaching {url}: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The node is not the leader and did not say which node is (or the
    /// redirects went round in circles).
    #[error("{url}: not the leader (leader: {})", leader.map_or_else(|| "unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        /// The URL called last.
        url: String,
        /// The leader it named, if any.
        leader: Option<NodeId>,
        /// Its address, if known.
        leader_addr: Option<String>,
    },
    /// The node answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// The status.
        status: StatusCode,
        /// The node's message.
        message: String,
    },
    /// The key cannot travel in a URL path: a `.` or `..` part between
    /// slashes would be read as a relative path.
    #[error("key {key:?} has a `.` or `..` part, which a URL path cannot carry")]
    Key {
        /// The key.
        key: String,
    },
    /// The answer did not decode.
    #[error("{url}: the answer does not decode: {reason}")]
    Decode {
        /// The URL called.
        url: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status the node answered, if it answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::NotLeader { .. } => Some(StatusCode::MISDIRECTED_REQUEST),
            _ => None,
        }
    }
}

/// The component of a policy swap.
#[derive(Clone, Debug)]
pub enum PolicyUpload {
    /// A built-in policy of the node, by name.
    Builtin(String),
    /// A component; `label` names it in the node's messages.
    Wasm {
        /// Names the component.
        label: String,
        /// The component's bytes.
        bytes: Vec<u8>,
    },
}

/// A client of one node's HTTP API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// One call, replayable against another node.
struct Call<'a> {
    method: Method,
    path: &'a [&'a str],
    query: Vec<(&'a str, String)>,
    body: Option<Vec<u8>>,
}

impl Client {
    /// A client of the node at `addr` (`http://host:port`, or `host:port`),
    /// with a 30 s timeout per request.
    ///
    /// # Errors
    /// [`ClientError::Address`] if `addr` is not such an address.
    pub fn new(addr: &str) -> Result<Client, ClientError> {
        let with_scheme = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let bad = |reason: String| ClientError::Address {
            addr: addr.to_string(),
            reason,
        };
        let base = Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
        if base.scheme() != "http" || base.host().is_none() || base.cannot_be_a_base() {
            return Err(bad("only http://host:port is supported".into()));
        }
        if base.path() != "/" || base.query().is_some() {
            return Err(bad("a node address has no path or query".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Client {
            http,
            base,
            token: None,
        })
    }

    /// The admin API's bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// A timeout per request other than 30 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        if let Ok(http) = reqwest::Client::builder().timeout(timeout).build() {
            self.http = http;
        }
        self
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The value of `key` (linearizable, on the leader); `None` if unset.
    ///
    /// # Errors
    /// [`ClientError`]: unreachable, no leader, or an error answer.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.get_value(key, false).await
    }

    /// The value of `key` in the node's own state (any node; possibly
    /// stale on a follower).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_local(&self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.get_value(key, true).await
    }

    async fn get_value(&self, key: &str, local: bool) -> Result<Option<Vec<u8>>, ClientError> {
        let segments = key_path(key)?;
        let call = Call {
            method: Method::GET,
            path: &segments,
            query: if local {
                vec![("local", "true".into())]
            } else {
                Vec::new()
            },
            body: None,
        };
        match self.send(&call).await {
            Ok((_, body)) => Ok(Some(body)),
            // The node's own "no such key", not a 404 for a missing route
            // (a node serving only the Raft endpoints).
            Err(ClientError::Status {
                status, message, ..
            }) if status == StatusCode::NOT_FOUND && message == NO_SUCH_KEY => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`ClientError`]: unreachable, no leader, or an error answer (400 for
    /// an oversized value, with the limit).
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<Written, ClientError> {
        let segments = key_path(key)?;
        self.json(Call {
            method: Method::PUT,
            path: &segments,
            query: Vec::new(),
            body: Some(value.into()),
        })
        .await
    }

    /// Removes `key`.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn delete(&self, key: &str) -> Result<Written, ClientError> {
        let segments = key_path(key)?;
        self.json(Call {
            method: Method::DELETE,
            path: &segments,
            query: Vec::new(),
            body: None,
        })
        .await
    }

    /// Up to `limit` pairs whose key starts with `prefix`, after `after`, in
    /// key order; linearizable unless `local`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        local: bool,
    ) -> Result<Vec<Pair>, ClientError> {
        let mut query = vec![("prefix", prefix.to_string()), ("limit", limit.to_string())];
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        if local {
            query.push(("local", "true".into()));
        }
        self.json(Call {
            method: Method::GET,
            path: &["kv"],
            query,
            body: None,
        })
        .await
    }

    /// Applies `commands` atomically, as one Raft entry.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn batch(&self, commands: Vec<BatchCommand>) -> Result<Written, ClientError> {
        let body = serde_json::to_vec(&Batch { commands }).expect("a batch serializes");
        self.json(Call {
            method: Method::POST,
            path: &["kv", "batch"],
            query: Vec::new(),
            body: Some(body),
        })
        .await
    }

    /// The node's status (admin API).
    ///
    /// # Errors
    /// [`ClientError`]: unreachable, or 401/403 without the right token.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.admin(Method::GET, "status", Vec::new(), None).await
    }

    /// The node's metrics, Prometheus text (admin API).
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (_, body) = self
            .send(&Call {
                method: Method::GET,
                path: &["admin", "metrics"],
                query: Vec::new(),
                body: None,
            })
            .await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The newest `limit` decisions of the node's controller, oldest first.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub async fn decisions(&self, limit: usize) -> Result<Vec<AuditEntry>, ClientError> {
        self.admin(
            Method::GET,
            "decisions",
            vec![("limit", limit.to_string())],
            None,
        )
        .await
    }

    /// The node's running policy.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub async fn policy(&self) -> Result<PolicyStatus, ClientError> {
        self.admin(Method::GET, "policy", Vec::new(), None).await
    }

    /// A snapshot now (or right after the running one), of `kind` or what
    /// the chain calls for.
    ///
    /// # Errors
    /// As [`status`](Self::status); 500 if the build failed.
    pub async fn snapshot(&self, kind: Option<SnapshotKind>) -> Result<SnapshotInfo, ClientError> {
        let query = kind.map(|k| ("kind", k.to_string())).into_iter().collect();
        self.admin(Method::POST, "snapshot", query, None).await
    }

    /// Swaps the node's policy (`Scope::Local`) or rolls one out to the
    /// cluster (`Scope::Cluster`, followed to the leader).
    ///
    /// # Errors
    /// As [`status`](Self::status); 400 naming why the policy was refused.
    pub async fn swap_policy(
        &self,
        policy: PolicyUpload,
        config: &str,
        scope: Scope,
    ) -> Result<Swapped, ClientError> {
        let mut query = vec![("config", config.to_string())];
        if scope == Scope::Cluster {
            query.push(("cluster", "true".into()));
        }
        let body = match policy {
            PolicyUpload::Builtin(name) => {
                query.push(("builtin", name));
                None
            }
            PolicyUpload::Wasm { label, bytes } => {
                query.push(("label", label));
                Some(bytes)
            }
        };
        self.admin(Method::PUT, "policy", query, body).await
    }

    async fn admin<T: DeserializeOwned>(
        &self,
        method: Method,
        what: &str,
        query: Vec<(&str, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        self.json(Call {
            method,
            path: &["admin", what],
            query,
            body,
        })
        .await
    }

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ClientError> {
        let (url, body) = self.send(&call).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    /// Sends `call`, following 421 answers to the leader; the URL answered
    /// last and the body of a success.
    async fn send(&self, call: &Call<'_>) -> Result<(String, Vec<u8>), ClientError> {
        let mut base = self.base.clone();
        for hop in 0..=MAX_HOPS {
            let mut url = base.clone();
            url.path_segments_mut()
                .expect("checked: the base URL can be a base")
                .clear()
                .extend(call.path);
            if !call.query.is_empty() {
                url.query_pairs_mut()
                    .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
            }
            let shown = url.to_string();
            let mut req = self.http.request(call.method.clone(), url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &call.body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.map_err(|source| ClientError::Transport {
                url: shown.clone(),
                source,
            })?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|source| ClientError::Transport {
                    url: shown.clone(),
                    source,
                })?
                .to_vec();
            if status.is_success() {
                return Ok((shown, body));
            }
            let err: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            if status == StatusCode::MISDIRECTED_REQUEST {
                let (leader, leader_addr) =
                    err.map_or((None, None), |e| (e.leader_id, e.leader_addr));
                let next = leader_addr
                    .as_deref()
                    .and_then(|a| Url::parse(&format!("http://{a}")).ok())
                    .filter(|u| *u != base);
                match next {
                    Some(next) if hop < MAX_HOPS => {
                        base = next;
                        continue;
                    }
                    _ => {
                        return Err(ClientError::NotLeader {
                            url: shown,
                            leader,
                            leader_addr,
                        });
                    }
                }
            }
            let message =
                err.map_or_else(|| String::from_utf8_lossy(&body).into_owned(), |e| e.error);
            return Err(ClientError::Status {
                url: shown,
                status,
                message,
            });
        }
        unreachable!("the loop returns on its last hop")
    }
}

/// The path of `key` under `/kv/` (each `/`-separated part encoded).
fn key_path(key: &str) -> Result<Vec<&str>, ClientError> {
    let parts: Vec<&str> = std::iter::once("kv").chain(key.split('/')).collect();
    // A URL reads `.` and `..` parts (also as %2E) as relative paths.
    if parts[1..].iter().any(|p| {
        matches!(
            p.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
    }) {
        return Err(ClientError::Key {
            key: key.to_string(),
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_addresses_that_cannot_travel_are_refused() {
        assert!(matches!(key_path("a/../b"), Err(ClientError::Key { .. })));
        assert!(matches!(key_path("."), Err(ClientError::Key { .. })));
        assert_eq!(key_path("vm/a.b/..c").unwrap(), ["kv", "vm", "a.b", "..c"]);
        assert!(Client::new("http://127.0.0.1:7001").is_ok());
        assert!(Client::new("127.0.0.1:7001").is_ok());
        for bad in [
            "https://h:1",
            "http://h:1/prefix",
            "unix:///tmp/s",
            "http://h:1/?a=b",
        ] {
            assert!(
                matches!(Client::new(bad), Err(ClientError::Address { .. })),
                "{bad}"
            );
        }
    }
}
