//! Raft RPCs between nodes over HTTP, both sides: postcard bodies (compact
//! binary), one `POST` per RPC, a timeout on each.
//!
//! - client: [`HttpNetwork`] (openraft's network), [`InFlight`] snapshot
//!   transfers, [`SentBytes`], and [`LeaderSource`], which fetches snapshot
//!   segments and merged catch-up layers from the leader;
//! - server: `routes`, `/raft/append`, `/raft/vote`, `/raft/snapshot`,
//!   `/raft/segment/{name}` and `/raft/catchup`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::peer_auth::PeerAuth;
use crate::raft::{NodeId, TypeConfig};
use crate::snapshot::SegmentSource as _;

/// Content type of RPC bodies.
pub const CONTENT_TYPE: &str = "application/x-ramrod-postcard";

/// Encodes an RPC message.
///
/// # Panics
/// Never for openraft's and ramrod's types.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard serializes openraft's types")
}

/// Decodes an RPC message.
///
/// # Errors
/// If the bytes are not a message of this type.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| format!("malformed RPC body: {e}"))
}

/// Snapshot transfers this leader has in flight, by target. The controller
/// never purges past them.
///
/// A transfer counts from its first RPC until the target has caught up
/// ([`InFlight::settle`]): after the install, the protected index follows
/// the target's replication, so the log entries after the snapshot stay
/// until the target has them (openraft reports the snapshot's index as
/// matched as soon as the install ends, before the target has any of the
/// entries after it). A transfer whose calls all ended and that makes no
/// progress (failed, or the target went away) still counts for a grace
/// period: openraft retries it.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<Mutex<BTreeMap<NodeId, Transfer>>>);

#[derive(Debug)]
struct Transfer {
    /// The last log index the snapshot covers: the target needs every entry
    /// after it.
    index: u64,
    /// Install calls outstanding.
    calls: u32,
    /// When the last call ended.
    ended: Option<Instant>,
}

/// How long a transfer with no call outstanding still counts as in flight.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(30);

impl InFlight {
    fn start(&self, target: NodeId, index: u64) {
        let mut map = self.lock();
        let t = map.entry(target).or_insert(Transfer {
            index,
            calls: 0,
            ended: None,
        });
        // openraft sends one snapshot at a time per target: a call with
        // another index means it moved on to a newer snapshot.
        t.index = index;
        t.calls += 1;
        t.ended = None;
    }

    fn end(&self, target: NodeId) {
        if let Some(t) = self.lock().get_mut(&target) {
            t.calls = t.calls.saturating_sub(1);
            t.ended = Some(Instant::now());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Transfer>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The snapshot index in flight to `target`, if any.
    pub fn get(&self, target: NodeId) -> Option<u64> {
        let mut map = self.lock();
        map.retain(|_, t| t.calls > 0 || t.ended.is_none_or(|e| e.elapsed() < IN_FLIGHT_GRACE));
        map.get(&target).map(|t| t.index)
    }

    /// Follows the target's replication after an install: the protected
    /// index rises with `matched`, and the transfer ends once the target has
    /// everything up to `last` (the leader's last index).
    pub fn settle(&self, target: NodeId, matched: Option<u64>, last: u64) {
        let mut map = self.lock();
        let Some(t) = map.get_mut(&target) else {
            return;
        };
        let Some(m) = matched else {
            return;
        };
        if t.calls > 0 || m < t.index {
            return;
        }
        if m >= last {
            map.remove(&target);
        } else if m > t.index {
            t.index = m;
            t.ended = Some(Instant::now());
        }
    }
}

/// Bytes of Raft RPC bodies sent, by target (for catch-up accounting).
#[derive(Clone, Debug, Default)]
pub struct SentBytes(Arc<Mutex<BTreeMap<NodeId, u64>>>);

impl SentBytes {
    fn add(&self, target: NodeId, n: usize) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(target)
            .or_default() += n as u64;
    }

    /// Bytes sent to `target` so far.
    pub fn to(&self, target: NodeId) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target)
            .copied()
            .unwrap_or(0)
    }
}

/// Creates an [`HttpClient`] per target.
#[derive(Clone, Debug)]
pub struct HttpNetwork {
    client: reqwest::Client,
    timeout: Duration,
    in_flight: InFlight,
    sent: SentBytes,
    auth: Option<PeerAuth>,
}

impl HttpNetwork {
    /// A network whose RPCs time out after `timeout` (snapshot installs
    /// after openraft's `install_snapshot_timeout`), over TLS when `auth`
    /// has it.
    pub fn new(timeout: Duration, auth: Option<PeerAuth>) -> Self {
        HttpNetwork {
            client: super::peer_auth::http_client(auth.as_ref(), None),
            timeout,
            in_flight: InFlight::default(),
            sent: SentBytes::default(),
            auth,
        }
    }

