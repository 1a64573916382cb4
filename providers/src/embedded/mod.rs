//! The embedded provider: documents on local disk in fjall 3, crash-safe, single-process.
//!
//! One fjall `Database` holds five keyspaces shared by all databases. Writes are serialized by
//! one writer lock (the single-writer transaction model): under it, a write reads the
//! document's current leaf, checks the revision rules ([`crate::write`]), and puts the new
//! record, the move of its `changes` entry to the new sequence number and the database's new
//! metadata (and the moves of its secondary index entries) into one atomic cross-keyspace
//! `WriteBatch`, committed with `PersistMode::SyncAll`
//! unless the configuration relaxes durability. A bulk call is one batch. So a write is either
//! wholly on disk or not at all, even under `SIGKILL`. (fjall's `SingleWriterTxDatabase` gives
//! the same guarantees but copies every write through a transaction-local memtable first;
//! the batch skips that copy, which measured 1.5x faster for bulk saves.)
//!
//! Reads use the keyspaces or a snapshot directly (no lock). fjall calls block, so every
//! operation runs on tokio's blocking pool.
//!
//! # Key layout
//!
//! All integers are big-endian, so byte order of keys is numeric order.
//!
//! | keyspace    | key                                   | value                                  |
//! |-------------|---------------------------------------|----------------------------------------|
//! | `databases` | database name (UTF-8)                 | `DbMeta`: id, seq, live, deleted (4 x u64) |
//! | `databases` | `\0next_id`                           | next database id (u64)                 |
//! | `databases` | `\0purge\0` + id (u64)                | empty: a deleted database still to purge |
//! | `docs`      | db id (u64) + document id (UTF-8)     | record: version, flags, generation, hash, seq, body JSON, ancestors' hashes, their count (u16) |
//! | `changes`   | db id (u64) + seq (u64)               | flags, generation, hash, document id   |
//! | `local`     | db id (u64) + local id (UTF-8)        | body JSON                              |
//! | `indexes`   | db id (u64) + kind + …                | index definitions and entries (see `index`) |
//!
//! Database names start with `a-z`, so the `\0` keys never collide with them. A database id is
//! never reused, so the data of a deleted database is unreachable even before it is purged.
//! Invariants kept by every write transaction: each document has exactly one `changes` entry,
//! at the `seq` its record holds; `DbMeta.seq` is the highest seq handed out; `live`/`deleted`
//! count the records by their deleted flag.
//!
//! fjall is single-process: it holds a file lock, and a second open of the same path (from
//! another process or this one) fails with a `Storage` error naming the path.

mod format;
mod index;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use std::collections::HashMap;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode, Readable};
use parking_lot::Mutex;
use serde_json::{Map, Value};

use self::format::{DbMeta, NEXT_ID_KEY, PURGE_PREFIX, RecordHeader};
use self::index::{IndexCache, IndexedWrite, NewVersion};
use crate::feed::PendingCounts;
use crate::write::{
    Leaf, SaveRequest, count_transition, delete_rev, history_after_edit, history_after_replication,
    local_body, only, revision_outcome,
};
use crate::{
    Change, ChangesPage, DatabaseInfo, DatabaseService, Document, Error, FindQuery,
    IndexDefinition, IndexStatus, Page, Result, Rev, RevisionOutcome, RevisionedDoc, WriteResult,
    validate,
};

/// How durable a commit is before the write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fsync` on every commit (the default): an acknowledged write survives a power loss.
    #[default]
    Sync,
    /// Hand the commit to the OS without waiting for the disk: faster, survives a crash of
    /// the process, but a power loss or OS crash can lose the last acknowledged writes
    /// (never half of one).
    Buffered,
}

/// Typed configuration of the embedded provider.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Directory of the store; created if missing.
    pub path: PathBuf,
    /// Commit durability.
    pub durability: Durability,
    /// Block cache size in bytes.
    pub cache_bytes: u64,
    /// fjall background threads (flushes and compactions).
    pub worker_threads: usize,
}

