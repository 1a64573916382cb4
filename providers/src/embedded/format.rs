//! On-disk encodings of the embedded provider: keys and values of each keyspace.
//!
//! The layout these implement is documented in the parent module (`embedded`).

use crate::write::Leaf;
use crate::{Error, Result, Rev};

/// Key in `databases` holding the next database id.
pub const NEXT_ID_KEY: &[u8] = b"\0next_id";
/// Prefix of the keys in `databases` marking deleted databases still to purge.
pub const PURGE_PREFIX: &[u8] = b"\0purge\0";

const RECORD_VERSION: u8 = 1;
const FLAG_DELETED: u8 = 1;
const RECORD_HEADER: usize = 1 + 1 + 8 + 16 + 8;
const CHANGE_HEADER: usize = 1 + 8 + 16;

/// Per-database metadata, rewritten by every write transaction of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbMeta {
    pub id: u64,
    pub seq: u64,
    pub live: u64,
    pub deleted: u64,
}

impl DbMeta {
    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[0..8].copy_from_slice(&self.id.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.live.to_be_bytes());
        out[24..32].copy_from_slice(&self.deleted.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(corrupt("database metadata has the wrong length"));
        }
        Ok(Self {
            id: be_u64(&bytes[0..8]),
            seq: be_u64(&bytes[8..16]),
            live: be_u64(&bytes[16..24]),
            deleted: be_u64(&bytes[24..32]),
        })
    }
}

/// A decoded `docs` record header; the body stays undecoded until asked for.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub leaf: Leaf,
    pub seq: u64,
}

/// A record whose header is still to be filled in by [`finish_record`], with the body JSON
/// serialized straight after it (no copy).
pub fn record_with_body(body: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(RECORD_HEADER + 1024);
    out.resize(RECORD_HEADER, 0);
    serde_json::to_writer(&mut out, body).map_err(Error::storage)?;
    Ok(out)
}

/// The record of a tombstone: a header and an empty body.
pub fn tombstone_record() -> Vec<u8> {
    let mut out = vec![0; RECORD_HEADER];
    out.extend_from_slice(b"{}");
    out
}

/// Writes the header of a record made by [`record_with_body`] or [`tombstone_record`].
pub fn finish_record(record: &mut [u8], leaf: Leaf, seq: u64) {
    record[0] = RECORD_VERSION;
    record[1] = if leaf.deleted { FLAG_DELETED } else { 0 };
    record[2..10].copy_from_slice(&leaf.rev.generation().to_be_bytes());
    record[10..26].copy_from_slice(leaf.rev.hash());
    record[26..34].copy_from_slice(&seq.to_be_bytes());
}

pub fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, &[u8])> {
    if bytes.len() < RECORD_HEADER || bytes[0] != RECORD_VERSION {
        return Err(corrupt("document record has an unknown format"));
    }
    let leaf = decode_leaf(bytes[1], &bytes[2..26]);
    let seq = be_u64(&bytes[26..34]);
    Ok((RecordHeader { leaf, seq }, &bytes[RECORD_HEADER..]))
}

pub fn encode_change(leaf: Leaf, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHANGE_HEADER + id.len());
    out.push(if leaf.deleted { FLAG_DELETED } else { 0 });
    out.extend_from_slice(&leaf.rev.generation().to_be_bytes());
    out.extend_from_slice(leaf.rev.hash());
    out.extend_from_slice(id.as_bytes());
    out
}

pub fn decode_change(bytes: &[u8]) -> Result<(Leaf, String)> {
    if bytes.len() < CHANGE_HEADER {
        return Err(corrupt("change entry is too short"));
    }
    let leaf = decode_leaf(bytes[0], &bytes[1..25]);
    let id = std::str::from_utf8(&bytes[CHANGE_HEADER..])
        .map_err(|_| corrupt("change entry id is not UTF-8"))?;
    Ok((leaf, id.to_owned()))
}

fn decode_leaf(flags: u8, rev: &[u8]) -> Leaf {
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&rev[8..24]);
    Leaf {
        rev: Rev::new(be_u64(&rev[0..8]), hash),
        deleted: flags & FLAG_DELETED != 0,
    }
}

/// `db id + suffix`: the key of a document, local document or change.
pub fn key(db_id: u64, suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + suffix.len());
    out.extend_from_slice(&db_id.to_be_bytes());
    out.extend_from_slice(suffix);
    out
}

/// The first key after every key of database `db_id`.
pub fn end_of(db_id: u64) -> [u8; 8] {
    (db_id + 1).to_be_bytes()
}

pub fn purge_key(db_id: u64) -> Vec<u8> {
    let mut out = PURGE_PREFIX.to_vec();
    out.extend_from_slice(&db_id.to_be_bytes());
    out
}

pub fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

pub fn corrupt(what: &str) -> Error {
    Error::storage(format!(
        "embedded store is corrupt or from a newer version: {what}"
    ))
}
