//! Queries: `find` selectors, fields, sort, limit and skip, errors and collation, and
//! `ensure_index`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Kind, Service, doc, ids, kind};
use crate::testing::{drop_db, unique_db};
use crate::{Document, Error, FindQuery, IndexStatus, NO_INDEX_FOR_SORT};

// ---------------------------------------------------------------------------------------
// Queries (`find`, `ensure_index`). The shared corpus keeps strings to lowercase ASCII, which
// every server orders alike; `find_collation_matches_recorded_couchdb` holds ICU order.

/// The query corpus: mixed types, nested objects, arrays, missing fields, one deleted doc.
async fn find_corpus(svc: &Service, tag: &str) -> String {
    let db = unique_db(tag);
    let docs = [
        json!({"_id": "alice", "name": "alice", "age": 31, "tags": ["x", "y"],
               "address": {"city": "oslo", "zip": "0150"}, "score": 7.5, "active": true}),
        json!({"_id": "bob", "name": "bob", "age": 25, "tags": ["y"],
               "address": {"city": "bergen"}, "score": 3, "active": false}),
        json!({"_id": "carol", "name": "carol", "age": 42, "tags": [],
               "address": {"city": "oslo"}, "active": true, "nick": null}),
        json!({"_id": "dave", "name": "dave", "tags": ["x", "z"], "score": 10}),
        json!({"_id": "erin", "name": "erin", "age": "unknown", "tags": "x",
               "scores": [{"k": "a", "v": 1}, {"k": "b", "v": 5}]}),
        json!({"_id": "frank", "name": "frank", "age": 25, "scores": [{"k": "a", "v": 9}],
               "address": {"city": "tromso", "zip": "9010"}}),
        json!({"_id": "gone", "name": "gone", "age": 30, "tags": ["x"]}),
    ];
    for result in svc
        .save_many(&db, docs.into_iter().map(doc).collect())
        .await
        .expect("corpus saves")
    {
        result.expect("corpus document saves");
    }
    svc.delete(&db, "gone").await.expect("delete");
    db
}

async fn found(svc: &Service, db: &str, query: Value) -> Vec<String> {
    let query = FindQuery::from_json(&query).expect("valid query");
    ids(&svc.find(db, &query).await.expect("find"))
}

async fn selects(svc: &Service, db: &str, selector: Value, expected: &[&str]) {
    let got = found(svc, db, json!({"selector": selector.clone()})).await;
    assert_eq!(got, expected, "selector {selector}");
}

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
    selects(
        svc,
        &db,
        json!({"$nor": [{"age": 25}, {"active": true}]}),
        &["dave", "erin"],
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

/// `fields` returns exactly the listed fields (nested ones nested), `_id`/`_rev` only if
/// listed.
pub async fn find_fields_returns_exactly_them(svc: &Service) {
    let db = find_corpus(svc, "find-fields").await;
    let run = |query: Value| {
        let svc = Arc::clone(svc);
        let db = db.clone();
        async move {
            let query = FindQuery::from_json(&query).expect("valid query");
            svc.find(&db, &query)
                .await
                .expect("find")
                .into_iter()
                .map(Document::into_value)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        run(json!({"selector": {"name": "alice"}, "fields": ["name", "address.city"]})).await,
        vec![json!({"name": "alice", "address": {"city": "oslo"}})]
    );
    assert_eq!(
        run(json!({"selector": {"name": {"$in": ["bob", "erin"]}}, "fields": ["_id", "age"]}))
            .await,
        vec![
            json!({"_id": "bob", "age": 25}),
            json!({"_id": "erin", "age": "unknown"})
        ]
    );
    assert_eq!(
        run(json!({"selector": {"name": "dave"}, "fields": ["missing"]})).await,
        vec![json!({})]
    );
    let whole = run(json!({"selector": {"name": "dave"}, "fields": []})).await;
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0]["_id"], "dave");
    assert!(
        whole[0]["_rev"]
            .as_str()
            .is_some_and(|r| r.starts_with("1-"))
    );
    assert_eq!(whole[0]["tags"], json!(["x", "z"]));
    drop_db(svc, &db).await;
}

