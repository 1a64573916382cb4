//! `collate` against the orders and `$gt` results a genuine CouchDB 3.5 produced
//! (`testdata/couchdb-collation.json`).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use docstore_providers::collate::{compare, compare_strings};
use serde_json::Value;

fn data() -> Value {
    serde_json::from_str(include_str!("../../testdata/couchdb-collation.json")).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Every earlier element is <= every later one, and the order is not all ties.
fn assert_recorded_order<T: std::fmt::Debug>(items: &[T], cmp: impl Fn(&T, &T) -> Ordering) {
    let mut strict = 0;
    for i in 0..items.len() {
        for j in i + 1..items.len() {
            let o = cmp(&items[i], &items[j]);
            assert_ne!(
                o,
                Ordering::Greater,
                "recorded order has {:?} before {:?}",
                items[i],
                items[j]
            );
            strict += usize::from(o == Ordering::Less);
        }
    }
    assert!(
        strict > items.len(),
        "the comparison found almost everything equal"
    );
}

#[test]
fn view_order_of_89_strings() {
    let order = strings(&data()["strings_view_order"]);
    assert_eq!(order.len(), 89);
    assert_recorded_order(&order, |a, b| compare_strings(a, b));
}

#[test]
fn find_sort_order_of_the_same_strings() {
    let order = strings(&data()["strings_find_sort_order"]);
    assert_recorded_order(&order, |a, b| compare_strings(a, b));
}

#[test]
fn mixed_type_view_order() {
    let order: Vec<Value> = data()["mixed_types_view_order"].as_array().unwrap().clone();
    assert_eq!(order.len(), 31);
    assert_recorded_order(&order, compare);
}

#[test]
fn find_gt_results_for_five_pivots() {
    let data = data();
    let all = strings(&data["strings_view_order"]);
    let pivots = data["find_gt"].as_object().unwrap();
    assert_eq!(pivots.len(), 5);
    for (pivot, expected) in pivots {
        let expected: BTreeSet<String> = strings(expected).into_iter().collect();
        let ours: BTreeSet<String> = all
            .iter()
            .filter(|s| compare_strings(s, pivot) == Ordering::Greater)
            .cloned()
            .collect();
        assert_eq!(ours, expected, "$gt {pivot:?}");
    }
}
