//! CouchDB-provider specifics the shared suite cannot express: exact request counts, the
//! server and credential check, the retry rule, timeouts and error mapping. Counts and
//! errors run against the server `tests/support` finds; retries and timeouts against a
//! scripted fake server on a loopback port.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use docstore::serde_json::{Value, json};
use docstore::{
    CouchDbConfig, CouchDbProvider, DatabaseService, Document, Error, FindQuery, Rev, Secret,
    Settings, get_database_service,
};
use docstore_providers::testing::unique_db;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn doc(value: Value) -> Document {
    Document::from_value(value).unwrap()
}

async fn provider() -> CouchDbProvider {
    CouchDbProvider::connect(support::couchdb().config())
        .await
        .expect("connects to the test server")
}

/// Runs `op` and returns how many HTTP requests it sent.
async fn count<T>(p: &CouchDbProvider, op: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = p.request_count();
    let out = op.await;
    (out, p.request_count() - before)
}

#[tokio::test]
async fn request_counts_per_operation() {
    let p = provider().await;
    let db = unique_db("counts");

    // Lazy creation: the first write into a missing database costs PUT (404), PUT /db, PUT.
    let (w, n) = count(&p, p.save(&db, "first", doc(json!({"v": 1})))).await;
    w.unwrap();
    assert_eq!(n, 3, "first write into a missing database");
    // Afterwards no existence checks: a new document is one PUT.
    let (w, n) = count(&p, p.save(&db, "new", doc(json!({"v": 1})))).await;
    w.unwrap();
    assert_eq!(n, 1, "save of a new document");
    // A rev-less save over a document this provider has seen: the winner looked up, then
    // one PUT on it (a remembered revision may have become a losing leaf).
    let (w, n) = count(&p, p.save(&db, "new", doc(json!({"v": 2})))).await;
    assert_eq!(w.unwrap().rev.generation(), 2);
    assert_eq!(n, 2, "rev-less save over a seen document");
    // ... and one it has never seen (written by another client): PUT 409, lookup, PUT.
    let other = provider().await;
    other
        .save(&db, "theirs", doc(json!({"v": 1})))
        .await
        .unwrap();
    let (w, n) = count(&p, p.save(&db, "theirs", doc(json!({"v": 2})))).await;
    assert_eq!(w.unwrap().rev.generation(), 2);
    assert_eq!(n, 3, "rev-less save over an unseen document");
    // Another client wrote since: the lookup finds its revision, one PUT.
    other.save(&db, "new", doc(json!({"v": 3}))).await.unwrap();
    let (w, n) = count(&p, p.save(&db, "new", doc(json!({"v": 4})))).await;
    assert_eq!(w.unwrap().rev.generation(), 4);
    assert_eq!(n, 2, "rev-less save after another client's write");
    // With _rev: one PUT.
    let current = p.get(&db, "new").await.unwrap();
    let (w, n) = count(&p, p.save(&db, "new", current)).await;
    w.unwrap();
    assert_eq!(n, 1, "save with _rev");

    let (r, n) = count(&p, p.get(&db, "new")).await;
    r.unwrap();
    assert_eq!(n, 1, "get");
    let (r, n) = count(&p, p.list_page(&db, None, 2)).await;
    assert_eq!(r.unwrap().docs.len(), 2);
    assert_eq!(n, 1, "a listing page");
    let ids: Vec<String> = (0..50).map(|i| format!("bulk{i:02}")).collect();
    let docs = ids.iter().map(|id| doc(json!({"_id": id}))).collect();
    let (r, n) = count(&p, p.save_many(&db, docs)).await;
    assert!(r.unwrap().iter().all(Result::is_ok));
    assert_eq!(n, 1, "save_many of new documents");
    let (r, n) = count(&p, p.get_many(&db, &ids)).await;
    assert!(r.unwrap().iter().all(Result::is_ok));
    assert_eq!(n, 1, "get_many");
    let (r, n) = count(&p, p.delete_many(&db, &ids[..25])).await;
    assert!(r.unwrap().iter().all(Result::is_ok));
    assert_eq!(n, 2, "delete_many");
    let (r, n) = count(&p, p.changes(&db, None, 10)).await;
    r.unwrap();
    assert_eq!(n, 1, "a changes page");
    // delete: the winner looked up, then DELETE, seen before or not.
    let (r, n) = count(&p, p.delete(&db, "first")).await;
    r.unwrap();
    assert_eq!(n, 2, "delete of a seen document");
    let fresh = provider().await;
    let (r, n) = count(&fresh, fresh.delete(&db, "theirs")).await;
    r.unwrap();
    assert_eq!(n, 2, "delete of an unseen document");

    // find: one _find per page of 1,000; ensure_index one _index and at least one GET _index
    // (until CouchDB lists it); info two.
    let (r, n) = count(&p, p.ensure_index(&db, &["v"], "by-v")).await;
    r.unwrap();
    assert!(n >= 2, "ensure_index: {n}");
    let (r, n) = count(&p, p.find(&db, &FindQuery::new(json!({})).unwrap())).await;
    assert_eq!(r.unwrap().len(), 26);
    assert_eq!(n, 1, "find with fewer matches than a page");
    let many: Vec<Document> = (0..1500)
        .map(|i| doc(json!({"_id": format!("m{i:04}")})))
        .collect();
    p.save_many(&db, many).await.unwrap();
    let (r, n) = count(&p, p.find(&db, &FindQuery::new(json!({})).unwrap())).await;
    assert_eq!(r.unwrap().len(), 1526);
    assert_eq!(n, 2, "find over two pages");
    let (r, n) = count(&p, p.database_info(&db)).await;
    assert_eq!(
        r.unwrap().doc_count,
        1526,
        "the index's design document is not counted"
    );
    assert_eq!(n, 2, "database_info (info, design document count)");

    // Replication: reading revisions with their histories is one _bulk_get; write_revisions
    // is one _bulk_docs; put_revisions adds one _revs_diff (and a winner lookup only for a
    // revision that branches).
    let w = p.save(&db, "rr", doc(json!({"v": 1}))).await.unwrap();
    let (r, n) = count(&p, p.read_revisions(&db, &[("rr".into(), w.rev)])).await;
    let mut copy = r.unwrap().pop().unwrap().unwrap();
    assert_eq!(n, 1, "read_revisions");
    copy.id = "rr-copy".into();
    let (r, n) = count(&p, p.write_revisions(&db, vec![copy.clone()])).await;
    assert!(r.unwrap()[0].is_ok());
    assert_eq!(n, 1, "write_revisions");
    copy.id = "rr-copy2".into();
    let (r, n) = count(&p, p.put_revisions(&db, vec![copy])).await;
    assert_eq!(r.unwrap().len(), 1);
    assert_eq!(n, 2, "put_revisions");

    p.delete_database(&db).await.unwrap();
}

