//! Revision-preserving writes and reads on CouchDB (replication): current winners,
//! `_revs_diff`, `_bulk_docs` with `new_edits: false` and `_revisions`, and
//! `_bulk_get?revs=true`.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::http::{Idempotency, Target, status_error};
use super::{CouchDbProvider, Current, doc_json, protocol, rev_of};
use crate::write::{Leaf, check_current_len, revision_outcome, revs_diff_of};
use crate::{Error, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff, validate};

impl CouchDbProvider {
    pub(super) async fn current_revisions(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Option<(Rev, bool)>>> {
        validate::database_and_ids(db, ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        Ok(self
            .lookup(db, &keys)
            .await?
            .into_iter()
            .map(|c| c.leaf().map(|l| (l.rev, l.deleted)))
            .collect())
    }

    pub(super) async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        validate::database_name(db)?;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        // One lookup of the current winners, then one `_bulk_docs` with `new_edits: false`
        // for what is not there yet (nothing is sent when everything is present).
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        let current = self
            .lookup(db, &ids)
            .await?
            .into_iter()
            .map(Current::leaf)
            .collect();
        self.send_revisions(db, &docs, current).await
    }

    pub(super) async fn put_revisions_over(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
        current: Vec<Option<(Rev, bool)>>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        validate::database_name(db)?;
        check_current_len(db, &docs, &current)?;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let current = current
            .into_iter()
            .map(|c| c.map(|(rev, deleted)| Leaf { rev, deleted }))
            .collect();
        self.send_revisions(db, &docs, current).await
    }

    pub(super) async fn revs_diff(
        &self,
        db: &str,
        asked: &[(String, Vec<Rev>)],
    ) -> Result<Vec<RevsDiff>> {
        validate::database_name(db)?;
        for (id, _) in asked {
            validate::document_id(db, id)?;
        }
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        // The request is an object keyed by id: a repeated id's revisions are merged, and
        // each input entry is answered with its own revisions below.
        let mut request: Map<String, Value> = Map::new();
        for (id, revs) in asked {
            let entry = request
                .entry(id.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.extend(revs.iter().map(|r| Value::String(r.to_string())));
            }
        }
        let url = self.http.url(&[db, "_revs_diff"], &[]);
        let reply = self
            .http
            .send_json(
                Method::POST,
                &url,
                &Value::Object(request),
                Idempotency::Safe,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            // A missing database holds nothing.
            return Ok(asked
                .iter()
                .map(|(_, revs)| revs_diff_of(None, revs))
                .collect());
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let answer = reply.json()?;
        let answer = answer
            .as_object()
            .ok_or_else(|| protocol("_revs_diff", &reply))?;
        let revs_in = |value: &Value, key: &str| -> Result<Vec<Rev>> {
            match value.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|r| rev_of(r).ok_or_else(|| protocol("_revs_diff", &reply)))
                    .collect(),
                Some(_) => Err(protocol("_revs_diff", &reply)),
            }
        };
        asked
            .iter()
            .map(|(id, revs)| {
                // An id the answer leaves out has nothing missing.
                let Some(found) = answer.get(id) else {
                    return Ok(RevsDiff::default());
                };
                let server_missing = revs_in(found, "missing")?;
                let mut missing: Vec<Rev> = Vec::new();
                for rev in revs {
                    if server_missing.contains(rev) && !missing.contains(rev) {
                        missing.push(*rev);
                    }
                }
                let highest = missing.iter().map(Rev::generation).max().unwrap_or(0);
                let possible_ancestors = revs_in(found, "possible_ancestors")?
                    .into_iter()
                    .filter(|a| a.generation() < highest)
                    .collect();
                Ok(RevsDiff {
                    missing,
                    possible_ancestors,
                })
            })
            .collect()
    }

