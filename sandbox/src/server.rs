//! The sandbox's HTTP server: hyper's HTTP/1.1 server with a header-read timeout, and a deadline
//! on every request body.
//!
//! `axum::serve` gives hyper no timer, and hyper's header-read timeout does nothing without one:
//! a client that sent part of its headers, or of its body, and then nothing held its connection
//! (and a file descriptor, shared with the gateway when the sandbox is embedded) for ever. The
//! gateway has its own copy of this loop (openport's `src/app/serve.rs`): the sandbox shares no
//! code with it.
use std::future::Future;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long the sandbox's server waits for a client.
#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// From a connection's opening, or the end of its previous response, to the end of a
    /// request's headers (so also how long an idle keep-alive connection lives); past it the
    /// connection is closed.
    pub header_read: Duration,
    /// From the end of the headers to the end of the body, however it is sent; past it the
    /// request is answered 408 and the connection closed.
    pub body_read: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
        }
    }
}

/// axum's default limit for a buffered body, which the sandbox's extractors applied before.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Serves `router` until `stop` completes, then lets requests in flight finish and returns once
/// every connection is closed.
pub(crate) async fn serve(
    mut listener: TcpListener,
    router: Router,
    timeouts: ServerTimeouts,
    stop: impl Future<Output = ()>,
) {
    let router = router.layer(axum::middleware::from_fn_with_state(
        timeouts.body_read,
        read_whole_body,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    let (stopping, _) = tokio::sync::watch::channel(false);
    let (closed, open) = tokio::sync::watch::channel(());
    tokio::pin!(stop);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut stop => break,
        };
        // A router takes hyper's bodies as they are.
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(tcp), service);
        let mut stopping = stopping.subscribe();
        let open = open.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let finished = tokio::select! {
                result = connection.as_mut() => Some(result),
                _ = stopping.wait_for(|s| *s) => None,
            };
            let result = match finished {
                Some(result) => result,
                None => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("sandbox connection ended: {e}");
            }
            drop(open);
        });
    }
    drop(listener);
    stopping.send_replace(true);
    drop(open);
    closed.closed().await;
}

/// Middleware: the body, whole, within `deadline` (a whole-body deadline: a per-read timer would
/// let a client drip a byte at a time), or 408 and a closed connection.
async fn read_whole_body(State(deadline): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(deadline, Limited::new(body, MAX_BODY_BYTES).collect());
    match read.await {
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
        }
        Ok(Err(_)) => (StatusCode::BAD_REQUEST, "request body unreadable").into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(axum::http::header::CONNECTION, "close")],
            "request body not received in time",
        )
            .into_response(),
    }
}
