//! Replication between any two providers, with CouchDB's replicator's semantics: what PouchDB
//! does in JavaScript, for an embedded store and a CouchDB server (or any other pair).
//!
//! [`replicate`] copies one database into another: the source's changes since the last
//! checkpoint, every leaf of each changed document, asked of the target with `revs_diff`;
//! only the revisions the target lacks are read (with their histories) and written as
//! replication writes (CouchDB's `new_edits: false`), so both sides end with the same
//! revision trees, the same winners and the same conflicts. After each batch a checkpoint is
//! stored in both databases under a replication id derived from both locations and the
//! filter (see `checkpoint`); a run resumes from it. A one-shot run ends at the end of the
//! source's feed; a continuous one follows new changes until cancelled. Filters: `doc_ids`,
//! and a Mango selector judged on each document's winner (as CouchDB's `_selector`).
//! [`sync`] is two replications, one each way.
//!
//! Each batch costs one `changes`, one `revs_diff`, one `read_revisions` and one
//! `write_revisions` (one request each on CouchDB), plus the two checkpoint writes; reading
//! the next batch overlaps writing the current one. A replication with nothing to do costs
//! the two checkpoint reads and one `changes`.

mod checkpoint;
pub(crate) mod engine;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use async_trait::async_trait;

use crate::mango::Selector;
use crate::{DatabaseService, Error, Result};
pub(crate) use engine::Batch;
use engine::Filter;

/// The feed token of the start of every provider's feed.
const FEED_START: &str = "0";

/// After the first batch of a run, checkpoints are stored at most this often (and always
/// when the run ends or has nothing more to do): a run killed in between redoes at most this
/// much, idempotently, and a busy run spends two requests per second on them, not per batch.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// At most this many failures are listed in a report.
pub const LISTED_FAILURES: usize = 100;

/// Progress of a replication, given to [`ReplicateOptions::progress`] after every batch.
#[derive(Debug, Clone, Default)]
pub struct ReplicationProgress {
    /// The source database.
    pub db: String,
    /// Changes read so far.
    pub changes_read: u64,
    /// Changes still ahead in the source's feed (as the source estimates it).
    pub pending: u64,
    /// Revisions written so far.
    pub docs_written: u64,
}

/// A progress callback.
pub type ReplicationProgressFn = Arc<dyn Fn(&ReplicationProgress) + Send + Sync>;

/// Options of [`replicate`].
#[derive(Clone)]
pub struct ReplicateOptions {
    /// Follow new changes after the end of the feed, until [`cancel`](Self::cancel) is set.
    pub continuous: bool,
    /// Replicate only these documents.
    pub doc_ids: Option<Vec<String>>,
    /// Replicate only documents whose winner matches this Mango selector.
    pub selector: Option<serde_json::Value>,
    /// Create the target database if it is missing; otherwise a missing target is
    /// `NotFound`, as on CouchDB.
    pub create_target: bool,
    /// Changes per batch.
    pub batch_size: usize,
    /// A continuous replication with nothing to do looks for changes this often.
    pub poll_interval: Duration,
    /// Set to stop after the current batch (its checkpoint is stored).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called after every batch.
    pub progress: Option<ReplicationProgressFn>,
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        Self {
            continuous: false,
            doc_ids: None,
            selector: None,
            create_target: true,
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
            cancel: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for ReplicateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicateOptions")
            .field("continuous", &self.continuous)
            .field("doc_ids", &self.doc_ids)
            .field("selector", &self.selector)
            .field("create_target", &self.create_target)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// What a replication did, as CouchDB's replication history reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicationReport {
    /// The source and target databases.
    pub source_db: String,
    /// The target database.
    pub target_db: String,
    /// The replication id (from both locations, databases and the filter).
    pub replication_id: String,
    /// This run's session id.
    pub session_id: String,
    /// When the run started (seconds since the Unix epoch).
    pub start_time: u64,
    /// The source sequence the run started from (`None`: the start of the feed).
    pub start_last_seq: Option<String>,
    /// The source sequence reached and checkpointed.
    pub end_last_seq: Option<String>,
    /// Changes read from the source's feed.
    pub changes_read: u64,
    /// Revisions asked about on the target.
    pub missing_checked: u64,
    /// Revisions the target lacked.
    pub missing_found: u64,
    /// Revisions read from the source.
    pub docs_read: u64,
    /// Revisions written to the target.
    pub docs_written: u64,
    /// Revisions that could not be read or written.
    pub doc_write_failures: u64,
    /// The first failures (at most [`LISTED_FAILURES`]): document id and reason.
    pub failures: Vec<(String, String)>,
    /// Whether the run was cancelled (a continuous run ends so).
    pub cancelled: bool,
}

impl ReplicationReport {
    fn fail(&mut self, failures: Vec<(String, String)>) {
        self.doc_write_failures += failures.len() as u64;
        let room = LISTED_FAILURES.saturating_sub(self.failures.len());
        self.failures.extend(failures.into_iter().take(room));
    }
}

fn cancelled(options: &ReplicateOptions) -> bool {
    options
        .cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed))
}

