//! Snapshot files: building, installing (and finishing an install a crash interrupted),
//! pruning, and checking a data directory's snapshot state.
//!
//! Files live in the node's snapshot directory: `<id>.snap` for a complete snapshot (the
//! current one, or the one being installed) and `*.tmp` while one is written or received.
//!
//! # Correctness
//! - One lock ([`SnapshotDir::lock`]) serializes build, install, prune and reading the current
//!   snapshot, because each reads the database's snapshot meta and the files it names as one
//!   step: a build cannot prune an install's file, read half-loaded data, or overwrite a newer
//!   install's meta, and the current snapshot cannot be pruned between reading its meta and
//!   opening its file.
//! - A file is complete (trailer written, content fsynced, checked) and renamed to `<id>.snap`,
//!   and the directory fsynced, before the database names it. Nothing is copied onto an
//!   existing name.
//! - An install is marked in `sm_meta` (the meta of the snapshot being installed) in the same
//!   batch that wipes the replicated families; the final batch sets the applied log id, the
//!   membership and the current snapshot meta, clears the marker, and purges the Raft log up to
//!   the snapshot, all atomically. So the last purged log id is never ahead of the applied one
//!   once the marker is gone, and [`redo_install`] finishes a marked install at start-up.
//! - The log store's purge waits until the applied log id or an install marker covers what it
//!   deletes (see `log_store`), so a crash between the purge and the install leaves a marked
//!   install to redo, never a log with nothing to rebuild the purged part from.
//! - The current snapshot meta never moves backwards.
//! - Pruning deletes only `.snap` files the database names neither as current nor as being
//!   installed.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use openraft::storage::SnapshotMeta;
use openraft::{LogId, RaftTypeConfig, StoredMembership};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::codec::{self, stream};
use crate::db::{
    cf, legacy_setting_name, sync_write, u64_key, StoreError, CF_CHANGESETS, CF_CHECKPOINTS, CF_EVENTS, CF_HISTORY, CF_IDEMPOTENCY, CF_SETTINGS,
    CF_DEPLOYMENTS, CF_LOGS, CF_RAFT_META, CF_REJECTIONS, CF_SM_META, CF_SNAPSHOT, CF_TREE,
};
use crate::failpoint;
use crate::segments::{merge_segments, open_chain, segments, segments_fit, verify_segment, write_segment};
use crate::snapshot_file::SnapshotFile;
pub use crate::check::{check, DataDirReport};
pub(crate) use crate::check::check_startup;
pub use crate::segments::Segment;

pub(crate) const KEY_APPLIED: &[u8] = b"applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";
/// In `snapshot`: the current snapshot's meta, and its file's size and checksum.
pub(crate) const KEY_SNAPSHOT_META: &[u8] = b"meta";
pub(crate) const KEY_SNAPSHOT_FILE: &[u8] = b"file";
/// In `snapshot`: the history segments the current snapshot is made of before its own file
/// (a list of [`Segment`], oldest first; absent: its own file holds everything).
pub(crate) const KEY_SEGMENTS: &[u8] = b"segments";
/// In `sm_meta`, set while a snapshot install is in progress: the meta of the snapshot being
/// installed, and (for the log store's purge guard) its last log index as 8 big-endian bytes.
pub(crate) const KEY_INSTALLING: &[u8] = b"installing";
pub(crate) const KEY_INSTALLING_INDEX: &[u8] = b"installing_index";
/// In `raft_meta`: the last purged log id (owned by the log store).
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Column families replicated through snapshots.
/// A section's number is its position here, so new families go at the end.
pub(crate) const SNAPSHOT_CFS: [&str; 6] = [CF_HISTORY, CF_IDEMPOTENCY, CF_CHANGESETS, CF_REJECTIONS, CF_EVENTS, CF_SETTINGS];
/// Families derived from the replicated ones: not sent in snapshots, cleared on install and
/// rebuilt by the application at load (fold checkpoints, the history's Merkle tree, the
/// agents' configuration marks).
pub(crate) const DERIVED_CFS: [&str; 3] = [CF_CHECKPOINTS, CF_TREE, CF_DEPLOYMENTS];

