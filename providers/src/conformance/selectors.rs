//! Queries: what `find` selectors match, normalized and evaluated as CouchDB 3.5 does
//! (operators, paths, negations, empty and mixed selectors, collation).

use std::sync::Arc;

use serde_json::{Value, json};

use super::queries::{find_corpus, found, selects};
use super::{Service, doc};
use crate::testing::{drop_db, unique_db};
use crate::{Document, FindQuery};

/// Implicit equality, `$eq`, `$and`, dotted paths and nested objects as paths, `null`;
/// results in id order; deleted documents never match.
pub async fn find_selects_by_equality_and_paths(svc: &Service) {
    let db = find_corpus(svc, "find-eq").await;
    selects(svc, &db, json!({"name": "bob"}), &["bob"]).await;
    selects(svc, &db, json!({"name": {"$eq": "bob"}}), &["bob"]).await;
    selects(
        svc,
        &db,
        json!({"address.city": "oslo"}),
        &["alice", "carol"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"address": {"city": "oslo"}}),
        &["alice", "carol"],
    )
    .await;
    selects(svc, &db, json!({"age": 25, "active": false}), &["bob"]).await;
    selects(svc, &db, json!({"nick": null}), &["carol"]).await;
    selects(svc, &db, json!({"name": "gone"}), &[]).await;
    let all = ["alice", "bob", "carol", "dave", "erin", "frank"];
    selects(svc, &db, json!({}), &all).await;
    selects(
        svc,
        &db,
        json!({"$and": [{"age": {"$gte": 25}}, {"age": {"$lt": 40}}]}),
        &["alice", "bob", "frank"],
    )
    .await;
    drop_db(svc, &db).await;
}

/// `$gt $gte $lt $lte` compare in CouchDB's collation across types (a string is greater
/// than every number, `true` greater than `false`).
pub async fn find_comparisons_collate_across_types(svc: &Service) {
    let db = find_corpus(svc, "find-cmp").await;
    selects(
        svc,
        &db,
        json!({"age": {"$gt": 30}}),
        &["alice", "carol", "erin"],
    )
    .await;
    selects(svc, &db, json!({"age": {"$lte": 25}}), &["bob", "frank"]).await;
    selects(
        svc,
        &db,
        json!({"age": {"$lt": "a"}}),
        &["alice", "bob", "carol", "frank"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"score": {"$gte": 7.5}}),
        &["alice", "dave"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"score": {"$gt": 3.0, "$lt": 10}}),
        &["alice"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"active": {"$gt": false}}),
        &["alice", "carol"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"_id": {"$gt": "c"}}),
        &["carol", "dave", "erin", "frank"],
    )
    .await;
    selects(svc, &db, json!({"age": {"$gt": 50, "$lt": 20}}), &[]).await;
    drop_db(svc, &db).await;
}

/// `$in $nin $all $size $elemMatch $allMatch` (`$in`/`$nin` look into arrays).
pub async fn find_array_operators(svc: &Service) {
    let db = find_corpus(svc, "find-arr").await;
    selects(svc, &db, json!({"tags": {"$in": ["z"]}}), &["dave"]).await;
    selects(
        svc,
        &db,
        json!({"tags": {"$in": ["x"]}}),
        &["alice", "dave", "erin"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"age": {"$in": [25, 42]}}),
        &["bob", "carol", "frank"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"tags": {"$nin": ["x"]}}),
        &["bob", "carol"],
    )
    .await;
    selects(svc, &db, json!({"tags": {"$all": ["x", "y"]}}), &["alice"]).await;
    selects(svc, &db, json!({"tags": {"$size": 0}}), &["carol"]).await;
    selects(svc, &db, json!({"tags": {"$size": 2}}), &["alice", "dave"]).await;
    selects(
        svc,
        &db,
        json!({"scores": {"$elemMatch": {"k": "a", "v": {"$gt": 5}}}}),
        &["frank"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"scores": {"$allMatch": {"v": {"$gte": 1}}}}),
        &["erin", "frank"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"scores": {"$allMatch": {"v": {"$gte": 2}}}}),
        &["frank"],
    )
    .await;
    drop_db(svc, &db).await;
}

