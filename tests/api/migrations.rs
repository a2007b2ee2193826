//! Upgrading a database that already holds payments.
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::helpers::fresh_database;

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<u64, sea_orm::DbErr> {
    db.execute(Statement::from_string(db.get_database_backend(), sql))
        .await
        .map(|r| r.rows_affected())
}

/// Merchant 1, as the migrations of its time knew it.
async fn insert_merchant(db: &DatabaseConnection) {
    exec(
        db,
        "INSERT INTO merchants (id, imp_code, name, imp_key, imp_secret_hash, site_cd, \
         kcp_certificate_pem, kcp_private_key_sealed, kcp_passphrase_sealed, test_mode, \
         created_at, webhook_content_type) \
         VALUES (1, 'imp00000001', 'shop', 'key', 'hash', 'T0000', '', '', '', true, 1, 'json')",
    )
    .await
    .unwrap();
}

async fn insert_payment(
    db: &DatabaseConnection,
    imp_uid: &str,
    merchant_uid: &str,
    status: &str,
) -> Result<u64, sea_orm::DbErr> {
    exec(
        db,
        &format!(
            "INSERT INTO payments (imp_uid, merchant_id, merchant_uid, order_no, status, pay_method, \
             channel, pg_provider, pg_id, amount, cancel_amount, currency, card_quota, sandbox, \
             started_at, updated_at, escrow) \
             VALUES ('{imp_uid}', 1, '{merchant_uid}', 'o-{imp_uid}', '{status}', 'card', 'api', \
             'kcp', 'T0000', 1000, 0, 'KRW', 0, true, 1, 1, false)"
        ),
    )
    .await
}

/// Migration `m20261202_000005` replaced the partial unique index on live payments with one over
/// the generated `failed_key`: on a database with history, failed payments keep sharing their
/// merchant_uid, the live one still holds it alone, and a payment that fails frees it.
#[tokio::test]
async fn upgrading_keeps_one_live_payment_per_merchant_uid_and_any_number_of_failed_ones() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(4)).await.unwrap();
    insert_merchant(&db).await;
    for (imp_uid, status) in [("imp_a", "failed"), ("imp_b", "failed"), ("imp_c", "paid")] {
        insert_payment(&db, imp_uid, "order-1", status)
            .await
            .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();

    let keys: Vec<(String, i64, i64)> = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT imp_uid, id, failed_key FROM payments ORDER BY id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "imp_uid").unwrap(),
                r.try_get("", "id").unwrap(),
                r.try_get("", "failed_key").unwrap(),
            )
        })
        .collect();
    for (imp_uid, id, failed_key) in &keys {
        let expected = if imp_uid == "imp_c" { 0 } else { *id };
        assert_eq!(*failed_key, expected, "{imp_uid}");
    }

    let second_live = insert_payment(&db, "imp_d", "order-1", "ready").await;
    assert!(
        openport::store::is_unique_violation(&second_live.unwrap_err()),
        "a second live payment for the merchant_uid is refused"
    );
    insert_payment(&db, "imp_e", "order-1", "failed")
        .await
        .expect("another failed one is not");
    exec(
        &db,
        "UPDATE payments SET status = 'failed' WHERE imp_uid = 'imp_c'",
    )
    .await
    .unwrap();
    insert_payment(&db, "imp_f", "order-1", "ready")
        .await
        .expect("once the live payment failed, the merchant_uid is free");
}

/// Migrations `m20261203_000008` and `000009`: tokens stored in clear are gone (their holders ask
/// getToken again), and a currency prepared in lower case before prepare upper-cased it is KRW.
#[tokio::test]
async fn upgrading_forgets_clear_text_tokens_and_upper_cases_prepared_currencies() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(7)).await.unwrap();
    insert_merchant(&db).await;
    exec(
        &db,
        "INSERT INTO access_tokens (token, merchant_id, created_at, expires_at, live_slot) \
         VALUES ('cleartexttoken', 1, 1, 99999999999, 1)",
    )
    .await
    .unwrap();
    exec(
        &db,
        "INSERT INTO prepares (merchant_id, merchant_uid, amount, currency, created_at) \
         VALUES (1, 'p-lower', 1000, 'krw', 1), (1, 'p-none', 1000, NULL, 1)",
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();

    let count = |sql: &'static str| {
        let db = &db;
        async move {
            db.query_one(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    assert_eq!(count("SELECT COUNT(*) AS n FROM access_tokens").await, 0);
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM prepares WHERE currency = 'KRW'").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM prepares WHERE currency IS NULL").await,
        1
    );
}