/// What a run that builds on replication (migration) does besides copying.
#[async_trait]
pub(crate) trait BatchHook: Send {
    /// A dry run: batches are read and asked of the target, but nothing is written or
    /// checkpointed (and a missing target is not created).
    fn dry_run(&self) -> bool {
        false
    }

    /// Told once whether the run resumes from a checkpoint, before the first batch.
    fn started(&mut self, _resumed: bool) {}

    /// Sees each batch before it is written (its documents then move into the write).
    fn before_write(&mut self, _batch: &Batch) {}

    /// Called with each batch (without its documents) once it is written (in a dry run,
    /// once it is asked), before its checkpoint; an error stops the run there.
    async fn after_batch(
        &mut self,
        target: &dyn DatabaseService,
        target_db: &str,
        batch: &Batch,
    ) -> Result<()>;
}

/// Plain replication: nothing besides copying.
struct Plain;

#[async_trait]
impl BatchHook for Plain {
    async fn after_batch(&mut self, _: &dyn DatabaseService, _: &str, _: &Batch) -> Result<()> {
        Ok(())
    }
}

/// Replicates `source_db` of `source` into `target_db` of `target` (see the module doc).
pub async fn replicate(
    source: &dyn DatabaseService,
    source_db: &str,
    target: &dyn DatabaseService,
    target_db: &str,
    options: &ReplicateOptions,
) -> Result<ReplicationReport> {
    run(source, source_db, target, target_db, options, &mut Plain).await
}

