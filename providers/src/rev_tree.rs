//! A document's revision tree, as CouchDB's `couch_key_tree` keeps it, for the providers that
//! store documents themselves (memory, embedded).
//!
//! A tree is a list of roots, each with the generation of its first revision (a root above
//! generation 1 is what stemming or a replicated partial history leaves), sorted by that
//! generation and then id; every node's children are sorted by id. A node holds the body of
//! a revision written here ([`Stored::Body`], deleted or not) or nothing ([`Stored::Missing`]:
//! an ancestor a replication only named, or one compaction emptied).
//!
//! The rules, each checked against CouchDB 3.5 (`testdata/couchdb-conflicts.json`):
//! - merging a path (a revision and its ancestors, newest last) finds the node where the path
//!   and a tree meet at the same generation and id (the first tree in order, depth first), and
//!   adds what the path has below it; a path that starts earlier than a (stemmed) root extends
//!   that root upward; a path that meets no tree becomes a new root. A stored body is never
//!   replaced, but fills a missing one;
//! - stemming keeps, for each leaf, its newest `revs_limit` revisions; nodes no leaf keeps are
//!   dropped, and kept nodes under a dropped one become roots;
//! - the winner is the highest leaf by (live before deleted, generation, id); the other leaves
//!   follow in that order (`_conflicts`, `_deleted_conflicts`, `_changes` with every leaf);
//! - compaction drops the bodies of all nodes but leaves.
//!
//! Nodes live in one arena (a `Vec`) linked by indices, and every walk is a loop: a path is
//! as deep as `revs_limit` allows (1,000 by default, and any number a user sets), which
//! recursion over boxed nodes would pay for in stack (it overflowed a 2 MiB thread).
//! Invariants: `roots` and every `children` list are sorted as above; a node's `parent` is
//! the node whose `children` list holds it (`None` exactly for the nodes in `roots`); a
//! child's generation is its parent's plus one.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::RevsDiff;
use crate::rev::{Rev, RevId};

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stored {
    /// No body: an ancestor a replication only named, or one compaction emptied.
    Missing,
    /// A revision written here: a leaf, or an ancestor whose body compaction has not dropped.
    Body {
        deleted: bool,
        body: Arc<Map<String, Value>>,
    },
    /// Like `Body`, with the body kept outside the tree (the embedded store keeps ancestors'
    /// bodies apart from the document record, so a record does not grow with every edit).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    Elsewhere { deleted: bool },
}

impl Stored {
    /// Whether the revision has a body (CouchDB's `revs_info` "available"/"deleted").
    pub fn has_body(&self) -> bool {
        !matches!(self, Stored::Missing)
    }

    /// Whether the revision is a deletion (`false` when nothing is known).
    pub fn is_deleted(&self) -> bool {
        matches!(
            self,
            Stored::Body { deleted: true, .. } | Stored::Elsewhere { deleted: true }
        )
    }

    /// CouchDB's `value_pref`: a stored body wins over a missing one; between two bodies the
    /// one already there stays.
    fn prefer(&mut self, incoming: Stored) {
        if matches!(self, Stored::Missing) {
            *self = incoming;
        }
    }
}

/// One revision in the tree.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub rev: Rev,
    pub value: Stored,
    parent: Option<usize>,
    /// Indices of the children, sorted by id.
    children: Vec<usize>,
}

impl Node {
    /// Whether no revision extends this one.
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
}

/// What merging a path did (CouchDB's `merge` result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merged {
    /// The path extended a leaf (or started the first tree).
    NewLeaf,
    /// The path added a branch beside existing ones (a conflict, or a new root).
    NewBranch,
    /// The tree already held the path's revision: nothing was added.
    InternalNode,
}

/// A leaf of the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Leaf<'a> {
    pub rev: Rev,
    pub deleted: bool,
    /// The body when the tree holds it (leaves always have one in the tree).
    pub body: Option<&'a Arc<Map<String, Value>>>,
}

/// A document's revision tree (see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct RevTree {
    nodes: Vec<Node>,
    /// Indices of the roots, sorted by generation then id.
    roots: Vec<usize>,
}

/// Trees are equal when they hold the same revisions, values and shape, however their
/// arenas are laid out.
impl PartialEq for RevTree {
    fn eq(&self, other: &Self) -> bool {
        let shape = |t: &RevTree| -> Vec<(Rev, Stored, usize)> {
            t.preorder()
                .into_iter()
                .map(|i| {
                    let n = &t.nodes[i];
                    (n.rev, n.value.clone(), n.children.len())
                })
                .collect()
        };
        self.roots.len() == other.roots.len() && shape(self) == shape(other)
    }
}

