//! The store under the embedded provider: the fjall database and its seven keyspaces, opening,
//! batches and commits, database metadata, the list of databases, and deleting and purging
//! a database. The key layout is documented in the parent module.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode, Readable, Snapshot,
};
use parking_lot::Mutex;

use super::attachments::Uploads;
use super::format::{self, DbMeta, NEXT_ID_KEY, PURGE_PREFIX};
use super::group_commit::GroupCommit;
use super::index::IndexCache;
use super::journal::JournalSync;
use super::{Durability, EmbeddedConfig};
use crate::feed::PendingCounts;
use crate::watch::CommitSignal;
use crate::write::REVS_LIMIT;
use crate::{Error, Result};

pub(super) struct Store {
    pub(super) path: PathBuf,
    persist: PersistMode,
    /// Held for the whole read-check-commit of every write.
    pub(super) writer: Mutex<()>,
    pub(super) db: Database,
    pub(super) databases: Keyspace,
    pub(super) docs: Keyspace,
    pub(super) changes: Keyspace,
    pub(super) local: Keyspace,
    /// Secondary index definitions and entries (layout in the `index` module).
    pub(super) indexes: Keyspace,
    /// Bodies of revisions that are no longer leaves, kept until compaction.
    pub(super) revbodies: Keyspace,
    /// Attachment bytes, content-addressed per database (layout in the parent module).
    pub(super) attachments: Keyspace,
    /// Streamed uploads in progress (their staged chunks are not swept).
    pub(super) uploads: Uploads,
    pub(super) index_cache: IndexCache,
    /// The last changes page's `pending` per database id (see `feed`).
    pub(super) pending_counts: PendingCounts<u64>,
    /// Bumped after every commit; `watch` streams wait on it (one for the whole store).
    pub(super) commits: CommitSignal,
    /// Commits made (see [`Store::commits_made`]).
    commits_made: AtomicU64,
    /// Durable commits' shared fsyncs (see `group_commit`).
    group: GroupCommit,
    /// The fsync those share, off fjall's journal lock (see `journal`).
    journal: JournalSync,
}

/// Memtable size per keyspace. fjall's default (64 MiB) times six keyspaces, plus sealed
/// memtables waiting for their flush, let a long bulk load hold hundreds of MiB; smaller
/// memtables keep memory bounded (measured: restoring 200,000 1 KB documents).
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// Memtable size of the `attachments` keyspace (see `open`).
const ATTACHMENT_MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;

/// Deleted databases are purged in transactions of this many keys.
const PURGE_CHUNK: usize = 10_000;

fn engine(path: &Path, what: &str, e: fjall::Error) -> Error {
    let at = path.display();
    match e {
        fjall::Error::Locked => Error::Storage {
            reason: format!(
                "the embedded store at {at} is in use by another process (or already open in this one); \
                 close it there, or point EMBEDDED_PATH elsewhere"
            ),
        },
        fjall::Error::Poisoned => Error::storage(format!(
            "{what} failed in {at}: an earlier write to the store failed (see that error, e.g. a \
             full disk), so it takes no more writes; reads still work. Fix the cause, then reopen \
             the store: every acknowledged write is kept"
        )),
        fjall::Error::Io(io) => {
            let hint = match io.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge => {
                    "; free disk space (or raise the file size limit), then reopen the store"
                }
                _ => "",
            };
            Error::storage(format!("{what} failed in {at}: {io}{hint}"))
        }
        other => Error::storage(format!("{what} failed in {at}: {other}")),
    }
}

/// Whether `path` holds nothing: a store opened there is created from scratch.
fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

impl Store {
    /// Opens the store at `config.path`, creating it there if the directory is missing or
    /// empty. A creation that fails (a full disk) removes what it wrote, so a later open
    /// creates the store afresh instead of meeting half-made files.
    pub(super) fn open(config: EmbeddedConfig) -> Result<Self> {
        let path = config.path.clone();
        let existed = path.exists();
        std::fs::create_dir_all(&path).map_err(|e| Error::Config {
            key: "EMBEDDED_PATH".into(),
            reason: format!("cannot create the directory {}: {e}", path.display()),
        })?;
        let fresh = is_empty_dir(&path);
        Self::open_existing(config).inspect_err(|_| {
            if fresh {
                let cleared = if existed {
                    std::fs::read_dir(&path).and_then(|entries| {
                        entries.flatten().try_for_each(|entry| {
                            let entry = entry.path();
                            if entry.is_dir() {
                                std::fs::remove_dir_all(entry)
                            } else {
                                std::fs::remove_file(entry)
                            }
                        })
                    })
                } else {
                    std::fs::remove_dir_all(&path)
                };
                if let Err(e) = cleared {
                    tracing::warn!(path = %path.display(), "could not remove a store whose creation failed: {e}");
                }
            }
        })
    }

