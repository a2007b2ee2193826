//! Escrow deliveries (`/escrows/logis/{imp_uid}`) against the sandbox's shipping start (`STE1`):
//! a change after registration, and a shipping start whose answer was lost; escrow cancels
//! (`STE2` before the shipping start, `STE4` after, never partial).
use kcp_sandbox::{paths, Fault, FaultRule};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::checkout::request_pay;
use crate::helpers::{captured_logs, spawn_app, spawn_app_with, TestApp, SETTLE_SECS};

/// A card escrow payment through the window: its imp_uid, KCP's tno and a token.
async fn escrow_payment(app: &TestApp, merchant_uid: &str) -> (String, String, String) {
    let rsp = request_pay(
        app,
        json!({"pay_method": "card", "merchant_uid": merchant_uid, "amount": 2000, "escrow": true, "buyer_name": "홍길동",
               "kcpProducts": [{"orderNumber": "o1", "name": "양말", "quantity": 2, "amount": 1000}]}),
        &[("card_no", "4111111111111111"), ("card_expiry", "3112"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
    let token = app.token().await;
    let imp_uid = rsp["imp_uid"].as_str().unwrap().to_owned();
    let tno = app.payment(&token, &imp_uid).await["pg_tid"]
        .as_str()
        .unwrap()
        .to_owned();
    (imp_uid, tno, token)
}

fn logis(company: &str, invoice: &str) -> Value {
    json!({"logis": {"company": company, "invoice": invoice, "sent_at": 1795000000}})
}

fn path(imp_uid: &str) -> String {
    format!("/escrows/logis/{imp_uid}")
}

/// The registered delivery, or null when none is: iamport's 409 `등록된 배송정보가 존재하지
/// 않습니다.`.
async fn lookup(app: &TestApp, token: &str, imp_uid: &str) -> Value {
    let (status, body) = app.get(&path(imp_uid), Some(token)).await;
    if status == StatusCode::CONFLICT {
        assert_eq!(
            body["message"], "등록된 배송정보가 존재하지 않습니다.",
            "{body}"
        );
        assert!(body["response"].is_null(), "{body}");
        return Value::Null;
    }
    assert_eq!(status, StatusCode::OK, "{body}");
    body["response"].clone()
}

/// The carrier and waybill the sandbox (KCP) holds for `tno`.
fn held_at_kcp(app: &TestApp, tno: &str) -> Option<(String, String)> {
    app.sandbox
        .escrow_shipment(tno)
        .map(|s| (s.deli_corp, s.deli_numb))
}

fn held(company: &str, invoice: &str) -> Option<(String, String)> {
    Some((company.to_owned(), invoice.to_owned()))
}

fn lose_the_next_shipping_start(app: &TestApp) {
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse).when("mod_type", "STE1"));
}

#[tokio::test]
async fn a_put_after_a_post_changes_the_delivery_and_the_lookup_shows_the_new_one() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-put").await;
    let (_, posted) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(posted["code"], 0, "{posted}");
    assert_eq!(
        posted["response"]["pg_logis"],
        json!({"company": "CJ대한통운", "invoice": "111", "confirmed": true})
    );

    let (status, put) = app
        .put(&path(&imp_uid), &token, logis("한진택배", "222"))
        .await;

    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["code"], 0, "{put}");
    assert_eq!(put["response"]["company"], "한진택배", "{put}");
    assert_eq!(put["response"]["invoice"], "222", "{put}");
    let now = lookup(&app, &token, &imp_uid).await;
    assert_eq!(now["company"], "한진택배", "{now}");
    assert_eq!(now["invoice"], "222", "{now}");
    // KCP has no call that changes a shipping start: it keeps the first, and openport says so.
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "111"));
    assert_eq!(
        now["pg_logis"],
        json!({"company": "CJ대한통운", "invoice": "111", "confirmed": true}),
        "{now}"
    );
}

#[tokio::test]
async fn a_delivery_kcp_could_not_take_is_400_for_a_post_and_for_a_put_alike() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-bad").await;
    let with = |field: &str, value: Value| {
        let mut body = logis("CJ대한통운", "630012345678");
        body["logis"][field] = value;
        body
    };
    let bad = [
        with("invoice", json!("a,b;c|d")),
        with("invoice", json!("9".repeat(101))),
        with("company", json!("<script>")),
        with("company", json!("C".repeat(101))),
        with("sent_at", json!(-99_999_999_999i64)),
        with("sent_at", json!(0)),
        with("receiving_at", json!("not-a-date")),
        with("receiving_at", json!("20261340")),
    ];
    for body in &bad {
        let (status, answer) = app.post(&path(&imp_uid), Some(&token), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "POST {body}: {answer}");
    }
    assert_eq!(held_at_kcp(&app, &tno), None, "nothing sent to KCP");
    let (_, posted) = app
        .post(
            &path(&imp_uid),
            Some(&token),
            with("receiving_at", json!("20261224")),
        )
        .await;
    assert_eq!(posted["code"], 0, "{posted}");
    for body in &bad {
        let (status, answer) = app.put(&path(&imp_uid), &token, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "PUT {body}: {answer}");
    }
    assert_eq!(
        lookup(&app, &token, &imp_uid).await["invoice"],
        "630012345678",
        "the registered delivery is unchanged"
    );
}

