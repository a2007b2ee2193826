//! `POST /vbanks` and `DELETE /vbanks/{imp_uid}` (spec/iamport-v1.md §4.7) through HTTP, against
//! the embedded KCP sandbox's window-less issuance (docs/sandbox.md §2.3): the account, its
//! deposit and webhooks, revocation, refusals, and the reliability rules of every KCP call.
//! Deposit notifications (`POST /kcp/notify`, spec/kcp.md §2.12) are posted by the sandbox after a
//! deposit, or forged here as anyone could: only what KCP confirms by inquiry may change a payment.
use kcp_sandbox::{paths, DepositError, Fault, FaultRule, NotificationRecord, TransactionState};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{imp_uid_in, spawn_app, spawn_app_with, Receiver, TestApp, SETTLE_SECS};

const WEEK: i64 = 7 * 24 * 3600;

/// A `POST /vbanks` body: KB국민 (`004`), due in a week by the gateway's clock.
pub(crate) fn vbank(app: &TestApp, merchant_uid: &str, amount: i64) -> Value {
    json!({
        "merchant_uid": merchant_uid, "amount": amount, "vbank_code": "004",
        "vbank_due": app.app.gateway.clock.unix() + WEEK, "name": "가상계좌 상품",
        "buyer_name": "홍길동", "buyer_email": "buyer@example.com", "buyer_tel": "010-1234-5678",
    })
}

/// Issues `body` and returns the `ready` Payment object.
pub(crate) async fn issued(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, res) = app.post("/vbanks", Some(token), body).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["code"], 0, "{res}");
    assert_eq!(res["response"]["status"], "ready", "{res}");
    res["response"].clone()
}

/// `DELETE /vbanks/{imp_uid}`.
pub(crate) async fn revoke(app: &TestApp, token: &str, imp_uid: &str) -> (StatusCode, Value) {
    let res = app
        .http
        .delete(app.url(&format!("/vbanks/{imp_uid}")))
        .header("Authorization", token)
        .send()
        .await
        .expect("request");
    TestApp::read(res).await
}

/// Deposits the whole amount at the sandbox and waits for its `TX00` to make the payment paid.
pub(crate) async fn deposit_until_paid(app: &TestApp, token: &str, p: &Value) {
    let tno = p["pg_tid"].as_str().unwrap();
    app.sandbox
        .deposit(tno, p["amount"].as_i64().unwrap(), "00")
        .unwrap();
    until_status(app, token, p["imp_uid"].as_str().unwrap(), "paid").await;
}

