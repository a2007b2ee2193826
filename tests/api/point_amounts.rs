//! The amount check of spec/kcp.md §5 ("KCP's manual makes the amount comparison mandatory") on
//! Benepia point payments: `POST /benepia/payment` answered directly or found by inquiry (`PAPT`)
//! after a lost answer, and the window's points (`pay_method point`). An approval KCP names for
//! other points than the order's is net-cancelled (the points go back), never recorded paid.
use kcp_sandbox::test_points::BENEPIA_01;
use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// `POST /benepia/payment` of `amount` points from benepia01: the envelope.
async fn pay_points(app: &TestApp, token: &str, merchant_uid: &str, amount: i64) -> Value {
    app.post(
        "/benepia/payment",
        Some(token),
        json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
               "benepia_member_code": BENEPIA_01.memcorp_cd, "merchant_uid": merchant_uid,
               "amount": amount, "name": "복지몰 상품", "buyer_name": "홍길동"}),
    )
    .await
    .1
}

/// A point payment KCP approved and openport net-cancelled: not paid, the approval cancelled at
/// KCP and the member's points whole again.
async fn assert_net_cancelled_not_paid(app: &TestApp, token: &str, merchant_uid: &str) {
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP approved once: {ledger:?}");
    assert_eq!(
        ledger[0].state,
        TransactionState::Cancelled,
        "and was net-cancelled: {ledger:?}"
    );
    assert_eq!(
        app.sandbox.point_balance(BENEPIA_01.id),
        Some(BENEPIA_01.balance),
        "the points are back"
    );
    let (_, found) = app
        .get(&format!("/payments/find/{merchant_uid}"), Some(token))
        .await;
    let p = &found["response"];
    assert_ne!(p["status"], "paid", "{found}");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str(), "{found}");
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_point_payment_kcp_answers_for_other_points_is_net_cancelled_never_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::AnswerField {
            field: "pnt_amount".into(),
            value: "400".into(),
        },
    ));

    let body = pay_points(&app, &token, "pt-other-points", 4_000).await;

    assert_ne!(body["code"], 0, "{body}");
    assert_net_cancelled_not_paid(&app, &token, "pt-other-points").await;
}

/// The answer is lost and the inquiry (`PAPT`) that finds the approval names another amount: the
/// merchant is still waiting, so an approval for the order would be honoured; this one is not.
#[tokio::test]
async fn a_lost_point_payment_an_inquiry_finds_for_another_amount_is_net_cancelled_never_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    crate::reliability::lose_the_approval_and_inquire_another_amount(&app);

    let body = pay_points(&app, &token, "pt-inq-other", 4_000).await;

    assert!(
        app.sandbox.armed_faults().is_empty(),
        "the answer was lost and the inquiry asked"
    );
    assert_ne!(body["response"]["status"], "paid", "{body}");
    assert_net_cancelled_not_paid(&app, &token, "pt-inq-other").await;
}

/// The window's points (`pay_method point`, KCP's `pnt_amount`): the same check on the window's
/// approval answer.
#[tokio::test]
async fn a_window_point_payment_kcp_answers_for_other_points_is_net_cancelled_never_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::ENC_PAYMENT,
        Fault::AnswerField {
            field: "pnt_amount".into(),
            value: "100".into(),
        },
    ));

    let rsp = crate::checkout::request_pay(
        &app,
        json!({"pay_method": "point", "merchant_uid": "pt-window-other", "amount": 10000}),
        &[("pin", "1234"), ("action", "pay")],
    )
    .await;

    assert_eq!(rsp["success"], false, "{rsp}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP approved once: {ledger:?}");
    assert_eq!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    let p = app.payment(&token, rsp["imp_uid"].as_str().unwrap()).await;
    assert_eq!(p["status"], "failed", "{p}");
    app.assert_ledger_agrees().await;
}
