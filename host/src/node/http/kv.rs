//! The client key-value API:
//! - `GET /kv/{key}`: the value (linearizable read; `?local=true` reads this
//!   node's state as it is, from any node), 404 if unset; its revisions in
//!   the `x-ramrod-create-revision`, `x-ramrod-mod-revision`,
//!   `x-ramrod-version` headers, the store's in `x-ramrod-revision`;
//! - `PUT /kv/{key}` with the value as the body; `DELETE /kv/{key}`; both
//!   take a guard, `?if_mod_revision=N` or `?if_absent=true`, and answer
//!   412 with the key's mod revision and the store's revision when it fails;
//! - `GET /kv?prefix=P&limit=N[&after=K]`: records in key order (JSON), from
//!   the first key after `K`, with the revision they were read at;
//! - `POST /kv/batch` with `{"commands": [...]}`: applied atomically;
//! - `POST /kv/txn` with `{"compare": [...], "success": [...], "failure":
//!   [...]}`: a guarded transaction, one atomic step;
//! - `GET /kv/watch?key=K|prefix=P[&from_revision=R][&values=false]`: a
//!   stream of newline-delimited JSON, every change after `R`, progress
//!   lines while idle, and a last line saying why it ended.
//!
//! The keys `batch`, `txn` and `watch` themselves are these endpoints, not
//! keys (the typed operations reach them).

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::wire::{
    Batch, ErrorBody, ListQuery, ListReply, MAX_LIST_LIMIT, ReadQuery, TxnReply, TxnRequest,
    WatchLine, WatchQuery, WriteQuery,
};
use super::{bad_request, op_error};
use crate::node::{Guard, NodeHandle, Op};
use crate::state_machine::{Filter, WatchUpdate, Watcher};

type Node = State<NodeHandle>;

pub(super) async fn get(
    State(node): Node,
    Path(key): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Response {
    let kv = if q.local {
        node.get_kv_local(key.as_bytes())
    } else {
        node.get_kv(key.as_bytes()).await
    };
    let kv = match kv {
        Ok(v) => v,
        Err(e) => return op_error(e),
    };
    let revision = node.revision().unwrap_or_default();
    let rev = |name: &'static str, n: u64| (HeaderName::from_static(name), n.to_string());
    match kv {
        Some(kv) => (
            [
                rev("x-ramrod-create-revision", kv.create_revision),
                rev("x-ramrod-mod-revision", kv.mod_revision),
                rev("x-ramrod-version", kv.version),
                rev("x-ramrod-revision", revision),
            ],
            kv.value.to_vec(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [rev("x-ramrod-revision", revision)],
            Json(ErrorBody::new("no such key")),
        )
            .into_response(),
    }
}

/// The guard a write's parameters ask for.
fn guard(q: &WriteQuery) -> Result<Option<Guard>, &'static str> {
    match (q.if_mod_revision, q.if_absent) {
        (Some(_), true) => Err("if_mod_revision and if_absent: give one guard, not both"),
        (Some(r), false) => Ok(Some(Guard::ModRevision(r))),
        (None, true) => Ok(Some(Guard::Absent)),
        (None, false) => Ok(None),
    }
}

pub(super) async fn put(
    State(node): Node,
    Path(key): Path<String>,
    Query(q): Query<WriteQuery>,
    body: Bytes,
) -> Response {
    let written = match guard(&q) {
        Err(msg) => return bad_request(msg),
        Ok(Some(g)) => node.put_if(key, body.to_vec(), g).await,
        Ok(None) => node.put(key, body.to_vec()).await,
    };
    match written {
        Ok(w) => Json(w).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn delete(
    State(node): Node,
    Path(key): Path<String>,
    Query(q): Query<WriteQuery>,
) -> Response {
    let written = match guard(&q) {
        Err(msg) => return bad_request(msg),
        Ok(Some(g)) => node.delete_if(key, g).await,
        Ok(None) => node.delete(key).await,
    };
    match written {
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
    let listing = if q.local {
        node.list_local(prefix, after, limit)
    } else {
        node.list(prefix, after, limit).await
    };
    match listing {
        Ok(l) => Json(ListReply::from(&l)).into_response(),
        Err(e) => op_error(e),
    }
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

pub(super) async fn txn(State(node): Node, body: Bytes) -> Response {
    let req: TxnRequest = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return bad_request(format!("malformed transaction: {e}")),
    };
    match node.txn(req.into()).await {
        Ok(r) => Json(TxnReply::from(&r)).into_response(),
        Err(e) => op_error(e),
    }
}

pub(super) async fn watch(State(node): Node, Query(q): Query<WatchQuery>) -> Response {
    let filter = match (q.key, q.prefix) {
        (Some(k), None) => Filter::Key(k.into_bytes()),
        (None, Some(p)) => Filter::Prefix(p.into_bytes()),
        _ => return bad_request("a watch takes `key` or `prefix` (exactly one)"),
    };
    let watcher = match node.watch(filter, q.from_revision) {
        Ok(w) => w,
        Err(e) => return op_error(e),
    };
    let values = q.values.unwrap_or(true);
    let lines = futures_util::stream::unfold(Some(watcher), move |w| next_line(w, values));
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// The next line of a watch stream; after the line saying why it ended,
/// nothing.
async fn next_line(
    w: Option<Watcher>,
    values: bool,
) -> Option<(Result<Bytes, Infallible>, Option<Watcher>)> {
    let mut w = w?;
    let (line, w) = match w.next().await {
        Ok(WatchUpdate::Event(e)) => (WatchLine::event(&e, values), Some(w)),
        Ok(WatchUpdate::Progress { revision }) => (WatchLine::Progress { revision }, Some(w)),
        Err(e) => (WatchLine::end(&e), None),
    };
    let mut bytes = serde_json::to_vec(&line).expect("a watch line serializes");
    bytes.push(b'\n');
    Some((Ok(Bytes::from(bytes)), w))
}
