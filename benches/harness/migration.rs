//! Migration next to the original design's per-document copy loop (list everything, then
//! save each document) and, into CouchDB, next to a raw client that reads the same source
//! pages and posts them with `_bulk_docs` (`new_edits: false`, revisions kept) in batches of
//! the same size — the least a revision-preserving copy can send.

use std::sync::Arc;
use std::time::Instant;

use docstore::migrate::{MigrateOptions, migrate};
use docstore::serde_json::{self, json};
use docstore::{
    CouchDbProvider, DatabaseService, Document, EmbeddedConfig, EmbeddedProvider, MemoryProvider,
};
use docstore_providers::testing::unique_db;
use reqwest::Method;

use crate::common::{Row, document_batches, rate, timed_save_many};
use crate::couchdb::Raw;
use crate::support;

const SECTION: &str = "migration";
const BATCH: usize = 1000;

/// Fills `db` with `n` 1 KB documents, 1,000 per `save_many`.
pub async fn fill(svc: &dyn DatabaseService, db: &str, n: usize) {
    timed_save_many(svc, db, document_batches(n, BATCH)).await;
}

/// The original design's copy: list everything, then save each document (up to `limit`).
async fn copy_loop(
    source: &dyn DatabaseService,
    source_db: &str,
    target: &dyn DatabaseService,
    target_db: &str,
    limit: usize,
) -> f64 {
    let start = Instant::now();
    let docs = source.list_all(source_db).await.expect("list");
    let mut copied = 0;
    for d in docs.into_iter().take(limit) {
        let id = d.id().unwrap_or_default().to_owned();
        let mut body = d.into_map();
        body.shift_remove("_rev");
        target
            .save(target_db, &id, Document::from(body))
            .await
            .expect("save");
        copied += 1;
    }
    assert!(copied > 0, "the loop copied nothing");
    rate(copied, start.elapsed())
}

fn options(db: &str, verify: bool) -> MigrateOptions {
    MigrateOptions {
        databases: Some(vec![db.to_owned()]),
        batch_size: BATCH,
        verify,
        ..MigrateOptions::default()
    }
}

async fn timed_migrate(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    db: &str,
    n: usize,
    verify: bool,
) -> f64 {
    let start = Instant::now();
    let report = migrate(source, target, &options(db, verify))
        .await
        .expect("migrate");
    let elapsed = start.elapsed();
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.databases[0].created, n as u64);
    rate(report.databases[0].read as usize, elapsed)
}

pub async fn run(docs: usize, loop_docs: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = "bench";
    let mut rows = Vec::new();

    let memory = MemoryProvider::new();
    fill(&memory, db, docs).await;
    let open = |name: &str| EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join(name)));
    let embedded = open("a").await.expect("embedded");
    let ours = timed_migrate(&memory, &embedded, db, docs, true).await;
    let looped = open("b").await.expect("embedded");
    let original = copy_loop(&memory, db, &looped, db, docs).await;
    rows.push(
        Row::new(
            SECTION,
            "memory -> embedded vs per-doc loop",
            ours,
            original,
        )
        .unit("docs/s"),
    );
    drop(looped);

    let server = tokio::task::spawn_blocking(support::couchdb)
        .await
        .expect("server");
    let couch = Arc::new(
        CouchDbProvider::connect(server.config())
            .await
            .expect("connect"),
    );
    let mut raw = Raw::new(server);

    // Raw: the source read in pages of BATCH (the same provider call the loop uses), each page
    // one `_bulk_docs` with the revisions kept.
    let raw_db = unique_db("bench-mig-raw");
    raw.send(Method::PUT, &raw_db, None).await;
    let (start, before) = (Instant::now(), raw.requests);
    let mut after: Option<String> = None;
    let mut copied = 0;
    loop {
        let page = embedded
            .list_page(db, after.as_deref(), BATCH)
            .await
            .expect("page");
        copied += page.docs.len();
        let body =
            serde_json::to_vec(&json!({"new_edits": false, "docs": page.docs})).expect("json");
        let answer = raw
            .send(Method::POST, &format!("{raw_db}/_bulk_docs"), Some(body))
            .await;
        assert_eq!(
            answer.as_array().map(Vec::len),
            Some(0),
            "no document refused"
        );
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(copied, docs);
    let raw_rate = rate(docs, start.elapsed());
    let raw_requests = (raw.requests - before) as f64 / docs.div_ceil(BATCH) as f64;
    raw.send(Method::DELETE, &raw_db, None).await;

    // Into a new database (its batches skip `_revs_diff`), and into one that already holds a
    // document (every batch asks `_revs_diff`).
    let mut verified = 0.0;
    for holding in [false, true] {
        for verify in [false, true] {
            if holding {
                // One of the source's documents at its revision: the target holds documents,
                // and the run still verifies.
                let first = embedded.list_page(db, None, 1).await.expect("page").docs;
                let (id, rev) = (
                    first[0].id().unwrap_or_default().to_owned(),
                    first[0].rev().unwrap_or_default().parse().expect("rev"),
                );
                let copy = embedded
                    .read_revisions(db, &[(id, rev)])
                    .await
                    .expect("read");
                let copy = copy.into_iter().map(|r| r.expect("revision")).collect();
                couch
                    .put_revisions(db, copy)
                    .await
                    .expect("seed the target");
            }
            let before = couch.request_count();
            let rate =
                timed_migrate(&embedded, &*couch, db, docs - usize::from(holding), verify).await;
            if verify && !holding {
                verified = rate;
            }
            let requests = (couch.request_count() - before) as f64 / docs.div_ceil(BATCH) as f64;
            let into = if holding {
                "a target holding documents"
            } else {
                "a new database"
            };
            let mode = if verify { "verified" } else { "--no-verify" };
            rows.push(
                Row::new(
                    SECTION,
                    format!("embedded -> CouchDB ({into}), {mode} vs raw _bulk_docs"),
                    rate,
                    raw_rate,
                )
                .unit("docs/s")
                .requests(requests, raw_requests)
                // Issue 18: every migration row ≥ 0.8 of raw `_bulk_docs`, verified or not
                // (raw verifies nothing).
                .target(0.8),
            );
            couch.delete_database(db).await.expect("cleanup");
        }
    }
    let loop_db = unique_db("bench-mig-loop");
    let couch_loop = copy_loop(&embedded, db, &*couch, &loop_db, loop_docs).await;
    let _ = couch.delete_database(&loop_db).await;
    rows.push(
        Row::new(
            SECTION,
            format!("embedded -> CouchDB vs per-doc loop ({loop_docs})"),
            verified,
            couch_loop,
        )
        .unit("docs/s"),
    );
    rows
}
