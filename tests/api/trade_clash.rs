//! An approval answer for this payment's own order that names a KCP trade another payment holds
//! (review r4: a cross-wired answer) is never recorded as this payment's: two payments paid under
//! one `pg_tid` refunded the first buyer's trade when the second payment was cancelled. The
//! payment's own outcome is asked of KCP by its own order number, and the answer is listed for the
//! operator; the database refuses a second payment's record of a trade (migration 000039).

use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    imp_uid_in, kcp_applies_the_held_call, spawn_app, test_cards, TestApp, SETTLE_SECS,
};

/// Past the first look of an attempt left open (its settle delay, and the resolver's first
/// backoff: `retry_backoff(1)`, 10 s).
const PAST_THE_FIRST_BACKOFF: i64 = 11 + SETTLE_SECS;

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

/// Arms KCP's next inquiry answer to name trade `tno`, whatever trade it is about.
fn next_inquiry_names(app: &TestApp, tno: &str) {
    next_answer_names(app, paths::INQUIRY, tno);
}

/// Another payment's record of trade `tno` commits: payment `imp_uid`'s row is given it, as the
/// record of an answer naming it would, between a holder's look and its own write.
async fn recorded_meanwhile_on(app: &TestApp, imp_uid: &str, tno: &str) {
    use openport::store::entity::payment;
    use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
    let db = &app.app.gateway.db.write;
    let row = payment::Entity::find()
        .filter(payment::Column::ImpUid.eq(imp_uid))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let mut taken: payment::ActiveModel = row.into();
    taken.pg_tid = Set(Some(tno.to_string()));
    taken.update(db).await.unwrap();
}

/// The misdirected answer listed for payment `imp_uid` naming `tno`: its note.
async fn listed(app: &TestApp, imp_uid: &str, tno: &str) -> String {
    let conflicts = app.conflicts().await;
    let found = conflicts
        .iter()
        .find(|c| c.imp_uid == imp_uid && c.tno.as_deref() == Some(tno))
        .unwrap_or_else(|| panic!("({imp_uid}, {tno}) not listed: {conflicts:?}"));
    assert_eq!(found.kind, "misdirected_answer", "{found:?}");
    found.result_message.clone().unwrap_or_default()
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

/// Review r1 F2: KCP's inquiry answers "cancelled" for this payment's order but names a trade
/// another payment holds. It was written on the payment all the same, which the database refused:
/// a database error on every pass, answered HTTP 500 to a merchant's retry, and nothing listed.
/// Now the trade is never recorded on it, the answer is listed, and the payment's own outcome is
/// asked again by its order number: its own trade, cancelled.
#[tokio::test]
async fn a_cancelled_inquiry_naming_another_payments_trade_is_listed_not_a_database_error() {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-ca", 1000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let (_, body) = app
        .pay(&token, "clash-cb", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "left pending: {body}");
    let b = imp_uid_in(&body["message"]);
    let t_b = the_other_trade(&app, &t_a).tno;
    assert!(app.sandbox.cancel_in_admin(&t_b));
    next_inquiry_names(&app, &t_a);
    app.advance(SETTLE_SECS + 1);

    let (status, retry) = app
        .pay(&token, "clash-cb", 1000, test_cards::SHINHAN_CREDIT)
        .await;

    assert_eq!(status, StatusCode::OK, "never a 500: {retry}");
    assert_eq!(retry["code"], 1, "{retry}");
    asked_and_listed_then_settled_by_its_own_order(&app, &token, &b, &t_a, &t_b, "failed").await;
}

/// The virtual-account twin (review r1 F2): an issuance whose answer was lost, whose account was
/// closed at KCP, and whose inquiry answers "closed" naming another payment's trade.
#[tokio::test]
async fn a_closed_account_inquiry_naming_another_payments_trade_is_listed_not_a_database_error() {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-va", 1000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    let b = crate::vbanks::an_issuance_whose_answer_and_inquiry_are_lost(&app, &token, "clash-vb")
        .await;
    let t_b = the_other_trade(&app, &t_a).tno;
    assert!(app.sandbox.cancel_in_admin(&t_b));
    next_inquiry_names(&app, &t_a);
    app.advance(PAST_THE_FIRST_BACKOFF);

    app.app.gateway.resolve_due(10).await.unwrap();

    asked_and_listed_then_settled_by_its_own_order(&app, &token, &b, &t_a, &t_b, "failed").await;
}

/// An account found paid into whose inquiry names another amount is held for the operator under
/// the trade the inquiry names; when that trade is another payment's, it is that payment's, never
/// named on this one (review r1 F2: a database error on every pass, nothing listed). The answer is
/// listed, and the account is found again by the payment's order number and recorded paid.
#[tokio::test]
async fn a_paid_into_account_named_with_another_payments_trade_is_listed_not_held_under_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-pa", 1000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    let b = crate::vbanks::an_issuance_whose_answer_and_inquiry_are_lost(&app, &token, "clash-pb")
        .await;
    let t_b = the_other_trade(&app, &t_a).tno;
    app.sandbox.deposit(&t_b, 5000, "00").unwrap();
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::AnswerFields {
            fields: [("tno", t_a.as_str()), ("amount", "999")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
    ));
    app.advance(PAST_THE_FIRST_BACKOFF);

    app.app.gateway.resolve_due(10).await.unwrap();

    asked_and_listed_then_settled_by_its_own_order(&app, &token, &b, &t_a, &t_b, "paid").await;
}

