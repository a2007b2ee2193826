//! KCP's deposit notifications (`POST /kcp/notify`, spec/kcp.md §2.12; docs/kcp.md §10.2, §11)
//! against what else is going on: a partial deposit notified while a revocation's close is at KCP,
//! the resolver's re-verify sweep on a database shared by instances of both modes, and
//! notifications a later one of the same account superseded. The rest of the deposit flow is in
//! `vbanks`.
use kcp_sandbox::{paths, Fault, FaultRule, NotificationRecord};
use reqwest::StatusCode;

use crate::helpers::{captured_logs, spawn_app, spawn_app_with, Receiver, TestApp, ADMIN_TOKEN};
use crate::vbanks::{
    count_inquiries, deposit_until_paid, inquiries_left, issued, issued_with_hooks,
    notification_row, post_notification, vbank, webhook_statuses,
};

/// The sandbox's notification `noti_id` once `done` says so (it sends in the background).
async fn sandbox_notification(
    app: &TestApp,
    noti_id: &str,
    done: impl Fn(&NotificationRecord) -> bool,
) -> NotificationRecord {
    for _ in 0..200 {
        let found = app
            .sandbox
            .notifications()
            .into_iter()
            .find(|n| n.noti_id == noti_id);
        if let Some(n) = found.filter(|n| done(n)) {
            return n;
        }
        app.sandbox.flush_notifications().await;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the sandbox's notification {noti_id} never got there");
}

/// A 1000 won deposit lands at KCP while the revocation's close of the 7000 won account is on its
/// way. Its notification is not acknowledged `unchanged` by the shortcut for a short total: under
/// the open revocation it is held back with a WARN, as a full deposit is, and decided after the
/// revocation. KCP (the sandbox) refuses to close an account holding money, so the re-send finds
/// the account still open and is acknowledged then. Acknowledged at once, it was never seen
/// again, and a KCP that closed the account anyway left the money on it with nothing logged.
#[tokio::test]
async fn a_partial_deposit_landing_while_a_revocation_is_at_kcp_is_decided_after_the_revocation() {
    let app = spawn_app_with(|c| {
        c.resolver.settle_secs = 60;
        c.kcp.timeout_ms = 9_000;
    })
    .await;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-partial-race", 7000)).await;
    let imp_uid = p["imp_uid"].as_str().unwrap().to_string();
    let tno = p["pg_tid"].as_str().unwrap();
    let gate = "revocation-close-partial";
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::HoldRequest { gate: gate.into() }).when("tno", tno),
    );
    let revoking = {
        let request = app
            .http
            .delete(app.url(&format!("/vbanks/{imp_uid}")))
            .header("Authorization", &token);
        tokio::spawn(async move { TestApp::read(request.send().await.expect("request")).await })
    };
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.sandbox.until_held(gate),
    )
    .await
    .expect("the revocation's close reached KCP");

    let deposit = app.sandbox.deposit(tno, 1000, "00").unwrap();
    let first = sandbox_notification(&app, &deposit.noti_id, |n| n.attempts >= 1).await;

    assert!(
        !first.tries[0].acknowledged,
        "not acknowledged under the revocation in flight: {first:?}"
    );
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome, None, "{row:?}");
    assert!(
        captured_logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&imp_uid) && l.contains("partial deposit")),
        "a warning names the payment"
    );
    assert!(!revoking.is_finished(), "the close is still held at KCP");

    app.sandbox.open_gate(gate);
    let (status, res) = revoking.await.unwrap();

    assert!(
        status != StatusCode::OK || res["code"] != 0,
        "not revoked: {res}"
    );
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "ready");
    sandbox_notification(&app, &deposit.noti_id, |n| n.acknowledged).await;
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("unchanged"), "{row:?}");
    app.assert_ledger_agrees().await;
}

