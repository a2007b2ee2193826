//! `onetime` with a `customer_uid`: the card becomes the customer's billing key only once the
//! payment is paid (seed 004), whoever records it paid; otherwise the key issued for it is deleted
//! at KCP and the customer keeps the card it had (service/kept_cards.rs).
use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
use serde_json::{json, Value};

use crate::billing::{again, delete_customer, key_rows, register};
use crate::helpers::{
    execute, future_expiry, refuse_writes, spawn_app, test_cards, TestApp, SETTLE_SECS,
};

/// `onetime` with `card` for customer `uid`: the answer.
pub(crate) async fn onetime(
    app: &TestApp,
    token: &str,
    uid: &str,
    merchant_uid: &str,
    card: &str,
) -> Value {
    app.post(
        "/subscribe/payments/onetime",
        Some(token),
        json!({"merchant_uid": merchant_uid, "amount": 1000, "card_number": card,
               "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00",
               "customer_uid": uid, "buyer_name": "김철수"}),
    )
    .await
    .1
}

/// The sandbox's state of the key issued for the card masked as `masked`.
fn kcp_state(app: &TestApp, masked: &str) -> BatchKeyState {
    app.sandbox
        .batch_keys()
        .into_iter()
        .find(|k| k.masked_card_no == masked)
        .unwrap_or_else(|| panic!("no key for {masked}"))
        .state
}

/// The card number `GET /subscribe/customers/{uid}` shows.
async fn card_of(app: &TestApp, token: &str, uid: &str) -> Value {
    let (_, c) = app
        .get(&format!("/subscribe/customers/{uid}"), Some(token))
        .await;
    assert_eq!(c["code"], 0, "{c}");
    c["response"]["card_number"].clone()
}

/// Holds every authenticated key-in charge (`card_tx_type` 11121000, a `onetime`'s) at KCP at
/// `gate`, until the test opens it.
pub(crate) fn hold_key_in_charges_at_kcp(app: &TestApp, gate: &str) {
    app.sandbox.inject(
        FaultRule::new(
            paths::HUB_PAYMENT,
            Fault::HoldRequest {
                gate: gate.to_string(),
            },
        )
        .when("card_tx_type", "11121000"),
    );
}

/// Customer `uid`, deleted while a paid `onetime` kept a card for it, stays deleted and keeps
/// nothing: its key retired and the kept card dropped (`deleted`, `replaced`), and once a lease
/// has passed both keys are deleted at KCP. The customer's lookup answer.
pub(crate) async fn assert_deleted_keeping_no_card(app: &TestApp, token: &str, uid: &str) -> Value {
    let (_, c) = app
        .get(&format!("/subscribe/customers/{uid}"), Some(token))
        .await;
    assert_eq!(c["code"], 1, "not brought back: {c}");
    let rows = key_rows(app, uid).await;
    assert_eq!(
        rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        ["deleted", "replaced"]
    );
    app.advance(app.app.gateway.settings.lease_secs + 1);
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    let keys = app.sandbox.batch_keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.state == BatchKeyState::Deleted),
        "{keys:?}"
    );
    c
}

const OLD_CARD: &str = "411111******1111";
const LIMIT_CARD: &str = "400000******8179";
const NEW_CARD: &str = "555555******4444";

#[tokio::test]
async fn a_declined_onetime_with_a_customer_uid_keeps_the_customers_card() {
    let app = spawn_app().await;
    let token = app.token().await;
    let registered = register(&app, &token, "c1", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(registered["code"], 0, "{registered}");

    let declined = onetime(
        &app,
        &token,
        "c1",
        "ot-declined",
        test_cards::INSUFFICIENT_LIMIT,
    )
    .await;

    assert_eq!(declined["code"], 0, "{declined}");
    assert_eq!(declined["response"]["status"], "failed", "{declined}");
    let (_, c) = app.get("/subscribe/customers/c1", Some(&token)).await;
    assert_eq!(c["response"], registered["response"], "card and details");
    let (_, paid) = again(&app, &token, "c1", "again-after-decline", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(paid["response"]["card_number"], OLD_CARD);
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    assert_eq!(kcp_state(&app, OLD_CARD), BatchKeyState::Active);
    assert_eq!(kcp_state(&app, LIMIT_CARD), BatchKeyState::Deleted);
    let rows = key_rows(&app, "c1").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].status, "replaced", "never the customer's");
    assert!(rows[1].pg_deleted_at.is_some(), "{:?}", rows[1]);
    assert_eq!(rows[1].batch_key_sealed, "");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_paid_onetime_with_a_customer_uid_replaces_the_card_and_deletes_the_old_key_at_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "c2", test_cards::SHINHAN_CREDIT).await;

    let paid = onetime(&app, &token, "c2", "ot-paid", test_cards::SAMSUNG_CHECK).await;

    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(card_of(&app, &token, "c2").await, NEW_CARD);
    assert_eq!(kcp_state(&app, OLD_CARD), BatchKeyState::Deleted);
    assert_eq!(kcp_state(&app, NEW_CARD), BatchKeyState::Active);
    let (_, again_paid) = again(&app, &token, "c2", "again-after-paid", 1000).await;
    assert_eq!(
        again_paid["response"]["card_number"], NEW_CARD,
        "{again_paid}"
    );
    let rows = key_rows(&app, "c2").await;
    assert_eq!(
        rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        ["replaced", "active"]
    );
    assert_eq!(rows[1].pg_delete_next_at, None, "nothing left to delete");
    assert_eq!(rows[1].inserted_at, rows[0].inserted_at, "registered then");
    app.assert_ledger_agrees().await;
}

