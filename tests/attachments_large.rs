//! A 256 MiB attachment streamed through `put_attachment_stream` and
//! `get_attachment_stream` on the embedded provider and on a genuine CouchDB, in bounded
//! memory: the process's peak resident set grows by less than 64 MiB for each. This file
//! holds one test, so its process holds nothing else. (The embedded store runs with an
//! 8 MiB block cache here: the cache is a configured cap of its own, 64 MiB by default.)

mod support;

use std::sync::Arc;

use docstore::{
    AttachmentRead, AttachmentUpload, DatabaseService, EmbeddedConfig, EmbeddedProvider,
    get_database_service,
};
use docstore_providers::testing::unique_db;
use futures::StreamExt;
use futures::stream::BoxStream;
use md5::{Digest, Md5};

const SIZE: usize = 256 << 20;
const PIECE: usize = 1 << 20;
const BOUND: u64 = 64 << 20;

/// The process's peak resident set so far (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// Piece `n` of the generated data: bytes that do not compress.
fn piece(n: usize) -> Vec<u8> {
    let mut state = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..PIECE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn data() -> BoxStream<'static, std::io::Result<bytes::Bytes>> {
    futures::stream::iter(0..SIZE / PIECE)
        .map(|n| Ok(bytes::Bytes::from(piece(n))))
        .boxed()
}

fn expected_md5() -> [u8; 16] {
    let mut md5 = Md5::new();
    (0..SIZE / PIECE).for_each(|n| md5.update(piece(n)));
    md5.finalize().into()
}

/// Streams the data up and back down through `svc`; returns the peak RSS growth.
async fn round_trip(svc: &dyn DatabaseService, expected: [u8; 16]) -> u64 {
    let db = unique_db("att-large");
    let before = peak_rss();
    let written = svc
        .put_attachment_stream(
            &db,
            "big",
            "big.bin",
            None,
            AttachmentUpload::new("application/octet-stream", data()),
        )
        .await
        .expect("streamed upload");
    assert_eq!(written.rev.generation(), 1);
    let read = svc
        .get_attachment_stream(&db, "big", "big.bin", &AttachmentRead::default())
        .await
        .expect("streamed download");
    assert_eq!(read.info.length, SIZE as u64);
    let mut md5 = Md5::new();
    let mut length = 0usize;
    let mut body = read.body;
    while let Some(piece) = body.next().await {
        let piece = piece.expect("a piece");
        length += piece.len();
        md5.update(&piece);
    }
    assert_eq!(length, SIZE);
    assert_eq!(<[u8; 16]>::from(md5.finalize()), expected, "the same bytes");
    let growth = peak_rss().saturating_sub(before);
    let _ = svc.delete_database(&db).await;
    growth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarter_gib_attachments_stream_in_bounded_memory() {
    let expected = expected_md5();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EmbeddedConfig {
        cache_bytes: 8 << 20,
        ..EmbeddedConfig::new(dir.path())
    };
    let embedded = Arc::new(EmbeddedProvider::open(config).await.expect("embedded"));
    let growth = round_trip(&*embedded, expected).await;
    println!("embedded: peak RSS grew {} MiB", growth >> 20);
    assert!(
        growth < BOUND,
        "embedded: peak RSS grew {} MiB",
        growth >> 20
    );
    drop(embedded);

    let couch = get_database_service(&support::couchdb().settings())
        .await
        .expect("couchdb");
    let growth = round_trip(&*couch, expected).await;
    println!("couchdb: peak RSS grew {} MiB", growth >> 20);
    assert!(
        growth < BOUND,
        "couchdb: peak RSS grew {} MiB",
        growth >> 20
    );
}