/// A `sent_at` computed from a clock with fractions (`time.time()`) was a 400; it is floored on a
/// POST and a PUT alike, and one that floors to 0 is still refused.
#[tokio::test]
async fn a_sent_at_with_a_fraction_of_a_second_is_floored_on_a_post_and_a_put() {
    let app = spawn_app().await;
    let (imp_uid, _, token) = escrow_payment(&app, "esc-frac").await;
    let mut body = logis("CJ대한통운", "333");
    body["logis"]["sent_at"] = json!(0.5);
    let (status, answer) = app.post(&path(&imp_uid), Some(&token), body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    body["logis"]["sent_at"] = json!(1_795_000_000.5);
    let (_, posted) = app.post(&path(&imp_uid), Some(&token), body.clone()).await;
    assert_eq!(posted["code"], 0, "{posted}");
    assert_eq!(posted["response"]["sent_at"], 1_795_000_000, "{posted}");
    body["logis"]["sent_at"] = json!("1795000100.9");
    let (status, put) = app.put(&path(&imp_uid), &token, body).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(
        lookup(&app, &token, &imp_uid).await["sent_at"],
        1_795_000_100
    );
}

#[tokio::test]
async fn a_put_before_any_post_is_refused_with_409_and_registers_nothing() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-put-first").await;

    let (status, body) = app
        .put(&path(&imp_uid), &token, logis("CJ대한통운", "111"))
        .await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["message"], "등록된 배송정보가 존재하지 않습니다.");
    assert_eq!(lookup(&app, &token, &imp_uid).await, Value::Null);
    assert_eq!(held_at_kcp(&app, &tno), None);
}

#[tokio::test]
async fn a_post_retried_after_a_lost_shipping_start_answer_ends_registered() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-lost").await;
    lose_the_next_shipping_start(&app);
    let (status, first) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["code"], 1, "{first}");
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "111"));
    // openport does not know KCP took it, so it claims no delivery yet.
    assert_eq!(lookup(&app, &token, &imp_uid).await, Value::Null);

    let (status, retried) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;

    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["code"], 0, "{retried}");
    assert_eq!(retried["response"]["invoice"], "111", "{retried}");
    let now = lookup(&app, &token, &imp_uid).await;
    assert_eq!(now["invoice"], "111", "{now}");
    // KCP answered "already registered": the waybill is the lost request's, not confirmed by KCP.
    assert_eq!(
        now["pg_logis"],
        json!({"company": "CJ대한통운", "invoice": "111", "confirmed": false}),
        "{now}"
    );
    let (status, again) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
}

#[tokio::test]
async fn a_retried_post_with_another_waybill_is_registered_and_says_kcp_holds_the_lost_one() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-lost-other").await;
    lose_the_next_shipping_start(&app);
    let (_, first) = app
        .post(
            &path(&imp_uid),
            Some(&token),
            logis("CJ대한통운", "630012345678"),
        )
        .await;
    assert_eq!(first["code"], 1, "{first}");

    let (_, retried) = app
        .post(
            &path(&imp_uid),
            Some(&token),
            logis("한진택배", "640123987650"),
        )
        .await;

    assert_eq!(retried["code"], 0, "{retried}");
    assert_eq!(retried["response"]["company"], "한진택배", "{retried}");
    assert_eq!(retried["response"]["invoice"], "640123987650", "{retried}");
    assert_eq!(
        retried["response"]["pg_logis"],
        json!({"company": "CJ대한통운", "invoice": "630012345678", "confirmed": false}),
        "{retried}"
    );
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "630012345678"));
    let logs = captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains(&imp_uid)
            && l.contains("KCP holds another waybill")),
        "a warning names the payment"
    );
    assert!(
        !logs.contains("640123987650"),
        "waybill numbers lead to the buyer's address and are not logged"
    );
}

