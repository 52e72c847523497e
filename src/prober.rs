//! Optional automatic recovery of failed servers: the leader probes each `failed` server with a
//! TCP connect and re-enables it after enough consecutive healthy probes.
//!
//! Hysteresis, so a flapping server cannot flood the history and the event log: a server must
//! stay failed for a hold-down time before it can recover, and every recovery in the last
//! `FLAP_WINDOW_MS` doubles the number of healthy probes the next recovery needs (up to
//! `PROBE_STREAK_MULTIPLIER_MAX` times).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::commands::{submit, WriteMeta};
use crate::machine::MachineHandle;
use roster_raft::RaftNode;
use crate::domain::{Change, CommandBody, ServerName, ServerStatus};

/// Recoveries within this window count as flapping.
pub const FLAP_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Largest factor by which flapping raises the healthy probes needed.
pub const PROBE_STREAK_MULTIPLIER_MAX: u32 = 16;
/// Most servers probed in one round.
pub const PROBES_PER_ROUND_MAX: usize = 256;
/// Longest a single probe waits for a connection.
pub const PROBE_TIMEOUT_MAX_MS: u64 = 1_000;

/// When and how failed servers are probed.
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// Consecutive healthy probes that re-enable a failed server.
    pub healthy_probes: u32,
    pub interval_ms: u64,
    /// Minimum time a server stays failed before it may recover.
    pub hold_down_ms: u64,
}

#[derive(Default)]
struct Track {
    streak: u32,
    failed_since: Option<Instant>,
}

/// The healthy probes needed given recent recoveries.
pub fn required_streak(base: u32, recent_recoveries: usize) -> u32 {
    let factor = 1u32.checked_shl(recent_recoveries as u32).unwrap_or(u32::MAX).min(PROBE_STREAK_MULTIPLIER_MAX);
    base.saturating_mul(factor)
}

/// Runs until the task is dropped.
pub async fn run(node: RaftNode, machine: MachineHandle, cfg: ProbeConfig) {
    let interval = Duration::from_millis(cfg.interval_ms.max(10));
    let probe_timeout = Duration::from_millis((cfg.interval_ms / 2).clamp(10, PROBE_TIMEOUT_MAX_MS));
    let mut tracks: BTreeMap<ServerName, Track> = BTreeMap::new();
    let mut recoveries: BTreeMap<ServerName, VecDeque<Instant>> = BTreeMap::new();
    loop {
        tokio::time::sleep(interval).await;
        let is_leader = node.raft.metrics().borrow().current_leader == Some(node.id);
        if !is_leader {
            tracks.clear();
            continue;
        }
        let failed: Vec<(ServerName, String)> = {
            let live = machine.read();
            live.state
                .servers
                .values()
                .filter(|s| s.status == ServerStatus::Failed)
                .take(PROBES_PER_ROUND_MAX)
                .map(|s| (s.name.clone(), format!("{}:{}", s.host, s.port)))
                .collect()
        };
        tracks.retain(|name, _| failed.iter().any(|(n, _)| n == name));
        let now = Instant::now();
        for (name, addr) in failed {
            let healthy = matches!(tokio::time::timeout(probe_timeout, TcpStream::connect(&addr)).await, Ok(Ok(_)));
            let track = tracks.entry(name.clone()).or_default();
            track.failed_since.get_or_insert(now);
            track.streak = if healthy { track.streak + 1 } else { 0 };
            let recent = recoveries.entry(name.clone()).or_default();
            while recent.front().is_some_and(|t| now.duration_since(*t) > Duration::from_millis(FLAP_WINDOW_MS)) {
                recent.pop_front();
            }
            let needed = required_streak(cfg.healthy_probes, recent.len());
            let held = track.failed_since.is_some_and(|t| now.duration_since(t) >= Duration::from_millis(cfg.hold_down_ms));
            if track.streak >= needed && held {
                let meta = WriteMeta {
                    actor: format!("prober:node{}", node.id),
                    comment: format!("recovered after {} consecutive healthy probes", track.streak),
                    expected_revision: None,
                    idempotency_key: None,
                };
                let change = Change::EnableServer { name: name.clone() };
                match submit(&node, meta, CommandBody::Apply { changes: vec![change] }).await {
                    Ok(_) => {
                        tracing::info!(server = %name, "re-enabled after healthy probes");
                        recent.push_back(now);
                        tracks.remove(&name);
                    }
                    Err(e) => tracing::warn!(server = %name, "could not re-enable: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flapping_raises_the_bar() {
        for (base, recent, want) in [(3, 0, 3), (3, 1, 6), (3, 2, 12), (3, 4, 48), (3, 10, 48), (0, 3, 0)] {
            assert_eq!(super::required_streak(base, recent), want, "base {base} recent {recent}");
        }
    }
}
