//! The conformance suite against the CouchDB provider, built through the factory, on the
//! genuine CouchDB 3 that `tests/support` finds (`COUCHDB_URL`, or a `couchdb:3` container).
//! It is held to every behaviour; none is skipped.

mod support;

use docstore::get_database_service;

docstore_providers::conformance_tests!(async {
    let server = support::couchdb();
    get_database_service(&server.settings())
        .await
        .expect("the CouchDB provider connects to the test server")
});
