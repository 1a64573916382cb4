//! Backups: any provider streamed into a self-describing archive, restored into any
//! provider with the migration's idempotent writes, and compared with [`archive_digests`].
//!
//! # Format
//!
//! A zstd-compressed stream of JSON lines:
//!
//! ```text
//! {"format":"docstore-backup","version":3,"source":"embedded","created_unix":1795315732}
//! {"database":"agents"}
//! {"id":"a1","rev":"3-…","deleted":false,"body":{…},"history":["2-…","1-…"]}   a document's winner
//! {"id":"a1","rev":"2-…","deleted":false,"body":{…},"history":["1-…"],"winner":false}   its other leaves
//! {"end":"agents","count":2,"hash":"…"}                    count and hash of that database's lines
//! {"complete":true,"databases":1}
//! ```
//!
//! Every leaf of every document is a line (its winner first, the others marked
//! `"winner":false`), deletions too, with the revision's known ancestors, newest first
//! (`history`, left out when empty): a restore rebuilds the same revision trees (conflicts and
//! deleted branches included) and extends what the target has without new branches. A body
//! with attachments carries them in `_attachments` with their data inline (base64), as
//! CouchDB's `_bulk_docs` takes them (version 3). Version 1 archives (written before trees
//! were kept: one line per document, its winner) and version 2 (before attachments) still
//! restore. The trailer hash is the order-independent sum of MD5 over (id, rev, deleted,
//! canonical body) of the database's lines. A stream that ends early (no trailer or no final line,
//! or a cut zstd frame) is truncated; a line that is not what the format expects, a trailer
//! whose count or hash disagrees, or a failed zstd checksum, is corrupt. Both are
//! [`Error::Storage`] naming the database and line. Writing streams one change-feed page at a
//! time, so memory stays bounded whatever the database size. A restore reads the archive
//! twice: once to check it, then to apply the intact database sections in batches (a
//! damaged section is never applied in part).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::migrate::{self, DatabaseReport, Digest, MigrateOptions, MigrationHook};
use crate::replicate::{BatchHook, engine};
use crate::{DatabaseService, Document, Error, Result, Rev, RevisionedDoc};

const FORMAT: &str = "docstore-backup";
/// The version written; every version up to it reads.
const VERSION: u64 = 3;

/// What [`backup`] wrote, per database.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupReport {
    /// (database, documents written, trailer hash), in name order.
    pub databases: Vec<(String, u64, String)>,
}

/// What [`restore`] applied. Restores are idempotent: running one again (after fixing the
/// archive) applies only what is missing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    /// One report per database section read, in archive order; `complete` is false for a
    /// section the restore stopped in (its counts say what was applied before that).
    pub databases: Vec<DatabaseReport>,
    /// Why the restore stopped early (truncated or corrupt archive), naming database and line.
    pub error: Option<String>,
}

impl RestoreReport {
    /// True when the whole archive was applied without failures.
    pub fn is_success(&self) -> bool {
        self.error.is_none()
            && self
                .databases
                .iter()
                .all(|d| d.complete && d.failed.is_empty() && d.conflicts == d.resolved)
    }
}

fn io_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage {
        reason: format!("{what} {}: {e}", path.display()),
    }
}

/// A record's contribution to a trailer hash.
fn record_hash(doc: &RevisionedDoc) -> u128 {
    line_hash(&doc.id, &doc.rev.to_string(), doc.deleted, &doc.body)
}

/// A document line's contribution to its database's trailer hash: MD5 over id, revision,
/// deletion and canonical body, as a number (the trailer's hash is the wrapping sum).
pub fn line_hash(id: &str, rev: &str, deleted: bool, body: &Map<String, Value>) -> u128 {
    migrate::hash_parts(id, rev, deleted, body)
}

fn record_line(doc: &RevisionedDoc, winner: bool) -> Value {
    let mut line =
        json!({"id": doc.id, "rev": doc.rev.to_string(), "deleted": doc.deleted, "body": doc.body});
    if !doc.history.is_empty() {
        line["history"] = doc.history.iter().map(|r| r.to_string()).collect();
    }
    if !winner {
        line["winner"] = Value::Bool(false);
    }
    line
}

