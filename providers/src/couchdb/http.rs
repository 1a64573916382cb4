//! The HTTP layer of the CouchDB provider: one pooled reqwest client, URL building with every
//! database name and document id percent-encoded as a single path segment, retries, the
//! request counter, and the mapping of HTTP answers to [`Error`].
//!
//! Retry rule: a request that never reached the server (connection refused or failed) is
//! retried whatever its method; a request that may have reached it (timeout, 5xx, connection
//! lost mid-way) is retried only if it is [`Idempotency::Safe`] — reads and database creation.
//! A write is never replayed blindly: a replayed upsert could add a revision, a replayed
//! conditional write would report a false conflict.
//!
//! One kind of 5xx is not transient: a crash of the request's own code path inside CouchDB
//! (a 500 `unknown_error` whose reason is an Erlang runtime error such as `function_clause`,
//! see [`is_server_bug`]). Sending the same request again crashes the same way, so it is
//! never retried and is reported as [`Error::Protocol`], not as the server being unavailable.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::Value;

use super::CouchDbConfig;
pub(crate) use super::reply::{Reply, Target, status_error};
use crate::service::backoff;
use crate::{Error, Result, Secret};

/// Characters left as they are in a path segment: RFC 3986 unreserved. Everything else,
/// `/ ? # % +` and spaces included, is percent-encoded, so an id is always one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether a request may be sent again after it possibly reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads, and writes whose repetition changes nothing (creating a database).
    Safe,
    /// Document writes: retried only if they certainly never reached the server.
    Unsafe,
}

/// The whole-request timeout of streamed transfers (attachments of any size): in effect
/// none; a download that receives nothing for `request_timeout` fails (see
/// `CouchDbProvider::get_attachment_stream`).
const STREAMED_TRANSFER_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request's body and headers beyond the defaults (`Accept: application/json`, and
/// `Content-Type: application/json` for a body).
#[derive(Default)]
pub(crate) struct Outgoing {
    /// The body.
    pub body: Option<bytes::Bytes>,
    /// Its content type, when not JSON.
    pub content_type: Option<String>,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) struct Http {
    client: reqwest::Client,
    /// The nodes' base URLs, without user-info and without a trailing slash (one for a
    /// single server; a cluster's nodes in the order given).
    nodes: Vec<String>,
    /// Where the next request starts in `nodes` (requests are spread round-robin; each
    /// retry goes to the next node).
    next_node: AtomicUsize,
    user: Option<String>,
    password: Option<Secret>,
    max_retries: u32,
    requests: AtomicU64,
    /// The configured `request_timeout`, which streamed downloads apply between pieces.
    idle_timeout: Duration,
}