#[tokio::test]
async fn a_shipping_start_kcp_refuses_registers_nothing_and_a_later_post_is_confirmed() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-refused").await;
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8888".into(),
                message: "처리 불가".into(),
            },
        )
        .when("mod_type", "STE1"),
    );
    let (_, refused) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(refused["code"], 1, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("[8888]"),
        "{refused}"
    );
    assert_eq!(lookup(&app, &token, &imp_uid).await, Value::Null);
    assert_eq!(held_at_kcp(&app, &tno), None);

    let (_, posted) = app
        .post(&path(&imp_uid), Some(&token), logis("한진택배", "222"))
        .await;

    assert_eq!(posted["code"], 0, "{posted}");
    assert_eq!(
        posted["response"]["pg_logis"],
        json!({"company": "한진택배", "invoice": "222", "confirmed": true}),
        "{posted}"
    );
    assert_eq!(held_at_kcp(&app, &tno), held("한진택배", "222"));
}

#[tokio::test]
async fn a_put_after_a_lost_shipping_start_answer_is_refused_until_the_post_is_retried() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-lost-put").await;
    lose_the_next_shipping_start(&app);
    let (_, first) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(first["code"], 1, "{first}");

    let (status, put) = app
        .put(&path(&imp_uid), &token, logis("CJ대한통운", "111"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{put}");

    let (_, retried) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(retried["code"], 0, "{retried}");
    let (_, put) = app
        .put(&path(&imp_uid), &token, logis("CJ대한통운", "112"))
        .await;
    assert_eq!(put["code"], 0, "{put}");
    let now = lookup(&app, &token, &imp_uid).await;
    assert_eq!(now["invoice"], "112", "{now}");
    assert_eq!(now["pg_logis"]["invoice"], "111", "{now}");
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "111"));
}

#[tokio::test]
async fn a_cancelled_escrow_payment_takes_no_delivery_and_no_change() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-cancelled").await;
    let (_, posted) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(posted["code"], 0, "{posted}");
    let cancelled = cancel(&app, &token, json!({"imp_uid": imp_uid, "reason": "반품"})).await;
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    // Shipped: cancelled at KCP with the escrow cancel after shipping (spec/kcp.md §2.11).
    assert_eq!(kcp_cancels(&app, &tno), vec![("STE4".to_owned(), 2000)]);

    let (status, put) = app
        .put(&path(&imp_uid), &token, logis("CJ대한통운", "112"))
        .await;

    assert_eq!(status, StatusCode::CONFLICT, "{put}");
    assert_eq!(lookup(&app, &token, &imp_uid).await["invoice"], "111");
}

/// The cancels the sandbox (KCP) recorded on `tno`: mod_type and amount.
pub(crate) fn kcp_cancels(app: &TestApp, tno: &str) -> Vec<(String, i64)> {
    app.sandbox
        .ledger()
        .into_iter()
        .find(|e| e.tno == tno)
        .expect("KCP approved it")
        .cancels
        .into_iter()
        .map(|c| (c.mod_type, c.amount))
        .collect()
}

#[tokio::test]
async fn a_full_cancel_before_shipping_is_kcps_ste2_and_cancels_the_payment() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-ste2").await;

    let cancelled = cancel(
        &app,
        &token,
        json!({"imp_uid": imp_uid, "reason": "단순변심"}),
    )
    .await;

    assert_eq!(cancelled["code"], 0, "{cancelled}");
    assert_eq!(cancelled["response"]["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["response"]["cancel_amount"], 2000, "{cancelled}");
    assert_eq!(kcp_cancels(&app, &tno), vec![("STE2".to_owned(), 2000)]);
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "cancelled");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_partial_cancel_of_an_escrow_payment_is_refused_before_kcp_and_shipping_stays_open() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-partial").await;

    let refused = cancel(
        &app,
        &token,
        json!({"imp_uid": imp_uid, "amount": 500, "reason": "일부 반품"}),
    )
    .await;

    assert_eq!(refused["code"], 1, "{refused}");
    assert!(refused["response"].is_null(), "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("에스크로 결제는 부분취소할 수 없습니다"),
        "{refused}"
    );
    assert_eq!(kcp_cancels(&app, &tno), vec![], "nothing reached KCP");
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(
        (p["status"].as_str(), p["cancel_amount"].as_i64()),
        (Some("paid"), Some(0)),
        "{p}"
    );
    let (_, posted) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(
        posted["code"], 0,
        "shipping can still be registered: {posted}"
    );
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "111"));
    // A partial cancel after shipping is refused too; the full cancel is then STE4.
    let refused = cancel(
        &app,
        &token,
        json!({"imp_uid": imp_uid, "amount": 500, "checksum": 2000}),
    )
    .await;
    assert_eq!(refused["code"], 1, "{refused}");
    let cancelled = cancel(&app, &token, json!({"imp_uid": imp_uid})).await;
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    assert_eq!(kcp_cancels(&app, &tno), vec![("STE4".to_owned(), 2000)]);
}

