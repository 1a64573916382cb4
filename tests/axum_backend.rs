//! The axum_backend example driven over real HTTP on memory, embedded and a genuine CouchDB:
//! the example's own router (included from `examples/axum_backend.rs`) is served on a free
//! loopback port and a reqwest client checks create, read, a 409 on a stale `_rev`, 404s,
//! 400s on bad bodies, ids and queries, pagination, Mango search and graceful shutdown.

#[path = "../examples/axum_backend.rs"]
#[allow(dead_code)]
mod axum_backend;
mod support;

use std::sync::Arc;
use std::time::Duration;

use docstore::serde_json::{Value, json};
use docstore::{DatabaseService, Settings, get_database_service};
use reqwest::Method;

use axum_backend::{AppState, prepare, serve};

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
        let state = AppState {
            service,
            db: db.into(),
        };
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
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

    app.shutdown().await;
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