impl Http {
    pub fn new(config: &CouchDbConfig) -> Result<Self> {
        // One URL, or several nodes of one cluster separated by commas.
        let mut nodes = Vec::new();
        let (mut url_user, mut url_password) = (None, None);
        let mut scheme: Option<String> = None;
        for text in crate::secret::split_nodes(&config.url)
            .into_iter()
            .map(str::trim)
        {
            let mut url = reqwest::Url::parse(text).map_err(|e| Error::Config {
                key: "COUCHDB_URL".into(),
                // The text is not echoed: an unparseable value may still hold a password.
                reason: format!(
                    "a value that is not a URL ({e}); expected e.g. http://127.0.0.1:5984, or \
                     several nodes' URLs separated by commas"
                ),
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::Config {
                    key: "COUCHDB_URL".into(),
                    reason: format!("scheme {:?} is not http or https", url.scheme()),
                });
            }
            if scheme.get_or_insert_with(|| url.scheme().to_owned()) != url.scheme() {
                return Err(Error::Config {
                    key: "COUCHDB_URL".into(),
                    reason: "the nodes' URLs mix http and https; give them one scheme".into(),
                });
            }
            // Credentials in a URL are used unless the configuration gives them explicitly.
            if !url.username().is_empty() && url_user.is_none() {
                url_user = Some(decode(url.username()));
                url_password = url.password().map(|p| Secret::new(decode(p)));
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
            nodes.push(url.as_str().trim_end_matches('/').to_owned());
        }
        let scheme = scheme.unwrap_or_default();

        // reqwest is built without a bundled crypto provider; use ring unless the
        // application installed another one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = trust(reqwest::Client::builder(), config, &scheme)?;
        let client = builder
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(config.max_idle_connections)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Config {
                key: "COUCHDB_URL".into(),
                reason: format!("could not build the HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            nodes,
            next_node: AtomicUsize::new(0),
            user: config.user.clone().or(url_user),
            password: config.password.clone().or(url_password),
            max_retries: config.max_retries,
            requests: AtomicU64::new(0),
            idle_timeout: config.request_timeout,
        })
    }

    /// The server's base URL (never with credentials); a cluster's first node.
    pub fn base(&self) -> &str {
        &self.nodes[0]
    }

    /// Every node's base URL, comma-separated (never with credentials).
    pub fn nodes(&self) -> String {
        self.nodes.join(",")
    }

    /// Where a request starts among the nodes.
    fn first_node(&self) -> usize {
        if self.nodes.len() == 1 {
            0
        } else {
            self.next_node.fetch_add(1, Ordering::Relaxed)
        }
    }

    /// The full URL of `path` on the node of attempt `attempt` of a request started at
    /// `first`: each retry goes to the next node.
    fn on_node(&self, first: usize, attempt: u32, path: &str) -> String {
        let node = &self.nodes[(first + attempt as usize) % self.nodes.len()];
        format!("{node}{path}")
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The longest wait for the next piece of a streamed download.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Counts one request sent: in this client's total, and in the calling operation's
    /// span (see `traced`).
    fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        crate::traced::count_request();
    }

    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `/seg1/seg2...?query`, each segment percent-encoded whole: the path every request
    /// method takes, sent to a node it picks. Query values are given already as text (JSON
    /// for keys) and are encoded here.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> String {
        let mut url = String::new();
        for segment in segments {
            url.push('/');
            url.extend(utf8_percent_encode(segment, SEGMENT));
        }
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.extend(utf8_percent_encode(value, SEGMENT));
        }
        url
    }

    /// Sends a request, with the retry rule of the module doc.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<bytes::Bytes>,
        idempotency: Idempotency,
    ) -> Result<Reply> {
        let outgoing = Outgoing {
            body,
            ..Outgoing::default()
        };
        self.send_with(method, url, &outgoing, idempotency).await
    }

    /// [`Http::send`] with a body of any type and extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        url: &str,
        outgoing: &Outgoing,
        idempotency: Idempotency,
    ) -> Result<Reply> {
        let mut attempt = 0;
        let first = self.first_node();
        loop {
            self.count_request();
            let started = std::time::Instant::now();
            let outcome = self
                .attempt(&method, &self.on_node(first, attempt, url), outgoing)
                .await;
            let path = url;
            match &outcome {
                Ok(reply) => tracing::debug!(
                    method = %method,
                    path,
                    status = reply.status.as_u16(),
                    ms = started.elapsed().as_millis() as u64,
                    attempt = attempt + 1,
                    "CouchDB request"
                ),
                Err(e) => tracing::debug!(
                    method = %method,
                    path,
                    error = %e,
                    ms = started.elapsed().as_millis() as u64,
                    attempt = attempt + 1,
                    "CouchDB request failed"
                ),
            }
            let retry = match &outcome {
                Ok(reply) => {
                    reply.status.is_server_error()
                        && idempotency == Idempotency::Safe
                        && !reply.is_server_bug()
                }
                // A refused certificate is refused again: not retried.
                Err(e) if e.is_connect() => !is_certificate_refusal(e),
                Err(_) => idempotency == Idempotency::Safe,
            };
            if !retry || attempt >= self.max_retries {
                return match outcome {
                    Ok(reply) if reply.is_server_bug() => {
                        let (error, reason) = reply.error_and_reason();
                        Err(Error::Protocol {
                            reason: format!(
                                "CouchDB at {} crashed on this request ({error}: {reason}): a \
                                 server bug that sending it again does not fix, so it was not \
                                 retried",
                                self.nodes()
                            ),
                        })
                    }
                    Ok(reply) if reply.status.is_server_error() => {
                        let (error, reason) = reply.error_and_reason();
                        Err(Error::Unavailable {
                            reason: format!(
                                "CouchDB at {} answered {} ({error}: {reason}) after {} attempts",
                                self.nodes(),
                                reply.status,
                                attempt + 1
                            ),
                        })
                    }
                    Ok(reply) => Ok(reply),
                    Err(e) => Err(self.transport_error(&e, attempt + 1)),
                };
            }
            let why = match &outcome {
                Ok(reply) => format!("answered {}", reply.status),
                Err(e) => e.to_string(),
            };
            tracing::warn!(
                method = %method,
                path,
                attempt = attempt + 1,
                of = self.max_retries + 1,
                "CouchDB request retried: {why}"
            );
            tokio::time::sleep(backoff(attempt + 4)).await;
            attempt += 1;
        }
    }

    /// One request to one full URL, unretried: the answer read whole, or reqwest's error.
    async fn attempt(
        &self,
        method: &Method,
        full_url: &str,
        outgoing: &Outgoing,
    ) -> std::result::Result<Reply, reqwest::Error> {
        let mut request = self
            .client
            .request(method.clone(), full_url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(user) = &self.user {
            request = request.basic_auth(user, self.password.as_ref().map(Secret::expose));
        }
        if let Some(body) = &outgoing.body {
            let content_type = outgoing.content_type.as_deref();
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    content_type.unwrap_or("application/json"),
                )
                .body(body.clone());
        }
        for (name, value) in &outgoing.headers {
            request = request.header(*name, value);
        }
        Reply::read(request.send().await?).await
    }

    /// Sends a `GET` of `url` to every node once (no retries, no failover), in node order:
    /// for state each node keeps for itself, such as Mango's index cache. A node that cannot
    /// be reached answers its transport error.
    pub async fn get_on_every_node(&self, url: &str) -> Vec<Result<Reply>> {
        let mut answers = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            self.count_request();
            let outcome = self
                .attempt(&Method::GET, &format!("{node}{url}"), &Outgoing::default())
                .await;
            answers.push(outcome.map_err(|e| self.transport_error(&e, 1)));
        }
        answers
    }

    /// Sends one request whose answer is read as a stream (attachment downloads): no retry
    /// once it is out; the answer as it arrives, or the status error read whole.
    pub async fn open(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        target: Target<'_>,
    ) -> Result<reqwest::Response> {
        self.open_with(Method::GET, url, None, headers, target)
            .await
    }

    /// [`Http::open`] with any method and an optional JSON body (a filtered changes feed).
    pub async fn open_with(
        &self,
        method: Method,
        url: &str,
        body: Option<bytes::Bytes>,
        headers: &[(&'static str, String)],
        target: Target<'_>,
    ) -> Result<reqwest::Response> {
        self.count_request();
        tracing::debug!(method = %method, path = url, "CouchDB streamed request");
        let mut request = self
            .client
            .request(method, self.on_node(self.first_node(), 0, url))
            .timeout(STREAMED_TRANSFER_TIMEOUT);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(user) = &self.user {
            request = request.basic_auth(user, self.password.as_ref().map(Secret::expose));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&e, 1))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, 1))?;
        Err(status_error(
            &Reply {
                status,
                headers,
                body,
            },
            target,
        ))
    }

    /// Sends one request with a streamed body (attachment uploads): never retried, since
    /// the stream cannot be sent again.
    pub async fn send_stream(
        &self,
        method: Method,
        url: &str,
        content_type: &str,
        headers: &[(&'static str, String)],
        body: reqwest::Body,
    ) -> std::result::Result<Reply, reqwest::Error> {
        self.count_request();
        tracing::debug!(method = %method, path = url, "CouchDB streamed upload");
        let mut request = self
            .client
            .request(method, self.on_node(self.first_node(), 0, url))
            .timeout(STREAMED_TRANSFER_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if let Some(user) = &self.user {
            request = request.basic_auth(user, self.password.as_ref().map(Secret::expose));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        Reply::read(request.body(body).send().await?).await
    }

    /// What a failed streamed request reports (see [`Http::send_stream`]).
    pub fn stream_error(&self, e: &reqwest::Error) -> Error {
        self.transport_error(e, 1)
    }

    /// Sends JSON and expects JSON.
    pub async fn send_json(
        &self,
        method: Method,
        url: &str,
        body: &Value,
        idempotency: Idempotency,
    ) -> Result<Reply> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Protocol {
            reason: format!("could not encode a request: {e}"),
        })?;
        self.send(method, url, Some(bytes.into()), idempotency)
            .await
    }

    fn transport_error(&self, e: &reqwest::Error, attempts: u32) -> Error {
        // reqwest errors can carry the URL; it never holds credentials here (they are sent
        // as a header), but the error text is rebuilt anyway to say what to check.
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "the connection failed"
        };
        let mut cause = String::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        let lowered = cause.to_ascii_lowercase();
        if lowered.contains("certificate") || lowered.contains("tls") {
            return Error::Unavailable {
                reason: format!(
                    "CouchDB at {}: the TLS handshake failed ({cause}); check that the server's \
                     certificate chains to COUCHDB_CA_FILE (or the platform's roots when it is \
                     not set) and names the host of COUCHDB_URL",
                    self.nodes()
                ),
            };
        }
        Error::Unavailable {
            reason: format!(
                "CouchDB at {}: {what} after {attempts} attempt(s) ({cause}); check COUCHDB_URL, \
                 that the server is running, and the timeouts",
                self.nodes()
            ),
        }
    }
}

