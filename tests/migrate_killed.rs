//! A migration or a replication killed with `SIGKILL` at random moments and run again ends
//! verified (for replication: with the same revision trees), with nothing missing or
//! duplicated: `docstore migrate` / `docstore replicate` (the CLI binary, as a child
//! process) between two embedded stores, killed `DOCSTORE_MIGRATE_KILLS` times (default 10),
//! then run to the end.

use std::process::{Command, Stdio};
use std::time::Duration;

use docstore::migrate::verify_database;
use docstore::serde_json::json;
use docstore::{DatabaseService, Document, EmbeddedConfig, EmbeddedProvider};

const DBS: [&str; 2] = ["alpha", "beta"];
const DOCS: usize = 2000;

fn migrate_command(dir: &std::path::Path, target: &str, batch: &str) -> Command {
    let source = format!("embedded:{}", dir.join("source").display());
    let target = format!("embedded:{}", dir.join(target).display());
    command(
        dir,
        &[
            "migrate", "--from", &source, "--to", &target, "--batch", batch,
        ],
    )
}

fn replicate_command(dir: &std::path::Path, target: &str, batch: &str) -> Command {
    let source = format!("embedded:{}", dir.join("source").display());
    let target = format!("embedded:{}", dir.join(target).display());
    command(dir, &["replicate", &source, &target, "--batch", batch])
}

fn command(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docstore"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("DATABASE_PROVIDER")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Fills the source: `DOCS` documents per database, every ninth deleted, and (with
/// `branches`) every hundredth with a conflicting replicated branch.
async fn fill(dir: &std::path::Path, branches: bool) {
    let source = EmbeddedProvider::open(EmbeddedConfig::new(dir.join("source")))
        .await
        .expect("source");
    for db in DBS {
        let docs: Vec<Document> = (0..DOCS)
            .map(|i| Document::from_value(json!({"_id": format!("d{i:05}"), "i": i})).expect("doc"))
            .collect();
        for r in source.save_many(db, docs).await.expect("bulk") {
            r.expect("saved");
        }
        for i in (0..DOCS).step_by(9) {
            source
                .delete(db, &format!("d{i:05}"))
                .await
                .expect("delete");
        }
        if branches {
            let root: docstore::Rev = "1-00000000000000000000000000000000".parse().expect("rev");
            let docs: Vec<docstore::RevisionedDoc> = (1..DOCS)
                .step_by(100)
                .map(|i| docstore::RevisionedDoc {
                    id: format!("d{i:05}"),
                    rev: "2-ffffffffffffffffffffffffffffffff".parse().expect("rev"),
                    deleted: false,
                    body: json!({"branch": i})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    history: vec![root],
                })
                .collect();
            source.put_revisions(db, docs).await.expect("branches");
        }
    }
}

/// Runs `make` `kills` times, each killed a random moment (up to 30 ms) after its first
/// progress line (its first batch checkpointed), so every kill lands mid-run, however fast
/// the machine; the number of runs killed while still running.
fn kill_runs(make: &dyn Fn() -> Command, kills: usize) -> usize {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut killed_running = 0;
    for _ in 0..kills {
        let mut cmd = make();
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("docstore runs");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut first).expect("progress");
        std::thread::sleep(Duration::from_millis(rng.u64(0..30)));
        if child.try_wait().expect("wait").is_none() {
            killed_running += 1;
        }
        child.kill().ok(); // SIGKILL on Unix
        child.wait().expect("reaped");
    }
    killed_running
}

fn kills() -> usize {
    std::env::var("DOCSTORE_MIGRATE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_migrations_resume_and_end_verified() {
    let kills = kills();
    let dir = tempfile::tempdir().expect("temp dir");
    fill(dir.path(), false).await;
    let killed_running = kill_runs(&|| migrate_command(dir.path(), "target", "20"), kills);
    println!("{killed_running} of {kills} runs were killed while migrating");
    assert!(
        killed_running > 0,
        "no run was interrupted; the test proved nothing"
    );

    let status = migrate_command(dir.path(), "target", "20")
        .status()
        .expect("final run");
    assert!(status.success(), "the final run ends verified");

    let source = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("source")))
        .await
        .expect("source");
    let target = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("target")))
        .await
        .expect("target");
    for db in DBS {
        let v = verify_database(&source, &target, db).await.expect("verify");
        assert!(v.matches, "{db}: {v:?}");
        let info = target.database_info(db).await.expect("info");
        let expected_deleted = DOCS.div_ceil(9) as u64;
        assert_eq!(info.doc_count, DOCS as u64 - expected_deleted);
        assert_eq!(info.doc_del_count, expected_deleted);
        // Nothing duplicated: the change feed has each document once.
        let feed = target.changes(db, None, 10 * DOCS).await.expect("changes");
        assert_eq!(feed.results.len(), DOCS);
    }
}

