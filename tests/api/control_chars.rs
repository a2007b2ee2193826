//! Control characters in requests: U+0000 (which PostgreSQL cannot store) and the other C0 controls
//! are refused at the edge with iamport's 400, on every route, before anything is written or sent
//! to KCP. Run on PostgreSQL too (`DATABASE_URL`), where a NUL that got through was a 500.
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{future_expiry, spawn_app, test_cards, TestApp};

fn assert_refused(status: StatusCode, body: &Value, place: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], -1, "{body}");
    assert!(body["response"].is_null(), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("제어 문자") && message.contains(place),
        "{message} names {place}"
    );
}

fn onetime(merchant_uid: &str, extra: Value) -> Value {
    let mut body = json!({
        "merchant_uid": merchant_uid, "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
        "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn raw_get(app: &TestApp, path_and_query: &str, token: &str) -> (StatusCode, Value) {
    let res = app
        .http
        .get(format!("{}{path_and_query}", app.base))
        .header("Authorization", token)
        .send()
        .await
        .unwrap();
    TestApp::read(res).await
}

#[tokio::test]
async fn a_nul_in_a_json_or_form_body_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": "a\u{0}", "imp_secret": "x"}),
        )
        .await;
    assert_refused(status, &body, "imp_key");
    let res = app
        .http
        .post(app.url("/users/getToken"))
        .form(&[("imp_key", "a\u{0}"), ("imp_secret", "x")])
        .send()
        .await
        .unwrap();
    let (status, body) = TestApp::read(res).await;
    assert_refused(status, &body, "imp_key");
}

#[tokio::test]
async fn a_nul_in_a_path_or_query_is_a_400() {
    let app = spawn_app().await;
    let token = app.token().await;
    for path in [
        "/payments/x%00y",
        "/payments/find/a%00b",
        "/payments/findAll/a%00b/paid",
        "/payments/prepare/a%00b",
        "/subscribe/customers/a%00b",
    ] {
        let (status, body) = raw_get(&app, path, &token).await;
        assert_refused(status, &body, "요청 경로");
    }
    let (status, body) = raw_get(&app, "/payments/status/all?sorting=%00", &token).await;
    assert_refused(status, &body, "sorting");
    let (status, body) = raw_get(&app, "/payments?imp_uid[]=imp_%01", &token).await;
    assert_refused(status, &body, "imp_uid[]");
}

#[tokio::test]
async fn a_onetime_with_a_nul_in_its_text_charges_nothing_and_issues_no_billing_key() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            onetime("nul-addr", json!({"buyer_addr": "a\u{0}"})),
        )
        .await;
    assert_refused(status, &body, "buyer_addr");
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            onetime(
                "nul-key",
                json!({"buyer_name": "홍\u{0}길동", "customer_uid": "nul-cust"}),
            ),
        )
        .await;
    assert_refused(status, &body, "buyer_name");
    assert!(app.sandbox.ledger().is_empty(), "nothing charged");
    assert!(
        app.sandbox.batch_keys().is_empty(),
        "no key orphaned at KCP"
    );
    let (_, found) = app.get("/payments/findAll/nul-key", Some(&token)).await;
    assert_eq!(found["code"], -1, "nothing recorded: {found}");
}

#[tokio::test]
async fn other_c0_controls_are_refused_in_api_bodies_while_tab_and_newlines_pass() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            onetime("c0-name", json!({"name": "상품\u{1}"})),
        )
        .await;
    assert_refused(status, &body, "name");
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            onetime(
                "c0-custom",
                json!({"custom_data": {"memo": ["ok", "x\u{1b}"]}}),
            ),
        )
        .await;
    assert_refused(status, &body, "custom_data.memo[1]");
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            onetime("c0-ok", json!({"buyer_addr": "서울시\t강남구\r\n101동"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["buyer_addr"], "서울시\t강남구\r\n101동");
    // An escaped backslash followed by `u0000` is text.
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            onetime("c0-text", json!({"buyer_addr": "\\u0000"})),
        )
        .await;
    assert_eq!(body["response"]["buyer_addr"], "\\u0000", "{body}");
}

#[tokio::test]
async fn a_nul_in_a_browser_checkout_request_is_refused_before_any_payment_is_opened() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
                   "params": {"merchant_uid": "web-nul", "amount": 1000, "buyer_name": "a\u{0}"}}),
        )
        .await;
    assert_refused(status, &body, "params.buyer_name");
    let token = app.token().await;
    let (_, found) = app.get("/payments/findAll/web-nul", Some(&token)).await;
    assert_eq!(found["code"], -1, "nothing recorded: {found}");
}
