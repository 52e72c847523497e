//! HTTP clients of the workload and the recorder every operation goes through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

use crate::model::{Op, OpKind, Status};

/// A request (write or read) that gets no answer in this time is indeterminate. Above the
/// node's own 10 s commit timeout, so a slow commit still gets its answer.
pub const REQUEST_TIMEOUT_MS: u64 = 12_000;
/// Attempts of one write (same idempotency key, different nodes).
pub const WRITE_ATTEMPTS_MAX: u32 = 3;

/// Microseconds since the run started.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }
    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Operations the fault injector may record past the workload's limit.
pub const INJECTOR_OPS_RESERVE: usize = 200_000;

/// Every operation, recorded when it begins (as indeterminate) and updated when it ends, so
/// an operation cut off by the end of the run still counts as possibly applied.
pub struct Recorder {
    pub clock: Clock,
    ops: Mutex<Vec<Op>>,
    next: AtomicU64,
    pub limit: usize,
}

impl Recorder {
    pub fn new(clock: Clock, limit: usize) -> Self {
        Self { clock, ops: Mutex::new(Vec::new()), next: AtomicU64::new(1), limit }
    }

    /// Starts an operation; None when the history is full (the caller stops). The fault
    /// injector's own writes (`probe`, `filler`, the final `marker`) may use `INJECTOR_OPS_RESERVE` more, so a
    /// long run whose workload has stopped at the limit still checks recovery after every
    /// fault instead of reporting it as a liveness failure.
    pub fn begin(&self, client: &str, kind: OpKind) -> Option<usize> {
        let mut ops = self.ops.lock().expect("recorder lock");
        let injector = client == "probe" || client == "marker" || client.starts_with("filler");
        let limit = if injector { self.limit + INJECTOR_OPS_RESERVE } else { self.limit };
        if ops.len() >= limit {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        ops.push(Op {
            id,
            client: client.to_string(),
            kind: Some(kind),
            invoke_us: self.clock.now_us(),
            complete_us: u64::MAX,
            status: Some(Status::Info),
            ..Op::default()
        });
        Some(ops.len() - 1)
    }

    /// Fills in details of a running operation (key, expected revision, agent, after).
    pub fn update(&self, idx: usize, f: impl FnOnce(&mut Op)) {
        let mut ops = self.ops.lock().expect("recorder lock");
        f(&mut ops[idx]);
    }

    /// Ends an operation.
    pub fn end(&self, idx: usize, f: impl FnOnce(&mut Op)) {
        let now = self.clock.now_us();
        let mut ops = self.ops.lock().expect("recorder lock");
        let op = &mut ops[idx];
        f(op);
        op.complete_us = now;
    }

    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().expect("recorder lock"))
    }

    pub fn len(&self) -> usize {
        self.ops.lock().expect("recorder lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .connect_timeout(Duration::from_millis(1_000))
        // Below the nodes' header read timeout, so a pooled connection is never reused
        // after the server closed it.
        .pool_idle_timeout(Duration::from_millis(3_000))
        .build()
        .expect("http client")
}

/// One attempt of a write.
#[derive(Debug)]
pub enum Attempt {
    Acked(u64),
    /// Certainly not applied by this attempt (not sent, or rejected).
    Definite(String),
    /// Maybe applied.
    Maybe(String),
}

/// A rejection that retrying cannot change.
fn final_rejection(a: &Attempt) -> bool {
    matches!(a, Attempt::Definite(m) if !m.starts_with("connect"))
}

pub async fn write_attempt(http: &reqwest::Client, addr: &str, body: &Value, key: &str, actor: &str, expected: Option<u64>) -> Attempt {
    let mut req = http
        .post(format!("http://{addr}/v1/commands"))
        .header("idempotency-key", key)
        .header("x-roster-actor", actor)
        .json(body);
    if let Some(e) = expected {
        req = req.header("x-roster-expected-revision", e.to_string());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Attempt::Definite(format!("connect: {e}")),
        Err(e) => return Attempt::Maybe(format!("request: {e}")),
    };
    let status = resp.status().as_u16();
    let v: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => return Attempt::Maybe(format!("HTTP {status}, unreadable body: {e}")),
    };
    match status {
        200 | 201 => match v["committed"]["revision"].as_u64() {
            Some(r) => Attempt::Acked(r),
            None => Attempt::Maybe(format!("HTTP {status} without a revision: {v}")),
        },
        400..=499 => Attempt::Definite(format!("HTTP {status} {}", v["error"]["code"].as_str().unwrap_or("?"))),
        _ => Attempt::Maybe(format!("HTTP {status} {}", v["error"]["code"].as_str().unwrap_or("?"))),
    }
}