/// Migration `m20261203_000014`: a payment's `cancel_amount` stays within `0..=amount` whatever
/// writes it (a CHECK constraint on PostgreSQL, triggers on SQLite).
#[tokio::test]
async fn a_cancelled_amount_outside_zero_to_the_amount_is_refused_by_the_database() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(13)).await.unwrap();
    insert_merchant(&db).await;
    insert_payment(&db, "imp_old", "order-old", "paid")
        .await
        .unwrap();
    Migrator::up(&db, None).await.unwrap();

    insert_payment(&db, "imp_new", "order-new", "paid")
        .await
        .unwrap();
    for imp_uid in ["imp_old", "imp_new"] {
        for bad in [1001, -1] {
            let refused = exec(
                &db,
                &format!("UPDATE payments SET cancel_amount = {bad} WHERE imp_uid = '{imp_uid}'"),
            )
            .await;
            assert!(refused.is_err(), "{imp_uid}: cancel_amount {bad} accepted");
        }
        let whole = exec(
            &db,
            &format!("UPDATE payments SET cancel_amount = 1000, status = 'cancelled' WHERE imp_uid = '{imp_uid}'"),
        )
        .await;
        assert_eq!(
            whole.unwrap(),
            1,
            "{imp_uid}: the whole amount back is fine"
        );
        let shrunk = exec(
            &db,
            &format!("UPDATE payments SET amount = 999 WHERE imp_uid = '{imp_uid}'"),
        )
        .await;
        assert!(
            shrunk.is_err(),
            "{imp_uid}: an amount below what was cancelled accepted"
        );
    }
    let inserted = exec(
        &db,
        "INSERT INTO payments (imp_uid, merchant_id, merchant_uid, order_no, status, pay_method, \
         channel, pg_provider, pg_id, amount, cancel_amount, currency, card_quota, sandbox, \
         started_at, updated_at, escrow) \
         VALUES ('imp_bad', 1, 'order-bad', 'o-bad', 'cancelled', 'card', 'api', 'kcp', 'T0000', \
         1000, 2000, 'KRW', 0, true, 1, 1, false)",
    )
    .await;
    assert!(
        inserted.is_err(),
        "a payment inserted with more cancelled than paid"
    );
}

/// Migration `m20261204_000016`: keys retired before it get a deletion record. A `deleted` key was
/// deleted at KCP before its row was retired: recorded so, its sealed key erased. A `replaced` key
/// had one best-effort delete whose outcome nobody recorded: pending, due at once (KCP answers
/// "already deleted" if it went through). An active key has nothing pending.
#[tokio::test]
async fn upgrading_marks_replaced_keys_pending_deletion_at_kcp_and_deleted_ones_done() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(15)).await.unwrap();
    insert_merchant(&db).await;
    exec(
        &db,
        "INSERT INTO billing_keys (merchant_id, customer_uid, status, batch_key_sealed, group_id, \
         pg_id, sandbox, inserted_at, updated_at, deleted_at) VALUES \
         (1, 'c-active', 'active', 'v2:k:active', 'T00001000001', 'T0000', true, 1, 1, NULL), \
         (1, 'c-replaced', 'replaced', 'v2:k:replaced', 'T00001000001', 'T0000', true, 1, 7, 7), \
         (1, 'c-deleted', 'deleted', 'v2:k:deleted', 'T00001000001', 'T0000', true, 1, 9, 9)",
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();

    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT customer_uid, batch_key_sealed, pg_deleted_at, pg_delete_next_at, \
             pg_delete_tries, pg_delete_lease_until FROM billing_keys ORDER BY id",
        ))
        .await
        .unwrap();
    /// customer_uid, batch_key_sealed, pg_deleted_at, pg_delete_next_at, tries, lease.
    type KeyRow = (String, String, Option<i64>, Option<i64>, i32, i64);
    let got: Vec<KeyRow> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "customer_uid").unwrap(),
                r.try_get("", "batch_key_sealed").unwrap(),
                r.try_get("", "pg_deleted_at").unwrap(),
                r.try_get("", "pg_delete_next_at").unwrap(),
                r.try_get("", "pg_delete_tries").unwrap(),
                r.try_get("", "pg_delete_lease_until").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("c-active".into(), "v2:k:active".into(), None, None, 0, 0),
            (
                "c-replaced".into(),
                "v2:k:replaced".into(),
                None,
                Some(0),
                0,
                0
            ),
            ("c-deleted".into(), String::new(), Some(9), None, 0, 0),
        ]
    );
}

