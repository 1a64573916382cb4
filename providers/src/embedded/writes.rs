//! Writes of the embedded provider: one new leaf's record, change entry, index entries and
//! counters (`put_record`); the save, delete and revision-preserving batches built on it;
//! `_local` writes; and the lock-free preparation of big batches on both cores.

use std::collections::HashMap;

use fjall::OwnedWriteBatch;
use serde_json::{Map, Value};

use super::format::{self, DbMeta, RecordHeader};
use super::index::{IndexedWrite, NewVersion};
use super::store::Store;
use crate::write::{
    Leaf, SaveRequest, count_transition, delete_rev, history_after_edit, history_after_replication,
    revision_outcome,
};
use crate::{
    Error, IndexDefinition, Result, Rev, RevisionOutcome, RevisionedDoc, WriteResult, validate,
};

/// One new leaf for [`Store::put_record`]: the record (header still to fill in), the leaf's
/// ancestors and, for a live document, the body its index entries come from.
struct NewLeaf<'a> {
    key: Vec<u8>,
    id: &'a str,
    previous: Option<Previous>,
    leaf: Leaf,
    history: Vec<Rev>,
    record: Vec<u8>,
    body: Option<&'a Map<String, Value>>,
}

/// A document's current record: its header and the ancestors of its leaf.
#[derive(Clone)]
struct Previous {
    header: RecordHeader,
    history: Vec<Rev>,
}

impl Previous {
    fn leaf(previous: &Option<Previous>) -> Option<Leaf> {
        previous.as_ref().map(|p| p.header.leaf)
    }

    /// The current revision and its ancestors, as `write`'s history rules take them.
    fn path(previous: &Option<Previous>) -> Option<(Rev, &[Rev])> {
        previous
            .as_ref()
            .map(|p| (p.header.leaf.rev, p.history.as_slice()))
    }
}

