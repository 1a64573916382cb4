//! Replication between every pair of providers (memory, embedded, a genuine CouchDB): trees,
//! winners and conflicts end identical on both sides; runs resume from checkpoints; filters,
//! `create_target`, continuous mode, two-way sync; the same branches replicated by CouchDB's
//! own `POST /_replicate` and by `replicate` give the same trees; request counts on CouchDB.

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use docstore::replicate::{ReplicateOptions, replicate, sync};
use docstore::serde_json::{Value, json};
use docstore::{
    AttachmentRead, CouchDbProvider, DatabaseService, DatabaseServiceExt, Document, GetOptions,
    NewAttachment, Rev, RevisionedDoc, Settings, get_database_service,
};
use docstore_providers::testing::unique_db;

type Service = Arc<dyn DatabaseService>;

fn doc(value: Value) -> Document {
    Document::from_value(value).expect("object")
}

async fn memory() -> Service {
    get_database_service(&Settings::memory())
        .await
        .expect("memory")
}

async fn embedded(dir: &tempfile::TempDir, name: &str) -> Service {
    get_database_service(&Settings::embedded(dir.path().join(name)))
        .await
        .expect("embedded")
}

async fn couchdb() -> Service {
    get_database_service(&support::couchdb().settings())
        .await
        .expect("couchdb")
}

/// The ids of a database, tombstones included (from its changes feed).
async fn all_ids(svc: &Service, db: &str) -> Vec<String> {
    let page = match svc.changes(db, None, 10_000).await {
        Err(e) if e.is_database_missing() => return Vec::new(),
        other => other.expect("changes"),
    };
    let mut ids: Vec<String> = page.results.into_iter().map(|c| c.id).collect();
    ids.sort();
    ids
}

async fn assert_same_trees(a: &Service, a_db: &str, b: &Service, b_db: &str) {
    let ids = all_ids(a, a_db).await;
    assert_eq!(ids, all_ids(b, b_db).await, "the same documents");
    for id in &ids {
        assert_eq!(
            support::document_tree(&**a, a_db, id).await,
            support::document_tree(&**b, b_db, id).await,
            "{id}: {} {a_db} vs {} {b_db}",
            a.provider_name(),
            b.provider_name()
        );
    }
}

fn rev(text: &str) -> Rev {
    text.parse().expect("rev")
}

/// A source with edits, deletions, a re-creation and a three-way conflict.
async fn fill(svc: &Service, db: &str) {
    for i in 0..30 {
        svc.save(db, &format!("d{i:02}"), doc(json!({"n": i})))
            .await
            .expect("save");
    }
    for i in 0..10 {
        svc.save(
            db,
            &format!("d{i:02}"),
            doc(json!({"n": i, "edited": true})),
        )
        .await
        .expect("edit");
    }
    for i in 10..15 {
        svc.delete(db, &format!("d{i:02}")).await.expect("delete");
    }
    svc.save(db, "d10", doc(json!({"back": true})))
        .await
        .expect("re-create");
    // Attachments: inline text (stored gzip), and a binary upload on an edited document.
    svc.save(
        db,
        "att",
        doc(json!({"kind": "files", "_attachments": {
            "note.txt": {"content_type": "text/plain", "data": "aGVsbG8sIHdvcmxk"}}})),
    )
    .await
    .expect("inline attachment");
    let d03 = svc.get(db, "d03").await.expect("d03");
    let d03_rev = rev(d03.rev().expect("rev"));
    svc.put_attachment(
        db,
        "d03",
        "pic.bin",
        Some(&d03_rev),
        NewAttachment::new("application/octet-stream", picture()),
    )
    .await
    .expect("upload");
    let root = rev("1-11111111111111111111111111111111");
    let branches: Vec<RevisionedDoc> = [
        "2-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "2-cccccccccccccccccccccccccccccccc",
    ]
    .iter()
    .enumerate()
    .map(|(n, r)| RevisionedDoc {
        id: "conflicted".into(),
        rev: rev(r),
        deleted: n == 2,
        body: json!({"branch": n})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        history: vec![root],
    })
    .collect();
    svc.put_revisions(db, branches).await.expect("branches");
}

