//! Property: random edit histories on two sides (creates, updates, deletes, re-creates,
//! concurrent edits of the same ids), synced both ways after every round, end with the same
//! trees, winners and conflicts on every provider pair as on two genuine CouchDB databases
//! synced by CouchDB's own replicator. Revision ids are deterministic, so the same history
//! gives the same revisions everywhere and the trees compare exactly.
//!
//! `DOCSTORE_SYNC_CASES` sets the number of histories (default 4: each costs about 10 s, most of it
//! in CouchDB's replicator starting its jobs); `DOCSTORE_SYNC_SEED`
//! replays one (printed on failure).

mod support;

use std::sync::Arc;

use docstore::replicate::{ReplicateOptions, sync};
use docstore::serde_json::{Value, json};
use docstore::{DatabaseService, Document, Settings, get_database_service};
use docstore_providers::testing::unique_db;

type Service = Arc<dyn DatabaseService>;

/// One edit of one side.
#[derive(Debug, Clone)]
enum Op {
    /// A rev-less save (create, update of the winner, or re-create after a deletion).
    Save { id: String, value: u64 },
    /// A deletion of the winner.
    Delete { id: String },
}

/// A history: rounds of edits on side A and side B, synced after each round.
fn history(seed: u64) -> Vec<(Vec<Op>, Vec<Op>)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let ids = ["p", "q", "r", "s"];
    (0..rng.usize(1..4))
        .map(|_| {
            let mut side = || {
                (0..rng.usize(0..8))
                    .map(|_| {
                        let id = ids[rng.usize(..ids.len())].to_owned();
                        if rng.u8(..4) == 0 {
                            Op::Delete { id }
                        } else {
                            Op::Save {
                                id,
                                value: rng.u64(..5),
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            };
            (side(), side())
        })
        .collect()
}

/// Applies one op; its outcome (a revision or the error's kind), to compare sides.
async fn apply(svc: &Service, db: &str, op: &Op) -> String {
    let result = match op {
        Op::Save { id, value } => {
            let doc = Document::from_value(json!({"v": value})).expect("object");
            svc.save(db, id, doc).await
        }
        Op::Delete { id } => svc.delete(db, id).await,
    };
    match result {
        Ok(w) => w.rev.to_string(),
        Err(e) if e.is_not_found() => "not found".into(),
        Err(e) if e.is_conflict() => "conflict".into(),
        Err(e) => panic!("{op:?} on {}: {e}", svc.provider_name()),
    }
}

/// A pair of sides to run a history on.
struct Pair {
    a: Service,
    b: Service,
    a_db: String,
    b_db: String,
    /// Synced by CouchDB's `POST /_replicate` instead of `replicate` (the oracle).
    couchdb_replicator: bool,
}

impl Pair {
    async fn sync(&self) {
        if self.couchdb_replicator {
            let server = support::couchdb();
            for (from, to) in [(&self.a_db, &self.b_db), (&self.b_db, &self.a_db)] {
                let body = json!({
                    "source": format!("{}/{from}", server.self_url()),
                    "target": format!("{}/{to}", server.self_url()),
                    "create_target": true,
                });
                let (status, answer) = server
                    .request("POST", "/_replicate", Some(&body.to_string()))
                    .expect("_replicate");
                assert_eq!(status, 200, "{answer}");
            }
        } else {
            sync(
                &*self.a,
                &self.a_db,
                &*self.b,
                &self.b_db,
                &ReplicateOptions::default(),
            )
            .await
            .expect("sync");
        }
    }

    async fn trees(&self) -> Vec<(Value, Value)> {
        let mut out = Vec::new();
        for id in ["p", "q", "r", "s"] {
            out.push((
                support::document_tree(&*self.a, &self.a_db, id).await,
                support::document_tree(&*self.b, &self.b_db, id).await,
            ));
        }
        out
    }
}

/// After a round's sync: both sides of the oracle agree, and every pair matches it.
async fn compare_trees(pairs: &[Pair], round: usize) -> Result<(), String> {
    let oracle = pairs[0].trees().await;
    for (a, b) in &oracle {
        if a != b {
            return Err(format!(
                "round {round}: CouchDB's own sync left different trees: {a} vs {b}"
            ));
        }
    }
    for (n, p) in pairs.iter().enumerate().skip(1) {
        let trees = p.trees().await;
        if trees != oracle {
            return Err(format!(
                "round {round}: pair {n} ({} / {}) differs from CouchDB:\n  ours:    {trees:?}\n  couchdb: {oracle:?}",
                p.a.provider_name(),
                p.b.provider_name()
            ));
        }
    }
    Ok(())
}

async fn run_case(seed: u64, services: &[Service; 3]) -> Result<(), String> {
    let [memory, embedded, couchdb] = services;
    let pair = |a: &Service, b: &Service, oracle: bool| Pair {
        a: Arc::clone(a),
        b: Arc::clone(b),
        a_db: unique_db("prop-a"),
        b_db: unique_db("prop-b"),
        couchdb_replicator: oracle,
    };
    let pairs = [
        pair(couchdb, couchdb, true),
        pair(memory, embedded, false),
        pair(embedded, couchdb, false),
        pair(couchdb, memory, false),
    ];
    // Both databases exist from the start (a side may have no edits in a round).
    for p in &pairs {
        for (svc, db) in [(&p.a, &p.a_db), (&p.b, &p.b_db)] {
            let marker = Document::from_value(json!({})).expect("object");
            svc.put_local(db, "created", marker).await.expect("creates");
        }
    }
    for (round, (a_ops, b_ops)) in history(seed).iter().enumerate() {
        let mut outcomes: Vec<Vec<String>> = Vec::new();
        for p in &pairs {
            let mut seen = Vec::new();
            for op in a_ops {
                seen.push(apply(&p.a, &p.a_db, op).await);
            }
            for op in b_ops {
                seen.push(apply(&p.b, &p.b_db, op).await);
            }
            outcomes.push(seen);
            p.sync().await;
        }
        for (n, seen) in outcomes.iter().enumerate().skip(1) {
            if *seen != outcomes[0] {
                return Err(format!(
                    "round {round} ({a_ops:?} / {b_ops:?}): edits answered differently on pair {n}:\n  {seen:?}\n  couchdb: {:?}",
                    outcomes[0]
                ));
            }
        }
        compare_trees(&pairs, round).await?;
    }
    for p in &pairs {
        let _ = p.a.delete_database(&p.a_db).await;
        let _ = p.b.delete_database(&p.b_db).await;
    }
    Ok(())
}

#[tokio::test]
async fn random_histories_sync_to_couchdbs_trees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = [
        get_database_service(&Settings::memory())
            .await
            .expect("memory"),
        get_database_service(&Settings::embedded(dir.path().join("e")))
            .await
            .expect("embedded"),
        get_database_service(&support::couchdb().settings())
            .await
            .expect("couchdb"),
    ];
    let seeds: Vec<u64> = match std::env::var("DOCSTORE_SYNC_SEED") {
        Ok(seed) => vec![seed.parse().expect("DOCSTORE_SYNC_SEED is a number")],
        Err(_) => {
            let cases = std::env::var("DOCSTORE_SYNC_CASES")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(4);
            (0..cases).map(|_| fastrand::u64(..)).collect()
        }
    };
    for seed in seeds {
        if let Err(why) = run_case(seed, &services).await {
            panic!("history {seed} (replay: DOCSTORE_SYNC_SEED={seed}): {why}");
        }
    }
}
