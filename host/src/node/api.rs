//! The HTTP API of a node: Raft RPCs (postcard bodies) and the client
//! key-value API (JSON).
//!
//! Client API:
//! - `GET /kv/{key}`: the value (linearizable read; `?local=true` reads this
//!   node's state as it is, from any node), 404 if unset;
//! - `PUT /kv/{key}` with the value as the body; `DELETE /kv/{key}`;
//! - `GET /kv?prefix=P&limit=N[&after=K]`: pairs in key order (JSON), from
//!   the first key after `K`;
//! - `POST /kv/batch` with `{"commands": [...]}`: applied atomically.
//!
//! A write or read sent to a follower is answered `421 Misdirected Request`
//! with the leader's id and address. Malformed or oversized requests get a
//! 4xx with a message, and nothing is applied.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::Raft;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};

use super::network::{CONTENT_TYPE, decode, encode};
use crate::raft::{Command, NodeId, Request, TypeConfig};
use crate::state_machine::KvStateMachine;

/// The largest client or admin request body accepted.
pub const MAX_BODY: usize = 8 << 20;

/// The largest policy component a rollout carries (it travels in one Raft
/// entry, and replication batches entries).
pub const MAX_POLICY_BYTES: usize = 4 << 20;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// This node's Raft.
    pub raft: Raft<TypeConfig>,
    /// Its state machine.
    pub sm: KvStateMachine,
    /// Its log store.
    pub log: crate::log_store::LogStore,
    /// The admin API's bearer token; `None` closes the admin API.
    pub token: Option<String>,
    /// The compaction controller.
    pub controller: super::controller::ControllerHandle,
    /// How the node came up.
    pub recovery: Arc<super::Recovery>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The router of a node.
pub fn router(state: AppState) -> Router {
    // Raft RPCs between members are not size-limited: a replication batch
    // may carry many entries of up to `MAX_BODY` each, and refusing one
    // would stall the cluster.
    let raft = Router::new()
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        .route("/raft/segment/{name}", get(raft_segment))
        .route("/raft/catchup", post(raft_catchup))
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/kv", get(kv_list))
        .route("/kv/batch", post(kv_batch))
        .route("/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/admin/status", get(admin_status))
        .route("/admin/snapshot", post(admin_snapshot))
        .route("/admin/metrics", get(admin_metrics))
        .route("/admin/decisions", get(admin_decisions))
        .route("/admin/policy", get(admin_policy).put(admin_policy_put))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .merge(raft)
        .with_state(Arc::new(state))
}

type Shared = State<Arc<AppState>>;

fn postcard_reply<T: Serialize>(v: &T) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(v)).into_response()
}

fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(ErrorBody::new(msg))).into_response()
}

/// The JSON body of an error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// The leader's id, when the request must go there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<NodeId>,
    /// The leader's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_addr: Option<String>,
}

impl ErrorBody {
    fn new(msg: impl Into<String>) -> Self {
        ErrorBody {
            error: msg.into(),
            leader_id: None,
            leader_addr: None,
        }
    }
}

async fn raft_append(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => postcard_reply(&s.raft.append_entries(req).await),
        Err(e) => bad_request(e),
    }
}

async fn raft_vote(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => postcard_reply(&s.raft.vote(req).await),
        Err(e) => bad_request(e),
    }
}

async fn raft_snapshot(State(s): Shared, body: Bytes) -> Response {
    match decode(&body) {
        Ok(req) => postcard_reply(&s.raft.install_snapshot(req).await),
        Err(e) => bad_request(e),
    }
}

/// A snapshot segment from this node's store, for a follower installing a
/// snapshot.
async fn raft_segment(State(s): Shared, Path(name): Path<String>) -> Response {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad_request("a segment name is its hash in hex");
    }
    match s.sm.snapshots().store().get_segment(&name).await {
        Ok(bytes) => bytes.into_response(),
        Err(crate::snapshot::StoreError::NotFound { .. }) => (
            StatusCode::NOT_FOUND,
            Json(ErrorBody::new(format!("no segment {name}"))),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody::new(e.to_string())),
        )
            .into_response(),
    }
}

