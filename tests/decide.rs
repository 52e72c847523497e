//! `decide` on its own, table-driven: every `Change` variant accepted (with the events it
//! produces) and every rejection reason (with its code), against one base state. No process,
//! no storage: the pure core.

use roster::domain::{decide, Change, ClusterName, Event, RejectCode, State, TaskName};
use serde_json::{json, Value};

/// rt1, rt2 (enabled), rt3 (disabled); agent a1 in cluster eu; agent a2 unplaced; cluster us
/// empty; billing eu = [rt1, rt2].
fn base() -> State {
    let mut s = State::default();
    let setup = changes(json!([
        {"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 80}},
        {"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 80}},
        {"add_server": {"name": "rt3", "host": "10.0.0.3", "port": 80}},
        {"disable_server": {"name": "rt3"}},
        {"register_agent": {"id": "a1"}},
        {"register_agent": {"id": "a2"}},
        {"create_cluster": {"name": "eu"}},
        {"create_cluster": {"name": "us"}},
        {"add_agent_to_cluster": {"cluster": "eu", "agent": "a1"}},
        {"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt1", "rt2"]}}
    ]));
    for e in decide(&s, &setup, 1).expect("the base state is valid") {
        s.apply_event(&e);
    }
    s
}

fn changes(v: Value) -> Vec<Change> {
    serde_json::from_value(v).expect("test changes parse")
}

/// The variant names of `events`, in order.
fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match serde_json::to_value(e).unwrap() {
            Value::Object(m) => m.keys().next().unwrap().clone(),
            Value::String(s) => s,
            other => panic!("unexpected event form {other}"),
        })
        .collect()
}

enum Expect {
    Events(&'static [&'static str]),
    Rejected(RejectCode, &'static str),
}

fn check(name: &str, state: &State, change: Value, expected: Expect) {
    let got = decide(state, &changes(json!([change])), 2);
    match (got, expected) {
        (Ok(events), Expect::Events(kinds_expected)) => {
            assert_eq!(kinds(&events), kinds_expected, "{name}: events");
        }
        (Err(r), Expect::Rejected(code, words)) => {
            assert_eq!(r.code, code, "{name}: code ({})", r.message);
            assert!(r.message.contains(words), "{name}: message {:?} lacks {words:?}", r.message);
        }
        (Ok(events), Expect::Rejected(code, _)) => panic!("{name}: accepted ({:?}), expected {code:?}", kinds(&events)),
        (Err(r), Expect::Events(_)) => panic!("{name}: rejected: {:?} {}", r.code, r.message),
    }
}

