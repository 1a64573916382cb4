//! CouchDB's rules for one write on a document's revision tree, shared by the providers that
//! keep trees themselves (memory, embedded), so both decide conflicts and revisions
//! identically. Checked against CouchDB 3.5 (`testdata/couchdb-conflicts.json`):
//!
//! - an edit with `_rev` (`save`, `delete_rev`) needs a live winner, and `_rev` must name a
//!   leaf, live or deleted: the new revision becomes its child. Anything else (an ancestor,
//!   an unknown revision, a document whose leaves are all deleted) is `Conflict`; a deletion
//!   of a deleted or missing document is `NotFound`;
//! - `save` without `_rev` is docstore's upsert: a child of the winner (live or deleted), or
//!   a new document;
//! - `create` (CouchDB's `PUT` without `_rev`) makes a new document, or a child of a deleted
//!   winner; `Conflict` when the winner is live;
//! - `delete` without a revision tombstones a live winner; `NotFound` otherwise;
//! - a replicated revision (`put_revisions`) and its linked history are merged into the tree.
//!
//! Every write then stems the tree to the database's `revs_limit`.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::rev_tree::{Merged, RevTree, Stored};
use crate::{Document, Error, Result, Rev, RevisionOutcome, RevisionedDoc, attachment, validate};

/// The winning leaf of a stored document: its revision and whether it is a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub rev: Rev,
    pub deleted: bool,
}

impl Leaf {
    /// The winner of `tree`.
    pub fn winner_of(tree: &RevTree) -> Option<Leaf> {
        tree.winner().map(|l| Leaf {
            rev: l.rev,
            deleted: l.deleted,
        })
    }
}

/// Reads the stored `_attachments` of a leaf of the document a save plans on.
pub(crate) type StoredAttachments<'a> = dyn Fn(&Rev) -> Result<Option<Map<String, Value>>> + 'a;

/// CouchDB's default `revs_limit`: the revisions a path keeps, the leaf itself included.
pub const REVS_LIMIT: u64 = 1000;

/// Live and deleted document counts of a database, kept in step with every write from the
/// document's winner before and after.
pub(crate) fn count_transition(live: &mut u64, deleted: &mut u64, old: Option<Leaf>, new: Leaf) {
    if let Some(old) = old {
        if old.deleted {
            *deleted -= 1;
        } else {
            *live -= 1;
        }
    }
    if new.deleted {
        *deleted += 1;
    } else {
        *live += 1;
    }
}

/// A save, validated: the body to store (without `_id`/`_rev`/`_deleted`), the revision it
/// edits, whether it is a deletion, and whether it may only create.
///
/// `body` holds `_attachments` as given until [`SaveRequest::encode_attachments`] takes it
/// out into `attachments` (the providers that store documents themselves; CouchDB's gets the
/// body as it came); [`SaveRequest::plan`] then puts the stored stubs back.
#[derive(Debug)]
pub(crate) struct SaveRequest {
    pub body: Map<String, Value>,
    pub expected: Option<Rev>,
    pub deleted: bool,
    pub create_only: bool,
    /// The parsed and encoded `_attachments`, once taken out of `body`.
    pub attachments: Option<Vec<(String, attachment::Input)>>,
    /// A revision computed ahead, outside the store's lock, for the parent it was computed
    /// on (see [`SaveRequest::hash_ahead`]); [`SaveRequest::plan`] uses it only if the edit
    /// still goes on that parent.
    pub rev_ahead: Option<RevAhead>,
}

/// A revision computed before the store's lock was taken, and the parent it extends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RevAhead {
    parent: Option<Rev>,
    rev: Rev,
}

impl SaveRequest {
    /// Validates a save of `doc` as `id` in `db`, taking the body without copying it.
    pub fn new(db: &str, id: &str, doc: Document) -> Result<Self> {
        validate::document_id(db, id)?;
        let fields = validate::body(db, id, &doc)?;
        let mut body = doc.into_map();
        body.shift_remove("_id");
        body.shift_remove("_rev");
        body.shift_remove("_deleted");
        Ok(Self {
            body,
            expected: fields.rev,
            deleted: fields.deleted,
            create_only: false,
            attachments: None,
            rev_ahead: None,
        })
    }

