//! One chaos run: cluster, agents, workload, faults, heal, collect, check, report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::checker::check_all;
use crate::finals::{audit_export, check_data_dir, fetch_canonical, node_final};
use crate::report::write_report;
use crate::client::{get_json, http_client, write_op, Clock, Recorder};
use crate::cluster::{AgentProc, Cluster};
use crate::faults::{schedule, FaultKind, Injector, InjectorConfig};
use crate::model::{AgentFinal, FaultRecord, Observed, Violation};
use crate::net::{Net, NetMode};
use crate::workload::{agent_ids, marker_body, reader, setup_body, watcher, watcher_ids, writer, Shared};

/// Everything a run is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Length of the fault phase (the workload runs throughout).
    pub duration: Duration,
    pub nodes: usize,
    pub faults: Vec<FaultKind>,
    pub roster_bin: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub net: NetMode,
    pub writers: usize,
    pub readers: usize,
    pub watchers: usize,
    pub agents: usize,
    pub snapshot_every_logs: u64,
    pub logs_kept_after_snapshot: u64,
    pub liveness_bound: Duration,
    pub max_ops: usize,
    pub keep_data: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            duration: Duration::from_secs(60),
            nodes: 3,
            faults: FaultKind::ALL.to_vec(),
            roster_bin: None,
            out: None,
            net: NetMode::Auto,
            writers: 4,
            readers: 2,
            watchers: 3,
            agents: 2,
            snapshot_every_logs: 300,
            logs_kept_after_snapshot: 50,
            liveness_bound: Duration::from_secs(30),
            max_ops: 300_000,
            keep_data: false,
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub out_dir: PathBuf,
    pub net: String,
    pub violations: Vec<Violation>,
    pub faults: Vec<FaultRecord>,
    /// Per operation kind: (total, ok, fail, indeterminate).
    pub ops: BTreeMap<&'static str, (usize, usize, usize, usize)>,
    pub summary: String,
    pub elapsed: Duration,
}

impl Report {
    /// Injected faults per kind.
    pub fn injected(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for f in self.faults.iter().filter(|f| f.injected) {
            *m.entry(f.kind.clone()).or_default() += 1;
        }
        m
    }
}

/// The `roster` binary: `<target>/release/roster` next to this executable (a test binary in
/// `<target>/release/deps/` looks in its parent's parent).
pub fn default_roster_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROSTER_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent()?.to_path_buf();
    }
    Some(dir.join("roster"))
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// How far the first round of faults (one of each enabled kind) may run past the duration.
/// A snapshot crash loop alone has taken 122 s (three compactions past a partitioned
/// follower), so the grace leaves room for it and the kinds after it.
pub const FIRST_ROUND_GRACE: Duration = Duration::from_secs(240);

/// Runs one chaos run to completion (blocking). Every process and namespace it creates is
/// removed before it returns, also on error or panic.
pub fn run(cfg: Config) -> Result<Report> {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            crate::procs::cleanup_all();
        }
    }
    let _guard = Guard;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(run_async(cfg));
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

fn say(clock: &Clock, msg: &str) {
    eprintln!("[{:>7.1}s] {msg}", clock.now_us() as f64 / 1e6);
}

