//! Single documents on CouchDB: get, save (optimistic or upsert through the revision cache),
//! delete, `.`/`..` ids through the bulk endpoints, and `_local` documents.

use reqwest::Method;
use serde_json::{Map, Value};

use super::http::{Idempotency, Target, status_error};
use super::{CouchDbProvider, Current, UPSERT_ATTEMPTS, doc_json, document_from, protocol, rev_of};
use crate::service::backoff;
use crate::write::{SaveRequest, local_body, only};
use crate::{Document, Error, Result, Rev, WriteResult, validate};

/// A path segment that URL parsers would resolve away (`.`/`..`): such ids go through the
/// bulk endpoints, where the id travels in the body.
fn is_dot_segment(id: &str) -> bool {
    id == "." || id == ".."
}

impl CouchDbProvider {
    /// PUT of one document; `Conflict` on 409.
    async fn put_doc(
        &self,
        db: &str,
        id: &str,
        rev: Option<&Rev>,
        body: &Map<String, Value>,
    ) -> Result<Rev> {
        let url = self.http.url(&[db, id], &[]);
        let reply = self
            .write(db, Method::PUT, &url, doc_json(None, rev, body)?)
            .await?;
        let target = Target { db, id: Some(id) };
        match reply.status.as_u16() {
            200..=202 => {
                let rev =
                    rev_of(&reply.json()?["rev"]).ok_or_else(|| protocol("a save", &reply))?;
                self.revs.put(db, id, rev);
                Ok(rev)
            }
            _ => Err(status_error(&reply, target)),
        }
    }

    /// The revision a rev-less write should go on top of: live → its rev; else none.
    async fn current_live(&self, db: &str, id: &str) -> Result<Option<Rev>> {
        Ok(self.lookup(db, &[id]).await?[0].live())
    }

    async fn upsert(&self, db: &str, id: &str, body: &Map<String, Value>) -> Result<Rev> {
        let mut rev = self.revs.get(db, id);
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
        let rev_text = rev.to_string();
        let url = self.http.url(&[db, id], &[("rev", &rev_text)]);
        let reply = self
            .http
            .send(Method::DELETE, &url, None, Idempotency::Unsafe)
            .await?;
        match reply.status.as_u16() {
            200..=202 => {
                self.revs.forget(db, id);
                rev_of(&reply.json()?["rev"]).ok_or_else(|| protocol("a delete", &reply))
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
        if is_dot_segment(id) {
            let mut doc = Document::from(req.body);
            doc.insert("_id", id);
            if let Some(rev) = req.expected {
                doc.set_rev(&rev);
            }
            return only(self.save_many(db, vec![doc]).await?);
        }
        let rev = match req.expected {
            Some(expected) => self.put_doc(db, id, Some(&expected), &req.body).await?,
            None => self.upsert(db, id, &req.body).await?,
        };
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    pub(super) async fn delete(&self, db: &str, id: &str) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        if is_dot_segment(id) {
            return only(self.delete_many(db, &[id.to_owned()]).await?);
        }
        let mut known = self.revs.get(db, id);
        for attempt in 0..UPSERT_ATTEMPTS {
            let rev = match known {
                Some(rev) => rev,
                None => match self.lookup(db, &[id]).await?[0] {
                    Current::Live(rev) => rev,
                    Current::Deleted(_) => return Err(Error::doc_not_found(db, id, "deleted")),
                    Current::Missing => return Err(Error::doc_not_found(db, id, "missing")),
                },
            };
            match self.delete_at(db, id, &rev).await {
                Ok(rev) => {
                    return Ok(WriteResult {
                        id: id.to_owned(),
                        rev,
                    });
                }
                // A stale known revision: look the current one up and try again.
                Err(e) if e.is_conflict() || (e.is_not_found() && known.is_some()) => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    known = None;
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
            only(self.bulk_docs(db, vec![doc.into_bytes()]).await?)?
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