    fn open_existing(config: EmbeddedConfig) -> Result<Self> {
        let path = config.path;
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
            revbodies: ks("revbodies")?,
            // Attachment chunks are large values written in long runs: a small memtable
            // keeps a streamed upload's memory low, and key-value separation keeps them out
            // of the tables' compactions.
            attachments: db
                .keyspace("attachments", || {
                    KeyspaceCreateOptions::default()
                        .max_memtable_size(ATTACHMENT_MEMTABLE_BYTES)
                        .with_kv_separation(Some(fjall::KvSeparationOptions::default()))
                })
                .map_err(|e| engine(&path, "opening a keyspace", e))?,
            uploads: Uploads::default(),
            index_cache: IndexCache::default(),
            pending_counts: PendingCounts::default(),
            commits: CommitSignal::default(),
            commits_made: AtomicU64::new(0),
            group: GroupCommit::default(),
            journal: JournalSync::new(&path),
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

    pub(super) fn keyspaces(&self) -> [&Keyspace; 7] {
        [
            &self.databases,
            &self.docs,
            &self.changes,
            &self.local,
            &self.indexes,
            &self.revbodies,
            &self.attachments,
        ]
    }

    pub(super) fn err(&self, what: &str, e: fjall::Error) -> Error {
        engine(&self.path, what, e)
    }

    /// A new atomic batch; the caller must hold `writer`. Its commit only reaches the OS
    /// buffers: a durable store fsyncs in `settle`, once per group of writers.
    pub(super) fn batch(&self) -> OwnedWriteBatch {
        self.db.batch().durability(Some(PersistMode::Buffer))
    }

    /// Makes what this thread committed durable as configured: with `Durability::Sync`,
    /// waits for (or leads) an fsync of the journal covering it. Called at the end of every
    /// blocking call, after the writer lock is released (see `group_commit`).
    pub(super) fn settle(&self) -> Result<()> {
        if self.persist != PersistMode::SyncAll {
            return Ok(());
        }
        self.group
            .settle(|| self.journal.sync(&self.db))
            .map_err(|e| self.err("syncing the journal to disk", e))
    }

    pub(super) fn commit(&self, batch: OwnedWriteBatch) -> Result<()> {
        let committed = batch.commit();
        // Counted even if the commit failed: a reader can only be told too often that it
        // must read again.
        self.commits_made.fetch_add(1, Ordering::AcqRel);
        committed.map_err(|e| self.err("committing", e))?;
        if self.persist == PersistMode::SyncAll {
            self.group.committed();
        }
        self.commits.notify();
        Ok(())
    }

    /// How many commits this store has made (counted once each is visible, before the
    /// committer releases the writer lock). A read made after this returned `n` is still
    /// current when, holding the writer lock, it returns `n` again: every write commits
    /// through [`Store::commit`].
    pub(super) fn commits_made(&self) -> u64 {
        self.commits_made.load(Ordering::Acquire)
    }

    pub(super) fn meta(&self, db: &str) -> Result<Option<DbMeta>> {
        self.databases
            .get(db)
            .map_err(|e| self.err("reading database metadata", e))?
            .map(|v| DbMeta::decode(&v))
            .transpose()
    }

    /// The database's metadata as `snapshot` sees it.
    pub(super) fn snapshot_meta_opt(
        &self,
        snapshot: &Snapshot,
        db: &str,
    ) -> Result<Option<DbMeta>> {
        snapshot
            .get(&self.databases, db)
            .map_err(|e| self.err("reading database metadata", e))?
            .map(|v| DbMeta::decode(&v))
            .transpose()
    }

    /// [`snapshot_meta_opt`](Self::snapshot_meta_opt); `NotFound` for a missing database.
    pub(super) fn snapshot_meta(&self, snapshot: &Snapshot, db: &str) -> Result<DbMeta> {
        self.snapshot_meta_opt(snapshot, db)?
            .ok_or_else(|| Error::db_not_found(db))
    }

    /// The database's metadata, allocating a fresh id (never reused) if it does not exist.
    /// The caller holds `writer`.
    pub(super) fn meta_or_new(
        &self,
        batch: &mut OwnedWriteBatch,
        db: &str,
    ) -> Result<(DbMeta, bool)> {
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
            revs_limit: REVS_LIMIT,
        };
        Ok((meta, true))
    }

    pub(super) fn delete_database(&self, db: &str) -> Result<()> {
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
        for ks in [
            &self.docs,
            &self.changes,
            &self.local,
            &self.indexes,
            &self.revbodies,
            &self.attachments,
        ] {
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

    pub(super) fn list_databases(&self) -> Result<Vec<String>> {
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
}
