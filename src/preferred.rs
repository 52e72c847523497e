//! Preferred leader: `roster serve --leader-priority N` marks a node the cluster should be led
//! by when it can, as the product's priority-0 server took the primary role back.
//!
//! Lower numbers are preferred (0 first); a node without the flag is never preferred. Every
//! node runs [`run`], which acts only while its node leads: each second it asks the other
//! voters' `/healthz` for their priority and checks in its own replication state that they
//! are caught up. A voter strictly preferred over the leader that stays reachable and caught
//! up for [`STABLE_CHECKS`] checks in a row gets the leadership by an ordinary leader
//! transfer. Hysteresis: equal priorities never move it, and a leader moves it automatically
//! at most once per [`MIN_GAP_MS`], so a preferred node that keeps restarting cannot make
//! the leadership flap faster than that.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::api::Ctx;

/// How often the leader looks for a preferred voter.
pub const CHECK_EVERY_MS: u64 = 1_000;
/// Consecutive checks a preferred voter must pass (reachable, caught up) before it gets the
/// leadership.
pub const STABLE_CHECKS: u32 = 3;
/// A caught-up voter's replication is at most this many entries behind the leader's log.
pub const CAUGHT_UP_ENTRIES: u64 = 1_000;
/// Least time between two automatic moves by the same leader.
pub const MIN_GAP_MS: u64 = 15_000;
/// How long a voter has to answer `/healthz`.
const ASK_TIMEOUT_MS: u64 = 500;

/// Whether priority `a` is strictly preferred over `b` (lower first; none is never preferred).
pub fn preferred_over(a: Option<u32>, b: Option<u32>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x < y,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Asks node `addr` for its leader priority; `Err` when it does not answer in time.
pub async fn ask_priority(ctx: &Ctx, addr: &str) -> Result<Option<u32>, ()> {
    let url = ctx.transport.url(addr, "/healthz");
    let answer = ctx.peer_http.get(url).timeout(Duration::from_millis(ASK_TIMEOUT_MS)).send().await.map_err(|_| ())?;
    let v: serde_json::Value = answer.json().await.map_err(|_| ())?;
    Ok(v["leader_priority"].as_u64().and_then(|p| u32::try_from(p).ok()))
}

/// Runs for the node's lifetime (see the module docs).
pub async fn run(ctx: Ctx, own: Option<u32>) {
    let me = ctx.node.id;
    let mut streak: BTreeMap<u64, u32> = BTreeMap::new();
    let mut last_move: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(CHECK_EVERY_MS)).await;
        let m = ctx.node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if m.current_leader != Some(me) || membership.get_joint_config().len() > 1 {
            streak.clear();
            continue;
        }
        let voters: Vec<(u64, String)> = membership
            .voter_ids()
            .filter(|v| *v != me)
            .filter_map(|v| membership.get_node(&v).map(|n| (v, n.addr.clone())))
            .collect();
        let ctx = &ctx;
        let asks = voters.iter().map(|(id, addr)| async move { (*id, ask_priority(ctx, addr).await) });
        let answers = futures::future::join_all(asks).await;
        let last = m.last_log_index.unwrap_or(0);
        let matched = |id: u64| m.replication.as_ref().and_then(|r| r.get(&id).cloned()).flatten().map_or(0, |l| l.index);
        // The most preferred voter that is up and caught up now (ties: the lower id).
        let best = answers
            .iter()
            .filter_map(|(id, p)| p.ok().map(|p| (*id, p)))
            .filter(|(id, p)| preferred_over(*p, own) && matched(*id) + CAUGHT_UP_ENTRIES >= last)
            .min_by_key(|(id, p)| (p.unwrap_or(u32::MAX), *id));
        let Some((target, priority)) = best else {
            streak.clear();
            continue;
        };
        streak.retain(|id, _| *id == target);
        let n = streak.entry(target).or_default();
        *n += 1;
        if *n < STABLE_CHECKS || last_move.is_some_and(|t| t.elapsed() < Duration::from_millis(MIN_GAP_MS)) {
            continue;
        }
        streak.clear();
        last_move = Some(Instant::now());
        let priority = priority.map_or("none".to_string(), |p| p.to_string());
        tracing::info!(target, %priority, "moving the leadership to the preferred node");
        let req = roster_raft::node::AdminRequest::TransferLeader { to: Some(target) };
        match ctx.node.admin_local(req).await {
            Ok(()) => {
                let msg = format!("leadership moved from node {me} to node {target}, which is preferred (leader priority {priority})");
                crate::commands::record_event(&ctx.node, crate::domain::oplog::Level::Info, "leader_transferred", msg, format!("node:{me}")).await;
            }
            Err(e) => tracing::warn!(target, "moving the leadership to the preferred node failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::preferred_over;

    #[test]
    fn lower_priorities_are_preferred_and_none_never_is() {
        assert!(preferred_over(Some(0), Some(1)));
        assert!(preferred_over(Some(5), None));
        assert!(!preferred_over(Some(1), Some(1)));
        assert!(!preferred_over(Some(2), Some(1)));
        assert!(!preferred_over(None, Some(9)));
        assert!(!preferred_over(None, None));
    }
}
