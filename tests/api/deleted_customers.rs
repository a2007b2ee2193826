//! `DELETE /subscribe/customers/{customer_uid}` against the customer's schedules and the cards
//! key-in charges keep for it: once a delete has answered, nothing of the customer is scheduled,
//! charged or kept, whatever ran beside it.
use kcp_sandbox::{paths, BatchKeyState, Fault, FaultRule};
use serde_json::{json, Value};

use crate::billing::{delete_customer, key_rows, register};
use crate::helpers::{slow_writes, spawn_app, test_cards, until_a_write_is_held, TestApp};
use crate::kept_cards::{assert_deleted_keeping_no_card, hold_key_in_charges_at_kcp, onetime};
use crate::schedules::{assert_a_deleted_keys_404, payments_of, webhooks_of, NOTICE_URL};

/// `POST /subscribe/payments/schedule` of one charge of `uid` an hour from the app's now.
async fn schedule_one(app: &TestApp, token: &str, uid: &str, merchant_uid: &str) -> Value {
    let at = app.app.gateway.clock.unix() + 3600;
    app.post(
        "/subscribe/payments/schedule",
        Some(token),
        json!({"customer_uid": uid, "schedules": [
            {"merchant_uid": merchant_uid, "schedule_at": at, "amount": 3000, "name": "월간 구독",
             "notice_url": NOTICE_URL}
        ]}),
    )
    .await
    .1
}

/// `uid` registered with two schedules: `{uid}-1` revoked by the merchant (which `…/retry` and
/// `…/reschedule` may arm again) and `{uid}-2` pending.
async fn a_revoked_and_a_pending_schedule(app: &TestApp, token: &str, uid: &str) {
    register(app, token, uid, test_cards::SHINHAN_CREDIT).await;
    for n in [1, 2] {
        let body = schedule_one(app, token, uid, &format!("{uid}-{n}")).await;
        assert_eq!(body["code"], 0, "{body}");
    }
    let (_, body) = app
        .post(
            "/subscribe/payments/unschedule",
            Some(token),
            json!({"customer_uid": uid, "merchant_uid": format!("{uid}-1")}),
        )
        .await;
    assert_eq!(body["response"][0]["schedule_status"], "revoked", "{body}");
}

/// PostgreSQL: `uid` of [`a_revoked_and_a_pending_schedule`] is deleted, its delete held after
/// it retired the key, in its revocation of `{uid}-2` (a trigger holds it with its transaction
/// open), while `POST …/schedule/{uid}-1/{path}` is asked with `body` (given the
/// app's now): that call reads the key still active, and writes while the delete has not
/// committed. It must be the 404 of a deleted key, and `{uid}-1` left revoked
/// ([`assert_left_revoked`]). Nothing on SQLite, whose one writer runs the two one after the other.
async fn assert_arming_again_during_the_delete_is_refused(
    uid: &str,
    path: &str,
    body: impl FnOnce(i64) -> Value,
) {
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return;
    }
    let token = app.token().await;
    a_revoked_and_a_pending_schedule(&app, &token, uid).await;
    let revoking = "OLD.status = 'scheduled' AND NEW.status = 'revoked'";
    slow_writes(&app, "slow_revoke", "UPDATE", "schedules", revoking).await;
    let url = format!("/subscribe/payments/schedule/{uid}-1/{path}");
    let body = body(app.app.gateway.clock.unix());
    let asking = async {
        until_a_write_is_held(&app).await; // the delete, in its transaction
        app.post(&url, Some(&token), body).await
    };

    let (deleted, (status, answer)) = tokio::join!(delete_customer(&app, &token, uid), asking);

    assert_eq!(deleted["code"], 0, "{deleted}");
    assert_a_deleted_keys_404(status, &answer);
    assert_left_revoked(&app, uid).await;
}

/// `{uid}-1` as its merchant left it: revoked, never charged, no payment and no `failed`
/// webhook, now or once it would have been due.
async fn assert_left_revoked(app: &TestApp, uid: &str) {
    app.advance(3601);
    app.app.gateway.run_due_schedules(100).await.unwrap();
    let merchant_uid = format!("{uid}-1");
    let token = app.token().await;
    assert_eq!(schedule_status(app, &token, &merchant_uid).await, "revoked");
    assert!(payments_of(app, &merchant_uid).await.is_empty());
    assert_eq!(webhooks_of(app, &merchant_uid, "failed").await, 0);
    assert!(app.sandbox.ledger().is_empty(), "nothing charged");
}

