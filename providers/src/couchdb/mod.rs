//! The CouchDB provider: the contract on a remote Apache CouchDB 3.x, in as few requests as
//! the HTTP API allows.
//!
//! Requests per operation (a test counts them):
//!
//! | operation                                   | requests |
//! |---------------------------------------------|----------|
//! | `save` of a new document                    | 1 (`PUT /db/id`) |
//! | `save` without `_rev` of a document this provider has seen (read, listed or written) | 1 (`PUT` with the known revision) |
//! | `save` without `_rev` of an unseen existing document | 3 (`PUT` → 409, revision lookup, `PUT`) |
//! | `save` with `_rev`, `get`, `delete_rev`     | 1 |
//! | `delete` (known revision / unknown)         | 1 / 2 |
//! | a listing page, `get_many`, `save_many` (new documents), a changes page | 1 |
//! | `delete_many`                               | 2 (revision lookup, `_bulk_docs`) |
//! | `find` (per 1,000 matches), `ensure_index`  | 1 |
//! | `current_revisions`                         | 1 (`POST _all_docs` with `keys`) |
//! | `put_revisions`                             | 2 (winner lookup, `_bulk_docs` with `new_edits: false`); 1 when all are present |
//! | `put_revisions_over` (winners given), `read_revisions` | 1 (`_bulk_docs` / `POST _bulk_get?revs=true`) |
//! | `get_local`; `put_local` of a `_local` document seen before or new | 1 |
//! | `database_info`                             | 2 (`GET /db`, design documents to leave out of `doc_count`) |
//! | the first write to a missing database       | + 2 (`PUT /db`, then the write again) |
//!
//! "Seen" revisions live in a bounded cache of (database, id) → last revision this provider
//! read or wrote. The cache is only a hint: a stale entry makes the `PUT` answer 409, and the
//! provider then looks the revision up (`POST _all_docs` with `keys`, which works for live and
//! deleted documents on every CouchDB) and writes again, with jittered retries under
//! contention. It never relies on `ETag`s.
//!
//! Listings use `_all_docs` (raw id order) and drop `_design/` documents; `_local/` documents
//! never appear there. `find` is one `POST /db/_find` per page of up to 1,000 documents,
//! following CouchDB's `bookmark` until the query's limit or the last match (a server that
//! sends no bookmark is paged by `skip` instead). `ensure_index` is one `POST /db/_index`
//! with the index name as its design document (`_design/<name>`); `database_info` counts
//! design documents out of `doc_count` (one `_all_docs` range request), so the count is the
//! same as on the other providers. The credentials are sent as HTTP basic auth on every
//! request and never appear in errors or `Debug` output.

mod http;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use self::http::{Http, Idempotency, Reply, Target, status_error};
use crate::service::backoff;
use crate::write::{Leaf, SaveRequest, check_current_len, local_body, only, revision_outcome};
use crate::{
    Change, ChangesPage, DatabaseInfo, DatabaseService, Document, Error, FindQuery,
    IndexDefinition, IndexStatus, NO_INDEX_FOR_SORT, Page, Result, Rev, RevisionOutcome,
    RevisionedDoc, Secret, WriteResult, redact_url, validate,
};

/// Documents asked for per `_find` request.
const FIND_PAGE: usize = 1000;

/// Typed configuration of the CouchDB provider.
#[derive(Clone)]
pub struct CouchDbConfig {
    /// Base URL, e.g. `http://127.0.0.1:5984`; may carry `user:password@`.
    pub url: String,
    /// User for basic auth (overrides one in the URL).
    pub user: Option<String>,
    /// Password for basic auth (overrides one in the URL).
    pub password: Option<Secret>,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Retries after a connection error, a timeout or a 5xx (see the retry rule).
    pub max_retries: u32,
    /// Idle keep-alive connections kept in the pool.
    pub max_idle_connections: usize,
}

impl CouchDbConfig {
    /// Defaults: 5 s connect, 30 s request timeout, 3 retries, 32 idle connections.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            max_idle_connections: 32,
        }
    }
}

impl fmt::Debug for CouchDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchDbConfig")
            .field("url", &redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// The CouchDB provider.
pub struct CouchDbProvider {
    http: Http,
    revs: RevCache<Rev>,
    /// `_local` documents' revisions ("0-N"), so a rewrite (a migration checkpoint) is one
    /// `PUT`, not a refused `PUT`, a `GET` and another `PUT`.
    local_revs: RevCache<String>,
}

impl fmt::Debug for CouchDbProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchDbProvider")
            .field("url", &self.http.base())
            .field("user", &self.http.user())
            .finish_non_exhaustive()
    }
}

/// Attempts of a rev-less write under contention before it gives up with `Conflict`.
const UPSERT_ATTEMPTS: u32 = 64;
/// Entries the revision cache holds before it starts over.
const REV_CACHE_LIMIT: usize = 100_000;

/// (database, id) → the last revision seen. Only a hint; see the module doc.
struct RevCache<R>(Mutex<HashMap<(String, String), R>>);

impl<R> Default for RevCache<R> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<R: Clone> RevCache<R> {
    fn get(&self, db: &str, id: &str) -> Option<R> {
        self.0.lock().get(&(db.to_owned(), id.to_owned())).cloned()
    }

    fn put(&self, db: &str, id: &str, rev: R) {
        let mut map = self.0.lock();
        if map.len() >= REV_CACHE_LIMIT {
            map.clear();
        }
        map.insert((db.to_owned(), id.to_owned()), rev);
    }

    fn forget(&self, db: &str, id: &str) {
        self.0.lock().remove(&(db.to_owned(), id.to_owned()));
    }

