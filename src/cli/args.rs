//! The flags of `roster ctl`, and the connection flags every client command shares.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use super::client::Transport;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

impl Output {
    /// JSON or YAML: the answer as data rather than text for people.
    pub fn structured(self) -> bool {
        self != Output::Table
    }
}

/// Where the management nodes are and how to authenticate to them (ctl, agent, audit).
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Management nodes to talk to (host:port or a full URL), tried in order.
    #[arg(global = true, long, env = "ROSTER_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:7001")]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) the nodes' certificates are checked against; HTTPS is used when
    /// it is set. Default: `roster-dev/secure/ca.pem` if that file exists.
    #[arg(global = true, long, env = "ROSTER_CA")]
    pub ca: Option<PathBuf>,
    /// File holding the bearer token. Default for `ctl` (and, with a warning, `audit`):
    /// `roster-dev/secure/admin.token` if it exists; `roster agent` needs its own agent token.
    #[arg(global = true, long, env = "ROSTER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Talk plain HTTP without a token, even if the dev cluster's files exist.
    #[arg(global = true, long)]
    pub insecure: bool,
}

/// Where `roster dev` keeps its security files.
pub const DEV_SECURE_DIR: &str = "roster-dev/secure";

/// Whether a tool may fall back to the dev cluster's admin token (`roster-dev/secure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevToken {
    /// `roster ctl`: an administrator's tool, so the dev admin token is its natural default.
    Use,
    /// `roster audit`: allowed, with a warning that an auditor token is what belongs there.
    Warn,
    /// `roster agent`: never; an agent speaks with its own agent token.
    Never,
}

impl ConnArgs {
    /// The transport these flags describe, for `roster ctl`.
    pub fn transport(&self) -> anyhow::Result<Transport> {
        self.transport_for(DevToken::Use)
    }

