//! The HTTP API (axum): routes under `/v1`, health endpoints, and the Raft RPC routes.
//!
//! Handlers turn requests into domain [`Command`]s and submit them through Raft, or read the
//! live state after a linearizable barrier. DTOs for this transport live in the handler
//! modules; the domain types they convert to live in [`crate::domain`].

mod agents;
mod audit;
pub mod events;
pub mod error;
mod resources;
mod tokens;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Json, Router};
use roster_raft::{RaftNode, Transport, ProposeError};
use serde::Serialize;
use serde_json::json;

pub use agents::AgentTracker;
pub use error::{ApiError, ApiJson, ApiPath, ApiQuery};

use crate::domain::{CommandBody, Outcome, ACTOR_MAX_LEN, COMMENT_MAX_LEN, IDEMPOTENCY_KEY_MAX_LEN};
use crate::auth::{Access, Auth, Identity};
use crate::machine::MachineHandle;

/// Largest request body accepted by the public API.
pub const BODY_MAX_BYTES: usize = 1 << 20;
/// Items in a page of a list (history, events) when the request names no `limit`.
pub const PAGE_DEFAULT: usize = 100;
/// Once a request's head is accepted, its whole body must arrive within this long (408
/// otherwise): a client trickling bytes cannot hold a buffer and a connection forever.
pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// Request body bytes buffered at once across every connection; a body that does not fit
/// gets 503 (retry), so many large uploads cannot exhaust memory.
pub const BODY_BUFFER_TOTAL_MAX_BYTES: usize = 64 << 20;
/// An answer given from the head alone (401, 403, 404, 405) first drains what the client is
/// still sending, for at most this long and `BODY_MAX_BYTES`, without buffering it, so an
/// honest client sees the answer rather than a reset connection.
pub const BODY_DRAIN_MAX_MS: u64 = 1_000;
/// A write or linearizable read that cannot finish in this time gets a 503.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

pub const HEADER_ACTOR: &str = "x-roster-actor";
pub const HEADER_COMMENT: &str = "x-roster-comment";
pub const HEADER_EXPECTED_REVISION: &str = "x-roster-expected-revision";
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on every read: the revision the answer reflects.
pub const HEADER_REVISION: &str = "x-roster-revision";

/// What every handler can reach.
#[derive(Clone)]
pub struct Ctx {
    pub node: RaftNode,
    /// Typed reads of the stored history, rejections and events (never `node.store`).
    pub reader: crate::reader::Reader,
    pub machine: MachineHandle,
    pub http_metrics: crate::metrics::HttpMetrics,
    pub agents: agents::AgentTracker,
    pub auth: Auth,
    /// How this node reaches its peers (scheme, CA, cluster secret).
    pub transport: Transport,
    /// Pooled client for calls to peers, built from `transport`.
    pub peer_http: reqwest::Client,
}

impl axum::extract::FromRef<Ctx> for crate::metrics::MetricsState {
    fn from_ref(ctx: &Ctx) -> Self {
        Self { node: ctx.node.clone(), reader: ctx.reader.clone(), machine: ctx.machine.clone(), http: ctx.http_metrics.clone() }
    }
}

/// One route of the API with the access rule it is declared with.
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<Ctx>,
}

/// Declares a route: method, path template, access rule and handler.
pub fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> RouteSpec
where
    H: axum::handler::Handler<T, Ctx>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
    RouteSpec { method, path, access, handler: axum::routing::on(filter, handler) }
}

/// Every route of the public API with its access rule; the router is built from this table,
/// so no route exists without a rule. (The Raft routes check the cluster secret themselves.)
pub fn route_table() -> Vec<RouteSpec> {
    use crate::auth::{ADMIN, ANY_ROLE, READ_CONFIG};
    let mut v = vec![
        route(Method::GET, "/healthz", Access::Open, healthz),
        route(Method::GET, "/readyz", Access::Open, readyz),
        route(Method::GET, "/metrics", Access::Metrics, crate::metrics::render),
        route(Method::GET, "/v1/cluster", Access::Roles(READ_CONFIG), cluster),
        route(Method::POST, "/v1/cluster/nodes", Access::Roles(ADMIN), add_node),
        route(Method::DELETE, "/v1/cluster/nodes/{id}", Access::Roles(ADMIN), remove_node),
        route(Method::GET, "/v1/whoami", Access::Roles(ANY_ROLE), whoami),
    ];
    v.extend(resources::routes());
    v.extend(audit::routes());
    v.extend(agents::routes());
    v.extend(events::routes());
    v.extend(tokens::routes());
    v
}

