//! Cluster membership routes: status of the members, adding and removing nodes, moving the
//! leadership.

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::*;
use super::read::Health;
use crate::auth::{Access, ADMIN, READ_CONFIG};

pub(super) fn routes() -> Vec<RouteSpec> {
    vec![
        route(Method::GET, "/v1/cluster", Access::Roles(READ_CONFIG), cluster).returns::<ClusterStatus>(),
        route(Method::POST, "/v1/cluster/nodes", Access::Roles(ADMIN), add_node).returns::<NodeAdded>(),
        route(Method::DELETE, "/v1/cluster/nodes/{id}", Access::Roles(ADMIN), remove_node).returns::<NodeRemoved>(),
        route(Method::POST, "/v1/cluster/leader", Access::Roles(ADMIN), transfer_leader).returns::<LeaderTransferred>(),
        route(Method::GET, "/internal/replication", Access::Peer, replication).returns::<Replication>(),
    ]
}

/// A leader's replication progress, for the other members' cluster status
/// (`GET /internal/replication`, peers only).
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Replication {
    /// The term the node answered in.
    pub term: u64,
    /// Whether it leads in that term (otherwise `follower_lag` is empty).
    pub leader: bool,
    /// How many log entries each member is behind the leader's log, by node id.
    pub follower_lag: std::collections::BTreeMap<String, u64>,
}

async fn replication(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    let status = cluster_status(&ctx);
    Json(Replication { term: status.term, leader: status.leader == Some(status.node_id), follower_lag: status.follower_lag }).into_response()
}

/// The leader's replication progress as it answers `/internal/replication`, if it answers in
/// time, in `term`, as the leader.
async fn fetch_replication(ctx: &Ctx, addr: &str, term: u64) -> Option<std::collections::BTreeMap<String, u64>> {
    let ask = ctx.peer_http.get(ctx.transport.url(addr, "/internal/replication")).timeout(std::time::Duration::from_millis(MEMBER_VERSION_TIMEOUT_MS));
    let answer: Replication = ask.send().await.ok()?.json().await.ok()?;
    (answer.leader && answer.term == term).then_some(answer.follower_lag)
}


/// How long `GET /v1/cluster` waits for a member's version, and for the leader's lag figures.
const MEMBER_VERSION_TIMEOUT_MS: u64 = 500;

async fn cluster(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    Json(cluster_status_asked(&ctx).await).into_response()
}

/// [`cluster_status`] with each member's version and leader priority, as its `/healthz`
/// reports them (absent when it does not answer in time: it is unreachable from here).
pub async fn cluster_status_asked(ctx: &Ctx) -> ClusterStatus {
    let mut status = cluster_status(ctx);
    // Each member's version shows which nodes run what during a rolling upgrade.
    let me = ctx.node.id;
    let mine = Health::of(ctx);
    let asks = status.members.iter().map(|m| {
        let (is_me, mine, addr) = (m.id == me, mine.clone(), m.addr.clone());
        async move {
            if is_me {
                return Some(mine);
            }
            fetch_health(ctx, &addr).await.flatten()
        }
    });
    // Only the leader knows how far behind each member is: a follower or learner asks it.
    let leader_addr = status.leader.filter(|l| *l != me).and_then(|l| status.members.iter().find(|m| m.id == l)).map(|m| m.addr.clone());
    let lag = async {
        match &leader_addr {
            Some(addr) => fetch_replication(ctx, addr, status.term).await,
            None => None,
        }
    };
    let (answers, lag) = futures::future::join(futures::future::join_all(asks), lag).await;
    if let Some(lag) = lag {
        status.follower_lag = lag;
    }
    for (m, a) in status.members.iter_mut().zip(answers) {
        if let Some(h) = a {
            m.version = Some(h.version);
            m.leader_priority = h.leader_priority;
        }
    }
    status
}

