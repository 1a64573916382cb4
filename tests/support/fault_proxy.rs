//! A loopback TCP proxy that tests put between a provider and a genuine CouchDB to break
//! the connection on purpose: cut every open connection, refuse new ones for a while (a
//! server restart as the client sees it), or stall (forward nothing, keep the sockets open).
//!
//! It forwards bytes. Only for a [`Fault`] queued with [`FaultProxy::inject`] does it read
//! the HTTP request's head (to find where the request ends) and act on the connection's one
//! exchange: a client that opens a connection per request (`max_idle_connections = 0`)
//! then meets each fault on exactly one request.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Faults for the next connections, one each, in order.
    faults: Mutex<VecDeque<Fault>>,
}

/// What happens to one connection's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Closed before anything is forwarded: the server never sees the request.
    DropBeforeForwarding,
    /// The request reaches the server, which answers; the client gets no answer, only a
    /// closed connection (a write's outcome is unknown to it).
    DropAfterForwarding,
    /// Answered with this status (and a CouchDB-like JSON error) without forwarding.
    Answer(u16),
    /// Forwarded; the answer is cut after this many bytes.
    TruncateAnswer(usize),
    /// Forwarded; the answer is held back this long first.
    DelayAnswer(Duration),
    /// Nothing is read from the client (nor forwarded) for this long: a server that stops
    /// reading.
    StopReading(Duration),
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
            faults: Mutex::new(VecDeque::new()),
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
                let fault = accepting.faults.lock().expect("faults").pop_front();
                tokio::spawn(async move {
                    match fault {
                        None => {
                            if let Ok(server) = TcpStream::connect(&upstream).await {
                                forward(client, server, &state).await;
                            }
                        }
                        Some(fault) => faulty_exchange(client, &upstream, fault).await,
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

    /// Queues `fault` for the next connection accepted.
    pub fn inject(&self, fault: Fault) {
        self.state.faults.lock().expect("faults").push_back(fault);
    }

    /// Faults queued and not yet met.
    pub fn faults_pending(&self) -> usize {
        self.state.faults.lock().expect("faults").len()
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

/// Reads one HTTP request (head and `Content-Length` body) from `client`; `None` if the
/// client closed first.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = client.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = client.read(&mut buf).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&buf[..n]);
    }
    Some(request)
}

/// One exchange under `fault`; the connection is closed after it.
async fn faulty_exchange(mut client: TcpStream, upstream: &str, fault: Fault) {
    if let Fault::StopReading(pause) = fault {
        tokio::time::sleep(pause).await;
        return;
    }
    let Some(request) = read_request(&mut client).await else {
        return;
    };
    match fault {
        Fault::DropBeforeForwarding => return,
        Fault::Answer(status) => {
            let body =
                format!(r#"{{"error":"injected","reason":"fault proxy answered {status}"}}"#);
            let answer = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
            return;
        }
        _ => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&request).await.is_err() {
        return;
    }
    // The server's answer, read until it closes or goes quiet (keep-alive).
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let wait = if answer.is_empty() { 30_000 } else { 200 };
        match tokio::time::timeout(Duration::from_millis(wait), server.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    match fault {
        Fault::DropAfterForwarding => {}
        Fault::TruncateAnswer(bytes) => {
            let _ = client.write_all(&answer[..bytes.min(answer.len())]).await;
        }
        Fault::DelayAnswer(delay) => {
            tokio::time::sleep(delay).await;
            let _ = client.write_all(&answer).await;
        }
        _ => {}
    }
}
