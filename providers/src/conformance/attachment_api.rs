//! Attachments through the API, on every provider: standalone uploads and downloads, one-shot
//! and streamed, stubs kept across edits, shared content, compaction, and the typed errors
//! of bad attachments (nothing written). The recorded CouchDB scenarios are in
//! `attachments`.

use serde_json::json;

use super::{Kind, Service, doc, kind};
use crate::testing::{drop_db, unique_db};
use crate::{AttachmentRead, AttachmentUpload, ContentEncoding, GetOptions, NewAttachment, Rev};

/// Bytes of every value, across several 64 KiB chunks: a deterministic pseudo-random
/// sequence that does not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Standalone uploads and downloads round-trip bytes exactly (identity and compressed, with
/// the stored gzip when asked); a body edit keeps attachments by stub; the same bytes on two
/// documents have one digest; removing an attachment and compacting leave the others readable.
pub async fn attachments_round_trip_and_share(svc: &Service) {
    let db = unique_db("att-rt");
    let big = noise(300_000, 7);
    let first = svc
        .put_attachment(
            &db,
            "a",
            "big.bin",
            None,
            NewAttachment::new("image/png", big.clone()),
        )
        .await
        .unwrap();
    assert_eq!(first.rev.generation(), 1);
    let text = "line of text\n".repeat(5000);
    let second = svc
        .put_attachment(
            &db,
            "a",
            "notes.txt",
            Some(&first.rev),
            NewAttachment::new("text/plain; charset=utf-8", text.clone().into_bytes()),
        )
        .await
        .unwrap();
    let read = svc
        .get_attachment(&db, "a", "big.bin", &AttachmentRead::default())
        .await
        .unwrap();
    assert_eq!(read.data.as_ref(), &big[..]);
    assert_eq!(read.info.content_type, "image/png");
    assert_eq!((read.info.revpos, read.info.length), (1, 300_000));
    assert_eq!(read.encoding, ContentEncoding::Identity);
    let notes = svc
        .get_attachment(&db, "a", "notes.txt", &AttachmentRead::default())
        .await
        .unwrap();
    assert_eq!(notes.data.as_ref(), text.as_bytes());
    assert_eq!(notes.info.encoding, Some(ContentEncoding::Gzip));
    assert!(
        notes.info.encoded_length.unwrap() < 1000,
        "{:?}",
        notes.info
    );
    let stored = svc
        .get_attachment(
            &db,
            "a",
            "notes.txt",
            &AttachmentRead {
                rev: None,
                encoded: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(stored.encoding, ContentEncoding::Gzip);
    assert_eq!(Some(stored.data.len() as u64), notes.info.encoded_length);
    // The newest attachment comes first; a read shows stubs without encoding details.
    let current = svc.get(&db, "a").await.unwrap();
    assert_eq!(current.rev(), Some(second.rev.to_string().as_str()));
    let names: Vec<&String> = current
        .get("_attachments")
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(names, ["notes.txt", "big.bin"]);
    assert_eq!(
        current.get("_attachments").unwrap()["big.bin"],
        json!({"content_type": "image/png", "revpos": 1, "digest": read.info.digest,
               "length": 300_000, "stub": true})
    );
    // A body edit that sends the stubs back keeps them; the same bytes elsewhere share a digest.
    let mut edited = current.clone();
    edited.insert("title", "edited");
    let third = svc.save(&db, "a", edited).await.unwrap();
    let other = svc
        .put_attachment(
            &db,
            "b",
            "copy.bin",
            None,
            NewAttachment::new("image/png", big.clone()),
        )
        .await
        .unwrap();
    let copy = svc
        .get_attachment(&db, "b", "copy.bin", &AttachmentRead::default())
        .await
        .unwrap();
    assert_eq!(copy.info.digest, read.info.digest);
    // Removing one and compacting keeps what other revisions hold.
    let fourth = svc
        .delete_attachment(&db, "a", "big.bin", &third.rev)
        .await
        .unwrap();
    assert_eq!(fourth.rev.generation(), 4);
    assert_eq!(
        kind(
            &svc.get_attachment(&db, "a", "big.bin", &AttachmentRead::default())
                .await
        ),
        Kind::NotFound
    );
    svc.compact(&db).await.unwrap();
    let still = svc
        .get_attachment(&db, "b", "copy.bin", &AttachmentRead::default())
        .await
        .unwrap();
    assert_eq!(still.data.as_ref(), &big[..]);
    let kept = svc
        .get_attachment(&db, "a", "notes.txt", &AttachmentRead::default())
        .await
        .unwrap();
    assert_eq!(kept.data.as_ref(), text.as_bytes());
    assert_eq!(kept.info.revpos, 2);
    // Inline data and `attachments=true` round-trip too.
    let inline = svc
        .get_with(
            &db,
            "b",
            &GetOptions {
                attachments: true,
                ..GetOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(inline.rev(), Some(other.rev.to_string().as_str()));
    let mut copied = inline.clone();
    copied.remove("_rev");
    copied.remove("_id");
    let c = svc.save(&db, "c", copied).await.unwrap();
    assert_eq!(
        c.rev, other.rev,
        "same body, same attachment: CouchDB's same revision"
    );
    drop_db(svc, &db).await;
}

/// Bad attachments are typed errors that write nothing.
pub async fn attachment_bad_input_is_typed(svc: &Service) {
    let db = unique_db("att-bad");
    svc.save(&db, "seed", doc(json!({}))).await.unwrap();
    for (body, expected) in [
        (
            json!({"_attachments": {"a.txt": {"data": "!!!not base64"}}}),
            Kind::InvalidAttachment,
        ),
        (
            json!({"_attachments": {"_a.txt": {"data": "YQ=="}}}),
            Kind::InvalidAttachment,
        ),
        (
            json!({"_attachments": {"a.txt": {"content_type": "text/plain"}}}),
            Kind::InvalidAttachment,
        ),
        (
            json!({"_attachments": {"a.txt": {"stub": false}}}),
            Kind::InvalidAttachment,
        ),
        (
            json!({"_attachments": {"a.txt": {"stub": true}}}),
            Kind::MissingStub,
        ),
        (json!({"_attachments": 7}), Kind::InvalidDocument),
    ] {
        assert_eq!(
            kind(&svc.create(&db, "x", doc(body.clone())).await),
            expected,
            "{body}"
        );
        assert_eq!(
            kind(&svc.get(&db, "x").await),
            Kind::NotFound,
            "{body} wrote nothing"
        );
    }
    let upload = || NewAttachment::new("text/plain", b"abc".to_vec());
    assert_eq!(
        kind(&svc.put_attachment(&db, "x", "_a", None, upload()).await),
        Kind::InvalidAttachment
    );
    let damaged = NewAttachment {
        md5: Some([0; 16]),
        ..upload()
    };
    assert_eq!(
        kind(&svc.put_attachment(&db, "x", "a.txt", None, damaged).await),
        Kind::InvalidAttachment
    );
    assert_eq!(
        kind(&svc.get(&db, "x").await),
        Kind::NotFound,
        "a damaged upload wrote nothing"
    );
    let written = svc
        .put_attachment(&db, "x", "a.txt", None, upload())
        .await
        .unwrap();
    assert_eq!(
        kind(&svc.put_attachment(&db, "x", "b.txt", None, upload()).await),
        Kind::Conflict,
        "an upload without rev on a live document"
    );
    let stale = Rev::parse("1-00000000000000000000000000000000").unwrap();
    assert_eq!(
        kind(
            &svc.put_attachment(&db, "x", "b.txt", Some(&stale), upload())
                .await
        ),
        Kind::Conflict
    );
    assert_eq!(
        kind(
            &svc.delete_attachment(&db, "x", "nope.txt", &written.rev)
                .await
        ),
        Kind::NotFound
    );
    assert_eq!(
        kind(
            &svc.get_attachment(&db, "x", "nope.txt", &AttachmentRead::default())
                .await
        ),
        Kind::NotFound
    );
    // A stub naming what the revision edited does not hold, or another revpos: 412.
    let mut edit = svc.get(&db, "x").await.unwrap();
    edit.insert(
        "_attachments",
        json!({"a.txt": {"stub": true, "revpos": 9}}),
    );
    let refused = svc.save(&db, "x", edit).await;
    assert_eq!(kind(&refused), Kind::MissingStub);
    assert_eq!(refused.unwrap_err().http_status(), 412);
    drop_db(svc, &db).await;
}

/// A stream of `data` in pieces of uneven sizes.
fn pieces(data: Vec<u8>) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
    use futures::StreamExt;
    let data = bytes::Bytes::from(data);
    let mut cuts = Vec::new();
    let mut at = 0;
    let mut step = 1;
    while at < data.len() {
        let end = (at + step).min(data.len());
        cuts.push(data.slice(at..end));
        at = end;
        step = step * 3 % 100_003 + 17;
    }
    futures::stream::iter(cuts.into_iter().map(Ok)).boxed()
}

/// Streamed uploads and downloads give the bytes, stubs and revisions the one-shot calls
/// give; a stream that fails, or an MD5 that does not match, writes nothing.
pub async fn attachments_stream_in_pieces(svc: &Service) {
    use futures::{StreamExt, TryStreamExt};
    let db = unique_db("att-stream");
    let binary = noise(3_000_000, 11);
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i},").into_bytes())
        .collect();
    for (name, content_type, data) in [
        ("bin", "application/octet-stream", binary.clone()),
        ("csv", "text/csv", text.clone()),
    ] {
        let streamed = svc
            .put_attachment_stream(
                &db,
                &format!("s-{name}"),
                name,
                None,
                AttachmentUpload::new(content_type, pieces(data.clone())),
            )
            .await
            .unwrap();
        let whole = svc
            .put_attachment(
                &db,
                &format!("w-{name}"),
                name,
                None,
                NewAttachment::new(content_type, data.clone()),
            )
            .await
            .unwrap();
        assert_eq!(streamed.rev, whole.rev, "{name}: the same revision");
        let read = svc
            .get_attachment_stream(&db, &format!("s-{name}"), name, &AttachmentRead::default())
            .await
            .unwrap();
        let one_shot = svc
            .get_attachment(&db, &format!("w-{name}"), name, &AttachmentRead::default())
            .await
            .unwrap();
        assert_eq!(read.info, one_shot.info, "{name}: the same stub");
        assert_eq!(read.encoding, ContentEncoding::Identity);
        let got: Vec<bytes::Bytes> = read.body.try_collect().await.unwrap();
        assert_eq!(got.concat(), data, "{name}: the bytes");
        let stored = svc
            .get_attachment_stream(
                &db,
                &format!("s-{name}"),
                name,
                &AttachmentRead {
                    rev: None,
                    encoded: true,
                },
            )
            .await
            .unwrap();
        let encoded: Vec<bytes::Bytes> = stored.body.try_collect().await.unwrap();
        let encoded_len = encoded.iter().map(bytes::Bytes::len).sum::<usize>() as u64;
        assert_eq!(
            Some(encoded_len),
            read.info.encoded_length.or(Some(read.info.length))
        );
    }
    // A failing stream and a wrong MD5: nothing written, a typed error.
    let failing = futures::stream::iter(vec![
        Ok(bytes::Bytes::from(vec![1u8; 100_000])),
        Err(std::io::Error::other("the disk went away")),
    ])
    .boxed();
    let upload = AttachmentUpload::new("application/octet-stream", failing);
    assert_eq!(
        kind(
            &svc.put_attachment_stream(&db, "broken", "x", None, upload)
                .await
        ),
        Kind::InvalidAttachment
    );
    assert_eq!(kind(&svc.get(&db, "broken").await), Kind::NotFound);
    let mut upload = AttachmentUpload::new("application/octet-stream", pieces(binary.clone()));
    upload.md5 = Some([7; 16]);
    assert_eq!(
        kind(
            &svc.put_attachment_stream(&db, "damaged", "x", None, upload)
                .await
        ),
        Kind::InvalidAttachment
    );
    assert_eq!(kind(&svc.get(&db, "damaged").await), Kind::NotFound);
    drop_db(svc, &db).await;
}