/// CouchDB's leaf order: live before deleted, then higher generation, then greater id.
fn leaf_order(a: &Leaf<'_>, b: &Leaf<'_>) -> Ordering {
    (!b.deleted, b.rev).cmp(&(!a.deleted, a.rev))
}

impl RevTree {
    /// A new tree of one revision (a document created here).
    pub fn single(rev: &Rev, value: Stored) -> Self {
        let mut tree = Self::default();
        tree.push_root(*rev, value);
        tree
    }

    /// Adds a root (decoding a stored tree); `add_child` and `push_child` build below it.
    pub fn push_root(&mut self, rev: Rev, value: Stored) -> usize {
        let at = self.nodes.len();
        self.nodes.push(Node {
            rev,
            value,
            parent: None,
            children: Vec::new(),
        });
        let place = self.roots.partition_point(|r| {
            (self.nodes[*r].rev.generation(), self.nodes[*r].rev.id())
                <= (rev.generation(), rev.id())
        });
        self.roots.insert(place, at);
        at
    }

    /// Adds a child with id `id` under node `parent` (an index this tree gave out), in id
    /// order; returns its index.
    pub fn push_child(&mut self, parent: usize, id: RevId, value: Stored) -> usize {
        let at = self.nodes.len();
        let rev = Rev::with_id(self.nodes[parent].rev.generation() + 1, id);
        self.nodes.push(Node {
            rev,
            value,
            parent: Some(parent),
            children: Vec::new(),
        });
        let nodes = &self.nodes;
        let place = nodes[parent]
            .children
            .partition_point(|c| nodes[*c].rev.id() <= &id);
        self.nodes[parent].children.insert(place, at);
        at
    }

    /// Adds `path` (oldest first) as a chain under `parent`, or as a new root starting at
    /// generation `start` when `parent` is `None`; returns the index of its top.
    fn push_chain(
        &mut self,
        parent: Option<usize>,
        start: u64,
        path: Vec<(RevId, Stored)>,
    ) -> Option<usize> {
        let mut path = path.into_iter();
        let (id, value) = path.next()?;
        let top = match parent {
            Some(p) => self.push_child(p, id, value),
            None => self.push_root(Rev::with_id(start, id), value),
        };
        let mut below = top;
        for (id, value) in path {
            below = self.push_child(below, id, value);
        }
        Some(top)
    }