/// A `TX00` form for `tno` of site T0000 with `total` and `noti_id`, as anyone can post one.
fn deposit_form(tno: &str, noti_id: &str, total: i64) -> Vec<(String, String)> {
    [
        ("site_cd", "T0000".to_string()),
        ("tno", tno.to_string()),
        ("order_no", "x".into()),
        ("tx_cd", "TX00".into()),
        ("tx_tm", "20261123120000".into()),
        ("ipgm_name", "홍길동".into()),
        ("ipgm_mnyx", total.to_string()),
        ("totl_mnyx", total.to_string()),
        ("noti_id", noti_id.into()),
        ("op_cd", "00".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Posts `count` undecided deposit notifications of `tno`, whose merchant this instance does not
/// serve (left to the other mode's instances: `9999`, outcome empty).
async fn other_modes_undecided(app: &TestApp, tno: &str, prefix: &str, count: usize) {
    for i in 0..count {
        let form = deposit_form(tno, &format!("{prefix}-{i}"), 7000);
        assert!(!post_notification(app, &form).await, "left undecided");
    }
}

/// Live and test-mode instances may share one database (docs/operations.md). The re-verify sweep
/// read the hundred newest undecided deposits and skipped the other mode's without marking them
/// (the other mode's instances verify them), so a hundred of the other mode's rows filled every
/// batch and an instance never reached its own deposit, here one whose notifications all went
/// unconfirmed (KCP's inquiry failing). It now reads only the rows it serves, oldest first: the
/// deposit between two hundred of a live merchant's rows is applied at the first sweep, and the
/// live rows are left as they were for a live instance.
#[tokio::test]
async fn the_re_verify_sweep_reaches_its_own_deposit_among_hundreds_of_the_other_modes() {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    app.stop_clock();
    let token = app.token().await;
    let (imp_key, imp_secret) = app.second_merchant().await;
    let live_token = app.token_for(&imp_key, &imp_secret).await;
    let live = issued(&app, &live_token, vbank(&app, "vb-live-flood", 7000)).await;
    let live_tno = live["pg_tid"].as_str().unwrap();
    crate::helpers::make_live(&app, &imp_key).await;
    gateway.forget_merchant(None);
    let own = issued(&app, &token, vbank(&app, "vb-own-starved", 7000)).await;
    let own_tno = own["pg_tid"].as_str().unwrap();
    let own_imp_uid = own["imp_uid"].as_str().unwrap();

    other_modes_undecided(&app, live_tno, "live-older", 100).await;
    app.advance(1);
    // A real deposit whose notification reached openport while KCP's inquiry failed; KCP's
    // re-sends go elsewhere, as if it had given up on openport.
    let elsewhere = Receiver::start().await;
    app.sandbox
        .set_notify_url("T0000", &elsewhere.url("/kcp/notify"));
    let deposit = app.sandbox.deposit(own_tno, 7000, "00").unwrap();
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 }).when("tno", own_tno),
    );
    assert!(!post_notification(&app, &deposit.fields).await);
    app.advance(1);
    other_modes_undecided(&app, live_tno, "live-newer", 100).await;

    // Past the two minutes left to KCP's re-sends.
    app.advance(160);
    assert_eq!(gateway.reverify_notifications(100).await.unwrap(), 1);

    assert_eq!(app.payment(&token, own_imp_uid).await["status"], "paid");
    for noti_id in ["live-older-0", "live-newer-99"] {
        let row = notification_row(&app, noti_id).await.unwrap();
        assert_eq!(
            (row.outcome, row.verified_at),
            (None, None),
            "left to a live instance as it was"
        );
    }
    app.assert_ledger_agrees().await;
}

/// The sweep's list of one mode ([`the_re_verify_sweep_reaches_its_own_deposit_among_hundreds_of_the_other_modes`])
/// reads the undecided notifications' own index, each row's account through `pg_attempts_by_tno`
/// and its payment by key, on both databases: no table is read whole but the few merchants. So
/// does its list of the rows before its window never looked at (migration 000032's index serves
/// it too).
#[tokio::test]
async fn the_re_verify_sweep_of_one_mode_reads_through_its_indexes() {
    use openport::service::merchants::DEMO_IMP_KEY;
    use openport::store::billing::ServedMerchants;
    use openport::store::notifications::{served_never_looked_query, served_unverified_query};
    use sea_orm::{ConnectionTrait, DbBackend, QueryTrait};

    let app = spawn_app().await;
    let db = &app.app.gateway.db.read;
    let backend = db.get_database_backend();
    for served in [
        ServedMerchants::TestOnly {
            demo_imp_key: DEMO_IMP_KEY,
        },
        ServedMerchants::LiveOnly {
            demo_imp_key: DEMO_IMP_KEY,
        },
    ] {
        for query in [
            served_unverified_query(served, "TX00", (800, 1000), 1000, 100).build(backend),
            served_never_looked_query(served, "TX00", 800, 100).build(backend),
        ] {
            let plan = crate::helpers::query_plan(db, &query).await;
            assert!(plan.contains("kcp_notifications_undecided"), "{plan}");
            assert!(plan.contains("pg_attempts_by_tno"), "{plan}");
            let payment_by_key = if backend == DbBackend::Postgres {
                "payments_pkey"
            } else {
                "SEARCH payments USING INTEGER PRIMARY KEY"
            };
            assert!(plan.contains(payment_by_key), "{plan}");
            let reads_a_table_whole_or_sorts = |l: &str| {
                (l.contains("Seq Scan") && !l.contains("Seq Scan on merchants"))
                    || (l.trim_start().starts_with("SCAN") && l.trim() != "SCAN merchants")
                    || l.contains("Sort")
                    || l.contains("TEMP B-TREE")
            };
            assert!(!plan.lines().any(reads_a_table_whole_or_sorts), "{plan}");
        }
    }
}