/// The `schedule_status` of `merchant_uid`'s schedule.
async fn schedule_status(app: &TestApp, token: &str, merchant_uid: &str) -> Value {
    let (_, s) = app
        .get(
            &format!("/subscribe/payments/schedule/{merchant_uid}"),
            Some(token),
        )
        .await;
    s["response"]["schedule_status"].clone()
}

/// A schedule request read the customer's key and is still writing its schedule (PostgreSQL: a
/// trigger holds it in the insert) when the customer is deleted. The schedule must not survive
/// the delete as `scheduled`: it would fail when due, announced by a `failed` webhook, for a
/// customer the merchant deleted. The schedule's transaction holds the key's row locked, so the
/// delete waits for it and then revokes it.
#[tokio::test]
async fn a_schedule_written_while_its_customer_is_deleted_does_not_survive_the_delete() {
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the two writes one after the other
    }
    let token = app.token().await;
    register(&app, &token, "del-sched", test_cards::SHINHAN_CREDIT).await;
    slow_writes(&app, "slow_schedule", "INSERT", "schedules", "true").await;
    let scheduling = {
        let url = app.url("/subscribe/payments/schedule");
        let http = app.http.clone();
        let token = token.clone();
        let at = app.app.gateway.clock.unix() + 3600;
        tokio::spawn(async move {
            let res = http
                .post(url)
                .header("Authorization", token)
                .json(&json!({"customer_uid": "del-sched", "schedules": [
                    {"merchant_uid": "del-sched-1", "schedule_at": at, "amount": 3000, "name": "월간 구독"}
                ]}))
                .send()
                .await
                .unwrap();
            TestApp::read(res).await.1
        })
    };
    until_a_write_is_held(&app).await; // the schedule's insert, in its transaction

    let deleted = delete_customer(&app, &token, "del-sched").await;
    let scheduled = scheduling.await.unwrap();

    assert_eq!(deleted["code"], 0, "{deleted}");
    if scheduled["code"] == 0 {
        assert_eq!(
            schedule_status(&app, &token, "del-sched-1").await,
            "revoked",
            "scheduled before the delete, revoked by it"
        );
    }
    app.advance(3601);
    app.app.gateway.run_due_schedules(100).await.unwrap();
    assert!(app.sandbox.ledger().is_empty(), "nothing charged");
    let token = app.token().await;
    let (status, body) = app.get("/payments/find/del-sched-1", Some(&token)).await;
    assert_eq!(
        status,
        reqwest::StatusCode::NOT_FOUND,
        "no payment, failed or not: {body}"
    );
}

/// A schedule falls due while KCP is still deleting the customer's key: it is not charged. The
/// delete revokes the customer's pending schedules, and retires its key, before it calls KCP.
#[tokio::test]
async fn a_schedule_falling_due_during_its_customers_delete_is_not_charged() {
    // KCP's delete is held long enough for the schedule to be run meanwhile.
    let app = crate::helpers::spawn_app_with(|c| {
        c.kcp.timeout_ms = 4_000;
        c.resolver.settle_secs = 15;
    })
    .await;
    let token = app.token().await;
    register(&app, &token, "del-due", test_cards::SHINHAN_CREDIT).await;
    let body = schedule_one(&app, &token, "del-due", "del-due-1").await;
    assert_eq!(body["code"], 0, "{body}");
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::Delay { ms: 1_500 })
            .when("tx_type", "10005010")
            .times(1),
    );
    let deleting = delete_customer(&app, &token, "del-due");
    let running = async {
        // Once the delete has reached KCP (its fault is used up), the schedule falls due.
        app.until_the_faults_are_used().await;
        app.advance(3601);
        app.app.gateway.run_due_schedules(100).await.unwrap()
    };

    let (deleted, _) = tokio::join!(deleting, running);

    assert_eq!(deleted["code"], 0, "{deleted}");
    assert!(app.sandbox.ledger().is_empty(), "nothing charged");
    let token = app.token().await;
    assert_eq!(schedule_status(&app, &token, "del-due-1").await, "revoked");
    assert_eq!(app.sandbox.batch_keys()[0].state, BatchKeyState::Deleted);
    let row = &key_rows(&app, "del-due").await[0];
    assert_eq!(row.status, "deleted");
    assert!(row.pg_deleted_at.is_some(), "{row:?}");
}

