//! What a migration adds to replication, batch by batch ([`MigrationHook`]): each document
//! classified into the report from what the target said it lacks, conflicts confirmed and
//! settled by the [`ConflictPolicy`], and the written batch read back for the inline
//! verification. Restores from archives use the same hook on batches built from the archive.

use std::collections::{HashMap, HashSet, VecDeque};

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::verify::{Expected, InlineCheck};
use super::{ConflictPolicy, DatabaseReport, LISTED_IDS, MigrateOptions, note};
use crate::replicate::{Batch, BatchHook};
use crate::{DatabaseService, DatabaseServiceExt, Document, GetOptions, Result, Rev};

/// A document whose target held a leaf the source's revisions do not descend from: after
/// the write it may hold a conflict.
struct Candidate {
    id: String,
    /// The source's winner: deleted, and its body (when this batch read it).
    source_deleted: bool,
    source_body: Option<Map<String, Value>>,
    /// The target's winner before the write.
    target_winner: Option<Rev>,
}

/// The migration's side of each replication batch (see the module doc).
pub(crate) struct MigrationHook<'a> {
    pub options: &'a MigrateOptions,
    pub report: &'a mut DatabaseReport,
    /// The inline verification of a run from the start (`None` once it cannot decide).
    pub inline: Option<InlineCheck>,
    /// Per batch seen and not finished yet (the next is seen before the one before is
    /// finished), oldest first: what to read back, and the possible conflicts.
    seen: VecDeque<(Option<Expected>, Vec<Candidate>)>,
}

impl<'a> MigrationHook<'a> {
    pub fn new(
        options: &'a MigrateOptions,
        report: &'a mut DatabaseReport,
        inline: Option<InlineCheck>,
    ) -> Self {
        Self {
            options,
            report,
            inline,
            seen: VecDeque::new(),
        }
    }

    /// Records write failures (at most [`LISTED_IDS`]).
    pub fn failed(&mut self, failures: &[(String, String)]) {
        let room = LISTED_IDS.saturating_sub(self.report.failed.len());
        self.report
            .failed
            .extend(failures.iter().take(room).cloned());
    }
}

#[async_trait]
impl BatchHook for MigrationHook<'_> {
    fn dry_run(&self) -> bool {
        self.options.dry_run
    }

    fn started(&mut self, resumed: bool) {
        // A resumed run sees only what changed: the full walk verifies it.
        if resumed {
            self.inline = None;
        }
    }

    fn before_write(&mut self, batch: &Batch) {
        let read: HashMap<(&str, Rev), &crate::RevisionedDoc> = batch
            .docs
            .iter()
            .map(|d| ((d.id.as_str(), d.rev), d))
            .collect();
        let mut expected = Vec::new();
        let mut candidates = Vec::new();
        let mut checkable = true;
        for changed in &batch.changed {
            let winner = changed.leaves[0];
            let winner_doc = read.get(&(changed.id.as_str(), winner)).copied();
            if changed.diff.missing.is_empty() {
                self.report.unchanged += 1;
                // The target had it already: nothing read to check it against.
                checkable &= changed.deleted;
                continue;
            }
            match winner_doc {
                Some(doc) => expected.push(doc),
                None => checkable = false,
            }
            let held = &changed.diff.possible_ancestors;
            // Everything the source's revisions of this document descend from.
            let ancestry: HashSet<Rev> = changed
                .leaves
                .iter()
                .copied()
                .chain(
                    batch
                        .docs
                        .iter()
                        .filter(|d| d.id == changed.id)
                        .flat_map(|d| d.linked_history().iter().copied()),
                )
                .collect();
            if held.is_empty() {
                self.report.created += 1;
                self.report.deleted += u64::from(changed.deleted);
            } else if held.iter().all(|leaf| ancestry.contains(leaf)) {
                self.report.updated += 1;
                self.report.deleted += u64::from(changed.deleted);
            } else {
                candidates.push(Candidate {
                    id: changed.id.clone(),
                    source_deleted: changed.deleted,
                    source_body: winner_doc.map(|d| d.body.clone()),
                    target_winner: held.first().copied(),
                });
            }
        }
        if !checkable {
            self.inline = None;
        }
        let expected = self.inline.is_some().then(|| Expected::of(&expected));
        self.seen.push_back((expected, candidates));
    }

    async fn after_batch(
        &mut self,
        target: &dyn DatabaseService,
        target_db: &str,
        _batch: &Batch,
    ) -> Result<()> {
        let (expected, candidates) = self.seen.pop_front().unwrap_or_default();
        if let (Some(inline), Some(expected)) = (self.inline.as_mut(), expected) {
            inline.check(target, target_db, expected).await?;
        }
        for candidate in candidates {
            let conflicted = self.options.dry_run
                || target
                    .get_with(
                        target_db,
                        &candidate.id,
                        &GetOptions {
                            conflicts: true,
                            ..GetOptions::default()
                        },
                    )
                    .await
                    .map(|doc| doc.get("_conflicts").is_some())
                    .or_else(|e| if e.is_not_found() { Ok(false) } else { Err(e) })?;
            if !conflicted {
                self.report.updated += 1;
                self.report.deleted += u64::from(candidate.source_deleted);
                continue;
            }
            self.report.conflicts += 1;
            note(&mut self.report.conflict_ids, &candidate.id);
            match self.options.on_conflict {
                ConflictPolicy::Report => {}
                _ if self.options.dry_run => self.report.resolved += 1,
                policy => {
                    settle(target, target_db, &candidate, policy).await?;
                    self.report.resolved += 1;
                }
            }
        }
        Ok(())
    }
}

/// Resolves a confirmed conflict by the policy: the source's winner (a deletion included)
/// or the target's former winner written on the winner, the other live leaves deleted.
async fn settle(
    target: &dyn DatabaseService,
    db: &str,
    candidate: &Candidate,
    policy: ConflictPolicy,
) -> Result<()> {
    target
        .resolve_conflicts(db, &candidate.id, |leaves| {
            Ok(match policy {
                ConflictPolicy::SourceWins if candidate.source_deleted => {
                    let mut doc = Document::new();
                    doc.insert("_deleted", true);
                    doc
                }
                ConflictPolicy::SourceWins => {
                    Document::from(candidate.source_body.clone().unwrap_or_default())
                }
                _ => {
                    let former = candidate.target_winner.map(|r| r.to_string());
                    let keep = leaves
                        .iter()
                        .find(|l| l.rev().map(str::to_owned) == former)
                        .unwrap_or(&leaves[0]);
                    keep.clone()
                }
            })
        })
        .await?;
    Ok(())
}
