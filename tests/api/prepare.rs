use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{future_expiry, spawn_app, test_cards};

#[tokio::test]
async fn prepare_is_not_idempotent_put_changes_it_and_get_reads_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "prep-1", "amount": 1000}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["amount"], 1000);
    assert_eq!(
        body["response"]["currency"], "KRW",
        "the only currency charged"
    );
    let (_, body) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "prep-1", "amount": 1000}),
        )
        .await;
    assert_eq!(body["code"], 1);
    assert_eq!(
        body["message"],
        "결제정보 사전등록에 실패하였습니다(이미 등록된 merchant_uid입니다)."
    );
    let (_, body) = app
        .put(
            "/payments/prepare",
            &token,
            json!({"merchant_uid": "prep-1", "amount": 2000}),
        )
        .await;
    assert_eq!(body["response"]["amount"], 2000, "{body}");
    let (_, body) = app.get("/payments/prepare/prep-1", Some(&token)).await;
    assert_eq!(body["response"]["amount"], 2000);
    let (status, body) = app.get("/payments/prepare/none", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "사전등록된 결제정보가 존재하지 않습니다.");
    let (status, _) = app
        .put(
            "/payments/prepare",
            &token,
            json!({"merchant_uid": "none", "amount": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn onetime_refuses_a_prepared_merchant_uid_with_another_amount() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.post(
        "/payments/prepare",
        Some(&token),
        json!({"merchant_uid": "prep-2", "amount": 1000}),
    )
    .await;
    let body = json!({"merchant_uid": "prep-2", "amount": 999, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()});
    let (_, res) = app
        .post("/subscribe/payments/onetime", Some(&token), body)
        .await;
    assert_eq!(res["code"], 1, "{res}");
    assert_eq!(
        res["message"],
        "사전등록된 결제정보와 일치하지 않습니다. (사전등록 금액: 1000, 요청 금액: 999)"
    );
    assert!(app.sandbox.ledger().is_empty());
    // Refused inside the write that would have opened the charge: nothing was recorded.
    let (status, found) = app.get("/payments/findAll/prep-2", Some(&token)).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{found}");
    let (_, res) = app
        .pay(&token, "prep-2", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(res["response"]["status"], "paid", "{res}");
}

#[tokio::test]
async fn a_currency_prepared_in_lower_case_accepts_the_same_currency_and_amount() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, prepared) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "prep-krw", "amount": 1000, "currency": "krw"}),
        )
        .await;
    assert_eq!(prepared["code"], 0, "{prepared}");
    let body = json!({"merchant_uid": "prep-krw", "amount": 1000, "currency": "krw",
        "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()});
    let (_, res) = app
        .post("/subscribe/payments/onetime", Some(&token), body)
        .await;
    assert_eq!(res["code"], 0, "{res}");
    assert_eq!(res["response"]["status"], "paid", "{res}");
    assert_eq!(res["response"]["currency"], "KRW");
}

#[tokio::test]
async fn prepare_takes_only_what_a_charge_could_pay() {
    let app = spawn_app().await;
    let token = app.token().await;
    let prepare = |body: serde_json::Value| {
        let (app, token) = (&app, &token);
        async move { app.post("/payments/prepare", Some(token), body).await }
    };
    let too_long = "m".repeat(81);
    for (body, why) in [
        (
            json!({"merchant_uid": too_long, "amount": 1000}),
            "merchant_uid",
        ),
        (
            json!({"merchant_uid": "prep-max", "amount": 1_000_000_000_000i64}),
            "999999999999",
        ),
        (json!({"merchant_uid": "prep-neg", "amount": -1}), "0 이상"),
        (
            json!({"merchant_uid": "prep-usd", "amount": 1000, "currency": "USD"}),
            "KRW",
        ),
    ] {
        let (status, res) = prepare(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {res}");
        assert!(res["message"].as_str().unwrap().contains(why), "{res}");
        // PUT follows the same rules.
        let (status, _) = app.put("/payments/prepare", &token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // The longest merchant_uid and the largest amount that a charge takes are taken here too.
    let longest = "m".repeat(80);
    let (_, res) = prepare(json!({"merchant_uid": longest, "amount": 999_999_999_999i64})).await;
    assert_eq!(res["code"], 0, "{res}");
    let (status, res) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "m".repeat(81), "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
                   "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    // The billing-key window may be opened with 0, so 0 can be prepared.
    let (_, res) = prepare(json!({"merchant_uid": "prep-zero", "amount": 0})).await;
    assert_eq!(res["response"]["amount"], 0, "{res}");
}

#[tokio::test]
async fn a_boolean_merchant_uid_is_refused_with_http_400_while_a_number_is_taken_as_its_digits() {
    let app = spawn_app().await;
    let token = app.token().await;
    for uid in [json!(false), json!(true)] {
        let (status, body) = app
            .post(
                "/payments/prepare",
                Some(&token),
                json!({"merchant_uid": uid, "amount": 1000}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], -1, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("merchant_uid"),
            "{body}"
        );
        assert!(body["response"].is_null(), "{body}");
    }
    let (_, body) = app.get("/payments/prepare/false", Some(&token)).await;
    assert_eq!(
        body["code"], -1,
        "nothing was registered as \"false\": {body}"
    );

    let (status, body) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": 20240101, "amount": 1000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["merchant_uid"], "20240101", "{body}");
}

/// A JSON body starting with a UTF-8 byte order mark (.NET's UTF-8 encoder, PowerShell's files) is
/// read as the JSON after it, as Express's body-parser reads it: it was a syntax error at column 1
/// (review r1, finding 8). What follows the mark is checked as any body is.
#[tokio::test]
async fn a_json_body_starting_with_a_utf8_byte_order_mark_is_read_as_the_json_after_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    let post = |body: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let mut bytes = b"\xEF\xBB\xBF".to_vec();
            bytes.extend_from_slice(body.as_bytes());
            let res = app
                .http
                .post(app.url("/payments/prepare"))
                .header("Authorization", token.as_str())
                .header("content-type", "application/json; charset=utf-8")
                .body(bytes)
                .send()
                .await
                .unwrap();
            crate::helpers::TestApp::read(res).await
        }
    };
    let (status, body) = post(r#"{"merchant_uid":"bom-1","amount":1000}"#).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::OK, &json!(0)),
        "{body}"
    );
    let (_, body) = app.get("/payments/prepare/bom-1", Some(&token)).await;
    assert_eq!(body["response"]["amount"], 1000, "{body}");

    let (status, body) = post(r#"{"merchant_uid":"bom\u00002","amount":1000}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("merchant_uid"),
        "a control character after the mark is refused, naming its field: {body}"
    );
    let (status, body) = post(r#"{"merchant_uid":"bom-3","amount":}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = app.get("/payments/prepare/bom-3", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// npm `iamport`'s `updatePrepare` sends every method but POST with its parameters in the query
/// string and no body: the amount it changes is the one read back. A body, even an empty object,
/// is the whole request: the query adds nothing to it.
#[tokio::test]
async fn a_put_with_no_body_reads_its_parameters_from_the_query_string_as_npm_iamport_sends_them() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "prep-query", "amount": 7000}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    let put = |body: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let res = app
                .http
                .put(app.url("/payments/prepare?merchant_uid=prep-query&amount=9000"))
                .header("Authorization", token)
                .body(body)
                .send()
                .await
                .unwrap();
            crate::helpers::TestApp::read(res).await
        }
    };
    let (status, body) = put("").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["amount"], 9000, "{body}");
    let (_, body) = app.get("/payments/prepare/prep-query", Some(&token)).await;
    assert_eq!(body["response"]["amount"], 9000);

    let (status, body) = put("{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = app.get("/payments/prepare/prep-query", Some(&token)).await;
    assert_eq!(body["response"]["amount"], 9000);
}
