//! The seeded fault schedule and the code that injects and heals each fault.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

use crate::client::{get_json, write_op};
use crate::cluster::{AgentProc, Cluster};
use crate::model::FaultRecord;
use crate::net::Net;
use crate::workload::{client_rng, random_body, Shared};


#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Oneway,
    Membership,
    Restart,
    Snapshot,
    Failpoint,
    SnapshotCrashLoop,
    Transfer,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Oneway,
        FaultKind::Membership,
        FaultKind::Restart,
        FaultKind::Snapshot,
        FaultKind::Failpoint,
        FaultKind::SnapshotCrashLoop,
        FaultKind::Transfer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Oneway => "oneway",
            FaultKind::Membership => "membership",
            FaultKind::Restart => "restart",
            FaultKind::Snapshot => "snapshot",
            FaultKind::Failpoint => "failpoint",
            FaultKind::SnapshotCrashLoop => "snapshot-crash-loop",
            FaultKind::Transfer => "transfer",
        }
    }

    /// Needs nftables in network namespaces.
    pub fn needs_net(self) -> bool {
        matches!(self, FaultKind::Partition | FaultKind::Oneway)
    }

    fn variants(self) -> &'static [&'static str] {
        match self {
            FaultKind::Kill => &["leader", "follower", "random", "agent"],
            FaultKind::Pause => &["leader", "follower", "random"],
            FaultKind::Partition => &["isolate-leader", "minority-majority", "bridge"],
            FaultKind::Oneway => &["leader-mute", "leader-deaf", "lossy"],
            FaultKind::Membership => &["replace-leader", "replace-follower"],
            FaultKind::Restart => &["all"],
            // Leadership moved on request (to a chosen follower, or to the most up-to-date
            // one), or by stopping the leader with SIGTERM, which hands over before it exits.
            FaultKind::Transfer => &["to-follower", "auto", "sigterm-leader"],
            FaultKind::Snapshot => &[
                "snapshot_install_stage",
                "snapshot_install_renamed",
                "snapshot_install_before",
                "snapshot_install_load",
                "snapshot_install_final",
                "snapshot_install_after",
                "kill-during-catch-up",
            ],
            // The install-path point the loop starts at; it moves on to the next ones.
            FaultKind::SnapshotCrashLoop => INSTALL_POINTS,
            // Every fail point `roster serve` knows (`ROSTER_FAILPOINT=<name>:<n>`).
            FaultKind::Failpoint => roster_storage::failpoint::NAMES,
        }
    }

    /// Parses `all`, `none` or a comma-separated list of kinds.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, String> {
        match s {
            "all" => return Ok(Self::ALL.to_vec()),
            "none" | "" => return Ok(Vec::new()),
            _ => {}
        }
        let mut out = BTreeSet::new();
        for part in s.split(',').map(str::trim) {
            let k = Self::ALL
                .iter()
                .find(|k| k.name() == part)
                .ok_or_else(|| format!("unknown fault kind {part:?}; known: all, none, {}", Self::ALL.map(|k| k.name()).join(", ")))?;
            out.insert(*k);
        }
        Ok(out.into_iter().collect())
    }
}

/// The fail points on a follower's snapshot install path, in the order an install passes them.
pub const INSTALL_POINTS: &[&str] = &[
    "snapshot_install_stage",
    "snapshot_install_renamed",
    "snapshot_install_before",
    "purge_before",
    "snapshot_install_load",
    "snapshot_install_final",
    "snapshot_install_after",
];

/// Crash steps per `snapshot-crash-loop` fault (each: compact past a follower, crash it at an
/// install point, kill -9 it again during the next start, which redoes or restarts the install).
pub const CRASH_LOOP_STEPS: usize = 3;

/// One planned fault: everything random about it is drawn from the seed up front.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub kind: FaultKind,
    pub variant: String,
    /// How long the fault lasts before healing.
    pub hold_ms: u64,
    /// Calm time after recovery before the next fault.
    pub gap_ms: u64,
    /// Drawn once; picks targets among candidates at injection time.
    pub pick: u64,
    /// Fail point hit count, or loss percentage.
    pub param: u64,
}