/// A sort needs an index covering it — the same `InvalidQuery` on every provider, as
/// CouchDB refuses it — and then comes back in the index's order: documents without the
/// sort field are not in the index, ties go by id, `desc` reverses, and one query sorts one
/// way. Without a sort, a query the index serves also comes back in index order.
pub async fn find_sort_requires_an_index(svc: &Service) {
    let db = find_corpus(svc, "find-sort").await;
    let by_age = json!({"selector": {}, "sort": ["age"]});
    let err = svc
        .find(&db, &FindQuery::from_json(&by_age).expect("valid"))
        .await;
    assert_eq!(kind(&err), Kind::InvalidQuery);
    let message = err.expect_err("refused").to_string();
    assert!(message.contains(NO_INDEX_FOR_SORT), "{message}");
    let all = ["alice", "bob", "carol", "dave", "erin", "frank"];
    assert_eq!(
        found(
            svc,
            &db,
            json!({"selector": {"_id": {"$gt": null}}, "sort": ["_id"]})
        )
        .await,
        all
    );
    assert_eq!(
        found(
            svc,
            &db,
            json!({"selector": {"_id": {"$gt": null}}, "sort": [{"_id": "desc"}]})
        )
        .await,
        ["frank", "erin", "dave", "carol", "bob", "alice"]
    );

    assert_eq!(
        svc.ensure_index(&db, &["age"], "by-age")
            .await
            .expect("index"),
        IndexStatus::Created
    );
    assert_eq!(
        svc.ensure_index(&db, &["age"], "by-age")
            .await
            .expect("index"),
        IndexStatus::Exists
    );
    assert_eq!(
        found(svc, &db, by_age.clone()).await,
        ["bob", "frank", "alice", "carol", "erin"]
    );
    assert_eq!(
        found(svc, &db, json!({"selector": {}, "sort": [{"age": "desc"}]})).await,
        ["erin", "carol", "alice", "frank", "bob"]
    );
    assert_eq!(
        found(svc, &db, json!({"selector": {"age": {"$gte": 25}}})).await,
        ["bob", "frank", "alice", "carol", "erin"],
        "an index-served query comes back in index order"
    );
    let mixed = json!({"selector": {"age": {"$gt": 0}}, "sort": ["age", {"name": "desc"}]});
    assert_eq!(
        kind(
            &svc.find(&db, &FindQuery::from_json(&mixed).expect("valid"))
                .await
        ),
        Kind::InvalidQuery
    );

    // A compound index serves a sort on its fields in order.
    svc.ensure_index(&db, &["active", "age"], "active-age")
        .await
        .expect("index");
    assert_eq!(
        found(
            svc,
            &db,
            json!({"selector": {"active": {"$exists": true}}, "sort": ["active", "age"]})
        )
        .await,
        ["bob", "alice", "carol"]
    );
    drop_db(svc, &db).await;
}

/// `limit` and `skip`, with and without an index.
pub async fn find_limit_and_skip(svc: &Service) {
    let db = find_corpus(svc, "find-page").await;
    let page = |skip: usize, limit: Option<usize>| {
        let mut q = json!({"selector": {}, "skip": skip});
        if let Some(limit) = limit {
            q["limit"] = json!(limit);
        }
        q
    };
    assert_eq!(found(svc, &db, page(0, Some(2))).await, ["alice", "bob"]);
    assert_eq!(found(svc, &db, page(2, Some(2))).await, ["carol", "dave"]);
    assert_eq!(found(svc, &db, page(5, None)).await, ["frank"]);
    assert_eq!(found(svc, &db, page(10, None)).await, Vec::<String>::new());
    assert_eq!(
        found(svc, &db, page(0, Some(0))).await,
        Vec::<String>::new()
    );
    svc.ensure_index(&db, &["age"], "by-age")
        .await
        .expect("index");
    assert_eq!(
        found(
            svc,
            &db,
            json!({"selector": {"age": {"$gt": 20}}, "sort": ["age"], "skip": 1, "limit": 2})
        )
        .await,
        ["frank", "alice"]
    );
    drop_db(svc, &db).await;
}

/// Without a `limit`, `find` returns every match (CouchDB would stop at 25; the CouchDB
/// provider follows bookmarks) — here 1,234 documents, more than a page of 1,000.
pub async fn find_without_limit_returns_everything(svc: &Service) {
    let db = unique_db("find-all");
    let docs: Vec<Document> = (0..1234)
        .map(|n| doc(json!({"_id": format!("d{n:05}"), "n": n, "even": n % 2 == 0})))
        .collect();
    for r in svc.save_many(&db, docs).await.expect("bulk") {
        r.expect("saved");
    }
    let all = found(svc, &db, json!({"selector": {}})).await;
    assert_eq!(all.len(), 1234);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "id order");
    let even = found(svc, &db, json!({"selector": {"even": true}})).await;
    assert_eq!(even.len(), 617);
    assert_eq!(even[1], "d00002");
    svc.ensure_index(&db, &["n"], "by-n").await.expect("index");
    let high = found(
        svc,
        &db,
        json!({"selector": {"n": {"$gte": 100}}, "sort": [{"n": "desc"}]}),
    )
    .await;
    assert_eq!(high.len(), 1134);
    assert_eq!(high[0], "d01233");
    assert_eq!(high[1133], "d00100");
    let skipped = found(
        svc,
        &db,
        json!({"selector": {"n": {"$gte": 0}}, "skip": 1200}),
    )
    .await;
    assert_eq!(skipped.len(), 34);
    assert_eq!(skipped[0], "d01200");
    drop_db(svc, &db).await;
}

