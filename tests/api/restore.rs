//! What a restored backup and the retention of KCP notifications must not cost a buyer
//! (docs/operations.md "Restoring a backup", "KCP notifications"): a database restored from before
//! some schedules ran holds them `scheduled` again, so openport can start with its scheduler held
//! and the operator lists what is due before anything is charged; and the hourly prune never
//! deletes the notification that keeps a revocation from closing an account over a partial
//! deposit, nor one of an account KCP holds and the restored database does not.
use std::time::Duration;

use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use openport::service::merchants::DEMO_IMP_CODE;
use openport::store::{billing, notifications};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::billing::register;
use crate::helpers::{
    captured_logs, execute, openport_in_test_mode, spawn_app, test_cards, TestApp,
};

const DAY: i64 = 86_400;
/// The scheduler's pace in these tests: it wakes every 50 ms.
const INTERVAL_MS: u64 = 50;

async fn schedule(app: &TestApp, token: &str, customer_uid: &str, items: Value) {
    let (_, body) = app
        .post(
            "/subscribe/payments/schedule",
            Some(token),
            json!({"customer_uid": customer_uid, "schedules": items}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
}

/// Moves the schedules `merchant_uids` (quoted, comma-separated) to ten minutes ago, as a backup
/// taken before they ran holds them once restored: due, and `scheduled`.
async fn due_since_the_backup(app: &TestApp, merchant_uids: &str) {
    let at = chrono::Utc::now().timestamp() - 600;
    execute(
        app,
        vec![format!(
            "UPDATE schedules SET schedule_at = {at} WHERE merchant_uid IN ({merchant_uids})"
        )],
    )
    .await;
}

async fn schedule_status(app: &TestApp, token: &str, merchant_uid: &str) -> Value {
    let (_, body) = app
        .get(
            &format!("/subscribe/payments/schedule/{merchant_uid}"),
            Some(token),
        )
        .await;
    body["response"]["schedule_status"].clone()
}

#[tokio::test]
async fn a_scheduler_started_paused_charges_no_due_schedule_and_one_started_without_the_pause_charges_it_once(
) {
    // The restored database: a schedule due since the backup, no instance running.
    let restored = spawn_app().await;
    let token = restored.token().await;
    register(&restored, &token, "r-cust", test_cards::SHINHAN_CREDIT).await;
    let later = chrono::Utc::now().timestamp() + 3600;
    schedule(
        &restored,
        &token,
        "r-cust",
        json!([{"merchant_uid": "r-due", "schedule_at": later, "amount": 9900}]),
    )
    .await;
    due_since_the_backup(&restored, "'r-due'").await;

    // Its first start, with the scheduler held and running every 50 ms.
    let paused = restored
        .another_instance(|c| {
            c.background_jobs = true;
            c.scheduler.paused = true;
            c.resolver.interval_ms = INTERVAL_MS;
        })
        .await;
    tokio::time::sleep(Duration::from_millis(12 * INTERVAL_MS)).await;

    assert!(
        restored.sandbox.ledger().is_empty(),
        "nothing charged: {:?}",
        restored.sandbox.ledger()
    );
    assert_eq!(
        schedule_status(&restored, &token, "r-due").await,
        "scheduled"
    );
    assert!(
        captured_logs().lines().any(|l| l.contains("WARN")
            && l.contains("the scheduler is paused")
            && l.contains("1 schedule(s) are due now")),
        "the start says the scheduler is paused and what is due"
    );
    // The API still takes schedules while the scheduler is held.
    let paused_token = paused.token().await;
    schedule(
        &paused,
        &paused_token,
        "r-cust",
        json!([{"merchant_uid": "r-next", "schedule_at": later + 3600, "amount": 9900}]),
    )
    .await;
    assert_eq!(
        schedule_status(&paused, &paused_token, "r-next").await,
        "scheduled"
    );

    // Started without the pause, an instance charges the due schedule, once.
    let running = restored
        .another_instance(|c| {
            c.background_jobs = true;
            c.resolver.interval_ms = INTERVAL_MS;
        })
        .await;
    let mut executed = Value::Null;
    for _ in 0..100 {
        executed = schedule_status(&restored, &token, "r-due").await;
        if executed == "executed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    }
    assert_eq!(executed, "executed");
    tokio::time::sleep(Duration::from_millis(12 * INTERVAL_MS)).await;
    let ledger = restored.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "charged once: {ledger:?}");
    assert_eq!(ledger[0].amount, 9900);
    assert_eq!(
        schedule_status(&restored, &token, "r-next").await,
        "scheduled",
        "not due yet"
    );
    restored.assert_ledger_agrees().await;
    running.app.shutdown().await;
    paused.app.shutdown().await;
}

/// Runs the `openport` binary on `app`'s database beside it, as an operator would; its stdout.
async fn openport(app: &TestApp, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = openport_in_test_mode(dir.path(), &app.database_url, args);
    let out = tokio::task::spawn_blocking(move || command.output().expect("openport runs"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "openport {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn schedule_list_due_names_each_due_schedule_without_card_data_and_charges_nothing() {
    let app = spawn_app().await;
    let token = app.token().await;
    register(&app, &token, "l-cust", test_cards::SHINHAN_CREDIT).await;
    let later = chrono::Utc::now().timestamp() + 3600;
    schedule(
        &app,
        &token,
        "l-cust",
        json!([
            {"merchant_uid": "l-due", "schedule_at": later, "amount": 4100},
            {"merchant_uid": "l-later", "schedule_at": later, "amount": 4200},
            {"merchant_uid": "l-revoked", "schedule_at": later, "amount": 4300},
        ]),
    )
    .await;
    let (_, revoked) = app
        .post(
            "/subscribe/payments/unschedule",
            Some(&token),
            json!({"customer_uid": "l-cust", "merchant_uid": ["l-revoked"]}),
        )
        .await;
    assert_eq!(revoked["code"], 0, "{revoked}");
    due_since_the_backup(&app, "'l-due', 'l-revoked'").await;
    let due_at = chrono::Utc::now().timestamp() - 600;

    let listed: Value =
        serde_json::from_str(&openport(&app, &["schedule", "list", "--due", "--json"]).await)
            .expect("JSON alone on stdout");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let due = &listed[0];
    assert_eq!(due["merchant"], DEMO_IMP_CODE);
    assert_eq!(due["merchant_uid"], "l-due");
    assert_eq!(due["customer_uid"], "l-cust");
    assert_eq!(due["amount"], 4100);
    assert!(
        (due_at - 2..=due_at + 2).contains(&due["schedule_at"].as_i64().unwrap()),
        "{due}"
    );
    assert_eq!(due["status"], "scheduled");
    assert!(due["imp_uid"].is_null(), "no charge opened: {due}");
    let mut fields: Vec<&str> = due
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "amount",
            "customer_uid",
            "id",
            "imp_uid",
            "merchant",
            "merchant_uid",
            "schedule_at",
            "status"
        ],
        "no card data, no buyer details"
    );

    // Without --due: every schedule not run yet, oldest first, one line each.
    let table = openport(&app, &["schedule", "list"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].contains("\tl-due\tl-cust\t4100 won\t") && lines[0].contains(DEMO_IMP_CODE),
        "{table}"
    );
    assert!(lines[1].contains("\tl-later\t"), "{table}");
    let card = test_cards::SHINHAN_CREDIT;
    assert!(!table.contains(&card[card.len() - 4..]), "{table}");

    // Listing changed nothing and charged nothing.
    assert!(app.sandbox.ledger().is_empty());
    assert_eq!(
        billing::count_schedules_by_status(&app.app.gateway.db.read, "scheduled")
            .await
            .unwrap(),
        2
    );
}

/// Issues a virtual account of `amount` due in 120 days (longer than the 90 days' retention);
/// the `ready` payment.
async fn long_lived_account(app: &TestApp, token: &str, merchant_uid: &str, amount: i64) -> Value {
    let (status, res) = app
        .post(
            "/vbanks",
            Some(token),
            json!({
                "merchant_uid": merchant_uid, "amount": amount, "vbank_code": "004",
                "vbank_due": app.app.gateway.clock.unix() + 120 * DAY, "name": "가상계좌 상품",
                "buyer_name": "홍길동", "buyer_email": "buyer@example.com",
            }),
        )
        .await;
    assert_eq!((status, &res["code"]), (StatusCode::OK, &json!(0)), "{res}");
    res["response"].clone()
}

/// Deposits `amount` on account `tno` at the sandbox and waits until openport acknowledged its
/// `TX00`.
async fn deposited(app: &TestApp, tno: &str, amount: i64) {
    let deposit = app.sandbox.deposit(tno, amount, "00").unwrap();
    for _ in 0..200 {
        let sent = app
            .sandbox
            .notifications()
            .into_iter()
            .any(|n| n.noti_id == deposit.noti_id && n.acknowledged);
        if sent {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the deposit's notification was never acknowledged");
}

#[tokio::test]
async fn an_old_partial_deposit_on_an_open_account_outlives_the_retention_and_still_refuses_the_revocation(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let open = long_lived_account(&app, &token, "vb-long-partly", 5000).await;
    let imp_uid = open["imp_uid"].as_str().unwrap();
    let tno = open["pg_tid"].as_str().unwrap();
    deposited(&app, tno, 3000).await;
    // Beside it, what the prune does delete, and what it keeps for an operator.
    let paid = long_lived_account(&app, &token, "vb-long-paid", 7000).await;
    let paid_tno = paid["pg_tid"].as_str().unwrap();
    deposited(&app, paid_tno, 7000).await;
    assert_eq!(
        app.payment(&token, paid["imp_uid"].as_str().unwrap()).await["status"],
        "paid"
    );
    let stranger = "99999999999999";
    let form: Vec<(&str, &str)> = vec![
        ("site_cd", "T0000"),
        ("tno", stranger),
        ("tx_cd", "TX00"),
        ("tx_tm", "20261123120000"),
        ("ipgm_mnyx", "1000"),
        ("totl_mnyx", "1000"),
        ("noti_id", "no-such-trade"),
        ("op_cd", "00"),
    ];
    app.http
        .post(app.url("/kcp/notify"))
        .form(&form)
        .send()
        .await
        .unwrap();

    app.advance(91 * DAY);
    let gateway = &app.app.gateway;
    assert_eq!(
        gateway.prune_notifications(90, 1000).await.unwrap(),
        1,
        "the paid account's decided deposit only"
    );
    assert_eq!(gateway.prune_notifications(90, 1000).await.unwrap(), 0);
    let kept = notifications::newest_deposit(&gateway.db.read, tno, "T0000")
        .await
        .unwrap()
        .expect("the open account's partial deposit is kept");
    assert_eq!(kept.total, 3000);
    assert!(
        notifications::newest_for(&gateway.db.read, stranger)
            .await
            .unwrap()
            .is_some(),
        "an undecided notification is kept for the operator"
    );
    assert!(notifications::newest_for(&gateway.db.read, paid_tno)
        .await
        .unwrap()
        .is_none());

    let token = app.token().await; // the old one expired while the clock moved
                                   // Consumed by a cancel call, were one sent.
    let watch = FaultRule::new(paths::CANCEL, Fault::Delay { ms: 0 });
    app.sandbox.inject(watch.clone());
    let res = app
        .http
        .delete(app.url(&format!("/vbanks/{imp_uid}")))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    let (status, res) = TestApp::read(res).await;

    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["code"], 1, "{res}");
    assert!(
        res["message"].as_str().unwrap().contains("입금"),
        "says why: {res}"
    );
    assert_eq!(app.sandbox.armed_faults(), [watch], "no STSC reached KCP");
    let entry = app
        .sandbox
        .ledger()
        .into_iter()
        .find(|e| e.tno == tno)
        .unwrap();
    assert_eq!(
        (entry.state, entry.cancels.len()),
        (TransactionState::Issued, 0)
    );
    assert_eq!(app.payment(&token, imp_uid).await["status"], "ready");
}

/// An account issued after the backup the database was restored from: KCP holds it, openport has
/// no payment for it, and its deposit's notification names a trade openport does not know, as a
/// forged one would. The resolver's sweep asks KCP once; KCP knowing the trade, the notification
/// stays undecided for the operator (a WARN says so), is never asked about again, and outlives the
/// retention, unlike a forged one (vbanks::a_forged_deposit_of_a_trade_kcp_does_not_know_…).
#[tokio::test]
async fn a_deposit_on_an_account_kcp_holds_and_the_restored_database_does_not_is_asked_about_once_and_kept(
) {
    use crate::vbanks::{count_inquiries, inquiries_left, notification_row, post_notification};
    use openport::pg::VbankIssueRequest;

    let app = spawn_app().await;
    let gateway = &app.app.gateway;
    let merchant = gateway
        .list_merchants()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.site_cd == "T0000")
        .unwrap();
    // Issued at KCP by the openport the backup was taken from, not by this database.
    let account = gateway
        .connectors
        .for_merchant(&merchant, &gateway.secrets)
        .unwrap()
        .issue_vbank(&VbankIssueRequest {
            order_no: "IssuedAfterTheBackup1".into(),
            amount: 5000,
            good_name: "가상계좌 상품".into(),
            buyer_name: "홍길동".into(),
            buyer_email: "buyer@example.com".into(),
            buyer_tel: "010-1234-5678".into(),
            bank_code: "BK04".into(),
            due: chrono::Utc::now() + chrono::Duration::days(7),
        })
        .await
        .unwrap();
    let tno = account.tno.as_str();
    // KCP's own notification of the deposit, posted here by the test (not by the sandbox's
    // re-sends, which would keep coming).
    let elsewhere = crate::helpers::Receiver::start().await;
    app.sandbox
        .set_notify_url("T0000", &elsewhere.url("/kcp/notify"));
    let deposit = app.sandbox.deposit(tno, 5000, "00").unwrap();
    count_inquiries(&app, tno);

    assert!(!post_notification(&app, &deposit.fields).await);
    app.advance(121);
    gateway.reverify_notifications(100).await.unwrap();
    assert_eq!(inquiries_left(&app), 9, "asked once");
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome, None, "undecided, for the operator");
    assert!(
        captured_logs().lines().any(|l| l.contains("WARN")
            && l.contains(tno)
            && l.contains("KCP holds a virtual account openport has no payment for")),
        "the operator is told"
    );

    for _ in 0..3 {
        app.advance(600);
        gateway.reverify_notifications(100).await.unwrap();
    }
    assert!(
        !post_notification(&app, &deposit.fields).await,
        "KCP's re-send is still not acknowledged, as before"
    );
    assert_eq!(inquiries_left(&app), 9, "never asked again");

    app.advance(91 * DAY);
    assert_eq!(gateway.prune_notifications(90, 1000).await.unwrap(), 0);
    let row = notification_row(&app, &deposit.noti_id).await.unwrap();
    assert_eq!(row.outcome, None, "kept for the operator");
}
