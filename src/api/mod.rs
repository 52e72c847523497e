//! The HTTP API (axum): routes under `/v1`, health endpoints, and the Raft RPC routes.
//!
//! Handlers turn requests into domain [`Command`]s and submit them through Raft, or read the
//! live state after a linearizable barrier. DTOs for this transport live in the handler
//! modules; the domain types they convert to live in [`crate::domain`].

mod agent_reports;
mod agents;
mod audit;
mod backup;
mod cluster;
pub mod error;
pub mod events;
pub mod openapi;
mod read;
mod resources;
mod router;
mod tokens;
mod tree;
mod write;

use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use roster_raft::{RaftNode, Transport};

pub use agents::{AgentTracker, WATCHES_PER_NODE_MAX};
pub use error::{ApiError, ApiJson, ApiPath, ApiQuery};

use crate::auth::{Access, Auth};
use crate::machine::MachineHandle;

/// Largest request body accepted by the public API.
pub const BODY_MAX_BYTES: usize = 1 << 20;
/// Items in a page of a list (history, events) when the request names no `limit`.
pub const PAGE_DEFAULT: usize = 100;
/// Once a request's head is accepted, its whole body must arrive within this long (408
/// otherwise): a client trickling bytes cannot hold a buffer and a connection forever.
pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// Request body bytes buffered at once across every connection; a body that does not fit
/// gets 503 (retry), so many large uploads cannot exhaust memory.
pub const BODY_BUFFER_TOTAL_MAX_BYTES: usize = 64 << 20;
/// An answer given from the head alone (401, 403, 404, 405) first drains what the client is
/// still sending, for at most this long and `BODY_MAX_BYTES`, without buffering it, so an
/// honest client sees the answer rather than a reset connection.
pub const BODY_DRAIN_MAX_MS: u64 = 1_000;
/// A write or linearizable read that cannot finish in this time gets a 503.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

pub const HEADER_ACTOR: &str = "x-roster-actor";
pub const HEADER_COMMENT: &str = "x-roster-comment";
pub const HEADER_EXPECTED_REVISION: &str = "x-roster-expected-revision";
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on every read: the revision the answer reflects.
pub const HEADER_REVISION: &str = "x-roster-revision";
/// On a list page with more after it: the `after` of the next page.
pub const HEADER_NEXT: &str = "x-roster-next";

/// What every handler can reach.
#[derive(Clone)]
pub struct Ctx {
    pub node: RaftNode,
    /// Typed reads of the stored history, rejections and events (never `node.store`).
    pub reader: crate::reader::Reader,
    pub machine: MachineHandle,
    pub http_metrics: crate::metrics::HttpMetrics,
    pub agents: agents::AgentTracker,
    pub auth: Auth,
    /// How this node reaches its peers (scheme, CA, cluster secret).
    pub transport: Transport,
    /// Pooled client for calls to peers, built from `transport`.
    pub peer_http: reqwest::Client,
    /// Signs history checkpoints; `None` when the node has no history key.
    pub history_key: Option<std::sync::Arc<crate::domain::checkpoint::HistoryKey>>,
    /// This node's `--leader-priority` (reported by `/healthz`).
    pub leader_priority: Option<u32>,
    /// This node was started with `--learner` (reported by `/healthz`).
    pub learner: bool,
    /// An agent no node has heard from for this long (and holding no watch) is `stale`.
    pub agent_stale_after_ms: u64,
    /// How many agents' failure reports mark a server failed.
    pub failure_policy: agent_reports::FailurePolicy,
}

impl axum::extract::FromRef<Ctx> for crate::metrics::MetricsState {
    fn from_ref(ctx: &Ctx) -> Self {
        Self { node: ctx.node.clone(), reader: ctx.reader.clone(), machine: ctx.machine.clone(), http: ctx.http_metrics.clone() }
    }
}

/// One route of the API with the access rule it is declared with.
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<Ctx>,
    /// Adds the handler's parameters and body to its OpenAPI operation.
    describe: fn(&mut openapi::OpBuilder<'_>),
    /// The JSON Schema of the body a success answers with (see [`RouteSpec::returns`]).
    returns: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
}

impl RouteSpec {
    /// Declares the type of the JSON body the route answers with on success, for the OpenAPI
    /// document. Schemathesis checks every answer against it (`response_schema_conformance`).
    pub fn returns<T: schemars::JsonSchema>(mut self) -> Self {
        self.returns = Some(|g| g.subschema_for::<T>());
        self
    }

    /// A write route: it answers with the [`Outcome`](crate::domain::Outcome) of its command.
    pub fn writes(self) -> Self {
        self.returns::<crate::domain::Outcome>()
    }
}

/// Declares a route: method, path template, access rule and handler.
pub fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> RouteSpec
where
    H: axum::handler::Handler<T, Ctx>,
    T: openapi::Describe + 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
    RouteSpec { method, path, access, handler: axum::routing::on(filter, handler), describe: <T as openapi::Describe>::describe, returns: None }
}

/// Every route of the public API with its access rule; the router is built from this table,
/// so no route exists without a rule. (The Raft routes check the cluster secret themselves.)
pub fn route_table() -> Vec<RouteSpec> {
    let mut v = vec![
        route(Method::GET, "/metrics", Access::Metrics, crate::metrics::render),
    ];
    v.extend(read::routes());
    v.extend(cluster::routes());
    v.extend(resources::routes());
    v.extend(audit::routes());
    v.extend(tree::routes());
    v.extend(backup::routes());
    v.extend(agents::routes());
    v.extend(events::routes());
    v.extend(tokens::routes());
    v
}


/// Method, path template and access rule of every route in [`route_table`].
pub fn route_rules() -> Vec<(Method, &'static str, Access)> {
    route_table().into_iter().map(|r| (r.method, r.path, r.access)).collect()
}

pub use agent_reports::{FailurePolicy, FAIL_AFTER_REPORTS_DEFAULT, FAIL_REPORT_WINDOW_SECS_DEFAULT};
pub use agents::{agent_rows, forget_stale_agents, AGENT_STALE_AFTER_SECS_DEFAULT};
pub use audit::state_at;
pub use cluster::{add_node_as, cluster_status, cluster_status_asked, remove_node_as, transfer_leader_as, ClusterStatus, MemberStatus};
pub use read::Health;
pub use read::{read_barrier, read_response, Consistency};
pub use router::{refuse_body_above, router};
pub use write::{outcome_response, submit, submit_error, write_error, WriteMeta};
