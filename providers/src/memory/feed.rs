//! `watch` on the memory provider: a stream over one database's own feed, woken by the
//! database's commit signal (see `crate::watch`).

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::MemoryDb;
use crate::tree_read;
use crate::watch::{self, ChangeStream, FeedSource, Since, WatchOptions};
use crate::{Change, Document, Error, Result, validate};

/// The live stream of `state`, the database `db`.
pub(super) fn watch(
    db: &str,
    state: Arc<RwLock<MemoryDb>>,
    options: &WatchOptions,
) -> Result<ChangeStream> {
    let selector = options.parsed_selector()?;
    let (since, wake) = {
        let held = state.read();
        let since = match &options.since {
            Since::Start => 0,
            Since::Now => held.seq,
            Since::After(token) => validate::sequence_token(Some(token), "memory")?,
        };
        (since, held.signal.subscribe())
    };
    let source = Arc::new(MemoryFeed {
        db: db.to_owned(),
        state,
    });
    Ok(watch::local_stream(
        source,
        wake,
        since,
        options.include_docs,
        selector,
    ))
}

/// One database's feed, for `watch`: the database itself, so a database deleted and
/// created again under the same name is not mistaken for the one watched.
struct MemoryFeed {
    db: String,
    state: Arc<RwLock<MemoryDb>>,
}

#[async_trait]
impl FeedSource for MemoryFeed {
    async fn read(
        &self,
        since: u64,
        limit: usize,
        with_docs: bool,
    ) -> Result<Vec<(Change, Option<Document>)>> {
        let state = self.state.read();
        if state.dropped {
            return Err(Error::db_not_found(&self.db));
        }
        let (changes, _) = state.changes_after(since, limit, false);
        changes
            .into_iter()
            .map(|change| {
                let doc = if with_docs {
                    let tree = state.tree(&change.id);
                    tree_read::document_at(&change.id, tree, &change.rev, &*state)?
                } else {
                    None
                };
                Ok((change, doc))
            })
            .collect()
    }
}
