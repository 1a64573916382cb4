//! Live changes: how long a committed document takes to reach a watcher, `watch` next to
//! the least the raw thing underneath can do to tell a consumer task about a write, in one
//! run:
//!
//! - memory: `MemoryProvider::save` + `watch` vs a `DashMap<String, Value>` insert followed
//!   by a `tokio::sync::broadcast` send of the id to a consumer task;
//! - embedded: `EmbeddedProvider::save` (durable, `SyncAll`) + `watch` vs a raw fjall
//!   insert committed with `SyncAll` on the blocking pool, then a `tokio::sync::watch`
//!   wake; the consumer task reads the keys after the last one it saw itself (on the
//!   blocking pool, as the provider's stream does). The provider wakes its streams as soon
//!   as a batch is visible, before the group-commit fsync its `save` then waits for; raw
//!   wakes after its `SyncAll` commit returns, so only raw's delivery includes the fsync;
//! - CouchDB: `CouchDbProvider::save` + `watch` (default 10 s heartbeat) vs a raw reqwest
//!   `PUT /db/id` and a raw `_changes?feed=continuous&since=now&heartbeat=10000` reader
//!   splitting the body into lines.
//!
//! One writer writes `BENCH_WATCH_DOCS` documents (default 500) of 1 KB, one every 5 ms,
//! noting the `Instant` just before each write call starts; a consumer task notes the
//! `Instant` each id is delivered. The latency is delivery minus write start, so it
//! includes the commit itself (an `fsync` on embedded, a round trip on CouchDB). Each side
//! first writes one warm-up document and waits for it, so the feed is open and the consumer
//! polling before the timed writes. The rows are milliseconds, p50 and p99: lower is
//! better, and the ratio column (ours / raw) is better below 1.

use std::collections::HashMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use docstore::serde_json::{self, Map, Value};
use docstore::{
    ChangeStream, CouchDbProvider, DatabaseService, Document, EmbeddedConfig, EmbeddedProvider,
    MemoryProvider, WatchOptions,
};
use docstore_providers::testing::unique_db;
use fjall::{Keyspace, PersistMode};
use futures::{Stream, StreamExt};
use reqwest::Method;
use tokio::sync::{broadcast, oneshot, watch};

use crate::common::{Row, body, id};
use crate::couchdb::Raw;
use crate::embedded::raw_store;
use crate::support;

const SECTION: &str = "watch";
/// The writer's pace: one document every `PACE`.
const PACE: Duration = Duration::from_millis(5);
/// Written and awaited before the timed writes; sorts before every `id(i)` (raw fjall's
/// consumer reads keys in order).
const WARMUP: &str = "doc-warmup";
/// The longest wait for the warm-up, then for every timed document.
const PATIENCE: Duration = Duration::from_secs(60);

/// Latency percentiles of one side, in milliseconds.
struct Latency {
    p50: f64,
    p99: f64,
}

pub async fn run(docs: usize) -> Vec<Row> {
    let docs = docs.max(1);
    let mut rows = Vec::new();
    let mut push = |provider: &str, ours: Latency, raw: Latency| {
        // The table prints one decimal; memory's latencies are tens of microseconds.
        println!(
            "  watch: {provider}: ours p50 {:.3} ms, p99 {:.3} ms | raw p50 {:.3} ms, p99 {:.3} ms",
            ours.p50, ours.p99, raw.p50, raw.p99
        );
        for (label, o, r) in [("p50", ours.p50, raw.p50), ("p99", ours.p99, raw.p99)] {
            rows.push(Row::new(SECTION, format!("{provider} {label} latency"), o, r).unit("ms"));
        }
    };
    let (ours, raw) = memory(docs).await;
    push("memory", ours, raw);
    let (ours, raw) = embedded(docs).await;
    push("embedded", ours, raw);
    let (ours, raw, requests) = couchdb(docs).await;
    push("CouchDB", ours, raw);
    println!(
        "  watch: CouchDB requests per write (besides the one open feed): ours {:.2}, raw {:.2}",
        requests.0, requests.1
    );
    rows
}

/// Ids of `stream`'s changes, each as soon as the stream yields it.
fn ids(stream: ChangeStream) -> impl Stream<Item = String> + Send + 'static {
    stream.map(|change| change.expect("live change").change.id)
}

