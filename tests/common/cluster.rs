//! A cluster of `roster serve` processes, and writes with endpoint failover.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roster::domain::tokens::Role;
use serde_json::Value;

use super::*;

/// A cluster of `roster serve` processes on loopback.
pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Option<NodeProcess>>,
    pub addrs: Vec<String>,
    pub peers: String,
    pub extra: Vec<String>,
}

impl Cluster {
    pub fn start(dir: &Path, n: usize, extra: &[&str]) -> Self {
        let addrs: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let mut c = Cluster { dir: dir.to_path_buf(), nodes: Vec::new(), addrs, peers, extra: extra.iter().map(|s| s.to_string()).collect() };
        for i in 0..n {
            let node = c.spawn(i);
            c.nodes.push(Some(node));
        }
        c.wait_leader(Duration::from_secs(30));
        c
    }

    /// Like [`Cluster::start`], with extra environment variables per node.
    pub fn start_envs(dir: &Path, n: usize, extra: &[&str], envs: &[Vec<(String, String)>]) -> Self {
        let addrs: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let mut c = Cluster { dir: dir.to_path_buf(), nodes: Vec::new(), addrs, peers, extra: extra.iter().map(|s| s.to_string()).collect() };
        for i in 0..n {
            let env: Vec<(&str, &str)> = envs.get(i).map(|e| e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).unwrap_or_default();
            let node = NodeProcess::start_env(&dir.join(format!("node-{}", i + 1)), (i + 1) as u64, &c.addrs[i], &c.peers, extra, &env);
            c.nodes.push(Some(node));
        }
        c.wait_leader(Duration::from_secs(30));
        c
    }

    fn spawn(&self, i: usize) -> NodeProcess {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        NodeProcess::start_with(&self.dir.join(format!("node-{}", i + 1)), (i + 1) as u64, &self.addrs[i], &self.peers, &extra)
    }

    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {} is running", i + 1);
        self.nodes[i] = Some(self.spawn(i));
    }

    /// Restarts node `i` with flags beyond the cluster's.
    pub fn restart_with(&mut self, i: usize, more: &[&str]) {
        assert!(self.nodes[i].is_none(), "node {} is running", i + 1);
        let mut extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        extra.extend_from_slice(more);
        let dir = self.dir.join(format!("node-{}", i + 1));
        self.nodes[i] = Some(NodeProcess::start_with(&dir, (i + 1) as u64, &self.addrs[i], &self.peers, &extra));
    }

    /// Restarts node `i` with extra environment variables.
    pub fn restart_env(&mut self, i: usize, env: &[(&str, &str)]) {
        assert!(self.nodes[i].is_none(), "node {} is running", i + 1);
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let dir = self.dir.join(format!("node-{}", i + 1));
        self.nodes[i] = Some(NodeProcess::start_env(&dir, (i + 1) as u64, &self.addrs[i], &self.peers, &extra, env));
    }

    pub fn endpoints(&self) -> String {
        self.addrs.join(",")
    }

    pub fn node(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().expect("node running")
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// `/v1/cluster` of node `i`, if it answers.
    pub fn status(&self, i: usize) -> Option<Value> {
        let client = secure().admin(Duration::from_secs(2));
        let r = client.get(format!("{}/v1/cluster", base(&self.addrs[i]))).send().ok()?;
        r.json().ok()
    }

    /// Waits until a running node reports a leader that is running; returns its index.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let started = Instant::now();
        while started.elapsed() < timeout {
            for i in self.running() {
                if let Some(v) = self.status(i) {
                    if let Some(l) = v["leader"].as_u64() {
                        let idx = (l - 1) as usize;
                        if idx < self.nodes.len() && self.nodes[idx].is_some() {
                            if let Some(lv) = self.status(idx) {
                                if lv["leader"].as_u64() == Some(l) {
                                    return idx;
                                }
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no leader within {timeout:?}");
    }

    /// Waits until every running node has applied `revision` (local reads).
    pub fn wait_revision(&self, revision: u64, timeout: Duration) {
        let started = Instant::now();
        let client = secure().admin(Duration::from_secs(2));
        'outer: while started.elapsed() < timeout {
            for i in self.running() {
                let r = client.get(format!("{}/v1/state/digest?consistency=local", base(&self.addrs[i]))).send();
                let rev = r.ok().and_then(|r| r.json::<Value>().ok()).and_then(|v| v["revision"].as_u64());
                if rev != Some(revision) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'outer;
                }
            }
            return;
        }
        panic!("nodes did not all reach revision {revision} within {timeout:?}");
    }

    /// Digest and full history of node `i` from its own applied state.
    pub fn local_view(&self, i: usize) -> (Value, Vec<Value>) {
        let api = Api::new(self.node(i));
        let digest = api.get("/v1/state/digest?consistency=local");
        let mut records = Vec::new();
        let mut from = 1u64;
        loop {
            let page = api.get(&format!("/v1/history?consistency=local&from={from}&limit=1000"));
            records.extend(page["records"].as_array().unwrap().iter().cloned());
            match page["next_from"].as_u64() {
                Some(n) => from = n,
                None => break,
            }
        }
        (digest, records)
    }
}

/// One write with endpoint failover, like `roster ctl`: the first endpoint that answers
/// something other than a connection error or 503. Returns the status and body.
pub fn write_any(endpoints: &[String], path: &str, body: &Value, key: &str) -> Option<(u16, Value)> {
    let client = secure().client(Some(secure().token("writer")), Duration::from_secs(15));
    for ep in endpoints {
        let r = client
            .post(format!("{}{path}", base(ep)))
            .header("idempotency-key", key)
            .header("x-roster-actor", "writer")
            .json(body)
            .send();
        if let Ok(r) = r {
            let status = r.status().as_u16();
            if status == 503 {
                continue;
            }
            return Some((status, r.json().unwrap_or(Value::Null)));
        }
    }
    None
}
