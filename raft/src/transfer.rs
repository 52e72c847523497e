//! Leader transfer on openraft 0.9, which has no transfer of its own.
//!
//! What stands in the way is the leader lease: a voter that heard from the leader within the
//! last `election_timeout_max` rejects every vote request, so a follower told to "elect now"
//! loses while the leader is still sending heartbeats. The transfer therefore makes the lease
//! run out on purpose, with nothing committed in the meantime:
//!
//! 1. the leader stops proposing and confirming read indexes (openraft confirms them with
//!    heartbeats): it takes the node's gate exclusively, so batches in flight finish and
//!    queued writes and reads wait;
//! 2. it waits until the target has every entry of the leader's log;
//! 3. it turns its heartbeats off and waits out the lease (plus a margin);
//! 4. it asks the target to start an election; the target's log is as long as any, its term
//!    becomes the highest, and every lease has expired, so it wins;
//! 5. whatever happened, the leader turns heartbeats back on and lets proposals go: queued
//!    writes then meet `ForwardToLeader` and follow the new leader.
//!
//! Writes wait, and none fails, for about one lease. If the target dies in between, the
//! cluster elects someone else the ordinary way. openraft 0.10's `transfer_leader` also
//! resets the followers' leases, which 0.9's API cannot; see ARCHITECTURE.md.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::network::ROUTE_TRANSFER;
use crate::batch::CallError;
use crate::node::{ProposeError, RaftNode, WRITE_TIMEOUT_MS};
use crate::types::NodeId;

/// The target must have the leader's whole log within this long after proposals stop.
pub const TRANSFER_CATCH_UP_MS: u64 = 3_000;
/// Waited beyond the lease before the target is told to elect itself.
pub const TRANSFER_LEASE_MARGIN_MS: u64 = 30;

/// The leader's request to the target: elect yourself now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ElectRequest {
    /// The leader asking, and its term: a target that follows someone else refuses.
    pub from: NodeId,
    pub term: u64,
    /// The leader's last log index, which the target must already hold.
    pub last_log_index: Option<u64>,
}

