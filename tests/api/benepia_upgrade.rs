//! Benepia point payments partly cancelled by an older openport, upgraded through migration
//! `m20261208_000028_point_reapproval_attempts`: found by their re-approval's tno afterwards.
use kcp_sandbox::test_points::BENEPIA_01;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;

use crate::benepia::{
    balance, cancel, cancelled_in_kcps_admin_and_acknowledged, left_owing_a_reapproval,
    paid_with_points, payment, reapproved_at_kcp,
};
use crate::helpers::{spawn_app, TestApp, SETTLE_SECS};
use openport::store::entity::pg_attempt;

const MIGRATION: &str = "m20261208_000028_point_reapproval_attempts";

/// Runs `sql` on the app's writer, committed.
async fn write(app: &TestApp, sql: &str) {
    let txn = app.app.gateway.db.write.begin().await.unwrap();
    txn.execute_unprepared(sql).await.unwrap();
    txn.commit().await.unwrap();
}

/// The attempts of the payment `imp_uid`, oldest first.
async fn attempts_of(app: &TestApp, imp_uid: &Value) -> Vec<pg_attempt::Model> {
    let db = &app.app.gateway.db.read;
    let p = openport::store::payments::by_imp_uid(db, Some(1), imp_uid.as_str().unwrap())
        .await
        .unwrap()
        .expect("the payment");
    pg_attempt::Entity::find()
        .filter(pg_attempt::Column::PaymentId.eq(p.id))
        .order_by_asc(pg_attempt::Column::Id)
        .all(db)
        .await
        .unwrap()
}

/// The payment's `reapproval` rows as `(order_no, tno, amount, state)`.
async fn reapprovals_of(app: &TestApp, imp_uid: &Value) -> Vec<(String, String, i64, String)> {
    attempts_of(app, imp_uid)
        .await
        .into_iter()
        .filter(|a| a.kind == openport::service::benepia::REAPPROVAL)
        .map(|a| (a.order_no, a.tno.unwrap_or_default(), a.amount, a.state))
        .collect()
}

/// What an older openport left of the payment `imp_uid`'s partial cancels: no `reapproval` row.
async fn without_reapproval_rows(app: &TestApp, imp_uid: &Value) {
    let id = attempts_of(app, imp_uid).await[0].payment_id;
    write(
        app,
        &format!("DELETE FROM pg_attempts WHERE payment_id = {id} AND kind = 'reapproval'"),
    )
    .await;
}

/// The payment `payments::by_tno` finds by `tno` (KCP's notices, service/orphans.rs), its imp_uid.
async fn found_by(app: &TestApp, tno: &str) -> Option<String> {
    openport::store::payments::by_tno(&app.app.gateway.db.read, tno)
        .await
        .unwrap()
        .map(|p| p.imp_uid)
}

/// An upgrade through migration 000028, as a start of this version runs it (again, after the
/// test app's own start ran it on an empty database).
async fn upgrade(app: &TestApp) {
    write(
        app,
        &format!("DELETE FROM seaql_migrations WHERE version = '{MIGRATION}'"),
    )
    .await;
    app.app.gateway.db.migrate().await.expect("migrated");
}

