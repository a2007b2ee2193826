//! The HTTP server openport and its embedded KCP sandbox both run: hyper's HTTP/1.1 connection
//! loop with a header-read timeout and a write-stall timeout, and a whole-body deadline for
//! requests.
//!
//! `axum::serve` builds hyper's connections without a timer, and hyper's header-read timeout (like
//! any of its timeouts) does nothing without one: a client that sent part of its headers and then
//! nothing was neither answered nor closed. Holding ~20,000 such connections exhausted the
//! process's file descriptors, which the database and the embedded sandbox share, and every other
//! client timed out. axum 0.8 offers no way to set the timer, hence this loop. It keeps what
//! `axum::serve(..).with_graceful_shutdown(..)` did: the peer's address for the make-service
//! (`into_make_service_with_connect_info`), keep-alive, axum's handling of accept errors (a
//! second's pause on `EMFILE`), and a graceful stop that lets requests in flight finish. Timeouts
//! bound how long a connection lasts, not how many there are, so the loop also keeps at most
//! [`Limits::max_connections`] open and leaves the rest in the listen backlog.
//!
//! hyper has no write timeout either: a client that asked for a response bigger than the socket's
//! buffers and then read nothing held its connection, and a connection slot, for ever, and a
//! graceful stop waited for it for ever. Writes therefore fail once the client has taken nothing
//! for [`Limits::write_stall_timeout`] (tokio-io-timeout), and a graceful stop gives connections
//! [`Limits::shutdown_grace`] at most.
//!
//! Nothing here knows KCP or iamport: the sandbox stays independent of openport's connector, and
//! each side answers a refused body in its own form ([`whole_body`]).
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tower::{Service, ServiceExt};

/// Serves HTTP/1.1 on `listener` until `stop` completes, then stops accepting, lets the requests
/// in flight finish for up to [`Limits::shutdown_grace`] and closes idle connections; returns
/// once every connection is closed (one still busy at the end of the grace is dropped, so a
/// client that stalls or reads its response slowly cannot hold the stop up).
///
/// The header-read timer runs from a connection's opening, and again from the end of each
/// response until the next request's headers are in: it bounds idle keep-alive connections too.
/// A stalled *body* is [`whole_body`]'s business; a response the client stops taking is cut off
/// after [`Limits::write_stall_timeout`]. `make_service` is called with each peer's address. At
/// most [`Limits::max_connections`] connections are open at once, each buffering at most
/// [`MAX_HEADER_BYTES`] of request headers.
pub async fn serve<M, S>(
    mut listener: TcpListener,
    mut make_service: M,
    limits: Limits,
    stop: impl Future<Output = ()>,
) where
    M: Service<SocketAddr, Response = S, Error = Infallible>,
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    // `true` once `stop` completes: each connection then finishes its request and closes.
    let (stopping, _) = tokio::sync::watch::channel(false);
    // Each connection holds a receiver; all dropped = all connections closed.
    let (closed, open) = tokio::sync::watch::channel(());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Whether the last connection had to wait for a slot: the warning is logged once per spell.
    let mut full = false;
    tokio::pin!(stop);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                full = false;
                slot
            }
            Err(_) => {
                if !full {
                    full = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached: new connections wait in the listen backlog \
                         until one closes"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("never closed"),
                    () = &mut stop => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut stop => break,
        };
        let Ok(maker) = make_service.ready().await;
        let Ok(service) = maker.call(peer).await;
        let service = TowerToHyperService::new(
            service.map_request(|req: Request<Incoming>| req.map(Body::new)),
        );
        // Reads need no timeout of their own: the header timer and `whole_body` bound them.
        let mut io = TimeoutStream::new(tcp);
        io.set_write_timeout(Some(limits.write_stall_timeout));
        let connection = http.serve_connection(TokioIo::new(Box::pin(io)), service);
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
                    match tokio::time::timeout(limits.shutdown_grace, connection).await {
                        Ok(result) => result,
                        Err(_) => {
                            tracing::debug!(
                                "connection still busy at the end of the shutdown grace: dropped"
                            );
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                // A client's doing (headers too slow, a reset): not the server's failure.
                tracing::debug!("connection ended: {e}");
            }
            drop(open);
            drop(slot);
        });
    }
    drop(listener);
    stopping.send_replace(true);
    drop(open);
    closed.closed().await;
}

