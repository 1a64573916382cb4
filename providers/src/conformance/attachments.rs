//! Attachments: every scenario recorded from a genuine CouchDB 3.5
//! (`testdata/couchdb-attachments.json`) replayed through the API, each answer compared with
//! CouchDB's: revisions, stubs (digests, `revpos`, lengths, encodings, order), inline data,
//! attachment bytes, errors, counts and the changes feed.
//!
//! The recorded HTTP requests map onto the API: `PUT /db/doc` is `save` with a `_rev` (body
//! or `?rev=`) and `create` without; `GET /db/doc` is `get_with` (`rev`, `attachments`,
//! `att_encoding_info`); `DELETE /db/doc` is `delete_rev`; `POST _bulk_docs` is `save_many`;
//! `PUT /db/doc/name` is `put_attachment` (`?rev=` or `If-Match`, `Content-Type`,
//! `Content-Encoding: gzip`); `GET /db/doc/name` is `get_attachment` (`Accept-Encoding:
//! gzip` asks for the stored bytes), compared by the body's MD5, `Content-Type`, `ETag`
//! (the digest) and `Content-Encoding`; `DELETE /db/doc/name` is `delete_attachment`;
//! `GET /db` compares the document counts, `GET _changes?style=all_docs` each document's
//! leaves. HTTP-only features are not part of the API and are not replayed: `HEAD`,
//! `Range` and `If-None-Match` (four steps of `old_revision_reads_and_ranges`). Design
//! documents are outside docstore's ids, so the scenario on `_design/app` is replayed on the
//! plain id `design.app` (a revision id does not depend on the document id). The 1 MiB
//! inline data CouchDB's recording elides is compared by its decoded length and MD5.

use serde_json::Value;

use super::Service;
use crate::testing::{drop_db, unique_db};
use crate::{AttachmentRead, ContentEncoding, Document, Error, GetOptions, NewAttachment, Rev};

/// Replays all 33 recorded scenarios and reports every difference from CouchDB at once.
pub async fn attachment_scenarios_match_recorded_couchdb(svc: &Service) {
    let data: Value =
        serde_json::from_str(include_str!("../../../testdata/couchdb-attachments.json"))
            .expect("recorded scenarios parse");
    let scenarios = data["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 33, "every recorded scenario");
    let mut differences: Vec<String> = Vec::new();
    let mut http_only = 0;
    for scenario in scenarios {
        let name = scenario["name"].as_str().expect("name");
        let recorded_db = scenario["db"].as_str().expect("db");
        let db = unique_db("att");
        let mut run = Run {
            svc,
            db: &db,
            recorded_db,
            name,
            differences: &mut differences,
        };
        for (n, step) in scenario["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .enumerate()
        {
            http_only += usize::from(!run.step(n, step).await);
        }
        drop_db(svc, &db).await;
    }
    assert_eq!(
        http_only, 4,
        "only HEAD, Range and If-None-Match steps are left out"
    );
    assert!(
        differences.is_empty(),
        "{} differences from CouchDB 3.5 on {}:\n{}",
        differences.len(),
        svc.provider_name(),
        differences.join("\n")
    );
}

struct Run<'a> {
    svc: &'a Service,
    db: &'a str,
    recorded_db: &'a str,
    name: &'a str,
    differences: &'a mut Vec<String>,
}

/// A JSON value with its key order, for exact comparison.
fn text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The status CouchDB answers for an error of ours.
fn status_of(e: &Error) -> u16 {
    match e {
        Error::NotFound { .. } => 404,
        Error::Conflict { .. } => 409,
        Error::MissingStub { .. } => 412,
        Error::InvalidAttachment { .. }
        | Error::InvalidDocument { .. }
        | Error::InvalidDocumentId { .. } => 400,
        _ => 500,
    }
}

/// The id a recorded id is replayed as (see the module doc).
fn replayed_id(recorded: &str) -> String {
    match recorded.strip_prefix("_design/") {
        Some(name) => format!("design.{name}"),
        None => recorded.to_owned(),
    }
}

/// Our read with each attachment's `data` elided as the recording elides it, where it did.
fn elide_like(ours: &mut Value, couch: &Value) {
    use base64::Engine;
    let Some(atts) = ours.get_mut("_attachments").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, att) in atts.iter_mut() {
        let elided = &couch["_attachments"][name]["data"];
        if elided.get("_elided_base64").is_none() {
            continue;
        }
        let Some(Value::String(b64)) = att.get("data") else {
            continue;
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        let summary = serde_json::json!({
            "_elided_base64": true,
            "b64_length": b64.len(),
            "decoded_length": decoded.len(),
            "decoded_md5": md5_hex(&decoded),
        });
        att["data"] = summary;
    }
}

/// At most 2,000 characters of a difference.
fn shorten(text: String) -> String {
    if text.len() <= 2000 {
        return text;
    }
    let mut end = 2000;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} characters)", &text[..end], text.len())
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("recorded paths are UTF-8")
}

