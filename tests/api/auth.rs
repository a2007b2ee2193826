use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;
use openport::service::merchants::{DEMO_IMP_KEY, DEMO_IMP_SECRET};

#[tokio::test]
async fn get_token_returns_the_same_token_while_it_is_valid() {
    let app = spawn_app().await;
    let (s1, b1) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;
    let (s2, b2) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(b1["code"], 0);
    assert!(b1["message"].is_null());
    let r = &b1["response"];
    assert_eq!(r["access_token"], b2["response"]["access_token"]);
    assert_eq!(
        r["expired_at"].as_i64().unwrap() - r["now"].as_i64().unwrap(),
        1800
    );
    assert_eq!(r["access_token"].as_str().unwrap().len(), 40);
}

#[tokio::test]
async fn a_token_asked_for_in_its_last_minute_is_extended_by_five_minutes() {
    let app = spawn_app().await;
    let first = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await
        .1;
    let expired_at = first["response"]["expired_at"].as_i64().unwrap();
    app.advance(1800 - 30);
    let again = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await
        .1;
    assert_eq!(
        again["response"]["access_token"],
        first["response"]["access_token"]
    );
    assert_eq!(
        again["response"]["expired_at"].as_i64().unwrap(),
        expired_at + 300
    );
}

#[tokio::test]
async fn get_token_accepts_a_form_body() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(app.url("/users/getToken"))
        .form(&[("imp_key", DEMO_IMP_KEY), ("imp_secret", DEMO_IMP_SECRET)])
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::TestApp::read(res).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 0);
}

/// The npm clients `iamport` and `iamporter` default to `imp_apiKey` with iamport's public test
/// secret (iamport matched keys without regard to case): with openport's demo merchant, whose key
/// is `imp_apikey`, they get a token unchanged. Only a key no merchant has as written is read
/// again in lower case, and the secret is still checked to the letter.
#[tokio::test]
async fn an_imp_key_in_other_case_finds_its_merchant_and_the_secret_is_still_exact() {
    let app = spawn_app().await;
    for key in ["imp_apiKey", "IMP_APIKEY"] {
        let (status, body) = app
            .post(
                "/users/getToken",
                None,
                json!({"imp_key": key, "imp_secret": DEMO_IMP_SECRET}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{key}: {body}");
        let token = body["response"]["access_token"].as_str().unwrap();
        let (status, _) = app.get("/payments/status/all", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{key}: the token works");
    }
    let (status, _) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": "imp_apiKey", "imp_secret": DEMO_IMP_SECRET.to_uppercase()}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the secret's case counts");
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_is_401_and_missing_ones_are_named() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], -1);
    let (status, _) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": "unknown", "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.post("/users/getToken", None, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["message"],
        "imp_key, imp_secret 파라메터가 누락되었습니다."
    );
}

#[tokio::test]
async fn every_token_transport_is_accepted() {
    let app = spawn_app().await;
    let token = app.token().await;
    let url = app.url("/payments/imp_000000000000");
    let sends = [
        app.http
            .get(&url)
            .header("Authorization", format!("Bearer {token}")),
        app.http.get(&url).header("Authorization", token.clone()),
        // The scheme in any case, and a tab after it (RFC 9110).
        app.http
            .get(&url)
            .header("Authorization", format!("BEARER {token}")),
        app.http
            .get(&url)
            .header("Authorization", format!("Bearer\t{token}")),
        app.http.get(&url).header("X-ImpTokenHeader", token.clone()),
        app.http.get(format!("{url}?_token={token}")),
    ];
    for req in sends {
        // Authenticated: the unknown payment is a 404, not a 401.
        let (status, body) = crate::helpers::TestApp::read(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["message"], "존재하지 않는 결제정보입니다.");
    }
}

