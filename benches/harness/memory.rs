//! The memory provider next to a raw `DashMap<String, serde_json::Value>` doing the same
//! work: store each document's JSON value, hand out copies on reads, list in id order, and
//! filter every document for a query. The raw map does none of docstore's work: no revision
//! ids (an MD5 over CouchDB's term encoding of the body), no change feed, no counters, no
//! validation.
//!
//! A second, fairer anchor for the writes: the raw map plus the same CouchDB revision hash
//! (`Rev::compute` on each body, on its parent for an update), in rows named
//! "... vs raw + revision hash" (target 0.8). Its `save_many` hashes on one core, as a
//! simple map would; ours hashes on every core. One more update row, with no target, runs
//! that anchor keeping each superseded body, as ours must until compaction: what is left of
//! the update's gap once both sides hold the same bodies.

use std::time::Instant;

use dashmap::DashMap;
use docstore::serde_json::{Map, Value};
use docstore::{DatabaseService, Document, MemoryProvider, Rev};

use crate::common::{
    Row, body, document_batches, id, random_order, rate, selective_low, timed_finds, timed_gets,
    timed_save_many,
};

const SECTION: &str = "memory";
const TARGET: f64 = 0.5;
/// Against the raw map plus the revision hash.
const HASHED_TARGET: f64 = 0.8;

