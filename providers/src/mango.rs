//! Mango selectors: parsed once into a typed form, then evaluated against documents with
//! CouchDB 3's semantics (`mango_selector`), for the providers that answer `find` in Rust.
//!
//! Normal form (as CouchDB normalizes): a selector is a tree of `$and`/`$or`/`$nor`/`$not`
//! over field conditions; a field condition is a path (dotted, `\.` escapes a dot) and one
//! operator. Implicit equality, several operators on one field (an implicit `$and`), nested
//! objects used as paths (`{"a": {"b": 1}}` is `a.b == 1`) and combinators written inside a
//! field (`{"a": {"$or": [...]}}`) are all rewritten into that form.
//!
//! Matching rules worth knowing:
//! - a missing field matches nothing but `$exists: false` (so `$ne` and `$nin` do not match
//!   documents without the field, as on CouchDB);
//! - comparisons use CouchDB's collation ([`crate::collate`]) across types, except on `_id`,
//!   compared by raw bytes;
//! - `$in`/`$nin` against an array value look at its elements;
//! - `$regex` uses Rust's `regex` syntax (no look-around or back-references), unanchored;
//! - `$mod` matches integers only, with the sign rules of Erlang's `rem`.
//!
//! Every unknown operator or malformed argument is an [`Error::InvalidQuery`] naming it.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::collate::compare;
use crate::rev::is_integer_text;
use crate::{Error, Result, Rev};

/// A parsed selector, keeping the JSON it was parsed from (what the CouchDB provider sends).
#[derive(Debug, Clone)]
pub struct Selector {
    cond: Cond,
    json: Value,
}

#[derive(Debug, Clone)]
enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Nor(Vec<Cond>),
    Not(Box<Cond>),
    /// An operator on the value at `path` (empty path: the value itself, inside `$elemMatch`).
    Field {
        path: Vec<String>,
        op: Op,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    Lt(Value),
    Lte(Value),
    Gt(Value),
    Gte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(JsonType),
    Size(u64),
    Mod(i128, i128),
    Regex(regex::Regex),
    All(Vec<Value>),
    ElemMatch(Box<Cond>),
    AllMatch(Box<Cond>),
}

impl Op {
    /// The operators an index range scan can serve.
    fn is_range(&self) -> bool {
        matches!(
            self,
            Op::Eq(_) | Op::Gt(_) | Op::Gte(_) | Op::Lt(_) | Op::Lte(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidQuery {
        reason: reason.into(),
    }
}

impl Selector {
    /// Parses a selector (a JSON object).
    pub fn parse(selector: &Value) -> Result<Self> {
        match selector {
            Value::Object(map) => Ok(Self {
                cond: parse_object(map, &[])?,
                json: selector.clone(),
            }),
            other => Err(invalid(format!(
                "a selector must be a JSON object, got {other}"
            ))),
        }
    }

    /// The selector as given.
    pub fn as_json(&self) -> &Value {
        &self.json
    }

    /// Whether a document (with `_id`/`_rev`) matches.
    pub fn matches(&self, doc: &Map<String, Value>) -> bool {
        eval(
            &self.cond,
            Root::Doc(DocView {
                body: doc,
                id: None,
                rev: None,
            }),
        )
    }

    /// Whether a stored document matches, given its id, revision and body (without
    /// `_id`/`_rev`), so nothing has to be assembled before the document is known to match.
    pub fn matches_stored(&self, id: &str, rev: &Rev, body: &Map<String, Value>) -> bool {
        eval(
            &self.cond,
            Root::Doc(DocView {
                body,
                id: Some(id),
                rev: Some(rev),
            }),
        )
    }
}

/// What CouchDB's query planner (`mango_idx_view`, `mango_selector`) reads from a selector.
/// Paths are compared split, so `a.b` and `{"a": {"b": …}}` name the same field.
impl Selector {
    /// Fields with a condition an index scan can serve (`$eq $gt $gte $lt $lte`), seen only
    /// through `$and`: CouchDB's `indexable_fields`. Sorted, without repeats.
    pub(crate) fn indexable_fields(&self) -> Vec<Vec<String>> {
        fn walk(cond: &Cond, out: &mut Vec<Vec<String>>) {
            match cond {
                Cond::And(args) => args.iter().for_each(|a| walk(a, out)),
                Cond::Field { path, op } if op.is_range() => out.push(path.clone()),
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
    /// and `$or` (every child must); any condition but `$exists: false` covers its field.
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

/// A document as the selector sees it: its body, plus `_id`/`_rev` when they are kept apart.
#[derive(Clone, Copy)]
struct DocView<'a> {
    body: &'a Map<String, Value>,
    id: Option<&'a str>,
    rev: Option<&'a Rev>,
}

/// What a condition's path starts from: the document (where `_id` compares raw), or an
/// element inside `$elemMatch`/`$allMatch`.
#[derive(Clone, Copy)]
enum Root<'a> {
    Doc(DocView<'a>),
    Element(&'a Value),
}

impl<'a> Root<'a> {
    /// The value at `path`, if any.
    fn lookup(self, path: &[String]) -> Option<Cow<'a, Value>> {
        let (first, rest) = match (self, path.split_first()) {
            (Root::Element(v), None) => return Some(Cow::Borrowed(v)),
            (Root::Doc(doc), None) => return Some(Cow::Owned(Value::Object(doc.body.clone()))),
            (Root::Doc(doc), Some((first, rest))) => match (first.as_str(), doc.id, doc.rev) {
                ("_id", Some(id), _) if rest.is_empty() => {
                    return Some(Cow::Owned(Value::String(id.to_owned())));
                }
                ("_rev", _, Some(rev)) if rest.is_empty() => {
                    return Some(Cow::Owned(Value::String(rev.to_string())));
                }
                _ => (doc.body.get(first)?, rest),
            },
            (Root::Element(v), Some((first, rest))) => (step(v, first)?, rest),
        };
        descend(first, rest).map(Cow::Borrowed)
    }
}

/// One path segment: an object key, or (as in CouchDB's `mango_doc:get_field`) a decimal
/// index into an array.
fn step<'v>(value: &'v Value, segment: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items)
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) =>
        {
            items.get(segment.parse::<usize>().ok()?)
        }
        _ => None,
    }
}

fn descend<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, segment| step(v, segment))
}

