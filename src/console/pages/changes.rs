//! The pending changes: preview, Apply All Changes, Discard.

use super::*;

/// Most agent ids the preview lists.
const REACH_SHOWN: usize = 200;

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
    let preview = crate::domain::simulate(&current, &cs.changes, commands::now_ms());
    let content = match preview {
        Err(r) => html! {
            p.error id="preview-error" { "These changes cannot be applied to the current configuration: " (r.message) }
            ol { @for c in &cs.changes { li.mono { (change_summary(c)) } } }
            (action_button(&viewer, "discard", &[], "Discard", "danger"))
        },
        Ok((after, events)) => {
            let diff = crate::domain::diff::diff(&current, &after);
            let reach = crate::projection::reach(&current, &after, &events);
            let reached = &reach.agents;
            html! {
                p id="reach" { "Applying reaches " strong { (reached.len()) } " agent" @if reached.len() != 1 { "s" } "." }
                @if !reached.is_empty() {
                    details id="reach-agents" {
                        summary { "Agents that get a new configuration" @if reached.len() > REACH_SHOWN { " (first " (REACH_SHOWN) ")" } }
                        p.mono { @for (i, a) in reached.iter().take(REACH_SHOWN).enumerate() { @if i > 0 { ", " } (a) } }
                    }
                }
                @if !reach.lost.is_empty() {
                    div.error id="lost" {
                        p { "After this change these task configurations have no usable server: their agents could not reach any server for the task." }
                        ul { @for l in &reach.lost { li.mono { (l.task) " in " (l.cluster) } } }
                    }
                }
                (diff_table(&diff))
                details { summary { (cs.changes.len()) " staged change(s)" } ol { @for c in &cs.changes { li.mono { (change_summary(c)) } } } }
                form.grid id="apply" method="post" {
                    (csrf_field(&viewer))
                    input type="hidden" name="action" value="apply";
                    input type="hidden" name="revision" value=(current.revision);
                    label { "Comment" input name="comment" id="comment" placeholder="why"; }
                    @if !reach.lost.is_empty() {
                        label id="confirm-lost" { input type="checkbox" name="confirm" value="lost"; " Apply anyway: I know these tasks will have no usable server" }
                    }
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
            if f.get("confirm") != "lost" {
                let current = ctx.machine.read().state.clone();
                if let Ok((after, events)) = crate::domain::simulate(&current, &cs.changes, commands::now_ms()) {
                    if !crate::projection::reach(&current, &after, &events).lost.is_empty() {
                        return back("/ui/changes", Err("some tasks would have no usable server: tick \"Apply anyway\" to confirm".into()));
                    }
                }
            }
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
