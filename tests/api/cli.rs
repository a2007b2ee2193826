//! The operator commands run as the built `openport` binary, as an operator runs them: `migrate`,
//! `merchant create` / `merchant list` / `merchant set-group-id`, `attempt conflict`,
//! `attempt confirm-absent`, `attempt reconciled`, `payment recheck`, `sandbox issue-cert` and
//! `sandbox fault` (only `merchant create` and `migrate` make a new database; the others refuse one).
use std::path::Path;
use std::process::Output;

use migration::MigratorTrait;
use openport::pg::kcp::{KcpCertificate, KcpSigner};
use reqwest::StatusCode;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, FromQueryResult, Statement,
};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{
    demo_token_request, fresh_database, kcp_test_credentials, openport_in_test_mode, post_to,
    ServeProcess,
};

/// Runs the binary to completion; panics with its output when it fails.
async fn run_ok(dir: &Path, database_url: &str, args: &[&str]) -> String {
    let out = run(dir, database_url, args).await;
    assert!(
        out.status.success(),
        "openport {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs the binary to completion off the test's runtime thread, which may be serving what the
/// command calls (the sandbox of `sandbox fault`).
async fn run(dir: &Path, database_url: &str, args: &[&str]) -> Output {
    let mut command = openport_in_test_mode(dir, database_url, args);
    tokio::task::spawn_blocking(move || command.output().expect("the openport binary runs"))
        .await
        .unwrap()
}

fn statement(db: &DatabaseConnection, sql: &str) -> Statement {
    Statement::from_string(db.get_database_backend(), sql)
}

/// Every table, column and index of the database, one line each, in a stable order: what a
/// second `migrate` must leave exactly as it was.
async fn schema(db: &DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT type || ' ' || name || ' ' || COALESCE(sql, '') AS line FROM sqlite_master \
             ORDER BY type, name"
        }
        _ => {
            "SELECT table_name::text || '.' || column_name::text || ' ' || data_type::text AS line \
             FROM information_schema.columns WHERE table_schema = 'public' \
             UNION ALL SELECT indexdef AS line FROM pg_indexes WHERE schemaname = 'public' \
             ORDER BY line"
        }
    };
    db.query_all(statement(db, sql))
        .await
        .expect("schema query")
        .iter()
        .map(|row| row.try_get::<String>("", "line").expect("line"))
        .collect()
}

async fn applied_migrations(db: &DatabaseConnection) -> i64 {
    db.query_one(statement(db, "SELECT COUNT(*) AS n FROM seaql_migrations"))
        .await
        .expect("seaql_migrations exists")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("a count")
}

#[tokio::test]
async fn migrate_creates_the_schema_in_an_empty_database_and_a_second_run_changes_nothing() {
    let (url, _db_dir) = fresh_database().await;
    // On SQLite: an empty file that exists, opened without `mode=rwc`, as an operator's `touch`ed
    // database would be.
    let url = match openport::store::sqlite_file(&url) {
        Some(file) => {
            std::fs::File::create(&file).unwrap();
            format!("sqlite://{}", file.display())
        }
        None => url,
    };
    let dir = tempfile::tempdir().unwrap();

    let first = run_ok(dir.path(), &url, &["migrate"]).await;
    let db = Database::connect(&url).await.unwrap();
    let after_first = schema(&db).await;
    let migrations = migration::Migrator::migrations().len() as i64;
    assert!(
        first.contains(&format!("{migrations} migrations applied")),
        "{first}"
    );
    assert_eq!(applied_migrations(&db).await, migrations);
    for table in ["merchants", "payments", "pg_attempts", "access_tokens"] {
        assert!(
            after_first.iter().any(|line| line.contains(table)),
            "no {table} in {after_first:#?}"
        );
    }

    let second = run_ok(dir.path(), &url, &["migrate"]).await;
    assert!(second.contains("no migrations pending"), "{second}");
    assert_eq!(schema(&db).await, after_first);
    assert_eq!(applied_migrations(&db).await, migrations);
}

