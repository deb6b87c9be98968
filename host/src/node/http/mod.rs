//! A node's HTTP API: the router, one authentication layer for the admin
//! API, and the mapping of [`OpError`]s to answers. The handlers are thin:
//! they decode a request, call the typed operation on the [`NodeHandle`],
//! and encode its result.
//!
//! - `/raft/*`: Raft RPCs between members ([`super::raft_rpc`]), signed with
//!   the cluster secret ([`super::peer_auth`]);
//! - `/kv...`: the client API (`kv`): records with revisions, guarded
//!   writes and transactions, watches;
//! - `/admin/*`: status, metrics, decisions, snapshots, policies, members
//!   (`admin`), behind a bearer token.
//!
//! A write or linearizable read sent to a follower is answered `421
//! Misdirected Request` with the leader's id and address. Malformed or
//! oversized requests get a 4xx with a message, and nothing is applied.

mod admin;
mod kv;
pub mod wire;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use super::builder::Endpoints;
use super::handle::{MAX_REQUEST_BYTES, NodeHandle, OpError};
use crate::state_machine::WatchError;
use wire::ErrorBody;

/// The largest client or admin request body accepted (a little over the
/// largest request, for the encoding).
pub const MAX_BODY: usize = MAX_REQUEST_BYTES + (64 << 10);

/// The router of a node serving `endpoints`; the admin API needs `token`
/// (without one it answers 403). A policy upload may be `max_policy` bytes.
pub(super) fn router(
    handle: NodeHandle,
    endpoints: Endpoints,
    token: Option<String>,
    max_policy: usize,
    peer_auth: Option<super::peer_auth::PeerAuth>,
) -> Router {
    let raft = super::raft_rpc::routes(handle.clone(), peer_auth);
    if endpoints == Endpoints::RaftOnly {
        return raft;
    }
    let admin = Router::new()
        .route("/admin/status", get(admin::status))
        .route("/admin/snapshot", post(admin::snapshot))
        .route("/admin/metrics", get(admin::metrics))
        .route("/admin/decisions", get(admin::decisions))
        .route(
            "/admin/policy",
            get(admin::policy)
                .put(admin::policy_put)
                .layer(DefaultBodyLimit::max(max_policy)),
        )
        .route(
            "/admin/members",
            get(admin::members).post(admin::member_add),
        )
        .route("/admin/members/{id}", delete(admin::member_remove))
        .route_layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(token),
            authenticate,
        ));
    Router::new()
        .route("/kv", get(kv::list))
        .route("/kv/batch", post(kv::batch))
        .route("/kv/txn", post(kv::txn))
        .route("/kv/watch", get(kv::watch))
        .route("/kv/{*key}", get(kv::get).put(kv::put).delete(kv::delete))
        .merge(admin)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(max_policy, too_large))
        .with_state(handle)
        .merge(raft)
}

/// The admin API's one gate: 401 without the bearer token or with a wrong
/// one, 403 when the node has none (the admin API is closed). Tokens are
/// compared in constant time.
async fn authenticate(
    State(token): State<std::sync::Arc<Option<String>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_deref() else {
        return (
            StatusCode::FORBIDDEN,
            Json(ErrorBody::new(
                "the admin API is closed: no token is configured",
            )),
        )
            .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(ErrorBody::new("missing or wrong bearer token")),
        )
            .into_response()
    }
}

/// A body over the limit gets a JSON answer naming the limit (the
/// extractor's own is plain text); a policy upload's is its own limit.
async fn too_large(State(max_policy): State<usize>, req: Request, next: Next) -> Response {
    let policy = req.uri().path() == "/admin/policy";
    let resp = next.run(req).await;
    if !is_plain_too_large(&resp) {
        return resp;
    }
    let msg = if policy {
        format!(
            "the policy is over the {max_policy}-byte limit of this node \
             (`policy.max-upload-bytes`)"
        )
    } else {
        format!(
            "the request body is over the {MAX_BODY}-byte limit (requests carry at most \
             {MAX_REQUEST_BYTES} bytes of keys and values)"
        )
    };
    (StatusCode::PAYLOAD_TOO_LARGE, Json(ErrorBody::new(msg))).into_response()
}

/// Whether `resp` is the body-limit extractor's own 413 (plain text), not
/// one of ours (JSON), which already names its limit.
pub(super) fn is_plain_too_large(resp: &Response) -> bool {
    resp.status() == StatusCode::PAYLOAD_TOO_LARGE
        && resp.headers().get(header::CONTENT_TYPE)
            != Some(&header::HeaderValue::from_static("application/json"))
}

/// A 400 with `msg`.
fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(ErrorBody::new(msg))).into_response()
}

/// The answer to a failed operation: 421 with the leader when this node is
/// not the leader, 400 for what the caller got wrong, 503 when the cluster
/// cannot serve now, 500 otherwise.
fn op_error(e: OpError) -> Response {
    let status = match &e {
        OpError::NotLeader {
            leader,
            leader_addr,
        } => {
            let body = ErrorBody {
                leader_id: *leader,
                leader_addr: leader_addr.clone(),
                ..ErrorBody::new("not the leader")
            };
            return (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response();
        }
        OpError::GuardFailed {
            revision,
            mod_revision,
        } => {
            let body = ErrorBody {
                revision: Some(*revision),
                mod_revision: Some(*mod_revision),
                ..ErrorBody::new(e.to_string())
            };
            return (StatusCode::PRECONDITION_FAILED, Json(body)).into_response();
        }
        OpError::Watch(WatchError::Compacted {
            oldest, current, ..
        }) => {
            let body = ErrorBody {
                revision: Some(*current),
                oldest_revision: Some(*oldest),
                ..ErrorBody::new(e.to_string())
            };
            return (StatusCode::GONE, Json(body)).into_response();
        }
        OpError::Watch(_) => StatusCode::SERVICE_UNAVAILABLE,
        OpError::Invalid(_) | OpError::Policy(_) => StatusCode::BAD_REQUEST,
        OpError::AlreadyInitialized | OpError::Busy(_) => StatusCode::CONFLICT,
        OpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        // What clients are told: which node, and a full disk as such (507);
        // the cause's details (files, calls) are in the node's log.
        OpError::Stopped { node, cause } => {
            let (status, msg) = if cause.contains("No space left") || cause.contains("os error 28")
            {
                (
                    StatusCode::INSUFFICIENT_STORAGE,
                    format!(
                        "disk full on node {node}: it stopped and serves nothing until it is restarted"
                    ),
                )
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "node {node} stopped on a storage or Raft failure (its log names the cause); \
                         it serves nothing until it is restarted"
                    ),
                )
            };
            return (status, Json(ErrorBody::new(msg))).into_response();
        }
        OpError::Shutdown | OpError::Timeout { .. } | OpError::Raft(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(ErrorBody::new(e.to_string()))).into_response()
}
