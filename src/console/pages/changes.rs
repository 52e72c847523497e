//! The pending changes: preview, Apply All Changes, Discard.

use super::*;

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
