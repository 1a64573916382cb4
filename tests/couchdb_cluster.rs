//! The CouchDB provider against a 3-node CouchDB 3.5 cluster (`tests/support/cluster.rs`,
//! started from the local `couchdb:3` image once per test binary; it needs no
//! `COUCHDB_URL`):
//!
//! - (the conformance suite against the cluster is `tests/couchdb_cluster_conformance.rs`,
//!   run on demand: a cluster does not give every single-node guarantee);
//! - how long the cluster takes to form, and its membership and sharding (q=2, n=3);
//! - eight writers saving 1,000 new documents through one provider given all three node
//!   URLs while node 2 stops and starts again: callers see only `Unavailable` or `Conflict`,
//!   every acknowledged write is readable at its revision from every node afterwards, and no
//!   write was applied twice (no generation 2);
//! - attachment uploads and removals while node 2 is down (no write can reach every copy, so
//!   each is answered `202 Accepted` and settled): acknowledged, and every node serves the
//!   acknowledged revision once node 2 is back.
//!
//! The tests that stop a node take turns (`NODE_FAULTS`): two nodes down at once would leave
//! a shard range without a quorum.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cluster::Cluster;
use docstore::serde_json::json;
use docstore::{
    AttachmentRead, CouchDbConfig, CouchDbProvider, DatabaseService, Document, Error,
    NewAttachment, OpenRev, OpenRevs, Secret,
};

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// Held by a test while it stops and restarts a node.
static NODE_FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary's cluster, started on first use from a plain thread (it blocks on Docker).
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = std::thread::spawn(Cluster::start)
            .join()
            .expect("the 3-node CouchDB cluster did not start (see the panic above)");
        eprintln!(
            "3-node CouchDB cluster {} formed in {:.1} s at {}",
            cluster.network,
            cluster.formed_in.as_secs_f64(),
            cluster.urls().join(",")
        );
        cluster
    })
}

/// A provider on `url` (one node, or several comma-separated) with the cluster's admin.
async fn provider(url: &str) -> Arc<dyn DatabaseService> {
    let cluster = cluster();
    let mut config = CouchDbConfig::new(url);
    config.user = Some(cluster.user.clone());
    config.password = Some(Secret::new(&cluster.password));
    let provider = CouchDbProvider::connect(config)
        .await
        .unwrap_or_else(|e| panic!("the CouchDB provider connects to {url}: {e}"));
    Arc::new(provider)
}

#[test]
fn the_cluster_forms_with_three_members_and_q2_n3() {
    let cluster = cluster();
    println!("cluster formed in {:.1} s", cluster.formed_in.as_secs_f64());
    let db = format!("cluster_shape_{:08x}", fastrand::u32(..));
    let (status, body) = cluster.request(0, "PUT", &format!("/{db}"), None).unwrap();
    assert!(matches!(status, 201 | 202), "PUT /{db}: {status} {body}");
    for node in 0..3 {
        let (status, body) = cluster
            .request(node, "GET", &format!("/{db}"), None)
            .unwrap();
        assert_eq!(status, 200, "GET /{db} on node {}: {body}", node + 1);
        let info: docstore::serde_json::Value = docstore::serde_json::from_str(&body).unwrap();
        assert_eq!(info["cluster"]["q"], 2, "q on node {}: {body}", node + 1);
        assert_eq!(info["cluster"]["n"], 3, "n on node {}: {body}", node + 1);
    }
    let (status, body) = cluster
        .request(0, "GET", &format!("/{db}/_shards"), None)
        .unwrap();
    assert_eq!(status, 200, "_shards: {body}");
    let shards: docstore::serde_json::Value = docstore::serde_json::from_str(&body).unwrap();
    let ranges = shards["shards"].as_object().expect("_shards lists ranges");
    assert_eq!(ranges.len(), 2, "q=2 ranges: {body}");
    for (range, nodes) in ranges {
        assert_eq!(
            nodes.as_array().map(Vec::len),
            Some(3),
            "n=3 copies of {range}"
        );
    }
    let _ = cluster.request(0, "DELETE", &format!("/{db}"), None);
}