    fn forget_db(&self, db: &str) {
        self.0.lock().retain(|(d, _), _| d != db);
    }
}

/// What a revision lookup found for one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Missing,
    Deleted(Rev),
    Live(Rev),
}

impl Current {
    /// The winning leaf, if the document exists (live or deleted).
    fn leaf(self) -> Option<Leaf> {
        match self {
            Current::Missing => None,
            Current::Deleted(rev) => Some(Leaf { rev, deleted: true }),
            Current::Live(rev) => Some(Leaf {
                rev,
                deleted: false,
            }),
        }
    }

    /// The revision a rev-less write goes on top of: the live one, if any.
    fn live(self) -> Option<Rev> {
        self.leaf().filter(|l| !l.deleted).map(|l| l.rev)
    }
}

/// The JSON text of a body with `_id` and, if given, `_rev` first, without copying the body.
fn doc_json(id: Option<&str>, rev: Option<&Rev>, body: &Map<String, Value>) -> Result<Vec<u8>> {
    let encoded = serde_json::to_vec(body).map_err(Error::storage)?;
    let mut head = String::from("{");
    if let Some(id) = id {
        head.push_str("\"_id\":");
        head.push_str(&Value::String(id.to_owned()).to_string());
        head.push(',');
    }
    if let Some(rev) = rev {
        head.push_str(&format!("\"_rev\":\"{rev}\","));
    }
    if head.len() == 1 {
        return Ok(encoded);
    }
    let mut out = Vec::with_capacity(head.len() + encoded.len());
    out.extend_from_slice(head.as_bytes());
    if body.is_empty() {
        out.pop(); // the trailing comma
        out.push(b'}');
    } else {
        out.extend_from_slice(&encoded[1..]);
    }
    Ok(out)
}

/// A path segment that URL parsers would resolve away (`.`/`..`): such ids go through the
/// bulk endpoints, where the id travels in the body.
fn is_dot_segment(id: &str) -> bool {
    id == "." || id == ".."
}

fn protocol(what: &str, reply: &Reply) -> Error {
    Error::Protocol {
        reason: format!(
            "CouchDB answered {} with an unexpected body for {what}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
        ),
    }
}

fn rev_of(value: &Value) -> Option<Rev> {
    value.as_str().and_then(|t| Rev::parse(t).ok())
}

/// A document as CouchDB returned it, normalized to `_id`, `_rev`, then the body in order.
fn document_from(value: Value) -> Option<(Document, Rev)> {
    let Value::Object(mut map) = value else {
        return None;
    };
    // CouchDB sends `_id` and `_rev` first: then, with no other `_` field, the map is kept
    // as it is (listings and bulk reads would otherwise copy every document).
    let mut keys = map.keys();
    if keys.next().map(String::as_str) == Some("_id")
        && keys.next().map(String::as_str) == Some("_rev")
        && !keys.any(|k| k.starts_with('_'))
        && map["_id"].is_string()
    {
        let rev = rev_of(&map["_rev"])?;
        return Some((Document::from(map), rev));
    }
    let id = match map.shift_remove("_id") {
        Some(Value::String(id)) => id,
        _ => return None,
    };
    let rev = rev_of(&map.shift_remove("_rev")?)?;
    map.retain(|k, _| !k.starts_with('_') || k == "_deleted");
    map.shift_remove("_deleted");
    Some((Document::assemble(&id, &rev, map), rev))
}

impl CouchDbProvider {
    /// Connects to the server and checks it and the credentials once: an unreachable server is
    /// `Unavailable`, wrong credentials `Unauthorized`, each saying what to check.
    pub async fn connect(config: CouchDbConfig) -> Result<Self> {
        let provider = Self {
            http: Http::new(&config)?,
            revs: RevCache::default(),
            local_revs: RevCache::default(),
        };
        provider.check_server().await?;
        Ok(provider)
    }

    /// HTTP requests sent so far (retries included).
    pub fn request_count(&self) -> u64 {
        self.http.request_count()
    }

    async fn check_server(&self) -> Result<()> {
        let url = self.http.url(&["_session"], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        let user = self.http.user();
        match reply.status.as_u16() {
            200 => {
                let session = reply.json()?;
                let name = session.pointer("/userCtx/name").and_then(Value::as_str);
                match user {
                    Some(user) if name != Some(user) => Err(Error::Unauthorized {
                        reason: format!(
                            "CouchDB at {} did not authenticate user {user:?}; check COUCHDB_USER and COUCHDB_PASSWORD",
                            self.http.base()
                        ),
                    }),
                    _ => Ok(()),
                }
            }
            401 | 403 => {
                let (_, reason) = reply.error_and_reason();
                Err(Error::Unauthorized {
                    reason: format!(
                        "CouchDB at {} rejected user {:?} ({reason}); check COUCHDB_USER and COUCHDB_PASSWORD",
                        self.http.base(),
                        user.unwrap_or("")
                    ),
                })
            }
            _ => Err(Error::Protocol {
                reason: format!(
                    "{} does not answer like CouchDB 3 (GET /_session gave {}); check COUCHDB_URL",
                    self.http.base(),
                    reply.status
                ),
            }),
        }
    }

    /// Creates a database; one that already exists is fine.
    async fn create_db(&self, db: &str) -> Result<()> {
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::PUT, &url, None, Idempotency::Safe)
            .await?;
        match reply.status.as_u16() {
            201 | 202 | 412 => Ok(()),
            _ => Err(status_error(&reply, Target { db, id: None })),
        }
    }