/// Only `merchant create` makes a new database (before any start). The other operator commands
/// work on the serving instance's database: on a new one (the default `./openport.db` of a shell
/// in another directory, `DATABASE_URL` unset or pointing elsewhere) they made it and answered
/// "nothing" with exit 0 (runbook review, finding 1: `schedule list --due` before unpausing a
/// restored instance's scheduler, `attempt list`); now they are refused, naming the database and
/// making nothing.
#[tokio::test]
async fn operator_commands_refuse_a_new_database_but_merchant_create_and_never_upgrade_one_in_use()
{
    let dir = tempfile::tempdir().unwrap();
    let migrations = migration::Migrator::migrations();
    let newest = migrations.last().expect("migrations").name().to_string();

    let (new_url, new_dir) = fresh_database().await;
    for args in [
        &["merchant", "list"][..],
        &["attempt", "list"],
        &["schedule", "list", "--due"],
        &["reseal"],
    ] {
        let out = run(dir.path(), &new_url, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran on a new database");
        assert!(
            stderr.contains("holds no openport data") && stderr.contains("DATABASE_URL"),
            "{args:?}: {stderr}"
        );
    }
    if let Some(new_dir) = &new_dir {
        let made: Vec<_> = std::fs::read_dir(new_dir.path()).unwrap().collect();
        assert!(made.is_empty(), "no file made: {made:?}");
    } else {
        let new_db = Database::connect(&new_url).await.unwrap();
        let tables = new_db
            .query_one(statement(
                &new_db,
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(tables, 0, "no table made");
    }
    // The first command on a new database: `merchant create` makes its schema.
    run_ok(
        dir.path(),
        &new_url,
        &["merchant", "create", "--name", "first", "--json"],
    )
    .await;
    let new_db = Database::connect(&new_url).await.unwrap();
    assert_eq!(applied_migrations(&new_db).await, migrations.len() as i64);
    run_ok(dir.path(), &new_url, &["merchant", "list"]).await;

    // A database in use by an older version: one migration short.
    let (url, _db_dir) = fresh_database().await;
    let db = Database::connect(&url).await.unwrap();
    let older = u32::try_from(migrations.len() - 1).unwrap();
    migration::Migrator::up(&db, Some(older)).await.unwrap();
    let before = schema(&db).await;
    for args in [
        &["merchant", "list"][..],
        &["attempt", "list"],
        &[
            "merchant",
            "set-group-id",
            "--imp-code",
            "imp00000000",
            "--kcp-group-id",
            "G1",
        ],
    ] {
        let out = run(dir.path(), &url, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran on a database in use");
        assert!(
            stderr.contains(&newest) && stderr.contains("openport migrate"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        schema(&db).await,
        before,
        "an operator command upgraded the schema"
    );
    assert_eq!(applied_migrations(&db).await, i64::from(older));

    // The upgrade is the operator's own step; the commands run after it.
    run_ok(dir.path(), &url, &["migrate"]).await;
    assert_eq!(applied_migrations(&db).await, migrations.len() as i64);
    run_ok(dir.path(), &url, &["merchant", "list"]).await;
}

#[tokio::test]
async fn merchant_create_prints_the_secret_once_keeps_only_its_hash_and_the_secret_gets_a_token() {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();

    let printed = run_ok(
        dir.path(),
        &url,
        &["merchant", "create", "--name", "CLI shop", "--json"],
    )
    .await;
    assert_eq!(printed.lines().count(), 1, "one JSON line: {printed}");
    let created: Value = serde_json::from_str(&printed).expect("JSON");
    let mut fields: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["imp_code", "imp_key", "imp_secret", "site_cd", "test_mode"]
    );
    let field = |name: &str| created[name].as_str().unwrap().to_string();
    let (imp_code, imp_key, secret) = (field("imp_code"), field("imp_key"), field("imp_secret"));
    assert_eq!(field("site_cd"), "T0000", "the default site code");
    assert!(secret.len() >= 32, "{secret}");
    assert_eq!(printed.matches(&secret).count(), 1);

    // Stored hashed: no column of the row holds the secret.
    let db = Database::connect(&url).await.unwrap();
    let rows = sea_orm::JsonValue::find_by_statement(statement(&db, "SELECT * FROM merchants"))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let hash = rows[0]["imp_secret_hash"].as_str().expect("a hash");
    assert!(!hash.is_empty() && hash != secret);
    assert!(
        !rows[0].to_string().contains(&secret),
        "the plain secret is stored"
    );
    db.close().await.unwrap();

    let listed = run_ok(dir.path(), &url, &["merchant", "list"]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with(&imp_code))
        .unwrap_or_else(|| panic!("{imp_code} not listed: {listed}"));
    let columns: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        columns[..5],
        [
            imp_code.as_str(),
            imp_key.as_str(),
            "T0000",
            "CLI shop",
            "test_mode=true"
        ]
    );
    assert!(columns[5].starts_with("id="), "{line}");
    assert!(!listed.contains(&secret), "the list shows the secret");

    // A server on that database takes the printed secret (and only it).
    let served = ServeProcess::start(openport_in_test_mode(dir.path(), &url, &["serve"]));
    assert!(
        !served.stdout.contains("demo merchant created"),
        "a database with a merchant gets no demo merchant: {}",
        served.stdout
    );
    let (status, body) = post_to(
        &served,
        "/users/getToken",
        None,
        json!({"imp_key": imp_key, "imp_secret": secret}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["response"]["access_token"].as_str().is_some(),
        "{body}"
    );
    let (status, body) = post_to(
        &served,
        "/users/getToken",
        None,
        json!({"imp_key": imp_key, "imp_secret": format!("{secret}x")}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// A database whose first merchant was made with `merchant create` (the command table invites
/// it) gets no demo merchant at its first `serve`, and README's demo credentials then answer 401:
/// the start said nothing of it. It says so now, naming how many merchants there are and
/// `openport merchant list`. A restart of an instance that made the demo merchant says nothing.
#[tokio::test]
async fn a_test_mode_start_on_a_database_with_merchants_but_no_demo_merchant_says_it_made_none() {
    const SAID: &str = "test mode: no demo merchant, the database already has";
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        dir.path(),
        &url,
        &["merchant", "create", "--name", "First", "--json"],
    )
    .await;
    let served = ServeProcess::start(openport_in_test_mode(dir.path(), &url, &["serve"]));
    let said: Vec<&str> = served.stdout.lines().filter(|l| l.contains(SAID)).collect();
    assert_eq!(said.len(), 1, "{}", served.stdout);
    assert!(said[0].contains(" INFO "), "{}", said[0]);
    assert!(
        said[0].contains("1 merchant(s) (openport merchant list)"),
        "{}",
        said[0]
    );
    assert!(!served.stdout.contains("demo merchant created"));
    let (status, body) = demo_token_request(&served).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    drop(served);

    let (url, _db_dir) = fresh_database().await;
    let first = ServeProcess::start(openport_in_test_mode(dir.path(), &url, &["serve"]));
    assert!(
        first.stdout.contains("demo merchant created"),
        "{}",
        first.stdout
    );
    assert!(!first.stdout.contains(SAID), "{}", first.stdout);
    drop(first);
    let again = ServeProcess::start(openport_in_test_mode(dir.path(), &url, &["serve"]));
    assert!(!again.stdout.contains(SAID), "{}", again.stdout);
    let (status, body) = demo_token_request(&again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An operator command's `--json` output is the only thing on its stdout (its log lines go to
/// stderr), so it can be piped into a parser: the migrations' and the start's lines were mixed in.
#[tokio::test]
async fn operator_commands_print_only_their_json_on_stdout_with_json() {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let created: Value = serde_json::from_str(
        &run_ok(
            dir.path(),
            &url,
            &["merchant", "create", "--name", "J", "--json"],
        )
        .await,
    )
    .unwrap();
    let imp_code = created["imp_code"].as_str().unwrap();
    for args in [
        vec!["merchant", "new-secret", "--imp-code", imp_code, "--json"],
        vec!["attempt", "list", "--json"],
    ] {
        let printed = run_ok(dir.path(), &url, &args).await;
        assert!(
            serde_json::from_str::<Value>(&printed).is_ok(),
            "{args:?} printed more than JSON: {printed}"
        );
    }
}

/// `merchant new-secret` outside test mode without a master key is refused, as `serve` is: it
/// hashed the new secret under the public test-mode key, which the live instances do not have,
/// and deleted the merchant's tokens, locking the merchant out.
#[tokio::test]
async fn merchant_new_secret_outside_test_mode_without_a_master_key_is_refused_and_changes_nothing()
{
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let created: Value = serde_json::from_str(
        &run_ok(
            dir.path(),
            &url,
            &["merchant", "create", "--name", "S", "--json"],
        )
        .await,
    )
    .unwrap();
    let imp_code = created["imp_code"].as_str().unwrap();
    let db = Database::connect(&url).await.unwrap();
    let hash = |db: DatabaseConnection| async move {
        db.query_one(statement(
            &db,
            &format!("SELECT imp_secret_hash FROM merchants WHERE imp_code = '{imp_code}'"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "imp_secret_hash")
        .unwrap()
    };
    let before = hash(db.clone()).await;

    let mut command = openport_in_test_mode(
        dir.path(),
        &url,
        &["merchant", "new-secret", "--imp-code", imp_code],
    );
    command.env("OPENPORT_TEST_MODE", "false");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();

    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OPENPORT_MASTER_KEY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("imp_secret"));
    assert_eq!(hash(db).await, before);
}

/// A key's id as every sealed value and hash names it (service/secrets.rs).
fn master_key_id(b64: &str) -> String {
    openport::service::secrets::MasterKey::from_config(Some(&SecretString::from(b64.to_string())))
        .unwrap()
        .key_id()
        .to_string()
}

/// `merchant new-secret` of a live merchant run from a shell that is not configured as the live
/// instances are: without their environment (test mode, the public test-mode key), or with
/// another master key (a typo; the incoming key of a rotation). Each is refused, naming what
/// differs, and changes nothing: it hashed the new secret under a key the live instances do not
/// have and deleted the merchant's tokens, locking the merchant out and refusing every restart.
/// From the live instances' configuration it renews the secret.
#[tokio::test]
async fn merchant_new_secret_of_a_live_merchant_from_a_shell_of_another_mode_or_key_is_refused_and_changes_nothing(
) {
    use base64::Engine;
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (k, other) = (b64(11), b64(12));
    let live_key = k.clone();
    let live = crate::helpers::spawn_app_with(move |c| {
        c.test_mode = false;
        c.master_key = Some(SecretString::from(live_key));
        c.public_url = Some("https://pay.example.com".into());
    })
    .await;
    let shop = live.app.demo.as_ref().expect("the live merchant");
    let (imp_code, imp_key) = (
        shop.merchant.imp_code.clone(),
        shop.merchant.imp_key.clone(),
    );
    let secret = secrecy::ExposeSecret::expose_secret(&shop.imp_secret).to_string();
    let token = live.token_for(&imp_key, &secret).await;
    let db = Database::connect(&live.database_url).await.unwrap();
    let hash = || {
        let db = db.clone();
        let sql = format!("SELECT imp_secret_hash FROM merchants WHERE imp_code = '{imp_code}'");
        async move {
            db.query_one(statement(&db, &sql))
                .await
                .unwrap()
                .unwrap()
                .try_get::<String>("", "imp_secret_hash")
                .unwrap()
        }
    };
    let before = hash().await;
    let dir = tempfile::tempdir().unwrap();
    let new_secret = |env: Vec<(&'static str, String)>| {
        let mut command = openport_in_test_mode(
            dir.path(),
            &live.database_url,
            &["merchant", "new-secret", "--imp-code", &imp_code],
        );
        command.envs(env);
        async move {
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };

    let plain_shell = new_secret(vec![]).await;
    let wrong_key = new_secret(vec![
        ("OPENPORT_TEST_MODE", "false".into()),
        ("OPENPORT_MASTER_KEY", other.clone()),
    ])
    .await;
    for (out, said) in [
        (&plain_shell, vec!["OPENPORT_TEST_MODE".to_string()]),
        (&wrong_key, vec![master_key_id(&k), master_key_id(&other)]),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        for said in said {
            assert!(stderr.contains(&said), "{said}: {stderr}");
        }
        assert!(!String::from_utf8_lossy(&out.stdout).contains("imp_secret"));
        assert_eq!(hash().await, before, "{stderr}");
    }
    // The token it had works on an instance that never cached it, and the secret still gets one.
    let live_key = k.clone();
    let other_instance = live
        .another_instance(move |c| {
            c.test_mode = false;
            c.master_key = Some(SecretString::from(live_key));
            c.public_url = Some("https://pay.example.com".into());
        })
        .await;
    let (status, body) = other_instance
        .get("/payments/status/all", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    other_instance.token_for(&imp_key, &secret).await;

    // With the live instances' configuration it is renewed.
    let renewed = new_secret(vec![
        ("OPENPORT_TEST_MODE", "false".into()),
        ("OPENPORT_MASTER_KEY", k.clone()),
    ])
    .await;
    let printed = String::from_utf8_lossy(&renewed.stdout).into_owned();
    assert!(
        renewed.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&renewed.stderr)
    );
    let renewed_secret = printed
        .lines()
        .find_map(|l| l.strip_prefix("imp_secret "))
        .expect("the new imp_secret")
        .trim()
        .to_string();
    assert_ne!(hash().await, before);
    other_instance.token_for(&imp_key, &renewed_secret).await;
}

#[tokio::test]
async fn merchant_create_takes_a_certificate_file_holding_kcps_one_line_form() {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key_path, passphrase) = kcp_test_credentials();
    let cert_file = dir.path().join("cert-one-line.txt");
    std::fs::write(&cert_file, cert.lines().collect::<String>()).unwrap();

    let mut command = openport_in_test_mode(
        dir.path(),
        &url,
        &[
            "merchant",
            "create",
            "--name",
            "one-line shop",
            "--cert",
            cert_file.to_str().unwrap(),
            "--key",
            &key_path,
            "--json",
        ],
    );
    command.env("KCP_PRIVATE_KEY_PASSWORD", passphrase);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(created["site_cd"], "T0000", "{created}");
}

#[tokio::test]
async fn merchant_create_takes_a_kcp_origin_that_list_shows_and_refuses_one_that_is_not_an_origin()
{
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let create = |name: &'static str, base: &'static str| {
        let (dir, url) = (dir.path().to_path_buf(), url.clone());
        async move {
            let args = ["merchant", "create", "--name", name, "--kcp-api-base", base];
            run(&dir, &url, &args).await
        }
    };
    let out = create("staging shop", "https://stg-spl.kcp.co.kr/").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for refused in [
        "http://stg-spl.kcp.co.kr",
        "https://spl.kcp.co.kr",
        "https://x.test/gw",
    ] {
        let out = create("refused shop", refused).await;
        assert!(!out.status.success(), "{refused} was taken");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("kcp_api_base"), "{refused}: {stderr}");
    }
    let listed = run_ok(dir.path(), &url, &["merchant", "list"]).await;
    assert_eq!(
        listed.lines().count(),
        1,
        "nothing refused was stored: {listed}"
    );
    assert!(
        listed.contains("\tkcp_api_base=https://stg-spl.kcp.co.kr"),
        "{listed}"
    );
}

/// The `kcp_group_id=` column `merchant list` shows for `imp_code`.
async fn listed_group(dir: &Path, url: &str, imp_code: &str) -> String {
    let listed = run_ok(dir, url, &["merchant", "list"]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with(imp_code))
        .unwrap_or_else(|| panic!("{imp_code} not listed: {listed}"));
    line.split('\t')
        .find_map(|c| c.strip_prefix("kcp_group_id="))
        .unwrap_or_else(|| panic!("no kcp_group_id column: {line}"))
        .to_string()
}

#[tokio::test]
async fn merchant_create_takes_a_kcp_group_id_and_set_group_id_changes_it_refusing_bad_ones() {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let printed = run_ok(
        dir.path(),
        &url,
        &[
            "merchant",
            "create",
            "--name",
            "batch shop",
            "--kcp-group-id",
            "T00001000489",
            "--json",
        ],
    )
    .await;
    let created: Value = serde_json::from_str(&printed).expect("JSON");
    let imp_code = created["imp_code"].as_str().unwrap().to_string();
    assert_eq!(
        listed_group(dir.path(), &url, &imp_code).await,
        "T00001000489"
    );

    let set = run_ok(
        dir.path(),
        &url,
        &[
            "merchant",
            "set-group-id",
            "--imp-code",
            &imp_code,
            "--kcp-group-id",
            "T00002000002",
        ],
    )
    .await;
    assert!(set.contains("T00002000002"), "{set}");
    assert_eq!(
        listed_group(dir.path(), &url, &imp_code).await,
        "T00002000002"
    );

    // A group id that is not 1–20 letters and digits, or a merchant that does not exist: the
    // command fails and says why, and nothing changes.
    for (imp_code, group, why) in [
        (imp_code.as_str(), "T0000-2000002", "kcp_group_id"),
        (imp_code.as_str(), "T000020000021234567890", "kcp_group_id"),
        (
            "imp99999999",
            "T00003000003",
            "no merchant with imp_code imp99999999",
        ),
    ] {
        let out = run(
            dir.path(),
            &url,
            &[
                "merchant",
                "set-group-id",
                "--imp-code",
                imp_code,
                "--kcp-group-id",
                group,
            ],
        )
        .await;
        assert!(!out.status.success(), "{group} was set for {imp_code}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{group}: {stderr}");
    }
    let out = run(
        dir.path(),
        &url,
        &[
            "merchant",
            "create",
            "--name",
            "refused shop",
            "--kcp-group-id",
            "A52Q7 1000489",
        ],
    )
    .await;
    assert!(!out.status.success(), "a bad group id was taken");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kcp_group_id"),
        "{out:?}"
    );
    let listed = run_ok(dir.path(), &url, &["merchant", "list"]).await;
    assert_eq!(
        listed.lines().count(),
        1,
        "nothing refused was stored: {listed}"
    );
    assert_eq!(
        listed_group(dir.path(), &url, &imp_code).await,
        "T00002000002"
    );
}

fn openssl(args: &[&str]) -> Output {
    std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed to run this test (.ci/run installs it)")
}

fn stdout_of(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn sandbox_issue_cert_writes_a_kcp_shaped_pair_that_openssl_and_openport_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    // Needs no database; the documented default passphrase (`--passphrase`, README) is changeit.
    let printed = run_ok(
        dir.path(),
        "sqlite::memory:",
        &[
            "sandbox",
            "issue-cert",
            "--site-cd",
            "A1234",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    let (cert, key) = (out.join("splCert.pem"), out.join("splPrikeyPKCS8.pem"));
    assert!(printed.contains("splCert.pem") && printed.contains("splPrikeyPKCS8.pem"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the key file is the owner's only: {mode:o}"
        );
    }
    let (cert_path, key_path) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let subject = stdout_of(openssl(&[
        "x509", "-in", cert_path, "-noout", "-subject", "-nameopt", "RFC2253",
    ]));
    assert!(subject.contains("CN=A1234"), "{subject}");
    let dump = stdout_of(openssl(&["asn1parse", "-in", key_path]));
    assert!(dump.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{dump}");
    assert!(dump.contains(":0800"), "2048 iterations: {dump}");
    let plain = stdout_of(openssl(&[
        "pkcs8",
        "-in",
        key_path,
        "-passin",
        "pass:changeit",
    ]));
    assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----"), "{plain}");
    assert!(
        !openssl(&["pkcs8", "-in", key_path, "-passin", "pass:wrong"])
            .status
            .success()
    );
    let key_modulus = stdout_of(openssl(&[
        "rsa",
        "-in",
        key_path,
        "-passin",
        "pass:changeit",
        "-noout",
        "-modulus",
    ]));
    let cert_modulus = stdout_of(openssl(&["x509", "-in", cert_path, "-noout", "-modulus"]));
    assert_eq!(
        key_modulus, cert_modulus,
        "the key belongs to the certificate"
    );

    // openport's own loader takes the pair (it checks that they match), the certificate also
    // in KCP's one-line form.
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let pass = SecretString::from("changeit");
    let signer = KcpSigner::from_pem(&cert_pem, &key_pem, &pass).expect("openport loads the pair");
    let one_line: String = cert_pem.lines().collect();
    assert_eq!(signer.cert_info(), one_line);
    assert_eq!(
        KcpCertificate::from_pem(&one_line).unwrap().cert_info(),
        one_line
    );
}

#[tokio::test]
async fn sandbox_fault_arms_the_rule_on_a_running_sandbox_and_a_rule_it_refuses_fails_the_command()
{
    let sandbox = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kcp_sandbox::serve(sandbox.clone(), listener));
    let dir = tempfile::tempdir().unwrap();
    let hub = kcp_sandbox::paths::HUB_PAYMENT;

    let printed = run_ok(
        dir.path(),
        "sqlite::memory:",
        &[
            "sandbox",
            "fault",
            "--url",
            &url,
            "--path",
            hub,
            "--kind",
            "http_status",
            "--status",
            "503",
            "--when",
            "ordr_idxx=CLI1",
        ],
    )
    .await;
    assert!(printed.starts_with("204"), "{printed}");
    let armed = kcp_sandbox::FaultRule::new(hub, kcp_sandbox::Fault::HttpStatus { status: 503 })
        .when("ordr_idxx", "CLI1");
    assert_eq!(sandbox.armed_faults(), [armed]);

    // The next matching request meets it, once.
    let http = reqwest::Client::new();
    let body = json!({"site_cd": "T0000", "ordr_idxx": "CLI1"});
    let first = http
        .post(format!("{url}{hub}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(sandbox.armed_faults().is_empty(), "used up");

    // `refuse` needs a code and a message the command has no flags for: the sandbox refuses
    // the rule, and the command says so by failing rather than leaving a script to go on.
    let refused = run(
        dir.path(),
        "sqlite::memory:",
        &[
            "sandbox", "fault", "--url", &url, "--path", hub, "--kind", "refuse",
        ],
    )
    .await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused the fault rule"),
        "{refused:?}"
    );
    assert!(sandbox.armed_faults().is_empty());
}

/// A cancel whose every inquiry KCP refuses stays open, and an open cancel blocks every API cancel
/// of its payment: `attempt conflict` turns it into a conflict (refused while KCP may still be
/// working on it), which holds the payment for the operator until `attempt reconciled`.
#[tokio::test]
async fn attempt_conflict_turns_a_cancel_inquiry_cannot_settle_into_a_conflict_the_operator_reconciles(
) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "cli-stuck", 10000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, Fault::Drop));
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 }).times(1000));
    let cancel = || {
        app.post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 3000}),
        )
    };
    let (_, body) = cancel().await;
    assert_eq!(body["code"], 1, "{body}");
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let id = open[0].id.to_string();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "attempt",
        "conflict",
        "--id",
        &id,
        "--note",
        "KCP answers 503",
    ];

    let early = run(dir.path(), &app.database_url, &args).await;
    assert!(!early.status.success(), "refused before the settle delay");
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("settle delay"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    app.advance(crate::helpers::SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    assert_eq!(app.app.gateway.open_attempts(10).await.unwrap().len(), 1);
    let (_, blocked) = cancel().await;
    assert!(
        blocked["message"].as_str().unwrap().contains("처리 중"),
        "{blocked}"
    );

    // The command runs on the host's clock, not the test's shifted one, with the default settle
    // delay (120 s): the attempt is made that much older.
    app.app
        .gateway
        .db
        .write
        .execute_unprepared(&format!(
            "UPDATE pg_attempts SET created_at = created_at - 1000, sent_at = sent_at - 1000 WHERE id = {id}"
        ))
        .await
        .unwrap();
    let printed = run_ok(dir.path(), &app.database_url, &args).await;
    assert!(printed.contains("is a conflict"), "{printed}");
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(
        conflicts[0]
            .result_message
            .as_deref()
            .is_some_and(|m| m.contains("KCP answers 503")),
        "{conflicts:?}"
    );
    let (_, held) = cancel().await;
    assert!(
        held["message"].as_str().unwrap().contains("운영자 확인"),
        "{held}"
    );
    // Settled already: a second verdict is refused.
    assert!(!run(dir.path(), &app.database_url, &args)
        .await
        .status
        .success());

    // KCP's admin shows no cancel (the dropped one never reached it): reconciled, and the
    // merchant's cancel goes through.
    app.sandbox.clear_faults();
    assert_eq!(app.sandbox.ledger()[0].balance, 10000);
    app.app
        .gateway
        .mark_reconciled(conflicts[0].id, "no cancel in KCP's admin", None)
        .await
        .unwrap();
    let (_, done) = cancel().await;
    assert_eq!(done["code"], 0, "{done}");
    assert_eq!(done["response"]["cancel_amount"], 3000);
    app.assert_ledger_agrees().await;
}

/// `attempt confirm-absent` calls KCP. From a test-mode shell whose KCP is the serving instance's
/// embedded sandbox it is refused, changing nothing, until pointed at that sandbox (it used to
/// call KCP's staging host with the sandbox's certificate, and count a try). Pointed at it, it
/// exits non-zero (3) while the attempt stays open (before the settle delay; while KCP's inquiry
/// fails), saying the word is kept; once KCP answers after the settle delay, the approval fails
/// and it exits 0.
#[tokio::test]
async fn attempt_confirm_absent_exits_non_zero_while_the_attempt_stays_open_and_is_refused_unpointed_at_the_embedded_sandbox(
) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(
            &token,
            "cli-absent",
            1000,
            crate::helpers::test_cards::SHINHAN_CREDIT,
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let (id, order_no) = (open[0].id, open[0].order_no.clone());
    let id_arg = id.to_string();
    let args = [
        "attempt",
        "confirm-absent",
        "--id",
        &id_arg,
        "--order-no",
        &order_no,
    ];
    let attempt = || async {
        openport::store::payments::attempt_by_id(&app.app.gateway.db.read, id)
            .await
            .unwrap()
            .unwrap()
    };
    let before = attempt().await;

    let dir = tempfile::tempdir().unwrap();
    let unpointed = run(dir.path(), &app.database_url, &args).await;
    let stderr = String::from_utf8_lossy(&unpointed.stderr);
    assert!(!unpointed.status.success(), "{stderr}");
    assert!(stderr.contains("OPENPORT_KCP__API_BASE"), "{stderr}");
    assert!(stderr.contains("KCP sandbox listening on"), "{stderr}");
    assert_eq!(attempt().await, before, "nothing recorded, nothing tried");

    // The command runs on the host's clock, not the test's: the attempt is younger than the
    // settle delay there. The word is kept; nothing is settled.
    let early = run_against_the_apps_sandbox(&app, &args).await;
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the word is kept"), "{stderr}");
    assert_eq!(
        attempt().await.absent_order_no.as_deref(),
        Some(order_no.as_str())
    );

    // Past the settle delay, KCP's inquiry failing: still open, still non-zero.
    app.app
        .gateway
        .db
        .write
        .execute_unprepared(&format!(
            "UPDATE pg_attempts SET created_at = created_at - 1000, sent_at = sent_at - 1000 WHERE id = {id}"
        ))
        .await
        .unwrap();
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 }).times(100));
    let failing = run_against_the_apps_sandbox(&app, &args).await;
    assert_eq!(
        failing.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&failing.stderr)
    );
    assert!(matches!(
        attempt().await.state.as_str(),
        "pending" | "unknown"
    ));

    app.sandbox.clear_faults();
    let printed = printed_by_success(&run_against_the_apps_sandbox(&app, &args).await);
    assert!(printed.contains("is now failed"), "{printed}");
    assert_eq!(
        app.payment(&token, &open[0].imp_uid).await["status"],
        "failed"
    );
}

