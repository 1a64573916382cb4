//! The whole conformance suite against a genuine `couchdb:3` container, started with
//! testcontainers, wherever a Docker engine answers. Without Docker the test says so by name
//! and does nothing else (the suite still runs against the stand-in in `conformance_couchdb`);
//! `DOCSTORE_REQUIRE_DOCKER=1` turns that into a failure, for CI machines that have Docker.

mod support;

use std::sync::Arc;

use docstore::CouchDbProvider;
use docstore_providers::conformance::{Service, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_on_a_couchdb_3_container() {
    if !support::docker_answers() {
        assert!(
            std::env::var("DOCSTORE_REQUIRE_DOCKER").is_err(),
            "DOCSTORE_REQUIRE_DOCKER is set but no Docker engine answers"
        );
        println!("SKIPPED conformance_suite_on_a_couchdb_3_container: no Docker engine answers");
        return;
    }
    let server = tokio::task::spawn_blocking(support::start_container)
        .await
        .expect("container start did not panic")
        .expect("the couchdb:3 container starts");
    let svc: Service = Arc::new(
        CouchDbProvider::connect(server.config())
            .await
            .expect("connects to the container"),
    );
    // A genuine CouchDB is held to every behaviour, revisions and big numbers included.
    run_all(&svc).await;
}
