//! A billing-key issuance asked of KCP through the API is recorded before KCP is called
//! (service/key_issuances.rs): KCP has no inquiry for an issuance, so a key issued whose answer
//! was lost, or whose request died before storing it, is listed for an operator under the order
//! number KCP issued it under, and closed with the key otherwise.
use kcp_sandbox::{paths, BatchKey, Fault, FaultRule};
use openport::service::key_issuances::OpenIssuance;
use openport::store::entity::key_issuance;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
use serde_json::{json, Value};

use crate::billing::register;
use crate::helpers::{
    allow_writes, captured_logs, future_expiry, openport_in_test_mode, refuse_writes, spawn_app,
    test_cards, TestApp, ADMIN_TOKEN, SETTLE_SECS,
};

/// KCP's `card_tx_type` of a key-in batch-key issuance (spec/kcp.md §2.5).
const ISSUANCE: &str = "12100000";

/// KCP issues the next key asked for; its answer never reaches openport.
fn lose_the_next_issuance_answer(app: &TestApp) {
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("card_tx_type", ISSUANCE),
    );
}

/// Every issuance recorded, oldest first.
async fn issuances(app: &TestApp) -> Vec<key_issuance::Model> {
    key_issuance::Entity::find()
        .order_by_asc(key_issuance::Column::Id)
        .all(&app.app.gateway.db.read)
        .await
        .unwrap()
}

async fn open_issuances(app: &TestApp) -> Vec<OpenIssuance> {
    app.app.gateway.open_key_issuances(100).await.unwrap()
}

/// The key KCP holds under order number `order_no`, as its admin would find it.
fn kcp_key_under(app: &TestApp, order_no: &str) -> Option<BatchKey> {
    app.sandbox
        .batch_keys()
        .into_iter()
        .find(|k| k.order_no == order_no)
}

/// `POST /subscribe/payments/onetime` keeping the card as `customer_uid`'s key.
async fn onetime_keeping(app: &TestApp, token: &str, merchant_uid: &str, uid: &str) -> Value {
    app.post(
        "/subscribe/payments/onetime",
        Some(token),
        json!({"merchant_uid": merchant_uid, "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
               "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00",
               "customer_uid": uid}),
    )
    .await
    .1
}

/// `POST /subscribe/payments/schedule` with card data for `uid`, which has no key yet.
async fn schedule_with_card(app: &TestApp, token: &str, merchant_uid: &str, uid: &str) -> Value {
    let at = chrono::Utc::now().timestamp() + 3600;
    app.post(
        "/subscribe/payments/schedule",
        Some(token),
        json!({"customer_uid": uid, "card_number": test_cards::SAMSUNG_CHECK, "expiry": future_expiry(),
               "schedules": [{"merchant_uid": merchant_uid, "schedule_at": at, "amount": 1000}]}),
    )
    .await
    .1
}

