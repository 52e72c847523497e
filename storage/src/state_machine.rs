//! openraft's state machine on RocksDB, with the application plugged in through
//! [`Application`].
//!
//! Each `apply` call turns its whole batch of committed entries into ONE RocksDB write batch:
//! everything the application wrote through the [`Txn`] plus the new applied log id and
//! membership, written atomically. So after a crash the applied log id always matches the
//! history, and openraft re-applies exactly the entries after it from the Raft log. The batch
//! is not fsynced on its own: the entries are already durable in the log (the same RocksDB
//! WAL, synced by every log append), and building a snapshot, which allows purging the log,
//! syncs the WAL first.
//!
//! Snapshots carry every replicated column family (history, idempotency outcomes, changesets,
//! rejections) read from one RocksDB point-in-time view, so a node that installs one can serve
//! the full history. Checkpoints are derived data and are rebuilt by the application instead.
//! Snapshots are files streamed record by record ([`codec::stream`]): building, sending,
//! receiving and installing one takes memory for one record (plus a bounded write batch), not
//! for the whole history.
//!
//! # Correctness
//! - The applied log id and membership are persisted atomically with the application's writes.
//! - Before a snapshot is built (after which openraft may purge the log it covers) the WAL is
//!   fsynced, so no applied state the purged log could rebuild is ever lost.
//! - `install_snapshot` replaces the replicated column families; an install interrupted by a
//!   crash is finished at the next open before anything reads them (see [`crate::snapshot`]
//!   for the file protocol, the lock and the purge guard).
//! - `open` refuses a data directory whose applied state is behind its purged log with no
//!   install pending, with an error that says how to replace the node.
//! - The application must be deterministic: same entries, same writes, on every node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, RaftTypeConfig, StorageError,
    StorageIOError, StoredMembership,
};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use crate::codec;
use crate::db::{
    cf, key_u64, sync_write, u64_key, StoreError, CF_CHANGESETS, CF_CHECKPOINTS, CF_HISTORY,
    CF_EVENTS, CF_IDEMPOTENCY, CF_REJECTIONS, CF_SETTINGS, CF_SM_META,
};

use crate::snapshot::{self as snap, SnapshotDir, KEY_APPLIED, KEY_MEMBERSHIP};

const KEY_EVENT_SETTINGS: &[u8] = b"settings";

