//! The conformance suite: one `pub async fn` per rule of the contract (DESIGN.md, and the
//! `# Contract` of [`DatabaseService`]), run against every provider.
//!
//! Each function takes the service under test, works in freshly, uniquely named databases
//! (so the suite can run again and again against a shared server) and removes them at the end.
//! Assertions are on exact values: revisions, error variants, orders.
//!
//! Use [`conformance_tests!`](crate::conformance_tests) in an integration test to get one
//! `#[tokio::test]` per behaviour, or call [`run_all`].
//!
//! The functions take `&Arc<dyn DatabaseService>` rather than `&dyn DatabaseService` because
//! the concurrency rules are checked with tasks spawned on several runtime threads.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::testing::{drop_db, unique_db};
use crate::{
    DatabaseService, DatabaseServiceExt, Document, Error, FindQuery, IndexStatus,
    NO_INDEX_FOR_SORT, Rev,
};

/// The service under test.
pub type Service = Arc<dyn DatabaseService>;

fn doc(value: Value) -> Document {
    Document::from_value(value).expect("test documents are objects")
}

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter()
        .map(|d| d.id().expect("listed documents carry _id").to_owned())
        .collect()
}

#[track_caller]
fn assert_rev_shape(rev: &Rev, generation: u64) {
    let text = rev.to_string();
    assert_eq!(rev.generation(), generation, "rev {text}");
    let (_, hex) = text.split_once('-').expect("rev has a dash");
    assert_eq!(hex.len(), 32, "rev {text}");
    assert!(
        hex.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}

/// The kind of error, for exact assertions on variants.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    NotFound,
    Conflict,
    InvalidDatabaseName,
    InvalidDocumentId,
    InvalidDocument,
    InvalidQuery,
    Other,
}

fn kind<T: std::fmt::Debug>(r: &crate::Result<T>) -> Kind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(Error::NotFound { .. }) => Kind::NotFound,
        Err(Error::Conflict { .. }) => Kind::Conflict,
        Err(Error::InvalidDatabaseName { .. }) => Kind::InvalidDatabaseName,
        Err(Error::InvalidDocumentId { .. }) => Kind::InvalidDocumentId,
        Err(Error::InvalidDocument { .. }) => Kind::InvalidDocument,
        Err(Error::InvalidQuery { .. }) => Kind::InvalidQuery,
        Err(_) => Kind::Other,
    }
}

/// Invalid database names are `InvalidDatabaseName` on every operation; edge-case valid
/// names (every allowed character, 238 characters) work.
pub async fn database_names_are_validated(svc: &Service) {
    for bad in [
        "",
        "Upper",
        "9starts-with-digit",
        "_users",
        "has space",
        "dot.ted",
        "é",
    ] {
        assert_eq!(
            kind(&svc.save(bad, "x", doc(json!({}))).await),
            Kind::InvalidDatabaseName,
            "save into {bad:?}"
        );
        assert_eq!(kind(&svc.get(bad, "x").await), Kind::InvalidDatabaseName);
        assert_eq!(
            kind(&svc.list_page(bad, None, 10).await),
            Kind::InvalidDatabaseName
        );
        assert_eq!(
            kind(&svc.database_info(bad).await),
            Kind::InvalidDatabaseName
        );
        assert_eq!(
            kind(&svc.delete_database(bad).await),
            Kind::InvalidDatabaseName
        );
    }
    let too_long = format!("a{}", "b".repeat(238));
    assert_eq!(
        kind(&svc.save(&too_long, "x", doc(json!({}))).await),
        Kind::InvalidDatabaseName
    );
    // Every allowed character, including '/', which URLs must escape.
    let special = format!("{}-a0_$()+/-z", unique_db("names"));
    let long = format!("{}{}", unique_db("long"), "x".repeat(238));
    let long = long[..238].to_owned();
    for name in [&special, &long] {
        let written = svc.save(name, "d", doc(json!({"ok": true}))).await.unwrap();
        assert_eq!(written.rev.generation(), 1);
        assert_eq!(
            svc.get(name, "d").await.unwrap().get("ok"),
            Some(&json!(true))
        );
        assert!(svc.list_databases().await.unwrap().contains(name));
        drop_db(svc, name).await;
    }
}

/// Empty ids and ids starting with `_` are `InvalidDocumentId` for reads, writes and deletes.
pub async fn document_ids_are_validated(svc: &Service) {
    let db = unique_db("ids");
    svc.save(&db, "seed", doc(json!({}))).await.unwrap();
    for bad in ["", "_x", "_design/d", "_local/l", "_all_docs"] {
        assert_eq!(
            kind(&svc.save(&db, bad, doc(json!({}))).await),
            Kind::InvalidDocumentId,
            "save {bad:?}"
        );
        assert_eq!(kind(&svc.get(&db, bad).await), Kind::InvalidDocumentId);
        assert_eq!(kind(&svc.delete(&db, bad).await), Kind::InvalidDocumentId);
    }
    drop_db(svc, &db).await;
}

/// Ids with URL-significant characters, spaces, unicode and great length round-trip and list.
pub async fn awkward_ids_round_trip(svc: &Service) {
    let db = unique_db("awkward");
    let long = "l".repeat(1000);
    let awkward = [
        "a/b",
        "a?b=c",
        "a#frag",
        "100%",
        "a+b",
        "with space",
        "dots..",
        "../up",
        "é",
        "日本",
        "😀",
        "tab\there",
        "semi;colon",
        "amp&er",
        "q\"uote",
        "back\\slash",
        "x%2Fy",
        ".",
        "..",
        "x/../../_all_dbs",
        long.as_str(),
    ];
    for (n, id) in awkward.iter().enumerate() {
        let written = svc.save(&db, id, doc(json!({ "n": n }))).await.unwrap();
        assert_eq!(written.id, *id);
        let got = svc.get(&db, id).await.unwrap();
        assert_eq!(got.id(), Some(*id));
        assert_eq!(got.get("n"), Some(&json!(n)));
    }
    let mut expected: Vec<String> = awkward.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(ids(&svc.list_all(&db).await.unwrap()), expected);
    // An id that looks like another endpoint is still just a document.
    assert_eq!(kind(&svc.get(&db, "a").await), Kind::NotFound);
    let deleted = svc.delete(&db, "a/b").await.unwrap();
    assert_eq!(deleted.rev.generation(), 2);
    assert_eq!(kind(&svc.get(&db, "a/b").await), Kind::NotFound);
    assert!(svc.get(&db, "a?b=c").await.is_ok());
    drop_db(svc, &db).await;
}

