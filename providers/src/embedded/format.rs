//! On-disk encodings of the embedded provider: keys and values of each keyspace.
//!
//! The layout these implement is documented in the parent module (`embedded`). Integers are
//! big-endian. A revision is written as its generation (u64), the length of its id (u8) and
//! the id's bytes (16 for an MD5; see [`crate::RevId`]).
//!
//! `docs` records, version 3 (written now):
//!
//! ```text
//! 3 | flags (bit 0: the winner is deleted) | seq (u64) | winner revision
//!   | winner body length (u32) | winner body JSON
//!   | root count (u32) | roots: first generation (u64), node
//! node = id length (u8) | id | kind | [body length (u32) | body JSON if kind is INLINE]
//!      | child count (u32) | children (sorted by id)
//! kind = MISSING | INLINE (a leaf other than the winner) | ELSEWHERE (an ancestor whose body
//!        is in `revbodies`) | WINNER (the body above), plus KIND_DELETED for a deletion
//! ```
//!
//! Versions 1 and 2 (a single leaf: flags, generation, 16-byte hash, seq, body, and in version
//! 2 the ancestors' hashes newest first and their count as u16) still read, as a linear tree.
//! `changes` entries: `CHANGE_V2 | flags`, the winner, the other leaves' count (u16) and
//! revisions, then the document id; entries without `CHANGE_V2` are the fixed layout of
//! earlier versions (flags, generation, hash, id).

use std::collections::HashMap;

use crate::rev_tree::{RevTree, Stored};
use crate::write::{Leaf, REVS_LIMIT};
use crate::{Error, Result, Rev, RevId};

/// Key in `databases` holding the next database id.
pub const NEXT_ID_KEY: &[u8] = b"\0next_id";
/// Prefix of the keys in `databases` marking deleted databases still to purge.
pub const PURGE_PREFIX: &[u8] = b"\0purge\0";

const RECORD_V1: u8 = 1;
const RECORD_V2: u8 = 2;
const RECORD_V3: u8 = 3;
const FLAG_DELETED: u8 = 1;
/// Header of version 1 and 2 records: version, flags, generation, hash, seq.
const OLD_HEADER: usize = 1 + 1 + 8 + 16 + 8;

const KIND_MISSING: u8 = 0;
const KIND_INLINE: u8 = 1;
const KIND_ELSEWHERE: u8 = 2;
const KIND_WINNER: u8 = 3;
const KIND_DELETED: u8 = 0x10;

const CHANGE_V2: u8 = 0x80;
const OLD_CHANGE_HEADER: usize = 1 + 8 + 16;

/// Per-database metadata, rewritten by every write transaction of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbMeta {
    pub id: u64,
    pub seq: u64,
    pub live: u64,
    pub deleted: u64,
    pub revs_limit: u64,
}

impl DbMeta {
    pub fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[0..8].copy_from_slice(&self.id.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.live.to_be_bytes());
        out[24..32].copy_from_slice(&self.deleted.to_be_bytes());
        out[32..40].copy_from_slice(&self.revs_limit.to_be_bytes());
        out
    }

    /// Metadata of 32 bytes (written before `revs_limit` was kept) reads with the default.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 && bytes.len() != 40 {
            return Err(corrupt("database metadata has the wrong length"));
        }
        Ok(Self {
            id: be_u64(&bytes[0..8]),
            seq: be_u64(&bytes[8..16]),
            live: be_u64(&bytes[16..24]),
            deleted: be_u64(&bytes[24..32]),
            revs_limit: if bytes.len() == 40 {
                be_u64(&bytes[32..40])
            } else {
                REVS_LIMIT
            },
        })
    }
}

/// A record's header: its winner and the document's latest sequence number.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    pub leaf: Leaf,
    pub seq: u64,
}

/// A bounds-checked reader over a record.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt(what))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(be_u64(self.take(8, what)?))
    }

    fn rev_id(&mut self, what: &str) -> Result<RevId> {
        let len = self.u8(what)?;
        RevId::from_bytes(self.take(usize::from(len), what)?).ok_or_else(|| corrupt(what))
    }

    fn rev(&mut self, what: &str) -> Result<Rev> {
        let generation = self.u64(what)?;
        Ok(Rev::with_id(generation, self.rev_id(what)?))
    }
}