/// A registration whose issuance answer is lost: the issuance stays open (`unknown`), listed with
/// the order number KCP holds the key under, counted by `GET /admin/status`; the resolver leaves
/// it (there is nothing to inquire), and it closes only on the operator's word, not before the
/// settle delay.
#[tokio::test]
async fn a_registration_whose_issuance_answer_is_lost_is_listed_open_under_the_order_number_kcp_holds_the_key_under(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    lose_the_next_issuance_answer(&app);

    let body = register(&app, &token, "lost-cust", test_cards::SHINHAN_CREDIT).await;

    assert_eq!(body["code"], 1, "{body}");
    let open = open_issuances(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let i = &open[0];
    assert_eq!(
        (i.kind.as_str(), i.state.as_str(), i.customer_uid.as_str()),
        ("customer", "unknown", "lost-cust"),
        "{i:?}"
    );
    assert_eq!(i.site_cd, "T0000", "{i:?}");
    assert!(i.order_no.starts_with("BK"), "{i:?}");
    let key = kcp_key_under(&app, &i.order_no)
        .unwrap_or_else(|| panic!("KCP holds no key under {}", i.order_no));
    assert_eq!(key.masked_card_no, "411111******1111");
    // Never the card, never a key.
    let recorded = format!("{:?}", issuances(&app).await);
    assert!(!recorded.contains(test_cards::SHINHAN_CREDIT), "{recorded}");
    let (_, status) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;
    assert_eq!(status["response"]["open_key_issuances"], 1, "{status}");
    assert!(status["response"]["oldest_open_key_issuance_age_secs"].is_i64());
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());

    // Nothing settles it by itself.
    app.advance(SETTLE_SECS + 60);
    app.app.gateway.resolve_due(10).await.unwrap();
    app.advance(600);
    app.app.gateway.resolve_due(10).await.unwrap();
    assert_eq!(open_issuances(&app).await.len(), 1);

    // The operator deleted the key in KCP's admin.
    let gateway = &app.app.gateway;
    assert!(gateway.reconcile_issuance(&i.order_no, " ").await.is_err());
    assert!(gateway
        .reconcile_issuance("BK0000000000000000", "deleted")
        .await
        .is_err());
    gateway
        .reconcile_issuance(&i.order_no, "deleted in KCP's admin")
        .await
        .unwrap();
    assert!(open_issuances(&app).await.is_empty());
    let closed = issuances(&app).await;
    assert_eq!(closed[0].state, "reconciled");
    assert!(closed[0]
        .note
        .as_deref()
        .is_some_and(|n| n.contains("deleted in KCP's admin")));
    let (_, status) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;
    assert_eq!(status["response"]["open_key_issuances"], 0, "{status}");
}

/// The operator's word is refused while the issuance's request may still be waiting on KCP.
#[tokio::test]
async fn an_issuance_younger_than_the_settle_delay_is_not_reconciled() {
    let app = spawn_app().await;
    let token = app.token().await;
    lose_the_next_issuance_answer(&app);
    register(&app, &token, "young-cust", test_cards::SHINHAN_CREDIT).await;
    let open = open_issuances(&app).await;

    let early = app
        .app
        .gateway
        .reconcile_issuance(&open[0].order_no, "looked")
        .await
        .unwrap_err();

    assert!(early.to_string().contains("settle delay"), "{early}");
    assert_eq!(open_issuances(&app).await.len(), 1);
}

/// The process dies while KCP issues the key (the request is gone before KCP answers): the
/// issuance written before the call stays `pending`, listed under the order number KCP holds the
/// key under, where nothing at all was left before.
#[tokio::test]
async fn an_issuance_whose_request_dies_while_kcp_issues_the_key_stays_pending_and_listed() {
    use openport::domain::card::{CardNumber, Expiry};
    use openport::service::billing::CustomerCommand;
    let app = spawn_app().await;
    app.sandbox.inject(
        FaultRule::new(
            paths::HUB_PAYMENT,
            Fault::HoldAnswer {
                gate: "issued".into(),
            },
        )
        .when("card_tx_type", ISSUANCE),
    );
    let m = openport::store::merchants::by_imp_key(
        &app.app.gateway.db.read,
        openport::service::merchants::DEMO_IMP_KEY,
    )
    .await
    .unwrap()
    .unwrap();
    let today = chrono::Utc::now().date_naive();
    let cmd = CustomerCommand {
        customer_uid: "died-cust".into(),
        card_number: CardNumber::parse(test_cards::SHINHAN_CREDIT).unwrap(),
        expiry: Expiry::parse(&future_expiry(), today).unwrap(),
        auth: None,
        customer_id: None,
        customer_name: None,
        customer_tel: None,
        customer_email: None,
        customer_addr: None,
        customer_postcode: None,
    };
    let gateway = app.app.gateway.clone();
    let request = tokio::spawn(async move { gateway.register_customer(&m, cmd).await });
    app.sandbox.until_held("issued").await;

    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    app.sandbox.open_gate("issued");

    let open = open_issuances(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].state, "pending");
    assert_eq!(open[0].customer_uid, "died-cust");
    assert!(kcp_key_under(&app, &open[0].order_no).is_some());
    let (_, status) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;
    assert_eq!(status["response"]["open_key_issuances"], 1, "{status}");
}

