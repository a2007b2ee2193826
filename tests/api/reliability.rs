//! Faults injected at the KCP sandbox: after every one, KCP's ledger and openport agree exactly.
use std::time::Duration;

use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use openport::store::entity::webhook_delivery;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::helpers::{
    a_cancel_held_as_a_conflict, imp_uid_in, kcp_answers_no_such_trade, kcp_applies_the_held_call,
    spawn_app, test_cards, SETTLE_SECS,
};

#[tokio::test]
async fn a_lost_approval_response_is_recovered_by_inquiry_and_answered_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    let (_, body) = app
        .pay(&token, "lost-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid");
    assert_eq!(app.sandbox.ledger().len(), 1);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_dropped_approval_stays_ready_then_fails_after_the_settle_delay_and_can_be_retried() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(&token, "drop-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);
    assert_eq!(
        app.payment(&token, &imp_uid).await["status"],
        "ready",
        "never failed on a guess"
    );

    // A retry before the outcome is known is refused: no second charge.
    let (_, retry) = app
        .pay(&token, "drop-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(retry["code"], 1, "{retry}");
    assert!(app.sandbox.ledger().is_empty());

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed");
    assert!(p["failed_at"].as_i64().unwrap() > 0);

    let paid = app.paid(&token, "drop-1", 1000).await;
    assert_ne!(paid["imp_uid"], imp_uid.as_str());
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn where_an_inquiry_by_order_number_is_not_trusted_a_dropped_approval_stays_open_for_an_operator(
) {
    // As against real KCP: "no such order" by order number is not proof that nothing was approved.
    let app = crate::helpers::spawn_app_with(|c| c.kcp.order_no_inquiry = Some(false)).await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(&token, "drop-untrusted", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);

    for _ in 0..3 {
        app.advance(SETTLE_SECS + 1);
        app.app.gateway.resolve_due(1000).await.unwrap();
    }
    assert_eq!(
        app.payment(&token, &imp_uid).await["status"],
        "ready",
        "never failed on an unconfirmed answer"
    );
    let open = openport::store::payments::count_open_attempts(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(open, 1, "the attempt stays open, inquired again");
    // And the merchant_uid stays taken: no second charge while KCP might hold the first.
    let (_, retry) = app
        .pay(&token, "drop-untrusted", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(retry["code"], 1, "{retry}");
    assert!(app.sandbox.ledger().is_empty());

    // The operator lists it, finds nothing for its order number in KCP's admin, and fails it.
    let gateway = &app.app.gateway;
    let open = gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].imp_uid, imp_uid);
    assert!(
        gateway
            .fail_attempt_none_at_kcp(open[0].id, &open[0].order_no)
            .await
            .is_ok(),
        "settled"
    );
    assert!(
        gateway
            .fail_attempt_none_at_kcp(open[0].id, &open[0].order_no)
            .await
            .is_err(),
        "only once"
    );
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    let paid = app.paid(&token, "drop-untrusted", 1000).await;
    assert_ne!(paid["imp_uid"], imp_uid.as_str());
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn an_operators_word_that_kcp_holds_nothing_under_an_order_number_fails_that_approval_only() {
    let app = crate::helpers::spawn_app_with(|c| c.kcp.order_no_inquiry = Some(false)).await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(&token, "confirm-absent", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let imp_uid = imp_uid_in(&body["message"]);
    let gateway = &app.app.gateway;
    let open = gateway.open_attempts(10).await.unwrap();
    let (id, order_no) = (open[0].id, open[0].order_no.clone());

    // Before the settle delay the word is kept, but KCP may still be working on the call.
    let early = gateway.confirm_absent_at_kcp(id, &order_no).await.unwrap();
    assert!(
        matches!(early.state.as_str(), "pending" | "unknown"),
        "{early:?}"
    );
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "ready");
    assert!(gateway
        .confirm_absent_at_kcp(id, "OP000000000000")
        .await
        .is_err());

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    let paid = app.paid(&token, "confirm-absent", 1000).await;
    assert_ne!(paid["imp_uid"], imp_uid.as_str());
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_retry_after_the_settle_delay_resolves_the_old_attempt_itself() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HttpStatus { status: 503 },
    ));
    let (_, body) = app
        .pay(&token, "503-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    app.advance(SETTLE_SECS + 1);
    // No resolver run: the retry settles the open attempt by inquiry, then pays.
    let paid = app.paid(&token, "503-1", 1000).await;
    assert_eq!(paid["status"], "paid");
    app.assert_ledger_agrees().await;
}

/// A key-in payment KCP approves only after openport's timeout: the request is answered code 1
/// (outcome unknown) and, once this returns, KCP's ledger holds the approval. Returns the answer.
/// KCP holds the approval unprocessed until the request has timed out, so every look the request
/// took (its inquiry) found nothing, however slow the machine.
pub(crate) async fn approved_after_the_timeout(
    app: &crate::helpers::TestApp,
    token: &str,
    merchant_uid: &str,
) -> serde_json::Value {
    let gate = format!("approved-after-the-timeout-{merchant_uid}");
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HoldRequest { gate: gate.clone() },
    ));
    let (_, body) = app
        .pay(token, merchant_uid, 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    kcp_applies_the_held_call(app, &gate, "KCP approved it late", || {
        app.sandbox.ledger().len() == 1
    })
    .await;
    body
}

#[tokio::test]
async fn an_approval_that_arrives_after_the_timeout_is_net_cancelled() {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = approved_after_the_timeout(&app, &token, "late-1").await;
    let imp_uid = imp_uid_in(&body["message"]);

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].state, TransactionState::Cancelled);
    assert_eq!(
        ledger[0].cancels[0].mod_desc.as_deref(),
        Some("가맹점 DB 처리 실패(자동취소)")
    );
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str());
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn when_the_inquiry_fails_too_the_resolver_later_net_cancels_the_approval() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let (_, body) = app
        .pay(&token, "lost-2", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "ready");
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_lost_cancel_response_is_confirmed_by_inquiry() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cl-1", 10000).await;
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse));
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"], "amount": 3000}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 3000);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_dropped_cancel_blocks_other_cancels_until_resolved_as_not_applied() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cd-1", 10000).await;
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"], "amount": 3000}),
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"], "amount": 3000}),
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("처리 중"),
        "{body}"
    );
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    assert_eq!(
        app.payment(&token, p["imp_uid"].as_str().unwrap()).await["cancel_amount"],
        0
    );
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"], "amount": 3000}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_cancel_that_lands_after_the_timeout_is_recorded_by_the_resolver() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cs-1", 10000).await;
    let gate = "cs-1-cancel";
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldRequest { gate: gate.into() },
    ));
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": p["imp_uid"], "amount": 4000}),
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    // The resolver runs only once KCP has applied the cancel: it is to find it, not race it.
    kcp_applies_the_held_call(&app, gate, "KCP cancelled it late", || {
        app.sandbox.ledger()[0].balance == 6000
    })
    .await;
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let now = app.payment(&token, p["imp_uid"].as_str().unwrap()).await;
    assert_eq!(now["cancel_amount"], 4000, "{now}");
    assert_eq!(now["cancel_history"].as_array().unwrap().len(), 1);
    app.assert_ledger_agrees().await;
}

/// KCP applies a partial cancel and its answer is lost; the inquiry that should tell says "no such
/// trade" (8201), which contradicts the approval KCP holds. Whether the cancel landed is unknown:
/// the merchant must not be told it failed (one who then refunds by other means refunds twice).
/// The attempt is listed for the operator, and no other cancel is planned from a balance KCP may
/// not hold until the operator has reconciled it.
#[tokio::test]
async fn a_cancel_whose_answer_is_lost_and_whose_inquiry_says_no_such_trade_is_listed_for_the_operator_not_answered_as_a_failure(
) {
    let app = spawn_app().await;
    let token = app.token().await;

    let (imp_uid, body) = a_cancel_held_as_a_conflict(&app, &token, "cl-absent").await;
    let imp_uid = imp_uid.as_str();

    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("운영자 확인"), "{body}");
    assert!(
        !message.contains("결제취소에 실패"),
        "never a plain failure: {body}"
    );
    assert!(message.contains(imp_uid), "{body}");
    assert_eq!(app.sandbox.ledger()[0].balance, 7000, "KCP applied it");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
    // No cancel is planned from the record's balance meanwhile.
    let again = app.cancel(&token, imp_uid, 3000).await;
    assert_eq!(again["code"], 1, "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "{again}"
    );
    assert_eq!(app.sandbox.ledger()[0].balance, 7000, "nothing sent");

    // The operator finds the cancel applied in KCP's admin and says so: the next full cancel
    // records what KCP holds.
    app.sandbox.clear_faults();
    app.app
        .gateway
        .mark_reconciled(conflicts[0].id, "3,000 won cancelled in KCP's admin", None)
        .await
        .unwrap();
    assert!(app.conflicts().await.is_empty());
    let rest = app.cancel(&token, imp_uid, 0).await;
    assert_eq!(rest["code"], 0, "{rest}");
    assert_eq!(rest["response"]["status"], "cancelled", "{rest}");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.assert_ledger_agrees().await;
}

