//! Work done at load, before the node serves: upgrading a history written in an older record
//! format, and bringing the Merkle tree up to the history's head (after an upgrade, or a
//! snapshot from a node that did not carry the tree).
//!
//! Both are deterministic functions of the stored records, so every node that runs them ends
//! with the same hashes and the same tree.

use roster_storage::{codec, StateStore, StoreError};

use super::records::corrupt;
use crate::domain::merkle::Frontier;
use crate::domain::{Hash, HistoryRecord};
use crate::reader::Reader;

/// The data dir format this build writes. 1: before versions were recorded (record format 1,
/// no Merkle tree); 2: record format 2 and the `tree` family; 3: fold checkpoints hold the
/// state with failover-list weights (a format-2 dir's checkpoints are dropped and rebuilt).
pub const DATA_FORMAT: u32 = 3;

/// The first data format whose fold checkpoints this build decodes.
pub const CHECKPOINT_FORMAT: u32 = 3;

/// Refuses a data dir written by a newer Roster, before anything is touched.
pub fn check_data_format(store: &StateStore) -> Result<Option<u32>, StoreError> {
    let stored = store.data_format()?;
    if let Some(v) = stored.filter(|v| *v > DATA_FORMAT) {
        return Err(StoreError::Invalid(format!(
            "this data dir was written by a newer Roster (data format {v}; this build reads formats up to {DATA_FORMAT}): run that version or a later one"
        )));
    }
    Ok(stored)
}

/// Records rewritten, or tree nodes written, per synced batch.
pub const LOAD_BATCH_RECORDS: usize = 10_000;

/// Rewrites a format-1 history in format 2 (`docs/history-format.md`); returns how many
/// records it rewrote (0 when the history is already in format 2).
///
/// Crash-safe without a marker: each batch is atomic, and a record is recognised as already
/// upgraded (its format-2 hash links to the previous record's) or not yet (its format-1 hash
/// links to the format-1 chain recomputed from the bodies), so a rerun picks up where a
/// crash stopped it.
pub fn upgrade_history(store: &StateStore) -> Result<u64, StoreError> {
    let Some((last, bytes)) = store.history_last()? else { return Ok(0) };
    let head: HistoryRecord = codec::decode(&bytes).map_err(corrupt)?;
    if head.hash_is_valid() {
        return Ok(0);
    }
    if HistoryRecord::compute_hash_v1(&head.body, &head.prev_hash) != head.hash {
        return Err(corrupt(format!("revision {last}: its hash matches neither record format 2 nor format 1")));
    }
    tracing::info!(revisions = last, "upgrading the stored history to record format 2 (docs/history-format.md)");
    // Checkpoints hold chain heads of the old format: drop them before the first rewrite, so a
    // crash mid-upgrade cannot leave them behind a history that already looks upgraded. The
    // fold rebuilds them as it goes.
    store.clear_checkpoints()?;
    let (mut v1_prev, mut v2_prev) = (Hash::default(), Hash::default());
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut rewritten = 0u64;
    Reader::new(store.clone()).records(1, |mut record| {
        let revision = record.body.revision;
        let v1 = HistoryRecord::compute_hash_v1(&record.body, &v1_prev);
        let v2 = HistoryRecord::compute_hash(&record.body, &v2_prev);
        if record.prev_hash == v2_prev && record.hash == v2 {
            // Upgraded before a crash.
        } else if record.prev_hash == v1_prev && record.hash == v1 {
            record.prev_hash = v2_prev;
            record.hash = v2;
            pending.push((revision, codec::encode(&record)));
            rewritten += 1;
        } else {
            return Err(corrupt(format!("revision {revision}: its hash or link is broken in both record formats")));
        }
        if pending.len() >= LOAD_BATCH_RECORDS {
            store.rewrite_derived(&std::mem::take(&mut pending), &[], false)?;
            tracing::info!(revision, of = last, "history upgrade progress");
        }
        v1_prev = v1;
        v2_prev = v2;
        Ok(true)
    })?;
    store.rewrite_derived(&pending, &[], true)?;
    tracing::info!(rewritten, "history upgraded to record format 2");
    Ok(rewritten)
}

/// The tree's right edge at `head` revisions, first appending whatever revisions the stored
/// tree lacks. A stored tree that does not match the history is rebuilt from the start.
pub fn catch_up_tree(store: &StateStore, head: u64) -> Result<Frontier, StoreError> {
    let reader = Reader::new(store.clone());
    let mut size = store.tree_size()?;
    let mut clear = false;
    if size > 0 {
        let last_leaf = reader.tree_node(0, size - 1).map_err(corrupt)?;
        let last_record = reader.record(size)?.map(|r| r.hash);
        if size > head || last_leaf.is_none() || last_leaf != last_record {
            tracing::warn!(size, head, "the stored history tree does not match the history; rebuilding it");
            size = 0;
            clear = true;
        }
    }
    let mut frontier = match Frontier::load(size, |l, i| reader.tree_node(l, i)) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(size, error = %e, "the stored history tree is incomplete; rebuilding it");
            clear = true;
            Frontier::default()
        }
    };
    if frontier.size() == head && !clear {
        return Ok(frontier);
    }
    if head > frontier.size() + 1 {
        tracing::info!(from = frontier.size(), to = head, "building the history tree");
    }
    let mut nodes: Vec<(u8, u64, [u8; 32])> = Vec::new();
    reader.records(frontier.size() + 1, |record| {
        if record.body.revision > head {
            return Ok(false);
        }
        nodes.extend(frontier.push(record.hash).into_iter().map(|(l, i, h)| (l, i, h.0)));
        if nodes.len() >= LOAD_BATCH_RECORDS {
            store.rewrite_derived(&[], &std::mem::take(&mut nodes), std::mem::take(&mut clear))?;
        }
        Ok(true)
    })?;
    store.rewrite_derived(&[], &nodes, clear)?;
    if frontier.size() != head {
        return Err(corrupt(format!("the history ends at revision {} but the state is at {head}", frontier.size())));
    }
    Ok(frontier)
}
