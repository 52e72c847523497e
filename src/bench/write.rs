//! `roster bench write`: concurrent clients sending single-change commands.

use std::time::{Duration, Instant};

use super::{free_port, tempfile_dir};

/// Longest one benchmark run may take.
pub const WRITE_BENCH_DURATION_MAX_SECS: u64 = 600;
/// Most concurrent clients of the write benchmark.
pub const WRITE_BENCH_CLIENTS_MAX: usize = 4096;

pub(super) async fn write_bench(clients: usize, duration: Duration, endpoints: Vec<String>, target: &str, secure: bool) -> anyhow::Result<()> {
    anyhow::ensure!((1..=WRITE_BENCH_CLIENTS_MAX).contains(&clients), "--clients must be 1..={WRITE_BENCH_CLIENTS_MAX}");
    anyhow::ensure!(duration.as_secs() <= WRITE_BENCH_DURATION_MAX_SECS, "--duration-secs is at most {WRITE_BENCH_DURATION_MAX_SECS}");
    anyhow::ensure!(target == "leader" || target == "all", "--target must be leader or all");
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
        let cluster = crate::dev::spawn_cluster(&dir, 3, free_port()?, secure.then_some(secure_dir.as_path()), &[]).await?;
        let eps = cluster.addrs.clone();
        own = Some((cluster, dir));
        eps
    } else {
        endpoints
    };
    let http = transport.client_builder()?.pool_max_idle_per_host(clients).tcp_nodelay(true).build()?;
    let leader = crate::cli::Client::with(transport.clone(), endpoints.clone(), crate::cli::ClientOptions::default())?.leader_addr().await?;
    let targets: Vec<String> = if target == "leader" { vec![leader.clone()] } else { endpoints.clone() };
    println!(
        "write benchmark: {clients} clients for {}s against {} ({target}, {}), leader {leader}",
        duration.as_secs(),
        targets.join(","),
        if transport.is_tls() { "TLS and tokens" } else { "insecure" }
    );

    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = transport.url(&targets[c % targets.len()], "/v1/commands");
        tasks.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                seq += 1;
                let body = serde_json::json!({"changes": [{"add_server": {
                    "name": format!("b{c}-{seq}"), "host": "10.1.2.3", "port": 8080}}]});
                let t = Instant::now();
                let ok = http.post(&url).json(&body).send().await
                    .map(|r| r.status().is_success()).unwrap_or(false);
                if ok {
                    latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                } else {
                    errors += 1;
                }
            }
            (latencies_us, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    println!(
        "clients {clients}: {} writes in {elapsed:.1}s = {:.0} writes/s; latency ms p50 {:.2} p99 {:.2} max {:.2}; errors {errors}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    if let Some((cluster, dir)) = own {
        cluster.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
