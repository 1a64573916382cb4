//! CouchDB's revision rules for one write, shared by the providers that store documents
//! themselves (memory, embedded), so both decide conflicts and new revisions identically.
//!
//! A stored document is a single leaf: its current revision and whether it is a tombstone.
//! Rules:
//! - save without `_rev`: writes on top of whatever is current (live or tombstone), so a
//!   re-created document continues the generation count;
//! - save with `_rev`: the document must be live at exactly that revision;
//! - delete: the document must be live (`NotFound` otherwise) and, for the strict form, at
//!   exactly the given revision (`Conflict` otherwise).

use serde_json::{Map, Value};

use crate::{Document, Error, Result, Rev, RevisionOutcome, RevisionedDoc, validate};

/// The current leaf of a stored document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub rev: Rev,
    pub deleted: bool,
}

/// CouchDB's choice of winning revision between two leaves: a live one beats a tombstone,
/// then the higher generation, then the greater hash.
pub(crate) fn wins(candidate: Leaf, current: Leaf) -> bool {
    (
        !candidate.deleted,
        candidate.rev.generation(),
        candidate.rev.hash(),
    ) > (
        !current.deleted,
        current.rev.generation(),
        current.rev.hash(),
    )
}

/// What a revision-preserving write of `doc` does over `current`, after validating it.
pub(crate) fn revision_outcome(
    db: &str,
    doc: &RevisionedDoc,
    current: Option<Leaf>,
) -> Result<RevisionOutcome> {
    validate::document_id(db, &doc.id)?;
    if let Some(key) = doc.body.keys().find(|k| k.starts_with('_')) {
        return Err(Error::invalid_document(
            db,
            Some(&doc.id),
            format!("the body of a revision may not hold {key:?}"),
        ));
    }
    let leaf = Leaf {
        rev: doc.rev,
        deleted: doc.deleted,
    };
    Ok(match current {
        Some(c) if c.rev == doc.rev => RevisionOutcome::Present,
        // A descendant of the current revision replaces it, whatever the winner rule says.
        Some(c) if doc.history.contains(&c.rev) => RevisionOutcome::Written,
        Some(c) if !wins(leaf, c) => RevisionOutcome::Lost,
        _ => RevisionOutcome::Written,
    })
}

/// Live and deleted document counts of a database, kept in step with every write.
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

/// A save, validated: the body to store (without `_id`/`_rev`) and the expected revision.
#[derive(Debug)]
pub(crate) struct SaveRequest {
    pub body: Map<String, Value>,
    pub expected: Option<Rev>,
}

impl SaveRequest {
    /// Validates a save of `doc` as `id` in `db`, taking the body without copying it.
    pub fn new(db: &str, id: &str, doc: Document) -> Result<Self> {
        validate::document_id(db, id)?;
        let expected = validate::body(db, id, &doc)?;
        let mut body = doc.into_map();
        body.shift_remove("_id");
        body.shift_remove("_rev");
        Ok(Self { body, expected })
    }

    /// Validates one document of a bulk save, which must carry its `_id`; returns the id too.
    pub fn for_bulk(db: &str, doc: Document) -> Result<(String, Self)> {
        let id = bulk_id(db, &doc)?;
        let request = Self::new(db, &id, doc)?;
        Ok((id, request))
    }

    /// The revision this save produces on top of `current`, or `Conflict`.
    pub fn next_rev(&self, db: &str, id: &str, current: Option<Leaf>) -> Result<Rev> {
        match (self.expected, current) {
            (None, None) => Ok(Rev::compute(None, false, &self.body)),
            (None, Some(leaf)) => Ok(Rev::compute(Some(&leaf.rev), false, &self.body)),
            (Some(expected), Some(leaf)) if !leaf.deleted && leaf.rev == expected => {
                Ok(Rev::compute(Some(&leaf.rev), false, &self.body))
            }
            (Some(_), _) => Err(Error::conflict(db, id)),
        }
    }
}

/// The revision a delete produces on top of `current`, or `NotFound` / `Conflict`.
pub(crate) fn delete_rev(
    db: &str,
    id: &str,
    current: Option<Leaf>,
    expected: Option<&Rev>,
) -> Result<Rev> {
    match current {
        None => Err(Error::doc_not_found(db, id, "missing")),
        Some(leaf) if leaf.deleted => Err(Error::doc_not_found(db, id, "deleted")),
        Some(leaf) => match expected {
            Some(rev) if *rev != leaf.rev => Err(Error::conflict(db, id)),
            _ => Ok(Rev::compute(Some(&leaf.rev), true, &Map::new())),
        },
    }
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
