//! An approval answer for this payment's own order that names a KCP trade another payment holds
//! (review r4: a cross-wired answer) is never recorded as this payment's: two payments paid under
//! one `pg_tid` refunded the first buyer's trade when the second payment was cancelled. The
//! payment's own outcome is asked of KCP by its own order number, and the answer is listed for the
//! operator; the database refuses a second payment's record of a trade (migration 000039).
use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use serde_json::json;

use crate::helpers::{imp_uid_in, spawn_app, test_cards, TestApp, SETTLE_SECS};

/// Arms KCP's next answer on `path` to name trade `tno`, whatever trade KCP made.
fn next_answer_names(app: &TestApp, path: &str, tno: &str) {
    app.sandbox.inject(FaultRule::new(
        path,
        Fault::AnswerField {
            field: "tno".into(),
            value: tno.into(),
        },
    ));
}

/// KCP's ledger entry of trade `tno`.
fn at_kcp(app: &TestApp, tno: &str) -> kcp_sandbox::LedgerEntry {
    let ledger = app.sandbox.ledger();
    ledger
        .iter()
        .find(|e| e.tno == tno)
        .cloned()
        .unwrap_or_else(|| panic!("{tno} not in {ledger:?}"))
}

/// The trade KCP made for the second charge: the ledger entry that is not `first`'s.
fn the_other_trade(app: &TestApp, first: &str) -> kcp_sandbox::LedgerEntry {
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    ledger.into_iter().find(|e| e.tno != first).unwrap()
}

/// Onetime A paid by the merchant of token `first`; KCP approves onetime B of the merchant of
/// token `second` under its own trade but answers with A's. B is answered "unknown" (code 1
/// naming its imp_uid), never paid with A's trade; its own trade, found by its order number, is
/// net-cancelled (the merchant was told nothing definite); A's trade is untouched, a cancel of B
/// refunds nothing of it, and the answer is listed for the operator.
async fn a_charge_answered_with_a_paid_trade_keeps_its_hands_off_it(
    app: &TestApp,
    first: &str,
    second: &str,
) {
    let a = app.paid(first, "clash-a", 1000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    next_answer_names(app, paths::HUB_PAYMENT, &t_a);

    let (_, body) = app
        .pay(second, "clash-b", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "an unknown outcome, never paid: {body}");
    let b = imp_uid_in(&body["message"]);
    assert_ne!(app.payment(second, &b).await["pg_tid"], t_a.as_str());
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let t_b = the_other_trade(app, &t_a);
    let own = app.payment(second, &b).await;
    assert_eq!(own["status"], "failed", "{own}");
    assert_eq!(own["pg_tid"], t_b.tno.as_str(), "{own}");
    assert_eq!(t_b.state, TransactionState::Cancelled, "net-cancelled");
    let refused = app.cancel(second, &b, 100).await;
    assert_eq!(refused["code"], 1, "{refused}");
    let a_at_kcp = at_kcp(app, &t_a);
    assert_eq!(a_at_kcp.state, TransactionState::Approved);
    assert_eq!(a_at_kcp.balance, 1000, "A's trade untouched");
    let a_now = app.payment(first, a["imp_uid"].as_str().unwrap()).await;
    assert_eq!(a_now["status"], "paid");
    assert_eq!(a_now["cancel_amount"], 0);
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "listed for the operator: {conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, b);
    assert_eq!(conflicts[0].tno.as_deref(), Some(t_a.as_str()));
    app.assert_ledger_agrees().await;
}

/// The repro of review r4: both payments of one merchant.
#[tokio::test]
async fn a_key_in_answer_naming_another_payments_trade_is_never_recorded_as_this_payments() {
    let app = spawn_app().await;
    let token = app.token().await;
    a_charge_answered_with_a_paid_trade_keeps_its_hands_off_it(&app, &token, &token).await;
}

/// Merchants may share a KCP site (test mode's `T0000`, two shops on one KCP contract), and KCP
/// numbers its trades across sites: an answer to one merchant's charge naming another merchant's
/// trade is refused as well (review of the trade-clash change, F1), or a cancel of it would
/// refund the other merchant's buyer.
#[tokio::test]
async fn a_key_in_answer_naming_another_merchants_trade_on_the_same_site_is_never_recorded() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (key, secret) = app.second_merchant().await;
    let other = app.token_for(&key, &secret).await;
    a_charge_answered_with_a_paid_trade_keeps_its_hands_off_it(&app, &token, &other).await;
}

