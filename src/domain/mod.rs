//! The Roster domain: names, state, events, commands, the fold, history records and diffs.
//!
//! Architecture invariant: the domain does no I/O and reads no clock. Time and actor arrive
//! inside the [`Command`], stamped by the node that accepted it, so the same fold runs in the
//! state machine, in offline replay and in tests.

pub mod canonical;
pub mod changeset;
pub mod checkpoint;
pub mod command;
pub mod declare;
pub mod diff;
pub mod oplog;
pub mod history;
pub mod merkle;
pub mod model;
pub mod names;
pub mod tokens;

pub use changeset::Changeset;
pub use command::{decide, decide_mut, simulate, Change, Command, CommandBody, MoveDirection, Outcome, RejectCode, Rejection};
pub use history::{state_digest, HISTORY_FORMAT, ChainError, Hash, HistoryRecord, RecordBody, Replayer};
pub use model::{Agent, AgentCluster, Event, Server, ServerStatus, State, Task, TaskConfig, Undo, Weighting, PRIORITY_MAX, PRIORITY_MIN, WEIGHT_MAX, WEIGHT_MIN};
pub use names::*;