    pub(super) async fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        validate::database_name(db)?;
        let mut results: Vec<Option<Result<RevisionedDoc>>> = wanted
            .iter()
            .map(|(id, _)| validate::document_id(db, id).err().map(Err))
            .collect();
        let asked: Vec<Value> = wanted
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|((id, rev), _)| json!({"id": id, "rev": rev.to_string()}))
            .collect();
        let reply = if asked.is_empty() {
            // Nothing to read, but a missing database is still `NotFound`.
            let url = self.http.url(&[db], &[]);
            self.http
                .send(Method::HEAD, &url, None, Idempotency::Safe)
                .await?
        } else {
            let url = self.http.url(&[db, "_bulk_get"], &[("revs", "true")]);
            self.http
                .send_json(
                    Method::POST,
                    &url,
                    &json!({ "docs": asked }),
                    Idempotency::Safe,
                )
                .await?
        };
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let mut found: HashMap<(String, Rev), RevisionedDoc> = HashMap::new();
        if !asked.is_empty() {
            let mut body = reply.json()?;
            let Some(Value::Array(entries)) = body.get_mut("results").map(Value::take) else {
                return Err(protocol("_bulk_get", &reply));
            };
            // Each entry holds the documents read for one requested id: `ok` (the revision
            // with `_revisions`), or `error`/`missing` when the server does not have it.
            for mut entry in entries {
                let Some(Value::Array(docs)) = entry.get_mut("docs").map(Value::take) else {
                    return Err(protocol("_bulk_get", &reply));
                };
                for mut doc in docs {
                    if let Some(ok) = doc.get_mut("ok").map(Value::take) {
                        let doc =
                            revisioned_from(ok).ok_or_else(|| protocol("_bulk_get", &reply))?;
                        found.insert((doc.id.clone(), doc.rev), doc);
                    }
                }
            }
        }
        Ok(results
            .iter_mut()
            .zip(wanted)
            .map(|(slot, (id, rev))| match slot.take() {
                Some(invalid) => invalid,
                None => found
                    .remove(&(id.clone(), *rev))
                    .ok_or_else(|| Error::doc_not_found(db, id, "missing")),
            })
            .collect())
    }

    /// The `_bulk_docs` (`new_edits: false`) of a revision-preserving write, outcomes judged
    /// on the given winners (one per document, in order).
    async fn send_revisions(
        &self,
        db: &str,
        docs: &[RevisionedDoc],
        current: Vec<Option<Leaf>>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        let mut winners: HashMap<&str, Leaf> = HashMap::new();
        let mut results = Vec::with_capacity(docs.len());
        let mut to_send: Vec<(usize, &RevisionedDoc)> = Vec::new();
        for (slot, (doc, cur)) in docs.iter().zip(current).enumerate() {
            let cur = winners.get(doc.id.as_str()).copied().or(cur);
            // Judged on what CouchDB will link: a gap in the history makes a branch.
            let outcome = revision_outcome(db, doc, cur);
            match outcome {
                Ok(RevisionOutcome::Written) => {
                    winners.insert(
                        &doc.id,
                        Leaf {
                            rev: doc.rev,
                            deleted: doc.deleted,
                        },
                    );
                    to_send.push((slot, doc));
                }
                // CouchDB keeps a losing revision as a conflict branch.
                Ok(RevisionOutcome::Lost) => to_send.push((slot, doc)),
                _ => {}
            }
            results.push(outcome);
        }
        if to_send.is_empty() {
            return Ok(results);
        }
        let mut body = b"{\"new_edits\":false,\"docs\":[".to_vec();
        for (n, (_, doc)) in to_send.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            let mut map = Map::new();
            if doc.deleted {
                map.insert("_deleted".into(), Value::Bool(true));
            }
            if let Some(revisions) = revisions_field(doc) {
                map.insert("_revisions".into(), revisions);
            }
            if !doc.deleted {
                map.extend(doc.body.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let json = doc_json(Some(&doc.id), Some(&doc.rev), &map)?;
            body.extend_from_slice(&json);
        }
        body.extend_from_slice(b"]}");
        let url = self.http.url(&[db, "_bulk_docs"], &[]);
        let reply = self.write(db, Method::POST, &url, body).await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        // With new_edits false CouchDB lists only the documents it refused.
        let rows = reply.json()?;
        let rows = rows
            .as_array()
            .ok_or_else(|| protocol("_bulk_docs with new_edits false", &reply))?;
        for row in rows {
            let Some(error) = row["error"].as_str() else {
                continue;
            };
            let id = row["id"].as_str().unwrap_or("");
            let reason = row["reason"].as_str().unwrap_or("");
            for (slot, doc) in &to_send {
                if doc.id == id {
                    results[*slot] = Err(Error::invalid_document(
                        db,
                        Some(id),
                        format!("{error}: {reason}"),
                    ));
                }
            }
        }
        for (slot, doc) in &to_send {
            if matches!(results[*slot], Ok(RevisionOutcome::Written)) {
                if doc.deleted {
                    self.revs.forget(db, &doc.id);
                } else {
                    self.revs.put(db, &doc.id, doc.rev);
                }
            }
        }
        Ok(results)
    }
}

/// A document `_bulk_get?revs=true` returned, as replication carries it: `_revisions` become
/// the history, `_deleted` the flag, other `_` fields (attachments, conflicts) are dropped.
fn revisioned_from(value: Value) -> Option<RevisionedDoc> {
    let Value::Object(mut map) = value else {
        return None;
    };
    let id = match map.shift_remove("_id") {
        Some(Value::String(id)) => id,
        _ => return None,
    };
    let rev = rev_of(&map.shift_remove("_rev")?)?;
    let deleted = map.shift_remove("_deleted") == Some(Value::Bool(true));
    let history = match map.shift_remove("_revisions") {
        Some(revisions) if revisions["start"].as_u64() == Some(rev.generation()) => {
            revisions["ids"]
                .as_array()?
                .iter()
                .skip(1)
                .zip(1..)
                .map(|(hash, back)| {
                    let generation = rev.generation().checked_sub(back)?;
                    Rev::parse(&format!("{generation}-{}", hash.as_str()?)).ok()
                })
                .collect::<Option<Vec<Rev>>>()?
        }
        _ => Vec::new(),
    };
    map.retain(|k, _| !k.starts_with('_'));
    if deleted {
        map.clear();
    }
    Some(RevisionedDoc {
        id,
        rev,
        deleted,
        body: map,
        history,
    })
}

/// CouchDB's `_revisions` for a revision and its known ancestors (newest first): the
/// consecutive run of generations the history gives, so CouchDB links the revision to them.
fn revisions_field(doc: &RevisionedDoc) -> Option<Value> {
    let linked = doc.linked_history();
    if linked.is_empty() {
        return None;
    }
    let ids: Vec<Value> = std::iter::once(&doc.rev)
        .chain(linked)
        .map(|r| Value::String(hex_hash(r)))
        .collect();
    Some(json!({"start": doc.rev.generation(), "ids": ids}))
}

fn hex_hash(rev: &Rev) -> String {
    let text = rev.to_string();
    text.split_once('-')
        .map_or(text.clone(), |(_, h)| h.to_owned())
}
