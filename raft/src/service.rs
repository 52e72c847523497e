//! The server side of Raft RPC: axum routes that decode a request, hand it to the local Raft
//! and encode its `Result` back. Mounted by the HTTP API next to the public routes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use roster_storage::codec;

use crate::network::{ROUTE_ADMIN, ROUTE_APPEND, ROUTE_FORWARD, ROUTE_FORWARD_BATCH, ROUTE_READ_INDEX, ROUTE_SNAPSHOT, ROUTE_TRANSFER, ROUTE_VOTE};
use crate::node::{AdminRequest, RaftNode};

/// Largest Raft RPC body accepted: an append batch or one snapshot chunk.
pub const RAFT_RPC_BODY_MAX_BYTES: usize = 64 << 20;

/// Every Raft route (all POST), each guarded by the cluster secret.
pub const ROUTES: &[&str] = &[ROUTE_APPEND, ROUTE_VOTE, ROUTE_SNAPSHOT, ROUTE_FORWARD, ROUTE_FORWARD_BATCH, ROUTE_READ_INDEX, ROUTE_ADMIN, ROUTE_TRANSFER];

/// Routes for Raft RPC and leader forwarding, to be merged into the node's HTTP router.
pub fn router(node: RaftNode) -> Router {
    Router::new()
        .route(ROUTE_APPEND, post(append))
        .route(ROUTE_VOTE, post(vote))
        .route(ROUTE_SNAPSHOT, post(snapshot))
        .route(ROUTE_FORWARD, post(forward))
        .route(ROUTE_FORWARD_BATCH, post(forward_batch))
        .route(ROUTE_READ_INDEX, post(read_index))
        .route(ROUTE_ADMIN, post(admin))
        .route(ROUTE_TRANSFER, post(transfer))
        .layer(axum::extract::DefaultBodyLimit::max(RAFT_RPC_BODY_MAX_BYTES))
        .route_layer(axum::middleware::from_fn_with_state(node.clone(), require_cluster_secret))
        .with_state(node)
}

/// Every Raft route: only a caller presenting the cluster secret gets through, so nobody
/// outside the cluster can append entries, vote, install a snapshot or forward writes.
async fn require_cluster_secret(
    State(node): State<RaftNode>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(secret) = &node.cluster_secret {
        if !crate::transport::check_bearer(req.headers(), secret) {
            let body = r#"{"error":{"code":"unauthenticated","message":"raft routes need the cluster secret"}}"#;
            let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
            resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, "application/json".parse().expect("static header"));
            return resp;
        }
    }
    next.run(req).await
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("undecodable raft rpc: {e}")).into_response()
}

async fn append(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(req) => codec::encode(&node.raft.append_entries(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn vote(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(req) => codec::encode(&node.raft.vote(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn snapshot(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode(&body) {
        Ok(req) => codec::encode(&node.raft.install_snapshot(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn forward(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode::<Vec<u8>>(&body) {
        Ok(p) => codec::encode(&node.write_local(p).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn forward_batch(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode::<Vec<Vec<u8>>>(&body) {
        Ok(commands) => codec::encode(&node.write_local_many(commands).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn read_index(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode::<()>(&body) {
        Ok(()) => codec::encode(&node.read_index_local().await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn admin(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode::<AdminRequest>(&body) {
        Ok(req) => codec::encode(&node.admin_local(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn transfer(State(node): State<RaftNode>, body: Bytes) -> Response {
    match codec::decode::<crate::transfer::ElectRequest>(&body) {
        Ok(req) => codec::encode(&node.elect_on_request(req).await).into_response(),
        Err(e) => bad_request(e),
    }
}