/// [`replicate`] with a hook (see [`BatchHook`]).
pub(crate) async fn run(
    source: &dyn DatabaseService,
    source_db: &str,
    target: &dyn DatabaseService,
    target_db: &str,
    options: &ReplicateOptions,
    hook: &mut dyn BatchHook,
) -> Result<ReplicationReport> {
    let dry_run = hook.dry_run();
    if options.batch_size == 0 {
        return Err(Error::Config {
            key: "batch".into(),
            reason: "the batch size must be at least 1".into(),
        });
    }
    let filter = Filter {
        doc_ids: options
            .doc_ids
            .as_ref()
            .map(|ids| ids.iter().cloned().collect()),
        selector: options.selector.as_ref().map(Selector::parse).transpose()?,
    };
    let replication_id = checkpoint::replication_id(source, source_db, target, target_db, options);
    let local_id = checkpoint::checkpoint_id(&replication_id);
    let (source_log, target_log) = futures::join!(
        checkpoint::read(source, source_db, &local_id),
        checkpoint::read(target, target_db, &local_id),
    );
    let source_log = source_log?;
    let (target_log, target_missing) = match target_log {
        Ok(log) => (log, false),
        Err(e) if e.is_database_missing() && options.create_target => (None, true),
        Err(e) => return Err(e),
    };
    let mut report = ReplicationReport {
        source_db: source_db.to_owned(),
        target_db: target_db.to_owned(),
        replication_id,
        session_id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        start_time: checkpoint::unix_now(),
        start_last_seq: checkpoint::start_seq(source_log.as_ref(), target_log.as_ref()),
        ..ReplicationReport::default()
    };
    report.end_last_seq = report.start_last_seq.clone();
    let mut logs = Logs {
        source: source_log.map(|l| l.history).unwrap_or_default(),
        target: target_log.map(|l| l.history).unwrap_or_default(),
        id: local_id,
    };
    if target_missing && !dry_run {
        // Created now, as CouchDB's `create_target` does, even if nothing is copied.
        let seq = report
            .start_last_seq
            .clone()
            .unwrap_or_else(|| FEED_START.to_owned());
        logs.store(source, source_db, target, target_db, &report, &seq)
            .await?;
    }
    hook.started(report.start_last_seq.is_some());
    // A target this run created holds nothing: its batches need not ask what it lacks
    // (another writer adding documents meanwhile loses nothing: replication writes merge).
    let fresh = target_missing && !dry_run;
    let fetch = |since: Option<String>| {
        let filter = &filter;
        async move {
            engine::fetch(
                source,
                source_db,
                target,
                target_db,
                since.as_deref(),
                options.batch_size,
                filter,
                fresh,
            )
            .await
        }
    };
    let mut since = report.start_last_seq.clone();
    let mut sides = Sides {
        source,
        source_db,
        target,
        target_db,
        logs,
        stored_at: None,
        unstored: None,
        dry_run,
    };
    // Three batches move at once: the next is read while the current one is written and the
    // hook finishes the one before (a migration reads it back). A batch is settled once its
    // hook has run, and only settled batches are checkpointed.
    let mut written: Option<Batch> = None;
    let mut next = fetch(since.clone()).await?;
    loop {
        let Some(mut batch) = next.take() else {
            if let Some(done) = written.take() {
                hook.after_batch(target, target_db, &done).await?;
                sides
                    .settled(&mut report, done.last_seq, done.pending, true, options)
                    .await?;
            }
            sides.flush(&mut report).await?;
            if !options.continuous || cancelled(options) {
                report.cancelled = cancelled(options);
                return Ok(report);
            }
            wait(options).await;
            next = fetch(since.clone()).await?;
            continue;
        };
        report.changes_read += batch.read;
        report.missing_checked += batch.checked;
        report.missing_found += batch.missing;
        report.docs_read += batch.docs.len() as u64;
        report.fail(std::mem::take(&mut batch.unreadable));
        hook.before_write(&batch);
        let mut docs = std::mem::take(&mut batch.docs);
        if dry_run {
            docs.clear();
        }
        // One-shot runs stop at the end of the feed the source reported.
        let more = (options.continuous || batch.pending > 0) && !cancelled(options);
        let after = batch.last_seq.clone();
        let prefetch = async {
            if more {
                fetch(Some(after)).await
            } else {
                Ok(None)
            }
        };
        let previous = written.take();
        let finish = async {
            match &previous {
                Some(done) => hook.after_batch(target, target_db, done).await,
                None => Ok(()),
            }
        };
        let (wrote, prefetched, finished) =
            futures::join!(engine::write(target, target_db, docs), prefetch, finish);
        let (count, failed) = wrote?;
        report.docs_written += count;
        report.fail(failed);
        finished?;
        since = Some(batch.last_seq.clone());
        written = Some(batch);
        next = prefetched?;
        if let Some(done) = previous {
            sides
                .settled(&mut report, done.last_seq, done.pending, false, options)
                .await?;
        }
    }
}

/// Both ends of a run and its checkpoints: the first settled batch is always checkpointed,
/// later ones at most every [`CHECKPOINT_INTERVAL`], and the last before the run ends or
/// idles.
struct Sides<'a> {
    source: &'a dyn DatabaseService,
    source_db: &'a str,
    target: &'a dyn DatabaseService,
    target_db: &'a str,
    logs: Logs,
    stored_at: Option<Instant>,
    /// A settled sequence not checkpointed yet.
    unstored: Option<String>,
    dry_run: bool,
}

