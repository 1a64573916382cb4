//! The embedded provider next to raw fjall 3 with the same engine settings, the same atomic
//! write batches and durability (`SyncAll` per commit) and the same JSON bytes (raw encodes
//! with serde_json, ours with its own encoder, which writes serde_json's bytes faster; both
//! parse with serde_json on reads). Raw fjall does none of docstore's work: no
//! revision check or hashing, change feed, counters, index upkeep or validation. One more
//! update row, with no target, has raw keep each superseded version in the same commit, as
//! ours keeps a superseded revision's body until compaction.
//!
//! Also the single-save latency with 1 and 8 concurrent writers on both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use docstore::serde_json::{self, Map, Value};
use docstore::{DatabaseService, Document, EmbeddedConfig, EmbeddedProvider};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::common::{
    Row, body, document_batches, id, keyed_batches, random_order, rate, selective_low, timed_finds,
    timed_gets,
};

const SECTION: &str = "embedded";
const SINGLE_SAVES: usize = 2000;
const BATCH: usize = 1000;

/// Raw fjall with the provider's engine settings.
pub fn raw_store(dir: &std::path::Path, config: &EmbeddedConfig) -> (Database, Keyspace) {
    let db = Database::builder(dir)
        .cache_size(config.cache_bytes)
        .worker_threads(config.worker_threads)
        .open()
        .expect("open raw fjall");
    let ks = db
        .keyspace("docs", KeyspaceCreateOptions::default)
        .expect("raw keyspace");
    (db, ks)
}

/// What a raw single save does besides writing its document.
#[derive(Clone, Copy)]
enum RawSave {
    /// Write only.
    New,
    /// Read the current version first ("fetch it, write on top of it").
    Update,
    /// Read the current version and keep it under a key of its own (`<key>@superseded`) in
    /// the same commit, as ours keeps a superseded revision's body (served by `?rev=` until
    /// compaction). Each document is updated so once.
    UpdateKeepingOld,
}

/// One durable raw commit of `key` → `bytes`, on the blocking pool as the provider's are.
async fn raw_put(db: &Database, ks: &Keyspace, key: String, bytes: Vec<u8>, how: RawSave) {
    let (db, ks) = (db.clone(), ks.clone());
    tokio::task::spawn_blocking(move || {
        let current = match how {
            RawSave::New => None,
            RawSave::Update | RawSave::UpdateKeepingOld => ks.get(&key)?,
        };
        let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
        if let (RawSave::UpdateKeepingOld, Some(old)) = (how, current) {
            batch.insert(&ks, format!("{key}@superseded"), old);
        }
        batch.insert(&ks, key, bytes);
        batch.commit()
    })
    .await
    .expect("join")
    .expect("raw commit");
}

