//! History segments: the immutable files of history records that successive snapshots share
//! (see [`crate::snapshot`]): written from a point-in-time view, merged by size tier, checked
//! against their record, and opened as the head of a snapshot's chain.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use rocksdb::{IteratorMode, ReadOptions, DB};
use serde::{Deserialize, Serialize};

use crate::codec::stream;
use crate::db::{cf, u64_key, StoreError, CF_HISTORY, CF_SNAPSHOT};
use crate::snapshot::{decode, io_err, SnapshotDir, SnapshotFileInfo, KEY_SEGMENTS};
use crate::snapshot_file::SnapshotFile;

/// Segments are merged this many at a time, when the newest this many are of one size tier
/// (frames in [FANIN^k, FANIN^(k+1))): at most FANIN − 1 segments per tier, and a history
/// record is rewritten O(log_FANIN(history)) times over the life of a data directory.
const SEGMENT_MERGE_FANIN: usize = 8;

/// An immutable file of history records (revisions `first..=last`), one link of a chain
/// ([`stream::STREAM_VERSION_CHAINED`]). The history only grows, so successive snapshots share
/// their segments and a build writes only the records since the last one: a snapshot costs
/// O(state + new history), not O(history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub first: u64,
    pub last: u64,
    /// Its file's name in the snapshot directory (`*.hist`).
    pub file: String,
    pub info: SnapshotFileInfo,
    /// SHA-256 of the stored value of its last record. If the history under it was replaced
    /// (a snapshot installed, records rehashed by a format upgrade) they differ, and the next
    /// build writes the segments afresh.
    pub last_value: String,
}

impl Segment {
    fn tier(&self) -> u32 {
        let mut n = self.info.frames.max(1);
        let mut tier = 0;
        while n >= SEGMENT_MERGE_FANIN as u64 {
            n /= SEGMENT_MERGE_FANIN as u64;
            tier += 1;
        }
        tier
    }
}

/// The history segments of the current snapshot, oldest first.
pub(crate) fn segments(db: &DB) -> Result<Vec<Segment>, StoreError> {
    Ok(decode(CF_SNAPSHOT, db.get_cf(cf(db, CF_SNAPSHOT), KEY_SEGMENTS)?)?.unwrap_or_default())
}

/// Reads one segment's file through and checks it against its record.
pub(crate) fn verify_segment(dir: &Path, seg: &Segment) -> Result<(), StoreError> {
    let path = dir.join(&seg.file);
    let damaged = |e: String| StoreError::Invalid(format!("history segment {} is damaged: {e}", path.display()));
    let file = File::open(&path).map_err(|e| damaged(e.to_string()))?;
    let bytes = file.metadata().map_err(|e| damaged(e.to_string()))?.len();
    let summary = stream::verify_link(BufReader::with_capacity(1 << 20, file)).map_err(|e| damaged(e.to_string()))?;
    let found = SnapshotFileInfo { bytes, frames: summary.frames, checksum: summary.checksum };
    if found != seg.info {
        return Err(damaged(format!("it is {found:?}, recorded as {:?}", seg.info)));
    }
    Ok(())
}

/// Whether `segments` still describe the history in `view`: every file is there with its
/// recorded size, and the last record is the one the last segment ends with.
pub(crate) fn segments_fit(db: &DB, view: &rocksdb::SnapshotWithThreadMode<'_, DB>, dir: &SnapshotDir, segments: &[Segment]) -> Result<bool, StoreError> {
    let Some(newest) = segments.last() else { return Ok(true) };
    for seg in segments {
        match std::fs::metadata(dir.path.join(&seg.file)) {
            Ok(m) if m.len() == seg.info.bytes => {}
            _ => return Ok(false),
        }
    }
    let stored = view.get_cf(cf(db, CF_HISTORY), u64_key(newest.last))?;
    Ok(stored.is_some_and(|v| stream::sha256_hex(&v) == newest.last_value))
}

