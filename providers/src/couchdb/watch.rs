//! `watch` on CouchDB: the continuous `_changes` feed (`feed=continuous`, `style=all_docs`,
//! with heartbeats), read line by line as the consumer polls, and reopened from the last
//! sequence delivered whenever it breaks.
//!
//! The stream holds one open response and at most one line of it: nothing is read from the
//! socket until the consumer asks for the next change, so a slow consumer slows the server
//! (TCP flow control) instead of growing a buffer. A line longer than [`MAX_LINE`] is a
//! protocol error.
//!
//! Reconnecting: the connection is taken as dead when it ends, fails, answers a 5xx, or
//! sends nothing (not even a heartbeat newline) for three heartbeats. The feed is then
//! reopened with `since` = the last sequence delivered, after a jittered backoff (capped at
//! [`MAX_BACKOFF`]), with a `warn` each time, for as long as the stream is held. A 4xx
//! answer (the database deleted, credentials refused, a bad token) ends the stream with
//! its typed error. A change may repeat after a reconnect; none is lost.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Method;
use serde_json::{Value, json};

use super::changes::{change_of, seq_text};
use super::http::{Http, Idempotency, Target, status_error};
use super::{CouchDbProvider, protocol};
use crate::watch::{ChangeStream, LiveChange, Since, WatchOptions};
use crate::{Document, Error, Result, validate};

/// The longest line (one change, with its document) the stream accepts.
const MAX_LINE: usize = 256 * 1024 * 1024;

/// The first wait before reopening a broken feed; it doubles per failure up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to reopen the feed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait before attempt `failures` (≥ 1): half of the doubled window, plus jitter up to
/// the other half, so many streams of one restarted server do not return together.
fn reconnect_wait(failures: u32) -> Duration {
    let window = FIRST_BACKOFF
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(MAX_BACKOFF);
    let half = window / 2;
    half + Duration::from_micros(fastrand::u64(0..=half.as_micros() as u64))
}

impl CouchDbProvider {
    pub(super) async fn watch(&self, db: &str, options: WatchOptions) -> Result<ChangeStream> {
        validate::database_name(db)?;
        // Checked here, so a bad selector is `InvalidQuery` up front as on other providers.
        options.parsed_selector()?;
        if options.heartbeat.is_zero() {
            return Err(Error::InvalidQuery {
                reason: "the watch heartbeat must be longer than zero".into(),
            });
        }
        // One read of the database: it must exist, and `now` is its update seq.
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let since = match options.since {
            Since::Start => "0".to_owned(),
            Since::Now => {
                let info = reply.json()?;
                match info.get("update_seq") {
                    Some(seq) => seq_text(seq),
                    None => return Err(protocol("database info", &reply)),
                }
            }
            Since::After(token) => token,
        };
        let feed = Feed {
            http: Arc::clone(&self.http),
            db: db.to_owned(),
            since,
            include_docs: options.include_docs,
            selector: options.selector,
            heartbeat: options.heartbeat,
            body: None,
            line: BytesMut::new(),
            failures: 0,
            ended: false,
        };
        Ok(futures::stream::unfold(feed, |mut feed| async move {
            let item = feed.next().await?;
            Some((item, feed))
        })
        .boxed())
    }
}

/// One watch's state between polls.
struct Feed {
    http: Arc<Http>,
    db: String,
    /// The last sequence delivered (or the starting point): where a reconnect resumes.
    since: String,
    include_docs: bool,
    selector: Option<Value>,
    heartbeat: Duration,
    /// The open response's body, if connected.
    body: Option<BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    /// Bytes received after the last complete line.
    line: BytesMut,
    /// Failed connections since the last line received, for the backoff.
    failures: u32,
    ended: bool,
}

/// What one attempt at reading the next line found.
enum Step {
    Change(LiveChange),
    /// A heartbeat, a design document, or the feed's own end: read on.
    Nothing,
    /// The connection is unusable: reopen it after a backoff.
    Broken(String),
    /// The server ended the feed in order: reopen it at once.
    Ended,
}