/// The delta layers a returning follower lacks, merged into new segments.
async fn raft_catchup(State(s): Shared, body: Bytes) -> Response {
    let req: super::network::CatchUpRequest = match decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let manifest = match crate::snapshot::Manifest::decode(&req.manifest) {
        Ok(m) => m,
        Err(e) => return bad_request(format!("malformed manifest: {e}")),
    };
    match s
        .sm
        .snapshots()
        .merge_layers(&manifest, req.from as usize)
        .await
    {
        Ok(segments) => postcard_reply(&super::network::CatchUpReply {
            segments: segments
                .into_iter()
                .map(|s| serde_bytes::ByteBuf::from(s.bytes.to_vec()))
                .collect(),
        }),
        Err(crate::snapshot::SnapshotError::Manifest { reason, .. }) => bad_request(reason),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody::new(e.to_string())),
        )
            .into_response(),
    }
}

/// Maps a Raft error to an answer: 421 with the leader when this node is
/// not the leader, 503 otherwise.
fn raft_error<E: std::fmt::Display>(
    e: RaftError<NodeId, E>,
    forward: impl Fn(&E) -> Option<(Option<NodeId>, Option<String>)>,
) -> Response {
    if let RaftError::APIError(api) = &e
        && let Some((leader_id, leader_addr)) = forward(api)
    {
        let body = ErrorBody {
            error: "not the leader".into(),
            leader_id,
            leader_addr,
        };
        return (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ErrorBody::new(e.to_string())),
    )
        .into_response()
}

/// The answer to a write.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteReply {
    /// The log index it was applied at.
    pub index: u64,
    /// Keys written or removed.
    pub changed_keys: u64,
}

async fn write(s: &AppState, req: Request) -> Response {
    match s.raft.client_write(req).await {
        Ok(r) => Json(WriteReply {
            index: r.log_id.index,
            changed_keys: r.data.changed_keys,
        })
        .into_response(),
        Err(e) => raft_error(e, |api| match api {
            ClientWriteError::ForwardToLeader(f) => {
                Some((f.leader_id, f.leader_node.as_ref().map(|n| n.addr.clone())))
            }
            ClientWriteError::ChangeMembershipError(_) => None,
        }),
    }
}

/// Waits until this node may serve a linearizable read.
async fn linearizable(s: &AppState) -> Result<(), Response> {
    match s.raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(e) => Err(raft_error(e, |api| {
            let openraft::error::CheckIsLeaderError::ForwardToLeader(f) = api else {
                return None;
            };
            Some((f.leader_id, f.leader_node.as_ref().map(|n| n.addr.clone())))
        })),
    }
}

/// `GET /kv/{key}` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Read this node's state as it is, without asking the leader: possibly
    /// stale, served by any node.
    #[serde(default)]
    pub local: bool,
}

async fn kv_get(State(s): Shared, Path(key): Path<String>, Query(q): Query<ReadQuery>) -> Response {
    if !q.local
        && let Err(r) = linearizable(&s).await
    {
        return r;
    }
    match s.sm.get(key.as_bytes()) {
        Some(v) => v.to_vec().into_response(),
        None => (StatusCode::NOT_FOUND, Json(ErrorBody::new("no such key"))).into_response(),
    }
}

async fn kv_put(State(s): Shared, Path(key): Path<String>, body: Bytes) -> Response {
    write(&s, Request::put(key.into_bytes(), body.to_vec())).await
}

async fn kv_delete(State(s): Shared, Path(key): Path<String>) -> Response {
    let req = Request {
        commands: vec![Command::Delete {
            key: key.into_bytes(),
        }],
    };
    write(&s, req).await
}

