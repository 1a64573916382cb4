//! Crafted input is inert, on every provider (memory, embedded in a tempdir, and a genuine
//! CouchDB):
//!
//! - document ids shaped like paths, queries, fragments or escapes (`../_config`,
//!   `x?rev=1-abc`, `%2e%2e/_config`, NUL, unicode, ...) are either `InvalidDocumentId`
//!   (exactly those starting with `_`) or stored, read, listed and deleted under that exact
//!   id; on CouchDB raw requests confirm nothing else happened: the config is unchanged, no
//!   database appeared or vanished, and the test database holds exactly those ids;
//! - database names shaped the same way are `InvalidDatabaseName` from every method taking a
//!   name, while legal names containing `/` (`<name>/_config`) are databases of that exact
//!   name, not paths;
//! - the CouchDB password (and the base64 of `user:password`) shows in no error's `Display`
//!   or `Debug`, no config or provider `Debug`, and no panic message of `expect`/`unwrap` on a
//!   failed result, an unreachable server with the password in its URL included.

mod support;

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use docstore::serde_json::{Value, json};
use docstore::{
    CouchDbConfig, CouchDbProvider, DatabaseService, Document, EmbeddedConfig, EmbeddedProvider,
    Error, FindQuery, MemoryProvider, Secret, WatchOptions,
};
use docstore_providers::conformance::Service;
use docstore_providers::testing::{drop_db, unique_db};

#[rustfmt::skip]
const CRAFTED_IDS: &[&str] = &[
    "../_config", "..%2F_config", "%2e%2e/_config", "../../_all_dbs", "_all_dbs",
    "a/../../_session", "x?rev=1-abc", "x#frag", "%00", "a\u{0}b", "/_utils", "..", ".", "?",
    "&", " ", "a+b", "é", "e\u{301}", "日本語/🦀", "\u{202e}rtl",
];

fn doc(value: Value) -> Document {
    Document::from_value(value).expect("an object")
}

/// Every byte but ASCII letters and digits percent-encoded: one path segment, as sent raw.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The provider under test; the tempdir keeps the embedded store alive.
async fn provider(kind: &str) -> (Service, Option<tempfile::TempDir>) {
    match kind {
        "memory" => (Arc::new(MemoryProvider::new()), None),
        "embedded" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = EmbeddedConfig::new(dir.path().join("store"));
            let svc = EmbeddedProvider::open(config)
                .await
                .expect("the store opens");
            (Arc::new(svc), Some(dir))
        }
        _ => {
            let svc = CouchDbProvider::connect(support::couchdb().config()).await;
            (Arc::new(svc.expect("the CouchDB provider connects")), None)
        }
    }
}

/// A raw request to the test server, past the provider: (status, JSON body).
fn raw(method: &str, path: &str) -> (u16, Value) {
    let (status, body) = support::couchdb()
        .request(method, path, None)
        .unwrap_or_else(|e| panic!("raw {method} {path}: {e}"));
    let body = docstore::serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, body)
}

/// What crafted input must leave alone on the server.
struct ServerState {
    config: Value,
    max_document_size: (u16, Value),
    dbs: BTreeSet<String>,
}

fn server_state() -> ServerState {
    let (status, config) = raw("GET", "/_node/_local/_config");
    assert_eq!(status, 200, "GET /_node/_local/_config: {config}");
    let dbs = raw("GET", "/_all_dbs").1;
    let dbs = dbs.as_array().expect("_all_dbs is a list").iter();
    ServerState {
        config,
        max_document_size: raw("GET", "/_node/_local/_config/couchdb/max_document_size"),
        dbs: dbs.map(|d| d.as_str().expect("names").to_owned()).collect(),
    }
}