    /// Takes `_attachments` out of the body, decoding and compressing inline data (the CPU
    /// work, done before any lock); once only.
    pub fn encode_attachments(&mut self, db: &str, id: &str) -> Result<()> {
        if self.attachments.is_none()
            && let Some(raw) = self.body.shift_remove(attachment::ATTACHMENTS)
        {
            self.attachments = Some(attachment::parse_inputs(db, id, &raw)?);
        }
        Ok(())
    }

    /// A standalone attachment upload (`new`: its content type and encoded bytes, see
    /// [`attachment::prepare_upload`]) or removal (`None`) of `name` on revision
    /// `rev`, as the save CouchDB makes of it: `rev`'s body (`body_of_rev`, its stored body
    /// when `rev` is a leaf) with the new attachment first and the revision's others
    /// after it; without `rev`, a new document with an empty body (`create` rules).
    pub fn for_attachment(
        db: &str,
        id: &str,
        name: &str,
        rev: Option<Rev>,
        new: Option<(String, attachment::Blob)>,
        body_of_rev: Option<&Map<String, Value>>,
    ) -> Result<Self> {
        validate::document_id(db, id)?;
        attachment::check_name(db, id, name)?;
        let mut body = body_of_rev.cloned().unwrap_or_default();
        let old = body.shift_remove(attachment::ATTACHMENTS);
        let old_names = old
            .iter()
            .flat_map(|o| o.as_object())
            .flat_map(|o| o.keys());
        let mut inputs = Vec::new();
        match new {
            Some((content_type, blob)) => {
                inputs.push((
                    name.to_owned(),
                    attachment::Input::Data { content_type, blob },
                ));
            }
            None => {
                let has = old.as_ref().and_then(|o| o.get(name)).is_some();
                if !has && body_of_rev.is_some() {
                    return Err(attachment::attachment_not_found(db, id, name));
                }
            }
        }
        inputs.extend(
            old_names
                .filter(|n| n.as_str() != name)
                .map(|n| (n.clone(), attachment::Input::Stub { revpos: None })),
        );
        Ok(Self {
            body,
            expected: rev,
            deleted: false,
            create_only: rev.is_none(),
            attachments: Some(inputs),
            rev_ahead: None,
        })
    }

    /// The attachment bytes this save brings, for the provider to store with it.
    pub fn new_blobs(&self) -> impl Iterator<Item = &attachment::Blob> {
        self.attachments
            .iter()
            .flat_map(|inputs| attachment::new_blobs(inputs))
    }

    /// Validates a `create` (no `_rev` allowed).
    pub fn for_create(db: &str, id: &str, doc: Document) -> Result<Self> {
        let request = Self::new(db, id, doc)?;
        if request.expected.is_some() {
            return Err(Error::invalid_document(
                db,
                Some(id),
                "create takes no _rev; use save to edit a revision",
            ));
        }
        Ok(Self {
            create_only: true,
            ..request
        })
    }

    /// Validates one document of a bulk save, which must carry its `_id`; returns the id too.
    pub fn for_bulk(db: &str, doc: Document) -> Result<(String, Self)> {
        let id = bulk_id(db, &doc)?;
        let request = Self::new(db, &id, doc)?;
        Ok((id, request))
    }

    /// The leaf this edit goes on in `tree` (`None`: a new document), or its `Conflict`, and
    /// whether it re-creates a deleted document.
    fn parent_in(&self, db: &str, id: &str, tree: Option<&RevTree>) -> Result<(Option<Rev>, bool)> {
        let winner = tree.and_then(Leaf::winner_of);
        let parent = match (self.expected, winner) {
            (Some(_), None) => return Err(Error::conflict(db, id)),
            (Some(_), Some(w)) if w.deleted => return Err(Error::conflict(db, id)),
            (Some(expected), Some(_)) => {
                let is_leaf = tree.is_some_and(|t| t.leaves().iter().any(|l| l.rev == expected));
                if !is_leaf {
                    return Err(Error::conflict(db, id));
                }
                Some(expected)
            }
            (None, Some(w)) if self.create_only && !w.deleted => {
                return Err(Error::conflict(db, id));
            }
            // Only a live body re-creates a deleted document.
            (None, Some(w)) if w.deleted && self.deleted => return Err(Error::conflict(db, id)),
            (None, winner) => winner.map(|w| w.rev),
        };
        let recreation = self.expected.is_none() && winner.is_some_and(|w| w.deleted);
        Ok((parent, recreation))
    }

