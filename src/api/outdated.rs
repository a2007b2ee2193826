//! The answer of an instance older than its database (service/schema_check.rs) to every request
//! but the health check and the operator status, which say so themselves.
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;
use super::failures::deliberate;
use crate::app::AppState;
use crate::service::schema_check::OUTDATED;

/// HTTP 503, code -1, [`OUTDATED`], before the token is checked or the body read: nothing this
/// instance writes can be trusted to follow the newer version's rules, and a lookup would read a
/// schema it does not know (the upgrade drill's getToken answered 500). KCP's notification gets
/// its "send again" form, so KCP delivers it again, to an upgraded instance. One atomic load per
/// request while the instance is current.
pub async fn refuse_when_outdated(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !s.gateway.is_outdated() {
        return next.run(req).await;
    }
    match req.uri().path() {
        "/health" | "/admin/status" => next.run(req).await,
        "/kcp/notify" => deliberate(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html(super::notifications::RETRY),
            )
                .into_response(),
        ),
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, -1, OUTDATED).into_response(),
    }
}
