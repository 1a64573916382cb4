//! Replication next to the least a raw client can do for the same copy, in one run:
//!
//! - embedded → CouchDB: `replicate` vs a raw client reading the embedded store's pages and
//!   posting them with `_bulk_docs` (`new_edits: false`, revisions kept), same batch size;
//! - CouchDB → embedded: `replicate` vs a raw client reading `_changes` pages, fetching the
//!   documents with `_bulk_get?revs=true` and writing them into raw fjall (one `SyncAll`
//!   batch per page);
//! - continuous replication embedded → CouchDB while a writer commits 100 documents a
//!   second: the lag from the source's commit to the document being readable on the target,
//!   p50/p99 (the target: p99 < 500 ms).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use docstore::replicate::{ReplicateOptions, replicate};
use docstore::serde_json::{self, Value, json};
use docstore::{CouchDbProvider, DatabaseService, Document, EmbeddedConfig, EmbeddedProvider};
use docstore_providers::testing::unique_db;
use fjall::PersistMode;
use reqwest::Method;

use crate::common::{Row, body, rate};
use crate::couchdb::Raw;
use crate::embedded::raw_store;
use crate::migration::fill;
use crate::support;

const SECTION: &str = "replication";
const BATCH: usize = 1000;

/// Continuous-replication lag at a steady write rate: (p50, p99, max) in milliseconds.
pub struct Lag {
    pub writes_per_s: usize,
    pub docs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

pub async fn run(docs: usize) -> (Vec<Row>, Option<Lag>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = tokio::task::spawn_blocking(support::couchdb)
        .await
        .expect("server");
    let couch = Arc::new(
        CouchDbProvider::connect(server.config())
            .await
            .expect("connect"),
    );
    let mut raw = Raw::new(server);
    let config = EmbeddedConfig::new(dir.path().join("source"));
    let source = EmbeddedProvider::open(config.clone())
        .await
        .expect("embedded");
    let db = "bench";
    fill(&source, db, docs).await;
    let options = ReplicateOptions {
        batch_size: BATCH,
        ..ReplicateOptions::default()
    };
    let mut rows = Vec::new();

    // embedded -> CouchDB.
    let raw_db = unique_db("bench-rep-raw");
    raw.send(Method::PUT, &raw_db, None).await;
    let (start, before) = (Instant::now(), raw.requests);
    let mut after: Option<String> = None;
    let mut copied = 0;
    loop {
        let page = source
            .list_page(db, after.as_deref(), BATCH)
            .await
            .expect("page");
        copied += page.docs.len();
        let body =
            serde_json::to_vec(&json!({"new_edits": false, "docs": page.docs})).expect("json");
        let answer = raw
            .send(Method::POST, &format!("{raw_db}/_bulk_docs"), Some(body))
            .await;
        assert_eq!(answer.as_array().map(Vec::len), Some(0), "nothing refused");
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(copied, docs);
    let raw_rate = rate(docs, start.elapsed());
    let raw_requests = (raw.requests - before) as f64 / docs.div_ceil(BATCH) as f64;
    raw.send(Method::DELETE, &raw_db, None).await;

    // Into a new database (created by the run: no `_revs_diff`), and into one that already
    // holds a document (every batch asks `_revs_diff`).
    let target_db = unique_db("bench-rep");
    for holding in [false, true] {
        let into = if holding {
            unique_db("bench-rep-holding")
        } else {
            target_db.clone()
        };
        if holding {
            let first = source.list_page(db, None, 1).await.expect("page").docs;
            let (id, rev) = (
                first[0].id().unwrap_or_default().to_owned(),
                first[0].rev().unwrap_or_default().parse().expect("rev"),
            );
            let seed = source.read_revisions(db, &[(id, rev)]).await.expect("read");
            let seed = seed.into_iter().map(|r| r.expect("revision")).collect();
            couch.write_revisions(&into, seed).await.expect("seed");
        }
        let (start, before) = (Instant::now(), couch.request_count());
        let report = replicate(&source, db, &*couch, &into, &options)
            .await
            .expect("replicates");
        let ours = rate(report.changes_read as usize, start.elapsed());
        assert_eq!(report.docs_written as usize, docs - usize::from(holding));
        let requests = (couch.request_count() - before) as f64 / docs.div_ceil(BATCH) as f64;
        let label = if holding {
            "a target holding documents"
        } else {
            "a new database"
        };
        rows.push(
            Row::new(
                SECTION,
                format!("embedded -> CouchDB ({label}) vs raw _bulk_docs (new_edits: false)"),
                ours,
                raw_rate,
            )
            .unit("docs/s")
            .requests(requests, raw_requests)
            .target(0.8),
        );
        if holding {
            let _ = couch.delete_database(&into).await;
        }
    }

    // CouchDB -> embedded, from the database just written.
    let (raw_fjall, raw_docs) = raw_store(&dir.path().join("raw"), &config);
    let (start, before) = (Instant::now(), raw.requests);
    let mut since = "0".to_owned();
    let mut copied = 0;
    loop {
        let page = raw
            .send(
                Method::GET,
                &format!("{target_db}/_changes?style=all_docs&limit={BATCH}&since={since}"),
                None,
            )
            .await;
        let results = page["results"].as_array().cloned().unwrap_or_default();
        if results.is_empty() {
            break;
        }
        let wanted: Vec<Value> = results
            .iter()
            .flat_map(|r| {
                let id = r["id"].clone();
                r["changes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |c| json!({"id": id, "rev": c["rev"]}))
            })
            .collect();
        let body = serde_json::to_vec(&json!({ "docs": wanted })).expect("json");
        let got = raw
            .send(
                Method::POST,
                &format!("{target_db}/_bulk_get?revs=true"),
                Some(body),
            )
            .await;
        let mut batch = raw_fjall.batch().durability(Some(PersistMode::SyncAll));
        for result in got["results"].as_array().into_iter().flatten() {
            for doc in result["docs"].as_array().into_iter().flatten() {
                let ok = &doc["ok"];
                let key = format!(
                    "{}/{}",
                    ok["_id"].as_str().unwrap_or(""),
                    ok["_rev"].as_str().unwrap_or("")
                );
                batch.insert(&raw_docs, key, serde_json::to_vec(ok).expect("json"));
                copied += 1;
            }
        }
        batch.commit().expect("raw commit");
        since = page["last_seq"].as_str().unwrap_or("0").to_owned();
        if page["pending"].as_u64() == Some(0) {
            break;
        }
    }
    assert_eq!(copied, docs);
    let raw_rate = rate(docs, start.elapsed());
    let raw_requests = (raw.requests - before) as f64 / docs.div_ceil(BATCH) as f64;
    let back = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("back")))
        .await
        .expect("embedded");
    let (start, before) = (Instant::now(), couch.request_count());
    let report = replicate(&*couch, &target_db, &back, db, &options)
        .await
        .expect("replicates back");
    let ours = rate(report.docs_written as usize, start.elapsed());
    assert_eq!(report.docs_written as usize, docs);
    let requests = (couch.request_count() - before) as f64 / docs.div_ceil(BATCH) as f64;
    rows.push(
        Row::new(
            SECTION,
            "CouchDB -> embedded vs raw _bulk_get + fjall",
            ours,
            raw_rate,
        )
        .unit("docs/s")
        .requests(requests, raw_requests)
        .target(0.8),
    );
    let _ = couch.delete_database(&target_db).await;

    let lag = continuous_lag(&source, &couch).await;
    (rows, Some(lag))
}

/// A writer commits 100 documents a second into the embedded store for 10 s while a
/// continuous replication carries them to CouchDB; a watcher follows the target's changes
/// and notes when each document arrives.
async fn continuous_lag(source: &EmbeddedProvider, couch: &Arc<CouchDbProvider>) -> Lag {
    const PER_S: usize = 100;
    const DOCS: usize = 1000;
    let (src_db, tgt_db) = (unique_db("lag-src"), unique_db("lag-tgt"));
    let cancel = Arc::new(AtomicBool::new(false));
    let options = ReplicateOptions {
        continuous: true,
        cancel: Some(Arc::clone(&cancel)),
        poll_interval: Duration::from_millis(50),
        batch_size: 500,
        ..ReplicateOptions::default()
    };
    source
        .put_local(
            &src_db,
            "start",
            Document::from_value(json!({})).expect("object"),
        )
        .await
        .expect("source db");
    let replication = {
        let (source, couch, src_db, tgt_db) = (
            source.clone(),
            Arc::clone(couch),
            src_db.clone(),
            tgt_db.clone(),
        );
        tokio::spawn(async move { replicate(&source, &src_db, &*couch, &tgt_db, &options).await })
    };
    let committed: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let writer = {
        let (source, src_db, committed) = (source.clone(), src_db.clone(), Arc::clone(&committed));
        tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..DOCS {
                let due = start + Duration::from_secs_f64(i as f64 / PER_S as f64);
                tokio::time::sleep_until(due.into()).await;
                let id = format!("lag{i:05}");
                // Noted before the save, so the watcher never sees a document before its
                // time (the lag then includes the durable save itself).
                committed
                    .lock()
                    .expect("lock")
                    .insert(id.clone(), Instant::now());
                source
                    .save(&src_db, &id, Document::from(body(i)))
                    .await
                    .expect("save");
            }
        })
    };
    let mut lags: Vec<f64> = Vec::with_capacity(DOCS);
    let mut since: Option<String> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while lags.len() < DOCS && Instant::now() < deadline {
        match couch.changes(&tgt_db, since.as_deref(), 1000).await {
            Ok(page) => {
                let now = Instant::now();
                for change in &page.results {
                    if let Some(at) = committed.lock().expect("lock").get(&change.id) {
                        lags.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                    }
                }
                since = Some(page.last_seq);
            }
            Err(e) if e.is_database_missing() => {}
            Err(e) => panic!("watching the target: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.await.expect("writer");
    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    replication.await.expect("task").expect("replication");
    assert_eq!(lags.len(), DOCS, "every document arrived");
    lags.sort_by(f64::total_cmp);
    let pick = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    let _ = couch.delete_database(&tgt_db).await;
    Lag {
        writes_per_s: PER_S,
        docs: DOCS,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
    }
}
