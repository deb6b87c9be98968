//! The admin API (behind the bearer token, checked by the router's layer):
//! status, Prometheus metrics, the decision audit, snapshots on demand,
//! policy swaps and rollouts, and membership (`GET /admin/members`,
//! `POST /admin/members` with `{"id": N, "addr": "host:port"}`,
//! `DELETE /admin/members/{id}`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::wire::{AddMember, DecisionsQuery, PolicyQuery, SnapshotQuery};
use super::{bad_request, op_error};
use crate::node::controller::AUDIT_CAPACITY;
use crate::node::{NodeHandle, PolicyChoice, Scope};
use crate::policy::{builtin, builtin_names};
use crate::raft::NodeId;

type Node = State<NodeHandle>;

pub(super) async fn status(State(node): Node) -> Response {
    match node.status() {
        Ok(s) => Json(s).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn snapshot(State(node): Node, Query(q): Query<SnapshotQuery>) -> Response {
    match node.snapshot_now(q.kind).await {
        Ok(info) => Json(info).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn metrics(State(node): Node) -> Response {
    let parts = match node.parts() {
        Ok(p) => p,
        Err(e) => return op_error(e),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::node::metrics::render(&parts),
    )
        .into_response()
}

pub(super) async fn decisions(State(node): Node, Query(q): Query<DecisionsQuery>) -> Response {
    let limit = q.limit.unwrap_or(50);
    if limit > AUDIT_CAPACITY {
        return bad_request(format!("limit must be at most {AUDIT_CAPACITY}"));
    }
    match node.parts() {
        Ok(p) => Json(p.controller.shared().audit(limit)).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn policy(State(node): Node) -> Response {
    match node.policy() {
        Ok(p) => Json(p).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn policy_put(
    State(node): Node,
    Query(q): Query<PolicyQuery>,
    body: Bytes,
) -> Response {
    let choice = match (&q.builtin, body.is_empty()) {
        (Some(name), true) => match builtin(name) {
            Some(b) => match &q.label {
                Some(label) => PolicyChoice::wasm(label, b),
                None => PolicyChoice::builtin(name),
            },
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
        (None, false) => PolicyChoice::wasm(q.label.as_deref().unwrap_or("upload"), body.to_vec()),
    };
    let scope = if q.cluster {
        Scope::Cluster
    } else {
        Scope::Local
    };
    match node.swap_policy(choice.config(q.config), scope).await {
        Ok(swapped) => Json(swapped).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn members(State(node): Node) -> Response {
    match node.members() {
        Ok(m) => Json(m).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn member_add(State(node): Node, body: Bytes) -> Response {
    let add: AddMember = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(format!("malformed member: {e}")),
    };
    match node.add_member(add.id, &add.addr).await {
        Ok(m) => Json(m).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn member_remove(State(node): Node, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<NodeId>() else {
        return bad_request(format!("{id:?} is not a node id"));
    };
    match node.remove_member(id).await {
        Ok(m) => Json(m).into_response(),
        Err(e) => op_error(e),
    }
}
