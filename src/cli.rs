//! `roster ctl`: the administrators' command line over the HTTP API.
//!
//! Every mutation becomes one domain [`Change`]; it is applied at once (`POST /v1/commands`)
//! or, with `--changeset ID`, staged in that changeset. Writes carry a generated idempotency
//! key, so failing over to another endpoint after an unknown outcome never applies twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_raft::Transport;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::domain::{AgentId, Change, ClusterName, Host, MoveDirection, PoolName, Scheme, ServerName, TaskName};

/// Per-request timeout of the CLI.
pub const CTL_REQUEST_TIMEOUT_MS: u64 = 15_000;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// Where the management nodes are and how to authenticate to them (ctl, agent, audit).
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Management nodes to talk to (host:port or a full URL), tried in order.
    #[arg(long, env = "ROSTER_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:7001")]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) the nodes' certificates are checked against; HTTPS is used when
    /// it is set. Default: `roster-dev/secure/ca.pem` if that file exists.
    #[arg(long, env = "ROSTER_CA")]
    pub ca: Option<PathBuf>,
    /// File holding the bearer token. Default: `roster-dev/secure/admin.token` if it exists.
    #[arg(long, env = "ROSTER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Talk plain HTTP without a token, even if the dev cluster's files exist.
    #[arg(long)]
    pub insecure: bool,
}

/// Where `roster dev` keeps its security files.
pub const DEV_SECURE_DIR: &str = "roster-dev/secure";

impl ConnArgs {
    /// The transport these flags describe.
    pub fn transport(&self) -> anyhow::Result<Transport> {
        if self.insecure {
            return Ok(Transport::insecure());
        }
        let dev = std::path::Path::new(DEV_SECURE_DIR);
        let ca = self.ca.clone().or_else(|| Some(dev.join(crate::tls::CA_CERT)).filter(|p| p.exists()));
        let token_file = self.token_file.clone().or_else(|| Some(dev.join(crate::tls::ADMIN_TOKEN)).filter(|p| p.exists()));
        let ca_pem = match ca {
            Some(p) => Some(Arc::new(std::fs::read(&p).with_context(|| format!("reading the CA file {}", p.display()))?)),
            None => None,
        };
        let bearer = match token_file {
            Some(p) => {
                let t = std::fs::read_to_string(&p).with_context(|| format!("reading the token file {}", p.display()))?;
                let t = t.trim();
                anyhow::ensure!(!t.is_empty(), "the token file {} is empty", p.display());
                Some(Arc::from(t))
            }
            None => None,
        };
        // A token must never travel in plain text: with a CA or a token, every endpoint is
        // reached over TLS, and an explicit `http://` endpoint is refused.
        if ca_pem.is_some() || bearer.is_some() {
            if let Some(plain) = self.endpoints.iter().find(|e| e.trim().to_ascii_lowercase().starts_with("http://")) {
                anyhow::bail!(
                    "endpoint {plain} is plain HTTP, but a CA or token is configured: the token would be sent \
                     unencrypted. Give host:port (TLS is used) or https://..., or pass --insecure for a plain-HTTP cluster"
                );
            }
        }
        Ok(Transport { ca_pem, bearer })
    }
}

