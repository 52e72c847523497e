//! The RFC 9162 (Certificate Transparency v2, section 2.1) Merkle tree over the history.
//!
//! Leaf `i` is revision `i + 1`; its leaf hash is the record's hash (`SHA-256(0x00 || record
//! bytes)`, see [`super::history`]). Interior nodes are `SHA-256(0x01 || left || right)`.
//!
//! Storage keeps one hash per *complete* subtree: the node at `(level, index)` covers leaves
//! `index << level .. (index + 1) << level`. Such a node never changes once its last leaf is
//! appended, so any tree size's root and proofs can be computed from stored nodes alone.
//! [`Frontier`] is the right edge of the current tree (at most 64 hashes), from which the
//! nodes completed by each append are derived.
//!
//! Everything here is pure: stored nodes arrive through a `get(level, index)` closure.

use sha2::{Digest, Sha256};

use super::history::Hash;

/// An interior node's hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// A stored complete subtree: `(level, index)` covers `2^level` leaves from `index << level`.
pub type NodeId = (u8, u64);

/// Why a tree computation could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("leaf {index} is not in a tree of size {size}")]
    LeafOutOfRange { index: u64, size: u64 },
    #[error("tree size {first} is not between 1 and {second}")]
    BadSizes { first: u64, second: u64 },
    #[error("the tree node at level {0}, index {1} is missing")]
    Missing(u8, u64),
    #[error("{0}")]
    Read(String),
}

/// The complete subtrees a tree of `size` leaves is made of, left to right (largest first).
pub fn decompose(size: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        if size & (1u64 << level) != 0 {
            out.push((level, start >> level));
            start += 1u64 << level;
        }
    }
    out
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Reads stored nodes and computes roots and proofs of any size up to the stored one.
pub struct Tree<F> {
    get: F,
}

impl<F: FnMut(u8, u64) -> Result<Option<Hash>, String>> Tree<F> {
    pub fn new(get: F) -> Self {
        Self { get }
    }

    fn node(&mut self, level: u8, index: u64) -> Result<Hash, TreeError> {
        (self.get)(level, index).map_err(TreeError::Read)?.ok_or(TreeError::Missing(level, index))
    }

    /// The hash of leaves `start..end` as a subtree of the RFC 9162 tree: `start` is always a
    /// multiple of the largest power of two below `end - start`, so the range splits into
    /// stored complete subtrees.
    fn range(&mut self, start: u64, end: u64) -> Result<Hash, TreeError> {
        let n = end - start;
        if n.is_power_of_two() {
            let level = n.trailing_zeros() as u8;
            return self.node(level, start >> level);
        }
        let k = split_point(n);
        let left = self.range(start, start + k)?;
        let right = self.range(start + k, end)?;
        Ok(node_hash(&left, &right))
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root(&mut self, size: u64) -> Result<Hash, TreeError> {
        if size == 0 {
            return Ok(empty_root());
        }
        self.range(0, size)
    }

    /// The audit path of leaf `index` in the tree of `size` leaves, leaf end first (RFC 9162
    /// section 2.1.3.1).
    pub fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        if index >= size {
            return Err(TreeError::LeafOutOfRange { index, size });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path)?;
        Ok(path)
    }

    fn path(&mut self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), TreeError> {
        let n = end - start;
        if n == 1 {
            return Ok(());
        }
        let k = split_point(n);
        if m < k {
            self.path(m, start, start + k, out)?;
            out.push(self.range(start + k, end)?);
        } else {
            self.path(m - k, start + k, end, out)?;
            out.push(self.range(start, start + k)?);
        }
        Ok(())
    }

    /// The proof that the tree of `first` leaves is a prefix of the tree of `second` leaves
    /// (RFC 9162 section 2.1.4.1).
    pub fn consistency_proof(&mut self, first: u64, second: u64) -> Result<Vec<Hash>, TreeError> {
        if first == 0 || first > second {
            return Err(TreeError::BadSizes { first, second });
        }
        let mut out = Vec::new();
        if first < second {
            self.subproof(first, 0, second, true, &mut out)?;
        }
        Ok(out)
    }

    fn subproof(&mut self, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash>) -> Result<(), TreeError> {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.range(start, end)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out)?;
            out.push(self.range(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, out)?;
            out.push(self.range(start, start + k)?);
        }
        Ok(())
    }
}

