//! Authentication and roles on a real node over TLS: the route × role table (generated from
//! the router's own route table), the token identity as actor, API-created and revoked tokens,
//! agent tokens limited to their own agent, and forged Raft RPC refused.

mod common;

use std::time::Duration;

use common::{secure, Api, NodeProcess};
use roster::auth::Access;
use roster::domain::tokens::Role;
use serde_json::{json, Value};

/// Who calls, in the table.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Nobody,
    BadToken,
    Token(&'static str, Role),
    ClusterSecret,
}

fn cluster_secret() -> String {
    std::fs::read_to_string(secure().dir.join(roster::tls::CLUSTER_SECRET)).unwrap().trim().to_string()
}

/// A concrete path for a route template (agent ids are `a1`, the agent of `agent-file-a1`).
fn concrete(path: &str) -> String {
    let id = if path.starts_with("/v1/changesets") {
        "cs-1"
    } else if path.starts_with("/v1/cluster/nodes") {
        "9"
    } else {
        "a1"
    };
    let mut p = path
        .replace("{id}", id)
        .replace("{name}", "x")
        .replace("{task}", "t")
        .replace("{cluster}", "c")
        .replace("{server}", "s")
        .replace("{revision}", "1");
    if p.ends_with("/config") && p.starts_with("/v1/agents/") {
        p.push_str("?wait_ms=1");
    }
    p
}

