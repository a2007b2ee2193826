//! "Charged once" proved by the gateway, not by the sandbox. By default the sandbox refuses a
//! second approval of an order number whose approval stands (`9520`), which nothing in
//! spec/kcp.md says KCP does; openport's order number is per payment, so every "charged once"
//! assertion elsewhere would hold even if the gateway sent a charge whose answer it lost again.
//! Here the sandbox takes an order number twice, as KCP may (`refuse_duplicate_orders` off), and
//! the lost-answer scenarios of a one-time charge, an `again` and a scheduled charge still leave
//! KCP holding exactly one approval (kept, or net-cancelled) that the payment agrees with.
use std::time::Duration;

use kcp_sandbox::{paths, Fault, FaultRule, LedgerEntry, TransactionState};
use serde_json::{json, Value};

use crate::billing::{again, register};
use crate::helpers::{imp_uid_in, spawn_app, test_cards, TestApp, SETTLE_SECS};

/// A sandbox that approves an order number again while its first approval stands.
async fn app_where_kcp_takes_an_order_number_twice() -> TestApp {
    let app = spawn_app().await;
    app.sandbox.set_refuse_duplicate_orders(false);
    app
}

/// KCP's approvals of the payment `imp_uid` (under its order number).
async fn approvals_of(app: &TestApp, imp_uid: &str) -> Vec<LedgerEntry> {
    let payments = openport::store::payments::all_payments(&app.app.gateway.db.read)
        .await
        .unwrap();
    let payment = payments
        .iter()
        .find(|p| p.imp_uid == imp_uid)
        .unwrap_or_else(|| panic!("no payment {imp_uid}"));
    app.sandbox
        .ledger()
        .into_iter()
        .filter(|entry| entry.order_no == payment.order_no)
        .collect()
}

/// The one payment of `merchant_uid`, found through the API.
async fn imp_uid_of(app: &TestApp, token: &str, merchant_uid: &str) -> String {
    let (_, found) = app
        .get(&format!("/payments/find/{merchant_uid}"), Some(token))
        .await;
    found["response"]["imp_uid"]
        .as_str()
        .unwrap_or_else(|| panic!("no payment for {merchant_uid}: {found}"))
        .to_string()
}

/// Exactly one approval at KCP, in `state`, and the payment names it with `status`; then the
/// whole ledger agrees with openport.
async fn charged_once(
    app: &TestApp,
    token: &str,
    imp_uid: &str,
    state: TransactionState,
    status: &str,
) {
    let approvals = approvals_of(app, imp_uid).await;
    assert_eq!(approvals.len(), 1, "one approval at KCP: {approvals:?}");
    assert_eq!(approvals[0].state, state, "{approvals:?}");
    let p = app.payment(token, imp_uid).await;
    assert_eq!(p["status"], status, "{p}");
    assert_eq!(p["pg_tid"], approvals[0].tno.as_str(), "{p}");
    assert_eq!(app.sandbox.ledger().len(), 1, "nothing else charged");
    app.assert_ledger_agrees().await;
}

/// Holds the next hub call of `card_tx_type` unprocessed on `gate`, past openport's timeout.
fn hold_the_charge(app: &TestApp, card_tx_type: &str, gate: &str) {
    app.sandbox.inject(
        FaultRule::new(
            paths::HUB_PAYMENT,
            Fault::HoldRequest {
                gate: gate.to_string(),
            },
        )
        .when("card_tx_type", card_tx_type),
    );
}

