//! Streamed attachments (`BENCH_ATTACHMENT_MB`, default 1,024 MiB of bytes that do not
//! compress, in 1 MiB pieces): `put_attachment_stream` and `get_attachment_stream` on the
//! embedded provider next to raw fjall writing and reading the same 64 KiB chunks with the
//! same keyspace settings, and on CouchDB next to a raw reqwest client streaming the same
//! `PUT` and `GET`. Prints each side's peak resident-set growth over the run too, sampled
//! every 10 ms (the embedded sides with an 8 MiB block cache, a cap of its own).

use std::time::Instant;

use docstore::{
    AttachmentRead, AttachmentUpload, DatabaseService, EmbeddedConfig, EmbeddedProvider,
    get_database_service,
};
use docstore_providers::testing::unique_db;
use fjall::{Database, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::common::{Row, env_usize};
use crate::support;

const PIECE: usize = 1 << 20;
const CHUNK: usize = 64 * 1024;
const CACHE: u64 = 8 << 20;

/// Piece `n` of the data.
fn piece(n: usize) -> bytes::Bytes {
    let mut state = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let data: Vec<u8> = (0..PIECE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    bytes::Bytes::from(data)
}

fn data(pieces: usize) -> BoxStream<'static, std::io::Result<bytes::Bytes>> {
    futures::stream::iter(0..pieces)
        .map(|n| Ok(piece(n)))
        .boxed()
}

/// The process's resident set now, in MiB.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Samples the resident set every 10 ms while it lives; `stop` gives the highest sample
/// above the one taken at the start (each side measured on its own, unlike `VmHWM`).
struct RssPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
    start: u64,
}

impl RssPeak {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let start = rss_mib();
        let thread = std::thread::spawn(move || {
            let mut peak = rss_mib();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mib());
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            peak.max(rss_mib())
        });
        Self {
            stop,
            thread,
            start,
        }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0).saturating_sub(self.start)
    }
}

fn mib_per_s(mib: usize, start: Instant) -> f64 {
    mib as f64 / start.elapsed().as_secs_f64()
}

/// Streams the data up and down through `svc`: (upload MiB/s, download MiB/s).
async fn ours(svc: &dyn DatabaseService, mib: usize) -> (f64, f64) {
    let db = unique_db("bench-att");
    let start = Instant::now();
    svc.put_attachment_stream(
        &db,
        "big",
        "big.bin",
        None,
        AttachmentUpload::new("application/octet-stream", data(mib)),
    )
    .await
    .expect("upload");
    let up = mib_per_s(mib, start);
    let start = Instant::now();
    let mut body = svc
        .get_attachment_stream(&db, "big", "big.bin", &AttachmentRead::default())
        .await
        .expect("download")
        .body;
    let mut length = 0;
    while let Some(piece) = body.next().await {
        length += piece.expect("piece").len();
    }
    assert_eq!(length, mib * PIECE);
    let down = mib_per_s(mib, start);
    let _ = svc.delete_database(&db).await;
    (up, down)
}

/// Raw fjall: the same chunks, batches of 16, the provider's keyspace settings.
async fn raw_fjall(dir: &std::path::Path, mib: usize) -> (f64, f64) {
    let db = Database::builder(dir)
        .cache_size(CACHE)
        .open()
        .expect("raw fjall");
    let ks = db
        .keyspace("chunks", || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(4 << 20)
                .with_kv_separation(Some(KvSeparationOptions::default()))
        })
        .expect("keyspace");
    let start = Instant::now();
    let mut body = data(mib);
    let mut n = 0u32;
    let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
    let mut in_batch = 0;
    while let Some(piece) = body.next().await {
        let piece = piece.expect("piece");
        for chunk in piece.chunks(CHUNK) {
            batch.insert(&ks, n.to_be_bytes(), chunk);
            n += 1;
            in_batch += 1;
            if in_batch == 16 {
                let full = std::mem::replace(
                    &mut batch,
                    db.batch().durability(Some(PersistMode::SyncAll)),
                );
                tokio::task::spawn_blocking(move || full.commit())
                    .await
                    .expect("join")
                    .expect("commit");
                in_batch = 0;
            }
        }
    }
    tokio::task::spawn_blocking(move || batch.commit())
        .await
        .expect("join")
        .expect("commit");
    let up = mib_per_s(mib, start);
    let start = Instant::now();
    let length = tokio::task::spawn_blocking(move || {
        ks.iter()
            .map(|item| item.value().expect("chunk").len())
            .sum::<usize>()
    })
    .await
    .expect("join");
    assert_eq!(length, mib * PIECE);
    (up, mib_per_s(mib, start))
}