/// The schedule: rounds in which every enabled kind appears once, in a seeded order.
pub fn schedule(seed: u64, kinds: &[FaultKind], count: usize) -> Vec<Plan> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    // Variants rotate from a seeded offset, so consecutive rounds cover every variant.
    let offsets: Vec<usize> = FaultKind::ALL.iter().map(|_| rng.gen_range(0..100)).collect();
    let mut round_no = 0;
    while out.len() < count {
        let mut round = kinds.to_vec();
        round.shuffle(&mut rng);
        for kind in round {
            let vs = kind.variants();
            let k = FaultKind::ALL.iter().position(|x| *x == kind).expect("known kind");
            let variant = vs[(offsets[k] + round_no) % vs.len()].to_string();
            let hold_ms = match kind {
                FaultKind::Kill => rng.gen_range(300..3_000),
                FaultKind::Pause => rng.gen_range(1_500..4_000),
                FaultKind::Partition | FaultKind::Oneway => rng.gen_range(2_000..6_000),
                FaultKind::Restart => rng.gen_range(300..2_500),
                _ => rng.gen_range(50..600),
            };
            let param = match (kind, variant.as_str()) {
                (FaultKind::Oneway, _) => rng.gen_range(20..45),
                (FaultKind::Failpoint, v) if v.starts_with("log_append") || v.starts_with("apply") => rng.gen_range(1..20),
                _ => 1,
            };
            out.push(Plan { kind, variant, hold_ms, gap_ms: rng.gen_range(500..2_000), pick: rng.gen(), param });
        }
        round_no += 1;
    }
    out.truncate(count);
    out
}

/// Settings the injector needs.
pub struct InjectorConfig {
    pub nodes: usize,
    pub liveness_bound: Duration,
    pub snapshot_every_logs: u64,
}

/// Injects faults into a running cluster and heals them.
pub struct Injector<'a> {
    pub cluster: &'a mut Cluster,
    /// `roster agent` processes (the `kill agent` variant restarts one).
    pub agents: &'a mut Vec<AgentProc>,
    pub net: &'a mut Net,
    pub shared: Arc<Shared>,
    pub cfg: InjectorConfig,
    rng: StdRng,
    pub unexpected_exits: Vec<String>,
    /// Unexpected exits per node (only the first is reported in full).
    pub exits: std::collections::BTreeMap<u64, usize>,
    next_id: u64,
}

fn log(shared: &Shared, msg: &str) {
    eprintln!("[{:>7.1}s] {msg}", shared.rec.clock.now_us() as f64 / 1e6);
}

impl<'a> Injector<'a> {
    pub fn new(cluster: &'a mut Cluster, agents: &'a mut Vec<AgentProc>, net: &'a mut Net, shared: Arc<Shared>, cfg: InjectorConfig) -> Self {
        let rng = client_rng(shared.seed, "injector");
        Self { cluster, agents, net, shared, cfg, rng, unexpected_exits: Vec::new(), exits: Default::default(), next_id: 1 }
    }

    fn log(&self, msg: &str) {
        log(&self.shared, msg);
    }

    fn pick<T: Copy>(items: &[T], pick: u64) -> Option<T> {
        (!items.is_empty()).then(|| items[(pick % items.len() as u64) as usize])
    }

    /// Notices members that exited without the harness asking (a crash of the node itself),
    /// records them and restarts them.
    pub fn reap_unexpected(&mut self) {
        for id in self.cluster.member_ids() {
            let expected_fp = self.cluster.nodes[&id].failpoint.clone();
            let had_child = self.cluster.nodes[&id].child.is_some();
            if had_child && !self.cluster.is_running(id) {
                if expected_fp.is_none() {
                    let reason = crash_reason(&self.cluster.nodes[&id].log);
                    let n = self.exits.entry(id).or_insert(0);
                    *n += 1;
                    if *n == 1 {
                        let m = format!("node {id} exited by itself (no fail point armed): {reason}");
                        self.log(&format!("WARNING: {m}"));
                        self.unexpected_exits.push(m);
                    }
                }
                let _ = self.cluster.start(id, None);
            }
        }
    }

