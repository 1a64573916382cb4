//! Crash safety of the embedded provider, tested with real `SIGKILL`s.
//!
//! The binary plays two roles. As the parent (normal `cargo test` run) it starts itself again
//! as a writer child on one store, kills the child with `SIGKILL` at a random moment, reopens
//! the store and checks it against what the child acknowledged; it does this
//! `DOCSTORE_CRASH_KILLS` times (default 30). As the child (`DOCSTORE_CRASH_CHILD` set) it
//! writes forever: single saves, bulk saves and deletes, printing each operation before it
//! starts (`BEGIN`) and after it is acknowledged (`ACK`, then `DONE`).
//!
//! After every kill the parent checks that:
//! - the store opens without error;
//! - every acknowledged write is present at its acknowledged revision;
//! - the one operation in flight is applied wholly or not at all (a bulk save never half);
//! - the changes feed lists each document once, at its current revision, and agrees with the
//!   database's counts.
//!
//! `harness = false`: a child process re-running the binary needs control of `main`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docstore::serde_json::json;
use docstore::{DatabaseService, Document, EmbeddedConfig, EmbeddedProvider, Rev};

const DB: &str = "crash";
/// The database the concurrent writers use.
const CONCURRENT_DB: &str = "crash-concurrent";
/// Tasks saving at the same time as the main writer.
const CONCURRENT_WRITERS: u32 = 4;
const TEST_NAME: &str = "acknowledged_writes_survive_sigkill";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // nextest lists ignored tests with `--list --ignored`: this one is not ignored.
        if !args.iter().any(|a| a == "--ignored") {
            println!("{TEST_NAME}: test");
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(path) = std::env::var("DOCSTORE_CRASH_CHILD") {
        runtime.block_on(child(Path::new(&path)));
        return;
    }
    // A name filter that excludes this test skips it, as libtest would.
    let filters: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("0 passed, 0 failed, 1 skipped ({TEST_NAME} filtered out)");
        return;
    }
    let kills: usize = std::env::var("DOCSTORE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let started = Instant::now();
    runtime.block_on(parent(kills));
    println!(
        "test {TEST_NAME} ... ok ({kills} kills in {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    println!("1 passed, 0 failed");
}

/// The writer: runs until killed.
async fn child(path: &Path) {
    let store = EmbeddedProvider::open(EmbeddedConfig::new(path))
        .await
        .expect("child opens the store");
    let run: u64 = std::env::var("DOCSTORE_CRASH_RUN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    say("READY");
    let store = std::sync::Arc::new(store);
    for writer in 0..CONCURRENT_WRITERS {
        tokio::spawn(concurrent_writer(std::sync::Arc::clone(&store), writer));
    }
    for i in 0u64.. {
        let op = i + run * 1_000_000;
        let pick = fastrand::u32(0..10);
        let pad = "x".repeat(fastrand::usize(0..3000));
        if pick < 5 {
            let id = format!("d{}", fastrand::u32(0..40));
            say(&format!("BEGIN {op} save {id}"));
            let body = json!({"op": op, "pad": pad});
            let w = store
                .save(DB, &id, Document::from_value(body).expect("object"))
                .await
                .expect("save");
            say(&format!("ACK {op} {} {} live", w.id, w.rev));
        } else if pick < 8 {
            let first = fastrand::u32(0..40);
            let ids: Vec<String> = (0..8).map(|k| format!("b{}", (first + k) % 40)).collect();
            say(&format!("BEGIN {op} bulk {}", ids.join(",")));
            let docs = ids
                .iter()
                .map(|id| {
                    Document::from_value(json!({"_id": id, "op": op, "pad": pad})).expect("object")
                })
                .collect();
            for r in store.save_many(DB, docs).await.expect("bulk save") {
                let w = r.expect("bulk save of a valid document");
                say(&format!("ACK {op} {} {} live", w.id, w.rev));
            }
        } else {
            let id = format!("d{}", fastrand::u32(0..40));
            say(&format!("BEGIN {op} delete {id}"));
            match store.delete(DB, &id).await {
                Ok(w) => say(&format!("ACK {op} {} {} deleted", w.id, w.rev)),
                Err(e) if e.is_not_found() => say(&format!("ACK {op} {id} - notfound")),
                Err(e) => panic!("delete failed: {e}"),
            }
        }
        say(&format!("DONE {op}"));
    }
}

/// Durable saves from several tasks at once (they share fsyncs: group commit), each on its
/// own documents of [`CONCURRENT_DB`], printing `CBEGIN <writer> <id>` before and
/// `CACK <writer> <id> <rev>` after each acknowledged save.
async fn concurrent_writer(store: std::sync::Arc<EmbeddedProvider>, writer: u32) {
    for n in 0u64.. {
        let id = format!("c{writer}-{}", n % 8);
        say(&format!("CBEGIN {writer} {id}"));
        let body = json!({"writer": writer, "n": n});
        let w = store
            .save(
                CONCURRENT_DB,
                &id,
                Document::from_value(body).expect("object"),
            )
            .await
            .expect("concurrent save");
        say(&format!("CACK {writer} {id} {}", w.rev));
    }
}

/// One line on stdout, flushed (lines of several tasks never interleave).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

/// What the parent knows of one document: its acknowledged revision and state.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Known {
    rev: Rev,
    deleted: bool,
}

/// An operation the child began but did not finish acknowledging.
#[derive(Debug)]
struct InFlight {
    op: u64,
    kind: String,
    ids: Vec<String>,
}

async fn parent(kills: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let exe = std::env::current_exe().expect("own path");
    let mut model: BTreeMap<String, Known> = BTreeMap::new();
    let mut acked_total = 0usize;
    let mut in_flight_applied = 0usize;
    let mut concurrent: BTreeMap<String, Rev> = BTreeMap::new();
    let mut concurrent_acked = 0usize;
    for run in 0..kills {
        let mut child = Command::new(&exe)
            .env("DOCSTORE_CRASH_CHILD", &path)
            .env("DOCSTORE_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        if fastrand::u8(0..5) == 0 {
            // One kill in five lands while the child opens (and recovers) the store.
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..20)));
        } else {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the child opens the store and says READY");
            assert_eq!(line, "READY");
            std::thread::sleep(Duration::from_millis(fastrand::u64(1..60)));
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap child");
        assert!(
            !status.success(),
            "the child must die by the kill, not exit: {status}"
        );
        reader.join().expect("reader thread");
        lines.extend(rx.try_iter());
        let (acked, in_flight) = apply_acknowledged(&lines, &mut model);
        acked_total += acked;

        let store = EmbeddedProvider::open(EmbeddedConfig::new(&path))
            .await
            .unwrap_or_else(|e| panic!("run {run}: the store must reopen after SIGKILL: {e}"));
        if let Some(flight) = &in_flight
            && check_in_flight(&store, flight, &mut model).await
        {
            in_flight_applied += 1;
        }
        verify(&store, &model, run).await;
        let (acked, in_flight) = apply_concurrent(&lines, &mut concurrent);
        concurrent_acked += acked;
        verify_concurrent(&store, &mut concurrent, &in_flight, run).await;
        drop(store);
    }
    assert!(acked_total > 0, "the children acknowledged no write at all");
    assert!(
        concurrent_acked > 0,
        "the concurrent writers acknowledged nothing"
    );
    eprintln!(
        "crash test: {kills} kills, {acked_total} acknowledged operations checked, \
         {in_flight_applied} in-flight operations found committed; {concurrent_acked} \
         acknowledged saves of {CONCURRENT_WRITERS} concurrent writers checked"
    );
}

