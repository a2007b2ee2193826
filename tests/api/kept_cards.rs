//! `onetime` with a `customer_uid`: the card becomes the customer's billing key only once the
//! payment is paid (seed 004), whoever records it paid; otherwise the key issued for it is deleted
//! at KCP and the customer keeps the card it had (service/kept_cards.rs).
use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
use serde_json::{json, Value};

use crate::billing::{again, delete_customer, kcp_state_of, key_rows, register};
use crate::helpers::{
    allow_writes, captured_logs, execute, future_expiry, refuse_writes, spawn_app, test_cards,
    TestApp, SETTLE_SECS,
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

/// Makes pending key rows adopted by the statement that claims their deletion (the resolver's
/// claim counts a try): the adoption's write (`store::billing::activate_pending_key`, for a
/// customer without a key to retire) committed the moment the claim commits, before the pass that
/// claimed the key goes on. The trigger `adopt_on_claim`.
async fn adopt_when_claimed(app: &TestApp) {
    let adopt = "UPDATE billing_keys SET status = 'active', deleted_at = NULL, \
                 pg_delete_next_at = NULL, pg_delete_tries = 0, pg_delete_lease_until = 0 \
                 WHERE id = NEW.id AND status = 'pending';";
    let claimed = "OLD.status = 'pending' AND NEW.pg_delete_tries = OLD.pg_delete_tries + 1";
    let statements = if app.database_url.starts_with("postgres") {
        vec![
            format!(
                "CREATE FUNCTION adopt_on_claim() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN {adopt} RETURN NULL; END $$"
            ),
            format!(
                "CREATE TRIGGER adopt_on_claim AFTER UPDATE ON billing_keys FOR EACH ROW \
                 WHEN ({claimed}) EXECUTE FUNCTION adopt_on_claim()"
            ),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER adopt_on_claim AFTER UPDATE ON billing_keys WHEN {claimed} \
             BEGIN {adopt} END"
        )]
    };
    execute(app, statements).await;
}

/// The resolver's deletion pass claims a kept card whose charge is paid but not adopted yet, and
/// the paying request's adoption commits right after the claim, before the pass goes on: the
/// order a soak's PostgreSQL log showed (the claim's UPDATE, the adoption's, then the pass reading
/// the key as active and deleting it at KCP as a replaced key, under the customer), made certain
/// by [`adopt_when_claimed`]: whatever the pass reads after its claim finds the card adopted. The
/// pass goes by the key as its claim took it, a card whose charge is paid: the customer's key,
/// never deleted at KCP, and the next `again` is paid with it.
#[tokio::test]
async fn a_kept_card_adopted_right_after_the_resolver_claims_its_deletion_is_not_deleted_at_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let adoption = "OLD.status = 'pending' AND NEW.status = 'active'";
    refuse_writes(&app, "refuse_adoption", "UPDATE", "billing_keys", adoption).await;
    let paid = onetime(
        &app,
        &token,
        "c7",
        "ot-adopted-on-claim",
        test_cards::SAMSUNG_CHECK,
    )
    .await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    allow_writes(&app, "refuse_adoption", "billing_keys").await;
    assert_eq!(key_rows(&app, "c7").await[0].status, "pending");
    adopt_when_claimed(&app).await;

    app.advance(app.app.gateway.settings.lease_secs + 1);
    assert_eq!(app.app.gateway.retry_key_deletions(10).await.unwrap(), 1);

    assert_eq!(kcp_state(&app, NEW_CARD), BatchKeyState::Active);
    let rows = key_rows(&app, "c7").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "active");
    assert_eq!(rows[0].pg_deleted_at, None);
    assert_eq!(rows[0].pg_delete_next_at, None, "{:?}", rows[0]);
    assert_eq!(card_of(&app, &token, "c7").await, NEW_CARD);
    let (_, charged) = again(&app, &token, "c7", "again-after-adoption", 1000).await;
    assert_eq!(charged["response"]["status"], "paid", "{charged}");
    assert_eq!(charged["response"]["card_number"], NEW_CARD);
    app.advance(app.app.gateway.settings.lease_secs + 1);
    assert_eq!(app.app.gateway.retry_key_deletions(10).await.unwrap(), 0);
    app.assert_ledger_agrees().await;
}

