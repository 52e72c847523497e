//! Agents' connections (served by the node's small HTTP/1.1 server, `server/h1.rs`) over a
//! real socket: keep-alive across watches and acks, `Expect: 100-continue`, pipelining,
//! `Connection: close`, a chunked body refused with 501, a client that goes away ending its
//! held watch at once, and a held watch answered when its configuration changes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Api, NodeProcess};
use serde_json::Value;

/// One parsed answer: status, lower-cased head text, body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads from `s` until `rest` holds at least `want` bytes.
fn fill(s: &mut TcpStream, rest: &mut Vec<u8>, want: usize) {
    let mut buf = [0u8; 4096];
    while rest.len() < want {
        let n = s.read(&mut buf).expect("reading an answer");
        assert!(n > 0, "the connection closed mid-answer: {:?}", String::from_utf8_lossy(rest));
        rest.extend_from_slice(&buf[..n]);
    }
}

/// Reads from `s` until `rest` holds `pattern`; returns where it starts.
fn fill_until(s: &mut TcpStream, rest: &mut Vec<u8>, pattern: &[u8]) -> usize {
    loop {
        if let Some(i) = rest.windows(pattern.len()).position(|w| w == pattern) {
            return i;
        }
        let have = rest.len();
        fill(s, rest, have + 1);
    }
}

/// Reads exactly one answer (a `Content-Length` or chunked body) from `s`, keeping any bytes
/// after it in `rest`.
fn read_answer(s: &mut TcpStream, rest: &mut Vec<u8>) -> Answer {
    let head_end = fill_until(s, rest, b"\r\n\r\n") + 4;
    let head = String::from_utf8_lossy(&rest[..head_end]).to_lowercase();
    rest.drain(..head_end);
    let status: u16 = head[9..12].parse().unwrap();
    let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(|v| v.trim().parse::<usize>().unwrap());
    let body = if let Some(len) = length {
        fill(s, rest, len);
        rest.drain(..len).collect()
    } else if head.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let line_end = fill_until(s, rest, b"\r\n");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
            rest.drain(..line_end + 2);
            fill(s, rest, size + 2);
            body.extend(rest.drain(..size));
            rest.drain(..2);
            if size == 0 {
                break body;
            }
        }
    } else {
        Vec::new()
    };
    Answer { status, head, body }
}

fn json(a: &Answer) -> Value {
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&a.body)))
}

fn connected(api: &Api, agent: &str) -> bool {
    let page = api.get("/v1/agents");
    let row = page["agents"].as_array().unwrap().iter().find(|r| r["id"] == agent).cloned().unwrap_or_default();
    row["connected"] == true
}

