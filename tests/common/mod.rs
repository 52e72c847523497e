//! Helpers shared by the integration tests: real `roster` processes on loopback ports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn roster_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_roster"))
}

/// A `roster serve` process, killed on drop.
pub struct NodeProcess {
    pub addr: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    pub fn start(data_dir: &Path, node_id: u64, addr: &str, peers: &str) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .unwrap();
        let child = Command::new(roster_bin())
            .args(["serve", "--node-id", &node_id.to_string(), "--listen", addr, "--peers", peers, "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn roster serve");
        Self { addr: addr.to_string(), data_dir: data_dir.to_path_buf(), child: Some(child) }
    }

    /// A single-node cluster on a fresh port.
    pub fn single(data_dir: &Path) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let node = Self::start(data_dir, 1, &addr, "");
        node.wait_ready(Duration::from_secs(30));
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let started = Instant::now();
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
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

    /// Stops the process with SIGTERM (graceful) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
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

/// A blocking JSON client with Roster's write headers.
pub struct Api {
    pub base: String,
    client: reqwest::blocking::Client,
}

impl Api {
    pub fn new(node: &NodeProcess) -> Self {
        Self {
            base: format!("http://{}", node.addr),
            client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap(),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
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
    let out = Command::new(roster_bin())
        .arg("ctl")
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .output()
        .expect("run roster ctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
