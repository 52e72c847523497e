//! Roster: a highly available control plane for task failover and load balancing.
//!
//! Configuration changes are commands replicated through Raft ([`roster_raft`]) and applied by
//! the state machine ([`machine`]) onto the pure domain ([`domain`]); the HTTP API ([`api`])
//! and the CLI ([`cli`]) are the administrators' surfaces; [`server`] wires a node together.
//! See ARCHITECTURE.md for the map.

pub mod agent;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod console;
pub mod dev;
pub mod domain;
pub mod machine;
pub mod metrics;
pub mod preferred;
pub mod prober;
pub mod projection;
pub mod reader;
pub mod server;
pub mod session;
pub mod tls;