#[test]
fn every_change_is_accepted_with_its_events() {
    use Expect::Events as E;
    let s = base();
    let table: Vec<(&str, Value, Expect)> = vec![
        ("add server", json!({"add_server": {"name": "rt9", "host": "h", "port": 1}}), E(&["server_registered"])),
        ("add server https", json!({"add_server": {"name": "rt9", "host": "h", "port": 1, "scheme": "https"}}), E(&["server_registered"])),
        ("add server ipv6", json!({"add_server": {"name": "rt9", "host": "::1", "port": 1}}), E(&["server_registered"])),
        ("add server ipv6 in brackets", json!({"add_server": {"name": "rt9", "host": "[fe80::1]", "port": 1}}), E(&["server_registered"])),
        ("update server", json!({"update_server": {"name": "rt1", "port": 81}}), E(&["server_updated"])),
        ("enable server", json!({"enable_server": {"name": "rt3"}}), E(&["server_status_changed"])),
        ("disable server", json!({"disable_server": {"name": "rt1"}}), E(&["server_status_changed"])),
        ("mark failed", json!({"mark_server_failed": {"name": "rt1"}}), E(&["server_status_changed"])),
        ("delete server in a list", json!({"delete_server": {"name": "rt1"}}), E(&["server_list_set", "server_deleted"])),
        ("delete server in no list", json!({"delete_server": {"name": "rt3"}}), E(&["server_deleted"])),
        ("register agent", json!({"register_agent": {"id": "a9"}}), E(&["agent_registered"])),
        ("create cluster", json!({"create_cluster": {"name": "apac"}}), E(&["cluster_created"])),
        ("delete cluster with configs", json!({"delete_cluster": {"name": "eu"}}), E(&["task_config_deleted", "cluster_deleted"])),
        ("add agent to cluster", json!({"add_agent_to_cluster": {"cluster": "us", "agent": "a2"}}), E(&["agent_added_to_cluster"])),
        ("remove agent from cluster", json!({"remove_agent_from_cluster": {"cluster": "eu", "agent": "a1"}}), E(&["agent_removed_from_cluster"])),
        ("create task", json!({"create_task": {"name": "payroll"}}), E(&["task_created"])),
        ("delete task", json!({"delete_task": {"name": "billing"}}), E(&["task_config_deleted", "task_deleted"])),
        ("set servers (new task)", json!({"set_servers": {"task": "payroll", "cluster": "us", "servers": ["rt1"]}}), E(&["task_created", "server_list_set"])),
        ("set servers", json!({"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt2"]}}), E(&["server_list_set"])),
        ("add server to list", json!({"add_server_to_list": {"task": "billing", "cluster": "eu", "server": "rt3"}}), E(&["server_list_set"])),
        ("add at position", json!({"add_server_to_list": {"task": "billing", "cluster": "eu", "server": "rt3", "position": 0}}), E(&["server_list_set"])),
        ("remove from list", json!({"remove_server_from_list": {"task": "billing", "cluster": "eu", "server": "rt1"}}), E(&["server_list_set"])),
        ("move up", json!({"move_server": {"task": "billing", "cluster": "eu", "server": "rt2", "direction": "up"}}), E(&["server_list_set"])),
        ("move down", json!({"move_server": {"task": "billing", "cluster": "eu", "server": "rt1", "direction": "down"}}), E(&["server_list_set"])),
        ("load balancing", json!({"set_load_balancing": {"task": "billing", "cluster": "eu", "enabled": true}}), E(&["load_balancing_set"])),
        ("load balancing (new task)", json!({"set_load_balancing": {"task": "payroll", "cluster": "eu", "enabled": true}}), E(&["task_created", "load_balancing_set"])),
        ("delete task config", json!({"delete_task_config": {"task": "billing", "cluster": "eu"}}), E(&["task_config_deleted"])),
        ("remove agent in a cluster", json!({"remove_agent": {"id": "a1"}}), E(&["agent_removed_from_cluster", "agent_removed"])),
        ("remove agent in no cluster", json!({"remove_agent": {"id": "a2"}}), E(&["agent_removed"])),
        ("set weight", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt2", "weight": 5}}), E(&["list_entry_weighted"])),
        ("set tier", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "priority": 2}}), E(&["list_entry_weighted"])),
    ];
    for (name, change, expected) in table {
        check(name, &s, change, expected);
    }
}

