//! Proposal batching and forwarding: the leader packs concurrent commands into Raft entries
//! (`batch_loop`), and a follower packs the commands it forwards into one request to the
//! leader (`forward_loop`). Both gather with [`next_batch`], bounded in count and bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use roster_storage::codec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::network::{ROUTE_FORWARD, ROUTE_FORWARD_BATCH};
use crate::node::{leader_of, ProposeError};
use crate::service::RAFT_RPC_BODY_MAX_BYTES;
use crate::transport::Transport;
use crate::types::{Proposal, Raft};

/// Most commands carried by one Raft entry (or one forwarded request).
pub const PROPOSAL_BATCH_MAX: usize = 512;
/// Most bytes of commands in one Raft entry (or one forwarded request), beyond its first
/// command: a burst of large commands must not make an entry, or an append carrying several,
/// larger than a peer accepts (`RAFT_RPC_BODY_MAX_BYTES`), or replication would stall on it.
pub const PROPOSAL_BATCH_BYTES_MAX: usize = 4 << 20;
/// Most entries in one append (openraft's `max_payload_entries`).
pub const APPEND_ENTRIES_MAX: u64 = 12;
/// An append of `APPEND_ENTRIES_MAX` full entries, each with one more command of up to the API's
/// 1 MiB body, fits in a peer's body limit.
const _: () = assert!((APPEND_ENTRIES_MAX as usize) * (PROPOSAL_BATCH_BYTES_MAX + (1 << 20)) < RAFT_RPC_BODY_MAX_BYTES);
/// Most batches proposed and not yet answered at once.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 4;
/// Most commands waiting to be batched; further writers wait (backpressure).
pub const PROPOSAL_QUEUE_MAX: usize = 16_384;
/// A batch that takes longer than this from proposal to commit and local apply is logged as a
/// warning with its size (as etcd warns of slow applies): the write latency's tail, with a time
/// to match against snapshot builds, slow disks and elections in the same log.
pub const SLOW_COMMIT_WARN_MS: u64 = 100;

/// Time from proposing a batch to its commit and local apply.
pub static COMMIT_SECONDS: roster_storage::metrics::Histogram = roster_storage::metrics::Histogram::new();
/// Batches proposed, and commands in them (their ratio is the mean batch size).
pub static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static BATCH_COMMANDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Requests this node sent to forward commands to the leader, and the commands in them.
pub static FORWARD_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FORWARDED_COMMANDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) type Pending = (Vec<u8>, oneshot::Sender<Result<Vec<u8>, ProposeError>>);

/// Something a batch carries, with its size in bytes.
pub(crate) trait Measured {
    fn bytes(&self) -> usize;
}

impl Measured for Pending {
    fn bytes(&self) -> usize {
        self.0.len()
    }
}

impl Measured for Forwarding {
    fn bytes(&self) -> usize {
        self.2.len()
    }
}

