//! Declarative configuration through real processes: `ctl export-config` on one 3-node
//! cluster, `plan` and `apply -f` on an empty one (one revision, refused when the cluster
//! moved since the plan), the export reads back byte for byte, `--prune` deletes what the
//! document leaves out, and a bad document changes nothing.

mod common;

use std::time::Duration;

use common::{ctl, write_any, Api, Cluster};
use serde_json::json;

fn revision(api: &Api) -> u64 {
    api.get("/v1/state/digest")["revision"].as_u64().unwrap()
}

#[test]
fn a_configuration_moves_between_clusters_as_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cluster::start(&dir.path().join("a"), 3, &[]);
    let changes = json!({"changes": [
        {"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 6700}},
        {"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 6701, "pool": "blue", "scheme": "https"}},
        {"add_server": {"name": "rt3", "host": "10.0.0.3", "port": 6700}},
        {"disable_server": {"name": "rt3"}},
        {"create_cluster": {"name": "east"}},
        {"create_cluster": {"name": "west"}},
        {"register_agent": {"id": "host-a"}},
        {"add_agent_to_cluster": {"cluster": "east", "agent": "host-a"}},
        {"set_servers": {"task": "payroll", "cluster": "east", "servers": ["rt2", "rt1"]}},
        {"set_load_balancing": {"task": "payroll", "cluster": "east", "enabled": true}},
        {"set_server_weight": {"task": "payroll", "cluster": "east", "server": "rt2", "weight": 3}},
        {"set_server_weight": {"task": "payroll", "cluster": "east", "server": "rt1", "priority": 2}},
        {"set_servers": {"task": "payroll", "cluster": "west", "servers": ["rt3"]}},
        {"create_task": {"name": "reports"}}
    ]});
    assert!(matches!(write_any(&a.addrs, "/v1/commands", &changes, "seed"), Some((200, _))));
    let yaml = dir.path().join("roster.yaml");
    let (ok, out, err) = ctl(&a.endpoints(), &["export-config", "-o", yaml.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let exported = std::fs::read_to_string(&yaml).unwrap();
    assert!(exported.contains("rt2:") && exported.contains("load_balancing: true") && exported.contains("enabled: false"), "{exported}");
    assert!(exported.contains("weight: 3") && exported.contains("priority: 2"), "{exported}");

    // An empty cluster: plan, then apply as one revision.
    let b = Cluster::start(&dir.path().join("b"), 3, &[]);
    let leader = b.wait_leader(Duration::from_secs(10));
    let api = Api::new(b.node(leader));
    let before = revision(&api);
    let (ok, plan, err) = ctl(&b.endpoints(), &["plan", "-f", yaml.to_str().unwrap()]);
    assert!(ok, "{plan}{err}");
    assert!(plan.contains("add_server") && plan.contains(&format!("planned against revision {before}")), "{plan}");
    assert_eq!(revision(&api), before, "plan changed something");
    let expected = before.to_string();
    let (ok, out, err) = ctl(&b.endpoints(), &["--expected-revision", &expected, "apply", "-f", yaml.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("as revision {}", before + 1)), "{out}");
    assert_eq!(revision(&api), before + 1, "the document was not applied as one revision");
    let again = dir.path().join("again.yaml");
    let (ok, out, err) = ctl(&b.endpoints(), &["export-config", "-o", again.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), exported, "export → apply → export is not the same document");
    let (ok, out, _) = ctl(&b.endpoints(), &["plan", "-f", yaml.to_str().unwrap()]);
    assert!(ok && out.contains("no changes"), "{out}");

    // JSON works the same way.
    let json_doc = dir.path().join("roster.json");
    let (ok, _, err) = ctl(&b.endpoints(), &["export-config", "-o", json_doc.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, _) = ctl(&a.endpoints(), &["plan", "-f", json_doc.to_str().unwrap()]);
    assert!(ok && out.contains("no changes"), "{out}");

    // A plan made before someone else changed the cluster is refused, and changes nothing.
    let planned_at = revision(&api);
    let edited = exported.replace("10.0.0.1", "10.0.0.9");
    std::fs::write(&yaml, &edited).unwrap();
    let body = json!({"changes": [{"create_cluster": {"name": "north"}}]});
    assert!(matches!(write_any(&b.addrs, "/v1/commands", &body, "meanwhile"), Some((200, _))));
    let (ok, _, err) = ctl(&b.endpoints(), &["--expected-revision", &planned_at.to_string(), "apply", "-f", yaml.to_str().unwrap()]);
    assert!(!ok && err.contains("run plan again"), "{err}");
    assert_eq!(revision(&api), planned_at + 1);

    // --prune deletes what the document leaves out (the cluster made meanwhile).
    let (ok, plan, err) = ctl(&b.endpoints(), &["plan", "-f", yaml.to_str().unwrap(), "--prune"]);
    assert!(ok, "{err}");
    assert!(plan.contains("update_server") && plan.contains(r#"delete_cluster {"name":"north"}"#), "{plan}");
    let (ok, out, err) = ctl(&b.endpoints(), &["apply", "-f", yaml.to_str().unwrap(), "--prune"]);
    assert!(ok, "{out}{err}");
    let state = api.get("/v1/state");
    assert!(state["clusters"].get("north").is_none(), "{state}");
    let rt1 = state["servers"].as_array().unwrap().iter().find(|s| s["name"] == "rt1").unwrap().clone();
    assert_eq!(rt1["host"], "10.0.0.9");

    // A document naming a server it does not declare is refused by name; nothing changes.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "clusters: {east: {}}\ntasks: {payroll: {east: {servers: [rt404]}}}\n").unwrap();
    let at = revision(&api);
    let (ok, _, err) = ctl(&b.endpoints(), &["apply", "-f", bad.to_str().unwrap(), "--prune"]);
    assert!(!ok && err.contains("server rt404 is not declared"), "{err}");
    std::fs::write(&bad, "servers: {rt1: {host: h, port: 1, colour: red}}\n").unwrap();
    let (ok, _, err) = ctl(&b.endpoints(), &["plan", "-f", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("not a configuration document"), "{err}");
    assert_eq!(revision(&api), at);
}
