//! Attachments of the embedded provider: the write of a standalone upload or removal, and
//! their bytes: where an attachment's chunks are (under its
//! digest, or under the key of the streamed upload that stored them, which a redirect
//! entry names), streamed uploads staged chunk by chunk before the document write that
//! references them, chunked reads for streams, and the sweep of bytes no body names.
//!
//! Keys (see the layout in the parent module): `db id + key16 + chunk n (u32)`, where
//! `key16` is the MD5 of the stored bytes, or, for a streamed upload, a random key; then
//! `db id + MD5 + u32::MAX` holds that random key (the redirect), written in the batch of
//! the document write that first references the bytes. Staged chunks nothing redirects to
//! (an upload that failed, was a duplicate, or was cut by a crash) are removed when the
//! upload ends, or by the next compaction; uploads in progress are kept out of the sweep.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use fjall::Readable;
use parking_lot::Mutex;

use super::format::{self, REDIRECT_CHUNK};
use super::store::Store;
use crate::attachment::Blob;
use crate::attachment::stream::Decoder;
use crate::write::{SaveRequest, only};
use crate::{Error, Result, Rev, WriteResult};

/// The staged keys of uploads in progress, kept out of the sweep.
#[derive(Default)]
pub(super) struct Uploads(Mutex<HashSet<[u8; 16]>>);

impl Uploads {
    pub(super) fn contains(&self, key: &[u8; 16]) -> bool {
        self.0.lock().contains(key)
    }
}

/// One streamed upload's staged key, registered while it lives.
pub(super) struct Staged {
    store: Arc<Store>,
    pub(super) key: [u8; 16],
}

impl Staged {
    pub(super) fn new(store: Arc<Store>) -> Self {
        let key = fastrand::u128(..).to_be_bytes();
        store.uploads.0.lock().insert(key);
        Self { store, key }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.store.uploads.0.lock().remove(&self.key);
    }
}

/// Staged chunks are committed in batches of this many (1 MiB).
pub(super) const STAGED_BATCH: usize = 16;

impl Store {
    /// Writes a standalone upload (`upload`: content type and encoded bytes) or removal
    /// (`None`) of attachment `name` as the new revision of `id` on `rev`. A revision's body
    /// never changes, so reading it before the write's lock is safe: the write still checks
    /// that `rev` is a leaf.
    pub(super) fn save_attachment(
        &self,
        db: &str,
        id: String,
        name: &str,
        rev: Option<Rev>,
        upload: Option<(String, Blob)>,
    ) -> Result<WriteResult> {
        let body = match &rev {
            Some(r) => self.leaf_body(db, &id, r)?,
            None => None,
        };
        let req = SaveRequest::for_attachment(db, &id, name, rev, upload, body.as_ref())?;
        only(self.save_batch(db, vec![(id, req)], Ok, &mut Vec::new())?)
    }

    /// The id of database `db`, created if needed (an upload stages its chunks under it).
    pub(super) fn ensure_db(&self, db: &str) -> Result<u64> {
        let _writer = self.writer.lock();
        let mut batch = self.batch();
        let (meta, created) = self.meta_or_new(&mut batch, db)?;
        if created {
            batch.insert(&self.databases, db, meta.encode());
            self.commit(batch)?;
        }
        Ok(meta.id)
    }

    /// Commits chunks `first..` of a staged upload.
    pub(super) fn write_staged(
        &self,
        db_id: u64,
        key: &[u8; 16],
        first: u32,
        chunks: Vec<Bytes>,
    ) -> Result<()> {
        let mut batch = self.batch();
        for (n, chunk) in (first..).zip(chunks) {
            batch.insert(
                &self.attachments,
                format::attachment_key(db_id, key, n),
                chunk.as_ref(),
            );
        }
        self.commit(batch)
    }

    /// Removes a staged upload's chunks unless a redirect now names them (the document write
    /// took them).
    pub(super) fn finish_staged(&self, db_id: u64, key: &[u8; 16], digest: [u8; 16]) -> Result<()> {
        let redirect = self
            .attachments
            .get(format::attachment_key(db_id, &digest, REDIRECT_CHUNK))
            .map_err(|e| self.err("reading attachments", e))?;
        if redirect.as_deref() == Some(&key[..]) {
            return Ok(());
        }
        self.remove_prefix(&format::attachment_prefix(db_id, key))
    }

    /// Removes every `attachments` key starting with `prefix`, in batches.
    pub(super) fn remove_prefix(&self, prefix: &[u8]) -> Result<()> {
        loop {
            let keys = self
                .attachments
                .prefix(prefix)
                .take(1000)
                .map(|item| item.key().map_err(|e| self.err("removing attachments", e)))
                .collect::<Result<Vec<_>>>()?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut batch = self.batch();
            for key in keys {
                batch.remove(&self.attachments, key);
            }
            self.commit(batch)?;
        }
    }

