//! The `DatabaseService` trait every provider implements, and `DatabaseServiceExt`, the
//! typed and retrying helpers apps use on top of it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    ChangesPage, DatabaseInfo, Document, Error, FindQuery, IndexStatus, Page, Result, Rev,
    RevisionOutcome, RevisionedDoc, RevsDiff, WriteResult,
};

/// Page size the default [`DatabaseService::list_all`] and [`DatabaseService::list_stream`] use.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// One async document-database API with CouchDB 3 semantics, whatever the provider.
///
/// # Contract
///
/// Every provider (memory, embedded, CouchDB) behaves as CouchDB 3 does; the conformance suite
/// (`docstore_providers::conformance`, feature `conformance`) checks each rule on each of them.
///
/// **Names.** Database names match `^[a-z][a-z0-9_$()+/-]*$` and have at most 238 characters,
/// else [`Error::InvalidDatabaseName`]. Document ids are non-empty UTF-8 not starting with `_`,
/// else [`Error::InvalidDocumentId`]; any other character (`/ ? # % +`, spaces, unicode) is
/// allowed and round-trips.
///
/// **Bodies.** A document is a JSON object. Top-level fields starting with `_` other than
/// `_id` and `_rev` are rejected, and so is an `_id` that differs from the id argument
/// ([`Error::InvalidDocument`]). Documents keep their key order; numbers round-trip exactly
/// (integers of any size, floats).
///
/// **Revisions.** Every write (delete included) produces a revision `N-<32 hex>`; `N` starts at
/// 1 and grows by one per write, and a document re-created after a delete continues the count.
/// Providers that compute revisions themselves produce the very ids CouchDB would for the same
/// history. Reads return the body with `_id` and `_rev` set, `_id` and `_rev` first.
///
/// **Writes.** [`save`](Self::save) without `_rev` is an upsert: the provider writes on top of
/// the current revision itself and retries internally under contention (only when bounded
/// retries run out does it return [`Error::Conflict`]). With `_rev` it is optimistic
/// concurrency: it succeeds only if `_rev` is the current revision of a live document, else
/// `Conflict`; for an id the database never had, see
/// [`Capabilities::conflict_on_rev_for_new_document`]. Writes create the database lazily. [`delete`](Self::delete) tombstones a live
/// document (a new revision) and is `NotFound` if there is none.
///
/// **Reads.** A missing document, a deleted one, or a missing database is
/// [`Error::NotFound`]. Reads never create databases. Listings return live documents in id
/// order (raw UTF-8 byte order); a missing database lists as empty. `_design/` and `_local/`
/// documents never appear in listings or changes. [`list_databases`](Self::list_databases)
/// lists user databases only, sorted.
///
/// **Bulk.** `save_many`, `get_many` and `delete_many` return one result per input, in input
/// order; a bad document fails alone, not the batch. The outer `Result` fails only for what
/// concerns the whole call (an invalid database name, an unreachable server).
///
/// **Changes.** [`changes`](Self::changes) gives each changed document once, at its latest
/// change, deletions included, from an opaque `since` token that resumes without loss; the
/// order is the commit order where [`Capabilities::changes_in_commit_order`] says so.
///
/// **Queries.** [`find`](Self::find) answers CouchDB Mango queries with CouchDB's results in
/// CouchDB's order on every provider (see [`FindQuery`] and the `query` module doc): the same
/// index choice, so a `sort` no index covers is [`Error::InvalidQuery`] everywhere, and a JSON
/// index holds only documents with all its fields. Without a `limit`, every match is returned.
/// Design documents never match.
///
/// **Local documents.** [`put_local`](Self::put_local) / [`get_local`](Self::get_local) store
/// per-database documents (CouchDB's `_local/`) that never list, query or replicate.
#[async_trait]
pub trait DatabaseService: Send + Sync + fmt::Debug + 'static {
    /// The provider's name: `memory`, `embedded` or `couchdb`.
    fn provider_name(&self) -> &'static str;

    /// What this provider promises beyond the common contract.
    fn capabilities(&self) -> Capabilities;

    /// User databases, sorted; system databases (`_users`, `_replicator`, ...) are excluded.
    async fn list_databases(&self) -> Result<Vec<String>>;

    /// Counts and update sequence of a database; `NotFound` if it does not exist.
    async fn database_info(&self, db: &str) -> Result<DatabaseInfo>;

    /// Deletes a database and everything in it; `NotFound` if it does not exist.
    async fn delete_database(&self, db: &str) -> Result<()>;

    /// The current revision of a live document, with `_id` and `_rev` set.
    async fn get(&self, db: &str, id: &str) -> Result<Document>;

    /// Writes a document: upsert without `_rev`, optimistic concurrency with it.
    async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult>;

    /// Deletes the current revision of a live document (tombstone with a new revision).
    async fn delete(&self, db: &str, id: &str) -> Result<WriteResult>;

    /// Deletes a document only if `rev` is its current revision, else `Conflict`.
    async fn delete_rev(&self, db: &str, id: &str, rev: &Rev) -> Result<WriteResult>;

    /// Up to `limit` live documents with ids greater than `after`, in id order.
    ///
    /// `limit` must be at least 1. The page's `next` is the cursor for the following page, or
    /// `None` when there is no more.
    async fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page>;

    /// Every live document, in id order. Holds the whole database in memory: prefer
    /// [`list_stream`](Self::list_stream) or [`list_page`](Self::list_page) for large ones.
    async fn list_all(&self, db: &str) -> Result<Vec<Document>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_page(db, after.as_deref(), DEFAULT_PAGE_SIZE)
                .await?;
            out.extend(page.docs);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Every live document in id order, fetched `page_size` at a time, so memory stays
    /// bounded by one page whatever the database size.
    fn list_stream<'a>(&'a self, db: &'a str, page_size: usize) -> BoxStream<'a, Result<Document>> {
        // State: (cursor, finished).
        stream::try_unfold((None::<String>, false), move |(after, done)| async move {
            if done {
                return Ok::<_, Error>(None);
            }
            let page = self.list_page(db, after.as_deref(), page_size).await?;
            let done = page.next.is_none();
            Ok(Some((
                stream::iter(page.docs.into_iter().map(Ok)),
                (page.next, done),
            )))
        })
        .try_flatten()
        .boxed()
    }

    /// Reads several documents; one result per id, in input order.
    async fn get_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<Document>>>;

    /// Saves several documents (each must carry its `_id`), each with [`save`](Self::save)'s
    /// rules; one result per document, in input order.
    async fn save_many(&self, db: &str, docs: Vec<Document>) -> Result<Vec<Result<WriteResult>>>;

    /// Deletes several documents, each with [`delete`](Self::delete)'s rules; one result per
    /// id, in input order.
    async fn delete_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<WriteResult>>>;

    /// Up to `limit` changes after the opaque token `since` (`None`: from the start), one per
    /// document at its latest change, in sequence order, deletions included.
    /// `NotFound` if the database does not exist.
    async fn changes(&self, db: &str, since: Option<&str>, limit: usize) -> Result<ChangesPage>;

    /// A `_local` document's body (without `_id`/`_rev`); `NotFound` if absent.
    async fn get_local(&self, db: &str, id: &str) -> Result<Document>;

    /// Stores a `_local` document's body, replacing any previous one. Creates the database
    /// lazily. `id` is the part after `_local/`.
    async fn put_local(&self, db: &str, id: &str, doc: Document) -> Result<()>;

    /// The live documents matching `query`, in CouchDB's order (the chosen index's order:
    /// `_all_docs` is id order; a JSON index orders by its fields, then id), after `skip`,
    /// up to `limit` (all if none), projected to `fields`. `NotFound` if the database does
    /// not exist; `InvalidQuery` if no index covers the sort.
    async fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>>;

    /// Creates the JSON index `name` over `fields` (in order) unless an index of that name
    /// with those fields exists; an index of that name with other fields is replaced.
    /// Creates the database lazily. Indexes serve `find` (see [`FindQuery::sort`]).
    async fn ensure_index(&self, db: &str, fields: &[&str], name: &str) -> Result<IndexStatus>;

    /// Stores documents at the revisions they carry, as replication does (CouchDB's
    /// `_bulk_docs` with `new_edits: false`): a revision the database already has as its
    /// winner is [`RevisionOutcome::Present`] and writes nothing; otherwise the winner is
    /// chosen by CouchDB's rule (live before deleted, then higher generation, then greater
    /// hash) and the outcome says whether the new revision won. One result per document, in
    /// input order; creates the database lazily when something is written.
    async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>>;

    /// [`put_revisions`](Self::put_revisions) for a caller that has just read the winners
    /// with [`current_revisions`](Self::current_revisions) (`current`: one per document, in
    /// order), so a provider that would look them up again (CouchDB: one request) judges the
    /// outcomes on these instead. A write that raced in between is still merged by the
    /// revision rules (nothing is lost); only the outcome reported for it may be stale.
    /// `current` of the wrong length is `InvalidDocument`.
    async fn put_revisions_over(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
        current: Vec<Option<(Rev, bool)>>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        crate::write::check_current_len(db, &docs, &current)?;
        self.put_revisions(db, docs).await
    }

    /// The winning revision of each id and whether it is a deletion (`None`: the database
    /// never had the document), in input order; a missing database has none. Invalid ids
    /// are `InvalidDocumentId` for the whole call.
    async fn current_revisions(&self, db: &str, ids: &[String])
    -> Result<Vec<Option<(Rev, bool)>>>;

    /// CouchDB's `_revs_diff`: for each `(id, revisions)`, in input order, the revisions the
    /// database does not hold (as a leaf or an ancestor), and the document's leaves of a lower
    /// generation than a missing one, as possible ancestors. A missing database holds
    /// nothing. Invalid ids are `InvalidDocumentId` for the whole call. One request on
    /// CouchDB, whatever the number of documents: what replication uses to skip what the
    /// target has.
    async fn revs_diff(&self, db: &str, asked: &[(String, Vec<Rev>)]) -> Result<Vec<RevsDiff>>;

    /// Each document at exactly the given revision, as replication reads it: deleted or not,
    /// with its body (empty for a tombstone) and its known ancestors newest first (up to
    /// CouchDB's `revs_limit` of 1,000 revisions with the leaf), in input order. A revision
    /// the database does not hold is `NotFound` for that document; memory and embedded hold
    /// only winners, so a superseded revision is `NotFound` there. A missing database is
    /// `NotFound` for the whole call.
    async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>>;
}

