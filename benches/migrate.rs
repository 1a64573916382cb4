//! Migration throughput and memory, next to the original design's per-document copy loop
//! (list every document, then save each one) in the same run.
//!
//! `cargo bench --bench migrate` prints:
//! - memory → embedded, `BENCH_MIGRATE_DOCS` documents (default 100,000) of 1 KB: docs/s of
//!   `migrate` (batches of 1,000) and of the loop;
//! - embedded → CouchDB (the server the tests find: `COUCHDB_URL`, a container or the npm
//!   stand-in): docs/s of `migrate` for the same documents, and of the loop over
//!   `BENCH_LOOP_DOCS` of them (default 2,000: at one request per document the full loop
//!   would take many minutes against the stand-in);
//! - peak memory (max RSS of the `docstore migrate` process, embedded → embedded) for 20,000
//!   and 200,000 documents.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use docstore::migrate::{MigrateOptions, migrate};
use docstore::serde_json::{Map, Value, json};
use docstore::{
    DatabaseService, Document, EmbeddedConfig, EmbeddedProvider, MemoryProvider, Settings,
    get_database_service,
};
use docstore_providers::conformance::unique_db;

fn doc(i: usize) -> Document {
    let body: Map<String, Value> = match json!({
        "_id": format!("doc{i:08}"),
        "name": format!("agent {i}"),
        "count": i,
        "tags": ["one", "two", "three"],
        "nested": {"a": i, "b": "x".repeat(40)},
        "text": "lorem ipsum dolor sit amet ".repeat(30),
    }) {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    };
    Document::from(body)
}

async fn fill(svc: &dyn DatabaseService, db: &str, n: usize) {
    for start in (0..n).step_by(1000) {
        let docs = (start..(start + 1000).min(n)).map(doc).collect();
        for r in svc.save_many(db, docs).await.expect("bulk") {
            r.expect("saved");
        }
    }
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
    copied as f64 / start.elapsed().as_secs_f64()
}

async fn timed_migrate(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    db: &str,
    n: usize,
) -> f64 {
    let options = MigrateOptions {
        databases: Some(vec![db.to_owned()]),
        batch_size: 1000,
        ..MigrateOptions::default()
    };
    let start = Instant::now();
    let report = migrate(source, target, &options).await.expect("migrate");
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert!(report.is_success(), "{report:#?}");
    rate
}

/// Max RSS (KiB) of a `docstore migrate` child process over `n` documents.
async fn peak_memory(dir: &Path, n: usize) -> i64 {
    let source = dir.join(format!("peak-src-{n}"));
    {
        let svc = EmbeddedProvider::open(EmbeddedConfig::new(&source))
            .await
            .expect("open");
        fill(&svc, "peak", n).await;
    }
    let status = Command::new(env!("CARGO_BIN_EXE_docstore"))
        .current_dir(dir)
        .args([
            "migrate",
            "--from",
            &format!("embedded:{}", source.display()),
            "--to",
            &format!("embedded:{}", dir.join(format!("peak-dst-{n}")).display()),
            "--batch",
            "1000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("docstore runs");
    assert!(status.success());
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_CHILDREN covers waited-for
    // children, and each call here follows exactly one new child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_MIGRATE_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let loop_docs: usize = std::env::var("BENCH_LOOP_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = "bench";
    // First, before any other child process (getrusage reports the largest waited child).
    let small = peak_memory(dir.path(), 20_000).await;
    let large = peak_memory(dir.path(), 200_000).await;

    let memory = MemoryProvider::new();
    fill(&memory, db, n).await;
    let embedded: Arc<dyn DatabaseService> =
        get_database_service(&Settings::embedded(dir.path().join("a")))
            .await
            .expect("embedded");
    let ours = timed_migrate(&memory, &*embedded, db, n).await;
    let looped: Arc<dyn DatabaseService> =
        get_database_service(&Settings::embedded(dir.path().join("b")))
            .await
            .expect("embedded");
    let original = copy_loop(&memory, db, &*looped, db, n).await;

    let server = support::couchdb();
    let couch = get_database_service(&server.settings())
        .await
        .expect("couchdb");
    let couch_db = unique_db("bench-migrate");
    // The embedded store holds `db`; migrate it under its own name into CouchDB.
    let couch_rate = {
        let options = MigrateOptions {
            databases: Some(vec![db.to_owned()]),
            batch_size: 1000,
            ..MigrateOptions::default()
        };
        let start = Instant::now();
        let report = migrate(&*embedded, &*couch, &options)
            .await
            .expect("migrate");
        assert!(report.is_success(), "{report:#?}");
        n as f64 / start.elapsed().as_secs_f64()
    };
    let couch_loop = copy_loop(&*embedded, db, &*couch, &couch_db, loop_docs).await;
    let _ = couch.delete_database(db).await;
    let _ = couch.delete_database(&couch_db).await;

    println!();
    println!(
        "migration, {n} documents of ~1 KB ({:?} server for CouchDB)",
        server.kind
    );
    println!(
        "{:<34} {:>14} {:>18} {:>8}",
        "copy", "migrate docs/s", "per-doc loop docs/s", "ratio"
    );
    println!(
        "{:<34} {:>14.0} {:>18.0} {:>8.1}",
        "memory -> embedded",
        ours,
        original,
        ours / original
    );
    println!(
        "{:<34} {:>14.0} {:>18.0} {:>8.1}",
        format!("embedded -> CouchDB (loop: {loop_docs})"),
        couch_rate,
        couch_loop,
        couch_rate / couch_loop
    );
    println!("peak memory of `docstore migrate` (embedded -> embedded, batches of 1,000):");
    println!(
        "  20,000 documents: {:.1} MiB; 200,000 documents: {:.1} MiB",
        small as f64 / 1024.0,
        large as f64 / 1024.0
    );
}
