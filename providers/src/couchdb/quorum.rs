//! Writes on a CouchDB cluster: every copy acknowledges, and a write that not every copy
//! took is settled the way a single node would have decided it.
//!
//! A clustered database keeps `n` copies of each shard (3 by default). CouchDB acknowledges
//! a write once `w` copies took it (2 by default), and each copy checks `_rev` on its own.
//! Two consequences a single node never shows, both measured on a 3-node 3.5 cluster:
//! a read served by the copy that has not applied the write yet misses it (listings,
//! `_find` and `_changes` read one copy per shard range), and an edit with a stale `_rev`
//! that reaches that copy first is taken there, answered `202 Accepted`, and becomes a
//! conflicting branch once the copies sync, where a single node answers 409.
//!
//! So, on a cluster, this provider:
//! - sends every document write (attachment uploads and removals too) with `w` = the
//!   database's `n` (learned once per database from `GET /db`): `201` means every copy
//!   holds the write, so every later read sees it;
//! - treats `202 Accepted` (some copy did not take it: a conflict there, or a node down) as
//!   undecided, and settles it: it reads every leaf of the document from every copy it can
//!   reach (`_bulk_get`, `r` = `n`) and compares its revision with its *siblings* (leaves of
//!   the same generation on the same parent: writes made concurrently from the same
//!   revision). The one CouchDB would pick as the winner (live before deleted, then the
//!   greater revision id) keeps its write; every other writer removes its branch (a
//!   tombstone on it) and gets `Conflict`, as a 409 on a single node would have said. Every
//!   writer of a race reaches the same verdict: each was answered only after every copy
//!   had decided, so each sees the same siblings.
//!
//! - writes each document from one task at a time (see [`DocumentTurn`]).
//!
//! A single node (`GET /_membership` lists one node) gets none of this: no `w`, no lookups.

use std::collections::HashMap;

use parking_lot::Mutex;
use reqwest::Method;
use serde_json::Value;

use super::http::{Idempotency, Target, status_error};
use super::{CouchDbProvider, rev_of};
use crate::turns::{Turn, Turns};
use crate::{Error, Result, Rev};

/// (database, document id).
type DocumentKey = (String, String);

/// What this provider knows of the server's layout.
#[derive(Default)]
pub(super) struct Copies {
    /// `GET /_membership` listed one node: no database has more than one copy.
    single_node: std::sync::atomic::AtomicBool,
    /// Database → its `n` (copies of each shard), learned with `GET /db`.
    per_database: Mutex<HashMap<String, u32>>,
    /// (database, id) → the turn a single-document write holds on a cluster (see
    /// [`DocumentTurn`]).
    writing: Turns<DocumentKey>,
}

/// One document's writes from this provider, one at a time, on a cluster.
///
/// Two tasks that read the same revision and make the same change compute the same new
/// revision. A single node takes the first and answers the second 409. A cluster's copies
/// may each take one of them first: then both writes are the same revision, and both
/// writers are told it was theirs (an update is lost; settling cannot tell the two
/// apart). Taking turns per document within this provider removes that race, and any other
/// between its own tasks: the second write then meets a revision every copy holds, and
/// gets the 409. Writers in other processes racing the same way are not covered (the
/// README's cluster section says so).
pub(super) type DocumentTurn<'a> = Turn<'a, DocumentKey>;

impl Copies {
    /// Forgets a database's `n` (it was deleted; a new one may have another).
    pub(super) fn forget(&self, db: &str) {
        self.per_database.lock().remove(db);
    }
}

/// A write answered `202 Accepted`, to settle.
pub(super) struct Accepted<'a> {
    pub id: &'a str,
    /// The revision the server gave it.
    pub rev: Rev,
}

/// One leaf of a document as `_bulk_get` returns it.
struct Leaf {
    rev: Rev,
    parent: Option<String>,
    deleted: bool,
}

/// `url` with `w` added to its query.
pub(super) fn with_write_quorum(url: &str, w: u32) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}w={w}")
}

