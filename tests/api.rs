//! The HTTP API and CLI against a real `roster serve` process over a real socket.

mod common;

use common::{ctl, Api, NodeProcess};
use reqwest::Method;
use serde_json::{json, Value};

/// The seed procedure: register three servers, create an agent cluster, associate a task with
/// servers in an order, move one up, enable load balancing, apply all changes as one revision.
#[test]
fn seed_procedure_through_the_cli_is_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let ep = node.addr.as_str();

    let (ok, out, err) = ctl(ep, &["changesets", "create", "--description", "seed rollout"]);
    assert!(ok, "{err}");
    let cs = out.trim().strip_prefix("created changeset ").expect(&out).to_string();

    let staged: &[&[&str]] = &[
        &["servers", "add", "rt1", "--host", "10.0.0.1", "--port", "8080"],
        &["servers", "add", "rt2", "--host", "10.0.0.2", "--port", "8080", "--pool", "p1"],
        &["servers", "add", "rt3", "--host", "10.0.0.3", "--port", "8443", "--scheme", "https"],
        &["clusters", "create", "eu"],
        &["tasks", "set-servers", "billing", "--cluster", "eu", "rt1", "rt2", "rt3"],
        &["tasks", "move", "billing", "--cluster", "eu", "rt2", "up"],
        &["tasks", "load-balancing", "billing", "--cluster", "eu", "on"],
    ];
    for args in staged {
        let mut full = vec!["--changeset", cs.as_str()];
        full.extend_from_slice(args);
        let (ok, out, err) = ctl(ep, &full);
        assert!(ok, "{args:?}: {err}");
        assert!(out.contains("staged in changeset"), "{out}");
    }

    // Nothing is applied before "Apply All Changes".
    let api = Api::new(&node);
    assert_eq!(api.digest().0, 0);
    let (ok, preview, err) = ctl(ep, &["changesets", "preview", &cs]);
    assert!(ok, "{err}");
    assert!(preview.contains("applies cleanly"), "{preview}");
    assert!(preview.contains("+ task_config billing/eu"), "{preview}");

    // The actor is the token's identity (alice's token), not a flag.
    let (ok, out, err) = common::ctl_as("alice", ep, &["--actor", "mallory", "-m", "initial rollout", "apply", &cs]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "committed revision 1");

    let history = api.get("/v1/history");
    let records = history["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{history}");
    assert_eq!(records[0]["revision"], 1);
    assert_eq!(records[0]["actor"], "alice");
    assert_eq!(records[0]["comment"], "initial rollout");
    assert_eq!(records[0]["changeset"], json!(cs));

    let config = api.get("/v1/tasks/billing/configs/eu");
    let order: Vec<&str> = config["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(order, ["rt2", "rt1", "rt3"]);
    assert_eq!(config["load_balancing"], true);
    assert_eq!(config["servers"][0]["url"], "http://10.0.0.2:8080/?pool=p1");
    assert_eq!(config["servers"][2]["url"], "https://10.0.0.3:8443/");

    // The changeset is gone once applied; the CLI shows the history readably.
    let (status, _) = api.request(Method::GET, &format!("/v1/changesets/{cs}"), None, &[]);
    assert_eq!(status, 404);
    let (ok, out, _) = ctl(ep, &["history"]);
    assert!(ok);
    assert!(out.contains("alice") && out.contains("initial rollout"), "{out}");
    let (ok, out, _) = ctl(ep, &["tasks", "list"]);
    assert!(ok);
    assert!(out.contains("rt2(enabled) > rt1(enabled) > rt3(enabled)"), "{out}");
}

fn setup(api: &Api) {
    let (s, v) = api.post(
        "/v1/commands",
        json!({"changes": [
            {"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 8080}},
            {"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 8080}},
            {"create_cluster": {"name": "eu"}},
            {"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt1", "rt2"]}}
        ]}),
        &[("x-roster-actor", "setup")],
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["committed"]["revision"], 1);
}

