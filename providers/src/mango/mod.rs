//! Mango selectors: parsed once into a typed form, normalized as CouchDB 3.5 normalizes them,
//! then evaluated against documents with CouchDB's semantics (`mango_selector`), for the
//! providers that answer `find` in Rust.
//!
//! The stages follow CouchDB's own, one file each:
//! - [`parse`] (`norm_ops` and `norm_fields`): implicit equality, several keys as an implicit
//!   `$and`, nested objects as dotted paths (`{"a": {"b": 1}}` is `a.b == 1`), combinators
//!   written inside a field (`{"a": {"$or": [...]}}`) pushed down to field conditions;
//! - [`normalize`] (`norm_negations`): `$not` and `$nor` pushed down to the field operators by
//!   De Morgan's laws (`$not` of `$gt` becomes `$lte`, `$nor` an `$and` of negations); an
//!   operator without an inverse keeps a field-level `$not`;
//! - [`matching`] (`match`);
//! - [`ranges`]: what CouchDB's query planner reads from the normalized selector.
//!
//! Matching rules worth knowing (each checked against CouchDB 3.5):
//! - a missing field matches nothing but `$exists: false`, so every negated condition (a
//!   `$ne`, `$nin`, a `$not` or a `$nor`) needs the field to exist;
//! - a selector that normalizes to an empty `$and` or `$or` as a whole matches nothing
//!   (CouchDB scans an empty range); nested, an empty `$and` or `$or` is true; `{}` matches
//!   everything, but `{}` nested in a combinator is equality with `{}`;
//! - inside `$elemMatch`, `$allMatch` and `$keyMapMatch` CouchDB does not normalize: `$not`
//!   there is a plain negation, and a `$nor` there makes the operator false;
//! - comparisons use CouchDB's collation ([`crate::collate`]) across types, except on `_id`,
//!   compared as raw Erlang terms (strings by bytes, after every other type);
//! - `$in`/`$nin` against an array value look at its elements; `$all` looks for exactly equal
//!   elements (`1` is not `1.0`), or equals the array when given one array;
//! - `$regex` uses Rust's `regex` syntax (no look-around or back-references), unanchored;
//! - `$mod` matches integers only, with the sign rules of Erlang's `rem`.
//!
//! Every unknown operator or malformed argument is an [`Error::InvalidQuery`] naming it, and so
//! are three inputs CouchDB accepts but cannot answer: `$mod` by zero (CouchDB answers 500
//! `badarith` once a document has an integer there), `$text` (CouchDB returns every document
//! when no text index exists) and a top-level condition without a field name.

mod matching;
mod normalize;
mod parse;
mod ranges;

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::{Error, Result, Rev};

#[cfg_attr(not(feature = "embedded"), allow(unused_imports))]
pub(crate) use ranges::Bound;
pub(crate) use ranges::FieldRange;

/// A parsed and normalized selector, keeping the JSON it was parsed from (what the CouchDB
/// provider sends).
#[derive(Debug, Clone)]
pub struct Selector {
    cond: Cond,
    json: Value,
    /// CouchDB returns nothing for a selector that normalizes to an empty `$and` or `$or`.
    matches_nothing: bool,
}

