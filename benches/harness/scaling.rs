//! How cost grows with the work: a full listing (`docstore ls DB`) and a migration
//! (`docstore migrate`, embedded → embedded, batches of 1,000) of 10k, 100k and 1M documents,
//! each in a child process of the release CLI, timed, with its peak memory (max RSS) taken
//! from `wait4`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use docstore::{EmbeddedConfig, EmbeddedProvider};

use crate::migration::fill;

/// One size: seconds and peak MiB of the listing and of the migration.
#[derive(Debug, Clone)]
pub struct Scale {
    pub docs: usize,
    pub listing: (Duration, f64),
    pub migration: (Duration, f64),
}

/// Runs `docstore` with `args` (and `env`), output discarded; its wall time and max RSS.
// The child is reaped by `wait4` (which also gives its own rusage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn child(dir: &Path, args: &[String], env: &[(&str, String)]) -> (Duration, f64) {
    let start = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_docstore"));
    command
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().expect("docstore runs");
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid, writing into a zeroed rusage we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "waited for the child");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "docstore {args:?} failed"
    );
    (elapsed, usage.ru_maxrss as f64 / 1024.0)
}

pub async fn run(sizes: &[usize]) -> Vec<Scale> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = Vec::new();
    for &n in sizes {
        let source = dir.path().join(format!("src-{n}"));
        {
            let svc = EmbeddedProvider::open(EmbeddedConfig::new(&source))
                .await
                .expect("open");
            fill(&svc, "scale", n).await;
        }
        let listing = child(
            dir.path(),
            &["ls".into(), "scale".into()],
            &[
                ("DATABASE_PROVIDER", "embedded".into()),
                ("EMBEDDED_PATH", source.display().to_string()),
            ],
        );
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
        println!(
            "  scaling: {n} documents: listing {:.2} s, {:.1} MiB; migration {:.2} s, {:.1} MiB",
            listing.0.as_secs_f64(),
            listing.1,
            migration.0.as_secs_f64(),
            migration.1
        );
        out.push(Scale {
            docs: n,
            listing,
            migration,
        });
        let _ = std::fs::remove_dir_all(&source);
        let _ = std::fs::remove_dir_all(&target);
    }
    out
}