/// An approval of the merchant whose token is `token` left open (its answer dropped), made older
/// than any settle delay so that `attempt confirm-absent` asks KCP about it: (id, order number,
/// imp_uid).
async fn an_open_approval(
    app: &crate::helpers::TestApp,
    token: &str,
    merchant_uid: &str,
) -> (i64, String, String) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = app
        .pay(
            token,
            merchant_uid,
            1000,
            crate::helpers::test_cards::SHINHAN_CREDIT,
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    let attempt = open
        .iter()
        .find(|a| a.merchant_uid == merchant_uid)
        .unwrap_or_else(|| panic!("no open attempt of {merchant_uid}: {open:?}"));
    app.app
        .gateway
        .db
        .write
        .execute_unprepared(&format!(
            "UPDATE pg_attempts SET created_at = created_at - 1000, sent_at = sent_at - 1000 WHERE id = {}",
            attempt.id
        ))
        .await
        .unwrap();
    (
        attempt.id,
        attempt.order_no.clone(),
        attempt.imp_uid.clone(),
    )
}

/// A merchant with a KCP origin of its own (`merchant create --kcp-api-base`) is called there
/// whatever the instance's KCP, from an operator's shell as from the serving instance: from a
/// test-mode shell without `OPENPORT_KCP__API_BASE`, `attempt confirm-absent` settles its
/// attempt (it used to be refused, as if the serving instance's embedded sandbox were its KCP),
/// while the demo merchant's attempt, whose KCP that sandbox is, is still refused, changing
/// nothing.
#[tokio::test]
async fn attempt_confirm_absent_of_a_merchant_on_its_own_kcp_origin_needs_no_sandbox_address_while_the_instances_merchants_still_do(
) {
    let app = crate::helpers::spawn_app().await;
    let origin = format!("http://{}", app.app.sandbox.as_ref().unwrap().addr);
    let (key, secret) = app.merchant_on_kcp(Some(&origin)).await;
    let own_token = app.token_for(&key, &secret).await;
    let demo_token = app.token().await;
    let own = an_open_approval(&app, &own_token, "cli-own-origin").await;
    let demo = an_open_approval(&app, &demo_token, "cli-instance-kcp").await;
    let confirm_absent = |(id, order_no, _): &(i64, String, String)| {
        let id = id.to_string();
        let args = [
            "attempt",
            "confirm-absent",
            "--id",
            &id,
            "--order-no",
            order_no,
        ]
        .map(str::to_string);
        let database_url = app.database_url.clone();
        async move {
            let dir = tempfile::tempdir().unwrap();
            run(
                dir.path(),
                &database_url,
                &args.each_ref().map(String::as_str),
            )
            .await
        }
    };
    let db = &app.app.gateway.db.read;
    let attempt = |id: i64| async move {
        openport::store::payments::attempt_by_id(db, id)
            .await
            .unwrap()
            .unwrap()
    };

    let before = attempt(demo.0).await;
    let refused = confirm_absent(&demo).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("OPENPORT_KCP__API_BASE"), "{stderr}");
    assert!(stderr.contains("KCP sandbox listening on"), "{stderr}");
    assert_eq!(
        attempt(demo.0).await,
        before,
        "nothing recorded, nothing tried"
    );

    let printed = printed_by_success(&confirm_absent(&own).await);
    assert!(printed.contains("is now failed"), "{printed}");
    assert_eq!(app.payment(&own_token, &own.2).await["status"], "failed");
}

/// The webhook rows `imp_uid`'s changes wrote, by the status each announces.
async fn webhooks_of(app: &crate::helpers::TestApp, imp_uid: &str) -> Vec<String> {
    use openport::store::entity::webhook_delivery;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::ImpUid.eq(imp_uid))
        .order_by_asc(webhook_delivery::Column::Id)
        .all(&app.app.gateway.db.read)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.status)
        .collect()
}