/// Indexes follow every write: documents saved after `ensure_index`, updates that move or
/// drop the indexed field, deletions, re-creations, one id twice in one bulk save, and
/// documents that existed before the index was created.
pub async fn find_indexes_follow_writes(svc: &Service) {
    let db = unique_db("find-maint");
    svc.save(&db, "early", doc(json!({"k": 5})))
        .await
        .expect("save");
    // The index is built over the existing document.
    assert_eq!(
        svc.ensure_index(&db, &["k"], "by-k").await.expect("index"),
        IndexStatus::Created
    );
    let sorted = || found(svc, &db, json!({"selector": {}, "sort": ["k"]}));
    assert_eq!(sorted().await, ["early"]);
    svc.save(&db, "a", doc(json!({"k": 3})))
        .await
        .expect("save");
    svc.save(&db, "b", doc(json!({"k": 1})))
        .await
        .expect("save");
    svc.save(&db, "c", doc(json!({"other": 1})))
        .await
        .expect("save");
    assert_eq!(sorted().await, ["b", "a", "early"]);
    svc.save(&db, "b", doc(json!({"k": 9})))
        .await
        .expect("update");
    assert_eq!(sorted().await, ["a", "early", "b"]);
    svc.save(&db, "a", doc(json!({"gone": true})))
        .await
        .expect("drop field");
    svc.save(&db, "c", doc(json!({"k": 0})))
        .await
        .expect("gain field");
    assert_eq!(sorted().await, ["c", "early", "b"]);
    svc.delete(&db, "early").await.expect("delete");
    assert_eq!(sorted().await, ["c", "b"]);
    svc.save(&db, "early", doc(json!({"k": 100})))
        .await
        .expect("re-create");
    assert_eq!(sorted().await, ["c", "b", "early"]);
    let batch = vec![
        doc(json!({"_id": "d", "k": 50})),
        doc(json!({"_id": "d", "k": -1})),
        doc(json!({"_id": "e", "k": 7})),
    ];
    for r in svc.save_many(&db, batch).await.expect("bulk") {
        r.expect("saved");
    }
    assert_eq!(sorted().await, ["d", "c", "e", "b", "early"]);
    svc.delete_many(&db, &["e".to_owned(), "b".to_owned()])
        .await
        .expect("bulk delete")
        .into_iter()
        .for_each(|r| {
            r.expect("deleted");
        });
    assert_eq!(sorted().await, ["d", "c", "early"]);
    assert_eq!(
        found(
            svc,
            &db,
            json!({"selector": {"k": {"$gt": -1, "$lte": 100}}})
        )
        .await,
        ["c", "early"]
    );
    drop_db(svc, &db).await;
}

/// Indexes are invisible: no design document in `find`, listings, changes or counts.
pub async fn find_indexes_stay_invisible(svc: &Service) {
    let db = find_corpus(svc, "find-hidden").await;
    svc.ensure_index(&db, &["name"], "by-name")
        .await
        .expect("index");
    let all = ["alice", "bob", "carol", "dave", "erin", "frank"];
    assert_eq!(found(svc, &db, json!({"selector": {}})).await, all);
    assert_eq!(ids(&svc.list_all(&db).await.expect("list")), all);
    let changes = svc.changes(&db, None, 100).await.expect("changes");
    assert!(changes.results.iter().all(|c| !c.id.starts_with('_')));
    assert_eq!(changes.results.len(), 7);
    assert_eq!(svc.database_info(&db).await.expect("info").doc_count, 6);
    drop_db(svc, &db).await;
}

