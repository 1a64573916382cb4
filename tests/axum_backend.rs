//! The axum_backend example driven over real HTTP on memory, embedded and a genuine CouchDB:
//! the example's own router (included from `examples/axum_backend.rs`) is served on a free
//! loopback port and a reqwest client checks create, read, a 409 on a stale `_rev`, 404s,
//! 400s on bad bodies, ids and queries, pagination, Mango search, changes arriving over
//! Server-Sent Events (all, filtered by a selector, resumed by `Last-Event-ID`) and graceful
//! shutdown with an event stream still open.

#[path = "../examples/axum_backend.rs"]
#[allow(dead_code)]
mod axum_backend;
mod support;

use std::sync::Arc;
use std::time::Duration;

use docstore::serde_json::{Value, json};
use docstore::{DatabaseService, Settings, get_database_service};
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Method;

use axum_backend::{prepare, serve};

/// The example served on 127.0.0.1:0, and a client for it.
struct Running {
    base: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(service: Arc<dyn DatabaseService>, db: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        prepare(&*service, db).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let db = db.to_owned();
        let task = tokio::spawn(async move {
            serve(listener, service, &db, async {
                let _ = stopped.await;
            })
            .await
        });
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Self {
            base,
            client,
            stop: Some(stop),
            task,
        }
    }

    /// One request with a raw body: (status, JSON answer).
    async fn raw(&self, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = docstore::serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} not JSON ({e}): {text}"));
        (status, value)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        self.raw(method, path, body.as_deref()).await
    }

    /// Stops the server and waits for it to finish (bounded: open connections must not hold
    /// it up).
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("the server stops within 15 s")
            .unwrap()
            .unwrap();
    }
}

/// One event of an SSE stream: its `event:`, `id:` and the JSON of its `data:` lines.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

/// An open `GET /notes/_changes`, read as raw bytes and parsed by hand (comments, such as
/// keep-alives, skipped).
struct SseReader {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    async fn open(app: &Running, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .client
            .get(format!("{}/notes/_changes{query}", app.base));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = tokio::time::timeout(Duration::from_secs(30), request.send())
            .await
            .expect("the stream opens within 30 s")
            .unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ends; panics after 30 s without one.
    async fn next(&mut self) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event = value.to_owned(),
                        "id" => id = Some(value.to_owned()),
                        "data" => data.push(value),
                        _ => {} // a comment (keep-alive) or an empty line
                    }
                }
                if !data.is_empty() {
                    let data = docstore::serde_json::from_str(&data.join("\n")).unwrap();
                    return Some(SseEvent { event, id, data });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an event within 30 s")?
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads events until the change of document `id`, and returns it.
    async fn until(&mut self, id: &str) -> SseEvent {
        loop {
            let event = self.next().await.expect("the stream ended");
            assert_eq!(event.event, "change", "{event:?}");
            if event.data["id"] == id {
                return event;
            }
        }
    }
}

/// The error answer's `error` field, checked to carry a reason too.
fn error_of(status: u16, body: &Value) -> (u16, &str) {
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    (status, body["error"].as_str().unwrap_or("?"))
}

fn str_of<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
}

