//! Injected faults against a genuine CouchDB: the CouchDB provider talks to the server through
//! the loopback fault proxy (`support/fault_proxy.rs`), opening a connection per request, and
//! most requests meet a fault: the connection dropped before or after the request reached
//! the server, a 500 or 503 answer, a truncated answer, an answer delayed past the request
//! timeout, a server that stops reading.
//!
//! Every call must return a result or a typed error (`Unavailable`, `Protocol`) within its
//! configured time (the request timeout per attempt); afterwards, read directly from the
//! server: no acknowledged write is lost, and no write was applied twice (each rev-less save
//! of a new document is at generation 1: a replayed one would be at 2; a conditional update
//! never reports a conflict the test did not cause). Writes whose answer is lost are settled
//! by the provider (it asks for the revision it knows the server assigns), so they succeed.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use docstore::serde_json::json;
use docstore::{CouchDbProvider, DatabaseService, Document, Error, Rev};
use docstore_providers::testing::unique_db;
use fault_proxy::{Fault, FaultProxy};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const RETRIES: u32 = 2;
const OPERATIONS: usize = 128;

fn doc(value: docstore::serde_json::Value) -> Document {
    Document::from_value(value).expect("an object")
}

/// The faults, and `None` for a clean exchange.
fn faults() -> Vec<Option<Fault>> {
    vec![
        None,
        Some(Fault::DropBeforeForwarding),
        Some(Fault::DropAfterForwarding),
        Some(Fault::Answer(500)),
        Some(Fault::Answer(503)),
        Some(Fault::TruncateAnswer(40)),
        Some(Fault::DelayAnswer(REQUEST_TIMEOUT + Duration::from_secs(1))),
        Some(Fault::StopReading(REQUEST_TIMEOUT + Duration::from_secs(1))),
    ]
}