/// Largest write batch while installing a snapshot.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// What the database records about the current snapshot's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFileInfo {
    pub bytes: u64,
    pub frames: u64,
    pub checksum: String,
}

/// The snapshot directory and the lock that serializes every operation on it.
pub(crate) struct SnapshotDir {
    pub path: PathBuf,
    seq: AtomicU64,
    lock: Mutex<()>,
}

impl SnapshotDir {
    /// Opens the directory, creating it, and removes leftovers of builds and transfers a crash
    /// interrupted (`*.tmp`; nothing names them).
    pub fn open(path: PathBuf) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&path).map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))?;
        if let Ok(entries) = std::fs::read_dir(&path) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Self { path, seq: AtomicU64::new(0), lock: Mutex::new(()) })
    }

    pub fn lock(&self) -> MutexGuard<'_, ()> {
        // A panic while holding it leaves nothing half-done in memory: every step is on disk.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn temp(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.path.join(format!("{what}-{}-{n}.tmp", std::process::id()))
    }

    pub fn file(&self, snapshot_id: &str) -> PathBuf {
        self.path.join(format!("{snapshot_id}.snap"))
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

pub(crate) fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Invalid(format!("{what}: {e}"))
}

/// Fsyncs a directory, so renames and links in it survive a power loss.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::Invalid(format!("fsync {}: {e}", dir.display())))
}

/// Reads a whole snapshot file and checks its structure and trailer.
pub fn verify_file(path: &Path) -> Result<SnapshotFileInfo, StoreError> {
    let damaged = |e: std::io::Error| StoreError::Invalid(format!("snapshot file {} is damaged: {e}", path.display()));
    let file = File::open(path).map_err(damaged)?;
    let bytes = file.metadata().map_err(damaged)?.len();
    let summary = stream::verify(BufReader::with_capacity(1 << 20, file)).map_err(damaged)?;
    Ok(SnapshotFileInfo { bytes, frames: summary.frames, checksum: summary.checksum })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(family: &'static str, raw: Option<impl AsRef<[u8]>>) -> Result<Option<T>, StoreError> {
    raw.map(|b| codec::decode(b.as_ref()).map_err(|source| StoreError::Codec { cf: family, source })).transpose()
}

/// The current snapshot's meta and file record, if there is one.
pub(crate) fn current<C: RaftTypeConfig>(
    db: &DB,
) -> Result<Option<(SnapshotMeta<C::NodeId, C::Node>, Option<SnapshotFileInfo>)>, StoreError> {
    let family = cf(db, CF_SNAPSHOT);
    let Some(meta) = decode(CF_SNAPSHOT, db.get_cf(family, KEY_SNAPSHOT_META)?)? else { return Ok(None) };
    let info = decode(CF_SNAPSHOT, db.get_cf(family, KEY_SNAPSHOT_FILE)?)?;
    Ok(Some((meta, info)))
}

pub(crate) fn installing<C: RaftTypeConfig>(db: &DB) -> Result<Option<SnapshotMeta<C::NodeId, C::Node>>, StoreError> {
    decode(CF_SM_META, db.get_cf(cf(db, CF_SM_META), KEY_INSTALLING)?)
}

/// Deletes every `.snap` file that the database names neither as the current snapshot nor as
/// the one being installed. The caller holds the lock.
fn prune<C: RaftTypeConfig>(db: &DB, dir: &SnapshotDir) -> Result<(), StoreError> {
    let mut keep = Vec::new();
    if let Some((meta, _)) = current::<C>(db)? {
        keep.push(dir.file(&meta.snapshot_id));
    }
    if let Some(meta) = installing::<C>(db)? {
        keep.push(dir.file(&meta.snapshot_id));
    }
    for seg in segments(db)? {
        keep.push(dir.path.join(&seg.file));
    }
    failpoint::hit("snapshot_prune");
    if let Ok(entries) = std::fs::read_dir(&dir.path) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "snap" || x == "hist") && !keep.contains(&p) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    Ok(())
}

