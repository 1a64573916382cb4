//! A small REST backend on docstore and axum: typed notes with CRUD, cursor pagination, Mango
//! search and live changes as Server-Sent Events, over whichever provider the settings select.
//! Errors come back as JSON (`{"error": "not_found", "reason": "..."}`) with the status
//! `Error::http_status` gives (404, 409 on a stale `_rev`, 400 on bad input, 503 when the
//! database is unreachable). `_find` and `_changes` cannot clash with a note: document ids
//! starting with `_` are reserved.
//!
//! | route                        | what it does                                              |
//! |------------------------------|-----------------------------------------------------------|
//! | `GET /health`                | `{"status": "ok", "provider": ...}`                       |
//! | `POST /notes`                | create a note with a generated id: 201 `{"id", "rev"}`    |
//! | `GET /notes/{id}`            | the note, with `_id` and `_rev`                           |
//! | `PUT /notes/{id}`            | create or replace; with `_rev`, 409 unless it is current  |
//! | `PATCH /notes/{id}`          | change some of `title`/`body`/`tags` (retried on conflict)|
//! | `DELETE /notes/{id}`         | delete (`?rev=` to delete only that revision)             |
//! | `GET /notes?after=&limit=`   | a page in id order: `{"notes": [...], "next": "id"}`      |
//! | `POST /notes/_find`          | a Mango query (`{"selector": ..., "sort", "limit", ...}`) |
//! | `GET /notes/_changes`        | SSE: an `event: change` per write (see `watch_notes`)     |
//!
//! Configured by `Settings::load()` (`config/default.toml`, `.env`, the environment), plus
//! `BIND_ADDR` (default `127.0.0.1`), `PORT` (default 8080; 0 picks a free one) and
//! `NOTES_DB` (default `notes`). It prints `listening on http://ADDR` once bound and stops
//! gracefully on Ctrl-C or SIGTERM.
//!
//! ```text
//! DATABASE_PROVIDER=memory cargo run --example axum_backend
//! DATABASE_PROVIDER=embedded EMBEDDED_PATH=./data/backend cargo run --example axum_backend
//! DATABASE_PROVIDER=couchdb COUCHDB_URL=http://127.0.0.1:5984 COUCHDB_USER=admin \
//!   COUCHDB_PASSWORD=change-me cargo run --example axum_backend
//! cargo build --release --example axum_backend && docker compose --profile backend up -d --build
//!
//! curl -X POST localhost:8080/notes -H 'content-type: application/json' \
//!   -d '{"title": "hello", "body": "first note", "tags": ["demo"]}'
//! curl -N 'localhost:8080/notes/_changes?include_docs=true'
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use docstore::serde_json::{self, Value, json};
use docstore::{
    DatabaseService, DatabaseServiceExt, Error, FindQuery, Rev, Settings, Since, WatchOptions,
    get_database_service,
};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The typed record this backend stores, one document per note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The document id (set on reads; optional on writes, where the path names it).
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The revision: on reads the current one; on writes the one edited (409 if stale).
    #[serde(rename = "_rev", default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// A title, required.
    pub title: String,
    /// The text.
    #[serde(default)]
    pub body: String,
    /// Free tags, searchable with Mango (`{"tags": {"$all": ["x"]}}`).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A partial edit for `PATCH`: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotePatch {
    title: Option<String>,
    body: Option<String>,
    tags: Option<Vec<String>>,
}

/// The query parameters of every route, as text: each handler parses its own and answers 400
/// with JSON on a bad one (rather than axum's plain-text rejection).
#[derive(Debug, Deserialize)]
struct Params {
    after: Option<String>,
    limit: Option<String>,
    rev: Option<String>,
    since: Option<String>,
    include_docs: Option<String>,
    selector: Option<String>,
}

/// What every handler shares: the provider, the database holding the notes, and whether the
/// server is shutting down (which ends the change streams, so shutdown does not wait on them).
#[derive(Debug, Clone)]
struct AppState {
    service: Arc<dyn DatabaseService>,
    db: Arc<str>,
    closing: tokio::sync::watch::Receiver<bool>,
}

