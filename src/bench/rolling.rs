//! `roster bench rolling-restart`: writers keep writing while each node of a 3-node cluster is
//! restarted in turn (SIGTERM, start, ready), then while the leader is killed with SIGKILL.
//! Prints how long writes waited, how many failed, the longest gap between acknowledged
//! writes, and how long the cluster was without a leader.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_ports, tempfile_dir};
use crate::dev::LocalCluster;

/// A write that has not succeeded after this long counts as failed.
pub const ROLLING_WRITE_DEADLINE_MS: u64 = 10_000;
/// Most writer clients.
pub const ROLLING_CLIENTS_MAX: usize = 256;

/// What the writers saw during one phase.
#[derive(Default)]
struct Seen {
    /// When each write was acknowledged.
    acks: Vec<Instant>,
    /// The longest time one write waited (first attempt to acknowledgement), in ms.
    longest_wait_ms: f64,
    failed: u64,
}

struct Writers {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `clients` writers; client `c` starts at endpoint `c % n` and moves to the next one
/// after a connection error or a 503, retrying the same write with the same idempotency key.
fn start_writers(clients: usize, endpoints: &[String], phase: &str) -> anyhow::Result<Writers> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(2_000))
        .tcp_nodelay(true)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, stop, seen, seq, endpoints, phase) = (http.clone(), stop.clone(), seen.clone(), seq.clone(), endpoints.to_vec(), phase.to_string());
        tasks.push(tokio::spawn(async move {
            let mut at = c % endpoints.len();
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let key = format!("{phase}-{n}");
                let body = serde_json::json!({"changes": [{"add_server": {"name": format!("{phase}-{n}"), "host": "10.1.2.3", "port": 8080}}]});
                let first = Instant::now();
                let mut done = false;
                while first.elapsed() < Duration::from_millis(ROLLING_WRITE_DEADLINE_MS) {
                    let r = http.post(format!("http://{}/v1/commands", endpoints[at])).header("idempotency-key", &key).json(&body).send().await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            done = true;
                            break;
                        }
                        // A rejection is an answer: the bench's writes are always valid, so
                        // this does not happen; count it as a failure rather than retry.
                        Ok(r) if r.status().is_client_error() => break,
                        _ => {
                            at = (at + 1) % endpoints.len();
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                let mut s = seen.lock().expect("bench lock");
                if done {
                    s.acks.push(Instant::now());
                    s.longest_wait_ms = s.longest_wait_ms.max(first.elapsed().as_secs_f64() * 1e3);
                } else {
                    s.failed += 1;
                }
            }
        }));
    }
    Ok(Writers { stop, seen, tasks })
}

impl Writers {
    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut *self.seen.lock().expect("bench lock"))
    }
}

/// The longest time between consecutive acknowledgements.
fn longest_gap_ms(acks: &mut [Instant]) -> f64 {
    acks.sort();
    acks.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1e3).fold(0.0, f64::max)
}

async fn get_json(http: &reqwest::Client, addr: &str, path: &str) -> Option<serde_json::Value> {
    http.get(format!("http://{addr}{path}")).send().await.ok()?.json().await.ok()
}

/// The index of the node the first answering node names as leader.
async fn leader_index(http: &reqwest::Client, addrs: &[String], skip: Option<usize>) -> Option<usize> {
    for (i, a) in addrs.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        if let Some(v) = get_json(http, a, "/v1/cluster?consistency=local").await {
            if let Some(id) = v["leader"].as_u64() {
                return Some(id as usize - 1);
            }
        }
    }
    None
}

async fn wait_ready(http: &reqwest::Client, addr: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if http.get(format!("http://{addr}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{addr} was not ready within 60 s")
}

fn report(name: &str, mut seen: Seen) {
    let gap = longest_gap_ms(&mut seen.acks);
    println!(
        "{name}: {} writes acknowledged, {} failed; longest wait of one write {:.0} ms; longest gap between acknowledged writes {gap:.0} ms",
        seen.acks.len(),
        seen.failed,
        seen.longest_wait_ms
    );
}

pub(super) async fn rolling_restart(clients: usize, kill_trials: u32, serve_args: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!((1..=ROLLING_CLIENTS_MAX).contains(&clients), "--clients must be 1..={ROLLING_CLIENTS_MAX}");
    anyhow::ensure!(kill_trials <= 10, "--kill-trials is at most 10");
    let dir = tempfile_dir()?;
    let extra: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let mut cluster: LocalCluster = crate::dev::spawn_cluster(&dir, 3, free_ports(3)?, None, &extra).await?;
    let addrs = cluster.addrs.clone();
    let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build()?;
    println!("rolling restart: {clients} writers spread over 3 nodes (insecure, fsync on) {}", serve_args.join(" "));

    let writers = start_writers(clients, &addrs, "roll")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..addrs.len() {
        let was_leader = leader_index(&http, &addrs, None).await == Some(i);
        let t = Instant::now();
        cluster.stop_node(i, true).await;
        let stopped = t.elapsed();
        cluster.start_node(i)?;
        let ready = wait_ready(&http, &addrs[i]).await?;
        println!(
            "  node {} ({}): stopped in {:.0} ms, ready again {:.0} ms after start",
            i + 1,
            if was_leader { "leader" } else { "follower" },
            stopped.as_secs_f64() * 1e3,
            ready.as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    report("rolling restart (SIGTERM each node in turn)", writers.finish().await);

    for trial in 1..=kill_trials {
        let writers = start_writers(clients, &addrs, &format!("kill{trial}"))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = leader_index(&http, &addrs, None).await.ok_or_else(|| anyhow::anyhow!("no leader"))?;
        let killed = Instant::now();
        cluster.stop_node(leader, false).await;
        let mut elected = None;
        while killed.elapsed() < Duration::from_secs(10) {
            if let Some(l) = leader_index(&http, &addrs, Some(leader)).await.filter(|l| *l != leader) {
                elected = Some((l, killed.elapsed()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let seen = writers.finish().await;
        match elected {
            Some((l, after)) => println!("  kill -9 trial {trial}: node {} killed, node {} leader {:.0} ms later", leader + 1, l + 1, after.as_secs_f64() * 1e3),
            None => println!("  kill -9 trial {trial}: node {} killed, no new leader within 10 s", leader + 1),
        }
        report(&format!("  kill -9 trial {trial}"), seen);
        cluster.start_node(leader)?;
        wait_ready(&http, &addrs[leader]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    cluster.stop().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
