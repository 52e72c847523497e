//! The HTTP listener: accepts connections (TLS or plain), caps them, bounds their heads and
//! idle time, and serves each with hyper, or with [`super::h1`] when it carries agent watches.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use super::{h1, HTTP_BUFFER_MAX_BYTES};

/// Serves HTTP/1.1 until `stopped`, then lets in-flight requests finish.
///
/// Why not `axum::serve`: it exposes no connection limits. Here a client must send a request's
/// headers within `header_read_timeout` (slow or idle connections are closed), headers and
/// buffers are bounded by `HTTP_BUFFER_MAX_BYTES`, and connections are capped at
/// `HTTP_CONNECTIONS_MAX`.
pub(crate) async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_read_timeout: Duration,
    connections_max: usize,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(connections_max));
    let mut stopped = std::pin::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopped => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("connection limit {connections_max} reached; refusing a connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let closing = closing_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_accepted(stream, tls, router, header_read_timeout, closing).await;
        });
    }
    let _ = closing_tx.send(true);
}

/// Serves an accepted connection: the TLS handshake if any, then its requests. What a task
/// holds for the life of the connection is this future, so every await that is not the whole
/// connection's is boxed (a node holds a connection per agent).
async fn serve_accepted(
    stream: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    header_read_timeout: Duration,
    closing: tokio::sync::watch::Receiver<bool>,
) {
    match tls {
        None => Box::pin(serve_either(stream, router, header_read_timeout, closing)).await,
        Some(acceptor) => Box::pin(serve_tls(stream, acceptor, router, header_read_timeout, closing)).await,
    }
}

/// The TLS handshake (in the header read timeout), then the connection's requests.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    header_read_timeout: Duration,
    closing: tokio::sync::watch::Receiver<bool>,
) {
    if !Box::pin(starts_with_tls(&stream, header_read_timeout)).await {
        return Box::pin(answer_plain_http_on_tls(stream)).await;
    }
    // The handshake's future and the TLS stream are large (rustls' state): the first is
    // boxed, the second kept in a box so that this future holds only a pointer to it.
    let Some(tls_stream) = handshake_done(Box::pin(tokio::time::timeout(header_read_timeout, acceptor.accept(stream))).await) else {
        return;
    };
    serve_either(tls_stream, router, header_read_timeout, closing).await
}

/// The stream of a finished handshake, boxed; `None` (logged) when it failed or timed out.
fn handshake_done<S>(
    outcome: Result<std::io::Result<tokio_rustls::server::TlsStream<S>>, tokio::time::error::Elapsed>,
) -> Option<Box<tokio_rustls::server::TlsStream<S>>> {
    match outcome {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// Reads a connection's first request head, then serves the connection with [`h1`] when it
/// is an agent's request (the connection will mostly hold watches) and with hyper otherwise.
async fn serve_either<I>(mut io: I, router: axum::Router, header_read_timeout: Duration, mut closing: tokio::sync::watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = Vec::new();
    match h1::next_head(&mut io, &mut buf, header_read_timeout, &mut closing).await {
        Ok(n) if h1::serves(&buf[..n]) => h1::serve(io, buf, router, header_read_timeout, closing).await,
        // hyper reads the head again (and answers a malformed or oversized one). Boxed: its
        // future is several KB, and a connection h1 serves should not hold that room.
        Ok(_) | Err(h1::HeadError::TooLarge | h1::HeadError::Malformed) => {
            let io = hyper_util::rt::TokioIo::new(Rewind { prefix: Bytes::from(buf), inner: io });
            Box::pin(serve_connection(io, hyper_util::service::TowerToHyperService::new(router), header_read_timeout, closing)).await
        }
        // Closed, no whole head in time (an idle or slow connection), or the node closing.
        Err(h1::HeadError::Closed) => {}
    }
}

/// A connection whose first bytes were already read: they are read again first.
struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            if n == self.prefix.len() {
                self.prefix = Bytes::new();
            } else {
                self.prefix.advance(n);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether the first byte a client sends opens a TLS handshake (a record of type 22). `false`
/// for something else, such as a plain HTTP request; `true` when nothing arrives in time (the
/// handshake's own timeout then closes the connection).
async fn starts_with_tls(stream: &tokio::net::TcpStream, within: Duration) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(within, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == 0x16,
        _ => true,
    }
}

/// Answers a plain-HTTP request sent to the TLS port with a clear error instead of a TLS
/// alert the client cannot show.
async fn answer_plain_http_on_tls(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":{"code":"tls_required","message":"this node speaks HTTPS only: use https:// (and the cluster's CA)"}}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Serves one HTTP/1.1 connection until it ends or the node closes.
async fn serve_connection<I, S>(io: I, service: S, header_read_timeout: Duration, mut closing: tokio::sync::watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(HTTP_BUFFER_MAX_BYTES)
        // A request head larger than this is refused with 431 (the buffer bound alone lets
        // hyper parse a head before it checks its size).
        .max_header_size(HTTP_BUFFER_MAX_BYTES);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { let _ = closing.wait_for(|c| *c).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// A node holds a connection per agent: the task's own future stays small (the TLS
    /// handshake and the two ways of serving are boxed).
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (_tx, closing) = tokio::sync::watch::channel(false);
        let task = serve_accepted(stream, None, axum::Router::new(), Duration::from_secs(1), closing);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 512, "a connection task's future is {size} bytes");
        drop((task, client));
    }
}
