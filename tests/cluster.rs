//! A real 3-node cluster of `roster serve` processes on loopback: failover, membership,
//! snapshots, restarts and follower reads.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{write_any, Api, Cluster};
use serde_json::{json, Value};

fn registered_servers(records: &[Value]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for r in records {
        for e in r["events"].as_array().unwrap() {
            if let Some(name) = e.pointer("/server_registered/server/name").and_then(Value::as_str) {
                *seen.entry(name.to_string()).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// kill -9 the leader during a stream of writes: a new leader is elected, writes continue, and
/// every acknowledged write is in the history of every node, exactly once.
#[test]
fn killing_the_leader_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &[]);
    let endpoints: Vec<String> = cluster.addrs.clone();
    let mut acked = Vec::new();
    let mut killed = None;
    let started = Instant::now();
    for i in 0..120 {
        if i == 40 {
            let leader = cluster.wait_leader(Duration::from_secs(10));
            cluster.nodes[leader].as_mut().unwrap().kill();
            cluster.nodes[leader] = None;
            killed = Some(leader);
        }
        let name = format!("rt{i}");
        let body = json!({"changes": [{"add_server": {"name": name, "host": "10.0.0.1", "port": 80}}]});
        if let Some((200, v)) = write_any(&endpoints, "/v1/commands", &body, &format!("w-{i}")) {
            assert!(v["committed"]["revision"].as_u64().is_some(), "{v}");
            acked.push(name);
        }
        assert!(started.elapsed() < Duration::from_secs(120), "writes took too long");
    }
    assert!(acked.len() >= 100, "only {} of 120 writes were acknowledged", acked.len());

    // Bring the killed node back; it must catch up too.
    cluster.restart(killed.unwrap());
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let head = Api::new(cluster.node(leader)).digest().0;
    cluster.wait_revision(head, Duration::from_secs(30));
    let views: Vec<_> = cluster.running().into_iter().map(|i| cluster.local_view(i)).collect();
    for (digest, records) in &views {
        assert_eq!(digest, &views[0].0, "nodes disagree on the state");
        assert_eq!(records, &views[0].1, "nodes disagree on the history");
        let seen = registered_servers(records);
        for name in &acked {
            assert_eq!(seen.get(name), Some(&1), "acknowledged write {name} is not in the history exactly once");
        }
    }
}

/// A read on a follower right after a write acknowledged by the leader sees that write.
#[test]
fn follower_reads_see_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let followers: Vec<usize> = cluster.running().into_iter().filter(|i| *i != leader).collect();
    let leader_api = Api::new(cluster.node(leader));
    for i in 0..20 {
        let (s, v) = leader_api.post("/v1/servers", json!({"name": format!("rt{i}"), "host": "h", "port": 80}), &[]);
        assert_eq!(s, 201, "{v}");
        let f = Api::new(cluster.node(followers[i % followers.len()]));
        let got = f.get(&format!("/v1/servers/rt{i}"));
        assert_eq!(got["name"], format!("rt{i}"));
        // A write sent to a follower is forwarded to the leader.
        let (s, v) = f.request(reqwest::Method::POST, &format!("/v1/servers/rt{i}/disable"), None, &[]);
        assert_eq!(s, 200, "{v}");
        assert_eq!(leader_api.get(&format!("/v1/servers/rt{i}"))["status"], "disabled");
    }
}

/// Full-cluster restart: same revision, state and history.
#[test]
fn full_cluster_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &[]);
    let eps = cluster.addrs.clone();
    for i in 0..30 {
        let body = json!({"changes": [{"add_server": {"name": format!("rt{i}"), "host": "h", "port": 80}}]});
        assert!(matches!(write_any(&eps, "/v1/commands", &body, &format!("k{i}")), Some((200, _))));
    }
    cluster.wait_revision(30, Duration::from_secs(20));
    let before: Vec<_> = (0..3).map(|i| cluster.local_view(i)).collect();
    for i in 0..3 {
        assert!(cluster.nodes[i].as_mut().unwrap().stop(), "node {} did not stop gracefully", i + 1);
        cluster.nodes[i] = None;
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_leader(Duration::from_secs(30));
    cluster.wait_revision(30, Duration::from_secs(30));
    let after: Vec<_> = (0..3).map(|i| cluster.local_view(i)).collect();
    assert_eq!(before, after);
    // And it still takes writes.
    let body = json!({"changes": [{"create_cluster": {"name": "eu"}}]});
    assert!(matches!(write_any(&eps, "/v1/commands", &body, "after"), Some((200, _))));
}