/// A partial cancel (3,000 of 10,000) of a fresh point payment of `merchant_uid`; the payment and
/// its re-approval's tno.
async fn partly_cancelled(app: &TestApp, token: &str, merchant_uid: &str) -> (Value, String) {
    let p = paid_with_points(app, token, merchant_uid, 10_000).await;
    let c = cancel(app, token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    let reapproval = c["response"]["pg_tid"].as_str().unwrap().to_string();
    assert_ne!(reapproval, p["pg_tid"].as_str().unwrap());
    (p, reapproval)
}

/// Payments partly cancelled before the `reapproval` row existed (a383569): by the versions that
/// sent one `STRA` on the live tno (the cancel attempt under `<order_no>P<id>`, "STRA, re-approved
/// as T"), once and twice, and by the first versions (`STSC`, then `STRA` on the cancelled tno:
/// `<order_no>R<id>`, "STSC + STRA, re-approved as T"). No attempt names the payment's trade, the
/// last re-approval, so KCP's notice of its cancel in KCP's admin found no payment and was kept,
/// the payment showing the rest paid while KCP had given every point back. Migrated, each gets the
/// `reapproval` row of its current trade (the last cancel's order number, the tno, the amount it
/// re-approved), the notice is recorded as the rest cancelled, and a second run writes nothing.
#[tokio::test]
async fn payments_an_older_version_partly_cancelled_are_found_by_their_reapprovals_tno_once_migrated(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let (one_stra, one_tno) = partly_cancelled(&app, &token, "bp-old-stra").await;
    let (two_calls, two_tno) = partly_cancelled(&app, &token, "bp-old-stsc").await;
    let (twice, twice_first) = partly_cancelled(&app, &token, "bp-old-twice").await;
    let c = cancel(&app, &token, &twice["imp_uid"], Some(2_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    let twice_tno = c["response"]["pg_tid"].as_str().unwrap().to_string();
    assert_eq!(balance(&app, BENEPIA_01.id), 81_000);
    for p in [&one_stra, &two_calls, &twice] {
        without_reapproval_rows(&app, &p["imp_uid"]).await;
    }
    // The first versions' note and order number on the cancel attempt.
    let stsc_cancel = attempts_of(&app, &two_calls["imp_uid"]).await[1].clone();
    assert_eq!(stsc_cancel.kind, "cancel");
    // Only the suffix: the payment's own order number (`OP` and the imp_uid's digits) may hold
    // `P<id>` too, when its digits start with the attempt's id.
    let legacy_order = format!(
        "{}R{}",
        stsc_cancel
            .order_no
            .strip_suffix(&format!("P{}", stsc_cancel.id))
            .expect("a point cancel's order number ends in P<attempt id>"),
        stsc_cancel.id
    );
    write(
        &app,
        &format!(
            "UPDATE pg_attempts SET order_no = '{legacy_order}', \
             result_message = 'STSC + STRA, re-approved as {two_tno}' WHERE id = {}",
            stsc_cancel.id
        ),
    )
    .await;
    for tno in [&one_tno, &two_tno, &twice_tno] {
        assert_eq!(found_by(&app, tno).await, None, "the older shape");
    }

    upgrade(&app).await;

    for (p, tno, rest, left) in [
        (&one_stra, &one_tno, 7_000, 88_000),
        (&two_calls, &two_tno, 7_000, 95_000),
        (&twice, &twice_tno, 5_000, 100_000),
    ] {
        cancelled_in_kcps_admin_and_acknowledged(&app, tno).await;
        assert_eq!(balance(&app, BENEPIA_01.id), left);
        let shown = payment(&app, &token, &p["imp_uid"]).await;
        assert_eq!(
            (shown["status"].as_str(), shown["cancel_amount"].as_i64()),
            (Some("cancelled"), Some(10_000)),
            "{shown}"
        );
        let history = shown["cancel_history"].as_array().unwrap();
        assert_eq!(
            (
                history.last().unwrap()["amount"].as_i64(),
                history.last().unwrap()["reason"].as_str(),
                history.last().unwrap()["pg_tid"].as_str()
            ),
            (
                Some(rest),
                Some("PG사 취소 통보 (TX06)"),
                Some(tno.as_str())
            ),
            "{shown}"
        );
    }
    let one_cancel = attempts_of(&app, &one_stra["imp_uid"]).await[1].clone();
    assert_eq!(one_cancel.kind, "cancel");
    assert!(
        one_cancel
            .order_no
            .ends_with(&format!("P{}", one_cancel.id)),
        "{}",
        one_cancel.order_no
    );
    let twice_last = attempts_of(&app, &twice["imp_uid"]).await[2].clone();
    assert_eq!(twice_last.kind, "cancel");
    assert_eq!(twice_last.tno, Some(twice_first), "the second cancel's");
    assert_eq!(
        reapprovals_of(&app, &one_stra["imp_uid"]).await,
        [(
            one_cancel.order_no,
            one_tno.clone(),
            7_000,
            "succeeded".into()
        )]
    );
    assert_eq!(
        reapprovals_of(&app, &two_calls["imp_uid"]).await,
        [(legacy_order, two_tno.clone(), 7_000, "succeeded".into())]
    );
    assert_eq!(
        reapprovals_of(&app, &twice["imp_uid"]).await,
        [(
            twice_last.order_no,
            twice_tno.clone(),
            5_000,
            "succeeded".into()
        )],
        "the current trade only, for what its cancel left"
    );
    upgrade(&app).await;
    for p in [&one_stra, &two_calls, &twice] {
        assert_eq!(reapprovals_of(&app, &p["imp_uid"]).await.len(), 1);
    }

    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// An older version's owed re-approval that the resolver found cancelled in KCP's admin before the
/// `reapproval` row existed (637d756): the whole payment recorded cancelled, its `pg_tid` the
/// re-approval's tno, which no attempt named. Migrated, the row names it for the amount KCP had
/// re-approved (6,000, the balance less the 4,000 cancel), and a notice of that tno finds the
/// payment (nothing left to record) instead of being kept as one of a trade no payment holds.
#[tokio::test]
async fn a_payment_whose_reapproval_an_older_version_found_cancelled_is_found_by_its_tno_once_migrated(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-old-undone", 10_000).await;
    let tno = p["pg_tid"].as_str().unwrap().to_string();
    let reorder = left_owing_a_reapproval(&app, "bp-old-undone", &tno).await;
    let reapproval = reapproved_at_kcp(&app, &tno, 6_000, &reorder).await;
    assert!(app.sandbox.cancel_in_admin(&reapproval));
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let done = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(done["cancel_amount"], 10_000, "{done}");
    assert_eq!(done["pg_tid"], reapproval.as_str(), "{done}");
    without_reapproval_rows(&app, &p["imp_uid"]).await;
    assert_eq!(found_by(&app, &reapproval).await, None, "the older shape");

    upgrade(&app).await;

    assert_eq!(
        found_by(&app, &reapproval).await.as_deref(),
        p["imp_uid"].as_str()
    );
    let answer = app
        .http
        .post(app.url("/kcp/notify"))
        .form(&[
            ("site_cd", "T0000"),
            ("tno", reapproval.as_str()),
            ("tx_cd", "TX06"),
            ("tx_tm", "20261208120000"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("value=\"0000\""), "{answer}");
    let outcome = app
        .app
        .gateway
        .db
        .read
        .query_one(sea_orm::Statement::from_string(
            app.app.gateway.db.read.get_database_backend(),
            format!("SELECT outcome FROM kcp_notifications WHERE tno = '{reapproval}'"),
        ))
        .await
        .unwrap()
        .expect("the notice is recorded")
        .try_get::<Option<String>>("", "outcome")
        .unwrap();
    assert_eq!(
        outcome.as_deref(),
        Some("unchanged"),
        "not kept as a stranger's"
    );
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        10_000
    );
    assert_eq!(
        reapprovals_of(&app, &p["imp_uid"]).await,
        [(reorder, reapproval.clone(), 6_000, "succeeded".into())]
    );
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}
