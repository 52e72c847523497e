//! Roster's Raft layer: the openraft type configuration, Raft RPC between nodes over HTTP with
//! codec-encoded (bincode) bodies, and the node lifecycle (open storage, start Raft, bootstrap).
//!
//! Client requests and replies are opaque bytes here ([`Proposal`], [`Reply`]); the domain
//! encodes and decodes them. This crate knows nothing of the Roster domain or its HTTP API.

pub mod batch;
pub mod network;
pub mod node;
pub mod service;
pub mod transfer;
pub mod transport;
pub mod types;

pub use node::{NodeConfig, RaftNode, ProposeError};
pub use transport::Transport;
pub use types::{Proposal, Reply, TypeConfig};
