//! The write side of the API: write metadata from headers, the call into the command gateway
//! and the mapping of its errors and outcomes to HTTP.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use roster_raft::ProposeError;

use super::*;
use crate::domain::{CommandBody, Outcome, ACTOR_MAX_LEN, COMMENT_MAX_LEN, IDEMPOTENCY_KEY_MAX_LEN};
use crate::auth::Identity;


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
        SubmitError::NotYetSupported(m) => ApiError::new(StatusCode::CONFLICT, "not_yet_supported", m),
    }
}

/// The answer to a successful write.
pub fn outcome_response(outcome: Outcome, status: StatusCode) -> Response {
    (status, Json(outcome)).into_response()
}
