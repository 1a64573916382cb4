//! The `docstore` binary, run as a user would: in a scratch directory (so the repository's
//! `config/` and `.env` do not apply), configured through the environment.

use std::path::Path;
use std::process::{Command, Output};

fn docstore(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docstore"));
    cmd.args(args).current_dir(dir);
    for key in docstore::settings::KEYS {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied());
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("run docstore");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn put_get_ls_rm_round_trip_on_the_default_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = docstore(
        d,
        &["put", "agents", "a/1", r#"{"name":"My Agent","n":1}"#],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("saved a/1 at 1-"),
        "{}",
        text(&out.stdout)
    );
    // The default provider is embedded, at ./data/docstore.
    assert!(d.join("data/docstore").is_dir());

    let out = docstore(
        d,
        &["put", "agents", "b", "-"],
        &[],
        Some(r#"{"from":"stdin"}"#),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = docstore(d, &["get", "agents", "a/1"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["_id"], "a/1");
    assert_eq!(doc["name"], "My Agent");
    assert!(doc["_rev"].as_str().unwrap().starts_with("1-"));

    let out = docstore(d, &["ls"], &[], None);
    assert_eq!(text(&out.stdout), "agents\n");
    let out = docstore(d, &["--json", "ls", "agents"], &[], None);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a/1", "b"]);

    let out = docstore(d, &["rm", "agents", "a/1"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("deleted a/1 at 2-"));
    let out = docstore(d, &["get", "agents", "a/1"], &[], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    let out = docstore(d, &["--json", "info", "agents"], &[], None);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["doc_count"], 1);
    assert_eq!(info["doc_del_count"], 1);
    let out = docstore(d, &["changes", "agents"], &[], None);
    let feed = text(&out.stdout);
    assert!(feed.contains("a/1") && feed.contains("deleted"), "{feed}");
}

#[test]
fn bad_input_is_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = docstore(d, &["put", "Bad Name", "x", "{}"], &[], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid database name"),
        "{}",
        text(&out.stderr)
    );
    let out = docstore(d, &["put", "db", "x", "[1,2]"], &[], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("JSON object"),
        "{}",
        text(&out.stderr)
    );
    let out = docstore(d, &["put", "db", "_x", "{}"], &[], None);
    assert!(
        text(&out.stderr).contains("reserved"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unknown_provider_names_the_key_and_the_valid_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = docstore(
        dir.path(),
        &["ls"],
        &[("DATABASE_PROVIDER", "couchbd")],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("DATABASE_PROVIDER"), "{err}");
    assert!(err.contains("memory, embedded, couchdb"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "no silent fall-back to another provider"
    );
}

#[test]
fn couchdb_without_a_url_names_couchdb_url_and_never_prints_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-pa55";
    let out = docstore(
        dir.path(),
        &["ls"],
        &[
            ("DATABASE_PROVIDER", "couchdb"),
            ("COUCHDB_USER", "admin"),
            ("COUCHDB_PASSWORD", secret),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("COUCHDB_URL"), "{err}");
    assert!(
        !err.contains(secret) && !text(&out.stdout).contains(secret),
        "{err}"
    );
}

#[test]
fn settings_come_from_dotenv_and_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("config")).unwrap();
    std::fs::write(
        d.join("config/default.toml"),
        "database_provider = \"couchbd\"\n",
    )
    .unwrap();
    // .env overrides the TOML file...
    std::fs::write(
        d.join(".env"),
        "DATABASE_PROVIDER=embedded\nEMBEDDED_PATH=./from-dotenv\n",
    )
    .unwrap();
    let out = docstore(d, &["put", "db", "x", "{}"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(d.join("from-dotenv").is_dir());
    // ...and the environment overrides .env.
    let out = docstore(d, &["ls"], &[("DATABASE_PROVIDER", "nope")], None);
    assert!(
        text(&out.stderr).contains("\"nope\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn find_and_index_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (id, age) in [("x", 40), ("y", 20), ("z", 30)] {
        let out = docstore(
            d,
            &["put", "people", id, &format!(r#"{{"age":{age}}}"#)],
            &[],
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = docstore(d, &["find", "people", r#"{"age": {"$gt": 25}}"#], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["x", "z"]);

    // A sort needs an index: one clear error line naming the fix, then it works.
    let sorted = r#"{"selector": {}, "sort": ["age"], "fields": ["_id"]}"#;
    let out = docstore(d, &["find", "people", sorted], &[], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ensure_index"),
        "{}",
        text(&out.stderr)
    );
    let out = docstore(d, &["index", "people", "by-age", "age"], &[], None);
    assert_eq!(text(&out.stdout), "index by-age on people: created\n");
    let out = docstore(d, &["find", "people", sorted], &[], None);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        found,
        serde_json::json!([{"_id": "y"}, {"_id": "z"}, {"_id": "x"}])
    );

    let out = docstore(
        d,
        &["find", "people", r#"{"age": {"$near": 1}}"#],
        &[],
        None,
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("$near"), "{}", text(&out.stderr));
}

/// `replicate` between two embedded stores both ways turns concurrent edits into a conflict
/// on both sides; `conflicts` lists it and shows the leaves; another run copies nothing.
#[test]
fn replicate_both_ways_and_list_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = ("embedded:./a", "embedded:./b");
    let run = |args: &[&str], store: &str| {
        let out = docstore(d, args, &[("EMBEDDED_PATH", store)], None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    run(&["put", "notes", "n1", r#"{"v":0}"#], "./a");
    run(&["put", "notes", "n2", r#"{"v":0}"#], "./a");
    let out = run(&["replicate", a, b], "./a");
    assert!(out.contains("notes"), "{out}");
    run(&["put", "notes", "n1", r#"{"side":"a"}"#], "./a");
    run(&["put", "notes", "n1", r#"{"side":"b"}"#], "./b");
    run(&["replicate", a, b], "./a");
    run(&["replicate", b, a], "./a");
    for store in ["./a", "./b"] {
        let listed: serde_json::Value =
            serde_json::from_str(&run(&["--json", "conflicts", "notes"], store)).unwrap();
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(listed[0]["id"], "n1");
        let one: serde_json::Value =
            serde_json::from_str(&run(&["--json", "conflicts", "notes", "n1"], store)).unwrap();
        assert_eq!(
            one["live_leaves"].as_array().map(Vec::len),
            Some(2),
            "{one}"
        );
    }
    let again: serde_json::Value =
        serde_json::from_str(&run(&["--json", "replicate", a, b], "./a")).unwrap();
    // The change the sync back made on `a` is read, and found present on `b`.
    assert_eq!(again[0]["docs_written"], 0, "{again}");
    assert_eq!(again[0]["missing_found"], 0, "{again}");
    let out = docstore(d, &["replicate", a, "archive:x"], &[], None);
    assert!(!out.status.success());
}

/// `attach` a file, list it, read it back to stdout and to a file, `detach` it.
#[test]
fn attachments_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 256) as u8).collect();
    std::fs::write(d.join("photo.png"), &bytes).unwrap();
    let out = docstore(d, &["attach", "docs", "a", "photo.png"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("attached photo.png to a at 1-"),
        "{}",
        text(&out.stdout)
    );
    let out = docstore(
        d,
        &["attach", "docs", "a", "-", "--name", "notes.txt"],
        &[],
        Some("some notes"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = docstore(d, &["ls", "docs"], &[], None);
    assert!(
        text(&out.stdout).contains("[notes.txt, photo.png]"),
        "{}",
        text(&out.stdout)
    );
    let out = docstore(d, &["get", "docs", "a"], &[], None);
    let doc: docstore::serde_json::Value = docstore::serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["_attachments"]["photo.png"]["content_type"],
        "image/png"
    );
    assert_eq!(doc["_attachments"]["notes.txt"]["length"], 10);
    let out = docstore(d, &["attachment", "docs", "a", "photo.png"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, bytes, "the bytes on standard output");
    let out = docstore(
        d,
        &["attachment", "docs", "a", "notes.txt", "-o", "n.txt"],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(d.join("n.txt")).unwrap(), b"some notes");
    let out = docstore(d, &["detach", "docs", "a", "photo.png"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = docstore(d, &["attachment", "docs", "a", "photo.png"], &[], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing attachment"),
        "{}",
        text(&out.stderr)
    );
}

/// The log on standard error: warnings by default (here: a migration from a store without
/// databases), nothing but errors with `-q`, info with `-v`, `RUST_LOG` when neither is given.
#[test]
fn log_levels_follow_quiet_verbose_and_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let migrate = ["migrate", "--from", "memory:", "--to", "memory:"];
    let stderr_of = |flags: &[&str], env: &[(&str, &str)]| {
        let args: Vec<&str> = flags.iter().chain(&migrate).copied().collect();
        let out = docstore(d, &args, env, None);
        assert!(out.status.success(), "{flags:?}: {}", text(&out.stderr));
        text(&out.stderr)
    };

    let default = stderr_of(&[], &[]);
    assert!(
        default.contains("WARN") && default.contains("no databases: nothing to migrate"),
        "{default}"
    );
    assert!(!default.contains("INFO"), "{default}");

    assert_eq!(stderr_of(&["-q"], &[]), "", "-q hides the warning");
    assert_eq!(
        stderr_of(&["--quiet"], &[("RUST_LOG", "debug")]),
        "",
        "-q wins over RUST_LOG"
    );

    let verbose = stderr_of(&["-v"], &[]);
    assert!(
        verbose.contains("INFO") && verbose.contains("migrating"),
        "{verbose}"
    );
    assert!(verbose.contains("WARN"), "{verbose}");
    assert!(!verbose.contains("DEBUG"), "{verbose}");

    // Debug: a line per batch, here from a store with one document.
    let out = docstore(d, &["put", "notes", "n1", "{}"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let copy = [
        "migrate",
        "--from",
        "embedded:./data/docstore",
        "--to",
        "memory:",
    ];
    let debug_of = |flags: &[&str], env: &[(&str, &str)]| {
        let args: Vec<&str> = flags.iter().chain(&copy).copied().collect();
        let out = docstore(d, &args, env, None);
        assert!(out.status.success(), "{flags:?}: {}", text(&out.stderr));
        text(&out.stderr)
    };
    for (flags, env) in [(&["-vv"][..], &[][..]), (&[], &[("RUST_LOG", "debug")])] {
        let debug = debug_of(flags, env);
        assert!(
            debug
                .lines()
                .any(|l| l.contains("DEBUG") && l.contains("batch") && l.contains("db=\"notes\"")),
            "{flags:?} {env:?}: {debug}"
        );
    }
    assert!(!debug_of(&["-v"], &[]).contains("DEBUG"));
    let only_errors = stderr_of(&[], &[("RUST_LOG", "error")]);
    assert_eq!(only_errors, "", "RUST_LOG=error hides the warning");

    // Errors still show with -q: the one error line.
    let out = docstore(d, &["-q", "get", "db", "x"], &[], None);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).starts_with("error: "),
        "{}",
        text(&out.stderr)
    );
    let out = docstore(d, &["-q", "-v", "ls"], &[], None);
    assert!(!out.status.success(), "-q and -v conflict");
}

/// `--json` output is the JSON alone: no progress bar, no escape code, no carriage return,
/// on standard output or error. Without it, off a terminal, progress is a plain line per
/// batch, again without escape codes.
#[test]
fn json_output_carries_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for db in ["alpha", "beta"] {
        for i in 0..5 {
            let out = docstore(
                d,
                &["put", db, &format!("d{i}"), &format!(r#"{{"i":{i}}}"#)],
                &[("EMBEDDED_PATH", "./a")],
                None,
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }
    let clean = |what: &str, bytes: &[u8]| {
        let shown = text(bytes);
        assert!(
            !shown.contains('\x1b') && !shown.contains('\r'),
            "{what}: {shown:?}"
        );
    };
    let runs: [&[&str]; 2] = [
        &[
            "migrate",
            "--from",
            "embedded:./a",
            "--to",
            "embedded:./b",
            "--batch",
            "1",
        ],
        &["replicate", "embedded:./a", "embedded:./c", "--batch", "1"],
    ];
    for args in runs {
        let json: Vec<&str> = ["--json"].iter().chain(args).copied().collect();
        let out = docstore(d, &json, &[], None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        clean("stdout", &out.stdout);
        clean("stderr", &out.stderr);
        assert_eq!(
            text(&out.stderr),
            "",
            "{args:?}: no progress lines with --json"
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)));
        assert!(report.is_object() || report.is_array(), "{report}");
    }
    // Off a terminal, without --json: plain progress lines, one per batch.
    let out = docstore(
        d,
        &[
            "migrate",
            "--from",
            "embedded:./a",
            "--to",
            "embedded:./d",
            "--batch",
            "2",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    clean("stderr", &out.stderr);
    let lines = text(&out.stderr);
    for db in ["alpha", "beta"] {
        let of_db: Vec<&str> = lines
            .lines()
            .filter(|l| l.starts_with(&format!("{db} ")))
            .collect();
        assert!(of_db.len() > 1, "a line per batch: {lines}");
        assert!(
            of_db
                .iter()
                .all(|l| l.contains(" changes, ") && l.contains("/s, ETA")),
            "{lines}"
        );
        assert!(of_db.last().unwrap().contains(" 5/5 changes"), "{lines}");
    }
    assert!(text(&out.stdout).contains("migration summary"));
}
