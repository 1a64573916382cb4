//! Differential property test of `find`: random documents (nested objects, arrays, mixed
//! types, missing fields) and random Mango queries must give the same ids in the same order
//! on the memory, embedded and CouchDB providers, CouchDB being a genuine CouchDB 3.
//!
//! Two properties: queries without indexes (the `_all_docs` path, with `limit`/`skip`), and
//! queries with JSON indexes (sorted or not, with or without a range on the indexed field, so
//! that the planner's choice between indexes and `_all_docs` is exercised; in the embedded
//! store an index is a range scan over order keys, so this also checks those keys).
//!
//! Generation covers every operator docstore supports, negations at every level (`$not`,
//! `$nor`, `$ne`, `$nin`, inside and outside `$elemMatch`), empty combinators, nested `{}`,
//! operators mixed with field names, dotted and numeric paths, `_id`, and values of every type
//! (integers and whole-number floats, `null`, strings in cases and accents, arrays, objects).
//!
//! Queries genuine CouchDB cannot answer are listed in [`KNOWN_COUCHDB_CRASHES`] by name: when
//! CouchDB crashes on a query in a known way, the test checks that memory and embedded give
//! the answer named there and reports the query (it never hides it); any other disagreement,
//! or any other crash, fails the test with its seed.
//!
//! `DOCSTORE_DIFF_CASES` sets the number of cases per property (default 64: 512 queries per
//! property, each on three providers); `DOCSTORE_DIFF_SEED` replays a run (the seed is printed
//! at the start and in every failure).

mod support;

use std::sync::{Mutex, OnceLock};

use docstore::{
    DatabaseService, Document, Error, FindQuery, Settings, get_database_service, serde_json,
};
use docstore_providers::conformance::Service;
use docstore_providers::testing::{drop_db, unique_db};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value, json};

/// Queries a genuine CouchDB 3.5 crashes on (a 500 naming an Erlang runtime error), by name,
/// and what memory and embedded must answer instead. Recognised in order; a crash matching
/// none of them fails the test.
#[derive(Clone, Copy, Debug)]
enum KnownCrash {
    /// In a database that has a JSON index, CouchDB 3.5 crashes choosing an index whenever the
    /// selector holds an array with `null` or another array among its elements, anywhere
    /// (`{"$in": [null]}`, `{"$all": [[1]]}`, `{"$eq": [1, []]}`, `{"$in": [{"a": [null]}]}`),
    /// whether or not an index could serve the query. The same query in a database without a
    /// JSON index is answered. Nothing to compare with: memory's answer is reported.
    NullOrArrayInAnArray,
    /// `mango_idx_view` narrows e.g. `$eq 1` then `$gt 1` (or `null` and `$gt null`) on an
    /// indexed field to a `{'$gt', 1, '$eq', 1}` state its key functions have no clause for.
    /// The range is empty: memory and embedded must answer no documents.
    RangeClosedThenExcluded,
    /// `$beginsWith` narrows a range by `$gte` and then `$lte`; when the `$gte` step already
    /// empties it (`{"$lte": -1}` and `{"$beginsWith": "a"}` on one field) CouchDB 3.5 fails
    /// a pattern match (`badmatch: empty`). The range is empty: no documents.
    BeginsWithOnAnEmptyRange,
}

impl KnownCrash {
    /// The known crash a CouchDB error is, if any.
    fn of(query: &Value, error: &str) -> Option<Self> {
        fn null_or_array_in_an_array(v: &Value) -> bool {
            match v {
                Value::Array(items) => items.iter().any(|i| {
                    matches!(i, Value::Null | Value::Array(_)) || null_or_array_in_an_array(i)
                }),
                Value::Object(map) => map.values().any(null_or_array_in_an_array),
                _ => false,
            }
        }
        if !error.contains("crashed on this request") {
            None
        } else if error.contains("badmatch: empty") {
            Some(KnownCrash::BeginsWithOnAnEmptyRange)
        } else if !error.contains("function_clause") {
            None
        } else if null_or_array_in_an_array(&query["selector"]) {
            Some(KnownCrash::NullOrArrayInAnArray)
        } else {
            Some(KnownCrash::RangeClosedThenExcluded)
        }
    }

    /// Whether memory's answer can be checked: the crash is on an empty range.
    fn answer_is_no_documents(self) -> bool {
        !matches!(self, KnownCrash::NullOrArrayInAnArray)
    }
}

struct Providers {
    runtime: tokio::runtime::Runtime,
    all: Vec<Service>,
}

fn providers() -> &'static Providers {
    static PROVIDERS: OnceLock<Providers> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let server = support::couchdb();
        let all = runtime.block_on(async {
            // Named by process, so runners starting a process per test do not share it.
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("find-differential-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            let settings = [
                Settings::memory(),
                Settings::embedded(path),
                server.settings(),
            ];
            let mut all = Vec::new();
            for s in &settings {
                all.push(get_database_service(s).await.expect("provider starts"));
            }
            all
        });
        Providers { runtime, all }
    })
}

