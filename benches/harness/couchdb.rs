//! The CouchDB provider next to a raw HTTP client sending the minimal requests for the same
//! operations, against the same server in one run: the server the tests find
//! (`COUCHDB_URL`, a `couchdb:3` container, or the npm stand-in). The raw client is plain
//! reqwest with basic auth, serializing the same 1 KB documents and parsing the answers.
//! Each row gives both sides the same knowledge, so they send the same requests: an update
//! without `_rev` is a winner lookup and a `PUT` for ours, a `HEAD` (the winner's `ETag`)
//! and a `PUT` for raw; an update with `_rev` is one `PUT` on each side.

use std::time::{Duration, Instant};

use docstore::serde_json::{self, Map, Value, json};
use docstore::{CouchDbProvider, DatabaseService, Document, FindQuery};
use docstore_providers::testing::unique_db;
use reqwest::Method;

use crate::common::{Row, body, id, rate, selective_low};
use crate::support;

const SECTION: &str = "couchdb";
/// Issue 18: every CouchDB row ≥ 0.95 of the raw client, with equal request counts.
const TARGET: f64 = 0.95;
const SINGLE: usize = 300;
const BATCH: usize = 1000;

/// A minimal CouchDB client that counts its requests.
pub struct Raw {
    client: reqwest::Client,
    url: String,
    user: String,
    password: String,
    pub requests: u64,
}

impl Raw {
    pub fn new(server: &support::CouchServer) -> Self {
        Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(32)
                .tcp_nodelay(true)
                .build()
                .expect("client"),
            url: server.url.clone(),
            user: server.user.clone(),
            password: server.password.clone(),
            requests: 0,
        }
    }

    pub async fn send(&mut self, method: Method, path: &str, body: Option<Vec<u8>>) -> Value {
        self.requests += 1;
        let mut request = self
            .client
            .request(method, format!("{}/{path}", self.url))
            .basic_auth(&self.user, Some(&self.password))
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("raw request");
        let bytes = response.bytes().await.expect("raw body");
        serde_json::from_slice(&bytes).expect("raw JSON")
    }

    /// The winning revision of the document at `path`, from the `ETag` of a `HEAD`.
    pub async fn head_rev(&mut self, path: &str) -> String {
        self.requests += 1;
        let response = self
            .client
            .head(format!("{}/{path}", self.url))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .expect("raw HEAD");
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .expect("an ETag");
        etag.trim_matches('"').to_owned()
    }
}

/// Each side's time and requests over a loop that alternates them operation by operation.
struct Interleaved {
    ours: Duration,
    raw: Duration,
    ours_before: u64,
    raw_before: u64,
}

impl Interleaved {
    fn start(ours: &CouchDbProvider, raw: &Raw) -> Self {
        Self {
            ours: Duration::ZERO,
            raw: Duration::ZERO,
            ours_before: ours.request_count(),
            raw_before: raw.requests,
        }
    }

    /// (operations per second, requests) of ours, then of raw, for `n` operations each.
    fn finish(&self, ours: &CouchDbProvider, raw: &Raw, n: usize) -> ((f64, u64), (f64, u64)) {
        (
            (rate(n, self.ours), ours.request_count() - self.ours_before),
            (rate(n, self.raw), raw.requests - self.raw_before),
        )
    }
}

