//! Reads of the embedded provider: one document (its winner, or with `_conflicts` and the
//! rest), `open_revs`, documents at exact revisions, `_revs_diff`, listing pages and `_local`
//! documents, and the decoding of stored bodies. Tree reads take one snapshot, so a
//! record and the ancestors' bodies it points to in `revbodies` are read consistently.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use fjall::{Readable, Snapshot};
use serde_json::{Map, Value};

use super::format::{self, DecodedRecord};
use super::store::Store;
use crate::attachment;
use crate::parallel::map_on_every_core;
use crate::rev_tree::RevTree;
use crate::tree_read::{self, Bodies};
use crate::{
    Attachment, AttachmentRead, Document, Error, GetOptions, OpenRev, OpenRevs, Page, Result, Rev,
    RevisionedDoc, RevsDiff, validate,
};

/// The bodies of one document's revisions as a snapshot holds them: leaves' in its record,
/// ancestors' in `revbodies`.
struct SnapshotBodies<'a> {
    store: &'a Store,
    snapshot: &'a Snapshot,
    db_id: u64,
    id: &'a str,
    inline: &'a HashMap<Rev, &'a [u8]>,
}

impl Bodies for SnapshotBodies<'_> {
    fn body(&self, rev: &Rev) -> Result<Option<Arc<Map<String, Value>>>> {
        if let Some(json) = self.inline.get(rev) {
            return Ok(Some(Arc::new(parse_body(json)?)));
        }
        let stored = self
            .snapshot
            .get(
                &self.store.revbodies,
                format::body_key(self.db_id, self.id, rev),
            )
            .map_err(|e| self.store.err("reading a revision's body", e))?;
        stored
            .map(|json| parse_body(&json).map(Arc::new))
            .transpose()
    }

    fn attachment(&self, digest: &[u8; 16]) -> Result<Bytes> {
        let key = self.store.chunk_key(self.snapshot, self.db_id, digest)?;
        let prefix = format::attachment_prefix(self.db_id, &key);
        let mut out = Vec::new();
        let mut chunks = 0usize;
        for item in self.snapshot.prefix(&self.store.attachments, &prefix) {
            let chunk = item
                .value()
                .map_err(|e| self.store.err("reading an attachment", e))?;
            out.extend_from_slice(&chunk);
            chunks += 1;
        }
        if chunks == 0 {
            return Err(format::corrupt("an attachment's bytes are missing"));
        }
        Ok(Bytes::from(out))
    }
}

impl Store {
    pub(super) fn get(&self, db: &str, db_id: u64, id: &str) -> Result<Document> {
        let value = self
            .docs
            .get(format::key(db_id, id.as_bytes()))
            .map_err(|e| self.err("reading a document", e))?
            .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
        let (header, body) = format::decode_head(&value)?;
        if header.leaf.deleted {
            return Err(Error::doc_not_found(db, id, "deleted"));
        }
        stored_document(id, &header.leaf.rev, body)
    }

    /// Runs `read` on document `id`'s decoded record (`None`: the database does not have
    /// it), its bodies and the database's `revs_limit`, from one snapshot; `NotFound` for a
    /// missing database.
    pub(super) fn with_tree<T>(
        &self,
        db: &str,
        id: &str,
        read: impl FnOnce(Option<&RevTree>, u64, &dyn Bodies) -> Result<T>,
    ) -> Result<T> {
        let snapshot = self.db.snapshot();
        let meta = self.snapshot_meta(&snapshot, db)?;
        let value = snapshot
            .get(&self.docs, format::key(meta.id, id.as_bytes()))
            .map_err(|e| self.err("reading a document", e))?;
        let decoded = value.as_deref().map(format::decode_record).transpose()?;
        let no_inline = HashMap::new();
        let bodies = SnapshotBodies {
            store: self,
            snapshot: &snapshot,
            db_id: meta.id,
            id,
            inline: decoded.as_ref().map_or(&no_inline, |d| &d.inline),
        };
        read(decoded.as_ref().map(|d| &d.tree), meta.revs_limit, &bodies)
    }

    pub(super) fn get_with(&self, db: &str, id: &str, options: &GetOptions) -> Result<Document> {
        self.with_tree(db, id, |tree, revs_limit, bodies| {
            let tree = tree.ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
            tree_read::get_with(db, id, tree, options, revs_limit, bodies)
        })
    }

