//! Configuration resources: servers, agent clusters, agents, tasks and task configurations,
//! plus `POST /v1/commands` for a multi-change command. Each write is a one-command revision.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::http::Method;
use serde::{Deserialize, Serialize};

use super::{route, RouteSpec};
use crate::auth::Access::Roles;
use crate::auth::{READ_CONFIG, WRITE_CONFIG};
const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;
use super::{outcome_response, read_barrier, read_response, submit, ApiError, ApiJson, ApiPath, ApiQuery, Consistency, Ctx, WriteMeta};
use crate::domain::{
    AgentId, Change, ClusterName, CommandBody, Host, MoveDirection, PoolName, Scheme, Server, ServerName, ServerStatus,
    State as DomainState, TaskName,
};

pub fn routes() -> Vec<RouteSpec> {
    let (read, write) = (Roles(READ_CONFIG), Roles(WRITE_CONFIG));
    vec![
        route(POST, "/v1/commands", write, post_command).writes(),
        route(GET, "/v1/servers", read, list_servers).returns::<Vec<ServerView>>(),
        route(POST, "/v1/servers", write, add_server).writes(),
        route(GET, "/v1/servers/{name}", read, get_server).returns::<ServerView>(),
        route(PATCH, "/v1/servers/{name}", write, update_server).writes(),
        route(DELETE, "/v1/servers/{name}", write, delete_server).writes(),
        route(POST, "/v1/servers/{name}/enable", write, enable_server).writes(),
        route(POST, "/v1/servers/{name}/disable", write, disable_server).writes(),
        route(GET, "/v1/agent-clusters", read, list_clusters).returns::<Vec<ClusterView>>(),
        route(POST, "/v1/agent-clusters", write, create_cluster).writes(),
        route(GET, "/v1/agent-clusters/{name}", read, get_cluster).returns::<ClusterView>(),
        route(DELETE, "/v1/agent-clusters/{name}", write, delete_cluster).writes(),
        route(PUT, "/v1/agent-clusters/{name}/agents/{id}", write, add_agent).writes(),
        route(DELETE, "/v1/agent-clusters/{name}/agents/{id}", write, remove_agent).writes(),
        route(GET, "/v1/tasks", read, list_tasks).returns::<Vec<TaskView>>(),
        route(POST, "/v1/tasks", write, create_task).writes(),
        route(GET, "/v1/tasks/{task}", read, get_task).returns::<TaskView>(),
        route(DELETE, "/v1/tasks/{task}", write, delete_task).writes(),
        route(GET, "/v1/tasks/{task}/configs/{cluster}", read, get_config).returns::<ConfigView>(),
        route(PUT, "/v1/tasks/{task}/configs/{cluster}", write, put_config).writes(),
        route(DELETE, "/v1/tasks/{task}/configs/{cluster}", write, delete_config).writes(),
        route(POST, "/v1/tasks/{task}/configs/{cluster}/servers", write, add_list_server).writes(),
        route(PATCH, "/v1/tasks/{task}/configs/{cluster}/servers/{server}", write, set_list_server_weight).writes(),
        route(DELETE, "/v1/tasks/{task}/configs/{cluster}/servers/{server}", write, remove_list_server).writes(),
        route(POST, "/v1/tasks/{task}/configs/{cluster}/servers/{server}/move", write, move_list_server).writes(),
        route(PUT, "/v1/tasks/{task}/configs/{cluster}/load-balancing", write, set_load_balancing).writes(),
    ]
}

async fn apply(ctx: &Ctx, meta: WriteMeta, changes: Vec<Change>, status: StatusCode) -> Result<Response, ApiError> {
    let outcome = submit(ctx, meta, CommandBody::Apply { changes }).await?;
    Ok(outcome_response(outcome, status))
}

async fn apply_one(ctx: &Ctx, meta: WriteMeta, change: Change) -> Result<Response, ApiError> {
    apply(ctx, meta, vec![change], StatusCode::OK).await
}

/// Default and largest page of a list route.
pub(super) const PAGE_DEFAULT: usize = 1_000;
pub(super) const PAGE_MAX: usize = 10_000;

