//! The router built from [`route_table`](super::route_table): every route behind its access
//! check, and the body handling in front of every handler (read whole within a time and a
//! shared memory budget, or drained briefly when the answer comes from the head alone).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;

use super::*;
use crate::auth::{Access, Auth};


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
    // Every await but the handler's is boxed: this future lives as long as the request (a
    // held agent watch: up to a minute, one per agent), so it is only as large as `next`'s.
    let resp = match Box::pin(crate::auth::authorize(&g.auth, g.access, head)).await {
        Ok(head) => {
            let (parts, _) = head.into_parts();
            match Box::pin(read_body(&parts.headers, body, &g.body_budget)).await {
                Ok((body, _permit)) => next.run(axum::extract::Request::from_parts(parts, body)).await,
                Err(resp) => resp,
            }
        }
        Err(denied) => Box::pin(early_answer(flags, body, denied_response(denied))).await,
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
        .layer(axum::middleware::from_fn(outermost))
        .with_state(ctx.clone())
        // The web console: its own session check, CSRF tokens and security headers.
        .merge(crate::console::router(ctx.clone()));
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
/// Refuses a request whose declared body is above `limit` (a route with a smaller limit than
/// the API's, like the console's forms). A body the API could take is drained briefly first,
/// so an honest client reads the 413 rather than a broken connection.
pub async fn refuse_body_above(limit: usize, req: axum::extract::Request) -> Result<axum::extract::Request, Response> {
    match declared_length(req.headers()) {
        Some(n) if n > BODY_MAX_BYTES as u64 => Err(closing(too_large())),
        Some(n) if n > limit as u64 => {
            let (parts, body) = req.into_parts();
            Err(early_answer(body_flags(&parts.headers), body, closing(too_large())).await)
        }
        _ => Ok(req),
    }
}

/// The API's outermost layer: refuses a body declared over `BODY_MAX_BYTES` before any route
/// runs, and answers a [`deferred`] response with what it awaits.
async fn outermost(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if declared_length(req.headers()).is_some_and(|n| n > BODY_MAX_BYTES as u64) {
        return closing(too_large());
    }
    let mut resp = next.run(req).await;
    match take_deferred(&mut resp) {
        Some(later) => later.await,
        None => resp,
    }
}

/// An answer a handler gives later, when it holds a request (an agent's config watch, up to a
/// minute): the handler returns at once, so the route's middleware (access check, metrics, body
/// handling) and the handler's own future end, and only this future is held until the answer
/// is ready. The API's outermost layer ([`outermost`]) awaits it. The route's
/// latency metrics see the time to defer, not the hold.
type Later = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// The response extension carrying a [`Later`] (extensions must be `Clone` and `Sync`).
#[derive(Clone)]
struct Deferred(std::sync::Arc<std::sync::Mutex<Option<Later>>>);

/// A response that [`outermost`] replaces with what `later` answers.
pub(crate) fn deferred(later: impl std::future::Future<Output = Response> + Send + 'static) -> Response {
    // What the route's middleware sees (its metrics count a 2xx, like the answer's 200 or 204);
    // a client would see it only if the deferred answer were lost on the way out, never with
    // this router.
    let mut resp = ApiError::new(StatusCode::ACCEPTED, "deferred", "the answer was deferred and then lost").into_response();
    resp.extensions_mut().insert(Deferred(std::sync::Arc::new(std::sync::Mutex::new(Some(Box::pin(later))))));
    resp
}

fn take_deferred(resp: &mut Response) -> Option<Later> {
    let deferred = resp.extensions_mut().remove::<Deferred>()?;
    let later = deferred.0.lock().ok()?.take();
    later
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