#[test]
fn every_rejection_has_its_code() {
    use Expect::Rejected as R;
    use RejectCode::*;
    let s = base();
    let table: Vec<(&str, Value, Expect)> = vec![
        ("server exists", json!({"add_server": {"name": "rt1", "host": "h", "port": 1}}), R(AlreadyExists, "already exists")),
        ("port 0", json!({"add_server": {"name": "rt9", "host": "h", "port": 0}}), R(Invalid, "port")),
        ("scheme not allowed", json!({"add_server": {"name": "rt9", "host": "h", "port": 1, "scheme": "javascript"}}), R(Invalid, "scheme")),
        ("update unknown", json!({"update_server": {"name": "nope", "port": 81}}), R(NotFound, "nope")),
        ("update port 0", json!({"update_server": {"name": "rt1", "port": 0}}), R(Invalid, "port")),
        ("update nothing", json!({"update_server": {"name": "rt1"}}), R(Invalid, "nothing to update")),
        ("host with a stray bracket", json!({"add_server": {"name": "rt9", "host": "[", "port": 1}}), R(Invalid, "neither a host name")),
        ("host with a colon", json!({"add_server": {"name": "rt9", "host": "a:b", "port": 1}}), R(Invalid, "neither a host name")),
        ("update to a bad host", json!({"update_server": {"name": "rt1", "host": "-x"}}), R(Invalid, "neither a host name")),
        ("update scheme", json!({"update_server": {"name": "rt1", "scheme": "file"}}), R(Invalid, "scheme")),
        ("enable unknown", json!({"enable_server": {"name": "nope"}}), R(NotFound, "nope")),
        ("disable unknown", json!({"disable_server": {"name": "nope"}}), R(NotFound, "nope")),
        ("mark a disabled server failed", json!({"mark_server_failed": {"name": "rt3"}}), R(Invalid, "only an enabled server")),
        ("delete unknown", json!({"delete_server": {"name": "nope"}}), R(NotFound, "nope")),
        ("agent registered twice", json!({"register_agent": {"id": "a1"}}), R(AlreadyExists, "already registered")),
        ("cluster exists", json!({"create_cluster": {"name": "eu"}}), R(AlreadyExists, "already exists")),
        ("delete unknown cluster", json!({"delete_cluster": {"name": "nope"}}), R(NotFound, "nope")),
        ("add agent to unknown cluster", json!({"add_agent_to_cluster": {"cluster": "nope", "agent": "a2"}}), R(NotFound, "nope")),
        ("add unknown agent", json!({"add_agent_to_cluster": {"cluster": "us", "agent": "a9"}}), R(NotFound, "a9")),
        ("agent already in cluster", json!({"add_agent_to_cluster": {"cluster": "eu", "agent": "a1"}}), R(AlreadyExists, "already in")),
        ("remove agent not in cluster", json!({"remove_agent_from_cluster": {"cluster": "us", "agent": "a1"}}), R(NotFound, "not in")),
        ("task exists", json!({"create_task": {"name": "billing"}}), R(AlreadyExists, "already exists")),
        ("delete unknown task", json!({"delete_task": {"name": "nope"}}), R(NotFound, "nope")),
        ("list with unknown server", json!({"set_servers": {"task": "billing", "cluster": "eu", "servers": ["nope"]}}), R(NotFound, "nope")),
        ("list with a duplicate", json!({"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt1", "rt1"]}}), R(Invalid, "twice")),
        ("list for unknown cluster", json!({"set_servers": {"task": "billing", "cluster": "nope", "servers": ["rt1"]}}), R(NotFound, "nope")),
        ("position past the end", json!({"add_server_to_list": {"task": "billing", "cluster": "eu", "server": "rt3", "position": 5}}), R(Invalid, "past the end")),
        ("add a listed server again", json!({"add_server_to_list": {"task": "billing", "cluster": "eu", "server": "rt1"}}), R(Invalid, "twice")),
        ("remove unlisted server", json!({"remove_server_from_list": {"task": "billing", "cluster": "eu", "server": "rt3"}}), R(NotFound, "not in the list")),
        ("remove from unknown config", json!({"remove_server_from_list": {"task": "billing", "cluster": "us", "server": "rt1"}}), R(NotFound, "")),
        ("move the top up", json!({"move_server": {"task": "billing", "cluster": "eu", "server": "rt1", "direction": "up"}}), R(Invalid, "top")),
        ("move the bottom down", json!({"move_server": {"task": "billing", "cluster": "eu", "server": "rt2", "direction": "down"}}), R(Invalid, "bottom")),
        ("move unlisted", json!({"move_server": {"task": "billing", "cluster": "eu", "server": "rt3", "direction": "up"}}), R(NotFound, "not in the list")),
        ("load balancing in unknown cluster", json!({"set_load_balancing": {"task": "billing", "cluster": "nope", "enabled": true}}), R(NotFound, "nope")),
        ("delete unknown config", json!({"delete_task_config": {"task": "billing", "cluster": "us"}}), R(NotFound, "")),
        ("remove unknown agent", json!({"remove_agent": {"id": "nope"}}), R(NotFound, "nope")),
        ("weight 0", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "weight": 0}}), R(Invalid, "weight 0")),
        ("weight 1001", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "weight": 1001}}), R(Invalid, "1000")),
        ("tier 0", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "priority": 0}}), R(Invalid, "priority 0")),
        ("tier 101", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "priority": 101}}), R(Invalid, "100")),
        ("weighting nothing", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1"}}), R(Invalid, "priority, a weight")),
        ("weight unlisted", json!({"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt3", "weight": 2}}), R(NotFound, "not in the list")),
        ("weight unknown config", json!({"set_server_weight": {"task": "billing", "cluster": "us", "server": "rt1", "weight": 2}}), R(NotFound, "")),
    ];
    for (name, change, expected) in table {
        check(name, &s, change, expected);
    }
}

