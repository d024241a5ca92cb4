//! Peer traffic over HTTP: openraft's RPCs (append entries, votes, snapshot chunks) and
//! baton's own [`PeerRequest`]s, as JSON bodies POSTed to the peer listener.
//!
//! HTTP because baton already serves and calls HTTP (axum, reqwest) with TLS: a second
//! protocol stack (gRPC) would add a code generator and a large dependency tree for a few
//! messages per heartbeat. Every request carries the cluster secret as a bearer token; a
//! request without it is refused before its body is read.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use baton_core::Secret;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::peer::{BoxFuture, CallError, PeerReply, PeerRequest, Peers};
use crate::{Node, ProposeError, TypeConfig};

/// The largest peer request body: a snapshot chunk, JSON-encoded, with room to spare.
const MAX_PEER_BODY: usize = 64 * 1024 * 1024;
/// How long a snapshot chunk may take to arrive and be written.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

const APPEND: &str = "/peer/v1/append";
const VOTE: &str = "/peer/v1/vote";
const SNAPSHOT: &str = "/peer/v1/snapshot";
const CALL: &str = "/peer/v1/call";

/// Dials peers over HTTP or HTTPS; clones share one connection pool.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    scheme: &'static str,
    secret: Arc<Secret>,
}

impl std::fmt::Debug for HttpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpNetwork")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl HttpNetwork {
    /// A network that sends `secret` with every request. `client` carries the TLS settings;
    /// `https` says whether peers are dialed with TLS.
    pub fn new(client: reqwest::Client, https: bool, secret: Secret) -> HttpNetwork {
        HttpNetwork {
            client,
            scheme: if https { "https" } else { "http" },
            secret: Arc::new(secret),
        }
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let failed = |message: String| CallError::Failed {
            addr: addr.to_owned(),
            message,
        };
        let url = format!("{}://{addr}{path}", self.scheme);
        let sent = self
            .client
            .post(url)
            .bearer_auth(self.secret.expose())
            .json(body)
            .timeout(timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => {
                return Err(CallError::Unreachable {
                    addr: addr.to_owned(),
                    message: error_chain(&e),
                })
            }
            Err(e) => return Err(failed(error_chain(&e))),
        };
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.chars().take(200).collect();
            return Err(failed(format!("answered {status}: {text}")));
        }
        resp.json().await.map_err(|e| failed(error_chain(&e)))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

impl Peers for HttpNetwork {
    fn call(
        &self,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<PeerReply, CallError>> {
        let net = self.clone();
        let addr = addr.to_owned();
        Box::pin(async move {
            let reply: Result<PeerReply, ProposeError> =
                net.post(&addr, CALL, &request, timeout).await?;
            reply.map_err(CallError::Remote)
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> HttpPeer {
        HttpPeer {
            target,
            addr: node.addr.clone(),
            net: self.clone(),
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug)]
pub struct HttpPeer {
    target: u64,
    addr: String,
    net: HttpNetwork,
}

impl HttpPeer {
    async fn rpc<Req, Resp, E>(
        &self,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<u64, E>> = self
            .net
            .post(&self.addr, path, body, timeout)
            .await
            .map_err(|e| match e {
                CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(SNAPSHOT, &rpc, option.hard_ttl().max(SNAPSHOT_TIMEOUT))
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(VOTE, &rpc, option.hard_ttl()).await
    }

    /// Retries to a peer that cannot be reached at 0.5, 1, then every 2 s: a node that is down
    /// is not dialled (and logged) twice a second.
    fn backoff(&self) -> openraft::network::Backoff {
        let delays = [500, 1000].into_iter().chain(std::iter::repeat(2000));
        openraft::network::Backoff::new(delays.map(std::time::Duration::from_millis))
    }
}

/// The peer listener's routes; every request must carry `secret`.
pub fn router(node: Arc<Node>, secret: Secret) -> Router {
    let digest: Arc<[u8; 32]> = Arc::new(Sha256::digest(secret.expose().as_bytes()).into());
    Router::new()
        .route(APPEND, post(append))
        .route(VOTE, post(vote))
        .route(SNAPSHOT, post(snapshot))
        .route(CALL, post(call))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let digest = digest.clone();
                async move {
                    if presented_secret_matches(&req, &digest) {
                        next.run(req).await
                    } else if req
                        .headers()
                        .contains_key(axum::http::header::AUTHORIZATION)
                    {
                        (
                            StatusCode::UNAUTHORIZED,
                            "the cluster secret presented is not this node's",
                        )
                            .into_response()
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            "peer requests need the cluster secret",
                        )
                            .into_response()
                    }
                }
            },
        ))
        .layer(DefaultBodyLimit::max(MAX_PEER_BODY))
        .with_state(node)
}

fn presented_secret_matches(req: &Request, digest: &[u8; 32]) -> bool {
    let mut values = req
        .headers()
        .get_all(axum::http::header::AUTHORIZATION)
        .iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    presented.ct_eq(digest).into()
}

async fn append(
    State(node): State<Arc<Node>>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    Json(node.raft().append_entries(rpc).await).into_response()
}

async fn vote(State(node): State<Arc<Node>>, Json(rpc): Json<VoteRequest<u64>>) -> Response {
    Json(node.raft().vote(rpc).await).into_response()
}

async fn snapshot(
    State(node): State<Arc<Node>>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    Json(node.raft().install_snapshot(rpc).await).into_response()
}

async fn call(State(node): State<Arc<Node>>, Json(request): Json<PeerRequest>) -> Response {
    Json(node.handle_peer(request).await).into_response()
}
