//! A small HTTP/1.1 server for the connections agents hold.
//!
//! Why not hyper for these: hyper keeps an 8 KiB write buffer and an 8 KiB read buffer for the
//! whole life of a connection, and a node holds a connection per agent, most of them parked in
//! a config watch for up to a minute. Here a waiting connection owns no buffer: a request head
//! is read into a buffer that is released once the request is parsed, and an answer is written
//! from a buffer made for it. The listener hands a connection over when its first request is
//! an agent's ([`serves`]); every other connection stays with hyper.
//!
//! What it speaks: requests with no body or a `Content-Length` body (a `Transfer-Encoding`
//! body gets 501 and the connection closes), `Expect: 100-continue`, keep-alive and
//! `Connection: close`, HTTP/1.0. The body reaches the router only when the router asks for
//! it, so access is still checked from the head before any body byte is read. A client that
//! goes away while its request is held (a parked watch) cancels the request at once.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use bytes::Bytes;
use axum::body::HttpBody as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::HTTP_BUFFER_MAX_BYTES;

/// Most header fields in a request head (more gets 431).
const HEADERS_MAX: usize = 64;
/// Bytes read ahead of the current request (a pipelined next request) while it is served.
const READ_AHEAD_MAX: usize = 16 * 1024;
/// An answer must be written within this long, or the connection is dropped (a client that
/// stops reading cannot hold it forever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Answer bytes gathered before a write.
const WRITE_CHUNK: usize = 64 * 1024;

/// Whether a connection whose first request head is `head` is served here: an agent's
/// request (a config watch or an ack) without a `Transfer-Encoding` body.
pub(super) fn serves(head: &[u8]) -> bool {
    let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut fields);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let agent_route = match (req.method, req.path) {
        (Some("GET"), Some(p)) => p.starts_with("/v1/agents/") && p.split('?').next().is_some_and(|p| p.ends_with("/config")),
        (Some("POST"), Some(p)) => p.starts_with("/v1/agents/") && p.ends_with("/ack"),
        _ => false,
    };
    agent_route && !req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
}

/// Why no request head could be read.
#[derive(Debug, PartialEq)]
pub(super) enum HeadError {
    /// The client closed the connection (or it failed) before a whole head.
    Closed,
    /// The head is larger than `HTTP_BUFFER_MAX_BYTES` or has too many fields.
    TooLarge,
    /// Not an HTTP/1 request head.
    Malformed,
}

/// Reads until `buf` starts with a whole request head; returns the head's length. Bytes after
/// it (a body, a pipelined request) stay in `buf`. The buffer is allocated only once the first
/// byte arrives, so a connection waiting for its next request holds none.
pub(super) async fn read_head<I: AsyncRead + Unpin>(io: &mut I, buf: &mut Vec<u8>) -> Result<usize, HeadError> {
    loop {
        if !buf.is_empty() {
            let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
            match httparse::Request::new(&mut fields).parse(buf) {
                Ok(httparse::Status::Complete(n)) if n > HTTP_BUFFER_MAX_BYTES => return Err(HeadError::TooLarge),
                Ok(httparse::Status::Complete(n)) => return Ok(n),
                Ok(httparse::Status::Partial) if buf.len() >= HTTP_BUFFER_MAX_BYTES => return Err(HeadError::TooLarge),
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
                Err(_) => return Err(HeadError::Malformed),
            }
        }
        if buf.is_empty() {
            // Wait for the first byte without holding a buffer.
            let mut first = [0u8; 256];
            match io.read(&mut first).await {
                Ok(0) | Err(_) => return Err(HeadError::Closed),
                Ok(n) => buf.extend_from_slice(&first[..n]),
            }
        } else {
            if buf.capacity() - buf.len() < 512 {
                buf.reserve((buf.len()).clamp(1024, HTTP_BUFFER_MAX_BYTES));
            }
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(HeadError::Closed),
                Ok(_) => {}
            }
        }
    }
}

