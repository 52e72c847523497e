//! The web console in a real browser: headless Chromium over WebDriver against a 3-node
//! secure cluster and an agent, doing the operator's whole workflow. Screenshots of every
//! page are written to `<target>/tmp/console-screenshots/`.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{secure, AgentProcess, Api, Cluster};
use serde_json::Value;

fn shots_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

fn sign_in(b: &Browser, addr: &str, token: &str) {
    b.delete_cookies();
    b.goto(&format!("https://{addr}/ui/servers"));
    assert!(b.url().ends_with("/ui/login"), "an anonymous visit goes to the sign-in page, not {}", b.url());
    b.type_into("#token", token);
    b.submit("#sign-in");
    assert!(b.url().contains("/ui/servers"), "signed in: {}", b.url());
}

/// Posts a form to the console outside the browser with the given session cookie.
fn post_form(addr: &str, cookie: &str, path: &str, form: &str) -> (u16, String) {
    let client = secure().client(None, Duration::from_secs(10));
    let r = client
        .post(format!("https://{addr}{path}"))
        .header("cookie", format!("roster_session={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn csrf_of(source: &str) -> String {
    let at = source.find("name=\"_csrf\" value=\"").expect("a page with a form") + "name=\"_csrf\" value=\"".len();
    source[at..at + 32].to_string()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_operator_configures_failover_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&dir.path().join("c"), 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let agent = AgentProcess::start("pc1", &cluster.endpoints(), &dir.path().join("pc1"));
    let addr = cluster.addrs[leader].clone();
    wait_until("the agent's registration", Duration::from_secs(20), || {
        Api::at(&addr).get("/v1/agents")["agents"].as_array().is_some_and(|a| a.iter().any(|x| x["id"] == "pc1"))
    });
    assert_eq!(agent.resolve("billing").1["source"], "local-default", "no configuration yet: the local default entry");

    let b = Browser::start(&shots_dir());
    b.goto(&format!("https://{addr}/ui/servers"));
    b.screenshot("01-sign-in");
    sign_in(&b, &addr, secure().token("ops"));

    // Register three servers (staged).
    for (name, host) in [("rt1", "10.0.0.1"), ("rt2", "10.0.0.2"), ("rt3", "10.0.0.3")] {
        b.type_into("#register input[name=name]", name);
        b.type_into("#register input[name=host]", host);
        assert_eq!(b.value("#register #url-field"), format!("http://{host}:6700/"), "the URL is built live from the fields");
        b.submit("#register button[type=submit]");
        assert!(b.text(".flash").contains("staged"), "{}", b.source());
    }
    // The other way: a URL typed in fills the fields, and registers as typed.
    b.type_into("#register input[name=name]", "rt4");
    b.type_into("#register #url-field", "https://10.0.0.4:7001/?pool=blue");
    assert_eq!(
        (b.value("#register input[name=host]"), b.value("#register input[name=port]"), b.value("#register input[name=pool]"), b.value("#register select[name=scheme]")),
        ("10.0.0.4".to_string(), "7001".to_string(), "blue".to_string(), "https".to_string())
    );
    b.submit("#register button[type=submit]");
    assert!(b.text("tr[data-server=rt4]").contains("https://10.0.0.4:7001/?pool=blue"), "{}", b.text("main"));
    assert!(b.text("#pending-bar").contains("4 pending changes"), "{}", b.text("#pending-bar"));
    // A name that is not a name is refused in place, and shown as text.
    b.type_into("#register input[name=name]", "<script>x</script>");
    b.type_into("#register input[name=host]", "10.0.0.9");
    b.submit("#register button[type=submit]");
    assert!(b.text("#error").contains("<script>x</script>"), "the refused name is shown as text");
    assert!(b.source().contains("&lt;script&gt;x&lt;/script&gt;"), "and escaped in the markup");
    assert_eq!(b.find_all("tr[data-server]").len(), 4);
    b.screenshot("02-servers-staged");

    // An agent cluster with the agent in it.
    b.goto(&format!("https://{addr}/ui/clusters"));
    b.type_into("#create-cluster input[name=cluster]", "floor1");
    b.submit("#create-cluster button");
    b.type_into("section[data-cluster=floor1] input[name=agent]", "pc1");
    b.submit("section[data-cluster=floor1] input[name=agent] ~ button");
    assert!(b.text("section[data-cluster=floor1]").contains("pc1"), "{}", b.text("main"));
    b.screenshot("03-clusters");

    // The task's failover list: add the three servers, move rt2 up, turn load balancing on.
    b.goto(&format!("https://{addr}/ui/tasks?task=billing&cluster=floor1"));
    for s in ["rt1", "rt2", "rt3"] {
        b.click(&format!("//form[@id='add-server']//option[text()='{s}']"));
        b.submit("#add-server button");
    }
    b.submit("li[data-server=rt2] form:nth-of-type(1) button");
    b.click("#load-balancing input[name=enabled]");
    b.submit("#load-balancing button");
    assert_eq!(b.texts("#failover li .server"), ["rt2", "rt1", "rt3"]);
    // rt1 gets weight 3, rt3 goes to the second tier.
    b.type_into("li[data-server=rt1] input[name=weight]", "3");
    b.submit("li[data-server=rt1] form.weighting-form button");
    b.type_into("li[data-server=rt3] input[name=priority]", "2");
    b.submit("li[data-server=rt3] form.weighting-form button");
    assert_eq!(b.text("li[data-server=rt1] .weighting"), "tier 1 · weight 3");
    assert_eq!(b.text("li[data-server=rt3] .weighting"), "tier 2 · weight 1");
    b.screenshot("04-task-configuration");

    // Preview, then Apply All Changes with a comment that must stay text.
    b.submit("#pending-bar a[href='/ui/changes']");
    assert!(b.text("#reach").contains("1 agent"), "{}", b.text("#reach"));
    b.screenshot("05-preview");
    b.type_into("#comment", "floor 1 goes live <script>alert(1)</script>");
    b.submit("#apply-all");
    assert!(b.text(".flash").contains("applied as revision"), "{}", b.text("main"));
    assert!(b.source().contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the comment is escaped in the history");
    b.screenshot("06-history");
    let head = Api::at(&addr).get("/v1/cluster")["revision"].as_u64().unwrap();

    // History filters: by actor, by entity, by time (UTC), and a time that is not one.
    b.goto(&format!("https://{addr}/ui/history?actor=ops&entity=task:billing"));
    assert_eq!(b.find_all("#history tbody tr").len(), 1, "{}", b.text("main"));
    b.goto(&format!("https://{addr}/ui/history?since=2000-01-01&until=2000-01-02"));
    assert!(b.text("main").contains("No revisions match"), "{}", b.text("main"));
    b.goto(&format!("https://{addr}/ui/history?since=yesterday"));
    assert!(b.text("#error").contains("is not a UTC time"), "{}", b.text("main"));
    b.goto(&format!("https://{addr}/ui/history"));
    // The signed tree head auditors check, as the API serves it.
    b.click("#tree-head summary");
    let tree_head = Api::at(&addr).get("/v1/history/tree-head");
    assert_eq!(b.text("#tree-head pre").trim(), tree_head["checkpoint"].as_str().unwrap().trim());
    b.screenshot("06-tree-head");

    // History: a revision, its diff with the one before, and the state at it.
    b.submit("#history tbody tr:first-child a");
    b.submit("//a[text()='Diff with the previous revision']");
    assert!(b.text("#diff").contains("billing/floor1"), "{}", b.text("main"));
    b.screenshot("06-diff");
    b.goto(&format!("https://{addr}/ui/state"));
    assert!(b.text("main").contains("rt2 → rt1 → rt3"), "{}", b.text("main"));

    // A stale preview: someone else applies first; Apply All Changes is refused, not merged.
    b.goto(&format!("https://{addr}/ui/servers"));
    b.submit("tr[data-server=rt1] form:nth-of-type(1) button");
    b.submit("#pending-bar a[href='/ui/changes']");
    let (s, v) = Api::at(&addr).post("/v1/commands", serde_json::json!({"changes": [{"add_server": {"name": "rt9", "host": "10.0.0.9", "port": 80}}]}), &[]);
    assert_eq!(s, 200, "{v}");
    b.submit("#apply-all");
    assert!(b.text("#error").contains("someone else applied changes since you previewed"), "{}", b.text("main"));
    b.screenshot("06-stale-preview");
    b.submit("#pending-bar form button");
    assert!(b.text("#pending-bar").contains("No pending changes"), "discarded: {}", b.text("#pending-bar"));

    agent.wait_revision(head, Duration::from_secs(20));
    let (status, answer) = agent.resolve("billing");
    assert_eq!(status, 200, "{answer}");
    let config = Api::at(&addr).get("/v1/tasks/billing/configs/floor1");
    let order: Vec<&str> = config["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(order, ["rt2", "rt1", "rt3"], "{config}");
    assert_eq!(config["load_balancing"], true, "{config}");

    // The leader stops; the operator keeps working through another node with the same session.
    cluster.nodes[leader].as_mut().unwrap().kill();
    let other = (0..3).find(|i| *i != leader).unwrap();
    let addr2 = cluster.addrs[other].clone();
    wait_until("a new leader", Duration::from_secs(30), || cluster.status(other).is_some_and(|s| s["leader"].as_u64().is_some_and(|l| l != leader as u64 + 1)));
    b.goto(&format!("https://{addr2}/ui/servers"));
    assert!(b.url().contains("/ui/servers"), "the session holds on another node: {}", b.url());
    b.submit("tr[data-server=rt3] button.urgent");
    assert!(b.text(".flash").contains("applied as revision"), "{}", b.text("main"));
    assert!(b.text("tr[data-server=rt3]").contains("Disabled"), "{}", b.text("tr[data-server=rt3]"));
    b.screenshot("07-servers-after-failover");

    // Leaving a task without a usable server takes a tick: rt3 is disabled; drain rt1 and rt2.
    b.submit("tr[data-server=rt1] form:nth-of-type(1) button");
    b.submit("tr[data-server=rt2] form:nth-of-type(1) button");
    b.submit("#pending-bar a[href='/ui/changes']");
    assert!(b.text("#lost").contains("billing in floor1"), "{}", b.text("main"));
    b.screenshot("07-lost-warning");
    b.submit("#apply-all");
    assert!(b.text("#error").contains("Apply anyway"), "{}", b.text("main"));
    assert_eq!(Api::at(&addr2).get("/v1/servers/rt1")["status"], "enabled", "applied without the tick");
    b.click("#confirm-lost input");
    b.submit("#apply-all");
    assert!(b.text(".flash").contains("applied as revision"), "{}", b.text("main"));
    let enable = serde_json::json!({"changes": [{"enable_server": {"name": "rt1"}}, {"enable_server": {"name": "rt2"}}]});
    let (s, v) = Api::at(&addr2).post("/v1/commands", enable, &[]);
    assert_eq!(s, 200, "{v}");

    // CSRF: the operator's own session, without the form's token or with another's.
    let ops_cookie = b.cookie("roster_session");
    let (s, body) = post_form(&addr2, &ops_cookie, "/ui/servers", "action=disable&name=rt1");
    assert_eq!(s, 403, "a post without a CSRF token: {body}");
    let (s, _) = post_form(&addr2, &ops_cookie, "/ui/servers", "action=disable&name=rt1&_csrf=00000000000000000000000000000000");
    assert_eq!(s, 403, "a post with a wrong CSRF token");

    for page in ["events", "cluster", "history"] {
        b.goto(&format!("https://{addr2}/ui/{page}"));
        b.screenshot(&format!("08-{page}"));
    }

    // A viewer sees no edit controls, and the server refuses a forged post anyway.
    sign_in(&b, &addr2, secure().token("viewer"));
    assert!(b.find_all("#register").is_empty() && b.find_all("tr[data-server] button").is_empty(), "no edit buttons for a viewer");
    b.goto(&format!("https://{addr2}/ui/tasks?task=billing&cluster=floor1"));
    assert!(b.find_all("#failover button").is_empty() && b.find_all("#add-server").is_empty());
    b.screenshot("09-viewer");
    let viewer_cookie = b.cookie("roster_session");
    let csrf = csrf_of(&b.source());
    let (s, body) = post_form(&addr2, &viewer_cookie, "/ui/servers", &format!("action=disable&name=rt1&_csrf={csrf}"));
    assert_eq!(s, 403, "a viewer's forged post: {body}");
    let rt1: Value = Api::at(&addr2).get("/v1/servers/rt1");
    assert_eq!(rt1["status"], "enabled", "nothing changed: {rt1}");

    // Revoking the token ends its sessions on every node.
    let api = Api::at(&addr2);
    let (s, v) = api.post("/v1/tokens", serde_json::json!({"name": "temp-ops", "role": "operator"}), &[]);
    assert_eq!(s, 201, "{v}");
    sign_in(&b, &addr2, v["token"].as_str().unwrap());
    let (s, v) = api.request(reqwest::Method::DELETE, "/v1/tokens/temp-ops", None, &[]);
    assert_eq!(s, 200, "{v}");
    let third = (0..3).find(|i| *i != leader && *i != other).unwrap();
    wait_until("the revocation on every node", Duration::from_secs(10), || {
        b.goto(&format!("https://{}/ui/servers", cluster.addrs[third]));
        b.url().ends_with("/ui/login")
    });

    // An admin manages tokens (the secret is shown once) and nodes.
    sign_in(&b, &addr2, secure().token("admin"));
    // The events page follows the event log without a reload by hand (token events are not
    // revisions, so this is the event wake-up, not the revision one).
    b.goto(&format!("https://{addr2}/ui/events"));
    let (s, v) = Api::at(&addr2).post("/v1/tokens", serde_json::json!({"name": "live-check", "role": "viewer"}), &[]);
    assert_eq!(s, 201, "{v}");
    wait_until("the events page to show the new event", Duration::from_secs(15), || b.source().contains("token live-check (viewer) created"));
    b.goto(&format!("https://{addr2}/ui/tokens"));
    b.type_into("#create-token input[name=name]", "ui-made");
    b.click("//form[@id='create-token']//option[text()='viewer']");
    b.submit("#create-token button");
    let made = b.text("#new-secret");
    assert!(made.starts_with("rst_"), "{}", b.text("main"));
    b.screenshot("10-tokens");
    b.goto(&format!("https://{addr2}/ui/cluster"));
    assert!(!b.find_all("#add-node").is_empty() && !b.find_all("#remove-node").is_empty(), "node forms for an admin");
    // The stopped node is shown unreachable, and only it.
    let members = b.text("#members");
    let stopped = &cluster.addrs[leader];
    assert_eq!(members.matches("unreachable").count(), 1, "{members}");
    assert!(members.lines().any(|l| l.contains(stopped.as_str()) && l.contains("unreachable")), "{members}");
    b.screenshot("10-cluster-admin");
    sign_in(&b, &addr2, &made);
    assert!(b.text("nav .who").contains("ui-made (viewer)"), "{}", b.text("nav"));

    // The agents table follows deployments: open it on the node the agent talks to, change
    // the agent's configuration elsewhere, and the page shows the acknowledged revision.
    let agent_node = agent.status()["endpoint"].as_str().unwrap().to_string();
    sign_in(&b, &agent_node, secure().token("admin"));
    b.goto(&format!("https://{agent_node}/ui/clusters"));
    // The long poll behind it answers on the acknowledgement itself, not only on revisions.
    let session = b.cookie("roster_session");
    let poll = |query: &str| -> Value {
        let client = secure().client(None, Duration::from_secs(40));
        let r = client.get(format!("https://{agent_node}/ui/wait?{query}")).header("cookie", format!("roster_session={session}")).send().unwrap();
        r.json().unwrap()
    };
    let now = poll("after=0");
    let (head, acks) = (now["revision"].as_u64().unwrap(), now["acks"].as_u64().unwrap());
    let waiter = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let started = Instant::now();
            // Past the next revision: only an acknowledgement can answer early.
            (poll(&format!("after={}&acks_after={acks}", head + 1)), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let (s, v) = Api::at(&agent_node).post("/v1/commands", serde_json::json!({"changes": [{"move_server": {"task": "billing", "cluster": "floor1", "server": "rt1", "direction": "up"}}]}), &[]);
        assert_eq!(s, 200, "{v}");
        (v["committed"]["revision"].as_u64().unwrap(), waiting.join().unwrap())
    });
    let (moved, (answer, waited)) = waiter;
    assert!(answer["acks"].as_u64().unwrap() > acks && waited < Duration::from_secs(20), "no early answer on the ack: {answer} after {waited:?}");
    agent.wait_revision(moved, Duration::from_secs(20));
    wait_until("the agents page to show the acknowledged revision", Duration::from_secs(15), || {
        b.source().contains(&format!("<tr data-agent=\"pc1\"><td>pc1</td><td class=\"agent-state\">connected</td><td>floor1</td><td class=\"deployed\">{moved}</td>"))
    });
    // A failure the agent reports shows on its row (the report marks the server failed, a
    // revision the page follows).
    agent.report_failure("billing", "rt1");
    wait_until("the agents page to show the reported server", Duration::from_secs(15), || {
        b.find_all("tr[data-agent=pc1] td.reported").first().is_some() && b.text("tr[data-agent=pc1] td.reported").contains("rt1")
    });
    b.screenshot("11-agents");

    // Signing out ends the session.
    b.submit("nav .who button");
    assert!(b.url().ends_with("/ui/login"));
    let (s, _) = post_form(&addr2, "not-a-session", "/ui/servers", "action=disable&name=rt1");
    assert_eq!(s, 401);
    eprintln!("console screenshots: {}", shots_dir().display());
}

#[test]
fn the_console_refuses_what_it_should_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::NodeProcess::single(&dir.path().join("n"));
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&secure().ca_pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |p: &str| format!("https://{}{p}", node.addr);

    // Without a session: pages send to sign-in, posts are refused; every answer is framed out.
    let r = client.get(url("/ui/servers")).send().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r = client.post(url("/ui/servers")).body("action=disable&name=rt1").send().unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Sign-in needs the form's CSRF token bound to its pre-session cookie, and a valid token.
    let r = client.post(url("/ui/login")).form(&[("token", secure().token("ops"))]).send().unwrap();
    assert_eq!(r.status().as_u16(), 403, "a sign-in post without the form's CSRF token");
    let page = client.get(url("/ui/login")).send().unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(page.headers()["set-cookie"].to_str().unwrap().contains("SameSite=Strict"));
    let csrf = csrf_of(&page.text().unwrap());
    let r = client.post(url("/ui/login")).header("cookie", &cookie).form(&[("_csrf", csrf.as_str()), ("token", "rst_not-a-token")]).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().unwrap().contains("not valid"));
    let r = client.post(url("/ui/login")).header("cookie", &cookie).form(&[("_csrf", csrf.as_str()), ("token", secure().token("agent-file-a1"))]).send().unwrap();
    assert_eq!(r.status().as_u16(), 403, "agent tokens do not sign in");
    let r = client.post(url("/ui/login")).header("cookie", &cookie).form(&[("_csrf", csrf.as_str()), ("token", secure().token("ops"))]).send().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=28800", "Path=/ui"] {
        assert!(set.contains(attr), "the session cookie lacks {attr}: {set}");
    }
    let session = set.split(';').next().unwrap().trim_start_matches("roster_session=").to_string();

    // A forged session (its payload edited) is no session.
    let forged = format!("A{}", &session[1..]);
    assert_eq!(post_form(&node.addr, &forged, "/ui/servers", "action=disable&name=rt1").0, 401);

    // A form larger than the console takes is refused before it is read.
    let big = format!("action=register&name={}", "x".repeat(100 * 1024));
    assert_eq!(post_form(&node.addr, &session, "/ui/servers", &big).0, 413);

    // Bad input in a well-formed form: a clear error, in place, and nothing staged.
    let page = client.get(url("/ui/servers")).header("cookie", format!("roster_session={session}")).send().unwrap().text().unwrap();
    let csrf = csrf_of(&page);
    let (s, body) = post_form(&node.addr, &session, "/ui/servers", &format!("_csrf={csrf}&action=register&name=rt1&host=10.0.0.1&port=99999"));
    assert_eq!(s, 200, "back on the page (the client follows the redirect)");
    assert!(body.contains("id=\"error\"") && body.contains("is not 1..65535"), "{body}");
    let changesets = Api::new(&node).get("/v1/changesets");
    assert!(changesets.as_array().is_none_or(|a| a.iter().all(|c| c["changes"].as_array().is_none_or(|x| x.is_empty()))), "{changesets}");
    let (s, body) = post_form(&node.addr, &session, "/ui/servers", &format!("_csrf={csrf}&action=explode&name=rt1"));
    assert_eq!(s, 200);
    assert!(body.contains("unknown action"), "an unknown action is answered with an error message: {body}");
}

#[test]
fn an_insecure_node_serves_the_console_without_sign_in_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let node = common::NodeProcess::start_with(&dir.path().join("n"), 1, &addr, "", &["--insecure"]);
    node.wait_ready(Duration::from_secs(30));
    let page = reqwest::blocking::get(format!("http://{addr}/ui/servers")).unwrap();
    assert_eq!(page.status().as_u16(), 200, "no sign-in on an insecure node");
    let body = page.text().unwrap();
    assert!(body.contains("Insecure mode"), "the banner says so: {body}");
    // Forms still carry CSRF tokens: a post without one changes nothing.
    let r = reqwest::blocking::Client::new().post(format!("http://{addr}/ui/servers")).body("action=register&name=rt1&host=h&port=1").send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
}