/// 200 KB of bytes that do not compress, for an attachment spanning several chunks.
fn picture() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Both attachments of `fill` read back with their bytes.
async fn assert_attachments(svc: &Service, db: &str) {
    let read = AttachmentRead::default();
    let pic = svc
        .get_attachment(db, "d03", "pic.bin", &read)
        .await
        .expect("pic.bin");
    assert_eq!(pic.data.as_ref(), &picture()[..], "{}", svc.provider_name());
    let note = svc
        .get_attachment(db, "att", "note.txt", &read)
        .await
        .expect("note.txt");
    assert_eq!(note.data.as_ref(), b"hello, world");
}

/// One-shot replication between two providers: identical trees; a second run finds nothing
/// to do; later changes (an edit, a deletion, a new conflict branch) follow incrementally.
async fn one_way(source: Service, target: Service) {
    let (src, tgt) = (unique_db("rep-src"), unique_db("rep-tgt"));
    fill(&source, &src).await;
    let options = ReplicateOptions::default();
    let first = replicate(&*source, &src, &*target, &tgt, &options)
        .await
        .expect("replicates");
    assert_eq!(first.doc_write_failures, 0, "{:?}", first.failures);
    assert_eq!(first.changes_read, 32);
    assert_eq!(first.missing_found, 34, "32 winners and two other leaves");
    assert_eq!(first.docs_written, 34);
    assert_same_trees(&source, &src, &target, &tgt).await;
    assert_attachments(&target, &tgt).await;

    let again = replicate(&*source, &src, &*target, &tgt, &options)
        .await
        .expect("re-runs");
    assert_eq!((again.changes_read, again.docs_written), (0, 0));
    assert_eq!(
        again.start_last_seq, first.end_last_seq,
        "resumed from the checkpoint"
    );

    source
        .save(&src, "d20", doc(json!({"late": 1})))
        .await
        .expect("edit");
    source.delete(&src, "d21").await.expect("delete");
    let later = replicate(&*source, &src, &*target, &tgt, &options)
        .await
        .expect("incremental");
    assert_eq!((later.changes_read, later.docs_written), (2, 2));
    assert_same_trees(&source, &src, &target, &tgt).await;
    for (svc, db) in [(&source, &src), (&target, &tgt)] {
        let _ = svc.delete_database(db).await;
    }
}

#[tokio::test]
async fn memory_and_embedded_replicate_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    one_way(memory().await, embedded(&dir, "a").await).await;
    one_way(embedded(&dir, "b").await, memory().await).await;
    let shared = embedded(&dir, "c").await;
    one_way(Arc::clone(&shared), shared).await;
}

#[tokio::test]
async fn couchdb_replicates_with_memory_and_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    one_way(couchdb().await, memory().await).await;
    one_way(embedded(&dir, "a").await, couchdb().await).await;
    one_way(couchdb().await, embedded(&dir, "b").await).await;
    one_way(couchdb().await, couchdb().await).await;
}

