//! The agent protocol (served by any node from its applied state) and deployment status.
//!
//! - `GET /v1/agents/{id}/config?after=R&wait_ms=W`: a long poll. Answers 200 with the agent's
//!   full configuration as soon as it changed after revision `R` (and this node has applied at
//!   least `R`, so an agent moving between nodes never goes backwards), or 204 after `W` ms.
//!   Every answer is a full configuration, so an agent can never miss an update in between.
//!   The first contact of an unknown agent registers it.
//! - `POST /v1/agents/{id}/ack`: the revision the agent deployed.
//! - `POST /v1/agents/{id}/failures`: a client could not use a server (`agent_reports.rs`).
//! - `GET /v1/agents`: every agent with its clusters, deployed revision, last contact and lag,
//!   merged from all nodes (each node knows the agents that talk to it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{route, RouteSpec};
use crate::auth::{Access, READ_CONFIG, WRITE_CONFIG};
use super::{read_response, submit, ApiError, ApiJson, ApiPath, ApiQuery, Ctx, WriteMeta};
use crate::domain::{AgentId, Change, CommandBody, RejectCode, ServerName, TaskName};

/// Longest a config watch is held open.
pub const WATCH_WAIT_MAX_MS: u64 = 60_000;
/// Default hold time of a config watch.
pub const WATCH_WAIT_DEFAULT_MS: u64 = 30_000;
/// Most watches one node holds open at once; more get a 503 (the agent backs off and retries).
pub const WATCHES_PER_NODE_MAX: usize = 50_000;
/// Timeout when asking peers for their view of agent contacts.
pub const PEER_STATUS_TIMEOUT_MS: u64 = 1_000;
/// Failure reports one agent may send to one node per minute; more get 429.
pub const FAILURE_REPORTS_PER_AGENT_PER_MINUTE: u32 = 30;
/// A repeat of the same (task, server) report from the same agent within this long is
/// answered without another write.
pub const FAILURE_REPORT_REPEAT_MS: u64 = 10_000;

/// One agent's failure-report budget on this node.
#[derive(Default)]
struct ReportBudget {
    window_start_ms: u64,
    count: u32,
    /// When each (task, server) pair was last reported (only validated pairs, so bounded by
    /// the agent's configuration).
    recent: HashMap<(TaskName, ServerName), u64>,
}

/// Why a failure report is not turned into a write.
pub(super) enum ReportAdmission {
    Admit,
    Repeat,
    RateLimited,
}

/// What this node knows of one agent's contact.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Contact {
    pub last_contact_ms: u64,
    pub deployed_revision: u64,
    /// The node the agent last talked to.
    pub node: u64,
    /// Config watches the agent holds on this node right now (a connected agent is never
    /// stale, however long its watch has been held).
    #[serde(default)]
    pub watching: u32,
}

