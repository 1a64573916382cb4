//! docstore: one async document-database API, [`DatabaseService`], over interchangeable
//! providers — in-memory, embedded on disk (the default) and a remote Apache CouchDB 3 —
//! that all behave exactly like CouchDB 3 (same revisions, 404s, 409s, ordering).
//!
//! Apps depend on this crate alone: it re-exports the trait, types and errors of
//! `docstore-providers`, reads [`Settings`] once, and builds a provider with
//! [`get_database_service`].
//!
//! ```
//! use docstore::{get_database_service, DatabaseServiceExt, Document, Settings};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> docstore::Result<()> {
//! let db = get_database_service(&Settings::memory()).await?;
//! let mut doc = Document::new();
//! doc.insert("name", "My Agent");
//! let first = db.save("agents", "agent-1", doc).await?;
//! assert_eq!(first.rev.generation(), 1);
//!
//! // Read-modify-write, retried on conflict.
//! let second = db.update("agents", "agent-1", |d| {
//!     d.insert("runs", 1);
//!     Ok(())
//! }).await?;
//! assert_eq!(second.rev.generation(), 2);
//!
//! // A save carrying a stale _rev is a Conflict (HTTP 409).
//! let mut stale = db.get("agents", "agent-1").await?;
//! stale.set_rev(&first.rev);
//! let err = db.save("agents", "agent-1", stale).await.unwrap_err();
//! assert!(err.is_conflict());
//! assert_eq!(err.http_status(), 409);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod archive;
mod factory;
pub mod migrate;
pub mod replicate;
pub mod settings;

pub use docstore_providers::{
    Attachment, AttachmentInfo, AttachmentRead, AttachmentStream, AttachmentUpload, Capabilities,
    Change, ChangeStream, ChangesPage, ContentEncoding, DEFAULT_PAGE_SIZE, DatabaseInfo,
    DatabaseService, DatabaseServiceExt, Document, Error, FindQuery, GetOptions, IndexDefinition,
    IndexStatus, LiveChange, Location, MemoryProvider, NO_INDEX_FOR_SORT, NewAttachment, OpenRev,
    OpenRevs, Page, Resolution, Result, Rev, RevId, RevisionOutcome, RevisionedDoc, RevsDiff,
    Since, SortDirection, WatchOptions, WriteResult, async_trait, attachment, collate, mango,
    serde_json, validate,
};
#[cfg(feature = "couchdb")]
pub use docstore_providers::{CouchDbConfig, CouchDbProvider};
#[cfg(feature = "embedded")]
pub use docstore_providers::{Durability, EmbeddedConfig, EmbeddedProvider};
pub use factory::get_database_service;
pub use settings::{ProviderKind, Secret, Settings};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
