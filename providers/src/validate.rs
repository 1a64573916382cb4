//! Input validation shared by every provider, so the same input gets the same error
//! everywhere (a name valid in memory never fails on CouchDB).
//!
//! Rules (CouchDB 3): database names match `^[a-z][a-z0-9_$()+/-]*$` and have at most 238
//! characters; document ids are non-empty and do not start with `_`; a body is a JSON object
//! whose top-level `_`-fields are only `_id` (matching the id argument) and `_rev` (a valid
//! revision); numbers are finite.

use serde_json::Value;

use crate::rev::is_integer_text;
use crate::{Document, Error, Result, Rev};

/// The longest database name CouchDB accepts.
pub const MAX_DB_NAME_LEN: usize = 238;

/// Checks a database name against CouchDB's rule.
pub fn database_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidDatabaseName {
            name: name.into(),
            reason: reason.into(),
        })
    };
    let Some(first) = name.chars().next() else {
        return bad("the name is empty");
    };
    if !first.is_ascii_lowercase() {
        return bad("it must start with a lowercase letter a-z");
    }
    if name.len() > MAX_DB_NAME_LEN {
        return bad("it is longer than 238 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+/-".contains(c)))
    {
        return Err(Error::InvalidDatabaseName {
            name: name.into(),
            reason: format!("character {c:?} is not allowed"),
        });
    }
    Ok(())
}

/// A database name and every id of a call that is refused whole on one bad id
/// (`current_revisions`).
pub fn database_and_ids(db: &str, ids: &[String]) -> Result<()> {
    database_name(db)?;
    ids.iter().try_for_each(|id| document_id(db, id))
}

/// Checks a document id: non-empty, not starting with `_` (reserved by CouchDB).
pub fn document_id(db: &str, id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "the id is empty"
    } else if id.starts_with('_') {
        "ids starting with '_' are reserved (_design/, _local/ ...)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidDocumentId {
        db: db.into(),
        id: id.into(),
        reason: reason.into(),
    })
}

/// Checks an id used for a `_local` document (the part after `_local/`).
pub fn local_id(db: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidDocumentId {
            db: db.into(),
            id: id.into(),
            reason: "the id is empty".into(),
        });
    }
    Ok(())
}

/// Checks a page size (`list_page`, `changes`): at least 1.
pub fn limit(limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(Error::InvalidQuery {
            reason: "limit must be at least 1".into(),
        });
    }
    Ok(())
}

/// Parses a changes token of the providers whose tokens are sequence numbers (memory,
/// embedded); `None` is the start of the feed.
pub fn sequence_token(since: Option<&str>, provider: &str) -> Result<u64> {
    since.map_or(Ok(0), |token| {
        token.parse().map_err(|_| Error::InvalidQuery {
            reason: format!("changes token {token:?} was not issued by the {provider} provider"),
        })
    })
}

/// Checks a `revs_limit`: at least 1 (CouchDB refuses 0 and negative values).
pub fn revs_limit(limit: u64) -> Result<()> {
    if limit == 0 {
        return Err(Error::InvalidQuery {
            reason: "revs_limit must be at least 1".into(),
        });
    }
    Ok(())
}

/// What a body's reserved fields ask for: the revision it edits (`_rev`) and whether it is a
/// deletion (`_deleted: true`, which CouchDB allows with other fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyFields {
    /// `_rev`, when given.
    pub rev: Option<Rev>,
    /// `_deleted: true`.
    pub deleted: bool,
}

/// Checks a document body written as `id`: a JSON object whose only top-level `_` fields are
/// `_id` (equal to `id`), `_rev` (a revision), `_deleted` (a boolean) and `_attachments`, with
/// numbers CouchDB can store.
pub fn body(db: &str, id: &str, doc: &Document) -> Result<BodyFields> {
    let invalid = |reason: String| Error::invalid_document(db, Some(id), reason);
    let mut fields = BodyFields::default();
    for (key, value) in doc.as_map() {
        match key.as_str() {
            "_id" => match value.as_str() {
                Some(body_id) if body_id == id => {}
                Some(body_id) => {
                    return Err(invalid(format!(
                        "the body's _id {body_id:?} differs from the id argument"
                    )));
                }
                None => return Err(invalid("_id must be a string".into())),
            },
            "_rev" => match value {
                Value::String(text) => {
                    fields.rev = Some(Rev::parse(text).map_err(|_| {
                        invalid(format!("_rev {text:?} is not a revision (N-<32 hex>)"))
                    })?);
                }
                _ => return Err(invalid("_rev must be a string".into())),
            },
            "_deleted" => match value {
                Value::Bool(deleted) => fields.deleted = *deleted,
                _ => return Err(invalid("_deleted must be true or false".into())),
            },
            // Entries are checked where attachments are parsed (`attachment::check_inputs`).
            "_attachments" if value.is_object() => {}
            "_attachments" => {
                return Err(invalid(
                    "_attachments must be an object of attachments by name".into(),
                ));
            }
            k if k.starts_with('_') => {
                return Err(invalid(format!(
                    "top-level field {k:?} is reserved (only _id, _rev, _deleted and \
                     _attachments may start with '_')"
                )));
            }
            _ => check_numbers(value).map_err(invalid)?,
        }
    }
    Ok(fields)
}

/// Rejects numbers JSON text can carry but CouchDB cannot store (overflowing to infinity).
fn check_numbers(value: &Value) -> std::result::Result<(), String> {
    match value {
        Value::Number(n) => {
            let text = n.as_str();
            if !is_integer_text(text) && !text.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(format!("number {text} is out of range for a 64-bit float"));
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        for ok in ["a", "abc", "a0_$()+/-", &"a".repeat(238)] {
            assert!(database_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "0a",
            "_users",
            "a b",
            "aé",
            "a.b",
            &"a".repeat(239),
        ] {
            assert!(
                matches!(database_name(bad), Err(Error::InvalidDatabaseName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies() {
        let doc = |t: &str| Document::from_json(t).unwrap();
        assert!(body("d", "x", &doc(r#"{"_id":"x","a":1}"#)).is_ok());
        assert!(body("d", "x", &doc(r#"{"_id":"y"}"#)).is_err());
        assert!(body("d", "x", &doc(r#"{"_attachments":{}}"#)).is_ok());
        assert!(body("d", "x", &doc(r#"{"_attachments":7}"#)).is_err());
        assert!(body("d", "x", &doc(r#"{"_rev":"nope"}"#)).is_err());
        assert!(body("d", "x", &doc(r#"{"f":1e400}"#)).is_err());
        assert!(body("d", "x", &doc(r#"{"nested":{"_ok":1}}"#)).is_ok());
    }
}
