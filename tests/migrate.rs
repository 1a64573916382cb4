//! Migration between every pair of providers (memory, embedded, CouchDB as source and
//! target): a corpus with deletions, unicode and awkward ids, a 2 MB document and several
//! databases arrives verified; a second run writes nothing; incremental runs carry updates
//! and deletions; each conflict policy does what it says; a dry run writes nothing.

mod support;

use std::sync::Arc;

use docstore::migrate::{ConflictPolicy, MigrateOptions, MigrationReport, migrate};
use docstore::serde_json::{Value, json};
use docstore::{
    AttachmentRead, DatabaseService, Document, NewAttachment, Settings, get_database_service,
};
use docstore_providers::testing::{drop_db, unique_db};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    Embedded,
    CouchDb,
}

/// The provider of `kind`; a CouchDB target of a CouchDB source is a second server, since a
/// migration keeps database names.
async fn provider(kind: Kind, dir: &std::path::Path, name: &str) -> Arc<dyn DatabaseService> {
    let settings = match kind {
        Kind::Memory => Settings::memory(),
        Kind::Embedded => Settings::embedded(dir.join(name)),
        Kind::CouchDb if name == "second" => support::second_couchdb().settings(),
        Kind::CouchDb => support::couchdb().settings(),
    };
    get_database_service(&settings)
        .await
        .expect("provider opens")
}

fn doc(value: Value) -> Document {
    Document::from_value(value).expect("object")
}