/// Migration `m20261205_000019`: a schedule an instance claimed before the upgrade has no claim
/// token (0), and is taken over as before once its lease runs out; the takeover writes a token of
/// its own, which the former holder does not hold.
#[tokio::test]
async fn upgrading_keeps_a_claimed_schedule_claimed_until_its_lease_runs_out() {
    use openport::store::billing::{self, HeldSchedule, ServedMerchants};
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(18)).await.unwrap();
    insert_merchant(&db).await;
    exec(
        &db,
        "INSERT INTO schedules (merchant_id, customer_uid, merchant_uid, schedule_at, amount, \
         currency, status, lease_until, created_at, updated_at, card_quota) \
         VALUES (1, 'c-1', 'held-1', 10, 1000, 'KRW', 'executing', 200, 1, 11, 0)",
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();

    let before = billing::schedule_by_uid(&db, 1, "held-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((before.claim_token, before.lease_until), (0, 200));
    assert!(
        billing::claim_due_schedules(&db, ServedMerchants::All, 150, 270, 10)
            .await
            .unwrap()
            .is_empty(),
        "the lease holds"
    );
    let taken = billing::claim_due_schedules(&db, ServedMerchants::All, 201, 321, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_ne!(taken[0].claim_token, 0);
    assert!(!billing::still_held(&db, HeldSchedule::of(&before))
        .await
        .unwrap());
    assert!(billing::still_held(&db, HeldSchedule::of(&taken[0]))
        .await
        .unwrap());
}

/// Migration `m20261206_000024` schedules the resolver's look at KCP for every virtual account
/// already awaiting its deposit (ten minutes after its last change), and for nothing else.
#[tokio::test]
async fn upgrading_schedules_a_look_at_kcp_for_each_account_awaiting_its_deposit() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(22)).await.unwrap();
    insert_merchant(&db).await;
    insert_payment(&db, "imp_card", "order-card", "paid")
        .await
        .unwrap();
    for (imp_uid, status) in [("imp_open", "ready"), ("imp_paid", "paid")] {
        exec(
            &db,
            &format!(
                "INSERT INTO payments (imp_uid, merchant_id, merchant_uid, order_no, status, pay_method, \
                 channel, pg_provider, pg_id, pg_tid, amount, cancel_amount, currency, card_quota, sandbox, \
                 started_at, updated_at, escrow, vbank_num) \
                 VALUES ('{imp_uid}', 1, 'm-{imp_uid}', 'o-{imp_uid}', '{status}', 'vbank', 'api', \
                 'kcp', 'T0000', '2026{imp_uid:0>10}', 7000, 0, 'KRW', 0, true, 1, 1000, false, 'T1')"
            ),
        )
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();

    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT p.imp_uid, c.check_at FROM vbank_checks c JOIN payments p ON p.id = c.payment_id",
        ))
        .await
        .unwrap();
    let scheduled: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("", "imp_uid").unwrap(),
                r.try_get("", "check_at").unwrap(),
            )
        })
        .collect();
    assert_eq!(scheduled, [("imp_open".to_string(), 1600)]);
}