/// A request parsed from a head, with what the connection needs to know about it.
#[derive(Debug)]
struct Head {
    request: Request<()>,
    body_len: usize,
    keep_alive: bool,
    expects_continue: bool,
}

/// Parses a complete head (`read_head` found its end); `Err` is the status to answer.
fn parse_head(head: &[u8]) -> Result<Head, (StatusCode, &'static str)> {
    let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut fields);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Err((StatusCode::BAD_REQUEST, "malformed request head"));
    }
    let bad = |what| (StatusCode::BAD_REQUEST, what);
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| bad("invalid method"))?;
    let uri: axum::http::Uri = req.path.unwrap_or_default().parse().map_err(|_| bad("invalid request target"))?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("invalid header value"))?;
        headers.append(name, value);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err((StatusCode::NOT_IMPLEMENTED, "this connection takes request bodies with Content-Length only"));
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let body_len = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(v), None) => {
            let digits = v.to_str().map(str::trim).unwrap_or("");
            // Digits only: `+5` or `5,5` is refused rather than read one way here and another
            // by a proxy in front.
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("invalid Content-Length"));
            }
            digits.parse::<usize>().map_err(|_| bad("invalid Content-Length"))?
        }
        (Some(_), Some(_)) => return Err(bad("more than one Content-Length")),
    };
    let connection = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    let keep_alive = if version == Version::HTTP_10 { connection("keep-alive") } else { !connection("close") };
    let expects_continue = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Head { request, body_len, keep_alive, expects_continue })
}

/// The next request head, within `header_read_timeout`; `Closed` also when the node closes
/// while none has started.
pub(super) async fn next_head<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut Vec<u8>,
    header_read_timeout: Duration,
    closing: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<usize, HeadError> {
    let idle = buf.is_empty();
    tokio::select! {
        r = tokio::time::timeout(header_read_timeout, read_head(io, buf)) => r.unwrap_or(Err(HeadError::Closed)),
        _ = async { let _ = closing.wait_for(|c| *c).await; }, if idle => Err(HeadError::Closed),
    }
}

/// Most body bytes read for a request: one past the API's limit (the router then answers 413).
const BODY_TAKE_MAX: usize = crate::api::BODY_MAX_BYTES + 1;

/// A request handed to the router, with what the connection needs to finish it.
struct Started {
    response: std::pin::Pin<Box<tower::util::Oneshot<axum::Router, Request<Body>>>>,
    /// Fires when the router first asks for the body.
    wanted_rx: tokio::sync::oneshot::Receiver<()>,
    /// Takes the body to the router (`None` when there is none, or once sent).
    data_tx: Option<tokio::sync::oneshot::Sender<Bytes>>,
    body_len: usize,
    keep_alive: bool,
    expects_continue: bool,
    head_only: bool,
}

/// Hands a parsed request to the router. Not async, so that the request's parts are never
/// kept in the connection's future while it waits.
fn start(router: &axum::Router, head: Head) -> Started {
    let Head { request, body_len, keep_alive, expects_continue } = head;
    let head_only = request.method() == Method::HEAD;
    // The body is read only when the router asks for it (after access was checked).
    let (wanted_tx, wanted_rx) = tokio::sync::oneshot::channel::<()>();
    let (data_tx, data_rx) = tokio::sync::oneshot::channel::<Bytes>();
    let (body, data_tx) = if body_len == 0 {
        (Body::empty(), None)
    } else {
        let body = Body::from_stream(futures::stream::once(async move {
            let _ = wanted_tx.send(());
            data_rx.await.map_err(|_| std::io::Error::other("the connection closed before the request body arrived"))
        }));
        (body, Some(data_tx))
    };
    let response = Box::pin(tower::ServiceExt::oneshot(router.clone(), request.map(|()| body)));
    Started { response, wanted_rx, data_tx, body_len, keep_alive, expects_continue, head_only }
}

