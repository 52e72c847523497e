//! `roster bench`: measured figures, never timed assertions.
//!
//! - `fold`: decode, hash-check and fold a generated history in memory (offline replay speed).
//! - `restart`: generate a node data dir with a long history through the real state machine,
//!   then start `roster serve` on it and time until it serves the last revision.
//! - `write`: write throughput and latency through a running or a started 3-node cluster.
//! - `agents`: deployment fan-out to simulated agents, and node memory per held watch.
//! - `learners`: agents served by learner nodes, and the voters' write throughput beside them.
//! - `console`: console page render times on a large configuration.

mod agents;
mod console;
mod fold;
mod learners;
mod proofs;
mod restart;
mod rolling;
mod write;

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::domain::{Change, ClusterName, Host, ServerName, TaskName};

pub use agents::AGENTS_BENCH_MAX;
pub use write::{WRITE_BENCH_CLIENTS_MAX, WRITE_BENCH_DURATION_MAX_SECS};

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Offline replay speed: decode + verify + fold a generated history.
    Fold {
        #[arg(long, default_value_t = 1_000_000)]
        revisions: u64,
    },
    /// Restart time of a node on a long history.
    Restart {
        #[arg(long, default_value_t = 1_000_000)]
        revisions: u64,
        /// Where to generate the node's data (default: a temporary folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Restarts to time.
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// Write throughput and latency: concurrent clients sending single-change commands.
    Write {
        /// Concurrent clients (each sends one request at a time).
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Endpoints of a running cluster; without them a 3-node cluster is started on
        /// loopback (separate processes, fsync on) for the run.
        #[arg(long, value_delimiter = ',')]
        endpoints: Vec<String>,
        /// Send every request to the leader (`leader`) or spread clients over all nodes
        /// (`all`, followers forward to the leader).
        #[arg(long, default_value = "leader")]
        target: String,
        /// Run the benchmark's own cluster with TLS and tokens (the production setup) instead
        /// of `--insecure`.
        #[arg(long, conflicts_with = "endpoints")]
        secure: bool,
        /// Rounds of `--duration-secs` each, back to back on the same cluster, one line per
        /// round (with the revision reached and the leader's memory): whether a write's cost
        /// grows with the history.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
        /// `add`: each write registers a new server (the configuration grows with the run);
        /// `update`: each write changes the port of one of 1,000 servers registered first (the
        /// configuration keeps its size, only the history grows).
        #[arg(long, default_value = "add")]
        workload: String,
    },
    /// Deployment fan-out: simulated agents (tasks in this process) hold config watches on one
    /// node; times apply → all agents acknowledged, and the node's memory per agent.
    Agents {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// Changes to apply and time.
        #[arg(long, default_value_t = 5)]
        applies: usize,
        /// Run the node with TLS and tokens (agents connect over TLS) instead of `--insecure`.
        #[arg(long)]
        secure: bool,
        /// Tasks configured for the agents' cluster: each agent's configuration holds them all.
        #[arg(long, default_value_t = 1)]
        tasks: usize,
    },
    /// Agents served by learners: 3 voters and N learners, simulated agents holding their
    /// watches on the learners only. Prints the voters' write throughput (`--clients` writers
    /// to the leader) without and with the agents, the learners' memory per agent, and apply →
    /// all agents acknowledged.
    Learners {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 2)]
        learners: usize,
        /// Concurrent writers (each sends one request at a time) to the leader.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of each write round.
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Changes to apply and time once the agents are connected.
        #[arg(long, default_value_t = 3)]
        applies: usize,
    },
    /// Simulated agents for `learners`, in a child process (not for direct use).
    #[command(hide = true)]
    AgentSim {
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        count: usize,
    },
    /// Writes during a rolling restart (SIGTERM, start, ready for each node of a 3-node
    /// cluster) and during kill -9 of the leader: longest wait, failures, longest gap.
    RollingRestart {
        /// Writer clients, spread over the nodes.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// How many times to kill the leader with SIGKILL after the rolling restart.
        #[arg(long, default_value_t = 3)]
        kill_trials: u32,
        /// Extra `roster serve` flags for every node, e.g.
        /// `--serve-args=--heartbeat-ms=50,--election-timeout-min-ms=150,--election-timeout-max-ms=300`.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        serve_args: Vec<String>,
    },
    /// Merkle tree cost on a long history: inclusion and consistency proofs, checkpoint signing.
    Proofs {
        #[arg(long, default_value_t = 1_000_000)]
        revisions: u64,
        /// A data dir made by an earlier run (default: generate one in a temporary folder).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Proofs of each kind to time.
        #[arg(long, default_value_t = 10_000)]
        samples: usize,
    },
    /// Console page render times on a node holding a large configuration.
    Console {
        #[arg(long, default_value_t = 1_000)]
        servers: usize,
        #[arg(long, default_value_t = 1_000)]
        tasks: usize,
        /// Agent clusters; every task has a configuration for each (tasks x clusters).
        #[arg(long, default_value_t = 10)]
        clusters: usize,
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// Requests per page.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

const SERVERS: usize = 20;
const CLUSTERS: usize = 5;
const TASKS: usize = 50;

fn server(i: usize) -> ServerName {
    ServerName::new(format!("rt{i}")).expect("valid")
}
fn cluster(i: usize) -> ClusterName {
    ClusterName::new(format!("c{i}")).expect("valid")
}
fn task(i: usize) -> TaskName {
    TaskName::new(format!("task{i}")).expect("valid")
}

/// The changes of revision `revision` of a synthetic workload: revision 1 sets up servers,
/// clusters and tasks; later ones are single changes that are always valid.
pub fn synthetic_changes(revision: u64) -> Vec<Change> {
    if revision == 1 {
        let mut v: Vec<Change> = (0..SERVERS)
            .map(|i| Change::AddServer {
                name: server(i),
                host: Host::new(format!("10.0.{}.{}", i / 250, i % 250 + 1)).expect("valid"),
                port: 8080,
                pool: None,
                scheme: None,
            })
            .collect();
        v.extend((0..CLUSTERS).map(|i| Change::CreateCluster { name: cluster(i) }));
        v.extend((0..TASKS).map(|t| Change::SetServers {
            task: task(t),
            cluster: cluster(t % CLUSTERS),
            servers: (0..4).map(|k| server((t + k) % SERVERS)).collect(),
        }));
        return v;
    }
    let r = revision as usize;
    let t = r % TASKS;
    let change = match r % 4 {
        0 => Change::SetLoadBalancing { task: task(t), cluster: cluster(t % CLUSTERS), enabled: r % 8 == 0 },
        1 => Change::DisableServer { name: server(r % SERVERS) },
        2 => Change::EnableServer { name: server(r % SERVERS) },
        _ => Change::SetServers {
            task: task(t),
            cluster: cluster(t % CLUSTERS),
            servers: (0..4).map(|k| server((r + k) % SERVERS)).collect(),
        },
    };
    vec![change]
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Fold { revisions } => tokio::task::spawn_blocking(move || fold::fold(revisions)).await?,
        BenchCmd::Restart { revisions, data_dir, runs } => restart::restart(revisions, data_dir, runs).await,
        BenchCmd::Write { clients, duration_secs, endpoints, target, secure, rounds, workload } => {
            let run = write::WriteRun { clients, duration: Duration::from_secs(duration_secs), rounds, workload, target, secure };
            write::write_bench(run, endpoints).await
        }
        BenchCmd::Agents { agents, applies, secure, tasks } => agents::agents_bench(agents, applies, secure, tasks).await,
        BenchCmd::Learners { agents, learners, clients, duration_secs, applies } => {
            learners::learners_bench(learners::LearnersRun { agents, learners, clients, duration: Duration::from_secs(duration_secs), applies }).await
        }
        BenchCmd::AgentSim { nodes, first, count } => agents::agent_sim(nodes, first, count).await,
        BenchCmd::RollingRestart { clients, kill_trials, serve_args } => rolling::rolling_restart(clients, kill_trials, &serve_args).await,
        BenchCmd::Proofs { revisions, data_dir, samples } => proofs::proofs(revisions, data_dir, samples).await,
        BenchCmd::Console { servers, tasks, clusters, agents, runs } => console::console_bench(servers, tasks, clusters, agents, runs).await,
    }
}

/// A process's resident memory in KiB (`VmRSS`).
fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    use anyhow::Context;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("roster-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The first of `n` consecutive ports that are free now, for a local cluster's nodes (which
/// listen on base, base + 1, ...): a port the system hands out may have its neighbours taken
/// by other connections on this machine.
fn free_ports(n: u16) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let base = free_port()?;
        if base.checked_add(n).is_none() {
            continue;
        }
        let held: Vec<_> = (1..n).map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if held.len() == usize::from(n - 1) {
            return Ok(base);
        }
    }
    anyhow::bail!("found no {n} consecutive free ports on 127.0.0.1")
}
