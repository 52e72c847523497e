//! Wiring one node: storage, Raft, state machine and the HTTP listener, with an injectable
//! shutdown so tests and `roster dev` control its lifetime.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use std::sync::Arc;

use roster_raft::{NodeConfig, RaftNode, Transport};
use tokio::net::TcpListener;

use crate::api::{self, Ctx};
use crate::machine::{MachineHandle, RosterMachine};

mod h1;
mod listener;
pub(crate) use listener::serve_http;

/// Most HTTP connections one node serves at once (agents hold one each).
pub const HTTP_CONNECTIONS_MAX: usize = 60_000;
/// Most connections on the peer listener (`--peer-listen`): a few per peer suffice.
pub const PEER_CONNECTIONS_MAX: usize = 256;
/// Largest buffered request head or body chunk per connection.
pub const HTTP_BUFFER_MAX_BYTES: usize = 64 * 1024;
/// Default time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// How long [`Running::stop`] waits for the database to close.
pub const DB_CLOSE_TIMEOUT_MS: u64 = 10_000;

/// What `roster serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub node_id: u64,
    pub listen: SocketAddr,
    /// Address peers and clients use for this node; defaults to `listen`.
    pub advertise: Option<String>,
    pub data_dir: PathBuf,
    /// The initial cluster (`id → address`); empty means a single-node cluster of this node.
    pub peers: BTreeMap<u64, String>,
    /// Build a snapshot (and compact the log) after this many applied log entries.
    pub snapshot_every_logs: u64,
    /// Log entries kept behind the snapshot, so slightly lagging followers need no snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Start without bootstrapping: the node waits to be added to an existing cluster.
    pub join: bool,
    /// Automatic recovery of failed servers by probing (off when `None`).
    pub probe: Option<crate::prober::ProbeConfig>,
    /// Time a client has to send a request's headers.
    pub header_read_timeout_ms: u64,
    /// Time a node being added has to catch up before it may become a voter.
    pub learner_catch_up_ms: u64,
    /// TLS and authentication; `None` is the explicitly insecure mode (plain HTTP, no tokens).
    pub security: Option<Security>,
    /// The history signing key file (checkpoints are unsigned without one).
    pub history_key: Option<PathBuf>,
    /// How often the leader sends heartbeats.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing from the leader for a random time in this range starts
    /// an election (and, up to the maximum, refuses to vote for anyone else: the leader lease).
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// `--leader-priority`: leadership moves to the most preferred caught-up voter (lower
    /// first; `None`: never preferred). See [`crate::preferred`].
    pub leader_priority: Option<u32>,
    /// `--learner`: this node is to stay a learner (it says so on `/healthz`).
    pub learner: bool,
    /// `--agent-stale-after-secs`, in ms.
    pub agent_stale_after_ms: u64,
    /// `--watches-max`: most agent watches held at once.
    pub watches_max: usize,
    /// `--forget-agents-after-secs`, in ms: the leader removes agents unseen this long.
    pub forget_agents_after_ms: Option<u64>,
    /// `--fail-after-reports` and `--fail-report-window-secs`.
    pub failure_policy: crate::api::FailurePolicy,
    /// A separate listener for node-to-node traffic (Raft, forwarded writes), with its own
    /// connection budget, so client load on `listen` cannot starve consensus. With it, member
    /// addresses (`--peers`, `cluster add-node`) are peer addresses and `listen` serves only
    /// the client API.
    pub peer_listen: Option<SocketAddr>,
    /// The peer address other nodes use (default: `peer_listen`).
    pub peer_advertise: Option<String>,
}

/// Files for TLS (API and node-to-node), API tokens and the cluster secret.
#[derive(Clone, Debug)]
pub struct Security {
    /// This node's certificate chain and key (PEM).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The CA that peers' certificates are checked against (PEM).
    pub tls_ca: PathBuf,
    /// Token file: `NAME ROLE SHA256` lines.
    pub tokens: PathBuf,
    /// The secret every node presents to its peers.
    pub cluster_secret: PathBuf,
    /// Serve `/metrics` without a token.
    pub metrics_public: bool,
}

impl Security {
    /// The standard file names inside a directory made by `roster secure init`.
    pub fn from_dir(dir: &std::path::Path) -> Self {
        use crate::tls::*;
        Self {
            tls_cert: dir.join(NODE_CERT),
            tls_key: dir.join(NODE_KEY),
            tls_ca: dir.join(CA_CERT),
            tokens: dir.join(TOKENS),
            cluster_secret: dir.join(CLUSTER_SECRET),
            metrics_public: false,
        }
    }
}

