//! What a start refuses or keeps to itself: test-mode merchants on a live instance, master keys
//! that open nothing, the first live merchant's secret, operator commands, the request log.
use std::process::Command;

use base64::Engine;
use kcp_sandbox::TransactionState;
use openport::clock::Clock;
use openport::config::Config;
use openport::service::merchants::{DEMO_IMP_CODE, DEMO_IMP_KEY, DEMO_IMP_SECRET};
use openport::service::secrets::MasterKey;
use openport::App;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::helpers::{
    captured_logs, demo_token_request, fresh_database, future_expiry, kcp_live_credentials,
    kcp_test_credentials, openport_in_test_mode, post_to, spawn_app, spawn_app_with, test_cards,
    ServeProcess, TestApp, SETTLE_SECS,
};

fn b64_key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn key_id(b64: &str) -> String {
    MasterKey::from_config(Some(&SecretString::from(b64.to_string())))
        .unwrap()
        .key_id()
        .to_string()
}

/// Starts an instance on `app`'s database without the test helper's `expect`: the error, if it
/// refuses to start.
async fn start_on(app: &TestApp, adjust: impl FnOnce(&mut Config)) -> anyhow::Result<App> {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: app.database_url.clone(),
        ..Config::default()
    };
    config.background_jobs = false;
    config.sandbox.embedded = Some(false);
    config.kcp.api_base = app
        .app
        .sandbox
        .as_ref()
        .map(|s| format!("http://{}", s.addr));
    adjust(&mut config);
    App::build_with(config, Clock::system(), openport::app::Seeding::Off).await
}

#[tokio::test]
async fn a_database_tried_in_test_mode_gives_its_demo_merchant_no_token_once_test_mode_is_off() {
    // Tried out in test mode (no master key: the public test-mode key), then run live.
    let test = spawn_app().await;
    let test_token = test.token().await;
    let key = b64_key(9);
    let live = test
        .another_instance(move |c| {
            c.test_mode = false;
            c.master_key = Some(SecretString::from(key));
            c.public_url = Some("https://pay.example.com".into());
        })
        .await;

    let (status, body) = live
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = live
        .get("/payments/status/all", Some(test_token.as_str()))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a token got in test mode: {body}"
    );
    let (_, started) = live
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": DEMO_IMP_CODE, "mobile": false, "page_url": "https://shop.example.com/cart",
                   "params": {"pg": "kcp", "pay_method": "card", "merchant_uid": "live-1", "amount": 1000}}),
        )
        .await;
    assert_ne!(started["code"], 0, "no checkout either: {started}");

    // The live instance made its own merchant from KCP_* (set by the helper), with its
    // credentials in a file only its user may read.
    let created = live.app.demo.as_ref().expect("the first live merchant");
    assert!(!created.merchant.test_mode);
    let file = live
        .app
        .credentials_file
        .as_ref()
        .expect("a credentials file");
    assert!(file.starts_with(live.credentials_dir.path()));
    let text = std::fs::read_to_string(file).unwrap();
    let secret = created.imp_secret.expose_secret();
    assert!(text.contains(&format!("imp_secret={secret}\n")), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    live.token_for(&created.merchant.imp_key, secret).await;
    assert!(
        !captured_logs().contains(secret),
        "the secret reached a log line"
    );
}

#[tokio::test]
async fn a_master_key_that_opens_nothing_stored_refuses_to_start_naming_the_key_ids() {
    let (k1, k2) = (b64_key(1), b64_key(2));
    let first_key = k1.clone();
    let first = spawn_app_with(move |c| c.master_key = Some(SecretString::from(first_key))).await;
    first.token().await;

    let wrong = k2.clone();
    let refused = start_on(&first, move |c| {
        c.master_key = Some(SecretString::from(wrong))
    })
    .await
    .err()
    .expect("a master key that opens nothing is refused");
    let message = format!("{refused:#}");
    assert!(message.contains(&key_id(&k1)), "{message}");
    assert!(message.contains(&key_id(&k2)), "{message}");
    assert!(message.contains(DEMO_IMP_CODE), "{message}");
    assert!(
        message.contains("OPENPORT_PREVIOUS_MASTER_KEYS"),
        "{message}"
    );
    for material in [&k1, &k2] {
        assert!(!message.contains(material.as_str()), "{message}");
    }

    // The old key listed as a previous one: it starts, and the right secret gets its token.
    let (current, previous) = (k2.clone(), k1.clone());
    let rotated = first
        .another_instance(move |c| {
            c.master_key = Some(SecretString::from(current));
            c.previous_master_keys = Some(SecretString::from(previous));
        })
        .await;
    rotated.token().await;
}

/// A key that is not a key is refused naming the setting it is in (README: "a configuration
/// error names a secret's setting, never its value"): mid-rotation, a typo in the previous keys
/// must not send the operator to a current key that is fine.
#[tokio::test]
async fn a_malformed_master_key_is_refused_naming_its_setting_and_never_its_value() {
    let test = spawn_app().await;
    let typo = "not-a-key";
    let refused = start_on(&test, move |c| {
        c.master_key = Some(SecretString::from(b64_key(1)));
        c.previous_master_keys = Some(SecretString::from(format!("{},{typo}", b64_key(2))));
    })
    .await
    .err()
    .expect("a malformed previous key is refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains("OPENPORT_PREVIOUS_MASTER_KEYS") && message.contains("key 2"),
        "{message}"
    );
    assert!(!message.contains("OPENPORT_MASTER_KEY:"), "{message}");
    assert!(!message.contains(typo), "{message}");

    let refused = start_on(&test, move |c| {
        c.master_key = Some(SecretString::from(typo));
    })
    .await
    .err()
    .expect("a malformed current key is refused");
    let message = format!("{refused:#}");
    assert!(message.contains("OPENPORT_MASTER_KEY:"), "{message}");
    assert!(!message.contains(typo), "{message}");
}

