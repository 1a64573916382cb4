//! Attachments: CouchDB 3's attachment model, for the providers that store documents
//! themselves (memory, embedded), so they produce the stubs, digests and revision ids a
//! CouchDB server would (`testdata/couchdb-attachments.json` holds the recorded truth).
//!
//! Invariants, as CouchDB keeps them:
//! - A stored revision's body holds `_attachments`, an object of stubs in the document's
//!   attachment order: `{content_type, revpos, digest, length, stub: true}` plus `encoding`
//!   and `encoded_length` when the bytes are stored gzip. Reads drop the last two unless
//!   asked (`att_encoding_info`) and swap `length`/`stub` for `data` when asked
//!   (`attachments`).
//! - The bytes are stored once per digest. The digest is `md5-` + base64 of the MD5 of the
//!   *stored* bytes: for a compressible content type (`text/*`, `application/javascript`,
//!   `application/json`, `application/xml`, parameters allowed) the gzip of the data at
//!   level 8 with zlib's header (mtime 0, OS 3), else the data itself. An upload sent
//!   already gzip-encoded is stored as sent, and its `length` is the encoded length.
//! - `revpos` is the generation of the revision that wrote the bytes: the generation named
//!   by the write's `_rev` plus one (1 without `_rev`). Stubs carried over keep theirs.
//! - The revision hash covers `{Name, ContentType, Md5}` of each attachment, in reverse order
//!   (see [`crate::Rev::compute`]).

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Location, Result, Rev};

pub mod stream;

pub use stream::{AttachmentStream, AttachmentUpload};

/// The body field holding a document's attachments.
pub const ATTACHMENTS: &str = "_attachments";

/// The content type of an attachment written without one (CouchDB's default).
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// How an attachment's bytes are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentEncoding {
    /// The bytes themselves.
    #[default]
    Identity,
    /// gzip-compressed bytes.
    Gzip,
}

/// An attachment to write with [`crate::DatabaseService::put_attachment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    /// The MIME type, kept verbatim; `None` is `application/octet-stream`.
    pub content_type: Option<String>,
    /// The bytes.
    pub data: Bytes,
    /// `Gzip` when `data` is already gzip-encoded (HTTP's `Content-Encoding: gzip`): it is
    /// stored as sent. `Identity` data of a compressible type is compressed by the database.
    pub encoding: ContentEncoding,
    /// The MD5 of `data` the caller expects (HTTP's `Content-MD5`): a mismatch is refused.
    pub md5: Option<[u8; 16]>,
}

impl NewAttachment {
    /// An attachment of `data` with `content_type`.
    pub fn new(content_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            content_type: Some(content_type.into()),
            data: data.into(),
            encoding: ContentEncoding::Identity,
            md5: None,
        }
    }
}

/// What a document says about one attachment (CouchDB's stub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// The MIME type as written.
    pub content_type: String,
    /// `md5-<base64>` of the stored bytes.
    pub digest: String,
    /// The length of the data (for an upload sent gzip-encoded: of what was sent).
    pub length: u64,
    /// The generation of the revision that wrote the bytes.
    pub revpos: u64,
    /// `gzip` when the bytes are stored compressed.
    pub encoding: Option<ContentEncoding>,
    /// The stored length, when compressed.
    pub encoded_length: Option<u64>,
}

impl AttachmentInfo {
    /// Reads a stub as documents carry it; `None` when it is not one.
    pub fn from_stub(stub: &Value) -> Option<Self> {
        let text = |k: &str| stub.get(k).and_then(Value::as_str).map(str::to_owned);
        let number = |k: &str| stub.get(k).and_then(Value::as_u64);
        Some(Self {
            content_type: text("content_type")?,
            digest: text("digest")?,
            length: number("length").or_else(|| number("encoded_length"))?,
            revpos: number("revpos")?,
            encoding: match stub.get("encoding").and_then(Value::as_str) {
                Some("gzip") => Some(ContentEncoding::Gzip),
                _ => None,
            },
            encoded_length: number("encoded_length"),
        })
    }
}

