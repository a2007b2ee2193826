//! The embedded KCP sandbox keeps its state across openport restarts (docs/sandbox.md §7): what
//! openport's database remembers after a stop and a start, KCP still knows, as real KCP does.
use std::path::Path;

use openport::config::Config;
use serde_json::json;

use crate::billing::{again, register};
use crate::helpers::{spawn_app_with, test_cards, TestApp};

/// The embedded sandbox keeps its books in `file`.
fn keeping(file: &Path) -> impl FnOnce(&mut Config) {
    let file = file.display().to_string();
    move |c| c.sandbox.state_file = Some(file)
}

/// `POST /vbanks`: an account at KB국민 due in a week; returns the `ready` Payment object.
async fn issue_account(app: &TestApp, token: &str, merchant_uid: &str) -> serde_json::Value {
    let (_, body) = app
        .post(
            "/vbanks",
            Some(token),
            json!({
                "merchant_uid": merchant_uid, "amount": 7000, "vbank_code": "004",
                "vbank_due": app.app.gateway.clock.unix() + 7 * 24 * 3600, "name": "가상계좌 상품",
                "buyer_name": "홍길동", "buyer_email": "buyer@example.com", "buyer_tel": "010-1234-5678",
            }),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "ready", "{body}");
    body["response"].clone()
}

#[tokio::test]
async fn after_a_restart_kcp_still_cancels_charges_and_takes_deposits_for_what_came_before() {
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("kcp-sandbox.json");
    let app = spawn_app_with(keeping(&file)).await;
    let token = app.token().await;
    let paid = app.paid(&token, "before-restart", 10_000).await;
    let customer = register(&app, &token, "cust-restart", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(customer["code"], 0, "{customer}");
    let account = issue_account(&app, &token, "vbank-before-restart").await;
    let first_sandbox = app.sandbox.clone();
    let ledger = first_sandbox.ledger();

    let app = app.restart(keeping(&file)).await;

    assert_eq!(app.sandbox.ledger(), ledger, "read from the state file");
    let token = app.token().await;
    let (_, cancelled) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": paid["imp_uid"], "reason": "재시작 후 취소"}),
        )
        .await;
    assert_eq!(cancelled["code"], 0, "{cancelled}");
    assert_eq!(cancelled["response"]["status"], "cancelled", "{cancelled}");
    let (_, charged) = again(&app, &token, "cust-restart", "again-after-restart", 5_000).await;
    assert_eq!(charged["code"], 0, "{charged}");
    assert_eq!(charged["response"]["status"], "paid", "{charged}");
    app.sandbox
        .deposit(account["pg_tid"].as_str().unwrap(), 7000, "00")
        .expect("KCP knows the account");
    let imp_uid = account["imp_uid"].as_str().unwrap();
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        status = app.payment(&token, imp_uid).await["status"].clone();
        if status == "paid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "paid", "the deposit made the account paid");
    app.assert_ledger_agrees().await;
    assert_eq!(
        first_sandbox.ledger(),
        ledger,
        "the stopped instance's sandbox saw none of it: the new one was read from the file"
    );
}

/// A sandbox restarted without a state file has forgotten every key (docs/sandbox.md §7), and
/// answers their deletion "no such key" (8302). For a key KCP issued to openport that means it no
/// longer exists there, so nothing can be charged with it: the customer is deleted (before, every
/// DELETE met the same answer and the customer could never be deleted), and a key replaced after
/// the restart is recorded deleted at KCP instead of being retried for hours.
#[tokio::test]
async fn a_customer_whose_key_kcp_no_longer_holds_can_be_deleted() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.token().await;
    for uid in ["cust-forgotten", "cust-replaced"] {
        let customer = register(&app, &token, uid, test_cards::SHINHAN_CREDIT).await;
        assert_eq!(customer["code"], 0, "{customer}");
    }

    let app = app.restart(|_| {}).await;
    assert!(
        app.sandbox.batch_keys().is_empty(),
        "the new sandbox knows no key"
    );
    let token = app.token().await;

    let deleted = crate::billing::delete_customer(&app, &token, "cust-forgotten").await;
    assert_eq!(deleted["code"], 0, "{deleted}");
    let (_, found) = app
        .get("/subscribe/customers/cust-forgotten", Some(&token))
        .await;
    assert_eq!(found["code"], 1, "{found}");
    let row = &crate::billing::key_rows(&app, "cust-forgotten").await[0];
    assert_eq!(row.status, "deleted");
    assert!(row.pg_deleted_at.is_some(), "{row:?}");

    let replaced = register(&app, &token, "cust-replaced", test_cards::SAMSUNG_CHECK).await;
    assert_eq!(replaced["code"], 0, "{replaced}");
    let old = &crate::billing::key_rows(&app, "cust-replaced").await[0];
    assert_eq!(old.status, "replaced");
    assert!(
        old.pg_deleted_at.is_some(),
        "nothing left to retry: {old:?}"
    );
    assert_eq!(old.pg_delete_next_at, None);
    let (_, paid) = again(&app, &token, "cust-replaced", "after-forgetting", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
}