impl Feed {
    async fn next(&mut self) -> Option<Result<LiveChange>> {
        if self.ended {
            return None;
        }
        loop {
            if self.body.is_none() {
                if self.failures > 0 {
                    tokio::time::sleep(reconnect_wait(self.failures)).await;
                }
                match self.connect().await {
                    Ok(body) => {
                        self.body = Some(body);
                        self.line.clear();
                    }
                    Err(e) if e.is_retryable() => {
                        self.broken(&e.to_string());
                        continue;
                    }
                    Err(e) => {
                        self.ended = true;
                        return Some(Err(e));
                    }
                }
            }
            match self.read_line().await {
                Ok(Step::Change(change)) => return Some(Ok(change)),
                Ok(Step::Nothing) => {}
                Ok(Step::Broken(why)) => self.broken(&why),
                Ok(Step::Ended) => self.body = None,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Drops the connection, to be reopened after a backoff.
    fn broken(&mut self, why: &str) {
        self.body = None;
        self.failures = self.failures.saturating_add(1);
        tracing::warn!(
            db = %self.db,
            since = %self.since,
            attempt = self.failures,
            "CouchDB changes feed interrupted ({why}); reconnecting from the last sequence"
        );
    }

    /// Opens the continuous feed from `since`.
    async fn connect(&mut self) -> Result<BoxStream<'static, reqwest::Result<bytes::Bytes>>> {
        let heartbeat = self.heartbeat.as_millis().max(1).to_string();
        let mut query = vec![
            ("feed", "continuous"),
            ("style", "all_docs"),
            ("heartbeat", heartbeat.as_str()),
            ("since", self.since.as_str()),
        ];
        if self.include_docs {
            query.push(("include_docs", "true"));
        }
        let (method, body) = match &self.selector {
            Some(selector) => {
                query.push(("filter", "_selector"));
                let body = json!({ "selector": selector }).to_string();
                (Method::POST, Some(bytes::Bytes::from(body)))
            }
            None => (Method::GET, None),
        };
        let url = self.http.url(&[&self.db, "_changes"], &query);
        let target = Target {
            db: &self.db,
            id: None,
        };
        // The answer's head must come within the request timeout (the body never ends).
        let limit = self.http.idle_timeout();
        let opening = self.http.open_with(method, &url, body, &[], target);
        let response =
            tokio::time::timeout(limit, opening)
                .await
                .map_err(|_| Error::Unavailable {
                    reason: format!(
                        "CouchDB did not answer the changes feed request within {} s",
                        limit.as_secs_f64()
                    ),
                })??;
        Ok(response.bytes_stream().boxed())
    }

    /// Reads until one complete line is buffered and interprets it.
    async fn read_line(&mut self) -> Result<Step> {
        let silence = self.heartbeat.saturating_mul(3);
        loop {
            if let Some(end) = self.line.iter().position(|&b| b == b'\n') {
                let line = self.line.split_to(end + 1);
                return self.interpret(&line[..end]);
            }
            if self.line.len() > MAX_LINE {
                return Err(Error::Protocol {
                    reason: format!(
                        "CouchDB sent a changes line of more than {MAX_LINE} bytes for database {:?}",
                        self.db
                    ),
                });
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(Step::Broken("not connected".into()));
            };
            match tokio::time::timeout(silence, body.next()).await {
                Err(_) => {
                    return Ok(Step::Broken(format!(
                        "nothing received for {} ms",
                        silence.as_millis()
                    )));
                }
                Ok(None) => return Ok(Step::Broken("the server closed the feed".into())),
                Ok(Some(Err(e))) => return Ok(Step::Broken(format!("read failed: {e}"))),
                Ok(Some(Ok(mut piece))) => {
                    while piece.has_remaining() {
                        let chunk = piece.chunk();
                        self.line.extend_from_slice(chunk);
                        let n = chunk.len();
                        piece.advance(n);
                    }
                }
            }
        }
    }

    /// One line of the feed: a change, a heartbeat (empty), or the feed's last line.
    fn interpret(&mut self, line: &[u8]) -> Result<Step> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(Step::Nothing);
        }
        let mut row: Value = serde_json::from_slice(line).map_err(|e| Error::Protocol {
            reason: format!("CouchDB sent a changes line that is not JSON ({e})"),
        })?;
        // Something arrived: the connection works.
        self.failures = 0;
        if let Some(last) = row.get("last_seq") {
            // The server ended the feed (its own timeout): reopen from there at once.
            self.since = seq_text(last);
            return Ok(Step::Ended);
        }
        if row.get("error").is_some() {
            return Err(Error::Protocol {
                reason: format!("CouchDB's changes feed for {:?} failed: {row}", self.db),
            });
        }
        let Some(change) = change_of(&row) else {
            return Err(Error::Protocol {
                reason: format!("CouchDB sent a changes row without id or revisions: {row}"),
            });
        };
        self.since = seq_text(&row["seq"]);
        let Some(change) = change else {
            return Ok(Step::Nothing);
        };
        let doc = if self.include_docs {
            match row.get_mut("doc").map(Value::take) {
                Some(Value::Object(map)) => Some(Document::from(map)),
                _ => None,
            }
        } else {
            None
        };
        Ok(Step::Change(LiveChange { change, doc }))
    }
}