fn put_rev_id(out: &mut Vec<u8>, id: &RevId) {
    let bytes = id.as_bytes();
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn put_rev(out: &mut Vec<u8>, rev: &Rev) {
    out.extend_from_slice(&rev.generation().to_be_bytes());
    put_rev_id(out, rev.id());
}

/// The header and the winner's body JSON of a record of any version (what reads need).
pub fn decode_head(bytes: &[u8]) -> Result<(RecordHeader, &[u8])> {
    match bytes.first() {
        Some(&RECORD_V1) | Some(&RECORD_V2) => {
            let (header, body, _) = decode_old(bytes)?;
            Ok((header, body))
        }
        Some(&RECORD_V3) => {
            let mut c = Cursor { bytes, at: 1 };
            let (header, body) = v3_head(&mut c)?;
            Ok((header, body))
        }
        _ => Err(corrupt("document record has an unknown format")),
    }
}

fn v3_head<'a>(c: &mut Cursor<'a>) -> Result<(RecordHeader, &'a [u8])> {
    let flags = c.u8("record flags")?;
    let seq = c.u64("record seq")?;
    let rev = c.rev("record winner")?;
    let len = c.u32("winner body length")?;
    let body = c.take(len as usize, "winner body")?;
    let header = RecordHeader {
        leaf: Leaf {
            rev,
            deleted: flags & FLAG_DELETED != 0,
        },
        seq,
    };
    Ok((header, body))
}

/// Version 1 and 2 records: header, body, encoded ancestors.
fn decode_old(bytes: &[u8]) -> Result<(RecordHeader, &[u8], Vec<Rev>)> {
    if bytes.len() < OLD_HEADER {
        return Err(corrupt("document record is too short"));
    }
    let rest = &bytes[OLD_HEADER..];
    let (body, history) = if bytes[0] == RECORD_V1 {
        (rest, &rest[rest.len()..])
    } else {
        let count = match rest.len().checked_sub(2) {
            Some(at) => usize::from(u16::from_be_bytes([rest[at], rest[at + 1]])),
            None => return Err(corrupt("document record has no history count")),
        };
        let start = rest
            .len()
            .checked_sub(2 + count * 16)
            .ok_or_else(|| corrupt("document record history is cut short"))?;
        (&rest[..start], &rest[start..rest.len() - 2])
    };
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&bytes[10..26]);
    let leaf = Leaf {
        rev: Rev::new(be_u64(&bytes[2..10]), hash),
        deleted: bytes[1] & FLAG_DELETED != 0,
    };
    let ancestors = history
        .chunks_exact(16)
        .zip(1..)
        .map_while(|(chunk, back)| {
            let mut hash = [0u8; 16];
            hash.copy_from_slice(chunk);
            Some(Rev::new(leaf.rev.generation().checked_sub(back)?, hash))
        })
        .collect();
    Ok((
        RecordHeader {
            leaf,
            seq: be_u64(&bytes[26..34]),
        },
        body,
        ancestors,
    ))
}

/// A record decoded for a write or a tree read: the tree, every body-bearing node marked
/// [`Stored::Elsewhere`], and the JSON of the bodies the record itself holds (the winner's
/// and the other leaves'), by revision.
pub struct DecodedRecord<'a> {
    pub header: RecordHeader,
    pub tree: RevTree,
    pub inline: HashMap<Rev, &'a [u8]>,
}