/// Waits (up to 5 s) until the payment shows `status`, as KCP's notification makes it; the payment.
async fn until_status(app: &TestApp, token: &str, imp_uid: &str, status: &str) -> Value {
    for _ in 0..100 {
        let shown = app.payment(token, imp_uid).await;
        if shown["status"] == status {
            return shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("KCP's notification did not make {imp_uid} {status}");
}

/// Posts a notification form to the gateway as anyone on the internet can; true when the reply
/// acknowledges it (`result=0000`), which stops KCP's re-sends.
pub(crate) async fn post_notification(app: &TestApp, fields: &[(String, String)]) -> bool {
    let body = app
        .http
        .post(app.url("/kcp/notify"))
        .form(fields)
        .send()
        .await
        .expect("notification posted")
        .text()
        .await
        .unwrap();
    body.contains("<input type=\"hidden\" name=\"result\" value=\"0000\">")
}

/// A `TX00` form for the account of `p` that no deposit stands behind.
fn forged(p: &Value, noti_id: &str, total: i64, op_cd: &str) -> Vec<(String, String)> {
    [
        ("site_cd", "T0000".to_string()),
        ("tno", p["pg_tid"].as_str().unwrap().to_string()),
        ("order_no", "x".into()),
        ("tx_cd", "TX00".into()),
        ("tx_tm", "20261123120000".into()),
        ("ipgm_name", "홍길동".into()),
        ("ipgm_mnyx", total.to_string()),
        ("totl_mnyx", total.to_string()),
        ("noti_id", noti_id.into()),
        ("op_cd", op_cd.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The sandbox's notification `noti_id` once `done` says so (it sends in the background).
async fn sandbox_notification(
    app: &TestApp,
    noti_id: &str,
    done: impl Fn(&NotificationRecord) -> bool,
) -> NotificationRecord {
    for _ in 0..200 {
        let found = app
            .sandbox
            .notifications()
            .into_iter()
            .find(|n| n.noti_id == noti_id);
        if let Some(n) = found.filter(|n| done(n)) {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the sandbox's notification {noti_id} never got there");
}

/// The statuses of the webhooks delivered so far, in order.
pub(crate) async fn webhook_statuses(app: &TestApp, hooks: &Receiver) -> Vec<String> {
    app.app.gateway.deliver_due_webhooks(100).await.unwrap();
    hooks
        .requests()
        .iter()
        .map(|r| r.json()["status"].as_str().unwrap().to_string())
        .collect()
}

/// An account issued with its webhooks going to `hooks`, its `ready` webhook delivered (the worker
/// sends due webhooks concurrently, so later ones arrive after it only if it is out first).
pub(crate) async fn issued_with_hooks(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
    hooks: &Receiver,
) -> Value {
    let mut body = vbank(app, merchant_uid, 7000);
    body["notice_url"] = json!(hooks.url("/hook"));
    let p = issued(app, token, body).await;
    assert_eq!(webhook_statuses(app, hooks).await, ["ready"]);
    p
}

#[tokio::test]
async fn an_issued_account_is_ready_then_paid_by_a_deposit_with_ready_and_paid_webhooks() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let mut body = vbank(&app, "vb-1", 15000);
    body["notice_url"] = json!(hooks.url("/hook"));
    body["vbank_holder"] = json!("오픈포트상점");
    body["custom_data"] = json!({"order": 7});
    let due = body["vbank_due"].as_i64().unwrap();

    let p = issued(&app, &token, body).await;

    for (field, value) in [
        ("merchant_uid", json!("vb-1")),
        ("pay_method", json!("vbank")),
        ("channel", json!("api")),
        ("pg_provider", json!("kcp")),
        ("amount", json!(15000)),
        ("vbank_code", json!("004")),
        ("vbank_name", json!("국민은행")),
        // KCP takes no holder (docs/kcp.md §10.1): the one asked for is ignored, KCP's shows.
        ("vbank_holder", json!("한국사이버결제")),
        ("vbank_date", json!(due)),
        ("paid_at", json!(0)),
        ("custom_data", json!("{\"order\":7}")),
    ] {
        assert_eq!(p[field], value, "{field} in {p}");
    }
    assert!(p["vbank_num"].as_str().unwrap().starts_with('T'), "{p}");
    assert!(p["vbank_issued_at"].as_i64().unwrap() > 0);
    let tno = p["pg_tid"].as_str().unwrap();
    assert_eq!(tno.len(), 14);
    let imp_uid = p["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, imp_uid).await, p, "GET shows the same");
    let ledger = app.sandbox.ledger();
    assert_eq!(
        (ledger.len(), ledger[0].tno.as_str(), ledger[0].state),
        (1, tno, TransactionState::Issued)
    );
    app.assert_ledger_agrees().await;
    let ready = json!({"imp_uid": imp_uid, "merchant_uid": "vb-1", "status": "ready"});
    app.app.gateway.deliver_due_webhooks(100).await.unwrap();
    let got: Vec<Value> = hooks.requests().iter().map(|r| r.json()).collect();
    assert_eq!(got, std::slice::from_ref(&ready));

    deposit_until_paid(&app, &token, &p).await;
    let paid = app.payment(&token, imp_uid).await;
    assert!(paid["paid_at"].as_i64().unwrap() > 0, "{paid}");
    assert_eq!(paid["vbank_num"], p["vbank_num"]);

    app.app.gateway.deliver_due_webhooks(100).await.unwrap();
    let got: Vec<Value> = hooks.requests().iter().map(|r| r.json()).collect();
    assert_eq!(
        got,
        [
            ready,
            json!({"imp_uid": imp_uid, "merchant_uid": "vb-1", "status": "paid"}),
        ]
    );
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_form_body_issues_an_account_like_json() {
    let app = spawn_app().await;
    let token = app.token().await;
    let due = (app.app.gateway.clock.unix() + WEEK).to_string();
    let res = app
        .http
        .post(app.url("/vbanks"))
        .header("Authorization", &token)
        .form(&[
            ("merchant_uid", "vb-form"),
            ("amount", "3000"),
            ("vbank_code", "88"),
            ("vbank_due", due.as_str()),
            ("notice_url", "http://127.0.0.1:9/a"),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = TestApp::read(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["response"]["status"].as_str(),
            body["response"]["vbank_code"].as_str(),
            body["response"]["vbank_name"].as_str(),
            body["response"]["vbank_holder"].as_str(),
        ),
        (
            Some("ready"),
            Some("088"),
            Some("신한은행"),
            Some("한국사이버결제")
        ),
        "{body}"
    );
}

/// `005` is 외환은행 (KEB), merged into 하나은행 in 2015: iamport's official PHP client still offers
/// it (`VbankCode::KEB`, "KEB 하나은행") and validates against that enum, so a PHP shop offering
/// 하나 sends it. The account is opened at 하나 (KCP `BK81`), and the Payment says so.
#[tokio::test]
async fn an_account_asked_at_kebs_code_005_is_issued_at_hana_which_kcp_names_081() {
    let app = spawn_app().await;
    let token = app.token().await;
    for (merchant_uid, code) in [("vb-keb", json!("005")), ("vb-keb-short", json!("05"))] {
        let mut body = vbank(&app, merchant_uid, 4000);
        body["vbank_code"] = code;
        let p = issued(&app, &token, body).await;
        assert_eq!(
            (p["vbank_code"].as_str(), p["vbank_name"].as_str()),
            (Some("081"), Some("하나은행")),
            "{p}"
        );
    }
    assert_eq!(app.sandbox.ledger().len(), 2);
    app.assert_ledger_agrees().await;
}

/// A deadline computed from a clock with fractions (`time.time() + 7 * 86400`) was a 400; it is
/// floored, as a number or as a form's text, while an amount with a fraction is still refused.
#[tokio::test]
async fn a_vbank_due_with_a_fraction_of_a_second_is_floored_and_an_amount_with_one_still_refused() {
    let app = spawn_app().await;
    let token = app.token().await;
    let due = app.app.gateway.clock.unix() + WEEK;
    let mut body = vbank(&app, "vb-frac", 4000);
    body["vbank_due"] = json!(due as f64 + 0.75);
    let p = issued(&app, &token, body).await;
    assert_eq!(p["vbank_date"], due, "{p}");

    let form_due = format!("{}.5", due + 60);
    let res = app
        .http
        .post(app.url("/vbanks"))
        .header("Authorization", &token)
        .form(&[
            ("merchant_uid", "vb-frac-form"),
            ("amount", "3000"),
            ("vbank_code", "004"),
            ("vbank_due", form_due.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, answer) = TestApp::read(res).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["response"]["vbank_date"], due + 60, "{answer}");

    let mut money = vbank(&app, "vb-frac-money", 4000);
    money["amount"] = json!(4000.5);
    let (status, refused) = app.post("/vbanks", Some(&token), money).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(app.sandbox.ledger().len(), 2);
}

#[tokio::test]
async fn a_revoked_account_is_cancelled_takes_no_deposit_and_stays_cancelled() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let mut body = vbank(&app, "vb-revoke", 9000);
    body["notice_url"] = json!(hooks.url("/hook"));
    let p = issued(&app, &token, body).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();

    let (status, res) = revoke(&app, &token, imp_uid).await;

    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["code"], 0, "{res}");
    let r = &res["response"];
    assert_eq!(
        (
            r["status"].as_str(),
            r["cancel_amount"].as_i64(),
            r["paid_at"].as_i64(),
            r["cancel_reason"].as_str()
        ),
        (
            Some("cancelled"),
            Some(9000),
            Some(0),
            Some("가상계좌 발급취소")
        ),
        "{r}"
    );
    assert!(r["cancelled_at"].as_i64().unwrap() > 0);
    assert_eq!(r["cancel_history"][0]["pg_tid"], tno);
    assert_eq!(
        r["vbank_num"], p["vbank_num"],
        "the account stays on record"
    );
    let entry = &app.sandbox.ledger()[0];
    assert_eq!(entry.state, TransactionState::Cancelled);
    assert_eq!(
        entry.cancels[0].mod_desc.as_deref(),
        Some("가상계좌 발급취소")
    );

    assert!(matches!(
        app.sandbox.deposit(tno, 9000, "00"),
        Err(DepositError::Closed)
    ));
    // Were KCP to notify a deposit on it anyway, it is acknowledged and changes nothing.
    let ack = app
        .http
        .post(app.url("/kcp/notify"))
        .form(&[
            ("site_cd", "T0000"),
            ("tno", tno),
            ("tx_cd", "TX00"),
            ("noti_id", "late-deposit-1"),
            ("ipgm_mnyx", "9000"),
            ("totl_mnyx", "9000"),
            ("op_cd", "00"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ack.contains("value=\"0000\""), "{ack}");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "cancelled");
    let (status, again) = revoke(&app, &token, imp_uid).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    let (_, cancel) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid}),
        )
        .await;
    assert_eq!(
        (cancel["code"].as_i64(), cancel["message"].as_str()),
        (Some(1), Some("이미 전액취소된 주문입니다.")),
        "{cancel}"
    );

    app.app.gateway.deliver_due_webhooks(100).await.unwrap();
    let statuses: Vec<Value> = hooks
        .requests()
        .iter()
        .map(|r| r.json()["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!("ready")],
        "API revocations send no webhook"
    );
    app.assert_ledger_agrees().await;
}

/// A paid account the operator refunded in full in KCP's admin, recorded from KCP's own `TX01`:
/// cancelling it is answered `이미 전액취소된 주문입니다.` (spec/iamport-v1.md §2), as any payment
/// with nothing left is, with or without the checksum of its zero balance. Told "refund it in
/// KCP's admin" instead, a merchant's refund job retrying it would invite a second refund.
#[tokio::test]
async fn a_paid_account_refunded_in_full_at_kcp_is_answered_as_already_fully_cancelled() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-refunded-at-kcp", 5000)).await;
    deposit_until_paid(&app, &token, &p).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let sent = app
        .sandbox
        .cancel_in_admin_notified(p["pg_tid"].as_str().unwrap())
        .expect("refunded and notified");
    assert_eq!(sent.tx_cd, "TX01");
    sandbox_notification(&app, &sent.noti_id, |n| n.acknowledged).await;
    let refunded = app.payment(&token, imp_uid).await;
    assert_eq!(
        (
            refunded["status"].as_str(),
            refunded["cancel_amount"].as_i64()
        ),
        (Some("cancelled"), Some(5000)),
        "{refunded}"
    );
    let before = app.sandbox.ledger();

    for body in [
        json!({"imp_uid": imp_uid}),
        json!({"imp_uid": imp_uid, "checksum": 0}),
    ] {
        let (status, res) = app.post("/payments/cancel", Some(&token), body).await;
        assert_eq!(status, StatusCode::OK, "{res}");
        assert_eq!(
            (res["code"].as_i64(), res["message"].as_str()),
            (Some(1), Some("이미 전액취소된 주문입니다.")),
            "{res}"
        );
    }
    assert_eq!(app.sandbox.ledger(), before, "KCP was not asked");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn revoking_a_paid_account_or_a_card_payment_is_a_400_and_an_unknown_imp_uid_a_404() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-paid", 5000)).await;
    deposit_until_paid(&app, &token, &p).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let (status, res) = revoke(&app, &token, imp_uid).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert_eq!(res["code"], -1);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");

    let card = app.paid(&token, "card-1", 1000).await;
    let (status, res) = revoke(&app, &token, card["imp_uid"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");

    let (status, res) = revoke(&app, &token, "imp_000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{res}");

    // Another merchant's account is not found for this one.
    let open = issued(&app, &token, vbank(&app, "vb-mine", 5000)).await;
    let (key, secret) = app.second_merchant().await;
    let other = app.token_for(&key, &secret).await;
    let (status, _) = revoke(&app, &other, open["imp_uid"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn invalid_requests_are_400s_that_write_nothing_and_call_no_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let now = app.app.gateway.clock.unix();
    let base = vbank(&app, "vb-bad", 5000);
    let with = |field: &str, value: Value| {
        let mut b = base.clone();
        if value.is_null() {
            b.as_object_mut().unwrap().remove(field);
        } else {
            b[field] = value;
        }
        b
    };
    let cases = [
        ("no vbank_code", with("vbank_code", Value::Null)),
        ("unknown bank", with("vbank_code", json!("999"))),
        ("a KCP code", with("vbank_code", json!("BK04"))),
        ("no vbank_due", with("vbank_due", Value::Null)),
        ("a past vbank_due", with("vbank_due", json!(now - 60))),
        ("vbank_due now", with("vbank_due", json!(now))),
        (
            "a vbank_due out of range",
            with("vbank_due", json!(i64::MAX)),
        ),
        (
            "a vbank_due in the year 10000 (KST)",
            with("vbank_due", json!(253_402_268_400i64)),
        ),
        ("a fractional amount", with("amount", json!(1000.5))),
        ("a text amount", with("amount", json!("천원"))),
        ("a zero amount", with("amount", json!(0))),
        ("no amount", with("amount", Value::Null)),
        ("no merchant_uid", with("merchant_uid", Value::Null)),
        (
            "script in the holder",
            with("vbank_holder", json!("<script>x</script>")),
        ),
    ];
    for (what, body) in cases {
        let (status, res) = app.post("/vbanks", Some(&token), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {res}");
        assert_eq!(res["code"], -1, "{what}: {res}");
        assert!(res["response"].is_null());
    }
    let form = app
        .http
        .post(app.url("/vbanks"))
        .header("Authorization", &token)
        .form(&[
            ("merchant_uid", "vb-bad"),
            ("amount", "12.5"),
            ("vbank_code", "004"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(TestApp::read(form).await.0, StatusCode::BAD_REQUEST);

    let payments = openport::store::payments::all_payments(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert!(payments.is_empty(), "{payments:?}");
    assert!(app.sandbox.ledger().is_empty());
}

/// `vbank_due` is one rule (`domain::vbank::deposit_deadline`) for `POST /vbanks` and the browser
/// checkout: a deadline already past, now, or at Unix 0 is refused by both in the same words,
/// before anything is written or sent to KCP. `POST /vbanks` takes Unix seconds, the checkout also
/// Unix seconds (10 digits) and its dated forms. (A number of more than 10 digits, which only
/// `POST /vbanks` can be sent, is not Unix seconds: refused as such, below.)
#[tokio::test]
async fn post_vbanks_and_the_checkout_refuse_a_past_or_impossible_vbank_due_in_the_same_words() {
    let app = spawn_app().await;
    let token = app.token().await;
    let refusal = openport::domain::vbank::DueRefused.to_string();
    let issue = |merchant_uid: String, due: Value| {
        let (app, token) = (&app, &token);
        async move {
            let mut body = vbank(app, &merchant_uid, 5000);
            body["vbank_due"] = due;
            let (status, res) = app.post("/vbanks", Some(token), body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
            res["message"].as_str().unwrap().to_string()
        }
    };
    let open_window = |merchant_uid: String, due: String| {
        let app = &app;
        async move {
            let (_, res) = app
                .post(
                    "/checkout/request",
                    None,
                    json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
                           "params": {"pay_method": "vbank", "merchant_uid": merchant_uid, "amount": 5000,
                                      "vbank_due": due}}),
                )
                .await;
            assert_ne!(res["code"], 0, "{res}");
            res["message"].as_str().unwrap().to_string()
        }
    };
    let now = app.app.gateway.clock.unix();
    for (i, due) in [now - 3600, now, 0].into_iter().enumerate() {
        let by_api = issue(format!("vb-due-api-{i}"), json!(due)).await;
        let by_window = open_window(format!("vb-due-web-{i}"), format!("{due:010}")).await;
        assert_eq!(by_api, refusal, "POST /vbanks, vbank_due {due}");
        assert_eq!(by_window, refusal, "checkout, vbank_due {due:010}");
    }
    assert_eq!(
        open_window("vb-due-web-dated".into(), "2020-01-01 10:00:00".into()).await,
        refusal
    );
    assert_eq!(
        issue("vb-due-api-min".into(), json!(i64::MIN)).await,
        refusal
    );

    let payments = openport::store::payments::all_payments(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert!(payments.is_empty(), "{payments:?}");
    assert!(app.sandbox.ledger().is_empty());
}

/// The browser checkout takes `vbank_due` as `YYYYMMDDHHmm` (docs/api.md), and `POST /vbanks` read
/// the same value moved to REST as Unix seconds: 203012312359 is a deadline in the year 8403, so
/// the account was issued at KCP never to expire, its merchant_uid `ready` for good. Like the
/// checkout, `POST /vbanks` takes Unix seconds of at most 10 digits; a longer number (a dated
/// form, milliseconds, a date past 9999) is HTTP 400 naming Unix seconds, nothing written or sent.
#[tokio::test]
async fn a_vbank_due_in_the_checkouts_dated_form_or_in_milliseconds_is_refused_as_not_unix_seconds()
{
    let app = spawn_app().await;
    let token = app.token().await;
    let now = app.app.gateway.clock.unix();
    for (i, due) in [
        203_012_312_359,
        20_301_231_235_959,
        (now + WEEK) * 1000,
        10_000_000_000,
        253_402_268_400,
        i64::MAX,
    ]
    .into_iter()
    .enumerate()
    {
        let merchant_uid = format!("vb-due-digits-{i}");
        let mut body = vbank(&app, &merchant_uid, 5000);
        body["vbank_due"] = json!(due);
        let (status, res) = app.post("/vbanks", Some(&token), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{due}: {res}");
        assert_eq!(res["code"], -1, "{due}: {res}");
        let message = res["message"].as_str().unwrap();
        assert!(
            message.starts_with("vbank_due는 Unix 타임스탬프(초 단위")
                && message.contains("YYYYMMDDHHmm")
                && message.contains(&format!("(vbank_due: {due})")),
            "{message}"
        );
        let (status, _) = app
            .get(&format!("/payments/find/{merchant_uid}"), Some(&token))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{due}");
    }
    assert!(app.sandbox.ledger().is_empty());

    // The last 10-digit second (2286-11-20) is still Unix seconds.
    let mut body = vbank(&app, "vb-due-ten-digits", 5000);
    body["vbank_due"] = json!(9_999_999_999i64);
    assert_eq!(
        issued(&app, &token, body).await["vbank_date"],
        9_999_999_999i64
    );
}

#[tokio::test]
async fn the_same_merchant_uid_issued_concurrently_gets_exactly_one_account() {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = vbank(&app, "vb-race", 5000);
    let tries = (0..8).map(|_| app.post("/vbanks", Some(&token), body.clone()));
    let answers = futures::future::join_all(tries).await;

    let ready: Vec<&Value> = answers
        .iter()
        .filter(|(_, b)| b["code"] == 0)
        .map(|(_, b)| &b["response"])
        .collect();
    assert_eq!(ready.len(), 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|(s, b)| *s == StatusCode::OK && (b["code"] == 0 || b["code"] == 1)));
    assert_eq!(app.sandbox.ledger().len(), 1, "KCP issued one account");
    let (_, later) = app.post("/vbanks", Some(&token), body).await;
    assert_eq!(later["code"], 1, "a ready merchant_uid is taken: {later}");
    let (_, card) = app
        .pay(
            &token,
            "vb-race",
            5000,
            crate::helpers::test_cards::SHINHAN_CREDIT,
        )
        .await;
    assert_eq!(card["code"], 1, "nor can it be paid by card: {card}");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_prepared_amount_is_enforced() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, prepared) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "vb-prep", "amount": 5000}),
        )
        .await;
    assert_eq!(prepared["code"], 0, "{prepared}");
    let (_, res) = app
        .post("/vbanks", Some(&token), vbank(&app, "vb-prep", 4000))
        .await;
    assert_eq!(res["code"], 1, "{res}");
    assert!(app.sandbox.ledger().is_empty());
    issued(&app, &token, vbank(&app, "vb-prep", 5000)).await;
}

#[tokio::test]
async fn a_lost_issuance_answer_is_recovered_by_inquiry_and_answered_ready() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("pay_method", "VCNT"));

    let p = issued(&app, &token, vbank(&app, "vb-lost", 5000)).await;

    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str());
    assert!(p["vbank_num"].as_str().unwrap().starts_with('T'));
    assert_eq!(p["vbank_name"], "국민은행");
    app.assert_ledger_agrees().await;
    deposit_until_paid(&app, &token, &p).await;
    app.assert_ledger_agrees().await;
}

/// Asks for an account (5,000) that KCP issues while its answer is lost and the inquiry that
/// follows is dropped too: the request cannot tell. Returns the payment's imp_uid.
pub(crate) async fn an_issuance_whose_answer_and_inquiry_are_lost(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
) -> String {
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("pay_method", "VCNT"));
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let (_, res) = app
        .post("/vbanks", Some(token), vbank(app, merchant_uid, 5000))
        .await;
    assert_eq!(res["code"], 1, "{res}");
    imp_uid_in(&res["message"])
}

#[tokio::test]
async fn when_the_inquiry_fails_too_the_resolver_later_revokes_the_account_and_frees_the_merchant_uid(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid = an_issuance_whose_answer_and_inquiry_are_lost(&app, &token, "vb-lost2").await;
    let shown = app.payment(&token, &imp_uid).await;
    assert_eq!(shown["status"], "ready", "never concluded on a guess");
    assert!(shown["vbank_num"].is_null());
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    let entry = &app.sandbox.ledger()[0];
    assert_eq!(entry.state, TransactionState::Cancelled, "revoked at KCP");
    assert_eq!(p["pg_tid"], entry.tno.as_str());
    app.assert_ledger_agrees().await;

    let again = issued(&app, &token, vbank(&app, "vb-lost2", 5000)).await;
    assert_ne!(again["imp_uid"], imp_uid.as_str());
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn an_unanswered_issuance_fails_after_the_settle_delay_and_its_merchant_uid_is_reused() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HttpStatus { status: 503 },
    ));

    let (_, res) = app
        .post("/vbanks", Some(&token), vbank(&app, "vb-503", 5000))
        .await;

    assert_eq!(res["code"], 1, "{res}");
    let imp_uid = imp_uid_in(&res["message"]);
    let (_, retry) = app
        .post("/vbanks", Some(&token), vbank(&app, "vb-503", 5000))
        .await;
    assert_eq!(retry["code"], 1, "not before the outcome is known: {retry}");
    assert!(app.sandbox.ledger().is_empty());
    app.advance(SETTLE_SECS + 1);
    // No resolver run: the retry settles the open attempt by inquiry, then issues.
    let p = issued(&app, &token, vbank(&app, "vb-503", 5000)).await;
    assert_ne!(p["imp_uid"], imp_uid.as_str());
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    app.assert_ledger_agrees().await;
}

/// A revocation that never reached KCP is not taken for done when KCP's inquiry of the unpaid
/// account answers a `rem_mny` of 0 (nothing deposited, so nothing to refund): the account is
/// still open at KCP for its whole amount, so the revocation failed and the account stays ready.
#[tokio::test]
async fn an_unsent_revocation_is_not_taken_for_done_from_an_unpaid_accounts_zero_balance() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-zero", 5000)).await;
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::AnswerField {
                field: "rem_mny".into(),
                value: "0".into(),
            },
        )
        .times(10),
    );
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let (_, res) = revoke(&app, &token, imp_uid).await;
    assert_ne!(res["code"], 0, "{res}");
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let (_, now) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
    assert_eq!(now["response"]["status"], "ready", "{now}");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Issued);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_lost_revocation_answer_is_confirmed_by_inquiry() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-rl", 5000)).await;
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse));

    let (status, res) = revoke(&app, &token, p["imp_uid"].as_str().unwrap()).await;

    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["response"]["status"], "cancelled", "{res}");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.assert_ledger_agrees().await;
}

