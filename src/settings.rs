//! Settings: the one place docstore reads configuration.
//!
//! Sources, later wins: built-in defaults < `config/default.toml` < `.env` < the process
//! environment. Every key is an environment-style name (`DATABASE_PROVIDER`, ...); in the TOML
//! file the same names are written in lower case. Values are parsed here, once, into typed
//! settings, and every problem is a [`Error::Config`] naming the key and saying how to fix it.
//! Providers never read the environment; they get typed configs built from these settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Deserialize;

use crate::{Error, Result};

/// Which provider [`crate::get_database_service`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// In-process, not persisted.
    Memory,
    /// In-process, on disk (fjall). The default.
    Embedded,
    /// A remote Apache CouchDB 3.x server.
    CouchDb,
}

impl ProviderKind {
    /// The value of `DATABASE_PROVIDER` that selects this provider.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Memory => "memory",
            ProviderKind::Embedded => "embedded",
            ProviderKind::CouchDb => "couchdb",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(ProviderKind::Memory),
            "embedded" => Ok(ProviderKind::Embedded),
            "couchdb" => Ok(ProviderKind::CouchDb),
            _ => Err(config_error(
                "DATABASE_PROVIDER",
                format!("unknown provider {text:?}; valid values are memory, embedded, couchdb"),
            )),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every setting, typed. Build it with [`Settings::load`] (files and environment) or in code
/// with [`Settings::memory`], [`Settings::embedded`], [`Settings::couchdb`] and the public
/// fields.
#[derive(Clone)]
pub struct Settings {
    /// `DATABASE_PROVIDER`: which provider to build. Default `embedded`.
    pub provider: ProviderKind,
    /// `EMBEDDED_PATH`: directory of the embedded store. Default `./data/docstore`.
    pub embedded_path: PathBuf,
    /// `EMBEDDED_SYNC`: `true` (default) fsyncs every commit; `false` leaves commits in OS
    /// buffers, which survives a process crash but may lose the latest writes on power loss.
    pub embedded_sync: bool,
    /// `EMBEDDED_CACHE_MB`: block cache of the embedded store. Default 64.
    pub embedded_cache_mb: u64,
    /// `EMBEDDED_WORKER_THREADS`: background flush/compaction threads. Default 2.
    pub embedded_worker_threads: usize,
    /// `COUCHDB_URL`: base URL of the CouchDB server, e.g. `http://127.0.0.1:5984`; or a
    /// cluster's node URLs separated by commas (requests spread over them, failing over).
    pub couchdb_url: Option<String>,
    /// `COUCHDB_USER`: CouchDB user name.
    pub couchdb_user: Option<String>,
    /// `COUCHDB_PASSWORD`: CouchDB password (never shown by `Debug`).
    pub couchdb_password: Option<Secret>,
    /// `COUCHDB_CONNECT_TIMEOUT_SECS`: TCP/TLS connect timeout. Default 5 s.
    pub couchdb_connect_timeout: Duration,
    /// `COUCHDB_REQUEST_TIMEOUT_SECS`: whole-request timeout. Default 30 s.
    pub couchdb_request_timeout: Duration,
    /// `COUCHDB_MAX_RETRIES`: retries of idempotent requests after a connection error, a
    /// timeout or a 5xx. Default 3.
    pub couchdb_max_retries: u32,
    /// `COUCHDB_CA_FILE`: PEM file of the certificate authorities an `https` CouchDB's
    /// certificate must chain to (a private CA). Default: the platform's roots.
    pub couchdb_ca_file: Option<PathBuf>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("provider", &self.provider)
            .field("embedded_path", &self.embedded_path)
            .field("embedded_sync", &self.embedded_sync)
            .field("embedded_cache_mb", &self.embedded_cache_mb)
            .field("embedded_worker_threads", &self.embedded_worker_threads)
            .field("couchdb_url", &self.couchdb_url.as_deref().map(redact_url))
            .field("couchdb_user", &self.couchdb_user)
            .field("couchdb_password", &self.couchdb_password)
            .field("couchdb_connect_timeout", &self.couchdb_connect_timeout)
            .field("couchdb_request_timeout", &self.couchdb_request_timeout)
            .field("couchdb_max_retries", &self.couchdb_max_retries)
            .field("couchdb_ca_file", &self.couchdb_ca_file)
            .finish()
    }
}

