//! CouchDB revisions: the `Rev` type and the exact revision-id algorithm of CouchDB 3.
//!
//! A revision is `N-<32 lowercase hex>`: the generation `N` (1 for a new document, +1 per
//! write, deletes included) and a 16-byte hash. CouchDB 3 computes the hash as
//! `md5(term_to_binary([Deleted, ParentGen, ParentHash, Body, []], [{minor_version, 1}]))`
//! where `ParentGen`/`ParentHash` are the integer 0 for a first revision, else the parent's
//! generation and raw hash bytes; `Body` is the document minus `_id`/`_rev` as EJSON. This
//! module writes the same Erlang external term format byte for byte, so the memory and
//! embedded providers produce the revision ids a CouchDB server would
//! (`testdata/couchdb-revisions.json` holds recorded histories that prove it).
//!
//! EJSON encoding, as jiffy decodes JSON: an object is `{[{Key, Value}, ...]}` in text order;
//! strings and keys are binaries; `true`/`false`/`null` are atoms; integers are exact
//! (arbitrary size); numbers with a fraction or exponent are 64-bit floats; arrays are lists
//! (which `term_to_binary` writes as a byte string when every element is an integer 0..=255).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::{Error, Result};

/// A CouchDB revision, `N-<id>`: the generation `N` (1 for a new document, +1 per write,
/// deletes included) and an id, normally 32 lowercase hex digits.
///
/// Ordered as CouchDB picks a winner among leaves of equal deletedness: higher generation
/// first, then the greater id.
///
/// ```
/// use docstore_providers::{Document, Rev};
///
/// // The revision CouchDB 3 assigns to a new document `{"x":1}`, and to its deletion.
/// let body = Document::from_json(r#"{"x":1}"#).unwrap();
/// let first = Rev::compute(None, false, body.as_map());
/// assert_eq!(first.to_string(), "1-0785e9eb543380151003dc452c3a001a");
/// let gone = Rev::compute(Some(&first), true, &Default::default());
/// assert_eq!(gone.generation(), 2);
/// assert!(gone > first);
/// assert_eq!(Rev::parse(&first.to_string()).unwrap(), first);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rev {
    generation: u64,
    id: RevId,
}

/// The id part of a revision, as CouchDB keeps it: 32 hex digits are the 16 bytes they spell
/// (CouchDB's own ids are MD5s), any other text its raw bytes (replication may bring ids
/// such as `abc`). Any 16-byte id is written as 32 lowercase hex digits, as CouchDB writes
/// it. Ids compare as Erlang binaries: byte by byte, a prefix first. docstore keeps at most
/// 16 bytes, so an id that is not 32 hex digits may have at most 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RevId {
    bytes: [u8; 16],
    len: u8,
}

impl RevId {
    /// The id of 16 raw bytes (an MD5).
    pub const fn hash(bytes: [u8; 16]) -> Self {
        Self { bytes, len: 16 }
    }

    /// Parses an id as CouchDB does: 32 characters must be hex digits (either case), any
    /// other text (1 to 16 bytes here) is kept as it is.
    pub fn parse(text: &str) -> std::result::Result<Self, &'static str> {
        if text.len() == 32 {
            let mut bytes = [0u8; 16];
            for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
                let hi = hex_val(chunk[0]).ok_or("32 characters that are not hex digits")?;
                let lo = hex_val(chunk[1]).ok_or("32 characters that are not hex digits")?;
                bytes[i] = (hi << 4) | lo;
            }
            return Ok(Self::hash(bytes));
        }
        if text.is_empty() {
            return Err("an empty id");
        }
        if text.len() > 16 {
            return Err("an id that is not 32 hex digits and longer than 16 bytes");
        }
        let mut bytes = [0u8; 16];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(Self {
            bytes,
            len: text.len() as u8,
        })
    }

    /// The id's bytes (16 for an MD5).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// An id from stored bytes (1 to 16 of them).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > 16 {
            return None;
        }
        let mut out = [0u8; 16];
        out[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            bytes: out,
            len: bytes.len() as u8,
        })
    }

    /// Writes the id as CouchDB does into `out`; returns the number of bytes written (at
    /// most 32).
    fn write(&self, out: &mut [u8; 32]) -> usize {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        if self.len == 16 {
            for (i, b) in self.bytes.iter().enumerate() {
                out[2 * i] = HEX[usize::from(b >> 4)];
                out[2 * i + 1] = HEX[usize::from(b & 0xf)];
            }
            32
        } else {
            let n = usize::from(self.len);
            out[..n].copy_from_slice(&self.bytes[..n]);
            n
        }
    }
}