pub async fn run(docs: usize) -> Vec<Row> {
    let ours = MemoryProvider::new();
    let raw: DashMap<String, Value> = DashMap::new();
    let hashed: DashMap<String, (Rev, Value)> = DashMap::new();
    let bodies: Vec<Map<String, Value>> = (0..docs).map(body).collect();
    let mut rows = Vec::new();

    // Single saves of new documents; the app's document is built (cloned) on both sides.
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        ours.save("single", &id(i), Document::from(b.clone()))
            .await
            .expect("save");
    }
    let ours_rate = rate(docs, start.elapsed());
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        raw.insert(format!("single/{}", id(i)), Value::Object(b.clone()));
    }
    rows.push(
        Row::new(
            SECTION,
            "save (new)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .target(TARGET),
    );
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let rev = Rev::compute(None, false, b);
        hashed.insert(format!("single/{}", id(i)), (rev, Value::Object(b.clone())));
    }
    rows.push(
        Row::new(
            SECTION,
            "save (new) vs raw + revision hash",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .target(HASHED_TARGET),
    );

    // Saves over existing documents, without _rev.
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        ours.save("single", &id(i), Document::from(b.clone()))
            .await
            .expect("update");
    }
    let ours_rate = rate(docs, start.elapsed());
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let key = format!("single/{}", id(i));
        let mut entry = raw.get_mut(&key).expect("present");
        *entry = Value::Object(b.clone());
    }
    rows.push(
        Row::new(
            SECTION,
            "save (update, no _rev)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .target(TARGET),
    );
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let key = format!("single/{}", id(i));
        let mut entry = hashed.get_mut(&key).expect("present");
        let rev = Rev::compute(Some(&entry.0), false, b);
        *entry = (rev, Value::Object(b.clone()));
    }
    rows.push(
        Row::new(
            SECTION,
            "save (update) vs raw + revision hash",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .target(HASHED_TARGET),
    );
    // Not a target, an explanation: the same anchor keeping each superseded body (moved into
    // a list) as ours must until compaction (CouchDB serves `?rev=` of a superseded revision
    // until then), so the next document's copy is allocated in fresh memory on both sides
    // instead of in the memory the anchor has just freed.
    let mut superseded: Vec<Value> = Vec::with_capacity(docs);
    let start = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let key = format!("single/{}", id(i));
        let mut entry = hashed.get_mut(&key).expect("present");
        let rev = Rev::compute(Some(&entry.0), false, b);
        let old = std::mem::replace(&mut *entry, (rev, Value::Object(b.clone())));
        superseded.push(old.1);
    }
    rows.push(Row::new(
        SECTION,
        "save (update) vs raw + revision hash, superseded bodies kept",
        ours_rate,
        rate(docs, start.elapsed()),
    ));
    drop(superseded);

    // Random reads, each a copy of the document.
    let order = random_order(docs);
    let ours_rate = timed_gets(&ours, "single", &order).await;
    let start = Instant::now();
    for &i in &order {
        let key = format!("single/{}", id(i));
        std::hint::black_box(raw.get(&key).expect("present").value().clone());
    }
    rows.push(
        Row::new(
            SECTION,
            "get (random)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .target(TARGET),
    );

    // save_many of 1,000 (batches built before timing on both sides).
    let batches = document_batches(docs, 1000);
    let raw_batches: Vec<Vec<(String, Value)>> = batches
        .iter()
        .map(|b| {
            b.iter()
                .map(|d| {
                    (
                        format!("bulk/{}", d.id().unwrap_or("")),
                        Value::Object(d.as_map().clone()),
                    )
                })
                .collect()
        })
        .collect();
    // The same bodies as ours hashes: without `_id` (built before timing).
    let hashed_batches: Vec<Vec<(String, Value)>> = raw_batches
        .iter()
        .map(|b| {
            b.iter()
                .map(|(key, value)| {
                    let mut value = value.clone();
                    if let Value::Object(body) = &mut value {
                        body.shift_remove("_id");
                    }
                    (key.clone(), value)
                })
                .collect()
        })
        .collect();
    let ours_rate = timed_save_many(&ours, "bulk", batches).await;
    let start = Instant::now();
    for batch in raw_batches {
        for (key, value) in batch {
            raw.insert(key, value);
        }
    }
    rows.push(
        Row::new(
            SECTION,
            "save_many (1,000 per batch)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .unit("docs/s")
        .target(TARGET),
    );
    let start = Instant::now();
    for batch in hashed_batches {
        for (key, value) in batch {
            let rev = match &value {
                Value::Object(body) => Rev::compute(None, false, body),
                _ => unreachable!("bodies are objects"),
            };
            hashed.insert(key, (rev, value));
        }
    }
    rows.push(
        Row::new(
            SECTION,
            "save_many vs raw + revision hash",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .unit("docs/s")
        .target(HASHED_TARGET),
    );

    // Full listing in id order, each document a copy.
    let start = Instant::now();
    let listed = ours.list_all("bulk").await.expect("list");
    assert_eq!(listed.len(), docs);
    drop(listed);
    let ours_rate = rate(docs, start.elapsed());
    let start = Instant::now();
    let mut listed: Vec<(String, Value)> = raw
        .iter()
        .filter(|e| e.key().starts_with("bulk/"))
        .map(|e| (e.key().clone(), e.value().clone()))
        .collect();
    listed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed.len(), docs);
    drop(listed);
    rows.push(
        Row::new(
            SECTION,
            "full listing",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .unit("docs/s")
        .target(TARGET),
    );

    // A query matching 100 documents, without and with an index definition (memory keeps
    // definitions only, so both scan), next to the raw map filtering every document.
    const QUERIES: usize = 20;
    let raw_find = || {
        let start = Instant::now();
        for i in 0..QUERIES {
            let low = selective_low(i, docs);
            let found: Vec<Value> = raw
                .iter()
                .filter(|e| e.key().starts_with("bulk/"))
                .filter(|e| {
                    let count = e.value()["count"].as_u64().unwrap_or(0) as usize;
                    (low..low + 100).contains(&count)
                })
                .map(|e| e.value().clone())
                .collect();
            assert_eq!(found.len(), 100.min(docs));
        }
        rate(QUERIES, start.elapsed())
    };
    for (label, index) in [
        ("find 100, no index", false),
        ("find 100, index on count", true),
    ] {
        if index {
            ours.ensure_index("bulk", &["count"], "by-count")
                .await
                .expect("index");
        }
        let ours_rate = timed_finds(&ours, "bulk", QUERIES, docs).await;
        rows.push(
            Row::new(SECTION, label, ours_rate, raw_find())
                .unit("queries/s")
                .target(TARGET),
        );
    }
    rows
}