    /// Heals everything: network rules, paused and dead members.
    pub fn heal_all(&mut self) {
        if let Err(e) = self.net.heal() {
            self.log(&format!("WARNING: healing the network failed: {e:#}"));
        }
        let ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        for id in ids {
            if self.cluster.nodes[&id].paused {
                self.cluster.resume(id);
            }
        }
        self.reap_unexpected();
        for id in self.cluster.member_ids() {
            if !self.cluster.is_running(id) {
                if let Err(e) = self.cluster.start(id, None) {
                    self.log(&format!("WARNING: restarting node {id}: {e:#}"));
                }
            }
        }
    }

    /// One recorded write through the live members; the revision if acknowledged.
    async fn probe_write(&mut self, client: &str) -> Option<u64> {
        let addrs: Vec<String> = self.cluster.live_members().iter().map(|id| self.cluster.addr(*id)).collect();
        let addrs = if addrs.is_empty() { self.shared.targets() } else { addrs };
        self.write_via(client, addrs).await
    }

    /// One recorded write sent to the leader (or, without one, any live member but `avoid`),
    /// to move the log forward quickly.
    async fn filler_write(&mut self, leader: Option<u64>, avoid: u64) -> Option<u64> {
        let addrs: Vec<String> = match leader.filter(|l| *l != avoid) {
            Some(l) => vec![self.cluster.addr(l)],
            None => self.cluster.live_members().into_iter().filter(|m| *m != avoid).map(|id| self.cluster.addr(id)).collect(),
        };
        if addrs.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return None;
        }
        self.write_via("filler", addrs).await
    }

    async fn write_via(&mut self, client: &str, addrs: Vec<String>) -> Option<u64> {
        let body = random_body(&mut self.rng);
        let key = self.shared.key(client);
        let never = || false;
        write_op(&self.shared.rec, &self.shared.http, &mut self.rng, &addrs, client, key, &body, None, &never).await
    }

    /// Refreshes the members and tells the clients where they are.
    pub async fn sync_members(&mut self) {
        self.cluster.sync_members(Duration::from_secs(15)).await;
        let addrs: Vec<String> = self.cluster.member_ids().iter().map(|id| self.cluster.addr(*id)).collect();
        self.shared.set_targets(addrs);
    }

    /// Waits until a write succeeds again (bounded); the time it did.
    pub async fn recover(&mut self) -> Option<u64> {
        let start = Instant::now();
        while start.elapsed() < self.cfg.liveness_bound {
            let left = self.cfg.liveness_bound.saturating_sub(start.elapsed());
            if self.cluster.wait_leader(left.min(Duration::from_secs(5))).await.is_some() && self.probe_write("probe").await.is_some() {
                let t = self.shared.rec.clock.now_us();
                self.sync_members().await;
                return Some(t);
            }
            self.reap_unexpected();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// The leader, or any live member if there is none right now.
    async fn leader_or_any(&mut self, pick: u64) -> Option<u64> {
        match self.cluster.leader().await {
            Some(l) => Some(l),
            None => Self::pick(&self.cluster.live_members(), pick),
        }
    }

    async fn target(&mut self, variant: &str, pick: u64) -> Option<u64> {
        let live = self.cluster.live_members();
        let leader = self.cluster.leader().await;
        match variant {
            "leader" => leader.or_else(|| Self::pick(&live, pick)),
            "follower" => {
                let f: Vec<u64> = live.iter().copied().filter(|id| Some(*id) != leader).collect();
                Self::pick(&f, pick)
            }
            _ => Self::pick(&live, pick),
        }
    }

    fn slot(&self, id: u64) -> usize {
        self.cluster.nodes[&id].slot
    }

    /// Runs one planned fault: inject, hold, heal, wait for recovery.
    pub async fn run(&mut self, plan: &Plan) -> FaultRecord {
        let mut rec = FaultRecord {
            id: self.next_id,
            kind: plan.kind.name().into(),
            variant: plan.variant.clone(),
            start_us: self.shared.rec.clock.now_us(),
            injected: true,
            ..FaultRecord::default()
        };
        self.next_id += 1;
        self.reap_unexpected();
        if plan.kind.needs_net() && !self.net.can_filter {
            rec.injected = false;
            rec.note = format!("skipped: needs network namespaces and nftables (network: {})", self.net.describe());
            rec.healed_us = rec.start_us;
            self.log(&format!("fault {}: {} {} {}", rec.id, rec.kind, rec.variant, rec.note));
            return rec;
        }
        self.log(&format!("fault {}: {} {} ...", rec.id, rec.kind, rec.variant));
        let result = match plan.kind {
            FaultKind::Kill => self.kill(plan, &mut rec).await,
            FaultKind::Pause => self.pause(plan, &mut rec).await,
            FaultKind::Partition => self.partition(plan, &mut rec).await,
            FaultKind::Oneway => self.oneway(plan, &mut rec).await,
            FaultKind::Membership => self.membership(plan, &mut rec).await,
            FaultKind::Restart => self.restart_all(plan, &mut rec).await,
            FaultKind::Snapshot => self.snapshot(plan, &plan.variant, None, &mut rec).await,
            FaultKind::Failpoint => self.failpoint(plan, &mut rec).await,
            FaultKind::SnapshotCrashLoop => self.crash_loop(plan, &mut rec).await,
            FaultKind::Transfer => self.transfer(plan, &mut rec).await,
        };
        if let Err(e) = result {
            rec.note = format!("{} (error: {e:#})", rec.note);
        }
        self.heal_all();
        rec.healed_us = self.shared.rec.clock.now_us();
        if rec.injected {
            rec.recovered_us = self.recover().await;
        } else {
            rec.recovered_us = Some(rec.healed_us);
        }
        let took = rec.recovered_us.map(|r| format!("{} ms", r.saturating_sub(rec.healed_us) / 1000)).unwrap_or("NOT within the bound".into());
        self.log(&format!(
            "fault {}: {} {} targets [{}] {} -- healed, a write succeeded again after {took}",
            rec.id,
            rec.kind,
            rec.variant,
            rec.targets.join(","),
            rec.note
        ));
        rec
    }

    async fn hold(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn kill(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        if plan.variant == "agent" {
            if self.agents.is_empty() {
                rec.injected = false;
                rec.note = "no agent processes".into();
                return Ok(());
            }
            let i = (plan.pick % self.agents.len() as u64) as usize;
            rec.targets.push(format!("agent {}", self.agents[i].id));
            self.agents[i].kill();
            self.hold(plan.hold_ms).await;
            let bin = self.cluster.bin.clone();
            self.agents[i].spawn(&bin, &self.shared.addrs)?;
            rec.note = "the agent resumes from its deployed file".into();
            return Ok(());
        }
        let Some(t) = self.target(&plan.variant, plan.pick).await else {
            rec.injected = false;
            rec.note = "no target".into();
            return Ok(());
        };
        rec.targets.push(t.to_string());
        self.cluster.kill(t);
        self.hold(plan.hold_ms).await;
        self.cluster.start(t, None)?;
        Ok(())
    }

    /// Moves the leadership while the workload writes: `POST /v1/cluster/leader`, or a
    /// graceful stop of the leader (restarted after the hold).
    async fn transfer(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let Some(leader) = self.cluster.leader().await else {
            rec.injected = false;
            rec.note = "no leader".into();
            return Ok(());
        };
        if plan.variant == "sigterm-leader" {
            rec.targets.push(leader.to_string());
            let clean = self.cluster.terminate(leader, Duration::from_secs(20)).await;
            rec.note = format!("leader {leader} stopped with SIGTERM ({})", if clean { "clean exit" } else { "killed after 20 s" });
            self.hold(plan.hold_ms).await;
            self.cluster.start(leader, None)?;
            return Ok(());
        }
        let body = match plan.variant.as_str() {
            "to-follower" => {
                let followers: Vec<u64> = self.cluster.member_ids().into_iter().filter(|m| *m != leader).collect();
                let Some(f) = Self::pick(&followers, plan.pick) else {
                    rec.injected = false;
                    rec.note = "no follower".into();
                    return Ok(());
                };
                rec.targets.push(f.to_string());
                json!({"node": f})
            }
            _ => json!({}),
        };
        let ok = self.admin("POST", "/v1/cluster/leader", Some(body)).await;
        rec.note = format!("transfer from leader {leader}: {}", if ok { "done" } else { "refused or failed" });
        Ok(())
    }

    async fn pause(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let Some(t) = self.target(&plan.variant, plan.pick).await else {
            rec.injected = false;
            rec.note = "no target".into();
            return Ok(());
        };
        rec.targets.push(t.to_string());
        self.cluster.pause(t);
        self.hold(plan.hold_ms).await;
        self.cluster.resume(t);
        Ok(())
    }

    /// Drops every packet between the groups (not within them).
    fn cut(&mut self, groups: &[Vec<u64>]) {
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for x in a {
                    for y in b {
                        let (sx, sy) = (self.slot(*x), self.slot(*y));
                        self.net.drop_packets(sx, sy, 100);
                        self.net.drop_packets(sy, sx, 100);
                    }
                }
            }
        }
    }

    async fn partition(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let mut members = self.cluster.member_ids();
        let leader = self.leader_or_any(plan.pick).await;
        let mut prng = StdRng::seed_from_u64(plan.pick);
        members.shuffle(&mut prng);
        let groups: Vec<Vec<u64>> = match plan.variant.as_str() {
            "isolate-leader" => {
                let l = leader.unwrap_or(members[0]);
                vec![vec![l], members.iter().copied().filter(|m| *m != l).collect()]
            }
            "minority-majority" => {
                let k = (members.len() - 1) / 2;
                vec![members[..k.max(1)].to_vec(), members[k.max(1)..].to_vec()]
            }
            _ => {
                // A bridge: two sides that cannot talk, and one node that talks to both.
                let bridge = members[0];
                let rest = &members[1..];
                let half = rest.len() / 2;
                rec.note = format!("bridge node {bridge}");
                let (a, b) = (rest[..half].to_vec(), rest[half..].to_vec());
                rec.targets = members.iter().map(u64::to_string).collect();
                self.cut(&[a.clone(), b.clone()]);
                self.net.apply()?;
                rec.note = format!("bridge node {bridge}; sides {a:?} | {b:?}");
                self.hold(plan.hold_ms).await;
                return Ok(());
            }
        };
        rec.targets = groups.iter().map(|g| format!("{g:?}")).collect();
        self.cut(&groups);
        self.net.apply()?;
        self.hold(plan.hold_ms).await;
        Ok(())
    }

    async fn oneway(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let members = self.cluster.member_ids();
        let leader = self.leader_or_any(plan.pick).await.unwrap_or(members[0]);
        match plan.variant.as_str() {
            "leader-mute" | "leader-deaf" => {
                rec.targets.push(leader.to_string());
                for m in members.iter().filter(|m| **m != leader) {
                    let (l, o) = (self.slot(leader), self.slot(*m));
                    if plan.variant == "leader-mute" {
                        self.net.drop_packets(l, o, 100);
                    } else {
                        self.net.drop_packets(o, l, 100);
                    }
                }
                rec.note = if plan.variant == "leader-mute" { "leader's packets to peers dropped" } else { "peers' packets to the leader dropped" }.into();
            }
            _ => {
                for a in &members {
                    for b in &members {
                        let (sa, sb) = (self.slot(*a), self.slot(*b));
                        self.net.drop_packets(sa, sb, plan.param as u8);
                    }
                }
                rec.targets = members.iter().map(u64::to_string).collect();
                rec.note = format!("{}% loss on every link", plan.param);
            }
        }
        self.net.apply()?;
        self.hold(plan.hold_ms).await;
        Ok(())
    }

    /// Adds a node (fresh id, spare slot) and removes one (the leader or a follower), under load.
    async fn membership(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        self.sync_members().await;
        let mut notes = Vec::new();
        if self.cluster.members.len() <= self.cfg.nodes {
            if let Some(slot) = self.cluster.spare_slot() {
                let new = self.cluster.start_joiner(slot)?;
                let addr = self.cluster.addr(new);
                rec.targets.push(format!("+{new}"));
                wait_http(&self.shared.http, &addr, Duration::from_secs(15)).await;
                let ok = self.admin("POST", "/v1/cluster/nodes", Some(json!({"id": new, "addr": addr}))).await;
                notes.push(format!("add node {new} at {addr}: {}", if ok { "ok" } else { "failed" }));
                self.sync_members().await;
                if !self.cluster.members.contains(&new) {
                    // Not a voter: take it out again (it may be a learner).
                    self.admin("DELETE", &format!("/v1/cluster/nodes/{new}"), None).await;
                    self.cluster.retire(new);
                    notes.push(format!("node {new} did not become a voter; retired"));
                }
            } else {
                notes.push("no spare slot".into());
            }
        }
        if self.cluster.members.len() > self.cfg.nodes {
            let leader = self.cluster.leader().await;
            let victim = if plan.variant == "replace-leader" {
                leader
            } else {
                let f: Vec<u64> = self.cluster.member_ids().into_iter().filter(|m| Some(*m) != leader && !rec.targets.contains(&format!("+{m}"))).collect();
                Self::pick(&f, plan.pick)
            };
            if let Some(v) = victim {
                rec.targets.push(format!("-{v}"));
                let ok = self.admin("DELETE", &format!("/v1/cluster/nodes/{v}"), None).await;
                notes.push(format!("remove node {v}: {}", if ok { "ok" } else { "failed" }));
                self.sync_members().await;
                if !self.cluster.members.contains(&v) {
                    self.cluster.retire(v);
                }
            }
        }
        rec.note = format!("{}; voters now {:?}", notes.join("; "), self.cluster.members);
        Ok(())
    }

    /// A membership request sent to live members in turn until one succeeds (bounded).
    async fn admin(&mut self, method: &str, path: &str, body: Option<serde_json::Value>) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(40) {
            let mut targets = self.cluster.live_members();
            if let Some(l) = self.cluster.leader().await {
                targets.retain(|t| *t != l);
                targets.insert(0, l);
            }
            for t in targets {
                let url = format!("http://{}{path}", self.cluster.addr(t));
                let req = match method {
                    "POST" => self.shared.http.post(url).json(body.as_ref().unwrap_or(&json!({}))),
                    _ => self.shared.http.delete(url),
                };
                match req.timeout(Duration::from_secs(30)).send().await {
                    Ok(r) if r.status().is_success() => return true,
                    Ok(r) => self.log(&format!("{method} {path} on node {t}: HTTP {}", r.status())),
                    Err(e) => self.log(&format!("{method} {path} on node {t}: {e}")),
                }
                if start.elapsed() >= Duration::from_secs(40) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    }

    async fn restart_all(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let members = self.cluster.member_ids();
        rec.targets = members.iter().map(u64::to_string).collect();
        for m in &members {
            self.cluster.kill(*m);
        }
        self.hold(plan.hold_ms).await;
        for m in &members {
            self.cluster.start(*m, None)?;
        }
        Ok(())
    }

    /// Cuts a follower off until the leader compacted past it, then brings it back so it must
    /// install a snapshot, and crashes it during the install (a fail point, or SIGKILL).
    /// Compacts the log past a follower, then brings it back armed with the install-path fail
    /// point `how` (or kills it `hold_ms` into catch-up). With `then`, the crashed node is
    /// started once more armed with `then` (a crash during the redo of its install) before
    /// the clean start.
    async fn snapshot(&mut self, plan: &Plan, how: &str, then: Option<&str>, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let Some(f) = self.target("follower", plan.pick).await else {
            rec.injected = false;
            rec.note = "no follower".into();
            return Ok(());
        };
        rec.targets.push(f.to_string());
        // A follower that was just restarted (the crash loop kills it again right after a
        // start) answers once it is up: wait for it (bounded), so the compaction below is
        // measured against its real log and the install really happens.
        let mut last = None;
        let asked = Instant::now();
        while last.is_none() && asked.elapsed() < Duration::from_secs(20) {
            last = self.cluster.status(f).await.and_then(|v| v["last_log_index"].as_u64());
            if last.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let last = last.unwrap_or(0);
        let partitioned = self.net.can_filter;
        if partitioned {
            let others: Vec<u64> = self.cluster.member_ids().into_iter().filter(|m| *m != f).collect();
            self.cut(&[vec![f], others]);
            self.net.apply()?;
        } else {
            self.cluster.kill(f);
        }
        // Drive the log forward until the leader purged past the follower's last entry.
        let start = Instant::now();
        let mut writes = 0u64;
        let mut purged = 0;
        let mut leader = None;
        while start.elapsed() < Duration::from_secs(45) && writes < 20 * self.cfg.snapshot_every_logs.max(50) {
            if writes % 20 == 0 {
                leader = self.cluster.leader().await;
                if let Some(l) = leader {
                    purged = self.cluster.status(l).await.and_then(|v| v["purged_index"].as_u64()).unwrap_or(0);
                    if purged > last + 1 {
                        break;
                    }
                }
            }
            self.filler_write(leader, f).await;
            writes += 1;
        }
        let compacted = purged > last + 1;
        self.cluster.kill(f);
        let failpoint = (how != "kill-during-catch-up").then(|| format!("{how}:1"));
        self.cluster.start(f, failpoint.clone())?;
        self.net.heal()?;
        let outcome = match &failpoint {
            Some(fp) => {
                let name = fp.split(':').next().unwrap_or_default().to_string();
                if self.cluster.wait_exit(f, Duration::from_secs(20)).await {
                    if self.cluster.failpoint_fired(f, &name) {
                        format!("crashed at {name}")
                    } else {
                        let m = format!("node {f} exited without reaching {name}: {}", crash_reason(&self.cluster.nodes[&f].log));
                        self.unexpected_exits.push(m.clone());
                        m
                    }
                } else {
                    self.cluster.kill(f);
                    format!("fail point {name} not reached")
                }
            }
            None => {
                tokio::time::sleep(Duration::from_millis(plan.hold_ms)).await;
                self.cluster.kill(f);
                format!("killed {} ms into catch-up", plan.hold_ms)
            }
        };
        let mut outcome = outcome;
        if let Some(second) = then.filter(|_| outcome.starts_with("crashed")) {
            self.cluster.nodes.get_mut(&f).expect("node").failpoint = None;
            self.cluster.start(f, Some(format!("{second}:1")))?;
            if self.cluster.wait_exit(f, Duration::from_secs(20)).await {
                if self.cluster.failpoint_fired(f, second) {
                    outcome.push_str(&format!(", then crashed again at {second}"));
                } else {
                    let m = format!("node {f} exited without reaching {second}: {}", crash_reason(&self.cluster.nodes[&f].log));
                    self.unexpected_exits.push(m.clone());
                    outcome.push_str(&format!(", then {m}"));
                }
            } else {
                self.cluster.kill(f);
                outcome.push_str(&format!(", then {second} not reached (no install left to redo)"));
            }
        }
        self.cluster.nodes.get_mut(&f).expect("node").failpoint = None;
        self.cluster.start(f, None)?;
        rec.note = format!(
            "follower last index {last}, leader purged {purged} ({}) after {writes} filler writes, {}; {outcome}",
            if compacted { "compacted past it" } else { "NOT compacted past it in time" },
            if partitioned { "partitioned" } else { "stopped" }
        );
        Ok(())
    }

    /// `snapshot-crash-loop`: `CRASH_LOOP_STEPS` times, compact past a follower, crash it at
    /// the next install-path point (a crash that leaves an install pending is crashed once
    /// more in its redo), then kill -9 it again `hold_ms` into its next start.
    async fn crash_loop(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let first = INSTALL_POINTS.iter().position(|p| *p == plan.variant).unwrap_or(0);
        let mut notes = Vec::new();
        for step in 0..CRASH_LOOP_STEPS {
            let point = INSTALL_POINTS[(first + step) % INSTALL_POINTS.len()];
            let mut sub = FaultRecord::default();
            let then = (step % 2 == 0).then_some("snapshot_install_final");
            self.snapshot(plan, point, then, &mut sub).await?;
            let Some(f) = sub.targets.first().and_then(|t| t.parse::<u64>().ok()) else {
                notes.push(format!("step {step}: {}", sub.note));
                continue;
            };
            if !rec.targets.contains(&f.to_string()) {
                rec.targets.push(f.to_string());
            }
            // Again during the next start: a redo, or a catch-up that needs a new install.
            tokio::time::sleep(Duration::from_millis(plan.hold_ms)).await;
            self.cluster.kill(f);
            self.cluster.start(f, None)?;
            notes.push(format!("step {step} ({point}): {}; killed again {} ms into the next start", sub.note, plan.hold_ms));
        }
        rec.note = notes.join(" | ");
        Ok(())
    }

    /// Restarts a node armed with a fail point, drives it there, then restarts it clean.
    async fn failpoint(&mut self, plan: &Plan, rec: &mut FaultRecord) -> anyhow::Result<()> {
        let name = plan.variant.clone();
        if name.starts_with("snapshot_install") {
            return self.snapshot(plan, &name, None, rec).await;
        }
        if name == "snapshot_redo" {
            // Reached only at a start that finds an interrupted install: crash one first.
            return self.snapshot(plan, "snapshot_install_load", Some("snapshot_redo"), rec).await;
        }
        let variant = if name.starts_with("vote_save") { "leader" } else if plan.pick % 2 == 0 { "leader" } else { "follower" };
        let Some(t) = self.target(variant, plan.pick / 2).await else {
            rec.injected = false;
            rec.note = "no target".into();
            return Ok(());
        };
        rec.targets.push(t.to_string());
        let spec = format!("{name}:{}", plan.param);
        self.cluster.kill(t);
        if name.starts_with("vote_save") {
            // A restarted leader resumes its committed vote; to make it save a vote, let the
            // others elect a new leader (a higher term) first.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
        self.cluster.start(t, Some(spec.clone()))?;
        let start = Instant::now();
        let mut exited = false;
        let mut leader = None;
        let mut n = 0u64;
        let mut forced = false;
        while start.elapsed() < Duration::from_secs(15) {
            if !self.cluster.is_running(t) {
                exited = true;
                break;
            }
            // A vote is saved on a term change: force an election by pausing the leader.
            if name.starts_with("vote_save") && !forced && start.elapsed() > Duration::from_secs(3) {
                forced = true;
                // Pausing the leader makes the others elect; if the armed node leads, it
                // learns the new term when it continues. Either way it saves a vote.
                let l = self.cluster.leader().await.unwrap_or(t);
                self.cluster.pause(l);
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                self.cluster.resume(l);
                rec.note = format!("paused node {l} to force an election; ");
                continue;
            }
            // Snapshots and purges need log entries; the workload alone may be slow.
            if name.starts_with("snapshot_build") || name.starts_with("purge") || name == "snapshot_prune" {
                if n % 50 == 0 {
                    leader = self.cluster.leader().await;
                }
                n += 1;
                self.filler_write(leader, 0).await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let outcome = if exited {
            if self.cluster.failpoint_fired(t, &name) {
                format!("crashed at {spec}")
            } else {
                let m = format!("node {t} exited without reaching {spec}: {}", crash_reason(&self.cluster.nodes[&t].log));
                self.unexpected_exits.push(m.clone());
                m
            }
        } else {
            self.cluster.kill(t);
            format!("fail point {spec} not reached")
        };
        self.cluster.nodes.get_mut(&t).expect("node").failpoint = None;
        self.cluster.start(t, None)?;
        rec.note.push_str(&outcome);
        Ok(())
    }
}

/// Waits until `addr` answers `/healthz` (bounded).
pub async fn wait_http(http: &reqwest::Client, addr: &str, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if get_json(http, &format!("http://{addr}/healthz"), 1_000).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The last `n` bytes of a log file, on one line.
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
    let start = text.len().saturating_sub(n);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    text[start..].replace('\n', " | ")
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Why the last incarnation in a node log stopped: its first error line (`Error:`, a panic,
/// a fatal Raft error), else the log's tail.
pub fn crash_reason(path: &std::path::Path) -> String {
    let text = strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
    let last = text.rsplit("=== chaos: start node").next().unwrap_or("");
    let hit = last.lines().find(|l| l.starts_with("Error:") || l.contains("panicked at") || l.contains("quit RaftCore::main on error"));
    match hit {
        Some(l) => l.trim().chars().take(400).collect(),
        None => log_tail(path, 300),
    }
}

/// Fatal Raft errors anywhere in a node log (each incarnation's first), as
/// "start #N: message" lines. A node whose Raft core stopped keeps serving HTTP, so this is
/// how such a node is noticed.
pub fn fatal_raft_errors(path: &std::path::Path) -> Vec<String> {
    let text = strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
    let mut out = Vec::new();
    for (i, part) in text.split("=== chaos: start node").enumerate() {
        if let Some(l) = part.lines().find(|l| l.contains("quit RaftCore::main on error")) {
            out.push(format!("start #{i}: {}", l.trim().chars().take(400).collect::<String>()));
        }
    }
    out
}