/// A selector in CouchDB's normal form. Outside the arguments of `$elemMatch`, `$allMatch`
/// and `$keyMapMatch` only `And`, `Or` and `Field` remain after [`normalize`].
#[derive(Debug, Clone)]
enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Nor(Vec<Cond>),
    Not(Box<Cond>),
    /// An operator on the value at `path` (empty path: the whole document, or the element
    /// inside `$elemMatch`).
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
    /// `None`: a type name CouchDB accepts but no value has.
    Type(Option<JsonType>),
    /// `None`: a size beyond any array.
    Size(Option<u64>),
    Mod(i128, i128),
    Regex(regex::Regex),
    BeginsWith(String),
    All(Vec<Value>),
    ElemMatch(Box<Cond>),
    AllMatch(Box<Cond>),
    KeyMapMatch(Box<Cond>),
    /// A negation normalization could not push into the operator.
    Not(Box<Op>),
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
    /// Parses and normalizes a selector (a JSON object).
    pub fn parse(selector: &Value) -> Result<Self> {
        let Value::Object(map) = selector else {
            return Err(invalid(format!(
                "a selector must be a JSON object, got {selector}"
            )));
        };
        if map.is_empty() {
            return Ok(Self {
                cond: Cond::And(Vec::new()),
                json: selector.clone(),
                matches_nothing: false,
            });
        }
        let cond = normalize::normalize(parse::selector(map)?);
        if matches!(&cond, Cond::Field { path, .. } if path.is_empty()) {
            return Err(invalid(
                "one or more conditions is missing a field name (an empty key, or an empty \
                 object under $not, at the top of the selector)",
            ));
        }
        let matches_nothing = matches!(&cond, Cond::And(c) | Cond::Or(c) if c.is_empty());
        Ok(Self {
            cond,
            json: selector.clone(),
            matches_nothing,
        })
    }

    /// The selector as given.
    pub fn as_json(&self) -> &Value {
        &self.json
    }

    /// Whether a document (with `_id`/`_rev`) matches.
    pub fn matches(&self, doc: &Map<String, Value>) -> bool {
        !self.matches_nothing
            && matching::matches(
                &self.cond,
                DocView {
                    body: doc,
                    id: None,
                    rev: None,
                },
            )
    }

    /// Whether a stored document matches, given its id, revision and body (without
    /// `_id`/`_rev`), so nothing has to be assembled before the document is known to match.
    pub fn matches_stored(&self, id: &str, rev: &Rev, body: &Map<String, Value>) -> bool {
        !self.matches_nothing
            && matching::matches(
                &self.cond,
                DocView {
                    body,
                    id: Some(id),
                    rev: Some(rev),
                },
            )
    }
}

/// A document as the selector sees it: its body, plus `_id`/`_rev` when they are kept apart.
#[derive(Clone, Copy)]
struct DocView<'a> {
    body: &'a Map<String, Value>,
    id: Option<&'a str>,
    rev: Option<&'a Rev>,
}

impl<'a> DocView<'a> {
    /// The whole document as CouchDB's matcher sees it: `_id` and `_rev` first.
    fn whole(&self) -> Value {
        let mut map = Map::with_capacity(self.body.len() + 2);
        if let Some(id) = self.id {
            map.insert("_id".into(), Value::String(id.to_owned()));
        }
        if let Some(rev) = self.rev {
            map.insert("_rev".into(), Value::String(rev.to_string()));
        }
        map.extend(self.body.iter().map(|(k, v)| (k.clone(), v.clone())));
        Value::Object(map)
    }

    /// The value at a non-empty path.
    fn lookup(self, first: &str, rest: &[String]) -> Result<Cow<'a, Value>, Missing> {
        match (first, self.id, self.rev) {
            ("_id", Some(id), _) if rest.is_empty() => Ok(Cow::Owned(Value::String(id.to_owned()))),
            ("_rev", _, Some(rev)) if rest.is_empty() => {
                Ok(Cow::Owned(Value::String(rev.to_string())))
            }
            // Below a string: what `step` says of any scalar.
            ("_id", Some(_), _) | ("_rev", _, Some(_)) => Err(Missing::BadPath),
            _ => descend(self.body.get(first).ok_or(Missing::NotFound)?, rest).map(Cow::Borrowed),
        }
    }
}

/// Why a path leads to no value, as CouchDB's `mango_doc:get_field` tells them apart: only a
/// key missing from an object is `not_found` (which `$exists: false` matches); a path that
/// runs into a scalar, or into an array with anything but an index it has, is `bad_path`
/// (which nothing matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    NotFound,
    BadPath,
}

