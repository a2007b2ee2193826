//! Billing keys (`/subscribe/customers`) and `again` against the sandbox's batch side.
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    execute, future_expiry, refuse_writes, slow_writes, spawn_app, test_cards,
    until_a_write_is_held, TestApp,
};

pub async fn register(app: &TestApp, token: &str, uid: &str, card: &str) -> Value {
    app.post(
        &format!("/subscribe/customers/{uid}"),
        Some(token),
        json!({"card_number": card, "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00",
               "customer_name": "홍길동", "customer_email": "buyer@example.com"}),
    )
    .await
    .1
}

pub async fn again(
    app: &TestApp,
    token: &str,
    uid: &str,
    merchant_uid: &str,
    amount: i64,
) -> (StatusCode, Value) {
    app.post(
        "/subscribe/payments/again",
        Some(token),
        json!({"customer_uid": uid, "merchant_uid": merchant_uid, "amount": amount, "name": "정기결제"}),
    )
    .await
}

#[tokio::test]
async fn a_registered_customer_shows_a_masked_card_and_never_the_billing_key() {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = register(&app, &token, "cust-1", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(body["code"], 0, "{body}");
    let c = &body["response"];
    assert_eq!(c["customer_uid"], "cust-1");
    assert_eq!(c["pg_provider"], "kcp_billing");
    assert_eq!(c["pg_id"], "T0000");
    assert_eq!(c["card_number"], "411111******1111");
    assert_eq!(c["card_code"], "366");
    assert!(c.get("card_issuer_code").is_some_and(Value::is_null), "{c}");
    assert!(
        c.get("card_publisher_name").is_some_and(Value::is_null),
        "{c}"
    );
    assert_eq!(c["customer_name"], "홍길동");
    assert!(c["inserted"].as_i64().unwrap() > 0);
    assert_eq!(c["sandbox"], true);
    let (_, got) = app.get("/subscribe/customers/cust-1", Some(&token)).await;
    assert_eq!(got["response"], *c);
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys.len(), 1);
    assert!(!body.to_string().contains(&keys[0].id));
    assert!(body.get("batch_key").is_none() && c.get("batch_key").is_none());
}

#[tokio::test]
async fn again_charges_the_billing_key_and_marks_the_payment_as_a_key_payment() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-2", test_cards::SHINHAN_CREDIT).await;
    let (status, body) = again(&app, &token, "cust-2", "sub-1", 9900).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 0, "{body}");
    let p = &body["response"];
    assert_eq!(p["status"], "paid");
    assert_eq!(p["amount"], 9900);
    assert_eq!(p["channel"], "api");
    assert_eq!(p["customer_uid"], "cust-2");
    assert_eq!(p["customer_uid_usage"], "payment");
    assert_eq!(
        p["pg_provider"], "kcp_billing",
        "iamport's KCP billing channel"
    );
    assert_eq!(p["card_number"], "411111******1111");
    assert_eq!(app.sandbox.ledger().len(), 1);
    let (_, page) = app
        .get("/subscribe/customers/cust-2/payments", Some(&token))
        .await;
    assert_eq!(page["response"]["total"], 1);
    assert_eq!(page["response"]["list"][0]["imp_uid"], p["imp_uid"]);
    // `page` as on every paged list: empty is absent, below 1 is 1, not an integer is HTTP 400.
    for query in ["page=", "page=0", "page=-3"] {
        let (status, page) = app
            .get(
                &format!("/subscribe/customers/cust-2/payments?{query}"),
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(
            page["response"]["list"][0]["imp_uid"], p["imp_uid"],
            "{query}"
        );
    }
    let (status, refused) = app
        .get(
            "/subscribe/customers/cust-2/payments?page=2abc",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["code"], -1, "{refused}");
    // A customer_uid that never had a key is iamport's 404, not an empty page.
    let (status, unknown) = app
        .get(
            "/subscribe/customers/never-registered/payments",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
    assert_eq!(unknown["code"], -1, "{unknown}");
    // A deleted customer still lists the payments made with its key.
    let res = app
        .http
        .delete(app.url("/subscribe/customers/cust-2"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let (_, deleted) = TestApp::read(res).await;
    assert_eq!(deleted["code"], 0, "{deleted}");
    let (status, page) = app
        .get("/subscribe/customers/cust-2/payments", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["response"]["total"], 1);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_declined_again_is_code_0_with_status_failed_and_a_real_imp_uid() {
    let app = spawn_app().await;
    let token = app.token().await;
    for (uid, card) in [
        ("kb", test_cards::KB_KOOKMIN),
        ("nh", test_cards::NH_NONGHYUP),
        ("kakao", test_cards::KAKAO_BANK),
        ("limit", test_cards::INSUFFICIENT_LIMIT),
    ] {
        let reg = register(&app, &token, uid, card).await;
        assert_eq!(reg["code"], 0, "issuing a key works for {uid}: {reg}");
        let (status, body) = again(&app, &token, uid, &format!("sub-{uid}"), 1000).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 0, "{body}");
        let p = &body["response"];
        assert_eq!(p["status"], "failed", "{body}");
        assert!(p["imp_uid"].as_str().unwrap().starts_with("imp_"));
        assert!(p["failed_at"].as_i64().unwrap() > 0);
        assert!(!p["fail_reason"].as_str().unwrap().is_empty());
        // What the key knows of the card is on the payment even though KCP refused it.
        assert_eq!(p["card_number"], reg["response"]["card_number"], "{body}");
        assert_eq!(p["card_name"], reg["response"]["card_name"], "{body}");
    }
    assert!(app.sandbox.ledger().is_empty());
}

/// `again` carries no card data, yet instalments under 50,000 KRW were refused with `code -1`, which
/// tells a client to have the buyer enter the card again: a business refusal (`code 1`) as on
/// `onetime`, nothing written or sent to KCP; from 50,000 the same key charges in instalments.
#[tokio::test]
async fn instalments_under_50000_won_on_again_are_a_business_refusal_not_a_card_rejection() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "quota", test_cards::SHINHAN_CREDIT).await;
    let charge = |merchant_uid: &'static str, amount: i64| {
        let (app, token) = (&app, &token);
        async move {
            app.post(
                "/subscribe/payments/again",
                Some(token),
                json!({"customer_uid": "quota", "merchant_uid": merchant_uid, "amount": amount,
                       "card_quota": 3, "name": "정기결제"}),
            )
            .await
        }
    };

    let (status, body) = charge("sub-quota-small", 1000).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    assert_eq!(
        body["message"],
        "할부결제는 50000원 이상 결제에만 가능합니다. (card_quota: 3)"
    );
    assert!(all_payments(&app).await.is_empty(), "nothing written");
    assert!(app.sandbox.ledger().is_empty(), "nothing sent to KCP");
    let (_, body) = charge("sub-quota-50000", 50_000).await;
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["card_quota"], 3, "{body}");
}

#[tokio::test]
async fn an_unknown_customer_uid_is_code_1_everywhere() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = again(&app, &token, "nobody", "sub-x", 1000).await;
    assert_eq!(body["code"], 1);
    assert_eq!(body["message"], "등록되지 않은 구매자입니다.");
    assert!(
        all_payments(&app).await.is_empty(),
        "a refused charge writes no payment"
    );
    let (status, body) = app.get("/subscribe/customers/nobody", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 1);
    assert_eq!(
        body["message"],
        "요청하신 customer_uid(nobody)로 등록된 정보를 찾을 수 없습니다."
    );
}

#[tokio::test]
async fn bad_card_data_for_a_billing_key_is_code_minus_1_before_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = register(&app, &token, "bad", "4111-1111-1111-1112").await;
    assert_eq!(body["code"], -1, "{body}");
    assert!(app.sandbox.batch_keys().is_empty());
}

