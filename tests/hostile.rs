//! Hostile input through the real router over a real socket: random JSON (wrong types, huge
//! strings, deep nesting, unknown fields) and random path segments on every route never get a
//! 5xx, never crash the node, and a rejected request never changes the state.

mod common;

use common::{Api, NodeProcess};
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/commands"),
    ("POST", "/v1/servers"),
    ("GET", "/v1/servers/{a}"),
    ("PATCH", "/v1/servers/{a}"),
    ("DELETE", "/v1/servers/{a}"),
    ("POST", "/v1/servers/{a}/enable"),
    ("POST", "/v1/agents"),
    ("POST", "/v1/agent-clusters"),
    ("PUT", "/v1/agent-clusters/{a}/agents/{b}"),
    ("POST", "/v1/tasks"),
    ("PUT", "/v1/tasks/{a}/configs/{b}"),
    ("POST", "/v1/tasks/{a}/configs/{b}/servers"),
    ("POST", "/v1/tasks/{a}/configs/{b}/servers/{c}/move"),
    ("PUT", "/v1/tasks/{a}/configs/{b}/load-balancing"),
    ("POST", "/v1/changesets"),
    ("POST", "/v1/changesets/{a}/changes"),
    ("POST", "/v1/changesets/{a}/apply"),
    ("GET", "/v1/changesets/{a}/preview"),
    ("GET", "/v1/history/{a}"),
    ("GET", "/v1/agents/{a}/config"),
    ("POST", "/v1/agents/{a}/ack"),
    ("POST", "/v1/agents/{a}/failures"),
    ("PUT", "/v1/events/settings"),
    ("POST", "/v1/cluster/nodes"),
    ("DELETE", "/v1/cluster/nodes/{a}"),
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z0-9 ._-]{0,12}".prop_map(Value::String),
        (1usize..200_000).prop_map(|n| Value::String("x".repeat(n))),
        Just(json!("rt1")),
        Just(json!("\\u0000\\n\\t<script>")),
    ];
    leaf.prop_recursive(40, 200, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("host".to_string()),
                    Just("port".to_string()),
                    Just("servers".to_string()),
                    Just("changes".to_string()),
                    Just("add_server".to_string()),
                    Just("revision".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("rt1".to_string()),
        "[a-zA-Z0-9._-]{1,70}",
        "[%a-f0-9 /?#]{1,10}".prop_map(|s| s.replace(' ', "%20").replace('/', "%2F").replace('?', "%3F").replace('#', "%23")),
        Just("cs-1".to_string()),
        Just("99999999999999999999999".to_string()),
    ]
}

#[test]
fn random_requests_never_5xx_and_rejections_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n1"));
    let api = Api::new(&node);
    let (s, _) = api.post(
        "/v1/commands",
        json!({"changes": [{"add_server": {"name": "rt1", "host": "h", "port": 1}}, {"create_cluster": {"name": "eu"}}]}),
        &[],
    );
    assert_eq!(s, 200);
    let client = common::secure().admin(std::time::Duration::from_secs(20));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() });
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let strategy = (0..ROUTES.len(), arb_segment(), arb_segment(), arb_segment(), arb_json(), any::<bool>(), prop::option::weighted(0.2, 0..5usize));
    runner
        .run(&strategy, |(r, a, b, c, body, raw_garbage, other_method)| {
            let (method, template) = ROUTES[r];
            let method = other_method.map(|m| methods[m]).unwrap_or(method);
            let path = template.replace("{a}", &a).replace("{b}", &b).replace("{c}", &c);
            let before = api.digest();
            let mut req = client.request(Method::from_bytes(method.as_bytes()).unwrap(), node.url(&path));
            req = if raw_garbage {
                req.header("content-type", "application/json").body(format!("{{{}", body))
            } else {
                req.json(&body)
            };
            let resp = req.send().expect("the node answers");
            let status = resp.status().as_u16();
            let text = resp.text().unwrap_or_default();
            prop_assert!(status < 500, "{method} {path} -> {status}: {text}");
            if status >= 400 {
                let v: Value = serde_json::from_str(&text).map_err(|_| TestCaseError::fail(format!("non-JSON error: {text}")))?;
                prop_assert!(v["error"]["code"].is_string(), "{v}");
                prop_assert_eq!(api.digest(), before, "a rejected request changed the state");
            }
            Ok(())
        })
        .unwrap();
    // The node is still healthy.
    assert_eq!(api.get("/healthz")["status"], "ok");
}

/// Slow or idle connections are closed after the header read timeout (with TLS: the
/// handshake gets the same budget), while a normal request on another connection is served.
#[test]
fn slow_and_idle_connections_time_out() {
    let dir = tempfile::tempdir().unwrap();
    for secure in [true, false] {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let mut extra = vec!["--header-read-timeout-ms", "500"];
        if !secure {
            extra.push("--insecure");
        }
        let node = NodeProcess::start_with(&dir.path().join(format!("n-{secure}")), 1, &addr, "", &extra);
        node.wait_ready(std::time::Duration::from_secs(30));
        check_slow_and_idle(&node, secure);
    }
}