/// The scheduled twin: nobody was told a scheduled charge failed, so the resolver honours its own
/// trade, found by its order number, and records it paid; a partial cancel refunds that trade,
/// never A's.
#[tokio::test]
async fn a_scheduled_charge_answered_with_another_payments_trade_is_paid_with_its_own_and_refunds_it(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-sa", 1000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    crate::ownership::schedule_due_now(&app, &token, "clash-cust", "clash-sb").await;
    next_answer_names(&app, paths::HUB_PAYMENT, &t_a);
    app.app.gateway.run_due_schedules(10).await.unwrap();
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let (_, found) = app.get("/payments/find/clash-sb", Some(&token)).await;
    let b = found["response"]["imp_uid"].as_str().unwrap().to_string();
    let t_b = the_other_trade(&app, &t_a);
    let own = app.payment(&token, &b).await;
    assert_eq!(own["status"], "paid", "{own}");
    assert_eq!(own["pg_tid"], t_b.tno.as_str(), "its own trade: {own}");

    let refunded = app.cancel(&token, &b, 100).await;
    assert_eq!(refunded["code"], 0, "{refunded}");
    assert_eq!(
        at_kcp(&app, &t_b.tno).balance,
        900,
        "B's own trade refunded"
    );
    let a_at_kcp = at_kcp(&app, &t_a);
    assert_eq!(a_at_kcp.state, TransactionState::Approved);
    assert_eq!(a_at_kcp.balance, 1000, "A's trade untouched");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "listed for the operator: {conflicts:?}");
    assert_eq!(conflicts[0].tno.as_deref(), Some(t_a.as_str()));
    app.assert_ledger_agrees().await;
}

/// The same for a payment window (a bank transfer: not a card approval): the window's answer
/// names A's trade, so it is not recorded; B's own trade is settled by its order number.
#[tokio::test]
async fn a_window_answer_naming_another_payments_trade_is_never_recorded_as_this_payments() {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-wa", 3000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    next_answer_names(&app, paths::ENC_PAYMENT, &t_a);
    let rsp = crate::checkout::request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "clash-wb", "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await;
    let (_, found) = app.get("/payments/find/clash-wb", Some(&token)).await;
    let b = found["response"].clone();
    assert_ne!(b["pg_tid"], t_a.as_str(), "{rsp} {b}");
    assert_ne!(b["status"], "paid", "{rsp} {b}");
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let t_b = the_other_trade(&app, &t_a);
    let own = app.payment(&token, b["imp_uid"].as_str().unwrap()).await;
    assert_eq!(own["pg_tid"], t_b.tno.as_str(), "{own}");
    assert_eq!(at_kcp(&app, &t_a).balance, 3000, "A's trade untouched");
    assert_eq!(app.conflicts().await.len(), 1);
    app.assert_ledger_agrees().await;
}

/// Where the service's check could be raced (two approvals recorded at once), the database
/// refuses: a second payment given a trade another payment holds is a write that fails, as a
/// trade clash, and changes nothing.
#[tokio::test]
async fn the_database_refuses_a_second_payment_a_trade_another_payment_holds() {
    use openport::store::entity::payment;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-da", 1000).await;
    let b = app.paid(&token, "clash-db", 1000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    let db = &app.app.gateway.db.write;
    let rows = payment::Entity::find().all(db).await.unwrap();
    let row_b = rows
        .into_iter()
        .find(|p| p.imp_uid == b["imp_uid"].as_str().unwrap())
        .unwrap();

    let mut taken: payment::ActiveModel = row_b.clone().into();
    taken.pg_tid = Set(Some(t_a.clone()));
    let refused = taken.update(db).await.unwrap_err();
    assert!(openport::store::is_trade_clash(&refused), "{refused}");
    let still = app.payment(&token, &row_b.imp_uid).await;
    assert_eq!(still["pg_tid"], b["pg_tid"], "{still}");

    // A payment given back a trade it held before is not refused.
    let mut again: payment::ActiveModel = row_b.clone().into();
    again.pg_tid = Set(Some("20990101000001".into()));
    again.update(db).await.unwrap();
    let mut back: payment::ActiveModel = row_b.clone().into();
    back.pg_tid = Set(row_b.pg_tid.clone());
    back.update(db).await.unwrap();
}
