//! `Document`: a JSON object that keeps its key order, plus the result and page types that
//! carry documents.
//!
//! Key order is part of a document's identity on CouchDB (the revision hash covers the body in
//! the order it was sent), so `Document` is backed by an insertion-ordered map and every
//! provider stores and returns fields in the order they were written, with `_id` and `_rev`
//! first on reads.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result, Rev};

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
        Ok(Self(map))
    }

    /// Builds the document a read returns: `_id`, `_rev`, then the stored body.
    pub fn assemble(id: &str, rev: &Rev, body: Map<String, Value>) -> Self {
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
    /// Whether the document is deleted (a tombstone).
    pub deleted: bool,
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
    /// The body, without `_id`/`_rev` (empty for a tombstone).
    pub body: Map<String, Value>,
    /// Known ancestors of `rev`, newest first (may be empty). When the target's current
    /// revision is among them, `rev` extends it (no conflict), as in CouchDB's revision tree.
    pub history: Vec<Rev>,
}

impl RevisionedDoc {
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
    /// The target already had exactly this revision as its winner; nothing was written.
    Present,
    /// The current revision wins over this one (CouchDB's rule), so it did not become the
    /// winner: CouchDB keeps it as a losing conflict branch, memory and embedded (which keep
    /// winners only) drop it.
    Lost,
}
