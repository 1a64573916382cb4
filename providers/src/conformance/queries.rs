//! Queries: the shared query corpus, and how `find` serves a selector: the index CouchDB 3.5
//! chooses, `fields`, sort, limit and skip, errors, and `ensure_index`. What selectors match
//! is in `selectors`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Kind, Service, doc, ids, kind};
use crate::testing::{drop_db, unique_db};
use crate::{Document, Error, FindQuery, IndexStatus, NO_INDEX_FOR_SORT};

// ---------------------------------------------------------------------------------------
// Queries (`find`, `ensure_index`). The shared corpus keeps strings to lowercase ASCII, which
// every server orders alike; `find_collation_matches_recorded_couchdb` holds ICU order.

/// The query corpus: mixed types, nested objects, arrays, missing fields, one deleted doc.
pub(super) async fn find_corpus(svc: &Service, tag: &str) -> String {
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

pub(super) async fn found(svc: &Service, db: &str, query: Value) -> Vec<String> {
    let query = FindQuery::from_json(&query).expect("valid query");
    ids(&svc.find(db, &query).await.expect("find"))
}

pub(super) async fn selects(svc: &Service, db: &str, selector: Value, expected: &[&str]) {
    let got = found(svc, db, json!({"selector": selector.clone()})).await;
    assert_eq!(got, expected, "selector {selector}");
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
        // Accepted by CouchDB, but answered with every document or not at all.
        (json!({"selector": {"$text": "x"}}), "$text"),
        (json!({"selector": {"$not": {}}}), "field name"),
        (json!({"selector": {"": 1}}), "field name"),
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

/// A usable JSON index serves a query even when no condition narrows it (CouchDB tries its
/// JSON indexes before `_all_docs`), so results come in its order; between JSON indexes the
/// one whose leading field has an indexable condition (`$exists` counts) wins, then fewer
/// fields, then the name.
pub async fn find_prefers_a_usable_json_index(svc: &Service) {
    let db = unique_db("find-choice");
    let docs = [
        json!({"_id": "p1", "a": 3, "b": 1}),
        json!({"_id": "p2", "a": 1, "b": 2}),
        json!({"_id": "p3", "a": 2}),
        json!({"_id": "p4", "b": 3}),
    ];
    for r in svc
        .save_many(&db, docs.into_iter().map(doc).collect())
        .await
        .expect("saves")
    {
        r.expect("saved");
    }
    svc.ensure_index(&db, &["a"], "by-a").await.expect("index");
    for (selector, expected) in [
        (json!({"a": {"$exists": true}}), vec!["p2", "p3", "p1"]),
        (json!({"a": {"$ne": 2}}), vec!["p2", "p1"]),
        (json!({"$or": [{"a": 3}, {"a": 1}]}), vec!["p2", "p1"]),
        // `b` is not required: the index cannot serve it, `_all_docs` does (id order).
        (json!({"$or": [{"a": 3}, {"b": 3}]}), vec!["p1", "p4"]),
    ] {
        selects(svc, &db, selector, &expected).await;
    }
    svc.ensure_index(&db, &["b"], "by-b").await.expect("index");
    // Both indexes usable and equally close: the name decides (by-a).
    selects(
        svc,
        &db,
        json!({"a": {"$exists": true}, "b": {"$exists": true}}),
        &["p2", "p1"],
    )
    .await;
    // Only `b` has an indexable condition: by-b, in `b` order.
    selects(
        svc,
        &db,
        json!({"$and": [{"$or": [{"a": 1}, {"a": 3}]}, {"b": {"$exists": true}}]}),
        &["p1", "p2"],
    )
    .await;
    drop_db(svc, &db).await;
}