/// The race after the look (review r1 F2): a charge net-cancels its approval (another amount than
/// asked), and while KCP applies the STSC another payment's record of that trade commits. The
/// database refuses the trade on this payment: no database error, the trade listed as a
/// misdirected answer saying it was net-cancelled (never "not cancelled"), and the attempt let
/// go naming it no more, so the resolver asks by the payment's own order number, never by the
/// other payment's trade, and sends no second STSC.
#[tokio::test]
async fn a_net_cancel_whose_trade_another_payment_records_meanwhile_is_listed_as_cancelled() {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-na", 1000).await;
    let (a_uid, t_a) = (
        a["imp_uid"].as_str().unwrap().to_string(),
        a["pg_tid"].as_str().unwrap().to_string(),
    );
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::AnswerField {
            field: "amount".into(),
            value: "999".into(),
        },
    ));
    let gate = "clash-stsc";
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldAnswer { gate: gate.into() },
    ));
    let charge = {
        let request = app
            .http
            .post(app.url("/subscribe/payments/onetime"))
            .header("Authorization", &token)
            .json(&json!({
                "merchant_uid": "clash-nb", "amount": 1000,
                "card_number": test_cards::SHINHAN_CREDIT,
                "expiry": crate::helpers::future_expiry(), "birth": "800101", "pwd_2digit": "00",
            }));
        tokio::spawn(async move { TestApp::read(request.send().await.expect("request")).await })
    };
    app.sandbox.until_held(gate).await;
    let t_b = the_other_trade(&app, &t_a).tno;
    recorded_meanwhile_on(&app, &a_uid, &t_b).await;
    app.sandbox.open_gate(gate);

    let (status, body) = charge.await.unwrap();

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    let b = imp_uid_in(&body["message"]);
    assert_eq!(at_kcp(&app, &t_b).state, TransactionState::Cancelled);
    let shown = app.payment(&token, &b).await;
    assert_ne!(shown["pg_tid"], t_b.as_str(), "{shown}");
    let note = listed(&app, &b, &t_b).await;
    assert!(note.contains("net-cancelled at KCP"), "{note}");
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].tno, None, "no longer names the trade: {open:?}");

    app.advance(SETTLE_SECS + 1);
    app.app.gateway.resolve_due(10).await.unwrap();
    assert_eq!(
        at_kcp(&app, &t_b).cancels.len(),
        1,
        "no second STSC of the other payment's trade"
    );
    assert_eq!(app.conflicts().await.len(), 1, "listed once");
}