/// The issuances of a key-in charge keeping its card and of a schedule with card data go through
/// the same record: a lost answer leaves each listed, with its kind.
#[tokio::test]
async fn a_onetime_or_a_schedule_whose_issuance_answer_is_lost_is_listed_with_its_kind() {
    let app = spawn_app().await;
    let token = app.token().await;

    lose_the_next_issuance_answer(&app);
    let charged = onetime_keeping(&app, &token, "lost-ot", "lost-ot-cust").await;
    assert_ne!(charged["code"], 0, "{charged}");
    lose_the_next_issuance_answer(&app);
    let scheduled = schedule_with_card(&app, &token, "lost-sch", "lost-sch-cust").await;
    assert_ne!(scheduled["code"], 0, "{scheduled}");

    let open = open_issuances(&app).await;
    let listed: Vec<_> = open
        .iter()
        .map(|i| (i.kind.as_str(), i.state.as_str(), i.customer_uid.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("onetime", "unknown", "lost-ot-cust"),
            ("schedule", "unknown", "lost-sch-cust")
        ]
    );
    for i in &open {
        assert!(kcp_key_under(&app, &i.order_no).is_some(), "{i:?}");
    }
}

/// Issuances KCP answered leave nothing open: a key stored closes its issuance as `issued` in
/// the transaction that stores it (a registration, a onetime keeping its card, a schedule with
/// card data), and a refusal as `refused`.
#[tokio::test]
async fn issuances_kcp_answered_leave_none_open_whether_the_key_was_issued_or_refused() {
    let app = spawn_app().await;
    let token = app.token().await;

    let registered = register(&app, &token, "ok-cust", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(registered["code"], 0, "{registered}");
    let charged = onetime_keeping(&app, &token, "ok-ot", "ok-ot-cust").await;
    assert_eq!(charged["code"], 0, "{charged}");
    let scheduled = schedule_with_card(&app, &token, "ok-sch", "ok-sch-cust").await;
    assert_eq!(scheduled["code"], 0, "{scheduled}");
    let (_, refused) = app
        .post(
            "/subscribe/customers/refused-cust",
            Some(&token),
            json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "birth": test_cards::WRONG_BIRTH, "pwd_2digit": "00"}),
        )
        .await;
    assert_eq!(refused["code"], -1, "{refused}");

    assert!(open_issuances(&app).await.is_empty());
    let recorded: Vec<_> = issuances(&app)
        .await
        .into_iter()
        .map(|i| (i.kind, i.state, i.customer_uid))
        .collect();
    let owned = |k: &str, s: &str, u: &str| (k.to_string(), s.to_string(), u.to_string());
    assert_eq!(
        recorded,
        [
            owned("customer", "issued", "ok-cust"),
            owned("onetime", "issued", "ok-ot-cust"),
            owned("schedule", "issued", "ok-sch-cust"),
            owned("customer", "refused", "refused-cust"),
        ]
    );
    let (_, status) = app.get("/admin/status", Some(ADMIN_TOKEN)).await;
    assert_eq!(status["response"]["open_key_issuances"], 0, "{status}");
    assert!(status["response"]["oldest_open_key_issuance_age_secs"].is_null());
}

