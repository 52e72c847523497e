//! The read side of the API: the `consistency` parameter, the read barrier, the revision
//! header on every read, and the health and identity routes.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::*;
use crate::auth::{Access, Identity, ANY_ROLE};

pub(super) fn routes() -> Vec<RouteSpec> {
    vec![
        route(Method::GET, "/healthz", Access::Open, healthz).returns::<Health>(),
        route(Method::GET, "/readyz", Access::Open, readyz).returns::<Ready>(),
        route(Method::GET, "/v1/whoami", Access::Roles(ANY_ROLE), whoami).returns::<WhoAmI>(),
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
        Some(axum::Extension(id)) => Json(WhoAmI { name: Some(id.name), role: Some(id.role), agent: id.agent, authentication: None }).into_response(),
        None => Json(WhoAmI { name: None, role: None, agent: None, authentication: Some("disabled".into()) }).into_response(),
    }
}

/// A node's `/healthz` answer: it runs, which build, which data format.
#[derive(Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Health {
    /// Always `ok` (a node that cannot answer does not answer).
    #[serde(default)]
    pub status: String,
    pub version: String,
    /// The newest data format this build writes (a rolling upgrade waits for every member).
    #[serde(default)]
    pub data_format: u32,
    /// Its `--leader-priority` (lower is preferred); absent without one.
    pub leader_priority: Option<u32>,
    /// Started with `--learner`: `cluster add-node` adds it as a learner.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learner: bool,
}

impl Health {
    pub fn of(ctx: &Ctx) -> Self {
        Self {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            data_format: crate::machine::upgrade::DATA_FORMAT,
            leader_priority: ctx.leader_priority,
            learner: ctx.learner,
        }
    }
}

async fn healthz(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    Json(Health::of(&ctx)).into_response()
}

/// A ready node: it knows the leader.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Ready {
    /// Always `ready`.
    status: String,
    leader: u64,
}

/// Who the caller is. With authentication disabled every field but `authentication` is null.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct WhoAmI {
    name: Option<String>,
    role: Option<crate::domain::tokens::Role>,
    /// The agent an agent token speaks for.
    agent: Option<crate::domain::AgentId>,
    /// `disabled` on a node without tokens (`--insecure`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication: Option<String>,
}

async fn readyz(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Response {
    let metrics = ctx.node.raft.metrics().borrow().clone();
    if let Err(fatal) = &metrics.running_state {
        return ApiError::unavailable(format!("this node's Raft core has stopped: {fatal}")).into_response();
    }
    match metrics.current_leader {
        Some(leader) => Json(Ready { status: "ready".into(), leader }).into_response(),
        None => ApiError::unavailable("no leader is known yet").into_response(),
    }
}