/// The public test-mode key's base64, as docs/operations.md prints it.
const TEST_MODE_KEY: &str = "b3BlbnBvcnQtdGVzdC1tb2RlLW1hc3Rlci1rZXktMzI=";

#[tokio::test]
async fn a_live_start_whose_master_key_is_the_public_test_mode_key_is_refused_but_it_may_be_a_previous_key(
) {
    let test = spawn_app().await;
    let live = |c: &mut Config| {
        c.test_mode = false;
        c.public_url = Some("https://pay.example.com".into());
        c.admin_token = Some(SecretString::from("a".repeat(32)));
    };
    let refused = start_on(&test, |c| {
        live(c);
        c.master_key = Some(SecretString::from(TEST_MODE_KEY));
    })
    .await
    .err()
    .expect("the public key is refused as a live instance's master key");
    let message = format!("{refused:#}");
    assert!(message.contains("public test-mode key"), "{message}");
    assert!(
        message.contains("OPENPORT_PREVIOUS_MASTER_KEYS"),
        "{message}"
    );
    assert!(!message.contains(TEST_MODE_KEY), "{message}");

    let own = b64_key(9);
    let started = start_on(&test, |c| {
        live(c);
        c.master_key = Some(SecretString::from(own));
        c.previous_master_keys = Some(SecretString::from(TEST_MODE_KEY));
    })
    .await
    .expect("the public key may open what test mode sealed");
    started.shutdown().await;
}

