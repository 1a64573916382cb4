//! CouchDB's `mango_selector:match` on a normalized selector.
//!
//! Evaluation is left to right and short-circuits as Erlang's `lists:all`/`lists:any` do, which
//! matters for one CouchDB quirk: its matcher has no clause for `$nor`, which normalization
//! removes everywhere but inside `$elemMatch`, `$allMatch` and `$keyMapMatch`; reaching one
//! there raises an error that those operators catch and turn into "no match". [`Outcome`]'s
//! `None` is that error.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{Cond, DocView, JsonType, Missing, Op, descend, step};
use crate::collate::{compare, compare_numbers};
use crate::rev::is_integer_text;

/// `Some(matched)`, or `None` where CouchDB's matcher raises an error.
type Outcome = Option<bool>;

/// Whether a document matches a normalized selector.
pub(super) fn matches(cond: &Cond, doc: DocView<'_>) -> bool {
    // A raised error can only come from inside element matching, which catches it.
    eval(cond, Root::Doc(doc)).unwrap_or(false)
}

/// What a condition's path starts from: the document, or an element inside `$elemMatch`,
/// `$allMatch` (array elements) or `$keyMapMatch` (object keys).
#[derive(Clone, Copy)]
enum Root<'a> {
    Doc(DocView<'a>),
    Element(&'a Value),
}

impl<'a> Root<'a> {
    /// The value at `path`; the empty path is the root itself.
    fn lookup(self, path: &[String]) -> Result<Cow<'a, Value>, Missing> {
        match (self, path.split_first()) {
            (Root::Element(v), None) => Ok(Cow::Borrowed(v)),
            (Root::Element(v), Some((first, rest))) => {
                descend(step(v, first)?, rest).map(Cow::Borrowed)
            }
            (Root::Doc(doc), None) => Ok(Cow::Owned(doc.whole())),
            (Root::Doc(doc), Some((first, rest))) => doc.lookup(first, rest),
        }
    }
}

fn eval(cond: &Cond, root: Root<'_>) -> Outcome {
    match cond {
        Cond::And(items) => {
            for item in items {
                if !eval(item, root)? {
                    return Some(false);
                }
            }
            Some(true)
        }
        // CouchDB: an empty $or is true (a selector that is one as a whole matches nothing,
        // but that is decided before matching).
        Cond::Or(items) if items.is_empty() => Some(true),
        Cond::Or(items) => {
            for item in items {
                if eval(item, root)? {
                    return Some(true);
                }
            }
            Some(false)
        }
        Cond::Not(inner) => eval(inner, root).map(|b| !b),
        Cond::Nor(_) => None,
        Cond::Field { path, op } => {
            // CouchDB compares `_id` as a raw Erlang term, wherever the field is.
            let raw = path.len() == 1 && path[0] == "_id";
            match root.lookup(path) {
                Err(Missing::NotFound) => Some(matches!(op, Op::Exists(false))),
                Err(Missing::BadPath) => Some(false),
                Ok(value) => Some(apply(op, &value, raw)),
            }
        }
    }
}

fn cmp(a: &Value, b: &Value, raw: bool) -> Ordering {
    if raw {
        erlang_order(a, b)
    } else {
        compare(a, b)
    }
}

