//! `POST /payments/cancel` of a virtual account holding deposits (spec/iamport-v1.md §4.2): the
//! money goes back to the account the merchant names (`refund_holder`, `refund_bank`,
//! `refund_account`), with KCP's refund (`STHD` all that is left, `STPD` a part; a documented
//! assumption, docs/kcp.md §10.2) through the same attempt, inquiry and resolver as every cancel.
//! The account is sent to KCP and written nowhere.
use kcp_sandbox::test_refund_accounts::{HOLDER, NAMED_HOLDER_ACCOUNT, NO_SUCH_ACCOUNT};
use kcp_sandbox::{paths, Fault, FaultRule};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_code_1_saying, captured_logs, kcp_applies_the_held_call, spawn_app, Receiver, TestApp,
    SETTLE_SECS,
};
use crate::vbanks::{
    deposit_until_paid, issued, issued_with_hooks, notice, post_notification, vbank,
    webhook_statuses,
};

/// A virtual account of `amount` for `merchant_uid`, issued and paid in full: the Payment.
async fn paid_vbank(app: &TestApp, token: &str, merchant_uid: &str, amount: i64) -> Value {
    let p = issued(app, token, vbank(app, merchant_uid, amount)).await;
    deposit_until_paid(app, token, &p).await;
    p
}

/// A `POST /payments/cancel` body refunding `amount` (None: all that is left) of `p` to 신한
/// (`088`) account `account` held by `holder`.
fn refund(p: &Value, amount: Option<i64>, account: &str, holder: &str) -> Value {
    let mut body = json!({
        "imp_uid": p["imp_uid"], "reason": "환불", "refund_bank": "088",
        "refund_account": account, "refund_holder": holder, "refund_tel": "010-1234-5678",
    });
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    body
}

/// The refunds KCP holds for the account of `p`: mod_type and amount, in order.
fn kcp_refunds(app: &TestApp, p: &Value) -> Vec<(String, i64)> {
    crate::escrow::kcp_cancels(app, p["pg_tid"].as_str().expect("a tno"))
}

/// The cancel attempts openport wrote for `p`, as their Debug text (every column).
async fn cancel_attempts(app: &TestApp, p: &Value) -> Vec<String> {
    use openport::store::{entity::pg_attempt, payments};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let db = &app.app.gateway.db.read;
    let payment = payments::by_imp_uid(db, None, p["imp_uid"].as_str().unwrap())
        .await
        .unwrap()
        .expect("the payment");
    pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(payment.id))
        .filter(pg_attempt::Column::Kind.eq("cancel"))
        .all(db)
        .await
        .unwrap()
        .iter()
        .map(|a| format!("{a:?}"))
        .collect()
}

/// Every row a cancel writes for `p` (the payment, its cancellations, its attempts), as Debug
/// text.
async fn rows_of(app: &TestApp, p: &Value) -> String {
    use openport::store::{entity::cancellation, payments};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let db = &app.app.gateway.db.read;
    let payment = payments::by_imp_uid(db, None, p["imp_uid"].as_str().unwrap())
        .await
        .unwrap()
        .expect("the payment");
    let cancellations = cancellation::Entity::find()
        .filter(cancellation::Column::PaymentId.eq(payment.id))
        .all(db)
        .await
        .unwrap();
    format!(
        "{payment:?} {cancellations:?} {:?}",
        cancel_attempts(app, p).await
    )
}

/// The payment's status, cancelled amount and number of cancel_history entries.
fn refunded_so_far(p: &Value) -> (Option<&str>, Option<i64>, usize) {
    (
        p["status"].as_str(),
        p["cancel_amount"].as_i64(),
        p["cancel_history"].as_array().map_or(0, Vec::len),
    )
}

/// `POST /payments/cancel` with `body`, answered HTTP 200 `code 0` (else the test fails, naming
/// `what`): the payment it answers.
async fn refunded(app: &TestApp, token: &str, body: Value, what: &str) -> Value {
    let (status, res) = app.post("/payments/cancel", Some(token), body).await;
    assert_eq!(
        (status, res["code"].as_i64()),
        (StatusCode::OK, Some(0)),
        "{what}: {res}"
    );
    res["response"].clone()
}