/// Removing the leader from the membership: the rest elect a new leader and carry on.
#[test]
fn removing_the_leader_leaves_a_working_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let other = (leader + 1) % 3;
    let api = Api::new(cluster.node(other));
    let (s, v) = api.request(reqwest::Method::DELETE, &format!("/v1/cluster/nodes/{}", leader + 1), None, &[]);
    assert_eq!(s, 200, "{v}");
    let started = Instant::now();
    loop {
        let st = cluster.status(other).unwrap();
        let members: Vec<u64> = st["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
        if !members.contains(&((leader + 1) as u64)) && st["leader"].as_u64().is_some_and(|l| l != (leader + 1) as u64) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "membership did not settle: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rest: Vec<String> = (0..3).filter(|i| *i != leader).map(|i| cluster.addrs[i].clone()).collect();
    for i in 0..10 {
        let body = json!({"changes": [{"add_server": {"name": format!("rt{i}"), "host": "h", "port": 80}}]});
        let r = write_any(&rest, "/v1/commands", &body, &format!("k{i}"));
        assert!(matches!(r, Some((200, _))), "{r:?}");
    }
}

/// A fourth node added after the leader compacted its log catches up from a snapshot and
/// serves the full history and the same state digest.
#[test]
fn a_late_node_catches_up_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &["--snapshot-every-logs", "20", "--logs-kept-after-snapshot", "0"]);
    let eps = cluster.addrs.clone();
    for i in 0..100 {
        let body = json!({"changes": [{"add_server": {"name": format!("rt{i}"), "host": "h", "port": 80}}]});
        assert!(matches!(write_any(&eps, "/v1/commands", &body, &format!("k{i}")), Some((200, _))));
    }
    let leader = cluster.wait_leader(Duration::from_secs(10));
    // The leader has compacted: its log no longer starts at index 1.
    let st = cluster.status(leader).unwrap();
    assert!(st["purged_index"].as_u64().is_some_and(|p| p > 50), "the leader did not compact its log: {st}");

    let addr = format!("127.0.0.1:{}", common::free_port());
    cluster.addrs.push(addr.clone());
    let node4 = common::NodeProcess::start_with(&dir.path().join("node-4"), 4, &addr, "", &["--join"]);
    cluster.nodes.push(Some(node4));
    let (s, v) = Api::new(cluster.node(leader)).post("/v1/cluster/nodes", json!({"id": 4, "addr": addr}), &[]);
    assert_eq!(s, 200, "{v}");
    cluster.wait_revision(100, Duration::from_secs(30));
    let views: Vec<_> = (0..4).map(|i| cluster.local_view(i)).collect();
    assert_eq!(views[3].1.len(), 100, "the new node does not serve the full history");
    let installed = std::fs::read_dir(dir.path().join("node-4/snapshots"))
        .unwrap()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "snap"));
    assert!(installed, "node 4 did not catch up through a snapshot");
    for v in &views {
        assert_eq!(v, &views[0]);
    }
    let st = cluster.status(3).unwrap();
    assert!(st["members"].as_array().unwrap().iter().any(|m| m["id"] == 4 && m["voter"] == true), "{st}");
}