/// A key KCP issued that the database will not store is discarded: its issuance closes as
/// `discarded` with the record of its deletion at KCP, or once KCP deleted it when even that
/// record cannot be written. When KCP will not delete it either, the issuance stays open for an
/// operator, where only an ERROR line told of it before.
#[tokio::test]
async fn an_issued_key_that_cannot_be_stored_closes_its_issuance_only_once_kcp_deletes_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    crate::billing::refuse_key_inserts(
        &app,
        "NEW.customer_uid LIKE 'unstored-%' \
         AND (NEW.status = 'active' OR NEW.customer_uid <> 'unstored-one')",
    )
    .await;

    for uid in ["unstored-one", "unstored-all"] {
        let body = register(&app, &token, uid, test_cards::SHINHAN_CREDIT).await;
        assert_ne!(body["code"], 0, "{body}");
    }
    assert!(open_issuances(&app).await.is_empty());
    let closed = issuances(&app).await;
    assert!(closed.iter().all(|i| i.state == "discarded"), "{closed:?}");
    for i in &closed {
        let key = kcp_key_under(&app, &i.order_no).unwrap();
        assert_eq!(format!("{:?}", key.state), "Deleted", "{i:?}");
    }

    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::HttpStatus { status: 503 })
            .when("tx_type", "10005010")
            .times(10),
    );
    let body = register(&app, &token, "unstored-kept", test_cards::SHINHAN_CREDIT).await;
    assert_ne!(body["code"], 0, "{body}");

    let open = open_issuances(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].customer_uid.as_str(), open[0].state.as_str()),
        ("unstored-kept", "unknown")
    );
    assert!(open[0]
        .note
        .as_deref()
        .is_some_and(|n| n.contains("KCP's admin")));
    let key = kcp_key_under(&app, &open[0].order_no).unwrap();
    assert_eq!(format!("{:?}", key.state), "Active");
}

/// The database refuses every key row of `uid` (its key and the record of the key's deletion) and
/// the write that closes its issuance as `discarded`: KCP deletes the key, and the close is what
/// is left to write, as under a database whose backends are being killed.
async fn discard_under_a_failing_database(app: &TestApp, uid: &str) {
    crate::billing::refuse_key_inserts(app, &format!("NEW.customer_uid = '{uid}'")).await;
    refuse_writes(
        app,
        "refuse_issuance_end",
        "UPDATE",
        "key_issuances",
        "NEW.state = 'discarded'",
    )
    .await;
}

/// The lines logged about the issuance asked under `order_no` that say `what`.
fn issuance_lines(order_no: &str, what: &str) -> Vec<String> {
    captured_logs()
        .lines()
        .filter(|l| l.contains(order_no) && l.contains(what))
        .map(str::to_string)
        .collect()
}

const TRYING_AGAIN: &str = "cannot record a billing-key issuance's outcome, trying again";

/// A registration whose key could not be stored and that KCP deleted, and whose issuance's close
/// fails once (the database's backends killed a moment): the close is tried again a second later
/// and the issuance ends `discarded`, not `pending` for an operator to check by hand, as it did
/// when the one write was given up.
#[tokio::test]
async fn an_issuance_whose_close_fails_once_is_closed_on_the_next_try_not_left_pending() {
    // KCP's issuance and deletion must be answered, however loaded the machine: a call timed out
    // leaves the issuance another way, whose close the database does not refuse.
    let app = crate::ownership::spawn_app_whose_held_calls_wait_for_their_gate().await;
    let token = app.token().await;
    discard_under_a_failing_database(&app, "end-once").await;

    let registering = register(&app, &token, "end-once", test_cards::SHINHAN_CREDIT);
    // Once the first try was refused, the database takes writes again (within the pause).
    let recovering = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            if std::time::Instant::now() >= deadline {
                let rows = issuances(&app).await;
                let said: Vec<String> = rows
                    .iter()
                    .flat_map(|i| issuance_lines(&i.order_no, ""))
                    .collect();
                panic!("the refused close was never tried again: {rows:?}\n{said:#?}");
            }
            let rows = issuances(&app).await;
            if let Some(i) = rows.first() {
                if !issuance_lines(&i.order_no, TRYING_AGAIN).is_empty() {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        allow_writes(&app, "refuse_issuance_end", "key_issuances").await;
    };
    let (body, ()) = tokio::join!(registering, recovering);

    assert_ne!(body["code"], 0, "not registered: {body}");
    let rows = issuances(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].state, "discarded", "{rows:?}");
    assert!(open_issuances(&app).await.is_empty());
    let key = kcp_key_under(&app, &rows[0].order_no).unwrap();
    assert_eq!(format!("{:?}", key.state), "Deleted");
    // The first try is refused; the second normally closes it, but a loaded machine may let the
    // second come before the test lets writes through again: the third (the last) then does.
    let retried = issuance_lines(&rows[0].order_no, TRYING_AGAIN).len();
    assert!((1..=2).contains(&retried), "{retried} tries refused");
    assert!(issuance_lines(&rows[0].order_no, "left open").is_empty());
}