/// Which certificates an `https` server may present: those chaining to `ca_file` when
/// given, else to the platform's roots. A plain `http` URL loads no roots at all, so a
/// machine (or container) without CA certificates still reaches a plain-HTTP server.
fn trust(
    builder: reqwest::ClientBuilder,
    config: &CouchDbConfig,
    scheme: &str,
) -> Result<reqwest::ClientBuilder> {
    let ca_error = |reason: String| Error::Config {
        key: "COUCHDB_CA_FILE".into(),
        reason,
    };
    match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| ca_error(format!("could not read {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ca_error(format!(
                    "{} is not a PEM certificate bundle ({e})",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(ca_error(format!(
                    "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
                    path.display()
                )));
            }
            Ok(builder.tls_certs_only(certs))
        }
        None if scheme == "http" => Ok(builder.tls_certs_only(Vec::new())),
        None => Ok(builder),
    }
}

/// Whether a failed request was a TLS handshake refusing the server's certificate (or the
/// server ours): the cause chain names it.
fn is_certificate_refusal(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().to_ascii_lowercase().contains("certificate") {
            return true;
        }
        source = s.source();
    }
    false
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_encoded_segment() {
        let http = Http::new(&CouchDbConfig::new("http://u:p@127.0.0.1:5984/")).unwrap();
        assert_eq!(http.base(), "http://127.0.0.1:5984");
        assert_eq!(http.user(), Some("u"));
        let path = http.url(&["a$b/c", "x/y?z#w %+é"], &[("key", "\"k\"")]);
        assert_eq!(path, "/a%24b%2Fc/x%2Fy%3Fz%23w%20%25%2B%C3%A9?key=%22k%22");
        assert_eq!(
            http.on_node(http.first_node(), 0, &path),
            "http://127.0.0.1:5984/a%24b%2Fc/x%2Fy%3Fz%23w%20%25%2B%C3%A9?key=%22k%22"
        );
    }

    #[test]
    fn several_nodes_share_the_load_and_retries_go_to_the_next() {
        let config = CouchDbConfig::new(
            "http://u:p@10.0.0.1:5984, http://10.0.0.2:5984/,http://10.0.0.3:5984",
        );
        let http = Http::new(&config).unwrap();
        assert_eq!(http.user(), Some("u"));
        assert_eq!(
            http.nodes(),
            "http://10.0.0.1:5984,http://10.0.0.2:5984,http://10.0.0.3:5984"
        );
        let starts: Vec<usize> = (0..3).map(|_| http.first_node()).collect();
        let firsts: Vec<String> = starts.iter().map(|s| http.on_node(*s, 0, "/x")).collect();
        assert_eq!(
            firsts,
            [
                "http://10.0.0.1:5984/x",
                "http://10.0.0.2:5984/x",
                "http://10.0.0.3:5984/x"
            ]
        );
        assert_eq!(http.on_node(starts[2], 1, "/x"), "http://10.0.0.1:5984/x");
        let mixed = CouchDbConfig::new("http://10.0.0.1:5984,https://10.0.0.2:6984");
        assert!(matches!(Http::new(&mixed), Err(Error::Config { .. })));
        let bad = CouchDbConfig::new("http://10.0.0.1:5984,not a url :hunter2@");
        let Err(err) = Http::new(&bad) else {
            panic!("garbage was accepted among the nodes");
        };
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        let Err(err) = Http::new(&CouchDbConfig::new("ftp://u:hunter2@h")) else {
            panic!("an ftp URL was accepted");
        };
        assert!(matches!(err, Error::Config { .. }));
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let Err(err) = Http::new(&CouchDbConfig::new("not a url :hunter2@")) else {
            panic!("garbage was accepted as a URL");
        };
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
