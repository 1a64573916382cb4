//! Writes of the embedded provider: one document's changed revision tree stored with its
//! change entry, ancestors' bodies, index entries and counters (`store_doc`); the save,
//! delete and revision-preserving batches built on it; `revs_limit`; compaction; `_local`
//! writes; and the lock-free preparation of big batches on both cores.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fjall::OwnedWriteBatch;
use serde_json::{Map, Value};

use super::format::{self, DbMeta, RecordHeader};
use super::index::{IndexedWrite, NewVersion};
use super::reads::parse_body;
use super::store::Store;
use crate::attachment::Blob;
use crate::parallel::{map_chunks_on_every_core, map_on_every_core};
use crate::rev_tree::{RevTree, Stored};
use crate::write::{Edit, Leaf, SaveRequest, count_transition, merge_revision, prepare_revisioned};
use crate::{
    Error, IndexDefinition, Result, Rev, RevisionOutcome, RevisionedDoc, WriteResult, validate,
};

/// One document as a write holds it: its tree, its latest sequence number and winner, and
/// the JSON of the bodies its record holds (the leaves'), by revision. Ancestors' bodies are
/// in `revbodies`, which the tree marks with [`Stored::Elsewhere`].
#[derive(Clone)]
pub(super) struct DocState {
    pub(super) tree: RevTree,
    pub(super) header: RecordHeader,
    pub(super) inline: HashMap<Rev, Arc<Vec<u8>>>,
}

impl DocState {
    /// A decoded record.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let decoded = format::decode_record(bytes)?;
        Ok(Self {
            tree: decoded.tree,
            header: decoded.header,
            inline: decoded
                .inline
                .into_iter()
                .map(|(rev, json)| (rev, Arc::new(json.to_vec())))
                .collect(),
        })
    }
}

/// What the batch being built has written so far, so a batch that writes one id twice sees
/// its own first write: documents by key, and index order keys by reverse key.
#[derive(Default)]
pub(super) struct Pending {
    records: HashMap<Vec<u8>, DocState>,
    /// The keys the batch writes more than once, whose records `records` must keep.
    repeated: HashSet<Vec<u8>>,
    pub(super) index_entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Attachment bytes the batch stores, by digest.
    blobs: HashSet<[u8; 16]>,
}

impl Pending {
    /// For a batch that writes `keys` (in any order): only a record whose key comes again
    /// is kept for the batch to see, sparing a batch of distinct documents a copy of every
    /// tree (measured: 100,000 bulk saves of new documents, task-clock 2.5–3.0 s → 2.1 s).
    fn for_keys<K: AsRef<[u8]> + Eq + std::hash::Hash>(keys: impl IntoIterator<Item = K>) -> Self {
        let mut seen = HashSet::new();
        let mut repeated = HashSet::new();
        for key in keys {
            if seen.contains(&key) {
                repeated.insert(key.as_ref().to_vec());
            } else {
                seen.insert(key);
            }
        }
        Self {
            repeated,
            ..Self::default()
        }
    }

    /// Whether the batch may write `key` again, so its new record must be kept.
    fn keeps(&self, key: &[u8]) -> bool {
        self.repeated.contains(key)
    }
}

/// A changed document for [`Store::store_doc`].
struct Changed<'a> {
    key: Vec<u8>,
    id: &'a str,
    /// The state before the write (`None`: a new document).
    before: Option<DocState>,
    tree: RevTree,
    /// The JSON of every leaf, the new one included.
    inline: HashMap<Rev, Arc<Vec<u8>>>,
    /// The leaf just written and its parsed body (for the index, if it wins).
    written: Option<(Rev, &'a Map<String, Value>)>,
}

/// The revisions of `tree`'s ancestors that have a body (kept in `revbodies`).
fn kept_ancestors(tree: &RevTree) -> HashSet<Rev> {
    tree.nodes()
        .filter(|n| !n.is_leaf() && n.value.has_body())
        .map(|n| n.rev)
        .collect()
}

impl Store {
    /// The document's state, seeing the batch's own earlier writes.
    fn load(&self, pending: &Pending, key: &[u8]) -> Result<Option<DocState>> {
        if let Some(state) = pending.records.get(key) {
            return Ok(Some(state.clone()));
        }
        self.stored(key)
    }