/// The right edge of a tree: its complete subtrees, largest first. Appending a leaf merges
/// equal-sized subtrees and reports each node it completes, for storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    nodes: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of the stored tree of `size` leaves.
    pub fn load(size: u64, mut get: impl FnMut(u8, u64) -> Result<Option<Hash>, String>) -> Result<Self, TreeError> {
        let mut nodes = Vec::new();
        for (level, index) in decompose(size) {
            let h = get(level, index).map_err(TreeError::Read)?.ok_or(TreeError::Missing(level, index))?;
            nodes.push((level, h));
        }
        Ok(Self { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; returns the nodes it completed (the leaf itself first), to be stored.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let index = self.size;
        let mut done = vec![(0u8, index, leaf)];
        let mut level = 0u8;
        let mut hash = leaf;
        while let Some(&(l, left)) = self.nodes.last() {
            if l != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            done.push((level, index >> level, hash));
        }
        self.nodes.push((level, hash));
        self.size += 1;
        done
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(&(_, last)) => it.fold(last, |acc, (_, left)| node_hash(left, &acc)),
        }
    }

    /// The complete subtrees' hashes, largest first.
    pub fn hashes(&self) -> Vec<Hash> {
        self.nodes.iter().map(|(_, h)| *h).collect()
    }

    /// The frontier of a tree of `size` leaves whose last leaf is `last` with audit path
    /// `path` (its inclusion proof in that tree): how a continuation export is anchored.
    /// The caller checks the path against a signed root first.
    pub fn from_last_leaf(size: u64, last: Hash, path: &[Hash]) -> Result<Self, TreeError> {
        if size == 0 {
            return Ok(Self::default());
        }
        let z = size.trailing_zeros() as usize;
        let parts = decompose(size);
        if path.len() != z + parts.len() - 1 {
            return Err(TreeError::Read(format!("an audit path of the last leaf of {size} leaves has {} hashes, not {}", path.len(), z + parts.len() - 1)));
        }
        let mut right = last;
        for p in &path[..z] {
            right = node_hash(p, &right);
        }
        let mut nodes: Vec<(u8, Hash)> = path[z..].iter().rev().zip(parts.iter()).map(|(h, (level, _))| (*level, *h)).collect();
        nodes.push((z as u8, right));
        Ok(Self { size, nodes })
    }
}

/// Whether `path` proves leaf `index` (hash `leaf`) is in the tree of `size` leaves with root
/// `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Whether `proof` shows the tree of `first` leaves (root `first_root`) is a prefix of the
/// tree of `second` leaves (root `second_root`) (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut proof = proof.to_vec();
    if first.is_power_of_two() {
        proof.insert(0, *first_root);
    }
    let Some((&start, rest)) = proof.split_first() else { return false };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn leaf(i: u64) -> Hash {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(i.to_be_bytes());
        Hash(h.finalize().into())
    }

    /// RFC 9162's definition, written as plainly as possible, to check the stored tree against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<Hash>, HashMap<(u8, u64), Hash>, Frontier) {
        let mut store = HashMap::new();
        let mut f = Frontier::default();
        let leaves: Vec<Hash> = (0..n).map(leaf).collect();
        for l in &leaves {
            for (level, index, h) in f.push(*l) {
                assert!(store.insert((level, index), h).is_none(), "node {level}/{index} written twice");
            }
        }
        (leaves, store, f)
    }

    #[test]
    fn roots_of_every_size_match_the_rfc_definition() {
        let (leaves, store, _) = build(70);
        let mut tree = Tree::new(|l, i| Ok(store.get(&(l, i)).copied()));
        for size in 0..=70u64 {
            assert_eq!(tree.root(size).unwrap(), mth(&leaves[..size as usize]), "size {size}");
            let (_, _, f) = build(size);
            assert_eq!(f.root(), mth(&leaves[..size as usize]), "frontier root at size {size}");
            let loaded = Frontier::load(size, |l, i| Ok(store.get(&(l, i)).copied())).unwrap();
            assert_eq!(loaded, f, "frontier reloaded at size {size}");
        }
        // Each leaf completes on average two nodes, at most one per level.
        assert!(store.len() < 2 * 70);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        let (leaves, store, _) = build(40);
        let mut tree = Tree::new(|l, i| Ok(store.get(&(l, i)).copied()));
        for size in 1..=40u64 {
            let root = mth(&leaves[..size as usize]);
            for index in 0..size {
                let path = tree.inclusion_proof(index, size).unwrap();
                assert!(verify_inclusion(&leaves[index as usize], index, size, &path, &root), "leaf {index} of {size}");
                assert!(!verify_inclusion(&leaf(999), index, size, &path, &root));
                if size > 1 {
                    assert!(!verify_inclusion(&leaves[index as usize], (index + 1) % size, size, &path, &root));
                }
            }
        }
        assert!(tree.inclusion_proof(5, 5).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_wrong_one_does_not() {
        let (leaves, store, _) = build(40);
        let mut tree = Tree::new(|l, i| Ok(store.get(&(l, i)).copied()));
        for second in 1..=40u64 {
            for first in 1..=second {
                let (r1, r2) = (mth(&leaves[..first as usize]), mth(&leaves[..second as usize]));
                let proof = tree.consistency_proof(first, second).unwrap();
                assert!(verify_consistency(first, second, &r1, &r2, &proof), "{first} -> {second}");
                assert!(!verify_consistency(first, second, &leaf(7), &r2, &proof));
                if first < second {
                    assert!(!verify_consistency(first, second, &r1, &leaf(7), &proof));
                }
            }
        }
        assert!(tree.consistency_proof(0, 3).is_err() && tree.consistency_proof(4, 3).is_err());
    }

    #[test]
    fn a_frontier_rebuilt_from_the_last_leafs_path_continues_the_tree() {
        let (leaves, store, _) = build(50);
        let mut tree = Tree::new(|l, i| Ok(store.get(&(l, i)).copied()));
        for size in 1..=40u64 {
            let path = tree.inclusion_proof(size - 1, size).unwrap();
            let mut f = Frontier::from_last_leaf(size, leaves[size as usize - 1], &path).unwrap();
            assert_eq!(f.root(), mth(&leaves[..size as usize]));
            for l in &leaves[size as usize..50] {
                f.push(*l);
            }
            assert_eq!(f.root(), mth(&leaves), "continued from {size}");
        }
    }
}
