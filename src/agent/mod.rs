//! `roster agent`: the process on a client computer. It watches its configuration on the
//! management cluster (failing over between endpoints), deploys every update to a local file
//! atomically (write, fsync, rename), acknowledges it (its next watch, after that revision,
//! does), and answers "which server should this
//! task use now?" on a local HTTP endpoint. Without a reachable cluster it serves the last
//! deployed file; a task the cluster does not configure is served from the local defaults
//! file only. One task never mixes the two sources.
//!
//! Architecture invariant: the agent talks to the cluster only through the public HTTP API,
//! and never writes the history except through it (registration, failure reports).

mod local;
pub mod resolve;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde::Deserialize;
use serde_json::json;

use crate::domain::{AgentId, ServerName, ServerStatus, TaskName};
use crate::projection::AgentConfig;
pub use local::{LocalFile, LocalServer, LocalTask, LOCAL_DEFAULT_SERVER_URL};
use resolve::Resolver;

/// How long the agent asks a node to hold a watch.
pub const WATCH_WAIT_MS: u64 = 25_000;
/// Retry delays after a failed watch: doubling from the first to the ceiling.
pub const RETRY_FIRST_MS: u64 = 100;
pub const RETRY_MAX_MS: u64 = 2_000;
/// Name of the deployed configuration file in the state dir.
pub const DEPLOYED_FILE: &str = "deployed.json";
/// Name of the local defaults file in the state dir.
pub const LOCAL_FILE: &str = "local.json";
/// Name of the client secret file in the state dir: a bearer secret that local programs must
/// present to report a failure (readable only by the agent's user, mode 0600). Any local user
/// could otherwise mark every server failed cluster-wide.
pub const CLIENT_SECRET_FILE: &str = "client.secret";
/// Most servers marked failed locally at once (only servers of the deployed or local
/// configuration can be marked, so this bound is reached only by very large configurations).
pub const LOCAL_FAILED_MAX: usize = 1024;
/// Largest local request body (a failure report is a few dozen bytes).
pub const LOCAL_BODY_MAX_BYTES: usize = 4 * 1024;
/// A local client must send a request's headers within this long.
pub const LOCAL_HEADER_READ_TIMEOUT_MS: u64 = 5_000;
/// Most connections the local endpoint serves at once.
pub const LOCAL_CONNECTIONS_MAX: usize = 256;

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// This agent's id (default: the host name).
    #[arg(long)]
    pub id: Option<String>,
    /// Management nodes, TLS trust and this agent's token (an agent-role token for this id).
    #[command(flatten)]
    pub conn: crate::cli::ConnArgs,
    /// Where the deployed configuration and the local defaults file live.
    #[arg(long, default_value = "roster-agent")]
    pub state_dir: PathBuf,
    /// Local endpoint for clients (resolve, report failures). Must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
}