/// KCP applies the close of the test's one account it held at `gate`; a settle delay after it
/// the resolver records what KCP holds: the payment as shown then.
async fn closed_at_kcp_then_resolved(
    app: &TestApp,
    token: &str,
    imp_uid: &str,
    gate: &str,
    settle: i64,
) -> Value {
    app.sandbox.open_gate(gate);
    for _ in 0..100 {
        if app.sandbox.ledger()[0].state == TransactionState::Cancelled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.advance(settle);
    app.resolve_all().await;
    app.payment(token, imp_uid).await
}

/// A revocation whose look before the close (a KCP inquiry) is answered late (KCP's answer held
/// while the clock moves on, within the attempt's lease), and whose close KCP applies only after
/// openport stopped waiting for it: the attempt is not due for the resolver before a settle delay
/// after the close was sent. Due a settle delay after its creation (up to a KCP timeout before the
/// close), the resolver asked KCP while KCP still held the close, found the account open and
/// recorded the revocation as not made, while KCP then closed it. The look is held on a gate, not
/// slowed by a timer: a slow answer a little short of the KCP timeout turned into a timeout
/// whenever the test's one thread stalled.
#[tokio::test]
async fn a_revocation_is_not_due_for_the_resolver_before_a_settle_delay_after_its_close_was_sent() {
    // Over the resolver's first backoff (10 s), as production's 120 s is.
    const SETTLE: i64 = 30;
    // How late the look is answered: the close goes out in a later Unix second than the attempt
    // was created in, within the attempt's lease (6 s in tests).
    const LATE: i64 = 3;
    let app = spawn_app_with(|c| c.resolver.settle_secs = SETTLE).await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-slow-look", 5000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_owned();
    let tno = p["pg_tid"].as_str().unwrap();
    let (look, close) = ("revocation-look-late", "revocation-close-late");
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HoldAnswer { gate: look.into() }).when("tno", tno),
    );
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::HoldRequest { gate: close.into() }).when("tno", tno),
    );
    let revoking = app.revoke_in_background(&token, &imp_uid);
    app.sandbox.until_held(look).await;
    app.stop_clock();
    app.advance(LATE);
    let looked_at = app.app.gateway.clock.unix();
    app.sandbox.open_gate(look);

    let (status, res) = revoking.await.unwrap();

    crate::helpers::assert_code_1_saying(
        status,
        &res,
        "발급취소 응답을 확인하지 못했습니다",
        "answered unknown",
    );
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "the look was late, the close held"
    );
    let gateway = &app.app.gateway;
    let attempt = crate::escrow::the_open_cancel_attempt(&app).await;
    // The close went out after the look, seconds after the attempt was created.
    assert!(
        attempt.next_check_at >= looked_at + SETTLE,
        "not due before a settle delay after the close: {attempt:?}"
    );

    // A settle delay after the attempt's creation, KCP still holding the close: nothing is due.
    app.advance(attempt.created_at + SETTLE - gateway.clock.unix());
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 0, "nothing due yet");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Issued);

    // KCP applies the close; a settle delay after it, the resolver finds the account closed.
    let shown = closed_at_kcp_then_resolved(&app, &token, &imp_uid, close, SETTLE).await;
    assert_eq!(
        (shown["status"].as_str(), shown["paid_at"].as_i64()),
        (Some("cancelled"), Some(0)),
        "{shown}"
    );
    app.assert_ledger_agrees().await;
}

/// A revocation whose look before the close (a KCP inquiry) is answered a settle delay after the
/// attempt was created, and whose close KCP holds past openport's wait: the request's own inquiry,
/// right after, finds the account still open. A settle delay has not passed since the close, so
/// that is not "not revoked": answered unknown, and recorded once KCP closes the account. Counted
/// from the attempt's creation, the delay had passed: the merchant was told "발급취소에 실패" of
/// an account KCP then closed.
#[tokio::test]
async fn a_late_close_whose_answer_is_lost_is_not_concluded_not_revoked_before_a_settle_delay_after_it(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-late-close-lost", 5000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_owned();
    let tno = p["pg_tid"].as_str().unwrap();
    let (look, close) = ("late-look", "late-close-held");
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HoldAnswer { gate: look.into() }).when("tno", tno),
    );
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::HoldRequest { gate: close.into() }).when("tno", tno),
    );
    let revoking = app.revoke_in_background(&token, &imp_uid);
    app.sandbox.until_held(look).await;
    app.stop_clock();
    let gateway = &app.app.gateway;
    let created_at = crate::escrow::the_open_cancel_attempt(&app)
        .await
        .created_at;
    app.advance(created_at + SETTLE_SECS - gateway.clock.unix());
    let close_sent_at = gateway.clock.unix();
    app.sandbox.open_gate(look);

    let (status, res) = revoking.await.unwrap();

    crate::helpers::assert_code_1_saying(
        status,
        &res,
        "발급취소 응답을 확인하지 못했습니다",
        "not \"not revoked\" a settle delay after the attempt's creation only",
    );
    let attempt = crate::escrow::the_open_cancel_attempt(&app).await;
    assert_eq!(
        (attempt.state.as_str(), attempt.sent_at),
        ("unknown", close_sent_at),
        "{attempt:?}"
    );

    // KCP closes the account; a settle delay after the close, the resolver records it.
    let shown = closed_at_kcp_then_resolved(&app, &token, &imp_uid, close, SETTLE_SECS).await;
    assert_eq!(
        (shown["status"].as_str(), shown["paid_at"].as_i64()),
        (Some("cancelled"), Some(0)),
        "{shown}"
    );
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_forged_deposit_notification_without_a_deposit_at_kcp_leaves_the_account_ready_and_sends_no_webhook(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-forged", &hooks).await;

    let acknowledged = post_notification(&app, &forged(&p, "forged-1", 7000, "00")).await;

    assert!(
        !acknowledged,
        "not what KCP's inquiry shows: asked to send it again, in case KCP's notification ran ahead of its inquiry"
    );
    let shown = app.payment(&token, p["imp_uid"].as_str().unwrap()).await;
    assert_eq!(
        (shown["status"].as_str(), shown["paid_at"].as_i64()),
        (Some("ready"), Some(0)),
        "{shown}"
    );
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready"]);
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Issued);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_real_reversal_makes_the_account_ready_again_and_tells_the_merchant_by_webhook() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-reverse", &hooks).await;
    deposit_until_paid(&app, &token, &p).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);

    app.sandbox
        .deposit(
            p["pg_tid"].as_str().unwrap(),
            p["amount"].as_i64().unwrap(),
            "13",
        )
        .unwrap();

    let shown = until_status(&app, &token, imp_uid, "ready").await;
    assert_eq!(
        (shown["status"].as_str(), shown["paid_at"].as_i64()),
        (Some("ready"), Some(0)),
        "{shown}"
    );
    assert_eq!(
        webhook_statuses(&app, &hooks).await,
        ["ready", "paid", "ready"],
        "a merchant told `paid` hears of the reversal"
    );
    app.assert_ledger_agrees().await;
}

/// A deposit reversed at KCP while its notification was being verified: the reversal, judged
/// first against a payment not paid yet, is not overruled by the deposit's older answer ("paid",
/// given before the reversal), so the account stays ready and nobody is told `paid`.
///
/// The order is the sandbox's, not a timer's: KCP answers the deposit's inquiry "paid" and holds
/// that answer (`Fault::HoldAnswer`) until the reversal's notification has been verified and
/// acknowledged. The gateway's KCP timeout is long enough that it waits for the held answer
/// rather than giving up on it, and the log shows the answer arrived and was judged stale.
#[tokio::test]
async fn a_deposit_reversed_while_its_notification_is_verified_leaves_the_account_ready() {
    let app = spawn_app_with(|c| {
        c.resolver.settle_secs = 60;
        c.kcp.timeout_ms = 9_000;
    })
    .await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-race", &hooks).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    let amount = p["amount"].as_i64().unwrap();
    let gate = "deposit-inquiry";
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HoldAnswer { gate: gate.into() }).when("tno", tno),
    );
    let deposit = app.sandbox.deposit(tno, amount, "00").unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.sandbox.until_held(gate),
    )
    .await
    .expect("the deposit's notification is verified by inquiry");

    let reversal = app.sandbox.deposit(tno, amount, "13").unwrap();
    sandbox_notification(&app, &reversal.noti_id, |n| n.acknowledged).await;
    app.sandbox.open_gate(gate);
    let deposit = sandbox_notification(&app, &deposit.noti_id, |n| n.attempts >= 1).await;

    assert!(
        !deposit.tries[0].acknowledged,
        "the stale answer is not acted on: {deposit:?}"
    );
    assert!(
        crate::helpers::captured_logs()
            .contains(&format!("payment {imp_uid} changed during verification")),
        "KCP's held answer reached the gateway, which found it stale"
    );
    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(shown["status"], "ready", "{shown}");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready"]);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_forged_reversal_of_a_paid_account_leaves_it_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-unreverse", &hooks).await;
    deposit_until_paid(&app, &token, &p).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let paid = app.payment(&token, imp_uid).await;

    let acknowledged = post_notification(&app, &forged(&p, "forged-13", 0, "13")).await;

    assert!(!acknowledged, "KCP still holds it paid");
    assert_eq!(
        app.payment(&token, imp_uid).await,
        paid,
        "still paid, as it was"
    );
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_notification_naming_another_site_changes_nothing_even_for_a_real_deposit() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-site", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    // KCP's own notification goes elsewhere; the gateway sees only what is posted below.
    let elsewhere = Receiver::start().await;
    let deposit = deposit_sent_elsewhere(&app, &p, &elsewhere);
    let mut other_site = deposit.clone();
    for (k, v) in &mut other_site {
        if k == "site_cd" {
            *v = "T9999".into();
        }
    }

    let acknowledged = post_notification(&app, &other_site).await;

    assert!(
        acknowledged,
        "no re-send can make another site's trade ours"
    );
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready"]);
    // The same deposit under its own site (KCP's form) is verified and applied.
    assert!(post_notification(&app, &deposit).await);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
}

#[tokio::test]
async fn a_real_deposit_makes_the_account_paid_with_one_paid_webhook_and_a_re_send_changes_nothing_more(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-real", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    deposit_until_paid(&app, &token, &p).await;

    let sent = app.sandbox.notifications()[0].clone();
    let sent = sandbox_notification(&app, &sent.noti_id, |n| n.acknowledged).await;
    let paid = app.payment(&token, imp_uid).await;
    assert!(paid["paid_at"].as_i64().unwrap() > 0, "{paid}");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    // KCP sends the same notification again (its answer was lost, say).
    app.advance(60);
    assert!(post_notification(&app, &sent.fields).await);
    assert_eq!(app.payment(&token, imp_uid).await, paid, "paid_at kept too");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// Two instances handle KCP's re-send of one deposit: one applies it, and the other, having read
/// the notification's row before that committed, finds the payment paid already and records its
/// own verdict, `unchanged`. The row of the notification that made the payment paid keeps saying
/// `applied` (for the operator reconciling with KCP's admin, and for the re-sends it answers).
#[tokio::test]
async fn a_notification_that_applied_a_deposit_keeps_applied_when_another_instance_records_unchanged(
) {
    use openport::store::entity::kcp_notification;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-outcome-kept", 7000)).await;
    deposit_until_paid(&app, &token, &p).await;
    let sent = app.sandbox.notifications()[0].clone();
    sandbox_notification(&app, &sent.noti_id, |n| n.acknowledged).await;
    let outcome = || async {
        kcp_notification::Entity::find()
            .filter(kcp_notification::Column::NotiId.eq(sent.noti_id.as_str()))
            .one(&app.app.gateway.db.write)
            .await
            .unwrap()
            .unwrap()
    };
    let row = outcome().await;
    assert_eq!(row.outcome.as_deref(), Some("applied"), "{row:?}");

    // The other instance's verdict, as its `settle` writes it.
    openport::store::notifications::set_outcome(
        &app.app.gateway.db.write,
        row.id,
        "unchanged",
        app.app.gateway.clock.unix() + 1,
    )
    .await
    .unwrap();

    assert_eq!(
        outcome().await,
        row,
        "applied, and when it was decided, kept"
    );
}

#[tokio::test]
async fn when_the_inquiry_fails_the_deposit_is_not_acknowledged_and_a_re_send_after_the_fault_applies_it(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-unverified", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 })
            .when("tno", tno)
            .times(100),
    );

    let deposit = app.sandbox.deposit(tno, 7000, "00").unwrap();

    let first = sandbox_notification(&app, &deposit.noti_id, |n| n.attempts >= 1).await;
    assert_eq!(
        (first.tries[0].http_status, first.tries[0].acknowledged),
        (Some(200), false),
        "KCP is answered, with a result that makes it send again"
    );
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready"]);
    // KCP answers inquiries again; its re-send of the same noti_id is verified and applied.
    app.sandbox.clear_faults();
    app.sandbox.flush_notifications().await;
    let done = sandbox_notification(&app, &deposit.noti_id, |n| n.acknowledged).await;
    assert!(done.attempts >= 2, "{done:?}");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// An account issued with `hooks` as its notice URL and a deposit whose one notification reached
/// the gateway while KCP's inquiry failed (so it stays unverified); KCP's own re-sends go to the
/// receiver returned, as if it had given up on the gateway. Returns the issued payment.
async fn deposit_left_unverified(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
    hooks: &Receiver,
) -> (Value, Receiver) {
    let p = issued_with_hooks(app, token, merchant_uid, hooks).await;
    let elsewhere = Receiver::start().await;
    let deposit = deposit_sent_elsewhere(app, &p, &elsewhere);
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 })
            .when("tno", p["pg_tid"].as_str().unwrap())
            .times(1),
    );
    assert!(!post_notification(app, &deposit).await);
    (p, elsewhere)
}

