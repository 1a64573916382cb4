//! Finds a real CouchDB server for the tests, in this order:
//!
//! 1. `COUCHDB_URL` (with `COUCHDB_USER` / `COUCHDB_PASSWORD`, or credentials in the URL);
//! 2. a `couchdb:3` container through testcontainers, when a Docker engine answers;
//! 3. the CouchDB-compatible stand-in `pouchdb-server@4.2.0` from npm, installed once (under a
//!    file lock) into `target/couchdb-standin` and started on a free loopback port, wrapped by
//!    `tests/support/standin/standin.js` so it requires credentials like CouchDB 3.
//!
//! If none is possible the tests fail with a message saying how to provide a server; they
//! never silently pass. One server is shared by all tests of a test binary; each test uses its
//! own uniquely named databases.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use docstore::{CouchDbConfig, Secret, Settings};

/// Which kind of server the tests talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Given by `COUCHDB_URL`.
    External,
    /// A `couchdb:3` container.
    Container,
    /// The npm stand-in (`pouchdb-server`).
    StandIn,
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

    /// `Some(reason)` when the server is the stand-in, for behaviours it cannot reproduce.
    pub fn standin_deviation(&self, reason: &'static str) -> Option<&'static str> {
        (self.kind == ServerKind::StandIn).then_some(reason)
    }
}

static SERVER: OnceLock<CouchServer> = OnceLock::new();
/// The stand-in processes; kept alive (with their stdin open) until the test process exits.
static STANDIN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// The shared server, found (and started) on first use.
pub fn couchdb() -> &'static CouchServer {
    SERVER.get_or_init(|| match find_server() {
        Ok(server) => {
            eprintln!(
                "CouchDB tests run against {:?} at {}",
                server.kind, server.url
            );
            server
        }
        Err(why) => panic!(
            "no CouchDB server for the tests: {why}\n\
             Provide one of: COUCHDB_URL=http://127.0.0.1:5984 with COUCHDB_USER and COUCHDB_PASSWORD \
             (e.g. after `docker compose up -d`); a running Docker engine; or Node.js 18+ with npm \
             on PATH and access to the npm registry (the tests then install pouchdb-server@4.2.0 \
             into target/couchdb-standin themselves)."
        ),
    })
}

fn find_server() -> Result<CouchServer, String> {
    if let Ok(url) = std::env::var("COUCHDB_URL")
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
        match start_container() {
            Ok(server) => return Ok(server),
            Err(e) => eprintln!(
                "Docker answers, but the couchdb:3 container failed ({e}); trying the stand-in"
            ),
        }
    }
    start_standin()
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

/// Starts `couchdb:3` with testcontainers, waits for `/_up`, creates the system databases.
/// The container is removed when the test process exits.
pub fn start_container() -> Result<CouchServer, String> {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    let password = format!("pw-{}", std::process::id());
    let container = GenericImage::new("couchdb", "3")
        .with_exposed_port(5984.tcp())
        .with_wait_for(WaitFor::seconds(1))
        .with_env_var("COUCHDB_USER", "admin")
        .with_env_var("COUCHDB_PASSWORD", &password)
        .start()
        .map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(5984)
        .map_err(|e| e.to_string())?;
    remove_at_exit(container.id().to_owned());
    std::mem::forget(container);
    wait_until_up(port, "admin", &password, Duration::from_secs(120))?;
    for db in ["_users", "_replicator"] {
        let (status, _) = http(port, "PUT", &format!("/{db}"), "admin", &password)?;
        if !matches!(status, 201 | 202 | 412) {
            return Err(format!("creating {db} answered {status}"));
        }
    }
    Ok(CouchServer {
        url: format!("http://127.0.0.1:{port}"),
        user: "admin".into(),
        password,
        kind: ServerKind::Container,
    })
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

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Installs the stand-in's npm packages into `target/couchdb-standin` once, under a lock.
fn install_standin() -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/standin");
    let cache = target_dir().join("couchdb-standin");
    std::fs::create_dir_all(&cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let lock = std::fs::File::create(cache.join(".lock"))
        .map_err(|e| format!("creating the install lock: {e}"))?;
    lock.lock()
        .map_err(|e| format!("taking the install lock: {e}"))?;
    let wanted = std::fs::read(source.join("package-lock.json"))
        .map_err(|e| format!("reading the stand-in's package-lock.json: {e}"))?;
    let stamp = cache.join("node_modules/.docstore-installed");
    if std::fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
        return Ok(cache);
    }
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), cache.join(file))
            .map_err(|e| format!("copying {file}: {e}"))?;
    }
    eprintln!(
        "installing the CouchDB stand-in (pouchdb-server@4.2.0) into {} ...",
        cache.display()
    );
    let output = Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(&cache)
        .output()
        .map_err(|e| format!("running npm ({e}); is Node.js with npm installed?"))?;
    if !output.status.success() {
        return Err(format!(
            "npm ci failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::write(&stamp, &wanted).map_err(|e| format!("writing the install stamp: {e}"))?;
    Ok(cache)
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Starts the stand-in on a free loopback port; retries on another port if it cannot bind.
/// Starts a stand-in of its own (tests that need a second server call this directly).
pub fn start_standin() -> Result<CouchServer, String> {
    let cache = install_standin()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/standin/standin.js");
    let password = format!("standin-{}-{}", std::process::id(), fastrand::u32(..));
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let dir = tempfile::Builder::new()
            .prefix("couchdb-standin-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let log_path = dir.join("stderr.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut child = Command::new("node")
            .arg(&script)
            .args([&port.to_string(), "admin", &password])
            .arg(&dir)
            .env("NODE_PATH", cache.join("node_modules"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("starting node ({e}); is Node.js installed?"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stdout for the stand-in's whole life: the first line says it listens, the rest
        // is its request log (a closed pipe would kill it on its next log line).
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.trim() == format!("LISTENING {port}") => {
                // Listening, and still alive: check it answers with the credentials.
                if matches!(child.try_wait(), Ok(None)) {
                    wait_until_up(port, "admin", &password, Duration::from_secs(30))?;
                    STANDIN
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(child);
                    return Ok(CouchServer {
                        url: format!("http://127.0.0.1:{port}"),
                        user: "admin".into(),
                        password,
                        kind: ServerKind::StandIn,
                    });
                }
            }
            _ => {}
        }
        let _ = child.kill();
        let _ = child.wait();
        let err = std::fs::read_to_string(&log_path).unwrap_or_default();
        last_error = format!("the stand-in did not start on port {port}: {err}");
    }
    Err(last_error)
}

/// A minimal blocking HTTP/1.0 request with basic auth: (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    user: &str,
    password: &str,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let auth = base64(&format!("{user}:{password}"));
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nAccept: application/json\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:.80}"))?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

fn wait_until_up(port: u16, user: &str, password: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http(port, "GET", "/_session", user, password) {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => last = format!("{status} {body}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "the server on port {port} did not answer in time: {last}"
    ))
}

fn base64(text: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
