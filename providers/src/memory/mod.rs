//! The in-memory provider: a `DashMap` of databases, each a lock-protected ordered map of
//! documents, each document its revision tree (`rev_tree`).
//!
//! Invariants of one database (`MemoryDb`), all changed together under its write lock, so a
//! conditional write is atomic per document and conflicts behave as on CouchDB:
//! - `docs` holds every document ever written, keyed by id (byte order), with its tree;
//! - `by_seq` maps each document's latest sequence number to its id, one entry per document;
//! - `seq` is the highest sequence number handed out (the database's update sequence);
//! - `live`/`deleted` count the documents whose winner is live / a tombstone.
//!
//! Bodies are stored behind `Arc` and cloned into every returned `Document`, so callers never
//! share state with the store. Ancestors keep their bodies until `compact`. Sequence tokens
//! are decimal numbers.

mod feed;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::attachment;
use crate::feed::PendingCounts;
use crate::parallel::map_on_every_core;
use crate::query::{self, Candidate};
use crate::rev_tree::{RevTree, Stored};
use crate::tree_read::{self, Bodies};
use crate::watch::{ChangeStream, CommitSignal, WatchOptions};
use crate::write::{
    Edit, Leaf, REVS_LIMIT, SaveRequest, count_transition, local_body, merge_revision,
    prepare_revisioned,
};
use crate::{
    Attachment, AttachmentRead, Change, ChangesPage, DatabaseInfo, DatabaseService, Document,
    Error, FindQuery, GetOptions, IndexDefinition, IndexStatus, NewAttachment, OpenRev, OpenRevs,
    Page, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff, WriteResult, validate,
};

/// The in-memory provider. Data lives as long as the value; cloning is not supported, share
/// it through `Arc`.
#[derive(Debug)]
pub struct MemoryProvider {
    dbs: DashMap<String, Arc<RwLock<MemoryDb>>>,
    /// Tells this store from any other in `location`.
    instance: u64,
}

impl Default for MemoryProvider {
    fn default() -> Self {
        Self {
            dbs: DashMap::new(),
            instance: fastrand::u64(..),
        }
    }
}

#[derive(Debug)]
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
    revs_limit: u64,
    /// The last changes page's `pending` (see `feed`).
    pending_counts: PendingCounts<()>,
    /// Attachment bytes as stored, by MD5: shared by every revision that holds them, swept
    /// by `compact` when no revision does.
    blobs: HashMap<[u8; 16], Bytes>,
    /// Bumped on every change (see `watch`); streams hold the database, not its name.
    signal: CommitSignal,
    /// Set when the database is deleted, so streams holding it end with `NotFound`.
    dropped: bool,
}

impl Default for MemoryDb {
    fn default() -> Self {
        Self {
            docs: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            local: HashMap::new(),
            indexes: BTreeMap::new(),
            seq: 0,
            live: 0,
            deleted: 0,
            revs_limit: REVS_LIMIT,
            pending_counts: PendingCounts::default(),
            blobs: HashMap::new(),
            signal: CommitSignal::default(),
            dropped: false,
        }
    }
}

#[derive(Debug)]
struct StoredDoc {
    tree: RevTree,
    seq: u64,
}

impl StoredDoc {
    /// The winner's revision and body when it is live.
    fn live(&self) -> Option<(Rev, &Arc<Map<String, Value>>)> {
        let winner = self.tree.winner()?;
        match (winner.deleted, winner.body) {
            (false, Some(body)) => Some((winner.rev, body)),
            _ => None,
        }
    }

    fn to_document(&self, id: &str) -> Option<Document> {
        self.live()
            .map(|(rev, body)| Document::assemble(id, &rev, (**body).clone()))
    }
}

impl MemoryDb {
    fn tree(&self, id: &str) -> Option<&RevTree> {
        self.docs.get(id).map(|d| &d.tree)
    }

    /// Edits `id`'s revision tree in place (`None` for a document not stored yet) with
    /// `change`, which says whether it changed anything. A changed document gets the next
    /// sequence number (its `by_seq` entry moves, keeping its id string), an unchanged one
    /// keeps its own; the live/deleted counters follow its winner. The tree stays where it
    /// is in `docs`: no key is freed and allocated again for an update.
    fn edit<R>(&mut self, id: &str, change: impl FnOnce(&mut Option<RevTree>) -> (R, bool)) -> R {
        let Some(stored) = self.docs.get_mut(id) else {
            let mut tree = None;
            let (out, _) = change(&mut tree);
            if let Some(new) = tree.as_ref().and_then(Leaf::winner_of) {
                count_transition(&mut self.live, &mut self.deleted, None, new);
                self.seq += 1;
                self.by_seq.insert(self.seq, id.to_owned());
                self.docs.insert(
                    id.to_owned(),
                    StoredDoc {
                        tree: tree.unwrap_or_default(),
                        seq: self.seq,
                    },
                );
                self.signal.notify();
            }
            return out;
        };
        let before = Leaf::winner_of(&stored.tree);
        let mut tree = Some(std::mem::take(&mut stored.tree));
        let (out, changed) = change(&mut tree);
        stored.tree = tree.unwrap_or_default();
        let Some(after) = Leaf::winner_of(&stored.tree) else {
            // Nothing left to serve (not reached by any edit): the document goes.
            let seq = stored.seq;
            self.docs.remove(id);
            self.by_seq.remove(&seq);
            return out;
        };
        count_transition(&mut self.live, &mut self.deleted, before, after);
        if changed {
            let old = std::mem::replace(&mut stored.seq, self.seq + 1);
            self.seq += 1;
            let key = self.by_seq.remove(&old).unwrap_or_else(|| id.to_owned());
            self.by_seq.insert(self.seq, key);
        }
        self.signal.notify();
        out
    }

