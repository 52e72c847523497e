//! Failure reports from agents (`POST /v1/agents/{id}/failures`): checked against the
//! reporting agent's own configuration, rate-limited, recorded as `connection_failed` events,
//! and turned into a `failed` server once the policy's count of distinct agents is reached.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::agents::{now_ms, require_registered, ReportAdmission, FAILURE_REPORTS_PER_AGENT_PER_MINUTE};
use super::{submit, ApiError, ApiJson, ApiPath, Ctx, WriteMeta};
use crate::domain::{AgentId, Change, CommandBody, Outcome, ServerName, TaskName};
use crate::projection::project;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FailureReport {
    task: TaskName,
    server: ServerName,
}

/// The answer to a failure report: whether it marked the server failed (at `revision`), or
/// why not.
#[derive(Default, serde::Serialize, schemars::JsonSchema)]
pub struct FailureAnswer {
    marked_failed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The distinct agents that reported the server within the window, when more are needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    reporters: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
}

impl FailureAnswer {
    fn reason(why: impl Into<String>) -> Self {
        Self { reason: Some(why.into()), ..Self::default() }
    }

    fn not_marked(why: impl Into<String>) -> Response {
        Json(Self::reason(why)).into_response()
    }
}

/// A failure report is accepted only for a server in the reporting agent's own configuration
/// of that task (as the cluster deploys it), checked on state at least as new as the leader's
/// commit; reports are rate-limited and de-duplicated per agent, and a report that changes
/// nothing (the server is already failed or disabled) writes nothing.
pub(super) async fn report_failure(State(ctx): State<Ctx>, ApiPath(id): ApiPath<String>, ApiJson(r): ApiJson<FailureReport>) -> Result<Response, ApiError> {
    let id = AgentId::new(id)?;
    require_registered(&ctx, &id)?;
    ctx.agents.touch(&id, ctx.node.id, None);
    super::read_barrier(&ctx, super::Consistency::Linearizable).await?;
    let status = {
        let live = ctx.machine.read();
        let config = project(&live.state, &id);
        let task = config.tasks.get(&r.task).ok_or_else(|| {
            ApiError::not_found(format!("task {} is not in agent {id}'s configuration", r.task))
        })?;
        let server = task.servers.iter().find(|s| s.name == r.server).ok_or_else(|| {
            ApiError::not_found(format!("server {} is not in the failover list of task {} for agent {id}", r.server, r.task))
        })?;
        server.status
    };
    if status != crate::domain::ServerStatus::Enabled {
        return Ok(FailureAnswer::not_marked(format!("server {} is already {}", r.server, status.as_str())));
    }
    match ctx.agents.admit_report(&id, &r.task, &r.server) {
        ReportAdmission::Admit => {}
        ReportAdmission::Repeat => {
            return Ok(FailureAnswer::not_marked("already reported moments ago"));
        }
        ReportAdmission::RateLimited => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("agent {id} sent more than {FAILURE_REPORTS_PER_AGENT_PER_MINUTE} failure reports in a minute"),
            ));
        }
    }
    let msg = report_message(&id, &r.server, &r.task);
    super::events::record(&ctx, crate::domain::oplog::Level::Warning, "connection_failed", msg, format!("agent:{id}")).await;
    let policy = ctx.failure_policy;
    if policy.reports > 1 {
        if ctx.machine.read().event_settings.min_level > crate::domain::oplog::Level::Warning {
            return Ok(FailureAnswer::not_marked(
                "reports are not recorded (the event log's minimum level is above warning), so --fail-after-reports cannot count them",
            ));
        }
        // Every report committed so far, from any node, is in the replicated event log.
        super::read_barrier(&ctx, super::Consistency::Linearizable).await?;
        let reporters = recent_reports(&ctx, policy.window_ms).await?.remove(&r.server).unwrap_or_default();
        if reporters.len() < policy.reports {
            let reason = format!(
                "{} of the {} distinct agents needed reported server {} within {} s",
                reporters.len(),
                policy.reports,
                r.server,
                policy.window_ms / 1000
            );
            return Ok(Json(FailureAnswer { reporters: Some(reporters), ..FailureAnswer::reason(reason) }).into_response());
        }
    }
    let meta = WriteMeta {
        actor: format!("agent:{id}"),
        comment: format!("connection failure reported for task {}", r.task),
        expected_revision: None,
        idempotency_key: None,
    };
    let change = Change::MarkServerFailed { name: r.server.clone() };
    match submit(&ctx, meta, CommandBody::Apply { changes: vec![change] }).await {
        Ok(Outcome::RevisionSealed { revision }) => {
            Ok(Json(FailureAnswer { marked_failed: true, revision: Some(revision), ..FailureAnswer::default() }).into_response())
        }
        Ok(other) => Ok(Json(FailureAnswer { outcome: Some(other), ..FailureAnswer::default() }).into_response()),
        // Changed meanwhile (failed or disabled by someone else): nothing to do, but say why.
        Err(e) if e.status != StatusCode::SERVICE_UNAVAILABLE => {
            Ok(FailureAnswer::not_marked(e.message))
        }
        Err(e) => Err(e),
    }
}

/// When a server becomes `failed` cluster-wide: after reports from `reports` distinct agents
/// within `window_ms` (`--fail-after-reports`, `--fail-report-window-secs`).
#[derive(Clone, Copy, Debug)]
pub struct FailurePolicy {
    pub reports: usize,
    pub window_ms: u64,
}

/// Defaults: one report marks the server failed (the seed's behaviour); a 5-minute window.
pub const FAIL_AFTER_REPORTS_DEFAULT: usize = 1;
pub const FAIL_REPORT_WINDOW_SECS_DEFAULT: u64 = 300;

impl Default for FailurePolicy {
    fn default() -> Self {
        Self { reports: FAIL_AFTER_REPORTS_DEFAULT, window_ms: FAIL_REPORT_WINDOW_SECS_DEFAULT * 1000 }
    }
}

const REPORT_PREFIX: &str = "could not use server ";

/// The event message of a report (its actor is the agent).
fn report_message(agent: &AgentId, server: &ServerName, task: &TaskName) -> String {
    format!("agent {agent} {REPORT_PREFIX}{server} for task {task}")
}

/// Failure reports in the event log within the last `window_ms`: server → reporting agents.
pub(super) async fn recent_reports(ctx: &Ctx, window_ms: u64) -> Result<BTreeMap<ServerName, BTreeSet<String>>, ApiError> {
    let since = now_ms().saturating_sub(window_ms);
    let reader = ctx.reader.clone();
    let events = tokio::task::spawn_blocking(move || reader.events_since(since, |e| e.kind == "connection_failed"))
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out: BTreeMap<ServerName, BTreeSet<String>> = BTreeMap::new();
    for e in events {
        let server = e.message.split_once(REPORT_PREFIX).and_then(|(_, rest)| rest.split(' ').next()).and_then(|s| ServerName::new(s).ok());
        if let (Some(server), Some(agent)) = (server, e.actor.strip_prefix("agent:")) {
            out.entry(server).or_default().insert(agent.to_string());
        }
    }
    Ok(out)
}

