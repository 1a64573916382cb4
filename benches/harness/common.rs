//! What every section of the harness shares: the 1 KB document, timing, the result rows and
//! their table.

use std::time::Duration;

use std::time::Instant;

use docstore::serde_json::{Map, Value, json};
use docstore::{DatabaseService, Document, FindQuery};

/// The JSON body of document `i` (982 bytes serialized): strings, numbers, a boolean, an
/// array and a nested object, like an application's record.
pub fn body(i: usize) -> Map<String, Value> {
    let kind = ["alpha", "beta", "gamma"][i % 3];
    match json!({
        "name": format!("agent {i}"),
        "kind": kind,
        // Never integral: the npm stand-in (JavaScript numbers) answers 3.0 as 3, which a
        // migration's verification would rightly report as a different body.
        "score": i as f64 + 0.25,
        "count": i,
        "active": i.is_multiple_of(2),
        "tags": ["one", "two", "three"],
        "nested": {"a": i, "b": "x".repeat(40)},
        "text": "lorem ipsum dolor sit amet ".repeat(30),
    }) {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// The id of document `i`; ids sort in creation order.
pub fn id(i: usize) -> String {
    format!("doc{i:08}")
}

/// Operations per second.
pub fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The `count` range `[low, low + 100)` of the `i`-th selective query over `docs` documents.
pub fn selective_low(i: usize, docs: usize) -> usize {
    (i * 7919) % docs.saturating_sub(100).max(1)
}

/// Documents `0..n` with their `_id`, in batches of `batch`, as an app hands them to
/// `save_many` (built before any timing).
pub fn document_batches(n: usize, batch: usize) -> Vec<Vec<Document>> {
    (0..n)
        .step_by(batch)
        .map(|start| document_batch(start..(start + batch).min(n)))
        .collect()
}

/// Documents `range` with their `_id`: one batch, for callers that build them as they go
/// (the scaling section, whose 10M documents do not fit in memory at once).
pub fn document_batch(range: std::ops::Range<usize>) -> Vec<Document> {
    range
        .map(|i| {
            let mut d = Document::new();
            d.insert("_id", id(i));
            d.as_map_mut().extend(body(i));
            d
        })
        .collect()
}

/// The same documents for a raw side, keyed `<prefix>/<id>`, in batches of `batch` (owned
/// copies, built before any timing).
pub fn keyed_batches(
    bodies: &[Map<String, Value>],
    prefix: &str,
    batch: usize,
) -> Vec<Vec<(String, Map<String, Value>)>> {
    bodies
        .chunks(batch)
        .enumerate()
        .map(|(n, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(k, b)| (format!("{prefix}/{}", id(n * batch + k)), b.clone()))
                .collect()
        })
        .collect()
}

/// `save_many` of every batch into `db`, each document checked; documents per second.
pub async fn timed_save_many(
    svc: &dyn DatabaseService,
    db: &str,
    batches: Vec<Vec<Document>>,
) -> f64 {
    let n: usize = batches.iter().map(Vec::len).sum();
    let start = Instant::now();
    for batch in batches {
        for r in svc.save_many(db, batch).await.expect("save_many") {
            r.expect("saved");
        }
    }
    rate(n, start.elapsed())
}

/// `n` indexes into `0..n` in a fixed random order (the same for ours and raw).
pub fn random_order(n: usize) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n).map(|_| rng.usize(0..n)).collect()
}

/// A `get` of document `i` of `db` for each `i` of `order`; reads per second.
pub async fn timed_gets(svc: &dyn DatabaseService, db: &str, order: &[usize]) -> f64 {
    let start = Instant::now();
    for &i in order {
        std::hint::black_box(svc.get(db, &id(i)).await.expect("get"));
    }
    rate(order.len(), start.elapsed())
}

/// `runs` selective queries on `db` (100 of `docs` documents each, checked); queries/s.
pub async fn timed_finds(svc: &dyn DatabaseService, db: &str, runs: usize, docs: usize) -> f64 {
    let start = Instant::now();
    for i in 0..runs {
        let low = selective_low(i, docs);
        let query =
            FindQuery::new(json!({"count": {"$gte": low, "$lt": low + 100}})).expect("valid query");
        let found = svc.find(db, &query).await.expect("find");
        assert_eq!(found.len(), 100.min(docs));
    }
    rate(runs, start.elapsed())
}

/// An environment variable as a number, or `default`.
pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// One workload measured on docstore and on the thing underneath, in the same run.
#[derive(Debug, Clone)]
pub struct Row {
    /// The section: memory, embedded, couchdb, migration.
    pub section: &'static str,
    pub op: String,
    /// Throughput, in `unit`.
    pub ours: f64,
    pub raw: f64,
    pub unit: &'static str,
    /// The target for ours/raw, where it sets one.
    pub target: Option<f64>,
    /// HTTP requests per operation, for CouchDB.
    pub requests: Option<(f64, f64)>,
}

impl Row {
    pub fn new(section: &'static str, op: impl Into<String>, ours: f64, raw: f64) -> Self {
        Self {
            section,
            op: op.into(),
            ours,
            raw,
            unit: "ops/s",
            target: None,
            requests: None,
        }
    }

    pub fn target(mut self, target: f64) -> Self {
        self.target = Some(target);
        self
    }

    pub fn unit(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        self
    }

    pub fn requests(mut self, ours: f64, raw: f64) -> Self {
        self.requests = Some((ours, raw));
        self
    }

    pub fn ratio(&self) -> f64 {
        self.ours / self.raw
    }

    /// "met", "MISSED", or "" without a target.
    pub fn verdict(&self) -> &'static str {
        match self.target {
            Some(t) if self.ratio() >= t => "met",
            Some(_) => "MISSED",
            None => "",
        }
    }
}

/// Prints rows as the harness's table (also used for the summary).
pub fn print_rows(title: &str, rows: &[Row]) {
    println!();
    println!("{title}");
    println!(
        "{:<10} {:<34} {:>12} {:>12} {:>7} {:>7} {:>7} {:>14}",
        "section", "operation", "ours", "raw", "ratio", "target", "", "requests/op"
    );
    for r in rows {
        let target = r.target.map_or(String::new(), |t| format!("{t:.2}"));
        let requests = r
            .requests
            .map_or(String::new(), |(o, w)| format!("{o:.2} / {w:.2}"));
        println!(
            "{:<10} {:<34} {:>12.1} {:>12.1} {:>7.2} {:>7} {:>7} {:>14}",
            r.section,
            format!("{} ({})", r.op, r.unit),
            r.ours,
            r.raw,
            r.ratio(),
            target,
            r.verdict(),
            requests
        );
    }
}