/// Writes every replicated family as it is in `view`, one frame per key, section = position in
/// [`SNAPSHOT_CFS`] (snapshots and backups).
pub(crate) fn write_sections<W: std::io::Write>(db: &DB, view: &rocksdb::SnapshotWithThreadMode<'_, DB>, w: &mut stream::Writer<W>) -> Result<(), StoreError> {
    write_sections_except(db, view, w, &[])
}

/// [`write_sections`] without the families in `skip`.
fn write_sections_except<W: std::io::Write>(
    db: &DB,
    view: &rocksdb::SnapshotWithThreadMode<'_, DB>,
    w: &mut stream::Writer<W>,
    skip: &[&str],
) -> Result<(), StoreError> {
    let io = io_err("writing the stream");
    for (section, name) in SNAPSHOT_CFS.iter().enumerate() {
        if skip.contains(name) {
            continue;
        }
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        opts.set_snapshot(view);
        for item in db.iterator_cf_opt(cf(db, name), opts, IteratorMode::Start) {
            let (k, v) = item?;
            w.frame(section as u8, &k, &v).map_err(&io)?;
        }
    }
    Ok(())
}

/// Builds a snapshot of the replicated column families from one point-in-time view, makes it
/// the current snapshot, and returns its meta and its files. Memory use is one record.
///
/// The history goes into segments shared with the previous snapshot: only the records since
/// its last segment are written (and, now and then, the newest segments merged); the snapshot's
/// own file holds the other families, whose size is the state's. `fresh`: write the whole
/// history into a new segment instead (the current segments were found damaged).
pub(crate) fn build<C: RaftTypeConfig>(
    db: &DB,
    dir: &SnapshotDir,
    fresh: bool,
) -> Result<(SnapshotMeta<C::NodeId, C::Node>, SnapshotFile), StoreError> {
    let _guard = dir.lock();
    // Everything in the snapshot must be durable before openraft purges the log it covers.
    db.flush_wal(true)?;
    failpoint::hit("snapshot_build_before");
    let view = db.snapshot();
    let meta_cf = cf(db, CF_SM_META);
    let applied: Option<LogId<C::NodeId>> = decode::<Option<_>>(CF_SM_META, view.get_cf(meta_cf, KEY_APPLIED)?)?.flatten();
    let membership: StoredMembership<C::NodeId, C::Node> =
        decode(CF_SM_META, view.get_cf(meta_cf, KEY_MEMBERSHIP)?)?.unwrap_or_default();

    if let Some((cur, _)) = current::<C>(db)? {
        if cur.last_log_id > applied {
            // Never move the current snapshot backwards: serve the newer one.
            let file = open_chain(dir, &segments(db)?, &dir.file(&cur.snapshot_id))?;
            return Ok((cur, file));
        }
    }

    let mut shared = if fresh { Vec::new() } else { segments(db)? };
    if !segments_fit(db, &view, dir, &shared)? {
        tracing::info!("the history under the snapshot's segments changed; writing them afresh");
        shared.clear();
    }
    let mut new_segments = shared.clone();
    let next = new_segments.last().map_or(0, |s| s.last + 1);
    if let Some(seg) = write_segment(db, &view, dir, next)? {
        new_segments.push(seg);
    }
    if let Err(e) = merge_segments(dir, &mut new_segments) {
        if fresh {
            return Err(e);
        }
        tracing::warn!("{e}; writing the snapshot's history afresh");
        drop(view);
        drop(_guard);
        return build::<C>(db, dir, true);
    }

    // A crash from here on leaves segment files nothing names yet; the next prune drops them.
    failpoint::hit("snapshot_build_segment");
    let io = io_err("writing snapshot");
    let tmp = dir.temp("build");
    let mut w = stream::Writer::new(BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(&io)?)).map_err(&io)?;
    write_sections_except(db, &view, &mut w, &[CF_HISTORY])?;
    let (w, summary) = w.finish().map_err(&io)?;
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(&io)?;
    drop(file);
    // Check on build: what is on disk is what was written.
    let info = verify_file(&tmp)?;
    if info.frames != summary.frames || info.checksum != summary.checksum {
        return Err(StoreError::Invalid(format!("snapshot {} reads back differently than written", tmp.display())));
    }

    let n = dir.next_seq();
    let snapshot_id = match &applied {
        Some(id) => format!("{}-{}-{}-{n}", id.leader_id, id.index, std::process::id()),
        None => format!("none-{}-{n}", std::process::id()),
    };
    let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
    let path = dir.file(&meta.snapshot_id);
    std::fs::rename(&tmp, &path).map_err(&io)?;
    fsync_dir(&dir.path)?;
    failpoint::hit("snapshot_build_renamed");
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, CF_SNAPSHOT), KEY_SNAPSHOT_META, codec::encode(&meta));
    batch.put_cf(cf(db, CF_SNAPSHOT), KEY_SNAPSHOT_FILE, codec::encode(&info));
    batch.put_cf(cf(db, CF_SNAPSHOT), KEY_SEGMENTS, codec::encode(&new_segments));
    db.write_opt(batch, &sync_write())?;
    failpoint::hit("snapshot_build_after");
    prune::<C>(db, dir)?;
    let file = open_chain(dir, &new_segments, &path)?;
    Ok((meta, file))
}

