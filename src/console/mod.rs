//! The web console at `/ui/`: the operators' workflow in a browser, served by every node.
//!
//! Pages are rendered on the server with maud (markup and escaping checked by the compiler);
//! the only client code is `console.js` (the live server URL of the register form, and a
//! long poll that reloads a page when the revision moves). Writes go through the command
//! gateway like the API's; reads follow a linearizable barrier.
//!
//! Sign-in takes an API token; the session is a signed cookie any node can check (see
//! [`crate::session`]), revoked with its token. Every form carries a CSRF token bound to the
//! session; every answer carries a strict Content-Security-Policy. Every edit is staged in the
//! operator's pending changeset (one per actor, described [`CONSOLE_CHANGESET`]) until
//! **Apply All Changes**; a single urgent change can be applied at once.

mod pages;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use crate::api::Ctx;
use crate::auth::Identity;
use crate::commands::{self, SubmitError, WriteMeta};
use crate::domain::tokens::Role;
use crate::domain::{decide, Change, Changeset, CommandBody, Outcome, State as Config};
use crate::session::SESSION_COOKIE;

/// The description of the changeset an actor's console edits are staged in.
pub const CONSOLE_CHANGESET: &str = "console";
/// Most rows a console list shows per page.
pub const CONSOLE_PAGE_ROWS: usize = 200;
/// Longest a live page's long poll waits for a new revision.
pub const LIVE_WAIT_MS: u64 = 25_000;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes, to be merged into the node's router.
pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/servers") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/servers") }))
        .route("/ui/assets/console.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/ui/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
        .route("/ui/login", get(pages::login_page).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/wait", get(pages::wait))
        .route("/ui/servers", get(pages::servers).post(pages::servers_post))
        .route("/ui/servers/{name}", get(pages::server_page))
        .route("/ui/clusters", get(pages::clusters).post(pages::clusters_post))
        .route("/ui/tasks", get(pages::tasks).post(pages::tasks_post))
        .route("/ui/changes", get(pages::changes).post(pages::changes_post))
        .route("/ui/history", get(pages::history))
        .route("/ui/history/{revision}", get(pages::revision_page))
        .route("/ui/events", get(pages::events))
        .route("/ui/diff", get(pages::diff_page))
        .route("/ui/state", get(pages::state_page))
        .route("/ui/tokens", get(pages::tokens).post(pages::tokens_post))
        .route("/ui/cluster", get(pages::cluster).post(pages::cluster_post))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(FORM_BODY_MAX_BYTES))
        .layer(axum::middleware::from_fn(|req: axum::extract::Request, next: axum::middleware::Next| async move {
            match crate::api::refuse_body_above(FORM_BODY_MAX_BYTES, req).await {
                Ok(req) => next.run(req).await,
                Err(refused) => refused,
            }
        }))
        // A form must arrive as promptly as an API body: a trickling client holds nothing long.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(std::time::Duration::from_millis(crate::api::BODY_READ_TIMEOUT_MS)))
        .with_state(ctx)
}

/// Largest form a console page posts.
pub const FORM_BODY_MAX_BYTES: usize = 64 * 1024;

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Every console answer: no inline script, no framing, no sniffing, no caching of pages.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Who is using the console, and what they may do.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// The token's identity; in the insecure mode, an admin named `console`.
    pub identity: Identity,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// The signed session payload (or "insecure").
    csrf_payload: String,
    pub insecure: bool,
}

impl Viewer {
    pub fn can_edit(&self) -> bool {
        crate::auth::WRITE_CONFIG.contains(&self.identity.role)
    }
    pub fn can_audit(&self) -> bool {
        crate::auth::READ_AUDIT.contains(&self.identity.role)
    }
    pub fn is_admin(&self) -> bool {
        self.identity.role == Role::Admin
    }
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Ctx> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, Response> {
        let key = ctx.auth.session_key();
        if !ctx.auth.is_enabled() {
            let identity = Identity { name: "console".into(), role: Role::Admin, agent: None };
            let payload = "insecure".to_string();
            return Ok(Viewer { identity, csrf: key.csrf(&payload), csrf_payload: payload, insecure: true });
        }
        let session = cookie(&parts.headers, SESSION_COOKIE).and_then(|c| key.open(c, commands::now_ms()));
        let identity = session.as_ref().and_then(|s| ctx.auth.user_for_session(s));
        match (session, identity) {
            (Some(s), Some(identity)) if identity.role != Role::Agent => {
                Ok(Viewer { identity, csrf: key.csrf(&s.payload), csrf_payload: s.payload, insecure: false })
            }
            _ if parts.method == axum::http::Method::GET => Err(Redirect::to("/ui/login").into_response()),
            _ => Err(refusal(StatusCode::UNAUTHORIZED, "sign in first (the session is missing, expired or revoked)")),
        }
    }
}

