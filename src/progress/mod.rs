//! The CLI's long-running commands and what they show while they run: `migrate` and
//! `replicate` with a progress bar per database, `backup`, `restore` and `verify` with a
//! spinner, Ctrl-C handling, and their summaries. Bars are in [`bars`], the log lines
//! written above them in [`logging`].

pub mod bars;
pub mod logging;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use docstore::DatabaseService;
use docstore::archive::{self, RestoreReport};
use docstore::migrate::{
    self, DatabaseReport, Digest, MigrateOptions, MigrationReport, Progress, Verification,
};
use docstore::replicate::{self, ReplicateOptions, ReplicationProgress};
use docstore::serde_json;
use indicatif::HumanCount;
use tracing::{info, warn};

pub use bars::{Bars, Display};

/// A flag set by Ctrl-C, after saying that the current batch finishes and is checkpointed.
fn cancel_on_interrupt() -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let on_interrupt = Arc::clone(&cancel);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            warn!("interrupted: finishing the current batch and storing the checkpoint");
            on_interrupt.store(true, Ordering::Relaxed);
        }
    });
    cancel
}

/// What a bar still running when its command ends says: why it ended.
fn ending(ok: bool, cancel: &AtomicBool) -> &'static str {
    match (ok, cancel.load(Ordering::Relaxed)) {
        (false, _) => "failed",
        (true, true) => "interrupted",
        (true, false) => "done",
    }
}

/// Runs a migration with a bar per database, prints the summary; an error if anything
/// failed, conflicted unresolved, did not verify, or was interrupted.
pub async fn migrate(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    mut options: MigrateOptions,
    bars: &Bars,
    as_json: bool,
) -> Result<()> {
    let cancel = cancel_on_interrupt();
    options.cancel = Some(Arc::clone(&cancel));
    let shown = bars.clone();
    let copied = if options.dry_run { "dry run" } else { "copied" };
    options.progress = Some(Arc::new(move |p: &Progress| {
        let note = if p.pending == 0 { copied } else { "" };
        shown.changes(&p.db, p.read, p.pending, note, true)
    }));
    info!(from = %source.location(), to = %target.location(), "migrating");
    let started = Instant::now();
    let report = migrate::migrate(source, target, &options).await;
    bars.finish(ending(report.is_ok(), &cancel));
    let report = report?;
    info!(
        databases = report.databases.len(),
        written = report.written(),
        elapsed = ?started.elapsed(),
        "migration finished"
    );
    if report.databases.is_empty() {
        warn!("{} has no databases: nothing to migrate", source.location());
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    if report.interrupted {
        bail!("interrupted; run the same command again to resume from the checkpoint");
    }
    if !report.is_success() {
        bail!("the migration did not fully succeed (see the summary)");
    }
    Ok(())
}

/// Runs replications (continuous ones until Ctrl-C) with a bar per database, prints
/// CouchDB-style reports; an error if any revision could not be copied.
pub async fn replicate(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    databases: Option<Vec<String>>,
    mut options: ReplicateOptions,
    bars: &Bars,
    as_json: bool,
) -> Result<()> {
    let cancel = cancel_on_interrupt();
    options.cancel = Some(Arc::clone(&cancel));
    let shown = bars.clone();
    // Continuous runs follow every database at once; the others take them one by one.
    let one_at_a_time = !options.continuous;
    options.progress = Some(Arc::new(move |p: &ReplicationProgress| {
        let note = format!("{} written", HumanCount(p.docs_written));
        shown.changes(&p.db, p.changes_read, p.pending, &note, one_at_a_time)
    }));
    info!(from = %source.location(), to = %target.location(), continuous = options.continuous, "replicating");
    let reports =
        replicate::replicate_databases(source, target, databases.as_deref(), &options).await;
    bars.finish(ending(reports.is_ok(), &cancel));
    let reports = reports?;
    let written: u64 = reports.iter().map(|r| r.docs_written).sum();
    info!(databases = reports.len(), written, "replication finished");
    if reports.is_empty() {
        warn!(
            "{} has no databases: nothing to replicate",
            source.location()
        );
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8}  last seq",
            "database", "changes", "checked", "missing", "written", "failed"
        );
        for r in &reports {
            println!(
                "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
                r.source_db,
                r.changes_read,
                r.missing_checked,
                r.missing_found,
                r.docs_written,
                r.doc_write_failures,
                r.end_last_seq.as_deref().unwrap_or("-")
            );
            for (id, reason) in &r.failures {
                println!("  failed: {id}: {reason}");
            }
        }
    }
    if reports.iter().any(|r| r.doc_write_failures > 0) {
        bail!("some revisions were not copied (see the report)");
    }
    Ok(())
}

/// Writes a backup archive of `databases` (all if `None`) with a spinner, prints what it
/// holds.
pub async fn backup(
    source: &dyn DatabaseService,
    out: &Path,
    databases: Option<Vec<String>>,
    bars: &Bars,
    as_json: bool,
) -> Result<()> {
    info!(from = %source.location(), archive = %out.display(), "backing up");
    // The archive module reports nothing per batch: a spinner, not a bar.
    let spinner = bars.spinner("backup", &format!("writing {}", out.display()));
    let report = archive::backup(source, out, databases, 500).await;
    spinner.finish_and_clear();
    let report = report?;
    if report.databases.is_empty() {
        warn!(
            "{} has no databases: the archive holds none",
            source.location()
        );
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (db, count, hash) in &report.databases {
            println!("{db}: {count} documents (hash {hash})");
        }
        println!("backup written to {}", out.display());
    }
    Ok(())
}

