//! The console's pages and the forms they post.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use super::*;
use crate::domain::oplog::Level;
use crate::domain::{ClusterName, Host, MoveDirection, PoolName, Scheme, ServerName, ServerStatus, TaskName};
use crate::session::{SESSION_COOKIE, SESSION_TTL_MS};

/// The pre-session cookie the sign-in form's CSRF token is bound to.
const LOGIN_COOKIE: &str = "roster_login";
/// Members listed per agent cluster card.
const MEMBERS_SHOWN: usize = 50;
/// Tags listed in one cell (failover lists using a server, entities a revision changed).
const TAGS_SHOWN: usize = 8;

#[derive(Deserialize, Default)]
pub struct Msg {
    msg: Option<String>,
    err: Option<String>,
}

fn tls(ctx: &Ctx) -> bool {
    ctx.auth.is_enabled()
}

fn cookie_attrs(ctx: &Ctx) -> &'static str {
    if tls(ctx) {
        "Path=/ui; HttpOnly; Secure; SameSite=Strict"
    } else {
        "Path=/ui; HttpOnly; SameSite=Strict"
    }
}

fn login_markup(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in · Roster" }
                link rel="stylesheet" href="/ui/assets/console.css";
            }
            body.login {
                main {
                    h1 { "Roster" }
                    p { "Sign in with an API token (the same tokens and roles as the API)." }
                    @if let Some(e) = error { p.error id="error" { (e) } }
                    form method="post" action="/ui/login" {
                        input type="hidden" name="_csrf" value=(csrf);
                        label for="token" { "Token" }
                        input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                        button.primary id="sign-in" type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

pub async fn login_page(State(ctx): Cx) -> Response {
    if !ctx.auth.is_enabled() {
        return Redirect::to("/ui/servers").into_response();
    }
    let nonce = format!("{:032x}", rand::random::<u128>());
    let csrf = ctx.auth.session_key().csrf(&format!("login|{nonce}"));
    let mut resp = html_response(StatusCode::OK, login_markup(&csrf, None));
    let set = format!("{LOGIN_COOKIE}={nonce}; Max-Age=3600; {}", cookie_attrs(&ctx));
    resp.headers_mut().insert(header::SET_COOKIE, set.parse().expect("cookie header"));
    resp
}

pub async fn login(State(ctx): Cx, headers: HeaderMap, body: Bytes) -> Response {
    if !ctx.auth.is_enabled() {
        return Redirect::to("/ui/servers").into_response();
    }
    let fields = serde_urlencoded_pairs(&body);
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default().to_string();
    let key = ctx.auth.session_key();
    let payload = format!("login|{nonce}");
    if nonce.is_empty() || !key.csrf_ok(&payload, fields.get("_csrf").map(String::as_str).unwrap_or("")) {
        return refusal(StatusCode::FORBIDDEN, "the sign-in form's CSRF token is missing or stale; reload the sign-in page");
    }
    let token = fields.get("token").map(|t| t.trim()).unwrap_or("");
    match ctx.auth.user_for_secret(token) {
        Some((identity, hash)) if identity.role != Role::Agent => {
            let cookie = key.issue(&identity.name, &hash, commands::now_ms());
            let mut resp = Redirect::to("/ui/servers").into_response();
            let set = format!("{SESSION_COOKIE}={cookie}; Max-Age={}; {}", SESSION_TTL_MS / 1000, cookie_attrs(&ctx));
            resp.headers_mut().insert(header::SET_COOKIE, set.parse().expect("cookie header"));
            resp
        }
        Some(_) => html_response(StatusCode::FORBIDDEN, login_markup(&key.csrf(&payload), Some("agent tokens cannot sign in to the console"))),
        None => html_response(StatusCode::UNAUTHORIZED, login_markup(&key.csrf(&payload), Some("that token is not valid (unknown or revoked)"))),
    }
}

pub async fn logout(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    if let Err(r) = checked_form(&viewer, &ctx, &body) {
        return r;
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    let set = format!("{SESSION_COOKIE}=; Max-Age=0; {}", cookie_attrs(&ctx));
    resp.headers_mut().insert(header::SET_COOKIE, set.parse().expect("cookie header"));
    resp
}

#[derive(Deserialize)]
pub struct WaitQuery {
    after: u64,
    /// With it, an event recorded past this sequence number answers too (the events page).
    events_after: Option<u64>,
    /// With it, an agent acknowledging a deployment on this node answers too (the agents page).
    acks_after: Option<u64>,
}

/// Long poll behind live pages: answers once the revision is past `after` (or an event is
/// past `events_after`), or after [`LIVE_WAIT_MS`] with nothing new, so an open page costs
/// no request while idle.
pub async fn wait(State(ctx): Cx, _viewer: Viewer, Query(q): Query<WaitQuery>) -> Response {
    let mut revisions = ctx.machine.subscribe();
    let mut events = ctx.machine.subscribe_events();
    let mut acks = ctx.agents.subscribe_acks();
    let deadline = tokio::time::sleep(Duration::from_millis(LIVE_WAIT_MS));
    tokio::pin!(deadline);
    loop {
        let revision = *revisions.borrow_and_update();
        let seq = *events.borrow_and_update();
        let acked = *acks.borrow_and_update();
        let answer = Json(serde_json::json!({"revision": revision, "events": seq, "acks": acked}));
        if revision > q.after || q.events_after.is_some_and(|e| seq > e) || q.acks_after.is_some_and(|a| acked > a) {
            return answer.into_response();
        }
        tokio::select! {
            _ = &mut deadline => return answer.into_response(),
            changed = revisions.changed() => if changed.is_err() { return StatusCode::SERVICE_UNAVAILABLE.into_response() },
            changed = events.changed() => if changed.is_err() { return StatusCode::SERVICE_UNAVAILABLE.into_response() },
            changed = acks.changed() => if changed.is_err() { return StatusCode::SERVICE_UNAVAILABLE.into_response() },
        }
    }
}

/// The committed configuration next to a staged view: the view itself when nothing is
/// staged (no second copy of a large state).
fn current_beside<'a>(ctx: &Ctx, staged: &'a Config, pending: Option<&Changeset>) -> std::borrow::Cow<'a, Config> {
    if pending.is_some_and(|cs| !cs.changes.is_empty()) {
        std::borrow::Cow::Owned(ctx.machine.read().state.clone())
    } else {
        std::borrow::Cow::Borrowed(staged)
    }
}

fn status_badge(status: ServerStatus) -> Markup {
    let (class, label) = match status {
        ServerStatus::Enabled => ("badge enabled", "Enabled"),
        ServerStatus::Disabled => ("badge disabled", "Disabled"),
        ServerStatus::Failed => ("badge failed", "Failed"),
    };
    html! { span class=(class) { (label) } }
}

/// `(task, cluster)` pairs whose failover list names `server`.
/// Every server's failover lists, in one pass over the configurations (the servers page lists
/// many servers; asking [`lists_using`] for each would pass over them all each time).
fn lists_by_server(state: &Config) -> BTreeMap<&ServerName, Vec<(&TaskName, &ClusterName)>> {
    let mut out: BTreeMap<&ServerName, Vec<(&TaskName, &ClusterName)>> = BTreeMap::new();
    for (t, task) in &state.tasks {
        for (c, config) in &task.configs {
            for s in &config.servers {
                out.entry(s).or_default().push((t, c));
            }
        }
    }
    out
}

fn lists_using(state: &Config, server: &ServerName) -> Vec<(TaskName, ClusterName)> {
    state
        .tasks
        .iter()
        .flat_map(|(t, task)| task.configs.iter().filter(|(_, c)| c.servers.contains(server)).map(move |(c, _)| (t.clone(), c.clone())))
        .collect()
}

fn action_button(viewer: &Viewer, action: &str, fields: &[(&str, &str)], label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" {
            (csrf_field(viewer))
            input type="hidden" name="action" value=(action);
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button class=(class) type="submit" { (label) }
        }
    }
}