#[test]
fn a_command_is_all_or_nothing_and_bounded() {
    let s = base();
    // Empty and oversized commands.
    let r = decide(&s, &[], 1).unwrap_err();
    assert_eq!(r.code, RejectCode::Invalid);
    let many: Vec<Change> =
        (0..=roster::domain::CHANGES_PER_COMMAND_MAX).map(|i| changes(json!([{"create_task": {"name": format!("t{i}")}}])).remove(0)).collect();
    assert_eq!(decide(&s, &many, 1).unwrap_err().code, RejectCode::LimitExceeded);
    // A later change sees an earlier one; a failing change names its position.
    let ok = changes(json!([{"add_server": {"name": "rt9", "host": "h", "port": 1}}, {"set_servers": {"task": "t", "cluster": "us", "servers": ["rt9"]}}]));
    assert!(decide(&s, &ok, 1).is_ok());
    let bad = changes(json!([{"add_server": {"name": "rt9", "host": "h", "port": 1}}, {"enable_server": {"name": "nope"}}]));
    let r = decide(&s, &bad, 1).unwrap_err();
    assert!(r.message.starts_with("change 2:"), "{}", r.message);
    // A full agent cluster refuses one more agent.
    let mut full = s.clone();
    let limit = roster::domain::AGENTS_PER_CLUSTER_MAX;
    for chunk in (0..limit).collect::<Vec<_>>().chunks(roster::domain::CHANGES_PER_COMMAND_MAX) {
        let setup: Vec<Value> = chunk.iter().map(|i| json!({"register_agent": {"id": format!("f{i}")}})).collect();
        for e in decide(&full, &changes(Value::Array(setup)), 1).unwrap() {
            full.apply_event(&e);
        }
    }
    for i in 0..limit {
        for e in decide(&full, &changes(json!([{"add_agent_to_cluster": {"cluster": "us", "agent": format!("f{i}")}}])), 1).unwrap() {
            full.apply_event(&e);
        }
    }
    check("cluster full", &full, json!({"add_agent_to_cluster": {"cluster": "us", "agent": "a2"}}), Expect::Rejected(RejectCode::LimitExceeded, "maximum"));
}

/// A weighting follows its server: kept through reorders, dropped when the server leaves the
/// list (re-added, it starts at tier 1, weight 1), and setting the defaults removes it.
#[test]
fn a_weighting_follows_its_server_in_the_list() {
    let mut s = base();
    let run = |s: &mut State, c: Value| {
        for e in decide(s, &changes(c), 1).expect("accepted") {
            s.apply_event(&e);
        }
    };
    let weights = |s: &State| {
        let cfg = s.config(&TaskName::new("billing").unwrap(), &ClusterName::new("eu").unwrap()).unwrap();
        cfg.weights.iter().map(|(k, w)| (k.to_string(), w.priority, w.weight)).collect::<Vec<_>>()
    };
    run(&mut s, json!([{"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt2", "weight": 4, "priority": 3}}]));
    run(&mut s, json!([{"move_server": {"task": "billing", "cluster": "eu", "server": "rt2", "direction": "up"}}]));
    assert_eq!(weights(&s), [("rt2".to_string(), 3, 4)]);
    run(&mut s, json!([{"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt2", "weight": 7}}]));
    assert_eq!(weights(&s), [("rt2".to_string(), 3, 7)], "an omitted priority is kept");
    run(&mut s, json!([{"remove_server_from_list": {"task": "billing", "cluster": "eu", "server": "rt2"}}]));
    assert_eq!(weights(&s), []);
    run(&mut s, json!([{"add_server_to_list": {"task": "billing", "cluster": "eu", "server": "rt2"}}]));
    assert_eq!(weights(&s), []);
    run(&mut s, json!([{"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "weight": 2}}]));
    run(&mut s, json!([{"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "weight": 1}}]));
    assert_eq!(weights(&s), [], "the defaults are not stored");
    run(&mut s, json!([{"set_server_weight": {"task": "billing", "cluster": "eu", "server": "rt1", "weight": 2}}]));
    run(&mut s, json!([{"delete_server": {"name": "rt1"}}]));
    assert_eq!(weights(&s), [], "deleting the server drops its weighting");
}