#[tokio::test]
async fn authorization_wins_over_x_imp_token_header_when_both_are_sent() {
    let app = spawn_app().await;
    let token = app.token().await;
    let url = app.url("/payments/imp_000000000000");
    let both = |authorization: &str, legacy: &str| {
        app.http
            .get(&url)
            .header("Authorization", authorization)
            .header("X-ImpTokenHeader", legacy)
    };
    let (status, body) = crate::helpers::TestApp::read(
        both(&format!("Bearer {token}"), "not-a-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "authenticated: {body}");
    let (status, body) =
        crate::helpers::TestApp::read(both("not-a-token", &token).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["message"], "Unauthorized");
}

#[tokio::test]
async fn a_missing_unknown_or_expired_token_is_401_never_403() {
    let app = spawn_app().await;
    let (status, body) = app.get("/payments/imp_000000000000", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"code": -1, "message": "Unauthorized", "response": null})
    );
    let (status, _) = app
        .get(
            "/payments/imp_000000000000",
            Some("0123456789abcdef0123456789abcdef01234567"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = app.token().await;
    app.advance(1801);
    let (status, _) = app.get("/payments/imp_000000000000", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Many threads, so that the calls really overlap on both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_first_get_token_calls_on_two_instances_return_one_token() {
    let first = spawn_app().await;
    let second = first.another_instance(|_| {}).await;
    let calls = (0..32).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        app.post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
    });
    let results = futures::future::join_all(calls).await;
    let mut tokens: Vec<&str> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["response"]["access_token"].as_str().unwrap()
        })
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "{results:?}");
}

/// A transaction holding `access_tokens` locked against writes (PostgreSQL), and a getToken of
/// the demo merchant sent meanwhile, which reads and then waits for the lock to write: its status
/// and body once the transaction ends.
async fn get_token_behind_a_token_table_lock(
    app: &crate::helpers::TestApp,
) -> (
    openport::store::WriteTransaction,
    tokio::task::JoinHandle<(StatusCode, String)>,
) {
    use sea_orm::ConnectionTrait;
    let lock = app.app.gateway.db.write.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE access_tokens IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let asking = tokio::spawn({
        let http = app.http.clone();
        let url = app.url("/users/getToken");
        async move {
            let res = http
                .post(url)
                .json(&json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}))
                .send()
                .await
                .unwrap();
            (res.status(), res.text().await.unwrap())
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!asking.is_finished(), "getToken's write waits for the lock");
    (lock, asking)
}

/// What `openport merchant new-secret` does to the demo merchant, in its one transaction `txn`:
/// a new secret's hash, and every token deleted.
async fn renew_secret_in(
    txn: &openport::store::WriteTransaction,
    gateway: &openport::service::Gateway,
) {
    use sea_orm::ConnectionTrait;
    let new_hash = gateway.secrets.secret_hash("a-new-secret");
    txn.execute_unprepared(&format!(
        "UPDATE merchants SET imp_secret_hash = '{new_hash}' WHERE imp_key = '{DEMO_IMP_KEY}'"
    ))
    .await
    .unwrap();
    txn.execute_unprepared("DELETE FROM access_tokens")
        .await
        .unwrap();
}

/// Two instances at a token's expiry (PostgreSQL): one extends the token in its last minute while
/// the other, whose clock already saw it expired, replaces it. The extension must not answer a
/// token that no longer exists (every instance would then refuse it for up to five minutes).
#[tokio::test]
async fn a_token_replaced_while_another_instance_extends_it_is_not_handed_out() {
    use openport::service::secrets::token_digest;
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the two writes one after the other
    }
    let first = app.token().await;
    app.advance(openport::service::auth::TOKEN_TTL_SECS - 30);
    let now = chrono::Utc::now().timestamp() + openport::service::auth::TOKEN_TTL_SECS - 30;
    let gateway = app.app.gateway.clone();
    let replacement = "ab".repeat(20);

    // The other instance's replacement, held uncommitted until this one's extension waits.
    let (other, asking) = get_token_behind_a_token_table_lock(&app).await;
    other
        .execute(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "UPDATE access_tokens SET token_sha256 = $1, token_sealed = $2, created_at = $3, \
             expires_at = $4 WHERE token_sha256 = $5",
            [
                token_digest(&replacement).into(),
                gateway.secrets.seal(replacement.as_bytes()).into(),
                now.into(),
                (now + openport::service::auth::TOKEN_TTL_SECS).into(),
                token_digest(&first).into(),
            ],
        ))
        .await
        .unwrap();
    other.commit().await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&asking.await.unwrap().1).unwrap();

    assert_eq!(answer["code"], 0, "{answer}");
    assert_eq!(
        answer["response"]["access_token"], replacement,
        "the slot's holder, not the token that was replaced: {answer}"
    );
}