/// Fills `dbs` on `svc`: 150 documents each (awkward ids, unicode, nested values), 20 of
/// them deleted, some updated twice, and one 2 MB document in the first database.
async fn corpus(svc: &dyn DatabaseService, dbs: &[String]) {
    for (n, db) in dbs.iter().enumerate() {
        let docs: Vec<Document> = (0..150)
            .map(|i| {
                let id = match i % 5 {
                    0 => format!("plain-{i}"),
                    1 => format!("with space/and?{i}#%+"),
                    2 => format!("ünïcødé-日本-{i}"),
                    3 => format!("x/../{i}"),
                    _ => format!("{i:04}"),
                };
                doc(json!({"_id": id, "i": i, "db": n, "text": "é😀", "nested": {"a": [1, {"b": null}]}}))
            })
            .collect();
        let ids: Vec<String> = docs
            .iter()
            .map(|d| d.id().unwrap_or("").to_owned())
            .collect();
        for r in svc.save_many(db, docs).await.expect("bulk") {
            r.expect("saved");
        }
        for id in ids.iter().step_by(7).take(20) {
            svc.delete(db, id).await.expect("delete");
        }
        for id in ids.iter().skip(3).step_by(11) {
            if svc.get(db, id).await.is_ok() {
                svc.update(db, id, |d| {
                    d.insert("updated", true);
                    Ok(())
                })
                .await
                .expect("update");
            }
        }
    }
    let big = "x".repeat(2 * 1024 * 1024);
    svc.save(&dbs[0], "big", doc(json!({"big": big})))
        .await
        .expect("2 MB document");
    // A document with attachments (text stored gzip, bytes stored as they are).
    svc.save(
        &dbs[0],
        "files",
        doc(json!({"_attachments": {"a.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}})),
    )
    .await
    .expect("inline attachment");
    let rev = svc
        .get(&dbs[0], "files")
        .await
        .expect("files")
        .rev()
        .map(str::to_owned);
    let rev: docstore::Rev = rev.expect("rev").parse().expect("rev");
    svc.put_attachment(
        &dbs[0],
        "files",
        "b.bin",
        Some(&rev),
        NewAttachment::new(
            "application/octet-stream",
            (0..70_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>(),
        ),
    )
    .await
    .expect("upload");
}

/// The attachments `corpus` wrote, read back from `svc` with their bytes.
async fn assert_files(svc: &dyn DatabaseService, db: &str) {
    let read = AttachmentRead::default();
    let a = svc
        .get_attachment(db, "files", "a.txt", &read)
        .await
        .expect("a.txt");
    assert_eq!(a.data.as_ref(), b"hello");
    let b = svc
        .get_attachment(db, "files", "b.bin", &read)
        .await
        .expect("b.bin");
    let expected: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(b.data.as_ref(), &expected[..], "{}", svc.provider_name());
}

use docstore::DatabaseServiceExt;

fn options(dbs: &[String]) -> MigrateOptions {
    MigrateOptions {
        databases: Some(dbs.to_vec()),
        batch_size: 64,
        ..MigrateOptions::default()
    }
}

#[track_caller]
fn assert_verified(report: &MigrationReport) {
    assert!(report.is_success(), "{report:#?}");
    for d in &report.databases {
        let v = d.verification.as_ref().expect("verified");
        assert!(v.matches, "{d:#?}");
    }
}

async fn update_seqs(svc: &dyn DatabaseService, dbs: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for db in dbs {
        out.push(svc.database_info(db).await.expect("info").update_seq);
    }
    out
}

async fn pair(from: Kind, to: Kind) {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = provider(from, dir.path(), "source").await;
    let second = matches!((from, to), (Kind::CouchDb, Kind::CouchDb));
    let target = provider(to, dir.path(), if second { "second" } else { "target" }).await;
    let dbs: Vec<String> = (0..3).map(|n| unique_db(&format!("mig{n}"))).collect();
    corpus(&*source, &dbs).await;

    let first = migrate(&*source, &*target, &options(&dbs))
        .await
        .expect("migrate");
    assert_verified(&first);
    assert_eq!(first.databases.len(), 3);
    assert_eq!(first.databases[0].created, 152, "{:#?}", first.databases[0]);
    assert_eq!(first.databases[0].deleted, 20);
    assert_files(&*target, &dbs[0]).await;
    // Revisions and bodies arrived as they are.
    let big = target.get(&dbs[0], "big").await.expect("big");
    assert_eq!(
        big.rev(),
        source.get(&dbs[0], "big").await.expect("big").rev()
    );

    // A second run resumes from the replication checkpoint and writes nothing: the report
    // says so and the target's databases do not move (checkpoints are _local documents,
    // which do not count as updates); the full verification walk still matches.
    let before = update_seqs(&*target, &dbs).await;
    let second = migrate(&*source, &*target, &options(&dbs))
        .await
        .expect("again");
    assert_verified(&second);
    assert_eq!(second.written(), 0, "{second:#?}");
    assert!(
        second.databases.iter().all(|d| d.resumed && d.read == 0),
        "{second:#?}"
    );
    assert_eq!(update_seqs(&*target, &dbs).await, before);

    // Incremental: updates (one and three generations ahead), deletions (one two
    // generations after the copy), re-creations, new documents. Histories travel, so every
    // target extends what it has, CouchDB included (no branch, no lost deletion).
    let db = &dbs[1];
    for v in 2..=4 {
        source
            .save(db, "plain-0", doc(json!({"v": v})))
            .await
            .expect("update");
    }
    source
        .save(db, "0004", doc(json!({"v": 2})))
        .await
        .expect("u");
    let gone = source.delete(db, "0004").await.expect("then delete").rev;
    source.delete(db, "plain-5").await.expect("delete");
    source
        .save(db, "fresh", doc(json!({"new": true})))
        .await
        .expect("new");
    let incremental = MigrateOptions {
        incremental: true,
        ..options(&dbs)
    };
    let third = migrate(&*source, &*target, &incremental)
        .await
        .expect("incremental");
    let d = &third.databases[1];
    assert!(d.resumed);
    assert_eq!(d.read, 4, "only what changed is read: {d:#?}");
    assert_eq!((d.created, d.updated, d.conflicts), (1, 3, 0), "{d:#?}");
    assert_verified(&third);
    let wanted = [("0004".to_owned(), gone)];
    let on_source = source.read_revisions(db, &wanted).await.expect("read");
    let on_target = target.read_revisions(db, &wanted).await.expect("read");
    let history = |r: &docstore::Result<docstore::RevisionedDoc>| {
        r.as_ref().expect("the tombstone").history.clone()
    };
    assert_eq!(history(&on_target[0]), history(&on_source[0]));
    assert!(history(&on_target[0]).len() >= 2);
    for db in &dbs {
        drop_db(&source, db).await;
        drop_db(&target, db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_to_embedded() {
    pair(Kind::Memory, Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_to_couchdb() {
    pair(Kind::Memory, Kind::CouchDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_to_memory() {
    pair(Kind::Memory, Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_to_memory() {
    pair(Kind::Embedded, Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_to_couchdb() {
    pair(Kind::Embedded, Kind::CouchDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_to_embedded() {
    pair(Kind::Embedded, Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchdb_to_memory() {
    pair(Kind::CouchDb, Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchdb_to_embedded() {
    pair(Kind::CouchDb, Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchdb_to_couchdb() {
    pair(Kind::CouchDb, Kind::CouchDb).await;
}

/// Each conflict policy, and a dry run, on a document edited on both sides after a first
/// copy (each policy in a database of its own: a conflict left in a target keeps its
/// verification from matching until it is resolved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_policies_and_dry_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = provider(Kind::Memory, dir.path(), "s").await;
    let target = provider(Kind::Embedded, dir.path(), "t").await;
    // A database copied once, then "a" edited on both sides (same generation, different
    // revisions) and "b" on the source only.
    let prepare = |name: &'static str| {
        let (source, target) = (Arc::clone(&source), Arc::clone(&target));
        async move {
            let dbs = vec![unique_db(name)];
            let db = &dbs[0];
            for id in ["a", "b", "c"] {
                source
                    .save(db, id, doc(json!({"v": 1})))
                    .await
                    .expect("save");
            }
            assert_verified(
                &migrate(&*source, &*target, &options(&dbs))
                    .await
                    .expect("first"),
            );
            source
                .save(db, "a", doc(json!({"v": "source"})))
                .await
                .expect("s");
            target
                .save(db, "a", doc(json!({"v": "target"})))
                .await
                .expect("t");
            source.save(db, "b", doc(json!({"v": 2}))).await.expect("s");
            dbs
        }
    };
    let conflicts_of = |db: String| {
        let target = Arc::clone(&target);
        async move {
            let options = docstore::GetOptions {
                conflicts: true,
                ..docstore::GetOptions::default()
            };
            let a = target.get_with(&db, "a", &options).await.expect("a");
            (a.get("v").cloned(), a.get("_conflicts").is_some())
        }
    };

    let dbs = prepare("dry").await;
    let dry = MigrateOptions {
        dry_run: true,
        ..options(&dbs)
    };
    let before = update_seqs(&*target, &dbs).await;
    let report = migrate(&*source, &*target, &dry).await.expect("dry run");
    let d = &report.databases[0];
    assert_eq!((d.read, d.updated, d.conflicts), (2, 1, 1), "{d:#?}");
    assert_eq!(d.conflict_ids, ["a"]);
    assert_eq!(
        update_seqs(&*target, &dbs).await,
        before,
        "a dry run writes nothing"
    );

    // Report: the source's branch is copied beside the target's, as replication does; the
    // conflict is reported and the run is no success.
    let report = migrate(&*source, &*target, &options(&dbs))
        .await
        .expect("report");
    assert!(
        !report.is_success(),
        "an unresolved conflict is not a success"
    );
    assert_eq!(report.databases[0].conflict_ids, ["a"]);
    assert!(conflicts_of(dbs[0].clone()).await.1, "both branches kept");
    assert_eq!(
        target.get(&dbs[0], "b").await.expect("b").get("v"),
        Some(&json!(2))
    );

    for (name, policy, kept) in [
        ("target-wins", ConflictPolicy::TargetWins, "target"),
        ("source-wins", ConflictPolicy::SourceWins, "source"),
    ] {
        let dbs = prepare(name).await;
        let settled = MigrateOptions {
            on_conflict: policy,
            ..options(&dbs)
        };
        let report = migrate(&*source, &*target, &settled)
            .await
            .expect("settles");
        assert!(report.is_success(), "{report:#?}");
        assert_eq!(report.databases[0].resolved, 1);
        assert_eq!(
            conflicts_of(dbs[0].clone()).await,
            (Some(json!(kept)), false),
            "{name}: one live leaf, the kept side's body"
        );
    }
}

/// The command line: embedded → CouchDB → embedded, `verify` reports a match, and running
/// the migration again writes nothing.
#[test]
fn cli_round_trip_through_couchdb_verifies() {
    use std::process::Command;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = support::couchdb();
    let (scheme, host) = server.url.split_once("://").expect("url");
    let couch = format!("{scheme}://{}:{}@{host}", server.user, server.password);
    let first = format!("embedded:{}", dir.path().join("first").display());
    let back = format!("embedded:{}", dir.path().join("back").display());
    let db = unique_db("cli-mig");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_docstore"))
            .current_dir(dir.path())
            .args(args)
            .env_remove("DATABASE_PROVIDER")
            .env("EMBEDDED_PATH", dir.path().join("first"))
            .output()
            .expect("docstore runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for i in 0..30 {
        let (ok, _, err) = run(&["put", &db, &format!("doc {i}"), &format!(r#"{{"i":{i}}}"#)]);
        assert!(ok, "{err}");
    }
    assert!(run(&["rm", &db, "doc 3"]).0);
    let (ok, out, err) = run(&["migrate", "--from", &first, "--to", &couch, "--db", &db]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("yes (29 docs)"), "{out}");
    assert!(!out.contains(&server.password) && !err.contains(&server.password));
    let (ok, out, err) = run(&["migrate", "--from", &couch, "--to", &back, "--db", &db]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["verify", &first, &back, "--db", &db]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("match (29 documents"), "{out}");
    let (ok, out, _) = run(&[
        "--json", "migrate", "--from", &first, "--to", &couch, "--db", &db,
    ]);
    assert!(ok);
    let report: Value = docstore::serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["databases"][0]["resumed"], true);
    assert_eq!(report["databases"][0]["read"], 0);
    assert_eq!(report["databases"][0]["created"], 0);
    assert_eq!(report["databases"][0]["updated"], 0);
    // A mismatch is a non-zero exit naming the database.
    assert!(run(&["put", &db, "extra", "{}"]).0);
    let (ok, out, _) = run(&["verify", &first, &back, "--db", &db]);
    assert!(!ok);
    assert!(
        out.contains("MISMATCH") && out.contains(r#"missing ["extra"]"#),
        "{out}"
    );
}

/// `verify: false` copies the same and skips the verification, and the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_runs_say_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = provider(Kind::Memory, dir.path(), "source").await;
    let target = provider(Kind::Embedded, dir.path(), "target").await;
    let dbs = vec![unique_db("unverified")];
    corpus(&*source, &dbs).await;
    let report = migrate(
        &*source,
        &*target,
        &MigrateOptions {
            verify: false,
            ..options(&dbs)
        },
    )
    .await
    .expect("migrate");
    assert!(report.unverified && report.is_success(), "{report:#?}");
    assert!(report.databases[0].verification.is_none());
    assert_eq!(report.databases[0].created, 152);
    // What it copied verifies when asked.
    let v = docstore::migrate::verify_database(&*source, &*target, &dbs[0])
        .await
        .expect("verify");
    assert!(v.matches, "{v:#?}");
}

/// Verification names what differs, however it was reached: a fresh run checks each batch on
/// the target as it goes, and a target holding documents of its own (which no batch reads
/// back) or a document edited on both sides hands over to the full walk, which lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_lists_what_the_target_holds_of_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    for target_kind in [Kind::Memory, Kind::Embedded, Kind::CouchDb] {
        let source = provider(Kind::Memory, dir.path(), "source").await;
        let target = provider(target_kind, dir.path(), &format!("{target_kind:?}")).await;
        let db = unique_db("verify-lists");
        let docs: Vec<Document> = (0..150)
            .map(|i| doc(json!({"_id": format!("d{i:03}"), "i": i})))
            .collect();
        source.save_many(&db, docs).await.expect("source");

        // Clean: matched by the batch checks, digests equal.
        let clean = migrate(&*source, &*target, &options(std::slice::from_ref(&db)))
            .await
            .expect("migrate");
        assert_verified(&clean);
        let v = clean.databases[0].verification.as_ref().expect("verified");
        assert_eq!((v.source.count, v.target.count), (150, 150));
        drop_db(&target, &db).await;

        // The target has a document of its own, and one edited there: listed by the walk.
        target
            .save(&db, "extra", doc(json!({"mine": true})))
            .await
            .expect("extra");
        target
            .save(&db, "d007", doc(json!({"edited": "target"})))
            .await
            .expect("edit");
        let report = migrate(&*source, &*target, &options(std::slice::from_ref(&db)))
            .await
            .expect("migrate");
        assert!(!report.is_success(), "{target_kind:?}: {report:#?}");
        let d = &report.databases[0];
        let v = d.verification.as_ref().expect("verified");
        assert!(!v.matches);
        assert_eq!(v.extra_in_target, ["extra"], "{target_kind:?}");
        assert_eq!(v.different, ["d007"], "{target_kind:?}");
        assert_eq!(d.conflict_ids, ["d007"], "{target_kind:?}");
        assert!(v.missing_in_target.is_empty());
        drop_db(&target, &db).await;
        drop_db(&source, &db).await;
    }
}