/// How many migrations the database records as applied.
async fn applied(db: &DatabaseConnection) -> i64 {
    db.query_one(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM seaql_migrations",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "n")
    .unwrap()
}

/// A migration that fails after its first statement (here `m20261202_000005`, whose second
/// statement finds its index name taken) leaves the database as the previous one left it, with no
/// column of its own half-added, and the next start, once the cause is gone, applies it and the
/// rest. On SQLite each statement used to commit on its own: the rerun failed at once with
/// `duplicate column name: failed_key`, and no start could migrate the database again.
#[tokio::test]
async fn a_migration_failing_half_way_leaves_the_previous_version_and_a_later_start_migrates() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(4)).await.unwrap();
    insert_merchant(&db).await;
    insert_payment(&db, "imp_a", "order-1", "paid")
        .await
        .unwrap();
    exec(
        &db,
        "CREATE INDEX payments_one_live_per_merchant_uid_key ON merchants (id)",
    )
    .await
    .unwrap();

    let start = openport::store::Db::connect(&url).await.unwrap();
    start
        .migrate()
        .await
        .expect_err("000005 cannot create its index");
    drop(start);
    assert_eq!(applied(&db).await, 4);
    assert!(
        exec(&db, "SELECT failed_key FROM payments").await.is_err(),
        "the column 000005 added before it failed was rolled back with it"
    );

    exec(&db, "DROP INDEX payments_one_live_per_merchant_uid_key")
        .await
        .unwrap();
    let later = openport::store::Db::connect(&url).await.unwrap();
    later.migrate().await.expect("the next start migrates");
    assert_eq!(applied(&db).await, Migrator::migrations().len() as i64);
    let guard = insert_payment(&db, "imp_b", "order-1", "ready").await;
    assert!(
        openport::store::is_unique_violation(&guard.unwrap_err()),
        "000005's guard is in place"
    );
}

/// The largest distance between a merchant's payments' start and payment, read from the database.
async fn paid_lag_secs(db: &DatabaseConnection) -> i64 {
    db.query_one(Statement::from_string(
        db.get_database_backend(),
        "SELECT paid_lag_secs FROM merchants WHERE id = 1",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "paid_lag_secs")
    .unwrap()
}

/// Migration `m20261209_000029` takes `paid_at` out of every index and bounds the paid listing by
/// `started_at` widened by the merchant's largest distance between the two times: on a database
/// with history that distance is computed from the payments already paid, and from then on the
/// database's trigger raises it for every payment paid further away (inserted or updated; earlier
/// is as far as later, a KCP clock behind openport's), never lowers it, and ignores distances an
/// hour covers.
#[tokio::test]
async fn upgrading_records_the_largest_distance_between_a_payments_start_and_its_payment() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(28)).await.unwrap();
    insert_merchant(&db).await;
    for (imp_uid, paid_after) in [("imp_soon", 100), ("imp_late", 10 * 86_400)] {
        insert_payment(&db, imp_uid, imp_uid, "ready")
            .await
            .unwrap();
        exec(
            &db,
            &format!(
                "UPDATE payments SET status = 'paid', paid_at = started_at + {paid_after} \
                 WHERE imp_uid = '{imp_uid}'"
            ),
        )
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();
    assert_eq!(paid_lag_secs(&db).await, 10 * 86_400);

    let paid_now = |imp_uid: &str, started_at: i64, paid_at: i64| {
        format!(
            "INSERT INTO payments (imp_uid, merchant_id, merchant_uid, order_no, status, pay_method, \
             channel, pg_provider, pg_id, amount, cancel_amount, currency, card_quota, sandbox, \
             started_at, updated_at, escrow, paid_at) \
             VALUES ('{imp_uid}', 1, '{imp_uid}', 'o-{imp_uid}', 'paid', 'card', 'api', 'kcp', \
             'T0000', 1000, 0, 'KRW', 0, true, {started_at}, 1, false, {paid_at})"
        )
    };
    exec(
        &db,
        &paid_now("imp_inserted", 1_000_000, 1_000_000 + 20 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(paid_lag_secs(&db).await, 20 * 86_400, "an insert raises it");
    exec(
        &db,
        &paid_now("imp_early", 5_000_000, 5_000_000 - 30 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(
        paid_lag_secs(&db).await,
        30 * 86_400,
        "paid before it started"
    );
    exec(&db, &paid_now("imp_close", 9_000_000, 9_000_000 + 3_000))
        .await
        .unwrap();
    exec(
        &db,
        "UPDATE payments SET paid_at = started_at + 40 * 86400 WHERE imp_uid = 'imp_soon'",
    )
    .await
    .unwrap();
    assert_eq!(paid_lag_secs(&db).await, 40 * 86_400, "an update raises it");
    exec(
        &db,
        "UPDATE payments SET paid_at = started_at + 2 * 86400 WHERE imp_uid = 'imp_soon'",
    )
    .await
    .unwrap();
    assert_eq!(paid_lag_secs(&db).await, 40 * 86_400, "never lowered");
}

/// Migration `m20261210_000030` records on each webhook delivery whether it goes to the
/// merchant's configured URL (the worker keeps a slot for those that `notice_url`s cannot take):
/// on a database with deliveries queued, the pending ones to that URL are marked, those to any
/// other URL are not, and finished ones, history the worker never claims again, are left alone.
#[tokio::test]
async fn upgrading_marks_the_pending_webhooks_to_the_merchants_configured_url() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(29)).await.unwrap();
    insert_merchant(&db).await;
    exec(
        &db,
        "UPDATE merchants SET webhook_url = 'https://shop.example/hook' WHERE id = 1",
    )
    .await
    .unwrap();
    for (id, url, state) in [
        (1, "https://shop.example/hook", "pending"),
        (2, "https://buyer.example/notice", "pending"),
        (3, "https://shop.example/hook", "delivered"),
    ] {
        exec(
            &db,
            &format!(
                "INSERT INTO webhook_deliveries (id, merchant_id, imp_uid, merchant_uid, status, \
                 url, content_type, state, attempts, next_attempt_at, lease_until, created_at, \
                 updated_at) \
                 VALUES ({id}, 1, 'imp_a', 'order-1', 'paid', '{url}', 'json', '{state}', 0, 1, \
                 0, 1, 1)"
            ),
        )
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();
    let marked: Vec<(i64, bool)> = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, to_merchant_url FROM webhook_deliveries ORDER BY id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").unwrap(),
                r.try_get("", "to_merchant_url").unwrap(),
            )
        })
        .collect();
    assert_eq!(marked, [(1, true), (2, false), (3, false)]);
}

