//! Helpers shared by the integration tests: real `roster` processes on loopback ports.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roster::domain::tokens::Role;
use serde_json::Value;

/// Every test runs with TLS and tokens on, like a production cluster: one CA, node
/// certificate, cluster secret and token file per test process.
pub struct Secure {
    pub dir: PathBuf,
    pub ca_pem: Vec<u8>,
    /// Token secret by token name.
    pub tokens: BTreeMap<String, String>,
}

/// Token names in the test token file, with their roles. Tests that write "as" an actor use
/// the token of that name.
pub const TEST_TOKENS: &[(&str, Role, Option<&str>)] = &[
    ("admin", Role::Admin, None),
    ("ops", Role::Operator, None),
    ("alice", Role::Operator, None),
    ("bob", Role::Operator, None),
    ("setup", Role::Operator, None),
    ("writer", Role::Operator, None),
    ("prop", Role::Operator, None),
    ("auditor", Role::Auditor, None),
    ("viewer", Role::Viewer, None),
    ("agent-file-a1", Role::Agent, Some("a1")),
];

pub fn secure() -> &'static Secure {
    static SECURE: OnceLock<Secure> = OnceLock::new();
    SECURE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("secure-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        roster::tls::init(&dir, &[], true).expect("secure-init");
        let mut tokens = BTreeMap::new();
        let mut file = String::new();
        for (name, role, agent) in TEST_TOKENS {
            let secret = roster::auth::new_secret();
            file.push_str(&roster::auth::token_file_line(name, *role, *agent, &secret));
            file.push('\n');
            std::fs::write(dir.join(format!("{name}.token")), &secret).unwrap();
            tokens.insert(name.to_string(), secret);
        }
        std::fs::write(dir.join(roster::tls::TOKENS), file).unwrap();
        // A node refuses a token file others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(roster::tls::TOKENS), std::fs::Permissions::from_mode(0o600)).unwrap();
        let ca_pem = std::fs::read(dir.join(roster::tls::CA_CERT)).unwrap();
        Secure { dir, ca_pem, tokens }
    })
}

impl Secure {
    pub fn token(&self, name: &str) -> &str {
        self.tokens.get(name).unwrap_or_else(|| panic!("no test token {name}"))
    }

    pub fn token_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.token"))
    }

    /// A blocking client trusting the test CA, sending `token` (if any).
    pub fn client(&self, token: Option<&str>, timeout: Duration) -> reqwest::blocking::Client {
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .timeout(timeout);
        if let Some(t) = token {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
            b = b.default_headers(h);
        }
        b.build().unwrap()
    }

    /// A client with the admin token.
    pub fn admin(&self, timeout: Duration) -> reqwest::blocking::Client {
        self.client(Some(self.token("admin")), timeout)
    }
}

/// `https://ADDR` (tests always run with TLS).
pub fn base(addr: &str) -> String {
    format!("https://{addr}")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn roster_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_roster"))
}

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
        if let Some(parent) = data_dir.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .unwrap();
        let child = Command::new(roster_bin())
            .args(["serve", "--node-id", &node_id.to_string(), "--listen", addr, "--data-dir"])
            .arg(data_dir)
            .args(if extra.contains(&"--insecure") { vec![] } else { vec!["--secure-dir".into(), secure().dir.clone()] })
            .args(if peers.is_empty() { vec![] } else { vec!["--peers", peers] })
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn roster serve");
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
        let log = std::fs::OpenOptions::new().create(true).append(true).open(state_dir.join("agent.log")).unwrap();
        let child = Command::new(roster_bin())
            .args(["agent", "--id", id, "--endpoints", endpoints, "--listen", &addr, "--state-dir"])
            .arg(state_dir)
            .arg("--ca")
            .arg(secure().dir.join(roster::tls::CA_CERT))
            .arg("--token-file")
            .arg(&token_file)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn roster agent");
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