#[test]
fn agent_connections_keep_alive_pipeline_and_end_with_their_client() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let node = NodeProcess::start_with(&dir.path().join("n"), 1, &addr, "", &["--insecure"]);
    node.wait_ready(Duration::from_secs(30));
    let api = Api::insecure(&addr);

    // A watch from revision 0 answers at once (and registers the agent); an ack with
    // `Expect: 100-continue` on the same connection is invited, then answered.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    write!(s, "GET /v1/agents/a1/config?after=0&wait_ms=100 HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let a = read_answer(&mut s, &mut rest);
    assert_eq!(a.status, 200, "{}", a.head);
    let revision = json(&a)["revision"].as_u64().unwrap();
    let ack = format!("{{\"revision\":{revision}}}");
    write!(s, "POST /v1/agents/a1/ack HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n", ack.len()).unwrap();
    let cont = read_answer(&mut s, &mut rest);
    assert_eq!(cont.status, 100, "{}", cont.head);
    s.write_all(ack.as_bytes()).unwrap();
    let a = read_answer(&mut s, &mut rest);
    assert_eq!((a.status, json(&a)["acknowledged"].as_u64()), (200, Some(revision)), "{}", a.head);

    // Two watches sent at once are answered in order on the same connection (204: nothing
    // changed within their wait).
    let watch = format!("GET /v1/agents/a1/config?after={revision}&wait_ms=150 HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(format!("{watch}{watch}").as_bytes()).unwrap();
    for _ in 0..2 {
        let a = read_answer(&mut s, &mut rest);
        assert_eq!(a.status, 204, "{}", a.head);
    }

    // A request with a chunked body on this connection gets 501 and the connection closes.
    write!(s, "POST /v1/agents/a1/ack HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").unwrap();
    let a = read_answer(&mut s, &mut rest);
    assert_eq!(a.status, 501, "{}", a.head);
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0, "the connection stays open after 501");

    // `Connection: close` is honoured.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    write!(s, "GET /v1/agents/a1/config?after=0 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let a = read_answer(&mut s, &mut rest);
    assert!(a.status == 200 && a.head.contains("connection: close"), "{}", a.head);
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0, "the connection stays open after Connection: close");

    // A held watch counts the agent as connected; the client going away ends it at once
    // (long before its 60 s wait), on a connection h1 serves and on one hyper serves (its first
    // request was not an agent's).
    for hyper_first in [false, true] {
        let mut held = TcpStream::connect(&addr).unwrap();
        held.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        if hyper_first {
            write!(held, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            assert_eq!(read_answer(&mut held, &mut Vec::new()).status, 200);
        }
        write!(held, "GET /v1/agents/a1/config?after={revision}&wait_ms=60000 HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let t = Instant::now();
        while !connected(&api, "a1") {
            assert!(t.elapsed() < Duration::from_secs(10), "the held watch never counted (hyper first: {hyper_first})");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(held);
        let t = Instant::now();
        while connected(&api, "a1") {
            assert!(t.elapsed() < Duration::from_secs(10), "the watch of a client that went away is still held (hyper first: {hyper_first})");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // A held watch wakes with the change that concerns it, also on a connection hyper serves
    // (its first request was not an agent's).
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    write!(s, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut s, &mut rest).status, 200);
    write!(s, "GET /v1/agents/a1/config?after={revision}&wait_ms=30000 HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let t = Instant::now();
    while !connected(&api, "a1") {
        assert!(t.elapsed() < Duration::from_secs(10), "the held watch never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let changes = serde_json::json!({"changes": [
        {"add_server": {"name": "rt1", "host": "10.0.0.1", "port": 80}},
        {"create_cluster": {"name": "eu"}},
        {"add_agent_to_cluster": {"cluster": "eu", "agent": "a1"}},
        {"set_servers": {"task": "billing", "cluster": "eu", "servers": ["rt1"]}},
    ]});
    let (status, v) = api.post("/v1/commands", changes, &[]);
    assert_eq!(status, 200, "{v}");
    let a = read_answer(&mut s, &mut rest);
    assert_eq!(a.status, 200, "{}", a.head);
    let config = json(&a);
    assert!(config["revision"].as_u64().unwrap() > revision, "{config}");
    assert!(config.to_string().contains("rt1"), "{config}");

    // The route's metrics count held watches as answered (2xx), never as errors.
    let metrics = reqwest::blocking::get(format!("http://{addr}/metrics")).unwrap().text().unwrap();
    let watch_route = r#"route="/v1/agents/{id}/config""#;
    assert!(metrics.lines().any(|l| l.contains(watch_route) && l.contains(r#"status="2xx""#)), "{metrics}");
    assert!(!metrics.lines().any(|l| l.contains(watch_route) && l.contains(r#"status="5xx""#)), "{metrics}");
}

/// A node holds at most `--watches-max` watches: one more gets 503 (the agent tries another
/// node), and a slot frees when a held watch ends.
#[test]
fn watches_past_the_limit_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let node = NodeProcess::start_with(&dir.path().join("n"), 1, &addr, "", &["--insecure", "--watches-max", "2"]);
    node.wait_ready(Duration::from_secs(30));
    // Each agent's first watch (after=0) answers at once and registers it.
    let mut revision = 0;
    for agent in ["w1", "w2", "w3"] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /v1/agents/{agent}/config?after=0&wait_ms=100 HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let a = read_answer(&mut s, &mut Vec::new());
        assert_eq!(a.status, 200, "{}", a.head);
        revision = json(&a)["revision"].as_u64().unwrap();
    }
    let watch = |agent: &str, wait_ms: u64| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET /v1/agents/{agent}/config?after={revision}&wait_ms={wait_ms} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        (s, Vec::new())
    };
    let api = Api::insecure(&addr);
    let held: Vec<_> = ["w1", "w2"].iter().map(|a| watch(a, 60_000)).collect();
    let t = Instant::now();
    while !(connected(&api, "w1") && connected(&api, "w2")) {
        assert!(t.elapsed() < Duration::from_secs(10), "the two watches were never held");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut third, mut rest) = watch("w3", 60_000);
    let a = read_answer(&mut third, &mut rest);
    assert_eq!(a.status, 503, "{}", a.head);
    assert!(String::from_utf8_lossy(&a.body).contains("maximum number of agent watches"), "{:?}", String::from_utf8_lossy(&a.body));
    // One held watch ends: the next watch is held again (and answered 204 at its deadline).
    drop(held);
    let t = Instant::now();
    loop {
        let (mut s, mut rest) = watch("w3", 200);
        let a = read_answer(&mut s, &mut rest);
        if a.status == 204 {
            break;
        }
        assert_eq!(a.status, 503, "{}", a.head);
        assert!(t.elapsed() < Duration::from_secs(10), "the watch budget never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