/// Migration `m20261211_000031` indexes the attempts closed as `conflict`, which
/// `GET /admin/status` counts and `openport attempt list --conflicts` lists oldest first: on a
/// database with history the index holds the conflicts already recorded, the count and the
/// listing read it (PostgreSQL and SQLite), and a conflict an operator reconciles leaves it.
#[tokio::test]
async fn upgrading_indexes_the_conflict_attempts_for_their_count_and_listing() {
    use openport::store::payments::{conflict_attempts, count_conflict_attempts};
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(30)).await.unwrap();
    insert_merchant(&db).await;
    insert_payment(&db, "imp_a", "order-1", "paid")
        .await
        .unwrap();
    for (id, state) in [
        (1, "succeeded"),
        (2, "conflict"),
        (3, "reconciled"),
        (4, "conflict"),
        (5, "pending"),
    ] {
        exec(
            &db,
            &format!(
                "INSERT INTO pg_attempts (id, payment_id, kind, state, order_no, amount, tries, \
                 next_check_at, lease_until, created_at, updated_at) \
                 SELECT {id}, id, 'approve', '{state}', order_no, 1000, 0, 1, 0, 1, 1 \
                 FROM payments WHERE imp_uid = 'imp_a'"
            ),
        )
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();
    for sql in [
        r#"SELECT COUNT(*) AS n FROM pg_attempts WHERE "pg_attempts"."state" = 'conflict'"#,
        r#"SELECT * FROM pg_attempts WHERE "pg_attempts"."state" = 'conflict' ORDER BY id LIMIT 100"#,
    ] {
        let stmt = Statement::from_string(db.get_database_backend(), sql);
        let plan = crate::helpers::query_plan(&db, &stmt).await;
        assert!(plan.contains("pg_attempts_conflicts"), "{sql}:\n{plan}");
    }
    let listed = |attempts: Vec<openport::store::entity::pg_attempt::Model>| {
        attempts.iter().map(|a| a.id).collect::<Vec<_>>()
    };
    assert_eq!(count_conflict_attempts(&db).await.unwrap(), 2);
    assert_eq!(listed(conflict_attempts(&db, 100).await.unwrap()), [2, 4]);

    exec(
        &db,
        "UPDATE pg_attempts SET state = 'reconciled' WHERE id = 2",
    )
    .await
    .unwrap();
    assert_eq!(count_conflict_attempts(&db).await.unwrap(), 1);
    assert_eq!(listed(conflict_attempts(&db, 100).await.unwrap()), [4]);
}

