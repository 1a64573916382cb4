//! Migration between any two providers: streaming, revision-preserving, idempotent,
//! resumable, verified.
//!
//! Per database, the source's change feed is read in batches (bounded memory, whatever the
//! database size); each batch costs one `changes` page and one `read_revisions` on the
//! source, and one `revs_diff` (CouchDB's `_revs_diff`, as its replicator uses) and at most
//! one `put_revisions_over` (the write) on the target. The `revs_diff` asks, next to each
//! document's revision, about a revision no document reaches, so its `possible_ancestors`
//! list every leaf the target holds: a revision already there is skipped, a document whose
//! leaves are all ancestors of the source's revision is extended; only a document with a
//! leaf that is not an ancestor costs a winner lookup (`current_revisions`). Documents
//! keep their ids, bodies, revisions and revision histories (up to CouchDB's `revs_limit`);
//! deletions are carried as tombstones. What the target already has at the same revision is
//! skipped, so a second run writes nothing.
//!
//! A document whose target revision differs is an update when the target's revision is an
//! ancestor of the source's (in the history the source gave), so the target extends it as
//! CouchDB's replicator would, however many edits lie between; otherwise it is a conflict,
//! handled by [`ConflictPolicy`]. (A source that gives no history, such as an archive written
//! before histories were kept, is judged by generation: higher is an update, with the
//! target's revision given as its parent.)
//!
//! After each batch a checkpoint (`_local/docstore-migration`: the source's change-feed token)
//! is stored in the target database. A run that stopped (killed, interrupted, failed) resumes
//! from it; a finished run marks it complete, and the next full run starts over (writing
//! nothing that is already there), while an incremental run continues from it.
//!
//! Every run ends with a [`Verification`]: document counts and an order-independent hash over
//! (id, revision, canonical body) of the live documents on both sides, and the ids that
//! differ. A run from the start of the feed builds it as it goes: each written batch is read
//! back from the target (one `get_many`, overlapped with the next batch's write) and
//! compared, and at the end both sides' live counts must equal what was checked. Any
//! difference, and every resumed or incremental run, is settled by [`verify_database`],
//! which walks both sides in id order and lists the ids.
//!
mod apply;
mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::{Value, json};

use crate::{DatabaseService, Document, Error, Result, Rev, RevisionedDoc};

pub(crate) use apply::apply_batch;
pub use verify::{Digest, Verification, database_digest, verify_database};
use verify::{Expected, InlineCheck};
pub(crate) use verify::{document_hash, hash_parts};

/// The `_local` document holding a database's migration checkpoint in the target.
pub const CHECKPOINT_ID: &str = "docstore-migration";

/// What to do when the target holds a revision of a document that is neither the source's
/// nor older than it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Leave the target's document and report it (the default).
    #[default]
    Report,
    /// Write the source's content as a new revision on top of the target's (the target then
    /// holds the source's body under a revision of its own, which verification lists).
    SourceWins,
    /// Keep the target's document without reporting it as a conflict.
    TargetWins,
}

impl std::str::FromStr for ConflictPolicy {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "report" | "skip" => Ok(Self::Report),
            "source-wins" | "source" => Ok(Self::SourceWins),
            "target-wins" | "target" => Ok(Self::TargetWins),
            other => Err(Error::Config {
                key: "on-conflict".into(),
                reason: format!(
                    "{other:?} is not a policy; use report, source-wins or target-wins"
                ),
            }),
        }
    }
}

/// Progress of one database, given to [`MigrateOptions::progress`] after every batch.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The database.
    pub db: String,
    /// Changes read so far in this run.
    pub read: u64,
    /// Changes still ahead in the source's feed (as the source estimates it).
    pub pending: u64,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options of [`migrate`].
#[derive(Clone)]
pub struct MigrateOptions {
    /// The databases to migrate; `None`: every database of the source.
    pub databases: Option<Vec<String>>,
    /// Changes per batch.
    pub batch_size: usize,
    /// Continue from the last checkpoint even when the previous run finished.
    pub incremental: bool,
    /// Classify and count, write nothing (no checkpoint either).
    pub dry_run: bool,
    /// Verify each database after copying it (the default). Off, the run is faster (a
    /// verification re-reads both sides) and its report says it was not verified.
    pub verify: bool,
    /// What to do on conflicts.
    pub on_conflict: ConflictPolicy,
    /// Set to stop after the current batch (its checkpoint is stored).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called after every batch.
    pub progress: Option<ProgressFn>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            databases: None,
            batch_size: 500,
            incremental: false,
            dry_run: false,
            verify: true,
            on_conflict: ConflictPolicy::Report,
            cancel: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for MigrateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateOptions")
            .field("databases", &self.databases)
            .field("batch_size", &self.batch_size)
            .field("incremental", &self.incremental)
            .field("dry_run", &self.dry_run)
            .field("verify", &self.verify)
            .field("on_conflict", &self.on_conflict)
            .finish_non_exhaustive()
    }
}

/// At most this many ids are listed per category in a report.
pub const LISTED_IDS: usize = 100;