/// Concurrent writers share Raft entries: every command still gets its own revision, changeset
/// ids stay unique, and every node records the same history.
#[test]
fn concurrent_writes_are_batched_without_mixing_up_results() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    let eps = cluster.addrs.clone();
    let results: Vec<(u64, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|t| {
                // Half the writers go through one follower only, which forwards in batches.
                let eps = if t % 2 == 0 { vec![eps[follower].clone()] } else { eps.clone() };
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in 0..5 {
                        let key = format!("t{t}-{i}");
                        let body = json!({"changes": [{"add_server": {"name": format!("rt{t}x{i}"), "host": "h", "port": 80}}]});
                        let (s, v) = write_any(&eps, "/v1/commands", &body, &key).expect("write");
                        assert_eq!(s, 200, "{v}");
                        let rev = v["committed"]["revision"].as_u64().unwrap();
                        let (s, v) = write_any(&eps, "/v1/changesets", &json!({"description": key}), &format!("cs-{key}")).expect("write");
                        assert_eq!(s, 201, "{v}");
                        out.push((rev, v["changeset_created"]["id"].as_str().unwrap().to_string()));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut revisions: Vec<u64> = results.iter().map(|r| r.0).collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=160).collect::<Vec<_>>(), "revisions are not dense and unique");
    let mut ids: Vec<&String> = results.iter().map(|r| &r.1).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 160, "changeset ids collided");
    cluster.wait_revision(160, Duration::from_secs(20));
    let views: Vec<_> = (0..3).map(|i| cluster.local_view(i)).collect();
    for v in &views {
        assert_eq!(v, &views[0]);
    }
    let listed = Api::new(cluster.node(0)).get("/v1/changesets");
    assert_eq!(listed.as_array().unwrap().len(), 160);
    assert!(
        listed.as_array().unwrap().iter().any(|c| c["id"].as_str().unwrap().matches('-').count() == 2),
        "no two commands shared a Raft entry, so batching was not exercised"
    );
    let metrics = common::secure().admin(Duration::from_secs(5)).get(cluster.node(follower).url("/metrics")).send().unwrap().text().unwrap();
    let counter = |name: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let (requests, commands) = (counter("roster_forward_requests_total "), counter("roster_forwarded_commands_total "));
    eprintln!("the follower forwarded {commands} commands in {requests} requests");
    assert!(commands >= 160, "the follower forwarded {commands} commands");
    assert!(requests < commands, "the follower forwarded {commands} commands in {requests} requests: none was batched");
}

/// Security (issue 18, item 4): a node address is host:port only (no scheme: the cluster's own
/// TLS transport is always used), and a node that does not catch up (here: nothing listens)
/// is never made a voter; the membership is left as it was.
#[test]
fn add_node_takes_host_port_only_and_never_promotes_an_unreachable_node() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &["--learner-catch-up-ms", "2000"]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let api = Api::new(cluster.node(leader));
    let dead = format!("127.0.0.1:{}", common::free_port());
    for addr in [format!("http://{dead}"), format!("{dead}/x"), "no-port".to_string(), "h:0".to_string()] {
        let (s, v) = api.post("/v1/cluster/nodes", json!({"id": 4, "addr": addr}), &[]);
        assert_eq!(s, 400, "{addr} was accepted: {v}");
    }
    let started = std::time::Instant::now();
    let (s, v) = api.post("/v1/cluster/nodes", json!({"id": 4, "addr": dead}), &[]);
    assert!((400..500).contains(&s), "an unreachable node was added: {s} {v}");
    assert!(started.elapsed() < Duration::from_secs(30), "add-node took {:?}", started.elapsed());
    let st = cluster.status(leader).unwrap();
    let members = st["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "the membership changed: {st}");
    assert!(members.iter().all(|m| m["voter"] == true && m["id"] != 4), "{st}");
    // The cluster still commits.
    let r = write_any(&cluster.addrs, "/v1/commands", &json!({"changes": [{"add_server": {"name": "after", "host": "h", "port": 1}}]}), "after");
    assert!(matches!(r, Some((200, _))), "{r:?}");
}