impl Sides<'_> {
    /// A batch up to `seq` is written and finished: checkpoint it when due (or `now`), and
    /// report progress.
    async fn settled(
        &mut self,
        report: &mut ReplicationReport,
        seq: String,
        pending: u64,
        now: bool,
        options: &ReplicateOptions,
    ) -> Result<()> {
        if !self.dry_run {
            let due = self
                .stored_at
                .is_none_or(|at| at.elapsed() >= CHECKPOINT_INTERVAL);
            if due || now {
                self.store(report, seq).await?;
            } else {
                self.unstored = Some(seq);
            }
        }
        if let Some(progress) = &options.progress {
            progress(&ReplicationProgress {
                db: self.source_db.to_owned(),
                changes_read: report.changes_read,
                pending,
                docs_written: report.docs_written,
            });
        }
        Ok(())
    }

    /// Checkpoints what is settled but not stored yet.
    async fn flush(&mut self, report: &mut ReplicationReport) -> Result<()> {
        match self.unstored.take() {
            Some(seq) => self.store(report, seq).await,
            None => Ok(()),
        }
    }

    async fn store(&mut self, report: &mut ReplicationReport, seq: String) -> Result<()> {
        self.logs
            .store(
                self.source,
                self.source_db,
                self.target,
                self.target_db,
                report,
                &seq,
            )
            .await?;
        self.stored_at = Some(Instant::now());
        self.unstored = None;
        report.end_last_seq = Some(seq);
        Ok(())
    }
}

/// Waits `poll_interval` (a continuous replication with nothing to do), waking early when
/// cancelled.
async fn wait(options: &ReplicateOptions) {
    let step = Duration::from_millis(20).min(options.poll_interval);
    let mut waited = Duration::ZERO;
    while waited < options.poll_interval && !cancelled(options) {
        tokio::time::sleep(step).await;
        waited += step;
    }
}

/// Both sides' checkpoint histories, and the `_local` id they are stored under.
struct Logs {
    source: Vec<serde_json::Value>,
    target: Vec<serde_json::Value>,
    id: String,
}

impl Logs {
    /// Stores the checkpoint at `seq` on both sides.
    async fn store(
        &mut self,
        source: &dyn DatabaseService,
        source_db: &str,
        target: &dyn DatabaseService,
        target_db: &str,
        report: &ReplicationReport,
        seq: &str,
    ) -> Result<()> {
        let on_source = checkpoint::document(report, &self.source, seq)?;
        let on_target = checkpoint::document(report, &self.target, seq)?;
        let source_history = on_source.get("history").cloned();
        let target_history = on_target.get("history").cloned();
        let (a, b) = futures::join!(
            source.put_local(source_db, &self.id, on_source),
            target.put_local(target_db, &self.id, on_target),
        );
        a?;
        b?;
        let history = |h: Option<serde_json::Value>| match h {
            Some(serde_json::Value::Array(list)) => list,
            _ => Vec::new(),
        };
        self.source = history(source_history);
        self.target = history(target_history);
        Ok(())
    }
}

/// Two-way sync: `a_db` of `a` replicated into `b_db` of `b`, then back. Afterwards both hold
/// the same revision trees (and so the same winners and conflicts).
pub async fn sync(
    a: &dyn DatabaseService,
    a_db: &str,
    b: &dyn DatabaseService,
    b_db: &str,
    options: &ReplicateOptions,
) -> Result<(ReplicationReport, ReplicationReport)> {
    let there = replicate(a, a_db, b, b_db, options).await?;
    let back = replicate(b, b_db, a, a_db, options).await?;
    Ok((there, back))
}

/// Replicates several databases (each into the database of the same name; `None`: every
/// database of the source), one after another, or all at once when continuous.
pub async fn replicate_databases(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    databases: Option<&[String]>,
    options: &ReplicateOptions,
) -> Result<Vec<ReplicationReport>> {
    let mut names = match databases {
        Some(names) => names.to_vec(),
        None => source.list_databases().await?,
    };
    names.sort();
    names.dedup();
    if options.continuous {
        let runs = names
            .iter()
            .map(|db| replicate(source, db, target, db, options));
        return futures::future::join_all(runs).await.into_iter().collect();
    }
    let mut reports = Vec::with_capacity(names.len());
    for db in &names {
        reports.push(replicate(source, db, target, db, options).await?);
        if cancelled(options) {
            break;
        }
    }
    Ok(reports)
}
