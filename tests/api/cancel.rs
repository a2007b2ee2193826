use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::checkout::request_pay;
use crate::helpers::{assert_code_1_saying, spawn_app, spawn_app_with, test_cards, TestApp};
use openport::config::Config;

#[tokio::test]
async fn partial_cancels_accumulate_until_the_balance_is_zero() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-1", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 3000, "reason": "부분 환불", "checksum": 10000}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    let r = &body["response"];
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["cancel_amount"], 3000);
    assert_eq!(r["cancel_reason"], "부분 환불");
    assert_eq!(r["cancel_history"].as_array().unwrap().len(), 1);
    assert_eq!(r["cancel_history"][0]["amount"], 3000);
    assert_eq!(r["cancel_history"][0]["pg_tid"], p["pg_tid"]);
    assert!(r["cancelled_at"].as_i64().unwrap() > 0);

    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": "2000"}),
        )
        .await;
    assert_eq!(body["response"]["cancel_amount"], 5000, "{body}");

    // Amount omitted: the whole remaining balance.
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"merchant_uid": "cx-1"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 10000);
    assert_eq!(
        body["response"]["cancel_history"].as_array().unwrap().len(),
        3
    );

    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid}),
        )
        .await;
    assert_eq!(body["code"], 1);
    assert_eq!(body["message"], "이미 전액취소된 주문입니다.");

    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].balance, 0);
    assert_eq!(ledger[0].cancels.len(), 3);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_full_cancel_of_an_untouched_payment_is_stsc_with_a_string_reason_and_keeps_its_merchant_uid_used(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-full", 5000).await;
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"]}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 5000);
    // iamport's PaymentCancelAnnotation requires `reason`: "" when the cancel gave none.
    assert_eq!(body["response"]["cancel_history"][0]["reason"], "");
    assert_eq!(app.sandbox.ledger()[0].cancels[0].mod_type, "STSC");
    // The merchant_uid stays used, and the refusal says it was cancelled, not that it is paid.
    let (_, again) = app
        .pay(&token, "cx-full", 5000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(again["code"], 1, "{again}");
    let message = again["message"].as_str().unwrap();
    assert!(
        message.starts_with("이미 결제 후 취소된 merchant_uid입니다."),
        "{message}"
    );
    assert_eq!(app.sandbox.ledger().len(), 1, "nothing charged again");
}

#[tokio::test]
async fn a_checksum_mismatch_or_an_amount_over_the_balance_changes_nothing() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-2", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let (status, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 1000, "checksum": 9000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 1);
    assert!(
        body["message"].as_str().unwrap().contains("checksum"),
        "{body}"
    );
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 10001}),
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    assert!(app.sandbox.ledger()[0].cancels.is_empty());
    let (_, body) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
    assert_eq!(body["response"]["status"], "paid");
    assert_eq!(body["response"]["cancel_amount"], 0);
}

#[tokio::test]
async fn a_blank_amount_or_checksum_is_refused_never_taken_for_a_full_cancel() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-blank", 5000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    for body in [
        json!({"imp_uid": imp_uid, "amount": " "}),
        json!({"imp_uid": imp_uid, "amount": ""}),
        json!({"imp_uid": imp_uid, "checksum": ""}),
    ] {
        let (status, answer) = app
            .post("/payments/cancel", Some(&token), body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["code"], -1);
    }
    let form = app
        .http
        .post(app.url("/payments/cancel"))
        .header("Authorization", &token)
        .form(&[("imp_uid", imp_uid), ("amount", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(TestApp::read(form).await.0, StatusCode::BAD_REQUEST);
    assert!(app.sandbox.ledger()[0].cancels.is_empty());
    // null (and absence) still mean "all that is left".
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": null, "checksum": null}),
        )
        .await;
    assert_eq!(body["response"]["cancel_amount"], 5000, "{body}");
}

#[tokio::test]
async fn a_reason_with_script_is_refused_before_kcp_and_forbidden_characters_are_cleaned() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-reason", 5000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    for reason in [
        "<script>alert(1)</script>",
        "javascript:void(0)",
        "x eval(y)",
    ] {
        let (status, answer) = app
            .post(
                "/payments/cancel",
                Some(&token),
                json!({"imp_uid": imp_uid, "reason": reason}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}: {answer}");
        assert_eq!(answer["code"], -1);
        assert!(
            answer["message"].as_str().unwrap().contains("reason"),
            "the field is named: {answer}"
        );
    }
    assert!(
        app.sandbox.ledger()[0].cancels.is_empty(),
        "KCP never asked"
    );
    let (_, body) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
    assert_eq!(body["response"]["status"], "paid", "nothing written");
    assert_eq!(body["response"]["cancel_history"], json!([]));

    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "reason": "고객 요청, 환불 <재고 없음>"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "cancelled");
    let cancels = &app.sandbox.ledger()[0].cancels;
    assert_eq!(cancels.len(), 1);
    let sent = cancels[0].mod_desc.clone().unwrap_or_default();
    assert!(
        sent.starts_with("고객 요청") && sent.ends_with("재고 없음"),
        "{sent}"
    );
    assert!(!sent.contains([',', '<', '>']), "cleaned for KCP: {sent}");
}

#[tokio::test]
async fn imp_uid_wins_over_merchant_uid_and_unknown_payments_are_code_1() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.paid(&token, "cx-3", 1000).await;
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": "imp_000000000000", "merchant_uid": "cx-3"}),
        )
        .await;
    assert_eq!(body["code"], 1);
    assert_eq!(body["message"], "취소할 결제건이 존재하지 않습니다.");
    let (status, body) = app.post("/payments/cancel", Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(app.sandbox.ledger()[0].cancels.is_empty());
}

/// Cancels sent at once wait for each other, so those that fit the balance are all made and the
/// rest are refused on the balance the others left, never as "in flight" (a merchant's client
/// reads that refusal as final, and the buyer is under-refunded).
#[tokio::test]
async fn concurrent_partial_cancels_never_refund_more_than_was_paid() {
    let app = spawn_app_with(patient).await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-race", 1000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_string();
    let calls = (0..12).map(|_| {
        app.post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 300}),
        )
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|(_, b)| b["code"] == 0).count();
    assert_eq!(ok, 3, "{results:?}");
    for (status, body) in results.iter().filter(|(_, b)| b["code"] != 0) {
        assert_code_1_saying(
            *status,
            body,
            "취소요청금액(300)이 취소가능잔액(100)보다 큽니다.",
            "refused on the balance the others left",
        );
    }
    let (_, body) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
    assert_eq!(
        body["response"]["cancel_amount"].as_i64().unwrap(),
        300 * ok as i64
    );
    assert_eq!(app.sandbox.ledger()[0].balance, 1000 - 300 * ok as i64);
    app.assert_ledger_agrees().await;
}