/// `GET /kv` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// At most this many (default 100, at most 10,000).
    pub limit: Option<usize>,
    /// Only keys after this one (to page through a listing).
    pub after: Option<String>,
    /// Read this node's state without asking the leader (possibly stale).
    #[serde(default)]
    pub local: bool,
}

/// One pair of a listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pair {
    /// The key (UTF-8, lossy).
    pub key: String,
    /// The value (UTF-8, lossy).
    pub value: String,
}

async fn kv_list(State(s): Shared, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100);
    if limit > 10_000 {
        return bad_request("limit must be at most 10000");
    }
    if !q.local
        && let Err(r) = linearizable(&s).await
    {
        return r;
    }
    let pairs: Vec<Pair> =
        s.sm.scan_prefix_after(
            q.prefix.as_bytes(),
            q.after.as_deref().map(str::as_bytes),
            limit,
        )
        .into_iter()
        .map(|(k, v)| Pair {
            key: String::from_utf8_lossy(&k).into_owned(),
            value: String::from_utf8_lossy(&v).into_owned(),
        })
        .collect();
    Json(pairs).into_response()
}

/// One command of a batch, as JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BatchCommand {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Remove keys in `start..end`.
    DeleteRange {
        /// First key removed.
        start: String,
        /// First key kept.
        end: String,
    },
    /// Remove keys starting with `prefix`.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
}

/// `POST /kv/batch` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Applied in order, atomically.
    pub commands: Vec<BatchCommand>,
}

async fn kv_batch(State(s): Shared, body: Bytes) -> Response {
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("malformed batch: {e}")),
    };
    if batch.commands.is_empty() {
        return bad_request("a batch needs at least one command");
    }
    let commands = batch
        .commands
        .into_iter()
        .map(|c| match c {
            BatchCommand::Put { key, value } => Command::Put {
                key: key.into_bytes(),
                value: value.into_bytes(),
            },
            BatchCommand::Delete { key } => Command::Delete {
                key: key.into_bytes(),
            },
            BatchCommand::DeleteRange { start, end } => Command::DeleteRange {
                start: start.into_bytes(),
                end: end.into_bytes(),
            },
            BatchCommand::DeletePrefix { prefix } => Command::DeletePrefix {
                prefix: prefix.into_bytes(),
            },
        })
        .collect();
    write(&s, Request { commands }).await
}

/// Checks the bearer token; the refusal to send, if any: 401 without it or
/// with a wrong one, 403 when the node has no token (admin API closed).
fn refuse(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = s.token.as_deref() else {
        return Some(
            (
                StatusCode::FORBIDDEN,
                Json(ErrorBody::new(
                    "the admin API is closed: no token is configured",
                )),
            )
                .into_response(),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(ErrorBody::new("missing or wrong bearer token")),
            )
                .into_response(),
        )
    }
}

/// `GET /admin/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// Node id.
    pub id: NodeId,
    /// `Leader`, `Follower`, `Candidate` or `Learner`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last applied index.
    pub last_applied: Option<u64>,
    /// Live log facts.
    pub log: crate::log_store::LogStats,
    /// Snapshot counters.
    pub snapshots: crate::state_machine::SnapshotStats,
    /// The newest snapshot: id, kind, last index, layers.
    pub current_snapshot: Option<serde_json::Value>,
    /// Keys in the state.
    pub keys: usize,
    /// The state's hash.
    pub state_hash: String,
    /// The running policy.
    pub policy: PolicyStatus,
    /// The controller's counters.
    pub controller: super::controller::ControllerStats,
    /// How the node came up.
    pub recovery: super::Recovery,
}

/// The running policy, as `GET /admin/policy` and the status show it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Its name (`native-entries` when only the native fallback runs).
    pub name: String,
    /// Its full hash (empty for the native one).
    pub hash: String,
    /// Where it was loaded from.
    pub source: String,
    /// Its configuration (TOML text).
    pub config: String,
    /// `config`, `rollout` or `local`.
    pub origin: String,
    /// For a rollout: the index of its entry.
    pub index: Option<u64>,
    /// The last rollout this node could not load.
    pub last_error: Option<String>,
    /// The policy host's counters.
    pub stats: crate::policy::PolicyStats,
}