#[tokio::test]
async fn a_deposit_whose_notifications_all_went_unconfirmed_is_applied_by_the_resolvers_sweep() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let (p, _elsewhere) = deposit_left_unverified(&app, &token, "vb-sweep", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");

    // KCP's re-sends get two minutes first; then the resolver asks KCP itself.
    app.advance(60);
    app.app.gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    app.advance(100);
    app.app.gateway.reverify_notifications(100).await.unwrap();
    let paid = app.payment(&token, imp_uid).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    // Nothing more on later sweeps.
    app.advance(600);
    app.app.gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(app.payment(&token, imp_uid).await, paid);
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// The resolver's sweep of unverified deposits, like the rest of an instance's background work,
/// is for the merchants of its own mode: a test-mode instance asked the sandbox about a live
/// merchant's deposit and either learnt nothing (and recorded it as checked, so the live
/// instances waited before asking KCP) or, here, acted on the sandbox's word.
#[tokio::test]
async fn an_instance_in_test_mode_leaves_a_live_merchants_unverified_deposits_to_a_live_instance() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let (imp_key, imp_secret) = app.second_merchant().await;
    let token = app.token_for(&imp_key, &imp_secret).await;
    let hooks = Receiver::start().await;
    let (p, _elsewhere) = deposit_left_unverified(&app, &token, "vb-live", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    let set_live = |live: bool| {
        let db = app.app.gateway.db.write.clone();
        let sql = format!(
            "UPDATE merchants SET test_mode = {} WHERE imp_key = '{imp_key}'",
            !live
        );
        async move { db.execute_unprepared(&sql).await.unwrap() }
    };
    set_live(true).await;
    // Another test-mode instance on the database (this one has the merchant cached as it was).
    let other = app.another_instance(|_| {}).await;

    other.advance(160);
    other.app.gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    let checked = app
        .app
        .gateway
        .db
        .read
        .query_one(sea_orm::Statement::from_string(
            app.app.gateway.db.read.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM kcp_notifications WHERE tno = '{tno}' AND verified_at IS NOT NULL"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(
        checked, 0,
        "not recorded as checked: a live instance asks at once"
    );

    // An instance of the merchant's mode verifies and applies it.
    set_live(false).await;
    app.advance(160);
    app.app.gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    app.assert_ledger_agrees().await;
}

/// Every instance on a database runs the sweep of unverified deposits, over the same rows: each
/// asked KCP about every one, so KCP's load grew with the instances (and each row anyone posts
/// to the public endpoint cost as many inquiries), and the sweeps raced to record the outcome.
/// A trade's rows are now taken before KCP is asked: a second instance sweeping while the
/// first's inquiry is at KCP skips the deposit, which KCP is asked about once and applied once.
#[tokio::test]
async fn two_instances_sweeping_one_unverified_deposit_at_once_ask_kcp_about_it_once() {
    let app = spawn_app().await;
    let other = app.another_instance(|_| {}).await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let (p, _elsewhere) = deposit_left_unverified(&app, &token, "vb-two-sweeps", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    // The first inquiry is held at KCP; any other is counted.
    let gate = "reverify-held";
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HoldRequest { gate: gate.into() }).when("tno", tno),
    );
    count_inquiries(&app, tno);
    app.advance(160);
    other.advance(160);

    let first = app.app.gateway.reverify_notifications(100);
    let second = async {
        app.sandbox.until_held(gate).await;
        let applied = other.app.gateway.reverify_notifications(100).await.unwrap();
        app.sandbox.open_gate(gate);
        applied
    };
    let (first, second) = tokio::join!(first, second);

    assert_eq!((first.unwrap(), second), (1, 0), "applied by the first");
    assert_eq!(inquiries_left(&app), 10, "KCP asked once, by the first");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// The sweep, like every other background job, stops while this host's clock is off the
/// database's (service/clock_check.rs): it reads the rows due and takes them by that clock. Back
/// in line, it asks KCP and applies the deposit.
#[tokio::test]
async fn an_instance_whose_clock_is_off_sweeps_no_unverified_deposit_until_it_is_back_in_line() {
    use openport::service::clock_check::{judge, ClockReading};
    use openport::store::entity::kcp_notification;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let (p, _elsewhere) = deposit_left_unverified(&app, &token, "vb-skewed-sweep", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    count_inquiries(&app, tno);
    app.advance(160);

    let now = chrono::Utc::now();
    let reading =
        gateway.record_clock_reading(judge(now, now, now.timestamp_millis() - 60_000, 5_000));
    assert!(matches!(reading, ClockReading::Skewed { .. }), "{reading}");
    assert_eq!(gateway.reverify_notifications(100).await.unwrap(), 0);
    assert_eq!(inquiries_left(&app), 10, "KCP not asked");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    let rows = kcp_notification::Entity::find()
        .filter(kcp_notification::Column::Tno.eq(tno))
        .all(&gateway.db.read)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.outcome.is_none() && r.verified_at.is_none()),
        "not taken, not marked checked: {rows:?}"
    );

    let now = chrono::Utc::now();
    gateway.record_clock_reading(judge(now, now, now.timestamp_millis(), 5_000));
    assert_eq!(gateway.reverify_notifications(100).await.unwrap(), 1);
    assert_eq!(inquiries_left(&app), 9);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn notifications_past_the_retention_are_pruned_forged_ones_included() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-prune", &hooks).await;
    // Paid, so that the forged deposits are decided (an open account's, or an undecided one, are
    // kept: restore::an_old_partial_deposit_on_an_open_account_outlives_the_retention_…).
    deposit_until_paid(&app, &token, &p).await;
    for i in 0..3 {
        post_notification(&app, &forged(&p, &format!("old-{i}"), 7000, "00")).await;
    }
    let gateway = &app.app.gateway;
    assert_eq!(gateway.prune_notifications(90, 100).await.unwrap(), 0);
    app.advance(91 * 86_400);
    post_notification(&app, &forged(&p, "recent", 7000, "00")).await;
    assert_eq!(
        gateway.prune_notifications(0, 100).await.unwrap(),
        0,
        "0 keeps all"
    );
    assert_eq!(gateway.prune_notifications(90, 2).await.unwrap(), 2);
    assert_eq!(
        gateway.prune_notifications(90, 100).await.unwrap(),
        2,
        "the rest of the forged ones and KCP's own"
    );
    assert_eq!(
        gateway.prune_notifications(90, 100).await.unwrap(),
        0,
        "the recent one stays"
    );
}

/// A `TX00` form for trade `tno` of site `site_cd` that nothing at KCP stands behind.
fn forged_for(site_cd: &str, tno: &str, noti_id: &str) -> Vec<(String, String)> {
    [
        ("site_cd", site_cd),
        ("tno", tno),
        ("order_no", "x"),
        ("tx_cd", "TX00"),
        ("tx_tm", "20261123120000"),
        ("ipgm_mnyx", "7000"),
        ("totl_mnyx", "7000"),
        ("noti_id", noti_id),
        ("op_cd", "00"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The notification recorded under `noti_id`.
pub(crate) async fn notification_row(
    app: &TestApp,
    noti_id: &str,
) -> Option<openport::store::entity::kcp_notification::Model> {
    use openport::store::entity::kcp_notification::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    Entity::find()
        .filter(Column::NotiId.eq(noti_id))
        .one(&app.app.gateway.db.read)
        .await
        .unwrap()
}

/// A rule that only counts the inquiries of `tno` (each uses up one of its ten times): how many
/// KCP got is 10 minus what [`inquiries_left`] says.
pub(crate) fn count_inquiries(app: &TestApp, tno: &str) {
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::Delay { ms: 0 })
            .when("tno", tno)
            .times(10),
    );
}

pub(crate) fn inquiries_left(app: &TestApp) -> u32 {
    app.sandbox
        .armed_faults()
        .iter()
        .find(|r| r.path == paths::INQUIRY)
        .map_or(0, |r| r.times)
}

/// Anyone who reaches the endpoint can post deposits of made-up trades, each with a fresh
/// `noti_id`: they were left undecided, which the retention keeps for good. The resolver's sweep
/// asks KCP about the trade once (never the post itself), and a trade KCP does not know is
/// decided `unknown`, acknowledged from then on, never asked about again, and pruned in its time.
#[tokio::test]
async fn a_forged_deposit_of_a_trade_kcp_does_not_know_is_asked_about_once_decided_unknown_and_pruned(
) {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let tno = "20991231000001";
    let form = forged_for("T0000", tno, "forged-nowhere");
    count_inquiries(&app, tno);

    assert!(
        !post_notification(&app, &form).await,
        "left undecided for the sweep, as a trade openport does not hold yet"
    );
    assert_eq!(
        inquiries_left(&app),
        10,
        "no inquiry per post: the sweep asks"
    );
    let row = notification_row(&app, "forged-nowhere").await.unwrap();
    assert_eq!(row.outcome, None);

    app.advance(121);
    gateway.reverify_notifications(100).await.unwrap();
    let row = notification_row(&app, "forged-nowhere").await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("unknown"));
    assert_eq!(inquiries_left(&app), 9, "asked once");

    assert!(
        post_notification(&app, &form).await,
        "decided: a re-send is acknowledged"
    );
    for _ in 0..3 {
        app.advance(600);
        gateway.reverify_notifications(100).await.unwrap();
    }
    assert_eq!(inquiries_left(&app), 9, "never asked again");

    app.advance(91 * 86_400);
    assert_eq!(gateway.prune_notifications(90, 100).await.unwrap(), 1);
    assert!(notification_row(&app, "forged-nowhere").await.is_none());
}

/// A site a live merchant has is the live instances' to decide: a test-mode instance on the same
/// database asks only the sandbox (or KCP's staging), which never knows a live trade, so its "not
/// found" must not make a production deposit `unknown` (and pruned). It neither asks nor marks
/// the row checked; an instance of the site's mode decides it.
#[tokio::test]
async fn a_test_mode_instance_leaves_a_trade_it_does_not_hold_of_a_site_a_live_merchant_has_undecided(
) {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let (imp_key, _) = app.second_merchant().await; // site T0000 too
    let set_live = |live: bool| {
        let db = gateway.db.write.clone();
        let sql = format!(
            "UPDATE merchants SET test_mode = {} WHERE imp_key = '{imp_key}'",
            !live
        );
        async move { db.execute_unprepared(&sql).await.unwrap() }
    };
    set_live(true).await;
    let tno = "20991231000003";
    count_inquiries(&app, tno);
    assert!(!post_notification(&app, &forged_for("T0000", tno, "live-site")).await);

    app.advance(121);
    gateway.reverify_notifications(100).await.unwrap();
    let row = notification_row(&app, "live-site").await.unwrap();
    assert_eq!((row.outcome, row.verified_at), (None, None));
    assert_eq!(inquiries_left(&app), 10, "not asked here");

    // Its merchants all of this instance's mode: asked, and decided.
    set_live(false).await;
    gateway.reverify_notifications(100).await.unwrap();
    let row = notification_row(&app, "live-site").await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("unknown"));
    assert_eq!(inquiries_left(&app), 9);
}

/// A deposit of a site no merchant has (there is nothing to ask KCP with), or of a `tno` KCP never
/// issues (not 14 digits), is decided `unknown` and acknowledged as posted, with no inquiry.
#[tokio::test]
async fn a_deposit_of_a_site_no_merchant_has_or_of_a_tno_kcp_never_issues_is_decided_unknown_as_posted(
) {
    let app = spawn_app().await;
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Delay { ms: 0 }).times(10));
    let cases = [
        ("A9999", "20991231000002", "other-site"),
        ("T0000", "2099123100000", "short-tno"),
        ("T0000", "209912310000020", "long-tno"),
    ];
    for (site_cd, tno, noti_id) in cases {
        assert!(
            post_notification(&app, &forged_for(site_cd, tno, noti_id)).await,
            "{noti_id}"
        );
        let row = notification_row(&app, noti_id).await.unwrap();
        assert_eq!(row.outcome.as_deref(), Some("unknown"), "{noti_id}");
    }
    assert_eq!(inquiries_left(&app), 10, "nothing asked");
    app.advance(91 * 86_400);
    assert_eq!(
        app.app.gateway.prune_notifications(90, 100).await.unwrap(),
        3
    );
}

#[tokio::test]
async fn a_kcp_notification_finds_its_account_through_an_index_not_by_reading_every_payment() {
    use sea_orm::{ConnectionTrait, QueryTrait};

    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-index", 12_000)).await;
    let tno = p["pg_tid"].as_str().unwrap();
    let db = &app.app.gateway.db.read;
    let found = openport::store::payments::vbank_by_tno(db, tno)
        .await
        .unwrap();
    assert_eq!(
        found.map(|f| f.imp_uid),
        p["imp_uid"].as_str().map(str::to_string)
    );

    let backend = db.get_database_backend();
    let query = openport::store::payments::vbank_by_tno_query(tno).build(backend);
    let plan = crate::helpers::query_plan(db, &query).await;
    assert!(plan.contains("pg_attempts_by_tno"), "{plan}");
    let reads_a_table_whole =
        |l: &str| l.contains("Seq Scan") || l.trim_start().starts_with("SCAN");
    assert!(!plan.lines().any(reads_a_table_whole), "{plan}");
}

/// Posts `fields` to `/kcp/notify` with `X-Forwarded-For` headers; the status and whether KCP
/// would take the reply as an acknowledgement.
async fn post_notification_via(
    app: &TestApp,
    fields: &[(String, String)],
    forwarded_for: &[&str],
) -> (StatusCode, bool) {
    let mut req = app.http.post(app.url("/kcp/notify")).form(fields);
    for hop in forwarded_for {
        req = req.header("x-forwarded-for", *hop);
    }
    let res = req.send().await.expect("notification posted");
    let status = res.status();
    let body = res.text().await.unwrap();
    (status, body.contains("name=\"result\" value=\"0000\""))
}

async fn recorded_notifications(app: &TestApp) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    openport::store::entity::kcp_notification::Entity::find()
        .count(&app.app.gateway.db.read)
        .await
        .unwrap()
}

/// A real deposit at KCP for `p` whose notification KCP sent elsewhere; its fields.
fn deposit_sent_elsewhere(app: &TestApp, p: &Value, elsewhere: &Receiver) -> Vec<(String, String)> {
    app.sandbox
        .set_notify_url("T0000", &elsewhere.url("/kcp/notify"));
    app.sandbox
        .deposit(p["pg_tid"].as_str().unwrap(), 7000, "00")
        .unwrap()
        .fields
}