    /// Bytes sent, by target.
    pub fn sent(&self) -> SentBytes {
        self.sent.clone()
    }

    /// The snapshot transfers in flight from this node.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }
}

/// Sends the request `builder` makes, signed for its method and path when
/// this node has a cluster secret: every request to a peer goes here.
async fn send_signed(
    client: &reqwest::Client,
    builder: reqwest::RequestBuilder,
    auth: Option<&PeerAuth>,
) -> reqwest::Result<reqwest::Response> {
    let mut req = builder.build()?;
    if let Some(auth) = auth {
        let v = auth.sign(req.method().as_str(), req.url().path());
        req.headers_mut().insert(
            super::peer_auth::HEADER,
            reqwest::header::HeaderValue::from_str(&v).expect("a signature is ASCII"),
        );
    }
    client.execute(req).await
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        HttpClient {
            client: self.client.clone(),
            target,
            node: node.clone(),
            base: super::peer_auth::url(self.auth.as_ref(), &node.addr, ""),
            timeout: self.timeout,
            in_flight: self.in_flight.clone(),
            sent: self.sent.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// RPCs to one node.
#[derive(Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    target: NodeId,
    node: BasicNode,
    base: String,
    timeout: Duration,
    in_flight: InFlight,
    sent: SentBytes,
    auth: Option<PeerAuth>,
}

type Rpc<R, E> = Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl HttpClient {
    async fn call<Req, Resp, E>(&self, path: &str, req: &Req, timeout: Duration) -> Rpc<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.call_encoded(path, encode(req), timeout).await
    }

    async fn call_encoded<Resp, E>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Rpc<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        self.sent.add(self.target, body.len());
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .timeout(timeout)
            .body(body);
        let resp = send_signed(&self.client, req, self.auth.as_ref())
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let msg = String::from_utf8_lossy(&body).to_string();
            return Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!("{path} answered {status}: {msg}")),
            )));
        }
        let result: Result<Resp, RaftError<NodeId, E>> = decode(&body)
            .map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e))))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for HttpClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let timeout = option.hard_ttl().min(self.timeout);
        let n = rpc.entries.len() as u64;
        let body = encode(&rpc);
        if body.len() > MAX_APPEND_BYTES && n > 1 {
            // Fewer entries: openraft retries at once with the hint.
            let hint = (n * MAX_APPEND_BYTES as u64 / body.len() as u64).clamp(1, n - 1);
            return Err(RPCError::PayloadTooLarge(
                openraft::error::PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        self.call_encoded("/raft/append", body, timeout).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        // The follower fetches the segments it lacks before it answers the
        // last chunk: that may take longer than an ordinary RPC.
        let index = rpc.meta.last_log_id.map_or(0, |l| l.index);
        self.in_flight.start(self.target, index);
        // Ends the call even if this future is dropped (a timeout).
        struct Call<'a>(&'a InFlight, NodeId);
        impl Drop for Call<'_> {
            fn drop(&mut self) {
                self.0.end(self.1);
            }
        }
        let _call = Call(&self.in_flight, self.target);
        self.call("/raft/snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>, openraft::error::Infallible> {
        let timeout = option.hard_ttl().min(self.timeout);
        self.call("/raft/vote", &rpc, timeout).await
    }
}

/// Fetches snapshot segments from the current leader over HTTP
/// (`GET /raft/segment/{name}`): how a follower that does not share the
/// leader's store gets the segments it lacks.
#[derive(Debug)]
pub struct LeaderSource {
    client: reqwest::Client,
    metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
    hint: LeaderHint,
    auth: Option<PeerAuth>,
}

/// The address of the node that sent the last snapshot install: a node
/// that joins with nothing does not know its leader's address from its
/// own membership until the snapshot is in.
pub type LeaderHint = Arc<std::sync::Mutex<Option<String>>>;

impl LeaderSource {
    /// A source that follows `metrics` to find the leader.
    pub fn new(
        metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
        timeout: Duration,
        hint: LeaderHint,
        auth: Option<PeerAuth>,
    ) -> Self {
        LeaderSource {
            client: super::peer_auth::http_client(auth.as_ref(), Some(timeout)),
            metrics,
            hint,
            auth,
        }
    }

