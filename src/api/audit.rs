//! Changesets ("Apply All Changes"), history, state at a revision, state digests and diffs.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{route, RouteSpec};
use crate::auth::Access::Roles;
use crate::auth::{READ_AUDIT, READ_CONFIG, WRITE_CONFIG};
use super::{outcome_response, read_barrier, read_response, submit, ApiError, ApiJson, ApiPath, ApiQuery, Consistency, Ctx, WriteMeta};
use crate::domain::diff::diff;
use crate::domain::{state_digest, AgentId, Change, CommandBody, State as DomainState, COMMENT_MAX_LEN};
use crate::machine::{fold_stored, RejectionRecord};

/// Most history records returned by one `GET /v1/history`.
pub const HISTORY_PAGE_MAX: usize = 1000;
/// Longest decimal form of a u64 (a changeset id's numbers).
const U64_DECIMAL_DIGITS_MAX: usize = 20;
/// Most records `GET /v1/history` examines for one page when filters match few of them.
pub const HISTORY_SCAN_MAX: u64 = 1_000_000;

pub fn routes() -> Vec<RouteSpec> {
    use axum::http::Method as M;
    let (read, write, audit) = (Roles(READ_CONFIG), Roles(WRITE_CONFIG), Roles(READ_AUDIT));
    vec![
        route(M::GET, "/v1/changesets", read, list_changesets).returns::<Vec<ChangesetSummary>>(),
        route(M::POST, "/v1/changesets", write, create_changeset).writes(),
        route(M::GET, "/v1/changesets/{id}", read, get_changeset).returns::<crate::domain::changeset::Changeset>(),
        route(M::DELETE, "/v1/changesets/{id}", write, discard_changeset).writes(),
        route(M::POST, "/v1/changesets/{id}/changes", write, add_changes).writes(),
        route(M::GET, "/v1/changesets/{id}/preview", read, preview_changeset).returns::<Preview>(),
        route(M::POST, "/v1/changesets/{id}/apply", write, apply_changeset).writes(),
        route(M::GET, "/v1/history", audit, history).returns::<HistoryPage>(),
        route(M::GET, "/v1/history/export", audit, export),
        route(M::GET, "/v1/history/{revision}", audit, history_one).returns::<serde_json::Map<String, serde_json::Value>>(),
        route(M::GET, "/v1/rejections", audit, rejections).returns::<Vec<RejectionRecord>>(),
        route(M::GET, "/v1/state", read, state).returns::<StateView>(),
        route(M::GET, "/v1/state/digest", read, digest).returns::<StateDigest>(),
        route(M::GET, "/v1/diff", audit, diff_route).returns::<DiffView>(),
    ]
}

// ---- changesets

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateChangesetRequest {
    #[serde(default)]
    description: String,
}

async fn create_changeset(State(ctx): State<Ctx>, meta: WriteMeta, ApiJson(r): ApiJson<CreateChangesetRequest>) -> Result<Response, ApiError> {
    if r.description.len() > COMMENT_MAX_LEN {
        return Err(ApiError::bad_request(format!("description longer than {COMMENT_MAX_LEN} bytes")));
    }
    if r.description.chars().any(crate::domain::names::is_unsafe_text_char) {
        return Err(ApiError::bad_request("description holds control, bidi-override or line-separator characters"));
    }
    let outcome = submit(&ctx, meta, CommandBody::CreateChangeset { description: r.description }).await?;
    Ok(outcome_response(outcome, StatusCode::CREATED))
}

/// A staged changeset in a list: its changes counted, not shown.
#[derive(Serialize, schemars::JsonSchema)]
struct ChangesetSummary {
    id: String,
    description: String,
    created_by: String,
    created_ms: u64,
    /// The revision when it was created.
    base_revision: u64,
    /// How many changes it holds.
    changes: usize,
}

async fn list_changesets(State(ctx): State<Ctx>, c: Consistency) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let live = ctx.machine.read();
    let list: Vec<_> = live
        .changesets
        .values()
        .map(|cs| ChangesetSummary {
            id: cs.id.clone(),
            description: cs.description.clone(),
            created_by: cs.created_by.clone(),
            created_ms: cs.created_ms,
            base_revision: cs.base_revision,
            changes: cs.changes.len(),
        })
        .collect();
    Ok(read_response(live.state.revision, &list))
}