fn cases() -> u32 {
    std::env::var("DOCSTORE_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

// ---- generation --------------------------------------------------------------------------

fn string() -> impl Strategy<Value = Value> {
    "[abAB0-9é _-]{0,3}".prop_map(Value::from)
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..12).prop_map(Value::from),
        (-3i64..12).prop_map(|n| json!(n as f64 + 0.5)),
        (-3i64..4).prop_map(|n| json!(n as f64)),
        string(),
        string(),
    ]
    .boxed()
}

fn value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(prop::sample::select(vec!["a", "b"]), inner, 0..3)
                    .prop_map(|m| {
                        Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }),
            ]
        })
        .boxed()
}

const FIELDS: [&str; 4] = ["a", "b", "c", "o"];

/// A document body; each field may be missing.
fn document() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(prop::option::weighted(0.8, value()), 4).prop_map(|values| {
        FIELDS
            .iter()
            .zip(values)
            .filter_map(|(f, v)| v.map(|v| ((*f).to_owned(), v)))
            .collect()
    })
}

fn path() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        "a", "b", "c", "_id", "o", "o.a", "o.b", "c.0", "o.a.1",
    ])
    .prop_map(str::to_owned)
    .boxed()
}

/// A condition on an element of an array (inside `$elemMatch`/`$allMatch`) or on a value.
fn element_condition() -> BoxedStrategy<Value> {
    let s = scalar;
    prop_oneof![
        s().prop_map(|v| json!({"$gte": v})),
        s().prop_map(|v| json!({"$ne": v})),
        s().prop_map(|v| json!({"a": v})),
        s().prop_map(|v| json!({"$not": {"$lt": v}})),
        s().prop_map(|v| json!({"$nor": [{"$eq": v}]})),
        s().prop_map(|v| json!({"$or": [{"$eq": v}, {"a": {"$exists": true}}]})),
        Just(json!({})),
    ]
    .boxed()
}

fn condition() -> BoxedStrategy<Value> {
    let s = scalar;
    let list = || prop::collection::vec(scalar(), 0..3);
    prop::strategy::Union::new(vec![
        s().boxed(),
        s().prop_map(|v| json!({"$eq": v})).boxed(),
        s().prop_map(|v| json!({"$gt": v})).boxed(),
        s().prop_map(|v| json!({"$gte": v})).boxed(),
        s().prop_map(|v| json!({"$lt": v})).boxed(),
        s().prop_map(|v| json!({"$lte": v})).boxed(),
        (s(), s())
            .prop_map(|(a, b)| json!({"$gt": a, "$lte": b}))
            .boxed(),
        s().prop_map(|v| json!({"$ne": v})).boxed(),
        list().prop_map(|v| json!({"$in": v})).boxed(),
        list().prop_map(|v| json!({"$nin": v})).boxed(),
        any::<bool>().prop_map(|b| json!({"$exists": b})).boxed(),
        prop::sample::select(vec![
            "null", "boolean", "number", "string", "array", "object", "int",
        ])
        .prop_map(|t| json!({"$type": t}))
        .boxed(),
        (0u64..3).prop_map(|n| json!({"$size": n})).boxed(),
        ((2i64..4), (0i64..2))
            .prop_map(|(d, r)| json!({"$mod": [d, r]}))
            .boxed(),
        prop::sample::select(vec!["^a", "b$", "^[0-9]", "a.?c", "", "(?i)^A"])
            .prop_map(|r| json!({"$regex": r}))
            .boxed(),
        prop::sample::select(vec!["", "a", "ab", "A", "é"])
            .prop_map(|p| json!({"$beginsWith": p}))
            .boxed(),
        prop::collection::vec(scalar(), 0..3)
            .prop_map(|v| json!({"$all": v}))
            .boxed(),
        prop::collection::vec(scalar(), 1..3)
            .prop_map(|v| json!({"$all": [v]}))
            .boxed(),
        element_condition()
            .prop_map(|c| json!({"$elemMatch": c}))
            .boxed(),
        element_condition()
            .prop_map(|c| json!({"$allMatch": c}))
            .boxed(),
        prop::sample::select(vec!["a", "b", "c"])
            .prop_map(|k| json!({"$keyMapMatch": {"$eq": k}}))
            .boxed(),
        s().prop_map(|v| json!({"$not": {"$gt": v}})).boxed(),
        s().prop_map(|v| json!({"$not": {"$regex": "^a", "$ne": v}}))
            .boxed(),
        s().prop_map(|v| json!({"$or": [{"$lt": v}, {"$exists": false}]}))
            .boxed(),
        s().prop_map(|v| json!({"$exists": true, "a": v})).boxed(),
        Just(json!({})).boxed(),
    ])
    .boxed()
}

