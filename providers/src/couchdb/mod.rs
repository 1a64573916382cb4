//! The CouchDB provider: the contract on a remote Apache CouchDB 3.x, in as few requests as
//! the HTTP API allows.
//!
//! Requests per operation (a test counts them):
//!
//! | operation                                   | requests |
//! |---------------------------------------------|----------|
//! | `save` of a new document                    | 1 (`PUT /db/id`) |
//! | `save` without `_rev` of a document this provider has seen (read, listed or written) | 2 (winner lookup, `PUT` on it) |
//! | `save` without `_rev` of an unseen existing document | 3 (`PUT` → 409, winner lookup, `PUT`) |
//! | `save` with `_rev`, `get`, `delete_rev`     | 1 |
//! | `delete`                                    | 2 (winner lookup, `DELETE`) |
//! | a listing page, `get_many`, `save_many` (new documents), a changes page | 1 |
//! | `save_many` without `_rev` of seen documents | 2 (one winner lookup, `_bulk_docs`) |
//! | `delete_many`                               | 2 (revision lookup, `_bulk_docs`) |
//! | `find` (per 1,000 matches)                  | 1 |
//! | `ensure_index`                              | 2 (`_index`, then `GET _index` until CouchDB lists it; more while its index cache lags) |
//! | `current_revisions`                         | 1 (`POST _all_docs` with `keys`) |
//! | `revs_diff`                                 | 1 (`POST _revs_diff`) |
//! | `put_revisions`                             | 2 (`_revs_diff`, `_bulk_docs` with `new_edits: false`); 1 when all are present; + 1 winner lookup when a revision may lose to a leaf it does not extend |
//! | `write_revisions`, `read_revisions`         | 1 (`_bulk_docs` with `new_edits: false` / `POST _bulk_get?revs=true`) |
//! | `get_with`, `open_revs`, `create`, `revs_limit`, `set_revs_limit` | 1 |
//! | `put_attachment`, `delete_attachment`       | 1 (`PUT` / `DELETE /db/id/name`) |
//! | `get_attachment`, `get_attachment_stream`   | 2 (the stub, then that revision's bytes) |
//! | `put_attachment_stream`                     | 2 (`PUT /db`, which a stream cannot do without, then the streamed `PUT`) |
//! | `compact`                                   | 1 + polls of `GET /db` until compaction ends |
//! | `get_local`; `put_local` of a `_local` document seen before or new | 1 |
//! | `database_info`                             | 2 (`GET /db`, design documents to leave out of `doc_count`) |
//! | the first write to a missing database       | + 2 (`PUT /db`, then the write again) |
//! | `connect`                                   | 2 (`GET /_session`, `GET /_membership`) |
//! | on a cluster (`quorum.rs`): the first write to a database from this provider | + 1 (`GET /db`, its `n`) |
//! | on a cluster: a write answered `202 Accepted` | + 1 per batch (`POST _bulk_get`), + 1 `DELETE` per write that lost a race |
//!
//! A write without `_rev` goes on the winner, looked up just before: a single `save` with
//! `HEAD /db/id` (its `ETag` is the winning revision; a deleted document answers 404, and a
//! rev-less `PUT` recreates it), the bulk writes and `delete` with `POST _all_docs` with
//! `keys` (one request for many ids, live and deleted alike), and is written
//! again, with jittered retries, when another writer got in between. The single rev-less
//! writes (`save` without `_rev`, `delete`, `put_local`) of one document from this
//! provider's own tasks take turns, first come first served, so they do not race each
//! other. "Seen" documents live in a bounded cache of (database, id) → last revision this
//! provider read or wrote, used only to know a document exists (so the lookup comes first
//! instead of after a refused `PUT`): never as the revision to write on. CouchDB accepts an
//! edit of any leaf, so a remembered revision that another writer or a replication turned
//! into a losing branch would take the write there, away from the winner.
//!
//! Listings use `_all_docs` (raw id order) and drop `_design/` documents; `_local/` documents
//! never appear there. `find` is one `POST /db/_find` per page of up to 1,000 documents,
//! following CouchDB's `bookmark` until the query's limit or the last match (a server that
//! sends no bookmark is paged by `skip` instead). `ensure_index` is one `POST /db/_index`
//! with the index name as its design document (`_design/<name>`); `database_info` counts
//! design documents out of `doc_count` (one `_all_docs` range request), so the count is the
//! same as on the other providers. The credentials are sent as HTTP basic auth on every
//! request and never appear in errors or `Debug` output.

