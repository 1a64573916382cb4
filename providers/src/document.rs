//! `Document`: a JSON object that keeps its key order, plus the result and page types that
//! carry documents.
//!
//! Key order is part of a document's identity on CouchDB (the revision hash covers the body in
//! the order it was sent), so `Document` is backed by an insertion-ordered map and every
//! provider stores and returns fields in the order they were written, with `_id` and `_rev`
//! first on reads.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result, Rev, RevId};

/// A JSON document: an ordered JSON object, optionally carrying `_id` and `_rev`.
///
/// ```
/// use docstore_providers::Document;
///
/// let mut doc = Document::from_json(r#"{"_id":"a","z":1,"b":2}"#).unwrap();
/// doc.insert("c", "three");
/// assert_eq!(doc.id(), Some("a"));
/// assert_eq!(doc.rev(), None);
/// let keys: Vec<&String> = doc.as_map().keys().collect();
/// assert_eq!(keys, ["_id", "z", "b", "c"]); // key order is kept
/// assert!(Document::from_json("[1, 2]").is_err()); // a document is an object
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Document(Map<String, Value>);

impl Document {
    /// An empty document.
    pub fn new() -> Self {
        Self(Map::new())
    }

    /// Wraps a JSON value, which must be an object.
    pub fn from_value(value: Value) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(Error::InvalidDocument {
                location: crate::error::Location::db(""),
                reason: format!("a document must be a JSON object, got {}", kind_of(&other)),
            }),
        }
    }

    /// Parses JSON text, which must be an object.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::InvalidDocument {
            location: crate::error::Location::db(""),
            reason: format!("not valid JSON: {e}"),
        })?;
        Self::from_value(value)
    }

    /// The `_id` field, if present and a string.
    pub fn id(&self) -> Option<&str> {
        self.0.get("_id").and_then(Value::as_str)
    }

    /// The `_rev` field, if present and a string.
    pub fn rev(&self) -> Option<&str> {
        self.0.get("_rev").and_then(Value::as_str)
    }

    /// A field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets a field, keeping its position if it already exists; returns the old value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(key.into(), value.into())
    }

    /// Removes a field, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.0.shift_remove(key)
    }

    /// Sets `_rev` (used to write on top of a known revision).
    pub fn set_rev(&mut self, rev: &Rev) {
        self.0.insert("_rev".into(), Value::String(rev.to_string()));
    }

    /// The fields as a map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The fields as a mutable map.
    pub fn as_map_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.0
    }

    /// The fields.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// The document as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// The body without `_id` and `_rev`, in its order: what revisions hash and stores keep.
    pub fn body(&self) -> Map<String, Value> {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() != "_id" && k.as_str() != "_rev")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Parses a stored body (JSON object text) straight into the document a read returns,
    /// `_id` and `_rev` first, without building the body as a separate map first.
    pub fn from_stored_json(id: &str, rev: &Rev, json: &[u8]) -> serde_json::Result<Self> {
        use serde::de::DeserializeSeed;
        let mut map = Map::with_capacity(16);
        map.insert("_id".into(), Value::String(id.into()));
        map.insert("_rev".into(), Value::String(rev.to_string()));
        let mut de = serde_json::Deserializer::from_slice(json);
        ExtendMap(&mut map).deserialize(&mut de)?;
        de.end()?;
        crate::attachment::strip_encoding_info(&mut map);
        Ok(Self(map))
    }

    /// Builds the document a read returns: `_id`, `_rev`, then the stored body, attachment
    /// stubs as a plain read shows them.
    pub fn assemble(id: &str, rev: &Rev, body: Map<String, Value>) -> Self {
        let mut doc = Self::assemble_stored(id, rev, body);
        crate::attachment::strip_encoding_info(&mut doc.0);
        doc
    }

    /// [`Document::assemble`] keeping attachment stubs as stored (with their encoding).
    pub(crate) fn assemble_stored(id: &str, rev: &Rev, body: Map<String, Value>) -> Self {
        let mut map = Map::with_capacity(body.len() + 2);
        map.insert("_id".into(), Value::String(id.into()));
        map.insert("_rev".into(), Value::String(rev.to_string()));
        map.extend(body);
        Self(map)
    }
}

