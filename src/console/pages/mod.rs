//! The console's pages and the forms they post, one file per part of the nav bar; the
//! helpers they share are here.

mod admin;
mod audit;
mod changes;
mod config;
mod session;

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

pub use admin::*;
pub use audit::*;
pub use changes::*;
pub use config::*;
pub use session::*;

/// Tags listed in one cell (failover lists using a server, entities a revision changed).
const TAGS_SHOWN: usize = 8;

#[derive(Deserialize, Default)]
pub struct Msg {
    msg: Option<String>,
    err: Option<String>,
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

/// `(task, cluster)` pairs whose failover list names `server`.
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

fn parse<T>(what: &str, r: Result<T, impl std::fmt::Display>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
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

/// What a configuration page shows: the viewer's pending changeset, the configuration with it
/// applied, and why it no longer applies (when it does not).
struct Staged {
    pending: Option<Changeset>,
    state: Config,
    stale: Option<String>,
}

/// A configuration page's reads: the read barrier, then the staged view.
async fn staged_read(ctx: &Ctx, viewer: &Viewer) -> Result<Staged, Response> {
    barrier(ctx).await?;
    let pending = pending_changeset(ctx, viewer);
    let (state, stale) = staged_view(ctx, pending.as_ref());
    Ok(Staged { pending, state, stale })
}

/// An admin's posted form: the role, then the CSRF token.
fn admin_form(ctx: &Ctx, viewer: &Viewer, body: &Bytes) -> Result<Form, Response> {
    admin_only(viewer)?;
    checked_form(viewer, ctx, body)
}

async fn edit_form(ctx: &Ctx, viewer: &Viewer, body: &Bytes) -> Result<Form, Response> {
    if !viewer.can_edit() {
        return Err(refusal(StatusCode::FORBIDDEN, &format!("{} has role {}, which may not change the configuration", viewer.identity.name, viewer.identity.role)));
    }
    checked_form(viewer, ctx, body)
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

fn admin_only(viewer: &Viewer) -> Result<(), Response> {
    if viewer.is_admin() {
        Ok(())
    } else {
        Err(refusal(StatusCode::FORBIDDEN, &format!("{} has role {}; tokens and nodes are for admins", viewer.identity.name, viewer.identity.role)))
    }
}
