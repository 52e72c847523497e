//! Roster's persistence on RocksDB.
//!
//! One RocksDB database per node holds two independent stores in separate column families:
//!
//! - [`LogStore`]: openraft's log and vote ([`openraft::storage::RaftLogStorage`]).
//! - [`StateMachineStore`]: openraft's state machine ([`openraft::storage::RaftStateMachine`]):
//!   the applied log id and membership plus whatever the application writes through a [`Txn`]
//!   (the revision history, idempotency outcomes, staged changesets, state checkpoints), all in
//!   one atomic batch per apply call. The batch is not fsynced on its own: its entries are
//!   already durable in the log (same WAL), and the WAL is synced before a snapshot is built.
//!
//! [`failpoint`] names a crash point before and after every durable write, for chaos runs.
//!
//! This crate knows nothing of HTTP, of the Roster domain, or of the network: the application
//! plugs in through the [`Application`] trait and sees only bytes and log ids. Every value it
//! persists goes through [`codec`].

/// The versioned record codec (the `roster-codec` crate), re-exported for storage users.
pub use roster_codec as codec;
pub mod backup;
pub mod db;
pub mod failpoint;
pub mod log_store;
pub mod metrics;
pub mod check;
pub mod segments;
pub mod snapshot;
pub mod snapshot_file;
pub mod state_machine;

pub use db::{open, StoreError};
pub use log_store::LogStore;
pub use snapshot::{DataDirReport, Segment, SnapshotFileInfo};
pub use snapshot_file::SnapshotFile;
pub use state_machine::{Application, StateMachineStore, StateStore, Txn};

/// Checks a stopped node's data directory (`db/` and `snapshots/` under it) without changing
/// it: see [`snapshot::check`].
pub fn check_data_dir<C: openraft::RaftTypeConfig>(data_dir: &std::path::Path) -> Result<DataDirReport, StoreError> {
    let db = db::open(&data_dir.join("db"))?;
    snapshot::check::<C>(&db, &data_dir.join("snapshots"))
}
