//! A small REST backend on docstore and axum: typed notes with CRUD, cursor pagination and
//! Mango search, over whichever provider the settings select. Errors come back as JSON
//! (`{"error": "not_found", "reason": "..."}`) with the status `Error::http_status` gives
//! (404, 409 on a stale `_rev`, 400 on bad input, 503 when the database is unreachable).
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
//! docker compose up -d --build     # CouchDB plus this backend (see docker-compose.yml)
//!
//! curl -X POST localhost:8080/notes -H 'content-type: application/json' \
//!   -d '{"title": "hello", "body": "first note", "tags": ["demo"]}'
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use docstore::serde_json::{self, Value, json};
use docstore::{
    DatabaseService, DatabaseServiceExt, Error, FindQuery, Rev, Settings, get_database_service,
};
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

/// What every handler shares: the provider and the database holding the notes.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The provider the settings selected.
    pub service: Arc<dyn DatabaseService>,
    /// The database of the notes.
    pub db: Arc<str>,
}

/// An error answer: a status and CouchDB-style `{"error", "reason"}`.
#[derive(Debug)]
pub struct ApiError {
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
        let (status, error) = match &err {
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Error::MissingStub { .. } => (StatusCode::PRECONDITION_FAILED, "missing_stub"),
            // The server refused *our* credentials: not the client's fault, and nothing it
            // can fix; the backend is unusable until its settings are.
            Error::Unavailable { .. } | Error::Unauthorized { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            e if e.http_status() == 400 => (StatusCode::BAD_REQUEST, "bad_request"),
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
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/notes", get(list_notes).post(create_note))
        .route("/notes/_find", post(find_notes))
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

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
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

#[derive(Debug, Deserialize)]
struct DeleteParams {
    rev: Option<String>,
}

async fn delete_note(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
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

#[derive(Debug, Deserialize)]
struct ListParams {
    after: Option<String>,
    limit: Option<String>,
}

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

async fn list_notes(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
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

/// The listen address from `BIND_ADDR` and `PORT`.
fn listen_address() -> Result<SocketAddr, String> {
    let ip = match std::env::var("BIND_ADDR") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("BIND_ADDR {text:?} is not an IP address"))?,
        _ => IpAddr::from([127, 0, 0, 1]),
    };
    let port = match std::env::var("PORT") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("PORT {text:?} is not a port number"))?,
        _ => 8080,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Completes on Ctrl-C or, on Unix, SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("shutting down");
}

async fn run() -> Result<(), String> {
    let settings = Settings::load().map_err(|e| e.to_string())?;
    let addr = listen_address()?;
    let db = std::env::var("NOTES_DB")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "notes".to_owned());
    let service = get_database_service(&settings)
        .await
        .map_err(|e| e.to_string())?;
    prepare(&*service, &db).await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!(
        "{} provider at {}",
        service.provider_name(),
        service.location()
    );
    println!("listening on http://{bound}");
    let state = AppState {
        service,
        db: db.into(),
    };
    serve(listener, state, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
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