/// Reads the agent's client secret from `state_dir`, creating it (0600, never following a
/// symlink) on first run. A secret file others can read or write is refused.
pub fn ensure_client_secret(state_dir: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let path = state_dir.join(CLIENT_SECRET_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => {
            anyhow::ensure!(meta.file_type().is_file(), "{} is not a regular file (a symlink?); remove it", path.display());
            anyhow::ensure!(
                meta.mode() & 0o077 == 0,
                "{} is readable or writable by others (mode {:o}); run `chmod 600` on it",
                path.display(),
                meta.mode() & 0o777
            );
            let secret = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let secret = secret.trim().to_string();
            anyhow::ensure!(secret.len() >= 16, "{} holds no usable secret; remove it to make a new one", path.display());
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = crate::auth::new_secret();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Whether a `Host` header names this machine's loopback interface. Anything else (a DNS
/// rebinding page sends its own host name) is refused.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn local_error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// Every local request: the `Host` must be a loopback name.
async fn local_guard(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let hosts: Vec<_> = req.headers().get_all(axum::http::header::HOST).iter().collect();
    let ok = match hosts.as_slice() {
        [h] => h.to_str().is_ok_and(loopback_host),
        _ => false,
    };
    if !ok {
        return local_error(StatusCode::FORBIDDEN, "the agent's local endpoint answers only requests for a loopback host");
    }
    next.run(req).await
}

/// The agent's state.
struct Inner {
    id: AgentId,
    deployed: Option<AgentConfig>,
    /// True once a configuration came from the cluster in this run.
    live: bool,
    local: LocalFile,
    resolver: Resolver,
    updates_received: u64,
    endpoint: Option<String>,
    last_error: Option<String>,
}

#[derive(Clone)]
struct Agent {
    inner: Arc<Mutex<Inner>>,
    /// The bearer secret local programs present to report failures.
    client_secret: Arc<str>,
    state_dir: PathBuf,
    /// The cluster's API, with the endpoints to fail over between.
    client: Arc<crate::cli::Client>,
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn load_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Agent {
    fn base(&self, ep: &str) -> String {
        self.client.url(ep, "")
    }

    /// Deploys a configuration received from the cluster through `endpoint`.
    fn deploy(&self, config: AgentConfig, endpoint: &str) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(&config)?;
        write_atomically(&self.state_dir.join(DEPLOYED_FILE), &bytes)?;
        let mut inner = self.inner.lock().expect("agent lock");
        inner.resolver.on_new_config(config.tasks.values().flat_map(|t| t.servers.iter()));
        // Local marks of servers no configuration names any more are dropped.
        let known: std::collections::BTreeSet<ServerName> = config
            .tasks
            .values()
            .flat_map(|t| t.servers.iter().map(|s| s.name.clone()))
            .chain(inner.local.entries().flat_map(|t| t.servers.iter().map(|s| s.name.clone())))
            .collect();
        inner.resolver.retain_failed(|s| known.contains(s));
        inner.deployed = Some(config);
        inner.live = true;
        inner.updates_received += 1;
        inner.endpoint = Some(endpoint.to_string());
        inner.last_error = None;
        Ok(())
    }

    /// Watches the cluster forever, failing over between endpoints.
    async fn watch_loop(self) {
        let id = self.inner.lock().expect("agent lock").id.clone();
        let mut idx = 0usize;
        let mut backoff = RETRY_FIRST_MS;
        loop {
            let endpoints = self.client.endpoints();
            let ep = endpoints[idx % endpoints.len()].clone();
            let after = self.inner.lock().expect("agent lock").deployed.as_ref().map(|c| c.revision).unwrap_or(0);
            let url = format!("{}/v1/agents/{id}/config?after={after}&wait_ms={WATCH_WAIT_MS}", self.base(&ep));
            let result = self.client.http().get(&url).timeout(Duration::from_millis(WATCH_WAIT_MS + 10_000)).send().await;
            let failure = match result {
                Ok(r) if r.status() == StatusCode::NO_CONTENT => None,
                Ok(r) if r.status().is_success() => match r.json::<AgentConfig>().await {
                    // Never go backwards (a node never answers with less than `after`).
                    Ok(config) if config.revision < after => Some(format!("{ep} sent revision {} < {after}", config.revision)),
                    Ok(config) => {
                        let revision = config.revision;
                        match self.deploy(config, &ep) {
                            // The next watch, asking for changes after this revision, is
                            // the acknowledgement (the node records it as deployed): no
                            // separate ack request, and no second connection for one.
                            Ok(()) => {
                                tracing::info!(revision, endpoint = %ep, "deployed");
                                None
                            }
                            Err(e) => Some(format!("deploying: {e:#}")),
                        }
                    }
                    Err(e) => Some(format!("{ep}: bad answer: {e}")),
                },
                Ok(r) => Some(format!("{ep}: HTTP {}", r.status())),
                Err(e) => Some(format!("{ep}: {e}")),
            };
            {
                let mut inner = self.inner.lock().expect("agent lock");
                inner.endpoint = failure.is_none().then(|| ep.clone());
                inner.last_error.clone_from(&failure);
            }
            match failure {
                None => backoff = RETRY_FIRST_MS,
                Some(e) => {
                    tracing::warn!("watch failed: {e}; trying the next endpoint");
                    idx += 1;
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(RETRY_MAX_MS);
                }
            }
        }
    }

    /// Reports a failed server to the cluster (first endpoint that answers).
    async fn report(&self, task: &TaskName, server: &ServerName) {
        let id = self.inner.lock().expect("agent lock").id.clone();
        for ep in self.client.endpoints() {
            let url = format!("{}/v1/agents/{id}/failures", self.base(ep));
            if let Ok(r) = self.client.http().post(url).json(&json!({"task": task, "server": server})).send().await {
                if r.status().is_success() {
                    return;
                }
                // Refused on its merits (not in this agent's configuration, rate-limited):
                // another node would say the same.
                if r.status().is_client_error() {
                    tracing::warn!(%task, %server, status = %r.status(), "the cluster refused the failure report");
                    return;
                }
            }
        }
        tracing::warn!(%task, %server, "could not report the failure to any endpoint");
    }
}

async fn resolve(State(agent): State<Agent>, UrlPath(task): UrlPath<String>) -> Response {
    let Ok(task) = TaskName::new(task) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid task name"}))).into_response();
    };
    let mut inner = agent.inner.lock().expect("agent lock");
    let inner = &mut *inner;
    let (cfg, source) = match inner.deployed.as_ref().and_then(|d| d.tasks.get(&task)) {
        Some(cfg) => (cfg.clone(), if inner.live { "cluster" } else { "cluster-cache" }),
        None => match inner.local.task(&task) {
            Some(local) => (local.as_agent_task(), if inner.local.tasks.contains_key(&task) { "local" } else { "local-default" }),
            None => return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no configuration for task {task}")}))).into_response(),
        },
    };
    let revision = inner.deployed.as_ref().map(|d| d.revision);
    match inner.resolver.pick(task.as_str(), &cfg) {
        Some(s) => Json(json!({"task": task, "server": s.name, "url": s.url, "source": source, "revision": revision})).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": format!("no usable server for task {task}"), "source": source}))).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureRequest {
    task: TaskName,
    server: ServerName,
}

async fn report_failure(State(agent): State<Agent>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    // The secret is checked before the body is looked at.
    let presented: Vec<_> = headers.get_all(axum::http::header::AUTHORIZATION).iter().collect();
    let authorized = match presented.as_slice() {
        [v] => v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|t| {
            roster_raft::transport::secrets_equal(t.trim().as_bytes(), agent.client_secret.as_bytes())
        }),
        _ => false,
    };
    if !authorized {
        return local_error(
            StatusCode::UNAUTHORIZED,
            format!("reporting a failure needs the agent's client secret (`Authorization: Bearer` with the content of {CLIENT_SECRET_FILE} in the agent's state dir)"),
        );
    }
    let r: FailureRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return local_error(StatusCode::BAD_REQUEST, format!("invalid failure report: {e}")),
    };
    let (from_cluster, newly) = {
        let mut inner = agent.inner.lock().expect("agent lock");
        // The server's status in the deployed configuration, if the cluster configures the task.
        let in_cluster = inner
            .deployed
            .as_ref()
            .and_then(|d| d.tasks.get(&r.task))
            .map(|t| t.servers.iter().find(|s| s.name == r.server).map(|s| s.status));
        let known = match in_cluster {
            Some(found) => found.is_some(),
            // One task never mixes sources: a task the cluster does not configure is local.
            None => inner.local.task(&r.task).is_some_and(|t| t.servers.iter().any(|s| s.name == r.server)),
        };
        if !known {
            return local_error(StatusCode::NOT_FOUND, format!("server {} is not in the configuration of task {}", r.server, r.task));
        }
        match inner.resolver.report_failure(&r.server, LOCAL_FAILED_MAX) {
            // A server the cluster already excludes needs no report.
            Ok(newly) => (in_cluster == Some(Some(ServerStatus::Enabled)), newly),
            Err(()) => return local_error(StatusCode::TOO_MANY_REQUESTS, format!("{LOCAL_FAILED_MAX} servers are already marked failed")),
        }
    };
    // Only a cluster-configured server is reported to the cluster, and only once per mark.
    if from_cluster && newly {
        let a = agent.clone();
        tokio::spawn(async move { a.report(&r.task, &r.server).await });
    }
    Json(json!({"reported": from_cluster && newly, "marked_locally": true})).into_response()
}

async fn status(State(agent): State<Agent>) -> Response {
    let inner = agent.inner.lock().expect("agent lock");
    Json(json!({
        "id": inner.id,
        "revision": inner.deployed.as_ref().map(|d| d.revision),
        "connected": inner.endpoint.is_some(),
        "endpoint": inner.endpoint,
        "live": inner.live,
        "updates_received": inner.updates_received,
        "cluster_tasks": inner.deployed.as_ref().map(|d| d.tasks.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "local_tasks": inner.local.tasks.keys().cloned().collect::<Vec<_>>(),
        "locally_failed": inner.resolver.locally_failed(),
        "last_error": inner.last_error,
    }))
    .into_response()
}

/// Runs the agent until `shutdown` completes.
pub async fn run(args: AgentArgs, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let id = match args.id {
        Some(id) => id,
        None => std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "agent".into()),
    };
    let id = AgentId::new(id)?;
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen {} is not a loopback address: the local endpoint is for programs on this machine",
        args.listen
    );
    // No whole-request timeout: the watch is a long poll that sets its own.
    let options = crate::cli::ClientOptions { request_timeout: None, connect_timeout: Some(Duration::from_secs(2)) };
    let transport = args.conn.transport_for(crate::cli::DevToken::Never)?;
    anyhow::ensure!(
        transport.bearer.is_some() || !transport.is_tls(),
        "the agent needs its own token on a secure cluster: --token-file FILE (make one with \
         `roster ctl tokens create {id} agent --agent {id} --secret-file FILE`), or --insecure for a plain-HTTP cluster"
    );
    let client = Arc::new(crate::cli::Client::with(transport, args.conn.endpoints.clone(), options)?);
    std::fs::create_dir_all(&args.state_dir).with_context(|| format!("creating {}", args.state_dir.display()))?;
    let client_secret = ensure_client_secret(&args.state_dir)?;
    let local_path = args.state_dir.join(LOCAL_FILE);
    let local = match load_json::<LocalFile>(&local_path)? {
        Some(l) => l,
        None => {
            // Created on first run with its default entry, for the operator to fill in.
            let first = LocalFile::first_run();
            write_atomically(&local_path, &serde_json::to_vec_pretty(&first)?)?;
            first
        }
    };
    local.check().with_context(|| format!("in {}", local_path.display()))?;
    let deployed: Option<AgentConfig> = load_json(&args.state_dir.join(DEPLOYED_FILE))?;
    if let Some(d) = &deployed {
        tracing::info!(revision = d.revision, "serving the last deployed configuration until the cluster answers");
    }
    let agent = Agent {
        inner: Arc::new(Mutex::new(Inner {
            id,
            deployed,
            live: false,
            local,
            resolver: Resolver::default(),
            updates_received: 0,
            endpoint: None,
            last_error: None,
        })),
        client_secret: Arc::from(client_secret.as_str()),
        state_dir: args.state_dir.clone(),
        client,
    };
    let router = Router::new()
        .route("/resolve/{task}", get(resolve))
        .route("/failures", post(report_failure))
        .route("/status", get(status))
        .layer(axum::middleware::from_fn(local_guard))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(LOCAL_BODY_MAX_BYTES))
        .with_state(agent.clone());
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, "agent serving");
    let watcher = tokio::spawn(agent.watch_loop());
    // The same bounded HTTP/1.1 server as a node's: a header read timeout, bounded heads and
    // buffers, and a connection cap.
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(());
    });
    crate::server::serve_http(
        listener,
        router,
        None,
        Duration::from_millis(LOCAL_HEADER_READ_TIMEOUT_MS),
        LOCAL_CONNECTIONS_MAX,
        stopped,
    )
    .await;
    watcher.abort();
    Ok(())
}