pub async fn run(docs: usize) -> Vec<Row> {
    let server = tokio::task::spawn_blocking(support::couchdb)
        .await
        .expect("server");
    println!("  couchdb: {:?} server at {}", server.kind, server.url);
    let ours = CouchDbProvider::connect(server.config())
        .await
        .expect("connect");
    let mut raw = Raw::new(server);
    let (db_ours, db_raw) = (unique_db("bench-ours"), unique_db("bench-raw"));
    ours.save(&db_ours, "warmup", Document::new())
        .await
        .expect("warm up");
    raw.send(Method::PUT, &db_raw, None).await;
    let mut rows = Vec::new();
    let mut push =
        |label: &str, n: usize, ours_side: (f64, u64), raw_side: (f64, u64), per: usize| {
            rows.push(
                Row::new(SECTION, label, ours_side.0, raw_side.0)
                    .requests(
                        ours_side.1 as f64 / per as f64,
                        raw_side.1 as f64 / per as f64,
                    )
                    .unit(if n == per { "ops/s" } else { "docs/s" })
                    .target(TARGET),
            );
        };

    // Single operations, one document at a time, ours and raw alternating document by
    // document, each side's calls timed alone: a single write waits on the server's fsync,
    // whose stalls (and compactions) then fall on both sides alike instead of on whichever
    // ran in a slow minute. New documents; then over them without _rev (each side learns
    // the winner); then with the _rev each side got from its last write; then reads.
    let mut single = Interleaved::start(&ours, &raw);
    for i in 0..SINGLE {
        let doc = Document::from(body(i));
        let t = Instant::now();
        ours.save(&db_ours, &id(i), doc).await.expect("save");
        single.ours += t.elapsed();
        let b = body(i);
        let t = Instant::now();
        let bytes = serde_json::to_vec(&b).expect("json");
        let answer = raw
            .send(Method::PUT, &format!("{db_raw}/{}", id(i)), Some(bytes))
            .await;
        single.raw += t.elapsed();
        assert!(answer["rev"].is_string(), "raw save: {answer}");
    }
    let (o, r) = single.finish(&ours, &raw, SINGLE);
    push("save (new)", SINGLE, o, r, SINGLE);

    let mut single = Interleaved::start(&ours, &raw);
    let (mut ours_revs, mut raw_revs) = (Vec::with_capacity(SINGLE), Vec::with_capacity(SINGLE));
    for i in 0..SINGLE {
        let doc = Document::from(body(i + 1));
        let t = Instant::now();
        let written = ours.save(&db_ours, &id(i), doc).await.expect("update");
        single.ours += t.elapsed();
        ours_revs.push(written.rev);
        let path = format!("{db_raw}/{}", id(i));
        let t = Instant::now();
        let winner = raw.head_rev(&path).await;
        let mut b = body(i + 1);
        b.insert("_rev".into(), Value::String(winner));
        let bytes = serde_json::to_vec(&b).expect("json");
        let answer = raw.send(Method::PUT, &path, Some(bytes)).await;
        single.raw += t.elapsed();
        raw_revs.push(answer["rev"].as_str().expect("rev").to_owned());
    }
    let (o, r) = single.finish(&ours, &raw, SINGLE);
    push("save (update, no _rev)", SINGLE, o, r, SINGLE);

    let mut single = Interleaved::start(&ours, &raw);
    for (i, (ours_rev, raw_rev)) in ours_revs.iter().zip(&raw_revs).enumerate() {
        let mut b = body(i + 2);
        b.insert("_rev".into(), Value::String(ours_rev.to_string()));
        let doc = Document::from(b);
        let t = Instant::now();
        ours.save(&db_ours, &id(i), doc)
            .await
            .expect("update with _rev");
        single.ours += t.elapsed();
        let t = Instant::now();
        let mut b = body(i + 2);
        b.insert("_rev".into(), Value::String(raw_rev.clone()));
        let bytes = serde_json::to_vec(&b).expect("json");
        let answer = raw
            .send(Method::PUT, &format!("{db_raw}/{}", id(i)), Some(bytes))
            .await;
        single.raw += t.elapsed();
        assert!(answer["rev"].is_string(), "raw update: {answer}");
    }
    let (o, r) = single.finish(&ours, &raw, SINGLE);
    push("save (update, with _rev)", SINGLE, o, r, SINGLE);

    let mut single = Interleaved::start(&ours, &raw);
    for i in 0..SINGLE {
        let t = Instant::now();
        std::hint::black_box(ours.get(&db_ours, &id(i)).await.expect("get"));
        single.ours += t.elapsed();
        let t = Instant::now();
        std::hint::black_box(
            raw.send(Method::GET, &format!("{db_raw}/{}", id(i)), None)
                .await,
        );
        single.raw += t.elapsed();
    }
    let (o, r) = single.finish(&ours, &raw, SINGLE);
    push("get", SINGLE, o, r, SINGLE);

    // save_many of 1,000 new documents per batch, into fresh databases.
    let (bulk_ours, bulk_raw) = (unique_db("bench-bulk-ours"), unique_db("bench-bulk-raw"));
    ours.save(&bulk_ours, "warmup", Document::new())
        .await
        .expect("warm up");
    raw.send(Method::PUT, &bulk_raw, None).await;
    raw.send(
        Method::PUT,
        &format!("{bulk_raw}/warmup"),
        Some(b"{}".to_vec()),
    )
    .await;
    let batches = docs.div_ceil(BATCH);
    let make = |b: usize| -> Vec<Map<String, Value>> {
        (b * BATCH..((b + 1) * BATCH).min(docs))
            .map(|i| {
                let mut m = Map::new();
                m.insert("_id".into(), Value::String(format!("b{}", id(i))));
                m.extend(body(i));
                m
            })
            .collect()
    };
    let ours_batches: Vec<Vec<Document>> = (0..batches)
        .map(|b| make(b).into_iter().map(Document::from).collect())
        .collect();
    let raw_batches: Vec<Vec<Map<String, Value>>> = (0..batches).map(make).collect();
    // Batch by batch alternating, each side's batches timed alone, as the single operations
    // are: a compaction or a slow moment of the server then falls on both sides alike. Who
    // goes first alternates too (ours, raw, raw, ours, ...), so neither side always meets
    // the server just after the other's write.
    let mut bulk = Interleaved::start(&ours, &raw);
    for (b, (ours_batch, raw_batch)) in ours_batches.into_iter().zip(raw_batches).enumerate() {
        let (mut ours_batch, mut raw_batch) = (Some(ours_batch), Some(raw_batch));
        for ours_turn in [b % 2 == 0, b % 2 == 1] {
            if ours_turn {
                let batch = ours_batch.take().expect("one turn per side");
                let t = Instant::now();
                for r in ours.save_many(&bulk_ours, batch).await.expect("save_many") {
                    r.expect("bulk doc");
                }
                bulk.ours += t.elapsed();
            } else {
                let batch = raw_batch.take().expect("one turn per side");
                bulk.raw += raw_bulk_docs(&mut raw, &bulk_raw, batch).await;
            }
        }
    }
    let (o, r) = bulk.finish(&ours, &raw, docs);
    push("save_many (1,000 per batch)", docs, o, r, batches);

    // Full listing in pages of 1,000 with bodies, each side holding what it listed. Both
    // list once untimed first: the server (a JIT-compiled one, for the stand-in) warms up
    // on whichever side runs first otherwise.
    assert_eq!(
        ours.list_all(&bulk_ours).await.expect("list").len(),
        docs + 1
    );
    assert_eq!(raw_list(&mut raw, &bulk_raw).await, docs + 1);
    // Four rounds of whole listings, each side timed alone, who goes first alternating
    // (ours, raw, raw, ours, ...).
    const LISTINGS: usize = 4;
    let mut listing = Interleaved::start(&ours, &raw);
    for round in 0..LISTINGS {
        for ours_turn in [round % 2 == 0, round % 2 == 1] {
            let t = Instant::now();
            if ours_turn {
                let listed = ours.list_all(&bulk_ours).await.expect("list");
                assert_eq!(listed.len(), docs + 1);
                drop(listed);
                listing.ours += t.elapsed();
            } else {
                assert_eq!(raw_list(&mut raw, &bulk_raw).await, docs + 1);
                listing.raw += t.elapsed();
            }
        }
    }
    let (o, r) = listing.finish(&ours, &raw, docs * LISTINGS);
    push(
        "full listing",
        docs * LISTINGS,
        o,
        r,
        docs.div_ceil(1000) * LISTINGS,
    );

    // A query matching 100 documents, without and with an index; the raw client sends the
    // same _find body.
    const QUERIES: usize = 30;
    for (label, index) in [
        ("find 100, no index", false),
        ("find 100, index on count", true),
    ] {
        if index {
            ours.ensure_index(&bulk_ours, &["count"], "by-count")
                .await
                .expect("index");
            let body = json!({"index": {"fields": ["count"]}, "ddoc": "by-count", "name": "by-count", "type": "json"});
            raw.send(
                Method::POST,
                &format!("{bulk_raw}/_index"),
                Some(serde_json::to_vec(&body).expect("json")),
            )
            .await;
        }
        let selector = |i: usize| {
            let low = selective_low(i, docs);
            json!({"count": {"$gte": low, "$lt": low + 100}})
        };
        // One untimed query per side first: the server builds an index on its first use.
        let warm = FindQuery::new(selector(QUERIES)).expect("query");
        ours.find(&bulk_ours, &warm).await.expect("warm-up");
        let body = json!({"selector": selector(QUERIES), "limit": 1000});
        raw.send(
            Method::POST,
            &format!("{bulk_raw}/_find"),
            Some(serde_json::to_vec(&body).expect("json")),
        )
        .await;
        // Query by query alternating, each side timed alone.
        let mut finds = Interleaved::start(&ours, &raw);
        for i in 0..QUERIES {
            let q = FindQuery::new(selector(i)).expect("query");
            let t = Instant::now();
            let found = ours.find(&bulk_ours, &q).await.expect("find").len();
            finds.ours += t.elapsed();
            assert_eq!(found, 100.min(docs));
            let body = json!({"selector": selector(i), "limit": 1000});
            let t = Instant::now();
            let answer = raw
                .send(
                    Method::POST,
                    &format!("{bulk_raw}/_find"),
                    Some(serde_json::to_vec(&body).expect("json")),
                )
                .await;
            finds.raw += t.elapsed();
            assert_eq!(answer["docs"].as_array().map(Vec::len), Some(100.min(docs)));
        }
        let (o, r) = finds.finish(&ours, &raw, QUERIES);
        rows.push(
            Row::new(SECTION, label, o.0, r.0)
                .unit("queries/s")
                .requests(o.1 as f64 / QUERIES as f64, r.1 as f64 / QUERIES as f64)
                .target(TARGET),
        );
    }

    for db in [&db_ours, &bulk_ours] {
        ours.delete_database(db).await.expect("cleanup");
    }
    for db in [&db_raw, &bulk_raw] {
        raw.send(Method::DELETE, db, None).await;
    }
    rows
}

