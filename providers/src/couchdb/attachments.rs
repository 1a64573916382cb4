//! Attachments on CouchDB: standalone uploads (`PUT /db/id/name`), downloads (the stub from
//! `GET /db/id?att_encoding_info=true`, then the bytes of that very revision) and removals
//! (`DELETE /db/id/name`). Inline attachments travel in the document bodies as they are.

use std::sync::Arc;

use md5::{Digest, Md5};
use parking_lot::Mutex;
use reqwest::Method;
use reqwest::StatusCode;

use super::http::{Idempotency, Outgoing, Reply, Target, status_error};
use super::quorum::with_write_quorum;
use super::{CouchDbProvider, protocol, rev_of};
use crate::attachment::{self, DEFAULT_CONTENT_TYPE};
use crate::{
    Attachment, AttachmentInfo, AttachmentRead, AttachmentStream, AttachmentUpload,
    ContentEncoding, Error, NewAttachment, Result, Rev, WriteResult, validate,
};

impl CouchDbProvider {
    pub(super) async fn put_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        new: NewAttachment,
    ) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        attachment::check_upload(db, id, name, &new)?;
        let rev_text = rev.map(Rev::to_string);
        let query: Vec<(&str, &str)> = rev_text.iter().map(|r| ("rev", r.as_str())).collect();
        let url = self.http.url(&[db, id, name], &query);
        let mut headers = Vec::new();
        if new.encoding == ContentEncoding::Gzip {
            headers.push(("content-encoding", "gzip".to_owned()));
        }
        let outgoing = Outgoing {
            body: Some(new.data),
            content_type: Some(
                new.content_type
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            ),
            headers,
        };
        let _turn = self.document_turn(db, id).await?;
        let reply = self.write_with(db, Method::PUT, &url, &outgoing).await?;
        self.attachment_written(&reply, Target { db, id: Some(id) }, "an attachment upload")
            .await
    }

    /// A streamed upload: the database is created first if needed (the stream cannot be sent
    /// twice), then one `PUT` streams the body. A failure of the caller's stream, or an MD5
    /// that does not match, aborts the request before its end, so CouchDB writes nothing.
    pub(super) async fn put_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: Option<&Rev>,
        upload: AttachmentUpload,
    ) -> Result<WriteResult> {
        use futures::StreamExt;
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        attachment::check_upload_name(db, id, name)?;
        self.create_db(db).await?;
        let rev_text = rev.map(Rev::to_string);
        let query: Vec<(&str, &str)> = rev_text.iter().map(|r| ("rev", r.as_str())).collect();
        let mut url = self.http.url(&[db, id, name], &query);
        let _turn = self.document_turn(db, id).await?;
        if let Some(w) = self.write_quorum(db).await? {
            url = with_write_quorum(&url, w);
        }
        let mut headers = Vec::new();
        if upload.encoding == ContentEncoding::Gzip {
            headers.push(("content-encoding", "gzip".to_owned()));
        }
        let content_type = upload
            .content_type
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned());
        // The caller's stream, hashed as it goes; its failure (or a wrong MD5 at its end)
        // is remembered and ends the body with an error, which aborts the request.
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let state = (
            upload.body,
            Md5::new(),
            upload.md5,
            Arc::clone(&failure),
            false,
        );
        let body = futures::stream::unfold(
            state,
            |(mut body, mut md5, expected, failure, done)| async move {
                if done {
                    return None;
                }
                match body.next().await {
                    Some(Ok(piece)) => {
                        md5.update(&piece);
                        Some((Ok(piece), (body, md5, expected, failure, false)))
                    }
                    Some(Err(e)) => {
                        *failure.lock() = Some(format!("the upload stream failed: {e}"));
                        Some((Err(e), (body, md5, expected, failure, true)))
                    }
                    None => {
                        let got: [u8; 16] = md5.clone().finalize().into();
                        match expected {
                            Some(expected) if expected != got => {
                                let reason = "the data's MD5 does not match the digest given";
                                *failure.lock() = Some(reason.to_owned());
                                let e = std::io::Error::other(reason);
                                Some((Err(e), (body, md5, Some(expected), failure, true)))
                            }
                            _ => None,
                        }
                    }
                }
            },
        )
        .boxed();
        let sent = self
            .http
            .send_stream(
                Method::PUT,
                &url,
                &content_type,
                &headers,
                reqwest::Body::wrap_stream(body),
            )
            .await;
        let target = Target { db, id: Some(id) };
        let reply = match sent {
            Ok(reply) => reply,
            Err(e) => {
                return Err(match failure.lock().take() {
                    Some(reason) => attachment::invalid(
                        db,
                        id,
                        name,
                        format!("{reason}; the upload was aborted and nothing was written"),
                    ),
                    None => self.http.stream_error(&e),
                });
            }
        };
        self.attachment_written(&reply, target, "an attachment upload")
            .await
    }

    /// The revision an attachment upload or removal answered (remembered as seen; on a
    /// cluster, a `202 Accepted` settled first, see `quorum.rs`), or the error its status
    /// says.
    async fn attachment_written(
        &self,
        reply: &Reply,
        target: Target<'_>,
        what: &str,
    ) -> Result<WriteResult> {
        if !(200..=202).contains(&reply.status.as_u16()) {
            return Err(status_error(reply, target));
        }
        let id = target.id.unwrap_or_default();
        let mut rev = rev_of(&reply.json()?["rev"]).ok_or_else(|| protocol(what, reply))?;
        if reply.status == StatusCode::ACCEPTED {
            rev = self.settle_one_accepted(target.db, id, rev).await?;
        }
        self.revs.put(target.db, id, rev);
        Ok(WriteResult {
            id: id.to_owned(),
            rev,
        })
    }

    /// A streamed download: the stub (one request), then that revision's bytes as they
    /// arrive (one request).
    pub(super) async fn get_attachment_stream(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<AttachmentStream> {
        use futures::StreamExt;
        let (info, rev) = self.attachment_stub(db, id, name, options).await?;
        let url = self.http.url(&[db, id, name], &[("rev", &rev)]);
        let headers = if options.encoded {
            vec![("accept-encoding", "gzip".to_owned())]
        } else {
            Vec::new()
        };
        let response = self
            .http
            .open(&url, &headers, Target { db, id: Some(id) })
            .await?;
        let gzip = response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let base = self.http.base().to_owned();
        let idle = self.http.idle_timeout();
        // No whole-request timeout for a body of any size; the wait for each piece is bounded.
        let pieces = response.bytes_stream().boxed();
        let body = futures::stream::unfold(Some(pieces), move |pieces| {
            let base = base.clone();
            async move {
                let mut pieces = pieces?;
                let broke = |what: String| Error::Unavailable {
                    reason: format!("the download from CouchDB at {base} broke off: {what}"),
                };
                match tokio::time::timeout(idle, pieces.next()).await {
                    Ok(None) => None,
                    Ok(Some(Ok(piece))) => Some((Ok(piece), Some(pieces))),
                    Ok(Some(Err(e))) => Some((Err(broke(e.to_string())), None)),
                    Err(_) => Some((Err(broke(format!("nothing arrived for {idle:?}"))), None)),
                }
            }
        })
        .boxed();
        Ok(AttachmentStream {
            info,
            encoding: if gzip {
                ContentEncoding::Gzip
            } else {
                ContentEncoding::Identity
            },
            body,
        })
    }

    /// The stub of attachment `name` of the winner (or of `options.rev`) and the revision
    /// it was read from.
    async fn attachment_stub(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<(AttachmentInfo, String)> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        let target = Target { db, id: Some(id) };
        let rev_text = options.rev.map(|r| r.to_string());
        let mut query = vec![("att_encoding_info", "true")];
        if let Some(rev) = &rev_text {
            query.push(("rev", rev));
        }
        let url = self.http.url(&[db, id], &query);
        let reply = self
            .http
            .send(Method::GET, &url, None, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, target));
        }
        let doc = reply.json()?;
        let stub = doc
            .get(attachment::ATTACHMENTS)
            .and_then(|a| a.get(name))
            .ok_or_else(|| attachment::attachment_not_found(db, id, name))?;
        let info = AttachmentInfo::from_stub(stub)
            .ok_or_else(|| protocol("an attachment stub", &reply))?;
        let rev = doc["_rev"]
            .as_str()
            .ok_or_else(|| protocol("a document read", &reply))?;
        Ok((info, rev.to_owned()))
    }

    pub(super) async fn get_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<Attachment> {
        let (info, rev) = self.attachment_stub(db, id, name, options).await?;
        // The bytes of the revision whose stub was read, even if the winner moved since.
        let url = self.http.url(&[db, id, name], &[("rev", &rev)]);
        let outgoing = Outgoing {
            headers: if options.encoded {
                vec![("accept-encoding", "gzip".to_owned())]
            } else {
                Vec::new()
            },
            ..Outgoing::default()
        };
        let reply = self
            .http
            .send_with(Method::GET, &url, &outgoing, Idempotency::Safe)
            .await?;
        if !reply.status.is_success() {
            return Err(status_error(&reply, Target { db, id: Some(id) }));
        }
        let gzip = reply
            .headers
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        Ok(Attachment {
            info,
            data: reply.body,
            encoding: if gzip {
                ContentEncoding::Gzip
            } else {
                ContentEncoding::Identity
            },
        })
    }

    pub(super) async fn delete_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        rev: &Rev,
    ) -> Result<WriteResult> {
        validate::database_name(db)?;
        validate::document_id(db, id)?;
        attachment::check_name(db, id, name)?;
        let rev_text = rev.to_string();
        let mut url = self.http.url(&[db, id, name], &[("rev", &rev_text)]);
        let _turn = self.document_turn(db, id).await?;
        if let Some(w) = self.write_quorum(db).await? {
            url = with_write_quorum(&url, w);
        }
        let reply = self
            .http
            .send(Method::DELETE, &url, None, Idempotency::Unsafe)
            .await?;
        match reply.status.as_u16() {
            200..=202 => {
                self.attachment_written(
                    &reply,
                    Target { db, id: Some(id) },
                    "an attachment removal",
                )
                .await
            }
            404 if !status_error(&reply, Target { db, id: Some(id) }).is_database_missing() => {
                let (_, reason) = reply.error_and_reason();
                Err(Error::NotFound {
                    location: crate::Location::doc(db, id),
                    reason: Some(if reason.contains("attachment") {
                        format!("Document is missing attachment {name:?}")
                    } else {
                        reason
                    }),
                })
            }
            _ => Err(status_error(&reply, Target { db, id: Some(id) })),
        }
    }
}
