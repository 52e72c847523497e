//! The crash matrix: a node of a 3-node cluster is crashed (abort, as abrupt as kill -9) at
//! every durable step of a snapshot's way — build, rename, meta, prune; receive, purge,
//! install, load, final batch; and the redo at start-up, crashed a second time — and after
//! each crash its data directory must be consistent (`roster check-data-dir`: applied ≥ last
//! purged unless an install is pending, no hole in the log, the snapshot files the database
//! names complete and intact), and the node must start again, rejoin and converge to the
//! cluster's state digest and history.

mod common;

use std::time::{Duration, Instant};

use common::{roster_bin, write_any, Cluster};
use serde_json::{json, Value};

const NODE: usize = 2; // node 3, the one crashed

/// Writes `n` commands (each registers a server), through any node.
fn write(cluster: &Cluster, tag: &str, n: usize) {
    for i in 0..n {
        let body = json!({"changes": [{"add_server": {"name": format!("{tag}-{i}"), "host": "h", "port": 80}}]});
        let r = write_any(&cluster.addrs, "/v1/commands", &body, &format!("{tag}-{i}"));
        assert!(matches!(r, Some((200, _))), "write {tag}-{i}: {r:?}");
    }
}

/// `roster check-data-dir` on the stopped node.
fn check(cluster: &Cluster, context: &str) -> Value {
    let out = std::process::Command::new(roster_bin())
        .arg("check-data-dir")
        .arg(cluster.dir.join(format!("node-{}", NODE + 1)))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{context}: check-data-dir printed no report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{context}: the data dir is inconsistent: {report:#}");
    let (applied, purged) = (report["applied_index"].as_u64(), report["last_purged_index"].as_u64());
    if report["install_pending"].is_null() {
        assert!(applied >= purged, "{context}: applied {applied:?} < purged {purged:?}: {report:#}");
    }
    report
}

/// How often the node's log says it reached `point`.
fn hits(cluster: &Cluster, point: &str) -> usize {
    let log = std::fs::read_to_string(cluster.dir.join(format!("node-{}.log", NODE + 1))).unwrap_or_default();
    log.matches(&format!("fail point {point} reached")).count()
}

/// Starts the node with `point` armed and keeps writing until it crashes there. Returns
/// whether it did within the bound.
fn crash_at(cluster: &mut Cluster, point: &str, tag: &str) -> bool {
    let before = hits(cluster, point);
    cluster.restart_env(NODE, &[("ROSTER_FAILPOINT", &format!("{point}:1"))]);
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(60) && round < 40 {
        if let Some(status) = cluster.nodes[NODE].as_mut().unwrap().wait_exit(Duration::from_millis(300)) {
            cluster.nodes[NODE] = None;
            assert!(!status.success(), "{point}: the node exited cleanly instead of crashing");
            return hits(cluster, point) > before;
        }
        write(cluster, &format!("{tag}-r{round}"), 10);
        round += 1;
    }
    cluster.nodes[NODE].as_mut().unwrap().kill();
    cluster.nodes[NODE] = None;
    false
}

/// Restarts the node with `point` armed; it must crash there before serving (during the
/// redo of a pending install).
fn crash_during_redo(cluster: &mut Cluster, point: &str) -> bool {
    let before = hits(cluster, point);
    cluster.restart_env(NODE, &[("ROSTER_FAILPOINT", &format!("{point}:1"))]);
    let exited = cluster.nodes[NODE].as_mut().unwrap().wait_exit(Duration::from_secs(30));
    if exited.is_none() {
        cluster.nodes[NODE].as_mut().unwrap().kill();
    }
    cluster.nodes[NODE] = None;
    exited.is_some() && hits(cluster, point) > before
}

/// Restarts the node without fail points and waits until every node holds the same state
/// digest and history as the leader.
fn rejoin(cluster: &mut Cluster, context: &str) {
    cluster.restart(NODE);
    cluster.node(NODE).wait_ready(Duration::from_secs(60));
    write(cluster, &format!("{context}-after"), 1);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let revision = common::Api::new(cluster.node(leader)).digest().0;
    cluster.wait_revision(revision, Duration::from_secs(60));
    let lead = cluster.local_view(leader);
    let mine = cluster.local_view(NODE);
    assert_eq!(mine.0, lead.0, "{context}: node 3's state digest differs from the leader's");
    assert_eq!(mine.1.len(), lead.1.len(), "{context}: node 3 serves a different history length");
    assert_eq!(mine.1, lead.1, "{context}: node 3 serves a different history");
}

#[test]
fn a_node_survives_a_crash_at_every_step_of_a_snapshots_way() {
    let dir = tempfile::tempdir().unwrap();
    // A snapshot every 20 entries and no log kept behind it: a node that misses a few writes
    // needs a snapshot, so every restart below goes through the install path.
    let mut cluster = Cluster::start(dir.path(), 3, &["--snapshot-every-logs", "20", "--logs-kept-after-snapshot", "0"]);
    write(&cluster, "warm", 30);

    // The install-path points need the node to fall behind first; the build-path points are
    // reached by the node's own snapshot policy while it catches up and the writes go on.
    let points: Vec<&str> =
        roster_storage::failpoint::SNAPSHOT_PATH.iter().copied().filter(|p| *p != "snapshot_redo").collect();
    let mut table = Vec::new();
    for (n, point) in points.iter().enumerate() {
        let tag = format!("p{n}");
        cluster.nodes[NODE].as_mut().unwrap().stop();
        cluster.nodes[NODE] = None;
        write(&cluster, &format!("{tag}-behind"), 45);
        let crashed = crash_at(&mut cluster, point, &tag);
        assert!(crashed, "{point}: the node never reached the fail point");
        let report = check(&cluster, point);
        let mut outcome = String::from("crashed; data dir consistent");
        if report["install_pending"].is_string() {
            outcome.push_str("; install pending");
            // A second and a third crash while the redo runs at start-up.
            assert!(crash_during_redo(&mut cluster, "snapshot_redo"), "{point}: the redo did not run");
            check(&cluster, &format!("{point} then snapshot_redo"));
            assert!(crash_during_redo(&mut cluster, "snapshot_install_final"), "{point}: the redo did not reach its final batch");
            check(&cluster, &format!("{point} then a crash in the redo"));
            outcome.push_str("; redo crashed twice, still consistent");
        }
        rejoin(&mut cluster, point);
        outcome.push_str("; rejoined and converged");
        table.push(format!("{point:28} {outcome}"));
    }
    eprintln!("crash matrix (point × outcome):\n{}", table.join("\n"));

    // Node 3, which has just redone interrupted installs, leads and serves a snapshot to a
    // follower that fell behind.
    let started = Instant::now();
    loop {
        let leader = cluster.wait_leader(Duration::from_secs(30));
        if leader == NODE {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "node 3 never became the leader");
        cluster.nodes[leader].as_mut().unwrap().stop();
        cluster.nodes[leader] = None;
        std::thread::sleep(Duration::from_millis(1500));
        cluster.restart(leader);
        cluster.node(leader).wait_ready(Duration::from_secs(30));
    }
    let follower = (0..3).find(|i| *i != NODE).unwrap();
    cluster.nodes[follower].as_mut().unwrap().stop();
    cluster.nodes[follower] = None;
    let out = std::process::Command::new(roster_bin()).arg("check-data-dir").arg(cluster.dir.join(format!("node-{}", follower + 1))).output().unwrap();
    let behind: Value = serde_json::from_slice(&out.stdout).unwrap();
    let last = behind["last_log_index"].as_u64().unwrap_or(0);
    let started = Instant::now();
    let mut round = 0;
    let purged = loop {
        write(&cluster, &format!("served{round}"), 20);
        round += 1;
        let purged = cluster.status(NODE).unwrap()["purged_index"].as_u64().unwrap_or(0);
        if purged > last + 1 {
            break purged;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "node 3 did not compact past the follower (purged {purged}, follower's last {last})");
    };
    cluster.restart(follower);
    cluster.node(follower).wait_ready(Duration::from_secs(60));
    let revision = common::Api::new(cluster.node(NODE)).digest().0;
    cluster.wait_revision(revision, Duration::from_secs(60));
    assert_eq!(cluster.local_view(follower), cluster.local_view(NODE), "the follower diverged after a snapshot from node 3");
    eprintln!("node 3 led with its log purged to {purged}; node {} (last log {last}) caught up through its snapshot", follower + 1);
}

/// Damages a stopped node's database files the way disks do.
fn damage(db: &std::path::Path, how: &str) -> String {
    let files: Vec<_> = std::fs::read_dir(db).unwrap().flatten().map(|e| e.path()).collect();
    let largest = |ext: &str| {
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .cloned()
    };
    match how {
        "flip-sst" => {
            let f = largest("sst").expect("a flushed node has SST files");
            let mut bytes = std::fs::read(&f).unwrap();
            let at = bytes.len() / 3;
            bytes[at] ^= 0x5a;
            std::fs::write(&f, bytes).unwrap();
            format!("flipped byte {at} of {}", f.display())
        }
        "truncate-wal" => {
            let f = largest("log").expect("a killed node has a write-ahead log");
            let len = std::fs::metadata(&f).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len / 2).unwrap();
            format!("truncated {} from {len} to {} bytes", f.display(), len / 2)
        }
        other => panic!("unknown damage {other}"),
    }
}

