//! The side-by-side benchmark harness: every workload on docstore and on the raw thing
//! underneath, in the same process and run, printed as one table (operation, ours, raw,
//! ratio, the issue's target, requests per operation for CouchDB).
//!
//! ```text
//! cargo bench --bench harness                      # every section
//! cargo bench --bench harness -- memory embedded   # some: memory embedded sqlite couchdb
//!                                                  #   migration replication attachments
//!                                                  #   watch latency scaling
//! ```
//!
//! Sections: `memory` (vs a `DashMap`), `embedded` (vs raw fjall), `sqlite` (embedded vs
//! SQLite, what a user would pick instead), `couchdb` (vs a raw HTTP
//! client on the same server), `migration` (vs the per-document loop and raw `_bulk_docs`),
//! `replication` (embedded ⇄ CouchDB vs raw `_bulk_docs` / `_bulk_get` + fjall, and the lag of
//! a continuous replication at 100 writes/s), `attachments` (a 1 GiB attachment streamed
//! up and down, embedded vs raw fjall and CouchDB vs a raw streaming client, with peak
//! memory; `BENCH_ATTACHMENT_MB`), `watch` (commit-to-delivery latency p50/p99 of live
//! changes on each provider vs a raw write plus a broadcast, a fjall commit plus a wake,
//! or a raw continuous `_changes` reader; `BENCH_WATCH_DOCS`, default 500), `latency`
//! (embedded single saves, 1 and 8 writers), `scaling` (listing, index build, an indexed
//! find and migration at 10k, 100k, 1M documents, 10M with `BENCH_SCALE`: time and peak
//! memory). Sizes: `BENCH_DOCS` (default 100,000;
//! the CouchDB section uses `BENCH_COUCH_DOCS`, default 10,000), `BENCH_LOOP_DOCS` (per-doc
//! loop into CouchDB, default 2,000), `BENCH_SCALE` (default `10000,100000,1000000`).
//! Results also go to `target/benchmarks/results.json` and `results.md`;
//! `scripts/plot_benchmarks.py` draws `docs/benchmarks.png` (and `docs/scaling.png` when
//! the run had a scaling section) from the JSON.

#[path = "../../tests/support/mod.rs"]
mod support;

mod attachments;
mod common;
mod couchdb;
mod embedded;
mod memory;
mod migration;
mod replication;
mod scaling;
mod sqlite;
mod watch;

use std::fmt::Write as _;
use std::path::PathBuf;

use docstore::serde_json::{self, json};

use crate::common::{Row, env_usize, print_rows};

const SECTIONS: [&str; 10] = [
    "memory",
    "embedded",
    "sqlite",
    "couchdb",
    "migration",
    "replication",
    "attachments",
    "watch",
    "latency",
    "scaling",
];

fn main() {
    // A measuring process (see `scaling::child`) does nothing else, so it stays small.
    let raw_args: Vec<String> = std::env::args().collect();
    if raw_args.get(1).map(String::as_str) == Some(scaling::MEASURE_ARG) {
        let program = raw_args.get(2).expect("a program to measure");
        scaling::measure_child(program, &raw_args[3..]);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run());
}

