//! Node lifecycle: open the node's RocksDB, start openraft on it, bootstrap a new cluster,
//! submit proposals (forwarded to the leader from any node), serve linearizable reads on
//! any node (ReadIndex), and change the membership.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;


use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use roster_storage::{Application, LogStore, StateMachineStore, StateStore};

use crate::batch::{batch_loop, call_peer, forward_loop, CallError, Forwarding, Pending, PROPOSAL_QUEUE_MAX};
pub use crate::batch::{
    APPEND_ENTRIES_MAX, BATCHES, BATCH_COMMANDS, COMMIT_SECONDS, FORWARDED_COMMANDS, FORWARD_REQUESTS, PROPOSALS_IN_FLIGHT_MAX,
    PROPOSAL_BATCH_BYTES_MAX, PROPOSAL_BATCH_MAX,
};
use crate::network::{peer_client, HttpNetwork, ROUTE_ADMIN, ROUTE_READ_INDEX};
use crate::transport::Transport;
use crate::types::{NodeId, Raft, TypeConfig};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// The address peers and clients reach this node at (`host:port`).
    pub advertise_addr: String,
    pub data_dir: PathBuf,
    /// Initial voters (id → address) used only when the data dir holds no Raft state yet.
    pub initial_members: BTreeMap<NodeId, String>,
    pub raft: openraft::Config,
    /// How this node reaches its peers: TLS trust and the cluster secret it presents.
    pub transport: Transport,
    /// The credential peers must present on the Raft routes (`None`: unauthenticated, only
    /// in the explicitly insecure mode).
    pub cluster_secret: Option<String>,
    /// A node being added must catch up to its membership entry within this long to become a
    /// voter (`LEARNER_CATCH_UP_MS` by default).
    pub learner_catch_up_ms: u64,
}

impl NodeConfig {
    /// Raft timing suited to a LAN or loopback cluster.
    pub fn default_raft_config() -> openraft::Config {
        openraft::Config {
            cluster_name: "roster".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            // Entries are batches of at most `PROPOSAL_BATCH_BYTES_MAX` (plus one command), so
            // an append of this many stays under the peers' body limit.
            max_payload_entries: APPEND_ENTRIES_MAX,
            ..Default::default()
        }
    }
}

/// Why a write was not committed. Callers branch on these.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("the cluster cannot commit right now: {0}")]
    Unavailable(String),
    /// The request may or may not have been committed (a forwarded request lost its answer).
    #[error("the outcome is unknown: {0}")]
    Indeterminate(String),
    #[error("{0}")]
    Rejected(String),
}

/// A membership change, executed by the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Add a node as a learner, wait until it caught up, then make it a voter.
    AddNode { id: NodeId, addr: String },
    /// Remove a node (voter or learner) from the membership.
    RemoveNode { id: NodeId },
    /// Hand leadership to voter `to` (or, with `None`, to the most up-to-date other voter);
    /// see [`crate::transfer`].
    TransferLeader { to: Option<NodeId> },
    /// Add a node as a learner that stays one: it replicates the log and serves reads, agents
    /// and forwarded writes, but never votes (promote it later with `AddNode`). Appended last,
    /// so the encoding of the other requests is unchanged.
    AddLearner { id: NodeId, addr: String },
}

/// Writes (and membership changes) give up after this long without a committed answer.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;
/// Membership changes may wait this long for a new node to catch up.
pub const ADMIN_TIMEOUT_MS: u64 = 120_000;
/// A new learner must catch up to its membership entry within this long to become a voter.
pub const LEARNER_CATCH_UP_MS: u64 = 60_000;
/// Retry delays while no leader is known: doubling from the first to the ceiling.
pub const RETRY_BACKOFF_FIRST_MS: u64 = 20;
pub const RETRY_BACKOFF_MAX_MS: u64 = 500;
/// A retry waits at least this long even when a new leader is already known.
pub const RETRY_WAKE_FLOOR_MS: u64 = 2;

