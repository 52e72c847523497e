//! `roster bench learners`: agents served by learner nodes. Three voters and `--learners`
//! learners; simulated agents hold their config watches on the learners only. Measures the
//! voters' write throughput at `--clients` without, with and again without the agents, the time from an
//! apply to every agent's acknowledgement through the learners, and the learners' memory. The
//! agents run in child processes of 15,000 each (`bench agent-sim`), so their number is bounded
//! by the learners' file limits, not this process's.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

use super::agents::{cpu_percent, raise_limit_for_agents, register_agents, settle, wait_ready, SimAgents};
use super::write::{one_round, register_update_servers, Round};
use super::{free_port, free_ports, rss_kb, tempfile_dir};

/// Most learners the benchmark starts.
pub const LEARNERS_BENCH_MAX: usize = 10;
/// Simulated agents per child process: the processes hold the agents' connections, so the
/// benchmark's own file limit never has to cover them all.
const AGENTS_PER_PROCESS: usize = 15_000;

/// What one `roster bench learners` run does.
pub struct LearnersRun {
    pub agents: usize,
    pub learners: usize,
    pub clients: usize,
    pub duration: Duration,
    pub applies: usize,
}

pub(super) async fn learners_bench(run: LearnersRun) -> anyhow::Result<()> {
    let LearnersRun { agents, learners, clients, duration, applies } = run;
    anyhow::ensure!((1..=LEARNERS_BENCH_MAX).contains(&learners), "--learners must be 1..={LEARNERS_BENCH_MAX}");
    anyhow::ensure!((1..=super::AGENTS_BENCH_MAX).contains(&agents), "--agents must be 1..={}", super::AGENTS_BENCH_MAX);
    anyhow::ensure!((1..=super::WRITE_BENCH_CLIENTS_MAX).contains(&clients), "--clients must be 1..={}", super::WRITE_BENCH_CLIENTS_MAX);
    anyhow::ensure!(duration.as_secs() <= super::WRITE_BENCH_DURATION_MAX_SECS, "--duration-secs is at most {}", super::WRITE_BENCH_DURATION_MAX_SECS);
    anyhow::ensure!((1..=100).contains(&applies), "--applies must be 1..=100");
    let per_learner = agents.div_ceil(learners);
    // The agents' connections are the child processes' (they raise their own limit); this
    // process's limit is what the learners inherit.
    raise_limit_for_agents(0, per_learner as u64)?;
    let dir = tempfile_dir()?;
    let transport = roster_raft::Transport::insecure();
    let cluster = crate::dev::spawn_cluster(&dir.join("voters"), 3, free_ports(3)?, None, &[]).await?;
    let result = measure(&cluster, &dir, &transport, LearnersRun { agents, learners, clients, duration, applies }, per_learner).await;
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    result
}

async fn measure(
    cluster: &crate::dev::LocalCluster,
    dir: &std::path::Path,
    transport: &roster_raft::Transport,
    run: LearnersRun,
    per_learner: usize,
) -> anyhow::Result<()> {
    let http = transport.client_builder()?.pool_max_idle_per_host(run.clients).tcp_nodelay(true).timeout(Duration::from_secs(120)).build()?;
    let leader = crate::cli::Client::with(transport.clone(), cluster.addrs.clone(), crate::cli::ClientOptions::default())?.leader_addr().await?;
    let leader_base = transport.url(&leader, "");

    // The learners: started with --join --learner, then added through the leader.
    let mut nodes = Vec::new();
    let mut bases = Vec::new();
    for j in 0..run.learners {
        let id = 4 + j as u64;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.join(format!("learner-{id}.log")))?;
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["serve", "--node-id", &id.to_string(), "--listen", &addr, "--data-dir"])
            .arg(dir.join(format!("learner-{id}")))
            .args(["--insecure", "--join", "--learner", "--watches-max", &(per_learner + 1_000).to_string()])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting learner {id}"))?;
        let answer = http.post(format!("{leader_base}/v1/cluster/nodes")).json(&serde_json::json!({"id": id, "addr": addr})).send().await?;
        let (status, body) = (answer.status(), answer.text().await?);
        anyhow::ensure!(status.is_success(), "adding learner {id}: {status} {body}");
        let base = transport.url(&addr, "");
        wait_ready(&http, &base).await?;
        nodes.push(child);
        bases.push(base);
    }
    println!(
        "learners benchmark: 3 voters ({}), {} learners ({}), leader {leader}; {} agents on the learners, {} writers to the leader",
        cluster.addrs.join(","),
        run.learners,
        bases.iter().map(|b| b.trim_start_matches("http://")).collect::<Vec<_>>().join(","),
        run.agents,
        run.clients
    );
    register_update_servers(&http, &format!("{leader_base}/v1/commands")).await?;
    let targets = [leader.clone()];
    let report = |label: &str, r: &Round| {
        let mut l = r.latencies_us.clone();
        l.sort_unstable();
        let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
        println!(
            "{label}: {:.0} writes/s; latency ms p50 {:.2} p99 {:.2} max {:.2}; errors {}",
            r.writes as f64 / r.elapsed,
            pct(0.5),
            pct(0.99),
            l.last().copied().unwrap_or(0) as f64 / 1000.0,
            r.errors
        );
        r.writes as f64 / r.elapsed
    };
    let without = one_round(&http, transport, &targets, run.clients, run.duration, "update", 1).await?;
    let without = report("writes without agents", &without);

    let ids: Vec<String> = (0..run.agents).map(|i| format!("sim{i}")).collect();
    register_agents(&http, &leader_base, &ids, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids: Vec<u32> = nodes.iter().filter_map(|c| c.id()).collect();
    let rss_before: Vec<u64> = pids.iter().map(|p| rss_kb(*p)).collect::<anyhow::Result<_>>()?;
    let (sim, sim_processes) = SimAgents::start_in_processes(&ids, &bases, AGENTS_PER_PROCESS)?;
    settle(&sim, &http, &leader_base).await?;
    for (j, pid) in pids.iter().enumerate() {
        let rss = rss_kb(*pid)?;
        let idle = cpu_percent(*pid, Duration::from_secs(5)).await?;
        println!(
            "learner {}: {} agents, RSS {} MB -> {} MB = {:.1} KB per agent; CPU while idle {idle:.1}% of one core",
            4 + j,
            ids.iter().enumerate().filter(|(i, _)| i % run.learners == j).count(),
            rss_before[j] / 1024,
            rss / 1024,
            rss.saturating_sub(rss_before[j]) as f64 / per_learner as f64
        );
    }
    let with = one_round(&http, transport, &targets, run.clients, run.duration, "update", 2).await?;
    let with = report(&format!("writes with {} agents on the learners", run.agents), &with);
    sim.time_applies(&http, &leader_base, run.applies).await?;
    drop(sim);
    for mut p in sim_processes {
        let _ = p.start_kill();
        let _ = p.wait().await;
    }
    // Once more without the agents, so the history's growth between rounds does not count
    // as the agents' cost: "with" is compared with the mean of the rounds before and after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = one_round(&http, transport, &targets, run.clients, run.duration, "update", 3).await?;
    let after = report("writes without agents, again", &after);
    println!("the voters' write throughput with the agents: {:.1}% of without (the mean of the rounds before and after)", with / ((without + after) / 2.0) * 100.0);
    for mut n in nodes {
        let _ = n.start_kill();
        let _ = n.wait().await;
    }
    Ok(())
}