/// A KCP timeout of 9 s, and the settle delay it needs: a cancel waits up to one KCP timeout for
/// another cancel of its payment (`Config::cancel_wait`), so that the tests of cancels sent at
/// once do not depend on how fast a loaded machine makes them.
fn patient(c: &mut Config) {
    c.kcp.timeout_ms = 9_000;
    c.resolver.settle_secs = 60;
}

/// The amounts of a payment's `cancel_history`, smallest first.
fn cancelled_amounts(payment: &Value) -> Vec<i64> {
    let mut amounts: Vec<i64> = payment["cancel_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].as_i64().unwrap())
        .collect();
    amounts.sort_unstable();
    amounts
}

/// A merchant refunding item by item sends its partial cancels at once (Promise.all): iamport
/// makes them one after the other, and so does openport, each planned from the balance the one
/// before left.
#[tokio::test]
async fn partial_cancels_of_one_payment_sent_at_once_are_all_made_one_after_the_other() {
    let app = spawn_app_with(patient).await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-items", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let answers =
        futures::future::join_all([1000, 2000, 3000].map(|a| app.cancel(&token, imp_uid, a))).await;

    for answer in &answers {
        assert_eq!(answer["code"], 0, "{answers:?}");
    }
    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(shown["cancel_amount"], 6000, "{shown}");
    assert_eq!(cancelled_amounts(&shown), vec![1000, 2000, 3000], "{shown}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].balance, 4000);
    assert_eq!(ledger[0].cancels.len(), 3);
    app.assert_ledger_agrees().await;
}

/// Cancels sent at once with the same checksum: the first one made changes the balance, and the
/// others, planned again from it after waiting, are refused as a mismatch naming the new balance.
/// Never two cancels planned from one balance.
#[tokio::test]
async fn cancels_sent_at_once_with_one_checksum_are_made_once_and_the_rest_refused_on_the_new_balance(
) {
    let app = spawn_app_with(patient).await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-checksum", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let calls = (0..3).map(|_| {
        app.post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 1000, "checksum": 10000}),
        )
    });

    let results = futures::future::join_all(calls).await;

    let ok = results.iter().filter(|(_, b)| b["code"] == 0).count();
    assert_eq!(ok, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(_, b)| b["code"] != 0) {
        assert_code_1_saying(
            *status,
            body,
            "취소 가능 잔액이 일치하지 않습니다. (checksum: 10000, 취소가능잔액: 9000)",
            "checked against the balance the first one left",
        );
    }
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 1000);
    assert_eq!(app.sandbox.ledger()[0].balance, 9000);
    app.assert_ledger_agrees().await;
}

/// Two instances on one database take partial cancels of one payment at once: each waits for the
/// other's by the database, not by anything one process holds.
#[tokio::test]
async fn partial_cancels_of_one_payment_sent_at_once_to_two_instances_are_all_made() {
    let app = spawn_app_with(patient).await;
    let other = app.another_instance(patient).await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-two-instances", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let answers = futures::future::join_all((1..=6).map(|i| {
        let instance = if i % 2 == 0 { &app } else { &other };
        instance.cancel(&token, imp_uid, i * 100)
    }))
    .await;

    for answer in &answers {
        assert_eq!(answer["code"], 0, "{answers:?}");
    }
    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(shown["cancel_amount"], 2100, "{shown}");
    assert_eq!(
        cancelled_amounts(&shown),
        vec![100, 200, 300, 400, 500, 600],
        "{shown}"
    );
    assert_eq!(app.sandbox.ledger()[0].balance, 7900);
    assert_eq!(app.sandbox.ledger()[0].cancels.len(), 6);
    app.assert_ledger_agrees().await;
}

/// A cancel held at KCP past one KCP timeout (its answer lost, left to the resolver) keeps its
/// payment's slot: a second cancel waits for it only up to the bound, then is refused as in
/// flight with nothing sent, instead of hanging. The first is settled from KCP's books later.
#[tokio::test]
async fn a_cancel_meeting_another_held_at_kcp_past_the_wait_is_refused_as_in_flight_after_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-held", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let gate = "cx-held-cancel";
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldRequest { gate: gate.into() },
    ));
    let first = app.cancel_in_background(&token, imp_uid, 1000);
    app.sandbox.until_held(gate).await;

    let started = std::time::Instant::now();
    let (status, second) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 2000}),
        )
        .await;
    let waited = started.elapsed();

    assert_code_1_saying(
        status,
        &second,
        "이 결제건에 처리 중인 취소 요청이 있습니다.",
        "refused as in flight once the wait ran out",
    );
    let bound = std::time::Duration::from_millis(crate::helpers::KCP_TIMEOUT_MS);
    assert!(
        waited >= bound,
        "answered before the wait ran out: {waited:?}"
    );
    assert!(
        waited < bound + std::time::Duration::from_secs(5),
        "waited far past the bound: {waited:?}"
    );
    let (_, first) = first.await.unwrap();
    assert_eq!(first["code"], 1, "its answer was lost: {first}");
    app.sandbox.open_gate(gate);
    crate::escrow::until_cancelled_at_kcp(&app, p["pg_tid"].as_str().unwrap()).await;
    app.advance(crate::helpers::SETTLE_SECS + 10);
    app.resolve_all().await;
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 1000);
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].cancels.len(), 1, "the second was never sent");
    assert_eq!(ledger[0].balance, 9000);
    app.assert_ledger_agrees().await;
}

