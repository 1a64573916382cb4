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
//!
//! Here: the types, building, merging and reading a tree; `stem` (stemming and repair) and
//! `diff` (`_revs_diff`) in files of their own.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

mod diff;
mod stem;

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

    fn as_leaf(&self) -> Leaf<'_> {
        let (deleted, body) = match &self.value {
            Stored::Body { deleted, body } => (*deleted, Some(body)),
            Stored::Elsewhere { deleted } => (*deleted, None),
            Stored::Missing => (false, None),
        };
        Leaf {
            rev: self.rev,
            deleted,
            body,
        }
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

    /// Node `index` and its ancestors up to its root, newest first.
    fn ancestry(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(index), |i| self.nodes[*i].parent)
    }

    /// Every leaf, in CouchDB's order: the winner first (see the module doc).
    pub fn leaves(&self) -> Vec<Leaf<'_>> {
        let mut out: Vec<Leaf<'_>> = self
            .nodes
            .iter()
            .filter(|n| n.is_leaf())
            .map(Node::as_leaf)
            .collect();
        out.sort_by(leaf_order);
        out
    }

    /// The winning leaf (without sorting the others).
    pub fn winner(&self) -> Option<Leaf<'_>> {
        self.nodes
            .iter()
            .filter(|n| n.is_leaf())
            .map(Node::as_leaf)
            .min_by(leaf_order)
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
mod tests;