impl CouchDbProvider {
    /// Asks whether the server is one node. Admins only: anyone else, or any answer that
    /// does not list the nodes, leaves it unknown, and each database's `n` is looked up
    /// (right on one node too, one request more per database).
    pub(super) async fn learn_layout(&self) {
        let url = self.http.url(&["_membership"], &[]);
        let nodes = match self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await
        {
            Ok(reply) if reply.status.is_success() => reply
                .json()
                .ok()
                .and_then(|v| v["cluster_nodes"].as_array().map(Vec::len)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "GET /_membership failed; copies are looked up per database");
                None
            }
        };
        self.copies
            .single_node
            .store(nodes == Some(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// The `w` to send with a write into `db`: its `n` on a cluster, none on a single node
    /// or for a database that does not exist yet (the write creates it, then asks again).
    pub(super) async fn write_quorum(&self, db: &str) -> Result<Option<u32>> {
        if self
            .copies
            .single_node
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(None);
        }
        if let Some(&n) = self.copies.per_database.lock().get(db) {
            return Ok((n > 1).then_some(n));
        }
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if reply.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let n = reply.json()?["cluster"]["n"]
            .as_u64()
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
        self.copies.per_database.lock().insert(db.to_owned(), n);
        Ok((n > 1).then_some(n))
    }

    /// This provider's turn to write document `id` of `db`: on a cluster, after every
    /// other single-document write of it from this provider has ended; at once (and
    /// nothing to hold) on a single node.
    pub(super) async fn document_turn(
        &self,
        db: &str,
        id: &str,
    ) -> Result<Option<DocumentTurn<'_>>> {
        if self.write_quorum(db).await?.is_none() {
            return Ok(None);
        }
        let key = (db.to_owned(), id.to_owned());
        Ok(Some(self.copies.writing.take(key).await))
    }