/// Two sides edit the same documents concurrently, then sync both ways: both hold every
/// branch and answer the same winners and conflicts; resolving on one side and syncing again
/// leaves one live leaf everywhere.
async fn two_way(a: Service, b: Service) {
    let (a_db, b_db) = (unique_db("sync-a"), unique_db("sync-b"));
    for i in 0..5 {
        a.save(&a_db, &format!("s{i}"), doc(json!({"v": 0})))
            .await
            .expect("save");
    }
    let options = ReplicateOptions::default();
    sync(&*a, &a_db, &*b, &b_db, &options).await.expect("sync");
    for i in 0..5 {
        let id = format!("s{i}");
        a.save(&a_db, &id, doc(json!({"side": "a"})))
            .await
            .expect("a");
        if i % 2 == 0 {
            b.save(&b_db, &id, doc(json!({"side": "b"})))
                .await
                .expect("b");
        } else {
            b.delete(&b_db, &id).await.expect("b deletes");
        }
    }
    b.save(&b_db, "only-b", doc(json!({}))).await.expect("b");
    sync(&*a, &a_db, &*b, &b_db, &options).await.expect("sync");
    assert_same_trees(&a, &a_db, &b, &b_db).await;
    let conflicted = a
        .get_with(
            &a_db,
            "s0",
            &GetOptions {
                conflicts: true,
                ..GetOptions::default()
            },
        )
        .await
        .expect("s0");
    assert!(conflicted.get("_conflicts").is_some(), "{conflicted:?}");

    let resolved = a
        .resolve_conflicts(&a_db, "s0", |leaves| Ok(leaves[0].clone()))
        .await
        .expect("resolves");
    assert_eq!(resolved.removed.len(), 1);
    sync(&*a, &a_db, &*b, &b_db, &options).await.expect("sync");
    assert_same_trees(&a, &a_db, &b, &b_db).await;
    assert_eq!(b.live_leaves(&b_db, "s0").await.expect("leaves").len(), 1);
    let _ = a.delete_database(&a_db).await;
    let _ = b.delete_database(&b_db).await;
}

#[tokio::test]
async fn two_way_sync_converges() {
    let dir = tempfile::tempdir().expect("tempdir");
    two_way(memory().await, embedded(&dir, "a").await).await;
    two_way(embedded(&dir, "b").await, couchdb().await).await;
}

#[tokio::test]
async fn filters_and_missing_targets() {
    let source = memory().await;
    let target = memory().await;
    let src = unique_db("filter-src");
    for (id, kind) in [("a", "x"), ("b", "y"), ("c", "x")] {
        source
            .save(&src, id, doc(json!({"kind": kind})))
            .await
            .expect("save");
    }
    let by_id = ReplicateOptions {
        doc_ids: Some(vec!["b".into()]),
        ..ReplicateOptions::default()
    };
    replicate(&*source, &src, &*target, "by-id", &by_id)
        .await
        .expect("doc_ids");
    assert_eq!(all_ids(&target, "by-id").await, ["b"]);
    let by_selector = ReplicateOptions {
        selector: Some(json!({"kind": "x"})),
        ..ReplicateOptions::default()
    };
    replicate(&*source, &src, &*target, "by-selector", &by_selector)
        .await
        .expect("selector");
    assert_eq!(all_ids(&target, "by-selector").await, ["a", "c"]);
    let bad = ReplicateOptions {
        selector: Some(json!({"kind": {"$nope": 1}})),
        ..ReplicateOptions::default()
    };
    let err = replicate(&*source, &src, &*target, "bad", &bad)
        .await
        .expect_err("an invalid selector");
    assert!(
        matches!(err, docstore::Error::InvalidQuery { .. }),
        "{err:?}"
    );

    let strict = ReplicateOptions {
        create_target: false,
        ..ReplicateOptions::default()
    };
    let err = replicate(&*source, &src, &*target, "absent", &strict)
        .await
        .expect_err("no target");
    assert!(err.is_database_missing(), "{err:?}");
    let err = replicate(
        &*source,
        "no-such-source",
        &*target,
        "x",
        &ReplicateOptions::default(),
    )
    .await
    .expect_err("no source");
    assert!(err.is_database_missing(), "{err:?}");
    // create_target creates an empty target even when there is nothing to copy.
    let empty = unique_db("empty-src");
    source
        .put_local(&empty, "x", doc(json!({})))
        .await
        .expect("db");
    replicate(
        &*source,
        &empty,
        &*target,
        "created",
        &ReplicateOptions::default(),
    )
    .await
    .expect("creates");
    assert_eq!(
        target
            .database_info("created")
            .await
            .expect("exists")
            .doc_count,
        0
    );
}

