//! `_revs_diff` on a revision tree: CouchDB's `couch_key_tree:find_missing`, and the leaves
//! that may be ancestors of what is missing.

use super::RevTree;
use crate::RevsDiff;
use crate::rev::Rev;

impl RevTree {
    /// CouchDB's `_revs_diff` for this document: the revisions of `asked` it lacks, and its
    /// leaves (in leaf order, the winner first) below the highest missing generation.
    ///
    /// The missing list is exactly CouchDB's (`couch_key_tree:find_missing`): each node of
    /// the tree takes away one copy of its revision from the list, so a revision asked twice
    /// that the tree holds is reported missing once; and at each node, the revisions of a
    /// lower generation than the node move ahead of the rest.
    pub fn revs_diff(&self, asked: &[Rev]) -> RevsDiff {
        let missing = self.find_missing(asked.to_vec());
        let possible_ancestors = match missing.iter().map(Rev::generation).max() {
            Some(high) => self
                .leaves()
                .into_iter()
                .map(|l| l.rev)
                .filter(|r| r.generation() < high)
                .collect(),
            None => Vec::new(),
        };
        RevsDiff {
            missing,
            possible_ancestors,
        }
    }

    /// `couch_key_tree:find_missing`, with the recursion of `find_missing_simple` unrolled
    /// onto a stack of frames: a frame walks a list of siblings at generation `pos`,
    /// collecting the keys of lower generations as its result's prefix; the keys left after
    /// its last sibling follow that prefix.
    fn find_missing(&self, mut keys: Vec<Rev>) -> Vec<Rev> {
        struct Frame<'a> {
            pos: u64,
            siblings: &'a [usize],
            next: usize,
            prefix: Vec<Rev>,
        }
        for root in &self.roots {
            if keys.is_empty() {
                return keys;
            }
            let start = self.nodes[*root].rev.generation();
            let (mut impossible, possible): (Vec<Rev>, Vec<Rev>) =
                keys.into_iter().partition(|k| k.generation() < start);
            let mut frames = vec![Frame {
                pos: start,
                siblings: std::slice::from_ref(root),
                next: 0,
                prefix: Vec::new(),
            }];
            let mut current = possible;
            while let Some(frame) = frames.last_mut() {
                if current.is_empty() || frame.next == frame.siblings.len() {
                    let mut result = std::mem::take(&mut frame.prefix);
                    result.append(&mut current);
                    current = result;
                    frames.pop();
                    continue;
                }
                let node = &self.nodes[frame.siblings[frame.next]];
                frame.next += 1;
                let pos = frame.pos;
                let (lower, mut rest): (Vec<Rev>, Vec<Rev>) =
                    current.into_iter().partition(|k| k.generation() < pos);
                frame.prefix.extend(lower);
                if let Some(at) = rest.iter().position(|k| *k == node.rev) {
                    rest.remove(at);
                }
                current = rest;
                frames.push(Frame {
                    pos: pos + 1,
                    siblings: &node.children,
                    next: 0,
                    prefix: Vec::new(),
                });
            }
            impossible.append(&mut current);
            keys = impossible;
        }
        keys
    }
}