/// `merchant new-secret` committed between a getToken's check of the old secret and its claim of
/// a token (PostgreSQL): the token would outlive the revocation for its 30 minutes.
#[tokio::test]
async fn a_secret_renewed_while_get_token_checks_the_old_one_leaves_no_token_for_it() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the two writes one after the other
    }
    let gateway = app.app.gateway.clone();
    let (renewal, asking) = get_token_behind_a_token_table_lock(&app).await;
    renew_secret_in(&renewal, &gateway).await;
    renewal.commit().await.unwrap();
    let (status, body) = asking.await.unwrap();

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let left = gateway
        .db
        .read
        .query_one(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM access_tokens",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(left, 0, "no token for the revoked secret");
}

/// The same race, where the merchant's server got the one token with the new secret before the
/// old secret's getToken went on (PostgreSQL): that getToken finds the new secret's token in the
/// slot and is answered 401, leaving the token alone (it is the merchant's one token, not its own).
#[tokio::test]
async fn a_get_token_with_a_revoked_secret_never_deletes_the_token_the_new_secret_got() {
    use openport::service::secrets::token_digest;
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the two writes one after the other
    }
    let gateway = app.app.gateway.clone();
    let (renewal, asking) = get_token_behind_a_token_table_lock(&app).await;
    renew_secret_in(&renewal, &gateway).await;
    // The new secret's getToken (another instance) claims the slot first.
    let fresh = "cd".repeat(20);
    let now = chrono::Utc::now().timestamp();
    renewal
        .execute(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "INSERT INTO access_tokens (token_sha256, token_sealed, merchant_id, created_at, \
             expires_at, live_slot) SELECT $1, $2, id, $3, $4, id FROM merchants WHERE imp_key = $5",
            [
                token_digest(&fresh).into(),
                gateway.secrets.seal(fresh.as_bytes()).into(),
                now.into(),
                (now + openport::service::auth::TOKEN_TTL_SECS).into(),
                DEMO_IMP_KEY.into(),
            ],
        ))
        .await
        .unwrap();
    renewal.commit().await.unwrap();
    let (status, body) = asking.await.unwrap();

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app.get("/payments/imp_000000000000", Some(&fresh)).await;
    assert_ne!(
        status,
        StatusCode::UNAUTHORIZED,
        "the new secret's token works: {body}"
    );
}

