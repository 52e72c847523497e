//! The HTTP client of Roster's API shared by `ctl`, `agent`, `audit` and the benchmarks:
//! the transport (TLS trust and bearer token) and the endpoint list with failover.

use std::time::Duration;

use serde_json::Value;

use super::args::ConnArgs;
/// Client TLS settings live in `roster-raft`, whose Raft network client uses them too.
pub use roster_raft::Transport;

/// Per-request timeout of the CLI.
pub const CTL_REQUEST_TIMEOUT_MS: u64 = 15_000;

/// Talks to the API with endpoint failover.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    transport: Transport,
    endpoints: Vec<String>,
    headers: Vec<(&'static str, String)>,
}

/// How a [`Client`]'s connections behave.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// Whole-request timeout; `None` for long polls that set their own per request.
    pub request_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { request_timeout: Some(Duration::from_millis(CTL_REQUEST_TIMEOUT_MS)), connect_timeout: None }
    }
}

impl Client {
    /// The client `roster ctl` and `roster audit` use: the flags' transport and endpoints.
    pub fn new(conn: &ConnArgs) -> anyhow::Result<Self> {
        Self::with(conn.transport()?, conn.endpoints.clone(), ClientOptions::default())
    }

    pub fn with(transport: Transport, endpoints: Vec<String>, options: ClientOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints given");
        let mut builder = transport
            .client_builder()?
            // Below every node's header read timeout, so a pooled connection is never reused
            // just as the server closes it.
            .pool_idle_timeout(Duration::from_millis(roster_raft::network::POOL_IDLE_TIMEOUT_MS));
        if let Some(t) = options.request_timeout {
            builder = builder.timeout(t);
        }
        if let Some(t) = options.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        Ok(Self { http: builder.build()?, transport, endpoints, headers: Vec::new() })
    }

    /// The underlying HTTP client (TLS trust and bearer token already configured).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The URL of `path` on `endpoint`, with the transport's scheme.
    pub fn url(&self, endpoint: &str, path: &str) -> String {
        self.transport.url(endpoint, path)
    }

    /// GETs `path` from the first endpoint that answers with success, for streamed answers.
    /// Returns the endpoint and its response.
    pub async fn get_first_ok(&self, path: &str) -> anyhow::Result<(String, reqwest::Response)> {
        let mut last_err = None;
        for ep in &self.endpoints {
            match self.http.get(self.url(ep, path)).send().await {
                Ok(r) if r.status().is_success() => return Ok((ep.clone(), r)),
                Ok(r) => last_err = Some(anyhow::anyhow!("{ep}: HTTP {}", r.status())),
                Err(e) => last_err = Some(anyhow::anyhow!("{ep}: {e}")),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no endpoint answered")))
    }

    /// The client address of the current leader, as the first answering endpoint knows it.
    pub async fn leader_addr(&self) -> anyhow::Result<String> {
        for ep in &self.endpoints {
            let Ok(r) = self.http.get(self.url(ep, "/v1/cluster")).send().await else { continue };
            let Ok(v) = r.json::<Value>().await else { continue };
            let Some(leader) = v["leader"].as_u64() else { continue };
            if let Some(m) = v["members"].as_array().and_then(|a| a.iter().find(|m| m["id"].as_u64() == Some(leader))) {
                return Ok(m["addr"].as_str().unwrap_or(ep).to_string());
            }
        }
        anyhow::bail!("no leader found among {}", self.endpoints.join(","))
    }

    /// Whether requests carry a token (so the actor is the token's identity).
    pub fn has_token(&self) -> bool {
        self.transport.bearer.is_some()
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// Sends a request to the first endpoint that answers; moves on after connection errors
    /// and 503s. Returns the status and the JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        self.send_with_headers(method, path, body).await.map(|(status, value, _)| (status, value))
    }

    /// [`Client::send`], also returning the answer's headers.
    pub async fn send_with_headers(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value, reqwest::header::HeaderMap)> {
        let mut last_err = None;
        for ep in &self.endpoints {
            let mut req = self.http.request(method.clone(), self.transport.url(ep, path));
            for (k, v) in &self.headers {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let text = resp.text().await.unwrap_or_default();
                    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if status == 503 {
                        last_err = Some(anyhow::anyhow!("{ep}: {} (HTTP 503)", error_message(&value)));
                        continue;
                    }
                    return Ok((status, value, headers));
                }
                Err(e) => last_err = Some(anyhow::anyhow!("{ep}: {e}")),
            }
        }
        Err(anyhow::Error::new(Unavailable(last_err.map_or_else(|| "no endpoint answered".to_string(), |e| e.to_string()))))
    }
}

impl Client {
    /// Every item of a paginated list route (`path` already carries its query), following
    /// `X-Roster-Next` page by page at the revision of the first page.
    pub async fn get_all_pages(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let mut items = Vec::new();
        let mut next_path = path.to_string();
        let mut last_after: Option<String> = None;
        loop {
            let (status, value, headers) = self.send_with_headers(reqwest::Method::GET, &next_path, None).await?;
            if !(200..300).contains(&status) {
                return Ok((status, value));
            }
            items.extend(value.as_array().cloned().unwrap_or_default());
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
            match (header("x-roster-next"), header("x-roster-revision")) {
                (Some(after), Some(revision)) => {
                    // The cursor must move forward, or a misbehaving server could keep us here.
                    anyhow::ensure!(last_after.as_ref().is_none_or(|l| after > *l), "the server repeated the page cursor {after:?}");
                    last_after = Some(after.clone());
                    let sep = if path.contains('?') { '&' } else { '?' };
                    next_path = format!("{path}{sep}after={}&revision={revision}", crate::domain::percent_encode(&after));
                }
                _ => return Ok((status, Value::Array(items))),
            }
        }
    }
}

/// No endpoint could answer (every one refused the connection or answered 503).
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// The cluster answered with an error status.
#[derive(Debug)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {})", self.message, self.status)
    }
}

impl std::error::Error for HttpError {}

/// Exit statuses of the command line: 0 success, 1 any other error, 2 a usage error (clap's),
/// 3 a conflict (HTTP 409: the name exists, the revision moved, a confirmation is needed),
/// 4 the cluster unavailable (no endpoint answered, or 503).
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_CONFLICT: i32 = 3;
pub const EXIT_UNAVAILABLE: i32 = 4;

/// The exit status for an error of `roster ctl` (and the other client commands).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(h) = cause.downcast_ref::<HttpError>() {
            return match h.status {
                409 => EXIT_CONFLICT,
                503 => EXIT_UNAVAILABLE,
                _ => EXIT_ERROR,
            };
        }
        if cause.downcast_ref::<Unavailable>().is_some() {
            return EXIT_UNAVAILABLE;
        }
    }
    EXIT_ERROR
}

pub(crate) fn error_message(v: &Value) -> String {
    match v.pointer("/error/message").and_then(Value::as_str) {
        Some(m) => format!("{} ({})", m, v.pointer("/error/code").and_then(Value::as_str).unwrap_or("error")),
        None => v.to_string(),
    }
}
