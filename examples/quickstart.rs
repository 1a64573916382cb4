//! The main job in a few lines: open the provider the settings select (the embedded store at
//! `./data/docstore` by default), save, update (watch the revision grow), list, and read the
//! changes feed. Run it twice: the second run finds the first run's data.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use docstore::serde_json::json;
use docstore::{DatabaseServiceExt, Document, Settings, get_database_service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::load()?;
    println!(
        "provider: {} ({})",
        settings.provider,
        settings.embedded_path.display()
    );
    let db = get_database_service(&settings).await?;

    match db.get("quickstart", "counter").await {
        Ok(doc) => println!(
            "found data from an earlier run: counter at runs={} rev={}",
            doc.get("runs").unwrap_or(&json!(null)),
            doc.rev().unwrap_or("?")
        ),
        Err(e) if e.is_not_found() => {
            println!("first run: no data yet");
            let mut doc = Document::new();
            doc.insert("runs", 0);
            let w = db.save("quickstart", "counter", doc).await?;
            println!("saved counter          rev={}", w.rev);
        }
        Err(e) => return Err(e.into()),
    }

    // Read-modify-write with automatic retry on conflict.
    let w = db
        .update("quickstart", "counter", |doc| {
            let runs = doc.get("runs").and_then(|v| v.as_u64()).unwrap_or(0);
            doc.insert("runs", runs + 1);
            Ok(())
        })
        .await?;
    println!(
        "updated counter        rev={}  (generation {})",
        w.rev,
        w.rev.generation()
    );

    // A save without _rev is an upsert: docstore fetches the current revision itself.
    let note = Document::from_value(json!({"text": "hello from docstore", "tags": ["demo"]}))?;
    let w = db.save("quickstart", "note", note).await?;
    println!("saved note             rev={}", w.rev);

    println!("documents in quickstart:");
    for doc in db.list_all("quickstart").await? {
        println!(
            "  {:<8} {}",
            doc.id().unwrap_or("?"),
            doc.rev().unwrap_or("?")
        );
    }

    let changes = db.changes("quickstart", None, 100).await?;
    println!("changes feed (latest change per document):");
    for c in &changes.results {
        let deleted = if c.deleted { " deleted" } else { "" };
        println!("  seq {:<4} {:<8} {}{deleted}", c.seq, c.id, c.rev);
    }
    let info = db.database_info("quickstart").await?;
    println!(
        "database quickstart: {} documents, update_seq {}",
        info.doc_count, info.update_seq
    );
    Ok(())
}