fn check_slow_and_idle(node: &NodeProcess, secure: bool) {
    use std::io::{Read, Write};
    let addr = node.addr.clone();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap(); // never finishes the head
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for (what, conn) in [("slow", &mut slow), ("idle", &mut idle)] {
        conn.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        // Closed by the server: EOF (possibly after an error response), or a reset.
        let mut total = Vec::new();
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{what} connection was not closed: {e}"),
            }
        }
        assert!(!String::from_utf8_lossy(&total).contains("200 OK"), "{what} connection was served");
    }
    let api = if secure { Api::new(node) } else { Api::insecure(&node.addr) };
    assert_eq!(api.get("/healthz")["status"], "ok");
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A raw TLS connection to a node, trusting the test CA.
fn tls_connect(addr: &str) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &common::secure().ca_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host: std::net::SocketAddr = addr.parse().unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(host.ip().into());
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads what the server sends until it closes the connection or `within` passes; returns
/// the text and how long it took.
fn read_answer(s: &mut Tls, within: std::time::Duration) -> (String, std::time::Duration) {
    use std::io::Read;
    let started = std::time::Instant::now();
    s.sock.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One whole answer is enough when the server keeps the connection.
                let text = String::from_utf8_lossy(&out);
                if text.contains("\r\n\r\n") && text.contains('}') {
                    break;
                }
            }
            Err(_) => break,
        }
        if started.elapsed() > within {
            break;
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

/// Security (issue 18, items 3, 9, 10): access is checked from the request head, before any
/// body byte is read; an allowed body must arrive in time; oversized heads and duplicated
/// credentials are refused.
#[test]
fn bodies_are_read_only_after_access_is_checked() {
    use std::io::Write;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::single(&dir.path().join("n"));
    let addr = node.addr.clone();
    let head = |extra: &str| {
        format!("POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n{extra}\r\n")
    };

    // A token-less client that declares 1 MB and trickles: answered 401 at once (after a short
    // bounded drain), not after the body.
    let mut slow = tls_connect(&addr);
    slow.write_all(head("").as_bytes()).unwrap();
    slow.write_all(b"{\"changes\":").unwrap();
    slow.flush().unwrap();
    let (answer, took) = read_answer(&mut slow, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 401"), "a token-less slow body got: {answer:?}");
    assert!(took < Duration::from_secs(5), "the 401 took {took:?}");

    // Expect: 100-continue without a token: 401, and never 100 Continue.
    let mut cont = tls_connect(&addr);
    cont.write_all(head("Expect: 100-continue\r\n").as_bytes()).unwrap();
    cont.flush().unwrap();
    let (answer, _) = read_answer(&mut cont, Duration::from_secs(10));
    assert!(!answer.contains("100 Continue"), "a token-less client was invited to send its body: {answer:?}");
    assert!(answer.contains(" 401 "), "{answer:?}");

    // The same on a connection an agent's request opened (served by the node's own small
    // HTTP/1.1 server rather than hyper).
    let mut agent = tls_connect(&addr);
    let ack = format!("POST /v1/agents/a1/ack HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n");
    agent.write_all(ack.as_bytes()).unwrap();
    agent.flush().unwrap();
    let (answer, _) = read_answer(&mut agent, Duration::from_secs(10));
    assert!(!answer.contains("100 Continue"), "a token-less agent connection was invited to send its body: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");

    // Duplicate Authorization headers are refused.
    let token = common::secure().token("admin");
    let mut dup = tls_connect(&addr);
    let req = format!("GET /v1/servers HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAuthorization: Bearer x\r\n\r\n");
    dup.write_all(req.as_bytes()).unwrap();
    let (answer, _) = read_answer(&mut dup, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 400"), "duplicate Authorization: {answer:?}");

    // A 100 KB head is refused (the documented limit is 64 KiB).
    let mut big = tls_connect(&addr);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {}\r\n\r\n", "a".repeat(100 * 1024));
    let _ = big.write_all(req.as_bytes());
    let (answer, _) = read_answer(&mut big, Duration::from_secs(10));
    assert!(!answer.contains("200 OK"), "a 100 KB head was served: {:?}", &answer[..answer.len().min(200)]);

    // With a valid token, a body that never finishes gets 408 within the body deadline.
    let mut stalled = tls_connect(&addr);
    stalled.write_all(head(&format!("Authorization: Bearer {token}\r\n")).as_bytes()).unwrap();
    stalled.write_all(b"{\"changes\":").unwrap();
    stalled.flush().unwrap();
    let (answer, took) = read_answer(&mut stalled, Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 408"), "a stalled body got: {answer:?} after {took:?}");

    // The node still serves.
    assert_eq!(Api::new(&node).get("/healthz")["status"], "ok");
}