    fn leader_addr(&self) -> Option<String> {
        let known = {
            let m = self.metrics.borrow();
            m.current_leader.and_then(|leader| {
                m.membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone())
            })
        };
        known.or_else(|| self.hint.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

#[async_trait::async_trait]
impl crate::snapshot::SegmentSource for LeaderSource {
    fn describe_source(&self) -> String {
        match self.leader_addr() {
            Some(a) => format!(
                "leader at {}",
                super::peer_auth::url(self.auth.as_ref(), &a, "")
            ),
            None => "the leader (unknown)".into(),
        }
    }

    async fn fetch_segment(&self, name: &str) -> Result<bytes::Bytes, crate::snapshot::StoreError> {
        self.call(name, |c, url| c.get(format!("{url}/raft/segment/{name}")))
            .await
    }

    async fn fetch_blob(&self, name: &str) -> Result<bytes::Bytes, crate::snapshot::StoreError> {
        // The leader first; a leader elected before it fetched the blob
        // lacks it, so then every other member.
        let leader = self.leader_addr();
        let mut last = match self.fetch_segment(name).await {
            Ok(b) => return Ok(b),
            Err(e) => e,
        };
        let others: Vec<String> = {
            let m = self.metrics.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != m.id)
                .map(|(_, n)| n.addr.clone())
                .filter(|a| Some(a) != leader.as_ref())
                .collect()
        };
        for addr in others {
            match self
                .call_at(&addr, name, |c, url| {
                    c.get(format!("{url}/raft/segment/{name}"))
                })
                .await
            {
                Ok(b) => return Ok(b),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn merged_layers(
        &self,
        manifest: &crate::snapshot::Manifest,
        from: usize,
    ) -> Option<Result<Vec<bytes::Bytes>, crate::snapshot::StoreError>> {
        self.leader_addr()?;
        let key = format!("catch-up {}#{from}", manifest.id);
        let req = encode(&CatchUpRequest {
            manifest: manifest.encode(),
            from: from as u64,
        });
        let body = match self
            .call(&key, |c, url| {
                c.post(format!("{url}/raft/catchup"))
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(req.clone())
            })
            .await
        {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some(
            decode::<CatchUpReply>(&body)
                .map(|r| {
                    r.segments
                        .into_iter()
                        .map(|b| bytes::Bytes::from(b.into_vec()))
                        .collect()
                })
                .map_err(|reason| self.error(&key, reason)),
        )
    }
}

impl LeaderSource {
    fn error(&self, key: &str, reason: String) -> crate::snapshot::StoreError {
        crate::snapshot::StoreError::Other {
            store: self.describe_source(),
            key: key.to_string(),
            reason,
        }
    }

    /// Sends the request `make` builds for the leader's base URL; the body of
    /// a successful answer, `NotFound` on 404, an error naming `key`
    /// otherwise.
    async fn call(
        &self,
        key: &str,
        make: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, crate::snapshot::StoreError> {
        let addr = self
            .leader_addr()
            .ok_or_else(|| self.error(key, "no leader is known".into()))?;
        self.call_at(&addr, key, make).await
    }

    /// [`call`](Self::call) to the node at `addr`.
    async fn call_at(
        &self,
        addr: &str,
        key: &str,
        make: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, crate::snapshot::StoreError> {
        let url = super::peer_auth::url(self.auth.as_ref(), addr, "");
        let resp = send_signed(&self.client, make(&self.client, &url), self.auth.as_ref())
            .await
            .map_err(|e| self.error(key, e.to_string()))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.error(key, e.to_string()))?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(crate::snapshot::StoreError::NotFound {
                store: self.describe_source(),
                key: key.to_string(),
            });
        }
        if !status.is_success() {
            return Err(self.error(
                key,
                format!("answered {status}: {}", String::from_utf8_lossy(&body)),
            ));
        }
        Ok(body)
    }
}

/// Asks the node at `addr` whether it belongs to a cluster
/// (`GET /raft/initialized`, signed with `auth`).
///
/// # Errors
/// If it does not answer, or answers with an error.
pub(super) async fn peer_initialized(addr: &str, auth: Option<&PeerAuth>) -> Result<bool, String> {
    let client = super::peer_auth::http_client(auth, Some(Duration::from_secs(2)));
    let url = super::peer_auth::url(auth, addr, "/raft/initialized");
    let resp = send_signed(&client, client.get(url), auth)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let reply: Initialized = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(reply.initialized)
}

/// The answer of `GET /raft/initialized`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Initialized {
    /// Whether the node belongs to a cluster.
    pub initialized: bool,
}

/// `POST /raft/catchup`: the delta layers `from..` of a manifest, merged.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CatchUpRequest {
    /// The manifest (encoded) being installed.
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
    /// The first delta layer the follower lacks (1 is the first delta).
    pub from: u64,
}

/// The answer to a [`CatchUpRequest`]: the merged segments.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CatchUpReply {
    /// Encoded segments, in key order.
    pub segments: Vec<serde_bytes::ByteBuf>,
}

/// The largest body of an append a node sends: a batch over it is split
/// (openraft retries with fewer entries), so one entry of the largest
/// request always fits.
pub const MAX_APPEND_BYTES: usize = 32 << 20;

/// The largest body of the other peer requests a node accepts (a vote, a
/// snapshot's manifest chunk, a catch-up request naming a manifest).
pub const MAX_PEER_BODY: usize = 16 << 20;

/// The server side: the `/raft/*` routes of a node, behind peer
/// authentication (the cluster secret; without one, every peer request is
/// refused), with bounded bodies: an append at most [`MAX_APPEND_BYTES`]
/// (and the encoding's slack), anything else [`MAX_PEER_BODY`]. Snapshot
/// data never travels in one body: a follower fetches segments one by one.
pub(super) fn routes(node: super::NodeHandle, auth: Option<PeerAuth>) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/raft/append",
            post(server::append).layer(DefaultBodyLimit::max(MAX_APPEND_BYTES + (1 << 20))),
        )
        .route("/raft/vote", post(server::vote))
        .route("/raft/snapshot", post(server::snapshot))
        .route("/raft/segment/{name}", get(server::segment))
        .route("/raft/catchup", post(server::catch_up))
        .route("/raft/initialized", get(server::initialized))
        .layer(DefaultBodyLimit::max(MAX_PEER_BODY))
        .layer(axum::middleware::map_response(server::too_large))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            server::authenticate,
        ))
        .with_state(node)
}