    /// Computes the revision this edit would make on `tree` as it is now, to be used by
    /// [`SaveRequest::plan`] if the edit still goes on the same parent then. Lets a batch
    /// hash its revisions in parallel, outside the store's lock. Nothing is computed for a
    /// body with attachments (planning changes it) or an edit that fails or re-creates.
    pub fn hash_ahead(&mut self, db: &str, id: &str, tree: Option<&RevTree>) {
        if self.attachments.is_some() || self.body.contains_key(attachment::ATTACHMENTS) {
            return;
        }
        if let Ok((parent, false)) = self.parent_in(db, id, tree) {
            self.rev_ahead = Some(RevAhead {
                parent,
                rev: Rev::compute(parent.as_ref(), self.deleted, &self.body),
            });
        }
    }

    /// The edit this save makes on `tree` (`None`: the database never had the document), or
    /// `Conflict` (see the module doc). A save with attachments gets its stored stubs put
    /// into `body` here: stubs taken from the revision it names, read with
    /// `stored_attachments(rev)` (the `_attachments` of that leaf's stored body).
    pub fn plan(
        &mut self,
        db: &str,
        id: &str,
        tree: Option<&RevTree>,
        stored_attachments: &StoredAttachments<'_>,
    ) -> Result<Edit> {
        self.encode_attachments(db, id)?;
        let (parent, recreation) = self.parent_in(db, id, tree)?;
        if let Some(inputs) = &self.attachments {
            // The revision the write names: its `_rev`, or for an upsert the live winner.
            let named = if recreation { None } else { parent };
            let kept = match &named {
                Some(rev) => stored_attachments(rev)?,
                None => None,
            };
            let revpos = named.map_or(0, |r| r.generation()) + 1;
            let stored = attachment::resolve(db, id, inputs, kept.as_ref(), revpos)?;
            if stored.is_empty() {
                self.body.shift_remove(attachment::ATTACHMENTS);
            } else {
                self.body
                    .insert(attachment::ATTACHMENTS.into(), Value::Object(stored));
            }
        }
        let rev = match self.rev_ahead.take() {
            Some(ahead) if !recreation && self.attachments.is_none() && ahead.parent == parent => {
                ahead.rev
            }
            _ if recreation => Rev::compute_recreation(parent.as_ref(), self.deleted, &self.body),
            _ => Rev::compute(parent.as_ref(), self.deleted, &self.body),
        };
        Ok(Edit {
            parent,
            rev,
            deleted: self.deleted,
        })
    }
}

/// One interactive edit, decided: the leaf it extends (`None`: a new document), the revision
/// it makes and whether that is a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edit {
    pub parent: Option<Rev>,
    pub rev: Rev,
    pub deleted: bool,
}

impl Edit {
    /// A deletion of `tree`'s winner, or of the leaf `expected` (see the module doc).
    pub fn delete(
        db: &str,
        id: &str,
        tree: Option<&RevTree>,
        expected: Option<&Rev>,
    ) -> Result<Self> {
        let winner = tree
            .and_then(Leaf::winner_of)
            .ok_or_else(|| Error::doc_not_found(db, id, "missing"))?;
        if winner.deleted {
            return Err(Error::doc_not_found(db, id, "deleted"));
        }
        let parent = match expected {
            None => winner.rev,
            Some(rev) if tree.is_some_and(|t| t.leaves().iter().any(|l| l.rev == *rev)) => *rev,
            Some(_) => return Err(Error::conflict(db, id)),
        };
        Ok(Self {
            parent: Some(parent),
            rev: Rev::compute(Some(&parent), true, &Map::new()),
            deleted: true,
        })
    }

    /// Applies the edit to `tree` (created for a new document) with `body`, then stems it to
    /// `revs_limit`. The edit must have been planned on this tree.
    pub fn apply(&self, tree: &mut Option<RevTree>, body: Map<String, Value>, revs_limit: u64) {
        let value = Stored::Body {
            deleted: self.deleted,
            body: Arc::new(body),
        };
        match (tree.as_mut(), &self.parent) {
            (Some(t), Some(parent)) => {
                t.add_child(parent, *self.rev.id(), value);
            }
            _ => *tree = Some(RevTree::single(&self.rev, value)),
        }
        if let Some(t) = tree.as_mut() {
            stem(t, revs_limit);
        }
    }
}

