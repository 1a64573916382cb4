//! The embedded provider next to raw fjall doing the same JSON work, in one run.
//!
//! `cargo bench --bench embedded` prints: operation, ours (ops/s), raw (ops/s), ratio.
//! Raw fjall uses the same engine settings, the same atomic write batches and durability
//! (`SyncAll` per commit), serializes
//! the same 1 KB JSON documents with serde_json on writes and parses them on reads; it does
//! none of docstore's work (revision check and hashing, change feed, counters, validation).
//! `BENCH_DOCS` sets the number of documents for the bulk, read, scan and find workloads
//! (default 100,000). The find rows run a selective query (100 matches) first without an
//! index, then with one (`ensure_index` on the queried field), both against raw fjall doing
//! what a query without an index does: scan, parse and filter every document.

use std::time::{Duration, Instant};

use docstore::serde_json::{self, Map, Value, json};
use docstore::{DatabaseService, Document, EmbeddedConfig, EmbeddedProvider};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};

const SINGLE_SAVES: usize = 500;
const BATCH: usize = 1000;

fn body(i: usize) -> Map<String, Value> {
    let kind = ["alpha", "beta", "gamma"][i % 3];
    let value = json!({
        "name": format!("agent {i}"),
        "kind": kind,
        "score": i as f64 * 1.5,
        "count": i,
        "active": i.is_multiple_of(2),
        "tags": ["one", "two", "three"],
        "nested": {"a": i, "b": "x".repeat(40)},
        "text": "lorem ipsum dolor sit amet ".repeat(30),
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn id(i: usize) -> String {
    format!("doc{i:08}")
}

struct Row {
    op: &'static str,
    ours: f64,
    raw: f64,
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let docs: usize = std::env::var("BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EmbeddedConfig::new(dir.path().join("ours"));
    let ours = EmbeddedProvider::open(config.clone())
        .await
        .expect("open ours");
    let raw = Database::builder(dir.path().join("raw"))
        .cache_size(config.cache_bytes)
        .worker_threads(config.worker_threads)
        .open()
        .expect("open raw");
    let raw_docs = raw
        .keyspace("docs", KeyspaceCreateOptions::default)
        .expect("raw keyspace");
    let bodies: Vec<Map<String, Value>> = (0..docs).map(body).collect();
    let doc_size = serde_json::to_vec(&bodies[0]).map_or(0, |v| v.len());
    let mut rows = Vec::new();

    // Single durable save of a new document.
    let start = Instant::now();
    for (i, b) in bodies.iter().take(SINGLE_SAVES).enumerate() {
        ours.save("single", &id(i), Document::from(b.clone()))
            .await
            .expect("save");
    }
    let ours_single = rate(SINGLE_SAVES, start.elapsed());
    let start = Instant::now();
    for (i, b) in bodies.iter().take(SINGLE_SAVES).enumerate() {
        let bytes = serde_json::to_vec(b).expect("json");
        let key = id(i);
        let (db, ks) = (raw.clone(), raw_docs.clone());
        tokio::task::spawn_blocking(move || {
            let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(&ks, format!("single/{key}"), bytes);
            batch.commit()
        })
        .await
        .expect("join")
        .expect("raw commit");
    }
    rows.push(Row {
        op: "save (new, durable)",
        ours: ours_single,
        raw: rate(SINGLE_SAVES, start.elapsed()),
    });

    // Single durable save over an existing document, without _rev (revision fetched).
    let start = Instant::now();
    for (i, b) in bodies.iter().take(SINGLE_SAVES).enumerate() {
        ours.save("single", &id(i), Document::from(b.clone()))
            .await
            .expect("save");
    }
    let ours_update = rate(SINGLE_SAVES, start.elapsed());
    let start = Instant::now();
    for (i, b) in bodies.iter().take(SINGLE_SAVES).enumerate() {
        let bytes = serde_json::to_vec(b).expect("json");
        let key = format!("single/{}", id(i));
        let (db, ks) = (raw.clone(), raw_docs.clone());
        tokio::task::spawn_blocking(move || {
            // The raw equivalent of "fetch the current version, write on top of it".
            let _current = ks.get(&key)?;
            let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(&ks, key, bytes);
            batch.commit()
        })
        .await
        .expect("join")
        .expect("raw commit");
    }
    rows.push(Row {
        op: "save (update, no _rev)",
        ours: ours_update,
        raw: rate(SINGLE_SAVES, start.elapsed()),
    });

    // save_many in batches of 1,000. The app owns its documents before it saves them, so
    // building them is not timed; serializing them is, on both sides.
    let batches: Vec<Vec<Document>> = bodies
        .chunks(BATCH)
        .enumerate()
        .map(|(n, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(k, b)| {
                    let mut d = Document::new();
                    d.insert("_id", id(n * BATCH + k));
                    d.as_map_mut().extend(b.clone());
                    d
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    for batch in batches {
        for r in ours.save_many("bulk", batch).await.expect("save_many") {
            r.expect("bulk doc");
        }
    }
    let ours_bulk = rate(docs, start.elapsed());
    let start = Instant::now();
    for (n, chunk) in bodies.chunks(BATCH).enumerate() {
        let encoded: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let bytes = serde_json::to_vec(b).expect("json");
                (format!("bulk/{}", id(n * BATCH + k)), bytes)
            })
            .collect();
        let (db, ks) = (raw.clone(), raw_docs.clone());
        tokio::task::spawn_blocking(move || {
            let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
            for (key, bytes) in encoded {
                batch.insert(&ks, key, bytes);
            }
            batch.commit()
        })
        .await
        .expect("join")
        .expect("raw commit");
    }
    rows.push(Row {
        op: "save_many (1,000 per batch)",
        ours: ours_bulk,
        raw: rate(docs, start.elapsed()),
    });

    // Random point reads, parsed.
    let order: Vec<usize> = {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..docs).map(|_| rng.usize(0..docs)).collect()
    };
    let start = Instant::now();
    for &i in &order {
        let doc = ours.get("bulk", &id(i)).await.expect("get");
        std::hint::black_box(doc);
    }
    let ours_get = rate(docs, start.elapsed());
    let start = Instant::now();
    for &i in &order {
        let key = format!("bulk/{}", id(i));
        let ks = raw_docs.clone();
        let doc = tokio::task::spawn_blocking(move || {
            let bytes = ks.get(key)?.expect("present");
            Ok::<_, fjall::Error>(serde_json::from_slice::<Map<String, Value>>(&bytes))
        })
        .await
        .expect("join")
        .expect("raw get")
        .expect("parse");
        std::hint::black_box(doc);
    }
    rows.push(Row {
        op: "get (random, parsed)",
        ours: ours_get,
        raw: rate(docs, start.elapsed()),
    });

    // Full listing, parsed, in pages of 1,000 (ours) / one scan (raw).
    let start = Instant::now();
    let listed = ours.list_all("bulk").await.expect("list");
    assert_eq!(listed.len(), docs);
    drop(listed);
    let ours_scan = rate(docs, start.elapsed());
    let start = Instant::now();
    let ks = raw_docs.clone();
    let count = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for item in ks.prefix("bulk/") {
            let (_key, value) = item.into_inner().expect("item");
            out.push(serde_json::from_slice::<Map<String, Value>>(&value).expect("parse"));
        }
        out.len()
    })
    .await
    .expect("join");
    assert_eq!(count, docs);
    rows.push(Row {
        op: "full listing (parsed)",
        ours: ours_scan,
        raw: rate(docs, start.elapsed()),
    });

    // A selective query (100 of `docs`) without and with an index, next to raw fjall
    // scanning, parsing and filtering every document (what a query without an index is).
    let selective = |i: usize| {
        let low = (i * 7919) % docs.saturating_sub(100).max(1);
        docstore::FindQuery::new(json!({"count": {"$gte": low, "$lt": low + 100}}))
            .expect("valid query")
    };
    let raw_find = |runs: usize| {
        let ks = raw_docs.clone();
        async move {
            let start = Instant::now();
            for i in 0..runs {
                let low = (i * 7919) % docs.saturating_sub(100).max(1);
                let ks = ks.clone();
                let found = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    for item in ks.prefix("bulk/") {
                        let (_key, value) = item.into_inner().expect("item");
                        let doc: Map<String, Value> =
                            serde_json::from_slice(&value).expect("parse");
                        let count = doc["count"].as_u64().unwrap_or(0) as usize;
                        if (low..low + 100).contains(&count) {
                            out.push(doc);
                        }
                    }
                    out.len()
                })
                .await
                .expect("join");
                assert_eq!(found, 100.min(docs));
            }
            rate(runs, start.elapsed())
        }
    };
    const SCANS: usize = 5;
    const LOOKUPS: usize = 500;
    let start = Instant::now();
    for i in 0..SCANS {
        let found = ours.find("bulk", &selective(i)).await.expect("find");
        assert_eq!(found.len(), 100.min(docs));
    }
    let ours_scan_find = rate(SCANS, start.elapsed());
    let raw_scan_find = raw_find(SCANS).await;
    rows.push(Row {
        op: "find 100, no index (scan)",
        ours: ours_scan_find,
        raw: raw_scan_find,
    });
    let start = Instant::now();
    ours.ensure_index("bulk", &["count"], "by-count")
        .await
        .expect("index");
    let index_build = start.elapsed();
    let start = Instant::now();
    for i in 0..LOOKUPS {
        let found = ours.find("bulk", &selective(i)).await.expect("find");
        assert_eq!(found.len(), 100.min(docs));
    }
    rows.push(Row {
        op: "find 100, index on count",
        ours: rate(LOOKUPS, start.elapsed()),
        raw: raw_scan_find,
    });

    println!();
    println!(
        "embedded provider vs raw fjall 3 (atomic batches, SyncAll commits), {docs} documents of {doc_size} bytes; \
         single saves: {SINGLE_SAVES}"
    );
    println!(
        "{:<30} {:>14} {:>14} {:>8}",
        "operation", "ours ops/s", "raw ops/s", "ratio"
    );
    for r in &rows {
        println!(
            "{:<30} {:>14.1} {:>14.1} {:>8.2}",
            r.op,
            r.ours,
            r.raw,
            r.ours / r.raw
        );
    }
    println!(
        "find rows: queries/s; raw = a scan that parses and filters every document. \
         Building the index over {docs} documents took {:.2} s.",
        index_build.as_secs_f64()
    );
}