/// The revocation twin: a virtual account's revocation whose answer is lost and whose inquiry
/// says "no such trade" is not answered as a failure (the merchant would take the account for
/// open), nor as settled automatically: the operator is named.
#[tokio::test]
async fn a_revocation_whose_answer_is_lost_and_whose_inquiry_says_no_such_trade_is_answered_as_the_operators(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let due = app.app.gateway.clock.unix() + 7 * 24 * 3600;
    let (_, issued) = app
        .post(
            "/vbanks",
            Some(&token),
            json!({"merchant_uid": "vb-absent", "amount": 5000, "vbank_code": "004",
                "vbank_due": due, "vbank_holder": "홍길동", "name": "가상계좌 상품"}),
        )
        .await;
    assert_eq!(issued["response"]["status"], "ready", "{issued}");
    let imp_uid = issued["response"]["imp_uid"].as_str().unwrap();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse));
    kcp_answers_no_such_trade(&app);

    let res = app
        .http
        .delete(app.url(&format!("/vbanks/{imp_uid}")))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let (_, body) = crate::helpers::TestApp::read(res).await;

    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("운영자 확인"), "{body}");
    assert!(!message.contains("실패"), "never a plain failure: {body}");
    assert!(
        !message.contains("자동으로"),
        "not the resolver's to settle: {body}"
    );
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
}

#[tokio::test]
async fn a_payment_kcp_could_not_even_be_connected_to_fails_at_once_and_frees_its_merchant_uid() {
    let app = spawn_app().await;
    // An instance whose KCP refuses connections: nothing can have been sent.
    let cut_off = app.cut_off_from_kcp().await;
    let token = cut_off.token().await;
    let (_, body) = cut_off
        .pay(&token, "not-sent-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "failed", "{body}");
    assert!(
        body["response"]["fail_reason"]
            .as_str()
            .unwrap()
            .contains("연결하지 못했습니다"),
        "{body}"
    );
    let open = openport::store::payments::count_open_attempts(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(open, 0, "nothing left for the resolver or an operator");
    // The merchant_uid is free at once: the working instance charges it.
    let paid = app.paid(&token, "not-sent-1", 1000).await;
    assert_eq!(paid["status"], "paid");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn an_approval_found_by_inquiry_without_card_fields_keeps_the_masked_number_and_shows_null() {
    let app = spawn_app().await;
    let token = app.token().await;
    let lost_then_answered_without = |field: &str| {
        app.sandbox
            .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
        app.sandbox.inject(FaultRule::new(
            paths::INQUIRY,
            Fault::AnswerField {
                field: field.into(),
                value: String::new(),
            },
        ));
    };
    lost_then_answered_without("card_no");
    let (_, no_number) = app
        .pay(&token, "inq-no-number", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    lost_then_answered_without("app_no");
    let (_, no_app_no) = app
        .pay(&token, "inq-no-app-no", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    lost_then_answered_without("card_name");
    let (_, no_name) = app
        .pay(&token, "inq-no-name", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    for body in [&no_number, &no_app_no, &no_name] {
        assert_eq!(body["response"]["status"], "paid", "{body}");
    }
    assert_eq!(no_number["response"]["card_number"], "411111******1111");
    assert!(!no_number["response"]["apply_num"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(no_app_no["response"]["apply_num"].is_null(), "{no_app_no}");
    assert!(no_name["response"]["card_name"].is_null(), "{no_name}");
    for body in [&no_number, &no_app_no, &no_name] {
        let p = app
            .payment(&token, body["response"]["imp_uid"].as_str().unwrap())
            .await;
        for field in ["apply_num", "card_name", "card_number", "card_code"] {
            assert_ne!(p[field], "", "{field} of {p}");
        }
    }
    // A check card whose inquiry answer leaves out the check-card flag: not known, so not
    // "credit" (0).
    lost_then_answered_without("card_bin_type_02");
    let (_, no_flag) = app
        .pay(&token, "inq-no-flag", 1000, test_cards::SAMSUNG_CHECK)
        .await;
    assert_eq!(no_flag["response"]["status"], "paid", "{no_flag}");
    assert!(no_flag["response"]["card_type"].is_null(), "{no_flag}");
    assert_eq!(app.sandbox.ledger().len(), 4);
}

/// The approval's answer is lost, and the inquiry that finds it names another amount (999 won).
/// The connector checks only direct answers; this one is the service's to refuse
/// (`settle_approval`, spec/kcp.md §5).
pub(crate) fn lose_the_approval_and_inquire_another_amount(app: &crate::helpers::TestApp) {
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::AnswerField {
            field: "amount".into(),
            value: "999".into(),
        },
    ));
}

#[tokio::test]
async fn an_approval_found_by_inquiry_for_another_amount_is_net_cancelled_never_recorded_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    lose_the_approval_and_inquire_another_amount(&app);
    let (_, body) = app
        .pay(&token, "inq-other-amount", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "the inquiry was asked"
    );
    assert_eq!(body["code"], 0, "{body}");
    let p = &body["response"];
    assert_eq!(p["status"], "failed", "{body}");
    assert!(
        p["fail_reason"]
            .as_str()
            .is_some_and(|r| r.contains("불일치")),
        "{body}"
    );
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str());
    let shown = app.payment(&token, p["imp_uid"].as_str().unwrap()).await;
    assert_eq!(shown["status"], "failed", "{shown}");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn an_operator_cannot_fail_an_approval_younger_than_the_settle_delay() {
    let app = crate::helpers::spawn_app_with(|c| c.kcp.order_no_inquiry = Some(false)).await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(&token, "fail-none-early", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let imp_uid = imp_uid_in(&body["message"]);
    let gateway = &app.app.gateway;
    let open = gateway.open_attempts(10).await.unwrap();
    let (id, order_no) = (open[0].id, open[0].order_no.as_str());

    // Nobody holds it (the request let go), but KCP may still be working on the call.
    let early = gateway.fail_attempt_none_at_kcp(id, order_no).await;
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.to_string().contains("settle delay")),
        "{early:?}"
    );
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "ready");

    app.advance(SETTLE_SECS + 1);
    let mistyped = gateway.fail_attempt_none_at_kcp(id, "000000000000").await;
    assert!(
        mistyped
            .as_ref()
            .is_err_and(|e| e.to_string().contains(order_no)),
        "the order number looked up must be the attempt's: {mistyped:?}"
    );
    assert!(gateway.fail_attempt_none_at_kcp(id, order_no).await.is_ok());
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    app.assert_ledger_agrees().await;
}

/// After [`approved_after_the_timeout`]: the resolver finds the approval nobody awaits and
/// net-cancels it, and that answer is lost; returns the open attempts, the one that names KCP's
/// approval (its tno) first.
async fn net_cancel_answer_lost(
    app: &crate::helpers::TestApp,
) -> Vec<openport::service::attempts::OpenAttempt> {
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop).times(1));
    app.advance(SETTLE_SECS + 1);
    let gateway = &app.app.gateway;
    let mut open = vec![];
    for _ in 0..6 {
        gateway.resolve_due(1000).await.unwrap();
        open = gateway.open_attempts(10).await.unwrap();
        if open.first().is_some_and(|a| a.tno.is_some()) {
            break;
        }
        app.advance(400);
    }
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].tno.is_some(), "{open:?}");
    open
}

/// The operator's verdict was refused for naming KCP's approval, and the resolver then finishes
/// the net-cancel: KCP and openport agree.
async fn refused_and_net_cancel_finished(
    app: &crate::helpers::TestApp,
    verdict: Result<String, openport::service::ServiceError>,
) {
    assert!(
        verdict
            .as_ref()
            .is_err_and(|e| e.to_string().contains("names KCP's approval")),
        "{verdict:?}"
    );
    app.resolve_all().await;
    assert_eq!(
        app.sandbox.ledger()[0].state,
        TransactionState::Cancelled,
        "the resolver finished the net-cancel"
    );
    app.assert_ledger_agrees().await;
}

/// A net-cancel the resolver finishes (the request's STSC answer was lost) and KCP then refuses
/// is recorded as the request's own refused net-cancel is: the payment held pending naming KCP's
/// approval, and what KCP answered, its code and message, in the payment's `fail_reason` and the
/// conflict the operator lists; a card number in KCP's message masked, never stored.
#[tokio::test]
async fn a_net_cancel_the_resolver_finishes_and_kcp_refuses_records_kcps_code_and_message_without_card_data(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = approved_after_the_timeout(&app, &token, "nc-resolver-refused").await;
    let imp_uid = imp_uid_in(&body["message"]);
    net_cancel_answer_lost(&app).await;
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8500".into(),
                message: "카드 4111-1111-1111-1111 취소 불가 거래".into(),
            },
        )
        .times(100),
    );

    app.advance(SETTLE_SECS + 400);
    app.app.gateway.resolve_due(1000).await.unwrap();

    let token = app.token().await; // the first one expired meanwhile
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "ready", "held for the operator: {p}");
    let reason = p["fail_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("[8500]") && reason.contains("취소 불가 거래"),
        "{p}"
    );
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let listed = conflicts[0].result_message.as_deref().unwrap_or_default();
    assert!(listed.contains("[8500]"), "{conflicts:?}");
    for text in [reason, listed] {
        assert!(!text.contains("1111-1111-1111"), "card data kept: {text}");
    }
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);
}

#[tokio::test]
async fn an_operator_cannot_fail_an_attempt_that_names_kcps_approval_while_its_net_cancel_is_pending(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    approved_after_the_timeout(&app, &token, "fail-named").await;
    let gateway = &app.app.gateway;
    let open = net_cancel_answer_lost(&app).await;

    let verdict = gateway
        .fail_attempt_none_at_kcp(open[0].id, &open[0].order_no)
        .await;

    refused_and_net_cancel_finished(&app, verdict).await;
}

