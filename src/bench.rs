//! `roster bench`: measured figures, never timed assertions.
//!
//! - `fold`: decode, hash-check and fold a generated history in memory (offline replay speed).
//! - `restart`: generate a node data dir with a long history through the real state machine,
//!   then start `roster serve` on it and time until it serves the last revision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
use roster_raft::{Proposal, TypeConfig};
use roster_storage::{codec, Application, StateStore};

use crate::domain::{
    decide, Change, ClusterName, Command, CommandBody, Hash, Host, HistoryRecord, RecordBody, Replayer, ServerName,
    State, TaskName,
};
use crate::machine::RosterMachine;

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
        BenchCmd::Fold { revisions } => tokio::task::spawn_blocking(move || fold(revisions)).await?,
        BenchCmd::Restart { revisions, data_dir, runs } => restart(revisions, data_dir, runs).await,
        BenchCmd::Write { clients, duration_secs, endpoints, target, secure } => {
            write_bench(clients, Duration::from_secs(duration_secs), endpoints, &target, secure).await
        }
        BenchCmd::Agents { agents, applies, secure } => agents_bench(agents, applies, secure).await,
    }
}

fn fold(revisions: u64) -> anyhow::Result<()> {
    println!("generating {revisions} revisions...");
    let started = Instant::now();
    let mut state = State::default();
    let mut head = Hash::default();
    let mut encoded = Vec::with_capacity(revisions as usize);
    let mut events_total = 0u64;
    for rev in 1..=revisions {
        let events = decide(&state, &synthetic_changes(rev), rev).map_err(|r| anyhow::anyhow!("{r:?}"))?;
        events_total += events.len() as u64;
        let body = RecordBody {
            revision: rev,
            log_term: 1,
            log_index: rev + 1,
            time_ms: rev,
            actor: "bench".into(),
            comment: String::new(),
            changeset: None,
            idempotency_key: None,
            events,
        };
        let record = HistoryRecord::seal(body, head);
        state.apply_record_events(rev, &record.body.events);
        head = record.hash;
        encoded.push(codec::encode(&record));
        if rev % 100_000 == 0 {
            eprintln!("  generated {rev}/{revisions}");
        }
    }
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    println!("generated in {:.2}s: {events_total} events, {:.1} MB encoded", started.elapsed().as_secs_f64(), bytes as f64 / 1e6);

    // Full offline replay: decode every record, check its hash link, fold its events.
    let t = Instant::now();
    let mut replayer = Replayer::new(State::default(), Hash::default());
    for bytes in &encoded {
        let record: HistoryRecord = codec::decode(bytes)?;
        replayer.push(&record)?;
    }
    let full = t.elapsed().as_secs_f64();
    anyhow::ensure!(replayer.state == state, "replayed state differs from the generated one");

    // The fold alone, on decoded records.
    let decoded: Vec<HistoryRecord> = encoded.iter().map(|b| codec::decode(b)).collect::<Result<_, _>>()?;
    let t = Instant::now();
    let mut folded = State::default();
    for r in &decoded {
        folded.apply_record_events(r.body.revision, &r.body.events);
    }
    let fold_only = t.elapsed().as_secs_f64();
    anyhow::ensure!(folded == state, "folded state differs");

    println!("decode + verify hash chain + fold: {full:.3}s = {:.0} events/s ({:.0} revisions/s)", events_total as f64 / full, revisions as f64 / full);
    println!("fold only:                         {fold_only:.3}s = {:.0} events/s", events_total as f64 / fold_only);
    Ok(())
}

/// Writes a data dir for node 1 holding `revisions` revisions, through the real state machine.
fn generate_data_dir(dir: &std::path::Path, revisions: u64, addr: &str) -> anyhow::Result<()> {
    let store = StateStore::new(roster_storage::open(&dir.join("db"))?);
    let (mut machine, handle) = RosterMachine::new();
    machine.load(&store)?;
    let leader = CommittedLeaderId::new(1, 1);
    let membership_log_id = LogId::new(leader, 1);
    let nodes: BTreeMap<u64, BasicNode> = [(1u64, BasicNode::new(addr))].into();
    let membership = StoredMembership::new(Some(membership_log_id), Membership::new(vec![BTreeSet::from([1u64])], nodes));
    const BATCH: u64 = 10_000;
    let mut rev = 1;
    while rev <= revisions {
        let mut txn = store.offline_txn();
        let end = (rev + BATCH - 1).min(revisions);
        let mut last = membership_log_id;
        for r in rev..=end {
            let cmd = Command {
                actor: "bench".into(),
                time_ms: r,
                comment: String::new(),
                expected_revision: None,
                idempotency_key: None,
                body: CommandBody::Apply { changes: synthetic_changes(r) },
            };
            last = LogId::new(leader, r + 1);
            machine.apply(&last, &Proposal { commands: vec![codec::encode(&cmd)] }, &mut txn);
        }
        store.offline_commit::<TypeConfig>(txn, &Some(last), &membership)?;
        anyhow::ensure!(handle.read().state.revision == end, "generation was rejected at revision {end}");
        if end % 100_000 == 0 || end == revisions {
            eprintln!("  generated {end}/{revisions}");
        }
        rev = end + 1;
    }
    Ok(())
}