/// An active key with its deletion at KCP pending (written here as an earlier openport left a kept
/// card adopted while its pass held it: the pass deferred the deletion onto the adopted key; the
/// next one deleted it at KCP, then met "already deleted", 8303, every lease, recorded nothing, and
/// at last logged that it gave up on a key that "may still be chargeable"). The pass never asks
/// KCP to delete such a key: it ends the deletion once, with an ERROR naming merchant_id and
/// key_id (never the customer_uid) for the customer whose key KCP may have deleted, and tries
/// nothing again. A key KCP still holds goes on being charged.
#[tokio::test]
async fn an_active_key_found_with_its_deletion_pending_is_not_deleted_at_kcp_and_the_deletion_ends_with_an_error(
) {
    use openport::service::retired_keys::{retry_backoff, KEY_DELETE_TRIES};
    let app = spawn_app().await;
    let token = app.token().await;
    let held = "buyer.key-held@example.com";
    let gone = "buyer.key-gone@example.com";
    for (uid, card) in [
        (held, test_cards::SHINHAN_CREDIT),
        (gone, test_cards::SAMSUNG_CHECK),
    ] {
        let paid = onetime(&app, &token, uid, &format!("ot-{uid}"), card).await;
        assert_eq!(paid["response"]["status"], "paid", "{paid}");
    }
    let held_key = key_rows(&app, held).await.remove(0);
    let gone_key = key_rows(&app, gone).await.remove(0);
    let gateway = &app.app.gateway;
    let m = gateway.merchant(gone_key.merchant_id).await.unwrap();
    let kcp = gateway
        .connectors
        .for_merchant(&m, &gateway.secrets)
        .unwrap();
    let batch_key = gateway
        .secrets
        .open_string(&gone_key.batch_key_sealed)
        .unwrap();
    kcp.delete_batch_key(&batch_key, &gone_key.group_id)
        .await
        .unwrap();
    let now = gateway.clock.unix();
    execute(
        &app,
        vec![format!(
            "UPDATE billing_keys SET pg_delete_next_at = {now} WHERE id IN ({}, {})",
            held_key.id, gone_key.id
        )],
    )
    .await;

    assert_eq!(gateway.retry_key_deletions(10).await.unwrap(), 2);
    for _ in 0..3 {
        app.advance(retry_backoff(KEY_DELETE_TRIES) + 1);
        assert_eq!(gateway.retry_key_deletions(10).await.unwrap(), 0);
    }

    assert_eq!(kcp_state_of(&app, &held_key), BatchKeyState::Active);
    assert_eq!(kcp_state_of(&app, &gone_key), BatchKeyState::Deleted);
    for uid in [held, gone] {
        let row = key_rows(&app, uid).await.remove(0);
        assert_eq!(row.status, "active", "{row:?}");
        assert_eq!(row.pg_delete_next_at, None, "{row:?}");
        assert_eq!(row.pg_delete_tries, 0, "{row:?}");
        assert_eq!(row.pg_delete_lease_until, 0, "{row:?}");
        assert_eq!(row.pg_deleted_at, None, "{row:?}");
    }
    let token = app.token().await;
    let (_, charged) = again(&app, &token, held, "again-key-held", 1000).await;
    assert_eq!(charged["response"]["status"], "paid", "{charged}");
    let logs = captured_logs();
    for key in [&held_key, &gone_key] {
        let fields = [
            format!("key_id={}", key.id),
            format!("merchant_id={}", key.merchant_id),
        ];
        let line = logs
            .lines()
            .find(|l| {
                l.contains("had its deletion at KCP pending")
                    && fields
                        .iter()
                        .all(|f| l.split_whitespace().any(|w| w == f.as_str()))
            })
            .unwrap_or_else(|| panic!("no ERROR for key {}", key.id));
        assert!(line.contains("ERROR"), "{line}");
    }
    for uid in [held, gone] {
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(uid)).collect();
        assert!(lines.is_empty(), "{uid} logged: {lines:#?}");
    }
    app.assert_ledger_agrees().await;
}