fn policy_status(s: &AppState) -> PolicyStatus {
    let shared = s.controller.shared();
    let host = shared.host();
    let origin = shared.origin();
    let (name, hash, source, config) = match host.active_meta() {
        Some(m) => (m.name, m.hash, m.source, m.config),
        None => (
            crate::policy::NATIVE_NAME.to_string(),
            String::new(),
            "native".into(),
            String::new(),
        ),
    };
    PolicyStatus {
        name,
        hash,
        source,
        config,
        origin: origin.origin,
        index: origin.index,
        last_error: origin.last_error,
        stats: host.stats(),
    }
}

async fn admin_status(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let m = s.raft.metrics().borrow().clone();
    let current = s.sm.current_manifest().map(|m| {
        serde_json::json!({
            "id": m.id,
            "kind": m.kind,
            "last_index": m.last_log_id.map(|l| l.index),
            "layers": 1 + m.deltas.len(),
            "chain_bytes": m.chain_bytes(),
        })
    });
    Json(Status {
        id: m.id,
        role: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_applied: m.last_applied.map(|l| l.index),
        log: s.log.stats(),
        snapshots: s.sm.stats(),
        current_snapshot: current,
        keys: s.sm.len(),
        state_hash: s.sm.state_hash(),
        policy: policy_status(&s),
        controller: s.controller.shared().stats(),
        recovery: (*s.recovery).clone(),
    })
    .into_response()
}

/// `POST /admin/snapshot?kind=full|incremental` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    /// The kind; default: what the chain calls for.
    pub kind: Option<crate::snapshot::SnapshotKind>,
}

