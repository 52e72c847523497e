//! Agents against a real 3-node cluster: deployment, failover between nodes, local fallback,
//! failure reports.

mod common;

use std::time::{Duration, Instant};

use common::{write_any, AgentProcess, Api, Cluster};
use serde_json::{json, Value};

/// Applies changes through any node; returns the revision.
fn apply(cluster: &Cluster, changes: Value) -> u64 {
    let eps: Vec<String> = cluster.running().into_iter().map(|i| cluster.addrs[i].clone()).collect();
    let key = format!("t-{}", rand_key());
    let (s, v) = write_any(&eps, "/v1/commands", &json!({ "changes": changes }), &key).expect("write");
    assert_eq!(s, 200, "{v}");
    v["committed"]["revision"].as_u64().unwrap()
}

fn rand_key() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Waits until the cluster lists `ids` as registered agents.
fn wait_registered(cluster: &Cluster, ids: &[&str]) {
    let started = Instant::now();
    loop {
        let v = Api::new(cluster.node(cluster.running()[0])).get("/v1/agents");
        let have: Vec<&str> = v["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
        if ids.iter().all(|i| have.contains(i)) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "agents not registered: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Servers rt1..rt3, clusters eu and us, agents placed, billing configured in both clusters.
fn setup(cluster: &Cluster, eu: &[&str], us: &[&str]) -> u64 {
    let mut changes = vec![
        json!({"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 80}}),
        json!({"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 80}}),
        json!({"add_server": {"name": "rt3", "host": "10.0.0.3", "port": 80}}),
        json!({"create_cluster": {"name": "eu"}}),
        json!({"create_cluster": {"name": "us"}}),
        json!({"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt1", "rt2"]}}),
        json!({"set_servers": {"task": "billing", "cluster": "us", "servers": ["rt3"]}}),
    ];
    for a in eu {
        changes.push(json!({"add_agent_to_cluster": {"cluster": "eu", "agent": a}}));
    }
    for a in us {
        changes.push(json!({"add_agent_to_cluster": {"cluster": "us", "agent": a}}));
    }
    apply(cluster, Value::Array(changes))
}

/// A 3-node cluster with agent a1 in cluster eu, after the agent deployed the setup; returns
/// the agent's status at that point too.
/// A 3-node cluster (with `extra` flags) and agents a1 and a2 in eu, both at the setup revision.
fn two_agents_in_eu(dir: &std::path::Path, extra: &[&str]) -> (Cluster, AgentProcess, AgentProcess) {
    let cluster = Cluster::start(&dir.join("c"), 3, extra);
    let eps = cluster.endpoints();
    let a1 = AgentProcess::start("a1", &eps, &dir.join("a1"));
    let a2 = AgentProcess::start("a2", &eps, &dir.join("a2"));
    wait_registered(&cluster, &["a1", "a2"]);
    let rev = setup(&cluster, &["a1", "a2"], &[]);
    a1.wait_revision(rev, Duration::from_secs(20));
    a2.wait_revision(rev, Duration::from_secs(20));
    (cluster, a1, a2)
}

fn one_agent_in_eu(dir: &std::path::Path) -> (Cluster, AgentProcess, Value) {
    let cluster = Cluster::start(&dir.join("c"), 3, &[]);
    let a1 = AgentProcess::start("a1", &cluster.endpoints(), &dir.join("a1"));
    wait_registered(&cluster, &["a1"]);
    let rev = setup(&cluster, &["a1"], &[]);
    let st = a1.wait_revision(rev, Duration::from_secs(20));
    (cluster, a1, st)
}

#[test]
fn a_change_deploys_to_the_affected_agents_only() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("c"), 3, &[]);
    let eps = cluster.endpoints();
    let a1 = AgentProcess::start("a1", &eps, &dir.path().join("a1"));
    let a2 = AgentProcess::start("a2", &eps, &dir.path().join("a2"));
    wait_registered(&cluster, &["a1", "a2"]);
    let rev = setup(&cluster, &["a1"], &["a2"]);
    a1.wait_revision(rev, Duration::from_secs(20));
    let a2_before = a2.wait_revision(rev, Duration::from_secs(20));
    assert_eq!(a1.resolve("billing").1["server"], "rt1");
    assert_eq!(a2.resolve("billing").1["server"], "rt3");

    let rev2 = apply(&cluster, json!([{"move_server": {"task": "billing", "cluster": "eu", "server": "rt2", "direction": "up"}}]));
    let st = a1.wait_revision(rev2, Duration::from_secs(20));
    assert_eq!(st["revision"], rev2);
    assert_eq!(a1.resolve("billing").1["server"], "rt2");
    // The agent of the other cluster was not woken.
    std::thread::sleep(Duration::from_millis(500));
    let a2_after = a2.status();
    assert_eq!(a2_after["updates_received"], a2_before["updates_received"], "{a2_after}");
    assert_eq!(a2_after["revision"], a2_before["revision"]);

    // Deployment status, from any node.
    let started = Instant::now();
    loop {
        let v = Api::new(cluster.node(2)).get("/v1/agents");
        let a1s = v["agents"].as_array().unwrap().iter().find(|a| a["id"] == "a1").unwrap().clone();
        let a2s = v["agents"].as_array().unwrap().iter().find(|a| a["id"] == "a2").unwrap().clone();
        if a1s["deployed_revision"] == rev2 {
            assert_eq!(a1s["lag"], 0, "{v}");
            assert_eq!(a1s["clusters"], json!(["eu"]));
            assert!(a1s["last_contact_ms"].as_u64().is_some());
            assert_eq!(a2s["lag"], 0, "an unaffected agent is not behind: {v}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The agents list in pages, and by cluster.
    let api = Api::new(cluster.node(2));
    let ids = |v: &Value| v["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let first = api.get("/v1/agents?limit=1");
    assert_eq!((ids(&first), &first["next"]), (vec!["a1".to_string()], &json!("a1")), "{first}");
    let second = api.get("/v1/agents?limit=1&after=a1");
    assert_eq!((ids(&second), &second["next"]), (vec!["a2".to_string()], &Value::Null), "{second}");
    assert_eq!(ids(&api.get("/v1/agents?cluster=us")), ["a2"]);
    let (ok, out, err) = common::ctl(&cluster.endpoints(), &["agents", "list"]);
    assert!(ok && out.contains("a1") && out.contains("a2"), "{out}{err}");
}

#[test]
fn an_agent_moves_to_another_node_when_its_node_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, a1, st) = one_agent_in_eu(dir.path());
    let watched = st["endpoint"].as_str().unwrap().to_string();
    let idx = cluster.addrs.iter().position(|a| *a == watched).unwrap();
    cluster.nodes[idx].as_mut().unwrap().kill();
    cluster.nodes[idx] = None;
    cluster.wait_leader(Duration::from_secs(20));
    let rev2 = apply(&cluster, json!([{"set_load_balancing": {"task": "billing", "cluster": "eu", "enabled": true}}]));
    let rev3 = apply(&cluster, json!([{"disable_server": {"name": "rt1"}}]));
    let st = a1.wait_revision(rev3, Duration::from_secs(30));
    assert_ne!(st["endpoint"].as_str().unwrap(), watched);
    assert!(rev3 > rev2);
    // The deployed file holds the cluster's current configuration for the agent.
    let deployed: Value = serde_json::from_slice(&std::fs::read(dir.path().join("a1/deployed.json")).unwrap()).unwrap();
    let billing = &deployed["tasks"]["billing"];
    assert_eq!(billing["load_balancing"], true);
    assert_eq!(billing["servers"][0]["status"], "disabled");
    assert_eq!(a1.resolve("billing").1["server"], "rt2");
}

#[test]
fn without_the_cluster_the_agent_serves_its_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&dir.path().join("c"), 3, &[]);
    let state = dir.path().join("a1");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("local.json"),
        serde_json::to_vec(&json!({"tasks": {
            "reports": {"servers": [{"name": "local1", "url": "http://127.0.0.1:9/"}]},
            "billing": {"servers": [{"name": "localb", "url": "http://127.0.0.1:10/"}]}
        }}))
        .unwrap(),
    )
    .unwrap();
    let mut a1 = AgentProcess::start("a1", &cluster.endpoints(), &state);
    wait_registered(&cluster, &["a1"]);
    let rev = setup(&cluster, &["a1"], &[]);
    a1.wait_revision(rev, Duration::from_secs(20));
    for i in 0..3 {
        cluster.nodes[i].as_mut().unwrap().kill();
        cluster.nodes[i] = None;
    }
    let check = |a: &AgentProcess, billing_source: &str| {
        let (s, v) = a.resolve("billing");
        assert_eq!(s, 200, "{v}");
        // The cluster configures billing: the local file's entry for it is never used.
        assert_eq!(v["server"], "rt1");
        assert_eq!(v["source"], billing_source);
        let (s, v) = a.resolve("reports");
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["server"], "local1");
        assert_eq!(v["source"], "local");
        let (s, _) = a.resolve("unknown");
        assert_eq!(s, 404);
    };
    check(&a1, "cluster");
    // Restarted with the cluster down: it serves the last deployed file.
    a1.kill();
    let mut a1 = AgentProcess::start("a1", &cluster.endpoints(), &state);
    check(&a1, "cluster-cache");
    assert_eq!(a1.status()["revision"], rev);

    // No agent at all: `roster resolve` reads the state dir itself, deployed file first.
    let agent_addr = a1.addr.clone();
    a1.kill();
    let resolve = |task: &str| {
        let out = std::process::Command::new(common::roster_bin())
            .args(["resolve", task, "--agent", &agent_addr, "--state-dir"])
            .arg(&state)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, out, err) = resolve("billing");
    assert!(ok && out.trim() == "http://10.0.0.1:80/" && err.contains("deployed.json"), "{out}{err}");
    let (ok, out, err) = resolve("reports");
    assert!(ok && out.trim() == "http://127.0.0.1:9/" && err.contains("local.json"), "{out}{err}");
    let (ok, _, err) = resolve("unknown");
    assert!(!ok && err.contains("configures no task unknown"), "{err}");
}

#[test]
fn a_reported_failure_marks_the_server_failed_on_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, a1, a2) = two_agents_in_eu(dir.path(), &[]);
    assert_eq!(a1.resolve("billing").1["server"], "rt1");

    a1.report_failure("billing", "rt1");
    // At once on the reporting agent.
    assert_eq!(a1.resolve("billing").1["server"], "rt2");
    // Then on every agent, through the cluster.
    let api = Api::new(cluster.node(0));
    let started = Instant::now();
    while api.get("/v1/servers/rt1")["status"] != "failed" {
        assert!(started.elapsed() < Duration::from_secs(20), "rt1 was not marked failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed_rev = api.digest().0;
    a2.wait_revision(failed_rev, Duration::from_secs(20));
    assert_eq!(a2.resolve("billing").1["server"], "rt2");

    // An operator re-enables it: both agents use it again.
    let (s, v) = api.request(reqwest::Method::POST, "/v1/servers/rt1/enable", None, &[]);
    assert_eq!(s, 200, "{v}");
    let rev = v["committed"]["revision"].as_u64().unwrap();
    a1.wait_revision(rev, Duration::from_secs(20));
    a2.wait_revision(rev, Duration::from_secs(20));
    assert_eq!(a1.resolve("billing").1["server"], "rt1");
    assert_eq!(a2.resolve("billing").1["server"], "rt1");
}

#[test]
fn the_event_log_records_operations_with_levels_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, a1, _) = one_agent_in_eu(dir.path());
    a1.report_failure("billing", "rt1");
    let api = Api::new(cluster.node(1));
    let started = Instant::now();
    let events = loop {
        let v = api.get("/v1/events?limit=100");
        let kinds: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        if kinds.contains(&"server_failed") && kinds.contains(&"connection_failed") {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["leader_elected", "agent_registered", "connection_failed", "server_failed"] {
        assert!(kinds.contains(&k), "no {k} in {events}");
    }
    // Level filter: errors only.
    let errors = api.get("/v1/events?level=error");
    assert!(errors.as_array().unwrap().iter().all(|e| e["level"] == "error"), "{errors}");
    assert!(!errors.as_array().unwrap().is_empty());
    // Settings: warnings and above, keep 2.
    let (s, v) = api.request(reqwest::Method::PUT, "/v1/events/settings", Some(json!({"min_level": "warning", "retention": 2})), &[]);
    assert_eq!(s, 200, "{v}");
    apply(&cluster, json!([{"enable_server": {"name": "rt1"}}])); // an info event: not kept
    a1.report_failure("billing", "rt2");
    let started = Instant::now();
    loop {
        let v = api.get("/v1/events");
        let list = v.as_array().unwrap();
        if list.len() == 2 && list[0]["kind"] == "server_failed" {
            assert!(list.iter().all(|e| e["level"] != "info"), "{v}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (s, _) = api.request(reqwest::Method::PUT, "/v1/events/settings", Some(json!({"min_level": "info", "retention": 0})), &[]);
    assert_eq!(s, 400);
}

/// With probing configured, a failed server that accepts connections again is re-enabled
/// after enough healthy probes; one that does not stays failed.
#[test]
fn failed_servers_recover_after_healthy_probes_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        &dir.path().join("c"),
        3,
        &["--recover-after-probes", "3", "--probe-interval-ms", "50", "--probe-hold-down-ms", "200"],
    );
    // rt-up listens on loopback; rt-down's port has no listener.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = listener.local_addr().unwrap().port();
    let down_port = common::free_port();
    apply(&cluster, json!([
        {"add_server": {"name": "rt-up", "host": "127.0.0.1", "port": up_port}},
        {"add_server": {"name": "rt-down", "host": "127.0.0.1", "port": down_port}},
    ]));
    apply(&cluster, json!([{"mark_server_failed": {"name": "rt-up"}}, {"mark_server_failed": {"name": "rt-down"}}]));
    let api = Api::new(cluster.node(0));
    let started = Instant::now();
    while api.get("/v1/servers/rt-up")["status"] != "enabled" {
        assert!(started.elapsed() < Duration::from_secs(20), "rt-up was not re-enabled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(api.get("/v1/servers/rt-down")["status"], "failed");
    let history = api.get("/v1/history?entity=server:rt-up");
    let last = history["records"].as_array().unwrap().last().unwrap().clone();
    assert!(last["actor"].as_str().unwrap().starts_with("prober:"), "{last}");
    drop(listener);
}

/// A node that is stopped while agents hold watches on it ends those watches at once and
/// exits cleanly, instead of waiting for the watches to time out.
#[test]
fn stopping_a_node_ends_held_watches() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = common::NodeProcess::single(&dir.path().join("n1"));
    let url = node.url("/v1/agents/a1/config?after=0&wait_ms=60000");
    // First contact registers a1 and answers at once; the second watch is held.
    let client = common::secure().client(Some(common::secure().token("agent-file-a1")), Duration::from_secs(90));
    let first = client.get(&url).send().unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let revision = first.json::<serde_json::Value>().unwrap()["revision"].as_u64().unwrap();
    let held_url = node.url(&format!("/v1/agents/a1/config?after={revision}&wait_ms=60000"));
    let watcher = std::thread::spawn(move || {
        let started = Instant::now();
        let status = client.get(&held_url).send().map(|r| r.status().as_u16()).ok();
        (status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.stop(), "the node did not exit by itself after SIGTERM");
    let (status, held_for) = watcher.join().unwrap();
    assert!(held_for < Duration::from_secs(50), "the watch was held for {held_for:?}, until its timeout");
    assert!(status.is_none() || status == Some(204), "the held watch ended with {status:?}");
}

/// Security (issue 18, items 1 and 2): an agent token can mark failed only a server of that
/// agent's own configuration of the task; the agent's local endpoint wants the agent's client
/// secret and a loopback `Host`, and refuses made-up names; nothing refused changes anything.
#[test]
fn failure_reports_are_limited_to_the_agents_own_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // a1 is in eu: billing eu = [rt1, rt2]; rt3 serves billing only in us.
    let (cluster, a1, _) = one_agent_in_eu(dir.path());
    let api = Api::new(cluster.node(0));
    let before = api.digest();
    let events_before = api.get("/v1/events?limit=1000").as_array().unwrap().len();

    // Through the cluster API with a1's own token.
    let token = std::fs::read_to_string(a1.state_dir.join("agent.token")).unwrap();
    let client = common::secure().client(Some(token.trim()), Duration::from_secs(10));
    let url = |ep: &str| format!("{}/v1/agents/a1/failures", common::base(ep));
    for (task, server) in [("billing", "rt3"), ("payroll", "rt1"), ("billing", "nope")] {
        let r = client.post(url(&cluster.addrs[1])).json(&json!({"task": task, "server": server})).send().unwrap();
        assert_eq!(r.status().as_u16(), 404, "{task}/{server} was accepted: {}", r.text().unwrap_or_default());
    }
    assert_eq!(api.get("/v1/servers/rt3")["status"], "enabled");
    assert_eq!(api.digest(), before, "a refused report changed the state");
    assert_eq!(api.get("/v1/events?limit=1000").as_array().unwrap().len(), events_before, "a refused report recorded an event");

    // The local endpoint: the secret is required, a foreign Host is refused, names are checked.
    let secret = a1.client_secret();
    assert_eq!(a1.report_failure_raw("billing", "rt1", None, None).0, 401);
    assert_eq!(a1.report_failure_raw("billing", "rt1", Some("not-the-secret"), None).0, 401);
    assert_eq!(a1.report_failure_raw("billing", "rt1", Some(&secret), Some("evil.example")).0, 403);
    assert_eq!(a1.report_failure_raw("billing", "rt3", Some(&secret), None).0, 404);
    assert_eq!(a1.report_failure_raw("billing", "made-up", Some(&secret), None).0, 404);
    assert_eq!(a1.report_failure_raw("nope", "rt1", Some(&secret), None).0, 404);
    assert_eq!(a1.status()["locally_failed"], json!([]), "a refused report marked something locally");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.digest(), before, "a refused local report changed the cluster");
    // The secret file is the agent's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a1.state_dir.join("client.secret")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "client.secret is readable by others: {mode:o}");

    // A genuine report works, once: a repeat writes nothing more.
    let (s, v) = a1.report_failure_raw("billing", "rt1", Some(&secret), Some("localhost:1"));
    assert_eq!(s, 200, "{v}");
    let started = Instant::now();
    while api.get("/v1/servers/rt1")["status"] != "failed" {
        assert!(started.elapsed() < Duration::from_secs(20), "rt1 was not marked failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = api.digest().0;
    let (s, v) = a1.report_failure_raw("billing", "rt1", Some(&secret), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["reported"], false, "a repeat was sent to the cluster: {v}");
    let r = client.post(url(&cluster.addrs[2])).json(&json!({"task": "billing", "server": "rt1"})).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().unwrap()["marked_failed"], false);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.digest().0, after, "a report about an already failed server made a revision");
}

/// Apply, then wake: an agent woken with revision N can read history N on the same node at
/// once (agents are woken only after the batch holding the revision is written).
#[test]
fn a_watcher_woken_at_a_revision_can_read_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("c"), 3, &[]);
    apply(&cluster, json!([{"register_agent": {"id": "a1"}}]));
    setup(&cluster, &["a1"], &[]);
    let node = cluster.addrs[(cluster.wait_leader(Duration::from_secs(10)) + 1) % 3].clone();
    let agent = common::secure().client(Some(common::secure().token("agent-file-a1")), Duration::from_secs(30));
    let admin = common::secure().admin(Duration::from_secs(10));
    let writes = 40;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..writes {
                apply(&cluster, json!([{"set_load_balancing": {"task": "billing", "cluster": "eu", "enabled": i % 2 == 0}}]));
            }
        });
        let mut after = 0u64;
        let mut woken = 0;
        let started = Instant::now();
        while woken < writes && started.elapsed() < Duration::from_secs(60) {
            let r = agent.get(format!("{}/v1/agents/a1/config?after={after}&wait_ms=5000", common::base(&node))).send().unwrap();
            if r.status().as_u16() != 200 {
                continue;
            }
            let v: Value = r.json().unwrap();
            let n = v["revision"].as_u64().unwrap();
            let h = admin.get(format!("{}/v1/history/{n}?consistency=local", common::base(&node))).send().unwrap();
            assert_eq!(h.status().as_u16(), 200, "woken at revision {n}, but history {n} is not readable on that node");
            after = n;
            woken += 1;
        }
        assert!(woken > 0, "the watcher was never woken");
    });
}

