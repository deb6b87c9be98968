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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use crate::node::http::wire::{self, BatchCommand, Record};

use crate::node::http::wire::{
    AddMember, Batch, CompareJson, ErrorBody, ListReply, TxnOpJson, TxnReply, TxnRequest, WatchLine,
};
use crate::{
    AuditEntry, Event, Filter, Guard, KeyValue, Listing, Members, NodeId, PolicyStatus, Scope,
    SnapshotInfo, SnapshotKind, Status, Swapped, Txn, TxnResult, WatchError, WatchUpdate, Written,
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
    /// slashes would be read as a relative path, and `batch`, `txn` and
    /// `watch` are endpoints.
    #[error(
        "key {key:?} cannot travel in a URL path (a `.` or `..` part, or the name of an endpoint: batch, txn, watch)"
    )]
    Key {
        /// The key.
        key: String,
    },
    /// A guarded write's condition did not hold (412); nothing was written.
    #[error(
        "{url}: the guard failed: the key's mod revision is {mod_revision} (0: absent), the store's revision {revision}"
    )]
    GuardFailed {
        /// The URL called.
        url: String,
        /// The store's revision.
        revision: u64,
        /// The key's mod revision (0: absent).
        mod_revision: u64,
    },
    /// A watch could not start (410 when compacted) or ended.
    #[error("{url}: {source}")]
    Watch {
        /// The URL called.
        url: String,
        /// Why.
        source: WatchError,
    },
    /// The request cannot be written as JSON (a key or value that is not
    /// UTF-8).
    #[error("{what} cannot travel as JSON (not UTF-8)")]
    Encode {
        /// What.
        what: String,
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
            ClientError::GuardFailed { .. } => Some(StatusCode::PRECONDITION_FAILED),
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

/// A client of one node's HTTP API, over TCP or the node's unix socket.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    /// To the node (its socket, or TCP), with the request timeout.
    http: reqwest::Client,
    /// To leaders it is sent to (TCP), with the request timeout.
    tcp: reqwest::Client,
    /// To the node, for watch streams: no timeout on the whole answer.
    streams: reqwest::Client,
    base: Url,
    unix: Option<PathBuf>,
    token: Option<String>,
    /// The CA certificates HTTPS servers are checked against (the
    /// cluster's); `None`: the system's roots.
    ca: Option<Arc<[reqwest::Certificate]>>,
    timeout: Duration,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a watch stream may stay silent (a node sends progress lines
/// every second by default) before the client gives up on it.
const STREAM_SILENCE: Duration = Duration::from_secs(60);

/// An HTTP client over `unix` (or TCP), with a total timeout, or (`None`,
/// for streams) a timeout on silence only.
fn http_client(
    unix: Option<&Path>,
    timeout: Option<Duration>,
    ca: Option<&[reqwest::Certificate]>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        b = b.tls_certs_only(ca.iter().cloned());
    }
    b = match timeout {
        Some(t) => b.timeout(t),
        None => b.read_timeout(STREAM_SILENCE),
    };
    if let Some(path) = unix {
        b = b.unix_socket(path);
    }
    b.build()
}

/// One call, replayable against another node.
struct Call<'a> {
    method: Method,
    path: &'a [&'a str],
    query: Vec<(&'a str, String)>,
    body: Option<Vec<u8>>,
}

