//! The state machine's stored data as the application sees it: [`StateStore`], the read API
//! over the replicated column families, and [`Txn`], the writes of one apply call that go
//! into its single RocksDB batch.

use std::collections::HashMap;
use std::sync::Arc;

use openraft::{LogId, RaftTypeConfig, StoredMembership};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use crate::codec;
use crate::db::{
    cf, key_u64, sync_write, u64_key, StoreError, CF_CHANGESETS, CF_CHECKPOINTS, CF_HISTORY,
    CF_DEPLOYMENTS, CF_EVENTS, CF_IDEMPOTENCY, CF_REJECTIONS, CF_SETTINGS, CF_SM_META, CF_TREE,
};
use crate::snapshot::{KEY_APPLIED, KEY_MEMBERSHIP};

use super::REJECTION_TRIM_EVERY;

const KEY_EVENT_SETTINGS: &[u8] = b"settings";
/// In `sm_meta`: the data dir's format version (4 bytes, big-endian).
const KEY_DATA_FORMAT: &[u8] = b"data_format";

/// The time index of idempotency outcomes: 0, the time (big-endian), then the key. Real keys
/// never start with a 0 byte, so the index sorts before them all.
fn idempotency_index_key(time_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(0);
    k.extend_from_slice(&time_ms.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// A tree node's key: the last leaf it covers (big-endian), then its level. Every node that
/// appending leaf `i` completes ends at leaf `i`, so each revision's nodes sort after all
/// earlier ones and RocksDB's memtable sees sequential inserts.
fn tree_key(level: u8, index: u64) -> [u8; 9] {
    let last_leaf = ((index + 1) << level) - 1;
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&last_leaf.to_be_bytes());
    k[8] = level;
    k
}

/// Settings have a family of their own, keyed by name.
fn setting_key(name: &str) -> &[u8] {
    name.as_bytes()
}
/// Old rejections are trimmed when the log index is a multiple of this.

/// Read access to the application's column families. Cheap to clone and safe to use from any
/// thread (RocksDB reads are concurrent).
#[derive(Clone)]
pub struct StateStore {
    pub(crate) db: Arc<DB>,
}

impl StateStore {
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    /// Approximate bytes of the stored history (SST files plus memtables).
    pub fn history_bytes(&self) -> u64 {
        let h = cf(&self.db, CF_HISTORY);
        let sst = self.db.property_int_value_cf(h, "rocksdb.total-sst-files-size").ok().flatten().unwrap_or(0);
        let mem = self.db.property_int_value_cf(h, "rocksdb.cur-size-all-mem-tables").ok().flatten().unwrap_or(0);
        sst + mem
    }

    /// Flushes every memtable to SST files, so the next open has no WAL to replay.
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in crate::db::ALL_CFS {
            self.db.flush_cf(cf(&self.db, name))?;
        }
        Ok(())
    }

    /// A handle that tells when every handle of the database has been dropped.
    pub fn closed_signal(&self) -> ClosedSignal {
        ClosedSignal(Arc::downgrade(&self.db))
    }

    /// The encoded history record of `revision`.
    pub fn history_get(&self, revision: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(cf(&self.db, CF_HISTORY), u64_key(revision))?)
    }

    /// The highest revision and its record.
    pub fn history_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_HISTORY), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((key_u64(&k)?, v.into_vec())))
            }
        }
    }

    /// Visits records from `from` upward, in revision order, until `visit` returns false.
    pub fn history_scan(
        &self,
        from: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let key = u64_key(from);
        let mut opts = ReadOptions::default();
        // A long scan should not evict the hot working set.
        opts.fill_cache(false);
        let it = self.db.iterator_cf_opt(
            cf(&self.db, CF_HISTORY),
            opts,
            IteratorMode::From(&key, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !visit(key_u64(&k)?, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// The stored tree node `(level, index)` (see `roster::domain::merkle`).
    pub fn tree_node(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(cf(&self.db, CF_TREE), tree_key(level, index))?)
    }

    /// How many leaves the stored tree has (one past the last leaf the newest node covers).
    pub fn tree_size(&self) -> Result<u64, StoreError> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_TREE), IteratorMode::End);
        match it.next() {
            Some(item) => {
                let (k, _) = item?;
                let last = k.get(..8).ok_or_else(|| StoreError::Invalid(format!("tree key of {} bytes", k.len())))?;
                Ok(key_u64(last)? + 1)
            }
            None => Ok(0),
        }
    }

    /// Rewrites history records and tree nodes outside of an apply, in one synced batch
    /// (upgrading the hash format, rebuilding the tree). `clear_tree` first drops every node.
    pub fn rewrite_derived(&self, records: &[(u64, Vec<u8>)], nodes: &[(u8, u64, [u8; 32])], clear_tree: bool) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        if clear_tree {
            batch.delete_range_cf(cf(&self.db, CF_TREE), &[][..], &[0xFFu8; 16][..]);
        }
        for (revision, bytes) in records {
            batch.put_cf(cf(&self.db, CF_HISTORY), u64_key(*revision), bytes);
        }
        for (level, index, hash) in nodes {
            batch.put_cf(cf(&self.db, CF_TREE), tree_key(*level, *index), hash);
        }
        self.db.write_opt(batch, &sync_write())?;
        Ok(())
    }

    /// Every agent's stored configuration mark (see [`crate::db::CF_DEPLOYMENTS`]), as
    /// (agent id, bytes).
    pub fn deployment_marks(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.all_of(CF_DEPLOYMENTS)
    }

    /// Stores and removes agents' configuration marks (one unsynced write: derived data that
    /// the next load checks against the state).
    pub fn write_deployment_marks(&self, put: &[(Vec<u8>, Vec<u8>)], delete: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let family = cf(&self.db, CF_DEPLOYMENTS);
        for (k, v) in put {
            batch.put_cf(family, k, v);
        }
        for k in delete {
            batch.delete_cf(family, k);
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// The data dir's format version, as the application last recorded it (`None` for a data
    /// dir written before versions were recorded, or a new one).
    pub fn data_format(&self) -> Result<Option<u32>, StoreError> {
        match self.db.get_cf(cf(&self.db, CF_SM_META), KEY_DATA_FORMAT)? {
            None => Ok(None),
            Some(b) => Ok(Some(u32::from_be_bytes(b.as_slice().try_into().map_err(|_| StoreError::Invalid("a data format of the wrong size".into()))?))),
        }
    }

    /// Records the data dir's format version (synced).
    pub fn set_data_format(&self, version: u32) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_SM_META), KEY_DATA_FORMAT, version.to_be_bytes());
        self.db.write_opt(batch, &sync_write())?;
        Ok(())
    }

    /// The stored outcome of a command with this idempotency key.
    pub fn idempotency_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(cf(&self.db, CF_IDEMPOTENCY), key)?)
    }

    /// All staged changesets, by id.
    pub fn changesets(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.all_of(CF_CHANGESETS)
    }

    /// Every key and value of a (small) family, in key order.
    fn all_of(&self, family: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, family), IteratorMode::Start) {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// The newest checkpoint at or before `revision`.
    pub fn checkpoint_at_or_before(&self, revision: u64) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let key = u64_key(revision);
        let mut it = self
            .db
            .iterator_cf(cf(&self.db, CF_CHECKPOINTS), IteratorMode::From(&key, Direction::Reverse));
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((key_u64(&k)?, v.into_vec())))
            }
        }
    }

    /// The most recent rejections, newest first, at most `limit`.
    pub fn rejections_recent(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_REJECTIONS), IteratorMode::End).take(limit) {
            let (_, v) = item?;
            out.push(v.into_vec());
        }
        Ok(out)
    }

    /// Recorded events, newest first: `(seq, bytes)`, at most `limit`, only those `keep` accepts.
    pub fn events_recent(&self, limit: usize, mut keep: impl FnMut(&[u8]) -> bool) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_EVENTS), IteratorMode::End) {
            let (k, v) = item?;
            if keep(&v) {
                out.push((key_u64(&k)?, v.into_vec()));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Visits the stored events newest first (sequence number, encoded event) until `visit`
    /// breaks.
    pub fn events_newest_first(&self, mut visit: impl FnMut(u64, &[u8]) -> std::ops::ControlFlow<()>) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(cf(&self.db, CF_EVENTS), IteratorMode::End) {
            let (k, v) = item?;
            if visit(key_u64(&k)?, &v).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// The next event sequence number (one past the newest stored event).
    pub fn events_next_seq(&self) -> Result<u64, StoreError> {
        let end = u64_key(u64::MAX);
        let mut it = self.db.iterator_cf(cf(&self.db, CF_EVENTS), IteratorMode::From(&end, Direction::Reverse));
        match it.next() {
            Some(item) => {
                let (k, _) = item?;
                Ok(if k.len() == 8 { key_u64(&k)? + 1 } else { 0 })
            }
            None => Ok(0),
        }
    }

    /// An application setting stored with [`Txn::put_setting`].
    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(cf(&self.db, CF_SETTINGS), setting_key(name))?)
    }

    pub fn event_settings(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(cf(&self.db, CF_SETTINGS), KEY_EVENT_SETTINGS)?)
    }

    /// Removes all checkpoints (they are derived data).
    pub fn clear_checkpoints(&self) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_CHECKPOINTS), u64_key(0), u64_key(u64::MAX));
        self.db.write_opt(batch, &sync_write())?;
        Ok(())
    }

    /// Writes a fold checkpoint. Checkpoints are derived data, built off the apply path, so
    /// they are written on their own rather than in an apply's batch.
    ///
    /// Not through the write-ahead log: at a large configuration a checkpoint is tens of MB
    /// (25 MB at 640,000 servers), which the next log append's fsync would otherwise have to
    /// write out first. A crash before the memtable is flushed only loses the checkpoint (the
    /// next start folds from an older one).
    pub fn put_checkpoint(&self, revision: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.disable_wal(true);
        self.db.put_cf_opt(cf(&self.db, CF_CHECKPOINTS), u64_key(revision), bytes, &opts)?;
        Ok(())
    }

    /// Starts a write transaction outside of Raft, for offline tools (history generation in
    /// benchmarks). The node itself only writes through [`StateMachineStore`].
    pub fn offline_txn(&self) -> Txn<'_> {
        Txn::new(self)
    }

    /// Commits an offline transaction together with an applied log id and membership.
    pub fn offline_commit<C: RaftTypeConfig>(
        &self,
        txn: Txn<'_>,
        applied: &Option<LogId<C::NodeId>>,
        membership: &StoredMembership<C::NodeId, C::Node>,
    ) -> Result<(), StoreError> {
        let mut batch = txn.batch;
        batch.put_cf(cf(&self.db, CF_SM_META), KEY_APPLIED, codec::encode(applied));
        batch.put_cf(cf(&self.db, CF_SM_META), KEY_MEMBERSHIP, codec::encode(membership));
        self.db.write_opt(batch, &sync_write())?;
        Ok(())
    }
}