/// An error answer: a status and CouchDB-style `{"error", "reason"}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: &'static str,
    reason: String,
}

impl ApiError {
    fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "bad_request",
            reason: reason.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let (status, error) = match err.http_status() {
            404 => (StatusCode::NOT_FOUND, "not_found"),
            409 => (StatusCode::CONFLICT, "conflict"),
            400 => (StatusCode::BAD_REQUEST, "bad_request"),
            412 => (StatusCode::PRECONDITION_FAILED, "missing_stub"),
            // 401 is the database refusing *our* credentials: nothing the client can fix, and
            // the backend is unusable until its settings are, as when it is unreachable.
            401 | 503 => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            eprintln!("error: {err}");
        }
        Self {
            status,
            error,
            reason: err.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "reason": self.reason});
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body, any content type; a body that does not parse is a 400 naming why.
fn parse_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad body: {e}")))
}

fn written(status: StatusCode, w: docstore::WriteResult) -> Response {
    (
        status,
        axum::Json(json!({"id": w.id, "rev": w.rev.to_string()})),
    )
        .into_response()
}

/// The routes, on `state`.
fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/notes", get(list_notes).post(create_note))
        .route("/notes/_find", post(find_notes))
        .route("/notes/_changes", get(watch_notes))
        .route(
            "/notes/{id}",
            get(read_note)
                .put(put_note)
                .patch(patch_note)
                .delete(delete_note),
        )
        .with_state(state)
}

/// Makes the notes database exist (an index on `title`, which also lets searches sort by
/// title), so listings, searches and the changes stream work before the first note.
pub async fn prepare(service: &dyn DatabaseService, db: &str) -> docstore::Result<()> {
    service.ensure_index(db, &["title"], "by-title").await?;
    Ok(())
}

/// Serves the notes of `db` on `listener` until `shutdown` completes, then ends the change
/// streams and finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<dyn DatabaseService>,
    db: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (close, closing) = tokio::sync::watch::channel(false);
    let state = AppState {
        service,
        db: db.into(),
        closing,
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = close.send(true);
        })
        .await
}

async fn health(State(state): State<AppState>) -> Response {
    axum::Json(json!({"status": "ok", "provider": state.service.provider_name()})).into_response()
}

async fn create_note(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let mut note: Note = parse_body(&body)?;
    if note.id.is_some() || note.rev.is_some() {
        return Err(ApiError::bad_request(
            "POST /notes generates the id; use PUT /notes/{id} to choose one",
        ));
    }
    let id = format!("note-{:016x}", fastrand::u64(..));
    note.id = Some(id.clone());
    let w = state.service.save_as(&state.db, &id, &note).await?;
    Ok(written(StatusCode::CREATED, w))
}

async fn read_note(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let note: Note = state.service.get_as(&state.db, &id).await?;
    Ok(axum::Json(note).into_response())
}

async fn put_note(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let note: Note = parse_body(&body)?;
    // Without `_rev` this is an upsert; with it, a write only on that revision (else 409).
    let w = state.service.save_as(&state.db, &id, &note).await?;
    Ok(written(StatusCode::OK, w))
}

async fn patch_note(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let patch: NotePatch = parse_body(&body)?;
    let w = state
        .service
        .update(&state.db, &id, |doc| {
            if let Some(title) = &patch.title {
                doc.insert("title", title.as_str());
            }
            if let Some(text) = &patch.body {
                doc.insert("body", text.as_str());
            }
            if let Some(tags) = &patch.tags {
                doc.insert("tags", tags.clone());
            }
            Ok(())
        })
        .await?;
    Ok(written(StatusCode::OK, w))
}

