//! The configuration pages: servers, agent clusters and agents, task configurations.

use super::*;

/// Members listed per agent cluster card.
const MEMBERS_SHOWN: usize = 50;

pub async fn servers(State(ctx): Cx, viewer: Viewer, Query(m): Query<Msg>) -> Response {
    let Staged { pending, state, stale } = match staged_read(&ctx, &viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
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
                label { "Host" input name="host"; }
                label { "Port" input name="port" type="number" min="1" max="65535" value="6700" required; }
                label { "Pool (optional)" input name="pool"; }
                label.wide { "URL (edit here or in the fields)" input.mono id="url-field" name="url" placeholder="http://host:6700/?pool=name"; }
                input type="hidden" name="url_original" value="";
                button.primary type="submit" { "Stage registration" }
            }
        }
    };
    let page = Page { ctx: &ctx, viewer: &viewer, title: "Servers", active: "/ui/servers", revision: current.revision, live: true, watch_events: false, watch_acks: false };
    page.render(m.msg.as_deref(), m.err.as_deref(), content)
}

/// The address a register or edit form gives: from its URL field when that was edited (the
/// script keeps the two in step, and without it the edited one wins), else from the fields.
fn form_address(f: &Form) -> Result<(Scheme, Host, u16, Option<PoolName>), String> {
    let url = f.get("url").trim();
    if !url.is_empty() && url != f.get("url_original").trim() {
        return crate::domain::parse_server_url(url).map_err(|e| e.to_string());
    }
    let port = |v: &str| v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {v:?} is not 1..65535"));
    let scheme = match f.get("scheme") {
        "" => Scheme::http(),
        s => Scheme::new(s).map_err(|e| format!("scheme: {e}"))?,
    };
    let pool = match f.get("pool").trim() {
        "" => None,
        p => Some(PoolName::new(p).map_err(|e| format!("pool: {e}"))?),
    };
    Ok((scheme, parse("host", Host::new(f.get("host")))?, port(f.get("port"))?, pool))
}

