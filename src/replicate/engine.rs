//! One replication batch, in CouchDB's replicator's steps: a page of the source's changes
//! (every leaf of each changed document), the filter, one `revs_diff` on the target for what
//! it lacks, one `read_revisions` on the source for those revisions with their histories,
//! and one `write_revisions` on the target. Shared by [`super::replicate`] and migration.

use std::collections::HashSet;

use crate::mango::Selector;
use crate::{DatabaseService, Error, Result, Rev, RevisionedDoc, RevsDiff};

/// What a run copies: the filter, resolved once.
pub(crate) struct Filter {
    pub doc_ids: Option<HashSet<String>>,
    pub selector: Option<Selector>,
}

impl Filter {
    /// No filter.
    pub fn everything() -> Self {
        Self {
            doc_ids: None,
            selector: None,
        }
    }
}

/// One changed document of a batch, with what the target said of it.
pub(crate) struct Changed {
    pub id: String,
    /// The source's winner, then its other leaves.
    pub leaves: Vec<Rev>,
    /// Whether the source's winner is deleted.
    pub deleted: bool,
    /// The target's answer: the leaves it lacks, and every leaf it holds (the probe
    /// revision makes `possible_ancestors` list them all).
    pub diff: RevsDiff,
}

/// A batch read from the source, ready to write.
pub(crate) struct Batch {
    /// The documents of the page that passed the filter.
    pub changed: Vec<Changed>,
    /// The revisions the target lacks, read from the source with their histories.
    pub docs: Vec<RevisionedDoc>,
    /// Changes read (before the filter).
    pub read: u64,
    /// Revisions asked about, and found missing.
    pub checked: u64,
    pub missing: u64,
    /// Revisions the source could not give, with the reason (one refused by the
    /// conversion, such as a document with attachments).
    pub unreadable: Vec<(String, String)>,
    /// The feed token after this page, and the changes still ahead.
    pub last_seq: String,
    pub pending: u64,
}

/// Reads the next batch after `since`; `None` when the feed has nothing new. With
/// `read_docs` false (a dry run) the missing revisions are not read.
pub(crate) async fn fetch(
    source: &dyn DatabaseService,
    source_db: &str,
    target: &dyn DatabaseService,
    target_db: &str,
    since: Option<&str>,
    limit: usize,
    filter: &Filter,
    read_docs: bool,
) -> Result<Option<Batch>> {
    let page = source.changes(source_db, since, limit).await?;
    if page.results.is_empty() {
        return Ok(None);
    }
    let read = page.results.len() as u64;
    let mut changes = page.results;
    if let Some(ids) = &filter.doc_ids {
        changes.retain(|c| ids.contains(&c.id));
    }
    if let Some(selector) = &filter.selector {
        // CouchDB's `_selector` filter judges the winner: a tombstone never matches a
        // selector naming a field.
        let live: Vec<String> = changes
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| c.id.clone())
            .collect();
        let winners = source.get_many(source_db, &live).await?;
        let matching: HashSet<String> = live
            .into_iter()
            .zip(winners)
            .filter_map(|(id, doc)| match doc {
                Ok(doc) if selector.matches(doc.as_map()) => Some(Ok(id)),
                Ok(_) => None,
                Err(e) if e.is_not_found() => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_>>()?;
        changes.retain(|c| matching.contains(&c.id));
    }
    let probe = Rev::beyond_every_leaf();
    let asked: Vec<(String, Vec<Rev>)> = changes
        .iter()
        .map(|c| {
            let mut revs = vec![c.rev];
            revs.extend(c.other_leaves.iter().copied());
            revs.push(probe);
            (c.id.clone(), revs)
        })
        .collect();
    let diffs = if asked.is_empty() {
        Vec::new()
    } else {
        target.revs_diff(target_db, &asked).await?
    };
    let mut changed = Vec::with_capacity(changes.len());
    let mut wanted: Vec<(String, Rev)> = Vec::new();
    let mut checked = 0;
    for (change, mut diff) in changes.into_iter().zip(diffs) {
        diff.missing.retain(|r| *r != probe);
        checked += 1 + change.other_leaves.len() as u64;
        wanted.extend(diff.missing.iter().map(|r| (change.id.clone(), *r)));
        let mut leaves = vec![change.rev];
        leaves.extend(change.other_leaves);
        changed.push(Changed {
            id: change.id,
            leaves,
            deleted: change.deleted,
            diff,
        });
    }
    let missing = wanted.len() as u64;
    let mut docs = Vec::with_capacity(wanted.len());
    let mut unreadable = Vec::new();
    if read_docs && !wanted.is_empty() {
        for (read, (id, _)) in source
            .read_revisions(source_db, &wanted)
            .await?
            .into_iter()
            .zip(&wanted)
        {
            match read {
                Ok(doc) => docs.push(doc),
                // Changed again (and compacted) since the feed was read: a later change
                // carries what replaced it.
                Err(e) if e.is_not_found() => {}
                Err(e @ (Error::InvalidDocument { .. } | Error::InvalidDocumentId { .. })) => {
                    unreadable.push((id.clone(), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Some(Batch {
        changed,
        docs,
        read,
        checked,
        missing,
        unreadable,
        last_seq: page.last_seq,
        pending: page.pending,
    }))
}

/// Writes a batch's revisions to the target as replication writes; the failures, by id.
pub(crate) async fn write(
    target: &dyn DatabaseService,
    target_db: &str,
    docs: Vec<RevisionedDoc>,
) -> Result<(u64, Vec<(String, String)>)> {
    if docs.is_empty() {
        return Ok((0, Vec::new()));
    }
    let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
    let results = target.write_revisions(target_db, docs).await?;
    let mut written = 0;
    let mut failed = Vec::new();
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(()) => written += 1,
            Err(e) => failed.push((id, e.to_string())),
        }
    }
    Ok((written, failed))
}