/// Marks a held watch; dropping it ends the hold and counts as a contact.
struct Holding {
    contacts: Arc<Mutex<HashMap<AgentId, Contact>>>,
    id: AgentId,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut map = self.contacts.lock().expect("tracker lock");
        if let Some(c) = map.get_mut(&self.id) {
            c.watching = c.watching.saturating_sub(1);
            c.last_contact_ms = now_ms();
        }
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Agent contacts seen by this node, and the watch budget.
#[derive(Clone)]
pub struct AgentTracker {
    contacts: Arc<Mutex<HashMap<AgentId, Contact>>>,
    /// Failure-report budgets of registered agents.
    reports: Arc<Mutex<HashMap<AgentId, ReportBudget>>>,
    watches: Arc<tokio::sync::Semaphore>,
    /// Set when the node stops: held watches end at once (the agents reconnect elsewhere).
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Counts acknowledged deployments seen by this node (the console's agents page follows it).
    acks: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for AgentTracker {
    fn default() -> Self {
        Self::with_watches_max(WATCHES_PER_NODE_MAX)
    }
}

impl AgentTracker {
    /// A tracker that holds at most `watches_max` watches at once.
    pub fn with_watches_max(watches_max: usize) -> Self {
        Self {
            contacts: Default::default(),
            reports: Default::default(),
            watches: Arc::new(tokio::sync::Semaphore::new(watches_max)),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
            acks: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl AgentTracker {
    /// Ends every held watch (with 204) and refuses new ones; used when the node stops.
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
    }

    /// A watch by `id` starts being held until the returned guard drops.
    fn hold(&self, id: &AgentId) -> Holding {
        if let Some(c) = self.contacts.lock().expect("tracker lock").get_mut(id) {
            c.watching += 1;
        }
        Holding { contacts: self.contacts.clone(), id: id.clone() }
    }

    pub(super) fn touch(&self, id: &AgentId, node: u64, deployed: Option<u64>) {
        let now = now_ms();
        let mut map = self.contacts.lock().expect("tracker lock");
        let c = map.entry(id.clone()).or_default();
        c.last_contact_ms = now;
        c.node = node;
        if let Some(r) = deployed {
            if r > c.deployed_revision {
                c.deployed_revision = r;
                self.acks.send_modify(|n| *n += 1);
            }
        }
    }

    /// Notified with a count that moves whenever an agent talking to this node acknowledges a
    /// newer deployment.
    pub fn subscribe_acks(&self) -> tokio::sync::watch::Receiver<u64> {
        self.acks.subscribe()
    }

    /// Rate limit and de-duplication of failure reports, per agent (wall clock, this node).
    pub(super) fn admit_report(&self, id: &AgentId, task: &TaskName, server: &ServerName) -> ReportAdmission {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut map = self.reports.lock().expect("report budget lock");
        let b = map.entry(id.clone()).or_default();
        if now.saturating_sub(b.window_start_ms) >= 60_000 {
            b.window_start_ms = now;
            b.count = 0;
            b.recent.retain(|_, t| now.saturating_sub(*t) < FAILURE_REPORT_REPEAT_MS);
        }
        let key = (task.clone(), server.clone());
        if b.recent.get(&key).is_some_and(|t| now.saturating_sub(*t) < FAILURE_REPORT_REPEAT_MS) {
            return ReportAdmission::Repeat;
        }
        if b.count >= FAILURE_REPORTS_PER_AGENT_PER_MINUTE {
            return ReportAdmission::RateLimited;
        }
        b.count += 1;
        b.recent.insert(key, now);
        ReportAdmission::Admit
    }

    fn snapshot(&self) -> HashMap<AgentId, Contact> {
        self.contacts.lock().expect("tracker lock").clone()
    }
}

pub fn routes() -> Vec<RouteSpec> {
    use axum::http::Method as M;
    vec![
        route(M::GET, "/v1/agents", Access::Roles(READ_CONFIG), list_agents).returns::<AgentsPage>(),
        route(M::POST, "/v1/agents", Access::Roles(WRITE_CONFIG), register_agent).writes(),
        route(M::DELETE, "/v1/agents/{id}", Access::Roles(WRITE_CONFIG), remove_agent).writes(),
        route(M::GET, "/v1/agents/{id}/config", Access::AgentSelf, watch_config).returns::<crate::projection::AgentConfig>(),
        route(M::POST, "/v1/agents/{id}/ack", Access::AgentSelf, ack).returns::<Acknowledged>(),
        route(M::POST, "/v1/agents/{id}/failures", Access::AgentSelf, super::agent_reports::report_failure)
            .returns::<super::agent_reports::FailureAnswer>(),
        route(M::GET, "/internal/agent-contacts", Access::Peer, contacts),
    ]
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RegisterAgentRequest {
    id: AgentId,
}

async fn register_agent(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<RegisterAgentRequest>) -> Result<Response, ApiError> {
    let outcome = submit(&ctx, meta, CommandBody::Apply { changes: vec![Change::RegisterAgent { id: r.id }] }).await?;
    Ok((StatusCode::CREATED, Json(outcome)).into_response())
}

/// Forgets an agent: out of every cluster, registration dropped (one revision). Its tokens
/// stay: a running agent registers again on its next contact.
async fn remove_agent(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let id = AgentId::new(id)?;
    let outcome = submit(&ctx, meta, CommandBody::Apply { changes: vec![Change::RemoveAgent { id }] }).await?;
    Ok(Json(outcome).into_response())
}

/// Default of `--agent-stale-after-secs`.
pub const AGENT_STALE_AFTER_SECS_DEFAULT: u64 = 600;

/// With `--forget-agents-after-secs`: while this node leads, removes (as one recorded
/// revision per round) the agents no node has heard from for `after_ms` and that hold no
/// watch. A round is skipped unless every node answered (contacts live in node memory), and
/// none runs before this node has been up for `after_ms`, so an agent whose contact was lost
/// with a restarted node has time to come back.
pub async fn forget_stale_agents(ctx: Ctx, after_ms: u64) {
    let started = tokio::time::Instant::now();
    let every = Duration::from_millis((after_ms / 2).clamp(1_000, 60_000));
    loop {
        tokio::time::sleep(every).await;
        if started.elapsed() < Duration::from_millis(after_ms) || ctx.node.raft.metrics().borrow().current_leader != Some(ctx.node.id) {
            continue;
        }
        let (revision, rows, unreachable) = agent_rows(&ctx, |_| true, usize::MAX).await;
        if !unreachable.is_empty() {
            tracing::debug!(?unreachable, "not forgetting agents: some nodes did not report their agents' contacts");
            continue;
        }
        let now = now_ms();
        let forget: Vec<Change> = rows
            .iter()
            .filter(|r| r["connected"] == json!(false))
            .filter(|r| now.saturating_sub(r["last_contact_ms"].as_u64().unwrap_or(0).max(r["registered_ms"].as_u64().unwrap_or(0))) > after_ms)
            .filter_map(|r| r["id"].as_str().and_then(|id| AgentId::new(id).ok()))
            .take(crate::domain::names::CHANGES_PER_COMMAND_MAX)
            .map(|id| Change::RemoveAgent { id })
            .collect();
        if forget.is_empty() {
            continue;
        }
        let n = forget.len();
        let meta = WriteMeta {
            actor: format!("node:{}", ctx.node.id),
            comment: format!("not seen for more than {} s (--forget-agents-after-secs)", after_ms / 1000),
            // Refused if anything changed since the rows were read (an agent registered again).
            expected_revision: Some(revision),
            idempotency_key: None,
        };
        match submit(&ctx, meta, CommandBody::Apply { changes: forget }).await {
            Ok(_) => tracing::info!(agents = n, "forgot agents not seen for a long time"),
            Err(e) => tracing::info!("forgetting agents deferred: {}", e.message),
        }
    }
}

/// Registers `id` if it is unknown (first contact). Idempotent across nodes and retries.
async fn ensure_registered(ctx: &Ctx, id: &AgentId) -> Result<(), ApiError> {
    if ctx.machine.read().state.agents.contains_key(id) {
        return Ok(());
    }
    // The key names the revision the agent was found unregistered at: retries and racing
    // nodes share it, and an agent removed later registers anew.
    let revision = ctx.machine.read().state.revision;
    let meta = WriteMeta {
        actor: format!("agent:{id}"),
        comment: "registered on first contact".into(),
        expected_revision: None,
        idempotency_key: Some(format!("register-agent:{id}@{revision}")),
    };
    match submit(ctx, meta, CommandBody::Apply { changes: vec![Change::RegisterAgent { id: id.clone() }] }).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == RejectCode::AlreadyExists.as_str() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Acks and reports are accepted only from registered agents, so the contact table stays
/// bounded by the number of agents.
pub(super) fn require_registered(ctx: &Ctx, id: &AgentId) -> Result<(), ApiError> {
    if ctx.machine.read().state.agents.contains_key(id) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("agent {id} is not registered; its first config watch registers it")))
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct WatchQuery {
    #[serde(default)]
    after: u64,
    wait_ms: Option<u64>,
}

async fn watch_config(State(ctx): State<Ctx>, ApiPath(id): ApiPath<String>, ApiQuery(q): ApiQuery<WatchQuery>) -> Result<Response, ApiError> {
    let id = AgentId::new(id)?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(WATCH_WAIT_DEFAULT_MS).min(WATCH_WAIT_MAX_MS));
    let mut closing = ctx.agents.closing.subscribe();
    if *closing.borrow_and_update() {
        return Err(ApiError::unavailable("this node is stopping; try another node"));
    }
    let permit = ctx
        .agents
        .watches
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("this node holds the maximum number of agent watches; try another node"))?;
    // Boxed: the registration path (a Raft write) is rare and its future large.
    Box::pin(ensure_registered(&ctx, &id)).await?;
    // Asking for changes after R means the agent has deployed R.
    ctx.agents.touch(&id, ctx.node.id, Some(q.after));
    let holding = ctx.agents.hold(&id);
    let changed = ctx.machine.subscribe_agent(&id);
    let deadline = tokio::time::Instant::now() + wait;
    // The watch is held by a deferred answer: the route's middleware and this handler end now.
    let held = HeldWatch { machine: ctx.machine.clone(), id, after: q.after, deadline, _permit: permit, _holding: holding };
    Ok(super::router::deferred(held.answer(changed, closing)))
}

/// A config watch being held: what its deferred answer needs, and the guards that count it
/// (the node's watch budget, the agent's "connected").
struct HeldWatch {
    machine: crate::machine::MachineHandle,
    id: AgentId,
    after: u64,
    deadline: tokio::time::Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _holding: Holding,
}

impl HeldWatch {
    /// The agent's configuration once it changed after `after` (never from a state older
    /// than the agent's), or 204 at the deadline or when the node stops.
    async fn answer(self, mut changed: tokio::sync::watch::Receiver<u64>, mut closing: tokio::sync::watch::Receiver<bool>) -> Response {
        // Only a node that is behind the agent also waits for its own progress; otherwise the
        // watch wakes only when this agent's configuration changes.
        let mut applied: Option<tokio::sync::watch::Receiver<u64>> = None;
        loop {
            {
                let live = self.machine.read();
                let changed_at = *changed.borrow_and_update();
                let behind = live.state.revision < self.after;
                if changed_at > self.after && !behind {
                    let body = self.machine.rendered_configs().render(&live.state, &self.id);
                    let mut resp = ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
                    resp.headers_mut().insert(super::HEADER_REVISION, axum::http::HeaderValue::from(live.state.revision));
                    return resp;
                }
                if behind && applied.is_none() {
                    applied = Some(self.machine.subscribe());
                } else if !behind {
                    applied = None;
                }
            }
            let progress = async {
                match applied.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = changed.changed() => { if r.is_err() { break; } }
                ok = progress => { if !ok { break; } }
                _ = closing.changed() => break,
                _ = tokio::time::sleep_until(self.deadline) => break,
            }
        }
        StatusCode::NO_CONTENT.into_response()
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    revision: u64,
}

async fn ack(State(ctx): State<Ctx>, ApiPath(id): ApiPath<String>, ApiJson(r): ApiJson<AckRequest>) -> Result<Response, ApiError> {
    let id = AgentId::new(id)?;
    require_registered(&ctx, &id)?;
    let head = ctx.machine.read().state.revision;
    if r.revision > head {
        return Err(ApiError::bad_request(format!("revision {} is ahead of this node ({head})", r.revision)));
    }
    ctx.agents.touch(&id, ctx.node.id, Some(r.revision));
    Ok(Json(Acknowledged { acknowledged: r.revision }).into_response())
}

async fn contacts(State(ctx): State<Ctx>) -> Response {
    let map: HashMap<String, Contact> = ctx.agents.snapshot().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Json(map).into_response()
}

/// A page of the agents list.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AgentsQuery {
    /// Agents per page (default 1000, at most 10000).
    #[serde(default)]
    limit: Option<u32>,
    /// Start after this agent id: the `next` of the previous page.
    #[serde(default)]
    after: Option<String>,
    /// Only the agents of this agent cluster.
    #[serde(default)]
    cluster: Option<String>,
}

/// Registered agents with their deployment status, merged from all reachable nodes, a page
/// at a time (`next` names the `after` of the next page, `null` on the last).
/// A page of registered agents.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct AgentsPage {
    revision: u64,
    /// Per agent: `id`, `registered_ms`, `clusters`, `tasks`, `deployed_revision`,
    /// `desired_revision`, `last_contact_ms`, `node`, `lag`, `connected`, `reported`, `stale`.
    agents: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The `after` of the next page; null on the last.
    next: Option<serde_json::Value>,
    /// Peers (addresses) whose agent contacts could not be merged in: their agents may look idle.
    unreachable_nodes: Vec<String>,
}

/// The revision an agent acknowledged deploying.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Acknowledged {
    acknowledged: u64,
}

async fn list_agents(State(ctx): State<Ctx>, ApiQuery(q): ApiQuery<AgentsQuery>) -> Result<Response, ApiError> {
    let limit = match q.limit {
        None => super::resources::PAGE_DEFAULT,
        Some(0) => return Err(ApiError::bad_request("limit must be at least 1")),
        Some(n) => (n as usize).min(super::resources::PAGE_MAX),
    };
    let members = match &q.cluster {
        None => None,
        Some(c) => {
            let c = crate::domain::ClusterName::new(c.as_str())?;
            let live = ctx.machine.read();
            let cluster = live.state.clusters.get(&c).ok_or_else(|| ApiError::not_found(format!("agent cluster {c} does not exist")))?;
            Some(cluster.agents.clone())
        }
    };
    let after = q.after.clone();
    let keep = |id: &AgentId| after.as_deref().is_none_or(|a| id.as_str() > a) && members.as_ref().is_none_or(|m| m.contains(id));
    let (revision, mut agents, unreachable) = agent_rows(&ctx, keep, limit + 1).await;
    let next = (agents.len() > limit).then(|| {
        agents.truncate(limit);
        agents.last().map(|a| a["id"].clone())
    });
    let agents = agents.into_iter().map(|a| match a {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    });
    Ok(read_response(revision, &AgentsPage { revision, agents: agents.collect(), next: next.flatten(), unreachable_nodes: unreachable }))
}

/// Registered agents (those `keep` accepts, at most `limit`) with their deployment status
/// merged from all nodes: the revision, one JSON row per agent, and the nodes that did not
/// answer.
pub async fn agent_rows(ctx: &Ctx, keep: impl Fn(&AgentId) -> bool, limit: usize) -> (u64, Vec<serde_json::Value>, Vec<String>) {
    let mut merged: HashMap<String, Contact> = ctx.agents.snapshot().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let peers: Vec<String> = {
        let m = ctx.node.raft.metrics().borrow().clone();
        m.membership_config.membership().nodes().filter(|(id, _)| **id != ctx.node.id).map(|(_, n)| n.addr.clone()).collect()
    };
    let mut unreachable = Vec::new();
    let answers = futures::future::join_all(peers.iter().map(|addr| {
        let req = ctx.peer_http.get(ctx.transport.url(addr, "/internal/agent-contacts"));
        async move { (addr.clone(), req.timeout(Duration::from_millis(PEER_STATUS_TIMEOUT_MS)).send().await) }
    }))
    .await;
    for (addr, answer) in answers {
        match answer {
            Ok(r) => match r.json::<HashMap<String, Contact>>().await {
                Ok(map) => {
                    for (id, c) in map {
                        let e = merged.entry(id).or_default();
                        let deployed = e.deployed_revision.max(c.deployed_revision);
                        let watching = e.watching + c.watching;
                        if c.last_contact_ms > e.last_contact_ms {
                            *e = c;
                        }
                        e.deployed_revision = deployed;
                        e.watching = watching;
                    }
                }
                Err(_) => unreachable.push(addr),
            },
            Err(_) => unreachable.push(addr),
        }
    }
    // Which servers each agent reported within the failure-report window.
    let mut reported: HashMap<String, Vec<String>> = HashMap::new();
    for (server, agents) in super::agent_reports::recent_reports(ctx, ctx.failure_policy.window_ms).await.unwrap_or_default() {
        for a in agents {
            reported.entry(a).or_default().push(server.to_string());
        }
    }
    let now = now_ms();
    let live = ctx.machine.read();
    let state = &live.state;
    // Agents share few distinct cluster sets: count each set's tasks once.
    let clusters_of = crate::projection::clusters_by_agent(state);
    let mut tasks_of: HashMap<&[crate::domain::ClusterName], usize> = HashMap::new();
    let none = Vec::new();
    let agents: Vec<_> = state
        .agents
        .values()
        .filter(|a| keep(&a.id))
        .take(limit)
        .map(|a| {
            let clusters = clusters_of.get(&a.id).unwrap_or(&none);
            let tasks = *tasks_of.entry(clusters.as_slice()).or_insert_with(|| crate::projection::task_count(state, clusters));
            let c = merged.get(a.id.as_str()).cloned().unwrap_or_default();
            // Lag: how many revisions the agent's deployed configuration is behind, counted
            // only when the configuration it should have differs from what it deployed.
            let desired = ctx.machine.agent_changed_at(&a.id);
            let lag = if c.deployed_revision >= desired { 0 } else { state.revision.saturating_sub(c.deployed_revision) };
            let unseen_ms = now.saturating_sub(c.last_contact_ms.max(a.registered_ms));
            json!({
                "id": a.id,
                "registered_ms": a.registered_ms,
                "clusters": clusters,
                "tasks": tasks,
                "deployed_revision": c.deployed_revision,
                "desired_revision": desired,
                "last_contact_ms": if c.last_contact_ms == 0 { None } else { Some(c.last_contact_ms) },
                "node": if c.node == 0 { None } else { Some(c.node) },
                "lag": lag,
                "connected": c.watching > 0,
                "reported": reported.get(a.id.as_str()).cloned().unwrap_or_default(),
                "stale": c.watching == 0 && unseen_ms > ctx.agent_stale_after_ms,
            })
        })
        .collect();
    (state.revision, agents, unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reports_are_rate_limited_and_deduplicated_per_agent() {
        let t = AgentTracker::default();
        let (a1, a2) = (AgentId::new("a1").unwrap(), AgentId::new("a2").unwrap());
        let task = TaskName::new("billing").unwrap();
        let server = |i: u32| ServerName::new(format!("rt{i}")).unwrap();
        assert!(matches!(t.admit_report(&a1, &task, &server(0)), ReportAdmission::Admit));
        assert!(matches!(t.admit_report(&a1, &task, &server(0)), ReportAdmission::Repeat), "a repeat within the window");
        for i in 1..FAILURE_REPORTS_PER_AGENT_PER_MINUTE {
            assert!(matches!(t.admit_report(&a1, &task, &server(i)), ReportAdmission::Admit), "report {i}");
        }
        let over = server(FAILURE_REPORTS_PER_AGENT_PER_MINUTE);
        assert!(matches!(t.admit_report(&a1, &task, &over), ReportAdmission::RateLimited));
        // Budgets are per agent.
        assert!(matches!(t.admit_report(&a2, &task, &over), ReportAdmission::Admit));
    }
}
