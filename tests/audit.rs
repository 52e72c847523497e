//! Audit tools against a real cluster: export → verify, the digest agrees with the cluster's,
//! and an edited, dropped or reordered record is detected and located.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{roster_bin, write_any, Api, Cluster};
use serde_json::json;

fn audit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(roster_bin()).arg("audit").args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn digest_line(out: &str) -> String {
    out.lines().find_map(|l| l.strip_prefix("state digest ")).expect(out).to_string()
}

#[test]
fn export_verify_replay_and_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&dir.path().join("c"), 3, &[]);
    let eps = cluster.addrs.clone();
    for i in 0..20 {
        let body = json!({"changes": [
            {"add_server": {"name": format!("rt{i}"), "host": "10.0.0.1", "port": 80}},
            {"create_cluster": {"name": format!("c{i}")}},
            {"set_servers": {"task": "billing", "cluster": format!("c{i}"), "servers": [format!("rt{i}")]}}
        ]});
        assert!(matches!(write_any(&eps, "/v1/commands", &body, &format!("k{i}")), Some((200, _))));
    }
    let file = dir.path().join("history.jsonl");
    // The auditor role may export.
    let ca = common::secure().dir.join(roster::tls::CA_CERT);
    let token = common::secure().token_file("auditor");
    let (ok, _, err) = audit(&[
        "export", "--endpoints", &cluster.endpoints(), "--ca", ca.to_str().unwrap(),
        "--token-file", token.to_str().unwrap(), "-o", file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("exported 20 revisions"), "{err}");

    let (ok, out, err) = audit(&["verify", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("final revision 20"), "{out}");
    let api = Api::new(cluster.node(1));
    assert_eq!(digest_line(&out), api.get("/v1/state/digest?revision=20")["digest"].as_str().unwrap());

    // Replay to a revision gives the cluster's state at that revision.
    let (ok, out, err) = audit(&["replay", file.to_str().unwrap(), "--to", "7"]);
    assert!(ok, "{err}");
    let replayed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(replayed["digest"], api.get("/v1/state/digest?revision=7")["digest"]);

    let lines: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(String::from).collect();
    let tampered = dir.path().join("tampered.jsonl");
    let check = |lines: &[String], want: &str| {
        std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
        let (ok, _, err) = audit(&["verify", tampered.to_str().unwrap()]);
        assert!(!ok, "tampering was not detected ({want})");
        assert!(err.contains(want), "expected {want:?} in: {err}");
    };
    // Edit one byte of a record's content (an actor name).
    let mut edited = lines.clone();
    edited[4] = edited[4].replacen("\"actor\":\"writer\"", "\"actor\":\"wrjter\"", 1);
    assert_ne!(edited[4], lines[4]);
    check(&edited, "revision 5: its hash does not match its content");
    // Drop one record.
    let mut dropped = lines.clone();
    dropped.remove(9);
    check(&dropped, "revision 11 follows revision 9");
    // Swap two records.
    let mut swapped = lines.clone();
    swapped.swap(12, 13);
    check(&swapped, "revision 14 follows revision 12");

    // A stopped node's data dir verifies to the same digest.
    cluster.wait_revision(20, Duration::from_secs(20));
    assert!(cluster.nodes[2].as_mut().unwrap().stop(), "node 3 did not stop gracefully");
    cluster.nodes[2] = None;
    let (ok, out2, err) = audit(&["verify", "--data-dir", dir.path().join("c/node-3").to_str().unwrap()]);
    assert!(ok, "{err}");
    let (_, out, _) = audit(&["verify", file.to_str().unwrap()]);
    assert_eq!(digest_line(&out2), digest_line(&out));
}
