//! The `roster` binary: parses flags and hands over to the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// Why mimalloc: glibc's allocator kept most of the memory of a burst of agent responses, so a
// node holding many agent watches stayed several times larger than its live data.
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
    },
    /// Administer a cluster over its HTTP API.
    Ctl(roster::cli::CtlArgs),
    /// Run the agent of a client computer.
    Agent(roster::agent::AgentArgs),
    /// Ask the local agent which server a task should use now.
    Resolve {
        task: String,
        /// The local agent's address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        agent: String,
    },
    /// Tell the local agent that a server could not be used for a task.
    ReportFailure {
        task: String,
        server: String,
        #[arg(long, default_value = "127.0.0.1:7400")]
        agent: String,
    },
    /// Audit tools: export, verify, replay the history.
    #[command(subcommand)]
    Audit(roster::audit::AuditCmd),
    /// Start a local multi-node cluster on loopback.
    Dev(roster::dev::DevArgs),
    /// Benchmarks (fold speed, restart time).
    #[command(subcommand)]
    Bench(roster::bench::BenchCmd),
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
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
        } => {
            tracing_subscriber::fmt().with_env_filter(filter).init();
            anyhow::ensure!(snapshot_every_logs > 0, "--snapshot-every-logs must be at least 1");
            let config = ServeConfig {
                advertise,
                peers: parse_peers(&peers)?,
                snapshot_every_logs,
                logs_kept_after_snapshot,
                join,
                header_read_timeout_ms,
                probe: (recover_after_probes > 0).then_some(roster::prober::ProbeConfig {
                    healthy_probes: recover_after_probes,
                    interval_ms: probe_interval_ms,
                    hold_down_ms: probe_hold_down_ms,
                }),
                ..ServeConfig::new(node_id, listen, data_dir)
            };
            roster::server::run(config, shutdown_signal()).await
        }
        Cmd::Ctl(args) => roster::cli::run(args).await,
        Cmd::Agent(args) => {
            tracing_subscriber::fmt().with_env_filter(filter).init();
            roster::agent::run(args, shutdown_signal()).await
        }
        Cmd::Audit(cmd) => roster::audit::run(cmd).await,
        Cmd::Resolve { task, agent } => roster::agent::resolve_cmd(&agent, &task).await,
        Cmd::ReportFailure { task, server, agent } => roster::agent::report_failure_cmd(&agent, &task, &server).await,
        Cmd::Dev(args) => {
            tracing_subscriber::fmt().with_env_filter(filter).init();
            roster::dev::run(args).await
        }
        Cmd::Bench(cmd) => roster::bench::run(cmd).await,
    }
}