/// Applies every completed (`DONE`) operation to the model; returns how many, and the
/// operation in flight at the kill, if any.
fn apply_acknowledged(
    lines: &[String],
    model: &mut BTreeMap<String, Known>,
) -> (usize, Option<InFlight>) {
    let mut current: Option<InFlight> = None;
    let mut pending: Vec<(String, Option<Known>)> = Vec::new();
    let mut done = 0;
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["READY"] => {}
            ["BEGIN", op, kind, ids] => {
                current = Some(InFlight {
                    op: op.parse().expect("op number"),
                    kind: kind.to_string(),
                    ids: ids.split(',').map(str::to_owned).collect(),
                });
                pending.clear();
            }
            ["ACK", _, id, rev, state] => {
                let known = match *state {
                    "notfound" => None,
                    _ => Some(Known {
                        rev: Rev::parse(rev).expect("acknowledged rev"),
                        deleted: *state == "deleted",
                    }),
                };
                pending.push((id.to_string(), known));
            }
            ["DONE", op] => {
                let flight = current.take().expect("DONE follows BEGIN");
                assert_eq!(flight.op.to_string(), *op);
                for (id, known) in pending.drain(..) {
                    match known {
                        Some(k) => {
                            model.insert(id, k);
                        }
                        None => assert!(
                            model.get(&id).is_none_or(|k| k.deleted),
                            "delete of {id} said not found, but it was live"
                        ),
                    }
                }
                done += 1;
            }
            // A line cut by the kill.
            _ => {}
        }
    }
    (done, current)
}