/// What a provider promises where CouchDB itself promises less: memory and embedded keep the
/// stricter behaviour a single process can give; a (sharded) CouchDB server gives what it
/// gives, and the CouchDB provider passes it on rather than pretending. The conformance suite
/// holds each provider to what it declares here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`DatabaseService::changes`] lists changes in the order they were committed. A CouchDB
    /// database has several shards (q=2 by default) whose feeds interleave: each document
    /// still appears once, at its latest change, and a token resumes without loss, but the
    /// order is not the order of the writes.
    pub changes_in_commit_order: bool,
    /// A save carrying a `_rev` for an id the database never had is always `Conflict`.
    /// CouchDB answers 409 on a freshly opened shard, but once the shard has served a write
    /// it accepts it as a new document one generation above the `_rev` given (its
    /// `before_docs_update` skips the check when no `validate_doc_update` is cached).
    pub conflict_on_rev_for_new_document: bool,
}

impl Capabilities {
    /// Everything in commit order and strict: the memory and embedded providers.
    pub const STRICT: Self = Self {
        changes_in_commit_order: true,
        conflict_on_rev_for_new_document: true,
    };

    /// What a CouchDB 3 server gives (see the fields).
    pub const COUCHDB: Self = Self {
        changes_in_commit_order: false,
        conflict_on_rev_for_new_document: false,
    };
}