impl PartialOrd for RevId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RevId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Display for RevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        let n = self.write(&mut buf);
        // Hex digits, or the bytes of the text the id was parsed from.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for RevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RevId({self})")
    }
}

impl Rev {
    /// Builds a revision from a generation and an MD5.
    pub fn new(generation: u64, hash: [u8; 16]) -> Self {
        Self {
            generation,
            id: RevId::hash(hash),
        }
    }

    /// A revision of a generation no document reaches (999,999,999). Asked about in
    /// [`crate::DatabaseService::revs_diff`] next to a document's revision, it is always
    /// missing, so the answer's `possible_ancestors` (the leaves below a missing
    /// revision's generation) lists every leaf the database holds for the document.
    pub fn beyond_every_leaf() -> Self {
        Self::new(999_999_999, [0xff; 16])
    }

    /// Builds a revision from a generation and an id.
    pub fn with_id(generation: u64, id: RevId) -> Self {
        Self { generation, id }
    }

    /// The generation `N` (1 for a new document; 0 only for a root a replication brought
    /// with more ancestors than its generation counts).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The id part.
    pub fn id(&self) -> &RevId {
        &self.id
    }

    /// Parses `N-<id>` as CouchDB does (see [`RevId`]).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidDocument {
            location: crate::error::Location::db(""),
            reason: format!("invalid revision {text:?}: {why} (expected N-<32 hex digits>)"),
        };
        let (gen_text, id) = text.split_once('-').ok_or_else(|| bad("no '-'"))?;
        if gen_text.is_empty() || !gen_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the generation is not a number"));
        }
        let generation: u64 = gen_text
            .parse()
            .map_err(|_| bad("the generation is not a number"))?;
        let id = RevId::parse(id).map_err(bad)?;
        Ok(Self { generation, id })
    }

    /// The revision CouchDB assigns to a write of `body` (without `_id`/`_rev`) on top of
    /// `parent` (`None` for a new document). A delete passes `deleted = true` and its body
    /// (empty unless the deletion carries fields).
    ///
    /// A body holding `_attachments` (stored stubs, as [`crate::attachment`] writes them) is
    /// hashed as CouchDB hashes a document with attachments: the object without that field,
    /// and as the last element the list of `{Name, ContentType, Md5}` in reverse order.
    pub fn compute(parent: Option<&Rev>, deleted: bool, body: &Map<String, Value>) -> Rev {
        Self::compute_term(parent, deleted, body, false)
    }

    /// [`Rev::compute`] for CouchDB's re-creation of a deleted document without `_rev`: its
    /// updater hashes each attachment as `{undefined, undefined, undefined}`, so the
    /// revision depends on how many attachments there are, not on what they hold
    /// (`couch_db_updater:merge_rev_tree/4`; recorded as `recreate_quirk_att_content_ignored`).
    pub(crate) fn compute_recreation(
        parent: Option<&Rev>,
        deleted: bool,
        body: &Map<String, Value>,
    ) -> Rev {
        Self::compute_term(parent, deleted, body, true)
    }

    /// [`Rev::compute`] for many new documents (no parent; `(deleted, body)` each) at
    /// once: their terms are written first, then hashed eight at a time (`md5x8`). Equal
    /// to calling `Rev::compute(None, deleted, body)` on each.
    #[cfg(feature = "embedded")]
    pub(crate) fn compute_new_many(docs: &[(bool, &Map<String, Value>)]) -> Vec<Rev> {
        let mut terms: Vec<u8> = Vec::with_capacity(docs.len() * 1024);
        let mut ends = Vec::with_capacity(docs.len());
        for (deleted, body) in docs {
            write_term(&mut terms, None, *deleted, body, false);
            ends.push(terms.len());
        }
        let mut start = 0;
        let messages: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let term = &terms[start..end];
                start = end;
                term
            })
            .collect();
        crate::md5x8::digests(&messages)
            .into_iter()
            .map(|hash| Rev::new(1, hash))
            .collect()
    }

    fn compute_term(
        parent: Option<&Rev>,
        deleted: bool,
        body: &Map<String, Value>,
        undefined_attachments: bool,
    ) -> Rev {
        let mut term = Sink::new();
        write_term(&mut term, parent, deleted, body, undefined_attachments);
        let hash = term.finish();
        // Saturating: a parent at the last generation (only a crafted revision can be) gives
        // a child at that generation rather than an overflow.
        Rev::new(parent.map_or(1, |p| p.generation.saturating_add(1)), hash)
    }
}

