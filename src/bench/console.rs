//! `roster bench console`: how long each console page takes to render on a node holding a
//! large configuration (by default 1,000 servers, 10,000 task configurations, 10,000 agents),
//! and the node's memory holding it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use super::{free_port, rss_kb, tempfile_dir};

async fn post_changes(http: &reqwest::Client, base: &str, changes: Vec<Value>) -> anyhow::Result<()> {
    for chunk in changes.chunks(crate::domain::CHANGES_PER_COMMAND_MAX) {
        let r = http.post(format!("{base}/v1/commands")).json(&json!({"changes": chunk})).send().await?;
        let status = r.status();
        anyhow::ensure!(status.is_success(), "setup failed: {}", r.text().await.unwrap_or_default());
    }
    Ok(())
}

pub(super) async fn console_bench(servers: usize, tasks: usize, clusters: usize, agents: usize, runs: usize) -> anyhow::Result<()> {
    anyhow::ensure!(servers >= 3 && clusters >= 1 && tasks >= 1 && runs >= 1, "--servers >= 3, --clusters, --tasks and --runs >= 1");
    let dir = tempfile_dir()?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let base = format!("http://{addr}");
    let mut node = tokio::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--insecure", "--listen", &addr, "--data-dir"])
        .arg(dir.join("node"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let started = Instant::now();
    while !http.get(format!("{base}/readyz")).send().await.map(|r| r.status().is_success()).unwrap_or(false) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "node not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("setting up {servers} servers, {tasks} tasks x {clusters} clusters = {} configurations, {agents} agents...", tasks * clusters);
    let mut changes: Vec<Value> = (0..servers)
        .map(|i| json!({"add_server": {"name": format!("rt{i}"), "host": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256), "port": 8080}}))
        .collect();
    changes.extend((0..clusters).map(|c| json!({"create_cluster": {"name": format!("c{c}")}})));
    changes.extend((0..agents).flat_map(|a| {
        let id = format!("pc{a}");
        [json!({"register_agent": {"id": id}}), json!({"add_agent_to_cluster": {"cluster": format!("c{}", a % clusters), "agent": id}})]
    }));
    for t in 0..tasks {
        for c in 0..clusters {
            let list: Vec<String> = (0..3).map(|k| format!("rt{}", (t * 7 + c * 3 + k) % servers)).collect();
            changes.push(json!({"set_servers": {"task": format!("t{t}"), "cluster": format!("c{c}"), "servers": list}}));
        }
    }
    post_changes(&http, &base, changes).await?;
    // The node's memory holding this configuration (the live state, its indexes and the
    // history written so far), once the writes have settled.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(pid) = node.id() {
        let rev = http.get(format!("{base}/v1/state/digest")).send().await?.json::<Value>().await?["revision"].as_u64().unwrap_or(0);
        println!("node RSS holding it: {} MB (at revision {rev})", rss_kb(pid)? / 1024);
    }
    let pages = [
        "/ui/servers",
        "/ui/servers/rt1",
        "/ui/clusters",
        "/ui/tasks",
        "/ui/tasks?task=t1&cluster=c0",
        "/ui/history",
        "/ui/events",
        "/ui/cluster",
    ];
    println!("{:<34} {:>9} {:>9} {:>9} {:>9}", "page", "p50 ms", "max ms", "KiB", "runs");
    for page in pages {
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let r = http.get(format!("{base}{page}")).send().await?;
            anyhow::ensure!(r.status().is_success(), "{page}: HTTP {}", r.status());
            size = r.bytes().await?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("{page:<34} {:>9.2} {:>9.2} {:>9} {runs:>9}", times[times.len() / 2], times[times.len() - 1], size / 1024);
    }
    node.kill().await.context("stopping the node")?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
