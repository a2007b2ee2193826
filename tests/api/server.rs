//! The HTTP servers do not wait for ever on a slow or stalled client (docs/operations.md "HTTP
//! timeouts"): a connection whose headers do not arrive in time is closed, a body that does not
//! is answered 408 with iamport's envelope, and a body over 256 KiB gets the 413 envelope. Raw
//! TCP, since an HTTP client cannot be made to stall; the timeouts are shortened through
//! `[http]` so that each test is over in about a second.
use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, TestApp};

const HEADER_TIMEOUT_MS: u64 = 300;
const BODY_TIMEOUT_MS: u64 = 400;
const WRITE_STALL_TIMEOUT_MS: u64 = 300;
/// How long a test waits for what the timeouts above promise: generous, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

async fn app_with_short_timeouts() -> TestApp {
    spawn_app_with(|c| {
        c.http.header_read_timeout_ms = HEADER_TIMEOUT_MS;
        c.http.body_read_timeout_ms = BODY_TIMEOUT_MS;
    })
    .await
}

/// Everything the server sends until it closes the connection, or `None` if it is still open
/// after [`PATIENCE`].
async fn read_until_closed(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all).await.ok()?;
    Some(received)
}

/// Opens a connection to `addr` and sends `bytes` on it.
async fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(bytes).await.expect("send");
    conn
}