async fn admin_snapshot(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<SnapshotQuery>,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    match s.controller.snapshot(q.kind).await {
        Ok(m) => Json(serde_json::json!({
            "id": m.id,
            "kind": m.kind,
            "last_index": m.last_log_id.map(|l| l.index),
            "bytes_written": m.bytes_written,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody::new(e.to_string())),
        )
            .into_response(),
    }
}

/// Renders the node's metrics in the Prometheus text format.
pub fn metrics_text(s: &AppState) -> String {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    let m = s.raft.metrics().borrow().clone();
    let log = s.log.stats();
    let snaps = s.sm.stats();
    let mut reg = Registry::with_prefix("ramrod");
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: i64| {
        let g: Gauge = Gauge::default();
        g.set(v);
        reg.register(name, help, g);
    };
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        &mut reg,
        "raft_term",
        "Current Raft term",
        i(m.current_term),
    );
    gauge(
        &mut reg,
        "raft_is_leader",
        "1 if this node is the leader",
        i64::from(m.current_leader == Some(m.id)),
    );
    gauge(
        &mut reg,
        "raft_last_applied_index",
        "Last applied log index",
        i(m.last_applied.map_or(0, |l| l.index)),
    );
    gauge(
        &mut reg,
        "log_entries",
        "Entries in the log",
        i(log.entries),
    );
    gauge(
        &mut reg,
        "log_bytes",
        "Bytes of encoded entries in the log",
        i(log.bytes),
    );
    gauge(
        &mut reg,
        "log_first_index",
        "First index in the log",
        i(log.first_index),
    );
    gauge(
        &mut reg,
        "log_last_index",
        "Last index in the log",
        i(log.last_index),
    );
    let rate: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    rate.set(log.append_rate);
    reg.register("log_append_rate", "Smoothed appends per second", rate);
    let snapshots = Family::<Vec<(String, String)>, Counter>::default();
    snapshots
        .get_or_create(&vec![("kind".into(), "full".into())])
        .inc_by(snaps.full);
    snapshots
        .get_or_create(&vec![("kind".into(), "incremental".into())])
        .inc_by(snaps.incremental);
    reg.register("snapshots", "Snapshots written, by kind", snapshots);
    counter(
        &mut reg,
        "snapshot_bytes_written",
        "Segment bytes written by snapshots",
        snaps.bytes_written,
    );
    counter(
        &mut reg,
        "snapshots_installed",
        "Snapshots installed from another node",
        snaps.installed,
    );
    counter(
        &mut reg,
        "snapshot_bytes_fetched",
        "Segment bytes fetched while installing snapshots",
        snaps.bytes_fetched,
    );
    gauge(
        &mut reg,
        "state_keys",
        "Keys in the state",
        i(s.sm.len() as u64),
    );
    gauge(
        &mut reg,
        "state_dirty_keys",
        "Keys changed since the last snapshot",
        i(snaps.dirty_keys),
    );
    let ps = s.controller.shared().host().stats();
    let cs = s.controller.shared().stats();
    let decisions = Family::<Vec<(String, String)>, Counter>::default();
    for (by, n) in [
        ("policy", ps.by_policy),
        ("fallback", ps.by_fallback),
        ("native", ps.by_native),
    ] {
        decisions
            .get_or_create(&vec![("by".into(), by.into())])
            .inc_by(n);
    }
    reg.register(
        "policy_decisions",
        "Compaction decisions, by who made them",
        decisions,
    );
    let failures = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, n) in &ps.failures {
        failures
            .get_or_create(&vec![("kind".into(), kind.to_string())])
            .inc_by(*n);
    }
    reg.register(
        "policy_failures",
        "Failed policy calls (the fallback decided), by kind",
        failures,
    );
    counter(
        &mut reg,
        "policy_clamped",
        "Decisions the host had to clamp",
        ps.clamped,
    );
    counter(
        &mut reg,
        "policy_rollbacks",
        "Policies rolled back after repeated failures",
        ps.rollbacks,
    );
    counter(&mut reg, "policy_swaps", "Policy swaps", ps.swaps);
    let builds = Family::<Vec<(String, String)>, Counter>::default();
    builds
        .get_or_create(&vec![("kind".into(), "full".into())])
        .inc_by(cs.builds_full);
    builds
        .get_or_create(&vec![("kind".into(), "incremental".into())])
        .inc_by(cs.builds_incremental);
    reg.register(
        "controller_builds",
        "Snapshot builds the controller started, by kind",
        builds,
    );
    counter(
        &mut reg,
        "controller_build_failures",
        "Snapshot builds that failed",
        cs.build_failures,
    );
    counter(
        &mut reg,
        "controller_queued",
        "Snapshot requests queued behind a running build",
        cs.queued,
    );
    counter(
        &mut reg,
        "controller_purges",
        "Purges asked of Raft",
        cs.purges,
    );
    counter(
        &mut reg,
        "log_purged_entries",
        "Entries purged from the log's head",
        cs.purged_entries,
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).expect("writing to a String");
    out
}

async fn admin_metrics(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics_text(&s),
    )
        .into_response()
}

/// `GET /admin/decisions?limit=N` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsQuery {
    /// The newest N decisions (default 50, at most the audit log's size).
    pub limit: Option<usize>,
}

async fn admin_decisions(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<DecisionsQuery>,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let limit = q.limit.unwrap_or(50);
    if limit > super::controller::AUDIT_CAPACITY {
        return bad_request(format!(
            "limit must be at most {}",
            super::controller::AUDIT_CAPACITY
        ));
    }
    Json(s.controller.shared().audit(limit)).into_response()
}

async fn admin_policy(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    Json(policy_status(&s)).into_response()
}