    /// The committed state of a document.
    fn stored(&self, key: &[u8]) -> Result<Option<DocState>> {
        self.docs
            .get(key)
            .map_err(|e| self.err("reading a document", e))?
            .map(|value| DocState::decode(&value))
            .transpose()
    }

    /// Stores a document whose tree changed: ancestors' bodies moved out of the record or
    /// dropped by stemming, the record with the next sequence number, the move of its change
    /// entry, its index entries when the winner changed, and the counters. The caller holds
    /// the writer lock.
    fn store_doc(
        &self,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        meta: &mut DbMeta,
        defs: &[IndexDefinition],
        changed: Changed<'_>,
    ) -> Result<()> {
        let Changed {
            key,
            id,
            before,
            mut tree,
            mut inline,
            written,
        } = changed;
        // A leaf that got a child keeps its body in `revbodies`; an ancestor stemming
        // dropped loses its body there. (A tree of one revision has no ancestor.)
        let kept_before = before
            .as_ref()
            .filter(|b| b.tree.len() > 1)
            .map(|b| kept_ancestors(&b.tree))
            .unwrap_or_default();
        let kept_now = if tree.len() > 1 {
            kept_ancestors(&tree)
        } else {
            HashSet::new()
        };
        for rev in &kept_now {
            if let Some(json) = inline.remove(rev) {
                batch.insert(
                    &self.revbodies,
                    format::body_key(meta.id, id, rev),
                    json.as_slice(),
                );
            }
        }
        for rev in kept_before.difference(&kept_now) {
            batch.remove(&self.revbodies, format::body_key(meta.id, id, rev));
        }
        mark_bodies_elsewhere(&mut tree);
        let (winner, others) = {
            let leaves = tree.leaves();
            let first = leaves
                .first()
                .ok_or_else(|| Error::storage("a written tree has no leaf"))?;
            let winner = Leaf {
                rev: first.rev,
                deleted: first.deleted,
            };
            let others: Vec<Rev> = leaves[1..].iter().map(|l| l.rev).collect();
            (winner, others)
        };
        let before_winner = before.as_ref().map(|b| b.header.leaf);
        if before_winner != Some(winner) {
            let body = match written {
                Some((rev, body)) if rev == winner.rev => Some(std::borrow::Cow::Borrowed(body)),
                _ if winner.deleted => None,
                _ => Some(std::borrow::Cow::Owned(parse_body(
                    inline
                        .get(&winner.rev)
                        .ok_or_else(|| Error::storage("the winner's body is not in its record"))?,
                )?)),
            };
            self.update_index_entries(
                batch,
                pending,
                defs,
                IndexedWrite {
                    db_id: meta.id,
                    id,
                    existed: before.is_some(),
                    new: match &body {
                        Some(body) if !winner.deleted => NewVersion::Live {
                            rev: &winner.rev,
                            body,
                        },
                        _ => NewVersion::Deleted,
                    },
                },
            )?;
        }
        meta.seq += 1;
        if let Some(old) = &before {
            batch.remove(
                &self.changes,
                format::key(meta.id, &old.header.seq.to_be_bytes()),
            );
        }
        count_transition(&mut meta.live, &mut meta.deleted, before_winner, winner);
        let winner_json = inline
            .get(&winner.rev)
            .ok_or_else(|| Error::storage("the winner's body is not in its record"))?;
        let record = format::encode_record(&tree, winner, meta.seq, winner_json, &|rev| {
            inline
                .get(rev)
                .map(|j| j.to_vec())
                .ok_or_else(|| Error::storage(format!("the body of leaf {rev} is missing")))
        })?;
        batch.insert(
            &self.changes,
            format::key(meta.id, &meta.seq.to_be_bytes()),
            format::encode_change(winner, &others, id),
        );
        if !pending.keeps(&key) {
            batch.insert(&self.docs, key, record);
            return Ok(());
        }
        batch.insert(&self.docs, key.clone(), record);
        pending.records.insert(
            key,
            DocState {
                tree,
                header: RecordHeader {
                    leaf: winner,
                    seq: meta.seq,
                },
                inline,
            },
        );
        Ok(())
    }