/// The time index of idempotency outcomes: 0, the time (big-endian), then the key. Real keys
/// never start with a 0 byte, so the index sorts before them all.
fn idempotency_index_key(time_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(0);
    k.extend_from_slice(&time_ms.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Settings have a family of their own, keyed by name.
fn setting_key(name: &str) -> &[u8] {
    name.as_bytes()
}
/// Old rejections are trimmed when the log index is a multiple of this.
pub const REJECTION_TRIM_EVERY: u64 = 1024;

/// The application's part of the state machine.
pub trait Application<C: RaftTypeConfig>: Send + Sync + 'static {
    /// Rebuilds in-memory state from what `store` holds. Called at start-up and after a
    /// snapshot was installed.
    fn load(&mut self, store: &StateStore) -> Result<(), StoreError>;

    /// Applies one committed client request. Every durable effect goes into `txn`, which is
    /// written atomically with the applied log id once the whole batch is applied.
    ///
    /// # Correctness
    /// Must be a deterministic function of the durable state, `log_id` and `data`.
    fn apply(&mut self, log_id: &LogId<C::NodeId>, data: &C::D, txn: &mut Txn<'_>) -> C::R;

    /// Called once the batch of the last `apply` calls is written to RocksDB: what the
    /// application publishes to readers and watchers (new revisions, woken agents) belongs
    /// here, so nobody is told of a revision whose records cannot be read yet.
    fn applied(&mut self) {}
}

/// Read access to the application's column families. Cheap to clone and safe to use from any
/// thread (RocksDB reads are concurrent).
#[derive(Clone)]
pub struct StateStore {
    db: Arc<DB>,
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

    /// The stored outcome of a command with this idempotency key.
    pub fn idempotency_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(cf(&self.db, CF_IDEMPOTENCY), key)?)
    }

    /// All staged changesets, by id.
    pub fn changesets(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_CHANGESETS), IteratorMode::Start) {
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

    /// Writes a checkpoint outside of an apply (used when rebuilding derived data).
    pub fn put_checkpoint(&self, revision: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.db.put_cf(cf(&self.db, CF_CHECKPOINTS), u64_key(revision), bytes)?;
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
    store: &'a StateStore,
    batch: WriteBatch,
    pending_idempotency: HashMap<Vec<u8>, Vec<u8>>,
}

impl<'a> Txn<'a> {
    fn new(store: &'a StateStore) -> Self {
        Self { store, batch: WriteBatch::default(), pending_idempotency: HashMap::new() }
    }

    pub fn put_history(&mut self, revision: u64, record: &[u8]) {
        let h = cf(&self.store.db, CF_HISTORY);
        self.batch.put_cf(h, u64_key(revision), record);
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

    pub fn put_checkpoint(&mut self, revision: u64, bytes: &[u8]) {
        self.batch.put_cf(cf(&self.store.db, CF_CHECKPOINTS), u64_key(revision), bytes);
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

/// The state machine handed to openraft.
pub struct StateMachineStore<C: RaftTypeConfig, A> {
    store: StateStore,
    app: A,
    applied: Option<LogId<C::NodeId>>,
    membership: StoredMembership<C::NodeId, C::Node>,
    snapshots: Arc<SnapshotDir>,
    /// The file handed out by the last `begin_receiving_snapshot`: openraft receives one
    /// snapshot at a time, and the install renames this file instead of copying it.
    receiving: Option<PathBuf>,
}

fn sm_read<C: RaftTypeConfig>(e: impl std::fmt::Display) -> StorageError<C::NodeId> {
    StorageIOError::read_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn sm_write<C: RaftTypeConfig>(e: impl std::fmt::Display) -> StorageError<C::NodeId> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn decode_meta<T: serde::de::DeserializeOwned>(raw: Option<Vec<u8>>) -> Result<Option<T>, StoreError> {
    raw.map(|b| codec::decode(&b).map_err(|source| StoreError::Codec { cf: CF_SM_META, source })).transpose()
}

impl<C, A> StateMachineStore<C, A>
where
    C: RaftTypeConfig,
    A: Application<C>,
{
    /// Opens the state machine on `db`, finishing a snapshot install a crash interrupted,
    /// loading the applied state and letting the application rebuild its in-memory state.
    pub fn open(db: Arc<DB>, mut app: A, snapshot_dir: PathBuf) -> Result<Self, StoreError> {
        let store = StateStore::new(db);
        let snapshots = Arc::new(SnapshotDir::open(snapshot_dir)?);
        snap::redo_install::<C>(&store.db, &snapshots)?;
        snap::check_startup::<C>(&store.db, &snapshots.path)?;
        let meta_cf = cf(&store.db, CF_SM_META);
        let applied = decode_meta(store.db.get_cf(meta_cf, KEY_APPLIED)?)?.flatten();
        let membership = decode_meta(store.db.get_cf(meta_cf, KEY_MEMBERSHIP)?)?.unwrap_or_default();
        app.load(&store)?;
        Ok(Self { store, app, applied, membership, snapshots, receiving: None })
    }

    pub fn state_store(&self) -> StateStore {
        self.store.clone()
    }
}

/// Builds snapshots from a RocksDB point-in-time view, concurrently with applies.
pub struct SnapshotBuilder<C> {
    store: StateStore,
    dir: Arc<SnapshotDir>,
    _c: std::marker::PhantomData<C>,
}

impl<C: RaftTypeConfig<SnapshotData = tokio::fs::File>> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let store = self.store.clone();
        let dir = self.dir.clone();
        let (meta, file) = tokio::task::spawn_blocking(move || snap::build::<C>(&store.db, &dir))
            .await
            .map_err(sm_read::<C>)?
            .map_err(sm_read::<C>)?;
        Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) })
    }
}

