//! Live changes (`watch`): where a stream starts, what each change carries (documents and
//! tombstones as CouchDB's `include_docs` shows them), selector filters (CouchDB's
//! `filter=_selector`, tombstones included), concurrent writers, and the end of a stream
//! whose database is deleted. Checked against a genuine CouchDB 3.5 as on every provider.
//!
//! A stream gives each document once at its latest change, like the feed: a document written
//! twice before the stream reads on shows only its second write. The tests read each change
//! before making the next write they want to see on its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use super::{Kind, Service, doc, kind};
use crate::testing::{drop_db, unique_db};
use crate::{ChangeStream, LiveChange, Rev, Since, WatchOptions};

/// Longest wait for one change: a generous bound for a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The next item of `stream`, failing the test if none comes within [`PATIENCE`].
async fn next(stream: &mut ChangeStream) -> crate::Result<LiveChange> {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the watch stream ended"),
        Err(_) => panic!("no change arrived within {PATIENCE:?}"),
    }
}

/// The next `n` changes as (id, rev, deleted).
async fn take(stream: &mut ChangeStream, n: usize) -> Vec<(String, Rev, bool)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let c = next(stream).await.expect("a change, not an error").change;
        out.push((c.id, c.rev, c.deleted));
    }
    out
}

/// Nothing arrives within a short wait (for "this change is filtered out").
async fn quiet(stream: &mut ChangeStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
        panic!("expected no change, got {item:?}");
    }
}

/// A missing database is `NotFound` up front, a bad selector or name is refused, before any
/// change is read.
pub async fn watch_checks_its_arguments(svc: &Service) {
    let db = unique_db("watch-args");
    let missing = svc.watch(&db, WatchOptions::new()).await.map(|_| ());
    assert_eq!(kind(&missing), Kind::NotFound);
    assert!(missing.unwrap_err().is_database_missing());
    svc.save(&db, "a", doc(json!({"v": 1}))).await.unwrap();
    let bad_selector = WatchOptions::new().selector(json!({"v": {"$nope": 1}}));
    let refused = svc.watch(&db, bad_selector).await.map(|_| ());
    assert_eq!(kind(&refused), Kind::InvalidQuery);
    let bad_name = svc.watch("Bad Name", WatchOptions::new()).await.map(|_| ());
    assert_eq!(kind(&bad_name), Kind::InvalidDatabaseName);
    drop_db(svc, &db).await;
}

/// `Since::Start` gives every document once, then what is written later; `Since::Now` only
/// the later writes; `Since::After(seq)` resumes after a delivered change.
pub async fn watch_starts_where_asked(svc: &Service) {
    let db = unique_db("watch-since");
    let a = svc.save(&db, "a", doc(json!({"v": 1}))).await.unwrap();
    let b = svc.save(&db, "b", doc(json!({"v": 1}))).await.unwrap();
    let mut from_start = svc
        .watch(&db, WatchOptions::new().since(Since::Start))
        .await
        .unwrap();
    let mut from_now = svc.watch(&db, WatchOptions::new()).await.unwrap();
    let mut existing = take(&mut from_start, 2).await;
    if !svc.capabilities().changes_in_commit_order {
        existing.sort();
    }
    assert_eq!(
        existing,
        vec![("a".into(), a.rev, false), ("b".into(), b.rev, false)]
    );

    let c = svc.save(&db, "c", doc(json!({"v": 1}))).await.unwrap();
    let seen = next(&mut from_start).await.unwrap();
    assert_eq!((seen.change.id.as_str(), seen.change.rev), ("c", c.rev));
    assert_eq!(seen.doc, None, "no document unless asked");
    assert_eq!(
        take(&mut from_now, 1).await,
        vec![("c".into(), c.rev, false)]
    );

    let d = svc.save(&db, "d", doc(json!({"v": 1}))).await.unwrap();
    let mut resumed = svc
        .watch(
            &db,
            WatchOptions::new().since(Since::After(seen.change.seq)),
        )
        .await
        .unwrap();
    assert_eq!(
        take(&mut resumed, 1).await,
        vec![("d".into(), d.rev, false)]
    );
    drop_db(svc, &db).await;
}

