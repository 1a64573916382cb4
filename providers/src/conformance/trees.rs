//! Revision trees: every scenario recorded from a genuine CouchDB 3.5
//! (`testdata/couchdb-conflicts.json`) replayed through the API, and each reply and
//! observation compared with what CouchDB answered: grafted branches, conflicts and their
//! order, deleted leaves, interactive edits of any leaf, stemming to `revs_limit`,
//! compaction, `open_revs`, `_revs_diff`, listings, the changes feed and counts.
//!
//! The recording's operations map onto the API one to one: `bulk_new_edits_false` is
//! `put_revisions` of [`RevisionedDoc::from_couchdb_json`] (a request CouchDB refused with
//! 400 is one the conversion refuses), `put` is `save` with `_rev` or `create` without,
//! `delete` is `delete_rev`, `bulk` is `save_many`. Reads: `GET` with every option is
//! `get_with(GetOptions::everything())`, `open_revs` is `open_revs`, `_all_docs` is
//! `list_all` (and `current_revisions` for `keys`), `_changes` is `changes`. Sequence
//! numbers are the one thing not compared: the recording's are sums over two shards, and
//! `set_revs_limit` advanced each of them.

use serde_json::{Map, Value, json};

use super::Service;
use crate::testing::{drop_db, unique_db};
use crate::{Document, Error, GetOptions, OpenRev, OpenRevs, Rev, RevisionedDoc, RevsDiff};

/// Replays all 58 recorded scenarios and reports every difference from CouchDB at once.
pub async fn conflict_scenarios_match_recorded_couchdb(svc: &Service) {
    let data: Value =
        serde_json::from_str(include_str!("../../../testdata/couchdb-conflicts.json"))
            .expect("recorded scenarios parse");
    let scenarios = data["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 58, "every recorded scenario");
    let mut differences: Vec<String> = Vec::new();
    for scenario in scenarios {
        let name = scenario["name"].as_str().expect("name");
        let db = unique_db("tree");
        let mut run = Run {
            svc,
            db: &db,
            name,
            differences: &mut differences,
        };
        run.scenario(scenario).await;
        drop_db(svc, &db).await;
    }
    assert!(
        differences.is_empty(),
        "{} differences from CouchDB 3.5 on {}:\n{}",
        differences.len(),
        svc.provider_name(),
        differences.join("\n")
    );
}

/// One scenario being replayed.
struct Run<'a> {
    svc: &'a Service,
    db: &'a str,
    name: &'a str,
    differences: &'a mut Vec<String>,
}

/// A JSON value with its key order, for exact comparison.
fn text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn revs_json(revs: &[Rev]) -> Value {
    Value::Array(revs.iter().map(|r| Value::String(r.to_string())).collect())
}

/// CouchDB's reply for an error of ours: status and the `error` member.
fn error_reply(e: &Error) -> (u16, &'static str) {
    match e {
        Error::NotFound { .. } => (404, "not_found"),
        Error::Conflict { .. } => (409, "conflict"),
        Error::InvalidDocument { .. } | Error::InvalidDocumentId { .. } => (400, "bad_request"),
        _ => (500, "other"),
    }
}

fn not_found_reason(e: &Error) -> Option<&str> {
    match e {
        Error::NotFound { reason, .. } => reason.as_deref(),
        _ => None,
    }
}