/// Ctrl-C (SIGINT) stops a migration after its current batch with the checkpoint stored:
/// the command says so and exits non-zero, and the next run resumes and verifies.
/// The same for `docstore replicate`, with conflicting branches in the source: the final
/// run leaves the target with the source's trees (every leaf of the branched documents),
/// each document once in its changes feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replications_resume_and_converge() {
    let kills = kills();
    let dir = tempfile::tempdir().expect("temp dir");
    fill(dir.path(), true).await;
    let killed_running = kill_runs(&|| replicate_command(dir.path(), "target", "20"), kills);
    println!("{killed_running} of {kills} runs were killed while replicating");
    assert!(
        killed_running > 0,
        "no run was interrupted; the test proved nothing"
    );
    let status = replicate_command(dir.path(), "target", "20")
        .status()
        .expect("final run");
    assert!(status.success(), "the final run succeeds");
    let source = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("source")))
        .await
        .expect("source");
    let target = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("target")))
        .await
        .expect("target");
    for db in DBS {
        let v = verify_database(&source, &target, db).await.expect("verify");
        assert!(v.matches, "{db}: {v:?}");
        let feed = target.changes(db, None, 10 * DOCS).await.expect("changes");
        assert_eq!(feed.results.len(), DOCS, "each document once");
        for i in (1..DOCS).step_by(100) {
            let id = format!("d{i:05}");
            let leaves = |svc: &EmbeddedProvider| {
                let (svc, db, id) = (svc.clone(), db.to_owned(), id.clone());
                async move {
                    svc.open_revs(&db, &id, &docstore::OpenRevs::All, true)
                        .await
                        .expect("open_revs")
                }
            };
            let on_target = leaves(&target).await;
            assert_eq!(on_target.len(), 2, "{id}: both branches");
            assert_eq!(on_target, leaves(&source).await, "{id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stores_the_checkpoint_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let source = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("source")))
            .await
            .expect("source");
        let docs: Vec<Document> = (0..DOCS)
            .map(|i| Document::from_value(json!({"_id": format!("d{i:05}")})).expect("doc"))
            .collect();
        for r in source.save_many(DBS[0], docs).await.expect("bulk") {
            r.expect("saved");
        }
    }
    let mut cmd = migrate_command(dir.path(), "target", "2");
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("docstore runs");
    // Wait for the first progress line, so the interrupt lands mid-migration (a log line,
    // such as a slow-call warning on a loaded machine, may come before it).
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut before_progress = Vec::new();
    loop {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).expect("stderr");
        assert!(
            read > 0,
            "stderr ended before a progress line: {before_progress:?}"
        );
        if line.contains("/s, ETA") {
            break;
        }
        assert!(
            line.contains("WARN") || line.contains("INFO"),
            "only log lines may precede the progress: {line}"
        );
        before_progress.push(line);
    }
    // SAFETY: sends SIGINT to our own child process, which is still running or a zombie.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("stderr");
    let status = child.wait().expect("exits");
    assert!(!status.success(), "an interrupted run exits non-zero");
    assert!(rest.contains("interrupted"), "{rest}");

    let out = migrate_command(dir.path(), "target", "500")
        .arg("--json")
        .stdout(Stdio::piped())
        .output()
        .expect("resumes");
    assert!(out.status.success());
    let report: docstore::serde_json::Value =
        docstore::serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["databases"][0]["resumed"], true, "{report}");
    assert_eq!(
        report["databases"][0]["verification"]["matches"], true,
        "{report}"
    );
}