/// Default failure detection: heartbeats every 100 ms; a follower keeps the leader lease for
/// 600 ms after it last heard from the leader and starts an election 300 to 600 ms after
/// that, so a dead leader is replaced 0.9 to 1.2 s after its last heartbeat, and a leader
/// transfer waits one lease (600 ms).
///
/// openraft 0.9 also gives every append to a follower one heartbeat interval to answer before
/// it abandons it and sends it again. With 50 ms, a follower's fsync or scheduling hiccup on a
/// busy machine cut appends off by the hundred, and under a saturating write load the
/// followers started an election every few minutes (about 600,000 revisions into `bench write
/// --workload add` in every run); with 100 ms and these timeouts, none did.
pub const HEARTBEAT_MS_DEFAULT: u64 = 100;
pub const ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 300;
pub const ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 600;
/// The election timeout must cover at least this many heartbeat intervals, so a few lost or
/// late heartbeats never start an election.
pub const ELECTION_HEARTBEATS_MIN: u64 = 3;

/// Checks the failure-detection settings; the error says which rule a value breaks.
pub fn check_failure_detection(heartbeat_ms: u64, min_ms: u64, max_ms: u64) -> Result<(), String> {
    if !(10..=10_000).contains(&heartbeat_ms) {
        return Err(format!("--heartbeat-ms must be between 10 and 10000, not {heartbeat_ms}"));
    }
    if min_ms < ELECTION_HEARTBEATS_MIN * heartbeat_ms {
        return Err(format!(
            "--election-timeout-min-ms ({min_ms}) must be at least {ELECTION_HEARTBEATS_MIN} heartbeats ({} ms with --heartbeat-ms {heartbeat_ms}), or a few lost heartbeats start an election",
            ELECTION_HEARTBEATS_MIN * heartbeat_ms
        ));
    }
    if max_ms <= min_ms {
        return Err(format!("--election-timeout-max-ms ({max_ms}) must be above --election-timeout-min-ms ({min_ms}): the random spread keeps nodes from standing for election together"));
    }
    if max_ms > 60_000 {
        return Err(format!("--election-timeout-max-ms must be at most 60000, not {max_ms}"));
    }
    Ok(())
}

/// Default snapshot policy: a snapshot every this many log entries.
pub const SNAPSHOT_EVERY_LOGS_DEFAULT: u64 = 10_000;
/// Default number of log entries kept behind a snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT: u64 = 1_000;

impl ServeConfig {
    /// A config with default policies.
    pub fn new(node_id: u64, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            node_id,
            listen,
            advertise: None,
            data_dir,
            peers: BTreeMap::new(),
            snapshot_every_logs: SNAPSHOT_EVERY_LOGS_DEFAULT,
            logs_kept_after_snapshot: LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT,
            join: false,
            probe: None,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS_DEFAULT,
            learner_catch_up_ms: roster_raft::node::LEARNER_CATCH_UP_MS,
            peer_listen: None,
            peer_advertise: None,
            security: None,
            history_key: None,
            heartbeat_ms: HEARTBEAT_MS_DEFAULT,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            leader_priority: None,
            learner: false,
            agent_stale_after_ms: crate::api::AGENT_STALE_AFTER_SECS_DEFAULT * 1000,
            forget_agents_after_ms: None,
            watches_max: crate::api::WATCHES_PER_NODE_MAX,
            failure_policy: Default::default(),
        }
    }
}

/// File descriptors kept aside from client connections (RocksDB files, peers, logs).
pub const FDS_RESERVED_MIN: usize = 64;

/// The connection cap: `HTTP_CONNECTIONS_MAX` (or `watches_max` plus that much more, for a node
/// told to hold more watches), or less if the process's file limit is lower (after raising the
/// soft limit to the hard one), keeping `FDS_RESERVED_MIN` (or a quarter) of the descriptors
/// for everything else. A cap above the real limit would let a connection flood starve the
/// node of descriptors (`accept: Too many open files`, failed RocksDB opens).
/// The file limit under which [`connection_cap`] allows `connections` (the inverse of its
/// reservation of a quarter of the limit).
pub fn file_limit_for_connections(connections: u64) -> u64 {
    (connections * 4).div_ceil(3).max(connections + FDS_RESERVED_MIN as u64)
}