pub async fn run(docs: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EmbeddedConfig::new(dir.path().join("ours"));
    let ours = EmbeddedProvider::open(config.clone()).await.expect("open");
    let (raw, raw_docs) = raw_store(&dir.path().join("raw"), &config);
    let bodies: Vec<Map<String, Value>> = (0..docs).map(body).collect();
    let mut rows = Vec::new();

    // Single durable saves: new documents, then over them without _rev (twice: the second
    // time raw keeps each superseded version too, as ours does; that row has no target, it
    // shows what is left of the update's gap once both sides write the same bodies). Ours
    // and raw alternate save by save, each side's calls timed alone: each waits on an fsync
    // of the same disk, whose cost drifts over seconds, so a slow stretch falls on both
    // sides alike instead of on whichever ran then.
    for (label, how, target) in [
        ("save (new, durable)", RawSave::New, Some(0.8)),
        ("save (update, no _rev)", RawSave::Update, Some(0.8)),
        (
            "save (update, no _rev) vs raw keeping the superseded version",
            RawSave::UpdateKeepingOld,
            None,
        ),
    ] {
        let (mut ours_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
        for (i, b) in bodies.iter().take(SINGLE_SAVES).enumerate() {
            let start = Instant::now();
            ours.save("single", &id(i), Document::from(b.clone()))
                .await
                .expect("save");
            ours_time += start.elapsed();
            let start = Instant::now();
            let bytes = serde_json::to_vec(b).expect("json");
            raw_put(&raw, &raw_docs, format!("single/{}", id(i)), bytes, how).await;
            raw_time += start.elapsed();
        }
        let row = Row::new(
            SECTION,
            label,
            rate(SINGLE_SAVES, ours_time),
            rate(SINGLE_SAVES, raw_time),
        );
        rows.push(match target {
            Some(target) => row.target(target),
            None => row,
        });
    }

    // save_many in batches of 1,000: the app's documents exist before the save, so building
    // them is not timed; serializing them is, on both sides.
    let batches = document_batches(docs, BATCH);
    // Raw gets the same owned documents (ids and bodies) and drops them after encoding, as
    // the provider does.
    let raw_batches = keyed_batches(&bodies, "bulk", BATCH);
    // Batch by batch alternating, each side timed alone: each side's writes leave flushes
    // and compactions running in the background, which then slow both sides alike.
    let (mut ours_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for (ours_batch, raw_batch) in batches.into_iter().zip(raw_batches) {
        let start = Instant::now();
        for r in ours.save_many("bulk", ours_batch).await.expect("save_many") {
            r.expect("saved");
        }
        ours_time += start.elapsed();
        let start = Instant::now();
        let encoded: Vec<(String, Vec<u8>)> = raw_batch
            .into_iter()
            .map(|(key, b)| (key, serde_json::to_vec(&b).expect("json")))
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
        raw_time += start.elapsed();
    }
    rows.push(
        Row::new(
            SECTION,
            "save_many (1,000 per batch)",
            rate(docs, ours_time),
            rate(docs, raw_time),
        )
        .unit("docs/s")
        .target(0.7),
    );

    // Random point reads, parsed.
    let order = random_order(docs);
    let ours_rate = timed_gets(&ours, "bulk", &order).await;
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
    rows.push(
        Row::new(
            SECTION,
            "get (random, parsed)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .target(0.7),
    );

    // Full listing, parsed: ours in pages of 1,000, raw in one scan.
    let start = Instant::now();
    let listed = ours.list_all("bulk").await.expect("list");
    assert_eq!(listed.len(), docs);
    drop(listed);
    let ours_rate = rate(docs, start.elapsed());
    let start = Instant::now();
    let count = raw_scan(&raw_docs, |_| true).await;
    assert_eq!(count, docs);
    rows.push(
        Row::new(
            SECTION,
            "full listing (parsed)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .unit("docs/s")
        .target(0.7),
    );

    // A query matching 100 documents, without and then with an index, next to raw fjall
    // doing what a query without an index does: scan, parse and filter every document.
    const SCANS: usize = 5;
    const LOOKUPS: usize = 500;
    let start = Instant::now();
    for i in 0..SCANS {
        let low = selective_low(i, docs);
        let found = raw_scan(&raw_docs, move |d| {
            let count = d["count"].as_u64().unwrap_or(0) as usize;
            (low..low + 100).contains(&count)
        })
        .await;
        assert_eq!(found, 100.min(docs));
    }
    let raw_find = rate(SCANS, start.elapsed());
    let ours_find = timed_finds(&ours, "bulk", SCANS, docs).await;
    rows.push(
        Row::new(SECTION, "find 100, no index", ours_find, raw_find)
            .unit("queries/s")
            .target(0.7),
    );
    let start = Instant::now();
    ours.ensure_index("bulk", &["count"], "by-count")
        .await
        .expect("index");
    let build = start.elapsed();
    let ours_indexed = timed_finds(&ours, "bulk", LOOKUPS, docs).await;
    rows.push(
        Row::new(
            SECTION,
            "find 100, index (raw: scan)",
            ours_indexed,
            raw_find,
        )
        .unit("queries/s"),
    );
    println!(
        "  embedded: building the index over {docs} documents took {:.2} s",
        build.as_secs_f64()
    );
    rows
}

/// Scans every raw `bulk/` document, parsing each; returns how many `keep` accepts, after
/// holding them all in memory as a listing's caller does.
async fn raw_scan(
    ks: &Keyspace,
    keep: impl Fn(&Map<String, Value>) -> bool + Send + 'static,
) -> usize {
    let ks = ks.clone();
    tokio::task::spawn_blocking(move || {
        let mut kept = Vec::new();
        for item in ks.prefix("bulk/") {
            let (_key, value) = item.into_inner().expect("item");
            let doc: Map<String, Value> = serde_json::from_slice(&value).expect("parse");
            if keep(&doc) {
                kept.push(doc);
            }
        }
        kept.len()
    })
    .await
    .expect("join")
}

/// Single-save latency with `writers` concurrent writers, ours and raw.
#[derive(Debug, Clone)]
pub struct Latency {
    pub writers: usize,
    /// (throughput saves/s, p50, p99) for ours, then raw.
    pub ours: (f64, Duration, Duration),
    pub raw: (f64, Duration, Duration),
}

/// Durable single saves of new documents by 1 and by 8 concurrent writers.
pub async fn latency() -> Vec<Latency> {
    const SAVES: usize = 2000;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EmbeddedConfig::new(dir.path().join("ours"));
    let ours = Arc::new(EmbeddedProvider::open(config.clone()).await.expect("open"));
    let (raw, raw_docs) = raw_store(&dir.path().join("raw"), &config);
    let mut out = Vec::new();
    for writers in [1usize, 8] {
        let per_writer = SAVES / writers;
        let start = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let ours = Arc::clone(&ours);
                tokio::spawn(async move {
                    let mut times = Vec::with_capacity(per_writer);
                    for k in 0..per_writer {
                        let i = w * per_writer + k;
                        let t = Instant::now();
                        ours.save(&format!("lat{writers}"), &id(i), Document::from(body(i)))
                            .await
                            .expect("save");
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        let ours_stats = stats(tasks, writers * per_writer, start).await;
        let start = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (raw, ks) = (raw.clone(), raw_docs.clone());
                tokio::spawn(async move {
                    let mut times = Vec::with_capacity(per_writer);
                    for k in 0..per_writer {
                        let i = w * per_writer + k;
                        let t = Instant::now();
                        let bytes = serde_json::to_vec(&body(i)).expect("json");
                        raw_put(
                            &raw,
                            &ks,
                            format!("lat{writers}/{}", id(i)),
                            bytes,
                            RawSave::New,
                        )
                        .await;
                        times.push(t.elapsed());
                    }
                    times
                })
            })
            .collect();
        let raw_stats = stats(tasks, writers * per_writer, start).await;
        out.push(Latency {
            writers,
            ours: ours_stats,
            raw: raw_stats,
        });
    }
    out
}

async fn stats(
    tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
    n: usize,
    start: Instant,
) -> (f64, Duration, Duration) {
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    let throughput = rate(n, start.elapsed());
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    (throughput, at(0.50), at(0.99))
}
