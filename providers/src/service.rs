//! The `DatabaseService` trait every provider implements, and `DatabaseServiceExt`, the
//! typed and retrying helpers apps use on top of it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::turns::{Turn, Turns};
use crate::watch::{ChangeStream, WatchOptions};
use crate::{
    Attachment, AttachmentRead, AttachmentStream, AttachmentUpload, ChangesPage, DatabaseInfo,
    Document, Error, FindQuery, GetOptions, IndexStatus, NewAttachment, OpenRev, OpenRevs, Page,
    Resolution, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff, WriteResult,
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
/// **Revision trees.** A document is CouchDB's tree of revisions: replication
/// ([`put_revisions`](Self::put_revisions)) may add branches, and every leaf is kept, live or
/// deleted, each path stemmed to the database's [`revs_limit`](Self::revs_limit). The winner
/// is the highest leaf by (live before deleted, generation, revision id); [`get`](Self::get)
/// reads it, [`get_with`](Self::get_with) adds `_conflicts` and the rest, and
/// [`open_revs`](Self::open_revs) reads any leaf. An edit with `_rev` may extend any leaf,
/// live or deleted, while the winner is live; once every leaf is deleted only a write without
/// `_rev` re-creates the document, as a child of the winning tombstone. Ancestors keep their
/// bodies until [`compact`](Self::compact).
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
/// **Attachments.** A body may carry `_attachments` as CouchDB takes it: entries with base64
/// `data` (and a `content_type`, `application/octet-stream` when absent), and stubs
/// (`{"stub": true}`) that keep an attachment of the revision edited; omitting an
/// attachment drops it. Reads return stubs (`content_type`, `revpos`, `digest`, `length`,
/// `stub`), with `encoding`/`encoded_length` or the data inline when
/// [`GetOptions`] asks. Providers that compute revisions themselves store, digest and hash
/// attachments exactly as CouchDB does, so revisions stay identical. A stub naming nothing
/// the edited revision holds is [`Error::MissingStub`]; bad names or data are
/// [`Error::InvalidAttachment`].
///
/// **Live changes.** [`watch`](Self::watch) streams changes as they are committed, from
/// any point of the feed, filtered by a Mango selector; see its doc for what survives a
/// dropped connection.
///
/// **Local documents.** [`put_local`](Self::put_local) / [`get_local`](Self::get_local) store
/// per-database documents (CouchDB's `_local/`) that never list, query or replicate.
#[async_trait]
pub trait DatabaseService: Send + Sync + fmt::Debug + 'static {
    /// The provider's name: `memory`, `embedded` or `couchdb`.
    fn provider_name(&self) -> &'static str;

    /// What this provider promises beyond the common contract.
    fn capabilities(&self) -> Capabilities;

    /// Where the data lives, stable across restarts and free of secrets: `embedded:<path>`,
    /// `couchdb:<url>`, or `memory:<instance>` (a memory store lives as long as its value).
    /// Replication derives its id (and so its checkpoints) from both sides' locations.
    fn location(&self) -> String;

    /// User databases, sorted; system databases (`_users`, `_replicator`, ...) are excluded.
    async fn list_databases(&self) -> Result<Vec<String>>;

    /// Counts and update sequence of a database; `NotFound` if it does not exist.
    async fn database_info(&self, db: &str) -> Result<DatabaseInfo>;

    /// Deletes a database and everything in it; `NotFound` if it does not exist.
    async fn delete_database(&self, db: &str) -> Result<()>;

    /// How many revisions each path of a document keeps (CouchDB's `_revs_limit`, 1,000 by
    /// default); `NotFound` if the database does not exist.
    async fn revs_limit(&self, db: &str) -> Result<u64>;

    /// Sets [`revs_limit`](Self::revs_limit) (at least 1); later writes stem to it. Creates
    /// the database lazily, like any write.
    async fn set_revs_limit(&self, db: &str, limit: u64) -> Result<()>;

    /// Compacts a database: the bodies of revisions that are not leaves are dropped (their
    /// `_revs_info` becomes `missing`), as CouchDB's compaction does; returns once done (on
    /// CouchDB, which compacts each shard in the background and reports only whether one is
    /// running, once the compaction has shown and settled, or after a few seconds in which
    /// nothing showed). `NotFound` if the database does not exist.
    async fn compact(&self, db: &str) -> Result<()>;

    /// The current revision of a live document, with `_id` and `_rev` set.
    async fn get(&self, db: &str, id: &str) -> Result<Document>;

    /// The document as CouchDB's `GET` with query parameters returns it: the winner (or the
    /// revision `options.rev`, a tombstone included), with `_conflicts`,
    /// `_deleted_conflicts`, `_revisions` and `_revs_info` as asked (after the body, in that
    /// order). `NotFound` when the winner is deleted and no revision is named, or the named
    /// revision's body is not held.
    async fn get_with(&self, db: &str, id: &str, options: &GetOptions) -> Result<Document>;

    /// CouchDB's `open_revs`: the revisions asked for (every leaf, or a list, or the leaves
    /// under a list), tombstones with `_deleted: true`, each with `_revisions` when `revs` is
    /// set: those found in ascending revision order, then those missing, ascending. A missing
    /// document is `NotFound`.
    async fn open_revs(
        &self,
        db: &str,
        id: &str,
        which: &OpenRevs,
        revs: bool,
    ) -> Result<Vec<OpenRev>>;

    /// Writes a document: upsert without `_rev`, optimistic concurrency with it. A body with
    /// `_deleted: true` writes a tombstone (keeping its other fields), as CouchDB does.
    async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult>;

    /// Creates a document (CouchDB's `PUT` without `_rev`): a new document, or a deleted one
    /// re-created on top of its winning tombstone; `Conflict` when the document is live. The
    /// body may not carry `_rev`.
    async fn create(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult>;

    /// Deletes the current revision of a live document (tombstone with a new revision).
    async fn delete(&self, db: &str, id: &str) -> Result<WriteResult>;

    /// Deletes the leaf `rev` (a tombstone on top of it): `rev` may be any leaf, live or
    /// deleted, while the document's winner is live (`Conflict` otherwise); `NotFound` when
    /// the document is deleted or missing.
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

    /// A live stream of the database's changes that does not end by itself: the changes
    /// after [`WatchOptions::since`] (one per document at its latest change, as
    /// [`changes`](Self::changes) gives them), then each commit as it happens, filtered by
    /// the options' Mango selector, with documents when asked.
    ///
    /// Up front, `NotFound` if the database does not exist, `InvalidQuery` for a bad selector
    /// or token. Memory and embedded wake the stream on each commit (no polling); a
    /// consumer that falls behind holds at most one page, never a queue of every write.
    /// CouchDB follows the continuous `_changes` feed with heartbeats; after a dropped
    /// connection or a server restart it reconnects from the last sequence it delivered,
    /// with backoff and a `warn` per attempt, for as long as the stream is held. Nothing is
    /// lost, but a change may be delivered again after a reconnect (a sharded server's
    /// sequence resumes per shard). The stream ends with an error when the database is
    /// deleted, or when the server refuses the credentials.
    async fn watch(&self, db: &str, options: WatchOptions) -> Result<ChangeStream>;

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
    /// `_bulk_docs` with `new_edits: false`): each revision and its linked history are merged
    /// into the document's tree, joining it where they meet and branching where they do not,
    /// then stemmed to `revs_limit`. A revision the database already holds (leaf or
    /// ancestor) is [`RevisionOutcome::Present`] and writes nothing; otherwise the outcome
    /// says whether it became the winner ([`RevisionOutcome::Written`]) or a losing leaf, a
    /// conflict ([`RevisionOutcome::Losing`]). One result per document, in input order;
    /// creates the database lazily when something is written.
    async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>>;

    /// CouchDB's `_bulk_docs` with `new_edits: false` as it is, for a caller that has already
    /// asked [`revs_diff`](Self::revs_diff) what the database lacks (replication): each
    /// revision is merged into its tree as [`put_revisions`](Self::put_revisions) does, and
    /// only refusals are reported (one result per document, in input order). One request on
    /// CouchDB; creates the database lazily. The default is `put_revisions` with its
    /// outcomes dropped, which is all a provider that merges in-process needs.
    async fn write_revisions(&self, db: &str, docs: Vec<RevisionedDoc>) -> Result<Vec<Result<()>>> {
        Ok(self
            .put_revisions(db, docs)
            .await?
            .into_iter()
            .map(|outcome| outcome.map(|_| ()))
            .collect())
    }

    /// The winning revision of each id and whether it is a deletion (`None`: the database
    /// never had the document), in input order; a missing database has none. Invalid ids
    /// are `InvalidDocumentId` for the whole call.
    async fn current_revisions(&self, db: &str, ids: &[String])
    -> Result<Vec<Option<(Rev, bool)>>>;

    /// CouchDB's `_revs_diff`: for each `(id, revisions)`, in input order, the revisions the
    /// database does not hold (as a leaf or an ancestor), and the document's leaves of a lower
    /// generation than a missing one (in leaf order, the winner first), as possible
    /// ancestors. The missing list is CouchDB's exactly: revisions of lower generations move
    /// ahead, and a held revision asked twice is reported missing once (ask each revision
    /// once). Give each id once; an id given in several entries gets, in each, the missing
    /// revisions of its own without repeats. A missing database holds nothing. Invalid ids
    /// are `InvalidDocumentId` for the whole call. One request on CouchDB, whatever the
    /// number of documents: what replication uses to skip what the target has.
    async fn revs_diff(&self, db: &str, asked: &[(String, Vec<Rev>)]) -> Result<Vec<RevsDiff>>;

    /// Each document at exactly the given revision, as replication reads it: deleted or not,
    /// with its body (a tombstone's fields) and its known ancestors newest first, in input
    /// order. A revision whose body the database does not hold (an unknown revision, or an
    /// ancestor after compaction) is `NotFound` for that document. A missing database is
    /// `NotFound` for the whole call.
    async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>>;

    /// Attaches `attachment` as `name` to the document `id` (CouchDB's standalone
    /// `PUT /db/doc/name`), making a new revision: on `rev`, which must be the current
    /// revision (`Conflict` otherwise), or without `rev` on a missing or deleted document,
    /// which is created with an empty body. The new attachment is listed first, the
    /// document's others follow. A name starting with `_`, or data that does not match the
    /// MD5 given, is [`Error::InvalidAttachment`].
    async fn put_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        attachment: NewAttachment,
    ) -> Result<WriteResult>;

    /// Reads the attachment `name` of the winner (or of `options.rev`): its stub and bytes,
    /// decoded unless `options.encoded`. `NotFound` when the document, the revision or the
    /// attachment is missing.
    async fn get_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<Attachment>;

    /// [`put_attachment`](Self::put_attachment) from a stream: the embedded and CouchDB
    /// providers store or send it piece by piece, so an attachment of any size goes through
    /// in bounded memory; the memory provider collects it (its bytes live in memory anyway).
    async fn put_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        upload: AttachmentUpload,
    ) -> Result<WriteResult> {
        let attachment = upload
            .collect()
            .await
            .map_err(|e| crate::attachment::stream::upload_failed(db, id, name, e))?;
        self.put_attachment(db, id, name, rev, attachment).await
    }

    /// [`get_attachment`](Self::get_attachment) as a stream of pieces, read as they are
    /// consumed (embedded, CouchDB); the memory provider hands out its bytes at once.
    async fn get_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<AttachmentStream> {
        let attachment = self.get_attachment(db, id, name, options).await?;
        Ok(AttachmentStream {
            info: attachment.info,
            encoding: attachment.encoding,
            body: stream::once(async move { Ok(attachment.data) }).boxed(),
        })
    }

    /// Removes the attachment `name` from revision `rev` (which must be current), making a
    /// new revision; `NotFound` when that revision has no such attachment.
    async fn delete_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: &Rev,
    ) -> Result<WriteResult>;
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