/// Opens the current snapshot for sending, after checking its file against the recorded size
/// and its trailer. `Ok(None)`: there is none, or its file is missing or damaged (logged), and
/// the caller should build a new one.
pub(crate) fn open_current<C: RaftTypeConfig>(
    db: &DB,
    dir: &SnapshotDir,
) -> Result<Option<(SnapshotMeta<C::NodeId, C::Node>, SnapshotFile)>, StoreError> {
    let _guard = dir.lock();
    let Some((meta, info)) = current::<C>(db)? else { return Ok(None) };
    let path = dir.file(&meta.snapshot_id);
    let shared = segments(db)?;
    for seg in &shared {
        if let Err(e) = verify_segment(&dir.path, seg) {
            tracing::error!("{e}; building a new snapshot");
            return Ok(None);
        }
    }
    match verify_file(&path) {
        Ok(found) if info.as_ref().is_none_or(|i| *i == found) => {}
        Ok(found) => {
            tracing::error!(?info, ?found, "snapshot file {} differs from its record; building a new one", path.display());
            return Ok(None);
        }
        Err(e) => {
            tracing::error!("{e}; building a new snapshot");
            return Ok(None);
        }
    }
    Ok(Some((meta, open_chain(dir, &shared, &path)?)))
}

/// Installs a received snapshot: names the (fsynced) received file `<id>.snap`, then installs
/// it with [`install_named`].
pub(crate) fn install_received<C: RaftTypeConfig>(
    db: &DB,
    dir: &SnapshotDir,
    meta: &SnapshotMeta<C::NodeId, C::Node>,
    received: &Path,
) -> Result<(), StoreError> {
    let _guard = dir.lock();
    failpoint::hit("snapshot_install_stage");
    // Check on receive: a damaged or cut-short transfer is refused before anything changes.
    let info = verify_file(received)?;
    let path = dir.file(&meta.snapshot_id);
    std::fs::rename(received, &path).map_err(io_err("naming the received snapshot"))?;
    fsync_dir(&dir.path)?;
    failpoint::hit("snapshot_install_renamed");
    install_named::<C>(db, dir, meta, info)
}

/// Finishes an install that a crash interrupted, if one is marked. Called at open, before
/// anything reads the replicated families.
pub(crate) fn redo_install<C: RaftTypeConfig>(db: &DB, dir: &SnapshotDir) -> Result<(), StoreError> {
    let _guard = dir.lock();
    let Some(meta) = installing::<C>(db)? else { return Ok(()) };
    tracing::warn!(snapshot = %meta.snapshot_id, "finishing a snapshot install interrupted by a crash");
    failpoint::hit("snapshot_redo");
    let path = dir.file(&meta.snapshot_id);
    let info = verify_file(&path).map_err(|e| {
        StoreError::Invalid(format!(
            "cannot finish the interrupted install of snapshot {}: {e}. The node's state cannot be \
             rebuilt from this data directory; remove it and let the node rejoin (README: \
             \"Replacing a damaged node\")",
            meta.snapshot_id
        ))
    })?;
    install_named::<C>(db, dir, &meta, info)
}

