//! `GET /health`: for load balancers and orchestrators. No token, no body, and no iamport
//! envelope: the answer is the HTTP status, with a one-word JSON body.
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::json_response;
use crate::app::AppState;

/// Whether this instance can serve: `ok` when its database answered and took a write,
/// `unavailable` otherwise, `outdated` once a newer openport migrated its database
/// (service/schema_check.rs).
/// Never the cause (a host name, a database URL): the endpoint is public, and the cause is in the
/// log at WARN.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Unavailable,
    /// A newer openport migrated the database while this instance served it: it takes no more
    /// work and must be stopped. Not the cause's details (the migrations' names): those are for
    /// the operator, at ERROR in the log and in `GET /admin/status`.
    Outdated,
}

#[utoipa::path(get, path = "/health", operation_id = "health",
    description = "No token. HTTP 200 `{\"status\":\"ok\"}` when the database answered a trivial \
        read and committed a trivial write within 2 s; HTTP 503 \
        `{\"status\":\"unavailable\"}` otherwise (the cause is logged at WARN, never shown); HTTP \
        503 `{\"status\":\"outdated\"}`, without asking the database, once a newer openport \
        migrated it while this instance served it (the instance takes no more work and must be \
        stopped). Not the iamport envelope.",
    responses(
        (status = 200, description = "The database answered and took a write.", body = Health,
            example = json!({"status": "ok"})),
        (status = 503, description = "The database did not answer in time, failed, or refused the \
            write; or (`outdated`) a newer openport migrated it.",
            body = Health, example = json!({"status": "unavailable"})),
    ))]
pub async fn health(State(s): State<AppState>) -> Response {
    // Without the probe's write: this instance writes nothing to a database it is older than.
    let (code, status) = if s.gateway.is_outdated() {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Outdated)
    } else if s.gateway.database_answers().await {
        (StatusCode::OK, HealthStatus::Ok)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Unavailable)
    };
    // A 503 is this check's answer, its cause logged at WARN: not an ERROR (`api::failures`).
    let mut res = super::failures::deliberate(json_response(code, &Health { status }));
    // Every check asks again: no proxy may answer one from an earlier check.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
