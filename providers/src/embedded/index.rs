//! Secondary JSON indexes of the embedded provider, and `find`.
//!
//! An index lives in the `indexes` keyspace next to its definition and is maintained in the
//! same atomic batch as every document write, so it is never behind or ahead of the
//! documents, even after a crash. Creating an index builds it for the existing documents in
//! one batch, under the writer lock.
//!
//! # Key layout (`indexes` keyspace)
//!
//! | key                                                          | value                      |
//! |--------------------------------------------------------------|----------------------------|
//! | db id (u64) + `0x00` + name                                   | definition (JSON)          |
//! | db id + `0x01` + name length (u8) + name + order key + doc id | document id                |
//! | db id + `0x02` + name length (u8) + name + doc id             | the document's order key   |
//!
//! A document has an entry when it has every indexed field. The order key is
//! [`collate::write_order_key`] of its leading field: byte order never contradicts CouchDB's
//! collation, so a range condition on the leading field is a key range scan. Order keys are
//! self-delimiting (fixed length, or `0x00`-terminated without inner `0x00`), so entry keys
//! are unique, and no UTF-8 id starts with `0xFF`, so `… + order key + 0xFF` bounds every
//! entry of one value. The `0x02` reverse entries let a write remove a document's old entry
//! without reading its old body. The key is coarse (all arrays share one, numbers are keyed
//! by their nearest `f64`): `find` filters and orders the documents it reads exactly.

use std::collections::HashMap;
use std::sync::Arc;

use fjall::{OwnedWriteBatch, Readable};
use serde_json::{Map, Value};

use super::format::{self, DbMeta};
use super::reads::parse_body;
use super::store::Store;
use super::writes::Pending;
use crate::collate;
use crate::mango::Bound;
use crate::query::{self, Candidate, column_value};
use crate::{Document, Error, FindQuery, IndexDefinition, IndexStatus, Result, Rev};

const DEFINITION: u8 = 0x00;
const ENTRY: u8 = 0x01;
const REVERSE: u8 = 0x02;

/// Index definitions per database id, loaded on first use. Database ids are never reused.
pub(super) type IndexCache = parking_lot::RwLock<HashMap<u64, Arc<Vec<IndexDefinition>>>>;

fn named(db_id: u64, kind: u8, name: &str) -> Vec<u8> {
    let mut key = format::key(db_id, &[kind]);
    if kind != DEFINITION {
        // Names are at most 128 bytes (IndexDefinition::new).
        key.push(name.len() as u8);
    }
    key.extend_from_slice(name.as_bytes());
    key
}

fn reverse_key(db_id: u64, name: &str, id: &str) -> Vec<u8> {
    let mut key = named(db_id, REVERSE, name);
    key.extend_from_slice(id.as_bytes());
    key
}

fn entry_key(db_id: u64, name: &str, order_key: &[u8], id: &str) -> Vec<u8> {
    let mut key = named(db_id, ENTRY, name);
    key.extend_from_slice(order_key);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The order key of a document's entry in `index`, if it has every indexed field.
fn order_key(
    index: &IndexDefinition,
    id: &str,
    rev: &Rev,
    body: &Map<String, Value>,
) -> Option<Vec<u8>> {
    let columns = index.columns();
    let mut values = columns.iter().map(|c| column_value(c, id, rev, body));
    let leading = values.next()??;
    if values.any(|v| v.is_none()) {
        return None;
    }
    let mut key = Vec::with_capacity(16);
    collate::write_order_key(&leading, &mut key);
    Some(key)
}

/// One document write, as index maintenance needs it.
pub(super) struct IndexedWrite<'a> {
    pub db_id: u64,
    pub id: &'a str,
    /// Whether the document had a record before (else there is no entry to remove).
    pub existed: bool,
    pub new: NewVersion<'a>,
}

/// The document a write leaves behind.
pub(super) enum NewVersion<'a> {
    Live {
        rev: &'a Rev,
        body: &'a Map<String, Value>,
    },
    Deleted,
}