/// One path segment: an object key, or a decimal index into an array (parsed as Erlang's
/// `binary_to_integer` does: an optional sign, then digits).
fn step<'v>(value: &'v Value, segment: &str) -> Result<&'v Value, Missing> {
    match value {
        Value::Object(map) => map.get(segment).ok_or(Missing::NotFound),
        Value::Array(items) => {
            let (negative, digits) = match segment.as_bytes().first() {
                Some(b'+') => (false, &segment[1..]),
                Some(b'-') => (true, &segment[1..]),
                _ => (false, segment),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Missing::BadPath);
            }
            let zero = digits.bytes().all(|b| b == b'0');
            if negative && !zero {
                return Err(Missing::BadPath);
            }
            digits
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .ok_or(Missing::BadPath)
        }
        _ => Err(Missing::BadPath),
    }
}

fn descend<'v>(value: &'v Value, path: &[String]) -> Result<&'v Value, Missing> {
    path.iter().try_fold(value, |v, segment| step(v, segment))
}

/// The value at `path` in a document body (`_id`/`_rev` included if the map has them).
pub(crate) fn lookup<'v>(doc: &'v Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    descend(doc.get(first)?, rest).ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn m(selector: Value, doc: Value) -> bool {
        Selector::parse(&selector)
            .unwrap()
            .matches(doc.as_object().unwrap())
    }

    #[test]
    fn empty_selectors_follow_couchdb() {
        let doc = json!({"_id": "x", "a": 1});
        assert!(m(json!({}), doc.clone()), "{{}} matches everything");
        for nothing in [
            json!({"$and": []}),
            json!({"$or": []}),
            json!({"$nor": []}),
            json!({"$not": {"$or": []}}),
            json!({"a": {"$and": []}}),
        ] {
            assert!(!m(nothing.clone(), doc.clone()), "{nothing}");
        }
        assert!(m(json!({"$and": [{"$or": []}]}), doc.clone()));
        assert!(m(json!({"a": 1, "$and": []}), doc.clone()));
        assert!(
            !m(json!({"$and": [{}]}), doc.clone()),
            "a nested {{}} is equality with {{}}"
        );
        assert!(m(json!({"$and": [{"$not": {}}]}), doc.clone()));
        assert!(m(
            json!({"a": {"$exists": true}, "b": {}}),
            json!({"a": 1, "b": {}})
        ));
    }

    #[test]
    fn exists_false_needs_a_missing_key_not_a_bad_path() {
        let q = json!({"o.b": {"$exists": false}});
        assert!(m(q.clone(), json!({})));
        assert!(m(q.clone(), json!({"o": {}})));
        assert!(!m(q.clone(), json!({"o": null})), "o is a scalar: bad path");
        assert!(!m(q, json!({"o": [1]})), "b is no index: bad path");
        assert!(!m(json!({"a.5": {"$exists": false}}), json!({"a": [1]})));
        let stored = Selector::parse(&json!({"_id.a": {"$exists": false}})).unwrap();
        let rev: Rev = "1-0123456789abcdef0123456789abcdef".parse().unwrap();
        assert!(
            !stored.matches_stored("x", &rev, &Map::new()),
            "_id is a string"
        );
        assert!(
            m(json!({"a.+0": 1}), json!({"a": [1]})),
            "Erlang integers take a sign"
        );
        assert!(m(json!({"a.-0": 1}), json!({"a": [1]})), "-0 is 0");
        assert!(!m(json!({"a.-1": {"$exists": false}}), json!({"a": [1]})));
    }

    #[test]
    fn an_empty_key_is_the_whole_document() {
        let doc = json!({"_id": "b", "_rev": "1-x", "a": 1});
        assert!(m(
            json!({"$and": [{"": {"$gt": {"_id": "a"}}}]}),
            doc.clone()
        ));
        assert!(!m(json!({"$and": [{"": {"$gt": {"_id": "c"}}}]}), doc));
        for bad in [json!({"": 1}), json!({"$not": {}})] {
            assert!(matches!(
                Selector::parse(&bad),
                Err(Error::InvalidQuery { .. })
            ));
        }
    }
}
