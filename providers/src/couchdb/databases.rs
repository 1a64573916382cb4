//! Databases on CouchDB: the list, the info (design documents counted out), deletion, and
//! creating a missing database on its first write.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::changes::seq_text;
use super::http::{Idempotency, Outgoing, Reply, Target, status_error};
use super::quorum::with_write_quorum;
use super::{CouchDbProvider, protocol};
use crate::{DatabaseInfo, Result, validate};

impl CouchDbProvider {
    /// Creates a database; one that already exists is fine.
    pub(super) async fn create_db(&self, db: &str) -> Result<()> {
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::PUT, &url, None, Idempotency::Safe)
            .await?;
        match reply.status.as_u16() {
            201 | 202 | 412 => Ok(()),
            _ => Err(status_error(&reply, Target { db, id: None })),
        }
    }

    /// Sends a JSON write, on a cluster with every copy's acknowledgement asked for (`w`,
    /// see `quorum.rs`); if the database is missing (404), creates it and sends the write
    /// again.
    pub(super) async fn write(
        &self,
        db: &str,
        method: Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let outgoing = Outgoing {
            body: Some(bytes::Bytes::from(body)),
            ..Outgoing::default()
        };
        self.write_with(db, method, url, &outgoing).await
    }

    /// [`CouchDbProvider::write`] with a body of any type and extra headers (attachment
    /// uploads).
    pub(super) async fn write_with(
        &self,
        db: &str,
        method: Method,
        url: &str,
        outgoing: &Outgoing,
    ) -> Result<Reply> {
        let quorate = |w: Option<u32>| match w {
            Some(w) => with_write_quorum(url, w),
            None => url.to_owned(),
        };
        let first = quorate(self.write_quorum(db).await?);
        let reply = self
            .http
            .send_with(method.clone(), &first, outgoing, Idempotency::Unsafe)
            .await?;
        if reply.status != StatusCode::NOT_FOUND
            || !status_error(&reply, Target { db, id: None }).is_database_missing()
        {
            return Ok(reply);
        }
        self.create_db(db).await?;
        let again = quorate(self.write_quorum(db).await?);
        self.http
            .send_with(method, &again, outgoing, Idempotency::Unsafe)
            .await
    }

    pub(super) async fn list_databases(&self) -> Result<Vec<String>> {
        let url = self.http.url(&["_all_dbs"], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db: "", id: None }));
        }
        let value = reply.json()?;
        let mut names: Vec<String> = value
            .as_array()
            .ok_or_else(|| protocol("_all_dbs", &reply))?
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| !n.starts_with('_'))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    pub(super) async fn database_info(&self, db: &str) -> Result<DatabaseInfo> {
        validate::database_name(db)?;
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let v = reply.json()?;
        let count = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| protocol("database info", &reply))
        };
        // CouchDB counts design documents (the indexes' too); the contract does not.
        let design = self.http.url(
            &[db, "_all_docs"],
            &[("startkey", "\"_design/\""), ("endkey", "\"_design0\"")],
        );
        let design = self
            .http
            .send(Method::GET, &design, None, Idempotency::Safe)
            .await?;
        if !design.status.is_success() {
            return Err(status_error(&design, Target { db, id: None }));
        }
        let design_docs = design.json()?["rows"]
            .as_array()
            .ok_or_else(|| protocol("_all_docs of design documents", &design))?
            .len() as u64;
        Ok(DatabaseInfo {
            name: db.to_owned(),
            doc_count: count("doc_count")?.saturating_sub(design_docs),
            doc_del_count: count("doc_del_count")?,
            update_seq: seq_text(&v["update_seq"]),
        })
    }

    pub(super) async fn delete_database(&self, db: &str) -> Result<()> {
        validate::database_name(db)?;
        let url = self.http.url(&[db], &[]);
        let reply = self
            .http
            .send(Method::DELETE, &url, None, Idempotency::Unsafe)
            .await?;
        self.revs.forget_db(db);
        self.local_revs.forget_db(db);
        self.copies.forget(db);
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(status_error(&reply, Target { db, id: None }))
        }
    }
}

impl CouchDbProvider {
    pub(super) async fn revs_limit(&self, db: &str) -> Result<u64> {
        validate::database_name(db)?;
        let url = self.http.url(&[db, "_revs_limit"], &[]);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        reply
            .json()?
            .as_u64()
            .ok_or_else(|| protocol("_revs_limit", &reply))
    }

