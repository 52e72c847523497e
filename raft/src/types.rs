//! The openraft type configuration shared by every Roster node.

use serde::{Deserialize, Serialize};

/// One Raft entry of client requests: a batch of the domain's encoded commands, applied in
/// order. Concurrent writes share one entry (and so one log append and fsync).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub commands: Vec<Vec<u8>>,
}

/// The state machine's answers to a [`Proposal`], one encoded outcome per command, in order.
/// Empty for blank and membership entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub results: Vec<Vec<u8>>,
}

openraft::declare_raft_types!(
    /// Roster's Raft types: u64 node ids, nodes addressed by their HTTP address.
    pub TypeConfig:
        D = Proposal,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = roster_storage::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