/// Streams `databases` (all of the source's if `None`) into a new archive at `path`.
pub async fn backup(
    source: &dyn DatabaseService,
    path: &Path,
    databases: Option<Vec<String>>,
    batch_size: usize,
) -> Result<BackupReport> {
    let mut names = match databases {
        Some(names) => names,
        None => source.list_databases().await?,
    };
    names.sort();
    names.dedup();
    let file = File::create(path).map_err(|e| io_error(path, "cannot create", e))?;
    let mut out = zstd::Encoder::new(BufWriter::new(file), 3)
        .map_err(|e| io_error(path, "cannot compress into", e))?;
    out.include_checksum(true)
        .map_err(|e| io_error(path, "cannot compress into", e))?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut write = |value: &Value| -> Result<()> {
        serde_json::to_writer(&mut out, value).map_err(|e| io_error(path, "cannot write", e))?;
        out.write_all(b"\n")
            .map_err(|e| io_error(path, "cannot write", e))
    };
    write(
        &json!({"format": FORMAT, "version": VERSION, "source": source.provider_name(), "created_unix": created}),
    )?;
    let mut report = BackupReport::default();
    for db in &names {
        write(&json!({ "database": db }))?;
        let (mut count, mut hash) = (0u64, 0u128);
        let mut since: Option<String> = None;
        while let Some(batch) =
            engine::read_leaves(source, db, since.as_deref(), batch_size.max(1)).await?
        {
            for (doc, winner) in &batch.docs {
                write(&record_line(doc, *winner))?;
                count += 1;
                hash = hash.wrapping_add(record_hash(doc));
            }
            since = Some(batch.last_seq);
            if batch.pending == 0 {
                break;
            }
        }
        let hash = format!("{hash:032x}");
        write(&json!({"end": db, "count": count, "hash": hash}))?;
        report.databases.push((db.clone(), count, hash));
    }
    write(&json!({"complete": true, "databases": names.len()}))?;
    out.finish()
        .and_then(|mut w| w.flush())
        .map_err(|e| io_error(path, "cannot finish", e))?;
    Ok(report)
}

/// One item of an archive, as read.
enum Item {
    Database(String),
    /// A leaf, and whether it is its document's winner.
    Doc(RevisionedDoc, bool),
    End {
        db: String,
        count: u64,
        hash: String,
    },
    Complete,
}

/// Reads an archive line by line, checking its structure; errors name database and line.
struct Reader {
    lines: std::io::Lines<BufReader<zstd::Decoder<'static, BufReader<File>>>>,
    line: u64,
    db: Option<String>,
    path: String,
}

impl Reader {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| io_error(path, "cannot open", e))?;
        let decoder =
            zstd::Decoder::new(file).map_err(|e| io_error(path, "not a zstd archive:", e))?;
        let mut reader = Self {
            lines: BufReader::new(decoder).lines(),
            line: 0,
            db: None,
            path: path.display().to_string(),
        };
        let header = reader
            .next_value()?
            .ok_or_else(|| reader.fail("empty archive"))?;
        if header["format"] != FORMAT {
            return Err(reader.fail("not a docstore backup (no docstore-backup header)"));
        }
        if !header["version"]
            .as_u64()
            .is_some_and(|v| (1..=VERSION).contains(&v))
        {
            return Err(reader.fail(&format!(
                "archive format version {} is not supported (this docstore reads {VERSION})",
                header["version"]
            )));
        }
        Ok(reader)
    }

    fn fail(&self, what: &str) -> Error {
        let place = match &self.db {
            Some(db) => format!("database {db:?}, line {}", self.line),
            None => format!("line {}", self.line),
        };
        Error::Storage {
            reason: format!("backup {} is damaged at {place}: {what}", self.path),
        }
    }

    fn next_value(&mut self) -> Result<Option<Value>> {
        let Some(line) = self.lines.next() else {
            return Ok(None);
        };
        self.line += 1;
        let line =
            line.map_err(|e| self.fail(&format!("unreadable ({e}); truncated or corrupt")))?;
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| self.fail(&format!("not a JSON line ({e})")))
    }

    fn next_item(&mut self) -> Result<Item> {
        let value = self
            .next_value()?
            .ok_or_else(|| self.fail("the archive ends early (truncated)"))?;
        let item = if let Some(db) = value.get("database").and_then(Value::as_str) {
            Item::Database(db.to_owned())
        } else if let Some(id) = value.get("id").and_then(Value::as_str) {
            let rev: Rev = value["rev"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| self.fail("a document line without a valid rev"))?;
            let body = match &value["body"] {
                Value::Object(map) => map.clone(),
                _ => return Err(self.fail("a document line without a body object")),
            };
            let history = match &value["history"] {
                Value::Null => Vec::new(),
                Value::Array(revs) => revs
                    .iter()
                    .map(|r| r.as_str().and_then(|r| r.parse().ok()))
                    .collect::<Option<Vec<Rev>>>()
                    .ok_or_else(|| self.fail("a document line with an invalid history"))?,
                _ => return Err(self.fail("a document line with an invalid history")),
            };
            Item::Doc(
                RevisionedDoc {
                    id: id.to_owned(),
                    rev,
                    deleted: value["deleted"] == json!(true),
                    body,
                    history,
                },
                value.get("winner") != Some(&Value::Bool(false)),
            )
        } else if let Some(db) = value.get("end").and_then(Value::as_str) {
            Item::End {
                db: db.to_owned(),
                count: value["count"].as_u64().unwrap_or(u64::MAX),
                hash: value["hash"].as_str().unwrap_or("").to_owned(),
            }
        } else if value.get("complete") == Some(&json!(true)) {
            Item::Complete
        } else {
            return Err(self.fail("a line that is none of database, document, end, complete"));
        };
        Ok(item)
    }
}

