//! The server side of Raft RPC: axum routes that decode a request, hand it to the local Raft
//! and encode its `Result` back. Mounted by the HTTP API next to the public routes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use roster_storage::codec;

use crate::network::{ROUTE_APPEND, ROUTE_SNAPSHOT, ROUTE_VOTE};
use crate::types::Raft;

/// Largest Raft RPC body accepted: an append batch or one snapshot chunk.
pub const RAFT_RPC_BODY_MAX_BYTES: usize = 64 << 20;

/// Routes for Raft RPC, to be merged into the node's HTTP router.
pub fn router(raft: Raft) -> Router {
    Router::new()
        .route(ROUTE_APPEND, post(append))
        .route(ROUTE_VOTE, post(vote))
        .route(ROUTE_SNAPSHOT, post(snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(RAFT_RPC_BODY_MAX_BYTES))
        .with_state(raft)
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("undecodable raft rpc: {e}")).into_response()
}

async fn append(State(raft): State<Raft>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(req) => codec::encode(&raft.append_entries(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn vote(State(raft): State<Raft>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(req) => codec::encode(&raft.vote(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn snapshot(State(raft): State<Raft>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(req) => codec::encode(&raft.install_snapshot(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}