/// Serves one connection until it closes, fails, times out between requests, or the node
/// closes (`closing`; a request being served is answered first). `buf` holds what was read
/// of it already (the listener read the first head to choose this server).
pub(super) async fn serve<I>(
    mut io: I,
    mut buf: Vec<u8>,
    router: axum::Router,
    header_read_timeout: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    loop {
        // Awaits other than the request's own are boxed: a parked connection's future is only
        // as large as its largest await.
        let head_len = match Box::pin(next_head(&mut io, &mut buf, header_read_timeout, &mut closing)).await {
            Ok(n) => n,
            Err(HeadError::TooLarge) => {
                return Box::pin(answer_error(&mut io, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "the request head is too large")).await;
            }
            Err(HeadError::Malformed) => return Box::pin(answer_error(&mut io, StatusCode::BAD_REQUEST, "malformed request head")).await,
            // Closed, no whole head in time (an idle or slow connection), or the node closing.
            Err(HeadError::Closed) => return,
        };
        let started = match parse_head(&buf[..head_len]) {
            Ok(head) => start(&router, head),
            Err((status, why)) => return Box::pin(answer_error(&mut io, status, why)).await,
        };
        buf.drain(..head_len);
        let Started { mut response, mut wanted_rx, mut data_tx, body_len, mut keep_alive, expects_continue, head_only } = started;
        let body_take = body_len.min(BODY_TAKE_MAX);
        let mut wanted = false;
        let response = loop {
            let reading_body = wanted && data_tx.is_some();
            if reading_body && buf.len() >= body_take {
                let rest = buf.split_off(body_take);
                let body = std::mem::replace(&mut buf, rest);
                if let Some(tx) = data_tx.take() {
                    let _ = tx.send(Bytes::from(body));
                }
                continue;
            }
            // Read the body when asked for; otherwise only watch for the client going away
            // (and keep a little of a pipelined next request).
            let read_more = reading_body || buf.len() < READ_AHEAD_MAX;
            if read_more && buf.capacity() == buf.len() {
                let want = if reading_body { (body_take - buf.len()).min(WRITE_CHUNK) } else { 64 };
                buf.reserve(want);
            }
            tokio::select! {
                r = response.as_mut() => break r,
                w = &mut wanted_rx, if !wanted && data_tx.is_some() => {
                    wanted = true;
                    if w.is_ok() && expects_continue && buf.len() < body_take
                        && Box::pin(write_all(&mut io, b"HTTP/1.1 100 Continue\r\n\r\n")).await.is_err() {
                        return;
                    }
                }
                n = io.read_buf(&mut buf), if read_more => match n {
                    // The client went away: dropping the request cancels it.
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
            }
        };
        let Ok(response) = response;
        if data_tx.is_some() || body_take < body_len {
            // The router answered without reading the whole body: what is left of it cannot
            // be told from the next request.
            keep_alive = false;
        }
        if *closing.borrow() {
            keep_alive = false;
        }
        if Box::pin(write_response(&mut io, response, head_only, keep_alive)).await.is_err() || !keep_alive {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, io.shutdown()).await;
            return;
        }
        if buf.is_empty() {
            // Release the buffer while the connection waits for its next request.
            buf = Vec::new();
        }
    }
}

async fn write_all<I: AsyncWrite + Unpin>(io: &mut I, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, io.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Answers an error in the API's shape and closes the connection.
async fn answer_error<I: AsyncWrite + Unpin>(io: &mut I, status: StatusCode, message: &str) {
    let code = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "head_too_large",
        StatusCode::NOT_IMPLEMENTED => "not_implemented",
        _ => "bad_request",
    };
    let response = axum::response::IntoResponse::into_response(crate::api::ApiError::new(status, code, message.to_string()));
    let _ = write_response(io, response, false, false).await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, io.shutdown()).await;
}