/// Waits for a free slot among the batches in flight, then for a first item, and takes the
/// items queued behind it, up to [`PROPOSAL_BATCH_MAX`] items and [`PROPOSAL_BATCH_BYTES_MAX`]
/// bytes after the first (an item that would pass the byte bound starts the next batch).
/// Waiting for the slot first lets the queue fill while earlier batches are in flight. `None`
/// once the queue is closed. `held` is the item a previous call left for this one.
pub(crate) async fn next_batch<T: Measured>(
    permits: &Arc<Semaphore>,
    rx: &mut mpsc::Receiver<T>,
    held: &mut Option<T>,
) -> Option<(tokio::sync::OwnedSemaphorePermit, Vec<T>)> {
    let permit = permits.clone().acquire_owned().await.ok()?;
    let first = match held.take() {
        Some(item) => item,
        None => rx.recv().await?,
    };
    let mut bytes = 0;
    let mut batch = vec![first];
    while batch.len() < PROPOSAL_BATCH_MAX {
        match rx.try_recv() {
            Ok(item) if bytes + item.bytes() > PROPOSAL_BATCH_BYTES_MAX => {
                *held = Some(item);
                break;
            }
            Ok(item) => {
                bytes += item.bytes();
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    Some((permit, batch))
}

/// A command a follower forwards: the leader's address, the deadline, the command, and where
/// its answer (or why the call to the leader failed) goes.
pub(crate) type Forwarding = (String, Instant, Vec<u8>, oneshot::Sender<Result<Result<Vec<u8>, ProposeError>, CallError>>);

/// Gathers the commands a follower forwards into one request per leader address, as the
/// batcher gathers proposals: at 64 concurrent writers through a follower, one forward per
/// command cost the leader an HTTP request each. Each command keeps its own answer; a batch
/// the leader may have received but did not answer is indeterminate for all its commands.
///
/// It holds only the peer client, never a `RaftNode`: the queue closes, and the loop ends, when
/// the last `RaftNode` handle is dropped, so a stopped node's database is released.
pub(crate) async fn forward_loop(http: reqwest::Client, transport: Transport, mut rx: mpsc::Receiver<Forwarding>) {
    let permits = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    let mut held = None;
    while let Some((permit, batch)) = next_batch(&permits, &mut rx, &mut held).await {
        let mut by_leader: BTreeMap<String, Vec<Forwarding>> = BTreeMap::new();
        for f in batch {
            by_leader.entry(f.0.clone()).or_default().push(f);
        }
        let permit = Arc::new(permit);
        for (addr, items) in by_leader {
            let (http, transport) = (http.clone(), transport.clone());
            let permit = permit.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let deadline = items.iter().map(|f| f.1).min().expect("a batch is not empty");
                let (commands, waiters): (Vec<Vec<u8>>, Vec<_>) = items.into_iter().map(|(_, _, c, w)| (c, w)).unzip();
                let n = commands.len();
                FORWARD_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                FORWARDED_COMMANDS.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                let answers = if n == 1 {
                    // One command goes the way a single forward always has.
                    call_peer::<Result<Vec<u8>, ProposeError>>(&http, &transport, &addr, ROUTE_FORWARD, &commands[0], deadline).await.map(|a| vec![a])
                } else {
                    call_peer::<Vec<Result<Vec<u8>, ProposeError>>>(&http, &transport, &addr, ROUTE_FORWARD_BATCH, &commands, deadline).await
                };
                match answers {
                    Ok(answers) if answers.len() == n => {
                        for (w, a) in waiters.into_iter().zip(answers) {
                            let _ = w.send(Ok(a));
                        }
                    }
                    Ok(answers) => {
                        let e = CallError::Lost(format!("the leader answered {} of {n} forwarded commands", answers.len()));
                        for w in waiters {
                            let _ = w.send(Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        for w in waiters {
                            let _ = w.send(Err(e.clone()));
                        }
                    }
                }
            });
        }
    }
}

/// Gathers concurrent commands into batches, one Raft entry each. openraft 0.9 appends and
/// fsyncs each client write on its own, so batching here is what lets many writers share one
/// append.
pub(crate) async fn batch_loop(raft: Raft, mut rx: mpsc::Receiver<Pending>, gate: Arc<tokio::sync::RwLock<()>>) {
    let permits = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
    let mut held = None;
    while let Some((permit, batch)) = next_batch(&permits, &mut rx, &mut held).await {
        // Held until the batch is answered; a leader transfer waits for it and holds new
        // batches back (see `RaftNode::gate`).
        let shared = gate.clone().read_owned().await;
        let raft = raft.clone();
        tokio::spawn(async move {
            let _shared = shared;
            let (commands, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let n = commands.len();
            let started = std::time::Instant::now();
            let result = raft.client_write(Proposal { commands }).await;
            let took = started.elapsed();
            COMMIT_SECONDS.observe(took);
            if took >= std::time::Duration::from_millis(SLOW_COMMIT_WARN_MS) {
                tracing::warn!(ms = took.as_millis() as u64, commands = n, "a proposal took over {SLOW_COMMIT_WARN_MS} ms to commit and apply");
            }
            BATCH_COMMANDS.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
            match result {
                Ok(resp) if resp.data.results.len() == n => {
                    for (w, r) in waiters.into_iter().zip(resp.data.results) {
                        let _ = w.send(Ok(r));
                    }
                }
                Ok(resp) => panic!("state machine answered {} of {n} commands", resp.data.results.len()),
                Err(e) => {
                    let err = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader { leader: leader_of(&f) },
                        other => ProposeError::Unavailable(other.to_string()),
                    };
                    for w in waiters {
                        let _ = w.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

/// POSTs `body` to a peer's `route` and decodes its answer, by `deadline`.
pub(crate) async fn call_peer<R: DeserializeOwned>(
    http: &reqwest::Client,
    transport: &Transport,
    addr: &str,
    route: &str,
    body: &impl Serialize,
    deadline: Instant,
) -> Result<R, CallError> {
    let timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let sent = http.post(transport.url(addr, route)).timeout(timeout).body(codec::encode(body)).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(CallError::NotSent(e.to_string())),
        Err(e) => return Err(CallError::Lost(e.to_string())),
    };
    if !resp.status().is_success() {
        return Err(CallError::Lost(format!("leader answered {}", resp.status())));
    }
    let bytes = resp.bytes().await.map_err(|e| CallError::Lost(e.to_string()))?;
    codec::decode(&bytes).map_err(|e| CallError::Lost(e.to_string()))
}

/// Why a call to the leader failed.
#[derive(Clone, Debug)]
pub(crate) enum CallError {
    /// Certainly not delivered (connection refused): safe to retry.
    NotSent(String),
    /// May have been delivered: retrying could apply twice.
    Lost(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch stops at the count bound and at the byte bound; the item that would pass the
    /// byte bound opens the next batch, and a single item larger than the bound still goes.
    #[tokio::test]
    async fn batches_are_bounded_in_count_and_bytes() {
        let (tx, mut rx) = mpsc::channel::<Pending>(4096);
        let permits = Arc::new(Semaphore::new(PROPOSALS_IN_FLIGHT_MAX));
        let mut held = None;
        let (big, half) = (PROPOSAL_BATCH_BYTES_MAX + 1, PROPOSAL_BATCH_BYTES_MAX / 2);
        let sizes = [big, 3 * PROPOSAL_BATCH_BYTES_MAX / 4, half, 1];
        for size in sizes {
            tx.send((vec![0; size], oneshot::channel().0)).await.unwrap();
        }
        for _ in 0..PROPOSAL_BATCH_MAX + 3 {
            tx.send((vec![1], oneshot::channel().0)).await.unwrap();
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (_permit, batch) = next_batch(&permits, &mut rx, &mut held).await.unwrap();
            seen.push((batch.len(), batch.iter().map(|p| p.0.len()).sum::<usize>()));
        }
        // 1. The oversized first item and a 3/4-bound one; the half-bound one would pass the bound.
        assert_eq!(seen[0], (2, big + 3 * PROPOSAL_BATCH_BYTES_MAX / 4));
        // 2. The held item opens the next batch, which then stops at the count bound.
        assert_eq!(seen[1], (PROPOSAL_BATCH_MAX, half + 1 + (PROPOSAL_BATCH_MAX - 2)));
        // 3. The rest; nothing is lost.
        assert_eq!(seen[2], (5, 5));
        let total: usize = seen.iter().map(|s| s.0).sum();
        assert_eq!(total, sizes.len() + PROPOSAL_BATCH_MAX + 3);
    }
}
