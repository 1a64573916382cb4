//! The one error type every provider maps into.
//!
//! Variants are chosen by meaning, not by provider: a missing document is `NotFound` whether
//! the memory store, fjall or a CouchDB server said so. Each variant carries the database and
//! document id where they are known, says whether retrying can help ([`Error::is_retryable`])
//! and maps to the HTTP status an application backend should answer with
//! ([`Error::http_status`]). No variant ever holds a password: providers redact URLs before
//! building errors.

use std::fmt;

/// `Result` with docstore's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where an error happened: a database and, when relevant, a document id.
///
/// Displayed as `db "name"` or `db "name", doc "id"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The database name.
    pub db: String,
    /// The document id, when the error is about one document.
    pub id: Option<String>,
}

impl Location {
    /// A location naming only a database.
    pub fn db(db: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            id: None,
        }
    }

    /// A location naming a document in a database.
    pub fn doc(db: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            id: Some(id.into()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "database {:?}", self.db)?;
        if let Some(id) = &self.id {
            write!(f, ", document {id:?}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong, by meaning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database or document does not exist (or the document was deleted).
    #[error("not found: {location}{}", reason_suffix(.reason))]
    NotFound {
        /// What was looked for.
        location: Location,
        /// Extra detail, e.g. CouchDB's `missing` / `deleted`.
        reason: Option<String>,
    },

    /// The write lost a revision check: the `_rev` given is not the current revision.
    #[error(
        "conflict: {location}: the revision given is not the current one; re-read the document and retry, or use update()"
    )]
    Conflict {
        /// The document that conflicted.
        location: Location,
    },

    /// The database name breaks CouchDB's naming rule.
    #[error(
        "invalid database name {name:?}: {reason} (names match ^[a-z][a-z0-9_$()+/-]*$ and are at most 238 characters)"
    )]
    InvalidDatabaseName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The document id is empty or reserved.
    #[error("invalid document id {id:?} in database {db:?}: {reason}")]
    InvalidDocumentId {
        /// The database.
        db: String,
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The document body is not acceptable (not an object, reserved field, mismatched `_id`, ...).
    #[error("invalid document{}: {reason}", location_suffix(.location))]
    InvalidDocument {
        /// The document.
        location: Location,
        /// What is wrong with it.
        reason: String,
    },

    /// An attachment of a write is not acceptable: bad name, bad base64, a damaged upload, a
    /// malformed entry in `_attachments`.
    #[error("invalid attachment {name:?} in {location}: {reason}")]
    InvalidAttachment {
        /// The document.
        location: Location,
        /// The attachment name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A write kept an attachment by stub (`{"stub": true}`) that the revision it edits does
    /// not hold, or with another `revpos` (CouchDB's `412 missing_stub`). Send the document's
    /// current `_rev` with the stubs a read returned, or the data itself.
    #[error(
        "missing attachment stub {name:?} in {location}: the revision edited holds no such attachment; send the current _rev with the stubs a read returned, or the data"
    )]
    MissingStub {
        /// The document.
        location: Location,
        /// The attachment the stub names.
        name: String,
    },

    /// A query or a request argument is malformed or unsupported.
    #[error("invalid query: {reason}")]
    InvalidQuery {
        /// What is wrong, naming the operator or argument.
        reason: String,
    },

    /// The server refused the credentials or the user lacks permission.
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// What the server said, and what to check.
        reason: String,
    },

    /// The backend could not be reached or is temporarily failing (refused, timeout, 5xx).
    #[error("unavailable: {reason}")]
    Unavailable {
        /// What failed, and what to check.
        reason: String,
    },

    /// A setting is missing or wrong.
    #[error("configuration error in {key}: {reason}")]
    Config {
        /// The setting, e.g. `DATABASE_PROVIDER`.
        key: String,
        /// What is wrong with it and how to fix it.
        reason: String,
    },

    /// The local storage engine failed (I/O, corruption, lock held by another process).
    #[error("storage error: {reason}")]
    Storage {
        /// What failed, naming the path where relevant.
        reason: String,
    },

    /// The server answered something docstore did not expect.
    #[error("protocol error: {reason}")]
    Protocol {
        /// What was expected and what arrived.
        reason: String,
    },
}