async fn delete_note(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> ApiResult<Response> {
    let w = match params.rev {
        None => state.service.delete(&state.db, &id).await?,
        Some(rev) => {
            let rev: Rev = rev
                .parse()
                .map_err(|_| ApiError::bad_request(format!("{rev:?} is not a revision")))?;
            state.service.delete_rev(&state.db, &id, &rev).await?
        }
    };
    Ok(written(StatusCode::OK, w))
}

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

async fn list_notes(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> ApiResult<Response> {
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}, got {text:?}"))
            })?,
    };
    let after = params.after.as_deref().filter(|a| !a.is_empty());
    let page = state.service.list_page(&state.db, after, limit).await?;
    let notes: Vec<Value> = page.docs.into_iter().map(|d| d.into_value()).collect();
    Ok(axum::Json(json!({"notes": notes, "next": page.next})).into_response())
}

async fn find_notes(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let query: Value = parse_body(&body)?;
    let query = FindQuery::from_json(&query)?;
    let docs = state.service.find(&state.db, &query).await?;
    let docs: Vec<Value> = docs.into_iter().map(|d| d.into_value()).collect();
    Ok(axum::Json(json!({"docs": docs})).into_response())
}

/// Live changes as Server-Sent Events: `event: change`, `id:` the change's sequence, `data:`
/// `{"seq", "id", "rev", "deleted", "doc"}` (`doc` with `?include_docs=true`). `?since=now`
/// (default), `start` or a sequence; a reconnecting client's `Last-Event-ID` resumes after
/// the last event it saw. `?selector=` (URL-encoded JSON) keeps only matching documents'
/// changes. A comment every 15 s keeps proxies from closing a quiet stream; a failure ends
/// the stream with an `event: error` carrying `{"error", "reason"}`.
async fn watch_notes(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let since = match (resume, params.since.as_deref()) {
        (Some(seq), _) => Since::After(seq.to_owned()),
        (None, None | Some("now")) => Since::Now,
        (None, Some("start")) => Since::Start,
        (None, Some(seq)) => Since::After(seq.to_owned()),
    };
    let include_docs = match params.include_docs.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "include_docs must be true or false, got {other:?}"
            )));
        }
    };
    let mut options = WatchOptions::new().since(since).include_docs(include_docs);
    if let Some(selector) = &params.selector {
        let selector = serde_json::from_str(selector)
            .map_err(|e| ApiError::bad_request(format!("selector is not JSON: {e}")))?;
        options = options.selector(selector);
    }
    let changes = state.service.watch(&state.db, options).await?;
    let mut closing = state.closing.clone();
    let events = changes
        .map(|item| match item {
            Ok(live) => {
                let seq = &live.change.seq;
                let event = Event::default().event("change");
                // An id with a line break would break the framing (and axum panics on it).
                let event = if seq.contains(['\r', '\n', '\0']) {
                    event
                } else {
                    event.id(seq.as_str())
                };
                event.json_data(&live)
            }
            Err(err) => {
                let ApiError { error, reason, .. } = ApiError::from(err);
                Event::default()
                    .event("error")
                    .json_data(json!({"error": error, "reason": reason}))
            }
        })
        .take_until(async move {
            let _ = closing.wait_for(|closing| *closing).await;
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// An environment variable, trimmed; `None` when unset or blank.
fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The listen address from `BIND_ADDR` (an IP) and `PORT`.
fn listen_address() -> Result<SocketAddr, String> {
    let ip: IpAddr = match env("BIND_ADDR") {
        Some(t) => t
            .parse()
            .map_err(|_| format!("BIND_ADDR {t:?} is not an IP"))?,
        None => [127, 0, 0, 1].into(),
    };
    let port: u16 = match env("PORT") {
        Some(t) => t
            .parse()
            .map_err(|_| format!("PORT {t:?} is not a port number"))?,
        None => 8080,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Installs the Ctrl-C and (on Unix) SIGTERM handlers now, before "listening" is printed,
/// and returns what completes on either (`docker stop` sends SIGTERM).
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    })
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::load()?;
    let addr = listen_address()?;
    let db = env("NOTES_DB").unwrap_or_else(|| "notes".to_owned());
    let service = get_database_service(&settings).await?;
    prepare(&*service, &db).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let shutdown = shutdown_signal()?;
    let (provider, location) = (service.provider_name(), service.location());
    eprintln!("notes in database {db:?} of the {provider} provider at {location}");
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, service, &db, shutdown).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