/// Bad queries and index definitions are typed errors naming the problem; a missing
/// database is `NotFound`; `ensure_index` creates its database lazily.
pub async fn find_errors_are_typed(svc: &Service) {
    for (query, needle) in [
        (json!({"selector": {"a": {"$foo": 1}}}), "$foo"),
        (json!({"selector": {"a": {"$in": 3}}}), "$in"),
        (json!({"selector": {"a": {"$regex": "("}}}), "$regex"),
        (json!({"selector": {"a": {"$mod": [0, 1]}}}), "$mod"),
        (json!({"selector": []}), "selector"),
        (json!({"selector": {}, "sort": [{"a": "sideways"}]}), "asc"),
        (json!({"selector": {}, "use_index": "x"}), "use_index"),
    ] {
        match FindQuery::from_json(&query) {
            Err(Error::InvalidQuery { reason }) => {
                assert!(reason.contains(needle), "{query}: {reason}")
            }
            other => panic!("{query}: expected InvalidQuery, got {other:?}"),
        }
    }
    let q = FindQuery::new(json!({})).expect("valid");
    let missing = unique_db("find-missing");
    assert_eq!(kind(&svc.find(&missing, &q).await), Kind::NotFound);
    // Even a query for no documents checks the database (found by the differential test).
    let none = FindQuery::new(json!({})).expect("valid").limit(0);
    assert_eq!(kind(&svc.find(&missing, &none).await), Kind::NotFound);
    assert_eq!(
        kind(&svc.find("Bad Name", &q).await),
        Kind::InvalidDatabaseName
    );
    assert_eq!(
        kind(&svc.ensure_index(&missing, &[], "x").await),
        Kind::InvalidQuery
    );
    assert_eq!(
        kind(&svc.ensure_index(&missing, &["a"], "a/b").await),
        Kind::InvalidQuery
    );
    assert_eq!(
        kind(&svc.ensure_index(&missing, &["a"], "").await),
        Kind::InvalidQuery
    );
    assert_eq!(
        kind(&svc.ensure_index("Bad Name", &["a"], "x").await),
        Kind::InvalidDatabaseName
    );
    assert_eq!(
        svc.ensure_index(&missing, &["a"], "by-a")
            .await
            .expect("lazy"),
        IndexStatus::Created
    );
    assert_eq!(svc.find(&missing, &q).await.expect("exists now").len(), 0);
    drop_db(svc, &missing).await;
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
        &["bob", "dave", "frank"],
    )
    .await;
    drop_db(svc, &db).await;
}

/// Sorting by `_id` needs a condition on `_id` (CouchDB's `_all_docs` index rule), so
/// `{"name": …}` sorted by `_id` is refused like any sort without an index.
pub async fn find_sort_by_id_needs_an_id_condition(svc: &Service) {
    let db = find_corpus(svc, "find-sortid").await;
    let by_id = json!({"selector": {"name": {"$gt": null}}, "sort": ["_id"]});
    let err = svc
        .find(&db, &FindQuery::from_json(&by_id).expect("valid"))
        .await;
    assert_eq!(kind(&err), Kind::InvalidQuery);
    assert!(
        err.expect_err("refused")
            .to_string()
            .contains(NO_INDEX_FOR_SORT)
    );
    drop_db(svc, &db).await;
}

/// `ensure_index` with a known name and other fields replaces the index.
pub async fn ensure_index_replaces_a_redefined_index(svc: &Service) {
    let db = find_corpus(svc, "find-redef").await;
    let by = |field: &str| json!({"selector": {}, "sort": [field]});
    svc.ensure_index(&db, &["age"], "idx").await.expect("index");
    assert_eq!(found(svc, &db, by("age")).await.len(), 5);
    assert_eq!(
        svc.ensure_index(&db, &["score"], "idx")
            .await
            .expect("index"),
        IndexStatus::Created
    );
    assert_eq!(found(svc, &db, by("score")).await, ["bob", "alice", "dave"]);
    assert_eq!(
        kind(
            &svc.find(&db, &FindQuery::from_json(&by("age")).expect("valid"))
                .await
        ),
        Kind::InvalidQuery
    );
    drop_db(svc, &db).await;
}

/// A compound index serves a sort on its second field when the selector fixes the first
/// with `$eq` (CouchDB's constant-field rule).
pub async fn find_sort_skips_fields_fixed_by_eq(svc: &Service) {
    let db = find_corpus(svc, "find-const").await;
    svc.ensure_index(&db, &["active", "age"], "active-age")
        .await
        .expect("index");
    assert_eq!(
        found(
            svc,
            &db,
            json!({"selector": {"active": true}, "sort": ["age"]})
        )
        .await,
        ["alice", "carol"]
    );
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
