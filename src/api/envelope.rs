//! `{"code":0,"message":null,"response":…}` with `application/json; charset=UTF-8`.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const JSON_UTF8: &str = "application/json; charset=UTF-8";

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut res = (status, bytes).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
            res
        }
        Err(e) => {
            tracing::error!("response serialization: {e}");
            super::failures::deliberate(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

/// A success envelope; `status` is 200 except for partial multi-gets (207).
pub struct Envelope<T> {
    pub status: StatusCode,
    pub response: T,
}

pub fn ok<T>(response: T) -> Envelope<T> {
    Envelope {
        status: StatusCode::OK,
        response,
    }
}

#[derive(Serialize)]
struct Wire<'a, T> {
    code: i32,
    message: Option<&'a str>,
    response: &'a T,
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            &Wire {
                code: 0,
                message: None,
                response: &self.response,
            },
        )
    }
}

/// A success envelope whose `message` (null in [`Envelope`]) says what the response cannot: the
/// schedules an unschedule left because their charge is in progress at KCP
/// (`service::schedules::Unscheduled::note`). Clients read `code`; the message is for the log.
pub struct Noted<T> {
    pub envelope: Envelope<T>,
    pub message: Option<String>,
}

impl<T: Serialize> IntoResponse for Noted<T> {
    fn into_response(self) -> Response {
        json_response(
            self.envelope.status,
            &Wire {
                code: 0,
                message: self.message.as_deref(),
                response: &self.envelope.response,
            },
        )
    }
}