/// What runs in front of every route: its access check and its latency histograms. One
/// middleware, not two: each layer costs a boxed future per request, held as long as the
/// request (an agent watch is held for up to a minute).
#[derive(Clone)]
struct RouteGuard {
    auth: Auth,
    access: Access,
    metrics: crate::metrics::RouteMetrics,
    /// Shared by every route: bytes of request bodies buffered at once.
    body_budget: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Access is checked from the request head, before a byte of the body is read: a caller
/// without a valid token can never make the node buffer or wait for a body. An allowed
/// request's body is then read whole, within `BODY_READ_TIMEOUT_MS` and the shared budget.
async fn guard_route(axum::extract::State(g): axum::extract::State<RouteGuard>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let flags = body_flags(&parts.headers);
    let head = axum::extract::Request::from_parts(parts, axum::body::Body::empty());
    let resp = match crate::auth::authorize(&g.auth, g.access, head).await {
        Ok(head) => {
            let (parts, _) = head.into_parts();
            match read_body(&parts.headers, body, &g.body_budget).await {
                Ok((body, _permit)) => next.run(axum::extract::Request::from_parts(parts, body)).await,
                Err(resp) => resp,
            }
        }
        Err(denied) => early_answer(flags, body, denied_response(denied)).await,
    };
    g.metrics.observe(started, resp.status());
    resp
}

/// The answer to a request the access check refused.
fn denied_response(denied: crate::auth::Denied) -> Response {
    use crate::auth::Denied;
    match denied {
        Denied::Unauthenticated(m) => {
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m).into_response();
            resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"roster\""));
            resp
        }
        Denied::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m).into_response(),
        Denied::Malformed(m) => ApiError::bad_request(m).into_response(),
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// Method, path template and access rule of every route in [`route_table`].
pub fn route_rules() -> Vec<(Method, &'static str, Access)> {
    route_table().into_iter().map(|r| (r.method, r.path, r.access)).collect()
}

