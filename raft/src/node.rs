//! Node lifecycle: open the node's RocksDB, start openraft on it, bootstrap a new cluster,
//! submit proposals and serve linearizable reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use roster_storage::{Application, LogStore, StateMachineStore, StateStore};

use crate::network::HttpNetwork;
use crate::types::{NodeId, Proposal, Raft, Reply, TypeConfig};

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
}

impl NodeConfig {
    /// Raft timing suited to a LAN or loopback cluster.
    pub fn default_raft_config() -> openraft::Config {
        openraft::Config {
            cluster_name: "roster".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            ..Default::default()
        }
    }
}

/// Why a write was not committed. Callers branch on these.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("the cluster cannot commit right now: {0}")]
    Unavailable(String),
}

/// A started node.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    pub raft: Raft,
    pub store: StateStore,
}

impl RaftNode {
    /// Opens storage under `config.data_dir`, starts Raft and, on an empty data dir, bootstraps
    /// the cluster from `initial_members`.
    pub async fn start<A: Application<TypeConfig>>(config: NodeConfig, app: A) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = roster_storage::open(&config.data_dir.join("db"))?;
        let log_store = LogStore::<TypeConfig>::new(db.clone());
        let sm = StateMachineStore::<TypeConfig, A>::open(db, app)?;
        let store = sm.state_store();
        let raft_config = Arc::new(config.raft.clone().validate()?);
        let raft = Raft::new(config.node_id, raft_config, HttpNetwork::new(), log_store, sm).await?;
        if !raft.is_initialized().await? && !config.initial_members.is_empty() {
            let members: BTreeMap<NodeId, BasicNode> = config
                .initial_members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
                .collect();
            tracing::info!(?members, "bootstrapping a new cluster");
            // Every initial member may try; all but one get a harmless "already initialized".
            if let Err(e) = raft.initialize(members).await {
                tracing::info!("initialize: {e}");
            }
        }
        Ok(Self { id: config.node_id, raft, store })
    }

    /// Proposes `proposal` and waits until it is committed and applied locally.
    pub async fn write(&self, proposal: Proposal) -> Result<Reply, WriteError> {
        match self.raft.client_write(proposal).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(WriteError::NotLeader {
                leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
            }),
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
    }

    /// Waits until this node has applied everything committed before the call (ReadIndex).
    pub async fn linearizable_barrier(&self) -> Result<(), WriteError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) })
            }
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
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