/// What the batch being built has written so far, so a batch that writes one id twice sees
/// its own first write: documents by key, and index order keys by reverse key.
#[derive(Default)]
pub(super) struct Pending {
    records: HashMap<Vec<u8>, Previous>,
    pub(super) index_entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Store {
    /// The current record of a document, seeing the batch's own earlier writes.
    fn previous(&self, pending: &Pending, key: &[u8]) -> Result<Option<Previous>> {
        if let Some(previous) = pending.records.get(key) {
            return Ok(Some(previous.clone()));
        }
        self.stored(key)
    }

    /// The committed record of a document.
    fn stored(&self, key: &[u8]) -> Result<Option<Previous>> {
        let Some(value) = self
            .docs
            .get(key)
            .map_err(|e| self.err("reading a document", e))?
        else {
            return Ok(None);
        };
        let (header, _, history) = format::decode_record_with_history(&value)?;
        Ok(Some(Previous {
            header,
            history: format::decode_history(&header.leaf.rev, history),
        }))
    }

    /// Writes a new leaf of a document: its record, the move of its change entry and of its
    /// secondary index entries, and the counters. The caller holds the writer lock.
    fn put_record(
        &self,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        meta: &mut DbMeta,
        defs: &[IndexDefinition],
        new: NewLeaf<'_>,
    ) -> Result<()> {
        let NewLeaf {
            key,
            id,
            previous,
            leaf,
            history,
            mut record,
            body,
        } = new;
        let previous = previous.map(|p| p.header);
        self.update_index_entries(
            batch,
            pending,
            defs,
            IndexedWrite {
                db_id: meta.id,
                id,
                existed: previous.is_some(),
                new: match body {
                    Some(body) if !leaf.deleted => NewVersion::Live {
                        rev: &leaf.rev,
                        body,
                    },
                    _ => NewVersion::Deleted,
                },
            },
        )?;
        meta.seq += 1;
        if let Some(old) = previous {
            batch.remove(&self.changes, format::key(meta.id, &old.seq.to_be_bytes()));
        }
        count_transition(
            &mut meta.live,
            &mut meta.deleted,
            previous.map(|h| h.leaf),
            leaf,
        );
        format::finish_record(&mut record, leaf, meta.seq, &history);
        batch.insert(
            &self.changes,
            format::key(meta.id, &meta.seq.to_be_bytes()),
            format::encode_change(leaf, id),
        );
        pending.records.insert(
            key.clone(),
            Previous {
                header: RecordHeader {
                    leaf,
                    seq: meta.seq,
                },
                history,
            },
        );
        batch.insert(&self.docs, key, record);
        Ok(())
    }

    pub(super) fn save_batch(
        &self,
        db: &str,
        requests: Vec<Result<(String, SaveRequest)>>,
    ) -> Result<Vec<Result<WriteResult>>> {
        // Outside the writer lock, on both cores for big batches: the record bytes, and the
        // revision a new document would get (its hash needs no parent).
        let prepared = prepare_saves(requests);
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let mut pending = Pending::default();
        let (mut meta, created) = self.meta_or_new(&mut batch, db)?;
        let defs = self.index_definitions(meta.id)?;
        let mut results = Vec::with_capacity(prepared.len());
        let mut wrote = false;
        // The committed records, looked up on both cores (the lock keeps them current); a
        // record this batch wrote itself is taken from `pending` instead.
        let keys: Vec<Option<Vec<u8>>> = prepared
            .iter()
            .map(|p| {
                p.as_ref()
                    .ok()
                    .map(|s| format::key(meta.id, s.id.as_bytes()))
            })
            .collect();
        let stored = map_halves(keys, |key| match key {
            Some(key) => Ok(Some((self.stored(&key)?, key))),
            None => Ok(None),
        });
        for (item, stored) in prepared.into_iter().zip(stored) {
            let outcome = item.and_then(|save| {
                let (stored, key) =
                    stored?.ok_or_else(|| Error::storage("a lookup went missing"))?;
                let previous = match pending.records.get(&key) {
                    Some(p) => Some(p.clone()),
                    None => stored,
                };
                let rev = match (&previous, save.new_doc_rev) {
                    (None, Some(rev)) => rev,
                    (previous, _) => save.req.next_rev(db, &save.id, Previous::leaf(previous))?,
                };
                let leaf = Leaf {
                    rev,
                    deleted: false,
                };
                let history = history_after_edit(Previous::path(&previous));
                self.put_record(
                    &mut batch,
                    &mut pending,
                    &mut meta,
                    &defs,
                    NewLeaf {
                        key,
                        id: &save.id,
                        previous,
                        leaf,
                        history,
                        record: save.record,
                        body: Some(&save.req.body),
                    },
                )?;
                Ok(WriteResult { id: save.id, rev })
            });
            wrote |= outcome.is_ok();
            results.push(outcome);
        }
        if wrote || !created {
            batch.insert(&self.databases, db, meta.encode());
            self.commit(batch)?;
        }
        Ok(results)
    }

    pub(super) fn delete_batch(
        &self,
        db: &str,
        ids: Vec<String>,
        expected: Option<Rev>,
    ) -> Result<Vec<Result<WriteResult>>> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let mut pending = Pending::default();
        let Some(mut meta) = self.meta(db)? else {
            return Ok(ids
                .iter()
                .map(|id| {
                    validate::document_id(db, id)?;
                    Err(Error::db_not_found(db))
                })
                .collect());
        };
        let defs = self.index_definitions(meta.id)?;
        let mut results = Vec::with_capacity(ids.len());
        let mut wrote = false;
        for id in ids {
            let outcome = validate::document_id(db, &id).and_then(|()| {
                let key = format::key(meta.id, id.as_bytes());
                let previous = self.previous(&pending, &key)?;
                let rev = delete_rev(db, &id, Previous::leaf(&previous), expected.as_ref())?;
                let leaf = Leaf { rev, deleted: true };
                let history = history_after_edit(Previous::path(&previous));
                self.put_record(
                    &mut batch,
                    &mut pending,
                    &mut meta,
                    &defs,
                    NewLeaf {
                        key,
                        id: &id,
                        previous,
                        leaf,
                        history,
                        record: format::tombstone_record(),
                        body: None,
                    },
                )?;
                Ok(WriteResult { id, rev })
            });
            wrote |= outcome.is_ok();
            results.push(outcome);
        }
        if wrote {
            batch.insert(&self.databases, db, meta.encode());
            self.commit(batch)?;
        }
        Ok(results)
    }