/// A plain-text refusal (a form post that may not run).
fn refusal(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.to_string()).into_response()
}

/// A posted form, after its CSRF token was checked.
pub struct Form(pub HashMap<String, String>);

impl Form {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("").trim()
    }
}

/// Parses a posted form and checks that its `_csrf` field belongs to the viewer's session.
pub fn checked_form(viewer: &Viewer, ctx: &Ctx, body: &[u8]) -> Result<Form, Response> {
    let fields: HashMap<String, String> = serde_urlencoded_pairs(body);
    let presented = fields.get("_csrf").map(String::as_str).unwrap_or("");
    if !ctx.auth.session_key().csrf_ok(&viewer.csrf_payload, presented) {
        return Err(refusal(StatusCode::FORBIDDEN, "the form's CSRF token is missing or not this session's; reload the page"));
    }
    Ok(Form(fields))
}

/// `application/x-www-form-urlencoded` pairs (the last of a repeated name wins).
fn serde_urlencoded_pairs(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| -> String {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 3 <= bytes.len() {
                if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The open changeset the viewer's console edits are staged in.
pub fn pending_changeset(ctx: &Ctx, viewer: &Viewer) -> Option<Changeset> {
    let live = ctx.machine.read();
    live.changesets
        .values()
        .filter(|cs| cs.created_by == viewer.identity.name && cs.description == CONSOLE_CHANGESET)
        .max_by_key(|cs| cs.created_ms)
        .cloned()
}

/// The configuration as it will be once the viewer's pending changes are applied (the current
/// one when there are none, or when they no longer apply), and whether it is staged.
pub fn staged_view(ctx: &Ctx, pending: Option<&Changeset>) -> (Config, Option<String>) {
    let live = ctx.machine.read();
    let mut state = live.state.clone();
    let Some(cs) = pending.filter(|cs| !cs.changes.is_empty()) else { return (state, None) };
    match decide(&state, &cs.changes, commands::now_ms()) {
        Ok(events) => {
            let next = state.revision + 1;
            state.apply_record_events(next, &events);
            state.revision = next - 1;
            (state, None)
        }
        Err(r) => (state, Some(format!("the pending changes no longer apply: {}", r.message))),
    }
}

fn meta(viewer: &Viewer, comment: String, expected_revision: Option<u64>) -> WriteMeta {
    WriteMeta {
        actor: viewer.identity.name.clone(),
        comment,
        expected_revision,
        idempotency_key: Some(format!("ui-{:032x}", rand::random::<u128>())),
    }
}

fn submit_message(e: SubmitError) -> String {
    match e {
        SubmitError::Rejected(r) => r.message,
        SubmitError::NotYetSupported(m) => m,
        other => format!("the cluster could not take the change now ({other}); try again"),
    }
}

/// Stages `change` in the viewer's pending changeset (creating it when needed).
pub async fn stage(ctx: &Ctx, viewer: &Viewer, change: Change) -> Result<(), String> {
    let id = match pending_changeset(ctx, viewer) {
        Some(cs) => cs.id,
        None => {
            let body = CommandBody::CreateChangeset { description: CONSOLE_CHANGESET.into() };
            match commands::submit(&ctx.node, meta(viewer, String::new(), None), body).await.map_err(submit_message)? {
                Outcome::ChangesetCreated { id } => id,
                other => return Err(format!("unexpected answer {other:?}")),
            }
        }
    };
    let body = CommandBody::AddToChangeset { id, changes: vec![change] };
    commands::submit(&ctx.node, meta(viewer, String::new(), None), body).await.map_err(submit_message)?;
    Ok(())
}

/// Applies `changes` at once as one revision ("apply now").
pub async fn apply_now(ctx: &Ctx, viewer: &Viewer, changes: Vec<Change>, comment: String) -> Result<u64, String> {
    let body = CommandBody::Apply { changes };
    match commands::submit(&ctx.node, meta(viewer, comment, None), body).await.map_err(submit_message)? {
        Outcome::RevisionSealed { revision } => Ok(revision),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Applies the viewer's pending changeset, refused if the configuration moved past
/// `expected_revision` (the revision the operator previewed).
pub async fn apply_all(ctx: &Ctx, viewer: &Viewer, id: String, comment: String, expected_revision: u64) -> Result<u64, String> {
    let body = CommandBody::ApplyChangeset { id };
    match commands::submit(&ctx.node, meta(viewer, comment, Some(expected_revision)), body).await {
        Ok(Outcome::RevisionSealed { revision }) => Ok(revision),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(SubmitError::Rejected(r)) if r.code == crate::domain::RejectCode::RevisionMismatch => Err(format!(
            "someone else applied changes since you previewed ({}). Review the preview again before applying.",
            r.message
        )),
        Err(e) => Err(submit_message(e)),
    }
}

/// Drops the viewer's pending changeset.
pub async fn discard(ctx: &Ctx, viewer: &Viewer, id: String) -> Result<(), String> {
    let body = CommandBody::DiscardChangeset { id };
    commands::submit(&ctx.node, meta(viewer, String::new(), None), body).await.map_err(submit_message)?;
    Ok(())
}

/// The navigation entries: path, label, and whether the viewer may see it.
fn nav(viewer: &Viewer) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("/ui/servers", "Servers"), ("/ui/clusters", "Agent clusters"), ("/ui/tasks", "Task configurations")];
    if viewer.can_audit() {
        v.push(("/ui/history", "History"));
        v.push(("/ui/events", "Events"));
    }
    v.push(("/ui/cluster", "Cluster"));
    if viewer.is_admin() {
        v.push(("/ui/tokens", "Tokens"));
    }
    v
}

/// A whole page: nav bar, banner, the pending-changes bar, flash message, content.
pub struct Page<'a> {
    pub ctx: &'a Ctx,
    pub viewer: &'a Viewer,
    pub title: &'a str,
    pub active: &'static str,
    /// The revision the page shows; with `live`, the page reloads when it moves.
    pub revision: u64,
    pub live: bool,
    /// Live also on new operational events (the events page).
    pub watch_events: bool,
    /// Live also on deployments acknowledged to this node (the agents page).
    pub watch_acks: bool,
}

impl Page<'_> {
    pub fn render(&self, flash: Option<&str>, error: Option<&str>, content: Markup) -> Response {
        let pending = pending_changeset(self.ctx, self.viewer);
        let pending_count = pending.as_ref().map_or(0, |cs| cs.changes.len());
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · Roster" }
                    link rel="stylesheet" href="/ui/assets/console.css";
                    script src="/ui/assets/console.js" defer {}
                }
                body data-revision=(self.revision) data-live=(if self.live { "1" } else { "0" })
                    data-events=[self.watch_events.then(|| self.ctx.machine.read().event_seq)]
                    data-acks=[self.watch_acks.then(|| *self.ctx.agents.subscribe_acks().borrow())] {
                    @if self.viewer.insecure {
                        div.banner.insecure { "Insecure mode: no sign-in, no TLS. Anyone who can reach this node can change the configuration." }
                    }
                    nav.top {
                        span.brand { "Roster" }
                        @for (path, label) in nav(self.viewer) {
                            a href=(path) class=(if path == self.active { "active" } else { "" }) { (label) }
                        }
                        span.who {
                            (self.viewer.identity.name) " (" (self.viewer.identity.role) ")"
                            @if !self.viewer.insecure {
                                form.inline method="post" action="/ui/logout" {
                                    input type="hidden" name="_csrf" value=(self.viewer.csrf);
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                    @if self.viewer.can_edit() {
                        div.pending id="pending-bar" {
                            @if pending_count == 0 {
                                span { "No pending changes." }
                            } @else {
                                span.count { (pending_count) " pending change" @if pending_count != 1 { "s" } }
                                a.button href="/ui/changes" { "Preview" }
                                form.inline method="post" action="/ui/changes" {
                                    input type="hidden" name="_csrf" value=(self.viewer.csrf);
                                    input type="hidden" name="action" value="discard";
                                    button type="submit" { "Discard" }
                                }
                                a.button.primary href="/ui/changes#apply" { "Apply All Changes" }
                            }
                        }
                    }
                    main {
                        h1 { (self.title) }
                        @if let Some(f) = flash { p.flash { (f) } }
                        @if let Some(e) = error { p.error id="error" { (e) } }
                        (content)
                    }
                    footer { "Revision " (self.revision) " · node " (self.ctx.node.id) }
                }
            }
        };
        html_response(StatusCode::OK, markup)
    }
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// A hidden CSRF field.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="_csrf" value=(viewer.csrf); }
}

/// After a post: back to `to`, with a message or an error in the query.
pub fn back(to: &str, result: Result<String, String>) -> Response {
    let (key, text) = match result {
        Ok(m) => ("msg", m),
        Err(e) => ("err", e),
    };
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}{key}={}", urlencode(&text))).into_response()
}

pub use crate::domain::percent_encode as urlencode;

/// Reads after a linearizable barrier (as the API's default), or says why it cannot.
pub async fn barrier(ctx: &Ctx) -> Result<(), Response> {
    crate::api::read_barrier(ctx, crate::api::Consistency::Linearizable).await.map_err(|e| e.into_response())
}

/// State for handlers.
pub type Cx = State<Ctx>;
