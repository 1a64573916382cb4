//! How cost grows with the work: for each size (`BENCH_SCALE`, 10k to 10M documents), a full
//! listing (`docstore ls DB`), building an index on `count` (`docstore index`), one query
//! served by it (`docstore find` for 100 documents), and a migration (`docstore migrate`,
//! embedded → embedded, batches of 1,000), each in a child process of the release CLI,
//! timed, with its peak memory (max RSS) taken from `wait4`. The store is filled batch by
//! batch (10M documents do not fit in memory at once) before any timing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docstore::serde_json::json;
use docstore::{DatabaseService, EmbeddedConfig, EmbeddedProvider, FindQuery};

use crate::common::{document_batch, selective_low};

/// Documents per `save_many` while filling.
const FILL_BATCH: usize = 1000;

/// One size: wall time and peak MiB of each CLI run.
#[derive(Debug, Clone)]
pub struct Scale {
    pub docs: usize,
    pub listing: (Duration, f64),
    /// Building the index on `count` over every document.
    pub index: (Duration, f64),
    /// One `find` of 100 documents by a `count` range, served by that index (the whole CLI
    /// run: start, open, query, print).
    pub find: (Duration, f64),
    /// The same kind of query in the harness's own process on the open store: the mean of
    /// `QUERIES` (the query alone, without the CLI's start and the store's open).
    pub query: Duration,
    pub migration: (Duration, f64),
}

/// Runs `docstore` with `args` (and `env`), output discarded; its wall time and max RSS.
///
/// Linux charges a child the peak RSS of the process it was forked from (the harness, which
/// holds gigabytes by now), so the harness starts a fresh copy of itself (`MEASURE_ARG`,
/// small) which spawns `docstore`, reaps it with `wait4` and prints its time and max RSS.
fn child(dir: &Path, args: &[String], env: &[(&str, String)]) -> (Duration, f64) {
    let mut command = Command::new(std::env::current_exe().expect("the harness binary"));
    command
        .current_dir(dir)
        .arg(MEASURE_ARG)
        .arg(env!("CARGO_BIN_EXE_docstore"))
        .args(args)
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("the measuring process runs");
    assert!(output.status.success(), "docstore {args:?} failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<f64>().unwrap_or(f64::NAN));
    let (micros, kib) = (
        fields.next().unwrap_or(f64::NAN),
        fields.next().unwrap_or(f64::NAN),
    );
    (Duration::from_secs_f64(micros / 1e6), kib / 1024.0)
}

/// The argument that makes the harness a measuring process: `MEASURE_ARG program args…`.
pub const MEASURE_ARG: &str = "__measure-child";

/// The measuring process: runs `program args…` (output discarded), then prints
/// "<microseconds> <max RSS KiB>" and exits with the child's success.
// The child is reaped by `wait4` (which also gives its own rusage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn measure_child(program: &str, args: &[String]) -> ! {
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the program runs");
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid, writing into a zeroed rusage we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    let ok = pid == child.id() as libc::pid_t
        && libc::WIFEXITED(status)
        && libc::WEXITSTATUS(status) == 0;
    println!("{} {}", elapsed.as_micros(), usage.ru_maxrss);
    std::process::exit(if ok { 0 } else { 1 });
}

/// Fills `db` of a new embedded store at `path` with documents `0..n`, a batch at a time.
async fn fill_store(path: &Path, db: &str, n: usize) {
    let svc = EmbeddedProvider::open(EmbeddedConfig::new(path))
        .await
        .expect("open");
    let started = Instant::now();
    for start in (0..n).step_by(FILL_BATCH) {
        let batch = document_batch(start..(start + FILL_BATCH).min(n));
        for saved in svc.save_many(db, batch).await.expect("save_many") {
            saved.expect("saved");
        }
    }
    println!(
        "  scaling: {n} documents filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Indexed queries timed in this process.
const QUERIES: usize = 30;

/// The mean time of `QUERIES` finds of 100 documents each by a `count` range on the store
/// at `path` (its index built by the CLI run before), in this process; the store is closed
/// again before it returns (one process at a time may open it).
async fn indexed_queries(path: &Path, n: usize) -> Duration {
    let svc = EmbeddedProvider::open(EmbeddedConfig::new(path))
        .await
        .expect("open");
    let mut total = Duration::ZERO;
    for i in 0..QUERIES {
        let low = selective_low(i, n);
        let query =
            FindQuery::new(json!({"count": {"$gte": low, "$lt": low + 100}})).expect("query");
        let started = Instant::now();
        let found = svc.find("scale", &query).await.expect("find");
        total += started.elapsed();
        assert_eq!(found.len(), 100.min(n), "the query's documents");
    }
    total / QUERIES as u32
}

pub async fn run(sizes: &[usize]) -> Vec<Scale> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    for &n in sizes {
        let source = dir.path().join(format!("src-{n}"));
        fill_store(&source, "scale", n).await;
        let embedded = [
            ("DATABASE_PROVIDER", "embedded".to_owned()),
            ("EMBEDDED_PATH", source.display().to_string()),
        ];
        let cli = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            child(dir.path(), &args, &embedded)
        };
        let listing = cli(&["ls", "scale"]);
        let index = cli(&["index", "scale", "by-count", "count"]);
        let low = selective_low(1, n);
        let query = format!(r#"{{"count": {{"$gte": {low}, "$lt": {}}}}}"#, low + 100);
        let find = cli(&["find", "scale", &query]);
        let query_time = indexed_queries(&source, n).await;
        let target = dir.path().join(format!("dst-{n}"));
        let migration = child(
            dir.path(),
            &[
                "migrate".into(),
                "--from".into(),
                format!("embedded:{}", source.display()),
                "--to".into(),
                format!("embedded:{}", target.display()),
                "--batch".into(),
                "1000".into(),
            ],
            &[],
        );
        let mib =
            |(time, peak): (Duration, f64)| format!("{:.2} s, {peak:.1} MiB", time.as_secs_f64());
        println!(
            "  scaling: {n} documents: listing {}; index {}; find {} (the query alone {:.3} ms); migration {}",
            mib(listing),
            mib(index),
            mib(find),
            query_time.as_secs_f64() * 1e3,
            mib(migration)
        );
        out.push(Scale {
            docs: n,
            listing,
            index,
            find,
            query: query_time,
            migration,
        });
        let _ = std::fs::remove_dir_all(&source);
        let _ = std::fs::remove_dir_all(&target);
    }
    out
}
