//! The `docstore` command-line interface: browse and edit documents of whichever provider the
//! settings (`config/default.toml`, `.env`, environment) select.
//!
//! Output is for people by default and JSON with `--json`, one value per command.

use std::io::Read;
use std::sync::Arc;

use docstore::migrate::MigrateOptions;
use docstore::replicate::ReplicateOptions;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use docstore::{
    DatabaseService, DatabaseServiceExt, Document, FindQuery, GetOptions, IndexStatus, Settings,
    get_database_service, serde_json,
};
use serde_json::{Value, json};

use crate::progress;

/// docstore: a document database with CouchDB semantics over memory, embedded or CouchDB.
#[derive(Debug, Parser)]
#[command(name = "docstore", version, about)]
pub struct Cli {
    /// Print JSON instead of human-readable output (and no progress bars).
    #[arg(long, global = true)]
    json: bool,
    /// More log output on standard error: -v info, -vv debug, -vvv trace (RUST_LOG when
    /// neither -v nor -q is given; warnings by default).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on standard error: no warnings, no progress.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// How progress shows: bars on a terminal, plain lines elsewhere, nothing with `--json`
    /// or `-q`.
    pub fn display(&self) -> progress::Display {
        progress::Display::detect(self.json, self.quiet)
    }

    /// Installs the log on standard error at the level `-q`, `-v` or `RUST_LOG` asks for,
    /// written above `bars`.
    pub fn init_logging(&self, bars: &progress::Bars) {
        progress::logging::init(self.quiet, self.verbose, bars.multi());
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List databases, or the documents of DB.
    Ls {
        /// A database to list the documents of.
        db: Option<String>,
    },
    /// Print a document.
    Get { db: String, id: String },
    /// Save a document from a JSON argument or from standard input (`-` or nothing).
    Put {
        db: String,
        id: String,
        /// The document as JSON; `-` or absent reads standard input.
        #[arg(value_name = "JSON")]
        body: Option<String>,
    },
    /// Delete a document.
    Rm { db: String, id: String },
    /// Attach FILE to document ID (created, empty, if missing) as a new revision.
    Attach {
        db: String,
        id: String,
        /// The file to attach; `-` reads standard input.
        file: std::path::PathBuf,
        /// The attachment's name; omitted, the file's name.
        #[arg(long)]
        name: Option<String>,
        /// Its MIME type; omitted, guessed from the name's extension
        /// (application/octet-stream when unknown).
        #[arg(long)]
        content_type: Option<String>,
        /// The revision to attach to; omitted, the current one.
        #[arg(long)]
        rev: Option<String>,
    },
    /// Write attachment NAME of document ID to a file, or to standard output.
    Attachment {
        db: String,
        id: String,
        name: String,
        /// The file to write; omitted or `-`, standard output.
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
        /// Read the attachment of this revision instead of the current one.
        #[arg(long)]
        rev: Option<String>,
    },
    /// Remove attachment NAME from document ID as a new revision.
    Detach {
        db: String,
        id: String,
        name: String,
        /// The revision to remove it from; omitted, the current one.
        #[arg(long)]
        rev: Option<String>,
    },
    /// Show a database's counts and update sequence.
    Info { db: String },
    /// Run a Mango query: a selector, or a whole `_find` body with `selector`, `fields`,
    /// `sort`, `limit`, `skip`. Prints the matching documents as JSON.
    Find {
        db: String,
        /// The query as JSON, e.g. '{"age": {"$gt": 30}}' or '{"selector": {}, "sort": ["age"]}'.
        #[arg(value_name = "QUERY")]
        query: String,
    },
    /// Create (or confirm) a JSON index over FIELDS, which a sorted query needs.
    Index {
        db: String,
        /// The index name.
        name: String,
        /// The indexed fields, in order (dotted paths allowed).
        #[arg(required = true)]
        fields: Vec<String>,
    },
    /// Copy every database (or --db ones) from one provider to another, keeping revisions;
    /// resumable, idempotent, verified at the end. A location is memory:, embedded:PATH or
    /// http(s)://user:password@host:port; omitted, the settings' provider.
    Migrate {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Only these databases (comma-separated).
        #[arg(long, value_delimiter = ',')]
        db: Vec<String>,
        /// Changes per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Continue from the last checkpoint (only what changed since the last run).
        #[arg(long)]
        incremental: bool,
        /// Report what would be created, updated, deleted or conflict; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// report (default), source-wins or target-wins.
        #[arg(long, default_value = "report")]
        on_conflict: String,
        /// Skip the verification that ends each database's copy (faster; not verified).
        #[arg(long)]
        no_verify: bool,
    },
    /// Replicate every database (or --db ones) from SOURCE to TARGET as CouchDB does: only
    /// missing revisions, whole revision trees, checkpoints on both sides (a re-run continues).
    /// Two-way sync is two runs. A location is memory:, embedded:PATH, a CouchDB URL, or
    /// "settings".
    Replicate {
        source: String,
        target: String,
        /// Keep following the source's changes until Ctrl-C.
        #[arg(long)]
        continuous: bool,
        /// Only these databases (comma-separated).
        #[arg(long, value_delimiter = ',')]
        db: Vec<String>,
        /// Only documents whose winner matches this Mango selector, e.g. '{"type": "order"}'.
        #[arg(long)]
        selector: Option<String>,
        /// Only these document ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        doc_ids: Vec<String>,
        /// Changes per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Fail instead of creating a missing target database.
        #[arg(long)]
        no_create_target: bool,
    },
    /// List the documents of DB that have conflicts, or show one document's: its winner, the
    /// other live leaves (`_conflicts`) and the deleted ones (`_deleted_conflicts`).
    Conflicts { db: String, id: Option<String> },
    /// Write a backup archive (zstd-compressed JSON lines) of every database (or --db ones).
    Backup {
        /// The archive to write.
        #[arg(long)]
        out: std::path::PathBuf,
        /// The location to back up; omitted, the settings' provider.
        #[arg(long)]
        from: Option<String>,
        /// Only these databases (comma-separated).
        #[arg(long, value_delimiter = ',')]
        db: Vec<String>,
    },
    /// Load a backup archive into a location, idempotently (a second run writes nothing).
    Restore {
        /// The archive to read.
        #[arg(long)]
        from: std::path::PathBuf,
        /// The location to restore into; omitted, the settings' provider.
        #[arg(long)]
        to: Option<String>,
        /// Report what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// report (default), source-wins or target-wins.
        #[arg(long, default_value = "report")]
        on_conflict: String,
    },
    /// Compare the databases of two locations (counts, hashes, differing ids). A location is
    /// memory:, embedded:PATH, a CouchDB URL, archive:FILE, or "settings".
    Verify {
        /// A location, or "settings" for the settings' provider.
        a: String,
        /// A location, or "settings".
        b: String,
        /// Only these databases (comma-separated).
        #[arg(long, value_delimiter = ',')]
        db: Vec<String>,
    },
    /// Show a database's changes feed.
    Changes {
        db: String,
        /// Continue after this sequence token.
        #[arg(long)]
        since: Option<String>,
        /// At most this many changes.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// Runs one command against the provider the settings select (or the locations given),
/// showing progress on `bars`.
pub async fn run(cli: Cli, bars: &progress::Bars) -> Result<()> {
    let settings = Settings::load()?;
    match cli.command {
        Command::Migrate {
            from,
            to,
            db,
            batch,
            incremental,
            dry_run,
            on_conflict,
            no_verify,
        } => {
            let options = MigrateOptions {
                databases: (!db.is_empty()).then_some(db),
                batch_size: batch,
                incremental,
                dry_run,
                verify: !no_verify,
                on_conflict: on_conflict.parse()?,
                ..MigrateOptions::default()
            };
            let source = open(&settings, from.as_deref())
                .await
                .context("the source")?;
            let target = open(&settings, to.as_deref()).await.context("the target")?;
            progress::migrate(&*source, &*target, options, bars, cli.json).await
        }
        Command::Replicate {
            source,
            target,
            continuous,
            db,
            selector,
            doc_ids,
            batch,
            no_create_target,
        } => {
            let selector = selector
                .map(|text| {
                    serde_json::from_str::<Value>(&text)
                        .with_context(|| format!("the selector is not JSON: {text}"))
                })
                .transpose()?;
            let options = ReplicateOptions {
                continuous,
                doc_ids: (!doc_ids.is_empty()).then_some(doc_ids),
                selector,
                create_target: !no_create_target,
                batch_size: batch,
                ..ReplicateOptions::default()
            };
            let from = side(&settings, &source).await.context("the source")?;
            let to = side(&settings, &target).await.context("the target")?;
            let (progress::Side::Service(from), progress::Side::Service(to)) = (from, to) else {
                bail!("replication runs between providers, not archives");
            };
            let only = (!db.is_empty()).then_some(db);
            progress::replicate(&*from, &*to, only, options, bars, cli.json).await
        }
        Command::Verify { a, b, db } => {
            let left = side(&settings, &a).await.context("the first location")?;
            let right = side(&settings, &b).await.context("the second location")?;
            progress::verify(&left, &right, db, bars, cli.json).await
        }
        Command::Backup { out, from, db } => {
            let source = open(&settings, from.as_deref())
                .await
                .context("the source")?;
            let only = (!db.is_empty()).then_some(db);
            progress::backup(&*source, &out, only, bars, cli.json).await
        }
        Command::Restore {
            from,
            to,
            dry_run,
            on_conflict,
        } => {
            let target = open(&settings, to.as_deref()).await.context("the target")?;
            let options = MigrateOptions {
                dry_run,
                on_conflict: on_conflict.parse()?,
                ..MigrateOptions::default()
            };
            progress::restore(&*target, &from, &options, bars, cli.json).await
        }
        command => {
            let svc = open(&settings, None).await?;
            execute(&*svc, command, cli.json).await
        }
    }
}

/// One side of `verify`: an archive (`archive:FILE`) or a service.
async fn side(settings: &Settings, location: &str) -> Result<progress::Side> {
    if let Some(path) = location.strip_prefix("archive:") {
        return Ok(progress::Side::Archive(path.into()));
    }
    let location = (location != "settings").then_some(location);
    Ok(progress::Side::Service(open(settings, location).await?))
}

/// The service at `location`, or the settings' provider.
async fn open(settings: &Settings, location: Option<&str>) -> Result<Arc<dyn DatabaseService>> {
    let settings = match location {
        Some(l) => settings.for_location(l)?,
        None => settings.clone(),
    };
    Ok(get_database_service(&settings).await?)
}

async fn execute(svc: &dyn DatabaseService, command: Command, as_json: bool) -> Result<()> {
    match command {
        Command::Ls { db: None } => {
            let names = svc.list_databases().await?;
            if as_json {
                print_json(&json!(names));
            } else {
                names.iter().for_each(|n| println!("{n}"));
            }
        }
        Command::Ls { db: Some(db) } => {
            use futures::TryStreamExt;
            let mut docs = svc.list_stream(&db, docstore::DEFAULT_PAGE_SIZE);
            let mut listed = Vec::new();
            while let Some(doc) = docs.try_next().await? {
                let (id, rev) = (doc.id().unwrap_or_default(), doc.rev().unwrap_or_default());
                let names: Vec<&String> = doc
                    .get("_attachments")
                    .and_then(Value::as_object)
                    .map(|atts| atts.keys().collect())
                    .unwrap_or_default();
                if as_json {
                    let mut row = json!({"id": id, "rev": rev});
                    if !names.is_empty() {
                        row["attachments"] = json!(names);
                    }
                    listed.push(row);
                } else if names.is_empty() {
                    println!("{id}\t{rev}");
                } else {
                    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
                    println!("{id}\t{rev}\t[{}]", names.join(", "));
                }
            }
            if as_json {
                print_json(&Value::Array(listed));
            }
        }
        Command::Get { db, id } => {
            let doc = svc.get(&db, &id).await?;
            print_json(&doc.into_value());
        }
        Command::Put { db, id, body } => {
            let text = match body.as_deref() {
                None | Some("-") => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("reading the document from standard input")?;
                    text
                }
                Some(text) => text.to_owned(),
            };
            let doc = Document::from_json(&text)
                .with_context(|| format!("the document given for {db}/{id}"))?;
            let written = svc.save(&db, &id, doc).await?;
            report_write(as_json, "saved", &written);
        }
        Command::Rm { db, id } => {
            let written = svc.delete(&db, &id).await?;
            report_write(as_json, "deleted", &written);
        }
        Command::Attach {
            db,
            id,
            file,
            name,
            content_type,
            rev,
        } => {
            let data = if file.as_os_str() == "-" {
                let mut data = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut data)
                    .context("reading the attachment from standard input")?;
                data
            } else {
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let name = match name {
                Some(name) => name,
                None => file
                    .file_name()
                    .filter(|_| file.as_os_str() != "-")
                    .map(|n| n.to_string_lossy().into_owned())
                    .context("name the attachment with --name when it comes from standard input")?,
            };
            let content_type = content_type.unwrap_or_else(|| guess_content_type(&name).into());
            let rev = match rev {
                Some(rev) => Some(parse_rev(&rev)?),
                None => current_rev(svc, &db, &id).await?,
            };
            let attachment = docstore::NewAttachment::new(content_type, data);
            let written = svc
                .put_attachment(&db, &id, &name, rev.as_ref(), attachment)
                .await?;
            report_write(as_json, &format!("attached {name} to"), &written);
        }
        Command::Attachment {
            db,
            id,
            name,
            out,
            rev,
        } => {
            let options = docstore::AttachmentRead {
                rev: rev.as_deref().map(parse_rev).transpose()?,
                encoded: false,
            };
            let attachment = svc.get_attachment(&db, &id, &name, &options).await?;
            match out.filter(|o| o.as_os_str() != "-") {
                Some(path) => {
                    std::fs::write(&path, &attachment.data)
                        .with_context(|| format!("writing {}", path.display()))?;
                    if as_json {
                        print_json(&serde_json::to_value(&attachment.info)?);
                    } else {
                        println!(
                            "wrote {name} ({}, {} bytes) to {}",
                            attachment.info.content_type,
                            attachment.data.len(),
                            path.display()
                        );
                    }
                }
                None => {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(&attachment.data)
                        .and_then(|()| stdout.flush())
                        .context("writing the attachment to standard output")?;
                }
            }
        }
        Command::Detach { db, id, name, rev } => {
            let rev = match rev {
                Some(rev) => parse_rev(&rev)?,
                None => current_rev(svc, &db, &id)
                    .await?
                    .with_context(|| format!("{db}/{id} does not exist"))?,
            };
            let written = svc.delete_attachment(&db, &id, &name, &rev).await?;
            report_write(as_json, &format!("removed {name} from"), &written);
        }
        Command::Info { db } => {
            let info = svc.database_info(&db).await?;
            if as_json {
                print_json(&serde_json::to_value(&info)?);
            } else {
                println!("name:          {}", info.name);
                println!("doc_count:     {}", info.doc_count);
                println!("doc_del_count: {}", info.doc_del_count);
                println!("update_seq:    {}", info.update_seq);
            }
        }
        Command::Find { db, query } => {
            let value: Value = serde_json::from_str(&query)
                .with_context(|| format!("the query is not JSON: {query}"))?;
            // A bare selector, or a _find body (an object with a "selector" key).
            let query = if value.get("selector").is_some() {
                FindQuery::from_json(&value)?
            } else {
                FindQuery::new(value)?
            };
            let docs = svc.find(&db, &query).await?;
            print_json(&Value::Array(
                docs.into_iter().map(Document::into_value).collect(),
            ));
        }
        Command::Index { db, name, fields } => {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            let status = svc.ensure_index(&db, &fields, &name).await?;
            let status = match status {
                IndexStatus::Created => "created",
                IndexStatus::Exists => "exists",
            };
            if as_json {
                print_json(&json!({"name": name, "result": status}));
            } else {
                println!("index {name} on {db}: {status}");
            }
        }
        Command::Conflicts { db, id: Some(id) } => {
            let options = GetOptions {
                conflicts: true,
                deleted_conflicts: true,
                ..GetOptions::default()
            };
            let winner = svc.get_with(&db, &id, &options).await?;
            let leaves = svc.live_leaves(&db, &id).await?;
            if as_json {
                print_json(&json!({
                    "winner": winner.rev(),
                    "conflicts": winner.get("_conflicts"),
                    "deleted_conflicts": winner.get("_deleted_conflicts"),
                    "live_leaves": leaves.into_iter().map(Document::into_value).collect::<Vec<_>>(),
                }));
            } else {
                println!("{id}: winner {}", winner.rev().unwrap_or("-"));
                for (label, key) in [
                    ("conflict", "_conflicts"),
                    ("deleted", "_deleted_conflicts"),
                ] {
                    for rev in winner
                        .get(key)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        println!("  {label}: {}", rev.as_str().unwrap_or(""));
                    }
                }
                for leaf in leaves {
                    println!("{}", serde_json::to_string(&leaf.into_value())?);
                }
            }
        }
        Command::Conflicts { db, id: None } => {
            let listed = conflicted(svc, &db).await?;
            if as_json {
                print_json(&Value::Array(listed));
            } else if listed.is_empty() {
                println!("{db}: no conflicts");
            } else {
                for doc in &listed {
                    println!("{}\t{}\t{}", doc["id"], doc["rev"], doc["conflicts"]);
                }
            }
        }
        Command::Migrate { .. }
        | Command::Replicate { .. }
        | Command::Verify { .. }
        | Command::Backup { .. }
        | Command::Restore { .. } => {
            bail!("this command opens its own locations")
        }
        Command::Changes { db, since, limit } => {
            if limit == 0 {
                bail!("--limit must be at least 1");
            }
            let page = svc.changes(&db, since.as_deref(), limit).await?;
            if as_json {
                print_json(&serde_json::to_value(&page)?);
            } else {
                for c in &page.results {
                    let deleted = if c.deleted { "\tdeleted" } else { "" };
                    println!("{}\t{}\t{}{deleted}", c.seq, c.id, c.rev);
                }
                println!("last_seq: {} (pending {})", page.last_seq, page.pending);
            }
        }
    }
    Ok(())
}

/// The documents of `db` with conflicts: the changes feed names those with more than one
/// leaf, and a read with `conflicts` keeps those with another live leaf.
async fn conflicted(svc: &dyn DatabaseService, db: &str) -> Result<Vec<Value>> {
    let options = GetOptions {
        conflicts: true,
        ..GetOptions::default()
    };
    let mut listed = Vec::new();
    let mut since: Option<String> = None;
    loop {
        let page = svc.changes(db, since.as_deref(), 1000).await?;
        for change in page.results.iter().filter(|c| !c.other_leaves.is_empty()) {
            match svc.get_with(db, &change.id, &options).await {
                Ok(doc) => {
                    if let Some(conflicts) = doc.get("_conflicts") {
                        listed.push(
                            json!({"id": change.id, "rev": doc.rev(), "conflicts": conflicts}),
                        );
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if page.results.is_empty() || page.pending == 0 {
            return Ok(listed);
        }
        since = Some(page.last_seq);
    }
}

/// A revision given on the command line.
fn parse_rev(text: &str) -> Result<docstore::Rev> {
    text.parse()
        .with_context(|| format!("{text:?} is not a revision (N-<32 hex digits>)"))
}

/// The current revision of a live document; `None` when it is missing or deleted.
async fn current_rev(
    svc: &dyn DatabaseService,
    db: &str,
    id: &str,
) -> Result<Option<docstore::Rev>> {
    match svc.get(db, id).await {
        Ok(doc) => Ok(doc.rev().map(parse_rev).transpose()?),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A MIME type for common file extensions; `application/octet-stream` otherwise.
fn guess_content_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn report_write(as_json: bool, verb: &str, w: &docstore::WriteResult) {
    if as_json {
        print_json(&json!({"id": w.id, "rev": w.rev}));
    } else {
        println!("{verb} {} at {}", w.id, w.rev);
    }
}

fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: could not print JSON: {e}"),
    }
}
