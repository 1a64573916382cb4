//! Finds a genuine Apache CouchDB 3 for the tests, in this order:
//!
//! 1. `COUCHDB_URL` (with `COUCHDB_USER` / `COUCHDB_PASSWORD`, or credentials in the URL);
//! 2. a `couchdb:3` container started with testcontainers, when a Docker engine answers
//!    (`DOCSTORE_REQUIRE_DOCKER=1` makes this the only way: CI sets it wherever Docker runs).
//!
//! Otherwise the tests fail, saying how to provide a server; they never silently pass. One
//! server is shared by all tests of a test binary; each test uses its own uniquely named
//! databases. Tests that copy between two CouchDB servers get a second one from
//! [`second_couchdb`]: `COUCHDB_SECOND_URL` (same user and password variables), else a second
//! container.
//!
//! Containers are started from a plain thread (testcontainers' blocking runner starts a
//! runtime of its own, which may not run inside the async tests' runtime), get a random admin
//! password, and are removed when the test process exits. bollard (testcontainers' Docker
//! client, 0.21) sends requests without an API version prefix (it joins `/v1.53` with an
//! absolute path, which replaces it), so any engine answers at its own API version; checked on
//! Docker 20.10 (API 1.41).

#![allow(dead_code)]

mod raw_http;

use raw_http::http;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use docstore::{CouchDbConfig, Secret, Settings};

/// Where a server came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Given by `COUCHDB_URL` or `COUCHDB_SECOND_URL`.
    External,
    /// A `couchdb:3` container.
    Container,
}

/// A running server and how to reach it.
#[derive(Debug)]
pub struct CouchServer {
    pub url: String,
    pub user: String,
    pub password: String,
    pub kind: ServerKind,
}

impl CouchServer {
    /// A provider configuration for this server.
    pub fn config(&self) -> CouchDbConfig {
        let mut config = CouchDbConfig::new(&self.url);
        config.user = Some(self.user.clone());
        config.password = Some(Secret::new(&self.password));
        config
    }

    /// Settings for the CouchDB provider on this server.
    pub fn settings(&self) -> Settings {
        Settings::couchdb(&self.url, &self.user, Secret::new(&self.password))
    }

    /// The server's own address for itself, with the admin credentials: what its
    /// replicator (`POST /_replicate`) is given as source and target. A container listens on
    /// 5984 inside, whatever port the host maps.
    pub fn self_url(&self) -> String {
        let base = match self.kind {
            ServerKind::Container => "http://127.0.0.1:5984".to_owned(),
            ServerKind::External => self.url.trim_end_matches('/').to_owned(),
        };
        match base.split_once("://") {
            Some((scheme, rest)) if !rest.contains('@') && !self.user.is_empty() => {
                format!("{scheme}://{}:{}@{rest}", self.user, self.password)
            }
            _ => base,
        }
    }

    /// One request with the admin credentials: (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        let (host, port) = host_port(&self.url)?;
        http(&host, port, method, path, &self.user, &self.password, body)
    }
}

static SERVER: OnceLock<CouchServer> = OnceLock::new();
static SECOND: OnceLock<CouchServer> = OnceLock::new();

const HOW_TO: &str = "Provide one of: COUCHDB_URL=http://127.0.0.1:5984 with COUCHDB_USER and \
    COUCHDB_PASSWORD (for instance `docker compose up -d`, or the test kit's \
    `run-couchdb start`); or a running Docker engine with a `couchdb:3` image (pulled from a \
    registry, or built locally by the kit's `build-couchdb-image`).";

/// The shared server, found (and started) on first use.
pub fn couchdb() -> &'static CouchServer {
    SERVER.get_or_init(|| found("COUCHDB_URL", "the CouchDB tests"))
}

/// A second server, for copies between two CouchDB servers (databases keep their names).
pub fn second_couchdb() -> &'static CouchServer {
    SECOND.get_or_init(|| found("COUCHDB_SECOND_URL", "a second CouchDB server"))
}

fn found(variable: &str, what: &str) -> CouchServer {
    match find_server(variable) {
        Ok(server) => {
            eprintln!(
                "{what} run against {:?} CouchDB at {}",
                server.kind, server.url
            );
            server
        }
        Err(why) => panic!("no CouchDB server for {what}: {why}\n{HOW_TO}"),
    }
}

