//! The client key-value API:
//! - `GET /kv/{key}`: the value (linearizable read; `?local=true` reads this
//!   node's state as it is, from any node), 404 if unset;
//! - `PUT /kv/{key}` with the value as the body; `DELETE /kv/{key}`;
//! - `GET /kv?prefix=P&limit=N[&after=K]`: pairs in key order (JSON), from
//!   the first key after `K`;
//! - `POST /kv/batch` with `{"commands": [...]}`: applied atomically.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::wire::{Batch, ErrorBody, ListQuery, MAX_LIST_LIMIT, Pair, ReadQuery};
use super::{bad_request, op_error};
use crate::node::{NodeHandle, Op};

type Node = State<NodeHandle>;

pub(super) async fn get(
    State(node): Node,
    Path(key): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Response {
    let value = if q.local {
        node.get_local(key.as_bytes())
    } else {
        node.get(key.as_bytes()).await
    };
    let value = match value {
        Ok(v) => v,
        Err(e) => return op_error(e),
    };
    match value {
        Some(v) => v.to_vec().into_response(),
        None => (StatusCode::NOT_FOUND, Json(ErrorBody::new("no such key"))).into_response(),
    }
}

pub(super) async fn put(State(node): Node, Path(key): Path<String>, body: Bytes) -> Response {
    match node.put(key, body.to_vec()).await {
        Ok(w) => Json(w).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn delete(State(node): Node, Path(key): Path<String>) -> Response {
    match node.delete(key).await {
        Ok(w) => Json(w).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn list(State(node): Node, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100);
    if limit > MAX_LIST_LIMIT {
        return bad_request(format!("limit must be at most {MAX_LIST_LIMIT}"));
    }
    let (prefix, after) = (q.prefix.as_bytes(), q.after.as_deref().map(str::as_bytes));
    let pairs = if q.local {
        node.scan_local(prefix, after, limit)
    } else {
        node.scan(prefix, after, limit).await
    };
    let pairs = match pairs {
        Ok(p) => p,
        Err(e) => return op_error(e),
    };
    let pairs: Vec<Pair> = pairs
        .into_iter()
        .map(|(k, v)| Pair {
            key: String::from_utf8_lossy(&k).into_owned(),
            value: String::from_utf8_lossy(&v).into_owned(),
        })
        .collect();
    Json(pairs).into_response()
}

pub(super) async fn batch(State(node): Node, body: Bytes) -> Response {
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("malformed batch: {e}")),
    };
    let ops: Vec<Op> = batch.commands.into_iter().map(Op::from).collect();
    match node.batch(ops).await {
        Ok(w) => Json(w).into_response(),
        Err(e) => op_error(e),
    }
}