impl From<Map<String, Value>> for Document {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl From<Document> for Value {
    fn from(doc: Document) -> Self {
        doc.into_value()
    }
}

impl TryFrom<Value> for Document {
    type Error = Error;
    fn try_from(value: Value) -> Result<Self> {
        Self::from_value(value)
    }
}

/// Deserializes a JSON object's entries into an existing map, in order.
struct ExtendMap<'a>(&'a mut Map<String, Value>);

impl<'de> serde::de::DeserializeSeed<'de> for ExtendMap<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ExtendMap<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        while let Some((key, value)) = access.next_entry::<String, Value>()? {
            self.0.insert(key, value);
        }
        Ok(())
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The outcome of one write: the document id and its new revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    /// The document id.
    pub id: String,
    /// The revision the write produced.
    pub rev: Rev,
}

/// One page of a cursor-paginated listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Live documents in id order (raw UTF-8 byte order).
    pub docs: Vec<Document>,
    /// Pass this as `after` to get the next page; `None` when this is the last page.
    pub next: Option<String>,
}

/// One entry of a changes feed: the latest change of one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Opaque sequence token of this change.
    pub seq: String,
    /// The document id.
    pub id: String,
    /// The document's current (winning) revision.
    pub rev: Rev,
    /// Whether the document is deleted (its winner is a tombstone).
    pub deleted: bool,
    /// The document's other leaf revisions (conflicts, then deleted ones, each highest first:
    /// CouchDB's `style=all_docs` order); empty for a document without branches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_leaves: Vec<Rev>,
}

/// What [`crate::DatabaseService::get_with`] adds to a document, as CouchDB's `GET` query
/// parameters do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Read this revision instead of the winner: a leaf, or an ancestor whose body the
    /// database still holds (until compaction). A deleted revision reads as its tombstone.
    pub rev: Option<Rev>,
    /// `_conflicts`: the other live leaves, highest first (when there are any).
    pub conflicts: bool,
    /// `_deleted_conflicts`: the deleted leaves other than the winner, highest first.
    pub deleted_conflicts: bool,
    /// `_revisions`: the revision's ancestors the database knows, `{start, ids}`.
    pub revs: bool,
    /// `_revs_info`: each of those revisions with `available`, `deleted` or `missing`.
    pub revs_info: bool,
    /// Attachments with their data inline (base64, decoded), not as stubs.
    pub attachments: bool,
    /// Attachment stubs with `encoding` and `encoded_length` when stored compressed.
    pub att_encoding_info: bool,
}

impl GetOptions {
    /// Every option but `rev`: what CouchDB's `conflicts&deleted_conflicts&revs&revs_info`
    /// shows.
    pub fn everything() -> Self {
        Self {
            rev: None,
            conflicts: true,
            deleted_conflicts: true,
            revs: true,
            revs_info: true,
            attachments: false,
            att_encoding_info: false,
        }
    }
}

/// Which revisions [`crate::DatabaseService::open_revs`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenRevs {
    /// Every leaf (CouchDB's `open_revs=all`).
    All,
    /// These revisions (CouchDB's `open_revs=[...]`); with `latest`, the leaves under each.
    Revs {
        /// The revisions asked for.
        revs: Vec<Rev>,
        /// Read the leaves below each revision instead (CouchDB's `latest=true`).
        latest: bool,
    },
}

/// One answer of [`crate::DatabaseService::open_revs`].
#[derive(Debug, Clone, PartialEq)]
pub enum OpenRev {
    /// The revision, with `_deleted` for a tombstone (and `_revisions` when asked for).
    Found(Document),
    /// The database does not hold this revision's body.
    Missing(Rev),
}