#[tokio::test]
async fn re_registering_a_customer_replaces_the_key_and_deletes_the_old_one_at_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-3", test_cards::SHINHAN_CREDIT).await;
    let (_, first) = app.get("/subscribe/customers/cust-3", Some(&token)).await;
    app.advance(60);
    let body = register(&app, &token, "cust-3", test_cards::SAMSUNG_CHECK).await;
    assert_eq!(body["response"]["card_number"], "555555******4444");
    assert_eq!(
        body["response"]["inserted"], first["response"]["inserted"],
        "still registered since then: {body}"
    );
    assert!(
        body["response"]["updated"].as_i64().unwrap()
            >= first["response"]["updated"].as_i64().unwrap() + 60,
        "{body}"
    );
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys.len(), 2);
    let states: Vec<String> = keys
        .iter()
        .map(|k| format!("{:?}", k.state).to_lowercase())
        .collect();
    assert!(states.iter().any(|s| s.contains("deleted")), "{states:?}");
    let rows = key_rows(&app, "cust-3").await;
    assert!(rows[0].pg_deleted_at.is_some(), "recorded deleted at KCP");
    assert_eq!(rows[0].batch_key_sealed, "", "and erased here");
    assert_eq!(rows[0].pg_delete_tries, 1);
    assert_eq!(app.app.gateway.retry_key_deletions(10).await.unwrap(), 0);
    let (_, p) = again(&app, &token, "cust-3", "sub-3", 1000).await;
    assert_eq!(p["response"]["card_number"], "555555******4444");
}

#[tokio::test]
async fn deleting_a_customer_deletes_the_key_at_kcp_and_refuses_later_charges() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-4", test_cards::SHINHAN_CREDIT).await;
    let res = app
        .http
        .delete(app.url("/subscribe/customers/cust-4"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let (_, body) = TestApp::read(res).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["customer_uid"], "cust-4");
    let (_, body) = again(&app, &token, "cust-4", "sub-4", 1000).await;
    assert_eq!(body["code"], 1);
    assert_eq!(body["message"], "등록되지 않은 구매자입니다.");
    assert!(all_payments(&app).await.is_empty());
    let (_, body) = app.get("/subscribe/customers/cust-4", Some(&token)).await;
    assert_eq!(body["code"], 1);
    assert!(format!("{:?}", app.sandbox.batch_keys()[0].state)
        .to_lowercase()
        .contains("deleted"));
    let row = &key_rows(&app, "cust-4").await[0];
    assert_eq!(row.status, "deleted");
    assert!(
        row.pg_deleted_at.is_some(),
        "recorded deleted at KCP: {row:?}"
    );
    assert_eq!(row.pg_delete_next_at, None, "nothing left to retry");
    assert_eq!(row.batch_key_sealed, "", "a key KCP deleted is not kept");
}

/// KCP deletes the key but its answer is lost: the customer is deleted all the same (its key
/// retired here, nothing charges it), a second DELETE finds no customer as iamport answers, and
/// the resolver finishes the deletion at KCP, which answers "already deleted".
#[tokio::test]
async fn a_delete_whose_kcp_answer_is_lost_answers_deleted_and_the_resolver_finishes_it_at_kcp() {
    use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-lost", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse)
            .when("tx_type", "10005010")
            .times(1),
    );

    let lost = delete_customer(&app, &token, "cust-lost").await;

    assert_eq!(lost["code"], 0, "deleted here: {lost}");
    assert_eq!(lost["response"]["customer_uid"], "cust-lost");
    assert_eq!(app.sandbox.batch_keys()[0].state, BatchKeyState::Deleted);
    let (_, body) = again(&app, &token, "cust-lost", "sub-lost-delete", 1000).await;
    assert_eq!(body["code"], 1, "{body}");
    let retried = delete_customer(&app, &token, "cust-lost").await;
    assert_eq!(retried["code"], 1, "already deleted: {retried}");
    let row = &key_rows(&app, "cust-lost").await[0];
    assert_eq!(row.status, "deleted");
    assert_eq!(row.pg_deleted_at, None, "not confirmed by KCP: {row:?}");
    assert!(row.pg_delete_next_at.is_some(), "{row:?}");

    app.advance(openport::service::retired_keys::retry_backoff(1) + 1);
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    let row = &key_rows(&app, "cust-lost").await[0];
    assert!(row.pg_deleted_at.is_some(), "{row:?}");
    assert_eq!(row.batch_key_sealed, "");
    let (_, body) = app
        .get("/subscribe/customers/cust-lost", Some(&token))
        .await;
    assert_eq!(body["code"], 1, "{body}");
}

/// `DELETE /subscribe/customers/{uid}`.
pub async fn delete_customer(app: &TestApp, token: &str, uid: &str) -> Value {
    let res = app
        .http
        .delete(app.url(&format!("/subscribe/customers/{uid}")))
        .header("Authorization", token)
        .send()
        .await
        .unwrap();
    TestApp::read(res).await.1
}

/// The customer is registered again while KCP is still deleting its old key for a DELETE: the
/// delete retired that key (and revoked the schedules) before it called KCP, so the registration
/// is a new customer after the delete, as if sent after it: the DELETE answers the customer it
/// deleted, the new card stays registered and chargeable, and only the old key is deleted at KCP.
#[tokio::test]
async fn a_registration_made_while_kcp_deletes_the_old_key_is_a_new_customer_after_the_delete() {
    use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
    // KCP's delete is held long enough for the whole registration to run meanwhile.
    let app = crate::helpers::spawn_app_with(|c| {
        c.kcp.timeout_ms = 4_000;
        c.resolver.settle_secs = 15;
    })
    .await;
    let token = app.token().await;
    register(&app, &token, "cust-race", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::Delay { ms: 2_500 })
            .when("tx_type", "10005010")
            .times(1),
    );

    let delete = delete_customer(&app, &token, "cust-race");
    let re_register = async {
        // Once the delete has reached KCP (its fault is used up), the customer gets a new card.
        app.until_the_faults_are_used().await;
        register(&app, &token, "cust-race", test_cards::SAMSUNG_CHECK).await
    };
    let (deleted, registered) = tokio::join!(delete, re_register);

    assert_eq!(registered["code"], 0, "{registered}");
    assert_eq!(deleted["code"], 0, "{deleted}");
    assert_eq!(
        deleted["response"]["card_number"], "411111******1111",
        "the customer it deleted: {deleted}"
    );
    let (_, body) = app
        .get("/subscribe/customers/cust-race", Some(&token))
        .await;
    assert_eq!(
        body["response"]["card_number"], "555555******4444",
        "{body}"
    );
    let (_, paid) = again(&app, &token, "cust-race", "sub-race", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let keys = app.sandbox.batch_keys();
    assert_eq!(
        keys.iter().map(|k| k.state).collect::<Vec<_>>(),
        [BatchKeyState::Deleted, BatchKeyState::Active],
        "{keys:?}"
    );
}

/// Two deletes of one customer at once: one deletes it and answers "deleted", the other finds no
/// customer left, as a delete sent after it would (iamport's answer to a deleted customer); KCP
/// deletes the key.
#[tokio::test]
async fn two_deletes_of_one_customer_at_once_delete_it_once() {
    use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-twice", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::Delay { ms: 500 })
            .when("tx_type", "10005010")
            .times(1),
    );
    let slow = delete_customer(&app, &token, "cust-twice");
    let fast = async {
        app.until_the_faults_are_used().await;
        delete_customer(&app, &token, "cust-twice").await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(slow["code"], 0, "{slow}");
    assert_eq!(fast["code"], 1, "{fast}");
    assert_eq!(
        fast["message"],
        "요청하신 customer_uid(cust-twice)로 등록된 정보를 찾을 수 없습니다."
    );
    let (_, body) = app
        .get("/subscribe/customers/cust-twice", Some(&token))
        .await;
    assert_eq!(body["code"], 1, "{body}");
    assert_eq!(app.sandbox.batch_keys()[0].state, BatchKeyState::Deleted);
    assert!(key_rows(&app, "cust-twice").await[0]
        .pg_deleted_at
        .is_some());
}

