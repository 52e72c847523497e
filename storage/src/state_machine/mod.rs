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

mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, RaftTypeConfig, StorageError,
    StorageIOError, StoredMembership,
};
use rocksdb::DB;

use crate::codec;
use crate::db::{cf, StoreError, CF_SM_META};

use crate::snapshot::{self as snap, SnapshotDir, KEY_APPLIED, KEY_MEMBERSHIP};
use crate::snapshot_file::SnapshotFile;

pub use store::{ClosedSignal, StateStore, Txn};

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

impl<C: RaftTypeConfig<SnapshotData = SnapshotFile>> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let store = self.store.clone();
        let dir = self.dir.clone();
        let started = std::time::Instant::now();
        let (meta, file) = tokio::task::spawn_blocking(move || snap::build::<C>(&store.db, &dir, false))
            .await
            .map_err(sm_read::<C>)?
            .map_err(sm_read::<C>)?;
        tracing::info!(snapshot = %meta.snapshot_id, ms = started.elapsed().as_millis() as u64, "snapshot built");
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

impl<C, A> RaftStateMachine<C> for StateMachineStore<C, A>
where
    C: RaftTypeConfig<Entry = openraft::Entry<C>, SnapshotData = SnapshotFile>,
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
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(SnapshotFile::single)
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
        use tokio::io::AsyncSeekExt;
        let mut src = *snapshot;
        // The received file is renamed into place when it is the one this store handed out;
        // otherwise (a snapshot given directly, possibly a chain of files) it is copied to a
        // staging file first.
        let received = match self.receiving.take() {
            Some(path) if src.as_single().is_some_and(|f| same_file(f, &path)) => path,
            other => {
                if let Some(p) = other {
                    let _ = tokio::fs::remove_file(p).await;
                }
                src.seek(std::io::SeekFrom::Start(0)).await.map_err(sm_read::<C>)?;
                let staged = self.snapshots.temp("stage");
                let mut dst = tokio::fs::File::create(&staged).await.map_err(sm_write::<C>)?;
                tokio::io::copy(&mut src, &mut dst).await.map_err(sm_write::<C>)?;
                dst.sync_all().await.map_err(sm_write::<C>)?;
                staged
            }
        };
        if let Some(f) = src.as_single() {
            f.sync_all().map_err(sm_write::<C>)?;
        }
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
                tokio::task::spawn_blocking(move || snap::build::<C>(&db, &dir, true))
                    .await
                    .map_err(sm_read::<C>)?
                    .map_err(sm_read::<C>)?
            }
        };
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

/// Whether an open file is the file at `path` (same device and inode).
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
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
