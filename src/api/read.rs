//! The read side of the API: the `consistency` parameter, the read barrier, the revision
//! header on every read, and the health and identity routes.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::*;
use crate::auth::{Access, Identity, ANY_ROLE};

pub(super) fn routes() -> Vec<RouteSpec> {
    vec![
        route(Method::GET, "/healthz", Access::Open, healthz),
        route(Method::GET, "/readyz", Access::Open, readyz),
        route(Method::GET, "/v1/whoami", Access::Roles(ANY_ROLE), whoami),
        route(Method::GET, "/v1/openapi.json", Access::Roles(ANY_ROLE), super::openapi::serve),
    ]
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

async fn healthz(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "data_format": crate::machine::upgrade::DATA_FORMAT,
        "leader_priority": ctx.leader_priority,
    }))
    .into_response()
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