#[tokio::test]
async fn a_multi_get_of_customers_answers_207_and_404_and_a_repeated_uid_once() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "m-1", test_cards::SHINHAN_CREDIT).await;
    let (status, body) = app
        .get(
            "/subscribe/customers?customer_uid[]=m-1&customer_uid[]=m-2",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["response"].as_array().unwrap().len(), 1);
    let (status, body) = app
        .get(
            "/subscribe/customers?customer_uid[]=m-1&customer_uid[]=m-1",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"].as_array().unwrap().len(), 1, "{body}");
    let (status, _) = app
        .get("/subscribe/customers?customer_uid[]=m-2", Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn parallel_again_calls_with_one_merchant_uid_charge_once() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-5", test_cards::SHINHAN_CREDIT).await;
    let calls = (0..16).map(|_| again(&app, &token, "cust-5", "sub-race", 1000));
    let results = futures::future::join_all(calls).await;
    let paid = results
        .iter()
        .filter(|(_, b)| b["response"]["status"] == "paid")
        .count();
    assert_eq!(paid, 1, "{results:?}");
    assert_eq!(app.sandbox.ledger().len(), 1);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_billing_payment_can_be_cancelled_partly() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-6", test_cards::SHINHAN_CREDIT).await;
    let (_, p) = again(&app, &token, "cust-6", "sub-6", 10000).await;
    let (_, c) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["response"]["imp_uid"], "amount": 2500}),
        )
        .await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["cancel_amount"], 2500);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn rotating_the_master_key_loses_no_billing_key_and_no_merchant_secret() {
    use base64::Engine;
    use secrecy::SecretString;
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (old_key, new_key) = (b64(1), b64(2));
    let ok = old_key.clone();
    let first =
        crate::helpers::spawn_app_with(move |c| c.master_key = Some(SecretString::from(ok))).await;
    let token = first.token().await;
    register(&first, &token, "rot", test_cards::SHINHAN_CREDIT).await;
    // A replaced key, deleted at KCP, leaves an erased row, which a rotation skips.
    register(&first, &token, "rot", test_cards::SAMSUNG_CHECK).await;
    assert_eq!(key_rows(&first, "rot").await[0].batch_key_sealed, "");

    // The new key is current, the old one still accepted.
    let (nk, okey) = (new_key.clone(), old_key.clone());
    let rotated = first
        .another_instance(move |c| {
            c.master_key = Some(SecretString::from(nk));
            c.previous_master_keys = Some(SecretString::from(okey));
        })
        .await;
    let token = rotated.token().await; // upgrades the imp_secret hash
    let (_, paid) = again(&rotated, &token, "rot", "rot-1", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let report = rotated.app.gateway.reseal_secrets().await.unwrap();
    assert_eq!(report.billing_keys, 1);
    assert!(report.merchants >= 1);
    assert_eq!(
        report.access_tokens, 1,
        "the live token getToken hands out again"
    );

    // The old key is gone: everything still works.
    let only_new = first
        .another_instance(move |c| c.master_key = Some(SecretString::from(new_key)))
        .await;
    let token = only_new.token().await;
    let (_, paid) = again(&only_new, &token, "rot", "rot-2", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(first.sandbox.ledger().len(), 2);
}

#[tokio::test]
async fn onetime_with_a_customer_uid_pays_and_stores_the_card_as_a_billing_key() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "ot-key", "amount": 5000, "card_number": test_cards::SHINHAN_CREDIT,
                   "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00", "customer_uid": "ot-cust"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid");
    assert_eq!(body["response"]["customer_uid"], "ot-cust");
    // A payment storing its card as a billing key is on iamport's KCP billing channel.
    assert_eq!(body["response"]["pg_provider"], "kcp_billing", "{body}");
    let (_, c) = app.get("/subscribe/customers/ot-cust", Some(&token)).await;
    assert_eq!(c["response"]["card_number"], "411111******1111");
    let (_, again_body) = again(&app, &token, "ot-cust", "ot-again", 5000).await;
    assert_eq!(again_body["response"]["status"], "paid");
}

pub(crate) async fn all_payments(app: &TestApp) -> Vec<openport::store::entity::payment::Model> {
    openport::store::payments::all_payments(&app.app.gateway.db.read)
        .await
        .unwrap()
}

/// `onetime` with card B for a customer registered with card A.
async fn onetime_keeping(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
    amount: i64,
    card_quota: i64,
) -> Value {
    app.post(
        "/subscribe/payments/onetime",
        Some(token),
        json!({"merchant_uid": merchant_uid, "amount": amount, "card_quota": card_quota,
               "card_number": test_cards::SAMSUNG_CHECK, "expiry": future_expiry(),
               "birth": "800101", "pwd_2digit": "00", "customer_uid": "keep-a",
               "buyer_name": "김철수"}),
    )
    .await
    .1
}

#[tokio::test]
async fn a_refused_onetime_with_a_customer_uid_keeps_the_customers_card_and_details() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, registered) = app
        .post(
            "/subscribe/customers/keep-a",
            Some(&token),
            json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "birth": "800101", "pwd_2digit": "00", "customer_id": "member-7",
                   "customer_name": "홍길동", "customer_email": "buyer@example.com"}),
        )
        .await;
    assert_eq!(registered["code"], 0, "{registered}");
    app.paid(&token, "keep-taken", 1000).await;
    app.post(
        "/payments/prepare",
        Some(&token),
        json!({"merchant_uid": "keep-prepared", "amount": 5000}),
    )
    .await;

    let taken = onetime_keeping(&app, &token, "keep-taken", 1000, 0).await;
    assert_eq!(taken["code"], 1, "merchant_uid already paid: {taken}");
    let instalment = onetime_keeping(&app, &token, "keep-quota", 10_000, 3).await;
    assert_eq!(
        instalment["code"], 1,
        "instalments under 50,000: {instalment}"
    );
    let prepared = onetime_keeping(&app, &token, "keep-prepared", 1000, 0).await;
    assert_eq!(prepared["code"], 1, "another prepared amount: {prepared}");

    let (_, c) = app.get("/subscribe/customers/keep-a", Some(&token)).await;
    assert_eq!(
        c["response"], registered["response"],
        "card A and its details"
    );
    assert_eq!(app.sandbox.batch_keys().len(), 1, "KCP issued no other key");

    // Paid, the card is kept: card B, the buyer's name, and the customer_id onetime has no
    // parameter for.
    let paid = onetime_keeping(&app, &token, "keep-paid", 1000, 0).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let (_, c) = app.get("/subscribe/customers/keep-a", Some(&token)).await;
    let c = &c["response"];
    assert_eq!(c["card_number"], paid["response"]["card_number"]);
    assert_ne!(c["card_number"], registered["response"]["card_number"]);
    assert_eq!(c["customer_name"], "김철수");
    assert_eq!(c["customer_id"], "member-7");
    assert_eq!(c["customer_email"], "buyer@example.com");
    assert_eq!(c["inserted"], registered["response"]["inserted"]);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_onetime_whose_card_kcp_will_not_keep_fails_its_charge_before_anything_is_charged() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "keep-kb", "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
                   "expiry": future_expiry(), "birth": test_cards::WRONG_BIRTH, "pwd_2digit": "00",
                   "customer_uid": "keep-kb"}),
        )
        .await;
    assert_eq!(body["code"], -1, "{body}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was charged");
    let (_, found) = app.get("/payments/find/keep-kb/failed", Some(&token)).await;
    assert_eq!(found["response"]["status"], "failed", "{found}");
    assert_eq!(found["response"]["fail_reason"], body["message"]);
    // The merchant_uid is free again.
    let paid = app.paid(&token, "keep-kb", 1000).await;
    assert_eq!(paid["status"], "paid");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_billing_key_window_whose_issuance_answer_is_lost_is_not_failed_on_a_guess_but_left_to_an_operator(
) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    // KCP issues the key; its answer never reaches openport.
    app.sandbox
        .inject(FaultRule::new(paths::ENC_PAYMENT, Fault::LoseResponse));
    let rsp = crate::checkout::request_pay(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "bw-lost", "amount": 0, "customer_uid": "bw-cust"}),
        &[("card_no", "5555555555554444"), ("card_expiry", "3112"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(
        rsp["error_code"], "F500",
        "being checked, not failed: {rsp}"
    );
    assert_eq!(app.sandbox.batch_keys().len(), 1, "KCP holds a key");
    let token = app.token().await;
    let imp_uid = rsp["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");

    // KCP has no inquiry for an issuance: the resolver cannot learn the outcome either.
    app.advance(crate::helpers::SETTLE_SECS + 60);
    app.app.gateway.resolve_due(10).await.unwrap();
    app.advance(400);
    app.app.gateway.resolve_due(10).await.unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0]
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("billing-key issuance")),
        "{open:?}"
    );
    // The operator settles it after looking in KCP's admin.
    app.app
        .gateway
        .fail_attempt_none_at_kcp(open[0].id, &open[0].order_no)
        .await
        .unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "failed");
}