mod attachments;
mod bulk;
mod changes;
mod databases;
mod documents;
mod http;
mod queries;
mod quorum;
mod reply;
mod revisions;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Map, Value};

use self::http::{Http, Idempotency, Reply};
use crate::attachment;
use crate::turns::Turns;
use crate::watch::{ChangeStream, WatchOptions};
use crate::write::Leaf;
use crate::{
    Attachment, AttachmentRead, AttachmentStream, AttachmentUpload, ChangesPage, DatabaseInfo,
    DatabaseService, Document, Error, FindQuery, GetOptions, IndexStatus, NewAttachment, OpenRev,
    OpenRevs, Page, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff, Secret, WriteResult,
    redact_url,
};

/// Typed configuration of the CouchDB provider.
#[derive(Clone)]
pub struct CouchDbConfig {
    /// Base URL, e.g. `http://127.0.0.1:5984`; may carry `user:password@`. A cluster's
    /// nodes may be given together, separated by commas: requests are spread over them
    /// round-robin, and a request that failed to connect, or a safe one that met a 5xx or a
    /// timeout, is retried on the next node.
    pub url: String,
    /// User for basic auth (overrides one in the URL).
    pub user: Option<String>,
    /// Password for basic auth (overrides one in the URL).
    pub password: Option<Secret>,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout; for streamed attachment transfers, the longest wait between
    /// two reads.
    pub request_timeout: Duration,
    /// Retries after a connection error, a timeout or a 5xx (see the retry rule).
    pub max_retries: u32,
    /// Idle keep-alive connections kept in the pool.
    pub max_idle_connections: usize,
    /// PEM file of the certificate authorities an `https` server's certificate must chain
    /// to (a private CA), instead of the platform's roots. `None`: the platform's roots.
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
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
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The CouchDB provider.
pub struct CouchDbProvider {
    http: Arc<Http>,
    revs: RevCache<Rev>,
    /// `_local` documents' revisions ("0-N"), so a rewrite (a migration checkpoint) is one
    /// `PUT`, not a refused `PUT`, a `GET` and another `PUT`.
    local_revs: RevCache<String>,
    /// Copies per database on a cluster (see `quorum.rs`).
    copies: quorum::Copies,
    /// (database, id; `_local/` ids with their prefix) → the turn of a rev-less write from
    /// this provider (`upsert`, `delete`, `put_local`): they look the winner up and write
    /// on it, so two of this provider's tasks racing on one document would conflict and
    /// back off; they queue instead, first come first served. Writers elsewhere still meet
    /// the conflict retry.
    rev_less: Turns<(String, String)>,
}

impl fmt::Debug for CouchDbProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouchDbProvider")
            .field("url", &self.http.nodes())
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
        && !keys.any(|k| k.starts_with('_') && k != attachment::ATTACHMENTS)
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
    map.retain(|k, _| !k.starts_with('_') || k == "_deleted" || k == attachment::ATTACHMENTS);
    map.shift_remove("_deleted");
    Some((Document::assemble(&id, &rev, map), rev))
}

impl CouchDbProvider {
    /// Connects to the server and checks it and the credentials once: an unreachable server is
    /// `Unavailable`, wrong credentials `Unauthorized`, each saying what to check.
    pub async fn connect(config: CouchDbConfig) -> Result<Self> {
        let provider = Self {
            http: Arc::new(Http::new(&config)?),
            revs: RevCache::default(),
            local_revs: RevCache::default(),
            copies: quorum::Copies::default(),
            rev_less: Turns::new(),
        };
        provider.check_server().await?;
        provider.learn_layout().await;
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
}

// Each method is written in the file of its concern: `databases.rs`, `documents.rs`
// (single documents and `_local`), `bulk.rs`, `changes.rs` (listing pages and `_changes`),
// `queries.rs` and `revisions.rs`.
#[async_trait]
impl DatabaseService for CouchDbProvider {
    fn provider_name(&self) -> &'static str {
        "couchdb"
    }