/// A continuous replication carries writes made after it started, until cancelled.
#[tokio::test]
async fn continuous_replication_follows_until_cancelled() {
    let source = memory().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = embedded(&dir, "t").await;
    let src = unique_db("cont-src");
    source
        .save(&src, "first", doc(json!({})))
        .await
        .expect("save");
    let cancel = Arc::new(AtomicBool::new(false));
    let options = ReplicateOptions {
        continuous: true,
        cancel: Some(Arc::clone(&cancel)),
        poll_interval: Duration::from_millis(20),
        ..ReplicateOptions::default()
    };
    let run = {
        let (source, target, src) = (Arc::clone(&source), Arc::clone(&target), src.clone());
        tokio::spawn(async move { replicate(&*source, &src, &*target, "cont-tgt", &options).await })
    };
    for i in 0..20 {
        source
            .save(&src, &format!("live{i}"), doc(json!({"i": i})))
            .await
            .expect("save");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while all_ids(&target, "cont-tgt").await.len() < 21 {
        assert!(Instant::now() < deadline, "the target caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = run.await.expect("task").expect("replication");
    assert!(report.cancelled);
    assert_eq!(report.docs_written, 21);
}

/// CouchDB's own replicator and `replicate` copy the same branches into the same trees.
#[tokio::test]
async fn same_trees_as_couchdbs_own_replicator() {
    let server = support::couchdb();
    let couch = couchdb().await;
    let (src, via_couch) = (unique_db("own-src"), unique_db("own-tgt"));
    fill(&couch, &src).await;
    let body = json!({
        "source": format!("{}/{src}", server.self_url()),
        "target": format!("{}/{via_couch}", server.self_url()),
        "create_target": true,
    });
    let (status, answer) = server
        .request("POST", "/_replicate", Some(&body.to_string()))
        .expect("_replicate");
    assert_eq!(status, 200, "{answer}");
    let dir = tempfile::tempdir().expect("tempdir");
    for target in [memory().await, embedded(&dir, "own").await] {
        replicate(
            &*couch,
            &src,
            &*target,
            "copy",
            &ReplicateOptions::default(),
        )
        .await
        .expect("replicates");
        assert_same_trees(&couch, &via_couch, &target, "copy").await;
    }
    let _ = couch.delete_database(&src).await;
    let _ = couch.delete_database(&via_couch).await;
}

/// Requests to CouchDB: a replication with nothing to do costs 3 (both checkpoints and one
/// changes page); each batch of changed documents a constant number.
#[tokio::test]
async fn replication_request_counts_on_couchdb() {
    let p = Arc::new(
        CouchDbProvider::connect(support::couchdb().config())
            .await
            .expect("connects"),
    );
    let (src, tgt) = (unique_db("count-src"), unique_db("count-tgt"));
    let docs: Vec<Document> = (0..120)
        .map(|i| doc(json!({"_id": format!("c{i:03}"), "i": i})))
        .collect();
    p.save_many(&src, docs).await.expect("fill");
    let options = ReplicateOptions {
        batch_size: 50,
        ..ReplicateOptions::default()
    };
    let before = p.request_count();
    let first = replicate(&*p, &src, &*p, &tgt, &options)
        .await
        .expect("first");
    let first_requests = p.request_count() - before;
    assert_eq!(first.docs_written, 120);
    // Checkpoint reads (2) and the target's creation; then per batch of 50: changes,
    // revs_diff, _bulk_get, _bulk_docs and two checkpoint writes.
    assert!(
        first_requests <= 3 + 2 + 3 * 6 + 3,
        "{first_requests} requests for 3 batches"
    );
    let before = p.request_count();
    let idle = replicate(&*p, &src, &*p, &tgt, &options)
        .await
        .expect("idle");
    assert_eq!(idle.docs_written, 0);
    assert!(
        p.request_count() - before <= 3,
        "{}",
        p.request_count() - before
    );

    let more: Vec<Document> = (0..50)
        .map(|i| doc(json!({"_id": format!("m{i:03}")})))
        .collect();
    p.save_many(&src, more).await.expect("more");
    let before = p.request_count();
    let batch = replicate(&*p, &src, &*p, &tgt, &options)
        .await
        .expect("batch");
    assert_eq!(batch.docs_written, 50);
    assert!(
        p.request_count() - before <= 3 + 6,
        "{}",
        p.request_count() - before
    );
    let _ = p.delete_database(&src).await;
    let _ = p.delete_database(&tgt).await;
}
