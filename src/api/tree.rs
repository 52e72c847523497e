//! The history's Merkle tree for auditors: signed checkpoints, the tree head, inclusion and
//! consistency proofs (`docs/history-format.md` sections 4 to 6).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{read_barrier, read_response, route, ApiError, ApiPath, ApiQuery, Consistency, Ctx, RouteSpec, HEADER_REVISION};
use crate::auth::Access::Roles;
use crate::auth::{ANY_ROLE, READ_AUDIT};
use crate::domain::merkle::TreeError;
use crate::domain::Hash;

pub fn routes() -> Vec<RouteSpec> {
    use axum::http::Method as M;
    let audit = Roles(READ_AUDIT);
    vec![
        route(M::GET, "/v1/history/checkpoint", audit, checkpoint),
        route(M::GET, "/v1/history/tree-head", audit, tree_head).returns::<TreeHead>(),
        route(M::GET, "/v1/history/public-key", Roles(ANY_ROLE), public_key),
        route(M::GET, "/v1/history/{revision}/proof", audit, inclusion).returns::<InclusionProof>(),
        route(M::GET, "/v1/history/consistency", audit, consistency).returns::<ConsistencyProof>(),
    ]
}

/// The latest revision with its tree root, read together.
fn head(ctx: &Ctx) -> (u64, Hash) {
    let live = ctx.machine.read();
    debug_assert_eq!(live.tree.size(), live.state.revision);
    (live.state.revision, live.tree.root())
}

fn text_response(revision: u64, body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(HEADER_REVISION, HeaderValue::from(revision));
    resp
}

fn no_key() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_history_key",
        "this node has no history key, so it cannot sign checkpoints: make one with `roster history-key-new DIR` and start the node with --history-key (GET /v1/history/tree-head gives the unsigned root)",
    )
}

/// The signed checkpoint of the latest revision, as a C2SP signed note.
async fn checkpoint(State(ctx): State<Ctx>, c: Consistency) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let key = ctx.history_key.clone().ok_or_else(no_key)?;
    let (size, root) = head(&ctx);
    Ok(text_response(size, key.sign_checkpoint(size, &root)))
}

/// The Merkle tree head over the whole history (RFC 9162), hashes in hex.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct TreeHead {
    tree_size: u64,
    root_hash: String,
    /// The signed checkpoint (C2SP signed note); absent when the node has no history key.
    checkpoint: Option<String>,
}

/// An inclusion proof: revision `revision` is leaf `leaf_index` of the tree of `tree_size`.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct InclusionProof {
    revision: u64,
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    root_hash: String,
    audit_path: Vec<String>,
}

/// A consistency proof: the tree of `first` revisions is a prefix of the tree of `second`.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct ConsistencyProof {
    first: u64,
    second: u64,
    first_root: String,
    second_root: String,
    proof: Vec<String>,
}

async fn tree_head(State(ctx): State<Ctx>, c: Consistency) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let (size, root) = head(&ctx);
    let checkpoint = ctx.history_key.as_ref().map(|k| k.sign_checkpoint(size, &root));
    Ok(read_response(size, &TreeHead { tree_size: size, root_hash: root.to_string(), checkpoint }))
}

async fn public_key(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    let key = ctx.history_key.clone().ok_or_else(no_key)?;
    Ok(text_response(ctx.machine.read().state.revision, format!("{}\n", key.verifier())))
}

/// How long a proof request waits for a tree size that is applied but not yet written.
const TREE_WRITE_WAIT_MS: u64 = 2_000;

/// Waits until the tree of `size` leaves is in the database: the live state moves before its
/// batch is written, and the published revision only after.
pub(super) async fn written(ctx: &Ctx, size: u64) -> Result<(), ApiError> {
    let mut published = ctx.machine.subscribe();
    let waited = tokio::time::timeout(Duration::from_millis(TREE_WRITE_WAIT_MS), published.wait_for(|r| *r >= size)).await;
    match waited {
        Ok(Ok(_)) => Ok(()),
        _ => Err(ApiError::unavailable("the tree of that size is not written yet; retry shortly")),
    }
}

fn tree_error(e: TreeError) -> ApiError {
    match e {
        TreeError::LeafOutOfRange { .. } | TreeError::BadSizes { .. } => ApiError::bad_request(e.to_string()),
        TreeError::Missing(..) | TreeError::Read(_) => ApiError::internal(e.to_string()),
    }
}

/// A tree size up to the latest revision, or a clear 400/404.
fn check_size(what: &str, size: u64, latest: u64) -> Result<(), ApiError> {
    if size > latest {
        return Err(ApiError::not_found(format!("{what} {size} is beyond the latest revision {latest}")));
    }
    Ok(())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProofQuery {
    tree_size: Option<u64>,
}

async fn inclusion(State(ctx): State<Ctx>, c: Consistency, ApiPath(revision): ApiPath<u64>, ApiQuery(q): ApiQuery<ProofQuery>) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let latest = ctx.machine.read().state.revision;
    let size = q.tree_size.unwrap_or(latest);
    check_size("tree_size", size, latest)?;
    if revision == 0 || revision > size {
        return Err(ApiError::bad_request(format!("revision {revision} is not in a tree of size {size} (revisions 1 to {size})")));
    }
    written(&ctx, size).await?;
    let reader = ctx.reader.clone();
    let (leaf, path, root) = tokio::task::spawn_blocking(move || {
        let leaf = reader.tree_node(0, revision - 1).map_err(TreeError::Read)?.ok_or(TreeError::Missing(0, revision - 1))?;
        Ok::<_, TreeError>((leaf, reader.inclusion_proof(revision - 1, size)?, reader.tree_root(size)?))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(tree_error)?;
    let path: Vec<String> = path.iter().map(Hash::to_string).collect();
    Ok(read_response(
        latest,
        &InclusionProof {
            revision,
            leaf_index: revision - 1,
            tree_size: size,
            leaf_hash: leaf.to_string(),
            root_hash: root.to_string(),
            audit_path: path,
        },
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    first: u64,
    second: Option<u64>,
}

async fn consistency(State(ctx): State<Ctx>, c: Consistency, ApiQuery(q): ApiQuery<ConsistencyQuery>) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let latest = ctx.machine.read().state.revision;
    let second = q.second.unwrap_or(latest);
    check_size("second", second, latest)?;
    if q.first == 0 || q.first > second {
        return Err(ApiError::bad_request(format!("first must be between 1 and second ({second}), not {}", q.first)));
    }
    written(&ctx, second).await?;
    let reader = ctx.reader.clone();
    let first = q.first;
    let (proof, r1, r2) = tokio::task::spawn_blocking(move || {
        Ok::<_, TreeError>((reader.consistency_proof(first, second)?, reader.tree_root(first)?, reader.tree_root(second)?))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(tree_error)?;
    let proof: Vec<String> = proof.iter().map(Hash::to_string).collect();
    Ok(read_response(
        latest,
        &ConsistencyProof { first, second, first_root: r1.to_string(), second_root: r2.to_string(), proof },
    ))
}
