//! Reads of the embedded provider: one document, documents at exact revisions, listing pages
//! and `_local` documents, and the decoding of stored bodies.

use fjall::Readable;
use serde_json::{Map, Value};

use super::format::{self};
use super::store::Store;
use super::writes::map_halves;
use crate::write::revs_diff_of;
use crate::{Document, Error, Page, Result, Rev, RevisionedDoc, RevsDiff, validate};

impl Store {
    pub(super) fn get(&self, db: &str, db_id: u64, id: &str) -> Result<Document> {
        let value = self
            .docs
            .get(format::key(db_id, id.as_bytes()))
            .map_err(|e| self.err("reading a document", e))?
            .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
        let (header, body) = format::decode_record(&value)?;
        if header.leaf.deleted {
            return Err(Error::doc_not_found(db, id, "deleted"));
        }
        stored_document(id, &header.leaf.rev, body)
    }

    /// CouchDB's `_revs_diff` for each document, from one snapshot: see `revs_diff`.
    pub(super) fn revs_diff(
        &self,
        db: &str,
        asked: &[(String, Vec<Rev>)],
    ) -> Result<Vec<RevsDiff>> {
        let Some(meta) = self.meta(db)? else {
            return Ok(asked
                .iter()
                .map(|(_, revs)| revs_diff_of(None, revs))
                .collect());
        };
        let snapshot = self.db.snapshot();
        asked
            .iter()
            .map(|(id, revs)| {
                let value = snapshot
                    .get(&self.docs, format::key(meta.id, id.as_bytes()))
                    .map_err(|e| self.err("reading a document", e))?;
                Ok(match value {
                    None => revs_diff_of(None, revs),
                    Some(value) => {
                        let (header, _, history) = format::decode_record_with_history(&value)?;
                        let ancestors = format::decode_history(&header.leaf.rev, history);
                        revs_diff_of(Some((header.leaf.rev, &ancestors)), revs)
                    }
                })
            })
            .collect()
    }

    /// Documents at exactly the wanted revisions, from one snapshot: see `read_revisions`.
    pub(super) fn read_revisions(
        &self,
        db: &str,
        wanted: &[(String, Rev)],
    ) -> Result<Vec<Result<RevisionedDoc>>> {
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let snapshot = self.db.snapshot();
        let mut results = Vec::with_capacity(wanted.len());
        for (id, rev) in wanted {
            let read = validate::document_id(db, id).and_then(|()| {
                let value = snapshot
                    .get(&self.docs, format::key(meta.id, id.as_bytes()))
                    .map_err(|e| self.err("reading a document", e))?;
                let Some(value) = value else {
                    return Err(Error::doc_not_found(db, id, "missing"));
                };
                let (header, body, history) = format::decode_record_with_history(&value)?;
                if header.leaf.rev != *rev {
                    return Err(Error::doc_not_found(db, id, "missing"));
                }
                Ok(RevisionedDoc {
                    id: id.clone(),
                    rev: *rev,
                    deleted: header.leaf.deleted,
                    body: if header.leaf.deleted {
                        Map::new()
                    } else {
                        parse_body(body)?
                    },
                    history: format::decode_history(rev, history),
                })
            });
            results.push(read);
        }
        Ok(results)
    }

    pub(super) fn list_page(&self, db: &str, after: Option<&str>, limit: usize) -> Result<Page> {
        let Some(meta) = self.meta(db)? else {
            return Ok(Page {
                docs: Vec::new(),
                next: None,
            });
        };
        // The smallest key greater than `after` is `after` + 0x00.
        let start = match after {
            Some(a) => {
                let mut k = format::key(meta.id, a.as_bytes());
                k.push(0);
                k
            }
            None => format::key(meta.id, b""),
        };
        let end = format::end_of(meta.id);
        let snapshot = self.db.snapshot();
        // Records first (cheap: shared slices), then parsed, on both cores for a full page.
        let mut records = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for item in snapshot.range(&self.docs, start.as_slice()..end.as_slice()) {
            let (key, value) = item
                .into_inner()
                .map_err(|e| self.err("listing documents", e))?;
            let (header, _) = format::decode_record(&value)?;
            if header.leaf.deleted {
                continue;
            }
            if records.len() == limit {
                more = true;
                break;
            }
            records.push((key, value));
        }
        let docs = map_halves(records, |(key, value)| {
            let (header, body) = format::decode_record(&value)?;
            let id = std::str::from_utf8(&key[8..])
                .map_err(|_| format::corrupt("document id is not UTF-8"))?;
            stored_document(id, &header.leaf.rev, body)
        })
        .into_iter()
        .collect::<Result<Vec<Document>>>()?;
        let next = if more {
            docs.last().and_then(|d| d.id().map(str::to_owned))
        } else {
            None
        };
        Ok(Page { docs, next })
    }

    pub(super) fn get_local(&self, db: &str, id: &str) -> Result<Document> {
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let value = self
            .local
            .get(format::key(meta.id, id.as_bytes()))
            .map_err(|e| self.err("reading a local document", e))?
            .ok_or_else(|| Error::doc_not_found(db, &format!("_local/{id}"), "missing"))?;
        Ok(Document::from(parse_body(&value)?))
    }
}

fn stored_document(id: &str, rev: &Rev, json: &[u8]) -> Result<Document> {
    Document::from_stored_json(id, rev, json)
        .map_err(|e| format::corrupt(&format!("stored body of {id:?}: {e}")))
}

pub(super) fn parse_body(json: &[u8]) -> Result<Map<String, Value>> {
    serde_json::from_slice(json).map_err(|e| format::corrupt(&format!("stored body: {e}")))
}
