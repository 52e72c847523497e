//! The command gateway: the one way a write enters Roster. The HTTP API, the prober and the
//! node's own background tasks (leader events) all submit commands here; the API only maps
//! [`SubmitError`] to HTTP answers. Below the API: this module knows nothing of HTTP.
//!
//! A command is stamped here with the accepting node's wall-clock time (a hint, see the
//! README's auditing section) and proposed through Raft; its outcome comes back decoded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roster_raft::{RaftNode, ProposeError};
use roster_storage::codec;

use crate::domain::oplog::Level;
use crate::domain::{Change, Command, CommandBody, Outcome, Rejection};

/// A write that has not committed within this long is reported as of unknown outcome (the
/// caller retries with its idempotency key).
pub const SUBMIT_TIMEOUT_MS: u64 = 10_000;

/// Who, why and under which preconditions a write is made.
#[derive(Clone, Debug, Default)]
pub struct WriteMeta {
    pub actor: String,
    pub comment: String,
    pub expected_revision: Option<u64>,
    pub idempotency_key: Option<String>,
}

/// Why a submitted command did not produce an accepted outcome. Callers branch on these.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The state machine refused the command (validation, conflict, limit).
    #[error("{}", .0.message)]
    Rejected(Rejection),
    /// Raft could not commit it (no leader, no quorum) or its outcome is unknown.
    #[error(transparent)]
    Write(#[from] ProposeError),
    /// Not committed within [`SUBMIT_TIMEOUT_MS`]: it may still be applied.
    #[error("the write was not committed in time; its outcome is unknown")]
    TimedOut,
    /// The reply could not be decoded (a programmer error between versions).
    #[error("undecodable reply: {0}")]
    Reply(String),
    /// The command uses something a member of the cluster cannot read yet (a rolling upgrade
    /// is under way, or a member did not say which build it runs).
    #[error("{0}")]
    NotYetSupported(String),
}

/// How long the gateway waits for the members' `/healthz` before a command that needs every
/// member at a given data format.
const MEMBER_FORMAT_TIMEOUT_MS: u64 = 1_000;

/// The data format every member must run before `body` may enter the log: a change a build
/// of an earlier format cannot decode would stop that member when it applies it.
fn format_needed(body: &CommandBody) -> u32 {
    let changes = match body {
        CommandBody::Apply { changes } | CommandBody::AddToChangeset { changes, .. } => changes.as_slice(),
        _ => &[],
    };
    if changes.iter().any(|c| matches!(c, Change::SetServerWeight { .. })) {
        3
    } else {
        0
    }
}

/// Refuses a command that needs data format `needed` unless every member reports it.
async fn check_members_format(node: &RaftNode, needed: u32) -> Result<(), SubmitError> {
    for (id, health) in node.members_health(Duration::from_millis(MEMBER_FORMAT_TIMEOUT_MS)).await {
        let format = health.as_ref().and_then(|h| h["data_format"].as_u64());
        match format {
            Some(f) if f >= u64::from(needed) => {}
            Some(f) => {
                return Err(SubmitError::NotYetSupported(format!(
                    "node {id} runs data format {f}; priority tiers and weights need every member at data format {needed} or later (upgrade it first)"
                )))
            }
            None => {
                return Err(SubmitError::NotYetSupported(format!(
                    "node {id} did not report its data format; priority tiers and weights need every member at data format {needed} or later (retry when it is back)"
                )))
            }
        }
    }
    Ok(())
}

/// The node's wall-clock time in ms, the time stamped into commands it accepts.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Proposes a command through Raft (forwarded to the leader from any node) and returns its
/// outcome; a rejection is an error.
pub async fn submit(node: &RaftNode, meta: WriteMeta, body: CommandBody) -> Result<Outcome, SubmitError> {
    let needed = format_needed(&body);
    if needed > 0 {
        check_members_format(node, needed).await?;
    }
    let cmd = Command {
        actor: meta.actor,
        time_ms: now_ms(),
        comment: meta.comment,
        expected_revision: meta.expected_revision,
        idempotency_key: meta.idempotency_key,
        body,
    };
    let reply = tokio::time::timeout(Duration::from_millis(SUBMIT_TIMEOUT_MS), node.write(codec::encode(&cmd)))
        .await
        .map_err(|_| SubmitError::TimedOut)??;
    match codec::decode::<Outcome>(&reply).map_err(|e| SubmitError::Reply(e.to_string()))? {
        Outcome::Rejected(r) => Err(SubmitError::Rejected(r)),
        ok => Ok(ok),
    }
}

/// Records an operational event through Raft, logging (not failing) when it cannot: an event
/// that cannot be recorded must never fail the operation it describes.
pub async fn record_event(node: &RaftNode, level: Level, kind: &str, message: String, actor: String) {
    let meta = WriteMeta { actor, ..WriteMeta::default() };
    if let Err(e) = submit(node, meta, CommandBody::RecordEvent { level, kind: kind.into(), message }).await {
        tracing::warn!(kind, "could not record event: {e}");
    }
}