/// A `onetime` keeping a card for the customer is paid while the customer's delete is still
/// writing (PostgreSQL: a trigger holds the delete after it retired the customer's key, as it
/// drops the pending card), so the card's adoption reads the customer's key still active and the
/// card still pending, and the delete commits before the adoption writes. The adoption's writes
/// are conditional on those rows as it read them: it finds the key retired and the card dropped,
/// and keeps nothing. The customer stays deleted, and both keys are deleted at KCP.
#[tokio::test]
async fn a_onetime_paid_while_its_customer_is_being_deleted_does_not_bring_the_customer_back() {
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the delete and the adoption one after the other
    }
    let token = app.token().await;
    register(&app, &token, "del-kept", test_cards::SHINHAN_CREDIT).await;
    let dropped = "OLD.status = 'pending' AND NEW.status = 'replaced'";
    slow_writes(&app, "slow_drop", "UPDATE", "billing_keys", dropped).await;
    let gate = "kept-card-during-delete";
    hold_key_in_charges_at_kcp(&app, gate);
    let paying = onetime(
        &app,
        &token,
        "del-kept",
        "del-kept-1",
        test_cards::SAMSUNG_CHECK,
    );
    let deleting = async {
        app.sandbox.until_held(gate).await;
        tokio::join!(delete_customer(&app, &token, "del-kept"), async {
            until_a_write_is_held(&app).await; // the delete, in its transaction
            app.sandbox.open_gate(gate);
        })
        .0
    };

    let (paid, deleted) = tokio::join!(paying, deleting);

    assert_eq!(deleted["code"], 0, "{deleted}");
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_deleted_keeping_no_card(&app, &token, "del-kept").await;
}

/// `…/retry` of a revoked schedule asked while its customer is being deleted (PostgreSQL: the
/// delete held after it retired the key): the retry read the key still active before the delete
/// committed, and its re-arm then claimed and ran the schedule of a customer the merchant deleted,
/// recording a failed payment with a `failed` webhook. The re-arm itself requires the active key,
/// waiting for the delete's retirement of it: the retry is the 404 of a deleted key.
#[tokio::test]
async fn a_retry_asked_while_its_customer_is_being_deleted_is_a_404_and_runs_nothing() {
    assert_arming_again_during_the_delete_is_refused("del-retry", "retry", |_| json!({})).await;
}

/// `…/reschedule` of a revoked schedule asked while its customer is being deleted, as above: the
/// schedule stood `scheduled` for a customer the merchant deleted, and when due recorded a failed
/// payment with a `failed` webhook. It is the 404 of a deleted key, the schedule left revoked.
#[tokio::test]
async fn a_reschedule_asked_while_its_customer_is_being_deleted_is_a_404_and_never_runs() {
    assert_arming_again_during_the_delete_is_refused(
        "del-resched",
        "reschedule",
        |now| json!({ "schedule_at": now + 1800 }),
    )
    .await;
}

/// The re-arm's own write (`store::billing::rearm_schedule`, `rearm_and_claim`) made after the
/// customer's delete committed, as when the delete commits between `…/retry`'s or
/// `…/reschedule`'s check of the key and that write: it arms nothing, and the schedule stays
/// revoked. Both writes re-armed the schedule of the deleted customer.
#[tokio::test]
async fn a_rearm_written_after_its_customers_delete_committed_arms_nothing() {
    use openport::store::{billing, entity::schedule};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    let token = app.token().await;
    a_revoked_and_a_pending_schedule(&app, &token, "del-late").await;
    let deleted = delete_customer(&app, &token, "del-late").await;
    assert_eq!(deleted["code"], 0, "{deleted}");
    let db = &app.app.gateway.db.write;
    let s = schedule::Entity::find()
        .filter(schedule::Column::MerchantUid.eq("del-late-1"))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let now = app.app.gateway.clock.unix();

    let rearmed = billing::rearm_schedule(db, s.id, now + 60, now)
        .await
        .unwrap();
    let claimed = billing::rearm_and_claim(db, s.id, now, now + 120, billing::new_claim_token())
        .await
        .unwrap();

    assert!(!rearmed, "rescheduled");
    assert!(claimed.is_none(), "claimed: {claimed:?}");
    assert_left_revoked(&app, "del-late").await;
}
