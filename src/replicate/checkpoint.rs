//! Replication checkpoints, as CouchDB's replicator keeps them: a `_local/<replication id>`
//! document in both the source and the target database, holding the session that wrote it,
//! the source sequence reached, and a history of sessions. A run starts from the sequence
//! both sides agree on: the same latest session, or else the most recent session both
//! histories hold; with none, from the start of the source's feed.
//!
//! The replication id is the MD5 of the source's and target's locations and databases and of
//! the filter (`doc_ids`, selector), so a different filter replicates afresh and the same
//! one resumes.
//!
//! Document layout (`_local/docstore-rep-<id>`):
//!
//! ```text
//! {"replication_id": id, "session_id": s, "source_last_seq": seq,
//!  "history": [{"session_id", "start_time", "end_time", "start_last_seq", "end_last_seq",
//!               "recorded_seq", "missing_checked", "missing_found", "docs_read",
//!               "docs_written", "doc_write_failures"}, … newest first, at most 50]}
//! ```

use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::{ReplicateOptions, ReplicationReport};
use crate::{DatabaseService, Document, Error, Result};

/// Sessions kept in a checkpoint's history (CouchDB keeps 50).
const HISTORY: usize = 50;

/// The replication id of `source/source_db → target/target_db` with `options`' filter.
pub(crate) fn replication_id(
    source: &dyn DatabaseService,
    source_db: &str,
    target: &dyn DatabaseService,
    target_db: &str,
    options: &ReplicateOptions,
) -> String {
    let mut doc_ids = options.doc_ids.clone();
    if let Some(ids) = doc_ids.as_mut() {
        ids.sort();
        ids.dedup();
    }
    let identity = json!({
        "version": 1,
        "source": [source.location(), source_db],
        "target": [target.location(), target_db],
        "doc_ids": doc_ids,
        "selector": options.selector,
    });
    let digest = Md5::digest(identity.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `_local` id of a replication's checkpoints.
pub(crate) fn checkpoint_id(replication_id: &str) -> String {
    format!("docstore-rep-{replication_id}")
}

/// A checkpoint document as read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checkpoint {
    pub session_id: Option<String>,
    pub source_last_seq: Option<String>,
    pub history: Vec<Value>,
}

impl Checkpoint {
    fn from_doc(doc: &Document) -> Self {
        let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
        Self {
            session_id: text("session_id"),
            source_last_seq: text("source_last_seq"),
            history: doc
                .get("history")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// Reads the checkpoint of `id` in `db`: `Ok(None)` when there is none, `Err` with
/// [`Error::is_database_missing`] when the database itself is missing.
pub(crate) async fn read(
    service: &dyn DatabaseService,
    db: &str,
    id: &str,
) -> Result<Option<Checkpoint>> {
    match service.get_local(db, id).await {
        Ok(doc) => Ok(Some(Checkpoint::from_doc(&doc))),
        Err(e) if e.is_not_found() && !e.is_database_missing() => Ok(None),
        Err(e) => Err(e),
    }
}

/// CouchDB's `compare_replication_logs`: where a run starts given both sides' checkpoints.
pub(crate) fn start_seq(
    source: Option<&Checkpoint>,
    target: Option<&Checkpoint>,
) -> Option<String> {
    let (source, target) = (source?, target?);
    if source.session_id.is_some() && source.session_id == target.session_id {
        return source.source_last_seq.clone();
    }
    // The most recent session of the source's history that the target's also holds.
    let sessions = |history: &[Value]| -> Vec<String> {
        history
            .iter()
            .filter_map(|h| {
                h.get("session_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect()
    };
    let target_sessions = sessions(&target.history);
    source
        .history
        .iter()
        .find(|h| {
            h.get("session_id")
                .and_then(Value::as_str)
                .is_some_and(|s| target_sessions.iter().any(|t| t == s))
        })
        .and_then(|h| {
            h.get("recorded_seq")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
}

/// The checkpoint document for the current state of a run, its session at the head of
/// `history` (the previous checkpoint's history, without this session's earlier entry).
pub(crate) fn document(
    report: &ReplicationReport,
    previous: &[Value],
    seq: &str,
) -> Result<Document> {
    let entry = json!({
        "session_id": report.session_id,
        "start_time": report.start_time,
        "end_time": unix_now(),
        "start_last_seq": report.start_last_seq,
        "end_last_seq": seq,
        "recorded_seq": seq,
        "missing_checked": report.missing_checked,
        "missing_found": report.missing_found,
        "docs_read": report.docs_read,
        "docs_written": report.docs_written,
        "doc_write_failures": report.doc_write_failures,
    });
    let mut history = vec![entry];
    history.extend(
        previous
            .iter()
            .filter(|h| h.get("session_id").and_then(Value::as_str) != Some(&report.session_id))
            .take(HISTORY - 1)
            .cloned(),
    );
    Document::from_value(json!({
        "replication_id": report.replication_id,
        "session_id": report.session_id,
        "source_last_seq": seq,
        "history": history,
    }))
    .map_err(|_| Error::storage("a checkpoint is not an object"))
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(session: &str, seq: &str, history: &[(&str, &str)]) -> Checkpoint {
        Checkpoint {
            session_id: Some(session.into()),
            source_last_seq: Some(seq.into()),
            history: history
                .iter()
                .map(|(s, r)| json!({"session_id": s, "recorded_seq": r}))
                .collect(),
        }
    }

    #[test]
    fn runs_start_where_both_sides_agree() {
        let same = log("s2", "20", &[("s2", "20"), ("s1", "10")]);
        assert_eq!(start_seq(Some(&same), Some(&same)).as_deref(), Some("20"));
        // The target missed the last checkpoint (killed between the two writes).
        let target = log("s1", "10", &[("s1", "10")]);
        assert_eq!(start_seq(Some(&same), Some(&target)).as_deref(), Some("10"));
        let stranger = log("x", "5", &[("x", "5")]);
        assert_eq!(start_seq(Some(&same), Some(&stranger)), None);
        assert_eq!(start_seq(None, Some(&same)), None);
    }
}