/// A cancel made in KCP's admin whose notice never reached openport (no notification URL at
/// KCP, lost, refused) left the payment `paid` with a balance KCP no longer holds, and no
/// command could fix it. `payment recheck` checks the payment as that notice would have: KCP's
/// lower balance is recorded as a cancel (its history, the `cancelled` webhook) and printed
/// `applied`; a second run finds KCP and openport agreeing (`unchanged`) and records nothing.
/// An unknown imp_uid, KCP not answering, or a shell that cannot reach the serving instance's
/// embedded sandbox exits non-zero, saying why, with nothing recorded.
#[tokio::test]
async fn payment_recheck_records_a_cancel_made_at_kcp_whose_notice_never_came_once() {
    let app = crate::helpers::spawn_app().await;
    let receiver = crate::helpers::Receiver::start().await;
    let merchant = app.app.demo.as_ref().expect("demo merchant").merchant.id;
    let (status, body) = app
        .put(
            &format!("/admin/merchants/{merchant}/webhook"),
            crate::helpers::ADMIN_TOKEN,
            json!({"url": receiver.url("/recheck")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = app.token().await;
    let paid = app.paid(&token, "cli-recheck", 5000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap().to_string();
    let tno = paid["pg_tid"].as_str().unwrap().to_string();
    assert!(app.sandbox.cancel_in_admin_partly(&tno, Some(2000)));
    let before = app.payment(&token, &imp_uid).await;
    assert_eq!(
        (before["status"].as_str(), before["cancel_amount"].as_i64()),
        (Some("paid"), Some(0)),
        "{before}"
    );
    let recheck = ["payment", "recheck", "--imp-uid", imp_uid.as_str()];

    let unknown = run_against_the_apps_sandbox(
        &app,
        &["payment", "recheck", "--imp-uid", "imp_000000000000"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no payment with imp_uid imp_000000000000"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let unpointed = run(dir.path(), &app.database_url, &recheck).await;
    let stderr = String::from_utf8_lossy(&unpointed.stderr);
    assert_eq!(unpointed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the payment's merchant"), "{stderr}");
    assert!(stderr.contains("OPENPORT_KCP__API_BASE"), "{stderr}");

    app.sandbox.inject(
        kcp_sandbox::FaultRule::new(
            kcp_sandbox::paths::INQUIRY,
            kcp_sandbox::Fault::HttpStatus { status: 503 },
        )
        .times(100),
    );
    let unreachable = run_against_the_apps_sandbox(&app, &recheck).await;
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(unreachable.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("KCP could not be asked"), "{stderr}");
    app.sandbox.clear_faults();
    assert_eq!(
        app.payment(&token, &imp_uid).await,
        before,
        "nothing recorded"
    );
    assert_eq!(webhooks_of(&app, &imp_uid).await, ["paid"]);

    let printed = printed_by_success(&run_against_the_apps_sandbox(&app, &recheck).await);
    assert!(printed.contains("applied: 2000 won"), "{printed}");
    assert!(printed.contains("balance 3000 won"), "{printed}");
    let after = app.payment(&token, &imp_uid).await;
    assert_eq!(
        (
            after["status"].as_str(),
            after["cancel_amount"].as_i64(),
            after["cancel_history"].as_array().map(Vec::len),
            after["cancel_history"][0]["amount"].as_i64(),
            after["cancel_history"][0]["reason"].as_str(),
        ),
        (
            Some("cancelled"),
            Some(2000),
            Some(1),
            Some(2000),
            Some(openport::service::payment_recheck::REASON)
        ),
        "{after}"
    );
    assert_eq!(webhooks_of(&app, &imp_uid).await, ["paid", "cancelled"]);

    let printed = printed_by_success(&run_against_the_apps_sandbox(&app, &recheck).await);
    assert!(printed.contains("unchanged"), "{printed}");
    assert!(printed.contains("KCP holds 3000 won"), "{printed}");
    assert_eq!(app.payment(&token, &imp_uid).await, after);
    assert_eq!(webhooks_of(&app, &imp_uid).await, ["paid", "cancelled"]);
    app.assert_ledger_agrees().await;
}

/// The TCP ports process `pid` listens on: its socket descriptors (`/proc/PID/fd`) matched
/// against the kernel's listening sockets (`/proc/PID/net/tcp` and `tcp6`, state `0A`).
#[cfg(target_os = "linux")]
fn listening_ports(pid: u32) -> Vec<u16> {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let inode = target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let listed =
            std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in listed.lines().skip(1) {
            // sl, local_address (hex ADDR:PORT), rem_address, st, …, inode (the tenth).
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" && sockets.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap_or_default();
                ports.push(u16::from_str_radix(port, 16).expect("a hex port"));
            }
        }
    }
    ports
}

/// An operator command is not a server: while it runs (here `attempt confirm-absent`, held in
/// its KCP inquiry) it listens on no port. It used to start the whole gateway API on a random
/// loopback port for as long as it ran, unauthenticated-looking and unasked for.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_operator_command_listens_on_no_port_while_it_runs() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let (id, order_no, imp_uid) = an_open_approval(&app, &token, "cli-no-port").await;
    // The helper sees what listens: this test's own gateway, for one.
    assert!(
        listening_ports(std::process::id()).contains(&app.app.addr.port()),
        "{:?}",
        listening_ports(std::process::id())
    );
    let gate = "operator-inquiry";
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::HoldRequest { gate: gate.into() },
    ));
    let dir = tempfile::tempdir().unwrap();
    let id_arg = id.to_string();
    let mut command = openport_in_test_mode(
        dir.path(),
        &app.database_url,
        &[
            "attempt",
            "confirm-absent",
            "--id",
            &id_arg,
            "--order-no",
            &order_no,
        ],
    );
    let kcp = format!("http://{}", app.app.sandbox.as_ref().unwrap().addr);
    let child = command
        .env("OPENPORT_KCP__API_BASE", kcp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the openport binary starts");
    app.sandbox.until_held(gate).await;
    let listening = listening_ports(child.id());
    app.sandbox.open_gate(gate);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(listening, Vec::<u16>::new(), "the command listens");
    let printed = printed_by_success(&out);
    assert!(printed.contains("is now failed"), "{printed}");
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
}

/// `--listen` is `serve`'s alone: an operator command opens no port, so one given `--listen` is
/// refused, naming it (it used to be taken and ignored), and `serve --listen` listens where it
/// says (over `OPENPORT_LISTEN`).
#[tokio::test]
async fn listen_is_taken_by_serve_alone_and_refused_by_operator_commands() {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    for command in [
        &["attempt", "list"][..],
        &["merchant", "list"],
        &["migrate"],
        &["reseal"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--listen", "127.0.0.1:0"]);
        let out = run(dir.path(), &url, &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("'--listen'"), "{args:?}: {stderr}");
    }

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let served = ServeProcess::start(openport_in_test_mode(
        dir.path(),
        &url,
        &["serve", "--listen", &addr],
    ));
    assert_eq!(served.base, format!("http://{addr}"));
}

/// `merchant new-secret` is run because the secret leaked: the tokens got with it are deleted, but
/// a running instance that had one cached kept accepting it for up to a minute. On PostgreSQL the
/// command announces the change, and a running instance drops the merchant's cached tokens at once.
#[tokio::test]
async fn a_new_secret_from_the_cli_revokes_a_running_instances_cached_tokens_at_once_on_postgresql()
{
    let app = crate::helpers::spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // no notifications on SQLite: a cached token lasts its minute (docs/operations.md)
    }
    let token = app.token().await;
    let (status, _) = app.get("/payments/status/all", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "the token is cached now");
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        dir.path(),
        &app.database_url,
        &[
            "merchant",
            "new-secret",
            "--imp-code",
            openport::service::merchants::DEMO_IMP_CODE,
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = app.get("/payments/status/all", Some(&token)).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked token still works 10 s after new-secret"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `merchant create` in test mode started an embedded sandbox on the running server's state file
/// and wrote its own, older copy over it when it exited (approvals the server made meanwhile were
/// forgotten); its warnings went nowhere. It issues the certificate from the sandbox's CA alone now,
/// leaves the state file as it found it, and logs to stderr as every operator command does.
#[tokio::test]
async fn merchant_create_in_test_mode_leaves_the_sandbox_state_file_alone_and_logs_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("shop.db").display());
    let state_file = dir.path().join("shop-kcp-sandbox.json");
    let before = "{\"kept\": \"by the running server\"}";
    std::fs::write(&state_file, before).unwrap();
    let out = run(
        dir.path(),
        &url,
        &["merchant", "create", "--name", "B", "--json"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["site_cd"], "T0000", "{created}");
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), before);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("public test-mode key"), "{stderr}");
}

/// sqlx-postgres logged a URL query key it does not read with its value, at WARN, past the default
/// filter: a libpq `sslpassword=` or a `Password=` was printed in clear by `serve` and every
/// operator command (`key=sslpassword value=SECRETSSL`), then ignored. Each refuses at once
/// naming the key, and neither its stdout nor its stderr holds the value.
#[tokio::test]
async fn a_database_url_with_a_password_key_sqlx_ignores_is_refused_and_its_value_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (query, key) in [
        ("sslpassword=s3cret", "sslpassword"),
        ("Password=s3cret", "Password"),
    ] {
        let url = format!("postgres://u@127.0.0.1:1/db?{query}");
        for args in [&["serve"][..], &["migrate"], &["merchant", "list"]] {
            let (dir, url) = (dir.path().to_path_buf(), url.clone());
            runs.push(async move { (query, key, args, run(&dir, &url, args).await) });
        }
    }
    for (query, key, args, out) in futures::future::join_all(runs).await {
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?} {query}: {printed}");
        assert!(!printed.contains("s3cret"), "{args:?} {query}: {printed}");
        assert!(
            printed.contains(&format!("{key:?}")),
            "{args:?} {query}: {printed}"
        );
    }
}

/// `attempt reconciled` of an approval's conflict that holds its payment pending asks what KCP's
/// admin shows (`--payment`), refuses without it, and with `--payment failed` fails the payment
/// and frees its merchant_uid.
#[tokio::test]
async fn attempt_reconciled_settles_the_payment_an_approvals_conflict_holds_as_the_operator_says() {
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let body =
        crate::reliability::a_charge_whose_net_cancel_kcp_refuses(&app, &token, "cli-held").await;
    assert_eq!(body["code"], 1, "{body}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let imp_uid = conflicts[0].imp_uid.clone();
    let id = conflicts[0].id.to_string();
    assert!(app.sandbox.cancel_in_admin(&app.sandbox.ledger()[0].tno));
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "attempt",
        "reconciled",
        "--id",
        &id,
        "--note",
        "cancelled in KCP's admin",
    ];

    let without = run(dir.path(), &app.database_url, &args).await;
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("--payment"),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    assert_ne!(app.payment(&token, &imp_uid).await["status"], "failed");

    args.extend(["--payment", "failed"]);
    // The verdict is checked against KCP, which is the serving instance's embedded sandbox here:
    // refused until the command is pointed at it, never sent to KCP's staging host.
    let unpointed = run(dir.path(), &app.database_url, &args).await;
    assert!(!unpointed.status.success());
    assert!(
        String::from_utf8_lossy(&unpointed.stderr).contains("OPENPORT_KCP__API_BASE"),
        "{}",
        String::from_utf8_lossy(&unpointed.stderr)
    );
    assert_eq!(app.conflicts().await.len(), 1);
    let printed = printed_by_success(&run_against_the_apps_sandbox(&app, &args).await);
    assert!(printed.contains("merchant_uid is free"), "{printed}");
    assert!(app.conflicts().await.is_empty());
    assert_eq!(app.payment(&token, &imp_uid).await["status"], "failed");
}

/// An approval a conflict holds pending, the conflict recorded well after KCP approved it: the
/// charge's answer is lost and KCP's inquiry fails within the request; SETTLE_SECS + 600 s later
/// the resolver finds the approval answered for another amount and KCP refuses to net-cancel it.
struct HeldApproval {
    conflict: i64,
    imp_uid: String,
    /// KCP's approval time (Unix seconds).
    approved_at: i64,
    /// When the attempt became a conflict.
    recorded: i64,
}

async fn an_approval_held_by_a_conflict_recorded_later(
    app: &crate::helpers::TestApp,
    token: &str,
    merchant_uid: &str,
) -> HeldApproval {
    use crate::helpers::{future_expiry, test_cards, SETTLE_SECS};
    use kcp_sandbox::{paths, Fault, FaultRule};
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 500 }).times(20));
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(token),
            json!({
                "merchant_uid": merchant_uid, "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
                "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00",
            }),
        )
        .await;
    assert_eq!(body["code"], 1, "outcome unknown: {body}");
    app.sandbox.clear_faults();
    let approved_at = app.sandbox.ledger()[0].approved_at.timestamp();

    app.advance(SETTLE_SECS + 600);
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::AnswerField {
            field: "amount".into(),
            value: "999".into(),
        },
    ));
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8500".into(),
                message: "취소할 수 없는 거래입니다".into(),
            },
        )
        .times(100),
    );
    app.resolve_all().await;
    app.sandbox.clear_faults();
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let attempt =
        openport::store::payments::attempt_by_id(&app.app.gateway.db.read, conflicts[0].id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(attempt.kind, "approve");
    assert!(attempt.updated_at >= approved_at + 600, "{attempt:?}");
    HeldApproval {
        conflict: attempt.id,
        imp_uid: conflicts[0].imp_uid.clone(),
        approved_at,
        recorded: attempt.updated_at,
    }
}

/// `attempt reconciled --payment paid` a day after the conflict: the payment was paid when KCP
/// approved it, which KCP's inquiry by the approval's tno tells (`app_time`), not when the
/// operator said so (the command's time, which it was recorded with).
#[tokio::test]
async fn a_held_approval_reconciled_as_paid_is_paid_when_kcp_approved_it() {
    use openport::service::attempts::{PaidAtSource, ReconciledPaidAt, ReconciledPayment};
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let held = an_approval_held_by_a_conflict_recorded_later(&app, &token, "held-kcp-time").await;
    app.advance(86_400);
    let paid_at = app
        .app
        .gateway
        .mark_reconciled(
            held.conflict,
            "kept: 1,000 won approved in KCP's admin",
            Some(ReconciledPayment::Paid),
        )
        .await
        .unwrap();
    assert_eq!(
        paid_at,
        Some(ReconciledPaidAt {
            at: held.approved_at,
            source: PaidAtSource::KcpApproval,
        })
    );
    let token = app.token().await; // the first one expired meanwhile
    let p = app.payment(&token, &held.imp_uid).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(p["paid_at"], held.approved_at, "{p}");
}

/// When KCP cannot be asked (or tells no time: a virtual account's deposit), the payment is paid
/// when openport found KCP holding it, the time its attempt became a conflict, not at the
/// operator's command; as docs/operations.md says.
#[tokio::test]
async fn a_held_approval_reconciled_as_paid_while_kcp_cannot_be_asked_is_paid_when_its_conflict_was_recorded(
) {
    use kcp_sandbox::{paths, Fault, FaultRule};
    use openport::service::attempts::{PaidAtSource, ReconciledPaidAt, ReconciledPayment};
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let held = an_approval_held_by_a_conflict_recorded_later(&app, &token, "held-no-time").await;
    app.advance(86_400);
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 500 }).times(20));
    let paid_at = app
        .app
        .gateway
        .mark_reconciled(held.conflict, "kept", Some(ReconciledPayment::Paid))
        .await
        .unwrap();
    assert_eq!(
        paid_at,
        Some(ReconciledPaidAt {
            at: held.recorded,
            source: PaidAtSource::ConflictRecorded,
        })
    );
    let token = app.token().await; // the first one expired meanwhile
    assert_eq!(
        app.payment(&token, &held.imp_uid).await["paid_at"],
        held.recorded
    );
    let docs = include_str!("../../docs/operations.md");
    assert!(
        docs.contains("`paid_at` is the time the attempt became a conflict"),
        "docs/operations.md says which time is taken"
    );
}