/// What happened to one database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DatabaseReport {
    /// The database.
    pub db: String,
    /// Changes read from the source.
    pub read: u64,
    /// Documents the target did not have (deletions included).
    pub created: u64,
    /// Documents brought to a newer source revision.
    pub updated: u64,
    /// Of `created` and `updated`, deletions.
    pub deleted: u64,
    /// Documents the target already had at the source's revision.
    pub unchanged: u64,
    /// Conflicts (see [`ConflictPolicy`]), and the first ids.
    pub conflicts: u64,
    /// Conflicting ids (at most [`LISTED_IDS`]).
    pub conflict_ids: Vec<String>,
    /// Conflicts resolved by the policy (source-wins writes, target-wins keeps).
    pub resolved: u64,
    /// Documents that failed, with the reason (at most [`LISTED_IDS`]).
    pub failed: Vec<(String, String)>,
    /// Whether the run resumed from a checkpoint.
    pub resumed: bool,
    /// Whether the database was migrated to the end of the source's feed.
    pub complete: bool,
    /// The comparison of both sides at the end (not for dry runs or interrupted runs).
    pub verification: Option<Verification>,
}

impl DatabaseReport {
    /// Whether a verification is what this run intended: an exact match, or differences
    /// only in conflicts the policy resolved (the target keeps its revision, or holds the
    /// source's body under a revision of its own).
    pub fn accepts(&self, v: &Verification) -> bool {
        v.matches
            || (self.resolved == self.conflicts
                && v.missing_in_target.is_empty()
                && v.extra_in_target.is_empty()
                && v.source.count == v.target.count
                && v.different.iter().all(|id| self.conflict_ids.contains(id)))
    }
}

/// What [`migrate`] did, per database.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationReport {
    /// One report per database, in name order.
    pub databases: Vec<DatabaseReport>,
    /// Whether the run was cancelled before the end.
    pub interrupted: bool,
    /// Whether nothing was written (a dry run).
    pub dry_run: bool,
    /// Whether verification was turned off ([`MigrateOptions::verify`]).
    pub unverified: bool,
}

impl MigrationReport {
    /// True when every database finished, nothing failed, no conflict stayed unresolved and
    /// every verification matched (or verification was turned off).
    pub fn is_success(&self) -> bool {
        !self.interrupted
            && self.databases.iter().all(|d| {
                d.failed.is_empty()
                    && d.conflicts == d.resolved
                    && (self.dry_run
                        || self.unverified
                        || d.verification.as_ref().is_some_and(|v| d.accepts(v)))
            })
    }

    /// Documents written (created or updated) in all databases.
    pub fn written(&self) -> u64 {
        self.databases.iter().map(|d| d.created + d.updated).sum()
    }
}

/// Migrates `source` into `target` (see the module doc).
pub async fn migrate(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    options: &MigrateOptions,
) -> Result<MigrationReport> {
    if options.batch_size == 0 {
        return Err(Error::Config {
            key: "batch".into(),
            reason: "the batch size must be at least 1".into(),
        });
    }
    let mut names = match &options.databases {
        Some(names) => names.clone(),
        None => source.list_databases().await?,
    };
    names.sort();
    names.dedup();
    let mut report = MigrationReport {
        dry_run: options.dry_run,
        unverified: !options.verify,
        ..MigrationReport::default()
    };
    for db in names {
        let (mut db_report, checked) = migrate_database(source, target, &db, options).await?;
        if !db_report.complete {
            report.interrupted = true;
            report.databases.push(db_report);
            break;
        }
        if !options.dry_run && options.verify {
            db_report.verification = Some(match checked {
                Some(verification) => verification,
                None => verify_database(source, target, &db).await?,
            });
        }
        report.databases.push(db_report);
    }
    Ok(report)
}

fn cancelled(options: &MigrateOptions) -> bool {
    options
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed))
}