/// Writes the history records of `view` from revision `first` on as a new segment, if there
/// are any. The file is complete, fsynced, read back and named before this returns.
pub(crate) fn write_segment(db: &DB, view: &rocksdb::SnapshotWithThreadMode<'_, DB>, dir: &SnapshotDir, first: u64) -> Result<Option<Segment>, StoreError> {
    let io = io_err("writing a history segment");
    let mut opts = ReadOptions::default();
    opts.fill_cache(false);
    opts.set_snapshot(view);
    let start = u64_key(first);
    let mut records = db.iterator_cf_opt(cf(db, CF_HISTORY), opts, IteratorMode::From(&start, rocksdb::Direction::Forward)).peekable();
    if records.peek().is_none() {
        return Ok(None);
    }
    let tmp = dir.temp("segment");
    let mut w = stream::Writer::chained(BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(&io)?)).map_err(&io)?;
    let (mut from, mut to, mut last_value) = (None, 0, String::new());
    for item in records {
        let (k, v) = item?;
        let revision = crate::db::key_u64(&k)?;
        from.get_or_insert(revision);
        to = revision;
        w.frame(0, &k, &v).map_err(&io)?;
        last_value = stream::sha256_hex(&v);
    }
    let seg = finish_segment(dir, w, &tmp, from.unwrap_or(first), to, last_value)?;
    Ok(Some(seg))
}

/// Completes a segment written to `tmp`: trailer, fsync, read back, renamed to its name.
fn finish_segment(
    dir: &SnapshotDir,
    w: stream::Writer<BufWriter<File>>,
    tmp: &Path,
    first: u64,
    last: u64,
    last_value: String,
) -> Result<Segment, StoreError> {
    let io = io_err("writing a history segment");
    let (w, summary) = w.finish().map_err(&io)?;
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(&io)?;
    let bytes = file.metadata().map_err(&io)?.len();
    drop(file);
    let name = format!("{first:020}-{last:020}-{}-{}.hist", std::process::id(), dir.next_seq());
    let seg = Segment { first, last, file: name, info: SnapshotFileInfo { bytes, frames: summary.frames, checksum: summary.checksum }, last_value };
    let final_path = dir.path.join(&seg.file);
    std::fs::rename(tmp, &final_path).map_err(&io)?;
    // Check on build: what is on disk is what was written.
    verify_segment(&dir.path, &seg)?;
    Ok(seg)
}

/// Merges the newest segments while the newest [`SEGMENT_MERGE_FANIN`] are of one tier.
pub(crate) fn merge_segments(dir: &SnapshotDir, segments: &mut Vec<Segment>) -> Result<(), StoreError> {
    loop {
        let n = segments.len();
        if n < SEGMENT_MERGE_FANIN {
            return Ok(());
        }
        let tail = &segments[n - SEGMENT_MERGE_FANIN..];
        if tail.iter().any(|s| s.tier() != tail[0].tier()) {
            return Ok(());
        }
        let io = io_err("merging history segments");
        let tmp = dir.temp("merge");
        let mut w = stream::Writer::chained(BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(&io)?)).map_err(&io)?;
        for seg in tail {
            let path = dir.path.join(&seg.file);
            let mut r = stream::Reader::link(BufReader::with_capacity(1 << 20, File::open(&path).map_err(&io)?)).map_err(&io)?;
            while let Some((section, k, v)) = r.frame().map_err(|e| StoreError::Invalid(format!("history segment {}: {e}", path.display())))? {
                w.frame(section, &k, &v).map_err(&io)?;
            }
        }
        let (first, last, last_value) = (tail[0].first, tail[SEGMENT_MERGE_FANIN - 1].last, tail[SEGMENT_MERGE_FANIN - 1].last_value.clone());
        let merged = finish_segment(dir, w, &tmp, first, last, last_value)?;
        segments.truncate(n - SEGMENT_MERGE_FANIN);
        segments.push(merged);
    }
}

/// Opens the files of a snapshot whose own file is `path`: its segments, then that file.
pub(crate) fn open_chain(dir: &SnapshotDir, segments: &[Segment], path: &Path) -> Result<SnapshotFile, StoreError> {
    let io = io_err("opening the snapshot's files");
    let mut files = Vec::with_capacity(segments.len() + 1);
    for seg in segments {
        files.push(File::open(dir.path.join(&seg.file)).map_err(&io)?);
    }
    files.push(File::open(path).map_err(&io)?);
    SnapshotFile::chain(files).map_err(io)
}