/// `openport attempt reconciled --id <conflict> --note <note>` and then `payment` (`--payment …`),
/// asking the app's KCP sandbox; what it printed and how it ended.
async fn attempt_reconciled(
    app: &crate::helpers::TestApp,
    conflict: i64,
    note: &str,
    payment: &[&str],
) -> Output {
    let id = conflict.to_string();
    let mut args = vec!["attempt", "reconciled", "--id", &id, "--note", note];
    args.extend(payment);
    run_against_the_apps_sandbox(app, &args).await
}

/// Runs the binary with `args`, its KCP the app's embedded sandbox (`OPENPORT_KCP__API_BASE`, as
/// an operator points a KCP-calling command at a test-mode instance's sandbox).
async fn run_against_the_apps_sandbox(app: &crate::helpers::TestApp, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = openport_in_test_mode(dir.path(), &app.database_url, args);
    let kcp = format!("http://{}", app.app.sandbox.as_ref().unwrap().addr);
    command.env("OPENPORT_KCP__API_BASE", kcp);
    tokio::task::spawn_blocking(move || command.output().expect("openport runs"))
        .await
        .unwrap()
}

/// What a command that succeeded printed; panics with its output when it failed.
fn printed_by_success(out: &Output) -> String {
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

/// `attempt reconciled` of `held` failed, saying each of `said`, and changed nothing: the
/// payment still held pending, its conflict still listed.
async fn assert_refused_changing_nothing(
    app: &crate::helpers::TestApp,
    token: &str,
    held: &HeldApproval,
    out: &Output,
    said: &[&str],
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for part in said {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert_eq!(app.payment(token, &held.imp_uid).await["status"], "ready");
    assert_eq!(app.conflicts().await.len(), 1);
}

/// The command says which `paid_at` it recorded and where it comes from.
#[tokio::test]
async fn attempt_reconciled_with_payment_paid_prints_kcps_approval_time() {
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let held = an_approval_held_by_a_conflict_recorded_later(&app, &token, "held-cli").await;
    let out = attempt_reconciled(&app, held.conflict, "kept", &["--payment", "paid"]).await;
    let printed = printed_by_success(&out);
    assert!(
        printed.contains(&format!("paid_at {}", held.approved_at)),
        "{printed}"
    );
    assert!(printed.contains("KCP's approval time"), "{printed}");
    assert_eq!(
        app.payment(&token, &held.imp_uid).await["paid_at"],
        held.approved_at
    );
}

/// `attempt reconciled --payment paid` of an approval KCP's inquiry shows cancelled (the operator
/// misread KCP's admin, or it was cancelled since) is refused, saying what KCP answered and what to
/// do, and changes nothing; with `--despite-kcp` (the operator checked KCP's admin again) the
/// payment is recorded paid.
#[tokio::test]
async fn attempt_reconciled_with_payment_paid_of_an_approval_kcp_shows_cancelled_is_refused_unless_despite_kcp(
) {
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let held = an_approval_held_by_a_conflict_recorded_later(&app, &token, "held-cancelled").await;
    let tno = app.sandbox.ledger()[0].tno.clone();
    assert!(app.sandbox.cancel_in_admin(&tno));

    let refused = attempt_reconciled(&app, held.conflict, "kept", &["--payment", "paid"]).await;
    let said = [
        tno.as_str(),
        "cancelled",
        "--payment failed",
        "--despite-kcp",
    ];
    assert_refused_changing_nothing(&app, &token, &held, &refused, &said).await;

    let payment = ["--payment", "paid", "--despite-kcp"];
    let printed =
        printed_by_success(&attempt_reconciled(&app, held.conflict, "kept", &payment).await);
    assert!(printed.contains("is paid"), "{printed}");
    assert!(app.conflicts().await.is_empty());
    let p = app.payment(&token, &held.imp_uid).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(p["paid_at"], held.recorded, "{p}");
}

/// `attempt reconciled --payment failed` of an approval KCP's inquiry shows standing (not
/// cancelled in KCP's admin yet) is refused, naming the tno, what KCP answered and what to do, and
/// changes nothing: failed, its merchant_uid would be charged again while the buyer stays charged.
/// `--despite-kcp` goes with `--payment failed` too (the operator checked KCP's admin again): the
/// payment fails.
#[tokio::test]
async fn attempt_reconciled_with_payment_failed_of_an_approval_kcp_shows_standing_is_refused_unless_despite_kcp(
) {
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let held = an_approval_held_by_a_conflict_recorded_later(&app, &token, "held-standing").await;
    let tno = app.sandbox.ledger()[0].tno.clone();
    let payment = ["--payment", "failed"];

    let refused = attempt_reconciled(&app, held.conflict, "cancelled", &payment).await;
    let said = [
        tno.as_str(),
        "the approval stands",
        "Cancel the approval in KCP's admin first",
        "--despite-kcp",
    ];
    assert_refused_changing_nothing(&app, &token, &held, &refused, &said).await;

    let payment = ["--payment", "failed", "--despite-kcp"];
    let out = attempt_reconciled(&app, held.conflict, "cancelled", &payment).await;
    let printed = printed_by_success(&out);
    assert!(printed.contains("merchant_uid is free"), "{printed}");
    assert!(app.conflicts().await.is_empty());
    let token = app.token().await; // the first one may have expired meanwhile
    assert_eq!(app.payment(&token, &held.imp_uid).await["status"], "failed");
}

/// `attempt reconciled --payment failed|paid` of a merchant of the other mode than the command's
/// configuration (here a test-mode merchant, the command run with `OPENPORT_TEST_MODE=false`): its
/// KCP is not this configuration's to ask, so the verdict cannot be checked against KCP's inquiry.
/// Refused, naming `OPENPORT_TEST_MODE` and `--despite-kcp`, changing nothing; with
/// `--despite-kcp` it is recorded, and the command says it was not checked against KCP.
#[tokio::test]
async fn attempt_reconciled_of_a_merchant_of_the_other_mode_is_refused_unless_despite_kcp_and_says_kcp_was_not_asked(
) {
    use base64::Engine;
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let held = an_approval_held_by_a_conflict_recorded_later(&app, &token, "held-other-mode").await;
    let live_key = base64::engine::general_purpose::STANDARD.encode([13u8; 32]);
    let from_a_live_shell = |payment: &'static [&'static str]| {
        let id = held.conflict.to_string();
        let mut args = vec!["attempt", "reconciled", "--id", &id, "--note", "cancelled"];
        args.extend(payment);
        let dir = tempfile::tempdir().unwrap();
        let mut command = openport_in_test_mode(dir.path(), &app.database_url, &args);
        command
            .env("OPENPORT_TEST_MODE", "false")
            .env("OPENPORT_MASTER_KEY", &live_key);
        async move {
            let out = tokio::task::spawn_blocking(move || command.output().expect("openport runs"))
                .await
                .unwrap();
            drop(dir);
            out
        }
    };

    let refused = from_a_live_shell(&["--payment", "failed"]).await;
    let said = ["OPENPORT_TEST_MODE", "--despite-kcp", "nothing changed"];
    assert_refused_changing_nothing(&app, &token, &held, &refused, &said).await;

    let out = from_a_live_shell(&["--payment", "failed", "--despite-kcp"]).await;
    let printed = printed_by_success(&out);
    assert!(printed.contains("merchant_uid is free"), "{printed}");
    assert!(printed.contains("not checked against KCP"), "{printed}");
    assert!(printed.contains("on your word"), "{printed}");
    assert!(app.conflicts().await.is_empty());
}

/// `attempt reconciled --payment paid` while KCP's inquiry does not answer: recorded on the
/// operator's word, as before, and the command now says it was not checked against KCP.
#[tokio::test]
async fn attempt_reconciled_while_kcp_does_not_answer_says_the_verdict_is_the_operators_word() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let held = an_approval_held_by_a_conflict_recorded_later(&app, &token, "held-no-answer").await;
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 500 }).times(20));
    let out = attempt_reconciled(&app, held.conflict, "kept", &["--payment", "paid"]).await;
    let printed = printed_by_success(&out);
    assert!(printed.contains("is paid"), "{printed}");
    assert!(printed.contains("not checked against KCP"), "{printed}");
    assert!(printed.contains("on your word"), "{printed}");
}