async fn run_async(cfg: Config) -> Result<Report> {
    let started = Instant::now();
    anyhow::ensure!(cfg.nodes >= 1 && cfg.nodes <= 9, "--nodes must be between 1 and 9");
    let bin = cfg.roster_bin.clone().or_else(default_roster_bin).context("cannot locate the roster binary; pass --roster-bin")?;
    anyhow::ensure!(bin.exists(), "the roster binary {} does not exist (build it with `cargo build --release`, or pass --roster-bin)", bin.display());
    let run_no = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    let out = match &cfg.out {
        Some(o) => o.clone(),
        None => std::env::temp_dir().join("roster-chaos").join(format!("seed-{}-{}-{run_no}", cfg.seed, std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let clock = Clock::new();
    let mut net = Net::setup(cfg.net, cfg.nodes + 1, &format!("r{run_no}"))?;
    say(&clock, &format!(
        "chaos: seed {} nodes {} duration {}s faults [{}] network {} binary {} output {}",
        cfg.seed,
        cfg.nodes,
        cfg.duration.as_secs(),
        cfg.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        net.describe(),
        bin.display(),
        out.display()
    ));
    let serve_args = vec![
        "--snapshot-every-logs".to_string(),
        cfg.snapshot_every_logs.to_string(),
        "--logs-kept-after-snapshot".to_string(),
        cfg.logs_kept_after_snapshot.to_string(),
    ];
    let mut cluster = Cluster::new(bin.clone(), serve_args, net.slots.clone(), cfg.nodes, out.join("nodes"))?;
    if cluster.wait_leader(Duration::from_secs(30)).await.is_none() {
        bail!("the cluster elected no leader within 30 s; see the logs in {}", out.join("nodes").display());
    }
    let shared = Arc::new(Shared::new(Recorder::new(clock, cfg.max_ops), http_client(), cluster.all_addrs(), cfg.seed));
    shared.set_targets(cluster.member_ids().iter().map(|id| cluster.addr(*id)).collect());
    // Setup: servers, clusters, agents.
    let watchers = watcher_ids(cfg.watchers);
    let agent_names = agent_ids(cfg.agents);
    let everyone: Vec<String> = watchers.iter().chain(agent_names.iter()).cloned().collect();
    let setup = setup_body(&everyone);
    let mut rng = crate::workload::client_rng(cfg.seed, "setup");
    let mut ok = false;
    let setup_start = Instant::now();
    while !ok && setup_start.elapsed() < Duration::from_secs(30) {
        let key = shared.key("setup");
        ok = write_op(&shared.rec, &shared.http, &mut rng, &shared.targets(), "setup", key, &setup, None, &|| false).await.is_some();
    }
    anyhow::ensure!(ok, "the setup command did not commit within 30 s");
    let mut agents = Vec::new();
    for a in &agent_names {
        agents.push(AgentProc::start(&bin, a, &shared.addrs, &out)?);
    }
    say(&clock, "setup committed; starting the workload");
    let mut tasks = Vec::new();
    for i in 0..cfg.writers {
        tasks.push(tokio::spawn(writer(shared.clone(), format!("writer{i}"))));
    }
    for i in 0..cfg.readers {
        tasks.push(tokio::spawn(reader(shared.clone(), format!("reader{i}"))));
    }
    let mut watch_tasks = Vec::new();
    for w in &watchers {
        watch_tasks.push(tokio::spawn(watcher(shared.clone(), w.clone())));
    }

    // Faults.
    let plans = schedule(cfg.seed, &cfg.faults, 10_000);
    std::fs::write(out.join("schedule.json"), serde_json::to_vec_pretty(&plans.iter().take(200).collect::<Vec<_>>())?)?;
    let deadline = Instant::now() + cfg.duration;
    let mut faults = Vec::new();
    let unexpected;
    let healed_us;
    let mut marker = None;
    let mut first_write = None;
    {
        let mut inj = Injector::new(
            &mut cluster,
            &mut agents,
            &mut net,
            shared.clone(),
            InjectorConfig { nodes: cfg.nodes, liveness_bound: cfg.liveness_bound, snapshot_every_logs: cfg.snapshot_every_logs },
        );
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // Every enabled kind is injected at least once (the first round may run past the
        // duration, up to FIRST_ROUND_GRACE), then faults continue until the duration is over.
        let hard_stop = deadline + FIRST_ROUND_GRACE;
        let mut covered = BTreeSet::new();
        for plan in &plans {
            let now = Instant::now();
            let all_covered = cfg.faults.iter().all(|k| covered.contains(k));
            if now + Duration::from_millis(plan.hold_ms + 2_000) > if all_covered { deadline } else { hard_stop } {
                break;
            }
            faults.push(inj.run(plan).await);
            covered.insert(plan.kind);
            tokio::time::sleep(Duration::from_millis(plan.gap_ms)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left).await;
        // Heal everything and check liveness: a write must succeed within the bound.
        say(&clock, "fault phase over: healing everything");
        inj.heal_all();
        healed_us = clock.now_us();
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < cfg.liveness_bound {
            inj.reap_unexpected();
            let key = shared.key("marker");
            let addrs = shared.targets();
            if let Some(r) = write_op(&shared.rec, &shared.http, &mut rng, &addrs, "marker", key, &marker_body(n), None, &|| false).await {
                marker = Some(r);
                first_write = Some(clock.now_us());
                break;
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match (marker, first_write) {
            (Some(m), Some(t)) => say(&clock, &format!("after healing, a write committed at revision {m} after {} ms", (t - healed_us) / 1000)),
            _ => say(&clock, "after healing, NO write committed within the liveness bound"),
        }
        inj.sync_members().await;
        inj.heal_all();
        let mut u = std::mem::take(&mut inj.unexpected_exits);
        for (id, n) in &inj.exits {
            if *n > 1 {
                u.push(format!("node {id} exited by itself {n} times in all (each restart failed again)"));
            }
        }
        unexpected = u;
    }
    // Stop writers and readers (their in-flight operations finish or time out).
    shared.stop.store(true, Ordering::Relaxed);
    join_bounded(tasks, Duration::from_secs(45)).await;

    // Convergence: every member at the same revision, every agent at the marker.
    let members = cluster.member_ids();
    let conv_start = Instant::now();
    let mut heads = BTreeMap::new();
    while conv_start.elapsed() < Duration::from_secs(30) {
        heads.clear();
        for id in &members {
            let v = get_json(&cluster.http, &format!("http://{}/v1/state/digest?consistency=local", cluster.addr(*id)), 3_000).await;
            heads.insert(*id, v.ok().and_then(|v| v["revision"].as_u64()));
        }
        let distinct: BTreeSet<_> = heads.values().collect();
        if distinct.len() == 1 && heads.values().all(|h| h.is_some_and(|h| marker.is_none_or(|m| h >= m))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say(&clock, &format!("node heads after healing: {heads:?}"));
    if let Some(m) = marker {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let w_ok = {
                let last = shared.watch_last.lock().expect("watch lock");
                watchers.iter().all(|w| last.get(w).is_some_and(|(r, _)| *r >= m))
            };
            let mut a_ok = true;
            for a in &agents {
                let r = a.status(&shared.http).await.and_then(|s| s["revision"].as_u64());
                a_ok &= r.is_some_and(|r| r >= m);
            }
            if w_ok && a_ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    shared.stop_watchers.store(true, Ordering::Relaxed);
    join_bounded(watch_tasks, Duration::from_secs(20)).await;

    // Collect what every node and agent ends with.
    say(&clock, "collecting histories");
    let mut nodes = Vec::new();
    for id in &members {
        nodes.push(node_final(&cluster.http, &format!("{id}@{}", cluster.addr(*id)), &cluster.addr(*id)).await);
    }
    let mut agent_finals = Vec::new();
    for a in &agents {
        let st = a.status(&shared.http).await;
        let deployed = a.deployed();
        agent_finals.push(AgentFinal {
            agent: a.id.clone(),
            revision: st.as_ref().and_then(|s| s["revision"].as_u64()).or_else(|| deployed.as_ref().and_then(|d| d["revision"].as_u64())),
            config: deployed.map(|d| crate::checker::config_content(&d)),
        });
    }
    {
        let last = shared.watch_last.lock().expect("watch lock");
        for w in &watchers {
            agent_finals.push(AgentFinal { agent: w.clone(), revision: last.get(w).map(|x| x.0), config: last.get(w).map(|x| x.1.clone()) });
        }
    }
    for a in &mut agents {
        a.kill();
    }
    let ops = shared.rec.take();
    let mut obs = Observed {
        ops,
        faults: faults.clone(),
        nodes,
        agents: agent_finals,
        marker_revision: marker,
        healed_us: Some(healed_us),
        first_write_after_heal_us: first_write,
        liveness_bound_us: cfg.liveness_bound.as_micros() as u64,
        ..Observed::default()
    };
    // Canonical digests and states, from the node with the longest history.
    let reference = obs.nodes.iter().filter(|n| n.error.is_none()).max_by_key(|n| n.history.len()).map(|n| n.node.clone());
    if let Some(r) = reference {
        let addr = r.split('@').nth(1).unwrap_or_default().to_string();
        fetch_canonical(&cluster.http, &addr, &mut obs, cfg.seed).await;
    }
    cluster.kill_all();
    obs.audit = audit_export(&bin, &out, &obs).await;
    let mut violations = check_all(&obs);
    for u in &unexpected {
        violations.push(Violation { checker: "g".into(), message: u.clone() });
    }
    // A node whose Raft core stopped on a fatal error keeps answering HTTP: find it in the logs.
    for (id, n) in &cluster.nodes {
        let errors = crate::faults::fatal_raft_errors(&n.log);
        let more = errors.len().saturating_sub(3);
        for e in errors.into_iter().take(3) {
            violations.push(Violation { checker: "g".into(), message: format!("node {id}: Raft stopped on a fatal error ({e})") });
        }
        if more > 0 {
            violations.push(Violation { checker: "g".into(), message: format!("node {id}: Raft stopped on a fatal error in {more} more starts") });
        }
    }
    // (h) Every node's data directory, as the kills left it, must be consistent: what a node
    // would find at its next start.
    for (id, n) in &cluster.nodes {
        if let Some(problem) = check_data_dir(&bin, &n.data_dir).await {
            violations.push(Violation { checker: "h".into(), message: format!("node {id}: {problem}") });
        }
    }
    let report = write_report(&cfg, &out, &net.describe(), &obs, violations, started.elapsed(), &unexpected)?;
    net.teardown();
    if report.violations.is_empty() && !cfg.keep_data {
        for n in cluster.nodes.values() {
            let _ = std::fs::remove_dir_all(&n.data_dir);
        }
    }
    Ok(report)
}

async fn join_bounded(tasks: Vec<tokio::task::JoinHandle<()>>, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            abort.abort();
        }
    }
}