/// How [`crate::DatabaseService::get_attachment`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentRead {
    /// Read the attachment of this revision instead of the winner's.
    pub rev: Option<Rev>,
    /// Return the bytes as stored (gzip for compressed attachments: HTTP's
    /// `Accept-Encoding: gzip`) instead of decoded.
    pub encoded: bool,
}

/// An attachment read: its stub and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The stub.
    pub info: AttachmentInfo,
    /// The bytes, in `encoding`.
    pub data: Bytes,
    /// `Gzip` when `data` is gzip (only when asked for encoded bytes).
    pub encoding: ContentEncoding,
}

/// Bytes as a provider stores them, under their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    /// MD5 of the stored bytes.
    pub digest: [u8; 16],
    /// The stored bytes (gzip when `gzip`); empty when `staged`.
    pub bytes: Bytes,
    /// Whether the stored bytes are gzip.
    pub gzip: bool,
    /// The `length` stubs report.
    pub length: u64,
    /// How many bytes are stored.
    pub stored_len: u64,
    /// A streamed upload's bytes, already in the store under this key instead of `bytes`
    /// (see [`stream::Encoder`]).
    pub staged: Option<[u8; 16]>,
}

impl Blob {
    /// Encodes `data` of `content_type` for storage as CouchDB does (see the module doc).
    pub fn encode(content_type: &str, data: Bytes, encoding: ContentEncoding) -> Result<Self> {
        let length = data.len() as u64;
        let (bytes, gzip) = if encoding == ContentEncoding::Gzip {
            (data, true)
        } else if is_compressible(content_type) {
            (Bytes::from(gzip(&data)?), true)
        } else {
            (data, false)
        };
        Ok(Self {
            digest: md5_of(&bytes),
            length: if encoding == ContentEncoding::Gzip {
                bytes.len() as u64
            } else {
                length
            },
            stored_len: bytes.len() as u64,
            bytes,
            gzip,
            staged: None,
        })
    }

    /// The stored stub of these bytes as `content_type`, written at generation `revpos`.
    pub fn stub(&self, content_type: &str, revpos: u64) -> Map<String, Value> {
        let mut stub = Map::with_capacity(7);
        stub.insert("content_type".into(), content_type.into());
        stub.insert("revpos".into(), revpos.into());
        stub.insert("digest".into(), digest_text(&self.digest).into());
        stub.insert("length".into(), self.length.into());
        stub.insert("stub".into(), true.into());
        if self.gzip {
            stub.insert("encoding".into(), "gzip".into());
            stub.insert("encoded_length".into(), self.stored_len.into());
        }
        stub
    }
}

pub(crate) fn md5_of(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// `md5-<base64>`, as stubs write a digest.
pub(crate) fn digest_text(md5: &[u8; 16]) -> String {
    format!("md5-{}", BASE64.encode(md5))
}

/// The 16 bytes of a stub's `md5-<base64>` digest.
pub fn digest_bytes(digest: &str) -> Option<[u8; 16]> {
    let b64 = digest.strip_prefix("md5-")?;
    BASE64.decode(b64).ok()?.try_into().ok()
}

/// Whether CouchDB's default `[attachments] compressible_types` match `content_type`:
/// `text/*`, `application/javascript`, `application/json`, `application/xml`, each with
/// optional parameters (`; charset=...`), case-insensitively, surrounding spaces allowed.
pub(crate) fn is_compressible(content_type: &str) -> bool {
    let t = content_type.trim_start().to_ascii_lowercase();
    if t.starts_with("text/") {
        return true;
    }
    [
        "application/javascript",
        "application/json",
        "application/xml",
    ]
    .iter()
    .any(|exact| {
        t.strip_prefix(exact).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.is_empty() || rest.starts_with(';')
        })
    })
}