/// `openport reseal` with `OPENPORT_MASTER_KEY` = `current` and the previous keys `previous`,
/// outside test mode.
async fn reseal_live(database_url: &str, current: &str, previous: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = openport_in_test_mode(dir.path(), database_url, &["reseal"]);
    command
        .env("OPENPORT_TEST_MODE", "false")
        .env("OPENPORT_MASTER_KEY", current)
        .env("OPENPORT_PREVIOUS_MASTER_KEYS", previous);
    let out = tokio::task::spawn_blocking(move || command.output().expect("openport runs"))
        .await
        .unwrap();
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// `openport reseal` on a database still under the previous master key began with the start's
/// WARN "master-key rotation not applied yet: … run `openport reseal`": the operator running it
/// read that another command was meant. reseal does not say it; the other commands (`attempt
/// list`), run before the reseal, still do, and nothing does after it.
#[tokio::test]
async fn reseal_does_not_warn_that_the_rotation_it_applies_is_not_applied_yet() {
    use base64::Engine;
    const WARNING: &str = "master-key rotation not applied yet";
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (k1, k2) = (b64(71), b64(72));
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let with_keys = |args: &[&str], current: &str, previous: Option<&str>| {
        let mut command = openport_in_test_mode(dir.path(), &url, args);
        command.env("OPENPORT_MASTER_KEY", current);
        if let Some(p) = previous {
            command.env("OPENPORT_PREVIOUS_MASTER_KEYS", p);
        }
        let what = format!("{args:?}");
        async move {
            let out = tokio::task::spawn_blocking(move || command.output().expect("openport runs"))
                .await
                .unwrap();
            assert!(out.status.success(), "{what}: {out:?}");
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    with_keys(&["merchant", "create", "--name", "R", "--json"], &k1, None).await;

    let (_, listed) = with_keys(&["attempt", "list"], &k2, Some(&k1)).await;
    assert!(listed.contains(WARNING), "{listed}");
    let (printed, logged) = with_keys(&["reseal"], &k2, Some(&k1)).await;
    assert!(
        printed.contains(&format!(
            "resealed under key {}: 1 merchants",
            master_key_id(&k2)
        )),
        "{printed}"
    );
    assert!(!logged.contains(WARNING), "{logged}");
    assert!(!logged.contains("openport reseal"), "{logged}");
    let (_, listed) = with_keys(&["attempt", "list"], &k2, Some(&k1)).await;
    assert!(!listed.contains(WARNING), "{listed}");
}

#[tokio::test]
async fn reseal_on_a_live_database_tried_in_test_mode_reseals_what_it_can_and_names_each_value_it_cannot_open(
) {
    use base64::Engine;
    use openport::service::merchants::DEMO_IMP_CODE;
    use openport::service::secrets::{sealed_key_id, MasterKey};
    use openport::store::entity::merchant;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (k1, k2) = (b64(1), b64(2));
    let id_of = |k: &str| {
        MasterKey::from_config(Some(&SecretString::from(k.to_string())))
            .unwrap()
            .key_id()
            .to_string()
    };
    // Tried out in test mode without a master key: the demo merchant's KCP key and its customer's
    // billing key are sealed under the public test-mode key.
    let test = crate::helpers::spawn_app().await;
    let token = test.token().await;
    crate::billing::register(
        &test,
        &token,
        "tried-1",
        crate::helpers::test_cards::SHINHAN_CREDIT,
    )
    .await;
    // Then live with K1, which made its merchant from KCP_*.
    let key = k1.clone();
    let live = test
        .another_instance(move |c| {
            c.test_mode = false;
            c.master_key = Some(SecretString::from(key));
            c.public_url = Some("https://pay.example.com".into());
        })
        .await;
    let shop = live
        .app
        .demo
        .as_ref()
        .expect("the live merchant")
        .merchant
        .clone();
    // One of its values damaged (under K1's id, so the start-up key check lets it through, but
    // K1 does not open it).
    let damaged = format!(
        "v2:{}:{}",
        id_of(&k1),
        base64::engine::general_purpose::STANDARD.encode([7u8; 40])
    );
    let db = &live.app.gateway.db.write;
    let mut row = merchant::Entity::find_by_id(shop.id)
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .into_active_model();
    row.kcp_private_key_sealed = Set(damaged.clone());
    row.update(db).await.unwrap();

    // Rotated to K2: every value that opens is resealed, the damaged one fails the command, and
    // each value left is named by row and column, never by value.
    let (ok, printed) = reseal_live(&test.database_url, &k2, &k1).await;
    assert!(!ok, "a value this instance needs is left: {printed}");
    let test_key = MasterKey::test_mode_key_id();
    for expected in [
        format!("merchant {}: KCP private key, key id {}", shop.imp_code, id_of(&k1)),
        format!("merchant {DEMO_IMP_CODE}: KCP private key, key id {test_key} (openport's public test-mode key); not used in this mode"),
        format!("merchant {DEMO_IMP_CODE}: KCP key passphrase"),
        format!("billing key of merchant {DEMO_IMP_CODE} for customer_uid tried-1: batch key, key id {test_key}"),
        "no configured key opens 1 sealed value(s) this instance needs".to_string(),
    ] {
        assert!(printed.contains(&expected), "{expected}: {printed}");
    }
    assert!(!printed.contains(&damaged[12..]), "{printed}");
    for key in [&k1, &k2] {
        assert!(!printed.contains(key.as_str()), "{printed}");
    }
    let read = &live.app.gateway.db.read;
    let reread = |id| async move {
        merchant::Entity::find_by_id(id)
            .one(read)
            .await
            .unwrap()
            .unwrap()
    };
    let after = reread(shop.id).await;
    assert_eq!(
        sealed_key_id(&after.kcp_passphrase_sealed),
        Some(id_of(&k2).as_str()),
        "resealed although another value of the row could not be"
    );
    assert_eq!(after.kcp_private_key_sealed, damaged);

    // The damaged value entered again (here: its K1 original): the command succeeds, and the
    // demo merchant's values are still named but left as they are. Nor is it listed as a hash
    // to wait for: it never logs in on a live instance.
    let mut row = after.into_active_model();
    row.kcp_private_key_sealed = Set(shop.kcp_private_key_sealed.clone());
    row.update(db).await.unwrap();
    let (ok, printed) = reseal_live(&test.database_url, &k2, &k1).await;
    assert!(ok, "{printed}");
    assert!(
        printed.contains(&format!("merchant {DEMO_IMP_CODE}: KCP private key")),
        "{printed}"
    );
    assert!(
        !printed.contains(&format!("merchant {}: KCP", shop.imp_code)),
        "{printed}"
    );
    let hashes = printed
        .lines()
        .find(|l| l.starts_with("imp_secret hashes still under an old key"))
        .expect("the live merchant has not logged in since");
    assert!(hashes.contains(&shop.imp_code), "{hashes}");
    assert!(!hashes.contains(DEMO_IMP_CODE), "{hashes}");
    assert_eq!(
        sealed_key_id(&reread(shop.id).await.kcp_private_key_sealed),
        Some(id_of(&k2).as_str())
    );
}

/// `openport sandbox issue-cert` for `site_cd` into `dir/name`, the key under `passphrase`: the
/// pair KCP's partner admin hands out (here a renewal's, or another site's).
async fn issue_cert(dir: &Path, name: &str, site_cd: &str, passphrase: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    run_ok(
        dir,
        "sqlite::memory:",
        &[
            "sandbox",
            "issue-cert",
            "--site-cd",
            site_cd,
            "--out",
            out.to_str().unwrap(),
            "--passphrase",
            passphrase,
        ],
    )
    .await;
    out
}

/// `merchant set-kcp-cert` of `imp_code` with the certificate and key `sandbox issue-cert` wrote to
/// `cert_dir` and `key_dir`, the passphrase in `KCP_PRIVATE_KEY_PASSWORD` as an operator gives it;
/// `env` adds to the shell's environment.
async fn set_kcp_cert(
    database_url: &str,
    imp_code: &str,
    (cert_dir, key_dir): (&Path, &Path),
    passphrase: &str,
    env: &[(&str, &str)],
) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        cert_dir.join("splCert.pem"),
        key_dir.join("splPrikeyPKCS8.pem"),
    );
    let mut command = openport_in_test_mode(
        dir.path(),
        database_url,
        &[
            "merchant",
            "set-kcp-cert",
            "--imp-code",
            imp_code,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    command.env("KCP_PRIVATE_KEY_PASSWORD", passphrase);
    command.envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().expect("the openport binary runs"))
        .await
        .unwrap()
}

/// A KCP certificate expires, and KCP issues a new pair for the same site. `merchant
/// set-kcp-cert` installs it under the same merchant (its imp_key, secret, tokens unchanged). A
/// running instance built each merchant's connector once and kept it for its lifetime, so it went
/// on presenting the old certificate; now its next payment presents the new one and its cancels
/// are signed with the new key (the sandbox verifies a cancel's signature against the certificate
/// presented), a payment made under the old pair's included.
#[tokio::test]
async fn set_kcp_cert_renews_a_merchants_pair_and_a_running_instance_pays_and_cancels_with_it() {
    use openport::service::merchants::DEMO_IMP_CODE;
    let app = crate::helpers::spawn_app().await;
    let token = app.token().await;
    let before = app.paid(&token, "renew-before", 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let renewed = issue_cert(dir.path(), "renewed", "T0000", "renewed-pass").await;
    let cert = std::fs::read_to_string(renewed.join("splCert.pem")).unwrap();
    let new_cert_info = KcpCertificate::from_pem(&cert)
        .unwrap()
        .cert_info()
        .to_string();

    let out = set_kcp_cert(
        &app.database_url,
        DEMO_IMP_CODE,
        (&renewed, &renewed),
        "renewed-pass",
        &[],
    )
    .await;
    let printed = printed_by_success(&out);
    assert!(
        printed.contains("KCP certificate and private key replaced"),
        "{printed}"
    );
    let stored = openport::store::merchants::by_imp_code(&app.app.gateway.db.read, DEMO_IMP_CODE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.kcp_certificate_pem, cert);

    // The instance reads the merchant row again: told at once on PostgreSQL; on SQLite its cached
    // row is read again within a minute, which the test does not wait for.
    if app.database_url.starts_with("postgres") {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while app
            .app
            .gateway
            .merchant(stored.id)
            .await
            .unwrap()
            .kcp_certificate_pem
            != cert
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the change was not announced within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    } else {
        app.app.gateway.forget_merchant(None);
    }
    // Each rule is used only by a request presenting the renewed certificate.
    for path in [kcp_sandbox::paths::HUB_PAYMENT, kcp_sandbox::paths::CANCEL] {
        app.sandbox.inject(
            kcp_sandbox::FaultRule::new(path, kcp_sandbox::Fault::Delay { ms: 1 })
                .when("kcp_cert_info", new_cert_info.clone()),
        );
    }
    let after = app.paid(&token, "renew-after", 1000).await;
    for paid in [&after, &before] {
        let imp_uid = paid["imp_uid"].as_str().unwrap();
        let cancelled = app.cancel(&token, imp_uid, 1000).await;
        assert_eq!(cancelled["code"], 0, "{cancelled}");
        assert_eq!(cancelled["response"]["status"], "cancelled", "{cancelled}");
    }
    app.until_the_faults_are_used().await;
    app.assert_ledger_agrees().await;
}

/// What `merchant set-kcp-cert` refuses, changing nothing: a certificate of another site (KCP
/// would refuse every call: 9511), a key that is not the certificate's, a wrong passphrase, an
/// unknown merchant, and a shell configured otherwise than the merchant's instances (the key
/// would be sealed under a master key they do not have). Then it takes the renewal.
#[tokio::test]
async fn set_kcp_cert_refuses_another_sites_certificate_a_foreign_key_or_passphrase_and_changes_nothing(
) {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let printed = run_ok(
        dir.path(),
        &url,
        &["merchant", "create", "--name", "renewing shop", "--json"],
    )
    .await;
    let created: Value = serde_json::from_str(&printed).expect("JSON");
    let imp_code = created["imp_code"].as_str().unwrap().to_string();
    let db = openport::store::Db::connect(&url).await.unwrap();
    let stored = || async {
        openport::store::merchants::by_imp_code(&db.read, &imp_code)
            .await
            .unwrap()
            .unwrap()
    };
    let original = stored().await;
    let renewal = issue_cert(dir.path(), "renewal", "T0000", "renewal-pass").await;
    let other_pair = issue_cert(dir.path(), "other", "T0000", "renewal-pass").await;
    let other_site = issue_cert(dir.path(), "site", "A1234", "renewal-pass").await;
    let live_shell = [
        ("OPENPORT_TEST_MODE", "false"),
        (
            "OPENPORT_MASTER_KEY",
            "CwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCwsLCws=",
        ),
    ];
    for (code, (cert, key), pass, env, said) in [
        (
            imp_code.as_str(),
            (&other_site, &other_site),
            "renewal-pass",
            &[][..],
            "KCP site A1234's, not site T0000's",
        ),
        (
            &imp_code,
            (&renewal, &other_pair),
            "renewal-pass",
            &[],
            "private key does not match the certificate",
        ),
        (
            &imp_code,
            (&renewal, &renewal),
            "wrong-pass",
            &[],
            "wrong private key passphrase",
        ),
        (
            "imp99999999",
            (&renewal, &renewal),
            "renewal-pass",
            &[],
            "no merchant with imp_code imp99999999",
        ),
        (
            &imp_code,
            (&renewal, &renewal),
            "renewal-pass",
            &live_shell[..],
            "OPENPORT_TEST_MODE",
        ),
    ] {
        let out = set_kcp_cert(&url, code, (cert, key), pass, env).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}: taken");
        assert!(stderr.contains(said), "{said}: {stderr}");
        assert!(
            !stderr.contains(pass),
            "the passphrase was printed: {stderr}"
        );
        assert_eq!(stored().await, original, "{said}: changed");
    }

    printed_by_success(
        &set_kcp_cert(&url, &imp_code, (&renewal, &renewal), "renewal-pass", &[]).await,
    );
    let renewed = stored().await;
    let secrets = openport::app::master_key(&openport::config::Config::default()).unwrap();
    assert_eq!(
        renewed.kcp_certificate_pem,
        std::fs::read_to_string(renewal.join("splCert.pem")).unwrap()
    );
    assert_eq!(
        secrets
            .open_string(&renewed.kcp_private_key_sealed)
            .unwrap(),
        std::fs::read_to_string(renewal.join("splPrikeyPKCS8.pem")).unwrap()
    );
    assert_eq!(
        secrets.open_string(&renewed.kcp_passphrase_sealed).unwrap(),
        "renewal-pass"
    );
    let unchanged = |m: &openport::store::entity::merchant::Model| {
        (
            m.imp_key.clone(),
            m.imp_secret_hash.clone(),
            m.site_cd.clone(),
        )
    };
    assert_eq!(unchanged(&renewed), unchanged(&original));
}

/// The configuration of a live instance whose master key is `key` (base64), seeded with `KCP_*`
/// as `spawn_app` seeds it, unless `seed` changes that.
fn live_with(
    key: &str,
    seed: impl FnOnce(&mut openport::config::Config),
) -> impl FnOnce(&mut openport::config::Config) {
    let key = key.to_string();
    move |c| {
        c.test_mode = false;
        c.master_key = Some(SecretString::from(key));
        c.public_url = Some("https://pay.example.com".into());
        seed(c);
    }
}

/// What every WARN about a `KCP_*` seed that is not applied says.
const SEED_NOT_APPLIED: &str = "the KCP_* settings make the first live merchant only";

/// The log lines of this test binary that name `imp_code` and contain `text`.
fn logged(imp_code: &str, text: &str) -> Vec<String> {
    crate::helpers::captured_logs()
        .lines()
        .filter(|l| l.contains(imp_code) && l.contains(text))
        .map(str::to_string)
        .collect()
}

/// Once a live merchant exists, the seed's `KCP_*` make no merchant and change none. Changed
/// after a renewal, or mistyped, they were ignored without a word (a key file that does not
/// exist, a wrong passphrase, another site's certificate). Each is now a WARN at start naming the
/// setting and `merchant set-kcp-cert`; a seed that still names the merchant's pair says nothing.
#[tokio::test]
async fn a_start_whose_kcp_seed_is_not_the_live_merchants_pair_warns_naming_set_kcp_cert() {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([21u8; 32]);
    let live = crate::helpers::spawn_app_with(live_with(&key, |_| {})).await;
    let imp_code = live
        .app
        .demo
        .as_ref()
        .expect("the live merchant")
        .merchant
        .imp_code
        .clone();
    let seed_warnings = || logged(&imp_code, SEED_NOT_APPLIED).len();
    assert_eq!(seed_warnings(), 0);

    let live = live
        .restart(live_with(&key, |c| {
            c.kcp.private_key_path = Some("/nonexistent/key.pem".into())
        }))
        .await;
    let said = logged(
        &imp_code,
        "KCP_PRIVATE_KEY_PATH /nonexistent/key.pem cannot be read",
    );
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains(" WARN ") && said[0].contains("merchant set-kcp-cert"),
        "{said:?}"
    );

    let live = live
        .restart(live_with(&key, |c| {
            c.kcp.private_key_password = Some(SecretString::from("totally-wrong"))
        }))
        .await;
    let said = logged(&imp_code, "KCP_PRIVATE_KEY_PASSWORD");
    assert!(
        said.iter()
            .any(|l| l.contains("wrong private key passphrase") && l.contains("set-kcp-cert")),
        "{said:?}"
    );
    assert!(!crate::helpers::captured_logs().contains("totally-wrong"));

    let dir = tempfile::tempdir().unwrap();
    let other = issue_cert(dir.path(), "other", "CD456", "changeit").await;
    let cert = std::fs::read_to_string(other.join("splCert.pem")).unwrap();
    let key_path = other.join("splPrikeyPKCS8.pem").display().to_string();
    let live = live
        .restart(live_with(&key, move |c| {
            c.kcp.site_cd = Some("CD456".into());
            c.kcp.cert_info = Some(cert);
            c.kcp.private_key_path = Some(key_path);
            c.kcp.private_key_password = Some(SecretString::from("changeit"));
        }))
        .await;
    let said = logged(&imp_code, "KCP_CERT_INFO is not applied");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("CD456") && said[0].contains("set-kcp-cert --imp-code"),
        "{said:?}"
    );

    let before = seed_warnings();
    let live = live.restart(live_with(&key, |_| {})).await;
    assert_eq!(
        seed_warnings(),
        before,
        "the merchant's own seed was warned about"
    );
    assert_eq!(
        openport::store::merchants::all(&live.app.gateway.db.read)
            .await
            .unwrap()
            .len(),
        1,
        "no merchant was made"
    );
}