/// A user name of its own, never the server admin's: CouchDB 3.5 locks a name out for five
/// minutes after a few failed logins from one address, so failing as the admin would lock
/// every later test (and run) out.
/// Attachments: a standalone upload or removal is one request, a download two (the stub,
/// then that revision's bytes), a streamed upload two (`PUT /db` first: a stream cannot be
/// sent again when the database turns out to be missing); the first one-shot upload into a
/// missing database costs the creation and the upload again.
#[tokio::test]
async fn attachment_request_counts() {
    use docstore::{AttachmentRead, AttachmentUpload, NewAttachment};
    use futures::{StreamExt, TryStreamExt};
    let p = provider().await;
    let db = unique_db("att-counts");
    let bytes = || NewAttachment::new("image/png", vec![7u8; 200_000]);
    let (w, n) = count(&p, p.put_attachment(&db, "a", "x.png", None, bytes())).await;
    let first = w.unwrap();
    assert_eq!(n, 3, "into a missing database: PUT (404), PUT /db, PUT");
    let (w, n) = count(
        &p,
        p.put_attachment(&db, "a", "y.png", Some(&first.rev), bytes()),
    )
    .await;
    let second = w.unwrap();
    assert_eq!(n, 1, "an upload");
    let read = AttachmentRead::default();
    let (a, n) = count(&p, p.get_attachment(&db, "a", "y.png", &read)).await;
    assert_eq!(a.unwrap().data.len(), 200_000);
    assert_eq!(n, 2, "a download: the stub, then the bytes");
    let (a, n) = count(&p, p.get_attachment_stream(&db, "a", "x.png", &read)).await;
    let pieces: Vec<bytes::Bytes> = a.unwrap().body.try_collect().await.unwrap();
    assert_eq!(pieces.concat().len(), 200_000);
    assert_eq!(n, 2, "a streamed download");
    let body = futures::stream::iter(vec![Ok(bytes::Bytes::from(vec![1u8; 100_000]))]).boxed();
    let upload = AttachmentUpload::new("application/octet-stream", body);
    let (w, n) = count(
        &p,
        p.put_attachment_stream(&db, "a", "z.bin", Some(&second.rev), upload),
    )
    .await;
    let third = w.unwrap();
    assert_eq!(n, 2, "a streamed upload: PUT /db, then the streamed PUT");
    let (w, n) = count(&p, p.delete_attachment(&db, "a", "x.png", &third.rev)).await;
    assert_eq!(w.unwrap().rev.generation(), 4);
    assert_eq!(n, 1, "a removal");
    let _ = p.delete_database(&db).await;
}

