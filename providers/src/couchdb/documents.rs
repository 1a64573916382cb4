//! Single documents on CouchDB: get, save (optimistic or upsert through the revision cache),
//! delete, `.`/`..` ids through the bulk endpoints, and `_local` documents.

use reqwest::Method;
use serde_json::{Map, Value};

use super::http::{Idempotency, Target, status_error};
use super::quorum::{Accepted, with_write_quorum};
use super::{CouchDbProvider, Current, UPSERT_ATTEMPTS, doc_json, document_from, protocol, rev_of};
use crate::attachment;
use crate::service::backoff;
use crate::write::{SaveRequest, local_body, only};
use crate::{Document, Error, GetOptions, OpenRev, OpenRevs, Result, Rev, WriteResult, validate};

/// A path segment that URL parsers would resolve away (`.`/`..`): such ids go through the
/// bulk endpoints, where the id travels in the body.
fn is_dot_segment(id: &str) -> bool {
    id == "." || id == ".."
}

/// Reads that only `GET /db/id` answers cannot address the ids `.` and `..` (URL parsers
/// resolve such segments away, percent-encoded or not).
fn refuse_dot_segment(db: &str, id: &str) -> Result<()> {
    if is_dot_segment(id) {
        return Err(Error::InvalidDocumentId {
            db: db.into(),
            id: id.into(),
            reason: "CouchDB cannot address this id in a URL path, which this read needs (get \
                     and the bulk reads can)"
                .into(),
        });
    }
    Ok(())
}

/// A body as CouchDB takes it: a deletion carries `_deleted: true` next to its fields.
fn body_to_send(mut body: Map<String, Value>, deleted: bool) -> Map<String, Value> {
    if deleted {
        body.insert("_deleted".into(), Value::Bool(true));
    }
    body
}

/// Rounds of checking for, and resending, a write whose answer was lost (see `settle_put`).
const SETTLE_ROUNDS: usize = 3;

impl CouchDbProvider {
    /// PUT of one document; `Conflict` on 409.
    async fn put_doc(
        &self,
        db: &str,
        id: &str,
        rev: Option<&Rev>,
        body: &Map<String, Value>,
    ) -> Result<Rev> {
        let _turn = self.document_turn(db, id).await?;
        let url = self.http.url(&[db, id], &[]);
        let reply = match self
            .write(db, Method::PUT, &url, doc_json(None, rev, body)?)
            .await
        {
            Ok(reply) => reply,
            // The answer was lost; the write may or may not have been applied.
            Err(lost) if lost.is_retryable() => {
                return self.settle_put(db, id, rev, body, &url, lost).await;
            }
            Err(e) => return Err(e),
        };
        let written = self.put_outcome(db, id, &reply)?;
        if reply.status == reqwest::StatusCode::ACCEPTED {
            return self.settle_one_accepted(db, id, written).await;
        }
        Ok(written)
    }

    /// A single write answered `202 Accepted` on a cluster, settled (see `quorum.rs`).
    pub(super) async fn settle_one_accepted(&self, db: &str, id: &str, rev: Rev) -> Result<Rev> {
        let accepted = [Accepted { id, rev }];
        only(self.settle_accepted(db, &accepted).await)
    }