/// One node's view of the cluster (`GET /v1/cluster`).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    /// Its Roster version.
    pub version: String,
    /// Its Raft role: Leader, Follower, Candidate or Learner.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// The revision of the state this node has applied.
    pub revision: u64,
    pub members: Vec<MemberStatus>,
    /// How many log entries each member is behind the leader's log, by node id: this node's
    /// own figures when it leads, otherwise the leader's (empty when it did not answer in time).
    pub follower_lag: std::collections::BTreeMap<String, u64>,
}

/// A member of the cluster.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct MemberStatus {
    pub id: u64,
    pub addr: String,
    /// A voter; a learner otherwise.
    pub voter: bool,
    /// Its version as its `/healthz` reports it; absent when it did not answer in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its `--leader-priority`, when it has one and answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_priority: Option<u32>,
}

/// This node's view of the cluster: members, roles, leader, term, indexes, follower lag.
pub fn cluster_status(ctx: &Ctx) -> ClusterStatus {
    let m = ctx.node.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let members = membership
        .nodes()
        .map(|(id, node)| MemberStatus {
            id: *id,
            addr: node.addr.clone(),
            voter: membership.voter_ids().any(|v| v == *id),
            version: None,
            leader_priority: None,
        })
        .collect();
    let last = m.last_log_index.unwrap_or(0);
    let follower_lag = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, matched)| (id.to_string(), last.saturating_sub(matched.map(|l| l.index).unwrap_or(0)))).collect())
        .unwrap_or_default();
    ClusterStatus {
        node_id: m.id,
        version: env!("CARGO_PKG_VERSION").to_string(),
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        revision: ctx.machine.read().state.revision,
        members,
        follower_lag,
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddNodeRequest {
    id: u64,
    addr: String,
    /// Add it as a learner that never votes (also the case for a node started with
    /// `--learner`). Without it, a learner already in the cluster is promoted to voter.
    #[serde(default)]
    learner: bool,
}

/// Adds a node: it joins as a learner, catches up, then becomes a voter (or stays a learner).
async fn add_node(axum::extract::State(ctx): axum::extract::State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<AddNodeRequest>) -> Result<Response, ApiError> {
    let learner = add_node_as(&ctx, r.id, r.addr, r.learner, meta.actor).await?;
    Ok(Json(NodeAdded { added: r.id, learner }).into_response())
}

/// Adds node `id` at `addr` (checked to be host:port) as a voter, or as a learner when
/// `learner` is set or the node was started with `--learner`, and records who did it.
/// Returns whether it was added as a learner.
pub async fn add_node_as(ctx: &Ctx, id: u64, addr: String, learner: bool, actor: String) -> Result<bool, ApiError> {
    if id == 0 {
        return Err(ApiError::bad_request("node ids start at 1"));
    }
    if let Err(why) = check_host_port(&addr) {
        return Err(ApiError::bad_request(format!("{addr:?} is not a host:port address: {why}")));
    }
    let learner = learner || started_as_learner(ctx, &addr).await;
    let req = if learner {
        roster_raft::node::AdminRequest::AddLearner { id, addr: addr.clone() }
    } else {
        roster_raft::node::AdminRequest::AddNode { id, addr: addr.clone() }
    };
    ctx.node.admin(req).await.map_err(write_error)?;
    let msg = format!("node {id} ({addr}) joined the cluster{}", if learner { " as a learner" } else { "" });
    events::record(ctx, crate::domain::oplog::Level::Info, "node_joined", msg, actor).await;
    Ok(learner)
}

/// Whether the node at `addr` says on `/healthz` that it was started with `--learner`. A node
/// that is still starting is asked again for up to 10 s; one that
/// never answers is not taken for a learner (adding it as a voter then fails on catch-up, so it
/// never votes either).
async fn started_as_learner(ctx: &Ctx, addr: &str) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(roster_raft::node::LEARNER_CATCH_UP_MS.min(10_000));
    loop {
        if let Some(answer) = fetch_health(ctx, addr).await {
            return answer.is_some_and(|h| h.learner);
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Asks the node at `addr` for its `/healthz`, waiting at most `MEMBER_VERSION_TIMEOUT_MS`:
/// `None` when it could not be reached, `Some(None)` when its answer is not a [`Health`].
async fn fetch_health(ctx: &Ctx, addr: &str) -> Option<Option<Health>> {
    let ask = ctx.peer_http.get(ctx.transport.url(addr, "/healthz")).timeout(std::time::Duration::from_millis(MEMBER_VERSION_TIMEOUT_MS));
    let answer = ask.send().await.ok()?;
    Some(answer.json::<Health>().await.ok())
}

/// A node address is `host:port` and nothing else: no scheme (the cluster's own transport,
/// TLS on a secure cluster, is always used, so the cluster secret never goes out in plain
/// text), no path, no user info.
fn check_host_port(addr: &str) -> Result<(), &'static str> {
    if addr.contains("://") {
        return Err("give host:port without a scheme; the cluster's transport is used");
    }
    if addr.contains(['/', '@', '?', '#', ' ']) {
        return Err("no path, user or query belongs in a node address");
    }
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr.rsplit_once(':').ok_or("a port is needed")?;
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err("the port must be a number from 1 to 65535");
    }
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err("the host must be a name or an address");
    }
    Ok(())
}

