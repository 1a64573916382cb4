//! The conformance suite against a 3-node CouchDB 3.5 cluster (q=2, n=3), through all
//! three nodes (requests round-robin, so a read is often served by another node than the
//! write before it):
//! every behaviour a single node passes, nothing skipped. What makes a cluster answer like
//! one node is in `providers/src/couchdb/quorum.rs`. The binary's tests share one cluster,
//! so run them in one process (`cargo test`; nextest's default profile leaves this binary
//! out, see `.config/nextest.toml`):
//!
//! ```text
//! cargo test --all-features --test couchdb_cluster_conformance
//! ```

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

/// A provider on the three nodes with the cluster's admin.
async fn provider() -> Arc<dyn DatabaseService> {
    // `RUST_LOG=docstore_providers=debug` shows how each write was settled.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = cluster();
    let mut config = CouchDbConfig::new(cluster.urls().join(","));
    config.user = Some(cluster.user.clone());
    config.password = Some(Secret::new(&cluster.password));
    let provider = CouchDbProvider::connect(config)
        .await
        .unwrap_or_else(|e| panic!("the CouchDB provider connects to the cluster: {e}"));
    Arc::new(provider)
}

docstore_providers::conformance_tests!(async { provider().await });