#[tokio::test]
async fn a_cancel_while_a_shipping_start_is_unanswered_is_refused_until_a_retry_settles_it() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-unanswered").await;
    lose_the_next_shipping_start(&app);
    let (_, lost) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(lost["code"], 1, "{lost}");

    let refused = cancel(&app, &token, json!({"imp_uid": imp_uid})).await;
    assert_eq!(refused["code"], 1, "{refused}");
    assert_eq!(kcp_cancels(&app, &tno), vec![], "nothing reached KCP");

    let (_, retried) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(retried["code"], 0, "{retried}");
    let cancelled = cancel(&app, &token, json!({"imp_uid": imp_uid})).await;
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    assert_eq!(kcp_cancels(&app, &tno), vec![("STE4".to_owned(), 2000)]);
}

/// A merchant whose HTTP client gives up before KCP answers the shipping start hangs up on the
/// POST; openport finishes the call anyway (the handler runs it in a spawned task, as every
/// handler that calls KCP does) and records KCP's answer. Were the call dropped with the
/// connection, the record would stay unanswered and every cancel be refused until a retried POST.
#[tokio::test]
async fn a_post_whose_client_hangs_up_before_kcp_answers_is_still_registered_and_cancellable() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-hangup").await;
    let delay = std::time::Duration::from_millis(800);
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Delay {
                ms: delay.as_millis() as u64,
            },
        )
        .when("mod_type", "STE1"),
    );

    let sent = app
        .http
        .post(app.url(&path(&imp_uid)))
        .header("Authorization", &token)
        .json(&logis("CJ대한통운", "111"))
        .timeout(std::time::Duration::from_millis(200))
        .send()
        .await;
    assert!(
        sent.as_ref().is_err_and(|e| e.is_timeout()),
        "the client gave up: {sent:?}"
    );
    app.until_the_faults_are_used().await;
    tokio::time::sleep(delay).await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let registered = loop {
        let now = lookup(&app, &token, &imp_uid).await;
        if !now.is_null() || tokio::time::Instant::now() >= deadline {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        registered["pg_logis"],
        json!({"company": "CJ대한통운", "invoice": "111", "confirmed": true}),
        "{registered}"
    );
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "111"));
    let cancelled = cancel(&app, &token, json!({"imp_uid": imp_uid})).await;
    assert!(
        !cancelled["message"]
            .as_str()
            .unwrap_or_default()
            .contains("배송등록 결과를 확인하지 못해"),
        "{cancelled}"
    );
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    assert_eq!(kcp_cancels(&app, &tno), vec![("STE4".to_owned(), 2000)]);
}

/// POST A's shipping start is accepted by KCP but its answer is slow; meanwhile POST B's is
/// answered "already held" (8502), which registers B, and a PUT changes the delivery to C. A's
/// late success must not write over that: the delivery stays C, KCP's copy becomes A confirmed,
/// and A is answered 409 as any POST on a registered delivery, so only one POST was told
/// "registered" and the PUT is not lost.
#[tokio::test]
async fn a_shipping_start_answered_after_another_post_and_a_put_registered_keeps_the_delivery_they_left(
) {
    let app = spawn_app_with(|c| {
        c.resolver.settle_secs = 60;
        c.kcp.timeout_ms = 9_000;
    })
    .await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-late-answer").await;
    let gate = "ste1-late";
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::HoldAnswer { gate: gate.into() })
            .when("deli_numb", "111"),
    );
    let first = {
        let request = app
            .http
            .post(app.url(&path(&imp_uid)))
            .header("Authorization", &token)
            .json(&logis("CJ대한통운", "111"));
        tokio::spawn(async move { TestApp::read(request.send().await.expect("post")).await })
    };
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.sandbox.until_held(gate),
    )
    .await
    .expect("the first shipping start reached KCP");
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "111"));

    let (status, second) = app
        .post(&path(&imp_uid), Some(&token), logis("한진택배", "222"))
        .await;
    assert_eq!(
        (status, &second["code"]),
        (StatusCode::OK, &json!(0)),
        "{second}"
    );
    assert_eq!(
        second["response"]["pg_logis"],
        json!({"company": "CJ대한통운", "invoice": "111", "confirmed": false}),
        "{second}"
    );
    let (status, put) = app
        .put(&path(&imp_uid), &token, logis("롯데택배", "333"))
        .await;
    assert_eq!((status, &put["code"]), (StatusCode::OK, &json!(0)), "{put}");

    app.sandbox.open_gate(gate);
    let (status, late) = first.await.unwrap();

    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "one POST alone is registered: {late}"
    );
    let now = lookup(&app, &token, &imp_uid).await;
    assert_eq!(
        (&now["company"], &now["invoice"]),
        (&json!("롯데택배"), &json!("333")),
        "the PUT stands: {now}"
    );
    assert_eq!(
        now["pg_logis"],
        json!({"company": "CJ대한통운", "invoice": "111", "confirmed": true}),
        "KCP's answer makes its copy known: {now}"
    );
    assert_eq!(held_at_kcp(&app, &tno), held("CJ대한통운", "111"));
}