/// A gzip encoder at level 8 with zlib's header (mtime 0, OS 3): byte for byte what CouchDB
/// stores, however the input is split.
pub(crate) fn gzip_encoder(out: Vec<u8>) -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::GzBuilder::new()
        .operating_system(3)
        .write(out, flate2::Compression::new(8))
}

/// gzip at level 8 with zlib's header: byte for byte what CouchDB stores.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = gzip_encoder(Vec::with_capacity(data.len() / 2 + 32));
    encoder.write_all(data).map_err(Error::storage)?;
    encoder.finish().map_err(Error::storage)
}

/// The data of stored bytes: gunzipped when they are gzip.
pub(crate) fn decoded(bytes: Bytes, gzip: bool) -> Result<Bytes> {
    if !gzip {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 2);
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| Error::storage(format!("a stored gzip attachment does not decode: {e}")))?;
    Ok(Bytes::from(out))
}

/// Checks an attachment name as CouchDB does: not starting with `_`.
pub(crate) fn check_name(db: &str, id: &str, name: &str) -> Result<()> {
    if name.starts_with('_') {
        return Err(invalid(
            db,
            id,
            name,
            "attachment names may not start with '_'",
        ));
    }
    Ok(())
}

/// `InvalidAttachment` for `name` of `id`.
pub(crate) fn invalid(db: &str, id: &str, name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidAttachment {
        location: Location::doc(db, id),
        name: name.into(),
        reason: reason.into(),
    }
}

/// CouchDB's `missing_stub`: a stub that names no attachment of the revision edited.
pub(crate) fn missing_stub(db: &str, id: &str, name: &str) -> Error {
    Error::MissingStub {
        location: Location::doc(db, id),
        name: name.into(),
    }
}

/// One entry of a save's `_attachments`.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// `{"stub": true}`: keep the attachment of the revision edited (its `revpos`, when
    /// given, must match).
    Stub { revpos: Option<Value> },
    /// Inline data, encoded for storage.
    Data { content_type: String, blob: Blob },
}

/// Parses and encodes a save's `_attachments` (CouchDB's `couch_att:from_json`).
pub(crate) fn parse_inputs(db: &str, id: &str, value: &Value) -> Result<Vec<(String, Input)>> {
    let entries = parse_with(db, id, value, |_, content_type, bytes| {
        Ok(Input::Data {
            blob: Blob::encode(&content_type, Bytes::from(bytes), ContentEncoding::Identity)?,
            content_type,
        })
    })?;
    Ok(entries
        .into_iter()
        .map(|(name, entry)| match entry {
            Entry::Stub { revpos } => (name, Input::Stub { revpos }),
            Entry::Data(input) => (name, input),
        })
        .collect())
}

/// One parsed entry of `_attachments`.
enum Entry<T> {
    Stub { revpos: Option<Value> },
    Data(T),
}

/// Checks a save's `_attachments` as [`parse_inputs`] does, without encoding anything:
/// what the CouchDB provider does before sending, so a bad entry fails its document alone,
/// not a whole `_bulk_docs`.
#[cfg_attr(not(feature = "couchdb"), allow(dead_code))]
pub(crate) fn check_inputs(db: &str, id: &str, value: Option<&Value>) -> Result<()> {
    match value {
        None => Ok(()),
        Some(value) => parse_with(db, id, value, |_, _, _| Ok(())).map(drop),
    }
}

