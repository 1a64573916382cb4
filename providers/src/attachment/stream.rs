//! Streamed attachments: the types of streamed uploads and downloads, and the incremental
//! encoder and decoder that let a provider store and serve an attachment of any size in
//! bounded memory while producing the very bytes and digest CouchDB does (the gzip stream
//! of zlib does not depend on how its input is split).

// The encoder and decoder serve the embedded provider's streamed storage.
#![cfg_attr(not(feature = "embedded"), allow(dead_code))]

use std::fmt;
use std::io::Write;

use bytes::Bytes;
use futures::stream::BoxStream;
use md5::{Digest, Md5};

use super::{AttachmentInfo, ContentEncoding, NewAttachment, gzip_encoder, is_compressible};
use crate::{Error, Result};

/// An attachment to write from a stream, with
/// [`crate::DatabaseService::put_attachment_stream`].
pub struct AttachmentUpload {
    /// The MIME type, kept verbatim; `None` is `application/octet-stream`.
    pub content_type: Option<String>,
    /// `Gzip` when the stream is already gzip-encoded (stored as sent).
    pub encoding: ContentEncoding,
    /// The MD5 of the whole data the caller expects: a mismatch is refused, nothing kept.
    pub md5: Option<[u8; 16]>,
    /// The data, in pieces of any size. An error ends the upload; nothing is written.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

impl AttachmentUpload {
    /// An upload of `body` with `content_type`.
    pub fn new(
        content_type: impl Into<String>,
        body: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Self {
        Self {
            content_type: Some(content_type.into()),
            encoding: ContentEncoding::Identity,
            md5: None,
            body,
        }
    }

    /// The whole stream in memory, as [`NewAttachment`] (what a provider that keeps bytes
    /// in memory anyway does with it); the stream's first error.
    pub async fn collect(self) -> std::io::Result<NewAttachment> {
        use futures::TryStreamExt;
        let pieces: Vec<Bytes> = self.body.try_collect().await?;
        let mut data = Vec::with_capacity(pieces.iter().map(Bytes::len).sum());
        pieces.iter().for_each(|p| data.extend_from_slice(p));
        Ok(NewAttachment {
            content_type: self.content_type,
            data: Bytes::from(data),
            encoding: self.encoding,
            md5: self.md5,
        })
    }
}

impl fmt::Debug for AttachmentUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentUpload")
            .field("content_type", &self.content_type)
            .field("encoding", &self.encoding)
            .field("md5", &self.md5)
            .finish_non_exhaustive()
    }
}

/// The error of a caller's upload stream that failed.
pub(crate) fn upload_failed(db: &str, id: &str, name: &str, e: std::io::Error) -> Error {
    Error::InvalidAttachment {
        location: crate::Location::doc(db, id),
        name: name.to_owned(),
        reason: format!("the upload stream failed: {e}; nothing was written"),
    }
}

/// An attachment read as a stream, from
/// [`crate::DatabaseService::get_attachment_stream`].
pub struct AttachmentStream {
    /// The stub.
    pub info: AttachmentInfo,
    /// `Gzip` when the bytes are gzip (only when asked for encoded bytes).
    pub encoding: ContentEncoding,
    /// The bytes, in pieces.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for AttachmentStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentStream")
            .field("info", &self.info)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// What an [`Encoder`] stored, once finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// MD5 of the stored bytes (the stub's digest).
    pub digest: [u8; 16],
    /// Whether the stored bytes are gzip.
    pub gzip: bool,
    /// The `length` stubs report.
    pub length: u64,
    /// How many bytes are stored.
    pub stored_len: u64,
    /// MD5 of the data as sent.
    pub sent_md5: [u8; 16],
}

/// Turns streamed data into the stored bytes (gzip for a compressible type, as sent
/// otherwise) cut into chunks of `chunk` bytes, hashing them as they go.
pub(crate) struct Encoder {
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    pre_encoded: bool,
    pending: Vec<u8>,
    chunk: usize,
    stored: Md5,
    sent: Md5,
    length: u64,
    stored_len: u64,
    chunks: u64,
}

impl Encoder {
    /// An encoder for data of `content_type` sent with `encoding`.
    pub fn new(content_type: &str, encoding: ContentEncoding, chunk: usize) -> Self {
        let compress = encoding == ContentEncoding::Identity && is_compressible(content_type);
        Self {
            gzip: compress.then(|| gzip_encoder(Vec::with_capacity(chunk))),
            pre_encoded: encoding == ContentEncoding::Gzip,
            pending: Vec::with_capacity(chunk),
            chunk: chunk.max(1),
            stored: Md5::new(),
            sent: Md5::new(),
            length: 0,
            stored_len: 0,
            chunks: 0,
        }
    }

