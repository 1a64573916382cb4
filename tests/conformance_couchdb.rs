//! The conformance suite against the CouchDB provider, built through the factory, on the
//! server `tests/support` finds (`COUCHDB_URL`, a `couchdb:3` container, or the npm stand-in).
//!
//! Two behaviours are skipped only on the stand-in, which cannot reproduce them; a genuine
//! CouchDB is held to both.

mod support;

use docstore::{Secret, Settings, get_database_service};

docstore_providers::conformance_tests!(async {
    let server = support::couchdb();
    let settings = Settings::couchdb(&server.url, &server.user, Secret::new(&server.password));
    get_database_service(&settings)
        .await
        .expect("the CouchDB provider connects to the test server")
}; skip: [
    revisions_match_recorded_couchdb => support::couchdb().standin_deviation(
        "the stand-in (PouchDB) computes its own revision ids; a genuine CouchDB 3 returns the recorded ones"
    ),
    numbers_round_trip => support::couchdb().standin_deviation(
        "the stand-in keeps numbers as JavaScript doubles, so integers beyond 2^53 lose precision; CouchDB 3 keeps them exact"
    ),
]);
