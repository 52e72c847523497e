//! Offline verification of an export: every record's hash and link, the fold of its events,
//! the Merkle tree rebuilt over it and compared with signed checkpoints, and continuation
//! exports anchored to an earlier checkpoint (`docs/history-format.md`).

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::domain::checkpoint::Checkpoint;
use crate::domain::merkle::{verify_inclusion, Frontier};
use crate::domain::{Hash, HistoryRecord, State};

/// What a verified export holds.
pub struct Verified {
    /// The first and last revision checked (`first > last` when the export had no records).
    pub first: u64,
    pub last: u64,
    /// The hash of the last revision.
    pub head: Hash,
    /// The tree over revisions 1..=last.
    pub tree: Frontier,
    /// The folded state, when the export starts at revision 1.
    pub state: Option<State>,
}

/// The first line of a continuation export.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Continues {
    tree_size: u64,
    last_hash: Hash,
    audit_path: Vec<Hash>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    continues: Continues,
}

/// Checks an export. With `anchor`, the export must be a continuation of the tree that
/// checkpoint signs; with `check`, the root at the checkpoint's size must match it. Stops after
/// revision `to` when given. Errors name the line and revision.
pub fn verify_file(path: &Path, anchor: Option<&Checkpoint>, check: Option<&Checkpoint>, to: Option<u64>) -> anyhow::Result<Verified> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut tree = Frontier::default();
    let mut head = Hash::default();
    let mut state = Some(State::default());
    let mut first = None;
    let mut seen_line = false;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("line {n}: reading"))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = tree.size() + 1;
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("line {n}: revision {at}: not JSON: {e}"))?;
        if !std::mem::replace(&mut seen_line, true) {
            if value.get("continues").is_some() {
                let h: Header = serde_json::from_value(value).map_err(|e| anyhow::anyhow!("line {n}: a malformed continuation header: {e}"))?;
                let Some(anchor) = anchor else {
                    bail!("line {n}: this is a continuation export: give the checkpoint it continues with --continues");
                };
                (tree, head) = anchor_tree(&h.continues, anchor).map_err(|e| anyhow::anyhow!("line {n}: {e}"))?;
                state = None;
                continue;
            }
            if anchor.is_some_and(|a| a.size > 0) {
                bail!("line {n}: --continues needs a continuation export (roster audit export --from N+1), but this one starts with a record");
            }
        }
        let record = HistoryRecord::from_json(value).map_err(|e| anyhow::anyhow!("line {n}: revision {at}: {e}"))?;
        let revision = record.body.revision;
        if to.is_some_and(|t| revision > t) {
            break;
        }
        if revision != at {
            bail!("line {n}: revision {revision} follows revision {}: records are missing or out of order", at - 1);
        }
        if record.prev_hash != head {
            bail!("line {n}: revision {revision}: prev_hash does not match the hash of revision {}", at - 1);
        }
        if !record.hash_is_valid() {
            bail!("line {n}: revision {revision}: its hash does not match its content");
        }
        if let Some(s) = state.as_mut() {
            s.apply_record_events(revision, &record.body.events);
        }
        first.get_or_insert(revision);
        head = record.hash;
        tree.push(record.hash);
        if let Some(c) = check.filter(|c| c.size == tree.size()) {
            if tree.root() != c.root {
                bail!("line {n}: the root of the first {} revisions does not match the checkpoint's root", c.size);
            }
        }
    }
    if let Some(c) = check {
        if let Some(a) = anchor.filter(|a| c.size <= a.size) {
            // The export holds nothing at or before the anchor: only an equal tree can match.
            if c.size < a.size || c.root != a.root {
                bail!("the checkpoint covers {} revisions, not more than the {} the export continues; check older checkpoints with `roster audit consistent`", c.size, a.size);
            }
        }
        if tree.size() < c.size {
            bail!("the export ends at revision {} but the checkpoint covers {} revisions", tree.size(), c.size);
        }
        if c.size == 0 && c.root != crate::domain::merkle::empty_root() {
            bail!("the checkpoint of the empty tree has the wrong root");
        }
    }
    let last = tree.size();
    Ok(Verified { first: first.unwrap_or(last + 1), last, head, tree, state })
}

/// The tree of `anchor.size` revisions rebuilt from a continuation header, after checking the
/// header's last leaf is in the checkpoint's tree.
fn anchor_tree(c: &Continues, anchor: &Checkpoint) -> anyhow::Result<(Frontier, Hash)> {
    if c.tree_size != anchor.size {
        bail!("the export continues the tree of {} revisions but the checkpoint covers {}", c.tree_size, anchor.size);
    }
    if c.tree_size == 0 || !verify_inclusion(&c.last_hash, c.tree_size - 1, c.tree_size, &c.audit_path, &anchor.root) {
        bail!("the hash of revision {} it continues from is not in the checkpoint's tree", c.tree_size);
    }
    let tree = Frontier::from_last_leaf(c.tree_size, c.last_hash, &c.audit_path)?;
    debug_assert_eq!(tree.root(), anchor.root);
    Ok((tree, c.last_hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RecordBody;
    use std::io::Write;

    fn export(n: u64) -> Vec<String> {
        let mut prev = Hash::default();
        (1..=n)
            .map(|revision| {
                let body = RecordBody {
                    revision,
                    log_term: 1,
                    log_index: revision + 2,
                    time_ms: 1_000 + revision,
                    actor: "a\"\\\u{1}é".into(),
                    comment: String::new(),
                    changeset: None,
                    idempotency_key: None,
                    events: vec![],
                };
                let r = HistoryRecord::seal(body, prev);
                prev = r.hash;
                r.to_json().to_string()
            })
            .collect()
    }

    fn write(lines: &[String]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    fn err(lines: &[String], check: Option<&Checkpoint>) -> String {
        match verify_file(write(lines).path(), None, check, None) {
            Ok(_) => panic!("verified"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tampering_is_found_and_located() {
        let good = export(10);
        let v = verify_file(write(&good).path(), None, None, None).unwrap();
        assert_eq!((v.first, v.last), (1, 10));
        let cp = Checkpoint { origin: "o".into(), size: 10, root: v.tree.root() };
        assert!(verify_file(write(&good).path(), None, Some(&cp), None).is_ok());

        let mut edited = good.clone();
        edited[6] = edited[6].replace("\"time_ms\":1007", "\"time_ms\":1008");
        assert_eq!(err(&edited, None), "line 7: revision 7: its hash does not match its content");
        let mut dropped = good.clone();
        dropped.remove(4);
        assert_eq!(err(&dropped, None), "line 5: revision 6 follows revision 4: records are missing or out of order");
        let mut swapped = good.clone();
        swapped.swap(2, 3);
        assert_eq!(err(&swapped, None), "line 3: revision 4 follows revision 2: records are missing or out of order");
        assert_eq!(err(&good[..8], Some(&cp)), "the export ends at revision 8 but the checkpoint covers 10 revisions");
        let other = Checkpoint { root: Hash([1; 32]), ..cp.clone() };
        assert_eq!(err(&good, Some(&other)), "line 10: the root of the first 10 revisions does not match the checkpoint's root");
        let mut unknown = good.clone();
        unknown[0] = unknown[0].replace("\"format\":2", "\"format\":3");
        assert!(err(&unknown, None).starts_with("line 1: revision 1: unknown record format 3"), "{}", err(&unknown, None));
    }
}