/// The config is unchanged, no system database vanished, and no database appeared but the
/// test's own (`own`) and those of tests running alongside (`dsc-...`, `axum-notes-...`).
fn assert_untouched(before: &ServerState, own: &[String], what: &str) {
    let after = server_state();
    assert_eq!(before.config, after.config, "{what}: the config changed");
    assert_eq!(
        before.max_document_size, after.max_document_size,
        "{what}: couchdb/max_document_size changed"
    );
    for system in before.dbs.iter().filter(|d| d.starts_with('_')) {
        assert!(after.dbs.contains(system), "{what}: {system} vanished");
    }
    let stray: Vec<&String> = after
        .dbs
        .difference(&before.dbs)
        .filter(|d| !own.contains(d) && !d.starts_with("dsc-") && !d.starts_with("axum-notes-"))
        .collect();
    assert!(stray.is_empty(), "{what}: databases appeared: {stray:?}");
}

async fn crafted_ids(kind: &str) {
    let (svc, _dir) = provider(kind).await;
    let couch = kind == "couchdb";
    let db = unique_db(&format!("crafted-ids-{kind}"));
    let before = couch.then(server_state);
    let mut stored: Vec<&str> = Vec::new();
    for &id in CRAFTED_IDS {
        let what = format!("{kind}: id {id:?}");
        match svc.save(&db, id, doc(json!({"crafted": id}))).await {
            Err(Error::InvalidDocumentId { id: refused, .. }) if id.starts_with('_') => {
                assert_eq!(refused, id, "{what}");
                let got = svc.get(&db, id).await;
                assert!(
                    matches!(got, Err(Error::InvalidDocumentId { .. })),
                    "{what}"
                );
                let gone = svc.delete(&db, id).await;
                assert!(
                    matches!(gone, Err(Error::InvalidDocumentId { .. })),
                    "{what}"
                );
            }
            Ok(written) => {
                assert!(!id.starts_with('_'), "{what}: a reserved id was stored");
                let read = svc.get(&db, id).await.expect(&what);
                assert_eq!(read.id(), Some(id), "{what}: read back under another id");
                assert_eq!(read.rev(), Some(written.rev.to_string().as_str()), "{what}");
                assert_eq!(read.get("crafted"), Some(&json!(id)), "{what}: other body");
                stored.push(id);
            }
            Err(e) => panic!(
                "{what}: save failed with {e:?}; expected the document stored under that exact \
                 id (only ids starting with '_' are InvalidDocumentId)"
            ),
        }
    }
    let mut expected: Vec<&str> = stored.clone();
    expected.sort_unstable();
    let listed = svc.list_page(&db, None, 1000).await.expect("list_page");
    let listed: Vec<&str> = listed.docs.iter().filter_map(Document::id).collect();
    assert_eq!(listed, expected, "{kind}: list_page");
    if let Some(before) = &before {
        for &id in &stored {
            let (status, body) = raw("GET", &format!("/{}/{}", encode(&db), encode(id)));
            assert_eq!(status, 200, "couchdb: id {id:?} is not in {db}: {body}");
            assert_eq!(
                body["_id"],
                json!(id),
                "couchdb: {id:?} stored as another id"
            );
        }
        let (status, all) = raw("GET", &format!("/{}/_all_docs", encode(&db)));
        assert_eq!(status, 200, "{all}");
        let rows = all["rows"].as_array().expect("rows");
        let held: BTreeSet<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
        let wanted: BTreeSet<&str> = stored.iter().copied().collect();
        assert_eq!(held, wanted, "couchdb: {db} holds other documents");
        assert_untouched(before, std::slice::from_ref(&db), "couchdb: crafted ids");
    }
    for &id in &stored {
        let what = format!("{kind}: id {id:?}");
        svc.delete(&db, id).await.expect(&what);
        let err = svc.get(&db, id).await.expect_err(&what);
        assert!(err.is_not_found(), "{what}: after delete: {err:?}");
    }
    let left = svc.list_page(&db, None, 1000).await.expect("list_page");
    assert_eq!(left.docs, Vec::<Document>::new(), "{kind}: documents left");
    drop_db(&svc, &db).await;
}