/// Sends a cancel of `imp_uid` in the background, its escrow status change (`mod_type`) held at
/// KCP unprocessed on `gate` until the test opens it: a cancel in flight.
async fn cancel_held_at_kcp(
    app: &TestApp,
    token: &str,
    imp_uid: &str,
    mod_type: &str,
    gate: &str,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::HoldRequest { gate: gate.into() })
            .when("mod_type", mod_type),
    );
    let request = app
        .http
        .post(app.url("/payments/cancel"))
        .header("Authorization", token)
        .json(&json!({"imp_uid": imp_uid, "reason": "단순변심"}));
    let cancel =
        tokio::spawn(async move { TestApp::read(request.send().await.expect("cancel")).await });
    app.sandbox.until_held(gate).await;
    cancel
}

/// A shipping start (`STE1`) sent while a full cancel planned as `STE2` is on its way to KCP
/// raced it there, and KCP refused whichever came second (r5-billing, "Escrow"). POST is refused
/// while the cancel is open, before anything is recorded or sent.
#[tokio::test]
async fn a_delivery_posted_while_a_cancel_is_at_kcp_is_refused_and_nothing_is_sent() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-racing").await;
    let cancel = cancel_held_at_kcp(&app, &token, &imp_uid, "STE2", "esc-cancel").await;

    let (status, posted) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;

    assert_eq!(status, StatusCode::OK, "{posted}");
    assert_eq!(posted["code"], 1, "{posted}");
    assert!(
        posted["message"]
            .as_str()
            .unwrap()
            .contains("처리 중인 취소 요청"),
        "{posted}"
    );
    app.sandbox.open_gate("esc-cancel");
    let (_, cancelled) = cancel.await.unwrap();
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    assert_eq!(cancelled["response"]["status"], "cancelled", "{cancelled}");
    assert_eq!(kcp_cancels(&app, &tno), vec![("STE2".to_owned(), 2000)]);
    assert_eq!(
        held_at_kcp(&app, &tno),
        None,
        "no shipping start reached KCP"
    );
    assert_eq!(lookup(&app, &token, &imp_uid).await, Value::Null);
}

/// PUT, which changes openport's record only, is refused the same way while a cancel (here the
/// `STE4` of a shipped payment) is open: the delivery stays as registered.
#[tokio::test]
async fn a_delivery_changed_while_a_cancel_is_at_kcp_is_refused_and_stays_as_registered() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-racing-put").await;
    let (_, posted) = app
        .post(&path(&imp_uid), Some(&token), logis("CJ대한통운", "111"))
        .await;
    assert_eq!(posted["code"], 0, "{posted}");
    let cancel = cancel_held_at_kcp(&app, &token, &imp_uid, "STE4", "esc-cancel-put").await;

    let (status, put) = app
        .put(&path(&imp_uid), &token, logis("CJ대한통운", "112"))
        .await;

    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["code"], 1, "{put}");
    assert!(
        put["message"]
            .as_str()
            .unwrap()
            .contains("처리 중인 취소 요청"),
        "{put}"
    );
    assert_eq!(lookup(&app, &token, &imp_uid).await["invoice"], "111");
    app.sandbox.open_gate("esc-cancel-put");
    let (_, cancelled) = cancel.await.unwrap();
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    assert_eq!(kcp_cancels(&app, &tno), vec![("STE4".to_owned(), 2000)]);
}

/// `POST /payments/cancel` with `body`, as the merchant's server sends it: the answer's body.
async fn cancel(
    app: &crate::helpers::TestApp,
    token: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    app.post("/payments/cancel", Some(token), body).await.1
}

// ----- an escrow cancel KCP refuses: the plain STSC after it (service/cancel.rs `cancel_at_kcp`) --

/// Records payment `imp_uid` as escrow in openport only, whatever KCP holds: the state an escrow
/// trade KCP approved as plain leaves when recording it as plain failed.
pub(crate) async fn record_as_escrow(app: &TestApp, imp_uid: &str) {
    use openport::store::entity::payment;
    use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
    let written = payment::Entity::update_many()
        .col_expr(payment::Column::Escrow, Expr::value(true))
        .filter(payment::Column::ImpUid.eq(imp_uid))
        .exec(&app.app.gateway.db.write)
        .await
        .unwrap();
    assert_eq!(written.rows_affected, 1);
}

/// A rule refusing any `STSC` (`9999`): armed, it shows that none was sent.
pub(crate) fn refuse_stsc() -> FaultRule {
    FaultRule::new(
        paths::CANCEL,
        Fault::Refuse {
            code: "9999".into(),
            message: "STSC must not be sent".into(),
        },
    )
    .when("mod_type", "STSC")
}

