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

/// `sandbox` was the merchant row's `test_mode`, while a payment records the mode of the instance
/// that takes it (the instance decides which KCP approves): a merchant with the demo imp_key
/// whose row says `test_mode = false` had its payments on a test-mode instance recorded
/// `sandbox: true` and was told `sandbox: false` here. Now `/users/pg` says what the payments
/// record; a live merchant, whose payments only live instances take, is told `false` by a live
/// instance and by a test-mode one on the same database alike.
#[tokio::test]
async fn users_pg_says_sandbox_as_the_merchants_payments_record_it_whatever_the_merchants_flag() {
    use base64::Engine;
    use openport::service::merchants::DEMO_IMP_KEY;
    use secrecy::{ExposeSecret, SecretString};
    async fn sandbox_flags(app: &crate::helpers::TestApp, token: &str) -> Vec<Option<bool>> {
        let (status, body) = app.get("/users/pg", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let settings = body["response"].as_array().unwrap();
        assert_eq!(settings.len(), 4, "{body}");
        settings.iter().map(|s| s["sandbox"].as_bool()).collect()
    }

    // One master key for both instances, as on a database they share: the test-mode one checks
    // the live merchant's secret too.
    let master_key = || {
        Some(SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
        ))
    };
    let test = crate::helpers::spawn_app_with(|c| c.master_key = master_key()).await;
    let live = test
        .another_instance(|c| {
            c.test_mode = false;
            c.master_key = master_key();
            c.public_url = Some("https://pay.example.com".into());
        })
        .await;
    let created = live.app.demo.as_ref().expect("the live merchant of KCP_*");
    let (imp_key, secret) = (
        created.merchant.imp_key.clone(),
        created.imp_secret.expose_secret().to_string(),
    );
    let live_token = live.token_for(&imp_key, &secret).await;
    let paid = live.paid(&live_token, "pg-flag-l", 1000).await;
    assert_eq!(paid["sandbox"], false, "{paid}");
    assert_eq!(sandbox_flags(&live, &live_token).await, [Some(false); 4]);
    let token_here = test.token_for(&imp_key, &secret).await;
    assert_eq!(sandbox_flags(&test, &token_here).await, [Some(false); 4]);

    crate::helpers::make_live(&test, DEMO_IMP_KEY).await;
    test.app.gateway.forget_merchant(None);
    let token = test.token().await;
    let paid = test.paid(&token, "pg-flag-t", 1000).await;
    assert_eq!(paid["sandbox"], true, "{paid}");
    assert_eq!(sandbox_flags(&test, &token).await, [Some(true); 4]);
}
