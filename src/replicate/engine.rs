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

/// Reads the next batch after `since`; `None` when the feed has nothing new. A
/// `target_empty` target is not asked: it lacks every leaf.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch(
    source: &dyn DatabaseService,
    source_db: &str,
    target: &dyn DatabaseService,
    target_db: &str,
    since: Option<&str>,
    limit: usize,
    filter: &Filter,
    target_empty: bool,
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
    let entries: Vec<(String, Vec<Rev>, bool)> = changes
        .into_iter()
        .map(|c| {
            let mut leaves = vec![c.rev];
            leaves.extend(c.other_leaves);
            (c.id, leaves, c.deleted)
        })
        .collect();
    let changed = if target_empty {
        entries
            .into_iter()
            .map(|(id, leaves, deleted)| Changed {
                diff: RevsDiff {
                    missing: leaves.clone(),
                    possible_ancestors: Vec::new(),
                },
                id,
                leaves,
                deleted,
            })
            .collect()
    } else {
        ask_target(target, target_db, entries).await?
    };
    let wanted: Vec<(String, Rev)> = changed
        .iter()
        .flat_map(|c| c.diff.missing.iter().map(|r| (c.id.clone(), *r)))
        .collect();
    let mut docs = Vec::with_capacity(wanted.len());
    let mut unreadable = Vec::new();
    if !wanted.is_empty() {
        let reads = source.read_revisions(source_db, &wanted).await?;
        for (read, (id, _)) in reads.into_iter().zip(&wanted) {
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
        checked: changed.iter().map(|c| c.leaves.len() as u64).sum(),
        missing: wanted.len() as u64,
        changed,
        docs,
        read,
        unreadable,
        last_seq: page.last_seq,
        pending: page.pending,
    }))
}

/// Asks the target which of each document's leaves it lacks (one `revs_diff`): `entries`
/// are (id, leaves with the winner first, whether the winner is deleted). The probe revision
/// no document reaches makes each answer's `possible_ancestors` list every leaf the target
/// holds, in leaf order (its winner first).
pub(crate) async fn ask_target(
    target: &dyn DatabaseService,
    target_db: &str,
    entries: Vec<(String, Vec<Rev>, bool)>,
) -> Result<Vec<Changed>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let probe = Rev::beyond_every_leaf();
    let asked: Vec<(String, Vec<Rev>)> = entries
        .iter()
        .map(|(id, leaves, _)| {
            let mut revs = leaves.clone();
            revs.push(probe);
            (id.clone(), revs)
        })
        .collect();
    let diffs = target.revs_diff(target_db, &asked).await?;
    Ok(entries
        .into_iter()
        .zip(diffs)
        .map(|((id, leaves, deleted), mut diff)| {
            diff.missing.retain(|r| *r != probe);
            Changed {
                id,
                leaves,
                deleted,
                diff,
            }
        })
        .collect())
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

/// A page of the source's changes with every leaf of each changed document read (with its
/// history), the winner first: what a backup writes. `None` at the end of the feed.
pub(crate) struct Leaves {
    /// (leaf, whether it is its document's winner), documents in feed order.
    pub docs: Vec<(RevisionedDoc, bool)>,
    pub last_seq: String,
    pub pending: u64,
}

/// Reads the page of `db`'s changes after `since` and all leaves of its documents (one
/// `changes`, one `read_revisions`).
pub(crate) async fn read_leaves(
    source: &dyn DatabaseService,
    db: &str,
    since: Option<&str>,
    limit: usize,
) -> Result<Option<Leaves>> {
    let page = source.changes(db, since, limit).await?;
    if page.results.is_empty() {
        return Ok(None);
    }
    let mut wanted: Vec<(String, Rev)> = Vec::new();
    let mut winners: Vec<bool> = Vec::new();
    for change in &page.results {
        wanted.push((change.id.clone(), change.rev));
        winners.push(true);
        for leaf in &change.other_leaves {
            wanted.push((change.id.clone(), *leaf));
            winners.push(false);
        }
    }
    let mut docs = Vec::with_capacity(wanted.len());
    for (read, winner) in source
        .read_revisions(db, &wanted)
        .await?
        .into_iter()
        .zip(winners)
    {
        match read {
            Ok(doc) => docs.push((doc, winner)),
            // Changed again since the feed was read: a later change carries it.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(Leaves {
        docs,
        last_seq: page.last_seq,
        pending: page.pending,
    }))
}

/// A batch built from revisions at hand (an archive) rather than a source's feed: each
/// document's leaves (the winner first) asked of the target, all of them kept to write.
pub(crate) async fn batch_of(
    target: &dyn DatabaseService,
    target_db: &str,
    docs: Vec<(RevisionedDoc, bool)>,
) -> Result<Batch> {
    let mut entries: Vec<(String, Vec<Rev>, bool)> = Vec::new();
    for (doc, winner) in &docs {
        match entries.last_mut() {
            Some((id, leaves, _)) if *id == doc.id && !winner => leaves.push(doc.rev),
            _ => entries.push((doc.id.clone(), vec![doc.rev], doc.deleted)),
        }
    }
    let read = entries.len() as u64;
    let changed = ask_target(target, target_db, entries).await?;
    let missing: HashSet<(&str, Rev)> = changed
        .iter()
        .flat_map(|c| c.diff.missing.iter().map(move |r| (c.id.as_str(), *r)))
        .collect();
    let docs: Vec<RevisionedDoc> = docs
        .into_iter()
        .map(|(doc, _)| doc)
        .filter(|d| missing.contains(&(d.id.as_str(), d.rev)))
        .collect();
    Ok(Batch {
        checked: changed.iter().map(|c| c.leaves.len() as u64).sum(),
        missing: docs.len() as u64,
        changed,
        docs,
        read,
        unreadable: Vec::new(),
        last_seq: String::new(),
        pending: 0,
    })
}
