//! A `roster agent` process with its own agent-role token.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roster::domain::tokens::Role;
use serde_json::Value;

use super::*;

/// A `roster agent` process, killed on drop.
pub struct AgentProcess {
    pub addr: String,
    pub state_dir: PathBuf,
    child: Option<Child>,
}

impl AgentProcess {
    pub fn start(id: &str, endpoints: &str, state_dir: &Path) -> Self {
        std::fs::create_dir_all(state_dir).unwrap();
        let token_file = state_dir.join("agent.token");
        if !token_file.exists() {
            // Each agent gets its own agent-role token, created through the API.
            let body = serde_json::json!({"name": format!("agent-{id}"), "role": "agent", "agent": id});
            let started = Instant::now();
            let secret = loop {
                let api = Api::at(endpoints.split(',').next().unwrap());
                let (s, v) = api.request(reqwest::Method::POST, "/v1/tokens", Some(body.clone()), &[]);
                if s == 201 {
                    break v["token"].as_str().unwrap().to_string();
                }
                assert!(s == 503 && started.elapsed() < Duration::from_secs(20), "creating the token of agent {id}: {s} {v}");
                std::thread::sleep(Duration::from_millis(100));
            };
            std::fs::write(&token_file, secret).unwrap();
        }
        let addr = format!("127.0.0.1:{}", free_port());
        let args: Vec<std::ffi::OsString> = vec![
            "agent".into(), "--id".into(), id.into(), "--endpoints".into(), endpoints.into(), "--listen".into(), addr.clone().into(),
            "--state-dir".into(), state_dir.as_os_str().to_owned(),
            "--ca".into(), secure().dir.join(roster::tls::CA_CERT).into(),
            "--token-file".into(), token_file.clone().into(),
        ];
        let child = spawn_roster(&args, &[], &state_dir.join("agent.log"));
        let agent = Self { addr, state_dir: state_dir.to_path_buf(), child: Some(child) };
        let started = Instant::now();
        while agent.try_status().is_none() {
            assert!(started.elapsed() < Duration::from_secs(20), "agent {id} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    fn try_status(&self) -> Option<Value> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        client.get(format!("http://{}/status", self.addr)).send().ok()?.json().ok()
    }

    pub fn status(&self) -> Value {
        self.try_status().expect("agent status")
    }

    /// Waits until the agent has deployed at least `revision`.
    pub fn wait_revision(&self, revision: u64, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let st = self.status();
            if st["revision"].as_u64().is_some_and(|r| r >= revision) {
                return st;
            }
            assert!(started.elapsed() < timeout, "agent did not deploy revision {revision}: {st}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /resolve/{task}`: (status, body).
    pub fn resolve(&self, task: &str) -> (u16, Value) {
        let r = reqwest::blocking::get(format!("http://{}/resolve/{task}", self.addr)).unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }

    pub fn report_failure(&self, task: &str, server: &str) {
        let (status, body) = self.report_failure_raw(task, server, Some(&self.client_secret()), None);
        assert_eq!(status, 200, "{body}");
    }

    /// The agent's client secret (made by the agent at its first start).
    pub fn client_secret(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("client.secret")).unwrap().trim().to_string()
    }

    /// A failure report to the local endpoint with a given secret and `Host` header.
    pub fn report_failure_raw(&self, task: &str, server: &str, secret: Option<&str>, host: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::blocking::Client::new()
            .post(format!("http://{}/failures", self.addr))
            .json(&serde_json::json!({"task": task, "server": server}));
        if let Some(s) = secret {
            req = req.bearer_auth(s);
        }
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