#[tokio::test]
async fn a_notification_from_an_address_kcp_does_not_send_from_is_refused_and_recorded_nowhere() {
    let app = spawn_app_with(|c| c.kcp.notify_sources = Some("203.0.113.7".into())).await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-source", 7000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let elsewhere = Receiver::start().await;
    let fields = deposit_sent_elsewhere(&app, &p, &elsewhere);

    // KCP's very form, a real deposit behind it, from this host (not in the list).
    let (status, acknowledged) = post_notification_via(&app, &fields, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!acknowledged, "KCP itself would send it again");
    // No proxy is trusted, so a header naming KCP's address is the sender's own word.
    let (status, acknowledged) = post_notification_via(&app, &fields, &["203.0.113.7"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!acknowledged);

    assert_eq!(recorded_notifications(&app).await, 0);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_address_the_proxy_saw_decides() {
    let app = spawn_app_with(|c| {
        c.kcp.notify_sources = Some("203.0.113.7".into());
        c.trusted_proxies = Some("127.0.0.1/32".into());
    })
    .await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-proxy", 7000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let elsewhere = Receiver::start().await;
    let fields = deposit_sent_elsewhere(&app, &p, &elsewhere);

    // The client wrote KCP's address first; the proxy appended the address it really saw.
    let (status, _) = post_notification_via(&app, &fields, &["203.0.113.7, 198.51.100.9"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    // A proxy that saw KCP's address.
    let (status, acknowledged) =
        post_notification_via(&app, &fields, &["198.51.100.9, 203.0.113.7"]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(acknowledged);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(recorded_notifications(&app).await, 1);
}

#[tokio::test]
async fn a_virtual_account_shows_kcps_slip_once_paid_and_none_while_ready_or_revoked() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-receipt", 15000)).await;
    assert!(p["receipt_url"].is_null(), "{p}");
    deposit_until_paid(&app, &token, &p).await;
    let paid = app.payment(&token, p["imp_uid"].as_str().unwrap()).await;
    let url = paid["receipt_url"].as_str().unwrap();
    assert!(
        url.starts_with(
            "https://testadmin8.kcp.co.kr/assist/bill.BillActionNew.do?cmd=vcnt_bill&tno="
        ) && url.contains(p["pg_tid"].as_str().unwrap())
            && url.ends_with("&trade_mony=15000"),
        "{url}"
    );
    let other = issued(&app, &token, vbank(&app, "vb-receipt-2", 1000)).await;
    let (_, revoked) = revoke(&app, &token, other["imp_uid"].as_str().unwrap()).await;
    assert_eq!(revoked["response"]["status"], "cancelled", "{revoked}");
    assert!(revoked["response"]["receipt_url"].is_null(), "never paid");
}

#[tokio::test]
async fn a_full_deposit_whose_total_is_missing_or_unreadable_is_verified_with_kcp_and_applied() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-no-total", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    // KCP's own notification goes elsewhere; the gateway sees only what is posted below.
    let elsewhere = Receiver::start().await;
    let deposit = deposit_sent_elsewhere(&app, &p, &elsewhere);
    // Its total reaches openport unreadable: not taken for 0 (a partial deposit), but asked about.
    let odd_total: Vec<(String, String)> = deposit
        .iter()
        .map(|(k, v)| match k.as_str() {
            "totl_mnyx" => (k.clone(), "7,000".to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    assert!(post_notification(&app, &odd_total).await);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);

    // The same with no total at all, for another account.
    let q = issued(&app, &token, vbank(&app, "vb-no-total-2", 7000)).await;
    let deposit = app
        .sandbox
        .deposit(q["pg_tid"].as_str().unwrap(), 7000, "00")
        .unwrap();
    let no_total: Vec<(String, String)> = deposit
        .fields
        .iter()
        .filter(|(k, _)| k != "totl_mnyx")
        .cloned()
        .collect();
    assert!(post_notification(&app, &no_total).await);
    assert_eq!(
        app.payment(&token, q["imp_uid"].as_str().unwrap()).await["status"],
        "paid"
    );
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_notification_other_than_a_deposit_carries_no_noti_id_and_is_recorded_once_and_acknowledged(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-tx04", 7000)).await;
    let tno = p["pg_tid"].as_str().unwrap();
    // spec/kcp.md §2.12: the common fields, no noti_id (TX04: settlement held).
    let closed: Vec<(String, String)> = [
        ("site_cd", "T0000"),
        ("tno", tno),
        ("order_no", "x"),
        ("tx_cd", "TX04"),
        ("tx_tm", "20261203120000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    assert!(
        post_notification(&app, &closed).await,
        "KCP would re-send it forever"
    );
    assert!(post_notification(&app, &closed).await, "a re-send too");
    let later: Vec<(String, String)> = closed
        .iter()
        .map(|(k, v)| match k.as_str() {
            "tx_tm" => (k.clone(), "20261203130000".to_string()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    assert!(post_notification(&app, &later).await);

    use openport::store::entity::kcp_notification;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let rows = kcp_notification::Entity::find()
        .filter(kcp_notification::Column::TxCd.eq("TX04"))
        .all(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        2,
        "one per notification, re-sends counted once: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.outcome.as_deref() == Some("kept")));
    assert_eq!(
        app.payment(&token, p["imp_uid"].as_str().unwrap()).await["status"],
        "ready"
    );

    // A deposit still needs its noti_id: without it, KCP is asked to send it again.
    let mut deposit_without_id = closed.clone();
    for (k, v) in &mut deposit_without_id {
        if k == "tx_cd" {
            *v = "TX00".into();
        }
    }
    deposit_without_id.push(("totl_mnyx".into(), "7000".into()));
    assert!(!post_notification(&app, &deposit_without_id).await);
}

#[tokio::test]
async fn a_card_charge_for_a_merchant_uid_whose_account_waits_for_its_deposit_is_refused_as_such() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-then-card", 8000)).await;

    let (status, refused) = app
        .pay(
            &token,
            "vb-then-card",
            8000,
            crate::helpers::test_cards::SHINHAN_CREDIT,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refused}");
    assert_eq!(refused["code"], 1, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("가상계좌가 발급되어") && message.contains(p["imp_uid"].as_str().unwrap()),
        "not 'already paid': {message}"
    );
    assert_eq!(
        app.sandbox.ledger().len(),
        1,
        "the account only: no card charged"
    );
}

/// What a new request for a merchant_uid whose account was revoked (never paid) is told.
const REVOKED_ACCOUNT: &str =
    "이 merchant_uid로 발급된 가상계좌는 발급취소되었습니다. 새 merchant_uid로 결제해 주세요.";
/// What a new request for a merchant_uid whose `ready` account is past its deadline is told.
const EXPIRED_ACCOUNT: &str =
    "이 merchant_uid로 발급된 가상계좌는 입금기한이 지났습니다. 새 merchant_uid로 결제해 주세요.";

/// Opens a browser checkout of a virtual account for `merchant_uid` (7,000, due in a week); the
/// answer.
async fn vbank_window(app: &TestApp, merchant_uid: &str) -> Value {
    let due = app.app.gateway.clock.unix() + WEEK;
    let (_, res) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
                   "params": {"pay_method": "vbank", "merchant_uid": merchant_uid, "amount": 7000,
                              "vbank_due": format!("{due:010}")}}),
        )
        .await;
    res
}

/// The merchant_uid of a revoked account stays used (docs/api.md `/vbanks`), and a new request for
/// it says why: the account was revoked. Never "paid and then cancelled", which would send the
/// merchant looking for a payment and a refund that never happened.
#[tokio::test]
async fn a_merchant_uid_whose_account_was_revoked_is_refused_as_revoked_not_as_paid_and_cancelled()
{
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-revoked-retry", 7000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let (status, res) = revoke(&app, &token, imp_uid).await;
    assert_eq!(
        (status, res["code"].as_i64()),
        (StatusCode::OK, Some(0)),
        "{res}"
    );

    let (status, again) = app
        .post(
            "/vbanks",
            Some(&token),
            vbank(&app, "vb-revoked-retry", 7000),
        )
        .await;
    let window = vbank_window(&app, "vb-revoked-retry").await;

    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (again["code"].as_i64(), again["message"].as_str()),
        (
            Some(1),
            Some(format!("{REVOKED_ACCOUNT} (imp_uid: {imp_uid})").as_str())
        ),
        "{again}"
    );
    assert_eq!(
        (window["code"].as_i64(), window["message"].as_str()),
        (Some(1), Some(REVOKED_ACCOUNT)),
        "{window}"
    );
    assert_eq!(app.sandbox.ledger().len(), 1, "nothing more asked of KCP");
}

/// A `ready` account past its deposit deadline takes no deposit any more: a new request for its
/// merchant_uid is told so, and how to go on, not that the account waits for its deposit.
#[tokio::test]
async fn a_merchant_uid_whose_account_is_past_its_deposit_deadline_is_refused_with_the_deadline_not_as_waiting(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-expired-retry", 7000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let (_, waiting) = app
        .post(
            "/vbanks",
            Some(&token),
            vbank(&app, "vb-expired-retry", 7000),
        )
        .await;
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .starts_with("이 merchant_uid로 이미 가상계좌가 발급되어 입금을 기다리고 있습니다."),
        "before its deadline: {waiting}"
    );

    app.advance(WEEK + 1);
    let token = app.token().await;
    let (status, again) = app
        .post(
            "/vbanks",
            Some(&token),
            vbank(&app, "vb-expired-retry", 7000),
        )
        .await;
    let window = vbank_window(&app, "vb-expired-retry").await;

    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (again["code"].as_i64(), again["message"].as_str()),
        (
            Some(1),
            Some(format!("{EXPIRED_ACCOUNT} (imp_uid: {imp_uid})").as_str())
        ),
        "{again}"
    );
    assert_eq!(
        (window["code"].as_i64(), window["message"].as_str()),
        (Some(1), Some(EXPIRED_ACCOUNT)),
        "{window}"
    );
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    assert_eq!(app.sandbox.ledger().len(), 1, "nothing more asked of KCP");
}

/// Asks for an account (5,000) that KCP issues only after openport stopped waiting and after the
/// settle delay: the issuance is held at the sandbox unprocessed (`Fault::HoldRequest`) while
/// openport gives up on it and the resolver, once past the delay, finds no account; only then does
/// KCP issue it. The order is the sandbox's gate, not a timer's. Returns the payment's imp_uid.
async fn an_issuance_kcp_applies_after_the_settle_delay(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
) -> String {
    let gate = "late-issuance";
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::HoldRequest { gate: gate.into() })
            .when("pay_method", "VCNT"),
    );
    let (_, res) = app
        .post("/vbanks", Some(token), vbank(app, merchant_uid, 5000))
        .await;
    assert_eq!(res["code"], 1, "{res}");
    let imp_uid = imp_uid_in(&res["message"]);
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.sandbox.until_held(gate),
    )
    .await
    .expect("the issuance reached KCP");
    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    assert!(
        app.sandbox.ledger().is_empty(),
        "KCP had not issued it when the resolver looked"
    );

    app.sandbox.open_gate(gate);
    for _ in 0..200 {
        if !app.sandbox.ledger().is_empty() {
            return imp_uid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("KCP never applied the held issuance");
}

/// An issuance KCP applies after the settle delay: by then the payment failed for finding no
/// account and its merchant_uid was free, and the account KCP opened would take deposits nobody
/// records. The second look, as for a failed approval, finds it and revokes it.
#[tokio::test]
async fn an_account_kcp_issues_after_the_settle_delay_is_found_by_a_second_look_and_revoked() {
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid = an_issuance_kcp_applies_after_the_settle_delay(&app, &token, "vb-late").await;
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");

    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP issued it very late");
    assert_eq!(ledger[0].state, TransactionState::Issued);

    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str());
    app.assert_ledger_agrees().await;
}

/// The same late account, paid into by the buyer before the second look: the deposit is the
/// buyer's money at KCP, refunded to an account only the buyer can name, so it is left to the
/// operator as a conflict, never closed away with `STSC`.
#[tokio::test]
async fn an_account_kcp_issues_late_and_the_buyer_pays_into_is_a_conflict_at_the_second_look() {
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid =
        an_issuance_kcp_applies_after_the_settle_delay(&app, &token, "vb-late-paid").await;
    let tno = app.sandbox.ledger()[0].tno.clone();
    app.sandbox.deposit(&tno, 5000, "00").unwrap();

    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let ledger = app.sandbox.ledger();
    assert_ne!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
}

/// An issuance whose answer was lost, and into whose account the buyer paid before the resolver
/// found it: never closed with `STSC` (KCP would have nowhere to send the deposit back). KCP's
/// inquiry names the account, for the payment's amount and order, paid in full: what iamport shows
/// after a deposit is recorded, the account issued and paid, with its `paid` webhook.
#[tokio::test]
async fn an_account_found_paid_after_its_issuance_answer_was_lost_is_recorded_paid_not_revoked() {
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid = an_issuance_whose_answer_and_inquiry_are_lost(&app, &token, "vb-lost-paid").await;
    let tno = app.sandbox.ledger()[0].tno.clone();
    app.sandbox.deposit(&tno, 5000, "00").unwrap();

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let entry = &app.sandbox.ledger()[0];
    assert_ne!(entry.state, TransactionState::Cancelled, "{entry:?}");
    assert!(
        entry.cancels.is_empty(),
        "no cancel sent for a paid account: {entry:?}"
    );
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(p["pg_tid"], tno.as_str());
    assert!(
        p["vbank_num"].as_str().is_some_and(|n| !n.is_empty()),
        "{p}"
    );
    assert!(p["paid_at"].as_i64().unwrap() > 0, "{p}");
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// The same, but KCP's inquiry does not name the account: openport can neither record it nor close
/// it. A conflict for the operator, and the payment holds its merchant_uid (`ready`, naming the
/// account's tno): a retry is told not to issue again, and issues nothing.
#[tokio::test]
async fn an_account_found_paid_whose_inquiry_names_no_account_holds_its_merchant_uid_for_the_operator(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid =
        an_issuance_whose_answer_and_inquiry_are_lost(&app, &token, "vb-lost-paid-2").await;
    let tno = app.sandbox.ledger()[0].tno.clone();
    app.sandbox.deposit(&tno, 5000, "00").unwrap();
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::AnswerField {
                field: "account".into(),
                value: String::new(),
            },
        )
        .times(100),
    );

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let entry = &app.sandbox.ledger()[0];
    assert!(entry.cancels.is_empty(), "{entry:?}");
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "ready", "held, never failed: {p}");
    assert_eq!(p["pg_tid"], tno.as_str());
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);

    let (_, again) = app
        .post("/vbanks", Some(&token), vbank(&app, "vb-lost-paid-2", 5000))
        .await;
    assert_eq!(again["code"], 1, "{again}");
    assert!(
        again["message"]
            .as_str()
            .is_some_and(|m| m.contains("다시 결제하지 마세요")),
        "{again}"
    );
    assert_eq!(app.sandbox.ledger().len(), 1, "no second account");
}