fn check_changeset_id(id: &str) -> Result<(), ApiError> {
    let numeric = |n: &str| !n.is_empty() && n.len() <= U64_DECIMAL_DIGITS_MAX && n.bytes().all(|b| b.is_ascii_digit());
    let ok = id.strip_prefix("cs-").is_some_and(|rest| match rest.split_once('-') {
        Some((a, b)) => numeric(a) && numeric(b),
        None => numeric(rest),
    });
    ok.then_some(()).ok_or_else(|| ApiError::bad_request(format!("{id:?} is not a changeset id (cs-N or cs-N-M)")))
}

async fn get_changeset(State(ctx): State<Ctx>, c: Consistency, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    check_changeset_id(&id)?;
    read_barrier(&ctx, c).await?;
    let live = ctx.machine.read();
    let cs = live.changesets.get(&id).ok_or_else(|| ApiError::not_found(format!("changeset {id} does not exist")))?;
    Ok(read_response(live.state.revision, cs))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddChangesRequest {
    changes: Vec<Change>,
}

async fn add_changes(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath(id): ApiPath<String>,
    ApiJson(r): ApiJson<AddChangesRequest>,
) -> Result<Response, ApiError> {
    check_changeset_id(&id)?;
    let outcome = submit(&ctx, meta, CommandBody::AddToChangeset { id, changes: r.changes }).await?;
    Ok(outcome_response(outcome, StatusCode::OK))
}

/// Most agent ids one preview page lists, and the default.
pub const PREVIEW_AGENTS_MAX: usize = 1_000;
pub const PREVIEW_AGENTS_DEFAULT: usize = 100;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    /// The page of reached agents after this id.
    agents_after: Option<String>,
    agents_limit: Option<usize>,
}

/// What a changeset would do if applied now: the diff, the agents it reaches (count, and one
/// page of ids) and the task configurations it leaves without a usable server (applying
/// those needs `?confirm=true`); or why it would be rejected.
/// What applying a changeset now would do (`valid`, with `diff` and `reach`), or why it would
/// be rejected (`error`).
#[derive(Serialize, schemars::JsonSchema)]
struct Preview {
    id: String,
    /// The revision the preview was computed at.
    revision: u64,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<Vec<crate::domain::diff::DiffEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reach: Option<PreviewReach>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<PreviewError>,
}

/// The agents a changeset reaches and the task configurations it leaves without a usable server.
#[derive(Serialize, schemars::JsonSchema)]
struct PreviewReach {
    /// How many agents get a new configuration.
    agents: usize,
    /// A page of their ids (`agents_limit`, `agents_after`).
    agent_ids: Vec<AgentId>,
    /// The `agents_after` of the next page.
    next: Option<String>,
    lost: Vec<crate::projection::LostTask>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct PreviewError {
    code: String,
    message: String,
}

async fn preview_changeset(
    State(ctx): State<Ctx>,
    c: Consistency,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<Response, ApiError> {
    check_changeset_id(&id)?;
    let limit = q.agents_limit.unwrap_or(PREVIEW_AGENTS_DEFAULT);
    if !(1..=PREVIEW_AGENTS_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!("agents_limit must be 1 to {PREVIEW_AGENTS_MAX}")));
    }
    read_barrier(&ctx, c).await?;
    let live = ctx.machine.read();
    let cs = live.changesets.get(&id).ok_or_else(|| ApiError::not_found(format!("changeset {id} does not exist")))?;
    let body = match crate::domain::simulate(&live.state, &cs.changes, cs.created_ms) {
        Ok((after, events)) => {
            let reach = crate::projection::reach(&live.state, &after, &events);
            let page: Vec<_> = reach
                .agents
                .iter()
                .filter(|a| q.agents_after.as_deref().is_none_or(|after| a.as_str() > after))
                .take(limit + 1)
                .collect();
            let next = (page.len() > limit).then(|| page[limit - 1].to_string());
            Preview {
                id,
                revision: live.state.revision,
                valid: true,
                diff: Some(diff(&live.state, &after)),
                reach: Some(PreviewReach {
                    agents: reach.agents.len(),
                    agent_ids: page[..page.len().min(limit)].iter().map(|a| (*a).clone()).collect(),
                    next,
                    lost: reach.lost,
                }),
                error: None,
            }
        }
        Err(r) => Preview {
            id,
            revision: live.state.revision,
            valid: false,
            diff: None,
            reach: None,
            error: Some(PreviewError { code: r.code.as_str().to_string(), message: r.message }),
        },
    };
    Ok(read_response(live.state.revision, &body))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    /// Apply even though some task configurations would be left without a usable server.
    #[serde(default)]
    confirm: bool,
}