/// A rolling rotation (docs/operations.md "Rotating the master key"): once every instance lists
/// the new key as a previous one (phase 1), instances restarted with it as the current key
/// (phase 2) and those not yet restarted share one database. What either writes (imp_secret
/// hashes at getToken, billing keys) the other opens.
#[tokio::test]
async fn an_instance_still_on_the_old_master_key_keeps_answering_get_token_and_charging_billing_keys_while_another_runs_the_new_one(
) {
    let (k1, k2) = (b64_key(1), b64_key(2));
    let keys = |current: &str, previous: &str| {
        let (current, previous) = (current.to_string(), previous.to_string());
        move |c: &mut Config| {
            c.master_key = Some(SecretString::from(current));
            c.previous_master_keys = Some(SecretString::from(previous));
        }
    };
    // Phase 1 done: A still seals and hashes under K1, and opens K2.
    let old = spawn_app_with(keys(&k1, &k2)).await;
    old.token().await;
    // Phase 2 under way: B has been restarted with K2 current.
    let new = old.another_instance(keys(&k2, &k1)).await;
    let new_token = new.token().await;
    let hash_key = |app: &TestApp| {
        let db = app.app.gateway.db.read.clone();
        async move {
            let m = openport::store::merchants::by_imp_key(&db, DEMO_IMP_KEY)
                .await
                .unwrap()
                .unwrap();
            openport::service::secrets::hash_key_id(&m.imp_secret_hash).map(str::to_string)
        }
    };
    assert_eq!(hash_key(&new).await, Some(key_id(&k2)), "upgraded by B");
    crate::billing::register(&new, &new_token, "fleet-1", test_cards::SHINHAN_CREDIT).await;
    let sealed = &crate::billing::key_rows(&new, "fleet-1").await[0].batch_key_sealed;
    assert_eq!(
        openport::service::secrets::sealed_key_id(sealed),
        Some(key_id(&k2).as_str())
    );

    // A answers getToken on the K2 hash (leaving it under K2) and charges the K2 billing key; B
    // keeps answering.
    let old_token = old.token().await;
    let (_, paid) = crate::billing::again(&old, &old_token, "fleet-1", "fleet-pay-1", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    new.token().await;
    let (_, paid) = crate::billing::again(&new, &new_token, "fleet-1", "fleet-pay-2", 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    old.token().await;
}

/// `c`'s master keys: `current`, and `previous` as the previous ones.
fn master_keys(current: &str, previous: &str) -> impl FnOnce(&mut Config) {
    let (current, previous) = (current.to_string(), previous.to_string());
    move |c: &mut Config| {
        c.master_key = Some(SecretString::from(current));
        c.previous_master_keys = Some(SecretString::from(previous));
    }
}

/// Phase 2 of a rolling rotation, instances on either key answering one merchant's getTokens in
/// turn: the merchant's imp_secret hash is upgraded under the new key once, by the first
/// getToken an instance on it answers, and never written again. An instance still on the old key
/// leaves the hash under the incoming key as it is (it verifies it), where it used to store it
/// under its own key again, so that the hash went back and forth with a write (and the merchant
/// row's lock) at every getToken until the phase ended.
#[tokio::test]
async fn during_a_rolling_rotation_a_merchants_hash_is_written_once_whichever_instance_answers() {
    use sea_orm::{ConnectionTrait, Statement};
    let (k1, k2) = (b64_key(51), b64_key(52));
    let only_k1 = k1.clone();
    let before = spawn_app_with(move |c| c.master_key = Some(SecretString::from(only_k1))).await;
    before.token().await;
    // Phase 1: every instance opens K2. Phase 2 under way: one restarted with K2 current.
    let old = before.another_instance(master_keys(&k1, &k2)).await;
    let new = before.another_instance(master_keys(&k2, &k1)).await;

    // Every write of a merchant's imp_secret_hash is counted, even one of the same value.
    let statements = if new.database_url.starts_with("postgres") {
        vec![
            "CREATE TABLE hash_writes (merchant_id BIGINT)".to_string(),
            "CREATE FUNCTION count_hash_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO hash_writes VALUES (NEW.id); RETURN NEW; END $$"
                .to_string(),
            "CREATE TRIGGER count_hash_write AFTER UPDATE OF imp_secret_hash ON merchants \
             FOR EACH ROW EXECUTE FUNCTION count_hash_write()"
                .to_string(),
        ]
    } else {
        vec![
            "CREATE TABLE hash_writes (merchant_id INTEGER)".to_string(),
            "CREATE TRIGGER count_hash_write AFTER UPDATE OF imp_secret_hash ON merchants \
             BEGIN INSERT INTO hash_writes VALUES (NEW.id); END"
                .to_string(),
        ]
    };
    crate::helpers::execute(&new, statements).await;
    let db = new.app.gateway.db.write.clone();
    let writes = || {
        let db = db.clone();
        async move {
            let row = db
                .query_one(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT COUNT(*) AS n FROM hash_writes",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap()
        }
    };
    let stored_hash = || {
        let db = db.clone();
        async move {
            openport::store::merchants::by_imp_key(&db, DEMO_IMP_KEY)
                .await
                .unwrap()
                .unwrap()
                .imp_secret_hash
        }
    };

    new.token().await;
    assert_eq!(writes().await, 1, "upgraded under K2 once");
    let upgraded = stored_hash().await;
    assert_eq!(
        openport::service::secrets::hash_key_id(&upgraded),
        Some(key_id(&k2).as_str())
    );
    for _ in 0..3 {
        old.token().await;
        new.token().await;
    }
    assert_eq!(
        writes().await,
        1,
        "no getToken after the upgrade wrote the hash"
    );
    assert_eq!(stored_hash().await, upgraded);
}

/// An instance started with a new `OPENPORT_MASTER_KEY` on a database that holds nothing under it
/// yet while it holds values under a previous key warns that the rotation is not applied yet,
/// naming key ids (digests), never a key. An instance whose current key is the one in use (phase
/// 1 of a rotation) says nothing.
#[tokio::test]
async fn a_start_on_a_master_key_nothing_is_stored_under_while_a_previous_one_is_warns_of_the_rotation(
) {
    let (k1, k2) = (b64_key(61), b64_key(62));
    let only_k1 = k1.clone();
    let before = spawn_app_with(move |c| c.master_key = Some(SecretString::from(only_k1))).await;
    before.token().await;
    let _phase_1 = before.another_instance(master_keys(&k1, &k2)).await;
    let _phase_2 = before.another_instance(master_keys(&k2, &k1)).await;
    let logs = captured_logs();
    let warned = |current: &str| {
        logs.lines()
            .filter(|l| l.contains("master-key rotation not applied yet"))
            .find(|l| l.contains(&format!("current_key_id={}", key_id(current))))
            .map(str::to_string)
    };
    let warning = warned(&k2).expect("the instance on K2 warns");
    assert!(
        warning.contains(&format!("previous_key_ids={}", key_id(&k1))),
        "{warning}"
    );
    assert!(warning.contains("openport reseal"), "{warning}");
    assert_eq!(warned(&k1), None, "K1 holds the stored values");
    assert!(
        !logs.contains(&k1) && !logs.contains(&k2),
        "a key was logged"
    );
}

/// getToken with a hash under a previous key stores it under the current key only if the row
/// still holds the hash it read. When it does not, what the row holds now decides: during a
/// rolling rotation another instance may just have stored the same secret's hash under its own
/// current key, and that getToken must not fail. The trigger drops the write, as if that had
/// happened (the row keeps a hash of the same secret, not the one this instance computed).
#[tokio::test]
async fn a_get_token_whose_hash_upgrade_is_overtaken_by_another_instance_still_gets_a_token() {
    let (k1, k2) = (b64_key(1), b64_key(2));
    let first_key = k1.clone();
    let first = spawn_app_with(move |c| c.master_key = Some(SecretString::from(first_key))).await;
    first.token().await;
    let (current, previous) = (k2.clone(), k1.clone());
    let rotated = first
        .another_instance(move |c| {
            c.master_key = Some(SecretString::from(current));
            c.previous_master_keys = Some(SecretString::from(previous));
        })
        .await;
    let statements = if rotated.database_url.starts_with("postgres") {
        vec![
            "CREATE FUNCTION keep_hash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.imp_secret_hash <> OLD.imp_secret_hash THEN RETURN NULL; END IF; \
             RETURN NEW; END $$"
                .to_string(),
            "CREATE TRIGGER keep_hash BEFORE UPDATE ON merchants FOR EACH ROW \
             EXECUTE FUNCTION keep_hash()"
                .to_string(),
        ]
    } else {
        vec!["CREATE TRIGGER keep_hash BEFORE UPDATE ON merchants \
              WHEN NEW.imp_secret_hash <> OLD.imp_secret_hash BEGIN SELECT RAISE(IGNORE); END"
            .to_string()]
    };
    crate::helpers::execute(&rotated, statements).await;
    rotated.token().await;
}

/// `openport reseal` writes back only over the value it read (PostgreSQL, where a change can land
/// between its read and its write): a webhook secret rotated meanwhile keeps its new value,
/// instead of the old one resealed (webhooks then signed with a secret the merchant dropped).
#[tokio::test]
async fn reseal_leaves_a_secret_changed_while_it_runs_as_it_was_changed() {
    use openport::store::entity::merchant;
    use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
    let (k1, k2) = (b64_key(1), b64_key(2));
    let first_key = k1.clone();
    let first = spawn_app_with(move |c| c.master_key = Some(SecretString::from(first_key))).await;
    if !first.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the two writes one after the other
    }
    let old_secret = first.app.gateway.secrets.seal(b"whsec_old");
    first
        .app
        .gateway
        .db
        .write
        .execute_unprepared(&format!(
            "UPDATE merchants SET webhook_secret_sealed = '{old_secret}' WHERE imp_key = '{DEMO_IMP_KEY}'"
        ))
        .await
        .unwrap();
    let (current, previous) = (k2.clone(), k1.clone());
    let rotated = first
        .another_instance(move |c| {
            c.master_key = Some(SecretString::from(current));
            c.previous_master_keys = Some(SecretString::from(previous));
        })
        .await;
    let gateway = rotated.app.gateway.clone();
    let lock = gateway.db.write.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE merchants IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let resealing = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.reseal_secrets().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !resealing.is_finished(),
        "reseal's write waits for the lock"
    );
    let new_secret = gateway.secrets.seal(b"whsec_new");
    lock.execute_unprepared(&format!(
        "UPDATE merchants SET webhook_secret_sealed = '{new_secret}' WHERE imp_key = '{DEMO_IMP_KEY}'"
    ))
    .await
    .unwrap();
    lock.commit().await.unwrap();
    resealing.await.unwrap().unwrap();

    let m = merchant::Entity::find()
        .filter(merchant::Column::ImpKey.eq(DEMO_IMP_KEY))
        .one(&gateway.db.read)
        .await
        .unwrap()
        .unwrap();
    let kept = gateway
        .secrets
        .open_string(m.webhook_secret_sealed.as_deref().unwrap())
        .unwrap();
    assert_eq!(kept, "whsec_new");
    // The merchant's other secrets were resealed under the new key.
    assert!(!gateway.secrets.needs_reseal(&m.kcp_private_key_sealed));
}

#[tokio::test]
async fn a_hash_left_under_a_dropped_key_refuses_to_start_until_the_merchant_gets_a_new_secret() {
    let (k1, k2) = (b64_key(1), b64_key(2));
    let first_key = k1.clone();
    let first = spawn_app_with(move |c| c.master_key = Some(SecretString::from(first_key))).await;
    first.token().await;
    let (current, previous) = (k2.clone(), k1.clone());
    let rotated = first
        .another_instance(move |c| {
            c.master_key = Some(SecretString::from(current));
            c.previous_master_keys = Some(SecretString::from(previous));
        })
        .await;
    // Resealed, but the merchant has not called getToken since: its hash is under the old key.
    let report = rotated.app.gateway.reseal_secrets().await.unwrap();
    assert_eq!(
        report.hashes_under_old_keys,
        vec![DEMO_IMP_CODE.to_string()]
    );

    let only_new = k2.clone();
    let refused = start_on(&first, move |c| {
        c.master_key = Some(SecretString::from(only_new))
    })
    .await
    .err()
    .expect("the merchant could never log in again");
    let message = format!("{refused:#}");
    assert!(message.contains(&key_id(&k1)), "{message}");
    assert!(
        message.contains(&format!("merchant {DEMO_IMP_CODE}: imp_secret hash")),
        "{message}"
    );
    assert!(
        message.contains("openport merchant new-secret"),
        "{message}"
    );

    let secrets = MasterKey::from_config(Some(&SecretString::from(k2.clone()))).unwrap();
    let renewed = openport::service::merchants::new_imp_secret(
        &first.app.gateway.db,
        &secrets,
        true,
        DEMO_IMP_CODE,
    )
    .await
    .unwrap();
    let only_new = k2.clone();
    let started = first
        .another_instance(move |c| c.master_key = Some(SecretString::from(only_new)))
        .await;
    started
        .token_for(DEMO_IMP_KEY, renewed.imp_secret.expose_secret())
        .await;
    let (status, _) = started
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old secret is gone");
}

#[tokio::test]
async fn the_request_log_names_the_route_never_the_checkout_sessions_token() {
    let app = spawn_app().await;
    let token = format!("sess{}", openport::domain::ids::random_hex(12));
    let res = app
        .http
        .get(app.url(&format!("/checkout/session/{token}")))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let logs = captured_logs();
    assert!(
        logs.contains("route=/checkout/session/{token}"),
        "the route is logged"
    );
    assert!(!logs.contains(&token), "the session token reached the logs");
}

/// README's first start sets no `OPENPORT_ADMIN_TOKEN`, and README then has the newcomer call
/// `/admin/*`: every call was a bare 401 `Unauthorized`, as for a mistyped token, with nothing in
/// the log. The start says the operator API is off, and each operator call's 401 names the
/// setting, whatever token comes with it. The merchant endpoints, and an instance with an
/// operator token, keep the bare `Unauthorized`.
#[tokio::test]
async fn an_instance_without_an_operator_token_says_its_operator_api_is_off_at_start_and_in_each_401(
) {
    use crate::helpers::ADMIN_TOKEN;
    let off = spawn_app_with(|c| c.admin_token = None).await;
    let on = spawn_app().await;
    let logged_by = |app: &TestApp| {
        let addr = format!("addr={}", app.app.addr);
        captured_logs()
            .lines()
            .filter(|l| l.contains(&addr))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let said_off = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains(" INFO "))
            .filter(|l| l.contains("operator API off: OPENPORT_ADMIN_TOKEN is not set"))
            .count()
    };
    let (off_lines, on_lines) = (logged_by(&off), logged_by(&on));
    assert_eq!(said_off(&off_lines), 1, "{off_lines:#?}");
    assert_eq!(said_off(&on_lines), 0, "{on_lines:#?}");

    let send = |app: &TestApp, method: &str, path: &str, token: Option<&str>| {
        let mut req = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .json(&json!({"url": "https://shop.example.com/hook"}));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        async move { TestApp::read(req.send().await.expect("request")).await }
    };
    let merchant_token = off.token().await;
    for (method, path) in [
        ("GET", "/admin/status"),
        ("GET", "/admin/merchants"),
        ("GET", "/admin/merchants/1/webhook"),
        ("PUT", "/admin/merchants/1/webhook"),
        ("GET", "/admin/merchants/1/redirect-origins"),
        ("PUT", "/admin/merchants/1/redirect-origins"),
        ("GET", "/admin/webhooks"),
        ("POST", "/admin/webhooks/1/resend"),
    ] {
        for token in [
            None,
            Some("whatever"),
            Some(ADMIN_TOKEN),
            Some(merchant_token.as_str()),
        ] {
            let (status, body) = send(&off, method, path, token).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}: {body}"
            );
            assert_eq!(body["code"], -1, "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("OPENPORT_ADMIN_TOKEN")),
                "{method} {path} {token:?}: {body}"
            );
        }
        let (status, body) = send(&on, method, path, Some("whatever")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(body["message"], "Unauthorized", "{method} {path}");
    }
    for token in [None, Some("whatever")] {
        let (status, body) = off.get("/payments/status/paid", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["message"], "Unauthorized", "{body}");
    }
}