fn find_server(variable: &str) -> Result<CouchServer, String> {
    let require_docker = std::env::var("DOCSTORE_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
    if !require_docker
        && let Ok(url) = std::env::var(variable)
        && !url.trim().is_empty()
    {
        return Ok(CouchServer {
            url,
            user: std::env::var("COUCHDB_USER").unwrap_or_default(),
            password: std::env::var("COUCHDB_PASSWORD").unwrap_or_default(),
            kind: ServerKind::External,
        });
    }
    if docker_answers() {
        return start_container();
    }
    Err(if require_docker {
        "DOCSTORE_REQUIRE_DOCKER=1 is set but no Docker engine answers".to_owned()
    } else {
        format!("{variable} is not set and no Docker engine answers")
    })
}

/// Whether a Docker engine answers (`docker info`, bounded to 10 s).
pub fn docker_answers() -> bool {
    let Ok(mut child) = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Starts a `couchdb:3` container (on a thread of its own, so it works inside async tests),
/// waits for it to answer, and creates the system databases. Removed at process exit.
pub fn start_container() -> Result<CouchServer, String> {
    std::thread::spawn(start_container_here)
        .join()
        .map_err(|_| "starting the container panicked".to_owned())?
}

fn start_container_here() -> Result<CouchServer, String> {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    let password = format!("Tc{:016x}", fastrand::u64(..));
    let container = GenericImage::new("couchdb", "3")
        .with_exposed_port(5984.tcp())
        .with_wait_for(WaitFor::seconds(1))
        .with_env_var("COUCHDB_USER", "admin")
        .with_env_var("COUCHDB_PASSWORD", &password)
        .start()
        .map_err(|e| {
            format!(
                "the couchdb:3 container did not start ({e}); if the image is missing, build it \
                 (the test kit's build-couchdb-image) or pull it (docker pull couchdb:3)"
            )
        })?;
    let port = container
        .get_host_port_ipv4(5984)
        .map_err(|e| e.to_string())?;
    remove_at_exit(container.id().to_owned());
    // Dropping the handle would stop the container; it is removed at exit instead.
    std::mem::forget(container);
    let server = CouchServer {
        url: format!("http://127.0.0.1:{port}"),
        user: "admin".into(),
        password,
        kind: ServerKind::Container,
    };
    wait_until_up(&server, Duration::from_secs(120))?;
    for db in ["_users", "_replicator"] {
        let (status, body) = server.request("PUT", &format!("/{db}"), None)?;
        if !matches!(status, 201 | 202 | 412) {
            return Err(format!("creating {db} answered {status} {body}"));
        }
    }
    Ok(server)
}

fn remove_at_exit(id: String) {
    static IDS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    extern "C" fn remove_all() {
        if let Ok(ids) = IDS.lock() {
            for id in ids.iter() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
    if ids.is_empty() {
        // SAFETY: registers a plain extern "C" function with no arguments; it runs at exit.
        unsafe {
            libc::atexit(remove_all);
        }
    }
    ids.push(id);
}

/// `http://host:port` (credentials and a path ignored) → (host, port).
fn host_port(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("test support speaks plain http only: {url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("no port in {url}"))?;
    let port = port.parse().map_err(|_| format!("bad port in {url}"))?;
    Ok((host.to_owned(), port))
}

fn wait_until_up(server: &CouchServer, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match server.request("GET", "/_session", None) {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => last = format!("{status} {body}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "the server at {} did not answer in time: {last}",
        server.url
    ))
}

/// Everything replication must make equal about one document: every leaf with its body and
/// `_revisions`, the winner, `_conflicts` and `_deleted_conflicts` (`"not found"` for a
/// document the database never had). `_revs_info` is not: replication carries no ancestor
/// bodies, on CouchDB either.
pub async fn document_tree(
    svc: &dyn docstore::DatabaseService,
    db: &str,
    id: &str,
) -> docstore::serde_json::Value {
    use docstore::serde_json::json;
    use docstore::{GetOptions, OpenRev, OpenRevs};
    let leaves: Vec<docstore::serde_json::Value> =
        match svc.open_revs(db, id, &OpenRevs::All, true).await {
            Ok(leaves) => leaves
                .into_iter()
                .map(|l| match l {
                    OpenRev::Found(doc) => doc.into_value(),
                    OpenRev::Missing(rev) => json!({"missing": rev.to_string()}),
                })
                .collect(),
            Err(e) if e.is_not_found() => return json!("not found"),
            Err(e) => panic!("open_revs {id}: {e}"),
        };
    let options = GetOptions {
        conflicts: true,
        deleted_conflicts: true,
        ..GetOptions::default()
    };
    let winner = match svc.get_with(db, id, &options).await {
        Ok(doc) => doc.into_value(),
        Err(docstore::Error::NotFound { reason, .. }) => json!({"not_found": reason}),
        Err(e) => panic!("get_with {id}: {e}"),
    };
    json!({"leaves": leaves, "winner": winner})
}