/// A REST registration whose issuance answer is lost: KCP may hold a key openport never learns of
/// and cannot delete (KCP has no inquiry for an issuance). The merchant is told "not registered"
/// (code 1), and an ERROR names the customer_uid and the order number KCP issued it under, for an
/// operator to find and delete the key in KCP's admin; never the card.
#[tokio::test]
async fn a_registration_whose_issuance_answer_is_lost_logs_an_error_naming_the_order_number_for_an_operator(
) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", "12100000"),
    );

    let body = register(&app, &token, "cust-lost-issue", test_cards::SHINHAN_CREDIT).await;

    assert_eq!(body["code"], 1, "{body}");
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys.len(), 1, "KCP holds a key");
    let logs = crate::helpers::captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(&format!("ordr_idxx={}", keys[0].order_no)))
        .unwrap_or_else(|| panic!("no ERROR for the operator"));
    assert!(!line.contains("cust-lost-issue"), "no customer_uid: {line}");
    assert!(line.contains("KCP's admin"), "{line}");
    let order_no = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("ordr_idxx="))
        .unwrap_or_else(|| panic!("no order number: {line}"));
    assert!(
        logs.lines()
            .any(|l| l.contains("kcp sandbox issued batch key") && l.contains(order_no)),
        "the order number KCP issued the key under: {order_no}"
    );
    assert!(!line.contains(test_cards::SHINHAN_CREDIT), "{line}");
}

#[tokio::test]
async fn a_billing_key_issued_to_a_window_whose_attempt_was_settled_meanwhile_is_deleted_at_kcp() {
    use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
    let app = std::sync::Arc::new(spawn_app().await);
    // KCP takes its time over the issuance: the window is still waiting when its lease runs out
    // and an operator, past the settle delay, fails the attempt.
    app.sandbox.inject(FaultRule::new(
        paths::ENC_PAYMENT,
        Fault::Delay { ms: 1000 },
    ));
    let window = {
        let app = app.clone();
        tokio::spawn(async move {
            crate::checkout::request_pay(
                &app,
                json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "bw-late", "amount": 0, "customer_uid": "bw-late-cust"}),
                &[("card_no", "5555555555554444"), ("card_expiry", "3112"), ("action", "pay")],
            )
            .await
        })
    };
    app.until_the_faults_are_used().await;
    app.advance(crate::helpers::SETTLE_SECS + 10);
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    app.app
        .gateway
        .fail_attempt_none_at_kcp(open[0].id, &open[0].order_no)
        .await
        .unwrap();

    // KCP's key then reaches the window: stored nowhere, so deleted at KCP.
    let rsp = window.await.unwrap();
    assert_eq!(rsp["success"], false, "{rsp}");
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].state, BatchKeyState::Deleted, "{keys:?}");
    let token = app.token().await;
    let (_, c) = app
        .get("/subscribe/customers/bw-late-cust", Some(&token))
        .await;
    assert_eq!(c["code"], 1, "{c}");
}

/// The customer's billing-key rows, oldest first (active, replaced and deleted ones).
pub async fn key_rows(
    app: &TestApp,
    uid: &str,
) -> Vec<openport::store::entity::billing_key::Model> {
    use openport::store::entity::billing_key;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    billing_key::Entity::find()
        .filter(billing_key::Column::CustomerUid.eq(uid))
        .order_by_asc(billing_key::Column::Id)
        .all(&app.app.gateway.db.read)
        .await
        .unwrap()
}

/// The sandbox's record of the batch key a row holds sealed (found by its digest).
pub(crate) fn kcp_state_of(
    app: &TestApp,
    row: &openport::store::entity::billing_key::Model,
) -> kcp_sandbox::BatchKeyState {
    let key = app
        .app
        .gateway
        .secrets
        .open_string(&row.batch_key_sealed)
        .expect("sealed key");
    app.sandbox
        .batch_key(&key)
        .expect("a key the sandbox issued")
        .state
}

/// KCP fails the delete of the replaced key (an error page, nothing done): the re-registration
/// still answers with the new key, the old one stays pending, and a resolver pass after the
/// backoff deletes it at KCP and erases it here.
#[tokio::test]
async fn a_replaced_key_whose_delete_fails_at_kcp_is_deleted_by_a_later_resolver_pass() {
    use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-retry", test_cards::SHINHAN_CREDIT).await;
    let old = key_rows(&app, "cust-retry").await.remove(0);
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::HttpStatus { status: 503 })
            .when("tx_type", "10005010")
            .times(1),
    );

    let body = register(&app, &token, "cust-retry", test_cards::SAMSUNG_CHECK).await;
    assert_eq!(body["code"], 0, "{body}");
    assert!(app.sandbox.armed_faults().is_empty(), "KCP was asked");
    assert_eq!(kcp_state_of(&app, &old), BatchKeyState::Active);
    let rows = key_rows(&app, "cust-retry").await;
    let pending = &rows[0];
    assert_eq!(pending.status, "replaced");
    assert_eq!(pending.pg_deleted_at, None);
    assert_eq!(pending.pg_delete_tries, 1);
    assert!(pending.pg_delete_next_at.is_some(), "{pending:?}");

    // Not before its backoff.
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    assert_eq!(kcp_state_of(&app, &old), BatchKeyState::Active);
    app.advance(openport::service::retired_keys::retry_backoff(1) + 1);
    assert_eq!(app.app.gateway.retry_key_deletions(10).await.unwrap(), 1);

    assert_eq!(kcp_state_of(&app, &old), BatchKeyState::Deleted);
    let rows = key_rows(&app, "cust-retry").await;
    let deleted = &rows[0];
    assert!(deleted.pg_deleted_at.is_some(), "{deleted:?}");
    assert_eq!(deleted.pg_delete_next_at, None);
    assert_eq!(
        deleted.batch_key_sealed, "",
        "a key KCP deleted is not kept"
    );
    assert_eq!(kcp_state_of(&app, &rows[1]), BatchKeyState::Active);
    let (_, paid) = again(&app, &token, "cust-retry", "sub-retry", 1000).await;
    assert_eq!(
        paid["response"]["card_number"], "555555******4444",
        "{paid}"
    );
    assert_eq!(app.app.gateway.retry_key_deletions(10).await.unwrap(), 0);
}

