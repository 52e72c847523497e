//! Learner nodes: members that replicate the log and serve agents, reads and forwarded writes
//! without voting. 3 voters and 2 learners with the agents pointed at the learners only; a
//! learner is killed and its agents converge through the other one.

mod common;

use std::time::{Duration, Instant};

use common::{write_any, AgentProcess, Api, Cluster, NodeProcess};
use serde_json::{json, Value};

fn members(api: &Api) -> Vec<(u64, bool)> {
    let v = api.get("/v1/cluster");
    v["members"].as_array().unwrap().iter().map(|m| (m["id"].as_u64().unwrap(), m["voter"].as_bool().unwrap())).collect()
}

fn apply(endpoints: &[String], changes: Value, key: &str) -> u64 {
    let (s, v) = write_any(endpoints, "/v1/commands", &json!({ "changes": changes }), key).expect("write");
    assert_eq!(s, 200, "{v}");
    v["committed"]["revision"].as_u64().unwrap()
}

#[test]
fn learners_serve_agents_and_never_vote() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("voters"), 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let voters = cluster.addrs.clone();
    let admin = Api::new(cluster.node(leader));

    // Node 4 is started with --learner and added through the API without saying so (added at
    // once, while it may still be starting); node 5 is added with `ctl cluster add-node
    // --learner`. Both stay learners.
    let mut learners = Vec::new();
    for (id, flag) in [(4u64, true), (5, false)] {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let extra: &[&str] = if flag { &["--join", "--learner"] } else { &["--join"] };
        let node = NodeProcess::start_with(&dir.path().join(format!("node-{id}")), id, &addr, "", extra);
        if flag {
            let (s, v) = admin.post("/v1/cluster/nodes", json!({"id": id, "addr": addr}), &[]);
            assert_eq!((s, v["learner"].as_bool()), (200, Some(true)), "adding learner {id}: {v}");
        } else {
            let (ok, out, err) = common::ctl(&cluster.addrs[leader], &["cluster", "add-node", &id.to_string(), &addr, "--learner"]);
            assert!(ok && out.contains("as a learner"), "ctl add-node --learner: {out} {err}");
        }
        learners.push((node, addr));
    }
    let m = members(&admin);
    assert_eq!(m, vec![(1, true), (2, true), (3, true), (4, false), (5, false)], "{m:?}");
    // Leadership never goes to a learner.
    let (s, v) = admin.post("/v1/cluster/leader", json!({"node": 4}), &[]);
    assert_eq!(s, 409, "a learner cannot lead: {v}");

    // A write through a learner is forwarded; the learner serves linearizable reads.
    let l4 = vec![learners[0].1.clone()];
    apply(&l4, json!([{"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 80}}, {"create_cluster": {"name": "eu"}}]), "w1");
    let (s, v) = Api::at(&learners[1].1).request(reqwest::Method::GET, "/v1/servers/rt1", None, &[]);
    assert_eq!(s, 200, "{v}");

    // Four agents, pointed at the learners only: two prefer node 4, two node 5.
    let (a, b) = (learners[0].1.clone(), learners[1].1.clone());
    let ids = ["ag1", "ag2", "ag3", "ag4"];
    let agents: Vec<AgentProcess> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let eps = if i < 2 { format!("{a},{b}") } else { format!("{b},{a}") };
            AgentProcess::start(id, &eps, &dir.path().join(format!("agent-{id}")))
        })
        .collect();
    let mut changes: Vec<Value> = ids.iter().map(|id| json!({"add_agent_to_cluster": {"cluster": "eu", "agent": id}})).collect();
    changes.push(json!({"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt1"]}}));
    let rev = apply(&voters, Value::Array(changes), "w2");
    for ag in &agents {
        let st = ag.wait_revision(rev, Duration::from_secs(20));
        assert!(st["endpoint"].as_str().is_some_and(|e| e.contains(&a) || e.contains(&b)), "agents talk to learners only: {st}");
    }

    // The voters commit without the learners: a write while node 4 is down succeeds, and
    // every agent, node 4's included, deploys it through node 5.
    learners[0].0.kill();
    let rev = apply(&voters, json!([{"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 80}},
        {"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt2", "rt1"]}}]), "w3");
    for ag in &agents {
        let st = ag.wait_revision(rev, Duration::from_secs(30));
        assert!(st["endpoint"].as_str().is_some_and(|e| e.contains(&b)), "an agent is still on the dead learner: {st}");
        let (s, v) = ag.resolve("billing");
        assert_eq!((s, v["server"].as_str()), (200, Some("rt2")), "{v}");
    }
    // Cluster status shows the learners with their lag; the voters still lead.
    let st = admin.get("/v1/cluster");
    assert!(st["leader"].as_u64().is_some_and(|l| l <= 3), "{st}");
    assert!(st["follower_lag"].get("5").is_some(), "the leader reports the learner's lag: {st}");
    // A learner knows no lag itself: it shows the leader's, for every member.
    let st = Api::at(&learners[1].1).get("/v1/cluster");
    assert_eq!(st["state"], "Learner", "{st}");
    for id in 1..=5 {
        assert!(st["follower_lag"].get(id.to_string()).is_some_and(Value::is_u64), "a learner shows no lag for node {id}: {st}");
    }

    // A learner is removed like any member; the cluster goes on.
    let (s, v) = admin.request(reqwest::Method::DELETE, "/v1/cluster/nodes/4", None, &[]);
    assert_eq!(s, 200, "{v}");
    let started = Instant::now();
    while members(&admin).iter().any(|(id, _)| *id == 4) {
        assert!(started.elapsed() < Duration::from_secs(10), "node 4 is still a member");
        std::thread::sleep(Duration::from_millis(50));
    }
    apply(&voters, json!([{"add_server": {"name": "rt3", "host": "10.0.0.3", "port": 80}}]), "w4");
    assert_eq!(cluster.running().len(), 3);
}