/// A cancel waiting for another of its payment whose merchant gave up on it (its HTTP client
/// timed out while the first was at KCP) was made all the same once the first finished: the
/// merchant, told nothing, retried it and the buyer was refunded twice (review r4, finding 1).
/// Nothing is written while a cancel waits, so one whose request is gone gives up: only the first
/// cancel reaches KCP.
#[tokio::test]
async fn a_waiting_cancel_whose_merchant_gave_up_on_it_is_not_made() {
    let app = spawn_app_with(patient).await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-gone", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let gate = "cx-gone-first";
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldRequest { gate: gate.into() },
    ));
    let first = app.cancel_in_background(&token, imp_uid, 1000);
    app.sandbox.until_held(gate).await;

    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(800))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(app.url("/payments/cancel"))
        .header("Authorization", &token)
        .json(&json!({"imp_uid": imp_uid, "amount": 2000, "reason": "item 2"}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out: {gave_up:?}");
    app.sandbox.open_gate(gate);
    let (_, first) = first.await.unwrap();
    assert_eq!(first["code"], 0, "{first}");
    // Time for the waiting cancel to poll again and find the slot free.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].cancels.len(), 1, "only the first reached KCP");
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 1000);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_payment_cancelled_in_kcps_admin_is_recorded_by_a_full_cancel_and_a_partial_one_is_left_for_the_operator(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let full = app.paid(&token, "admin-full", 10000).await;
    let partial = app.paid(&token, "admin-partial", 10000).await;
    for p in [&full, &partial] {
        assert!(app.sandbox.cancel_in_admin(p["pg_tid"].as_str().unwrap()));
    }

    // KCP answers 8133 (already cancelled); its inquiry shows the balance gone, which is what the
    // full cancel asked for: recorded, not refused (else it stayed `paid` for good).
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": full["imp_uid"], "reason": "환불"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "cancelled");
    assert_eq!(body["response"]["cancel_amount"], 10000);

    // A partial cancel matches neither outcome: refused, and the attempt is left in conflict.
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": partial["imp_uid"], "amount": 3000}),
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    // KCP did answer: the merchant is told KCP's record disagrees, not that KCP was silent, and
    // never that the cancel failed (KCP holds every won refunded).
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("PG사 내역과 일치하지 않아") && message.contains("운영자 확인"),
        "{message}"
    );
    assert!(!message.contains("실패"), "{message}");
    let shown = app
        .payment(&token, partial["imp_uid"].as_str().unwrap())
        .await;
    assert_eq!(shown["status"], "paid");
    assert_eq!(shown["cancel_amount"], 0);
    let open = openport::store::payments::count_open_attempts(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(
        open, 0,
        "closed as a conflict for the operator, not left blocking"
    );

    // Until the operator reconciles it, no cancel is planned from a record KCP disagrees with.
    let cancel_rest = || async {
        app.post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": partial["imp_uid"]}),
        )
        .await
        .1
    };
    let refused = cancel_rest().await;
    assert_eq!(refused["code"], 1, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("운영자 확인"),
        "{refused}"
    );
    let gateway = &app.app.gateway;
    let payment = openport::store::payments::by_imp_uid(
        &gateway.db.read,
        None,
        partial["imp_uid"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let conflict = openport::store::payments::unreconciled_conflict(&gateway.db.read, payment.id)
        .await
        .unwrap()
        .expect("the conflict attempt");
    let listed = gateway.conflict_attempts(10).await.unwrap();
    assert_eq!(
        listed.len(),
        1,
        "what `openport attempt list --conflicts` shows"
    );
    assert_eq!(listed[0].id, conflict.id);
    assert_eq!(listed[0].imp_uid, payment.imp_uid);
    gateway
        .mark_reconciled(
            conflict.id,
            "cancelled in KCP's admin on the buyer's call",
            None,
        )
        .await
        .unwrap();
    assert!(gateway
        .mark_reconciled(conflict.id, "again", None)
        .await
        .is_err());
    assert!(gateway.conflict_attempts(10).await.unwrap().is_empty());
    // Reconciled: a full cancel records what KCP holds (cancelled in its admin).
    let done = cancel_rest().await;
    assert_eq!(done["code"], 0, "{done}");
    assert_eq!(done["response"]["status"], "cancelled");
    app.assert_ledger_agrees().await;
}

/// Window payments that KCP inquires under their own `pay_type` (PABK, PAMC, PATK), never the
/// card's PACA: the request_pay parameters and what the buyer enters in the window.
pub(crate) fn window_payments() -> [(Value, [(&'static str, &'static str); 2]); 3] {
    [
        (
            json!({"pay_method": "trans", "merchant_uid": "cx-bank", "amount": 3000}),
            [("bank", "BK20"), ("action", "pay")],
        ),
        (
            json!({"pay_method": "phone", "merchant_uid": "cx-phone", "amount": 1500}),
            [("mobile_no", "01012345678"), ("action", "pay")],
        ),
        (
            json!({"pay_method": "cultureland", "merchant_uid": "cx-gift", "amount": 2000,
                   "bypass": {"shop_user_id": "user123"}}),
            [("pin", "1234567890123456"), ("action", "pay")],
        ),
    ]
}

/// Pays through the window; the payment as the merchant's server reads it.
async fn paid_in_window(app: &TestApp, token: &str, params: Value, fill: &[(&str, &str)]) -> Value {
    let rsp = request_pay(app, params, fill).await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
    let p = app.payment(token, rsp["imp_uid"].as_str().unwrap()).await;
    assert_eq!(p["status"], "paid", "{p}");
    p
}

/// `POST /payments/cancel` of the whole payment.
async fn cancel_all(app: &TestApp, token: &str, p: &Value) -> Value {
    app.post(
        "/payments/cancel",
        Some(token),
        json!({"imp_uid": p["imp_uid"], "reason": "환불"}),
    )
    .await
    .1
}

#[tokio::test]
async fn a_bank_transfer_phone_or_gift_cancel_whose_answer_was_lost_is_recorded_after_an_inquiry_of_its_pay_type(
) {
    for (params, fill) in window_payments() {
        let app = spawn_app().await;
        let token = app.token().await;
        let p = paid_in_window(&app, &token, params, &fill).await;
        app.sandbox
            .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse));

        // KCP refunded and the answer never arrived: the inquiry of the payment's own pay_type
        // finds the balance gone, so the merchant is told it is cancelled.
        let body = cancel_all(&app, &token, &p).await;
        assert_eq!(body["code"], 0, "{} {body}", p["pay_method"]);
        assert_eq!(body["response"]["status"], "cancelled");
        assert_eq!(body["response"]["cancel_amount"], p["amount"]);
        assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
        app.resolve_all().await;
        app.assert_ledger_agrees().await;
    }
}

#[tokio::test]
async fn a_bank_transfer_cancel_whose_answer_and_inquiry_were_lost_is_cancelled_by_the_resolver() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (params, fill) = window_payments()[0].clone();
    let p = paid_in_window(&app, &token, params, &fill).await;
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse));
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::HttpStatus { status: 503 },
    ));

    let body = cancel_all(&app, &token, &p).await;
    assert_eq!(body["code"], 1, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("확인하지 못했습니다"),
        "told it is being checked, not that it failed: {body}"
    );
    let imp_uid = p["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");

    app.resolve_all().await;
    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert_eq!(shown["cancel_amount"], p["amount"]);
    app.assert_ledger_agrees().await;
    // Settled for good: a retry is refused as already cancelled, not sent to KCP again.
    let body = cancel_all(&app, &token, &p).await;
    assert_eq!(body["message"], "이미 전액취소된 주문입니다.", "{body}");
}

#[tokio::test]
async fn a_bank_transfer_phone_or_gift_payment_cancelled_in_kcps_admin_is_recorded_by_a_full_cancel(
) {
    for (params, fill) in window_payments() {
        let app = spawn_app().await;
        let token = app.token().await;
        let p = paid_in_window(&app, &token, params, &fill).await;
        assert!(app.sandbox.cancel_in_admin(p["pg_tid"].as_str().unwrap()));

        // KCP answers 8133; the inquiry of the payment's own pay_type shows the balance gone.
        let body = cancel_all(&app, &token, &p).await;
        assert_eq!(body["code"], 0, "{} {body}", p["pay_method"]);
        assert_eq!(body["response"]["status"], "cancelled");
        assert_eq!(body["response"]["cancel_amount"], p["amount"]);
        app.assert_ledger_agrees().await;
    }
}