/// `roster resolve TASK`: asks the local agent which server to use.
pub async fn resolve_cmd(agent: &str, task: &str, state_dir: &Path) -> anyhow::Result<()> {
    let r = match reqwest::get(format!("http://{agent}/resolve/{}", crate::domain::percent_encode(&task))).await {
        Ok(r) => r,
        // No agent listens: read what it left behind, as the product's client fell back to
        // its local file.
        Err(e) if e.is_connect() => return resolve_offline(agent, task, state_dir),
        Err(e) => return Err(e).with_context(|| format!("asking the agent at {agent}")),
    };
    let status = r.status();
    let v: serde_json::Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "{}", v["error"].as_str().unwrap_or("failed"));
    println!("{}", v["url"].as_str().unwrap_or_default());
    eprintln!("server {} (from {})", v["server"].as_str().unwrap_or_default(), v["source"].as_str().unwrap_or_default());
    Ok(())
}

/// Resolves `task` from the agent's state dir without the agent: its last deployed
/// configuration, then its local file. Failover order (a load-balanced list starts at its
/// first usable server: the rotation lives in the agent); the agent's own failure marks are
/// not known here.
fn resolve_offline(agent: &str, task: &str, state_dir: &Path) -> anyhow::Result<()> {
    let task = TaskName::new(task)?;
    let deployed: Option<AgentConfig> = load_json(&state_dir.join(DEPLOYED_FILE))?;
    let local: Option<LocalFile> = load_json(&state_dir.join(LOCAL_FILE))?;
    let (cfg, source) = match (deployed.as_ref().and_then(|d| d.tasks.get(&task)), local.as_ref().and_then(|l| l.task(&task))) {
        (Some(cfg), _) => (cfg.clone(), DEPLOYED_FILE),
        (None, Some(l)) => (l.as_agent_task(), LOCAL_FILE),
        (None, None) => anyhow::bail!(
            "no agent answers at {agent}, and {} configures no task {task} (neither {DEPLOYED_FILE} nor {LOCAL_FILE}); give --state-dir of the agent",
            state_dir.display()
        ),
    };
    match resolve::Resolver::default().pick(task.as_str(), &cfg) {
        Some(s) => {
            println!("{}", s.url);
            eprintln!("server {} (from {}; no agent answers at {agent})", s.name, state_dir.join(source).display());
            Ok(())
        }
        None => anyhow::bail!("no usable server for task {task} in {}", state_dir.join(source).display()),
    }
}

/// `roster report-failure TASK SERVER`: tells the local agent a server could not be used,
/// presenting the agent's client secret.
pub async fn report_failure_cmd(agent: &str, task: &str, server: &str, secret_file: &Path) -> anyhow::Result<()> {
    let secret = std::fs::read_to_string(secret_file)
        .with_context(|| format!("reading the agent's client secret {} (see --state-dir / --secret-file)", secret_file.display()))?;
    let r = reqwest::Client::new()
        .post(format!("http://{agent}/failures"))
        .bearer_auth(secret.trim())
        .json(&json!({"task": task, "server": server}))
        .send()
        .await
        .with_context(|| format!("telling the agent at {agent}"))?;
    anyhow::ensure!(r.status().is_success(), "the agent answered {}", r.status());
    println!("reported {server} as failing for {task}");
    Ok(())
}