/// The entries of `_attachments`: stubs, and data as `data` makes of the entry's fields, its
/// content type and its decoded bytes.
fn parse_with<T>(
    db: &str,
    id: &str,
    value: &Value,
    data: impl Fn(&Map<String, Value>, String, Vec<u8>) -> Result<T>,
) -> Result<Vec<(String, Entry<T>)>> {
    let Value::Object(entries) = value else {
        return Err(Error::invalid_document(
            db,
            Some(id),
            "_attachments must be an object of attachments by name",
        ));
    };
    let mut inputs = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        check_name(db, id, name)?;
        let Value::Object(fields) = entry else {
            return Err(invalid(db, id, name, "an attachment must be an object"));
        };
        if fields.get("stub") == Some(&Value::Bool(true)) {
            let revpos = fields.get("revpos").cloned();
            inputs.push((name.clone(), Entry::Stub { revpos }));
            continue;
        }
        if fields.contains_key("follows") {
            return Err(invalid(
                db,
                id,
                name,
                "multipart (\"follows\") attachments are not supported; send \"data\" in base64",
            ));
        }
        let Some(encoded) = fields.get("data") else {
            return Err(invalid(
                db,
                id,
                name,
                "an attachment needs \"data\" (base64) or \"stub\": true",
            ));
        };
        let Value::String(b64) = encoded else {
            return Err(invalid(db, id, name, "\"data\" must be a base64 string"));
        };
        let bytes = BASE64
            .decode(b64)
            .map_err(|e| invalid(db, id, name, format!("\"data\" is not valid base64: {e}")))?;
        let content_type = match fields.get("content_type") {
            None | Some(Value::Null) => DEFAULT_CONTENT_TYPE.to_owned(),
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err(invalid(db, id, name, "\"content_type\" must be a string")),
        };
        inputs.push((
            name.clone(),
            Entry::Data(data(fields, content_type, bytes)?),
        ));
    }
    Ok(inputs)
}

/// The stored `_attachments` of a replicated revision of generation `generation` (CouchDB's
/// `_bulk_docs` with `new_edits: false`) and the bytes to store: inline data encoded as an
/// upload is, keeping the entry's `revpos` (the generation when it has none); a stub taken
/// from what `held(name, digest)` finds among the document's stored revisions, or
/// [`Error::MissingStub`].
pub(crate) fn replicated(
    db: &str,
    id: &str,
    generation: u64,
    value: &Value,
    held: &dyn Fn(&str, Option<&str>) -> Option<Value>,
) -> Result<(Map<String, Value>, Vec<Blob>)> {
    let entries = parse_with(db, id, value, |fields, content_type, bytes| {
        let revpos = fields
            .get("revpos")
            .and_then(Value::as_u64)
            .unwrap_or(generation);
        let blob = Blob::encode(&content_type, Bytes::from(bytes), ContentEncoding::Identity)?;
        Ok((blob.stub(&content_type, revpos), blob))
    })?;
    let stubs = value.as_object();
    let mut stored = Map::with_capacity(entries.len());
    let mut blobs = Vec::new();
    for (name, entry) in entries {
        let stub = match entry {
            Entry::Data((stub, blob)) => {
                blobs.push(blob);
                Value::Object(stub)
            }
            Entry::Stub { .. } => {
                let digest = stubs
                    .and_then(|s| s.get(&name))
                    .and_then(|s| s.get("digest"))
                    .and_then(Value::as_str);
                held(&name, digest).ok_or_else(|| missing_stub(db, id, &name))?
            }
        };
        stored.insert(name, stub);
    }
    Ok((stored, blobs))
}

/// Finds a stored stub named `name` (with `digest`, when given) among stored bodies.
pub(crate) fn find_stub<'a>(
    bodies: impl Iterator<Item = &'a Map<String, Value>>,
    name: &str,
    digest: Option<&str>,
) -> Option<Value> {
    bodies
        .filter_map(|body| body.get(ATTACHMENTS)?.get(name))
        .find(|stub| digest.is_none_or(|d| stub.get("digest").and_then(Value::as_str) == Some(d)))
        .cloned()
}

/// The stored `_attachments` of a write: stubs replaced by the attachments of the revision
/// edited (`parent`, its stored `_attachments`), new data stubbed at `revpos`.
pub(crate) fn resolve(
    db: &str,
    id: &str,
    inputs: &[(String, Input)],
    parent: Option<&Map<String, Value>>,
    revpos: u64,
) -> Result<Map<String, Value>> {
    let mut stored = Map::with_capacity(inputs.len());
    for (name, input) in inputs {
        let stub = match input {
            Input::Stub { revpos: asked } => {
                let kept = parent
                    .and_then(|p| p.get(name))
                    .ok_or_else(|| missing_stub(db, id, name))?;
                if let Some(asked) = asked
                    && (asked.as_u64().is_none() || kept.get("revpos") != Some(asked))
                {
                    return Err(missing_stub(db, id, name));
                }
                kept.clone()
            }
            Input::Data { content_type, blob } => Value::Object(blob.stub(content_type, revpos)),
        };
        stored.insert(name.clone(), stub);
    }
    Ok(stored)
}