/// Each bad request gets a JSON error with the right status and changes nothing.
#[test]
fn rejections_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    setup(&api);
    let before = api.digest();

    let cases: Vec<(&str, Method, &str, Option<Value>, Vec<(&str, &str)>, u16, &str)> = vec![
        ("unknown server in a list", Method::PUT, "/v1/tasks/billing/configs/eu",
         Some(json!({"servers": ["rt1", "nope"]})), vec![], 404, "not_found"),
        ("duplicate server in a list", Method::PUT, "/v1/tasks/billing/configs/eu",
         Some(json!({"servers": ["rt1", "rt1"]})), vec![], 400, "invalid"),
        ("expected revision mismatch", Method::POST, "/v1/servers",
         Some(json!({"name": "rt3", "host": "h", "port": 1})), vec![("x-roster-expected-revision", "7")], 409, "revision_mismatch"),
        ("unknown field", Method::POST, "/v1/servers",
         Some(json!({"name": "rt3", "host": "h", "port": 1, "colour": "red"})), vec![], 400, "malformed_json"),
        ("invalid name", Method::POST, "/v1/servers",
         Some(json!({"name": "bad name", "host": "h", "port": 1})), vec![], 400, "malformed_json"),
        ("duplicate server", Method::POST, "/v1/servers",
         Some(json!({"name": "rt1", "host": "h", "port": 1})), vec![], 409, "already_exists"),
        ("move past the top", Method::POST, "/v1/tasks/billing/configs/eu/servers/rt1/move",
         Some(json!({"direction": "up"})), vec![], 400, "invalid"),
        ("later change fails, earlier is not applied", Method::POST, "/v1/commands",
         Some(json!({"changes": [{"create_cluster": {"name": "us"}}, {"delete_server": {"name": "ghost"}}]})), vec![], 404, "not_found"),
        ("bad path name", Method::GET, "/v1/servers/bad%20name", None, vec![], 400, "invalid_name"),
        ("bad expected revision header", Method::POST, "/v1/servers",
         Some(json!({"name": "rt3", "host": "h", "port": 1})), vec![("x-roster-expected-revision", "abc")], 400, "invalid_request"),
    ];
    for (what, method, path, body, headers, status, code) in cases {
        let (s, v) = api.request(method, path, body, &headers);
        assert_eq!(s, status, "{what}: {v}");
        assert_eq!(v["error"]["code"], code, "{what}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
        assert_eq!(api.digest(), before, "{what} changed the state");
    }

    // Malformed JSON.
    let client = common::secure().admin(std::time::Duration::from_secs(20));
    let r = client
        .post(node.url("/v1/servers"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "malformed_json");

    // Oversize body. The node answers 413 as soon as the limit is passed and closes the
    // connection, so a client still uploading may see the close instead of the answer; a
    // body just over the limit usually fits the socket buffers and the answer is read (on a
    // loaded machine not always: several tries).
    let big = format!("{{\"changes\": [], \"pad\": \"{}\"}}", "x".repeat((1 << 20) + 100));
    let mut answered = false;
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        if let Ok(r) = client.post(node.url("/v1/commands")).header("content-type", "application/json").body(big.clone()).send() {
            assert_eq!(r.status().as_u16(), 413);
            let v: Value = r.json().unwrap();
            assert_eq!(v["error"]["code"], "body_too_large");
            answered = true;
            break;
        }
    }
    assert!(answered, "no answer to an oversize body in 30 tries");
    assert_eq!(api.digest(), before, "malformed or oversize bodies changed the state");
    assert_eq!(api.get("/v1/history")["records"].as_array().unwrap().len(), 1);
}

#[test]
fn idempotency_key_gives_the_same_result_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    setup(&api);
    let body = json!({"name": "rt9", "host": "10.9.9.9", "port": 9000});
    let h = [("idempotency-key", "add-rt9"), ("x-roster-actor", "bob")];
    let (s1, v1) = api.post("/v1/servers", body.clone(), &h);
    let (s2, v2) = api.post("/v1/servers", body, &h);
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(v1, v2);
    assert_eq!(v1["committed"]["revision"], 2);
    assert_eq!(api.digest().0, 2, "a retry made a second revision");
    // The same key for another command is refused.
    let (s3, v3) = api.post("/v1/servers", json!({"name": "rt8", "host": "h", "port": 1}), &h);
    assert_eq!(s3, 409, "{v3}");
    assert_eq!(v3["error"]["code"], "idempotency_key_reused");
    assert_eq!(api.digest().0, 2);
}