/// Security (issue 18, item 7): with `--peer-listen`, node-to-node traffic has its own
/// listener and connection budget. A flood that takes every client connection of a follower
/// (its file limit is 512, so its client cap is a few hundred) does not cut it off from its
/// peers: a fresh peer connection is still answered, and the follower keeps applying writes.
/// (With one listener, the fresh connection is refused like every other.)
#[test]
fn a_client_connection_flood_does_not_cut_a_node_off_from_its_peers() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let api: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", common::free_port())).collect();
    let peer: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", common::free_port())).collect();
    let peers = peer.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
    let spawn = |i: usize| {
        let log = std::fs::File::create(dir.path().join(format!("node-{}.log", i + 1))).unwrap();
        let mut cmd = Command::new("prlimit");
        cmd.arg("--nofile=512:512").arg("--").arg(common::roster_bin());
        cmd.args(["serve", "--node-id", &(i + 1).to_string(), "--listen", &api[i], "--peer-listen", &peer[i], "--peers", &peers]);
        cmd.arg("--data-dir").arg(dir.path().join(format!("node-{}", i + 1)));
        cmd.arg("--secure-dir").arg(&common::secure().dir);
        // Flood connections hold their slot for the whole test.
        cmd.args(["--header-read-timeout-ms", "60000"]);
        cmd.stdout(Stdio::from(log.try_clone().unwrap())).stderr(Stdio::from(log));
        cmd.spawn().unwrap()
    };
    struct Kill(Vec<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let _nodes = Kill((0..3).map(spawn).collect());
    let admin = common::secure().admin(Duration::from_secs(2));
    let status = |i: usize| -> Option<Value> { admin.get(format!("{}/v1/cluster", common::base(&api[i]))).send().ok()?.json().ok() };
    let started = Instant::now();
    let leader = loop {
        if let Some(l) = status(0).and_then(|v| v["leader"].as_u64()) {
            break (l - 1) as usize;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Member addresses are the peer addresses; the client port serves no Raft routes.
    let st = status(leader).unwrap();
    assert!(st["members"].as_array().unwrap().iter().all(|m| peer.contains(&m["addr"].as_str().unwrap().to_string())), "{st}");
    let r = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&common::secure().ca_pem).unwrap())
        .use_rustls_tls()
        .build()
        .unwrap()
        .post(format!("{}/raft/vote", common::base(&api[leader])))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "the client port serves a Raft route");

    let flooded = (leader + 1) % 3;
    let write = |tag: &str| {
        let eps: Vec<String> = api.clone();
        let r = write_any(&eps, "/v1/commands", &json!({"changes": [{"add_server": {"name": tag, "host": "h", "port": 1}}]}), tag);
        assert!(matches!(r, Some((200, _))), "{tag}: {r:?}");
        r.unwrap().1["committed"]["revision"].as_u64().unwrap()
    };
    write("before");
    // Flood the follower's client port until it refuses connections (bounded: 600).
    let mut flood = Vec::new();
    for _ in 0..600 {
        match std::net::TcpStream::connect(&api[flooded]) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // A peer opening a fresh connection to the flooded node is still answered (here with an
    // error for an empty vote request; the point is that it gets an answer at all).
    let secret = std::fs::read_to_string(common::secure().dir.join(roster::tls::CLUSTER_SECRET)).unwrap();
    let fresh = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&common::secure().ca_pem).unwrap())
        .use_rustls_tls()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answer = fresh.post(format!("{}/raft/vote", common::base(&peer[flooded]))).bearer_auth(secret.trim()).send();
    assert!(answer.is_ok(), "a fresh peer connection to the flooded node got no answer: {answer:?}");
    let rev = write("after");
    // The flooded follower applies it: it is still fed by the new leader (read through the
    // peer port, which the flood does not touch).
    let started = Instant::now();
    loop {
        let r = admin.get(format!("{}/v1/state/digest?consistency=local", common::base(&peer[flooded]))).send();
        if r.ok().and_then(|r| r.json::<Value>().ok()).and_then(|v| v["revision"].as_u64()).is_some_and(|r| r >= rev) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the flooded follower fell behind: its peers cannot reach it");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{} flood connections held on node {}; it kept up through its peer listener", flood.len(), flooded + 1);
    drop(flood);
}

