//! A loopback TCP proxy that tests put between a provider and a genuine CouchDB to break
//! the connection on purpose: cut every open connection, refuse new ones for a while (a
//! server restart as the client sees it), or stall (forward nothing, keep the sockets open).
//!
//! It forwards bytes, nothing else: it never parses HTTP, so what the provider sees is what a
//! real network fault would show it.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; dropped, it stops accepting and cuts what it forwards.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`, to use as the provider's `COUCHDB_URL`.
    pub url: String,
    state: Arc<State>,
}

struct State {
    /// Bumped to cut every connection open at that moment.
    generation: watch::Sender<u64>,
    /// New connections are closed at once while set.
    refusing: AtomicBool,
    /// Nothing is forwarded while set (bytes wait in the kernel buffers).
    stalled: watch::Sender<bool>,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("bound address").port();
        let state = Arc::new(State {
            generation: watch::Sender::new(0),
            refusing: AtomicBool::new(false),
            stalled: watch::Sender::new(false),
            accepted: AtomicU64::new(0),
        });
        let upstream = upstream.to_owned();
        let accepting = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::Relaxed);
                if accepting.refusing.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                let state = Arc::clone(&accepting);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        forward(client, server, &state).await;
                    }
                });
            }
        });
        FaultProxy {
            url: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// Starts a proxy to the server at `url` (`http://host:port`).
    pub async fn to_url(url: &str) -> FaultProxy {
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("a URL with a host");
        let authority = authority.rsplit('@').next().expect("host after user-info");
        Self::start(authority).await
    }

    /// Cuts every connection open now (both directions closed at once).
    pub fn cut(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Refuses (accepts and closes at once) every new connection while `refusing`.
    pub fn refuse(&self, refusing: bool) {
        self.state.refusing.store(refusing, Ordering::Relaxed);
    }

    /// Stops forwarding (without closing anything) while `stalled`.
    pub fn stall(&self, stalled: bool) {
        self.state.stalled.send_replace(stalled);
    }

    /// Connections accepted so far (a reconnect shows as one more).
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.refuse(true);
        self.cut();
    }
}

/// Copies both ways until either side closes or the proxy cuts this connection.
async fn forward(client: TcpStream, server: TcpStream, state: &State) {
    let mut cut = state.generation.subscribe();
    cut.borrow_and_update();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = pump(&mut client_read, &mut server_write, state);
    let down = pump(&mut server_read, &mut client_write, state);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
}

/// Copies `from` to `to` until end of stream or an error, pausing while stalled.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    state: &State,
) {
    let mut stalled = state.stalled.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