/// Migration `m20261212_000032` indexes `kcp_notifications` for the two queries that read it by
/// age: the resolver's re-verify sweep (every minute, on every instance) reads the undecided
/// notifications of its window, and the hourly prune the ones older than its cutoff, oldest
/// first. On a database with history both read an index, not the table (PostgreSQL and SQLite),
/// and find the rows they found before: the sweep the undecided deposit of its window, the prune
/// the decided notifications past the cutoff by age (not by id), keeping the undecided one.
#[tokio::test]
async fn upgrading_indexes_the_kcp_notifications_by_age_for_the_sweep_and_the_prune() {
    use openport::store::notifications::{prune, prune_query, unverified, unverified_query};
    use sea_orm::QueryTrait;
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(31)).await.unwrap();
    for (id, received_at, outcome) in [
        (1, 300, "'unchanged'"),
        (2, 200, "'unchanged'"),
        (3, 100, "NULL"),
        (4, 900, "NULL"),
        (5, 950, "'applied'"),
    ] {
        exec(
            &db,
            &format!(
                "INSERT INTO kcp_notifications (id, noti_id, site_cd, tno, tx_cd, amount, total, \
                 received_at, outcome) \
                 VALUES ({id}, 'n{id}', 'T0000', 't{id}', 'TX00', 1000, 1000, {received_at}, \
                 {outcome})"
            ),
        )
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();
    let backend = db.get_database_backend();
    for (stmt, index) in [
        (
            unverified_query("TX00", (800, 1000), 1000, 100).build(backend),
            "kcp_notifications_undecided",
        ),
        (
            prune_query(500, 1000).build(backend),
            "kcp_notifications_by_received",
        ),
    ] {
        let plan = crate::helpers::query_plan(&db, &stmt).await;
        assert!(plan.contains(index), "{}:\n{plan}", stmt.sql);
        let reads_the_table_whole_or_sorts = |l: &str| {
            l.contains("Seq Scan on kcp_notifications")
                || l.contains("SCAN kcp_notifications")
                || l.contains("Sort")
                || l.contains("TEMP B-TREE")
        };
        assert!(
            !plan.lines().any(reads_the_table_whole_or_sorts),
            "{}:\n{plan}",
            stmt.sql
        );
    }
    let ids = |rows: Vec<openport::store::entity::kcp_notification::Model>| {
        rows.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(unverified(&db, "TX00", (800, 1000), 1000, 100)
            .await
            .unwrap()),
        [4]
    );
    assert_eq!(prune(&db, 500, 1).await.unwrap(), 1);
    let left: Vec<i64> = db
        .query_all(Statement::from_string(
            backend,
            "SELECT id FROM kcp_notifications ORDER BY id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("", "id").unwrap())
        .collect();
    assert_eq!(left, [1, 3, 4, 5], "the oldest decided one goes first");
    assert_eq!(prune(&db, 500, 1000).await.unwrap(), 1);
    assert_eq!(
        prune(&db, 500, 1000).await.unwrap(),
        0,
        "the undecided one stays"
    );
}

/// Migration `m20261215_000035` records when an attempt's last KCP call was sent (`sent_at`), from
/// which the settle delay now counts: an attempt already recorded gets its `created_at`, what the
/// delay counted from before, so an open one is neither settled earlier nor later than it was.
#[tokio::test]
async fn upgrading_counts_the_settle_delay_of_a_recorded_attempt_from_its_creation() {
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(34)).await.unwrap();
    insert_merchant(&db).await;
    insert_payment(&db, "imp_a", "order-1", "pending")
        .await
        .unwrap();
    for (id, state, created_at) in [(1, "unknown", 1000), (2, "succeeded", 2000)] {
        exec(
            &db,
            &format!(
                "INSERT INTO pg_attempts (id, payment_id, kind, state, order_no, amount, tries, \
                 next_check_at, lease_until, created_at, updated_at) \
                 SELECT {id}, id, 'approve', '{state}', order_no, 1000, 0, 1, 0, {created_at}, 3000 \
                 FROM payments WHERE imp_uid = 'imp_a'"
            ),
        )
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();
    let sent: Vec<(i64, i64)> = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, sent_at FROM pg_attempts ORDER BY id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").unwrap(),
                r.try_get("", "sent_at").unwrap(),
            )
        })
        .collect();
    assert_eq!(sent, [(1, 1000), (2, 2000)]);
}

