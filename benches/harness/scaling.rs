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