/// The operator's "none at KCP" is refused for an attempt that names KCP's approval, also when
/// the resolver names it between the command's read and its claim (PostgreSQL, where the two
/// interleave): checked only on the read, the command failed the payment and stopped the
/// net-cancel of an approval KCP holds.
#[tokio::test]
async fn an_operators_none_at_kcp_is_refused_when_the_approval_is_named_between_its_read_and_its_claim(
) {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the two writes one after the other
    }
    let token = app.token().await;
    let body = approved_after_the_timeout(&app, &token, "fail-race").await;
    let imp_uid = imp_uid_in(&body["message"]);
    app.advance(SETTLE_SECS + 1);
    let gateway = app.app.gateway.clone();
    let open = gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].tno.is_none(), "{open:?}");
    let (id, order_no) = (open[0].id, open[0].order_no.clone());
    let tno = app.sandbox.ledger()[0].tno.clone();

    // What the resolver writes when it found the approval and its net-cancel's answer was lost,
    // held uncommitted while the command reads the attempt and waits to claim it.
    let other = gateway.db.write.begin().await.unwrap();
    other
        .execute(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE pg_attempts SET tno = $1, state = 'unknown', lease_until = 0 WHERE id = $2",
            [tno.clone().into(), id.into()],
        ))
        .await
        .unwrap();
    let operator = gateway.clone();
    let verdict =
        tokio::spawn(async move { operator.fail_attempt_none_at_kcp(id, &order_no).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !verdict.is_finished(),
        "the claim waits for the resolver's write"
    );
    other.commit().await.unwrap();
    let verdict = verdict.await.unwrap();

    let token = app.token().await;
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "ready");
    refused_and_net_cancel_finished(&app, verdict).await;
}

/// An open attempt names a tno only once KCP answered it; "no such trade" under that very tno
/// (an inquiry KCP files otherwise, a code meant otherwise) contradicts KCP and proves nothing.
/// Believed, it failed the payment and dropped the pending net-cancel: the buyer stayed charged
/// by nobody's payment and the merchant_uid was free for a second charge.
#[tokio::test]
async fn kcp_answering_no_such_trade_for_the_tno_it_approved_never_fails_the_payment_nor_drops_its_net_cancel(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = approved_after_the_timeout(&app, &token, "tno-absent").await;
    let imp_uid = imp_uid_in(&body["message"]);
    let gateway = &app.app.gateway;
    net_cancel_answer_lost(&app).await;
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);

    // KCP now answers "no such trade" to inquiries under that tno.
    kcp_answers_no_such_trade(&app);
    for _ in 0..4 {
        app.advance(SETTLE_SECS + 400);
        gateway.resolve_due(1000).await.unwrap();
    }
    let token = app.token().await; // the first one expired meanwhile
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "ready", "{p}"); // iamport's word for a payment not decided yet
    let open = gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0]
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("reconcile")),
        "{open:?}"
    );
    let (_, retried) = app
        .pay(&token, "tno-absent", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_ne!(
        retried["code"], 0,
        "the merchant_uid stays taken: {retried}"
    );
    assert_eq!(app.sandbox.ledger().len(), 1);

    // Once KCP answers again, the net-cancel is finished.
    app.sandbox.clear_faults();
    app.resolve_all().await;
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    app.assert_ledger_agrees().await;
}

/// The way out of that state: an operator who finds nothing under the attempt's order number in
/// KCP's admin says so (`attempt confirm-absent`), and the payment fails; until then, and without
/// that word, it stays open. KCP had approved that tno, so the failure gets its second look like
/// any other for finding nothing: here the operator's word was wrong, and the approval KCP still
/// holds is found and net-cancelled once KCP answers again.
#[tokio::test]
async fn an_operators_word_settles_an_approval_kcp_no_longer_knows_under_its_tno() {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = approved_after_the_timeout(&app, &token, "tno-word").await;
    let imp_uid = imp_uid_in(&body["message"]);
    let open = net_cancel_answer_lost(&app).await;
    let gateway = &app.app.gateway;
    kcp_answers_no_such_trade(&app);
    app.advance(SETTLE_SECS + 400);
    gateway.resolve_due(1000).await.unwrap();
    assert_eq!(gateway.open_attempts(10).await.unwrap().len(), 1);

    let settled = gateway
        .confirm_absent_at_kcp(open[0].id, &open[0].order_no)
        .await
        .unwrap();

    assert_eq!(settled.state, "failed", "{settled:?}");
    let token = app.token().await;
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");

    app.sandbox.clear_faults();
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str(), "{p}");
    app.assert_ledger_agrees().await;
}

/// `attempt confirm-absent` is the operator's word for an approval (or an older version's owed
/// point re-approval): KCP's admin holds nothing under its order number. Taken for any open
/// attempt, it ran a second look an hour early and closed it (an approval KCP applied late was
/// then never net-cancelled, though the merchant had been told the merchant_uid was free), and
/// recorded a word no cancel reads. Every other kind is refused and left exactly as it was; the
/// second looks then run when due.
#[tokio::test]
async fn an_operators_word_that_kcp_holds_nothing_is_refused_for_a_second_look_a_cancel_or_a_billing_key_issuance_and_changes_nothing(
) {
    let app = crate::helpers::spawn_app_with(|c| c.kcp.order_no_inquiry = Some(false)).await;
    let token = app.token().await;
    let gateway = &app.app.gateway;
    let open_of_kind = |kind: &'static str| async move {
        let open = openport::store::payments::open_attempts(&gateway.db.read, 100)
            .await
            .unwrap();
        let mut of_kind = open.into_iter().filter(|a| a.kind == kind);
        let found = of_kind.next().unwrap_or_else(|| panic!("an open {kind}"));
        assert!(of_kind.next().is_none(), "one open {kind}");
        found
    };
    // Refused with `said`, and the attempt (its due time, tries, lease, word) as it was.
    let refused_unchanged = |attempt: openport::store::entity::pg_attempt::Model,
                             said: &'static str| async move {
        let refused = gateway
            .confirm_absent_at_kcp(attempt.id, &attempt.order_no)
            .await
            .expect_err("refused");
        assert!(refused.to_string().contains(said), "{said}: {refused}");
        let now = openport::store::payments::attempt_by_id(&gateway.db.read, attempt.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now, attempt);
    };

    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(&token, "word-approve", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let dropped = imp_uid_in(&body["message"]);
    let p = app.paid(&token, "word-cancel", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    assert_eq!(app.cancel(&token, imp_uid, 3000).await["code"], 1);
    refused_unchanged(open_of_kind("cancel").await, "`attempt conflict`").await;

    // The cancel closes as not applied (KCP's balance unchanged), with its second look; the
    // approval is failed by hand, with its own.
    app.advance(SETTLE_SECS + 20);
    gateway.resolve_due(100).await.unwrap();
    let approval = open_of_kind("approve").await;
    gateway
        .fail_attempt_none_at_kcp(approval.id, &approval.order_no)
        .await
        .unwrap();
    assert_eq!(app.payment(&token, &dropped).await["status"], "failed");
    for kind in [
        openport::service::resolve::ABSENCE_RECHECK,
        openport::service::cancel_recheck::KIND,
    ] {
        refused_unchanged(open_of_kind(kind).await, "needs nothing").await;
    }

    // A billing-key window's issuance whose answer was lost (its 0-won payment's usage `issue`):
    // KCP has no inquiry for one, so the word would settle nothing. `attempt fail` does.
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(&token, "word-issue", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let issuing = imp_uid_in(&body["message"]);
    crate::helpers::execute(
        &app,
        vec![format!(
            "UPDATE payments SET customer_uid_usage = 'issue' WHERE imp_uid = '{issuing}'"
        )],
    )
    .await;
    let issuance = open_of_kind("approve").await;
    refused_unchanged(issuance.clone(), "--none-at-kcp").await;
    app.advance(SETTLE_SECS + 20);
    gateway
        .fail_attempt_none_at_kcp(issuance.id, &issuance.order_no)
        .await
        .unwrap();

    // The second looks run when due: nothing landed late, so they close, and nothing is left.
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    assert!(gateway.open_attempts(10).await.unwrap().is_empty());
    assert!(app.conflicts().await.is_empty());
    assert_eq!(app.payment(&token, imp_uid).await["cancel_amount"], 0);
    app.assert_ledger_agrees().await;
}

/// KCP applying an approval later than the settle delay is outside what the resolver can wait
/// for: by then an inquiry by order number (trusted with the sandbox) found nothing, the payment
/// failed and its merchant_uid was freed, and a retry charged the buyer again. A second look at
/// KCP, recorded before that failure, finds the late approval and net-cancels it.
#[tokio::test]
async fn an_approval_kcp_applies_after_the_settle_delay_is_found_by_a_second_look_and_net_cancelled(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let gate = "very-late-1";
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HoldRequest { gate: gate.into() },
    ));
    let (_, body) = app
        .pay(&token, "very-late-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);

    // Past the settle delay KCP still shows nothing: the payment fails and the merchant_uid is
    // free again (past the request's lease, too). The second look is due much later.
    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(1000).await.unwrap();
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    assert!(app.sandbox.ledger().is_empty());

    // KCP applies the stalled approval only now; the merchant, told a retry is safe, retries.
    kcp_applies_the_held_call(&app, gate, "KCP approved it very late", || {
        app.sandbox.ledger().len() == 1
    })
    .await;
    let retried = app.paid(&token, "very-late-1", 1000).await;
    assert_ne!(retried["imp_uid"], imp_uid.as_str());
    assert_eq!(app.sandbox.ledger().len(), 2);

    // The second look finds the first approval, which no payment holds, and cancels it.
    app.resolve_all().await;
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    assert_eq!(ledger[1].state, TransactionState::Approved);
    let first = app.payment(&token, &imp_uid).await;
    assert_eq!(first["status"], "failed");
    assert_eq!(first["pg_tid"], ledger[0].tno.as_str());
    app.assert_ledger_agrees().await;
}

/// Cuts every connection of the gateway to its PostgreSQL database (as `pg_terminate_backend` does
/// when a server restarts or an operator kills sessions). Only PostgreSQL lets a test do that; on
/// SQLite this returns false and the test that asked has nothing to show.
async fn cut_the_gateways_database_connections(app: &crate::helpers::TestApp) -> bool {
    use sea_orm::sqlx::Connection;
    if !app.database_url.starts_with("postgres") {
        return false;
    }
    let mut conn = sea_orm::sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("connect to the test database");
    sea_orm::sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut conn)
    .await
    .expect("terminate the gateway's connections");
    true
}