/// Writes an answer: its head, then its body with a `Content-Length` when the body's size is
/// known and in chunks otherwise.
async fn write_response<I: AsyncWrite + Unpin>(io: &mut I, response: Response<Body>, head_only: bool, keep_alive: bool) -> std::io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodiless = head_only || status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let known_len = body.size_hint().exact();
    let chunked = !bodiless && known_len.is_none();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    for (name, value) in parts.headers.iter() {
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING || name == "keep-alive" {
            continue;
        }
        has_length |= name == header::CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if !has_length && !bodiless {
        let len = known_len.unwrap_or(0);
        out.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            if chunked {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            }
            if out.len() + data.len() <= WRITE_CHUNK {
                out.extend_from_slice(&data);
            } else {
                write_all(io, &out).await?;
                out.clear();
                write_all(io, &data).await?;
            }
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
            if out.len() >= WRITE_CHUNK {
                write_all(io, &out).await?;
                out.clear();
            }
        }
        if chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    write_all(io, &out).await?;
    match tokio::time::timeout(WRITE_TIMEOUT, io.flush()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_requests_are_served_here_and_others_by_hyper() {
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(serves(get("/v1/agents/a1/config?after=3&wait_ms=100").as_bytes()));
        assert!(serves(get("/v1/agents/a1/config").as_bytes()));
        assert!(serves(b"POST /v1/agents/a1/ack HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!serves(b"POST /v1/agents/a1/ack HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!serves(get("/v1/agents").as_bytes()));
        assert!(!serves(get("/v1/servers").as_bytes()));
        assert!(!serves(b"POST /v1/commands HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!serves(b"GET /v1/agents/a1/config HTTP/1.1\r\nHost: x\r\n"), "an unfinished head");
    }

    #[test]
    fn heads_are_parsed_with_their_framing() {
        let h = parse_head(b"POST /v1/agents/a/ack HTTP/1.1\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert_eq!((h.body_len, h.keep_alive, h.expects_continue), (12, true, true));
        let h = parse_head(b"GET /x HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET /x HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        assert_eq!(parse_head(b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").unwrap_err().0, StatusCode::BAD_REQUEST);
        for bad in ["-1", "+5", "5,5", "", "0x10", "99999999999999999999999"] {
            let head = format!("GET /x HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(parse_head(head.as_bytes()).unwrap_err().0, StatusCode::BAD_REQUEST, "Content-Length {bad:?}");
        }
        assert_eq!(parse_head(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err().0, StatusCode::NOT_IMPLEMENTED);
    }

    /// A parked connection is this future (boxed) plus the router's: it must stay small.
    #[test]
    fn a_waiting_connection_is_small() {
        let (io, _peer) = tokio::io::duplex(16);
        let (_tx, closing) = tokio::sync::watch::channel(false);
        let serving = serve(io, Vec::new(), axum::Router::new(), Duration::from_secs(1), closing);
        let size = std::mem::size_of_val(&serving);
        assert!(size <= 1024, "a connection's future is {size} bytes");
    }

    #[tokio::test]
    async fn heads_are_read_whole_and_bounded() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(b"GET /a HTTP/1.1\r\nHo").await.unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let n = read_head(&mut server, &mut buf).await;
            (n, buf)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(b"st: x\r\n\r\nNEXT").await.unwrap();
        let (n, buf) = reader.await.unwrap();
        assert_eq!(&buf[n.unwrap()..], b"NEXT");

        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let big = format!("GET /a HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(HTTP_BUFFER_MAX_BYTES));
        client.write_all(big.as_bytes()).await.unwrap();
        assert_eq!(read_head(&mut server, &mut Vec::new()).await, Err(HeadError::TooLarge));

        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
        assert_eq!(read_head(&mut server, &mut Vec::new()).await, Err(HeadError::Malformed));

        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert_eq!(read_head(&mut server, &mut Vec::new()).await, Err(HeadError::Closed));
    }
}