/// Agent lifecycle: a connected agent is never stale; one never seen goes stale, and with
/// --forget-agents-after-secs the leader removes it as a recorded revision; DELETE forgets an
/// agent (out of its clusters), and a running agent then registers again by itself.
#[test]
fn unseen_agents_go_stale_and_are_forgotten_and_removed_agents_can_return() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, &["--agent-stale-after-secs", "1", "--forget-agents-after-secs", "2"]);
    let live = AgentProcess::start("live1", &cluster.endpoints(), &dir.path().join("live1"));
    wait_registered(&cluster, &["live1"]);
    apply(&cluster, json!([
        {"create_cluster": {"name": "eu"}},
        {"register_agent": {"id": "ghost"}},
        {"add_agent_to_cluster": {"cluster": "eu", "agent": "ghost"}},
        {"add_agent_to_cluster": {"cluster": "eu", "agent": "live1"}}
    ]));
    let api = Api::new(cluster.node(cluster.running()[0]));
    let row = |id: &str| -> Option<Value> {
        api.get("/v1/agents")["agents"].as_array().unwrap().iter().find(|a| a["id"] == id).cloned()
    };
    // Stale after a second, forgotten after two (and once the leader has been up that long).
    let started = Instant::now();
    let mut saw_stale = false;
    while row("ghost").is_some() {
        saw_stale |= row("ghost").is_some_and(|g| g["stale"] == json!(true));
        let l = row("live1").unwrap();
        assert!(l["connected"] == json!(true) || l["stale"] == json!(false), "a connected agent went stale: {l}");
        assert!(started.elapsed() < Duration::from_secs(20), "ghost was not forgotten: {:?}", row("ghost"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(saw_stale, "ghost was never shown as stale before it was forgotten");
    assert!(row("live1").is_some(), "the connected agent was forgotten");
    let eu = api.get("/v1/agent-clusters/eu");
    assert!(!eu.to_string().contains("ghost") && eu.to_string().contains("live1"), "{eu}");
    let history = api.get("/v1/history?entity=agent:ghost");
    let last = history["records"].as_array().unwrap().last().unwrap().clone();
    assert!(last["actor"].as_str().unwrap().starts_with("node:") && last.to_string().contains("agent_removed"), "{last}");

    // Removed by hand: gone from its cluster, then back (registered again, in no cluster) as
    // soon as the running agent watches again.
    let (s, v) = api.request(reqwest::Method::DELETE, "/v1/agents/live1", None, &[]);
    assert_eq!(s, 200, "{v}");
    assert!(!api.get("/v1/agent-clusters/eu").to_string().contains("live1"));
    wait_registered(&cluster, &["live1"]);
    assert!(row("live1").unwrap()["clusters"].as_array().unwrap().is_empty());
    let (s, v) = api.request(reqwest::Method::DELETE, "/v1/agents/nobody", None, &[]);
    assert_eq!(s, 404, "{v}");
    let (ok, _, err) = common::ctl(&cluster.endpoints(), &["agents", "remove", "nobody"]);
    assert!(!ok && err.contains("nobody"), "{err}");
    drop(live);
}

/// With --fail-after-reports 2 a server becomes failed only once two distinct agents reported
/// it (a repeat by the same agent does not count); every report is in the event log, and
/// `agents list` shows who reported what.
#[test]
fn a_failure_policy_needs_reports_from_distinct_agents() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, a1, a2) = two_agents_in_eu(dir.path(), &["--fail-after-reports", "2", "--fail-report-window-secs", "120"]);
    let api = Api::new(cluster.node(0));
    let reports = |api: &Api| api.get("/v1/events?kind=connection_failed").as_array().map_or(0, Vec::len);

    a1.report_failure("billing", "rt1");
    let started = Instant::now();
    while reports(&api) < 1 {
        assert!(started.elapsed() < Duration::from_secs(20), "the report was not recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The reporting agent stops using rt1 at once; the cluster waits for a second agent.
    assert_eq!(a1.resolve("billing").1["server"], "rt2");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api.get("/v1/servers/rt1")["status"], "enabled", "one agent's report marked rt1 failed");
    let row = |id: &str| api.get("/v1/agents")["agents"].as_array().unwrap().iter().find(|a| a["id"] == id).cloned().unwrap();
    assert_eq!(row("a1")["reported"], json!(["rt1"]));

    a2.report_failure("billing", "rt1");
    let started = Instant::now();
    while api.get("/v1/servers/rt1")["status"] != "failed" {
        assert!(started.elapsed() < Duration::from_secs(20), "two agents' reports did not mark rt1 failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = api.get("/v1/events?kind=connection_failed");
    let actors: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert!(actors.contains(&"agent:a1") && actors.contains(&"agent:a2"), "{events}");
    assert!(events.to_string().contains("for task billing"), "{events}");
}

/// Priority tiers and weights, set through the API and the CLI, reach the agent: with load
/// balancing the first tier's servers share resolutions by weight (exactly, over whole
/// rounds), the second tier is used only when the first has no usable server, and a bad
/// weighting is refused without a new revision.
#[test]
fn weighted_tiers_resolve_by_weight_and_fall_back_by_tier() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, a1, _) = one_agent_in_eu(dir.path());
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let api = Api::new(cluster.node(leader));

    // A member that cannot say which data format it runs might be of an earlier build that
    // cannot read a weighting: it is refused (409) and nothing is recorded, until it is back.
    let other = (0..3).find(|i| *i != leader).unwrap();
    cluster.nodes[other].take().unwrap().kill();
    let before = api.get("/v1/state/digest")["revision"].clone();
    let (status, v) = api.request(reqwest::Method::PATCH, "/v1/tasks/billing/configs/eu/servers/rt2", Some(json!({"weight": 2})), &[]);
    assert_eq!(status, 409, "{v}");
    assert!(v.to_string().contains("did not report its data format"), "{v}");
    assert_eq!(api.get("/v1/state/digest")["revision"], before);
    cluster.restart(other);
    cluster.node(other).wait_ready(Duration::from_secs(20));

    // rt3 joins the list in tier 2 through the CLI.
    let (ok, out, err) = common::ctl(&cluster.endpoints(), &["tasks", "add-server", "billing", "--cluster", "eu", "rt3", "--priority", "2"]);
    assert!(ok, "{out}{err}");
    // rt1 gets weight 3 through the API; load balancing on.
    let (status, v) = api.request(
        reqwest::Method::PATCH,
        "/v1/tasks/billing/configs/eu/servers/rt1",
        Some(json!({"weight": 3})),
        &[("idempotency-key", "w1")],
    );
    assert_eq!(status, 200, "{v}");
    // A weight-only change shows in the diff of its revision.
    let weighted = v["committed"]["revision"].as_u64().unwrap();
    let diff = api.get(&format!("/v1/diff?from={}&to={weighted}", weighted - 1));
    assert!(diff.to_string().contains(r#""rt1":{"priority":1,"weight":3}"#), "{diff}");
    let rev = apply(&cluster, json!([{"set_load_balancing": {"task": "billing", "cluster": "eu", "enabled": true}}]));
    a1.wait_revision(rev, Duration::from_secs(20));

    let config = api.get("/v1/tasks/billing/configs/eu");
    let entries: Vec<(String, u64, u64)> = config["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["priority"].as_u64().unwrap(), s["weight"].as_u64().unwrap()))
        .collect();
    assert_eq!(entries, [("rt1".into(), 1, 3), ("rt2".into(), 1, 1), ("rt3".into(), 2, 1)], "{config}");
    let (ok, out, err) = common::ctl(&cluster.endpoints(), &["tasks", "get", "billing"]);
    assert!(ok && out.contains("rt1(enabled, weight 3)") && out.contains("rt3(enabled, tier 2)"), "{out}{err}");

    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..400 {
        let (status, v) = a1.resolve("billing");
        assert_eq!(status, 200, "{v}");
        *counts.entry(v["server"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(counts, [("rt1".to_string(), 300), ("rt2".to_string(), 100)].into_iter().collect(), "tier 1 shares by weight 3:1");

    // Tier 1 unusable: tier 2 serves.
    let rev = apply(&cluster, json!([{"disable_server": {"name": "rt1"}}, {"disable_server": {"name": "rt2"}}]));
    a1.wait_revision(rev, Duration::from_secs(20));
    assert_eq!(a1.resolve("billing").1["server"], "rt3");

    // Out of range or not in the list: refused by name, nothing recorded.
    let before = api.get("/v1/state/digest")["revision"].clone();
    for (body, fragment) in [
        (json!({"weight": 0}), "weight 0 is out of range"),
        (json!({"priority": 101}), "priority 101 is out of range"),
        (json!({}), "give a priority, a weight or both"),
        (json!({"weight": 2, "tier": 1}), "unknown field"),
    ] {
        let (status, v) = api.request(reqwest::Method::PATCH, "/v1/tasks/billing/configs/eu/servers/rt2", Some(body), &[]);
        assert_eq!(status, 400, "{v}");
        assert!(v.to_string().contains(fragment), "{v}");
    }
    let (status, v) = api.request(reqwest::Method::PATCH, "/v1/tasks/billing/configs/us/servers/rt1", Some(json!({"weight": 2})), &[]);
    assert_eq!(status, 404, "{v}");
    assert_eq!(api.get("/v1/state/digest")["revision"], before);
}

/// A task named as real models and NavMaps are (spaces, dots, brackets) works on every
/// surface: the CLI, the API (percent-encoded path), the agent's local endpoint and
/// `roster resolve`.
#[test]
fn task_names_with_spaces_and_punctuation_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, a1, _) = one_agent_in_eu(dir.path());
    let name = "Account Inquiry (CICS.v2)";
    let (ok, out, err) = common::ctl(&cluster.endpoints(), &["tasks", "set-servers", name, "--cluster", "eu", "rt2", "rt1"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = common::ctl(&cluster.endpoints(), &["tasks", "get", name]);
    assert!(ok && out.contains(name) && out.contains("rt2(enabled) > rt1(enabled)"), "{out}{err}");
    let api = Api::new(cluster.node(0));
    let v = api.get("/v1/tasks/Account%20Inquiry%20%28CICS.v2%29/configs/eu");
    assert_eq!(v["task"], name, "{v}");
    let revision = api.get("/v1/state/digest")["revision"].as_u64().unwrap();
    a1.wait_revision(revision, Duration::from_secs(20));
    let r = reqwest::blocking::get(format!("http://{}/resolve/Account%20Inquiry%20%28CICS.v2%29", a1.addr)).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().unwrap()["server"], "rt2");
    let out = std::process::Command::new(common::roster_bin()).args(["resolve", name, "--agent", &a1.addr]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("10.0.0.2"), "{out:?}");
    // A task nobody configures: the local file's default entry, written at the first run.
    let local: Value = serde_json::from_slice(&std::fs::read(dir.path().join("a1/local.json")).unwrap()).unwrap();
    assert_eq!(local["default"]["servers"][0]["url"], "http://localhost:6700/", "{local}");
    let (status, v) = a1.resolve("Payroll%20Batch");
    assert_eq!((status, &v["server"], &v["source"]), (200, &json!("localhost"), &json!("local-default")), "{v}");
    // Outside the documented set: refused by name, nothing recorded.
    let (ok, _, err) = common::ctl(&cluster.endpoints(), &["tasks", "create", "bad/name"]);
    assert!(!ok && err.contains("invalid task name"), "{err}");
    assert_eq!(api.get("/v1/state/digest")["revision"].as_u64().unwrap(), revision);
}

/// Deployment status survives restarting every node: the revision at which an agent's
/// configuration last changed stays what it was (it does not jump to the head), so an agent
/// that has it shows no lag; a later change moves it again.
#[test]
fn deployment_status_survives_restarting_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, a1, _) = one_agent_in_eu(dir.path());
    let configured = a1.status()["revision"].as_u64().unwrap();
    // Changes that do not touch a1's configuration.
    apply(&cluster, json!([{"create_cluster": {"name": "other1"}}]));
    let head = apply(&cluster, json!([{"create_cluster": {"name": "other2"}}]));
    let row = |cluster: &Cluster| -> Value {
        let v = Api::new(cluster.node(cluster.running()[0])).get("/v1/agents");
        v["agents"].as_array().unwrap().iter().find(|a| a["id"] == "a1").unwrap().clone()
    };
    let wait_row = |cluster: &Cluster, desired: u64| -> Value {
        let started = Instant::now();
        loop {
            let r = row(cluster);
            if r["desired_revision"] == desired && r["deployed_revision"].as_u64() >= Some(desired) {
                return r;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "waiting for desired revision {desired}: {r}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let before = wait_row(&cluster, configured);
    assert_eq!(before["lag"], 0, "{before}");
    for i in 0..3 {
        assert!(cluster.nodes[i].take().unwrap().stop());
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_leader(Duration::from_secs(20));
    assert_eq!(Api::new(cluster.node(0)).get("/v1/state/digest")["revision"], head);
    let after = wait_row(&cluster, configured);
    assert_eq!((&after["desired_revision"], &after["lag"]), (&json!(configured), &json!(0)), "{after}");
    // A change to its configuration moves it.
    let moved = apply(&cluster, json!([{"move_server": {"task": "billing", "cluster": "eu", "server": "rt2", "direction": "up"}}]));
    let r = wait_row(&cluster, moved);
    assert_eq!(r["lag"], 0, "{r}");
}