/// Declares a list route's query: the pagination parameters every list has, and its own
/// filters (an unknown parameter is refused, and the OpenAPI document lists only the filters
/// the route has).
macro_rules! page_query {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct $name {
            /// Items per page (default 1000, at most 10000).
            #[serde(default)]
            limit: Option<u32>,
            /// Start after this name: the `X-Roster-Next` of the previous page.
            #[serde(default)]
            after: Option<String>,
            /// Read the page at this revision: the `X-Roster-Revision` of the first page, so a
            /// listing of several pages is of one revision. An older revision needs an auditing
            /// role.
            #[serde(default)]
            revision: Option<u64>,
            $($(#[$fdoc])* #[serde(default)] $field: Option<$ty>,)*
        }

        impl PageParams for $name {
            fn page(&self) -> Page<'_> {
                Page { limit: self.limit, after: self.after.as_deref(), revision: self.revision }
            }
        }
    };
}

page_query!(
    /// `GET /v1/servers`.
    ServersQuery {
        /// Only the servers with this status (enabled, disabled, failed).
        status: ServerStatus,
    }
);
page_query!(
    /// `GET /v1/agent-clusters`.
    ClustersQuery {}
);
page_query!(
    /// `GET /v1/tasks`.
    TasksQuery {
        /// Only the tasks configured for this agent cluster.
        cluster: String,
        /// Only the tasks whose lists name this server ("which lists use this server").
        server: String,
    }
);

/// The pagination parameters of a list query.
struct Page<'a> {
    limit: Option<u32>,
    after: Option<&'a str>,
    revision: Option<u64>,
}

trait PageParams {
    fn page(&self) -> Page<'_>;

    /// Whether a name comes after the `after` cursor (every name does without one).
    fn past(&self, name: &str) -> bool {
        self.page().after.is_none_or(|a| name > a)
    }
}

impl Page<'_> {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(PAGE_DEFAULT),
            Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => Ok((n as usize).min(PAGE_MAX)),
        }
    }
}

/// One page of `items` (name, value), which the caller starts after `q.after` (before building
/// each value, so a late page does not build the views of the earlier ones); answers it as a JSON
/// array with `X-Roster-Revision` and, when more remain, `X-Roster-Next` (the `after` of the
/// next page) and a `Link: <...>; rel="next"` header.
fn page_response<T: Serialize>(revision: u64, path: &str, q: &impl PageParams, items: impl Iterator<Item = (String, T)>) -> Result<Response, ApiError> {
    let limit = q.page().limit()?;
    let mut page = Vec::new();
    let mut next = None;
    for (name, item) in items {
        if page.len() == limit {
            next = page.last().map(|(n, _): &(String, T)| n.clone());
            break;
        }
        page.push((name, item));
    }
    let body: Vec<T> = page.into_iter().map(|(_, v)| v).collect();
    let mut resp = read_response(revision, &body);
    if let Some(n) = next {
        let link = format!("<{path}?limit={limit}&after={}&revision={revision}>; rel=\"next\"", crate::domain::percent_encode(&n));
        if let (Ok(nv), Ok(lv)) = (axum::http::HeaderValue::from_str(&n), axum::http::HeaderValue::from_str(&link)) {
            resp.headers_mut().insert(super::HEADER_NEXT, nv);
            resp.headers_mut().insert(axum::http::header::LINK, lv);
        }
    }
    Ok(resp)
}

/// Answers `f` on the state a page is read from: the live one (read in place, under the
/// lock), or, with an older `revision` and a role that may read history, the state at that
/// revision.
async fn with_page_state(
    ctx: &Ctx,
    c: Consistency,
    q: &impl PageParams,
    id: Option<&crate::auth::Identity>,
    f: impl FnOnce(&DomainState) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    read_barrier(ctx, c).await?;
    let head = ctx.machine.read().state.revision;
    match q.page().revision {
        Some(r) if r != head => {
            if id.is_some_and(|i| !crate::auth::READ_AUDIT.contains(&i.role)) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "revision_moved",
                    format!("the configuration moved from revision {r} to {head} since the first page; list again (only auditing roles may read past revisions)"),
                ));
            }
            f(&super::audit::state_at(ctx, Some(r)).await?)
        }
        _ => f(&ctx.machine.read().state),
    }
}

/// Reads the live state after the barrier and answers with `f`'s result.
async fn read<T: Serialize>(
    ctx: &Ctx,
    consistency: Consistency,
    f: impl FnOnce(&DomainState) -> Result<T, ApiError>,
) -> Result<Response, ApiError> {
    read_barrier(ctx, consistency).await?;
    let live = ctx.machine.read();
    let body = f(&live.state)?;
    Ok(read_response(live.state.revision, &body))
}