impl EmbeddedConfig {
    /// Defaults sized for a small (2-core) machine: durable commits, 64 MiB cache, 2 threads.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::Sync,
            cache_bytes: 64 * 1024 * 1024,
            worker_threads: 2,
        }
    }
}

/// The embedded provider. Cheap to clone: clones share one open store.
#[derive(Clone)]
pub struct EmbeddedProvider {
    store: Arc<Store>,
}

impl fmt::Debug for EmbeddedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedProvider")
            .field("path", &self.store.path)
            .finish_non_exhaustive()
    }
}

struct Store {
    path: PathBuf,
    persist: PersistMode,
    /// Held for the whole read-check-commit of every write.
    writer: Mutex<()>,
    db: Database,
    databases: Keyspace,
    docs: Keyspace,
    changes: Keyspace,
    local: Keyspace,
    /// Secondary index definitions and entries (layout in the `index` module).
    indexes: Keyspace,
    index_cache: IndexCache,
    /// The last changes page's `pending` per database id (see `feed`).
    pending_counts: PendingCounts<u64>,
}

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
struct Pending {
    records: HashMap<Vec<u8>, Previous>,
    index_entries: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Memtable size per keyspace. fjall's default (64 MiB) times five keyspaces, plus sealed
/// memtables waiting for their flush, let a long bulk load hold hundreds of MiB; smaller
/// memtables keep memory bounded (measured: restoring 200,000 1 KB documents).
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// Deleted databases are purged in transactions of this many keys.
const PURGE_CHUNK: usize = 10_000;

fn engine(path: &Path, what: &str, e: fjall::Error) -> Error {
    match e {
        fjall::Error::Locked => Error::Storage {
            reason: format!(
                "the embedded store at {} is in use by another process (or already open in this one); \
                 close it there, or point EMBEDDED_PATH elsewhere",
                path.display()
            ),
        },
        other => Error::storage(format!("{what} failed in {}: {other}", path.display())),
    }
}

impl EmbeddedProvider {
    /// Opens (creating if needed) the store at `config.path`.
    pub async fn open(config: EmbeddedConfig) -> Result<Self> {
        let store = tokio::task::spawn_blocking(move || Store::open(config))
            .await
            .map_err(|e| Error::storage(format!("opening the embedded store panicked: {e}")))??;
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.store.path
    }

    /// Bytes the store's tables occupy on disk. The write-ahead journal (preallocated in
    /// large segments) is not counted; documents still only in the journal count once a
    /// flush writes them to tables (see [`compact`](Self::compact)).
    pub async fn disk_space(&self) -> Result<u64> {
        self.run(|s| Ok(s.keyspaces().iter().map(|ks| ks.disk_space()).sum()))
            .await
    }

    /// Flushes every keyspace to tables and compacts them fully, reclaiming the space of
    /// deleted documents and databases now rather than when background compaction gets to it.
    pub async fn compact(&self) -> Result<()> {
        self.run(|s| {
            for ks in s.keyspaces() {
                ks.rotate_memtable_and_wait()
                    .map_err(|e| s.err("flushing", e))?;
                ks.major_compact().map_err(|e| s.err("compaction", e))?;
            }
            Ok(())
        })
        .await
    }

    /// Runs a blocking store operation on tokio's blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| Error::storage(format!("an embedded store task panicked: {e}")))?
    }
}