    pub(super) async fn set_revs_limit(&self, db: &str, limit: u64) -> Result<()> {
        validate::database_name(db)?;
        validate::revs_limit(limit)?;
        let url = self.http.url(&[db, "_revs_limit"], &[]);
        let body = bytes::Bytes::from(limit.to_string().into_bytes());
        // Setting the same value again changes nothing: safe to resend.
        let mut reply = self
            .http
            .send(Method::PUT, &url, Some(body.clone()), Idempotency::Safe)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            // Like any write, it creates the database.
            self.create_db(db).await?;
            reply = self
                .http
                .send(Method::PUT, &url, Some(body), Idempotency::Safe)
                .await?;
        }
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        Ok(())
    }

    /// `POST /db/_compact`, then `GET /db` until the compaction is seen done (see
    /// [`compact_settled`]).
    pub(super) async fn compact(&self, db: &str) -> Result<()> {
        validate::database_name(db)?;
        let info_url = self.http.url(&[db], &[]);
        let before = self.compaction_state(db, &info_url).await?;
        let url = self.http.url(&[db, "_compact"], &[]);
        let reply = self
            .http
            .send(
                Method::POST,
                &url,
                Some(Vec::<u8>::new().into()),
                Idempotency::Safe,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let mut watch = CompactionWatch::new(before.1, std::time::Instant::now());
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(250));
            let (running, file_size) = self.compaction_state(db, &info_url).await?;
            if watch.settled(running, file_size, std::time::Instant::now()) {
                return Ok(());
            }
        }
    }

    /// `compact_running` and `sizes.file` of database `db`.
    async fn compaction_state(&self, db: &str, info_url: &str) -> Result<(bool, u64)> {
        let reply = self
            .http
            .send(Method::GET, info_url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: None }));
        }
        let info = reply.json()?;
        Ok((
            info["compact_running"] == Value::Bool(true),
            info["sizes"]["file"].as_u64().unwrap_or(0),
        ))
    }
}

/// When a compaction CouchDB was asked for is done. CouchDB starts it on each shard
/// asynchronously (the `POST` returns before any has begun) and reports only whether one is
/// running, so "not running" right after the request proves nothing. Done is: not running,
/// after the compaction showed (it was seen running, or the file size changed), with the
/// size unchanged over two more looks (the shards do not finish together); or, when nothing
/// ever showed, not running a few seconds on (a database already compact compacts to the
/// same size). CouchDB's own test suite waits on the same signs.
struct CompactionWatch {
    size_before: u64,
    shown: bool,
    last_size: u64,
    steady_looks: u32,
    started: std::time::Instant,
}

/// How long a compaction that never shows is waited for.
const QUIET_COMPACTION: std::time::Duration = std::time::Duration::from_secs(3);

impl CompactionWatch {
    fn new(size_before: u64, started: std::time::Instant) -> Self {
        Self {
            size_before,
            shown: false,
            last_size: size_before,
            steady_looks: 0,
            started,
        }
    }

    /// Takes one look; whether the compaction is done.
    fn settled(&mut self, running: bool, file_size: u64, now: std::time::Instant) -> bool {
        let steady = file_size == self.last_size;
        self.last_size = file_size;
        if running {
            self.shown = true;
            self.steady_looks = 0;
            return false;
        }
        if !self.shown && file_size != self.size_before {
            self.shown = true;
            self.steady_looks = 0;
            return false;
        }
        if !self.shown {
            return now.duration_since(self.started) >= QUIET_COMPACTION;
        }
        self.steady_looks = if steady { self.steady_looks + 1 } else { 0 };
        self.steady_looks >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compaction_is_done_once_seen_and_steady() {
        let t0 = std::time::Instant::now();
        let mut w = CompactionWatch::new(100, t0);
        assert!(!w.settled(false, 100, t0), "not started yet");
        assert!(!w.settled(true, 100, t0));
        assert!(!w.settled(false, 80, t0), "one shard done, size moving");
        assert!(!w.settled(false, 80, t0));
        assert!(w.settled(false, 80, t0), "steady for two looks");
        let mut quiet = CompactionWatch::new(100, t0);
        assert!(!quiet.settled(false, 100, t0));
        assert!(
            quiet.settled(false, 100, t0 + QUIET_COMPACTION),
            "nothing to compact"
        );
        let mut fast = CompactionWatch::new(100, t0);
        assert!(
            !fast.settled(false, 90, t0),
            "finished before the first look"
        );
        assert!(!fast.settled(false, 90, t0));
        assert!(fast.settled(false, 90, t0));
    }
}