/// A close that keeps failing is given up after three tries: the issuance stays open, and the
/// WARN tells the operator that KCP deleted its key and the command that closes it.
#[tokio::test]
async fn an_issuance_whose_close_keeps_failing_is_left_open_with_a_warn_naming_the_command_that_closes_it(
) {
    let app = crate::ownership::spawn_app_whose_held_calls_wait_for_their_gate().await;
    let token = app.token().await;
    discard_under_a_failing_database(&app, "end-never").await;

    let body = register(&app, &token, "end-never", test_cards::SHINHAN_CREDIT).await;

    assert_ne!(body["code"], 0, "not registered: {body}");
    let open = open_issuances(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].state, "pending");
    let order_no = open[0].order_no.as_str();
    let key = kcp_key_under(&app, order_no).unwrap();
    assert_eq!(format!("{:?}", key.state), "Deleted");
    assert_eq!(
        issuance_lines(order_no, TRYING_AGAIN).len(),
        2,
        "three tries"
    );
    let given_up = issuance_lines(order_no, "left open");
    assert_eq!(given_up.len(), 1, "{given_up:?}");
    assert!(
        given_up[0].contains(&format!(
            "KCP deleted the key it issued under it, nothing to do at KCP: close it with \
             `openport attempt reconciled --order-no {order_no} --note"
        )),
        "{given_up:?}"
    );
    assert!(given_up[0].contains("WARN"), "{given_up:?}");
}

/// The operator's commands: `attempt list` says issuances are open, `attempt list --issuances`
/// lists them (JSON: the order number to look up), `attempt reconciled --order-no` closes one.
#[tokio::test]
async fn attempt_list_issuances_shows_an_open_issuance_and_attempt_reconciled_order_no_closes_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    lose_the_next_issuance_answer(&app);
    register(&app, &token, "cli-cust", test_cards::SHINHAN_CREDIT).await;
    let order_no = open_issuances(&app).await[0].order_no.clone();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        let mut command = openport_in_test_mode(
            dir.path(),
            &app.database_url,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        async move {
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let plain = run(args(&["attempt", "list"])).await;
    assert!(plain.status.success());
    let hint = String::from_utf8_lossy(&plain.stderr);
    assert!(
        hint.contains("1 billing-key issuance(s)") && hint.contains("--issuances"),
        "{hint}"
    );
    let listed = run(args(&["attempt", "list", "--issuances", "--json"])).await;
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["order_no"], order_no.as_str(), "{listed}");
    assert_eq!(listed[0]["customer_uid"], "cli-cust", "{listed}");
    assert_eq!(listed[0]["kind"], "customer", "{listed}");

    // The command runs on the host's clock with the default settle delay (120 s).
    app.app
        .gateway
        .db
        .write
        .execute_unprepared("UPDATE key_issuances SET created_at = created_at - 1000")
        .await
        .unwrap();
    let reconcile = args(&[
        "attempt",
        "reconciled",
        "--order-no",
        &order_no,
        "--note",
        "deleted in KCP's admin",
    ]);
    let done = run(reconcile.clone()).await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stdout).contains("reconciled"));
    assert!(open_issuances(&app).await.is_empty());
    assert!(!run(reconcile).await.status.success(), "closed already");
}

/// Holds KCP's answer to the next issuance at `gate`, and returns what the operator does
/// meanwhile: once it is held, a settle delay later, reconcile the one open issuance (their word
/// that its key is deleted in KCP's admin), then release the answer. Its order number.
async fn reconcile_while_the_answer_is_held(app: &TestApp, gate: &str) -> String {
    app.sandbox.until_held(gate).await;
    let open = open_issuances(app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].state, "pending");
    app.advance(SETTLE_SECS + 1);
    app.app
        .gateway
        .reconcile_issuance(&open[0].order_no, "deleted in KCP's admin")
        .await
        .unwrap();
    app.sandbox.open_gate(gate);
    open[0].order_no.clone()
}