/// The longest request head (request line and headers) a connection takes: a longer one is
/// answered 431 and the connection closed. It also caps hyper's buffers (`max_buf_size`, ~400 KiB
/// by default), so a connection holds that much at most while its headers arrive. The longest
/// legitimate heads carry a browser's cookies on the checkout pages (openport's window cookies are
/// under 100 bytes each; a browser keeps any cookie under 4 KiB), well under the 32 KiB in all,
/// 8 KiB a line, that nginx passes by default; access tokens are under 100 bytes. Bodies go
/// through the buffer a piece at a time ([`whole_body`]).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What [`serve`] allows each connection, and how many it keeps open.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's opening, or the end of its previous response, to the end of a
    /// request's headers (so also how long an idle keep-alive connection lives).
    pub header_read_timeout: Duration,
    /// How long a response may make no progress: past it, with not one byte taken by the
    /// client's socket since, the connection is closed. Restarted by every byte taken, so a slow
    /// client is served, one that stopped reading is not kept.
    pub write_stall_timeout: Duration,
    /// After `stop`, how long the requests in flight get to finish before their connections are
    /// dropped (a handler that runs in a task of its own goes on; the response is lost).
    pub shutdown_grace: Duration,
    /// Connections open at once. At the cap, nothing more is accepted until one closes: new
    /// clients wait in the kernel's listen backlog instead of the process running out of file
    /// descriptors, which its database connections and outgoing calls need as much as its clients.
    pub max_connections: usize,
}

/// Why [`whole_body`] refused a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the size limit (known at once when `Content-Length` says so, without reading).
    TooLarge,
    /// Not all there by the deadline: answer 408 and close the connection, as its unread rest
    /// cannot be told from a next request.
    TimedOut,
    /// Broken off or badly chunked.
    Unreadable,
}

/// The request with its body read whole, at most `max_bytes`, all of it within `deadline` from
/// now. One deadline for the whole body: tower-http's `RequestBodyTimeoutLayer` restarts its
/// timer on every frame, so a client dripping a byte every few seconds would keep a body, and its
/// connection, for days. A request without a body passes as it is.
pub async fn whole_body(
    req: Request,
    max_bytes: usize,
    deadline: Duration,
) -> Result<Request, BodyError> {
    if req.body().size_hint().exact() == Some(0) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    if body.size_hint().lower() > u64::try_from(max_bytes).unwrap_or(u64::MAX) {
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(deadline, Limited::new(body, max_bytes).collect()).await {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Unreadable),
        Err(_) => Err(BodyError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A request whose handler never ends (or whose client reads its response slowly enough to
    /// dodge the write-stall timeout) held a graceful stop up for ever.
    #[tokio::test]
    async fn a_graceful_stop_drops_a_connection_still_busy_at_the_end_of_its_grace() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered, handler_entered) = tokio::sync::oneshot::channel::<()>();
        let entered = Arc::new(std::sync::Mutex::new(Some(entered)));
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                if let Some(entered) = entered.lock().unwrap().take() {
                    let _ = entered.send(());
                }
                std::future::pending::<()>().await
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = Limits {
            header_read_timeout: Duration::from_secs(60),
            write_stall_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_millis(200),
            max_connections: 4,
        };
        let server = tokio::spawn(serve(listener, router.into_make_service(), limits, async {
            let _ = stopped.await;
        }));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        handler_entered.await.unwrap();

        stop.send(()).unwrap();
        let served = tokio::time::timeout(Duration::from_secs(10), server).await;

        assert!(served.is_ok(), "the stop waits for the busy connection");
    }
}
