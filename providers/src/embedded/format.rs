//! On-disk encodings of the embedded provider: keys and values of each keyspace.
//!
//! The layout these implement is documented in the parent module (`embedded`).

use crate::write::Leaf;
use crate::{Error, Result, Rev};

/// Key in `databases` holding the next database id.
pub const NEXT_ID_KEY: &[u8] = b"\0next_id";
/// Prefix of the keys in `databases` marking deleted databases still to purge.
pub const PURGE_PREFIX: &[u8] = b"\0purge\0";

/// Version 1 records end with the body; version 2 (written now) adds the revision history
/// after it: the ancestors' hashes, newest first (their generations count down from the
/// leaf's), then their number as a u16.
const RECORD_VERSION_V1: u8 = 1;
const RECORD_VERSION: u8 = 2;
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

/// A record whose header (and history) is still to be filled in by [`finish_record`], with
/// the body JSON serialized straight after the header (no copy).
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

/// Writes the header of a record made by [`record_with_body`] or [`tombstone_record`] and
/// appends the leaf's ancestors (consecutive generations, at most `u16::MAX`).
pub fn finish_record(record: &mut Vec<u8>, leaf: Leaf, seq: u64, history: &[Rev]) {
    let history = &history[..history.len().min(usize::from(u16::MAX))];
    record.reserve(history.len() * 16 + 2);
    for rev in history {
        record.extend_from_slice(rev.hash());
    }
    record.extend_from_slice(&(history.len() as u16).to_be_bytes());
    record[0] = RECORD_VERSION;
    record[1] = if leaf.deleted { FLAG_DELETED } else { 0 };
    record[2..10].copy_from_slice(&leaf.rev.generation().to_be_bytes());
    record[10..26].copy_from_slice(leaf.rev.hash());
    record[26..34].copy_from_slice(&seq.to_be_bytes());
}

/// A record's header and its body JSON.
pub fn decode_record(bytes: &[u8]) -> Result<(RecordHeader, &[u8])> {
    let (header, body, _) = decode_record_with_history(bytes)?;
    Ok((header, body))
}

/// A record's header, body JSON and the encoded ancestors (see [`decode_history`]).
pub fn decode_record_with_history(bytes: &[u8]) -> Result<(RecordHeader, &[u8], &[u8])> {
    if bytes.len() < RECORD_HEADER {
        return Err(corrupt("document record is too short"));
    }
    let rest = &bytes[RECORD_HEADER..];
    let (body, history) = match bytes[0] {
        RECORD_VERSION_V1 => (rest, &rest[rest.len()..]),
        RECORD_VERSION => {
            let count = match rest.len().checked_sub(2) {
                Some(at) => usize::from(u16::from_be_bytes([rest[at], rest[at + 1]])),
                None => return Err(corrupt("document record has no history count")),
            };
            let start = rest
                .len()
                .checked_sub(2 + count * 16)
                .ok_or_else(|| corrupt("document record history is cut short"))?;
            (&rest[..start], &rest[start..rest.len() - 2])
        }
        _ => return Err(corrupt("document record has an unknown format")),
    };
    let leaf = decode_leaf(bytes[1], &bytes[2..26]);
    let seq = be_u64(&bytes[26..34]);
    Ok((RecordHeader { leaf, seq }, body, history))
}

/// The ancestors of `rev` from a record's encoded history, newest first.
pub fn decode_history(rev: &Rev, encoded: &[u8]) -> Vec<Rev> {
    encoded
        .chunks_exact(16)
        .zip(1..)
        .map_while(|(chunk, back)| {
            let mut hash = [0u8; 16];
            hash.copy_from_slice(chunk);
            Some(Rev::new(rev.generation().checked_sub(back)?, hash))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_history_and_old_records_still_read() {
        let leaf = Leaf {
            rev: Rev::new(3, [3; 16]),
            deleted: false,
        };
        let history = [Rev::new(2, [2; 16]), Rev::new(1, [1; 16])];
        let body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"a":1}"#).expect("json");
        let mut record = record_with_body(&body).expect("record");
        finish_record(&mut record, leaf, 9, &history);
        let (header, json, encoded) = decode_record_with_history(&record).expect("decodes");
        assert_eq!(
            (header.leaf, header.seq, json),
            (leaf, 9, &br#"{"a":1}"#[..])
        );
        assert_eq!(decode_history(&leaf.rev, encoded), history);

        // Version 1 (no history) as earlier releases wrote it.
        let mut old = record[..RECORD_HEADER].to_vec();
        old[0] = RECORD_VERSION_V1;
        old.extend_from_slice(br#"{"a":1}"#);
        let (_, json, encoded) = decode_record_with_history(&old).expect("decodes");
        assert_eq!((json, encoded), (&br#"{"a":1}"#[..], &[][..]));

        // A count larger than the record is corruption, not a panic.
        let mut cut = record.clone();
        let n = cut.len();
        cut[n - 2..].copy_from_slice(&500u16.to_be_bytes());
        assert!(decode_record_with_history(&cut).is_err());
    }
}
