//! Each checker against a synthetic history: a clean history passes every checker, and one
//! seeded violation per test is caught by the checker responsible for it (and named).

use std::collections::BTreeMap;

use roster_chaos::checker::{self, project};
use roster_chaos::model::{AgentFinal, FaultRecord, NodeFinal, Observed, Op, OpKind, Status, Violation};
use serde_json::{json, Value};

const HEAD: u64 = 6;

fn record(rev: u64) -> Value {
    json!({
        "revision": rev, "log_term": 1, "log_index": rev + 2, "time_ms": 1000 + rev, "actor": "chaos-writer0",
        "comment": "", "changeset": null, "idempotency_key": format!("chaos-1-writer0-{rev}"), "events": [],
        "prev_hash": format!("h{}", rev - 1), "hash": format!("h{rev}"),
    })
}

fn history() -> Vec<Value> {
    (1..=HEAD).map(record).collect()
}

fn state(rev: u64, servers: &[&str]) -> Value {
    json!({
        "revision": rev,
        "digest": format!("d{rev}"),
        "servers": [
            {"name": "s0", "url": "http://10.9.0.1:8080/", "status": "enabled", "host": "10.9.0.1", "port": 8080, "pool": null, "scheme": "http"},
            {"name": "s1", "url": "http://10.9.0.2:8080/", "status": "disabled", "host": "10.9.0.2", "port": 8080, "pool": null, "scheme": "http"},
        ],
        "agents": {"w0": {"id": "w0", "registered_ms": 1}},
        "clusters": {"c0": {"agents": ["w0"]}, "c1": {"agents": ["w0"]}},
        "tasks": {
            "t0": {"configs": {"c1": {"servers": ["s0"], "load_balancing": true}, "c0": {"servers": servers, "load_balancing": false}}},
            "t1": {"configs": {"c2": {"servers": ["s0"], "load_balancing": false}}},
        },
    })
}

fn write(id: u64, rev: u64, invoke: u64, complete: u64) -> Op {
    Op {
        id,
        client: "writer0".into(),
        kind: Some(OpKind::Write),
        invoke_us: invoke,
        complete_us: complete,
        status: Some(Status::Ok),
        key: Some(format!("chaos-1-writer0-{rev}")),
        revision: Some(rev),
        attempts: 1,
        ..Op::default()
    }
}

fn read(id: u64, kind: OpKind, rev: u64, invoke: u64, complete: u64) -> Op {
    Op {
        id,
        client: "reader0".into(),
        kind: Some(kind),
        invoke_us: invoke,
        complete_us: complete,
        status: Some(Status::Ok),
        revision: Some(rev),
        digest: Some(format!("d{rev}")),
        node: Some("n1".into()),
        attempts: 1,
        ..Op::default()
    }
}

fn watch(id: u64, after: u64, rev: Option<u64>, invoke: u64, st: &Value) -> Op {
    Op {
        id,
        client: "watch-w0".into(),
        kind: Some(OpKind::Watch),
        invoke_us: invoke,
        complete_us: invoke + 50,
        status: Some(Status::Ok),
        agent: Some("w0".into()),
        after: Some(after),
        revision: rev,
        config: rev.map(|_| project(st, "w0")),
        node: Some("n2".into()),
        attempts: 1,
        ..Op::default()
    }
}