/// KCP deletes the replaced key but its answer is lost: the retry meets "already deleted" (8303),
/// which counts as deleted.
#[tokio::test]
async fn a_replaced_key_whose_delete_answer_was_lost_is_recorded_deleted_when_kcp_says_already_deleted(
) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-lost-old", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse)
            .when("tx_type", "10005010")
            .times(1),
    );
    register(&app, &token, "cust-lost-old", test_cards::SAMSUNG_CHECK).await;
    assert!(key_rows(&app, "cust-lost-old").await[0]
        .pg_deleted_at
        .is_none());

    app.advance(openport::service::retired_keys::retry_backoff(1) + 1);
    app.app.gateway.retry_key_deletions(10).await.unwrap();

    let old = &key_rows(&app, "cust-lost-old").await[0];
    assert!(old.pg_deleted_at.is_some(), "{old:?}");
    assert_eq!(old.pg_delete_tries, 2);
    assert_eq!(old.batch_key_sealed, "");
}

/// A customer_uid is the merchant's choice, often an email address or a phone number: personal
/// data, which logs never carry (design.md §4). An issuance that could not be sent is logged by
/// its merchant and order number, a retired key KCP already deleted by its merchant and key id.
#[tokio::test]
async fn an_issuance_never_sent_and_a_retired_key_already_deleted_at_kcp_log_no_customer_uid() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    let cut_off = app.cut_off_from_kcp().await;
    let token = cut_off.token().await;
    let not_sent = register(
        &cut_off,
        &token,
        "buyer.not-sent@example.com",
        test_cards::SHINHAN_CREDIT,
    )
    .await;
    assert_eq!(not_sent["code"], 1, "{not_sent}");

    let token = app.token().await;
    let uid = "buyer.replaced@example.com";
    register(&app, &token, uid, test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse)
            .when("tx_type", "10005010")
            .times(1),
    );
    register(&app, &token, uid, test_cards::SAMSUNG_CHECK).await;
    app.advance(openport::service::retired_keys::retry_backoff(1) + 1);
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    let old = &key_rows(&app, uid).await[0];
    assert!(old.pg_deleted_at.is_some(), "{old:?}");

    let logs = crate::helpers::captured_logs();
    let logged = |message: &str| logs.lines().any(|l| l.contains(message));
    assert!(
        logged("batch key issuance not sent"),
        "the refusal is logged"
    );
    assert!(
        logged("batch key was already deleted at KCP"),
        "the deletion is logged"
    );
    for uid in ["buyer.not-sent@example.com", uid] {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(uid)).collect();
        assert!(lines.is_empty(), "{uid} logged: {lines:#?}");
    }
}

/// A delete KCP keeps failing is tried [`KEY_DELETE_TRIES`] times in all, then given up with an
/// ERROR naming the customer_uid for an operator; no more calls are made.
#[tokio::test]
async fn a_replaced_key_kcp_keeps_failing_to_delete_is_given_up_after_the_bound_with_an_error() {
    use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
    use openport::service::retired_keys::{retry_backoff, KEY_DELETE_TRIES};
    const ARMED: u32 = 100;
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-give-up", test_cards::SHINHAN_CREDIT).await;
    let old = key_rows(&app, "cust-give-up").await.remove(0);
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::HttpStatus { status: 503 })
            .when("tx_type", "10005010")
            .times(ARMED),
    );
    register(&app, &token, "cust-give-up", test_cards::SAMSUNG_CHECK).await;
    let calls = || ARMED - app.sandbox.armed_faults().first().map_or(0, |r| r.times);
    assert_eq!(calls(), 1);

    for tries in 1..KEY_DELETE_TRIES {
        app.advance(retry_backoff(tries) + 1);
        app.app.gateway.retry_key_deletions(10).await.unwrap();
        assert_eq!(calls(), (tries + 1) as u32);
    }
    let given_up = &key_rows(&app, "cust-give-up").await[0];
    assert_eq!(given_up.pg_delete_tries, KEY_DELETE_TRIES);
    assert_eq!(given_up.pg_delete_next_at, None, "{given_up:?}");
    assert_eq!(given_up.pg_deleted_at, None);
    assert_eq!(kcp_state_of(&app, given_up), BatchKeyState::Active);
    app.advance(retry_backoff(KEY_DELETE_TRIES) * 10);
    assert_eq!(app.app.gateway.retry_key_deletions(10).await.unwrap(), 0);
    assert_eq!(calls(), KEY_DELETE_TRIES as u32, "no call after giving up");

    let logs = crate::helpers::captured_logs();
    let line = logs
        .lines()
        .find(|l| {
            l.contains("gave up deleting a retired billing key")
                && l.contains(&format!("key_id={}", old.id))
        })
        .unwrap_or_else(|| panic!("no ERROR for the operator"));
    assert!(line.contains("ERROR"), "{line}");
    let key = app
        .app
        .gateway
        .secrets
        .open_string(&old.batch_key_sealed)
        .unwrap();
    assert!(!logs.contains(&key), "the key itself is never logged");
}

/// iamport answers an unknown customer_uid's DELETE as its GET (spec/iamport-v1.md §2: observed
/// live, HTTP 200 code 1), and so does a customer already deleted; KCP is not called.
#[tokio::test]
async fn deleting_an_unknown_or_already_deleted_customer_is_code_1_with_iamports_message() {
    let app = spawn_app().await;
    let token = app.token().await;
    let res = app
        .http
        .delete(app.url("/subscribe/customers/nobody-here"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let (status, body) = TestApp::read(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    assert_eq!(
        body["message"],
        "요청하신 customer_uid(nobody-here)로 등록된 정보를 찾을 수 없습니다."
    );
    assert!(body["response"].is_null(), "{body}");
    assert!(app.sandbox.batch_keys().is_empty());

    register(&app, &token, "gone-once", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(delete_customer(&app, &token, "gone-once").await["code"], 0);
    let again_deleted = delete_customer(&app, &token, "gone-once").await;
    assert_eq!(again_deleted["code"], 1, "{again_deleted}");
    assert_eq!(
        again_deleted["message"],
        "요청하신 customer_uid(gone-once)로 등록된 정보를 찾을 수 없습니다."
    );
}

/// KCP approves the billing-key charge but its answer never arrives: the request asks KCP (by
/// order number) before answering, so the merchant is told `paid` from KCP's word, not a guess;
/// a resolver pass afterwards finds nothing open, and the buyer is charged once.
#[tokio::test]
async fn an_again_whose_kcp_answer_is_lost_is_answered_paid_from_kcps_inquiry_and_charged_once() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-again-lost", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", "11511000"),
    );
    let (status, body) = again(&app, &token, "cust-again-lost", "sub-lost", 4900).await;
    assert!(app.sandbox.armed_faults().is_empty(), "the answer was lost");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(body["response"]["pg_tid"], ledger[0].tno.as_str());

    app.advance(crate::helpers::SETTLE_SECS + 1);
    app.resolve_all().await;
    let (_, retry) = again(&app, &token, "cust-again-lost", "sub-lost", 4900).await;
    assert_eq!(retry["code"], 1, "already paid: {retry}");
    assert_eq!(app.sandbox.ledger().len(), 1, "charged once");
    let paid: Vec<_> = all_payments(&app)
        .await
        .into_iter()
        .filter(|p| p.merchant_uid == "sub-lost" && p.status == "paid")
        .collect();
    assert_eq!(paid.len(), 1);
    app.assert_ledger_agrees().await;
}

/// The answer is lost and the request's own inquiry fails too: the merchant gets code 1 naming
/// the imp_uid (the outcome is not known, nothing is guessed), the payment stays `ready`, a retry
/// of the merchant_uid charges nothing, and the resolver settles it from KCP's word. A merchant
/// told "not known" was not told "paid", so the approval KCP holds is net-cancelled, as for
/// `onetime` (only a scheduled charge, whose merchant was told nothing, is honoured): KCP and
/// openport agree on one approval, cancelled, and a failed payment.
#[tokio::test]
async fn an_again_whose_answer_and_inquiry_are_lost_is_code_1_then_settled_once_by_the_resolver() {
    use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "cust-again-dark", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", "11511000"),
    );
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let (status, body) = again(&app, &token, "cust-again-dark", "sub-dark", 4900).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 1, "{body}");
    assert!(body["response"].is_null(), "{body}");
    let imp_uid = &crate::helpers::imp_uid_in(&body["message"]);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    let (_, retry) = again(&app, &token, "cust-again-dark", "sub-dark", 4900).await;
    assert_eq!(retry["code"], 1, "still being checked: {retry}");
    assert_eq!(app.sandbox.ledger().len(), 1, "no second charge");

    app.advance(crate::helpers::SETTLE_SECS + 1);
    app.resolve_all().await;
    let token = app.token().await;
    let p = app.payment(&token, imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].state, TransactionState::Cancelled);
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str());
    app.assert_ledger_agrees().await;
}