/// KCP's notifications from now on go to a receiver of their own, as if KCP had given up on
/// openport: the test posts them itself, in the order it chooses.
async fn notified_elsewhere(app: &TestApp) -> Receiver {
    let elsewhere = Receiver::start().await;
    app.sandbox
        .set_notify_url("T0000", &elsewhere.url("/kcp/notify"));
    elsewhere
}

/// The bank takes a deposit back (`op_cd 13`) before its notification reaches openport: KCP's
/// inquiry no longer shows the deposit, so it was answered `9999`, asked about every five minutes
/// for three days and then left undecided for an operator (review r1, finding 3), though the
/// reversal notified after it was decided on KCP's own answer. Once KCP's inquiry, an hour
/// after the deposit arrived, still holds the account unpaid as the reversal says and as openport
/// does, the deposit is decided `superseded` and leaves the sweep. The payment never moves.
#[tokio::test]
async fn a_deposit_a_later_reversal_took_back_is_decided_superseded_and_leaves_the_sweep() {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-superseded-deposit", &hooks).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    let _elsewhere = notified_elsewhere(&app).await;
    let deposit = app.sandbox.deposit(tno, 7000, "00").unwrap();
    let reversal = app.sandbox.deposit(tno, 7000, "13").unwrap();

    assert!(
        !post_notification(&app, &deposit.fields).await,
        "KCP no longer shows it"
    );
    assert!(
        post_notification(&app, &reversal.fields).await,
        "KCP holds the account unpaid, as openport does"
    );
    app.advance(160);
    gateway.reverify_notifications(100).await.unwrap();
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome, None, "KCP may still be lagging: {row:?}");
    app.advance(1800);
    gateway.reverify_notifications(100).await.unwrap();
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome, None, "half an hour on, still: {row:?}");
    app.advance(1641);
    gateway.reverify_notifications(100).await.unwrap();

    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("superseded"), "{row:?}");
    let token = app.token().await; // the first one expired meanwhile
    let shown = app.payment(&token, imp_uid).await;
    assert_eq!(
        (shown["status"].as_str(), shown["paid_at"].as_i64()),
        (Some("ready"), Some(0)),
        "{shown}"
    );
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready"]);
    count_inquiries(&app, tno);
    app.advance(600);
    gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(inquiries_left(&app), 10, "out of the sweep");
    assert!(
        post_notification(&app, &deposit.fields).await,
        "KCP's re-send is acknowledged"
    );
    app.assert_ledger_agrees().await;
}

/// The mirror: the bank takes the paid account's deposit back and the buyer pays again before
/// the reversal's notification reaches openport. KCP holds the account paid, as openport does, so
/// the reversal is not confirmed (the new deposit is `unchanged`: the account is paid already);
/// an hour on it is decided `superseded`, and the account stays paid with no webhook.
#[tokio::test]
async fn a_reversal_a_later_deposit_made_up_for_is_decided_superseded_and_the_account_stays_paid() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-superseded-reversal", &hooks).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    deposit_until_paid(&app, &token, &p).await;
    let paid = app.payment(&token, imp_uid).await;
    let _elsewhere = notified_elsewhere(&app).await;
    let reversal = app.sandbox.deposit(tno, 7000, "13").unwrap();
    let again = app.sandbox.deposit(tno, 7000, "00").unwrap();

    assert!(
        !post_notification(&app, &reversal.fields).await,
        "KCP holds the account paid"
    );
    assert!(post_notification(&app, &again.fields).await, "paid already");
    app.advance(3601);
    app.app.gateway.reverify_notifications(100).await.unwrap();

    let row = notification_row(&app, &reversal.noti_id).await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("superseded"), "{row:?}");
    let token = app.token().await; // the first one expired meanwhile
    assert_eq!(app.payment(&token, imp_uid).await, paid, "paid as it was");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// A later notice must not bury a genuine notification KCP's inquiry does not show yet: a real