async fn read_checkpoint(target: &dyn DatabaseService, db: &str) -> Result<Option<(String, bool)>> {
    match target.get_local(db, CHECKPOINT_ID).await {
        Ok(doc) => Ok(doc
            .get("since")
            .and_then(Value::as_str)
            .map(|since| (since.to_owned(), doc.get("complete") == Some(&json!(true))))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn write_checkpoint(
    target: &dyn DatabaseService,
    source: &dyn DatabaseService,
    db: &str,
    since: &str,
    complete: bool,
) -> Result<()> {
    let body = json!({"since": since, "complete": complete, "source": source.provider_name()});
    let doc = Document::from_value(body)?;
    target.put_local(db, CHECKPOINT_ID, doc).await
}

fn note(list: &mut Vec<String>, id: &str) {
    if list.len() < LISTED_IDS {
        list.push(id.to_owned());
    }
}

/// Copies one database (see the module doc); the verification is `Some` when it was built
/// while copying (a fresh run, see [`InlineCheck`]) and matched.
async fn migrate_database(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    db: &str,
    options: &MigrateOptions,
) -> Result<(DatabaseReport, Option<Verification>)> {
    let mut report = DatabaseReport {
        db: db.to_owned(),
        ..DatabaseReport::default()
    };
    let checkpoint = read_checkpoint(target, db).await?;
    let mut since = match &checkpoint {
        Some((since, complete)) if options.incremental || !complete => {
            report.resumed = true;
            Some(since.clone())
        }
        _ => None,
    };
    // A first run into a target that holds no documents (or no database yet) has no
    // revisions to ask about: its batches skip `revs_diff`. Nothing can be lost if another
    // writer adds documents meanwhile (replication writes merge), and the verification
    // reports it.
    let target_empty = checkpoint.is_none()
        && match target.database_info(db).await {
            Ok(info) => info.doc_count == 0 && info.doc_del_count == 0,
            Err(e) if e.is_not_found() => true,
            Err(e) => return Err(e),
        };
    // A run from the start reads every source document: each written batch is checked on
    // the target as it goes. A resumed or incremental run is verified by the full walk.
    let mut inline =
        (since.is_none() && options.verify && !options.dry_run).then(InlineCheck::default);
    // Pipelined: while one batch is written to the target, the next is read from the source,
    // the one before is read back from the target to be checked, and its checkpoint stored.
    // A batch is checkpointed only once it is written, so checkpoints stay in feed order.
    let mut next = read_batch(source, db, since.as_deref(), options.batch_size).await?;
    let mut written: Option<(Option<Expected>, String)> = None;
    while let Some(batch) = next.take() {
        if cancelled(options) {
            store_written(source, target, db, written.take(), inline.as_mut(), options).await?;
            return Ok((report, None));
        }
        report.read += batch.read;
        let SourceBatch {
            docs,
            last_seq,
            pending,
            ..
        } = batch;
        let expected = inline.is_some().then(|| Expected::of(&docs));
        let prefetch = async {
            if pending == 0 {
                Ok(None)
            } else {
                read_batch(source, db, Some(&last_seq), options.batch_size).await
            }
        };
        let (applied, prefetched, stored) = futures::join!(
            apply_batch(target, db, docs, target_empty, options, &mut report),
            prefetch,
            store_written(source, target, db, written.take(), inline.as_mut(), options),
        );
        applied?;
        stored?;
        written = Some((expected, last_seq.clone()));
        since = Some(last_seq);
        if let Some(progress) = &options.progress {
            progress(&Progress {
                db: db.to_owned(),
                read: report.read,
                pending,
            });
        }
        next = prefetched?;
    }
    store_written(source, target, db, written.take(), inline.as_mut(), options).await?;
    if !options.dry_run {
        let since = match since {
            Some(s) => s,
            None => source.changes(db, None, 1).await?.last_seq,
        };
        write_checkpoint(target, source, db, &since, true).await?;
    }
    report.complete = true;
    let verification = match inline {
        Some(check) => check.finish(source, target, db).await?,
        None => None,
    };
    Ok((report, verification))
}

/// After a batch is written: its checkpoint, and its read-back check when the run checks
/// as it goes.
async fn store_written(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    db: &str,
    written: Option<(Option<Expected>, String)>,
    inline: Option<&mut InlineCheck>,
    options: &MigrateOptions,
) -> Result<()> {
    let Some((expected, last_seq)) = written else {
        return Ok(());
    };
    if options.dry_run {
        return Ok(());
    }
    let checkpoint = write_checkpoint(target, source, db, &last_seq, false);
    let check = async {
        match (inline, expected) {
            (Some(inline), Some(expected)) => inline.check(target, db, expected).await,
            _ => Ok(()),
        }
    };
    let (stored, checked) = futures::join!(checkpoint, check);
    stored.and(checked)
}

/// One page of a source's change feed with the documents it names.
pub(crate) struct SourceBatch {
    /// The documents at their latest revisions (tombstones with empty bodies), feed order.
    pub docs: Vec<RevisionedDoc>,
    /// Changes read (a document changed since the feed was read is left to a later change).
    pub read: u64,
    /// The feed token after this page.
    pub last_seq: String,
    /// Changes still ahead.
    pub pending: u64,
}

/// Reads the next page of `db`'s change feed after `since` and each changed document at its
/// revision with its history (one `changes` and one `read_revisions`); `None` at the end of
/// the feed.
pub(crate) async fn read_batch(
    source: &dyn DatabaseService,
    db: &str,
    since: Option<&str>,
    limit: usize,
) -> Result<Option<SourceBatch>> {
    let page = source.changes(db, since, limit).await?;
    if page.results.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<(String, Rev)> = page.results.iter().map(|c| (c.id.clone(), c.rev)).collect();
    let mut docs = Vec::with_capacity(wanted.len());
    for read in source.read_revisions(db, &wanted).await? {
        match read {
            Ok(doc) => docs.push(doc),
            // Changed again since the feed was read: a later change carries it.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(SourceBatch {
        docs,
        read: page.results.len() as u64,
        last_seq: page.last_seq,
        pending: page.pending,
    }))
}
