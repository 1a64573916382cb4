//! A migration killed with `SIGKILL` at random moments and run again ends verified, with
//! nothing missing or duplicated: `docstore migrate` (the CLI binary, as a child process)
//! between two embedded stores, killed `DOCSTORE_MIGRATE_KILLS` times (default 10), then
//! run to the end.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docstore::migrate::verify_database;
use docstore::serde_json::json;
use docstore::{DatabaseService, Document, EmbeddedConfig, EmbeddedProvider};

const DBS: [&str; 2] = ["alpha", "beta"];
const DOCS: usize = 2000;

fn migrate_command(dir: &std::path::Path, target: &str, batch: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docstore"));
    cmd.current_dir(dir)
        .args([
            "migrate",
            "--from",
            &format!("embedded:{}", dir.join("source").display()),
            "--to",
            &format!("embedded:{}", dir.join(target).display()),
            "--batch",
            batch,
        ])
        .env_remove("DATABASE_PROVIDER")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_migrations_resume_and_end_verified() {
    let kills: usize = std::env::var("DOCSTORE_MIGRATE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let source = EmbeddedProvider::open(EmbeddedConfig::new(dir.path().join("source")))
            .await
            .expect("source");
        for db in DBS {
            let docs: Vec<Document> = (0..DOCS)
                .map(|i| {
                    Document::from_value(json!({"_id": format!("d{i:05}"), "i": i})).expect("doc")
                })
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
        }
    }

    // How long one whole run takes here (into a scratch target), so that the kills land
    // within a run whatever the machine's speed.
    let started = Instant::now();
    let probe = migrate_command(dir.path(), "probe", "20")
        .status()
        .expect("a whole run");
    assert!(probe.success(), "an uninterrupted run succeeds");
    let whole = started.elapsed().as_millis().max(20) as u64;

    let mut rng = fastrand::Rng::with_seed(42);
    let mut killed_running = 0;
    for _ in 0..kills {
        let mut child = migrate_command(dir.path(), "target", "20")
            .spawn()
            .expect("docstore runs");
        let deadline = Instant::now() + Duration::from_millis(rng.u64(whole / 10..whole * 9 / 10));
        while Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().expect("wait").is_none() {
            killed_running += 1;
        }
        child.kill().ok(); // SIGKILL on Unix
        child.wait().expect("reaped");
    }
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
    // Wait for the first progress line, so the interrupt lands mid-migration.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).expect("progress");
    assert!(first.contains("docs/s"), "{first}");
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