/// The pool hands out each cut connection once more and drops it when its statement fails, as the
/// resolver's next tick would meet them: used up before the resolver runs in a test. Idle
/// connections are handed out in turn, so twice the pool's size of tries meets them all.
async fn use_up_cut_connections(app: &crate::helpers::TestApp) {
    for _ in 0..2 * openport::store::DEFAULT_PG_POOL_SIZE {
        let _ = openport::store::payments::count_open_attempts(&app.app.gateway.db.read).await;
    }
}

/// Sends `body` to `path` while KCP takes a second over the call at `kcp_path`, and cuts the
/// gateway's database connections while KCP works on it (after the call's attempt is written,
/// before its outcome is): the answer's body, HTTP 200 being asserted; None on SQLite.
async fn answer_with_connections_cut(
    app: &crate::helpers::TestApp,
    token: &str,
    kcp_path: &str,
    path: &str,
    body: serde_json::Value,
) -> Option<serde_json::Value> {
    request_with_connections_cut(
        app,
        token,
        kcp_path,
        reqwest::Method::POST,
        path,
        Some(body),
        Outage::Cut,
    )
    .await
}

/// How long the gateway's database is out of reach in [`request_with_connections_cut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Its connections are cut; the next ones it opens work.
    Cut,
    /// Its connections are cut and the database accepts no new one until the answer is in
    /// (`ALLOW_CONNECTIONS false`): out of reach for every write the request tries, not only for
    /// the one on the cut connection (an approval's record is tried again on a new one).
    UntilAnswered,
}

/// [`answer_with_connections_cut`] for any method, with a JSON body or none (`DELETE /vbanks/…`),
/// and the database out of reach as `outage` says.
async fn request_with_connections_cut(
    app: &crate::helpers::TestApp,
    token: &str,
    kcp_path: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    outage: Outage,
) -> Option<serde_json::Value> {
    app.sandbox
        .inject(FaultRule::new(kcp_path, Fault::Delay { ms: 1000 }));
    let sent = {
        let mut request = app
            .http
            .request(method, format!("{}{path}", app.base))
            .header("Authorization", token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    // KCP has the call (the slow answer's rule is taken): its attempt is written.
    crate::ownership::until_the_faults_are_used(app).await;
    let database = app.database_url.rsplit_once('/').map(|(_, name)| name);
    let allow_connections = |allow: bool| {
        format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
            database.unwrap_or_default()
        )
    };
    // Sent from DATABASE_URL's database: PostgreSQL refuses it for the one connected to.
    let mut admin = None;
    if outage == Outage::UntilAnswered && app.database_url.starts_with("postgres") {
        use sea_orm::sqlx::Connection;
        let url = std::env::var("DATABASE_URL").expect("PostgreSQL's DATABASE_URL");
        let mut conn = sea_orm::sqlx::PgConnection::connect(&url)
            .await
            .expect("connect to DATABASE_URL");
        sea_orm::sqlx::query(&allow_connections(false))
            .execute(&mut conn)
            .await
            .expect("the database accepts no new connection");
        sea_orm::sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
        )
        .bind(database.unwrap_or_default())
        .execute(&mut conn)
        .await
        .expect("terminate the gateway's connections");
        admin = Some(conn);
    } else if !cut_the_gateways_database_connections(app).await {
        let _ = sent.await;
        return None;
    }
    let answer = sent.await.unwrap();
    if let Some(mut conn) = admin {
        sea_orm::sqlx::query(&allow_connections(true))
            .execute(&mut conn)
            .await
            .expect("the database accepts connections again");
    }
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    use_up_cut_connections(app).await;
    Some(body)
}

/// KCP applies a cancel, and the database connection the outcome is written on is gone: the
/// merchant is told the result will be confirmed (code 1), not HTTP 500 ("nothing happened"),
/// and the resolver records what KCP holds.
#[tokio::test]
async fn a_cancel_whose_outcome_cannot_be_written_is_answered_as_unknown_and_settled_later() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "db-cut-1", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_string();
    let Some(body) = answer_with_connections_cut(
        &app,
        &token,
        paths::CANCEL,
        "/payments/cancel",
        json!({"imp_uid": imp_uid, "amount": 4000}),
    )
    .await
    else {
        return;
    };
    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("자동으로 확인됩니다"), "{body}");
    assert_eq!(app.sandbox.ledger()[0].balance, 6000, "KCP applied it");

    app.advance(SETTLE_SECS + 20);
    app.resolve_all().await;
    let shown = app.payment(&token, &imp_uid).await;
    assert_eq!(shown["cancel_amount"], 4000, "{shown}");
    app.assert_ledger_agrees().await;
}

/// The same for a charge: KCP approves, and the database is out of reach while its outcome is
/// written (the connection it was on cut, no new one accepted: an approval's record is tried
/// again, on a new connection). The merchant is told the outcome is being settled and a retry is
/// safe (code 1), not HTTP 500; the resolver then settles it as any approval whose answer the
/// merchant did not get (a key-in one is net-cancelled), and KCP and openport agree.
#[tokio::test]
async fn a_charge_whose_outcome_cannot_be_written_is_answered_as_unknown_and_settled_later() {
    let app = spawn_app().await;
    let token = app.token().await;
    let Some(body) = request_with_connections_cut(
        &app,
        &token,
        paths::HUB_PAYMENT,
        reqwest::Method::POST,
        "/subscribe/payments/onetime",
        Some(json!({"merchant_uid": "db-cut-2", "amount": 1000,
            "card_number": test_cards::SHINHAN_CREDIT, "expiry": crate::helpers::future_expiry()})),
        Outage::UntilAnswered,
    )
    .await
    else {
        return;
    };
    told_a_retry_is_safe_then_settled(&app, &body).await;
}

/// The same for a Benepia point payment (`POST /benepia/payment`): KCP approves the points, the
/// connection their outcome is written on is gone. Code 1 and a retry is safe, not HTTP 500; the
/// resolver net-cancels the points the merchant was not told of, and KCP and openport agree.
#[tokio::test]
async fn a_point_payment_whose_outcome_cannot_be_written_is_answered_as_unknown_and_settled_later()
{
    use kcp_sandbox::test_points::BENEPIA_01;
    let app = spawn_app().await;
    let token = app.token().await;
    let Some(body) = answer_with_connections_cut(
        &app,
        &token,
        paths::HUB_PAYMENT,
        "/benepia/payment",
        json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
            "benepia_member_code": BENEPIA_01.memcorp_cd, "merchant_uid": "db-cut-points",
            "amount": 3000, "name": "복지몰 상품"}),
    )
    .await
    else {
        return;
    };
    told_a_retry_is_safe_then_settled(&app, &body).await;
}

/// The answer of a charge whose outcome could not be written (`answer_with_connections_cut`):
/// code 1, the outcome being confirmed and a retry with the same merchant_uid safe, KCP having
/// made the one trade; then the resolver settles it, and KCP and openport agree.
async fn told_a_retry_is_safe_then_settled(
    app: &crate::helpers::TestApp,
    body: &serde_json::Value,
) {
    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("자동으로 확인"), "{body}");
    assert!(message.contains("이중결제되지 않습니다"), "{body}");
    assert_eq!(app.sandbox.ledger().len(), 1, "KCP made the trade");

    app.advance(SETTLE_SECS + 20);
    app.resolve_all().await;
    app.assert_ledger_agrees().await;
}

/// A `POST /vbanks` body: KB국민 (`004`), due in a week by the gateway's clock.
fn vbank_order(app: &crate::helpers::TestApp, merchant_uid: &str) -> serde_json::Value {
    json!({"merchant_uid": merchant_uid, "amount": 5000, "vbank_code": "004",
        "vbank_due": app.app.gateway.clock.unix() + 7 * 24 * 3600, "name": "가상계좌 상품",
        "buyer_name": "홍길동", "buyer_email": "buyer@example.com", "buyer_tel": "010-1234-5678"})
}

/// The same for a virtual account issued without the window (`POST /vbanks`): KCP issues it, the
/// connection it is written on is gone. Code 1 and a retry is safe, not HTTP 500; the resolver
/// revokes the account nobody was told of, and KCP and openport agree.
#[tokio::test]
async fn a_virtual_account_whose_issuance_cannot_be_written_is_answered_as_unknown_and_settled_later(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let order = vbank_order(&app, "db-cut-vbank");
    let Some(body) =
        answer_with_connections_cut(&app, &token, paths::HUB_PAYMENT, "/vbanks", order).await
    else {
        return;
    };
    told_a_retry_is_safe_then_settled(&app, &body).await;
}

