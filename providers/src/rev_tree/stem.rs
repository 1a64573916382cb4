//! Stemming a revision tree to `revs_limit` (CouchDB's `couch_key_tree:stem`), and the
//! repair CouchDB does instead for a tree holding an id twice.

use std::collections::HashSet;

use super::{RevTree, Stored};
use crate::rev::RevId;

impl RevTree {
    /// Keeps, for each leaf, its newest `limit` revisions (CouchDB's `stem`): a node stays if
    /// it is within `limit` revisions of some leaf.
    pub fn stem(&mut self, limit: usize) {
        let limit = limit.max(1);
        if self.has_repeated_ids() {
            // CouchDB rebuilds such a tree from its stemmed leaf paths instead.
            self.repair(limit);
            return;
        }
        // Each node's distance to its nearest leaf below, children before parents.
        let order = self.preorder();
        let mut height = vec![usize::MAX; self.nodes.len()];
        for &i in order.iter().rev() {
            let node = &self.nodes[i];
            height[i] = if node.children.is_empty() {
                0
            } else {
                node.children
                    .iter()
                    .map(|c| height[*c].saturating_add(1))
                    .min()
                    .unwrap_or(0)
            };
        }
        if height.iter().all(|h| *h < limit) {
            return;
        }
        let mut kept = RevTree::default();
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        for &i in &order {
            if height[i] >= limit {
                continue;
            }
            let node = &self.nodes[i];
            let parent = node.parent.filter(|p| height[*p] < limit);
            new_index[i] = match parent {
                Some(p) => kept.push_child(new_index[p], *node.rev.id(), node.value.clone()),
                None => kept.push_root(node.rev, node.value.clone()),
            };
        }
        *self = kept;
    }

    /// Whether an id appears twice (at any generations), which CouchDB's stemming refuses.
    fn has_repeated_ids(&self) -> bool {
        let mut seen = HashSet::with_capacity(self.nodes.len());
        self.nodes.iter().any(|n| !seen.insert(*n.rev.id()))
    }

    /// CouchDB's `repair_tree`: every leaf's path, cut to `limit`, merged into a new tree.
    fn repair(&mut self, limit: usize) {
        let mut paths: Vec<(u64, Vec<(RevId, Stored)>)> = self
            .preorder()
            .into_iter()
            .filter(|i| self.nodes[*i].is_leaf())
            .map(|leaf| {
                let mut path: Vec<(RevId, Stored)> = self
                    .ancestry(leaf)
                    .take(limit)
                    .map(|i| (*self.nodes[i].rev.id(), self.nodes[i].value.clone()))
                    .collect();
                path.reverse();
                let leaf_gen = self.nodes[leaf].rev.generation();
                (leaf_gen + 1 - path.len() as u64, path)
            })
            .collect();
        paths.sort_by_key(|p| p.0);
        *self = RevTree::default();
        for (start, path) in paths {
            self.merge(start, path);
        }
    }
}