pub async fn servers(State(ctx): Cx, viewer: Viewer, Query(m): Query<Msg>) -> Response {
    if let Err(r) = barrier(&ctx).await {
        return r;
    }
    let pending = pending_changeset(&ctx, &viewer);
    let (state, stale) = staged_view(&ctx, pending.as_ref());
    let current = current_beside(&ctx, &state, pending.as_ref());
    let lists_of = lists_by_server(&state);
    let content = html! {
        @if let Some(s) = &stale { p.error { (s) } }
        @if state.servers.is_empty() {
            p.empty { "No run-time servers are registered yet." }
        } @else {
            table id="servers" {
                thead { tr { th { "Name" } th { "URL" } th { "Status" } th { "Used by" } @if viewer.can_edit() { th { "Actions" } } } }
                tbody {
                    @for (name, s) in state.servers.iter().take(CONSOLE_PAGE_ROWS) {
                        @let staged = current.servers.get(name) != Some(s);
                        tr data-server=(name) class=(if staged { "staged" } else { "" }) {
                            td { (name) @if staged { " " span.tag { "staged" } } }
                            td.mono { (s.url()) }
                            td { (status_badge(s.status)) }
                            td {
                                @let lists = lists_of.get(name).map(Vec::as_slice).unwrap_or(&[]);
                                @for (t, c) in lists.iter().take(TAGS_SHOWN) { span.tag { (t) " / " (c) } " " }
                                @if lists.len() > TAGS_SHOWN { "and " (lists.len() - TAGS_SHOWN) " more" }
                            }
                            @if viewer.can_edit() {
                                td.actions {
                                    @let n = name.as_str();
                                    @if s.status == ServerStatus::Enabled {
                                        (action_button(&viewer, "disable", &[("name", n)], "Disable", ""))
                                        (action_button(&viewer, "disable", &[("name", n), ("now", "1")], "Disable now", "urgent"))
                                    } @else {
                                        (action_button(&viewer, "enable", &[("name", n)], "Enable", ""))
                                        (action_button(&viewer, "enable", &[("name", n), ("now", "1")], "Enable now", "urgent"))
                                    }
                                    a.button href=(format!("/ui/servers/{n}")) { "Edit" }
                                    a.button.danger href=(format!("/ui/servers/{n}?confirm=delete")) { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            @if state.servers.len() > CONSOLE_PAGE_ROWS { p.note { "Showing the first " (CONSOLE_PAGE_ROWS) " of " (state.servers.len()) " servers." } }
        }
        @if viewer.can_edit() {
            h2 { "Register a server" }
            form.grid id="register" method="post" {
                (csrf_field(&viewer))
                input type="hidden" name="action" value="register";
                label { "Name" input name="name" required; }
                label { "Scheme" select name="scheme" { option { "http" } option { "https" } option { "tcp" } option { "tls" } } }
                label { "Host" input name="host" required; }
                label { "Port" input name="port" type="number" min="1" max="65535" value="8080" required; }
                label { "Pool (optional)" input name="pool"; }
                p { "URL: " output.mono id="url-preview" { "http://…" } }
                button.primary type="submit" { "Stage registration" }
            }
        }
    };
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Servers", active: "/ui/servers", revision: current.revision, live: true, watch_events: false, watch_acks: false };
    page.render(m.msg.as_deref(), m.err.as_deref(), content)
}

fn parse<T>(what: &str, r: Result<T, impl std::fmt::Display>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn server_change(f: &Form) -> Result<Change, String> {
    let name = parse("name", ServerName::new(f.get("name")))?;
    let optional = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let port = |v: &str| v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {v:?} is not 1..65535"));
    Ok(match f.get("action") {
        "register" => Change::AddServer {
            name,
            host: parse("host", Host::new(f.get("host")))?,
            port: port(f.get("port"))?,
            pool: optional(f.get("pool")).map(PoolName::new).transpose().map_err(|e| format!("pool: {e}"))?,
            scheme: optional(f.get("scheme")).map(Scheme::new).transpose().map_err(|e| format!("scheme: {e}"))?,
        },
        "update" => Change::UpdateServer {
            name,
            host: Some(parse("host", Host::new(f.get("host")))?),
            port: Some(port(f.get("port"))?),
            pool: optional(f.get("pool")).map(PoolName::new).transpose().map_err(|e| format!("pool: {e}"))?,
            clear_pool: f.get("pool").is_empty(),
            scheme: optional(f.get("scheme")).map(Scheme::new).transpose().map_err(|e| format!("scheme: {e}"))?,
        },
        "enable" => Change::EnableServer { name },
        "disable" => Change::DisableServer { name },
        "delete" => Change::DeleteServer { name },
        other => return Err(format!("unknown action {other:?}")),
    })
}

/// Stages (or, with `now`, applies) one change; returns where to go back to.
async fn stage_or_apply(ctx: &Ctx, viewer: &Viewer, f: &Form, change: Result<Change, String>, back_to: &str) -> Response {
    let result = match change {
        Err(e) => Err(e),
        Ok(change) if f.get("now") == "1" => {
            apply_now(ctx, viewer, vec![change], "applied now from the console".into()).await.map(|r| format!("applied as revision {r}"))
        }
        Ok(change) => stage(ctx, viewer, change).await.map(|()| "staged; Apply All Changes to make it take effect".to_string()),
    };
    back(back_to, result)
}

async fn edit_form(ctx: &Ctx, viewer: &Viewer, body: &Bytes) -> Result<Form, Response> {
    if !viewer.can_edit() {
        return Err(refusal(StatusCode::FORBIDDEN, &format!("{} has role {}, which may not change the configuration", viewer.identity.name, viewer.identity.role)));
    }
    checked_form(viewer, ctx, body)
}

pub async fn servers_post(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    let f = match edit_form(&ctx, &viewer, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let change = server_change(&f);
    stage_or_apply(&ctx, &viewer, &f, change, "/ui/servers").await
}

#[derive(Deserialize, Default)]
pub struct ServerQuery {
    confirm: Option<String>,
    msg: Option<String>,
    err: Option<String>,
}

pub async fn server_page(State(ctx): Cx, viewer: Viewer, Path(name): Path<String>, Query(q): Query<ServerQuery>) -> Response {
    if let Err(r) = barrier(&ctx).await {
        return r;
    }
    let pending = pending_changeset(&ctx, &viewer);
    let (state, _) = staged_view(&ctx, pending.as_ref());
    let revision = ctx.machine.read().state.revision;
    let server = ServerName::new(name.as_str()).ok().and_then(|n| state.servers.get(&n).cloned());
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Server", active: "/ui/servers", revision, live: false, watch_events: false, watch_acks: false };
    let Some(s) = server else {
        return page.render(None, Some(&format!("no server named {name:?}")), html! { a href="/ui/servers" { "Back to servers" } });
    };
    let lists = lists_using(&state, &s.name);
    let content = html! {
        p { span.mono { (s.url()) } " " (status_badge(s.status)) }
        @if q.confirm.as_deref() == Some("delete") && viewer.can_edit() {
            div.confirm id="confirm-delete" {
                p { "Deleting " strong { (s.name) } " removes it from " (lists.len()) " failover list" @if lists.len() != 1 { "s" } ":" }
                ul { @for (t, c) in &lists { li { (t) " / " (c) } } }
                form.inline method="post" action="/ui/servers" {
                    (csrf_field(&viewer))
                    input type="hidden" name="action" value="delete";
                    input type="hidden" name="name" value=(s.name);
                    button.danger type="submit" { "Stage the deletion" }
                }
                a.button href="/ui/servers" { "Cancel" }
            }
        } @else if viewer.can_edit() {
            form.grid method="post" action="/ui/servers" {
                (csrf_field(&viewer))
                input type="hidden" name="action" value="update";
                input type="hidden" name="name" value=(s.name);
                label { "Scheme" select name="scheme" {
                    @for sch in ["http", "https", "tcp", "tls"] { option selected[sch == s.scheme.as_str()] { (sch) } }
                } }
                label { "Host" input name="host" value=(s.host) required; }
                label { "Port" input name="port" type="number" min="1" max="65535" value=(s.port) required; }
                label { "Pool (optional)" input name="pool" value=(s.pool.as_ref().map(|p| p.as_str()).unwrap_or("")); }
                p { "URL: " output.mono id="url-preview" { (s.url()) } }
                button.primary type="submit" { "Stage the edit" }
            }
        }
        h2 { "Failover lists" }
        @if lists.is_empty() { p.empty { "No failover list names this server." } }
        ul { @for (t, c) in &lists { li { a href=(format!("/ui/tasks?task={t}&cluster={c}")) { (t) " / " (c) } } } }
    };
    page.render(q.msg.as_deref(), q.err.as_deref(), content)
}

#[derive(Deserialize, Default)]
pub struct AgentFilter {
    q: Option<String>,
    msg: Option<String>,
    err: Option<String>,
}

pub async fn clusters(State(ctx): Cx, viewer: Viewer, Query(f): Query<AgentFilter>) -> Response {
    if let Err(r) = barrier(&ctx).await {
        return r;
    }
    let pending = pending_changeset(&ctx, &viewer);
    let (state, stale) = staged_view(&ctx, pending.as_ref());
    let filter = f.q.clone().unwrap_or_default();
    let (revision, rows, unreachable) =
        crate::api::agent_rows(&ctx, |id| filter.is_empty() || id.as_str().contains(filter.as_str()), CONSOLE_PAGE_ROWS).await;
    let agent_ids: Vec<String> = state.agents.keys().map(|a| a.to_string()).collect();
    let content = html! {
        @if let Some(s) = &stale { p.error { (s) } }
        @if state.clusters.is_empty() { p.empty { "No agent clusters yet." } }
        @for (name, cluster) in &state.clusters {
            section.card data-cluster=(name) {
                h2 { (name) }
                @if cluster.agents.is_empty() { p.empty { "No members." } }
                @if cluster.agents.len() > MEMBERS_SHOWN { p.note { (cluster.agents.len()) " members; the first " (MEMBERS_SHOWN) " are shown (filter the agents below)." } }
                ul { @for a in cluster.agents.iter().take(MEMBERS_SHOWN) {
                    li { (a) " "
                        @if viewer.can_edit() { (action_button(&viewer, "remove_member", &[("cluster", name.as_str()), ("agent", a.as_str())], "Remove", "")) }
                    }
                } }
                @if viewer.can_edit() {
                    form.inline method="post" {
                        (csrf_field(&viewer))
                        input type="hidden" name="action" value="add_member";
                        input type="hidden" name="cluster" value=(name);
                        input name="agent" placeholder="agent id" list="agent-ids" required;
                        button type="submit" { "Add member" }
                    }
                    (action_button(&viewer, "delete", &[("cluster", name.as_str())], "Delete cluster", "danger"))
                }
            }
        }
        datalist id="agent-ids" { @for a in &agent_ids { option value=(a) {} } }
        @if viewer.can_edit() {
            h2 { "Create an agent cluster" }
            form.inline id="create-cluster" method="post" {
                (csrf_field(&viewer))
                input type="hidden" name="action" value="create";
                input name="cluster" placeholder="cluster name" required;
                button type="submit" { "Stage creation" }
            }
        }
        h2 { "Agents" }
        form.inline method="get" {
            input name="q" value=(filter) placeholder="filter by id";
            button type="submit" { "Filter" }
        }
        @if !unreachable.is_empty() { p.note { "No answer from " (unreachable.join(", ")) "; their agents' contacts are missing." } }
        @if rows.is_empty() { p.empty { "No agents." } } @else {
            table id="agents" {
                thead { tr { th { "Agent" } th { "Clusters" } th { "Deployed" } th { "Desired" } th { "Lag" } th { "Last contact" } th { "Node" } } }
                tbody { @for r in rows.iter().take(CONSOLE_PAGE_ROWS) {
                    tr data-agent=(r["id"].as_str().unwrap_or("")) {
                        td { (r["id"].as_str().unwrap_or("")) }
                        td { (r["clusters"].as_array().map(|a| a.iter().filter_map(|c| c.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        td.deployed { (r["deployed_revision"]) }
                        td { (r["desired_revision"]) }
                        td { (r["lag"]) }
                        td { (r["last_contact_ms"].as_u64().map(crate::cli::format_ms).unwrap_or_else(|| "never".into())) }
                        td { (r["node"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into())) }
                    }
                } }
            }
        }
    };
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Agent clusters", active: "/ui/clusters", revision, live: true, watch_events: false, watch_acks: true };
    page.render(f.msg.as_deref(), f.err.as_deref(), content)
}

pub async fn clusters_post(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    let f = match edit_form(&ctx, &viewer, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let change = (|| {
        let cluster = parse("cluster", ClusterName::new(f.get("cluster")))?;
        let agent = || parse("agent", crate::domain::AgentId::new(f.get("agent")));
        Ok(match f.get("action") {
            "create" => Change::CreateCluster { name: cluster },
            "delete" => Change::DeleteCluster { name: cluster },
            "add_member" => Change::AddAgentToCluster { cluster, agent: agent()? },
            "remove_member" => Change::RemoveAgentFromCluster { cluster, agent: agent()? },
            other => return Err(format!("unknown action {other:?}")),
        })
    })();
    stage_or_apply(&ctx, &viewer, &f, change, "/ui/clusters").await
}

#[derive(Deserialize, Default)]
pub struct TaskQuery {
    task: Option<String>,
    cluster: Option<String>,
    msg: Option<String>,
    err: Option<String>,
}

pub async fn tasks(State(ctx): Cx, viewer: Viewer, Query(q): Query<TaskQuery>) -> Response {
    if let Err(r) = barrier(&ctx).await {
        return r;
    }
    let pending = pending_changeset(&ctx, &viewer);
    let (state, stale) = staged_view(&ctx, pending.as_ref());
    let current = current_beside(&ctx, &state, pending.as_ref());
    let task = q.task.clone().filter(|t| !t.is_empty());
    let cluster = q.cluster.clone().filter(|c| !c.is_empty());
    let selected = match (&task, &cluster) {
        (Some(t), Some(c)) => match (TaskName::new(t.as_str()), ClusterName::new(c.as_str())) {
            (Ok(t), Ok(c)) => Some((t, c)),
            _ => None,
        },
        _ => None,
    };
    let back_to = selected.as_ref().map(|(t, c)| format!("/ui/tasks?task={t}&cluster={c}")).unwrap_or_else(|| "/ui/tasks".into());
    let content = html! {
        @if let Some(s) = &stale { p.error { (s) } }
        div.columns {
            section.list {
                h2 { "Configurations" }
                @let configs: Vec<(String, String)> = state.tasks.iter().flat_map(|(t, task)| task.configs.keys().map(move |c| (t.to_string(), c.to_string()))).collect();
                @if configs.is_empty() { p.empty { "No task configurations yet." } }
                ul { @for (t, c) in configs.iter().take(CONSOLE_PAGE_ROWS) {
                    li { a href=(format!("/ui/tasks?task={t}&cluster={c}")) { (t) " / " (c) } }
                } }
                form.grid id="open-config" method="get" action="/ui/tasks" {
                    label { "Task" input name="task" value=(task.clone().unwrap_or_default()) required; }
                    label { "Agent cluster" select name="cluster" required {
                        @for c in state.clusters.keys() { option selected[cluster.as_deref() == Some(c.as_str())] { (c) } }
                    } }
                    button type="submit" { "Open" }
                }
            }
            section.detail {
                @if let Some((t, c)) = &selected {
                    @let config = state.config(t, c).cloned().unwrap_or_default();
                    @let committed = current.config(t, c).cloned().unwrap_or_default();
                    h2 id="config-title" { (t) " / " (c) @if config != committed { " " span.tag { "staged" } } }
                    @if config.servers.is_empty() { p.empty { "The failover list is empty." } }
                    ol id="failover" {
                        @for (i, s) in config.servers.iter().enumerate() {
                            li data-server=(s) {
                                span.server { (s) }
                                @if let Some(server) = state.servers.get(s) { " " (status_badge(server.status)) }
                                @if viewer.can_edit() {
                                    @let (ts, cs, ss) = (t.as_str(), c.as_str(), s.as_str());
                                    @if i > 0 { (action_button(&viewer, "up", &[("task", ts), ("cluster", cs), ("server", ss)], "Up", "")) }
                                    @if i + 1 < config.servers.len() { (action_button(&viewer, "down", &[("task", ts), ("cluster", cs), ("server", ss)], "Down", "")) }
                                    (action_button(&viewer, "remove", &[("task", ts), ("cluster", cs), ("server", ss)], "Remove", "danger"))
                                }
                            }
                        }
                    }
                    @if viewer.can_edit() {
                        @let addable: Vec<&ServerName> = state.servers.keys().filter(|s| !config.servers.contains(s)).collect();
                        form.inline id="add-server" method="post" {
                            (csrf_field(&viewer))
                            input type="hidden" name="action" value="add";
                            input type="hidden" name="task" value=(t);
                            input type="hidden" name="cluster" value=(c);
                            select name="server" { @for s in &addable { option { (s) } } }
                            button type="submit" disabled[addable.is_empty()] { "Add" }
                        }
                        form.inline id="load-balancing" method="post" {
                            (csrf_field(&viewer))
                            input type="hidden" name="action" value="lb";
                            input type="hidden" name="task" value=(t);
                            input type="hidden" name="cluster" value=(c);
                            label { input type="checkbox" name="enabled" value="1" checked[config.load_balancing]; " Enable load balancing" }
                            button type="submit" { "Save" }
                        }
                    } @else {
                        p { "Load balancing: " @if config.load_balancing { "on" } @else { "off" } }
                    }
                } @else {
                    p.empty { "Pick a task and an agent cluster." }
                }
            }
        }
    };
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Task configurations", active: "/ui/tasks", revision: current.revision, live: true, watch_events: false, watch_acks: false };
    let _ = back_to;
    page.render(q.msg.as_deref(), q.err.as_deref(), content)
}

pub async fn tasks_post(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    let f = match edit_form(&ctx, &viewer, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let back_to = format!("/ui/tasks?task={}&cluster={}", urlencode(f.get("task")), urlencode(f.get("cluster")));
    let change = (|| {
        let task = parse("task", TaskName::new(f.get("task")))?;
        let cluster = parse("cluster", ClusterName::new(f.get("cluster")))?;
        let server = || parse("server", ServerName::new(f.get("server")));
        Ok(match f.get("action") {
            "add" => Change::AddServerToList { task, cluster, server: server()?, position: None },
            "remove" => Change::RemoveServerFromList { task, cluster, server: server()? },
            "up" => Change::MoveServer { task, cluster, server: server()?, direction: MoveDirection::Up },
            "down" => Change::MoveServer { task, cluster, server: server()?, direction: MoveDirection::Down },
            "lb" => Change::SetLoadBalancing { task, cluster, enabled: f.get("enabled") == "1" },
            other => return Err(format!("unknown action {other:?}")),
        })
    })();
    stage_or_apply(&ctx, &viewer, &f, change, &back_to).await
}

/// Differences between two configurations as a table (at most a few pages of rows).
fn diff_table(diff: &[crate::domain::diff::DiffEntry]) -> Markup {
    html! {
        table id="diff" {
            thead { tr { th { "Change" } th { "Entity" } th { "Key" } th { "Before" } th { "After" } } }
            tbody { @for d in diff.iter().take(CONSOLE_PAGE_ROWS * 5) {
                tr { td { (d.kind) } td { (d.entity) } td { (d.key) }
                     td.mono { (d.before.as_ref().map(|v| v.to_string()).unwrap_or_default()) }
                     td.mono { (d.after.as_ref().map(|v| v.to_string()).unwrap_or_default()) } }
            } }
        }
        @if diff.len() > CONSOLE_PAGE_ROWS * 5 { p.note { "The first " (CONSOLE_PAGE_ROWS * 5) " of " (diff.len()) " differences are shown." } }
    }
}

fn change_summary(c: &Change) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

pub async fn changes(State(ctx): Cx, viewer: Viewer, Query(m): Query<Msg>) -> Response {
    if let Err(r) = barrier(&ctx).await {
        return r;
    }
    let pending = pending_changeset(&ctx, &viewer);
    let current = ctx.machine.read().state.clone();
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Pending changes", active: "", revision: current.revision, live: false, watch_events: false, watch_acks: false };
    let Some(cs) = pending.filter(|cs| !cs.changes.is_empty()) else {
        return page.render(m.msg.as_deref(), m.err.as_deref(), html! { p.empty { "No pending changes." } });
    };
    let preview = decide(&current, &cs.changes, commands::now_ms());
    let content = match preview {
        Err(r) => html! {
            p.error id="preview-error" { "These changes cannot be applied to the current configuration: " (r.message) }
            ol { @for c in &cs.changes { li.mono { (change_summary(c)) } } }
            (action_button(&viewer, "discard", &[], "Discard", "danger"))
        },
        Ok(events) => {
            let mut after = current.clone();
            after.apply_record_events(current.revision + 1, &events);
            let diff = crate::domain::diff::diff(&current, &after);
            let mut reached = BTreeSet::new();
            crate::projection::candidates(&current, &events, &mut reached);
            crate::projection::candidates(&after, &events, &mut reached);
            let reached: Vec<_> = reached
                .into_iter()
                .filter(|a| crate::projection::project(&current, a) != crate::projection::project(&after, a))
                .collect();
            html! {
                p id="reach" { "Applying reaches " strong { (reached.len()) } " agent" @if reached.len() != 1 { "s" } "." }
                (diff_table(&diff))
                details { summary { (cs.changes.len()) " staged change(s)" } ol { @for c in &cs.changes { li.mono { (change_summary(c)) } } } }
                form.grid id="apply" method="post" {
                    (csrf_field(&viewer))
                    input type="hidden" name="action" value="apply";
                    input type="hidden" name="revision" value=(current.revision);
                    label { "Comment" input name="comment" id="comment" placeholder="why"; }
                    button.primary id="apply-all" type="submit" { "Apply All Changes" }
                }
                (action_button(&viewer, "discard", &[], "Discard", "danger"))
            }
        }
    };
    page.render(m.msg.as_deref(), m.err.as_deref(), content)
}

pub async fn changes_post(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    let f = match edit_form(&ctx, &viewer, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(cs) = pending_changeset(&ctx, &viewer) else {
        return back("/ui/changes", Err("there are no pending changes".into()));
    };
    match f.get("action") {
        "apply" => {
            let Ok(expected) = f.get("revision").parse::<u64>() else {
                return back("/ui/changes", Err("the form names no revision; reload the preview".into()));
            };
            let result = apply_all(&ctx, &viewer, cs.id, f.get("comment").to_string(), expected).await;
            match result {
                Ok(r) => back("/ui/history", Ok(format!("applied as revision {r}"))),
                Err(e) => back("/ui/changes", Err(e)),
            }
        }
        "discard" => back("/ui/servers", discard(&ctx, &viewer, cs.id).await.map(|()| "pending changes discarded".into())),
        other => back("/ui/changes", Err(format!("unknown action {other:?}"))),
    }
}

#[derive(Deserialize, Default)]
pub struct HistoryQuery {
    before: Option<u64>,
    actor: Option<String>,
    entity: Option<String>,
    /// UTC times (`YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`) bounding the revisions shown.
    since: Option<String>,
    until: Option<String>,
    msg: Option<String>,
    err: Option<String>,
}

/// An audit page's preconditions: an audit role, then the read barrier.
async fn audit_read(ctx: &Ctx, viewer: &Viewer) -> Result<(), Response> {
    audit_only(viewer)?;
    barrier(ctx).await
}

fn audit_only(viewer: &Viewer) -> Result<(), Response> {
    if viewer.can_audit() {
        Ok(())
    } else {
        Err(refusal(StatusCode::FORBIDDEN, &format!("{} has role {}, which may not read the history", viewer.identity.name, viewer.identity.role)))
    }
}

pub async fn history(State(ctx): Cx, viewer: Viewer, Query(q): Query<HistoryQuery>) -> Response {
    if let Err(r) = audit_read(&ctx, &viewer).await {
        return r;
    }
    let head = ctx.machine.read().state.revision;
    let before = q.before.unwrap_or(head + 1).min(head + 1);
    let from = before.saturating_sub(CONSOLE_PAGE_ROWS as u64).max(1);
    let actor = q.actor.clone().unwrap_or_default();
    let entity = q.entity.clone().unwrap_or_default();
    let since = q.since.clone().unwrap_or_default();
    let until = q.until.clone().unwrap_or_default();
    let bound = |text: &str, what: &str| -> Result<Option<u64>, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        crate::cli::parse_utc_ms(text).map(Some).ok_or_else(|| format!("{what} {text:?} is not a UTC time like 2026-11-25 or 2026-11-25T19:30"))
    };
    let (since_ms, until_ms) = match (bound(&since, "since"), bound(&until, "until")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            let page = Page { ctx: &ctx, viewer: &viewer, title: "History", active: "/ui/history", revision: head, live: false, watch_events: false, watch_acks: false };
            return page.render(None, Some(&e), html! { a href="/ui/history" { "Back to the history" } });
        }
    };
    let mut rows = Vec::new();
    let read = ctx.reader.records(from, |r| {
        if r.body.revision >= before {
            return Ok(false);
        }
        let entities: Vec<String> = r.body.events.iter().flat_map(|e| e.entities()).map(|(k, n)| format!("{k}:{n}")).collect::<BTreeSet<_>>().into_iter().collect();
        let in_time = since_ms.is_none_or(|t| r.body.time_ms >= t) && until_ms.is_none_or(|t| r.body.time_ms <= t);
        let keep = in_time && (actor.is_empty() || r.body.actor == actor) && (entity.is_empty() || entities.iter().any(|e| e == &entity));
        if keep {
            rows.push((r.body.revision, r.body.time_ms, r.body.actor.clone(), r.body.comment.clone(), r.body.changeset.clone(), entities));
        }
        Ok(true)
    });
    let page = Page { ctx: &ctx, viewer: &viewer, title: "History", active: "/ui/history", revision: head, live: true, watch_events: false, watch_acks: false };
    if let Err(e) = read {
        return page.render(None, Some(&format!("reading the history: {e}")), html! {});
    }
    rows.reverse();
    let content = html! {
        form.inline method="get" {
            input name="actor" value=(actor) placeholder="actor";
            input name="entity" value=(entity) placeholder="kind:name, e.g. server:rt1";
            input name="since" value=(since) placeholder="since (UTC) 2026-11-25";
            input name="until" value=(until) placeholder="until (UTC) 2026-11-25T19:30";
            button type="submit" { "Filter" }
        }
        form.inline method="get" action="/ui/diff" {
            input name="from" type="number" min="0" placeholder="from revision" required;
            input name="to" type="number" min="0" placeholder="to revision" required;
            button type="submit" { "Compare" }
        }
        @if rows.is_empty() { p.empty { "No revisions match." } } @else {
            table id="history" {
                thead { tr { th { "Revision" } th { "Time" } th { "Actor" } th { "Comment" } th { "Changeset" } th { "Changed" } } }
                tbody { @for (rev, time, who, comment, cs, entities) in &rows {
                    tr { td { a href=(format!("/ui/history/{rev}")) { (rev) } } td { (crate::cli::format_ms(*time)) } td { (who) } td.comment { (comment) }
                         td { (cs.clone().unwrap_or_default()) }
                         td { @for e in entities.iter().take(TAGS_SHOWN) { span.tag { (e) } " " } @if entities.len() > TAGS_SHOWN { "and " (entities.len() - TAGS_SHOWN) " more" } } }
                } }
            }
        }
        @if from > 1 {
            a.button href=(format!("/ui/history?before={from}&actor={}&entity={}&since={}&until={}", urlencode(&actor), urlencode(&entity), urlencode(&since), urlencode(&until))) { "Older" }
        }
    };
    page.render(q.msg.as_deref(), q.err.as_deref(), content)
}

pub async fn revision_page(State(ctx): Cx, viewer: Viewer, Path(revision): Path<u64>) -> Response {
    if let Err(r) = audit_read(&ctx, &viewer).await {
        return r;
    }
    let head = ctx.machine.read().state.revision;
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Revision", active: "/ui/history", revision: head, live: false, watch_events: false, watch_acks: false };
    let record = match ctx.reader.record(revision) {
        Ok(Some(r)) => r,
        Ok(None) => return page.render(None, Some(&format!("there is no revision {revision}")), html! {}),
        Err(e) => return page.render(None, Some(&format!("reading revision {revision}: {e}")), html! {}),
    };
    let content = html! {
        dl {
            dt { "Revision" } dd { (record.body.revision) }
            dt { "Time" } dd { (crate::cli::format_ms(record.body.time_ms)) }
            dt { "Actor" } dd { (record.body.actor) }
            dt { "Comment" } dd.comment { (record.body.comment) }
            dt { "Changeset" } dd { (record.body.changeset.clone().unwrap_or_default()) }
            dt { "Hash" } dd.mono { (hex::encode(record.hash.0)) }
        }
        h2 { "Events" }
        ol { @for e in &record.body.events { li.mono { (serde_json::to_string(e).unwrap_or_default()) } } }
        p {
            a.button href=(format!("/ui/diff?from={}&to={revision}", revision.saturating_sub(1))) { "Diff with the previous revision" } " "
            a.button href=(format!("/ui/state?revision={revision}")) { "State at this revision" }
        }
    };
    page.render(None, None, content)
}

#[derive(Deserialize, Default)]
pub struct EventQuery {
    level: Option<String>,
}

pub async fn events(State(ctx): Cx, viewer: Viewer, Query(q): Query<EventQuery>) -> Response {
    if let Err(r) = audit_read(&ctx, &viewer).await {
        return r;
    }
    let min = match q.level.as_deref() {
        Some("warning") => Level::Warning,
        Some("error") => Level::Error,
        _ => Level::Info,
    };
    let head = ctx.machine.read().state.revision;
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Events", active: "/ui/events", revision: head, live: true, watch_events: true, watch_acks: false };
    let list = match ctx.reader.events(CONSOLE_PAGE_ROWS, |e| e.level >= min) {
        Ok(l) => l,
        Err(e) => return page.render(None, Some(&format!("reading events: {e}")), html! {}),
    };
    let content = html! {
        form.inline method="get" {
            select name="level" {
                @for l in ["info", "warning", "error"] { option selected[q.level.as_deref() == Some(l)] { (l) } }
            }
            button type="submit" { "Filter" }
        }
        @if list.is_empty() { p.empty { "No events." } } @else {
            table id="events" {
                thead { tr { th { "Time" } th { "Level" } th { "Kind" } th { "Message" } th { "Actor" } } }
                tbody { @for e in &list {
                    tr class=(format!("level-{:?}", e.level).to_lowercase()) {
                        td { (crate::cli::format_ms(e.time_ms)) } td { (format!("{:?}", e.level).to_lowercase()) } td { (e.kind) } td { (e.message) } td { (e.actor) }
                    }
                } }
            }
        }
    };
    page.render(None, None, content)
}

pub async fn cluster(State(ctx): Cx, viewer: Viewer, Query(m): Query<Msg>) -> Response {
    let status = crate::api::cluster_status(&ctx);
    let revision = status["revision"].as_u64().unwrap_or(0);
    let lag: BTreeMap<String, serde_json::Value> =
        status["follower_lag"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let content = html! {
        dl id="cluster" {
            dt { "This node" } dd { (status["node_id"]) " (" (status["state"].as_str().unwrap_or("")) ")" }
            dt { "Leader" } dd { (status["leader"]) }
            dt { "Term" } dd { (status["term"]) }
            dt { "Last log index" } dd { (status["last_log_index"]) }
            dt { "Applied index" } dd { (status["applied_index"]) }
            dt { "Snapshot index" } dd { (status["snapshot_index"]) }
        }
        table id="members" {
            thead { tr { th { "Node" } th { "Address" } th { "Role" } th { "Lag (entries)" } } }
            tbody { @for m in status["members"].as_array().into_iter().flatten() {
                @let id = m["id"].to_string();
                tr {
                    td { (id) } td.mono { (m["addr"].as_str().unwrap_or("")) }
                    td { @if status["leader"] == m["id"] { "leader" } @else if m["voter"].as_bool() == Some(true) { "follower" } @else { "learner" } }
                    td { (lag.get(&id).map(|v| v.to_string()).unwrap_or_else(|| "-".into())) }
                }
            } }
        }
        @if viewer.is_admin() {
            h2 { "Add a node" }
            p.note { "The node joins as a learner, catches up, then votes. Start it first with the same cluster secret." }
            form.inline id="add-node" method="post" {
                (csrf_field(&viewer))
                input type="hidden" name="action" value="add";
                input name="id" type="number" min="1" placeholder="node id" required;
                input name="addr" placeholder="host:port" required;
                button type="submit" { "Add node" }
            }
            h2 { "Remove a node" }
            form.inline id="remove-node" method="post" {
                (csrf_field(&viewer))
                input type="hidden" name="action" value="remove";
                input name="id" type="number" min="1" placeholder="node id" required;
                button.danger type="submit" { "Remove node" }
            }
        }
    };
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Cluster", active: "/ui/cluster", revision, live: true, watch_events: false, watch_acks: false };
    page.render(m.msg.as_deref(), m.err.as_deref(), content)
}

#[derive(Deserialize, Default)]
pub struct DiffQuery {
    from: Option<u64>,
    to: Option<u64>,
}

/// What changed between two revisions (audit roles).
pub async fn diff_page(State(ctx): Cx, viewer: Viewer, Query(q): Query<DiffQuery>) -> Response {
    if let Err(r) = audit_read(&ctx, &viewer).await {
        return r;
    }
    let head = ctx.machine.read().state.revision;
    let to = q.to.unwrap_or(head);
    let from = q.from.unwrap_or(to.saturating_sub(1));
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Diff", active: "/ui/history", revision: head, live: false, watch_events: false, watch_acks: false };
    let states = match (crate::api::state_at(&ctx, Some(from)).await, crate::api::state_at(&ctx, Some(to)).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return page.render(None, Some(&e.message), html! { a href="/ui/history" { "Back to the history" } }),
    };
    let diff = crate::domain::diff::diff(&states.0, &states.1);
    let content = html! {
        form.inline method="get" {
            label { "From" input name="from" type="number" min="0" value=(from); }
            label { "To" input name="to" type="number" min="0" value=(to); }
            button type="submit" { "Compare" }
        }
        @if diff.is_empty() { p.empty { "No differences between revision " (from) " and revision " (to) "." } } @else {
            (diff_table(&diff))
        }
    };
    page.render(None, None, content)
}

#[derive(Deserialize, Default)]
pub struct StateQuery {
    revision: Option<u64>,
}

/// The whole configuration at a revision (audit roles).
pub async fn state_page(State(ctx): Cx, viewer: Viewer, Query(q): Query<StateQuery>) -> Response {
    if let Err(r) = audit_read(&ctx, &viewer).await {
        return r;
    }
    let head = ctx.machine.read().state.revision;
    let page = Page { ctx: &ctx, viewer: &viewer, title: "State", active: "/ui/history", revision: head, live: false, watch_events: false, watch_acks: false };
    let state = match crate::api::state_at(&ctx, q.revision).await {
        Ok(s) => s,
        Err(e) => return page.render(None, Some(&e.message), html! {}),
    };
    let content = html! {
        p { "The configuration at revision " strong { (state.revision) } ", digest " span.mono { (crate::domain::state_digest(&state)) } "." }
        h2 { "Servers (" (state.servers.len()) ")" }
        table { tbody { @for s in state.servers.values().take(CONSOLE_PAGE_ROWS) { tr { td { (s.name) } td.mono { (s.url()) } td { (status_badge(s.status)) } } } } }
        h2 { "Agent clusters (" (state.clusters.len()) ")" }
        table { tbody { @for (n, c) in state.clusters.iter().take(CONSOLE_PAGE_ROWS) { tr { td { (n) } td { (c.agents.len()) " agents" } } } } }
        h2 { "Task configurations" }
        table { tbody { @for (t, task) in state.tasks.iter().take(CONSOLE_PAGE_ROWS) { @for (c, cfg) in &task.configs {
            tr { td { (t) " / " (c) } td { (cfg.servers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" → ")) } td { @if cfg.load_balancing { "load balancing" } } }
        } } } }
    };
    page.render(None, None, content)
}

fn admin_only(viewer: &Viewer) -> Result<(), Response> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(refusal(StatusCode::FORBIDDEN, &format!("{} has role {}; tokens and nodes are for admins", viewer.identity.name, viewer.identity.role)))
    }
}

fn tokens_content(ctx: &Ctx, viewer: &Viewer, created: Option<(&str, &str)>) -> Markup {
    let live = ctx.machine.read();
    let file = ctx.auth.file_tokens();
    html! {
        @if let Some((name, secret)) = created {
            div.flash id="new-token" {
                p { "Token " strong { (name) } " created. Its secret is shown only now; the cluster keeps only its hash:" }
                p.mono id="new-secret" { (secret) }
            }
        }
        table id="tokens" {
            thead { tr { th { "Name" } th { "Role" } th { "Agent" } th { "Created by" } th { "Source" } th {} } }
            tbody {
                @for t in &file { tr { td { (t.name) } td { (t.role) } td { (t.agent.as_ref().map(|a| a.as_str()).unwrap_or("")) } td { (t.created_by) } td { "token file" } td {} } }
                @for t in live.tokens.values() { tr data-token=(t.name) {
                    td { (t.name) } td { (t.role) } td { (t.agent.as_ref().map(|a| a.as_str()).unwrap_or("")) } td { (t.created_by) } td { "API" }
                    td { (action_button(viewer, "revoke", &[("name", t.name.as_str())], "Revoke", "danger")) }
                } }
            }
        }
        h2 { "Create a token" }
        form.grid id="create-token" method="post" {
            (csrf_field(viewer))
            input type="hidden" name="action" value="create";
            label { "Name" input name="name" required; }
            label { "Role" select name="role" { @for r in Role::ALL { option { (r) } } } }
            label { "Agent (agent role only)" input name="agent"; }
            button.primary type="submit" { "Create" }
        }
    }
}

/// API tokens (admins): list, create (the secret shown once), revoke. Tokens are not
/// configuration: these changes apply at once and are never staged.
pub async fn tokens(State(ctx): Cx, viewer: Viewer, Query(m): Query<Msg>) -> Response {
    if let Err(r) = admin_only(&viewer) {
        return r;
    }
    if let Err(r) = barrier(&ctx).await {
        return r;
    }
    let revision = ctx.machine.read().state.revision;
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Tokens", active: "/ui/tokens", revision, live: false, watch_events: false, watch_acks: false };
    page.render(m.msg.as_deref(), m.err.as_deref(), tokens_content(&ctx, &viewer, None))
}

pub async fn tokens_post(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    if let Err(r) = admin_only(&viewer) {
        return r;
    }
    let f = match checked_form(&viewer, &ctx, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let meta = |comment: &str| WriteMeta {
        actor: viewer.identity.name.clone(),
        comment: comment.into(),
        expected_revision: None,
        idempotency_key: Some(format!("ui-{:032x}", rand::random::<u128>())),
    };
    match f.get("action") {
        "revoke" => {
            let result = match crate::domain::tokens::TokenName::new(f.get("name")) {
                Err(e) => Err(e.to_string()),
                Ok(name) => commands::submit(&ctx.node, meta(""), CommandBody::RevokeToken { name: name.clone() })
                    .await
                    .map(|_| format!("token {name} revoked"))
                    .map_err(submit_message),
            };
            back("/ui/tokens", result)
        }
        "create" => {
            let revision = ctx.machine.read().state.revision;
            let page = Page { ctx: &ctx, viewer: &viewer, title: "Tokens", active: "/ui/tokens", revision, live: false, watch_events: false, watch_acks: false };
            let made = (|| {
                let name = parse("name", crate::domain::tokens::TokenName::new(f.get("name")))?;
                let role = Role::parse(f.get("role")).ok_or_else(|| format!("unknown role {:?}", f.get("role")))?;
                let agent = (!f.get("agent").is_empty()).then(|| crate::domain::AgentId::new(f.get("agent"))).transpose().map_err(|e| format!("agent: {e}"))?;
                if ctx.auth.file_token_named(&name) {
                    return Err(format!("token {name} exists in this node's token file"));
                }
                let secret = crate::auth::new_secret();
                let hash = crate::domain::tokens::hash_secret(&secret);
                let token = crate::domain::tokens::TokenRecord { name, role, agent, hash, created_by: viewer.identity.name.clone(), created_ms: commands::now_ms() };
                token.check()?;
                Ok((token, secret))
            })();
            let (token, secret) = match made {
                Ok(m) => m,
                Err(e) => return page.render(None, Some(&e), tokens_content(&ctx, &viewer, None)),
            };
            let name = token.name.to_string();
            match commands::submit(&ctx.node, meta(""), CommandBody::CreateToken { token }).await {
                Ok(_) => page.render(None, None, tokens_content(&ctx, &viewer, Some((&name, &secret)))),
                Err(e) => page.render(None, Some(&submit_message(e)), tokens_content(&ctx, &viewer, None)),
            }
        }
        other => back("/ui/tokens", Err(format!("unknown action {other:?}"))),
    }
}

/// Adds or removes a management node (admins); applied at once.
pub async fn cluster_post(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    if let Err(r) = admin_only(&viewer) {
        return r;
    }
    let f = match checked_form(&viewer, &ctx, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let actor = viewer.identity.name.clone();
    let id = f.get("id").parse::<u64>().map_err(|_| format!("node id {:?} is not a number", f.get("id")));
    let result = match (f.get("action"), id) {
        (_, Err(e)) => Err(e),
        ("add", Ok(id)) => crate::api::add_node_as(&ctx, id, f.get("addr").to_string(), actor).await.map(|()| format!("node {id} added")).map_err(|e| e.message),
        ("remove", Ok(id)) => crate::api::remove_node_as(&ctx, id, actor).await.map(|()| format!("node {id} removed")).map_err(|e| e.message),
        (other, _) => Err(format!("unknown action {other:?}")),
    };
    back("/ui/cluster", result)
}
