//! Concurrency: updates and saves from tasks on several runtime threads lose nothing and
//! have one winner where they compete.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::{Service, doc};
use crate::testing::{drop_db, unique_db};
use crate::{DatabaseServiceExt, Rev};

/// `update` from 8 concurrent tasks x 100 increments ends at exactly 800: no update is lost.
pub async fn concurrent_updates_lose_nothing(svc: &Service) {
    let db = unique_db("concurrent");
    svc.save(&db, "counter", doc(json!({"n": 0})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let svc = Arc::clone(svc);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                svc.update(&db, "counter", |d| {
                    let n = d.get("n").and_then(Value::as_u64).unwrap_or(0);
                    d.insert("n", n + 1);
                    Ok(())
                })
                .await
                .expect("update succeeds within its retries");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task did not panic");
    }
    let got = svc.get(&db, "counter").await.unwrap();
    assert_eq!(got.get("n"), Some(&json!(800)));
    assert_eq!(Rev::parse(got.rev().unwrap()).unwrap().generation(), 801);
    drop_db(svc, &db).await;
}

/// `update` whose save meets a write made elsewhere between its read and its save (here a
/// plain `save` from inside its first `change`) reads again and re-applies `change`: both
/// edits are kept, and `update` answers with the revision that holds them.
pub async fn update_rereads_after_a_conflicting_write(svc: &Service) {
    let db = unique_db("update-reread");
    svc.save(&db, "d", doc(json!({"n": 0}))).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let task = {
        let (svc, db, calls) = (Arc::clone(svc), db.clone(), Arc::clone(&calls));
        // `block_in_place` needs a worker thread of a multi-thread runtime: a spawned task.
        tokio::spawn(async move {
            let other = Arc::clone(&svc);
            svc.update(&db, "d", |d| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(async {
                            let mut current = other.get(&db, "d").await?;
                            current.insert("elsewhere", true);
                            other.save(&db, "d", current).await
                        })
                    })?;
                }
                let n = d.get("n").and_then(Value::as_u64).unwrap_or(0);
                d.insert("n", n + 1);
                Ok(())
            })
            .await
        })
    };
    let written = task
        .await
        .expect("task did not panic")
        .expect("update succeeds on its second attempt");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "change applied again after the conflict"
    );
    let got = svc.get(&db, "d").await.unwrap();
    assert_eq!(got.get("n"), Some(&json!(1)));
    assert_eq!(got.get("elsewhere"), Some(&json!(true)));
    assert_eq!(got.rev(), Some(written.rev.to_string().as_str()));
    assert_eq!(written.rev.generation(), 3);
    drop_db(svc, &db).await;
}

/// Concurrent saves with the same `_rev`: exactly one wins, the others get `Conflict`.
pub async fn concurrent_conditional_saves_have_one_winner(svc: &Service) {
    let db = unique_db("one-winner");
    let base = svc.save(&db, "d", doc(json!({"v": 0}))).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let svc = Arc::clone(svc);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut body = doc(json!({ "v": i + 1 }));
            body.set_rev(&base.rev);
            svc.save(&db, "d", body).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task did not panic") {
            Ok(w) => {
                assert_eq!(w.rev.generation(), 2);
                wins += 1;
            }
            Err(e) => assert!(e.is_conflict(), "{e}"),
        }
    }
    assert_eq!(wins, 1);
    drop_db(svc, &db).await;
}

/// Concurrent saves without `_rev` all succeed (the provider retries internally), each
/// producing a distinct generation.
pub async fn concurrent_revless_saves_all_succeed(svc: &Service) {
    let db = unique_db("revless");
    svc.save(&db, "d", doc(json!({"v": 0}))).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let svc = Arc::clone(svc);
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut gens = Vec::new();
            for j in 0..10 {
                let w = svc.save(&db, "d", doc(json!({"task": i, "j": j}))).await;
                gens.push(w.expect("rev-less save never conflicts").rev.generation());
            }
            gens
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task did not panic"));
    }
    all.sort_unstable();
    assert_eq!(all, (2..=81).collect::<Vec<u64>>());
    drop_db(svc, &db).await;
}