pub use docstore_providers::{Secret, redact_url};

/// The keys docstore reads, in environment spelling.
pub const KEYS: [&str; 12] = [
    "DATABASE_PROVIDER",
    "EMBEDDED_PATH",
    "EMBEDDED_SYNC",
    "EMBEDDED_CACHE_MB",
    "EMBEDDED_WORKER_THREADS",
    "COUCHDB_URL",
    "COUCHDB_USER",
    "COUCHDB_PASSWORD",
    "COUCHDB_CONNECT_TIMEOUT_SECS",
    "COUCHDB_REQUEST_TIMEOUT_SECS",
    "COUCHDB_MAX_RETRIES",
    "COUCHDB_CA_FILE",
];

fn config_error(key: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A raw value from any source: TOML may give numbers or booleans, the rest give text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Raw {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Raw {
    fn text(&self) -> String {
        match self {
            Raw::Int(n) => n.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::Text(s) => s.clone(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Embedded,
            embedded_path: PathBuf::from("./data/docstore"),
            embedded_sync: true,
            embedded_cache_mb: 64,
            embedded_worker_threads: 2,
            couchdb_url: None,
            couchdb_user: None,
            couchdb_password: None,
            couchdb_connect_timeout: Duration::from_secs(5),
            couchdb_request_timeout: Duration::from_secs(30),
            couchdb_max_retries: 3,
            couchdb_ca_file: None,
        }
    }
}

impl Settings {
    /// Settings for the memory provider, everything else at its default.
    pub fn memory() -> Self {
        Self {
            provider: ProviderKind::Memory,
            ..Self::default()
        }
    }

    /// Settings for the embedded provider at `path`.
    pub fn embedded(path: impl Into<PathBuf>) -> Self {
        Self {
            provider: ProviderKind::Embedded,
            embedded_path: path.into(),
            ..Self::default()
        }
    }

    /// Settings for a CouchDB server.
    pub fn couchdb(url: impl Into<String>, user: impl Into<String>, password: Secret) -> Self {
        Self {
            provider: ProviderKind::CouchDb,
            couchdb_url: Some(url.into()),
            couchdb_user: Some(user.into()),
            couchdb_password: Some(password),
            ..Self::default()
        }
    }

    /// These settings pointed at a location: `memory:`, `embedded:PATH`, or a CouchDB URL
    /// (`http(s)://user:password@host:port`, credentials in the URL). Durability, cache and
    /// timeouts stay as configured. Anything else is a `Config` error saying what is accepted.
    pub fn for_location(&self, location: &str) -> Result<Settings> {
        let mut settings = self.clone();
        if location == "memory:" {
            settings.provider = ProviderKind::Memory;
        } else if let Some(path) = location.strip_prefix("embedded:") {
            if path.is_empty() {
                return Err(config_error(
                    "location",
                    "embedded: needs a path, e.g. embedded:./data/docstore",
                ));
            }
            settings.provider = ProviderKind::Embedded;
            settings.embedded_path = PathBuf::from(path);
        } else if location.starts_with("http://") || location.starts_with("https://") {
            settings.provider = ProviderKind::CouchDb;
            settings.couchdb_url = Some(location.to_owned());
            settings.couchdb_user = None;
            settings.couchdb_password = None;
        } else {
            return Err(config_error(
                "location",
                format!(
                    "{:?} is not a location; use memory:, embedded:PATH or http(s)://user:password@host:port",
                    docstore_providers::redact_url(location)
                ),
            ));
        }
        Ok(settings)
    }

    /// Loads settings from `config/default.toml` and `.env` in the current directory and
    /// from the process environment.
    pub fn load() -> Result<Self> {
        Self::load_from(
            Path::new("config/default.toml"),
            Path::new(".env"),
            std::env::vars(),
        )
    }

    /// Loads settings from the given TOML file and `.env` file (either may be missing) and the
    /// given environment variables, in that order of precedence (later wins).
    pub fn load_from(
        toml: &Path,
        dotenv: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut figment = Figment::new();
        if toml.exists() {
            figment = figment.merge(Toml::file(toml));
        }
        if dotenv.exists() {
            figment = figment.merge(Serialized::defaults(read_dotenv(dotenv)?));
        }
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        figment = figment.merge(Serialized::defaults(env));
        let raw: BTreeMap<String, Raw> = figment.extract().map_err(|e| {
            // The parser's text quotes the offending line, which may hold a password: only
            // where it is is passed on.
            config_error(
                "config/default.toml",
                format!(
                    "could not read the settings{}; check the file's TOML syntax (the line is \
                     not shown, as it may hold a password)",
                    where_in(&e.to_string())
                ),
            )
        })?;
        Self::from_raw(&raw)
    }

    fn from_raw(raw: &BTreeMap<String, Raw>) -> Result<Self> {
        let get = |key: &str| {
            raw.get(&key.to_ascii_lowercase())
                .map(Raw::text)
                .filter(|v| !v.trim().is_empty())
        };
        let secs = |key: &str, default: Duration| -> Result<Duration> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        config_error(key, format!("{v:?} is not a positive number of seconds"))
                    }),
            }
        };
        let defaults = Self::default();
        let provider = match get("DATABASE_PROVIDER") {
            None => defaults.provider,
            Some(v) => ProviderKind::parse(&v)?,
        };
        fn whole<T: std::str::FromStr>(key: &str, value: Option<String>, default: T) -> Result<T> {
            match value {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| config_error(key, format!("{v:?} is not a whole number"))),
            }
        }
        let embedded_sync = match get("EMBEDDED_SYNC").map(|v| v.trim().to_ascii_lowercase()) {
            None => defaults.embedded_sync,
            Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => true,
            Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => false,
            Some(v) => {
                return Err(config_error(
                    "EMBEDDED_SYNC",
                    format!("{v:?} is not true or false"),
                ));
            }
        };
        Ok(Self {
            provider,
            embedded_path: get("EMBEDDED_PATH").map_or(defaults.embedded_path, PathBuf::from),
            embedded_sync,
            embedded_cache_mb: whole(
                "EMBEDDED_CACHE_MB",
                get("EMBEDDED_CACHE_MB"),
                defaults.embedded_cache_mb,
            )?,
            embedded_worker_threads: whole(
                "EMBEDDED_WORKER_THREADS",
                get("EMBEDDED_WORKER_THREADS"),
                defaults.embedded_worker_threads,
            )?,
            couchdb_url: get("COUCHDB_URL"),
            couchdb_user: get("COUCHDB_USER"),
            couchdb_password: get("COUCHDB_PASSWORD").map(Secret::new),
            couchdb_connect_timeout: secs(
                "COUCHDB_CONNECT_TIMEOUT_SECS",
                defaults.couchdb_connect_timeout,
            )?,
            couchdb_request_timeout: secs(
                "COUCHDB_REQUEST_TIMEOUT_SECS",
                defaults.couchdb_request_timeout,
            )?,
            couchdb_max_retries: whole(
                "COUCHDB_MAX_RETRIES",
                get("COUCHDB_MAX_RETRIES"),
                defaults.couchdb_max_retries,
            )?,
            couchdb_ca_file: get("COUCHDB_CA_FILE").map(PathBuf::from),
        })
    }
}

