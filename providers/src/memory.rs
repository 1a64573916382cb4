//! The in-memory provider: a `DashMap` of databases, each a lock-protected ordered map.
//!
//! Invariants of one database (`MemoryDb`), all changed together under its write lock, so a
//! conditional write is atomic per document and conflicts behave as on CouchDB:
//! - `docs` holds every document ever written, live or tombstone, keyed by id (byte order);
//! - `by_seq` maps each document's latest sequence number to its id, one entry per document;
//! - `seq` is the highest sequence number handed out (the database's update sequence);
//! - `live`/`deleted` count the live documents and tombstones in `docs`.
//!
//! Bodies are stored behind `Arc` and cloned into every returned `Document`, so callers never
//! share state with the store. Sequence tokens are decimal numbers.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::feed::PendingCounts;
use crate::query::{self, Candidate};
use crate::write::{
    self, Leaf, SaveRequest, count_transition, delete_rev, history_after_edit,
    history_after_replication, local_body, revision_outcome,
};
use crate::{
    Change, ChangesPage, DatabaseInfo, DatabaseService, Document, Error, FindQuery,
    IndexDefinition, IndexStatus, Page, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff,
    WriteResult, validate,
};

/// The in-memory provider. Data lives as long as the value; cloning is not supported, share
/// it through `Arc`.
#[derive(Debug, Default)]
pub struct MemoryProvider {
    dbs: DashMap<String, Arc<RwLock<MemoryDb>>>,
}

#[derive(Debug, Default)]
struct MemoryDb {
    docs: BTreeMap<String, StoredDoc>,
    by_seq: BTreeMap<u64, String>,
    local: HashMap<String, Map<String, Value>>,
    /// JSON index definitions by name: they steer `find` exactly as on CouchDB; the data
    /// is small enough to scan, so there is no index data.
    indexes: BTreeMap<String, IndexDefinition>,
    seq: u64,
    live: u64,
    deleted: u64,
    /// The last changes page's `pending` (see `feed`).
    pending_counts: PendingCounts<()>,
}

#[derive(Debug)]
struct StoredDoc {
    leaf: Leaf,
    seq: u64,
    body: Arc<Map<String, Value>>,
    /// Ancestors of `leaf.rev`, newest first, consecutive generations (`write::REVS_LIMIT`).
    history: Vec<Rev>,
}

impl StoredDoc {
    fn to_document(&self, id: &str) -> Document {
        Document::assemble(id, &self.leaf.rev, (*self.body).clone())
    }
}

impl MemoryDb {
    fn leaf(&self, id: &str) -> Option<Leaf> {
        self.docs.get(id).map(|d| d.leaf)
    }

    /// The current revision of `id` and its ancestors.
    fn path(&self, id: &str) -> Option<(Rev, &[Rev])> {
        self.docs
            .get(id)
            .map(|d| (d.leaf.rev, d.history.as_slice()))
    }

    /// Records a new leaf for `id`, keeping `by_seq` and the counters consistent.
    fn commit(&mut self, id: &str, leaf: Leaf, body: Map<String, Value>, history: Vec<Rev>) {
        self.seq += 1;
        let seq = self.seq;
        let new = StoredDoc {
            leaf,
            seq,
            body: Arc::new(body),
            history,
        };
        let old = self.docs.insert(id.to_owned(), new);
        if let Some(old) = &old {
            self.by_seq.remove(&old.seq);
        }
        count_transition(&mut self.live, &mut self.deleted, old.map(|o| o.leaf), leaf);
        self.by_seq.insert(seq, id.to_owned());
    }

