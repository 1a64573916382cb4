//! Queries on CouchDB: `find` as paged `_find` requests, and `ensure_index` as `_index`.

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Idempotency, Target, status_error};
use super::{CouchDbProvider, protocol};
use crate::{
    Document, Error, FindQuery, IndexDefinition, IndexStatus, NO_INDEX_FOR_SORT, Result, validate,
};

/// Documents asked for per `_find` request.
const FIND_PAGE: usize = 1000;

/// How long `ensure_index` waits for CouchDB to list a new index before giving up.
const INDEX_VISIBLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

impl CouchDbProvider {
    pub(super) async fn find(&self, db: &str, query: &FindQuery) -> Result<Vec<Document>> {
        validate::database_name(db)?;
        // Refused here as CouchDB would, before any request.
        query.direction()?;
        let url = self.http.url(&[db, "_find"], &[]);
        let target = Target { db, id: None };
        let mut out = Vec::new();
        let mut remaining = query.limit_value();
        let mut skip = query.skip_value();
        let mut bookmark: Option<String> = None;
        loop {
            // The first request is sent even for `limit: 0`: it still checks the database
            // and the query.
            let page = remaining.map_or(FIND_PAGE, |r| r.min(FIND_PAGE));
            let body = query.couchdb_body(page, skip, bookmark.as_deref());
            let reply = self
                .http
                .send_json(Method::POST, &url, &body, Idempotency::Safe)
                .await?;
            if !reply.status.is_success() {
                let (error, reason) = reply.error_and_reason();
                return Err(match reply.status.as_u16() {
                    400 if error == "no_usable_index" => Error::InvalidQuery {
                        reason: NO_INDEX_FOR_SORT.into(),
                    },
                    400 => Error::InvalidQuery {
                        reason: format!("CouchDB refused the query ({error}: {reason})"),
                    },
                    _ => status_error(&reply, target),
                });
            }
            let mut answer = reply.json()?;
            let Some(Value::Array(docs)) = answer.get_mut("docs").map(Value::take) else {
                return Err(protocol("_find", &reply));
            };
            let fetched = docs.len();
            for value in docs {
                let Value::Object(map) = value else {
                    return Err(protocol("_find", &reply));
                };
                let doc = Document::from(map);
                if doc.id().is_some_and(|id| id.starts_with("_design/")) {
                    continue;
                }
                if let (Some(id), Some(rev)) = (doc.id(), doc.rev().and_then(|r| r.parse().ok())) {
                    self.revs.put(db, id, rev);
                }
                out.push(doc);
            }
            remaining = remaining.map(|r| r - fetched.min(r));
            if fetched < page || remaining == Some(0) {
                return Ok(out);
            }
            match answer.get("bookmark").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && next != "nil" => {
                    bookmark = Some(next.to_owned());
                    skip = 0;
                }
                _ if bookmark.is_none() => skip += fetched,
                // A bookmark stopped coming: paging on by skip would repeat or lose rows.
                _ => return Err(protocol("_find (a page came without a bookmark)", &reply)),
            }
        }
    }

    pub(super) async fn ensure_index(
        &self,
        db: &str,
        fields: &[&str],
        name: &str,
    ) -> Result<IndexStatus> {
        validate::database_name(db)?;
        let index = IndexDefinition::new(name, fields)?;
        let mut body = json!({
            "index": {"fields": index.fields},
            "name": index.name,
            "ddoc": index.name,
            "type": "json",
        });
        // Mango takes the design document's write quorum from the body (default 2), not
        // from the query string `write` adds it to.
        if let Some(w) = self.write_quorum(db).await? {
            body["w"] = json!(w);
        }
        let bytes = serde_json::to_vec(&body).map_err(Error::storage)?;
        let url = self.http.url(&[db, "_index"], &[]);
        let reply = self.write(db, Method::POST, &url, bytes).await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let status = match reply.json()?["result"].as_str() {
            Some("created") => IndexStatus::Created,
            Some("exists") => IndexStatus::Exists,
            _ => return Err(protocol("_index", &reply)),
        };
        self.await_index_listed(db, &index).await?;
        Ok(status)
    }

    /// Waits until CouchDB's own index list shows `index` with its fields on every node
    /// that answers. Mango keeps that list in a per-node cache (`ddoc_cache`) refreshed after
    /// the design document is written, so a `_find` sent right after `_index` may not see the
    /// new index yet (measured on CouchDB 3.5 under load: a sort refused, or results in
    /// another index's order); on a cluster each node refreshes its own cache when its copy
    /// of the design document arrives, so a node other than the one that listed it may still
    /// answer from the old definition. `GET _index` reads the same cache as `_find`, so once
    /// every node lists the index, a `_find` on any of them uses it. A node that cannot be
    /// reached is not waited for (it serves no `_find` either), but one node must list it.
    async fn await_index_listed(&self, db: &str, index: &IndexDefinition) -> Result<()> {
        let url = self.http.url(&[db, "_index"], &[]);
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(2);
        let lists_it = |answer: &Value| {
            answer["indexes"].as_array().is_some_and(|indexes| {
                indexes.iter().any(|i| {
                    i["name"] == json!(index.name)
                        && i["def"]["fields"].as_array().is_some_and(|fields| {
                            fields.len() == index.fields.len()
                                && fields.iter().zip(&index.fields).all(|(f, want)| {
                                    f.as_object().is_some_and(|f| f.contains_key(want))
                                })
                        })
                })
            })
        };
        loop {
            let (mut listing, mut lagging) = (0, 0);
            for answer in self.http.get_on_every_node(&url).await {
                match answer {
                    Ok(reply) if reply.status.is_success() => {
                        if lists_it(&reply.json()?) {
                            listing += 1;
                        } else {
                            lagging += 1;
                        }
                    }
                    Ok(reply) if reply.status.is_client_error() => {
                        return Err(status_error(&reply, Target { db, id: None }));
                    }
                    // A node that is down or failing: not waited for.
                    Ok(_) | Err(_) => {}
                }
            }
            if listing > 0 && lagging == 0 {
                return Ok(());
            }
            if started.elapsed() > INDEX_VISIBLE_WITHIN {
                return Err(Error::Unavailable {
                    reason: format!(
                        "CouchDB created index {:?} in database {db:?} but not every node \
                         listed it within {INDEX_VISIBLE_WITHIN:?}",
                        index.name
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(100));
        }
    }
}
