//! Roster's chaos harness: real `roster serve` processes, real faults (kill -9, SIGSTOP,
//! partitions and one-way loss with nftables in network namespaces, membership churn,
//! full restarts, snapshot installs, storage fail points), a recorded workload, and one
//! checker per invariant over the recorded history. See `chaos/README.md`.

pub mod checker;
pub mod client;
pub mod cluster;
pub mod faults;
pub mod finals;
pub mod model;
pub mod net;
pub mod procs;
pub mod report;
pub mod run;
pub mod workload;

pub use faults::FaultKind;
pub use net::NetMode;
pub use run::{run, Config, Report};