    fn save(&mut self, db: &str, id: &str, req: SaveRequest) -> Result<WriteResult> {
        let rev = req.next_rev(db, id, self.leaf(id))?;
        let leaf = Leaf {
            rev,
            deleted: false,
        };
        let history = history_after_edit(self.path(id));
        self.commit(id, leaf, req.body, history);
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    fn delete(&mut self, db: &str, id: &str, expected: Option<&Rev>) -> Result<WriteResult> {
        let rev = delete_rev(db, id, self.leaf(id), expected)?;
        let leaf = Leaf { rev, deleted: true };
        let history = history_after_edit(self.path(id));
        self.commit(id, leaf, Map::new(), history);
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    fn get(&self, db: &str, id: &str) -> Result<Document> {
        match self.docs.get(id) {
            None => Err(Error::doc_not_found(db, id, "missing")),
            Some(d) if d.leaf.deleted => Err(Error::doc_not_found(db, id, "deleted")),
            Some(d) => Ok(d.to_document(id)),
        }
    }
}

impl MemoryProvider {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The database, if it exists (reads never create one).
    fn existing(&self, db: &str) -> Result<Option<Arc<RwLock<MemoryDb>>>> {
        validate::database_name(db)?;
        Ok(self.dbs.get(db).map(|entry| Arc::clone(entry.value())))
    }

    /// The database, created if needed (writes create lazily).
    fn create_if_missing(&self, db: &str) -> Result<Arc<RwLock<MemoryDb>>> {
        validate::database_name(db)?;
        if let Some(entry) = self.dbs.get(db) {
            return Ok(Arc::clone(entry.value()));
        }
        Ok(Arc::clone(
            self.dbs.entry(db.to_owned()).or_default().value(),
        ))
    }
}

#[async_trait]
impl DatabaseService for MemoryProvider {
    fn provider_name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> crate::Capabilities {
        crate::Capabilities::STRICT
    }

    async fn list_databases(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.dbs.iter().map(|e| e.key().clone()).collect();
        names.sort();
        Ok(names)
    }

    async fn database_info(&self, db: &str) -> Result<DatabaseInfo> {
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        Ok(DatabaseInfo {
            name: db.to_owned(),
            doc_count: state.live,
            doc_del_count: state.deleted,
            update_seq: state.seq.to_string(),
        })
    }

    async fn delete_database(&self, db: &str) -> Result<()> {
        validate::database_name(db)?;
        self.dbs
            .remove(db)
            .map(|_| ())
            .ok_or_else(|| Error::db_not_found(db))
    }

    async fn get(&self, db: &str, id: &str) -> Result<Document> {
        validate::document_id(db, id)?;
        match self.existing(db)? {
            None => Err(Error::db_not_found(db)),
            Some(state) => state.read().get(db, id),
        }
    }

    async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        let req = SaveRequest::new(db, id, doc)?;
        let state = self.create_if_missing(db)?;
        let mut state = state.write();
        state.save(db, id, req)
    }

    async fn delete(&self, db: &str, id: &str) -> Result<WriteResult> {
        validate::document_id(db, id)?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let mut state = state.write();
        state.delete(db, id, None)
    }

    async fn delete_rev(&self, db: &str, id: &str, rev: &Rev) -> Result<WriteResult> {
        validate::document_id(db, id)?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let mut state = state.write();
        state.delete(db, id, Some(rev))
    }

    async fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        validate::limit(limit)?;
        let Some(state) = self.existing(db)? else {
            return Ok(Page {
                docs: Vec::new(),
                next: None,
            });
        };
        let state = state.read();
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut live = state
            .docs
            .range::<str, _>((lower, Bound::Unbounded))
            .filter(|(_, d)| !d.leaf.deleted);
        let docs: Vec<Document> = live
            .by_ref()
            .take(limit)
            .map(|(id, d)| d.to_document(id))
            .collect();
        let more = live.next().is_some();
        let next = if more {
            docs.last().and_then(|d| d.id().map(str::to_owned))
        } else {
            None
        };
        Ok(Page { docs, next })
    }

    async fn get_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<Document>>> {
        validate::database_name(db)?;
        let state = self.existing(db)?;
        let state = state.as_ref().map(|s| s.read());
        Ok(ids
            .iter()
            .map(|id| {
                validate::document_id(db, id)?;
                match &state {
                    None => Err(Error::doc_not_found(db, id, "missing")),
                    Some(s) => s.get(db, id),
                }
            })
            .collect())
    }

    async fn save_many(&self, db: &str, docs: Vec<Document>) -> Result<Vec<Result<WriteResult>>> {
        let prepared: Vec<Result<(String, SaveRequest)>> = docs
            .into_iter()
            .map(|doc| SaveRequest::for_bulk(db, doc))
            .collect();
        // Nothing valid to write (an empty batch included) creates nothing, as elsewhere.
        if prepared.iter().all(Result::is_err) {
            validate::database_name(db)?;
            return Ok(prepared
                .into_iter()
                .filter_map(Result::err)
                .map(Err)
                .collect());
        }
        let state = self.create_if_missing(db)?;
        let mut state = state.write();
        Ok(prepared
            .into_iter()
            .map(|p| p.and_then(|(id, req)| state.save(db, &id, req)))
            .collect())
    }

    async fn delete_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<WriteResult>>> {
        validate::database_name(db)?;
        let state = self.existing(db)?;
        let mut state = state.as_ref().map(|s| s.write());
        Ok(ids
            .iter()
            .map(|id| {
                validate::document_id(db, id)?;
                match &mut state {
                    None => Err(Error::doc_not_found(db, id, "missing")),
                    Some(s) => s.delete(db, id, None),
                }
            })
            .collect())
    }

