//! A test server that closes an idle keep-alive connection the way a real one can race its
//! clients: the first request on a connection is answered and the connection kept open, and a
//! later request arriving after the connection sat idle longer than the server's keep-alive
//! timeout is read and then dropped without an answer. A real server closes on a timer, and a
//! client that sends just as the timer fires meets exactly that: its request went out, and the
//! connection closed before any answer ("connection closed before message completed"). Waiting
//! for the request makes the race happen every time instead of once in a while under load.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running [`start`]ed server.
pub(crate) struct ClosingServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    answered: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl ClosingServer {
    /// Requests answered.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Requests read and left unanswered because their connection had been idle too long.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Serves on a free loopback port, answering every request HTTP 200 with `body` as JSON, except
/// one whose connection had been idle for more than `keep_alive` since its previous answer.
pub(crate) async fn start(keep_alive: Duration, body: &'static str) -> ClosingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
    let server = ClosingServer {
        base: format!("http://{}", listener.local_addr().expect("bound")),
        answered: Arc::default(),
        dropped: Arc::default(),
        connections: Arc::default(),
    };
    let (answered, dropped, connections) = (
        server.answered.clone(),
        server.dropped.clone(),
        server.connections.clone(),
    );
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(
                socket,
                keep_alive,
                body,
                answered.clone(),
                dropped.clone(),
            ));
        }
    });
    server
}

async fn serve(
    mut socket: TcpStream,
    keep_alive: Duration,
    body: &'static str,
    answered: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) {
    let mut last_answer: Option<Instant> = None;
    loop {
        let Some(arrived) = read_request(&mut socket).await else {
            return; // the client closed the connection
        };
        if last_answer.is_some_and(|at| arrived.duration_since(at) > keep_alive) {
            dropped.fetch_add(1, Ordering::SeqCst);
            return; // closed with the request read and unanswered
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if socket.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        answered.fetch_add(1, Ordering::SeqCst);
        last_answer = Some(Instant::now());
    }
}

/// Reads one request (headers and a `Content-Length` body) and returns when its first byte
/// arrived; `None` when the connection ends first.
async fn read_request(socket: &mut TcpStream) -> Option<Instant> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut arrived = None;
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        arrived.get_or_insert_with(Instant::now);
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return arrived;
        }
    }
}
