//! `GET /health` (load balancers: no token, the database answering) and `GET /admin/status` (the
//! operator's alerting: what waits for an operator).
use std::time::{Duration, Instant};

use kcp_sandbox::{paths, Fault, FaultRule};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::billing::register;
use crate::helpers::{
    a_cancel_held_as_a_conflict, allow_writes, captured_logs, failed_webhook_row, refuse_writes,
    spawn_app, spawn_app_with, test_cards, TestApp, ADMIN_TOKEN,
};

/// `GET /health` with nothing but the path: its status, its body, and how long it took.
async fn health(app: &TestApp) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let res = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let (status, body) = TestApp::read(res).await;
    (status, body, started.elapsed())
}

/// The line of the captured log that says `what`.
fn logged(what: &str) -> String {
    captured_logs()
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("nothing logged says {what:?}"))
        .to_string()
}

/// On PostgreSQL, the name of `app`'s database and a connection to the server from the database
/// the test databases are made from (a database cannot close itself); None on SQLite.
async fn postgres_admin(app: &TestApp) -> Option<(String, sea_orm::sqlx::PgConnection)> {
    use sea_orm::sqlx::Connection;
    if !app.database_url.starts_with("postgres") {
        return None;
    }
    let name = app.database_url.rsplit('/').next().unwrap().to_string();
    let server = std::env::var("DATABASE_URL").unwrap();
    let admin = sea_orm::sqlx::PgConnection::connect(&server).await.unwrap();
    Some((name, admin))
}

#[tokio::test]
async fn the_health_check_answers_ok_without_a_token_while_the_database_answers() {
    let app = spawn_app().await;

    let (status, body, _) = health(&app).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ok"}));
}

/// The SQLite writer (on PostgreSQL, a pool of one connection) held by a transaction that does
/// not end: the database does not answer within the bound, which is 503, never a 500 nor a wait
/// as long as the load balancer's, and the body says nothing else. Once it ends, 200 again.
#[tokio::test]
async fn the_health_check_answers_unavailable_within_its_bound_while_the_database_does_not_answer()
{
    let app = spawn_app_with(|c| c.database_pool_size = 1).await;
    let held = app.app.gateway.db.write.begin().await.unwrap();

    let (status, body, took) = health(&app).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({"status": "unavailable"}));
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let line = logged("health check: the database did not answer in time");
    assert!(line.contains("WARN"), "{line}");
    // The 503 is the check's answer, not an error of openport's: no ERROR line, which operators
    // alert on (the request log wrote one for every 503).
    let request = line
        .split("request_id=")
        .nth(1)
        .and_then(|rest| rest.split(['}', ' ']).next())
        .unwrap_or_else(|| panic!("no request id in {line}"));
    let field = format!("request_id={request}");
    let errors: Vec<String> = captured_logs()
        .lines()
        .filter(|l| l.contains(&field) && l.contains(" ERROR "))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    held.rollback().await.unwrap();
    let (status, body, _) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A database that answers but refuses every write (a full disk, a read-only file or session):
/// every payment would fail, so the check does too (503, the cause at WARN), and answers 200 again
/// once writes commit. Here a trigger refuses the check's own write.
#[tokio::test]
async fn the_health_check_answers_unavailable_while_the_database_answers_but_refuses_writes() {
    let app = spawn_app().await;
    assert_eq!(health(&app).await.0, StatusCode::OK);
    refuse_writes(&app, "no_probe", "UPDATE", "health_probe", "1 = 1").await;

    let (status, body, took) = health(&app).await;

    allow_writes(&app, "no_probe", "health_probe").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({"status": "unavailable"}));
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let line = logged("health check: the database failed");
    assert!(line.contains("WARN"), "{line}");
    let (status, body, _) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// PostgreSQL whose new sessions are read-only (as a standby promoted wrong, or
/// `default_transaction_read_only` set): `SELECT 1` answers, no payment can be written, and the
/// check says 503; 200 once sessions can write again. Only PostgreSQL lets a test do this.
#[tokio::test]
async fn the_health_check_answers_unavailable_while_postgresql_sessions_are_read_only() {
    let app = spawn_app().await;
    let Some((name, mut admin)) = postgres_admin(&app).await else {
        return;
    };
    let terminate =
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    for sql in [
        format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
        terminate.clone(),
    ] {
        sea_orm::sqlx::query(&sql)
            .execute(&mut admin)
            .await
            .unwrap();
    }

    let mut read_only = None;
    for _ in 0..40 {
        let (status, body, _) = health(&app).await;
        if status == StatusCode::SERVICE_UNAVAILABLE
            && captured_logs().contains("read-only transaction")
        {
            read_only = Some(body);
            break;
        }
    }

    for sql in [
        format!("ALTER DATABASE {name} RESET default_transaction_read_only"),
        terminate,
    ] {
        sea_orm::sqlx::query(&sql)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    assert_eq!(
        read_only.expect("the check never failed on a read-only session"),
        json!({"status": "unavailable"})
    );
    for _ in 0..40 {
        if health(&app).await.0 == StatusCode::OK {
            return;
        }
    }
    panic!("the database never took writes again");
}

/// PostgreSQL refusing connections (its sessions ended, the database closed to new ones), as in an
/// outage: 503 with no word of the database's name or host, the cause logged at WARN; 200 once it
/// is back. Only PostgreSQL lets a test do this.
#[tokio::test]
async fn the_health_check_answers_unavailable_naming_nothing_while_postgresql_refuses_connections()
{
    let app = spawn_app().await;
    let Some((name, mut admin)) = postgres_admin(&app).await else {
        return;
    };
    for sql in [
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    ] {
        sea_orm::sqlx::query(&sql)
            .execute(&mut admin)
            .await
            .unwrap();
    }

    let (status, body, took) = health(&app).await;

    let reopen = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true");
    sea_orm::sqlx::query(&reopen)
        .execute(&mut admin)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({"status": "unavailable"}));
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let line = logged("health check: the database");
    assert!(line.contains("WARN"), "{line}");
    // The pool drops each cut connection as it meets it: a few checks on, the database answers.
    for _ in 0..40 {
        if health(&app).await.0 == StatusCode::OK {
            return;
        }
    }
    panic!("the database never answered again");
}