/// How an operation ended, for the tally.
fn outcome<T>(result: &Result<T, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::Unavailable { .. }) => "unavailable",
        Err(Error::Protocol { .. }) => "protocol",
        Err(Error::Conflict { .. }) => "conflict",
        Err(e) => panic!("an untyped or unexpected error under an injected fault: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_lose_nothing_and_apply_nothing_twice() {
    let server = support::couchdb();
    let direct = CouchDbProvider::connect(server.config())
        .await
        .expect("direct connection");
    let proxy = FaultProxy::to_url(&server.url).await;
    let mut config = server.config();
    config.url = proxy.url.clone();
    config.request_timeout = REQUEST_TIMEOUT;
    config.max_retries = RETRIES;
    config.max_idle_connections = 0;
    let faulty = CouchDbProvider::connect(config)
        .await
        .expect("connect through the proxy");
    let db = unique_db("faults");
    let updated = direct
        .save(&db, "counter", doc(json!({"n": 0})))
        .await
        .expect("seed");

    // Worst case of one call: every attempt waits out the timeout, plus backoff and slack.
    let bound = REQUEST_TIMEOUT * (RETRIES + 1) + Duration::from_secs(2);
    let kinds = faults();
    let mut acked: BTreeMap<String, Rev> = BTreeMap::new();
    let mut attempted: Vec<String> = Vec::new();
    let mut counter_rev = updated.rev;
    let mut tally: BTreeMap<(String, &'static str, &'static str), usize> = BTreeMap::new();
    for k in 0..OPERATIONS {
        let fault = kinds[k % kinds.len()];
        if let Some(fault) = fault {
            proxy.inject(fault);
        }
        let fault_name = fault.map_or("none".to_owned(), |f| format!("{f:?}"));
        let started = Instant::now();
        let (op, result) = match (k / kinds.len()) % 4 {
            0 => {
                let id = format!("op-{k:04}");
                attempted.push(id.clone());
                let r = faulty.save(&db, &id, doc(json!({"op": k}))).await;
                if let Ok(w) = &r {
                    assert_eq!(w.rev.generation(), 1, "{id}");
                    acked.insert(id, w.rev);
                }
                ("save", r.map(|_| ()))
            }
            1 => {
                let ids: Vec<String> = (0..3).map(|i| format!("bulk-{k:04}-{i}")).collect();
                attempted.extend(ids.iter().cloned());
                let docs = ids
                    .iter()
                    .map(|id| doc(json!({"_id": id, "op": k})))
                    .collect();
                let r = faulty.save_many(&db, docs).await;
                // A document left in doubt is `Unavailable` on its own; the rest are settled.
                let r = r.and_then(|results| {
                    let mut first_error = None;
                    for (id, w) in ids.iter().zip(results) {
                        match w {
                            Ok(w) => {
                                assert_eq!(w.rev.generation(), 1, "{id}");
                                acked.insert(id.clone(), w.rev);
                            }
                            Err(e) => first_error = first_error.or(Some(e)),
                        }
                    }
                    first_error.map_or(Ok(()), Err)
                });
                ("save_many", r)
            }
            2 => {
                let mut body = doc(json!({"n": k}));
                body.set_rev(&counter_rev);
                let r = faulty.save(&db, "counter", body).await;
                match &r {
                    Ok(w) => counter_rev = w.rev,
                    Err(e) => {
                        assert!(!e.is_conflict(), "a conflict nobody caused: {e}");
                        // The outcome is unknown to the caller; the test reads the truth.
                        let now = direct.get(&db, "counter").await.expect("counter");
                        counter_rev = Rev::parse(now.rev().expect("rev")).expect("rev");
                    }
                }
                ("update", r.map(|_| ()))
            }
            _ => {
                let r = faulty.get(&db, "counter").await;
                if let Ok(d) = &r {
                    assert_eq!(d.rev(), Some(counter_rev.to_string().as_str()));
                }
                ("get", r.map(|_| ()))
            }
        };
        let elapsed = started.elapsed();
        assert!(
            elapsed <= bound,
            "{op} under {fault_name} took {elapsed:?}, more than {bound:?}"
        );
        *tally
            .entry((fault_name.clone(), op, outcome(&result)))
            .or_default() += 1;
        // Every operation makes a request, so each fault was met by the operation it was
        // injected for.
        assert_eq!(
            proxy.faults_pending(),
            0,
            "{op} under {fault_name} made no request"
        );
    }

    // The truth, read directly: every acknowledged write there, nothing applied twice.
    let mut applied_unacknowledged = 0;
    for id in &attempted {
        match direct.get(&db, id).await {
            Ok(d) => {
                let rev = Rev::parse(d.rev().expect("rev")).expect("rev");
                assert_eq!(rev.generation(), 1, "{id} was applied more than once");
                match acked.get(id) {
                    Some(a) => assert_eq!(*a, rev, "{id}"),
                    None => applied_unacknowledged += 1,
                }
            }
            Err(e) if e.is_not_found() => {
                assert!(!acked.contains_key(id), "acknowledged {id} was lost");
            }
            Err(e) => panic!("reading {id}: {e}"),
        }
    }
    let counter = direct.get(&db, "counter").await.expect("counter");
    assert_eq!(counter.rev(), Some(counter_rev.to_string().as_str()));
    eprintln!("fault                         operation  outcome      count");
    for ((fault, op, result), n) in &tally {
        eprintln!("{fault:<29} {op:<10} {result:<12} {n}");
    }
    eprintln!(
        "{} writes acknowledged, all present; {applied_unacknowledged} applied but not \
         acknowledged (the answer was lost); none applied twice",
        acked.len()
    );
    let _ = direct.delete_database(&db).await;
}

/// Several node URLs: requests are spread over them, and a node that refuses every
/// connection is failed over to the next, for reads and writes alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_node_is_failed_over() {
    let server = support::couchdb();
    let refusing = FaultProxy::to_url(&server.url).await;
    let working = FaultProxy::to_url(&server.url).await;
    refusing.refuse(true);
    let mut config = server.config();
    config.url = format!("{},{}", refusing.url, working.url);
    config.max_idle_connections = 0;
    let svc = CouchDbProvider::connect(config)
        .await
        .expect("connect with one node refusing");
    let db = unique_db("failover");
    for i in 0..20 {
        let id = format!("d{i}");
        let w = svc
            .save(&db, &id, doc(json!({"i": i})))
            .await
            .expect("a write fails over");
        let read = svc.get(&db, &id).await.expect("a read fails over");
        assert_eq!(read.rev(), Some(w.rev.to_string().as_str()));
    }
    assert!(
        refusing.accepted() >= 10,
        "requests were spread over both nodes: {} reached the refusing one",
        refusing.accepted()
    );
    assert!(working.accepted() >= 40);
    let _ = svc.delete_database(&db).await;
}