/// `$type $exists $mod $regex`.
pub async fn find_type_exists_mod_regex(svc: &Service) {
    let db = find_corpus(svc, "find-type").await;
    selects(svc, &db, json!({"age": {"$type": "string"}}), &["erin"]).await;
    selects(
        svc,
        &db,
        json!({"score": {"$type": "number"}}),
        &["alice", "bob", "dave"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"tags": {"$type": "array"}}),
        &["alice", "bob", "carol", "dave"],
    )
    .await;
    selects(svc, &db, json!({"nick": {"$type": "null"}}), &["carol"]).await;
    selects(svc, &db, json!({"age": {"$exists": false}}), &["dave"]).await;
    selects(svc, &db, json!({"nick": {"$exists": true}}), &["carol"]).await;
    selects(
        svc,
        &db,
        json!({"age": {"$mod": [5, 0]}}),
        &["bob", "frank"],
    )
    .await;
    selects(svc, &db, json!({"age": {"$mod": [10, 2]}}), &["carol"]).await;
    selects(
        svc,
        &db,
        json!({"name": {"$regex": "^[a-c]"}}),
        &["alice", "bob", "carol"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"address.zip": {"$regex": "0$"}}),
        &["alice", "frank"],
    )
    .await;
    drop_db(svc, &db).await;
}

/// `$or $nor $not`, and combinations with field conditions.
pub async fn find_logical_operators(svc: &Service) {
    let db = find_corpus(svc, "find-logic").await;
    selects(
        svc,
        &db,
        json!({"$or": [{"name": "bob"}, {"age": 42}]}),
        &["bob", "carol"],
    )
    .await;
    // `$nor` is an `$and` of negations, and a negation needs its field: no document has both
    // `age` and `active` without one of the two values (dave and erin lack `active`).
    selects(
        svc,
        &db,
        json!({"$nor": [{"age": 25}, {"active": true}]}),
        &[],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"$nor": [{"age": 25}, {"name": "alice"}]}),
        &["carol", "erin"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"name": {"$in": ["bob", "erin", "dave"]}, "age": {"$exists": true}}),
        &["bob", "erin"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"$and": [{"$or": [{"age": 25}, {"age": 31}]}, {"$not": {"name": "bob"}}]}),
        &["alice", "frank"],
    )
    .await;
    drop_db(svc, &db).await;
}

/// A missing field matches nothing but `$exists: false` — not `$ne`, not `$lt` (even when
/// an index serves the query) — and a numeric path segment indexes arrays only (a string
/// has no elements).
pub async fn find_missing_fields_match_only_exists_false(svc: &Service) {
    let db = find_corpus(svc, "find-missing").await;
    selects(
        svc,
        &db,
        json!({"age": {"$ne": 25}}),
        &["alice", "carol", "erin"],
    )
    .await;
    selects(svc, &db, json!({"nick": {"$ne": 1}}), &["carol"]).await;
    selects(svc, &db, json!({"tags.0": "x"}), &["alice", "dave"]).await;
    svc.ensure_index(&db, &["age"], "by-age")
        .await
        .expect("index");
    assert_eq!(
        found(
            svc,
            &db,
            json!({"selector": {"age": {"$lt": 40}}, "limit": 2})
        )
        .await,
        ["bob", "frank"]
    );
    drop_db(svc, &db).await;
}

/// `$not` inside a field (`{"age": {"$not": {"$gt": 30}}}`) negates the condition, so
/// documents without the field match.
pub async fn find_not_inside_a_field(svc: &Service) {
    let db = find_corpus(svc, "find-not").await;
    selects(
        svc,
        &db,
        json!({"age": {"$not": {"$gt": 30}}}),
        &["bob", "frank"],
    )
    .await;
    drop_db(svc, &db).await;
}