    /// Sends a write; if the database is missing (404), creates it and sends the write again.
    async fn write(&self, db: &str, method: Method, url: &str, body: Vec<u8>) -> Result<Reply> {
        let body = bytes::Bytes::from(body);
        let reply = self
            .http
            .send(method.clone(), url, Some(body.clone()), Idempotency::Unsafe)
            .await?;
        if reply.status != StatusCode::NOT_FOUND {
            return Ok(reply);
        }
        self.create_db(db).await?;
        self.http
            .send(method, url, Some(body), Idempotency::Unsafe)
            .await
    }

    /// PUT of one document; `Conflict` on 409.
    async fn put_doc(
        &self,
        db: &str,
        id: &str,
        rev: Option<&Rev>,
        body: &Map<String, Value>,
    ) -> Result<Rev> {
        let url = self.http.url(&[db, id], &[]);
        let reply = self
            .write(db, Method::PUT, &url, doc_json(None, rev, body)?)
            .await?;
        let target = Target { db, id: Some(id) };
        match reply.status.as_u16() {
            200..=202 => {
                let rev =
                    rev_of(&reply.json()?["rev"]).ok_or_else(|| protocol("a save", &reply))?;
                self.revs.put(db, id, rev);
                Ok(rev)
            }
            _ => Err(status_error(&reply, target)),
        }
    }

    /// `POST /db/_all_docs` with `keys`: one row per id, in order (a missing database gives
    /// `null` rows). With `include_docs`, live rows carry their document.
    async fn rows_for_keys(
        &self,
        db: &str,
        ids: &[&str],
        include_docs: bool,
    ) -> Result<Vec<Value>> {
        let query: &[(&str, &str)] = if include_docs {
            &[("include_docs", "true")]
        } else {
            &[]
        };
        let url = self.http.url(&[db, "_all_docs"], query);
        let body = json!({ "keys": ids });
        let reply = self
            .http
            .send_json(Method::POST, &url, &body, Idempotency::Safe)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(vec![Value::Null; ids.len()]);
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        match reply.json()?.get_mut("rows").map(Value::take) {
            Some(Value::Array(rows)) if rows.len() == ids.len() => Ok(rows),
            _ => Err(protocol("_all_docs with keys", &reply)),
        }
    }

    /// The current revisions of `ids`, live or deleted, in one request.
    async fn lookup(&self, db: &str, ids: &[&str]) -> Result<Vec<Current>> {
        let rows = self.rows_for_keys(db, ids, false).await?;
        Ok(rows
            .iter()
            .map(|row| match rev_of(&row["value"]["rev"]) {
                None => Current::Missing,
                Some(rev) if row["value"]["deleted"] == json!(true) => Current::Deleted(rev),
                Some(rev) => Current::Live(rev),
            })
            .collect())
    }

    /// The revision a rev-less write should go on top of: live → its rev; else none.
    async fn current_live(&self, db: &str, id: &str) -> Result<Option<Rev>> {
        Ok(self.lookup(db, &[id]).await?[0].live())
    }

    async fn upsert(&self, db: &str, id: &str, body: &Map<String, Value>) -> Result<Rev> {
        let mut rev = self.revs.get(db, id);
        for attempt in 0..UPSERT_ATTEMPTS {
            match self.put_doc(db, id, rev.as_ref(), body).await {
                Err(e) if e.is_conflict() => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    rev = self.current_live(db, id).await?;
                }
                other => return other,
            }
        }
        Err(Error::conflict(db, id))
    }

    async fn delete_at(&self, db: &str, id: &str, rev: &Rev) -> Result<Rev> {
        let rev_text = rev.to_string();
        let url = self.http.url(&[db, id], &[("rev", &rev_text)]);
        let reply = self
            .http
            .send(Method::DELETE, &url, None, Idempotency::Unsafe)
            .await?;
        match reply.status.as_u16() {
            200..=202 => {
                self.revs.forget(db, id);
                rev_of(&reply.json()?["rev"]).ok_or_else(|| protocol("a delete", &reply))
            }
            _ => Err(status_error(&reply, Target { db, id: Some(id) })),
        }
    }

    /// One `_bulk_docs` request; the per-document outcomes in order.
    async fn bulk_docs(&self, db: &str, docs: Vec<Vec<u8>>) -> Result<Vec<Result<Rev>>> {
        let mut body = Vec::with_capacity(docs.iter().map(Vec::len).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"docs\":[");
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(doc);
        }
        body.extend_from_slice(b"]}");
        let url = self.http.url(&[db, "_bulk_docs"], &[]);
        let reply = self.write(db, Method::POST, &url, body).await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let value = reply.json()?;
        let rows = value
            .as_array()
            .filter(|rows| rows.len() == docs.len())
            .ok_or_else(|| protocol("_bulk_docs", &reply))?;
        Ok(rows
            .iter()
            .map(|row| {
                let id = row["id"].as_str().unwrap_or("");
                if let Some(rev) = rev_of(&row["rev"]).filter(|_| row.get("error").is_none()) {
                    return Ok(rev);
                }
                let error = row["error"].as_str().unwrap_or("unknown");
                let reason = row["reason"].as_str().unwrap_or("");
                Err(match error {
                    "conflict" => Error::conflict(db, id),
                    "forbidden" | "unauthorized" => Error::Unauthorized {
                        reason: format!("CouchDB refused {id:?} in {db:?}: {reason}"),
                    },
                    _ => Error::invalid_document(db, Some(id), format!("{error}: {reason}")),
                })
            })
            .collect())
    }
}