/// One page of a changes feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesPage {
    /// Changes in sequence order, one per document, deletions included.
    pub results: Vec<Change>,
    /// Pass this as `since` to continue after this page.
    pub last_seq: String,
    /// How many changes remain after this page.
    pub pending: u64,
}

/// Counts and position of a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// The database name.
    pub name: String,
    /// Live documents (not deleted, not `_local`).
    pub doc_count: u64,
    /// Deleted documents (tombstones).
    pub doc_del_count: u64,
    /// Opaque sequence token of the latest change.
    pub update_seq: String,
}

/// A document at a given revision, as replication moves it: CouchDB's `_bulk_docs` with
/// `new_edits: false`. See [`crate::DatabaseService::put_revisions`].
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionedDoc {
    /// The document id.
    pub id: String,
    /// The revision to store, as it is (not a new edit).
    pub rev: Rev,
    /// Whether this revision is a deletion (tombstone).
    pub deleted: bool,
    /// The body, without `_id`/`_rev` (a tombstone's fields, usually none). Attachments are
    /// in `_attachments` as CouchDB's `_bulk_docs` takes them: with their `data` inline
    /// (base64), or as stubs naming attachments the target already holds for the document.
    pub body: Map<String, Value>,
    /// Known ancestors of `rev`, newest first (may be empty). When the target's current
    /// revision is among them, `rev` extends it (no conflict), as in CouchDB's revision tree.
    pub history: Vec<Rev>,
}

impl RevisionedDoc {
    /// A revision as CouchDB's `_bulk_docs` with `new_edits: false` takes it (and
    /// `_bulk_get?revs=true` gives it): `_id`, the revision in `_revisions` (`{start, ids}`,
    /// newest first) or else in `_rev` (then without ancestors), `_deleted`, and the body's
    /// other fields, a tombstone's included. As on CouchDB, `_revisions` decides the revision
    /// when both are given, an id of 32 characters must be hex, and a document with neither is
    /// refused. Errors are `InvalidDocument` (or `InvalidDocumentId`) naming `db`.
    pub fn from_couchdb_json(db: &str, mut map: Map<String, Value>) -> Result<Self> {
        let id = match map.shift_remove("_id") {
            Some(Value::String(id)) => id,
            _ => {
                return Err(Error::InvalidDocumentId {
                    db: db.into(),
                    id: String::new(),
                    reason: "a revision to store must carry its _id as a string".into(),
                });
            }
        };
        let bad = |reason: String| Error::invalid_document(db, Some(&id), reason);
        let rev_field = match map.shift_remove("_rev") {
            None => None,
            Some(Value::String(text)) => Some(Rev::parse(&text).map_err(|e| bad(e.to_string()))?),
            Some(other) => return Err(bad(format!("_rev must be a string, not {other}"))),
        };
        let deleted = match map.shift_remove("_deleted") {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(other) => return Err(bad(format!("_deleted must be true or false, not {other}"))),
        };
        let (rev, history) = match map.shift_remove("_revisions") {
            Some(revisions) => revisions_of(&revisions).map_err(bad)?,
            None => match rev_field {
                Some(rev) => (rev, Vec::new()),
                None => {
                    return Err(bad(
                        "a revision to store needs _rev or _revisions (CouchDB's new_edits: false)"
                            .into(),
                    ));
                }
            },
        };
        if let Some(key) = map
            .keys()
            .find(|k| k.starts_with('_') && *k != crate::attachment::ATTACHMENTS)
        {
            return Err(bad(format!(
                "top-level field {key:?} is reserved (a revision to store may carry _id, _rev, \
                 _revisions, _deleted and _attachments)"
            )));
        }
        Ok(Self {
            id,
            rev,
            deleted,
            body: map,
            history,
        })
    }