fn apply(op: &Op, v: &Value, raw: bool) -> bool {
    match op {
        Op::Eq(arg) => cmp(v, arg, raw).is_eq(),
        Op::Ne(arg) => cmp(v, arg, raw).is_ne(),
        Op::Lt(arg) => cmp(v, arg, raw).is_lt(),
        Op::Lte(arg) => cmp(v, arg, raw).is_le(),
        Op::Gt(arg) => cmp(v, arg, raw).is_gt(),
        Op::Gte(arg) => cmp(v, arg, raw).is_ge(),
        Op::In(args) => match v {
            Value::Array(items) => args
                .iter()
                .any(|a| items.iter().any(|i| cmp(i, a, raw).is_eq())),
            _ => args.iter().any(|a| cmp(v, a, raw).is_eq()),
        },
        Op::Nin(args) => match v {
            Value::Array(items) => !args
                .iter()
                .any(|a| items.iter().any(|i| cmp(i, a, raw).is_eq())),
            _ => args.iter().all(|a| cmp(v, a, raw).is_ne()),
        },
        Op::Exists(want) => *want,
        Op::Type(t) => *t == Some(type_of(v)),
        Op::Size(n) => v.as_array().is_some_and(|a| Some(a.len() as u64) == *n),
        Op::Mod(d, r) => match v {
            Value::Number(n) if is_integer_text(n.as_str()) => n
                .as_str()
                .parse::<i128>()
                .map_or_else(|_| big_rem(n.as_str(), *d) == Some(*r), |x| x % d == *r),
            _ => false,
        },
        Op::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
        Op::BeginsWith(prefix) => v.as_str().is_some_and(|s| s.starts_with(prefix.as_str())),
        Op::All(args) => match v {
            // Erlang's lists:member (exact terms), or the array itself given as the one item.
            Value::Array(items) if !args.is_empty() => {
                args.iter()
                    .all(|a| items.iter().any(|i| term_eq(i, a, true)))
                    || matches!(args.as_slice(), [Value::Array(_)] if term_eq(&args[0], v, false))
            }
            _ => false,
        },
        Op::ElemMatch(sub) => v
            .as_array()
            .is_some_and(|items| any_element(sub, items.iter())),
        Op::AllMatch(sub) => v.as_array().is_some_and(|items| {
            !items.is_empty()
                && items
                    .iter()
                    .all(|i| eval(sub, Root::Element(i)) == Some(true))
        }),
        Op::KeyMapMatch(sub) => v.as_object().is_some_and(|map| {
            let keys: Vec<Value> = map.keys().map(|k| Value::String(k.clone())).collect();
            any_element(sub, keys.iter())
        }),
        Op::Not(inner) => !apply(inner, v, raw),
    }
}

/// CouchDB's `$elemMatch` loop: true at the first element that matches, false at the first
/// that raises an error (caught), else false.
fn any_element<'a>(sub: &Cond, mut items: impl Iterator<Item = &'a Value>) -> bool {
    items
        .find_map(|item| match eval(sub, Root::Element(item)) {
            Some(true) => Some(true),
            None => Some(false),
            Some(false) => None,
        })
        .unwrap_or(false)
}

fn type_of(v: &Value) -> JsonType {
    match v {
        Value::Null => JsonType::Null,
        Value::Bool(_) => JsonType::Boolean,
        Value::Number(_) => JsonType::Number,
        Value::String(_) => JsonType::String,
        Value::Array(_) => JsonType::Array,
        Value::Object(_) => JsonType::Object,
    }
}

/// `value rem divisor` (Erlang: the sign of the dividend) for an integer beyond 128 bits, by
/// long division; `None` when the divisor is too large for the digit-wise arithmetic (it then
/// exceeds 2^64, a case no recorded query reaches).
fn big_rem(text: &str, divisor: i128) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let d = u64::try_from(divisor.unsigned_abs()).ok()? as u128;
    let mut r: u128 = 0;
    for b in digits.bytes() {
        r = (r * 10 + u128::from(b.checked_sub(b'0')?)) % d;
    }
    let r = r as i128;
    Some(if negative { -r } else { r })
}

/// Erlang's term equality on decoded JSON: `exact` is `=:=` (an integer never equals a
/// float), otherwise `==` (numbers by value).
fn term_eq(a: &Value, b: &Value, exact: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (!exact || is_integer_text(x.as_str()) == is_integer_text(y.as_str()))
                && compare_numbers(x, y).is_eq()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| term_eq(p, q, exact))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && term_eq(vx, vy, exact))
        }
        _ => a == b,
    }
}