fn bad_db_names() -> Vec<String> {
    #[rustfmt::skip]
    let names = [
        "../_config", "_all_dbs", "_users", "_replicator", "_global_changes", "_config",
        "_session", "a/../_config", "a%2F..", "a/..", "A", "a b", "a?x", "a#x", "a\u{0}", "",
    ];
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.push("a".repeat(300));
    names
}

/// `result` is `InvalidDatabaseName` naming `name`.
fn refused(kind: &str, method: &str, name: &str, result: docstore::Result<()>) {
    match result {
        Err(Error::InvalidDatabaseName { name: given, .. }) if given == name => {}
        other => panic!(
            "{kind}: {method} on database {name:?} answered {other:?}, not InvalidDatabaseName"
        ),
    }
}

/// Each call is `InvalidDatabaseName` naming `name`.
macro_rules! refuses {
    ($svc:expr, $kind:expr, $name:expr, $($method:ident($($arg:expr),*)),+ $(,)?) => {$(
        let got = $svc.$method($($arg),*).await.map(drop);
        refused($kind, stringify!($method), $name, got);
    )+};
}

async fn crafted_db_names(kind: &str) {
    let (svc, _dir) = provider(kind).await;
    let before = (kind == "couchdb").then(server_state);
    let query = FindQuery::new(json!({"a": 1})).expect("query");
    for name in &bad_db_names() {
        let n = name.as_str();
        let body = || doc(json!({"a": 1}));
        refuses!(
            svc,
            kind,
            n,
            get(n, "d"),
            save(n, "d", body()),
            list_page(n, None, 10),
            changes(n, None, 10),
            find(n, &query),
            database_info(n),
            delete_database(n),
            watch(n, WatchOptions::new()),
            get_local(n, "l"),
            put_local(n, "l", body()),
        );
    }
    // Legal names with `/` are databases of that exact name, not paths.
    let base = unique_db(&format!("crafted-names-{kind}"));
    let slashed: Vec<String> = ["b", "_config", "_all_docs", "_design"]
        .iter()
        .map(|tail| format!("{base}/{tail}"))
        .collect();
    for db in &slashed {
        let what = format!("{kind}: database {db:?}");
        svc.save(db, "d", doc(json!({"in": db})))
            .await
            .expect(&what);
        let read = svc.get(db, "d").await.expect(&what);
        assert_eq!(read.get("in"), Some(&json!(db)), "{what}");
        let info = svc.database_info(db).await.expect(&what);
        assert_eq!(info.doc_count, 1, "{what}");
        if kind == "couchdb" {
            let (status, body) = raw("GET", &format!("/{}", encode(db)));
            assert_eq!(status, 200, "{what}: {body}");
            assert_eq!(body["db_name"], json!(db), "{what}: another database");
            let (status, body) = raw("GET", &format!("/{}/d", encode(db)));
            assert_eq!((status, &body["in"]), (200, &json!(db)), "{what}: {body}");
        }
    }
    let listed = svc.list_databases().await.expect("list_databases");
    let mine: Vec<&String> = listed.iter().filter(|d| d.starts_with(&base)).collect();
    let mut expected: Vec<&String> = slashed.iter().collect();
    expected.sort();
    assert_eq!(mine, expected, "{kind}: list_databases");
    let bad = bad_db_names();
    let listed_bad: Vec<&String> = listed.iter().filter(|d| bad.contains(d)).collect();
    assert!(
        listed_bad.is_empty(),
        "{kind}: crafted databases listed: {listed_bad:?}"
    );
    if let Some(before) = &before {
        let (status, body) = raw("GET", &format!("/{}", encode(&base)));
        assert_eq!(
            status, 404,
            "couchdb: {base} exists (`/` as a path): {body}"
        );
        assert_untouched(before, &slashed, "couchdb: crafted database names");
    }
    for db in &slashed {
        svc.delete_database(db)
            .await
            .unwrap_or_else(|e| panic!("{kind}: delete_database {db:?}: {e}"));
    }
    let listed = svc.list_databases().await.expect("list_databases");
    let left: Vec<&String> = listed.iter().filter(|d| d.starts_with(&base)).collect();
    assert!(left.is_empty(), "{kind}: databases left: {left:?}");
}

