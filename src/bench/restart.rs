//! `roster bench restart`: the time a node takes to serve again on a long history.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::{BasicNode, CommittedLeaderId, LogId, Membership, StoredMembership};
use roster_raft::{Proposal, TypeConfig};
use roster_storage::{codec, Application, StateStore};

use crate::domain::{Command, CommandBody};
use crate::machine::RosterMachine;

use super::{free_port, synthetic_changes, tempfile_dir};

/// Writes a data dir for node 1 holding `revisions` revisions, through the real state machine.
pub(super) fn generate_data_dir(dir: &std::path::Path, revisions: u64, addr: &str) -> anyhow::Result<()> {
    let store = StateStore::new(roster_storage::open(&dir.join("db"))?);
    let (mut machine, handle) = RosterMachine::new();
    machine.load(&store)?;
    let leader = CommittedLeaderId::new(1, 1);
    let membership_log_id = LogId::new(leader, 1);
    let nodes: BTreeMap<u64, BasicNode> = [(1u64, BasicNode::new(addr))].into();
    let membership = StoredMembership::new(Some(membership_log_id), Membership::new(vec![BTreeSet::from([1u64])], nodes));
    const BATCH: u64 = 10_000;
    let mut rev = 1;
    while rev <= revisions {
        let mut txn = store.offline_txn();
        let end = (rev + BATCH - 1).min(revisions);
        let mut last = membership_log_id;
        for r in rev..=end {
            let cmd = Command {
                actor: "bench".into(),
                time_ms: r,
                comment: String::new(),
                expected_revision: None,
                idempotency_key: None,
                body: CommandBody::Apply { changes: synthetic_changes(r) },
            };
            last = LogId::new(leader, r + 1);
            machine.apply(&last, &Proposal { commands: vec![codec::encode(&cmd)] }, &mut txn);
        }
        store.offline_commit::<TypeConfig>(txn, &Some(last), &membership)?;
        // As a node does once a batch is written: checkpoints due in it are built now.
        machine.applied();
        anyhow::ensure!(handle.read().state.revision == end, "generation was rejected at revision {end}");
        if end % 100_000 == 0 || end == revisions {
            eprintln!("  generated {end}/{revisions}");
        }
        rev = end + 1;
    }
    anyhow::ensure!(handle.wait_for_checkpoints(Duration::from_secs(600)), "the fold checkpoints were not written in 600 s");
    Ok(())
}

pub(super) async fn restart(revisions: u64, data_dir: Option<PathBuf>, runs: u32) -> anyhow::Result<()> {
    let tmp;
    let dir = match data_dir {
        Some(d) => d,
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    if !dir.join("db").exists() {
        println!("generating a data dir with {revisions} revisions in {}...", dir.display());
        let t = Instant::now();
        let (d, a) = (dir.clone(), addr.clone());
        tokio::task::spawn_blocking(move || generate_data_dir(&d, revisions, &a)).await??;
        println!("generated in {:.1}s", t.elapsed().as_secs_f64());
    }
    let exe = std::env::current_exe()?;
    let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build()?;
    let mut times = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&exe)
            .args(["serve", "--insecure", "--node-id", "1", "--listen", &addr, "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut served = None;
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(r) = http.get(format!("http://{addr}/v1/state/digest")).send().await {
                if r.status().is_success() {
                    let v: serde_json::Value = r.json().await?;
                    if v["revision"].as_u64() == Some(revisions) {
                        served = Some(started.elapsed());
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = served.context("the node did not serve the last revision within 120 s")?;
        println!("run {run}: ready and serving revision {revisions} after {:.3}s", elapsed.as_secs_f64());
        times.push(elapsed.as_secs_f64());
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!("restart to serving on {revisions} revisions: min {:.3}s, median {:.3}s, max {:.3}s", times[0], times[times.len() / 2], times[times.len() - 1]);
    Ok(())
}
