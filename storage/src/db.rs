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
/// The operational event log, keyed by big-endian sequence number.
pub const CF_EVENTS: &str = "events";
/// The machine's replicated settings (API tokens, event settings), keyed by name.
pub const CF_SETTINGS: &str = "settings";

/// The Merkle tree over the history: one hash per complete subtree, keyed by the big-endian
/// last leaf it covers then the level byte. Written with the history; derived from it, so not
/// in snapshots.
pub const CF_TREE: &str = "tree";

/// Per agent, the digest of its configuration and the revision at which it last changed, as
/// this node's projection last saw them, keyed by agent id. Written after each applied batch
/// (not with it) and checked against the state at load, so it only ever shortens a restart's
/// view of deployment status; not in snapshots.
pub const CF_DEPLOYMENTS: &str = "deployments";

/// Every column family, in creation order.
pub const ALL_CFS: [&str; 13] = [
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
    CF_SETTINGS,
    CF_TREE,
    CF_DEPLOYMENTS,
];

/// Settings were once kept in the events family under keys starting with '~'. Keys of this
/// form found there (in an old data directory, or in a snapshot built by an older node) belong
/// to the settings family under the name after the '~'.
pub(crate) fn legacy_setting_name(events_key: &[u8]) -> Option<&[u8]> {
    events_key.strip_prefix(b"~")
}

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
    // Small memtables, and flushed files written out 1 MiB at a time: every node flushes the
    // same data at about the same moment, and a 64 MiB flush's final fsync queued every log
    // fsync behind it (100-250 ms stalls of every write; now a flush lasts 15-35 ms).
    opts.set_bytes_per_sync(1 << 20);
    let cfs = ALL_CFS.iter().map(|name| {
        let mut cf_opts = Options::default();
        cf_opts.set_write_buffer_size(8 << 20);
        ColumnFamilyDescriptor::new(*name, cf_opts)
    });
    let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
    move_legacy_settings(&db)?;
    Ok(Arc::new(db))
}

/// Moves settings an older version kept in the events family to the settings family, in one
/// synced batch (so a crash leaves either the old or the new layout, and the move is redone).
fn move_legacy_settings(db: &DB) -> Result<(), StoreError> {
    let events = cf(db, CF_EVENTS);
    let mut batch = rocksdb::WriteBatch::default();
    for item in db.iterator_cf(events, rocksdb::IteratorMode::From(b"~", rocksdb::Direction::Forward)) {
        let (k, v) = item?;
        let Some(name) = legacy_setting_name(&k) else { break };
        batch.put_cf(cf(db, CF_SETTINGS), name, v);
        batch.delete_cf(events, &k);
    }
    if !batch.is_empty() {
        db.write_opt(batch, &sync_write())?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_kept_among_events_by_an_older_version_move_to_their_family() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path()).unwrap();
            let events = cf(&db, CF_EVENTS);
            db.put_cf(events, u64_key(7), b"event").unwrap();
            db.put_cf(events, b"~tokens", b"token table").unwrap();
            db.put_cf(events, b"~settings", b"event settings").unwrap();
        }
        let db = open(dir.path()).unwrap();
        let settings = cf(&db, CF_SETTINGS);
        assert_eq!(db.get_cf(settings, b"tokens").unwrap().as_deref(), Some(&b"token table"[..]));
        assert_eq!(db.get_cf(settings, b"settings").unwrap().as_deref(), Some(&b"event settings"[..]));
        let left: Vec<_> = db.iterator_cf(cf(&db, CF_EVENTS), rocksdb::IteratorMode::Start).map(|i| i.unwrap().0.into_vec()).collect();
        assert_eq!(left, vec![u64_key(7).to_vec()], "only the event stays in the events family");
    }
}