/// reversal while KCP's inquiry lags (it still answers the account paid), then a deposit anyone
/// could have forged, acknowledged because the account is paid. Nothing is decided on KCP's
/// lagging answer within an hour of the reversal; once KCP shows it, the resolver's sweep
/// applies it: the account is `ready` again and the merchant is told.
#[tokio::test]
async fn a_forged_deposit_after_a_reversal_kcp_does_not_show_yet_leaves_the_reversal_to_be_applied()
{
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-not-buried", &hooks).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    deposit_until_paid(&app, &token, &p).await;
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    let _elsewhere = notified_elsewhere(&app).await;
    let reversal = app.sandbox.deposit(tno, 7000, "13").unwrap();
    let lagging = Fault::AnswerField {
        field: "stat_va_cd".into(),
        value: "STSR".into(),
    };
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, lagging)
            .when("tno", tno)
            .times(100),
    );

    assert!(!post_notification(&app, &reversal.fields).await);
    assert!(
        post_notification(&app, &deposit_form(tno, "forged-after-reversal", 7000)).await,
        "acknowledged: the account is paid"
    );
    app.advance(160);
    gateway.reverify_notifications(100).await.unwrap();
    let row = notification_row(&app, &reversal.noti_id).await.unwrap();
    assert_eq!(row.outcome, None, "{row:?}");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");

    app.sandbox.clear_faults();
    app.advance(301);
    gateway.reverify_notifications(100).await.unwrap();

    let row = notification_row(&app, &reversal.noti_id).await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("applied"), "{row:?}");
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
    assert_eq!(
        webhook_statuses(&app, &hooks).await,
        ["ready", "paid", "ready"]
    );
    app.assert_ledger_agrees().await;
}

/// A deposit notified while KCP's inquiry failed for longer than the re-verify sweep's three days
/// (time-accelerated soak, finding 1): the sweep's last look passed with an INFO like every
/// other, so nothing told the operator the row now waited for them; when KCP answered again, the
/// resolver's hourly look applied the deposit with a WARN blaming `NOTIFY_SOURCES` (the
/// notification had arrived), and the row stayed undecided for good, an alarm about a settled
/// payment. Now the last look is a WARN and `/admin/status` counts the row; the look that applies
/// the deposit says its notification arrived and decides it.
#[tokio::test]
async fn a_deposit_kcp_could_not_confirm_for_three_days_is_told_to_the_operator_and_decided_once_applied(
) {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-unconfirmed-for-days", &hooks).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap().to_string(),
        p["pg_tid"].as_str().unwrap().to_string(),
    );
    let _elsewhere = notified_elsewhere(&app).await;
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 })
            .when("tno", &tno)
            .times(100_000),
    );
    let deposit = app.sandbox.deposit(&tno, 7000, "00").unwrap();
    assert!(
        !post_notification(&app, &deposit.fields).await,
        "not verified"
    );
    let for_operator = || async {
        let (_, status) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;
        status["response"]["notifications_for_operator"].clone()
    };

    app.advance(3 * 24 * 3600 - 200);
    gateway.reverify_notifications(100).await.unwrap();
    // The log is the whole test binary's: this test's lines are those of its own trade (tnos are
    // unique in the process) and notification.
    let last_look = captured_logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&deposit.noti_id) && l.contains(&tno))
        .filter(|l| l.contains("left undecided for an operator"))
        .count();
    assert_eq!(last_look, 1, "the sweep's last look warns");
    assert_eq!(for_operator().await, 0, "still within the three days");
    app.advance(400);
    gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(for_operator().await, 1);

    app.sandbox.clear_faults();
    assert_eq!(gateway.check_open_vbanks(100).await.unwrap(), 1);

    let token = app.token().await;
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "paid");
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("applied"), "{row:?}");
    assert_eq!(for_operator().await, 0);
    let logs = captured_logs();
    let found = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&imp_uid) && l.contains("resolver"))
        .expect("the look warns");
    assert!(
        found.contains("its notification reached openport") && !found.contains("NOTIFY_SOURCES"),
        "{found}"
    );
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    app.assert_ledger_agrees().await;
}