    /// Where the bytes of one attachment of the winner (or of `options.rev`) are: its stub,
    /// the database id and the key of its chunks.
    pub(super) fn attachment_location(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<(crate::AttachmentInfo, u64, [u8; 16])> {
        let snapshot = self.db.snapshot();
        let meta = self.snapshot_meta(&snapshot, db)?;
        self.with_tree(db, id, |tree, _, bodies| {
            let tree = tree.ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
            let body = tree_read::attachment_body(db, id, tree, options.rev.as_ref(), bodies)?;
            let stub = body
                .get(attachment::ATTACHMENTS)
                .and_then(|a| a.get(name))
                .ok_or_else(|| attachment::attachment_not_found(db, id, name))?;
            let info = crate::AttachmentInfo::from_stub(stub)
                .ok_or_else(|| format::corrupt("a stored attachment stub is incomplete"))?;
            let digest = attachment::digest_bytes(&info.digest)
                .ok_or_else(|| format::corrupt("a stored attachment stub has no digest"))?;
            let key = self.chunk_key(&snapshot, meta.id, &digest)?;
            Ok((info, meta.id, key))
        })
    }

    /// One attachment of the winner or of `options.rev`, from one snapshot.
    pub(super) fn get_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<Attachment> {
        self.with_tree(db, id, |tree, _, bodies| {
            let tree = tree.ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
            let body = tree_read::attachment_body(db, id, tree, options.rev.as_ref(), bodies)?;
            attachment::read(db, id, name, &body, options.encoded, &|d| {
                bodies.attachment(d)
            })
        })
    }

    /// The stored body of leaf `rev` of `id`, if it is one (`None` for a missing database
    /// too: the write that follows reports what is wrong).
    pub(super) fn leaf_body(
        &self,
        db: &str,
        id: &str,
        rev: &Rev,
    ) -> Result<Option<Map<String, Value>>> {
        let Some(meta) = self.meta(db)? else {
            return Ok(None);
        };
        let Some(value) = self
            .docs
            .get(format::key(meta.id, id.as_bytes()))
            .map_err(|e| self.err("reading a document", e))?
        else {
            return Ok(None);
        };
        let decoded = format::decode_record(&value)?;
        match decoded.inline.get(rev) {
            Some(json) if decoded.tree.get(rev).is_some_and(|n| n.is_leaf()) => {
                parse_body(json).map(Some)
            }
            _ => Ok(None),
        }
    }

    pub(super) fn open_revs(
        &self,
        db: &str,
        id: &str,
        which: &OpenRevs,
        revs: bool,
    ) -> Result<Vec<OpenRev>> {
        self.with_tree(db, id, |tree, revs_limit, bodies| {
            tree_read::open_revs(db, id, tree, which, revs, revs_limit, bodies)
        })
    }

    /// CouchDB's `_revs_diff` for each document, from one snapshot: see `revs_diff`.
    pub(super) fn revs_diff(
        &self,
        db: &str,
        asked: &[(String, Vec<Rev>)],
    ) -> Result<Vec<RevsDiff>> {
        let empty = RevTree::default();
        let Some(meta) = self.meta(db)? else {
            return Ok(asked
                .iter()
                .map(|(_, revs)| empty.revs_diff(revs))
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
                    None => empty.revs_diff(revs),
                    Some(value) => format::decode_record(&value)?.tree.revs_diff(revs),
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
        let snapshot = self.db.snapshot();
        let meta = self.snapshot_meta(&snapshot, db)?;
        let mut results = Vec::with_capacity(wanted.len());
        for (id, rev) in wanted {
            let read = validate::document_id(db, id).and_then(|()| {
                let value = snapshot
                    .get(&self.docs, format::key(meta.id, id.as_bytes()))
                    .map_err(|e| self.err("reading a document", e))?
                    .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
                let DecodedRecord { tree, inline, .. } = format::decode_record(&value)?;
                let bodies = SnapshotBodies {
                    store: self,
                    snapshot: &snapshot,
                    db_id: meta.id,
                    id,
                    inline: &inline,
                };
                tree_read::revisioned(db, id, &tree, rev, meta.revs_limit, &bodies)
            });
            results.push(read);
        }
        Ok(results)
    }

    /// The winner and deletion of each id (`None`: never written), from one snapshot.
    pub(super) fn current_revisions(
        &self,
        db: &str,
        ids: &[String],
    ) -> Result<Vec<Option<(Rev, bool)>>> {
        let snapshot = self.db.snapshot();
        let Some(meta) = self.snapshot_meta_opt(&snapshot, db)? else {
            return Ok(vec![None; ids.len()]);
        };
        ids.iter()
            .map(|id| {
                let value = snapshot
                    .get(&self.docs, format::key(meta.id, id.as_bytes()))
                    .map_err(|e| self.err("reading a document", e))?;
                value
                    .map(|v| {
                        let (header, _) = format::decode_head(&v)?;
                        Ok((header.leaf.rev, header.leaf.deleted))
                    })
                    .transpose()
            })
            .collect()
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
            let (header, _) = format::decode_head(&value)?;
            if header.leaf.deleted {
                continue;
            }
            if records.len() == limit {
                more = true;
                break;
            }
            records.push((key, value));
        }
        let docs = map_on_every_core(records, |(key, value)| {
            let (header, body) = format::decode_head(&value)?;
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
