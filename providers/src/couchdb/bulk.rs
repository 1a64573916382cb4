//! Bulk calls on CouchDB: `get_many`, `save_many` and `delete_many` in rounds of one
//! `_bulk_docs` each, and the `_all_docs` key lookups of current revisions they use.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::http::{Idempotency, Target, status_error};
use super::quorum::Accepted;
use super::{CouchDbProvider, Current, UPSERT_ATTEMPTS, doc_json, document_from, protocol, rev_of};
use crate::service::backoff;
use crate::write::SaveRequest;
use crate::{Document, Error, Result, Rev, WriteResult, validate};

impl CouchDbProvider {
    /// `POST /db/_all_docs` with `keys`: one row per id, in order (a missing database gives
    /// `null` rows). With `include_docs`, live rows carry their document.
    async fn rows_for_keys(
        &self,
        db: &str,
        ids: &[&str],
        include_docs: bool,
    ) -> Result<Vec<Value>> {
        let query: &[(&str, &str)] = if include_docs {
            &[("include_docs", "true")]
        } else {
            &[]
        };
        let url = self.http.url(&[db, "_all_docs"], query);
        let body = json!({ "keys": ids });
        let reply = self
            .http
            .send_json(Method::POST, &url, &body, Idempotency::Safe)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(vec![Value::Null; ids.len()]);
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        match reply.json()?.get_mut("rows").map(Value::take) {
            Some(Value::Array(rows)) if rows.len() == ids.len() => Ok(rows),
            _ => Err(protocol("_all_docs with keys", &reply)),
        }
    }

    /// Each id's winning revision as `_bulk_get` answers it (`{"ok": doc}`, a tombstone for a
    /// deleted document, or `{"error": ...}`), in input order; `Null`s when the database
    /// does not exist. One request, whatever the number of ids (four times the rate of
    /// `_all_docs` with `keys` and `include_docs` on CouchDB 3.5).
    pub(super) async fn bulk_get_winners(&self, db: &str, ids: &[&str]) -> Result<Vec<Value>> {
        let Some(answers) = self.bulk_get_leaves(db, ids, &[]).await? else {
            return Ok(vec![Value::Null; ids.len()]);
        };
        Ok(answers
            .into_iter()
            .map(|mut docs| {
                if docs.is_empty() {
                    Value::Null
                } else {
                    docs.swap_remove(0)
                }
            })
            .collect())
    }