/// The same for a revocation (`DELETE /vbanks/{imp_uid}`): KCP closes the account, the connection
/// the close is written on is gone. The merchant is told the result will be confirmed (code 1),
/// not HTTP 500 ("not revoked"), and the resolver records what KCP holds.
#[tokio::test]
async fn a_revocation_whose_outcome_cannot_be_written_is_answered_as_unknown_and_settled_later() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, issued) = app
        .post("/vbanks", Some(&token), vbank_order(&app, "db-cut-revoke"))
        .await;
    assert_eq!(issued["code"], 0, "{issued}");
    let imp_uid = issued["response"]["imp_uid"].as_str().unwrap().to_string();
    let Some(body) = request_with_connections_cut(
        &app,
        &token,
        paths::CANCEL,
        reqwest::Method::DELETE,
        &format!("/vbanks/{imp_uid}"),
        None,
        Outage::Cut,
    )
    .await
    else {
        return;
    };
    assert_eq!(body["code"], 1, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("발급취소 응답을 확인하지 못했습니다"),
        "{body}"
    );
    assert!(message.contains("자동으로 확인됩니다"), "{body}");
    assert_eq!(
        app.sandbox.ledger()[0].state,
        TransactionState::Cancelled,
        "KCP closed it"
    );

    app.advance(SETTLE_SECS + 20);
    app.resolve_all().await;
    let shown = app.payment(&token, &imp_uid).await;
    assert_eq!(shown["status"], "cancelled", "{shown}");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_cancel_kcp_applies_after_it_was_closed_as_not_applied_is_found_by_a_second_look_and_recorded(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    // With a notice_url, where the late cancel's webhook is written (nothing listens there).
    let (_, paid) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({
                "merchant_uid": "cs-late", "amount": 10000, "card_number": test_cards::SHINHAN_CREDIT,
                "expiry": crate::helpers::future_expiry(), "birth": "800101", "pwd_2digit": "00",
                "notice_url": "http://127.0.0.1:9/hook"
            }),
        )
        .await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let imp_uid = paid["response"]["imp_uid"].as_str().unwrap();
    // KCP applies the cancel long after openport stopped waiting, and after the settle delay.
    let gate = "cs-late-cancel";
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldRequest { gate: gate.into() },
    ));
    let body = app.cancel(&token, imp_uid, 3000).await;
    assert_eq!(body["code"], 1, "{body}");
    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    assert_eq!(
        app.payment(&token, imp_uid).await["cancel_amount"],
        0,
        "not applied when the resolver asked"
    );
    kcp_applies_the_held_call(&app, gate, "KCP applied it since", || {
        app.sandbox.ledger()[0].balance == 7000
    })
    .await;

    // The second look, thirty settle delays later, finds it and records it.
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let now = app.payment(&token, imp_uid).await;
    assert_eq!(now["cancel_amount"], 3000, "{now}");
    assert_eq!(now["cancel_history"].as_array().unwrap().len(), 1, "{now}");
    assert!(app.conflicts().await.is_empty());
    // The merchant was told "not cancelled": it is told otherwise, though it asked for no webhook.
    let announced = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid))
        .filter(webhook_delivery::Column::Status.eq("cancelled"))
        .count(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(announced, 1);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn the_second_look_at_a_cancel_that_never_landed_changes_nothing_and_a_retried_cancel_is_counted_once(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cs-never", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    let body = app.cancel(&token, imp_uid, 3000).await;
    assert_eq!(body["code"], 1, "{body}");
    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    // Told "not cancelled", the merchant cancels again, and that one goes through.
    let again = app.cancel(&token, imp_uid, 3000).await;
    assert_eq!(again["code"], 0, "{again}");

    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let now = app.payment(&token, imp_uid).await;
    assert_eq!(now["cancel_amount"], 3000, "{now}");
    assert_eq!(app.sandbox.ledger()[0].balance, 7000);
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// A key-in charge of 1,000 won as `merchant_uid` (with a notice_url, so its webhooks are
/// written) whose KCP answer names another amount: the approval is net-cancelled, and KCP refuses
/// that (8500) every time. Returns the answer.
pub(crate) async fn a_charge_whose_net_cancel_kcp_refuses(
    app: &crate::helpers::TestApp,
    token: &str,
    merchant_uid: &str,
) -> serde_json::Value {
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::AnswerField {
            field: "amount".into(),
            value: "999".into(),
        },
    ));
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8500".into(),
                message: "취소할 수 없는 거래입니다".into(),
            },
        )
        .times(100),
    );
    app.post(
        "/subscribe/payments/onetime",
        Some(token),
        json!({
            "merchant_uid": merchant_uid, "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
            "expiry": crate::helpers::future_expiry(), "birth": "800101", "pwd_2digit": "00",
            "notice_url": "http://127.0.0.1:9/hook"
        }),
    )
    .await
    .1
}

/// The text every answer about an approval conflict carries: do not charge again.
const DO_NOT_CHARGE_AGAIN: &str = "확인 전에는 다시 결제하지 마세요";

async fn webhooks_of(app: &crate::helpers::TestApp, imp_uid: &str, status: &str) -> u64 {
    webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid))
        .filter(webhook_delivery::Column::Status.eq(status))
        .count(&app.app.gateway.db.read)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_net_cancel_kcp_refuses_is_a_conflict_for_the_operator_not_retried_for_ever() {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = a_charge_whose_net_cancel_kcp_refuses(&app, &token, "nc-refused").await;
    assert_eq!(
        body["code"], 1,
        "KCP holds an approval the record does not: not a plain failure: {body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(DO_NOT_CHARGE_AGAIN), "{body}");
    assert!(
        !message.contains("이중결제되지 않습니다"),
        "never 'retry is safe': {body}"
    );
    let imp_uid = imp_uid_in(&body["message"]);

    // Nothing is left for the resolver to send again: KCP was asked once.
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let refusals_left = app.sandbox.armed_faults()[0].times;
    assert_eq!(refusals_left, 99, "one net-cancel sent");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].state, TransactionState::Approved, "KCP refused");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert_eq!(conflicts[0].tno.as_deref(), Some(ledger[0].tno.as_str()));
    assert!(
        conflicts[0]
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("8500")),
        "{conflicts:?}"
    );
    // KCP holds the approval: the payment is not failed (which would free its merchant_uid) but
    // held pending (`ready`), naming KCP's approval and why, and no `failed` webhook is sent.
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "ready", "{p}");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str(), "names KCP's approval");
    assert!(
        p["fail_reason"]
            .as_str()
            .is_some_and(|r| r.contains("8500")),
        "{p}"
    );
    assert_eq!(webhooks_of(&app, &imp_uid, "failed").await, 0);
}

#[tokio::test]
async fn a_retry_of_a_merchant_uid_whose_approval_kcp_refused_to_net_cancel_is_refused_and_charges_nothing(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = a_charge_whose_net_cancel_kcp_refuses(&app, &token, "nc-retried").await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);

    // The merchant charges the merchant_uid again, at once and after the resolver ran.
    for _ in 0..2 {
        let (_, retry) = app
            .pay(&token, "nc-retried", 1000, test_cards::SHINHAN_CREDIT)
            .await;
        assert_eq!(retry["code"], 1, "{retry}");
        let message = retry["message"].as_str().unwrap();
        assert!(message.contains(DO_NOT_CHARGE_AGAIN), "{retry}");
        assert!(message.contains(&imp_uid), "{retry}");
        assert_eq!(app.sandbox.ledger().len(), 1, "nothing charged");
        app.advance(SETTLE_SECS + 1);
        app.resolve_all().await;
    }
    assert_ne!(app.payment(&token, &imp_uid).await["status"], "failed");
    // A cancel by merchant_uid finds the payment and is held for the operator (not "nothing to
    // cancel", which reads as "nothing was charged").
    let (_, cancel) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"merchant_uid": "nc-retried"}),
        )
        .await;
    assert_eq!(cancel["code"], 1, "{cancel}");
    assert!(
        cancel["message"].as_str().unwrap().contains("운영자 확인"),
        "{cancel}"
    );
    assert_eq!(app.sandbox.ledger().len(), 1);
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);
}

/// The operator cancels the approval in KCP's admin and says so: the payment fails (its
/// merchant_uid free again), and the merchant's charge of it goes through once.
#[tokio::test]
async fn an_approval_conflict_the_operator_found_cancelled_in_kcps_admin_fails_the_payment_and_frees_its_merchant_uid(
) {
    use openport::service::attempts::ReconciledPayment;
    let app = spawn_app().await;
    let token = app.token().await;
    let body = a_charge_whose_net_cancel_kcp_refuses(&app, &token, "nc-cancelled").await;
    let imp_uid = imp_uid_in(&body["message"]);
    let conflict = app.conflicts().await.remove(0);
    let gateway = &app.app.gateway;
    // The payment is held by this conflict: the operator must say what KCP's admin shows.
    assert!(gateway
        .mark_reconciled(conflict.id, "looked", None)
        .await
        .is_err());
    assert_eq!(app.conflicts().await.len(), 1);

    let tno = app.sandbox.ledger()[0].tno.clone();
    assert!(app.sandbox.cancel_in_admin(&tno));
    gateway
        .mark_reconciled(
            conflict.id,
            "cancelled in KCP's admin",
            Some(ReconciledPayment::Failed),
        )
        .await
        .unwrap();
    assert!(app.conflicts().await.is_empty());
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["pg_tid"], tno.as_str());
    // Not a scheduled charge: no webhook for its failure.
    assert_eq!(webhooks_of(&app, &imp_uid, "failed").await, 0);
    app.sandbox.clear_faults();
    let again = app.paid(&token, "nc-cancelled", 1000).await;
    assert_ne!(again["imp_uid"], imp_uid.as_str());
    assert_eq!(app.sandbox.ledger().len(), 2);
    app.assert_ledger_agrees().await;
}

/// The operator finds the approval kept in KCP's admin (for the payment's amount) and says so: the
/// payment is recorded paid, with its `paid` webhook, and takes cancels.
#[tokio::test]
async fn an_approval_conflict_the_operator_found_kept_in_kcps_admin_is_recorded_paid_with_its_webhook(
) {
    use openport::service::attempts::ReconciledPayment;
    let app = spawn_app().await;
    let token = app.token().await;
    let body = a_charge_whose_net_cancel_kcp_refuses(&app, &token, "nc-kept").await;
    let imp_uid = imp_uid_in(&body["message"]);
    let conflict = app.conflicts().await.remove(0);
    app.app
        .gateway
        .mark_reconciled(
            conflict.id,
            "kept: KCP's admin shows 1,000 won approved",
            Some(ReconciledPayment::Paid),
        )
        .await
        .unwrap();
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(p["pg_tid"], app.sandbox.ledger()[0].tno.as_str());
    assert!(p["paid_at"].as_i64().unwrap() > 0, "{p}");
    assert_eq!(webhooks_of(&app, &imp_uid, "paid").await, 1);
    // A second verdict is refused.
    assert!(app
        .app
        .gateway
        .mark_reconciled(conflict.id, "again", Some(ReconciledPayment::Failed))
        .await
        .is_err());
    app.sandbox.clear_faults();
    let cancelled = app.cancel(&token, &imp_uid, 1000).await;
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    app.assert_ledger_agrees().await;
}