/// A re-registration whose `COMMIT` fails (every statement having succeeded) stores nothing: the
/// customer keeps the card it had, chargeable, and the key KCP just issued is read back as not
/// stored and deleted at KCP.
#[tokio::test]
async fn a_re_registration_whose_commit_fails_keeps_the_old_card_and_deletes_the_new_key_at_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let first = register(&app, &token, "commit-cust", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(first["code"], 0, "{first}");
    refuse_commits_of_keys(&app, "commit-cust").await;

    let second = register(&app, &token, "commit-cust", test_cards::SAMSUNG_CHECK).await;
    assert_ne!(second["code"], 0, "{second}");
    let (_, found) = app
        .get("/subscribe/customers/commit-cust", Some(&token))
        .await;
    assert_eq!(
        found["response"]["card_number"], first["response"]["card_number"],
        "{found}"
    );
    let mut states: Vec<_> = app
        .sandbox
        .batch_keys()
        .into_iter()
        .map(|k| (k.masked_card_no, format!("{:?}", k.state)))
        .collect();
    states.sort();
    let old = first["response"]["card_number"]
        .as_str()
        .unwrap()
        .to_string();
    let new = states
        .iter()
        .find(|(card, _)| *card != old)
        .unwrap()
        .0
        .clone();
    assert_eq!(
        states.iter().find(|(card, _)| *card == old).unwrap().1,
        "Active",
        "the customer's card stays chargeable: {states:?}"
    );
    assert_eq!(
        states.iter().find(|(card, _)| *card == new).unwrap().1,
        "Deleted",
        "the unstored key is not: {states:?}"
    );
    let (_, paid) = again(&app, &token, "commit-cust", "commit-cust-1", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
}

/// Makes the database refuse every billing key row for which the SQL condition `refuse` (on
/// `NEW`) holds, as a failed write would: the `INSERT` fails.
pub(crate) async fn refuse_key_inserts(app: &TestApp, refuse: &str) {
    refuse_writes(app, "refuse_keys", "INSERT", "billing_keys", refuse).await;
}

/// Makes the `COMMIT` of every transaction that inserts an active key for `customer_uid` fail,
/// after its statements all succeeded: the insert adds a row breaking a deferred foreign key,
/// which both databases check only at `COMMIT`, and then roll the whole transaction back.
pub(crate) async fn refuse_commits_of_keys(app: &TestApp, customer_uid: &str) {
    let table = "CREATE TABLE refused_commits \
                 (key_id BIGINT REFERENCES billing_keys (id) DEFERRABLE INITIALLY DEFERRED)";
    let when = format!("NEW.customer_uid = '{customer_uid}' AND NEW.status = 'active'");
    let statements = if app.database_url.starts_with("postgres") {
        vec![
            table.to_string(),
            format!(
                "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF {when} THEN INSERT INTO refused_commits VALUES (-1); END IF; RETURN NEW; END $$"
            ),
            "CREATE TRIGGER refuse_commit AFTER INSERT ON billing_keys FOR EACH ROW \
             EXECUTE FUNCTION refuse_commit()"
                .to_string(),
        ]
    } else {
        vec![
            table.to_string(),
            format!(
                "CREATE TRIGGER refuse_commit AFTER INSERT ON billing_keys WHEN {when} \
                 BEGIN INSERT INTO refused_commits VALUES (-1); END"
            ),
        ]
    };
    execute(app, statements).await;
}

#[tokio::test]
async fn a_key_kcp_issued_that_could_not_be_stored_is_deleted_at_kcp_not_left_chargeable() {
    let app = spawn_app().await;
    let token = app.token().await;
    // The database refuses the customer's active key (as a failed write or a lost race would),
    // and for `unstored-all` every row: the retired record too.
    refuse_key_inserts(
        &app,
        "NEW.customer_uid LIKE 'unstored-%' \
         AND (NEW.status = 'active' OR NEW.customer_uid = 'unstored-all')",
    )
    .await;

    let body = register(&app, &token, "unstored-one", test_cards::SHINHAN_CREDIT).await;
    assert_ne!(body["code"], 0, "{body}");
    assert_eq!(body["response"], Value::Null, "{body}");
    let (_, found) = app
        .get("/subscribe/customers/unstored-one", Some(&token))
        .await;
    assert_eq!(found["code"], 1, "not registered: {found}");
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        format!("{:?}", keys[0].state),
        "Deleted",
        "KCP holds no chargeable key"
    );
    let rows = key_rows(&app, "unstored-one").await;
    assert_eq!(rows.len(), 1, "recorded as a retired key");
    assert_eq!(rows[0].status, "replaced");
    assert!(rows[0].pg_deleted_at.is_some());
    assert_eq!(rows[0].batch_key_sealed, "", "erased once KCP deleted it");

    let body = register(&app, &token, "unstored-all", test_cards::SAMSUNG_CHECK).await;
    assert_ne!(body["code"], 0, "{body}");
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter().all(|k| format!("{:?}", k.state) == "Deleted"),
        "deleted at KCP though nothing could be written"
    );
    assert!(key_rows(&app, "unstored-all").await.is_empty());
}