#[test]
fn delete_server_removes_it_from_every_list_and_history_diff_state_agree() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    setup(&api);
    let (s, v) = api.request(Method::DELETE, "/v1/servers/rt1", None, &[("x-roster-comment", "decommission")]);
    assert_eq!(s, 200, "{v}");
    let config = api.get("/v1/tasks/billing/configs/eu");
    assert_eq!(config["servers"].as_array().unwrap().len(), 1);
    assert_eq!(config["servers"][0]["name"], "rt2");

    let at1 = api.get("/v1/state?revision=1");
    assert_eq!(at1["servers"].as_array().unwrap().len(), 2);
    let d = api.get("/v1/diff?from=1&to=2");
    let changes = d["changes"].as_array().unwrap();
    assert!(changes.iter().any(|c| c["kind"] == "removed" && c["key"] == "rt1"), "{d}");
    assert!(changes.iter().any(|c| c["kind"] == "changed" && c["key"] == "billing/eu"), "{d}");
    let filtered = api.get("/v1/history?entity=server:rt1");
    assert_eq!(filtered["records"].as_array().unwrap().len(), 2);
    let filtered = api.get("/v1/history?actor=setup");
    assert_eq!(filtered["records"].as_array().unwrap().len(), 1);
    let (s, _) = api.request(Method::GET, "/v1/state?revision=99", None, &[]);
    assert_eq!(s, 404);
}

#[test]
fn restart_recovers_state_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n1");
    let mut node = NodeProcess::single(&data);
    let api = Api::new(&node);
    setup(&api);
    for i in 0..5 {
        let (s, v) = api.request(Method::POST, "/v1/servers/rt2/disable", None, &[]);
        assert_eq!(s, 200, "{i}: {v}");
        let (s, v) = api.request(Method::POST, "/v1/servers/rt2/enable", None, &[]);
        assert_eq!(s, 200, "{i}: {v}");
    }
    let (s, _) = api.post("/v1/changesets", json!({"description": "pending"}), &[]);
    assert_eq!(s, 201);
    let before = (api.digest(), api.get("/v1/history?limit=1000"), api.get("/v1/changesets"));
    node.kill();
    let node = NodeProcess::start(&data, 1, &node.addr, "");
    node.wait_ready(std::time::Duration::from_secs(30));
    let api = Api::new(&node);
    let after = (api.digest(), api.get("/v1/history?limit=1000"), api.get("/v1/changesets"));
    assert_eq!(before, after);
    assert_eq!(after.0 .0, 11);
}

#[test]
fn metrics_and_health_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    setup(&api);
    assert_eq!(api.get("/healthz")["status"], "ok");
    assert_eq!(api.get("/readyz")["status"], "ready");
    let metrics = common::secure().admin(std::time::Duration::from_secs(5));
    let text = metrics.get(node.url("/metrics")).send().unwrap().text().unwrap();
    let value = |line_start: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("no {line_start} in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("roster_raft_is_leader "), 1.0);
    assert_eq!(value("roster_history_revisions "), 1.0);
    assert!(value("roster_log_append_seconds_count ") >= 1.0);
    assert!(value("roster_commit_seconds_count ") >= 1.0);
    assert!(value("roster_http_request_seconds_count{method=\"POST\",route=\"/v1/commands\",status=\"2xx\"}") >= 1.0);
    let cluster = api.get("/v1/cluster");
    assert_eq!(cluster["leader"], 1);
    assert_eq!(cluster["members"][0]["voter"], true);
}

/// `ctl events --set-retention` and `--set-min-level` each change only their own setting.
#[test]
fn event_settings_change_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    let before = api.get("/v1/events/settings");
    let (ok, out, err) = ctl(&node.addr, &["events", "--set-retention", "500"]);
    assert!(ok, "{out}{err}");
    let after = api.get("/v1/events/settings");
    assert_eq!(after["retention"], 500, "{after}");
    assert_eq!(after["min_level"], before["min_level"], "--set-retention alone changed the level: {after}");
    let (ok, out, err) = ctl(&node.addr, &["events", "--set-min-level", "warning"]);
    assert!(ok, "{out}{err}");
    let after = api.get("/v1/events/settings");
    assert_eq!((after["min_level"].as_str(), after["retention"].as_u64()), (Some("warning"), Some(500)), "{after}");
}