/// Stems `tree` to `revs_limit` when it may exceed it (a tree of at most `revs_limit`
/// revisions cannot hold a longer path).
pub(crate) fn stem(tree: &mut RevTree, revs_limit: u64) {
    if tree.len() as u64 > revs_limit {
        tree.stem(revs_limit as usize);
    }
}

/// Checks a revision a replication brings: its id, its reserved fields, and its
/// `_attachments` entry by entry (what the CouchDB provider checks before sending, so a bad
/// revision fails alone, not the whole `_bulk_docs`).
#[cfg_attr(not(feature = "couchdb"), allow(dead_code))]
pub(crate) fn check_revisioned(db: &str, doc: &RevisionedDoc) -> Result<()> {
    check_fields(db, doc)?;
    attachment::check_inputs(db, &doc.id, doc.body.get(attachment::ATTACHMENTS))
}

/// The id and reserved fields of a revision a replication brings.
fn check_fields(db: &str, doc: &RevisionedDoc) -> Result<()> {
    validate::document_id(db, &doc.id)?;
    if let Some(key) = doc
        .body
        .keys()
        .find(|k| k.starts_with('_') && *k != attachment::ATTACHMENTS)
    {
        return Err(Error::invalid_document(
            db,
            Some(&doc.id),
            format!("the body of a revision may not hold {key:?}"),
        ));
    }
    Ok(())
}

/// Checks a revision a replication brings and turns its `_attachments` into stored stubs
/// (see [`attachment::replicated`]; `held` finds a stub among the document's stored
/// revisions); returns the attachment bytes to store with it.
pub(crate) fn prepare_revisioned(
    db: &str,
    doc: &mut RevisionedDoc,
    held: &dyn Fn(&str, Option<&str>) -> Option<Value>,
) -> Result<Vec<attachment::Blob>> {
    check_fields(db, doc)?;
    let Some(raw) = doc.body.get(attachment::ATTACHMENTS) else {
        return Ok(Vec::new());
    };
    let (stored, blobs) = attachment::replicated(db, &doc.id, doc.rev.generation(), raw, held)?;
    if stored.is_empty() {
        doc.body.shift_remove(attachment::ATTACHMENTS);
    } else {
        doc.body
            .insert(attachment::ATTACHMENTS.into(), Value::Object(stored));
    }
    Ok(blobs)
}

/// Merges a replicated revision and its linked history into `tree` (created when `None`),
/// stems it, and says what that did (see [`RevisionOutcome`]) and whether the tree changed:
/// a revision the tree held without a body ([`Stored::Missing`], an ancestor a replication
/// only named) takes the body brought now, as CouchDB's merge keeps a body over none, so a
/// `Present` revision can still change the tree (and is stored, with a new sequence number).
pub(crate) fn merge_revision(
    tree: &mut Option<RevTree>,
    doc: RevisionedDoc,
    revs_limit: u64,
) -> (RevisionOutcome, bool) {
    let filling = tree
        .as_ref()
        .and_then(|t| t.get(&doc.rev))
        .is_some_and(|n| !n.value.has_body());
    let linked = doc.linked_history().len();
    let start = doc.rev.generation() - linked as u64;
    let mut path: Vec<(crate::RevId, Stored)> = doc.history[..linked]
        .iter()
        .rev()
        .map(|r| (*r.id(), Stored::Missing))
        .collect();
    path.push((
        *doc.rev.id(),
        Stored::Body {
            deleted: doc.deleted,
            body: Arc::new(doc.body),
        },
    ));
    let t = tree.get_or_insert_with(RevTree::default);
    if t.merge(start, path) == Merged::InternalNode {
        return (RevisionOutcome::Present, filling);
    }
    stem(t, revs_limit);
    let outcome = match Leaf::winner_of(t) {
        Some(w) if w.rev == doc.rev => RevisionOutcome::Written,
        _ => RevisionOutcome::Losing,
    };
    (outcome, true)
}

/// The one result of a one-document batch (batches return one result per input; an empty
/// answer is a defect of the backend, reported as such).
#[cfg_attr(not(any(feature = "embedded", feature = "couchdb")), allow(dead_code))]
pub(crate) fn only<T>(mut results: Vec<Result<T>>) -> Result<T> {
    results.pop().unwrap_or_else(|| {
        Err(Error::Protocol {
            reason: "a one-document batch returned no result".into(),
        })
    })
}

