//! The fuzz targets' bodies: one function per target that feeds bytes to docstore's public
//! parsers and asserts no panic plus the invariants below. Shared by the libFuzzer targets
//! (fuzz/fuzz_targets/*.rs, nightly) and by tests/fuzz_regressions.rs (stable, via
//! `#[path]`), so a saved crash replays through exactly the same code under `cargo test`.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::OnceLock;

use docstore::mango::Selector;
use docstore::serde_json::{self, Map, Value, json};
use docstore::settings::redact_url;
use docstore::{
    Change, ChangesPage, DatabaseInfo, Document, FindQuery, MemoryProvider, Rev, RevisionedDoc,
    Settings, WriteResult, collate, validate,
};

/// Up to how many derived documents a selector is evaluated against.
const MAX_DOCS: usize = 16;

/// Documents every selector is tried on, besides those derived from the input.
fn fixed_docs() -> Vec<Map<String, Value>> {
    let docs = json!([
        {"_id": "alice", "_rev": "1-967a00dff5e02add41819138abb3284d", "name": "alice",
         "age": 31, "active": true, "address": {"city": "oslo"}, "tags": ["a", "b"]},
        {"_id": "bob", "_rev": "2-abc", "name": "bob", "age": 25, "active": false,
         "nick": null, "scores": [1, 2.5, -3], "nested": {"deep": {"x": [{"y": 1}]}}},
        {"_id": "c", "_rev": "3-0785e9eb543380151003dc452c3a001a", "": "", "a.b": 1,
         "a": {"b": 2}, "big": 123456789012345678901234567890_u128, "f": 1e300}
    ]);
    match docs {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|d| match d {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Objects found in `value` (itself first), and for each field `{k: operand}` documents
/// that a selector `{k: {"$op": operand}}` might match.
fn derived_docs(value: &Value, out: &mut Vec<Map<String, Value>>) {
    if out.len() >= MAX_DOCS {
        return;
    }
    match value {
        Value::Object(map) => {
            out.push(map.clone());
            for (k, v) in map {
                if out.len() >= MAX_DOCS {
                    return;
                }
                let operand = match v {
                    Value::Object(inner) if inner.len() == 1 => {
                        inner.values().next().cloned().unwrap_or(Value::Null)
                    }
                    other => other.clone(),
                };
                let mut doc = Map::new();
                doc.insert(k.clone(), operand);
                out.push(doc);
                derived_docs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| derived_docs(v, out)),
        _ => {}
    }
}

/// All scalar and composite values in `value`, for collation checks (bounded).
fn values_in<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    if out.len() >= MAX_DOCS {
        return;
    }
    out.push(value);
    match value {
        Value::Object(map) => map.values().for_each(|v| values_in(v, out)),
        Value::Array(items) => items.iter().for_each(|v| values_in(v, out)),
        _ => {}
    }
}

/// `mango`: bytes → JSON → `Selector::parse`, evaluated on derived documents; `FindQuery`;
/// collation. Invariants: evaluation is deterministic; a parsed selector's `as_json` parses
/// again and answers the same; `matches` on a document with `_id`/`_rev` agrees with
/// `matches_stored` on its parts; collation is a consistent order.
pub fn mango(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut docs = fixed_docs();
    derived_docs(&value, &mut docs);
    if let Ok(selector) = Selector::parse(&value) {
        let again = Selector::parse(selector.as_json()).expect("a parsed selector's JSON parses");
        for doc in &docs {
            let first = selector.matches(doc);
            assert_eq!(first, selector.matches(doc), "matches is not deterministic");
            assert_eq!(
                first,
                again.matches(doc),
                "as_json does not reparse the same"
            );
            let id = doc.get("_id").and_then(Value::as_str);
            let rev = doc
                .get("_rev")
                .and_then(Value::as_str)
                .and_then(|r| Rev::parse(r).ok());
            if let (Some(id), Some(rev)) = (id, rev) {
                let mut body = doc.clone();
                body.shift_remove("_id");
                body.shift_remove("_rev");
                assert_eq!(
                    first,
                    selector.matches_stored(id, &rev, &body),
                    "matches and matches_stored disagree on {doc:?}"
                );
            }
        }
    }
    let _ = FindQuery::from_json(&value);
    if let Ok(query) = FindQuery::from_json(&json!({ "selector": value })) {
        let _ = (query.projection(), query.sort_fields(), query.limit_value());
    }
    let mut values = Vec::new();
    values_in(&value, &mut values);
    for a in &values {
        assert_eq!(collate::compare(a, a), Ordering::Equal, "{a} != itself");
        for b in &values {
            let ab = collate::compare(a, b);
            assert_eq!(ab, collate::compare(b, a).reverse(), "{a} vs {b}");
        }
    }
}

/// `Rev::parse` on any text never panics; what parses prints back to the same revision.
fn rev_round_trip(text: &str) -> Option<Rev> {
    let rev = Rev::parse(text).ok()?;
    let printed = rev.to_string();
    assert_eq!(
        Rev::parse(&printed).expect("a printed revision parses"),
        rev,
        "{text:?} printed as {printed:?}"
    );
    Some(rev)
}

/// Every public validator on `text`; none may panic, and a valid database name follows
/// CouchDB's rule.
fn validate_text(text: &str) {
    if validate::database_name(text).is_ok() {
        assert!(text.len() <= validate::MAX_DB_NAME_LEN, "{text:?}");
        assert!(
            text.starts_with(|c: char| c.is_ascii_lowercase()),
            "{text:?}"
        );
    }
    let _ = validate::document_id("db", text);
    let _ = validate::local_id("db", text);
    let _ = validate::database_and_ids(text, &[text.to_owned()]);
    let _ = validate::sequence_token(Some(text), "memory");
    if let Ok(n) = text.parse::<u64>() {
        let _ = validate::revs_limit(n);
        let _ = validate::limit(usize::try_from(n).unwrap_or(usize::MAX));
    }
}

/// `document`: bytes → `Rev::parse`, validators, and JSON → `Document::from_value` →
/// `validate::body`, `Rev::compute`. Invariants: parsing round-trips; computing twice
/// gives the same revision, one generation above its parent (saturating at the last
/// generation), and it round-trips.
pub fn document(data: &[u8]) {
    document_check(data);
}

fn document_check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    rev_round_trip(&text);
    validate_text(&text);
    for line in text.lines().take(8) {
        rev_round_trip(line);
        validate_text(line);
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = Document::from_json(&text);
    let Ok(doc) = Document::from_value(value) else {
        return;
    };
    let id = doc.id().unwrap_or("doc").to_owned();
    validate_text(&id);
    let _ = validate::body("db", &id, &doc);
    let parent = doc.rev().and_then(rev_round_trip);
    let body = doc.body();
    for deleted in [false, true] {
        let rev = Rev::compute(parent.as_ref(), deleted, &body);
        assert_eq!(rev, Rev::compute(parent.as_ref(), deleted, &body));
        assert_eq!(
            Some(rev.generation()),
            parent.map_or(Some(1), |p| Some(p.generation().saturating_add(1))),
            "generation of a child of {parent:?}"
        );
        assert_eq!(rev_round_trip(&rev.to_string()), Some(rev));
        let mut stored = doc.clone();
        stored.set_rev(&rev);
        let reread = Document::assemble(&id, &rev, body.clone());
        assert_eq!(reread.rev(), Some(rev.to_string().as_str()));
    }
    let text = serde_json::to_string(&doc.clone().into_value()).expect("a document serializes");
    assert_eq!(
        Document::from_json(&text).expect("a serialized document parses"),
        doc
    );
}

/// Serde round trip of a type CouchDB responses deserialize into: what parses prints and
/// parses back to the same value.
fn serde_round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_vec(&value).expect("serializes");
        let back: T = serde_json::from_slice(&text).expect("its own JSON parses");
        assert_eq!(back, value);
    }
}

/// `RevisionedDoc::from_couchdb_json` on one `_bulk_docs`/`_bulk_get`-shaped object;
/// what parses converts back with `to_couchdb_json` and parses to the same revision.
fn revisioned(map: &Map<String, Value>) {
    let Ok(doc) = RevisionedDoc::from_couchdb_json("db", map.clone()) else {
        return;
    };
    let back = RevisionedDoc::from_couchdb_json("db", doc.to_couchdb_json())
        .expect("to_couchdb_json parses back");
    assert_eq!(back.id, doc.id);
    assert_eq!(back.rev, doc.rev);
    assert_eq!(back.deleted, doc.deleted);
    assert_eq!(back.body, doc.body);
}

/// `couchdb_response`: the public types server-shaped JSON deserializes into
/// (`ChangesPage`, `Change`, `DatabaseInfo`, `WriteResult`, `Rev`, `Document`) and
/// `RevisionedDoc::from_couchdb_json` on the object itself and on every `_bulk_get`
/// `results[].docs[].ok` document. Invariant: what parses round-trips.
pub fn couchdb_response(data: &[u8]) {
    serde_round_trip::<ChangesPage>(data);
    serde_round_trip::<Change>(data);
    serde_round_trip::<DatabaseInfo>(data);
    serde_round_trip::<WriteResult>(data);
    serde_round_trip::<Vec<WriteResult>>(data);
    serde_round_trip::<Rev>(data);
    let _ = serde_json::from_slice::<Document>(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Value::Object(map) = &value {
        revisioned(map);
        let _ = Document::from_value(value.clone());
    }
    let results = value.get("results").and_then(Value::as_array);
    for result in results.into_iter().flatten().take(MAX_DOCS) {
        let docs = result.get("docs").and_then(Value::as_array);
        for entry in docs.into_iter().flatten().take(MAX_DOCS) {
            if let Some(Value::Object(ok)) = entry.get("ok") {
                revisioned(ok);
            }
        }
    }
}

/// A shared current-thread runtime for the restore check.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Reads the archive at `path` with both public readers. Invariant: a damaged archive is
/// an error (or a restore report with an error), never a panic; an archive whose digests
/// check restores without a reported error.
fn read_archive(path: &Path) {
    let digests = docstore::archive::archive_digests(path);
    let target = MemoryProvider::new();
    let options = docstore::migrate::MigrateOptions::default();
    let restored = runtime().block_on(docstore::archive::restore(&target, path, &options));
    match (&digests, &restored) {
        (Ok(_), Ok(report)) => assert!(
            report.error.is_none(),
            "digests check but restore says {:?}",
            report.error
        ),
        (Ok(_), Err(e)) => panic!("digests check but restore fails: {e}"),
        (Err(_), Ok(report)) => assert!(
            report.error.is_some(),
            "digests fail ({digests:?}) but the restore reports no error"
        ),
        (Err(_), Err(_)) => {}
    }
}

/// `archive`: the first byte picks how the rest is written to a file that the archive
/// readers then open: even, as it is (raw bytes, mostly not zstd); odd, zstd-compressed
/// (so the fuzzer reaches the JSON-lines structure inside).
pub fn archive(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("fuzz.docstore.zst");
    let bytes = if mode % 2 == 1 {
        zstd::encode_all(rest, 1).expect("zstd compresses")
    } else {
        rest.to_vec()
    };
    std::fs::write(&path, bytes).expect("the archive is written");
    read_archive(&path);
}

/// Everything one run of the settings scenario shows: `Debug` of the settings and
/// `Display`/`Debug` of the errors.
fn settings_scenario(parts: &[&str], password: &str) -> String {
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    let (user, rest, scheme) = (part(1), part(2), part(3));
    // A scheme is letters, digits, `+`, `-` and `.` (RFC 3986): others would make another URL.
    let scheme: String = scheme
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
        .collect();
    let scheme = if scheme.is_empty() { "http" } else { &scheme };
    // In a URL, `/`, `?` and `#` cannot stand unencoded in the user-info (RFC 3986): a URL
    // holding them raw ends its authority there, so they are percent-encoded (redact_url
    // cannot know such a URL's password; see the report of issue 17 item 4).
    let encode = |text: &str| {
        text.replace('/', "%2F")
            .replace('?', "%3F")
            .replace('#', "%23")
    };
    let url = format!("{scheme}://{}:{}@{rest}", encode(user), encode(password));
    let mut out = String::new();
    let mut show = |r: docstore::Result<Settings>| match r {
        Ok(s) => out.push_str(&format!("{s:?}\n")),
        Err(e) => out.push_str(&format!("{e}\n{e:?}\n")),
    };
    let base = Settings::memory();
    // `embedded:` takes the rest as a path, shown as it is: no password belongs there.
    if !url.starts_with("embedded:") {
        show(base.for_location(&url));
    }
    show(base.for_location(part(2)));
    show(base.for_location(&format!("embedded:{rest}")));
    // Other keys from the input: part 4 onwards, `K=V` where K indexes KEYS by its first byte.
    let mut env: Vec<(String, String)> = parts
        .iter()
        .skip(4)
        .take(12)
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let key = docstore::settings::KEYS
                [usize::from(*k.as_bytes().first().unwrap_or(&0)) % docstore::settings::KEYS.len()];
            Some((key.to_owned(), v.to_owned()))
        })
        .filter(|(k, _)| k != "COUCHDB_PASSWORD" && k != "COUCHDB_URL")
        .collect();
    env.push(("COUCHDB_URL".into(), url.clone()));
    env.push(("COUCHDB_PASSWORD".into(), password.to_owned()));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (toml, dotenv) = (dir.path().join("default.toml"), dir.path().join(".env"));
    let missing = dir.path().join("missing");
    show(Settings::load_from(&missing, &missing, env.clone()));
    let extra = part(0).split_once('\u{1}').map_or("", |(_, e)| e);
    let toml_text = format!("couchdb_password = \"{password}\"\ncouchdb_url = '{url}'\n{extra}");
    std::fs::write(&toml, toml_text).expect("toml written");
    show(Settings::load_from(
        &toml,
        &missing,
        env[..env.len() - 2].to_vec(),
    ));
    let dotenv_text = format!("COUCHDB_PASSWORD={password}\nCOUCHDB_URL={url}\n{extra}");
    std::fs::write(&dotenv, dotenv_text).expect(".env written");
    show(Settings::load_from(
        &missing,
        &dotenv,
        env[..env.len() - 2].to_vec(),
    ));
    out.push_str(&redact_url(&url));
    out
}