/// KCP's manual makes the amount comparison mandatory (spec/kcp.md §5), for an account learnt by
/// inquiry too: the issuance's answer is lost, and the inquiry (`PAVC`) that finds the account
/// names another amount than the payment's. The merchant is still waiting, so an account for the
/// order would be handed out `ready`; this one is revoked at KCP, never handed out, and the payment
/// fails (nobody could pay it the right amount), its merchant_uid free again.
#[tokio::test]
async fn an_account_whose_lost_issuance_an_inquiry_finds_for_another_amount_is_revoked_not_handed_out(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("pay_method", "VCNT"));
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::AnswerField {
            field: "amount".into(),
            value: "999".into(),
        },
    ));
    let mut body = vbank(&app, "vb-inq-amount", 5000);
    body["notice_url"] = json!(hooks.url("/hook"));

    let (_, res) = app.post("/vbanks", Some(&token), body).await;

    assert!(
        app.sandbox.armed_faults().is_empty(),
        "the issuance answer was lost and the inquiry asked"
    );
    assert_ne!(
        res["response"]["status"], "ready",
        "never handed out: {res}"
    );
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(
        ledger[0].state,
        TransactionState::Cancelled,
        "revoked at KCP"
    );
    let (_, found) = app
        .get("/payments/find/vb-inq-amount/failed", Some(&token))
        .await;
    let p = &found["response"];
    assert_eq!(p["status"], "failed", "{found}");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str(), "{p}");
    assert!(p["vbank_num"].is_null(), "no account shown: {p}");
    assert!(app.conflicts().await.is_empty());
    assert!(
        webhook_statuses(&app, &hooks).await.is_empty(),
        "no `ready` webhook for an account never handed out"
    );
    app.assert_ledger_agrees().await;

    let again = issued(&app, &token, vbank(&app, "vb-inq-amount", 5000)).await;
    assert_ne!(again["imp_uid"], p["imp_uid"]);
}

/// An account found paid into after its issuance answer was lost is recorded `paid` only when
/// KCP's inquiry names it for the payment's amount: one it names for another amount is held for
/// the operator (a conflict, never `paid`, never revoked over the buyer's money).
#[tokio::test]
async fn an_account_found_paid_whose_inquiry_names_another_amount_is_held_for_the_operator_never_paid(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid =
        an_issuance_whose_answer_and_inquiry_are_lost(&app, &token, "vb-lost-paid-amount").await;
    let tno = app.sandbox.ledger()[0].tno.clone();
    app.sandbox.deposit(&tno, 5000, "00").unwrap();
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::AnswerField {
                field: "amount".into(),
                value: "999".into(),
            },
        )
        .times(100),
    );

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let entry = &app.sandbox.ledger()[0];
    assert!(entry.cancels.is_empty(), "not revoked: {entry:?}");
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "ready", "held, never paid nor failed: {p}");
    assert_eq!(p["pg_tid"], tno.as_str());
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
}

/// A revocation closes the account at KCP with whatever was deposited on it and nowhere to send
/// it back (docs/kcp.md §10.2). A partial deposit keeps the account `ready` (rightly), and
/// openport holds its notification: the revocation is refused before anything is sent to KCP.
#[tokio::test]
async fn revoking_an_account_holding_a_partial_deposit_is_refused_and_sends_nothing_to_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-partly", 5000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    let deposit = app.sandbox.deposit(tno, 3000, "00").unwrap();
    sandbox_notification(&app, &deposit.noti_id, |n| n.acknowledged).await;
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");

    refused_over_a_deposit(&app, &token, imp_uid).await;

    let entry = &app.sandbox.ledger()[0];
    assert_eq!(
        (entry.state, entry.cancels.len()),
        (TransactionState::Issued, 0)
    );
    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_amount"].as_i64()),
        (Some("ready"), Some(0)),
        "{shown}"
    );
    // Nothing is left open: the account can still be paid in full.
    app.sandbox.clear_faults();
    app.sandbox.deposit(tno, 2000, "00").unwrap();
    until_status(&app, &token, imp_uid, "paid").await;
    app.assert_ledger_agrees().await;
}

/// Revokes `imp_uid` and checks it is refused over the money the account may hold: `code 1`,
/// "입금 내역이 있는…", and no cancel reached KCP (the twin of [`revoked_at_kcp`]).
async fn refused_over_a_deposit(app: &TestApp, token: &str, imp_uid: &str) {
    // Consumed by a cancel call, were one sent.
    let watch = FaultRule::new(paths::CANCEL, Fault::Delay { ms: 0 });
    app.sandbox.inject(watch.clone());

    let (status, res) = revoke(app, token, imp_uid).await;

    assert_eq!(
        (status, res["code"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{res}"
    );
    assert!(
        res["message"]
            .as_str()
            .unwrap()
            .starts_with("입금 내역이 있는"),
        "says why: {res}"
    );
    assert_eq!(app.sandbox.armed_faults(), [watch], "no cancel reached KCP");
}

/// Revokes `p` and checks that the close reached KCP: `code 0`, the payment `cancelled` for its
/// whole amount, and an `STSC` in the sandbox's ledger for its `tno`.
async fn revoked_at_kcp(app: &TestApp, token: &str, p: &Value) {
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    let (status, res) = revoke(app, token, imp_uid).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["code"], 0, "{res}");
    assert_eq!(res["response"]["status"], "cancelled", "{res}");
    assert_eq!(res["response"]["cancel_amount"], p["amount"], "{res}");
    let ledger = app.sandbox.ledger();
    let entry = ledger.iter().find(|e| e.tno == tno).unwrap();
    assert_eq!(entry.state, TransactionState::Cancelled);
    assert_eq!(
        entry
            .cancels
            .iter()
            .map(|c| c.mod_type.as_str())
            .collect::<Vec<_>>(),
        ["STSC"]
    );
}

/// A deposit whose notification was lost, taken back by the bank a minute later (`op_cd 13`,
/// notified: the total is 0 again), then KCP's late re-send of the deposit's notification, which
/// openport acknowledges (a partial total is answered at once; a full one is asked about and
/// KCP holds the account unpaid). The re-send arrived last, but its deposit is older: the newest
/// deposit in KCP's order is the reversal, so the account holds nothing and the revocation closes
/// it. Taken in the order openport received them, the re-send's total refused the revocation for
/// good ("입금 내역이 있는…") though KCP held nothing.
#[tokio::test]
async fn a_deposits_late_re_send_after_its_reversal_does_not_keep_the_account_from_being_revoked() {
    let app = spawn_app().await;
    let token = app.token().await;
    let elsewhere = Receiver::start().await;
    app.sandbox
        .set_notify_url("T0000", &elsewhere.url("/kcp/notify"));
    for (merchant_uid, deposited) in [("vb-late-partial", 4000), ("vb-late-full", 7000)] {
        let p = issued(&app, &token, vbank(&app, merchant_uid, 7000)).await;
        let tno = p["pg_tid"].as_str().unwrap();
        // KCP's notification of the deposit goes elsewhere (lost); its reversal's reaches openport.
        let deposit = app.sandbox.deposit(tno, deposited, "00").unwrap();
        app.advance(60);
        let reversal = app.sandbox.deposit(tno, deposited, "13").unwrap();
        assert_eq!(reversal.total, 0);
        assert!(post_notification(&app, &reversal.fields).await);

        let answered = post_notification(&app, &deposit.fields).await;

        assert_eq!(
            answered,
            deposited < 7000,
            "a full one is not confirmed by KCP"
        );
        assert!(notification_row(&app, &deposit.noti_id).await.is_some());
        revoked_at_kcp(&app, &token, &p).await;
    }
    app.assert_ledger_agrees().await;
}

/// A `TX00` naming the account's `tno` under another site (recorded `refused`: it says nothing
/// of this account), notified after every deposit of the account's own: it neither shows money on
/// the account nor hides any, and the revocation closes the account KCP holds empty.
#[tokio::test]
async fn another_sites_notification_naming_the_account_does_not_keep_it_from_being_revoked() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-other-site", 7000)).await;
    let tno = p["pg_tid"].as_str().unwrap();
    let mut other_site = forged_for("T9999", tno, "other-site-7000");
    other_site.push(("ipgm_time".into(), "20991231120000".into()));

    assert!(post_notification(&app, &other_site).await);

    let row = notification_row(&app, "other-site-7000").await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("refused"));
    revoked_at_kcp(&app, &token, &p).await;
    app.assert_ledger_agrees().await;
}

/// A deposit, its reversal and a second, partial deposit, all within one second, the reversal's
/// notification received last: KCP's order between them is not known (`noti_id` is only unique,
/// spec/kcp.md §2.12; the order received is not KCP's), so the money of the partial deposit may be
/// on the account and the revocation is refused for the operator, no close sent. Taken in the
/// order received, the reversal's total 0 sent the close over the 3000 KCP holds.
#[tokio::test]
async fn notifications_within_one_second_any_showing_money_keep_the_revocation_for_the_operator() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.stop_clock();
    let p = issued(&app, &token, vbank(&app, "vb-same-second", 7000)).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    let elsewhere = Receiver::start().await;
    app.sandbox
        .set_notify_url("T0000", &elsewhere.url("/kcp/notify"));
    let reversed = app.sandbox.deposit(tno, 4000, "00").unwrap();
    let reversal = app.sandbox.deposit(tno, 4000, "13").unwrap();
    let deposit = app.sandbox.deposit(tno, 3000, "00").unwrap();
    assert!(post_notification(&app, &deposit.fields).await);
    assert!(post_notification(&app, &reversed.fields).await);
    assert!(post_notification(&app, &reversal.fields).await);

    refused_over_a_deposit(&app, &token, imp_uid).await;

    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
}

/// A reversal notified with a deposit time years ahead (forged, or KCP's clock gone wrong) is
/// placed no later than openport received it: a partial deposit notified after it is the newest,
/// and the revocation is refused over it, no close sent. Taken at its word, the notice stayed
/// the newest over every deposit to come, and the close was sent over the money.
#[tokio::test]
async fn a_notice_dated_ahead_does_not_hide_a_later_partial_deposit_from_the_revocation() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-dated-ahead", 7000)).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    let mut ahead = forged(&p, "reversal-dated-ahead", 0, "13");
    ahead.push(("ipgm_time".into(), "20991231120000".into()));
    assert!(post_notification(&app, &ahead).await, "KCP holds it unpaid");
    app.advance(60);
    let deposit = app.sandbox.deposit(tno, 3000, "00").unwrap();
    sandbox_notification(&app, &deposit.noti_id, |n| n.acknowledged).await;

    refused_over_a_deposit(&app, &token, imp_uid).await;
}

/// KCP holds the account paid while openport's only notification of it is unverified: the
/// revocation asks KCP first, applies the deposit as a verified notification would (`paid`, its
/// webhook), sends no close, and answers that the account is no longer awaiting its deposit.
#[tokio::test]
async fn revoking_an_account_whose_deposit_is_still_unverified_applies_the_deposit_instead() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let (p, _elsewhere) = deposit_left_unverified(&app, &token, "vb-revoke-paid", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");

    let (status, res) = revoke(&app, &token, imp_uid).await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert!(
        res["message"].as_str().unwrap().contains("paid"),
        "names the status: {res}"
    );
    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(shown["status"], "paid", "{shown}");
    assert!(shown["paid_at"].as_i64().unwrap() > 0, "{shown}");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    let entry = &app.sandbox.ledger()[0];
    assert_eq!(
        (entry.state, entry.cancels.len()),
        (TransactionState::Approved, 0)
    );
    app.assert_ledger_agrees().await;
}

/// The deposit lands at KCP while the revocation's close is on its way: its notification,
/// verified meanwhile, does not move the payment under the open revocation (KCP is asked to send
/// it again); KCP refuses to close an account holding money, and the revocation applies the
/// deposit KCP holds and says so. Never a payment told `paid` and recorded revoked.
///
/// The order is the sandbox's gate, not a timer's: the close is held at KCP unprocessed
/// (`Fault::HoldRequest`) until the deposit's notification has been tried, with a KCP timeout
/// long enough that the gateway waits for the close's answer rather than giving up on it.
#[tokio::test]
async fn a_deposit_landing_while_a_revocation_is_at_kcp_never_leaves_a_paid_payment_recorded_as_revoked(
) {
    let app = spawn_app_with(|c| {
        c.resolver.settle_secs = 60;
        c.kcp.timeout_ms = 9_000;
    })
    .await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-revoke-race", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_string();
    let tno = p["pg_tid"].as_str().unwrap();
    let gate = "revocation-close";
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::HoldRequest { gate: gate.into() }).when("tno", tno),
    );
    let revoking = app.revoke_in_background(&token, &imp_uid);
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.sandbox.until_held(gate),
    )
    .await
    .expect("the revocation's close reached KCP");
    let deposit = app.sandbox.deposit(tno, 7000, "00").unwrap();
    let first = sandbox_notification(&app, &deposit.noti_id, |n| n.attempts >= 1).await;
    assert!(
        !first.tries[0].acknowledged,
        "not applied under the revocation in flight: {first:?}"
    );
    assert!(!revoking.is_finished(), "the close is still held at KCP");

    app.sandbox.open_gate(gate);
    let (status, res) = revoking.await.unwrap();

    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    let shown = app.payment(&token, &imp_uid).await;
    let revoked_after_paid = shown["status"] == "cancelled"
        && shown["paid_at"].as_i64().unwrap() > 0
        && shown["cancel_reason"] == "가상계좌 발급취소";
    assert!(!revoked_after_paid, "{shown}");
    assert_eq!(shown["status"], "paid", "{shown}");
    sandbox_notification(&app, &deposit.noti_id, |n| n.acknowledged).await;
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// A deposit notified for an account openport recorded revoked: money the bank should have
/// refused, or a revocation KCP did not make. Acknowledged (nothing a re-send changes), but KCP is
/// asked and the operator is told in the log.
#[tokio::test]
async fn a_deposit_notified_for_a_revoked_account_is_asked_about_and_logged_for_the_operator() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-revoked-deposit", 7000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let (_, res) = revoke(&app, &token, imp_uid).await;
    assert_eq!(res["response"]["status"], "cancelled", "{res}");
    // Consumed by the inquiry.
    let watch = FaultRule::new(paths::INQUIRY, Fault::Delay { ms: 0 });
    app.sandbox.inject(watch);

    assert!(post_notification(&app, &forged(&p, "after-revoke-1", 7000, "00")).await);

    assert!(app.sandbox.armed_faults().is_empty(), "KCP was asked");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "cancelled");
    let logs = crate::helpers::captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains(imp_uid) && l.contains("revoked")),
        "a warning names the payment"
    );
}