/// The value at `path` in a document body (`_id`/`_rev` included if the map has them).
pub(crate) fn lookup<'v>(doc: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    descend(doc.get(first)?, rest)
}

/// Splits a dotted path; `\.` is a literal dot.
pub(crate) fn split_path(field: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                if let Some(part) = parts.last_mut() {
                    part.push('.');
                }
            }
            '.' => parts.push(String::new()),
            c => {
                if let Some(part) = parts.last_mut() {
                    part.push(c);
                }
            }
        }
    }
    parts
}

/// Parses an object at `prefix`: its keys are fields (relative to `prefix`) or operators.
fn parse_object(map: &Map<String, Value>, prefix: &[String]) -> Result<Cond> {
    let mut conds = Vec::with_capacity(map.len());
    for (key, value) in map {
        if key.starts_with('$') {
            conds.push(parse_operator(key, value, prefix)?);
        } else {
            let mut path = prefix.to_vec();
            path.extend(split_path(key));
            conds.push(parse_field_value(value, &path)?);
        }
    }
    Ok(if conds.len() == 1 {
        conds.pop().unwrap_or(Cond::And(Vec::new()))
    } else {
        Cond::And(conds)
    })
}

/// The value given for a field: an operator object, a nested path object, or a literal.
fn parse_field_value(value: &Value, path: &[String]) -> Result<Cond> {
    match value {
        Value::Object(map) if !map.is_empty() && map.keys().all(|k| k.starts_with('$')) => {
            parse_object(map, path)
        }
        Value::Object(map) if !map.is_empty() && map.keys().any(|k| k.starts_with('$')) => {
            Err(invalid(format!(
                "field {:?} mixes operators and field names in one object",
                path.join(".")
            )))
        }
        Value::Object(map) if !map.is_empty() => parse_object(map, path),
        literal => Ok(Cond::Field {
            path: path.to_vec(),
            op: Op::Eq(literal.clone()),
        }),
    }
}

fn selectors(op: &str, value: &Value, prefix: &[String]) -> Result<Vec<Cond>> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid(format!("{op} takes an array of selectors")))?;
    items
        .iter()
        .map(|item| match item {
            Value::Object(map) => parse_object(map, prefix),
            other => Err(invalid(format!(
                "{op} takes selectors (objects), got {other}"
            ))),
        })
        .collect()
}

fn values(op: &str, value: &Value) -> Result<Vec<Value>> {
    value
        .as_array()
        .cloned()
        .ok_or_else(|| invalid(format!("{op} takes an array")))
}

fn sub_selector(op: &str, value: &Value) -> Result<Box<Cond>> {
    match value {
        Value::Object(map) => Ok(Box::new(parse_object(map, &[])?)),
        other => Err(invalid(format!(
            "{op} takes a selector (an object), got {other}"
        ))),
    }
}