/// With `include_docs`, each change carries the document at its revision; a tombstone reads
/// `{_id, _rev, <fields it was deleted with>, _deleted: true}`, as on CouchDB.
pub async fn watch_includes_documents_and_tombstones(svc: &Service) {
    let db = unique_db("watch-docs");
    svc.save(&db, "seed", doc(json!({}))).await.unwrap();
    let mut stream = svc
        .watch(&db, WatchOptions::new().include_docs(true))
        .await
        .unwrap();
    let first = svc
        .save(&db, "n", doc(json!({"title": "hello", "tags": ["a"]})))
        .await
        .unwrap();
    let live = next(&mut stream).await.unwrap();
    assert_eq!(
        live.doc.map(|d| d.into_value()),
        Some(json!({"_id": "n", "_rev": first.rev.to_string(), "title": "hello", "tags": ["a"]}))
    );
    let mut tombstone = doc(json!({"_deleted": true, "why": "gone"}));
    tombstone.set_rev(&first.rev);
    let gone = svc.save(&db, "n", tombstone).await.unwrap();
    let dead = next(&mut stream).await.unwrap();
    assert!(dead.change.deleted);
    assert_eq!(dead.change.rev, gone.rev);
    assert_eq!(
        dead.doc.map(|d| d.into_value()),
        Some(json!({"_id": "n", "_rev": gone.rev.to_string(), "why": "gone", "_deleted": true}))
    );
    drop_db(svc, &db).await;
}

/// A selector passes only the changes whose document matches, as CouchDB's `_selector`
/// filter does: a deletion is matched against its tombstone, so a selector on the body
/// misses it and `{"_deleted": true}` sees only deletions.
pub async fn watch_filters_with_a_selector(svc: &Service) {
    let db = unique_db("watch-selector");
    svc.save(&db, "seed", doc(json!({}))).await.unwrap();
    let mut typed = svc
        .watch(&db, WatchOptions::new().selector(json!({"type": "x"})))
        .await
        .unwrap();
    let mut deletions = svc
        .watch(&db, WatchOptions::new().selector(json!({"_deleted": true})))
        .await
        .unwrap();
    let a = svc
        .save(&db, "a", doc(json!({"type": "x", "n": 1})))
        .await
        .unwrap();
    svc.save(&db, "b", doc(json!({"type": "y"}))).await.unwrap();
    let c = svc
        .save(&db, "c", doc(json!({"type": "x", "n": 3})))
        .await
        .unwrap();
    let mut matched = take(&mut typed, 2).await;
    if !svc.capabilities().changes_in_commit_order {
        // A sharded server's feed orders documents of different shards as it likes.
        matched.sort();
    }
    assert_eq!(
        matched,
        vec![("a".into(), a.rev, false), ("c".into(), c.rev, false)]
    );
    let gone = svc.delete(&db, "a").await.unwrap();
    quiet(&mut typed).await;
    assert_eq!(
        take(&mut deletions, 1).await,
        vec![("a".into(), gone.rev, true)]
    );
    quiet(&mut deletions).await;
    drop_db(svc, &db).await;
}

/// Four tasks writing 25 documents each while a stream watches: every document is seen,
/// once, at its revision; where the feed is in commit order, the stream's order is the
/// feed's.
pub async fn watch_sees_concurrent_writers(svc: &Service) {
    let db = unique_db("watch-writers");
    svc.save(&db, "seed", doc(json!({}))).await.unwrap();
    let mut stream = svc.watch(&db, WatchOptions::new()).await.unwrap();
    let start = svc.database_info(&db).await.unwrap().update_seq;
    let mut writers = Vec::new();
    for w in 0..4 {
        let svc = Arc::clone(svc);
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..25 {
                let id = format!("w{w}-{i:02}");
                let r = svc.save(&db, &id, doc(json!({"w": w, "i": i}))).await;
                written.push((id, r.expect("save succeeds").rev));
            }
            written
        }));
    }
    let mut expected = BTreeMap::new();
    for w in writers {
        expected.extend(w.await.expect("writer did not panic"));
    }
    let seen = take(&mut stream, 100).await;
    let as_map: BTreeMap<String, Rev> =
        seen.iter().map(|(id, rev, _)| (id.clone(), *rev)).collect();
    assert_eq!(as_map.len(), 100, "no document is seen twice");
    assert_eq!(as_map, expected);
    if svc.capabilities().changes_in_commit_order {
        let feed = svc.changes(&db, Some(&start), 1000).await.unwrap();
        let feed_order: Vec<&str> = feed.results.iter().map(|c| c.id.as_str()).collect();
        let stream_order: Vec<&str> = seen.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(stream_order, feed_order);
    }
    drop_db(svc, &db).await;
}

/// Deleting the watched database ends the stream with `NotFound`.
pub async fn watch_ends_when_the_database_is_deleted(svc: &Service) {
    let db = unique_db("watch-dropped");
    svc.save(&db, "a", doc(json!({"v": 1}))).await.unwrap();
    let mut stream = svc.watch(&db, WatchOptions::new()).await.unwrap();
    svc.delete_database(&db).await.unwrap();
    let end = next(&mut stream).await;
    assert!(
        matches!(&end, Err(e) if e.is_database_missing()),
        "expected the database's NotFound, got {end:?}"
    );
    let after = tokio::time::timeout(PATIENCE, stream.next()).await;
    assert!(matches!(after, Ok(None)), "the stream ends after its error");
    drop_db(svc, &db).await;
}
