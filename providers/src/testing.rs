//! Helpers the conformance suite, the integration tests and the benchmark harness share:
//! uniquely named test databases and their removal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::conformance::Service;

/// A unique database name for one test: `dsc-<tag>-<time>-<pid>-<counter>`.
pub fn unique_db(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("dsc-{tag}-{nanos}-{}-{n}", std::process::id())
}

/// Removes a test database; a missing one is fine.
pub async fn drop_db(svc: &Service, db: &str) {
    match svc.delete_database(db).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => panic!("could not remove test database {db}: {e}"),
    }
}