/// How [`DatabaseServiceExt::update`] retries on conflict.
const UPDATE_ATTEMPTS: u32 = 64;
const BACKOFF_BASE: Duration = Duration::from_millis(1);
const BACKOFF_CAP: Duration = Duration::from_millis(100);

/// A random pause before retry `attempt` (0-based): full jitter over an exponentially growing,
/// capped window, so contending writers spread out.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let window = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let micros = window.as_micros() as u64;
    Duration::from_micros(fastrand::u64(0..=micros))
}

/// Typed access and safe read-modify-write on top of any [`DatabaseService`].
#[async_trait]
pub trait DatabaseServiceExt: DatabaseService {
    /// Reads a document and deserializes it (the `_id`/`_rev` fields are visible to `T`).
    async fn get_as<T: DeserializeOwned>(&self, db: &str, id: &str) -> Result<T> {
        let doc = self.get(db, id).await?;
        serde_json::from_value(doc.into_value()).map_err(|e| {
            Error::invalid_document(db, Some(id), format!("does not deserialize: {e}"))
        })
    }

    /// Serializes a value (it must serialize to a JSON object) and saves it.
    async fn save_as<T: Serialize + Sync>(
        &self,
        db: &str,
        id: &str,
        value: &T,
    ) -> Result<WriteResult> {
        let json = serde_json::to_value(value).map_err(|e| {
            Error::invalid_document(db, Some(id), format!("does not serialize: {e}"))
        })?;
        let doc = Document::from_value(json)
            .map_err(|_| Error::invalid_document(db, Some(id), "must serialize to an object"))?;
        self.save(db, id, doc).await
    }

    /// Read-modify-write of an existing document: reads it, lets `change` edit it, and saves
    /// it at the revision read. On `Conflict` it reads again and re-applies `change`, with
    /// jittered backoff, up to 64 times; so no concurrent update is lost. `change` may return
    /// an error to abort. `NotFound` if the document does not exist.
    async fn update<F>(&self, db: &str, id: &str, mut change: F) -> Result<WriteResult>
    where
        F: FnMut(&mut Document) -> Result<()> + Send,
    {
        let mut attempt = 0;
        loop {
            let mut doc = self.get(db, id).await?;
            change(&mut doc)?;
            match self.save(db, id, doc).await {
                Err(e) if e.is_conflict() && attempt + 1 < UPDATE_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl<S: DatabaseService + ?Sized> DatabaseServiceExt for S {}
