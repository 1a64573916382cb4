//! Listing and changes: byte-ordered listings, cursor pagination, the changes feed, and the
//! list of databases.

use serde_json::json;

use super::{Kind, Service, doc, ids, kind};
use crate::testing::{drop_db, unique_db};
use crate::{Document, Rev};

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

/// The changes feed gives each changed document once, at its latest change (deletions
/// included, with their revisions), `_local` documents never; a token resumes without loss or
/// repeat, and `pending` counts what is left. Where the provider promises commit order
/// (memory, embedded) the order is checked too; a CouchDB database's shards interleave, so
/// there the same facts are checked as sets.
pub async fn changes_include_deletions(svc: &Service) {
    let ordered = svc.capabilities().changes_in_commit_order;
    // The ids in feed order where that is promised, else sorted.
    let as_promised = |ids: Vec<String>| {
        let mut ids = ids;
        if !ordered {
            ids.sort();
        }
        ids
    };
    let db = unique_db("changes");
    svc.save(&db, "a", doc(json!({"v": 1}))).await.unwrap();
    svc.save(&db, "b", doc(json!({"v": 1}))).await.unwrap();
    let c1 = svc.save(&db, "c", doc(json!({"v": 1}))).await.unwrap();
    let a2 = svc.save(&db, "a", doc(json!({"v": 2}))).await.unwrap();
    let b2 = svc.delete(&db, "b").await.unwrap();
    svc.put_local(&db, "checkpoint", doc(json!({"seq": 1})))
        .await
        .unwrap();

    let all = svc.changes(&db, None, 100).await.unwrap();
    let mut summary: Vec<(String, bool, Rev)> = all
        .results
        .iter()
        .map(|c| (c.id.clone(), c.deleted, c.rev))
        .collect();
    let mut expected = vec![
        ("c".to_owned(), false, c1.rev),
        ("a".to_owned(), false, a2.rev),
        ("b".to_owned(), true, b2.rev),
    ];
    if !ordered {
        summary.sort_by(|x, y| x.0.cmp(&y.0));
        expected.sort_by(|x, y| x.0.cmp(&y.0));
    }
    assert_eq!(summary, expected);
    assert_eq!(all.pending, 0);

    let first = svc.changes(&db, None, 2).await.unwrap();
    assert_eq!(first.results.len(), 2);
    assert_eq!(first.pending, 1);
    let rest = svc.changes(&db, Some(&first.last_seq), 2).await.unwrap();
    assert_eq!(rest.pending, 0);
    let paged: Vec<String> = first
        .results
        .iter()
        .chain(&rest.results)
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(
        as_promised(paged),
        as_promised(vec!["c".into(), "a".into(), "b".into()])
    );
    let none = svc.changes(&db, Some(&all.last_seq), 10).await.unwrap();
    assert!(none.results.is_empty());

    svc.save(&db, "c", doc(json!({"v": 2}))).await.unwrap();
    let after = svc.changes(&db, Some(&all.last_seq), 10).await.unwrap();
    let after_ids: Vec<&str> = after.results.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(after_ids, ["c"]);
    drop_db(svc, &db).await;

    // `pending` counts down page by page; a write landing between two pages is not lost (in
    // commit order, the written document moves to the end of the feed).
    let feed = unique_db("changes-pending");
    let docs: Vec<Document> = (0..10)
        .map(|i| doc(json!({"_id": format!("p{i}")})))
        .collect();
    for r in svc.save_many(&feed, docs).await.unwrap() {
        r.unwrap();
    }
    let (mut since, mut pendings, mut seen) = (None, Vec::new(), Vec::new());
    loop {
        let page = svc.changes(&feed, since.as_deref(), 3).await.unwrap();
        pendings.push(page.pending);
        seen.extend(page.results.iter().map(|c| c.id.clone()));
        since = Some(page.last_seq);
        if page.pending == 0 {
            break;
        }
    }
    assert_eq!(pendings, [7, 4, 1, 0]);
    let every: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    assert_eq!(as_promised(seen), as_promised(every.clone()));

    let first = svc.changes(&feed, None, 3).await.unwrap();
    assert_eq!(first.pending, 7);
    svc.save(&feed, "p0", doc(json!({"v": 2}))).await.unwrap();
    let next = svc.changes(&feed, Some(&first.last_seq), 3).await.unwrap();
    if ordered {
        let ids: Vec<&str> = next.results.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["p3", "p4", "p5"]);
        assert_eq!(next.pending, 5, "p6 to p9, then p0 again");
    }
    // Resuming from the first page's token loses nothing: every document not on the first
    // page, and p0 again at its new revision.
    let (mut since, mut rest) = (Some(first.last_seq), Vec::new());
    loop {
        let page = svc.changes(&feed, since.as_deref(), 3).await.unwrap();
        rest.extend(page.results.iter().map(|c| c.id.clone()));
        since = Some(page.last_seq);
        if page.pending == 0 {
            break;
        }
    }
    let mut expected: Vec<String> = every
        .iter()
        .filter(|id| !first.results.iter().any(|c| &c.id == *id))
        .cloned()
        .collect();
    if !expected.contains(&"p0".to_owned()) {
        expected.push("p0".into());
    }
    rest.sort();
    expected.sort();
    assert_eq!(rest, expected);
    drop_db(svc, &feed).await;
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