    /// Up to `limit` changes after `since`, and how many follow them unless the database's
    /// pending count for `since` is known (see `feed`).
    fn changes_after(&self, since: u64, limit: usize, count_rest: bool) -> (Vec<Change>, u64) {
        let mut after = self
            .by_seq
            .range((Bound::Excluded(since), Bound::Unbounded));
        let results: Vec<Change> = after
            .by_ref()
            .take(limit)
            .filter_map(|(seq, id)| {
                let doc = self.docs.get(id)?;
                tree_read::change(id, seq.to_string(), &doc.tree)
            })
            .collect();
        let counted = if count_rest { after.count() as u64 } else { 0 };
        (results, counted)
    }

    fn save(&mut self, db: &str, id: &str, mut req: SaveRequest) -> Result<WriteResult> {
        let tree = self.tree(id);
        let edit = req.plan(db, id, tree, &|rev| Ok(stored_attachments(tree, rev)))?;
        for blob in req.new_blobs() {
            self.blobs
                .entry(blob.digest)
                .or_insert_with(|| blob.bytes.clone());
        }
        self.apply(id, edit, req.body)
    }

    /// The stored body of leaf `rev` of `id`, if it is one.
    fn leaf_body(&self, id: &str, rev: &Rev) -> Option<&Map<String, Value>> {
        let node = self.tree(id)?.get(rev)?;
        match &node.value {
            Stored::Body { body, .. } if node.is_leaf() => Some(body),
            _ => None,
        }
    }

    /// Drops attachment bytes no revision holds any more.
    fn sweep_blobs(&mut self) {
        let mut held = std::collections::HashSet::new();
        for doc in self.docs.values() {
            for node in doc.tree.nodes() {
                if let Stored::Body { body, .. } = &node.value {
                    held.extend(attachment::digests(body));
                }
            }
        }
        self.blobs.retain(|digest, _| held.contains(digest));
    }

    fn delete(&mut self, db: &str, id: &str, expected: Option<&Rev>) -> Result<WriteResult> {
        let edit = Edit::delete(db, id, self.tree(id), expected)?;
        self.apply(id, edit, Map::new())
    }

    fn apply(&mut self, id: &str, edit: Edit, body: Map<String, Value>) -> Result<WriteResult> {
        let revs_limit = self.revs_limit;
        self.edit(id, |tree| {
            edit.apply(tree, body, revs_limit);
            ((), true)
        });
        Ok(WriteResult {
            id: id.to_owned(),
            rev: edit.rev,
        })
    }

    fn get(&self, db: &str, id: &str) -> Result<Document> {
        match self.docs.get(id) {
            None => Err(Error::doc_not_found(db, id, "missing")),
            Some(d) => d
                .to_document(id)
                .ok_or_else(|| Error::doc_not_found(db, id, "deleted")),
        }
    }
}

/// The stored `_attachments` of revision `rev` of `tree`.
fn stored_attachments(tree: Option<&RevTree>, rev: &Rev) -> Option<Map<String, Value>> {
    match &tree?.get(rev)?.value {
        Stored::Body { body, .. } => body
            .get(attachment::ATTACHMENTS)
            .and_then(Value::as_object)
            .cloned(),
        _ => None,
    }
}

impl Bodies for MemoryDb {
    fn body(&self, _rev: &Rev) -> Result<Option<Arc<Map<String, Value>>>> {
        Ok(None)
    }

    fn attachment(&self, digest: &[u8; 16]) -> Result<Bytes> {
        self.blobs
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::storage("an attachment's bytes are missing from the store"))
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

    fn location(&self) -> String {
        format!("memory:{:016x}", self.instance)
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
        let (_, state) = self.dbs.remove(db).ok_or_else(|| Error::db_not_found(db))?;
        let mut state = state.write();
        state.dropped = true;
        state.signal.notify();
        Ok(())
    }

    async fn get(&self, db: &str, id: &str) -> Result<Document> {
        validate::document_id(db, id)?;
        match self.existing(db)? {
            None => Err(Error::db_not_found(db)),
            Some(state) => state.read().get(db, id),
        }
    }