#[cfg(feature = "embedded")]
impl Settings {
    /// The embedded provider's typed configuration.
    pub fn embedded_config(&self) -> docstore_providers::EmbeddedConfig {
        docstore_providers::EmbeddedConfig {
            path: self.embedded_path.clone(),
            durability: if self.embedded_sync {
                docstore_providers::Durability::Sync
            } else {
                docstore_providers::Durability::Buffered
            },
            cache_bytes: self.embedded_cache_mb.saturating_mul(1024 * 1024),
            worker_threads: self.embedded_worker_threads.max(1),
        }
    }
}

#[cfg(feature = "couchdb")]
impl Settings {
    /// The CouchDB provider's typed configuration; `Config` naming `COUCHDB_URL` if unset.
    pub fn couchdb_config(&self) -> Result<docstore_providers::CouchDbConfig> {
        let url = self.couchdb_url.clone().ok_or_else(|| {
            config_error(
                "COUCHDB_URL",
                "DATABASE_PROVIDER is couchdb but COUCHDB_URL is not set; set it to the server's base URL, e.g. http://127.0.0.1:5984",
            )
        })?;
        let mut config = docstore_providers::CouchDbConfig::new(url);
        config.user = self.couchdb_user.clone();
        config.password = self.couchdb_password.clone();
        config.connect_timeout = self.couchdb_connect_timeout;
        config.request_timeout = self.couchdb_request_timeout;
        config.max_retries = self.couchdb_max_retries;
        config.ca_file = self.couchdb_ca_file.clone();
        Ok(config)
    }
}