/// The items of a selector's top-level `$and`: field conditions, combinators nested up to
/// three deep, and now and then an empty combinator or a bare `{}`.
fn selector_items() -> BoxedStrategy<Vec<Value>> {
    let leaf = prop_oneof![
        8 => (path(), condition()).prop_map(|(p, c)| json!({ p: c })),
        1 => prop::sample::select(vec![
            json!({}),
            json!({"$and": []}),
            json!({"$or": []}),
            json!({"$nor": []}),
        ]),
    ];
    let tree = leaf.prop_recursive(3, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$and": v})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$or": v})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"$nor": v})),
            inner.clone().prop_map(|v| json!({"$not": v})),
            (path(), prop::collection::vec(inner, 1..3))
                .prop_map(|(p, v)| json!({ p: {"$or": v} })),
        ]
    });
    prop::collection::vec(tree, 1..4).boxed()
}

/// The selector: usually a top-level `$and` of the items, sometimes the one item alone (so
/// a selector that is an empty combinator or a `$not` as a whole is generated too).
fn selector() -> BoxedStrategy<Value> {
    (selector_items(), any::<bool>())
        .prop_map(|(mut items, alone)| {
            if alone && items.len() == 1 {
                items.pop().unwrap_or_else(|| json!({}))
            } else {
                json!({ "$and": items })
            }
        })
        .boxed()
}

fn page() -> impl Strategy<Value = (Option<usize>, usize)> {
    (
        prop::option::of(0usize..6),
        prop::sample::select(vec![0usize, 0, 1, 3]),
    )
}

// ---- checking ----------------------------------------------------------------------------

/// Queries CouchDB crashed on in a known way, with memory's answer, for the report.
type Crashes = Mutex<Vec<String>>;

/// Stores the corpus on every provider, runs every query, and compares the ids.
fn check(
    crashes: &Crashes,
    corpus: &[Map<String, Value>],
    indexes: &[Vec<&str>],
    queries: &[Value],
) -> Result<(), TestCaseError> {
    let p = providers();
    p.runtime.block_on(async {
        let db = unique_db("diff");
        let mut answers: Vec<Vec<Result<Vec<String>, String>>> = Vec::new();
        for (provider, svc) in p.all.iter().enumerate() {
            let docs: Vec<Document> = corpus
                .iter()
                .enumerate()
                .map(|(n, body)| {
                    let mut map = Map::new();
                    map.insert("_id".into(), format!("d{n:02}").into());
                    map.extend(body.clone());
                    Document::from(map)
                })
                .collect();
            for r in svc.save_many(&db, docs).await.expect("corpus saves") {
                r.expect("document saves");
            }
            for (n, fields) in indexes.iter().enumerate() {
                svc.ensure_index(&db, fields, &format!("i{n}"))
                    .await
                    .expect("index");
            }
            let mut results = Vec::new();
            for q in queries {
                results.push(match FindQuery::from_json(q) {
                    Ok(query) => run(svc.as_ref(), &db, &query).await,
                    // docstore refuses it before any provider sees it: the server must too.
                    Err(_) if provider == 2 => raw_couchdb_find(q).await,
                    Err(_) => Err("InvalidQuery".into()),
                });
            }
            answers.push(results);
            drop_db(svc, &db).await;
        }
        for (n, q) in queries.iter().enumerate() {
            let (memory, embedded, couchdb) = (&answers[0][n], &answers[1][n], &answers[2][n]);
            prop_assert_eq!(memory, embedded, "memory vs embedded, query {}", q);
            if let Err(crash) = couchdb
                && let Some(known) = KnownCrash::of(q, crash)
            {
                if known.answer_is_no_documents() {
                    prop_assert!(
                        memory.as_ref().is_ok_and(Vec::is_empty),
                        "CouchDB crashed on query {} ({:?}?), where memory answers {:?}: not a \
                         known crash",
                        q,
                        known,
                        memory
                    );
                }
                if let Ok(mut crashes) = crashes.lock() {
                    crashes.push(format!("{known:?}: {q} -> memory and embedded: {memory:?}"));
                }
                continue;
            }
            prop_assert_eq!(memory, couchdb, "memory vs CouchDB, query {}", q);
        }
        Ok(())
    })
}

async fn run(
    svc: &dyn DatabaseService,
    db: &str,
    query: &FindQuery,
) -> Result<Vec<String>, String> {
    match svc.find(db, query).await {
        Ok(docs) => Ok(docs
            .iter()
            .map(|d| d.id().unwrap_or("?").to_owned())
            .collect()),
        // The same kind of error everywhere counts as agreement (servers word them their way).
        Err(Error::InvalidQuery { .. }) => Err("InvalidQuery".into()),
        Err(e) if e.is_not_found() => Err("NotFound".into()),
        Err(other) => Err(format!("unexpected error: {other}")),
    }
}

