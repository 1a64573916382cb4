//! Replays every saved fuzz input (fuzz/regressions/<target>/*, crashes the fuzzers found,
//! and fuzz/corpus/<target>/*, the seeds) through the fuzz targets' own checks
//! (fuzz/src/checks.rs) on stable Rust, so `cargo test` keeps covering them without nightly.
//! Each library bug the fuzzers found is its own test, replaying its input with nothing
//! tolerated (all three are fixed: a generation overflow, a TOML or .env error quoting a
//! password, a comma in a password escaping redaction).

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted (none if the folder is missing).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs `check` on every seed and regression input of `target`, except the `skip`ped
/// regressions (those are replayed by their own ignored tests).
fn replay(target: &str, check: fn(&[u8]), skip: &[&str]) {
    let mut seen = 0;
    for kind in ["corpus", "regressions"] {
        for path in inputs(kind, target) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if kind == "regressions" && skip.contains(&name) {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            check(&data);
            seen += 1;
        }
    }
    assert!(seen > 0, "no inputs for {target}");
}

/// Runs one named regression input of `target`.
fn replay_one(target: &str, name: &str, check: fn(&[u8])) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target)
        .join(name);
    check(&std::fs::read(&path).unwrap());
}

#[test]
fn mango_inputs() {
    replay("mango", checks::mango, &[]);
}

#[test]
fn document_inputs() {
    replay("document", checks::document, &[]);
}

#[test]
fn archive_inputs() {
    replay("archive", checks::archive, &[]);
}

#[test]
fn couchdb_response_inputs() {
    replay("couchdb_response", checks::couchdb_response, &[]);
}

#[test]
fn settings_inputs() {
    replay("settings", checks::settings, &[]);
}

#[test]
fn document_rev_compute_generation_overflow() {
    replay_one(
        "document",
        "rev-compute-generation-overflow.json",
        checks::document,
    );
}

#[test]
fn settings_toml_error_quotes_password() {
    replay_one("settings", "toml-error-quotes-password", checks::settings);
}

#[test]
fn settings_comma_in_password_not_redacted() {
    replay_one(
        "settings",
        "comma-in-password-not-redacted",
        checks::settings,
    );
}