/// serde reads a struct from a JSON array by position; an array is refused before that, so
/// `["imp_…", "…"]` is never taken for an imp_uid and a merchant_uid.
#[tokio::test]
async fn a_json_array_body_is_a_400_not_a_positional_cancel() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cx-array", 5000).await;
    let (status, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!([p["imp_uid"], "cx-array"]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], -1, "{body}");
    assert_eq!(
        app.payment(&token, p["imp_uid"].as_str().unwrap()).await["cancel_amount"],
        0
    );
    assert!(app.sandbox.ledger()[0].cancels.is_empty());
}

/// KCP refuses a partial cancel whose `rem_mny` is not its balance. Where KCP's balance differs
/// from openport's (here: 3,000 refunded in KCP's admin), the refusal is not left as a plain
/// failure, with the payment `paid` on a balance KCP does not hold and every later cancel refused
/// the same way: KCP is asked, and a cancel it already holds applied is recorded, anything else
/// goes to the operator as a conflict, answered as one.
#[tokio::test]
async fn a_cancel_kcp_refuses_on_a_balance_it_does_not_hold_is_recorded_or_left_for_the_operator() {
    let app = spawn_app().await;
    let token = app.token().await;
    let same = app.paid(&token, "kcp-bal-same", 10000).await;
    let other = app.paid(&token, "kcp-bal-other", 10000).await;
    for p in [&same, &other] {
        assert!(app
            .sandbox
            .cancel_in_admin_partly(p["pg_tid"].as_str().unwrap(), Some(3000)));
    }
    let cancel = |p: &Value, amount: i64| {
        app.post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"], "amount": amount}),
        )
    };

    // The merchant asks for the 3,000 KCP already refunded: KCP refuses the STPC (its balance is
    // 7,000, not 10,000), its inquiry shows exactly this cancel applied, and it is recorded.
    let (_, body) = cancel(&same, 3000).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 3000, "{body}");
    assert_eq!(
        body["response"]["status"], "cancelled",
        "as iamport shows a partial cancel"
    );

    // Another amount matches neither outcome: refused, and closed as a conflict for the operator.
    // KCP holds less than the record (3,000 went back in its admin), so the answer is the
    // operator's, naming the conflict: never "결제취소에 실패", which would invite the merchant to
    // refund by other means what KCP has already refunded.
    let (_, body) = cancel(&other, 2000).await;
    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    let shown = app
        .payment(&token, other["imp_uid"].as_str().unwrap())
        .await;
    assert_eq!(shown["cancel_amount"], 0);
    let conflicts = openport::store::payments::conflict_attempts(&app.app.gateway.db.read, 100)
        .await
        .unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(!message.contains("실패"), "{message}");
    assert!(
        message.contains("운영자 확인")
            && message.contains(other["imp_uid"].as_str().unwrap())
            && message.contains(&format!("attempt {}", conflicts[0].id)),
        "{message}"
    );
    assert!(
        conflicts[0]
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("KCP 잔액 7000, openport 잔액 10000")),
        "{conflicts:?}"
    );
    // Until the operator reconciles it, no cancel is planned from a record KCP disagrees with.
    let (_, body) = cancel(&other, 1000).await;
    assert_eq!(body["code"], 1, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("운영자 확인"),
        "{body}"
    );
    let kcp = app.sandbox.ledger();
    assert_eq!(kcp[1].balance, 7000, "KCP applied nothing more");
    assert_eq!(kcp[1].cancels.len(), 1);
}

/// A plain refusal (KCP's balance is openport's) stands, with KCP's message, and leaves nothing
/// open.
#[tokio::test]
async fn a_cancel_kcp_refuses_while_both_sides_agree_is_refused_with_kcps_message() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "kcp-refuse", 10000).await;
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::Refuse {
            code: "8178".into(),
            message: "취소할 수 없는 거래입니다".into(),
        },
    ));
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"], "amount": 1000}),
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    assert_eq!(
        body["message"],
        "결제취소에 실패하였습니다.(취소할 수 없는 거래입니다)"
    );
    let open = openport::store::payments::count_open_attempts(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(open, 0);
    assert!(
        openport::store::payments::conflict_attempts(&app.app.gateway.db.read, 100)
            .await
            .unwrap()
            .is_empty()
    );
    app.assert_ledger_agrees().await;
}

/// KCP's notice of a cancel made on its side (`TX05`, `TX06`, …: in KCP's admin, or by the buyer
/// at KCP) is a hint, checked by inquiry: what KCP no longer holds is recorded as a cancel (whole
/// or in part) and announced; a notice KCP's inquiry does not bear out changes nothing and sends
/// nothing to KCP but the inquiry. Before, the notice was acknowledged and dropped: the payment
/// stayed `paid` (an escrow order shipped though refunded).
#[tokio::test]
async fn kcps_notice_of_a_cancel_made_on_its_side_is_checked_and_recorded() {
    let app = spawn_app().await;
    let token = app.token().await;
    let notify = |tno: String, tx_cd: &'static str| {
        let app = &app;
        async move {
            let body = app
                .http
                .post(app.url("/kcp/notify"))
                .form(&[
                    ("site_cd", "T0000"),
                    ("tno", tno.as_str()),
                    ("tx_cd", tx_cd),
                    ("tx_tm", "20261204120000"),
                ])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            body.contains("value=\"0000\"")
        }
    };

    // A notice KCP does not bear out: nothing changes, nothing is cancelled.
    let kept = app.paid(&token, "notice-kept", 5000).await;
    let tno = kept["pg_tid"].as_str().unwrap().to_string();
    assert!(notify(tno.clone(), "TX06").await);
    let p = app.payment(&token, kept["imp_uid"].as_str().unwrap()).await;
    assert_eq!(
        (p["status"].as_str(), p["cancel_amount"].as_i64()),
        (Some("paid"), Some(0))
    );
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);

    // Cancelled whole in KCP's admin, then TX05.
    let whole = app.paid(&token, "notice-whole", 5000).await;
    let tno = whole["pg_tid"].as_str().unwrap().to_string();
    assert!(app.sandbox.cancel_in_admin(&tno));
    assert!(notify(tno.clone(), "TX05").await);
    let p = app
        .payment(&token, whole["imp_uid"].as_str().unwrap())
        .await;
    assert_eq!(p["status"], "cancelled", "{p}");
    assert_eq!(p["cancel_amount"], 5000);
    assert_eq!(p["cancel_history"][0]["reason"], "PG사 취소 통보 (TX05)");
    // KCP's re-send of the same notice counts once.
    assert!(notify(tno, "TX05").await);
    let again = app
        .payment(&token, whole["imp_uid"].as_str().unwrap())
        .await;
    assert_eq!(again["cancel_history"].as_array().unwrap().len(), 1);

    // 2,000 of 5,000 cancelled in KCP's admin, then TX06.
    let part = app.paid(&token, "notice-part", 5000).await;
    let tno = part["pg_tid"].as_str().unwrap().to_string();
    assert!(app.sandbox.cancel_in_admin_partly(&tno, Some(2000)));
    assert!(notify(tno, "TX06").await);
    let p = app.payment(&token, part["imp_uid"].as_str().unwrap()).await;
    assert_eq!(p["cancel_amount"], 2000, "{p}");
    app.assert_ledger_agrees().await;
}