/// Writes the term CouchDB hashes for a revision (see the module doc).
fn write_term(
    term: &mut impl Term,
    parent: Option<&Rev>,
    deleted: bool,
    body: &Map<String, Value>,
    undefined_attachments: bool,
) {
    term.push(131); // external term format version
    // [Deleted, ParentGen, ParentRevId, Body, Atts]: a proper list of 5 elements.
    term.push(LIST_EXT);
    term.extend(&5u32.to_be_bytes());
    write_atom(term, if deleted { "true" } else { "false" });
    match parent {
        None => {
            write_small_int(term, 0);
            write_small_int(term, 0);
        }
        Some(p) => {
            write_u64(term, p.generation);
            write_binary(term, p.id.as_bytes());
        }
    }
    let attachments = body.get(ATTACHMENTS).and_then(Value::as_object);
    match attachments {
        Some(_) => write_object_without(term, body, ATTACHMENTS),
        None => write_object(term, body),
    }
    match attachments.filter(|a| !a.is_empty()) {
        None => term.push(NIL_EXT),
        Some(atts) => {
            term.push(LIST_EXT);
            term.extend(&(atts.len() as u32).to_be_bytes());
            for (name, stub) in atts.iter().rev() {
                term.push(SMALL_TUPLE_EXT);
                term.push(3);
                if undefined_attachments {
                    for _ in 0..3 {
                        write_atom(term, "undefined");
                    }
                    continue;
                }
                write_binary(term, name.as_bytes());
                let field = |key: &str| stub.get(key).and_then(Value::as_str).unwrap_or("");
                write_binary(term, field("content_type").as_bytes());
                let md5 = crate::attachment::digest_bytes(field("digest"));
                write_binary(term, md5.as_ref().map_or(&[][..], |d| &d[..]));
            }
            term.push(NIL_EXT);
        }
    }
    term.push(NIL_EXT); // list tail
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Rev {
    /// `N-<id>`, assembled in a stack buffer and written at once: revisions are formatted on
    /// every read and write, and `write!` per byte cost ten times more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 20 + 1 + 32];
        let mut at = 20;
        let mut n = self.generation;
        loop {
            at -= 1;
            buf[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        buf[20] = b'-';
        let mut id = [0u8; 32];
        let len = self.id.write(&mut id);
        buf[21..21 + len].copy_from_slice(&id[..len]);
        f.write_str(std::str::from_utf8(&buf[at..21 + len]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rev({self})")
    }
}

impl FromStr for Rev {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Rev::parse(s)
    }
}

impl PartialOrd for Rev {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rev {
    fn cmp(&self, other: &Self) -> Ordering {
        self.generation
            .cmp(&other.generation)
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl Serialize for Rev {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rev {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Rev::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a term is written: straight into MD5 (`Sink`), or into bytes hashed later.
trait Term {
    fn push(&mut self, byte: u8);
    fn extend(&mut self, bytes: &[u8]);
}

#[cfg(feature = "embedded")]
impl Term for Vec<u8> {
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Term for Sink {
    fn push(&mut self, byte: u8) {
        Sink::push(self, byte);
    }

    fn extend(&mut self, bytes: &[u8]) {
        Sink::extend(self, bytes);
    }
}

/// Feeds the term encoding straight into MD5, through a small buffer so the many one- and
/// few-byte pieces do not each cost a hasher call; nothing is allocated.
struct Sink {
    md5: Md5,
    buf: [u8; 256],
    len: usize,
}

impl Sink {
    fn new() -> Self {
        Self {
            md5: Md5::new(),
            buf: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        if self.len == self.buf.len() {
            self.flush();
        }
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        if bytes.len() > 64 {
            self.flush();
            self.md5.update(bytes);
            return;
        }
        if self.len + bytes.len() > self.buf.len() {
            self.flush();
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn flush(&mut self) {
        self.md5.update(&self.buf[..self.len]);
        self.len = 0;
    }

    fn finish(mut self) -> [u8; 16] {
        self.flush();
        self.md5.finalize().into()
    }
}

// Erlang external term format tags (erts/emulator/beam/external.h).
const NEW_FLOAT_EXT: u8 = 70;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const ATOM_EXT: u8 = 100;
const SMALL_TUPLE_EXT: u8 = 104;
const NIL_EXT: u8 = 106;
const STRING_EXT: u8 = 107;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;

fn write_atom(out: &mut impl Term, name: &str) {
    // minor_version 1 writes latin-1 atoms as ATOM_EXT.
    out.push(ATOM_EXT);
    out.extend(&(name.len() as u16).to_be_bytes());
    out.extend(name.as_bytes());
}

fn write_small_int(out: &mut impl Term, n: u8) {
    out.push(SMALL_INTEGER_EXT);
    out.push(n);
}

fn write_binary(out: &mut impl Term, bytes: &[u8]) {
    out.push(BINARY_EXT);
    out.extend(&(bytes.len() as u32).to_be_bytes());
    out.extend(bytes);
}

fn write_u64(out: &mut impl Term, n: u64) {
    write_bigint(out, false, &n.to_le_bytes());
}

/// Writes an integer given its sign and little-endian magnitude, choosing the smallest
/// encoding as `term_to_binary` does.
fn write_bigint(out: &mut impl Term, negative: bool, magnitude_le: &[u8]) {
    let len = magnitude_le
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    let mag = &magnitude_le[..len];
    if len <= 8 {
        let mut buf = [0u8; 8];
        buf[..len].copy_from_slice(mag);
        let m = u64::from_le_bytes(buf);
        if !negative && m <= 255 {
            return write_small_int(out, m as u8);
        }
        let value = if negative { -(m as i128) } else { m as i128 };
        if value >= i32::MIN as i128 && value <= i32::MAX as i128 {
            out.push(INTEGER_EXT);
            out.extend(&(value as i32).to_be_bytes());
            return;
        }
    }
    if len <= 255 {
        out.push(SMALL_BIG_EXT);
        out.push(len as u8);
    } else {
        out.push(LARGE_BIG_EXT);
        out.extend(&(len as u32).to_be_bytes());
    }
    out.push(u8::from(negative));
    out.extend(mag);
}

/// The field of a stored body holding its attachments' stubs (not part of the hashed body).
const ATTACHMENTS: &str = "_attachments";

/// Writes `map` as an EJSON object without its field `skip` (which it holds).
fn write_object_without(out: &mut impl Term, map: &Map<String, Value>, skip: &str) {
    out.push(SMALL_TUPLE_EXT);
    out.push(1);
    if map.len() <= 1 {
        out.push(NIL_EXT);
        return;
    }
    out.push(LIST_EXT);
    out.extend(&((map.len() - 1) as u32).to_be_bytes());
    for (k, v) in map.iter().filter(|(k, _)| k.as_str() != skip) {
        out.push(SMALL_TUPLE_EXT);
        out.push(2);
        write_binary(out, k.as_bytes());
        write_value(out, v);
    }
    out.push(NIL_EXT);
}

fn write_object(out: &mut impl Term, map: &Map<String, Value>) {
    out.push(SMALL_TUPLE_EXT);
    out.push(1);
    if map.is_empty() {
        out.push(NIL_EXT);
        return;
    }
    out.push(LIST_EXT);
    out.extend(&(map.len() as u32).to_be_bytes());
    for (k, v) in map {
        out.push(SMALL_TUPLE_EXT);
        out.push(2);
        write_binary(out, k.as_bytes());
        write_value(out, v);
    }
    out.push(NIL_EXT);
}

fn write_value(out: &mut impl Term, v: &Value) {
    match v {
        Value::Null => write_atom(out, "null"),
        Value::Bool(b) => write_atom(out, if *b { "true" } else { "false" }),
        Value::String(s) => write_binary(out, s.as_bytes()),
        Value::Number(n) => write_number(out, n),
        Value::Object(m) => write_object(out, m),
        Value::Array(items) => write_array(out, items),
    }
}

fn write_array(out: &mut impl Term, items: &[Value]) {
    if items.is_empty() {
        out.push(NIL_EXT);
        return;
    }
    // A list of integers 0..=255 shorter than 65536 is written as a byte string.
    if items.len() < 65536 {
        let bytes: Option<Vec<u8>> = items.iter().map(small_int_of).collect();
        if let Some(bytes) = bytes {
            out.push(STRING_EXT);
            out.extend(&(bytes.len() as u16).to_be_bytes());
            out.extend(&bytes);
            return;
        }
    }
    out.push(LIST_EXT);
    out.extend(&(items.len() as u32).to_be_bytes());
    for item in items {
        write_value(out, item);
    }
    out.push(NIL_EXT);
}

fn small_int_of(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) if is_integer_text(n.as_str()) => n.as_str().parse::<u8>().ok(),
        _ => None,
    }
}

/// JSON number text with no fraction and no exponent is an exact integer to jiffy.
pub(crate) fn is_integer_text(text: &str) -> bool {
    !text.contains(['.', 'e', 'E'])
}

fn write_number(out: &mut impl Term, n: &Number) {
    let text = n.as_str();
    if is_integer_text(text) {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let magnitude = decimal_to_le_bytes(digits);
        let negative = negative && magnitude.iter().any(|&b| b != 0);
        write_bigint(out, negative, &magnitude);
    } else {
        // Validated finite at write time (see validate::check_numbers).
        let f: f64 = text.parse().unwrap_or(f64::NAN);
        out.push(NEW_FLOAT_EXT);
        out.extend(&f.to_bits().to_be_bytes());
    }
}

/// Converts an unsigned decimal digit string to little-endian base-256 bytes.
fn decimal_to_le_bytes(digits: &str) -> Vec<u8> {
    if let Ok(small) = digits.parse::<u64>() {
        return small.to_le_bytes().to_vec();
    }
    // Long division of the decimal digits by 256, collecting remainders.
    let mut dec: Vec<u8> = digits.bytes().map(|c| c - b'0').collect();
    let mut out = Vec::new();
    while dec.iter().any(|&d| d != 0) {
        let mut rem: u32 = 0;
        let mut next = Vec::with_capacity(dec.len());
        for &d in &dec {
            let cur = rem * 10 + d as u32;
            let q = cur / 256;
            rem = cur % 256;
            if !next.is_empty() || q != 0 {
                next.push(q as u8);
            }
        }
        out.push(rem as u8);
        dec = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "embedded")]
    #[test]
    fn compute_new_many_equals_compute_one_by_one() {
        let bodies: Vec<Map<String, Value>> = (0..41)
            .map(|i| {
                match serde_json::json!({
                    "n": i,
                    "score": i as f64 + 0.5,
                    "text": "x".repeat(i * 37),
                    "nested": {"bytes": [1, 2, 3], "list": [i, "two", null, true]},
                }) {
                    Value::Object(map) => map,
                    _ => unreachable!("an object literal"),
                }
            })
            .chain([Map::new()])
            .collect();
        let docs: Vec<(bool, &Map<String, Value>)> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| (i % 5 == 0, body))
            .collect();
        for take in [0, 1, 7, 8, 9, docs.len()] {
            let many = Rev::compute_new_many(&docs[..take]);
            assert_eq!(many.len(), take);
            for ((deleted, body), rev) in docs.iter().zip(many) {
                assert_eq!(rev, Rev::compute(None, *deleted, body));
            }
        }
    }

    #[test]
    fn parse_and_format_round_trip() {
        let r = Rev::parse("12-0785e9eb543380151003dc452c3a001a").unwrap();
        assert_eq!(r.generation(), 12);
        assert_eq!(r.to_string(), "12-0785e9eb543380151003dc452c3a001a");
        for bad in [
            "",
            "1",
            "x-0785e9eb543380151003dc452c3a001a",
            "-0785e9eb543380151003dc452c3a001a",
            "1-",
            // 32 characters must be hex digits (CouchDB: "Invalid rev format").
            "1-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            // Longer than docstore keeps.
            "1-abcdefghijklmnopq",
        ] {
            assert!(Rev::parse(bad).is_err(), "{bad} parsed");
        }
        // CouchDB reads uppercase hex and writes it lowercase; other ids stay as they are;
        // a root a replication brought may be generation 0.
        let upper = Rev::parse("1-0785E9EB543380151003DC452C3A001A").unwrap();
        assert_eq!(upper.to_string(), "1-0785e9eb543380151003dc452c3a001a");
        assert_eq!(Rev::parse("2-abc").unwrap().to_string(), "2-abc");
        assert_eq!(
            Rev::parse("0-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
                .unwrap()
                .generation(),
            0
        );
        // Any 16-byte id is written as hex, as CouchDB writes it.
        assert_eq!(
            Rev::parse("3-abcdefghijklmnop").unwrap().to_string(),
            "3-6162636465666768696a6b6c6d6e6f70"
        );
    }

    #[test]
    fn winner_order_is_generation_then_hash() {
        let a = Rev::parse("2-00000000000000000000000000000001").unwrap();
        let b = Rev::parse("2-f0000000000000000000000000000000").unwrap();
        let c = Rev::parse("10-00000000000000000000000000000000").unwrap();
        assert!(a < b && b < c);
        // Erlang binary order: 0x99.. > "z" (0x7a); "ab" < "abc" < "abd".
        let hex = Rev::parse("2-99999999999999999999999999999999").unwrap();
        let z = Rev::parse("2-zzz").unwrap();
        assert!(z < hex);
        let (ab, abc, abd) = (
            Rev::parse("2-ab").unwrap(),
            Rev::parse("2-abc").unwrap(),
            Rev::parse("2-abd").unwrap(),
        );
        assert!(ab < abc && abc < abd);
    }

    #[test]
    fn big_decimal_conversion() {
        assert_eq!(decimal_to_le_bytes("256"), 256u64.to_le_bytes().to_vec());
        // 2^64 = 18446744073709551616
        assert_eq!(
            decimal_to_le_bytes("18446744073709551616"),
            vec![0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }
}
