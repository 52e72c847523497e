//! Clock skew: nodes whose wall clocks are 30 s ahead and behind, and a leader whose wall clock
//! jumps an hour forward and back, under libfaketime (Debian `faketime`, installed by
//! `scripts/deps.sh`). Raft runs on monotonic time, so safety must hold: every acknowledged
//! write is in the history exactly once, at one revision, the same on every node, with the
//! same state digest. Revision times are stamped by the node that accepted the write, from its
//! wall clock: they are hints, and this test shows they need not be monotonic.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{write_any, Cluster};
use serde_json::{json, Value};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Environment that runs a node on the wall clock written in `file` (re-read every second);
/// the monotonic clock Raft uses is left alone.
fn faketime_env(file: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// Writes `n` commands through node `i` only; returns their names.
fn write_through(cluster: &Cluster, i: usize, tag: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for k in 0..n {
        let name = format!("{tag}-{k}");
        let body = json!({"changes": [{"add_server": {"name": name, "host": "h", "port": 1}}]});
        let r = write_any(&[cluster.addrs[i].clone()], "/v1/commands", &body, &name);
        assert!(matches!(r, Some((200, _))), "write {name} through node {}: {r:?}", i + 1);
        names.push(name);
    }
    names
}

#[test]
fn skewed_and_jumping_wall_clocks_keep_every_write_and_one_history() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run scripts/deps.sh (it installs Debian's faketime)"
    );
    let dir = tempfile::tempdir().unwrap();
    let offsets = ["+0s", "+30s", "-30s"];
    let files: Vec<_> = (0..3).map(|i| dir.path().join(format!("clock-{}", i + 1))).collect();
    for (f, o) in files.iter().zip(offsets) {
        std::fs::write(f, o).unwrap();
    }
    let envs: Vec<_> = files.iter().map(|f| faketime_env(f)).collect();
    let cluster = Cluster::start_envs(dir.path(), 3, &["--snapshot-every-logs", "40"], &envs);

    let mut names = Vec::new();
    for round in 0..2 {
        for i in 0..3 {
            names.extend(write_through(&cluster, i, &format!("r{round}n{i}"), 10));
        }
    }
    // The leader's wall clock jumps an hour forward, then an hour back, while writes go on.
    let leader = cluster.wait_leader(Duration::from_secs(10));
    for (step, offset) in ["+3600s", "-3600s", offsets[leader]].iter().enumerate() {
        std::fs::write(&files[leader], offset).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        for i in 0..3 {
            names.extend(write_through(&cluster, i, &format!("jump{step}n{i}"), 5));
        }
    }

    let leader = cluster.wait_leader(Duration::from_secs(10));
    let revision = common::Api::new(cluster.node(leader)).digest().0;
    cluster.wait_revision(revision, Duration::from_secs(30));
    let views: Vec<_> = (0..3).map(|i| cluster.local_view(i)).collect();
    for (i, v) in views.iter().enumerate() {
        assert_eq!(v, &views[0], "node {} differs from node 1", i + 1);
    }
    let history = &views[0].1;
    // Dense revisions, every acknowledged write exactly once.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (k, r) in history.iter().enumerate() {
        assert_eq!(r["revision"].as_u64(), Some(k as u64 + 1), "revisions are not dense");
        for e in r["events"].as_array().into_iter().flatten() {
            if let Some(name) = e.pointer("/server_registered/server/name").and_then(Value::as_str) {
                *seen.entry(name.to_string()).or_default() += 1;
            }
        }
    }
    for n in &names {
        assert_eq!(seen.get(n), Some(&1), "acknowledged write {n} is not in the history exactly once");
    }
    // Times are wall-clock hints from the accepting node: report how far they go backwards.
    let times: Vec<u64> = history.iter().filter_map(|r| r["time_ms"].as_u64()).collect();
    assert_eq!(times.len(), history.len(), "records without time_ms: {}", history[0]);
    let backwards = times.windows(2).filter(|w| w[1] < w[0]).count();
    let largest_step_back = times.windows(2).map(|w| w[0].saturating_sub(w[1])).max().unwrap_or(0);
    eprintln!(
        "{} revisions; {backwards} times earlier than their predecessor, by up to {} s (wall-clock hints)",
        times.len(),
        largest_step_back / 1000
    );
}