/// KCP approves but its answer is lost; the request's own inquiry finds the approval and records
/// it paid: the card is kept then, as for an answer that arrived.
#[tokio::test]
async fn a_onetime_whose_approval_is_found_by_inquiry_keeps_the_card() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "c3", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", "11121000"),
    );

    let paid = onetime(&app, &token, "c3", "ot-found", test_cards::SAMSUNG_CHECK).await;

    assert!(app.sandbox.armed_faults().is_empty(), "the answer was lost");
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(card_of(&app, &token, "c3").await, NEW_CARD);
    app.assert_ledger_agrees().await;
}

/// KCP's answer and the request's inquiry are both lost: nothing is known, so the customer keeps
/// its card and the new key waits (a deletion pass meanwhile leaves it alone). The resolver then
/// settles the charge (net-cancelled: the merchant was not told "paid"), and the new key is
/// deleted at KCP.
#[tokio::test]
async fn a_onetime_whose_outcome_is_unknown_keeps_the_customers_card_and_its_key_waits_for_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "c4", test_cards::SHINHAN_CREDIT).await;
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", "11121000"),
    );
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));

    let unknown = onetime(&app, &token, "c4", "ot-unknown", test_cards::SAMSUNG_CHECK).await;

    assert_eq!(unknown["code"], 1, "{unknown}");
    assert_eq!(card_of(&app, &token, "c4").await, OLD_CARD);
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    assert_eq!(
        kcp_state(&app, NEW_CARD),
        BatchKeyState::Active,
        "not deleted while its charge may yet be paid"
    );
    assert_eq!(key_rows(&app, "c4").await[1].status, "pending");

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    app.advance(app.app.gateway.settings.lease_secs + 1);
    app.app.gateway.retry_key_deletions(10).await.unwrap();

    assert_eq!(card_of(&app, &token, "c4").await, OLD_CARD);
    assert_eq!(kcp_state(&app, NEW_CARD), BatchKeyState::Deleted);
    assert_eq!(kcp_state(&app, OLD_CARD), BatchKeyState::Active);
    app.assert_ledger_agrees().await;
}

/// The paid record is written but the card's adoption is not (the database refuses it): the
/// payment stays paid, and the resolver's pass over retired keys makes the card the customer's
/// later, from the pending key that names the paid payment.
#[tokio::test]
async fn a_kept_card_whose_adoption_could_not_be_written_is_adopted_by_the_resolver() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "c5", test_cards::SHINHAN_CREDIT).await;
    let refuse = "OLD.status = 'pending' AND NEW.status = 'active'";
    refuse_writes(&app, "refuse_adoption", "UPDATE", "billing_keys", refuse).await;

    let paid = onetime(
        &app,
        &token,
        "c5",
        "ot-adopt-later",
        test_cards::SAMSUNG_CHECK,
    )
    .await;

    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(
        card_of(&app, &token, "c5").await,
        OLD_CARD,
        "not adopted yet"
    );
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    assert_eq!(kcp_state(&app, NEW_CARD), BatchKeyState::Active, "kept");
    execute(
        &app,
        vec![
            "DROP TRIGGER refuse_adoption".to_string()
                + if app.database_url.starts_with("postgres") {
                    " ON billing_keys"
                } else {
                    ""
                },
        ],
    )
    .await;

    app.advance(app.app.gateway.settings.lease_secs + 1);
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    app.app.gateway.retry_key_deletions(10).await.unwrap();

    assert_eq!(card_of(&app, &token, "c5").await, NEW_CARD);
    assert_eq!(kcp_state(&app, NEW_CARD), BatchKeyState::Active);
    assert_eq!(kcp_state(&app, OLD_CARD), BatchKeyState::Deleted);
    app.assert_ledger_agrees().await;
}

/// The customer is deleted while a `onetime` keeping a card for it is at KCP (the approval held
/// there). The delete drops that card with the customer, so the charge, paid afterwards, keeps
/// nothing: the customer stays deleted (the merchant was told so), and the card's key, never the
/// customer's, is deleted at KCP once its charge has settled, as is the deleted key.
#[tokio::test]
async fn a_customer_deleted_while_a_onetime_keeps_a_card_for_it_stays_deleted_once_it_is_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "c6", test_cards::SHINHAN_CREDIT).await;
    let gate = "kept-card-of-a-deleted-customer";
    hold_key_in_charges_at_kcp(&app, gate);

    let paying = onetime(&app, &token, "c6", "ot-deleted", test_cards::SAMSUNG_CHECK);
    let deleting = async {
        app.sandbox.until_held(gate).await;
        let deleted = delete_customer(&app, &token, "c6").await;
        app.sandbox.open_gate(gate);
        deleted
    };
    let (paid, deleted) = tokio::join!(paying, deleting);

    assert_eq!(deleted["code"], 0, "{deleted}");
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let c = assert_deleted_keeping_no_card(&app, &token, "c6").await;
    assert_eq!(
        c["message"],
        "요청하신 customer_uid(c6)로 등록된 정보를 찾을 수 없습니다."
    );
    assert_eq!(kcp_state(&app, NEW_CARD), BatchKeyState::Deleted);
    assert_eq!(kcp_state(&app, OLD_CARD), BatchKeyState::Deleted);
    app.assert_ledger_agrees().await;
}
