//! Reads of a document's revision tree as CouchDB answers them, shared by the providers that
//! keep trees themselves (memory, embedded): `get_with` (`_conflicts`, `_deleted_conflicts`,
//! `_revisions`, `_revs_info`), `open_revs`, a revision with its history for replication,
//! and a changes-feed row.
//!
//! Bodies of ancestors the embedded store keeps outside the tree ([`Stored::Elsewhere`]) are
//! fetched through a [`Bodies`] lookup; the memory provider has none.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::attachment::{self, Presentation};
use crate::rev_tree::{RevTree, Stored};
use crate::{Change, Document, Error, GetOptions, OpenRev, OpenRevs, Result, Rev, RevisionedDoc};

/// Finds the body of a revision kept outside the tree, and attachment bytes.
pub(crate) trait Bodies {
    /// The body of `rev`, if kept.
    fn body(&self, rev: &Rev) -> Result<Option<Arc<Map<String, Value>>>>;

    /// The stored bytes of the attachment with MD5 `digest`.
    fn attachment(&self, digest: &[u8; 16]) -> Result<Bytes>;
}

/// A revision's deletion flag and body.
type Revision = (bool, Arc<Map<String, Value>>);

/// The deletion and body of revision `rev` (a node of `tree`), if the store holds its body.
fn body_of(tree: &RevTree, rev: &Rev, bodies: &dyn Bodies) -> Result<Option<Revision>> {
    Ok(match tree.get(rev).map(|n| &n.value) {
        Some(Stored::Body { deleted, body }) => Some((*deleted, Arc::clone(body))),
        Some(Stored::Elsewhere { deleted }) => bodies.body(rev)?.map(|b| (*deleted, b)),
        Some(Stored::Missing) | None => None,
    })
}

/// `{_id, _rev, ...body, _deleted?, _attachments?}`, as CouchDB writes a revision, its
/// attachments shown `how` asks.
fn document(
    id: &str,
    rev: &Rev,
    deleted: bool,
    body: &Map<String, Value>,
    how: Presentation,
    bodies: &dyn Bodies,
) -> Result<Document> {
    let mut map = Document::assemble_stored(id, rev, body.clone()).into_map();
    if deleted {
        map.insert("_deleted".into(), Value::Bool(true));
    }
    attachment::present(&mut map, how, &|digest| bodies.attachment(digest))?;
    Ok(Document::from(map))
}

/// CouchDB's `_revisions` of `rev`: `{start, ids}` from `rev` up to its tree's root, at
/// most `revs_limit` of them (CouchDB cuts a read document's path to the database's
/// `revs_limit`, even where the tree keeps more for another leaf).
fn revisions(tree: &RevTree, rev: &Rev, revs_limit: u64) -> Value {
    let ids: Vec<Value> = tree
        .path(rev)
        .unwrap_or_default()
        .iter()
        .take(limit(revs_limit))
        .map(|(r, _)| Value::String(r.id().to_string()))
        .collect();
    json!({"start": rev.generation(), "ids": ids})
}

/// `revs_limit` as a count of path entries.
fn limit(revs_limit: u64) -> usize {
    usize::try_from(revs_limit).unwrap_or(usize::MAX)
}

/// `get_with` (see [`crate::DatabaseService::get_with`]).
pub(crate) fn get_with(
    db: &str,
    id: &str,
    tree: &RevTree,
    options: &GetOptions,
    revs_limit: u64,
    bodies: &dyn Bodies,
) -> Result<Document> {
    let leaves = tree.leaves();
    let winner = leaves
        .first()
        .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
    let rev = match options.rev {
        Some(rev) => rev,
        None if winner.deleted => return Err(Error::doc_not_found(db, id, "deleted")),
        None => winner.rev,
    };
    let (deleted, body) =
        body_of(tree, &rev, bodies)?.ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
    let how = Presentation {
        data: options.attachments,
        encoding_info: options.att_encoding_info,
    };
    let mut doc = document(id, &rev, deleted, &body, how, bodies)?;
    if options.revs {
        doc.insert("_revisions", revisions(tree, &rev, revs_limit));
    }
    if options.revs_info {
        let info: Vec<Value> = tree
            .path(&rev)
            .unwrap_or_default()
            .iter()
            .map(|(r, stored)| {
                let status = match stored {
                    Stored::Missing => "missing",
                    s if s.is_deleted() => "deleted",
                    _ => "available",
                };
                json!({"rev": r.to_string(), "status": status})
            })
            .collect();
        doc.insert("_revs_info", Value::Array(info));
    }
    let others = || leaves.iter().filter(|l| l.rev != winner.rev);
    if options.conflicts {
        let live: Vec<Value> = others()
            .filter(|l| !l.deleted)
            .map(|l| Value::String(l.rev.to_string()))
            .collect();
        if !live.is_empty() {
            doc.insert("_conflicts", Value::Array(live));
        }
    }
    if options.deleted_conflicts {
        let gone: Vec<Value> = others()
            .filter(|l| l.deleted)
            .map(|l| Value::String(l.rev.to_string()))
            .collect();
        if !gone.is_empty() {
            doc.insert("_deleted_conflicts", Value::Array(gone));
        }
    }
    attachment::move_last(doc.as_map_mut());
    Ok(doc)
}