// ---- commands

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    changes: Vec<Change>,
}

async fn post_command(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(req): ApiJson<CommandRequest>) -> Result<Response, ApiError> {
    apply(&ctx, meta, req.changes, StatusCode::OK).await
}

// ---- servers

/// A server as the API shows it.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ServerView {
    pub name: ServerName,
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
    pub pool: Option<PoolName>,
    pub status: ServerStatus,
    pub url: String,
}

impl From<&Server> for ServerView {
    fn from(s: &Server) -> Self {
        Self {
            name: s.name.clone(),
            scheme: s.scheme.clone(),
            host: s.host.clone(),
            port: s.port,
            pool: s.pool.clone(),
            status: s.status,
            url: s.url(),
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddServerRequest {
    name: ServerName,
    host: Host,
    #[serde(default = "crate::domain::names::default_server_port")]
    port: u16,
    #[serde(default)]
    pool: Option<PoolName>,
    #[serde(default)]
    scheme: Option<Scheme>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateServerRequest {
    #[serde(default)]
    host: Option<Host>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    pool: Option<PoolName>,
    #[serde(default)]
    clear_pool: bool,
    #[serde(default)]
    scheme: Option<Scheme>,
}

fn server_name(raw: String) -> Result<ServerName, ApiError> {
    Ok(ServerName::new(raw)?)
}

async fn list_servers(
    State(ctx): State<Ctx>,
    c: Consistency,
    id: Option<axum::Extension<crate::auth::Identity>>,
    ApiQuery(q): ApiQuery<ServersQuery>,
) -> Result<Response, ApiError> {
    with_page_state(&ctx, c, &q, id.as_ref().map(|e| &e.0), |s| {
        let items = s
            .servers
            .values()
            .skip_while(|v| !q.past(v.name.as_str()))
            .filter(|v| q.status.is_none_or(|st| v.status == st))
            .map(|v| (v.name.to_string(), ServerView::from(v)));
        page_response(s.revision, "/v1/servers", &q, items)
    })
    .await
}

async fn get_server(State(ctx): State<Ctx>, c: Consistency, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let name = server_name(name)?;
    read(&ctx, c, |s| {
        s.servers.get(&name).map(ServerView::from).ok_or_else(|| ApiError::not_found(format!("server {name} does not exist")))
    })
    .await
}

async fn add_server(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<AddServerRequest>) -> Result<Response, ApiError> {
    let change = Change::AddServer { name: r.name, host: r.host, port: r.port, pool: r.pool, scheme: r.scheme };
    apply(&ctx, meta, vec![change], StatusCode::CREATED).await
}

async fn update_server(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath(name): ApiPath<String>,
    ApiJson(r): ApiJson<UpdateServerRequest>,
) -> Result<Response, ApiError> {
    let name = server_name(name)?;
    let change = Change::UpdateServer { name, host: r.host, port: r.port, pool: r.pool, clear_pool: r.clear_pool, scheme: r.scheme };
    apply_one(&ctx, meta, change).await
}

async fn delete_server(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    apply_one(&ctx, meta, Change::DeleteServer { name: server_name(name)? }).await
}

async fn enable_server(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    apply_one(&ctx, meta, Change::EnableServer { name: server_name(name)? }).await
}

async fn disable_server(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    apply_one(&ctx, meta, Change::DisableServer { name: server_name(name)? }).await
}

// ---- agents and agent clusters

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateNamed<N> {
    name: N,
}

/// An agent cluster as the API shows it.
#[derive(Serialize, schemars::JsonSchema)]
struct ClusterView {
    name: ClusterName,
    /// Its member agents, by id.
    agents: Vec<AgentId>,
    /// The tasks that have a failover list for this cluster.
    tasks: Vec<TaskName>,
}

fn cluster_view(s: &DomainState, name: &ClusterName) -> ClusterView {
    let tasks = s.tasks.iter().filter(|(_, t)| t.configs.contains_key(name)).map(|(n, _)| n.clone()).collect();
    ClusterView { name: name.clone(), agents: s.clusters[name].agents.iter().cloned().collect(), tasks }
}

async fn list_clusters(
    State(ctx): State<Ctx>,
    c: Consistency,
    id: Option<axum::Extension<crate::auth::Identity>>,
    ApiQuery(q): ApiQuery<ClustersQuery>,
) -> Result<Response, ApiError> {
    with_page_state(&ctx, c, &q, id.as_ref().map(|e| &e.0), |s| {
        let items = s.clusters.keys().skip_while(|n| !q.past(n.as_str())).map(|n| (n.to_string(), cluster_view(s, n)));
        page_response(s.revision, "/v1/agent-clusters", &q, items)
    })
    .await
}

async fn get_cluster(State(ctx): State<Ctx>, c: Consistency, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let name = ClusterName::new(name)?;
    read(&ctx, c, |s| {
        if !s.clusters.contains_key(&name) {
            return Err(ApiError::not_found(format!("agent cluster {name} does not exist")));
        }
        Ok(cluster_view(s, &name))
    })
    .await
}

async fn create_cluster(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<CreateNamed<ClusterName>>) -> Result<Response, ApiError> {
    apply(&ctx, meta, vec![Change::CreateCluster { name: r.name }], StatusCode::CREATED).await
}

async fn delete_cluster(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    apply_one(&ctx, meta, Change::DeleteCluster { name: ClusterName::new(name)? }).await
}

async fn add_agent(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath((cluster, id)): ApiPath<(String, String)>) -> Result<Response, ApiError> {
    apply_one(&ctx, meta, Change::AddAgentToCluster { cluster: ClusterName::new(cluster)?, agent: AgentId::new(id)? }).await
}

async fn remove_agent(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath((cluster, id)): ApiPath<(String, String)>) -> Result<Response, ApiError> {
    apply_one(&ctx, meta, Change::RemoveAgentFromCluster { cluster: ClusterName::new(cluster)?, agent: AgentId::new(id)? }).await
}

// ---- tasks and configurations

/// A task's failover list for one agent cluster.
#[derive(Serialize, schemars::JsonSchema)]
struct ConfigView {
    task: TaskName,
    cluster: ClusterName,
    load_balancing: bool,
    servers: Vec<ListEntryView>,
}

/// One entry of a failover list, with the server's address and status (absent when the
/// server is not registered).
#[derive(Serialize, schemars::JsonSchema)]
struct ListEntryView {
    name: ServerName,
    url: Option<String>,
    status: Option<ServerStatus>,
    /// Priority tier: only the lowest tier with a usable server is used.
    priority: u16,
    /// Load-balancing weight within the tier.
    weight: u16,
}

fn config_view(s: &DomainState, task: &TaskName, cluster: &ClusterName) -> Option<ConfigView> {
    let cfg = s.config(task, cluster)?;
    Some(ConfigView {
        task: task.clone(),
        cluster: cluster.clone(),
        load_balancing: cfg.load_balancing,
        servers: cfg
            .servers
            .iter()
            .map(|n| {
                let srv = s.servers.get(n);
                let w = cfg.weighting(n);
                ListEntryView {
                    name: n.clone(),
                    url: srv.map(Server::url),
                    status: srv.map(|x| x.status),
                    priority: w.priority,
                    weight: w.weight,
                }
            })
            .collect(),
    })
}

/// A task with its failover list per agent cluster.
#[derive(Serialize, schemars::JsonSchema)]
struct TaskView {
    name: TaskName,
    configs: Vec<ConfigView>,
}

fn task_view(s: &DomainState, task: &TaskName) -> Option<TaskView> {
    let t = s.tasks.get(task)?;
    Some(TaskView { name: task.clone(), configs: t.configs.keys().filter_map(|c| config_view(s, task, c)).collect() })
}

async fn list_tasks(
    State(ctx): State<Ctx>,
    c: Consistency,
    id: Option<axum::Extension<crate::auth::Identity>>,
    ApiQuery(q): ApiQuery<TasksQuery>,
) -> Result<Response, ApiError> {
    let cluster = q.cluster.clone().map(ClusterName::new).transpose()?;
    let server = q.server.clone().map(ServerName::new).transpose()?;
    with_page_state(&ctx, c, &q, id.as_ref().map(|e| &e.0), |s| {
        let items = s
            .tasks
            .iter()
            .skip_while(|(name, _)| !q.past(name.as_str()))
            .filter(|(_, t)| cluster.as_ref().is_none_or(|c| t.configs.contains_key(c)))
            .filter(|(_, t)| server.as_ref().is_none_or(|sv| t.configs.values().any(|cfg| cfg.servers.contains(sv))))
            .filter_map(|(name, _)| task_view(s, name).map(|v| (name.to_string(), v)));
        page_response(s.revision, "/v1/tasks", &q, items)
    })
    .await
}

async fn get_task(State(ctx): State<Ctx>, c: Consistency, ApiPath(task): ApiPath<String>) -> Result<Response, ApiError> {
    let task = TaskName::new(task)?;
    read(&ctx, c, |s| task_view(s, &task).ok_or_else(|| ApiError::not_found(format!("task {task} does not exist")))).await
}

async fn create_task(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<CreateNamed<TaskName>>) -> Result<Response, ApiError> {
    apply(&ctx, meta, vec![Change::CreateTask { name: r.name }], StatusCode::CREATED).await
}

async fn delete_task(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(task): ApiPath<String>) -> Result<Response, ApiError> {
    apply_one(&ctx, meta, Change::DeleteTask { name: TaskName::new(task)? }).await
}

fn task_cluster(task: String, cluster: String) -> Result<(TaskName, ClusterName), ApiError> {
    Ok((TaskName::new(task)?, ClusterName::new(cluster)?))
}

async fn get_config(State(ctx): State<Ctx>, c: Consistency, ApiPath((task, cluster)): ApiPath<(String, String)>) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    read(&ctx, c, |s| {
        config_view(s, &task, &cluster)
            .ok_or_else(|| ApiError::not_found(format!("task {task} has no configuration for agent cluster {cluster}")))
    })
    .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PutConfigRequest {
    servers: Vec<ServerName>,
    #[serde(default)]
    load_balancing: Option<bool>,
}

async fn put_config(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath((task, cluster)): ApiPath<(String, String)>,
    ApiJson(r): ApiJson<PutConfigRequest>,
) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    let mut changes = vec![Change::SetServers { task: task.clone(), cluster: cluster.clone(), servers: r.servers }];
    if let Some(enabled) = r.load_balancing {
        changes.push(Change::SetLoadBalancing { task, cluster, enabled });
    }
    apply(&ctx, meta, changes, StatusCode::OK).await
}

async fn delete_config(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath((task, cluster)): ApiPath<(String, String)>) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    apply_one(&ctx, meta, Change::DeleteTaskConfig { task, cluster }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddListServerRequest {
    server: ServerName,
    #[serde(default)]
    position: Option<u32>,
    /// The entry's priority tier (default 1).
    #[serde(default)]
    priority: Option<u16>,
    /// The entry's load-balancing weight (default 1).
    #[serde(default)]
    weight: Option<u16>,
}

async fn add_list_server(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath((task, cluster)): ApiPath<(String, String)>,
    ApiJson(r): ApiJson<AddListServerRequest>,
) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    let mut changes =
        vec![Change::AddServerToList { task: task.clone(), cluster: cluster.clone(), server: r.server.clone(), position: r.position }];
    if r.priority.is_some() || r.weight.is_some() {
        changes.push(Change::SetServerWeight { task, cluster, server: r.server, priority: r.priority, weight: r.weight });
    }
    apply(&ctx, meta, changes, StatusCode::OK).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetWeightRequest {
    #[serde(default)]
    priority: Option<u16>,
    #[serde(default)]
    weight: Option<u16>,
}

/// Sets an entry's priority tier and weight.
async fn set_list_server_weight(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath((task, cluster, server)): ApiPath<(String, String, String)>,
    ApiJson(r): ApiJson<SetWeightRequest>,
) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    apply_one(&ctx, meta, Change::SetServerWeight { task, cluster, server: server_name(server)?, priority: r.priority, weight: r.weight }).await
}

async fn remove_list_server(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath((task, cluster, server)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    apply_one(&ctx, meta, Change::RemoveServerFromList { task, cluster, server: server_name(server)? }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    direction: MoveDirection,
}

async fn move_list_server(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath((task, cluster, server)): ApiPath<(String, String, String)>,
    ApiJson(r): ApiJson<MoveRequest>,
) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    apply_one(&ctx, meta, Change::MoveServer { task, cluster, server: server_name(server)?, direction: r.direction }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LoadBalancingRequest {
    enabled: bool,
}

async fn set_load_balancing(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath((task, cluster)): ApiPath<(String, String)>,
    ApiJson(r): ApiJson<LoadBalancingRequest>,
) -> Result<Response, ApiError> {
    let (task, cluster) = task_cluster(task, cluster)?;
    apply_one(&ctx, meta, Change::SetLoadBalancing { task, cluster, enabled: r.enabled }).await
}