    /// Takes the next piece of data; returns the chunks it completed.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Bytes>> {
        self.length += data.len() as u64;
        let mut out = Vec::new();
        match self.gzip.take() {
            Some(mut encoder) => {
                // Only compressed bytes differ from what was sent.
                self.sent.update(data);
                encoder.write_all(data).map_err(Error::storage)?;
                let compressed = std::mem::take(encoder.get_mut());
                self.gzip = Some(encoder);
                self.fill(&compressed, &mut out);
            }
            None => self.fill(data, &mut out),
        }
        Ok(out)
    }

    /// Appends stored bytes to the chunk being filled, handing out each full one (every
    /// byte is copied once).
    fn fill(&mut self, mut bytes: &[u8], out: &mut Vec<Bytes>) {
        while !bytes.is_empty() {
            let take = (self.chunk - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == self.chunk {
                let full = std::mem::replace(&mut self.pending, Vec::with_capacity(self.chunk));
                out.push(self.emit(full));
            }
        }
    }

    fn emit(&mut self, chunk: Vec<u8>) -> Bytes {
        self.stored.update(&chunk);
        self.stored_len += chunk.len() as u64;
        self.chunks += 1;
        Bytes::from(chunk)
    }

    /// Ends the data: the last chunks (at least one chunk is stored, empty for empty
    /// bytes) and what was stored.
    pub fn finish(mut self) -> Result<(Vec<Bytes>, Encoded)> {
        let compressed = self.gzip.is_some();
        let gzip = compressed || self.pre_encoded;
        let mut out = Vec::new();
        if let Some(encoder) = self.gzip.take() {
            let tail = encoder.finish().map_err(Error::storage)?;
            self.fill(&tail, &mut out);
        }
        if !self.pending.is_empty() || self.chunks == 0 {
            let last = std::mem::take(&mut self.pending);
            out.push(self.emit(last));
        }
        let digest: [u8; 16] = self.stored.finalize().into();
        let encoded = Encoded {
            digest,
            gzip,
            length: if self.pre_encoded {
                self.stored_len
            } else {
                self.length
            },
            stored_len: self.stored_len,
            sent_md5: if compressed {
                self.sent.finalize().into()
            } else {
                digest
            },
        };
        Ok((out, encoded))
    }
}

/// Gunzips stored bytes chunk by chunk.
pub(crate) struct Decoder {
    inner: flate2::write::MultiGzDecoder<Vec<u8>>,
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            inner: flate2::write::MultiGzDecoder::new(Vec::new()),
        }
    }

    /// The data the next stored chunk decodes to.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes> {
        self.inner.write_all(chunk).map_err(corrupt)?;
        Ok(Bytes::from(std::mem::take(self.inner.get_mut())))
    }

    /// The rest of the data.
    pub fn finish(self) -> Result<Bytes> {
        self.inner.finish().map(Bytes::from).map_err(corrupt)
    }
}

fn corrupt(e: std::io::Error) -> Error {
    Error::storage(format!("a stored gzip attachment does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attachment::{Blob, decoded};

    #[test]
    fn streamed_encoding_is_the_one_shot_encoding() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("{i} ").into_bytes())
            .collect();
        for content_type in ["text/plain", "application/octet-stream"] {
            let whole = Blob::encode(
                content_type,
                Bytes::from(data.clone()),
                ContentEncoding::Identity,
            )
            .unwrap();
            let mut encoder = Encoder::new(content_type, ContentEncoding::Identity, 4096);
            let mut stored = Vec::new();
            for piece in data.chunks(7777) {
                for chunk in encoder.push(piece).unwrap() {
                    assert_eq!(chunk.len(), 4096);
                    stored.extend_from_slice(&chunk);
                }
            }
            let (last, encoded) = encoder.finish().unwrap();
            last.iter().for_each(|c| stored.extend_from_slice(c));
            assert_eq!(stored, whole.bytes, "{content_type}");
            assert_eq!(encoded.digest, whole.digest);
            assert_eq!(encoded.length, whole.length);
            assert_eq!(encoded.stored_len, whole.stored_len);
            let mut decoder = Decoder::new();
            let mut back = Vec::new();
            if encoded.gzip {
                for chunk in stored.chunks(1000) {
                    back.extend_from_slice(&decoder.push(chunk).unwrap());
                }
                back.extend_from_slice(&decoder.finish().unwrap());
            } else {
                back = decoded(Bytes::from(stored), false).unwrap().to_vec();
            }
            assert_eq!(back, data);
        }
        let (chunks, empty) = Encoder::new("image/png", ContentEncoding::Identity, 10)
            .finish()
            .unwrap();
        assert_eq!((chunks.len(), empty.stored_len), (1, 0), "one empty chunk");
    }
}