/// KCP's success answer names another balance than the partial cancel planned (`rem_mny` 5,000
/// after 3,000 of 10,000): nothing is recorded on its word. KCP is asked what it holds; here the
/// plan's 7,000, so the cancel is recorded as planned.
#[tokio::test]
async fn a_cancel_answered_with_another_balance_is_checked_by_inquiry_before_it_is_recorded() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "c-rem-odd", 10000).await;
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::AnswerField {
            field: "rem_mny".into(),
            value: "5000".into(),
        },
    ));
    // Changes nothing but shows whether KCP was asked.
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Delay { ms: 1 }));

    let body = app
        .cancel(&token, p["imp_uid"].as_str().unwrap(), 3000)
        .await;

    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 3000, "{body}");
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "KCP's balance was inquired: {:?}",
        app.sandbox.armed_faults()
    );
    assert_eq!(app.sandbox.ledger()[0].balance, 7000);
    app.assert_ledger_agrees().await;
}

/// The same answer, and KCP's inquiry agrees with it: KCP holds 5,000, the plan 7,000. The cancel
/// is KCP's, the record cannot say which: a conflict for the operator, answered as a cancel KCP
/// made that the record disagrees with, and never recorded as planned.
#[tokio::test]
async fn a_cancel_kcp_confirms_for_another_balance_than_planned_is_a_conflict_not_recorded_as_planned(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "c-rem-other", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    for path in [paths::CANCEL, paths::INQUIRY] {
        app.sandbox.inject(FaultRule::new(
            path,
            Fault::AnswerField {
                field: "rem_mny".into(),
                value: "5000".into(),
            },
        ));
    }

    let body = app.cancel(&token, imp_uid, 3000).await;

    assert_eq!(body["code"], 1, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("PG사에서는 취소되었으나"),
        "{body}"
    );
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(
        conflicts[0]
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("KCP 잔액 5000")),
        "{conflicts:?}"
    );
}

/// A point payment made in KCP's window (`pay_method` point: `TPNT`, `van_code` SCWB) is not a
/// Benepia hub payment: seed 003's partial cancel by re-approval (`STRA`) is documented for the
/// hub's trades only. Sent down that path it used to end as a full refund (the window's trade
/// cancelled, its re-approval refused). A partial cancel is refused before anything reaches KCP;
/// the whole payment can still be cancelled.
#[tokio::test]
async fn a_partial_cancel_of_a_window_point_payment_is_refused_before_kcp_is_called() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_in_window(
        &app,
        &token,
        json!({"pay_method": "point", "merchant_uid": "cx-window-point", "amount": 10000}),
        &[("pin", "1234"), ("action", "pay")],
    )
    .await;
    assert_eq!(p["pay_method"], "point");
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let body = app.cancel(&token, imp_uid, 3000).await;

    assert_eq!(body["code"], 1, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("부분취소"),
        "{body}"
    );
    let now = app.payment(&token, imp_uid).await;
    assert_eq!(now["status"], "paid", "{now}");
    assert_eq!(now["cancel_amount"], 0, "{now}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "nothing re-approved");
    assert_eq!(
        ledger[0].state,
        TransactionState::Approved,
        "KCP still holds it"
    );
    assert_eq!(ledger[0].balance, 10000);
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());

    // The whole payment is still cancelled as any window payment is (STSC).
    let all = cancel_all(&app, &token, &p).await;
    assert_eq!(all["code"], 0, "{all}");
    assert_eq!(all["response"]["cancel_amount"], 10000);
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.assert_ledger_agrees().await;
}

/// Carrier billing (휴대폰, `PAMC`) and gift certificates (`PATK`) take no partial refund at KCP:
/// a partial cancel is refused before anything is sent, saying so, where KCP's own refusal of the
/// `STPC` would reach the merchant as an opaque PG error. The whole payment is still cancelled.
#[tokio::test]
async fn a_partial_cancel_of_a_phone_or_gift_payment_is_refused_before_kcp_is_called() {
    for (params, fill) in window_payments().into_iter().skip(1) {
        let app = spawn_app().await;
        let token = app.token().await;
        let p = paid_in_window(&app, &token, params, &fill).await;
        let imp_uid = p["imp_uid"].as_str().unwrap();
        // A tripwire: any cancel reaching KCP is answered with this.
        app.sandbox.inject(FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "9999".into(),
                message: "cancel sent".into(),
            },
        ));

        let body = app.cancel(&token, imp_uid, 500).await;

        assert_eq!(body["code"], 1, "{} {body}", p["pay_method"]);
        assert_eq!(
            body["message"], "휴대폰/상품권 결제는 부분취소할 수 없습니다. 전액취소만 가능합니다.",
            "{body}"
        );
        assert_eq!(app.sandbox.armed_faults().len(), 1, "a cancel was sent");
        assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
        let ledger = app.sandbox.ledger();
        assert_eq!(ledger[0].state, TransactionState::Approved);
        assert!(ledger[0].cancels.is_empty());
        assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());

        app.sandbox.clear_faults();
        let all = cancel_all(&app, &token, &p).await;
        assert_eq!(all["code"], 0, "{all}");
        assert_eq!(all["response"]["cancel_amount"], p["amount"]);
        app.assert_ledger_agrees().await;
    }
}

/// A carrier bills a phone payment with the month's phone bill and refunds it only within that
/// month (KST): a cancel after it is refused before KCP, saying why, where KCP's refusal would
/// read as an opaque PG error.
#[tokio::test]
async fn a_phone_payment_is_not_cancelled_after_its_month() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (params, fill) = window_payments()[1].clone();
    let p = paid_in_window(&app, &token, params, &fill).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    // 32 days later is another month, whatever the day of the payment.
    app.advance(32 * 24 * 3600);
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::Refuse {
            code: "9999".into(),
            message: "cancel sent".into(),
        },
    ));

    let body = cancel_all(&app, &token, &p).await;

    assert_eq!(body["code"], 1, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("휴대폰 결제는 결제한 달에만 취소할 수 있습니다."),
        "{body}"
    );
    assert_eq!(app.sandbox.armed_faults().len(), 1, "a cancel was sent");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());
}

