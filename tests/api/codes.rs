//! Standard codes (`/banks`, `/cards`) and the merchant's PG settings (`/users/pg`).
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, test_cards};

#[tokio::test]
async fn banks_and_card_companies_are_listed_and_looked_up_by_their_standard_codes() {
    let app = spawn_app().await;
    let token = app.token().await;

    let (status, banks) = app.get("/banks", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{banks}");
    let banks = banks["response"].as_array().unwrap();
    assert!(banks.contains(&json!({"code": "004", "name": "KB국민은행"})));
    assert!(banks.contains(&json!({"code": "090", "name": "카카오뱅크"})));
    let (status, bank) = app.get("/banks/088", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bank["response"], json!({"code": "088", "name": "신한은행"}));
    let (status, missing) = app.get("/banks/999", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    assert_eq!(missing["code"], -1);
    assert_eq!(missing["response"], json!(null));

    let (status, cards) = app.get("/cards", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{cards}");
    assert!(cards["response"]
        .as_array()
        .unwrap()
        .contains(&json!({"code": "361", "name": "BC카드"})));
    let (status, missing) = app.get("/cards/4", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");

    for path in ["/banks", "/banks/004", "/cards", "/cards/361", "/users/pg"] {
        let (status, _) = app.get(path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn the_card_code_of_a_payment_is_a_listed_card_company() {
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "codes-1", 1000).await;
    let code = paid["card_code"].as_str().expect("a card code");
    let (status, card) = app.get(&format!("/cards/{code}"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{card}");
    assert_eq!(card["response"]["code"], code);

    let (_, p) = app
        .pay(&token, "codes-2", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let code = p["response"]["card_code"].as_str().unwrap();
    let (_, card) = app.get(&format!("/cards/{code}"), Some(&token)).await;
    assert_eq!(card["response"]["name"], "신한카드", "{p}");
}

#[tokio::test]
async fn users_pg_names_the_merchants_kcp_site_for_each_channel() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app.get("/users/pg", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let settings = body["response"].as_array().unwrap();
    for (pg, kind) in [
        ("kcp", "payment"),
        ("kcp", "api_payment"),
        ("kcp_billing", "payment"),
        ("kcp_billing", "api_payment"),
    ] {
        assert!(
            settings.contains(
                &json!({"pg_provider": pg, "pg_id": "T0000", "sandbox": true, "type": kind})
            ),
            "{pg} {kind}: {body}"
        );
    }
    // The operator has no PG settings of its own.
    let (status, _) = app
        .get("/users/pg", Some(crate::helpers::ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