/// A paid account refunded whole is one `STHD` carrying the account (the number KCP gets has no
/// `-`): the payment is cancelled for its amount, and neither the number nor the holder is
/// written to the database or a log.
#[tokio::test]
async fn a_paid_virtual_account_is_refunded_whole_to_the_account_named_and_the_account_is_kept_nowhere(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_vbank(&app, &token, "vr-whole", 5000).await;
    // Used up only by a refund whose `mod_account` is exactly the number without its dashes.
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::Delay { ms: 0 }).when("mod_account", "3020123456781"),
    );

    let body = refund(&p, None, "302-0123-4567-81", "김환불");
    let r = refunded(&app, &token, body, "whole").await;

    assert_eq!(
        refunded_so_far(&r),
        (Some("cancelled"), Some(5000), 1),
        "{r}"
    );
    assert_eq!(kcp_refunds(&app, &p), [("STHD".to_string(), 5000)]);
    assert!(app.sandbox.armed_faults().is_empty(), "KCP got the digits");
    let written = rows_of(&app, &p).await;
    let logs = captured_logs();
    for kept_nowhere in ["3020123456781", "302-0123-4567-81", "김환불"] {
        assert!(
            !written.contains(kept_nowhere),
            "{kept_nowhere} in {written}"
        );
        assert!(!logs.contains(kept_nowhere), "{kept_nowhere} logged");
    }
    app.assert_ledger_agrees().await;
}

/// Refunds of parts are `STPD`s (`mod_mny`, `rem_mny` as `STPC`'s) and the last, of all that is
/// left, an `STHD`: cancel_amount adds up and each shows in cancel_history, as KCP's balance does.
#[tokio::test]
async fn partial_refunds_until_nothing_is_left_add_up_in_cancel_amount_and_cancel_history() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_vbank(&app, &token, "vr-parts", 10000).await;

    let mut shown = Vec::new();
    for (amount, checksum) in [(Some(3000), 10000), (Some(2000), 7000), (None, 5000)] {
        let mut body = refund(&p, amount, "110-123-456789", "홍길동");
        body["checksum"] = json!(checksum);
        let r = &refunded(&app, &token, body, &format!("{amount:?}")).await;
        shown.push((
            r["cancel_amount"].as_i64(),
            r["cancel_history"].as_array().map_or(0, Vec::len),
        ));
        app.assert_ledger_agrees().await;
    }

    assert_eq!(shown, [(Some(3000), 1), (Some(5000), 2), (Some(10000), 3)]);
    assert_eq!(
        kcp_refunds(&app, &p),
        [
            ("STPD".to_string(), 3000),
            ("STPD".to_string(), 2000),
            ("STHD".to_string(), 5000)
        ]
    );
    let amounts: Vec<i64> = app.payment(&token, p["imp_uid"].as_str().unwrap()).await
        ["cancel_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [3000, 2000, 5000]);
}

