//! Which 5xx answers the request log reports as failures, at ERROR: the level operators are told
//! to alert on (docs/operations.md "Monitoring").
//!
//! tower_http's trace layer reports every 5xx at ERROR, with nothing but its status. Most of
//! openport's are answers it gives on purpose: HTTP 501 for an iamport operation KCP does not
//! offer (ordinary merchant traffic, such as a shop asking for the cash receipt on every order
//! page: each would page the operator, and any merchant could flood the alert), HTTP 503 from
//! `/health` (its cause logged at WARN), and HTTP 500 for a failed database call, whose cause the
//! code that chose the answer logged at ERROR already (`api::error`): a second, causeless ERROR
//! line per failure only doubles the alert. Such a response carries [`Deliberate`], and the trace
//! layer reports only the 5xx without it: one no code of openport chose (an extractor's own 500),
//! which has nothing to say but its status, and so still says that.
use axum::response::Response;
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass, SharedClassifier,
};

/// On a 5xx response: chosen on purpose, with whatever the operator must know about it logged
/// where it was chosen (at ERROR with its cause, at WARN, or nothing for an intended answer).
#[derive(Debug, Clone, Copy)]
pub struct Deliberate;

/// `response`, marked [`Deliberate`].
pub fn deliberate(mut response: Response) -> Response {
    response.extensions_mut().insert(Deliberate);
    response
}

/// tower_http's [`ServerErrorsAsFailures`], but a response marked [`Deliberate`] is no failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnchosenServerErrors;

impl UnchosenServerErrors {
    /// The trace layer's classifier.
    pub fn make_classifier() -> SharedClassifier<Self> {
        SharedClassifier::new(Self)
    }
}

impl ClassifyResponse for UnchosenServerErrors {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        res: &axum::http::Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if res.extensions().get::<Deliberate>().is_some() {
            return ClassifiedResponse::Ready(Ok(()));
        }
        ServerErrorsAsFailures::new().classify_response(res)
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: std::fmt::Display + 'static,
    {
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    fn failed(res: &Response) -> bool {
        matches!(
            UnchosenServerErrors.classify_response(res),
            ClassifiedResponse::Ready(Err(_))
        )
    }

    #[test]
    fn a_5xx_is_a_failure_unless_it_was_chosen_on_purpose() {
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::NOT_IMPLEMENTED,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(failed(&status.into_response()), "{status}");
            assert!(!failed(&deliberate(status.into_response())), "{status}");
        }
        assert!(!failed(&StatusCode::BAD_REQUEST.into_response()));
    }
}