/// A card payment KCP approved as a plain trade through the window, recorded in openport as
/// escrow: what an escrow window KCP approved as plain leaves when recording it as plain failed
/// (service/checkout.rs `escrow_as_kcp_holds`). KCP (the sandbox) refuses its escrow status
/// changes (`8501`, not an escrow trade) and takes its `STSC`. Its imp_uid, tno and a token.
async fn escrow_held_plain_at_kcp(app: &TestApp, merchant_uid: &str) -> (String, String, String) {
    let rsp = request_pay(
        app,
        json!({"pay_method": "card", "merchant_uid": merchant_uid, "amount": 2000}),
        &[
            ("card_no", "4111111111111111"),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
    )
    .await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
    let imp_uid = rsp["imp_uid"].as_str().unwrap().to_owned();
    record_as_escrow(app, &imp_uid).await;
    let token = app.token().await;
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["escrow"], true, "{p}");
    let tno = p["pg_tid"].as_str().unwrap().to_owned();
    (imp_uid, tno, token)
}

/// The one open attempt (a cancel), read from the database.
pub(crate) async fn the_open_cancel_attempt(
    app: &TestApp,
) -> openport::store::entity::pg_attempt::Model {
    let gateway = &app.app.gateway;
    let open = gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let attempt = openport::store::payments::attempt_by_id(&gateway.db.read, open[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempt.kind, "cancel");
    attempt
}

/// KCP applies the cancel it held at `gate`; a settle delay after it the resolver records what
/// KCP holds: the payment as shown then.
async fn applied_at_kcp_then_resolved(
    app: &TestApp,
    token: &str,
    imp_uid: &str,
    tno: &str,
    gate: &str,
    settle: i64,
) -> serde_json::Value {
    app.sandbox.open_gate(gate);
    until_cancelled_at_kcp(app, tno).await;
    app.advance(settle);
    app.resolve_all().await;
    app.payment(token, imp_uid).await
}

/// Waits (up to 2 s) until KCP holds `tno` cancelled.
pub(crate) async fn until_cancelled_at_kcp(app: &TestApp, tno: &str) {
    // Up to 30 s: a loaded machine only makes the test slower, never wrong.
    for _ in 0..1500 {
        if !kcp_cancels(app, tno).is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("KCP never cancelled {tno}");
}

/// KCP refuses the escrow status change of a trade it holds as a plain one: the cancel is sent
/// again as `STSC`, once, and the payment is cancelled.
#[tokio::test]
async fn an_escrow_cancel_kcp_refuses_for_a_trade_it_holds_plain_is_sent_again_as_stsc() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_held_plain_at_kcp(&app, "esc-plain-at-kcp").await;

    let res = cancel(&app, &token, json!({"imp_uid": imp_uid})).await;

    assert_eq!(res["code"], 0, "{res}");
    assert_eq!(res["response"]["status"], "cancelled", "{res}");
    assert_eq!(kcp_cancels(&app, &tno), vec![("STSC".to_owned(), 2000)]);
    app.assert_ledger_agrees().await;
}

/// The escrow refusal arrives late (KCP's answer held while the clock moves on, within the
/// attempt's lease), and KCP applies the `STSC` sent after it only once openport stopped waiting
/// for its answer: the cancel attempt is not due for the resolver before a settle delay after the
/// `STSC` was sent. Sent inside one connector call on the lease of the first (r3 F1), the attempt
/// stayed due a settle delay after its creation: the resolver asked KCP while KCP still held the
/// STSC, found the trade approved and recorded the cancel as not made ("결제취소에 실패"), while
/// KCP then cancelled it. The refusal is held on a gate, not slowed by a timer: a slow answer a
/// little short of the KCP timeout turned into a timeout whenever the test's one thread stalled.
#[tokio::test]
async fn a_cancel_sent_again_as_stsc_is_not_due_for_the_resolver_before_a_settle_delay_after_the_stsc(
) {
    // Over the resolver's first backoff (10 s), as production's 120 s is.
    const SETTLE: i64 = 30;
    // How late the refusal arrives: the STSC goes out in a later Unix second than the attempt was
    // created in, within the attempt's lease (6 s in tests).
    const LATE: i64 = 3;
    let app = spawn_app_with(|c| c.resolver.settle_secs = SETTLE).await;
    let (imp_uid, tno, token) = escrow_held_plain_at_kcp(&app, "esc-slow-refusal").await;
    let (refusal, stsc) = ("escrow-slow-refusal", "escrow-fallback-stsc-late");
    hold_escrow_answer_then_stsc(&app, "STE2", refusal, stsc);
    let cancelling = app.cancel_in_background(&token, &imp_uid, 2000);
    app.sandbox.until_held(refusal).await;
    app.stop_clock();
    app.advance(LATE);
    let refused_at = app.app.gateway.clock.unix();
    app.sandbox.open_gate(refusal);

    let (status, res) = cancelling.await.unwrap();

    crate::helpers::assert_code_1_saying(
        status,
        &res,
        "PG사 취소 응답을 확인하지 못했습니다",
        "answered unknown",
    );
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "the refusal was late, the STSC held"
    );
    let gateway = &app.app.gateway;
    let attempt = the_open_cancel_attempt(&app).await;
    // The STSC went out after the refusal, seconds after the attempt was created.
    assert!(
        attempt.next_check_at >= refused_at + SETTLE,
        "not due before a settle delay after the STSC: {attempt:?}"
    );

    // A settle delay after the attempt's creation, KCP still holding the STSC: nothing is due.
    app.advance(attempt.created_at + SETTLE - gateway.clock.unix());
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 0, "nothing due yet");
    assert!(kcp_cancels(&app, &tno).is_empty());

    // KCP applies the STSC; a settle delay after it, the resolver finds the trade cancelled.
    let shown = applied_at_kcp_then_resolved(&app, &token, &imp_uid, &tno, stsc, SETTLE).await;
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_amount"].as_i64()),
        (Some("cancelled"), Some(2000)),
        "{shown}"
    );
    assert_eq!(kcp_cancels(&app, &tno), vec![("STSC".to_owned(), 2000)]);
    app.assert_ledger_agrees().await;
}

