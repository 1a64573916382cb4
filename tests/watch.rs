//! `watch` under stress and faults, beyond the conformance suite's behaviours:
//!
//! - a CouchDB feed whose connection a loopback proxy cuts mid-stream, refuses for a while
//!   (the server restarting, as the client sees it) or stalls: the stream reconnects from
//!   the last sequence it delivered and every change arrives;
//! - a million changes through one stream (memory; embedded with `DOCSTORE_WATCH_MILLION=1`,
//!   else 100,000), the heap measured by this binary's own allocator: a stream whose
//!   consumer does not poll while the writes happen holds none of them, and draining it
//!   stays flat.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use docstore::serde_json::json;
use docstore::{
    ChangeStream, CouchDbProvider, DatabaseService, Document, Durability, EmbeddedConfig,
    EmbeddedProvider, MemoryProvider, Rev, WatchOptions,
};
use docstore_providers::testing::{drop_db, unique_db};
use fault_proxy::FaultProxy;
use futures::StreamExt;

/// Counts the bytes this test binary holds on the heap.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size, Ordering::Relaxed);
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by every test of this binary for its whole run: the heap is counted for the whole
/// process, so the measuring tests must not share it with another test's allocations
/// (`cargo test` runs a binary's tests on threads of one process).
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn held_mib() -> f64 {
    HELD.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

fn doc(value: docstore::serde_json::Value) -> Document {
    Document::from_value(value).expect("an object")
}

/// Waits for the next change, at most `patience`.
async fn next_change(stream: &mut ChangeStream, patience: Duration) -> docstore::LiveChange {
    match tokio::time::timeout(patience, stream.next()).await {
        Ok(Some(Ok(change))) => change,
        Ok(Some(Err(e))) => panic!("the stream failed: {e}"),
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no change within {patience:?}"),
    }
}

/// Writes `ids` through `writer` (not through the proxy) and returns their revisions.
async fn write(
    writer: &CouchDbProvider,
    db: &str,
    ids: std::ops::Range<usize>,
) -> Vec<(String, Rev)> {
    let docs: Vec<Document> = ids
        .clone()
        .map(|i| doc(json!({"_id": format!("d{i:04}"), "i": i})))
        .collect();
    let results = writer.save_many(db, docs).await.expect("bulk save");
    ids.zip(results)
        .map(|(i, r)| (format!("d{i:04}"), r.expect("each save succeeds").rev))
        .collect()
}

/// Reads changes until every id of `expected` was seen at its revision, counting those
/// already in `seen`; returns how many changes were delivered (more than the ids means
/// some repeated across a reconnect).
async fn read_all(
    stream: &mut ChangeStream,
    seen: &mut BTreeMap<String, Rev>,
    expected: &BTreeMap<String, Rev>,
) -> usize {
    let mut delivered = 0;
    while *seen != *expected {
        let change = next_change(stream, Duration::from_secs(60)).await.change;
        delivered += 1;
        assert!(
            expected.contains_key(&change.id),
            "unexpected change {change:?}"
        );
        seen.insert(change.id, change.rev);
    }
    delivered
}

async fn couch_through(proxy: &FaultProxy) -> CouchDbProvider {
    let mut config = support::couchdb().config();
    config.url = proxy.url.clone();
    config.request_timeout = Duration::from_secs(5);
    CouchDbProvider::connect(config)
        .await
        .expect("connect through the proxy")
}

/// Cut, refused, then stalled: each time the stream reopens the feed from its last
/// sequence and delivers every change written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchdb_feed_survives_cuts_restarts_and_stalls() {
    let _alone = ALONE.lock().await;
    let writer = CouchDbProvider::connect(support::couchdb().config())
        .await
        .expect("connect");
    let proxy = Arc::new(FaultProxy::to_url(&support::couchdb().url).await);
    let watcher = couch_through(&proxy).await;
    let db = unique_db("watch-faults");
    write(&writer, &db, 0..1).await;
    let options = WatchOptions::new().heartbeat(Duration::from_millis(200));
    let mut stream = watcher.watch(&db, options).await.expect("watch");
    let mut expected = BTreeMap::new();

    // 1. Mid-stream cut: half read, the connection cut, the rest written after.
    expected.extend(write(&writer, &db, 1..51).await);
    let mut seen = BTreeMap::new();
    while seen.len() < 25 {
        let change = next_change(&mut stream, Duration::from_secs(30))
            .await
            .change;
        seen.insert(change.id, change.rev);
    }
    let before = proxy.accepted();
    proxy.cut();
    expected.extend(write(&writer, &db, 51..101).await);
    let delivered = read_all(&mut stream, &mut seen, &expected).await;
    assert!(proxy.accepted() > before, "the stream reconnected");
    eprintln!(
        "cut: {} changes delivered after the cut for {} documents not yet seen",
        delivered,
        expected.len() - 25
    );

    // 2. The server "restarts": connections cut and refused for 2 s, writes meanwhile.
    // The stream is read while the fault lasts, so it meets the refused connections.
    proxy.refuse(true);
    proxy.cut();
    let refused_at = proxy.accepted();
    let mut more = BTreeMap::new();
    more.extend(write(&writer, &db, 101..151).await);
    let restarting = Arc::clone(&proxy);
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tries = restarting.accepted() - refused_at;
        restarting.refuse(false);
        tries
    });
    read_all(&mut stream, &mut BTreeMap::new(), &more).await;
    let refused_tries = restart.await.expect("restart task");
    assert!(refused_tries >= 1, "the stream tried again while refused");
    eprintln!("restart: {refused_tries} connections refused in 2 s, then every change");

    // 3. A stall: nothing forwarded, sockets open. After three heartbeats of silence the
    // stream drops the connection and opens another (which gets through once the stall ends).
    proxy.stall(true);
    let stalled_at = proxy.accepted();
    let mut last = BTreeMap::new();
    last.extend(write(&writer, &db, 151..161).await);
    let stalling = Arc::clone(&proxy);
    let unstall = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reopened = stalling.accepted() - stalled_at;
        stalling.stall(false);
        reopened
    });
    read_all(&mut stream, &mut BTreeMap::new(), &last).await;
    let reopened = unstall.await.expect("unstall task");
    assert!(
        reopened >= 1,
        "a silent connection is dropped and reopened within three heartbeats"
    );
    eprintln!("stall: {reopened} connections opened during a 2 s stall, then every change");

    drop(stream);
    drop_db(&(Arc::new(writer) as Arc<dyn DatabaseService>), &db).await;
}

