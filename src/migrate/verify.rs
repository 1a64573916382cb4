//! Verification: the digest of a database's live documents, the full comparison of two
//! databases walked in id order, and the check of each migrated batch against what the
//! target then holds (see [`InlineCheck`]).

use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use super::note;
use crate::{DatabaseService, Document, Result, Rev, RevisionedDoc};

/// One side of a [`Verification`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Live documents.
    pub count: u64,
    /// Order-independent hash (hex) over (id, revision, canonical body) of the live documents.
    pub hash: String,
}

/// Both sides of one database compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// The source's digest.
    pub source: Digest,
    /// The target's digest.
    pub target: Digest,
    /// Whether both digests are equal.
    pub matches: bool,
    /// Ids only the source has (at most [`LISTED_IDS`]).
    pub missing_in_target: Vec<String>,
    /// Ids only the target has.
    pub extra_in_target: Vec<String>,
    /// Ids both have with another revision or body.
    pub different: Vec<String>,
}

/// A document's contribution to a digest: MD5 over its id, revision and canonical body
/// (keys sorted at every level), as a number, so digests add up in any order.
pub(crate) fn document_hash(doc: &Document) -> u128 {
    let body = doc
        .as_map()
        .iter()
        .filter(|(k, _)| *k != "_id" && *k != "_rev");
    digest(doc.id().unwrap_or(""), doc.rev().unwrap_or(""), false, body)
}

/// MD5 over id, revision, deletion flag (only when set, so live documents hash as
/// [`document_hash`] does) and canonical body, as a number.
pub(crate) fn hash_parts(id: &str, rev: &str, deleted: bool, body: &Map<String, Value>) -> u128 {
    digest(id, rev, deleted, body.iter())
}

fn digest<'a>(
    id: &str,
    rev: &str,
    deleted: bool,
    body: impl Iterator<Item = (&'a String, &'a Value)>,
) -> u128 {
    use md5::{Digest as _, Md5};
    let mut text = Vec::with_capacity(1024);
    text.extend_from_slice(id.as_bytes());
    text.push(0);
    text.extend_from_slice(rev.as_bytes());
    text.push(0);
    if deleted {
        text.extend_from_slice(b"deleted\0");
    }
    let mut attachments = None;
    let body: Vec<(&String, &Value)> = body
        .filter(|(key, value)| {
            let is_attachments = key.as_str() == "_attachments";
            if is_attachments {
                attachments = Some(*value);
            }
            !is_attachments
        })
        .collect();
    write_canonical_entries(body.into_iter(), &mut text);
    if let Some(Value::Object(atts)) = attachments {
        write_attachments(atts, &mut text);
    }
    u128::from_be_bytes(Md5::digest(&text).into())
}

/// Attachments as a digest sees them, whether a read shows them as stubs or with their data
/// inline: each name with its content type and digest (the MD5 of the stored bytes), sorted.
fn write_attachments(atts: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut names: Vec<&String> = atts.keys().collect();
    names.sort();
    out.extend_from_slice(b"\0attachments");
    for name in names {
        let field = |key: &str| atts[name].get(key).and_then(Value::as_str).unwrap_or("");
        for part in [name.as_str(), field("content_type"), field("digest")] {
            out.push(0);
            out.extend_from_slice(part.as_bytes());
        }
    }
}