/// Removes a node (the leader included) from the membership.
async fn remove_node(axum::extract::State(ctx): axum::extract::State<Ctx>, meta: WriteMeta, ApiPath(id): ApiPath<u64>) -> Result<Response, ApiError> {
    remove_node_as(&ctx, id, meta.actor).await?;
    Ok(Json(NodeRemoved { removed: id }).into_response())
}

/// Removes node `id` (the leader included) and records who did it.
pub async fn remove_node_as(ctx: &Ctx, id: u64, actor: String) -> Result<(), ApiError> {
    ctx.node.admin(roster_raft::node::AdminRequest::RemoveNode { id }).await.map_err(write_error)?;
    events::record(ctx, crate::domain::oplog::Level::Info, "node_left", format!("node {id} left the cluster"), actor).await;
    Ok(())
}


#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    /// The voter to lead; absent: the most up-to-date other voter.
    #[serde(default)]
    node: Option<u64>,
}

/// Hands leadership to another voter (`{"node": ID}`, or `{}` for the most up-to-date one).
/// Answers once another node leads: `{"previous": OLD, "leader": NEW, "took_ms": MS}`.
async fn transfer_leader(axum::extract::State(ctx): axum::extract::State<Ctx>, meta: WriteMeta, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let r: TransferRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TransferRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body must be {{\"node\": ID}} or empty: {e}")))?
    };
    let (previous, leader, took) = transfer_leader_as(&ctx, r.node, meta.actor).await?;
    Ok(Json(LeaderTransferred { previous, leader, took_ms: took.as_millis() as u64 }).into_response())
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct NodeAdded {
    added: u64,
    /// Added as a learner (it does not vote).
    learner: bool,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct NodeRemoved {
    removed: u64,
}

/// A finished leader transfer: who led before, who leads now, how long writes paused.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct LeaderTransferred {
    previous: Option<u64>,
    leader: Option<u64>,
    took_ms: u64,
}

/// Moves the leadership to `to` (or the most up-to-date other voter) and records who did it.
/// Returns the previous leader, the new one, and how long writes were paused for it.
pub async fn transfer_leader_as(ctx: &Ctx, to: Option<u64>, actor: String) -> Result<(Option<u64>, Option<u64>, std::time::Duration), ApiError> {
    let previous = ctx.node.raft.metrics().borrow().current_leader;
    let started = std::time::Instant::now();
    ctx.node.transfer_leader(to).await.map_err(write_error)?;
    let took = started.elapsed();
    // This node may have been the leader, or forwarded: ask its own view of who leads now.
    let leader = ctx.node.wait_for_leader_other_than(previous, std::time::Duration::from_secs(2)).await;
    let msg = match (previous, leader) {
        (Some(p), Some(l)) => format!("leadership moved from node {p} to node {l}"),
        (_, l) => format!("leadership moved to node {}", l.map_or("?".to_string(), |l| l.to_string())),
    };
    events::record(ctx, crate::domain::oplog::Level::Info, "leader_transferred", msg, actor).await;
    Ok((previous, leader, took))
}