/// One raw `_bulk_docs` of `batch` into `db`, serialized and sent; how long it took.
async fn raw_bulk_docs(raw: &mut Raw, db: &str, batch: Vec<Map<String, Value>>) -> Duration {
    let t = Instant::now();
    let bytes = serde_json::to_vec(&json!({ "docs": batch })).expect("json");
    let answer = raw
        .send(Method::POST, &format!("{db}/_bulk_docs"), Some(bytes))
        .await;
    let took = t.elapsed();
    assert!(answer.as_array().is_some_and(|a| !a.is_empty()));
    took
}

/// Lists `db` with `_all_docs?include_docs=true` in pages of 1,000 (one row of lookahead),
/// keeping the documents; how many it listed.
async fn raw_list(raw: &mut Raw, db: &str) -> usize {
    let (mut docs, mut start_key) = (Vec::new(), None::<String>);
    loop {
        let mut path = format!("{db}/_all_docs?include_docs=true&limit=1001");
        if let Some(key) = &start_key {
            let key = Value::String(key.clone()).to_string();
            path.push_str(&format!("&startkey={}", urlencode(&key)));
        }
        let mut page = raw.send(Method::GET, &path, None).await;
        let Some(Value::Array(rows)) = page.get_mut("rows").map(Value::take) else {
            panic!("no rows");
        };
        let more = rows.len() > 1000;
        start_key = rows
            .get(1000)
            .and_then(|r| r["id"].as_str())
            .map(str::to_owned);
        docs.extend(rows.into_iter().take(1000).map(|mut r| r["doc"].take()));
        if !more {
            return docs.len();
        }
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
