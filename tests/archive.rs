//! Backups: an archive round trip (memory → archive → embedded and CouchDB) ends verified and
//! a second restore writes nothing; truncated and corrupted archives are detected, named
//! (database and line), and only the intact sections before the damage are applied.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use docstore::archive::{archive_digests, backup, restore};
use docstore::migrate::{MigrateOptions, database_digest, verify_database};
use docstore::serde_json::json;
use docstore::{
    DatabaseService, Document, MemoryProvider, OpenRev, OpenRevs, Rev, RevisionedDoc, Settings,
    get_database_service,
};
use docstore_providers::testing::unique_db;

/// The bytes of the archived attachment: 100 KB over two storage chunks.
fn attachment_bytes() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

async fn source(dbs: &[String]) -> MemoryProvider {
    let svc = MemoryProvider::new();
    for (n, db) in dbs.iter().enumerate() {
        let docs: Vec<Document> = (0..120)
            .map(|i| {
                Document::from_value(
                    json!({"_id": format!("ïd {i}/?#"), "n": n, "i": i, "t": "日本"}),
                )
                .expect("doc")
            })
            .collect();
        for r in svc.save_many(db, docs).await.expect("bulk") {
            r.expect("saved");
        }
        for i in (0..120).step_by(10) {
            svc.delete(db, &format!("ïd {i}/?#")).await.expect("delete");
        }
    }
    let big = Document::from_value(json!({"big": "y".repeat(2 * 1024 * 1024)})).expect("doc");
    svc.save(&dbs[0], "big", big).await.expect("2 MB");
    // Attachments travel in the archive with their data (format version 3).
    svc.put_attachment(
        &dbs[2],
        "files",
        "f.bin",
        None,
        docstore::NewAttachment::new("application/octet-stream", attachment_bytes()),
    )
    .await
    .expect("attachment");
    // A conflict (two live branches) and a deleted branch: archives carry every leaf.
    let root: Rev = "1-11111111111111111111111111111111".parse().expect("rev");
    let branches = [
        "2-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "2-cccccccccccccccccccccccccccccccc",
    ]
    .iter()
    .enumerate()
    .map(|(n, rev)| RevisionedDoc {
        id: "tree".into(),
        rev: rev.parse().expect("rev"),
        deleted: n == 0,
        body: json!({"branch": n})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        history: vec![root],
    })
    .collect();
    svc.put_revisions(&dbs[1], branches)
        .await
        .expect("branches");
    svc
}

/// Every leaf of `id` with its body and `_revisions`.
async fn leaves(svc: &dyn DatabaseService, db: &str, id: &str) -> Vec<Document> {
    svc.open_revs(db, id, &OpenRevs::All, true)
        .await
        .expect("open_revs")
        .into_iter()
        .map(|leaf| match leaf {
            OpenRev::Found(doc) => doc,
            OpenRev::Missing(rev) => panic!("{id} {rev} missing"),
        })
        .collect()
}

fn options() -> MigrateOptions {
    MigrateOptions {
        batch_size: 50,
        ..MigrateOptions::default()
    }
}

