//! An instance left running while a newer openport migrated its database (service/schema_check.rs):
//! once its check finds a migration it does not know, it takes no more work and says so. The
//! newer migration is simulated by a row of `seaql_migrations` this binary does not know.
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::billing::register;
use crate::helpers::{captured_logs, execute, spawn_app, test_cards, TestApp, ADMIN_TOKEN};

/// Records `version` as applied, as a newer openport's migration would be.
async fn migrate_newer(app: &TestApp, version: &str) {
    execute(
        app,
        vec![format!(
            "INSERT INTO seaql_migrations (version, applied_at) VALUES ('{version}', 4102444800)"
        )],
    )
    .await;
}

/// The refusal every request but the health check and the operator status gets.
fn assert_refused_as_outdated(what: &str, status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
    assert_eq!(body["code"], -1, "{what}: {body}");
    assert!(body["response"].is_null(), "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("데이터베이스보다 오래된 버전") && message.contains("중지"),
        "{what}: {body}"
    );
}

/// The `status` of `merchant_uid`'s schedule, read from the database (the API refuses lookups).
async fn schedule_row_status(app: &TestApp, merchant_uid: &str) -> String {
    use openport::store::entity::schedule;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    schedule::Entity::find()
        .filter(schedule::Column::MerchantUid.eq(merchant_uid))
        .one(&app.app.gateway.db.read)
        .await
        .unwrap()
        .expect("the schedule")
        .status
}

#[tokio::test]
async fn an_instance_whose_database_a_newer_openport_migrated_refuses_every_request_but_health_and_status(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    assert!(!app.app.gateway.check_schema().await.unwrap(), "current");

    migrate_newer(&app, "m20991231_000097_refusals").await;
    assert!(app.app.gateway.check_schema().await.unwrap(), "outdated");

    let (status, body) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": "imp_key", "imp_secret": "imp_secret"}),
        )
        .await;
    assert_refused_as_outdated("getToken", status, &body);
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "outdated-onetime", "amount": 1000,
                   "card_number": test_cards::SHINHAN_CREDIT, "expiry": "2031-12",
                   "birth": "800101", "pwd_2digit": "00"}),
        )
        .await;
    assert_refused_as_outdated("onetime", status, &body);
    let (status, body) = app.get("/payments/imp_000000000000", Some(&token)).await;
    assert_refused_as_outdated("a lookup", status, &body);
    let (status, body) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000"}),
        )
        .await;
    assert_refused_as_outdated("checkout", status, &body);
    assert!(app.sandbox.ledger().is_empty(), "nothing sent to KCP");

    // KCP's notification is not acknowledged: KCP sends it again, to an upgraded instance.
    let res = app
        .http
        .post(app.url("/kcp/notify"))
        .form(&[("site_cd", "T0000"), ("tno", "1"), ("noti_id", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = res.text().await.unwrap();
    assert!(page.contains("9999") && !page.contains("0000"), "{page}");

    let res = app.http.get(app.url("/health")).send().await.unwrap();
    let (status, body) = TestApp::read(res).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({"status": "outdated"}));

    let (status, body) = app.get("/admin/status", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;
    assert_refused_as_outdated("status", status, &body);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("m20991231_000097_refusals"),
        "{body}"
    );
}

#[tokio::test]
async fn an_instance_whose_database_a_newer_openport_migrated_charges_no_due_schedule() {
    let app = spawn_app().await;
    let token = app.token().await;
    let key = register(
        &app,
        &token,
        "outdated-customer",
        test_cards::SHINHAN_CREDIT,
    )
    .await;
    assert_eq!(key["code"], 0, "{key}");
    let at = app.app.gateway.clock.unix() + 60;
    let (_, scheduled) = app
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            json!({"customer_uid": "outdated-customer",
                   "schedules": [{"merchant_uid": "outdated-s", "schedule_at": at, "amount": 1000}]}),
        )
        .await;
    assert_eq!(scheduled["code"], 0, "{scheduled}");
    migrate_newer(&app, "m20991231_000098_scheduler").await;
    app.app.gateway.check_schema().await.unwrap();
    app.advance(120);

    assert_eq!(app.app.gateway.run_due_schedules(10).await.unwrap(), 0);
    assert_eq!(app.app.gateway.resolve_due(10).await.unwrap(), 0);
    assert_eq!(app.app.gateway.deliver_due_webhooks(10).await.unwrap(), 0);

    assert_eq!(schedule_row_status(&app, "outdated-s").await, "scheduled");
    assert!(app.sandbox.ledger().is_empty(), "nothing charged");
}

#[tokio::test]
async fn an_instance_whose_database_a_newer_openport_migrated_says_so_at_error_once() {
    let app = spawn_app().await;
    migrate_newer(&app, "m20991231_000099_said_once").await;

    for _ in 0..3 {
        assert!(app.app.gateway.check_schema().await.unwrap());
    }

    let lines: Vec<String> = captured_logs()
        .lines()
        // Not sqlx's DEBUG line of the test's own INSERT, which names it too.
        .filter(|l| l.contains("m20991231_000099_said_once") && !l.contains("sqlx"))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    assert!(
        lines[0]
            .contains("migrated by a newer version of openport while this instance was serving")
            && lines[0].contains("stop it and run the newer version")
            && lines[0].contains("\"Upgrades\""),
        "{}",
        lines[0]
    );
}
