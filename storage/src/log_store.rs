//! openraft's log storage on RocksDB: entries, vote, committed and last purged log id.
//!
//! # Correctness
//! - The vote is fsynced before [`RaftLogStorage::save_vote`] returns.
//! - Appended entries are fsynced before openraft's flush callback is called.
//! - Truncation and purge each run as one atomic batch, so no hole can appear in the log:
//!   a purge records the new last purged id in the same batch that deletes the entries.

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
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// The Raft log and vote of one node. Cheap to clone: clones share the database, which is how
/// openraft's separate log reader is served.
pub struct LogStore<C: RaftTypeConfig> {
    db: Arc<DB>,
    _c: PhantomData<C>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self { db: self.db.clone(), _c: PhantomData }
    }
}

impl<C: RaftTypeConfig> LogStore<C>
where
    C::Entry: Serialize + DeserializeOwned,
{
    pub fn new(db: Arc<DB>) -> Self {
        Self { db, _c: PhantomData }
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
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::From(&key, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = key_u64(&k).map_err(|e| StorageIOError::read_logs(&e))?;
            if !range.contains(&index) {
                break;
            }
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
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_RAFT_META), KEY_LAST_PURGED, codec::encode(&log_id));
        batch.delete_range_cf(cf(&self.db, CF_LOGS), u64_key(0), u64_key(log_id.index + 1));
        crate::failpoint::hit("purge_before");
        self.db.write_opt(batch, &sync_write()).map_err(|e| StorageIOError::write_logs(&e))?;
        crate::failpoint::hit("purge_after");
        Ok(())
    }
}