/// An operator's logs go to a file, journald or a collector, not a terminal: they are plain text,
/// without the colour codes a terminal shows.
#[tokio::test]
async fn logs_written_to_anything_but_a_terminal_hold_no_colour_codes() {
    let (database_url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let served = ServeProcess::start(openport_in_test_mode(dir.path(), &database_url, &["serve"]));
    let printed = served.printed();
    drop(served);
    assert!(
        printed.contains(" INFO "),
        "a log line was printed: {printed}"
    );
    assert!(!printed.contains('\u{1b}'), "colour codes: {printed:?}");
}

/// An `openport` process configured as a single live merchant's setup (`KCP_*`) on a fresh
/// SQLite database in `dir`, which is also its working directory.
fn openport_command(dir: &std::path::Path, args: &[&str]) -> Command {
    let (site_cd, cert, key_path, passphrase) = kcp_live_credentials();
    let database_url = format!("sqlite://{}?mode=rwc", dir.join("openport.db").display());
    let mut command = openport_in_test_mode(dir, &database_url, args);
    command
        .env("OPENPORT_TEST_MODE", "false")
        .env("OPENPORT_MASTER_KEY", b64_key(5))
        .env("OPENPORT_PUBLIC_URL", "https://pay.example.com")
        .env("KCP_SITE_CD", site_cd)
        .env("KCP_CERT_INFO", cert)
        .env("KCP_PRIVATE_KEY_PATH", key_path)
        .env("KCP_PRIVATE_KEY_PASSWORD", passphrase);
    command
}

async fn merchants_in(dir: &std::path::Path) -> Vec<openport::store::entity::merchant::Model> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("openport.db").display());
    let db = openport::store::Db::connect(&url).await.unwrap();
    openport::store::merchants::all(&db.read).await.unwrap()
}