async fn apply_changeset(
    State(ctx): State<Ctx>,
    meta: WriteMeta,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ApplyQuery>,
) -> Result<Response, ApiError> {
    check_changeset_id(&id)?;
    if !q.confirm {
        // Judged on this node's applied state: a safety net for the operator, not an invariant.
        let lost = {
            let live = ctx.machine.read();
            live.changesets.get(&id).and_then(|cs| {
                let (after, events) = crate::domain::simulate(&live.state, &cs.changes, cs.created_ms).ok()?;
                Some(crate::projection::reach(&live.state, &after, &events).lost)
            })
        };
        if let Some(lost) = lost.filter(|l| !l.is_empty()) {
            let which: Vec<String> = lost.iter().map(|l| format!("{} in {}", l.task, l.cluster)).collect();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "confirmation_required",
                format!("applying leaves no usable server for task {}; apply with ?confirm=true to go ahead", which.join(", ")),
            ));
        }
    }
    let outcome = submit(&ctx, meta, CommandBody::ApplyChangeset { id }).await?;
    Ok(outcome_response(outcome, StatusCode::OK))
}

async fn discard_changeset(State(ctx): State<Ctx>, meta: WriteMeta, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    check_changeset_id(&id)?;
    let outcome = submit(&ctx, meta, CommandBody::DiscardChangeset { id }).await?;
    Ok(outcome_response(outcome, StatusCode::OK))
}

// ---- history

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    from: Option<u64>,
    to: Option<u64>,
    actor: Option<String>,
    /// `kind:name`, e.g. `server:rt1`, `task:billing`, `cluster:eu`, `agent:host7`.
    entity: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    limit: Option<usize>,
}

/// A page of the history. Each record is the JSON an export holds (see `GET
/// /v1/history/{revision}` and docs/verify_history.py for its fields and hashing).
#[derive(Serialize, schemars::JsonSchema)]
struct HistoryPage {
    /// The latest revision.
    revision: u64,
    records: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The `from` of the next page; absent on the last.
    next_from: Option<u64>,
}

async fn history(State(ctx): State<Ctx>, c: Consistency, ApiQuery(q): ApiQuery<HistoryQuery>) -> Result<Response, ApiError> {
    let entity = match &q.entity {
        None => None,
        Some(e) => {
            let (kind, name) = e.split_once(':').ok_or_else(|| ApiError::bad_request("entity must be kind:name"))?;
            if !matches!(kind, "server" | "task" | "cluster" | "agent") {
                return Err(ApiError::bad_request("entity kind must be server, task, cluster or agent"));
            }
            Some((kind.to_string(), name.to_string()))
        }
    };
    let limit = q.limit.unwrap_or(super::PAGE_DEFAULT).clamp(1, HISTORY_PAGE_MAX);
    read_barrier(&ctx, c).await?;
    let head = ctx.machine.read().state.revision;
    let from = q.from.unwrap_or(1).max(1);
    let to = q.to.unwrap_or(head).min(head);
    let reader = ctx.reader.clone();
    let scan = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut next = None;
        let mut scanned = 0u64;
        reader.records(from, |rec| {
            let revision = rec.body.revision;
            if revision > to {
                return Ok(false);
            }
            scanned += 1;
            if out.len() == limit || scanned > HISTORY_SCAN_MAX {
                next = Some(revision);
                return Ok(false);
            }
            let b = &rec.body;
            let keep = q.actor.as_ref().is_none_or(|a| &b.actor == a)
                && q.since_ms.is_none_or(|t| b.time_ms >= t)
                && q.until_ms.is_none_or(|t| b.time_ms <= t)
                && entity.as_ref().is_none_or(|(k, n)| rec.touches(k, n));
            if keep {
                out.push(rec);
            }
            Ok(true)
        })?;
        Ok::<_, roster_storage::StoreError>((out, next))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (records, next) = scan;
    let records: Vec<_> = records.iter().map(|r| object(r.to_json())).collect();
    Ok(read_response(head, &HistoryPage { revision: head, records, next_from: next }))
}

