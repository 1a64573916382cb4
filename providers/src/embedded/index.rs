//! Secondary JSON indexes of the embedded provider, and `find`.
//!
//! An index lives in the `indexes` keyspace next to its definition and is maintained in the
//! same atomic batch as every document write, so it is never behind or ahead of the
//! documents, even after a crash. Creating an index builds it for the existing documents
//! under the writer lock, in batches of [`BUILD_CHUNK`] documents so that the build's memory
//! does not grow with the database: the definition is removed first and written last, so a
//! `find` never plans with a half-built index, and a build cut short by a crash leaves
//! entries without a definition, which the next build of that name clears first.
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

/// Documents whose entries go into one committed batch while an index is built or cleared.
const BUILD_CHUNK: usize = 10_000;

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

/// The least key after `key` (itself followed by `0x00`).
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
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

    /// Creates or replaces an index and builds it under the writer lock, in chunks (see the
    /// module doc).
    pub(super) fn ensure_index(&self, db: &str, index: IndexDefinition) -> Result<IndexStatus> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let (meta, created) = self.meta_or_new(&mut batch, db)?;
        let defs = self.index_definitions(meta.id)?;
        if defs.contains(&index) {
            return Ok(IndexStatus::Exists);
        }
        if created {
            batch.insert(&self.databases, db, meta.encode());
        }
        // Out first (see the module doc): from here until the end, no plan uses this name.
        batch.remove(&self.indexes, named(meta.id, DEFINITION, &index.name));
        self.commit(batch)?;
        let mut defs: Vec<IndexDefinition> = defs
            .iter()
            .filter(|d| d.name != index.name)
            .cloned()
            .collect();
        self.index_cache
            .write()
            .insert(meta.id, Arc::new(defs.clone()));
        self.clear_entries(&meta, &index.name)?;
        self.build_entries(&meta, &index)?;
        let definition = serde_json::to_vec(&index).map_err(Error::storage)?;
        let mut batch = self.batch();
        batch.insert(
            &self.indexes,
            named(meta.id, DEFINITION, &index.name),
            definition,
        );
        self.commit(batch)?;
        defs.push(index);
        self.index_cache.write().insert(meta.id, Arc::new(defs));
        Ok(IndexStatus::Created)
    }

    /// Removes every entry of index `name` (a replaced definition's, or a build cut short),
    /// in chunks (see [`Store::in_chunks`]).
    fn clear_entries(&self, meta: &DbMeta, name: &str) -> Result<()> {
        for kind in [ENTRY, REVERSE] {
            let prefix = named(meta.id, kind, name);
            self.in_chunks(
                &self.indexes,
                prefix.clone(),
                |key| key.starts_with(&prefix),
                "replacing an index",
                |batch, key, _| {
                    batch.remove(&self.indexes, key);
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    /// Adds the entries of every live document of the database, in chunks (see
    /// [`Store::in_chunks`]). The caller holds the writer lock, so no document changes
    /// between the chunks.
    fn build_entries(&self, meta: &DbMeta, index: &IndexDefinition) -> Result<()> {
        let end = format::end_of(meta.id);
        self.in_chunks(
            &self.docs,
            format::key(meta.id, b""),
            |key| key < end.as_slice(),
            "building an index",
            |batch, key, value| {
                let (header, body) = format::decode_head(value)?;
                if header.leaf.deleted {
                    return Ok(());
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
                Ok(())
            },
        )
    }

    /// Walks `keyspace` from `from` while `within` holds, giving each entry to `each` to put
    /// its changes into a batch, committed every [`BUILD_CHUNK`] entries read. The caller
    /// holds the writer lock. Each chunk reads with an iterator of its own, dropped before
    /// its commit: an iterator holds a snapshot, and while one is open the engine keeps
    /// every memtable written after it, so one iterator across a whole index build held
    /// every entry in memory (3.3 GiB at 10M documents). A chunk that changes nothing (the
    /// last one of a count that is a multiple of the chunk, or only deleted documents) is
    /// not committed: no fsync and no wake for nothing.
    fn in_chunks(
        &self,
        keyspace: &fjall::Keyspace,
        from: Vec<u8>,
        within: impl Fn(&[u8]) -> bool,
        what: &str,
        mut each: impl FnMut(&mut OwnedWriteBatch, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut from = from;
        loop {
            let mut batch = self.batch();
            let mut read = 0;
            let mut next = None;
            for item in keyspace.range(from.as_slice()..) {
                let (key, value) = item.into_inner().map_err(|e| self.err(what, e))?;
                if !within(&key) {
                    break;
                }
                each(&mut batch, &key, &value)?;
                read += 1;
                if read == BUILD_CHUNK {
                    next = Some(successor(&key));
                    break;
                }
            }
            if !batch.is_empty() {
                self.commit(batch)?;
            }
            match next {
                Some(after) => from = after,
                None => return Ok(()),
            }
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{DatabaseService, EmbeddedConfig, EmbeddedProvider};

    /// Entries of index `name` of `db` on disk.
    fn entries(store: &Store, db: &str, name: &str) -> usize {
        let meta = store.meta(db).expect("meta").expect("the database");
        store.indexes.prefix(named(meta.id, ENTRY, name)).count()
    }

    fn doc(value: serde_json::Value) -> Document {
        Document::try_from(value).expect("an object")
    }

    #[tokio::test]
    async fn a_build_spans_chunks_and_a_cut_short_one_is_cleared_by_the_next() {
        let dir = tempfile::tempdir().expect("temp dir");
        let svc = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
            .await
            .expect("open");
        let n = BUILD_CHUNK + 50;
        let docs: Vec<Document> = (0..n)
            .map(|i| doc(json!({"_id": format!("d{i:06}"), "n": i})))
            .collect();
        for saved in svc.save_many("db", docs).await.expect("save_many") {
            saved.expect("saved");
        }
        assert_eq!(
            svc.ensure_index("db", &["n"], "by-n").await.expect("index"),
            IndexStatus::Created
        );
        assert_eq!(
            entries(&svc.store, "db", "by-n"),
            n,
            "every document, across chunks"
        );

        // A build cut short: its entries are on disk, its definition is not. Writes made
        // meanwhile do not maintain an index nobody defined, so its entries go stale.
        let meta = svc.store.meta("db").expect("meta").expect("the database");
        svc.store
            .indexes
            .remove(named(meta.id, DEFINITION, "by-n"))
            .expect("remove the definition");
        svc.store.index_cache.write().clear();
        svc.delete("db", "d000002").await.expect("delete");
        svc.save("db", "d000003", doc(json!({"n": -5})))
            .await
            .expect("update");

        assert_eq!(
            svc.ensure_index("db", &["n"], "by-n").await.expect("index"),
            IndexStatus::Created
        );
        assert_eq!(
            entries(&svc.store, "db", "by-n"),
            n - 1,
            "no stale entry kept"
        );
        let query = FindQuery::from_json(&json!({
            "selector": {"n": {"$lt": 4}},
            "sort": ["n"],
        }))
        .expect("query");
        let found: Vec<String> = svc
            .find("db", &query)
            .await
            .expect("find")
            .iter()
            .map(|d| d.id().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(found, ["d000003", "d000000", "d000001"]);
    }
}
