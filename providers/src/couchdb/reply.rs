//! CouchDB's answers as the provider reads them: [`Reply`] (status, headers, raw body), which
//! 500s are crashes of CouchDB's own code rather than transient failures, and the mapping of
//! an unexpected answer to the shared [`Error`] enum ([`status_error`]).

use reqwest::StatusCode;
use serde_json::Value;

use crate::{Error, Location, Result};

/// An HTTP answer: status, headers and raw body.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

/// The reasons CouchDB gives (as `unknown_error`) for an Erlang runtime error: a crash of the
/// code serving the request, which happens again for the same request.
const ERLANG_CRASHES: [&str; 12] = [
    "function_clause",
    "badarith",
    "badarg",
    "badmatch",
    "case_clause",
    "if_clause",
    "try_clause",
    "undef",
    "badfun",
    "badarity",
    "badkey",
    "badmap",
];

impl Reply {
    /// Reads an answer whole: its status, headers and body.
    pub async fn read(response: reqwest::Response) -> std::result::Result<Self, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// Whether this is CouchDB crashing on the request itself (see the module doc): a 500
    /// whose error is an Erlang runtime error (`{"error":"badmatch","reason":"empty"}`), or
    /// `unknown_error` with one as its reason (`function_clause`, or a tuple such as
    /// `{badmatch,...}`). Transient 5xx answers (`timeout`, shards unavailable) are not.
    pub fn is_server_bug(&self) -> bool {
        if self.status != StatusCode::INTERNAL_SERVER_ERROR {
            return false;
        }
        let is_crash = |text: &str| {
            let text = text.trim_start_matches('{');
            ERLANG_CRASHES.iter().any(|crash| {
                text.strip_prefix(crash)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([',', '}']))
            })
        };
        let (error, reason) = self.error_and_reason();
        is_crash(&error) || (error == "unknown_error" && is_crash(&reason))
    }

    /// The body as JSON (CouchDB always answers JSON; the content type is not trusted).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Protocol {
            reason: format!(
                "the server answered {} with a body that is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            ),
        })
    }

    /// CouchDB's `{"error": ..., "reason": ...}`, best effort.
    pub fn error_and_reason(&self) -> (String, String) {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        (field("error"), field("reason"))
    }
}

/// What a request was about, for error messages and mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub db: &'a str,
    pub id: Option<&'a str>,
}

impl Target<'_> {
    fn location(&self) -> Location {
        Location {
            db: self.db.into(),
            id: self.id.map(Into::into),
        }
    }
}

/// Maps an unexpected answer to the shared error enum.
pub(crate) fn status_error(reply: &Reply, target: Target<'_>) -> Error {
    let (error, reason) = reply.error_and_reason();
    let detail = if reason.is_empty() {
        error.clone()
    } else {
        format!("{error}: {reason}")
    };
    match reply.status.as_u16() {
        // Whatever was asked for, the database itself is missing.
        404 if reason == "Database does not exist." => Error::db_not_found(target.db),
        404 => Error::NotFound {
            location: target.location(),
            reason: Some(if reason.is_empty() { error } else { reason }),
        },
        409 => Error::Conflict {
            location: target.location(),
        },
        401 | 403 => Error::Unauthorized {
            reason: format!(
                "CouchDB refused access to {} ({detail}); check COUCHDB_USER, COUCHDB_PASSWORD and the user's roles",
                target.location()
            ),
        },
        400 if error == "illegal_database_name" => Error::InvalidDatabaseName {
            name: target.db.into(),
            reason: detail,
        },
        400 if error == "bad_request" && target.id.is_none() => {
            Error::InvalidQuery { reason: detail }
        }
        412 if error == "missing_stub" => Error::MissingStub {
            location: target.location(),
            // "Invalid attachment stub in <id> for <name>"
            name: reason
                .rsplit_once(" for ")
                .map_or_else(String::new, |(_, name)| name.to_owned()),
        },
        400 if reason.starts_with("Invalid attachment data for ")
            || reason.starts_with("Attachment name ") =>
        {
            // "Invalid attachment data for <name>" / "Attachment name '<name>' starts with ..."
            let name = match reason.rsplit_once(" for ") {
                Some((_, name)) => name.to_owned(),
                None => reason.split('\'').nth(1).unwrap_or_default().to_owned(),
            };
            Error::InvalidAttachment {
                location: target.location(),
                name,
                reason: detail,
            }
        }
        400 | 413 | 415 => Error::InvalidDocument {
            location: target.location(),
            reason: detail,
        },
        _ => Error::Protocol {
            reason: format!(
                "unexpected answer {} from CouchDB for {} ({detail})",
                reply.status,
                target.location()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_erlang_crashes_are_server_bugs() {
        let reply = |status: u16, body: &str| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        };
        for crash in [
            r#"{"error":"unknown_error","reason":"function_clause","ref":1}"#,
            r#"{"error":"unknown_error","reason":"badarith"}"#,
            r#"{"error":"unknown_error","reason":"{badmatch,{error,x}}"}"#,
            r#"{"error":"badmatch","reason":"empty"}"#,
        ] {
            assert!(reply(500, crash).is_server_bug(), "{crash}");
        }
        for transient in [
            (
                500,
                r#"{"error":"timeout","reason":"The request could not be processed"}"#,
            ),
            (
                500,
                r#"{"error":"internal_server_error","reason":"No DB shards could be opened."}"#,
            ),
            (
                500,
                r#"{"error":"unknown_error","reason":"badarith_lookalike"}"#,
            ),
            (
                503,
                r#"{"error":"unknown_error","reason":"function_clause"}"#,
            ),
            (500, "not json"),
        ] {
            assert!(
                !reply(transient.0, transient.1).is_server_bug(),
                "{transient:?}"
            );
        }
    }
}
