//! The client side of Raft RPC: each call is one HTTP POST to the target node's `/raft/...`
//! route with a codec-encoded body, answered with a codec-encoded `Result`.
//!
//! Each request is bounded by openraft's per-RPC deadline (`RPCOption::hard_ttl`); openraft
//! itself retries replication with its own backoff, so no retry loop is needed here.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use roster_storage::codec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::transport::Transport;
use crate::types::{NodeId, TypeConfig};

/// Route prefixes served by [`crate::service::router`].
pub const ROUTE_APPEND: &str = "/raft/append";
pub const ROUTE_VOTE: &str = "/raft/vote";
pub const ROUTE_SNAPSHOT: &str = "/raft/snapshot";
/// A follower forwards a client proposal to the leader.
pub const ROUTE_FORWARD: &str = "/raft/forward";
/// A follower forwards a batch of client proposals to the leader in one request.
pub const ROUTE_FORWARD_BATCH: &str = "/raft/forward-batch";
/// A follower asks the leader for a read index.
pub const ROUTE_READ_INDEX: &str = "/raft/read-index";
/// A membership change forwarded to the leader.
pub const ROUTE_ADMIN: &str = "/raft/admin";
/// The leader asks the target of a leader transfer to start an election.
pub const ROUTE_TRANSFER: &str = "/raft/transfer";

/// Idle pooled connections are dropped after this long: well below the server's header read
/// timeout (10 s by default), which closes idle connections.
pub const POOL_IDLE_TIMEOUT_MS: u64 = 4_000;

/// Connect timeout for Raft RPC: a dead peer must not hold a replication stream for long.
pub const RPC_CONNECT_TIMEOUT_MS: u64 = 500;

/// Creates one [`HttpConnection`] per target node; all share one HTTP connection pool.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
    transport: Transport,
}

impl HttpNetwork {
    pub fn new(transport: Transport) -> anyhow::Result<Self> {
        Ok(Self { client: peer_client(&transport)?, transport })
    }
}

/// The pooled client nodes use to call each other.
pub fn peer_client(transport: &Transport) -> anyhow::Result<reqwest::Client> {
    Ok(transport
        .client_builder()?
        // Below every node's header read timeout, so a pooled connection is never reused
        // just as the server closes it.
        .pool_idle_timeout(std::time::Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
        .connect_timeout(Duration::from_millis(RPC_CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .build()?)
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        HttpConnection { client: self.client.clone(), target, url_base: self.transport.url(&node.addr, "") }
    }
}

/// Appends this node sent as leader that ended without an answer within openraft's deadline
/// (one heartbeat interval), by follower: openraft sends them again. Many mean the heartbeat
/// interval is below what that follower's fsync and the network take
/// (`roster_raft_append_timeouts_total{follower=...}`).
static APPEND_TIMEOUTS: std::sync::Mutex<std::collections::BTreeMap<NodeId, u64>> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The abandoned appends so far, by follower.
pub fn append_timeouts() -> std::collections::BTreeMap<NodeId, u64> {
    APPEND_TIMEOUTS.lock().map(|m| m.clone()).unwrap_or_default()
}

/// Counts an append to `target` as timed out unless it was answered: openraft drops the
/// call's future when its own deadline passes first, so the count is taken on drop.
struct AppendDeadline {
    target: NodeId,
    answered: bool,
}

impl Drop for AppendDeadline {
    fn drop(&mut self) {
        if !self.answered {
            if let Ok(mut m) = APPEND_TIMEOUTS.lock() {
                *m.entry(self.target).or_default() += 1;
            }
        }
    }
}

/// Raft RPC to one peer.
pub struct HttpConnection {
    client: reqwest::Client,
    target: NodeId,
    url_base: String,
}

impl HttpConnection {
    async fn call<Req, Resp, E>(
        &self,
        route: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut deadline = (route == ROUTE_APPEND).then_some(AppendDeadline { target: self.target, answered: false });
        let url = format!("{}{}", self.url_base, route);
        let sent = self
            .client
            .post(url)
            .timeout(option.hard_ttl())
            .body(codec::encode(req))
            .send()
            .await;
        // Anything but a deadline is an answer (a refused connection is no timeout).
        let mut answered = |timed_out: bool| {
            if let Some(d) = deadline.as_mut() {
                d.answered = !timed_out;
            }
        };
        if let Err(e) = &sent {
            answered(e.is_timeout());
        }
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        if !resp.status().is_success() {
            answered(false);
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let e = std::io::Error::other(format!("peer answered {status}: {text}"));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let bytes = resp.bytes().await;
        answered(matches!(&bytes, Err(e) if e.is_timeout()));
        let bytes = bytes.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let result: Result<Resp, E> =
            codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(ROUTE_APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(ROUTE_SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(ROUTE_VOTE, &rpc, &option).await
    }
}