impl<C, A> RaftStateMachine<C> for StateMachineStore<C, A>
where
    C: RaftTypeConfig<Entry = openraft::Entry<C>, SnapshotData = tokio::fs::File>,
    C::R: Default,
    A: Application<C>,
{
    type SnapshotBuilder = SnapshotBuilder<C>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<C::NodeId>>, StoredMembership<C::NodeId, C::Node>), StorageError<C::NodeId>> {
        Ok((self.applied.clone(), self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut txn = Txn::new(&self.store);
        let mut replies = Vec::new();
        let mut applied = self.applied.clone();
        let mut membership = self.membership.clone();
        for entry in entries {
            applied = Some(entry.log_id.clone());
            let reply = match &entry.payload {
                EntryPayload::Blank => C::R::default(),
                EntryPayload::Normal(data) => self.app.apply(&entry.log_id, data, &mut txn),
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id.clone()), m.clone());
                    C::R::default()
                }
            };
            replies.push(reply);
        }
        let mut batch = txn.batch;
        let meta = cf(&self.store.db, CF_SM_META);
        batch.put_cf(meta, KEY_APPLIED, codec::encode(&applied));
        batch.put_cf(meta, KEY_MEMBERSHIP, codec::encode(&membership));
        // Not fsynced: every applied entry is already durable in the Raft log (same WAL), and
        // openraft re-applies committed entries after the durable applied id at start-up.
        // The log is purged only up to a snapshot, and building one syncs the WAL first.
        crate::failpoint::hit("apply_before");
        self.store.db.write(batch).map_err(sm_write::<C>)?;
        crate::failpoint::hit("apply_after");
        self.app.applied();
        self.applied = applied;
        self.membership = membership;
        crate::metrics::APPLY_SECONDS.observe(started.elapsed());
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone(), dir: self.snapshots.clone(), _c: std::marker::PhantomData }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<C::SnapshotData>, StorageError<C::NodeId>> {
        let path = self.snapshots.temp("receive");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(sm_write::<C>)?;
        // An earlier transfer that never completed leaves its file behind; it is not needed.
        if let Some(old) = self.receiving.replace(path) {
            let _ = tokio::fs::remove_file(old).await;
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<C::SnapshotData>,
    ) -> Result<(), StorageError<C::NodeId>> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let mut src = *snapshot;
        src.flush().await.map_err(sm_write::<C>)?;
        // The received file is renamed into place when it is the one this store handed out;
        // otherwise (a snapshot given directly) it is copied to a staging file first.
        let received = match self.receiving.take() {
            Some(path) if same_file(&src, &path).await => path,
            other => {
                if let Some(p) = other {
                    let _ = tokio::fs::remove_file(p).await;
                }
                src.seek(std::io::SeekFrom::Start(0)).await.map_err(sm_read::<C>)?;
                let staged = self.snapshots.temp("stage");
                let mut dst = tokio::fs::File::create(&staged).await.map_err(sm_write::<C>)?;
                tokio::io::copy(&mut src, &mut dst).await.map_err(sm_write::<C>)?;
                dst.flush().await.map_err(sm_write::<C>)?;
                src = dst;
                staged
            }
        };
        src.sync_all().await.map_err(sm_write::<C>)?;
        drop(src);

        let db = self.store.db.clone();
        let dir = self.snapshots.clone();
        let meta_owned = meta.clone();
        tokio::task::spawn_blocking(move || snap::install_received::<C>(&db, &dir, &meta_owned, &received))
            .await
            .map_err(sm_write::<C>)?
            .map_err(sm_write::<C>)?;
        self.applied = meta.last_log_id.clone();
        self.membership = meta.last_membership.clone();
        self.app.load(&self.store).map_err(sm_read::<C>)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        let db = self.store.db.clone();
        let dir = self.snapshots.clone();
        let found = tokio::task::spawn_blocking(move || snap::open_current::<C>(&db, &dir))
            .await
            .map_err(sm_read::<C>)?
            .map_err(sm_read::<C>)?;
        let (meta, file) = match found {
            Some(found) => found,
            None => {
                // No snapshot yet is normal; a damaged or missing file is replaced by a fresh
                // build from the state machine, which is the source of truth.
                let has_meta = snap::current::<C>(&self.store.db).map_err(sm_read::<C>)?.is_some();
                if !has_meta {
                    return Ok(None);
                }
                let db = self.store.db.clone();
                let dir = self.snapshots.clone();
                tokio::task::spawn_blocking(move || snap::build::<C>(&db, &dir))
                    .await
                    .map_err(sm_read::<C>)?
                    .map_err(sm_read::<C>)?
            }
        };
        Ok(Some(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) }))
    }
}

/// Whether an open file is the file at `path` (same device and inode).
async fn same_file(file: &tokio::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, tokio::fs::metadata(path).await) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_outcomes_expire_oldest_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(crate::open(&dir.path().join("db")).unwrap());
        let mut txn = store.offline_txn();
        for (i, key) in ["k-a", "k-b", "k-c", "k-d"].iter().enumerate() {
            txn.put_idempotency(key.as_bytes(), b"outcome", 1_000 * (i as u64 + 1));
        }
        store.db.write(txn.batch).unwrap();
        // Before 3000: k-a (1000) and k-b (2000) expire, but at most one per call.
        let mut txn = store.offline_txn();
        assert_eq!(txn.expire_idempotency(3_000, 1).unwrap(), 1);
        store.db.write(txn.batch).unwrap();
        assert!(store.idempotency_get(b"k-a").unwrap().is_none());
        assert!(store.idempotency_get(b"k-b").unwrap().is_some());
        let mut txn = store.offline_txn();
        assert_eq!(txn.expire_idempotency(3_000, 100).unwrap(), 1);
        store.db.write(txn.batch).unwrap();
        assert!(store.idempotency_get(b"k-b").unwrap().is_none());
        assert!(store.idempotency_get(b"k-c").unwrap().is_some());
        assert!(store.idempotency_get(b"k-d").unwrap().is_some());
        let mut txn = store.offline_txn();
        assert_eq!(txn.expire_idempotency(3_000, 100).unwrap(), 0, "nothing else is old enough");
    }
}