#[tokio::test]
async fn the_operator_status_takes_the_operator_token_only() {
    let app = spawn_app().await;
    let merchant = app.token().await;
    for token in [None, Some(merchant.as_str()), Some("not-a-token")] {
        let (status, body) = app.get("/admin/status", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(body["code"], -1, "{body}");
        assert!(body["response"].is_null(), "{body}");
    }

    let (status, body) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    // The test instances run with the clock check off (helpers.rs).
    let clock = if app.database_url.starts_with("postgres") {
        "not_checked"
    } else {
        "not_shared"
    };
    assert_eq!(
        body["response"],
        json!({
            "mode": "test",
            "conflicts": 0,
            "open_attempts": 0,
            "oldest_open_attempt_age_secs": null,
            "open_key_issuances": 0,
            "oldest_open_key_issuance_age_secs": null,
            "webhooks_pending": 0,
            "webhooks_failed": 0,
            "notifications_for_operator": 0,
            "schedules_due": 0,
            "scheduler_paused": false,
            "clock": clock,
        })
    );
}

/// With the clock check turned off (`resolver.max_clock_skew_secs = 0`) a PostgreSQL instance said
/// `in_line` however far its clock was off the database's: an operator who turned the check off
/// was shown a healthy clock. It says `not_checked`, and `in_line` only when the check is on
/// (SQLite: `not_shared` either way).
#[tokio::test]
async fn the_operator_status_says_the_clock_is_not_checked_when_the_check_is_off() {
    for (max_skew_secs, on_postgres) in [(0, "not_checked"), (5, "in_line")] {
        let app = spawn_app_with(|c| {
            c.resolver.max_clock_skew_secs = max_skew_secs;
            c.resolver.settle_secs = 60; // outlasts the hold plus twice the skew allowed
        })
        .await;

        let (status, body) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;

        assert_eq!(status, StatusCode::OK, "{body}");
        let clock = if app.database_url.starts_with("postgres") {
            on_postgres
        } else {
            "not_shared"
        };
        assert_eq!(body["response"]["clock"], clock, "{max_skew_secs}: {body}");
    }
}

/// A conflict (a cancel whose answer was lost and whose inquiry says KCP has no such trade), an
/// approval whose answer never came (open), two webhook deliveries (one pending, one given up)
/// and a schedule come due, on an instance started with its scheduler paused: each is counted.
#[tokio::test]
async fn the_operator_status_counts_what_waits_for_an_operator() {
    let app = spawn_app_with(|c| c.scheduler.paused = true).await;
    let token = app.token().await;
    let key = register(&app, &token, "status-customer", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(key["code"], 0, "{key}");
    let at = chrono::Utc::now().timestamp() + 60;
    let (_, scheduled) = app
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            json!({"customer_uid": "status-customer",
                   "schedules": [{"merchant_uid": "status-s", "schedule_at": at, "amount": 1000}]}),
        )
        .await;
    assert_eq!(scheduled["code"], 0, "{scheduled}");

    let (imp_uid, cancel) = a_cancel_held_as_a_conflict(&app, &token, "status-conflict").await;
    assert_eq!(cancel["code"], 1, "{cancel}");
    assert_eq!(app.conflicts().await.len(), 1);
    app.sandbox.clear_faults();

    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, open) = app
        .pay(&token, "status-open", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(open["code"], 1, "{open}");
    app.sandbox.clear_faults();

    let paid = openport::store::payments::by_imp_uid(&app.app.gateway.db.read, None, &imp_uid)
        .await
        .unwrap()
        .unwrap();
    for state in ["pending", "failed"] {
        let row = openport::store::entity::webhook_delivery::ActiveModel {
            state: sea_orm::Set(state.into()),
            ..failed_webhook_row(&paid, "https://merchant.example/webhook")
        };
        openport::store::webhooks::insert_delivery(&app.app.gateway.db.write, row)
            .await
            .unwrap();
    }
    app.advance(120);

    let (status, body) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let s = &body["response"];
    assert_eq!(s["mode"], "test", "{s}");
    assert_eq!(s["conflicts"], 1, "{s}");
    assert_eq!(s["open_attempts"], 1, "{s}");
    let age = s["oldest_open_attempt_age_secs"].as_i64().expect("an age");
    assert!((120..180).contains(&age), "{s}");
    assert_eq!(s["webhooks_pending"], 1, "{s}");
    assert_eq!(s["webhooks_failed"], 1, "{s}");
    assert_eq!(s["schedules_due"], 1, "{s}");
    assert_eq!(s["scheduler_paused"], true, "{s}");
}