/// The blobs new data in `inputs` brings.
pub(crate) fn new_blobs(inputs: &[(String, Input)]) -> impl Iterator<Item = &Blob> {
    inputs.iter().filter_map(|(_, input)| match input {
        Input::Data { blob, .. } => Some(blob),
        Input::Stub { .. } => None,
    })
}

/// What a read shows of attachments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Presentation {
    /// The data inline (`attachments=true`).
    pub data: bool,
    /// `encoding`/`encoded_length` (`att_encoding_info=true`).
    pub encoding_info: bool,
}

/// Drops what only `att_encoding_info` shows from a read document's stubs (a plain read).
pub(crate) fn strip_encoding_info(doc: &mut Map<String, Value>) {
    if let Some(Value::Object(stored)) = doc.get_mut(ATTACHMENTS) {
        for stub in stored.values_mut() {
            if let Value::Object(fields) = stub {
                fields.shift_remove("encoding");
                fields.shift_remove("encoded_length");
            }
        }
    }
}

/// Moves `_attachments` after every other field, where CouchDB writes it (after
/// `_deleted`, `_conflicts`, `_revisions` and the like).
pub(crate) fn move_last(doc: &mut Map<String, Value>) {
    if let Some(atts) = doc.shift_remove(ATTACHMENTS) {
        doc.insert(ATTACHMENTS.into(), atts);
    }
}

/// Rewrites the stored `_attachments` of a document read as CouchDB shows them;
/// `fetch(digest)` gives stored bytes when data is asked for. Does nothing to a document
/// without attachments.
pub(crate) fn present(
    doc: &mut Map<String, Value>,
    how: Presentation,
    fetch: &dyn Fn(&[u8; 16]) -> Result<Bytes>,
) -> Result<()> {
    move_last(doc);
    let Some(Value::Object(stored)) = doc.get_mut(ATTACHMENTS) else {
        return Ok(());
    };
    for stub in stored.values_mut() {
        let Value::Object(fields) = stub else {
            continue;
        };
        let gzip = fields.get("encoding").and_then(Value::as_str) == Some("gzip");
        if !how.encoding_info || how.data {
            let encoding = fields.shift_remove("encoding");
            let encoded_length = fields.shift_remove("encoded_length");
            if how.data {
                fields.shift_remove("length");
                fields.shift_remove("stub");
                let digest = fields
                    .get("digest")
                    .and_then(Value::as_str)
                    .and_then(digest_bytes)
                    .ok_or_else(|| Error::storage("a stored attachment stub has no digest"))?;
                let data = decoded(fetch(&digest)?, gzip)?;
                fields.insert("data".into(), BASE64.encode(&data).into());
            }
            if how.encoding_info {
                if let Some(e) = encoding {
                    fields.insert("encoding".into(), e);
                }
                if let Some(l) = encoded_length {
                    fields.insert("encoded_length".into(), l);
                }
            }
        }
    }
    Ok(())
}

