//! Selector JSON to [`Cond`]: CouchDB's `norm_ops` (operators checked, implicit `$eq` and
//! `$and`) and `norm_fields` (field names pushed down through combinators into the field
//! conditions) in one pass.

use serde_json::{Map, Value};

use super::{Cond, JsonType, Op, invalid, split_path};
use crate::Result;
use crate::rev::is_integer_text;

/// The whole selector, a non-empty object.
pub(super) fn selector(map: &Map<String, Value>) -> Result<Cond> {
    object(map, &[])
}

/// An object at `prefix`: each key is an operator or a field relative to `prefix`; several
/// keys are an implicit `$and`. An empty object is a bare value to CouchDB: equality with
/// `{}` at `prefix`.
fn object(map: &Map<String, Value>, prefix: &[String]) -> Result<Cond> {
    if map.is_empty() {
        return Ok(Cond::Field {
            path: prefix.to_vec(),
            op: Op::Eq(Value::Object(Map::new())),
        });
    }
    let mut conds = Vec::with_capacity(map.len());
    for (key, value) in map {
        if key.starts_with('$') {
            conds.push(operator(key, value, prefix)?);
        } else {
            conds.push(field_value(value, &join(prefix, key))?);
        }
    }
    Ok(if conds.len() == 1 {
        conds.pop().unwrap_or(Cond::And(Vec::new()))
    } else {
        Cond::And(conds)
    })
}

/// `prefix` extended by a key. CouchDB joins names with a dot, so an empty key is the value
/// at `prefix` itself at the top (the whole document or element), and an empty segment below.
fn join(prefix: &[String], key: &str) -> Vec<String> {
    if key.is_empty() && prefix.is_empty() {
        return Vec::new();
    }
    let mut path = prefix.to_vec();
    path.extend(split_path(key));
    path
}

/// The value given for a field: an object (operators and/or nested field names), or a literal.
fn field_value(value: &Value, path: &[String]) -> Result<Cond> {
    match value {
        Value::Object(map) => object(map, path),
        literal => Ok(Cond::Field {
            path: path.to_vec(),
            op: Op::Eq(literal.clone()),
        }),
    }
}

/// The items of `$and`, `$or` or `$nor`: selectors, or bare values (equality at `prefix`).
fn items(op: &str, value: &Value, prefix: &[String]) -> Result<Vec<Cond>> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid(format!("{op} takes an array of selectors, got {value}")))?;
    items.iter().map(|item| field_value(item, prefix)).collect()
}

fn values(op: &str, value: &Value) -> Result<Vec<Value>> {
    value
        .as_array()
        .cloned()
        .ok_or_else(|| invalid(format!("{op} takes an array, got {value}")))
}

/// The argument of `$elemMatch`, `$allMatch` and `$keyMapMatch`: a selector on the element.
fn sub_selector(op: &str, value: &Value) -> Result<Box<Cond>> {
    match value {
        Value::Object(map) => Ok(Box::new(object(map, &[])?)),
        other => Err(invalid(format!(
            "{op} takes a selector (an object), got {other}"
        ))),
    }
}

/// An integer argument, `None` beyond 128 bits.
fn integer(op: &str, value: &Value) -> Result<Option<i128>> {
    match value {
        Value::Number(n) if is_integer_text(n.as_str()) => Ok(n.as_str().parse().ok()),
        other => Err(invalid(format!("{op} takes integers, got {other}"))),
    }
}