async fn history_one(State(ctx): State<Ctx>, c: Consistency, ApiPath(revision): ApiPath<u64>) -> Result<Response, ApiError> {
    // Also the record an inclusion proof is checked with: its bytes give its leaf hash.
    read_barrier(&ctx, c).await?;
    let head = ctx.machine.read().state.revision;
    let record = ctx
        .reader
        .record(revision)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .filter(|_| revision <= head)
        .ok_or_else(|| ApiError::not_found(format!("revision {revision} does not exist (latest is {head})")))?;
    Ok(read_response(head, &record.to_json()))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn rejections(State(ctx): State<Ctx>, c: Consistency, ApiQuery(q): ApiQuery<LimitQuery>) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let limit = q.limit.unwrap_or(super::PAGE_DEFAULT).clamp(1, HISTORY_PAGE_MAX);
    let list: Vec<RejectionRecord> = ctx.reader.rejections(limit).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(read_response(ctx.machine.read().state.revision, &list))
}

// ---- state, digest, diff

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RevisionQuery {
    revision: Option<u64>,
}

/// The state at `revision` (default: the latest applied).
/// Past states rebuilt at once (each folds history from the nearest checkpoint); further
/// requests wait, up to the request timeout, then get 503.
pub const PAST_STATE_REPLAYS_MAX: usize = 2;
static PAST_STATE_REPLAYS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PAST_STATE_REPLAYS_MAX);

/// Past states are audit data: a viewer (or an agent) sees only the current state.
fn check_past_state_access(ctx: &Ctx, identity: Option<&crate::auth::Identity>, revision: Option<u64>) -> Result<(), ApiError> {
    let head = ctx.machine.read().state.revision;
    let past = revision.is_some_and(|r| r != head);
    match identity {
        Some(id) if past && !crate::auth::READ_AUDIT.contains(&id.role) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{} has role {}; past states are for auditors, operators and admins", id.name, id.role),
        )),
        _ => Ok(()),
    }
}