/// An approval conflict holding its payment pending (`ready`): a charge as `merchant_uid` whose
/// net-cancel KCP refuses ([`a_charge_whose_net_cancel_kcp_refuses`]), on an app of its own.
struct HeldConflict {
    app: crate::helpers::TestApp,
    token: String,
    imp_uid: String,
    /// The conflict's attempt, which the operator reconciles.
    conflict: i64,
    /// KCP's approval.
    tno: String,
}

async fn an_approval_conflict_holding_its_payment_pending(merchant_uid: &str) -> HeldConflict {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = a_charge_whose_net_cancel_kcp_refuses(&app, &token, merchant_uid).await;
    let imp_uid = imp_uid_in(&body["message"]);
    let conflict = app.conflicts().await.remove(0).id;
    let tno = app.sandbox.ledger()[0].tno.clone();
    HeldConflict {
        app,
        token,
        imp_uid,
        conflict,
        tno,
    }
}

impl HeldConflict {
    /// The operator's `verdict` is refused, its message saying each of `said`, and nothing
    /// changes: the payment stays held pending, the attempt a conflict, no `paid` webhook.
    async fn assert_refused_changing_nothing(
        &self,
        verdict: openport::service::attempts::ReconciledPayment,
        said: &[&str],
    ) {
        use openport::service::ServiceError;
        let app = &self.app;
        let refused = app
            .app
            .gateway
            .mark_reconciled(self.conflict, "as KCP's admin shows", Some(verdict))
            .await;
        let Err(ServiceError::Refused(message)) = refused else {
            panic!("not refused: {refused:?}");
        };
        for said in said {
            assert!(message.contains(said), "{said}: {message}");
        }
        let p = app.payment(&self.token, &self.imp_uid).await;
        assert_eq!(p["status"], "ready", "{p}");
        assert_eq!(app.conflicts().await.len(), 1);
        assert_eq!(webhooks_of(app, &self.imp_uid, "paid").await, 0);
    }

    /// The operator overrides KCP's inquiry (`--despite-kcp`): recorded paid. The `paid_at` taken.
    async fn reconcile_as_paid_despite_kcp(&self) -> openport::service::attempts::ReconciledPaidAt {
        use openport::service::attempts::ReconciledPayment;
        self.app
            .app
            .gateway
            .mark_reconciled(
                self.conflict,
                "KCP's admin shows 1,000 won approved",
                Some(ReconciledPayment::PaidDespiteKcp),
            )
            .await
            .unwrap()
            .expect("a paid_at")
    }

    /// The conflict's attempt is reconciled, its note saying `noted`.
    async fn assert_reconciled_noting(&self, noted: &str) {
        let attempt =
            openport::store::payments::attempt_by_id(&self.app.app.gateway.db.read, self.conflict)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(attempt.state, "reconciled");
        assert!(
            attempt
                .result_message
                .as_deref()
                .is_some_and(|m| m.contains(noted)),
            "{attempt:?}"
        );
    }
}

/// The operator says the approval is kept in KCP's admin while KCP's inquiry by its tno answers
/// that it is cancelled there: recorded paid, the merchant would ship goods for money KCP does not
/// hold. Refused, saying what KCP answered and what to do, and nothing changes: the payment stays
/// held pending, the attempt a conflict, no webhook. The operator who checked KCP's admin and holds
/// the inquiry wrong overrides it (`--despite-kcp`): paid as before, when the conflict was
/// recorded (KCP tells no approval time), the override kept on the attempt.
#[tokio::test]
async fn an_approval_conflict_reconciled_as_kept_while_kcp_shows_it_cancelled_is_refused_unless_the_operator_overrides_kcp(
) {
    use openport::service::attempts::{PaidAtSource, ReconciledPayment};
    let held = an_approval_conflict_holding_its_payment_pending("nc-kcp-cancelled").await;
    let (app, token, imp_uid) = (&held.app, &held.token, &held.imp_uid);
    assert!(app.sandbox.cancel_in_admin(&held.tno));

    held.assert_refused_changing_nothing(
        ReconciledPayment::Paid,
        &[
            held.tno.as_str(),
            "cancelled",
            "KCP's admin",
            "--payment failed",
            "--despite-kcp",
        ],
    )
    .await;

    let paid_at = held.reconcile_as_paid_despite_kcp().await;
    assert_eq!(paid_at.source, PaidAtSource::ConflictRecorded);
    let p = app.payment(token, imp_uid).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(p["paid_at"], paid_at.at, "{p}");
    assert_eq!(webhooks_of(app, imp_uid, "paid").await, 1);
    assert!(app.conflicts().await.is_empty());
    held.assert_reconciled_noting("despite KCP's inquiry").await;
}

/// Likewise when KCP's inquiry by the tno answers that it has no such trade (8201).
#[tokio::test]
async fn an_approval_conflict_reconciled_as_kept_while_kcp_has_no_such_trade_is_refused_and_changes_nothing(
) {
    use openport::service::attempts::ReconciledPayment;
    let held = an_approval_conflict_holding_its_payment_pending("nc-kcp-unknown").await;
    kcp_answers_no_such_trade(&held.app);

    held.assert_refused_changing_nothing(ReconciledPayment::Paid, &["no such trade"])
        .await;
}

/// The operator says the approval is cancelled in KCP's admin while KCP's inquiry by its tno shows
/// it standing: recorded failed, the merchant_uid would be free and charged again while the buyer
/// stays charged for this one (a double charge). Refused, naming the tno, what KCP answered and
/// what to do, and nothing changes: the payment stays held, the attempt a conflict, a charge of its
/// merchant_uid still refused, no webhook. The operator who checked KCP's admin and holds the
/// inquiry wrong overrides it (`--despite-kcp`): failed as before, the override kept on the
/// attempt.
#[tokio::test]
async fn an_approval_conflict_reconciled_as_cancelled_while_kcp_shows_it_standing_is_refused_unless_the_operator_overrides_kcp(
) {
    use openport::service::attempts::ReconciledPayment;
    let held = an_approval_conflict_holding_its_payment_pending("nc-kcp-standing").await;
    let (app, token, imp_uid) = (&held.app, &held.token, &held.imp_uid);

    held.assert_refused_changing_nothing(
        ReconciledPayment::Failed,
        &[
            held.tno.as_str(),
            "stands, 1000 won of it not cancelled",
            "Cancel the approval in KCP's admin first",
            "--despite-kcp",
        ],
    )
    .await;
    app.sandbox.clear_faults();
    let (_, retry) = app
        .pay(token, "nc-kcp-standing", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(retry["code"], 1, "the merchant_uid is still held: {retry}");
    assert_eq!(app.sandbox.ledger().len(), 1, "nothing charged again");

    app.app
        .gateway
        .mark_reconciled(
            held.conflict,
            "KCP's admin shows it cancelled",
            Some(ReconciledPayment::FailedDespiteKcp),
        )
        .await
        .unwrap();
    assert_eq!(app.payment(token, imp_uid).await["status"], "failed");
    assert!(app.conflicts().await.is_empty());
    held.assert_reconciled_noting("recorded failed despite KCP's inquiry")
        .await;
}

/// The operator says the approval is kept for the payment's amount while KCP's inquiry shows it
/// partly cancelled there (700 of 1,000 won left): recorded paid for 1,000 won, the record would
/// disagree with the money KCP holds. Refused, saying what KCP holds, and nothing changes; the
/// override records it paid, at KCP's approval time.
#[tokio::test]
async fn an_approval_conflict_reconciled_as_kept_while_kcp_holds_less_than_the_payments_amount_is_refused_unless_the_operator_overrides_kcp(
) {
    use openport::service::attempts::{PaidAtSource, ReconciledPayment};
    let held = an_approval_conflict_holding_its_payment_pending("nc-kcp-partly").await;
    let (app, token, imp_uid) = (&held.app, &held.token, &held.imp_uid);
    assert!(app.sandbox.cancel_in_admin_partly(&held.tno, Some(300)));

    held.assert_refused_changing_nothing(
        ReconciledPayment::Paid,
        &[
            held.tno.as_str(),
            "stands for 700 won, not the payment's 1000 won",
            "--payment failed",
            "--despite-kcp",
        ],
    )
    .await;

    let paid_at = held.reconcile_as_paid_despite_kcp().await;
    assert_eq!(paid_at.source, PaidAtSource::KcpApproval);
    assert_eq!(
        paid_at.at,
        app.sandbox.ledger()[0].approved_at.timestamp(),
        "KCP approved it then"
    );
    assert_eq!(app.payment(token, imp_uid).await["status"], "paid");
    assert_eq!(webhooks_of(app, imp_uid, "paid").await, 1);
    held.assert_reconciled_noting("recorded paid despite KCP's inquiry")
        .await;
}

/// KCP answers a charge with another order's trade, one openport holds as another payment's
/// (paid): the answer is not this charge's, so that trade is never net-cancelled (the other
/// payment would be refunded at KCP while showing paid). It is listed for the operator, and the
/// charge's own outcome is asked of KCP by its own order number.
#[tokio::test]
async fn an_answer_naming_another_payments_trade_never_cancels_that_trade() {
    let app = spawn_app().await;
    let token = app.token().await;
    let other = app.paid(&token, "foreign-holder", 1000).await;
    let other_tno = other["pg_tid"].as_str().unwrap().to_string();
    let other_order = app.sandbox.ledger()[0].order_no.clone();
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::AnswerFields {
            fields: [
                ("tno".to_string(), other_tno.clone()),
                ("order_no".to_string(), other_order),
            ]
            .into(),
        },
    ));

    let (_, body) = app
        .pay(&token, "foreign-answer", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let ledger = app.sandbox.ledger();
    let other_at_kcp = ledger.iter().find(|e| e.tno == other_tno).unwrap();
    assert_eq!(other_at_kcp.state, TransactionState::Approved, "{ledger:?}");
    assert_eq!(
        app.payment(&token, other["imp_uid"].as_str().unwrap())
            .await["status"],
        "paid"
    );
    // This charge's own approval (KCP made it) was found by its order number and net-cancelled:
    // the merchant was told nothing definite.
    let own = app.payment(&token, &imp_uid).await;
    assert_eq!(own["status"], "failed", "{own}");
    let own_at_kcp = ledger.iter().find(|e| e.tno != other_tno).unwrap();
    assert_eq!(own_at_kcp.state, TransactionState::Cancelled);
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert_eq!(conflicts[0].tno.as_deref(), Some(other_tno.as_str()));
    app.assert_ledger_agrees().await;
}