/// Migration `m20261219_000039` makes a KCP trade one payment's (`payment_trades`). A database in
/// which two payments already share a trade (the bug it closes: review r4) still migrates: nothing
/// of the payments changes, the trade is claimed for the oldest, and both are listed for the
/// operator as a `conflict` that holds their cancels; a third payment is refused the trade, and a
/// payment with a trade of its own is untouched.
#[tokio::test]
async fn upgrading_a_database_where_two_payments_share_a_trade_lists_both_and_lets_no_third_take_it(
) {
    use openport::store::payments::{conflict_attempts, unreconciled_conflict, SHARED_TRADE};
    let (url, _dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    // The schema of the release before it: every migration up to 000038 (there is no 000037).
    Migrator::up(&db, Some(37)).await.unwrap();
    insert_merchant(&db).await;
    for (imp_uid, status) in [
        ("imp_a", "paid"),
        ("imp_b", "paid"),
        ("imp_c", "paid"),
        ("imp_d", "failed"),
    ] {
        insert_payment(&db, imp_uid, &format!("order-{imp_uid}"), status)
            .await
            .unwrap();
    }
    for (imp_uid, tno) in [
        ("imp_a", "20261201000001"),
        ("imp_b", "20261201000001"),
        ("imp_c", "20261201000002"),
    ] {
        exec(
            &db,
            &format!("UPDATE payments SET pg_tid = '{tno}' WHERE imp_uid = '{imp_uid}'"),
        )
        .await
        .unwrap();
    }

    Migrator::up(&db, None).await.unwrap();
    let id_of = |imp_uid: &'static str| {
        let db = db.clone();
        async move {
            openport::store::payments::by_imp_uid(&db, None, imp_uid)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (a, b, c, d) = (
        id_of("imp_a").await,
        id_of("imp_b").await,
        id_of("imp_c").await,
        id_of("imp_d").await,
    );
    assert_eq!(b.pg_tid.as_deref(), Some("20261201000001"), "unchanged");
    let listed = conflict_attempts(&db, 100).await.unwrap();
    let listed: Vec<_> = listed
        .iter()
        .map(|x| (x.payment_id, x.kind.as_str(), x.tno.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            (a.id, SHARED_TRADE, Some("20261201000001")),
            (b.id, SHARED_TRADE, Some("20261201000001"))
        ]
    );
    for held in [&a, &b] {
        assert!(unreconciled_conflict(&db, held.id).await.unwrap().is_some());
    }
    assert!(unreconciled_conflict(&db, c.id).await.unwrap().is_none());
    let holder = openport::store::payments::trade_holder(&db, "20261201000001", d.id)
        .await
        .unwrap();
    assert_eq!(holder.map(|p| p.id), Some(a.id), "claimed for the oldest");

    let taken = exec(
        &db,
        "UPDATE payments SET pg_tid = '20261201000001' WHERE imp_uid = 'imp_d'",
    )
    .await
    .unwrap_err();
    assert!(openport::store::is_trade_clash(&taken), "{taken}");
    let taken = exec(
        &db,
        "UPDATE payments SET pg_tid = '20261201000002' WHERE imp_uid = 'imp_d'",
    )
    .await
    .unwrap_err();
    assert!(openport::store::is_trade_clash(&taken), "{taken}");
    exec(
        &db,
        "UPDATE payments SET pg_tid = '20261201000003' WHERE imp_uid = 'imp_d'",
    )
    .await
    .unwrap();
}