    /// The transport these flags describe; `dev` says whether the dev admin token may be the
    /// default token.
    pub fn transport_for(&self, dev_token: DevToken) -> anyhow::Result<Transport> {
        if self.insecure {
            return Ok(Transport::insecure());
        }
        let dev = std::path::Path::new(DEV_SECURE_DIR);
        let ca = self.ca.clone().or_else(|| Some(dev.join(crate::tls::CA_CERT)).filter(|p| p.exists()));
        let dev_admin = Some(dev.join(crate::tls::ADMIN_TOKEN)).filter(|p| p.exists() && dev_token != DevToken::Never);
        let token_file = match (&self.token_file, dev_admin) {
            (Some(f), _) => Some(f.clone()),
            (None, Some(f)) => {
                if dev_token == DevToken::Warn {
                    eprintln!("warning: using the dev cluster's admin token {}; give --token-file (an auditor token) to act with less", f.display());
                }
                Some(f)
            }
            (None, None) => None,
        };
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
    /// Output format (before the subcommand: some subcommands take `-o FILE`).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Identity recorded as the actor of changes when the cluster runs without
    /// authentication (default: $USER); with tokens the actor is the token's name.
    #[arg(global = true, long, env = "ROSTER_ACTOR")]
    pub actor: Option<String>,
    /// Comment recorded with the revision.
    #[arg(global = true, short = 'm', long)]
    pub comment: Option<String>,
    /// Refuse the write unless the cluster is at this revision.
    #[arg(global = true, long)]
    pub expected_revision: Option<u64>,
    /// Idempotency key (default: a random one per invocation).
    #[arg(global = true, long)]
    pub idempotency_key: Option<String>,
    /// Stage the change in this changeset instead of applying it.
    #[arg(global = true, long)]
    pub changeset: Option<String>,
    /// Read the node's own applied state instead of a linearizable read.
    #[arg(global = true, long)]
    pub local: bool,
    /// Print only what a script needs: the revision a write committed, the id of the changeset
    /// it created or staged in (`CS=$(roster ctl -q changesets create)`), the revision a plan
    /// was made against, or a new token's secret.
    #[arg(global = true, short = 'q', long)]
    pub quiet: bool,
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
    /// Apply a staged changeset as one revision ("Apply All Changes"): `apply ID`. Or apply a
    /// configuration document's changes as one revision: `apply -f FILE [--prune]`, refused
    /// if the cluster moved since the plan (`--expected-revision R` as `plan` printed it;
    /// default: the revision read now); with `--changeset ID` they are staged instead.
    Apply {
        #[arg(required_unless_present = "file")]
        id: Option<String>,
        #[arg(long, short = 'f', conflicts_with = "id")]
        file: Option<std::path::PathBuf>,
        /// Also delete what the document does not declare.
        #[arg(long, requires = "file")]
        prune: bool,
        /// Apply the changeset even though it leaves some task without a usable server
        /// (`changesets preview` warns of it).
        #[arg(long, requires = "id")]
        confirm: bool,
    },
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
    /// Print the cluster's current revision (for `--expected-revision`; `roster ctl -o json
    /// revision` adds the state digest).
    Revision,
    /// Cluster status.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// API tokens (admin).
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Show who the cluster thinks you are (token name and role).
    Whoami,
    /// Write the whole configuration (servers, agent clusters, task lists) as a document to
    /// keep in git: YAML, or JSON for a `.json` file (stdout: YAML, JSON with `ctl -o json`).
    ExportConfig {
        #[arg(long, short = 'o')]
        output: Option<std::path::PathBuf>,
    },
    /// Show the changes that applying a document would make, and the revision they are
    /// planned against. Changes nothing.
    Plan {
        #[arg(long, short = 'f')]
        file: std::path::PathBuf,
        /// Also delete what the document does not declare.
        #[arg(long)]
        prune: bool,
    },
    /// Save a consistent point-in-time backup of the cluster's data (operator or admin), for
    /// `roster restore`.
    Backup {
        #[arg(long, short = 'o')]
        output: std::path::PathBuf,
    },
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
    /// List servers (all pages), optionally only those with a status.
    List {
        /// enabled, disabled or failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one server.
    Get { name: String },
    /// Register a server: `--host H [--port P] [--pool P] [--scheme S]`, or the whole address
    /// as one `--url scheme://host:port/?pool=P`. The port defaults to 6700.
    Add {
        name: String,
        #[arg(long, required_unless_present = "url")]
        host: Option<String>,
        #[arg(long, conflicts_with = "url")]
        port: Option<u16>,
        #[arg(long, conflicts_with = "url")]
        pool: Option<String>,
        #[arg(long, conflicts_with = "url")]
        scheme: Option<String>,
        #[arg(long, conflicts_with = "host")]
        url: Option<String>,
    },
    /// Change a server's address: single fields, or the whole address as one `--url` (which
    /// sets scheme, host, port and pool, clearing a pool it does not name).
    Update {
        name: String,
        #[arg(long, conflicts_with = "url")]
        url: Option<String>,
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
    /// Delete a server (it leaves every failover list).
    Delete { name: String },
    /// Enable a server (also clears `failed`).
    Enable { name: String },
    /// Disable a server: agents skip it, it stays in the lists.
    Disable { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ClustersCmd {
    /// List agent clusters with their agents and tasks.
    List,
    /// Show one agent cluster.
    Get { name: String },
    /// Create an agent cluster.
    Create { name: String },
    /// Delete an agent cluster (and its task configurations).
    Delete { name: String },
    /// Add an agent to the cluster (one that has not made contact yet is registered with it).
    AddAgent { cluster: String, agent: String },
    /// Remove an agent from the cluster.
    RemoveAgent { cluster: String, agent: String },
}

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// Agents with their state (connected: holds a config watch; stale: not seen for
    /// --agent-stale-after-secs), clusters, deployed revision, last contact and lag.
    List,
    /// Register an agent before it makes contact.
    Register { id: String },
    /// Forget an agent: out of every cluster, registration dropped (its tokens stay; revoke
    /// them too to keep a running agent from registering again).
    Remove { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TasksCmd {
    /// List tasks and their configurations (all pages), optionally filtered.
    ///
    /// Example: roster ctl tasks list --server rt1   (which lists use rt1)
    List {
        /// Only tasks configured for this agent cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only tasks whose failover lists name this server.
        #[arg(long)]
        server: Option<String>,
    },
    /// Show a task's failover lists, per agent cluster.
    Get { task: String },
    /// Create a task (without lists yet).
    Create { task: String },
    /// Delete a task and all its lists.
    Delete { task: String },
    /// Replace the failover list (in order).
    SetServers {
        task: String,
        #[arg(long)]
        cluster: String,
        servers: Vec<String>,
    },
    /// Add a server to the failover list (at the end, or at --position, 0-based).
    AddServer {
        task: String,
        #[arg(long)]
        cluster: String,
        server: String,
        #[arg(long)]
        position: Option<u32>,
        /// Priority tier of the entry (1 = first, the default; up to 100).
        #[arg(long)]
        priority: Option<u16>,
        /// Load-balancing weight of the entry within its tier (1-1000, default 1).
        #[arg(long)]
        weight: Option<u16>,
    },
    /// Set a list entry's priority tier and load-balancing weight.
    ///
    /// Only the lowest tier that has a usable server is used; within it, failover order without
    /// load balancing, and a smooth weighted rotation with it.
    ///
    /// Example: roster ctl tasks set-weight billing --cluster east rt1 --priority 1 --weight 3
    SetWeight {
        task: String,
        #[arg(long)]
        cluster: String,
        server: String,
        /// Priority tier (1 = first, up to 100).
        #[arg(long, required_unless_present = "weight")]
        priority: Option<u16>,
        /// Load-balancing weight within the tier (1-1000).
        #[arg(long)]
        weight: Option<u16>,
    },
    /// Remove a server from the failover list.
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
    /// Delete a task's failover list for one agent cluster.
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
    /// List staged changesets.
    List,
    /// Show a changeset's changes, as staged.
    Show { id: String },
    /// Create a changeset to stage changes in (`ctl --changeset ID ...`).
    Create {
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Add raw changes given as JSON (e.g. '{"create_cluster":{"name":"eu"}}').
    Add { id: String, changes: Vec<String> },
    /// Show what applying it would change, and the agents it reaches.
    Preview { id: String },
    /// Drop a changeset without applying it.
    Discard { id: String },
}

#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// List tokens (never their secrets).
    List,
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        /// admin, operator, auditor, agent or viewer.
        role: String,
        /// For the agent role: the agent this token speaks for.
        #[arg(long)]
        agent: Option<String>,
        /// Write the secret to this new file (mode 0600; an existing file is refused) instead
        /// of printing it: the file is what `roster agent --token-file` and
        /// `ROSTER_TOKEN_FILE` read.
        #[arg(long)]
        secret_file: Option<std::path::PathBuf>,
    },
    /// Revoke a token created through the API.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Members, roles, leader, term, indexes and follower lag.
    Status,
    /// Add a node: it joins as a learner, catches up, then becomes a voter; with `--learner`
    /// (or when the node was started with `--learner`) it stays a learner that never votes.
    /// Run it without `--learner` on a learner to promote it.
    AddNode {
        id: u64,
        addr: String,
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node (the leader included).
    RemoveNode { id: u64 },
    /// Hand leadership to voter ID (default: the most up-to-date other voter), e.g. before
    /// maintenance on the leader's host. Writes wait about one election timeout; none fails.
    TransferLeader { id: Option<u64> },
}