#[derive(Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Identity recorded as the actor of changes when the cluster runs without
    /// authentication (default: $USER); with tokens the actor is the token's name.
    #[arg(long, env = "ROSTER_ACTOR")]
    pub actor: Option<String>,
    /// Comment recorded with the revision.
    #[arg(short = 'm', long)]
    pub comment: Option<String>,
    /// Refuse the write unless the cluster is at this revision.
    #[arg(long)]
    pub expected_revision: Option<u64>,
    /// Idempotency key (default: a random one per invocation).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Stage the change in this changeset instead of applying it.
    #[arg(long)]
    pub changeset: Option<String>,
    /// Read the node's own applied state instead of a linearizable read.
    #[arg(long)]
    pub local: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Run-time servers.
    #[command(subcommand)]
    Servers(ServersCmd),
    /// Agent clusters and their members.
    #[command(subcommand)]
    Clusters(ClustersCmd),
    /// Registered agents.
    #[command(subcommand)]
    Agents(AgentsCmd),
    /// Tasks and their failover lists.
    #[command(subcommand)]
    Tasks(TasksCmd),
    /// Staged changesets.
    #[command(subcommand)]
    Changesets(ChangesetsCmd),
    /// Apply a staged changeset as one revision ("Apply All Changes").
    Apply { id: String },
    /// Show the revision history (or one revision).
    History {
        /// Show only this revision.
        revision: Option<u64>,
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        actor_filter: Option<String>,
        /// kind:name, e.g. server:rt1.
        #[arg(long)]
        entity: Option<String>,
        #[arg(long, default_value_t = crate::api::PAGE_DEFAULT)]
        limit: usize,
    },
    /// Show the state (at a revision).
    State {
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Show what changed between two revisions.
    Diff { from: u64, to: Option<u64> },
    /// Cluster status.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// API tokens (admin).
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Show who the cluster thinks you are (token name and role).
    Whoami,
    /// The operational event log (newest first).
    Events {
        /// Minimum level: info, warning or error.
        #[arg(long)]
        level: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = crate::api::PAGE_DEFAULT)]
        limit: usize,
        /// Change the settings instead: keep events at or above this level...
        #[arg(long)]
        set_min_level: Option<String>,
        /// ...and at most this many.
        #[arg(long)]
        set_retention: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServersCmd {
    List,
    Get { name: String },
    Add {
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        scheme: Option<String>,
    },
    Update {
        name: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        clear_pool: bool,
        #[arg(long)]
        scheme: Option<String>,
    },
    Delete { name: String },
    Enable { name: String },
    Disable { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ClustersCmd {
    List,
    Get { name: String },
    Create { name: String },
    Delete { name: String },
    AddAgent { cluster: String, agent: String },
    RemoveAgent { cluster: String, agent: String },
}

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// Agents with their clusters, deployed revision, last contact and lag.
    List,
    Register { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TasksCmd {
    List,
    Get { task: String },
    Create { task: String },
    Delete { task: String },
    /// Replace the failover list (in order).
    SetServers {
        task: String,
        #[arg(long)]
        cluster: String,
        servers: Vec<String>,
    },
    AddServer {
        task: String,
        #[arg(long)]
        cluster: String,
        server: String,
        #[arg(long)]
        position: Option<u32>,
    },
    RemoveServer {
        task: String,
        #[arg(long)]
        cluster: String,
        server: String,
    },
    /// Move a server up or down in the failover list.
    Move {
        task: String,
        #[arg(long)]
        cluster: String,
        server: String,
        #[arg(value_enum)]
        direction: Dir,
    },
    /// Turn load balancing on or off.
    LoadBalancing {
        task: String,
        #[arg(long)]
        cluster: String,
        #[arg(value_enum)]
        state: OnOff,
    },
    DeleteConfig {
        task: String,
        #[arg(long)]
        cluster: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Dir {
    Up,
    Down,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum ChangesetsCmd {
    List,
    Show { id: String },
    Create {
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Add raw changes given as JSON (e.g. '{"create_cluster":{"name":"eu"}}').
    Add { id: String, changes: Vec<String> },
    Preview { id: String },
    Discard { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    List,
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        /// admin, operator, auditor, agent or viewer.
        role: String,
        /// For the agent role: the agent this token speaks for.
        #[arg(long)]
        agent: Option<String>,
    },
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Members, roles, leader, term, indexes and follower lag.
    Status,
    /// Add a node: it joins as a learner, catches up, then becomes a voter.
    AddNode { id: u64, addr: String },
    /// Remove a node (the leader included).
    RemoveNode { id: u64 },
}

/// Talks to the API with endpoint failover.
pub struct Client {
    http: reqwest::Client,
    transport: Transport,
    endpoints: Vec<String>,
    headers: Vec<(&'static str, String)>,
}

impl Client {
    pub fn new(conn: &ConnArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(!conn.endpoints.is_empty(), "no endpoints given");
        let transport = conn.transport()?;
        let http = transport
            .client_builder()?
            .timeout(Duration::from_millis(CTL_REQUEST_TIMEOUT_MS))
            .pool_idle_timeout(Duration::from_millis(roster_raft::network::POOL_IDLE_TIMEOUT_MS))
            .build()?;
        Ok(Self { http, transport, endpoints: conn.endpoints.clone(), headers: Vec::new() })
    }

    /// Whether requests carry a token (so the actor is the token's identity).
    pub fn has_token(&self) -> bool {
        self.transport.bearer.is_some()
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sends a request to the first endpoint that answers; moves on after connection errors
    /// and 503s. Returns the status and the JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let mut last_err = None;
        for ep in &self.endpoints {
            let mut req = self.http.request(method.clone(), self.transport.url(ep, path));
            for (k, v) in &self.headers {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if status == 503 {
                        last_err = Some(anyhow::anyhow!("{ep}: {}", error_message(&value)));
                        continue;
                    }
                    return Ok((status, value));
                }
                Err(e) => last_err = Some(anyhow::anyhow!("{ep}: {e}")),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no endpoint answered")))
    }
}

fn error_message(v: &Value) -> String {
    match v.pointer("/error/message").and_then(Value::as_str) {
        Some(m) => format!("{} ({})", m, v.pointer("/error/code").and_then(Value::as_str).unwrap_or("error")),
        None => v.to_string(),
    }
}

fn random_key() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().gen();
    format!("ctl-{n:032x}")
}

/// Runs one `roster ctl` invocation.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let mut client = Client::new(&args.conn)?;
    if !client.has_token() {
        let actor = args.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
        client = client.header(crate::api::HEADER_ACTOR, actor);
    }
    if let Some(c) = &args.comment {
        client = client.header(crate::api::HEADER_COMMENT, c.clone());
    }
    if let Some(r) = args.expected_revision {
        client = client.header(crate::api::HEADER_EXPECTED_REVISION, r.to_string());
    }
    let key = args.idempotency_key.clone().unwrap_or_else(random_key);
    let client = client.header(crate::api::HEADER_IDEMPOTENCY_KEY, key);
    let q = if args.local { "consistency=local" } else { "consistency=linearizable" };
    let out = args.output;
    let stage = args.changeset.clone();

    use reqwest::Method as M;
    let get = |path: String| {
        let client = &client;
        async move { client.send(M::GET, &path, None).await }
    };
    match args.command {
        CtlCommand::Servers(ServersCmd::List) => {
            let v = ok(get(format!("/v1/servers?{q}")).await?)?;
            print(out, &v, &["name", "url", "status"], |s| {
                vec![s["name"].to_string(), s["url"].to_string(), s["status"].to_string()]
            });
        }
        CtlCommand::Servers(ServersCmd::Get { name }) => show(out, ok(get(format!("/v1/servers/{name}?{q}")).await?)?),
        CtlCommand::Clusters(ClustersCmd::List) => {
            let v = ok(get(format!("/v1/agent-clusters?{q}")).await?)?;
            print(out, &v, &["name", "agents", "tasks"], |c| {
                vec![c["name"].to_string(), join(&c["agents"]), join(&c["tasks"])]
            });
        }
        CtlCommand::Clusters(ClustersCmd::Get { name }) => show(out, ok(get(format!("/v1/agent-clusters/{name}?{q}")).await?)?),
        CtlCommand::Agents(AgentsCmd::List) => {
            let v = ok(get("/v1/agents".into()).await?)?;
            print(out, &v["agents"], &["id", "clusters", "deployed", "desired", "lag", "last_contact", "node"], |a| {
                vec![
                    plain(&a["id"]),
                    join(&a["clusters"]),
                    plain(&a["deployed_revision"]),
                    plain(&a["desired_revision"]),
                    plain(&a["lag"]),
                    a["last_contact_ms"].as_u64().map(format_ms).unwrap_or_else(|| "never".into()),
                    plain(&a["node"]),
                ]
            });
            if let Some(u) = v["unreachable_nodes"].as_array().filter(|u| !u.is_empty()) {
                eprintln!("note: nodes {} did not answer; their agents' contacts may be missing", join(&Value::Array(u.clone())));
            }
        }
        CtlCommand::Events { set_min_level: Some(level), set_retention, .. } => {
            let body = json!({"min_level": level, "retention": set_retention.unwrap_or(crate::domain::oplog::EVENT_RETENTION_DEFAULT)});
            let v = ok(client.send(M::PUT, "/v1/events/settings", Some(&body)).await?)?;
            show(out, v);
        }
        CtlCommand::Events { level, kind, limit, .. } => {
            let mut path = format!("/v1/events?{q}&limit={limit}");
            if let Some(l) = level {
                path.push_str(&format!("&level={}", urlencode(&l)));
            }
            if let Some(k) = kind {
                path.push_str(&format!("&kind={}", urlencode(&k)));
            }
            let v = ok(get(path).await?)?;
            print(out, &v, &["seq", "time", "level", "kind", "message"], |e| {
                vec![plain(&e["seq"]), e["time_ms"].as_u64().map(format_ms).unwrap_or_default(), plain(&e["level"]), plain(&e["kind"]), plain(&e["message"])]
            });
        }
        CtlCommand::Tasks(TasksCmd::List) => {
            let v = ok(get(format!("/v1/tasks?{q}")).await?)?;
            print_configs(out, &v);
        }
        CtlCommand::Tasks(TasksCmd::Get { task }) => {
            let v = ok(get(format!("/v1/tasks/{task}?{q}")).await?)?;
            print_configs(out, &Value::Array(vec![v]));
        }
        CtlCommand::Changesets(ChangesetsCmd::List) => {
            let v = ok(get(format!("/v1/changesets?{q}")).await?)?;
            print(out, &v, &["id", "changes", "base_revision", "created_by", "description"], |c| {
                ["id", "changes", "base_revision", "created_by", "description"].iter().map(|k| c[*k].to_string()).collect()
            });
        }
        CtlCommand::Changesets(ChangesetsCmd::Show { id }) => show(out, ok(get(format!("/v1/changesets/{id}?{q}")).await?)?),
        CtlCommand::Changesets(ChangesetsCmd::Create { description }) => {
            let v = ok(client.send(M::POST, "/v1/changesets", Some(&json!({"description": description}))).await?)?;
            report(out, &v);
        }
        CtlCommand::Changesets(ChangesetsCmd::Add { id, changes }) => {
            let parsed: Vec<Change> = changes
                .iter()
                .map(|c| serde_json::from_str(c).with_context(|| format!("change {c:?} is not a valid change")))
                .collect::<anyhow::Result<_>>()?;
            let v = ok(client.send(M::POST, &format!("/v1/changesets/{id}/changes"), Some(&json!({"changes": parsed}))).await?)?;
            report(out, &v);
        }
        CtlCommand::Changesets(ChangesetsCmd::Preview { id }) => {
            let v = ok(get(format!("/v1/changesets/{id}/preview?{q}")).await?)?;
            if out == Output::Json {
                show(out, v);
            } else if v["valid"] == json!(true) {
                println!("changeset {id} applies cleanly on revision {}:", v["revision"]);
                print_diff(&v["diff"]);
            } else {
                println!("changeset {id} would be rejected: {}", error_message(&v));
            }
        }
        CtlCommand::Changesets(ChangesetsCmd::Discard { id }) => {
            report(out, &ok(client.send(M::DELETE, &format!("/v1/changesets/{id}"), None).await?)?)
        }
        CtlCommand::Apply { id } => {
            report(out, &ok(client.send(M::POST, &format!("/v1/changesets/{id}/apply"), None).await?)?)
        }
        CtlCommand::History { revision: Some(r), .. } => show(out, ok(get(format!("/v1/history/{r}?{q}")).await?)?),
        CtlCommand::History { revision: None, from, to, actor_filter, entity, limit } => {
            let mut path = format!("/v1/history?{q}&limit={limit}");
            for (k, v) in [("from", from.map(|x| x.to_string())), ("to", to.map(|x| x.to_string())), ("actor", actor_filter), ("entity", entity)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", urlencode(&v)));
                }
            }
            let v = ok(get(path).await?)?;
            print(out, &v["records"], &["revision", "time", "actor", "comment", "events"], |r| {
                let events: Vec<String> = r["events"]
                    .as_array()
                    .map(|a| a.iter().map(event_summary).collect())
                    .unwrap_or_default();
                let time = r["time_ms"].as_u64().map(format_ms).unwrap_or_default();
                vec![r["revision"].to_string(), time, r["actor"].to_string(), r["comment"].to_string(), events.join("; ")]
            });
        }
        CtlCommand::State { revision } => {
            let path = match revision {
                Some(r) => format!("/v1/state?{q}&revision={r}"),
                None => format!("/v1/state?{q}"),
            };
            show(out, ok(get(path).await?)?)
        }
        CtlCommand::Diff { from, to } => {
            let path = match to {
                Some(t) => format!("/v1/diff?{q}&from={from}&to={t}"),
                None => format!("/v1/diff?{q}&from={from}"),
            };
            let v = ok(get(path).await?)?;
            if out == Output::Json {
                show(out, v);
            } else {
                println!("changes from revision {} to {}:", v["from"], v["to"]);
                print_diff(&v["changes"]);
            }
        }
        CtlCommand::Cluster(ClusterCmd::Status) => {
            let v = ok(get("/v1/cluster".into()).await?)?;
            if out == Output::Json {
                show(out, v);
            } else {
                println!("leader {}  term {}  revision {}", plain(&v["leader"]), v["term"], v["revision"]);
                print(out, &v["members"], &["id", "addr", "role", "lag"], |m| {
                    let id = m["id"].to_string();
                    let role = if v["leader"] == m["id"] { "leader" } else if m["voter"] == json!(true) { "voter" } else { "learner" };
                    vec![id.clone(), plain(&m["addr"]), role.into(), plain(&v["follower_lag"][&id])]
                });
            }
        }
        CtlCommand::Cluster(ClusterCmd::AddNode { id, addr }) => {
            ok(client.send(M::POST, "/v1/cluster/nodes", Some(&json!({"id": id, "addr": addr}))).await?)?;
            println!("node {id} added");
        }
        CtlCommand::Cluster(ClusterCmd::RemoveNode { id }) => {
            ok(client.send(M::DELETE, &format!("/v1/cluster/nodes/{id}"), None).await?)?;
            println!("node {id} removed");
        }
        CtlCommand::Tokens(TokensCmd::List) => {
            let v = ok(get(format!("/v1/tokens?{q}")).await?)?;
            print(out, &v, &["name", "role", "agent", "source", "created_by"], |t| {
                vec![plain(&t["name"]), plain(&t["role"]), plain(&t["agent"]), plain(&t["source"]), plain(&t["created_by"])]
            });
        }
        CtlCommand::Tokens(TokensCmd::Create { name, role, agent }) => {
            let v = ok(client.send(M::POST, "/v1/tokens", Some(&json!({"name": name, "role": role, "agent": agent}))).await?)?;
            if out == Output::Json {
                show(out, v);
            } else {
                println!("token {} ({}) created; its secret, shown only now:", plain(&v["name"]), plain(&v["role"]));
                println!("{}", plain(&v["token"]));
            }
        }
        CtlCommand::Tokens(TokensCmd::Revoke { name }) => {
            ok(client.send(M::DELETE, &format!("/v1/tokens/{name}"), None).await?)?;
            println!("token {name} revoked");
        }
        CtlCommand::Whoami => {
            let v = ok(get("/v1/whoami".into()).await?)?;
            if out == Output::Json || v["name"].is_null() {
                show(out, v);
            } else {
                println!("{} ({})", plain(&v["name"]), plain(&v["role"]));
            }
        }
        other => {
            let change = to_change(other)?;
            let v = match &stage {
                Some(id) => client.send(M::POST, &format!("/v1/changesets/{id}/changes"), Some(&json!({"changes": [change]}))).await?,
                None => client.send(M::POST, "/v1/commands", Some(&json!({"changes": [change]}))).await?,
            };
            report(out, &ok(v)?);
        }
    }
    Ok(())
}

/// The change a mutating subcommand stands for.
fn to_change(cmd: CtlCommand) -> anyhow::Result<Change> {
    let sn = |s: String| ServerName::new(s);
    let cn = |s: String| ClusterName::new(s);
    let tn = |s: String| TaskName::new(s);
    Ok(match cmd {
        CtlCommand::Servers(ServersCmd::Add { name, host, port, pool, scheme }) => Change::AddServer {
            name: sn(name)?,
            host: Host::new(host)?,
            port,
            pool: pool.map(PoolName::new).transpose()?,
            scheme: scheme.map(Scheme::new).transpose()?,
        },
        CtlCommand::Servers(ServersCmd::Update { name, host, port, pool, clear_pool, scheme }) => Change::UpdateServer {
            name: sn(name)?,
            host: host.map(Host::new).transpose()?,
            port,
            pool: pool.map(PoolName::new).transpose()?,
            clear_pool,
            scheme: scheme.map(Scheme::new).transpose()?,
        },
        CtlCommand::Servers(ServersCmd::Delete { name }) => Change::DeleteServer { name: sn(name)? },
        CtlCommand::Servers(ServersCmd::Enable { name }) => Change::EnableServer { name: sn(name)? },
        CtlCommand::Servers(ServersCmd::Disable { name }) => Change::DisableServer { name: sn(name)? },
        CtlCommand::Clusters(ClustersCmd::Create { name }) => Change::CreateCluster { name: cn(name)? },
        CtlCommand::Clusters(ClustersCmd::Delete { name }) => Change::DeleteCluster { name: cn(name)? },
        CtlCommand::Clusters(ClustersCmd::AddAgent { cluster, agent }) => {
            Change::AddAgentToCluster { cluster: cn(cluster)?, agent: AgentId::new(agent)? }
        }
        CtlCommand::Clusters(ClustersCmd::RemoveAgent { cluster, agent }) => {
            Change::RemoveAgentFromCluster { cluster: cn(cluster)?, agent: AgentId::new(agent)? }
        }
        CtlCommand::Agents(AgentsCmd::Register { id }) => Change::RegisterAgent { id: AgentId::new(id)? },
        CtlCommand::Tasks(TasksCmd::Create { task }) => Change::CreateTask { name: tn(task)? },
        CtlCommand::Tasks(TasksCmd::Delete { task }) => Change::DeleteTask { name: tn(task)? },
        CtlCommand::Tasks(TasksCmd::SetServers { task, cluster, servers }) => Change::SetServers {
            task: tn(task)?,
            cluster: cn(cluster)?,
            servers: servers.into_iter().map(sn).collect::<Result<_, _>>()?,
        },
        CtlCommand::Tasks(TasksCmd::AddServer { task, cluster, server, position }) => {
            Change::AddServerToList { task: tn(task)?, cluster: cn(cluster)?, server: sn(server)?, position }
        }
        CtlCommand::Tasks(TasksCmd::RemoveServer { task, cluster, server }) => {
            Change::RemoveServerFromList { task: tn(task)?, cluster: cn(cluster)?, server: sn(server)? }
        }
        CtlCommand::Tasks(TasksCmd::Move { task, cluster, server, direction }) => Change::MoveServer {
            task: tn(task)?,
            cluster: cn(cluster)?,
            server: sn(server)?,
            direction: match direction {
                Dir::Up => MoveDirection::Up,
                Dir::Down => MoveDirection::Down,
            },
        },
        CtlCommand::Tasks(TasksCmd::LoadBalancing { task, cluster, state }) => {
            Change::SetLoadBalancing { task: tn(task)?, cluster: cn(cluster)?, enabled: matches!(state, OnOff::On) }
        }
        CtlCommand::Tasks(TasksCmd::DeleteConfig { task, cluster }) => Change::DeleteTaskConfig { task: tn(task)?, cluster: cn(cluster)? },
        other => bail!("{other:?} is not a change"),
    })
}

fn ok((status, v): (u16, Value)) -> anyhow::Result<Value> {
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        bail!("{} (HTTP {status})", error_message(&v))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~:".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn join(v: &Value) -> String {
    v.as_array().map(|a| a.iter().map(plain).collect::<Vec<_>>().join(",")).unwrap_or_default()
}

fn show(out: Output, v: Value) {
    let _ = out;
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// Prints the outcome of a write.
fn report(out: Output, v: &Value) {
    if out == Output::Json {
        println!("{v}");
        return;
    }
    if let Some(r) = v.pointer("/committed/revision") {
        println!("committed revision {r}");
    } else if let Some(id) = v.pointer("/changeset_created/id") {
        println!("created changeset {}", plain(id));
    } else if let Some(u) = v.get("changeset_updated") {
        println!("staged in changeset {} ({} changes)", plain(&u["id"]), u["changes"]);
    } else if let Some(id) = v.pointer("/changeset_discarded/id") {
        println!("discarded changeset {}", plain(id));
    } else {
        println!("{v}");
    }
}

/// Prints rows of a JSON array as a table (or the JSON itself).
fn print(out: Output, v: &Value, headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| a.iter().map(|x| row(x).into_iter().map(|c| c.trim_matches('"').to_string()).collect()).collect())
        .unwrap_or_default();
    print_table(headers, &rows);
}

/// Text from the cluster, safe for a terminal: control, bidi-override and separator
/// characters (records stored before they were refused) are shown as `\u{...}` escapes.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if crate::domain::names::is_unsafe_text_char(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| terminal_safe(c)).collect()).collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{:<w$}", c, w = widths[i])).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn print_configs(out: Output, tasks: &Value) {
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(tasks).unwrap_or_default());
        return;
    }
    let mut rows = Vec::new();
    for t in tasks.as_array().into_iter().flatten() {
        let configs = t["configs"].as_array().cloned().unwrap_or_default();
        if configs.is_empty() {
            rows.push(vec![plain(&t["name"]), "-".into(), "-".into(), "-".into()]);
        }
        for c in configs {
            let servers: Vec<String> = c["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| format!("{}({})", plain(&s["name"]), plain(&s["status"])))
                .collect();
            rows.push(vec![plain(&t["name"]), plain(&c["cluster"]), plain(&c["load_balancing"]), servers.join(" > ")]);
        }
    }
    print_table(&["task", "cluster", "load_balancing", "failover order"], &rows);
}

fn event_summary(e: &Value) -> String {
    match e.as_object().and_then(|o| o.iter().next()) {
        Some((kind, body)) => {
            let fields: Vec<String> = body
                .as_object()
                .map(|o| o.iter().filter(|(k, _)| *k != "server").map(|(k, v)| format!("{k}={}", plain(v))).collect())
                .unwrap_or_default();
            let server = body.get("server").and_then(|s| s.get("name")).map(|n| format!("server={}", plain(n)));
            format!("{kind}({})", server.into_iter().chain(fields).collect::<Vec<_>>().join(" "))
        }
        None => e.to_string(),
    }
}

fn print_diff(changes: &Value) {
    let list = changes.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("  (no changes)");
    }
    for c in list {
        let sign = match c["kind"].as_str() {
            Some("added") => "+",
            Some("removed") => "-",
            _ => "~",
        };
        let detail = match c["kind"].as_str() {
            Some("added") => plain(&c["after"]),
            Some("removed") => plain(&c["before"]),
            _ => format!("{} -> {}", plain(&c["before"]), plain(&c["after"])),
        };
        println!("  {sign} {} {}: {}", plain(&c["entity"]), plain(&c["key"]), detail);
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::format_ms(1_795_634_281_876), "2026-11-25T19:18:01Z");
    }
}