/// Lets the charge held on `gate` through and waits until KCP has approved it.
async fn let_the_held_charge_land(app: &TestApp, gate: &str) {
    app.sandbox.open_gate(gate);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.sandbox.ledger().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held charge never landed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A key-in charge (`onetime`) with an authenticated card.
const KEY_IN: &str = "11121000";
/// A billing-key charge (`again`, schedules).
const BATCH: &str = "11511000";

#[tokio::test]
async fn a_onetime_charge_whose_answer_is_lost_is_charged_once_where_kcp_takes_an_order_number_twice(
) {
    let app = app_where_kcp_takes_an_order_number_twice().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    let (_, body) = app
        .pay(&token, "dup-lost-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    let imp_uid = body["response"]["imp_uid"].as_str().unwrap().to_string();

    // The merchant retries, the resolver runs, the merchant retries again: nothing is sent again.
    let (_, retry) = app
        .pay(&token, "dup-lost-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_ne!(retry["code"], 0, "already paid: {retry}");
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let (_, retry) = app
        .pay(&token, "dup-lost-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_ne!(retry["code"], 0, "already paid: {retry}");
    charged_once(&app, &token, &imp_uid, TransactionState::Approved, "paid").await;
}

#[tokio::test]
async fn a_onetime_charge_whose_answer_and_inquiry_are_lost_is_net_cancelled_once_where_kcp_takes_an_order_number_twice(
) {
    let app = app_where_kcp_takes_an_order_number_twice().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let (_, body) = app
        .pay(&token, "dup-dark-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);
    let (_, retry) = app
        .pay(&token, "dup-dark-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(retry["code"], 1, "still being checked: {retry}");

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    charged_once(
        &app,
        &token,
        &imp_uid,
        TransactionState::Cancelled,
        "failed",
    )
    .await;
}

#[tokio::test]
async fn a_onetime_charge_kcp_holds_past_the_timeout_is_net_cancelled_once_where_kcp_takes_an_order_number_twice(
) {
    let app = app_where_kcp_takes_an_order_number_twice().await;
    let token = app.token().await;
    hold_the_charge(&app, KEY_IN, "onetime");
    let (_, body) = app
        .pay(&token, "dup-held-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);
    let (_, retry) = app
        .pay(&token, "dup-held-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(retry["code"], 1, "still being checked: {retry}");

    let_the_held_charge_land(&app, "onetime").await;
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    charged_once(
        &app,
        &token,
        &imp_uid,
        TransactionState::Cancelled,
        "failed",
    )
    .await;
}

#[tokio::test]
async fn an_again_whose_answer_is_lost_is_charged_once_where_kcp_takes_an_order_number_twice() {
    let app = app_where_kcp_takes_an_order_number_twice().await;
    let token = app.token().await;
    let registered = register(&app, &token, "dup-cust-1", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(registered["code"], 0, "{registered}");
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", BATCH),
    );
    let (_, body) = again(&app, &token, "dup-cust-1", "dup-again-1", 4900).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    let imp_uid = body["response"]["imp_uid"].as_str().unwrap().to_string();

    let (_, retry) = again(&app, &token, "dup-cust-1", "dup-again-1", 4900).await;
    assert_ne!(retry["code"], 0, "already paid: {retry}");
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let (_, retry) = again(&app, &token, "dup-cust-1", "dup-again-1", 4900).await;
    assert_ne!(retry["code"], 0, "already paid: {retry}");
    charged_once(&app, &token, &imp_uid, TransactionState::Approved, "paid").await;
}

#[tokio::test]
async fn an_again_kcp_holds_past_the_timeout_is_net_cancelled_once_where_kcp_takes_an_order_number_twice(
) {
    let app = app_where_kcp_takes_an_order_number_twice().await;
    let token = app.token().await;
    let registered = register(&app, &token, "dup-cust-2", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(registered["code"], 0, "{registered}");
    hold_the_charge(&app, BATCH, "again");
    let (_, body) = again(&app, &token, "dup-cust-2", "dup-again-2", 4900).await;
    assert_eq!(body["code"], 1, "{body}");
    let imp_uid = imp_uid_in(&body["message"]);
    let (_, retry) = again(&app, &token, "dup-cust-2", "dup-again-2", 4900).await;
    assert_eq!(retry["code"], 1, "still being checked: {retry}");

    let_the_held_charge_land(&app, "again").await;
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    charged_once(
        &app,
        &token,
        &imp_uid,
        TransactionState::Cancelled,
        "failed",
    )
    .await;
}

/// A scheduled charge whose answer and first inquiry are lost: the schedule comes due again (its
/// run gave it back for 30 s) before the resolver settled the charge, and runs once more after.
/// KCP holds one approval, honoured (nobody was told the scheduled charge failed).
#[tokio::test]
async fn a_scheduled_charge_whose_answer_is_lost_is_charged_once_where_kcp_takes_an_order_number_twice(
) {
    let app = app_where_kcp_takes_an_order_number_twice().await;
    let token = app.token().await;
    crate::ownership::schedule_due_now(&app, &token, "dup-cust-3", "dup-scheduled-1").await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", BATCH),
    );
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    assert_eq!(
        app.app.gateway.run_due_schedules(10).await.unwrap(),
        0,
        "outcome open"
    );
    app.advance(31);
    app.app.gateway.run_due_schedules(10).await.unwrap();
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    app.advance(60);
    app.app.gateway.run_due_schedules(10).await.unwrap();

    let (_, s) = app
        .get("/subscribe/payments/schedule/dup-scheduled-1", Some(&token))
        .await;
    assert_eq!(s["response"]["payment_status"], "paid", "{s}");
    let imp_uid = imp_uid_of(&app, &token, "dup-scheduled-1").await;
    charged_once(&app, &token, &imp_uid, TransactionState::Approved, "paid").await;
}

/// A scheduled charge KCP holds unprocessed past openport's timeout, and applies once the run gave
/// up; the schedule comes due again before the resolver looked. KCP holds one approval, honoured.
#[tokio::test]
async fn a_scheduled_charge_kcp_holds_past_the_timeout_is_charged_once_where_kcp_takes_an_order_number_twice(
) {
    let app = app_where_kcp_takes_an_order_number_twice().await;
    let token = app.token().await;
    crate::ownership::schedule_due_now(&app, &token, "dup-cust-4", "dup-scheduled-2").await;
    hold_the_charge(&app, BATCH, "scheduled");
    assert_eq!(
        app.app.gateway.run_due_schedules(10).await.unwrap(),
        0,
        "outcome open"
    );
    let_the_held_charge_land(&app, "scheduled").await;
    app.advance(31);
    app.app.gateway.run_due_schedules(10).await.unwrap();
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    app.advance(60);
    app.app.gateway.run_due_schedules(10).await.unwrap();

    let (_, s) = app
        .get("/subscribe/payments/schedule/dup-scheduled-2", Some(&token))
        .await;
    assert_eq!(s["response"]["payment_status"], "paid", "{s}");
    let imp_uid = imp_uid_of(&app, &token, "dup-scheduled-2").await;
    charged_once(&app, &token, &imp_uid, TransactionState::Approved, "paid").await;
}

/// `openport sandbox settings` switches a running sandbox through `POST /_sandbox/settings` and
/// prints what it answered; without a switch it only shows them.
#[tokio::test]
async fn sandbox_settings_switches_each_switch_of_a_running_sandbox_and_leaves_the_other() {
    let sandbox = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kcp_sandbox::serve(sandbox.clone(), listener));
    let dir = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command =
            crate::helpers::openport_in_test_mode(dir.path(), "sqlite::memory:", &args);
        tokio::task::spawn_blocking(move || command.output().expect("the openport binary runs"))
    };
    let printed = |out: &std::process::Output| -> Value {
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (status, body) = text.trim().split_once(' ').unwrap();
        let body = body.trim_start_matches("OK").trim();
        assert_eq!(status, "200", "{text}");
        serde_json::from_str(body).unwrap_or_else(|_| panic!("{text}"))
    };
    let args = |extra: &[&str]| -> Vec<String> {
        ["sandbox", "settings", "--url", url.as_str()]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };

    let off = run(args(&["--refuse-duplicate-orders", "false"]))
        .await
        .unwrap();
    assert_eq!(
        printed(&off),
        json!({"refuse_duplicate_orders": false, "stra_keeps_original": false, "stra_same_tno": false})
    );
    assert!(!sandbox.refuses_duplicate_orders());
    let shown = run(args(&[])).await.unwrap();
    assert_eq!(
        printed(&shown),
        json!({"refuse_duplicate_orders": false, "stra_keeps_original": false, "stra_same_tno": false})
    );
    let on = run(args(&["--refuse-duplicate-orders", "true"]))
        .await
        .unwrap();
    assert_eq!(
        printed(&on),
        json!({"refuse_duplicate_orders": true, "stra_keeps_original": false, "stra_same_tno": false})
    );
    assert!(sandbox.refuses_duplicate_orders());
    let stra = run(args(&["--stra-keeps-original", "true"])).await.unwrap();
    assert_eq!(
        printed(&stra),
        json!({"refuse_duplicate_orders": true, "stra_keeps_original": true, "stra_same_tno": false}),
        "the other switch is left as it is"
    );
}