/// The node's whole HTTP surface.
/// With `peer_routes`, the Raft routes (append, vote, snapshot, forwarding) are served too;
/// a node with a separate peer listener serves them only there.
pub fn router(ctx: Ctx, peer_routes: bool) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Ctx>> = BTreeMap::new();
    let body_budget = std::sync::Arc::new(tokio::sync::Semaphore::new(BODY_BUFFER_TOTAL_MAX_BYTES));
    for spec in route_table() {
        let guard = RouteGuard {
            auth: ctx.auth.clone(),
            access: spec.access,
            metrics: ctx.http_metrics.route(method_name(&spec.method), spec.path),
            body_budget: body_budget.clone(),
        };
        let checked = spec.handler.route_layer(axum::middleware::from_fn_with_state(guard, guard_route));
        let merged = match by_path.remove(spec.path) {
            Some(existing) => existing.merge(checked),
            None => checked,
        };
        by_path.insert(spec.path, merged);
    }
    let api = by_path
        .into_iter()
        .fold(Router::new(), |r, (path, methods)| r.route(path, methods))
        .layer(DefaultBodyLimit::max(BODY_MAX_BYTES))
        .fallback(|req: axum::extract::Request| async move {
            let (parts, body) = req.into_parts();
            early_answer(body_flags(&parts.headers), body, ApiError::not_found("no such route").into_response()).await
        })
        .method_not_allowed_fallback(|req: axum::extract::Request| async move {
            let (parts, body) = req.into_parts();
            let resp = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method");
            early_answer(body_flags(&parts.headers), body, resp.into_response()).await
        })
        // Outermost: a declared body above the limit is refused before routing.
        .layer(axum::middleware::from_fn(refuse_oversized_body))
        .with_state(ctx.clone());
    if peer_routes {
        api.merge(roster_raft::service::router(ctx.node.clone()))
    } else {
        api
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

fn has_body(headers: &HeaderMap) -> bool {
    match declared_length(headers) {
        Some(n) => n > 0,
        None => headers.contains_key(axum::http::header::TRANSFER_ENCODING),
    }
}

/// Whether a body is still to come, and whether the client waits for `100 Continue` first.
fn body_flags(headers: &HeaderMap) -> (bool, bool) {
    let waits = headers.get(axum::http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    (has_body(headers), waits)
}

fn too_large() -> Response {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is too large").into_response()
}

/// Marks an answer as the connection's last (its request body was not read to the end).
fn closing(mut resp: Response) -> Response {
    resp.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Refuses a declared body above [`BODY_MAX_BYTES`] from the head, before routing.
async fn refuse_oversized_body(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if declared_length(req.headers()).is_some_and(|n| n > BODY_MAX_BYTES as u64) {
        return closing(too_large());
    }
    next.run(req).await
}

/// Reads an allowed request's whole body within [`BODY_READ_TIMEOUT_MS`], holding its size
/// from the shared body budget until the handler is done (the returned permit).
async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    budget: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<(axum::body::Body, Option<tokio::sync::OwnedSemaphorePermit>), Response> {
    if !has_body(headers) {
        return Ok((axum::body::Body::empty(), None));
    }
    let want = declared_length(headers).unwrap_or(BODY_MAX_BYTES as u64).min(BODY_MAX_BYTES as u64) as u32;
    let permit = budget.clone().try_acquire_many_owned(want.max(1)).map_err(|_| {
        let mut resp = ApiError::unavailable("too many request bodies are being received; retry shortly").into_response();
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        closing(resp)
    })?;
    match tokio::time::timeout(Duration::from_millis(BODY_READ_TIMEOUT_MS), axum::body::to_bytes(body, BODY_MAX_BYTES)).await {
        Err(_) => Err(closing(
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {BODY_READ_TIMEOUT_MS} ms"),
            )
            .into_response(),
        )),
        Ok(Ok(bytes)) => Ok((axum::body::Body::from(bytes), Some(permit))),
        Ok(Err(e)) if e.to_string().contains("length limit") => Err(closing(too_large())),
        Ok(Err(e)) => Err(closing(ApiError::bad_request(format!("reading the request body: {e}")).into_response())),
    }
}

/// Sends an answer decided from the head alone. What the client is still sending is drained
/// first (bounded in time and bytes, buffering nothing), so an honest client reads the answer
/// instead of a reset; a client waiting for `100 Continue` gets none and sends nothing.
async fn early_answer(body_flags: (bool, bool), body: axum::body::Body, resp: Response) -> Response {
    use futures::StreamExt;
    let (pending, waits_for_continue) = body_flags;
    if !pending {
        return resp;
    }
    if waits_for_continue {
        return closing(resp);
    }
    let mut stream = body.into_data_stream();
    let mut drained = 0usize;
    let deadline = tokio::time::sleep(Duration::from_millis(BODY_DRAIN_MAX_MS));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return closing(resp),
            chunk = stream.next() => match chunk {
                Some(Ok(c)) => {
                    drained += c.len();
                    if drained > BODY_MAX_BYTES {
                        return closing(resp);
                    }
                }
                // The whole body arrived: the connection can serve the next request.
                None => return resp,
                Some(Err(_)) => return closing(resp),
            },
        }
    }
}