    /// Settles writes answered `202 Accepted` (see the module doc): for each, its revision,
    /// or `Conflict` when a sibling wins (its branch then removed).
    pub(super) async fn settle_accepted(
        &self,
        db: &str,
        accepted: &[Accepted<'_>],
    ) -> Vec<Result<Rev>> {
        let leaves = match self.leaves(db, accepted).await {
            Ok(leaves) => leaves,
            // Not settled: the writes stand as the server took them, which is what a
            // caller would have had without the check.
            Err(e) => {
                tracing::warn!(db, error = %e, "could not check writes not every copy took");
                return accepted.iter().map(|a| Ok(a.rev)).collect();
            }
        };
        let mut outcomes = Vec::with_capacity(accepted.len());
        for (written, leaves) in accepted.iter().zip(leaves) {
            outcomes.push(self.settle_one(db, written, &leaves).await);
        }
        outcomes
    }

    async fn settle_one(&self, db: &str, written: &Accepted<'_>, leaves: &[Leaf]) -> Result<Rev> {
        tracing::debug!(
            db,
            id = written.id,
            ours = %written.rev,
            leaves = ?leaves.iter().map(|l| (l.rev.to_string(), l.parent.clone(), l.deleted)).collect::<Vec<_>>(),
            "settling a write not every copy took"
        );
        let Some((ours, winner)) = race_lost(leaves, &written.rev) else {
            return Ok(written.rev);
        };
        tracing::info!(
            db,
            id = written.id,
            ours = %ours.rev,
            winner = %winner.rev,
            "a concurrent write from the same revision won on the cluster's copies"
        );
        if !ours.deleted {
            let rev = ours.rev.to_string();
            let url = self.http.url(&[db, written.id], &[("rev", &rev)]);
            match self
                .http
                .send(Method::DELETE, &url, None, Idempotency::Unsafe)
                .await
            {
                Ok(reply) if reply.status.is_success() => {}
                Ok(reply) => tracing::warn!(
                    db,
                    id = written.id,
                    status = %reply.status,
                    "could not remove a losing branch; it stays as a conflict"
                ),
                Err(e) => tracing::warn!(
                    db,
                    id = written.id,
                    error = %e,
                    "could not remove a losing branch; it stays as a conflict"
                ),
            }
        }
        self.revs.forget(db, written.id);
        Err(Error::conflict(db, written.id))
    }

    /// Every leaf of each written document, from every copy (`_bulk_get` without `rev`
    /// answers all leaves, with their histories).
    async fn leaves(&self, db: &str, accepted: &[Accepted<'_>]) -> Result<Vec<Vec<Leaf>>> {
        let n = self.write_quorum(db).await?.unwrap_or(1).to_string();
        let ids: Vec<&str> = accepted.iter().map(|a| a.id).collect();
        let answers = self
            .bulk_get_leaves(db, &ids, &[("revs", "true"), ("r", &n)])
            .await?
            .ok_or_else(|| Error::db_not_found(db))?;
        Ok(answers
            .iter()
            .map(|docs| {
                docs.iter()
                    .filter_map(|d| d.get("ok"))
                    .filter_map(leaf_of)
                    .collect()
            })
            .collect())
    }
}

/// Whether the write of revision `ours` lost a race, given the document's leaves: its leaf
/// and the sibling that wins. A sibling is a leaf of the same generation on the same parent
/// (made from the same revision); it wins as CouchDB picks winners: live before deleted,
/// then the greater revision. `ours` no longer a leaf (built upon since) or not seen: not
/// lost.
fn race_lost<'a>(leaves: &'a [Leaf], ours: &Rev) -> Option<(&'a Leaf, &'a Leaf)> {
    let ours = leaves.iter().find(|l| l.rev == *ours)?;
    let winner = leaves
        .iter()
        .filter(|l| {
            l.rev != ours.rev
                && l.rev.generation() == ours.rev.generation()
                && l.parent == ours.parent
        })
        .max_by_key(|l| (!l.deleted, l.rev))?;
    ((!winner.deleted, winner.rev) > (!ours.deleted, ours.rev)).then_some((ours, winner))
}

/// A leaf from its `_rev`, `_deleted` and `_revisions` (the parent's id is the second).
fn leaf_of(doc: &Value) -> Option<Leaf> {
    Some(Leaf {
        rev: rev_of(&doc["_rev"])?,
        parent: doc["_revisions"]["ids"]
            .get(1)
            .and_then(Value::as_str)
            .map(str::to_owned),
        deleted: doc["_deleted"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(rev: &str, parent: Option<&str>, deleted: bool) -> Leaf {
        Leaf {
            rev: Rev::parse(rev).expect("a revision"),
            parent: parent.map(str::to_owned),
            deleted,
        }
    }

    const P: &str = "11111111111111111111111111111111";
    const LOW: &str = "2-22222222222222222222222222222222";
    const HIGH: &str = "2-ffffffffffffffffffffffffffffffff";

    #[test]
    fn the_greater_sibling_wins_and_every_writer_agrees() {
        let leaves = [leaf(LOW, Some(P), false), leaf(HIGH, Some(P), false)];
        let low = Rev::parse(LOW).expect("a revision");
        let high = Rev::parse(HIGH).expect("a revision");
        let (ours, winner) = race_lost(&leaves, &low).expect("the lower one lost");
        assert_eq!((ours.rev, winner.rev), (low, high));
        assert!(
            race_lost(&leaves, &high).is_none(),
            "the greater one stands"
        );
    }

    #[test]
    fn a_live_sibling_beats_a_deletion_whatever_the_ids() {
        let leaves = [leaf(HIGH, Some(P), true), leaf(LOW, Some(P), false)];
        let deletion = Rev::parse(HIGH).expect("a revision");
        let update = Rev::parse(LOW).expect("a revision");
        assert!(race_lost(&leaves, &deletion).is_some(), "the deletion lost");
        assert!(race_lost(&leaves, &update).is_none(), "the update stands");
    }

    #[test]
    fn leaves_of_other_parents_or_generations_are_not_rivals() {
        let other_parent = "2-ffffffffffffffffffffffffffffff00";
        let leaves = [
            leaf(LOW, Some(P), false),
            leaf(
                other_parent,
                Some("33333333333333333333333333333333"),
                false,
            ),
            leaf(
                "3-ffffffffffffffffffffffffffffffff",
                Some("44444444444444444444444444444444"),
                false,
            ),
        ];
        assert!(race_lost(&leaves, &Rev::parse(LOW).expect("a revision")).is_none());
    }

    #[test]
    fn a_write_built_upon_since_stands() {
        let leaves = [leaf(
            "3-ffffffffffffffffffffffffffffffff",
            Some("22222222222222222222222222222222"),
            false,
        )];
        assert!(race_lost(&leaves, &Rev::parse(LOW).expect("a revision")).is_none());
    }

    #[test]
    fn creations_race_as_siblings_without_a_parent() {
        let leaves = [
            leaf("1-22222222222222222222222222222222", None, false),
            leaf("1-ffffffffffffffffffffffffffffffff", None, false),
        ];
        let lower = Rev::parse("1-22222222222222222222222222222222").expect("a revision");
        assert!(race_lost(&leaves, &lower).is_some());
    }

    #[test]
    fn the_write_quorum_joins_the_query() {
        assert_eq!(with_write_quorum("http://h/db/id", 3), "http://h/db/id?w=3");
        assert_eq!(
            with_write_quorum("http://h/db/id?rev=1-a", 3),
            "http://h/db/id?rev=1-a&w=3"
        );
    }
}