/// The stored body whose attachments `get_attachment` reads: revision `rev`'s, or the
/// live winner's; `NotFound` when that is deleted or its body is not held.
pub(crate) fn attachment_body(
    db: &str,
    id: &str,
    tree: &RevTree,
    rev: Option<&Rev>,
    bodies: &dyn Bodies,
) -> Result<Arc<Map<String, Value>>> {
    let rev = match rev {
        Some(rev) => *rev,
        None => match tree.winner() {
            Some(w) if !w.deleted => w.rev,
            Some(_) => return Err(Error::doc_not_found(db, id, "deleted")),
            None => return Err(Error::doc_not_found(db, id, "missing")),
        },
    };
    body_of(tree, &rev, bodies)?
        .map(|(_, body)| body)
        .ok_or_else(|| Error::doc_not_found(db, id, "missing"))
}

/// The document at revision `rev` as a changes feed's `include_docs` shows it (`_id`,
/// `_rev`, the body with attachment stubs, `_deleted: true` for a tombstone); `None` when
/// the store does not hold that revision's body (compacted after the feed was read).
pub(crate) fn document_at(
    id: &str,
    tree: Option<&RevTree>,
    rev: &Rev,
    bodies: &dyn Bodies,
) -> Result<Option<Document>> {
    let Some(tree) = tree else {
        return Ok(None);
    };
    body_of(tree, rev, bodies)?
        .map(|(deleted, body)| document(id, rev, deleted, &body, Presentation::default(), bodies))
        .transpose()
}

/// `open_revs` (see [`crate::DatabaseService::open_revs`]) of document `id`, `tree` being
/// `None` when the database does not have it.
pub(crate) fn open_revs(
    db: &str,
    id: &str,
    tree: Option<&RevTree>,
    which: &OpenRevs,
    with_revs: bool,
    revs_limit: u64,
    bodies: &dyn Bodies,
) -> Result<Vec<OpenRev>> {
    let empty = RevTree::default();
    let tree = match (tree, which) {
        (Some(tree), _) => tree,
        // Every revision named of a missing document is missing; "all of them" is not found.
        (None, OpenRevs::Revs { .. }) => &empty,
        (None, OpenRevs::All) => return Err(Error::doc_not_found(db, id, "missing")),
    };
    let mut found: Vec<Rev> = Vec::new();
    let mut missing: Vec<Rev> = Vec::new();
    match which {
        OpenRevs::All => found.extend(tree.leaves().iter().map(|l| l.rev)),
        OpenRevs::Revs { revs, latest } => {
            for rev in revs {
                let wanted = if *latest && tree.contains(rev) {
                    tree.leaves_under(rev)
                } else {
                    vec![*rev]
                };
                for r in wanted {
                    let has_body = tree.get(&r).is_some_and(|n| n.value.has_body());
                    let list = if has_body { &mut found } else { &mut missing };
                    if !list.contains(&r) {
                        list.push(r);
                    }
                }
            }
        }
    }
    found.sort();
    missing.sort();
    let mut out = Vec::with_capacity(found.len() + missing.len());
    for rev in found {
        match body_of(tree, &rev, bodies)? {
            Some((deleted, body)) => {
                let mut doc = document(id, &rev, deleted, &body, Presentation::default(), bodies)?;
                if with_revs {
                    doc.insert("_revisions", revisions(tree, &rev, revs_limit));
                    attachment::move_last(doc.as_map_mut());
                }
                out.push(OpenRev::Found(doc));
            }
            None => out.push(OpenRev::Missing(rev)),
        }
    }
    out.extend(missing.into_iter().map(OpenRev::Missing));
    Ok(out)
}

/// `rev` with its body and known ancestors (its path cut to `revs_limit`, as CouchDB reads
/// it), as replication reads it; `NotFound` when the store does not hold its body.
pub(crate) fn revisioned(
    db: &str,
    id: &str,
    tree: &RevTree,
    rev: &Rev,
    revs_limit: u64,
    bodies: &dyn Bodies,
) -> Result<RevisionedDoc> {
    let (deleted, body) =
        body_of(tree, rev, bodies)?.ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
    let history = tree
        .path(rev)
        .unwrap_or_default()
        .iter()
        .take(limit(revs_limit))
        .skip(1)
        .map(|(r, _)| *r)
        .collect();
    let mut body = Arc::try_unwrap(body).unwrap_or_else(|shared| (*shared).clone());
    // Replication carries attachments with their data, as `_bulk_get?attachments=true` does.
    let inline = Presentation {
        data: true,
        encoding_info: false,
    };
    attachment::present(&mut body, inline, &|digest| bodies.attachment(digest))?;
    Ok(RevisionedDoc {
        id: id.to_owned(),
        rev: *rev,
        deleted,
        body,
        history,
    })
}

/// The changes-feed row of a document whose latest change is `seq`; `None` for an empty tree.
pub(crate) fn change(id: &str, seq: String, tree: &RevTree) -> Option<Change> {
    let leaves = tree.leaves();
    let winner = leaves.first()?;
    Some(Change {
        seq,
        id: id.to_owned(),
        rev: winner.rev,
        deleted: winner.deleted,
        other_leaves: leaves[1..].iter().map(|l| l.rev).collect(),
    })
}