/// The id a bulk save writes: the document's `_id`, which bulk saves require.
fn bulk_id(db: &str, doc: &Document) -> Result<String> {
    match doc.get("_id") {
        Some(Value::String(id)) => Ok(id.clone()),
        Some(_) => Err(Error::invalid_document(db, None, "_id must be a string")),
        None => Err(Error::InvalidDocumentId {
            db: db.into(),
            id: String::new(),
            reason: "a document in a bulk save must carry its _id".into(),
        }),
    }
}

/// Validates a `_local` document body and strips `_id`/`_rev`.
pub(crate) fn local_body(db: &str, id: &str, doc: &Document) -> Result<Map<String, Value>> {
    validate::local_id(db, id)?;
    if let Some(k) = doc
        .as_map()
        .keys()
        .find(|k| k.starts_with('_') && *k != "_id" && *k != "_rev")
    {
        return Err(Error::invalid_document(
            db,
            Some(id),
            format!("top-level field {k:?} is reserved"),
        ));
    }
    Ok(doc.body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str, rev: Option<&Rev>, create: bool) -> SaveRequest {
        let mut doc = Document::from_json(body).unwrap();
        if let Some(rev) = rev {
            doc.set_rev(rev);
        }
        if create {
            SaveRequest::for_create("db", "d", doc).unwrap()
        } else {
            SaveRequest::new("db", "d", doc).unwrap()
        }
    }

    fn write(tree: &mut Option<RevTree>, r: &SaveRequest) -> Result<Rev> {
        let r = &mut SaveRequest {
            body: r.body.clone(),
            attachments: None,
            ..*r
        };
        let edit = r.plan("db", "d", tree.as_ref(), &|_| Ok(None))?;
        edit.apply(tree, r.body.clone(), REVS_LIMIT);
        Ok(edit.rev)
    }

    #[test]
    fn edits_follow_couchdb_rules() {
        let mut tree = None;
        let one = write(&mut tree, &req(r#"{"v":1}"#, None, true)).unwrap();
        assert!(
            write(&mut tree, &req(r#"{"v":1}"#, None, true))
                .unwrap_err()
                .is_conflict()
        );
        let two = write(&mut tree, &req(r#"{"v":2}"#, Some(&one), false)).unwrap();
        assert!(
            write(&mut tree, &req("{}", Some(&one), false))
                .unwrap_err()
                .is_conflict(),
            "an ancestor"
        );
        let gone = Edit::delete("db", "d", tree.as_ref(), Some(&two)).unwrap();
        gone.apply(&mut tree, Map::new(), REVS_LIMIT);
        assert!(
            Edit::delete("db", "d", tree.as_ref(), None)
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            write(&mut tree, &req("{}", Some(&gone.rev), false))
                .unwrap_err()
                .is_conflict(),
            "all deleted"
        );
        // Re-created on top of the tombstone.
        let back = write(&mut tree, &req(r#"{"v":3}"#, None, true)).unwrap();
        assert_eq!(back.generation(), 4);
    }

    #[test]
    fn replicated_revisions_branch_and_report_the_winner() {
        let mut tree = None;
        let first = Rev::parse("1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        let doc = |rev: &str, history: Vec<Rev>| RevisionedDoc {
            id: "d".into(),
            rev: Rev::parse(rev).unwrap(),
            deleted: false,
            body: Map::new(),
            history,
        };
        assert_eq!(
            merge_revision(
                &mut tree,
                doc("1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", vec![]),
                REVS_LIMIT
            )
            .0,
            RevisionOutcome::Written
        );
        assert_eq!(
            merge_revision(
                &mut tree,
                doc("2-ffffffffffffffffffffffffffffffff", vec![first]),
                REVS_LIMIT
            )
            .0,
            RevisionOutcome::Written
        );
        assert_eq!(
            merge_revision(
                &mut tree,
                doc("2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", vec![first]),
                REVS_LIMIT
            )
            .0,
            RevisionOutcome::Losing
        );
        assert_eq!(
            merge_revision(
                &mut tree,
                doc("1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", vec![]),
                REVS_LIMIT
            ),
            (RevisionOutcome::Present, false)
        );
        assert_eq!(tree.unwrap().leaves().len(), 2);
    }
}