/// Who, why and under which preconditions a write is made: read from request headers here,
/// defined by the command gateway.
pub use crate::commands::WriteMeta;

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(ApiError::bad_request(format!("header {name} appears more than once")));
    }
    match headers.get(name) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v.as_bytes())
            .map(|s| Some(s.trim().to_string()))
            .map_err(|_| ApiError::bad_request(format!("header {name} is not valid UTF-8"))),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WriteMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let h = &parts.headers;
        let claimed = header_text(h, HEADER_ACTOR)?;
        let actor = match parts.extensions.get::<Identity>() {
            // With authentication on, the actor is the token's identity, never a header.
            Some(id) => {
                if claimed.as_ref().is_some_and(|c| c != &id.name) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!("{HEADER_ACTOR} must match the token's identity {:?} (or be left out)", id.name),
                    ));
                }
                id.name.clone()
            }
            None => claimed.unwrap_or_else(|| "anonymous".into()),
        };
        if actor.is_empty() || actor.len() > ACTOR_MAX_LEN || actor.chars().any(crate::domain::names::is_unsafe_text_char) {
            return Err(ApiError::bad_request(format!("{HEADER_ACTOR} must be 1 to {ACTOR_MAX_LEN} printable characters")));
        }
        let comment = header_text(h, HEADER_COMMENT)?.unwrap_or_default();
        if comment.len() > COMMENT_MAX_LEN || comment.chars().any(crate::domain::names::is_unsafe_text_char) {
            return Err(ApiError::bad_request(format!(
                "{HEADER_COMMENT} must be at most {COMMENT_MAX_LEN} printable characters, without control, bidi-override or line-separator characters"
            )));
        }
        let expected_revision = match header_text(h, HEADER_EXPECTED_REVISION)? {
            None => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("{HEADER_EXPECTED_REVISION} must be a revision number, got {s:?}"))
            })?),
        };
        let idempotency_key = header_text(h, HEADER_IDEMPOTENCY_KEY)?;
        if let Some(k) = &idempotency_key {
            let ok = !k.is_empty()
                && k.len() <= IDEMPOTENCY_KEY_MAX_LEN
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "{HEADER_IDEMPOTENCY_KEY} must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} of letters, digits, '-', '_', '.', ':'"
                )));
            }
        }
        Ok(Self { actor, comment, expected_revision, idempotency_key })
    }
}

pub fn write_error(e: ProposeError) -> ApiError {
    match e {
        ProposeError::NotLeader { leader } => ApiError::unavailable(match leader {
            Some((id, addr)) => format!("this node is not the leader; node {id} at {addr} is"),
            None => "no leader is known; the cluster may be electing one".into(),
        }),
        ProposeError::Unavailable(m) => ApiError::unavailable(m),
        ProposeError::Indeterminate(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            format!("the write may or may not have been applied; retry with the same Idempotency-Key: {m}"),
        ),
        ProposeError::Rejected(m) => ApiError::new(StatusCode::CONFLICT, "rejected", m),
    }
}

/// Submits through the command gateway; its errors become API errors.
pub async fn submit(ctx: &Ctx, meta: WriteMeta, body: CommandBody) -> Result<Outcome, ApiError> {
    crate::commands::submit(&ctx.node, meta, body).await.map_err(submit_error)
}

/// The API's answer for a gateway error.
pub fn submit_error(e: crate::commands::SubmitError) -> ApiError {
    use crate::commands::SubmitError;
    match e {
        SubmitError::Rejected(r) => r.into(),
        SubmitError::Write(w) => write_error(w),
        SubmitError::TimedOut => ApiError::unavailable(e.to_string()),
        SubmitError::Reply(m) => ApiError::internal(format!("undecodable reply: {m}")),
    }
}

/// The answer to a successful write.
pub fn outcome_response(outcome: Outcome, status: StatusCode) -> Response {
    (status, Json(outcome)).into_response()
}

/// Read consistency chosen with `?consistency=local|linearizable` (default linearizable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Local,
}

impl<S: Send + Sync> FromRequestParts<S> for Consistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        for pair in query.split('&') {
            if let Some(v) = pair.strip_prefix("consistency=") {
                return match v {
                    "local" => Ok(Consistency::Local),
                    "linearizable" => Ok(Consistency::Linearizable),
                    other => Err(ApiError::bad_request(format!(
                        "consistency must be 'linearizable' or 'local', got {other:?}"
                    ))),
                };
            }
        }
        Ok(Consistency::Linearizable)
    }
}

/// Waits, for a linearizable read, until this node has applied every write committed before.
pub async fn read_barrier(ctx: &Ctx, consistency: Consistency) -> Result<(), ApiError> {
    if consistency == Consistency::Local {
        return Ok(());
    }
    tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), ctx.node.linearizable_barrier())
        .await
        .map_err(|_| ApiError::unavailable("could not confirm leadership in time"))?
        .map_err(write_error)
}