/// ` in <location>`, or nothing for a value checked before it reached a database.
fn location_suffix(location: &Location) -> String {
    if location.db.is_empty() && location.id.is_none() {
        String::new()
    } else {
        format!(" in {location}")
    }
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(r) => format!(" ({r})"),
        None => String::new(),
    }
}

impl Error {
    /// `NotFound` for a whole database.
    pub fn db_not_found(db: &str) -> Self {
        Error::NotFound {
            location: Location::db(db),
            reason: Some(NO_SUCH_DATABASE.into()),
        }
    }

    /// `NotFound` for a document, with CouchDB's reason (`missing` or `deleted`).
    pub fn doc_not_found(db: &str, id: &str, reason: &str) -> Self {
        Error::NotFound {
            location: Location::doc(db, id),
            reason: Some(reason.into()),
        }
    }

    /// `Conflict` for a document.
    pub fn conflict(db: &str, id: &str) -> Self {
        Error::Conflict {
            location: Location::doc(db, id),
        }
    }

    /// `InvalidDocument` for a document.
    pub fn invalid_document(db: &str, id: Option<&str>, reason: impl Into<String>) -> Self {
        Error::InvalidDocument {
            location: Location {
                db: db.into(),
                id: id.map(Into::into),
            },
            reason: reason.into(),
        }
    }

    /// `Storage` from any displayable cause.
    pub fn storage(reason: impl fmt::Display) -> Self {
        Error::Storage {
            reason: reason.to_string(),
        }
    }

    /// The HTTP status an application backend should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotFound { .. } => 404,
            Error::Conflict { .. } => 409,
            Error::InvalidDatabaseName { .. }
            | Error::InvalidDocumentId { .. }
            | Error::InvalidDocument { .. }
            | Error::InvalidAttachment { .. }
            | Error::InvalidQuery { .. } => 400,
            Error::MissingStub { .. } => 412,
            Error::Unauthorized { .. } => 401,
            Error::Unavailable { .. } => 503,
            Error::Config { .. } | Error::Storage { .. } | Error::Protocol { .. } => 500,
        }
    }

    /// The variant as a stable snake_case name (`not_found`, `conflict`, …), for logs, metrics
    /// and JSON error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::InvalidDatabaseName { .. } => "invalid_database_name",
            Error::InvalidDocumentId { .. } => "invalid_document_id",
            Error::InvalidDocument { .. } => "invalid_document",
            Error::InvalidAttachment { .. } => "invalid_attachment",
            Error::MissingStub { .. } => "missing_stub",
            Error::InvalidQuery { .. } => "invalid_query",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Unavailable { .. } => "unavailable",
            Error::Config { .. } => "config",
            Error::Storage { .. } => "storage",
            Error::Protocol { .. } => "protocol",
        }
    }

    /// Whether sending the same request again may succeed.
    ///
    /// Only `Unavailable` is: the backend may come back. A `Conflict` needs a fresh read first
    /// (which [`crate::DatabaseServiceExt::update`] does), so it is not retryable as is.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// Whether this is `NotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is `Conflict`.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether this is `NotFound` for a whole database (as [`Error::db_not_found`] makes it),
    /// not for a document in it.
    pub fn is_database_missing(&self) -> bool {
        matches!(
            self,
            Error::NotFound { location, reason }
                if location.id.is_none() && reason.as_deref() == Some(NO_SUCH_DATABASE)
        )
    }
}

/// The reason of a `NotFound` for a database.
const NO_SUCH_DATABASE: &str = "no such database";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_messages() {
        let e = Error::doc_not_found("db", "a/b", "deleted");
        assert_eq!(e.http_status(), 404);
        assert_eq!(
            e.to_string(),
            "not found: database \"db\", document \"a/b\" (deleted)"
        );
        assert_eq!(Error::conflict("db", "x").http_status(), 409);
        assert!(!Error::conflict("db", "x").is_retryable());
        let u = Error::Unavailable {
            reason: "connection refused".into(),
        };
        assert_eq!(u.http_status(), 503);
        assert!(u.is_retryable());
    }
}