/// A customer re-registered while a charge with the old key is on its way to KCP: the old key's
/// deletion at KCP waits for that charge to settle, so the charge is not refused (and announced
/// failed) for a key deleted under it; the key is deleted once it has.
#[tokio::test]
async fn a_replaced_key_is_deleted_at_kcp_only_once_a_charge_made_with_it_has_settled() {
    use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
    // The charge waits at KCP for the whole re-registration: a KCP timeout long enough for that
    // on a loaded machine (and a settle delay longer than the attempt hold it makes).
    let app = crate::helpers::spawn_app_with(|c| {
        c.kcp.timeout_ms = 10_000;
        c.resolver.settle_secs = 60;
    })
    .await;
    let token = app.token().await;
    let first = register(&app, &token, "cust-inflight", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(first["code"], 0, "{first}");
    // The charge is held at KCP, not processed yet, until the re-registration below has answered.
    let gate = "charge-with-the-old-key";
    app.sandbox.inject(
        FaultRule::new(
            paths::HUB_PAYMENT,
            Fault::HoldRequest {
                gate: gate.to_string(),
            },
        )
        .when("card_tx_type", "11511000"),
    );
    let charging = {
        let app_url = app.url("/subscribe/payments/again");
        let http = app.http.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let res = http
                .post(app_url)
                .header("Authorization", token)
                .json(&json!({"customer_uid": "cust-inflight", "merchant_uid": "inflight-1", "amount": 1000, "name": "정기결제"}))
                .send()
                .await
                .unwrap();
            crate::helpers::TestApp::read(res).await.1
        })
    };
    app.sandbox.until_held(gate).await; // the charge read the old key and is at KCP
    let second = register(&app, &token, "cust-inflight", test_cards::SAMSUNG_CHECK).await;
    assert_eq!(second["code"], 0, "{second}");
    app.sandbox.open_gate(gate);

    let charged = charging.await.unwrap();
    assert_eq!(charged["response"]["status"], "paid", "{charged}");
    let old = first["response"]["card_number"]
        .as_str()
        .unwrap()
        .to_string();
    let state_of_old = |app: &TestApp| {
        app.sandbox
            .batch_keys()
            .into_iter()
            .find(|k| k.masked_card_no == old)
            .unwrap()
            .state
    };
    assert_eq!(
        state_of_old(&app),
        BatchKeyState::Active,
        "kept while charged"
    );

    app.advance(app.app.gateway.settings.lease_secs + 1);
    app.app.gateway.retry_key_deletions(100).await.unwrap();
    assert_eq!(
        state_of_old(&app),
        BatchKeyState::Deleted,
        "deleted once settled"
    );
    app.assert_ledger_agrees().await;
}