mod server {
    use std::sync::Arc;

    use axum::Json;
    use axum::body::Bytes;
    use axum::extract::{ConnectInfo, Extension, Path, Request, State};
    use axum::http::{StatusCode, header};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use serde::Serialize;

    use super::PeerAuth;
    use crate::node::tls::PeerCert;
    use crate::raft::NodeId;

    use super::{CONTENT_TYPE, CatchUpReply, CatchUpRequest, decode, encode};
    use crate::node::NodeHandle;
    use crate::node::http::wire::ErrorBody;
    use crate::snapshot::{Manifest, SnapshotError, StoreError};

    type Node = State<NodeHandle>;

    fn reply<T: Serialize>(v: &T) -> Response {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(v)).into_response()
    }

    fn error(status: StatusCode, msg: impl Into<String>) -> Response {
        (status, Json(ErrorBody::new(msg))).into_response()
    }

    /// The node a peer request was authenticated as.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Sender(pub NodeId);

    /// Lets a peer request through only when its sender is authenticated
    /// (the cluster secret, its TLS certificate, or both), before its body
    /// is read; the handlers get the sender as [`Sender`].
    pub(super) async fn authenticate(
        State(auth): State<Arc<Option<PeerAuth>>>,
        mut req: Request,
        next: Next,
    ) -> Response {
        let Some(auth) = auth.as_ref() else {
            return error(
                StatusCode::UNAUTHORIZED,
                "this node has neither a cluster secret nor TLS: it accepts no requests \
                 from other nodes",
            );
        };
        let header = req
            .headers()
            .get(crate::node::peer_auth::HEADER)
            .and_then(|v| v.to_str().ok());
        let cert = req
            .extensions()
            .get::<ConnectInfo<PeerCert>>()
            .and_then(|c| c.0.0.as_ref());
        match auth.verify(header, req.method().as_str(), req.uri().path(), cert) {
            Ok(id) => {
                req.extensions_mut().insert(Sender(id));
                next.run(req).await
            }
            Err(refused) => error(
                StatusCode::from_u16(refused.status).unwrap_or(StatusCode::UNAUTHORIZED),
                refused.reason,
            ),
        }
    }

    /// A Raft RPC whose sender (the candidate or leader in its vote) is
    /// not the node that sent it: refused, so one node's credentials
    /// cannot speak for another.
    fn not_sender(sender: Sender, claimed: Option<NodeId>) -> Option<Response> {
        (claimed != Some(sender.0)).then(|| {
            error(
                StatusCode::FORBIDDEN,
                format!(
                    "node {} sent a Raft RPC as node {}",
                    sender.0,
                    claimed.map_or_else(|| "none".to_string(), |c| c.to_string())
                ),
            )
        })
    }

    /// A body over the limit: a JSON answer naming the limit.
    pub(super) async fn too_large(resp: Response) -> Response {
        if !crate::node::http::is_plain_too_large(&resp) {
            return resp;
        }
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a peer request is at most {} bytes ({} for an append)",
                super::MAX_PEER_BODY,
                super::MAX_APPEND_BYTES + (1 << 20)
            ),
        )
    }

    /// A store failure: logged here with its details (which name paths and
    /// buckets), answered without them.
    fn store_failed(what: &str, e: &dyn std::fmt::Display) -> Response {
        tracing::error!(error = %e, "{what} failed");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed on this node (see its log)"),
        )
    }

    /// The answer of a node that has shut down.
    fn gone() -> Response {
        error(StatusCode::SERVICE_UNAVAILABLE, "the node has shut down")
    }

    pub(super) async fn append(
        State(node): Node,
        Extension(sender): Extension<Sender>,
        body: Bytes,
    ) -> Response {
        let Ok(p) = node.parts() else { return gone() };
        match decode::<openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig>>(&body) {
            Ok(req) => {
                if let Some(refused) = not_sender(sender, req.vote.leader_id().voted_for()) {
                    return refused;
                }
                reply(&p.raft.append_entries(req).await)
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        }
    }

    pub(super) async fn vote(
        State(node): Node,
        Extension(sender): Extension<Sender>,
        body: Bytes,
    ) -> Response {
        let Ok(p) = node.parts() else { return gone() };
        match decode::<openraft::raft::VoteRequest<NodeId>>(&body) {
            Ok(req) => {
                if let Some(refused) = not_sender(sender, req.vote.leader_id().voted_for()) {
                    return refused;
                }
                let until = p.votes_withheld.load(std::sync::atomic::Ordering::Acquire);
                let applied = p.sm.last_applied().map_or(0, |l| l.index);
                if until > applied {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "node {} is recovering from the cluster: it votes again once it has \
                             applied index {until}",
                            p.id
                        ),
                    );
                }
                reply(&p.raft.vote(req).await)
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        }
    }

    pub(super) async fn snapshot(
        State(node): Node,
        Extension(from): Extension<Sender>,
        body: Bytes,
    ) -> Response {
        let Ok(p) = node.parts() else { return gone() };
        match decode::<openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig>>(&body) {
            Ok(req) => {
                let sender = req.vote.leader_id().voted_for();
                if let Some(refused) = not_sender(from, sender) {
                    return refused;
                }
                if let Some(addr) = sender.and_then(|id| {
                    req.meta
                        .last_membership
                        .membership()
                        .get_node(&id)
                        .map(|n| n.addr.clone())
                }) {
                    *p.leader_hint.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
                }
                reply(&p.raft.install_snapshot(req).await)
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        }
    }

    /// Whether this node belongs to a cluster (asked by a node about to
    /// create one).
    pub(super) async fn initialized(State(node): Node) -> Response {
        match node.is_initialized().await {
            Ok(initialized) => Json(super::Initialized { initialized }).into_response(),
            Err(_) => gone(),
        }
    }

    /// A snapshot segment from this node's store, for a follower installing
    /// a snapshot.
    pub(super) async fn segment(State(node): Node, Path(name): Path<String>) -> Response {
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return error(
                StatusCode::BAD_REQUEST,
                "a segment name is its blake3 hash: 64 hex digits",
            );
        }
        match node
            .internals()
            .sm
            .snapshots()
            .store()
            .get_segment(&name)
            .await
        {
            Ok(bytes) => bytes.into_response(),
            Err(StoreError::NotFound { .. }) => {
                error(StatusCode::NOT_FOUND, format!("no segment {name}"))
            }
            Err(e) => store_failed("reading a segment", &e),
        }
    }

    /// The delta layers a returning follower lacks, merged into new
    /// segments.
    pub(super) async fn catch_up(State(node): Node, body: Bytes) -> Response {
        let req: CatchUpRequest = match decode(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let manifest = match Manifest::decode(&req.manifest) {
            Ok(m) => m,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("malformed manifest: {e}")),
        };
        let Ok(p) = node.parts() else { return gone() };
        let snaps = p.sm.snapshots().clone();
        match snaps.merge_layers(&manifest, req.from as usize).await {
            Ok(segments) => reply(&CatchUpReply {
                segments: segments
                    .into_iter()
                    .map(|s| serde_bytes::ByteBuf::from(s.bytes.to_vec()))
                    .collect(),
            }),
            Err(SnapshotError::Manifest { reason, .. }) => error(StatusCode::BAD_REQUEST, reason),
            Err(e) => store_failed("merging delta layers", &e),
        }
    }
}
