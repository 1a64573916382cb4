//! The conformance suite against the embedded provider, built through the factory.
//!
//! All tests of one process share one store (as an app would), under cargo's per-target
//! temporary directory, named by the process id so runners that start a process per test
//! (cargo-nextest) do not meet fjall's lock; every behaviour works in its own uniquely named
//! databases.

use docstore::{Settings, get_database_service};
use docstore_providers::conformance::Service;
use tokio::sync::OnceCell;

static STORE: OnceCell<Service> = OnceCell::const_new();

async fn store() -> Service {
    STORE
        .get_or_init(|| async {
            let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("conformance-embedded-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            get_database_service(&Settings::embedded(path))
                .await
                .expect("the embedded store opens")
        })
        .await
        .clone()
}

docstore_providers::conformance_tests!(store());