/// KCP's notifications of a deposit never reached openport (sent to another receiver here; a
/// sender missing from the allow-list, an outage longer than KCP's re-sends, a wrong URL in KCP's
/// admin): no row names the account, yet the resolver's look at open accounts finds the deposit
/// KCP holds and applies it as a verified notification would.
#[tokio::test]
async fn a_deposit_whose_notifications_never_reached_openport_is_found_by_the_resolver() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-unnotified", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let elsewhere = Receiver::start().await;
    deposit_sent_elsewhere(&app, &p, &elsewhere);
    assert_eq!(recorded_notifications(&app).await, 0);
    let gateway = &app.app.gateway;

    // KCP's own notification and its re-sends get ten minutes first.
    assert_eq!(gateway.check_open_vbanks(100).await.unwrap(), 0);
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    app.advance(601);
    assert_eq!(gateway.check_open_vbanks(100).await.unwrap(), 1);

    let paid = app.payment(&token, imp_uid).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert!(paid["paid_at"].as_i64().unwrap() > 0, "{paid}");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    // Nothing more on later looks.
    app.advance(2 * 3600);
    assert_eq!(gateway.check_open_vbanks(100).await.unwrap(), 0);
    let token = app.token().await;
    assert_eq!(app.payment(&token, imp_uid).await, paid);
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// The same when KCP sends from an address the allow-list lacks: every send is refused (403,
/// nothing recorded) and the sandbox gives up as KCP would, but the resolver finds the deposit.
#[tokio::test]
async fn a_deposit_notified_only_from_an_address_not_allowed_is_still_found_by_the_resolver() {
    let app = spawn_app_with(|c| c.kcp.notify_sources = Some("203.0.113.7".into())).await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-not-allowed", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let deposit = app
        .sandbox
        .deposit(p["pg_tid"].as_str().unwrap(), 7000, "00")
        .unwrap();
    let refused = sandbox_notification(&app, &deposit.noti_id, |n| n.attempts >= 1).await;
    assert_eq!(refused.tries[0].http_status, Some(403));
    assert_eq!(recorded_notifications(&app).await, 0);

    app.advance(601);
    assert_eq!(app.app.gateway.check_open_vbanks(100).await.unwrap(), 1);

    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// An account nobody pays into is asked about hourly until an hour past its deposit deadline, once
/// after it, and never again: the cost is bounded.
#[tokio::test]
async fn an_open_accounts_looks_at_kcp_stop_after_the_one_past_its_deadline() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-unpaid-looks", 7000)).await;
    let tno = p["pg_tid"].as_str().unwrap();
    let gateway = &app.app.gateway;
    let asked = || FaultRule::new(paths::INQUIRY, Fault::Delay { ms: 0 }).when("tno", tno);

    app.advance(601);
    app.sandbox.inject(asked());
    gateway.check_open_vbanks(100).await.unwrap();
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "asked after ten minutes"
    );
    app.sandbox.inject(asked());
    app.advance(1800);
    gateway.check_open_vbanks(100).await.unwrap();
    assert_eq!(
        app.sandbox.armed_faults(),
        [asked()],
        "not again within the hour"
    );
    app.advance(1800);
    gateway.check_open_vbanks(100).await.unwrap();
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "asked again an hour later"
    );

    app.advance(WEEK + 3600);
    app.sandbox.inject(asked());
    gateway.check_open_vbanks(100).await.unwrap();
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "once after the deadline"
    );
    app.sandbox.inject(asked());
    app.advance(WEEK);
    gateway.check_open_vbanks(100).await.unwrap();
    assert_eq!(app.sandbox.armed_faults(), [asked()], "never again");
    let token = app.token().await;
    assert_eq!(
        app.payment(&token, p["imp_uid"].as_str().unwrap()).await["status"],
        "ready"
    );
}

/// Two instances on one database look at the same open accounts at the same moment: each look is
/// taken by one of them, and a deposit found is applied once, with one `paid` webhook.
#[tokio::test]
async fn instances_looking_at_open_accounts_together_apply_a_deposit_once() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-two-looks", &hooks).await;
    let elsewhere = Receiver::start().await;
    deposit_sent_elsewhere(&app, &p, &elsewhere);
    let other = app.another_instance(|_| {}).await;
    app.advance(601);
    other.advance(601);

    let (mine, theirs) = tokio::join!(
        app.app.gateway.check_open_vbanks(100),
        other.app.gateway.check_open_vbanks(100)
    );

    assert_eq!(mine.unwrap() + theirs.unwrap(), 1);
    assert_eq!(
        app.payment(&token, p["imp_uid"].as_str().unwrap()).await["status"],
        "paid"
    );
    other.app.gateway.deliver_due_webhooks(100).await.unwrap();
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// The looks at accounts paid since they were scheduled come due before an open account's (the
/// notifications were heard; nothing deletes their rows then). They used to be taken one by one
/// and count toward the sweep's limit, so with more accounts issued a minute than the limit the
/// open ones were looked at later and later: one pass of a limit below their number now still
/// finds the open account's deposit, and the rows of the paid ones go.
#[tokio::test]
async fn looks_at_paid_accounts_due_first_do_not_hold_back_the_look_at_an_open_one() {
    use sea_orm::{EntityTrait, PaginatorTrait};

    let app = spawn_app().await;
    let token = app.token().await;
    for i in 0..5 {
        let p = issued(
            &app,
            &token,
            vbank(&app, &format!("vb-paid-first-{i}"), 7000),
        )
        .await;
        deposit_until_paid(&app, &token, &p).await;
    }
    app.advance(1);
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-open-behind", &hooks).await;
    let elsewhere = Receiver::start().await;
    deposit_sent_elsewhere(&app, &p, &elsewhere);
    let gateway = &app.app.gateway;
    let looks = || openport::store::entity::vbank_check::Entity::find().count(&gateway.db.read);
    assert_eq!(looks().await.unwrap(), 6, "the paid accounts' rows wait");
    app.advance(601);

    assert_eq!(gateway.check_open_vbanks(3).await.unwrap(), 1);

    let imp_uid = p["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    assert_eq!(looks().await.unwrap(), 1, "the open account's, moved on");
    app.assert_ledger_agrees().await;
}

/// An account paid by its deposit, its look then deleted as no longer open, and the bank takes the
/// deposit back: the reversal makes the account `ready` again and schedules its look anew, so a
/// second deposit whose notifications never reach openport is found by the resolver as a first
/// one is. Without it the account was never looked at again (the w2 open-account looks'
/// leftover).
#[tokio::test]
async fn an_account_a_reversal_makes_ready_again_is_looked_at_again_after_its_look_was_deleted() {
    use sea_orm::{EntityTrait, PaginatorTrait};

    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-ready-again", &hooks).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    deposit_until_paid(&app, &token, &p).await;
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    let gateway = &app.app.gateway;
    let looks = || openport::store::entity::vbank_check::Entity::find().count(&gateway.db.read);
    app.advance(601);
    assert_eq!(gateway.check_open_vbanks(100).await.unwrap(), 0);
    assert_eq!(
        looks().await.unwrap(),
        0,
        "the paid account's look is deleted"
    );
    app.sandbox.deposit(tno, 7000, "13").unwrap();
    until_status(&app, &token, imp_uid, "ready").await;
    assert_eq!(
        webhook_statuses(&app, &hooks).await,
        ["ready", "paid", "ready"]
    );
    let elsewhere = Receiver::start().await;
    deposit_sent_elsewhere(&app, &p, &elsewhere);

    app.advance(601);
    assert_eq!(gateway.check_open_vbanks(100).await.unwrap(), 1);

    let token = app.token().await;
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(
        webhook_statuses(&app, &hooks).await,
        ["ready", "paid", "ready", "paid"]
    );
    app.assert_ledger_agrees().await;
}

/// More looks at accounts no longer open come due at once than one statement deletes (a thousand:
/// a burst of accounts issued and paid, or paid while the resolver was stopped). One pass deletes
/// them all, a statement at a time; it deleted a thousand a pass, and the due list walked past the
/// rest on every pass to reach the open accounts. The open account's deposit is still found.
#[tokio::test]
async fn looks_at_more_accounts_no_longer_open_than_one_statement_deletes_all_go_in_one_pass() {
    use openport::store::entity::payment;
    use sea_orm::{EntityTrait, IdenStatic, Iterable, PaginatorTrait};

    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-burst", 7000)).await;
    deposit_until_paid(&app, &token, &p).await;
    let gateway = &app.app.gateway;
    let now = gateway.clock.unix();
    // 2,500 copies of the paid account, each under a trade of its own (a trade is one payment's:
    // migration 000039), each with a look due now.
    let copied = |c: &str| match c {
        "imp_uid" | "order_no" | "merchant_uid" | "pg_tid" => {
            format!("{c} || '-' || CAST(n.i AS TEXT)")
        }
        _ => c.to_string(),
    };
    let columns: Vec<String> = payment::Column::iter()
        .map(|c| c.as_str().to_string())
        .filter(|c| c != "id")
        .collect();
    let imp_uid = p["imp_uid"].as_str().unwrap();
    crate::helpers::execute(
        &app,
        vec![
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
                 INSERT INTO payments ({}) SELECT {} FROM payments, n WHERE imp_uid = '{imp_uid}'",
                columns.join(", "),
                columns
                    .iter()
                    .map(|c| copied(c))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            format!(
                "INSERT INTO vbank_checks (payment_id, check_at) \
                 SELECT id, {now} FROM payments WHERE imp_uid LIKE '{imp_uid}-%'"
            ),
        ],
    )
    .await;
    let hooks = Receiver::start().await;
    let open = issued_with_hooks(&app, &token, "vb-open-after-burst", &hooks).await;
    let elsewhere = Receiver::start().await;
    deposit_sent_elsewhere(&app, &open, &elsewhere);
    let looks = || openport::store::entity::vbank_check::Entity::find().count(&gateway.db.read);
    assert_eq!(looks().await.unwrap(), 2_502);
    app.advance(601);

    assert_eq!(gateway.check_open_vbanks(100).await.unwrap(), 1);

    assert_eq!(looks().await.unwrap(), 1, "the open account's, moved on");
    let open_imp_uid = open["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, open_imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
}

/// The sweep's two reads of `vbank_checks` (the due looks of any merchant, and the rows of
/// accounts no longer open it deletes) walk its due index and look each row's payment up by its
/// key, so their cost does not grow with the payments.
#[tokio::test]
async fn the_open_account_sweep_reads_through_its_indexes() {
    use openport::store::billing::ServedMerchants;
    use openport::store::vbank_checks;
    use sea_orm::{ConnectionTrait, DbBackend, QueryTrait};

    let app = spawn_app().await;
    let db = &app.app.gateway.db.read;
    let backend = db.get_database_backend();
    let (payment_by_key, reads_payments) = if backend == DbBackend::Postgres {
        (
            "Index Scan using payments_pkey on payments",
            " on payments ",
        )
    } else {
        ("SEARCH payments USING INTEGER PRIMARY KEY", " payments ")
    };
    for query in [
        vbank_checks::due_query(ServedMerchants::All, 1_000, 100).build(backend),
        vbank_checks::delete_stale_query(1_000, 1_000).build(backend),
    ] {
        let plan = crate::helpers::query_plan(db, &query).await;
        assert!(plan.contains("vbank_checks_due"), "{plan}");
        assert!(plan.contains(payment_by_key), "{plan}");
        let reads_more = |l: &str| l.contains(reads_payments) && !l.contains(payment_by_key);
        assert!(!plan.lines().any(reads_more), "{plan}");
        let reads_a_table_whole =
            |l: &str| l.contains("Seq Scan") || l.trim_start().starts_with("SCAN");
        assert!(!plan.lines().any(reads_a_table_whole), "{plan}");
    }
}

/// A KCP common notification of the common fields only (no `noti_id`): `tx_cd` for `tno`.
pub(crate) fn notice(tno: &str, tx_cd: &str) -> Vec<(String, String)> {
    [
        ("site_cd", "T0000"),
        ("tno", tno),
        ("order_no", "x"),
        ("tx_cd", tx_cd),
        ("tx_tm", "20261203120000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The operator closes an unpaid account in KCP's admin and KCP says so (`TX07`, spec §2.12): the
/// payment is recorded revoked (as `DELETE /vbanks` records it: `cancelled`, `cancel_amount` =
/// `amount`, `paid_at` 0) once KCP's inquiry shows it closed, and the merchant hears of it by a
/// `cancelled` webhook, as of any cancel made at KCP (spec §5). A forged notice changes nothing.
#[tokio::test]
async fn kcps_notice_that_it_closed_an_unpaid_account_records_it_revoked_with_a_cancelled_webhook()
{
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-closed-at-kcp", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    assert!(
        post_notification(&app, &notice(tno, "TX07")).await,
        "a forged notice is acknowledged"
    );
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");

    assert!(app.sandbox.cancel_in_admin(tno));
    let mut real = notice(tno, "TX07");
    real[4].1 = "20261203130000".into();
    assert!(post_notification(&app, &real).await);

    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["cancel_amount"].as_i64(),
            shown["paid_at"].as_i64()
        ),
        (Some("cancelled"), Some(7000), Some(0)),
        "{shown}"
    );
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "cancelled"]);
    app.assert_ledger_agrees().await;
}

