//! Unit tests of the revision tree: merging, stemming, leaf order, `_revs_diff`, compaction,
//! and trees too deep for recursion.

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
