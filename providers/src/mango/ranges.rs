//! What CouchDB's query planner (`mango_idx_view`, `mango_selector`) reads from a normalized
//! selector: indexable fields, required fields, constant fields and each field's range.
//! Paths are compared split, so `a.b` and `{"a": {"b": …}}` name the same field.

use std::cmp::Ordering;

use serde_json::Value;

use super::{Cond, Op, Selector};
use crate::collate::compare;

impl Op {
    /// The operators CouchDB 3.5 counts as indexable (`_explain`'s `indexable_fields`): the
    /// comparisons and `$beginsWith`, which narrow an index range, and `$exists`, which
    /// does not narrow it but still counts when indexes are compared.
    fn is_indexable(&self) -> bool {
        matches!(
            self,
            Op::Eq(_)
                | Op::Gt(_)
                | Op::Gte(_)
                | Op::Lt(_)
                | Op::Lte(_)
                | Op::BeginsWith(_)
                | Op::Exists(_)
        )
    }
}

impl Selector {
    /// Fields with an indexable condition (`$eq $gt $gte $lt $lte $beginsWith $exists`), seen
    /// only through `$and`: CouchDB's `indexable_fields`. Sorted, without repeats.
    pub(crate) fn indexable_fields(&self) -> Vec<Vec<String>> {
        fn walk(cond: &Cond, out: &mut Vec<Vec<String>>) {
            match cond {
                Cond::And(args) => args.iter().for_each(|a| walk(a, out)),
                Cond::Field { path, op } if op.is_indexable() => out.push(path.clone()),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.cond, &mut out);
        out.sort();
        out.dedup();
        out
    }

    /// Whether every field of `required` must exist in a matching document, as CouchDB's
    /// `has_required_fields` decides it: seen through `$and` (any child may cover a field)
    /// and `$or` (every child must); any field condition but `$exists: false` covers its
    /// field (negations included: normalized, they need the field).
    pub(crate) fn has_required_fields(&self, required: &[Vec<String>]) -> bool {
        fn remaining(cond: &Cond, required: Vec<Vec<String>>) -> Vec<Vec<String>> {
            match cond {
                Cond::And(args) => args.iter().fold(required, |left, a| remaining(a, left)),
                Cond::Or(args) => {
                    let mut left: Vec<Vec<String>> = args
                        .iter()
                        .flat_map(|a| remaining(a, required.clone()))
                        .collect();
                    left.sort();
                    left.dedup();
                    left
                }
                Cond::Field {
                    op: Op::Exists(false),
                    ..
                } => required,
                Cond::Field { path, .. } => required.into_iter().filter(|r| r != path).collect(),
                // Not left at the top by normalization.
                Cond::Not(_) | Cond::Nor(_) => required,
            }
        }
        remaining(&self.cond, required.to_vec()).is_empty()
    }

    /// Whether the selector fixes `path` with `$eq` (through `$and`): CouchDB's
    /// `is_constant_field`, which lets a sort skip leading index columns.
    pub(crate) fn is_constant_field(&self, path: &[String]) -> bool {
        fn walk(cond: &Cond, path: &[String]) -> bool {
            match cond {
                Cond::And(args) => args.iter().any(|a| walk(a, path)),
                Cond::Field {
                    path: p,
                    op: Op::Eq(_),
                } => p == path,
                _ => false,
            }
        }
        walk(&self.cond, path)
    }

    /// The range of values the selector's top-level (`$and`) comparisons allow for `path`,
    /// narrowed as CouchDB's `mango_idx_view:range` does; `None` when it is empty.
    pub(crate) fn range(&self, path: &[String]) -> Option<FieldRange> {
        fn walk(cond: &Cond, path: &[String], range: Option<FieldRange>) -> Option<FieldRange> {
            let range = range?;
            match cond {
                Cond::And(args) => args.iter().try_fold(range, |r, a| walk(a, path, Some(r))),
                Cond::Field { path: p, op } if p == path => range.narrow(op),
                _ => Some(range),
            }
        }
        walk(&self.cond, path, Some(FieldRange::default()))
    }
}

/// One end of a [`FieldRange`]: unbounded, or a value included or not.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    Unbounded,
    Included(Value),
    Excluded(Value),
}

/// The values a field may take, from the selector's comparisons on it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldRange {
    pub low: Bound,
    pub high: Bound,
}

impl Default for FieldRange {
    fn default() -> Self {
        Self {
            low: Bound::Unbounded,
            high: Bound::Unbounded,
        }
    }
}

impl FieldRange {
    /// The range after one more comparison; `None` when nothing is left.
    fn narrow(self, op: &Op) -> Option<Self> {
        let (low, high) = match op {
            Op::Eq(v) => (Bound::Included(v.clone()), Bound::Included(v.clone())),
            Op::Gt(v) => (Bound::Excluded(v.clone()), Bound::Unbounded),
            Op::Gte(v) => (Bound::Included(v.clone()), Bound::Unbounded),
            Op::Lt(v) => (Bound::Unbounded, Bound::Excluded(v.clone())),
            Op::Lte(v) => (Bound::Unbounded, Bound::Included(v.clone())),
            // CouchDB 3.5: `$gte` the prefix and `$lte` the prefix followed by U+FFFF (what
            // its `_explain` shows as the end key).
            Op::BeginsWith(p) => (
                Bound::Included(Value::String(p.clone())),
                Bound::Included(Value::String(format!("{p}\u{FFFF}"))),
            ),
            _ => return Some(self),
        };
        let low = tighter(self.low, low, Ordering::Greater);
        let high = tighter(self.high, high, Ordering::Less);
        let empty = match (&low, &high) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (l, h) => match compare(bound_value(l), bound_value(h)) {
                Ordering::Greater => true,
                Ordering::Equal => !matches!((l, h), (Bound::Included(_), Bound::Included(_))),
                Ordering::Less => false,
            },
        };
        (!empty).then_some(Self { low, high })
    }
}

/// Of two bounds on the same side, the one that allows less; `wins` is the ordering of a
/// value that makes its bound tighter (greater for low ends, less for high ends).
fn tighter(a: Bound, b: Bound, wins: Ordering) -> Bound {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (a, b) => {
            let (av, bv) = (bound_value(&a), bound_value(&b));
            match compare(bv, av) {
                o if o == wins => b,
                Ordering::Equal if matches!(b, Bound::Excluded(_)) => b,
                _ => a,
            }
        }
    }
}

fn bound_value(bound: &Bound) -> &Value {
    match bound {
        Bound::Included(v) | Bound::Excluded(v) => v,
        Bound::Unbounded => &Value::Null,
    }
}