#[tokio::test]
async fn once_the_token_expired_get_token_issues_a_new_one_and_only_that_one_works() {
    let app = spawn_app().await;
    let old = app.token().await;
    app.advance(1801);
    let new = app.token().await;
    assert_ne!(new, old);
    assert_eq!(app.token().await, new, "the new token is the live one");
    let (status, _) = app.get("/payments/imp_000000000000", Some(&new)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "authenticated");
    let (status, _) = app.get("/payments/imp_000000000000", Some(&old)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_is_stored_as_a_digest_and_sealed_and_another_instance_accepts_and_hands_it_out() {
    use openport::store::entity::access_token;
    use sea_orm::EntityTrait;

    let app = spawn_app().await;
    let token = app.token().await;
    let rows = access_token::Entity::find()
        .all(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // Nothing at rest is the token itself: a copy of the database hands out no working token.
    let row = format!("{:?}", rows[0]);
    assert!(!row.contains(&token), "{row}");
    assert_eq!(
        rows[0].token_sha256,
        openport::service::secrets::token_digest(&token)
    );

    // A second instance has nothing cached: it finds the token by its digest, and getToken
    // there unseals the same one.
    let other = app.another_instance(|_| {}).await;
    let (status, body) = other.get("/payments/imp_000000000000", Some(&token)).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(other.token().await, token);
}

/// Someone who can write to the database but has no master key copies another merchant's sealed
/// KCP key passphrase into this merchant's token row: getToken must not decrypt it for them.
#[tokio::test]
async fn a_token_row_holding_another_sealed_secret_is_never_handed_out_by_get_token() {
    use openport::store::entity::{access_token, merchant};
    use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

    let app = spawn_app().await;
    let first = app.token().await;
    let (other_key, _) = app.second_merchant().await;
    let db = &app.app.gateway.db;
    let other = merchant::Entity::find()
        .filter(merchant::Column::ImpKey.eq(other_key))
        .one(&db.read)
        .await
        .unwrap()
        .unwrap();
    let row = access_token::Entity::find()
        .one(&db.read)
        .await
        .unwrap()
        .unwrap();
    let mut planted: access_token::ActiveModel = row.into();
    planted.token_sealed = Set(other.kcp_passphrase_sealed.clone());
    planted.update(&db.write).await.unwrap();
    let passphrase = crate::helpers::kcp_test_credentials().2;

    let (status, body) = app
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let handed = body["response"]["access_token"].as_str().unwrap();
    assert_ne!(
        handed, passphrase,
        "the other merchant's passphrase was decrypted"
    );
    assert_ne!(handed, first);
    assert!(
        handed.len() == 40 && handed.bytes().all(|b| b.is_ascii_hexdigit()),
        "{handed}"
    );
    let (status, _) = app.get("/payments/imp_000000000000", Some(handed)).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_live_token_that_cannot_be_unsealed_is_replaced_by_a_new_one_and_not_extended() {
    use base64::Engine;
    use openport::service::secrets::token_digest;
    use secrecy::SecretString;
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let (old_key, new_key) = (b64(1), b64(2));
    let ok = old_key.clone();
    let first =
        crate::helpers::spawn_app_with(move |c| c.master_key = Some(SecretString::from(ok))).await;
    let old = first.token().await;
    // Rotated: the imp_secret's hash moves to the new key, the token stays sealed under the old.
    let (nk, okey) = (new_key.clone(), old_key.clone());
    let rotated = first
        .another_instance(move |c| {
            c.master_key = Some(SecretString::from(nk));
            c.previous_master_keys = Some(SecretString::from(okey));
        })
        .await;
    assert_eq!(rotated.token().await, old);
    // The old key dropped after a reseal that left the live token under it (sealed again by an
    // instance that still had the old key as its current one); asked in the token's last minute.
    // (Any other value left under the dropped key refuses the start: tests/api/startup.rs.)
    {
        use openport::store::entity::access_token;
        use sea_orm::{ActiveModelTrait, Set};
        let db = &first.app.gateway.db;
        let digest = token_digest(&old);
        let before = openport::store::merchants::token(&db.write, &digest)
            .await
            .unwrap()
            .unwrap();
        rotated.app.gateway.reseal_secrets().await.unwrap();
        let after = openport::store::merchants::token(&db.write, &digest)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(after.token_sealed, before.token_sealed, "resealed");
        let mut row: access_token::ActiveModel = after.into();
        row.token_sealed = Set(before.token_sealed);
        row.update(&db.write).await.unwrap();
    }
    let only_new = first
        .another_instance(move |c| c.master_key = Some(SecretString::from(new_key)))
        .await;
    let stored = |token: String| {
        let db = only_new.app.gateway.db.read.clone();
        async move {
            openport::store::merchants::token(&db, &token_digest(&token))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let old_expiry = stored(old.clone()).await.expires_at;
    only_new.advance(1800 - 30);
    let (status, body) = only_new
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = &body["response"];
    let new = r["access_token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(
        r["expired_at"].as_i64().unwrap() - r["now"].as_i64().unwrap(),
        1800
    );
    assert_eq!(
        stored(old.clone()).await.expires_at,
        old_expiry,
        "not extended"
    );
    // The new token is the one handed out from now on; the old one works until it expires.
    assert_eq!(only_new.token().await, new);
    let (status, _) = only_new
        .get("/payments/status/all", Some(old.as_str()))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_new_secret_revokes_the_tokens_got_with_the_old_one() {
    use openport::service::merchants::{new_imp_secret, DEMO_IMP_CODE};
    use openport::service::secrets::MasterKey;
    use secrecy::ExposeSecret;

    let app = spawn_app().await;
    let leaked = app.token().await;
    let secrets = MasterKey::from_config(None).unwrap(); // test mode's key, as the app's
    let renewed = new_imp_secret(&app.app.gateway.db, &secrets, true, DEMO_IMP_CODE)
        .await
        .unwrap();

    // An instance that has not cached the token (the one this one caches is refused within a
    // minute, src/service/auth.rs) refuses it, and getToken refuses the old secret.
    let other = app.another_instance(|_| {}).await;
    let (status, body) = other.get("/payments/status/all", Some(&leaked)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = other
        .post(
            "/users/getToken",
            None,
            json!({"imp_key": DEMO_IMP_KEY, "imp_secret": DEMO_IMP_SECRET}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The new secret gets a new token, which works.
    let fresh = other
        .token_for(DEMO_IMP_KEY, renewed.imp_secret.expose_secret())
        .await;
    assert_ne!(fresh, leaked);
    let (status, body) = other.get("/payments/status/all", Some(&fresh)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
