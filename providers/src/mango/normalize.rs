//! CouchDB's `norm_negations`: `$not` and `$nor` pushed down to the field operators.
//!
//! `$not` of `$and` is an `$or` of negations and the other way round; `$nor` is an `$and` of
//! negations; a double negation cancels. At a field, the comparison operators, `$in`/`$nin`
//! and `$exists` are inverted (`$gt` ↔ `$lte`, `$eq` ↔ `$ne`, ...); any other operator keeps
//! a field-level `$not`. Because a missing field matches nothing but `$exists: false`, a
//! negated condition (other than `$exists`) never matches a document without the field.
//!
//! Like CouchDB, normalization does not enter the arguments of `$elemMatch`, `$allMatch` and
//! `$keyMapMatch`: a `$not` there stays a plain negation, and a `$nor` there is what CouchDB's
//! matcher cannot evaluate (see [`super::matching`]).

use super::{Cond, Op};

/// The selector with every negation outside element matching pushed down to the fields.
pub(super) fn normalize(cond: Cond) -> Cond {
    match cond {
        Cond::Not(inner) => negate(*inner),
        Cond::Nor(items) => Cond::And(items.into_iter().map(negate).collect()),
        Cond::And(items) => Cond::And(items.into_iter().map(normalize).collect()),
        Cond::Or(items) => Cond::Or(items.into_iter().map(normalize).collect()),
        field @ Cond::Field { .. } => field,
    }
}

/// The negation of `cond`, normalized.
fn negate(cond: Cond) -> Cond {
    match cond {
        Cond::Not(inner) => normalize(*inner),
        Cond::Nor(items) => Cond::Or(items.into_iter().map(normalize).collect()),
        Cond::And(items) => Cond::Or(items.into_iter().map(negate).collect()),
        Cond::Or(items) => Cond::And(items.into_iter().map(negate).collect()),
        Cond::Field { path, op } => Cond::Field {
            path,
            op: negate_op(op),
        },
    }
}

fn negate_op(op: Op) -> Op {
    match op {
        Op::Lt(v) => Op::Gte(v),
        Op::Lte(v) => Op::Gt(v),
        Op::Eq(v) => Op::Ne(v),
        Op::Ne(v) => Op::Eq(v),
        Op::Gte(v) => Op::Lt(v),
        Op::Gt(v) => Op::Lte(v),
        Op::In(v) => Op::Nin(v),
        Op::Nin(v) => Op::In(v),
        Op::Exists(b) => Op::Exists(!b),
        Op::Not(inner) => *inner,
        other => Op::Not(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::m;
    use serde_json::json;

    /// The cases that disagreed with a genuine CouchDB 3.5 before normalization, with the
    /// answers it gave.
    #[test]
    fn negations_need_the_field_as_on_couchdb() {
        let has_age = json!({"age": 40, "active": false});
        let no_age = json!({"active": false});
        let nor = json!({"$nor": [{"age": 25}, {"active": true}]});
        assert!(m(nor.clone(), has_age.clone()));
        assert!(!m(nor, no_age.clone()), "$nor is an $and of $ne: needs age");
        let not_gt = json!({"age": {"$not": {"$gt": 30}}});
        assert!(!m(not_gt.clone(), has_age.clone()));
        assert!(!m(not_gt, no_age.clone()), "$not of $gt is $lte: needs age");
        assert!(
            m(json!({"$not": {"age": {"$exists": true}}}), no_age.clone()),
            "$not of $exists inverts it"
        );
        assert!(
            !m(json!({"$not": {"age": {"$regex": "x"}}}), no_age.clone()),
            "a field-level $not needs the field"
        );
        let not_and = json!({"$not": {"$and": [{"age": 40}, {"active": true}]}});
        assert!(m(not_and.clone(), has_age), "age == 40 but active != true");
        assert!(m(not_and, no_age), "active exists and is not true");
    }

    #[test]
    fn double_negations_cancel() {
        let doc = json!({"x": 3});
        assert!(m(json!({"x": {"$not": {"$not": {"$gt": 1}}}}), doc.clone()));
        assert!(m(
            json!({"$nor": [{"$nor": [{"x": {"$gt": 1}}]}]}),
            doc.clone()
        ));
        assert!(!m(json!({"$not": {"$nor": [{"x": 1}]}}), doc));
    }

    #[test]
    fn element_matching_is_not_normalized() {
        let doc = json!({"objs": [{"n": 1}, {}]});
        assert!(
            m(
                json!({"objs": {"$elemMatch": {"$not": {"n": {"$gt": 5}}}}}),
                doc.clone()
            ),
            "a plain negation inside $elemMatch matches {{}}"
        );
        assert!(!m(
            json!({"objs": {"$elemMatch": {"$nor": [{"n": 1}]}}}),
            doc.clone()
        ));
        assert!(!m(
            json!({"objs": {"$allMatch": {"$nor": [{"n": 9}]}}}),
            doc.clone()
        ));
        assert!(m(
            json!({"$not": {"objs": {"$elemMatch": {"$nor": [{"n": 1}]}}}}),
            doc
        ));
    }
}