/// KCP takes a bank transfer's partial cancel from the day after the payment (KST) on, as KCP's
/// own integrations refuse it on the payment day: refused before anything is sent, saying when it
/// can be made, where KCP's refusal would read as an opaque PG error. The next day it goes through.
#[tokio::test]
async fn a_same_day_partial_cancel_of_a_bank_transfer_is_refused_before_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (params, fill) = window_payments()[0].clone();
    let p = paid_in_window(&app, &token, params, &fill).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::Refuse {
            code: "9999".into(),
            message: "cancel sent".into(),
        },
    ));

    let body = app.cancel(&token, imp_uid, 1000).await;

    assert_eq!(body["code"], 1, "{body}");
    assert_eq!(
        body["message"], "실시간 계좌이체 부분취소는 결제일 익일부터 가능합니다.",
        "{body}"
    );
    assert_eq!(app.sandbox.armed_faults().len(), 1, "a cancel was sent");
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
    assert!(app.sandbox.ledger()[0].cancels.is_empty());
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());

    // A day later it is another KST date.
    app.sandbox.clear_faults();
    app.advance(24 * 3600);
    let token = app.token().await;
    let next_day = app.cancel(&token, imp_uid, 1000).await;
    assert_eq!(next_day["code"], 0, "{next_day}");
    assert_eq!(next_day["response"]["cancel_amount"], 1000);
    app.assert_ledger_agrees().await;
}

/// A card approval KCP answered `partcanc_yn N` ("결제 건의 부분취소 가능 유무", spec §2.4: some
/// check and foreign cards) takes no partial cancel: refused with a clear message before STPC is
/// sent, where KCP's own refusal would be a code openport does not know. A full cancel (STSC)
/// still goes through.
#[tokio::test]
async fn a_partial_cancel_of_an_approval_kcp_marked_partcanc_yn_n_is_refused_before_stpc_is_sent() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .pay(&token, "cx-nopart", 10000, test_cards::NO_PARTIAL_CANCEL)
        .await;
    assert_eq!(body["response"]["status"], "paid", "{body}");
    let p = body["response"].clone();
    let imp_uid = p["imp_uid"].as_str().unwrap();
    // A tripwire: any STPC reaching KCP is answered with this.
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "9999".into(),
                message: "STPC sent".into(),
            },
        )
        .when("mod_type", "STPC"),
    );

    let body = app.cancel(&token, imp_uid, 3000).await;

    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("부분취소"), "{body}");
    assert!(!message.contains("9999"), "STPC was sent: {body}");
    assert_eq!(app.sandbox.armed_faults().len(), 1, "STPC was sent");
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
    assert!(app.sandbox.ledger()[0].cancels.is_empty());
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());

    let all = cancel_all(&app, &token, &p).await;
    assert_eq!(all["code"], 0, "{all}");
    assert_eq!(all["response"]["cancel_amount"], 10000);
    app.assert_ledger_agrees().await;
}

/// What KCP answers decides, not the card: an approval of an ordinary card answered
/// `partcanc_yn N` is refused a partial cancel the same way; one answered `Y` (or nothing, as an
/// approval learnt from an inquiry) takes it.
#[tokio::test]
async fn the_partcanc_yn_of_kcps_approval_answer_is_what_refuses_a_partial_cancel() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::AnswerField {
            field: "partcanc_yn".into(),
            value: "N".into(),
        },
    ));
    let marked = app.paid(&token, "cx-marked", 10000).await;
    let ordinary = app.paid(&token, "cx-ordinary", 10000).await;

    let refused = app
        .cancel(&token, marked["imp_uid"].as_str().unwrap(), 3000)
        .await;
    let taken = app
        .cancel(&token, ordinary["imp_uid"].as_str().unwrap(), 3000)
        .await;

    assert_eq!(refused["code"], 1, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("부분취소"),
        "{refused}"
    );
    assert_eq!(taken["code"], 0, "{taken}");
    assert_eq!(taken["response"]["cancel_amount"], 3000);
    app.assert_ledger_agrees().await;
}

/// A cancel made in KCP's admin reaches openport the way KCP tells of it: the sandbox posts its own
/// `TX06` (common fields only, no `noti_id`, spec §2.12) through the notification book it uses for
/// deposits, and openport records the cancel after asking KCP. Nothing here is forged.
#[tokio::test]
async fn a_cancel_in_kcps_admin_reaches_openport_by_kcps_own_notice() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "admin-notice", 5000).await;
    let tno = p["pg_tid"].as_str().unwrap();

    let sent = app
        .sandbox
        .cancel_in_admin_notified(tno)
        .expect("cancelled and notified");

    assert_eq!(sent.tx_cd, "TX06");
    assert_eq!(sent.field("noti_id"), None, "{:?}", sent.fields);
    assert_eq!(sent.field("tx_tm").map(str::len), Some(14));
    let mut acknowledged = false;
    for _ in 0..200 {
        let now = app.sandbox.notifications();
        if now
            .iter()
            .any(|n| n.noti_id == sent.noti_id && n.acknowledged)
        {
            acknowledged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(acknowledged, "openport acknowledged KCP's notice");
    let shown = app.payment(&token, p["imp_uid"].as_str().unwrap()).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["cancel_amount"].as_i64(),
            shown["cancel_history"][0]["reason"].as_str()
        ),
        (Some("cancelled"), Some(5000), Some("PG사 취소 통보 (TX06)")),
        "{shown}"
    );
    app.assert_ledger_agrees().await;
}

/// A partial cancel of `p` (3,000) that KCP applies at once but answers only after the gateway
/// stopped waiting, in the background; returns once the cancel has reached KCP, its request still
/// waiting. Meanwhile the test lets the resolver take the attempt over (the request's lease run
/// out) and find "no such trade" at KCP (8201), which closes it as a conflict.
async fn cancel_taken_over_and_closed_as_a_conflict(
    app: &TestApp,
    token: &str,
    p: &Value,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::SlowAnswer {
            ms: crate::helpers::KCP_TIMEOUT_MS + 1000,
        },
    ));
    let request = app.cancel_in_background(token, p["imp_uid"].as_str().unwrap(), 3000);
    app.until_the_faults_are_used().await;
    crate::helpers::kcp_answers_no_such_trade(app);
    app.advance(crate::helpers::SETTLE_SECS + 10);
    assert_eq!(app.app.gateway.resolve_due(10).await.unwrap(), 1);
    assert_eq!(app.conflicts().await.len(), 1, "the resolver's conflict");
    request
}

/// The request whose cancel another holder (the resolver, past the request's lease) closed as a
/// conflict learns it only from the database once KCP's answer is lost to it. KCP did refund the
/// 3,000: the merchant gets the operator's wording naming the attempt, never "결제취소에 실패",
/// which would invite a second refund by other means.
#[tokio::test]
async fn a_cancel_another_holder_closed_as_a_conflict_is_answered_as_the_operators_not_as_a_failure(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cancel-disputed", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let request = cancel_taken_over_and_closed_as_a_conflict(&app, &token, &p).await;

    let (_, body) = request.await.unwrap();

    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    let conflict = &app.conflicts().await[0];
    assert!(message.contains("운영자 확인"), "{body}");
    assert!(!message.contains("실패"), "never a plain failure: {body}");
    assert!(!message.contains("자동으로"), "not the resolver's: {body}");
    assert!(
        message.contains(imp_uid) && message.contains(&format!("attempt {}", conflict.id)),
        "{body}"
    );
    assert_eq!(app.sandbox.ledger()[0].balance, 7000, "KCP refunded it");
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
}

