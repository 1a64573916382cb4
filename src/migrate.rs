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
//! Every run ends with [`verify_database`]: document counts and an order-independent hash over
//! (id, revision, canonical body) of the live documents on both sides, and the ids that
//! differ, found by walking both sides in id order.
//!
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    DatabaseService, Document, Error, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff,
};

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

/// One side of a [`Verification`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Live documents.
    pub count: u64,
    /// Order-independent hash (hex) over (id, revision, canonical body) of the live documents.
    pub hash: String,
}

/// Both sides of one database compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// The source's digest.
    pub source: Digest,
    /// The target's digest.
    pub target: Digest,
    /// Whether both digests are equal.
    pub matches: bool,
    /// Ids only the source has (at most [`LISTED_IDS`]).
    pub missing_in_target: Vec<String>,
    /// Ids only the target has.
    pub extra_in_target: Vec<String>,
    /// Ids both have with another revision or body.
    pub different: Vec<String>,
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
        let mut db_report = migrate_database(source, target, &db, options).await?;
        if !db_report.complete {
            report.interrupted = true;
            report.databases.push(db_report);
            break;
        }
        if !options.dry_run && options.verify {
            db_report.verification = Some(verify_database(source, target, &db).await?);
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

async fn migrate_database(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    db: &str,
    options: &MigrateOptions,
) -> Result<DatabaseReport> {
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
    // Pipelined: while one batch is written to the target, the next is read from the
    // source (one provider's work overlaps the other's). A prefetched batch is applied and
    // checkpointed only after the one before it, so checkpoints stay in feed order.
    let mut next = read_batch(source, db, since.as_deref(), options.batch_size).await?;
    while let Some(batch) = next.take() {
        if cancelled(options) {
            return Ok(report);
        }
        report.read += batch.read;
        let SourceBatch {
            docs,
            last_seq,
            pending,
            ..
        } = batch;
        let prefetch = async {
            if pending == 0 {
                Ok(None)
            } else {
                read_batch(source, db, Some(&last_seq), options.batch_size).await
            }
        };
        let (applied, prefetched) = futures::join!(
            apply_batch(target, db, docs, options, &mut report),
            prefetch
        );
        applied?;
        if !options.dry_run {
            write_checkpoint(target, source, db, &last_seq, false).await?;
        }
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
    if !options.dry_run {
        let since = match since {
            Some(s) => s,
            None => source.changes(db, None, 1).await?.last_seq,
        };
        write_checkpoint(target, source, db, &since, true).await?;
    }
    report.complete = true;
    Ok(report)
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

/// A revision no document reaches: asked about in `_revs_diff` next to a document's own
/// revision, it is always missing, so the answer's `possible_ancestors` (the leaves below a
/// missing revision's generation) lists every leaf the target holds for the document.
fn every_leaf_probe() -> Rev {
    Rev::new(999_999_999, [0xff; 16])
}

/// What the target holds of one source document, and so what to do with it.
enum Plan {
    /// The target has the revision (as a leaf or an ancestor): nothing to write.
    Present,
    /// Write it; `over` is the target leaf it extends (`None`: the target has no leaf).
    Write { over: Option<Rev> },
    /// The target holds a leaf that is not an ancestor: decided on the target's winner.
    Unsure,
}

/// The plan for `doc` from the target's `_revs_diff` answer (`leaves`: every target leaf).
fn plan(doc: &RevisionedDoc, diff: &RevsDiff) -> Plan {
    if !diff.missing.contains(&doc.rev) {
        return Plan::Present;
    }
    let leaves = &diff.possible_ancestors;
    let linked = doc.linked_history();
    match leaves.as_slice() {
        [] => Plan::Write { over: None },
        [leaf] if linked.contains(leaf) => Plan::Write { over: Some(*leaf) },
        // A source without history (an archive written before histories were kept) extends
        // an older single leaf, given as its parent.
        [leaf] if doc.history.is_empty() && leaf.generation() < doc.rev.generation() => {
            Plan::Write { over: Some(*leaf) }
        }
        _ => Plan::Unsure,
    }
}

/// Writes one batch of source documents into `target` as the module doc says: asks the
/// target which revisions it lacks and which leaves it holds (one `revs_diff`), looks up the
/// winners of only those documents whose target leaves are not all ancestors, classifies each
/// document into `report`, and writes what is missing (nothing on a dry run). Shared by
/// [`migrate`] and restores from archives.
pub(crate) async fn apply_batch(
    target: &dyn DatabaseService,
    db: &str,
    docs: Vec<RevisionedDoc>,
    options: &MigrateOptions,
    report: &mut DatabaseReport,
) -> Result<()> {
    let probe = every_leaf_probe();
    let asked: Vec<(String, Vec<Rev>)> = docs
        .iter()
        .map(|d| (d.id.clone(), vec![d.rev, probe]))
        .collect();
    let diffs = target.revs_diff(db, &asked).await?;
    let mut writes = Vec::new();
    let mut over = Vec::new();
    let mut unsure = Vec::new();
    for (mut doc, diff) in docs.into_iter().zip(diffs) {
        match plan(&doc, &diff) {
            Plan::Present => report.unchanged += 1,
            Plan::Unsure => unsure.push(doc),
            Plan::Write { over: leaf } => {
                match leaf {
                    None => report.created += 1,
                    Some(leaf) => {
                        if doc.history.is_empty() {
                            doc.history = vec![leaf];
                        }
                        report.updated += 1;
                    }
                }
                report.deleted += u64::from(doc.deleted);
                // A descendant replaces the leaf it extends whether or not that leaf is a
                // deletion: the flag plays no part in the outcome.
                over.push(leaf.map(|rev| (rev, false)));
                writes.push(doc);
            }
        }
    }
    let mut new_edits = Vec::new();
    if !unsure.is_empty() {
        let ids: Vec<String> = unsure.iter().map(|d| d.id.clone()).collect();
        let winners = target.current_revisions(db, &ids).await?;
        for (mut doc, current) in unsure.into_iter().zip(winners) {
            match current {
                None => {
                    report.created += 1;
                    report.deleted += u64::from(doc.deleted);
                    writes.push(doc);
                    over.push(current);
                }
                Some((rev, _))
                    if doc.linked_history().contains(&rev)
                        || doc.history.is_empty() && rev.generation() < doc.rev.generation() =>
                {
                    // The winner is an ancestor; another leaf (a deleted branch) is not.
                    if doc.history.is_empty() {
                        doc.history = vec![rev];
                    }
                    report.updated += 1;
                    report.deleted += u64::from(doc.deleted);
                    writes.push(doc);
                    over.push(current);
                }
                Some((rev, deleted)) => {
                    report.conflicts += 1;
                    note(&mut report.conflict_ids, &doc.id);
                    match options.on_conflict {
                        ConflictPolicy::Report => {}
                        ConflictPolicy::TargetWins => report.resolved += 1,
                        ConflictPolicy::SourceWins => {
                            report.resolved += 1;
                            new_edits.push((doc, rev, deleted));
                        }
                    }
                }
            }
        }
    }
    if options.dry_run {
        return Ok(());
    }
    let ids: Vec<String> = writes.iter().map(|d| d.id.clone()).collect();
    // What the target holds was just read: it need not look the winners up again.
    let outcomes = target.put_revisions_over(db, writes, over).await?;
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        match outcome {
            Err(e) => report.failed.push((id, e.to_string())),
            Ok(RevisionOutcome::Lost) => report
                .failed
                .push((id, "the target kept a winning revision".into())),
            Ok(_) => {}
        }
    }
    for (doc, rev, deleted) in new_edits {
        if let Err(e) = overwrite(target, db, doc, rev, deleted).await {
            report.failed.push(e);
        }
    }
    report.failed.truncate(LISTED_IDS);
    Ok(())
}

/// Source wins: the source's content as a new edit on top of the target's revision.
async fn overwrite(
    target: &dyn DatabaseService,
    db: &str,
    doc: RevisionedDoc,
    current: Rev,
    current_deleted: bool,
) -> std::result::Result<(), (String, String)> {
    let id = doc.id.clone();
    let failed = |e: Error| (id.clone(), e.to_string());
    match (doc.deleted, current_deleted) {
        (true, true) => Ok(()),
        (true, false) => target
            .delete_rev(db, &doc.id, &current)
            .await
            .map(|_| ())
            .map_err(failed),
        (false, _) => {
            let mut map = doc.body;
            if !current_deleted {
                map.insert("_rev".into(), Value::String(current.to_string()));
            }
            target
                .save(db, &doc.id, Document::from(map))
                .await
                .map(|_| ())
                .map_err(failed)
        }
    }
}

/// A document's contribution to a digest: MD5 over its id, revision and canonical body
/// (keys sorted at every level), as a number, so digests add up in any order.
pub(crate) fn document_hash(doc: &Document) -> u128 {
    let body = doc
        .as_map()
        .iter()
        .filter(|(k, _)| *k != "_id" && *k != "_rev");
    digest(doc.id().unwrap_or(""), doc.rev().unwrap_or(""), false, body)
}

/// MD5 over id, revision, deletion flag (only when set, so live documents hash as
/// [`document_hash`] does) and canonical body, as a number.
pub(crate) fn hash_parts(id: &str, rev: &str, deleted: bool, body: &Map<String, Value>) -> u128 {
    digest(id, rev, deleted, body.iter())
}

fn digest<'a>(
    id: &str,
    rev: &str,
    deleted: bool,
    body: impl Iterator<Item = (&'a String, &'a Value)>,
) -> u128 {
    use md5::{Digest as _, Md5};
    let mut text = Vec::with_capacity(1024);
    text.extend_from_slice(id.as_bytes());
    text.push(0);
    text.extend_from_slice(rev.as_bytes());
    text.push(0);
    if deleted {
        text.extend_from_slice(b"deleted\0");
    }
    write_canonical_entries(body, &mut text);
    u128::from_be_bytes(Md5::digest(&text).into())
}

/// Compact JSON with object keys sorted at every level, written without copying the value.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_entries(map.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars serialize infallibly into a Vec.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_canonical_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut Vec<u8>,
) {
    let mut entries: Vec<(&String, &Value)> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (n, (key, value)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

/// The digest of one database's live documents (as [`verify_database`] computes it).
pub async fn database_digest(svc: &dyn DatabaseService, db: &str) -> Result<Digest> {
    let mut docs = svc.list_stream(db, crate::DEFAULT_PAGE_SIZE).boxed();
    let (mut count, mut hash) = (0u64, 0u128);
    while let Some(doc) = docs.next().await.transpose()? {
        count += 1;
        hash = hash.wrapping_add(document_hash(&doc));
    }
    Ok(Digest {
        count,
        hash: format!("{hash:032x}"),
    })
}

/// Compares a database on two providers (see [`Verification`]), walking both in id order
/// with bounded memory.
pub async fn verify_database(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    db: &str,
) -> Result<Verification> {
    let mut a = source.list_stream(db, crate::DEFAULT_PAGE_SIZE).boxed();
    let mut b = target.list_stream(db, crate::DEFAULT_PAGE_SIZE).boxed();
    let mut v = Verification::default();
    let (mut hash_a, mut hash_b) = (0u128, 0u128);
    let mut next_a = a.next().await.transpose()?;
    let mut next_b = b.next().await.transpose()?;
    loop {
        let order = match (&next_a, &next_b) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x
                .id()
                .unwrap_or("")
                .as_bytes()
                .cmp(y.id().unwrap_or("").as_bytes()),
        };
        match order {
            std::cmp::Ordering::Less => {
                let doc = next_a.take().unwrap_or_default();
                v.source.count += 1;
                hash_a = hash_a.wrapping_add(document_hash(&doc));
                note(&mut v.missing_in_target, doc.id().unwrap_or(""));
                next_a = a.next().await.transpose()?;
            }
            std::cmp::Ordering::Greater => {
                let doc = next_b.take().unwrap_or_default();
                v.target.count += 1;
                hash_b = hash_b.wrapping_add(document_hash(&doc));
                note(&mut v.extra_in_target, doc.id().unwrap_or(""));
                next_b = b.next().await.transpose()?;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (
                    next_a.take().unwrap_or_default(),
                    next_b.take().unwrap_or_default(),
                );
                let (hx, hy) = (document_hash(&x), document_hash(&y));
                v.source.count += 1;
                v.target.count += 1;
                hash_a = hash_a.wrapping_add(hx);
                hash_b = hash_b.wrapping_add(hy);
                if hx != hy {
                    note(&mut v.different, x.id().unwrap_or(""));
                }
                next_a = a.next().await.transpose()?;
                next_b = b.next().await.transpose()?;
            }
        }
    }
    v.source.hash = format!("{hash_a:032x}");
    v.target.hash = format!("{hash_b:032x}");
    v.matches = v.source == v.target;
    Ok(v)
}