/// Holds KCP's answers to issuances at `gate` until the test opens it.
fn hold_issuance_answers(app: &TestApp, gate: &str) {
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::HoldAnswer { gate: gate.into() })
            .when("card_tx_type", ISSUANCE),
    );
}

/// A registration whose request stalls past the settle delay with KCP's key in hand (the answer
/// held), while the operator, told to delete the key found under the order number in KCP's
/// admin, reconciles its issuance: the key that arrives afterwards is not stored (it would be a
/// key KCP deleted, every charge on it refused, for a merchant told the customer was
/// registered). The merchant is refused, the customer has no key, the key is recorded for its
/// deletion at KCP and deleted there, and the issuance keeps the operator's word.
#[tokio::test]
async fn a_key_whose_issuance_the_operator_reconciled_while_its_request_stalled_is_not_stored_but_deleted_at_kcp(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let gate = "issued-after-reconcile";
    hold_issuance_answers(&app, gate);

    let (body, order_no) = tokio::join!(
        register(&app, &token, "stalled-cust", test_cards::SHINHAN_CREDIT),
        reconcile_while_the_answer_is_held(&app, gate)
    );

    assert_eq!(body["code"], 1, "refused, not registered: {body}");
    assert_eq!(body["response"], Value::Null, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("등록하지 않았습니다")),
        "{body}"
    );
    assert_not_stored_but_deleted_at_kcp(&app, &token, "stalled-cust", &order_no).await;
}

/// What a key issued under `order_no` for `uid`, whose issuance an operator reconciled before it
/// was stored, leaves: the customer has no key, its one row is recorded for its deletion at KCP
/// and deleted there, KCP holds it deleted, and the issuance keeps the operator's word.
async fn assert_not_stored_but_deleted_at_kcp(
    app: &TestApp,
    token: &str,
    uid: &str,
    order_no: &str,
) {
    let (_, found) = app
        .get(&format!("/subscribe/customers/{uid}"), Some(token))
        .await;
    assert_eq!(found["code"], 1, "no key stored: {found}");
    let rows = crate::billing::key_rows(app, uid).await;
    assert_eq!(
        rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        ["replaced"],
        "recorded for its deletion at KCP"
    );
    assert!(rows[0].pg_deleted_at.is_some(), "{:?}", rows[0]);
    let key = kcp_key_under(app, order_no).expect("KCP issued the key");
    assert_eq!(format!("{:?}", key.state), "Deleted");
    let recorded = issuances(app).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].state, "reconciled", "{recorded:?}");
    assert!(open_issuances(app).await.is_empty());
}

/// The same stall on `onetime` keeping its card: the key that arrives after the operator
/// reconciled its issuance is not kept (adopted once the charge is paid, it would be a key KCP
/// deleted) but deleted at KCP, and the charge, which had not been sent, is refused: the payment
/// is failed, KCP charged nothing, and the customer has no key.
#[tokio::test]
async fn a_onetime_whose_key_issuance_the_operator_reconciled_while_it_stalled_is_refused_and_its_key_deleted_at_kcp(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let gate = "kept-after-reconcile";
    hold_issuance_answers(&app, gate);

    let (body, order_no) = tokio::join!(
        onetime_keeping(&app, &token, "ot-reconciled", "stalled-keeper"),
        reconcile_while_the_answer_is_held(&app, gate)
    );

    let (_, found) = app.get("/payments/find/ot-reconciled", Some(&token)).await;
    assert_eq!(found["response"]["status"], "failed", "{body} {found}");
    assert!(
        found["response"]["fail_reason"]
            .as_str()
            .is_some_and(|m| m.contains("등록하지 않았습니다")),
        "{found}"
    );
    assert!(
        app.sandbox.ledger().is_empty(),
        "the charge was never sent: {:?}",
        app.sandbox.ledger()
    );
    // Its deletion waited for the charge it was issued in to settle (failed now): the
    // resolver's pass over retired keys deletes it.
    app.advance(3600);
    app.app.gateway.retry_key_deletions(10).await.unwrap();
    let token = app.token().await;
    assert_not_stored_but_deleted_at_kcp(&app, &token, "stalled-keeper", &order_no).await;
}