    async fn get_with(&self, db: &str, id: &str, options: &GetOptions) -> Result<Document> {
        validate::document_id(db, id)?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        let tree = state
            .tree(id)
            .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
        tree_read::get_with(db, id, tree, options, state.revs_limit, &*state)
    }

    async fn open_revs(
        &self,
        db: &str,
        id: &str,
        which: &OpenRevs,
        revs: bool,
    ) -> Result<Vec<OpenRev>> {
        validate::document_id(db, id)?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        tree_read::open_revs(
            db,
            id,
            state.tree(id),
            which,
            revs,
            state.revs_limit,
            &*state,
        )
    }

    async fn create(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        let req = SaveRequest::for_create(db, id, doc)?;
        let state = self.create_if_missing(db)?;
        let mut state = state.write();
        state.save(db, id, req)
    }

    async fn revs_limit(&self, db: &str) -> Result<u64> {
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let limit = state.read().revs_limit;
        Ok(limit)
    }

    async fn set_revs_limit(&self, db: &str, limit: u64) -> Result<()> {
        validate::revs_limit(limit)?;
        let state = self.create_if_missing(db)?;
        state.write().revs_limit = limit;
        Ok(())
    }

    async fn compact(&self, db: &str) -> Result<()> {
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let mut state = state.write();
        for doc in state.docs.values_mut() {
            doc.tree.compact();
        }
        state.sweep_blobs();
        Ok(())
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
            .filter_map(|(id, d)| d.to_document(id));
        let docs: Vec<Document> = live.by_ref().take(limit).collect();
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
        // Revisions hashed on every core under the read lock; the write lock below only
        // checks each still goes on the parent it was hashed for.
        let prepared = {
            let reading = state.read();
            map_on_every_core(prepared, |p| {
                let (id, mut req) = p?;
                req.hash_ahead(db, &id, reading.tree(&id));
                Ok((id, req))
            })
        };
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
        let known = state.pending_counts.known(&(), since, state.seq);
        let (results, counted) = state.changes_after(since, limit, known.is_none());
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

    async fn watch(&self, db: &str, options: WatchOptions) -> Result<ChangeStream> {
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        feed::watch(db, state, &options)
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
        let candidates = state.docs.iter().filter_map(|(id, d)| {
            d.live().map(|(rev, body)| {
                Ok(Candidate {
                    id: id.clone(),
                    rev,
                    body: Arc::clone(body),
                })
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
        let limit = state.revs_limit;
        Ok(docs
            .into_iter()
            .map(|mut doc| {
                let tree = state.tree(&doc.id);
                let blobs = prepare_revisioned(db, &mut doc, &|name, digest| {
                    let bodies = tree
                        .into_iter()
                        .flat_map(|t| t.nodes())
                        .filter_map(|n| match &n.value {
                            Stored::Body { body, .. } => Some(&**body),
                            _ => None,
                        });
                    attachment::find_stub(bodies, name, digest)
                })?;
                for blob in blobs {
                    state.blobs.entry(blob.digest).or_insert(blob.bytes);
                }
                let id = doc.id.clone();
                Ok(state.edit(&id, |tree| merge_revision(tree, doc, limit)))
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
            .map(|id| {
                state
                    .tree(id)
                    .and_then(Leaf::winner_of)
                    .map(|l| (l.rev, l.deleted))
            })
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
            .map(|(id, revs)| match state.as_ref().and_then(|s| s.tree(id)) {
                Some(tree) => tree.revs_diff(revs),
                None => RevTree::default().revs_diff(revs),
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
                let tree = state
                    .tree(id)
                    .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
                tree_read::revisioned(db, id, tree, rev, state.revs_limit, &*state)
            })
            .collect())
    }

    async fn put_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        attachment: NewAttachment,
    ) -> Result<WriteResult> {
        validate::document_id(db, id)?;
        let state = self.create_if_missing(db)?;
        let mut state = state.write();
        let upload = attachment::prepare_upload(db, id, name, attachment)?;
        let body = rev.and_then(|r| state.leaf_body(id, r));
        let req = SaveRequest::for_attachment(db, id, name, rev.copied(), Some(upload), body)?;
        state.save(db, id, req)
    }

    async fn get_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<Attachment> {
        validate::document_id(db, id)?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let state = state.read();
        let tree = state
            .tree(id)
            .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
        let body = tree_read::attachment_body(db, id, tree, options.rev.as_ref(), &*state)?;
        attachment::read(db, id, name, &body, options.encoded, &|d| {
            state.attachment(d)
        })
    }

    async fn delete_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: &Rev,
    ) -> Result<WriteResult> {
        validate::document_id(db, id)?;
        let state = self.existing(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let mut state = state.write();
        let body = state.leaf_body(id, rev);
        let req = SaveRequest::for_attachment(db, id, name, Some(*rev), None, body)?;
        state.save(db, id, req)
    }
}