/// Strings and mixed types sort and compare exactly as a genuine CouchDB 3.5 did
/// (`testdata/couchdb-collation.json`): ICU root collation, types in CouchDB's order.
pub async fn find_collation_matches_recorded_couchdb(svc: &Service) {
    let data: Value =
        serde_json::from_str(include_str!("../../../testdata/couchdb-collation.json"))
            .expect("recorded collation parses");
    let strings = data["strings_view_order"].as_array().expect("strings");
    let db = unique_db("find-collate");
    // Ids in recorded order, so ties (canonically equal strings) break the recorded way.
    let docs: Vec<Document> = strings
        .iter()
        .enumerate()
        .map(|(n, s)| doc(json!({"_id": format!("s{n:03}"), "v": s})))
        .chain(
            data["mixed_types_view_order"]
                .as_array()
                .expect("mixed")
                .iter()
                .enumerate()
                .map(|(n, v)| doc(json!({"_id": format!("m{n:03}"), "m": v}))),
        )
        .collect();
    for r in svc.save_many(&db, docs).await.expect("bulk") {
        r.expect("saved");
    }
    svc.ensure_index(&db, &["v"], "by-v").await.expect("index");
    svc.ensure_index(&db, &["m"], "by-m").await.expect("index");
    let values = |field: &'static str, query: Value| {
        let svc = Arc::clone(svc);
        let db = db.clone();
        async move {
            let query = FindQuery::from_json(&query).expect("valid");
            svc.find(&db, &query)
                .await
                .expect("find")
                .iter()
                .map(|d| d.get(field).cloned().unwrap_or(Value::Null))
                .collect::<Vec<Value>>()
        }
    };
    assert_eq!(
        values("v", json!({"selector": {}, "sort": ["v"]})).await,
        *data["strings_find_sort_order"].as_array().expect("order")
    );
    let mixed = values("m", json!({"selector": {}, "sort": ["m"]})).await;
    let recorded = data["mixed_types_view_order"].as_array().expect("mixed");
    assert_eq!(mixed.len(), recorded.len());
    for (got, want) in mixed.iter().zip(recorded) {
        assert_eq!(
            crate::collate::compare(got, want),
            std::cmp::Ordering::Equal,
            "{got} vs {want}"
        );
    }
    for (pivot, expected) in data["find_gt"].as_object().expect("find_gt") {
        let mut got = values("v", json!({"selector": {"v": {"$gt": pivot}}})).await;
        let mut want = expected.as_array().expect("list").clone();
        let key = |v: &Value| v.as_str().unwrap_or("").to_owned();
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got, want, "$gt {pivot}");
    }
    drop_db(svc, &db).await;
}

/// Negations are pushed down to the fields as CouchDB normalizes them (`_explain` shows the
/// same form), so a negated condition needs its field; inside `$elemMatch` nothing is
/// normalized: `$not` there is a plain negation, and a `$nor` there matches nothing.
pub async fn find_negations_are_normalized(svc: &Service) {
    let db = find_corpus(svc, "find-negations").await;
    // De Morgan: age <= 20 (none; "unknown" sorts after numbers) or active != true (bob).
    selects(
        svc,
        &db,
        json!({"$not": {"$and": [{"age": {"$gt": 20}}, {"active": true}]}}),
        &["bob"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"age": {"$not": {"$not": {"$gt": 30}}}}),
        &["alice", "carol", "erin"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"$not": {"nick": {"$exists": true}}}),
        &["alice", "bob", "dave", "erin", "frank"],
    )
    .await;
    // No inverse for `$regex` or `$size`: a field-level `$not`, which still needs the field.
    selects(
        svc,
        &db,
        json!({"$not": {"name": {"$regex": "^a"}}}),
        &["bob", "carol", "dave", "erin", "frank"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"tags": {"$not": {"$size": 1}}}),
        &["alice", "carol", "dave", "erin"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"scores": {"$elemMatch": {"$not": {"x": 1}}}}),
        &["erin", "frank"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"scores": {"$elemMatch": {"$nor": [{"k": "z"}]}}}),
        &[],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"$not": {"scores": {"$elemMatch": {"$nor": [{"k": "z"}]}}}}),
        &["erin", "frank"],
    )
    .await;
    drop_db(svc, &db).await;
}

/// Empty combinators, nested `{}`, bare values in combinators and operators mixed with field
/// names mean what they mean on CouchDB.
pub async fn find_empty_and_mixed_selectors(svc: &Service) {
    let db = find_corpus(svc, "find-empty").await;
    // As a whole, an empty `$and`/`$or` (or what normalizes to one) matches nothing...
    for nothing in [
        json!({"$or": []}),
        json!({"$and": []}),
        json!({"$nor": []}),
        json!({"name": {"$and": []}}),
        json!({"$not": {"$or": []}}),
    ] {
        selects(svc, &db, nothing, &[]).await;
    }
    // ...nested, it is true.
    selects(
        svc,
        &db,
        json!({"$and": [{"$or": []}, {"age": 25}]}),
        &["bob", "frank"],
    )
    .await;
    // A nested `{}` is equality of the whole document with `{}`: false; its negation true.
    selects(
        svc,
        &db,
        json!({"$or": [{}, {"age": 25}]}),
        &["bob", "frank"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"$and": [{"$not": {}}, {"age": 42}]}),
        &["carol"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"address": {"$exists": true, "city": "oslo"}}),
        &["alice", "carol"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"age": {"$or": [25, 42]}}),
        &["bob", "carol", "frank"],
    )
    .await;
    selects(svc, &db, json!({"scores": {"$elemMatch": {}}}), &[]).await;
    drop_db(svc, &db).await;
}