/// Every server name a test wrote must be in the node's history.
fn assert_has_writes(cluster: &Cluster, i: usize, names: &[String], context: &str) {
    let (_, history) = cluster.local_view(i);
    let text = serde_json::to_string(&history).unwrap();
    for n in names {
        assert!(text.contains(&format!("\"{n}\"")), "{context}: acknowledged write {n} is missing on node {}", i + 1);
    }
}

/// A node whose database files are damaged (a flipped byte in an SST file; a write-ahead log
/// cut in half) either refuses to start with an error naming the damage, or starts with a
/// consistent prefix and catches up; either way the documented replacement (remove, wipe,
/// join, add) brings it back from the others with every acknowledged write.
#[test]
fn a_damaged_node_refuses_or_recovers_and_is_replaced_without_losing_writes() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--snapshot-every-logs", "20", "--logs-kept-after-snapshot", "0"];
    let mut cluster = Cluster::start(dir.path(), 3, &args);
    let mut names = Vec::new();
    let mut outcomes = Vec::new();
    for (round, how) in ["flip-sst", "truncate-wal"].into_iter().enumerate() {
        let tag = format!("d{round}");
        write(&cluster, &tag, 50);
        names.extend((0..50).map(|i| format!("{tag}-{i}")));
        // A graceful stop flushes everything to SST files; a kill leaves the newest writes in
        // the write-ahead log.
        if how == "flip-sst" {
            cluster.nodes[NODE].as_mut().unwrap().stop();
        } else {
            cluster.nodes[NODE].as_mut().unwrap().kill();
        }
        cluster.nodes[NODE] = None;
        let what = damage(&dir.path().join(format!("node-{}/db", NODE + 1)), how);
        let out = std::process::Command::new(roster_bin()).arg("check-data-dir").arg(dir.path().join(format!("node-{}", NODE + 1))).output().unwrap();
        eprintln!("{how}: check-data-dir exit {:?}:\n{}{}", out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log_before = cluster.dir.join(format!("node-{}.log", NODE + 1));
        let log_len = std::fs::metadata(&log_before).map(|m| m.len() as usize).unwrap_or(0);
        cluster.restart(NODE);
        let exited = cluster.nodes[NODE].as_mut().unwrap().wait_exit(Duration::from_secs(20));
        let outcome = match exited {
            Some(status) => {
                assert!(!status.success(), "{how}: a damaged node exited successfully");
                let log = std::fs::read_to_string(&log_before).unwrap();
                let tail = &log[log_len.min(log.len())..];
                assert!(
                    ["orruption", "damaged", "checksum", "corrupt"].iter().any(|w| tail.contains(w)),
                    "{how}: the node refused to start without naming the damage:\n{tail}"
                );
                cluster.nodes[NODE] = None;
                eprintln!("--- {how}: node log after the damage ---\n{}", tail.lines().filter(|l| !l.trim_start().starts_with("at ") && !l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit())).rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
                let line = tail.lines().rev().find(|l| ["orruption", "damaged", "checksum", "corrupt"].iter().any(|w| l.contains(w)));
                format!("refused to start: {}", line.unwrap_or_default().chars().take(300).collect::<String>())
            }
            None => {
                // It started: what it holds must be a consistent prefix that catches up.
                cluster.node(NODE).wait_ready(Duration::from_secs(30));
                write(&cluster, &format!("{tag}-probe"), 1);
                names.push(format!("{tag}-probe-0"));
                let leader = cluster.wait_leader(Duration::from_secs(30));
                let revision = common::Api::new(cluster.node(leader)).digest().0;
                cluster.wait_revision(revision, Duration::from_secs(60));
                assert_eq!(cluster.local_view(NODE), cluster.local_view(leader), "{how}: the node diverged");
                cluster.nodes[NODE].as_mut().unwrap().kill();
                cluster.nodes[NODE] = None;
                "started with a consistent prefix and caught up".to_string()
            }
        };
        // The documented replacement: remove, wipe, start empty with --join, add.
        let leader = cluster.wait_leader(Duration::from_secs(30));
        let api = common::Api::new(cluster.node(leader));
        let (s, v) = api.request(reqwest::Method::DELETE, &format!("/v1/cluster/nodes/{}", NODE + 1), None, &[]);
        assert_eq!(s, 200, "remove-node: {v}");
        std::fs::remove_dir_all(dir.path().join(format!("node-{}", NODE + 1))).unwrap();
        let mut extra = args.to_vec();
        extra.push("--join");
        let node = common::NodeProcess::start_with(
            &dir.path().join(format!("node-{}", NODE + 1)),
            (NODE + 1) as u64,
            &cluster.addrs[NODE],
            "",
            &extra,
        );
        cluster.nodes[NODE] = Some(node);
        let leader = cluster.wait_leader(Duration::from_secs(30));
        let (s, v) = common::Api::new(cluster.node(leader)).post(
            "/v1/cluster/nodes",
            json!({"id": NODE + 1, "addr": cluster.addrs[NODE]}),
            &[],
        );
        assert_eq!(s, 200, "add-node: {v}");
        let revision = common::Api::new(cluster.node(leader)).digest().0;
        cluster.wait_revision(revision, Duration::from_secs(60));
        assert_eq!(cluster.local_view(NODE), cluster.local_view(leader), "{how}: the replaced node diverged");
        assert_has_writes(&cluster, NODE, &names, how);
        // Later starts may pass --peers again: it is used only on an empty data directory.
        outcomes.push(format!("{how:13} {what}: {outcome}; replaced, every acknowledged write present"));
    }
    eprintln!("disk damage:\n{}", outcomes.join("\n"));
}
