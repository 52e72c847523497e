//! The operational event log: `GET /v1/events` (filtered, newest first) and its settings.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::{route, RouteSpec};
use crate::auth::Access::Roles;
use crate::auth::{ADMIN, READ_AUDIT};
use super::{read_barrier, read_response, submit, ApiError, ApiJson, ApiQuery, Consistency, Ctx, WriteMeta};
use crate::domain::oplog::{EventSettings, Level};
use crate::domain::CommandBody;

/// Most events returned by one request.
pub const EVENTS_PAGE_MAX: usize = 1000;

pub fn routes() -> Vec<RouteSpec> {
    use axum::http::Method as M;
    vec![
        route(M::GET, "/v1/events", Roles(READ_AUDIT), list).returns::<Vec<crate::domain::oplog::OpEvent>>(),
        route(M::GET, "/v1/events/settings", Roles(READ_AUDIT), get_settings).returns::<EventSettings>(),
        route(M::PUT, "/v1/events/settings", Roles(ADMIN), put_settings).returns::<EventSettings>(),
    ]
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Minimum level.
    level: Option<Level>,
    kind: Option<String>,
    since_ms: Option<u64>,
    limit: Option<usize>,
}

async fn list(State(ctx): State<Ctx>, c: Consistency, ApiQuery(q): ApiQuery<EventsQuery>) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let limit = q.limit.unwrap_or(super::PAGE_DEFAULT).clamp(1, EVENTS_PAGE_MAX);
    let reader = ctx.reader.clone();
    let events = tokio::task::spawn_blocking(move || {
        reader.events(limit, |e| {
            q.level.is_none_or(|l| e.level >= l) && q.kind.as_ref().is_none_or(|k| &e.kind == k) && q.since_ms.is_none_or(|t| e.time_ms >= t)
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(read_response(ctx.machine.read().state.revision, &events))
}

async fn get_settings(State(ctx): State<Ctx>, c: Consistency) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let live = ctx.machine.read();
    Ok(read_response(live.state.revision, &live.event_settings))
}

async fn put_settings(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(settings): ApiJson<EventSettings>) -> Result<Response, ApiError> {
    submit(&ctx, meta, CommandBody::SetEventSettings { settings }).await?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(settings)))
}

/// Records an operational event through the command gateway, logging (not failing) when it
/// cannot.
pub async fn record(ctx: &Ctx, level: Level, kind: &str, message: String, actor: String) {
    crate::commands::record_event(&ctx.node, level, kind, message, actor).await;
}
