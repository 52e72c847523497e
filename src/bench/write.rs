//! `roster bench write`: concurrent clients sending single-change commands, in one or more
//! rounds back to back on the same cluster.

use std::time::{Duration, Instant};

use super::{free_ports, rss_kb, tempfile_dir};

/// Longest one round may take.
pub const WRITE_BENCH_DURATION_MAX_SECS: u64 = 600;
/// Most concurrent clients of the write benchmark.
pub const WRITE_BENCH_CLIENTS_MAX: usize = 4096;
/// Most rounds of one run (with the longest rounds, a week at most).
pub const WRITE_BENCH_ROUNDS_MAX: u32 = 1000;
/// Servers the `update` workload registers first and then keeps changing.
const UPDATE_SERVERS: usize = 1000;

/// What one `roster bench write` run does.
pub struct WriteRun {
    pub clients: usize,
    /// Length of one round.
    pub duration: Duration,
    pub rounds: u32,
    /// `add` (each write registers a new server) or `update` (each changes one of 1,000).
    pub workload: String,
    /// `leader` or `all`.
    pub target: String,
    pub secure: bool,
}

/// One round's figures.
pub(super) struct Round {
    pub writes: usize,
    pub errors: u64,
    pub elapsed: f64,
    pub latencies_us: Vec<u32>,
}

pub(super) async fn write_bench(run: WriteRun, endpoints: Vec<String>) -> anyhow::Result<()> {
    let WriteRun { clients, duration, rounds, workload, target, secure } = run;
    anyhow::ensure!((1..=WRITE_BENCH_CLIENTS_MAX).contains(&clients), "--clients must be 1..={WRITE_BENCH_CLIENTS_MAX}");
    anyhow::ensure!(duration.as_secs() <= WRITE_BENCH_DURATION_MAX_SECS, "--duration-secs is at most {WRITE_BENCH_DURATION_MAX_SECS}");
    anyhow::ensure!((1..=WRITE_BENCH_ROUNDS_MAX).contains(&rounds), "--rounds must be 1..={WRITE_BENCH_ROUNDS_MAX}");
    anyhow::ensure!(target == "leader" || target == "all", "--target must be leader or all");
    anyhow::ensure!(workload == "add" || workload == "update", "--workload must be add or update");
    let mut own = None;
    let mut transport = roster_raft::Transport::insecure();
    let endpoints = if endpoints.is_empty() {
        let dir = tempfile_dir()?;
        let secure_dir = dir.join("secure");
        if secure {
            let made = crate::tls::init(&secure_dir, &[], false)?;
            transport = roster_raft::Transport {
                ca_pem: Some(std::sync::Arc::new(std::fs::read(secure_dir.join(crate::tls::CA_CERT))?)),
                bearer: Some(std::sync::Arc::from(made.admin_secret.as_str())),
            };
        }
        let cluster = crate::dev::spawn_cluster(&dir, 3, free_ports(3)?, secure.then_some(secure_dir.as_path()), &[]).await?;
        let eps = cluster.addrs.clone();
        own = Some((cluster, dir));
        eps
    } else {
        endpoints
    };
    let http = transport.client_builder()?.pool_max_idle_per_host(clients).tcp_nodelay(true).build()?;
    let leader = crate::cli::Client::with(transport.clone(), endpoints.clone(), crate::cli::ClientOptions::default())?.leader_addr().await?;
    let targets: Vec<String> = if target == "leader" { vec![leader.clone()] } else { endpoints.clone() };
    // The leader's process, when the benchmark started the cluster: its memory per round.
    let leader_pid = own.as_ref().and_then(|(c, _)| c.addrs.iter().position(|a| *a == leader).and_then(|i| c.pid(i)));
    if workload == "update" {
        register_update_servers(&http, &transport.url(&leader, "/v1/commands")).await?;
    }
    println!(
        "write benchmark: {clients} clients, {rounds} round(s) of {}s, workload {workload}, against {} ({target}, {}), leader {leader}",
        duration.as_secs(),
        targets.join(","),
        if transport.is_tls() { "TLS and tokens" } else { "insecure" }
    );
    let revision_url = transport.url(&leader, "/v1/state/digest?consistency=local");
    for r in 1..=rounds {
        let round = one_round(&http, &transport, &targets, clients, duration, &workload, r).await?;
        let revision = http.get(&revision_url).send().await?.json::<serde_json::Value>().await?["revision"].as_u64().unwrap_or(0);
        let rss = leader_pid.and_then(|p| rss_kb(p).ok()).map(|kb| format!("; leader RSS {} MB", kb / 1024)).unwrap_or_default();
        let mut all = round.latencies_us;
        all.sort_unstable();
        let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
        let prefix = if rounds > 1 { format!("round {r}: ") } else { String::new() };
        println!(
            "{prefix}clients {clients}: {} writes in {:.1}s = {:.0} writes/s; latency ms p50 {:.2} p99 {:.2} max {:.2}; errors {}; revision {revision}{rss}",
            round.writes,
            round.elapsed,
            round.writes as f64 / round.elapsed,
            pct(0.50),
            pct(0.99),
            all.last().copied().unwrap_or(0) as f64 / 1000.0,
            round.errors,
        );
    }
    if let Some((cluster, dir)) = own {
        cluster.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// Registers servers `s0` .. `s999` for the `update` workload (those that exist already stay).
pub(super) async fn register_update_servers(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    for chunk in (0..UPDATE_SERVERS).collect::<Vec<_>>().chunks(crate::domain::CHANGES_PER_COMMAND_MAX) {
        let changes: Vec<serde_json::Value> = chunk
            .iter()
            .map(|i| serde_json::json!({"add_server": {"name": format!("s{i}"), "host": "10.1.2.3", "port": 8080}}))
            .collect();
        let answer = http.post(url).json(&serde_json::json!({"changes": changes})).send().await?;
        let (status, body) = (answer.status(), answer.text().await?);
        anyhow::ensure!(status.is_success() || body.contains("already_exists"), "registering the servers to update: {status} {body}");
    }
    Ok(())
}

pub(super) async fn one_round(
    http: &reqwest::Client,
    transport: &roster_raft::Transport,
    targets: &[String],
    clients: usize,
    duration: Duration,
    workload: &str,
    round: u32,
) -> anyhow::Result<Round> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = transport.url(&targets[c % targets.len()], "/v1/commands");
        let update = workload == "update";
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let change = if update {
                    // Spread over the servers and ports without a random source: client,
                    // sequence and round pick them.
                    let server = (c as u64 * 7919 + seq * 104_729 + u64::from(round)) % UPDATE_SERVERS as u64;
                    serde_json::json!({"update_server": {"name": format!("s{server}"), "port": 1024 + (seq + c as u64) % 60_000}})
                } else {
                    serde_json::json!({"add_server": {"name": format!("b{round}-{c}-{seq}"), "host": "10.1.2.3", "port": 8080}})
                };
                let t = Instant::now();
                let ok = http.post(&url).json(&serde_json::json!({"changes": [change]})).send().await.map(|r| r.status().is_success()).unwrap_or(false);
                if ok {
                    latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                } else {
                    errors += 1;
                }
            }
            (latencies_us, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        latencies_us.extend(l);
        errors += e;
    }
    Ok(Round { writes: latencies_us.len(), errors, elapsed: started.elapsed().as_secs_f64(), latencies_us })
}
