//! The admins' pages: cluster members and nodes, API tokens.

use super::*;

pub async fn cluster(State(ctx): Cx, viewer: Viewer, Query(m): Query<Msg>) -> Response {
    let status = crate::api::cluster_status_asked(&ctx).await;
    let revision = status.revision;
    let or_none = |i: Option<u64>, none: &str| i.map_or_else(|| none.to_string(), |i| i.to_string());
    let content = html! {
        dl id="cluster" {
            dt { "This node" } dd { (status.node_id) " (" (status.state) ")" }
            dt { "Leader" } dd { (or_none(status.leader, "none known")) }
            dt { "Term" } dd { (status.term) }
            dt { "Last log index" } dd { (or_none(status.last_log_index, "none")) }
            dt { "Applied index" } dd { (or_none(status.applied_index, "none")) }
            dt { "Snapshot index" } dd { (or_none(status.snapshot_index, "none yet")) }
        }
        table id="members" {
            thead { tr { th { "Node" } th { "Address" } th { "Role" } th { "Version" } th { "Lag (entries)" } } }
            tbody { @for m in &status.members {
                tr {
                    td { (m.id) } td.mono { (m.addr) }
                    td { @if status.leader == Some(m.id) { "leader" } @else if m.voter { "follower" } @else { "learner" } }
                    // A member that did not answer this node in time: stopped, or cut off.
                    td { @match &m.version { Some(v) => (v), None => span.badge.failed { "unreachable" } } }
                    td { (status.follower_lag.get(&m.id.to_string()).map(|v| v.to_string()).unwrap_or_else(|| "-".into())) }
                }
            } }
        }
        @if viewer.is_admin() {
            h2 { "Add a node" }
            p.note { "The node joins as a learner, catches up, then votes; as a learner only, it serves agents and reads but never votes (also for a node started with --learner). Start it first with the same cluster secret." }
            form.inline id="add-node" method="post" {
                (csrf_field(&viewer))
                input type="hidden" name="action" value="add";
                input name="id" type="number" min="1" placeholder="node id" required;
                input name="addr" placeholder="host:port" required;
                label { input type="checkbox" name="learner"; " learner only" }
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
    let f = match admin_form(&ctx, &viewer, &body) {
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
    let f = match admin_form(&ctx, &viewer, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let actor = viewer.identity.name.clone();
    let id = f.get("id").parse::<u64>().map_err(|_| format!("node id {:?} is not a number", f.get("id")));
    let result = match (f.get("action"), id) {
        (_, Err(e)) => Err(e),
        ("add", Ok(id)) => {
            let learner = f.get("learner") == "on";
            let added = crate::api::add_node_as(&ctx, id, f.get("addr").to_string(), learner, actor).await;
            added.map(|l| format!("node {id} added{}", if l { " as a learner" } else { "" })).map_err(|e| e.message)
        }
        ("remove", Ok(id)) => crate::api::remove_node_as(&ctx, id, actor).await.map(|()| format!("node {id} removed")).map_err(|e| e.message),
        (other, _) => Err(format!("unknown action {other:?}")),
    };
    back("/ui/cluster", result)
}