pub fn connection_cap(watches_max: usize) -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024usize.saturating_sub(FDS_RESERVED_MIN);
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    let soft = (limit.rlim_cur as u64).min(1 << 24) as usize;
    connections_under(soft).clamp(16, HTTP_CONNECTIONS_MAX.max(watches_max.saturating_add(HTTP_CONNECTIONS_MAX / 6)))
}

/// Connections a file limit of `soft` leaves, after a quarter (at least `FDS_RESERVED_MIN`)
/// is kept for everything else.
fn connections_under(soft: usize) -> usize {
    soft.saturating_sub((soft / 4).max(FDS_RESERVED_MIN))
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
pub fn parse_peers(spec: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').with_context(|| format!("peer {part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.parse().with_context(|| format!("peer id {id:?} is not a number"))?;
        anyhow::ensure!(id > 0, "node ids start at 1");
        anyhow::ensure!(addr.contains(':'), "peer address {addr:?} needs a port");
        anyhow::ensure!(out.insert(id, addr.to_string()).is_none(), "node id {id} appears twice in --peers");
    }
    Ok(out)
}

/// A node started in this process.
pub struct Running {
    pub addr: SocketAddr,
    /// The peer listener's address, with `--peer-listen`.
    pub peer_addr: Option<SocketAddr>,
    pub node: RaftNode,
    pub machine: MachineHandle,
    stop: tokio::sync::oneshot::Sender<()>,
    agents: crate::api::AgentTracker,
    server: tokio::task::JoinHandle<()>,
    peer: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    leader_events: tokio::task::JoinHandle<()>,
    preferred: tokio::task::JoinHandle<()>,
    forgetting: Option<tokio::task::JoinHandle<()>>,
    prober: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops serving, shuts Raft down and waits until the database is closed.
    pub async fn stop(self) {
        // Held agent watches would keep their connections open until they time out.
        self.agents.close_watches();
        let _ = self.stop.send(());
        let _ = self.server.await;
        if let Some((stop, task)) = self.peer {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.leader_events.abort();
        self.preferred.abort();
        if let Some(f) = &self.forgetting {
            f.abort();
        }
        if let Some(p) = &self.prober {
            p.abort();
        }
        self.node.shutdown().await;
        // A graceful stop leaves no WAL to replay, so the next start is quick.
        if let Err(e) = self.node.store.flush() {
            tracing::warn!("flushing on shutdown: {e}");
        }
        let closed = self.node.store.closed_signal();
        drop(self.node);
        // Raft's storage tasks release their handles shortly after shutdown returns; the
        // data dir can be reopened only once every handle is gone.
        let deadline = std::time::Instant::now() + Duration::from_millis(DB_CLOSE_TIMEOUT_MS);
        while !closed.is_closed() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !closed.is_closed() {
            tracing::warn!("the database was still open {DB_CLOSE_TIMEOUT_MS} ms after shutdown");
        }
    }
}

/// Starts a node and returns once it listens.
pub async fn start(config: ServeConfig) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let peer_listener = match config.peer_listen {
        Some(p) => Some(TcpListener::bind(p).await.with_context(|| format!("binding the peer listener {p}"))?),
        None => None,
    };
    let peer_addr = peer_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    // The address in the membership: where peers reach this node's Raft routes.
    let advertise = match peer_addr {
        Some(p) => config.peer_advertise.clone().unwrap_or_else(|| p.to_string()),
        None => config.advertise.clone().unwrap_or_else(|| addr.to_string()),
    };
    let mut members = config.peers.clone();
    if config.join {
        anyhow::ensure!(members.is_empty(), "--join and --peers exclude each other");
    } else {
        if members.is_empty() {
            members.insert(config.node_id, advertise.clone());
        }
        anyhow::ensure!(
            members.contains_key(&config.node_id),
            "--peers does not list this node's id {}",
            config.node_id
        );
    }
    // Read every security file before anything starts, so a bad file is a clear start error.
    let (transport, cluster_secret, acceptor, file_tokens) = match &config.security {
        None => (Transport::insecure(), None, None, Vec::new()),
        Some(s) => {
            for secret_file in [&s.tls_key, &s.cluster_secret, &s.tokens] {
                crate::tls::check_private_file(secret_file)?;
            }
            let ca = std::fs::read(&s.tls_ca).with_context(|| format!("reading the CA file {}", s.tls_ca.display()))?;
            let secret = crate::tls::read_secret(&s.cluster_secret)?;
            let transport = Transport { ca_pem: Some(Arc::new(ca)), bearer: Some(Arc::from(secret.as_str())) };
            let _ = transport.client_builder()?;
            let acceptor = crate::tls::acceptor(&s.tls_cert, &s.tls_key)?;
            let tokens = crate::auth::load_token_file(&s.tokens)?;
            (transport, Some(secret), Some(acceptor), tokens)
        }
    };
    check_failure_detection(config.heartbeat_ms, config.election_timeout_min_ms, config.election_timeout_max_ms).map_err(anyhow::Error::msg)?;
    let history_key = match &config.history_key {
        Some(path) => Some(Arc::new(crate::tls::read_history_key(path)?)),
        None => {
            tracing::warn!("no history key (--history-key, or history-key in --secure-dir): checkpoints are served unsigned; make one with `roster history-key-new DIR`");
            None
        }
    };
    let (machine, handle) = RosterMachine::new();
    let node = RaftNode::start(
        NodeConfig {
            node_id: config.node_id,
            advertise_addr: advertise,
            data_dir: config.data_dir.clone(),
            initial_members: members,
            raft: openraft::Config {
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every_logs),
                max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
                heartbeat_interval: config.heartbeat_ms,
                election_timeout_min: config.election_timeout_min_ms,
                election_timeout_max: config.election_timeout_max_ms,
                ..NodeConfig::default_raft_config()
            },
            transport: transport.clone(),
            cluster_secret: cluster_secret.clone(),
            learner_catch_up_ms: config.learner_catch_up_ms,
        },
        machine,
    )
    .await?;
    let auth = match (&config.security, cluster_secret) {
        (Some(s), Some(secret)) => crate::auth::Auth::enabled(handle.clone(), file_tokens, secret, s.metrics_public),
        _ => crate::auth::Auth::disabled(handle.clone()),
    };
    let peer_http = roster_raft::network::peer_client(&transport)?;
    let ctx = Ctx {
        reader: crate::reader::Reader::new(node.store.clone()),
        node: node.clone(),
        machine: handle.clone(),
        http_metrics: Default::default(),
        agents: crate::api::AgentTracker::with_watches_max(config.watches_max),
        auth,
        transport,
        peer_http,
        history_key,
        leader_priority: config.leader_priority,
        learner: config.learner,
        agent_stale_after_ms: config.agent_stale_after_ms,
        failure_policy: config.failure_policy,
    };
    // With a peer listener, the client port serves no Raft routes at all.
    let router = api::router(ctx.clone(), peer_listener.is_none());
    let peer_router = peer_listener.as_ref().map(|_| api::router(ctx.clone(), true));
    let leader_events = tokio::spawn(record_leader_changes(ctx.clone()));
    let preferred = tokio::spawn(crate::preferred::run(ctx.clone(), config.leader_priority));
    let forgetting = config.forget_agents_after_ms.map(|ms| tokio::spawn(crate::api::forget_stale_agents(ctx.clone(), ms)));
    if let Some(note) = handle.take_upgrade_note() {
        tokio::spawn(record_upgrade(ctx.clone(), note));
    }
    let agents = ctx.agents.clone();
    let prober = config.probe.map(|p| tokio::spawn(crate::prober::run(ctx.node.clone(), ctx.machine.clone(), p)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let header_read_timeout = Duration::from_millis(config.header_read_timeout_ms);
    let peer_budget = if peer_listener.is_some() { PEER_CONNECTIONS_MAX } else { 0 };
    let connections_max = connection_cap(config.watches_max).saturating_sub(peer_budget).max(16);
    tracing::info!(connections_max, peer_listen = ?peer_addr, "serving HTTP");
    let peer = match (peer_listener, peer_router) {
        (Some(l), Some(r)) => {
            let (peer_stop, peer_stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve_http(l, r, acceptor.clone(), header_read_timeout, PEER_CONNECTIONS_MAX, peer_stopped));
            Some((peer_stop, task))
        }
        _ => None,
    };
    let server = tokio::spawn(serve_http(listener, router, acceptor, header_read_timeout, connections_max, stopped));
    Ok(Running { addr, peer_addr, node, machine: handle, stop, agents, server, peer, leader_events, preferred, forgetting, prober })
}

/// Records a `leader_elected` event each time this node becomes leader (in a new term).
async fn record_leader_changes(ctx: Ctx) {
    let mut metrics = ctx.node.raft.metrics();
    let mut recorded_term = None;
    loop {
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        if leader == Some(ctx.node.id) && recorded_term != Some(term) {
            recorded_term = Some(term);
            let msg = format!("node {} became the leader in term {term}", ctx.node.id);
            crate::commands::record_event(&ctx.node, crate::domain::oplog::Level::Info, "leader_elected", msg, format!("node:{}", ctx.node.id)).await;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Attempts to record a data dir upgrade in the event log.
const UPGRADE_EVENT_TRIES: u32 = 60;

/// Records in the replicated event log that this node upgraded its data dir, once a leader
/// can commit it (bounded: gives up after [`UPGRADE_EVENT_TRIES`] seconds, the log line stays).
async fn record_upgrade(ctx: Ctx, note: String) {
    let message = format!("node {}: {note}", ctx.node.id);
    for _ in 0..UPGRADE_EVENT_TRIES {
        if ctx.node.raft.metrics().borrow().current_leader.is_some() {
            let meta = crate::api::WriteMeta { actor: format!("node:{}", ctx.node.id), ..Default::default() };
            let body = crate::domain::CommandBody::RecordEvent { level: crate::domain::oplog::Level::Info, kind: "data_upgraded".into(), message: message.clone() };
            if crate::commands::submit(&ctx.node, meta, body).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::warn!("could not record the data dir upgrade in the event log: {message}");
}

/// Completes with the reason when this node's Raft core stops on a fatal error (a storage
/// failure, a panic in the core); never completes while it runs.
pub async fn raft_stopped(node: &RaftNode) -> String {
    let mut metrics = node.raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            return "the Raft core has ended".into();
        }
    }
}

/// Runs a node until `shutdown` completes. Fails (so the process exits non-zero) when the
/// node's Raft core stops: a node without consensus must not keep serving reads and
/// `/readyz` as if it were healthy; a supervisor restarts it, and start-up either finishes
/// what a crash interrupted or refuses with an error that says what is wrong.
pub async fn run(config: ServeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let running = start(config).await?;
    tracing::info!(addr = %running.addr, "roster node serving");
    let node = running.node.clone();
    let serve = async {
        if node.wait_for_leader(Duration::from_secs(10)).await.is_none() {
            tracing::warn!("no leader known yet; waiting for peers (or, with --join, to be added)");
        }
        shutdown.await;
    };
    let fatal = tokio::select! {
        _ = serve => None,
        reason = raft_stopped(&node) => Some(reason),
    };
    drop(node);
    match fatal {
        None => {
            tracing::info!("shutting down");
            // While this node still serves its Raft routes: the target's vote request must
            // reach it. The preferred-leader loop must not move the leadership back meanwhile.
            running.preferred.abort();
            running.node.hand_off_before_stop().await;
            running.stop().await;
            Ok(())
        }
        Some(reason) => {
            tracing::error!("the Raft core stopped: {reason}; stopping this node");
            running.stop().await;
            anyhow::bail!("the Raft core stopped: {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_limit_for_connections_leaves_them_all() {
        for n in [1u64, 10, 100, 999, 1_000, 14_000, 18_500, 100_000] {
            let limit = file_limit_for_connections(n);
            assert!(connections_under(limit as usize) as u64 >= n, "{n} connections under a limit of {limit}");
            assert!(connections_under(limit as usize - 2) as u64 <= n, "{limit} is more than {n} connections need");
        }
    }

    #[test]
    fn failure_detection_settings_are_checked() {
        assert!(check_failure_detection(HEARTBEAT_MS_DEFAULT, ELECTION_TIMEOUT_MIN_MS_DEFAULT, ELECTION_TIMEOUT_MAX_MS_DEFAULT).is_ok());
        assert!(check_failure_detection(50, 150, 300).is_ok());
        assert!(check_failure_detection(100, 250, 800).unwrap_err().contains("at least 3 heartbeats (300 ms"));
        assert!(check_failure_detection(100, 400, 400).unwrap_err().contains("must be above"));
        assert!(check_failure_detection(5, 400, 800).unwrap_err().contains("--heartbeat-ms"));
        assert!(check_failure_detection(100, 400, 90_000).unwrap_err().contains("at most 60000"));
    }
}