    fn location(&self) -> String {
        // The base URL carries no user-info.
        format!("couchdb:{}", self.http.nodes())
    }

    fn capabilities(&self) -> crate::Capabilities {
        crate::Capabilities::COUCHDB
    }

    async fn list_databases(&self) -> Result<Vec<String>> {
        self.list_databases().await
    }

    async fn database_info(&self, db: &str) -> Result<DatabaseInfo> {
        self.database_info(db).await
    }

    async fn delete_database(&self, db: &str) -> Result<()> {
        self.delete_database(db).await
    }

    async fn revs_limit(&self, db: &str) -> Result<u64> {
        self.revs_limit(db).await
    }

    async fn set_revs_limit(&self, db: &str, limit: u64) -> Result<()> {
        self.set_revs_limit(db, limit).await
    }

    async fn compact(&self, db: &str) -> Result<()> {
        self.compact(db).await
    }

    async fn get(&self, db: &str, id: &str) -> Result<Document> {
        self.get(db, id).await
    }

    async fn get_with(&self, db: &str, id: &str, options: &GetOptions) -> Result<Document> {
        self.get_with(db, id, options).await
    }

    async fn put_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        attachment: NewAttachment,
    ) -> Result<WriteResult> {
        self.put_attachment(db, id, name, rev, attachment).await
    }

    async fn get_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<Attachment> {
        self.get_attachment(db, id, name, options).await
    }

    async fn put_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        upload: AttachmentUpload,
    ) -> Result<WriteResult> {
        self.put_attachment_stream(db, id, name, rev, upload).await
    }

    async fn get_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<AttachmentStream> {
        self.get_attachment_stream(db, id, name, options).await
    }

    async fn delete_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: &Rev,
    ) -> Result<WriteResult> {
        self.delete_attachment(db, id, name, rev).await
    }

    async fn open_revs(
        &self,
        db: &str,
        id: &str,
        which: &OpenRevs,
        revs: bool,
    ) -> Result<Vec<OpenRev>> {
        self.open_revs(db, id, which, revs).await
    }

    async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        self.save(db, id, doc).await
    }

    async fn create(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        self.create(db, id, doc).await
    }

    async fn delete(&self, db: &str, id: &str) -> Result<WriteResult> {
        self.delete(db, id).await
    }

    async fn delete_rev(&self, db: &str, id: &str, rev: &Rev) -> Result<WriteResult> {
        self.delete_rev(db, id, rev).await
    }

    async fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        self.list_page(db, after, limit).await
    }

    async fn get_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<Document>>> {
        self.get_many(db, ids).await
    }

    async fn save_many(&self, db: &str, docs: Vec<Document>) -> Result<Vec<Result<WriteResult>>> {
        self.save_many(db, docs).await
    }

    async fn delete_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<WriteResult>>> {
        self.delete_many(db, ids).await
    }

    async fn changes(&self, db: &str, since: Option<&str>, limit: usize) -> Result<ChangesPage> {
        self.changes(db, since, limit).await
    }

    async fn watch(&self, db: &str, options: WatchOptions) -> Result<ChangeStream> {
        self.watch(db, options).await
    }

    async fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        self.get_local(db, id).await
    }

    async fn put_local(&self, db: &str, id: &str, doc: Document) -> Result<()> {
        self.put_local(db, id, doc).await
    }

    async fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>> {
        self.find(db, query).await
    }

    async fn ensure_index(&self, db: &str, fields: &[&str], name: &str) -> Result<IndexStatus> {
        self.ensure_index(db, fields, name).await
    }

    async fn current_revisions(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Option<(Rev, bool)>>> {
        self.current_revisions(db, ids).await
    }

    async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        self.put_revisions(db, docs).await
    }

    async fn write_revisions(&self, db: &str, docs: Vec<RevisionedDoc>) -> Result<Vec<Result<()>>> {
        self.write_revisions(db, docs).await
    }

    async fn revs_diff(&self, db: &str, asked: &[(String, Vec<Rev>)]) -> Result<Vec<RevsDiff>> {
        self.revs_diff(db, asked).await
    }

    async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        self.read_revisions(db, wanted).await
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