/// A deposited account's cancel without the account to refund to (none of the three fields, or
/// not all of them) is refused before anything is written, naming the fields: nothing reaches
/// KCP. The card cancel KCP would otherwise be sent names no account.
#[tokio::test]
async fn a_deposited_accounts_cancel_without_its_refund_account_is_refused_before_anything_is_written(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_vbank(&app, &token, "vr-missing", 5000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let before = app.sandbox.ledger();

    for body in [
        json!({"imp_uid": imp_uid}),
        json!({"imp_uid": imp_uid, "amount": 1000}),
        json!({"imp_uid": imp_uid, "refund_bank": "088", "refund_account": "110123456789"}),
        json!({"imp_uid": imp_uid, "refund_holder": "홍길동", "refund_bank": "088",
               "refund_account": "", "refund_tel": "01012345678"}),
    ] {
        let (status, res) = app
            .post("/payments/cancel", Some(&token), body.clone())
            .await;
        for field in ["refund_holder", "refund_bank", "refund_account"] {
            assert_code_1_saying(status, &res, field, &body.to_string());
        }
    }

    assert_eq!(
        refunded_so_far(&app.payment(&token, imp_uid).await),
        (Some("paid"), Some(0), 0)
    );
    assert_eq!(app.sandbox.ledger(), before, "KCP was not asked");
    assert!(
        cancel_attempts(&app, &p).await.is_empty(),
        "nothing written"
    );
    app.assert_ledger_agrees().await;
}

/// Refund fields that cannot go to KCP are HTTP 400 before the payment is even looked up: a bank
/// KCP has no code for, an account number that is not 10–16 digits once `-` and spaces are gone,
/// a holder with a character KCP forbids or script. The number is never quoted back.
#[tokio::test]
async fn refund_fields_kcp_would_refuse_are_400s_that_write_nothing_and_call_no_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_vbank(&app, &token, "vr-bad", 5000).await;
    let before = app.sandbox.ledger();

    for (field, value, says) in [
        ("refund_bank", "999", "refund_bank: 999"),
        ("refund_bank", "092", "refund_bank: 092"),
        ("refund_bank", "BK88", "refund_bank: BK88"),
        ("refund_account", "110-123-45", "refund_account"),
        ("refund_account", "110-123-45678a", "refund_account"),
        ("refund_account", "11012345678901234", "refund_account"),
        ("refund_holder", "홍,길동", "refund_holder"),
        ("refund_holder", "<script>x</script>", "refund_holder"),
    ] {
        let mut body = refund(&p, None, "110-123-456789", "홍길동");
        body[field] = json!(value);
        let (status, res) = app.post("/payments/cancel", Some(&token), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {value}: {res}");
        let message = res["message"].as_str().unwrap();
        assert!(message.contains(says), "{field} {value}: {res}");
        if field == "refund_account" {
            assert!(!message.contains(value), "never quoted: {res}");
        }
    }

    assert_eq!(app.sandbox.ledger(), before, "KCP was not asked");
    assert!(
        cancel_attempts(&app, &p).await.is_empty(),
        "nothing written"
    );
}

/// KCP verifies the refund account before it refunds (`MDCP01`): an account the bank does not hold,
/// or one held by someone else than the holder named, is refused with KCP's message (code 1) and
/// the payment keeps its balance; the holder's own name then refunds it.
#[tokio::test]
async fn a_refund_account_kcp_cannot_verify_is_code_1_with_kcps_message_and_changes_nothing() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_vbank(&app, &token, "vr-verify", 5000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let before = app.sandbox.ledger();

    for (account, holder, says) in [
        (
            NO_SUCH_ACCOUNT,
            "홍길동",
            "결제취소에 실패하였습니다.(계좌인증 실패: 존재하지 않는 계좌입니다.)",
        ),
        (
            NAMED_HOLDER_ACCOUNT,
            "홍길동",
            "결제취소에 실패하였습니다.(계좌인증 실패: 예금주명이 일치하지 않습니다.)",
        ),
    ] {
        let (status, res) = app
            .post(
                "/payments/cancel",
                Some(&token),
                refund(&p, Some(1000), account, holder),
            )
            .await;
        assert_code_1_saying(status, &res, says, account);
        assert_eq!(
            refunded_so_far(&app.payment(&token, imp_uid).await),
            (Some("paid"), Some(0), 0)
        );
    }
    assert_eq!(app.sandbox.ledger(), before, "KCP refunded nothing");

    let (_, res) = app
        .post(
            "/payments/cancel",
            Some(&token),
            refund(&p, Some(1000), NAMED_HOLDER_ACCOUNT, HOLDER),
        )
        .await;
    assert_eq!(res["code"], 0, "{res}");
    assert_eq!(kcp_refunds(&app, &p), [("STPD".to_string(), 1000)]);
    app.assert_ledger_agrees().await;
}

/// A refund KCP makes whose answer is lost, the inquiry after it failing too: the merchant is told
/// the outcome is being checked (never that it failed), and the resolver's `PAVC` inquiry finds
/// KCP's balance and records the refund, whole (`STHD`) or a part (`STPD`).
#[tokio::test]
async fn a_refund_whose_answer_and_inquiry_are_lost_is_recorded_by_the_resolver_whole_or_in_part() {
    for (amount, refunded, mod_type) in [(None, 5000, "STHD"), (Some(2000), 2000, "STPD")] {
        let app = spawn_app().await;
        let token = app.token().await;
        let p = paid_vbank(&app, &token, "vr-lost", 5000).await;
        let lost = FaultRule::new(paths::CANCEL, Fault::LoseResponse);
        refund_recorded_by_the_resolver(&app, &token, &p, amount, lost, mod_type, refunded).await;
    }
}

/// Refunds `p` (`amount`: None for all that is left) to a test account while KCP's answer is lost
/// (`lost`, a rule on its `mod_type` call) and so is the inquiry after it: the merchant is told the
/// outcome is being checked, nothing is recorded on a guess while KCP holds the refund, and once
/// the settle delay has passed the resolver's `PAVC` inquiry records `refunded`.
async fn refund_recorded_by_the_resolver(
    app: &TestApp,
    token: &str,
    p: &Value,
    amount: Option<i64>,
    lost: FaultRule,
    mod_type: &str,
    refunded: i64,
) {
    let imp_uid = p["imp_uid"].as_str().unwrap();
    app.sandbox.inject(lost);
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::HttpStatus { status: 503 },
    ));

    let (status, res) = app
        .post(
            "/payments/cancel",
            Some(token),
            refund(p, amount, "110123456789", "홍길동"),
        )
        .await;

    assert_code_1_saying(status, &res, "확인하지 못했습니다", mod_type);
    assert_eq!(
        refunded_so_far(&app.payment(token, imp_uid).await),
        (Some("paid"), Some(0), 0),
        "{mod_type}: not recorded on a guess"
    );
    assert_eq!(kcp_refunds(app, p), [(mod_type.to_string(), refunded)]);
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let shown = app.payment(token, imp_uid).await;
    assert_eq!(
        refunded_so_far(&shown),
        (Some("cancelled"), Some(refunded), 1),
        "{mod_type}: {shown}"
    );
    app.assert_ledger_agrees().await;
}