/// The state at `revision` (the live one when `None` or the head), rebuilt from the stored
/// history for a past revision, at most [`PAST_STATE_REPLAYS_MAX`] at a time.
pub async fn state_at(ctx: &Ctx, revision: Option<u64>) -> Result<DomainState, ApiError> {
    let (head, live_state) = {
        let live = ctx.machine.read();
        (live.state.revision, revision.is_none_or(|r| r == live.state.revision).then(|| live.state.clone()))
    };
    if let Some(s) = live_state {
        return Ok(s);
    }
    let revision = revision.unwrap_or(head);
    if revision > head {
        return Err(ApiError::not_found(format!("revision {revision} does not exist (latest is {head})")));
    }
    let _replay = tokio::time::timeout(Duration::from_millis(super::REQUEST_TIMEOUT_MS), PAST_STATE_REPLAYS.acquire())
        .await
        .map_err(|_| ApiError::unavailable("too many past states are being rebuilt; retry shortly"))?
        .map_err(|_| ApiError::unavailable("the node is stopping"))?;
    let reader = ctx.reader.clone();
    tokio::task::spawn_blocking(move || fold_stored(reader.store(), revision))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map(|(s, _)| s)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The whole configuration at a revision, with its digest.
#[derive(Serialize, schemars::JsonSchema)]
struct StateView {
    revision: u64,
    /// SHA-256 of the state's canonical encoding (equal on every node at this revision).
    digest: String,
    servers: Vec<super::resources::ServerView>,
    /// Registered agents, by id.
    agents: serde_json::Map<String, serde_json::Value>,
    /// Agent clusters, by name.
    clusters: serde_json::Map<String, serde_json::Value>,
    /// Tasks with their failover lists per agent cluster, by name.
    tasks: serde_json::Map<String, serde_json::Value>,
}

fn object(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn state_json(s: &DomainState) -> StateView {
    StateView {
        revision: s.revision,
        digest: state_digest(s).to_string(),
        servers: s.servers.values().map(super::resources::ServerView::from).collect(),
        agents: object(json!(s.agents)),
        clusters: object(json!(s.clusters)),
        tasks: object(json!(s.tasks)),
    }
}

/// The state's digest at a revision.
#[derive(Serialize, schemars::JsonSchema)]
struct StateDigest {
    revision: u64,
    digest: String,
}

/// What changed between two revisions.
#[derive(Serialize, schemars::JsonSchema)]
struct DiffView {
    from: u64,
    to: u64,
    changes: Vec<crate::domain::diff::DiffEntry>,
}

async fn state(
    State(ctx): State<Ctx>,
    identity: Option<axum::Extension<crate::auth::Identity>>,
    c: Consistency,
    ApiQuery(q): ApiQuery<RevisionQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    check_past_state_access(&ctx, identity.as_deref(), q.revision)?;
    let s = state_at(&ctx, q.revision).await?;
    Ok(read_response(s.revision, &state_json(&s)))
}

async fn digest(
    State(ctx): State<Ctx>,
    identity: Option<axum::Extension<crate::auth::Identity>>,
    c: Consistency,
    ApiQuery(q): ApiQuery<RevisionQuery>,
) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    check_past_state_access(&ctx, identity.as_deref(), q.revision)?;
    let s = state_at(&ctx, q.revision).await?;
    Ok(read_response(s.revision, &StateDigest { revision: s.revision, digest: state_digest(&s).to_string() }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    from: u64,
    to: Option<u64>,
}

async fn diff_route(State(ctx): State<Ctx>, c: Consistency, ApiQuery(q): ApiQuery<DiffQuery>) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let a = state_at(&ctx, Some(q.from)).await?;
    let b = state_at(&ctx, q.to).await?;
    Ok(read_response(b.revision, &DiffView { from: a.revision, to: b.revision, changes: diff(&a, &b) }))
}

/// Records sent per chunk of an export stream.
pub const EXPORT_CHUNK_RECORDS: usize = 1000;
/// Chunks buffered between the RocksDB scan and the client (bounds memory per export).
pub const EXPORT_CHANNEL_CHUNKS: usize = 4;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// Start at this revision: a continuation export (`docs/history-format.md` section 7).
    from: Option<u64>,
}

/// The header line of a continuation export from revision `from` (> 1): the hash of revision
/// `from - 1` and its audit path in the tree of that size, which anchor the records that follow
/// to a checkpoint of size `from - 1`.
fn continuation_header(reader: &crate::reader::Reader, from: u64) -> Result<Vec<u8>, ApiError> {
    let size = from - 1;
    let last = reader.record(size).map_err(|e| ApiError::internal(e.to_string()))?.ok_or_else(|| ApiError::internal(format!("revision {size} is not stored")))?;
    let path = reader.inclusion_proof(size - 1, size).map_err(|e| ApiError::internal(e.to_string()))?;
    let path: Vec<String> = path.iter().map(crate::domain::Hash::to_string).collect();
    let mut line = serde_json::to_vec(&json!({"continues": {"tree_size": size, "last_hash": last.hash.to_string(), "audit_path": path}}))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

/// The history as JSON lines, one record (with its hashes) per line, streamed in bounded
/// memory; from `?from=R`, a continuation export whose first line anchors it to the tree of
/// `R - 1` revisions. The `X-Roster-Revision` header names the last revision included.
async fn export(State(ctx): State<Ctx>, c: Consistency, ApiQuery(q): ApiQuery<ExportQuery>) -> Result<Response, ApiError> {
    read_barrier(&ctx, c).await?;
    let head = ctx.machine.read().state.revision;
    let from = q.from.unwrap_or(1);
    if from == 0 || from > head + 1 {
        return Err(ApiError::bad_request(format!("from must be between 1 and {} (one past the latest revision), not {from}", head + 1)));
    }
    super::tree::written(&ctx, head).await?;
    let reader = ctx.reader.clone();
    let header = if from > 1 { continuation_header(&reader, from)? } else { Vec::new() };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(EXPORT_CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut chunk = header;
        let mut n = 0;
        let result = reader.records(from, |rec| {
            if rec.body.revision > head {
                return Ok(false);
            }
            serde_json::to_writer(&mut chunk, &rec.to_json()).map_err(|e| roster_storage::StoreError::Invalid(e.to_string()))?;
            chunk.push(b'\n');
            n += 1;
            if n % EXPORT_CHUNK_RECORDS == 0 {
                // The client went away: stop scanning.
                if tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                    return Ok(false);
                }
            }
            Ok(true)
        });
        let last = match result {
            Ok(()) => Ok(chunk),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let _ = tx.blocking_send(last);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/x-ndjson"));
    resp.headers_mut().insert(super::HEADER_REVISION, axum::http::HeaderValue::from(head));
    Ok(resp)
}
