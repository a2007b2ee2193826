//! Webhook outbox (spec/iamport-v1.md §5) against a real local HTTP receiver.
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use openport::jobs::webhooks::MERCHANT_IN_FLIGHT;

use crate::helpers::{
    execute, future_expiry, spawn_app, spawn_app_with, test_cards, Received, Receiver, Tarpit,
    TestApp, ADMIN_TOKEN,
};

fn demo_merchant_id(app: &TestApp) -> i64 {
    app.app.demo.as_ref().expect("demo merchant").merchant.id
}

/// `PUT /admin/merchants/{id}/webhook` with the operator token.
async fn configure(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let id = demo_merchant_id(app);
    app.put(&format!("/admin/merchants/{id}/webhook"), ADMIN_TOKEN, body)
        .await
}

/// A paid payment, optionally with a notice_url; returns its imp_uid.
async fn paid_payment(app: &TestApp, token: &str, merchant_uid: &str, notice: Value) -> String {
    let mut body = json!({
        "merchant_uid": merchant_uid, "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
        "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00", "name": "웹훅 상품"
    });
    if !notice.is_null() {
        body["notice_url"] = notice.clone();
    }
    let (status, res) = app
        .post("/subscribe/payments/onetime", Some(token), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["response"]["status"], "paid", "{res}");
    let imp_uid = res["response"]["imp_uid"].as_str().unwrap().to_string();
    // The payment wrote its own `paid` webhook with the state change, one per URL it goes to (its
    // notice_url(s), else the merchant's URL); these tests drive the outbox with events of their
    // own, so they take those rows out after checking them.
    use openport::store::entity::{merchant, webhook_delivery};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let db = &app.app.gateway.db.read;
    let expected = match &notice {
        Value::Null => {
            let p = openport::store::payments::by_imp_uid(db, None, &imp_uid)
                .await
                .unwrap()
                .expect("the payment");
            let m = merchant::Entity::find_by_id(p.merchant_id)
                .one(db)
                .await
                .unwrap()
                .expect("its merchant");
            usize::from(m.webhook_url.is_some_and(|u| !u.trim().is_empty()))
        }
        Value::Array(urls) => urls.len(),
        _ => 1,
    };
    let own = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid.as_str()))
        .all(db)
        .await
        .unwrap();
    assert_eq!(own.len(), expected, "{own:?}");
    assert!(own.iter().all(|d| d.status == "paid"), "{own:?}");
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid.as_str()))
        .exec(&app.app.gateway.db.write)
        .await
        .unwrap();
    imp_uid
}

/// What the lead's state changes do: enqueue inside the transaction of the change.
async fn enqueue(app: &TestApp, imp_uid: &str, status: &str, cancellation_id: Option<&str>) {
    let gw = &app.app.gateway;
    let p = openport::store::payments::by_imp_uid(&gw.db.read, None, imp_uid)
        .await
        .unwrap()
        .expect("payment");
    let txn = gw.db.write.begin().await.unwrap();
    gw.enqueue_webhook(&txn, &p, status, cancellation_id)
        .await
        .unwrap();
    txn.commit().await.unwrap();
}

/// As [`enqueue`], for the `n`th of as many payments (imp_uid `{imp_uid}-{n}`): the events of one
/// payment reach a URL one at a time (`store::webhooks`), and the tests of parallel delivery need
/// webhooks none of which waits for another.
async fn enqueue_apart(
    app: &TestApp,
    imp_uid: &str,
    n: usize,
    status: &str,
    cancellation_id: Option<&str>,
) {
    let gw = &app.app.gateway;
    let mut p = openport::store::payments::by_imp_uid(&gw.db.read, None, imp_uid)
        .await
        .unwrap()
        .expect("payment");
    p.imp_uid = format!("{imp_uid}-{n}");
    let txn = gw.db.write.begin().await.unwrap();
    gw.enqueue_webhook(&txn, &p, status, cancellation_id)
        .await
        .unwrap();
    txn.commit().await.unwrap();
}

async fn deliver(app: &TestApp) -> usize {
    app.app
        .gateway
        .deliver_due_webhooks(1000)
        .await
        .expect("deliveries")
}

async fn history(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/admin/webhooks{query}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["response"].as_array().unwrap().clone()
}

fn json_body(r: &Received) -> Value {
    r.json()
}