impl Client {
    /// A client of the node at `addr` (`http://host:port`,
    /// `https://host:port`, or `host:port`), with a 30 s timeout per
    /// request. For a cluster with its own CA (`[tls]`), add
    /// [`with_ca_pem`](Self::with_ca_pem).
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
        if !matches!(base.scheme(), "http" | "https")
            || base.host().is_none()
            || base.cannot_be_a_base()
        {
            return Err(bad(
                "only http://host:port and https://host:port are supported".into(),
            ));
        }
        if base.path() != "/" || base.query().is_some() {
            return Err(bad("a node address has no path or query".into()));
        }
        Client::build(base, None).map_err(|e| bad(e.to_string()))
    }

    /// A client of the node listening on the unix socket at `path`
    /// (`listen-unix`). Calls a follower answers with 421 go on to the
    /// leader over TCP.
    ///
    /// # Errors
    /// [`ClientError::Address`] if the HTTP client cannot be built.
    pub fn unix(path: impl Into<PathBuf>) -> Result<Client, ClientError> {
        let path = path.into();
        let base = Url::parse("http://localhost/").expect("a fixed URL parses");
        Client::build(base, Some(path.clone())).map_err(|e| ClientError::Address {
            addr: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    fn build(base: Url, unix: Option<PathBuf>) -> Result<Client, reqwest::Error> {
        let mut c = Client {
            http: reqwest::Client::new(),
            tcp: reqwest::Client::new(),
            streams: reqwest::Client::new(),
            base,
            unix,
            token: None,
            ca: None,
            timeout: DEFAULT_TIMEOUT,
        };
        c.rebuild()?;
        Ok(c)
    }

    fn rebuild(&mut self) -> Result<(), reqwest::Error> {
        let ca = self.ca.as_deref();
        self.http = http_client(self.unix.as_deref(), Some(self.timeout), ca)?;
        self.tcp = http_client(None, Some(self.timeout), ca)?;
        self.streams = http_client(self.unix.as_deref(), None, ca)?;
        Ok(())
    }

    /// Checks HTTPS servers against the CA certificates in `pem` (the
    /// cluster CA of `[tls]`, `ca.pem` from `ramrod certs init`) instead of
    /// the system's; leaders a unix-socket client is sent to are then
    /// reached over HTTPS too.
    ///
    /// # Errors
    /// [`ClientError::Address`] if `pem` holds no certificate.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Client, ClientError> {
        let addr = self.base().to_string();
        let bad = |reason: String| ClientError::Address {
            addr: addr.clone(),
            reason,
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| bad(format!("the CA certificates: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Address {
                addr: self.base().to_string(),
                reason: "the CA file holds no PEM certificate".into(),
            });
        }
        self.ca = Some(certs.into());
        match self.rebuild() {
            Ok(()) => Ok(self),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// The admin API's bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Some(token.into());
        self
    }

    /// A timeout per request other than 30 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        let ca = self.ca.as_deref();
        if let (Ok(http), Ok(tcp)) = (
            http_client(self.unix.as_deref(), Some(timeout), ca),
            http_client(None, Some(timeout), ca),
        ) {
            self.http = http;
            self.tcp = tcp;
            self.timeout = timeout;
        }
        self
    }

    /// The node's base URL (`http://localhost` for a unix socket).
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The unix socket this client talks to, if it does.
    pub fn socket(&self) -> Option<&Path> {
        self.unix.as_deref()
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
        Ok(self
            .get_record(key, local)
            .await?
            .map(|kv| kv.value.to_vec()))
    }

    /// The record (value and revisions) of `key` (linearizable unless
    /// `local`); `None` if unset.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_kv(&self, key: &str, local: bool) -> Result<Option<KeyValue>, ClientError> {
        self.get_record(key, local).await
    }

    async fn get_record(&self, key: &str, local: bool) -> Result<Option<KeyValue>, ClientError> {
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
        let (url, resp) = match self.respond(&call, false).await {
            Ok(r) => r,
            // The node's own "no such key", not a 404 for a missing route
            // (a node serving only the Raft endpoints).
            Err(ClientError::Status {
                status, message, ..
            }) if status == StatusCode::NOT_FOUND && message == NO_SUCH_KEY => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = |name: &str| -> Result<u64, ClientError> {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| ClientError::Decode {
                    url: url.clone(),
                    reason: format!("no `{name}` header"),
                })
        };
        let (create_revision, mod_revision, version) = (
            header("x-ramrod-create-revision")?,
            header("x-ramrod-mod-revision")?,
            header("x-ramrod-version")?,
        );
        let value = body(&url, resp).await?;
        Ok(Some(KeyValue {
            key: key.as_bytes().to_vec(),
            value,
            create_revision,
            mod_revision,
            version,
        }))
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

    /// Sets `key` to `value` if `guard` holds.
    ///
    /// # Errors
    /// [`ClientError::GuardFailed`] with the key's mod revision when it
    /// does not; as [`put`](Self::put).
    pub async fn put_if(
        &self,
        key: &str,
        value: impl Into<Vec<u8>>,
        guard: Guard,
    ) -> Result<Written, ClientError> {
        let segments = key_path(key)?;
        self.json(Call {
            method: Method::PUT,
            path: &segments,
            query: guard_query(guard),
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

    /// Removes `key` if `guard` holds.
    ///
    /// # Errors
    /// As [`put_if`](Self::put_if).
    pub async fn delete_if(&self, key: &str, guard: Guard) -> Result<Written, ClientError> {
        let segments = key_path(key)?;
        self.json(Call {
            method: Method::DELETE,
            path: &segments,
            query: guard_query(guard),
            body: None,
        })
        .await
    }

    /// Runs a guarded transaction (on the leader).
    ///
    /// # Errors
    /// [`ClientError::Encode`] for keys or values that are not UTF-8; 400
    /// naming the compare or operation at fault; as [`put`](Self::put).
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResult, ClientError> {
        let enc = |what: String| ClientError::Encode { what };
        let req = TxnRequest {
            compare: txn
                .compares
                .iter()
                .enumerate()
                .map(|(i, c)| CompareJson::of(c).ok_or_else(|| enc(format!("compare[{i}]"))))
                .collect::<Result<_, _>>()?,
            success: ops_json(&txn.success, "success")?,
            failure: ops_json(&txn.failure, "failure")?,
        };
        let body = serde_json::to_vec(&req).expect("a transaction serializes");
        let reply: TxnReply = self
            .json(Call {
                method: Method::POST,
                path: &["kv", "txn"],
                query: Vec::new(),
                body: Some(body),
            })
            .await?;
        Ok(reply.into())
    }

    /// Watches the keys `filter` selects on this node: every change after
    /// `from` (`None`: from now), with values unless `values` is false.
    ///
    /// # Errors
    /// [`ClientError::Watch`] with [`WatchError::Compacted`] (410) when the
    /// node no longer holds that history; as [`get`](Self::get).
    pub async fn watch(
        &self,
        filter: &Filter,
        from: Option<u64>,
        values: bool,
    ) -> Result<WatchStream, ClientError> {
        let utf8 = |b: &[u8]| {
            String::from_utf8(b.to_vec()).map_err(|_| ClientError::Encode {
                what: "the watched key".into(),
            })
        };
        let mut query = match filter {
            Filter::Key(k) => vec![("key", utf8(k)?)],
            Filter::Prefix(p) => vec![("prefix", utf8(p)?)],
        };
        if let Some(r) = from {
            query.push(("from_revision", r.to_string()));
        }
        if !values {
            query.push(("values", "false".into()));
        }
        let call = Call {
            method: Method::GET,
            path: &["kv", "watch"],
            query,
            body: None,
        };
        let (url, resp) = self.respond(&call, true).await?;
        Ok(WatchStream {
            url,
            resp,
            buf: Vec::new(),
            done: false,
        })
    }

    /// Up to `limit` records whose key starts with `prefix`, after `after`,
    /// in key order, with the revision they were read at; linearizable
    /// unless `local`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        local: bool,
    ) -> Result<Listing, ClientError> {
        let mut query = vec![("prefix", prefix.to_string()), ("limit", limit.to_string())];
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        if local {
            query.push(("local", "true".into()));
        }
        let reply: ListReply = self
            .json(Call {
                method: Method::GET,
                path: &["kv"],
                query,
                body: None,
            })
            .await?;
        Ok(reply.into())
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
    /// A component over the node's `policy.max-upload-bytes` is refused
    /// before it is sent (a `413` naming the limit), rather than cut off
    /// mid-upload.
    ///
    /// # Errors
    /// As [`status`](Self::status); 400 naming why the policy was refused,
    /// 413 when the component is over the node's limit.
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
                let max = self.policy().await?.max_upload_bytes;
                if max > 0 && bytes.len() as u64 > max {
                    return Err(ClientError::Status {
                        url: format!("{}/admin/policy", self.base()),
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        message: format!(
                            "{label} is {} bytes; this node accepts policies of at most {max} \
                             bytes (`policy.max-upload-bytes`): not uploaded",
                            bytes.len()
                        ),
                    });
                }
                query.push(("label", label));
                Some(bytes)
            }
        };
        self.admin(Method::PUT, "policy", query, body).await
    }

    /// The cluster's members as the node knows them.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub async fn members(&self) -> Result<Members, ClientError> {
        self.admin(Method::GET, "members", Vec::new(), None).await
    }

    /// Adds node `id` at `addr` (`host:port`): a learner first, a voter once
    /// it has caught up (followed to the leader). Catching up can take a
    /// while: give the client a timeout that covers it.
    ///
    /// # Errors
    /// As [`status`](Self::status); 400 naming what is wrong.
    pub async fn add_member(&self, id: NodeId, addr: &str) -> Result<Members, ClientError> {
        let body = serde_json::to_vec(&AddMember {
            id,
            addr: addr.to_string(),
        })
        .expect("a member serializes");
        self.admin(Method::POST, "members", Vec::new(), Some(body))
            .await
    }

    /// Removes node `id` (followed to the leader; removing the leader
    /// hands leadership over first, and the removal goes on at the new
    /// leader).
    ///
    /// # Errors
    /// As [`status`](Self::status); 400 naming what is wrong.
    pub async fn remove_member(&self, id: NodeId) -> Result<Members, ClientError> {
        let id = id.to_string();
        self.json(Call {
            method: Method::DELETE,
            path: &["admin", "members", &id],
            query: Vec::new(),
            body: None,
        })
        .await
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
        let (url, resp) = self.respond(call, false).await?;
        let bytes = body(&url, resp).await?;
        Ok((url, bytes.to_vec()))
    }

    /// Sends `call`, following 421 answers to the leader; the URL answered
    /// last and the answer, a success (its body unread).
    async fn respond(
        &self,
        call: &Call<'_>,
        stream: bool,
    ) -> Result<(String, reqwest::Response), ClientError> {
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
            let shown = match &self.unix {
                Some(p) if hop == 0 => format!(
                    "unix:{}:{}{}",
                    p.display(),
                    url.path(),
                    url.query().map(|q| format!("?{q}")).unwrap_or_default()
                ),
                _ => url.to_string(),
            };
            let http = match (hop, stream) {
                (0, true) => &self.streams,
                (0, false) => &self.http,
                _ => &self.tcp,
            };
            let mut req = http.request(call.method.clone(), url);
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
            if status.is_success() {
                return Ok((shown, resp));
            }
            let body = body(&shown, resp).await?.to_vec();
            let err: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            if status == StatusCode::MISDIRECTED_REQUEST {
                let (leader, leader_addr) =
                    err.map_or((None, None), |e| (e.leader_id, e.leader_addr));
                let scheme = if self.ca.is_some() || self.base.scheme() == "https" {
                    "https"
                } else {
                    "http"
                };
                let next = leader_addr
                    .as_deref()
                    .and_then(|a| Url::parse(&format!("{scheme}://{a}")).ok())
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
            if let Some(e) = &err {
                match (status, e.revision, e.mod_revision, e.oldest_revision) {
                    (StatusCode::PRECONDITION_FAILED, Some(revision), Some(mod_revision), _) => {
                        return Err(ClientError::GuardFailed {
                            url: shown,
                            revision,
                            mod_revision,
                        });
                    }
                    (StatusCode::GONE, Some(current), _, Some(oldest)) => {
                        return Err(ClientError::Watch {
                            url: shown,
                            source: WatchError::Compacted {
                                asked: call
                                    .query
                                    .iter()
                                    .find(|(k, _)| *k == "from_revision")
                                    .and_then(|(_, v)| v.parse().ok())
                                    .unwrap_or(0),
                                oldest,
                                current,
                            },
                        });
                    }
                    _ => {}
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

/// The body of `resp` from `url`.
async fn body(url: &str, resp: reqwest::Response) -> Result<bytes::Bytes, ClientError> {
    resp.bytes().await.map_err(|source| ClientError::Transport {
        url: url.to_string(),
        source,
    })
}

/// The parameters of a guarded write.
fn guard_query(guard: Guard) -> Vec<(&'static str, String)> {
    match guard {
        Guard::ModRevision(r) => vec![("if_mod_revision", r.to_string())],
        Guard::Absent => vec![("if_absent", "true".into())],
    }
}

/// A branch of a transaction as JSON.
fn ops_json(ops: &[crate::TxnOp], branch: &str) -> Result<Vec<TxnOpJson>, ClientError> {
    ops.iter()
        .enumerate()
        .map(|(i, o)| {
            TxnOpJson::of(o).ok_or_else(|| ClientError::Encode {
                what: format!("{branch}[{i}]"),
            })
        })
        .collect()
}

/// A watch over HTTP: the lines of the node's stream, decoded.
#[derive(Debug)]
pub struct WatchStream {
    url: String,
    resp: reqwest::Response,
    buf: Vec<u8>,
    done: bool,
}

impl WatchStream {
    /// The next change or progress report.
    ///
    /// # Errors
    /// [`ClientError::Watch`] with why the node ended the stream
    /// (compacted, lagged, shutdown); [`ClientError::Transport`] if the
    /// connection broke; [`ClientError::Decode`] for a line that does not
    /// decode.
    pub async fn next(&mut self) -> Result<WatchUpdate, ClientError> {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                let decoded: WatchLine =
                    serde_json::from_slice(&line).map_err(|e| ClientError::Decode {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    })?;
                return match decoded {
                    WatchLine::Event { kind, kv } => Ok(WatchUpdate::Event(Event {
                        kind,
                        kv: kv.into_kv(),
                    })),
                    WatchLine::Progress { revision } => Ok(WatchUpdate::Progress { revision }),
                    WatchLine::End {
                        reason,
                        oldest_revision,
                        revision,
                        ..
                    } => {
                        self.done = true;
                        let source = match reason.as_str() {
                            "compacted" => WatchError::Compacted {
                                asked: 0,
                                oldest: oldest_revision.unwrap_or(0),
                                current: revision.unwrap_or(0),
                            },
                            "lagged" => WatchError::Lagged { buffer: 0 },
                            _ => WatchError::Shutdown,
                        };
                        Err(ClientError::Watch {
                            url: self.url.clone(),
                            source,
                        })
                    }
                };
            }
            if self.done {
                if !self.buf.is_empty() {
                    return Err(ClientError::Decode {
                        url: self.url.clone(),
                        reason: format!(
                            "the stream ended inside a line ({} bytes)",
                            self.buf.len()
                        ),
                    });
                }
                return Err(ClientError::Watch {
                    url: self.url.clone(),
                    source: WatchError::Shutdown,
                });
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                Ok(None) => {
                    self.done = true;
                }
                Err(source) => {
                    return Err(ClientError::Transport {
                        url: self.url.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// The path of `key` under `/kv/` (each `/`-separated part encoded).
fn key_path(key: &str) -> Result<Vec<&str>, ClientError> {
    let parts: Vec<&str> = std::iter::once("kv").chain(key.split('/')).collect();
    // A URL reads `.` and `..` parts (also as %2E) as relative paths.
    // `/kv/batch`, `/kv/txn` and `/kv/watch` are endpoints.
    if matches!(key, "batch" | "txn" | "watch") {
        return Err(ClientError::Key {
            key: key.to_string(),
        });
    }
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
        assert!(Client::new("https://127.0.0.1:7001").is_ok());
        for bad in [
            "ftp://h:1",
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
