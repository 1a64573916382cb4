//! The conformance suite against the memory provider, built through the factory.

use docstore::{Settings, get_database_service};

docstore_providers::conformance_tests!(async {
    get_database_service(&Settings::memory())
        .await
        .expect("the memory provider always builds")
});