/// A refund KCP applies only after openport stopped waiting (its timeout): answered code 1 as
/// unknown, and recorded by the resolver once KCP's `PAVC` balance shows it, a part (`STPD`) and
/// then the rest (`STHD`).
#[tokio::test]
async fn a_refund_that_lands_after_the_timeout_is_recorded_by_the_resolver_in_part_then_whole() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_vbank(&app, &token, "vr-timeout", 5000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let mut shown = Vec::new();
    for (refunds, amount) in [(1, Some(2000)), (2, None)] {
        let gate = format!("vr-timeout-{refunds}");
        app.sandbox.inject(FaultRule::new(
            paths::CANCEL,
            Fault::HoldRequest { gate: gate.clone() },
        ));
        let (status, res) = app
            .post(
                "/payments/cancel",
                Some(&token),
                refund(&p, amount, "110123456789", "홍길동"),
            )
            .await;
        assert_code_1_saying(status, &res, "확인하지 못했습니다", "timed out");
        // The resolver runs only once KCP has applied the refund: it is to find it, not race it.
        kcp_applies_the_held_call(&app, &gate, "KCP refunded it late", || {
            kcp_refunds(&app, &p).len() == refunds
        })
        .await;
        app.advance(SETTLE_SECS + 1);
        app.resolve_all().await;
        shown.push(refunded_so_far(&app.payment(&token, imp_uid).await).1);
    }

    assert_eq!(shown, [Some(2000), Some(5000)]);
    assert_eq!(
        kcp_refunds(&app, &p),
        [("STPD".to_string(), 2000), ("STHD".to_string(), 3000)]
    );
    app.assert_ledger_agrees().await;
}

/// KCP's refund notice (`TX01`) arriving after a refund made through the API finds KCP's balance
/// already the payment's: acknowledged, and nothing is recorded or announced a second time, after
/// a part or after the rest.
#[tokio::test]
async fn kcps_tx01_after_an_api_refund_records_and_announces_nothing_a_second_time() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vr-tx01", &hooks).await;
    deposit_until_paid(&app, &token, &p).await;
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();

    let mut announced = vec!["ready", "paid"];
    for (minute, amount) in [("20261203120000", Some(3000)), ("20261203130000", None)] {
        let mut body = refund(&p, amount, "110123456789", "홍길동");
        body["enable_webhook"] = json!(true);
        let (_, res) = app.post("/payments/cancel", Some(&token), body).await;
        assert_eq!(res["code"], 0, "{res}");
        let refunded = app.payment(&token, imp_uid).await;

        let mut tx01 = notice(tno, "TX01");
        tx01[4].1 = minute.into();
        assert!(post_notification(&app, &tx01).await, "acknowledged");

        let after = app.payment(&token, imp_uid).await;
        assert_eq!(
            (refunded_so_far(&after), &after["cancel_history"]),
            (refunded_so_far(&refunded), &refunded["cancel_history"]),
            "unchanged by the notice"
        );
        announced.push("cancelled");
        assert_eq!(
            webhook_statuses(&app, &hooks).await,
            announced,
            "the refund's webhook, and none for the notice"
        );
    }

    assert_eq!(
        refunded_so_far(&app.payment(&token, imp_uid).await),
        (Some("cancelled"), Some(7000), 2)
    );
    app.assert_ledger_agrees().await;
}

