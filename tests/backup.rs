//! Backup and restore on real clusters: a backup taken from a follower of a 3-node cluster
//! under writes restores into a fresh 3-node cluster with the same state digest and history,
//! which then takes new writes; damaged, truncated and misplaced restores are refused with an
//! error that names the problem.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{ctl_as, roster_bin, write_any, Api, Cluster};
use serde_json::{json, Value};

fn restore(file: &std::path::Path, dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(roster_bin()).arg("restore").arg(file).arg("--data-dir").arg(dir).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {out}"))
}

fn history(api: &Api, upto: u64) -> Vec<Value> {
    let mut records = Vec::new();
    let mut from = 1;
    while from <= upto {
        let page = api.get(&format!("/v1/history?from={from}&to={upto}&limit=1000"));
        let got = page["records"].as_array().unwrap().clone();
        assert!(!got.is_empty());
        from += got.len() as u64;
        records.extend(got);
    }
    records
}

#[test]
fn a_backup_under_writes_restores_into_a_new_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = Cluster::start(&d.join("old"), 3, &["--snapshot-every-logs", "50"]);
    let eps = old.addrs.clone();
    for i in 0..30 {
        let body = json!({"changes": [{"add_server": {"name": format!("rt{i}"), "host": "10.0.0.1", "port": 80}}]});
        assert!(matches!(write_any(&eps, "/v1/commands", &body, &format!("a{i}")), Some((200, _))));
    }
    // Writes go on while the backup is taken (bounded: at most 300, stopped after it).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, eps) = (stop.clone(), eps.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 300 {
                let body = json!({"changes": [{"create_cluster": {"name": format!("c{n}")}}]});
                write_any(&eps, "/v1/commands", &body, &format!("b{n}"));
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let leader = old.wait_leader(Duration::from_secs(10));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let file = d.join("roster.backup");
    let (ok, out, err) = ctl_as("ops", &eps[follower], &["backup", "-o", file.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(ok, "{err}");
    let revision: u64 = line(&out, "backup of revision ").split_whitespace().next().unwrap().parse().unwrap();
    assert!(revision >= 30, "{out}");
    eprintln!("backup at revision {revision} while {written} writes ran: {out}");
    // A viewer may not take backups.
    let (ok, _, err) = ctl_as("viewer", &eps[follower], &["backup", "-o", d.join("no.backup").to_str().unwrap()]);
    assert!(!ok && err.contains("403"), "{err}");

    let old_api = Api::new(old.node(leader));
    let digest = old_api.get(&format!("/v1/state/digest?revision={revision}"))["digest"].as_str().unwrap().to_string();
    let old_history = history(&old_api, revision);

    // Restore into three new data dirs; each restore re-checks the history and prints the
    // digest at the backup's revision.
    let new_dir = d.join("new");
    for i in 1..=3 {
        let (ok, out, err) = restore(&file, &new_dir.join(format!("node-{i}")));
        assert!(ok, "{err}");
        assert_eq!(line(&out, "state digest "), digest, "{out}");
        assert!(out.contains(&format!("restored revision {revision}")), "{out}");
    }
    // Restoring over an existing database is refused.
    let (ok, _, err) = restore(&file, &new_dir.join("node-1"));
    assert!(!ok && err.contains("already holds a node database"), "{err}");

    let new = Cluster::start(&new_dir, 3, &[]);
    new.wait_revision(revision, Duration::from_secs(30));
    let new_api = Api::new(new.node(0));
    // A restored data dir is already in this build's format: nothing to upgrade or record.
    let upgrades = new_api.get("/v1/events?kind=data_upgraded");
    assert_eq!(upgrades.as_array().map(Vec::len), Some(0), "{upgrades}");
    assert_eq!(new_api.get("/v1/state/digest")["digest"].as_str().unwrap(), digest);
    assert_eq!(history(&new_api, revision), old_history, "the restored history differs");
    // The new cluster takes writes on top of the restored history.
    let body = json!({"changes": [{"add_server": {"name": "after-restore", "host": "10.0.0.2", "port": 81}}]});
    assert!(matches!(write_any(&new.addrs, "/v1/commands", &body, "after"), Some((200, _))));
    new.wait_revision(revision + 1, Duration::from_secs(30));
    let next = &history(&new_api, revision + 1)[revision as usize];
    assert_eq!(next["prev_hash"], old_history.last().unwrap()["hash"], "the new revision does not extend the restored chain");

    // Damage is refused and named; nothing is written.
    let bytes = std::fs::read(&file).unwrap();
    let damaged = d.join("damaged.backup");
    // A flipped bit anywhere (a frame's section, a key, a value, the meta) is named as damage.
    for at in [20, bytes.len() / 3, bytes.len() / 2, bytes.len() - 40] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x40;
        std::fs::write(&damaged, &flipped).unwrap();
        let (ok, _, err) = restore(&damaged, &d.join("r1"));
        assert!(!ok, "a backup damaged at byte {at} was restored");
        assert!(err.contains("damaged or truncated"), "byte {at}: {err}");
        assert!(!d.join("r1/db").exists(), "a refused restore wrote a database");
    }
    std::fs::write(&damaged, &bytes[..bytes.len() - 100]).unwrap();
    let (ok, _, err) = restore(&damaged, &d.join("r2"));
    assert!(!ok && err.contains("truncated"), "{err}");
    let (ok, _, err) = restore(&d.join("missing.backup"), &d.join("r3"));
    assert!(!ok && err.contains("opening"), "{err}");
}