const WRITERS: usize = 8;
const PER_WRITER: usize = 125;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_while_a_node_stops_and_restarts() {
    let _faults = NODE_FAULTS.lock().await;
    let cluster = cluster();
    let urls = cluster.urls();
    let all = provider(&urls.join(",")).await;
    let db = format!("cluster_writers_{:08x}", fastrand::u32(..));
    all.set_revs_limit(&db, 1000)
        .await
        .expect("create the database");

    let total = WRITERS * PER_WRITER;
    let attempted = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let errors: Arc<Mutex<Vec<(String, Error, Duration)>>> = Arc::default();
    let begun = Instant::now();

    // Node 2 (index 1) stops after about a third of the writes and starts after two thirds.
    // The events' times since `begun`: stop asked, stopped, start asked, back and rejoined.
    let fault = {
        let attempted = attempted.clone();
        tokio::spawn(async move {
            while attempted.load(Ordering::SeqCst) < total / 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let stop_asked = begun.elapsed();
            tokio::task::spawn_blocking(|| self::cluster().stop(1))
                .await
                .unwrap();
            let stopped = begun.elapsed();
            while attempted.load(Ordering::SeqCst) < 2 * total / 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let start_asked = begun.elapsed();
            tokio::task::spawn_blocking(|| self::cluster().start_node(1))
                .await
                .unwrap();
            [stop_asked, stopped, start_asked, begun.elapsed()]
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (all, db) = (all.clone(), db.clone());
            let (attempted, acked, errors) = (attempted.clone(), acked.clone(), errors.clone());
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    let id = format!("w{w}-{i:03}");
                    let doc = Document::from_value(json!({"writer": w, "n": i})).unwrap();
                    let result = all.save(&db, &id, doc).await;
                    attempted.fetch_add(1, Ordering::SeqCst);
                    match result {
                        Ok(written) => {
                            assert_eq!(written.id, id);
                            acked.lock().unwrap().insert(id, written.rev.to_string());
                        }
                        Err(e) => errors.lock().unwrap().push((id, e, begun.elapsed())),
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let writes_took = begun.elapsed();
    let events = fault.await.expect("stopping or restarting node 2 failed");

    let acked = acked.lock().unwrap().clone();
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    let phases = ["before", "stopping", "down", "starting", "after"];
    let mut by_kind: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (_, e, at) in &errors {
        let phase = phases[events.iter().filter(|t| *t <= at).count()];
        *by_kind.entry((e.kind(), phase)).or_default() += 1;
    }
    let secs = events.map(|t| format!("{:.1}", t.as_secs_f64()));
    println!(
        "{total} writes by {WRITERS} writers in {:.1} s: {} acknowledged, errors by (kind, \
         phase) {by_kind:?}; node 2: stop asked at {} s, stopped at {}, start asked at {}, \
         back and rejoined at {}",
        writes_took.as_secs_f64(),
        acked.len(),
        secs[0],
        secs[1],
        secs[2],
        secs[3],
    );
    for (id, e, at) in &errors {
        println!("  {id} at {:.2} s: {e}", at.as_secs_f64());
        assert!(
            matches!(e, Error::Unavailable { .. } | Error::Conflict { .. }),
            "{id}: callers may only see Unavailable or Conflict, got {e:?}"
        );
    }
    assert_eq!(acked.len() + errors.len(), total);

    // Every acknowledged write, at its revision, from every node.
    let checked = Instant::now();
    for (node, url) in urls.iter().enumerate() {
        let one = provider(url).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        for (id, rev) in &acked {
            loop {
                let got = one.get(&db, id).await.map(|d| d.rev().map(str::to_owned));
                match got {
                    Ok(Some(r)) if &r == rev => break,
                    other if Instant::now() > deadline => panic!(
                        "node {}: {id} acknowledged at {rev}, read {other:?}",
                        node + 1
                    ),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
    println!(
        "all {} acknowledged writes read back from each of 3 nodes in {:.1} s",
        acked.len(),
        checked.elapsed().as_secs_f64()
    );

    // No write applied twice: every leaf of every document is generation 1.
    let mut present_after_error = 0;
    for w in 0..WRITERS {
        for i in 0..PER_WRITER {
            let id = format!("w{w}-{i:03}");
            let leaves = match all.open_revs(&db, &id, &OpenRevs::All, false).await {
                Ok(leaves) => leaves,
                Err(e) if e.is_not_found() && !acked.contains_key(&id) => continue,
                Err(e) => panic!("open_revs {id}: {e}"),
            };
            if !acked.contains_key(&id) {
                present_after_error += 1;
            }
            for leaf in leaves {
                let OpenRev::Found(doc) = leaf else {
                    panic!("{id}: a leaf is missing: {leaf:?}")
                };
                let rev = doc.rev().unwrap_or_default().to_owned();
                assert!(
                    rev.starts_with("1-"),
                    "{id}: leaf {rev} is not generation 1 (a write applied twice?)"
                );
            }
        }
    }
    println!(
        "{present_after_error} documents whose save answered an error exist anyway (at gen 1)"
    );
    all.delete_database(&db).await.expect("remove the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_writes_while_a_node_is_down_are_settled() {
    let _faults = NODE_FAULTS.lock().await;
    let cluster = cluster();
    let urls = cluster.urls();
    let all = provider(&urls.join(",")).await;
    let db = format!("cluster_attachments_{:08x}", fastrand::u32(..));
    let doc = Document::from_value(json!({"kind": "note"})).unwrap();
    let first = all.save(&db, "n1", doc).await.expect("save");
    let text = |t: &str| NewAttachment::new("text/plain", t.as_bytes().to_vec());

    tokio::task::spawn_blocking(|| self::cluster().stop(1))
        .await
        .unwrap();
    let uploaded = all
        .put_attachment(&db, "n1", "a.txt", Some(&first.rev), text("abc"))
        .await;
    let second = all
        .put_attachment(&db, "n1", "b.txt", None, text("def"))
        .await;
    tokio::task::spawn_blocking(|| self::cluster().start_node(1))
        .await
        .unwrap();
    let uploaded = uploaded.expect("an upload two of three copies took is acknowledged");
    assert!(
        matches!(second, Err(Error::Conflict { .. })),
        "an upload without rev on a live document is a conflict, node down or not: {second:?}"
    );
    let removed = all
        .delete_attachment(&db, "n1", "a.txt", &uploaded.rev)
        .await
        .expect("a removal on the current revision");
    assert!(removed.rev.to_string().starts_with("3-"), "{}", removed.rev);

    // Every node serves the upload at its revision, and the removal as the winner.
    for (node, url) in urls.iter().enumerate() {
        let one = provider(url).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let at_upload = AttachmentRead {
                rev: Some(uploaded.rev),
                ..AttachmentRead::default()
            };
            let read = one.get_attachment(&db, "n1", "a.txt", &at_upload).await;
            let winner = one.get(&db, "n1").await.map(|d| d.rev().map(str::to_owned));
            match (&read, &winner) {
                (Ok(a), Ok(Some(w)))
                    if a.data.as_ref() == b"abc" && *w == removed.rev.to_string() =>
                {
                    break;
                }
                _ if Instant::now() > deadline => panic!(
                    "node {}: upload {} and removal {} acknowledged; read {:?}, winner {winner:?}",
                    node + 1,
                    uploaded.rev,
                    removed.rev,
                    read.map(|a| a.data),
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    all.delete_database(&db).await.expect("remove the database");
}