/// A clean run: 6 writes in sequence (revision r acknowledged at [r*100, r*100+50]), reads,
/// an agent stream, three agreeing nodes, the marker at revision 6.
fn clean() -> Observed {
    let mut ops = Vec::new();
    for r in 1..=HEAD {
        ops.push(write(r, r, r * 100, r * 100 + 50));
    }
    ops.push(read(100, OpKind::LinRead, 3, 360, 370));
    ops.push(read(101, OpKind::LinRead, 6, 700, 710));
    ops.push(read(102, OpKind::LocalRead, 2, 380, 390));
    let mut states = BTreeMap::new();
    for r in 1..=HEAD {
        states.insert(r, state(r, if r < 4 { &["s0"] } else { &["s1", "s0"] }));
    }
    ops.push(watch(200, 0, Some(2), 260, &states[&2]));
    ops.push(watch(201, 2, Some(4), 420, &states[&4]));
    ops.push(watch(202, 4, None, 480, &states[&4]));
    ops.push(watch(203, 4, Some(6), 690, &states[&6]));
    let nodes = (1..=3)
        .map(|i| NodeFinal { node: format!("n{i}"), revision: Some(HEAD), digest: Some(format!("d{HEAD}")), history: history(), error: None, tree: None })
        .collect();
    let faults = vec![FaultRecord {
        id: 1,
        kind: "kill".into(),
        variant: "leader".into(),
        targets: vec!["1".into()],
        start_us: 120,
        healed_us: 200,
        recovered_us: Some(260),
        injected: true,
        note: String::new(),
    }];
    Observed {
        ops,
        faults,
        nodes,
        agents: vec![AgentFinal { agent: "w0".into(), revision: Some(6), config: Some(project(&states[&6], "w0")) }],
        digests: (1..=HEAD).map(|r| (r, format!("d{r}"))).collect(),
        states,
        marker_revision: Some(HEAD),
        healed_us: Some(650),
        first_write_after_heal_us: Some(650),
        liveness_bound_us: 30_000_000,
        audit: None,
    }
}

/// The violations, asserting that exactly checker `code` fired.
fn only(code: &str, obs: &Observed) -> Vec<Violation> {
    let v = checker::check_all(obs);
    assert!(!v.is_empty(), "checker ({code}) missed the violation");
    for x in &v {
        assert_eq!(x.checker, code, "unexpected checker fired: {x:?} (all: {v:#?})");
    }
    v
}

