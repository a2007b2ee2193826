//! spec/kcp.md §5 for amounts openport cannot read: KCP's approval answer names the order's
//! `amount` but another of its amount fields (`card_mny`, `bk_mny`, `pnt_amount`) holds a value
//! that does not read as an amount (`"1,000"`). That answer does not confirm what KCP charged, so
//! it is handled as one naming another amount: the approval is net-cancelled at KCP and the
//! payment is never recorded paid (it was, while the unreadable field was silently dropped).
use kcp_sandbox::test_points::BENEPIA_01;
use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use serde_json::{json, Value};

use crate::helpers::{future_expiry, spawn_app, test_cards, TestApp};

/// KCP answering the next call on `path` with `field` set to `"1,000"`, an amount with a
/// thousands separator (spec §6: amounts are digit strings, no commas).
fn unreadable(path: &str, field: &str) -> FaultRule {
    FaultRule::new(
        path,
        Fault::AnswerField {
            field: field.into(),
            value: "1,000".into(),
        },
    )
}

/// The payment a charge answered (`body`, an iamport envelope) failed, its approval (`entry`,
/// the sandbox's ledger) net-cancelled, the way an approval of another amount is.
pub(crate) async fn assert_failed_and_net_cancelled(
    app: &TestApp,
    token: &str,
    body: &Value,
    entry: &kcp_sandbox::LedgerEntry,
) {
    let p = &body["response"];
    assert_eq!(p["status"], "failed", "{body}");
    assert!(
        p["fail_reason"]
            .as_str()
            .is_some_and(|r| r.contains("불일치")),
        "{body}"
    );
    assert_eq!(p["pg_tid"], entry.tno.as_str(), "{body}");
    assert_eq!(
        entry.state,
        TransactionState::Cancelled,
        "and was net-cancelled"
    );
    assert_eq!(
        entry.cancels[0].mod_desc.as_deref(),
        Some("가맹점 DB 처리 실패(자동취소)"),
        "{:?}",
        entry.cancels
    );
    let shown = app.payment(token, p["imp_uid"].as_str().unwrap()).await;
    assert_eq!(shown["status"], "failed", "{shown}");
}

/// Key-in (`onetime`) and a charge on a billing key (`again`), each answered with the order's
/// `amount` and `card_mny` `"1,000"`.
#[tokio::test]
async fn a_card_charge_kcp_answers_with_an_unreadable_card_mny_is_net_cancelled_never_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(unreadable(paths::HUB_PAYMENT, "card_mny").when("card_tx_type", "11121000"));
    let (_, key_in) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "unreadable-key-in", "amount": 1000,
                   "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "birth": "800101", "pwd_2digit": "00"}),
        )
        .await;
    let registered =
        crate::billing::register(&app, &token, "unreadable-c", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(registered["code"], 0, "{registered}");
    app.sandbox
        .inject(unreadable(paths::HUB_PAYMENT, "card_mny").when("card_tx_type", "11511000"));
    let (_, again) =
        crate::billing::again(&app, &token, "unreadable-c", "unreadable-again", 1000).await;
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "both answers named card_mny 1,000"
    );

    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2, "KCP approved each charge once: {ledger:?}");
    for (body, entry) in [&key_in, &again].into_iter().zip(&ledger) {
        assert_eq!(body["code"], 0, "{body}");
        assert_failed_and_net_cancelled(&app, &token, body, entry).await;
    }
    app.assert_ledger_agrees().await;
}

/// A bank transfer from the window answered with `bk_mny` `"1,000"` (its `amount` the order's).
#[tokio::test]
async fn a_bank_transfer_kcp_answers_with_an_unreadable_bk_mny_is_net_cancelled_never_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(unreadable(paths::ENC_PAYMENT, "bk_mny"));

    let rsp = crate::checkout::request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "unreadable-bank", "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
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

/// A Benepia point payment answered with `pnt_amount` `"1,000"`: the points go back.
#[tokio::test]
async fn a_point_payment_kcp_answers_with_an_unreadable_pnt_amount_is_net_cancelled_never_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(unreadable(paths::HUB_PAYMENT, "pnt_amount"));

    let (_, body) = app
        .post(
            "/benepia/payment",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
                   "benepia_member_code": BENEPIA_01.memcorp_cd,
                   "merchant_uid": "unreadable-points", "amount": 4000, "name": "복지몰 상품",
                   "buyer_name": "홍길동"}),
        )
        .await;

    assert_ne!(body["code"], 0, "{body}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP approved once: {ledger:?}");
    assert_eq!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    assert_eq!(
        app.sandbox.point_balance(BENEPIA_01.id),
        Some(BENEPIA_01.balance),
        "the points are back"
    );
    let (_, found) = app
        .get("/payments/find/unreadable-points", Some(&token))
        .await;
    assert_ne!(found["response"]["status"], "paid", "{found}");
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}