fn server_change(f: &Form) -> Result<Change, String> {
    let name = parse("name", ServerName::new(f.get("name")))?;
    Ok(match f.get("action") {
        "register" => {
            let (scheme, host, port, pool) = form_address(f)?;
            Change::AddServer { name, host, port, pool, scheme: Some(scheme) }
        }
        "update" => {
            let (scheme, host, port, pool) = form_address(f)?;
            let clear_pool = pool.is_none();
            Change::UpdateServer { name, host: Some(host), port: Some(port), pool, clear_pool, scheme: Some(scheme) }
        }
        "enable" => Change::EnableServer { name },
        "disable" => Change::DisableServer { name },
        "delete" => Change::DeleteServer { name },
        other => return Err(format!("unknown action {other:?}")),
    })
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
    let Staged { state, .. } = match staged_read(&ctx, &viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
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
                label.wide { "URL (edit here or in the fields)" input.mono id="url-field" name="url" value=(s.url()); }
                input type="hidden" name="url_original" value=(s.url());
                button.primary type="submit" { "Stage the edit" }
            }
        }
        h2 { "Failover lists" }
        @if lists.is_empty() { p.empty { "No failover list names this server." } }
        ul { @for (t, c) in &lists { li { a href=(format!("/ui/tasks?task={}&cluster={}", urlencode(t.as_str()), urlencode(c.as_str()))) { (t) " / " (c) } } } }
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
    let Staged { pending, state, stale } = match staged_read(&ctx, &viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let current = current_beside(&ctx, &state, pending.as_ref());
    let filter = f.q.clone().unwrap_or_default();
    let (revision, rows, unreachable) =
        crate::api::agent_rows(&ctx, |id| filter.is_empty() || id.as_str().contains(filter.as_str()), CONSOLE_PAGE_ROWS).await;
    let agent_ids: Vec<String> = state.agents.keys().map(|a| a.to_string()).collect();
    let content = html! {
        @if let Some(s) = &stale { p.error { (s) } }
        @if state.clusters.is_empty() { p.empty { "No agent clusters yet." } }
        @for (name, cluster) in &state.clusters {
            section.card data-cluster=(name) {
                h2 { (name) @if current.clusters.get(name) != Some(cluster) { " " span.tag { "staged" } } }
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
                thead { tr { th { "Agent" } th { "State" } th { "Clusters" } th { "Deployed" } th { "Desired" } th { "Lag" } th { "Last contact" } th { "Node" } th { "Reported failing" } } }
                tbody { @for r in rows.iter().take(CONSOLE_PAGE_ROWS) {
                    tr data-agent=(r["id"].as_str().unwrap_or("")) {
                        td { (r["id"].as_str().unwrap_or("")) }
                        td.agent-state { @if r["connected"] == true { "connected" } @else if r["stale"] == true { span.tag { "stale" } } @else { "idle" } }
                        td { (r["clusters"].as_array().map(|a| a.iter().filter_map(|c| c.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        td.deployed { (r["deployed_revision"]) }
                        td { (r["desired_revision"]) }
                        td { (r["lag"]) }
                        td { (r["last_contact_ms"].as_u64().map(crate::cli::format_ms).unwrap_or_else(|| "never".into())) }
                        td { (r["node"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into())) }
                        td.reported { (r["reported"].as_array().map(|a| a.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
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
    let Staged { pending, state, stale } = match staged_read(&ctx, &viewer).await {
        Ok(s) => s,
        Err(r) => return r,
    };
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
    let content = html! {
        @if let Some(s) = &stale { p.error { (s) } }
        div.columns {
            section.list {
                h2 { "Configurations" }
                @let configs: Vec<(String, String)> = state.tasks.iter().flat_map(|(t, task)| task.configs.keys().map(move |c| (t.to_string(), c.to_string()))).collect();
                @if configs.is_empty() { p.empty { "No task configurations yet." } }
                ul { @for (t, c) in configs.iter().take(CONSOLE_PAGE_ROWS) {
                    li { a href=(format!("/ui/tasks?task={}&cluster={}", urlencode(t), urlencode(c))) { (t) " / " (c) } }
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
                                @let w = config.weighting(s);
                                @if !w.is_default() { " " span.weighting { "tier " (w.priority) " · weight " (w.weight) } }
                                @if viewer.can_edit() {
                                    @let (ts, cs, ss) = (t.as_str(), c.as_str(), s.as_str());
                                    @if i > 0 { (action_button(&viewer, "up", &[("task", ts), ("cluster", cs), ("server", ss)], "Up", "")) }
                                    @if i + 1 < config.servers.len() { (action_button(&viewer, "down", &[("task", ts), ("cluster", cs), ("server", ss)], "Down", "")) }
                                    (action_button(&viewer, "remove", &[("task", ts), ("cluster", cs), ("server", ss)], "Remove", "danger"))
                                    form.inline.weighting-form method="post" {
                                        (csrf_field(&viewer))
                                        input type="hidden" name="action" value="weight";
                                        input type="hidden" name="task" value=(ts);
                                        input type="hidden" name="cluster" value=(cs);
                                        input type="hidden" name="server" value=(ss);
                                        label { "Tier " input.narrow type="number" name="priority" min="1" max="100" value=(w.priority); }
                                        label { "Weight " input.narrow type="number" name="weight" min="1" max="1000" value=(w.weight); }
                                        button type="submit" { "Set" }
                                    }
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
            "weight" => {
                let number = |field: &str| -> Result<u16, String> {
                    f.get(field).trim().parse().map_err(|_| format!("{field}: {:?} is not a whole number", f.get(field)))
                };
                Change::SetServerWeight { task, cluster, server: server()?, priority: Some(number("priority")?), weight: Some(number("weight")?) }
            }
            other => return Err(format!("unknown action {other:?}")),
        })
    })();
    stage_or_apply(&ctx, &viewer, &f, change, &back_to).await
}
