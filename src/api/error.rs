//! The one place where errors become iamport envelopes (spec/iamport-v1.md §2).
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::envelope::json_response;
use super::failures::deliberate;
use crate::service::ServiceError;

/// An iamport-style failure: HTTP status + `code` + `message`, `response: null`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: i32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: i32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, -1, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, -1, "Unauthorized")
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, -1, message)
    }
    /// HTTP 200, code 1: a business rule said no.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(StatusCode::OK, 1, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unauthorized => Self::unauthorized(),
            ServiceError::NotFound(m) => Self::not_found(m),
            ServiceError::BadRequest(m) => Self::bad_request(m),
            ServiceError::CardRejected(m) => Self::new(StatusCode::OK, -1, m),
            ServiceError::Refused(m) | ServiceError::InProgress(m) => Self::refused(m),
            e @ (ServiceError::ScheduleNotHeld | ServiceError::ClockSkewed) => {
                Self::refused(e.to_string())
            }
            // Opaque to the caller, logged once with the cause (crates.io's rule).
            ServiceError::Db(err) => {
                tracing::error!("database error: {err}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    -1,
                    "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해 주세요.",
                )
            }
            ServiceError::Internal(msg) => {
                tracing::error!("internal error: {msg}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    -1,
                    "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해 주세요.",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    /// An `ApiError`'s 5xx is chosen: a 501 for an operation openport does not offer, or a 500
    /// whose cause [`From<ServiceError>`] logged at ERROR. The request log does not report it
    /// again (`api::failures`).
    fn into_response(self) -> Response {
        let res = json_response(
            self.status,
            &serde_json::json!({"code": self.code, "message": self.message, "response": null}),
        );
        if self.status.is_server_error() {
            deliberate(res)
        } else {
            res
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