/// Reads one attachment of a stored body: its stub and bytes as asked.
pub(crate) fn read(
    db: &str,
    id: &str,
    name: &str,
    body: &Map<String, Value>,
    encoded: bool,
    fetch: &dyn Fn(&[u8; 16]) -> Result<Bytes>,
) -> Result<Attachment> {
    let stub = body
        .get(ATTACHMENTS)
        .and_then(|a| a.get(name))
        .ok_or_else(|| attachment_not_found(db, id, name))?;
    let info = AttachmentInfo::from_stub(stub)
        .ok_or_else(|| Error::storage("a stored attachment stub is incomplete"))?;
    let digest = digest_bytes(&info.digest)
        .ok_or_else(|| Error::storage("a stored attachment stub has no digest"))?;
    let gzip = info.encoding == Some(ContentEncoding::Gzip);
    let stored = fetch(&digest)?;
    let (data, encoding) = if encoded && gzip {
        (stored, ContentEncoding::Gzip)
    } else {
        (decoded(stored, gzip)?, ContentEncoding::Identity)
    };
    Ok(Attachment {
        info,
        data,
        encoding,
    })
}

/// `NotFound` for an attachment a document lacks.
pub(crate) fn attachment_not_found(db: &str, id: &str, name: &str) -> Error {
    Error::NotFound {
        location: Location::doc(db, id),
        reason: Some(format!("Document is missing attachment {name:?}")),
    }
}

/// Checks an upload: its name (which a URL must be able to carry, so not empty), and its
/// MD5 when the caller gave one.
pub(crate) fn check_upload(db: &str, id: &str, name: &str, new: &NewAttachment) -> Result<()> {
    check_upload_name(db, id, name)?;
    check_md5(db, id, name, new.md5, md5_of(&new.data))
}

/// The name of a standalone upload: [`check_name`], and not empty.
pub(crate) fn check_upload_name(db: &str, id: &str, name: &str) -> Result<()> {
    check_name(db, id, name)?;
    if name.is_empty() {
        return Err(invalid(
            db,
            id,
            name,
            "a standalone attachment needs a name; an empty one is only possible inline",
        ));
    }
    Ok(())
}

/// Refuses data whose MD5 is not the one the caller expected.
pub(crate) fn check_md5(
    db: &str,
    id: &str,
    name: &str,
    expected: Option<[u8; 16]>,
    got: [u8; 16],
) -> Result<()> {
    match expected {
        Some(expected) if expected != got => Err(invalid(
            db,
            id,
            name,
            "the data's MD5 does not match the digest given; the upload was damaged",
        )),
        _ => Ok(()),
    }
}

/// A checked upload encoded for storage: its content type and bytes.
pub(crate) fn prepare_upload(
    db: &str,
    id: &str,
    name: &str,
    new: NewAttachment,
) -> Result<(String, Blob)> {
    check_upload(db, id, name, &new)?;
    let content_type = new
        .content_type
        .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
    let blob = Blob::encode(&content_type, new.data, new.encoding)?;
    Ok((content_type, blob))
}

/// The digests a stored body's attachments reference.
pub(crate) fn digests(body: &Map<String, Value>) -> impl Iterator<Item = [u8; 16]> + '_ {
    body.get(ATTACHMENTS)
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|atts| atts.values())
        .filter_map(|stub| stub.get("digest").and_then(Value::as_str))
        .filter_map(digest_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_types_follow_couchdb_defaults() {
        for t in [
            "text/plain",
            "TEXT/HTML",
            "text/plain; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/xml",
            " application/javascript ",
        ] {
            assert!(is_compressible(t), "{t}");
        }
        for t in [
            "application/octet-stream",
            "image/png",
            "image/svg+xml",
            "application/ld+json",
            "application/jsonx",
        ] {
            assert!(!is_compressible(t), "{t}");
        }
    }

    #[test]
    fn gzip_matches_couchdb_bytes() {
        // "Hello, World!" as text/plain, recorded: 33 stored bytes, this digest.
        let blob = Blob::encode(
            "text/plain",
            Bytes::from_static(b"Hello, World!"),
            ContentEncoding::Identity,
        )
        .unwrap();
        assert_eq!(blob.bytes.len(), 33);
        assert_eq!(digest_text(&blob.digest), "md5-ENGoH7oK8V9R3BMnfDHZmw==");
        assert_eq!(
            decoded(blob.bytes.clone(), true).unwrap(),
            &b"Hello, World!"[..]
        );
    }
}
