//! Fold checkpoints, built off the apply path. When a checkpoint falls due at revision R, the
//! apply only notes it; once the batch holding R is written, a background thread folds the
//! stored history from the previous checkpoint up to R and writes the result. The apply never
//! encodes the state (that cost O(state): single stalls of hundreds of milliseconds for every
//! write queued behind it at a few hundred thousand servers).
//!
//! A checkpoint is derived data: every node's history up to R is the same committed history,
//! so a checkpoint folded from it is right whenever it is written, even across a snapshot
//! install. The fold checks the hash chain record by record and that it reached R exactly;
//! a fold that does not (the history was replaced under it) is dropped, and the next one is
//! due a spacing later. A crash before the write only means a restart folds more records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use roster_storage::{codec, StateStore, StoreError};
use tokio::sync::watch;

use super::records::{fold_stored_while, CheckpointRef};

/// Builds checkpoints on one background thread, started at the first request.
pub(super) struct Checkpointer {
    requests: Option<mpsc::SyncSender<(StateStore, u64)>>,
    /// Set when the machine goes away: a fold under way stops at its next record, so the
    /// database is released promptly at shutdown.
    stop: Arc<AtomicBool>,
    /// The revision of the newest checkpoint written.
    written: watch::Sender<u64>,
}

impl Checkpointer {
    pub(super) fn new(written: watch::Sender<u64>) -> Self {
        Self { requests: None, stop: Arc::new(AtomicBool::new(false)), written }
    }

    /// Asks for a checkpoint at `revision`, whose record is already written in `store`.
    pub(super) fn request(&mut self, store: &StateStore, revision: u64) {
        if self.requests.is_none() {
            let (tx, rx) = mpsc::sync_channel(CHECKPOINT_REQUESTS_QUEUED_MAX);
            let (stop, written) = (self.stop.clone(), self.written.clone());
            let spawned = std::thread::Builder::new()
                .name("roster-checkpoint".into())
                .spawn(move || run(rx, &stop, &written));
            if let Err(e) = spawned {
                tracing::warn!("could not start the checkpoint thread ({e}); no fold checkpoint at revision {revision}");
                return;
            }
            self.requests = Some(tx);
        }
        if let Some(tx) = &self.requests {
            // A request finds the queue full only while folds lag far behind (the newest
            // queued one then stands for it), and fails once the thread has stopped (the
            // machine is going away): no checkpoint is lost that is still wanted.
            let _ = tx.try_send((store.clone(), revision));
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checkpoint requests waiting for the thread; one more finds the queue full and is dropped
/// (only the newest waiting request is built anyway).
const CHECKPOINT_REQUESTS_QUEUED_MAX: usize = 4;

/// A checkpoint that took longer than this to build is noted in the log (info, not debug).
const CHECKPOINT_SLOW_LOG_MS: u64 = 1_000;

/// The checkpoint thread's nice value: the lowest priority. A fold at a large configuration
/// takes seconds of CPU (4 s at 640,000 servers on this project's 2-core machine), on every
/// node at the same revision; the Raft core, the API and the agents' watches come first.
const CHECKPOINT_THREAD_NICE: i32 = 19;

fn run(requests: mpsc::Receiver<(StateStore, u64)>, stop: &AtomicBool, written: &watch::Sender<u64>) {
    // SAFETY: gettid and setpriority only read and set this thread's scheduling priority.
    let lowered = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, CHECKPOINT_THREAD_NICE)
    };
    if lowered != 0 {
        tracing::debug!("could not lower the checkpoint thread's priority: {}", std::io::Error::last_os_error());
    }
    while let Ok(mut next) = requests.recv() {
        // Requests that queued up behind a slow fold: only the newest is worth building.
        while let Ok(newer) = requests.try_recv() {
            next = newer;
        }
        let (store, revision) = next;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        match build(&store, revision, stop) {
            Ok(Some(bytes)) => {
                let ms = started.elapsed().as_millis() as u64;
                if ms >= CHECKPOINT_SLOW_LOG_MS {
                    tracing::info!(revision, bytes, ms, "fold checkpoint written");
                } else {
                    tracing::debug!(revision, bytes, ms, "fold checkpoint written");
                }
                written.send_replace(revision);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("fold checkpoint at revision {revision} not written: {e}"),
        }
    }
}

/// Folds the stored history up to `revision` and writes it as a checkpoint; returns its size,
/// or `None` when stopped or when the fold did not reach `revision`.
fn build(store: &StateStore, revision: u64, stop: &AtomicBool) -> Result<Option<usize>, StoreError> {
    let (state, head) = fold_stored_while(store, revision, || !stop.load(Ordering::Relaxed))?;
    if state.revision != revision {
        if !stop.load(Ordering::Relaxed) {
            tracing::info!("fold checkpoint at revision {revision} skipped: the stored history reached {}", state.revision);
        }
        return Ok(None);
    }
    let bytes = codec::encode(&CheckpointRef { state: &state, head: &head });
    store.put_checkpoint(revision, &bytes)?;
    Ok(Some(bytes.len()))
}