/// Decodes a whole record (any version).
pub fn decode_record(bytes: &[u8]) -> Result<DecodedRecord<'_>> {
    match bytes.first() {
        Some(&RECORD_V1) | Some(&RECORD_V2) => {
            let (header, body, ancestors) = decode_old(bytes)?;
            let mut path: Vec<(RevId, Stored)> = ancestors
                .iter()
                .rev()
                .map(|r| (*r.id(), Stored::Missing))
                .collect();
            path.push((
                *header.leaf.rev.id(),
                Stored::Elsewhere {
                    deleted: header.leaf.deleted,
                },
            ));
            let start = header.leaf.rev.generation() - ancestors.len() as u64;
            let mut tree = RevTree::default();
            tree.merge(start, path);
            let inline = HashMap::from([(header.leaf.rev, body)]);
            Ok(DecodedRecord {
                header,
                tree,
                inline,
            })
        }
        Some(&RECORD_V3) => {
            let mut c = Cursor { bytes, at: 1 };
            let (header, winner_body) = v3_head(&mut c)?;
            let mut inline = HashMap::from([(header.leaf.rev, winner_body)]);
            let roots = c.u32("root count")?;
            let mut tree = RevTree::default();
            for _ in 0..roots {
                let start = c.u64("root generation")?;
                let (id, value, children) = decode_node(&mut c)?;
                let rev = Rev::with_id(start, id);
                let root = tree.push_root(rev, value.stored(rev, &mut inline));
                // Nodes follow depth first; each says how many children come after it.
                let mut open: Vec<(usize, u32)> = Vec::new();
                if children > 0 {
                    open.push((root, children));
                }
                while let Some((parent, left)) = open.last_mut() {
                    let parent = *parent;
                    *left -= 1;
                    if *left == 0 {
                        open.pop();
                    }
                    let (id, value, children) = decode_node(&mut c)?;
                    let rev = Rev::with_id(tree.node(parent).rev.generation() + 1, id);
                    let at = tree.push_child(parent, id, value.stored(rev, &mut inline));
                    if children > 0 {
                        open.push((at, children));
                    }
                }
            }
            Ok(DecodedRecord {
                header,
                tree,
                inline,
            })
        }
        _ => Err(corrupt("document record has an unknown format")),
    }
}

/// A node's value as encoded: its body (if the record holds it) is placed in `inline`.
enum NodeValue<'a> {
    Missing,
    Inline { deleted: bool, json: &'a [u8] },
    Elsewhere { deleted: bool },
}

impl<'a> NodeValue<'a> {
    fn stored(self, rev: Rev, inline: &mut HashMap<Rev, &'a [u8]>) -> Stored {
        match self {
            NodeValue::Missing => Stored::Missing,
            NodeValue::Inline { deleted, json } => {
                inline.insert(rev, json);
                Stored::Elsewhere { deleted }
            }
            NodeValue::Elsewhere { deleted } => Stored::Elsewhere { deleted },
        }
    }
}

/// One encoded node: its id, value and number of children.
fn decode_node<'a>(c: &mut Cursor<'a>) -> Result<(RevId, NodeValue<'a>, u32)> {
    let id = c.rev_id("tree node id")?;
    let kind = c.u8("tree node kind")?;
    let deleted = kind & KIND_DELETED != 0;
    let value = match kind & !KIND_DELETED {
        KIND_MISSING => NodeValue::Missing,
        KIND_INLINE => {
            let len = c.u32("leaf body length")?;
            NodeValue::Inline {
                deleted,
                json: c.take(len as usize, "leaf body")?,
            }
        }
        KIND_ELSEWHERE | KIND_WINNER => NodeValue::Elsewhere { deleted },
        _ => return Err(corrupt("tree node has an unknown kind")),
    };
    let children = c.u32("tree node children")?;
    Ok((id, value, children))
}

/// Encodes a version 3 record. `winner_json` is the winner's body; `leaf_json` gives the
/// body JSON of every other leaf (leaves keep their bodies in the record; ancestors with a
/// body are marked as kept in `revbodies`).
pub fn encode_record(
    tree: &RevTree,
    winner: Leaf,
    seq: u64,
    winner_json: &[u8],
    leaf_json: &dyn Fn(&Rev) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + winner_json.len() + 24 * tree.len());
    out.push(RECORD_V3);
    out.push(if winner.deleted { FLAG_DELETED } else { 0 });
    out.extend_from_slice(&seq.to_be_bytes());
    put_rev(&mut out, &winner.rev);
    out.extend_from_slice(&(winner_json.len() as u32).to_be_bytes());
    out.extend_from_slice(winner_json);
    out.extend_from_slice(&(tree.roots().len() as u32).to_be_bytes());
    for &root in tree.roots() {
        out.extend_from_slice(&tree.node(root).rev.generation().to_be_bytes());
        for at in tree.subtree(root) {
            let node = tree.node(at);
            let children = tree.children(at);
            put_rev_id(&mut out, node.rev.id());
            let deleted = if node.value.is_deleted() {
                KIND_DELETED
            } else {
                0
            };
            if children.is_empty() && node.rev == winner.rev {
                out.push(KIND_WINNER | deleted);
            } else if children.is_empty() {
                let json = leaf_json(&node.rev)?;
                out.push(KIND_INLINE | deleted);
                out.extend_from_slice(&(json.len() as u32).to_be_bytes());
                out.extend_from_slice(&json);
            } else if node.value.has_body() {
                out.push(KIND_ELSEWHERE | deleted);
            } else {
                out.push(KIND_MISSING);
            }
            out.extend_from_slice(&(children.len() as u32).to_be_bytes());
        }
    }
    Ok(out)
}