async fn exercise(service: Arc<dyn DatabaseService>, db: &str) {
    let app = Running::start(service.clone(), db).await;

    let (status, health) = app.call(Method::GET, "/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["provider"], service.provider_name());

    // Create with a generated id, read it back.
    let note = json!({"title": "first", "body": "hello", "tags": ["a"]});
    let (status, created) = app.call(Method::POST, "/notes", Some(note)).await;
    assert_eq!(status, 201, "{created}");
    let first = str_of(&created, "id").to_owned();
    let rev1 = str_of(&created, "rev").to_owned();
    assert!(rev1.starts_with("1-"), "{rev1}");
    let (status, read) = app
        .call(Method::GET, &format!("/notes/{first}"), None)
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["_id"], first.as_str());
    assert_eq!(read["_rev"], rev1.as_str());
    assert_eq!(read["title"], "first");
    assert_eq!(read["tags"], json!(["a"]));

    // Replace at the current revision, then again at the stale one: 409.
    let path = format!("/notes/{first}");
    let edit = json!({"_rev": rev1, "title": "first, edited", "body": "hello"});
    let (status, replaced) = app.call(Method::PUT, &path, Some(edit)).await;
    assert_eq!(status, 200, "{replaced}");
    let rev2 = str_of(&replaced, "rev").to_owned();
    assert!(rev2.starts_with("2-"), "{rev2}");
    let stale = json!({"_rev": rev1, "title": "lost update"});
    let (status, body) = app.call(Method::PUT, &path, Some(stale)).await;
    assert_eq!(error_of(status, &body), (409, "conflict"));

    // A partial edit keeps the other fields.
    let patch = json!({"tags": ["a", "b"]});
    let (status, patched) = app.call(Method::PATCH, &path, Some(patch)).await;
    assert_eq!(status, 200, "{patched}");
    assert!(str_of(&patched, "rev").starts_with("3-"), "{patched}");
    let (_, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(read["title"], "first, edited");
    assert_eq!(read["tags"], json!(["a", "b"]));

    // 404s.
    let (status, body) = app.call(Method::GET, "/notes/nobody", None).await;
    assert_eq!(error_of(status, &body), (404, "not_found"));
    let (status, body) = app.call(Method::DELETE, "/notes/nobody", None).await;
    assert_eq!(error_of(status, &body), (404, "not_found"));
    let (status, body) = app
        .call(Method::PATCH, "/notes/nobody", Some(json!({"title": "x"})))
        .await;
    assert_eq!(error_of(status, &body), (404, "not_found"));

    // 400s: bodies that do not parse or do not fit a note, a reserved id, a bad limit.
    for bad in [
        "not json",
        r#"{"title": 5}"#,
        r#"{"body": "no title"}"#,
        r#"{"title": "x", "colour": "red"}"#,
        r#"{"_id": "mine", "title": "x"}"#,
    ] {
        let (status, body) = app.raw(Method::POST, "/notes", Some(bad)).await;
        assert_eq!(error_of(status, &body), (400, "bad_request"), "{bad}");
    }
    let (status, body) = app
        .call(Method::PUT, "/notes/_hidden", Some(json!({"title": "x"})))
        .await;
    assert_eq!(error_of(status, &body), (400, "bad_request"));
    let mismatched = json!({"_id": "other", "title": "x"});
    let (status, body) = app.call(Method::PUT, "/notes/n00", Some(mismatched)).await;
    assert_eq!(error_of(status, &body), (400, "bad_request"));
    let (status, body) = app
        .call(Method::PATCH, &path, Some(json!({"title": 1})))
        .await;
    assert_eq!(error_of(status, &body), (400, "bad_request"));
    for query in ["?limit=0", "?limit=many", "?limit=100000"] {
        let (status, body) = app.call(Method::GET, &format!("/notes{query}"), None).await;
        assert_eq!(error_of(status, &body), (400, "bad_request"), "{query}");
    }

    // Seven more notes with chosen ids; all eight listed in id order, three at a time.
    for n in 1..=7 {
        let tag = if n % 2 == 1 { "odd" } else { "even" };
        let note = json!({"title": format!("note {n}"), "tags": [tag]});
        let (status, body) = app
            .call(Method::PUT, &format!("/notes/n{n:02}"), Some(note))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut listed = Vec::new();
    let mut pages = 0;
    let mut after = String::new();
    loop {
        let (status, page) = app
            .call(Method::GET, &format!("/notes?limit=3&after={after}"), None)
            .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let notes = page["notes"].as_array().unwrap();
        assert!(notes.len() <= 3, "{page}");
        listed.extend(notes.iter().map(|n| str_of(n, "_id").to_owned()));
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
        assert!(pages < 10, "pagination does not end: {listed:?}");
    }
    let mut expected: Vec<String> = (1..=7).map(|n| format!("n{n:02}")).collect();
    expected.push(first.clone());
    assert_eq!(listed, expected);
    assert_eq!(pages, 3);

    // Mango search: a selector on tags (id order), a sort the prepared title index serves.
    let odd = json!({"selector": {"tags": {"$all": ["odd"]}}, "fields": ["_id"]});
    let (status, found) = app.call(Method::POST, "/notes/_find", Some(odd)).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["docs"],
        json!([{"_id": "n01"}, {"_id": "n03"}, {"_id": "n05"}, {"_id": "n07"}])
    );
    let last_two = json!({
        "selector": {"title": {"$gt": "note"}},
        "sort": [{"title": "desc"}],
        "fields": ["title"],
        "limit": 2
    });
    let (status, found) = app.call(Method::POST, "/notes/_find", Some(last_two)).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["docs"],
        json!([{"title": "note 7"}, {"title": "note 6"}])
    );
    for bad in [
        json!({"selector": {"tags": {"$bogus": 1}}}),
        json!({"selector": {}, "sort": ["body"]}),
        json!({"no": "selector"}),
    ] {
        let (status, body) = app
            .call(Method::POST, "/notes/_find", Some(bad.clone()))
            .await;
        assert_eq!(error_of(status, &body), (400, "bad_request"), "{bad}");
    }

    // Delete at a given revision: a stale one is 409, the current one works, then 404.
    let (_, read) = app.call(Method::GET, "/notes/n07", None).await;
    let rev = str_of(&read, "_rev").to_owned();
    let (status, body) = app
        .call(Method::DELETE, &format!("/notes/n07?rev={rev2}"), None)
        .await;
    assert_eq!(error_of(status, &body), (409, "conflict"));
    let (status, body) = app
        .call(Method::DELETE, &format!("/notes/n07?rev={rev}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.call(Method::GET, "/notes/n07", None).await;
    assert_eq!(error_of(status, &body), (404, "not_found"));

    // Live changes over SSE: streams opened first, then the writes.
    let mut all = SseReader::open(&app, "?include_docs=true", None).await;
    let selector = "%7B%22tags%22%3A%7B%22%24all%22%3A%5B%22live%22%5D%7D%7D"; // {"tags":{"$all":["live"]}}
    let mut live_only = SseReader::open(&app, &format!("?selector={selector}"), None).await;
    let quiet = json!({"title": "quiet", "tags": ["other"]});
    let (status, quiet_write) = app.call(Method::PUT, "/notes/quiet-1", Some(quiet)).await;
    assert_eq!(status, 200, "{quiet_write}");
    let live = json!({"title": "live", "tags": ["live"]});
    let (status, live_write) = app.call(Method::PUT, "/notes/live-1", Some(live)).await;
    assert_eq!(status, 200, "{live_write}");
    // Both writes arrive (in either order: a sharded CouchDB interleaves its shards' feeds).
    let mut seen: Vec<SseEvent> = Vec::new();
    while seen.len() < 2 {
        let event = all.next().await.expect("the stream ended");
        assert_eq!(event.event, "change", "{event:?}");
        if ["quiet-1", "live-1"].contains(&event.data["id"].as_str().unwrap()) {
            seen.push(event);
        }
    }
    let event = seen.iter().find(|e| e.data["id"] == "live-1").unwrap();
    assert_eq!(event.data["rev"], live_write["rev"]);
    assert_eq!(event.data["deleted"], false);
    assert_eq!(event.data["doc"]["title"], "live");
    assert_eq!(event.id.as_deref(), event.data["seq"].as_str());
    // The filtered stream's first change is live-1: quiet-1 does not match.
    let event = live_only.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), &event.data["id"]),
        ("change", &json!("live-1"))
    );
    assert!(event.data.get("doc").is_none(), "{:?}", event.data);
    // A client reconnecting with the id of the first of the two events gets the second.
    let mut resumed = SseReader::open(&app, "", seen[0].id.as_deref()).await;
    resumed.until(seen[1].data["id"].as_str().unwrap()).await;
    // since=start replays what was written before the stream opened.
    let mut from_start = SseReader::open(&app, "?since=start", None).await;
    from_start.until("n01").await;
    // A deletion arrives as a change with deleted: true.
    let (status, body) = app.call(Method::DELETE, "/notes/live-1", None).await;
    assert_eq!(status, 200, "{body}");
    let event = all.until("live-1").await;
    assert_eq!(event.data["deleted"], true, "{:?}", event.data);
    // Bad stream parameters are 400 before any event.
    for query in [
        "?include_docs=maybe",
        "?selector=%7Bnot",
        "?selector=%7B%22a%22%3A%7B%22%24bogus%22%3A1%7D%7D",
    ] {
        let (status, body) = app
            .call(Method::GET, &format!("/notes/_changes{query}"), None)
            .await;
        assert_eq!(error_of(status, &body), (400, "bad_request"), "{query}");
    }

    // Shutdown ends the open event streams instead of waiting for them.
    app.shutdown().await;
    assert!(all.next().await.is_none(), "the stream ends at shutdown");
}

fn unique_db() -> String {
    format!("axum-notes-{:016x}", fastrand::u64(..))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    let service = get_database_service(&Settings::memory()).await.unwrap();
    exercise(service, "notes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::embedded(dir.path().join("store"));
    let service = get_database_service(&settings).await.unwrap();
    exercise(service, "notes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchdb() {
    let settings = support::couchdb().settings();
    let service = get_database_service(&settings).await.unwrap();
    let db = unique_db();
    exercise(service.clone(), &db).await;
    service.delete_database(&db).await.unwrap();
}