/// The same conflict reconciled by an operator before the request could answer: the record agrees
/// with KCP again, and which of its cancels is this request's only the operator knows. The merchant
/// is pointed at the payment, neither told "not cancelled" nor "cancelled".
#[tokio::test]
async fn a_cancel_whose_conflict_an_operator_reconciled_meanwhile_points_the_merchant_at_the_payment(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cancel-reconciled", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let request = cancel_taken_over_and_closed_as_a_conflict(&app, &token, &p).await;
    let conflict = app.conflicts().await[0].id;
    app.app
        .gateway
        .mark_reconciled(
            conflict,
            "3,000 won cancelled at KCP, recorded by hand",
            None,
        )
        .await
        .unwrap();

    let (_, body) = request.await.unwrap();

    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("실패"), "never a plain failure: {body}");
    assert!(message.contains("결제건 조회"), "{body}");
    assert!(
        message.contains(imp_uid) && message.contains(&format!("attempt {conflict}")),
        "{body}"
    );
}

/// A cancel whose answer is lost and whose inquiry shows a balance matching neither outcome (KCP
/// holds 5,000 of 10,000 after a cancel of 3,000: something else changed the trade too). Whether
/// this cancel is among what KCP refunded is for the operator to find out: the merchant gets the
/// operator's wording, never "결제취소에 실패", and the attempt is listed.
#[tokio::test]
async fn a_cancel_whose_answer_is_lost_and_whose_balance_matches_neither_outcome_is_answered_as_the_operators(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cancel-neither", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse));
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::AnswerField {
            field: "rem_mny".into(),
            value: "5000".into(),
        },
    ));

    let body = app.cancel(&token, imp_uid, 3000).await;

    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("운영자 확인"), "{body}");
    assert!(!message.contains("실패"), "never a plain failure: {body}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert!(
        message.contains(&format!("attempt {}", conflicts[0].id)),
        "{body}"
    );
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
}

/// A cancel whose answer never comes (dropped) is closed as not applied once settled, and its
/// second look (`cancel_recheck`, thirty settle delays later) finds "no such trade" at KCP (8201)
/// for the tno KCP approved. Nothing can be concluded from that: the look is a conflict, listed
/// for the operator (`openport attempt list --conflicts`), and the merchant's next cancel is
/// answered with the operator's wording, nothing sent to KCP.
#[tokio::test]
async fn a_second_look_at_a_cancel_that_finds_no_such_trade_is_listed_and_holds_the_payments_cancels(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "recheck-absent", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    let body = app.cancel(&token, imp_uid, 3000).await;
    assert_eq!(body["code"], 1, "{body}");
    app.advance(crate::helpers::SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    assert_eq!(
        open.len(),
        1,
        "what `openport attempt list` shows: {open:?}"
    );
    assert_eq!(open[0].kind, openport::service::cancel_recheck::KIND);
    assert_eq!(open[0].imp_uid, imp_uid);
    assert!(app.conflicts().await.is_empty());

    crate::helpers::kcp_answers_no_such_trade(&app);
    app.advance(30 * crate::helpers::SETTLE_SECS);
    app.resolve_all().await;

    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].kind, openport::service::cancel_recheck::KIND);
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    let again = app.cancel(&token, imp_uid, 3000).await;
    assert_eq!(again["code"], 1, "{again}");
    let message = again["message"].as_str().unwrap();
    assert!(message.contains("운영자 확인"), "{again}");
    assert!(!message.contains("실패"), "{again}");
    assert!(
        message.contains(&format!("attempt {}", conflicts[0].id)),
        "{again}"
    );
    assert_eq!(app.sandbox.ledger()[0].balance, 10000, "nothing sent");
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
}

/// The answer to a cancel of `imp_uid` that KCP holds no trade for: the operator's wording naming
/// the one conflict listed (returned), never "결제취소에 실패", and nothing recorded cancelled.
async fn answered_as_the_operators(
    app: &TestApp,
    token: &str,
    imp_uid: &str,
    body: &Value,
) -> openport::service::attempts::OpenAttempt {
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
    assert_eq!(app.payment(token, imp_uid).await["cancel_amount"], 0);
    conflicts.into_iter().next().unwrap()
}

/// KCP refuses a cancel as "no such trade" (the sandbox's 8201, here a sandbox restarted without
/// its state file: it no longer knows the trade it approved) for a payment openport records as
/// paid. That is the disagreement a cancel whose answer was lost meets when its inquiry says "no
/// such trade" (reliability.rs), and it is answered the same way: a conflict listed for the
/// operator, the operator's wording for the merchant. Before, the merchant read "결제취소에
/// 실패하였습니다.(해당 거래가 존재하지 않습니다.)", as if the payment were simply still paid.
#[tokio::test]
async fn a_cancel_kcp_refuses_as_no_such_trade_is_listed_for_the_operator_not_answered_as_a_failure(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cancel-unknown-trade", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let app = app.restart(|_| {}).await;
    assert!(
        app.sandbox.ledger().is_empty(),
        "the new sandbox knows no trade"
    );
    let token = app.token().await;

    let body = app.cancel(&token, imp_uid, 3000).await;

    answered_as_the_operators(&app, &token, imp_uid, &body).await;
    // No cancel is planned from the record's balance until the operator has looked.
    let again = app.cancel(&token, imp_uid, 0).await;
    assert_eq!(again["code"], 1, "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "{again}"
    );
    assert_eq!(app.conflicts().await.len(), 1, "listed once");
}

/// KCP's cancel says "no such trade" while its inquiry shows the trade whole, or cannot be asked:
/// KCP contradicts itself, or nothing contradicts its refusal. Either way the operator's to look
/// into, answered as such; nothing moved at KCP.
#[tokio::test]
async fn a_no_such_trade_refusal_whose_inquiry_shows_the_trade_or_fails_is_the_operators_too() {
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
    let shown = app.paid(&token, "unknown-but-shown", 10000).await;
    let unasked = app.paid(&token, "unknown-unasked", 10000).await;

    refuse_as_unknown();
    let imp_uid = shown["imp_uid"].as_str().unwrap();
    let body = app.cancel(&token, imp_uid, 3000).await;
    let conflict = answered_as_the_operators(&app, &token, imp_uid, &body).await;
    assert!(
        conflict
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("KCP 잔액 10000")),
        "{conflict:?}"
    );
    app.app
        .gateway
        .mark_reconciled(conflict.id, "KCP holds it whole", None)
        .await
        .unwrap();

    refuse_as_unknown();
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let imp_uid = unasked["imp_uid"].as_str().unwrap();
    let body = app.cancel(&token, imp_uid, 3000).await;
    answered_as_the_operators(&app, &token, imp_uid, &body).await;
    let kcp = app.sandbox.ledger();
    assert!(
        kcp.iter()
            .all(|t| t.balance == 10000 && t.cancels.is_empty()),
        "{kcp:?}"
    );
}

