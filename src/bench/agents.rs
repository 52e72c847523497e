//! `roster bench agents`: simulated agents holding config watches on one node.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{free_port, tempfile_dir};

/// Most simulated agents. Each holds one connection, so the bench raises its file limit (and
/// the node's, which inherits it) to the agents plus `FDS_SPARE`: as root it may raise the hard
/// limit too; otherwise it says which `ulimit -n` is needed.
pub const AGENTS_BENCH_MAX: usize = 100_000;
/// File descriptors kept for everything but the agents' connections.
const FDS_SPARE: u64 = 2_000;

use super::rss_kb;

/// Simulated agents connecting from one loopback source address.
const AGENTS_PER_SOURCE_ADDRESS: usize = 5_000;

/// Raises this process's open-file limit to at least `want` (soft, and hard when needed: root
/// may), so the node it starts inherits it.
fn raise_file_limit(want: u64) -> anyhow::Result<()> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    anyhow::ensure!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0, "cannot read the file limit");
    if limit.rlim_cur >= want {
        return Ok(());
    }
    // Up to the hard limit anyone may go; above it only a process allowed to raise it.
    let raised = libc::rlimit { rlim_cur: want, rlim_max: limit.rlim_max.max(want) };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        anyhow::bail!(
            "this many agents need {want} open files (a node keeps a quarter of its limit for other \
             files), and the limit is {} (hard {}); raise it first (as root: `ulimit -Hn {want}; \
             ulimit -n {want}`) or use fewer --agents",
            limit.rlim_cur,
            limit.rlim_max
        );
    }
    Ok(())
}

/// User plus system CPU time of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Sockets process `pid` has open (its connections, and a few listeners).
fn sockets_open(pid: u32) -> anyhow::Result<usize> {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        if std::fs::read_link(fd?.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")) {
            n += 1;
        }
    }
    Ok(n)
}

async fn post_changes(http: &reqwest::Client, base: &str, changes: Vec<serde_json::Value>) -> anyhow::Result<u64> {
    let r = http.post(format!("{base}/v1/commands")).json(&serde_json::json!({"changes": changes})).send().await?;
    let status = r.status();
    let v: serde_json::Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "setup failed: {v}");
    v["committed"]["revision"].as_u64().context("no revision")
}

