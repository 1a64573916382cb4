//! CouchDB's collation of JSON values: the order `find` sorts by and compares with.
//!
//! Rules (CouchDB 3.5, checked against `testdata/couchdb-collation.json`):
//! - by type first: `null` < `false` < `true` < numbers < strings < arrays < objects;
//! - numbers by value (`1` == `1.0`); integers of any size compare exactly with each other;
//! - strings with ICU's root collator at its defaults (tertiary strength, non-ignorable
//!   punctuation), here ICU4X's: `10 < 9 < a < A < a b < ab < b < B < e < E < é`. Strings the
//!   collator finds equal (canonically equivalent forms) compare equal;
//! - arrays element by element, a shorter prefix first;
//! - objects pair by pair in their stored key order (key, then value), fewer pairs first.
//!
//! Known residual differences from CouchDB's ICU (documented in DESIGN.md): newer Unicode data
//! places some CJK ideographs and rare symbols differently, and ICU4X always normalizes.

use std::cmp::Ordering;
use std::sync::LazyLock;

use icu_collator::options::CollatorOptions;
use icu_collator::{Collator, CollatorBorrowed, CollatorPreferences};
use serde_json::{Map, Number, Value};

use crate::rev::is_integer_text;

/// The root collator. Its data is compiled into the binary, so building it cannot fail for
/// any input; a failure would be a build defect, hence the `expect`.
static ROOT: LazyLock<CollatorBorrowed<'static>> = LazyLock::new(|| {
    Collator::try_new(CollatorPreferences::default(), CollatorOptions::default())
        .expect("ICU4X's compiled root collation data is present")
});

/// Compares two strings as CouchDB does.
pub fn compare_strings(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    ROOT.compare(a, b)
}

/// Appends an order-preserving byte key of a JSON value: for any values `a < b` in
/// [`compare`]'s order, `key(a) <= key(b)` byte-wise. It is coarser than the order (all arrays
/// share one key, as do all objects, and numbers are keyed by their nearest `f64`), so it can
/// only narrow a scan; exact filtering and ordering still use [`compare`]. Strings are keyed
/// by the collator's sort key with `0x00`/`0x01` escaped, so the key never holds a `0x00`
/// byte and a terminating `0x00` keeps shorter keys first.
pub fn write_order_key(value: &Value, out: &mut Vec<u8>) {
    out.push(0x10 * (type_rank(value) + 1));
    match value {
        Value::Number(n) => {
            let f = n.as_str().parse::<f64>().unwrap_or(0.0);
            // -0.0 and 0.0 are the same number.
            let f = if f == 0.0 { 0.0 } else { f };
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::String(s) => {
            let mut key = Vec::with_capacity(s.len() * 2);
            let Ok(()) = ROOT.write_sort_key_to(s.as_str(), &mut key);
            for b in key {
                match b {
                    0x00 => out.extend_from_slice(&[0x01, 0x01]),
                    0x01 => out.extend_from_slice(&[0x01, 0x02]),
                    b => out.push(b),
                }
            }
            out.push(0x00);
        }
        _ => {}
    }
}

/// Compares two JSON values in CouchDB's collation order.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => compare_strings(x, y),
        (Value::Array(x), Value::Array(y)) => compare_arrays(x, y),
        (Value::Object(x), Value::Object(y)) => compare_objects(x, y),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

fn compare_arrays(a: &[Value], b: &[Value]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| compare(x, y))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

fn compare_objects(a: &Map<String, Value>, b: &Map<String, Value>) -> Ordering {
    a.iter()
        .zip(b)
        .map(|((ka, va), (kb, vb))| compare_strings(ka, kb).then_with(|| compare(va, vb)))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// Numbers by value: integer texts exactly (any size), anything else as 64-bit floats.
pub fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    let (ta, tb) = (a.as_str(), b.as_str());
    if is_integer_text(ta) && is_integer_text(tb) {
        return compare_integer_texts(ta, tb);
    }
    let (fa, fb) = (ta.parse::<f64>(), tb.parse::<f64>());
    match (fa, fb) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        // Validation keeps unparseable numbers out of stored documents.
        _ => ta.cmp(tb),
    }
}

/// Compares two decimal integer texts (optional leading `-`) exactly.
fn compare_integer_texts(a: &str, b: &str) -> Ordering {
    let split = |t: &str| -> (bool, String) {
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let digits = digits.trim_start_matches('0');
        (negative && !digits.is_empty(), digits.to_owned())
    };
    let ((na, da), (nb, db)) = (split(a), split(b));
    let magnitude = da.len().cmp(&db.len()).then_with(|| da.cmp(&db));
    match (na, nb) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_compare_exactly_at_any_size() {
        let n = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        assert_eq!(
            compare(&n("9007199254740993"), &n("9007199254740992")),
            Ordering::Greater
        );
        assert_eq!(
            compare(&n("-123456789012345678901234567890"), &n("-3")),
            Ordering::Less
        );
        assert_eq!(compare(&n("1"), &n("1.0")), Ordering::Equal);
        assert_eq!(compare(&n("-0"), &n("0")), Ordering::Equal);
        assert_eq!(compare(&n("2.5"), &n("10")), Ordering::Less);
    }

    #[test]
    fn order_keys_never_contradict_the_collation() {
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/couchdb-collation.json"
        );
        let text = std::fs::read_to_string(file).expect("recorded collation vectors");
        let recorded: Value = serde_json::from_str(&text).expect("valid JSON");
        let mut values: Vec<Value> = Vec::new();
        fn gather(v: &Value, out: &mut Vec<Value>) {
            match v {
                Value::Array(items) => {
                    out.extend(items.iter().cloned());
                    items.iter().for_each(|i| gather(i, out));
                }
                Value::Object(map) => map.values().for_each(|i| gather(i, out)),
                _ => {}
            }
        }
        gather(&recorded, &mut values);
        values.extend(
            [
                "0",
                "-0.0",
                "1",
                "1.5",
                "-3",
                "1e300",
                "-1e300",
                "123456789012345678901234567890",
            ]
            .iter()
            .map(|n| serde_json::from_str::<Value>(n).expect("number")),
        );
        values.push(Value::String("a\u{0}b\u{1}".into()));
        assert!(values.len() > 100, "the recorded vectors were read");
        let key = |v: &Value| {
            let mut k = Vec::new();
            write_order_key(v, &mut k);
            k
        };
        for a in &values {
            for b in &values {
                if compare(a, b) == Ordering::Less {
                    assert!(key(a) <= key(b), "{a} < {b} but its key is greater");
                }
                if compare(a, b) == Ordering::Equal && !a.is_array() && !a.is_object() {
                    assert_eq!(key(a), key(b), "{a} == {b} but keys differ");
                }
            }
        }
    }

    #[test]
    fn types_order_before_values() {
        let order = [
            json!(null),
            json!(false),
            json!(true),
            json!(-5),
            json!(""),
            json!([]),
            json!({}),
        ];
        for pair in order.windows(2) {
            assert_eq!(compare(&pair[0], &pair[1]), Ordering::Less, "{pair:?}");
        }
    }
}