/// A JSON read answer carrying the revision it reflects.
pub fn read_response<T: Serialize>(revision: u64, body: &T) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(HEADER_REVISION, HeaderValue::from(revision));
    resp
}

/// The caller's identity as the node sees it.
async fn whoami(id: Option<axum::Extension<Identity>>) -> Response {
    match id {
        Some(axum::Extension(id)) => Json(json!({"name": id.name, "role": id.role, "agent": id.agent})).into_response(),
        None => Json(json!({"name": null, "role": null, "authentication": "disabled"})).into_response(),
    }
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    let metrics = ctx.node.raft.metrics().borrow().clone();
    if let Err(fatal) = &metrics.running_state {
        return ApiError::unavailable(format!("this node's Raft core has stopped: {fatal}")).into_response();
    }
    match metrics.current_leader {
        Some(leader) => Json(json!({"status": "ready", "leader": leader})).into_response(),
        None => ApiError::unavailable("no leader is known yet").into_response(),
    }
}

async fn cluster(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    let m = ctx.node.raft.metrics().borrow().clone();
    let members: Vec<_> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| {
            let voter = m.membership_config.membership().voter_ids().any(|v| v == *id);
            json!({"id": id, "addr": node.addr, "voter": voter})
        })
        .collect();
    let lag: serde_json::Map<String, serde_json::Value> = m
        .replication
        .as_ref()
        .map(|r| {
            let last = m.last_log_index.unwrap_or(0);
            r.iter()
                .map(|(id, matched)| (id.to_string(), json!(last.saturating_sub(matched.map(|l| l.index).unwrap_or(0)))))
                .collect()
        })
        .unwrap_or_default();
    let revision = ctx.machine.read().state.revision;
    Json(json!({
        "node_id": m.id,
        "state": format!("{:?}", m.state),
        "leader": m.current_leader,
        "term": m.current_term,
        "last_log_index": m.last_log_index,
        "applied_index": m.last_applied.map(|l| l.index),
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "revision": revision,
        "members": members,
        "follower_lag": lag,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNodeRequest {
    id: u64,
    addr: String,
}

/// Adds a node: it joins as a learner, catches up, then becomes a voter.
async fn add_node(axum::extract::State(ctx): axum::extract::State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<AddNodeRequest>) -> Result<Response, ApiError> {
    if r.id == 0 {
        return Err(ApiError::bad_request("node ids start at 1"));
    }
    if let Err(why) = check_host_port(&r.addr) {
        return Err(ApiError::bad_request(format!("{:?} is not a host:port address: {why}", r.addr)));
    }
    ctx.node.admin(roster_raft::node::AdminRequest::AddNode { id: r.id, addr: r.addr.clone() }).await.map_err(write_error)?;
    let msg = format!("node {} ({}) joined the cluster", r.id, r.addr);
    events::record(&ctx, crate::domain::oplog::Level::Info, "node_joined", msg, meta.actor).await;
    Ok(Json(json!({"added": r.id})).into_response())
}

/// A node address is `host:port` and nothing else: no scheme (the cluster's own transport,
/// TLS on a secure cluster, is always used, so the cluster secret never goes out in plain
/// text), no path, no user info.
fn check_host_port(addr: &str) -> Result<(), &'static str> {
    if addr.contains("://") {
        return Err("give host:port without a scheme; the cluster's transport is used");
    }
    if addr.contains(['/', '@', '?', '#', ' ']) {
        return Err("no path, user or query belongs in a node address");
    }
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr.rsplit_once(':').ok_or("a port is needed")?;
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err("the port must be a number from 1 to 65535");
    }
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err("the host must be a name or an address");
    }
    Ok(())
}

/// Removes a node (the leader included) from the membership.
async fn remove_node(axum::extract::State(ctx): axum::extract::State<Ctx>, meta: WriteMeta, ApiPath(id): ApiPath<u64>) -> Result<Response, ApiError> {
    ctx.node.admin(roster_raft::node::AdminRequest::RemoveNode { id }).await.map_err(write_error)?;
    events::record(&ctx, crate::domain::oplog::Level::Info, "node_left", format!("node {id} left the cluster"), meta.actor).await;
    Ok(Json(json!({"removed": id})).into_response())
}