/// `PUT /admin/policy` parameters. The body is the component (`.wasm`)
/// unless `builtin` names a built-in policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// A built-in policy by name instead of a body.
    pub builtin: Option<String>,
    /// The policy's configuration (TOML text); default empty.
    #[serde(default)]
    pub config: String,
    /// A label for messages (default: `builtin:NAME` or `upload`).
    pub label: Option<String>,
    /// Roll out to the whole cluster through the Raft log (on the leader)
    /// instead of swapping this node's policy only.
    #[serde(default)]
    pub cluster: bool,
}

/// What a policy swap or rollout answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyReply {
    /// The policy's name.
    pub name: String,
    /// Its hash.
    pub hash: String,
    /// `local` or `cluster`.
    pub scope: String,
    /// For a rollout: the index of its entry; every node runs the policy
    /// from there on.
    pub index: Option<u64>,
    /// Decisions of the dry run the host would clamp, by scenario.
    pub dry_run_clamps: Vec<(String, Vec<crate::sdk::Clamp>)>,
}

async fn admin_policy_put(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<PolicyQuery>,
    body: Bytes,
) -> Response {
    use crate::policy::{PolicySource, builtin, builtin_names, dry_run};
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let (label, wasm) = match (&q.builtin, body.is_empty()) {
        (Some(name), true) => match builtin(name) {
            Some(b) => (format!("builtin:{name}"), b.to_vec()),
            None => {
                return bad_request(format!(
                    "no built-in policy {name:?} (there are: {})",
                    builtin_names().join(", ")
                ));
            }
        },
        (Some(_), false) => return bad_request("give either builtin= or a body, not both"),
        (None, true) => {
            return bad_request("the body must be a policy component (.wasm), or use builtin=");
        }
        (None, false) => (
            q.label.clone().unwrap_or_else(|| "upload".into()),
            body.to_vec(),
        ),
    };
    let label = q.label.clone().unwrap_or(label);
    if wasm.len() > MAX_POLICY_BYTES {
        return bad_request(format!(
            "the policy is {} bytes; at most {MAX_POLICY_BYTES} are accepted",
            wasm.len()
        ));
    }
    let host = s.controller.shared().host().clone();
    if !q.cluster {
        let source = PolicySource::Bytes {
            label,
            bytes: wasm.into(),
        };
        return match super::controller::swap_in(&host, source, q.config.clone()).await {
            Ok(report) => {
                s.controller.shared().note_local_swap();
                s.controller.check();
                Json(PolicyReply {
                    name: report.meta.name,
                    hash: report.meta.hash,
                    scope: "local".into(),
                    index: None,
                    dry_run_clamps: report.dry_run_clamps,
                })
                .into_response()
            }
            Err(e) => bad_request(format!("policy refused: {e}")),
        };
    }
    // A rollout: validate here, before the entry enters the log.
    let (bytes, lbl, config) = (wasm.clone(), label.clone(), q.config.clone());
    let h = host.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let (policy, _) = h.runtime().load(&bytes, &lbl, &config)?;
        let (_, clamps) = dry_run(&policy, h.bounds())?;
        Ok::<_, crate::policy::PolicyError>((policy.meta().clone(), clamps))
    })
    .await;
    let (meta, clamps) = match checked {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return bad_request(format!("policy refused: {e}")),
        Err(e) => return bad_request(format!("policy refused: {e}")),
    };
    let spec = crate::raft::PolicySpec {
        label,
        wasm,
        config: q.config.clone(),
    };
    let req = Request {
        commands: vec![Command::SetPolicy(spec)],
    };
    match s.raft.client_write(req).await {
        Ok(r) => Json(PolicyReply {
            name: meta.name,
            hash: meta.hash,
            scope: "cluster".into(),
            index: Some(r.log_id.index),
            dry_run_clamps: clamps,
        })
        .into_response(),
        Err(e) => raft_error(e, |api| match api {
            ClientWriteError::ForwardToLeader(f) => {
                Some((f.leader_id, f.leader_node.as_ref().map(|n| n.addr.clone())))
            }
            ClientWriteError::ChangeMembershipError(_) => None,
        }),
    }
}