async fn memory(docs: usize) -> (Latency, Latency) {
    let ours = MemoryProvider::new();
    let db = "watch";
    ours.save(db, "setup", Document::new()).await.expect("db");
    let stream = ours.watch(db, WatchOptions::new()).await.expect("watch");
    let ours_lat = measure(
        ids(stream),
        docs,
        async |id: String, b: Map<String, Value>| {
            ours.save(db, &id, Document::from(b)).await.expect("save");
        },
    )
    .await;

    let raw: DashMap<String, Value> = DashMap::new();
    let (tx, rx) = broadcast::channel::<String>(4096);
    let delivered = futures::stream::unfold(rx, |mut rx| async move {
        let id = rx.recv().await.expect("raw broadcast");
        Some((id, rx))
    });
    let raw_lat = measure(
        delivered,
        docs,
        async |id: String, b: Map<String, Value>| {
            raw.insert(id.clone(), Value::Object(b));
            tx.send(id).expect("a receiver");
        },
    )
    .await;
    (ours_lat, raw_lat)
}

async fn embedded(docs: usize) -> (Latency, Latency) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EmbeddedConfig::new(dir.path().join("ours"));
    let ours = EmbeddedProvider::open(config.clone()).await.expect("open");
    let db = "watch";
    ours.save(db, "setup", Document::new()).await.expect("db");
    let stream = ours.watch(db, WatchOptions::new()).await.expect("watch");
    let ours_lat = measure(
        ids(stream),
        docs,
        async |id: String, b: Map<String, Value>| {
            ours.save(db, &id, Document::from(b)).await.expect("save");
        },
    )
    .await;

    let (raw, ks) = raw_store(&dir.path().join("raw"), &config);
    let (tx, rx) = watch::channel(0u64);
    let delivered = raw_keys(ks.clone(), rx).flat_map(futures::stream::iter);
    let raw_lat = measure(
        delivered,
        docs,
        async |id: String, b: Map<String, Value>| {
            let bytes = serde_json::to_vec(&b).expect("json");
            let (raw, ks) = (raw.clone(), ks.clone());
            tokio::task::spawn_blocking(move || {
                let mut batch = raw.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&ks, id, bytes);
                batch.commit()
            })
            .await
            .expect("join")
            .expect("raw commit");
            // After the commit is visible, as the provider signals its streams.
            tx.send_modify(|count| *count = count.wrapping_add(1));
        },
    )
    .await;
    (ours_lat, raw_lat)
}

/// The raw fjall consumer: on each wake, the keys after the last one seen, in one read on
/// the blocking pool (marked seen before reading, so no commit is missed).
fn raw_keys(
    ks: Keyspace,
    wake: watch::Receiver<u64>,
) -> impl Stream<Item = Vec<String>> + Send + 'static {
    futures::stream::unfold(
        (ks, wake, None::<Vec<u8>>),
        |(ks, mut wake, mut last)| async move {
            loop {
                wake.borrow_and_update();
                let (reader, after) = (ks.clone(), last.clone());
                let keys = tokio::task::spawn_blocking(move || {
                    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
                    reader
                        .range::<Vec<u8>, _>((lower, Bound::Unbounded))
                        .map(|item| item.key().expect("raw key").to_vec())
                        .collect::<Vec<_>>()
                })
                .await
                .expect("join");
                if let Some(newest) = keys.last() {
                    last = Some(newest.clone());
                    let keys = keys
                        .into_iter()
                        .map(|k| String::from_utf8(k).expect("utf-8 key"))
                        .collect();
                    return Some((keys, (ks, wake, last)));
                }
                wake.changed().await.ok()?;
            }
        },
    )
}