    /// `POST /db/_bulk_get` for `ids` without revisions: for each id in input order, every
    /// leaf CouchDB answers (`{"ok": doc}` or `{"error": ...}`), the winner first; `None`
    /// when the database does not exist.
    pub(super) async fn bulk_get_leaves(
        &self,
        db: &str,
        ids: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Option<Vec<Vec<Value>>>> {
        let docs: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
        let url = self.http.url(&[db, "_bulk_get"], query);
        let reply = self
            .http
            .send_json(
                Method::POST,
                &url,
                &json!({ "docs": docs }),
                Idempotency::Safe,
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let mut answer = reply.json()?;
        let Some(Value::Array(results)) = answer.get_mut("results").map(Value::take) else {
            return Err(protocol("_bulk_get", &reply));
        };
        if results.len() != ids.len() {
            return Err(protocol("_bulk_get", &reply));
        }
        Ok(Some(
            results
                .into_iter()
                .map(|mut r| match r.get_mut("docs").map(Value::take) {
                    Some(Value::Array(docs)) => docs,
                    _ => Vec::new(),
                })
                .collect(),
        ))
    }

    /// The current revisions of `ids`, live or deleted, in one request.
    pub(super) async fn lookup(&self, db: &str, ids: &[&str]) -> Result<Vec<Current>> {
        let rows = self.rows_for_keys(db, ids, false).await?;
        Ok(rows
            .iter()
            .map(|row| match rev_of(&row["value"]["rev"]) {
                None => Current::Missing,
                Some(rev) if row["value"]["deleted"] == json!(true) => Current::Deleted(rev),
                Some(rev) => Current::Live(rev),
            })
            .collect())
    }

    /// One `_bulk_docs` request; the per-document outcomes in order.
    pub(super) async fn bulk_docs(&self, db: &str, docs: &[Vec<u8>]) -> Result<Vec<Result<Rev>>> {
        let mut body = Vec::with_capacity(docs.iter().map(Vec::len).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"docs\":[");
        for (i, doc) in docs.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(doc);
        }
        body.extend_from_slice(b"]}");
        let url = self.http.url(&[db, "_bulk_docs"], &[]);
        let reply = self.write(db, Method::POST, &url, body).await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let value = reply.json()?;
        let rows = value
            .as_array()
            .filter(|rows| rows.len() == docs.len())
            .ok_or_else(|| protocol("_bulk_docs", &reply))?;
        let outcomes = Self::bulk_outcomes(db, rows);
        if reply.status != StatusCode::ACCEPTED {
            return Ok(outcomes);
        }
        // Some document was not taken by every copy of a cluster (which one, the answer does
        // not say): every written one is settled (see `quorum.rs`).
        let accepted: Vec<Accepted<'_>> = rows
            .iter()
            .zip(&outcomes)
            .filter_map(|(row, outcome)| {
                let rev = *outcome.as_ref().ok()?;
                Some(Accepted {
                    id: row["id"].as_str()?,
                    rev,
                })
            })
            .collect();
        let mut settled = self.settle_accepted(db, &accepted).await.into_iter();
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(rev) => settled.next().unwrap_or(Ok(rev)),
                failed => failed,
            })
            .collect())
    }

    /// The per-document outcomes of a `_bulk_docs` answer's rows.
    fn bulk_outcomes(db: &str, rows: &[Value]) -> Vec<Result<Rev>> {
        rows.iter()
            .map(|row| {
                let id = row["id"].as_str().unwrap_or("");
                if let Some(rev) = rev_of(&row["rev"]).filter(|_| row.get("error").is_none()) {
                    return Ok(rev);
                }
                let error = row["error"].as_str().unwrap_or("unknown");
                let reason = row["reason"].as_str().unwrap_or("");
                Err(match error {
                    "conflict" => Error::conflict(db, id),
                    "forbidden" | "unauthorized" => Error::Unauthorized {
                        reason: format!("CouchDB refused {id:?} in {db:?}: {reason}"),
                    },
                    _ => Error::invalid_document(db, Some(id), format!("{error}: {reason}")),
                })
            })
            .collect()
    }

    /// A `_bulk_docs` whose answer was lost, settled per document as `settle_put` settles a
    /// `PUT` (see there): each revision CouchDB would assign is computed and looked for with
    /// one `_revs_diff`; held ones are acknowledged, the rest sent once more in one
    /// `_bulk_docs`. A document whose revision is not computed here (a deletion,
    /// attachments), or created without `_rev` and now existing under another revision,
    /// gets the original `Unavailable`; so does every document if the server stays away.
    async fn settle_bulk(&self, db: &str, sent: &[Sent<'_>], lost: &Error) -> Vec<Result<Rev>> {
        let unknown = || {
            Err(Error::Unavailable {
                reason: lost.to_string(),
            })
        };
        let expected: Vec<Option<Rev>> = sent
            .iter()
            .map(|s| {
                let computable = !s.body.keys().any(|k| k.starts_with('_'));
                computable.then(|| Rev::compute(s.parent, false, s.body))
            })
            .collect();
        let asked: Vec<(String, Vec<Rev>)> = sent
            .iter()
            .zip(&expected)
            .filter_map(|(s, e)| e.map(|rev| (s.id.to_owned(), vec![rev])))
            .collect();
        let Ok(diff) = self.revs_diff(db, &asked).await else {
            return sent.iter().map(|_| unknown()).collect();
        };
        let mut diff = diff.into_iter();
        let mut outcomes: Vec<Result<Rev>> = Vec::with_capacity(sent.len());
        let mut resend: Vec<usize> = Vec::new();
        let mut new_docs: Vec<usize> = Vec::new();
        for (i, rev) in expected.iter().enumerate() {
            match rev {
                None => outcomes.push(unknown()),
                Some(rev) => {
                    let held = diff.next().is_some_and(|d| d.missing.is_empty());
                    if held {
                        self.revs.put(db, sent[i].id, *rev);
                        outcomes.push(Ok(*rev));
                    } else {
                        outcomes.push(unknown());
                        resend.push(i);
                        if sent[i].parent.is_none() {
                            new_docs.push(i);
                        }
                    }
                }
            }
        }
        // A new document now live under another revision: applied or not, nobody can tell.
        if !new_docs.is_empty() {
            let ids: Vec<&str> = new_docs.iter().map(|i| sent[*i].id).collect();
            match self.lookup(db, &ids).await {
                Ok(current) => {
                    for (i, c) in new_docs.iter().zip(current) {
                        if c.live().is_some() {
                            resend.retain(|r| r != i);
                        }
                    }
                }
                Err(_) => resend.retain(|r| !new_docs.contains(r)),
            }
        }
        if resend.is_empty() {
            return outcomes;
        }
        tracing::warn!(
            db,
            count = resend.len(),
            "bulk writes whose answer was lost were not applied; sending them again"
        );
        let again: Vec<Vec<u8>> = resend.iter().map(|i| sent[*i].json.clone()).collect();
        if let Ok(results) = self.bulk_docs(db, &again).await {
            for (i, result) in resend.into_iter().zip(results) {
                if let Ok(rev) = &result {
                    self.revs.put(db, sent[i].id, *rev);
                }
                outcomes[i] = result;
            }
        }
        outcomes
    }

    pub(super) async fn get_many(&self, db: &str, ids: &[String]) -> Result<Vec<Result<Document>>> {
        validate::database_name(db)?;
        let mut results: Vec<Option<Result<Document>>> = ids
            .iter()
            .map(|id| validate::document_id(db, id).err().map(Err))
            .collect();
        let wanted: Vec<&str> = ids
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        if !wanted.is_empty() {
            let mut answers = self.bulk_get_winners(db, &wanted).await?.into_iter();
            for (slot, id) in results.iter_mut().zip(ids) {
                if slot.is_some() {
                    continue;
                }
                let answer = answers.next().unwrap_or(Value::Null);
                *slot = Some(match answer {
                    Value::Object(mut found) => match found.remove("ok") {
                        Some(doc) if doc["_deleted"] == json!(true) => {
                            Err(Error::doc_not_found(db, id, "deleted"))
                        }
                        Some(doc) => match document_from(doc) {
                            Some((doc, rev)) => {
                                self.revs.put(db, id, rev);
                                Ok(doc)
                            }
                            None => Err(Error::Protocol {
                                reason: format!("_bulk_get returned an unreadable {id:?}"),
                            }),
                        },
                        None => {
                            let error = &found["error"];
                            match error["error"].as_str() {
                                Some("not_found") => Err(Error::doc_not_found(
                                    db,
                                    id,
                                    error["reason"].as_str().unwrap_or("missing"),
                                )),
                                _ => Err(Error::Protocol {
                                    reason: format!("_bulk_get answered {error} for {id:?}"),
                                }),
                            }
                        }
                    },
                    // The database does not exist.
                    _ => Err(Error::doc_not_found(db, id, "missing")),
                });
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a bulk read lost a result"))))
            .collect())
    }

    pub(super) async fn save_many(
        &self,
        db: &str,
        docs: Vec<Document>,
    ) -> Result<Vec<Result<WriteResult>>> {
        validate::database_name(db)?;
        struct Pending {
            slot: usize,
            id: String,
            req: SaveRequest,
            /// For a rev-less save: the revision a lookup found (`Some(None)`: none).
            looked_up: Option<Option<Rev>>,
        }
        let mut results: Vec<Option<Result<WriteResult>>> = Vec::with_capacity(docs.len());
        let mut queue = Vec::new();
        for (slot, doc) in docs.into_iter().enumerate() {
            let checked = SaveRequest::for_bulk(db, doc).and_then(|(id, req)| {
                let atts = req.body.get(crate::attachment::ATTACHMENTS);
                crate::attachment::check_inputs(db, &id, atts)?;
                Ok((id, req))
            });
            match checked {
                Ok((id, mut req)) => {
                    if req.deleted {
                        req.body.insert("_deleted".into(), Value::Bool(true));
                    }
                    queue.push(Pending {
                        slot,
                        id,
                        req,
                        looked_up: None,
                    });
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        // Rev-less saves of documents seen before go on their winners, looked up first (one
        // request for all of them); a remembered revision is never written on.
        let seen_before: Vec<usize> = (0..queue.len())
            .filter(|i| {
                queue[*i].req.expected.is_none() && self.revs.get(db, &queue[*i].id).is_some()
            })
            .collect();
        if !seen_before.is_empty() {
            let ids: Vec<&str> = seen_before.iter().map(|i| queue[*i].id.as_str()).collect();
            let current = self.lookup(db, &ids).await?;
            for (i, c) in seen_before.into_iter().zip(current) {
                queue[i].looked_up = Some(c.live());
            }
        }
        // Each round sends at most one write per id (a repeated id waits for the next round,
        // so repeats apply in input order); rev-less saves that conflict are looked up and
        // sent again, up to UPSERT_ATTEMPTS rounds of lookups.
        let mut lookups = 0;
        while !queue.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (round, mut deferred): (Vec<Pending>, Vec<Pending>) =
                queue.into_iter().partition(|p| seen.insert(p.id.clone()));
            let revs: Vec<Option<Rev>> = round
                .iter()
                .map(|p| p.req.expected.or_else(|| p.looked_up.flatten()))
                .collect();
            let bodies = round
                .iter()
                .zip(&revs)
                .map(|(p, rev)| doc_json(Some(&p.id), rev.as_ref(), &p.req.body))
                .collect::<Result<Vec<_>>>()?;
            let outcomes = match self.bulk_docs(db, &bodies).await {
                Ok(outcomes) => outcomes,
                // The answer was lost; each write may or may not have been applied.
                Err(lost) if lost.is_retryable() => {
                    let sent: Vec<Sent<'_>> = round
                        .iter()
                        .zip(&revs)
                        .zip(&bodies)
                        .map(|((p, rev), json)| Sent {
                            id: &p.id,
                            parent: rev.as_ref(),
                            body: &p.req.body,
                            json,
                        })
                        .collect();
                    self.settle_bulk(db, &sent, &lost).await
                }
                Err(e) => return Err(e),
            };
            let mut retry = Vec::new();
            for (mut p, outcome) in round.into_iter().zip(outcomes) {
                match outcome {
                    Ok(rev) => {
                        self.revs.put(db, &p.id, rev);
                        results[p.slot] = Some(Ok(WriteResult { id: p.id, rev }));
                    }
                    // Rev-less saves are upserts: fetch the current revision and go again.
                    Err(e) if e.is_conflict() && p.req.expected.is_none() => {
                        p.looked_up = None;
                        retry.push(p);
                    }
                    Err(e) => results[p.slot] = Some(Err(e)),
                }
            }
            if !retry.is_empty() {
                lookups += 1;
                if lookups > UPSERT_ATTEMPTS {
                    for p in retry.drain(..) {
                        results[p.slot] = Some(Err(Error::conflict(db, &p.id)));
                    }
                } else {
                    if lookups > 1 {
                        tokio::time::sleep(backoff(lookups)).await;
                    }
                    let ids: Vec<&str> = retry.iter().map(|p| p.id.as_str()).collect();
                    let current = self.lookup(db, &ids).await?;
                    for (p, c) in retry.iter_mut().zip(current) {
                        p.looked_up = Some(c.live());
                    }
                }
            }
            retry.append(&mut deferred);
            retry.sort_by_key(|p| p.slot);
            queue = retry;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a bulk save lost a result"))))
            .collect())
    }

    pub(super) async fn delete_many(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Result<WriteResult>>> {
        validate::database_name(db)?;
        let mut results: Vec<Option<Result<WriteResult>>> = ids
            .iter()
            .map(|id| validate::document_id(db, id).err().map(Err))
            .collect();
        let mut queue: Vec<usize> = (0..ids.len()).filter(|&i| results[i].is_none()).collect();
        // Each round: one revision lookup and one `_bulk_docs` for at most one delete per id
        // (a repeated id waits for the next round, where it finds the document deleted).
        // Deletes that lose a race are looked up again, up to UPSERT_ATTEMPTS times.
        let mut conflict_rounds = 0;
        while !queue.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (round, deferred): (Vec<usize>, Vec<usize>) = queue
                .into_iter()
                .partition(|&i| seen.insert(ids[i].as_str()));
            let wanted: Vec<&str> = round.iter().map(|&i| ids[i].as_str()).collect();
            let current = self.lookup(db, &wanted).await?;
            let mut live = Vec::new();
            let mut bodies = Vec::new();
            for (&i, c) in round.iter().zip(current) {
                match c {
                    Current::Live(rev) => {
                        let id = Value::String(ids[i].clone());
                        let body = format!("{{\"_id\":{id},\"_rev\":\"{rev}\",\"_deleted\":true}}");
                        bodies.push(body.into_bytes());
                        live.push(i);
                    }
                    Current::Deleted(_) => {
                        results[i] = Some(Err(Error::doc_not_found(db, &ids[i], "deleted")))
                    }
                    Current::Missing => {
                        results[i] = Some(Err(Error::doc_not_found(db, &ids[i], "missing")))
                    }
                }
            }
            let outcomes = if live.is_empty() {
                Vec::new()
            } else {
                self.bulk_docs(db, &bodies).await?
            };
            let mut next = deferred;
            let mut conflicted = false;
            for (i, outcome) in live.into_iter().zip(outcomes) {
                match outcome {
                    Ok(rev) => {
                        self.revs.forget(db, &ids[i]);
                        results[i] = Some(Ok(WriteResult {
                            id: ids[i].clone(),
                            rev,
                        }));
                    }
                    Err(e) if e.is_conflict() && conflict_rounds < UPSERT_ATTEMPTS => {
                        conflicted = true;
                        next.push(i);
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            if conflicted {
                conflict_rounds += 1;
                tokio::time::sleep(backoff(conflict_rounds)).await;
            }
            next.sort_unstable();
            queue = next;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::storage("a bulk delete lost a result"))))
            .collect())
    }
}

/// One document of a `_bulk_docs` whose answer was lost, as it was sent.
struct Sent<'a> {
    id: &'a str,
    /// The revision it was written on (`None`: as a new document).
    parent: Option<&'a Rev>,
    /// Its body without `_id`/`_rev`.
    body: &'a serde_json::Map<String, Value>,
    /// The JSON sent.
    json: &'a Vec<u8>,
}