    /// One interactive edit of a document (save or delete) into the batch.
    #[allow(clippy::too_many_arguments)]
    fn write_edit(
        &self,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        meta: &mut DbMeta,
        defs: &[IndexDefinition],
        key: Vec<u8>,
        id: &str,
        before: Option<DocState>,
        edit: Edit,
        body: &Map<String, Value>,
        json: Arc<Vec<u8>>,
    ) -> Result<()> {
        let mut tree = before.as_ref().map(|b| b.tree.clone());
        let mut inline = before
            .as_ref()
            .map(|b| b.inline.clone())
            .unwrap_or_default();
        inline.insert(edit.rev, json);
        edit.apply(&mut tree, Map::new(), meta.revs_limit);
        let tree = tree.ok_or_else(|| Error::storage("an edit left no tree"))?;
        self.store_doc(
            batch,
            pending,
            meta,
            defs,
            Changed {
                key,
                id,
                before,
                tree,
                inline,
                written: Some((edit.rev, body)),
            },
        )
    }

    /// Puts attachment bytes into the batch unless the database has them already (see the
    /// key layout).
    fn store_blobs<'b>(
        &self,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        db_id: u64,
        blobs: impl Iterator<Item = &'b Blob>,
    ) -> Result<()> {
        for blob in blobs {
            if pending.blobs.contains(&blob.digest) {
                continue;
            }
            if !self.holds_blob(db_id, &blob.digest)? {
                match &blob.staged {
                    // A streamed upload's chunks are in place: point the digest at them.
                    Some(staged) => batch.insert(
                        &self.attachments,
                        format::attachment_key(db_id, &blob.digest, format::REDIRECT_CHUNK),
                        &staged[..],
                    ),
                    None => {
                        let first = format::attachment_key(db_id, &blob.digest, 0);
                        let mut chunks = blob.bytes.chunks(format::ATTACHMENT_CHUNK);
                        batch.insert(&self.attachments, first, chunks.next().unwrap_or_default());
                        for (n, chunk) in (1u32..).zip(chunks) {
                            let key = format::attachment_key(db_id, &blob.digest, n);
                            batch.insert(&self.attachments, key, chunk);
                        }
                    }
                }
            }
            pending.blobs.insert(blob.digest);
        }
        Ok(())
    }

    /// Saves `items`, each made a request by `request` (which validates it): in input order,
    /// one commit. The bodies of the saved documents are moved into `spent` rather than
    /// freed here, for a caller that can free them off the critical path (see `save_many`).
    pub(super) fn save_batch<T: Send>(
        &self,
        db: &str,
        items: Vec<T>,
        request: impl Fn(T) -> Result<(String, SaveRequest)> + Sync,
        spent: &mut Vec<Map<String, Value>>,
    ) -> Result<Vec<Result<WriteResult>>> {
        // Outside the writer lock, on every core for big batches, in one pass per document:
        // validation, the body JSON, the revision a new document would get (its hash needs
        // no parent), and the document's committed record. Those records are current if no
        // commit happens between this count and the lock (see `Store::commits_made`);
        // otherwise they are read again under the lock. A small batch (a single save) reads
        // only under the lock: with concurrent writers, its early read would mostly be stale.
        let commits_before = self.commits_made();
        let early_db = if items.len() >= EARLY_READS_FROM {
            Some(self.meta(db)?.map(|m| m.id))
        } else {
            None
        };
        let (prepared, early_records): (Vec<_>, Vec<_>) =
            map_chunks_on_every_core(items, |chunk| {
                prepare_saves(db, chunk.into_iter().map(&request))
                    .into_iter()
                    .map(|prepared| {
                        prepared.map(|save| {
                            let record = early_db
                                .flatten()
                                .map(|id| self.stored(&format::key(id, save.id.as_bytes())));
                            (save, record)
                        })
                    })
                    .collect()
            })
            .into_iter()
            .map(|p| match p {
                Ok((save, record)) => (Ok(save), record),
                Err(e) => (Err(e), None),
            })
            .unzip();
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let (mut meta, created) = self.meta_or_new(&mut batch, db)?;
        // Read before the lock and still current: no commit since, and the same database
        // (or none then, and this batch creates it: no records).
        let early_current = self.commits_made() == commits_before
            && match early_db {
                Some(Some(id)) => id == meta.id,
                Some(None) => created,
                None => false,
            };
        let defs = self.index_definitions(meta.id)?;
        let mut results = Vec::with_capacity(prepared.len());
        let mut wrote = false;
        // The committed records (a record this batch wrote itself is taken from `pending`
        // instead); read again on both cores if the early reads are stale.
        let keys: Vec<Option<Vec<u8>>> = prepared
            .iter()
            .map(|p| {
                p.as_ref()
                    .ok()
                    .map(|s| format::key(meta.id, s.id.as_bytes()))
            })
            .collect();
        let mut pending = Pending::for_keys(keys.iter().flatten());
        let stored: Vec<Lookup> = if early_current {
            keys.into_iter()
                .zip(early_records)
                .map(|(key, record)| match key {
                    Some(key) => Ok(Some((record.transpose()?.flatten(), key))),
                    None => Ok(None),
                })
                .collect()
        } else {
            map_on_every_core(keys, |key| match key {
                Some(key) => Ok(Some((self.stored(&key)?, key))),
                None => Ok(None),
            })
        };
        for (item, stored) in prepared.into_iter().zip(stored) {
            let outcome = item.and_then(|mut save| {
                let (stored, key) =
                    stored?.ok_or_else(|| Error::storage("a lookup went missing"))?;
                let before = match pending.records.get(&key) {
                    Some(p) => Some(p.clone()),
                    None => stored,
                };
                let edit = match (&before, save.new_doc_rev) {
                    (None, Some(rev)) => Edit {
                        parent: None,
                        rev,
                        deleted: save.req.deleted,
                    },
                    (before, _) => {
                        save.req
                            .plan(db, &save.id, before.as_ref().map(|b| &b.tree), &|rev| {
                                leaf_attachments(before.as_ref(), rev)
                            })?
                    }
                };
                let json = match save.json {
                    Some(json) => json,
                    None => Arc::new(crate::json_out::body_to_vec(&save.req.body)),
                };
                self.store_blobs(&mut batch, &mut pending, meta.id, save.req.new_blobs())?;
                self.write_edit(
                    &mut batch,
                    &mut pending,
                    &mut meta,
                    &defs,
                    key,
                    &save.id,
                    before,
                    edit,
                    &save.req.body,
                    json,
                )?;
                spent.push(std::mem::take(&mut save.req.body));
                Ok(WriteResult {
                    id: save.id,
                    rev: edit.rev,
                })
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
        let mut pending =
            Pending::for_keys(ids.iter().map(|id| format::key(meta.id, id.as_bytes())));
        let mut results = Vec::with_capacity(ids.len());
        let mut wrote = false;
        let empty = Map::new();
        let tombstone = Arc::new(b"{}".to_vec());
        for id in ids {
            let outcome = validate::document_id(db, &id).and_then(|()| {
                let key = format::key(meta.id, id.as_bytes());
                let before = self.load(&pending, &key)?;
                let edit =
                    Edit::delete(db, &id, before.as_ref().map(|b| &b.tree), expected.as_ref())?;
                self.write_edit(
                    &mut batch,
                    &mut pending,
                    &mut meta,
                    &defs,
                    key,
                    &id,
                    before,
                    edit,
                    &empty,
                    Arc::clone(&tombstone),
                )?;
                Ok(WriteResult { id, rev: edit.rev })
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
        let (mut meta, _) = self.meta_or_new(&mut batch, db)?;
        let defs = self.index_definitions(meta.id)?;
        let mut pending = Pending::for_keys(
            docs.iter()
                .map(|doc| format::key(meta.id, doc.id.as_bytes())),
        );
        let mut results = Vec::with_capacity(docs.len());
        let mut wrote = false;
        for mut doc in docs {
            let outcome = (|| {
                let key = format::key(meta.id, doc.id.as_bytes());
                let before = self.load(&pending, &key)?;
                let blobs = prepare_revisioned(db, &mut doc, &|name, digest| {
                    let leaves = before.iter().flat_map(|b| b.inline.values());
                    let bodies: Vec<Map<String, Value>> = leaves
                        .filter(|json| memchr_attachments(json))
                        .filter_map(|json| parse_body(json).ok())
                        .collect();
                    crate::attachment::find_stub(bodies.iter(), name, digest)
                })?;
                let (id, rev) = (doc.id.clone(), doc.rev);
                let body = doc.body.clone();
                let json = Arc::new(crate::json_out::body_to_vec(&body));
                let mut tree = before.as_ref().map(|b| b.tree.clone());
                let (outcome, changed) = merge_revision(&mut tree, doc, meta.revs_limit);
                if !changed {
                    return Ok((outcome, false));
                }
                let tree = tree.ok_or_else(|| Error::storage("a merge left no tree"))?;
                self.store_blobs(&mut batch, &mut pending, meta.id, blobs.iter())?;
                let mut inline = before
                    .as_ref()
                    .map(|b| b.inline.clone())
                    .unwrap_or_default();
                inline.insert(rev, json);
                self.store_doc(
                    &mut batch,
                    &mut pending,
                    &mut meta,
                    &defs,
                    Changed {
                        key,
                        id: &id,
                        before,
                        tree,
                        inline,
                        written: Some((rev, &body)),
                    },
                )?;
                Ok((outcome, true))
            })();
            wrote |= matches!(outcome, Ok((_, true)));
            results.push(outcome.map(|(outcome, _)| outcome));
        }
        if wrote {
            batch.insert(&self.databases, db, meta.encode());
            self.commit(batch)?;
        }
        Ok(results)
    }

    pub(super) fn set_revs_limit(&self, db: &str, limit: u64) -> Result<()> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let (mut meta, _) = self.meta_or_new(&mut batch, db)?;
        meta.revs_limit = limit;
        batch.insert(&self.databases, db, meta.encode());
        self.commit(batch)
    }

    /// Drops every ancestor's body of database `db` (CouchDB's compaction): records rewritten
    /// in place (same sequence numbers) and `revbodies` emptied, in batches.
    pub(super) fn compact_db(&self, db: &str) -> Result<()> {
        const CHUNK: usize = 1000;
        let _writer = self.writer.lock();
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let start = format::key(meta.id, b"");
        let end = format::end_of(meta.id);
        let mut batch = self.batch();
        let mut in_batch = 0;
        for item in self.docs.range(start.as_slice()..end.as_slice()) {
            let (key, value) = item
                .into_inner()
                .map_err(|e| self.err("reading a document", e))?;
            let mut state = DocState::decode(&value)?;
            if !state.tree.compact() {
                continue;
            }
            let winner_json = state
                .inline
                .get(&state.header.leaf.rev)
                .ok_or_else(|| Error::storage("the winner's body is not in its record"))?
                .clone();
            let record =
                format::encode_record(
                    &state.tree,
                    state.header.leaf,
                    state.header.seq,
                    &winner_json,
                    &|rev| {
                        state.inline.get(rev).map(|j| j.to_vec()).ok_or_else(|| {
                            Error::storage(format!("the body of leaf {rev} is missing"))
                        })
                    },
                )?;
            batch.insert(&self.docs, key, record);
            in_batch += 1;
            if in_batch == CHUNK {
                self.commit(std::mem::replace(&mut batch, self.batch()))?;
                in_batch = 0;
            }
            state.inline.clear();
        }
        // With every record rewritten, no ancestor's body is referenced any more.
        for item in self.revbodies.range(start.as_slice()..end.as_slice()) {
            let key = item.key().map_err(|e| self.err("compacting", e))?;
            batch.remove(&self.revbodies, key);
            in_batch += 1;
            if in_batch == CHUNK {
                self.commit(std::mem::replace(&mut batch, self.batch()))?;
                in_batch = 0;
            }
        }
        self.commit(batch)?;
        let held = self.held_digests(meta.id)?;
        self.sweep_attachments(meta.id, held)
    }

    /// The digests of the attachments the stored bodies of database `db_id` name (after
    /// compaction only leaves have bodies, all in their records).
    fn held_digests(&self, db_id: u64) -> Result<HashSet<[u8; 16]>> {
        let start = format::key(db_id, b"");
        let end = format::end_of(db_id);
        let mut held = HashSet::new();
        for item in self.docs.range(start.as_slice()..end.as_slice()) {
            let value = item
                .value()
                .map_err(|e| self.err("reading a document", e))?;
            let state = DocState::decode(&value)?;
            for json in state.inline.values() {
                if memchr_attachments(json) {
                    held.extend(crate::attachment::digests(&parse_body(json)?));
                }
            }
        }
        Ok(held)
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

/// Marks every body-bearing node as kept outside the tree (the record holds leaves' bodies,
/// `revbodies` the ancestors'); parsed bodies are not kept in a stored tree.
fn mark_bodies_elsewhere(tree: &mut RevTree) {
    for value in tree.values_mut() {
        if let Stored::Body { deleted, .. } = *value {
            *value = Stored::Elsewhere { deleted };
        }
    }
}

/// From this many documents on, `save_batch` reads their records before taking the writer
/// lock, in the same parallel pass as their JSON and hashes (measured per 1,000: the
/// separate pass under the lock took 0.9-1.9 ms, the reads in the same pass add ~0.5).
const EARLY_READS_FROM: usize = 64;

/// A batch item's committed record and its key (`None` for an item already failed).
type Lookup = Result<Option<(Option<DocState>, Vec<u8>)>>;

/// A save with the work that needs no lock already done.
struct PreparedSave {
    id: String,
    req: SaveRequest,
    /// The body JSON (`None` for a save with attachments, whose stored body is known once
    /// planned on the current tree).
    json: Option<Arc<Vec<u8>>>,
    /// The revision if the document turns out to be new (rev-less save, no current leaf,
    /// no attachments).
    new_doc_rev: Option<Rev>,
}

/// The stored `_attachments` of leaf `rev` of a document as a write holds it.
fn leaf_attachments(state: Option<&DocState>, rev: &Rev) -> Result<Option<Map<String, Value>>> {
    let Some(json) = state.and_then(|s| s.inline.get(rev)) else {
        return Ok(None);
    };
    Ok(parse_body(json)?
        .shift_remove(crate::attachment::ATTACHMENTS)
        .and_then(|v| match v {
            Value::Object(atts) => Some(atts),
            _ => None,
        }))
}

fn prepare_save(db: &str, request: Result<(String, SaveRequest)>) -> Result<PreparedSave> {
    let (id, mut req) = request?;
    req.encode_attachments(db, &id)?;
    if req.attachments.is_some() {
        return Ok(PreparedSave {
            id,
            req,
            json: None,
            new_doc_rev: None,
        });
    }
    let json = Arc::new(crate::json_out::body_to_vec(&req.body));
    Ok(PreparedSave {
        id,
        req,
        json: Some(json),
        new_doc_rev: None,
    })
}

/// `prepare_save` of each request, then the revision each rev-less save without
/// attachments would get as a new document, all hashed together (`Rev::compute_new_many`,
/// eight at a time).
fn prepare_saves(
    db: &str,
    requests: impl Iterator<Item = Result<(String, SaveRequest)>>,
) -> Vec<Result<PreparedSave>> {
    let mut prepared: Vec<Result<PreparedSave>> =
        requests.map(|request| prepare_save(db, request)).collect();
    let revless: Vec<usize> = (0..prepared.len())
        .filter(|&i| {
            matches!(&prepared[i], Ok(save) if save.json.is_some() && save.req.expected.is_none())
        })
        .collect();
    let revs = {
        let docs: Vec<(bool, &Map<String, Value>)> = revless
            .iter()
            .filter_map(|&i| prepared[i].as_ref().ok())
            .map(|save| (save.req.deleted, &save.req.body))
            .collect();
        Rev::compute_new_many(&docs)
    };
    for (i, rev) in revless.into_iter().zip(revs) {
        if let Ok(save) = &mut prepared[i] {
            save.new_doc_rev = Some(rev);
        }
    }
    prepared
}

/// Whether body JSON may hold attachments (the field name occurs in it), so bodies without
/// them need not be parsed.
fn memchr_attachments(json: &[u8]) -> bool {
    json.windows(14).any(|w| w == b"\"_attachments\"")
}

#[cfg(test)]
#[path = "writes_tests.rs"]
mod tests;