    /// Revision-preserving writes (replication), in one batch: see `put_revisions`.
    pub(super) fn revisions_batch(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let mut pending = Pending::default();
        let (mut meta, _) = self.meta_or_new(&mut batch, db)?;
        let defs = self.index_definitions(meta.id)?;
        let mut results = Vec::with_capacity(docs.len());
        let mut wrote = false;
        for doc in docs {
            let outcome = (|| {
                let key = format::key(meta.id, doc.id.as_bytes());
                let previous = self.previous(&pending, &key)?;
                let outcome = revision_outcome(db, &doc, Previous::leaf(&previous))?;
                if outcome != RevisionOutcome::Written {
                    return Ok(outcome);
                }
                let leaf = Leaf {
                    rev: doc.rev,
                    deleted: doc.deleted,
                };
                let history = history_after_replication(&doc, Previous::path(&previous));
                let record = if doc.deleted {
                    format::tombstone_record()
                } else {
                    format::record_with_body(&doc.body)?
                };
                self.put_record(
                    &mut batch,
                    &mut pending,
                    &mut meta,
                    &defs,
                    NewLeaf {
                        key,
                        id: &doc.id,
                        previous,
                        leaf,
                        history,
                        record,
                        body: Some(&doc.body),
                    },
                )?;
                Ok(outcome)
            })();
            wrote |= matches!(outcome, Ok(RevisionOutcome::Written));
            results.push(outcome);
        }
        if wrote {
            batch.insert(&self.databases, db, meta.encode());
            self.commit(batch)?;
        }
        Ok(results)
    }

    pub(super) fn put_local(&self, db: &str, id: &str, body: &[u8]) -> Result<()> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let (meta, created) = self.meta_or_new(&mut batch, db)?;
        if created {
            batch.insert(&self.databases, db, meta.encode());
        }
        batch.insert(&self.local, format::key(meta.id, id.as_bytes()), body);
        self.commit(batch)
    }
}

/// A save with the work that needs no lock already done.
struct PreparedSave {
    id: String,
    req: SaveRequest,
    /// The record (header still to fill in) with the body JSON.
    record: Vec<u8>,
    /// The revision if the document turns out to be new (rev-less save, no current leaf).
    new_doc_rev: Option<Rev>,
}

/// Batches at least this big are prepared on two threads.
const PARALLEL_PREPARE: usize = 256;

fn prepare_save(request: Result<(String, SaveRequest)>) -> Result<PreparedSave> {
    let (id, req) = request?;
    let record = format::record_with_body(&req.body)?;
    let new_doc_rev = req
        .expected
        .is_none()
        .then(|| Rev::compute(None, false, &req.body));
    Ok(PreparedSave {
        id,
        req,
        record,
        new_doc_rev,
    })
}

/// Prepares saves in input order, splitting big batches over two threads.
fn prepare_saves(requests: Vec<Result<(String, SaveRequest)>>) -> Vec<Result<PreparedSave>> {
    map_halves(requests, prepare_save)
}

/// `items.map(f)` in order; at least `PARALLEL_PREPARE` items are split over two threads
/// (this machine class has two cores; JSON encoding and parsing dominate these loops).
pub(super) fn map_halves<T: Send, U: Send>(
    mut items: Vec<T>,
    f: impl Fn(T) -> Result<U> + Sync,
) -> Vec<Result<U>> {
    if items.len() < PARALLEL_PREPARE {
        return items.into_iter().map(f).collect();
    }
    let second = items.split_off(items.len() / 2);
    let second_len = second.len();
    let f = &f;
    std::thread::scope(|scope| {
        let back = scope.spawn(move || second.into_iter().map(f).collect::<Vec<_>>());
        let mut front: Vec<_> = items.into_iter().map(f).collect();
        match back.join() {
            Ok(rest) => front.extend(rest),
            // `f` does not panic; if it ever did, fail those items, not the process.
            Err(_) => front.extend(
                (0..second_len).map(|_| Err(Error::storage("a parallel encode or parse panicked"))),
            ),
        }
        front
    })
}