#[test]
fn clean_history_passes_every_checker() {
    let v = checker::check_all(&clean());
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn projection_uses_the_first_cluster_by_name() {
    let p = project(&state(1, &["s1", "s0", "gone"]), "w0");
    assert_eq!(p["clusters"], json!(["c0", "c1"]));
    assert_eq!(p["tasks"]["t0"]["cluster"], "c0");
    assert_eq!(p["tasks"]["t0"]["load_balancing"], false);
    let names: Vec<&str> = p["tasks"]["t0"]["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["s1", "s0"], "unknown servers are dropped, order kept");
    assert_eq!(p["tasks"]["t0"]["servers"][0]["status"], "disabled");
    assert!(p["tasks"].get("t1").is_none(), "t1 is configured only for a cluster w0 is not in");
}

#[test]
fn a_one_history_catches_a_different_record_on_one_node() {
    let mut o = clean();
    o.nodes[1].history[3]["hash"] = json!("forged");
    o.nodes[1].history[4]["prev_hash"] = json!("forged");
    let v = only("a", &o);
    assert!(v[0].message.contains("revision 4"), "{v:?}");
}

#[test]
fn a_one_history_catches_a_broken_chain_and_a_gap() {
    let mut o = clean();
    for n in &mut o.nodes {
        n.history[2]["prev_hash"] = json!("h0");
    }
    only("a", &o);
    let mut o = clean();
    for n in &mut o.nodes {
        n.history.remove(2);
    }
    o.nodes.iter_mut().for_each(|n| n.revision = Some(5));
    // A gap also shortens the history, which (f) notices too; (a) must name it.
    let v = checker::check_all(&o);
    assert!(v.iter().any(|x| x.checker == "a" && x.message.contains("not dense")), "{v:#?}");
}

#[test]
fn b_writes_once_catches_a_lost_acknowledged_write() {
    let mut o = clean();
    o.ops.push(Op { key: Some("chaos-1-writer1-99".into()), ..write(50, 99, 10, 20) });
    // Its revision 99 is beyond the history, so (d) is not involved: only (b) and (c) may fire.
    let v = checker::check_all(&o);
    assert!(v.iter().any(|x| x.checker == "b" && x.message.contains("appears 0 times")), "{v:#?}");
}

#[test]
fn b_writes_once_catches_a_duplicate_and_a_failed_write_that_was_applied() {
    let mut o = clean();
    for n in &mut o.nodes {
        n.history[4]["idempotency_key"] = json!("chaos-1-writer0-2");
    }
    o.ops.retain(|op| op.id != 5);
    let v = only("b", &o);
    assert!(v.iter().any(|x| x.message.contains("appears 2 times")), "{v:?}");

    let mut o = clean();
    o.ops[2].status = Some(Status::Fail);
    o.ops[2].revision = None;
    let v = only("b", &o);
    assert!(v[0].message.contains("failed write 3"), "{v:?}");

    let mut o = clean();
    o.ops[2].status = Some(Status::Info);
    o.ops[2].revision = None;
    assert!(checker::check_all(&o).is_empty(), "an indeterminate write may appear once");
}

#[test]
fn b_writes_once_catches_a_phantom_write() {
    let mut o = clean();
    o.ops.retain(|op| op.id != 4);
    let v = only("b", &o);
    assert!(v[0].message.contains("phantom"), "{v:?}");
}

#[test]
fn c_write_order_catches_a_stale_revision_after_an_acknowledged_write() {
    let mut o = clean();
    // Write 5 began after write 4 was acknowledged but got a smaller revision (swap 3 and 5
    // in the acknowledgements and the history stays consistent for (b)).
    o.ops[2].revision = Some(5);
    o.ops[2].key = Some("chaos-1-writer0-5".into());
    o.ops[4].revision = Some(3);
    o.ops[4].key = Some("chaos-1-writer0-3".into());
    // (The read at 360 would now also be stale for (d); leave it out.)
    o.ops.retain(|op| op.id != 100);
    let v = only("c", &o);
    assert!(v[0].message.contains("began after write"), "{v:?}");
}

#[test]
fn c_write_order_catches_a_cas_write_at_the_wrong_revision() {
    let mut o = clean();
    o.ops[3].kind = Some(OpKind::CasWrite);
    o.ops[3].expected = Some(2);
    let v = only("c", &o);
    assert!(v[0].message.contains("CAS write 4 expected revision 2 but committed at 4"), "{v:?}");
}

#[test]
fn d_lin_reads_catches_a_stale_linearizable_read() {
    let mut o = clean();
    // Began at 460, after write 4 was acknowledged at 450, but saw revision 3.
    o.ops.push(read(103, OpKind::LinRead, 3, 460, 470));
    let v = only("d", &o);
    assert!(v[0].message.contains("linearizable read 103"), "{v:?}");
    // A stale local read is allowed.
    let mut o = clean();
    o.ops.push(read(104, OpKind::LocalRead, 1, 460, 470));
    assert!(checker::check_all(&o).is_empty());
}

#[test]
fn d_lin_reads_catches_a_wrong_digest_and_a_read_from_the_future() {
    let mut o = clean();
    o.ops[HEAD as usize].digest = Some("bogus".into());
    let v = only("d", &o);
    assert!(v[0].message.contains("digest bogus"), "{v:?}");
    let mut o = clean();
    o.ops.push(read(105, OpKind::LocalRead, 9, 800, 810));
    let v = only("d", &o);
    assert!(v[0].message.contains("beyond"), "{v:?}");
}

#[test]
fn e_agent_streams_catches_going_backwards() {
    let mut o = clean();
    let st = o.states[&3].clone();
    o.ops.push(watch(204, 0, Some(3), 695, &st));
    let v = only("e", &o);
    assert!(v.iter().any(|x| x.message.contains("went backwards")), "{v:?}");
}

#[test]
fn e_agent_streams_catches_a_wrong_configuration() {
    let mut o = clean();
    // Revision 4 delivered with revision 2's configuration: a missed update.
    let old = o.states[&2].clone();
    let op = o.ops.iter_mut().find(|op| op.id == 201).unwrap();
    op.config = Some(project(&old, "w0"));
    let v = only("e", &o);
    assert!(v[0].message.contains("not the state's"), "{v:?}");
}

#[test]
fn e_agent_streams_catches_a_stream_that_never_resumed() {
    let mut o = clean();
    o.ops.push(Op { status: Some(Status::Fail), error: Some("connection refused".into()), ..watch(205, 6, None, 720, &Value::Null) });
    let v = only("e", &o);
    assert!(v[0].message.contains("never resumed"), "{v:?}");
}

#[test]
fn f_convergence_catches_a_diverged_node_and_a_lagging_agent() {
    let mut o = clean();
    o.nodes[2].digest = Some("dX".into());
    let v = only("f", &o);
    assert!(v.iter().any(|x| x.message.contains("node n3")), "{v:?}");
    let mut o = clean();
    o.agents[0].revision = Some(4);
    o.agents[0].config = Some(project(&o.states[&4], "w0"));
    let v = only("f", &o);
    assert!(v[0].message.contains("agent w0 deployed revision Some(4)"), "{v:?}");
}

#[test]
fn g_liveness_catches_a_late_or_missing_write_after_healing() {
    let mut o = clean();
    o.faults.clear();
    o.liveness_bound_us = 100;
    o.first_write_after_heal_us = Some(650 + 101);
    let v = only("g", &o);
    assert!(v[0].message.contains("after healing"), "{v:?}");
    let mut o = clean();
    o.first_write_after_heal_us = None;
    only("g", &o);
    let mut o = clean();
    o.faults[0].recovered_us = None;
    let v = only("g", &o);
    assert!(v[0].message.contains("fault 1"), "{v:?}");
}

#[test]
fn a_one_history_uses_the_audit_verdict_and_digest() {
    use roster_chaos::model::AuditResult;
    let mut o = clean();
    o.audit = Some(AuditResult { ok: true, revision: Some(HEAD), digest: Some(format!("d{HEAD}")), output: String::new() });
    assert!(checker::check_all(&o).is_empty());
    o.audit = Some(AuditResult { ok: false, revision: None, digest: None, output: "revision 3: hash mismatch".into() });
    let v = only("a", &o);
    assert!(v[0].message.contains("hash mismatch"), "{v:?}");
    o.audit = Some(AuditResult { ok: true, revision: Some(HEAD), digest: Some("other".into()), output: String::new() });
    let v = only("a", &o);
    assert_eq!(v.len(), 3, "one per node: {v:?}");
}

#[test]
fn e_agent_streams_catches_a_stream_that_did_not_resume_after_a_fault() {
    let mut o = clean();
    // Healed at 700; the watcher's next answer completes at 740, beyond a 30 us bound.
    o.faults[0].healed_us = 700;
    o.faults[0].recovered_us = Some(720);
    o.liveness_bound_us = 30;
    let v = only("e", &o);
    assert!(v[0].message.contains("after fault 1"), "{v:?}");
}

#[test]
fn crash_reasons_come_from_the_last_start_in_a_node_log() {
    let dir = std::env::temp_dir().join(format!("chaos-log-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("node-1.log");
    std::fs::write(
        &log,
        "=== chaos: start node 1 (start #1) failpoint=None\nok\n\
         === chaos: start node 1 (start #2) failpoint=None\n\x1b[31mERROR\x1b[0m openraft::core::raft_core: quit RaftCore::main on error error=boom\n\
         === chaos: start node 1 (start #3) failpoint=None\nError: when Read LogIndex(23000): Failed to get log entries\n\nStack backtrace:\n 0: x\n",
    )
    .unwrap();
    assert_eq!(roster_chaos::faults::crash_reason(&log), "Error: when Read LogIndex(23000): Failed to get log entries");
    let fatal = roster_chaos::faults::fatal_raft_errors(&log);
    assert_eq!(fatal, ["start #2: ERROR openraft::core::raft_core: quit RaftCore::main on error error=boom"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_one_history_catches_a_tree_head_that_does_not_match_the_records() {
    let hexed = |o: &mut Observed| {
        for n in &mut o.nodes {
            for (i, r) in n.history.iter_mut().enumerate() {
                r["hash"] = json!(format!("{:064x}", i + 1));
                r["prev_hash"] = json!(format!("{:064x}", i));
            }
        }
    };
    let mut o = clean();
    hexed(&mut o);
    let root = checker::merkle_root(&o.nodes[0].history, HEAD as usize).unwrap();
    assert_ne!(root, checker::merkle_root(&o.nodes[0].history, HEAD as usize - 1).unwrap());
    for n in &mut o.nodes {
        n.tree = Some((HEAD, root.clone()));
    }
    assert!(checker::check_all(&o).is_empty(), "{:#?}", checker::check_all(&o));
    o.nodes[2].tree = Some((HEAD, format!("{:064x}", 7)));
    let v = only("a", &o);
    assert!(v[0].message.contains("node n3") && v[0].message.contains("root"), "{v:?}");
    o.nodes[2].tree = Some((HEAD - 1, root));
    let v = only("a", &o);
    assert!(v[0].message.contains("5 leaves but its history 6 revisions"), "{v:?}");
}