    /// The document as CouchDB's `_bulk_docs` with `new_edits: false` takes it: `_id`,
    /// `_rev`, `_deleted` for a tombstone, `_revisions` with the linked history (when there
    /// is one), then the body.
    pub fn to_couchdb_json(&self) -> Map<String, Value> {
        let mut map = Map::with_capacity(self.body.len() + 4);
        map.insert("_id".into(), Value::String(self.id.clone()));
        map.insert("_rev".into(), Value::String(self.rev.to_string()));
        if self.deleted {
            map.insert("_deleted".into(), Value::Bool(true));
        }
        let linked = self.linked_history();
        if !linked.is_empty() {
            let ids: Vec<Value> = std::iter::once(&self.rev)
                .chain(linked)
                .map(|r| Value::String(r.id().to_string()))
                .collect();
            let mut revisions = Map::new();
            revisions.insert("start".into(), Value::from(self.rev.generation()));
            revisions.insert("ids".into(), Value::Array(ids));
            map.insert("_revisions".into(), Value::Object(revisions));
        }
        map.extend(self.body.iter().map(|(k, v)| (k.clone(), v.clone())));
        map
    }

    /// The ancestors a revision tree can link `rev` to: the leading run of `history` whose
    /// generations count down one by one from `rev`'s (CouchDB's `_revisions` can express
    /// nothing else).
    pub fn linked_history(&self) -> &[Rev] {
        let run = self
            .history
            .iter()
            .zip(1..)
            .take_while(|(a, back)| {
                self.rev.generation().checked_sub(*back) == Some(a.generation())
            })
            .count();
        &self.history[..run]
    }
}

/// What [`crate::DatabaseServiceExt::resolve_conflicts`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The document's winning revision now: the merge, or the winner as it was when there
    /// was nothing to resolve.
    pub rev: Rev,
    /// The losing leaves deleted.
    pub removed: Vec<Rev>,
}

/// CouchDB's `_revs_diff` answer for one document: which of the revisions asked about the
/// database lacks, and the document's leaf revisions that may be their ancestors. See
/// [`crate::DatabaseService::revs_diff`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevsDiff {
    /// The revisions asked about that the database does not hold (none: it has them all).
    pub missing: Vec<Rev>,
    /// The document's leaf revisions (live or deleted) of a lower generation than some
    /// missing revision; empty when nothing is missing or the document does not exist.
    pub possible_ancestors: Vec<Rev>,
}

/// What [`crate::DatabaseService::put_revisions`] did with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisionOutcome {
    /// The revision was stored and is now the document's winning revision.
    Written,
    /// The database already held this revision (as a leaf or an ancestor); nothing was
    /// written.
    Present,
    /// The revision was stored as a leaf of its own, but another leaf wins (CouchDB's rule):
    /// the document now has a conflict, which [`crate::GetOptions::conflicts`] shows.
    Losing,
}

/// The revision and its ancestors (newest first) that CouchDB's `_revisions` names.
fn revisions_of(revisions: &Value) -> std::result::Result<(Rev, Vec<Rev>), String> {
    let start = revisions
        .get("start")
        .and_then(Value::as_u64)
        .ok_or("_revisions.start must be a non-negative integer")?;
    let ids = revisions
        .get("ids")
        .and_then(Value::as_array)
        .filter(|ids| !ids.is_empty())
        .ok_or("_revisions.ids must be a non-empty list of revision ids")?;
    let mut revs = Vec::with_capacity(ids.len());
    for (back, id) in ids.iter().enumerate() {
        let text = id.as_str().ok_or("_revisions.ids must hold strings")?;
        let generation = start
            .checked_sub(back as u64)
            .ok_or("_revisions has more ids than its start generation allows")?;
        let id =
            RevId::parse(text).map_err(|why| format!("_revisions.ids holds {text:?}: {why}"))?;
        revs.push(Rev::with_id(generation, id));
    }
    let rev = revs.remove(0);
    Ok((rev, revs))
}