/// Failure detection is configurable: a cluster with faster settings elects a new leader after
/// the old one dies, and settings that would start needless elections are refused at start.
#[test]
fn failure_detection_settings_are_flags_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let fast = ["--heartbeat-ms", "50", "--election-timeout-min-ms", "150", "--election-timeout-max-ms", "300"];
    let mut c = Cluster::start(&dir.path().join("c"), 3, &fast);
    let leader = c.wait_leader(Duration::from_secs(10));
    c.nodes[leader].take().unwrap().kill();
    let next = c.wait_leader(Duration::from_secs(10));
    assert_ne!(next, leader);
    let body = json!({"changes": [{"create_cluster": {"name": "after"}}]});
    assert!(matches!(write_any(&c.addrs, "/v1/commands", &body, "after"), Some((200, _))));
    // Cluster status shows each member's version; the dead one is unreachable.
    let status = Api::new(c.node(next)).get("/v1/cluster");
    let versions: Vec<Value> = status["members"].as_array().unwrap().iter().map(|m| m["version"].clone()).collect();
    assert_eq!(versions.iter().filter(|v| v.as_str() == Some(env!("CARGO_PKG_VERSION"))).count(), 2, "{status}");
    assert_eq!(versions.iter().filter(|v| v.is_null()).count(), 1, "{status}");
    let (ok, out, err) = common::ctl(&c.addrs[next], &["cluster", "status"]);
    assert!(ok && out.contains("unreachable") && out.contains(env!("CARGO_PKG_VERSION")), "{out}{err}");

    let out = std::process::Command::new(common::roster_bin())
        .args(["serve", "--insecure", "--listen", "127.0.0.1:1", "--heartbeat-ms", "100", "--election-timeout-min-ms", "200"])
        .arg("--data-dir")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("at least 3 heartbeats"), "{err}");
    assert!(!dir.path().join("refused").exists(), "a refused start created its data dir");
}

/// A node that is down can be removed, and added back later with its old data: it catches up
/// and ends with the same state and history as the others.
#[test]
fn a_down_node_is_removed_and_rejoins_with_its_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let gone = (leader + 1) % 3;
    let eps = cluster.addrs.clone();
    let write = |names: std::ops::Range<u32>, eps: &[String]| {
        for i in names {
            let body = json!({"changes": [{"add_server": {"name": format!("rt{i}"), "host": "h", "port": 80}}]});
            let r = write_any(eps, "/v1/commands", &body, &format!("j{i}"));
            assert!(matches!(r, Some((200, _))), "{r:?}");
        }
    };
    write(0..5, &eps);
    cluster.nodes[gone].as_mut().unwrap().kill();
    cluster.nodes[gone] = None;
    let rest: Vec<String> = cluster.running().into_iter().map(|i| eps[i].clone()).collect();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let api = Api::new(cluster.node(leader));
    let (s, v) = api.request(reqwest::Method::DELETE, &format!("/v1/cluster/nodes/{}", gone + 1), None, &[]);
    assert_eq!(s, 200, "removing a node that is down: {v}");
    write(5..10, &rest);

    cluster.restart(gone);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let (s, v) = Api::new(cluster.node(leader)).post("/v1/cluster/nodes", json!({"id": gone + 1, "addr": eps[gone]}), &[]);
    assert_eq!(s, 200, "adding the removed node back: {v}");
    write(10..15, &eps);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let st = cluster.status(leader).unwrap();
    let voters: Vec<u64> = st["members"].as_array().unwrap().iter().filter(|m| m["voter"] == json!(true)).map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(voters, vec![1, 2, 3], "{st}");
    let head = Api::new(cluster.node(leader)).digest().0;
    cluster.wait_revision(head, Duration::from_secs(30));
    let views: Vec<_> = (0..3).map(|i| cluster.local_view(i)).collect();
    for (digest, records) in &views {
        assert_eq!(digest, &views[0].0, "nodes disagree on the state");
        assert_eq!(records, &views[0].1, "nodes disagree on the history");
        assert_eq!(registered_servers(records).len(), 15);
    }
}