fn integer(op: &str, value: &Value) -> Result<i128> {
    match value {
        Value::Number(n) if is_integer_text(n.as_str()) => n
            .as_str()
            .parse()
            .map_err(|_| invalid(format!("{op}: {n} is out of range"))),
        other => Err(invalid(format!("{op} takes integers, got {other}"))),
    }
}

fn parse_operator(op: &str, value: &Value, prefix: &[String]) -> Result<Cond> {
    let field = |op: Op| Cond::Field {
        path: prefix.to_vec(),
        op,
    };
    Ok(match op {
        "$and" => Cond::And(selectors(op, value, prefix)?),
        "$or" => Cond::Or(selectors(op, value, prefix)?),
        "$nor" => Cond::Nor(selectors(op, value, prefix)?),
        "$not" => match value {
            Value::Object(map) => Cond::Not(Box::new(parse_object(map, prefix)?)),
            other => {
                return Err(invalid(format!(
                    "$not takes a selector (an object), got {other}"
                )));
            }
        },
        "$eq" => field(Op::Eq(value.clone())),
        "$ne" => field(Op::Ne(value.clone())),
        "$lt" => field(Op::Lt(value.clone())),
        "$lte" => field(Op::Lte(value.clone())),
        "$gt" => field(Op::Gt(value.clone())),
        "$gte" => field(Op::Gte(value.clone())),
        "$in" => field(Op::In(values(op, value)?)),
        "$nin" => field(Op::Nin(values(op, value)?)),
        "$all" => field(Op::All(values(op, value)?)),
        "$exists" => field(Op::Exists(
            value
                .as_bool()
                .ok_or_else(|| invalid("$exists takes true or false"))?,
        )),
        "$type" => field(Op::Type(match value.as_str() {
            Some("null") => JsonType::Null,
            Some("boolean") => JsonType::Boolean,
            Some("number") => JsonType::Number,
            Some("string") => JsonType::String,
            Some("array") => JsonType::Array,
            Some("object") => JsonType::Object,
            _ => {
                return Err(invalid(
                    "$type takes one of \"null\", \"boolean\", \"number\", \"string\", \"array\", \"object\"",
                ));
            }
        })),
        "$size" => {
            let n = integer(op, value)?;
            field(Op::Size(
                u64::try_from(n).map_err(|_| invalid("$size takes a non-negative integer"))?,
            ))
        }
        "$mod" => {
            let args = values(op, value)?;
            let [divisor, remainder] = args.as_slice() else {
                return Err(invalid("$mod takes [divisor, remainder]"));
            };
            let (d, r) = (integer(op, divisor)?, integer(op, remainder)?);
            if d == 0 {
                return Err(invalid("$mod: the divisor must not be 0"));
            }
            field(Op::Mod(d, r))
        }
        "$regex" => {
            let pattern = value
                .as_str()
                .ok_or_else(|| invalid("$regex takes a string"))?;
            field(Op::Regex(regex::Regex::new(pattern).map_err(|e| {
                invalid(format!(
                    "$regex {pattern:?} is not a valid regular expression: {e}"
                ))
            })?))
        }
        "$elemMatch" => field(Op::ElemMatch(sub_selector(op, value)?)),
        "$allMatch" => field(Op::AllMatch(sub_selector(op, value)?)),
        other => {
            return Err(invalid(format!(
                "unsupported operator {other:?}; supported: $eq $ne $gt $gte $lt $lte $in $nin $exists $type $size $mod $regex $all $elemMatch $allMatch $and $or $nor $not"
            )));
        }
    })
}

fn eval(cond: &Cond, root: Root<'_>) -> bool {
    match cond {
        Cond::And(cs) => cs.iter().all(|c| eval(c, root)),
        Cond::Or(cs) => cs.iter().any(|c| eval(c, root)),
        Cond::Nor(cs) => !cs.iter().any(|c| eval(c, root)),
        Cond::Not(c) => !eval(c, root),
        Cond::Field { path, op } => {
            let raw = matches!(root, Root::Doc(_)) && path.len() == 1 && path[0] == "_id";
            match root.lookup(path) {
                None => matches!(op, Op::Exists(false)),
                Some(v) => apply(op, &v, raw),
            }
        }
    }
}

