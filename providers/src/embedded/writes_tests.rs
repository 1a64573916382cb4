//! Tests of `save_batch`'s early reads: records read before the writer lock are used only
//! when nothing was committed in between.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use super::*;
use crate::{DatabaseService, Document, EmbeddedConfig, EmbeddedProvider};

fn doc(value: serde_json::Value) -> Document {
    Document::try_from(value).expect("an object")
}

/// Another writer commits `d0000` while the batch is still being prepared, after the batch
/// read `d0000`'s record (absent). Batches below the parallel threshold are prepared chunk
/// by chunk in order, so the early read of `d0000` (first chunk) surely comes before the
/// commit (made while preparing the second chunk). The batch must see the commit: its
/// rev-less save of `d0000` goes on top of the other writer's revision.
#[tokio::test]
async fn a_commit_during_preparation_is_seen_by_the_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svc = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
        .await
        .expect("open");
    // The database exists, so the batch reads records early.
    svc.save("db", "seed", doc(json!({"n": 0})))
        .await
        .expect("seed");
    let n = EARLY_READS_FROM + 40;
    let docs: Vec<Document> = (0..n)
        .map(|i| doc(json!({"_id": format!("d{i:04}"), "n": i})))
        .collect();
    let store = Arc::clone(&svc.store);
    let results = tokio::task::spawn_blocking(move || {
        let committed = AtomicBool::new(false);
        let trigger = format!("d{:04}", EARLY_READS_FROM);
        store.save_batch(
            "db",
            docs,
            |d: Document| {
                if d.id() == Some(trigger.as_str()) && !committed.swap(true, Ordering::SeqCst) {
                    let other = doc(json!({"_id": "d0000", "by": "the other writer"}));
                    let saved = store
                        .save_batch(
                            "db",
                            vec![other],
                            |o| SaveRequest::for_bulk("db", o),
                            &mut Vec::new(),
                        )
                        .expect("the other writer's batch");
                    assert!(saved.iter().all(Result::is_ok), "{saved:?}");
                }
                SaveRequest::for_bulk("db", d)
            },
            &mut Vec::new(),
        )
    })
    .await
    .expect("join")
    .expect("the batch");
    assert_eq!(results.len(), n);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // A rev-less save goes on the current winner: the other writer's revision. Had the
    // batch used its stale read, it would have written a first revision over it.
    let written = results[0].as_ref().map(|w| w.rev).expect("saved");
    assert_eq!(
        written.generation(),
        2,
        "the batch wrote over a commit it did not see"
    );
    let current = svc.get("db", "d0000").await.expect("get");
    assert_eq!(current.get("n"), Some(&json!(0)));
    assert_eq!(current.rev(), Some(written.to_string().as_str()));
}