/// One HTTP/1.1 response: status, lower-cased headers, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    /// The responses in `bytes`, one after the other (each with a `Content-Length`).
    fn all(mut bytes: &[u8]) -> Vec<Answer> {
        let mut answers = Vec::new();
        while !bytes.is_empty() {
            let end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a complete head");
            let head = std::str::from_utf8(&bytes[..end]).expect("UTF-8 head");
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap()[9..12].parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (k, v) = l.split_once(':').unwrap();
                    (k.trim().to_ascii_lowercase(), v.trim().to_string())
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let body_start = end + 4;
            answers.push(Answer {
                status,
                headers,
                body: bytes[body_start..body_start + length].to_vec(),
            });
            bytes = &bytes[body_start + length..];
        }
        answers
    }

    fn one(bytes: &[u8]) -> Answer {
        let mut all = Self::all(bytes);
        assert_eq!(all.len(), 1, "{}", String::from_utf8_lossy(bytes));
        all.remove(0)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

fn assert_envelope(answer: &Answer, status: u16, message_part: &str) {
    assert_eq!(answer.status, status);
    assert!(
        answer
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{:?}",
        answer.headers
    );
    let body = answer.json();
    assert_eq!(body["code"], -1, "{body}");
    assert!(body["response"].is_null(), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(message_part), "{message}");
}

#[tokio::test]
async fn a_connection_that_sends_partial_headers_or_nothing_is_closed_within_the_header_timeout() {
    let app = app_with_short_timeouts().await;
    for sent in [
        &b"GET /payments/x HTTP/1.1\r\nHost: x\r\n"[..],
        b"POST /checkout/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
        b"",
    ] {
        let mut conn = send(app.app.addr, sent).await;
        let received = read_until_closed(&mut conn).await;
        assert!(
            received.is_some(),
            "{:?} is still open",
            String::from_utf8_lossy(sent)
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout_and_both_its_requests_answered(
) {
    let app = app_with_short_timeouts().await;
    let lookup = b"GET /payments/imp_none HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut conn = send(app.app.addr, &[&lookup[..], &lookup[..]].concat()).await;

    let received = read_until_closed(&mut conn)
        .await
        .expect("the idle connection is closed");

    // Keep-alive still works: both requests were answered on the one connection.
    let answers = Answer::all(&received);
    assert_eq!(answers.len(), 2);
    for answer in answers {
        assert_envelope(&answer, 401, "Unauthorized");
    }
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_answered_408_with_the_envelope_and_closed() {
    let app = app_with_short_timeouts().await;
    let mut conn = send(
        app.app.addr,
        b"POST /users/getToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"imp_key\":",
    )
    .await;

    let received = read_until_closed(&mut conn)
        .await
        .expect("answered and closed");

    let answer = Answer::one(&received);
    assert_envelope(&answer, 408, "제한 시간");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(answer.header("x-request-id").is_some());
}

#[tokio::test]
async fn a_stalled_chunked_body_on_the_checkout_request_is_answered_408_and_closed() {
    let app = app_with_short_timeouts().await;
    let mut conn = send(
        app.app.addr,
        b"POST /checkout/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\n{\"imp\r\n",
    )
    .await;

    let received = read_until_closed(&mut conn)
        .await
        .expect("answered and closed");

    assert_envelope(&Answer::one(&received), 408, "제한 시간");
}

#[tokio::test]
async fn a_body_dripped_a_byte_at_a_time_is_cut_off_at_the_body_deadline() {
    let app = app_with_short_timeouts().await;
    let mut conn = send(
        app.app.addr,
        b"POST /users/getToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n",
    )
    .await;
    let (mut reader, mut writer) = conn.split();
    // A byte every 50 ms: a timer restarted on every read would never fire.
    let drip = async {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..1000 {
            every.tick().await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let mut received = Vec::new();
    let answer = async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };

    let closed = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            () = answer => true,
            () = drip => false,
        }
    })
    .await;

    assert_eq!(closed, Ok(true), "the dripped body is still being read");
    assert_envelope(&Answer::one(&received), 408, "제한 시간");
}

#[tokio::test]
async fn a_body_over_256_kib_gets_the_413_envelope_whether_its_length_is_declared_or_chunked() {
    let app = app_with_short_timeouts().await;
    let limit = 256 * 1024;
    let padded = |len: usize| {
        let mut body = br#"{"imp_key":"k","imp_secret":"s"}"#.to_vec();
        body.resize(len, b' ');
        body
    };

    let declared = app
        .http
        .post(app.url("/users/getToken"))
        .header("Content-Type", "application/json")
        .body(padded(limit + 1))
        .send()
        .await
        .expect("answered");
    let status = declared.status();
    let content_type = declared.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let (_, body) = TestApp::read(declared).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(
        body,
        json!({"code": -1, "message": "요청 본문이 너무 큽니다. (최대 256KiB)", "response": null})
    );

    // Chunked: no length to refuse up front; the chunk that goes over is the last one sent, so
    // the server has read everything when it answers.
    let over = padded(limit + 1);
    let mut request = b"POST /users/getToken HTTP/1.1\r\nHost: x\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for chunk in over.chunks(16 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    let mut conn = send(app.app.addr, &request).await;
    let received = read_until_closed(&mut conn).await.expect("answered");
    assert_envelope(&Answer::one(&received), 413, "256KiB");

    // Exactly at the limit the body is read and the handler answers.
    let (status, body) = {
        let res = app
            .http
            .post(app.url("/users/getToken"))
            .header("Content-Type", "application/json")
            .body(padded(limit))
            .send()
            .await
            .expect("answered");
        TestApp::read(res).await
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_graceful_shutdown_is_not_held_up_by_a_client_stalled_mid_headers() {
    let app = app_with_short_timeouts().await;
    let _stalled = send(app.app.addr, b"GET /payments/x HTTP/1.1\r\nHost: x\r\n").await;
    // The stalled connection is accepted before the stop: a request the server answers
    // proves the accept loop has moved past it.
    let (status, _) = app.get("/payments/imp_none", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let stopped = tokio::time::timeout(PATIENCE, app.app.shutdown()).await;

    assert!(stopped.is_ok(), "the shutdown waits for the stalled client");
}

#[tokio::test]
async fn the_embedded_sandbox_closes_a_stalled_connection_and_answers_a_stalled_body_408() {
    let app = app_with_short_timeouts().await;
    let sandbox = app.app.sandbox.as_ref().expect("embedded sandbox").addr;

    let mut headers = send(sandbox, b"POST /gw/hub/v1/payment HTTP/1.1\r\nHost: x\r\n").await;
    let mut body = send(
        sandbox,
        b"POST /gw/hub/v1/payment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{",
    )
    .await;

    assert!(
        read_until_closed(&mut headers).await.is_some(),
        "stalled headers"
    );
    let received = read_until_closed(&mut body).await.expect("stalled body");
    assert_eq!(Answer::one(&received).status, 408);
}

/// The first response on `conn`, or `None` if none is complete within `wait`.
async fn first_answer(conn: &mut TcpStream, wait: Duration) -> Option<Answer> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if received.len() >= end + 4 + length {
                    return Answer::one(&received[..end + 4 + length]);
                }
            }
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => panic!("closed before an answer"),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok()
}

/// `[http] max_connections`: at the cap nothing more is accepted, so a new client waits in the
/// listen backlog (its request unanswered, not refused) until a connection closes, and is then
/// served; the process never runs out of file descriptors for its database or KCP calls.
#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_until_a_connection_closes_and_is_then_served() {
    let app = spawn_app_with(|c| c.http.max_connections = Some(2)).await;
    let lookup = b"GET /payments/imp_none HTTP/1.1\r\nHost: x\r\n\r\n";
    // Two keep-alive connections, each answered once and left open: the cap is reached.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = send(app.app.addr, lookup).await;
        let answer = first_answer(&mut conn, PATIENCE)
            .await
            .expect("a connection within the cap is served");
        assert_eq!(answer.status, 401);
        held.push(conn);
    }
    let mut waiting = send(app.app.addr, lookup).await;
    assert!(
        first_answer(&mut waiting, Duration::from_secs(1))
            .await
            .is_none(),
        "a third connection is not served while two are open"
    );
    drop(held.remove(0));
    let answer = first_answer(&mut waiting, PATIENCE)
        .await
        .expect("served once a connection closed");
    assert_eq!(answer.status, 401);
}

/// A connection whose client asked for `path` `times` over (pipelined, so the responses are far
/// more than any socket buffer holds) with a tiny receive buffer, and then reads nothing.
async fn never_reading(addr: SocketAddr, path: &str, times: usize) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
    let mut conn = socket.connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.write_all(request.repeat(times).as_bytes())
        .await
        .expect("send");
    conn
}

/// hyper's HTTP/1.1 server has no write timeout: a client that stopped reading its response held
/// its connection, and a slot under `max_connections`, for ever. Two of them at a cap of 2 left
/// every other client in the listen backlog. Now a response that makes no progress for
/// `write_stall_timeout_ms` ends its connection.
#[tokio::test]
async fn clients_that_never_read_their_responses_are_cut_off_and_a_client_waiting_at_the_cap_is_then_served(
) {
    let app = spawn_app_with(|c| {
        c.http.header_read_timeout_ms = HEADER_TIMEOUT_MS;
        c.http.body_read_timeout_ms = BODY_TIMEOUT_MS;
        c.http.write_stall_timeout_ms = WRITE_STALL_TIMEOUT_MS;
        c.http.max_connections = Some(2);
    })
    .await;
    let _stalled = [
        never_reading(app.app.addr, "/openapi.json", 64).await,
        never_reading(app.app.addr, "/openapi.json", 64).await,
    ];

    let mut waiting = send(
        app.app.addr,
        b"GET /payments/imp_none HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let answer = first_answer(&mut waiting, PATIENCE)
        .await
        .expect("served once the stalled connections are cut off");

    assert_eq!(answer.status, 401);
}

#[tokio::test]
async fn a_graceful_shutdown_is_not_held_up_by_a_client_that_never_reads_its_response() {
    let app = spawn_app_with(|c| {
        c.http.header_read_timeout_ms = HEADER_TIMEOUT_MS;
        c.http.body_read_timeout_ms = BODY_TIMEOUT_MS;
        c.http.write_stall_timeout_ms = WRITE_STALL_TIMEOUT_MS;
    })
    .await;
    let _stalled = never_reading(app.app.addr, "/openapi.json", 64).await;
    // The stalled connection is accepted, and its first response under way, before the stop.
    let (status, _) = app.get("/payments/imp_none", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let stopped = tokio::time::timeout(PATIENCE, app.app.shutdown()).await;

    assert!(
        stopped.is_ok(),
        "the shutdown waits for the client that never reads"
    );
}

/// hyper buffered up to ~400 KiB of a request's headers on each connection; 64 KiB
/// (`http_server::MAX_HEADER_BYTES`) is far more than any browser or proxy sends.
#[tokio::test]
async fn request_headers_over_64_kib_are_refused_431_and_60_kib_are_served() {
    let app = app_with_short_timeouts().await;
    let with_cookie = |kib: usize| {
        let cookie = "a".repeat(kib * 1024);
        format!("GET /payments/imp_none HTTP/1.1\r\nHost: x\r\nCookie: c={cookie}\r\n\r\n")
    };

    let mut over = send(app.app.addr, with_cookie(70).as_bytes()).await;
    let received = read_until_closed(&mut over)
        .await
        .expect("answered and closed");
    assert_eq!(Answer::one(&received).status, 431);

    let mut under = send(app.app.addr, with_cookie(60).as_bytes()).await;
    let answer = first_answer(&mut under, PATIENCE).await.expect("served");
    assert_eq!(answer.status, 401);
}

/// What hyper answers before openport sees a request (docs/operations.md "HTTP timeouts and the
/// connection cap"): a header value with a control byte, a raw non-UTF-8 byte in the target or a
/// `Content-Length` that is no number (or two that differ), or a `Transfer-Encoding` other than
/// `chunked`, is HTTP 400 without a body (not the envelope), and the connection is closed.
#[tokio::test]
async fn malformed_http_is_answered_400_without_a_body_and_closed() {
    let app = app_with_short_timeouts().await;
    let requests: [&[u8]; 5] = [
        b"GET /payments/imp_none HTTP/1.1\r\nHost: x\r\nAuthorization: \x01\r\n\r\n",
        b"GET /payments/imp_\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /users/getToken HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /users/getToken HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /users/getToken HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    ];
    for request in requests {
        let mut conn = send(app.app.addr, request).await;
        let received = read_until_closed(&mut conn)
            .await
            .expect("answered and closed");
        let answer = Answer::one(&received);
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(request));
        assert!(
            answer.body.is_empty(),
            "{}",
            String::from_utf8_lossy(request)
        );
    }
}

/// A request carrying both `Content-Length` and `Transfer-Encoding: chunked` is read by its chunks
/// alone, and its connection is closed after the answer (RFC 9112 §6.1), so bytes sent after the
/// chunks are never read as another request: a proxy in front that framed it by its length cannot
/// slip a request past it on that connection.
#[tokio::test]
async fn a_request_with_both_content_length_and_chunked_is_read_by_its_chunks_and_its_connection_closed(
) {
    let app = app_with_short_timeouts().await;
    let body = json!({"imp_key": openport::service::merchants::DEMO_IMP_KEY,
                      "imp_secret": openport::service::merchants::DEMO_IMP_SECRET})
    .to_string();
    let request = format!(
        "POST /users/getToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n\
         GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        body.len()
    );

    let mut conn = send(app.app.addr, request.as_bytes()).await;

    let received = read_until_closed(&mut conn)
        .await
        .expect("answered and closed");
    let answers = Answer::all(&received);
    assert_eq!(answers.len(), 1, "{}", String::from_utf8_lossy(&received));
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].json()["code"], 0, "the whole body, not 5 bytes");
}