/// The same close notified as a cancel (`TX06`), or not notified at all: the resolver's look at
/// open accounts finds it closed and records it the same way.
#[tokio::test]
async fn an_unpaid_account_closed_at_kcp_is_recorded_revoked_by_its_cancel_notice_or_by_the_resolver(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-closed-tx06", &hooks).await;
    let tno = p["pg_tid"].as_str().unwrap();
    assert!(app.sandbox.cancel_in_admin(tno));
    assert!(post_notification(&app, &notice(tno, "TX06")).await);
    assert_eq!(
        app.payment(&token, p["imp_uid"].as_str().unwrap()).await["status"],
        "cancelled"
    );
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "cancelled"]);

    let quiet = Receiver::start().await;
    let q = issued_with_hooks(&app, &token, "vb-closed-quietly", &quiet).await;
    assert!(app.sandbox.cancel_in_admin(q["pg_tid"].as_str().unwrap()));
    app.advance(601);
    app.app.gateway.check_open_vbanks(100).await.unwrap();
    let token = app.token().await;
    assert_eq!(
        app.payment(&token, q["imp_uid"].as_str().unwrap()).await["status"],
        "cancelled"
    );
    assert_eq!(webhook_statuses(&app, &quiet).await, ["ready", "cancelled"]);
    app.assert_ledger_agrees().await;
}

/// The buyer pays 1,000 more than the 7,000 due and the bank takes the extra back (`op_cd 13`,
/// `totl_mnyx` 7,000): KCP still holds the account paid in full, as openport does, so the reversal
/// is acknowledged instead of being re-sent (and re-verified) for good. The over-payment is logged.
#[tokio::test]
async fn a_reversal_of_an_extra_deposit_is_acknowledged_and_leaves_the_account_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-extra", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    deposit_until_paid(&app, &token, &p).await;
    let paid = app.payment(&token, imp_uid).await;
    let extra = app.sandbox.deposit(tno, 1000, "00").unwrap();
    sandbox_notification(&app, &extra.noti_id, |n| n.acknowledged).await;

    let reversal = app.sandbox.deposit(tno, 1000, "13").unwrap();

    assert_eq!(reversal.total, 7000);
    let done = sandbox_notification(&app, &reversal.noti_id, |n| n.attempts >= 1).await;
    assert!(done.tries[0].acknowledged, "{done:?}");
    assert_eq!(
        app.payment(&token, imp_uid).await,
        paid,
        "still paid, as it was"
    );
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    let logs = crate::helpers::captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains(imp_uid) && l.contains("over-payment")),
        "the over-payment is named for the operator"
    );
    app.assert_ledger_agrees().await;
}

/// A deposit KCP's inquiry could not confirm until the resolver's sweep, minutes later: `paid_at`
/// is when the buyer paid (the notification's `ipgm_time`, once KCP confirms the deposit), not
/// when openport got round to confirming it; merchants' settlement and "paid within N days" rules
/// read it (spec/iamport-v1.md §3).
#[tokio::test]
async fn a_deposit_applied_by_the_resolvers_sweep_is_paid_at_the_time_of_the_deposit() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let (p, _elsewhere) = deposit_left_unverified(&app, &token, "vb-paid-at", &hooks).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let sent = app.sandbox.notifications()[0].clone();
    let ipgm_time = sent
        .field("ipgm_time")
        .expect("KCP's form carries the deposit time");
    let deposited_at = chrono::NaiveDateTime::parse_from_str(ipgm_time, "%Y%m%d%H%M%S")
        .unwrap()
        .and_local_timezone(chrono::FixedOffset::east_opt(9 * 3600).unwrap())
        .unwrap()
        .timestamp();

    app.advance(160);
    app.app.gateway.reverify_notifications(100).await.unwrap();

    let paid = app.payment(&token, imp_uid).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["paid_at"].as_i64(), Some(deposited_at), "{paid}");
    assert!(deposited_at < app.app.gateway.clock.unix() - 100);
}

/// `GET /payments/status/paid` (and `/all`) find a payment paid in their window through
/// `payments_by_started`, widened by the merchant's largest distance between a payment's start and
/// its payment, which the database keeps (migration 000029: `paid_at` is in no index, so that
/// recording a charge paid stays a heap-only update on PostgreSQL). An account paid six days after
/// it was issued is listed in a window of two minutes around its deposit, and in no earlier one.
#[tokio::test]
async fn an_account_paid_days_after_it_was_issued_is_listed_among_the_payments_paid_in_its_window()
{
    let app = spawn_app().await;
    app.stop_clock();
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-paid-late", 5000)).await;
    app.advance(6 * 24 * 3600);
    let token = app.token().await;
    deposit_until_paid(&app, &token, &p).await;
    let card = app.paid(&token, "card-paid-now", 1000).await;
    let now = app.app.gateway.clock.unix();
    let listed = |status: &'static str, from: i64, to: i64| {
        let app = &app;
        let token = token.clone();
        async move {
            let (code, res) = app
                .get(
                    &format!("/payments/status/{status}?from={from}&to={to}"),
                    Some(&token),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{res}");
            let mut uids: Vec<String> = res["response"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["imp_uid"].as_str().unwrap().to_owned())
                .collect();
            uids.sort();
            assert_eq!(res["response"]["total"], uids.len(), "{res}");
            uids
        }
    };
    let mut both = vec![
        p["imp_uid"].as_str().unwrap().to_owned(),
        card["imp_uid"].as_str().unwrap().to_owned(),
    ];
    both.sort();
    assert_eq!(listed("paid", now - 60, now + 60).await, both);
    assert_eq!(listed("all", now - 60, now + 60).await, both);
    let day = 24 * 3600;
    assert!(listed("paid", now - 3 * day, now - 2 * day)
        .await
        .is_empty());
}

/// An unpaid account closed in KCP's admin: the sandbox posts KCP's own `TX07`, and openport
/// records the account revoked and tells the merchant (`cancelled` webhook), end to end.
#[tokio::test]
async fn an_unpaid_account_closed_in_kcps_admin_is_recorded_revoked_from_kcps_own_tx07() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-admin-tx07", &hooks).await;

    let sent = app
        .sandbox
        .cancel_in_admin_notified(p["pg_tid"].as_str().unwrap())
        .expect("closed and notified");

    assert_eq!(sent.tx_cd, "TX07");
    sandbox_notification(&app, &sent.noti_id, |n| n.acknowledged).await;
    let shown = app.payment(&token, p["imp_uid"].as_str().unwrap()).await;
    assert_eq!(
        (shown["status"].as_str(), shown["paid_at"].as_i64()),
        (Some("cancelled"), Some(0)),
        "{shown}"
    );
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "cancelled"]);
    app.assert_ledger_agrees().await;
}

/// The answer to a revocation of account `imp_uid` that KCP holds no trade for: `code 1` in the
/// operator's wording naming the one conflict listed (KCP's 8201 what the operator reads), never
/// "발급취소에 실패", and the account still `ready`, nothing recorded revoked.
async fn revocation_answered_as_the_operators(
    app: &TestApp,
    token: &str,
    imp_uid: &str,
    (status, body): (StatusCode, Value),
) {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("운영자 확인"), "{body}");
    assert!(!message.contains("실패"), "never a plain failure: {body}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "listed for the operator: {conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert!(
        message.contains(imp_uid) && message.contains(&format!("attempt {}", conflicts[0].id)),
        "{body}"
    );
    assert!(
        conflicts[0]
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("[8201]")),
        "KCP's refusal is what the operator reads: {conflicts:?}"
    );
    let shown = app.payment(token, imp_uid).await;
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_amount"].as_i64()),
        (Some("ready"), Some(0)),
        "{shown}"
    );
}

/// KCP refuses a revocation as "no such trade" (the sandbox's 8201, here a sandbox restarted
/// without its state file: it no longer knows the account it issued) for an account openport
/// holds issued and awaiting its deposit. That is the disagreement a revocation whose answer was
/// lost meets when its inquiry says "no such trade", and it is answered the same way: a conflict
/// listed for the operator, the operator's wording for the merchant. Before, the merchant read
/// "가상계좌 발급취소에 실패하였습니다.(해당 거래가 존재하지 않습니다.)" and nothing was listed.
#[tokio::test]
async fn a_revocation_kcp_refuses_as_no_such_trade_is_listed_for_the_operator_not_answered_as_a_failure(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-unknown-trade", 5000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let app = app.restart(|_| {}).await;
    assert!(
        app.sandbox.ledger().is_empty(),
        "the new sandbox knows no trade"
    );
    let token = app.token().await;

    let answer = revoke(&app, &token, imp_uid).await;

    revocation_answered_as_the_operators(&app, &token, imp_uid, answer).await;
    // Nothing more is sent to KCP for it until the operator has looked.
    let watch = FaultRule::new(paths::CANCEL, Fault::Delay { ms: 0 });
    app.sandbox.inject(watch.clone());
    let (_, again) = revoke(&app, &token, imp_uid).await;
    assert_eq!(again["code"], 1, "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "{again}"
    );
    assert_eq!(app.sandbox.armed_faults(), [watch], "no close reached KCP");
    assert_eq!(app.conflicts().await.len(), 1, "listed once");
}

/// KCP's close says "no such trade" while its inquiry shows the account closed: this revocation
/// (or one before it) applied, so it is recorded revoked (`code 0`, `cancelled`), as a lost
/// revocation answer is. While the inquiry shows the account open, KCP contradicts itself: the
/// operator's, answered as such, and the account stays ready.
#[tokio::test]
async fn a_no_such_trade_refusal_of_a_revocation_is_recorded_when_kcp_holds_the_account_closed_and_the_operators_otherwise(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let refuse_as_unknown = || {
        app.sandbox.inject(FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8201".into(),
                message: "해당 거래가 존재하지 않습니다.".into(),
            },
        ))
    };
    let closed = issued(&app, &token, vbank(&app, "vb-unknown-closed", 5000)).await;
    let open = issued(&app, &token, vbank(&app, "vb-unknown-open", 6000)).await;

    assert!(app
        .sandbox
        .cancel_in_admin(closed["pg_tid"].as_str().unwrap()));
    refuse_as_unknown();
    let (status, res) = revoke(&app, &token, closed["imp_uid"].as_str().unwrap()).await;
    assert_eq!((status, &res["code"]), (StatusCode::OK, &json!(0)), "{res}");
    assert_eq!(
        (
            res["response"]["status"].as_str(),
            res["response"]["cancel_amount"].as_i64()
        ),
        (Some("cancelled"), Some(5000)),
        "{res}"
    );
    assert!(app.conflicts().await.is_empty());

    refuse_as_unknown();
    let imp_uid = open["imp_uid"].as_str().unwrap();
    let answer = revoke(&app, &token, imp_uid).await;
    revocation_answered_as_the_operators(&app, &token, imp_uid, answer).await;
    let at_kcp = app
        .sandbox
        .ledger()
        .into_iter()
        .find(|t| t.tno == open["pg_tid"].as_str().unwrap())
        .unwrap();
    assert_eq!(at_kcp.state, TransactionState::Issued, "{at_kcp:?}");
}

/// Review rK F2: an 8-digit `YYYYMMDD` `vbank_due` (20261210) is Unix seconds in 1970, and was
/// refused as "not after now" only. The refusal keeps its words and adds that the number was read
/// as Unix seconds and looks like a `YYYYMMDD` date, naming it; a `YYYYMMDDHHmm` one (F1, over 10
/// digits) names the date it looks like too. Nothing is written or sent to KCP.
#[tokio::test]
async fn a_vbank_due_written_as_a_date_is_refused_naming_the_date_it_looks_like() {
    let app = spawn_app().await;
    let token = app.token().await;
    let refusal = openport::domain::vbank::DueRefused.to_string();
    for (i, (due, form, date)) in [
        (20_261_210_i64, "YYYYMMDD", "2026-12-10"),
        (202_612_101_000, "YYYYMMDDHHmm", "2026-12-10 10:00"),
        (20_261_210_100_000, "YYYYMMDDHHmmss", "2026-12-10 10:00:00"),
    ]
    .into_iter()
    .enumerate()
    {
        let merchant_uid = format!("vb-due-dated-{i}");
        let mut body = vbank(&app, &merchant_uid, 5000);
        body["vbank_due"] = json!(due);
        let (status, res) = app.post("/vbanks", Some(&token), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{due}: {res}");
        assert_eq!(res["code"], -1, "{due}: {res}");
        let message = res["message"].as_str().unwrap();
        for said in ["Unix", form, date] {
            assert!(message.contains(said), "{said}: {message}");
        }
        if i == 0 {
            assert!(message.starts_with(&refusal), "{message}");
            assert!(message.contains("1970"), "{message}");
        }
    }
    let payments = openport::store::payments::all_payments(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert!(payments.is_empty(), "{payments:?}");
    assert!(app.sandbox.ledger().is_empty());
}

/// Review rK F6: `POST /payments/cancel` on an account still waiting for its deposit answered only
/// "결제완료 상태의 결제건만 취소할 수 있습니다.", leaving the merchant to find how an unpaid
/// account is closed. The answer keeps its code and words and adds `DELETE /vbanks/{imp_uid}`;
/// the account stays `ready`.
#[tokio::test]
async fn cancelling_an_unpaid_account_says_it_is_closed_with_delete_vbanks() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-cancel-ready", 5000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let (status, res) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "reason": "주문 취소"}),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["code"], 1, "{res}");
    let message = res["message"].as_str().unwrap();
    assert!(
        message.starts_with("결제완료 상태의 결제건만 취소할 수 있습니다."),
        "{message}"
    );
    assert!(message.contains("DELETE /vbanks/"), "{message}");
    assert!(message.contains(imp_uid), "{message}");
    let (_, shown) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
    assert_eq!(shown["response"]["status"], "ready", "{shown}");
}