/// Compact JSON with object keys sorted at every level, written without copying the value.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_entries(map.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars serialize infallibly into a Vec.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_canonical_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut Vec<u8>,
) {
    let mut entries: Vec<(&String, &Value)> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (n, (key, value)) in entries.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

/// The digest of one database's live documents (as [`verify_database`] computes it).
pub async fn database_digest(svc: &dyn DatabaseService, db: &str) -> Result<Digest> {
    let mut docs = svc.list_stream(db, crate::DEFAULT_PAGE_SIZE).boxed();
    let (mut count, mut hash) = (0u64, 0u128);
    while let Some(doc) = docs.next().await.transpose()? {
        count += 1;
        hash = hash.wrapping_add(document_hash(&doc));
    }
    Ok(Digest {
        count,
        hash: format!("{hash:032x}"),
    })
}

/// Compares a database on two providers (see [`Verification`]), walking both in id order
/// with bounded memory.
pub async fn verify_database(
    source: &dyn DatabaseService,
    target: &dyn DatabaseService,
    db: &str,
) -> Result<Verification> {
    let mut a = source.list_stream(db, crate::DEFAULT_PAGE_SIZE).boxed();
    let mut b = target.list_stream(db, crate::DEFAULT_PAGE_SIZE).boxed();
    let mut v = Verification::default();
    let (mut hash_a, mut hash_b) = (0u128, 0u128);
    let mut next_a = a.next().await.transpose()?;
    let mut next_b = b.next().await.transpose()?;
    loop {
        let order = match (&next_a, &next_b) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x
                .id()
                .unwrap_or("")
                .as_bytes()
                .cmp(y.id().unwrap_or("").as_bytes()),
        };
        match order {
            std::cmp::Ordering::Less => {
                let doc = next_a.take().unwrap_or_default();
                v.source.count += 1;
                hash_a = hash_a.wrapping_add(document_hash(&doc));
                note(&mut v.missing_in_target, doc.id().unwrap_or(""));
                next_a = a.next().await.transpose()?;
            }
            std::cmp::Ordering::Greater => {
                let doc = next_b.take().unwrap_or_default();
                v.target.count += 1;
                hash_b = hash_b.wrapping_add(document_hash(&doc));
                note(&mut v.extra_in_target, doc.id().unwrap_or(""));
                next_b = b.next().await.transpose()?;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (
                    next_a.take().unwrap_or_default(),
                    next_b.take().unwrap_or_default(),
                );
                let (hx, hy) = (document_hash(&x), document_hash(&y));
                v.source.count += 1;
                v.target.count += 1;
                hash_a = hash_a.wrapping_add(hx);
                hash_b = hash_b.wrapping_add(hy);
                if hx != hy {
                    note(&mut v.different, x.id().unwrap_or(""));
                }
                next_a = a.next().await.transpose()?;
                next_b = b.next().await.transpose()?;
            }
        }
    }
    v.source.hash = format!("{hash_a:032x}");
    v.target.hash = format!("{hash_b:032x}");
    v.matches = v.source == v.target;
    Ok(v)
}

/// What one batch of source documents must look like on the target once written: each
/// document's id, revision, deletion and hash, taken before the batch is written.
pub(crate) struct Expected(Vec<(String, Rev, bool, u128)>);

impl Expected {
    /// The expectations of the source winners of a batch about to be written.
    pub fn of(docs: &[&RevisionedDoc]) -> Self {
        Self(
            docs.iter()
                .map(|d| {
                    let hash = if d.deleted {
                        0
                    } else {
                        hash_parts(&d.id, &d.rev.to_string(), false, &d.body)
                    };
                    (d.id.clone(), d.rev, d.deleted, hash)
                })
                .collect(),
        )
    }
}

/// A verification built batch by batch while a fresh migration runs: each written batch is
/// read back from the target (one `get_many`, overlapped with the next batch's write) and
/// compared document by document, and the digests of both sides add up as they go. At the
/// end both sides' live document counts must equal what was checked, which also rules out
/// extra documents on the target and changes to the source during the run. Any difference
/// hands over to [`verify_database`], which walks both sides and lists the ids.
#[derive(Debug, Default)]
pub(crate) struct InlineCheck {
    source: (u64, u128),
    target: (u64, u128),
    /// Whether anything differed: the full walk then decides and lists the ids.
    differs: bool,
}

impl InlineCheck {
    /// Reads `expected`'s documents back from `target` and compares them.
    pub async fn check(
        &mut self,
        target: &dyn DatabaseService,
        db: &str,
        expected: Expected,
    ) -> Result<()> {
        let ids: Vec<String> = expected.0.iter().map(|(id, ..)| id.clone()).collect();
        let found = target.get_many(db, &ids).await?;
        for ((_, rev, deleted, hash), found) in expected.0.into_iter().zip(found) {
            if !deleted {
                self.source.0 += 1;
                self.source.1 = self.source.1.wrapping_add(hash);
            }
            match found {
                Ok(doc) => {
                    let got = document_hash(&doc);
                    self.target.0 += 1;
                    self.target.1 = self.target.1.wrapping_add(got);
                    let same_rev = doc.rev() == Some(rev.to_string().as_str());
                    self.differs |= deleted || !same_rev || got != hash;
                }
                Err(e) if e.is_not_found() => self.differs |= !deleted,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The verification when everything checked matches and both sides hold exactly the
    /// documents checked; `None` when the full walk has to decide.
    pub async fn finish(
        self,
        source: &dyn DatabaseService,
        target: &dyn DatabaseService,
        db: &str,
    ) -> Result<Option<Verification>> {
        if self.differs || self.source != self.target {
            return Ok(None);
        }
        let (source_info, target_info) =
            futures::join!(source.database_info(db), target.database_info(db));
        if source_info?.doc_count != self.source.0 || target_info?.doc_count != self.target.0 {
            return Ok(None);
        }
        let digest = |(count, hash): (u64, u128)| Digest {
            count,
            hash: format!("{hash:032x}"),
        };
        Ok(Some(Verification {
            source: digest(self.source),
            target: digest(self.target),
            matches: true,
            ..Verification::default()
        }))
    }
}