/// Latencies on CouchDB, and HTTP requests per timed write (ours, raw).
async fn couchdb(docs: usize) -> (Latency, Latency, (f64, f64)) {
    let server = tokio::task::spawn_blocking(support::couchdb)
        .await
        .expect("server");
    let ours = CouchDbProvider::connect(server.config())
        .await
        .expect("connect");
    let db_ours = unique_db("bench-watch-ours");
    ours.save(&db_ours, "setup", Document::new())
        .await
        .expect("db");
    let stream = ours
        .watch(&db_ours, WatchOptions::new())
        .await
        .expect("watch");
    let before = ours.request_count();
    let ours_lat = measure(
        ids(stream),
        docs,
        async |id: String, b: Map<String, Value>| {
            ours.save(&db_ours, &id, Document::from(b))
                .await
                .expect("save");
        },
    )
    .await;
    // The warm-up write is one of them.
    let ours_requests = (ours.request_count() - before) as f64 / (docs + 1) as f64;

    let mut raw = Raw::new(server);
    let db_raw = unique_db("bench-watch-raw");
    raw.send(Method::PUT, &db_raw, None).await;
    // Opened (its head received) before the first write, so `since=now` precedes it.
    let feed = reqwest::Client::new()
        .get(format!(
            "{}/{db_raw}/_changes?feed=continuous&since=now&heartbeat=10000",
            server.url
        ))
        .basic_auth(&server.user, Some(&server.password))
        .send()
        .await
        .expect("raw feed");
    assert!(feed.status().is_success(), "raw feed: {}", feed.status());
    let before = raw.requests;
    let raw_lat = measure(
        raw_lines(feed),
        docs,
        async |id: String, b: Map<String, Value>| {
            let bytes = serde_json::to_vec(&b).expect("json");
            let answer = raw
                .send(Method::PUT, &format!("{db_raw}/{id}"), Some(bytes))
                .await;
            assert_eq!(answer["ok"], Value::Bool(true), "raw PUT: {answer}");
        },
    )
    .await;
    let raw_requests = (raw.requests - before) as f64 / (docs + 1) as f64;

    ours.delete_database(&db_ours).await.expect("cleanup");
    raw.send(Method::DELETE, &db_raw, None).await;
    (ours_lat, raw_lat, (ours_requests, raw_requests))
}

/// The raw continuous feed: the id of every change line, heartbeats (empty lines) skipped.
fn raw_lines(feed: reqwest::Response) -> impl Stream<Item = String> + Send + 'static {
    let body = feed.bytes_stream().boxed();
    futures::stream::unfold(
        (body, Vec::<u8>::new()),
        |(mut body, mut buffer)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if line.trim_ascii().is_empty() {
                        continue;
                    }
                    let row: Value = serde_json::from_slice(&line).expect("raw change line");
                    let id = row["id"].as_str().expect("raw change id").to_owned();
                    return Some((id, (body, buffer)));
                }
                let piece = body.next().await?.expect("raw feed read");
                buffer.extend_from_slice(&piece);
            }
        },
    )
}

/// Follows `delivered` on a consumer task while `write` writes a warm-up document, then
/// `docs` documents at the writer's pace; the latency percentiles of the timed ones.
async fn measure<S>(
    delivered: S,
    docs: usize,
    mut write: impl AsyncFnMut(String, Map<String, Value>),
) -> Latency
where
    S: Stream<Item = String> + Send + 'static,
{
    let (ready, warm) = oneshot::channel();
    let consumer = tokio::spawn(async move {
        let mut delivered = std::pin::pin!(delivered);
        let mut ready = Some(ready);
        let mut at = HashMap::with_capacity(docs);
        while at.len() < docs {
            let id = delivered.next().await.expect("the feed ended");
            let now = Instant::now();
            if id == WARMUP {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            } else {
                // The first delivery counts (a reconnected feed may repeat a change).
                at.entry(id).or_insert(now);
            }
        }
        at
    });
    write(WARMUP.to_owned(), body(0)).await;
    tokio::time::timeout(PATIENCE, warm)
        .await
        .expect("the warm-up document delivered")
        .expect("consumer");

    let mut started = HashMap::with_capacity(docs);
    let start = Instant::now();
    for i in 0..docs {
        tokio::time::sleep_until((start + PACE * i as u32).into()).await;
        let (id, b) = (id(i), body(i));
        started.insert(id.clone(), Instant::now());
        write(id, b).await;
    }
    let delivered = tokio::time::timeout(PATIENCE, consumer)
        .await
        .expect("every document delivered")
        .expect("consumer");
    let mut lags: Vec<f64> = started
        .iter()
        .map(|(id, at)| {
            let got = delivered.get(id).expect("delivered once written");
            got.duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let pick = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    Latency {
        p50: pick(0.5),
        p99: pick(0.99),
    }
}