// ----- deposited escrow virtual accounts: STE2/STE4 carrying the account (docs/kcp.md §9.5a) -----

/// An escrow virtual account of `amount` for `merchant_uid`, issued through KCP's window and paid
/// in full: the Payment.
async fn paid_escrow_vbank(app: &TestApp, token: &str, merchant_uid: &str, amount: i64) -> Value {
    let p = issued_escrow_vbank(app, token, merchant_uid, amount).await;
    deposit_until_paid(app, token, &p).await;
    p
}

/// An escrow virtual account of `amount` for `merchant_uid`, issued through KCP's window and
/// awaiting its deposit: the Payment.
async fn issued_escrow_vbank(app: &TestApp, token: &str, merchant_uid: &str, amount: i64) -> Value {
    let rsp = crate::checkout::request_pay(
        app,
        json!({"pay_method": "vbank", "merchant_uid": merchant_uid, "amount": amount, "escrow": true, "buyer_name": "홍길동",
               "kcpProducts": [{"orderNumber": "o1", "name": "양말", "quantity": 1, "amount": amount}]}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["status"], "ready", "{rsp}");
    let p = app.payment(token, rsp["imp_uid"].as_str().unwrap()).await;
    assert_eq!(p["escrow"], true, "{p}");
    p
}

/// An escrow account's revocation that KCP refuses because the account holds money (a partial
/// deposit whose notice has not reached openport, so openport's look before the close saw none)
/// ends with that refusal: the refused `STE5` is not followed by a plain `STSC`, which would close
/// an account holding the buyer's money with nowhere to send it (review r1). Nothing moves.
#[tokio::test]
async fn an_escrow_revocation_kcp_refuses_for_a_deposit_is_never_sent_again_as_stsc() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = issued_escrow_vbank(&app, &token, "vr-esc-revoke-held", 5000).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    let elsewhere = Receiver::start().await;
    app.sandbox
        .set_notify_url("T0000", &elsewhere.url("/kcp/notify"));
    app.sandbox.deposit(tno, 3000, "00").unwrap();
    // Used up by an STSC, were one sent.
    let stsc = FaultRule::new(paths::CANCEL, Fault::Delay { ms: 0 }).when("mod_type", "STSC");
    app.sandbox.inject(stsc.clone());

    let (status, res) = crate::vbanks::revoke(&app, &token, imp_uid).await;

    assert_eq!(
        (status, res["code"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{res}"
    );
    assert_eq!(app.sandbox.armed_faults(), [stsc], "no STSC reached KCP");
    assert!(
        crate::escrow::kcp_cancels(&app, tno).is_empty(),
        "nothing closed at KCP"
    );
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
}

/// A virtual account issued and paid as a plain one at KCP, recorded in openport as escrow: what
/// an escrow window KCP approved as plain (a merchant without an escrow contract) leaves when
/// recording it as plain failed, as escrow.rs's card twin. KCP (the sandbox) refuses its escrow
/// status changes (`8501`) and takes its `STHD`.
async fn paid_vbank_held_plain_at_kcp(app: &TestApp, token: &str, merchant_uid: &str) -> Value {
    let p = paid_vbank(app, token, merchant_uid, 5000).await;
    crate::escrow::record_as_escrow(app, p["imp_uid"].as_str().unwrap()).await;
    let p = app.payment(token, p["imp_uid"].as_str().unwrap()).await;
    assert_eq!(p["escrow"], true, "{p}");
    p
}

/// Registers the shipping start (`STE1`) of escrow payment `p`.
async fn shipped(app: &TestApp, token: &str, p: &Value) {
    let (_, res) = app
        .post(
            &format!("/escrows/logis/{}", p["imp_uid"].as_str().unwrap()),
            Some(token),
            json!({"logis": {"company": "CJ대한통운", "invoice": "111", "sent_at": 1795000000}}),
        )
        .await;
    assert_eq!(res["code"], 0, "{res}");
}

/// A paid escrow account is refunded whole by its escrow cancel carrying the account `STHD`
/// carries: `STE2` before a shipping start, `STE4` after it. The payment is cancelled for its
/// amount, and neither the number nor the holder is written to the database or a log.
#[tokio::test]
async fn a_paid_escrow_virtual_account_is_refunded_whole_by_ste2_before_shipping_and_ste4_after_carrying_the_account(
) {
    let app = spawn_app().await;
    let token = app.token().await;

    for (merchant_uid, ship, mod_type) in [
        ("vr-esc-ste2", false, "STE2"),
        ("vr-esc-ste4", true, "STE4"),
    ] {
        let p = paid_escrow_vbank(&app, &token, merchant_uid, 5000).await;
        if ship {
            shipped(&app, &token, &p).await;
        }
        // Used up only by an escrow refund whose `mod_account` is the number without its dashes.
        app.sandbox.inject(
            FaultRule::new(paths::CANCEL, Fault::Delay { ms: 0 })
                .when("mod_account", "3020123456781"),
        );

        let body = refund(&p, None, "302-0123-4567-81", "김환불");
        let r = refunded(&app, &token, body, mod_type).await;

        assert_eq!(
            refunded_so_far(&r),
            (Some("cancelled"), Some(5000), 1),
            "{mod_type}: {r}"
        );
        assert_eq!(kcp_refunds(&app, &p), [(mod_type.to_string(), 5000)]);
        assert!(
            app.sandbox.armed_faults().is_empty(),
            "{mod_type}: KCP got the account"
        );
        let written = rows_of(&app, &p).await;
        let logs = captured_logs();
        for kept_nowhere in ["3020123456781", "302-0123-4567-81", "김환불"] {
            assert!(
                !written.contains(kept_nowhere),
                "{kept_nowhere} in {written}"
            );
            assert!(!logs.contains(kept_nowhere), "{kept_nowhere} logged");
        }
    }
    app.assert_ledger_agrees().await;
}

/// A paid escrow account's cancel is refused before anything is written or sent: without the
/// account to refund to (naming the fields, as for a plain account), in part (as every escrow
/// partial cancel), and while a shipping start's answer is unseen (as every escrow cancel).
#[tokio::test]
async fn an_escrow_accounts_refund_without_its_account_in_part_or_with_shipping_unanswered_is_refused_before_kcp(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_escrow_vbank(&app, &token, "vr-esc-refused", 5000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let before = app.sandbox.ledger();

    for body in [
        json!({"imp_uid": imp_uid}),
        json!({"imp_uid": imp_uid, "refund_bank": "088", "refund_account": "110123456789"}),
    ] {
        let (status, res) = app
            .post("/payments/cancel", Some(&token), body.clone())
            .await;
        for field in ["refund_holder", "refund_bank", "refund_account"] {
            assert_code_1_saying(status, &res, field, &body.to_string());
        }
    }
    let (status, res) = app
        .post(
            "/payments/cancel",
            Some(&token),
            refund(&p, Some(1000), "110123456789", "홍길동"),
        )
        .await;
    assert_code_1_saying(
        status,
        &res,
        "에스크로 결제는 부분취소할 수 없습니다",
        "partial",
    );
    assert_eq!(app.sandbox.ledger(), before, "KCP was not asked");

    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::LoseResponse).when("mod_type", "STE1"));
    let (_, lost) = app
        .post(
            &format!("/escrows/logis/{imp_uid}"),
            Some(&token),
            json!({"logis": {"company": "CJ대한통운", "invoice": "111", "sent_at": 1795000000}}),
        )
        .await;
    assert_eq!(lost["code"], 1, "{lost}");
    let (status, res) = app
        .post(
            "/payments/cancel",
            Some(&token),
            refund(&p, None, "110123456789", "홍길동"),
        )
        .await;
    assert_code_1_saying(status, &res, "배송정보 등록", "shipping unanswered");

    assert!(kcp_refunds(&app, &p).is_empty(), "nothing reached KCP");
    assert_eq!(
        refunded_so_far(&app.payment(&token, imp_uid).await),
        (Some("paid"), Some(0), 0)
    );
    assert!(
        cancel_attempts(&app, &p).await.is_empty(),
        "nothing written"
    );
}

/// KCP refusing the escrow refund of a trade it holds as a plain one (`8501`): the refund is sent
/// again as the plain refund, `STHD` to the same account, once, and the payment is cancelled. A
/// bare `STSC` (the fallback of every other escrow cancel) names no account and is never sent.
#[tokio::test]
async fn an_escrow_refund_kcp_refuses_is_sent_again_as_sthd_to_the_same_account_never_as_stsc() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_vbank_held_plain_at_kcp(&app, &token, "vr-esc-plain").await;
    app.sandbox.inject(crate::escrow::refuse_stsc());
    // Used up by two calls carrying the account's digits: the STE2 and the STHD.
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::Delay { ms: 0 })
            .when("mod_account", "110123456789")
            .times(2),
    );

    let body = refund(&p, None, "110-123-456789", "홍길동");
    let r = refunded(&app, &token, body, "fallback").await;

    assert_eq!(
        refunded_so_far(&r),
        (Some("cancelled"), Some(5000), 1),
        "{r}"
    );
    assert_eq!(kcp_refunds(&app, &p), [("STHD".to_string(), 5000)]);
    let armed = app.sandbox.armed_faults();
    assert_eq!(
        armed
            .iter()
            .map(|rule| rule.when.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        [("mod_type".to_string(), "STSC".to_string())],
        "STE2 and STHD carried the account, and no STSC was sent"
    );
    app.assert_ledger_agrees().await;
}

