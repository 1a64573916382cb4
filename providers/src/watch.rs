//! Live changes: [`DatabaseService::watch`](crate::DatabaseService::watch)'s options and
//! items, and the stream the providers that keep their own feed (memory, embedded) build on.
//!
//! How the local stream works, and why memory stays bounded: every commit bumps a
//! per-database (memory) or per-store (embedded) [`CommitSignal`], a `tokio::sync::watch`
//! channel holding only a counter. A stream never receives changes pushed into a queue; it
//! is woken, then reads the feed itself from its last sequence, one page of at most
//! [`PAGE`] changes at a time. A consumer that stops polling therefore costs one page and
//! one counter, however many writes happen meanwhile, and reads the rest when it resumes.
//! A wake is never lost: the stream marks the signal seen *before* it reads the feed, and a
//! writer signals *after* its commit is visible, so a commit either is in the read or
//! leaves the signal set for the next wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use tokio::sync::watch;

use crate::mango::Selector;
use crate::{Change, Document, Result};

/// What [`DatabaseService::watch`](crate::DatabaseService::watch) yields: an endless stream
/// of changes, ended only by an error that cannot be recovered (the database was deleted,
/// credentials were refused) or by dropping it.
pub type ChangeStream = BoxStream<'static, Result<LiveChange>>;

/// Where a watch starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Since {
    /// From the first change of the database: every document once, then live changes.
    Start,
    /// From the database's update sequence when the watch starts: live changes only.
    #[default]
    Now,
    /// After this token: a [`Change::seq`] or a [`ChangesPage::last_seq`](crate::ChangesPage)
    /// of the same provider and database.
    After(String),
}

/// Options of [`DatabaseService::watch`](crate::DatabaseService::watch).
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Where to start. Default [`Since::Now`].
    pub since: Since,
    /// Each change carries the document at its winning revision (CouchDB's `include_docs`):
    /// `_id`, `_rev`, the body with attachment stubs, and `_deleted: true` last for a
    /// tombstone. Default `false`.
    pub include_docs: bool,
    /// Only changes whose document (as `include_docs` gives it, tombstones included)
    /// matches this Mango selector (CouchDB's `filter=_selector`). A tombstone has no fields
    /// but `_id`, `_rev`, `_deleted` and those it was deleted with, so a selector on the
    /// body does not see deletions. Default: every change.
    pub selector: Option<serde_json::Value>,
    /// How often a CouchDB server sends a keep-alive on a quiet feed; the connection is
    /// taken as dead, and reopened, after three heartbeats without a byte. Memory and
    /// embedded are woken by their own commits and need none. Default 10 s.
    pub heartbeat: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            since: Since::Now,
            include_docs: false,
            selector: None,
            heartbeat: Duration::from_secs(10),
        }
    }
}

impl WatchOptions {
    /// Live changes from now on, nothing else set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`since`](Self::since).
    pub fn since(mut self, since: Since) -> Self {
        self.since = since;
        self
    }

    /// Sets [`include_docs`](Self::include_docs).
    pub fn include_docs(mut self, include: bool) -> Self {
        self.include_docs = include;
        self
    }

    /// Sets [`selector`](Self::selector).
    pub fn selector(mut self, selector: serde_json::Value) -> Self {
        self.selector = Some(selector);
        self
    }

    /// Sets [`heartbeat`](Self::heartbeat).
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// The selector, parsed: `InvalidQuery` for a bad one, before anything is read.
    pub(crate) fn parsed_selector(&self) -> Result<Option<Selector>> {
        self.selector.as_ref().map(Selector::parse).transpose()
    }
}

/// One change of a watched database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveChange {
    /// The change, as [`changes`](crate::DatabaseService::changes) gives it.
    #[serde(flatten)]
    pub change: Change,
    /// The document at the change's revision, when [`WatchOptions::include_docs`] asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<Document>,
}

/// Changes after this many are read in the next page.
pub(crate) const PAGE: usize = 256;

/// The commit counter writers bump and local streams wait on (see the module doc).
#[derive(Debug)]
pub(crate) struct CommitSignal(watch::Sender<u64>);

impl Default for CommitSignal {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl CommitSignal {
    /// Wakes every stream waiting on this signal. Call after the commit is visible.
    ///
    /// With no stream subscribed there is nobody to wake, and waking costs (a lock per
    /// shard of the channel's waiter list: a tenth of a memory save's time), so nothing is
    /// done. A stream subscribing meanwhile still sees this commit: the commit is stored
    /// before the fence below and the receiver count read after it, while [`subscribe`]
    /// counts the receiver before its fence and the stream reads the feed after it; with
    /// both fences sequentially consistent, either this read sees the receiver (and wakes
    /// it) or the stream's read of the feed sees the commit.
    ///
    /// [`subscribe`]: Self::subscribe
    pub(crate) fn notify(&self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if self.0.receiver_count() == 0 {
            return;
        }
        self.0.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver for one stream, which must read the feed only after this returns (see
    /// [`notify`](Self::notify)).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        let receiver = self.0.subscribe();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        receiver
    }
}

/// A provider's own feed of one database, as a local stream reads it.
#[async_trait]
pub(crate) trait FeedSource: Send + Sync + 'static {
    /// Up to `limit` changes after sequence `since`, in sequence order, each with its
    /// document (see [`WatchOptions::include_docs`]) when `with_docs`. `NotFound` once the
    /// database is gone.
    async fn read(
        &self,
        since: u64,
        limit: usize,
        with_docs: bool,
    ) -> Result<Vec<(Change, Option<Document>)>>;
}

/// A local stream from sequence `since`: pages of `source`, filtered by `selector`, waiting
/// on `wake` whenever the feed is read to its end.
pub(crate) fn local_stream(
    source: Arc<dyn FeedSource>,
    wake: watch::Receiver<u64>,
    since: u64,
    include_docs: bool,
    selector: Option<Selector>,
) -> ChangeStream {
    let state = LocalState {
        source,
        wake,
        since,
        include_docs,
        selector,
        ready: VecDeque::new(),
        ended: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed()
}

struct LocalState {
    source: Arc<dyn FeedSource>,
    wake: watch::Receiver<u64>,
    since: u64,
    include_docs: bool,
    selector: Option<Selector>,
    /// What the last page read and the consumer has not taken yet (at most one page).
    ready: VecDeque<LiveChange>,
    ended: bool,
}

impl LocalState {
    async fn next(&mut self) -> Option<Result<LiveChange>> {
        if self.ended {
            return None;
        }
        let with_docs = self.include_docs || self.selector.is_some();
        loop {
            if let Some(change) = self.ready.pop_front() {
                return Some(Ok(change));
            }
            // Seen before reading: a commit after this line wakes the wait below.
            self.wake.borrow_and_update();
            let page = match self.source.read(self.since, PAGE, with_docs).await {
                Ok(page) => page,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            };
            if page.is_empty() {
                if self.wake.changed().await.is_err() {
                    // The store itself is gone.
                    self.ended = true;
                    return None;
                }
                continue;
            }
            for (change, doc) in page {
                if let Ok(seq) = change.seq.parse() {
                    self.since = seq;
                }
                let keep = match (&self.selector, &doc) {
                    (Some(selector), Some(doc)) => selector.matches(doc.as_map()),
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                if keep {
                    let doc = if self.include_docs { doc } else { None };
                    self.ready.push_back(LiveChange { change, doc });
                }
            }
        }
    }
}
