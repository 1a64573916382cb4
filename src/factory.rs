//! `get_database_service`: builds the provider the settings name.
//!
//! A plain constructor with no hidden global, so several providers can be open at once (a
//! migration holds a source and a target). A provider whose cargo feature is not compiled in
//! is a `Config` error naming `DATABASE_PROVIDER`, never a silent fall-back.

use std::sync::Arc;

#[cfg(not(all(feature = "embedded", feature = "couchdb")))]
use crate::Error;
use crate::{DatabaseService, MemoryProvider, ProviderKind, Result, Settings};

/// Builds the provider selected by `settings.provider`.
///
/// For CouchDB this checks the server and the credentials once, so a wrong URL or password
/// fails here with a clear error rather than on the first request.
///
/// The provider is wrapped in [`Traced`](docstore_providers::Traced): every operation is a
/// `tracing` span, with slow calls and failures logged (see its doc).
pub async fn get_database_service(settings: &Settings) -> Result<Arc<dyn DatabaseService>> {
    let provider = open_provider(settings).await?;
    tracing::debug!(provider = provider.provider_name(), location = %provider.location(), "opened");
    Ok(Arc::new(docstore_providers::Traced::new(provider)))
}

async fn open_provider(settings: &Settings) -> Result<Arc<dyn DatabaseService>> {
    match settings.provider {
        ProviderKind::Memory => Ok(Arc::new(MemoryProvider::new())),
        #[cfg(feature = "embedded")]
        ProviderKind::Embedded => Ok(Arc::new(
            docstore_providers::EmbeddedProvider::open(settings.embedded_config()).await?,
        )),
        #[cfg(not(feature = "embedded"))]
        ProviderKind::Embedded => not_compiled(ProviderKind::Embedded, "embedded"),
        #[cfg(feature = "couchdb")]
        ProviderKind::CouchDb => Ok(Arc::new(
            docstore_providers::CouchDbProvider::connect(settings.couchdb_config()?).await?,
        )),
        #[cfg(not(feature = "couchdb"))]
        ProviderKind::CouchDb => {
            if settings.couchdb_url.is_none() {
                return Err(Error::Config {
                    key: "COUCHDB_URL".into(),
                    reason: "DATABASE_PROVIDER is couchdb but COUCHDB_URL is not set; set it to the server's base URL, e.g. http://127.0.0.1:5984".into(),
                });
            }
            not_compiled(ProviderKind::CouchDb, "couchdb")
        }
    }
}

#[cfg(not(all(feature = "embedded", feature = "couchdb")))]
fn not_compiled(kind: ProviderKind, feature: &str) -> Result<Arc<dyn DatabaseService>> {
    Err(Error::Config {
        key: "DATABASE_PROVIDER".into(),
        reason: format!(
            "the {kind} provider is not compiled into this build; enable the cargo feature {feature:?} of docstore"
        ),
    })
}