/// The race after the look for a net-cancel of an approval the payment does not hold (an
/// approval KCP applied after the payment was failed for finding none: service/orphans.rs): the
/// STSC went out, so the attempt is closed as net-cancelled, the payment left naming no trade and
/// the trade listed as net-cancelled. Rolled back on the database's refusal, the attempt stayed
/// open and the next pass closed it as "not sent" (review r1 F2).
#[tokio::test]
async fn an_orphans_net_cancel_whose_trade_another_payment_records_meanwhile_is_closed_as_sent() {
    let app = spawn_app().await;
    let token = app.token().await;
    let gateway = &app.app.gateway;
    let a = app.paid(&token, "clash-oa", 1000).await;
    let (a_uid, t_a) = (
        a["imp_uid"].as_str().unwrap().to_string(),
        a["pg_tid"].as_str().unwrap().to_string(),
    );
    let late = "clash-ob-approval";
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::HoldRequest { gate: late.into() },
    ));
    let (_, body) = app
        .pay(&token, "clash-ob", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    let b = imp_uid_in(&body["message"]);
    app.advance(SETTLE_SECS + 20);
    gateway.resolve_due(10).await.unwrap();
    assert_eq!(app.payment(&token, &b).await["status"], "failed");
    kcp_applies_the_held_call(&app, late, "KCP approved it very late", || {
        app.sandbox.ledger().len() == 2
    })
    .await;
    let t_b = the_other_trade(&app, &t_a).tno;
    let gate = "clash-orphan";
    app.sandbox.inject(FaultRule::new(
        paths::CANCEL,
        Fault::HoldAnswer { gate: gate.into() },
    ));
    app.advance(30 * SETTLE_SECS + 1);
    let second_look = {
        let gateway = gateway.clone();
        tokio::spawn(async move { gateway.resolve_due(10).await })
    };
    app.sandbox.until_held(gate).await;
    recorded_meanwhile_on(&app, &a_uid, &t_b).await;
    app.sandbox.open_gate(gate);
    second_look.await.unwrap().unwrap();

    assert_eq!(at_kcp(&app, &t_b).state, TransactionState::Cancelled);
    let open = gateway.open_attempts(10).await.unwrap();
    assert!(
        open.is_empty(),
        "closed, not left for a 'not sent': {open:?}"
    );
    let shown = app.payment(&token, &b).await;
    assert_eq!(shown["status"], "failed", "{shown}");
    assert_ne!(shown["pg_tid"], t_b.as_str(), "{shown}");
    let note = listed(&app, &b, &t_b).await;
    assert!(note.contains("net-cancelled at KCP"), "{note}");
}

/// Review r1 F4: an attempt let go after an answer naming another payment's trade was due again at
/// once, so a KCP that kept naming that trade was asked on every pass of the resolver, for ever.
/// It now backs off as any attempt left open does.
#[tokio::test]
async fn a_misdirected_attempt_is_not_inquired_on_every_pass() {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "clash-fa", 1000).await;
    let t_a = a["pg_tid"].as_str().unwrap().to_string();
    crate::ownership::schedule_due_now(&app, &token, "clash-fcust", "clash-fb").await;
    next_answer_names(&app, paths::HUB_PAYMENT, &t_a);
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::AnswerField {
                field: "tno".into(),
                value: t_a.clone(),
            },
        )
        .times(10),
    );
    app.app.gateway.run_due_schedules(10).await.unwrap();
    app.advance(PAST_THE_FIRST_BACKOFF);
    let inquiries_left = || {
        app.sandbox
            .armed_faults()
            .iter()
            .find(|r| r.path == paths::INQUIRY)
            .map_or(0, |r| r.times)
    };

    app.app.gateway.resolve_due(100).await.unwrap();
    assert_eq!(inquiries_left(), 9, "asked once");
    for _ in 0..2 {
        app.app.gateway.resolve_due(100).await.unwrap();
        assert_eq!(inquiries_left(), 9, "not asked again before its backoff");
    }
    assert_eq!(app.conflicts().await.len(), 1, "listed once");
}

/// After the pass that met KCP's answer naming A's trade `t_a` for payment `b`: the inquiry was
/// asked, `b` does not show `t_a` and the answer is listed; the resolver then settles `b` by its
/// own order number as `status` with its own trade `t_b`, A's trade untouched, and the ledger
/// agrees.
async fn asked_and_listed_then_settled_by_its_own_order(
    app: &TestApp,
    token: &str,
    b: &str,
    t_a: &str,
    t_b: &str,
    status: &str,
) {
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "the inquiry was asked"
    );
    let shown = app.payment(token, b).await;
    assert_ne!(shown["pg_tid"], t_a, "{shown}");
    listed(app, b, t_a).await;
    app.resolve_all().await;
    let own = app.payment(token, b).await;
    assert_eq!(own["status"], status, "{own}");
    assert_eq!(own["pg_tid"], t_b, "its own trade: {own}");
    assert_eq!(at_kcp(app, t_a).balance, 1000, "A's trade untouched");
    app.assert_ledger_agrees().await;
}