    /// A `PUT` whose answer was lost, settled without guessing: docstore computes the
    /// revision CouchDB assigns, so it asks the server (`_revs_diff`) whether it holds it.
    /// Held: the write was applied, and is acknowledged. Not held: the write is sent once
    /// more, which is safe because a late copy of the first one could only meet a conflict
    /// (it names the same parent, or no parent for a document that now exists), never add a
    /// second revision. Left as the original `Unavailable`: a body whose revision is not
    /// computed here (a deletion, attachments), a document created without `_rev` that now
    /// exists under another revision, or a server still unreachable.
    async fn settle_put(
        &self,
        db: &str,
        id: &str,
        rev: Option<&Rev>,
        body: &Map<String, Value>,
        url: &str,
        lost: Error,
    ) -> Result<Rev> {
        if body.keys().any(|k| k.starts_with('_')) {
            return Err(lost);
        }
        let expected = Rev::compute(rev, false, body);
        let asked = [(id.to_owned(), vec![expected])];
        let mut lost = lost;
        // Each round: is it there? If not, send it again (another node, round-robin). A
        // resend whose answer is lost too is settled the same way, a few times.
        for _ in 0..SETTLE_ROUNDS {
            let Ok(diff) = self.revs_diff(db, &asked).await else {
                return Err(lost);
            };
            if diff.first().is_some_and(|d| d.missing.is_empty()) {
                tracing::info!(db, id, rev = %expected, "a write whose answer was lost was applied");
                self.revs.put(db, id, expected);
                return Ok(expected);
            }
            if rev.is_none() {
                match self.lookup(db, &[id]).await {
                    Ok(current) if current.first().and_then(|c| c.live()).is_none() => {}
                    _ => return Err(lost),
                }
            }
            tracing::warn!(
                db,
                id,
                "a write whose answer was lost was not applied; sending it again"
            );
            match self
                .write(db, Method::PUT, url, doc_json(None, rev, body)?)
                .await
            {
                Ok(reply) => return self.put_outcome(db, id, &reply),
                Err(again) if again.is_retryable() => lost = again,
                Err(e) => return Err(e),
            }
        }
        Err(lost)
    }

    /// The revision a `PUT`'s answer gives, or its error.
    fn put_outcome(&self, db: &str, id: &str, reply: &super::http::Reply) -> Result<Rev> {
        let target = Target { db, id: Some(id) };
        match reply.status.as_u16() {
            200..=202 => {
                let rev = rev_of(&reply.json()?["rev"]).ok_or_else(|| protocol("a save", reply))?;
                self.revs.put(db, id, rev);
                Ok(rev)
            }
            _ => Err(status_error(reply, target)),
        }
    }

    /// The revision a rev-less write should go on top of: live → its rev; else none. One
    /// `HEAD /db/id`, whose `ETag` is the winning revision (a deleted or missing document,
    /// or a missing database, answers 404: none, and the write creates what is missing).
    /// A `HEAD` reads one document's header from its shard, where `_all_docs` with `keys`
    /// asks every shard; the ids `.` and `..`, which a URL cannot address, and an answer
    /// without a revision `ETag` (a proxy that strips it) use the latter.
    async fn current_live(&self, db: &str, id: &str) -> Result<Option<Rev>> {
        if !is_dot_segment(id) {
            let url = self.http.url(&[db, id], &[]);
            let reply = self
                .http
                .send(Method::HEAD, &url, None, Idempotency::Safe)
                .await?;
            match reply.status.as_u16() {
                200 => {
                    let etag = reply
                        .headers
                        .get(reqwest::header::ETAG)
                        .and_then(|etag| etag.to_str().ok())
                        .and_then(|etag| etag.trim_matches('"').parse::<Rev>().ok());
                    if etag.is_some() {
                        return Ok(etag);
                    }
                    // Something between us and CouchDB dropped or rewrote the ETag.
                }
                404 => return Ok(None),
                _ => return Err(status_error(&reply, Target { db, id: Some(id) })),
            }
        }
        Ok(self.lookup(db, &[id]).await?[0].live())
    }