/// A recorded request's raw body: base64, or the generator of the big ones.
fn raw_body(request: &Value) -> Vec<u8> {
    use base64::Engine;
    if let Some(b64) = request["body_b64"].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("recorded base64");
    }
    let generator = &request["body_generator"];
    assert_eq!(
        generator["expr"].as_str(),
        Some("bytes(i % 251 for i in range(n))"),
        "a generator this replay knows"
    );
    let n = generator["n"].as_u64().expect("n") as usize;
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Run<'_> {
    fn differ(&mut self, what: &str, ours: impl std::fmt::Display, couch: impl std::fmt::Display) {
        self.differences.push(format!(
            "{}: {what}\n    ours:    {}\n    couchdb: {}",
            self.name,
            shorten(ours.to_string()),
            shorten(couch.to_string())
        ));
    }

    /// Compares a write's outcome with the recorded answer.
    fn write_outcome(&mut self, what: &str, ours: Result<Rev, Error>, response: &Value) {
        let status = response["status"].as_u64().unwrap_or(0) as u16;
        match ours {
            Ok(rev) if (200..300).contains(&status) => {
                let couch = response["body_json"]["rev"].as_str().unwrap_or("");
                if rev.to_string() != couch {
                    self.differ(what, rev, couch);
                }
            }
            Ok(rev) => self.differ(what, format!("ok {rev}"), status),
            Err(e) if status_of(&e) == status => {}
            Err(e) => self.differ(what, format!("{} {e}", status_of(&e)), status),
        }
    }

    /// Replays one step; `false` when it is HTTP-only and not replayed.
    async fn step(&mut self, n: usize, step: &Value) -> bool {
        let request = &step["request"];
        let response = &step["response"];
        let method = request["method"].as_str().expect("method");
        let headers = &request["headers"];
        let header = |name: &str| headers[name].as_str();
        let full = request["path"].as_str().expect("path");
        let prefix = format!("/{}", self.recorded_db);
        let rest = full.strip_prefix(&prefix).expect("the scenario's database");
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let params: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        let param = |name: &str| -> Option<&str> {
            params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        };
        let flag = |name: &str| param(name) == Some("true");
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let what = format!("step {n} ({method} {full})");
        if method == "HEAD" || header("Range").is_some() || header("If-None-Match").is_some() {
            return false;
        }
        // The document id: `_design/x` takes two segments.
        let id_len = if segments.first().map(String::as_str) == Some("_design") {
            2
        } else {
            1
        };
        match (method, segments.len()) {
            ("GET", 0) => {
                let info = match self.svc.database_info(self.db).await {
                    Ok(info) => info,
                    Err(e) => {
                        self.differ(&what, e, "the database's counts");
                        return true;
                    }
                };
                let body = &response["body_json"];
                let ours = (info.doc_count, info.doc_del_count);
                let couch = (
                    body["doc_count"].as_u64().unwrap_or(u64::MAX),
                    body["doc_del_count"].as_u64().unwrap_or(u64::MAX),
                );
                if ours != couch {
                    self.differ(&what, format!("{ours:?}"), format!("{couch:?}"));
                }
            }
            ("GET", 1) if segments[0] == "_changes" => self.changes(&what, response).await,
            ("POST", 1) if segments[0] == "_bulk_docs" => {
                let body: Value =
                    serde_json::from_str(request["body_text"].as_str().expect("body"))
                        .expect("recorded JSON");
                let docs: Vec<Document> = body["docs"]
                    .as_array()
                    .expect("docs")
                    .iter()
                    .map(|d| Document::from_value(d.clone()).expect("object"))
                    .collect();
                let results = self.svc.save_many(self.db, docs).await.expect("bulk save");
                let couch = response["body_json"].as_array().expect("results");
                for (i, (ours, couch)) in results.into_iter().zip(couch).enumerate() {
                    let answer = serde_json::json!({"status": 201, "body_json": couch});
                    self.write_outcome(&format!("{what} doc {i}"), ours.map(|w| w.rev), &answer);
                }
            }
            (_, len) if len == id_len => {
                let id = replayed_id(&segments.join("/"));
                let reads = GetOptions {
                    rev: param("rev").map(|r| Rev::parse(r).expect("revision")),
                    attachments: flag("attachments"),
                    att_encoding_info: flag("att_encoding_info"),
                    ..GetOptions::default()
                };
                self.document(&what, method, &id, request, response, reads)
                    .await;
            }
            (_, len) if len > id_len => {
                let id = replayed_id(&segments[..id_len].join("/"));
                let name = segments[id_len..].join("/");
                let rev = param("rev")
                    .or_else(|| header("If-Match").map(|m| m.trim_matches('"')))
                    .map(|r| Rev::parse(r).expect("recorded revision"));
                match method {
                    "PUT" => {
                        let upload = NewAttachment {
                            content_type: header("Content-Type").map(str::to_owned),
                            data: raw_body(request).into(),
                            encoding: if header("Content-Encoding") == Some("gzip") {
                                ContentEncoding::Gzip
                            } else {
                                ContentEncoding::Identity
                            },
                            md5: None,
                        };
                        let ours = self
                            .svc
                            .put_attachment(self.db, &id, &name, rev.as_ref(), upload)
                            .await
                            .map(|w| w.rev);
                        self.write_outcome(&what, ours, response);
                    }
                    "DELETE" => {
                        let rev = rev.expect("a removal names its revision");
                        let ours = self
                            .svc
                            .delete_attachment(self.db, &id, &name, &rev)
                            .await
                            .map(|w| w.rev);
                        self.write_outcome(&what, ours, response);
                    }
                    "GET" => {
                        let options = AttachmentRead {
                            rev,
                            encoded: header("Accept-Encoding") == Some("gzip"),
                        };
                        let ours = self.svc.get_attachment(self.db, &id, &name, &options).await;
                        self.attachment(&what, ours, response);
                    }
                    other => panic!("unexpected recorded method {other}"),
                }
            }
            _ => panic!("{what}: a request this replay does not know"),
        }
        true
    }

    /// A request on a document; `options` are its query parameters (`rev` also names the
    /// revision a `PUT` or `DELETE` edits).
    async fn document(
        &mut self,
        what: &str,
        method: &str,
        id: &str,
        request: &Value,
        response: &Value,
        options: GetOptions,
    ) {
        let status = response["status"].as_u64().unwrap_or(0) as u16;
        match method {
            "PUT" => {
                let body: Value =
                    serde_json::from_str(request["body_text"].as_str().expect("body"))
                        .expect("recorded JSON");
                let mut doc = Document::from_value(body).expect("object");
                if doc.rev().is_none()
                    && let Some(rev) = &options.rev
                {
                    doc.set_rev(rev);
                }
                let ours = if doc.rev().is_some() {
                    self.svc.save(self.db, id, doc).await
                } else {
                    self.svc.create(self.db, id, doc).await
                };
                self.write_outcome(what, ours.map(|w| w.rev), response);
            }
            "DELETE" => {
                let rev = options.rev.expect("a deletion names its revision");
                let ours = self.svc.delete_rev(self.db, id, &rev).await;
                self.write_outcome(what, ours.map(|w| w.rev), response);
            }
            "GET" => match self.svc.get_with(self.db, id, &options).await {
                Ok(doc) if status == 200 => {
                    let mut ours = doc.into_value();
                    let mut couch = response["body_json"].clone();
                    elide_like(&mut ours, &couch);
                    if let Some(id) = couch.get("_id").and_then(Value::as_str) {
                        couch["_id"] = Value::String(replayed_id(id));
                    }
                    let (ours, couch) = (text(&ours), text(&couch));
                    if ours != couch {
                        self.differ(what, ours, couch);
                    }
                }
                Ok(doc) => self.differ(what, text(&doc.into_value()), status),
                Err(e) if status_of(&e) == status => {}
                Err(e) => self.differ(what, e, status),
            },
            other => panic!("unexpected recorded method {other}"),
        }
    }

    fn attachment(&mut self, what: &str, ours: Result<crate::Attachment, Error>, response: &Value) {
        let status = response["status"].as_u64().unwrap_or(0) as u16;
        let headers = &response["headers"];
        let att = match ours {
            Ok(att) if status == 200 => att,
            Ok(att) => return self.differ(what, format!("ok {:?}", att.info), status),
            Err(e) if status_of(&e) == status => return,
            Err(e) => return self.differ(what, e, status),
        };
        let ours_md5 = md5_hex(&att.data);
        let couch_md5 = response["body_md5"].as_str().unwrap_or("");
        if ours_md5 != couch_md5 {
            self.differ(
                &format!("{what}: body md5 (length {})", att.data.len()),
                ours_md5,
                couch_md5,
            );
        }
        let content_type = headers["Content-Type"].as_str().unwrap_or("");
        if att.info.content_type != content_type {
            self.differ(
                &format!("{what}: content type"),
                &att.info.content_type,
                content_type,
            );
        }
        let etag = att.info.digest.strip_prefix("md5-").unwrap_or("");
        let couch_etag = headers["ETag"].as_str().unwrap_or("").trim_matches('"');
        if etag != couch_etag {
            self.differ(&format!("{what}: digest"), etag, couch_etag);
        }
        let gzip = headers["Content-Encoding"].as_str() == Some("gzip");
        if (att.encoding == ContentEncoding::Gzip) != gzip {
            self.differ(
                &format!("{what}: encoding"),
                format!("{:?}", att.encoding),
                gzip,
            );
        }
    }

    /// `_changes?style=all_docs`: each document's winner, deletion and other leaves.
    async fn changes(&mut self, what: &str, response: &Value) {
        let page = match self.svc.changes(self.db, None, 10_000).await {
            Ok(page) => page,
            Err(e) => return self.differ(what, e, "a changes feed"),
        };
        let mut ours: Vec<String> = page
            .results
            .iter()
            .map(|c| {
                let mut revs: Vec<String> = std::iter::once(c.rev)
                    .chain(c.other_leaves.iter().copied())
                    .map(|r| r.to_string())
                    .collect();
                revs.sort();
                format!("{} {:?} deleted={}", c.id, revs, c.deleted)
            })
            .collect();
        let mut couch: Vec<String> = response["body_json"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| {
                let mut revs: Vec<String> = r["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["rev"].as_str().map(str::to_owned))
                    .collect();
                revs.sort();
                let deleted = r["deleted"].as_bool().unwrap_or(false);
                let id = replayed_id(r["id"].as_str().unwrap_or(""));
                format!("{id} {revs:?} deleted={deleted}")
            })
            .collect();
        ours.sort();
        couch.sort();
        if ours != couch {
            self.differ(what, format!("{ours:?}"), format!("{couch:?}"));
        }
    }
}