/// `settings`: see [`settings_check`].
pub fn settings(data: &[u8]) {
    settings_check(data);
}

/// `settings`: parts separated by NUL: password (up to an optional `\x01` and extra lines
/// appended to the TOML and .env files), user, host/path, scheme, then `K=V` settings.
/// The password goes where passwords go: the URL's user-info, `COUCHDB_PASSWORD` in the
/// environment, the TOML file and the .env file. Invariant: the password shows in the
/// output (settings `Debug`, error text, `redact_url`) no more often than when the same
/// scenario runs with another password of the same length, i.e. it never leaks; checked
/// for passwords of 6 characters or more (shorter ones match too much ordinary text).
fn settings_check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\0').collect();
    let password = parts[0].split('\u{1}').next().unwrap_or("");
    let shown = settings_scenario(&parts, password);
    if password.chars().count() < 6 {
        return;
    }
    let Some(filler) = "QZKXJVWqzkxjvw".chars().find(|c| !password.contains(*c)) else {
        return;
    };
    let other: String = password.chars().map(|_| filler).collect();
    let baseline = settings_scenario(&parts, &other);
    let count = |s: &str| s.matches(password).count();
    assert!(
        count(&shown) <= count(&baseline),
        "password {password:?} leaks:\n{shown}\n--- with another password:\n{baseline}"
    );
}
