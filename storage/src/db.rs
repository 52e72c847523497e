//! Opening the node's RocksDB database and the column families each store owns.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

/// Raft log entries, keyed by big-endian log index.
pub const CF_LOGS: &str = "logs";
/// Raft vote, last purged log id, committed log id.
pub const CF_RAFT_META: &str = "raft_meta";
/// State machine meta: applied log id, membership, current snapshot meta.
pub const CF_SM_META: &str = "sm_meta";
/// The revision history, keyed by big-endian revision.
pub const CF_HISTORY: &str = "history";
/// Outcomes of commands that carried an idempotency key, keyed by the key.
pub const CF_IDEMPOTENCY: &str = "idempotency";
/// Staged changesets (drafts), keyed by changeset id.
pub const CF_CHANGESETS: &str = "changesets";
/// Rejected commands, keyed by big-endian log index.
pub const CF_REJECTIONS: &str = "rejections";
/// Folded-state checkpoints, keyed by big-endian revision. Derivable from the history, so they
/// are not part of Raft snapshots.
pub const CF_CHECKPOINTS: &str = "checkpoints";
/// The current Raft snapshot's meta.
pub const CF_SNAPSHOT: &str = "snapshot";
/// The operational event log, keyed by big-endian sequence number (plus a settings key).
pub const CF_EVENTS: &str = "events";

/// Every column family, in creation order.
pub const ALL_CFS: [&str; 10] = [
    CF_LOGS,
    CF_RAFT_META,
    CF_SM_META,
    CF_HISTORY,
    CF_IDEMPOTENCY,
    CF_CHANGESETS,
    CF_REJECTIONS,
    CF_CHECKPOINTS,
    CF_SNAPSHOT,
    CF_EVENTS,
];

/// Errors of this crate's own (non-openraft) API.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record in {cf}: {source}")]
    Codec {
        cf: &'static str,
        #[source]
        source: crate::codec::CodecError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Opens (creating if needed) the database under `dir`.
pub fn open(dir: &Path) -> Result<Arc<DB>, StoreError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Point-in-time reads of the history must not be slowed by an unbounded memtable.
    opts.set_max_total_wal_size(256 << 20);
    let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

/// Write options for every durable write: the WAL is fsynced before the write returns.
pub fn sync_write() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Returns the handle of a column family created by [`open`].
///
/// # Panics
/// If `name` is not one of [`ALL_CFS`]: a programmer error, since [`open`] creates them all.
pub fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} is created at open"))
}

/// Big-endian key for an index or revision, so byte order equals numeric order.
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Inverse of [`u64_key`].
pub fn key_u64(key: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Invalid(format!("key of {} bytes is not a u64", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}
