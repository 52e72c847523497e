//! The `roster` binary: parses flags and hands over to the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// Why mimalloc: glibc's allocator kept most of the memory of a burst of agent responses, so a
// node holding many agent watches stayed several times larger than its live data.
// `--features system-alloc` keeps the system allocator instead, so heap profilers that
// intercept malloc (heaptrack) can see the heap.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use roster::server::{parse_peers, ServeConfig};

#[derive(Parser)]
#[command(name = "roster", version, about = "Roster: a highly available control plane for task failover and load balancing")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a management node.
    #[command(after_help = "Examples:\n  roster secure-init /etc/roster --hosts node1.example,10.0.0.11\n  roster serve --node-id 1 --listen 10.0.0.11:7001 --data-dir /var/lib/roster --secure-dir /etc/roster \\\n      --peers 1=10.0.0.11:7001,2=10.0.0.12:7001,3=10.0.0.13:7001\n  roster serve --node-id 4 --listen 10.0.0.14:7001 --data-dir /var/lib/roster --secure-dir /etc/roster --join\n      (then: roster ctl cluster add-node 4 10.0.0.14:7001)")]
    Serve {
        /// This node's id (1, 2, ...).
        #[arg(long, default_value_t = 1)]
        node_id: u64,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: std::net::SocketAddr,
        /// Address peers and clients use for this node (default: --listen).
        #[arg(long)]
        advertise: Option<String>,
        /// The initial cluster, e.g. 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003.
        /// Used only on an empty data dir; without it the node forms a single-node cluster.
        #[arg(long, default_value = "")]
        peers: String,
        /// Where this node keeps its data.
        #[arg(long)]
        data_dir: PathBuf,
        /// Snapshot and compact the Raft log after this many entries.
        #[arg(long, default_value_t = roster::server::SNAPSHOT_EVERY_LOGS_DEFAULT)]
        snapshot_every_logs: u64,
        /// Raft log entries kept behind a snapshot for lagging followers.
        #[arg(long, default_value_t = roster::server::LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT)]
        logs_kept_after_snapshot: u64,
        /// Join an existing cluster instead of bootstrapping: start, then run
        /// `roster ctl cluster add-node ID ADDR` against the cluster.
        #[arg(long, conflicts_with = "peers")]
        join: bool,
        /// Re-enable a failed server after this many consecutive healthy TCP probes
        /// (0: only an operator re-enables failed servers).
        #[arg(long, default_value_t = 0)]
        recover_after_probes: u32,
        /// Time between probes of failed servers.
        #[arg(long, default_value_t = 5_000)]
        probe_interval_ms: u64,
        /// Minimum time a server stays failed before it may recover.
        #[arg(long, default_value_t = 30_000)]
        probe_hold_down_ms: u64,
        /// Time a client has to send a request's headers (slow or idle connections are closed).
        #[arg(long, default_value_t = roster::server::HEADER_READ_TIMEOUT_MS_DEFAULT)]
        header_read_timeout_ms: u64,
        /// Time a node being added (`cluster add-node`) has to catch up before it is made a
        /// voter; a node that does not is removed again and never votes.
        #[arg(long, default_value_t = roster_raft::node::LEARNER_CATCH_UP_MS)]
        learner_catch_up_ms: u64,
        /// Serve node-to-node traffic (Raft, forwarded writes) on this separate address, with
        /// its own connection budget, so client load cannot starve consensus. Member addresses
        /// (--peers, cluster add-node) are then peer addresses; --listen serves only clients.
        #[arg(long)]
        peer_listen: Option<std::net::SocketAddr>,
        /// The peer address other nodes use (default: --peer-listen).
        #[arg(long, requires = "peer_listen")]
        peer_advertise: Option<String>,
        /// How often the leader sends heartbeats to the followers; also how long it waits for
        /// a follower to answer an append before sending it again.
        #[arg(long, default_value_t = roster::server::HEARTBEAT_MS_DEFAULT)]
        heartbeat_ms: u64,
        /// A follower that stops hearing from the leader waits out the lease (the maximum),
        /// then a random time between the minimum and the maximum, and starts an election.
        /// The minimum must cover at least three heartbeats. Lower values fail over faster and risk needless elections on a slow
        /// network; every node of a cluster should use the same values.
        #[arg(long, default_value_t = roster::server::ELECTION_TIMEOUT_MIN_MS_DEFAULT)]
        election_timeout_min_ms: u64,
        /// The maximum (see --election-timeout-min-ms); a follower also refuses to vote for
        /// another candidate this long after it last heard from the leader (the leader lease).
        #[arg(long, default_value_t = roster::server::ELECTION_TIMEOUT_MAX_MS_DEFAULT)]
        election_timeout_max_ms: u64,
        /// Prefer this node as the leader: the leader hands over to the voter with the lowest
        /// priority (0 first) once it has been reachable and caught up for a few seconds, at
        /// most once per 15 s. Nodes without it are never preferred.
        #[arg(long)]
        leader_priority: Option<u32>,
        /// Join as a learner: a member that replicates the log and serves reads, agents, the
        /// console and forwarded writes, but never votes (`cluster add-node` adds a node
        /// started with it as a learner). Scales out agent watches without slowing commits.
        #[arg(long, requires = "join")]
        learner: bool,
        /// An agent that no node has heard from for this long, and that holds no config
        /// watch, is shown as stale in `agents list`.
        #[arg(long, default_value_t = roster::api::AGENT_STALE_AFTER_SECS_DEFAULT)]
        agent_stale_after_secs: u64,
        /// Have the leader remove agents not seen for this long (one recorded revision per
        /// round); off by default. At least --agent-stale-after-secs.
        #[arg(long)]
        forget_agents_after_secs: Option<u64>,
        /// Most agent config watches this node holds at once; more are refused with 503 and
        /// the agents back off and retry (another node). Each held watch costs about 40 KB of
        /// memory and one file descriptor; the node raises its file limit as far as it may.
        #[arg(long, default_value_t = roster::api::WATCHES_PER_NODE_MAX)]
        watches_max: usize,
        /// A server becomes failed cluster-wide after failure reports from this many distinct
        /// agents (1: the first report, the product's behaviour)...
        #[arg(long, default_value_t = roster::api::FAIL_AFTER_REPORTS_DEFAULT)]
        fail_after_reports: usize,
        /// ...within this long.
        #[arg(long, default_value_t = roster::api::FAIL_REPORT_WINDOW_SECS_DEFAULT)]
        fail_report_window_secs: u64,
        /// The history signing key that signs checkpoints (`GET /v1/history/checkpoint`).
        /// Default: `history-key` in --secure-dir when that file exists.
        #[arg(long)]
        history_key: Option<PathBuf>,
        #[command(flatten)]
        security: SecurityArgs,
    },
    /// Administer a cluster over its HTTP API.
    #[command(after_help = "Examples:\n  roster ctl servers add rt1 --host 10.0.0.1 --port 8080\n  roster ctl tasks set-servers billing --cluster eu rt1 rt2\n  CS=$(roster ctl -q changesets create --description \"eu rollout\")\n  roster ctl --changeset $CS tasks add-server billing --cluster eu rt3\n  roster ctl -m \"add rt3\" --expected-revision $(roster ctl revision) apply $CS\n  roster ctl -o json tasks get billing\n\nExit statuses: 0 ok, 1 error, 2 usage, 3 conflict (HTTP 409), 4 unavailable.")]
    Ctl(roster::cli::CtlArgs),
    /// Run the agent of a client computer.
    #[command(after_help = "Example:\n  roster agent --id host7 --endpoints 10.0.0.11:7001,10.0.0.12:7001,10.0.0.13:7001 \\\n      --ca /etc/roster/ca.pem --token-file /etc/roster/host7.token \\\n      --state-dir /var/lib/roster-agent --listen 127.0.0.1:7400\n  (the token: roster ctl tokens create host7 agent --agent host7 --secret-file host7.token)")]
    Agent(roster::agent::AgentArgs),
    /// Ask the local agent which server a task should use now.
    #[command(after_help = "Examples:\n  roster resolve billing                       # prints the URL to use now\n  roster resolve \"Account Inquiry (v2)\"        # names are percent-encoded for you")]
    Resolve {
        task: String,
        /// The local agent's address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        agent: String,
        /// The agent's state dir, read when no agent answers (its deployed configuration,
        /// then its local file).
        #[arg(long, default_value = "roster-agent")]
        state_dir: PathBuf,
    },
    /// Tell the local agent that a server could not be used for a task.
    ReportFailure {
        task: String,
        server: String,
        #[arg(long, default_value = "127.0.0.1:7400")]
        agent: String,
        /// The agent's state dir, which holds the client secret the agent requires.
        #[arg(long, default_value = "roster-agent")]
        state_dir: PathBuf,
        /// The client secret file (default: `client.secret` in --state-dir).
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Create a local CA, node certificate, cluster secret and admin token in a directory
    /// (for `roster serve --secure-dir DIR`).
    #[command(name = "secure-init")]
    SecureInit {
        dir: PathBuf,
        /// Extra host names or IP addresses for the node certificate (localhost and the
        /// loopback addresses are always included).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Replace an existing CA and everything else in the directory.
        #[arg(long)]
        force: bool,
    },
    /// Make a history signing key in DIR (`history-key`, and `history-key.vkey` for auditors),
    /// for a secure directory made before `secure-init` made one.
    #[command(name = "history-key-new")]
    HistoryKeyNew {
        dir: PathBuf,
        /// The key's name, which is also the checkpoints' origin line (no spaces, no '+').
        #[arg(long)]
        name: Option<String>,
        /// Replace an existing key (checkpoints signed with it can then no longer be checked
        /// with the new verifier key).
        #[arg(long)]
        force: bool,
    },
    /// Make a new token secret and print it with its token-file line (nothing is stored).
    #[command(name = "token-new")]
    TokenNew {
        name: String,
        /// admin, operator, auditor, agent or viewer.
        role: String,
        /// For the agent role: the agent this token speaks for.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Audit tools: export, verify, replay the history.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  roster audit export -o history.jsonl        # with an auditor token\n  roster audit verify history.jsonl\n  roster audit replay history.jsonl --to 42\n  roster audit checkpoint -o head.txt --public-key history-key.vkey")]
    Audit(roster::audit::AuditCmd),
    /// Write a new data dir from a backup (`roster ctl backup`), after checking its checksum,
    /// every history record's hash and link, and the fold. Start the new cluster's nodes on
    /// such data dirs with `roster serve --peers ...` (restore once per node).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new node's data dir (must not hold a database yet).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Check a stopped node's data directory (Raft log, applied state, snapshot files) without
    /// changing it; prints a JSON report and exits 1 if it finds a problem.
    #[command(name = "check-data-dir")]
    CheckDataDir {
        /// The node's --data-dir.
        data_dir: PathBuf,
    },
    /// Start a local multi-node cluster on loopback.
    #[command(after_help = "Examples:\n  roster dev                     # 3 secure nodes on 127.0.0.1:7001-7003, data in ./roster-dev\n  roster dev --insecure          # plain HTTP, no tokens\n  roster dev --base-port 8001    # other ports")]
    Dev(roster::dev::DevArgs),
    /// Benchmarks (fold speed, restart time).
    #[command(subcommand)]
    Bench(roster::bench::BenchCmd),
    /// Print a shell completion script: `roster completions bash > /etc/bash_completion.d/roster`
    /// (zsh: into a directory on $fpath as `_roster`; fish: ~/.config/fish/completions/roster.fish).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `roster man > /usr/local/share/man/man1/roster.1`.
    Man,
    /// Print the HTTP API's OpenAPI 3.1 document (the same as GET /v1/openapi.json).
    Openapi,
}

/// TLS and authentication of `roster serve`: either `--secure-dir` (or the individual files),
/// or `--insecure` for a plain-HTTP local demo.
#[derive(clap::Args)]
struct SecurityArgs {
    /// Plain HTTP with no authentication. Only for a local demo on loopback.
    #[arg(long, conflicts_with_all = ["secure_dir", "tls_cert", "tls_key", "tls_ca", "tokens", "cluster_secret_file"])]
    insecure: bool,
    /// A directory made by `roster secure-init`: ca.pem, node.pem, node-key.pem, tokens,
    /// cluster-secret. The flags below override single files.
    #[arg(long, env = "ROSTER_SECURE_DIR")]
    secure_dir: Option<PathBuf>,
    /// This node's TLS certificate chain (PEM).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// This node's TLS private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that peer nodes' certificates are checked against.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Token file: one `NAME ROLE SHA256-OF-SECRET` per line (see `roster token-new`).
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// File holding the secret nodes present to each other on the Raft routes.
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    /// Serve /metrics without a token.
    #[arg(long)]
    metrics_public: bool,
}

impl SecurityArgs {
    fn resolve(self) -> anyhow::Result<Option<roster::server::Security>> {
        if self.insecure {
            return Ok(None);
        }
        let base = self.secure_dir.as_deref().map(roster::server::Security::from_dir);
        let pick = |flag: Option<PathBuf>, from_dir: Option<PathBuf>, name: &str| -> anyhow::Result<PathBuf> {
            flag.or(from_dir).ok_or_else(|| {
                anyhow::anyhow!(
                    "TLS and tokens are required: give --secure-dir DIR (make one with `roster secure-init DIR`) \
                     or --{name} and the other files; for a plain-HTTP local demo pass --insecure"
                )
            })
        };
        Ok(Some(roster::server::Security {
            tls_cert: pick(self.tls_cert, base.as_ref().map(|b| b.tls_cert.clone()), "tls-cert")?,
            tls_key: pick(self.tls_key, base.as_ref().map(|b| b.tls_key.clone()), "tls-key")?,
            tls_ca: pick(self.tls_ca, base.as_ref().map(|b| b.tls_ca.clone()), "tls-ca")?,
            tokens: pick(self.tokens, base.as_ref().map(|b| b.tokens.clone()), "tokens")?,
            cluster_secret: pick(self.cluster_secret_file, base.as_ref().map(|b| b.cluster_secret.clone()), "cluster-secret-file")?,
            metrics_public: self.metrics_public,
        }))
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        // The error and its causes on one line; never a backtrace, even with RUST_BACKTRACE set.
        eprintln!("Error: {e:#}");
        std::process::exit(roster::cli::exit_code(&e));
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Cmd::Serve { .. } | Cmd::Agent(_) | Cmd::Dev(_) | Cmd::SecureInit { .. } | Cmd::Restore { .. }) {
        // Data directories and state files hold token hashes, the history and secrets: what
        // these commands create is for their own user only.
        // SAFETY: umask only changes the process's file-creation mask.
        unsafe { libc::umask(0o077) };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROSTER_LOG").unwrap_or_else(|_| "info,openraft=warn".into());
    match cli.command {
        Cmd::Serve {
            node_id,
            listen,
            advertise,
            peers,
            data_dir,
            snapshot_every_logs,
            logs_kept_after_snapshot,
            join,
            recover_after_probes,
            probe_interval_ms,
            probe_hold_down_ms,
            header_read_timeout_ms,
            learner_catch_up_ms,
            peer_listen,
            peer_advertise,
            history_key,
            heartbeat_ms,
            election_timeout_min_ms,
            election_timeout_max_ms,
            leader_priority,
            learner,
            agent_stale_after_secs,
            forget_agents_after_secs,
            watches_max,
            fail_after_reports,
            fail_report_window_secs,
            security,
        } => {
            tracing_subscriber::fmt().with_env_filter(filter).init();
            anyhow::ensure!(snapshot_every_logs > 0, "--snapshot-every-logs must be at least 1");
            let history_key = history_key.or_else(|| {
                security.secure_dir.as_ref().map(|d| d.join(roster::tls::HISTORY_KEY)).filter(|p| p.exists())
            });
            let security = security.resolve()?;
            if security.is_none() {
                tracing::warn!("--insecure: plain HTTP and no authentication; anyone who reaches {listen} can change the configuration");
            }
            roster::server::check_failure_detection(heartbeat_ms, election_timeout_min_ms, election_timeout_max_ms).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(agent_stale_after_secs >= 1, "--agent-stale-after-secs must be at least 1");
            anyhow::ensure!((1..=1_000_000).contains(&watches_max), "--watches-max must be 1..=1000000");
            anyhow::ensure!((1..=1000).contains(&fail_after_reports), "--fail-after-reports must be 1 to 1000");
            anyhow::ensure!(fail_report_window_secs >= 1, "--fail-report-window-secs must be at least 1");
            if let Some(f) = forget_agents_after_secs {
                anyhow::ensure!(
                    f >= agent_stale_after_secs,
                    "--forget-agents-after-secs ({f}) must be at least --agent-stale-after-secs ({agent_stale_after_secs}): only stale agents are forgotten"
                );
            }
            let config = ServeConfig {
                security,
                history_key,
                heartbeat_ms,
                election_timeout_min_ms,
                election_timeout_max_ms,
                leader_priority,
                learner,
                agent_stale_after_ms: agent_stale_after_secs.saturating_mul(1000),
                forget_agents_after_ms: forget_agents_after_secs.map(|s| s.saturating_mul(1000)),
                watches_max,
                failure_policy: roster::api::FailurePolicy { reports: fail_after_reports, window_ms: fail_report_window_secs.saturating_mul(1000) },
                advertise,
                peers: parse_peers(&peers)?,
                snapshot_every_logs,
                logs_kept_after_snapshot,
                join,
                header_read_timeout_ms,
                learner_catch_up_ms,
                peer_listen,
                peer_advertise,
                probe: (recover_after_probes > 0).then_some(roster::prober::ProbeConfig {
                    healthy_probes: recover_after_probes,
                    interval_ms: probe_interval_ms,
                    hold_down_ms: probe_hold_down_ms,
                }),
                ..ServeConfig::new(node_id, listen, data_dir)
            };
            roster::server::run(config, shutdown_signal()).await
        }
        Cmd::Ctl(args) => {
            roster::cli::run(args).await
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "roster", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Openapi => {
            println!("{}", serde_json::to_string_pretty(&roster::api::openapi::document())?);
            Ok(())
        }
        Cmd::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Cmd::Agent(args) => {
            tracing_subscriber::fmt().with_env_filter(filter).init();
            roster::agent::run(args, shutdown_signal()).await
        }
        Cmd::Audit(cmd) => roster::audit::run(cmd).await,
        Cmd::SecureInit { dir, hosts, force } => {
            let done = roster::tls::init(&dir, &hosts, force)?;
            println!("wrote a CA, a node certificate, a cluster secret and a token file to {}", done.dir.display());
            println!("start nodes with:   roster serve --secure-dir {} ...", done.dir.display());
            println!(
                "the CA's private key is in {} (not in the directory nodes read): keep it offline",
                roster::tls::ca_key_path(&done.dir).display()
            );
            println!("admin token (also in {}):", done.dir.join(roster::tls::ADMIN_TOKEN).display());
            println!("{}", done.admin_secret);
            println!("history verifier key for auditors (also in {}):", done.dir.join(roster::tls::HISTORY_VKEY).display());
            println!("{}", done.history_vkey);
            Ok(())
        }
        Cmd::HistoryKeyNew { dir, name, force } => {
            let vkey = roster::tls::init_history_key(&dir, name.as_deref(), force)?;
            println!("wrote {} and {}", dir.join(roster::tls::HISTORY_KEY).display(), dir.join(roster::tls::HISTORY_VKEY).display());
            println!("history verifier key for auditors:\n{vkey}");
            Ok(())
        }
        Cmd::TokenNew { name, role, agent } => {
            let role = roster::domain::tokens::Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("unknown role {role:?}: admin, operator, auditor, agent or viewer"))?;
            roster::domain::tokens::TokenName::new(name.as_str())?;
            anyhow::ensure!((role == roster::domain::tokens::Role::Agent) == agent.is_some(), "--agent is needed for, and only for, the agent role");
            if let Some(a) = &agent {
                roster::domain::AgentId::new(a.as_str())?;
            }
            let secret = roster::auth::new_secret();
            println!("secret (give it to the token's user; it is not stored anywhere):\n{secret}");
            println!("token file line:\n{}", roster::auth::token_file_line(&name, role, agent.as_deref(), &secret));
            Ok(())
        }
        Cmd::Resolve { task, agent, state_dir } => roster::agent::resolve_cmd(&agent, &task, &state_dir).await,
        Cmd::ReportFailure { task, server, agent, state_dir, secret_file } => {
            let secret_file = secret_file.unwrap_or_else(|| state_dir.join(roster::agent::CLIENT_SECRET_FILE));
            roster::agent::report_failure_cmd(&agent, &task, &server, &secret_file).await
        }
        Cmd::Dev(args) => {
            tracing_subscriber::fmt().with_env_filter(filter).init();
            roster::dev::run(args).await
        }
        Cmd::Bench(cmd) => roster::bench::run(cmd).await,
        Cmd::Restore { file, data_dir } => {
            let started = std::time::Instant::now();
            let r = roster::backup::restore(&file, &data_dir)?;
            println!(
                "restored revision {} ({} records, {} frames; backup taken on node {}) into {} in {:.1}s",
                r.meta.revision,
                r.records,
                r.frames,
                r.meta.node,
                data_dir.display(),
                started.elapsed().as_secs_f64()
            );
            println!("head hash {}", r.head);
            println!("state digest {}", r.digest);
            println!(
                "start a new cluster on it: restore the same file into every new node's data dir, then `roster serve --data-dir DIR --node-id N --peers 1=...,2=...,3=... (with --secure-dir)`"
            );
            Ok(())
        }
        Cmd::CheckDataDir { data_dir } => {
            anyhow::ensure!(data_dir.join("db").is_dir(), "{} holds no node database (no db/ folder)", data_dir.display());
            let report = roster_storage::check_data_dir::<roster_raft::TypeConfig>(&data_dir)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.problems.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
