//! Raft RPCs between nodes over HTTP: postcard bodies (compact binary), one
//! `POST` per RPC, a timeout on each.
//!
//! The server side is in [`super::api`]; both use [`encode`] and [`decode`].

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::{NodeId, TypeConfig};

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

/// Creates an [`HttpClient`] per target.
#[derive(Clone, Debug)]
pub struct HttpNetwork {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpNetwork {
    /// A network whose RPCs time out after `timeout`.
    ///
    /// # Panics
    /// If the HTTP client cannot be built (no TLS is configured, so it can).
    pub fn new(timeout: Duration) -> Self {
        HttpNetwork {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("a plain HTTP client builds"),
            timeout,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        HttpClient {
            client: self.client.clone(),
            target,
            node: node.clone(),
            base: format!("http://{}", node.addr),
            timeout: self.timeout,
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
}

type Rpc<R, E> = Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl HttpClient {
    async fn call<Req, Resp, E>(&self, path: &str, req: &Req, option: &RPCOption) -> Rpc<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl().min(self.timeout);
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .timeout(timeout)
            .body(encode(req))
            .send()
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
        self.call("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call("/raft/vote", &rpc, &option).await
    }
}
