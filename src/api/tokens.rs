//! API tokens (admin only): `POST /v1/tokens` creates one and shows its secret once,
//! `GET /v1/tokens` lists them (never secrets or hashes), `DELETE /v1/tokens/{name}` revokes.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{read_barrier, read_response, route, submit, ApiError, ApiJson, ApiPath, Consistency, Ctx, RouteSpec, WriteMeta};
use crate::auth::{new_secret, Access, ADMIN};
use crate::domain::tokens::{hash_secret, Role, TokenName, TokenRecord};
use crate::domain::{AgentId, CommandBody};

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(Method::GET, "/v1/tokens", Access::Roles(ADMIN), list).returns::<Vec<TokenView>>(),
        route(Method::POST, "/v1/tokens", Access::Roles(ADMIN), create).returns::<TokenCreated>(),
        route(Method::DELETE, "/v1/tokens/{name}", Access::Roles(ADMIN), revoke).returns::<TokenRevoked>(),
    ]
}

/// A new token, with its secret: shown only in this answer.
#[derive(Serialize, schemars::JsonSchema)]
struct TokenCreated {
    name: TokenName,
    role: Role,
    agent: Option<AgentId>,
    /// The secret (`rst_...`), for the user's token file.
    token: String,
    note: &'static str,
}

/// A token as an admin sees it (never its secret or hash).
#[derive(Serialize, schemars::JsonSchema)]
struct TokenView {
    name: TokenName,
    role: Role,
    agent: Option<AgentId>,
    created_by: String,
    created_ms: u64,
    /// `file` (the node's token file) or `api` (created through the API, replicated).
    source: &'static str,
}

#[derive(Serialize, schemars::JsonSchema)]
struct TokenRevoked {
    revoked: TokenName,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    name: TokenName,
    role: Role,
    #[serde(default)]
    agent: Option<AgentId>,
}

async fn create(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<CreateTokenRequest>) -> Result<Response, ApiError> {
    if ctx.auth.file_token_named(&r.name) {
        return Err(ApiError::new(StatusCode::CONFLICT, "already_exists", format!("token {} exists in this node's token file", r.name)));
    }
    let secret = new_secret();
    let token = TokenRecord {
        name: r.name,
        role: r.role,
        agent: r.agent,
        hash: hash_secret(&secret),
        created_by: meta.actor.clone(),
        created_ms: crate::commands::now_ms(),
    };
    token.check().map_err(ApiError::bad_request)?;
    let (name, role, agent) = (token.name.clone(), token.role, token.agent.clone());
    submit(&ctx, meta, CommandBody::CreateToken { token }).await?;
    let body = TokenCreated { name, role, agent, token: secret, note: "the secret is shown only now; the cluster keeps only its hash" };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list(State(ctx): State<Ctx>, c: Consistency) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let live = ctx.machine.read();
    let describe = |t: &TokenRecord, source: &'static str| TokenView {
        name: t.name.clone(),
        role: t.role,
        agent: t.agent.clone(),
        created_by: t.created_by.clone(),
        created_ms: t.created_ms,
        source,
    };
    let mut list: Vec<_> = ctx.auth.file_tokens().iter().map(|t| describe(t, "file")).collect();
    list.extend(live.tokens.values().map(|t| describe(t, "api")));
    Ok(read_response(live.state.revision, &list))
}

async fn revoke(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(name): ApiPath<String>) -> Result<Response, ApiError> {
    let name = TokenName::new(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if ctx.auth.file_token_named(&name) && !ctx.machine.read().tokens.contains_key(&name) {
        return Err(ApiError::bad_request(format!(
            "token {name} comes from the node's token file; remove it there and restart the node"
        )));
    }
    submit(&ctx, meta, CommandBody::RevokeToken { name: name.clone() }).await?;
    Ok(Json(TokenRevoked { revoked: name }).into_response())
}
