//! `docstore-providers`: the [`DatabaseService`] trait, its shared types and errors, input
//! validation, the providers (memory always; `embedded` and `couchdb` behind features) and
//! the conformance suite (feature `conformance`) that holds every provider to CouchDB 3's
//! behaviour, and the test helpers (`testing`, same feature) the suite, tests and benchmarks
//! share.
//!
//! Applications normally depend on the `docstore` facade crate, which re-exports all of this
//! and adds settings and the `get_database_service` factory.

#![warn(missing_docs)]

pub mod attachment;
pub mod collate;
#[cfg(feature = "couchdb")]
pub mod couchdb;
mod document;
#[cfg(feature = "embedded")]
pub mod embedded;
mod error;
mod feed;
#[cfg(feature = "embedded")]
mod json_out;
pub mod mango;
#[cfg(feature = "embedded")]
mod md5x8;
pub mod memory;
mod parallel;
mod query;
mod rev;
mod rev_tree;
mod secret;
mod service;
mod traced;
mod tree_read;
mod turns;
pub mod validate;
mod watch;
mod write;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "conformance")]
pub mod testing;

pub use attachment::{
    Attachment, AttachmentInfo, AttachmentRead, AttachmentStream, AttachmentUpload,
    ContentEncoding, NewAttachment,
};
#[cfg(feature = "couchdb")]
pub use couchdb::{CouchDbConfig, CouchDbProvider};
pub use document::{
    Change, ChangesPage, DatabaseInfo, Document, GetOptions, OpenRev, OpenRevs, Page, Resolution,
    RevisionOutcome, RevisionedDoc, RevsDiff, WriteResult,
};
#[cfg(feature = "embedded")]
pub use embedded::{Durability, EmbeddedConfig, EmbeddedProvider};
pub use error::{Error, Location, Result};
pub use memory::MemoryProvider;
pub use query::{FindQuery, IndexDefinition, IndexStatus, NO_INDEX_FOR_SORT, SortDirection};
pub use rev::{Rev, RevId};
pub use secret::{Secret, redact_url};
pub use service::{Capabilities, DEFAULT_PAGE_SIZE, DatabaseService, DatabaseServiceExt};
pub use traced::{DEFAULT_SLOW_CALL, Traced};
pub use watch::{ChangeStream, LiveChange, Since, WatchOptions};

/// Re-exported so implementors and callers use the same `async_trait` and JSON types.
pub use async_trait::async_trait;
pub use serde_json;
