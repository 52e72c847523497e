//! openraft's log storage on RocksDB: entries, vote, committed and last purged log id.
//!
//! # Correctness
//! - The vote is fsynced before [`RaftLogStorage::save_vote`] returns.
//! - Appended entries are fsynced before openraft's flush callback is called.
//! - Truncation and purge each run as one atomic batch, so no hole can appear in the log:
//!   a purge records the new last purged id in the same batch that deletes the entries, and
//!   the last purged id never moves backwards.
//! - A purge never deletes entries the state machine could still need: it waits until the
//!   applied log id, or the marker of a snapshot install (which a restart finishes), covers
//!   them. openraft 0.9 queues a follower's snapshot install on the state machine worker and
//!   then purges the log at once; without this wait a crash between the two left the applied
//!   state behind a purged log, a node that could never start again.
//! - Reads return a contiguous run of entries or an error, never entries across a hole.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::db::{cf, key_u64, sync_write, u64_key, CF_LOGS, CF_RAFT_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
use crate::snapshot::{KEY_APPLIED, KEY_INSTALLING_INDEX, KEY_LAST_PURGED};
use crate::db::CF_SM_META;

/// How long a purge waits for the applied state or a snapshot install marker to cover it
/// before it fails (which stops the Raft core: something is badly wrong with the install).
pub const PURGE_WAIT_FOR_INSTALL_MS: u64 = 300_000;
/// How often a waiting purge looks again.
const PURGE_POLL_MS: u64 = 2;

/// The Raft log and vote of one node. Cheap to clone: clones share the database, which is how
/// openraft's separate log reader is served.
pub struct LogStore<C: RaftTypeConfig> {
    db: Arc<DB>,
    /// Whether a purge waits for the state machine to cover it (always, but for openraft's
    /// storage test suite, whose log store has no state machine behind it).
    guarded: bool,
    _c: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self { db: self.db.clone(), guarded: self.guarded, _c: PhantomData }
    }
}

impl<C: RaftTypeConfig> LogStore<C>
where
    C::Entry: Serialize + DeserializeOwned,
{
    /// The log store of a node, sharing `db` with its [`crate::StateMachineStore`].
    pub fn new(db: Arc<DB>) -> Self {
        Self { db, guarded: true, _c: PhantomData }
    }

    /// A log store whose purge does not wait for a state machine: only for openraft's storage
    /// test suite, which purges logs that nothing applies.
    pub fn new_unguarded_for_tests(db: Arc<DB>) -> Self {
        Self { db, guarded: false, _c: PhantomData }
    }

    /// The highest log index the state machine covers durably or by a pending install: the
    /// applied index, or the last index of a snapshot whose install is marked.
    fn covered_index(&self) -> Result<Option<u64>, StorageError<C::NodeId>> {
        let meta = cf(&self.db, CF_SM_META);
        let applied: Option<LogId<C::NodeId>> = match self.db.get_cf(meta, KEY_APPLIED).map_err(|e| StorageIOError::read(&e))? {
            Some(b) => codec::decode::<Option<LogId<C::NodeId>>>(&b).map_err(|e| StorageIOError::read(&e))?,
            None => None,
        };
        let installing = match self.db.get_cf(meta, KEY_INSTALLING_INDEX).map_err(|e| StorageIOError::read(&e))? {
            Some(b) => Some(key_u64(&b).map_err(|e| StorageIOError::read(&e))?),
            None => None,
        };
        Ok(applied.map(|l| l.index).max(installing))
    }

    /// Waits until the state machine covers `index` (see [`Self::covered_index`]).
    async fn wait_covered(&self, index: u64) -> Result<(), StorageError<C::NodeId>> {
        let started = std::time::Instant::now();
        let mut warned = false;
        loop {
            if self.covered_index()?.is_some_and(|c| c >= index) {
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= std::time::Duration::from_millis(PURGE_WAIT_FOR_INSTALL_MS) {
                let msg = format!("purging the log up to {index}: no applied state or snapshot install covered it within {waited:?}");
                return Err(StorageIOError::write_logs(&std::io::Error::other(msg)).into());
            }
            if !warned && waited >= std::time::Duration::from_secs(10) {
                warned = true;
                tracing::warn!(index, "a log purge has waited {waited:?} for the snapshot install to be marked");
            }
            tokio::time::sleep(std::time::Duration::from_millis(PURGE_POLL_MS)).await;
        }
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError<C::NodeId>> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_RAFT_META), key)
            .map_err(|e| StorageIOError::read(&e))?;
        raw.map(|b| codec::decode(&b).map_err(|e| StorageIOError::read(&e).into())).transpose()
    }

    fn put_meta_sync<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError<C::NodeId>> {
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT_META), key, codec::encode(value), &sync_write())
            .map_err(|e| StorageIOError::write(&e).into())
    }

    fn last_entry(&self) -> Result<Option<C::Entry>, StorageError<C::NodeId>> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(codec::decode(&v).map_err(|e| StorageIOError::read_logs(&e))?))
            }
        }
    }
}

