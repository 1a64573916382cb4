//! Listing pages (`_all_docs` with `include_docs`) and the changes feed (`_changes`) on
//! CouchDB, and sequence tokens.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::http::{Idempotency, Target, status_error};
use super::{CouchDbProvider, document_from, protocol, rev_of};
use crate::{Change, ChangesPage, Page, Result, Rev, validate};

impl CouchDbProvider {
    pub(super) async fn list_page(
        &self,
        db: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        validate::database_name(db)?;
        validate::limit(limit)?;
        let fetch = (limit + 1).to_string();
        // The smallest id greater than `after` is `after` + U+0000.
        let start = after.map(|a| Value::String(format!("{a}\u{0}")).to_string());
        let mut query = vec![("include_docs", "true"), ("limit", fetch.as_str())];
        if let Some(start) = &start {
            query.push(("startkey", start.as_str()));
        }
        let url = self.http.url(&[db, "_all_docs"], &query);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(Page {
                docs: Vec::new(),
                next: None,
            });
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let mut body = reply.json()?;
        let rows = match body.get_mut("rows").map(Value::take) {
            Some(Value::Array(rows)) => rows,
            _ => return Err(protocol("_all_docs", &reply)),
        };
        let full = rows.len() > limit;
        let last_row_id = rows
            .last()
            .and_then(|r| r["id"].as_str())
            .map(str::to_owned);
        let mut docs = Vec::with_capacity(rows.len());
        for mut row in rows {
            let id = row["id"].as_str().unwrap_or("");
            if id.starts_with("_design/") {
                continue;
            }
            let (doc, rev) = document_from(row["doc"].take())
                .ok_or_else(|| protocol("_all_docs with include_docs", &reply))?;
            self.revs.put(db, doc.id().unwrap_or(""), rev);
            docs.push(doc);
        }
        let next = if docs.len() > limit {
            docs.truncate(limit);
            docs.last().and_then(|d| d.id().map(str::to_owned))
        } else if full {
            last_row_id
        } else {
            None
        };
        Ok(Page { docs, next })
    }

    pub(super) async fn changes(
        &self,
        db: &str,
        since: Option<&str>,
        limit: usize,
    ) -> Result<ChangesPage> {
        validate::database_name(db)?;
        validate::limit(limit)?;
        let limit_text = limit.to_string();
        // Every leaf of each document, the winner first (CouchDB's `style=all_docs`).
        let mut query = vec![("limit", limit_text.as_str()), ("style", "all_docs")];
        if let Some(since) = since {
            query.push(("since", since));
        }
        let url = self.http.url(&[db, "_changes"], &query);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let body = reply.json()?;
        let rows = body["results"]
            .as_array()
            .ok_or_else(|| protocol("_changes", &reply))?;
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            match change_of(row) {
                Some(Some(change)) => results.push(change),
                Some(None) => {}
                None => return Err(protocol("_changes", &reply)),
            }
        }
        Ok(ChangesPage {
            results,
            last_seq: seq_text(&body["last_seq"]),
            pending: body["pending"].as_u64().unwrap_or(0),
        })
    }
}

/// A sequence token as text: CouchDB 3 sends strings, some servers numbers.
pub(super) fn seq_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The change a `_changes` row (`style=all_docs`) gives; `Some(None)` for a design document,
/// which the contract leaves out; `None` for a row that is not one.
pub(super) fn change_of(row: &Value) -> Option<Option<Change>> {
    let id = row["id"].as_str()?;
    if id.starts_with("_design/") {
        return Some(None);
    }
    // Every leaf of the document, the winner first.
    let mut leaves = row["changes"].as_array()?.iter().map(|c| rev_of(&c["rev"]));
    let rev = leaves.next()??;
    Some(Some(Change {
        seq: seq_text(&row["seq"]),
        id: id.to_owned(),
        rev,
        deleted: row["deleted"] == json!(true),
        other_leaves: leaves.collect::<Option<Vec<Rev>>>()?,
    }))
}
