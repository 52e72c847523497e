//! One `roster serve` process, the API as a blocking client, and `roster ctl`.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roster::domain::tokens::Role;
use serde_json::Value;

use super::*;

/// A `roster serve` process, killed on drop.
pub struct NodeProcess {
    pub addr: String,
    /// Started with `--insecure` (plain HTTP, no tokens).
    pub insecure: bool,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    pub fn start(data_dir: &Path, node_id: u64, addr: &str, peers: &str) -> Self {
        Self::start_with(data_dir, node_id, addr, peers, &[])
    }

    pub fn start_with(data_dir: &Path, node_id: u64, addr: &str, peers: &str, extra: &[&str]) -> Self {
        Self::start_env(data_dir, node_id, addr, peers, extra, &[])
    }

    /// Like [`NodeProcess::start_with`], with extra environment variables (a fail point).
    pub fn start_env(data_dir: &Path, node_id: u64, addr: &str, peers: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args: Vec<std::ffi::OsString> = vec!["serve".into(), "--node-id".into(), node_id.to_string().into(), "--listen".into(), addr.into()];
        args.extend(["--data-dir".into(), data_dir.as_os_str().to_owned()]);
        if !extra.contains(&"--insecure") {
            args.extend(["--secure-dir".into(), secure().dir.clone().into()]);
        }
        if !peers.is_empty() {
            args.extend(["--peers".into(), peers.into()]);
        }
        args.extend(extra.iter().map(Into::into));
        let child = spawn_roster(&args, env, &data_dir.with_extension("log"));
        Self { addr: addr.to_string(), insecure: extra.contains(&"--insecure"), data_dir: data_dir.to_path_buf(), child: Some(child) }
    }

    /// A single-node cluster on a fresh port.
    pub fn single(data_dir: &Path) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let node = Self::start(data_dir, 1, &addr, "");
        node.wait_ready(Duration::from_secs(30));
        node
    }

    pub fn url(&self, path: &str) -> String {
        if self.insecure {
            format!("http://{}{}", self.addr, path)
        } else {
            format!("{}{}", base(&self.addr), path)
        }
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let started = Instant::now();
        let client = if self.insecure {
            reqwest::blocking::Client::builder().timeout(Duration::from_millis(500)).build().unwrap()
        } else {
            secure().client(None, Duration::from_millis(500))
        };
        while started.elapsed() < timeout {
            if let Ok(r) = client.get(self.url("/readyz")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {} not ready within {timeout:?}", self.addr);
    }

    /// Stops the process with SIGTERM (graceful) and waits for it; kills it after 15 s.
    /// Returns whether it exited by itself, successfully.
    pub fn stop(&mut self) -> bool {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(status)) = child.try_wait() {
                    return status.success();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        false
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its status if it did
    /// (and then the process is gone), `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The node's log file (stdout and stderr of every start, appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Kills the process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking JSON client with Roster's write headers. Requests use the admin token, or,
/// when they carry `x-roster-actor: NAME`, the test token of that name.
pub struct Api {
    pub base: String,
    client: reqwest::blocking::Client,
    insecure: bool,
}

impl Api {
    pub fn new(node: &NodeProcess) -> Self {
        Self::at(&node.addr)
    }

    pub fn at(addr: &str) -> Self {
        Self { base: base(addr), client: secure().client(None, Duration::from_secs(20)), insecure: false }
    }

    /// For a node started with `--insecure`: plain HTTP, no token.
    pub fn insecure(addr: &str) -> Self {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        Self { base: format!("http://{addr}"), client, insecure: true }
    }

    pub fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        let actor = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-roster-actor")).map(|(_, v)| *v);
        if !self.insecure {
            req = req.bearer_auth(secure().token(actor.unwrap_or("admin")));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A GET with the given token: (status, body, `X-Roster-Next`, `X-Roster-Revision`).
    pub fn get_page(&self, path: &str, token: &str) -> (u16, Value, Option<String>, Option<u64>) {
        let mut req = self.client.get(format!("{}{}", self.base, path));
        if !self.insecure {
            req = req.bearer_auth(secure().token(token));
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(String::from);
        let (next, revision) = (header("x-roster-next"), header("x-roster-revision").and_then(|r| r.parse().ok()));
        (status, resp.json().unwrap_or(Value::Null), next, revision)
    }

    pub fn get(&self, path: &str) -> Value {
        let (s, v) = self.request(reqwest::Method::GET, path, None, &[]);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    pub fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(body), headers)
    }

    /// The current revision and state digest.
    pub fn digest(&self) -> (u64, String) {
        let v = self.get("/v1/state/digest");
        (v["revision"].as_u64().unwrap(), v["digest"].as_str().unwrap().to_string())
    }
}

/// Runs `roster ctl` against `endpoints` and returns (success, stdout, stderr).
pub fn ctl(endpoints: &str, args: &[&str]) -> (bool, String, String) {
    ctl_as("admin", endpoints, args)
}

/// `roster ctl` with the test token `token`.
pub fn ctl_as(token: &str, endpoints: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(roster_bin())
        .arg("ctl")
        .arg("--endpoints")
        .arg(endpoints)
        .arg("--ca")
        .arg(secure().dir.join(roster::tls::CA_CERT))
        .arg("--token-file")
        .arg(secure().token_file(token))
        .args(args)
        .output()
        .expect("run roster ctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
