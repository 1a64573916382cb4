//! The CouchDB provider next to a raw HTTP client sending the minimal requests for the same
//! operations, against the same server in one run.
//!
//! `cargo bench --bench couchdb` finds a server as the tests do (`COUCHDB_URL`, a `couchdb:3`
//! container, or the npm stand-in) and prints: operation, ours (ops/s), raw (ops/s), ratio,
//! and the requests each side sent per operation. The raw client is a plain reqwest client with
//! basic auth, serializing the same 1 KB JSON documents and parsing the answers.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use docstore::serde_json::{self, Map, Value, json};
use docstore::{CouchDbProvider, DatabaseService, Document};
use docstore_providers::conformance::unique_db;

const SINGLE: usize = 300;
const BATCHES: usize = 10;
const BATCH: usize = 1000;

fn body(i: usize) -> Map<String, Value> {
    let kind = ["alpha", "beta", "gamma"][i % 3];
    match json!({
        "name": format!("agent {i}"),
        "kind": kind,
        "score": i as f64 * 1.5,
        "count": i,
        "tags": ["one", "two", "three"],
        "nested": {"a": i, "b": "x".repeat(40)},
        "text": "lorem ipsum dolor sit amet ".repeat(30),
    }) {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

struct Raw {
    client: reqwest::Client,
    url: String,
    user: String,
    password: String,
    requests: u64,
}

impl Raw {
    async fn send(&mut self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> Value {
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
}

struct Row {
    op: &'static str,
    ours: f64,
    raw: f64,
    ours_requests: f64,
    raw_requests: f64,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let server = tokio::task::spawn_blocking(support::couchdb)
        .await
        .expect("server discovery");
    let ours = CouchDbProvider::connect(server.config())
        .await
        .expect("connect");
    let mut raw = Raw {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .tcp_nodelay(true)
            .build()
            .expect("client"),
        url: server.url.clone(),
        user: server.user.clone(),
        password: server.password.clone(),
        requests: 0,
    };
    let (db_ours, db_raw) = (unique_db("bench-ours"), unique_db("bench-raw"));
    // Both databases exist before timing (ours creates lazily, raw with PUT /db).
    ours.save(&db_ours, "warmup", Document::new())
        .await
        .expect("warm up");
    raw.send(reqwest::Method::PUT, &db_raw, None).await;
    let mut rows = Vec::new();

    // Single save of a new document.
    let (before, start) = (ours.request_count(), Instant::now());
    for i in 0..SINGLE {
        ours.save(&db_ours, &format!("s{i}"), Document::from(body(i)))
            .await
            .expect("save");
    }
    let (ours_rate, ours_req) = (rate(SINGLE, start.elapsed()), ours.request_count() - before);
    let (before, start) = (raw.requests, Instant::now());
    let mut raw_revs = Vec::with_capacity(SINGLE);
    for i in 0..SINGLE {
        let bytes = serde_json::to_vec(&body(i)).expect("json");
        let answer = raw
            .send(reqwest::Method::PUT, &format!("{db_raw}/s{i}"), Some(bytes))
            .await;
        raw_revs.push(answer["rev"].as_str().expect("rev").to_owned());
    }
    rows.push(Row {
        op: "save (new)",
        ours: ours_rate,
        raw: rate(SINGLE, start.elapsed()),
        ours_requests: ours_req as f64 / SINGLE as f64,
        raw_requests: (raw.requests - before) as f64 / SINGLE as f64,
    });

    // Rev-less save over an existing document (ours: known revision; raw: it kept the revs).
    let (before, start) = (ours.request_count(), Instant::now());
    for i in 0..SINGLE {
        ours.save(&db_ours, &format!("s{i}"), Document::from(body(i + 1)))
            .await
            .expect("update");
    }
    let (ours_rate, ours_req) = (rate(SINGLE, start.elapsed()), ours.request_count() - before);
    let (before, start) = (raw.requests, Instant::now());
    for (i, rev) in raw_revs.iter().enumerate() {
        let mut b = body(i + 1);
        b.insert("_rev".into(), Value::String(rev.clone()));
        let bytes = serde_json::to_vec(&b).expect("json");
        raw.send(reqwest::Method::PUT, &format!("{db_raw}/s{i}"), Some(bytes))
            .await;
    }
    rows.push(Row {
        op: "save (update, no _rev)",
        ours: ours_rate,
        raw: rate(SINGLE, start.elapsed()),
        ours_requests: ours_req as f64 / SINGLE as f64,
        raw_requests: (raw.requests - before) as f64 / SINGLE as f64,
    });

    // get.
    let (before, start) = (ours.request_count(), Instant::now());
    for i in 0..SINGLE {
        std::hint::black_box(ours.get(&db_ours, &format!("s{i}")).await.expect("get"));
    }
    let (ours_rate, ours_req) = (rate(SINGLE, start.elapsed()), ours.request_count() - before);
    let (before, start) = (raw.requests, Instant::now());
    for i in 0..SINGLE {
        std::hint::black_box(
            raw.send(reqwest::Method::GET, &format!("{db_raw}/s{i}"), None)
                .await,
        );
    }
    rows.push(Row {
        op: "get",
        ours: ours_rate,
        raw: rate(SINGLE, start.elapsed()),
        ours_requests: ours_req as f64 / SINGLE as f64,
        raw_requests: (raw.requests - before) as f64 / SINGLE as f64,
    });

    // save_many of 1,000 new documents per batch.
    let total = BATCHES * BATCH;
    let batches: Vec<Vec<Document>> = (0..BATCHES)
        .map(|b| {
            (0..BATCH)
                .map(|k| {
                    let i = b * BATCH + k;
                    let mut d = Document::new();
                    d.insert("_id", format!("b{i:06}"));
                    d.as_map_mut().extend(body(i));
                    d
                })
                .collect()
        })
        .collect();
    let (before, start) = (ours.request_count(), Instant::now());
    for batch in batches {
        for r in ours.save_many(&db_ours, batch).await.expect("save_many") {
            r.expect("bulk doc");
        }
    }
    let (ours_rate, ours_req) = (rate(total, start.elapsed()), ours.request_count() - before);
    let (before, start) = (raw.requests, Instant::now());
    for b in 0..BATCHES {
        let docs: Vec<Value> = (0..BATCH)
            .map(|k| {
                let i = b * BATCH + k;
                let mut m = Map::new();
                m.insert("_id".into(), Value::String(format!("b{i:06}")));
                m.extend(body(i));
                Value::Object(m)
            })
            .collect();
        let bytes = serde_json::to_vec(&json!({ "docs": docs })).expect("json");
        let answer = raw
            .send(
                reqwest::Method::POST,
                &format!("{db_raw}/_bulk_docs"),
                Some(bytes),
            )
            .await;
        assert_eq!(answer.as_array().map(Vec::len), Some(BATCH));
    }
    rows.push(Row {
        op: "save_many (1,000 per batch)",
        ours: ours_rate,
        raw: rate(total, start.elapsed()),
        ours_requests: ours_req as f64 / BATCHES as f64,
        raw_requests: (raw.requests - before) as f64 / BATCHES as f64,
    });

    ours.delete_database(&db_ours).await.expect("cleanup");
    raw.send(reqwest::Method::DELETE, &db_raw, None).await;

    println!();
    println!(
        "CouchDB provider vs raw reqwest, same server ({:?} at {}), same 1 KB documents",
        server.kind, server.url
    );
    println!(
        "{:<30} {:>11} {:>11} {:>7} {:>12} {:>12}",
        "operation", "ours ops/s", "raw ops/s", "ratio", "ours req/op", "raw req/op"
    );
    for r in &rows {
        println!(
            "{:<30} {:>11.0} {:>11.0} {:>7.2} {:>12.2} {:>12.2}",
            r.op,
            r.ours,
            r.raw,
            r.ours / r.raw,
            r.ours_requests,
            r.raw_requests
        );
    }
    println!("(save_many rows count requests per batch)");
}