#[tokio::test]
async fn serve_writes_a_live_merchants_first_credentials_to_a_file_never_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let served = ServeProcess::start(openport_command(dir.path(), &["serve"]));
    let stdout = served.stdout.clone();
    drop(served);
    assert!(stdout.contains("openport listening on"), "{stdout}");

    let merchants = merchants_in(dir.path()).await;
    assert_eq!(merchants.len(), 1, "{stdout}");
    let m = &merchants[0];
    let file = dir
        .path()
        .join(format!("openport-credentials-{}.txt", m.imp_code));
    assert!(
        stdout.contains(&file.file_name().unwrap().to_string_lossy().to_string()),
        "the file is named: {stdout}"
    );
    let text = std::fs::read_to_string(&file).expect("the credentials file");
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("imp_secret="))
        .expect("the imp_secret");
    assert_eq!(secret.len(), 80);
    assert!(!stdout.contains(secret), "the secret reached stdout");
    assert!(text.contains(&format!("imp_key={}\n", m.imp_key)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

/// Seed 000 sets `KCP_CERT_INFO` to the certificate on one line, as KCP hands it out
/// (spec/kcp.md §3); the strict PEM decoder refused it and the start stopped.
#[tokio::test]
async fn a_single_merchant_setup_with_kcp_cert_info_on_one_line_starts_and_pays() {
    let (cert, key_path, passphrase) = kcp_test_credentials();
    let one_line: String = cert.lines().map(str::trim).collect();
    assert!(one_line.starts_with("-----BEGIN CERTIFICATE-----MII") && !one_line.contains('\n'));
    let (database_url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = openport_in_test_mode(dir.path(), &database_url, &["serve"]);
    command
        .env("KCP_SITE_CD", "T0000")
        .env("KCP_CERT_INFO", &one_line)
        .env("KCP_PRIVATE_KEY_PATH", key_path)
        .env("KCP_PRIVATE_KEY_PASSWORD", passphrase);
    let served = ServeProcess::start(command);

    let (status, body) = demo_token_request(&served).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["response"]["access_token"].as_str().unwrap();
    // The embedded sandbox approves only a kcp_cert_info its CA issued for T0000: this is the
    // configured certificate reaching KCP's side.
    let (status, body) = post_to(
        &served,
        "/subscribe/payments/onetime",
        Some(token),
        json!({"merchant_uid": "one-line-1", "amount": 1000,
               "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
               "birth": "800101", "pwd_2digit": "00", "name": "테스트 상품"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["pg_id"], "T0000", "{body}");
}

#[tokio::test]
async fn operator_commands_never_make_the_first_merchant() {
    let dir = tempfile::tempdir().unwrap();
    // A database with openport's schema and no merchant (on a new one these commands are refused,
    // making nothing: cli::operator_commands_refuse_a_new_database_but_merchant_create_…).
    let migrated = openport_command(dir.path(), &["migrate"])
        .output()
        .expect("openport runs");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    for args in [
        &["attempt", "list"][..],
        &["reseal"],
        &["attempt", "list", "--conflicts"],
    ] {
        let out = openport_command(dir.path(), args)
            .output()
            .expect("openport runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            merchants_in(dir.path()).await.is_empty(),
            "{args:?} made a merchant whose secret nobody saw"
        );
    }
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("openport-credentials"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test]
async fn a_live_instance_leaves_a_test_mode_merchants_due_schedules_and_open_attempts_alone() {
    let test = spawn_app().await;
    let token = test.token().await;
    // An approval KCP made after openport stopped waiting, and a schedule that falls due.
    crate::reliability::approved_after_the_timeout(&test, &token, "open-1").await;
    crate::billing::register(&test, &token, "c-1", test_cards::SHINHAN_CREDIT).await;
    let at = chrono::Utc::now().timestamp() + 10;
    let (_, body) = test
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            json!({"customer_uid": "c-1", "schedules": [{"merchant_uid": "s-1", "schedule_at": at, "amount": 1000}]}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");

    // The same database run live, with the sandbox as its KCP: were it to act, the schedule
    // would be charged and the late approval net-cancelled. It keeps the public test-mode key
    // (docs/operations.md), so it could open what was sealed for the demo merchant.
    let key = b64_key(9);
    let live = test
        .another_instance(move |c| {
            c.test_mode = false;
            c.master_key = Some(SecretString::from(key));
            c.previous_master_keys = Some(SecretString::from(TEST_MODE_KEY));
            c.public_url = Some("https://pay.example.com".into());
        })
        .await;
    live.advance(SETTLE_SECS + 11);
    assert_eq!(live.app.gateway.run_due_schedules(10).await.unwrap(), 0);
    live.app.gateway.resolve_due(10).await.unwrap();
    let ledger = test.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "nothing charged at KCP");
    assert_eq!(ledger[0].state, TransactionState::Approved, "nor cancelled");
    let (_, open) = test.get("/payments/find/open-1", Some(&token)).await;
    assert_eq!(open["response"]["status"], "ready", "{open}");
    let (_, s) = test
        .get("/subscribe/payments/schedule/s-1", Some(&token))
        .await;
    assert_eq!(s["response"]["schedule_status"], "scheduled", "{s}");

    // An instance in test mode still does both.
    test.advance(SETTLE_SECS + 11);
    assert_eq!(test.app.gateway.run_due_schedules(10).await.unwrap(), 1);
    test.resolve_all().await;
    let token = test.token().await;
    let (_, open) = test.get("/payments/find/open-1", Some(&token)).await;
    assert_eq!(open["response"]["status"], "failed", "{open}");
    let (_, s) = test
        .get("/subscribe/payments/schedule/s-1", Some(&token))
        .await;
    assert_eq!(s["response"]["payment_status"], "paid", "{s}");
    test.assert_ledger_agrees().await;
}

/// The other way round: an instance in test mode sharing the database leaves a live merchant's
/// background work to live instances. Its calls go to the sandbox, which knows none of the live
/// merchant's billing keys or trades: a due schedule would be charged there and fail (and be
/// announced failed), and an open attempt asked about there would be "not found".
#[tokio::test]
async fn an_instance_in_test_mode_leaves_a_live_merchants_due_schedules_and_webhooks_alone() {
    let test = spawn_app().await;
    let (imp_key, imp_secret) = test.second_merchant().await;
    let token = test.token_for(&imp_key, &imp_secret).await;
    crate::billing::register(&test, &token, "live-c", test_cards::SHINHAN_CREDIT).await;
    let at = chrono::Utc::now().timestamp() + 10;
    let (_, body) = test
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            json!({"customer_uid": "live-c", "schedules": [{"merchant_uid": "live-s", "schedule_at": at, "amount": 1000}]}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    let paid = test.paid(&token, "live-paid", 1000).await;
    // A webhook of this merchant waiting to be sent, and the merchant now a live one (as if made
    // by `openport merchant create` on a live instance).
    let payment = openport::store::payments::by_imp_uid(
        &test.app.gateway.db.read,
        None,
        paid["imp_uid"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let txn = test.app.gateway.db.write.begin().await.unwrap();
    test.app
        .gateway
        .enqueue_webhook(&txn, &payment, "paid", None)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    crate::helpers::make_live(&test, &imp_key).await;

    test.advance(11);
    assert_eq!(test.app.gateway.run_due_schedules(10).await.unwrap(), 0);
    assert!(
        test.app.gateway.due_webhooks(10).await.unwrap().is_empty(),
        "the live merchant's webhook is left to a live instance"
    );
    let schedule = openport::store::billing::schedule_by_uid(
        &test.app.gateway.db.read,
        payment.merchant_id,
        "live-s",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(schedule.status, "scheduled", "{schedule:?}");
    assert_eq!(test.sandbox.ledger().len(), 1, "only the key-in payment");
}

/// A webhook secret that a rotation replaced signs for a day beside the new one, sealed like it:
/// `openport reseal` reseals it too, so the old master key can go once reseal reports nothing
/// left, and webhooks still carry both signatures. Once its day is over it is never opened
/// again, and a start does not ask for the key it was sealed with.
#[tokio::test]
async fn a_replaced_webhook_secret_is_resealed_and_an_expired_one_needs_no_key() {
    use crate::helpers::{Receiver, ADMIN_TOKEN};
    use base64::engine::general_purpose::STANDARD as B64;
    let (k1, k2) = (b64_key(1), b64_key(2));
    let first_key = k1.clone();
    let first = spawn_app_with(move |c| c.master_key = Some(SecretString::from(first_key))).await;
    let receiver = Receiver::start().await;
    let merchant_id = first.app.demo.as_ref().unwrap().merchant.id;
    let (old, new) = ([1u8; 32], [2u8; 32]);
    for key in [old, new] {
        let (status, body) = first
            .put(
                &format!("/admin/merchants/{merchant_id}/webhook"),
                ADMIN_TOKEN,
                json!({"url": receiver.url("/hook"), "secret": format!("whsec_{}", B64.encode(key))}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (current, previous) = (k2.clone(), k1.clone());
    let rotated = first
        .another_instance(move |c| {
            c.master_key = Some(SecretString::from(current));
            c.previous_master_keys = Some(SecretString::from(previous));
        })
        .await;
    rotated.token().await; // the imp_secret hash moves under the new key
    let report = rotated.app.gateway.reseal_secrets().await.unwrap();
    assert!(report.hashes_under_old_keys.is_empty(), "{report:?}");

    let only_new = k2.clone();
    let dropped = first
        .another_instance(move |c| c.master_key = Some(SecretString::from(only_new)))
        .await;
    let gateway = &dropped.app.gateway;
    assert_eq!(gateway.unknown_master_keys().await.unwrap(), None);
    let token = dropped.token().await;
    dropped.paid(&token, "rotated-master-key", 1000).await;
    assert_eq!(gateway.deliver_due_webhooks(10).await.unwrap(), 1);
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].signers(&[&new, &old]), [0, 1], "both secrets open");

    // A previous secret under a key nobody has: asked for while it signs, not once it is over.
    let lost = MasterKey::from_config(Some(&SecretString::from(b64_key(3)))).unwrap();
    let set_previous = |until: i64| {
        format!(
            "UPDATE merchants SET webhook_previous_secret_sealed = '{}', \
             webhook_previous_secret_until = {until} WHERE id = {merchant_id}",
            lost.seal(format!("whsec_{}", B64.encode(old)).as_bytes())
        )
    };
    use sea_orm::ConnectionTrait;
    let now = gateway.clock.unix();
    gateway
        .db
        .write
        .execute_unprepared(&set_previous(now + 3_600))
        .await
        .unwrap();
    let unknown = gateway
        .unknown_master_keys()
        .await
        .unwrap()
        .expect("asked for");
    assert!(
        unknown.to_string().contains("previous webhook secret"),
        "{unknown}"
    );
    gateway
        .db
        .write
        .execute_unprepared(&set_previous(now - 1))
        .await
        .unwrap();
    assert_eq!(gateway.unknown_master_keys().await.unwrap(), None);
}

/// A deploy starting replicas together: each one read "no live merchant yet" and made its own
/// (several live merchants for one KCP site, each with its own credentials file). Starts wait for
/// each other now (store/startup_lock.rs), so the second one finds the first one's merchant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_starting_at_once_make_one_live_merchant() {
    let test = std::sync::Arc::new(spawn_app().await);
    let live = |c: &mut Config| {
        c.test_mode = false;
        c.master_key = Some(SecretString::from(b64_key(7)));
        c.public_url = Some("https://pay.example.com".into());
    };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let test = test.clone();
            tokio::spawn(async move { test.another_instance(live).await })
        })
        .collect();
    let mut instances = Vec::new();
    for start in starts {
        instances.push(start.await.unwrap());
    }
    let made: Vec<_> = instances
        .iter()
        .filter_map(|i| i.app.demo.as_ref())
        .collect();
    assert_eq!(made.len(), 1, "one start made the live merchant");
    let db = openport::store::Db::connect(&test.database_url)
        .await
        .unwrap();
    let live_merchants: Vec<_> = openport::store::merchants::all(&db.read)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.test_mode)
        .collect();
    assert_eq!(live_merchants.len(), 1, "{live_merchants:?}");
    assert_eq!(live_merchants[0].imp_key, made[0].merchant.imp_key);
}

/// A start queued behind another one's startup lock (a start stuck in its migrations, an operator
/// command) logged nothing after "connecting" and waited without end: an orchestrator saw
/// instances failing their liveness checks with no word of what they waited for. Now it logs a
/// WARN every 10 s naming the session that holds the lock, and starts as soon as it is released.
/// Only PostgreSQL has a lock another session can hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waiting_for_the_startup_lock_names_the_session_holding_it_and_starts_once_it_is_released(
) {
    use sea_orm::sqlx::{self, Connection};
    let test = spawn_app().await;
    if !test.database_url.starts_with("postgres") {
        return;
    }
    let mut holder = sqlx::PgConnection::connect(&test.database_url)
        .await
        .unwrap();
    sqlx::query("SET application_name = 'held-by-the-test'")
        .execute(&mut holder)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(openport::store::startup_lock::PG_KEY)
        .execute(&mut holder)
        .await
        .unwrap();

    let start = start_on(&test, |_| {});
    tokio::pin!(start);
    let named = format!("pid={pid} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let line = loop {
        tokio::select! {
            started = &mut start => panic!("started beside the lock's holder: {:?}", started.err()),
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        let logs = captured_logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("startup lock") && l.contains(&named))
        {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line named the holder's pid {pid}"
        );
    };
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("held-by-the-test"), "{line}");

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(openport::store::startup_lock::PG_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    let started = tokio::time::timeout(std::time::Duration::from_secs(10), start)
        .await
        .expect("starts once the lock is released");
    started.expect("starts");
}

/// A start whose migrations wait on a table lock another session holds (an older instance left
/// running, a session idle in a transaction) hung without a word, and every start queued behind
/// its startup lock with it. The migrations' transaction now has a lock timeout (60 s unless the
/// role or the URL sets one, as here to keep the test short): the start fails naming the wait.
#[tokio::test]
async fn a_start_whose_migrations_wait_on_another_sessions_table_lock_fails_naming_the_wait() {
    use sea_orm::sqlx::{self, Connection};
    let test = spawn_app().await;
    if !test.database_url.starts_with("postgres") {
        return;
    }
    let name = test.database_url.rsplit('/').next().unwrap().to_string();
    let mut admin = sqlx::PgConnection::connect(&test.database_url)
        .await
        .unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} SET lock_timeout = '1s'"))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut other = sqlx::PgConnection::connect(&test.database_url)
        .await
        .unwrap();
    let mut held = other.begin().await.unwrap();
    sqlx::query("LOCK TABLE seaql_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();

    let started = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        start_on(&test, |c| c.upgrade_schema = true),
    )
    .await
    .expect("the start does not hang");
    let Err(e) = started else {
        panic!("started beside a lock on its migrations' table");
    };
    let e = format!("{e:#}");
    assert!(e.contains("another session holds"), "{e}");
    assert!(e.contains("lock_timeout"), "{e}");

    held.rollback().await.unwrap();
    start_on(&test, |c| c.upgrade_schema = true)
        .await
        .expect("starts once the lock is gone");
}

/// An openport killed while its migrations ran (a deploy's stop timeout during a long index
/// build) left its backend running the statement, and holding its locks, until the backend next
/// wrote to the dead connection: the next start waited behind them. The migrations' session now
/// checks every 5 s that its openport is still there (`client_connection_check_interval`): a
/// start killed while its migration waits for a table lock leaves no backend waiting, long
/// before the lock timeout (60 s) would have ended the wait.
#[tokio::test]
async fn a_start_killed_while_its_migrations_run_leaves_no_backend_running_them() {
    use sea_orm::sqlx::{self, Connection};
    async fn waiting_for_a_lock(watcher: &mut sqlx::PgConnection, database: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(database)
        .fetch_one(watcher)
        .await
        .unwrap()
    }
    let test = spawn_app().await;
    if !test.database_url.starts_with("postgres") {
        return;
    }
    let name = test.database_url.rsplit('/').next().unwrap().to_string();
    let mut watcher = sqlx::PgConnection::connect(&test.database_url)
        .await
        .unwrap();
    let mut other = sqlx::PgConnection::connect(&test.database_url)
        .await
        .unwrap();
    let mut held = other.begin().await.unwrap();
    sqlx::query("LOCK TABLE seaql_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut start = openport_in_test_mode(dir.path(), &test.database_url, &["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the openport binary starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while waiting_for_a_lock(&mut watcher, &name).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the start's migration never waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    start.kill().unwrap();
    start.wait().unwrap();

    let killed = std::time::Instant::now();
    while waiting_for_a_lock(&mut watcher, &name).await > 0 {
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(20),
            "the killed start's migration still waits for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    held.rollback().await.unwrap();
}

/// A live instance (test mode off) on KCP's staging host started without a word: its payments
/// go to KCP's test system, no card is charged, and each is recorded as live and announced paid.
/// Allowed (a live rehearsal), but said at start.
#[tokio::test]
async fn a_live_start_on_kcps_staging_host_warns_that_its_payments_go_to_kcps_test_system() {
    let _live = spawn_app_with(|c| {
        c.test_mode = false;
        c.master_key = Some(SecretString::from(
            "DQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0=",
        ));
        c.public_url = Some("https://pay.example.com".into());
        c.kcp.api_base = Some("https://stg-spl.kcp.co.kr".into());
    })
    .await;
    let logs = captured_logs();
    assert!(
        logs.contains("names KCP's staging host stg-spl.kcp.co.kr")
            && logs.contains("recorded as live"),
        "{logs}"
    );
}