    async fn upsert(&self, db: &str, id: &str, body: &Map<String, Value>) -> Result<Rev> {
        let _turn = self.rev_less.take((db.to_owned(), id.to_owned())).await;
        // A document seen before is looked up first; an unseen one is tried as new.
        let mut rev = match self.revs.get(db, id) {
            Some(_) => self.current_live(db, id).await?,
            None => None,
        };
        for attempt in 0..UPSERT_ATTEMPTS {
            match self.put_doc(db, id, rev.as_ref(), body).await {
                Err(e) if e.is_conflict() => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    rev = self.current_live(db, id).await?;
                }
                other => return other,
            }
        }
        Err(Error::conflict(db, id))
    }

    async fn delete_at(&self, db: &str, id: &str, rev: &Rev) -> Result<Rev> {
        let _turn = self.document_turn(db, id).await?;
        let rev_text = rev.to_string();
        let mut url = self.http.url(&[db, id], &[("rev", &rev_text)]);
        if let Some(w) = self.write_quorum(db).await? {
            url = with_write_quorum(&url, w);
        }
        let reply = self
            .http
            .send(Method::DELETE, &url, None, Idempotency::Unsafe)
            .await?;
        match reply.status.as_u16() {
            200..=202 => {
                self.revs.forget(db, id);
                let deleted =
                    rev_of(&reply.json()?["rev"]).ok_or_else(|| protocol("a delete", &reply))?;
                if reply.status == reqwest::StatusCode::ACCEPTED {
                    return self.settle_one_accepted(db, id, deleted).await;
                }
                Ok(deleted)
            }
            _ => Err(status_error(&reply, Target { db, id: Some(id) })),
        }
    }

    pub(super) async fn get(&self, db: &str, id: &str) -> Result<Document> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        if is_dot_segment(id) {
            return only(self.get_many(db, &[id.to_owned()]).await?);
        }
        let url = self.http.url(&[db, id], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: Some(id) }));
        }
        let (doc, rev) = document_from(reply.json()?).ok_or_else(|| protocol("a get", &reply))?;
        self.revs.put(db, id, rev);
        Ok(doc)
    }

    pub(super) async fn save(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        validate::database_name(db)?;
        let req = SaveRequest::new(db, id, doc)?;
        attachment::check_inputs(db, id, req.body.get(attachment::ATTACHMENTS))?;
        let body = body_to_send(req.body, req.deleted);
        if is_dot_segment(id) {
            let mut doc = Document::from(body);
            doc.insert("_id", id);
            if let Some(rev) = req.expected {
                doc.set_rev(&rev);
            }
            return only(self.save_many(db, vec![doc]).await?);
        }
        let rev = match req.expected {
            Some(expected) => self.put_doc(db, id, Some(&expected), &body).await?,
            None => self.upsert(db, id, &body).await?,
        };
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    /// `PUT` without `_rev`: CouchDB creates, re-creates a deleted document, or answers 409.
    pub(super) async fn create(&self, db: &str, id: &str, doc: Document) -> Result<WriteResult> {
        validate::database_name(db)?;
        let req = SaveRequest::for_create(db, id, doc)?;
        attachment::check_inputs(db, id, req.body.get(attachment::ATTACHMENTS))?;
        let body = body_to_send(req.body, req.deleted);
        let rev = if is_dot_segment(id) {
            // One `_bulk_docs` entry without `_rev`: created, or a conflict, as a PUT would.
            only(
                self.bulk_docs(db, &[doc_json(Some(id), None, &body)?])
                    .await?,
            )?
        } else {
            self.put_doc(db, id, None, &body).await?
        };
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    /// `GET /db/id` with CouchDB's query parameters, the answer kept as CouchDB writes it.
    pub(super) async fn get_with(
        &self,
        db: &str,
        id: &str,
        options: &GetOptions,
    ) -> Result<Document> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        refuse_dot_segment(db, id)?;
        let rev = options.rev.map(|r| r.to_string());
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(rev) = &rev {
            query.push(("rev", rev));
        }
        for (set, name) in [
            (options.conflicts, "conflicts"),
            (options.deleted_conflicts, "deleted_conflicts"),
            (options.revs, "revs"),
            (options.revs_info, "revs_info"),
            (options.attachments, "attachments"),
            (options.att_encoding_info, "att_encoding_info"),
        ] {
            if set {
                query.push((name, "true"));
            }
        }
        let url = self.http.url(&[db, id], &query);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: Some(id) }));
        }
        match reply.json()? {
            Value::Object(map) => Ok(Document::from(map)),
            _ => Err(protocol("a get", &reply)),
        }
    }

    /// `GET /db/id?open_revs=...` (JSON), the answers kept in CouchDB's order.
    pub(super) async fn open_revs(
        &self,
        db: &str,
        id: &str,
        which: &OpenRevs,
        revs: bool,
    ) -> Result<Vec<OpenRev>> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        refuse_dot_segment(db, id)?;
        let list = match which {
            OpenRevs::All => "all".to_owned(),
            OpenRevs::Revs { revs, .. } => {
                let texts: Vec<String> = revs.iter().map(Rev::to_string).collect();
                serde_json::to_string(&texts).map_err(Error::storage)?
            }
        };
        let mut query: Vec<(&str, &str)> = vec![("open_revs", &list)];
        if matches!(which, OpenRevs::Revs { latest: true, .. }) {
            query.push(("latest", "true"));
        }
        if revs {
            query.push(("revs", "true"));
        }
        let url = self.http.url(&[db, id], &query);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: Some(id) }));
        }
        let Value::Array(items) = reply.json()? else {
            return Err(protocol("open_revs", &reply));
        };
        items
            .into_iter()
            .map(|mut item| {
                if let Some(Value::Object(doc)) = item.get_mut("ok").map(Value::take) {
                    return Ok(OpenRev::Found(Document::from(doc)));
                }
                item.get("missing")
                    .and_then(rev_of)
                    .map(OpenRev::Missing)
                    .ok_or_else(|| protocol("open_revs", &reply))
            })
            .collect()
    }

    pub(super) async fn delete(&self, db: &str, id: &str) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        if is_dot_segment(id) {
            return only(self.delete_many(db, &[id.to_owned()]).await?);
        }
        let _turn = self.rev_less.take((db.to_owned(), id.to_owned())).await;
        for attempt in 0..UPSERT_ATTEMPTS {
            // The winner, looked up now: a remembered revision may have become a losing leaf.
            let rev = match self.lookup(db, &[id]).await?[0] {
                Current::Live(rev) => rev,
                Current::Deleted(_) => return Err(Error::doc_not_found(db, id, "deleted")),
                Current::Missing => return Err(Error::doc_not_found(db, id, "missing")),
            };
            match self.delete_at(db, id, &rev).await {
                Ok(rev) => {
                    return Ok(WriteResult {
                        id: id.to_owned(),
                        rev,
                    });
                }
                // Another writer got in between: look the winner up again.
                Err(e) if e.is_conflict() => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(db, id))
    }

    pub(super) async fn delete_rev(&self, db: &str, id: &str, rev: &Rev) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        let rev = if is_dot_segment(id) {
            let doc = format!(
                "{{\"_id\":{},\"_rev\":\"{rev}\",\"_deleted\":true}}",
                Value::String(id.to_owned())
            );
            only(self.bulk_docs(db, &[doc.into_bytes()]).await?)?
        } else {
            self.delete_at(db, id, rev).await?
        };
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    pub(super) async fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        validate::database_name(db)?;
        validate::local_id(db, id)?;
        let local_id = format!("_local/{id}");
        let url = self.http.url(&[db, "_local", id], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(
                &reply,
                Target {
                    db,
                    id: Some(&local_id),
                },
            ));
        }
        let Value::Object(mut map) = reply.json()? else {
            return Err(protocol("a _local document", &reply));
        };
        map.shift_remove("_id");
        if let Some(Value::String(rev)) = map.shift_remove("_rev") {
            self.local_revs.put(db, id, rev);
        }
        Ok(Document::from(map))
    }

    pub(super) async fn put_local(&self, db: &str, id: &str, doc: Document) -> Result<()> {
        validate::database_name(db)?;
        let body = local_body(db, id, &doc)?;
        let local_id = format!("_local/{id}");
        let _turn = self.rev_less.take((db.to_owned(), local_id.clone())).await;
        let url = self.http.url(&[db, "_local", id], &[]);
        // _local documents carry a revision too ("0-N"): the last one seen is tried first;
        // on 409, it is fetched and the write sent again.
        let mut rev: Option<String> = self.local_revs.get(db, id);
        for attempt in 0..UPSERT_ATTEMPTS {
            let mut json = body.clone();
            if let Some(rev) = &rev {
                json.insert("_rev".into(), Value::String(rev.clone()));
            }
            let bytes = serde_json::to_vec(&json).map_err(Error::storage)?;
            let reply = self.write(db, Method::PUT, &url, bytes).await?;
            let target = Target {
                db,
                id: Some(&local_id),
            };
            match reply.status.as_u16() {
                200..=202 => {
                    match reply.json()?["rev"].as_str() {
                        Some(rev) => self.local_revs.put(db, id, rev.to_owned()),
                        None => self.local_revs.forget(db, id),
                    }
                    return Ok(());
                }
                409 => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    let current = self
                        .http
                        .send(Method::GET, &url, None, Idempotency::Safe)
                        .await?;
                    rev = if current.status.is_success() {
                        current.json()?["_rev"].as_str().map(str::to_owned)
                    } else {
                        None
                    };
                }
                _ => return Err(status_error(&reply, target)),
            }
        }
        Err(Error::conflict(db, &local_id))
    }
}
