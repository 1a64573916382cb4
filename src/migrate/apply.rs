//! One batch of a migration applied to the target: what the target holds of each document
//! (one `revs_diff`), the classification into the report, and the write.

use serde_json::Value;

use super::{ConflictPolicy, DatabaseReport, LISTED_IDS, MigrateOptions, note};
use crate::{DatabaseService, Document, Error, Result, Rev, RevisionedDoc, RevsDiff};

/// What the target holds of one source document, and so what to do with it.
enum Plan {
    /// The target has the revision (as a leaf or an ancestor): nothing to write.
    Present,
    /// Write it; `over` is the target leaf it extends (`None`: the target has no leaf).
    Write { over: Option<Rev> },
    /// The target holds a leaf that is not an ancestor: decided on the target's winner.
    Unsure,
}

/// The plan for `doc` from the target's `_revs_diff` answer (`leaves`: every target leaf).
fn plan(doc: &RevisionedDoc, diff: &RevsDiff) -> Plan {
    if !diff.missing.contains(&doc.rev) {
        return Plan::Present;
    }
    let leaves = &diff.possible_ancestors;
    let linked = doc.linked_history();
    match leaves.as_slice() {
        [] => Plan::Write { over: None },
        [leaf] if linked.contains(leaf) => Plan::Write { over: Some(*leaf) },
        // A source without history (an archive written before histories were kept) extends
        // an older single leaf, given as its parent.
        [leaf] if doc.history.is_empty() && leaf.generation() < doc.rev.generation() => {
            Plan::Write { over: Some(*leaf) }
        }
        _ => Plan::Unsure,
    }
}

/// Writes one batch of source documents into `target` as the module doc says: asks the
/// target which revisions it lacks and which leaves it holds (one `revs_diff`, skipped when
/// the run started on a target without documents: `target_empty`), looks up the winners of
/// only those documents whose target leaves are not all ancestors, classifies each document
/// into `report`, and writes what is missing (nothing on a dry run). Shared by
/// [`super::migrate`] and restores from archives.
pub(crate) async fn apply_batch(
    target: &dyn DatabaseService,
    db: &str,
    docs: Vec<RevisionedDoc>,
    target_empty: bool,
    options: &MigrateOptions,
    report: &mut DatabaseReport,
) -> Result<()> {
    let diffs = if target_empty {
        docs.iter()
            .map(|d| RevsDiff {
                missing: vec![d.rev],
                possible_ancestors: Vec::new(),
            })
            .collect()
    } else {
        let probe = Rev::beyond_every_leaf();
        let asked: Vec<(String, Vec<Rev>)> = docs
            .iter()
            .map(|d| (d.id.clone(), vec![d.rev, probe]))
            .collect();
        target.revs_diff(db, &asked).await?
    };
    let mut writes = Vec::new();
    let mut unsure = Vec::new();
    for (mut doc, diff) in docs.into_iter().zip(diffs) {
        match plan(&doc, &diff) {
            Plan::Present => report.unchanged += 1,
            Plan::Unsure => unsure.push(doc),
            Plan::Write { over: leaf } => {
                match leaf {
                    None => report.created += 1,
                    Some(leaf) => {
                        if doc.history.is_empty() {
                            doc.history = vec![leaf];
                        }
                        report.updated += 1;
                    }
                }
                report.deleted += u64::from(doc.deleted);
                writes.push(doc);
            }
        }
    }
    let mut new_edits = Vec::new();
    if !unsure.is_empty() {
        let ids: Vec<String> = unsure.iter().map(|d| d.id.clone()).collect();
        let winners = target.current_revisions(db, &ids).await?;
        for (mut doc, current) in unsure.into_iter().zip(winners) {
            match current {
                None => {
                    report.created += 1;
                    report.deleted += u64::from(doc.deleted);
                    writes.push(doc);
                }
                Some((rev, _))
                    if doc.linked_history().contains(&rev)
                        || doc.history.is_empty() && rev.generation() < doc.rev.generation() =>
                {
                    // The winner is an ancestor; another leaf (a deleted branch) is not.
                    if doc.history.is_empty() {
                        doc.history = vec![rev];
                    }
                    report.updated += 1;
                    report.deleted += u64::from(doc.deleted);
                    writes.push(doc);
                }
                Some((rev, deleted)) => {
                    report.conflicts += 1;
                    note(&mut report.conflict_ids, &doc.id);
                    match options.on_conflict {
                        ConflictPolicy::Report => {}
                        ConflictPolicy::TargetWins => report.resolved += 1,
                        ConflictPolicy::SourceWins => {
                            report.resolved += 1;
                            new_edits.push((doc, rev, deleted));
                        }
                    }
                }
            }
        }
    }
    if options.dry_run {
        return Ok(());
    }
    let ids: Vec<String> = writes.iter().map(|d| d.id.clone()).collect();
    // What the target lacks was just asked: the revisions go in as they are, one request.
    let outcomes = target.write_revisions(db, writes).await?;
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        if let Err(e) = outcome {
            report.failed.push((id, e.to_string()));
        }
    }
    for (doc, rev, deleted) in new_edits {
        if let Err(e) = overwrite(target, db, doc, rev, deleted).await {
            report.failed.push(e);
        }
    }
    report.failed.truncate(LISTED_IDS);
    Ok(())
}

/// Source wins: the source's content as a new edit on top of the target's revision.
async fn overwrite(
    target: &dyn DatabaseService,
    db: &str,
    doc: RevisionedDoc,
    current: Rev,
    current_deleted: bool,
) -> std::result::Result<(), (String, String)> {
    let id = doc.id.clone();
    let failed = |e: Error| (id.clone(), e.to_string());
    match (doc.deleted, current_deleted) {
        (true, true) => Ok(()),
        (true, false) => target
            .delete_rev(db, &doc.id, &current)
            .await
            .map(|_| ())
            .map_err(failed),
        (false, _) => {
            let mut map = doc.body;
            if !current_deleted {
                map.insert("_rev".into(), Value::String(current.to_string()));
            }
            target
                .save(db, &doc.id, Document::from(map))
                .await
                .map(|_| ())
                .map_err(failed)
        }
    }
}
