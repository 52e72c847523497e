//! The typed reader: every read of what the state machine stores, decoded once, here. The
//! API, the audit tools and the state machine's own fold read the history, rejections and
//! events through it; nothing else decodes stored records.

use roster_storage::{codec, StateStore, StoreError};

use crate::domain::oplog::OpEvent;
use crate::domain::merkle::{Tree, TreeError};
use crate::domain::{Hash, HistoryRecord};
use crate::machine::RejectionRecord;

/// Typed read access to a node's stored history, rejections and operational events. Cheap to
/// clone; reads are concurrent and never block the state machine.
#[derive(Clone)]
pub struct Reader {
    store: StateStore,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("corrupt {what}: {e}"))
}

/// How far the nodes' clocks may disagree, for scans of recent events.
pub const EVENT_CLOCK_SKEW_MS: u64 = 60_000;

impl Reader {
    pub fn new(store: StateStore) -> Self {
        Self { store }
    }

    /// The raw store, for the state machine's fold (checkpoints) and maintenance.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The record of `revision`, if it is stored.
    pub fn record(&self, revision: u64) -> Result<Option<HistoryRecord>, StoreError> {
        self.store.history_get(revision)?.map(|b| codec::decode(&b).map_err(|e| corrupt("history record", e))).transpose()
    }

    /// Visits records from `from` upward, in revision order, until `visit` returns false.
    pub fn records(
        &self,
        from: u64,
        mut visit: impl FnMut(HistoryRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.store.history_scan(from, |_, bytes| {
            let record: HistoryRecord = codec::decode(bytes).map_err(|e| corrupt("history record", e))?;
            visit(record)
        })
    }

    /// The stored Merkle tree node `(level, index)`.
    pub fn tree_node(&self, level: u8, index: u64) -> Result<Option<Hash>, String> {
        match self.store.tree_node(level, index).map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(b) => Ok(Some(Hash(b.as_slice().try_into().map_err(|_| format!("corrupt tree node {level}/{index}: {} bytes", b.len()))?))),
        }
    }

    /// The root of the history's Merkle tree at `size` revisions.
    pub fn tree_root(&self, size: u64) -> Result<Hash, TreeError> {
        Tree::new(|l, i| self.tree_node(l, i)).root(size)
    }

    /// The audit path of revision `index + 1` in the tree of `size` revisions.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        Tree::new(|l, i| self.tree_node(l, i)).inclusion_proof(index, size)
    }

    /// The proof that the tree of `first` revisions is a prefix of the tree of `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, TreeError> {
        Tree::new(|l, i| self.tree_node(l, i)).consistency_proof(first, second)
    }

    /// The most recent rejections, newest first, at most `limit`.
    pub fn rejections(&self, limit: usize) -> Result<Vec<RejectionRecord>, StoreError> {
        self.store
            .rejections_recent(limit)?
            .iter()
            .map(|b| codec::decode(b).map_err(|e| corrupt("rejection", e)))
            .collect()
    }

    /// The newest operational events `keep` accepts, newest first, at most `limit`.
    pub fn events(&self, limit: usize, keep: impl Fn(&OpEvent) -> bool) -> Result<Vec<OpEvent>, StoreError> {
        let raw = self.store.events_recent(limit, |bytes| codec::decode::<OpEvent>(bytes).map_or(true, |e| keep(&e)))?;
        raw.into_iter().map(|(_, b)| codec::decode(&b).map_err(|e| corrupt("event", e))).collect()
    }

    /// The events `keep` accepts among those recorded since `since_ms`, newest first. Events
    /// carry the recording node's clock, so the scan goes [`EVENT_CLOCK_SKEW_MS`] further
    /// back before it stops: it reads the window, not the whole log.
    pub fn events_since(&self, since_ms: u64, keep: impl Fn(&OpEvent) -> bool) -> Result<Vec<OpEvent>, StoreError> {
        let stop_before = since_ms.saturating_sub(EVENT_CLOCK_SKEW_MS);
        let mut out = Vec::new();
        let mut failed = None;
        self.store.events_newest_first(|_, bytes| match codec::decode::<OpEvent>(bytes) {
            Ok(e) if e.time_ms < stop_before => std::ops::ControlFlow::Break(()),
            Ok(e) => {
                if e.time_ms >= since_ms && keep(&e) {
                    out.push(e);
                }
                std::ops::ControlFlow::Continue(())
            }
            Err(err) => {
                failed = Some(corrupt("event", err));
                std::ops::ControlFlow::Break(())
            }
        })?;
        failed.map_or(Ok(out), Err)
    }

    /// Approximate bytes of the stored history.
    pub fn history_bytes(&self) -> u64 {
        self.store.history_bytes()
    }
}