async fn run() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(unknown) = args.iter().find(|a| !SECTIONS.contains(&a.as_str())) {
        eprintln!(
            "unknown section {unknown:?}; sections: {}",
            SECTIONS.join(" ")
        );
        std::process::exit(2);
    }
    let wanted = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    let docs = env_usize("BENCH_DOCS", 100_000);
    let couch_docs = env_usize("BENCH_COUCH_DOCS", 10_000);
    let loop_docs = env_usize("BENCH_LOOP_DOCS", 2_000);
    let scale: Vec<usize> = std::env::var("BENCH_SCALE")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|v| v.trim().replace('_', "").parse().ok())
        .collect();

    let mut rows: Vec<Row> = Vec::new();
    let section = |name: &str, new: Vec<Row>, rows: &mut Vec<Row>| {
        print_rows(&format!("{name}:"), &new);
        rows.extend(new);
    };
    if wanted("memory") {
        section(
            "memory provider vs raw DashMap<String, Value>",
            memory::run(docs).await,
            &mut rows,
        );
    }
    if wanted("embedded") {
        section(
            "embedded provider vs raw fjall (SyncAll commits)",
            embedded::run(docs).await,
            &mut rows,
        );
    }
    if wanted("sqlite") {
        section(
            "embedded provider vs SQLite (WAL, synchronous=FULL, JSON text)",
            sqlite::run(docs).await,
            &mut rows,
        );
    }
    if wanted("couchdb") {
        section(
            "CouchDB provider vs raw HTTP client",
            couchdb::run(couch_docs).await,
            &mut rows,
        );
    }
    if wanted("migration") {
        section(
            "migration",
            migration::run(docs, loop_docs).await,
            &mut rows,
        );
    }
    let mut lag = None;
    if wanted("replication") {
        let (new, measured) = replication::run(couch_docs).await;
        section("replication", new, &mut rows);
        lag = measured;
    }
    if wanted("attachments") {
        section("attachments", attachments::run().await, &mut rows);
    }
    if wanted("watch") {
        section(
            "watch: commit-to-delivery latency (ms, lower is better)",
            watch::run(env_usize("BENCH_WATCH_DOCS", 500)).await,
            &mut rows,
        );
    }
    let latency = if wanted("latency") {
        embedded::latency().await
    } else {
        Vec::new()
    };
    let scaling = if wanted("scaling") {
        scaling::run(&scale).await
    } else {
        Vec::new()
    };

    print_rows(
        &format!(
            "summary: {docs} documents of 982 bytes (CouchDB: {couch_docs}); ratio = ours / raw"
        ),
        &rows,
    );
    let mut extra = String::new();
    if let Some(l) = &lag {
        let _ = writeln!(
            extra,
            "\ncontinuous replication embedded -> CouchDB at {} writes/s ({} documents): lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target: p99 < 500 ms)",
            l.writes_per_s, l.docs, l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    if !latency.is_empty() {
        let _ = writeln!(
            extra,
            "\nembedded single durable save, concurrent writers (ours | raw fjall):"
        );
        let _ = writeln!(
            extra,
            "{:<8} {:>10} {:>9} {:>9} | {:>10} {:>9} {:>9}",
            "writers", "saves/s", "p50 ms", "p99 ms", "saves/s", "p50 ms", "p99 ms"
        );
        for l in &latency {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            let _ = writeln!(
                extra,
                "{:<8} {:>10.0} {:>9.2} {:>9.2} | {:>10.0} {:>9.2} {:>9.2}",
                l.writers,
                l.ours.0,
                ms(l.ours.1),
                ms(l.ours.2),
                l.raw.0,
                ms(l.raw.1),
                ms(l.raw.2)
            );
        }
    }
    if !scaling.is_empty() {
        let _ = writeln!(
            extra,
            "\nscaling (release CLI, child process; time and peak RSS):"
        );
        let _ = writeln!(
            extra,
            "{:>10} {:>8} {:>7} {:>8} {:>7} {:>8} {:>7} {:>9} {:>10} {:>11}",
            "documents",
            "ls s",
            "ls MiB",
            "index s",
            "idx MiB",
            "find s",
            "find MiB",
            "query ms",
            "migrate s",
            "migrate MiB"
        );
        for s in &scaling {
            let _ = writeln!(
                extra,
                "{:>10} {:>8.2} {:>7.1} {:>8.2} {:>7.1} {:>8.3} {:>7.1} {:>9.3} {:>10.2} {:>11.1}",
                s.docs,
                s.listing.0.as_secs_f64(),
                s.listing.1,
                s.index.0.as_secs_f64(),
                s.index.1,
                s.find.0.as_secs_f64(),
                s.find.1,
                s.query.as_secs_f64() * 1e3,
                s.migration.0.as_secs_f64(),
                s.migration.1
            );
        }
    }
    print!("{extra}");
    write_results(&rows, &latency, &scaling, lag.as_ref(), docs, couch_docs);
}

/// `target/benchmarks/results.json` (for the plot) and `results.md` (for BENCHMARKS.md).
fn write_results(
    rows: &[Row],
    latency: &[embedded::Latency],
    scaling: &[scaling::Scale],
    lag: Option<&replication::Lag>,
    docs: usize,
    couch_docs: usize,
) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/benchmarks");
    if std::fs::create_dir_all(&dir).is_err() {
        eprintln!("cannot create {}", dir.display());
        return;
    }
    let json = json!({
        "docs": docs,
        "couch_docs": couch_docs,
        "rows": rows.iter().map(|r| json!({
            "section": r.section, "op": r.op, "unit": r.unit, "ours": r.ours, "raw": r.raw,
            "ratio": r.ratio(), "target": r.target,
            "requests": r.requests.map(|(o, w)| json!({"ours": o, "raw": w})),
        })).collect::<Vec<_>>(),
        "latency": latency.iter().map(|l| json!({
            "writers": l.writers,
            "ours": {"per_s": l.ours.0, "p50_ms": l.ours.1.as_secs_f64() * 1e3, "p99_ms": l.ours.2.as_secs_f64() * 1e3},
            "raw": {"per_s": l.raw.0, "p50_ms": l.raw.1.as_secs_f64() * 1e3, "p99_ms": l.raw.2.as_secs_f64() * 1e3},
        })).collect::<Vec<_>>(),
        "replication_lag": lag.map(|l| json!({
            "writes_per_s": l.writes_per_s, "docs": l.docs,
            "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms,
        })),
        "scaling": scaling.iter().map(|s| json!({
            "docs": s.docs,
            "listing_s": s.listing.0.as_secs_f64(), "listing_mib": s.listing.1,
            "index_s": s.index.0.as_secs_f64(), "index_mib": s.index.1,
            "find_s": s.find.0.as_secs_f64(), "find_mib": s.find.1,
            "query_ms": s.query.as_secs_f64() * 1e3,
            "migration_s": s.migration.0.as_secs_f64(), "migration_mib": s.migration.1,
        })).collect::<Vec<_>>(),
    });
    let mut md = String::from(
        "| section | operation | ours | raw | ratio | target | requests/op (ours / raw) |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} ({}) | {:.1} | {:.1} | {:.2} | {} | {} |",
            r.section,
            r.op,
            r.unit,
            r.ours,
            r.raw,
            r.ratio(),
            r.target
                .map_or(String::new(), |t| format!("≥ {t:.2} {}", r.verdict())),
            r.requests
                .map_or(String::new(), |(o, w)| format!("{o:.2} / {w:.2}")),
        );
    }
    let written = std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&json).unwrap_or_default(),
    )
    .and_then(|()| std::fs::write(dir.join("results.md"), md));
    match written {
        Ok(()) => println!("\nresults written to {}", dir.display()),
        Err(e) => eprintln!("cannot write results to {}: {e}", dir.display()),
    }
}
