//! The sandbox's HTTP server: hyper's HTTP/1.1 server with a header-read timeout, and a deadline
//! on every request body.
//!
//! `axum::serve` gives hyper no timer, and hyper's header-read timeout does nothing without one:
//! a client that sent part of its headers, or of its body, and then nothing held its connection
//! (and a file descriptor, shared with the gateway when the sandbox is embedded) for ever. The
//! loop and the body deadline are the workspace's `http-server` crate, which the gateway serves
//! with too: generic HTTP, nothing of KCP's wire or openport's connector.
use std::future::Future;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_server::{whole_body, BodyError};
use tokio::net::TcpListener;

/// How long the sandbox's server waits for a client, and how many it serves at once.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// From a connection's opening, or the end of its previous response, to the end of a
    /// request's headers (so also how long an idle keep-alive connection lives); past it the
    /// connection is closed.
    pub header_read: Duration,
    /// From the end of the headers to the end of the body, however it is sent; past it the
    /// request is answered 408 and the connection closed.
    pub body_read: Duration,
    /// Connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// axum's default limit for a buffered body, which the sandbox's extractors applied before.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Serves `router` until `stop` completes, then lets requests in flight finish and returns once
/// every connection is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) {
    let router = router.layer(axum::middleware::from_fn_with_state(
        limits.body_read,
        read_whole_body,
    ));
    http_server::serve(
        listener,
        router.into_make_service(),
        http_server::Limits {
            header_read_timeout: limits.header_read,
            // The sandbox answers from memory (a fault's delay aside, which a stop need not wait
            // out): a stop's grace is a body and a stalled response.
            write_stall_timeout: limits.body_read,
            shutdown_grace: limits.body_read * 2,
            max_connections: limits.max_connections,
        },
        stop,
    )
    .await;
}

/// Middleware: the body, whole, within `deadline` (`http_server::whole_body`), or a plain-text
/// refusal: 413, 400, or 408 and a closed connection.
async fn read_whole_body(State(deadline): State<Duration>, req: Request, next: Next) -> Response {
    match whole_body(req, MAX_BODY_BYTES, deadline).await {
        Ok(req) => next.run(req).await,
        Err(BodyError::TooLarge) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
        }
        Err(BodyError::Unreadable) => {
            (StatusCode::BAD_REQUEST, "request body unreadable").into_response()
        }
        Err(BodyError::TimedOut) => (
            StatusCode::REQUEST_TIMEOUT,
            [(axum::http::header::CONNECTION, "close")],
            "request body not received in time",
        )
            .into_response(),
    }
}
