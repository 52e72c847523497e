//! `roster dev`: a local multi-node cluster on loopback for trying Roster out, like
//! `consul agent -dev`. Each node is a separate `roster serve` process; data and logs live
//! under one folder, so a restart of `roster dev` resumes the same cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::process::{Child, Command};

/// How long `roster dev` waits for the cluster to elect a leader.
pub const DEV_READY_TIMEOUT_MS: u64 = 30_000;

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Folder for the nodes' data and logs.
    #[arg(long, default_value = "roster-dev")]
    pub dir: PathBuf,
    /// Port of node 1; node N listens on base_port + N - 1.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Plain HTTP without tokens (by default the cluster uses TLS and tokens, with a local CA
    /// and an admin token made in DIR/secure on first start).
    #[arg(long)]
    pub insecure: bool,
}

fn kill_term(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
}

/// A local cluster of `roster serve` child processes.
pub struct LocalCluster {
    pub addrs: Vec<String>,
    children: Vec<Child>,
    /// How each node was started, to start it again.
    spawn: SpawnSpec,
}

/// The command lines of a local cluster's nodes.
struct SpawnSpec {
    exe: PathBuf,
    dir: PathBuf,
    peers: String,
    secure_dir: Option<PathBuf>,
    extra: Vec<String>,
}

impl SpawnSpec {
    /// Starts node `i` (0-based), appending to its log.
    fn start(&self, i: usize, addr: &str) -> anyhow::Result<Child> {
        let id = i + 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("node-{id}.log")))?;
        Command::new(&self.exe)
            .args(["serve", "--node-id", &id.to_string(), "--listen", addr, "--peers", &self.peers, "--data-dir"])
            .arg(self.dir.join(format!("node-{id}")))
            .args(match &self.secure_dir {
                Some(s) => vec!["--secure-dir".to_string(), s.display().to_string()],
                None => vec!["--insecure".to_string()],
            })
            .args(&self.extra)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {id}"))
    }
}

impl LocalCluster {
    /// The process id of node `i` (0-based), while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children.get(i).and_then(Child::id)
    }

    /// Stops node `i` (0-based): gracefully (SIGTERM, then waits up to 20 s) or with SIGKILL.
    pub async fn stop_node(&mut self, i: usize, graceful: bool) {
        let child = &mut self.children[i];
        if graceful {
            kill_term(child);
            if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = child.kill().await;
    }

    /// Starts node `i` again with its original command line.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.children[i] = self.spawn.start(i, &self.addrs[i])?;
        Ok(())
    }

    /// Stops every node (SIGTERM) and waits for them.
    pub async fn stop(mut self) {
        for c in &self.children {
            kill_term(c);
        }
        for c in self.children.iter_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
    }
}

/// Starts `nodes` `roster serve` processes on 127.0.0.1 from `base_port`, data and logs under
/// `dir`, and waits until every node reports a leader.
/// With `secure_dir` (made by `roster secure-init`) the nodes use TLS and tokens; without,
/// they run `--insecure`.
pub async fn spawn_cluster(dir: &Path, nodes: u64, base_port: u16, secure_dir: Option<&Path>, extra: &[&str]) -> anyhow::Result<LocalCluster> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let exe = std::env::current_exe()?;
    let addrs: Vec<String> = (0..nodes).map(|i| format!("127.0.0.1:{}", base_port + i as u16)).collect();
    let peers: Vec<String> = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect();
    let peers = peers.join(",");
    let spawn = SpawnSpec {
        exe,
        dir: dir.to_path_buf(),
        peers,
        secure_dir: secure_dir.map(Path::to_path_buf),
        extra: extra.iter().map(|s| s.to_string()).collect(),
    };
    let mut children = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        children.push(spawn.start(i, addr)?);
    }
    let cluster = LocalCluster { addrs, children, spawn };
    let transport = match secure_dir {
        Some(s) => roster_raft::Transport {
            ca_pem: Some(std::sync::Arc::new(std::fs::read(s.join(crate::tls::CA_CERT))?)),
            bearer: None,
        },
        None => roster_raft::Transport::insecure(),
    };
    let http = transport.client(Duration::from_secs(2), Some(Duration::from_secs(2)))?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(DEV_READY_TIMEOUT_MS) {
        let mut all = true;
        for a in &cluster.addrs {
            all &= http.get(transport.url(a, "/readyz")).send().await.map(|r| r.status().is_success()).unwrap_or(false);
        }
        if all {
            return Ok(cluster);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.stop().await;
    anyhow::bail!("the cluster did not become ready; see the logs in {}", dir.display())
}

/// Starts the cluster, prints how to use it and runs until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=9).contains(&args.nodes), "--nodes must be between 1 and 9");
    let started = Instant::now();
    let secure_dir = args.dir.join("secure");
    if !args.insecure && !secure_dir.join(crate::tls::CA_CERT).exists() {
        crate::tls::init(&secure_dir, &[], false)?;
        println!("made a local CA, node certificate, cluster secret and admin token in {}", secure_dir.display());
    }
    let secure = (!args.insecure).then_some(secure_dir.as_path());
    let mut cluster = spawn_cluster(&args.dir, args.nodes, args.base_port, secure, &[]).await?;
    let addrs = cluster.addrs.clone();
    let endpoints = addrs.join(",");
    let scheme = if args.insecure { "http" } else { "https" };
    println!("Roster dev cluster: {} nodes ready in {:.1}s", args.nodes, started.elapsed().as_secs_f64());
    for (i, a) in addrs.iter().enumerate() {
        println!("  node {}  {scheme}://{a}   data {}/node-{}  log {}/node-{}.log", i + 1, args.dir.display(), i + 1, args.dir.display(), i + 1);
    }
    println!();
    if args.insecure {
        println!("INSECURE: plain HTTP and no authentication (--insecure).");
        println!();
        println!("Try it (in another terminal):");
    } else {
        println!("TLS and tokens are on. CA: {0}/{1}; admin token: {0}/{2}.", secure_dir.display(), crate::tls::CA_CERT, crate::tls::ADMIN_TOKEN);
        println!("From this folder `roster ctl` finds both by itself; from elsewhere set ROSTER_CA and ROSTER_TOKEN_FILE.");
        println!("curl: curl --cacert {0}/{1} -H \"Authorization: Bearer $(cat {0}/{2})\" https://{3}/v1/cluster",
            secure_dir.display(), crate::tls::CA_CERT, crate::tls::ADMIN_TOKEN, addrs[0]);
        println!();
        println!("Try it (in another terminal, in this folder):");
    }
    println!("  export ROSTER_ENDPOINTS={endpoints}");
    println!("  roster ctl servers add rt1 --host 10.0.0.1 --port 8080");
    println!("  roster ctl clusters create eu");
    println!("  roster ctl tasks set-servers billing --cluster eu rt1");
    println!("  roster ctl history");
    println!("  roster ctl cluster status");
    println!("(`roster` is target/release/roster; `cargo run --release -- ctl ...` works too.)");
    println!("Press Ctrl-C to stop the cluster; its data stays in {}.", args.dir.display());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for c in cluster.children.iter_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        eprintln!("a node exited ({status}); see the logs in {}", args.dir.display());
                        return;
                    }
                }
            }
        } => {}
    }
    cluster.stop().await;
    println!("stopped");
    Ok(())
}