impl Run<'_> {
    fn differ(&mut self, what: &str, ours: impl std::fmt::Display, couch: impl std::fmt::Display) {
        self.differences.push(format!(
            "{}: {what}\n    ours:    {ours}\n    couchdb: {couch}",
            self.name
        ));
    }

    async fn scenario(&mut self, scenario: &Value) {
        let steps = scenario["steps"].as_array().expect("steps");
        let intermediate = scenario["intermediate_expects"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (n, step) in steps.iter().enumerate() {
            self.step(n, step).await;
            for expect in intermediate
                .iter()
                .filter(|e| e["after_step"].as_u64() == Some(n as u64))
            {
                self.observe(expect, &format!("after step {n}")).await;
            }
        }
        self.observe(&scenario["expect"], "at the end").await;
    }

    async fn step(&mut self, n: usize, step: &Value) {
        let reply = &step["reply"];
        let status = reply["status"].as_u64().unwrap_or(0);
        let op = step["op"].as_str().unwrap_or("");
        let what = format!("step {n} ({op})");
        match op {
            "bulk_new_edits_false" => {
                let docs: Result<Vec<RevisionedDoc>, Error> = step["docs"]
                    .as_array()
                    .expect("docs")
                    .iter()
                    .map(|d| {
                        RevisionedDoc::from_couchdb_json(
                            self.db,
                            d.as_object().cloned().unwrap_or_default(),
                        )
                    })
                    .collect();
                match (docs, status) {
                    (Err(e), 400) => {
                        if !matches!(e, Error::InvalidDocument { .. }) {
                            self.differ(&what, format!("{e:?}"), "400 for the request");
                        }
                    }
                    (Err(e), _) => self.differ(&what, format!("refused: {e}"), status),
                    (Ok(_), 400) => self.differ(&what, "accepted", text(reply)),
                    (Ok(docs), _) => match self.svc.put_revisions(self.db, docs).await {
                        Err(e) => self.differ(&what, format!("{e:?}"), text(reply)),
                        Ok(results) => {
                            for r in results.iter().filter(|r| r.is_err()) {
                                self.differ(&what, format!("{r:?}"), text(reply));
                            }
                        }
                    },
                }
            }
            "put" => {
                let body = Document::from_json(step["body_raw"].as_str().expect("body_raw"))
                    .expect("recorded body parses");
                let id = step["id"].as_str().expect("id");
                let result = if step.get("rev").is_some() {
                    self.svc.save(self.db, id, body).await
                } else {
                    self.svc.create(self.db, id, body).await
                };
                self.write_reply(&what, result.map(|w| w.rev), reply);
            }
            "delete" => {
                let id = step["id"].as_str().expect("id");
                let rev: Rev = step["rev"].as_str().expect("rev").parse().expect("rev");
                let result = self.svc.delete_rev(self.db, id, &rev).await;
                self.write_reply(&what, result.map(|w| w.rev), reply);
            }
            "bulk" => {
                let docs: Vec<Document> = step["docs"]
                    .as_array()
                    .expect("docs")
                    .iter()
                    .map(|d| Document::from_value(d.clone()).expect("object"))
                    .collect();
                let ours: Vec<Value> = match self.svc.save_many(self.db, docs).await {
                    Err(e) => vec![json!(format!("{e:?}"))],
                    Ok(results) => results
                        .iter()
                        .map(|r| match r {
                            Ok(w) => json!({"id": w.id, "rev": w.rev.to_string()}),
                            Err(e) => json!({"error": error_reply(e).1}),
                        })
                        .collect(),
                };
                // CouchDB's rows also carry the id and reason of an error.
                let couch: Vec<Value> = reply["body"]
                    .as_array()
                    .expect("bulk rows")
                    .iter()
                    .map(|row| match row.get("error") {
                        Some(error) => json!({"error": error}),
                        None => json!({"id": row["id"], "rev": row["rev"]}),
                    })
                    .collect();
                if ours != couch {
                    self.differ(&what, text(&Value::Array(ours)), text(&Value::Array(couch)));
                }
            }
            "set_revs_limit" => {
                let limit = step["value"].as_u64().expect("value");
                if let Err(e) = self.svc.set_revs_limit(self.db, limit).await {
                    self.differ(&what, format!("{e:?}"), text(reply));
                }
                match self.svc.revs_limit(self.db).await {
                    Ok(read) if Some(read) == step["readback"]["body"].as_u64() => {}
                    other => self.differ(&what, format!("{other:?}"), text(&step["readback"])),
                }
            }
            "compact" => {
                if let Err(e) = self.svc.compact(self.db).await {
                    self.differ(&what, format!("{e:?}"), text(reply));
                }
            }
            other => panic!("unknown recorded op {other:?}"),
        }
    }

    /// Compares an interactive write's outcome with CouchDB's reply.
    fn write_reply(&mut self, what: &str, result: crate::Result<Rev>, reply: &Value) {
        let status = reply["status"].as_u64().unwrap_or(0);
        match (&result, status) {
            (Ok(rev), 200 | 201) if reply["body"]["rev"].as_str() == Some(&rev.to_string()) => {}
            (Err(e), _) if u64::from(error_reply(e).0) == status => {
                if let Some(reason) = not_found_reason(e)
                    && reply["body"]["reason"].as_str() != Some(reason)
                {
                    self.differ(what, format!("{e:?}"), text(reply));
                }
            }
            _ => self.differ(what, format!("{result:?}"), text(reply)),
        }
    }

    /// Compares every observation of `expect` (taken after a step) with ours.
    async fn observe(&mut self, expect: &Value, when: &str) {
        let id = expect["doc_id"].as_str().expect("doc_id");
        let label = format!("{when}: ");
        let everything = GetOptions::everything();
        let got = self.svc.get_with(self.db, id, &everything).await;
        self.read_reply(
            &format!("{label}GET with every option"),
            got,
            &expect["get"],
        );
        if let Some(ancestor) = expect.get("get_ancestor_by_rev") {
            let rev: Rev = ancestor["rev"].as_str().expect("rev").parse().expect("rev");
            let options = GetOptions {
                rev: Some(rev),
                ..GetOptions::default()
            };
            let got = self.svc.get_with(self.db, id, &options).await;
            self.read_reply(&format!("{label}GET ?rev={rev}"), got, ancestor);
        }
        for (key, which, revs) in [
            ("open_revs_all", OpenRevs::All, false),
            ("open_revs_all_revs", OpenRevs::All, true),
            (
                "open_revs_list",
                open_list(&expect["open_revs_list"], false),
                false,
            ),
            (
                "open_revs_list_latest",
                open_list(&expect["open_revs_list_latest"], true),
                false,
            ),
        ] {
            let got = self.svc.open_revs(self.db, id, &which, revs).await;
            self.open_revs_reply(&format!("{label}{key}"), got, &expect[key]);
        }
        for (n, asked) in expect["revs_diff"]
            .as_array()
            .expect("revs_diff")
            .iter()
            .enumerate()
        {
            self.revs_diff_reply(&format!("{label}revs_diff #{n}"), asked)
                .await;
        }
        if let Some(asked) = expect.get("revs_diff_two_ids") {
            self.revs_diff_reply(&format!("{label}revs_diff of two ids"), asked)
                .await;
        }
        self.listings(&label, id, expect).await;
    }

    fn read_reply(&mut self, what: &str, got: crate::Result<Document>, couch: &Value) {
        let status = couch["status"].as_u64().unwrap_or(0);
        match (&got, status) {
            (Ok(doc), 200) => {
                let ours = serde_json::to_value(doc).unwrap_or_default();
                if text(&ours) != text(&couch["body"]) {
                    self.differ(what, text(&ours), text(&couch["body"]));
                }
            }
            (Err(e), 404) if not_found_reason(e) == couch["body"]["reason"].as_str() => {}
            _ => self.differ(what, format!("{got:?}"), text(couch)),
        }
    }

    fn open_revs_reply(&mut self, what: &str, got: crate::Result<Vec<OpenRev>>, couch: &Value) {
        let ours = match got {
            Ok(list) => json!({
                "status": 200,
                "body": list.iter().map(|o| match o {
                    OpenRev::Found(doc) => json!({"ok": doc}),
                    OpenRev::Missing(rev) => json!({"missing": rev.to_string()}),
                }).collect::<Vec<_>>(),
            }),
            Err(e) => json!({"status": error_reply(&e).0, "error": format!("{e}")}),
        };
        let couch = json!({"status": couch["status"], "body": couch["body"]});
        if ours["status"] != couch["status"]
            || (ours["status"] == 200 && text(&ours["body"]) != text(&couch["body"]))
        {
            self.differ(what, text(&ours), text(&couch));
        }
    }

    async fn revs_diff_reply(&mut self, what: &str, asked: &Value) {
        let request = asked["request"].as_object().expect("request");
        let list: Vec<(String, Vec<Rev>)> = request
            .iter()
            .map(|(id, revs)| {
                let revs = revs
                    .as_array()
                    .expect("revs")
                    .iter()
                    .map(|r| r.as_str().expect("rev").parse().expect("rev"))
                    .collect();
                (id.clone(), revs)
            })
            .collect();
        let ours = match self.svc.revs_diff(self.db, &list).await {
            Err(e) => json!(format!("{e:?}")),
            Ok(answers) => {
                let mut body = Map::new();
                for (
                    (id, _),
                    RevsDiff {
                        missing,
                        possible_ancestors,
                    },
                ) in list.iter().zip(answers)
                {
                    if missing.is_empty() {
                        continue;
                    }
                    let mut entry = Map::new();
                    entry.insert("missing".into(), revs_json(&missing));
                    if !possible_ancestors.is_empty() {
                        entry.insert("possible_ancestors".into(), revs_json(&possible_ancestors));
                    }
                    body.insert(id.clone(), Value::Object(entry));
                }
                Value::Object(body)
            }
        };
        if text(&ours) != text(&asked["body"]) {
            self.differ(what, text(&ours), text(&asked["body"]));
        }
    }

    /// `_all_docs`, `_all_docs?keys=`, `_changes` and the database's counts.
    async fn listings(&mut self, label: &str, id: &str, expect: &Value) {
        let ours = match self.svc.list_all(self.db).await {
            Ok(docs) => Value::Array(
                docs.iter()
                    .map(|d| json!({"id": d.id(), "rev": d.rev()}))
                    .collect(),
            ),
            Err(e) => json!(format!("{e:?}")),
        };
        let couch = Value::Array(
            expect["all_docs"]["body"]["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|row| json!({"id": row["id"], "rev": row["value"]["rev"]}))
                .collect(),
        );
        if ours != couch {
            self.differ(&format!("{label}_all_docs"), text(&ours), text(&couch));
        }

        let ours = match self.svc.current_revisions(self.db, &[id.to_owned()]).await {
            Ok(found) => match found.first() {
                Some(Some((rev, deleted))) => {
                    json!({"rev": rev.to_string(), "deleted": deleted})
                }
                _ => json!("not_found"),
            },
            Err(e) => json!(format!("{e:?}")),
        };
        let row = &expect["all_docs_keys"]["body"]["rows"][0];
        let couch = match row.get("value") {
            Some(value) => json!({
                "rev": value["rev"],
                "deleted": value["deleted"].as_bool().unwrap_or(false),
            }),
            None => json!("not_found"),
        };
        if ours != couch {
            self.differ(&format!("{label}_all_docs?keys"), text(&ours), text(&couch));
        }

        let ours = match self.svc.changes(self.db, None, 1000).await {
            Ok(page) => Value::Array(
                page.results
                    .iter()
                    .filter(|c| c.id == id)
                    .map(|c| {
                        let leaves: Vec<Rev> = std::iter::once(c.rev)
                            .chain(c.other_leaves.iter().copied())
                            .collect();
                        json!({"changes": revs_json(&leaves), "deleted": c.deleted})
                    })
                    .collect(),
            ),
            Err(e) => json!(format!("{e:?}")),
        };
        let couch = Value::Array(
            expect["changes"]["body"]["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|row| {
                    let leaves: Vec<Value> = row["changes"]
                        .as_array()
                        .expect("changes")
                        .iter()
                        .map(|c| c["rev"].clone())
                        .collect();
                    json!({
                        "changes": leaves,
                        "deleted": row["deleted"].as_bool().unwrap_or(false),
                    })
                })
                .collect(),
        );
        if ours != couch {
            self.differ(&format!("{label}_changes"), text(&ours), text(&couch));
        }

        let info = &expect["db_info"];
        let ours = match self.svc.database_info(self.db).await {
            Ok(i) => json!({"doc_count": i.doc_count, "doc_del_count": i.doc_del_count}),
            Err(e) => json!(format!("{e:?}")),
        };
        let info = &json!({"doc_count": info["doc_count"], "doc_del_count": info["doc_del_count"]});
        if ours != *info {
            self.differ(&format!("{label}database_info"), text(&ours), text(info));
        }
    }
}