/// Top-level `_` fields other than `_id`/`_rev`, and an `_id` that differs from the id
/// argument, are `InvalidDocument`; nested `_` fields are ordinary data.
pub async fn reserved_fields_are_rejected(svc: &Service) {
    let db = unique_db("reserved");
    for body in [
        json!({"_attachments": {}}),
        json!({"_deleted": true}),
        json!({"_custom": 1}),
        json!({"_id": "other"}),
        json!({"_id": 7}),
        json!({"_rev": "not-a-rev"}),
    ] {
        assert_eq!(
            kind(&svc.save(&db, "x", doc(body.clone())).await),
            Kind::InvalidDocument,
            "{body}"
        );
    }
    assert_eq!(kind(&svc.get(&db, "x").await), Kind::NotFound);
    let ok = svc
        .save(
            &db,
            "x",
            doc(json!({"_id": "x", "nested": {"_private": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(ok.rev.generation(), 1);
    let got = svc.get(&db, "x").await.unwrap();
    assert_eq!(got.get("nested"), Some(&json!({"_private": 1})));
    drop_db(svc, &db).await;
}

/// Revisions are `N-<32 hex>`, start at 1, grow by one per write; reads return `_id`, `_rev`
/// first, then the body in its order.
pub async fn revisions_have_couchdb_shape_and_grow(svc: &Service) {
    let db = unique_db("revs");
    let first = svc.save(&db, "d", doc(json!({"v": 1}))).await.unwrap();
    assert_eq!(first.id, "d");
    assert_rev_shape(&first.rev, 1);
    let mut body = doc(json!({"z": 1, "a": 2, "m": 3}));
    body.set_rev(&first.rev);
    let second = svc.save(&db, "d", body).await.unwrap();
    assert_rev_shape(&second.rev, 2);
    let got = svc.get(&db, "d").await.unwrap();
    let keys: Vec<&str> = got.as_map().keys().map(String::as_str).collect();
    assert_eq!(keys, ["_id", "_rev", "z", "a", "m"]);
    assert_eq!(got.rev(), Some(second.rev.to_string().as_str()));
    let third = svc.save(&db, "d", doc(json!({"v": 3}))).await.unwrap();
    assert_rev_shape(&third.rev, 3);
    let deleted = svc.delete(&db, "d").await.unwrap();
    assert_rev_shape(&deleted.rev, 4);
    drop_db(svc, &db).await;
}

/// Replays every edit history recorded from a genuine CouchDB 3.5 and expects the very
/// revision ids CouchDB returned. For providers that compute revisions themselves, and for
/// a genuine CouchDB server.
pub async fn revisions_match_recorded_couchdb(svc: &Service) {
    let data: Value = serde_json::from_str(include_str!("../../testdata/couchdb-revisions.json"))
        .expect("recorded vectors parse");
    let vectors = data["vectors"].as_array().expect("vectors");
    assert_eq!(vectors.len(), 47);
    let db = unique_db("recorded");
    for (n, vector) in vectors.iter().enumerate() {
        let id = format!("v{n:02}");
        let history = vector["history"].as_array().expect("history");
        let revs = vector["revs"].as_array().expect("revs");
        for (step, expected) in history.iter().zip(revs) {
            let rev = match step["op"].as_str() {
                Some("put") => {
                    let text = step["body"].as_str().expect("body text");
                    let body = Document::from_json(text).expect("recorded body parses");
                    svc.save(&db, &id, body).await.expect("save").rev
                }
                Some("delete") => svc.delete(&db, &id).await.expect("delete").rev,
                other => panic!("unknown op {other:?}"),
            };
            assert_eq!(
                rev.to_string(),
                expected.as_str().expect("rev text"),
                "history {n}, step {step}"
            );
        }
    }
    drop_db(svc, &db).await;
}

/// A save without `_rev` over an existing document writes on top of the current revision.
pub async fn save_without_rev_upserts(svc: &Service) {
    let db = unique_db("upsert");
    let one = svc.save(&db, "d", doc(json!({"v": 1}))).await.unwrap();
    let two = svc.save(&db, "d", doc(json!({"v": 2}))).await.unwrap();
    assert_eq!(two.rev.generation(), one.rev.generation() + 1);
    let got = svc.get(&db, "d").await.unwrap();
    assert_eq!(got.get("v"), Some(&json!(2)));
    assert_eq!(got.rev(), Some(two.rev.to_string().as_str()));
    drop_db(svc, &db).await;
}

/// A save with a stale or unknown `_rev`, or with `_rev` on a missing or deleted document, is
/// `Conflict` and changes nothing; with the current `_rev` it succeeds.
pub async fn save_with_rev_is_optimistic(svc: &Service) {
    let db = unique_db("optimistic");
    let one = svc.save(&db, "d", doc(json!({"v": 1}))).await.unwrap();
    let mut next = doc(json!({"v": 2}));
    next.set_rev(&one.rev);
    let two = svc.save(&db, "d", next).await.unwrap();
    assert_eq!(two.rev.generation(), 2);

    let mut stale = doc(json!({"v": "stale"}));
    stale.set_rev(&one.rev);
    assert_eq!(kind(&svc.save(&db, "d", stale).await), Kind::Conflict);
    let mut unknown = doc(json!({"v": "unknown"}));
    unknown.set_rev(&Rev::parse("2-0123456789abcdef0123456789abcdef").unwrap());
    assert_eq!(kind(&svc.save(&db, "d", unknown).await), Kind::Conflict);
    let got = svc.get(&db, "d").await.unwrap();
    assert_eq!(got.get("v"), Some(&json!(2)));
    assert_eq!(got.rev(), Some(two.rev.to_string().as_str()));

    let mut on_missing = doc(json!({}));
    on_missing.set_rev(&one.rev);
    assert_eq!(
        kind(&svc.save(&db, "missing", on_missing).await),
        Kind::Conflict
    );
    assert_eq!(kind(&svc.get(&db, "missing").await), Kind::NotFound);

    let gone = svc.delete(&db, "d").await.unwrap();
    let mut on_deleted = doc(json!({}));
    on_deleted.set_rev(&gone.rev);
    assert_eq!(kind(&svc.save(&db, "d", on_deleted).await), Kind::Conflict);
    drop_db(svc, &db).await;
}

/// `Conflict` names the database and the document.
pub async fn conflict_errors_name_the_document(svc: &Service) {
    let db = unique_db("conflict-loc");
    let one = svc.save(&db, "d", doc(json!({}))).await.unwrap();
    svc.save(&db, "d", doc(json!({"v": 2}))).await.unwrap();
    let mut stale = doc(json!({}));
    stale.set_rev(&one.rev);
    match svc.save(&db, "d", stale).await {
        Err(Error::Conflict { location }) => {
            assert_eq!(location.db, db);
            assert_eq!(location.id.as_deref(), Some("d"));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match svc.get(&db, "nope").await {
        Err(e @ Error::NotFound { .. }) => {
            assert_eq!(e.http_status(), 404);
            assert!(e.to_string().contains("nope"), "{e}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    drop_db(svc, &db).await;
}

/// `update` from 8 concurrent tasks x 100 increments ends at exactly 800: no update is lost.
pub async fn concurrent_updates_lose_nothing(svc: &Service) {
    let db = unique_db("concurrent");
    svc.save(&db, "counter", doc(json!({"n": 0})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let svc = Arc::clone(svc);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                svc.update(&db, "counter", |d| {
                    let n = d.get("n").and_then(Value::as_u64).unwrap_or(0);
                    d.insert("n", n + 1);
                    Ok(())
                })
                .await
                .expect("update succeeds within its retries");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task did not panic");
    }
    let got = svc.get(&db, "counter").await.unwrap();
    assert_eq!(got.get("n"), Some(&json!(800)));
    assert_eq!(Rev::parse(got.rev().unwrap()).unwrap().generation(), 801);
    drop_db(svc, &db).await;
}

/// Concurrent saves with the same `_rev`: exactly one wins, the others get `Conflict`.
pub async fn concurrent_conditional_saves_have_one_winner(svc: &Service) {
    let db = unique_db("one-winner");
    let base = svc.save(&db, "d", doc(json!({"v": 0}))).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let svc = Arc::clone(svc);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = doc(json!({ "v": i + 1 }));
            body.set_rev(&base.rev);
            svc.save(&db, "d", body).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task did not panic") {
            Ok(w) => {
                assert_eq!(w.rev.generation(), 2);
                wins += 1;
            }
            Err(e) => assert!(e.is_conflict(), "{e}"),
        }
    }
    assert_eq!(wins, 1);
    drop_db(svc, &db).await;
}

/// Concurrent saves without `_rev` all succeed (the provider retries internally), each
/// producing a distinct generation.
pub async fn concurrent_revless_saves_all_succeed(svc: &Service) {
    let db = unique_db("revless");
    svc.save(&db, "d", doc(json!({"v": 0}))).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let svc = Arc::clone(svc);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut gens = Vec::new();
            for j in 0..10 {
                let w = svc.save(&db, "d", doc(json!({"task": i, "j": j}))).await;
                gens.push(w.expect("rev-less save never conflicts").rev.generation());
            }
            gens
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task did not panic"));
    }
    all.sort_unstable();
    assert_eq!(all, (2..=81).collect::<Vec<u64>>());
    drop_db(svc, &db).await;
}

/// Delete tombstones the document (next generation); reads and a second delete are then
/// `NotFound`; the strict form checks the revision.
pub async fn delete_then_get_is_not_found(svc: &Service) {
    let db = unique_db("delete");
    let one = svc.save(&db, "d", doc(json!({"v": 1}))).await.unwrap();
    let two = svc.save(&db, "d", doc(json!({"v": 2}))).await.unwrap();
    assert_eq!(
        kind(&svc.delete_rev(&db, "d", &one.rev).await),
        Kind::Conflict
    );
    assert!(svc.get(&db, "d").await.is_ok());
    let gone = svc.delete_rev(&db, "d", &two.rev).await.unwrap();
    assert_eq!(gone.rev.generation(), 3);
    assert_eq!(kind(&svc.get(&db, "d").await), Kind::NotFound);
    assert_eq!(kind(&svc.delete(&db, "d").await), Kind::NotFound);
    assert_eq!(kind(&svc.delete(&db, "never").await), Kind::NotFound);
    assert_eq!(
        kind(&svc.delete(&unique_db("nodb"), "x").await),
        Kind::NotFound
    );
    drop_db(svc, &db).await;
}

/// A document re-created after a delete continues the generation count, as on CouchDB.
pub async fn recreate_after_delete_continues_generation(svc: &Service) {
    let db = unique_db("recreate");
    svc.save(&db, "d", doc(json!({"v": 1}))).await.unwrap();
    let gone = svc.delete(&db, "d").await.unwrap();
    assert_eq!(gone.rev.generation(), 2);
    let again = svc
        .save(&db, "d", doc(json!({"v": "again"})))
        .await
        .unwrap();
    assert_eq!(again.rev.generation(), 3);
    let got = svc.get(&db, "d").await.unwrap();
    assert_eq!(got.get("v"), Some(&json!("again")));
    assert_eq!(got.as_map().len(), 3, "no leftover fields: {got:?}");
    drop_db(svc, &db).await;
}

/// Reads of a missing database answer without creating it.
pub async fn reads_never_create_databases(svc: &Service) {
    let db = unique_db("never-created");
    assert_eq!(kind(&svc.get(&db, "x").await), Kind::NotFound);
    assert!(svc.list_all(&db).await.unwrap().is_empty());
    let page = svc.list_page(&db, None, 10).await.unwrap();
    assert!(page.docs.is_empty() && page.next.is_none());
    let many = svc.get_many(&db, &["x".into()]).await.unwrap();
    assert_eq!(kind(&many[0]), Kind::NotFound);
    assert_eq!(kind(&svc.database_info(&db).await), Kind::NotFound);
    assert_eq!(kind(&svc.changes(&db, None, 10).await), Kind::NotFound);
    assert_eq!(kind(&svc.get_local(&db, "x").await), Kind::NotFound);
    assert_eq!(kind(&svc.delete(&db, "x").await), Kind::NotFound);
    assert_eq!(kind(&svc.delete_database(&db).await), Kind::NotFound);
    assert!(!svc.list_databases().await.unwrap().contains(&db));
}

/// Listings return live documents in raw UTF-8 byte order, unicode included.
pub async fn listing_is_in_byte_order(svc: &Service) {
    let db = unique_db("order");
    let names = [
        "b", "B", "a", "A", "é", "e", "Z", "z", "10", "9", "1", "a b", "a/b", "ab", "😀", "日本",
        "ÿ", "~", "-", "ä",
    ];
    for id in names {
        svc.save(&db, id, doc(json!({}))).await.unwrap();
    }
    svc.save(&db, "deleted", doc(json!({}))).await.unwrap();
    svc.delete(&db, "deleted").await.unwrap();
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(ids(&svc.list_all(&db).await.unwrap()), expected);
    drop_db(svc, &db).await;
}

/// Cursor pagination visits every live document exactly once; the stream agrees.
pub async fn pagination_has_no_gaps_or_repeats(svc: &Service) {
    use futures::TryStreamExt;
    let db = unique_db("pages");
    let docs: Vec<Document> = (0..57)
        .map(|i| doc(json!({"_id": format!("doc{i:03}"), "i": i})))
        .collect();
    for r in svc.save_many(&db, docs).await.unwrap() {
        r.unwrap();
    }
    svc.delete(&db, "doc010").await.unwrap();
    let all = ids(&svc.list_all(&db).await.unwrap());
    assert_eq!(all.len(), 56);
    for limit in [1, 7, 8, 56, 100] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = svc.list_page(&db, after.as_deref(), limit).await.unwrap();
            assert!(page.docs.len() <= limit);
            pages += 1;
            seen.extend(ids(&page.docs));
            match page.next {
                Some(next) => {
                    assert_eq!(Some(&next), seen.last());
                    after = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(seen, all, "limit {limit}");
        assert_eq!(pages, all.len().div_ceil(limit), "limit {limit}");
    }
    // A cursor between ids works as a lower bound.
    let page = svc.list_page(&db, Some("doc0095"), 2).await.unwrap();
    assert_eq!(ids(&page.docs), ["doc011", "doc012"]);
    assert_eq!(kind(&svc.list_page(&db, None, 0).await), Kind::InvalidQuery);
    let streamed: Vec<Document> = svc.list_stream(&db, 5).try_collect().await.unwrap();
    assert_eq!(ids(&streamed), all);
    drop_db(svc, &db).await;
}

/// Bulk calls return one result per input, in input order; a bad document fails alone.
pub async fn bulk_results_keep_input_order(svc: &Service) {
    let db = unique_db("bulk");
    let existing = svc.save(&db, "old", doc(json!({"v": 0}))).await.unwrap();
    let stale = Rev::parse("1-00000000000000000000000000000000").unwrap();
    let results = svc
        .save_many(
            &db,
            vec![
                doc(json!({"_id": "b", "v": 1})),
                doc(json!({"_id": "_bad"})),
                doc(json!({"_id": "a", "v": 2})),
                doc(json!({"no_id": true})),
                doc(json!({"_id": "old", "_rev": stale.to_string()})),
                doc(json!({"_id": "old", "_rev": existing.rev.to_string(), "v": 1})),
                doc(json!({"_id": "c", "_attachments": {}})),
                doc(json!({"_id": "d"})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 8);
    assert_eq!(results[0].as_ref().unwrap().id, "b");
    assert_eq!(kind(&results[1]), Kind::InvalidDocumentId);
    assert_eq!(results[2].as_ref().unwrap().id, "a");
    assert_eq!(kind(&results[3]), Kind::InvalidDocumentId);
    assert_eq!(kind(&results[4]), Kind::Conflict);
    assert_eq!(results[5].as_ref().unwrap().rev.generation(), 2);
    assert_eq!(kind(&results[6]), Kind::InvalidDocument);
    assert_eq!(results[7].as_ref().unwrap().rev.generation(), 1);
    // Rev-less bulk saves upsert, like save; the same id twice in one batch writes twice.
    let again = svc
        .save_many(
            &db,
            vec![
                doc(json!({"_id": "a", "v": 0})),
                doc(json!({"_id": "a", "v": 3})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again[0].as_ref().unwrap().rev.generation(), 2);
    assert_eq!(again[1].as_ref().unwrap().rev.generation(), 3);

    svc.delete(&db, "d").await.unwrap();
    let got = svc
        .get_many(
            &db,
            &[
                "a".into(),
                "missing".into(),
                "b".into(),
                "d".into(),
                "_x".into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].as_ref().unwrap().get("v"), Some(&json!(3)));
    assert_eq!(kind(&got[1]), Kind::NotFound);
    assert_eq!(got[2].as_ref().unwrap().id(), Some("b"));
    assert_eq!(kind(&got[3]), Kind::NotFound);
    assert_eq!(kind(&got[4]), Kind::InvalidDocumentId);

    let deleted = svc
        .delete_many(&db, &["b".into(), "missing".into(), "a".into(), "d".into()])
        .await
        .unwrap();
    assert_eq!(deleted[0].as_ref().unwrap().rev.generation(), 2);
    assert_eq!(kind(&deleted[1]), Kind::NotFound);
    assert_eq!(deleted[2].as_ref().unwrap().rev.generation(), 4);
    assert_eq!(kind(&deleted[3]), Kind::NotFound);
    assert_eq!(ids(&svc.list_all(&db).await.unwrap()), ["old"]);
    drop_db(svc, &db).await;

    // A batch with nothing valid to write (an empty one included) creates no database.
    let untouched = unique_db("bulk-empty");
    assert!(
        svc.save_many(&untouched, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    let invalid = svc
        .save_many(&untouched, vec![doc(json!({"_id": "_bad"}))])
        .await
        .unwrap();
    assert_eq!(kind(&invalid[0]), Kind::InvalidDocumentId);
    assert_eq!(kind(&svc.database_info(&untouched).await), Kind::NotFound);
}

/// A large bulk save (600 documents, one id three times, one stale `_rev`) keeps input order
/// and applies repeats in order, exactly like a small one.
pub async fn large_bulk_saves_keep_order(svc: &Service) {
    let db = unique_db("large-bulk");
    let old = svc
        .save(&db, "existing", doc(json!({"v": 0})))
        .await
        .unwrap();
    svc.save(&db, "existing", doc(json!({"v": 1})))
        .await
        .unwrap();
    let mut docs: Vec<Document> = (0..600)
        .map(|i| doc(json!({"_id": format!("d{i:04}"), "i": i})))
        .collect();
    docs[100] = doc(json!({"_id": "twice", "n": 1}));
    docs[300] = doc(json!({"_id": "twice", "n": 2}));
    docs[500] = doc(json!({"_id": "twice", "n": 3}));
    docs[400] = doc(json!({"_id": "existing", "_rev": old.rev.to_string(), "v": "stale"}));
    let results = svc.save_many(&db, docs).await.unwrap();
    assert_eq!(results.len(), 600);
    for (i, r) in results.iter().enumerate() {
        match i {
            100 | 300 | 500 => {
                let w = r.as_ref().unwrap();
                assert_eq!(w.id, "twice");
                assert_eq!(w.rev.generation(), (i / 200 + 1) as u64, "slot {i}");
            }
            400 => assert_eq!(kind(r), Kind::Conflict),
            _ => {
                let w = r.as_ref().unwrap();
                assert_eq!(w.id, format!("d{i:04}"));
                assert_eq!(w.rev.generation(), 1);
            }
        }
    }
    assert_eq!(
        svc.get(&db, "twice").await.unwrap().get("n"),
        Some(&json!(3))
    );
    assert_eq!(
        svc.get(&db, "existing").await.unwrap().get("v"),
        Some(&json!(1))
    );
    assert_eq!(svc.list_all(&db).await.unwrap().len(), 598);
    drop_db(svc, &db).await;
}

/// The changes feed lists the latest change of each document in sequence order, deletions
/// included, and continues from `last_seq`.
pub async fn changes_include_deletions(svc: &Service) {
    let db = unique_db("changes");
    svc.save(&db, "a", doc(json!({"v": 1}))).await.unwrap();
    svc.save(&db, "b", doc(json!({"v": 1}))).await.unwrap();
    svc.save(&db, "c", doc(json!({"v": 1}))).await.unwrap();
    let a2 = svc.save(&db, "a", doc(json!({"v": 2}))).await.unwrap();
    let b2 = svc.delete(&db, "b").await.unwrap();
    svc.put_local(&db, "checkpoint", doc(json!({"seq": 1})))
        .await
        .unwrap();

    let all = svc.changes(&db, None, 100).await.unwrap();
    let summary: Vec<(&str, bool)> = all
        .results
        .iter()
        .map(|c| (c.id.as_str(), c.deleted))
        .collect();
    assert_eq!(summary, [("c", false), ("a", false), ("b", true)]);
    assert_eq!(all.results[1].rev, a2.rev);
    assert_eq!(all.results[2].rev, b2.rev);
    assert_eq!(all.pending, 0);

    let first = svc.changes(&db, None, 2).await.unwrap();
    assert_eq!(first.results.len(), 2);
    assert_eq!(first.pending, 1);
    let rest = svc.changes(&db, Some(&first.last_seq), 2).await.unwrap();
    let rest_ids: Vec<&str> = rest.results.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(rest_ids, ["b"]);
    let none = svc.changes(&db, Some(&all.last_seq), 10).await.unwrap();
    assert!(none.results.is_empty());

    svc.save(&db, "c", doc(json!({"v": 2}))).await.unwrap();
    let after = svc.changes(&db, Some(&all.last_seq), 10).await.unwrap();
    let after_ids: Vec<&str> = after.results.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(after_ids, ["c"]);
    drop_db(svc, &db).await;

    // `pending` counts down page by page, and stays exact when a write lands between two
    // pages (the written document moves to the end of the feed).
    let feed = unique_db("changes-pending");
    let docs: Vec<Document> = (0..10)
        .map(|i| doc(json!({"_id": format!("p{i}")})))
        .collect();
    for r in svc.save_many(&feed, docs).await.unwrap() {
        r.unwrap();
    }
    let (mut since, mut pendings) = (None, Vec::new());
    loop {
        let page = svc.changes(&feed, since.as_deref(), 3).await.unwrap();
        pendings.push(page.pending);
        since = Some(page.last_seq);
        if page.pending == 0 {
            break;
        }
    }
    assert_eq!(pendings, [7, 4, 1, 0]);
    let first = svc.changes(&feed, None, 3).await.unwrap();
    assert_eq!(first.pending, 7);
    svc.save(&feed, "p0", doc(json!({"v": 2}))).await.unwrap();
    let next = svc.changes(&feed, Some(&first.last_seq), 3).await.unwrap();
    let ids: Vec<&str> = next.results.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["p3", "p4", "p5"]);
    assert_eq!(next.pending, 5, "p6 to p9, then p0 again");
    drop_db(svc, &feed).await;
}

/// `_local` documents store and replace bodies but never appear in listings, changes or counts.
pub async fn local_documents_are_invisible(svc: &Service) {
    let db = unique_db("local");
    svc.save(&db, "visible", doc(json!({}))).await.unwrap();
    svc.put_local(&db, "cp", doc(json!({"seq": "1"})))
        .await
        .unwrap();
    svc.put_local(&db, "cp", doc(json!({"seq": "2", "extra": [1]})))
        .await
        .unwrap();
    let local = svc.get_local(&db, "cp").await.unwrap();
    assert_eq!(local.get("seq"), Some(&json!("2")));
    assert_eq!(local.get("extra"), Some(&json!([1])));
    assert_eq!(kind(&svc.get_local(&db, "other").await), Kind::NotFound);
    assert_eq!(ids(&svc.list_all(&db).await.unwrap()), ["visible"]);
    let changes = svc.changes(&db, None, 10).await.unwrap();
    assert_eq!(changes.results.len(), 1);
    assert_eq!(svc.database_info(&db).await.unwrap().doc_count, 1);
    // put_local creates the database lazily, like any write.
    let fresh = unique_db("local-fresh");
    svc.put_local(&fresh, "cp", doc(json!({"x": 1})))
        .await
        .unwrap();
    assert_eq!(
        svc.get_local(&fresh, "cp").await.unwrap().get("x"),
        Some(&json!(1))
    );
    assert!(svc.list_all(&fresh).await.unwrap().is_empty());
    drop_db(svc, &fresh).await;
    drop_db(svc, &db).await;
}

/// Databases are created lazily, listed sorted, counted, and deleted.
pub async fn databases_list_sorted_and_delete(svc: &Service) {
    let prefix = unique_db("dbs");
    let names: Vec<String> = ["m", "b", "z", "a"]
        .iter()
        .map(|s| format!("{prefix}-{s}"))
        .collect();
    for name in &names {
        svc.save(name, "d", doc(json!({}))).await.unwrap();
    }
    let listed = svc.list_databases().await.unwrap();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "list_databases is sorted");
    let ours: Vec<&String> = listed.iter().filter(|n| n.starts_with(&prefix)).collect();
    let mut expected: Vec<&String> = names.iter().collect();
    expected.sort();
    assert_eq!(ours, expected);
    assert!(
        listed.iter().all(|n| !n.starts_with('_')),
        "no system databases"
    );

    let db = &names[0];
    svc.save(db, "e", doc(json!({}))).await.unwrap();
    svc.save(db, "f", doc(json!({}))).await.unwrap();
    svc.delete(db, "f").await.unwrap();
    let info = svc.database_info(db).await.unwrap();
    assert_eq!(info.name, *db);
    assert_eq!(info.doc_count, 2);
    assert_eq!(info.doc_del_count, 1);
    assert!(!info.update_seq.is_empty());

    for name in &names {
        svc.delete_database(name).await.unwrap();
    }
    let after = svc.list_databases().await.unwrap();
    assert!(after.iter().all(|n| !n.starts_with(&prefix)));
    assert_eq!(kind(&svc.get(db, "d").await), Kind::NotFound);
    // A deleted database starts afresh when written again.
    let w = svc.save(db, "d", doc(json!({}))).await.unwrap();
    assert_eq!(w.rev.generation(), 1);
    drop_db(svc, db).await;
}

/// A 2 MB document round-trips intact.
pub async fn large_documents_round_trip(svc: &Service) {
    let db = unique_db("large");
    let big = "0123456789abcdef".repeat(2 * 1024 * 1024 / 16);
    let w = svc
        .save(&db, "big", doc(json!({"blob": big, "tail": 1})))
        .await
        .unwrap();
    let got = svc.get(&db, "big").await.unwrap();
    assert_eq!(got.get("blob").and_then(Value::as_str), Some(big.as_str()));
    assert_eq!(got.rev(), Some(w.rev.to_string().as_str()));
    drop_db(svc, &db).await;
}

/// Unicode keys and values round-trip, and key order is kept.
pub async fn unicode_bodies_round_trip(svc: &Service) {
    let db = unique_db("unicode");
    let text = r#"{"zé":"ünïcödé ✓ 日本 😀","":"empty key","a\nb":"line\nbreak \"q\" \\","ключ":["я",{"😀":null}]}"#;
    let body = Document::from_json(text).unwrap();
    svc.save(&db, "u", body.clone()).await.unwrap();
    let got = svc.get(&db, "u").await.unwrap();
    let mut expected = Map::new();
    expected.insert("_id".into(), json!("u"));
    expected.insert("_rev".into(), json!(got.rev().unwrap()));
    expected.extend(body.into_map());
    assert_eq!(got.as_map(), &expected);
    let keys: Vec<&String> = got.as_map().keys().collect();
    assert_eq!(keys, ["_id", "_rev", "zé", "", "a\nb", "ключ"]);
    drop_db(svc, &db).await;
}

/// Integers of any size round-trip exactly; floats keep their value.
pub async fn numbers_round_trip(svc: &Service) {
    let db = unique_db("numbers");
    let text = r#"{"small":255,"i32":-2147483649,"i64min":-9223372036854775808,"u64":18446744073709551615,"big":123456789012345678901234567890,"neg_big":-98765432109876543210987654321,"f":3.141592653589793,"tiny":2.5e-8,"huge":1e300,"half":-0.5}"#;
    svc.save(&db, "n", Document::from_json(text).unwrap())
        .await
        .unwrap();
    let got = svc.get(&db, "n").await.unwrap();
    for (key, exact) in [
        ("small", "255"),
        ("i32", "-2147483649"),
        ("i64min", "-9223372036854775808"),
        ("u64", "18446744073709551615"),
        ("big", "123456789012345678901234567890"),
        ("neg_big", "-98765432109876543210987654321"),
    ] {
        assert_eq!(
            got.get(key).map(Value::to_string).as_deref(),
            Some(exact),
            "{key}"
        );
    }
    for (key, value) in [
        ("f", std::f64::consts::PI),
        ("tiny", 2.5e-8),
        ("huge", 1e300),
        ("half", -0.5),
    ] {
        assert_eq!(got.get(key).and_then(Value::as_f64), Some(value), "{key}");
    }
    drop_db(svc, &db).await;
}

/// Documents a read returns are copies: changing one does not change the store.
pub async fn returned_documents_are_copies(svc: &Service) {
    let db = unique_db("copies");
    svc.save(&db, "d", doc(json!({"v": 1, "list": [1]})))
        .await
        .unwrap();
    let mut got = svc.get(&db, "d").await.unwrap();
    got.insert("v", 99);
    got.as_map_mut().insert("list".into(), json!([]));
    let mut listed = svc.list_all(&db).await.unwrap();
    listed[0].insert("v", 98);
    let again = svc.get(&db, "d").await.unwrap();
    assert_eq!(again.get("v"), Some(&json!(1)));
    assert_eq!(again.get("list"), Some(&json!([1])));
    drop_db(svc, &db).await;
}

/// Typed helpers: `save_as` / `get_as` round-trip a struct; a non-object is rejected.
pub async fn typed_helpers_round_trip(svc: &Service) {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Agent {
        name: String,
        tags: Vec<String>,
        runs: u32,
    }
    let db = unique_db("typed");
    let agent = Agent {
        name: "My Agent".into(),
        tags: vec!["a".into(), "b".into()],
        runs: 3,
    };
    let w = svc.save_as(&db, "agent", &agent).await.unwrap();
    assert_eq!(w.rev.generation(), 1);
    let back: Agent = svc.get_as(&db, "agent").await.unwrap();
    assert_eq!(back, agent);
    assert_eq!(
        kind(&svc.save_as(&db, "n", &5).await),
        Kind::InvalidDocument
    );
    assert_eq!(
        kind(&svc.update(&db, "missing", |_| Ok(())).await),
        Kind::NotFound
    );
    drop_db(svc, &db).await;
}

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

/// `put_revisions` stores revisions as they are (replication): a revision already present
/// writes nothing; a descendant (its history holds the current revision) replaces it; other
/// revisions compete by CouchDB's rule (live before deleted, higher generation, greater
/// hash); deletions carry; bad ids and bodies fail alone. `current_revisions` reports the
/// winners.
pub async fn put_revisions_keep_couchdb_winners(svc: &Service) {
    use crate::{RevisionOutcome as O, RevisionedDoc};
    let rev = |generation: u64, c: char| -> Rev {
        format!("{generation}-{}", c.to_string().repeat(32))
            .parse()
            .expect("valid rev")
    };
    let rd = |id: &str, r: Rev, deleted: bool, body: Value, history: Vec<Rev>| RevisionedDoc {
        id: id.to_owned(),
        rev: r,
        deleted,
        body: match body {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        history,
    };
    let db = unique_db("put-revs");
    let put = |docs: Vec<RevisionedDoc>| {
        let svc = Arc::clone(svc);
        let db = db.clone();
        async move {
            svc.put_revisions(&db, docs)
                .await
                .expect("put_revisions")
                .into_iter()
                .map(|r| r.map_err(|e| format!("{e:?}")))
                .collect::<Vec<_>>()
        }
    };
    let current = |id: &'static str| {
        let svc = Arc::clone(svc);
        let db = db.clone();
        async move { svc.get(&db, id).await }
    };
    assert!(
        svc.put_revisions(&db, Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
    assert_eq!(kind(&svc.database_info(&db).await), Kind::NotFound);

    let a1 = rev(1, 'a');
    assert_eq!(
        put(vec![rd("a", a1, false, json!({"v": 1}), vec![])]).await,
        [Ok(O::Written)]
    );
    let got = current("a").await.expect("stored");
    assert_eq!(got.rev(), Some(a1.to_string().as_str()));
    assert_eq!(got.get("v"), Some(&json!(1)));
    assert_eq!(
        put(vec![rd("a", a1, false, json!({"v": 1}), vec![])]).await,
        [Ok(O::Present)]
    );
    let b2 = rev(2, 'b');
    assert_eq!(
        put(vec![rd("a", b2, false, json!({"v": 2}), vec![a1])]).await,
        [Ok(O::Written)]
    );
    assert_eq!(
        put(vec![rd("a", rev(2, 'a'), false, json!({}), vec![])]).await,
        [Ok(O::Lost)]
    );
    assert_eq!(
        current("a").await.expect("live").rev(),
        Some(b2.to_string().as_str())
    );
    assert_eq!(
        put(vec![rd("a", rev(1, 'f'), false, json!({}), vec![])]).await,
        [Ok(O::Lost)]
    );

    // A deletion that extends the current revision carries; one that does not loses to the
    // live revision.
    let d2 = rev(2, 'd');
    let out = put(vec![
        rd("b", a1, false, json!({"x": 1}), vec![]),
        rd("b", d2, true, json!({}), vec![a1]),
        rd("c", a1, false, json!({"x": 1}), vec![]),
        rd("c", rev(5, 'e'), true, json!({}), vec![]),
    ])
    .await;
    assert_eq!(
        out,
        [Ok(O::Written), Ok(O::Written), Ok(O::Written), Ok(O::Lost)]
    );
    assert_eq!(kind(&current("b").await), Kind::NotFound);
    assert!(current("c").await.is_ok());
    let changes = svc.changes(&db, None, 10).await.expect("changes");
    let b = changes
        .results
        .iter()
        .find(|c| c.id == "b")
        .expect("b in changes");
    assert!(b.deleted);
    assert_eq!(b.rev, d2);
    let info = svc.database_info(&db).await.expect("info");
    assert_eq!((info.doc_count, info.doc_del_count), (2, 1));

    // A deleted document is brought back by a live descendant.
    let b3 = rev(3, 'b');
    assert_eq!(
        put(vec![rd(
            "b",
            b3,
            false,
            json!({"back": true}),
            vec![d2, a1]
        )])
        .await,
        [Ok(O::Written)]
    );
    assert_eq!(
        current("b").await.expect("back").get("back"),
        Some(&json!(true))
    );
    let ids = ["b".to_owned(), "c".to_owned(), "nope".to_owned()];
    assert_eq!(
        svc.current_revisions(&db, &ids).await.expect("revs"),
        [Some((b3, false)), Some((a1, false)), None]
    );
    assert_eq!(
        svc.current_revisions(&unique_db("none"), &ids)
            .await
            .expect("revs"),
        [None, None, None]
    );

    let bad = svc
        .put_revisions(
            &db,
            vec![
                rd("_x", a1, false, json!({}), vec![]),
                rd("y", a1, false, json!({"_attachments": {}}), vec![]),
                rd("z", a1, false, json!({"ok": 1}), vec![]),
            ],
        )
        .await
        .expect("batch");
    assert_eq!(kind(&bad[0]), Kind::InvalidDocumentId);
    assert_eq!(kind(&bad[1]), Kind::InvalidDocument);
    assert_eq!(bad[2].as_ref().ok(), Some(&O::Written));
    drop_db(svc, &db).await;
}

/// Replication carries revision paths: `read_revisions` gives a document at exactly a
/// revision, edits and deletions alike, with its ancestors newest first; `put_revisions` of a
/// later revision with its history extends what the target stored (no branch), however many
/// edits lie between; a revision that brings only the recent part of its path keeps the
/// stored rest; `put_revisions_over` (winners given) writes as `put_revisions` does; an
/// unknown revision is `NotFound` (a superseded one too, unless the provider
/// still keeps its body, as CouchDB does until compaction).
pub async fn revision_histories_travel(svc: &Service) {
    use crate::{RevisionOutcome as O, RevisionedDoc};
    let src = unique_db("revs-src");
    let mut path = Vec::new();
    for v in 1..=3 {
        let written = svc
            .save(&src, "a", doc(json!({"v": v})))
            .await
            .expect("save");
        path.insert(0, written.rev);
    }
    let (r3, r2, r1) = (path[0], path[1], path[2]);
    let read = |db: String, wanted: Vec<(&'static str, Rev)>| {
        let svc = Arc::clone(svc);
        async move {
            let wanted: Vec<(String, Rev)> = wanted
                .into_iter()
                .map(|(id, r)| (id.to_owned(), r))
                .collect();
            svc.read_revisions(&db, &wanted).await
        }
    };
    let got = read(src.clone(), vec![("a", r3)]).await.expect("read");
    assert_eq!(
        got[0].as_ref().expect("at r3"),
        &RevisionedDoc {
            id: "a".into(),
            rev: r3,
            deleted: false,
            body: json!({"v": 3}).as_object().cloned().unwrap_or_default(),
            history: vec![r2, r1],
        }
    );
    let got = read(src.clone(), vec![("a", r1), ("zz", r1), ("_bad", r1)])
        .await
        .expect("read");
    // A superseded revision: CouchDB keeps its body until compaction, memory and embedded
    // keep winners only. Either way nothing but that revision comes back.
    match &got[0] {
        Ok(old) => assert_eq!((old.rev, old.body.get("v")), (r1, Some(&json!(1)))),
        Err(_) => assert_eq!(kind(&got[0]), Kind::NotFound, "a superseded revision"),
    }
    assert_eq!(kind(&got[1]), Kind::NotFound, "an unknown document");
    assert_eq!(kind(&got[2]), Kind::InvalidDocumentId);
    assert_eq!(
        kind(&read(unique_db("none"), vec![("a", r1)]).await),
        Kind::NotFound
    );
    assert_eq!(
        kind(&read(unique_db("none"), vec![]).await),
        Kind::NotFound,
        "a missing database, even with nothing asked"
    );
    let r4 = svc.delete(&src, "a").await.expect("delete").rev;
    let tombstone = read(src.clone(), vec![("a", r4)]).await.expect("read");
    let tombstone = tombstone[0].as_ref().expect("the tombstone");
    assert!(tombstone.deleted && tombstone.body.is_empty());
    assert_eq!(tombstone.history, [r3, r2, r1]);

    // The target has `a` at r2; r4 arrives with its path and extends it: no branch survives.
    let tgt = unique_db("revs-tgt");
    let at = |rev: Rev, deleted: bool, body: Value, history: Vec<Rev>| RevisionedDoc {
        id: "a".into(),
        rev,
        deleted,
        body: body.as_object().cloned().unwrap_or_default(),
        history,
    };
    let put = |docs: Vec<RevisionedDoc>| {
        let svc = Arc::clone(svc);
        let tgt = tgt.clone();
        async move {
            svc.put_revisions(&tgt, docs)
                .await
                .expect("put")
                .into_iter()
                .map(|r| r.map_err(|e| format!("{e:?}")))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        put(vec![at(r2, false, json!({"v": 2}), vec![r1])]).await,
        [Ok(O::Written)]
    );
    // Written over the winner just read, as a migration does (no second lookup).
    let winners = svc
        .current_revisions(&tgt, &["a".to_owned()])
        .await
        .expect("winners");
    assert_eq!(winners, [Some((r2, false))]);
    assert_eq!(
        kind(
            &svc.put_revisions_over(&tgt, vec![tombstone.clone()], Vec::new())
                .await
        ),
        Kind::InvalidDocument,
        "one winner per document"
    );
    let over = svc
        .put_revisions_over(&tgt, vec![tombstone.clone()], winners)
        .await
        .expect("put over");
    assert_eq!(over.len(), 1);
    assert_eq!(over[0].as_ref().ok(), Some(&O::Written));
    assert_eq!(kind(&svc.get(&tgt, "a").await), Kind::NotFound);
    let copied = read(tgt.clone(), vec![("a", r4)]).await.expect("read");
    assert_eq!(copied[0].as_ref().expect("r4").history, [r3, r2, r1]);

    // A revision bringing only its parent joins the stored path below it.
    let rev = |generation: u64, c: char| -> Rev {
        format!("{generation}-{}", c.to_string().repeat(32))
            .parse()
            .expect("valid rev")
    };
    let (b1, b2, b3) = (rev(1, '1'), rev(2, '2'), rev(3, '3'));
    let b = |rev: Rev, history: Vec<Rev>| RevisionedDoc {
        id: "b".into(),
        ..at(rev, false, json!({"g": rev.generation()}), history)
    };
    assert_eq!(
        put(vec![b(b2, vec![b1]), b(b3, vec![b2])]).await,
        [Ok(O::Written), Ok(O::Written)]
    );
    let joined = read(tgt.clone(), vec![("b", b3)]).await.expect("read");
    assert_eq!(joined[0].as_ref().expect("b3").history, [b2, b1]);
    drop_db(svc, &src).await;
    drop_db(svc, &tgt).await;
}

/// Strings and mixed types sort and compare exactly as a genuine CouchDB 3.5 did
/// (`testdata/couchdb-collation.json`): ICU root collation, types in CouchDB's order.
pub async fn find_collation_matches_recorded_couchdb(svc: &Service) {
    let data: Value = serde_json::from_str(include_str!("../../testdata/couchdb-collation.json"))
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

/// Runs every behaviour in turn against one service.
pub async fn run_all(svc: &Service) {
    macro_rules! each {
        ($($name:ident),* $(,)?) => { $( $name(svc).await; )* };
    }
    crate::__conformance_behaviours!(each;);
}

/// Generates one `#[tokio::test]` per conformance behaviour.
///
/// `$make` is an async expression evaluating to the [`Service`] under test; it is evaluated
/// once per test. Behaviours a server cannot be held to are named after `skip:`, each with an
/// expression giving `Option<&str>`: `Some(reason)` skips (evaluated when the test runs, so it
/// can depend on which server was found). A skipped behaviour still has its test, which prints
/// `SKIPPED <name>: <reason>`; skips are named, never silent.
///
/// ```text
/// docstore_providers::conformance_tests!(async { make_service().await });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!($make; skip: []);
    };
    ($make:expr; skip: [$($skip:ident => $why:expr),* $(,)?]) => {
        $crate::__conformance_behaviours!($crate::__conformance_each; $make; [$($skip => $why),*];);
    };
}

/// Every behaviour of the suite, once: calls `$callback!(<prefix tokens> name, name, …)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_behaviours {
    ($callback:path; $($prefix:tt)*) => {
        $callback!($($prefix)*
            database_names_are_validated,
            document_ids_are_validated,
            awkward_ids_round_trip,
            reserved_fields_are_rejected,
            revisions_have_couchdb_shape_and_grow,
            revisions_match_recorded_couchdb,
            save_without_rev_upserts,
            save_with_rev_is_optimistic,
            conflict_errors_name_the_document,
            concurrent_updates_lose_nothing,
            concurrent_conditional_saves_have_one_winner,
            concurrent_revless_saves_all_succeed,
            delete_then_get_is_not_found,
            recreate_after_delete_continues_generation,
            reads_never_create_databases,
            listing_is_in_byte_order,
            pagination_has_no_gaps_or_repeats,
            bulk_results_keep_input_order,
            large_bulk_saves_keep_order,
            changes_include_deletions,
            local_documents_are_invisible,
            databases_list_sorted_and_delete,
            large_documents_round_trip,
            unicode_bodies_round_trip,
            numbers_round_trip,
            returned_documents_are_copies,
            typed_helpers_round_trip,
            find_selects_by_equality_and_paths,
            find_comparisons_collate_across_types,
            find_array_operators,
            find_type_exists_mod_regex,
            find_logical_operators,
            find_fields_returns_exactly_them,
            find_sort_requires_an_index,
            find_limit_and_skip,
            find_without_limit_returns_everything,
            find_indexes_follow_writes,
            find_indexes_stay_invisible,
            find_errors_are_typed,
            put_revisions_keep_couchdb_winners,
            revision_histories_travel,
            find_sort_skips_fields_fixed_by_eq,
            find_missing_fields_match_only_exists_false,
            find_not_inside_a_field,
            find_sort_by_id_needs_an_id_condition,
            ensure_index_replaces_a_redefined_index,
            find_collation_matches_recorded_couchdb,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($make:expr; [$($skip:ident => $why:expr),*]; $($name:ident),* $(,)?) => {
        /// The reason to skip a behaviour on this provider, if any (evaluated per test).
        fn __conformance_skip(name: &str) -> Option<String> {
            let _ = name;
            $(
                if name == stringify!($skip) {
                    let why: Option<&str> = $why;
                    if let Some(why) = why {
                        return Some(why.to_string());
                    }
                }
            )*
            None
        }
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(why) = __conformance_skip(stringify!($name)) {
                    println!("SKIPPED {}: {}", stringify!($name), why);
                    return;
                }
                let svc: $crate::conformance::Service = $make.await;
                $crate::conformance::$name(&svc).await;
            }
        )*
    };
}