/// A changeset preview names the agents it reaches (paged) and warns of task configurations
/// left without a usable server; applying those needs an explicit confirmation.
#[test]
fn previews_show_reach_and_applying_a_lost_task_needs_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = common::Cluster::start(dir.path(), 3, &[]);
    let ep = cluster.endpoints();
    let setup = json!({"changes": [
        {"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 80}},
        {"add_server": {"name": "rt2", "host": "10.0.0.2", "port": 80}},
        {"create_cluster": {"name": "eu"}}, {"create_cluster": {"name": "us"}},
        {"register_agent": {"id": "a1"}}, {"register_agent": {"id": "a2"}}, {"register_agent": {"id": "a3"}},
        {"add_agent_to_cluster": {"cluster": "eu", "agent": "a1"}},
        {"add_agent_to_cluster": {"cluster": "eu", "agent": "a2"}},
        {"add_agent_to_cluster": {"cluster": "us", "agent": "a3"}},
        {"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt1"]}},
        {"set_servers": {"task": "billing", "cluster": "us", "servers": ["rt2"]}}
    ]});
    assert!(matches!(common::write_any(&cluster.addrs, "/v1/commands", &setup, "setup"), Some((200, _))));
    let (ok, out, err) = ctl(&ep, &["changesets", "create", "--description", "drain rt1"]);
    assert!(ok, "{err}");
    let cs = out.trim().strip_prefix("created changeset ").expect(&out).to_string();
    let (ok, _, err) = ctl(&ep, &["--changeset", &cs, "servers", "disable", "rt1"]);
    assert!(ok, "{err}");

    let leader = cluster.wait_leader(std::time::Duration::from_secs(10));
    let api = Api::new(cluster.node(leader));
    let p = api.get(&format!("/v1/changesets/{cs}/preview"));
    assert_eq!(p["reach"]["agents"], 2, "{p}");
    assert_eq!(p["reach"]["agent_ids"], json!(["a1", "a2"]), "{p}");
    assert_eq!(p["reach"]["lost"], json!([{"task": "billing", "cluster": "eu"}]), "{p}");
    let page = api.get(&format!("/v1/changesets/{cs}/preview?agents_limit=1"));
    assert_eq!((&page["reach"]["agent_ids"], &page["reach"]["next"]), (&json!(["a1"]), &json!("a1")), "{page}");
    let page = api.get(&format!("/v1/changesets/{cs}/preview?agents_limit=1&agents_after=a1"));
    assert_eq!((&page["reach"]["agent_ids"], &page["reach"]["next"]), (&json!(["a2"]), &Value::Null), "{page}");
    let (s, v) = api.request(Method::GET, &format!("/v1/changesets/{cs}/preview?agents_limit=0"), None, &[]);
    assert_eq!(s, 400, "{v}");
    let (ok, out, _) = ctl(&ep, &["changesets", "preview", &cs]);
    assert!(ok && out.contains("reaches 2 agent(s): a1, a2") && out.contains("task billing in cluster eu would have no usable server"), "{out}");

    let revision = |api: &Api| api.get("/v1/state/digest")["revision"].as_u64().unwrap();
    let before = revision(&api);
    let (s, v) = api.post(&format!("/v1/changesets/{cs}/apply"), json!(null), &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("confirmation_required")), "{v}");
    let (ok, _, err) = ctl(&ep, &["apply", &cs]);
    assert!(!ok && err.contains("--confirm"), "{err}");
    assert_eq!(revision(&api), before, "an unconfirmed apply changed something");
    let (ok, out, err) = ctl(&ep, &["apply", &cs, "--confirm"]);
    assert!(ok, "{out}{err}");
    assert_eq!(revision(&api), before + 1);
}

/// A server's address as one URL, both ways: `servers add --url` and `servers update --url`
/// set scheme, host, port and pool from it; the port defaults to 6700 (CLI and API).
#[test]
fn server_addresses_as_one_url_and_the_default_port() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    let ep = node.addr.as_str();
    let (ok, _, err) = ctl(ep, &["servers", "add", "rt1", "--url", "https://10.0.0.1:7000/?pool=blue"]);
    assert!(ok, "{err}");
    let rt1 = api.get("/v1/servers/rt1");
    assert_eq!((&rt1["scheme"], &rt1["host"], &rt1["port"], &rt1["pool"]), (&json!("https"), &json!("10.0.0.1"), &json!(7000), &json!("blue")), "{rt1}");
    assert_eq!(rt1["url"], "https://10.0.0.1:7000/?pool=blue");
    let (ok, _, err) = ctl(ep, &["servers", "update", "rt1", "--url", "http://10.0.0.2"]);
    assert!(ok, "{err}");
    let rt1 = api.get("/v1/servers/rt1");
    assert_eq!((&rt1["url"], &rt1["pool"]), (&json!("http://10.0.0.2:6700/"), &Value::Null), "{rt1}");
    let (ok, _, err) = ctl(ep, &["servers", "add", "rt2", "--host", "10.0.0.3"]);
    assert!(ok, "{err}");
    assert_eq!(api.get("/v1/servers/rt2")["port"], 6700);
    let (s, v) = api.post("/v1/servers", json!({"name": "rt3", "host": "10.0.0.4"}), &[]);
    assert!(s == 200 || s == 201, "{v}");
    assert_eq!(api.get("/v1/servers/rt3")["port"], 6700);
    let before = api.get("/v1/state/digest");
    for bad in ["10.0.0.1:80", "http://h/path", "http://h:99999/", "javascript://h/"] {
        let (ok, _, err) = ctl(ep, &["servers", "add", "rt9", "--url", bad]);
        assert!(!ok && err.contains("server URL") || err.contains("scheme") || err.contains("port"), "{bad}: {err}");
    }
    assert_eq!(api.get("/v1/state/digest"), before, "a refused URL changed something");
}

