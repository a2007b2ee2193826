//! What a start keeps to itself: the request log.
use crate::helpers::{captured_logs, spawn_app};

#[tokio::test]
async fn the_request_log_names_the_route_never_the_checkout_sessions_token() {
    let app = spawn_app().await;
    let token = format!("sess{}", openport::domain::ids::random_hex(12));
    let res = app
        .http
        .get(app.url(&format!("/checkout/session/{token}")))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let logs = captured_logs();
    assert!(
        logs.contains("route=/checkout/session/{token}"),
        "the route is logged"
    );
    assert!(!logs.contains(&token), "the session token reached the logs");
}