/// A path that runs into a scalar, or into an array with anything but an index it has, is not
/// a missing field: `$exists: false` matches only a key missing from an object. Array index
/// segments are Erlang integers (`+1`, `-0`).
pub async fn find_paths_tell_missing_from_bad(svc: &Service) {
    let db = unique_db("find-paths");
    let docs = [
        json!({"_id": "a", "o": {"b": 1}}),
        json!({"_id": "b", "o": null}),
        json!({"_id": "c", "o": {}}),
        json!({"_id": "d"}),
        json!({"_id": "e", "o": [1]}),
        json!({"_id": "f", "arr": [10, 20]}),
    ];
    for r in svc
        .save_many(&db, docs.into_iter().map(doc).collect())
        .await
        .expect("saves")
    {
        r.expect("saved");
    }
    selects(
        svc,
        &db,
        json!({"o.b": {"$exists": false}}),
        &["c", "d", "f"],
    )
    .await;
    selects(
        svc,
        &db,
        json!({"arr.5": {"$exists": false}}),
        &["a", "b", "c", "d", "e"],
    )
    .await;
    selects(svc, &db, json!({"arr.1": 20}), &["f"]).await;
    selects(svc, &db, json!({"arr.+1": 20}), &["f"]).await;
    selects(svc, &db, json!({"arr.-0": 10}), &["f"]).await;
    selects(svc, &db, json!({"_id.x": {"$exists": false}}), &[]).await;
    drop_db(svc, &db).await;
}

/// CouchDB 3.5's other operators and argument rules: `$beginsWith` (by bytes),
/// `$keyMapMatch`, `$all` by exact terms (`1` is not `1.0`, but a whole array compares by
/// value), unknown `$type` names and huge `$size`s (accepted, match nothing), and `_id`
/// compared as a raw Erlang term (a string is greater than any array or object).
pub async fn find_couchdb_3_5_operators(svc: &Service) {
    let db = find_corpus(svc, "find-ops35").await;
    selects(svc, &db, json!({"name": {"$beginsWith": "a"}}), &["alice"]).await;
    selects(
        svc,
        &db,
        json!({"address": {"$keyMapMatch": {"$eq": "zip"}}}),
        &["alice", "frank"],
    )
    .await;
    selects(svc, &db, json!({"age": {"$type": "int"}}), &[]).await;
    selects(
        svc,
        &db,
        json!({"age": {"$not": {"$type": "int"}}}),
        &["alice", "bob", "carol", "erin", "frank"],
    )
    .await;
    let huge: serde_json::Value =
        serde_json::from_str(r#"{"tags": {"$size": 100000000000000000000}}"#).expect("json");
    selects(svc, &db, huge, &[]).await;
    selects(
        svc,
        &db,
        json!({"_id": {"$gt": [1]}}),
        &["alice", "bob", "carol", "dave", "erin", "frank"],
    )
    .await;
    selects(svc, &db, json!({"_id": {"$lt": {"a": 1}}}), &[]).await;
    drop_db(svc, &db).await;

    let db = unique_db("find-all-terms");
    let docs = [
        json!({"_id": "ints", "nums": [1, 2]}),
        json!({"_id": "floats", "nums": [1.0, 2.0]}),
    ];
    for r in svc
        .save_many(&db, docs.into_iter().map(doc).collect())
        .await
        .expect("saves")
    {
        r.expect("saved");
    }
    selects(svc, &db, json!({"nums": {"$all": [1]}}), &["ints"]).await;
    selects(svc, &db, json!({"nums": {"$all": [2.0]}}), &["floats"]).await;
    selects(
        svc,
        &db,
        json!({"nums": {"$all": [[1, 2]]}}),
        &["floats", "ints"],
    )
    .await;
    drop_db(svc, &db).await;
}