/// A `changes` entry: the document's winner, its other leaves and its id.
pub fn encode_change(winner: Leaf, others: &[Rev], id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + id.len() + 26 * others.len());
    out.push(CHANGE_V2 | if winner.deleted { FLAG_DELETED } else { 0 });
    put_rev(&mut out, &winner.rev);
    out.extend_from_slice(&(others.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for rev in others.iter().take(usize::from(u16::MAX)) {
        put_rev(&mut out, rev);
    }
    out.extend_from_slice(id.as_bytes());
    out
}

/// A `changes` entry: the winner, the other leaves and the document id.
pub fn decode_change(bytes: &[u8]) -> Result<(Leaf, Vec<Rev>, String)> {
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| corrupt("change entry id is not UTF-8"))
    };
    match bytes.first() {
        Some(flags) if flags & CHANGE_V2 != 0 => {
            let mut c = Cursor { bytes, at: 1 };
            let rev = c.rev("change winner")?;
            let count = c.take(2, "change leaf count")?;
            let count = u16::from_be_bytes([count[0], count[1]]);
            let others = (0..count)
                .map(|_| c.rev("change leaf"))
                .collect::<Result<Vec<_>>>()?;
            let leaf = Leaf {
                rev,
                deleted: flags & FLAG_DELETED != 0,
            };
            Ok((leaf, others, utf8(&bytes[c.at..])?))
        }
        Some(flags) if bytes.len() >= OLD_CHANGE_HEADER => {
            let mut hash = [0u8; 16];
            hash.copy_from_slice(&bytes[9..25]);
            let leaf = Leaf {
                rev: Rev::new(be_u64(&bytes[1..9]), hash),
                deleted: flags & FLAG_DELETED != 0,
            };
            Ok((leaf, Vec::new(), utf8(&bytes[OLD_CHANGE_HEADER..])?))
        }
        _ => Err(corrupt("change entry is too short")),
    }
}

/// `db id + suffix`: the key of a document, local document or change.
pub fn key(db_id: u64, suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + suffix.len());
    out.extend_from_slice(&db_id.to_be_bytes());
    out.extend_from_slice(suffix);
    out
}

/// The prefix of every `revbodies` key of one document: db id, id length (u32), id.
pub fn bodies_prefix(db_id: u64, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + id.len() + 25);
    out.extend_from_slice(&db_id.to_be_bytes());
    out.extend_from_slice(&(id.len() as u32).to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out
}

/// The `revbodies` key of an ancestor's body.
pub fn body_key(db_id: u64, id: &str, rev: &Rev) -> Vec<u8> {
    let mut out = bodies_prefix(db_id, id);
    put_rev(&mut out, rev);
    out
}

/// The chunk number of an attachment's redirect entry (see the `attachments` module).
pub const REDIRECT_CHUNK: u32 = u32::MAX;

/// Attachment bytes are stored in chunks of at most this many bytes.
pub const ATTACHMENT_CHUNK: usize = 64 * 1024;

/// The prefix of every `attachments` key of the bytes with MD5 `digest`: db id, digest.
pub fn attachment_prefix(db_id: u64, digest: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 16 + 4);
    k.extend_from_slice(&db_id.to_be_bytes());
    k.extend_from_slice(digest);
    k
}