impl Store {
    /// The index definitions of database `db_id`.
    pub(super) fn index_definitions(&self, db_id: u64) -> Result<Arc<Vec<IndexDefinition>>> {
        if let Some(defs) = self.index_cache.read().get(&db_id) {
            return Ok(Arc::clone(defs));
        }
        let prefix = format::key(db_id, &[DEFINITION]);
        let defs = self
            .indexes
            .prefix(&prefix)
            .map(|item| {
                let value = item
                    .value()
                    .map_err(|e| self.err("reading index definitions", e))?;
                serde_json::from_slice::<IndexDefinition>(&value)
                    .map_err(|e| format::corrupt(&format!("index definition: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let defs = Arc::new(defs);
        self.index_cache.write().insert(db_id, Arc::clone(&defs));
        Ok(defs)
    }

    /// Moves a written document's entries in every index of `defs` to its new version, in
    /// `batch`. The caller holds the writer lock.
    pub(super) fn update_index_entries(
        &self,
        batch: &mut OwnedWriteBatch,
        pending: &mut Pending,
        defs: &[IndexDefinition],
        write: IndexedWrite<'_>,
    ) -> Result<()> {
        let IndexedWrite {
            db_id,
            id,
            existed,
            new,
        } = write;
        for index in defs {
            let reverse = reverse_key(db_id, &index.name, id);
            let old = match pending.index_entries.get(&reverse) {
                Some(old) => old.clone(),
                None if !existed => None,
                None => self
                    .indexes
                    .get(&reverse)
                    .map_err(|e| self.err("reading an index entry", e))?
                    .map(|v| v.to_vec()),
            };
            let new = match &new {
                NewVersion::Live { rev, body } => order_key(index, id, rev, body),
                NewVersion::Deleted => None,
            };
            if old == new {
                continue;
            }
            if let Some(old) = &old {
                batch.remove(&self.indexes, entry_key(db_id, &index.name, old, id));
            }
            match &new {
                Some(key) => {
                    batch.insert(
                        &self.indexes,
                        entry_key(db_id, &index.name, key, id),
                        id.as_bytes(),
                    );
                    batch.insert(&self.indexes, reverse.clone(), key.as_slice());
                }
                None => batch.remove(&self.indexes, reverse.clone()),
            }
            pending.index_entries.insert(reverse, new);
        }
        Ok(())
    }

    /// Creates or replaces an index and builds it, in one batch under the writer lock.
    pub(super) fn ensure_index(&self, db: &str, index: IndexDefinition) -> Result<IndexStatus> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let (meta, created) = self.meta_or_new(&mut batch, db)?;
        let defs = self.index_definitions(meta.id)?;
        let previous = defs.iter().find(|d| d.name == index.name);
        if previous == Some(&index) {
            return Ok(IndexStatus::Exists);
        }
        if created {
            batch.insert(&self.databases, db, meta.encode());
        }
        if previous.is_some() {
            for kind in [ENTRY, REVERSE] {
                let prefix = named(meta.id, kind, &index.name);
                for item in self.indexes.prefix(&prefix) {
                    let key = item.key().map_err(|e| self.err("replacing an index", e))?;
                    batch.remove(&self.indexes, key);
                }
            }
        }
        let definition = serde_json::to_vec(&index).map_err(Error::storage)?;
        batch.insert(
            &self.indexes,
            named(meta.id, DEFINITION, &index.name),
            definition,
        );
        self.build_entries(&mut batch, &meta, &index)?;
        self.commit(batch)?;
        let mut defs: Vec<IndexDefinition> = defs
            .iter()
            .filter(|d| d.name != index.name)
            .cloned()
            .collect();
        defs.push(index);
        self.index_cache.write().insert(meta.id, Arc::new(defs));
        Ok(IndexStatus::Created)
    }

    /// Adds the entries of every live document of the database to `batch`.
    fn build_entries(
        &self,
        batch: &mut OwnedWriteBatch,
        meta: &DbMeta,
        index: &IndexDefinition,
    ) -> Result<()> {
        let start = format::key(meta.id, b"");
        let end = format::end_of(meta.id);
        for item in self.docs.range(start.as_slice()..end.as_slice()) {
            let (key, value) = item
                .into_inner()
                .map_err(|e| self.err("building an index", e))?;
            let (header, body) = format::decode_head(&value)?;
            if header.leaf.deleted {
                continue;
            }
            let id = std::str::from_utf8(&key[8..])
                .map_err(|_| format::corrupt("document id is not UTF-8"))?;
            let body = parse_body(body)?;
            if let Some(order) = order_key(index, id, &header.leaf.rev, &body) {
                batch.insert(
                    &self.indexes,
                    entry_key(meta.id, &index.name, &order, id),
                    id.as_bytes(),
                );
                batch.insert(&self.indexes, reverse_key(meta.id, &index.name, id), order);
            }
        }
        Ok(())
    }

    /// Answers a Mango query from one snapshot: the planner picks `_all_docs` (an id-order
    /// scan that stops early when it can) or an index (a key range scan on the leading
    /// field's range, then a read of each document found).
    pub(super) fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>> {
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let defs = self.index_definitions(meta.id)?;
        let plan = query::plan(query, &defs)?;
        let snapshot = self.db.snapshot();
        let Some(name) = &plan.index else {
            let start = format::key(meta.id, b"");
            let end = format::end_of(meta.id);
            let candidates = snapshot
                .range(&self.docs, start.as_slice()..end.as_slice())
                .filter_map(|item| {
                    let read = || -> Result<Option<Candidate>> {
                        let (key, value) = item
                            .into_inner()
                            .map_err(|e| self.err("reading documents", e))?;
                        let (header, body) = format::decode_head(&value)?;
                        if header.leaf.deleted {
                            return Ok(None);
                        }
                        let id = std::str::from_utf8(&key[8..])
                            .map_err(|_| format::corrupt("document id is not UTF-8"))?;
                        Ok(Some(Candidate {
                            id: id.to_owned(),
                            rev: header.leaf.rev,
                            body: Arc::new(parse_body(body)?),
                        }))
                    };
                    read().transpose()
                });
            return query::execute(query, &plan, candidates);
        };
        // An empty range on the leading field: nothing can match.
        let Some(range) = &plan.leading_range else {
            return Ok(Vec::new());
        };
        let prefix = named(meta.id, ENTRY, name);
        let mut low = prefix.clone();
        if let Bound::Included(v) | Bound::Excluded(v) = &range.low {
            collate::write_order_key(v, &mut low);
        }
        let mut high = prefix;
        if let Bound::Included(v) | Bound::Excluded(v) = &range.high {
            collate::write_order_key(v, &mut high);
        }
        high.push(0xFF);
        let mut candidates = Vec::new();
        for item in snapshot.range(&self.indexes, low.as_slice()..high.as_slice()) {
            let id = item.value().map_err(|e| self.err("reading an index", e))?;
            let id = std::str::from_utf8(&id)
                .map_err(|_| format::corrupt("index entry id is not UTF-8"))?;
            let value = snapshot
                .get(&self.docs, format::key(meta.id, id.as_bytes()))
                .map_err(|e| self.err("reading a document", e))?
                .ok_or_else(|| format::corrupt("an index entry names a missing document"))?;
            let (header, body) = format::decode_head(&value)?;
            if header.leaf.deleted {
                return Err(format::corrupt("an index entry names a deleted document"));
            }
            candidates.push(Ok(Candidate {
                id: id.to_owned(),
                rev: header.leaf.rev,
                body: Arc::new(parse_body(body)?),
            }));
        }
        query::execute(query, &plan, candidates)
    }
}
