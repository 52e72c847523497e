//! `/metrics` in the Prometheus text format: Raft state, request latencies by route, log
//! append (fsync) and commit latencies, batching, and history size.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use roster_storage::metrics::{Histogram, APPLY_SECONDS, LOG_APPEND_SECONDS};

use crate::machine::MachineHandle;
use roster_raft::RaftNode;

/// What `/metrics` reads: the node, its state machine and the request histograms (extracted
/// from the API's state, so this module does not depend on the API).
#[derive(Clone)]
pub struct MetricsState {
    pub node: RaftNode,
    pub reader: crate::reader::Reader,
    pub machine: MachineHandle,
    pub http: HttpMetrics,
}

/// Status classes of the request histograms.
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Request latencies keyed by (method, route template, status class). Every route's
/// histograms are created when the router is built, so a request takes no lock and allocates
/// nothing to be measured.
#[derive(Clone, Default)]
pub struct HttpMetrics {
    routes: Arc<Mutex<BTreeMap<(&'static str, &'static str, &'static str), Arc<Histogram>>>>,
}

/// One route's histograms, one per status class.
#[derive(Clone)]
pub struct RouteMetrics([Arc<Histogram>; 4]);

impl HttpMetrics {
    /// Registers (or finds) the histograms of one route.
    pub fn route(&self, method: &'static str, route: &'static str) -> RouteMetrics {
        let mut map = self.routes.lock().expect("metrics lock");
        RouteMetrics(CLASSES.map(|class| map.entry((method, route, class)).or_default().clone()))
    }
}

impl RouteMetrics {
    /// Records one request that started at `started` and got `status`.
    pub fn observe(&self, started: Instant, status: axum::http::StatusCode) {
        let class = match status.as_u16() {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.0[class].observe(started.elapsed());
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

pub async fn render(State(ctx): State<MetricsState>) -> Response {
    let mut out = String::with_capacity(8192);
    let m = ctx.node.raft.metrics().borrow().clone();
    gauge(&mut out, "roster_raft_term", "Current Raft term.", m.current_term);
    gauge(&mut out, "roster_raft_is_leader", "1 if this node is the leader.", u8::from(m.current_leader == Some(m.id)));
    gauge(&mut out, "roster_raft_leader_id", "Id of the known leader (0: none).", m.current_leader.unwrap_or(0));
    gauge(&mut out, "roster_raft_last_log_index", "Index of the last log entry.", m.last_log_index.unwrap_or(0));
    gauge(&mut out, "roster_raft_applied_index", "Index of the last applied entry.", m.last_applied.map(|l| l.index).unwrap_or(0));
    gauge(&mut out, "roster_raft_snapshot_index", "Last index covered by the snapshot.", m.snapshot.map(|l| l.index).unwrap_or(0));
    gauge(&mut out, "roster_raft_purged_index", "Last purged log index.", m.purged.map(|l| l.index).unwrap_or(0));
    if let Some(rep) = &m.replication {
        let _ = writeln!(out, "# HELP roster_raft_follower_lag_entries Entries a follower is behind the leader's log.\n# TYPE roster_raft_follower_lag_entries gauge");
        let last = m.last_log_index.unwrap_or(0);
        for (id, matched) in rep.iter() {
            let lag = last.saturating_sub(matched.map(|l| l.index).unwrap_or(0));
            let _ = writeln!(out, "roster_raft_follower_lag_entries{{follower=\"{id}\"}} {lag}");
        }
    }
    let revision = ctx.machine.read().state.revision;
    gauge(&mut out, "roster_history_revisions", "Revisions in the history.", revision);
    gauge(&mut out, "roster_history_bytes", "Approximate bytes of the stored history.", ctx.reader.history_bytes());
    let batches = roster_raft::node::BATCHES.load(std::sync::atomic::Ordering::Relaxed);
    let commands = roster_raft::node::BATCH_COMMANDS.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "# HELP roster_proposal_batches_total Raft entries proposed by this node.\n# TYPE roster_proposal_batches_total counter\nroster_proposal_batches_total {batches}");
    let _ = writeln!(out, "# HELP roster_proposal_commands_total Commands carried in those entries.\n# TYPE roster_proposal_commands_total counter\nroster_proposal_commands_total {commands}");
    let _ = writeln!(out, "# HELP roster_raft_append_timeouts_total Appends this node sent as leader that a follower did not answer within one heartbeat interval (openraft sends them again).\n# TYPE roster_raft_append_timeouts_total counter");
    for (follower, n) in roster_raft::network::append_timeouts() {
        let _ = writeln!(out, "roster_raft_append_timeouts_total{{follower=\"{follower}\"}} {n}");
    }
    let forwards = roster_raft::node::FORWARD_REQUESTS.load(std::sync::atomic::Ordering::Relaxed);
    let forwarded = roster_raft::node::FORWARDED_COMMANDS.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(out, "# HELP roster_forward_requests_total Requests this node sent to forward writes to the leader.\n# TYPE roster_forward_requests_total counter\nroster_forward_requests_total {forwards}");
    let _ = writeln!(out, "# HELP roster_forwarded_commands_total Commands carried in those requests.\n# TYPE roster_forwarded_commands_total counter\nroster_forwarded_commands_total {forwarded}");
    for (name, help, h) in [
        ("roster_log_append_seconds", "Raft log appends, fsync included.", &LOG_APPEND_SECONDS),
        ("roster_apply_seconds", "State machine apply batches.", &APPLY_SECONDS),
        ("roster_commit_seconds", "Proposal to commit and local apply.", &roster_raft::node::COMMIT_SECONDS),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        h.render(&mut out, name, "");
    }
    let _ = writeln!(out, "# HELP roster_http_request_seconds HTTP requests by method, route and status class.\n# TYPE roster_http_request_seconds histogram");
    let routes = ctx.http.routes.lock().expect("metrics lock").clone();
    // Routes are registered up front; only those that served requests are shown.
    for ((method, route, class), h) in routes.into_iter().filter(|(_, h)| h.count() > 0) {
        h.render(&mut out, "roster_http_request_seconds", &format!("method=\"{method}\",route=\"{route}\",status=\"{class}\""));
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