/// The `attachments` key of chunk `n` (from 0) of the bytes with MD5 `digest`.
pub fn attachment_key(db_id: u64, digest: &[u8; 16], n: u32) -> Vec<u8> {
    let mut k = attachment_prefix(db_id, digest);
    k.extend_from_slice(&n.to_be_bytes());
    k
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
    use std::sync::Arc;

    fn rev(text: &str) -> Rev {
        Rev::parse(text).unwrap()
    }

    #[test]
    fn version_3_records_round_trip_their_tree() {
        let mut tree = RevTree::default();
        let a = rev("1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        tree.merge(1, vec![(*a.id(), Stored::Elsewhere { deleted: false })]);
        for (r, deleted) in [("2-bb", false), ("2-ccc", true)] {
            let r = rev(r);
            tree.merge(
                1,
                vec![
                    (*a.id(), Stored::Missing),
                    (
                        *r.id(),
                        Stored::Body {
                            deleted,
                            body: Arc::new(Default::default()),
                        },
                    ),
                ],
            );
        }
        let winner = Leaf {
            rev: rev("2-bb"),
            deleted: false,
        };
        let record = encode_record(&tree, winner, 7, br#"{"w":1}"#, &|r| {
            Ok(format!(r#"{{"leaf":"{r}"}}"#).into_bytes())
        })
        .unwrap();
        let (head, body) = decode_head(&record).unwrap();
        assert_eq!((head.leaf, head.seq, body), (winner, 7, &br#"{"w":1}"#[..]));
        let decoded = decode_record(&record).unwrap();
        assert_eq!(decoded.tree.len(), 3);
        let leaves = decoded.tree.leaves();
        assert_eq!(leaves[0].rev, winner.rev);
        assert!(leaves[1].deleted);
        assert_eq!(decoded.inline[&rev("2-ccc")], &br#"{"leaf":"2-ccc"}"#[..]);
        assert!(matches!(
            decoded.tree.get(&a).unwrap().value,
            Stored::Elsewhere { .. }
        ));
        // Cut short anywhere: corruption, not a panic.
        for n in 0..record.len() {
            assert!(decode_record(&record[..n]).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn records_and_changes_of_earlier_versions_still_read() {
        // Version 2: flags, generation, hash, seq, body, ancestors, their count.
        let mut v2 = vec![RECORD_V2, 0];
        v2.extend_from_slice(&3u64.to_be_bytes());
        v2.extend_from_slice(&[3; 16]);
        v2.extend_from_slice(&9u64.to_be_bytes());
        v2.extend_from_slice(br#"{"a":1}"#);
        v2.extend_from_slice(&[2; 16]);
        v2.extend_from_slice(&[1; 16]);
        v2.extend_from_slice(&2u16.to_be_bytes());
        let decoded = decode_record(&v2).unwrap();
        assert_eq!(decoded.header.seq, 9);
        let leaf = Rev::new(3, [3; 16]);
        let path = decoded.tree.path(&leaf).unwrap();
        let revs: Vec<Rev> = path.iter().map(|(r, _)| *r).collect();
        assert_eq!(revs, [leaf, Rev::new(2, [2; 16]), Rev::new(1, [1; 16])]);
        // Version 1: no history.
        let mut v1 = v2[..OLD_HEADER].to_vec();
        v1[0] = RECORD_V1;
        v1.extend_from_slice(br#"{"a":1}"#);
        assert_eq!(decode_head(&v1).unwrap().1, &br#"{"a":1}"#[..]);
        // A count larger than the record is corruption, not a panic.
        let mut cut = v2.clone();
        let n = cut.len();
        cut[n - 2..].copy_from_slice(&500u16.to_be_bytes());
        assert!(decode_record(&cut).is_err());
        // An old change entry.
        let mut change = vec![FLAG_DELETED];
        change.extend_from_slice(&2u64.to_be_bytes());
        change.extend_from_slice(&[7; 16]);
        change.extend_from_slice(b"doc");
        let (leaf, others, id) = decode_change(&change).unwrap();
        assert_eq!(
            (leaf.rev, leaf.deleted, others.len(), id.as_str()),
            (Rev::new(2, [7; 16]), true, 0, "doc")
        );
        // And a new one, with another leaf.
        let new = encode_change(leaf, &[rev("2-abc")], "doc");
        assert_eq!(decode_change(&new).unwrap().1, [rev("2-abc")]);
        // Metadata of 32 bytes reads with the default revs_limit.
        let meta = DbMeta {
            id: 1,
            seq: 2,
            live: 3,
            deleted: 4,
            revs_limit: 5,
        };
        assert_eq!(DbMeta::decode(&meta.encode()).unwrap(), meta);
        assert_eq!(
            DbMeta::decode(&meta.encode()[..32]).unwrap().revs_limit,
            REVS_LIMIT
        );
    }
}
