//! The testcontainers path works from inside an async test (testcontainers' blocking runner
//! starts a runtime of its own, which used to panic there): a fresh `couchdb:3` container is
//! started, the provider connects, writes and reads. Wherever Docker answers this runs; without
//! Docker the test says so by name, and `DOCSTORE_REQUIRE_DOCKER=1` (set by CI wherever Docker
//! runs) turns that into a failure. The whole suite runs against a container in
//! `conformance_couchdb` whenever `COUCHDB_URL` is unset.

mod support;

use docstore::serde_json::json;
use docstore::{CouchDbProvider, DatabaseService, Document};
use docstore_providers::testing::unique_db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_starts_inside_an_async_test() {
    if !support::docker_answers() {
        assert!(
            std::env::var("DOCSTORE_REQUIRE_DOCKER").is_err(),
            "DOCSTORE_REQUIRE_DOCKER is set but no Docker engine answers"
        );
        println!("SKIPPED a_container_starts_inside_an_async_test: no Docker engine answers");
        return;
    }
    let server = support::start_container().expect("the couchdb:3 container starts");
    let provider = CouchDbProvider::connect(server.config())
        .await
        .expect("connects to the container");
    let db = unique_db("container");
    let doc = Document::from_value(json!({"n": 1})).expect("an object");
    let written = provider.save(&db, "d", doc).await.expect("save");
    let read = provider.get(&db, "d").await.expect("get");
    assert_eq!(read.rev(), Some(written.rev.to_string().as_str()));
    assert_eq!(read.get("n"), Some(&json!(1)));
    let (status, body) = server.request("GET", "/", None).expect("welcome");
    assert_eq!(status, 200);
    assert!(body.contains("\"version\":\"3."), "{body}");
}