/// Erlang's term order on decoded JSON (CouchDB's `mango_json:cmp_raw`, used for `_id`):
/// numbers < atoms (`false` < `null` < `true`) < objects (tuples) < arrays (lists) < strings
/// (binaries, by bytes).
fn erlang_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::Bool(false) => 1,
            Value::Null => 2,
            Value::Bool(true) => 3,
            Value::Object(_) => 4,
            Value::Array(_) => 5,
            Value::String(_) => 6,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(x), Value::Array(y)) => lexicographic(x.iter(), y.iter(), erlang_order),
        (Value::Object(x), Value::Object(y)) => erlang_objects(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Two `{Props}` tuples: their property lists compared as lists of `{Key, Value}` tuples.
fn erlang_objects(x: &Map<String, Value>, y: &Map<String, Value>) -> Ordering {
    lexicographic(x.iter(), y.iter(), |(kx, vx), (ky, vy)| {
        kx.as_bytes()
            .cmp(ky.as_bytes())
            .then_with(|| erlang_order(vx, vy))
    })
}

/// Element by element; a proper prefix first (Erlang list order).
fn lexicographic<T>(
    mut x: impl Iterator<Item = T>,
    mut y: impl Iterator<Item = T>,
    cmp: impl Fn(T, T) -> Ordering,
) -> Ordering {
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => match cmp(p, q) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::m;
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_fields_match_only_exists_false() {
        let doc = json!({"a": 1});
        assert!(!m(json!({"x": {"$ne": 1}}), doc.clone()));
        assert!(!m(json!({"x": {"$nin": [1]}}), doc.clone()));
        assert!(m(json!({"x": {"$exists": false}}), doc.clone()));
        assert!(!m(json!({"a": {"$exists": false}}), doc.clone()));
        assert!(m(json!({"a": {"$exists": true}}), doc.clone()));
        assert!(!m(json!({"$not": {"x": {"$eq": 1}}}), doc));
    }

    #[test]
    fn collation_across_types_and_raw_ids() {
        let doc = json!({"_id": "B", "s": "b", "k": "B"});
        assert!(
            m(json!({"s": {"$gt": 5}}), doc.clone()),
            "strings sort after numbers"
        );
        assert!(m(json!({"s": {"$lt": "B"}}), doc.clone()), "ICU: b < B");
        assert!(!m(json!({"k": {"$lt": "a"}}), doc.clone()), "ICU: a < B");
        assert!(
            m(json!({"_id": {"$lt": "a"}}), doc.clone()),
            "_id by raw bytes: B < a"
        );
        assert!(
            m(json!({"_id": {"$gt": [1]}}), doc.clone()),
            "_id as an Erlang term: binaries after lists"
        );
        assert!(m(json!({"_id": {"$gt": {"a": 1}}}), doc));
    }

    #[test]
    fn arrays_in_all_size_elem_match() {
        let doc = json!({"tags": ["a", "b"], "nums": [1, 5, 9], "objs": [{"n": 1}, {"n": 7}]});
        assert!(m(json!({"tags": {"$in": ["b", "z"]}}), doc.clone()));
        assert!(!m(json!({"tags": {"$nin": ["b"]}}), doc.clone()));
        assert!(m(json!({"tags": {"$all": ["b", "a"]}}), doc.clone()));
        assert!(!m(json!({"tags": {"$all": ["a", "c"]}}), doc.clone()));
        assert!(!m(json!({"tags": {"$all": []}}), doc.clone()));
        assert!(m(json!({"tags": {"$size": 2}}), doc.clone()));
        assert!(m(json!({"nums": {"$elemMatch": {"$gt": 8}}}), doc.clone()));
        assert!(!m(json!({"nums": {"$allMatch": {"$gt": 1}}}), doc.clone()));
        assert!(m(
            json!({"objs": {"$elemMatch": {"n": {"$gt": 5}}}}),
            doc.clone()
        ));
        assert!(m(
            json!({"objs": {"$allMatch": {"n": {"$exists": true}}}}),
            doc.clone()
        ));
        assert!(m(json!({"tags": ["a", "b"]}), doc.clone()));
        assert!(m(
            json!({"objs": {"$elemMatch": {}}}),
            json!({"objs": [{}]})
        ));
        assert!(!m(json!({"objs": {"$elemMatch": {}}}), doc));
    }

    #[test]
    fn all_compares_erlang_terms() {
        let ints = json!({"arr": [1, 2]});
        let floats = json!({"arr": [1.0, 2.0]});
        assert!(m(json!({"arr": {"$all": [1]}}), ints.clone()));
        assert!(
            !m(json!({"arr": {"$all": [1.0]}}), ints.clone()),
            "1.0 is not a member"
        );
        assert!(!m(json!({"arr": {"$all": [1]}}), floats.clone()));
        assert!(
            m(json!({"arr": {"$all": [[1, 2]]}}), floats),
            "== for the whole array"
        );
        assert!(m(json!({"arr": {"$all": [[1.0, 2]]}}), ints));
    }

    #[test]
    fn begins_with_and_key_map_match() {
        let doc = json!({"s": "apple", "S": "Apple", "o": {"bee": 1}, "n": 5});
        assert!(m(json!({"s": {"$beginsWith": "ap"}}), doc.clone()));
        assert!(
            !m(json!({"S": {"$beginsWith": "ap"}}), doc.clone()),
            "by bytes"
        );
        assert!(!m(json!({"n": {"$beginsWith": ""}}), doc.clone()));
        assert!(m(
            json!({"o": {"$keyMapMatch": {"$beginsWith": "b"}}}),
            doc.clone()
        ));
        assert!(!m(json!({"s": {"$keyMapMatch": {"$eq": "a"}}}), doc));
    }

    #[test]
    fn combinators_type_mod_regex() {
        let doc: Value = serde_json::from_str(
            r#"{"a": 7, "s": "Hello", "f": 7.5, "neg": -7, "big": 1000000000000000000000000000000000000000001}"#,
        )
        .unwrap();
        assert!(m(json!({"$or": [{"a": 1}, {"s": "Hello"}]}), doc.clone()));
        assert!(m(json!({"$nor": [{"a": 1}, {"s": "x"}]}), doc.clone()));
        assert!(m(
            json!({"$and": [{"a": 7}, {"s": {"$regex": "^H"}}]}),
            doc.clone()
        ));
        assert!(m(
            json!({"a": {"$or": [{"$lt": 0}, {"$gt": 5}]}}),
            doc.clone()
        ));
        assert!(m(json!({"a": {"$not": {"$lt": 5}}}), doc.clone()));
        assert!(m(
            json!({"a": {"$type": "number"}, "s": {"$type": "string"}}),
            doc.clone()
        ));
        assert!(m(json!({"a": {"$mod": [4, 3]}}), doc.clone()));
        assert!(
            m(json!({"neg": {"$mod": [4, -3]}}), doc.clone()),
            "Erlang rem keeps the sign"
        );
        assert!(
            !m(json!({"f": {"$mod": [2, 1]}}), doc.clone()),
            "floats never match $mod"
        );
        assert!(m(json!({"big": {"$mod": [10, 1]}}), doc.clone()));
        assert!(!m(json!({"s": {"$regex": "^h"}}), doc));
    }

    #[test]
    fn erlang_order_ranks_types() {
        let order = [
            json!(1),
            json!(false),
            json!(null),
            json!(true),
            json!({"a": 1}),
            json!([]),
            json!([1]),
            json!("a"),
        ];
        for pair in order.windows(2) {
            assert_eq!(erlang_order(&pair[0], &pair[1]), Ordering::Less, "{pair:?}");
        }
        assert_eq!(erlang_order(&json!(1), &json!(1.0)), Ordering::Equal);
    }
}
