//! Documents and revisions: database names, ids and bodies, revision shape and history,
//! and the save, delete and read rules of one document.

use serde_json::{Map, Value, json};

use super::{Kind, Service, doc, ids, kind};
use crate::testing::{drop_db, unique_db};
use crate::{DatabaseServiceExt, Document, Error, Rev};

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

/// Top-level `_` fields other than `_id`/`_rev`/`_deleted` (a boolean)/`_attachments` (an
/// object), and an `_id` that
/// differs from the id argument, are `InvalidDocument`; `_deleted: true` writes a tombstone;
/// nested `_` fields are ordinary data.
pub async fn reserved_fields_are_rejected(svc: &Service) {
    let db = unique_db("reserved");
    for body in [
        json!({"_attachments": 7}),
        json!({"_deleted": 1}),
        json!({"_deleted": null}),
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
    // `_deleted: true` is no reserved field but a deletion, other fields kept: CouchDB's
    // revision of exactly this tombstone.
    let tombstone = svc
        .save(&db, "t", doc(json!({"_deleted": true, "a": 1})))
        .await
        .unwrap();
    assert_eq!(
        tombstone.rev.to_string(),
        "1-d753478db6d9401dc7197af10c51e5ac"
    );
    assert_eq!(
        svc.get(&db, "t").await.unwrap_err().to_string(),
        Error::doc_not_found(&db, "t", "deleted").to_string()
    );
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
    let data: Value =
        serde_json::from_str(include_str!("../../../testdata/couchdb-revisions.json"))
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

    // A `_rev` for an id the database never had: always `Conflict` where the provider says
    // so; on CouchDB, 409 or (once the shard has served a write) a new document one
    // generation above the `_rev` given, as the server decides.
    let mut on_missing = doc(json!({"v": "on missing"}));
    on_missing.set_rev(&one.rev);
    match svc.save(&db, "missing", on_missing).await {
        Err(Error::Conflict { .. }) => {
            assert_eq!(kind(&svc.get(&db, "missing").await), Kind::NotFound);
        }
        Ok(written) if !svc.capabilities().conflict_on_rev_for_new_document => {
            assert_eq!(written.rev.generation(), one.rev.generation() + 1);
            let got = svc.get(&db, "missing").await.unwrap();
            assert_eq!(got.rev(), Some(written.rev.to_string().as_str()));
            assert_eq!(got.get("v"), Some(&json!("on missing")));
        }
        other => panic!("a _rev for a new document: expected Conflict, got {other:?}"),
    }

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