/// A write with up to `WRITE_ATTEMPTS_MAX` attempts on random nodes with the same key,
/// recorded as one operation. Returns the revision if acknowledged.
#[allow(clippy::too_many_arguments)]
pub async fn write_op(
    rec: &Recorder,
    http: &reqwest::Client,
    rng: &mut StdRng,
    addrs: &[String],
    client: &str,
    key: String,
    body: &Value,
    expected: Option<u64>,
    stop_retrying: &(dyn Fn() -> bool + Sync),
) -> Option<u64> {
    let kind = if expected.is_some() { OpKind::CasWrite } else { OpKind::Write };
    let idx = rec.begin(client, kind)?;
    rec.update(idx, |o| {
        o.key = Some(key.clone());
        o.expected = expected;
    });
    let actor = format!("chaos-{client}");
    let mut maybe: Option<String> = None;
    let mut last_err = String::new();
    let mut attempts = 0;
    let mut node = String::new();
    let mut acked = None;
    while attempts < WRITE_ATTEMPTS_MAX {
        attempts += 1;
        node = addrs[rng.gen_range(0..addrs.len())].clone();
        let a = write_attempt(http, &node, body, &key, &actor, expected).await;
        match a {
            Attempt::Acked(r) => {
                acked = Some(r);
                break;
            }
            Attempt::Maybe(ref m) => {
                maybe.get_or_insert_with(|| m.clone());
                last_err = m.clone();
            }
            Attempt::Definite(ref m) => last_err = m.clone(),
        }
        if final_rejection(&a) || stop_retrying() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..250))).await;
    }
    rec.end(idx, |o| {
        o.attempts = attempts;
        o.node = Some(node);
        match acked {
            Some(r) => {
                o.status = Some(Status::Ok);
                o.revision = Some(r);
            }
            None => {
                o.status = Some(if maybe.is_some() { Status::Info } else { Status::Fail });
                o.error = Some(match &maybe {
                    Some(m) if *m != last_err => format!("{last_err} (earlier: {m})"),
                    _ => last_err,
                });
            }
        }
    });
    acked
}

/// A digest read on `addr` (linearizable or local), recorded. Returns the revision read.
pub async fn read_op(rec: &Recorder, http: &reqwest::Client, addr: &str, client: &str, local: bool) -> Option<u64> {
    let kind = if local { OpKind::LocalRead } else { OpKind::LinRead };
    let idx = rec.begin(client, kind)?;
    let url = if local { format!("http://{addr}/v1/state/digest?consistency=local") } else { format!("http://{addr}/v1/state/digest") };
    let result = async {
        let r = http.get(url).send().await.map_err(|e| format!("request: {e}"))?;
        let status = r.status().as_u16();
        let header = r.headers().get("x-roster-revision").and_then(|h| h.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
        let v: Value = r.json().await.map_err(|e| format!("HTTP {status}: {e}"))?;
        if status != 200 {
            return Err(format!("HTTP {status} {}", v["error"]["code"].as_str().unwrap_or("?")));
        }
        let rev = v["revision"].as_u64().or(header).ok_or("no revision")?;
        if header.is_some_and(|h| h != rev) {
            return Err(format!("X-Roster-Revision {header:?} differs from the body's revision {rev}"));
        }
        Ok((rev, v["digest"].as_str().map(str::to_string)))
    }
    .await;
    let out = result.as_ref().ok().map(|r| r.0);
    rec.end(idx, |o| {
        o.attempts = 1;
        o.node = Some(addr.to_string());
        match result {
            Ok((rev, digest)) => {
                o.status = Some(Status::Ok);
                o.revision = Some(rev);
                o.digest = digest;
            }
            Err(e) => {
                o.status = Some(Status::Fail);
                o.error = Some(e);
            }
        }
    });
    out
}

/// One agent watch long poll on `addr`, recorded. Returns Ok(Some(revision)) for a new
/// configuration, Ok(None) for "no change", Err on failure.
pub async fn watch_op(rec: &Recorder, http: &reqwest::Client, addr: &str, agent: &str, after: u64, wait_ms: u64) -> Result<Option<(u64, Value)>, String> {
    let idx = rec.begin(&format!("watch-{agent}"), OpKind::Watch).ok_or("history full")?;
    rec.update(idx, |o| {
        o.agent = Some(agent.to_string());
        o.after = Some(after);
    });
    let url = format!("http://{addr}/v1/agents/{agent}/config?after={after}&wait_ms={wait_ms}");
    let result: Result<Option<(u64, Value)>, String> = async {
        let r = http
            .get(url)
            .timeout(Duration::from_millis(wait_ms + REQUEST_TIMEOUT_MS))
            .send()
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = r.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        let v: Value = r.json().await.map_err(|e| format!("HTTP {status}: {e}"))?;
        if status != 200 {
            return Err(format!("HTTP {status} {}", v["error"]["code"].as_str().unwrap_or("?")));
        }
        let rev = v["revision"].as_u64().ok_or("no revision in the configuration")?;
        Ok(Some((rev, crate::checker::config_content(&v))))
    }
    .await;
    rec.end(idx, |o| {
        o.attempts = 1;
        o.node = Some(addr.to_string());
        match &result {
            Ok(Some((rev, cfg))) => {
                o.status = Some(Status::Ok);
                o.revision = Some(*rev);
                o.config = Some(cfg.clone());
            }
            Ok(None) => o.status = Some(Status::Ok),
            Err(e) => {
                o.status = Some(Status::Fail);
                o.error = Some(e.clone());
            }
        }
    });
    result
}

/// GET returning JSON, with a timeout.
pub async fn get_json(http: &reqwest::Client, url: &str, timeout_ms: u64) -> Result<Value, String> {
    let r = http.get(url).timeout(Duration::from_millis(timeout_ms)).send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.map_err(|e| format!("HTTP {status}: {e}"))?;
    if status != 200 {
        return Err(format!("HTTP {status}: {v}"));
    }
    Ok(v)
}