/// A raw reqwest client streaming the same `PUT` and `GET` (after creating the database).
async fn raw_http(server: &support::CouchServer, mib: usize) -> (f64, f64) {
    let client = reqwest::Client::new();
    let db = unique_db("bench-att-raw");
    let url = format!("{}/{db}", server.url);
    let auth = |r: reqwest::RequestBuilder| r.basic_auth(&server.user, Some(&server.password));
    auth(client.put(&url)).send().await.expect("create");
    let start = Instant::now();
    let reply = auth(client.put(format!("{url}/big/big.bin")))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(data(mib)))
        .send()
        .await
        .expect("upload");
    assert!(reply.status().is_success(), "{}", reply.status());
    let up = mib_per_s(mib, start);
    let start = Instant::now();
    let mut body = auth(client.get(format!("{url}/big/big.bin")))
        .send()
        .await
        .expect("download")
        .bytes_stream();
    let mut length = 0;
    while let Some(piece) = body.next().await {
        length += piece.expect("piece").len();
    }
    assert_eq!(length, mib * PIECE);
    let down = mib_per_s(mib, start);
    auth(client.delete(&url)).send().await.expect("drop");
    (up, down)
}

pub async fn run() -> Vec<Row> {
    let mib = env_usize("BENCH_ATTACHMENT_MB", 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    let op = |what: &str| format!("{what} a {mib} MiB attachment, streamed");

    // Both sides with an 8 MiB block cache: the cache is a cap of its own (64 MiB by
    // default) that a 1 GiB read fills, whatever reads it.
    let config = EmbeddedConfig {
        cache_bytes: CACHE,
        ..EmbeddedConfig::new(dir.path().join("ours"))
    };
    let peak = RssPeak::start();
    let embedded = EmbeddedProvider::open(config).await.expect("embedded");
    let (up, down) = ours(&embedded, mib).await;
    drop(embedded);
    let ours_growth = peak.stop();
    let peak = RssPeak::start();
    let (raw_up, raw_down) = raw_fjall(&dir.path().join("raw"), mib).await;
    let raw_growth = peak.stop();
    println!(
        "  attachments: embedded peak RSS +{ours_growth} MiB (raw fjall: +{raw_growth} MiB), 8 MiB block cache"
    );
    rows.push(Row::new("attachments", op("embedded: put"), up, raw_up).unit("MiB/s"));
    rows.push(Row::new("attachments", op("embedded: get"), down, raw_down).unit("MiB/s"));

    let server = tokio::task::spawn_blocking(support::couchdb)
        .await
        .expect("server");
    let couch = get_database_service(&server.settings())
        .await
        .expect("couchdb");
    let peak = RssPeak::start();
    let (up, down) = ours(&*couch, mib).await;
    let ours_growth = peak.stop();
    let peak = RssPeak::start();
    let (raw_up, raw_down) = raw_http(server, mib).await;
    let raw_growth = peak.stop();
    println!("  attachments: CouchDB peak RSS +{ours_growth} MiB (raw client: +{raw_growth} MiB)");
    rows.push(Row::new("attachments", op("CouchDB: put"), up, raw_up).unit("MiB/s"));
    rows.push(Row::new("attachments", op("CouchDB: get"), down, raw_down).unit("MiB/s"));
    rows
}
