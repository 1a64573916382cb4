//! The changes feed of the embedded provider: one page of the `changes` keyspace, read from
//! one snapshot with the database's metadata, for `changes` and for `watch`.

use fjall::{Guard, Readable};

use super::format;
use super::store::Store;
use crate::{Change, ChangesPage, Document, Error, Result, tree_read};

impl Store {
    pub(super) fn changes(&self, db: &str, since: u64, limit: usize) -> Result<ChangesPage> {
        // Metadata and feed from one snapshot, so the update seq names exactly what is read.
        let snapshot = self.db.snapshot();
        let meta = self.snapshot_meta(&snapshot, db)?;
        let known = self.pending_counts.known(&meta.id, since, meta.seq);
        let start = format::key(meta.id, &(since.saturating_add(1)).to_be_bytes());
        let end = format::end_of(meta.id);
        let mut results = Vec::with_capacity(limit.min(1024));
        let mut counted = 0u64;
        for item in snapshot.range(&self.changes, start.as_slice()..end.as_slice()) {
            if results.len() == limit {
                if known.is_some() {
                    break;
                }
                counted += 1;
                continue;
            }
            results.push(self.change_row(item)?);
        }
        let last = results
            .last()
            .and_then(|c| c.seq.parse().ok())
            .unwrap_or_else(|| since.max(meta.seq));
        let pending = self.pending_counts.page(
            meta.id,
            known,
            counted,
            (results.len(), limit),
            last,
            meta.seq,
        );
        Ok(ChangesPage {
            results,
            last_seq: last.to_string(),
            pending,
        })
    }

    /// One page for `watch`: up to `limit` changes after `since` of the database `db` as
    /// long as it is the one whose id is `db_id` (not deleted, not deleted and created
    /// again), each with its document at the change's revision when `with_docs`.
    pub(super) fn watch_page(
        &self,
        db: &str,
        db_id: u64,
        since: u64,
        limit: usize,
        with_docs: bool,
    ) -> Result<Vec<(Change, Option<Document>)>> {
        let snapshot = self.db.snapshot();
        match self.snapshot_meta_opt(&snapshot, db)? {
            Some(meta) if meta.id == db_id => {}
            _ => return Err(Error::db_not_found(db)),
        }
        let start = format::key(db_id, &(since.saturating_add(1)).to_be_bytes());
        let end = format::end_of(db_id);
        let mut page = Vec::with_capacity(limit.min(1024));
        for item in snapshot
            .range(&self.changes, start.as_slice()..end.as_slice())
            .take(limit)
        {
            let change = self.change_row(item)?;
            let doc = if with_docs {
                self.with_tree(db, &change.id, |tree, _, bodies| {
                    tree_read::document_at(&change.id, tree, &change.rev, bodies)
                })?
            } else {
                None
            };
            page.push((change, doc));
        }
        Ok(page)
    }

    /// The change an entry of the `changes` keyspace records.
    fn change_row(&self, item: Guard) -> Result<Change> {
        let (key, value) = item
            .into_inner()
            .map_err(|e| self.err("reading changes", e))?;
        let (leaf, other_leaves, id) = format::decode_change(&value)?;
        Ok(Change {
            seq: format::be_u64(&key[8..]).to_string(),
            id,
            rev: leaf.rev,
            deleted: leaf.deleted,
            other_leaves,
        })
    }
}