/// `" at line N, column M"` from a parser's message, whatever else it says; empty if it
/// names no line.
fn where_in(message: &str) -> String {
    let number_after = |word: &str| -> Option<String> {
        let at = message.find(word)? + word.len();
        let digits: String = message[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (!digits.is_empty()).then_some(digits)
    };
    match (number_after("line"), number_after("column")) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>> {
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| config_error(".env", format!("could not read {}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| {
            // dotenvy's text quotes the offending line, which may hold a password.
            let at = match &e {
                dotenvy::Error::LineParse(_, index) => format!(" near character {index}"),
                _ => String::new(),
            };
            config_error(
                ".env",
                format!(
                    "could not parse {}{at}; lines are KEY=value (the line is not shown, as it \
                     may hold a password)",
                    path.display()
                ),
            )
        })?;
        if KEYS.contains(&k.as_str()) {
            out.insert(k.to_ascii_lowercase(), v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, dotenv: &str, env: &[(&str, &str)]) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("default.toml");
        let env_path = dir.path().join(".env");
        std::fs::write(&toml_path, toml).unwrap();
        std::fs::write(&env_path, dotenv).unwrap();
        Settings::load_from(
            &toml_path,
            &env_path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = load("", "", &[]).unwrap();
        assert_eq!(s.provider, ProviderKind::Embedded);
        assert_eq!(s.embedded_path, PathBuf::from("./data/docstore"));
        assert_eq!(s.couchdb_request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn later_sources_win() {
        let toml = "database_provider = \"memory\"\nembedded_path = \"/toml\"\ncouchdb_max_retries = 7\ncouchdb_user = \"toml\"\n";
        let dotenv = "EMBEDDED_PATH=/dotenv\nCOUCHDB_USER=dotenv\nUNRELATED=1\n";
        let s = load(toml, dotenv, &[("COUCHDB_USER", "env"), ("PATH", "/bin")]).unwrap();
        assert_eq!(s.provider, ProviderKind::Memory);
        assert_eq!(s.embedded_path, PathBuf::from("/dotenv"));
        assert_eq!(s.couchdb_user.as_deref(), Some("env"));
        assert_eq!(s.couchdb_max_retries, 7);
    }

    #[test]
    fn passwords_keep_leading_zeros_and_never_print() {
        let s = load(
            "",
            "COUCHDB_PASSWORD=007\nCOUCHDB_URL=http://u:hunter2@h:5984/\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.couchdb_password.as_ref().unwrap().expose(), "007");
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("007") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert!(debug.contains("http://u:***@h:5984/"), "{debug}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load("", "", &[("DATABASE_PROVIDER", "couchbd")]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("DATABASE_PROVIDER") && text.contains("memory, embedded, couchdb"));
        let e = load("", "", &[("COUCHDB_REQUEST_TIMEOUT_SECS", "soon")]).unwrap_err();
        assert!(e.to_string().contains("COUCHDB_REQUEST_TIMEOUT_SECS"));
        let e = load("database_provider = [1", "", &[]).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }
}
