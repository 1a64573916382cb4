//! Bulk calls: one result per input in input order, a bad document failing alone, large
//! batches.

use serde_json::json;

use super::{Kind, Service, doc, ids, kind};
use crate::testing::{drop_db, unique_db};
use crate::{Document, Rev};

/// Bulk calls return one result per input, in input order; a bad document fails alone.
pub async fn bulk_results_keep_input_order(svc: &Service) {
    let db = unique_db("bulk");
    let existing = svc.save(&db, "old", doc(json!({"v": 0}))).await.unwrap();
    let stale = Rev::parse("1-00000000000000000000000000000000").unwrap();
    let results = svc
        .save_many(
            &db,
            vec![
                doc(json!({"_id": "b", "v": 1})),
                doc(json!({"_id": "_bad"})),
                doc(json!({"_id": "a", "v": 2})),
                doc(json!({"no_id": true})),
                doc(json!({"_id": "old", "_rev": stale.to_string()})),
                doc(json!({"_id": "old", "_rev": existing.rev.to_string(), "v": 1})),
                doc(json!({"_id": "c", "_attachments": "x"})),
                doc(json!({"_id": "d"})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 8);
    assert_eq!(results[0].as_ref().unwrap().id, "b");
    assert_eq!(kind(&results[1]), Kind::InvalidDocumentId);
    assert_eq!(results[2].as_ref().unwrap().id, "a");
    assert_eq!(kind(&results[3]), Kind::InvalidDocumentId);
    assert_eq!(kind(&results[4]), Kind::Conflict);
    assert_eq!(results[5].as_ref().unwrap().rev.generation(), 2);
    assert_eq!(kind(&results[6]), Kind::InvalidDocument);
    assert_eq!(results[7].as_ref().unwrap().rev.generation(), 1);
    // Rev-less bulk saves upsert, like save; the same id twice in one batch writes twice.
    let again = svc
        .save_many(
            &db,
            vec![
                doc(json!({"_id": "a", "v": 0})),
                doc(json!({"_id": "a", "v": 3})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again[0].as_ref().unwrap().rev.generation(), 2);
    assert_eq!(again[1].as_ref().unwrap().rev.generation(), 3);

    svc.delete(&db, "d").await.unwrap();
    let got = svc
        .get_many(
            &db,
            &[
                "a".into(),
                "missing".into(),
                "b".into(),
                "d".into(),
                "_x".into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].as_ref().unwrap().get("v"), Some(&json!(3)));
    assert_eq!(kind(&got[1]), Kind::NotFound);
    assert_eq!(got[2].as_ref().unwrap().id(), Some("b"));
    assert_eq!(kind(&got[3]), Kind::NotFound);
    assert_eq!(kind(&got[4]), Kind::InvalidDocumentId);

    let deleted = svc
        .delete_many(&db, &["b".into(), "missing".into(), "a".into(), "d".into()])
        .await
        .unwrap();
    assert_eq!(deleted[0].as_ref().unwrap().rev.generation(), 2);
    assert_eq!(kind(&deleted[1]), Kind::NotFound);
    assert_eq!(deleted[2].as_ref().unwrap().rev.generation(), 4);
    assert_eq!(kind(&deleted[3]), Kind::NotFound);
    assert_eq!(ids(&svc.list_all(&db).await.unwrap()), ["old"]);
    drop_db(svc, &db).await;

    // A batch with nothing valid to write (an empty one included) creates no database.
    let untouched = unique_db("bulk-empty");
    assert!(
        svc.save_many(&untouched, Vec::new())
            .await
            .unwrap()
            .is_empty()
    );
    let invalid = svc
        .save_many(&untouched, vec![doc(json!({"_id": "_bad"}))])
        .await
        .unwrap();
    assert_eq!(kind(&invalid[0]), Kind::InvalidDocumentId);
    assert_eq!(kind(&svc.database_info(&untouched).await), Kind::NotFound);
}

/// A large bulk save (600 documents, one id three times, one stale `_rev`) keeps input order
/// and applies repeats in order, exactly like a small one.
pub async fn large_bulk_saves_keep_order(svc: &Service) {
    let db = unique_db("large-bulk");
    let old = svc
        .save(&db, "existing", doc(json!({"v": 0})))
        .await
        .unwrap();
    svc.save(&db, "existing", doc(json!({"v": 1})))
        .await
        .unwrap();
    let mut docs: Vec<Document> = (0..600)
        .map(|i| doc(json!({"_id": format!("d{i:04}"), "i": i})))
        .collect();
    docs[100] = doc(json!({"_id": "twice", "n": 1}));
    docs[300] = doc(json!({"_id": "twice", "n": 2}));
    docs[500] = doc(json!({"_id": "twice", "n": 3}));
    docs[400] = doc(json!({"_id": "existing", "_rev": old.rev.to_string(), "v": "stale"}));
    let results = svc.save_many(&db, docs).await.unwrap();
    assert_eq!(results.len(), 600);
    for (i, r) in results.iter().enumerate() {
        match i {
            100 | 300 | 500 => {
                let w = r.as_ref().unwrap();
                assert_eq!(w.id, "twice");
                assert_eq!(w.rev.generation(), (i / 200 + 1) as u64, "slot {i}");
            }
            400 => assert_eq!(kind(r), Kind::Conflict),
            _ => {
                let w = r.as_ref().unwrap();
                assert_eq!(w.id, format!("d{i:04}"));
                assert_eq!(w.rev.generation(), 1);
            }
        }
    }
    assert_eq!(
        svc.get(&db, "twice").await.unwrap().get("n"),
        Some(&json!(3))
    );
    assert_eq!(
        svc.get(&db, "existing").await.unwrap().get("v"),
        Some(&json!(1))
    );
    assert_eq!(svc.list_all(&db).await.unwrap().len(), 598);
    drop_db(svc, &db).await;
}