/// Checks one database section's trailer against what was read.
fn check_trailer(
    reader: &Reader,
    db: &str,
    (end_db, count, hash): (&str, u64, &str),
    (seen, sum): (u64, u128),
) -> Result<()> {
    if end_db != db {
        return Err(reader.fail(&format!("the trailer closes {end_db:?}, not {db:?}")));
    }
    if count != seen || hash != format!("{sum:032x}") {
        return Err(reader.fail(&format!(
            "the trailer says {count} documents (hash {hash}) but the section holds {seen} (hash {sum:032x})"
        )));
    }
    Ok(())
}

/// Restores an archive into `target` with the migration's writes (see [`MigrateOptions`]:
/// batch size, dry run, conflict policy). A damaged archive stops the restore where the
/// damage is; the report says what was applied up to there.
pub async fn restore(
    target: &dyn DatabaseService,
    path: &Path,
    options: &MigrateOptions,
) -> Result<RestoreReport> {
    // First the whole archive is checked, so a damaged section is never applied in part:
    // the sections before the damage are applied, the damaged one and the rest are not.
    let (intact, damage) = match archive_digests(path) {
        Ok(all) => (all.len(), None),
        Err(e) => (sections_before_damage(path)?, Some(e.to_string())),
    };
    let mut reader = Reader::open(path)?;
    let mut report = RestoreReport::default();
    if let Err(e) = restore_items(target, &mut reader, options, &mut report, intact).await {
        report.error = Some(e.to_string());
    }
    if report.error.is_none() {
        report.error = damage;
    }
    Ok(report)
}

/// How many whole, intact database sections a damaged archive starts with.
fn sections_before_damage(path: &Path) -> Result<usize> {
    let mut reader = Reader::open(path)?;
    let mut intact = 0;
    loop {
        let Ok(Item::Database(db)) = reader.next_item() else {
            return Ok(intact);
        };
        reader.db = Some(db.clone());
        let (mut seen, mut sum) = (0u64, 0u128);
        loop {
            match reader.next_item() {
                Ok(Item::Doc(doc, _)) => {
                    seen += 1;
                    sum = sum.wrapping_add(record_hash(&doc));
                }
                Ok(Item::End {
                    db: end_db,
                    count,
                    hash,
                }) if check_trailer(&reader, &db, (&end_db, count, &hash), (seen, sum)).is_ok() => {
                    intact += 1;
                    break;
                }
                _ => return Ok(intact),
            }
        }
    }
}