/// The in-flight operation must be wholly applied or not at all. Updates the model if it was
/// applied; returns whether it was.
async fn check_in_flight(
    store: &EmbeddedProvider,
    flight: &InFlight,
    model: &mut BTreeMap<String, Known>,
) -> bool {
    let mut applied = Vec::new();
    for id in &flight.ids {
        let before = model.get(id).copied();
        let now = current_state(store, id).await;
        if now.map(|n| n.0) == before {
            applied.push(false);
            continue;
        }
        let (known, op) = now.expect("a document never disappears");
        let expected_generation = before.map_or(1, |b| b.rev.generation() + 1);
        assert_eq!(
            known.rev.generation(),
            expected_generation,
            "{id}: {flight:?}"
        );
        match flight.kind.as_str() {
            "delete" => assert!(known.deleted, "{id}: {flight:?}"),
            _ => assert_eq!(
                op,
                Some(flight.op),
                "{id} holds another op's body: {flight:?}"
            ),
        }
        model.insert(id.clone(), known);
        applied.push(true);
    }
    let all = applied.iter().all(|a| *a);
    let none = applied.iter().all(|a| !*a);
    assert!(
        all || none,
        "operation half-applied after SIGKILL: {flight:?} {applied:?}"
    );
    all
}

/// The stored state of a document: revision, deletedness, and the `op` its body carries.
async fn current_state(store: &EmbeddedProvider, id: &str) -> Option<(Known, Option<u64>)> {
    match store.get(DB, id).await {
        Ok(doc) => Some((
            Known {
                rev: Rev::parse(doc.rev().expect("rev")).expect("valid rev"),
                deleted: false,
            },
            doc.get("op").and_then(|v| v.as_u64()),
        )),
        Err(e) if e.is_not_found() => {
            // Deleted or missing: the changes feed tells which, and at which revision.
            let changes = store.changes(DB, None, 10_000).await.ok()?;
            changes.results.into_iter().find(|c| c.id == id).map(|c| {
                assert!(
                    c.deleted,
                    "{id} is in the feed as live but get says not found"
                );
                (
                    Known {
                        rev: c.rev,
                        deleted: true,
                    },
                    None,
                )
            })
        }
        Err(e) => panic!("reading {id}: {e}"),
    }
}

