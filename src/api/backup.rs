//! `GET /v1/backup`: a consistent point-in-time backup of this node's replicated data,
//! streamed while the node serves (see `crate::backup`).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::{read_barrier, route, ApiError, Consistency, Ctx, RouteSpec, HEADER_REVISION};
use crate::auth::Access::Roles;
use crate::auth::WRITE_CONFIG;
use crate::backup::{meta_bytes, ChannelWriter};

/// Chunks buffered between the RocksDB scan and the client (bounds memory per backup).
pub const BACKUP_CHANNEL_CHUNKS: usize = 4;
/// Backups streamed at once by one node; more get 503 (each holds a RocksDB snapshot view
/// and a blocking thread for as long as the client reads).
pub const BACKUPS_AT_ONCE_MAX: usize = 2;
static BACKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BACKUPS_AT_ONCE_MAX);

pub fn routes() -> Vec<RouteSpec> {
    vec![route(axum::http::Method::GET, "/v1/backup", Roles(WRITE_CONFIG), backup)]
}

async fn backup(State(ctx): State<Ctx>, c: Consistency) -> Result<Response, ApiError> {
    let permit = BACKUPS
        .try_acquire()
        .map_err(|_| ApiError::unavailable(format!("{BACKUPS_AT_ONCE_MAX} backups are already streaming from this node; retry later or use another node")))?;
    read_barrier(&ctx, c).await?;
    let revision = ctx.machine.read().state.revision;
    super::tree::written(&ctx, revision).await?;
    let store = ctx.reader.store().clone();
    let node = ctx.node.id;
    let (tx, rx) = tokio::sync::mpsc::channel(BACKUP_CHANNEL_CHUNKS);
    let errors = tx.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let result = store.write_backup(ChannelWriter::new(tx), |last| meta_bytes(last, node));
        match result {
            Ok((mut w, summary, last)) => match std::io::Write::flush(&mut w) {
                Ok(()) => tracing::info!(revision = last, frames = summary.frames, "backup streamed"),
                Err(e) => tracing::warn!(error = %e, "backup not delivered"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "backup failed");
                ChannelWriter::new(errors).fail(e.to_string());
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"roster.backup\""));
    h.insert(HEADER_REVISION, HeaderValue::from(revision));
    Ok(resp)
}