/// The `cancellation_id` each of the webhooks received names, in the order they arrived.
fn cancellation_ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| {
            json_body(r)["cancellation_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_the_webhook_once_it_recovers() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(&[500, 503]);
    let (status, body) = configure(&app, json!({"url": receiver.url("/hook")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-recover", Value::Null).await;

    enqueue(&app, &imp_uid, "paid", None).await;
    assert_eq!(deliver(&app).await, 1, "first attempt right away");
    assert_eq!(deliver(&app).await, 0, "not due again before a minute");
    app.advance(61);
    assert_eq!(deliver(&app).await, 1, "second attempt after 1 minute");
    app.advance(61);
    assert_eq!(deliver(&app).await, 0, "third attempt waits 4 minutes");
    app.advance(4 * 60);
    assert_eq!(deliver(&app).await, 1, "third attempt after 4 more minutes");
    app.advance(24 * 3600);
    assert_eq!(deliver(&app).await, 0, "delivered: never sent again");

    let got = receiver.requests();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.path, "/hook");
        assert_eq!(
            json_body(r),
            json!({"imp_uid": imp_uid, "merchant_uid": "wh-recover", "status": "paid"})
        );
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(
            r.headers.get("webhook-signature").is_none(),
            "unsigned without a secret"
        );
    }
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "delivered");
    assert_eq!(list[0]["attempt_count"], 3);
    let statuses: Vec<&Value> = list[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["http_status"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(503), &json!(200)]);
}

#[tokio::test]
async fn a_payments_notice_url_suppresses_the_merchants_default_url() {
    let app = spawn_app().await;
    let default = Receiver::start().await;
    let notice = Receiver::start().await;
    configure(&app, json!({"url": default.url("/default")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(
        &app,
        &token,
        "wh-notice",
        json!([notice.url("/a"), notice.url("/b")]),
    )
    .await;
    let plain = paid_payment(&app, &token, "wh-default", Value::Null).await;

    enqueue(&app, &imp_uid, "paid", None).await;
    enqueue(&app, &plain, "paid", None).await;
    assert_eq!(deliver(&app).await, 3);

    let mut paths: Vec<String> = notice.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(paths, ["/a", "/b"], "every notice_url is called");
    let defaults = default.requests();
    assert_eq!(
        defaults.len(),
        1,
        "the default only for the payment without notice_url"
    );
    assert_eq!(json_body(&defaults[0])["imp_uid"], plain.as_str());
}

/// A `notice_url` list item that carries no URL (`[null]`: `JSON.stringify([process.env.HOOK])`
/// with the variable unset; a form's `notice_url[]=` from a template that always writes the
/// field) refused the whole charge with HTTP 400, though a blank scalar meant "none". It is
/// dropped now: a list left empty names none and the merchant's URL gets the webhook, a list with
/// a URL beside it calls that URL only, and a string that is no URL is still refused.
#[tokio::test]
async fn a_null_or_blank_notice_url_item_is_dropped_and_a_list_left_empty_goes_to_the_merchants_url(
) {
    let app = spawn_app().await;
    let default = Receiver::start().await;
    let notice = Receiver::start().await;
    configure(&app, json!({"url": default.url("/default")})).await;
    let token = app.token().await;
    crate::billing::register(&app, &token, "wh-blank", test_cards::SHINHAN_CREDIT).await;
    let again = |merchant_uid: &str, notice_url: Value| {
        json!({"customer_uid": "wh-blank", "merchant_uid": merchant_uid, "amount": 1000,
               "name": "정기결제", "notice_url": notice_url})
    };
    let mut paid = Vec::new();
    for (merchant_uid, notice_url) in [
        ("wh-null", json!([null])),
        ("wh-blanks", json!(["", "  "])),
        ("wh-one", json!([null, "", notice.url("/n")])),
    ] {
        let (status, res) = app
            .post(
                "/subscribe/payments/again",
                Some(&token),
                again(merchant_uid, notice_url),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{merchant_uid}: {res}");
        assert_eq!(res["response"]["status"], "paid", "{merchant_uid}: {res}");
        paid.push(res["response"]["imp_uid"].as_str().unwrap().to_string());
    }
    let form = app
        .http
        .post(app.url("/subscribe/payments/again"))
        .header("Authorization", &token)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("customer_uid=wh-blank&merchant_uid=wh-form&amount=1000&name=x&notice_url%5B%5D=")
        .send()
        .await
        .unwrap();
    let (status, res) = TestApp::read(form).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["response"]["status"], "paid", "{res}");
    paid.push(res["response"]["imp_uid"].as_str().unwrap().to_string());
    let (status, refused) = app
        .post(
            "/subscribe/payments/again",
            Some(&token),
            again("wh-ftp", json!(["", "ftp://example.com/h"])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    assert_eq!(deliver(&app).await, 4);
    let mut to_default: Vec<String> = default
        .requests()
        .iter()
        .map(|r| json_body(r)["imp_uid"].as_str().unwrap().to_string())
        .collect();
    to_default.sort();
    let mut expected = vec![paid[0].clone(), paid[1].clone(), paid[3].clone()];
    expected.sort();
    assert_eq!(
        to_default, expected,
        "a list left empty: the merchant's URL"
    );
    let to_notice = notice.requests();
    assert_eq!(to_notice.len(), 1);
    assert_eq!(to_notice[0].path, "/n");
    assert_eq!(json_body(&to_notice[0])["imp_uid"], paid[2].as_str());
}

/// `request_pay` reads `notice_url` as the REST API does (`domain::text::string_list`): a null or
/// blank item (`notice_url: [hookUrl]` with the variable unset) is dropped, and a list left empty
/// names none, where both refused the window.
#[tokio::test]
async fn request_pay_drops_a_null_or_blank_notice_url_item_as_the_rest_api_does() {
    let app = spawn_app().await;
    let default = Receiver::start().await;
    let notice = Receiver::start().await;
    configure(&app, json!({"url": default.url("/default")})).await;
    let card = [
        ("card_no", "4111111111111111"),
        ("card_expiry", "3112"),
        ("action", "pay"),
    ];
    let mut paid = Vec::new();
    for (merchant_uid, notice_url) in [
        ("wh-web-url", json!([null, " ", notice.url("/w")])),
        ("wh-web-none", json!([null, ""])),
    ] {
        let rsp = crate::checkout::request_pay(
            &app,
            json!({"pay_method": "card", "merchant_uid": merchant_uid, "amount": 1000,
                   "notice_url": notice_url}),
            &card,
        )
        .await;
        assert_eq!(rsp["status"], "paid", "{merchant_uid}: {rsp}");
        paid.push(rsp["imp_uid"].as_str().unwrap().to_string());
    }

    assert_eq!(deliver(&app).await, 2);
    let to_notice = notice.requests();
    assert_eq!(to_notice.len(), 1);
    assert_eq!(to_notice[0].path, "/w");
    assert_eq!(json_body(&to_notice[0])["imp_uid"], paid[0].as_str());
    let to_default = default.requests();
    assert_eq!(to_default.len(), 1, "a list left empty: the merchant's URL");
    assert_eq!(json_body(&to_default[0])["imp_uid"], paid[1].as_str());
}

#[tokio::test]
async fn a_merchant_with_form_content_type_gets_a_form_encoded_body() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (status, body) = configure(
        &app,
        json!({"url": receiver.url("/form"), "content_type": "form"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["content_type"], "form");
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-form 1&2", Value::Null).await;

    enqueue(&app, &imp_uid, "cancelled", Some("cancel-123")).await;
    assert_eq!(deliver(&app).await, 1);

    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(&got[0].body).unwrap();
    assert_eq!(
        fields,
        [
            ("imp_uid".to_string(), imp_uid),
            ("merchant_uid".to_string(), "wh-form 1&2".to_string()),
            ("status".to_string(), "cancelled".to_string()),
            ("cancellation_id".to_string(), "cancel-123".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_signed_webhook_verifies_with_the_merchants_secret() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let key = [42u8; 24];
    let secret = format!("whsec_{}", B64.encode(key));
    let (status, body) = configure(
        &app,
        json!({"url": receiver.url("/signed"), "secret": secret}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["signed"], true);
    assert!(
        !body.to_string().contains(&secret),
        "the secret is never shown"
    );
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-signed", Value::Null).await;

    enqueue(&app, &imp_uid, "paid", None).await;
    assert_eq!(deliver(&app).await, 1);

    let got = receiver.requests();
    let r = &got[0];
    let id = r.headers["webhook-id"].to_str().unwrap();
    let ts: i64 = r.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let signature = r.headers["webhook-signature"].to_str().unwrap();
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(id, list[0]["message_id"].as_str().unwrap());
    assert!(id.starts_with("msg_"));
    assert!(
        (ts - app.app.gateway.clock.unix()).abs() <= 300,
        "within the ±5 min tolerance"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    assert_eq!(signature, expected);
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_given_up_after_the_last_backoff() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.always(500);
    configure(&app, json!({"url": receiver.url("/down")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-give-up", Value::Null).await;

    enqueue(&app, &imp_uid, "paid", None).await;
    assert_eq!(deliver(&app).await, 1);
    for minutes in [1, 4, 16, 64, 256] {
        app.advance(minutes * 60 - 5);
        assert_eq!(deliver(&app).await, 0, "not before {minutes} min");
        app.advance(6);
        assert_eq!(deliver(&app).await, 1, "retried after {minutes} min");
    }
    app.advance(7 * 24 * 3600);
    assert_eq!(deliver(&app).await, 0, "given up");

    assert_eq!(receiver.requests().len(), 6);
    let list = history(&app, "?state=failed").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["attempt_count"], 6);
    assert_eq!(list[0]["last_http_status"], 500);
    for a in list[0]["attempts"].as_array().unwrap() {
        let excerpt = a["response_excerpt"].as_str().unwrap();
        assert_eq!(excerpt.chars().count(), 200, "only 200 chars of the answer");
    }
    assert!(history(&app, "?state=pending").await.is_empty());
    // Given up for good, the merchant lost a notice: an ERROR for the operator's alerting
    // (docs/operations.md "Logs"), where every attempt used to be the same INFO line.
    let given_up: Vec<String> = crate::helpers::captured_logs()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains(&imp_uid) && l.contains("given up"))
        .map(str::to_string)
        .collect();
    assert_eq!(given_up.len(), 1, "{given_up:?}");
    assert!(given_up[0].contains("resend"), "{}", given_up[0]);
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_and_the_error_is_recorded() {
    let app = spawn_app().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    configure(&app, json!({"url": format!("http://{closed}/gone")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-unreachable", Value::Null).await;

    enqueue(&app, &imp_uid, "paid", None).await;
    assert_eq!(deliver(&app).await, 1);

    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(list[0]["attempt_count"], 1);
    let attempt = &list[0]["attempts"][0];
    assert!(attempt["http_status"].is_null());
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .starts_with("connect error"),
        "{attempt}"
    );
    assert!(
        list[0]["next_attempt_at"].as_i64().unwrap()
            >= attempt["attempted_at"].as_i64().unwrap() + 60
    );
}

#[tokio::test]
async fn a_4xx_answer_marks_the_delivery_failed_without_retrying() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(&[404]);
    configure(&app, json!({"url": receiver.url("/wrong")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-404", Value::Null).await;

    enqueue(&app, &imp_uid, "paid", None).await;
    assert_eq!(deliver(&app).await, 1);
    app.advance(3600);
    assert_eq!(deliver(&app).await, 0);

    assert_eq!(receiver.requests().len(), 1);
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list[0]["state"], "failed");
    assert_eq!(list[0]["last_http_status"], 404);
}

#[tokio::test]
async fn an_operator_can_resend_a_failed_delivery() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.always(410);
    configure(&app, json!({"url": receiver.url("/resend")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-resend", Value::Null).await;
    enqueue(&app, &imp_uid, "paid", None).await;
    deliver(&app).await;
    let id = history(&app, "?state=failed").await[0]["id"]
        .as_i64()
        .unwrap();

    receiver.recover();
    let (status, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["state"], "pending");
    assert_eq!(deliver(&app).await, 1);

    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list[0]["state"], "delivered");
    assert_eq!(list[0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(receiver.requests().len(), 2);

    let (status, _) = app
        .post(
            "/admin/webhooks/999999/resend",
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Sets a signing secret for the demo merchant (`webhook-id` goes only with signed webhooks)
/// and its URL on `receiver`.
async fn sign_to(app: &TestApp, receiver: &Receiver, path: &str) {
    let secret = format!("whsec_{}", B64.encode([7u8; 32]));
    let (status, body) = configure(app, json!({"url": receiver.url(path), "secret": secret})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn webhook_id(r: &Received) -> String {
    r.headers["webhook-id"].to_str().unwrap().to_string()
}

/// `msg_` and 26 of Crockford's base32 (lower case), as `new_message_id` makes them.
fn assert_random_message_id(id: &str) {
    let rest = id.strip_prefix("msg_").unwrap_or_else(|| panic!("{id}"));
    assert_eq!(rest.len(), 26, "{id}");
    assert!(
        rest.bytes()
            .all(|b| b"0123456789abcdefghjkmnpqrstvwxyz".contains(&b)),
        "{id}"
    );
}

/// The `webhook-id` is stored with the delivery: every retry and an operator's resend of it
/// carry the same one (a resend is the same event sent again, so a receiver that deduplicates
/// may skip it), and it is random, not the row id.
#[tokio::test]
async fn a_deliverys_webhook_id_is_random_and_the_same_on_every_retry_and_resend() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    sign_to(&app, &receiver, "/same-id").await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-same-id", Value::Null).await;
    enqueue(&app, &imp_uid, "paid", None).await;

    receiver.fail_next(&[503]);
    assert_eq!(deliver(&app).await, 1);
    app.advance(61);
    assert_eq!(deliver(&app).await, 1, "the retry");
    let listed = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(listed[0]["state"], "delivered", "{listed:?}");
    let id = listed[0]["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(deliver(&app).await, 1, "the resend");

    let ids: Vec<String> = receiver.requests().iter().map(webhook_id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_random_message_id(&ids[0]);
    assert_ne!(ids[0], format!("msg_{id}"));
    assert_eq!(body["response"]["message_id"], ids[0].as_str(), "{body}");
}

/// Row ids come from a sequence, which runs again over ids already sent once a backup is
/// restored or the sequence is reset (review r4, finding 1). Here the delivery history is
/// emptied and the sequence started again, so the second event's row gets the first one's id:
/// its `webhook-id` must still differ, or a receiver deduplicating on it drops the new event.
#[tokio::test]
async fn a_new_event_never_gets_the_webhook_id_of_one_sent_before_the_row_ids_ran_again() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let token = app.token().await;
    // Paid before any URL is set: no webhook rows yet, so the first one written is id 1.
    let before = paid_payment(&app, &token, "wh-before-restore", Value::Null).await;
    let after = paid_payment(&app, &token, "wh-after-restore", Value::Null).await;
    sign_to(&app, &receiver, "/dedup").await;

    enqueue(&app, &before, "paid", None).await;
    assert_eq!(deliver(&app).await, 1);
    let first_row = history(&app, "").await[0]["id"].as_i64().unwrap();

    let restart = if app.database_url.starts_with("postgres") {
        "ALTER SEQUENCE webhook_deliveries_id_seq RESTART"
    } else {
        "DELETE FROM sqlite_sequence WHERE name = 'webhook_deliveries'"
    };
    crate::helpers::execute(
        &app,
        vec![
            "DELETE FROM webhook_attempts".into(),
            "DELETE FROM webhook_deliveries".into(),
            restart.into(),
        ],
    )
    .await;
    enqueue(&app, &after, "paid", None).await;
    assert_eq!(deliver(&app).await, 1);
    let second_row = history(&app, "").await[0]["id"].as_i64().unwrap();
    assert_eq!(second_row, first_row, "the row id came round again");

    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(json_body(&got[0])["imp_uid"], before.as_str());
    assert_eq!(json_body(&got[1])["imp_uid"], after.as_str());
    let (first, second) = (webhook_id(&got[0]), webhook_id(&got[1]));
    assert_ne!(first, second, "two events, two webhook-ids");
    assert_random_message_id(&first);
    assert_random_message_id(&second);
}

/// A delivery row built on `Default` (as tests and SQL-text inserts build theirs) gets its own
/// random `webhook-id`, and an update built on `Default` leaves the stored one alone.
#[tokio::test]
async fn every_new_delivery_row_gets_its_own_webhook_id_and_an_update_never_changes_it() {
    use openport::store::entity::webhook_delivery;
    use openport::store::webhooks::{delivery_by_id, insert_delivery};
    use sea_orm::{ActiveModelTrait, Set};
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-default-row", Value::Null).await;
    let p = openport::store::payments::by_imp_uid(&app.app.gateway.db.read, None, &imp_uid)
        .await
        .unwrap()
        .unwrap();
    let db = &app.app.gateway.db.write;
    let row = || crate::helpers::failed_webhook_row(&p, "https://shop.example/h");
    let a = insert_delivery(db, row()).await.unwrap();
    let b = insert_delivery(db, row()).await.unwrap();
    assert_random_message_id(&a.message_id);
    assert_random_message_id(&b.message_id);
    assert_ne!(a.message_id, b.message_id);

    webhook_delivery::ActiveModel {
        id: Set(a.id),
        state: Set("failed".into()),
        ..Default::default()
    }
    .update(db)
    .await
    .unwrap();
    let updated = delivery_by_id(db, a.id).await.unwrap().unwrap();
    assert_eq!(updated.state, "failed");
    assert_eq!(updated.message_id, a.message_id);
}

/// Deliveries written before the id was stored keep the one they were sent with (`msg_<id>`),
/// so a pending one is retried, and an old one resent, under the id its receiver knows.
#[tokio::test]
async fn upgrading_keeps_the_webhook_id_each_existing_delivery_was_sent_with() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Database, Statement};
    let (url, _dir) = crate::helpers::fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(33)).await.unwrap();
    let exec = |sql: &'static str| {
        let db = &db;
        async move {
            db.execute(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap();
        }
    };
    exec(
        "INSERT INTO merchants (id, imp_code, name, imp_key, imp_secret_hash, site_cd, \
         kcp_certificate_pem, kcp_private_key_sealed, kcp_passphrase_sealed, test_mode, \
         created_at, webhook_content_type) \
         VALUES (1, 'imp00000001', 'shop', 'key', 'hash', 'T0000', '', '', '', true, 1, 'json')",
    )
    .await;
    for (id, state) in [(5, "pending"), (9, "delivered")] {
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, merchant_id, imp_uid, merchant_uid, status, url, \
             content_type, state, attempts, next_attempt_at, lease_until, created_at, updated_at) \
             VALUES ({id}, 1, 'imp_{id}', 'o-{id}', 'paid', 'https://shop.example/h', 'json', \
             '{state}', 1, 1, 0, 1, 1)"
        );
        db.execute(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();

    use openport::store::entity::webhook_delivery;
    use sea_orm::{EntityTrait, QueryOrder};
    let ids: Vec<(i64, String)> = webhook_delivery::Entity::find()
        .order_by_asc(webhook_delivery::Column::Id)
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.message_id))
        .collect();
    assert_eq!(ids, [(5, "msg_5".into()), (9, "msg_9".into())]);
}

/// A retry waits its 1 minute from when the attempt failed: counted from when it began, a
/// receiver that timed out after 30 s was tried again 30 s after the failure (review r4,
/// finding 3). The receiver here answers 503 once 30 s have passed on the gateway clock.
#[tokio::test]
async fn a_retry_waits_its_backoff_from_when_the_attempt_failed_not_from_when_it_began() {
    let app = std::sync::Arc::new(spawn_app().await);
    app.stop_clock();
    let slow = {
        let app = std::sync::Arc::downgrade(&app);
        axum::Router::new().fallback(move || {
            let app = app.clone();
            async move {
                if let Some(app) = app.upgrade() {
                    app.advance(30);
                }
                StatusCode::SERVICE_UNAVAILABLE
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, slow).await });
    configure(&app, json!({"url": format!("http://{addr}/slow")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-slow-fail", Value::Null).await;
    enqueue(&app, &imp_uid, "paid", None).await;

    let began = app.app.gateway.clock.unix();
    assert_eq!(deliver(&app).await, 1);
    let failed = app.app.gateway.clock.unix();
    assert_eq!(failed, began + 30);
    let d = &history(&app, &format!("?imp_uid={imp_uid}")).await[0];
    assert_eq!(d["state"], "pending", "{d}");
    assert_eq!(d["attempts"][0]["attempted_at"], began, "{d}");
    assert_eq!(d["next_attempt_at"], failed + 60, "{d}");

    app.advance(59);
    assert_eq!(deliver(&app).await, 0, "not within a minute of the failure");
    app.advance(1);
    assert_eq!(deliver(&app).await, 1, "a minute after it");
    let failed = app.app.gateway.clock.unix();
    let d = &history(&app, &format!("?imp_uid={imp_uid}")).await[0];
    assert_eq!(d["next_attempt_at"], failed + 4 * 60, "{d}");
}

#[tokio::test]
async fn the_delivery_history_filters_by_merchant_and_state_and_is_operator_only() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    configure(&app, json!({"url": receiver.url("/h")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-history", Value::Null).await;
    enqueue(&app, &imp_uid, "paid", None).await;
    let m = demo_merchant_id(&app);

    assert_eq!(history(&app, &format!("?merchant_id={m}")).await.len(), 1);
    assert_eq!(history(&app, "?merchant_id=424242").await.len(), 0);
    assert_eq!(history(&app, "?state=pending").await.len(), 1);
    assert_eq!(history(&app, "?state=delivered").await.len(), 0);
    let (status, _) = app
        .get("/admin/webhooks?state=lost", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .get("/admin/webhooks?merchant_id=abc", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.get("/admin/webhooks", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// After a receiver outage more deliveries failed than one page holds: the operator pages back
/// with `before_id` (the last id of the page before) and sees each failed one exactly once, to
/// resend it (docs/webhooks.md; review rI F5: the oldest 5 of 105 could not be listed).
#[tokio::test]
async fn the_delivery_history_pages_back_through_every_failed_delivery_with_before_id() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.always(400);
    configure(&app, json!({"url": receiver.url("/h")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-pages", Value::Null).await;
    for n in 0..105 {
        enqueue_apart(&app, &imp_uid, n, "paid", None).await;
    }
    // A 4xx gives a delivery up at once; the worker's per-merchant cap may take a few passes.
    while deliver(&app).await > 0 {}
    let m = demo_merchant_id(&app);

    let by_merchant = format!("merchant_id={m}");
    let mut oldest = None;
    // `limit` given, or the default of 100.
    for (filter, limit) in [
        ("state=failed", Some(40)),
        (by_merchant.as_str(), None),
        ("", None),
    ] {
        let (per_page, limit_param) = match limit {
            Some(n) => (n, format!("&limit={n}")),
            None => (100, String::new()),
        };
        let mut seen: Vec<i64> = Vec::new();
        let mut pages = Vec::new();
        let mut query = format!("?{filter}{limit_param}");
        loop {
            let page = history(&app, &query).await;
            pages.push(page.len());
            assert!(page.iter().all(|d| d["state"] == "failed"), "{page:?}");
            seen.extend(page.iter().map(|d| d["id"].as_i64().unwrap()));
            if page.len() < per_page {
                break;
            }
            // An ignored cursor answers the same page again.
            assert!(pages.len() < 5, "{filter}: the pages do not end: {pages:?}");
            let last = seen.last().unwrap();
            query = format!("?{filter}{limit_param}&before_id={last}");
        }
        assert_eq!(seen.len(), 105, "{filter}: pages {pages:?}");
        assert!(
            seen.windows(2).all(|w| w[0] > w[1]),
            "{filter}: newest first, each once: {seen:?}"
        );
        let expected: &[usize] = if per_page == 40 {
            &[40, 40, 25]
        } else {
            &[100, 5]
        };
        assert_eq!(pages, expected, "{filter}");
        oldest = seen.last().copied();
    }
    // Below the oldest: an empty page, not an error.
    let oldest = oldest.expect("pages were read");
    assert_eq!(
        history(&app, &format!("?before_id={oldest}")).await.len(),
        0
    );

    for (query, named) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("before_id=0", "before_id"),
        ("before_id=-3", "before_id"),
        ("before_id=abc", "before_id"),
        ("before_id=99999999999999999999", "before_id"),
    ] {
        let (status, res) = app
            .get(&format!("/admin/webhooks?{query}"), Some(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {res}");
        assert_eq!(res["code"], -1, "{query}: {res}");
        assert!(
            res["message"].as_str().unwrap().contains(named),
            "{query}: {res}"
        );
    }
}

#[tokio::test]
async fn webhook_settings_are_validated_and_operator_only() {
    let app = spawn_app().await;
    let id = demo_merchant_id(&app);
    let path = format!("/admin/merchants/{id}/webhook");
    let (status, _) = configure(
        &app,
        json!({"url": "https://shop.example/hook", "content_type": "xml"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = configure(&app, json!({"url": "ftp://shop.example/hook"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = configure(
        &app,
        json!({"url": "https://shop.example/hook", "secret": "short"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .put(
            "/admin/merchants/424242/webhook",
            ADMIN_TOKEN,
            json!({"url": "https://shop.example/hook"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let token = app.token().await;
    let (status, _) = app
        .put(&path, &token, json!({"url": "https://shop.example/hook"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _) = configure(
        &app,
        json!({"url": "https://shop.example/hook", "secret": "a-long-enough-secret"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "not base64: the standard's libraries could not verify with it"
    );
    // Standard Webhooks keys are 24 to 64 bytes.
    for bytes in [20, 23, 65] {
        let secret = format!("whsec_{}", B64.encode(vec![7u8; bytes]));
        let (status, body) = configure(
            &app,
            json!({"url": "https://shop.example/hook", "secret": secret}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bytes} bytes: {body}");
    }
    let (status, body) = configure(
        &app,
        json!({"url": "https://shop.example/hook", "secret": format!("whsec_{}", B64.encode([7u8; 64]))}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "64 bytes: {body}");
    // Base64 without the `whsec_` prefix is a Standard Webhooks secret too (24 bytes).
    let (status, body) = configure(
        &app,
        json!({"url": "https://shop.example/hook", "content_type": "json", "secret": "b3BlbnBvcnQtd2ViaG9vay1zaWduaW5n"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let until = body["response"]["previous_secret_until"].clone();
    assert!(
        until.is_i64(),
        "the 64-byte key signs beside it for a while: {body}"
    );
    assert_eq!(
        body["response"],
        json!({"merchant_id": id, "url": "https://shop.example/hook", "content_type": "json",
               "signed": true, "previous_secret_until": until})
    );
    // PUT replaces the whole setting: no secret = unsigned, null url = no default.
    let (_, body) = configure(&app, json!({"url": null})).await;
    assert_eq!(
        body["response"],
        json!({"merchant_id": id, "url": null, "content_type": "json", "signed": false,
               "previous_secret_until": null})
    );
}

/// `GET` of the settings' path shows what a PUT set, whether webhooks are signed, and never the
/// secret; like the PUT it is for the operator only.
#[tokio::test]
async fn an_operator_reads_a_merchants_webhook_settings_without_the_secret() {
    let app = spawn_app().await;
    let id = demo_merchant_id(&app);
    let path = format!("/admin/merchants/{id}/webhook");
    let (status, body) = app.get(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["response"],
        json!({"merchant_id": id, "url": null, "content_type": "json", "signed": false,
               "previous_secret_until": null})
    );

    let secret = format!("whsec_{}", B64.encode([9u8; 32]));
    let (status, put) = configure(
        &app,
        json!({"url": "https://shop.example/hook", "content_type": "form", "secret": secret}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");
    let (status, body) = app.get(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], put["response"], "what the PUT answered");
    assert_eq!(
        body["response"],
        json!({"merchant_id": id, "url": "https://shop.example/hook", "content_type": "form",
               "signed": true, "previous_secret_until": null})
    );
    let text = body.to_string();
    assert!(
        !text.contains(&secret) && !text.contains(&B64.encode([9u8; 32])),
        "{text}"
    );

    let token = app.token().await;
    let (status, _) = app.get(&path, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a merchant token");
    let (status, _) = app.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
    let (status, _) = app
        .get("/admin/merchants/424242/webhook", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .get("/admin/merchants/abc/webhook", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, doc) = app.get("/openapi.json", None).await;
    assert_eq!(
        doc["paths"]["/admin/merchants/{id}/webhook"]["get"]["operationId"],
        "getWebhookSettings"
    );
}

/// A PUT replaces the whole setting, so one whose `url` was misspelt or missing (`webhook_url`,
/// `{}`, an empty body, a form's `URL=`) read as "no URL, unsigned" and wiped the URL and the
/// secret with code 0 (review rR F1). A field other than `url`, `content_type` and `secret` is
/// refused naming it, and `url` is required as `origins` is on the redirect-origins PUT: the
/// setting stays as it was. Clearing takes an explicit `"url": null` or an empty value.
#[tokio::test]
async fn a_webhook_settings_put_with_a_misspelt_or_missing_url_is_refused_and_the_setting_kept() {
    let app = spawn_app().await;
    let id = demo_merchant_id(&app);
    let path = format!("/admin/merchants/{id}/webhook");
    let secret = format!("whsec_{}", B64.encode([5u8; 32]));
    let (status, set) = configure(
        &app,
        json!({"url": "https://shop.example/hook", "secret": secret}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let kept = set["response"].clone();
    assert_eq!(kept["signed"], true, "{kept}");
    let unknown = |name: &str| {
        format!("알 수 없는 필드입니다: `{name}` (받는 필드: url, content_type, secret)")
    };
    let missing = "url이 필요합니다. (기본 URL을 지우려면 \"url\": null 또는 빈 값)".to_string();
    let put = |content_type: &'static str, body: String| {
        app.http
            .put(app.url(&path))
            .header("Authorization", ADMIN_TOKEN)
            .header("Content-Type", content_type)
            .body(body)
    };
    let json_type = "application/json";
    let form_type = "application/x-www-form-urlencoded";
    let cases = [
        (
            put(
                json_type,
                r#"{"webhook_url":"https://shop.example/hook2"}"#.into(),
            ),
            unknown("webhook_url"),
        ),
        (
            put(
                json_type,
                json!({"URL": "https://shop.example/hook2", "secret": secret}).to_string(),
            ),
            unknown("URL"),
        ),
        (
            put(
                json_type,
                json!({"url": "https://shop.example/hook", "secret": secret,
                       "content-type": "form"})
                .to_string(),
            ),
            unknown("content-type"),
        ),
        (
            put(json_type, format!(r#"{{"{}":1}}"#, "x".repeat(100))),
            unknown(&format!("{}…", "x".repeat(40))),
        ),
        (put(json_type, "{}".into()), missing.clone()),
        (put(json_type, String::new()), missing.clone()),
        (
            put(json_type, json!({"secret": secret}).to_string()),
            missing.clone(),
        ),
        (
            put(form_type, "URL=https%3A%2F%2Fshop.example%2Fhook2".into()),
            unknown("URL"),
        ),
        (put(form_type, String::new()), missing.clone()),
        (put(form_type, "content_type=form".into()), missing.clone()),
    ];
    for (req, says) in cases {
        let (status, answer) = TestApp::read(req.send().await.expect("request")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{says}: {answer}");
        assert_eq!(answer["code"], -1, "{answer}");
        assert_eq!(answer["message"], says, "{answer}");
        let (_, read) = app.get(&path, Some(ADMIN_TOKEN)).await;
        assert_eq!(read["response"], kept, "{says}: the setting is kept");
    }

    // Every shape that names `url` still works, a form's included; null and empty clear it.
    let (status, body) = TestApp::read(
        put(
            form_type,
            format!(
                "url=https%3A%2F%2Fshop.example%2Fform&content_type=form&secret={}",
                secret
                    .replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D")
            ),
        )
        .send()
        .await
        .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            &body["response"]["url"],
            &body["response"]["content_type"],
            &body["response"]["signed"]
        ),
        (
            &json!("https://shop.example/form"),
            &json!("form"),
            &json!(true)
        ),
        "{body}"
    );
    for clear in [
        put(json_type, r#"{"url":null}"#.into()),
        put(json_type, r#"{"url":"","content_type":"json"}"#.into()),
        put(form_type, "url=".into()),
    ] {
        configure(
            &app,
            json!({"url": "https://shop.example/hook", "secret": secret}),
        )
        .await;
        let (status, body) = TestApp::read(clear.send().await.expect("request")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["response"],
            json!({"merchant_id": id, "url": null, "content_type": "json", "signed": false,
                   "previous_secret_until": null})
        );
    }
    let (_, doc) = app.get("/openapi.json", None).await;
    let schema = &doc["components"]["schemas"]["WebhookSettingsRequest"];
    assert_eq!(schema["required"], json!(["url"]), "{schema}");
    assert_eq!(schema["additionalProperties"], false, "{schema}");
}

/// Standard Webhooks rotation: a replaced secret signs beside the new one for a day (the
/// header lists both, the new one first), so receivers still verifying with the old key accept
/// webhooks, retries included, while they switch. Sending the same key again (a PUT that
/// changes only the URL) is no rotation and leaves the day as it was.
#[tokio::test]
async fn a_replaced_secret_keeps_signing_beside_the_new_one_for_a_day() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (old, new) = ([1u8; 32], [2u8; 32]);
    let settings = |path: &str, key: &[u8], prefix: &str| json!({"url": receiver.url(path), "secret": format!("{prefix}{}", B64.encode(key))});
    let (_, body) = configure(&app, settings("/hook", &old, "whsec_")).await;
    assert_eq!(
        body["response"]["previous_secret_until"],
        Value::Null,
        "{body}"
    );
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-rotate", Value::Null).await;
    enqueue(&app, &imp_uid, "paid", None).await;
    assert_eq!(deliver(&app).await, 1);

    let rotated_at = app.app.gateway.clock.unix();
    let (status, body) = configure(&app, settings("/hook", &new, "whsec_")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let until = body["response"]["previous_secret_until"]
        .as_i64()
        .expect("until");
    assert!(
        (rotated_at + 86_400..=rotated_at + 86_410).contains(&until),
        "{until}"
    );
    app.advance(3_600);
    // The same key again, without its prefix, with another URL: the rotation stands.
    let (_, body) = configure(&app, settings("/moved", &new, "")).await;
    assert_eq!(body["response"]["previous_secret_until"], until, "{body}");
    let id = demo_merchant_id(&app);
    let path = format!("/admin/merchants/{id}/webhook");
    let (_, read) = app.get(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(read["response"]["previous_secret_until"], until, "{read}");
    enqueue(&app, &imp_uid, "cancelled", Some("c1")).await;
    assert_eq!(deliver(&app).await, 1);

    app.advance(until - app.app.gateway.clock.unix() + 1);
    let (_, read) = app.get(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(
        read["response"]["previous_secret_until"],
        Value::Null,
        "{read}"
    );
    enqueue(&app, &imp_uid, "cancelled", Some("c2")).await;
    assert_eq!(deliver(&app).await, 1);

    let keys: [&[u8]; 2] = [&new, &old];
    let signers: Vec<(String, Vec<usize>)> = receiver
        .requests()
        .iter()
        .map(|r| (r.path.clone(), r.signers(&keys)))
        .collect();
    assert_eq!(
        signers,
        [
            ("/hook".to_string(), vec![1]),
            ("/moved".to_string(), vec![0, 1]),
            ("/moved".to_string(), vec![0]),
        ],
        "before, during and after the day"
    );
}

/// A `notice_url` may carry the merchant's own token in its query (V1 webhooks are unsigned):
/// the POST goes to the whole URL, but the history (attempts kept for the retention) and the
/// operator API show each query value as `***`.
#[tokio::test]
async fn a_notice_urls_query_is_sent_but_never_kept_in_the_history_or_shown() {
    use openport::store::entity::webhook_attempt;
    use sea_orm::EntityTrait;

    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let token = app.token().await;
    let body = json!({"merchant_uid": "wh-query", "amount": 1000,
        "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
        "notice_url": receiver.url("/hook?token=merchant-s3cret&shop=7")});
    let (_, paid) = app
        .post("/subscribe/payments/onetime", Some(&token), body)
        .await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(deliver(&app).await, 1);

    let got = receiver.requests();
    assert_eq!(
        got[0].query.as_deref(),
        Some("token=merchant-s3cret&shop=7")
    );
    let (status, list) = app.get("/admin/webhooks", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let shown = receiver.url("/hook?token=***&shop=***");
    assert_eq!(list["response"][0]["url"], shown.as_str(), "{list}");
    assert_eq!(
        list["response"][0]["attempts"][0]["url"],
        shown.as_str(),
        "{list}"
    );
    assert!(!list.to_string().contains("s3cret"), "{list}");
    let attempts = webhook_attempt::Entity::find()
        .all(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].url, shown, "the history keeps no query value");
}

/// A cancel KCP reports (`TX05` here: cancelled in KCP's admin) and its inquiry bears out is
/// announced `cancelled` with the recorded cancel's id, though the merchant asked for nothing
/// (docs/webhooks.md event table).
#[tokio::test]
async fn a_cancel_kcp_reports_and_confirms_fires_cancelled_with_its_cancellation_id() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    configure(&app, json!({"url": receiver.url("/kcp-cancel")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-kcp-cancel", Value::Null).await;
    let tno = app.payment(&token, &imp_uid).await["pg_tid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(app.sandbox.cancel_in_admin(&tno));
    let acknowledged = app
        .http
        .post(app.url("/kcp/notify"))
        .form(&[
            ("site_cd", "T0000"),
            ("tno", tno.as_str()),
            ("tx_cd", "TX05"),
            ("tx_tm", "20261204120000"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(acknowledged.contains("value=\"0000\""), "{acknowledged}");

    assert_eq!(deliver(&app).await, 1);
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "cancelled", "{p}");
    assert_eq!(
        json_body(&receiver.requests()[0]),
        json!({"imp_uid": imp_uid, "merchant_uid": "wh-kcp-cancel", "status": "cancelled",
               "cancellation_id": p["cancel_history"][0]["cancellation_id"]})
    );
}

/// Targets are resolved when the event happens, from the merchant row each instance caches for
/// a minute: a webhook URL set for the first time on one instance used to reach the others only
/// when their copy expired, and the events they recorded meanwhile wrote no webhook (lost, not
/// late). On PostgreSQL the instance that changes the setting announces it, and the others drop
/// their copy at once.
#[tokio::test]
async fn a_webhook_url_set_on_one_instance_applies_on_another_without_waiting_for_its_cache() {
    let first = spawn_app().await;
    if !first.database_url.starts_with("postgres") {
        return; // one instance per SQLite database
    }
    let second = first.another_instance(|_| {}).await;
    let receiver = Receiver::start().await;
    let token = second.token().await;
    let imp_uid = paid_payment(&second, &token, "wh-fresh-settings", Value::Null).await;
    let gw = &second.app.gateway;
    let payment = openport::store::payments::by_imp_uid(&gw.db.read, None, &imp_uid)
        .await
        .unwrap()
        .unwrap();
    let targets = || async {
        gw.webhooks_announcing(&payment, "paid")
            .await
            .unwrap()
            .len()
    };
    assert_eq!(targets().await, 0, "no URL yet (and the row is cached)");

    let (status, body) = configure(&first, json!({"url": receiver.url("/fresh")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while targets().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second instance still has no URL 10 s after it was set"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn nothing_is_sent_without_a_url_or_when_the_change_is_rolled_back() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-nothing", Value::Null).await;
    enqueue(&app, &imp_uid, "paid", None).await;
    assert!(
        history(&app, "").await.is_empty(),
        "no URL: nothing written"
    );

    configure(&app, json!({"url": receiver.url("/rollback")})).await;
    let gw = &app.app.gateway;
    let p = openport::store::payments::by_imp_uid(&gw.db.read, None, &imp_uid)
        .await
        .unwrap()
        .unwrap();
    let txn = gw.db.write.begin().await.unwrap();
    gw.enqueue_webhook(&txn, &p, "paid", None).await.unwrap();
    txn.rollback().await.unwrap();

    assert!(history(&app, "").await.is_empty());
    assert_eq!(deliver(&app).await, 0);
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn three_instances_on_one_database_deliver_each_webhook_exactly_once() {
    // Few connections each, as the workers' test below: three instances of 32 would open up to 96,
    // and PostgreSQL's limit (100) is shared with every other test running meanwhile; a POST
    // whose claim then waited out the pool's 30 s was left leased, unsent, past the test's end.
    let few_connections = |c: &mut openport::config::Config| c.database_pool_size = 8;
    let first = spawn_app_with(few_connections).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(first.another_instance(few_connections).await);
    }
    let (second, third) = (&others[0], &others[1]);
    let receiver = Receiver::start().await;
    receiver.slow(Duration::from_millis(20));
    configure(&first, json!({"url": receiver.url("/both")})).await;
    let token = first.token().await;
    let imp_uid = paid_payment(&first, &token, "wh-two-instances", Value::Null).await;
    const N: usize = 60;
    for i in 0..N {
        enqueue_apart(&first, &imp_uid, i, "cancelled", Some(&format!("c{i}"))).await;
    }

    let mut attempted = 0;
    for _ in 0..3 {
        let (a, b, c, d) = tokio::join!(
            deliver(&first),
            deliver(second),
            deliver(third),
            deliver(&first)
        );
        attempted += a + b + c + d;
    }

    let got = receiver.requests();
    let mut ids = cancellation_ids(&got);
    ids.sort();
    ids.dedup();
    assert_eq!(got.len(), N, "each webhook POSTed once");
    assert_eq!(ids.len(), N, "every webhook delivered");
    assert_eq!(attempted, N);
    assert_eq!(history(&first, "?state=delivered").await.len(), N);
}

#[tokio::test]
async fn a_paid_key_in_payment_with_a_notice_url_fires_paid_and_an_ordinary_decline_fires_nothing()
{
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let token = app.token().await;
    let body = json!({"merchant_uid": "wh-auto", "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
        "expiry": future_expiry(), "notice_url": receiver.url("/auto")});
    let (_, paid) = app
        .post("/subscribe/payments/onetime", Some(&token), body)
        .await;
    let mut declined = json!({"merchant_uid": "wh-declined", "amount": 1000, "card_number": test_cards::DAILY_LIMIT_EXCEEDED,
        "expiry": future_expiry()});
    declined["notice_url"] = json!(receiver.url("/auto"));
    app.post("/subscribe/payments/onetime", Some(&token), declined)
        .await;
    assert_eq!(deliver(&app).await, 1);
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        json_body(&got[0]),
        json!({"imp_uid": paid["response"]["imp_uid"], "merchant_uid": "wh-auto", "status": "paid"})
    );
}

/// The window payments `settle_window` records (not card windows, which key-in's record shares):
/// bank transfer, phone, gift certificate and points, each with `notice_url`; the request_pay
/// parameters and what the buyer enters in the window.
fn window_payments_announced_to(url: &str) -> [(Value, [(&'static str, &'static str); 2]); 4] {
    [
        (
            json!({"pay_method": "trans", "merchant_uid": "wh-bank", "amount": 3000,
                   "notice_url": url}),
            [("bank", "BK20"), ("action", "pay")],
        ),
        (
            json!({"pay_method": "phone", "merchant_uid": "wh-phone", "amount": 1500,
                   "notice_url": url}),
            [("mobile_no", "01012345678"), ("action", "pay")],
        ),
        (
            json!({"pay_method": "cultureland", "merchant_uid": "wh-gift", "amount": 2000,
                   "bypass": {"shop_user_id": "user123"}, "notice_url": url}),
            [("pin", "1234567890123456"), ("action", "pay")],
        ),
        (
            json!({"pay_method": "point", "merchant_uid": "wh-point", "amount": 2500,
                   "notice_url": url}),
            [("pin", "1234567890123456"), ("action", "pay")],
        ),
    ]
}

/// Each window payment fires exactly one webhook, `paid` with iamport's body, also when its
/// approval's answer is lost and the request finds the approval by an inquiry of its pay_type.
/// Nothing else checked the status `settle_window` announces: `ready` there (a virtual account's
/// word) would tell a merchant branching on it never to ship a paid order.
#[tokio::test]
async fn a_bank_transfer_phone_gift_and_point_window_payment_each_fire_one_paid_webhook_also_when_found_by_inquiry(
) {
    for lost in [false, true] {
        let app = spawn_app().await;
        let receiver = Receiver::start().await;
        let mut expected = Vec::new();
        for (params, fill) in window_payments_announced_to(&receiver.url("/window")) {
            // A window point payment whose answer is lost is not inquired by its request but let
            // go to the resolver (service/checkout.rs), so it is never found paid that way.
            if lost && params["pay_method"] == "point" {
                continue;
            }
            if lost {
                app.sandbox.inject(kcp_sandbox::FaultRule::new(
                    "/gw/enc/v1/payment",
                    kcp_sandbox::Fault::LoseResponse,
                ));
            }
            let merchant_uid = params["merchant_uid"].clone();
            let rsp = crate::checkout::request_pay(&app, params, &fill).await;
            assert_eq!(rsp["success"], true, "lost: {lost}: {rsp}");
            assert_eq!(rsp["status"], "paid", "lost: {lost}: {rsp}");
            assert!(app.sandbox.armed_faults().is_empty(), "lost: {lost}");
            expected.push(
                json!({"imp_uid": rsp["imp_uid"], "merchant_uid": merchant_uid, "status": "paid"}),
            );
        }
        assert_eq!(deliver(&app).await, expected.len(), "lost: {lost}");
        assert_eq!(deliver(&app).await, 0, "nothing more to send");
        let got = receiver.requests();
        let bodies: Vec<Value> = got.iter().map(json_body).collect();
        assert_eq!(bodies.len(), expected.len(), "lost: {lost}: {bodies:?}");
        for body in &expected {
            let times = bodies.iter().filter(|b| *b == body).count();
            assert_eq!(times, 1, "lost: {lost}: {body} in {bodies:?}");
        }
        app.assert_ledger_agrees().await;
    }
}

#[tokio::test]
async fn an_api_cancel_fires_cancelled_only_with_enable_webhook() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    configure(&app, json!({"url": receiver.url("/c")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-cancel", Value::Null).await;
    app.post(
        "/payments/cancel",
        Some(&token),
        json!({"imp_uid": imp_uid, "amount": 100}),
    )
    .await;
    assert_eq!(deliver(&app).await, 0, "API cancels are silent by default");
    let (_, c) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 100, "enable_webhook": true}),
        )
        .await;
    assert_eq!(deliver(&app).await, 1);
    let body = json_body(&receiver.requests()[0]);
    assert_eq!(body["status"], "cancelled");
    assert_eq!(
        body["cancellation_id"],
        c["response"]["cancel_history"][1]["cancellation_id"]
    );
}

/// `enable_webhook` as form bodies send it: Python's `str(True)` is `True`, and other clients
/// write `yes` or `on`; a spelling that is no boolean is refused (400), never read as false.
#[tokio::test]
async fn enable_webhook_in_a_form_body_is_read_in_any_case_and_a_non_boolean_is_refused() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    configure(&app, json!({"url": receiver.url("/c")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-form", Value::Null).await;
    let cancel = |flag: &'static str| {
        let (app, token, imp_uid) = (&app, &token, imp_uid.clone());
        async move {
            app.post_form(
                "/payments/cancel",
                token,
                &[
                    ("imp_uid", imp_uid.as_str()),
                    ("amount", "100"),
                    ("enable_webhook", flag),
                ],
            )
            .await
        }
    };
    for (flag, sent) in [("True", 1), ("YES", 1), ("on", 1), ("False", 0), ("", 0)] {
        let before = receiver.requests().len();
        let (status, body) = cancel(flag).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_i64()),
            (200, Some(0)),
            "{flag}: {body}"
        );
        deliver(&app).await;
        assert_eq!(
            receiver.requests().len() - before,
            sent,
            "enable_webhook={flag}"
        );
    }
    let (status, body) = cancel("maybe").await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("enable_webhook"),
        "{body}"
    );
}

#[tokio::test]
async fn a_declined_scheduled_charge_fires_failed_and_a_paid_one_fires_paid() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    configure(&app, json!({"url": receiver.url("/sched")})).await;
    let token = app.token().await;
    crate::billing::register(&app, &token, "wh-ok", test_cards::SHINHAN_CREDIT).await;
    crate::billing::register(&app, &token, "wh-limit", test_cards::INSUFFICIENT_LIMIT).await;
    let at = chrono::Utc::now().timestamp() + 10;
    for (uid, m) in [("wh-ok", "ws-ok"), ("wh-limit", "ws-limit")] {
        let (_, b) = app.post("/subscribe/payments/schedule", Some(&token),
            json!({"customer_uid": uid, "schedules": [{"merchant_uid": m, "schedule_at": at, "amount": 1000}]})).await;
        assert_eq!(b["code"], 0, "{b}");
    }
    app.advance(11);
    assert_eq!(app.app.gateway.run_due_schedules(10).await.unwrap(), 2);
    assert_eq!(deliver(&app).await, 2);
    let mut got: Vec<(String, String)> = receiver
        .requests()
        .iter()
        .map(|r| {
            let b = json_body(r);
            (
                b["merchant_uid"].as_str().unwrap().to_string(),
                b["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("ws-limit".to_string(), "failed".to_string()),
            ("ws-ok".to_string(), "paid".to_string())
        ]
    );
}

#[tokio::test]
async fn with_private_targets_off_a_webhook_to_this_host_is_refused_by_address_and_by_name() {
    let app = spawn_app_with(|c| c.webhooks.private_targets = Some(false)).await;
    let receiver = Receiver::start().await;
    let token = app.token().await;
    let by_name = receiver.url("/by-name").replace("127.0.0.1", "localhost");
    let notice = json!([receiver.url("/by-address"), by_name]);
    let body = json!({"merchant_uid": "wh-private", "amount": 1000,
        "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
        "notice_url": notice});
    let (_, paid) = app
        .post("/subscribe/payments/onetime", Some(&token), body)
        .await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let imp_uid = paid["response"]["imp_uid"].as_str().unwrap();

    assert_eq!(deliver(&app).await, 2);

    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list.len(), 2, "{list:?}");
    for delivery in &list {
        let error = delivery["attempts"][0]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains("not a public address"), "{delivery}");
        assert!(
            delivery["attempts"][0]["http_status"].is_null(),
            "{delivery}"
        );
    }
}

#[tokio::test]
async fn test_mode_delivers_to_this_host_unless_told_otherwise() {
    let app = spawn_app().await;
    assert!(app.app.gateway.settings.webhook_private_targets);
    let refusing = spawn_app_with(|c| c.webhooks.private_targets = Some(false)).await;
    assert!(!refusing.app.gateway.settings.webhook_private_targets);
    let mut live = openport::config::Config {
        test_mode: false,
        ..Default::default()
    };
    assert!(
        !live.webhook_private_targets(),
        "refused by default outside test mode"
    );
    live.webhooks.private_targets = Some(true);
    assert!(
        live.webhook_private_targets(),
        "unless the operator allows them"
    );
}

#[tokio::test]
async fn a_charge_outcome_and_its_webhooks_are_written_together_or_not_at_all() {
    use openport::store::entity::{pg_attempt, webhook_delivery};
    use openport::store::payments;
    use sea_orm::{
        ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    };

    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid = app.paid(&token, "wh-atomic", 1000).await["imp_uid"]
        .as_str()
        .unwrap()
        .to_string();
    let db = &app.app.gateway.db;
    let paid = payments::by_imp_uid(&db.read, None, &imp_uid)
        .await
        .unwrap()
        .unwrap();
    let attempt = pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(paid.id))
        .one(&db.read)
        .await
        .unwrap()
        .unwrap();
    // Reopened, as if its outcome were still being settled: an outcome is only written on an
    // open attempt of a pending payment.
    let mut reopen = attempt.clone().into_active_model();
    reopen.state = Set("unknown".into());
    let attempt = reopen.update(&db.write).await.unwrap();
    let mut reopen = paid.clone().into_active_model();
    reopen.status = Set("pending".into());
    let paid = reopen.update(&db.write).await.unwrap();
    let row = |url: &str| webhook_delivery::ActiveModel {
        id: Set(987_654),
        ..crate::helpers::failed_webhook_row(&paid, url)
    };
    let change = || {
        let mut p = paid.clone().into_active_model();
        p.status = Set("failed".into());
        let mut a = attempt.clone().into_active_model();
        a.state = Set("failed".into());
        (p, a)
    };

    // Two rows with the same id: the last part of the write fails, so none of it may stand.
    let (p, a) = change();
    let refused = payments::conclude_charge(
        &db.write,
        &attempt,
        "pending",
        p,
        a,
        vec![row("https://a.example/h"), row("https://b.example/h")],
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    let after = payments::by_id(&db.read, paid.id).await.unwrap().unwrap();
    assert_eq!(after.status, "pending");
    let attempt_after = pg_attempt::Entity::find_by_id(attempt.id)
        .one(&db.read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempt_after.state, attempt.state);
    assert!(webhook_delivery::Entity::find_by_id(987_654)
        .one(&db.read)
        .await
        .unwrap()
        .is_none());

    // The same write with one row goes through whole.
    let (p, a) = change();
    let written = payments::conclude_charge(
        &db.write,
        &attempt,
        "pending",
        p,
        a,
        vec![row("https://a.example/h")],
    )
    .await
    .unwrap()
    .expect("the attempt was open");
    assert_eq!(written.status, "failed");
    assert_eq!(written.imp_uid, paid.imp_uid);
    let attempt_after = pg_attempt::Entity::find_by_id(attempt.id)
        .one(&db.read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempt_after.state, "failed");
    let delivery = webhook_delivery::Entity::find_by_id(987_654)
        .one(&db.read)
        .await
        .unwrap()
        .expect("the webhook row");
    assert_eq!(delivery.url, "https://a.example/h");
}

#[tokio::test]
async fn finished_deliveries_past_the_retention_are_pruned_with_their_attempts_and_pending_ones_stay(
) {
    use openport::store::entity::webhook_attempt;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let app = spawn_app().await;
    let token = app.token().await;
    let (ok, refusing, failing) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    refusing.always(400);
    failing.always(503);
    let mut imp_uids = Vec::new();
    for (uid, receiver) in [
        ("wh-prune-ok", &ok),
        ("wh-prune-400", &refusing),
        ("wh-prune-503", &failing),
    ] {
        let body = json!({"merchant_uid": uid, "amount": 1000,
            "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
            "notice_url": receiver.url("/hook")});
        let (_, paid) = app
            .post("/subscribe/payments/onetime", Some(&token), body)
            .await;
        assert_eq!(paid["response"]["status"], "paid", "{paid}");
        imp_uids.push(paid["response"]["imp_uid"].as_str().unwrap().to_string());
    }
    assert_eq!(deliver(&app).await, 3);
    let state_of = |list: &[Value]| list[0]["state"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for (imp_uid, state) in imp_uids.iter().zip(["delivered", "failed", "pending"]) {
        let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
        assert_eq!(state_of(&list), state);
        ids.push(list[0]["id"].as_i64().unwrap());
    }
    let gw = &app.app.gateway;

    // Young deliveries stay; 0 days keeps everything.
    assert_eq!(gw.prune_webhook_history(90, 1000).await.unwrap(), 0);
    app.advance(91 * 86_400);
    assert_eq!(gw.prune_webhook_history(0, 1000).await.unwrap(), 0);
    assert_eq!(history(&app, "").await.len(), 3);

    assert_eq!(gw.prune_webhook_history(90, 1000).await.unwrap(), 2);
    let left = history(&app, "").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["imp_uid"], imp_uids[2].as_str());
    assert_eq!(left[0]["state"], "pending");
    assert_eq!(left[0]["attempts"].as_array().unwrap().len(), 1);
    let orphans = webhook_attempt::Entity::find()
        .filter(webhook_attempt::Column::DeliveryId.is_in(ids[..2].to_vec()))
        .count(&gw.db.read)
        .await
        .unwrap();
    assert_eq!(orphans, 0);
    // The payments themselves are untouched (a new token: 91 days have passed).
    let token = app.token().await;
    for imp_uid in &imp_uids {
        assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    }
}

/// A `paid` delivery to `receiver` (at `/{name}`) that a worker has claimed and is sending, its
/// POST held 1.5 s by the receiver: its id and the worker.
async fn delivery_in_flight(
    app: &TestApp,
    receiver: &Receiver,
    name: &str,
) -> (
    i64,
    tokio::task::JoinHandle<openport::service::ServiceResult<usize>>,
) {
    let id = pending_delivery(app, receiver, name).await;
    // Slow enough that the test's next steps (a resend, a clock move) happen while the POST waits,
    // even on a loaded machine.
    receiver.slow(Duration::from_millis(4000));
    let gateway = app.app.gateway.clone();
    let worker = tokio::spawn(async move { gateway.deliver_due_webhooks(100).await });
    // Until the worker holds the lease, while its POST waits for the receiver.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let d = openport::store::webhooks::delivery_by_id(&app.app.gateway.db.read, id)
            .await
            .unwrap()
            .unwrap();
        if d.lease_until > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never claimed the delivery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (id, worker)
}

#[tokio::test]
async fn a_resend_while_the_delivery_is_in_flight_is_refused_instead_of_being_overwritten() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (id, worker) = delivery_in_flight(&app, &receiver, "in-flight").await;

    let (status, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "refused while in flight: {body}");

    worker.await.unwrap().unwrap();
    let (status, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["state"], "pending", "{body}");
    assert_eq!(deliver(&app).await, 1);
    assert_eq!(receiver.requests().len(), 2);
}

/// A worker that stalled past its lease (its POST slower than the lease) cannot overwrite an
/// operator's resend made once the lease ran out: the resend clears the lease the worker's late
/// result is conditional on, so the delivery stays queued and is sent again.
#[tokio::test]
async fn a_resend_after_a_stalled_workers_lease_ran_out_is_not_overwritten_by_its_late_result() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(&[400]);
    let (id, worker) = delivery_in_flight(&app, &receiver, "stalled").await;
    // The worker's lease runs out while its POST is still waiting for the receiver.
    app.advance(3_600);
    let (_, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(body["response"]["state"], "pending", "{body}");
    worker.await.unwrap().unwrap();
    let d = openport::store::webhooks::delivery_by_id(&app.app.gateway.db.read, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, "pending", "the resend stands: {d:?}");
    receiver.slow(Duration::ZERO);
    assert_eq!(deliver(&app).await, 1);
    assert_eq!(receiver.requests().len(), 2);
    // The stalled POST happened: its attempt is in the history, though its result was not applied.
    let list = history(&app, "").await;
    let statuses: Vec<&Value> = list[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["http_status"])
        .collect();
    assert_eq!(statuses, [&json!(400), &json!(200)], "{list:?}");
    assert_eq!(list[0]["state"], "delivered");
}

/// A pending delivery of a paid payment to `receiver`, not claimed yet: its id.
async fn pending_delivery(app: &TestApp, receiver: &Receiver, name: &str) -> i64 {
    configure(app, json!({"url": receiver.url(&format!("/{name}"))})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(app, &token, &format!("wh-{name}"), Value::Null).await;
    enqueue(app, &imp_uid, "paid", None).await;
    history(app, &format!("?imp_uid={imp_uid}")).await[0]["id"]
        .as_i64()
        .unwrap()
}

/// A worker that stalled between its claim and its POST (a paused VM) while its lease ran out and
/// another instance claimed and sent the delivery does not send it a second time when it wakes.
#[tokio::test]
async fn a_worker_that_stalled_past_its_lease_before_posting_leaves_the_webhook_to_the_one_that_took_it_over(
) {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let id = pending_delivery(&app, &receiver, "stalled-before-post").await;
    let gw = &app.app.gateway;
    let stalled = gw.claim_webhook(id).await.unwrap().expect("claimed");
    app.advance(3_600);
    let other = gw.claim_webhook(id).await.unwrap().expect("taken over");
    gw.send_webhook(other).await.unwrap();
    assert_eq!(receiver.requests().len(), 1);

    gw.send_webhook(stalled).await.unwrap();
    assert_eq!(receiver.requests().len(), 1, "sent once only");
    let list = history(&app, "").await;
    assert_eq!(list[0]["state"], "delivered", "{list:?}");
    assert_eq!(list[0]["attempts"].as_array().unwrap().len(), 1, "{list:?}");
}

/// With less of its lease left than a POST may take (30 s), a worker gives the delivery back
/// instead of sending it: its lease could run out in flight and another instance send it again.
#[tokio::test]
async fn a_worker_with_too_little_lease_left_for_a_post_gives_the_webhook_back_unsent() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let id = pending_delivery(&app, &receiver, "short-lease").await;
    let gw = &app.app.gateway;
    let claim = gw.claim_webhook(id).await.unwrap().expect("claimed");
    app.advance(100);
    gw.send_webhook(claim).await.unwrap();
    assert!(receiver.requests().is_empty(), "not sent");
    let d = openport::store::webhooks::delivery_by_id(&gw.db.read, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.state.as_str(), d.lease_until), ("pending", 0), "{d:?}");

    assert_eq!(deliver(&app).await, 1, "due again at once");
    assert_eq!(receiver.requests().len(), 1);
}

/// A database error between a worker's claim and its POST gives the delivery back, due again in
/// seconds, not when the claim's two-minute lease runs out. The merchant's row is made unreadable
/// for the moment by renaming its table.
#[tokio::test]
async fn a_database_error_before_the_post_gives_the_webhook_back_due_again_in_seconds() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let id = pending_delivery(&app, &receiver, "db-error-before-post").await;
    let gw = &app.app.gateway;
    let claim = gw.claim_webhook(id).await.unwrap().expect("claimed");
    let claimed_at = gw.clock.unix();
    execute(
        &app,
        vec!["ALTER TABLE merchants RENAME TO merchants_away".into()],
    )
    .await;
    let sent = gw.send_webhook(claim).await;
    // The delay runs from the error, which a slow host may meet a second or more after the claim.
    let failed_by = gw.clock.unix();
    execute(
        &app,
        vec!["ALTER TABLE merchants_away RENAME TO merchants".into()],
    )
    .await;
    assert!(sent.is_err(), "the error is reported: {sent:?}");
    assert!(receiver.requests().is_empty(), "not sent");
    let d = openport::store::webhooks::delivery_by_id(&gw.db.read, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.state, "pending", "{d:?}");
    assert!(
        d.lease_until > claimed_at && d.lease_until <= failed_by + 10,
        "due again within seconds, not after the 120 s lease: {d:?}"
    );

    assert_eq!(deliver(&app).await, 0, "not at once");
    app.advance(11);
    assert_eq!(deliver(&app).await, 1, "due again");
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn more_than_ten_notice_urls_or_an_overlong_one_are_refused_from_rest_and_from_the_browser_before_anything_is_written(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let eleven: Vec<String> = (0..11).map(|i| format!("https://hook.test/{i}")).collect();
    let overlong = vec![format!("https://hook.test/{}", "a".repeat(2048))];
    for notice in [json!(eleven), json!(overlong)] {
        let (status, res) = app
            .post(
                "/subscribe/payments/onetime",
                Some(&token),
                json!({"merchant_uid": "many-hooks", "amount": 1000,
                       "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                       "notice_url": notice.clone()}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
        assert!(
            res["message"].as_str().unwrap().contains("notice_url"),
            "{res}"
        );
        let (_, browser) = app
            .post(
                "/checkout/request",
                None,
                json!({"imp_code": "imp00000000", "page_url": "http://shop.test/cart",
                       "params": {"pay_method": "vbank", "merchant_uid": "many-hooks-web",
                                  "amount": 5000, "notice_url": notice}}),
            )
            .await;
        assert_eq!(browser["code"], -1, "{browser}");
    }
    assert!(app.sandbox.ledger().is_empty());
    let (_, none) = app.get("/payments/find/many-hooks", Some(&token)).await;
    assert_eq!(none["code"], -1, "nothing written: {none}");
    // Ten are taken.
    let ten: Vec<String> = (0..10).map(|i| format!("https://hook.test/{i}")).collect();
    paid_payment(&app, &token, "ten-hooks", json!(ten)).await;
}

#[tokio::test]
async fn a_notice_url_that_is_not_an_http_url_or_not_text_is_refused_not_dropped() {
    let app = spawn_app().await;
    let token = app.token().await;
    for notice in [
        json!({}),
        json!(true),
        json!(["https://hook.test/a", false]),
        json!(["https://hook.test/a", {"url": "x"}]),
        json!(["not a url"]),
        json!("ftp://hook.test/"),
        json!("javascript:alert(1)"),
    ] {
        let (status, res) = app
            .post(
                "/subscribe/payments/onetime",
                Some(&token),
                json!({"merchant_uid": "odd-hooks", "amount": 1000,
                       "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                       "notice_url": notice.clone()}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{notice}: {res}");
        assert!(
            res["message"].as_str().unwrap().contains("notice_url"),
            "{res}"
        );
    }
    assert!(app.sandbox.ledger().is_empty());
    // Absent, null and an empty string name none: the merchant's default applies. (A null or
    // blank list item is dropped: a_null_or_blank_notice_url_item_is_dropped_….)
    for (uid, notice) in [("no-hook-1", json!(null)), ("no-hook-2", json!(""))] {
        let (_, res) = app
            .post(
                "/subscribe/payments/onetime",
                Some(&token),
                json!({"merchant_uid": uid, "amount": 1000,
                       "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                       "notice_url": notice}),
            )
            .await;
        assert_eq!(res["response"]["status"], "paid", "{res}");
    }
}

/// Polls `done` every 20 ms for up to 15 s: half the 30 s a POST to a tarpit takes to time out,
/// so an outcome that waits for those POSTs misses the deadline.
async fn within_fifteen_seconds(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 15 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An app running its own webhook worker (a tick every `interval_ms`) and one paid payment of
/// the demo merchant, made before the merchant had a URL so that the payment itself announces
/// nothing; returns the app and the payment's imp_uid.
async fn a_worker_and_a_payment_it_has_not_announced(
    interval_ms: u64,
    merchant_uid: &str,
) -> (TestApp, String) {
    let app = spawn_app_with(|c| {
        c.background_jobs = true;
        c.resolver.interval_ms = interval_ms;
    })
    .await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, merchant_uid, Value::Null).await;
    (app, imp_uid)
}

/// An app running its own webhook worker (every 50 ms) with `n` webhooks of the demo merchant
/// due to a tarpit; returns once the worker's POSTs have reached the tarpit.
async fn merchant_behind_a_tarpit(n: usize) -> (TestApp, Tarpit) {
    let (app, imp_uid) = a_worker_and_a_payment_it_has_not_announced(50, "wh-tarpit").await;
    let tarpit = Tarpit::start().await;
    let (status, body) = configure(&app, json!({"url": tarpit.url("/hook")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for i in 0..n {
        enqueue_apart(&app, &imp_uid, i, "cancelled", Some(&format!("c{i}"))).await;
    }
    within_fifteen_seconds("the worker's POSTs reach the tarpit", async || {
        tarpit.accepted() >= MERCHANT_IN_FLIGHT
    })
    .await;
    (app, tarpit)
}

/// A paid payment of a second merchant with a `notice_url` to `receiver`: its `paid` webhook is
/// due after every webhook queued before it. Returns its imp_uid.
async fn another_merchants_payment(app: &TestApp, receiver: &Receiver) -> String {
    let (key, secret) = app.second_merchant().await;
    let token = app.token_for(&key, &secret).await;
    let (status, res) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "wh-other-shop", "amount": 1000,
                   "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "birth": "800101", "pwd_2digit": "00", "name": "다른 가맹점",
                   "notice_url": receiver.url("/other")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["response"]["status"], "paid", "{res}");
    res["response"]["imp_uid"].as_str().unwrap().to_string()
}

/// Waits until the worker has delivered the webhook of `imp_uid`.
async fn until_delivered(app: &TestApp, imp_uid: &str) {
    within_fifteen_seconds("the other merchant's webhook is delivered", async || {
        history(app, &format!("?imp_uid={imp_uid}"))
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
}

#[tokio::test]
async fn a_merchant_whose_receiver_never_answers_does_not_hold_up_another_merchants_webhooks() {
    let (app, _tarpit) = merchant_behind_a_tarpit(20).await;
    let receiver = Receiver::start().await;

    let imp_uid = another_merchants_payment(&app, &receiver).await;
    until_delivered(&app, &imp_uid).await;

    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(json_body(&got[0])["imp_uid"], imp_uid.as_str());
    // Meanwhile none of the tarpit's POSTs has ended: every one of its deliveries is still
    // pending without a recorded attempt.
    let tarpitted = history(&app, &format!("?merchant_id={}", demo_merchant_id(&app))).await;
    assert_eq!(tarpitted.len(), 20);
    for d in &tarpitted {
        assert_eq!(
            (&d["state"], &d["attempt_count"]),
            (&json!("pending"), &json!(0)),
            "{d}"
        );
    }
}

#[tokio::test]
async fn a_merchant_whose_receiver_never_answers_gets_no_more_posts_in_flight_than_its_cap() {
    use openport::store::entity::webhook_delivery;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let (app, tarpit) = merchant_behind_a_tarpit(20).await;
    // The other merchant's webhook, due after all 20, is delivered: the worker listed due rows
    // after reaching the cap, with the tarpit's first in that order, and took none of them.
    let receiver = Receiver::start().await;
    let imp_uid = another_merchants_payment(&app, &receiver).await;
    until_delivered(&app, &imp_uid).await;

    assert_eq!(tarpit.accepted(), MERCHANT_IN_FLIGHT, "POSTs to the tarpit");
    let db = &app.app.gateway.db;
    let leased = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::MerchantId.eq(demo_merchant_id(&app)))
        .filter(webhook_delivery::Column::LeaseUntil.gt(0))
        .count(&db.read)
        .await
        .unwrap();
    assert_eq!(
        leased, MERCHANT_IN_FLIGHT as u64,
        "only the rows in flight are claimed; the rest stay free for any instance"
    );
}

#[tokio::test]
async fn a_shutdown_gives_webhook_posts_in_flight_a_short_grace_and_leaves_unanswered_ones_to_their_lease(
) {
    use openport::store::entity::webhook_delivery;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let (app, tarpit) = merchant_behind_a_tarpit(20).await;
    let gateway = app.app.gateway.clone();
    let merchant_id = demo_merchant_id(&app);
    let TestApp { app: running, .. } = app;

    tokio::time::timeout(Duration::from_secs(15), running.shutdown())
        .await
        .expect("the stop does not wait out the receiver's 30 s timeout");

    let rows = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::MerchantId.eq(merchant_id))
        .all(&gateway.db.read)
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    assert!(
        rows.iter().all(|d| d.state == "pending" && d.attempts == 0),
        "the dropped POSTs recorded nothing: {rows:?}"
    );
    let leased = rows.iter().filter(|d| d.lease_until > 0).count();
    assert_eq!(
        leased, MERCHANT_IN_FLIGHT,
        "the dropped POSTs keep their lease until it expires, then any instance sends them again"
    );
    assert_eq!(
        tarpit.accepted(),
        MERCHANT_IN_FLIGHT,
        "nothing claimed after the stop"
    );
}

/// A webhook this instance writes is sent at once (after a short grace for its transaction to
/// commit), not at the worker's next tick: here the tick is a minute away, and the webhook still
/// arrives within seconds.
#[tokio::test]
async fn a_new_webhook_is_sent_without_waiting_for_the_workers_next_tick() {
    let app = spawn_app_with(|c| {
        c.background_jobs = true;
        c.resolver.interval_ms = 60_000;
    })
    .await;
    let token = app.token().await;
    let receiver = Receiver::start().await;
    let imp_uid = paid_onetime(&app, &token, "wh-prompt", json!(receiver.url("/prompt"))).await;
    announced_to(
        &receiver,
        &imp_uid,
        "the paid webhook arrives before the next tick",
    )
    .await;
}

/// Under load every payment rings the worker's "webhook written" signal. A steady stream of
/// webhooks to a receiver that answers at once leaves as fast as it is written: the worker
/// refills its slots as POSTs end, whatever the signal does meanwhile. It used to collect one
/// ended POST per wake-up and sleep 100 ms on each ring with the other ended POSTs still counted
/// as busy slots: about one webhook per 100 ms, so the 300 here needed half a minute and more
/// while the signal kept ringing; now they are all out within a second of the last write.
#[tokio::test]
async fn a_steady_stream_of_webhooks_leaves_as_fast_as_it_is_written_while_payments_ring_the_worker(
) {
    // The worker's own tick is a minute away: only the signal and POSTs ending drive it.
    let (app, imp_uid) = a_worker_and_a_payment_it_has_not_announced(60_000, "wh-stream").await;
    let receiver = Receiver::start().await;
    let (status, body) = configure(&app, json!({"url": receiver.url("/stream")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    const N: usize = 300;
    for i in 0..N {
        enqueue_apart(&app, &imp_uid, i, "cancelled", Some(&format!("c{i}"))).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Payments go on (their webhooks elsewhere, or none), each ringing the signal as it writes.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while receiver.requests().len() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {N} delivered 15 s after the last was written",
            receiver.requests().len()
        );
        app.app.gateway.webhooks_written.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut ids = cancellation_ids(&receiver.requests());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "each webhook delivered once");
}

/// Instances claiming at once take disjoint batches: on PostgreSQL rows another instance's claim
/// holds locked are skipped (`FOR UPDATE SKIP LOCKED`), and the worker fills its slots from the
/// rows after them. It used to list the oldest due rows, the same ones every instance listed,
/// and claim them one by one: here it waited on the first locked row for as long as the lock
/// was held, and an instance that lost every race started nothing until its next tick.
#[tokio::test]
async fn a_worker_claims_past_the_rows_another_instance_is_claiming() {
    use openport::jobs::webhooks::WebhookWorker;
    use openport::store::entity::webhook_delivery;
    use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite has one writer and no row locks
    }
    let receiver = Receiver::start().await;
    // Held long enough to see which rows the worker's POSTs hold leased.
    receiver.slow(Duration::from_secs(2));
    configure(&app, json!({"url": receiver.url("/claim")})).await;
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-skip-locked", Value::Null).await;
    for i in 0..32 {
        enqueue_apart(&app, &imp_uid, i, "cancelled", Some(&format!("c{i:02}"))).await;
    }
    let gw = &app.app.gateway;
    // Another instance's claim, under way: the 16 oldest rows locked.
    let other = gw.db.write.begin().await.unwrap();
    other
        .execute_unprepared(
            "SELECT id FROM webhook_deliveries ORDER BY next_attempt_at, id LIMIT 16 FOR UPDATE",
        )
        .await
        .unwrap();

    let mut worker = WebhookWorker::new(gw.clone());
    let waiting = tokio::time::timeout(Duration::from_secs(10), worker.refill())
        .await
        .expect("the worker does not wait for the other claim")
        .unwrap();
    assert!(waiting, "more of the merchant's rows are due than its cap");
    assert_eq!(worker.in_flight(), MERCHANT_IN_FLIGHT);
    let leased = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::LeaseUntil.gt(0))
        .all(&gw.db.read)
        .await
        .unwrap();
    let mut claimed: Vec<&str> = leased
        .iter()
        .map(|d| d.cancellation_id.as_deref().unwrap())
        .collect();
    claimed.sort();
    assert_eq!(
        claimed,
        ["c16", "c17", "c18", "c19"],
        "the oldest rows not locked; those over the cap given back"
    );
    other.rollback().await.unwrap();
    worker.wind_down(Duration::from_secs(10)).await;
    assert_eq!(receiver.requests().len(), MERCHANT_IN_FLIGHT);
}

/// Three instances' own workers (not test-driven passes) deliver each webhook once: their batch
/// claims never overlap, and rows one gives back (its merchant at the cap) go to any of them.
#[tokio::test]
async fn three_instances_workers_deliver_each_webhook_exactly_once() {
    use openport::store::entity::webhook_attempt;
    use sea_orm::{EntityTrait, PaginatorTrait};

    // Few connections each: three instances with 16 POSTs in flight each would otherwise open
    // dozens, and PostgreSQL's limit is shared with every other test running meanwhile.
    let worker = |c: &mut openport::config::Config| {
        c.background_jobs = true;
        c.resolver.interval_ms = 50;
        c.database_pool_size = 4;
    };
    let first = spawn_app_with(worker).await;
    let token = first.token().await;
    // Paid before the merchant has a URL: the payment itself announces nothing.
    let imp_uid = paid_payment(&first, &token, "wh-three-workers", Value::Null).await;
    let receiver = Receiver::start().await;
    receiver.slow(Duration::from_millis(5));
    configure(&first, json!({"url": receiver.url("/three")})).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(first.another_instance(worker).await);
    }
    const N: usize = 150;
    for i in 0..N {
        enqueue_apart(&first, &imp_uid, i, "cancelled", Some(&format!("c{i}"))).await;
    }
    within_fifteen_seconds("every webhook delivered", async || {
        history(&first, "?state=pending").await.is_empty()
    })
    .await;

    let mut ids = cancellation_ids(&receiver.requests());
    assert_eq!(ids.len(), N, "each webhook POSTed once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "every webhook delivered");
    let attempts = webhook_attempt::Entity::find()
        .count(&first.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(attempts, N as u64);
}

/// An app running its own webhook worker (every 50 ms) whose demo merchant's configured URL is
/// `receiver`, and its token.
async fn a_worker_and_a_merchant_url(receiver: &Receiver) -> (TestApp, String) {
    let app = spawn_app_with(|c| {
        c.background_jobs = true;
        c.resolver.interval_ms = 50;
    })
    .await;
    let (status, body) = configure(&app, json!({"url": receiver.url("/own")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = app.token().await;
    (app, token)
}

/// A paid payment whose `notice_url` lists `urls` (the paid webhook goes to each, and not to the
/// merchant's URL); returns its imp_uid.
async fn paid_with_notice_urls(app: &TestApp, token: &str, uid: &str, urls: &[String]) -> String {
    paid_onetime(app, token, uid, json!(urls)).await
}

/// A paid key-in payment of `merchant_uid` whose webhooks are left to the worker, with `notice`
/// as its `notice_url` (null: none, so to the merchant's URL); its imp_uid.
async fn paid_onetime(app: &TestApp, token: &str, merchant_uid: &str, notice: Value) -> String {
    let mut body = json!({"merchant_uid": merchant_uid, "amount": 1000,
                          "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                          "birth": "800101", "pwd_2digit": "00", "name": "웹훅 상품"});
    if !notice.is_null() {
        body["notice_url"] = notice;
    }
    let (status, res) = app
        .post("/subscribe/payments/onetime", Some(token), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["response"]["status"], "paid", "{res}");
    res["response"]["imp_uid"].as_str().unwrap().to_string()
}

/// Waits (15 s at most, failing with `what`) until `receiver` got a webhook of `imp_uid`.
async fn announced_to(receiver: &Receiver, imp_uid: &str, what: &str) {
    within_fifteen_seconds(what, async || {
        receiver
            .requests()
            .iter()
            .any(|r| r.json()["imp_uid"] == imp_uid)
    })
    .await;
}

/// Ten distinct URLs on `tarpit` (a payment's `notice_url`s are each called once).
fn ten_tarpit_urls(tarpit: &Tarpit, prefix: &str) -> Vec<String> {
    (0..10)
        .map(|i| tarpit.url(&format!("/{prefix}{i}")))
        .collect()
}

/// A paid payment of the demo merchant without a `notice_url`: its webhook goes to the
/// merchant's configured URL. Waits until `receiver` got it.
async fn the_merchants_own_webhook_arrives(app: &TestApp, token: &str, receiver: &Receiver) {
    let imp_uid = paid_onetime(app, token, "wh-own-url", Value::Null).await;
    announced_to(
        receiver,
        &imp_uid,
        "the webhook to the merchant's own URL is sent",
    )
    .await;
}

/// A buyer's browser chooses a payment's `notice_url`s (up to 10, and a virtual-account window
/// costs nothing). Receivers that accept the connection and never answer used to hold all of the
/// merchant's slots, 30 s per attempt, and the merchant's own webhooks, claimed oldest first,
/// waited behind every one of them (here 30 rows, four at a time: minutes). One slot of the
/// merchant's is now kept for its configured URL.
#[tokio::test]
async fn notice_urls_that_never_answer_leave_a_slot_for_the_merchants_own_url() {
    use openport::jobs::webhooks::MERCHANT_NOTICE_URLS_IN_FLIGHT;

    let receiver = Receiver::start().await;
    let (app, token) = a_worker_and_a_merchant_url(&receiver).await;
    let tarpit = Tarpit::start().await;
    for i in 0..3 {
        let urls = ten_tarpit_urls(&tarpit, &format!("p{i}-"));
        paid_with_notice_urls(&app, &token, &format!("wh-tarpitted-{i}"), &urls).await;
    }
    within_fifteen_seconds("the worker's POSTs reach the tarpit", async || {
        tarpit.accepted() >= MERCHANT_NOTICE_URLS_IN_FLIGHT
    })
    .await;

    the_merchants_own_webhook_arrives(&app, &token, &receiver).await;
    assert_eq!(
        tarpit.accepted(),
        MERCHANT_NOTICE_URLS_IN_FLIGHT,
        "the notice_urls' share of the merchant's slots, no more"
    );
    let tarpitted = history(&app, "?state=pending").await;
    let tarpitted = tarpitted
        .iter()
        .filter(|d| d["url"].as_str().unwrap().starts_with(&tarpit.url("/")))
        .count();
    assert_eq!(tarpitted, 30, "every tarpitted delivery still waits");
}

/// Each merchant's `imp_code` is on its shop's pages, so `notice_url`s that never answer can be
/// set on payments of many merchants. Six merchants' together held all 16 slots of the instance
/// (each merchant 3 of its 4), and every merchant's own webhooks waited. `notice_url`s hold at
/// most 12 of the 16 now.
#[tokio::test]
async fn notice_urls_of_many_merchants_that_never_answer_leave_slots_for_configured_urls() {
    use openport::jobs::webhooks::NOTICE_URLS_IN_FLIGHT;

    let receiver = Receiver::start().await;
    let (app, token) = a_worker_and_a_merchant_url(&receiver).await;
    let tarpit = Tarpit::start().await;
    for m in 0..6 {
        let (key, secret) = app.second_merchant().await;
        let other = app.token_for(&key, &secret).await;
        let urls = ten_tarpit_urls(&tarpit, &format!("m{m}-"));
        paid_with_notice_urls(&app, &other, &format!("wh-shop-{m}"), &urls).await;
    }
    within_fifteen_seconds("the worker's POSTs reach the tarpit", async || {
        tarpit.accepted() >= NOTICE_URLS_IN_FLIGHT
    })
    .await;

    the_merchants_own_webhook_arrives(&app, &token, &receiver).await;
    assert_eq!(
        tarpit.accepted(),
        NOTICE_URLS_IN_FLIGHT,
        "the notice_urls' share of the instance's slots, no more"
    );
}

/// The worker prunes KCP notifications past the retention 1,000 at a time; a full batch brings
/// the next prune forward, as one of webhook history does. A full batch of notifications used to
/// wait an hour for the next one, so at most 1,000 went per hour.
#[tokio::test]
async fn notifications_past_the_retention_are_pruned_batch_after_batch_without_waiting_an_hour() {
    use openport::store::entity::kcp_notification;
    use sea_orm::{EntityTrait, PaginatorTrait, Set};

    const OLD: usize = 2_500;
    let app = spawn_app().await;
    let db = &app.app.gateway.db;
    let rows: Vec<kcp_notification::ActiveModel> = (0..OLD)
        .map(|i| kcp_notification::ActiveModel {
            noti_id: Set(format!("old-{i}")),
            site_cd: Set("T0000".into()),
            tno: Set(format!("9{i:013}")),
            tx_cd: Set("TX00".into()),
            op_cd: Set(Some("00".into())),
            amount: Set(1000),
            total: Set(1000),
            deposited_at: Set(None),
            received_at: Set(0),
            outcome: Set(Some("kept".into())),
            verified_at: Set(Some(0)),
            ..Default::default()
        })
        .collect();
    for chunk in rows.chunks(500) {
        kcp_notification::Entity::insert_many(chunk.to_vec())
            .exec(&db.write)
            .await
            .unwrap();
    }

    // An instance whose worker prunes at its first pass, then as often as it says.
    let _worker = app
        .another_instance(|c| {
            c.background_jobs = true;
            c.resolver.interval_ms = 50;
        })
        .await;
    within_fifteen_seconds("every old notification is pruned", async || {
        kcp_notification::Entity::find()
            .count(&db.read)
            .await
            .unwrap()
            == 0
    })
    .await;
}

fn statuses(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| json_body(r)["status"].as_str().unwrap().to_string())
        .collect()
}

/// The arrange step of the ordering tests: the demo merchant's configured URL is a new receiver
/// at `path` that answers `fails` first (then 200), and a paid payment `merchant_uid` announced
/// to it (its `paid` left to the test's deliveries) is followed by a `cancelled` event for each
/// of `cancellations` (its cancellation_id). Returns the receiver and the payment's imp_uid.
async fn a_paid_then_cancelled_payment(
    app: &TestApp,
    path: &str,
    fails: &[u16],
    merchant_uid: &str,
    cancellations: &[&str],
) -> (Receiver, String) {
    let receiver = Receiver::start().await;
    receiver.fail_next(fails);
    let (status, body) = configure(app, json!({"url": receiver.url(path)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = app.token().await;
    let imp_uid = paid_onetime(app, &token, merchant_uid, Value::Null).await;
    for c in cancellations {
        enqueue(app, &imp_uid, "cancelled", Some(c)).await;
    }
    (receiver, imp_uid)
}

/// The deliveries of `imp_uid`, oldest first.
async fn deliveries_of(
    app: &TestApp,
    imp_uid: &str,
) -> Vec<openport::store::entity::webhook_delivery::Model> {
    use openport::store::entity::webhook_delivery;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid))
        .order_by_asc(webhook_delivery::Column::Id)
        .all(&app.app.gateway.db.read)
        .await
        .unwrap()
}

/// Review rF, F1: the events of one payment used to be POSTed side by side, each on its own
/// retry schedule, so a receiver got `cancelled` before `paid`, or a `ready` retried after the
/// deposit's `paid`, and a merchant acting on the body's `status` moved a cancelled order back
/// to paid. Now an event waits while an older one of its payment to its URL is pending.
#[tokio::test]
async fn events_of_one_payment_reach_a_url_in_order() {
    let app = spawn_app().await;
    let token = app.token().await;

    // A charge, then a cancel with enable_webhook, before any delivery pass: both are due at
    // once, and `cancelled` leaves only once the receiver has answered `paid`.
    let receiver = Receiver::start().await;
    let answer = Duration::from_millis(300);
    receiver.slow(answer);
    configure(&app, json!({"url": receiver.url("/order")})).await;
    let imp_uid = paid_onetime(&app, &token, "wh-order", Value::Null).await;
    let (_, c) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "enable_webhook": true}),
        )
        .await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(deliver(&app).await, 2, "one pass sends both");
    let got = receiver.requests();
    assert_eq!(statuses(&got), ["paid", "cancelled"]);
    assert!(
        got[1].arrived.duration_since(got[0].arrived) >= answer,
        "`cancelled` was sent while `paid` was in flight"
    );

    // A virtual account whose receiver fails `ready` once: the deposit's `paid` waits for the
    // retry of `ready`, and follows it.
    let hooks = Receiver::start().await;
    hooks.fail_next(&[503]);
    let mut body = crate::vbanks::vbank(&app, "wh-order-vb", 15000);
    body["notice_url"] = json!(hooks.url("/vb"));
    let p = crate::vbanks::issued(&app, &token, body).await;
    assert_eq!(deliver(&app).await, 1, "`ready`, answered 503");
    crate::vbanks::deposit_until_paid(&app, &token, &p).await;
    assert_eq!(deliver(&app).await, 0, "`paid` waits for `ready`'s retry");
    assert_eq!(statuses(&hooks.requests()), ["ready"]);
    app.advance(61);
    assert_eq!(deliver(&app).await, 2, "`ready` again, then `paid`");
    assert_eq!(statuses(&hooks.requests()), ["ready", "ready", "paid"]);
    let vb_uid = p["imp_uid"].as_str().unwrap();
    let list = history(&app, &format!("?imp_uid={vb_uid}")).await;
    assert!(list.iter().all(|d| d["state"] == "delivered"), "{list:?}");
}

/// An older delivery given up for good (here a 4xx at once; after the last backoff alike) no
/// longer holds back the next event of its payment to its URL.
#[tokio::test]
async fn a_given_up_event_lets_the_next_one_of_its_payment_go() {
    let app = spawn_app().await;
    let (receiver, imp_uid) =
        a_paid_then_cancelled_payment(&app, "/gone-once", &[410], "wh-given-up", &["c1"]).await;
    assert_eq!(deliver(&app).await, 2);
    assert_eq!(statuses(&receiver.requests()), ["paid", "cancelled"]);
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    let states: Vec<&Value> = list.iter().map(|d| &d["state"]).collect();
    assert_eq!(
        states,
        [&json!("delivered"), &json!("failed")],
        "newest first"
    );
}

/// Review rF, F2: a resend went back to the URL stored on the delivery, so a webhook given up
/// because the merchant's URL was wrong could never reach the corrected one. A delivery to the
/// merchant's configured URL is resent to its current URL, content type and secret; one to a
/// payment's `notice_url` keeps its URL.
#[tokio::test]
async fn a_resend_after_the_merchant_url_was_corrected_goes_to_the_new_url() {
    let app = spawn_app().await;
    let wrong = Receiver::start().await;
    wrong.always(404);
    let right = Receiver::start().await;
    configure(&app, json!({"url": wrong.url("/s404")})).await;
    let token = app.token().await;
    let imp_uid = paid_onetime(&app, &token, "wh-moved", Value::Null).await;
    assert_eq!(deliver(&app).await, 1);
    let failed = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(failed[0]["state"], "failed", "{failed:?}");
    let id = failed[0]["id"].as_i64().unwrap();

    let key = [7u8; 32];
    let secret = format!("whsec_{}", B64.encode(key));
    let (status, body) = configure(
        &app,
        json!({"url": right.url("/ok"), "content_type": "form", "secret": secret}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["url"], right.url("/ok"), "{body}");
    assert_eq!(body["response"]["content_type"], "form", "{body}");
    assert_eq!(deliver(&app).await, 1);

    assert_eq!(wrong.requests().len(), 1, "not the old URL again");
    let got = right.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/ok");
    assert_eq!(
        got[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        got[0].body,
        format!("imp_uid={imp_uid}&merchant_uid=wh-moved&status=paid")
    );
    assert_eq!(got[0].signers(&[&key]), [0]);
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list[0]["state"], "delivered");
    let urls: Vec<&Value> = list[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["url"])
        .collect();
    assert_eq!(urls, [&json!(wrong.url("/s404")), &json!(right.url("/ok"))]);

    // A payment's notice_url is the payment's, not the merchant's: its resend keeps it.
    let notice = Receiver::start().await;
    notice.fail_next(&[404]);
    let other = paid_onetime(&app, &token, "wh-notice", json!(notice.url("/n"))).await;
    assert_eq!(deliver(&app).await, 1);
    let id = history(&app, &format!("?imp_uid={other}")).await[0]["id"]
        .as_i64()
        .unwrap();
    let (status, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(deliver(&app).await, 1);
    assert_eq!(notice.requests().len(), 2);
    assert_eq!(right.requests().len(), 1);
}

/// Review rA (minor note): a target refused as not public, by its literal address or by every
/// address its name resolves to, stayed `pending` and was refused again six times over almost
/// six hours. The refusal is permanent, as a 4xx is: the delivery is `failed` at once.
#[tokio::test]
async fn a_webhook_to_a_private_address_fails_at_once() {
    let app = spawn_app_with(|c| c.webhooks.private_targets = Some(false)).await;
    let receiver = Receiver::start().await;
    let token = app.token().await;
    let by_name = receiver.url("/by-name").replace("127.0.0.1", "localhost");
    let notice = json!([receiver.url("/by-address"), by_name]);
    let imp_uid = paid_onetime(&app, &token, "wh-private-fails", notice).await;

    assert_eq!(deliver(&app).await, 2);
    app.advance(2 * 60);
    assert_eq!(deliver(&app).await, 0, "not retried");

    assert!(receiver.requests().is_empty());
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list.len(), 2, "{list:?}");
    for d in &list {
        assert_eq!(d["state"], "failed", "{d}");
        assert_eq!(d["attempt_count"], 1, "{d}");
        let error = d["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("is not a public address"), "{d}");
    }
}

/// Instances claiming at once never take two events of one payment to one URL: the newer one is
/// not due while the older is `pending`, whether another instance's claim holds the older row
/// locked (PostgreSQL, `FOR UPDATE SKIP LOCKED`), has leased it, or both claim together. Once the
/// older one is delivered, either instance may take the newer.
#[tokio::test]
async fn two_instances_never_take_two_events_of_one_payment_to_one_url_at_once() {
    use openport::store::webhooks::LeftOut;
    use sea_orm::ConnectionTrait;

    let app = spawn_app().await;
    let other = app.another_instance(|_| {}).await;
    let (receiver, _) =
        a_paid_then_cancelled_payment(&app, "/one", &[], "wh-one-at-a-time", &["c1"]).await;
    let (gw, other_gw) = (&app.app.gateway, &other.app.gateway);
    let status_of = async |id: i64| {
        openport::store::webhooks::delivery_by_id(&gw.db.read, id)
            .await
            .unwrap()
            .unwrap()
            .status
    };

    if app.database_url.starts_with("postgres") {
        // Another instance's claim under way: the older row locked, not yet leased.
        let txn = gw.db.write.begin().await.unwrap();
        txn.execute_unprepared(
            "SELECT id FROM webhook_deliveries WHERE status = 'paid' FOR UPDATE",
        )
        .await
        .unwrap();
        let claimed = tokio::time::timeout(
            Duration::from_secs(10),
            other_gw.claim_due_webhooks(16, LeftOut::default()),
        )
        .await
        .expect("the claim skips the locked row")
        .unwrap();
        assert!(
            claimed.is_empty(),
            "the newer event waits for the locked older one"
        );
        txn.rollback().await.unwrap();
    }

    let (a, b) = tokio::join!(
        gw.claim_due_webhooks(16, LeftOut::default()),
        other_gw.claim_due_webhooks(16, LeftOut::default())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.len() + b.len(),
        1,
        "one of the two events, by one instance"
    );
    let (holder, (due, claim)) = match (a.into_iter().next(), b.into_iter().next()) {
        (Some(c), None) => (gw, c),
        (None, Some(c)) => (other_gw, c),
        _ => unreachable!(),
    };
    assert_eq!(status_of(due.id).await, "paid");
    // Leased and in flight: still nothing for either instance.
    for g in [gw, other_gw] {
        assert!(g
            .claim_due_webhooks(16, LeftOut::default())
            .await
            .unwrap()
            .is_empty());
    }
    holder.send_webhook(claim).await.unwrap();
    let next = other_gw
        .claim_due_webhooks(16, LeftOut::default())
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(status_of(next[0].0.id).await, "cancelled");
    other_gw
        .send_webhook(next.into_iter().next().unwrap().1)
        .await
        .unwrap();
    assert_eq!(statuses(&receiver.requests()), ["paid", "cancelled"]);
}

/// Review rG, F2: the documented recovery ("correct the URL, then resend") broke the order. The
/// merchant's URL A was wrong, so `paid` failed there; the operator set URL B; the merchant
/// cancelled and `cancelled` reached B; the resend of `paid` was retargeted to B, which then got
/// `paid` after `cancelled`, and a merchant acting on `status` moved a cancelled order back to
/// paid. A resend is now refused while a newer event of its payment has reached, or is queued for,
/// the URL it would go to. The same without a URL change (a payment's `notice_url`).
#[tokio::test]
async fn a_resend_after_a_newer_event_was_delivered_is_refused_and_the_order_kept() {
    let app = spawn_app().await;
    let a = Receiver::start().await;
    a.always(404);
    let b = Receiver::start().await;
    configure(&app, json!({"url": a.url("/a")})).await;
    let token = app.token().await;
    let imp_uid = paid_onetime(&app, &token, "wh-resend-order", Value::Null).await;
    assert_eq!(deliver(&app).await, 1, "`paid` to A, answered 404");
    let paid_id = history(&app, &format!("?imp_uid={imp_uid}")).await[0]["id"]
        .as_i64()
        .unwrap();

    let (status, body) = configure(&app, json!({"url": b.url("/b")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, c) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "enable_webhook": true}),
        )
        .await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(deliver(&app).await, 1, "`cancelled` to B");
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    let cancelled_id = list[0]["id"].as_i64().unwrap();
    assert_eq!(list[0]["state"], "delivered", "{list:?}");

    let body = resend(&app, paid_id).await;
    assert_eq!(body["code"], 1, "refused: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("id: {cancelled_id}")),
        "{message}"
    );
    assert!(message.contains("delivered"), "{message}");
    assert!(message.contains("/payments/"), "{message}");
    assert_eq!(deliver(&app).await, 0);
    assert_eq!(statuses(&b.requests()), ["cancelled"], "no `paid` after it");
    let list = history(&app, &format!("?imp_uid={imp_uid}")).await;
    assert_eq!(list[1]["state"], "failed", "untouched: {list:?}");
    assert_eq!(list[1]["url"], a.url("/a"), "untouched: {list:?}");

    // No URL change: a payment's notice_url got `cancelled` after its `paid` failed.
    let notice = Receiver::start().await;
    notice.fail_next(&[404]);
    let other = paid_onetime(&app, &token, "wh-resend-order-n", json!(notice.url("/n"))).await;
    assert_eq!(deliver(&app).await, 1);
    let paid_id = history(&app, &format!("?imp_uid={other}")).await[0]["id"]
        .as_i64()
        .unwrap();
    enqueue(&app, &other, "cancelled", Some("c1")).await;
    // Still queued, the newer event refuses the resend as well.
    assert_eq!(resend(&app, paid_id).await["code"], 1);
    assert_eq!(deliver(&app).await, 1);
    assert_eq!(resend(&app, paid_id).await["code"], 1);
    assert_eq!(deliver(&app).await, 0);
    assert_eq!(statuses(&notice.requests()), ["paid", "cancelled"]);

    // The newest event of a payment can still be resent.
    let body = resend(&app, cancelled_id).await;
    assert_eq!(body["response"]["state"], "pending", "{body}");
    assert_eq!(deliver(&app).await, 1);
    assert_eq!(statuses(&b.requests()), ["cancelled", "cancelled"]);
}

/// Review rG, F3: an event held back behind an older pending one of its payment was never
/// attempted, so its `next_attempt_at` stayed its creation time, at the head of the due index,
/// and every claim walked all such rows before reaching one it could take. The held-back rows now
/// follow the older row's retry time, and go in order once it is done. An event written while
/// the older one already waits for its retry starts there (it started at its creation time, at
/// the head of the index, until that retry moved it).
#[tokio::test]
async fn a_held_back_event_follows_the_retry_of_the_older_one_in_the_due_index() {
    let app = spawn_app().await;
    let (receiver, imp_uid) =
        a_paid_then_cancelled_payment(&app, "/held", &[503], "wh-held-back", &["c1", "c2"]).await;
    let before = deliveries_of(&app, &imp_uid).await;
    assert_eq!(deliver(&app).await, 1, "`paid`, answered 503");

    let after = deliveries_of(&app, &imp_uid).await;
    let retry = after[0].next_attempt_at;
    assert_eq!(after[0].state, "pending");
    assert!(retry > before[0].next_attempt_at, "{after:?}");
    for (was, is) in before[1..].iter().zip(&after[1..]) {
        assert!(was.next_attempt_at < retry, "{was:?}");
        assert_eq!(is.next_attempt_at, retry, "follows the older one: {is:?}");
        assert_eq!((is.state.as_str(), is.attempts), ("pending", 0), "{is:?}");
    }

    app.advance(10);
    enqueue(&app, &imp_uid, "cancelled", Some("c3")).await;
    let written = deliveries_of(&app, &imp_uid).await;
    let c3 = written.last().unwrap();
    assert!(c3.created_at < retry, "{c3:?}");
    assert_eq!(c3.next_attempt_at, retry, "starts behind the retry: {c3:?}");

    app.advance(51);
    assert_eq!(
        deliver(&app).await,
        4,
        "`paid` again, then the three `cancelled`"
    );
    assert_eq!(
        cancellation_ids(&receiver.requests()[2..]),
        ["c1", "c2", "c3"],
        "in order"
    );
    assert_eq!(
        statuses(&receiver.requests()),
        ["paid", "paid", "cancelled", "cancelled", "cancelled"]
    );
}

/// When an older event of a payment is done with, the next one held back behind it is due at
/// once (`store::webhooks::move_held_back`), and the worker claims again at once
/// (`WebhookWorker::finished`): it does not wait for its next tick. The receiver fails `paid`
/// once, then recovers; `cancelled` waits behind `paid`'s retry and leaves as soon as that retry
/// is delivered, with no tick and no step of the clock in between.
#[tokio::test]
async fn the_next_event_leaves_as_soon_as_the_older_one_is_delivered_on_its_retry() {
    use openport::jobs::webhooks::WebhookWorker;

    let app = spawn_app().await;
    // Only `advance` moves it: the retry is claimed by the step below, and `cancelled` is sent
    // in the same second as it.
    app.stop_clock();
    let (receiver, imp_uid) =
        a_paid_then_cancelled_payment(&app, "/next", &[503], "wh-next-at-once", &["c1"]).await;
    let gw = &app.app.gateway;
    let mut worker = WebhookWorker::new(gw.clone());

    // A tick: `paid` only, answered 503; `cancelled` waits behind its retry.
    worker.refill().await.unwrap();
    assert_eq!(worker.in_flight(), 1, "`cancelled` is held back");
    assert_eq!(
        worker.finished().await,
        Some(false),
        "`paid` waits for its retry: nothing new is due"
    );
    assert!(gw.due_webhooks(16).await.unwrap().is_empty());

    // The tick after the backoff: `paid` again, `cancelled` still behind it.
    app.advance(61);
    worker.refill().await.unwrap();
    assert_eq!(worker.in_flight(), 1, "`cancelled` is still held back");
    assert_eq!(
        worker.finished().await,
        Some(true),
        "`paid` delivered: the worker claims again at once"
    );
    let due = gw.due_webhooks(16).await.unwrap();
    assert_eq!(due.len(), 1, "`cancelled` is due at once: {due:?}");

    // That claim, right away: `cancelled`.
    worker.refill().await.unwrap();
    assert_eq!(worker.in_flight(), 1);
    assert_eq!(worker.finished().await, Some(true));
    assert_eq!(
        statuses(&receiver.requests()),
        ["paid", "paid", "cancelled"]
    );
    let rows = deliveries_of(&app, &imp_uid).await;
    assert!(rows.iter().all(|d| d.state == "delivered"), "{rows:?}");
    assert_eq!(
        rows[1].next_attempt_at, rows[0].next_attempt_at,
        "sent at the very time `paid` was: {rows:?}"
    );
}

/// One receiver is one queue of a payment's events however its URL is spelled: the target is
/// stored as `url::Url` writes it (scheme and host lower-cased, default port dropped), so a
/// setting rewritten in another case between two events, or a `notice_url` spelled otherwise than
/// the merchant's setting, no longer makes a second queue (the events went side by side, out of
/// order) or a `notice_url` not counted as the configured URL.
#[tokio::test]
async fn one_receiver_spelled_two_ways_is_one_queue_of_a_payments_events() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(&[503]);
    let url = receiver.url("/order");
    let shouted = url.replace("http://", "HTTP://");
    let (status, body) = configure(&app, json!({"url": shouted})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = app.token().await;
    let imp_uid = paid_onetime(&app, &token, "wh-spelled", Value::Null).await;
    assert_eq!(deliver(&app).await, 1, "`paid`, answered 503");

    let (status, body) = configure(&app, json!({"url": url})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    enqueue(&app, &imp_uid, "cancelled", Some("c1")).await;
    assert_eq!(
        deliver(&app).await,
        0,
        "`cancelled` waits for `paid`'s retry"
    );
    app.advance(61);
    assert_eq!(deliver(&app).await, 2);
    assert_eq!(
        statuses(&receiver.requests()),
        ["paid", "paid", "cancelled"]
    );
    let rows = deliveries_of(&app, &imp_uid).await;
    assert!(rows.iter().all(|d| d.url == url), "{rows:?}");

    // A notice_url naming the configured URL in other letters is the configured URL.
    let other = paid_onetime(&app, &token, "wh-spelled-n", json!([shouted])).await;
    let rows = deliveries_of(&app, &other).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].url, url);
    assert!(rows[0].to_merchant_url, "{rows:?}");
}

/// `POST /admin/webhooks/{id}/resend` with the operator token.
async fn resend(app: &TestApp, id: i64) -> Value {
    let (status, body) = app
        .post(
            &format!("/admin/webhooks/{id}/resend"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Review rN, F1: the resend of a delivery waiting for its retry was refused because the newer
/// events of its payment it holds back were pending behind it ("곧 받습니다", while they waited
/// for that retry, up to 256 minutes), and resending those did nothing, as they stayed behind it.
/// The resend now brings the retry forward and the held-back events follow it, in order, in the
/// same pass: no step of the clock.
#[tokio::test]
async fn a_resend_of_a_delivery_waiting_for_its_retry_sends_it_now_and_the_events_behind_it_follow()
{
    let app = spawn_app().await;
    app.stop_clock();
    let (receiver, imp_uid) =
        a_paid_then_cancelled_payment(&app, "/back-again", &[503], "wh-resend-pending", &["c1"])
            .await;
    assert_eq!(deliver(&app).await, 1, "`paid`, answered 503");
    let rows = deliveries_of(&app, &imp_uid).await;
    let (paid, cancelled) = (&rows[0], &rows[1]);
    assert_eq!((paid.state.as_str(), paid.attempts), ("pending", 1));
    let now = paid.updated_at;
    assert!(paid.next_attempt_at > now, "{paid:?}");
    assert_eq!(cancelled.state, "pending", "{cancelled:?}");
    assert_eq!(
        cancelled.next_attempt_at, paid.next_attempt_at,
        "held back behind the retry: {cancelled:?}"
    );

    let body = resend(&app, paid.id).await;
    assert_eq!(body["code"], 0, "accepted: {body}");
    assert_eq!(body["response"]["state"], "pending", "{body}");
    assert_eq!(body["response"]["next_attempt_at"], now, "due now: {body}");
    assert_eq!(deliver(&app).await, 2, "`paid` now, then `cancelled`");
    assert_eq!(
        statuses(&receiver.requests()),
        ["paid", "paid", "cancelled"],
        "never `cancelled` before `paid`"
    );
    let rows = deliveries_of(&app, &imp_uid).await;
    assert!(rows.iter().all(|d| d.state == "delivered"), "{rows:?}");
}

/// Review rN, F2: rows stored before webhook URLs were normalised kept the merchant's URL as
/// written (`http://host:port`, no path), and the resend of their failed `paid`, retargeted to
/// the normalised URL (`http://host:port/`), did not see the `cancelled` stored beside it that
/// the receiver already had: it was accepted and sent `paid` after `cancelled`. The upgrade
/// rewrites the stored URLs (migration `m20261221_000041_webhook_urls_normalised`), run here on
/// rows as an older version wrote them.
#[tokio::test]
async fn a_resend_is_refused_by_a_newer_event_stored_before_urls_were_normalised() {
    use migration::{Migrator, MigratorTrait};
    use openport::store::entity::webhook_delivery;
    use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, Set};

    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let raw = receiver.url("");
    let (status, body) = configure(&app, json!({"url": raw})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = app.token().await;
    let imp_uid = paid_payment(&app, &token, "wh-raw-url", Value::Null).await;
    let p = openport::store::payments::by_imp_uid(&app.app.gateway.db.read, None, &imp_uid)
        .await
        .unwrap()
        .unwrap();
    let row = |status: &str, state: &str, cancellation_id: Option<&str>, url: &str| {
        webhook_delivery::ActiveModel {
            message_id: Set(webhook_delivery::new_message_id()),
            merchant_id: Set(p.merchant_id),
            imp_uid: Set(imp_uid.clone()),
            merchant_uid: Set(p.merchant_uid.clone()),
            status: Set(status.into()),
            cancellation_id: Set(cancellation_id.map(str::to_string)),
            url: Set(url.into()),
            to_merchant_url: Set(true),
            content_type: Set("json".into()),
            state: Set(state.into()),
            attempts: Set(1),
            next_attempt_at: Set(1),
            lease_until: Set(0),
            last_http_status: Set(None),
            last_error: Set(None),
            created_at: Set(1),
            updated_at: Set(1),
            ..Default::default()
        }
    };
    let db = &app.app.gateway.db.write;
    let paid = row("paid", "failed", None, &raw).insert(db).await.unwrap();
    let cancelled = row("cancelled", "delivered", Some("c1"), &raw)
        .insert(db)
        .await
        .unwrap();
    // Not a URL: kept as written, as the gateway keeps it (failed at once).
    let odd = row("paid", "failed", None, "not a url")
        .insert(db)
        .await
        .unwrap();

    // The upgrade: the migration runs on the rows an older version wrote.
    let upgrade = Database::connect(&app.database_url).await.unwrap();
    upgrade
        .execute_unprepared(
            "DELETE FROM seaql_migrations WHERE version = 'm20261221_000041_webhook_urls_normalised'",
        )
        .await
        .unwrap();
    Migrator::up(&upgrade, None).await.unwrap();
    let urls: Vec<String> = deliveries_of(&app, &imp_uid)
        .await
        .into_iter()
        .map(|d| d.url)
        .collect();
    assert_eq!(
        urls,
        [receiver.url("/"), receiver.url("/"), "not a url".into()],
        "{odd:?}"
    );

    let body = resend(&app, paid.id).await;
    assert_eq!(body["code"], 1, "refused: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("id: {}", cancelled.id)),
        "{message}"
    );
    assert_eq!(deliver(&app).await, 0);
    assert!(
        receiver.requests().is_empty(),
        "no `paid` after `cancelled`"
    );
}

/// Review rP, finding 3: migration `m20261221_000041_webhook_urls_normalised` sent one `UPDATE`
/// per changed row, a round trip each inside the start-up transaction, so a merchant's history
/// without a path in its URL made the upgrade as slow as that history was long. It now writes a
/// page's changed rows in one statement (none for a page with nothing to change), and each row
/// still comes out as the gateway stores it: quotes and SQL in a URL are data (bound, never
/// formatted in), unicode is encoded as `url` serialises it, and what is already in its stored
/// form, or is no http(s) URL at all, is left as written.
#[tokio::test]
async fn the_url_migration_writes_each_page_of_rows_in_one_statement_and_each_row_comes_out_as_the_gateway_stores_it(
) {
    use migration::{Migrator, MigratorTrait};
    use openport::store::entity::{merchant, webhook_delivery};
    use sea_orm::{ConnectionTrait, Database, EntityTrait, QueryOrder, Set};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    // (as an older version wrote it, as the gateway stores it)
    let changes = [
        ("https://Hooks.Shop.Example", "https://hooks.shop.example/"),
        (
            "HTTPS://Shop.Example:443/o'neil?name=o'neil",
            "https://shop.example/o'neil?name=o%27neil",
        ),
        (
            "https://Bücher.Example/결제?q=한글",
            "https://xn--bcher-kva.example/%EA%B2%B0%EC%A0%9C?q=%ED%95%9C%EA%B8%80",
        ),
        (
            "https://shop.example/'; DROP TABLE webhook_deliveries; --",
            "https://shop.example/';%20DROP%20TABLE%20webhook_deliveries;%20--",
        ),
        (
            "http://shop.example/say \"hi\"",
            "http://shop.example/say%20%22hi%22",
        ),
    ];
    let kept = [
        "https://hooks.shop.example/h",
        "https://shop.example/o'neil",
        "https://xn--bcher-kva.example/%EA%B2%B0%EC%A0%9C",
        "웹훅 \"주소\" 없음",
    ];
    // 2,500 rows: three pages of 1,000; the second has nothing to change.
    let rows: Vec<(&str, &str)> = (0..2500)
        .map(|i| {
            if (1000..2000).contains(&i) || i % 3 == 0 {
                let url = kept[i % kept.len()];
                (url, url)
            } else {
                changes[i % changes.len()]
            }
        })
        .collect();

    let app = spawn_app().await;
    let db = &app.app.gateway.db.write;
    let merchant_id = merchant::Entity::find()
        .one(db)
        .await
        .unwrap()
        .expect("the test merchant")
        .id;
    let numbered: Vec<(usize, &str)> = rows.iter().map(|(raw, _)| *raw).enumerate().collect();
    for chunk in numbered.chunks(500) {
        webhook_delivery::Entity::insert_many(chunk.iter().map(|(i, raw)| {
            webhook_delivery::ActiveModel {
                message_id: Set(webhook_delivery::new_message_id()),
                merchant_id: Set(merchant_id),
                imp_uid: Set(format!("imp_page_{i}")),
                merchant_uid: Set(format!("o-page-{i}")),
                status: Set("paid".into()),
                cancellation_id: Set(None),
                url: Set((*raw).into()),
                to_merchant_url: Set(true),
                content_type: Set("json".into()),
                state: Set("delivered".into()),
                attempts: Set(1),
                next_attempt_at: Set(1),
                lease_until: Set(0),
                last_http_status: Set(Some(200)),
                last_error: Set(None),
                created_at: Set(1),
                updated_at: Set(1),
                ..Default::default()
            }
        }))
        .exec(db)
        .await
        .unwrap();
    }

    // The upgrade, counting the statements that write the table.
    let mut upgrade = Database::connect(&app.database_url).await.unwrap();
    upgrade
        .execute_unprepared(
            "DELETE FROM seaql_migrations WHERE version = 'm20261221_000041_webhook_urls_normalised'",
        )
        .await
        .unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = writes.clone();
    upgrade.set_metric_callback(move |info| {
        let sql = info.statement.sql.trim_start().to_ascii_uppercase();
        if sql.starts_with("UPDATE") && sql.contains("WEBHOOK_DELIVERIES") {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    Migrator::up(&upgrade, None).await.unwrap();
    assert_eq!(
        writes.load(Ordering::SeqCst),
        2,
        "one statement for each of the first and last pages, none for the second"
    );

    let urls: Vec<String> = webhook_delivery::Entity::find()
        .order_by_asc(webhook_delivery::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.url)
        .collect();
    assert_eq!(urls.len(), rows.len());
    for (i, (url, (raw, stored))) in urls.iter().zip(&rows).enumerate() {
        assert_eq!(url, stored, "row {i}, written as {raw:?}");
    }
}
