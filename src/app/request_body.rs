//! Every request's body is read whole, within a size limit and a deadline, before any other
//! middleware or handler looks at it, and refused with iamport's envelope otherwise.
//!
//! tower-http's layers fit neither half: `RequestBodyLimitLayer` answers a declared over-limit
//! body in plain text (and a chunked one reaches axum's plain-text rejection), and
//! `RequestBodyTimeoutLayer` restarts its timer on every frame, so a client dripping a byte every
//! few seconds keeps a 256 KiB body, and its connection, for days. Every body here is at most
//! 256 KiB and every handler buffers it anyway, so reading it up front costs nothing.
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_server::{whole_body, BodyError};

use crate::api::error::ApiError;

/// The largest request body accepted (iamport's requests are a few KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The limits [`read_whole_body`] applies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the end of the headers to the end of the body, however the body is sent.
    pub deadline: Duration,
}

/// Middleware: reads the body within [`BodyLimits`] (`http_server::whole_body`) and passes the
/// request on with the bytes. Over the limit: 413 (as soon as a `Content-Length` says so, without
/// reading). Not all there by the deadline: 408, which tells the client the request was not
/// processed and may be sent again (RFC 9110 §15.5.9), where a 400 would call it malformed; the
/// connection is closed, as its unread rest cannot be told from a next request. Broken off or
/// badly chunked: 400.
pub async fn read_whole_body(
    State(limits): State<BodyLimits>,
    req: Request,
    next: Next,
) -> Response {
    match whole_body(req, limits.max_bytes, limits.deadline).await {
        Ok(req) => next.run(req).await,
        Err(BodyError::TooLarge) => too_large(limits.max_bytes),
        Err(BodyError::Unreadable) => {
            ApiError::bad_request("요청 본문을 읽을 수 없습니다.").into_response()
        }
        Err(BodyError::TimedOut) => {
            tracing::info!(deadline = ?limits.deadline, "request body not received in time");
            let mut res = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                -1,
                "요청 본문을 제한 시간 안에 받지 못했습니다.",
            )
            .into_response();
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

fn too_large(max_bytes: usize) -> Response {
    let message = format!("요청 본문이 너무 큽니다. (최대 {}KiB)", max_bytes / 1024);
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, -1, message).into_response()
}
