//! Attachments on CouchDB: standalone uploads (`PUT /db/id/name`), downloads (the stub from
//! `GET /db/id?att_encoding_info=true`, then the bytes of that very revision) and removals
//! (`DELETE /db/id/name`). Inline attachments travel in the document bodies as they are.

use reqwest::Method;
use reqwest::StatusCode;

use super::http::{Idempotency, Outgoing, Target, status_error};
use super::{CouchDbProvider, protocol, rev_of};
use crate::attachment::{self, DEFAULT_CONTENT_TYPE};
use crate::{
    Attachment, AttachmentInfo, AttachmentRead, ContentEncoding, Error, NewAttachment, Result, Rev,
    WriteResult, validate,
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
        let mut reply = self
            .http
            .send_with(Method::PUT, &url, &outgoing, Idempotency::Unsafe)
            .await?;
        let target = Target { db, id: Some(id) };
        if reply.status == StatusCode::NOT_FOUND
            && status_error(&reply, Target { db, id: Some(id) }).is_database_missing()
        {
            self.create_db(db).await?;
            reply = self
                .http
                .send_with(Method::PUT, &url, &outgoing, Idempotency::Unsafe)
                .await?;
        }
        match reply.status.as_u16() {
            200..=202 => {
                let rev = rev_of(&reply.json()?["rev"])
                    .ok_or_else(|| protocol("an attachment upload", &reply))?;
                self.revs.put(db, id, rev);
                Ok(WriteResult {
                    id: id.to_owned(),
                    rev,
                })
            }
            _ => Err(status_error(&reply, target)),
        }
    }

    pub(super) async fn get_attachment(
        &self,
        db: &str,
        id: &str,
        name: &str,
        options: &AttachmentRead,
    ) -> Result<Attachment> {
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
        // The bytes of the revision whose stub was read, even if the winner moved since.
        let url = self.http.url(&[db, id, name], &[("rev", rev)]);
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
            return Err(status_error(&reply, target));
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
        let url = self.http.url(&[db, id, name], &[("rev", &rev_text)]);
        let reply = self
            .http
            .send(Method::DELETE, &url, None, Idempotency::Unsafe)
            .await?;
        match reply.status.as_u16() {
            200..=202 => {
                let rev = rev_of(&reply.json()?["rev"])
                    .ok_or_else(|| protocol("an attachment removal", &reply))?;
                self.revs.put(db, id, rev);
                Ok(WriteResult {
                    id: id.to_owned(),
                    rev,
                })
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
