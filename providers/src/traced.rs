//! [`Traced`]: a [`DatabaseService`] that runs every operation of the one it wraps inside a
//! `tracing` span, so an operator sees what the store did, how long it took and what it cost.
//!
//! Each operation is one `info`-level span named `docstore` with the fields `op` (the trait
//! method), `provider`, `db`, `id` (single-document operations), `count` (bulk operations:
//! how many inputs), and, once done, `ms` and `requests` (HTTP requests the operation made,
//! retries included; always 0 for memory and embedded). When it ends:
//! - a call slower than the threshold (default [`DEFAULT_SLOW_CALL`]) is a `warn` event;
//! - an error is an event with its `kind` ([`Error::kind`]) at a level by meaning: `debug`
//!   for the everyday `not_found`/`conflict`, `info` for refused input, `warn` for an
//!   unavailable server, refused credentials or a configuration error, `error` for storage
//!   and protocol failures.
//!
//! Inside the span the CouchDB provider logs each HTTP request at `debug` (method, path,
//! status, time) and each retry at `warn`. Nothing logged holds a password: URLs are logged
//! without their base (where credentials could have been given) and `Debug` of configs and
//! settings redacts it.
//!
//! `get_database_service` wraps every provider it builds; a provider built by hand can be
//! wrapped with [`Traced::new`].

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tracing::{Instrument, Level, Span, field};

use crate::watch::{ChangeStream, WatchOptions};
use crate::{
    Attachment, AttachmentRead, AttachmentStream, AttachmentUpload, Capabilities, ChangesPage,
    DatabaseInfo, DatabaseService, Document, Error, FindQuery, GetOptions, IndexStatus,
    NewAttachment, OpenRev, OpenRevs, Page, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff,
    WriteResult,
};

/// Calls at least this slow are logged at `warn` unless [`Traced::slow_call`] says otherwise.
pub const DEFAULT_SLOW_CALL: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// HTTP requests made by the operation being traced on this task.
    static REQUESTS: Cell<u64>;
}

/// Counts one HTTP request in the traced operation running on this task, if any.
#[cfg_attr(not(feature = "couchdb"), allow(dead_code))]
pub(crate) fn count_request() {
    let _ = REQUESTS.try_with(|count| count.set(count.get() + 1));
}

/// A [`DatabaseService`] whose every operation is traced (see the module doc); it behaves
/// exactly as the service it wraps.
#[derive(Debug, Clone)]
pub struct Traced {
    inner: Arc<dyn DatabaseService>,
    slow: Duration,
}

impl Traced {
    /// Wraps `inner`, with the default slow-call threshold.
    pub fn new(inner: Arc<dyn DatabaseService>) -> Self {
        Self {
            inner,
            slow: DEFAULT_SLOW_CALL,
        }
    }

    /// Sets the duration from which a call is logged as slow.
    pub fn slow_call(mut self, threshold: Duration) -> Self {
        self.slow = threshold;
        self
    }

    /// The wrapped service.
    pub fn inner(&self) -> &Arc<dyn DatabaseService> {
        &self.inner
    }

    fn span(&self, op: &'static str, db: &str) -> Span {
        tracing::info_span!(
            "docstore",
            op,
            provider = self.inner.provider_name(),
            db,
            id = field::Empty,
            count = field::Empty,
            ms = field::Empty,
            requests = field::Empty,
        )
    }

    fn span_id(&self, op: &'static str, db: &str, id: &str) -> Span {
        let span = self.span(op, db);
        span.record("id", id);
        span
    }

    fn span_count(&self, op: &'static str, db: &str, count: usize) -> Span {
        let span = self.span(op, db);
        span.record("count", count);
        span
    }