/// An escrow account's refund to an account KCP cannot verify: KCP refuses the `STE2` (`8509`) and
/// the `STHD` after it (an escrow trade takes none, `8506`); the escrow refusal, which says why,
/// is the answer and nothing changes. The holder's own account then refunds it.
#[tokio::test]
async fn an_escrow_refund_to_an_account_kcp_cannot_verify_answers_kcps_verification_refusal() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_escrow_vbank(&app, &token, "vr-esc-verify", 5000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let (status, res) = app
        .post(
            "/payments/cancel",
            Some(&token),
            refund(&p, None, NO_SUCH_ACCOUNT, "홍길동"),
        )
        .await;

    assert_code_1_saying(
        status,
        &res,
        "결제취소에 실패하였습니다.(계좌인증 실패: 존재하지 않는 계좌입니다.)",
        NO_SUCH_ACCOUNT,
    );
    assert!(kcp_refunds(&app, &p).is_empty());
    assert_eq!(
        refunded_so_far(&app.payment(&token, imp_uid).await),
        (Some("paid"), Some(0), 0)
    );
    let (_, res) = app
        .post(
            "/payments/cancel",
            Some(&token),
            refund(&p, None, NAMED_HOLDER_ACCOUNT, HOLDER),
        )
        .await;
    assert_eq!(res["code"], 0, "{res}");
    assert_eq!(kcp_refunds(&app, &p), [("STE2".to_string(), 5000)]);
    app.assert_ledger_agrees().await;
}

/// An escrow refund KCP makes whose answer is lost, and the inquiry after it too; and likewise the
/// `STHD` sent after KCP refused the escrow refund of a trade it holds plain: the merchant is told
/// the outcome is being checked, and the resolver's `PAVC` inquiry records the refund.
#[tokio::test]
async fn an_escrow_refund_or_its_sthd_whose_answer_is_lost_is_recorded_by_the_resolver() {
    for (held_plain, mod_type) in [(false, "STE2"), (true, "STHD")] {
        let app = spawn_app().await;
        let token = app.token().await;
        let p = if held_plain {
            paid_vbank_held_plain_at_kcp(&app, &token, "vr-esc-lost").await
        } else {
            paid_escrow_vbank(&app, &token, "vr-esc-lost", 5000).await
        };
        let lost = FaultRule::new(paths::CANCEL, Fault::LoseResponse).when("mod_type", mod_type);
        refund_recorded_by_the_resolver(&app, &token, &p, None, lost, mod_type, 5000).await;
    }
}