/// `/admin/status`'s `notifications_for_operator`.
async fn for_operator(app: &TestApp) -> serde_json::Value {
    let (_, status) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;
    status["response"]["notifications_for_operator"].clone()
}

/// How many of the notifications of trade `tno` have an outcome.
async fn decided_of(app: &TestApp, tno: &str) -> (usize, usize) {
    use openport::store::entity::kcp_notification::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let rows = Entity::find()
        .filter(Column::Tno.eq(tno))
        .all(&app.app.gateway.db.read)
        .await
        .unwrap();
    let decided = rows.iter().filter(|r| r.outcome.is_some()).count();
    (decided, rows.len())
}

/// Upgrade drill (review r1, finding 1): a release from before migration 000010 applied a
/// deposit and recorded nothing of it, so after the upgrade its row has neither `outcome` nor
/// `verified_at`. Received more than the sweep's three days before, the sweep (reading only its
/// window) never looked at it, the prune (keeping undecided rows) never deleted it, and
/// `/admin/status` counted it for the operator for good, with no WARN naming it. Now the sweep
/// looks at it once, whatever its age: the account is paid, so it is decided `unchanged` (no
/// inquiry, no webhook), the count goes back down and the retention deletes it. A row the sweep
/// did look at and that stayed undecided is still the operator's: not looked at again, counted.
#[tokio::test]
async fn a_deposit_notification_never_looked_at_is_decided_by_the_sweep_whatever_its_age() {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let old = issued_with_hooks(&app, &token, "vb-before-outcomes", &hooks).await;
    deposit_until_paid(&app, &token, &old).await;
    let looked = issued(&app, &token, vbank(&app, "vb-looked-at", 7000)).await;
    deposit_until_paid(&app, &token, &looked).await;
    let (old_tno, looked_tno) = (
        old["pg_tid"].as_str().unwrap(),
        looked["pg_tid"].as_str().unwrap(),
    );
    crate::helpers::execute(
        &app,
        vec![
            format!("UPDATE kcp_notifications SET outcome = NULL, verified_at = NULL WHERE tno = '{old_tno}'"),
            format!("UPDATE kcp_notifications SET outcome = NULL, verified_at = received_at + 300 WHERE tno = '{looked_tno}'"),
        ],
    )
    .await;
    app.advance(30 * 86_400);
    assert_eq!(gateway.prune_notifications(7, 100).await.unwrap(), 0);
    assert_eq!(for_operator(&app).await, 2);

    assert_eq!(gateway.reverify_notifications(100).await.unwrap(), 0);

    assert_eq!(decided_of(&app, old_tno).await, (1, 1));
    let token = app.token().await; // the first one expired meanwhile
    let old_imp_uid = old["imp_uid"].as_str().unwrap();
    assert_eq!(app.payment(&token, old_imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    assert_eq!(decided_of(&app, looked_tno).await, (0, 1), "the operator's");
    assert_eq!(for_operator(&app).await, 1);
    gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(for_operator(&app).await, 1, "not looked at again");
    assert_eq!(gateway.prune_notifications(7, 100).await.unwrap(), 1);
    assert_eq!(decided_of(&app, old_tno).await, (0, 0), "pruned");
    app.assert_ledger_agrees().await;
}

/// Every instance was down for longer than the sweep's three days after a deposit's notification
/// arrived while KCP's inquiry failed (KCP gave up re-sending meanwhile): the row left the window
/// unseen. The sweep's one look asks KCP, which holds the deposit: the account is paid, with its
/// webhook, and nothing is left for the operator.
#[tokio::test]
async fn a_deposit_notified_before_every_instance_was_down_for_days_is_applied_by_one_look() {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let p = issued_with_hooks(&app, &token, "vb-down-for-days", &hooks).await;
    let (imp_uid, tno) = (
        p["imp_uid"].as_str().unwrap(),
        p["pg_tid"].as_str().unwrap(),
    );
    let _elsewhere = notified_elsewhere(&app).await;
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 }).when("tno", tno));
    let deposit = app.sandbox.deposit(tno, 7000, "00").unwrap();
    assert!(!post_notification(&app, &deposit.fields).await);
    app.sandbox.clear_faults();
    app.advance(4 * 86_400);
    assert_eq!(for_operator(&app).await, 1);

    assert_eq!(gateway.reverify_notifications(100).await.unwrap(), 1);

    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome.as_deref(), Some("applied"), "{row:?}");
    let token = app.token().await;
    assert_eq!(app.payment(&token, imp_uid).await["status"], "paid");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["ready", "paid"]);
    assert_eq!(for_operator(&app).await, 0);
    app.assert_ledger_agrees().await;
}

