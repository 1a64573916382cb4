//! The CLI's long-running commands: `migrate` and `replicate` with a progress line per
//! database (redrawn on a terminal, plain log lines otherwise), Ctrl-C handling and a summary
//! table; `verify`.

use std::io::{IsTerminal, Write};
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
use std::sync::Mutex;

/// A flag set by Ctrl-C, after saying that the current batch finishes and is checkpointed.
fn cancel_on_interrupt() -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let on_interrupt = Arc::clone(&cancel);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: finishing the current batch and storing the checkpoint");
            on_interrupt.store(true, Ordering::Relaxed);
        }
    });
    cancel
}

/// A progress line per database on standard error: a bar, the rate and an ETA, redrawn in
/// place on a terminal, one plain line per batch otherwise.
struct Bar {
    terminal: bool,
    started: Mutex<Option<(String, Instant)>>,
}

impl Bar {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            started: Mutex::new(None),
        }
    }

    /// Draws `db`'s line: `read` changes done, `pending` ahead, `extra` appended.
    fn draw(&self, db: &str, read: u64, pending: u64, extra: &str) {
        let Ok(mut started) = self.started.lock() else {
            return;
        };
        let since = match &*started {
            Some((name, at)) if name == db => *at,
            _ => {
                let now = Instant::now();
                *started = Some((db.to_owned(), now));
                now
            }
        };
        let secs = since.elapsed().as_secs_f64().max(0.001);
        let rate = read as f64 / secs;
        let total = read + pending;
        let eta = if rate > 0.0 {
            pending as f64 / rate
        } else {
            0.0
        };
        let width = 24usize;
        let filled = (read as usize * width) / (total.max(1) as usize);
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            ".".repeat(width - filled.min(width))
        );
        let line =
            format!("{db} [{bar}] {read}/{total} changes, {rate:.0}/s, ETA {eta:.0}s{extra}");
        if self.terminal {
            eprint!("\r{line}\x1b[K");
            if pending == 0 {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }
}

/// Runs a migration, shows progress, prints the summary; an error if anything failed,
/// conflicted unresolved, did not verify, or was interrupted.
pub async fn migrate(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    mut options: MigrateOptions,
    as_json: bool,
) -> Result<()> {
    options.cancel = Some(cancel_on_interrupt());
    let bar = Bar::new();
    options.progress = Some(Arc::new(move |p: &Progress| {
        bar.draw(&p.db, p.read, p.pending, "")
    }));
    let report = migrate::migrate(source, target, &options).await?;
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

/// Runs replications (continuous ones until Ctrl-C), shows progress, prints CouchDB-style
/// reports; an error if any revision could not be copied.
pub async fn replicate(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    databases: Option<Vec<String>>,
    mut options: ReplicateOptions,
    as_json: bool,
) -> Result<()> {
    options.cancel = Some(cancel_on_interrupt());
    let bar = Bar::new();
    options.progress = Some(Arc::new(move |p: &ReplicationProgress| {
        bar.draw(
            &p.db,
            p.changes_read,
            p.pending,
            &format!(", {} revisions written", p.docs_written),
        )
    }));
    let reports =
        replicate::replicate_databases(source, target, databases.as_deref(), &options).await?;
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

/// Compares two locations database by database; an error on any difference. Two providers
/// are compared document by document (differing ids listed); with an archive, by digest.
pub async fn verify(left: &Side, right: &Side, only: Vec<String>, as_json: bool) -> Result<()> {
    let mut names = if only.is_empty() {
        let mut names = left.databases().await?;
        names.extend(right.databases().await?);
        names
    } else {
        only
    };
    names.sort();
    names.dedup();
    let mut all_match = true;
    let mut results = Vec::new();
    for db in &names {
        let v = match (left, right) {
            (Side::Service(a), Side::Service(b)) => {
                migrate::verify_database(&**a, &**b, db).await?
            }
            _ => {
                let (source, target) = (left.digest(db).await?, right.digest(db).await?);
                Verification {
                    matches: source == target,
                    source,
                    target,
                    ..Verification::default()
                }
            }
        };
        all_match &= v.matches;
        if !as_json {
            if v.matches {
                println!(
                    "{db}: match ({} documents, hash {})",
                    v.source.count, v.source.hash
                );
            } else {
                println!("{db}: MISMATCH: {}", describe(&v));
            }
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

/// Prints what a restore applied.
pub fn print_restore(report: &RestoreReport, as_json: bool) -> Result<()> {
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