/// How many rows `table` holds.
async fn rows_in(app: &TestApp, table: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &app.app.gateway.db.read;
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    db.query_one(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap()
}

/// The group ids of the sandbox's batch keys, in issuance order.
fn kcp_groups(app: &TestApp) -> Vec<String> {
    app.sandbox
        .batch_keys()
        .into_iter()
        .map(|k| k.group_id)
        .collect()
}

/// KCP keeps a batch key in the group it was issued under and finds it, for a charge
/// (`bt_group_id`) or a deletion (`group_id`), only in that group (spec/kcp.md §2.6; the sandbox
/// does the same): a paid `again` and a deleted key show which group openport sent.
#[tokio::test]
async fn billing_keys_are_issued_charged_and_deleted_in_the_merchants_own_kcp_group() {
    // The demo merchant from KCP_GROUP_ID, a second one made with its own group.
    let app =
        crate::helpers::spawn_app_with(|c| c.kcp.group_id = Some("T00001000489".into())).await;
    let token = app.token().await;
    let (key, secret) = app.merchant_in_group("T00007654321").await;
    let other = app.token_for(&key, &secret).await;

    let body = register(&app, &token, "grp-1", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(body["code"], 0, "{body}");
    let body = register(&app, &other, "grp-2", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(kcp_groups(&app), ["T00001000489", "T00007654321"]);
    assert_eq!(key_rows(&app, "grp-1").await[0].group_id, "T00001000489");

    let (_, paid) = again(&app, &token, "grp-1", "grp-1-a", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let (_, paid) = again(&app, &other, "grp-2", "grp-2-a", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(app.sandbox.ledger().len(), 2);

    let deleted = delete_customer(&app, &token, "grp-1").await;
    assert_eq!(deleted["code"], 0, "{deleted}");
    let row = &key_rows(&app, "grp-1").await[0];
    assert!(row.pg_deleted_at.is_some(), "deleted at KCP: {row:?}");
    assert_eq!(
        app.sandbox.batch_keys()[0].state,
        kcp_sandbox::BatchKeyState::Deleted
    );
}

/// A key keeps the group it was issued under when the merchant's group changes
/// (`openport merchant set-group-id`); keys issued afterwards get the new one.
#[tokio::test]
async fn a_changed_kcp_group_applies_to_new_billing_keys_and_earlier_keys_keep_theirs() {
    let app =
        crate::helpers::spawn_app_with(|c| c.kcp.group_id = Some("T00001000489".into())).await;
    let token = app.token().await;
    register(&app, &token, "before", test_cards::SHINHAN_CREDIT).await;

    openport::service::merchants::set_kcp_group_id(
        &app.app.gateway.db,
        openport::service::merchants::DEMO_IMP_CODE,
        "T00002000002",
    )
    .await
    .unwrap();
    // An instance that has not cached the merchant row (the CLI's change reaches running
    // instances within a minute).
    let changed = app.another_instance(|_| {}).await;
    let token = changed.token().await;
    let body = register(&changed, &token, "after", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(kcp_groups(&app), ["T00001000489", "T00002000002"]);

    let (_, paid) = again(&changed, &token, "before", "before-a", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let (_, paid) = again(&changed, &token, "after", "after-a", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
}

/// The billing-key window sends the merchant's group (`kcp_group_id`) and stores the key KCP
/// issued there under it.
#[tokio::test]
async fn the_billing_key_window_issues_the_key_in_the_merchants_kcp_group() {
    let app =
        crate::helpers::spawn_app_with(|c| c.kcp.group_id = Some("T00001000489".into())).await;
    let rsp = crate::checkout::request_pay(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "grp-window", "amount": 0, "customer_uid": "grp-wc"}),
        &[("card_no", "5555555555554444"), ("card_expiry", "3112"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(kcp_groups(&app), ["T00001000489"]);
    assert_eq!(key_rows(&app, "grp-wc").await[0].group_id, "T00001000489");
    let token = app.token().await;
    let (_, paid) = again(&app, &token, "grp-wc", "grp-wc-a", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
}

/// A live instance (calling the test instance's sandbox as its KCP) whose merchant was made from
/// `KCP_*` without `KCP_GROUP_ID`: a made-up group would be one the merchant does not have at
/// real KCP, so its billing keys are refused before KCP is called, with nothing written, until
/// an operator sets the group.
#[tokio::test]
async fn a_live_merchant_without_a_kcp_group_gets_no_billing_key_and_kcp_is_not_called() {
    use base64::Engine;
    use secrecy::{ExposeSecret, SecretString};
    let test = spawn_app().await;
    let live_mode = |c: &mut openport::config::Config| {
        c.test_mode = false;
        c.master_key = Some(SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
        ));
        c.public_url = Some("https://pay.example.com".into());
    };
    let live = test.another_instance(live_mode).await;
    let created = live.app.demo.as_ref().expect("the live merchant of KCP_*");
    assert!(!created.merchant.test_mode && created.merchant.kcp_group_id.is_none());
    let imp_code = created.merchant.imp_code.clone();
    let (imp_key, secret) = (
        created.merchant.imp_key.clone(),
        created.imp_secret.expose_secret().to_string(),
    );
    let token = live.token_for(&imp_key, &secret).await;

    let (status, body) = live
        .post(
            "/subscribe/customers/live-c",
            Some(&token),
            json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "birth": "800101", "pwd_2digit": "00"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    assert_eq!(
        body["message"],
        "KCP 배치키 그룹아이디가 설정되지 않았습니다 (openport merchant set-group-id)."
    );
    // The billing-key window too, before any payment is opened.
    let (_, started) = live
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": imp_code, "mobile": false, "page_url": "https://shop.example.com/cart",
                   "params": {"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "live-w",
                              "amount": 0, "customer_uid": "live-wc"}}),
        )
        .await;
    assert_eq!(started["code"], 1, "{started}");
    assert!(
        started["message"]
            .as_str()
            .is_some_and(|m| m.contains("set-group-id")),
        "{started}"
    );
    // And a key-in charge that would keep the card as a customer's key, before it opens.
    let (_, charged) = live
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "live-o", "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
                   "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00",
                   "customer_uid": "live-oc"}),
        )
        .await;
    assert_eq!(charged["code"], 1, "{charged}");
    assert!(test.sandbox.batch_keys().is_empty(), "KCP was called");
    assert!(test.sandbox.ledger().is_empty(), "KCP was called");
    for table in [
        "billing_keys",
        "payments",
        "pg_attempts",
        "checkout_sessions",
    ] {
        assert_eq!(rows_in(&test, table).await, 0, "{table}");
    }

    // Once the operator sets it (a group of the merchant's own site: KCP refuses another site's),
    // an instance reading the merchant again issues keys in it.
    let group_id = format!("{}1000489", crate::helpers::LIVE_SITE_CD);
    openport::service::merchants::set_kcp_group_id(&test.app.gateway.db, &imp_code, &group_id)
        .await
        .unwrap();
    let set = test.another_instance(live_mode).await;
    let token = set.token_for(&imp_key, &secret).await;
    let body = register(&set, &token, "live-c", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(kcp_groups(&test), [group_id]);
}

/// `KCP_GROUP_ID` reaches the live merchant `serve` makes from `KCP_*`.
#[tokio::test]
async fn the_live_merchant_made_from_kcp_settings_takes_kcp_group_id() {
    use base64::Engine;
    use secrecy::SecretString;
    let test = spawn_app().await;
    let live = test
        .another_instance(|c| {
            c.test_mode = false;
            c.master_key = Some(SecretString::from(
                base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
            ));
            c.public_url = Some("https://pay.example.com".into());
            c.kcp.group_id = Some("T00001000489".into());
        })
        .await;
    let created = live.app.demo.as_ref().expect("the live merchant of KCP_*");
    assert_eq!(
        created.merchant.kcp_group_id.as_deref(),
        Some("T00001000489")
    );
}

#[tokio::test]
async fn a_kcp_group_id_that_is_not_1_to_20_letters_and_digits_is_refused_and_nothing_is_stored() {
    use openport::service::merchants::{set_kcp_group_id, NewMerchant, DEMO_IMP_CODE};
    use openport::service::ServiceError;
    use secrecy::SecretString;
    let app = spawn_app().await;
    let (cert, key_path, passphrase) = crate::helpers::kcp_test_credentials();
    let key = std::fs::read_to_string(key_path).unwrap();
    let merchants_before = rows_in(&app, "merchants").await;
    for refused in [
        "",
        "T0000-1000489",
        "T00001000489 ",
        "T000010004891000489XY",
    ] {
        let made = app
            .app
            .gateway
            .create_merchant(NewMerchant {
                name: "group shop".into(),
                site_cd: "T0000".into(),
                certificate_pem: cert.clone(),
                private_key_pem: key.clone(),
                private_key_passphrase: SecretString::from(passphrase.clone()),
                test_mode: true,
                credentials: None,
                kcp_api_base: None,
                kcp_group_id: Some(refused.into()),
            })
            .await;
        assert!(
            matches!(&made, Err(ServiceError::BadRequest(m)) if m.contains("kcp_group_id")),
            "{refused:?} was taken"
        );
        let set = set_kcp_group_id(&app.app.gateway.db, DEMO_IMP_CODE, refused).await;
        assert!(
            matches!(&set, Err(ServiceError::BadRequest(m)) if m.contains("kcp_group_id")),
            "{refused:?} was set"
        );
    }
    assert_eq!(rows_in(&app, "merchants").await, merchants_before);
    let demo = openport::store::merchants::by_imp_code(&app.app.gateway.db.read, DEMO_IMP_CODE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(demo.kcp_group_id, None);
    let unknown = set_kcp_group_id(&app.app.gateway.db, "imp99999999", "T00001000489").await;
    assert!(
        matches!(&unknown, Err(ServiceError::NotFound(m)) if m.contains("imp99999999")),
        "{:?}",
        unknown.err()
    );
}

/// KCP refuses a batch key for a reason that is not the card (here the group id, 8301): the
/// merchant is told KCP's code and message with `code 1`, not `code -1` "카드정보 인증에
/// 실패하였습니다", which would send them checking the buyer's card; nothing is stored.
#[tokio::test]
async fn a_billing_key_refused_for_a_non_card_reason_is_code_1() {
    // openport takes any 1–20 letters and digits; KCP's group is the site code and 7 digits.
    let app = crate::helpers::spawn_app_with(|c| c.kcp.group_id = Some("T0000GROUP1".into())).await;
    let token = app.token().await;

    let body = register(&app, &token, "grp-refused", test_cards::SHINHAN_CREDIT).await;

    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("[8301]"), "KCP's code: {body}");
    assert!(!message.contains("카드정보"), "{body}");
    assert!(body["response"].is_null(), "{body}");
    assert!(key_rows(&app, "grp-refused").await.is_empty());
    assert!(app.sandbox.batch_keys().is_empty());
    // A card KCP refuses is still the card's fault: code -1.
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/customers/card-refused",
            Some(&token),
            json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "birth": test_cards::WRONG_BIRTH, "pwd_2digit": "00"}),
        )
        .await;
    assert_eq!(body["code"], -1, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("카드정보 인증에 실패하였습니다."),
        "{body}"
    );
}

/// A re-registration commits while an `again` that read the old key is still writing its charge
/// (PostgreSQL: a trigger holds the charge's statement in its attempt's insert): the old key must
/// not be deleted at KCP before that charge is visible, or the charge goes out with a key KCP no
/// longer holds and is refused. The charge holds the key's row locked until it commits, so the
/// re-registration's retirement waits for it and the deletion then waits for the charge.
#[tokio::test]
async fn a_key_replaced_while_a_charge_with_it_is_being_written_is_not_deleted_under_it() {
    use kcp_sandbox::BatchKeyState;
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the charge's write and the replacement one by one
    }
    let token = app.token().await;
    let first = register(&app, &token, "cust-writing", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(first["code"], 0, "{first}");
    let approval = "NEW.kind = 'approve'";
    slow_writes(&app, "slow_attempt", "INSERT", "pg_attempts", approval).await;
    let charging = {
        let url = app.url("/subscribe/payments/again");
        let http = app.http.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let res = http
                .post(url)
                .header("Authorization", token)
                .json(
                    &json!({"customer_uid": "cust-writing", "merchant_uid": "writing-1",
                              "amount": 1000, "name": "정기결제"}),
                )
                .send()
                .await
                .unwrap();
            TestApp::read(res).await.1
        })
    };
    until_a_write_is_held(&app).await; // the charge's attempt, in its transaction
    let second = register(&app, &token, "cust-writing", test_cards::SAMSUNG_CHECK).await;
    assert_eq!(second["code"], 0, "{second}");

    let charged = charging.await.unwrap();
    assert_eq!(charged["response"]["status"], "paid", "{charged}");
    assert_eq!(
        charged["response"]["card_number"], first["response"]["card_number"],
        "charged with the key it read: {charged}"
    );
    execute(
        &app,
        vec!["DROP TRIGGER slow_attempt ON pg_attempts".to_string()],
    )
    .await;
    app.advance(app.app.gateway.settings.lease_secs + 1);
    app.app.gateway.retry_key_deletions(100).await.unwrap();
    let old = &key_rows(&app, "cust-writing").await[0];
    assert!(old.pg_deleted_at.is_some(), "deleted once settled: {old:?}");
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys[0].state, BatchKeyState::Deleted);
    assert_eq!(keys[1].state, BatchKeyState::Active);
    app.assert_ledger_agrees().await;
}