impl<C: RaftTypeConfig> RaftLogReader<C> for LogStore<C>
where
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let key = u64_key(start);
        let mut out: Vec<C::Entry> = Vec::new();
        // Entries must be contiguous; the first may be after `start` (openraft asks from the
        // beginning of ranges whose head was purged).
        let mut expected: Option<u64> = None;
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::From(&key, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = key_u64(&k).map_err(|e| StorageIOError::read_logs(&e))?;
            if !range.contains(&index) {
                break;
            }
            if let Some(e) = expected.filter(|e| *e != index) {
                let msg = format!("log entry {e} is missing (next stored entry: {index})");
                return Err(StorageIOError::read_logs(&std::io::Error::other(msg)).into());
            }
            expected = Some(index + 1);
            out.push(codec::decode(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }
}

impl<C: RaftTypeConfig> RaftLogStorage<C> for LogStore<C>
where
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let last_purged_log_id: Option<LogId<C::NodeId>> = self.get_meta(KEY_LAST_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.get_log_id().clone()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        crate::failpoint::hit("vote_save_before");
        self.put_meta_sync(KEY_VOTE, vote).map_err(|e| StorageIOError::write_vote(&e))?;
        crate::failpoint::hit("vote_save_after");
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // Not fsynced: losing it only means re-applying from the state machine's applied id,
        // which is always durable.
        self.db
            .put_cf(cf(&self.db, CF_RAFT_META), KEY_COMMITTED, codec::encode(&committed))
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.get_meta::<Option<LogId<C::NodeId>>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let logs = cf(&self.db, CF_LOGS);
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(logs, u64_key(entry.get_log_id().index), codec::encode(&entry));
        }
        // One fsync per append call. openraft 0.9 waits for each append before the next, so
        // concurrent client writes are batched into one entry upstream (RaftNode's batcher).
        crate::failpoint::hit("log_append_before");
        let started = std::time::Instant::now();
        let result = self.db.write_opt(batch, &sync_write());
        crate::metrics::LOG_APPEND_SECONDS.observe(started.elapsed());
        match result {
            Ok(()) => {
                crate::failpoint::hit("log_append_after");
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOGS), u64_key(log_id.index), u64_key(u64::MAX));
        // delete_range's end is exclusive; u64::MAX itself is never a real index.
        self.db
            .write_opt(batch, &sync_write())
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        if self.guarded {
            self.wait_covered(log_id.index).await?;
        }
        // A snapshot install may already have purged further; never move backwards.
        let purged: Option<LogId<C::NodeId>> = self.get_meta(KEY_LAST_PURGED)?;
        if purged.as_ref().is_some_and(|p| *p >= log_id) {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_RAFT_META), KEY_LAST_PURGED, codec::encode(&log_id));
        batch.delete_range_cf(cf(&self.db, CF_LOGS), u64_key(0), u64_key(log_id.index + 1));
        crate::failpoint::hit("purge_before");
        self.db.write_opt(batch, &sync_write()).map_err(|e| StorageIOError::write_logs(&e))?;
        crate::failpoint::hit("purge_after");
        Ok(())
    }
}
