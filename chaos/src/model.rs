//! What a run records: client operations, injected faults, and the final view of every node
//! and agent. The checkers read only these types, so synthetic histories can be fed to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a client operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A command with an idempotency key (retried with the same key).
    Write,
    /// A command with `X-Roster-Expected-Revision` and an idempotency key.
    CasWrite,
    /// `GET /v1/state/digest` (linearizable).
    LinRead,
    /// `GET /v1/state/digest?consistency=local`.
    LocalRead,
    /// One long poll `GET /v1/agents/{id}/config?after=R`.
    Watch,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [OpKind::Write, OpKind::CasWrite, OpKind::LinRead, OpKind::LocalRead, OpKind::Watch];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Write => "write",
            OpKind::CasWrite => "cas_write",
            OpKind::LinRead => "lin_read",
            OpKind::LocalRead => "local_read",
            OpKind::Watch => "watch",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(self, OpKind::Write | OpKind::CasWrite)
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Acknowledged (a write committed, a read answered, a watch answered 200 or 204).
    Ok,
    /// Certainly had no effect (refused connection, 4xx rejection).
    Fail,
    /// Indeterminate: the write may or may not have been applied (timeout, 503, lost answer).
    Info,
}

/// One client operation, with its real-time interval in microseconds since the run started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Op {
    pub id: u64,
    pub client: String,
    pub kind: Option<OpKind>,
    pub invoke_us: u64,
    pub complete_us: u64,
    pub status: Option<Status>,
    /// Idempotency key of a write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Expected revision of a CAS write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// The committed revision of a write, the revision a read reflects, the revision of a
    /// watch answer (None for a 204).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The state digest a read returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Watch: the agent id and the `after` revision sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Watch: the configuration delivered (clusters and tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// The node (address) that gave the final answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    pub fn kind(&self) -> OpKind {
        self.kind.unwrap_or(OpKind::Write)
    }
    pub fn status(&self) -> Status {
        self.status.unwrap_or(Status::Info)
    }
}

/// One injected fault.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultRecord {
    pub id: u64,
    pub kind: String,
    pub variant: String,
    /// Node ids (or slots) affected.
    pub targets: Vec<String>,
    pub start_us: u64,
    /// When everything the fault broke was healed.
    pub healed_us: u64,
    /// When a write succeeded again after healing (None: not within the liveness bound).
    pub recovered_us: Option<u64>,
    /// Whether the fault was actually injected (false: skipped, see note).
    pub injected: bool,
    pub note: String,
}

/// What one node reported after healing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeFinal {
    pub node: String,
    /// `/v1/state/digest?consistency=local`.
    pub revision: Option<u64>,
    pub digest: Option<String>,
    /// `/v1/history/export?consistency=local`, one record per revision.
    pub history: Vec<Value>,
    pub error: Option<String>,
    /// `/v1/history/tree-head?consistency=local`: the size and hex root of the node's Merkle
    /// tree over its history.
    #[serde(default)]
    pub tree: Option<(u64, String)>,
}

/// What one agent reported after healing (a `roster agent` process or a harness watcher).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentFinal {
    pub agent: String,
    /// The revision it deployed last.
    pub revision: Option<u64>,
    /// Its deployed configuration (clusters and tasks), when known.
    pub config: Option<Value>,
}

/// Everything the checkers look at.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Observed {
    pub ops: Vec<Op>,
    pub faults: Vec<FaultRecord>,
    pub nodes: Vec<NodeFinal>,
    pub agents: Vec<AgentFinal>,
    /// Canonical state digests by revision (from a healed node), for a sample of revisions.
    pub digests: BTreeMap<u64, String>,
    /// Canonical states by revision (as `GET /v1/state` shows them), for a sample of revisions.
    pub states: BTreeMap<u64, Value>,
    /// The revision of the last write after healing (every agent's configuration changed at it).
    pub marker_revision: Option<u64>,
    /// When the final heal finished, and when a write first succeeded after it.
    pub healed_us: Option<u64>,
    pub first_write_after_heal_us: Option<u64>,
    /// Liveness bound: a write must succeed this soon after healing.
    pub liveness_bound_us: u64,
    /// `roster audit verify` of the longest history export.
    #[serde(default)]
    pub audit: Option<AuditResult>,
}

/// What `roster audit verify` said about the exported history.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditResult {
    pub ok: bool,
    pub revision: Option<u64>,
    pub digest: Option<String>,
    pub output: String,
}

/// One broken invariant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Violation {
    /// `a` .. `g`.
    pub checker: String,
    pub message: String,
}