async fn verify(store: &EmbeddedProvider, model: &BTreeMap<String, Known>, run: usize) {
    let changes = match store.changes(DB, None, 100_000).await {
        Ok(c) => c.results,
        Err(e) if e.is_not_found() => {
            assert!(model.is_empty(), "run {run}: database lost: {e}");
            return;
        }
        Err(e) => panic!("run {run}: changes: {e}"),
    };
    let mut seen = BTreeMap::new();
    let mut last_seq = 0u64;
    for c in &changes {
        let seq: u64 = c.seq.parse().expect("numeric seq");
        assert!(seq > last_seq, "run {run}: changes out of order");
        last_seq = seq;
        assert!(
            seen.insert(
                c.id.clone(),
                Known {
                    rev: c.rev,
                    deleted: c.deleted
                }
            )
            .is_none(),
            "run {run}: {} appears twice in the changes feed",
            c.id
        );
    }
    for (id, known) in model {
        assert_eq!(
            seen.get(id),
            Some(known),
            "run {run}: {id} is not at its acknowledged revision"
        );
        match store.get(DB, id).await {
            Ok(doc) => {
                assert!(
                    !known.deleted,
                    "run {run}: {id} was deleted but reads as live"
                );
                assert_eq!(doc.rev(), Some(known.rev.to_string().as_str()));
            }
            Err(e) => {
                assert!(e.is_not_found() && known.deleted, "run {run}: {id}: {e}");
            }
        }
    }
    assert_eq!(
        seen.len(),
        model.len(),
        "run {run}: unacknowledged documents exist"
    );
    let info = store.database_info(DB).await.expect("info");
    let live = model.values().filter(|k| !k.deleted).count() as u64;
    assert_eq!(info.doc_count, live, "run {run}: doc_count");
    assert_eq!(
        info.doc_del_count,
        model.len() as u64 - live,
        "run {run}: doc_del_count"
    );
    assert_eq!(
        info.update_seq,
        last_seq.to_string(),
        "run {run}: update_seq"
    );
    let listed = store.list_all(DB).await.expect("list");
    assert_eq!(listed.len() as u64, live, "run {run}: listing");
}

/// Applies the concurrent writers' acknowledged saves (`CACK`) to `model`; returns how many,
/// and each writer's save in flight at the kill (a `CBEGIN` without its `CACK`).
fn apply_concurrent(
    lines: &[String],
    model: &mut BTreeMap<String, Rev>,
) -> (usize, BTreeMap<String, String>) {
    let mut in_flight: BTreeMap<String, String> = BTreeMap::new();
    let mut acked = 0;
    for line in lines {
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["CBEGIN", writer, id] => {
                in_flight.insert(writer.to_string(), id.to_string());
            }
            ["CACK", writer, id, rev] => {
                model.insert(id.to_string(), Rev::parse(rev).expect("acknowledged rev"));
                in_flight.remove(*writer);
                acked += 1;
            }
            _ => {}
        }
    }
    (acked, in_flight)
}

/// Every acknowledged concurrent save is stored at its revision, or one generation later if
/// that writer's save in flight at the kill was on the same document (and got committed).
async fn verify_concurrent(
    store: &EmbeddedProvider,
    model: &mut BTreeMap<String, Rev>,
    in_flight: &BTreeMap<String, String>,
    run: usize,
) {
    let flying: Vec<&String> = in_flight.values().collect();
    for id in flying.iter().copied() {
        if !model.contains_key(id) {
            // A first save in flight: absent, or there at generation 1.
            if let Ok(doc) = store.get(CONCURRENT_DB, id).await {
                let rev = Rev::parse(doc.rev().expect("rev")).expect("valid rev");
                assert_eq!(rev.generation(), 1, "run {run}: {id}");
                model.insert(id.clone(), rev);
            }
        }
    }
    for (id, acked) in model.iter_mut() {
        let doc = store
            .get(CONCURRENT_DB, id)
            .await
            .unwrap_or_else(|e| panic!("run {run}: acknowledged {id} lost: {e}"));
        let stored = Rev::parse(doc.rev().expect("rev")).expect("valid rev");
        if stored != *acked {
            assert!(
                flying.contains(&id) && stored.generation() == acked.generation() + 1,
                "run {run}: {id} is at {stored}, acknowledged at {acked}"
            );
            *acked = stored;
        }
    }
}