/// KCP's public test pair, whose certificate expired on 2026-06-28 (spec/kcp.md §3).
fn expired_kcp_pair() -> (String, String) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kcp");
    (
        fixtures.join("splCert.pem").display().to_string(),
        fixtures.join("splPrikeyPKCS8.pem").display().to_string(),
    )
}

/// An expired certificate is taken (it must not stop the key from loading, spec/kcp.md §3) but no
/// longer silently: `merchant create` on a live configuration warns, naming `set-kcp-cert`, and so
/// does every start of a live instance serving the merchant.
#[tokio::test]
async fn an_expired_kcp_certificate_is_taken_with_a_warning_at_merchant_create_and_at_every_start()
{
    let (cert, key_file) = expired_kcp_pair();
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = openport_in_test_mode(
        dir.path(),
        &url,
        &[
            "merchant",
            "create",
            "--name",
            "old shop",
            // A live merchant's own site code: KCP's public test sites are refused outside test
            // mode. KCP's certificates do not name their site, so this expired one is taken.
            "--site-cd",
            "AB123",
            "--cert",
            &cert,
            "--key",
            &key_file,
            "--json",
        ],
    );
    command
        .env("OPENPORT_TEST_MODE", "false")
        .env(
            "OPENPORT_MASTER_KEY",
            "DAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw=",
        )
        .env("KCP_PRIVATE_KEY_PASSWORD", "changeit");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let created: Value = serde_json::from_str(&printed_by_success(&out)).expect("JSON");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(" WARN ")
            && stderr.contains("KCP certificate has expired (notAfter 2026-06-28T00:34:37Z)")
            && stderr.contains(&format!(
                "set-kcp-cert --imp-code {}",
                created["imp_code"].as_str().unwrap()
            )),
        "{stderr}"
    );

    // The seed's first live merchant is warned about when it is made, then at every start.
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([22u8; 32]);
    let seed = move |c: &mut openport::config::Config| {
        c.kcp.cert_info = Some(std::fs::read_to_string(&cert).unwrap());
        c.kcp.private_key_path = Some(key_file);
        c.kcp.private_key_password = Some(SecretString::from("changeit"));
    };
    let live = crate::helpers::spawn_app_with(live_with(&key, seed.clone())).await;
    let imp_code = live
        .app
        .demo
        .as_ref()
        .expect("the live merchant")
        .merchant
        .imp_code
        .clone();
    let warned = || logged(&imp_code, "KCP certificate has expired").len();
    assert_eq!(warned(), 1);
    let live = live.restart(live_with(&key, seed)).await;
    assert_eq!(warned(), 2);
    assert!(
        logged(&imp_code, SEED_NOT_APPLIED).is_empty(),
        "the seed is the merchant's pair: {:?}",
        logged(&imp_code, SEED_NOT_APPLIED)
    );
    drop(live);
}

/// Runs the binary with `env` added to the test environment.
async fn run_with(
    dir: &Path,
    database_url: &str,
    args: &[&str],
    env: Vec<(&'static str, String)>,
) -> Output {
    let mut command = openport_in_test_mode(dir, database_url, args);
    command.envs(env);
    tokio::task::spawn_blocking(move || command.output().expect("the openport binary runs"))
        .await
        .unwrap()
}

/// Outside test mode `merchant create` without `--site-cd` made a live merchant under KCP's public
/// test site T0000: every payment of the shop then failed as a site mismatch, which it saw as a
/// declined card. It now requires the contract's site code and refuses KCP's public test sites.
#[tokio::test]
async fn merchant_create_outside_test_mode_requires_the_contracts_site_code_and_refuses_kcps_test_sites(
) {
    use base64::Engine;
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default()).unwrap();
    let issued = ca.issue_certificate("AB123", "S3cret-pass").unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &issued.certificate_pem).unwrap();
    std::fs::write(&key, &issued.encrypted_private_key_pem).unwrap();
    let live = || {
        vec![
            ("OPENPORT_TEST_MODE", "false".to_string()),
            (
                "OPENPORT_MASTER_KEY",
                base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            ),
            ("KCP_PRIVATE_KEY_PASSWORD", "S3cret-pass".to_string()),
        ]
    };
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let create = [
        "merchant", "create", "--name", "My Shop", "--cert", cert, "--key", key,
    ];

    let out = run_with(dir.path(), &url, &create, live()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--site-cd is required outside test mode"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("imp_secret"));

    for site in ["T0000", "T0007", "A52Q7", "t0000"] {
        let args = [&create[..], &["--site-cd", site]].concat();
        let out = run_with(dir.path(), &url, &args, live()).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{site}: {stderr}");
        assert!(
            stderr.contains(&format!("--site-cd {site}"))
                && stderr.contains("KCP's public test sites"),
            "{site}: {stderr}"
        );
    }
    let listed = run_ok(dir.path(), &url, &["merchant", "list"]).await;
    assert!(!listed.contains("My Shop"), "nothing was made: {listed}");

    let args = [&create[..], &["--site-cd", "AB123", "--json"]].concat();
    let out = run_with(dir.path(), &url, &args, live()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(created["site_cd"], "AB123", "{created}");
}

/// An encrypted key given without `KCP_PRIVATE_KEY_PASSWORD` was reported as "wrong private key
/// passphrase", and the operator looked for a typo in a passphrase never given.
#[tokio::test]
async fn merchant_create_with_an_encrypted_key_and_no_passphrase_names_kcp_private_key_password() {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key_path, _) = kcp_test_credentials();
    let cert_file = dir.path().join("cert.pem");
    std::fs::write(&cert_file, cert).unwrap();
    let out = run(
        dir.path(),
        &url,
        &[
            "merchant",
            "create",
            "--name",
            "no passphrase",
            "--cert",
            cert_file.to_str().unwrap(),
            "--key",
            &key_path,
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no passphrase was given") && stderr.contains("KCP_PRIVATE_KEY_PASSWORD"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong private key passphrase"), "{stderr}");
}

/// `DATABASE_URL=sqlite:///var/lib/openport/pay.db` (the form an operator writes for a new file)
/// failed with SQLite's "unable to open database file" (code 14); only the README said why.
#[tokio::test]
async fn a_sqlite_url_naming_a_missing_file_without_mode_rwc_says_to_add_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("pay.db");
    let url = format!("sqlite://{}", missing.display());
    // `merchant create`: the one operator command that makes a new database (the others refuse
    // one, `operator_commands_refuse_a_new_database_but_merchant_create_…`).
    let create = ["merchant", "create", "--name", "first"];
    let out = run(dir.path(), &url, &create).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("add ?mode=rwc"),
        "{stderr}"
    );
    assert!(!missing.exists());
    run_ok(dir.path(), &format!("{url}?mode=rwc"), &create).await;
    assert!(missing.exists());
}

/// An older binary on a database a newer one migrated (a rolling deploy half done, a rollback
/// without restoring the backup) stopped with sea-orm's "Migration file of version … is missing",
/// which reads as a broken installation. `serve` (`Db::migrate`) and the operator commands now say
/// what happened, name the versions and what to do.
#[tokio::test]
async fn an_older_openport_on_a_database_a_newer_one_migrated_says_so_naming_the_versions() {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &url, &["migrate"]).await;
    let db = Database::connect(&url).await.unwrap();
    db.execute(statement(
        &db,
        "INSERT INTO seaql_migrations (version, applied_at) VALUES \
         ('m20991231_000099_future', 4102444800), ('m20991231_000100_later', 4102444801)",
    ))
    .await
    .unwrap();
    let said = |text: &str| {
        text.contains("migrated by a newer version of openport")
            && text.contains("m20991231_000099_future, m20991231_000100_later")
            && text.contains("restore the backup taken before the upgrade")
            && text.contains("\"Upgrades\"")
            && !text.contains("is missing")
    };

    let start = openport::store::Db::connect(&url).await.unwrap();
    let refused = start
        .migrate()
        .await
        .expect_err("a newer database")
        .to_string();
    assert!(said(&refused), "serve's migration: {refused}");
    drop(start);
    for args in [&["migrate"][..], &["merchant", "list"]] {
        let out = run(dir.path(), &url, args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(said(&stderr), "{args:?}: {stderr}");
    }
    assert_eq!(
        applied_migrations(&db).await,
        migration::Migrator::migrations().len() as i64 + 2,
        "nothing was applied or removed"
    );
}

/// `merchant redirect-origins`: prints a merchant's redirect origins, replaces them with the
/// `--set` ones (normalised) or removes them (`--clear`); a running instance checks the next
/// mobile checkout against the list at once. An entry that is not an origin, `--set` beside
/// `--clear`, or an unknown imp_code fails, saying why, and changes nothing.
#[tokio::test]
async fn merchant_redirect_origins_sets_shows_and_clears_the_list_a_running_instance_checks() {
    let app = crate::helpers::spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let url = app.database_url.clone();
    let command = ["merchant", "redirect-origins", "--imp-code", "imp00000000"];
    let checkout = |merchant_uid: &str| {
        json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://shop.test/cart",
               "params": {"merchant_uid": merchant_uid, "amount": 1000,
                          "m_redirect_url": "https://evil.example/login"}})
    };

    let shown = run_ok(dir.path(), &url, &command).await;
    assert!(shown.contains("no redirect origins"), "{shown}");

    let mut set = command.to_vec();
    set.extend([
        "--set",
        "HTTPS://Shop.Test/",
        "--set",
        "https://m.shop.test:443",
    ]);
    let printed = run_ok(dir.path(), &url, &set).await;
    let listed: Vec<&str> = printed.lines().skip(1).collect();
    assert_eq!(
        listed,
        ["https://shop.test", "https://m.shop.test"],
        "{printed}"
    );
    assert_eq!(run_ok(dir.path(), &url, &command).await, printed);
    let (_, refused) = app
        .post("/checkout/request", None, checkout("cli-elsewhere"))
        .await;
    assert_eq!(refused["code"], -1, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("https://evil.example"),
        "{refused}"
    );

    for (args, why) in [
        (
            vec![
                "--imp-code",
                "imp00000000",
                "--set",
                "https://shop.test/done",
            ],
            "https://shop.test/done",
        ),
        (
            vec![
                "--imp-code",
                "imp00000000",
                "--set",
                "https://a.test",
                "--clear",
            ],
            "--clear",
        ),
        (
            vec!["--imp-code", "imp99999999", "--set", "https://shop.test"],
            "no merchant with imp_code imp99999999",
        ),
    ] {
        let mut refused = vec!["merchant", "redirect-origins"];
        refused.extend(&args);
        let out = run(dir.path(), &url, &refused).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    assert_eq!(run_ok(dir.path(), &url, &command).await, printed);

    let mut clear = command.to_vec();
    clear.push("--clear");
    let cleared = run_ok(dir.path(), &url, &clear).await;
    assert!(cleared.contains("no redirect origins"), "{cleared}");
    let (_, started) = app
        .post("/checkout/request", None, checkout("cli-anywhere"))
        .await;
    assert_eq!(started["code"], 0, "{started}");
}

/// Runs the binary until it exits, 60 s at most: a command expected to refuse at once (`serve`
/// among them) that runs on instead is killed and the test fails with what it printed.
async fn run_refused_at_once(dir: &Path, database_url: &str, args: &[&str]) -> Output {
    use std::process::Stdio;
    let mut command = openport_in_test_mode(dir, database_url, args);
    let args = format!("{args:?}");
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the openport binary runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().expect("waits").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "openport {args} still ran after 60 s: {}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.wait_with_output().expect("output")
    })
    .await
    .unwrap()
}

