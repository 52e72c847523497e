//! The operational event log: failed connections, servers marked failed or recovered,
//! changesets applied, nodes joined or left, leader changes, agents registered. Replicated
//! through Raft (not part of the configuration history), kept up to a retention limit.

use serde::{Deserialize, Serialize};

use super::command::{RejectCode, Rejection};
use super::model::{Event, ServerStatus};

/// Event levels, ordered by severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// Most events kept when no setting says otherwise.
pub const EVENT_RETENTION_DEFAULT: u64 = 10_000;
/// Largest retention an operator may set.
pub const EVENT_RETENTION_MAX: u64 = 1_000_000;
/// Longest event message.
pub const EVENT_MESSAGE_MAX_LEN: usize = 1024;
/// An event kind is 1 to this many of a-z and '_'.
pub const EVENT_KIND_MAX_LEN: usize = 64;

/// Whether an event with this kind and message may be recorded.
pub fn check_event(kind: &str, message: &str) -> Result<(), Rejection> {
    let valid_kind = !kind.is_empty() && kind.len() <= EVENT_KIND_MAX_LEN && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if !valid_kind {
        return Err(Rejection::new(RejectCode::Invalid, format!("event kind must be 1 to {EVENT_KIND_MAX_LEN} of a-z and '_'")));
    }
    if message.len() > EVENT_MESSAGE_MAX_LEN {
        return Err(Rejection::new(RejectCode::Invalid, format!("event message longer than {EVENT_MESSAGE_MAX_LEN} bytes")));
    }
    Ok(())
}

/// Whether these settings may be set.
pub fn check_settings(settings: &EventSettings) -> Result<(), Rejection> {
    if settings.retention == 0 || settings.retention > EVENT_RETENTION_MAX {
        return Err(Rejection::new(RejectCode::Invalid, format!("retention must be 1 to {EVENT_RETENTION_MAX} events")));
    }
    Ok(())
}

/// Which events are kept and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Events below this level are not recorded.
    pub min_level: Level,
    /// Number of most recent events kept.
    pub retention: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { min_level: Level::Info, retention: EVENT_RETENTION_DEFAULT }
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OpEvent {
    pub seq: u64,
    pub time_ms: u64,
    pub level: Level,
    /// A stable kind, e.g. `server_failed`, `changeset_applied`, `leader_elected`.
    pub kind: String,
    pub message: String,
    pub actor: String,
    /// The configuration revision when it was recorded.
    pub revision: u64,
}

/// Events implied by a committed revision's configuration events (deterministic).
pub fn implied_by(events: &[Event], changeset: Option<&str>, revision: u64) -> Vec<(Level, &'static str, String)> {
    let mut out = Vec::new();
    for e in events {
        match e {
            Event::ServerStatusChanged { name, status: ServerStatus::Failed } => {
                out.push((Level::Error, "server_failed", format!("server {name} marked failed")))
            }
            Event::ServerStatusChanged { name, status: ServerStatus::Enabled } => {
                out.push((Level::Info, "server_enabled", format!("server {name} enabled")))
            }
            Event::AgentRegistered { id, .. } => out.push((Level::Info, "agent_registered", format!("agent {id} registered"))),
            Event::AgentRemoved { id } => out.push((Level::Info, "agent_removed", format!("agent {id} removed"))),
            _ => {}
        }
    }
    if let Some(cs) = changeset {
        out.push((Level::Info, "changeset_applied", format!("changeset {cs} applied as revision {revision}")));
    }
    out
}