impl RaftNode {
    /// Chooses the target: `to` when given (a voter other than this node), otherwise the other
    /// voter whose replication is furthest along.
    fn transfer_target(&self, to: Option<NodeId>) -> Result<(NodeId, String), ProposeError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            let leader = m.current_leader.and_then(|id| m.membership_config.membership().get_node(&id).map(|n| (id, n.addr.clone())));
            return Err(ProposeError::NotLeader { leader });
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            return Err(ProposeError::Rejected("a membership change is in progress; transfer when it is done".into()));
        }
        let voters: Vec<NodeId> = membership.voter_ids().filter(|v| *v != self.id).collect();
        let target = match to {
            Some(t) if t == self.id => return Err(ProposeError::Rejected(format!("node {t} is already the leader"))),
            Some(t) if !voters.contains(&t) => {
                let what = if membership.get_node(&t).is_some() { "a learner, not a voter" } else { "not a member" };
                return Err(ProposeError::Rejected(format!("node {t} is {what}; only a voter can lead")));
            }
            Some(t) => t,
            None => {
                let matched = |id: &NodeId| m.replication.as_ref().and_then(|r| r.get(id).cloned()).flatten().map(|l| l.index);
                voters
                    .iter()
                    .copied()
                    .max_by_key(|v| (matched(v), std::cmp::Reverse(*v)))
                    .ok_or_else(|| ProposeError::Rejected("there is no other voter to hand leadership to".into()))?
            }
        };
        let addr = membership.get_node(&target).map(|n| n.addr.clone()).unwrap_or_default();
        Ok((target, addr))
    }

    /// Runs a transfer on the leader; the caller holds the admin lock. Returns once another
    /// node leads, or with the reason it did not happen (this node then still leads).
    pub(crate) async fn transfer_leader_locked(&self, to: Option<NodeId>) -> Result<(), ProposeError> {
        let (target, addr) = self.transfer_target(to)?;
        tracing::info!(target, "leader transfer: pausing proposals and read indexes");
        let started = Instant::now();
        // Step 1: no new entries, no read-index heartbeats.
        let paused = tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), self.gate.write())
            .await
            .map_err(|_| ProposeError::Unavailable("writes and reads in flight did not finish; transfer abandoned".into()))?;
        let outcome = self.hand_over(target, &addr).await;
        // Step 5, on every path.
        self.raft.runtime_config().heartbeat(true);
        drop(paused);
        match &outcome {
            Ok(()) => tracing::info!(target, ms = started.elapsed().as_millis() as u64, "leader transfer done"),
            Err(e) => tracing::warn!(target, "leader transfer failed: {e}"),
        }
        outcome
    }

    /// Steps 2 to 4, with proposals paused.
    async fn hand_over(&self, target: NodeId, addr: &str) -> Result<(), ProposeError> {
        let (term, last) = {
            let m = self.raft.metrics().borrow().clone();
            (m.current_term, m.last_log_index)
        };
        // Step 2.
        let mut metrics = self.raft.metrics();
        let deadline = Instant::now() + Duration::from_millis(TRANSFER_CATCH_UP_MS);
        loop {
            let matched = {
                let m = metrics.borrow_and_update();
                if m.current_leader != Some(self.id) {
                    return Err(ProposeError::Unavailable("this node lost leadership during the transfer".into()));
                }
                m.replication.as_ref().and_then(|r| r.get(&target).cloned()).flatten().map(|l| l.index)
            };
            if matched >= last {
                break;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ProposeError::Unavailable("the Raft core stopped".into())),
                Err(_) => {
                    return Err(ProposeError::Rejected(format!(
                        "node {target} did not catch up to log index {last:?} within {TRANSFER_CATCH_UP_MS} ms (it has {matched:?}); is it up?"
                    )))
                }
            }
        }
        // Step 3.
        self.raft.runtime_config().heartbeat(false);
        tokio::time::sleep(Duration::from_millis(self.lease_ms + TRANSFER_LEASE_MARGIN_MS)).await;
        // Step 4.
        let req = ElectRequest { from: self.id, term, last_log_index: last };
        let ask_until = Instant::now() + Duration::from_millis(self.lease_ms.max(1_000));
        match self.call_leader::<Result<(), ProposeError>>(addr, ROUTE_TRANSFER, &req, ask_until).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(CallError::NotSent(e) | CallError::Lost(e)) => {
                return Err(ProposeError::Unavailable(format!("asking node {target} to take over failed: {e}")))
            }
        }
        // Wait for the election: the target needs one round trip to each voter.
        let won_by = Instant::now() + Duration::from_millis(2 * self.lease_ms + 1_000);
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            if leader.is_some_and(|l| l != self.id) {
                return Ok(());
            }
            match tokio::time::timeout_at(won_by, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ProposeError::Unavailable("the Raft core stopped".into())),
                Err(_) => {
                    return Err(ProposeError::Unavailable(format!(
                        "node {target} was asked to take over but no other leader was seen within {} ms",
                        2 * self.lease_ms + 1_000
                    )))
                }
            }
        }
    }

    /// The target side: starts an election when the request comes from the leader this node
    /// follows and this node holds the leader's whole log.
    pub async fn elect_on_request(&self, req: ElectRequest) -> Result<(), ProposeError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(req.from) || m.current_term != req.term {
            return Err(ProposeError::Rejected(format!(
                "node {} follows leader {:?} in term {}, not node {} in term {}",
                self.id, m.current_leader, m.current_term, req.from, req.term
            )));
        }
        if m.last_log_index < req.last_log_index {
            return Err(ProposeError::Rejected(format!(
                "node {} has log up to {:?}, behind the leader's {:?}",
                self.id, m.last_log_index, req.last_log_index
            )));
        }
        tracing::info!(from = req.from, "leader transfer: starting an election on the leader's request");
        self.raft.trigger().elect().await.map_err(|e| ProposeError::Unavailable(e.to_string()))
    }

    /// Hands leadership to `to` (or the most up-to-date other voter), forwarding to the leader
    /// when this node is not it.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<(), ProposeError> {
        self.admin(crate::node::AdminRequest::TransferLeader { to }).await
    }

    /// Before a graceful stop: if this node leads and another voter can take over, hand
    /// leadership to it so writes wait one lease instead of a failure detection and election.
    /// Gives up quietly (the stop goes on) when it cannot.
    pub async fn hand_off_before_stop(&self) {
        let m = self.raft.metrics().borrow().clone();
        let others = m.membership_config.membership().voter_ids().filter(|v| *v != self.id).count();
        if m.current_leader != Some(self.id) || others == 0 {
            return;
        }
        match self.admin_local(crate::node::AdminRequest::TransferLeader { to: None }).await {
            Ok(()) => tracing::info!("handed leadership over before stopping"),
            Err(e) => tracing::warn!("stopping without handing leadership over: {e}"),
        }
    }

}
