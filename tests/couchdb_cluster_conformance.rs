//! The conformance suite against a 3-node CouchDB 3.5 cluster (q=2, n=3), through node 1.
//! Run on demand, not by `cargo test --workspace` (`test = false` in Cargo.toml), because a
//! cluster does not give every guarantee a single node gives, and which reads miss a write
//! varies from run to run:
//!
//! ```text
//! cargo test --all-features --test couchdb_cluster_conformance
//! ```
//!
//! Measured here (issue 17 keeps this open): with the behaviours named below skipped, the
//! rest passed in one run and `find_without_limit_returns_everything` failed in another.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::{Arc, OnceLock};

use cluster::Cluster;
use docstore::{CouchDbConfig, CouchDbProvider, DatabaseService, Secret};

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The binary's cluster, started on first use from a plain thread (it blocks on Docker).
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        std::thread::spawn(Cluster::start)
            .join()
            .expect("the 3-node CouchDB cluster did not start (see the panic above)")
    })
}

/// A provider on node 1 with the cluster's admin.
async fn provider() -> Arc<dyn DatabaseService> {
    let cluster = cluster();
    let mut config = CouchDbConfig::new(cluster.urls()[0].clone());
    config.user = Some(cluster.user.clone());
    config.password = Some(Secret::new(&cluster.password));
    let provider = CouchDbProvider::connect(config)
        .await
        .unwrap_or_else(|e| panic!("the CouchDB provider connects to node 1: {e}"));
    Arc::new(provider)
}

/// Why the behaviours named below are not held against the cluster (issue 17 leaves them
/// open): they hold on a single node and on every other provider, but a 3-node cluster
/// (q=2, n=3, w=2, r=2) acknowledges a write once 2 of 3 copies have it and serves
/// listings, `_find`, `_changes` and some reads from one copy, and each copy checks a
/// `_rev` on its own. Measured here: a stale-`_rev` edit accepted (a conflict instead of
/// a 409), concurrent updates ending in losing branches (775 of 800), reads right after an
/// acknowledged write not seeing it. Named, never silent: each prints `SKIPPED`.
const READ_YOUR_WRITES: &str = "a cluster serves some reads from a copy that lacks the \
    acknowledged write (w=2 of n=3, r=1 for listings, _find, _changes)";
const PER_COPY_REV_CHECK: &str = "each copy of a cluster checks _rev on its own: a stale edit \
    can be accepted as a conflicting branch instead of a 409";

docstore_providers::conformance_tests!(
    async { provider().await };
    skip: [
        conflict_errors_name_the_document => Some(PER_COPY_REV_CHECK),
        concurrent_updates_lose_nothing => Some(PER_COPY_REV_CHECK),
        concurrent_revless_saves_all_succeed => Some(PER_COPY_REV_CHECK),
        attachment_scenarios_match_recorded_couchdb => Some(READ_YOUR_WRITES),
        conflict_scenarios_match_recorded_couchdb => Some(READ_YOUR_WRITES),
        revs_diff_answers_as_couchdb => Some(READ_YOUR_WRITES),
        find_logical_operators => Some(READ_YOUR_WRITES),
        pagination_has_no_gaps_or_repeats => Some(READ_YOUR_WRITES),
        attachment_bad_input_is_typed => Some("one invalid-attachment create was accepted \
            by the cluster; not yet understood (issue 17)"),
    ]
);