    /// Runs `call` in `span`, then records its time and requests and logs its outcome.
    async fn observe<T>(&self, span: Span, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let counted = REQUESTS.scope(Cell::new(0), async {
            let result = call.await;
            (result, REQUESTS.with(Cell::get))
        });
        let (result, requests) = counted.instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let ms = elapsed.as_millis() as u64;
        span.record("ms", ms);
        span.record("requests", requests);
        span.in_scope(|| match &result {
            Ok(_) if elapsed >= self.slow => {
                tracing::warn!(ms, requests, "slow docstore call");
            }
            Ok(_) => tracing::trace!(ms, requests, "done"),
            Err(e) => log_error(e, ms),
        });
        result
    }
}

/// An error event at the level its kind deserves (see the module doc).
fn log_error(e: &Error, ms: u64) {
    macro_rules! at {
        ($level:expr) => {
            tracing::event!($level, kind = e.kind(), ms, error = %e, "docstore call failed")
        };
    }
    match level_of(e) {
        Level::ERROR => at!(Level::ERROR),
        Level::WARN => at!(Level::WARN),
        Level::INFO => at!(Level::INFO),
        _ => at!(Level::DEBUG),
    }
}

fn level_of(e: &Error) -> Level {
    match e {
        Error::NotFound { .. } | Error::Conflict { .. } => Level::DEBUG,
        Error::Unavailable { .. } | Error::Unauthorized { .. } | Error::Config { .. } => {
            Level::WARN
        }
        Error::Storage { .. } | Error::Protocol { .. } => Level::ERROR,
        _ => Level::INFO,
    }
}

#[async_trait]
impl DatabaseService for Traced {
    fn provider_name(&self) -> &'static str {
        self.inner.provider_name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn list_databases(&self) -> Result<Vec<String>> {
        self.observe(self.span("list_databases", ""), self.inner.list_databases())
            .await
    }

    async fn database_info(&self, db: &str) -> Result<DatabaseInfo> {
        let span = self.span("database_info", db);
        self.observe(span, self.inner.database_info(db)).await
    }

    async fn delete_database(&self, db: &str) -> Result<()> {
        let span = self.span("delete_database", db);
        self.observe(span, self.inner.delete_database(db)).await
    }

    async fn revs_limit(&self, db: &str) -> Result<u64> {
        let span = self.span("revs_limit", db);
        self.observe(span, self.inner.revs_limit(db)).await
    }

    async fn set_revs_limit(&self, db: &str, limit: u64) -> Result<()> {
        let span = self.span("set_revs_limit", db);
        self.observe(span, self.inner.set_revs_limit(db, limit))
            .await
    }

    async fn compact(&self, db: &str) -> Result<()> {
        let span = self.span("compact", db);
        self.observe(span, self.inner.compact(db)).await
    }

    async fn get(&self, db: &str, id: &str) -> Result<Document> {
        let span = self.span_id("get", db, id);
        self.observe(span, self.inner.get(db, id)).await
    }

    async fn get_with(&self, db: &str, id: &str, options: &GetOptions) -> Result<Document> {
        let span = self.span_id("get_with", db, id);
        self.observe(span, self.inner.get_with(db, id, options))
            .await
    }

    async fn open_revs(
        &self,
        db: &str,
        id: &str,
        which: &OpenRevs,
        revs: bool,
    ) -> Result<Vec<OpenRev>> {
        let span = self.span_id("open_revs", db, id);
        self.observe(span, self.inner.open_revs(db, id, which, revs))
            .await
    }

