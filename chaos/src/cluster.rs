//! The `roster serve` processes of a run: start, kill, pause, restart with a fail point,
//! membership, and the leader as the nodes see it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::client::get_json;
use crate::net::Slot;
use crate::procs;

/// One node (a Raft id) and its process.
pub struct NodeProc {
    pub id: u64,
    pub slot: usize,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Started with `--join` (not one of the initial `--peers`).
    pub joined: bool,
    pub child: Option<Child>,
    pub paused: bool,
    /// The fail point the running process was started with.
    pub failpoint: Option<String>,
    pub starts: u32,
}

pub struct Cluster {
    pub bin: PathBuf,
    pub insecure: bool,
    pub serve_args: Vec<String>,
    pub slots: Vec<Slot>,
    pub nodes: BTreeMap<u64, NodeProc>,
    /// Voters as last learned from the cluster.
    pub members: BTreeSet<u64>,
    pub next_id: u64,
    pub dir: PathBuf,
    pub peers: String,
    pub http: reqwest::Client,
}

/// Whether `roster serve --help` offers `--insecure` (then the harness passes it).
pub fn serve_needs_insecure(bin: &Path) -> Result<bool> {
    let out = Command::new(bin).args(["serve", "--help"]).output().with_context(|| format!("running {} serve --help", bin.display()))?;
    anyhow::ensure!(out.status.success(), "{} serve --help failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).contains("--insecure"))
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) on the first `n` slots; the other slots are spare.
    pub fn new(bin: PathBuf, serve_args: Vec<String>, slots: Vec<Slot>, n: usize, dir: PathBuf) -> Result<Cluster> {
        let insecure = serve_needs_insecure(&bin)?;
        let peers = (0..n).map(|i| format!("{}={}", i + 1, slots[i].addr)).collect::<Vec<_>>().join(",");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_millis(3_000))
            .build()?;
        let mut c = Cluster {
            bin,
            insecure,
            serve_args,
            slots,
            nodes: BTreeMap::new(),
            members: (1..=n as u64).collect(),
            next_id: n as u64 + 1,
            dir,
            peers,
            http,
        };
        for i in 0..n {
            let id = i as u64 + 1;
            c.add_node_proc(id, i, false);
            c.start(id, None)?;
        }
        Ok(c)
    }

    fn add_node_proc(&mut self, id: u64, slot: usize, joined: bool) {
        let data_dir = self.dir.join(format!("node-{id}"));
        let log = self.dir.join(format!("node-{id}.log"));
        self.nodes.insert(id, NodeProc { id, slot, data_dir, log, joined, child: None, paused: false, failpoint: None, starts: 0 });
    }

    pub fn addr(&self, id: u64) -> String {
        self.slots[self.nodes[&id].slot].addr.clone()
    }

    pub fn all_addrs(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.addr.clone()).collect()
    }

    /// Starts the process of node `id` (armed with `failpoint` = `name:n` if given).
    pub fn start(&mut self, id: u64, failpoint: Option<String>) -> Result<()> {
        let (bin, insecure, args, peers) = (self.bin.clone(), self.insecure, self.serve_args.clone(), self.peers.clone());
        let slot = self.slots[self.nodes[&id].slot].clone();
        let node = self.nodes.get_mut(&id).expect("known node");
        anyhow::ensure!(node.child.is_none(), "node {id} is already running");
        std::fs::create_dir_all(&node.data_dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut cmd = match &slot.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(["serve", "--node-id", &id.to_string(), "--listen", &slot.addr, "--data-dir"]).arg(&node.data_dir);
        if insecure {
            cmd.arg("--insecure");
        }
        if node.joined {
            cmd.arg("--join");
        } else {
            cmd.args(["--peers", &peers]);
        }
        cmd.args(&args);
        match &failpoint {
            Some(fp) => cmd.env("ROSTER_FAILPOINT", fp),
            None => cmd.env_remove("ROSTER_FAILPOINT"),
        };
        if std::env::var_os("ROSTER_LOG").is_none() {
            cmd.env("ROSTER_LOG", "info,openraft=warn");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        use std::io::Write;
        let mut marker = std::fs::OpenOptions::new().append(true).open(&node.log)?;
        writeln!(marker, "=== chaos: start node {id} (start #{}) failpoint={failpoint:?}", node.starts + 1)?;
        let child = procs::spawn(&mut cmd).with_context(|| format!("starting node {id}"))?;
        node.child = Some(child);
        node.paused = false;
        node.failpoint = failpoint;
        node.starts += 1;
        Ok(())
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        let node = self.nodes.get_mut(&id).expect("known node");
        match node.child.as_mut() {
            Some(c) => {
                if procs::running(c) {
                    true
                } else {
                    if let Some(c) = node.child.take() {
                        procs::forget(&c);
                    }
                    false
                }
            }
            None => false,
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(c) = node.child.take() {
            procs::kill(c);
        }
        node.paused = false;
        node.failpoint = None;
    }

    /// SIGTERM (a graceful stop: a leader hands over first), then waits up to `within` for
    /// the exit; SIGKILL after that. Returns whether it exited by itself, successfully.
    pub async fn terminate(&mut self, id: u64, within: Duration) -> bool {
        let node = self.nodes.get_mut(&id).expect("known node");
        node.paused = false;
        node.failpoint = None;
        let Some(mut c) = node.child.take() else { return false };
        procs::signal(&c, libc::SIGTERM);
        let asked = std::time::Instant::now();
        while asked.elapsed() < within {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        procs::kill(c);
        false
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(c) = &node.child {
            procs::signal(c, libc::SIGSTOP);
            node.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(c) = &node.child {
            procs::signal(c, libc::SIGCONT);
        }
        node.paused = false;
    }

    /// Waits up to `timeout` for node `id`'s process to exit by itself (a fail point).
    pub async fn wait_exit(&mut self, id: u64, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if !self.is_running(id) {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the node's log says its fail point fired.
    pub fn failpoint_fired(&self, id: u64, name: &str) -> bool {
        let text = std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default();
        let last = text.rsplit("=== chaos: start node").next().unwrap_or("");
        last.contains(&format!("fail point {name} reached"))
    }

    /// Members that are running and not paused.
    pub fn live_members(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.members.iter().copied().collect();
        ids.into_iter().filter(|id| self.is_running(*id) && !self.nodes[id].paused).collect()
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        get_json(&self.http, &format!("http://{}/v1/cluster", self.addr(id)), 1_500).await.ok()
    }

    /// The leader as the live members see it: a node that says it leads, agreed by a majority
    /// of the live members that answer.
    pub async fn leader(&mut self) -> Option<u64> {
        let live = self.live_members();
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        let mut answered = 0;
        for id in &live {
            if let Some(v) = self.status(*id).await {
                answered += 1;
                if let Some(l) = v["leader"].as_u64() {
                    *votes.entry(l).or_default() += 1;
                }
            }
        }
        let (l, n) = votes.into_iter().max_by_key(|(_, n)| *n)?;
        if n * 2 <= answered || !live.contains(&l) {
            return None;
        }
        let lv = self.status(l).await?;
        (lv["leader"].as_u64() == Some(l) && lv["state"].as_str() == Some("Leader")).then_some(l)
    }

    /// Waits up to `timeout` for a leader.
    pub async fn wait_leader(&mut self, timeout: Duration) -> Option<u64> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Refreshes `members` (voters) from the leader's view.
    pub async fn refresh_members(&mut self) -> Option<BTreeSet<u64>> {
        let l = self.leader().await?;
        let v = self.status(l).await?;
        let voters: BTreeSet<u64> = v["members"]
            .as_array()?
            .iter()
            .filter(|m| m["voter"].as_bool() == Some(true))
            .filter_map(|m| m["id"].as_u64())
            .collect();
        if !voters.is_empty() {
            self.members = voters.clone();
        }
        Some(voters)
    }

    /// Refreshes `members`, waiting (bounded) for a leader to ask.
    pub async fn sync_members(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.refresh_members().await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// A slot no running node or member uses.
    pub fn spare_slot(&mut self) -> Option<usize> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let mut used = BTreeSet::new();
        for id in ids {
            if self.members.contains(&id) || self.is_running(id) {
                used.insert(self.nodes[&id].slot);
            }
        }
        (0..self.slots.len()).find(|s| !used.contains(s))
    }

    /// Starts a new node (fresh id) with `--join` on `slot`.
    pub fn start_joiner(&mut self, slot: usize) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.add_node_proc(id, slot, true);
        let dir = self.nodes[&id].data_dir.clone();
        let _ = std::fs::remove_dir_all(&dir);
        self.start(id, None)?;
        Ok(id)
    }

    /// Kills a node that left the cluster and deletes its data (kept as `node-ID.retired` if
    /// its log shows a crash or a fatal error, for investigation).
    pub fn retire(&mut self, id: u64) {
        self.kill(id);
        let node = &self.nodes[&id];
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        if log.contains("\nError:") || log.contains("panicked at") || log.contains("quit RaftCore::main on error") {
            let _ = std::fs::rename(&node.data_dir, node.data_dir.with_extension("retired"));
        } else {
            let _ = std::fs::remove_dir_all(&node.data_dir);
        }
        self.members.remove(&id);
    }

    /// Node ids whose process should run: the members.
    pub fn member_ids(&self) -> Vec<u64> {
        self.members.iter().copied().collect()
    }

    pub fn kill_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A `roster agent` process.
pub struct AgentProc {
    pub id: String,
    pub listen: String,
    pub state_dir: PathBuf,
    pub child: Option<Child>,
}

impl AgentProc {
    pub fn start(bin: &Path, id: &str, endpoints: &[String], dir: &Path) -> Result<AgentProc> {
        let state_dir = dir.join(format!("agent-{id}"));
        std::fs::create_dir_all(&state_dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let mut a = AgentProc { id: id.to_string(), listen, state_dir, child: None };
        a.spawn(bin, endpoints)?;
        Ok(a)
    }

    pub fn spawn(&mut self, bin: &Path, endpoints: &[String]) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.state_dir.join("agent.log"))?;
        let mut cmd = Command::new(bin);
        // `--insecure`: the chaos cluster runs without TLS, whatever `roster-dev/secure` holds.
        cmd.args(["agent", "--insecure", "--id", &self.id, "--endpoints", &endpoints.join(","), "--listen", &self.listen, "--state-dir"])
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        self.child = Some(procs::spawn(&mut cmd)?);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(c) = self.child.take() {
            procs::kill(c);
        }
    }

    /// `GET /status` of the agent.
    pub async fn status(&self, http: &reqwest::Client) -> Option<Value> {
        get_json(http, &format!("http://{}/status", self.listen), 2_000).await.ok()
    }

    /// The deployed configuration file.
    pub fn deployed(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state_dir.join("deployed.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}
