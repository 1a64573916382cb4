//! CouchDB over HTTPS with a private CA, against the genuine server behind a TLS front this
//! test runs itself (rustls with ring, a CA and a server certificate for `localhost` made
//! by rcgen; no OpenSSL anywhere):
//!
//! - with `COUCHDB_CA_FILE` naming the CA, the provider works over `https` (documents and
//!   a live changes stream);
//! - a wrong CA, the platform's roots, or a host name the certificate does not name fail
//!   at connect with `Unavailable` saying the TLS handshake failed and what to check, at
//!   once (a refused certificate is not retried);
//! - a CA file that is missing or holds no certificate is a `Config` error naming
//!   `COUCHDB_CA_FILE`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use docstore::serde_json::json;
use docstore::{CouchDbConfig, CouchDbProvider, DatabaseService, Document, Error, WatchOptions};
use docstore_providers::testing::unique_db;
use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

/// A CA and its PEM.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn authority() -> Authority {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "docstore test CA");
    let cert = params.self_signed(&key).expect("CA certificate");
    Authority { cert, key }
}

/// A TLS front on a free loopback port presenting a `localhost` certificate signed by `ca`,
/// forwarding each connection to the genuine server; returns its port.
async fn tls_front(ca: &Authority) -> u16 {
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("server certificate");
    let chain = vec![cert.der().clone()];
    let private = pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .expect("server TLS config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let upstream = support::couchdb()
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return; // the client refused our certificate
                };
                if let Ok(mut server) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                }
            });
        }
    });
    port
}

fn config(url: String, ca_file: Option<std::path::PathBuf>) -> CouchDbConfig {
    let server = support::couchdb();
    let mut config = CouchDbConfig::new(url);
    config.user = Some(server.user.clone());
    config.password = Some(docstore::Secret::new(&server.password));
    config.ca_file = ca_file;
    config
}

fn write_pem(dir: &tempfile::TempDir, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}

/// A connect that must fail at the handshake, quickly and saying so.
async fn refused(config: CouchDbConfig, why: &str) {
    let started = Instant::now();
    match CouchDbProvider::connect(config).await {
        Err(Error::Unavailable { reason }) => {
            assert!(reason.contains("TLS handshake failed"), "{why}: {reason}");
            assert!(
                reason.contains("COUCHDB_CA_FILE"),
                "{why}: says what to check: {reason}"
            );
        }
        other => panic!("{why}: expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{why}: a refused certificate is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    let ca = authority();
    let port = tls_front(&ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write_pem(&dir, "ca.pem", &ca.cert.pem());
    let url = format!("https://localhost:{port}");

    let couch = CouchDbProvider::connect(config(url.clone(), Some(ca_file.clone())))
        .await
        .expect("https with the private CA");
    let db = unique_db("tls");
    let mut changes = {
        couch
            .save(
                &db,
                "seed",
                Document::from_value(json!({})).expect("object"),
            )
            .await
            .expect("save over https");
        couch.watch(&db, WatchOptions::new()).await.expect("watch")
    };
    let written = couch
        .save(
            &db,
            "a",
            Document::from_value(json!({"over": "tls"})).expect("object"),
        )
        .await
        .expect("save over https");
    let read = couch.get(&db, "a").await.expect("read over https");
    assert_eq!(read.rev(), Some(written.rev.to_string().as_str()));
    let change = tokio::time::timeout(Duration::from_secs(30), changes.next())
        .await
        .expect("a change in time")
        .expect("stream open")
        .expect("a change");
    assert_eq!(change.change.id, "a");
    couch.delete_database(&db).await.expect("drop");

    let other = authority();
    let wrong = write_pem(&dir, "other.pem", &other.cert.pem());
    refused(
        config(url.clone(), Some(wrong)),
        "a CA that did not sign it",
    )
    .await;
    refused(config(url, None), "the platform's roots").await;
    // The certificate names localhost, not 127.0.0.1.
    refused(
        config(format!("https://127.0.0.1:{port}"), Some(ca_file)),
        "a host name the certificate does not name",
    )
    .await;
}

#[tokio::test]
async fn a_bad_ca_file_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let not_pem = write_pem(&dir, "not.pem", "this is not a certificate\n");
    for path in [missing, not_pem] {
        let result =
            CouchDbProvider::connect(config("https://localhost:1".into(), Some(path.clone())))
                .await;
        match result {
            Err(Error::Config { key, reason }) => {
                assert_eq!(key, "COUCHDB_CA_FILE");
                assert!(reason.contains(&path.display().to_string()), "{reason}");
            }
            other => panic!("{}: expected a Config error, got {other:?}", path.display()),
        }
    }
}