/// A database upgraded with many such rows is worked through in passes: a sweep takes what its
/// batch holds, and of a trade's rows only the latest, each looked at once. Here three rows of
/// one paid account (the deposit and two copies posted with fresh `noti_id`s), a batch of two:
/// one decided a sweep, the others left never looked at for the next, until none is left.
#[tokio::test]
async fn never_looked_at_notifications_are_worked_through_a_batch_a_sweep() {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-many-old", 7000)).await;
    deposit_until_paid(&app, &token, &p).await;
    let tno = p["pg_tid"].as_str().unwrap();
    for noti_id in ["old-copy-1", "old-copy-2"] {
        app.advance(1);
        assert!(post_notification(&app, &deposit_form(tno, noti_id, 7000)).await);
    }
    crate::helpers::execute(
        &app,
        vec![format!(
            "UPDATE kcp_notifications SET outcome = NULL, verified_at = NULL WHERE tno = '{tno}'"
        )],
    )
    .await;
    app.advance(10 * 86_400);
    count_inquiries(&app, tno);

    gateway.reverify_notifications(2).await.unwrap();
    assert_eq!(decided_of(&app, tno).await, (1, 3));
    let copy = notification_row(&app, "old-copy-1").await.unwrap();
    assert_eq!(copy.outcome.as_deref(), Some("unchanged"), "{copy:?}");
    assert_eq!(for_operator(&app).await, 2);
    gateway.reverify_notifications(2).await.unwrap();
    assert_eq!(decided_of(&app, tno).await, (2, 3));
    gateway.reverify_notifications(2).await.unwrap();

    assert_eq!(decided_of(&app, tno).await, (3, 3));
    assert_eq!(for_operator(&app).await, 0);
    assert_eq!(
        inquiries_left(&app),
        10,
        "the account is paid: KCP not asked"
    );
    app.assert_ledger_agrees().await;
}

/// The one look at a row before the window that KCP's inquiry does not confirm (here it fails)
/// leaves it to the operator, as the window's last look does: a WARN naming it, counted by
/// `/admin/status`, never asked about again.
#[tokio::test]
async fn a_never_looked_at_notification_kcp_does_not_confirm_at_its_one_look_is_left_to_the_operator(
) {
    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let token = app.token().await;
    let p = issued(&app, &token, vbank(&app, "vb-one-look-fails", 7000)).await;
    let tno = p["pg_tid"].as_str().unwrap();
    let _elsewhere = notified_elsewhere(&app).await;
    app.sandbox.inject(
        FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 })
            .when("tno", tno)
            .times(100_000),
    );
    let deposit = app.sandbox.deposit(tno, 7000, "00").unwrap();
    assert!(!post_notification(&app, &deposit.fields).await);
    app.advance(4 * 86_400);

    gateway.reverify_notifications(100).await.unwrap();

    let warned = captured_logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&deposit.noti_id) && l.contains(tno))
        .filter(|l| l.contains("never looked at") && l.contains("left undecided for an operator"))
        .count();
    assert_eq!(warned, 1);
    let looked = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(looked.outcome, None, "{looked:?}");
    assert!(looked.verified_at.is_some(), "{looked:?}");
    assert_eq!(for_operator(&app).await, 1);
    app.advance(600);
    gateway.reverify_notifications(100).await.unwrap();
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.verified_at, looked.verified_at, "not looked at again");
    assert_eq!(for_operator(&app).await, 1);
}
