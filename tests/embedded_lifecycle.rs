//! Embedded-provider specifics the shared suite cannot express: reopening, the
//! single-process lock, reclaiming space, and bad paths.

use docstore::serde_json::json;
use docstore::{
    DatabaseService, Document, EmbeddedConfig, EmbeddedProvider, Error, Settings,
    get_database_service,
};

fn doc(value: docstore::serde_json::Value) -> Document {
    Document::from_value(value).unwrap()
}

#[tokio::test]
async fn reopen_after_clean_shutdown_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (rev_a, seq) = {
        let store = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
            .await
            .unwrap();
        let a = store
            .save("app", "a", doc(json!({"z": 1, "a": [1, 2]})))
            .await
            .unwrap();
        store.save("app", "b", doc(json!({}))).await.unwrap();
        store.delete("app", "b").await.unwrap();
        store
            .put_local("app", "cp", doc(json!({"at": "3"})))
            .await
            .unwrap();
        store.save("other", "x", doc(json!({}))).await.unwrap();
        let info = store.database_info("app").await.unwrap();
        (a.rev, info.update_seq)
    };
    let store = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(store.list_databases().await.unwrap(), ["app", "other"]);
    let a = store.get("app", "a").await.unwrap();
    assert_eq!(a.rev(), Some(rev_a.to_string().as_str()));
    let keys: Vec<&String> = a.as_map().keys().collect();
    assert_eq!(keys, ["_id", "_rev", "z", "a"]);
    assert!(store.get("app", "b").await.unwrap_err().is_not_found());
    assert_eq!(
        store.get_local("app", "cp").await.unwrap().get("at"),
        Some(&json!("3"))
    );
    let info = store.database_info("app").await.unwrap();
    assert_eq!((info.doc_count, info.doc_del_count), (1, 1));
    assert_eq!(info.update_seq, seq);
    // Writes continue the sequence and the revision history.
    let a2 = store.save("app", "a", doc(json!({"v": 2}))).await.unwrap();
    assert_eq!(a2.rev.generation(), 2);
    let changes = store.changes("app", Some(&seq), 10).await.unwrap();
    assert_eq!(changes.results.len(), 1);
    assert_eq!(changes.results[0].rev, a2.rev);
}

#[tokio::test]
async fn a_second_open_in_this_process_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no hang"
    );
    let text = err.to_string();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(text.contains("in use"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
}

#[tokio::test]
async fn a_second_process_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store");
    let first = EmbeddedProvider::open(EmbeddedConfig::new(&store_path))
        .await
        .unwrap();
    first.save("app", "a", doc(json!({}))).await.unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_docstore"))
        .args(["ls", "app"])
        .current_dir(dir.path())
        .env("DATABASE_PROVIDER", "embedded")
        .env("EMBEDDED_PATH", &store_path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(
        stderr.contains(&store_path.display().to_string()),
        "{stderr}"
    );
    // The first holder is unaffected.
    assert!(first.get("app", "a").await.is_ok());
}

#[tokio::test]
async fn deleting_a_database_frees_its_space_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
        .await
        .unwrap();
    store
        .save("keep", "k", doc(json!({"small": true})))
        .await
        .unwrap();
    for batch in 0..20 {
        // Random text, so compression cannot make the data vanish.
        let docs = (0..100)
            .map(|i| {
                let blob: String = std::iter::repeat_with(fastrand::alphanumeric)
                    .take(4096)
                    .collect();
                doc(json!({"_id": format!("d{batch}-{i}"), "blob": blob}))
            })
            .collect();
        for r in store.save_many("big", docs).await.unwrap() {
            r.unwrap();
        }
    }
    store.compact_store().await.unwrap();
    let full = store.disk_space().await.unwrap();
    assert!(
        full > 4_000_000,
        "8 MB of random text took only {full} bytes of tables"
    );
    store.delete_database("big").await.unwrap();
    store.compact_store().await.unwrap();
    let after = store.disk_space().await.unwrap();
    assert!(
        after < full / 2,
        "8 MB database deleted and compacted: {full} bytes of tables before, {after} after"
    );
    assert!(store.get("keep", "k").await.is_ok());
    assert!(store.list_all("big").await.unwrap().is_empty());
    // A re-created database starts empty, with fresh revisions.
    let w = store.save("big", "d0-0", doc(json!({}))).await.unwrap();
    assert_eq!(w.rev.generation(), 1);
    assert_eq!(store.database_info("big").await.unwrap().doc_count, 1);
}

#[tokio::test]
async fn an_unusable_path_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let bad = file.join("store");
    let err = get_database_service(&Settings::embedded(&bad))
        .await
        .unwrap_err();
    match &err {
        Error::Config { key, reason } => {
            assert_eq!(key, "EMBEDDED_PATH");
            assert!(reason.contains(&bad.display().to_string()), "{reason}");
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
}

/// Attachment bytes are stored once per content, shared by documents and revisions, and the
/// compaction drops what no revision holds any more; reopening keeps them.
#[tokio::test]
async fn attachments_are_shared_and_reclaimed() {
    use docstore::{AttachmentRead, NewAttachment};
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let store = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
        .await
        .unwrap();
    let upload = || NewAttachment::new("application/octet-stream", bytes.clone());
    let a = store
        .put_attachment("app", "a", "blob", None, upload())
        .await
        .unwrap();
    store
        .put_attachment("app", "b", "same", None, upload())
        .await
        .unwrap();
    assert_eq!(
        store.attachment_bytes("app").await.unwrap(),
        1_000_000,
        "stored once"
    );
    // An edit keeping the attachment by stub, then its removal: the old revision still holds
    // the bytes until compaction, and document "b" holds them after it.
    let mut edited = store.get("app", "a").await.unwrap();
    edited.insert("title", "kept");
    let kept = store.save("app", "a", edited).await.unwrap();
    assert!(kept.rev > a.rev);
    store
        .delete_attachment("app", "a", "blob", &kept.rev)
        .await
        .unwrap();
    store.compact("app").await.unwrap();
    assert_eq!(store.attachment_bytes("app").await.unwrap(), 1_000_000);
    store.delete("app", "b").await.unwrap();
    assert_eq!(
        store.attachment_bytes("app").await.unwrap(),
        1_000_000,
        "the deleted document's last revision is an ancestor until compaction"
    );
    store.compact("app").await.unwrap();
    assert_eq!(store.attachment_bytes("app").await.unwrap(), 0, "reclaimed");
    // What stays referenced survives a reopen.
    store
        .put_attachment(
            "app",
            "c",
            "text.txt",
            None,
            NewAttachment::new("text/plain", "hi"),
        )
        .await
        .unwrap();
    drop(store);
    let store = EmbeddedProvider::open(EmbeddedConfig::new(dir.path()))
        .await
        .unwrap();
    let text = store
        .get_attachment("app", "c", "text.txt", &AttachmentRead::default())
        .await
        .unwrap();
    assert_eq!(text.data.as_ref(), b"hi");
}
