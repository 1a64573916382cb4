//! Local documents and replication writes: `_local` documents, `put_revisions` winners, and
//! revision histories read with `read_revisions` and carried to another database.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Kind, Service, doc, ids, kind};
use crate::Rev;
use crate::testing::{drop_db, unique_db};

/// `_local` documents store and replace bodies but never appear in listings, changes or counts.
pub async fn local_documents_are_invisible(svc: &Service) {
    let db = unique_db("local");
    svc.save(&db, "visible", doc(json!({}))).await.unwrap();
    svc.put_local(&db, "cp", doc(json!({"seq": "1"})))
        .await
        .unwrap();
    svc.put_local(&db, "cp", doc(json!({"seq": "2", "extra": [1]})))
        .await
        .unwrap();
    let local = svc.get_local(&db, "cp").await.unwrap();
    assert_eq!(local.get("seq"), Some(&json!("2")));
    assert_eq!(local.get("extra"), Some(&json!([1])));
    assert_eq!(kind(&svc.get_local(&db, "other").await), Kind::NotFound);
    assert_eq!(ids(&svc.list_all(&db).await.unwrap()), ["visible"]);
    let changes = svc.changes(&db, None, 10).await.unwrap();
    assert_eq!(changes.results.len(), 1);
    assert_eq!(svc.database_info(&db).await.unwrap().doc_count, 1);
    // put_local creates the database lazily, like any write.
    let fresh = unique_db("local-fresh");
    svc.put_local(&fresh, "cp", doc(json!({"x": 1})))
        .await
        .unwrap();
    assert_eq!(
        svc.get_local(&fresh, "cp").await.unwrap().get("x"),
        Some(&json!(1))
    );
    assert!(svc.list_all(&fresh).await.unwrap().is_empty());
    drop_db(svc, &fresh).await;
    drop_db(svc, &db).await;
}