    async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        let span = self.span_id("save", db, id);
        self.observe(span, self.inner.save(db, id, doc)).await
    }

    async fn create(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        let span = self.span_id("create", db, id);
        self.observe(span, self.inner.create(db, id, doc)).await
    }

    async fn delete(&self, db: &str, id: &str) -> Result<WriteResult> {
        let span = self.span_id("delete", db, id);
        self.observe(span, self.inner.delete(db, id)).await
    }

    async fn delete_rev(&self, db: &str, id: &str, rev: &Rev) -> Result<WriteResult> {
        let span = self.span_id("delete_rev", db, id);
        self.observe(span, self.inner.delete_rev(db, id, rev)).await
    }

    async fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        let span = self.span_count("list_page", db, limit);
        self.observe(span, self.inner.list_page(db, after, limit))
            .await
    }

    async fn get_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<Document>>> {
        let span = self.span_count("get_many", db, ids.len());
        self.observe(span, self.inner.get_many(db, ids)).await
    }

    async fn save_many(&self, db: &str, docs: Vec<Document>) -> Result<Vec<Result<WriteResult>>> {
        let span = self.span_count("save_many", db, docs.len());
        self.observe(span, self.inner.save_many(db, docs)).await
    }

    async fn delete_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<WriteResult>>> {
        let span = self.span_count("delete_many", db, ids.len());
        self.observe(span, self.inner.delete_many(db, ids)).await
    }

    async fn changes(&self, db: &str, since: Option<&str>, limit: usize) -> Result<ChangesPage> {
        let span = self.span_count("changes", db, limit);
        self.observe(span, self.inner.changes(db, since, limit))
            .await
    }

    async fn watch(&self, db: &str, options: WatchOptions) -> Result<ChangeStream> {
        // The span covers opening the stream; the stream itself logs its reconnects.
        let span = self.span("watch", db);
        self.observe(span, self.inner.watch(db, options)).await
    }

    async fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        let span = self.span_id("get_local", db, id);
        self.observe(span, self.inner.get_local(db, id)).await
    }

    async fn put_local(&self, db: &str, id: &str, doc: Document) -> Result<()> {
        let span = self.span_id("put_local", db, id);
        self.observe(span, self.inner.put_local(db, id, doc)).await
    }

    async fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>> {
        let span = self.span("find", db);
        self.observe(span, self.inner.find(db, query)).await
    }

    async fn ensure_index(&self, db: &str, fields: &[&str], name: &str) -> Result<IndexStatus> {
        let span = self.span_id("ensure_index", db, name);
        self.observe(span, self.inner.ensure_index(db, fields, name))
            .await
    }

    async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        let span = self.span_count("put_revisions", db, docs.len());
        self.observe(span, self.inner.put_revisions(db, docs)).await
    }

    async fn write_revisions(&self, db: &str, docs: Vec<RevisionedDoc>) -> Result<Vec<Result<()>>> {
        let span = self.span_count("write_revisions", db, docs.len());
        self.observe(span, self.inner.write_revisions(db, docs))
            .await
    }

    async fn current_revisions(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Option<(Rev, bool)>>> {
        let span = self.span_count("current_revisions", db, ids.len());
        self.observe(span, self.inner.current_revisions(db, ids))
            .await
    }

    async fn revs_diff(&self, db: &str, asked: &[(String, Vec<Rev>)]) -> Result<Vec<RevsDiff>> {
        let span = self.span_count("revs_diff", db, asked.len());
        self.observe(span, self.inner.revs_diff(db, asked)).await
    }

    async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        let span = self.span_count("read_revisions", db, wanted.len());
        self.observe(span, self.inner.read_revisions(db, wanted))
            .await
    }

    async fn put_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        attachment: NewAttachment,
    ) -> Result<WriteResult> {
        let span = self.span_id("put_attachment", db, id);
        let call = self.inner.put_attachment(db, id, name, rev, attachment);
        self.observe(span, call).await
    }

    async fn get_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<Attachment> {
        let span = self.span_id("get_attachment", db, id);
        let call = self.inner.get_attachment(db, id, name, options);
        self.observe(span, call).await
    }

    async fn put_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        upload: AttachmentUpload,
    ) -> Result<WriteResult> {
        let span = self.span_id("put_attachment_stream", db, id);
        let call = self.inner.put_attachment_stream(db, id, name, rev, upload);
        self.observe(span, call).await
    }

    async fn get_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<AttachmentStream> {
        // The span covers opening the download; the body streams after it.
        let span = self.span_id("get_attachment_stream", db, id);
        let call = self.inner.get_attachment_stream(db, id, name, options);
        self.observe(span, call).await
    }

    async fn delete_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: &Rev,
    ) -> Result<WriteResult> {
        let span = self.span_id("delete_attachment", db, id);
        let call = self.inner.delete_attachment(db, id, name, rev);
        self.observe(span, call).await
    }
}