/// A paid 10,000 (with a notice_url, where a late cancel's webhook is written) whose full cancel
/// (`STSC`) meets `fault` at KCP (held unapplied at a gate, or dropped): its outcome is unknown
/// to the request, the resolver closes the cancel as not applied once settled (KCP's balance
/// still 10,000) and leaves its second look due thirty settle delays later. Returns the
/// payment's imp_uid.
async fn a_full_cancel_closed_as_not_applied(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
    fault: Fault,
) -> String {
    let (_, paid) = app
        .post(
            "/subscribe/payments/onetime",
            Some(token),
            json!({
                "merchant_uid": merchant_uid, "amount": 10000, "card_number": test_cards::SHINHAN_CREDIT,
                "expiry": crate::helpers::future_expiry(), "birth": "800101", "pwd_2digit": "00",
                "notice_url": "http://127.0.0.1:9/hook"
            }),
        )
        .await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let imp_uid = paid["response"]["imp_uid"].as_str().unwrap().to_string();
    app.sandbox.inject(FaultRule::new(paths::CANCEL, fault));
    let body = app.cancel(token, &imp_uid, 0).await;
    assert_eq!(body["code"], 1, "{body}");
    app.advance(crate::helpers::SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    let shown = app.payment(token, &imp_uid).await;
    assert_eq!(shown["status"], "paid", "closed as not applied: {shown}");
    assert_eq!(shown["cancel_amount"], 0, "{shown}");
    assert_eq!(second_looks_open(app).await.len(), 1);
    imp_uid
}

/// The open second looks at cancels closed as not applied (`cancel_recheck`).
async fn second_looks_open(app: &TestApp) -> Vec<openport::store::entity::pg_attempt::Model> {
    use openport::store::entity::pg_attempt;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    pg_attempt::Entity::find()
        .filter(pg_attempt::Column::Kind.eq(openport::service::cancel_recheck::KIND))
        .filter(pg_attempt::Column::State.is_in(openport::store::payments::OPEN_STATES))
        .all(&app.app.gateway.db.read)
        .await
        .unwrap()
}

/// KCP refuses an `STPC` (its balance is not the `rem_mny` sent): armed to show whether one is
/// sent, which uses it up.
fn an_stpc_kcp_would_refuse(app: &TestApp) {
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8134".into(),
                message: "취소 가능 금액을 초과하였습니다".into(),
            },
        )
        .when("mod_type", "STPC"),
    );
}

/// Review rS, finding 2: a full cancel (`STSC`, which carries no balance, so KCP cannot refuse it
/// as stale) that KCP applies after the resolver closed it as not applied took the whole balance
/// at KCP while the record kept it refundable until the second look, thirty settle delays later.
/// A partial cancel meanwhile was planned from that record and sent as an `STPC` on KCP's zero
/// balance. Now a cancel of a payment with a second look pending takes that look first: the late
/// `STSC` is recorded as the cancel it was (with its `cancelled` webhook, the merchant having been
/// told "not cancelled"), the partial cancel is refused on what is left, nothing, saying why, and
/// no `STPC` is sent. The record agrees with KCP's ledger, and no conflict is left.
#[tokio::test]
async fn a_full_cancel_kcp_applied_late_is_recorded_when_a_later_cancel_comes_and_that_cancel_is_not_sent(
) {
    use openport::service::cancel::LATE_CANCEL_RECORDED;
    let app = spawn_app().await;
    let token = app.token().await;
    let gate = "late-stsc";
    let held = Fault::HoldRequest { gate: gate.into() };
    let imp_uid = a_full_cancel_closed_as_not_applied(&app, &token, "late-stsc", held).await;
    crate::helpers::kcp_applies_the_held_call(&app, gate, "KCP applied the STSC since", || {
        app.sandbox.ledger()[0].balance == 0
    })
    .await;

    an_stpc_kcp_would_refuse(&app);
    let (status, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 2000, "checksum": 10000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("이미 전액취소된 주문입니다."), "{body}");
    assert!(message.contains(LATE_CANCEL_RECORDED), "{body}");
    assert!(message.contains(&imp_uid), "{body}");
    assert!(message.contains("10000원"), "{body}");
    assert_eq!(app.sandbox.armed_faults().len(), 1, "no STPC was sent");

    let shown = app.payment(&token, &imp_uid).await;
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert_eq!(shown["cancel_amount"], 10000, "{shown}");
    assert_eq!(
        shown["cancel_history"].as_array().unwrap().len(),
        1,
        "{shown}"
    );
    assert_eq!(
        crate::schedules::webhooks_of(&app, "late-stsc", "cancelled").await,
        1,
        "the merchant told \"not cancelled\" is told otherwise"
    );
    assert!(second_looks_open(&app).await.is_empty());
    assert!(app.conflicts().await.is_empty());
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].cancels.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].cancels[0].mod_type, "STSC");
    app.assert_ledger_agrees().await;

    // Nothing is left for the hour after.
    app.advance(30 * crate::helpers::SETTLE_SECS);
    app.resolve_all().await;
    assert!(app.conflicts().await.is_empty());
    assert_eq!(app.payment(&token, &imp_uid).await["cancel_amount"], 10000);
}

/// The look a cancel takes first finds the earlier full cancel still not applied (here it never
/// reached KCP): the cancel goes on as before (planned from the record, which KCP agrees with),
/// and the look is left due when it was, not closed: KCP might apply that cancel still. The
/// second look, when due, finds the 2,000 cancelled and the rest held, and closes.
#[tokio::test]
async fn a_cancel_whose_first_look_finds_the_earlier_cancel_still_not_applied_is_made_and_leaves_the_look_due(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let imp_uid =
        a_full_cancel_closed_as_not_applied(&app, &token, "never-stsc", Fault::Drop).await;
    let due = second_looks_open(&app).await[0].next_check_at;

    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 2000, "checksum": 10000}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 2000, "{body}");
    let looks = second_looks_open(&app).await;
    assert_eq!(looks.len(), 1, "{looks:?}");
    assert_eq!(looks[0].next_check_at, due, "left due when it was");
    assert_eq!(looks[0].lease_until, 0, "let go");
    assert_eq!(app.sandbox.ledger()[0].balance, 8000);

    app.advance(30 * crate::helpers::SETTLE_SECS);
    app.resolve_all().await;
    assert!(second_looks_open(&app).await.is_empty());
    assert!(app.conflicts().await.is_empty());
    assert_eq!(app.payment(&token, &imp_uid).await["cancel_amount"], 2000);
}