/// The command line's conventions: exit statuses (0 ok, 1 error, 2 usage, 3 conflict, 4
/// unavailable), endpoint failover, and generated completions and manual page.
#[test]
fn ctl_exit_statuses_failover_completions_and_man_page() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let code = |endpoints: &str, args: &[&str]| -> (i32, String) {
        let out = std::process::Command::new(common::roster_bin())
            .args(["ctl", "--endpoints", endpoints, "--ca"])
            .arg(common::secure().dir.join(roster::tls::CA_CERT))
            .arg("--token-file")
            .arg(common::secure().token_file("admin"))
            .args(args)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let dead = format!("127.0.0.1:{}", common::free_port());
    // A dead first endpoint is skipped.
    let both = format!("{dead},{}", node.addr);
    assert_eq!(code(&both, &["servers", "add", "rt1", "--host", "10.0.0.1"]).0, 0);
    assert_eq!(code(&both, &["-o", "json", "servers", "list"]).0, 0);
    let (c, out) = code(&node.addr, &["servers", "add", "rt1", "--host", "10.0.0.1"]);
    assert_eq!(c, 3, "a name that exists is a conflict: {out}");
    let (c, out) = code(&node.addr, &["servers", "get", "nope"]);
    assert_eq!(c, 1, "{out}");
    let (c, out) = code(&node.addr, &["servers", "add"]);
    assert_eq!(c, 2, "a usage error: {out}");
    let (c, out) = code(&dead, &["servers", "list"]);
    assert_eq!(c, 4, "no endpoint answers: {out}");

    let run = |args: &[&str]| std::process::Command::new(common::roster_bin()).args(args).output().unwrap();
    let bash = run(&["completions", "bash"]);
    let text = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.status.success() && text.contains("_roster") && text.contains("transfer-leader"), "{text}");
    for shell in ["zsh", "fish"] {
        assert!(run(&["completions", shell]).status.success(), "{shell}");
    }
    // The main commands show examples in their help, and the examples parse.
    for cmd in ["serve", "ctl", "agent", "resolve", "audit", "dev"] {
        let help = run(&[cmd, "--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success() && text.contains("Example"), "roster {cmd} --help shows no example:\n{text}");
    }
    let man = run(&["man"]);
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success() && text.contains(".TH roster") && text.contains("serve"), "{text}");
}

/// `-o table|json|yaml` is honoured by every command, single objects included, and
/// `cluster status` shows the indexes.
#[test]
fn output_formats_are_uniform() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let ep = node.addr.as_str();
    assert!(ctl(ep, &["servers", "add", "rt1", "--host", "10.0.0.1"]).0);
    for args in [&["servers", "get", "rt1"][..], &["servers", "list"], &["history", "1"], &["state"]] {
        let (ok, json_out, err) = ctl(ep, &[&["-o", "json"][..], args].concat());
        assert!(ok, "{args:?}: {err}");
        let parsed: Value = serde_json::from_str(&json_out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {json_out}"));
        let (ok, yaml_out, err) = ctl(ep, &[&["-o", "yaml"][..], args].concat());
        assert!(ok, "{args:?}: {err}");
        let from_yaml: Value = serde_yaml::from_str(&yaml_out).unwrap_or_else(|e| panic!("{args:?}: not YAML ({e}): {yaml_out}"));
        assert_eq!(from_yaml, parsed, "{args:?}: YAML and JSON disagree");
        let (ok, table, _) = ctl(ep, &args.to_vec());
        assert!(ok && serde_json::from_str::<Value>(&table).is_err(), "{args:?}: the table output is JSON: {table}");
    }
    let (ok, table, _) = ctl(ep, &["servers", "get", "rt1"]);
    assert!(ok && table.lines().any(|l| l.starts_with("host") && l.contains("10.0.0.1")), "{table}");
    let (ok, status, _) = ctl(ep, &["cluster", "status"]);
    assert!(ok && status.contains("last log index") && status.contains("applied"), "{status}");
}

