//! Tracing of a CouchDB run: every span and event, at `trace` level and from every crate
//! (reqwest and hyper included), is captured while a workload touches every kind of
//! operation, failures and retries included; the capture must show the operations' spans
//! with their fields, and must hold the password nowhere — neither as text nor as the
//! base64 of a Basic `Authorization` header.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use docstore::serde_json::json;
use docstore::{
    DatabaseServiceExt, Document, FindQuery, NewAttachment, Secret, Settings, WatchOptions,
    get_database_service,
};
use docstore_providers::testing::unique_db;
use futures::StreamExt;
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("capture lock")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn doc(value: docstore::serde_json::Value) -> Document {
    Document::from_value(value).expect("an object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_couchdb_run_never_shows_the_password() {
    let server = support::couchdb();
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let settings = server.settings();
    let svc = get_database_service(&settings).await.expect("connect");
    let db = unique_db("traced");
    svc.save(&db, "a", doc(json!({"v": 1})))
        .await
        .expect("save");
    let mut live = svc.watch(&db, WatchOptions::new()).await.expect("watch");
    svc.update(&db, "a", |d| {
        d.insert("v", 2);
        Ok(())
    })
    .await
    .expect("update");
    tokio::time::timeout(Duration::from_secs(30), live.next())
        .await
        .expect("a change in time")
        .expect("stream open")
        .expect("a change");
    let missing = svc.get(&db, "nope").await.unwrap_err();
    let stale = svc
        .save(
            &db,
            "a",
            doc(json!({"_rev": "1-00000000000000000000000000000000"})),
        )
        .await
        .unwrap_err();
    svc.save_many(
        &db,
        vec![doc(json!({"_id": "b"})), doc(json!({"_id": "c"}))],
    )
    .await
    .expect("bulk");
    let query = FindQuery::from_json(&json!({"selector": {"v": 2}})).expect("query");
    svc.find(&db, &query).await.expect("find");
    svc.put_attachment(
        &db,
        "b",
        "note.txt",
        None,
        NewAttachment::new("text/plain", b"hi".to_vec()),
    )
    .await
    .ok();
    svc.changes(&db, None, 10).await.expect("changes");

    // Wrong credentials for a user that does not exist (the admin is never sent a wrong
    // password: CouchDB locks an account out after repeated failures).
    let mut wrong = settings.clone();
    wrong.couchdb_user = Some(format!("nobody-{}", fastrand::u32(..)));
    wrong.couchdb_password = Some(Secret::new(&server.password));
    let refused = get_database_service(&wrong).await.unwrap_err();
    // An unreachable server with the credentials in the URL: retried, each retry a warn.
    let unreachable = Settings::couchdb(
        format!("http://{}:{}@127.0.0.1:9", server.user, server.password),
        &server.user,
        Secret::new(&server.password),
    );
    let down = get_database_service(&unreachable).await.unwrap_err();
    let debug_texts = format!(
        "{settings:?} {wrong:?} {unreachable:?} {missing:?} {stale:?} {refused:?} {down:?} {svc:?}"
    );
    let display_texts = format!("{missing} {stale} {refused} {down}");
    svc.delete_database(&db).await.expect("drop");
    drop(live);

    let captured = String::from_utf8_lossy(&capture.0.lock().expect("capture lock")).into_owned();
    // The capture is the real thing: spans of operations with their fields, requests counted.
    for expected in [
        "op=\"save\"",
        "op=\"watch\"",
        "op=\"find\"",
        "requests=",
        "CouchDB request",
        "kind=\"not_found\"",
        "kind=\"conflict\"",
        "retried",
    ] {
        assert!(
            captured.contains(expected),
            "the capture shows {expected}:\n{captured}"
        );
    }
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", server.user, server.password));
    for (what, text) in [
        ("logs", &captured),
        ("Debug", &debug_texts),
        ("errors", &display_texts),
    ] {
        assert!(
            !text.contains(&server.password),
            "the password appears in {what}"
        );
        assert!(
            !text.contains(&basic),
            "the Authorization header appears in {what}"
        );
    }
    eprintln!(
        "{} bytes of trace output scanned: no password",
        captured.len()
    );
}