/// A follower whose log appends take 60 ms (a slow disk: `ROSTER_FAILPOINT_DELAY`) is not cut
/// off by the default failure detection. openraft 0.9 gives a follower one heartbeat interval
/// to answer an append, then abandons it and sends it again; the 50 ms heartbeat the defaults
/// once had abandoned the appends of a busy follower by the hundred, and started elections
/// under load. Run with that heartbeat, the leader counts abandoned appends
/// (`roster_raft_append_timeouts_total`), which shows the count and the slow disk both work.
#[test]
fn a_follower_with_a_slow_disk_keeps_up_under_the_default_heartbeat() {
    let old_defaults = ["--heartbeat-ms", "50", "--election-timeout-min-ms", "150", "--election-timeout-max-ms", "300"];
    let mut abandoned = Vec::new();
    for flags in [&[][..], &old_defaults[..]] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::start(dir.path(), 3, flags);
        let leader = c.wait_leader(Duration::from_secs(10));
        let slow = (leader + 1) % 3;
        c.nodes[slow].take().unwrap().kill();
        c.restart_env(slow, &[("ROSTER_FAILPOINT_DELAY", "log_append_before:60")]);
        c.node(slow).wait_ready(Duration::from_secs(20));
        // Appends the leader abandoned, to the slow follower and to the others.
        let timeouts = || -> (u64, u64) {
            let metrics = common::secure().admin(Duration::from_secs(5)).get(c.node(leader).url("/metrics")).send().unwrap().text().unwrap();
            assert!(metrics.contains("# TYPE roster_raft_append_timeouts_total counter"), "{metrics}");
            let slow_label = format!("roster_raft_append_timeouts_total{{follower=\"{}\"}} ", slow + 1);
            let (mut to_slow, mut to_others) = (0, 0);
            for line in metrics.lines().filter(|l| l.starts_with("roster_raft_append_timeouts_total{")) {
                let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                if line.starts_with(&slow_label) { to_slow += n } else { to_others += n }
            }
            (to_slow, to_others)
        };
        let before = timeouts();
        let api = Api::new(c.node(leader));
        for i in 0..60 {
            let body = json!({"changes": [{"add_server": {"name": format!("rt{i}"), "host": "h", "port": 80}}]});
            let (status, answer) = api.post("/v1/commands", body, &[]);
            assert_eq!(status, 200, "{answer}");
            // Spread over about 1.5 s: each append to the slow follower carries a few writes.
            std::thread::sleep(Duration::from_millis(20));
        }
        // The slow follower holds every write.
        let revision = Api::new(c.node(leader)).digest().0;
        let started = Instant::now();
        while Api::new(c.node(slow)).get("/v1/state/digest?consistency=local")["revision"].as_u64().unwrap() < revision {
            assert!(started.elapsed() < Duration::from_secs(20), "the slow follower did not catch up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let after = timeouts();
        abandoned.push(after.0 - before.0);
        if flags.is_empty() {
            assert!(after.1 - before.1 <= 3, "the default heartbeat abandoned {} appends to the follower with a normal disk", after.1 - before.1);
        }
        assert_eq!(c.wait_leader(Duration::from_secs(5)), leader, "the leader changed");
    }
    eprintln!("appends abandoned during 60 writes with a 60 ms follower: {} with the defaults, {} with a 50 ms heartbeat", abandoned[0], abandoned[1]);
    assert!(abandoned[0] <= 3, "the default heartbeat abandoned {} appends to a follower whose appends take 60 ms", abandoned[0]);
    assert!(abandoned[1] >= 8, "a 50 ms heartbeat abandoned only {} appends to a follower whose appends take 60 ms", abandoned[1]);
}
