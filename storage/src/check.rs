//! Checking a data directory: whether its Raft log, applied state and snapshot files fit
//! together (`roster check-data-dir`, and the refusal at start-up of a damaged directory).

use std::path::Path;

use openraft::{LogId, RaftTypeConfig};
use rocksdb::{IteratorMode, DB};
use serde::Serialize;

use crate::db::{cf, StoreError, CF_LOGS, CF_RAFT_META, CF_SM_META};
use crate::segments::{segments, verify_segment};
use crate::snapshot::{current, decode, installing, verify_file, SnapshotFileInfo, KEY_APPLIED, KEY_LAST_PURGED};

/// What a data directory's Raft and snapshot state looks like, and what is wrong with it.
#[derive(Debug, Clone, Serialize)]
pub struct DataDirReport {
    pub applied_index: Option<u64>,
    pub last_purged_index: Option<u64>,
    pub first_log_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// The id of a snapshot whose install a crash interrupted (redone at the next start).
    pub install_pending: Option<String>,
    pub snapshot_id: Option<String>,
    pub snapshot_file: Option<SnapshotFileInfo>,
    /// Every problem found; empty means the directory is consistent.
    pub problems: Vec<String>,
}

/// Checks a (stopped) node's database and snapshot directory: applied ≥ last purged unless an
/// install is pending, no hole in the log after the last purged index, and the file the
/// current snapshot meta (and a pending install) names exists, has its recorded size and
/// checksum, and parses.
pub fn check<C: RaftTypeConfig>(db: &DB, snapshot_dir: &Path) -> Result<DataDirReport, StoreError> {
    check_with::<C>(db, snapshot_dir, true)
}

/// [`check`], optionally without reading the snapshot files through (they are checked when
/// they are used: at start-up, when sent, when installed).
fn check_with<C: RaftTypeConfig>(db: &DB, snapshot_dir: &Path, verify_files: bool) -> Result<DataDirReport, StoreError> {
    let applied: Option<LogId<C::NodeId>> =
        decode::<Option<_>>(CF_SM_META, db.get_cf(cf(db, CF_SM_META), KEY_APPLIED)?)?.flatten();
    let purged: Option<LogId<C::NodeId>> = decode(CF_RAFT_META, db.get_cf(cf(db, CF_RAFT_META), KEY_LAST_PURGED)?)?;
    let pending = installing::<C>(db)?;
    let mut problems = Vec::new();
    let (applied_index, purged_index) = (applied.as_ref().map(|l| l.index), purged.as_ref().map(|l| l.index));
    if pending.is_none() && purged_index > applied_index {
        problems.push(format!(
            "applied index {applied_index:?} is behind the last purged index {purged_index:?} with no install pending"
        ));
    }
    let mut first = None;
    let mut last: Option<u64> = None;
    for item in db.iterator_cf(cf(db, CF_LOGS), IteratorMode::Start) {
        let (k, _) = item?;
        let i = crate::db::key_u64(&k)?;
        if first.is_none() {
            first = Some(i);
            if let Some(p) = purged_index {
                if i <= p {
                    problems.push(format!("log entry {i} is at or below the last purged index {p}"));
                }
            }
        }
        if let Some(prev) = last {
            if i != prev + 1 {
                problems.push(format!("hole in the log between {prev} and {i}"));
            }
        }
        last = Some(i);
    }
    if let Some(f) = first {
        // openraft reads every entry after the last purged one (to re-apply and to serve).
        let expected = purged_index.map_or(0, |p| p + 1);
        if f > expected {
            problems.push(format!(
                "the log starts at {f}, but it was purged only up to {purged_index:?}: entries {expected}..{} are missing",
                f - 1
            ));
        }
    }
    let mut snapshot_id = None;
    let mut snapshot_file = None;
    if let Some((meta, info)) = current::<C>(db)? {
        let path = snapshot_dir.join(format!("{}.snap", meta.snapshot_id));
        // Without reading it through: it must exist with its recorded size. A crash cannot
        // lose it (it is fsynced and renamed before the database names it), so its absence
        // means the database lost writes it had synced: a damaged disk.
        let checked = if verify_files {
            verify_file(&path)
        } else {
            match (std::fs::metadata(&path), &info) {
                (Err(e), _) => Err(StoreError::Invalid(format!("snapshot file {} is missing: {e}", path.display()))),
                (Ok(m), Some(i)) if m.len() != i.bytes => Err(StoreError::Invalid(format!(
                    "snapshot file {} has {} bytes, recorded as {}",
                    path.display(),
                    m.len(),
                    i.bytes
                ))),
                (Ok(_), Some(i)) => Ok(i.clone()),
                (Ok(m), None) => Ok(SnapshotFileInfo { bytes: m.len(), frames: 0, checksum: String::new() }),
            }
        };
        match checked {
            Ok(found) => {
                if let Some(info) = &info {
                    if *info != found {
                        problems.push(format!("snapshot file {} is {found:?}, recorded as {info:?}", path.display()));
                    }
                }
                snapshot_file = Some(found);
            }
            Err(e) => problems.push(e.to_string()),
        }
        snapshot_id = Some(meta.snapshot_id);
        for seg in segments(db)? {
            let checked = if verify_files {
                verify_segment(snapshot_dir, &seg)
            } else {
                match std::fs::metadata(snapshot_dir.join(&seg.file)) {
                    Ok(m) if m.len() == seg.info.bytes => Ok(()),
                    Ok(m) => Err(StoreError::Invalid(format!("history segment {} has {} bytes, recorded as {}", seg.file, m.len(), seg.info.bytes))),
                    Err(e) => Err(StoreError::Invalid(format!("history segment {} is missing: {e}", seg.file))),
                }
            };
            if let Err(e) = checked {
                problems.push(e.to_string());
            }
        }
    }
    if let Some(meta) = &pending {
        if let Err(e) = verify_file(&snapshot_dir.join(format!("{}.snap", meta.snapshot_id))) {
            problems.push(format!("the pending install cannot be finished: {e}"));
        }
    }
    Ok(DataDirReport {
        applied_index,
        last_purged_index: purged_index,
        first_log_index: first,
        last_log_index: last,
        install_pending: pending.map(|m| m.snapshot_id),
        snapshot_id,
        snapshot_file,
        problems,
    })
}

/// Refuses to run on a data directory whose Raft log and applied state do not fit together
/// (the applied state behind the purged log with no install to finish, a hole in the log):
/// what a crash cannot produce but a damaged disk can. Runs at open, after a pending install
/// was finished; costs one pass over the log's keys (bounded by the snapshot policy).
pub(crate) fn check_startup<C: RaftTypeConfig>(db: &DB, snapshot_dir: &Path) -> Result<(), StoreError> {
    let report = check_with::<C>(db, snapshot_dir, false)?;
    if report.problems.is_empty() {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "this data directory is damaged: {}. Its state cannot be trusted; remove the data \
         directory and let the node rejoin (README: \"Replacing a damaged node\"); \
         `roster check-data-dir` shows the details",
        report.problems.join("; ")
    )))
}
