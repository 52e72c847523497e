//! The auditors' pages: history, a revision, diffs, past states, the event log.

use super::*;

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
    let (tree_size, root) = {
        let live = ctx.machine.read();
        (live.tree.size(), live.tree.root())
    };
    let checkpoint = ctx.history_key.as_ref().map(|k| k.sign_checkpoint(tree_size, &root));
    let content = html! {
        details id="tree-head" {
            summary { "Signed tree head: " (tree_size) " revisions, root " span.mono { (&root.to_string()[..16]) "…" } }
            p { "Every revision is a leaf of a Merkle tree; auditors check this checkpoint, inclusion and consistency proofs with "
                code { "roster audit" } " or the independent " code { "docs/verify_history.py" } " and the cluster's "
                code { "history-key.vkey" } " (see docs/history-format.md)." }
            @match &checkpoint {
                Some(note) => pre.mono { (note) },
                None => p.empty { "This node has no history key, so the tree head is not signed (root " span.mono { (root.to_string()) } ")." },
            }
        }
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
