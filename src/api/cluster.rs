//! Cluster membership routes: status of the members, adding and removing nodes, moving the
//! leadership.

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::*;
use crate::auth::{Access, ADMIN, READ_CONFIG};

pub(super) fn routes() -> Vec<RouteSpec> {
    vec![
        route(Method::GET, "/v1/cluster", Access::Roles(READ_CONFIG), cluster),
        route(Method::POST, "/v1/cluster/nodes", Access::Roles(ADMIN), add_node),
        route(Method::DELETE, "/v1/cluster/nodes/{id}", Access::Roles(ADMIN), remove_node),
        route(Method::POST, "/v1/cluster/leader", Access::Roles(ADMIN), transfer_leader),
    ]
}


/// How long `GET /v1/cluster` waits for a member's version.
const MEMBER_VERSION_TIMEOUT_MS: u64 = 500;

async fn cluster(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    let mut status = cluster_status(&ctx);
    // Each member's version and leader priority, as its /healthz reports them (null when it
    // does not answer in time), so a rolling upgrade shows which nodes run what.
    if let Some(members) = status["members"].as_array_mut() {
        let me = ctx.node.id;
        let asks = members.iter().map(|m| {
            let url = ctx.transport.url(m["addr"].as_str().unwrap_or_default(), "/healthz");
            let http = ctx.peer_http.clone();
            let is_me = m["id"].as_u64() == Some(me);
            async move {
                if is_me {
                    return Some((serde_json::Value::from(env!("CARGO_PKG_VERSION")), json!(ctx.leader_priority)));
                }
                let answer = http.get(url).timeout(std::time::Duration::from_millis(MEMBER_VERSION_TIMEOUT_MS)).send().await.ok()?;
                answer.json::<serde_json::Value>().await.ok().map(|v| (v["version"].clone(), v["leader_priority"].clone()))
            }
        });
        let answers = futures::future::join_all(asks).await;
        for (m, a) in members.iter_mut().zip(answers) {
            let (version, priority) = a.unwrap_or_default();
            m["version"] = version;
            m["leader_priority"] = priority;
        }
    }
    Json(status).into_response()
}

/// This node's view of the cluster: members, roles, leader, term, indexes, follower lag.
pub fn cluster_status(ctx: &Ctx) -> serde_json::Value {
    let m = ctx.node.raft.metrics().borrow().clone();
    let members: Vec<_> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| {
            let voter = m.membership_config.membership().voter_ids().any(|v| v == *id);
            json!({"id": id, "addr": node.addr, "voter": voter})
        })
        .collect();
    let lag: serde_json::Map<String, serde_json::Value> = m
        .replication
        .as_ref()
        .map(|r| {
            let last = m.last_log_index.unwrap_or(0);
            r.iter()
                .map(|(id, matched)| (id.to_string(), json!(last.saturating_sub(matched.map(|l| l.index).unwrap_or(0)))))
                .collect()
        })
        .unwrap_or_default();
    let revision = ctx.machine.read().state.revision;
    json!({
        "node_id": m.id,
        "version": env!("CARGO_PKG_VERSION"),
        "state": format!("{:?}", m.state),
        "leader": m.current_leader,
        "term": m.current_term,
        "last_log_index": m.last_log_index,
        "applied_index": m.last_applied.map(|l| l.index),
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "revision": revision,
        "members": members,
        "follower_lag": lag,
    })
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddNodeRequest {
    id: u64,
    addr: String,
}

/// Adds a node: it joins as a learner, catches up, then becomes a voter.
async fn add_node(axum::extract::State(ctx): axum::extract::State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<AddNodeRequest>) -> Result<Response, ApiError> {
    add_node_as(&ctx, r.id, r.addr, meta.actor).await?;
    Ok(Json(json!({"added": r.id})).into_response())
}

/// Adds node `id` at `addr` (checked to be host:port) and records who did it.
pub async fn add_node_as(ctx: &Ctx, id: u64, addr: String, actor: String) -> Result<(), ApiError> {
    let r = AddNodeRequest { id, addr };
    if r.id == 0 {
        return Err(ApiError::bad_request("node ids start at 1"));
    }
    if let Err(why) = check_host_port(&r.addr) {
        return Err(ApiError::bad_request(format!("{:?} is not a host:port address: {why}", r.addr)));
    }
    ctx.node.admin(roster_raft::node::AdminRequest::AddNode { id: r.id, addr: r.addr.clone() }).await.map_err(write_error)?;
    let msg = format!("node {} ({}) joined the cluster", r.id, r.addr);
    events::record(ctx, crate::domain::oplog::Level::Info, "node_joined", msg, actor).await;
    Ok(())
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
    Ok(Json(json!({"removed": id})).into_response())
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
    Ok(Json(json!({"previous": previous, "leader": leader, "took_ms": took.as_millis() as u64})).into_response())
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
