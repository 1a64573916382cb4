//! Differential property test of `find`: random documents (nested objects, arrays, mixed
//! types, missing fields) and random Mango queries must give the same ids in the same order
//! on the memory, embedded and CouchDB providers.
//!
//! Two properties: queries without indexes (the `_all_docs` path, with `limit`/`skip`), and
//! queries with JSON indexes (sorted by an indexed field, and unsorted ones the planner
//! serves from an index — which in the embedded store is a range scan over order keys, so
//! this also checks those keys against the in-memory evaluation). Each runs twice: with
//! full generation (memory, embedded, and CouchDB unless it is the stand-in), and with all
//! three providers, generation restricted when the server is the stand-in.
//!
//! Against the npm stand-in (PouchDB), generation keeps to what it does right, and says so;
//! each restriction is a wrong answer or a refusal this test found there:
//! - strings are lowercase ASCII letters and digits (it orders strings by UTF-16 code
//!   units, CouchDB by ICU collation; the two agree on that alphabet);
//! - the queried fields (`a`, `b`, `c`) are always present, scalar and never `null` (it
//!   treats missing fields as `null` under negations, finds `null` equal to other values,
//!   and compares arrays element-wise as MongoDB does); no whole-number floats;
//! - no `$ne`, `$nin`, `$exists: false`, `$all`, `$elemMatch`, `$allMatch` or field-level
//!   `$not`; no conditions on `_id` (it applies one end of an `_id` range), on dotted or
//!   numeric paths;
//! - one `$and` at the top whose items have distinct keys (it merges them into one
//!   object), and `$or`/`$nor`/`$not` one level deep only;
//! - indexed queries: one index, on a top-level field, sorted by it, with a `$gte: null`
//!   condition on it and no other condition on it, and no `$or`/`$nor`/`$not`.
//!
//! Against a genuine CouchDB (`COUCHDB_URL` or a container) everything is generated.
//! Queries the stand-in refuses although they are valid are counted, not compared; they must
//! stay under a quarter. Fixed cases found by this test live in the conformance suite.
//!
//! `DOCSTORE_DIFF_CASES` sets the number of cases per property (default 24).

mod support;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use docstore::{DatabaseService, Document, FindQuery, Settings, get_database_service, serde_json};
use docstore_providers::conformance::Service;
use docstore_providers::testing::{drop_db, unique_db};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

/// Whether the CouchDB server is the stand-in.
fn standin() -> bool {
    support::couchdb()
        .standin_deviation("PouchDB deviations")
        .is_some()
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
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("find-differential");
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
        .unwrap_or(24)
}

// ---- generation --------------------------------------------------------------------------

fn string() -> impl Strategy<Value = Value> {
    "[a-c0-9]{0,3}".prop_map(Value::from)
}

/// A scalar; on the stand-in no `null` (it compares `null` equal to other values under
/// negations) and no whole-number floats.
fn scalar(restricted: bool) -> BoxedStrategy<Value> {
    let (whole_floats, null) = if restricted {
        (Just(json!(0.5)).boxed(), Just(json!(false)).boxed())
    } else {
        (
            (-3i64..4).prop_map(|n| json!(n as f64)).boxed(),
            Just(Value::Null).boxed(),
        )
    };
    prop_oneof![
        null,
        any::<bool>().prop_map(Value::from),
        (-3i64..12).prop_map(Value::from),
        (-3i64..12).prop_map(|n| json!(n as f64 + 0.5)),
        whole_floats,
        string(),
        string(),
    ]
    .boxed()
}