/// List routes are paginated: a bounded default page, `limit` and `after`, the next page's
/// cursor in `X-Roster-Next`, pages read at the first page's revision (an auditing role reads
/// the past; a viewer is told the listing moved), filters, and `roster ctl` following pages.
#[test]
fn lists_are_paginated_at_one_revision_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n"));
    let api = Api::new(&node);
    // 1,001 servers (past the default page of 1,000), two clusters, 30 tasks.
    for chunk in [(1..=1000).collect::<Vec<u32>>(), vec![1001]] {
        let changes: Vec<Value> = chunk.iter().map(|i| json!({"add_server": {"name": format!("rt{i:04}"), "host": "10.0.0.1"}})).collect();
        assert_eq!(api.post("/v1/commands", json!({"changes": changes}), &[]).0, 200);
    }
    let mut changes = vec![json!({"create_cluster": {"name": "east"}}), json!({"create_cluster": {"name": "west"}}), json!({"disable_server": {"name": "rt0007"}})];
    for t in 0..30 {
        let (cluster, server) = if t % 3 == 0 { ("west", "rt0002") } else { ("east", "rt0001") };
        changes.push(json!({"set_servers": {"task": format!("task{t:02}"), "cluster": cluster, "servers": [server, "rt0003"]}}));
    }
    assert_eq!(api.post("/v1/commands", json!({"changes": changes}), &[]).0, 200);

    // Pages of 7 tasks, followed by cursor; a write between pages does not change the listing.
    let (s, first, next, revision) = api.get_page("/v1/tasks?limit=7", "admin");
    assert_eq!((s, first.as_array().unwrap().len(), next.as_deref()), (200, 7, Some("task06")));
    let revision = revision.unwrap();
    assert_eq!(api.post("/v1/commands", json!({"changes": [{"create_task": {"name": "task05b"}}]}), &[]).0, 200);
    let mut names: Vec<String> = first.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    let mut after = next;
    while let Some(a) = after {
        let (s, page, next, rev) = api.get_page(&format!("/v1/tasks?limit=7&after={a}&revision={revision}"), "auditor");
        assert_eq!((s, rev), (200, Some(revision)), "{page}");
        names.extend(page.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()));
        after = next;
    }
    assert_eq!(names, (0..30).map(|t| format!("task{t:02}")).collect::<Vec<_>>(), "every task once, none added after the first page");
    // A viewer may not read the past: it is told to list again.
    let (s, v, _, _) = api.get_page(&format!("/v1/tasks?limit=7&after=task06&revision={revision}"), "viewer");
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "revision_moved");

    // Filters.
    let (_, v, _, _) = api.get_page("/v1/tasks?cluster=west", "viewer");
    assert_eq!(v.as_array().unwrap().len(), 10);
    let (_, v, _, _) = api.get_page("/v1/tasks?server=rt0002", "viewer");
    assert!(v.as_array().unwrap().iter().all(|t| t.to_string().contains("rt0002")) && v.as_array().unwrap().len() == 10, "{v}");
    let (_, v, _, _) = api.get_page("/v1/servers?status=disabled", "viewer");
    assert_eq!(v.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect::<Vec<_>>(), ["rt0007"]);
    let (s, v, next, _) = api.get_page("/v1/servers", "viewer");
    assert_eq!((s, v.as_array().unwrap().len(), next.as_deref()), (200, 1000, Some("rt1000")), "a bounded default page");
    for bad in ["/v1/servers?limit=0", "/v1/servers?status=broken", "/v1/tasks?cluster=bad/name", "/v1/servers?cluster=east", "/v1/agent-clusters?colour=red"] {
        let (s, v, _, _) = api.get_page(bad, "viewer");
        assert_eq!(s, 400, "{bad}: {v}");
    }

    // The CLI follows the pages.
    let (ok, out, err) = ctl(&node.addr, &["-o", "json", "servers", "list"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 1001);
    let (ok, out, err) = ctl(&node.addr, &["tasks", "list", "--server", "rt0002"]);
    assert!(ok && out.lines().filter(|l| l.contains("rt0002")).count() == 10, "{out}{err}");
}