/// The scheduled twin of [`an_answer_naming_another_payments_trade_never_cancels_that_trade`]:
/// the resolver honours the charge's own approval (nobody was told a scheduled charge failed) and
/// records it paid. The misdirected answer stays listed for the operator, but it is about another
/// trade, which nothing changed: it does not hold this payment's refunds.
#[tokio::test]
async fn a_misdirected_answer_does_not_hold_the_refunds_of_the_scheduled_charge_its_own_approval_paid(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let other = app.paid(&token, "foreign-holder-s", 1000).await;
    let other_tno = other["pg_tid"].as_str().unwrap().to_string();
    let other_order = app.sandbox.ledger()[0].order_no.clone();
    crate::ownership::schedule_due_now(&app, &token, "foreign-cust", "foreign-scheduled").await;
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::AnswerFields {
            fields: [
                ("tno".to_string(), other_tno.clone()),
                ("order_no".to_string(), other_order),
            ]
            .into(),
        },
    ));
    app.app.gateway.run_due_schedules(10).await.unwrap();
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let (_, found) = app
        .get("/payments/find/foreign-scheduled", Some(&token))
        .await;
    let imp_uid = found["response"]["imp_uid"].as_str().unwrap().to_string();
    let own = app.payment(&token, &imp_uid).await;
    assert_eq!(own["status"], "paid", "its own approval, honoured: {own}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "listed for the operator: {conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert_eq!(conflicts[0].tno.as_deref(), Some(other_tno.as_str()));

    let refunded = app.cancel(&token, &imp_uid, 1000).await;
    assert_eq!(refunded["code"], 0, "{refunded}");
    assert_eq!(refunded["response"]["status"], "cancelled", "{refunded}");
    let ledger = app.sandbox.ledger();
    let other_at_kcp = ledger.iter().find(|e| e.tno == other_tno).unwrap();
    assert_eq!(other_at_kcp.state, TransactionState::Approved, "{ledger:?}");
    app.assert_ledger_agrees().await;
}

/// What a test waits at most for a write that must not wait for a second pooled connection: well
/// under the pool's 30 s acquire timeout, which a stalled write would reach first.
const NO_POOL_STALL: Duration = Duration::from_secs(15);

/// An instance whose PostgreSQL pool has one connection (on SQLite the setting does nothing).
async fn one_pooled_connection() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| c.database_pool_size = 1).await
}

/// A window approval whose merchant row leaves the cache while KCP approves (an operator changed
/// the merchant; its minute ran out) is recorded paid with the only pooled connection: the
/// webhook's merchant is read inside the approval's transaction, not on a second connection,
/// which used to wait for the acquire timeout and then net-cancel the buyer's payment. A bank
/// transfer: a card's approval resolves its webhook before its statement already.
#[tokio::test]
async fn a_window_approval_is_recorded_while_the_merchant_is_read_again_with_one_pooled_connection()
{
    let app = one_pooled_connection().await;
    app.sandbox.inject(FaultRule::new(
        paths::ENC_PAYMENT,
        Fault::Delay { ms: 1000 },
    ));
    let approve = crate::checkout::request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "window-pool-1", "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
    );
    let forget = async {
        app.until_the_faults_are_used().await;
        app.app.gateway.forget_merchant(None);
    };
    let (rsp, ()) = tokio::time::timeout(NO_POOL_STALL, async { tokio::join!(approve, forget) })
        .await
        .expect("the approval is recorded without waiting for a second connection");
    assert_eq!(rsp["status"], "paid", "{rsp}");
    app.assert_ledger_agrees().await;
}

/// The same for a cancel that asks for its webhook: recorded with the only pooled connection
/// although the merchant's row left the cache while KCP cancelled.
#[tokio::test]
async fn a_cancel_is_recorded_while_the_merchant_is_read_again_with_one_pooled_connection() {
    let app = one_pooled_connection().await;
    let token = app.token().await;
    let paid = app.paid(&token, "cancel-pool-1", 1000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap().to_string();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Delay { ms: 1000 }));
    let cancel = app.post(
        "/payments/cancel",
        Some(&token),
        json!({"imp_uid": imp_uid, "amount": 1000, "enable_webhook": true}),
    );
    let forget = async {
        app.until_the_faults_are_used().await;
        app.app.gateway.forget_merchant(None);
    };
    let ((_, body), ()) =
        tokio::time::timeout(NO_POOL_STALL, async { tokio::join!(cancel, forget) })
            .await
            .expect("the cancel is recorded without waiting for a second connection");
    assert_eq!(body["response"]["status"], "cancelled", "{body}");
    app.assert_ledger_agrees().await;
}

/// A second look at a partial cancel (`cancel_recheck`) that finds it landed late at KCP, while
/// the merchant cancels the whole payment. The interleaving is the sandbox's, by gates: the second
/// look's inquiry is answered (7,000 left: the 3,000 landed) and held; meanwhile the merchant's
/// cancel is planned from the record (untouched: `STSC`), reaches KCP, which refunds all it holds,
/// and its answer is held; then the second look gets its answer, then the cancel its `0000`. The
/// second look used to record its 3,000 under the planned cancel, whose confirmation then failed
/// its compare-and-set: answered "unknown" although KCP confirmed it, and later frozen by the
/// resolver as a conflict (KCP 0, openport 7,000). Now the look records only while no cancel of
/// the payment is open, and is postponed: the cancel is recorded as KCP confirmed it.
#[tokio::test]
async fn a_cancel_planned_while_the_second_look_records_a_late_cancel_is_recorded_as_kcp_confirmed_it_not_left_as_a_conflict(
) {
    let (app, imp_uid, tno) = a_partial_cancel_left_to_its_second_look("cs-race").await;
    // KCP refunds the 3,000 after all.
    assert!(app.sandbox.cancel_in_admin_partly(&tno, Some(3000)));

    let (_, second_look, cancel) = a_cancel_at_kcp_while_the_second_look_inquires(
        &app,
        &imp_uid,
        &tno,
        Fault::HoldAnswer {
            gate: "second-look".into(),
        },
        0,
    )
    .await;
    assert_eq!(
        app.sandbox.ledger()[0].balance,
        0,
        "KCP refunded all it held"
    );
    app.sandbox.open_gate("second-look");
    second_look.await.unwrap().unwrap();
    app.sandbox.open_gate("cancel");
    let (_, body) = cancel.await.unwrap();

    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 10000, "{body}");
    assert!(app.conflicts().await.is_empty());
    // The second look, taken again, finds nothing left to record.
    app.advance(30 * LOOK_SETTLE_SECS);
    app.resolve_all().await;
    let token = app.token().await;
    let now = app.payment(&token, &imp_uid).await;
    assert_eq!(now["cancel_amount"], 10000, "{now}");
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// The same race with the gates in the other order: the second look has found no cancel open
/// and asked KCP, whose inquiry is held unprocessed; meanwhile the merchant's partial cancel of
/// 2,000 reaches KCP, which applies it (its answer held); then the inquiry is answered (8,000
/// left). The record still held 10,000, so the look took 8,000 for neither outcome of its 3,000
/// and closed itself as a conflict: the payment then refused every later cancel for an operator,
/// though KCP and the record agreed once the cancel was recorded. Now every verdict of the look,
/// as its record, is written only holding the payment's row as read with no cancel open, and the
/// look is postponed instead: the cancel is recorded, nothing is listed, and later cancels go on.
#[tokio::test]
async fn a_cancel_sent_while_the_second_look_inquires_does_not_make_the_look_a_conflict() {
    let (app, imp_uid, tno) = a_partial_cancel_left_to_its_second_look("cs-race-inquiry").await;
    assert!(app.conflicts().await.is_empty());

    let (token, second_look, cancel) = a_cancel_at_kcp_while_the_second_look_inquires(
        &app,
        &imp_uid,
        &tno,
        Fault::HoldRequest {
            gate: "second-look".into(),
        },
        2000,
    )
    .await;
    assert_eq!(app.sandbox.ledger()[0].balance, 8000, "KCP applied it");
    app.sandbox.open_gate("second-look");
    second_look.await.unwrap().unwrap();
    app.sandbox.open_gate("cancel");
    let (_, body) = cancel.await.unwrap();

    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["cancel_amount"], 2000, "{body}");
    assert!(app.conflicts().await.is_empty());
    let further = app.cancel(&token, &imp_uid, 1000).await;
    assert_eq!(further["code"], 0, "{further}");
    assert_eq!(further["response"]["cancel_amount"], 3000, "{further}");
    // The second look, taken again, finds its 3,000 still not applied.
    app.advance(30 * LOOK_SETTLE_SECS);
    app.resolve_all().await;
    assert!(app.conflicts().await.is_empty());
    let token = app.token().await;
    assert_eq!(app.payment(&token, &imp_uid).await["cancel_amount"], 3000);
    app.assert_ledger_agrees().await;
}

