//! A history anyone can verify: signed checkpoints, inclusion and consistency proofs and
//! continuation exports on a real 3-node cluster (one node catching up by snapshot), checked
//! by `roster audit` and by the independent Python verifier `docs/verify_history.py`, which
//! must find and locate every kind of tampering. Also: a data dir written by the previous
//! record format is upgraded at start with its state unchanged.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{roster_bin, secure, write_any, Api, Cluster, NodeProcess};
use serde_json::{json, Value};

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn vkey() -> PathBuf {
    secure().dir.join(roster::tls::HISTORY_VKEY)
}

/// `roster audit ARGS` as the auditor, against `endpoints` when given.
fn audit(endpoints: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(roster_bin());
    cmd.arg("audit").args(args);
    if let Some(eps) = endpoints {
        let ca = secure().dir.join(roster::tls::CA_CERT);
        cmd.args(["--endpoints", eps, "--ca", ca.to_str().unwrap(), "--token-file", secure().token_file("auditor").to_str().unwrap()]);
    }
    run(&mut cmd)
}

/// The reference verifier, which knows nothing of Roster but docs/history-format.md.
fn python(args: &[&str]) -> (Option<i32>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/verify_history.py");
    let out = Command::new("python3").arg(script).args(args).output().expect("python3 (scripts/deps.sh installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn write_revisions(eps: &[String], range: std::ops::Range<u32>) {
    for i in range {
        let body = json!({"changes": [
            {"add_server": {"name": format!("rt{i}"), "host": "10.0.0.1", "port": 80}},
            {"create_cluster": {"name": format!("c{i}")}},
        ]});
        let r = write_any(eps, "/v1/commands", &body, &format!("k{i}"));
        assert!(matches!(r, Some((200, _))), "write {i}: {r:?}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn signed_checkpoints_proofs_and_an_independent_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Snapshots every 10 entries with almost no log kept: node 3, stopped while the others
    // write, must catch up by installing a snapshot, tree included.
    let mut cluster = Cluster::start(&d.join("c"), 3, &["--snapshot-every-logs", "10", "--logs-kept-after-snapshot", "2"]);
    let eps = cluster.addrs.clone();
    cluster.nodes[2].take().unwrap().stop();
    let live: Vec<String> = eps[..2].to_vec();
    let live_eps = live.join(",");
    write_revisions(&live, 0..20);

    let head1 = d.join("head1.txt");
    let (ok, out, err) = audit(Some(&live_eps), &["checkpoint", "-o", s(&head1), "--public-key", s(&vkey())]);
    assert!(ok && out.contains("checkpoint of 20 revisions"), "{out}{err}");
    write_revisions(&live, 20..35);
    cluster.restart(2);
    cluster.wait_revision(35, Duration::from_secs(30));

    // Every node holds the same tree and signs the same checkpoint (Ed25519 is deterministic).
    let heads: Vec<Value> = (0..3).map(|i| Api::new(cluster.node(i)).get("/v1/history/tree-head?consistency=local")).collect();
    assert_eq!(heads[0]["tree_size"], 35);
    assert!(heads.iter().all(|h| h == &heads[0]), "nodes disagree on the tree head: {heads:?}");
    let head2 = d.join("head2.txt");
    let (ok, out, err) = audit(Some(&eps[2]), &["checkpoint", "-o", s(&head2), "--public-key", s(&vkey())]);
    assert!(ok, "{err}");
    assert!(out.contains("checkpoint of 35 revisions"), "{out}");
    assert_eq!(std::fs::read_to_string(&head2).unwrap(), heads[0]["checkpoint"].as_str().unwrap());
    // The served public key is the one secure-init wrote.
    let (status, served) = Api::new(cluster.node(0)).request(reqwest::Method::GET, "/v1/history/public-key", None, &[("x-roster-actor", "viewer")]);
    assert_eq!((status, served.as_str().unwrap().trim()), (200, std::fs::read_to_string(vkey()).unwrap().trim()));

    // Export; verify against the newer checkpoint; the digest is the cluster's.
    let full = d.join("full.jsonl");
    let all = cluster.endpoints();
    let (ok, _, err) = audit(Some(&all), &["export", "-o", s(&full)]);
    assert!(ok, "{err}");
    let (ok, out, err) = audit(None, &["verify", s(&full), "--checkpoint", s(&head2), "--public-key", s(&vkey())]);
    assert!(ok, "{err}");
    assert!(out.contains("matches the signed checkpoint of 35 revisions"), "{out}");
    let digest = Api::new(cluster.node(0)).get("/v1/state/digest?revision=35")["digest"].as_str().unwrap().to_string();
    assert!(out.contains(&format!("state digest {digest}")), "{out}");
    let (ok, _, err) = audit(None, &["verify", s(&full), "--checkpoint", s(&head2)]);
    assert!(!ok && err.contains("--public-key"), "{err}");

    // Inclusion and consistency proofs through the CLI.
    let (ok, out, err) = audit(Some(&all), &["prove", "7", "--checkpoint", s(&head1), "--public-key", s(&vkey())]);
    assert!(ok && out.contains("revision 7") && out.contains("tree of 20 revisions"), "{out}{err}");
    let (ok, _, err) = audit(Some(&all), &["prove", "30", "--checkpoint", s(&head1), "--public-key", s(&vkey())]);
    assert!(!ok && err.contains("not in the checkpoint's tree of 20"), "{err}");
    let (ok, out, err) = audit(Some(&all), &["consistent", s(&head1), s(&head2), "--public-key", s(&vkey())]);
    assert!(ok && out.contains("is a prefix of the tree of 35"), "{out}{err}");
    let (ok, _, err) = audit(Some(&all), &["consistent", s(&head2), s(&head1), "--public-key", s(&vkey())]);
    assert!(!ok, "{err}");
    // A checkpoint whose signed text was changed is refused.
    let forged = d.join("forged.txt");
    let text = std::fs::read_to_string(&head2).unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    let other_root = std::fs::read_to_string(&head1).unwrap().split('\n').nth(2).unwrap().to_string();
    lines[2] = &other_root;
    std::fs::write(&forged, lines.join("\n")).unwrap();
    let (ok, _, err) = audit(None, &["verify", s(&full), "--checkpoint", s(&forged), "--public-key", s(&vkey())]);
    assert!(!ok && err.contains("does not verify"), "{err}");
    // Bad proof requests get clear errors.
    let api = Api::new(cluster.node(0));
    for (path, want) in [
        ("/v1/history/0/proof", 400),
        ("/v1/history/36/proof?tree_size=35", 400),
        ("/v1/history/3/proof?tree_size=99", 404),
        ("/v1/history/consistency?first=0&second=5", 400),
        ("/v1/history/consistency?first=6&second=5", 400),
        ("/v1/history/export?from=99", 400),
    ] {
        let (status, body) = api.request(reqwest::Method::GET, path, None, &[]);
        assert_eq!(status, want, "{path}: {body}");
    }

    // A continuation export checks against the older checkpoint without the earlier records.
    let cont = d.join("cont.jsonl");
    let (ok, _, err) = audit(Some(&all), &["export", "--from", "21", "-o", s(&cont)]);
    assert!(ok && err.contains("exported 15 revisions"), "{err}");
    let (ok, out, err) =
        audit(None, &["verify", s(&cont), "--continues", s(&head1), "--checkpoint", s(&head2), "--public-key", s(&vkey())]);
    assert!(ok, "{err}");
    assert!(out.contains("revisions 21..35 continue the checkpoint of 20 revisions"), "{out}");
    let (ok, _, err) = audit(None, &["verify", s(&cont), "--continues", s(&head2), "--public-key", s(&vkey())]);
    assert!(!ok && err.contains("continues the tree of 20 revisions but the checkpoint covers 35"), "{err}");

    // The independent verifier agrees on everything...
    let vk = s(&vkey()).to_string();
    let (code, text) = python(&["chain", s(&full), "--checkpoint", s(&head2), "--key", &vk]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = python(&["chain", s(&cont), "--continues", s(&head1), "--checkpoint", s(&head2), "--key", &vk]);
    assert_eq!(code, Some(0), "{text}");
    let record = d.join("record7.json");
    std::fs::write(&record, api.get("/v1/history/7").to_string()).unwrap();
    let proof = d.join("proof7.json");
    std::fs::write(&proof, api.get("/v1/history/7/proof?tree_size=20").to_string()).unwrap();
    let (code, text) = python(&["inclusion", "--checkpoint", s(&head1), "--key", &vk, "--record", s(&record), "--proof", s(&proof)]);
    assert_eq!(code, Some(0), "{text}");
    let cproof = d.join("consistency.json");
    std::fs::write(&cproof, api.get("/v1/history/consistency?first=20&second=35").to_string()).unwrap();
    let (code, text) = python(&["consistency", "--old", s(&head1), "--new", s(&head2), "--key", &vk, "--proof", s(&cproof)]);
    assert_eq!(code, Some(0), "{text}");

    // ...and finds and locates every kind of tampering.
    let good: Vec<String> = std::fs::read_to_string(&full).unwrap().lines().map(String::from).collect();
    let tampered = d.join("tampered.jsonl");
    let expect_failure = |lines: &[String], checkpoint: &Path, want: &[&str]| {
        std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
        let (code, text) = python(&["chain", s(&tampered), "--checkpoint", s(checkpoint), "--key", &vk]);
        assert_eq!(code, Some(1), "not detected (wanted {want:?}): {text}");
        for w in want {
            assert!(text.contains(w), "expected {w:?} in: {text}");
        }
        let (ok, _, err) = audit(None, &["verify", s(&tampered), "--checkpoint", s(checkpoint), "--public-key", &vk]);
        assert!(!ok, "roster audit verify missed it too: {err}");
    };
    let mut edited = good.clone();
    edited[4] = edited[4].replacen("\"actor\":\"writer\"", "\"actor\":\"wrjter\"", 1);
    assert_ne!(edited[4], good[4]);
    expect_failure(&edited, &head2, &["line 5", "revision 5", "hash does not match"]);
    let mut dropped = good.clone();
    dropped.remove(9);
    expect_failure(&dropped, &head2, &["line 10", "revision 11 follows revision 9"]);
    let mut swapped = good.clone();
    swapped.swap(12, 13);
    expect_failure(&swapped, &head2, &["line 13", "revision 14 follows revision 12"]);
    expect_failure(&good[..30], &head2, &["ends at revision 30", "35"]);
    expect_failure(&good, &forged, &["signature", "does not verify"]);
    let (code, text) = python(&["inclusion", "--checkpoint", s(&head2), "--key", &vk, "--record", s(&record), "--proof", s(&proof)]);
    assert_eq!(code, Some(1), "a proof for another tree size passed: {text}");

    // A stopped node's stored tree matches the one rebuilt from its history.
    cluster.wait_revision(35, Duration::from_secs(20));
    assert!(cluster.nodes[2].as_mut().unwrap().stop());
    cluster.nodes[2] = None;
    let (ok, out, err) = audit(None, &["verify", "--data-dir", s(&d.join("c/node-3"))]);
    assert!(ok, "{err}");
    assert!(out.contains("matches the stored tree") && out.contains(&format!("state digest {digest}")), "{out}");
}

/// `tests/fixtures/datadir-v2.tar.gz` was written by the first release of data format 2 (a
/// single node, 25 revisions, a snapshot and a compacted log; digest and Merkle root in
/// `datadir-v2.json`). Every later build must open it: same state, same digest, same tree, the
/// history untouched (format 3 only drops the fold checkpoints, encoded in the older state
/// layout), and it takes writes. Do not regenerate it; add a new fixture for a new format.
#[test]
fn a_data_dir_written_by_an_earlier_build_of_this_format_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (ok, _, err) = run(Command::new("tar").arg("xzf").arg(fixtures.join("datadir-v2.tar.gz")).arg("-C").arg(dir.path()));
    assert!(ok, "{err}");
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("datadir-v2.json")).unwrap()).unwrap();
    let data = dir.path().join("d2");
    let (ok, out, err) = audit(None, &["verify", "--data-dir", s(&data)]);
    assert!(ok, "{out}{err}");

    let node = NodeProcess::single(&data);
    let api = Api::new(&node);
    let digest = api.get("/v1/state/digest");
    assert_eq!((&digest["revision"], &digest["digest"]), (&expected["revision"], &expected["digest"]), "{digest}");
    let head = api.get("/v1/history/tree-head");
    assert_eq!((&head["tree_size"], &head["root_hash"]), (&expected["revision"], &expected["root_hash"]), "{head}");
    assert!(!node.log().contains("upgrading the stored history"), "{}", node.log());
    let (status, v) = api.post("/v1/commands", json!({"changes": [{"create_cluster": {"name": "later-build"}}]}), &[]);
    assert_eq!(status, 200, "{v}");
    let at26 = api.get("/v1/state/digest");
    assert_eq!(at26["revision"], 26);
    let upgraded = upgrade_events(&api);
    assert_eq!(upgraded.len(), 1, "{upgraded:?}");
    let message = upgraded[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("from format 2 to 3: fold checkpoints dropped"), "{upgraded:?}");
    // The second start finds the current format, upgrades nothing and starts from the
    // checkpoint written at the upgrade.
    drop(node);
    let node = NodeProcess::single(&data);
    let api = Api::new(&node);
    assert_eq!(api.get("/v1/state/digest"), at26);
    let (status, v) = api.post("/v1/commands", json!({"changes": [{"create_cluster": {"name": "second-start"}}]}), &[]);
    assert_eq!(status, 200, "{v}");
    assert_eq!(upgrade_events(&api).len(), 1, "the upgrade was recorded again");
}

/// The `data_upgraded` events, waiting up to 10 s for the first (they are recorded after the
/// node starts).
fn upgrade_events(api: &Api) -> Vec<Value> {
    for _ in 0..100 {
        let events = api.get("/v1/events?kind=data_upgraded").as_array().cloned().unwrap_or_default();
        if !events.is_empty() {
            return events;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Vec::new()
}

/// `tests/fixtures/datadir-v1.tar.gz` was written by the release before record format 2
/// (a single node, 34 revisions, a snapshot and a purged log); its state digest is in
/// `datadir-v1.json`.
#[test]
fn a_data_dir_of_the_previous_record_format_is_upgraded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (ok, _, err) = run(Command::new("tar").arg("xzf").arg(fixtures.join("datadir-v1.tar.gz")).arg("-C").arg(dir.path()));
    assert!(ok, "{err}");
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("datadir-v1.json")).unwrap()).unwrap();
    let data = dir.path().join("d1");

    // Offline, the old format is named as such.
    let (ok, _, err) = audit(None, &["verify", "--data-dir", s(&data)]);
    assert!(!ok && err.contains("record format 1"), "{err}");

    let mut node = NodeProcess::single(&data);
    let api = Api::new(&node);
    assert_eq!(api.get("/v1/state/digest")["digest"], expected["digest"], "the upgrade changed the state");
    assert!(node.log().contains("history upgraded to record format 2"), "{}", node.log());
    let head = api.get("/v1/history/tree-head");
    assert_eq!(head["tree_size"], 34);
    let (status, _) = api.post("/v1/commands", json!({"changes": [{"create_cluster": {"name": "after-upgrade"}}]}), &[]);
    assert_eq!(status, 200);
    let full = dir.path().join("full.jsonl");
    let (ok, _, err) = audit(Some(&node.addr), &["export", "-o", s(&full)]);
    assert!(ok, "{err}");
    let (code, text) = python(&["chain", s(&full)]);
    assert_eq!(code, Some(0), "{text}");

    // The upgrade is in the replicated event log, once.
    let events = upgrade_events(&api);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0]["message"].as_str().unwrap().contains("from format 1 to 3: 34 history records"), "{events:?}");

    // The second start finds format 2 and rewrites nothing.
    assert!(node.stop());
    let upgrades = node.log().matches("upgrading the stored history").count();
    let mut node = NodeProcess::single(&data);
    let api = Api::new(&node);
    assert_eq!(api.get("/v1/state/digest")["revision"], 35);
    assert_eq!(node.log().matches("upgrading the stored history").count(), upgrades);
    let (status, _) = api.post("/v1/commands", json!({"changes": [{"create_cluster": {"name": "second-start"}}]}), &[]);
    assert_eq!(status, 200);
    assert_eq!(upgrade_events(&api).len(), 1, "the upgrade was recorded again");

    // A data dir from a newer Roster is refused before anything is touched.
    assert!(node.stop());
    {
        let store = roster_storage::StateStore::new(roster_storage::open(&data.join("db")).unwrap());
        store.set_data_format(roster::machine::upgrade::DATA_FORMAT + 1).unwrap();
    }
    let mut refused = NodeProcess::start(&data, 1, &format!("127.0.0.1:{}", common::free_port()), "");
    let status = refused.wait_exit(Duration::from_secs(20)).expect("a node on a newer data dir kept running");
    assert!(!status.success());
    assert!(refused.log().contains(&format!("written by a newer Roster (data format {}", roster::machine::upgrade::DATA_FORMAT + 1)), "{}", refused.log());
}