/// A query sent to CouchDB as it is, for those docstore refuses to parse: a 400 is CouchDB
/// refusing it too. It goes to a scratch database of its own (removed after), since CouchDB
/// answers 404 for a missing database before it reads the selector, where docstore refuses
/// the query before it looks at any database.
async fn raw_couchdb_find(query: &Value) -> Result<Vec<String>, String> {
    let server = support::couchdb();
    let client = reqwest::Client::new();
    let url = format!("{}/{}", server.url, unique_db("raw-query"));
    let send = |method: reqwest::Method, url: String| {
        client
            .request(method, url)
            .basic_auth(&server.user, Some(&server.password))
    };
    let failed = |e: reqwest::Error| format!("request failed: {e}");
    send(reqwest::Method::PUT, url.clone())
        .send()
        .await
        .map_err(failed)?;
    let reply = send(reqwest::Method::POST, format!("{url}/_find"))
        .json(query)
        .send()
        .await
        .map_err(failed)?;
    let status = reply.status().as_u16();
    let body = reply.text().await.unwrap_or_default();
    send(reqwest::Method::DELETE, url)
        .send()
        .await
        .map_err(failed)?;
    match status {
        400 => Err("InvalidQuery".into()),
        _ => Err(format!(
            "CouchDB answered {status} where docstore refuses the query: {body}"
        )),
    }
}

/// The seed of this run: `DOCSTORE_DIFF_SEED`, else a fresh one.
fn seed() -> u64 {
    std::env::var("DOCSTORE_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Runs a property with a seeded runner; on failure the panic names the seed.
fn run_property<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(&Crashes, S::Value) -> Result<(), TestCaseError>,
) {
    let seed = seed();
    println!(
        "{name}: {} cases, seed {seed} (replay: DOCSTORE_DIFF_SEED={seed})",
        cases()
    );
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: cases(),
            failure_persistence: None,
            max_shrink_iters: 512,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let started = std::time::Instant::now();
    let crashes = Crashes::default();
    if let Err(e) = runner.run(&strategy, |value| test(&crashes, value)) {
        panic!("{name} failed (replay with DOCSTORE_DIFF_SEED={seed}): {e}");
    }
    let crashes = crashes.into_inner().unwrap_or_default();
    println!(
        "{name}: {} queries agreed on memory, embedded and CouchDB in {:.1?}; CouchDB crashed on {} \
         (known, listed below)",
        cases() as usize * 8,
        started.elapsed(),
        crashes.len()
    );
    for crash in crashes {
        println!("  CouchDB cannot answer: {crash}");
    }
}

#[test]
fn unindexed_queries_agree_on_every_provider() {
    let queries = prop::collection::vec(
        (selector(), page()).prop_map(|(selector, (limit, skip))| {
            let mut q = json!({"selector": selector, "skip": skip});
            if let Some(limit) = limit {
                q["limit"] = json!(limit);
            }
            q
        }),
        8,
    );
    let strategy = (prop::collection::vec(document(), 0..16), queries);
    run_property("unindexed", strategy, |crashes, (corpus, queries)| {
        check(crashes, &corpus, &[], &queries)
    });
}

#[test]
fn indexed_queries_agree_on_every_provider() {
    let fields: Vec<&'static str> = vec!["a", "b", "o.a"];
    let query = (
        selector_items(),
        prop::sample::select(fields.clone()),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        page(),
    )
        .prop_map(|(mut items, f, range, desc, sorted, (limit, skip))| {
            // A range condition on the field makes its index the closest; without one the
            // planner still prefers a usable index to _all_docs, and a sort needs the index.
            match range {
                0 => items.push(json!({f: {"$gt": null}})),
                1 => items.push(json!({f: {"$exists": true}})),
                _ => {}
            }
            let mut q = json!({"selector": {"$and": items}, "skip": skip});
            if sorted {
                q["sort"] = json!([{ f: if desc { "desc" } else { "asc" } }]);
            }
            if let Some(limit) = limit {
                q["limit"] = json!(limit);
            }
            q
        });
    let indexes = prop::sample::subsequence(
        vec![vec!["a"], vec!["b"], vec!["o.a"], vec!["a", "b"]],
        1..4,
    );
    let strategy = (
        indexes,
        prop::collection::vec(document(), 0..16),
        prop::collection::vec(query, 8),
    );
    run_property(
        "indexed",
        strategy,
        |crashes, (indexes, corpus, queries)| check(crashes, &corpus, &indexes, &queries),
    );
}