fn operator(op: &str, value: &Value, prefix: &[String]) -> Result<Cond> {
    let field = |op: Op| Cond::Field {
        path: prefix.to_vec(),
        op,
    };
    Ok(match op {
        "$and" => Cond::And(items(op, value, prefix)?),
        "$or" => Cond::Or(items(op, value, prefix)?),
        "$nor" => Cond::Nor(items(op, value, prefix)?),
        "$not" => match value {
            Value::Object(map) => Cond::Not(Box::new(object(map, prefix)?)),
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
        "$exists" => field(Op::Exists(value.as_bool().ok_or_else(|| {
            invalid(format!("$exists takes true or false, got {value}"))
        })?)),
        "$type" => {
            let name = value
                .as_str()
                .ok_or_else(|| invalid(format!("$type takes a type name, got {value}")))?;
            field(Op::Type(match name {
                "null" => Some(JsonType::Null),
                "boolean" => Some(JsonType::Boolean),
                "number" => Some(JsonType::Number),
                "string" => Some(JsonType::String),
                "array" => Some(JsonType::Array),
                "object" => Some(JsonType::Object),
                // CouchDB accepts any name; no value has an unknown type.
                _ => None,
            }))
        }
        "$size" => match integer(op, value)? {
            Some(n) if n < 0 => return Err(invalid(format!("$size takes a size, got {n}"))),
            n => field(Op::Size(n.and_then(|n| u64::try_from(n).ok()))),
        },
        "$mod" => {
            let args = values(op, value)?;
            let [divisor, remainder] = args.as_slice() else {
                return Err(invalid(format!(
                    "$mod takes [divisor, remainder], got {value}"
                )));
            };
            let too_large = || invalid(format!("$mod: {value} is beyond 128-bit integers"));
            let d = integer(op, divisor)?.ok_or_else(too_large)?;
            let r = integer(op, remainder)?.ok_or_else(too_large)?;
            if d == 0 {
                return Err(invalid("$mod: the divisor must not be 0"));
            }
            field(Op::Mod(d, r))
        }
        "$regex" => {
            let pattern = value
                .as_str()
                .ok_or_else(|| invalid(format!("$regex takes a string, got {value}")))?;
            field(Op::Regex(regex::Regex::new(pattern).map_err(|e| {
                invalid(format!(
                    "$regex {pattern:?} is not a valid regular expression: {e}"
                ))
            })?))
        }
        "$beginsWith" => field(Op::BeginsWith(
            value
                .as_str()
                .ok_or_else(|| invalid(format!("$beginsWith takes a string, got {value}")))?
                .to_owned(),
        )),
        "$elemMatch" => field(Op::ElemMatch(sub_selector(op, value)?)),
        "$allMatch" => field(Op::AllMatch(sub_selector(op, value)?)),
        "$keyMapMatch" => field(Op::KeyMapMatch(sub_selector(op, value)?)),
        "$text" => {
            return Err(invalid(
                "$text needs a text index, which docstore does not have (CouchDB without one \
                 returns every document)",
            ));
        }
        "$where" | "$geoWithin" | "$geoIntersects" | "$near" | "$nearSphere" => {
            return Err(invalid(format!(
                "unsupported operator {op:?} (CouchDB does not support it either)"
            )));
        }
        other => {
            return Err(invalid(format!(
                "unknown operator {other:?}; supported: $eq $ne $gt $gte $lt $lte $in $nin \
                 $exists $type $size $mod $regex $beginsWith $all $elemMatch $allMatch \
                 $keyMapMatch $and $or $nor $not"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::Selector;
    use super::super::tests::m;
    use crate::Error;
    use serde_json::{Value, json};

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
    fn operators_and_fields_mix_as_on_couchdb() {
        let doc = json!({"x": {"b": 2}});
        assert!(m(json!({"x": {"$gt": 1, "b": 2}}), doc.clone()));
        assert!(!m(json!({"x": {"$gt": 1, "b": 3}}), doc.clone()));
        assert!(m(json!({"x": {"$or": [1, {"b": 2}]}}), doc.clone()));
        assert!(
            !m(json!({"$and": [1]}), doc),
            "a bare item is whole-document equality"
        );
    }

    #[test]
    fn accepted_where_couchdb_accepts() {
        let doc = json!({"x": 1, "arr": [1]});
        assert!(!m(json!({"x": {"$type": "int"}}), doc.clone()));
        assert!(m(json!({"x": {"$not": {"$type": "int"}}}), doc.clone()));
        assert!(!m(
            json!({"arr": {"$size": 100000000000000000000u128}}),
            doc.clone()
        ));
        assert!(m(
            json!({"x": {"$mod": [100000000000000000000u128, 1]}}),
            doc
        ));
    }

    #[test]
    fn bad_queries_name_the_problem() {
        assert!(bad(json!({"a": {"$foo": 1}})).contains("$foo"));
        assert!(bad(json!({"a": {"$in": 1}})).contains("$in"));
        assert!(bad(json!({"a": {"$mod": [0, 1]}})).contains("divisor"));
        assert!(bad(json!({"a": {"$mod": [1]}})).contains("$mod"));
        assert!(bad(json!({"a": {"$mod": [2.0, 1]}})).contains("$mod"));
        assert!(bad(json!({"a": {"$regex": "("}})).contains("$regex"));
        assert!(bad(json!({"a": {"$type": 5}})).contains("$type"));
        assert!(bad(json!({"a": {"$size": -1}})).contains("$size"));
        assert!(bad(json!({"a": {"$size": 1.0}})).contains("$size"));
        assert!(bad(json!({"a": {"$beginsWith": 5}})).contains("$beginsWith"));
        assert!(bad(json!({"a": {"$not": 5}})).contains("$not"));
        assert!(bad(json!({"a": {"$elemMatch": 5}})).contains("$elemMatch"));
        assert!(bad(json!({"a": {"$exists": 1}})).contains("$exists"));
        assert!(bad(json!({"$or": {"a": 1}})).contains("$or"));
        assert!(bad(json!({"$text": "a"})).contains("$text"));
        assert!(bad(json!({"a": {"$where": 1}})).contains("$where"));
        assert!(bad(json!([1])).contains("object"));
    }
}
