//! The API keeps to its OpenAPI document: schemathesis (a property-based API fuzzer, installed
//! by `scripts/deps.sh` into a virtual environment) generates requests from
//! `GET /v1/openapi.json` against a secure single node and a secure 3-node cluster, and checks
//! that no answer is a server error and that statuses, content types and bodies conform to the
//! document, that invalid input is refused, and that a refused request (4xx) leaves the state
//! digest unchanged (`tests/schemathesis_hooks.py` reads it before and after each request).
//! Bounded: a few examples per operation.
//!
//! Left out: the routes that change the cluster itself (membership, leader transfer), the
//! backup stream, the agent's long poll (it waits by design), `/metrics` (text) and the
//! node-to-node `/internal/` routes.
//! Longer runs: `ROSTER_SCHEMATHESIS_EXAMPLES=2000 cargo test --release --test schemathesis`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{secure, Api, Cluster, NodeProcess};

fn schemathesis() -> PathBuf {
    let venv = std::env::var("ROSTER_VENV").unwrap_or_else(|_| "/var/cache/roster/venv".into());
    let bin = Path::new(&venv).join("bin/schemathesis");
    assert!(bin.exists(), "{} is missing: run scripts/deps.sh (it installs schemathesis into {venv})", bin.display());
    bin
}

/// Runs schemathesis against the node at `addr`; panics with its output on any finding.
fn fuzz(addr: &str, dir: &Path) {
    let examples = std::env::var("ROSTER_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "8".into());
    let token = secure().token("admin");
    let ca = secure().dir.join(roster::tls::CA_CERT);
    let report = dir.join(format!("digest-checks-{}", addr.replace([':', '.'], "-")));
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis_hooks.py");
    let out = Command::new(schemathesis())
        .arg("run")
        .arg(format!("https://{addr}/v1/openapi.json"))
        .args(["--url", &format!("https://{addr}")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--tls-verify", ca.to_str().unwrap()])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,refused_requests_change_nothing"])
        .args(["--max-examples", &examples])
        .args(["--seed", "7"])
        // No example database: every run generates the same requests from the seed.
        .args(["--generation-database", "none"])
        // One at a time: the digest check reads the state around each request.
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--exclude-path-regex", "^/v1/cluster/(nodes|leader)|^/v1/backup|^/v1/agents/[^/]+/config$|^/metrics$|^/internal/"])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "junit", "--report-dir"])
        .arg(dir.join("report"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("ROSTER_DIGEST_URL", format!("https://{addr}/v1/state/digest"))
        .env("ROSTER_DIGEST_TOKEN", &token)
        .env("ROSTER_DIGEST_CA", &ca)
        .env("ROSTER_DIGEST_REPORT", &report)
        .output()
        .expect("run schemathesis");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems against {addr}:\n{text}");
    let checked: u64 = std::fs::read_to_string(&report).expect("the digest hooks ran").trim().parse().unwrap();
    assert!(checked > 100, "only {checked} refused requests had their digest checked:\n{text}");
    eprintln!("{checked} refused requests left the state digest unchanged");
    eprintln!("{}", text.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
}

#[test]
fn a_single_secure_node_keeps_to_its_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n"));
    fuzz(&node.addr, dir.path());
    // Still serving, and the document it serves is the one `roster openapi` prints.
    let served = Api::new(&node).get("/v1/openapi.json");
    let printed = Command::new(common::roster_bin()).arg("openapi").output().unwrap();
    assert_eq!(served, serde_json::from_slice::<serde_json::Value>(&printed.stdout).unwrap());
}

#[test]
fn a_three_node_cluster_keeps_to_its_openapi_document_through_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("c"), 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    fuzz(&cluster.addrs[follower], dir.path());
    assert_eq!(cluster.running().len(), 3);
}