/// (the service's address, database, document id): whose turn it is to read-modify-write a
/// document through one service, so the tasks of one process queue there instead of
/// conflicting (see [`DatabaseServiceExt::update`]).
type EditKey = (usize, String, String);

static EDIT_TURNS: std::sync::LazyLock<Turns<EditKey>> = std::sync::LazyLock::new(Turns::new);

/// Waits for this task's turn to edit `id` of `db` through `service`.
async fn edit_turn<S: ?Sized>(service: &S, db: &str, id: &str) -> Turn<'static, EditKey> {
    let address = std::ptr::from_ref(service).cast::<()>() as usize;
    EDIT_TURNS
        .take((address, db.to_owned(), id.to_owned()))
        .await
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
    /// it at the revision read. So no concurrent update is lost:
    /// - tasks of this process updating the same document through this service take turns,
    ///   first come first served (`update` and `resolve_conflicts` alike), so they never
    ///   conflict with each other and none starves;
    /// - on `Conflict` (a writer elsewhere: another process, another service handle, a plain
    ///   `save`, a replication) it reads again and re-applies `change`, with jittered
    ///   backoff, up to 64 times, then returns the `Conflict`.
    ///
    /// `change` may return an error to abort. `NotFound` if the document does not exist.
    async fn update<F>(&self, db: &str, id: &str, mut change: F) -> Result<WriteResult>
    where
        F: FnMut(&mut Document) -> Result<()> + Send,
    {
        let _turn = edit_turn(self, db, id).await;
        let mut attempt = 0;
        loop {
            let mut doc = self.get(db, id).await?;
            change(&mut doc)?;
            match self.save(db, id, doc).await {
                Err(e) if e.is_conflict() && attempt + 1 < UPDATE_ATTEMPTS => {
                    tracing::debug!(db, id, attempt = attempt + 1, "update conflicted; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Every live leaf of a document, the winner first, then the other live leaves highest
    /// first (CouchDB's `_conflicts` order): what an application merges to resolve a
    /// conflict. One read (`open_revs=all` on CouchDB). `NotFound` when the document is
    /// missing or deleted.
    async fn live_leaves(&self, db: &str, id: &str) -> Result<Vec<Document>> {
        let mut leaves: Vec<(Rev, Document)> = self
            .open_revs(db, id, &OpenRevs::All, false)
            .await?
            .into_iter()
            .filter_map(|leaf| match leaf {
                OpenRev::Found(doc)
                    if doc.get("_deleted") != Some(&serde_json::Value::Bool(true)) =>
                {
                    let rev = doc.rev().and_then(|r| r.parse().ok())?;
                    Some((rev, doc))
                }
                _ => None,
            })
            .collect();
        if leaves.is_empty() {
            return Err(Error::doc_not_found(db, id, "deleted"));
        }
        leaves.sort_by_key(|leaf| std::cmp::Reverse(leaf.0));
        Ok(leaves.into_iter().map(|(_, doc)| doc).collect())
    }

    /// Resolves a document's conflicts the way CouchDB recommends: `merge` gets every live
    /// leaf ([`live_leaves`](Self::live_leaves): the winner first) and returns the merged
    /// document; the merge is written on the winner and every other live leaf is deleted,
    /// all in one batch (one `_bulk_docs` on CouchDB, one atomic commit on memory and
    /// embedded). A document without conflicts is left as it is (`merge` is not called). If a
    /// leaf changed meanwhile (another writer or a replication), the leaves are read again and
    /// `merge` called again, up to 64 times; tasks of this process take turns on the
    /// document with each other and with [`update`](Self::update). `merge` may return an
    /// error to abort; `NotFound` when the document is missing or deleted.
    async fn resolve_conflicts<F>(&self, db: &str, id: &str, mut merge: F) -> Result<Resolution>
    where
        F: FnMut(&[Document]) -> Result<Document> + Send,
    {
        let _turn = edit_turn(self, db, id).await;
        let mut attempt = 0;
        let mut removed: Vec<Rev> = Vec::new();
        loop {
            let leaves = self.live_leaves(db, id).await?;
            let revs: Vec<Rev> = leaves
                .iter()
                .map(|d| {
                    d.rev()
                        .and_then(|r| r.parse().ok())
                        .ok_or_else(|| Error::storage("a leaf read without its _rev"))
                })
                .collect::<Result<_>>()?;
            let winner = revs[0];
            if leaves.len() == 1 {
                return Ok(Resolution {
                    rev: winner,
                    removed,
                });
            }
            let mut merged = merge(&leaves)?;
            merged.insert("_id", id);
            merged.set_rev(&winner);
            let mut batch = vec![merged];
            for loser in &revs[1..] {
                let mut tombstone = Document::new();
                tombstone.insert("_id", id);
                tombstone.set_rev(loser);
                tombstone.insert("_deleted", true);
                batch.push(tombstone);
            }
            let results = self.save_many(db, batch).await?;
            let mut written = None;
            let mut retry = false;
            for (n, result) in results.into_iter().enumerate() {
                match result {
                    Ok(w) if n == 0 => written = Some(w.rev),
                    Ok(_) => removed.push(revs[n]),
                    Err(e) if e.is_conflict() => retry = true,
                    Err(e) => return Err(e),
                }
            }
            match written {
                Some(rev) if !retry => return Ok(Resolution { rev, removed }),
                _ if attempt + 1 < UPDATE_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                _ => return Err(Error::conflict(db, id)),
            }
        }
    }
}

impl<S: DatabaseService + ?Sized> DatabaseServiceExt for S {}