/// The second look's settle delay in [`a_partial_cancel_left_to_its_second_look`].
const LOOK_SETTLE_SECS: i64 = 60;

/// A paid 10,000 whose partial cancel of 3,000 had its call lost and was closed as not applied
/// once settled (KCP still held 10,000), its second look due thirty settle delays later; with a
/// KCP timeout long enough that the gateway waits for held answers. Returns the app, the
/// payment's imp_uid and its tno.
async fn a_partial_cancel_left_to_its_second_look(
    merchant_uid: &str,
) -> (crate::helpers::TestApp, String, String) {
    let app = crate::helpers::spawn_app_with(|c| {
        c.kcp.timeout_ms = 9_000;
        c.resolver.settle_secs = LOOK_SETTLE_SECS;
    })
    .await;
    let token = app.token().await;
    let p = app.paid(&token, merchant_uid, 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_string();
    let tno = p["pg_tid"].as_str().unwrap().to_string();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    let body = app.cancel(&token, &imp_uid, 3000).await;
    assert_eq!(body["code"], 1, "{body}");
    app.advance(LOOK_SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    assert_eq!(app.payment(&token, &imp_uid).await["cancel_amount"], 0);
    (app, imp_uid, tno)
}

/// Runs the due second look in the background until its inquiry of `tno` meets `inquiry_fault`
/// (gate `second-look`), then sends the merchant's cancel of `amount` (0: the whole balance) until
/// it reaches KCP, whose answer is held (gate `cancel`). Returns a fresh token, the second look
/// and the cancel request.
async fn a_cancel_at_kcp_while_the_second_look_inquires(
    app: &crate::helpers::TestApp,
    imp_uid: &str,
    tno: &str,
    inquiry_fault: Fault,
    amount: i64,
) -> (
    String,
    tokio::task::JoinHandle<openport::service::ServiceResult<usize>>,
    tokio::task::JoinHandle<(reqwest::StatusCode, serde_json::Value)>,
) {
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, inquiry_fault).when("tno", tno));
    app.advance(30 * LOOK_SETTLE_SECS);
    let token = app.token().await;
    let gateway = app.app.gateway.clone();
    let second_look = tokio::spawn(async move { gateway.resolve_due(10).await });
    tokio::time::timeout(
        Duration::from_secs(5),
        app.sandbox.until_held("second-look"),
    )
    .await
    .expect("the second look asks KCP");
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldAnswer {
            gate: "cancel".into(),
        },
    ));
    let cancel = app.cancel_in_background(&token, imp_uid, amount);
    tokio::time::timeout(Duration::from_secs(5), app.sandbox.until_held("cancel"))
        .await
        .expect("the merchant's cancel reaches KCP");
    (token, second_look, cancel)
}

/// A net-cancel of an approval no payment holds (kind `net_cancel`, service/orphans.rs) whose
/// answer is lost more than once. Its first STSC was only looked at again a settle delay after
/// the attempt was written; a resolver's retry whose answer was lost too was looked at again after
/// the backoff (20 s), and a third STSC was sent while KCP might still be applying the second: a
/// refusal of it other than "already cancelled" reads as "the approval stands", a conflict over a
/// trade KCP cancels. Now every STSC of it waits a settle delay (production's 120 s here) before
/// the next; the held one, let through, is what cancels the trade, and the next meets KCP's
/// "already cancelled".
#[tokio::test]
async fn a_net_cancel_of_an_approval_no_payment_holds_is_never_sent_again_while_kcp_may_still_apply_the_last(
) {
    const SETTLE: i64 = 120;
    let app = crate::helpers::spawn_app_with(|c| c.resolver.settle_secs = SETTLE).await;
    let token = app.token().await;
    let gateway = &app.app.gateway;
    // An approval KCP applies after the payment was failed for finding none: the second look an
    // hour later finds it, and net-cancels it on an attempt of its own.
    let late = "orphan-resent-approval";
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HoldRequest { gate: late.into() },
    ));
    let (_, body) = app
        .pay(&token, "orphan-resent", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let imp_uid = imp_uid_in(&body["message"]);
    app.advance(SETTLE + 20);
    gateway.resolve_due(10).await.unwrap();
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
    kcp_applies_the_held_call(&app, late, "KCP approved it very late", || {
        app.sandbox.ledger().len() == 1
    })
    .await;
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    app.advance(30 * SETTLE);
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 1, "the second look");
    let open = gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].kind, "net_cancel");

    // The resolver sends it again a settle delay later; KCP holds that STSC unprocessed past the
    // gateway's timeout.
    let gate = "orphan-stsc";
    app.advance(SETTLE + 1);
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldRequest { gate: gate.into() },
    ));
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(5), app.sandbox.until_held(gate))
        .await
        .expect("the STSC reached KCP");

    // Past the retry's backoff, well within a settle delay: nothing is sent while KCP holds it.
    app.advance(30);
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 0, "nothing due yet");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);

    // KCP applies the held STSC; the resolver's next one, a settle delay after it, meets "already
    // cancelled" and the net-cancel is done.
    app.sandbox.open_gate(gate);
    for _ in 0..100 {
        if app.sandbox.ledger()[0].state == TransactionState::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.advance(SETTLE);
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 1);
    assert!(app.conflicts().await.is_empty());
    assert_eq!(gateway.open_attempts(10).await.unwrap().len(), 0);
    let token = app.token().await; // the first one expired meanwhile
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["pg_tid"], app.sandbox.ledger()[0].tno.as_str());
    app.assert_ledger_agrees().await;
}

/// The resolver net-cancels an approval nobody awaits (the request's answer was lost, the
/// merchant told "unknown") and dies while its STSC is still at KCP. The attempt names the tno,
/// but it was due as it had been, so it was claimed again as soon as the dead holder's lease ran
/// out (91 s with production's timeouts, here the lease's few seconds), well within the settle
/// delay, and a second STSC was sent while KCP might still be applying the first: a refusal of it
/// other than "already cancelled" reads as "the approval stands", a conflict over a trade KCP
/// cancels. Now the STSC holds the attempt back a settle delay (production's 120 s here); the held
/// one, let through, is what cancels the trade, and the resolver then finds it cancelled.
#[tokio::test]
async fn a_net_cancel_whose_holder_dies_during_the_stsc_is_not_sent_again_before_a_settle_delay() {
    const SETTLE: i64 = 120;
    const DEFAULT_LEASE: i64 = 91;
    let app = crate::helpers::spawn_app_with(|c| c.resolver.settle_secs = SETTLE).await;
    let token = app.token().await;
    let gateway = &app.app.gateway;
    let body = approved_after_the_timeout(&app, &token, "nc-holder-dies").await;
    let imp_uid = imp_uid_in(&body["message"]);

    // A settle delay on, the resolver claims the approval's attempt, finds KCP's approval and
    // sends its STSC, which KCP holds unprocessed; the resolver dies meanwhile.
    let gate = "nc-holder-dies";
    app.advance(SETTLE + 1);
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldRequest { gate: gate.into() },
    ));
    let resolver = {
        let gateway = gateway.clone();
        tokio::spawn(async move { gateway.resolve_due(10).await })
    };
    tokio::time::timeout(Duration::from_secs(5), app.sandbox.until_held(gate))
        .await
        .expect("the STSC reached KCP");
    resolver.abort();
    assert!(resolver.await.unwrap_err().is_cancelled());
    let open = gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].tno.is_some(), "named before the STSC: {open:?}");

    // Its lease has run out, the settle delay after the STSC has not: nothing is sent.
    app.advance(DEFAULT_LEASE);
    assert_eq!(
        gateway.resolve_due(10).await.unwrap(),
        0,
        "no second STSC while KCP may still apply the first"
    );
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Approved);

    // KCP applies the held STSC; a settle delay after it, the resolver finds the trade cancelled.
    app.sandbox.open_gate(gate);
    for _ in 0..100 {
        if app.sandbox.ledger()[0].state == TransactionState::Cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.advance(SETTLE - DEFAULT_LEASE);
    assert_eq!(gateway.resolve_due(10).await.unwrap(), 1);
    assert!(app.conflicts().await.is_empty());
    assert_eq!(gateway.open_attempts(10).await.unwrap().len(), 0);
    let token = app.token().await; // the first one expired meanwhile
    let p = app.payment(&token, &imp_uid).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["pg_tid"], app.sandbox.ledger()[0].tno.as_str());
    app.assert_ledger_agrees().await;
}

/// A 5xx from KCP does not say nothing happened: a 504 typically comes from KCP's front timing out
/// while its backend completes the approval (sandbox fault `http_status_after`, r3-sandbox finding
/// 3). Every other 5xx test runs against a KCP that did nothing, where "failed" is always right;
/// here the buyer is charged, so the payment is settled paid by inquiry, never failed with an
/// approval standing at KCP, and the resolver leaves it so.
#[tokio::test]
async fn an_approval_kcp_made_before_answering_a_504_is_settled_paid_by_inquiry_never_failed() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HttpStatusAfter { status: 504 },
    ));
    let (_, body) = app
        .pay(&token, "504-after", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP approved it before the 504");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["pg_tid"], ledger[0].tno.as_str());
    let imp_uid = body["response"]["imp_uid"].as_str().unwrap();

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let p = app.payment(&token, imp_uid).await;
    assert_eq!(p["status"], "paid", "{p}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "charged once");
    assert_eq!(ledger[0].state, TransactionState::Approved);
    app.assert_ledger_agrees().await;
}