fn call(node: &NodeProcess, method: &reqwest::Method, path: &str, caller: Caller) -> (u16, String) {
    let client = secure().client(None, Duration::from_secs(20));
    let mut req = client.request(method.clone(), node.url(path));
    req = match caller {
        Caller::Nobody => req,
        Caller::BadToken => req.bearer_auth("rst_not_a_token"),
        Caller::Token(name, _) => req.bearer_auth(secure().token(name)),
        Caller::ClusterSecret => req.bearer_auth(cluster_secret()),
    };
    if *method != reqwest::Method::GET && *method != reqwest::Method::DELETE {
        req = req.json(&json!({}));
    }
    let resp = req.send().expect("the node answers");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

#[test]
fn every_route_checks_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let callers = [
        Caller::Nobody,
        Caller::BadToken,
        Caller::Token("admin", Role::Admin),
        Caller::Token("ops", Role::Operator),
        Caller::Token("auditor", Role::Auditor),
        Caller::Token("viewer", Role::Viewer),
        Caller::Token("agent-file-a1", Role::Agent),
        Caller::ClusterSecret,
    ];
    // The table: every route the router serves, with its declared rule, plus the Raft routes.
    let mut rows: Vec<(reqwest::Method, String, Option<Access>)> = roster::api::route_rules()
        .into_iter()
        .map(|(m, p, a)| (reqwest::Method::from_bytes(m.as_str().as_bytes()).unwrap(), p.to_string(), Some(a)))
        .collect();
    rows.extend(roster_raft::service::ROUTES.iter().map(|p| (reqwest::Method::POST, p.to_string(), None)));
    assert!(rows.len() > 60, "only {} routes in the table", rows.len());

    let mut checked = 0;
    let mut failures = Vec::new();
    for (method, template, access) in &rows {
        let path = concrete(template);
        for caller in callers {
            // Expected: Some(status) for 401/403, None for "allowed" (anything but 401/403).
            let expected: Option<u16> = match (access, caller) {
                (Some(Access::Open), _) => None,
                (_, Caller::Nobody | Caller::BadToken) => Some(401),
                // Raft routes know only the cluster secret: a token is no credential there.
                (None, Caller::ClusterSecret) => None,
                (None, Caller::Token(..)) => Some(401),
                (Some(Access::Peer), Caller::ClusterSecret) => None,
                (Some(_), Caller::ClusterSecret) => Some(403),
                (Some(Access::Peer), Caller::Token(..)) => Some(403),
                (Some(a), Caller::Token(_, role)) => {
                    if a.allows_role(role, false) {
                        None
                    } else {
                        Some(403)
                    }
                }
            };
            let (status, body) = call(&node, method, &path, caller);
            checked += 1;
            let ok = match expected {
                Some(s) => status == s,
                None => status != 401 && status != 403,
            };
            if !ok {
                failures.push(format!("{method} {path} as {caller:?}: got {status}, expected {expected:?}: {body}"));
            }
            // A route that the router does not serve would answer 404/405 to everyone: the
            // table and the router must agree.
            if matches!(caller, Caller::Token("admin", _)) && access.is_some() {
                assert!(status != 405, "{method} {template} is in the table but the router does not take it");
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} checks failed:\n{}", failures.len(), failures.join("\n"));

    // An agent token is limited to its own agent.
    let (s, body) = call(&node, &reqwest::Method::GET, "/v1/agents/a2/config?wait_ms=1", Caller::Token("agent-file-a1", Role::Agent));
    assert_eq!(s, 403, "{body}");
    let (s, body) = call(&node, &reqwest::Method::POST, "/v1/agents/a2/ack", Caller::Token("agent-file-a1", Role::Agent));
    assert_eq!(s, 403, "{body}");
}

#[test]
fn the_token_is_the_actor_and_tokens_can_be_created_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    let client = secure().client(None, Duration::from_secs(20));
    let add = |token: &str, name: &str, actor: Option<&str>| {
        let mut req = client
            .post(node.url("/v1/commands"))
            .bearer_auth(token)
            .json(&json!({"changes": [{"add_server": {"name": name, "host": "10.0.0.1", "port": 80}}]}));
        if let Some(a) = actor {
            req = req.header("x-roster-actor", a);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap_or(Value::Null))
    };

    let (s, v) = add(secure().token("ops"), "rt1", None);
    assert_eq!(s, 200, "{v}");
    let rev = v["committed"]["revision"].as_u64().unwrap();
    assert_eq!(api.get(&format!("/v1/history/{rev}"))["actor"], "ops");

    // Claiming another identity is refused and changes nothing.
    let before = api.digest();
    let (s, v) = add(secure().token("ops"), "rt2", Some("admin"));
    assert_eq!(s, 403, "{v}");
    assert_eq!(api.digest(), before);
    // Read-only roles cannot write.
    for t in ["auditor", "viewer", "agent-file-a1"] {
        let (s, v) = add(secure().token(t), "rt3", None);
        assert_eq!(s, 403, "{t}: {v}");
    }
    assert_eq!(api.digest(), before);

    // A token created through the API works at once, records its own name, and stops
    // working when revoked. Only its hash is kept: the list never shows secrets.
    let (s, v) = api.post("/v1/tokens", json!({"name": "deployer", "role": "operator"}), &[]);
    assert_eq!(s, 201, "{v}");
    let secret = v["token"].as_str().unwrap().to_string();
    let (s, v) = add(&secret, "rt4", None);
    assert_eq!(s, 200, "{v}");
    let rev = v["committed"]["revision"].as_u64().unwrap();
    assert_eq!(api.get(&format!("/v1/history/{rev}"))["actor"], "deployer");
    let list = api.get("/v1/tokens").to_string();
    assert!(list.contains("deployer") && !list.contains(&secret[4..]), "{list}");
    let (s, v) = api.post("/v1/tokens", json!({"name": "deployer", "role": "viewer"}), &[]);
    assert_eq!(s, 409, "{v}");
    let (s, v) = api.post("/v1/tokens", json!({"name": "x", "role": "agent"}), &[]);
    assert_eq!(s, 400, "an agent token without an agent: {v}");
    let (s, v) = api.request(reqwest::Method::DELETE, "/v1/tokens/deployer", None, &[]);
    assert_eq!(s, 200, "{v}");
    let (s, v) = add(&secret, "rt5", None);
    assert_eq!(s, 401, "a revoked token still works: {v}");
    // Token changes are in the event log with who made them.
    let events = api.get("/v1/events?kind=token_created").to_string();
    assert!(events.contains("deployer") && events.contains("admin"), "{events}");

    // The CLI authenticates with its token file too.
    let (ok, out, err) = common::ctl_as("viewer", &node.addr, &["whoami"]);
    assert!(ok, "{err}");
    assert!(out.contains("viewer"), "{out}");
    let (ok, _, err) = common::ctl_as("viewer", &node.addr, &["servers", "add", "rt9", "--host", "h", "--port", "1"]);
    assert!(!ok && err.contains("forbidden"), "{err}");
}

#[test]
fn forged_raft_rpc_is_refused_and_plain_or_untrusted_connections_fail() {
    use openraft::{CommittedLeaderId, LogId, Vote};
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    let term = |api: &Api| api.get("/v1/cluster")["term"].as_u64().unwrap();
    let before = term(&api);
    // A vote request from a "candidate" with a far higher term: granted, it would depose the
    // leader.
    let forged = openraft::raft::VoteRequest::<u64> {
        vote: Vote::new(before + 1000, 99),
        last_log_id: Some(LogId::new(CommittedLeaderId::new(before + 1000, 99), 1_000_000)),
    };
    let body = roster_storage::codec::encode(&forged);
    let client = secure().client(None, Duration::from_secs(10));
    for credential in [None, Some(secure().token("admin").to_string()), Some("guess".to_string())] {
        let mut req = client.post(node.url("/raft/vote")).body(body.clone());
        if let Some(c) = &credential {
            req = req.bearer_auth(c);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "forged vote with {credential:?}");
    }
    let append = openraft::raft::AppendEntriesRequest::<roster_raft::TypeConfig> {
        vote: Vote::new_committed(before + 1000, 99),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let r = client.post(node.url("/raft/append")).body(roster_storage::codec::encode(&append)).send().unwrap();
    assert_eq!(r.status().as_u16(), 401, "forged append");
    assert_eq!(term(&api), before, "a refused RPC changed the term");

    // With the secret but from a build whose codec this one does not know: refused by name,
    // never misdecoded.
    let mut newer = body.clone();
    newer[0] = 9;
    let r = client.post(node.url("/raft/vote")).bearer_auth(cluster_secret()).body(newer).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().unwrap();
    assert!(text.contains("unsupported format version 9"), "{text}");
    assert_eq!(term(&api), before, "an undecodable RPC changed the term");

    // The positive control: with the cluster secret the node obeys the "leader", and the term
    // moves (so the refusals above were what kept it in place).
    let r = client.post(node.url("/raft/vote")).bearer_auth(cluster_secret()).body(body).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client.post(node.url("/raft/append")).bearer_auth(cluster_secret()).body(roster_storage::codec::encode(&append)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let started = std::time::Instant::now();
    while term(&api) == before {
        assert!(started.elapsed() < Duration::from_secs(10), "the authenticated vote had no effect");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Plain HTTP to a TLS node fails, and so does HTTPS without trusting the cluster's CA.
    let plain = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let r = plain.get(format!("http://{}/healthz", node.addr)).send();
    assert!(r.map(|r| !r.status().is_success()).unwrap_or(true), "plain HTTP was served");
    let untrusting = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(untrusting.get(format!("https://{}/healthz", node.addr)).send().is_err(), "an untrusted certificate was accepted");
}

/// Security (issue 18, item 5): with a CA or token configured, `roster ctl` and `roster agent`
/// refuse a plain `http://` endpoint instead of sending the token in the clear; nothing even
/// connects to it.
#[test]
fn clients_refuse_plain_http_endpoints_when_a_token_is_configured() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (ok, _, err) = common::ctl(&endpoint, &["servers", "list"]);
    assert!(!ok, "ctl talked to a plain-HTTP endpoint with a token");
    assert!(err.contains("plain HTTP"), "unclear error: {err}");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::roster_bin())
        .args(["agent", "--id", "a9", "--endpoints", &endpoint, "--ca"])
        .arg(common::secure().dir.join(roster::tls::CA_CERT))
        .arg("--token-file")
        .arg(common::secure().token_file("agent-file-a1"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the agent started against a plain-HTTP endpoint with a token");
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain HTTP"), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(listener.accept().is_err(), "a client connected to the plain-HTTP endpoint");
}

/// Security (issue 18, item 6): `secure-init` makes a 0700 directory of 0600 secrets, never
/// follows a planted symlink, keeps the CA key out of the directory nodes read; `serve`
/// refuses a secret file others can read, and a node's data directory is its user's alone.
#[test]
fn secret_files_are_private_and_symlinks_are_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secure_dir = dir.path().join("secure");
    std::fs::create_dir(&secure_dir).unwrap();
    std::fs::set_permissions(&secure_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, secure_dir.join("tokens")).unwrap();
    let out = std::process::Command::new(common::roster_bin()).arg("secure-init").arg(&secure_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "secure-init wrote through a planted symlink");
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secure_dir), 0o700);
    for f in ["tokens", "cluster-secret", "node-key.pem", "admin.token"] {
        assert!(std::fs::symlink_metadata(secure_dir.join(f)).unwrap().file_type().is_file(), "{f}");
        assert_eq!(mode(&secure_dir.join(f)), 0o600, "{f}");
    }
    assert!(!secure_dir.join("ca-key.pem").exists(), "the CA key is in the directory nodes read");
    assert!(roster::tls::ca_key_path(&secure_dir).exists());

    // A world-readable token file is refused at start, with a clear error.
    std::fs::set_permissions(secure_dir.join("tokens"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let out = std::process::Command::new(common::roster_bin())
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--secure-dir")
        .arg(&secure_dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a node started with a world-readable token file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(secure_dir.join("tokens"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // The data directory and what RocksDB writes in it are private.
    let args: Vec<std::ffi::OsString> = vec![
        "serve".into(), "--listen".into(), addr.clone().into(),
        "--data-dir".into(), dir.path().join("data").into(), "--secure-dir".into(), secure_dir.clone().into(),
    ];
    let mut node = common::spawn_roster(&args, &[], &dir.path().join("node.log"));
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(secure_dir.join("ca.pem")).unwrap()).unwrap())
        .use_rustls_tls()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    while client.get(format!("https://{addr}/readyz")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(30), "the node did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    for e in std::fs::read_dir(dir.path().join("data/db")).unwrap().flatten() {
        assert_eq!(mode(&e.path()) & 0o077, 0, "{} is readable by others", e.path().display());
    }
    let _ = node.kill();
    let _ = node.wait();
}

/// Security (issue 18, items 8, 11, 12, 13): past states are for auditors; free text refuses
/// bidi overrides and line separators; a server's scheme comes from a documented set; plain
/// HTTP on the TLS port gets a clear error.
#[test]
fn low_severity_findings_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n"));
    let api = Api::new(&node);
    let (s, v) = api.post("/v1/commands", json!({"changes": [{"add_server": {"name": "rt1", "host": "h", "port": 1}}]}), &[]);
    assert_eq!(s, 200, "{v}");
    let (s, v) = api.post("/v1/commands", json!({"changes": [{"add_server": {"name": "rt2", "host": "h", "port": 1}}]}), &[]);
    assert_eq!(s, 200, "{v}");
    // 8: a viewer reads the current state, not a past one; an auditor reads both.
    let viewer = [("x-roster-actor", "viewer")];
    assert_eq!(api.request(reqwest::Method::GET, "/v1/state", None, &viewer).0, 200);
    assert_eq!(api.request(reqwest::Method::GET, "/v1/state?revision=1", None, &viewer).0, 403);
    assert_eq!(api.request(reqwest::Method::GET, "/v1/state/digest?revision=1", None, &viewer).0, 403);
    assert_eq!(api.request(reqwest::Method::GET, "/v1/state?revision=1", None, &[("x-roster-actor", "auditor")]).0, 200);
    // 11: comments and descriptions with bidi overrides or line separators are refused.
    let before = api.digest();
    for comment in ["evil\u{202E}txt", "line\u{2028}break", "zero\u{200B}width"] {
        let r = secure()
            .admin(Duration::from_secs(10))
            .post(node.url("/v1/commands"))
            .header("x-roster-comment", reqwest::header::HeaderValue::from_bytes(comment.as_bytes()).unwrap())
            .json(&json!({"changes": [{"add_server": {"name": "rt9", "host": "h", "port": 1}}]}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "comment {comment:?}: {}", r.text().unwrap_or_default());
        let (s, v) = api.post("/v1/changesets", json!({"description": comment}), &[]);
        assert_eq!(s, 400, "description {comment:?}: {v}");
    }
    // 12: schemes outside the documented set are refused.
    for scheme in ["javascript", "file", "data"] {
        let (s, v) = api.post("/v1/commands", json!({"changes": [{"add_server": {"name": "rt9", "host": "h", "port": 1, "scheme": scheme}}]}), &[]);
        assert_eq!(s, 400, "scheme {scheme}: {v}");
    }
    let (s, v) = api.post("/v1/commands", json!({"changes": [{"update_server": {"name": "rt1", "scheme": "javascript"}}]}), &[]);
    assert_eq!(s, 400, "{v}");
    assert_eq!(api.digest(), before, "a refused request changed the state");
    // 13: plain HTTP on the TLS port gets a readable error.
    let r = reqwest::blocking::Client::new().get(format!("http://{}/healthz", node.addr)).send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("tls_required"));
}

/// `ctl tokens create --secret-file` writes the secret to a new private file that works as a
/// token file; the dev cluster's admin token is never an agent's default token.
#[test]
fn token_secrets_go_to_private_files_and_agents_never_borrow_the_dev_admin_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let file = dir.path().join("viewer2.token");
    let (ok, out, err) = common::ctl(&node.addr, &["tokens", "create", "viewer2", "viewer", "--secret-file", file.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("its secret is in") && !out.contains(secure().token("admin").trim()), "{out}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let who = std::process::Command::new(common::roster_bin())
        .args(["ctl", "--endpoints", &node.addr, "--ca"])
        .arg(secure().dir.join(roster::tls::CA_CERT))
        .arg("--token-file")
        .arg(&file)
        .arg("whoami")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&who.stdout);
    assert!(who.status.success() && text.contains("viewer2"), "{text}{}", String::from_utf8_lossy(&who.stderr));
    let (ok, _, err) = common::ctl(&node.addr, &["tokens", "create", "viewer3", "viewer", "--secret-file", file.to_str().unwrap()]);
    assert!(!ok && err.contains("already exists"), "{err}");

    // In a folder holding the dev cluster's files, an agent without --token-file refuses to
    // start instead of acting with the admin token.
    let cwd = dir.path().join("repo");
    let dev = cwd.join(roster::cli::DEV_SECURE_DIR);
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::copy(secure().dir.join(roster::tls::CA_CERT), dev.join(roster::tls::CA_CERT)).unwrap();
    std::fs::copy(secure().token_file("admin"), dev.join(roster::tls::ADMIN_TOKEN)).unwrap();
    let agent = std::process::Command::new(common::roster_bin())
        .current_dir(&cwd)
        .args(["agent", "--id", "host9", "--endpoints", &node.addr, "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path().join("agent-state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&agent.stderr);
    assert!(!agent.status.success() && err.contains("the agent needs its own token"), "{err}");
    assert!(Api::new(&node).get("/v1/agents").to_string().find("host9").is_none(), "the agent registered with the admin token");
}