/// Holds KCP's answer to the escrow cancel `escrow_mod_type` at gate `answer` and the plain `STSC`
/// openport sends after KCP refuses it at gate `stsc` (its request, so KCP has not applied it).
fn hold_escrow_answer_then_stsc(app: &TestApp, escrow_mod_type: &str, answer: &str, stsc: &str) {
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::HoldAnswer {
                gate: answer.into(),
            },
        )
        .when("mod_type", escrow_mod_type),
    );
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::HoldRequest { gate: stsc.into() })
            .when("mod_type", "STSC"),
    );
}

/// The revocation of an escrow account KCP holds as a plain one: `STE5` refused, then `STSC`,
/// the attempt renewed between the two. KCP's refusal arrives late (its answer held while the
/// clock moves on, within the attempt's lease) and the `STSC` is applied only after openport
/// stopped waiting: the attempt is not due before a settle delay after the `STSC`. Renewed only
/// before the `STE5` (53b0466), it was due a settle delay after that first call.
#[tokio::test]
async fn an_escrow_revocation_sent_again_as_stsc_is_not_due_before_a_settle_delay_after_the_stsc() {
    const SETTLE: i64 = 30;
    const LATE: i64 = 3;
    let app = spawn_app_with(|c| c.resolver.settle_secs = SETTLE).await;
    let token = app.token().await;
    let (status, issued) = app
        .post(
            "/vbanks",
            Some(&token),
            json!({"merchant_uid": "esc-vb-plain", "amount": 5000, "vbank_code": "004",
                   "vbank_due": app.app.gateway.clock.unix() + 7 * 24 * 3600,
                   "name": "가상계좌 상품", "buyer_name": "홍길동", "buyer_email": "buyer@example.com",
                   "buyer_tel": "010-1234-5678"}),
        )
        .await;
    assert_eq!(
        (status, issued["code"].as_i64()),
        (StatusCode::OK, Some(0)),
        "{issued}"
    );
    let imp_uid = issued["response"]["imp_uid"].as_str().unwrap().to_owned();
    let tno = issued["response"]["pg_tid"].as_str().unwrap().to_owned();
    record_as_escrow(&app, &imp_uid).await;
    let (refusal, close) = ("escrow-revocation-refusal", "escrow-revocation-stsc");
    hold_escrow_answer_then_stsc(&app, "STE5", refusal, close);
    let revocation = app.revoke_in_background(&token, &imp_uid);
    app.sandbox.until_held(refusal).await;
    app.stop_clock();
    app.advance(LATE);
    let refused_at = app.app.gateway.clock.unix();
    app.sandbox.open_gate(refusal);

    let (status, res) = revocation.await.unwrap();

    crate::helpers::assert_code_1_saying(
        status,
        &res,
        "발급취소 응답을 확인하지 못했습니다",
        "answered unknown",
    );
    let attempt = the_open_cancel_attempt(&app).await;
    assert!(
        attempt.next_check_at >= refused_at + SETTLE,
        "not due before a settle delay after the STSC: {attempt:?}"
    );
    let gateway = &app.app.gateway;
    app.advance(refused_at + SETTLE - 1 - gateway.clock.unix());
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 0, "nothing due yet");

    let shown = applied_at_kcp_then_resolved(&app, &token, &imp_uid, &tno, close, SETTLE).await;
    assert_eq!(
        (shown["status"].as_str(), shown["paid_at"].as_i64()),
        (Some("cancelled"), Some(0)),
        "{shown}"
    );
    assert_eq!(kcp_cancels(&app, &tno), vec![("STSC".to_owned(), 5000)]);
    app.assert_ledger_agrees().await;
}