/// Tells whether a database has been closed (all its handles dropped).
pub struct ClosedSignal(std::sync::Weak<DB>);

impl ClosedSignal {
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// The application's writes during one apply call. Nothing is visible to readers until the
/// batch commits; idempotency outcomes written earlier in the same batch are visible to later
/// entries through [`Txn::idempotency_get`].
pub struct Txn<'a> {
    pub(super) store: &'a StateStore,
    pub(super) batch: WriteBatch,
    pending_idempotency: HashMap<Vec<u8>, Vec<u8>>,
}

impl<'a> Txn<'a> {
    pub(super) fn new(store: &'a StateStore) -> Self {
        Self { store, batch: WriteBatch::default(), pending_idempotency: HashMap::new() }
    }

    pub fn put_history(&mut self, revision: u64, record: &[u8]) {
        let h = cf(&self.store.db, CF_HISTORY);
        self.batch.put_cf(h, u64_key(revision), record);
    }

    /// Stores a completed tree node (in the same batch as the record that completed it).
    pub fn put_tree_node(&mut self, level: u8, index: u64, hash: &[u8; 32]) {
        self.batch.put_cf(cf(&self.store.db, CF_TREE), tree_key(level, index), hash);
    }

    pub fn idempotency_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.pending_idempotency.get(key) {
            return Ok(Some(v.clone()));
        }
        self.store.idempotency_get(key)
    }

    /// Stores the outcome for an idempotency key, indexed by `time_ms` so that
    /// [`Txn::expire_idempotency`] can drop it later. Keys must not start with a 0 byte.
    pub fn put_idempotency(&mut self, key: &[u8], outcome: &[u8], time_ms: u64) {
        let family = cf(&self.store.db, CF_IDEMPOTENCY);
        self.batch.put_cf(family, key, outcome);
        self.batch.put_cf(family, idempotency_index_key(time_ms, key), []);
        self.pending_idempotency.insert(key.to_vec(), outcome.to_vec());
    }

    /// Deletes up to `max` idempotency outcomes stored with a time before `before_ms`, oldest
    /// first; returns how many. Deterministic: it reads only replicated, applied data.
    pub fn expire_idempotency(&mut self, before_ms: u64, max: usize) -> Result<usize, StoreError> {
        let db = &self.store.db;
        let family = cf(db, CF_IDEMPOTENCY);
        let end = idempotency_index_key(before_ms, &[]);
        let mut n = 0;
        for item in db.iterator_cf(family, IteratorMode::From(&[0u8], Direction::Forward)) {
            let (k, _) = item?;
            if n >= max || k[0] != 0 || k.as_ref() >= end.as_slice() {
                break;
            }
            self.batch.delete_cf(family, &k);
            self.batch.delete_cf(family, &k[9..]);
            n += 1;
        }
        Ok(n)
    }

    pub fn put_changeset(&mut self, id: &[u8], bytes: &[u8]) {
        self.batch.put_cf(cf(&self.store.db, CF_CHANGESETS), id, bytes);
    }

    pub fn delete_changeset(&mut self, id: &[u8]) {
        self.batch.delete_cf(cf(&self.store.db, CF_CHANGESETS), id);
    }

    /// Records event `seq`, dropping the one that falls out of the newest `keep`.
    ///
    /// Why a point delete and not a range delete per event: RocksDB keeps every range
    /// tombstone until compaction, and replaying a WAL with many of them is quadratic.
    pub fn put_event(&mut self, seq: u64, bytes: &[u8], keep: u64) {
        let events = cf(&self.store.db, CF_EVENTS);
        self.batch.put_cf(events, u64_key(seq), bytes);
        if seq >= keep {
            self.batch.delete_cf(events, u64_key(seq - keep));
        }
    }

    /// Drops every event older than `first_kept` (after the retention was lowered).
    pub fn trim_events(&mut self, first_kept: u64) {
        self.batch.delete_range_cf(cf(&self.store.db, CF_EVENTS), u64_key(0), u64_key(first_kept));
    }

    /// Stores a small replicated application setting (kept in snapshots).
    pub fn put_setting(&mut self, name: &str, bytes: &[u8]) {
        self.batch.put_cf(cf(&self.store.db, CF_SETTINGS), setting_key(name), bytes);
    }

    pub fn put_event_settings(&mut self, bytes: &[u8]) {
        self.batch.put_cf(cf(&self.store.db, CF_SETTINGS), KEY_EVENT_SETTINGS, bytes);
    }

    /// Records the rejection of the command at `position` in entry `log_index`, keeping only
    /// those within `keep_log_entries` of `log_index`.
    pub fn put_rejection(&mut self, log_index: u64, position: u32, bytes: &[u8], keep_log_entries: u64) {
        let rej = cf(&self.store.db, CF_REJECTIONS);
        let mut key = u64_key(log_index).to_vec();
        key.extend_from_slice(&position.to_be_bytes());
        self.batch.put_cf(rej, key, bytes);
        // One range delete per `REJECTION_TRIM_EVERY` entries, not per rejection: range
        // tombstones are costly until compaction (see `put_event`).
        if log_index > keep_log_entries && log_index % REJECTION_TRIM_EVERY == 0 {
            self.batch.delete_range_cf(rej, u64_key(0), u64_key(log_index - keep_log_entries));
        }
    }
}