/// `serve --config /etc/openport/openport.tmol` (a typo) started in test mode with the demo
/// merchant, the file silently skipped. `serve` and every operator command refuse a file they
/// cannot read, naming it, with exit status 1, and make nothing.
#[tokio::test]
async fn a_configuration_file_that_cannot_be_read_refuses_serve_and_every_operator_command_naming_it(
) {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("openport.tmol");
    let missing = missing.to_str().unwrap();
    for args in [
        &["serve", "--config", missing][..],
        &["migrate", "--config", missing],
        &["merchant", "create", "--name", "typo", "--config", missing],
        &["merchant", "list", "--config", missing],
        &["schedule", "list", "--config", missing],
        &["reseal", "--config", missing],
    ] {
        let out = run_refused_at_once(dir.path(), &url, args).await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(missing), "{args:?}: {stderr}");
        assert!(!stdout.contains("demo merchant"), "{args:?}: {stdout}");
    }
    let db = Database::connect(&url).await.unwrap();
    let tables = schema(&db).await;
    assert!(
        !tables.iter().any(|line| line.contains("merchants")),
        "a database was made: {tables:#?}"
    );
}

/// A misspelt `OPENPORT_…` variable was ignored without a word (docs/operations.md itself named
/// `OPENPORT_DATABASE__URL`, which nothing reads). `serve` and the operator commands warn at
/// start, naming each variable no setting reads and never its value; openport's own tools'
/// variables (`OPENPORT_URL`) are not named.
#[tokio::test]
async fn serve_and_operator_commands_warn_naming_the_openport_variables_no_setting_reads_never_their_values(
) {
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let unread = [
        ("OPENPORT_DATABASE__URL", "postgres://shop:hunter2@db/shop"),
        ("OPENPORT_KCP__API_BAS", "https://kcp-typo.example"),
    ];
    let mut command = openport_in_test_mode(dir.path(), &url, &["serve"]);
    command
        .envs(unread)
        .env("OPENPORT_URL", "http://127.0.0.1:8080/");
    let served = ServeProcess::start(command);
    let printed = served.printed();
    drop(served);
    assert!(printed.contains(" WARN "), "{printed}");
    for (name, value) in unread {
        assert!(printed.contains(name), "{name}: {printed}");
        assert!(!printed.contains(value), "{value}: {printed}");
    }
    assert!(!printed.contains("OPENPORT_URL"), "{printed}");

    let mut command = openport_in_test_mode(dir.path(), &url, &["merchant", "list"]);
    command.envs(unread);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    for (name, value) in unread {
        assert!(stderr.contains(name), "{name}: {stderr}");
        assert!(!stdout.contains(name), "logs go to stderr: {stdout}");
        assert!(
            !stderr.contains(value) && !stdout.contains(value),
            "{value}"
        );
    }
}

/// `sandbox issue-cert --out DIR` overwrote an existing splCert.pem / splPrikeyPKCS8.pem (KCP's
/// own file names, so possibly a real pair), and an overwritten key file kept its old mode. A
/// directory holding either file is refused, nothing written.
#[tokio::test]
async fn sandbox_issue_cert_into_a_directory_holding_either_file_writes_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let out_arg = out_dir.to_str().unwrap();
    let cwd = dir.path();
    let issue = |site: &'static str| {
        let args = ["sandbox", "issue-cert", "--site-cd", site, "--out", out_arg];
        async move { run(cwd, "sqlite::memory:", &args).await }
    };
    let first = issue("A1234").await;
    assert!(first.status.success(), "{first:?}");
    let (cert, key) = (
        out_dir.join("splCert.pem"),
        out_dir.join("splPrikeyPKCS8.pem"),
    );
    let before = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());

    let again = issue("B5678").await;
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exists; choose another --out"), "{stderr}");
    assert!(stderr.contains("splCert.pem"), "{stderr}");
    assert_eq!(
        (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()),
        before,
        "overwritten"
    );

    // The key alone (half a pair copied in): refused too, no certificate written beside it.
    std::fs::remove_file(&cert).unwrap();
    let key_only = issue("B5678").await;
    let stderr = String::from_utf8_lossy(&key_only.stderr);
    assert_eq!(key_only.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("splPrikeyPKCS8.pem"), "{stderr}");
    assert!(
        !cert.exists(),
        "a certificate was written beside the old key"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before.1);
}

/// `merchant create` from a shell without `OPENPORT_TEST_MODE=false`, on the database live
/// instances serve, made a test-mode merchant without a word. It says the mode it made the
/// merchant in, and in test mode refuses a database holding live merchants, naming the setting.
/// A live merchant made on a database holding only test ones is the usual first live setup.
#[tokio::test]
async fn merchant_create_says_its_mode_and_in_test_mode_refuses_a_database_holding_live_merchants()
{
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let created: Value = serde_json::from_str(
        &run_ok(
            dir.path(),
            &url,
            &["merchant", "create", "--name", "test shop", "--json"],
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(created["test_mode"], json!(true), "{created}");
    let printed = run_ok(dir.path(), &url, &["merchant", "create", "--name", "T2"]).await;
    assert!(printed.lines().any(|l| l == "test_mode  true"), "{printed}");

    // A live merchant beside the test ones: the first live setup.
    let pair = issue_cert(dir.path(), "live", "AB123", "changeit").await;
    let (cert, key) = (pair.join("splCert.pem"), pair.join("splPrikeyPKCS8.pem"));
    let create_live = |url: &str| {
        let mut command = openport_in_test_mode(
            dir.path(),
            url,
            &[
                "merchant",
                "create",
                "--name",
                "live shop",
                "--site-cd",
                "AB123",
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--json",
            ],
        );
        command
            .env("OPENPORT_TEST_MODE", "false")
            .env(
                "OPENPORT_MASTER_KEY",
                "DAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw=",
            )
            .env("KCP_PRIVATE_KEY_PASSWORD", "changeit");
        async move {
            let out = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            let live: Value = serde_json::from_str(&printed_by_success(&out)).expect("JSON");
            assert_eq!(live["test_mode"], json!(false), "{live}");
        }
    };
    create_live(&url).await;

    // The database of live instances (live merchants only, their secrets under their master
    // key).
    let (url, _live_db_dir) = fresh_database().await;
    create_live(&url).await;

    // Now a shell with the live instances' master key but not their mode (test mode is the
    // default) is refused, naming the setting, and makes nothing.
    let listed = || run_ok(dir.path(), &url, &["merchant", "list"]);
    let before = listed().await;
    for args in [
        &["merchant", "create", "--name", "oops"][..],
        &["merchant", "create", "--name", "oops", "--json"],
    ] {
        let mut command = openport_in_test_mode(dir.path(), &url, args);
        command.env(
            "OPENPORT_MASTER_KEY",
            "DAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw=",
        );
        let out = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("OPENPORT_TEST_MODE=false"), "{stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("imp_secret"),
            "{out:?}"
        );
    }
    assert_eq!(listed().await, before, "a merchant was made");
}

/// In test mode the `KCP_*` settings gave the demo merchant, whose imp_key and imp_secret README
/// publishes, the operator's own KCP site key, sealed under the public test-mode master key: a
/// test against KCP staging handed anyone who read README the site's key. With a pair that is
/// neither the sandbox CA's nor of KCP's public test sites, a start without `OPENPORT_MASTER_KEY`
/// is refused, naming it, nothing made; with one, the first merchant gets fresh credentials,
/// written to a file as a live instance's first merchant's are, and the demo ones get no token.
#[tokio::test]
async fn a_test_mode_start_with_the_operators_own_kcp_pair_needs_a_master_key_and_makes_no_demo_merchant(
) {
    let (cert_file, key_file) = expired_kcp_pair();
    let cert = std::fs::read_to_string(&cert_file).unwrap();
    let (url, _db_dir) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let own_pair = |command: &mut std::process::Command| {
        command
            .env("KCP_SITE_CD", "AB123")
            .env("KCP_CERT_INFO", &cert)
            .env("KCP_PRIVATE_KEY_PATH", &key_file)
            .env("KCP_PRIVATE_KEY_PASSWORD", "changeit")
            .env("OPENPORT_KCP__API_BASE", "https://stg-spl.kcp.co.kr");
    };

    let mut command = openport_in_test_mode(dir.path(), &url, &["serve"]);
    own_pair(&mut command);
    let out = tokio::task::spawn_blocking(move || {
        use std::process::Stdio;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!stdout.contains("openport listening"), "started: {stdout}");
    assert!(!stdout.contains("demo merchant"), "{stdout}");
    assert!(stderr.contains("OPENPORT_MASTER_KEY"), "{stdout}\n{stderr}");
    let db = Database::connect(&url).await.unwrap();
    let merchants = |db: DatabaseConnection| async move {
        if !schema(&db).await.iter().any(|l| l.contains("merchants")) {
            return vec![];
        }
        sea_orm::JsonValue::find_by_statement(statement(&db, "SELECT * FROM merchants"))
            .all(&db)
            .await
            .unwrap()
    };
    assert!(
        merchants(db.clone()).await.is_empty(),
        "a merchant was made"
    );

    let mut command = openport_in_test_mode(dir.path(), &url, &["serve"]);
    own_pair(&mut command);
    command.env(
        "OPENPORT_MASTER_KEY",
        "Dg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4ODg4=",
    );
    let served = ServeProcess::start(command);
    let printed = served.stdout.clone();
    assert!(!printed.contains("demo merchant"), "{printed}");
    assert!(
        !printed.contains(openport::service::merchants::DEMO_IMP_SECRET),
        "{printed}"
    );
    let made = merchants(db.clone()).await;
    assert_eq!(made.len(), 1, "{made:?}");
    let imp_code = made[0]["imp_code"].as_str().unwrap();
    assert_ne!(
        made[0]["imp_key"].as_str(),
        Some(openport::service::merchants::DEMO_IMP_KEY)
    );
    assert!(
        made[0]["test_mode"] == json!(true) || made[0]["test_mode"] == json!(1),
        "{made:?}"
    );
    let file = dir
        .path()
        .join(format!("openport-credentials-{imp_code}.txt"));
    let text = std::fs::read_to_string(&file).expect("the credentials file");
    assert!(text.contains("imp_secret="), "{text}");
    assert!(
        printed.contains(&format!("openport-credentials-{imp_code}.txt")),
        "{printed}"
    );
    let (status, body) = demo_token_request(&served).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// Review rN, F3: a `redirect_origins` value written by hand that is not a list of origins
/// refuses every mobile redirect, but `GET …/redirect-origins` answered `"origins": []` and the
/// command printed "mobile buyers may be redirected to any http(s) URL", the opposite of what
/// the gateway does. Both now say the value cannot be read and that every redirect is refused;
/// setting the list again ends it.
#[tokio::test]
async fn an_unreadable_stored_redirect_origins_value_is_reported_as_refusing_every_redirect() {
    let app = crate::helpers::spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let url = app.database_url.clone();
    let id = app.app.demo.as_ref().expect("demo merchant").merchant.id;
    let path = format!("/admin/merchants/{id}/redirect-origins");
    let command = ["merchant", "redirect-origins", "--imp-code", "imp00000000"];
    let checkout = |merchant_uid: &str| {
        json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://shop.test/cart",
               "params": {"merchant_uid": merchant_uid, "amount": 1000,
                          "m_redirect_url": "https://shop.test/done"}})
    };
    crate::helpers::execute(
        &app,
        vec![format!(
            "UPDATE merchants SET redirect_origins = 'https://shop.test' WHERE id = {id}"
        )],
    )
    .await;

    let (status, body) = app.get(&path, Some(crate::helpers::ADMIN_TOKEN)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["response"]["unreadable"], true, "{body}");
    assert_eq!(body["response"]["origins"], Value::Null, "not `[]`: {body}");
    let (_, refused) = app
        .post("/checkout/request", None, checkout("cli-unreadable"))
        .await;
    assert_eq!(refused["code"], -1, "every redirect is refused: {refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("읽을 수 없어"),
        "{refused}"
    );

    let shown = run_ok(dir.path(), &url, &command).await;
    assert!(!shown.contains("may be redirected to any"), "{shown}");
    assert!(
        shown.contains("cannot be read (https://shop.test)"),
        "{shown}"
    );
    assert!(
        shown.contains("every mobile checkout and redirect is refused"),
        "{shown}"
    );
    assert!(!shown.contains("  "), "no run of spaces: {shown}");

    let mut set = command.to_vec();
    set.extend(["--set", "https://shop.test"]);
    run_ok(dir.path(), &url, &set).await;
    let (_, started) = app
        .post("/checkout/request", None, checkout("cli-readable"))
        .await;
    assert_eq!(started["code"], 0, "{started}");
    let (_, body) = app.get(&path, Some(crate::helpers::ADMIN_TOKEN)).await;
    assert_eq!(body["response"]["unreadable"], false, "{body}");
    assert_eq!(body["response"]["origins"], json!(["https://shop.test"]));

    let mut clear = command.to_vec();
    clear.push("--clear");
    let cleared = run_ok(dir.path(), &url, &clear).await;
    assert!(
        cleared.contains("may be redirected to any http(s) URL a checkout names"),
        "one line, no run of spaces: {cleared}"
    );
}
