//! Databases on CouchDB: the list, the info (design documents counted out), deletion, and
//! creating a missing database on its first write.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::changes::seq_text;
use super::http::{Idempotency, Reply, Target, status_error};
use super::{CouchDbProvider, protocol};
use crate::{DatabaseInfo, Result, validate};

impl CouchDbProvider {
    /// Creates a database; one that already exists is fine.
    async fn create_db(&self, db: &str) -> Result<()> {
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

    /// Sends a write; if the database is missing (404), creates it and sends the write again.
    pub(super) async fn write(
        &self,
        db: &str,
        method: Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let body = bytes::Bytes::from(body);
        let reply = self
            .http
            .send(method.clone(), url, Some(body.clone()), Idempotency::Unsafe)
            .await?;
        if reply.status != StatusCode::NOT_FOUND {
            return Ok(reply);
        }
        self.create_db(db).await?;
        self.http
            .send(method, url, Some(body), Idempotency::Unsafe)
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
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(status_error(&reply, Target { db, id: None }))
        }
    }
}