#[tokio::test]
async fn wrong_password_is_unauthorized_and_never_shown() {
    let server = support::couchdb();
    let secret = "definitely-not-the-password";
    let user = format!("nobody{:x}", fastrand::u64(..));
    let settings = Settings::couchdb(&server.url, &user, Secret::new(secret));
    let err = get_database_service(&settings).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("COUCHDB_PASSWORD"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert_eq!(err.http_status(), 401);
}

/// A user of its own with a random password (never a word that could occur in output by
/// chance, whatever the server admin's password is), given in the URL: it works, and the
/// password appears in no `Debug` output and no error.
#[tokio::test]
async fn credentials_in_the_url_work_and_stay_hidden() {
    let server = support::couchdb();
    let user = format!("dsu{:x}", fastrand::u64(..));
    let password = format!("Qz{:016x}", fastrand::u64(..));
    let db = unique_db("url-credentials");
    let user_doc =
        format!(r#"{{"name":"{user}","password":"{password}","roles":[],"type":"user"}}"#);
    let (status, body) = server
        .request(
            "PUT",
            &format!("/_users/org.couchdb.user:{user}"),
            Some(&user_doc),
        )
        .expect("creates the user");
    assert!(matches!(status, 201 | 202), "{status} {body}");
    let (status, body) = server
        .request("PUT", &format!("/{db}"), None)
        .expect("creates the db");
    assert!(matches!(status, 201 | 202), "{status} {body}");
    let security = format!(r#"{{"members":{{"names":["{user}"],"roles":[]}}}}"#);
    let (status, body) = server
        .request("PUT", &format!("/{db}/_security"), Some(&security))
        .expect("sets the members");
    assert_eq!(status, 200, "{body}");

    let url = server
        .url
        .replacen("://", &format!("://{user}:{password}@"), 1);
    let p = CouchDbProvider::connect(CouchDbConfig::new(&url))
        .await
        .expect("the user connects");
    let written = p.save(&db, "d", doc(json!({"n": 1}))).await.unwrap();
    assert_eq!(
        p.get(&db, "d").await.unwrap().rev(),
        Some(written.rev.to_string().as_str())
    );
    // A member may not list every database: an error, which must not show the password.
    let denied = p.list_databases().await.unwrap_err();
    let outputs = [
        format!("{p:?}"),
        format!("{:?}", CouchDbConfig::new(&url)),
        format!("{denied} {denied:?}"),
    ];
    for output in outputs {
        assert!(!output.contains(&password), "{output}");
    }
    let admin = provider().await;
    admin.delete_database(&db).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_the_timeout() {
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = CouchDbConfig::new(format!("http://127.0.0.1:{port}"));
    config.connect_timeout = Duration::from_secs(1);
    config.password = Some(Secret::new("pw-never-shown"));
    config.user = Some("admin".into());
    let started = Instant::now();
    let err = CouchDbProvider::connect(config).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("COUCHDB_URL") && !text.contains("pw-never-shown"),
        "{text}"
    );
}

/// A scripted HTTP server: `/_session` answers as CouchDB does for user "u", `/_membership` as
/// a single node does; everything else
/// gets `respond(request_line)` (status, body), or no answer at all when it returns `None`.
async fn fake_server(
    respond: impl Fn(&str) -> Option<(u16, String)> + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let respond = Arc::new(respond);
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let respond = Arc::clone(&respond);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request per connection is enough for these tests.
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let line = head.lines().next().unwrap_or("").to_owned();
                let answer = if line.contains("/_session") {
                    Some((
                        200,
                        r#"{"ok":true,"userCtx":{"name":"u","roles":[]}}"#.to_owned(),
                    ))
                } else if line.contains("/_membership") {
                    // Asked once at connect: a single node, as the kit runs.
                    Some((
                        200,
                        r#"{"all_nodes":["couchdb@x"],"cluster_nodes":["couchdb@x"]}"#.to_owned(),
                    ))
                } else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    respond(&line)
                };
                match answer {
                    Some((status, body)) => {
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    (url, hits)
}

fn fake_config(url: &str) -> CouchDbConfig {
    let mut config = CouchDbConfig::new(url);
    config.user = Some("u".into());
    config.password = Some(Secret::new("p"));
    config.request_timeout = Duration::from_millis(500);
    config.max_retries = 3;
    config
}

#[tokio::test]
async fn reads_are_retried_on_5xx_and_then_unavailable() {
    let (url, hits) = fake_server(|_| Some((503, r#"{"error":"overloaded"}"#.into()))).await;
    let p = CouchDbProvider::connect(fake_config(&url)).await.unwrap();
    let err = p.get("db", "x").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 4, "one try and three retries");
    assert_eq!(err.http_status(), 503);
}

/// A deterministic server bug is sent once and reported as what it is: on a scripted
/// server, and on the genuine CouchDB 3.5 with the query that crashes it (a range on an
/// indexed field that closes at one value and then excludes it: `function_clause`).
#[tokio::test]
async fn a_server_crash_is_not_retried_nor_unavailable() {
    let (url, hits) = fake_server(|_| {
        Some((
            500,
            r#"{"error":"unknown_error","reason":"function_clause","ref":1}"#.into(),
        ))
    })
    .await;
    let p = CouchDbProvider::connect(fake_config(&url)).await.unwrap();
    let err = p.get("db", "x").await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 1, "not sent again");
    assert!(err.to_string().contains("function_clause"), "{err}");

    let p = provider().await;
    let db = unique_db("crash");
    p.save(&db, "d", doc(json!({"a": 1}))).await.unwrap();
    p.ensure_index(&db, &["a"], "ia").await.unwrap();
    for selector in [
        json!({"$and": [{"a": null}, {"a": {"$gt": null}}]}),
        json!({"a": {"$eq": 1, "$gt": 1}}),
    ] {
        let query = FindQuery::new(selector.clone()).unwrap();
        let (result, requests) = count(&p, p.find(&db, &query)).await;
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{selector}: {err:?}");
        assert_eq!(requests, 1, "{selector}");
    }
    p.delete_database(&db).await.unwrap();
}

#[tokio::test]
async fn writes_are_not_replayed_after_a_5xx_or_a_timeout() {
    // A write whose answer is lost is settled by the revision the server would assign
    // (`_revs_diff`): sent again only when the server says it does not hold it, never
    // blindly; acknowledged without a second write when it does.
    let expected = Rev::compute(None, false, &docstore::serde_json::Map::new());
    for (revs_diff, puts, outcome) in [
        // The settling read fails too: the outcome stays unknown, nothing is sent again.
        ((500, r#"{"error":"unknown"}"#.to_owned()), 1, "unavailable"),
        // The server holds the revision: the write was applied.
        ((200, "{}".to_owned()), 1, "applied"),
        // The server does not hold it: sent again, each time after the server said so,
        // for three rounds (all failing here, reported).
        (
            (200, format!(r#"{{"x":{{"missing":["{expected}"]}}}}"#)),
            4,
            "unavailable",
        ),
    ] {
        let put_count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&put_count);
        let (url, _) = fake_server(move |line| {
            if line.starts_with("PUT") {
                counted.fetch_add(1, Ordering::SeqCst);
                Some((500, r#"{"error":"unknown"}"#.into()))
            } else if line.contains("_revs_diff") {
                Some(revs_diff.clone())
            } else if line.contains("_all_docs") {
                Some((
                    200,
                    r#"{"total_rows":0,"offset":0,"rows":[{"key":"x","error":"not_found"}]}"#
                        .into(),
                ))
            } else {
                None
            }
        })
        .await;
        let p = CouchDbProvider::connect(fake_config(&url)).await.unwrap();
        let result = p.save("db", "x", doc(json!({}))).await;
        match (outcome, &result) {
            ("applied", Ok(w)) => assert_eq!(w.rev, expected),
            ("unavailable", Err(Error::Unavailable { .. })) => {}
            _ => panic!("expected {outcome}, got {result:?}"),
        }
        assert_eq!(
            put_count.load(Ordering::SeqCst),
            puts,
            "{outcome}: a write is sent again only when the server does not hold it"
        );
    }

    let (url, _) = fake_server(|_| None).await;
    let p = CouchDbProvider::connect(fake_config(&url)).await.unwrap();
    // A read that gets no answer times out (and is retried, being safe).
    let started = Instant::now();
    let err = p.get("db", "y").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unexpected_answers_are_protocol_errors() {
    let (url, _) = fake_server(|_| Some((200, "this is not json".into()))).await;
    let p = CouchDbProvider::connect(fake_config(&url)).await.unwrap();
    let err = p.get("db", "x").await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    let (url, _) = fake_server(|_| Some((200, "[1,2,3]".into()))).await;
    let p = CouchDbProvider::connect(fake_config(&url)).await.unwrap();
    let err = p.database_info("db").await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
}

#[tokio::test]
async fn a_server_that_is_not_couchdb_is_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let err = CouchDbProvider::connect(fake_config(&url))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("COUCHDB_URL"), "{err}");
}

#[tokio::test]
async fn design_documents_never_list() {
    // Written behind the provider's back, as an index or a view would be.
    let p = provider().await;
    let db = unique_db("design");
    p.save(&db, "a", doc(json!({}))).await.unwrap();
    p.save(&db, "z", doc(json!({}))).await.unwrap();
    let server = support::couchdb();
    let client = reqwest::Client::new();
    let design = client
        .put(format!("{}/{db}/_design%2Fidx", server.url))
        .basic_auth(&server.user, Some(&server.password))
        .header("content-type", "application/json")
        .body(r#"{"views":{}}"#)
        .send()
        .await
        .unwrap();
    assert!(design.status().is_success(), "{}", design.status());
    let ids: Vec<String> = p
        .list_all(&db)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["a", "z"]);
    let page = p.list_page(&db, None, 1).await.unwrap();
    assert_eq!(page.docs.len(), 1);
    let changes = p.changes(&db, None, 10).await.unwrap();
    assert!(
        changes
            .results
            .iter()
            .all(|c| !c.id.starts_with("_design/"))
    );
    p.delete_database(&db).await.unwrap();
}

/// A migration into CouchDB costs per batch one `_revs_diff` and one `_bulk_docs` (no winner
/// lookup), plus the checkpoint and the read-back check (`_bulk_get`) of the batch; a re-run
/// sends the same requests minus every `_bulk_docs`: it writes nothing. Only a batch holding
/// a document the target changed otherwise (a conflict) pays a winner lookup, for that batch
/// alone.
#[tokio::test]
async fn migration_requests_and_a_rerun_that_writes_nothing() {
    use docstore::migrate::{MigrateOptions, migrate};
    let target = provider().await;
    let source = get_database_service(&Settings::memory()).await.unwrap();
    let db = unique_db("mig-counts");
    let docs: Vec<Document> = (0..120)
        .map(|i| doc(json!({"_id": format!("d{i:03}"), "i": i})))
        .collect();
    source.save_many(&db, docs).await.unwrap();
    let options = MigrateOptions {
        databases: Some(vec![db.clone()]),
        batch_size: 50,
        ..MigrateOptions::default()
    };
    let (first, n_first) = count(&target, migrate(&*source, &target, &options)).await;
    let first = first.unwrap();
    assert!(first.is_success(), "{first:#?}");
    let (second, n_second) = count(&target, migrate(&*source, &target, &options)).await;
    let second = second.unwrap();
    assert!(second.is_success(), "{second:#?}");
    assert_eq!(second.written(), 0);
    // A re-run resumes from the replication checkpoint: its read, then the verification
    // walk (one listing page); no batch, no _bulk_docs.
    assert_eq!(n_second, 1 + 1, "a re-run sends no _bulk_docs");
    // First run, into no database: the checkpoint read (404: no database); the target
    // created with its first checkpoint (the PUT refused with 404, PUT /db, the PUT again);
    // per batch of 50 a `_bulk_docs` and the read-back (no `_revs_diff`: the target is new);
    // checkpoints after the first and the last batch (the run is well under a second); the
    // target's `database_info` (2) closing the inline verification.
    assert_eq!(n_first, 1 + 3 + 3 * 2 + 2 + 2);

    // The same document edited on both sides: the next run reads one change; its batch
    // pays, besides `_revs_diff`, `_bulk_docs` and the checkpoint, one read of the
    // document's conflicts on the target; the conflict is reported. (Verified by walking
    // both sides, one listing page here.)
    source
        .save(&db, "d007", doc(json!({"side": "source"})))
        .await
        .unwrap();
    target
        .save(&db, "d007", doc(json!({"side": "target"})))
        .await
        .unwrap();
    let incremental = MigrateOptions {
        incremental: true,
        ..options.clone()
    };
    let (third, n_third) = count(&target, migrate(&*source, &target, &incremental)).await;
    let third = third.unwrap();
    assert_eq!(third.databases[0].conflicts, 1, "{third:#?}");
    assert_eq!(third.databases[0].conflict_ids, ["d007"]);
    assert_eq!(n_third, 1 + (1 + 1 + 1 + 1) + 1, "{third:#?}");
    target.delete_database(&db).await.unwrap();
}