    /// Whether database `db_id` holds the bytes with MD5 `digest` (directly or redirected).
    pub(super) fn holds_blob(&self, db_id: u64, digest: &[u8; 16]) -> Result<bool> {
        let err = |e| self.err("reading attachments", e);
        Ok(self
            .attachments
            .contains_key(format::attachment_key(db_id, digest, 0))
            .map_err(err)?
            || self
                .attachments
                .contains_key(format::attachment_key(db_id, digest, REDIRECT_CHUNK))
                .map_err(err)?)
    }

    /// The key the chunks of the bytes with MD5 `digest` are under, as `snapshot` sees it.
    pub(super) fn chunk_key(
        &self,
        snapshot: &fjall::Snapshot,
        db_id: u64,
        digest: &[u8; 16],
    ) -> Result<[u8; 16]> {
        let redirect = snapshot
            .get(
                &self.attachments,
                format::attachment_key(db_id, digest, REDIRECT_CHUNK),
            )
            .map_err(|e| self.err("reading attachments", e))?;
        match redirect {
            None => Ok(*digest),
            Some(key) => key
                .as_ref()
                .try_into()
                .map_err(|_| format::corrupt("an attachment redirect is not 16 bytes")),
        }
    }

    /// Sends the chunks under `key` (gunzipped when `decode`) to `out`, from one snapshot;
    /// stops when the receiver is gone.
    pub(super) fn send_chunks(
        &self,
        db_id: u64,
        key: [u8; 16],
        decode: bool,
        out: tokio::sync::mpsc::Sender<Result<Bytes>>,
    ) {
        let snapshot = self.db.snapshot();
        let mut decoder = decode.then(Decoder::new);
        let mut sent = 0usize;
        let prefix = format::attachment_prefix(db_id, &key);
        for item in snapshot.prefix(&self.attachments, &prefix) {
            let piece = item
                .into_inner()
                .map_err(|e| self.err("reading an attachment", e))
                .and_then(|(k, chunk)| {
                    if k.len() == prefix.len() + 4
                        && k[prefix.len()..] == REDIRECT_CHUNK.to_be_bytes()
                    {
                        return Ok(None);
                    }
                    match &mut decoder {
                        Some(d) => d.push(&chunk).map(Some),
                        None => Ok(Some(Bytes::copy_from_slice(&chunk))),
                    }
                });
            let piece = match piece {
                Ok(None) => continue,
                Ok(Some(piece)) => Ok(piece),
                Err(e) => Err(e),
            };
            let failed = piece.is_err();
            sent += 1;
            if out.blocking_send(piece).is_err() || failed {
                return;
            }
        }
        let last = match (sent, decoder) {
            (0, _) => Err(format::corrupt("an attachment's bytes are missing")),
            (_, Some(d)) => d.finish(),
            (_, None) => return,
        };
        let _ = out.blocking_send(last);
    }

    /// The attachment bytes database `db` stores (see `attachment_bytes`).
    pub(super) fn attachment_bytes(&self, db: &str) -> Result<u64> {
        let meta = self.meta(db)?.ok_or_else(|| Error::db_not_found(db))?;
        let start = format::key(meta.id, b"");
        let end = format::end_of(meta.id);
        let mut total = 0u64;
        for item in self.attachments.range(start.as_slice()..end.as_slice()) {
            let (key, value) = item
                .into_inner()
                .map_err(|e| self.err("reading attachments", e))?;
            if !key.ends_with(&REDIRECT_CHUNK.to_be_bytes()) {
                total += value.len() as u64;
            }
        }
        Ok(total)
    }

    /// Removes the attachment bytes of database `db_id` that no stored body names, keeping
    /// what redirects of named digests point to and uploads in progress (after compaction
    /// only leaves have bodies, all in their records). The caller holds `writer`.
    pub(super) fn sweep_attachments(&self, db_id: u64, mut held: HashSet<[u8; 16]>) -> Result<()> {
        const CHUNK: usize = 1000;
        let start = format::key(db_id, b"");
        let end = format::end_of(db_id);
        let key16 = |key: &[u8]| -> Result<[u8; 16]> {
            key.get(8..24)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| format::corrupt("an attachment key is too short"))
        };
        // Redirects of named digests keep their staged keys too.
        let mut redirected = Vec::new();
        for item in self.attachments.range(start.as_slice()..end.as_slice()) {
            let (key, value) = item.into_inner().map_err(|e| self.err("compacting", e))?;
            if key.ends_with(&REDIRECT_CHUNK.to_be_bytes()) && held.contains(&key16(&key)?) {
                let target: [u8; 16] = value
                    .as_ref()
                    .try_into()
                    .map_err(|_| format::corrupt("an attachment redirect is not 16 bytes"))?;
                redirected.push(target);
            }
        }
        held.extend(redirected);
        let mut batch = self.batch();
        let mut in_batch = 0;
        for item in self.attachments.range(start.as_slice()..end.as_slice()) {
            let key = item.key().map_err(|e| self.err("compacting", e))?;
            let id = key16(&key)?;
            if held.contains(&id) || self.uploads.contains(&id) {
                continue;
            }
            batch.remove(&self.attachments, key);
            in_batch += 1;
            if in_batch == CHUNK {
                self.commit(std::mem::replace(&mut batch, self.batch()))?;
                in_batch = 0;
            }
        }
        self.commit(batch)
    }
}