/// A database deleted while the feed was disconnected: the reconnect finds it gone and the
/// stream ends with the database's `NotFound`, not a reconnect loop.
#[tokio::test]
async fn couchdb_feed_ends_on_a_database_gone_while_disconnected() {
    let _alone = ALONE.lock().await;
    let writer = CouchDbProvider::connect(support::couchdb().config())
        .await
        .expect("connect");
    let proxy = FaultProxy::to_url(&support::couchdb().url).await;
    let watcher = couch_through(&proxy).await;
    let db = unique_db("watch-gone");
    write(&writer, &db, 0..1).await;
    let mut stream = watcher
        .watch(
            &db,
            WatchOptions::new().heartbeat(Duration::from_millis(200)),
        )
        .await
        .expect("watch");
    proxy.refuse(true);
    proxy.cut();
    writer.delete_database(&db).await.expect("delete");
    proxy.refuse(false);
    let end = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("the stream answers");
    match end {
        Some(Err(e)) => assert!(e.is_database_missing(), "got {e}"),
        other => panic!("expected the database's NotFound, got {other:?}"),
    }
}

/// Writes `count` small documents in batches.
async fn fill(svc: &dyn DatabaseService, db: &str, count: usize) {
    const BATCH: usize = 5_000;
    for start in (0..count).step_by(BATCH) {
        let docs = (start..(start + BATCH).min(count))
            .map(|i| doc(json!({"_id": format!("{i:07}"), "i": i})))
            .collect();
        for r in svc.save_many(db, docs).await.expect("bulk save") {
            r.expect("save");
        }
    }
}

/// `count` writes while two streams wait unpolled: dropping one then frees (next to) nothing,
/// since a stream holds no queue of writes; the other then drains every change in order
/// while the heap stays flat.
async fn many_changes(svc: Arc<dyn DatabaseService>, count: usize) {
    let db = unique_db("many-changes");
    svc.save(&db, "seed", doc(json!({}))).await.expect("seed");
    let mut kept = svc.watch(&db, WatchOptions::new()).await.expect("watch");
    let dropped = svc.watch(&db, WatchOptions::new()).await.expect("watch");
    let before = held_mib();
    fill(&*svc, &db, count).await;
    let written = held_mib();
    drop(dropped);
    let freed = written - held_mib();
    eprintln!(
        "{}: {count} writes with two unpolled streams: heap +{:.1} MiB; dropping one stream \
         freed {freed:.2} MiB",
        svc.provider_name(),
        written - before
    );
    assert!(
        freed < 1.0,
        "an unpolled stream must not hold the writes: dropping it freed {freed:.2} MiB"
    );

    let drain_start = held_mib();
    let mut peak = drain_start;
    let mut last_seq = 0u64;
    for n in 0..count {
        let change = next_change(&mut kept, Duration::from_secs(60)).await.change;
        let seq: u64 = change.seq.parse().expect("a local provider's sequence");
        assert!(seq > last_seq, "changes in sequence order");
        last_seq = seq;
        assert_eq!(change.id, format!("{n:07}"));
        if n % 10_000 == 0 {
            peak = peak.max(held_mib());
        }
    }
    eprintln!(
        "{}: draining {count} changes: heap {drain_start:.1} MiB at the start, peak {peak:.1} MiB",
        svc.provider_name()
    );
    assert!(
        peak - drain_start < 16.0,
        "draining holds one page, not the feed: {drain_start:.1} -> {peak:.1} MiB"
    );
    drop(kept);
    drop_db(&svc, &db).await;
}

/// How many changes the embedded run streams: a million with `DOCSTORE_WATCH_MILLION=1`
/// (about 3 minutes in a debug build), else 100,000.
fn embedded_count() -> usize {
    match std::env::var("DOCSTORE_WATCH_MILLION").as_deref() {
        Ok("1") => 1_000_000,
        _ => 100_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_changes_through_one_memory_stream() {
    let _alone = ALONE.lock().await;
    many_changes(Arc::new(MemoryProvider::new()), 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_changes_through_one_embedded_stream() {
    let _alone = ALONE.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EmbeddedConfig::new(dir.path().join("store"));
    config.durability = Durability::Buffered;
    config.cache_bytes = 8 * 1024 * 1024;
    let svc = EmbeddedProvider::open(config).await.expect("open");
    many_changes(Arc::new(svc), embedded_count()).await;
}
