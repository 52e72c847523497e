//! What the state machine keeps besides the live state: rejection and idempotency records,
//! fold checkpoints, and the fold of the stored history up to a revision.

use roster_storage::{codec, StateStore, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Command, Hash, Outcome, Rejection, Replayer, State};
use crate::reader::Reader;

/// A command that was rejected, kept for audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RejectionRecord {
    pub log_index: u64,
    pub time_ms: u64,
    pub actor: String,
    pub comment: String,
    pub rejection: Rejection,
}

/// Stored per idempotency key: what the command was, and what it got.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct IdempotencyEntry {
    pub fingerprint: Hash,
    pub outcome: Outcome,
}

/// A persisted fold checkpoint.
#[derive(Deserialize)]
struct Checkpoint {
    state: State,
    head: Hash,
}

/// The same encoding as [`Checkpoint`], written without cloning the state.
#[derive(Serialize)]
pub(super) struct CheckpointRef<'a> {
    pub state: &'a State,
    pub head: &'a Hash,
}

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("history: {e}"))
}

/// Folds the stored history from its newest checkpoint at or before `upto` (inclusive).
pub fn fold_stored(store: &StateStore, upto: u64) -> Result<(State, Hash), StoreError> {
    fold_stored_while(store, upto, || true)
}

/// [`fold_stored`], stopping early (with the state folded so far) once `go_on` says no.
pub(super) fn fold_stored_while(store: &StateStore, upto: u64, go_on: impl Fn() -> bool) -> Result<(State, Hash), StoreError> {
    let mut replayer = match store.checkpoint_at_or_before(upto)? {
        Some((_, bytes)) => {
            let cp: Checkpoint = codec::decode(&bytes).map_err(corrupt)?;
            Replayer::new(cp.state, cp.head)
        }
        None => Replayer::new(State::default(), Hash::default()),
    };
    let from = replayer.state.revision + 1;
    Reader::new(store.clone()).records(from, |record| {
        if record.body.revision > upto || !go_on() {
            return Ok(false);
        }
        replayer.push(&record).map_err(corrupt)?;
        Ok(true)
    })?;
    Ok((replayer.state, replayer.head))
}

/// The fingerprint that tells a retry (same command) from a reuse of a key for another one.
pub(super) fn fingerprint(cmd: &Command) -> Hash {
    let mut h = Sha256::new();
    h.update(codec::encode(&(&cmd.actor, &cmd.expected_revision, &cmd.body)));
    Hash(h.finalize().into())
}