/// Loads a backup archive into `target` with a spinner, prints what it applied; an error if
/// the archive is damaged or anything was not applied.
pub async fn restore(
    target: &dyn DatabaseService,
    from: &Path,
    options: &MigrateOptions,
    bars: &Bars,
    as_json: bool,
) -> Result<()> {
    info!(archive = %from.display(), to = %target.location(), "restoring");
    // The archive module reports nothing per batch: a spinner, not a bar.
    let spinner = bars.spinner("restore", &format!("reading {}", from.display()));
    let report = archive::restore(target, from, options).await;
    spinner.finish_and_clear();
    let report = report?;
    print_restore(&report, as_json)?;
    if let Some(error) = &report.error {
        bail!("{error}");
    }
    if !report.is_success() {
        bail!("the restore did not fully succeed (see the summary)");
    }
    Ok(())
}

fn print_summary(report: &MigrationReport) {
    let title = if report.dry_run {
        " (dry run: nothing written)"
    } else {
        ""
    };
    println!("migration summary{title}");
    print_header("verified");
    for d in &report.databases {
        let verified = match &d.verification {
            Some(v) if v.matches => format!("yes ({} docs)", v.target.count),
            Some(v) if d.accepts(v) => {
                format!("yes, but for {} resolved conflicts", v.different.len())
            }
            Some(v) => format!("NO: {}", describe(v)),
            None if report.dry_run => "-".into(),
            None if report.unverified => "skipped (--no-verify)".into(),
            None => "not run".into(),
        };
        print_row(d, &verified);
        for id in &d.conflict_ids {
            println!("  conflict: {id}");
        }
        for (id, reason) in &d.failed {
            println!("  failed: {id}: {reason}");
        }
    }
}

/// The summary table's header, with `last` as the last column's title.
fn print_header(last: &str) {
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6}  {last}",
        "database", "read", "created", "updated", "deleted", "unchanged", "conflicts", "failed"
    );
}

/// One database's row of the summary table.
fn print_row(d: &DatabaseReport, last: &str) {
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6}  {last}",
        d.db,
        d.read,
        d.created,
        d.updated,
        d.deleted,
        d.unchanged,
        d.conflicts,
        d.failed.len()
    );
}

fn describe(v: &Verification) -> String {
    format!(
        "{} vs {} docs; missing {:?}, extra {:?}, different {:?}",
        v.source.count, v.target.count, v.missing_in_target, v.extra_in_target, v.different
    )
}

/// One side of `verify`.
pub enum Side {
    /// A provider.
    Service(Arc<dyn DatabaseService>),
    /// A backup archive.
    Archive(std::path::PathBuf),
}

impl Side {
    async fn databases(&self) -> Result<Vec<String>> {
        Ok(match self {
            Side::Service(svc) => svc.list_databases().await?,
            Side::Archive(path) => archive::archive_digests(path)?
                .into_iter()
                .map(|(db, _)| db)
                .collect(),
        })
    }

    async fn digest(&self, db: &str) -> Result<Digest> {
        Ok(match self {
            Side::Service(svc) => migrate::database_digest(&**svc, db).await?,
            Side::Archive(path) => archive::archive_digests(path)?
                .into_iter()
                .find(|(name, _)| name == db)
                .map(|(_, d)| d)
                .unwrap_or_default(),
        })
    }
}

/// Compares two locations database by database, a spinner on the one being compared; an
/// error on any difference. Two providers are compared document by document (differing ids
/// listed); with an archive, by digest.
pub async fn verify(
    left: &Side,
    right: &Side,
    only: Vec<String>,
    bars: &Bars,
    as_json: bool,
) -> Result<()> {
    let mut names = if only.is_empty() {
        let mut names = left.databases().await?;
        names.extend(right.databases().await?);
        names
    } else {
        only
    };
    names.sort();
    names.dedup();
    if names.is_empty() {
        warn!("neither location has a database: nothing to compare");
    }
    let mut all_match = true;
    let mut results = Vec::new();
    for db in &names {
        // verify_database reports nothing as it goes: a spinner, not a bar.
        let spinner = bars.spinner(db, "comparing");
        let v = compare(left, right, db).await;
        spinner.finish_and_clear();
        let v = v?;
        all_match &= v.matches;
        if !as_json {
            bars.suspend(|| {
                if v.matches {
                    println!(
                        "{db}: match ({} documents, hash {})",
                        v.source.count, v.source.hash
                    );
                } else {
                    println!("{db}: MISMATCH: {}", describe(&v));
                }
            });
        }
        results.push(serde_json::json!({"db": db, "verification": v}));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if !all_match {
        bail!("the locations differ");
    }
    Ok(())
}

/// One database of `verify`: document by document between providers, by digest otherwise.
async fn compare(left: &Side, right: &Side, db: &str) -> Result<Verification> {
    Ok(match (left, right) {
        (Side::Service(a), Side::Service(b)) => migrate::verify_database(&**a, &**b, db).await?,
        _ => {
            let (source, target) = (left.digest(db).await?, right.digest(db).await?);
            Verification {
                matches: source == target,
                source,
                target,
                ..Verification::default()
            }
        }
    })
}

/// Prints what a restore applied.
fn print_restore(report: &RestoreReport, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    print_header("applied");
    for d in &report.databases {
        print_row(d, if d.complete { "whole" } else { "partly" });
    }
    if let Some(error) = &report.error {
        println!("not applied: everything from the damage on ({error})");
    }
    Ok(())
}
