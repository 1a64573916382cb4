//! The embedded provider next to what a user would pick instead of it: SQLite (rusqlite,
//! SQLite bundled) in WAL mode with `synchronous=FULL` (a durable commit per transaction, as
//! ours), each document's JSON text in a table keyed by id, JSON functions for queries and
//! an expression index on `json_extract(body, '$.count')` for the indexed one. Same
//! documents, same workloads, same run; ours is a fresh embedded store here.
//!
//! SQLite does none of docstore's work either (no revisions, change feed or validation), and
//! a single connection runs on the calling thread (no blocking pool hop), so a ratio below
//! 1 is the cost of both.

use std::time::Instant;

use docstore::serde_json::{self, Map, Value};
use docstore::{DatabaseService, Document, EmbeddedConfig, EmbeddedProvider};
use rusqlite::{Connection, params};

use crate::common::{
    Row, body, document_batches, id, keyed_batches, random_order, rate, selective_low, timed_finds,
    timed_gets, timed_save_many,
};

const SECTION: &str = "vs SQLite";
const SINGLE_SAVES: usize = 2000;
const BATCH: usize = 1000;

/// A SQLite database as an app would set one up for JSON documents, durable per commit: a
/// table per docstore database (`single`, `bulk`).
fn open_sqlite(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).expect("open SQLite");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE single (id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE bulk (id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;",
    )
    .expect("set up SQLite");
    conn
}

pub async fn run(docs: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("ours")))
        .await
        .expect("open");
    let sqlite = open_sqlite(&dir.path().join("sqlite.db"));
    let bodies: Vec<Map<String, Value>> = (0..docs).map(body).collect();
    let mut rows = Vec::new();

    // Single durable saves: new documents, then over them (ours without _rev).
    for (label, update) in [("save (new, durable)", false), ("save (update)", true)] {
        let start = Instant::now();
        for (i, b) in bodies.iter().take(SINGLE_SAVES).enumerate() {
            ours.save("single", &id(i), Document::from(b.clone()))
                .await
                .expect("save");
        }
        let ours_rate = rate(SINGLE_SAVES, start.elapsed());
        let sql = if update {
            "UPDATE single SET body = ?2 WHERE id = ?1"
        } else {
            "INSERT INTO single (id, body) VALUES (?1, ?2)"
        };
        let start = Instant::now();
        let mut statement = sqlite.prepare_cached(sql).expect("prepare");
        for (i, b) in bodies.iter().take(SINGLE_SAVES).enumerate() {
            let text = serde_json::to_string(&b.clone()).expect("json");
            let changed = statement
                .execute(params![format!("single/{}", id(i)), text])
                .expect("write");
            assert_eq!(changed, 1);
        }
        drop(statement);
        rows.push(Row::new(
            SECTION,
            label,
            ours_rate,
            rate(SINGLE_SAVES, start.elapsed()),
        ));
    }

    // save_many in batches of 1,000; SQLite: one transaction per batch.
    let batches = document_batches(docs, BATCH);
    let sqlite_batches = keyed_batches(&bodies, "bulk", BATCH);
    let ours_rate = timed_save_many(&ours, "bulk", batches).await;
    let start = Instant::now();
    let mut sqlite = sqlite;
    for batch in sqlite_batches {
        let tx = sqlite.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO bulk (id, body) VALUES (?1, ?2)")
                .expect("prepare");
            for (key, b) in batch {
                let text = serde_json::to_string(&b).expect("json");
                insert.execute(params![key, text]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    rows.push(
        Row::new(
            SECTION,
            "save_many (1,000 per batch)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .unit("docs/s"),
    );

    // Random point reads, parsed.
    let order = random_order(docs);
    let ours_rate = timed_gets(&ours, "bulk", &order).await;
    let start = Instant::now();
    {
        let mut get = sqlite
            .prepare_cached("SELECT body FROM bulk WHERE id = ?1")
            .expect("prepare");
        for &i in &order {
            let text: String = get
                .query_row(params![format!("bulk/{}", id(i))], |row| row.get(0))
                .expect("present");
            let doc: Map<String, Value> = serde_json::from_str(&text).expect("parse");
            std::hint::black_box(doc);
        }
    }
    rows.push(Row::new(
        SECTION,
        "get (random, parsed)",
        ours_rate,
        rate(docs, start.elapsed()),
    ));

    // Full listing in id order, parsed and held.
    let start = Instant::now();
    let listed = ours.list_all("bulk").await.expect("list");
    assert_eq!(listed.len(), docs);
    drop(listed);
    let ours_rate = rate(docs, start.elapsed());
    let start = Instant::now();
    let listed = sqlite_select(&sqlite, "SELECT body FROM bulk ORDER BY id", &[]);
    assert_eq!(listed, docs);
    rows.push(
        Row::new(
            SECTION,
            "full listing (parsed)",
            ours_rate,
            rate(docs, start.elapsed()),
        )
        .unit("docs/s"),
    );

    // A query matching 100 documents: without an index (SQLite scans with json_extract),
    // then with one on `count` on both sides.
    const SCANS: usize = 5;
    const LOOKUPS: usize = 500;
    let range_query = "SELECT body FROM bulk \
                       WHERE json_extract(body, '$.count') >= ?1 AND json_extract(body, '$.count') < ?2";
    let sqlite_finds = |runs: usize| {
        let start = Instant::now();
        for i in 0..runs {
            let low = selective_low(i, docs) as i64;
            let found = sqlite_select(&sqlite, range_query, &[low, low + 100]);
            assert_eq!(found, 100.min(docs));
        }
        rate(runs, start.elapsed())
    };
    let ours_find = timed_finds(&ours, "bulk", SCANS, docs).await;
    rows.push(
        Row::new(
            SECTION,
            "find 100, no index",
            ours_find,
            sqlite_finds(SCANS),
        )
        .unit("queries/s"),
    );
    ours.ensure_index("bulk", &["count"], "by-count")
        .await
        .expect("index");
    sqlite
        .execute_batch("CREATE INDEX by_count ON bulk (json_extract(body, '$.count'));")
        .expect("SQLite index");
    let plan: Vec<String> = sqlite
        .prepare(&format!("EXPLAIN QUERY PLAN {range_query}"))
        .expect("explain")
        .query_map(rusqlite::params![0i64, 100i64], |row| {
            row.get::<_, String>(3)
        })
        .expect("explain")
        .map(|detail| detail.expect("a plan row"))
        .collect();
    println!("  SQLite's plan for the indexed find: {}", plan.join("; "));
    let ours_indexed = timed_finds(&ours, "bulk", LOOKUPS, docs).await;
    rows.push(
        Row::new(
            SECTION,
            "find 100, index on count",
            ours_indexed,
            sqlite_finds(LOOKUPS),
        )
        .unit("queries/s"),
    );
    rows
}

/// Runs `sql`, parsing and holding every body it returns; how many.
fn sqlite_select(conn: &Connection, sql: &str, args: &[i64]) -> usize {
    let mut statement = conn.prepare_cached(sql).expect("prepare");
    let docs: Vec<Map<String, Value>> = statement
        .query_map(rusqlite::params_from_iter(args), |row| {
            row.get::<_, String>(0)
        })
        .expect("query")
        .map(|text| serde_json::from_str(&text.expect("row")).expect("parse"))
        .collect();
    docs.len()
}