/// The revisions an `open_revs_list` observation asked for.
fn open_list(observation: &Value, latest: bool) -> OpenRevs {
    OpenRevs::Revs {
        revs: observation["open_revs"]
            .as_array()
            .expect("open_revs")
            .iter()
            .map(|r| r.as_str().expect("rev").parse().expect("rev"))
            .collect(),
        latest,
    }
}

/// Reading and resolving a conflict through the API: `live_leaves` gives the winner first,
/// `resolve_conflicts` writes the merge on the winner and deletes the losers in one batch, so
/// afterwards one live leaf remains and the losers are deleted conflicts; a document without
/// conflicts is left alone, a failing merge aborts with nothing written, a missing or deleted
/// document is `NotFound`.
pub async fn conflicts_resolve_to_one_live_leaf(svc: &Service) {
    use crate::DatabaseServiceExt;
    let db = unique_db("resolve");
    let rev = |text: &str| -> Rev { text.parse().expect("rev") };
    let (root, a, b) = (
        rev("1-11111111111111111111111111111111"),
        rev("2-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        rev("2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
    );
    let branch = |r: Rev, tag: &str| RevisionedDoc {
        id: "d".into(),
        rev: r,
        deleted: false,
        body: json!({"tags": [tag]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        history: vec![root],
    };
    svc.put_revisions(&db, vec![branch(a, "a"), branch(b, "b")])
        .await
        .expect("conflicting branches");
    let leaves = svc.live_leaves(&db, "d").await.expect("leaves");
    let revs: Vec<Option<&str>> = leaves.iter().map(Document::rev).collect();
    assert_eq!(
        revs,
        [Some(b.to_string().as_str()), Some(a.to_string().as_str())]
    );

    let aborted = svc
        .resolve_conflicts(&db, "d", |_| {
            Err(Error::invalid_document(&db, Some("d"), "cannot merge"))
        })
        .await;
    assert!(
        matches!(aborted, Err(Error::InvalidDocument { .. })),
        "{aborted:?}"
    );
    assert_eq!(svc.live_leaves(&db, "d").await.expect("leaves").len(), 2);

    let resolved = svc
        .resolve_conflicts(&db, "d", |leaves| {
            let mut tags: Vec<Value> = Vec::new();
            for leaf in leaves {
                tags.extend(
                    leaf.get("tags")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Ok(Document::from_value(json!({"tags": tags})).expect("object"))
        })
        .await
        .expect("resolved");
    assert_eq!(resolved.rev.generation(), 3, "written on the winner");
    assert_eq!(resolved.removed, [a]);
    let now = svc
        .get_with(&db, "d", &GetOptions::everything())
        .await
        .expect("winner");
    assert_eq!(now.rev(), Some(resolved.rev.to_string().as_str()));
    assert_eq!(now.get("tags"), Some(&json!(["b", "a"])));
    assert_eq!(now.get("_conflicts"), None);
    let gone = now
        .get("_deleted_conflicts")
        .and_then(Value::as_array)
        .expect("the loser's deletion");
    assert_eq!(gone.len(), 1);
    assert!(gone[0].as_str().is_some_and(|r| r.starts_with("3-")));

    let mut calls = 0;
    let again = svc
        .resolve_conflicts(&db, "d", |_| {
            calls += 1;
            Ok(Document::new())
        })
        .await
        .expect("nothing to resolve");
    assert_eq!(
        (again.rev, again.removed.len(), calls),
        (resolved.rev, 0, 0)
    );
    assert!(matches!(
        svc.resolve_conflicts(&db, "nope", |_| Ok(Document::new()))
            .await,
        Err(Error::NotFound { .. })
    ));
    drop_db(svc, &db).await;
}

/// A write without `_rev` goes on the winner, even when the writer itself wrote a leaf that a
/// replicated branch has since outranked (CouchDB would accept an edit of that losing leaf,
/// so a remembered revision must never be used): `save`, `save_many` and `delete`.
pub async fn revless_writes_go_on_the_winner(svc: &Service) {
    let db = unique_db("revless-winner");
    let branch = |id: &str, rev: &str, parent: &str| RevisionedDoc {
        id: id.into(),
        rev: rev.parse().expect("rev"),
        deleted: false,
        body: json!({"from": "replication"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        history: vec![parent.parse().expect("rev")],
    };
    for id in ["a", "b", "c"] {
        let mine = svc
            .save(&db, id, doc_of(json!({"mine": true})))
            .await
            .expect("save");
        assert_eq!(mine.rev.generation(), 1);
        let outcome = svc
            .put_revisions(
                &db,
                vec![branch(
                    id,
                    "2-ffffffffffffffffffffffffffffffff",
                    "1-00000000000000000000000000000000",
                )],
            )
            .await
            .expect("branch");
        assert_eq!(
            outcome[0].as_ref().ok(),
            Some(&crate::RevisionOutcome::Written)
        );
    }
    let saved = svc
        .save(&db, "a", doc_of(json!({"v": 2})))
        .await
        .expect("save");
    assert_eq!(
        saved.rev.generation(),
        3,
        "on the winner 2-fff…, not on 1-…"
    );
    let bulk = svc
        .save_many(&db, vec![doc_of(json!({"_id": "b", "v": 2}))])
        .await
        .expect("bulk");
    assert_eq!(bulk[0].as_ref().expect("saved").rev.generation(), 3);
    let deleted = svc.delete(&db, "c").await.expect("delete");
    assert_eq!(deleted.rev.generation(), 3, "the winner deleted");
    let c = svc.get(&db, "c").await.expect("the losing leaf now wins");
    assert_eq!(c.get("mine"), Some(&json!(true)));
    drop_db(svc, &db).await;
}

fn doc_of(value: Value) -> Document {
    Document::from_value(value).expect("object")
}