/// Applies the first `sections` database sections of an archive checked beforehand.
async fn restore_items(
    target: &dyn DatabaseService,
    reader: &mut Reader,
    options: &MigrateOptions,
    report: &mut RestoreReport,
    sections: usize,
) -> Result<()> {
    loop {
        if report.databases.len() == sections {
            return Ok(());
        }
        match reader.next_item()? {
            Item::Complete => return Ok(()),
            Item::Database(db) => {
                reader.db = Some(db.clone());
                let mut current = DatabaseReport {
                    db: db.clone(),
                    ..DatabaseReport::default()
                };
                let outcome = restore_section(target, reader, options, &db, &mut current).await;
                report.databases.push(current);
                outcome?;
                reader.db = None;
            }
            _ => return Err(reader.fail("a document or trailer outside a database section")),
        }
    }
}

/// Applies one database section, batch by batch, into `current`.
async fn restore_section(
    target: &dyn DatabaseService,
    reader: &mut Reader,
    options: &MigrateOptions,
    db: &str,
    current: &mut DatabaseReport,
) -> Result<()> {
    let (mut seen, mut sum) = (0u64, 0u128);
    let mut batch = Vec::new();
    loop {
        let end = match reader.next_item()? {
            Item::Doc(doc, winner) => {
                seen += 1;
                sum = sum.wrapping_add(record_hash(&doc));
                // A document's leaves stay in one batch.
                if winner && batch.len() >= options.batch_size.max(1) {
                    apply_section_batch(target, db, std::mem::take(&mut batch), options, current)
                        .await?;
                }
                batch.push((doc, winner));
                false
            }
            Item::End {
                db: end_db,
                count,
                hash,
            } => {
                check_trailer(reader, db, (&end_db, count, &hash), (seen, sum))?;
                true
            }
            _ => return Err(reader.fail("a database section without its trailer")),
        };
        if end {
            apply_section_batch(target, db, std::mem::take(&mut batch), options, current).await?;
            current.complete = true;
            return Ok(());
        }
    }
}

/// Writes one batch of an archive's leaves with the migration's classification and policy.
async fn apply_section_batch(
    target: &dyn DatabaseService,
    db: &str,
    docs: Vec<(RevisionedDoc, bool)>,
    options: &MigrateOptions,
    current: &mut DatabaseReport,
) -> Result<()> {
    if docs.is_empty() {
        return Ok(());
    }
    let mut batch = engine::batch_of(target, db, docs).await?;
    current.read += batch.read;
    let mut hook = MigrationHook::new(options, current, None);
    hook.before_write(&batch);
    let docs = std::mem::take(&mut batch.docs);
    if !options.dry_run {
        let (_, failed) = engine::write(target, db, docs).await?;
        hook.failed(&failed);
    }
    hook.after_batch(target, db, &batch).await
}

/// Per database, the digest of an archive's live documents (count and the same hash
/// [`migrate::verify_database`] computes), after checking every trailer.
pub fn archive_digests(path: &Path) -> Result<Vec<(String, Digest)>> {
    let mut reader = Reader::open(path)?;
    let mut out = Vec::new();
    loop {
        match reader.next_item()? {
            Item::Complete => return Ok(out),
            Item::Database(db) => {
                reader.db = Some(db.clone());
                let (mut seen, mut sum) = (0u64, 0u128);
                let (mut live, mut live_hash) = (0u64, 0u128);
                loop {
                    match reader.next_item()? {
                        Item::Doc(doc, winner) => {
                            seen += 1;
                            sum = sum.wrapping_add(record_hash(&doc));
                            if winner && !doc.deleted {
                                live += 1;
                                let mut map = Map::new();
                                map.insert("_id".into(), doc.id.clone().into());
                                map.insert("_rev".into(), doc.rev.to_string().into());
                                map.extend(doc.body);
                                live_hash = live_hash
                                    .wrapping_add(migrate::document_hash(&Document::from(map)));
                            }
                        }
                        Item::End {
                            db: end_db,
                            count,
                            hash,
                        } => {
                            check_trailer(&reader, &db, (&end_db, count, &hash), (seen, sum))?;
                            break;
                        }
                        _ => return Err(reader.fail("a database section without its trailer")),
                    }
                }
                out.push((
                    db,
                    Digest {
                        count: live,
                        hash: format!("{live_hash:032x}"),
                    },
                ));
                reader.db = None;
            }
            _ => return Err(reader.fail("a document or trailer outside a database section")),
        }
    }
}
