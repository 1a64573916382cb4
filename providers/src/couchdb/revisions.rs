//! Revision-preserving writes and reads on CouchDB (replication): current winners,
//! `_revs_diff`, `_bulk_docs` with `new_edits: false` and `_revisions`, and
//! `_bulk_get?revs=true`.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::http::{Idempotency, Target, status_error};
use super::{CouchDbProvider, protocol, rev_of};
use crate::rev_tree::RevTree;
use crate::write::check_revisioned;
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

    /// Presence and every leaf from one `_revs_diff` (with the probe revision no document
    /// reaches), every revision in one `_bulk_docs` (a present one too: CouchDB keeps the
    /// body it brings for an ancestor that had none), and, only for documents that already
    /// had a leaf the new revision does not extend, one winner lookup afterwards to say
    /// whether it won.
    pub(super) async fn put_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<RevisionOutcome>>> {
        validate::database_name(db)?;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let mut results: Vec<Option<Result<RevisionOutcome>>> = docs
            .iter()
            .map(|d| check_revisioned(db, d).err().map(Err))
            .collect();
        let probe = Rev::beyond_every_leaf();
        let asked: Vec<(String, Vec<Rev>)> = docs
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(d, _)| (d.id.clone(), vec![d.rev, probe]))
            .collect();
        let mut diffs = self.revs_diff(db, &asked).await?.into_iter();
        // Documents to send, and whether each may have lost to a leaf it does not extend.
        let mut to_send: Vec<(usize, bool)> = Vec::new();
        let mut present: Vec<usize> = Vec::new();
        for (slot, doc) in docs.iter().enumerate() {
            if results[slot].is_some() {
                continue;
            }
            let diff = diffs.next().unwrap_or_default();
            if !diff.missing.contains(&doc.rev) {
                results[slot] = Some(Ok(RevisionOutcome::Present));
                present.push(slot);
                continue;
            }
            let linked = doc.linked_history();
            // A leaf the revision does not extend, or an earlier revision of the same
            // document in this batch, may win over it.
            let contested = diff.possible_ancestors.iter().any(|l| !linked.contains(l))
                || to_send
                    .iter()
                    .any(|(earlier, _)| docs[*earlier].id == doc.id);
            to_send.push((slot, contested));
        }
        let sending: Vec<&RevisionedDoc> = to_send
            .iter()
            .map(|(slot, _)| &docs[*slot])
            .chain(present.iter().map(|slot| &docs[*slot]))
            .collect();
        let mut written = self.bulk_new_edits_false(db, &sending).await?;
        // A present revision is reported present, whatever CouchDB did with its body.
        written.truncate(to_send.len());
        let mut contested_ids: Vec<String> = Vec::new();
        for ((slot, contested), result) in to_send.iter().zip(written) {
            results[*slot] = Some(match result {
                Err(e) => Err(e),
                Ok(()) if *contested => {
                    contested_ids.push(docs[*slot].id.clone());
                    continue;
                }
                Ok(()) => Ok(RevisionOutcome::Written),
            });
        }
        if !contested_ids.is_empty() {
            let winners = self.current_revisions(db, &contested_ids).await?;
            let winners: HashMap<&str, Option<(Rev, bool)>> = contested_ids
                .iter()
                .map(String::as_str)
                .zip(winners)
                .collect();
            for (slot, _) in to_send.iter().filter(|(_, c)| *c) {
                if results[*slot].is_some() {
                    continue;
                }
                let doc = &docs[*slot];
                let won = winners
                    .get(doc.id.as_str())
                    .copied()
                    .flatten()
                    .is_some_and(|(rev, _)| rev == doc.rev);
                results[*slot] = Some(Ok(if won {
                    RevisionOutcome::Written
                } else {
                    RevisionOutcome::Losing
                }));
            }
        }
        for (slot, _) in &to_send {
            let doc = &docs[*slot];
            match &results[*slot] {
                Some(Ok(RevisionOutcome::Written)) if !doc.deleted => {
                    self.revs.put(db, &doc.id, doc.rev)
                }
                _ => self.revs.forget(db, &doc.id),
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a revision write lost a result"))))
            .collect())
    }

    pub(super) async fn write_revisions(
        &self,
        db: &str,
        docs: Vec<RevisionedDoc>,
    ) -> Result<Vec<Result<()>>> {
        validate::database_name(db)?;
        let mut results: Vec<Option<Result<()>>> = docs
            .iter()
            .map(|d| check_revisioned(db, d).err().map(Err))
            .collect();
        let slots: Vec<usize> = (0..docs.len()).filter(|s| results[*s].is_none()).collect();
        let sending: Vec<&RevisionedDoc> = slots.iter().map(|s| &docs[*s]).collect();
        let written = self.bulk_new_edits_false(db, &sending).await?;
        for (slot, result) in slots.into_iter().zip(written) {
            // The winner is unknown without a lookup: the cache must not guess it.
            self.revs.forget(db, &docs[slot].id);
            results[slot] = Some(result);
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a revision write lost a result"))))
            .collect())
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
        let repeated_ids = request.len() < asked.len();
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
                .map(|(_, revs)| RevTree::default().revs_diff(revs))
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
                let missing = revs_in(found, "missing")?;
                let possible_ancestors = revs_in(found, "possible_ancestors")?;
                if !repeated_ids {
                    return Ok(RevsDiff {
                        missing,
                        possible_ancestors,
                    });
                }
                // An id asked in several entries was asked once with all their revisions:
                // each entry gets the missing ones of its own, and the leaves below them.
                let mut own: Vec<Rev> = Vec::new();
                for rev in revs {
                    if missing.contains(rev) && !own.contains(rev) {
                        own.push(*rev);
                    }
                }
                let highest = own.iter().map(Rev::generation).max().unwrap_or(0);
                Ok(RevsDiff {
                    missing: own,
                    possible_ancestors: possible_ancestors
                        .into_iter()
                        .filter(|a| a.generation() < highest)
                        .collect(),
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
            let url = self.http.url(
                &[db, "_bulk_get"],
                &[("revs", "true"), ("attachments", "true")],
            );
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
        let mut found: HashMap<(String, Rev), Result<RevisionedDoc>> = HashMap::new();
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
                        let (key, doc) =
                            revisioned_from(db, ok).ok_or_else(|| protocol("_bulk_get", &reply))?;
                        found.insert(key, doc);
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
                    .unwrap_or_else(|| Err(Error::doc_not_found(db, id, "missing"))),
            })
            .collect())
    }

    /// One `_bulk_docs` with `new_edits: false` (nothing sent for no documents): one result
    /// per document, in order; CouchDB answers only the documents it refused.
    async fn bulk_new_edits_false(
        &self,
        db: &str,
        docs: &[&RevisionedDoc],
    ) -> Result<Vec<Result<()>>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = b"{\"new_edits\":false,\"docs\":[".to_vec();
        for (n, doc) in docs.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            let json = serde_json::to_vec(&doc.to_couchdb_json()).map_err(Error::storage)?;
            body.extend_from_slice(&json);
        }
        body.extend_from_slice(b"]}");
        let url = self.http.url(&[db, "_bulk_docs"], &[]);
        let reply = self.write(db, Method::POST, &url, body).await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let rows = reply.json()?;
        let rows = rows
            .as_array()
            .ok_or_else(|| protocol("_bulk_docs with new_edits false", &reply))?;
        let mut results: Vec<Result<()>> = docs.iter().map(|_| Ok(())).collect();
        for row in rows {
            let Some(error) = row["error"].as_str() else {
                continue;
            };
            let id = row["id"].as_str().unwrap_or("");
            let reason = row["reason"].as_str().unwrap_or("");
            for (slot, doc) in docs.iter().enumerate() {
                if doc.id == id {
                    results[slot] = Err(Error::invalid_document(
                        db,
                        Some(id),
                        format!("{error}: {reason}"),
                    ));
                }
            }
        }
        Ok(results)
    }
}

/// A document `_bulk_get?revs=true` returned, keyed by the id and revision it was asked
/// for, as replication carries it ([`RevisionedDoc::from_couchdb_json`]), attachments with
/// their data inline. A document the conversion refuses is an error for that document only; one without `_id` or `_rev` is a protocol error (`None`).
fn revisioned_from(db: &str, value: Value) -> Option<((String, Rev), Result<RevisionedDoc>)> {
    let Value::Object(mut map) = value else {
        return None;
    };
    let id = map.get("_id")?.as_str()?.to_owned();
    let rev = rev_of(map.get("_rev")?)?;
    // Metadata CouchDB adds on request; not part of the revision.
    for key in [
        "_conflicts",
        "_deleted_conflicts",
        "_revs_info",
        "_local_seq",
    ] {
        map.shift_remove(key);
    }
    Some(((id, rev), RevisionedDoc::from_couchdb_json(db, map)))
}
