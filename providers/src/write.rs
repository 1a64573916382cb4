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

use crate::{Document, Error, Result, Rev, RevisionOutcome, RevisionedDoc, RevsDiff, validate};

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
        Some(c) if doc.linked_history().contains(&c.rev) => RevisionOutcome::Written,
        Some(c) if !wins(leaf, c) => RevisionOutcome::Lost,
        _ => RevisionOutcome::Written,
    })
}

/// CouchDB's `_revs_diff` for a document stored as one leaf and its ancestors (`stored`;
/// `None`: the database never had it): the revisions of `asked` it lacks, in the order asked,
/// and the leaf as a possible ancestor when its generation is below a missing one's.
pub(crate) fn revs_diff_of(stored: Option<(Rev, &[Rev])>, asked: &[Rev]) -> RevsDiff {
    let held =
        |rev: &Rev| stored.is_some_and(|(leaf, ancestors)| leaf == *rev || ancestors.contains(rev));
    let mut missing: Vec<Rev> = Vec::new();
    for rev in asked {
        if !held(rev) && !missing.contains(rev) {
            missing.push(*rev);
        }
    }
    let highest_missing = missing.iter().map(Rev::generation).max();
    let possible_ancestors = match (stored, highest_missing) {
        (Some((leaf, _)), Some(high)) if leaf.generation() < high => vec![leaf],
        _ => Vec::new(),
    };
    RevsDiff {
        missing,
        possible_ancestors,
    }
}

/// CouchDB's default `revs_limit`: the revisions a path keeps, the leaf itself included.
pub const REVS_LIMIT: usize = 1000;

/// The ancestors stored with a new edit on top of `current` (its revision and its stored
/// ancestors): newest first, consecutive generations, at most `REVS_LIMIT - 1`.
pub(crate) fn history_after_edit(current: Option<(Rev, &[Rev])>) -> Vec<Rev> {
    match current {
        None => Vec::new(),
        Some((rev, ancestors)) => std::iter::once(rev)
            .chain(ancestors.iter().copied())
            .take(REVS_LIMIT - 1)
            .collect(),
    }
}

/// The ancestors stored with a replicated revision that won: the ones it brings, joined to
/// the stored ones when it extends `current` (as CouchDB merges the paths of its tree).
pub(crate) fn history_after_replication(
    doc: &RevisionedDoc,
    current: Option<(Rev, &[Rev])>,
) -> Vec<Rev> {
    let linked = doc.linked_history();
    let mut history: Vec<Rev> = linked.iter().copied().take(REVS_LIMIT - 1).collect();
    if let Some((rev, ancestors)) = current
        && let Some(at) = linked.iter().position(|a| *a == rev)
    {
        // Beyond `rev` the stored path is at least as long as what the source sent.
        history.truncate(at + 1);
        history.extend(ancestors.iter().copied());
        history.truncate(REVS_LIMIT - 1);
    }
    history
}

/// `put_revisions_over` takes one current winner per document.
pub(crate) fn check_current_len(
    db: &str,
    docs: &[RevisionedDoc],
    current: &[Option<(Rev, bool)>],
) -> Result<()> {
    if current.len() == docs.len() {
        return Ok(());
    }
    Err(Error::invalid_document(
        db,
        None,
        format!(
            "put_revisions_over was given {} current revisions for {} documents",
            current.len(),
            docs.len()
        ),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(generation: u64) -> Rev {
        let mut hash = [0u8; 16];
        hash[..8].copy_from_slice(&generation.to_be_bytes());
        Rev::new(generation, hash)
    }

    /// The path a chain of edits stores: the leaf's ancestors, newest first.
    fn path_of(generations: u64) -> Vec<Rev> {
        (1..generations).rev().map(rev).collect()
    }

    #[test]
    fn edits_keep_revs_limit_ancestors() {
        assert_eq!(history_after_edit(None), []);
        let long = path_of(1500);
        let next = history_after_edit(Some((rev(1500), &long)));
        assert_eq!(next.len(), REVS_LIMIT - 1);
        assert_eq!(next[0], rev(1500));
        assert_eq!(next[REVS_LIMIT - 2], rev(1500 - (REVS_LIMIT as u64 - 2)));
    }

    #[test]
    fn replication_joins_the_stored_path_or_starts_its_own() {
        let stored = path_of(5); // at 5: [4, 3, 2, 1]
        let doc = |generation: u64, history: Vec<Rev>| RevisionedDoc {
            id: "a".into(),
            rev: rev(generation),
            deleted: false,
            body: Map::new(),
            history,
        };
        // Brings 7 ← 6 ← 5: joined to what lies below 5.
        let joined =
            history_after_replication(&doc(7, vec![rev(6), rev(5)]), Some((rev(5), &stored)));
        assert_eq!(joined, path_of(7));
        // A gap (6 missing) links nothing: a branch with no known ancestors.
        let gap = history_after_replication(&doc(7, vec![rev(5)]), Some((rev(5), &stored)));
        assert_eq!(gap, []);
        // Not an extension of the stored leaf: only what it brings.
        let other = history_after_replication(&doc(3, vec![rev(2)]), Some((rev(5), &stored)));
        assert_eq!(other, [rev(2)]);
    }
}