fn cmp(a: &Value, b: &Value, raw: bool) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) if raw => x.as_bytes().cmp(y.as_bytes()),
        _ => compare(a, b),
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
            _ => !args.iter().any(|a| cmp(v, a, raw).is_eq()),
        },
        Op::Exists(want) => *want,
        Op::Type(t) => {
            *t == match v {
                Value::Null => JsonType::Null,
                Value::Bool(_) => JsonType::Boolean,
                Value::Number(_) => JsonType::Number,
                Value::String(_) => JsonType::String,
                Value::Array(_) => JsonType::Array,
                Value::Object(_) => JsonType::Object,
            }
        }
        Op::Size(n) => v.as_array().is_some_and(|a| a.len() as u64 == *n),
        Op::Mod(d, r) => match v {
            Value::Number(n) if is_integer_text(n.as_str()) => {
                n.as_str().parse::<i128>().is_ok_and(|x| x % d == *r)
            }
            _ => false,
        },
        Op::Regex(re) => v.as_str().is_some_and(|s| re.is_match(s)),
        Op::All(args) => match v {
            Value::Array(items) => {
                !args.is_empty()
                    && args
                        .iter()
                        .all(|a| items.iter().any(|i| compare(i, a).is_eq()))
            }
            _ => false,
        },
        Op::ElemMatch(sub) => v
            .as_array()
            .is_some_and(|items| items.iter().any(|i| eval(sub, Root::Element(i)))),
        Op::AllMatch(sub) => v.as_array().is_some_and(|items| {
            !items.is_empty() && items.iter().all(|i| eval(sub, Root::Element(i)))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(selector: Value, doc: Value) -> bool {
        Selector::parse(&selector)
            .unwrap()
            .matches(doc.as_object().unwrap())
    }

    fn bad(selector: Value) -> String {
        match Selector::parse(&selector) {
            Err(Error::InvalidQuery { reason }) => reason,
            other => panic!("{selector} parsed: {other:?}"),
        }
    }

    #[test]
    fn equality_paths_and_implicit_and() {
        let doc = json!({"_id": "x", "a": 1, "b": {"c": "z", "d.e": 2}, "n": null});
        assert!(m(json!({"a": 1}), doc.clone()));
        assert!(m(json!({"a": 1.0}), doc.clone()));
        assert!(!m(json!({"a": 2}), doc.clone()));
        assert!(m(json!({"b.c": "z"}), doc.clone()));
        assert!(m(json!({"b": {"c": "z"}}), doc.clone()));
        assert!(m(json!({"b.d\\.e": 2}), doc.clone()));
        assert!(m(json!({"a": {"$gt": 0, "$lt": 2}}), doc.clone()));
        assert!(!m(json!({"a": {"$gt": 0, "$lt": 1}}), doc.clone()));
        assert!(m(json!({"n": null}), doc.clone()));
        assert!(m(json!({"a": 1, "b.c": "z"}), doc));
    }

    #[test]
    fn missing_fields_match_only_exists_false() {
        let doc = json!({"a": 1});
        assert!(!m(json!({"x": {"$ne": 1}}), doc.clone()));
        assert!(!m(json!({"x": {"$nin": [1]}}), doc.clone()));
        assert!(m(json!({"x": {"$exists": false}}), doc.clone()));
        assert!(!m(json!({"a": {"$exists": false}}), doc.clone()));
        assert!(m(json!({"a": {"$exists": true}}), doc.clone()));
        assert!(m(json!({"$not": {"x": {"$eq": 1}}}), doc));
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
            m(json!({"_id": {"$lt": "a"}}), doc),
            "_id by raw bytes: B < a"
        );
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
        assert!(m(json!({"tags": ["a", "b"]}), doc));
    }

    #[test]
    fn combinators_type_mod_regex() {
        let doc = json!({"a": 7, "s": "Hello", "f": 7.5, "neg": -7});
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
        assert!(!m(json!({"s": {"$regex": "^h"}}), doc));
    }

    #[test]
    fn bad_queries_name_the_problem() {
        assert!(bad(json!({"a": {"$foo": 1}})).contains("$foo"));
        assert!(bad(json!({"a": {"$in": 1}})).contains("$in"));
        assert!(bad(json!({"a": {"$mod": [0, 1]}})).contains("divisor"));
        assert!(bad(json!({"a": {"$mod": [1]}})).contains("$mod"));
        assert!(bad(json!({"a": {"$regex": "("}})).contains("$regex"));
        assert!(bad(json!({"a": {"$type": "int"}})).contains("$type"));
        assert!(bad(json!({"a": {"$size": -1}})).contains("$size"));
        assert!(bad(json!({"$or": {"a": 1}})).contains("$or"));
        assert!(bad(json!({"a": {"$gt": 1, "b": 2}})).contains("mixes"));
        assert!(bad(json!([1])).contains("object"));
    }
}
