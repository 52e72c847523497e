//! Point-in-time backups of the replicated column families, and writing them into a fresh
//! database. A backup is a snapshot stream (`roster_codec::stream`: frames, end marker, a
//! trailer with the frame count and SHA-256) whose first frame, in [`BACKUP_META_SECTION`],
//! holds the application's description of it; the other sections are the snapshot's
//! (`SNAPSHOT_CFS` order). Derived families (tree, checkpoints) are rebuilt at the first load.

use std::io::Write;

use rocksdb::{IteratorMode, ReadOptions, WriteBatch, DB};

use crate::codec::stream;
use crate::db::{cf, key_u64, sync_write, StoreError, CF_HISTORY};
use crate::snapshot::SNAPSHOT_CFS;
use crate::state_machine::StateStore;

/// The section of the backup's first frame (key `meta`): the application's description
/// (255 is the stream's end marker).
pub const BACKUP_META_SECTION: u8 = 254;
/// The section numbers of the replicated families, by name, as a backup numbers them.
pub fn section_of(name: &str) -> Option<u8> {
    SNAPSHOT_CFS.iter().position(|n| *n == name).map(|i| i as u8)
}
/// Largest write batch while restoring.
const RESTORE_BATCH_BYTES: usize = 4 << 20;

impl StateStore {
    /// Streams a consistent point-in-time backup into `out`: one RocksDB snapshot view is
    /// read family by family, one frame in memory at a time. `meta` gets the last revision in
    /// that view and returns the bytes of the meta frame. Returns the writer, the stream's
    /// summary and that revision.
    pub fn write_backup<W: Write>(&self, out: W, meta: impl FnOnce(u64) -> Vec<u8>) -> Result<(W, stream::Summary, u64), StoreError> {
        let db: &DB = &self.db;
        let view = db.snapshot();
        let last = {
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&view);
            match db.iterator_cf_opt(cf(db, CF_HISTORY), opts, IteratorMode::End).next() {
                Some(item) => key_u64(&item?.0)?,
                None => 0,
            }
        };
        let io = |e: std::io::Error| StoreError::Invalid(format!("writing the backup: {e}"));
        let mut w = stream::Writer::new(out).map_err(io)?;
        w.frame(BACKUP_META_SECTION, b"meta", &meta(last)).map_err(io)?;
        crate::snapshot::write_sections(db, &view, &mut w)?;
        let (out, summary) = w.finish().map_err(io)?;
        Ok((out, summary, last))
    }

    /// Writes the frames of a backup into this (empty) database; [`Restorer::finish`] makes
    /// them durable.
    pub fn restorer(&self) -> Restorer<'_> {
        Restorer { store: self, batch: WriteBatch::default(), frames: 0 }
    }
}

/// Writes a backup's frames into their families, in bounded batches.
pub struct Restorer<'a> {
    store: &'a StateStore,
    batch: WriteBatch,
    frames: u64,
}

impl Restorer<'_> {
    pub fn put(&mut self, section: u8, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let name = section_name(section).ok_or_else(|| StoreError::Invalid(format!("the backup has an unknown section {section}")))?;
        self.batch.put_cf(cf(&self.store.db, name), key, value);
        self.frames += 1;
        if self.batch.size_in_bytes() >= RESTORE_BATCH_BYTES {
            self.store.db.write(std::mem::take(&mut self.batch))?;
        }
        Ok(())
    }

    /// Writes what is left, synced, then flushes every family; returns the frames written.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        self.store.db.write_opt(std::mem::take(&mut self.batch), &sync_write())?;
        self.store.flush()?;
        Ok(self.frames)
    }
}

/// The family a backup section holds, if the section is one this build knows.
pub fn section_name(section: u8) -> Option<&'static str> {
    SNAPSHOT_CFS.get(section as usize).copied()
}