impl Store {
    fn open(config: EmbeddedConfig) -> Result<Self> {
        let path = config.path;
        std::fs::create_dir_all(&path).map_err(|e| Error::Config {
            key: "EMBEDDED_PATH".into(),
            reason: format!("cannot create the directory {}: {e}", path.display()),
        })?;
        let db = Database::builder(&path)
            .cache_size(config.cache_bytes)
            .worker_threads(config.worker_threads.max(1))
            .open()
            .map_err(|e| match e {
                fjall::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                    Error::Config {
                        key: "EMBEDDED_PATH".into(),
                        reason: format!("{} is not writable: {io}", path.display()),
                    }
                }
                other => engine(&path, "opening the store", other),
            })?;
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(|e| engine(&path, "opening a keyspace", e))
        };
        let store = Store {
            databases: ks("databases")?,
            docs: ks("docs")?,
            changes: ks("changes")?,
            local: ks("local")?,
            indexes: ks("indexes")?,
            index_cache: IndexCache::default(),
            pending_counts: PendingCounts::default(),
            persist: match config.durability {
                Durability::Sync => PersistMode::SyncAll,
                Durability::Buffered => PersistMode::Buffer,
            },
            writer: Mutex::new(()),
            db,
            path,
        };
        store.resume_purges()?;
        Ok(store)
    }

    fn keyspaces(&self) -> [&Keyspace; 5] {
        [
            &self.databases,
            &self.docs,
            &self.changes,
            &self.local,
            &self.indexes,
        ]
    }

    fn err(&self, what: &str, e: fjall::Error) -> Error {
        engine(&self.path, what, e)
    }

    /// A new atomic batch; the caller must hold `writer`.
    fn batch(&self) -> OwnedWriteBatch {
        self.db.batch().durability(Some(self.persist))
    }

    fn commit(&self, batch: OwnedWriteBatch) -> Result<()> {
        batch.commit().map_err(|e| self.err("committing", e))
    }

    fn meta(&self, db: &str) -> Result<Option<DbMeta>> {
        self.databases
            .get(db)
            .map_err(|e| self.err("reading database metadata", e))?
            .map(|v| DbMeta::decode(&v))
            .transpose()
    }

    /// The database's metadata, allocating a fresh id (never reused) if it does not exist.
    /// The caller holds `writer`.
    fn meta_or_new(&self, batch: &mut OwnedWriteBatch, db: &str) -> Result<(DbMeta, bool)> {
        if let Some(meta) = self.meta(db)? {
            return Ok((meta, false));
        }
        let id = self
            .databases
            .get(NEXT_ID_KEY)
            .map_err(|e| self.err("reading the id counter", e))?
            .map_or(1, |v| format::be_u64(&v));
        batch.insert(&self.databases, NEXT_ID_KEY, (id + 1).to_be_bytes());
        let meta = DbMeta {
            id,
            seq: 0,
            live: 0,
            deleted: 0,
        };
        Ok((meta, true))
    }

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

    fn save_batch(
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

    fn delete_batch(
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
    fn revisions_batch(
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

    fn get(&self, db: &str, db_id: u64, id: &str) -> Result<Document> {
        let value = self
            .docs
            .get(format::key(db_id, id.as_bytes()))
            .map_err(|e| self.err("reading a document", e))?
            .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
        let (header, body) = format::decode_record(&value)?;
        if header.leaf.deleted {
            return Err(Error::doc_not_found(db, id, "deleted"));
        }
        stored_document(id, &header.leaf.rev, body)
    }

    /// Documents at exactly the wanted revisions, from one snapshot: see `read_revisions`.
    fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let snapshot = self.db.snapshot();
        let mut results = Vec::with_capacity(wanted.len());
        for (id, rev) in wanted {
            let read = validate::document_id(db, id).and_then(|()| {
                let value = snapshot
                    .get(&self.docs, format::key(meta.id, id.as_bytes()))
                    .map_err(|e| self.err("reading a document", e))?;
                let Some(value) = value else {
                    return Err(Error::doc_not_found(db, id, "missing"));
                };
                let (header, body, history) = format::decode_record_with_history(&value)?;
                if header.leaf.rev != *rev {
                    return Err(Error::doc_not_found(db, id, "missing"));
                }
                Ok(RevisionedDoc {
                    id: id.clone(),
                    rev: *rev,
                    deleted: header.leaf.deleted,
                    body: if header.leaf.deleted {
                        Map::new()
                    } else {
                        parse_body(body)?
                    },
                    history: format::decode_history(rev, history),
                })
            });
            results.push(read);
        }
        Ok(results)
    }

    fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        let Some(meta) = self.meta(db)? else {
            return Ok(Page {
                docs: Vec::new(),
                next: None,
            });
        };
        // The smallest key greater than `after` is `after` + 0x00.
        let start = match after {
            Some(a) => {
                let mut k = format::key(meta.id, a.as_bytes());
                k.push(0);
                k
            }
            None => format::key(meta.id, b""),
        };
        let end = format::end_of(meta.id);
        let snapshot = self.db.snapshot();
        // Records first (cheap: shared slices), then parsed, on both cores for a full page.
        let mut records = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for item in snapshot.range(&self.docs, start.as_slice()..end.as_slice()) {
            let (key, value) = item
                .into_inner()
                .map_err(|e| self.err("listing documents", e))?;
            let (header, _) = format::decode_record(&value)?;
            if header.leaf.deleted {
                continue;
            }
            if records.len() == limit {
                more = true;
                break;
            }
            records.push((key, value));
        }
        let docs = map_halves(records, |(key, value)| {
            let (header, body) = format::decode_record(&value)?;
            let id = std::str::from_utf8(&key[8..])
                .map_err(|_| format::corrupt("document id is not UTF-8"))?;
            stored_document(id, &header.leaf.rev, body)
        })
        .into_iter()
        .collect::<Result<Vec<Document>>>()?;
        let next = if more {
            docs.last().and_then(|d| d.id().map(str::to_owned))
        } else {
            None
        };
        Ok(Page { docs, next })
    }

    fn changes(&self, db: &str, since: u64, limit: usize) -> Result<ChangesPage> {
        // Metadata and feed from one snapshot, so the update seq names exactly what is read.
        let snapshot = self.db.snapshot();
        let meta = snapshot
            .get(&self.databases, db)
            .map_err(|e| self.err("reading database metadata", e))?
            .map(|v| DbMeta::decode(&v))
            .transpose()?
            .ok_or_else(|| Error::db_not_found(db))?;
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
            let (leaf, id) = format::decode_change(&value)?;
            results.push(Change {
                seq: format::be_u64(&key[8..]).to_string(),
                id,
                rev: leaf.rev,
                deleted: leaf.deleted,
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

    fn delete_database(&self, db: &str) -> Result<()> {
        let writer = self.writer.lock();
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let mut batch = self.batch();
        batch.remove(&self.databases, db);
        batch.insert(&self.databases, format::purge_key(meta.id), []);
        self.commit(batch)?;
        // The id is unreachable now; purging needs no lock.
        drop(writer);
        self.purge(meta.id)
    }

    /// Removes every key of a deleted database, then its purge marker. Idempotent, so an
    /// interrupted purge is simply run again at the next open.
    fn purge(&self, db_id: u64) -> Result<()> {
        let start = format::key(db_id, b"");
        let end = format::end_of(db_id);
        self.index_cache.write().remove(&db_id);
        self.pending_counts.forget(&db_id);
        for ks in [&self.docs, &self.changes, &self.local, &self.indexes] {
            loop {
                let keys = ks
                    .range(start.as_slice()..end.as_slice())
                    .take(PURGE_CHUNK)
                    .map(|item| item.key().map_err(|e| self.err("purging", e)))
                    .collect::<Result<Vec<_>>>()?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = self.batch();
                for key in keys {
                    batch.remove(ks, key);
                }
                self.commit(batch)?;
            }
        }
        let mut batch = self.batch();
        batch.remove(&self.databases, format::purge_key(db_id));
        self.commit(batch)
    }

    fn resume_purges(&self) -> Result<()> {
        let pending = self
            .databases
            .prefix(PURGE_PREFIX)
            .map(|item| {
                let key = item
                    .key()
                    .map_err(|e| self.err("reading purge markers", e))?;
                Ok(format::be_u64(&key[PURGE_PREFIX.len()..]))
            })
            .collect::<Result<Vec<u64>>>()?;
        pending.into_iter().try_for_each(|id| self.purge(id))
    }

    fn list_databases(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for item in self.databases.iter() {
            let key = item.key().map_err(|e| self.err("listing databases", e))?;
            if key.first() == Some(&0) {
                continue;
            }
            let name = std::str::from_utf8(&key)
                .map_err(|_| format::corrupt("database name is not UTF-8"))?;
            names.push(name.to_owned());
        }
        Ok(names)
    }

    fn put_local(&self, db: &str, id: &str, body: &[u8]) -> Result<()> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let (meta, created) = self.meta_or_new(&mut batch, db)?;
        if created {
            batch.insert(&self.databases, db, meta.encode());
        }
        batch.insert(&self.local, format::key(meta.id, id.as_bytes()), body);
        self.commit(batch)
    }

    fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let value = self
            .local
            .get(format::key(meta.id, id.as_bytes()))
            .map_err(|e| self.err("reading a local document", e))?
            .ok_or_else(|| Error::doc_not_found(db, &format!("_local/{id}"), "missing"))?;
        Ok(Document::from(parse_body(&value)?))
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
fn map_halves<T: Send, U: Send>(
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

fn stored_document(id: &str, rev: &Rev, json: &[u8]) -> Result<Document> {
    Document::from_stored_json(id, rev, json)
        .map_err(|e| format::corrupt(&format!("stored body of {id:?}: {e}")))
}

fn parse_body(json: &[u8]) -> Result<Map<String, Value>> {
    serde_json::from_slice(json).map_err(|e| format::corrupt(&format!("stored body: {e}")))
}

#[async_trait]
impl DatabaseService for EmbeddedProvider {
    fn provider_name(&self) -> &'static str {
        "embedded"
    }

    async fn list_databases(&self) -> Result<Vec<String>> {
        self.run(|s| s.list_databases()).await
    }

    async fn database_info(&self, db: &str) -> Result<DatabaseInfo> {
        validate::database_name(db)?;
        let name = db.to_owned();
        self.run(move |s| {
            let meta = s.meta(&name)?.ok_or_else(|| Error::db_not_found(&name))?;
            Ok(DatabaseInfo {
                name,
                doc_count: meta.live,
                doc_del_count: meta.deleted,
                update_seq: meta.seq.to_string(),
            })
        })
        .await
    }

    async fn delete_database(&self, db: &str) -> Result<()> {
        validate::database_name(db)?;
        let name = db.to_owned();
        self.run(move |s| s.delete_database(&name)).await
    }

    async fn get(&self, db: &str, id: &str) -> Result<Document> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        let (db, id) = (db.to_owned(), id.to_owned());
        self.run(move |s| {
            let meta = s.meta(&db)?.ok_or_else(|| Error::db_not_found(&db))?;
            s.get(&db, meta.id, &id)
        })
        .await
    }

    async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        validate::database_name(db)?;
        let req = SaveRequest::new(db, id, doc)?;
        let (db, id) = (db.to_owned(), id.to_owned());
        only(
            self.run(move |s| s.save_batch(&db, vec![Ok((id, req))]))
                .await?,
        )
    }

    async fn delete(&self, db: &str, id: &str) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        let (db, id) = (db.to_owned(), id.to_owned());
        only(
            self.run(move |s| s.delete_batch(&db, vec![id], None))
                .await?,
        )
    }

    async fn delete_rev(&self, db: &str, id: &str, rev: &Rev) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        let (db, id, rev) = (db.to_owned(), id.to_owned(), *rev);
        only(
            self.run(move |s| s.delete_batch(&db, vec![id], Some(rev)))
                .await?,
        )
    }

    async fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        validate::database_name(db)?;
        validate::limit(limit)?;
        let (db, after) = (db.to_owned(), after.map(str::to_owned));
        self.run(move |s| s.list_page(&db, after.as_deref(), limit))
            .await
    }

    async fn get_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<Document>>> {
        validate::database_name(db)?;
        let (db, ids) = (db.to_owned(), ids.to_vec());
        self.run(move |s| {
            let meta = s.meta(&db)?;
            Ok(ids
                .iter()
                .map(|id| {
                    validate::document_id(&db, id)?;
                    match meta {
                        None => Err(Error::doc_not_found(&db, id, "missing")),
                        Some(m) => s.get(&db, m.id, id),
                    }
                })
                .collect())
        })
        .await
    }

    async fn save_many(&self, db: &str, docs: Vec<Document>) -> Result<Vec<Result<WriteResult>>> {
        validate::database_name(db)?;
        let db = db.to_owned();
        self.run(move |s| {
            // Validation too runs on both cores.
            let requests = map_halves(docs, |doc| SaveRequest::for_bulk(&db, doc));
            s.save_batch(&db, requests)
        })
        .await
    }

    async fn delete_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<WriteResult>>> {
        validate::database_name(db)?;
        let (db, ids) = (db.to_owned(), ids.to_vec());
        self.run(move |s| s.delete_batch(&db, ids, None)).await
    }

    async fn changes(&self, db: &str, since: Option<&str>, limit: usize) -> Result<ChangesPage> {
        validate::database_name(db)?;
        validate::limit(limit)?;
        let since = validate::sequence_token(since, "embedded")?;
        let db = db.to_owned();
        self.run(move |s| s.changes(&db, since, limit)).await
    }

    async fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        validate::database_name(db)?;
        validate::local_id(db, id)?;
        let (db, id) = (db.to_owned(), id.to_owned());
        self.run(move |s| s.get_local(&db, &id)).await
    }

    async fn put_local(&self, db: &str, id: &str, doc: Document) -> Result<()> {
        validate::database_name(db)?;
        let body = local_body(db, id, &doc)?;
        let json = serde_json::to_vec(&body).map_err(Error::storage)?;
        let (db, id) = (db.to_owned(), id.to_owned());
        self.run(move |s| s.put_local(&db, &id, &json)).await
    }

    async fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>> {
        validate::database_name(db)?;
        let (db, query) = (db.to_owned(), query.clone());
        self.run(move |s| s.find(&db, &query)).await
    }

    async fn ensure_index(&self, db: &str, fields: &[&str], name: &str) -> Result<IndexStatus> {
        validate::database_name(db)?;
        let index = IndexDefinition::new(name, fields)?;
        let db = db.to_owned();
        self.run(move |s| s.ensure_index(&db, index)).await
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
        let db = db.to_owned();
        self.run(move |s| s.revisions_batch(&db, docs)).await
    }

    async fn current_revisions(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Option<(Rev, bool)>>> {
        validate::database_and_ids(db, ids)?;
        let (db, ids) = (db.to_owned(), ids.to_vec());
        self.run(move |s| {
            let Some(meta) = s.meta(&db)? else {
                return Ok(vec![None; ids.len()]);
            };
            ids.iter()
                .map(|id| {
                    let value = s
                        .docs
                        .get(format::key(meta.id, id.as_bytes()))
                        .map_err(|e| s.err("reading a document", e))?;
                    value
                        .map(|v| {
                            let (header, _) = format::decode_record(&v)?;
                            Ok((header.leaf.rev, header.leaf.deleted))
                        })
                        .transpose()
                })
                .collect()
        })
        .await
    }

    async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        validate::database_name(db)?;
        let (db, wanted) = (db.to_owned(), wanted.to_vec());
        self.run(move |s| s.read_revisions(&db, &wanted)).await
    }
}
