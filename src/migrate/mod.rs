//! Migration between any two providers: one-shot replication (see [`crate::replicate`]) of
//! each database, plus a report and a verification.
//!
//! Per database, the source is replicated into the target: changes since the replication's
//! checkpoint, every leaf of each changed document, only the revisions the target lacks
//! (asked with one `revs_diff` per batch) read with their histories and written as
//! replication writes, checkpoints on both sides. So ids, bodies, revisions, histories and
//! whole revision trees (conflicts and deleted leaves) carry over, a re-run writes nothing,
//! and a stopped run (killed, interrupted, failed) resumes from its checkpoint; every run
//! after the first is incremental.
//!
//! Each document is classified from what the target held: `unchanged` (it had every leaf),
//! `created` (it had none), `updated` (every leaf it had is an ancestor of the source's), or,
//! when it held a leaf of its own, a conflict once the write leaves it with more than one live
//! leaf, settled by [`ConflictPolicy`] (the report's `conflicts`). A dry run only asks.
//!
//! Every run ends with a [`Verification`]: document counts and an order-independent hash over
//! (id, winning revision, canonical body) of the live documents on both sides, and the ids
//! that differ. A run from the start of the feed builds it as it goes: each written batch's
//! winners are read back from the target (one `get_many`) and compared, and at the end both
//! sides' live counts must equal what was checked. Any difference, and every resumed run, is
//! settled by [`verify_database`], which walks both sides in id order and lists the ids.

mod apply;
mod verify;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::replicate::{self, ReplicateOptions, ReplicationProgress, ReplicationProgressFn};
use crate::{DatabaseService, Error, Result};

pub(crate) use apply::MigrationHook;
use verify::InlineCheck;
pub use verify::{Digest, Verification, database_digest, verify_database};
pub(crate) use verify::{document_hash, hash_parts};

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
    let progress = options.progress.clone().map(|progress| {
        let db = db.to_owned();
        Arc::new(move |p: &ReplicationProgress| {
            progress(&Progress {
                db: db.clone(),
                read: p.changes_read,
                pending: p.pending,
            })
        }) as ReplicationProgressFn
    });
    let replication = ReplicateOptions {
        batch_size: options.batch_size,
        cancel: options.cancel.clone(),
        progress,
        ..ReplicateOptions::default()
    };
    // A run from the start checks each written batch on the target as it goes (if every
    // document turns out to be new there); a resumed run is verified by the full walk.
    let inline = (options.verify && !options.dry_run).then(InlineCheck::default);
    let mut hook = MigrationHook::new(options, &mut report, inline);
    let replicated = replicate::run(source, db, target, db, &replication, &mut hook).await?;
    let inline = hook.inline.take();
    hook.failed(&replicated.failures);
    report.read = replicated.changes_read;
    report.resumed = replicated.start_last_seq.is_some();
    report.complete = !replicated.cancelled;
    let verification = match inline {
        Some(check) if report.complete => check.finish(source, target, db).await?,
        _ => None,
    };
    Ok((report, verification))
}