/// Registers `ids` as agents in agent cluster `bench`, whose task `billing` fails over from
/// rt1 to rt2, through `base` (the leader or any node).
/// With `tasks` above 1, tasks `t1` .. also fail over from rt2 to rt1 in `bench`: each agent's
/// configuration holds them all.
pub(super) async fn register_agents(http: &reqwest::Client, base: &str, ids: &[String], tasks: usize) -> anyhow::Result<()> {
    post_changes(http, base, vec![
        serde_json::json!({"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 80}}),
        serde_json::json!({"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 80}}),
        serde_json::json!({"create_cluster": {"name": "bench"}}),
        serde_json::json!({"set_servers": {"task": "billing", "cluster": "bench", "servers": ["rt1", "rt2"]}}),
    ])
    .await?;
    for chunk in (1..tasks).collect::<Vec<_>>().chunks(crate::domain::CHANGES_PER_COMMAND_MAX) {
        let changes = chunk.iter().map(|t| serde_json::json!({"set_servers": {"task": format!("t{t}"), "cluster": "bench", "servers": ["rt2", "rt1"]}})).collect();
        post_changes(http, base, changes).await?;
    }
    for chunk in ids.chunks(crate::domain::CHANGES_PER_COMMAND_MAX / 2) {
        let mut changes = Vec::new();
        for id in chunk {
            changes.push(serde_json::json!({"register_agent": {"id": id}}));
            changes.push(serde_json::json!({"add_agent_to_cluster": {"cluster": "bench", "agent": id}}));
        }
        post_changes(http, base, changes).await?;
    }
    Ok(())
}

/// Simulated agents, as tasks of this process: each holds a config watch on its node, deploys
/// what it gets, and acknowledges it with its next watch (as `roster agent` does).
pub(super) struct SimAgents {
    /// The revision each agent deployed last.
    acked: Arc<Vec<AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimAgents {
    /// Starts one simulated agent per id; agent `i` watches `nodes[i % nodes.len()]` (base
    /// URLs). They connect from 127.1.0.1 up, a few thousand per source address, so their
    /// connections (and the TIME_WAIT of earlier runs) never run out of ephemeral ports.
    /// `first` is the first agent's number among all (other processes' agents use the source
    /// addresses before it).
    pub(super) fn start(transport: &roster_raft::Transport, ids: &[String], nodes: &[String], first: usize) -> anyhow::Result<Self> {
        let sources = ids.len().div_ceil(AGENTS_PER_SOURCE_ADDRESS);
        let clients = (0..sources)
            .map(|k| {
                let k = first.div_ceil(AGENTS_PER_SOURCE_ADDRESS) + k;
                let source = std::net::Ipv4Addr::new(127, 1, (k / 250) as u8, (k % 250 + 1) as u8);
                transport
                    .client_builder()?
                    .local_address(std::net::IpAddr::V4(source))
                    .pool_max_idle_per_host(AGENTS_PER_SOURCE_ADDRESS + 16)
                    .timeout(Duration::from_secs(120))
                    .build()
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..ids.len()).map(|_| AtomicU64::new(0)).collect());
        let mut tasks = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let (http, base, id, acked) = (clients[i % sources].clone(), nodes[i % nodes.len()].clone(), id.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut after = 0u64;
                loop {
                    let url = format!("{base}/v1/agents/{id}/config?after={after}&wait_ms=60000");
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == reqwest::StatusCode::OK => {
                            // Only the revision is needed: the rest of the body is skipped.
                            #[derive(serde::Deserialize)]
                            struct Deployed {
                                revision: u64,
                            }
                            let Ok(v) = r.json::<Deployed>().await else { continue };
                            let rev = v.revision;
                            // As the real agent: the next watch (after=rev) acknowledges it.
                            acked[i].store(rev, Ordering::Release);
                            after = rev;
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }));
        }
        Ok(Self { acked, tasks })
    }

    /// Like [`SimAgents::start`], with the agents in child processes of `per_process` each
    /// (`roster bench agent-sim`), so that more agents than one process may hold connections
    /// can run: each child reports every deployment on its standard output, which a task here
    /// turns into the same per-agent record.
    pub(super) fn start_in_processes(ids: &[String], nodes: &[String], per_process: usize) -> anyhow::Result<(Self, Vec<tokio::process::Child>)> {
        use tokio::io::AsyncBufReadExt;
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..ids.len()).map(|_| AtomicU64::new(0)).collect());
        let mut tasks = Vec::new();
        let mut children = Vec::new();
        for first in (0..ids.len()).step_by(per_process.max(1)) {
            let count = per_process.min(ids.len() - first);
            let mut child = tokio::process::Command::new(std::env::current_exe()?)
                .args(["bench", "agent-sim", "--nodes", &nodes.join(","), "--first", &first.to_string(), "--count", &count.to_string()])
                // Held open by the child handle: the child ends when it closes (this process
                // gone, even by kill -9).
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a simulated-agent process")?;
            let stdout = child.stdout.take().context("no stdout")?;
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut parts = line.split(' ');
                    if let (Some(i), Some(rev)) = (parts.next().and_then(|i| i.parse::<usize>().ok()), parts.next().and_then(|r| r.parse::<u64>().ok())) {
                        if let Some(a) = acked.get(i) {
                            a.fetch_max(rev, Ordering::AcqRel);
                        }
                    }
                }
            }));
            children.push(child);
        }
        Ok((Self { acked, tasks }, children))
    }

    /// Waits until every agent deployed `target` or later, at most `limit`: how long each took.
    pub(super) async fn wait_all(&self, target: u64, limit: Duration) -> Option<Vec<Duration>> {
        let t = Instant::now();
        let mut done_at = vec![None; self.acked.len()];
        while t.elapsed() < limit {
            let mut all = true;
            for (i, a) in self.acked.iter().enumerate() {
                if done_at[i].is_none() {
                    if a.load(Ordering::Acquire) >= target {
                        done_at[i] = Some(t.elapsed());
                    } else {
                        all = false;
                    }
                }
            }
            if all {
                return Some(done_at.into_iter().map(|d| d.unwrap_or_default()).collect());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }

    /// Applies `applies` changes that concern every agent through `leader` (a base URL) and
    /// prints how long the agents took to acknowledge each, and a summary.
    pub(super) async fn time_applies(&self, http: &reqwest::Client, leader: &str, applies: usize) -> anyhow::Result<()> {
        let agents = self.acked.len();
        let mut all_done = Vec::new();
        for n in 0..applies {
            let t0 = Instant::now();
            let rev = post_changes(http, leader, vec![serde_json::json!({"set_load_balancing": {"task": "billing", "cluster": "bench", "enabled": n % 2 == 0}})]).await?;
            let times = self.wait_all(rev, Duration::from_secs(120)).await.context("not every agent acknowledged in 120 s")?;
            let base_ms = t0.elapsed().as_secs_f64() * 1000.0 - times.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0;
            let mut ms: Vec<f64> = times.iter().map(|d| base_ms + d.as_secs_f64() * 1000.0).collect();
            ms.sort_by(|a, b| a.total_cmp(b));
            let p = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
            println!("apply {}: revision {rev}: acknowledged by all {agents} agents: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms", n + 1, p(0.5), p(0.99), p(1.0));
            all_done.push(p(1.0));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        all_done.sort_by(|a, b| a.total_cmp(b));
        if let (Some(median), Some(max)) = (all_done.get(all_done.len() / 2), all_done.last()) {
            println!("time to all {agents} acknowledged over {applies} applies: median {median:.0} ms, max {max:.0} ms");
        }
        Ok(())
    }
}

impl Drop for SimAgents {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `roster bench agent-sim`: simulated agents `sim{first}` .. for `count`, agent `i` on
/// `nodes[i % nodes.len()]`; prints `<i> <revision>` whenever agent `i` deploys a revision,
/// until killed or until its standard input closes (its parent, [`SimAgents::start_in_processes`],
/// is gone: the agents must not outlive the benchmark).
pub(super) async fn agent_sim(nodes: Vec<String>, first: usize, count: usize) -> anyhow::Result<()> {
    use std::io::Write;
    anyhow::ensure!(!nodes.is_empty() && count >= 1, "agent-sim needs --nodes and --count");
    raise_file_limit(count as u64 + FDS_SPARE)?;
    let ids: Vec<String> = (first..first + count).map(|i| format!("sim{i}")).collect();
    // Agent i of this process is global agent first + i: keep its node the same as in-process.
    let rotated: Vec<String> = (0..nodes.len()).map(|k| nodes[(first + k) % nodes.len()].clone()).collect();
    let sim = SimAgents::start(&roster_raft::Transport::insecure(), &ids, &rotated, first)?;
    let parent_gone = tokio::spawn(async {
        use tokio::io::AsyncReadExt;
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    });
    let mut seen = vec![0u64; count];
    while !parent_gone.is_finished() {
        let mut out = std::io::stdout().lock();
        for (i, a) in sim.acked.iter().enumerate() {
            let rev = a.load(Ordering::Acquire);
            if rev > seen[i] {
                seen[i] = rev;
                writeln!(out, "{} {rev}", first + i)?;
            }
        }
        out.flush()?;
        drop(out);
        // Often enough to time a fan-out to the millisecond or so, rarely enough that the scan
        // of every agent does not take CPU from the nodes being measured.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The node's CPU use, as a percentage of one core, over `over`.
pub(super) async fn cpu_percent(pid: u32, over: Duration) -> anyhow::Result<f64> {
    let cpu = cpu_ticks(pid)?;
    tokio::time::sleep(over).await;
    let used = cpu_ticks(pid)?.saturating_sub(cpu);
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(used as f64 / per_sec / over.as_secs_f64() * 100.0)
}

pub(super) async fn agents_bench(agents: usize, applies: usize, secure: bool, tasks: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=AGENTS_BENCH_MAX).contains(&agents), "--agents must be 1..={AGENTS_BENCH_MAX}");
    anyhow::ensure!((1..=100).contains(&applies), "--applies must be 1..=100");
    anyhow::ensure!((1..=100_000).contains(&tasks), "--tasks must be 1..=100000");
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
    raise_limit_for_agents(agents as u64, agents as u64)?;
    // ROSTER_BENCH_NODE_WRAPPER runs the node under another program, such as a heap profiler
    // (`heaptrack`, with a `--features system-alloc` build).
    let mut node = match std::env::var_os("ROSTER_BENCH_NODE_WRAPPER") {
        Some(wrapper) => {
            let mut c = tokio::process::Command::new(wrapper);
            c.arg(std::env::current_exe()?);
            c
        }
        None => tokio::process::Command::new(std::env::current_exe()?),
    };
    let mut node = node
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.join("node"))
        .args(["--watches-max", &(agents + 1_000).to_string()])
        .args(if secure { vec!["--secure-dir".to_string(), secure_dir.display().to_string()] } else { vec!["--insecure".to_string()] })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = node.id().context("node pid")?;
    let http = transport.client_builder()?.pool_max_idle_per_host(16).timeout(Duration::from_secs(120)).build()?;
    wait_ready(&http, &base).await?;
    println!("setting up {agents} agents in one agent cluster, with {tasks} task(s)...");
    let ids: Vec<String> = (0..agents).map(|i| format!("sim{i}")).collect();
    register_agents(&http, &base, &ids, tasks).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kb(pid)?;
    let sockets_before = sockets_open(pid)?;

    let sim = SimAgents::start(&transport, &ids, std::slice::from_ref(&base), 0)?;
    settle(&sim, &http, &base).await?;
    let rss_connected = rss_kb(pid)?;
    println!(
        "{agents} agents connected: node RSS {} MB -> {} MB = {:.1} KB per agent; node sockets {} -> {}",
        rss_before / 1024,
        rss_connected / 1024,
        (rss_connected.saturating_sub(rss_before)) as f64 / agents as f64,
        sockets_before,
        sockets_open(pid)?,
    );
    // The node's CPU while it holds every watch and nothing changes.
    let idle = Duration::from_secs(10);
    println!("node CPU while idle with {agents} held watches: {:.1}% of one core (over {} s)", cpu_percent(pid, idle).await?, idle.as_secs());
    sim.time_applies(&http, &base, applies).await?;
    drop(sim);
    let _ = node.start_kill();
    let _ = node.wait().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Raises the file limit for `agents` simulated agents in this process, and for a node (which
/// inherits the limit, and keeps a quarter of it for other files) holding `per_node` of them.
pub(super) fn raise_limit_for_agents(agents: u64, per_node: u64) -> anyhow::Result<()> {
    let node_fds = crate::server::file_limit_for_connections(per_node + FDS_SPARE / 2);
    raise_file_limit((agents + FDS_SPARE).max(node_fds))
}

/// Waits until the node at `base` answers `/readyz`, at most 30 s.
pub(super) async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while !http.get(format!("{base}/readyz")).send().await.map(|r| r.status().is_success()).unwrap_or(false) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "node {base} not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until every simulated agent deployed the head that `base` reports, then lets the
/// connection burst settle: connections the clients opened in it and left idle are closed by
/// the node after its header read timeout, leaving one held watch per agent.
pub(super) async fn settle(sim: &SimAgents, http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let head: serde_json::Value = http.get(format!("{base}/v1/state/digest")).send().await?.json().await?;
    let initial = head["revision"].as_u64().unwrap_or(0);
    sim.wait_all(initial, Duration::from_secs(120)).await.context("agents did not all deploy the initial configuration")?;
    tokio::time::sleep(Duration::from_millis(crate::server::HEADER_READ_TIMEOUT_MS_DEFAULT + 1_000)).await;
    Ok(())
}
