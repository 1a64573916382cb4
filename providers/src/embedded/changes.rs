//! The changes feed of the embedded provider: one page of the `changes` keyspace, read from
//! one snapshot with the database's metadata.

use fjall::Readable;

use super::format;
use super::store::Store;
use crate::{Change, ChangesPage, Result};

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
            let (key, value) = item
                .into_inner()
                .map_err(|e| self.err("reading changes", e))?;
            let (leaf, other_leaves, id) = format::decode_change(&value)?;
            results.push(Change {
                seq: format::be_u64(&key[8..]).to_string(),
                id,
                rev: leaf.rev,
                deleted: leaf.deleted,
                other_leaves,
            });
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
}
