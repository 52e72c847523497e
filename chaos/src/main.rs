//! `roster-chaos`: one seeded fault-injection run against real `roster serve` processes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use roster_chaos::{Config, FaultKind, NetMode};

#[derive(Parser)]
#[command(name = "roster-chaos", about = "Fault-injection runs against a Roster cluster, with a history checker")]
struct Args {
    /// Seed of the fault schedule and of every client's choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of the fault phase (the workload runs throughout; healing and checking follow).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Cluster size (3 or 5 usually).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Fault kinds: all, none, or a list of kill,pause,partition,oneway,membership,restart,snapshot,failpoint,snapshot-crash-loop.
    #[arg(long, default_value = "all")]
    faults: String,
    /// The roster binary (default: `roster` next to this executable's target dir, or $ROSTER_BIN).
    #[arg(long)]
    roster_bin: Option<PathBuf>,
    /// Output directory (default: $TMPDIR/roster-chaos/seed-SEED-PID-N).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Network: auto (netns when root), netns, loopback.
    #[arg(long, default_value = "auto")]
    net: NetMode,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Concurrent readers.
    #[arg(long, default_value_t = 2)]
    readers: usize,
    /// Agent watchers inside the harness.
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    /// `roster agent` processes.
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// Passed to `roster serve` (small values force snapshots and installs).
    #[arg(long, default_value_t = 300)]
    snapshot_every_logs: u64,
    #[arg(long, default_value_t = 50)]
    logs_kept_after_snapshot: u64,
    /// Seconds within which a write must succeed after healing.
    #[arg(long, default_value_t = 30)]
    liveness_bound: u64,
    /// Most operations recorded (clients stop at this).
    #[arg(long, default_value_t = 300_000)]
    max_ops: usize,
    /// Keep node data directories even when no violation was found.
    #[arg(long)]
    keep_data: bool,
}

fn main() {
    let a = Args::parse();
    let faults = match FaultKind::parse_list(&a.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("roster-chaos: {e}");
            std::process::exit(2);
        }
    };
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64 % 1_000_000).unwrap_or(1)
    });
    // Ctrl-C / SIGTERM: kill every child and remove every namespace, then exit.
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("roster-chaos: interrupted; cleaning up");
        roster_chaos::procs::cleanup_all();
        std::process::exit(130);
    });
    let cfg = Config {
        seed,
        duration: Duration::from_secs(a.duration),
        nodes: a.nodes,
        faults,
        roster_bin: a.roster_bin,
        out: a.out,
        net: a.net,
        writers: a.writers,
        readers: a.readers,
        watchers: a.watchers,
        agents: a.agents,
        snapshot_every_logs: a.snapshot_every_logs,
        logs_kept_after_snapshot: a.logs_kept_after_snapshot,
        liveness_bound: Duration::from_secs(a.liveness_bound),
        max_ops: a.max_ops,
        keep_data: a.keep_data,
    };
    match roster_chaos::run(cfg) {
        Ok(report) => {
            println!("{}", report.summary);
            std::process::exit(if report.violations.is_empty() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("roster-chaos: run failed: {e:#}");
            std::process::exit(3);
        }
    }
}