fn value(restricted: bool) -> BoxedStrategy<Value> {
    scalar(restricted)
        .prop_recursive(2, 8, 3, move |inner| {
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

/// A document body; fields may be missing, except on the stand-in, where the queried
/// fields (`a`, `b`, `c`) are always present scalars (it treats a missing field as `null`
/// under negations, and compares arrays element-wise as MongoDB does).
fn document(restricted: bool) -> impl Strategy<Value = Map<String, Value>> {
    let field = move || {
        if restricted {
            scalar(restricted).prop_map(Some).boxed()
        } else {
            prop::option::weighted(0.8, value(restricted)).boxed()
        }
    };
    (
        prop::collection::vec(field(), 3),
        prop::option::weighted(0.8, value(restricted)),
    )
        .prop_map(|(values, o)| {
            FIELDS
                .iter()
                .zip(values.into_iter().chain([o]))
                .filter_map(|(f, v)| v.map(|v| ((*f).to_owned(), v)))
                .collect()
        })
}

/// Field paths for conditions; on the stand-in, never the indexed field of an indexed
/// query (it answers conditions on that field from the index, wrongly under negations).
fn path(restricted: bool, indexed: Option<&'static str>) -> BoxedStrategy<String> {
    let mut paths = vec!["a", "b", "c"];
    if !restricted {
        paths.extend(["_id", "o", "o.a", "o.b", "c.0", "o.a.1"]);
    } else if let Some(field) = indexed {
        paths.retain(|p| *p != field);
    }
    prop::sample::select(paths).prop_map(str::to_owned).boxed()
}

fn condition(restricted: bool) -> BoxedStrategy<Value> {
    let s = move || scalar(restricted);
    let list = move || prop::collection::vec(scalar(restricted), 0..3);
    let mut ops: Vec<BoxedStrategy<Value>> = vec![
        s().prop_map(|v| v).boxed(),
        s().prop_map(|v| json!({"$eq": v})).boxed(),
        s().prop_map(|v| json!({"$gt": v})).boxed(),
        s().prop_map(|v| json!({"$gte": v})).boxed(),
        s().prop_map(|v| json!({"$lt": v})).boxed(),
        s().prop_map(|v| json!({"$lte": v})).boxed(),
        (s(), s())
            .prop_map(|(a, b)| json!({"$gt": a, "$lte": b}))
            .boxed(),
        list().prop_map(|v| json!({"$in": v})).boxed(),
        Just(json!({"$exists": true})).boxed(),
        prop::sample::select(vec![
            "null", "boolean", "number", "string", "array", "object",
        ])
        .prop_map(|t| json!({"$type": t}))
        .boxed(),
        (0u64..3).prop_map(|n| json!({"$size": n})).boxed(),
        ((2i64..4), (0i64..2))
            .prop_map(|(d, r)| json!({"$mod": [d, r]}))
            .boxed(),
        prop::sample::select(vec!["^a", "b$", "^[0-9]", "a.?c", ""])
            .prop_map(|r| json!({"$regex": r}))
            .boxed(),
    ];
    if !restricted {
        ops.push(Just(json!({"$exists": false})).boxed());
        ops.push(
            prop::collection::vec(scalar(restricted), 1..3)
                .prop_map(|v| json!({"$all": v}))
                .boxed(),
        );
        ops.push(s().prop_map(|v| json!({"$elemMatch": {"$gte": v}})).boxed());
        ops.push(s().prop_map(|v| json!({"$allMatch": {"$lte": v}})).boxed());
        ops.push(list().prop_map(|v| json!({"$nin": v})).boxed());
        ops.push(s().prop_map(|v| json!({"$ne": v})).boxed());
        ops.push(s().prop_map(|v| json!({"$not": {"$gt": v}})).boxed());
    }
    prop::strategy::Union::new(ops).boxed()
}

/// The items of a selector's one top-level `$and`.
/// `indexed`: the field whose index will serve the query (the stand-in then fails on `$or`).
fn selector_items(restricted: bool, indexed: Option<&'static str>) -> BoxedStrategy<Vec<Value>> {
    let leaf = (path(restricted, indexed), condition(restricted))
        .prop_map(|(p, c)| json!({ p: c }))
        .boxed();
    if restricted && indexed.is_some() {
        // The stand-in answers indexed queries with any $or, $nor or $not wrongly or not at
        // all: there, only field conditions.
        return prop::collection::vec(leaf, 1..4)
            .prop_map(distinct_keys)
            .boxed();
    }
    // The stand-in answers combinators nested in combinators wrongly: there, one level.
    let depth = if restricted { 1 } else { 2 };
    let tree = leaf.prop_recursive(depth, 6, 3, move |inner| {
        let mut combinators = vec![
            prop::collection::vec(inner.clone(), 1..3)
                .prop_map(|v| json!({"$nor": v}))
                .boxed(),
            inner.clone().prop_map(|v| json!({"$not": v})).boxed(),
        ];
        if !(restricted && indexed.is_some()) {
            combinators.push(
                prop::collection::vec(inner.clone(), 1..3)
                    .prop_map(|v| json!({"$or": v}))
                    .boxed(),
            );
        }
        if !restricted {
            combinators.push(
                prop::collection::vec(inner, 1..3)
                    .prop_map(|v| json!({"$and": v}))
                    .boxed(),
            );
        }
        prop::strategy::Union::new(combinators)
    });
    // One top-level $and (the stand-in fails on $and nested in $and). The stand-in merges
    // the items of an $and into one object, so there each item gets its own key.
    prop::collection::vec(tree, 1..4)
        .prop_map(move |items| {
            if restricted {
                distinct_keys(items)
            } else {
                items
            }
        })
        .boxed()
}

/// Keeps the first item of each top-level key.
fn distinct_keys(items: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| {
            item.as_object()
                .and_then(|m| m.keys().next())
                .is_some_and(|k| seen.insert(k.clone()))
        })
        .collect()
}

fn page() -> impl Strategy<Value = (Option<usize>, usize)> {
    (
        prop::option::of(0usize..6),
        prop::sample::select(vec![0usize, 0, 1, 3]),
    )
}

// ---- checking ----------------------------------------------------------------------------

/// Which providers a property compares, and with what generation.
#[derive(Clone, Copy)]
struct Profile {
    /// Generation kept to what the stand-in does right.
    restricted: bool,
    /// Whether the CouchDB provider takes part.
    couchdb: bool,
}

impl Profile {
    /// Everything generated; CouchDB takes part unless it is the stand-in.
    fn full() -> Self {
        Self {
            restricted: false,
            couchdb: !standin(),
        }
    }

    /// All three providers; restricted generation if the server is the stand-in.
    fn all_providers() -> Self {
        Self {
            restricted: standin(),
            couchdb: true,
        }
    }
}

/// Per property: queries compared with CouchDB, and those the stand-in refused.
#[derive(Default)]
struct Tally {
    compared: AtomicUsize,
    refused: AtomicUsize,
}

/// Stores the corpus on the profile's providers, runs every query, and compares the ids.
fn check(
    profile: Profile,
    tally: &Tally,
    corpus: &[Map<String, Value>],
    indexes: &[Vec<&str>],
    queries: &[Value],
) -> Result<(), TestCaseError> {
    let p = providers();
    let services = if profile.couchdb {
        &p.all[..]
    } else {
        &p.all[..2]
    };
    p.runtime.block_on(async {
        let db = unique_db("diff");
        let mut answers: Vec<Vec<Result<Vec<String>, String>>> = Vec::new();
        for svc in services {
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
                let query = FindQuery::from_json(q).expect("generated queries are valid");
                results.push(run(svc.as_ref(), &db, &query).await);
            }
            answers.push(results);
            drop_db(svc, &db).await;
        }
        for (n, q) in queries.iter().enumerate() {
            let (memory, embedded) = (&answers[0][n], &answers[1][n]);
            prop_assert_eq!(memory, embedded, "memory vs embedded, query {}", q);
            let Some(couchdb) = answers.get(2).map(|a| &a[n]) else {
                continue;
            };
            tally.compared.fetch_add(1, Ordering::Relaxed);
            if standin() && memory.is_ok() && couchdb.as_ref().is_err_and(|e| e == "InvalidQuery") {
                // PouchDB refuses some valid selectors: not an answer to compare.
                tally.refused.fetch_add(1, Ordering::Relaxed);
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
        Err(docstore::Error::InvalidQuery { .. }) => Err("InvalidQuery".into()),
        Err(e) if e.is_not_found() => Err("NotFound".into()),
        Err(other) => Err(format!("unexpected error: {other}")),
    }
}

/// Prints what was compared; most queries must have been answered by the server, or the
/// property says little about it.
fn report(name: &str, profile: Profile, tally: &Tally) {
    let (compared, refused) = (
        tally.compared.load(Ordering::Relaxed),
        tally.refused.load(Ordering::Relaxed),
    );
    if !profile.couchdb {
        println!(
            "{name}: memory vs embedded only (CouchDB is the stand-in; it takes part in the restricted properties)"
        );
        return;
    }
    println!("{name}: {compared} queries compared with CouchDB; the stand-in refused {refused}");
    assert!(
        refused * 4 <= compared,
        "the stand-in refused {refused} of {compared} queries: too few comparisons"
    );
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    })
}

fn unindexed(name: &str, profile: Profile) {
    let r = profile.restricted;
    let queries = prop::collection::vec(
        (selector_items(r, None), page()).prop_map(|(items, (limit, skip))| {
            let mut q = json!({"selector": {"$and": items}, "skip": skip});
            if let Some(limit) = limit {
                q["limit"] = json!(limit);
            }
            q
        }),
        8,
    );
    let strategy = (prop::collection::vec(document(r), 0..16), queries);
    let tally = Tally::default();
    runner()
        .run(&strategy, |(corpus, queries)| {
            check(profile, &tally, &corpus, &[], &queries)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    report(name, profile, &tally);
}

fn indexed(name: &str, profile: Profile) {
    let r = profile.restricted;
    // The stand-in cannot use an index on a dotted field, and with several indexes it may
    // pick one that cannot serve the sort: there, a case has one index and sorts by it.
    let fields: Vec<&'static str> = if r {
        vec!["a", "b"]
    } else {
        vec!["a", "b", "o.a"]
    };
    let strategy = prop::sample::select(fields.clone()).prop_flat_map(move |f| {
        let indexes: Vec<&'static str> = if r { vec![f] } else { fields.clone() };
        let query = (
            selector_items(r, Some(f)),
            prop::sample::select(indexes.clone()),
            any::<bool>(),
            any::<bool>(),
            page(),
        )
            .prop_map(move |(mut items, f, desc, sorted, (limit, skip))| {
                // A range condition on the field makes its index usable and chosen (the
                // stand-in needs one even with a sort). `$gte: null` keeps every document
                // with the field, which the stand-in gets right (not so `$gt: null`).
                if r {
                    items.retain(|item| item.get(f).is_none());
                    items.push(json!({f: {"$gte": null}}));
                } else {
                    items.push(json!({f: {"$gt": null}}));
                }
                let mut q = json!({"selector": {"$and": items}, "skip": skip});
                if sorted || r {
                    q["sort"] = json!([{ f: if desc { "desc" } else { "asc" } }]);
                }
                if let Some(limit) = limit {
                    q["limit"] = json!(limit);
                }
                q
            });
        (
            Just(indexes),
            prop::collection::vec(document(r), 0..16),
            prop::collection::vec(query, 8),
        )
    });
    let tally = Tally::default();
    runner()
        .run(&strategy, |(indexes, corpus, queries)| {
            let indexes: Vec<Vec<&str>> = indexes.iter().map(|f| vec![*f]).collect();
            check(profile, &tally, &corpus, &indexes, &queries)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    report(name, profile, &tally);
}

#[test]
fn unindexed_queries_agree_on_every_provider() {
    unindexed("unindexed, all providers", Profile::all_providers());
}

#[test]
fn indexed_queries_agree_on_every_provider() {
    indexed("indexed, all providers", Profile::all_providers());
}

#[test]
fn unindexed_queries_agree_with_full_generation() {
    unindexed("unindexed, full generation", Profile::full());
}

#[test]
fn indexed_queries_agree_with_full_generation() {
    indexed("indexed, full generation", Profile::full());
}