/// `put_revisions` stores revisions as they are (replication): a revision already present
/// writes nothing; a descendant (its history holds the current revision) extends it; other
/// revisions branch, every leaf is kept, and the winner is CouchDB's (live before deleted,
/// higher generation, greater revision id), the others listed as `_conflicts`; deletions
/// carry; bad ids and bodies fail alone. `current_revisions` reports the winners.
pub async fn put_revisions_keep_couchdb_winners(svc: &Service) {
    use crate::{RevisionOutcome as O, RevisionedDoc};
    let rev = |generation: u64, c: char| -> Rev {
        format!("{generation}-{}", c.to_string().repeat(32))
            .parse()
            .expect("valid rev")
    };
    let rd = |id: &str, r: Rev, deleted: bool, body: Value, history: Vec<Rev>| RevisionedDoc {
        id: id.to_owned(),
        rev: r,
        deleted,
        body: match body {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        history,
    };
    let db = unique_db("put-revs");
    let put = |docs: Vec<RevisionedDoc>| {
        let svc = Arc::clone(svc);
        let db = db.clone();
        async move {
            svc.put_revisions(&db, docs)
                .await
                .expect("put_revisions")
                .into_iter()
                .map(|r| r.map_err(|e| format!("{e:?}")))
                .collect::<Vec<_>>()
        }
    };
    let current = |id: &'static str| {
        let svc = Arc::clone(svc);
        let db = db.clone();
        async move { svc.get(&db, id).await }
    };
    assert!(
        svc.put_revisions(&db, Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
    assert_eq!(kind(&svc.database_info(&db).await), Kind::NotFound);

    let a1 = rev(1, 'a');
    assert_eq!(
        put(vec![rd("a", a1, false, json!({"v": 1}), vec![])]).await,
        [Ok(O::Written)]
    );
    let got = current("a").await.expect("stored");
    assert_eq!(got.rev(), Some(a1.to_string().as_str()));
    assert_eq!(got.get("v"), Some(&json!(1)));
    assert_eq!(
        put(vec![rd("a", a1, false, json!({"v": 1}), vec![])]).await,
        [Ok(O::Present)]
    );
    let b2 = rev(2, 'b');
    assert_eq!(
        put(vec![rd("a", b2, false, json!({"v": 2}), vec![a1])]).await,
        [Ok(O::Written)]
    );
    assert_eq!(
        put(vec![rd("a", rev(2, 'a'), false, json!({}), vec![])]).await,
        [Ok(O::Losing)]
    );
    assert_eq!(
        current("a").await.expect("live").rev(),
        Some(b2.to_string().as_str())
    );
    assert_eq!(
        put(vec![rd("a", rev(1, 'f'), false, json!({}), vec![])]).await,
        [Ok(O::Losing)]
    );
    let with_conflicts = svc
        .get_with(&db, "a", &crate::GetOptions::everything())
        .await
        .expect("a with its conflicts");
    assert_eq!(
        with_conflicts.get("_conflicts"),
        Some(&json!([rev(2, 'a').to_string(), rev(1, 'f').to_string()])),
        "losing leaves, highest first"
    );

    // A deletion that extends the current revision carries; one that does not loses to the
    // live revision.
    let d2 = rev(2, 'd');
    let out = put(vec![
        rd("b", a1, false, json!({"x": 1}), vec![]),
        rd("b", d2, true, json!({}), vec![a1]),
        rd("c", a1, false, json!({"x": 1}), vec![]),
        rd("c", rev(5, 'e'), true, json!({}), vec![]),
    ])
    .await;
    assert_eq!(
        out,
        [
            Ok(O::Written),
            Ok(O::Written),
            Ok(O::Written),
            Ok(O::Losing)
        ]
    );
    assert_eq!(kind(&current("b").await), Kind::NotFound);
    assert!(current("c").await.is_ok());
    let changes = svc.changes(&db, None, 10).await.expect("changes");
    let b = changes
        .results
        .iter()
        .find(|c| c.id == "b")
        .expect("b in changes");
    assert!(b.deleted);
    assert_eq!(b.rev, d2);
    let info = svc.database_info(&db).await.expect("info");
    assert_eq!((info.doc_count, info.doc_del_count), (2, 1));

    // A deleted document is brought back by a live descendant.
    let b3 = rev(3, 'b');
    assert_eq!(
        put(vec![rd(
            "b",
            b3,
            false,
            json!({"back": true}),
            vec![d2, a1]
        )])
        .await,
        [Ok(O::Written)]
    );
    assert_eq!(
        current("b").await.expect("back").get("back"),
        Some(&json!(true))
    );
    let ids = ["b".to_owned(), "c".to_owned(), "nope".to_owned()];
    assert_eq!(
        svc.current_revisions(&db, &ids).await.expect("revs"),
        [Some((b3, false)), Some((a1, false)), None]
    );
    assert_eq!(
        svc.current_revisions(&unique_db("none"), &ids)
            .await
            .expect("revs"),
        [None, None, None]
    );

    let bad = svc
        .put_revisions(
            &db,
            vec![
                rd("_x", a1, false, json!({}), vec![]),
                rd("y", a1, false, json!({"_conflicts": []}), vec![]),
                rd("z", a1, false, json!({"ok": 1}), vec![]),
                rd(
                    "w",
                    a1,
                    false,
                    json!({"_attachments": {"a": {"data": "not base64!"}}}),
                    vec![],
                ),
            ],
        )
        .await
        .expect("batch");
    assert_eq!(kind(&bad[0]), Kind::InvalidDocumentId);
    assert_eq!(kind(&bad[1]), Kind::InvalidDocument);
    assert_eq!(bad[2].as_ref().ok(), Some(&O::Written));
    assert_eq!(kind(&bad[3]), Kind::InvalidAttachment);
    drop_db(svc, &db).await;
}

/// Replication carries revision paths: `read_revisions` gives a document at exactly a
/// revision, edits and deletions alike, with its ancestors newest first; `put_revisions` of a
/// later revision with its history extends what the target stored (no branch), however many
/// edits lie between; a revision that brings only the recent part of its path keeps the
/// stored rest; `write_revisions` (after `revs_diff`) writes as `put_revisions` does; a
/// superseded revision keeps its body until compaction; an unknown revision is `NotFound`.
pub async fn revision_histories_travel(svc: &Service) {
    use crate::{RevisionOutcome as O, RevisionedDoc};
    let src = unique_db("revs-src");
    let mut path = Vec::new();
    for v in 1..=3 {
        let written = svc
            .save(&src, "a", doc(json!({"v": v})))
            .await
            .expect("save");
        path.insert(0, written.rev);
    }
    let (r3, r2, r1) = (path[0], path[1], path[2]);
    let read = |db: String, wanted: Vec<(&'static str, Rev)>| {
        let svc = Arc::clone(svc);
        async move {
            let wanted: Vec<(String, Rev)> = wanted
                .into_iter()
                .map(|(id, r)| (id.to_owned(), r))
                .collect();
            svc.read_revisions(&db, &wanted).await
        }
    };
    let got = read(src.clone(), vec![("a", r3)]).await.expect("read");
    assert_eq!(
        got[0].as_ref().expect("at r3"),
        &RevisionedDoc {
            id: "a".into(),
            rev: r3,
            deleted: false,
            body: json!({"v": 3}).as_object().cloned().unwrap_or_default(),
            history: vec![r2, r1],
        }
    );
    let got = read(src.clone(), vec![("a", r1), ("zz", r1), ("_bad", r1)])
        .await
        .expect("read");
    // A superseded revision keeps its body until compaction.
    let old = got[0]
        .as_ref()
        .expect("a superseded revision before compaction");
    assert_eq!((old.rev, old.body.get("v")), (r1, Some(&json!(1))));
    assert!(old.history.is_empty());
    assert_eq!(kind(&got[1]), Kind::NotFound, "an unknown document");
    assert_eq!(kind(&got[2]), Kind::InvalidDocumentId);
    assert_eq!(
        kind(&read(unique_db("none"), vec![("a", r1)]).await),
        Kind::NotFound
    );
    assert_eq!(
        kind(&read(unique_db("none"), vec![]).await),
        Kind::NotFound,
        "a missing database, even with nothing asked"
    );
    let r4 = svc.delete(&src, "a").await.expect("delete").rev;
    let tombstone = read(src.clone(), vec![("a", r4)]).await.expect("read");
    let tombstone = tombstone[0].as_ref().expect("the tombstone");
    assert!(tombstone.deleted && tombstone.body.is_empty());
    assert_eq!(tombstone.history, [r3, r2, r1]);

    // The target has `a` at r2; r4 arrives with its path and extends it: no branch survives.
    let tgt = unique_db("revs-tgt");
    let at = |rev: Rev, deleted: bool, body: Value, history: Vec<Rev>| RevisionedDoc {
        id: "a".into(),
        rev,
        deleted,
        body: body.as_object().cloned().unwrap_or_default(),
        history,
    };
    let put = |docs: Vec<RevisionedDoc>| {
        let svc = Arc::clone(svc);
        let tgt = tgt.clone();
        async move {
            svc.put_revisions(&tgt, docs)
                .await
                .expect("put")
                .into_iter()
                .map(|r| r.map_err(|e| format!("{e:?}")))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        put(vec![at(r2, false, json!({"v": 2}), vec![r1])]).await,
        [Ok(O::Written)]
    );
    // Written as replication does, after asking what the target lacks.
    let diff = svc
        .revs_diff(&tgt, &[("a".to_owned(), vec![r4])])
        .await
        .expect("revs_diff");
    assert_eq!(diff[0].missing, [r4]);
    assert_eq!(diff[0].possible_ancestors, [r2]);
    let written = svc
        .write_revisions(&tgt, vec![tombstone.clone()])
        .await
        .expect("write_revisions");
    assert_eq!(written.len(), 1);
    assert!(written[0].is_ok(), "{:?}", written[0]);
    assert_eq!(kind(&svc.get(&tgt, "a").await), Kind::NotFound);
    let copied = read(tgt.clone(), vec![("a", r4)]).await.expect("read");
    assert_eq!(copied[0].as_ref().expect("r4").history, [r3, r2, r1]);

    // A revision bringing only its parent joins the stored path below it.
    let rev = |generation: u64, c: char| -> Rev {
        format!("{generation}-{}", c.to_string().repeat(32))
            .parse()
            .expect("valid rev")
    };
    let (b1, b2, b3) = (rev(1, '1'), rev(2, '2'), rev(3, '3'));
    let b = |rev: Rev, history: Vec<Rev>| RevisionedDoc {
        id: "b".into(),
        ..at(rev, false, json!({"g": rev.generation()}), history)
    };
    assert_eq!(
        put(vec![b(b2, vec![b1]), b(b3, vec![b2])]).await,
        [Ok(O::Written), Ok(O::Written)]
    );
    let joined = read(tgt.clone(), vec![("b", b3)]).await.expect("read");
    assert_eq!(joined[0].as_ref().expect("b3").history, [b2, b1]);
    drop_db(svc, &src).await;
    drop_db(svc, &tgt).await;
}

/// `revs_diff` answers as CouchDB's `_revs_diff`: a revision the document holds, as its leaf or
/// an ancestor, is not missing; the leaves below a missing revision's generation (tombstones
/// included) are possible ancestors, so asking about a generation no document reaches lists
/// every leaf; unknown documents and databases hold nothing.
pub async fn revs_diff_answers_as_couchdb(svc: &Service) {
    let db = unique_db("revs-diff");
    let never = |generation: u64| Rev::new(generation, [0xab; 16]);
    let asked = |id: &str, revs: &[Rev]| (id.to_owned(), revs.to_vec());
    let none = svc
        .revs_diff(&db, &[asked("a", &[never(1)])])
        .await
        .unwrap();
    assert_eq!(
        none[0].missing,
        [never(1)],
        "a missing database holds nothing"
    );
    assert!(none[0].possible_ancestors.is_empty());

    let one = svc.save(&db, "a", doc(json!({"v": 1}))).await.unwrap();
    let two = svc.save(&db, "a", doc(json!({"v": 2}))).await.unwrap();
    svc.save(&db, "b", doc(json!({}))).await.unwrap();
    let gone = svc.delete(&db, "b").await.unwrap();
    let answers = svc
        .revs_diff(
            &db,
            &[
                asked("a", &[two.rev, one.rev]),
                asked("a", &[never(3)]),
                asked("a", &[never(1), never(2)]),
                asked("a", &[never(999_999_999)]),
                asked("b", &[never(999_999_999)]),
                asked("unknown", &[one.rev]),
            ],
        )
        .await
        .unwrap();
    assert!(
        answers[0].missing.is_empty(),
        "the leaf and an ancestor are held"
    );
    assert!(answers[0].possible_ancestors.is_empty());
    assert_eq!(answers[1].missing, [never(3)]);
    assert_eq!(answers[1].possible_ancestors, [two.rev]);
    assert_eq!(answers[2].missing, [never(1), never(2)]);
    assert!(
        answers[2].possible_ancestors.is_empty(),
        "the leaf is not below generation 2"
    );
    assert_eq!(answers[3].possible_ancestors, [two.rev]);
    assert_eq!(
        answers[4].possible_ancestors,
        [gone.rev],
        "tombstones are leaves"
    );
    assert_eq!(answers[5].missing, [one.rev]);
    assert!(answers[5].possible_ancestors.is_empty());
    assert_eq!(
        kind(&svc.revs_diff(&db, &[asked("_bad", &[one.rev])]).await),
        Kind::InvalidDocumentId
    );
    assert!(svc.revs_diff(&db, &[]).await.unwrap().is_empty());
    drop_db(svc, &db).await;
}