/// Replaces the replicated column families with the content of `<id>.snap`. The caller holds
/// the lock and has checked the file (`info`).
fn install_named<C: RaftTypeConfig>(
    db: &DB,
    dir: &SnapshotDir,
    meta: &SnapshotMeta<C::NodeId, C::Node>,
    info: SnapshotFileInfo,
) -> Result<(), StoreError> {
    let path = dir.file(&meta.snapshot_id);
    let meta_cf = cf(db, CF_SM_META);
    let mut batch = WriteBatch::default();
    batch.put_cf(meta_cf, KEY_INSTALLING, codec::encode(meta));
    let index = meta.last_log_id.as_ref().map_or(0, |l| l.index);
    batch.put_cf(meta_cf, KEY_INSTALLING_INDEX, u64_key(index));
    for name in SNAPSHOT_CFS.iter().chain(DERIVED_CFS.iter()) {
        // Keys of these families are 8-byte revisions/indexes or validated ASCII strings
        // (never starting with 0xFF), so this range covers them all.
        batch.delete_range_cf(cf(db, name), &[][..], &[0xFFu8; 256][..]);
    }
    db.write_opt(batch, &sync_write())?;
    // A crash from here on leaves the replicated families wiped and the install marked.
    failpoint::hit("snapshot_install_before");

    let io = io_err("reading snapshot");
    let mut r = stream::Reader::new(BufReader::with_capacity(1 << 20, File::open(&path).map_err(&io)?)).map_err(&io)?;
    let mut batch = WriteBatch::default();
    let mut frames = 0u64;
    while let Some((section, k, v)) = r.frame().map_err(&io)? {
        let Some(name) = SNAPSHOT_CFS.get(section as usize) else {
            return Err(StoreError::Invalid(format!("snapshot {} has unknown section {section}", path.display())));
        };
        match (*name, legacy_setting_name(&k)) {
            // A snapshot built by an older node keeps settings among the events.
            (CF_EVENTS, Some(setting)) => batch.put_cf(cf(db, CF_SETTINGS), setting, v),
            _ => batch.put_cf(cf(db, name), k, v),
        }
        frames += 1;
        // Halfway through, the loaded part is written on its own, so there is always a
        // "partly loaded" state for the crash tests to reach.
        let halfway = frames == info.frames / 2;
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES || halfway {
            db.write(std::mem::take(&mut batch))?;
            if halfway {
                failpoint::hit("snapshot_install_load");
            }
        }
    }
    failpoint::hit("snapshot_install_final");
    batch.put_cf(meta_cf, KEY_APPLIED, codec::encode(&meta.last_log_id));
    batch.put_cf(meta_cf, KEY_MEMBERSHIP, codec::encode(&meta.last_membership));
    batch.put_cf(cf(db, CF_SNAPSHOT), KEY_SNAPSHOT_META, codec::encode(meta));
    batch.put_cf(cf(db, CF_SNAPSHOT), KEY_SNAPSHOT_FILE, codec::encode(&info));
    // The installed file holds the whole history; the next build writes segments from it.
    batch.delete_cf(cf(db, CF_SNAPSHOT), KEY_SEGMENTS);
    batch.delete_cf(meta_cf, KEY_INSTALLING);
    batch.delete_cf(meta_cf, KEY_INSTALLING_INDEX);
    if let Some(upto) = &meta.last_log_id {
        // The log the snapshot covers goes in the same batch that makes it applied, so the
        // last purged id is never ahead of the applied one.
        let purged: Option<LogId<C::NodeId>> = decode(CF_RAFT_META, db.get_cf(cf(db, CF_RAFT_META), KEY_LAST_PURGED)?)?;
        if purged.as_ref().is_none_or(|p| p < upto) {
            batch.put_cf(cf(db, CF_RAFT_META), KEY_LAST_PURGED, codec::encode(upto));
            batch.delete_range_cf(cf(db, CF_LOGS), u64_key(0), u64_key(upto.index + 1));
        }
    }
    db.write_opt(batch, &sync_write())?;
    failpoint::hit("snapshot_install_after");
    prune::<C>(db, dir)
}