/// One test per check and provider.
macro_rules! on_each_provider {
    ($($test:ident: $check:ident($kind:literal)),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            $check($kind).await;
        }
    )+};
}

on_each_provider!(
    crafted_ids_memory: crafted_ids("memory"),
    crafted_ids_embedded: crafted_ids("embedded"),
    crafted_ids_couchdb: crafted_ids("couchdb"),
    crafted_db_names_memory: crafted_db_names("memory"),
    crafted_db_names_embedded: crafted_db_names("embedded"),
    crafted_db_names_couchdb: crafted_db_names("couchdb"),
);

/// What the panic hook saw.
static PANIC_TEXT: Mutex<String> = Mutex::new(String::new());

/// The panic message of `f` (as the hook formats it, then the payload), with a recording
/// hook installed for the call and the default hook restored after.
fn panic_text(f: impl FnOnce()) -> String {
    let recorded = || PANIC_TEXT.lock().unwrap_or_else(|e| e.into_inner());
    recorded().clear();
    std::panic::set_hook(Box::new(move |info| recorded().push_str(&info.to_string())));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(f));
    drop(std::panic::take_hook());
    let payload = outcome.expect_err("the code panics");
    let payload = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    format!("{}\n{payload}", recorded())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_shows_in_no_error_debug_or_panic() {
    let server = support::couchdb();
    let password = server.password.clone();
    assert!(password.len() >= 6, "a password too short to look for");
    let config = server.config();
    let provider = CouchDbProvider::connect(config.clone()).await.unwrap();
    let in_url = server
        .url
        .replacen("://", &format!("://{}:{password}@", server.user), 1);
    let url_provider = CouchDbProvider::connect(CouchDbConfig::new(&in_url))
        .await
        .expect("connects with the credentials in the URL");
    let db = unique_db("crafted-secrets");
    provider.save(&db, "d", doc(json!({}))).await.unwrap();

    let stale = doc(json!({"_rev": "1-00000000000000000000000000000000"}));
    let mut down = CouchDbConfig::new(format!("http://{}:{password}@127.0.0.1:9", server.user));
    down.user = Some(server.user.clone());
    down.password = Some(Secret::new(&password));
    down.connect_timeout = Duration::from_secs(2);
    down.max_retries = 1;
    let only_url = CouchDbConfig::new(down.url.clone());
    let results: Vec<(&str, docstore::Result<()>)> = vec![
        ("not_found", provider.get(&db, "missing").await.map(drop)),
        ("not_found", url_provider.get(&db, "nope").await.map(drop)),
        ("conflict", provider.save(&db, "d", stale).await.map(drop)),
        (
            "invalid_document_id",
            provider.get(&db, "_x").await.map(drop),
        ),
        (
            "unavailable",
            CouchDbProvider::connect(down.clone()).await.map(drop),
        ),
        (
            "unavailable",
            CouchDbProvider::connect(only_url).await.map(drop),
        ),
    ];
    let mut texts = vec![
        format!("{config:?}"),
        format!("{down:?}"),
        format!("{:?}", CouchDbConfig::new(&in_url)),
        format!("{provider:?}"),
        format!("{url_provider:?}"),
    ];
    for (kind, result) in results {
        let err = result.as_ref().expect_err(kind);
        assert_eq!(err.kind(), kind, "{err:?}");
        let debug = format!("{err:?}");
        texts.push(format!("{err}"));
        texts.push(debug.clone());
        let panicked = panic_text(|| match kind {
            "unavailable" => result.expect("the server answers"),
            _ => result.unwrap(),
        });
        assert!(panicked.contains(&debug), "no panic captured: {panicked}");
        texts.push(panicked);
    }
    provider.delete_database(&db).await.expect("drop");

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", server.user));
    for text in &texts {
        assert!(!text.contains(&password), "the password leaks in: {text}");
        assert!(!text.contains(&basic), "Basic credentials leak in: {text}");
    }
}