/// The escrow refusal arrives a settle delay after the cancel attempt was created (KCP's answer
/// held while the clock moves on), and the `STSC` sent after it is held by KCP past openport's
/// wait: the request's own inquiry, right after, finds the trade still approved. A settle delay
/// has not passed since the `STSC`, so that is not "not cancelled": answered unknown, the attempt
/// left open, and recorded once KCP applies the STSC. Counted from the attempt's creation, the
/// delay had passed: the merchant was told "결제취소에 실패" of a cancel KCP then made.
#[tokio::test]
async fn a_late_stsc_whose_answer_is_lost_is_not_concluded_not_applied_before_a_settle_delay_after_it(
) {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_held_plain_at_kcp(&app, "esc-late-stsc-lost").await;
    let (refusal, stsc) = ("late-escrow-refusal", "late-stsc-held");
    hold_escrow_answer_then_stsc(&app, "STE2", refusal, stsc);
    let cancelling = app.cancel_in_background(&token, &imp_uid, 2000);
    app.sandbox.until_held(refusal).await;
    app.stop_clock();
    let attempt = the_open_cancel_attempt(&app).await;
    let gateway = &app.app.gateway;
    app.advance(attempt.created_at + SETTLE_SECS - gateway.clock.unix());
    let stsc_sent_at = gateway.clock.unix();
    app.sandbox.open_gate(refusal);

    let (status, res) = cancelling.await.unwrap();

    crate::helpers::assert_code_1_saying(
        status,
        &res,
        "PG사 취소 응답을 확인하지 못했습니다",
        "not \"not cancelled\" a settle delay after the attempt's creation only",
    );
    let attempt = the_open_cancel_attempt(&app).await;
    assert_eq!(attempt.sent_at, stsc_sent_at, "{attempt:?}");
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "paid");

    // KCP applies the STSC; a settle delay after it, the resolver finds the trade cancelled.
    let shown = applied_at_kcp_then_resolved(&app, &token, &imp_uid, &tno, stsc, SETTLE_SECS).await;
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_amount"].as_i64()),
        (Some("cancelled"), Some(2000)),
        "{shown}"
    );
    assert_eq!(kcp_cancels(&app, &tno), vec![("STSC".to_owned(), 2000)]);
    app.assert_ledger_agrees().await;
}

/// Refused as escrow and as plain (KCP holds an escrow trade, and takes no `STSC` for it): the
/// escrow refusal is the answer, the one that says why, and nothing changes.
#[tokio::test]
async fn an_escrow_cancel_refused_both_ways_answers_the_escrow_refusal() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-refused-twice").await;
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8507".into(),
                message: "배송 단계가 다릅니다".into(),
            },
        )
        .when("mod_type", "STE2"),
    );
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8506".into(),
                message: "에스크로 거래는 STSC로 취소할 수 없습니다".into(),
            },
        )
        .when("mod_type", "STSC"),
    );

    let res = cancel(&app, &token, json!({"imp_uid": imp_uid})).await;

    assert_eq!(res["code"], 1, "{res}");
    let message = res["message"].as_str().unwrap();
    assert!(message.contains("배송 단계가 다릅니다"), "{res}");
    assert!(!message.contains("STSC"), "not the STSC's refusal: {res}");
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "STE2 and then STSC were sent"
    );
    assert!(kcp_cancels(&app, &tno).is_empty());
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "paid");
    app.assert_ledger_agrees().await;
}

/// KCP answers the escrow status change "already cancelled" (cancelled in KCP's admin): that is
/// KCP's word on the trade, no `STSC` follows, and KCP's inquiry records the cancel.
#[tokio::test]
async fn an_escrow_cancel_kcp_holds_cancelled_already_sends_no_stsc() {
    let app = spawn_app().await;
    let (imp_uid, tno, token) = escrow_payment(&app, "esc-cancelled-in-admin").await;
    assert!(app.sandbox.cancel_in_admin(&tno));
    // Never used unless a STSC is sent.
    app.sandbox.inject(refuse_stsc());

    let res = cancel(&app, &token, json!({"imp_uid": imp_uid})).await;

    assert_eq!(res["code"], 0, "{res}");
    assert_eq!(res["response"]["status"], "cancelled", "{res}");
    assert_eq!(app.sandbox.armed_faults().len(), 1, "no STSC was sent");
    app.assert_ledger_agrees().await;
}