pub(crate) fn leader_of(f: &openraft::error::ForwardToLeader<NodeId, BasicNode>) -> Option<(NodeId, String)> {
    f.leader_id.zip(f.leader_node.as_ref().map(|n| n.addr.clone()))
}


/// A started node.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    pub raft: Raft,
    pub store: StateStore,
    http: reqwest::Client,
    transport: Transport,
    /// What peers must present on the Raft routes.
    pub(crate) cluster_secret: Option<Arc<str>>,
    batcher: mpsc::Sender<Pending>,
    /// Commands this node forwards to the leader, gathered into batches (`forward_loop`).
    forwarder: mpsc::Sender<Forwarding>,
    learner_catch_up_ms: u64,
    /// Proposal batches in flight and read indexes hold it shared; a leader transfer holds it
    /// exclusively, so nothing sent to the followers renews their leases while it waits them
    /// out (openraft confirms a read index with heartbeats).
    pub(crate) gate: Arc<tokio::sync::RwLock<()>>,
    /// Membership changes and leader transfers run one at a time.
    pub(crate) admin_lock: Arc<tokio::sync::Mutex<()>>,
    /// The leader lease openraft keeps on followers (its election timeout max), in ms.
    pub(crate) lease_ms: u64,
}

impl RaftNode {
    /// Opens storage under `config.data_dir`, starts Raft and, on an empty data dir, bootstraps
    /// the cluster from `initial_members`.
    pub async fn start<A: Application<TypeConfig>>(config: NodeConfig, app: A) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = roster_storage::open(&config.data_dir.join("db"))?;
        let log_store = LogStore::<TypeConfig>::new(db.clone());
        let sm = StateMachineStore::<TypeConfig, A>::open(db, app, config.data_dir.join("snapshots"))?;
        let store = sm.state_store();
        let raft_config = Arc::new(config.raft.clone().validate()?);
        let network = HttpNetwork::new(config.transport.clone())?;
        let raft = Raft::new(config.node_id, raft_config, network, log_store, sm).await?;
        if !raft.is_initialized().await? && !config.initial_members.is_empty() {
            let members: BTreeMap<NodeId, BasicNode> = config
                .initial_members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
                .collect();
            tracing::info!(?members, "bootstrapping a new cluster");
            // Every initial member may try with the same membership; openraft accepts that.
            if let Err(e) = raft.initialize(members).await {
                tracing::info!("initialize: {e}");
            }
        }
        let http = peer_client(&config.transport)?;
        let (batcher, rx) = mpsc::channel(PROPOSAL_QUEUE_MAX);
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        tokio::spawn(batch_loop(raft.clone(), rx, gate.clone()));
        let cluster_secret = config.cluster_secret.as_deref().map(Arc::from);
        let (forwarder, forwarded) = mpsc::channel(PROPOSAL_QUEUE_MAX);
        tokio::spawn(forward_loop(http.clone(), config.transport.clone(), forwarded));
        let node = Self {
            id: config.node_id,
            raft,
            store,
            http,
            transport: config.transport,
            cluster_secret,
            batcher,
            forwarder,
            learner_catch_up_ms: config.learner_catch_up_ms,
            gate,
            admin_lock: Arc::new(tokio::sync::Mutex::new(())),
            lease_ms: config.raft.election_timeout_max,
        };
        Ok(node)
    }

    /// The leader and its address, when this node knows of one other than itself.
    fn leader_elsewhere(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader.filter(|id| *id != self.id)?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// Proposes one encoded command and waits until it is committed and applied; returns the
    /// state machine's encoded answer. On a follower the command is forwarded to the leader;
    /// while no leader is known it retries with backoff until [`WRITE_TIMEOUT_MS`].
    pub async fn write(&self, proposal: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(WRITE_TIMEOUT_MS);
        let mut backoff = RETRY_BACKOFF_FIRST_MS;
        loop {
            // A follower that knows the leader forwards at once; the leader's answer says so
            // if it no longer leads.
            let leader = match self.leader_elsewhere() {
                Some(leader) => Some(leader),
                None => match self.write_local(proposal.clone()).await {
                    Err(ProposeError::NotLeader { leader }) => leader,
                    other => return other,
                },
            };
            let known = leader.as_ref().map(|(id, _)| *id);
            if let Some((id, addr)) = leader.filter(|(id, _)| *id != self.id) {
                match self.forward(addr, deadline, proposal.clone()).await {
                    Ok(Ok(reply)) => return Ok(reply),
                    // The leader changed under us: go around again.
                    Ok(Err(ProposeError::NotLeader { .. })) | Err(CallError::NotSent(_)) => {
                        tracing::debug!(leader = id, "forwarding failed before delivery; retrying");
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(CallError::Lost(e)) => return Err(ProposeError::Indeterminate(e)),
                }
            }
            if Instant::now() + Duration::from_millis(backoff) >= deadline {
                return Err(ProposeError::Unavailable("no leader could commit the write in time".into()));
            }
            self.wait_leader_change(known, Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX_MS);
        }
    }

    /// Forwards one command to the leader at `addr` through the forwarding batcher.
    async fn forward(&self, addr: String, deadline: Instant, command: Vec<u8>) -> Result<Result<Vec<u8>, ProposeError>, CallError> {
        let (tx, rx) = oneshot::channel();
        if self.forwarder.send((addr, deadline, command, tx)).await.is_err() {
            return Err(CallError::NotSent("the node is shutting down".into()));
        }
        rx.await.unwrap_or_else(|_| Err(CallError::NotSent("the node is shutting down".into())))
    }

    /// Proposes several commands on this node (the leader side of a forwarded batch): all are
    /// queued for the batcher before any answer is awaited, so they share Raft entries.
    pub async fn write_local_many(&self, commands: Vec<Vec<u8>>) -> Vec<Result<Vec<u8>, ProposeError>> {
        let mut waiting = Vec::with_capacity(commands.len());
        for command in commands {
            let (tx, rx) = oneshot::channel();
            let queued = self.batcher.send((command, tx)).await.is_ok();
            waiting.push(queued.then_some(rx));
        }
        let mut answers = Vec::with_capacity(waiting.len());
        for rx in waiting {
            let answer = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(ProposeError::Unavailable("the node is shutting down".into()))),
                None => Err(ProposeError::Unavailable("the node is shutting down".into())),
            };
            answers.push(answer);
        }
        answers
    }

    /// Proposes on this node only (the leader side of forwarding), batched with concurrent
    /// commands.
    pub async fn write_local(&self, command: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.batcher
            .send((command, tx))
            .await
            .map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))?;
        rx.await.map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))?
    }

    /// Waits until this node has applied everything committed before the call (ReadIndex):
    /// the leader confirms its leadership with a quorum and names the commit point; a
    /// follower asks the leader for it and waits until it has applied that far.
    pub async fn linearizable_barrier(&self) -> Result<(), ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(WRITE_TIMEOUT_MS);
        let mut backoff = RETRY_BACKOFF_FIRST_MS;
        loop {
            let leader = match self.read_index_local().await {
                Ok(index) => return self.wait_applied(index, deadline).await,
                Err(ProposeError::NotLeader { leader }) => leader,
                Err(e) => return Err(e),
            };
            let known = leader.as_ref().map(|(id, _)| *id);
            if let Some((_, addr)) = leader.filter(|(id, _)| *id != self.id) {
                match self.call_leader::<Result<Option<u64>, ProposeError>>(&addr, ROUTE_READ_INDEX, &(), deadline).await {
                    Ok(Ok(index)) => return self.wait_applied(index, deadline).await,
                    Ok(Err(ProposeError::NotLeader { .. })) | Err(_) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
            if Instant::now() + Duration::from_millis(backoff) >= deadline {
                return Err(ProposeError::Unavailable("no leader confirmed a read index in time".into()));
            }
            self.wait_leader_change(known, Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX_MS);
        }
    }

    /// The leader side of a read index: confirms leadership and returns the index to wait for.
    pub async fn read_index_local(&self) -> Result<Option<u64>, ProposeError> {
        let _shared = self.gate.read().await;
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { leader: leader_of(&f) })
            }
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    async fn wait_applied(&self, index: Option<u64>, deadline: Instant) -> Result<(), ProposeError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| ProposeError::Unavailable(format!("not caught up for a linearizable read: {e}")))
    }

    /// Runs a membership change on the leader (forwarding if needed).
    pub async fn admin(&self, req: AdminRequest) -> Result<(), ProposeError> {
        let deadline = Instant::now() + Duration::from_millis(ADMIN_TIMEOUT_MS);
        match self.admin_local(req.clone()).await {
            Err(ProposeError::NotLeader { leader: Some((id, addr)) }) if id != self.id => {
                match self.call_leader::<Result<(), ProposeError>>(&addr, ROUTE_ADMIN, &req, deadline).await {
                    Ok(r) => r,
                    Err(CallError::NotSent(e)) => Err(ProposeError::Unavailable(e)),
                    Err(CallError::Lost(e)) => Err(ProposeError::Indeterminate(e)),
                }
            }
            other => other,
        }
    }

    /// Waits until the leader has replicated at least up to `index` to learner `id`.
    async fn wait_caught_up(&self, id: NodeId, index: u64, within: Duration) -> Result<(), String> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let matched = {
                let m = metrics.borrow_and_update();
                m.replication.as_ref().and_then(|r| r.get(&id).cloned()).flatten().map(|l| l.index)
            };
            if matched.is_some_and(|m| m >= index) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("the Raft core stopped".into()),
                Err(_) => {
                    return Err(format!(
                        "it did not catch up to log index {index} within {} s (replicated up to {matched:?}): is it running and reachable?",
                        within.as_secs()
                    ))
                }
            }
        }
    }

    /// Executes a membership change on this node, which must be the leader.
    pub async fn admin_local(&self, req: AdminRequest) -> Result<(), ProposeError> {
        let map = |e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader { leader: leader_of(&f) },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => ProposeError::Rejected(c.to_string()),
            other => ProposeError::Unavailable(other.to_string()),
        };
        let Ok(_one_at_a_time) = self.admin_lock.try_lock() else {
            return Err(ProposeError::Rejected("another membership change or leader transfer is running; try again when it is done".into()));
        };
        let voters: BTreeSet<NodeId> = self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        match req {
            AdminRequest::TransferLeader { to } => self.transfer_leader_locked(to).await,
            AdminRequest::AddNode { id, addr } => {
                if voters.contains(&id) {
                    return Err(ProposeError::Rejected(format!("node {id} is already a voter")));
                }
                tracing::info!(id, %addr, "adding node as learner");
                // Promote only a learner that has caught up to its own membership entry: a
                // node that is unreachable (or far behind) must never become a voter, or the
                // cluster would lose fault tolerance to a member that cannot vote or ack.
                if let Err(why) = self.add_caught_up_learner(id, addr).await.map_err(map)? {
                    return Err(ProposeError::Rejected(format!("node {id} was not made a voter: {why}")));
                }
                let mut next = voters;
                next.insert(id);
                tracing::info!(id, "promoting node to voter");
                self.raft.change_membership(next, false).await.map_err(map)?;
                Ok(())
            }
            AdminRequest::AddLearner { id, addr } => {
                if voters.contains(&id) {
                    return Err(ProposeError::Rejected(format!("node {id} is a voter; remove it first to make it a learner")));
                }
                tracing::info!(id, %addr, "adding node as a learner");
                // A learner that cannot be reached would only cost the leader replication work.
                if let Err(why) = self.add_caught_up_learner(id, addr).await.map_err(map)? {
                    return Err(ProposeError::Rejected(format!("node {id} was not added as a learner: {why}")));
                }
                Ok(())
            }
            AdminRequest::RemoveNode { id } => {
                let known = self.raft.metrics().borrow().membership_config.membership().get_node(&id).is_some();
                if !known {
                    return Err(ProposeError::Rejected(format!("node {id} is not a member")));
                }
                if !voters.contains(&id) {
                    tracing::info!(id, "removing learner");
                    let remove = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                    self.raft.change_membership(remove, false).await.map_err(map)?;
                    return Ok(());
                }
                let mut next = voters.clone();
                next.remove(&id);
                if next.is_empty() {
                    return Err(ProposeError::Rejected("cannot remove the last voter".into()));
                }
                tracing::info!(id, "removing node");
                self.raft.change_membership(next, false).await.map_err(map)?;
                Ok(())
            }
        }
    }

    /// Adds `id` as a learner and waits until it has caught up to its own membership entry; one
    /// that has not within the catch-up time is removed again, and `Ok(Err(why))` says why.
    async fn add_caught_up_learner(
        &self,
        id: NodeId,
        addr: String,
    ) -> Result<Result<(), String>, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> {
        let added = self.raft.add_learner(id, BasicNode::new(addr), false).await?;
        if let Err(why) = self.wait_caught_up(id, added.log_id.index, Duration::from_millis(self.learner_catch_up_ms)).await {
            tracing::warn!(id, "the learner did not catch up: {why}; removing it");
            let remove = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            let _ = self.raft.change_membership(remove, false).await;
            return Ok(Err(why));
        }
        Ok(Ok(()))
    }

    pub(crate) async fn call_leader<R: DeserializeOwned>(
        &self,
        addr: &str,
        route: &str,
        body: &impl Serialize,
        deadline: Instant,
    ) -> Result<R, CallError> {
        call_peer(&self.http, &self.transport, addr, route, body, deadline).await
    }

    /// Sleeps for `at_most`, waking early once this node learns of a leader other than
    /// `known`: a retry after a failover then goes out as soon as the new leader is heard of,
    /// not at the end of a backoff step that may be hundreds of milliseconds long.
    async fn wait_leader_change(&self, known: Option<NodeId>, at_most: Duration) {
        // A floor, so a view of the leader that disagrees with the last answer never spins.
        let floor = Duration::from_millis(RETRY_WAKE_FLOOR_MS).min(at_most);
        tokio::time::sleep(floor).await;
        self.wait_for_leader_other_than(known, at_most - floor).await;
    }

    /// Waits up to `timeout` until this node knows of a leader other than `old`.
    pub async fn wait_for_leader_other_than(&self, old: Option<NodeId>, timeout: Duration) -> Option<NodeId> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = metrics.borrow_and_update().current_leader;
            if now.is_some() && now != old {
                return now;
            }
            if !matches!(tokio::time::timeout_at(deadline, metrics.changed()).await, Ok(Ok(()))) {
                return now;
            }
        }
    }

    /// Every other member's `/healthz` answer (voters and learners), `None` for one that did
    /// not answer within `timeout`.
    pub async fn members_health(&self, timeout: Duration) -> Vec<(NodeId, Option<serde_json::Value>)> {
        let members: Vec<(NodeId, String)> = {
            let m = self.raft.metrics().borrow().clone();
            m.membership_config.membership().nodes().filter(|(id, _)| **id != self.id).map(|(id, n)| (*id, n.addr.clone())).collect()
        };
        let asks = members.into_iter().map(|(id, addr)| {
            let url = self.transport.url(&addr, "/healthz");
            let http = self.http.clone();
            async move {
                let answer = async { serde_json::from_slice(&http.get(url).timeout(timeout).send().await.ok()?.bytes().await.ok()?).ok() };
                (id, answer.await)
            }
        });
        futures::future::join_all(asks).await
    }

    /// Waits up to `timeout` for a known leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = metrics.borrow().current_leader {
                return Some(leader);
            }
            if tokio::time::timeout_at(deadline, metrics.changed()).await.is_err() {
                return None;
            }
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