    /// The root indices, in order.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// The node at `index` (an index this tree gave out).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// The children of node `index`, in id order.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub fn children(&self, index: usize) -> &[usize] {
        &self.nodes[index].children
    }

    /// Every node, in no particular order.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// Every node's value, in no particular order.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Stored> {
        self.nodes.iter_mut().map(|n| &mut n.value)
    }

    /// Node indices depth first from `top`, children in order.
    pub fn subtree(&self, top: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack = vec![top];
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend(self.nodes[i].children.iter().rev());
        }
        out
    }

    /// Every node index depth first, roots and children in order.
    fn preorder(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for root in &self.roots {
            out.extend(self.subtree(*root));
        }
        out
    }

    /// The first node (roots in order, depth first) at `rev`'s generation with its id, in
    /// the subtree of `top`.
    fn find_under(&self, top: usize, rev: &Rev) -> Option<usize> {
        let mut stack = vec![top];
        while let Some(i) = stack.pop() {
            let node = &self.nodes[i];
            match node.rev.generation().cmp(&rev.generation()) {
                Ordering::Equal if node.rev.id() == rev.id() => return Some(i),
                Ordering::Less => stack.extend(node.children.iter().rev()),
                _ => {}
            }
        }
        None
    }

    /// The node of `rev`: in the first root holding it, the first depth first.
    fn find(&self, rev: &Rev) -> Option<usize> {
        self.roots.iter().find_map(|r| self.find_under(*r, rev))
    }

    /// Merges a path: `start` is the generation of `path[0]`, the oldest revision; the last
    /// element is the path's leaf, the revision being stored.
    pub fn merge(&mut self, start: u64, path: Vec<(RevId, Stored)>) -> Merged {
        let Some(leaf_gen) = (start + path.len() as u64).checked_sub(1) else {
            return Merged::InternalNode;
        };
        if path.is_empty() {
            return Merged::InternalNode;
        }
        // The first root (in order) holding the node where the path meets it.
        let found = self.roots.iter().enumerate().find_map(|(ri, root)| {
            let depth = self.nodes[*root].rev.generation();
            let meet = depth.max(start);
            if meet > leaf_gen {
                return None;
            }
            let at = Rev::with_id(meet, path[(meet - start) as usize].0);
            self.find_under(*root, &at).map(|node| (ri, meet, node))
        });
        let Some((ri, meet, node)) = found else {
            let result = if self.roots.is_empty() {
                Merged::NewLeaf
            } else {
                Merged::NewBranch
            };
            self.push_chain(None, start, path);
            return result;
        };
        let mut path = path;
        let below: Vec<(RevId, Stored)> = path.split_off((meet - start) as usize + 1);
        let Some((_, meet_value)) = path.pop() else {
            return Merged::InternalNode;
        };
        self.nodes[node].value.prefer(meet_value);
        let result = self.extend(node, below);
        // The path began above a stemmed root: its older revisions become the new root.
        let root = self.roots[ri];
        if !path.is_empty() {
            self.roots.remove(ri);
            if let Some(top) = self.push_chain(None, start, path) {
                let bottom = *self.subtree(top).last().unwrap_or(&top);
                self.nodes[bottom].children.push(root);
                self.nodes[root].parent = Some(bottom);
            }
        }
        result
    }

    /// CouchDB's `merge_extend`: adds `below` (the path's revisions under `node`, oldest
    /// first).
    fn extend(&mut self, mut node: usize, below: Vec<(RevId, Stored)>) -> Merged {
        let mut below = below.into_iter();
        while let Some((id, value)) = below.next() {
            if self.nodes[node].children.is_empty() {
                let mut chain = vec![(id, value)];
                chain.extend(below);
                self.push_chain(Some(node), 0, chain);
                return Merged::NewLeaf;
            }
            let nodes = &self.nodes;
            let found = nodes[node]
                .children
                .iter()
                .find(|c| *nodes[**c].rev.id() == id)
                .copied();
            match found {
                Some(child) => {
                    self.nodes[child].value.prefer(value);
                    node = child;
                }
                None => {
                    let mut chain = vec![(id, value)];
                    chain.extend(below);
                    self.push_chain(Some(node), 0, chain);
                    return Merged::NewBranch;
                }
            }
        }
        Merged::InternalNode
    }

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

    /// Node `index` and its ancestors up to its root, newest first.
    fn ancestry(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(index), |i| self.nodes[*i].parent)
    }

    /// Every leaf, in CouchDB's order: the winner first (see the module doc).
    pub fn leaves(&self) -> Vec<Leaf<'_>> {
        let mut out: Vec<Leaf<'_>> = self
            .preorder()
            .into_iter()
            .map(|i| &self.nodes[i])
            .filter(|n| n.is_leaf())
            .map(|n| {
                let (deleted, body) = match &n.value {
                    Stored::Body { deleted, body } => (*deleted, Some(body)),
                    Stored::Elsewhere { deleted } => (*deleted, None),
                    Stored::Missing => (false, None),
                };
                Leaf {
                    rev: n.rev,
                    deleted,
                    body,
                }
            })
            .collect();
        out.sort_by(leaf_order);
        out
    }

    /// The winning leaf.
    pub fn winner(&self) -> Option<Leaf<'_>> {
        self.leaves().into_iter().next()
    }

    /// The node of `rev`, if the tree holds it.
    pub fn get(&self, rev: &Rev) -> Option<&Node> {
        self.find(rev).map(|i| &self.nodes[i])
    }

    /// Whether the tree holds `rev` (as a leaf or an ancestor).
    pub fn contains(&self, rev: &Rev) -> bool {
        self.find(rev).is_some()
    }

    /// `rev` and its ancestors up to its tree's root, newest first, with what each holds
    /// (`_revisions` and `_revs_info`).
    pub fn path(&self, rev: &Rev) -> Option<Vec<(Rev, &Stored)>> {
        let at = self.find(rev)?;
        Some(
            self.ancestry(at)
                .map(|i| (self.nodes[i].rev, &self.nodes[i].value))
                .collect(),
        )
    }

    /// The leaves at or below `rev` (CouchDB's `open_revs` with `latest`), in tree order.
    pub fn leaves_under(&self, rev: &Rev) -> Vec<Rev> {
        match self.find(rev) {
            Some(at) => self
                .subtree(at)
                .into_iter()
                .filter(|i| self.nodes[*i].is_leaf())
                .map(|i| self.nodes[i].rev)
                .collect(),
            None => Vec::new(),
        }
    }

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

    /// Adds `child` under the leaf `parent` (an interactive edit, already checked to name a
    /// leaf). Returns false when `parent` is not a leaf of this tree.
    pub fn add_child(&mut self, parent: &Rev, child: RevId, value: Stored) -> bool {
        match self.find(parent) {
            Some(at) if self.nodes[at].is_leaf() => {
                self.push_child(at, child, value);
                true
            }
            _ => false,
        }
    }

    /// Drops the bodies of every node but the leaves (CouchDB's compaction); returns whether
    /// anything was dropped.
    pub fn compact(&mut self) -> bool {
        let mut changed = false;
        for node in &mut self.nodes {
            if !node.children.is_empty() && node.value.has_body() {
                node.value = Stored::Missing;
                changed = true;
            }
        }
        changed
    }

    /// How many revisions the tree holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-byte id (CouchDB keeps ids that are not 32 hex digits as they are).
    fn id(c: char) -> RevId {
        RevId::parse(&c.to_string()).unwrap()
    }

    fn rev(generation: u64, c: char) -> Rev {
        Rev::with_id(generation, id(c))
    }

    fn body(tag: &str) -> Stored {
        let mut map = Map::new();
        map.insert("v".into(), Value::String(tag.into()));
        Stored::Body {
            deleted: false,
            body: Arc::new(map),
        }
    }

    /// A path of ids (oldest first) starting at `start`, the last one with a body.
    fn path(start: u64, ids: &str, tag: &str) -> (u64, Vec<(RevId, Stored)>) {
        let n = ids.len();
        (
            start,
            ids.chars()
                .enumerate()
                .map(|(i, c)| {
                    (
                        id(c),
                        if i + 1 == n {
                            body(tag)
                        } else {
                            Stored::Missing
                        },
                    )
                })
                .collect(),
        )
    }

    fn merge(tree: &mut RevTree, (start, p): (u64, Vec<(RevId, Stored)>)) -> Merged {
        tree.merge(start, p)
    }

    impl RevTree {
        fn root_generations(&self) -> Vec<u64> {
            self.roots
                .iter()
                .map(|r| self.nodes[*r].rev.generation())
                .collect()
        }
    }

    /// A path of `n` revisions stems, merges, reads and drops without recursion.
    #[test]
    fn deep_trees_need_no_deep_stack() {
        let n = 200_000u64;
        let ids: Vec<(RevId, Stored)> = (0..n)
            .map(|i| (RevId::parse(&format!("{i:032x}")).unwrap(), Stored::Missing))
            .collect();
        let handle = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut t = RevTree::default();
                t.merge(1, ids);
                assert_eq!(t.len(), n as usize);
                assert_eq!(t.leaves()[0].rev.generation(), n);
                let copy = t.clone();
                assert_eq!(copy, t);
                t.stem(1000);
                assert_eq!(t.len(), 1000);
                t.compact();
                drop(copy);
            })
            .unwrap();
        handle.join().unwrap();
    }

    fn leaves(tree: &RevTree) -> Vec<String> {
        tree.leaves()
            .iter()
            .map(|l| l.rev.to_string()[..3].to_owned())
            .collect()
    }

    #[test]
    fn merging_extends_branches_and_adds_roots() {
        let mut t = RevTree::default();
        assert_eq!(merge(&mut t, path(1, "rbc", "c3")), Merged::NewLeaf);
        // Sharing 1-r and 2-b: a second leaf at generation 3.
        assert_eq!(merge(&mut t, path(1, "rbx", "x3")), Merged::NewBranch);
        assert_eq!(leaves(&t), ["3-x", "3-c"]);
        // A partial path [b, y] meets the tree at 2-b.
        assert_eq!(merge(&mut t, path(2, "by", "y3")), Merged::NewBranch);
        assert_eq!(t.path(&rev(3, 'y')).unwrap().len(), 3, "joined under 2-b");
        // The leaf itself again: nothing new, the stored body stays.
        assert_eq!(merge(&mut t, path(1, "rbc", "other")), Merged::InternalNode);
        assert_eq!(
            t.get(&rev(3, 'c')).unwrap().value,
            body("c3"),
            "the existing body stays"
        );
        // A disjoint path: a second root.
        assert_eq!(merge(&mut t, path(4, "d", "d4")), Merged::NewBranch);
        assert_eq!(t.roots.len(), 2);
        assert_eq!(leaves(&t)[0], "4-d", "the higher generation wins");
        // Extending a leaf with a partial path [c, e].
        assert_eq!(merge(&mut t, path(3, "ce", "e4")), Merged::NewLeaf);
        assert!(!t.leaves().iter().any(|l| l.rev == rev(3, 'c')));
    }

    #[test]
    fn stemming_keeps_the_newest_revisions_of_each_leaf() {
        let mut t = RevTree::default();
        merge(&mut t, path(1, "abcdefghijkl", "l12"));
        t.stem(5);
        assert_eq!(t.roots.len(), 1);
        assert_eq!(t.root_generations(), [8]);
        assert_eq!(t.len(), 5);
        // Two branches sharing 1..3: each keeps its own newest five; they no longer meet.
        let mut t = RevTree::default();
        merge(&mut t, path(1, "abcdefgh", "h8"));
        merge(&mut t, path(1, "abcmnopqrs", "s10"));
        t.stem(5);
        assert_eq!(t.root_generations(), [4, 6]);
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn a_path_from_above_a_stemmed_root_extends_it_upward() {
        let mut t = RevTree::default();
        merge(&mut t, path(1, "abcdefghijkl", "l12"));
        t.stem(5); // 8..12 kept: h i j k l
        // [f g h x] from generation 6: meets 8-h, brings 6 and 7 back above it.
        assert_eq!(merge(&mut t, path(6, "fghx", "x9")), Merged::NewBranch);
        assert_eq!(t.root_generations(), [6]);
        assert_eq!(t.path(&rev(9, 'x')).unwrap().len(), 4);
        t.stem(5);
        // 9-x keeps 5..9 (only 6..9 are known), 12-l keeps 8..12: 6 and 7 stay for 9-x.
        assert_eq!(
            t.path(&rev(12, 'l')).unwrap().len(),
            7,
            "one tree, rooted at 6"
        );
    }

    #[test]
    fn winner_and_leaf_order_follow_couchdb() {
        let mut t = RevTree::default();
        merge(&mut t, path(1, "r", "r1"));
        for (c, deleted) in [('f', false), ('b', true), ('0', false)] {
            let mut p = path(1, &format!("r{c}"), "x").1;
            if deleted {
                p[1].1 = Stored::Body {
                    deleted: true,
                    body: Arc::new(Map::new()),
                };
            }
            t.merge(1, p);
        }
        let order: Vec<(String, bool)> = t
            .leaves()
            .iter()
            .map(|l| (l.rev.to_string()[..3].to_owned(), l.deleted))
            .collect();
        assert_eq!(
            order,
            [
                ("2-f".into(), false),
                ("2-0".into(), false),
                ("2-b".into(), true)
            ]
        );
    }

    #[test]
    fn revs_diff_and_compaction() {
        let mut t = RevTree::default();
        merge(&mut t, path(1, "abc", "c3"));
        t.get(&rev(2, 'b')).unwrap();
        let diff = t.revs_diff(&[rev(3, 'c'), rev(2, 'b'), rev(4, 'd'), rev(4, 'd')]);
        assert_eq!(diff.missing, [rev(4, 'd'), rev(4, 'd')], "repeats are kept");
        assert_eq!(diff.possible_ancestors, [rev(3, 'c')]);
        let diff = t.revs_diff(&[rev(3, 'c'), rev(3, 'c'), rev(2, 'x'), rev(1, 'a')]);
        assert_eq!(
            diff.missing,
            [rev(2, 'x'), rev(3, 'c')],
            "a held revision asked twice is missing once, after lower generations"
        );
        assert!(
            diff.possible_ancestors.is_empty(),
            "no leaf below generation 3"
        );
        assert!(t.add_child(&rev(3, 'c'), id('d'), body("d4")));
        assert!(
            !t.add_child(&rev(3, 'c'), id('e'), body("e4")),
            "no longer a leaf"
        );
        assert!(t.compact());
        assert_eq!(t.get(&rev(3, 'c')).unwrap().value, Stored::Missing);
        assert_eq!(t.get(&rev(4, 'd')).unwrap().value, body("d4"));
        assert_eq!(t.leaves_under(&rev(2, 'b')), [rev(4, 'd')]);
    }
}
