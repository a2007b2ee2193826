//! The HTTP server's connection loop: hyper's HTTP/1.1 server with a header-read timeout.
//!
//! `axum::serve` builds hyper's connections without a timer, and hyper's header-read timeout
//! (like any of its timeouts) does nothing without one: a client that sent part of its headers
//! and then nothing was neither answered nor closed. Holding ~20,000 such connections exhausted
//! the process's file descriptors, which the database and the embedded KCP sandbox share, and
//! every other client timed out. axum 0.8 offers no way to set the timer, hence this loop; it
//! keeps what `axum::serve(..).with_graceful_shutdown(..)` did: the peer's address as
//! `ConnectInfo` (`/kcp/notify` checks it), keep-alive, axum's handling of accept errors (a
//! second's pause on `EMFILE`), and a graceful stop that lets requests in flight finish.
//!
//! The header-read timer runs from a connection's opening, and again from the end of each
//! response until the next request's headers are in: it bounds idle keep-alive connections too.
//! A stalled *body* is the request-body deadline's business ([`super::request_body`]).
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

/// Serves HTTP/1.1 on `listener` until `stop` completes, then stops accepting, lets the requests
/// in flight finish and closes idle connections; returns once every connection is closed (a
/// client stalled mid-request is cut off by the timeouts, so that too is bounded).
///
/// `make_service` is called with each peer's address (`into_make_service_with_connect_info`).
pub async fn serve<M, S>(
    mut listener: TcpListener,
    mut make_service: M,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()>,
) where
    M: Service<SocketAddr, Response = S, Error = Infallible>,
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    // `true` once `stop` completes: each connection then finishes its request and closes.
    let (stopping, _) = tokio::sync::watch::channel(false);
    // Each connection holds a receiver; all dropped = all connections closed.
    let (closed, open) = tokio::sync::watch::channel(());
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut stop => break,
        };
        let Ok(maker) = make_service.ready().await;
        let Ok(service) = maker.call(peer).await;
        let service = TowerToHyperService::new(
            service.map_request(|req: Request<Incoming>| req.map(Body::new)),
        );
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
                // A client's doing (headers too slow, a reset): not the server's failure.
                tracing::debug!("connection ended: {e}");
            }
            drop(open);
        });
    }
    drop(listener);
    stopping.send_replace(true);
    drop(open);
    closed.closed().await;
}