async fn restart(revisions: u64, data_dir: Option<PathBuf>, runs: u32) -> anyhow::Result<()> {
    let tmp;
    let dir = match data_dir {
        Some(d) => d,
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    if !dir.join("db").exists() {
        println!("generating a data dir with {revisions} revisions in {}...", dir.display());
        let t = Instant::now();
        let (d, a) = (dir.clone(), addr.clone());
        tokio::task::spawn_blocking(move || generate_data_dir(&d, revisions, &a)).await??;
        println!("generated in {:.1}s", t.elapsed().as_secs_f64());
    }
    let exe = std::env::current_exe()?;
    let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build()?;
    let mut times = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&exe)
            .args(["serve", "--insecure", "--node-id", "1", "--listen", &addr, "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut served = None;
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(r) = http.get(format!("http://{addr}/v1/state/digest")).send().await {
                if r.status().is_success() {
                    let v: serde_json::Value = r.json().await?;
                    if v["revision"].as_u64() == Some(revisions) {
                        served = Some(started.elapsed());
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = served.context("the node did not serve the last revision within 120 s")?;
        println!("run {run}: ready and serving revision {revisions} after {:.3}s", elapsed.as_secs_f64());
        times.push(elapsed.as_secs_f64());
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!("restart to serving on {revisions} revisions: min {:.3}s, median {:.3}s, max {:.3}s", times[0], times[times.len() / 2], times[times.len() - 1]);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("roster-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Longest one benchmark run may take.
pub const WRITE_BENCH_DURATION_MAX_SECS: u64 = 600;
/// Most concurrent clients of the write benchmark.
pub const WRITE_BENCH_CLIENTS_MAX: usize = 4096;

async fn write_bench(clients: usize, duration: Duration, endpoints: Vec<String>, target: &str, secure: bool) -> anyhow::Result<()> {
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
    let leader = find_leader(&http, &transport, &endpoints).await?;
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

async fn find_leader(http: &reqwest::Client, transport: &roster_raft::Transport, endpoints: &[String]) -> anyhow::Result<String> {
    for ep in endpoints {
        if let Ok(r) = http.get(transport.url(ep, "/v1/cluster")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                if let Some(l) = v["leader"].as_u64() {
                    if let Some(m) = v["members"].as_array().and_then(|a| a.iter().find(|m| m["id"].as_u64() == Some(l))) {
                        return Ok(m["addr"].as_str().unwrap_or(ep).to_string());
                    }
                }
            }
        }
    }
    anyhow::bail!("no leader found among {}", endpoints.join(","))
}

/// Most simulated agents (each holds one connection; mind `ulimit -n`).
pub const AGENTS_BENCH_MAX: usize = 50_000;

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("bad VmRSS")?.parse()?)
}

async fn post_changes(http: &reqwest::Client, base: &str, changes: Vec<serde_json::Value>) -> anyhow::Result<u64> {
    let r = http.post(format!("{base}/v1/commands")).json(&serde_json::json!({"changes": changes})).send().await?;
    let status = r.status();
    let v: serde_json::Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "setup failed: {v}");
    v["committed"]["revision"].as_u64().context("no revision")
}

async fn agents_bench(agents: usize, applies: usize, secure: bool) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    anyhow::ensure!((1..=AGENTS_BENCH_MAX).contains(&agents), "--agents must be 1..={AGENTS_BENCH_MAX}");
    anyhow::ensure!((1..=100).contains(&applies), "--applies must be 1..=100");
    let dir = tempfile_dir()?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let secure_dir = dir.join("secure");
    let transport = if secure {
        let made = crate::tls::init(&secure_dir, &[], false)?;
        roster_raft::Transport {
            ca_pem: Some(Arc::new(std::fs::read(secure_dir.join(crate::tls::CA_CERT))?)),
            // The simulated agents use the admin token, which may use every agent's routes.
            bearer: Some(Arc::from(made.admin_secret.as_str())),
        }
    } else {
        roster_raft::Transport::insecure()
    };
    let base = transport.url(&addr, "");
    let mut node = tokio::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.join("node"))
        .args(if secure { vec!["--secure-dir".to_string(), secure_dir.display().to_string()] } else { vec!["--insecure".to_string()] })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = node.id().context("node pid")?;
    let http = transport.client_builder()?.pool_max_idle_per_host(agents + 16).timeout(Duration::from_secs(120)).build()?;
    let started = Instant::now();
    while !http.get(format!("{base}/readyz")).send().await.map(|r| r.status().is_success()).unwrap_or(false) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "node not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("setting up {agents} agents in one agent cluster...");
    let ids: Vec<String> = (0..agents).map(|i| format!("sim{i}")).collect();
    post_changes(&http, &base, vec![
        serde_json::json!({"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 80}}),
        serde_json::json!({"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 80}}),
        serde_json::json!({"create_cluster": {"name": "bench"}}),
        serde_json::json!({"set_servers": {"task": "billing", "cluster": "bench", "servers": ["rt1", "rt2"]}}),
    ]).await?;
    for chunk in ids.chunks(crate::domain::CHANGES_PER_COMMAND_MAX / 2) {
        let mut changes = Vec::new();
        for id in chunk {
            changes.push(serde_json::json!({"register_agent": {"id": id}}));
            changes.push(serde_json::json!({"add_agent_to_cluster": {"cluster": "bench", "agent": id}}));
        }
        post_changes(&http, &base, changes).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kb(pid)?;

    // Each simulated agent: watch, deploy (record), ack, repeat.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..agents).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (http, base, id, acked) = (http.clone(), base.clone(), id.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut after = 0u64;
            loop {
                let url = format!("{base}/v1/agents/{id}/config?after={after}&wait_ms=60000");
                match http.get(&url).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => {
                        let Ok(v) = r.json::<serde_json::Value>().await else { continue };
                        let rev = v["revision"].as_u64().unwrap_or(after);
                        let ack = http.post(format!("{base}/v1/agents/{id}/ack")).json(&serde_json::json!({"revision": rev})).send().await;
                        if ack.is_ok() {
                            acked[i].store(rev, Ordering::Release);
                        }
                        after = rev;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
    }
    let wait_all = |target: u64, limit: Duration| {
        let acked = acked.clone();
        async move {
            let t = Instant::now();
            let mut done_at = vec![None; acked.len()];
            while t.elapsed() < limit {
                let mut all = true;
                for (i, a) in acked.iter().enumerate() {
                    if done_at[i].is_none() {
                        if a.load(Ordering::Acquire) >= target {
                            done_at[i] = Some(t.elapsed());
                        } else {
                            all = false;
                        }
                    }
                }
                if all {
                    return Some(done_at.into_iter().map(|d| d.unwrap_or_default()).collect::<Vec<_>>());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        }
    };
    let head: serde_json::Value = http.get(format!("{base}/v1/state/digest")).send().await?.json().await?;
    let initial = head["revision"].as_u64().unwrap_or(0);
    wait_all(initial, Duration::from_secs(120)).await.context("agents did not all deploy the initial configuration")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_kb(pid)?;
    println!(
        "{agents} agents connected: node RSS {} MB -> {} MB = {:.1} KB per agent connection",
        rss_before / 1024,
        rss_connected / 1024,
        (rss_connected.saturating_sub(rss_before)) as f64 / agents as f64
    );
    let mut all_done = Vec::new();
    for n in 0..applies {
        let t0 = Instant::now();
        let rev = post_changes(&http, &base, vec![serde_json::json!({"set_load_balancing": {"task": "billing", "cluster": "bench", "enabled": n % 2 == 0}})]).await?;
        let times = wait_all(rev, Duration::from_secs(120)).await.context("not every agent acknowledged in 120 s")?;
        let base_ms = t0.elapsed().as_secs_f64() * 1000.0 - times.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0;
        let mut ms: Vec<f64> = times.iter().map(|d| base_ms + d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        println!("apply {}: revision {rev}: acknowledged by all {agents} agents: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms", n + 1, p(0.5), p(0.99), p(1.0));
        all_done.push(p(1.0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    all_done.sort_by(|a, b| a.total_cmp(b));
    println!("time to all {agents} acknowledged over {applies} applies: median {:.0} ms, max {:.0} ms", all_done[all_done.len() / 2], all_done[all_done.len() - 1]);
    for t in tasks {
        t.abort();
    }
    let _ = node.start_kill();
    let _ = node.wait().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