    async fn changes(&self, db: &str, since: Option<&str>, limit: usize) -> Result<ChangesPage> {
        validate::limit(limit)?;
        let since = validate::sequence_token(since, "memory")?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        let mut after = state
            .by_seq
            .range((Bound::Excluded(since), Bound::Unbounded));
        let results: Vec<Change> = after
            .by_ref()
            .take(limit)
            .filter_map(|(seq, id)| {
                state.docs.get(id).map(|d| Change {
                    seq: seq.to_string(),
                    id: id.clone(),
                    rev: d.leaf.rev,
                    deleted: d.leaf.deleted,
                })
            })
            .collect();
        let known = state.pending_counts.known(&(), since, state.seq);
        let counted = if known.is_some() {
            0
        } else {
            after.count() as u64
        };
        let last = results
            .last()
            .and_then(|c| c.seq.parse().ok())
            .unwrap_or_else(|| since.max(state.seq));
        let pending =
            state
                .pending_counts
                .page((), known, counted, (results.len(), limit), last, state.seq);
        Ok(ChangesPage {
            results,
            last_seq: last.to_string(),
            pending,
        })
    }

    async fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        validate::local_id(db, id)?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        state
            .local
            .get(id)
            .map(|body| Document::from(body.clone()))
            .ok_or_else(|| Error::doc_not_found(db, &format!("_local/{id}"), "missing"))
    }

    async fn put_local(&self, db: &str, id: &str, doc: Document) -> Result<()> {
        let body = local_body(db, id, &doc)?;
        let state = self.create_if_missing(db)?;
        state.write().local.insert(id.to_owned(), body);
        Ok(())
    }

    async fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>> {
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        let indexes: Vec<IndexDefinition> = state.indexes.values().cloned().collect();
        let plan = query::plan(query, &indexes)?;
        let candidates = state
            .docs
            .iter()
            .filter(|(_, d)| !d.leaf.deleted)
            .map(|(id, d)| {
                Ok(Candidate {
                    id: id.clone(),
                    rev: d.leaf.rev,
                    body: Arc::clone(&d.body),
                })
            });
        query::execute(query, &plan, candidates)
    }

    async fn ensure_index(&self, db: &str, fields: &[&str], name: &str) -> Result<IndexStatus> {
        let index = IndexDefinition::new(name, fields)?;
        let state = self.create_if_missing(db)?;
        let mut state = state.write();
        if state.indexes.get(name) == Some(&index) {
            return Ok(IndexStatus::Exists);
        }
        state.indexes.insert(index.name.clone(), index);
        Ok(IndexStatus::Created)
    }

    async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        validate::database_name(db)?;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let state = self.create_if_missing(db)?;
        let mut state = state.write();
        Ok(docs
            .into_iter()
            .map(|doc| {
                let outcome = revision_outcome(db, &doc, state.leaf(&doc.id))?;
                if outcome == RevisionOutcome::Written {
                    let leaf = Leaf {
                        rev: doc.rev,
                        deleted: doc.deleted,
                    };
                    let history = history_after_replication(&doc, state.path(&doc.id));
                    let body = if doc.deleted { Map::new() } else { doc.body };
                    state.commit(&doc.id, leaf, body, history);
                }
                Ok(outcome)
            })
            .collect())
    }

    async fn current_revisions(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Option<(Rev, bool)>>> {
        validate::database_and_ids(db, ids)?;
        let Some(state) = self.existing(db)? else {
            return Ok(vec![None; ids.len()]);
        };
        let state = state.read();
        Ok(ids
            .iter()
            .map(|id| state.leaf(id).map(|l| (l.rev, l.deleted)))
            .collect())
    }

    async fn revs_diff(&self, db: &str, asked: &[(String, Vec<Rev>)]) -> Result<Vec<RevsDiff>> {
        validate::database_name(db)?;
        for (id, _) in asked {
            validate::document_id(db, id)?;
        }
        let state = self.existing(db)?;
        let state = state.as_ref().map(|s| s.read());
        Ok(asked
            .iter()
            .map(|(id, revs)| {
                let stored = state.as_ref().and_then(|s| s.path(id));
                write::revs_diff_of(stored, revs)
            })
            .collect())
    }

    async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        Ok(wanted
            .iter()
            .map(|(id, rev)| {
                validate::document_id(db, id)?;
                match state.docs.get(id) {
                    Some(d) if d.leaf.rev == *rev => Ok(RevisionedDoc {
                        id: id.clone(),
                        rev: *rev,
                        deleted: d.leaf.deleted,
                        body: (*d.body).clone(),
                        history: d.history.clone(),
                    }),
                    _ => Err(Error::doc_not_found(db, id, "missing")),
                }
            })
            .collect())
    }
}