#[async_trait]
impl DatabaseService for CouchDbProvider {
    fn provider_name(&self) -> &'static str {
        "couchdb"
    }

    async fn list_databases(&self) -> Result<Vec<String>> {
        let url = self.http.url(&["_all_dbs"], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db: "", id: None }));
        }
        let value = reply.json()?;
        let mut names: Vec<String> = value
            .as_array()
            .ok_or_else(|| protocol("_all_dbs", &reply))?
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| !n.starts_with('_'))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn database_info(&self, db: &str) -> Result<DatabaseInfo> {
        validate::database_name(db)?;
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let v = reply.json()?;
        let count = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| protocol("database info", &reply))
        };
        // CouchDB counts design documents (the indexes' too); the contract does not.
        let design = self.http.url(
            &[db, "_all_docs"],
            &[("startkey", "\"_design/\""), ("endkey", "\"_design0\"")],
        );
        let design = self
            .http
            .send(Method::GET, &design, None, Idempotency::Safe)
            .await?;
        if !design.status.is_success() {
            return Err(status_error(&design, Target { db, id: None }));
        }
        let design_docs = design.json()?["rows"]
            .as_array()
            .ok_or_else(|| protocol("_all_docs of design documents", &design))?
            .len() as u64;
        Ok(DatabaseInfo {
            name: db.to_owned(),
            doc_count: count("doc_count")?.saturating_sub(design_docs),
            doc_del_count: count("doc_del_count")?,
            update_seq: seq_text(&v["update_seq"]),
        })
    }

    async fn delete_database(&self, db: &str) -> Result<()> {
        validate::database_name(db)?;
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::DELETE, &url, None, Idempotency::Unsafe)
            .await?;
        self.revs.forget_db(db);
        self.local_revs.forget_db(db);
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(status_error(&reply, Target { db, id: None }))
        }
    }

    async fn get(&self, db: &str, id: &str) -> Result<Document> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        if is_dot_segment(id) {
            return only(self.get_many(db, &[id.to_owned()]).await?);
        }
        let url = self.http.url(&[db, id], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: Some(id) }));
        }
        let (doc, rev) = document_from(reply.json()?).ok_or_else(|| protocol("a get", &reply))?;
        self.revs.put(db, id, rev);
        Ok(doc)
    }

    async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        validate::database_name(db)?;
        let req = SaveRequest::new(db, id, doc)?;
        if is_dot_segment(id) {
            let mut doc = Document::from(req.body);
            doc.insert("_id", id);
            if let Some(rev) = req.expected {
                doc.set_rev(&rev);
            }
            return only(self.save_many(db, vec![doc]).await?);
        }
        let rev = match req.expected {
            Some(expected) => self.put_doc(db, id, Some(&expected), &req.body).await?,
            None => self.upsert(db, id, &req.body).await?,
        };
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    async fn delete(&self, db: &str, id: &str) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        if is_dot_segment(id) {
            return only(self.delete_many(db, &[id.to_owned()]).await?);
        }
        let mut known = self.revs.get(db, id);
        for attempt in 0..UPSERT_ATTEMPTS {
            let rev = match known {
                Some(rev) => rev,
                None => match self.lookup(db, &[id]).await?[0] {
                    Current::Live(rev) => rev,
                    Current::Deleted(_) => return Err(Error::doc_not_found(db, id, "deleted")),
                    Current::Missing => return Err(Error::doc_not_found(db, id, "missing")),
                },
            };
            match self.delete_at(db, id, &rev).await {
                Ok(rev) => {
                    return Ok(WriteResult {
                        id: id.to_owned(),
                        rev,
                    });
                }
                // A stale known revision: look the current one up and try again.
                Err(e) if e.is_conflict() || (e.is_not_found() && known.is_some()) => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    known = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(db, id))
    }

    async fn delete_rev(&self, db: &str, id: &str, rev: &Rev) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        let rev = if is_dot_segment(id) {
            let doc = format!(
                "{{\"_id\":{},\"_rev\":\"{rev}\",\"_deleted\":true}}",
                Value::String(id.to_owned())
            );
            only(self.bulk_docs(db, vec![doc.into_bytes()]).await?)?
        } else {
            self.delete_at(db, id, rev).await?
        };
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    async fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        validate::database_name(db)?;
        validate::limit(limit)?;
        let fetch = (limit + 1).to_string();
        // The smallest id greater than `after` is `after` + U+0000.
        let start = after.map(|a| Value::String(format!("{a}\u{0}")).to_string());
        let mut query = vec![("include_docs", "true"), ("limit", fetch.as_str())];
        if let Some(start) = &start {
            query.push(("startkey", start.as_str()));
        }
        let url = self.http.url(&[db, "_all_docs"], &query);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(Page {
                docs: Vec::new(),
                next: None,
            });
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let mut body = reply.json()?;
        let rows = match body.get_mut("rows").map(Value::take) {
            Some(Value::Array(rows)) => rows,
            _ => return Err(protocol("_all_docs", &reply)),
        };
        let full = rows.len() > limit;
        let last_row_id = rows
            .last()
            .and_then(|r| r["id"].as_str())
            .map(str::to_owned);
        let mut docs = Vec::with_capacity(rows.len());
        for mut row in rows {
            let id = row["id"].as_str().unwrap_or("");
            if id.starts_with("_design/") {
                continue;
            }
            let (doc, rev) = document_from(row["doc"].take())
                .ok_or_else(|| protocol("_all_docs with include_docs", &reply))?;
            self.revs.put(db, doc.id().unwrap_or(""), rev);
            docs.push(doc);
        }
        let next = if docs.len() > limit {
            docs.truncate(limit);
            docs.last().and_then(|d| d.id().map(str::to_owned))
        } else if full {
            last_row_id
        } else {
            None
        };
        Ok(Page { docs, next })
    }

    async fn get_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<Document>>> {
        validate::database_name(db)?;
        let mut results: Vec<Option<Result<Document>>> = ids
            .iter()
            .map(|id| validate::document_id(db, id).err().map(Err))
            .collect();
        let wanted: Vec<&str> = ids
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        if !wanted.is_empty() {
            let mut rows = self.rows_for_keys(db, &wanted, true).await?.into_iter();
            for (slot, id) in results.iter_mut().zip(ids) {
                if slot.is_some() {
                    continue;
                }
                let mut row = rows.next().unwrap_or(Value::Null);
                let deleted = row["value"]["deleted"] == json!(true);
                *slot = Some(match document_from(row["doc"].take()) {
                    Some((doc, rev)) if !deleted => {
                        self.revs.put(db, id, rev);
                        Ok(doc)
                    }
                    _ if deleted => Err(Error::doc_not_found(db, id, "deleted")),
                    _ => Err(Error::doc_not_found(db, id, "missing")),
                });
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a bulk read lost a result"))))
            .collect())
    }

    async fn save_many(&self, db: &str, docs: Vec<Document>) -> Result<Vec<Result<WriteResult>>> {
        validate::database_name(db)?;
        struct Pending {
            slot: usize,
            id: String,
            req: SaveRequest,
            /// For a rev-less save: the revision a lookup found (`Some(None)`: none).
            looked_up: Option<Option<Rev>>,
        }
        let mut results: Vec<Option<Result<WriteResult>>> = Vec::with_capacity(docs.len());
        let mut queue = Vec::new();
        for (slot, doc) in docs.into_iter().enumerate() {
            match SaveRequest::for_bulk(db, doc) {
                Ok((id, req)) => {
                    queue.push(Pending {
                        slot,
                        id,
                        req,
                        looked_up: None,
                    });
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        // Each round sends at most one write per id (a repeated id waits for the next round,
        // so repeats apply in input order); rev-less saves that conflict are looked up and
        // sent again, up to UPSERT_ATTEMPTS rounds of lookups.
        let mut lookups = 0;
        while !queue.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (round, mut deferred): (Vec<Pending>, Vec<Pending>) =
                queue.into_iter().partition(|p| seen.insert(p.id.clone()));
            let revs: Vec<Option<Rev>> = round
                .iter()
                .map(|p| {
                    p.req
                        .expected
                        .or_else(|| p.looked_up.unwrap_or_else(|| self.revs.get(db, &p.id)))
                })
                .collect();
            let bodies = round
                .iter()
                .zip(&revs)
                .map(|(p, rev)| doc_json(Some(&p.id), rev.as_ref(), &p.req.body))
                .collect::<Result<Vec<_>>>()?;
            let outcomes = self.bulk_docs(db, bodies).await?;
            let mut retry = Vec::new();
            for (mut p, outcome) in round.into_iter().zip(outcomes) {
                match outcome {
                    Ok(rev) => {
                        self.revs.put(db, &p.id, rev);
                        results[p.slot] = Some(Ok(WriteResult { id: p.id, rev }));
                    }
                    // Rev-less saves are upserts: fetch the current revision and go again.
                    Err(e) if e.is_conflict() && p.req.expected.is_none() => {
                        p.looked_up = None;
                        retry.push(p);
                    }
                    Err(e) => results[p.slot] = Some(Err(e)),
                }
            }
            if !retry.is_empty() {
                lookups += 1;
                if lookups > UPSERT_ATTEMPTS {
                    for p in retry.drain(..) {
                        results[p.slot] = Some(Err(Error::conflict(db, &p.id)));
                    }
                } else {
                    if lookups > 1 {
                        tokio::time::sleep(backoff(lookups)).await;
                    }
                    let ids: Vec<&str> = retry.iter().map(|p| p.id.as_str()).collect();
                    let current = self.lookup(db, &ids).await?;
                    for (p, c) in retry.iter_mut().zip(current) {
                        p.looked_up = Some(c.live());
                    }
                }
            }
            retry.append(&mut deferred);
            retry.sort_by_key(|p| p.slot);
            queue = retry;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a bulk save lost a result"))))
            .collect())
    }

    async fn delete_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<WriteResult>>> {
        validate::database_name(db)?;
        let mut results: Vec<Option<Result<WriteResult>>> = ids
            .iter()
            .map(|id| validate::document_id(db, id).err().map(Err))
            .collect();
        let mut queue: Vec<usize> = (0..ids.len()).filter(|&i| results[i].is_none()).collect();
        // Each round: one revision lookup and one `_bulk_docs` for at most one delete per id
        // (a repeated id waits for the next round, where it finds the document deleted).
        // Deletes that lose a race are looked up again, up to UPSERT_ATTEMPTS times.
        let mut conflict_rounds = 0;
        while !queue.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (round, deferred): (Vec<usize>, Vec<usize>) = queue
                .into_iter()
                .partition(|&i| seen.insert(ids[i].as_str()));
            let wanted: Vec<&str> = round.iter().map(|&i| ids[i].as_str()).collect();
            let current = self.lookup(db, &wanted).await?;
            let mut live = Vec::new();
            let mut bodies = Vec::new();
            for (&i, c) in round.iter().zip(current) {
                match c {
                    Current::Live(rev) => {
                        let id = Value::String(ids[i].clone());
                        let body = format!("{{\"_id\":{id},\"_rev\":\"{rev}\",\"_deleted\":true}}");
                        bodies.push(body.into_bytes());
                        live.push(i);
                    }
                    Current::Deleted(_) => {
                        results[i] = Some(Err(Error::doc_not_found(db, &ids[i], "deleted")))
                    }
                    Current::Missing => {
                        results[i] = Some(Err(Error::doc_not_found(db, &ids[i], "missing")))
                    }
                }
            }
            let outcomes = if live.is_empty() {
                Vec::new()
            } else {
                self.bulk_docs(db, bodies).await?
            };
            let mut next = deferred;
            let mut conflicted = false;
            for (i, outcome) in live.into_iter().zip(outcomes) {
                match outcome {
                    Ok(rev) => {
                        self.revs.forget(db, &ids[i]);
                        results[i] = Some(Ok(WriteResult {
                            id: ids[i].clone(),
                            rev,
                        }));
                    }
                    Err(e) if e.is_conflict() && conflict_rounds < UPSERT_ATTEMPTS => {
                        conflicted = true;
                        next.push(i);
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            if conflicted {
                conflict_rounds += 1;
                tokio::time::sleep(backoff(conflict_rounds)).await;
            }
            next.sort_unstable();
            queue = next;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a bulk delete lost a result"))))
            .collect())
    }

    async fn changes(&self, db: &str, since: Option<&str>, limit: usize) -> Result<ChangesPage> {
        validate::database_name(db)?;
        validate::limit(limit)?;
        let limit_text = limit.to_string();
        let mut query = vec![("limit", limit_text.as_str())];
        if let Some(since) = since {
            query.push(("since", since));
        }
        let url = self.http.url(&[db, "_changes"], &query);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let body = reply.json()?;
        let rows = body["results"]
            .as_array()
            .ok_or_else(|| protocol("_changes", &reply))?;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row["id"]
                .as_str()
                .ok_or_else(|| protocol("_changes", &reply))?;
            if id.starts_with("_design/") {
                continue;
            }
            let rev =
                rev_of(&row["changes"][0]["rev"]).ok_or_else(|| protocol("_changes", &reply))?;
            results.push(Change {
                seq: seq_text(&row["seq"]),
                id: id.to_owned(),
                rev,
                deleted: row["deleted"] == json!(true),
            });
        }
        Ok(ChangesPage {
            results,
            last_seq: seq_text(&body["last_seq"]),
            pending: body["pending"].as_u64().unwrap_or(0),
        })
    }

    async fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        validate::database_name(db)?;
        validate::local_id(db, id)?;
        let local_id = format!("_local/{id}");
        let url = self.http.url(&[db, "_local", id], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(
                &reply,
                Target {
                    db,
                    id: Some(&local_id),
                },
            ));
        }
        let Value::Object(mut map) = reply.json()? else {
            return Err(protocol("a _local document", &reply));
        };
        map.shift_remove("_id");
        if let Some(Value::String(rev)) = map.shift_remove("_rev") {
            self.local_revs.put(db, id, rev);
        }
        Ok(Document::from(map))
    }

    async fn put_local(&self, db: &str, id: &str, doc: Document) -> Result<()> {
        validate::database_name(db)?;
        let body = local_body(db, id, &doc)?;
        let local_id = format!("_local/{id}");
        let url = self.http.url(&[db, "_local", id], &[]);
        // _local documents carry a revision too ("0-N"): the last one seen is tried first;
        // on 409, it is fetched and the write sent again.
        let mut rev: Option<String> = self.local_revs.get(db, id);
        for attempt in 0..UPSERT_ATTEMPTS {
            let mut json = body.clone();
            if let Some(rev) = &rev {
                json.insert("_rev".into(), Value::String(rev.clone()));
            }
            let bytes = serde_json::to_vec(&json).map_err(Error::storage)?;
            let reply = self.write(db, Method::PUT, &url, bytes).await?;
            let target = Target {
                db,
                id: Some(&local_id),
            };
            match reply.status.as_u16() {
                200..=202 => {
                    match reply.json()?["rev"].as_str() {
                        Some(rev) => self.local_revs.put(db, id, rev.to_owned()),
                        None => self.local_revs.forget(db, id),
                    }
                    return Ok(());
                }
                409 => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    let current = self
                        .http
                        .send(Method::GET, &url, None, Idempotency::Safe)
                        .await?;
                    rev = if current.status.is_success() {
                        current.json()?["_rev"].as_str().map(str::to_owned)
                    } else {
                        None
                    };
                }
                _ => return Err(status_error(&reply, target)),
            }
        }
        Err(Error::conflict(db, &local_id))
    }
    async fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>> {
        validate::database_name(db)?;
        // Refused here as CouchDB would, before any request.
        query.direction()?;
        let url = self.http.url(&[db, "_find"], &[]);
        let target = Target { db, id: None };
        let mut out = Vec::new();
        let mut remaining = query.limit_value();
        let mut skip = query.skip_value();
        let mut bookmark: Option<String> = None;
        loop {
            // The first request is sent even for `limit: 0`: it still checks the database
            // and the query.
            let page = remaining.map_or(FIND_PAGE, |r| r.min(FIND_PAGE));
            let body = query.couchdb_body(page, skip, bookmark.as_deref());
            let reply = self
                .http
                .send_json(Method::POST, &url, &body, Idempotency::Safe)
                .await?;
            if !reply.status.is_success() {
                let (error, reason) = reply.error_and_reason();
                return Err(match reply.status.as_u16() {
                    400 if error == "no_usable_index" => Error::InvalidQuery {
                        reason: NO_INDEX_FOR_SORT.into(),
                    },
                    400 => Error::InvalidQuery {
                        reason: format!("CouchDB refused the query ({error}: {reason})"),
                    },
                    _ => status_error(&reply, target),
                });
            }
            let mut answer = reply.json()?;
            let Some(Value::Array(docs)) = answer.get_mut("docs").map(Value::take) else {
                return Err(protocol("_find", &reply));
            };
            let fetched = docs.len();
            for value in docs {
                let Value::Object(map) = value else {
                    return Err(protocol("_find", &reply));
                };
                let doc = Document::from(map);
                if doc.id().is_some_and(|id| id.starts_with("_design/")) {
                    continue;
                }
                if let (Some(id), Some(rev)) = (doc.id(), doc.rev().and_then(|r| r.parse().ok())) {
                    self.revs.put(db, id, rev);
                }
                out.push(doc);
            }
            remaining = remaining.map(|r| r - fetched.min(r));
            if fetched < page || remaining == Some(0) {
                return Ok(out);
            }
            match answer.get("bookmark").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && next != "nil" => {
                    bookmark = Some(next.to_owned());
                    skip = 0;
                }
                _ if bookmark.is_none() => skip += fetched,
                // A bookmark stopped coming: paging on by skip would repeat or lose rows.
                _ => return Err(protocol("_find (a page came without a bookmark)", &reply)),
            }
        }
    }

    async fn ensure_index(&self, db: &str, fields: &[&str], name: &str) -> Result<IndexStatus> {
        validate::database_name(db)?;
        let index = IndexDefinition::new(name, fields)?;
        let body = json!({
            "index": {"fields": index.fields},
            "name": index.name,
            "ddoc": index.name,
            "type": "json",
        });
        let bytes = serde_json::to_vec(&body).map_err(Error::storage)?;
        let url = self.http.url(&[db, "_index"], &[]);
        let reply = self.write(db, Method::POST, &url, bytes).await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        match reply.json()?["result"].as_str() {
            Some("created") => Ok(IndexStatus::Created),
            Some("exists") => Ok(IndexStatus::Exists),
            _ => Err(protocol("_index", &reply)),
        }
    }

    async fn current_revisions(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Option<(Rev, bool)>>> {
        validate::database_and_ids(db, ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        Ok(self
            .lookup(db, &keys)
            .await?
            .into_iter()
            .map(|c| c.leaf().map(|l| (l.rev, l.deleted)))
            .collect())
    }

    async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        validate::database_name(db)?;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        // One lookup of the current winners, then one `_bulk_docs` with `new_edits: false`
        // for what is not there yet (nothing is sent when everything is present).
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        let current = self
            .lookup(db, &ids)
            .await?
            .into_iter()
            .map(Current::leaf)
            .collect();
        self.send_revisions(db, &docs, current).await
    }

    async fn put_revisions_over(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
        current: Vec<Option<(Rev, bool)>>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        validate::database_name(db)?;
        check_current_len(db, &docs, &current)?;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let current = current
            .into_iter()
            .map(|c| c.map(|(rev, deleted)| Leaf { rev, deleted }))
            .collect();
        self.send_revisions(db, &docs, current).await
    }

    async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        validate::database_name(db)?;
        let mut results: Vec<Option<Result<RevisionedDoc>>> = wanted
            .iter()
            .map(|(id, _)| validate::document_id(db, id).err().map(Err))
            .collect();
        let asked: Vec<Value> = wanted
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|((id, rev), _)| json!({"id": id, "rev": rev.to_string()}))
            .collect();
        let reply = if asked.is_empty() {
            // Nothing to read, but a missing database is still `NotFound`.
            let url = self.http.url(&[db], &[]);
            self.http
                .send(Method::HEAD, &url, None, Idempotency::Safe)
                .await?
        } else {
            let url = self.http.url(&[db, "_bulk_get"], &[("revs", "true")]);
            self.http
                .send_json(
                    Method::POST,
                    &url,
                    &json!({ "docs": asked }),
                    Idempotency::Safe,
                )
                .await?
        };
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let mut found: HashMap<(String, Rev), RevisionedDoc> = HashMap::new();
        if !asked.is_empty() {
            let mut body = reply.json()?;
            let Some(Value::Array(entries)) = body.get_mut("results").map(Value::take) else {
                return Err(protocol("_bulk_get", &reply));
            };
            // Each entry holds the documents read for one requested id: `ok` (the revision
            // with `_revisions`), or `error`/`missing` when the server does not have it.
            for mut entry in entries {
                let Some(Value::Array(docs)) = entry.get_mut("docs").map(Value::take) else {
                    return Err(protocol("_bulk_get", &reply));
                };
                for mut doc in docs {
                    if let Some(ok) = doc.get_mut("ok").map(Value::take) {
                        let doc =
                            revisioned_from(ok).ok_or_else(|| protocol("_bulk_get", &reply))?;
                        found.insert((doc.id.clone(), doc.rev), doc);
                    }
                }
            }
        }
        Ok(results
            .iter_mut()
            .zip(wanted)
            .map(|(slot, (id, rev))| match slot.take() {
                Some(invalid) => invalid,
                None => found
                    .remove(&(id.clone(), *rev))
                    .ok_or_else(|| Error::doc_not_found(db, id, "missing")),
            })
            .collect())
    }
}