async fn embedded(dir: &Path, name: &str) -> Arc<dyn DatabaseService> {
    get_database_service(&Settings::embedded(dir.join(name)))
        .await
        .expect("embedded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_round_trip_into_embedded_and_couchdb() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs: Vec<String> = (0..3).map(|n| unique_db(&format!("arch{n}"))).collect();
    let src = source(&dbs).await;
    let file = dir.path().join("backup.jsonl.zst");
    let written = backup(&src, &file, Some(dbs.clone()), 40)
        .await
        .expect("backup");
    assert_eq!(written.databases.len(), 3);
    assert_eq!(
        written.databases[0].1, 121,
        "120 documents (12 deleted) and the 2 MB one"
    );
    assert_eq!(
        written.databases[1].1, 123,
        "120 and the tree's three leaves"
    );

    // The archive's digests are the source's.
    let digests = archive_digests(&file).expect("intact");
    for (db, digest) in &digests {
        assert_eq!(*digest, database_digest(&src, db).await.expect("digest"));
    }

    let server = support::couchdb();
    let couch = get_database_service(&server.settings())
        .await
        .expect("couchdb");
    for target in [embedded(dir.path(), "restored").await, couch] {
        let report = restore(&*target, &file, &options()).await.expect("restore");
        assert!(report.is_success(), "{report:#?}");
        assert_eq!(report.databases[0].created, 121);
        assert_eq!(report.databases[0].deleted, 12);
        for db in &dbs {
            let v = verify_database(&src, &*target, db).await.expect("verify");
            assert!(v.matches, "{db}: {v:?}");
        }
        assert_eq!(
            leaves(&*target, &dbs[1], "tree").await,
            leaves(&src, &dbs[1], "tree").await,
            "the same tree, every leaf"
        );
        let restored = target
            .get_attachment(
                &dbs[2],
                "files",
                "f.bin",
                &docstore::AttachmentRead::default(),
            )
            .await
            .expect("restored attachment");
        assert_eq!(restored.data.as_ref(), &attachment_bytes()[..]);
        let again = restore(&*target, &file, &options()).await.expect("again");
        assert!(again.is_success());
        let written: u64 = again.databases.iter().map(|d| d.created + d.updated).sum();
        assert_eq!(written, 0, "a second restore writes nothing: {again:#?}");
        for db in &dbs {
            target.delete_database(db).await.expect("cleanup");
        }
    }
}

fn decompress(file: &Path) -> String {
    let mut text = String::new();
    zstd::Decoder::new(std::fs::File::open(file).expect("open"))
        .expect("zstd")
        .read_to_string(&mut text)
        .expect("decompress");
    text
}

fn compress(text: &str, file: &Path) {
    let mut out =
        zstd::Encoder::new(std::fs::File::create(file).expect("create"), 3).expect("zstd");
    out.write_all(text.as_bytes()).expect("write");
    out.finish().expect("finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archives_are_named_and_never_applied_in_part() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs: Vec<String> = vec!["aa".into(), "bb".into(), "cc".into()];
    let src = source(&dbs).await;
    let file = dir.path().join("b.zst");
    backup(&src, &file, None, 40).await.expect("backup");
    let text = decompress(&file);
    let lines: Vec<&str> = text.lines().collect();
    let second_section = lines
        .iter()
        .position(|l| *l == r#"{"database":"bb"}"#)
        .expect("bb section");

    // Truncated: the archive stops inside the second database.
    let cut = dir.path().join("cut.zst");
    compress(&lines[..second_section + 30].join("\n"), &cut);
    let target = embedded(dir.path(), "t1").await;
    let report = restore(&*target, &cut, &options()).await.expect("report");
    let error = report.error.clone().expect("truncation detected");
    assert!(
        error.contains("\"bb\"") && error.contains("ends early"),
        "{error}"
    );
    assert_eq!(
        report.databases.len(),
        1,
        "only the intact section: {report:#?}"
    );
    assert!(report.databases[0].complete);
    assert!(
        verify_database(&src, &*target, "aa")
            .await
            .expect("v")
            .matches
    );
    assert_eq!(
        target.list_databases().await.expect("dbs"),
        ["aa"],
        "nothing of bb"
    );

    // Truncated zstd stream (bytes cut off the end).
    let bytes = std::fs::read(&file).expect("read");
    let short = dir.path().join("short.zst");
    std::fs::write(&short, &bytes[..bytes.len() - 100]).expect("write");
    let report = restore(&*embedded(dir.path(), "t2").await, &short, &options())
        .await
        .expect("report");
    assert!(report.error.is_some(), "{report:#?}");
    assert!(!report.is_success());

    // Corrupted: one body changed (still valid JSON); the trailer hash catches it.
    let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let victim = second_section + 5;
    edited[victim] = edited[victim].replace("日本", "中国");
    assert_ne!(edited[victim], lines[victim]);
    let bad = dir.path().join("bad.zst");
    compress(&edited.join("\n"), &bad);
    let target = embedded(dir.path(), "t3").await;
    let report = restore(&*target, &bad, &options()).await.expect("report");
    let error = report.error.clone().expect("corruption detected");
    assert!(
        error.contains("\"bb\"") && error.contains("trailer"),
        "{error}"
    );
    assert_eq!(target.list_databases().await.expect("dbs"), ["aa"]);

    // Corrupted: a line that is not JSON, named by its line number.
    let mut garbled = lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    garbled[3] = "{not json".into();
    compress(&garbled.join("\n"), &bad);
    let err = archive_digests(&bad).expect_err("garbled");
    assert!(err.to_string().contains("line 4"), "{err}");
    assert!(err.to_string().contains("\"aa\""), "{err}");
}

/// An archive written before trees were kept (format version 1: one line per document, its
/// winner) still restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_archives_still_restore() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("v1.zst");
    let lines = [
        json!({"format": "docstore-backup", "version": 1, "source": "memory", "created_unix": 1}),
        json!({"database": "old"}),
        json!({"id": "a", "rev": "2-0c6b2b0b1a8f4c6f8b7b0f0c8d3e0a11", "deleted": false, "body": {"v": 2}, "history": ["1-967a00dff5e02add41819138abb3284d"]}),
        json!({"id": "b", "rev": "1-967a00dff5e02add41819138abb3284d", "deleted": true, "body": {}}),
    ];
    let mut text = String::new();
    let mut sum = 0u128;
    for line in &lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
    for line in &lines[2..] {
        let rev = line["rev"].as_str().expect("rev").to_owned();
        let body = line["body"].as_object().cloned().unwrap_or_default();
        sum = sum.wrapping_add(docstore::archive::line_hash(
            line["id"].as_str().expect("id"),
            &rev,
            line["deleted"] == json!(true),
            &body,
        ));
    }
    text.push_str(&json!({"end": "old", "count": 2, "hash": format!("{sum:032x}")}).to_string());
    text.push('\n');
    text.push_str(&json!({"complete": true, "databases": 1}).to_string());
    text.push('\n');
    compress(&text, &file);
    let target = MemoryProvider::new();
    let report = restore(&target, &file, &options()).await.expect("restores");
    assert!(report.is_success(), "{report:#?}");
    let a = target.get("old", "a").await.expect("a");
    assert_eq!(a.rev(), Some("2-0c6b2b0b1a8f4c6f8b7b0f0c8d3e0a11"));
    assert!(
        target
            .get("old", "b")
            .await
            .expect_err("deleted")
            .is_not_found()
    );
}