impl CouchDbProvider {
    /// The `_bulk_docs` (`new_edits: false`) of a revision-preserving write, outcomes judged
    /// on the given winners (one per document, in order).
    async fn send_revisions(
        &self,
        db: &str,
        docs: &[RevisionedDoc],
        current: Vec<Option<Leaf>>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        let mut winners: HashMap<&str, Leaf> = HashMap::new();
        let mut results = Vec::with_capacity(docs.len());
        let mut to_send: Vec<(usize, &RevisionedDoc)> = Vec::new();
        for (slot, (doc, cur)) in docs.iter().zip(current).enumerate() {
            let cur = winners.get(doc.id.as_str()).copied().or(cur);
            // Judged on what CouchDB will link: a gap in the history makes a branch.
            let outcome = revision_outcome(db, doc, cur);
            match outcome {
                Ok(RevisionOutcome::Written) => {
                    winners.insert(
                        &doc.id,
                        Leaf {
                            rev: doc.rev,
                            deleted: doc.deleted,
                        },
                    );
                    to_send.push((slot, doc));
                }
                // CouchDB keeps a losing revision as a conflict branch.
                Ok(RevisionOutcome::Lost) => to_send.push((slot, doc)),
                _ => {}
            }
            results.push(outcome);
        }
        if to_send.is_empty() {
            return Ok(results);
        }
        let mut body = b"{\"new_edits\":false,\"docs\":[".to_vec();
        for (n, (_, doc)) in to_send.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            let mut map = Map::new();
            if doc.deleted {
                map.insert("_deleted".into(), Value::Bool(true));
            }
            if let Some(revisions) = revisions_field(doc) {
                map.insert("_revisions".into(), revisions);
            }
            if !doc.deleted {
                map.extend(doc.body.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let json = doc_json(Some(&doc.id), Some(&doc.rev), &map)?;
            body.extend_from_slice(&json);
        }
        body.extend_from_slice(b"]}");
        let url = self.http.url(&[db, "_bulk_docs"], &[]);
        let reply = self.write(db, Method::POST, &url, body).await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        // With new_edits false CouchDB lists only the documents it refused.
        let rows = reply.json()?;
        let rows = rows
            .as_array()
            .ok_or_else(|| protocol("_bulk_docs with new_edits false", &reply))?;
        for row in rows {
            let Some(error) = row["error"].as_str() else {
                continue;
            };
            let id = row["id"].as_str().unwrap_or("");
            let reason = row["reason"].as_str().unwrap_or("");
            for (slot, doc) in &to_send {
                if doc.id == id {
                    results[*slot] = Err(Error::invalid_document(
                        db,
                        Some(id),
                        format!("{error}: {reason}"),
                    ));
                }
            }
        }
        for (slot, doc) in &to_send {
            if matches!(results[*slot], Ok(RevisionOutcome::Written)) {
                if doc.deleted {
                    self.revs.forget(db, &doc.id);
                } else {
                    self.revs.put(db, &doc.id, doc.rev);
                }
            }
        }
        Ok(results)
    }
}

/// A document `_bulk_get?revs=true` returned, as replication carries it: `_revisions` become
/// the history, `_deleted` the flag, other `_` fields (attachments, conflicts) are dropped.
fn revisioned_from(value: Value) -> Option<RevisionedDoc> {
    let Value::Object(mut map) = value else {
        return None;
    };
    let id = match map.shift_remove("_id") {
        Some(Value::String(id)) => id,
        _ => return None,
    };
    let rev = rev_of(&map.shift_remove("_rev")?)?;
    let deleted = map.shift_remove("_deleted") == Some(Value::Bool(true));
    let history = match map.shift_remove("_revisions") {
        Some(revisions) if revisions["start"].as_u64() == Some(rev.generation()) => {
            revisions["ids"]
                .as_array()?
                .iter()
                .skip(1)
                .zip(1..)
                .map(|(hash, back)| {
                    let generation = rev.generation().checked_sub(back)?;
                    Rev::parse(&format!("{generation}-{}", hash.as_str()?)).ok()
                })
                .collect::<Option<Vec<Rev>>>()?
        }
        _ => Vec::new(),
    };
    map.retain(|k, _| !k.starts_with('_'));
    if deleted {
        map.clear();
    }
    Some(RevisionedDoc {
        id,
        rev,
        deleted,
        body: map,
        history,
    })
}

/// CouchDB's `_revisions` for a revision and its known ancestors (newest first): the
/// consecutive run of generations the history gives, so CouchDB links the revision to them.
fn revisions_field(doc: &RevisionedDoc) -> Option<Value> {
    let linked = doc.linked_history();
    if linked.is_empty() {
        return None;
    }
    let ids: Vec<Value> = std::iter::once(&doc.rev)
        .chain(linked)
        .map(|r| Value::String(hex_hash(r)))
        .collect();
    Some(json!({"start": doc.rev.generation(), "ids": ids}))
}

fn hex_hash(rev: &Rev) -> String {
    let text = rev.to_string();
    text.split_once('-')
        .map_or(text.clone(), |(_, h)| h.to_owned())
}

/// A sequence token as text: CouchDB 3 sends strings, some servers numbers.
fn seq_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_json_puts_id_and_rev_first_without_copying_the_body_order() {
        let body: Map<String, Value> = serde_json::from_str(r#"{"z":1,"a":[2]}"#).unwrap();
        let rev = Rev::parse("1-0785e9eb543380151003dc452c3a001a").unwrap();
        let text = String::from_utf8(doc_json(Some("a\"b"), Some(&rev), &body).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"_id":"a\"b","_rev":"1-0785e9eb543380151003dc452c3a001a","z":1,"a":[2]}"#
        );
        let empty = Map::new();
        assert_eq!(
            doc_json(Some("x"), None, &empty).unwrap(),
            br#"{"_id":"x"}"#
        );
        assert_eq!(doc_json(None, None, &empty).unwrap(), b"{}");
    }
}
