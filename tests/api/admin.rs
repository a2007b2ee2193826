use reqwest::StatusCode;

use crate::helpers::{spawn_app, spawn_app_with, ADMIN_TOKEN};

#[tokio::test]
async fn a_merchant_token_never_sees_another_merchants_payment_but_the_operator_does() {
    let app = spawn_app().await;
    let demo = app.token().await;
    let paid = app.paid(&demo, "order-iso-1", 1000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap();

    let (key, secret) = app.second_merchant().await;
    let other = app.token_for(&key, &secret).await;
    let (status, _) = app.get(&format!("/payments/{imp_uid}"), Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/payments/find/order-iso-1", Some(&other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = app.get("/payments/status/all", Some(&other)).await;
    assert_eq!(body["response"]["total"], 0);
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&other),
            serde_json::json!({"imp_uid": imp_uid}),
        )
        .await;
    assert_eq!(body["code"], 1);
    assert_eq!(body["message"], "취소할 결제건이 존재하지 않습니다.");

    let (status, body) = app
        .get(&format!("/payments/{imp_uid}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["imp_uid"], imp_uid);
    let (_, body) = app.get("/payments/status/all", Some(ADMIN_TOKEN)).await;
    assert_eq!(body["response"]["total"], 1);
}

/// Two merchants both pay `order-1`: a merchant_uid names a payment only within its merchant, so
/// the operator names the merchant (`merchant_id`) to look one up, and is told whose each payment
/// is; merchants' answers stay iamport's.
#[tokio::test]
async fn the_operator_names_the_merchant_of_a_merchant_uid_and_is_told_whose_each_payment_is() {
    let app = spawn_app().await;
    let demo = app.token().await;
    let (key, secret) = app.second_merchant().await;
    let other = app.token_for(&key, &secret).await;
    let demo_paid = app.paid(&demo, "order-1", 1000).await;
    let other_paid = app.paid(&other, "order-1", 2000).await;
    let (_, merchants) = app.get("/admin/merchants", Some(ADMIN_TOKEN)).await;
    let id_of = |imp_key: &str| {
        merchants["response"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["imp_key"] == imp_key)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (demo_id, other_id) = (
        id_of(openport::service::merchants::DEMO_IMP_KEY),
        id_of(&key),
    );

    // Without a merchant, a merchant_uid lookup is refused rather than answered with either.
    for path in [
        "/payments?merchant_uid[]=order-1",
        "/payments/find/order-1",
        "/payments/find/order-1/paid",
        "/payments/findAll/order-1",
        "/payments/findAll/order-1/paid",
    ] {
        let (status, body) = app.get(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], -1, "{path}");
        assert!(
            body["message"].as_str().unwrap().contains("merchant_id"),
            "{path}: {body}"
        );
    }
    // Naming it finds that merchant's payment, and says whose it is.
    for (id, paid) in [(demo_id, &demo_paid), (other_id, &other_paid)] {
        let (status, body) = app
            .get(
                &format!("/payments?merchant_uid[]=order-1&merchant_id={id}"),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let list = body["response"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{body}");
        assert_eq!(list[0]["imp_uid"], paid["imp_uid"]);
        assert_eq!(list[0]["merchant_id"], id);
        let (_, found) = app
            .get(
                &format!("/payments/find/order-1/paid?merchant_id={id}"),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(found["response"]["imp_uid"], paid["imp_uid"], "{found}");
        assert_eq!(found["response"]["merchant_id"], id);
        let (_, all) = app
            .get(
                &format!("/payments/findAll/order-1?merchant_id={id}"),
                Some(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(all["response"]["total"], 1, "{all}");
        assert_eq!(all["response"]["list"][0]["imp_uid"], paid["imp_uid"]);
    }
    // Listings of every merchant say whose each payment is; merchant_id narrows them.
    let (_, listed) = app.get("/payments/status/all", Some(ADMIN_TOKEN)).await;
    let mut owners: Vec<i64> = listed["response"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["merchant_id"].as_i64().unwrap())
        .collect();
    owners.sort_unstable();
    let mut expected = vec![demo_id, other_id];
    expected.sort_unstable();
    assert_eq!(owners, expected, "{listed}");
    let (_, narrowed) = app
        .get(
            &format!("/payments/status/paid?merchant_id={other_id}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(narrowed["response"]["total"], 1, "{narrowed}");
    assert_eq!(
        narrowed["response"]["list"][0]["imp_uid"],
        other_paid["imp_uid"]
    );
    // An imp_uid is unique across merchants: no merchant needed, one of another merchant is not
    // found when a merchant is named.
    let both = format!(
        "/payments?imp_uid[]={}&imp_uid[]={}",
        demo_paid["imp_uid"].as_str().unwrap(),
        other_paid["imp_uid"].as_str().unwrap()
    );
    let (status, body) = app.get(&both, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app
        .get(
            &format!(
                "/payments/{}?merchant_id={demo_id}",
                other_paid["imp_uid"].as_str().unwrap()
            ),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A merchant's token reads its own payment whatever merchant_id says, in iamport's shape.
    let (status, own) = app
        .get(
            &format!("/payments/find/order-1?merchant_id={demo_id}"),
            Some(&other),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["response"], other_paid, "{own}");
    assert!(own["response"].get("merchant_id").is_none(), "{own}");
    // But a merchant_id that is not an integer is malformed for every caller (the OpenAPI
    // document's int64), never silently ignored.
    let (status, body) = app
        .get(
            "/payments/find/order-1?merchant_id=9223372036854775808",
            Some(&other),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn admin_merchants_needs_the_operator_token_and_shows_no_secrets() {
    let app = spawn_app().await;
    let demo = app.token().await;
    let (status, _) = app.get("/admin/merchants", Some(&demo)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app.get("/admin/merchants", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let list = body["response"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["imp_code"], "imp00000000");
    let text = body.to_string();
    assert!(
        !text.contains("secret") && !text.contains("PRIVATE"),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_the_served_paths() {
    let app = spawn_app().await;
    let (status, body) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/users/getToken",
        "/payments/{imp_uid}",
        "/payments/cancel",
        "/subscribe/payments/onetime",
        "/payments/prepare",
        "/vbanks",
        "/vbanks/{imp_uid}",
    ] {
        assert!(body["paths"].get(path).is_some(), "missing {path}");
    }
    assert!(body["paths"]["/vbanks/{imp_uid}"].get("delete").is_some());
}

#[tokio::test]
async fn no_card_number_pin_birth_secret_or_private_key_reaches_a_log_line() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            serde_json::json!({"merchant_uid": "log-1", "amount": 1000, "card_number": "5555-5555-5555-4444",
                   "expiry": "2031-12", "birth": "740516", "pwd_2digit": "00"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    // A refused card and a bad body go through the error paths too.
    app.post("/subscribe/payments/onetime", Some(&token), serde_json::json!({"merchant_uid": "log-2", "amount": 1000,
        "card_number": "5555555555554443", "expiry": "2031-12", "birth": "740516", "pwd_2digit": "00"})).await;
    app.post(
        "/payments/cancel",
        Some(&token),
        serde_json::json!({"imp_uid": body["response"]["imp_uid"], "amount": 100}),
    )
    .await;
    let logs = crate::helpers::captured_logs();
    assert!(
        logs.contains("log-1") || logs.contains("onetime"),
        "the capture works"
    );
    for needle in [
        "5555555555554444",
        "5555-5555-5555-4444",
        "5555555555554443",
        "\"740516\"",
        "=740516",
        openport::service::merchants::DEMO_IMP_SECRET,
        "PRIVATE KEY",
        "test-passphrase",
    ] {
        assert!(!logs.contains(needle), "{needle} reached the logs");
    }
}

/// The billing-key calls handle the batch key KCP issued: registration (KCP's answer), `again`
/// (sent to KCP), a re-registration whose delete of the old key fails and is retried by the
/// resolver, and a customer delete. The sandbox keeps only each key's digest, so the test reads
/// the key openport sealed, checks it against the sandbox's digest (it is the key KCP issued),
/// and looks for it, the card number and the birth date in every log line.
#[tokio::test]
async fn no_batch_key_card_number_or_birth_of_a_billing_key_reaches_a_log_line() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    use openport::store::entity::billing_key;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let app = spawn_app().await;
    let token = app.token().await;
    let register = |card: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            app.post(
                "/subscribe/customers/log-bk-cust",
                Some(token),
                serde_json::json!({"card_number": card, "expiry": "2031-12", "birth": "740516",
                       "pwd_2digit": "00", "customer_name": "홍길동"}),
            )
            .await
            .1
        }
    };
    let batch_keys = || async {
        let rows = billing_key::Entity::find()
            .filter(billing_key::Column::CustomerUid.eq("log-bk-cust"))
            .order_by_asc(billing_key::Column::Id)
            .all(&app.app.gateway.db.read)
            .await
            .unwrap();
        let key = app
            .app
            .gateway
            .secrets
            .open_string(&rows.last().unwrap().batch_key_sealed)
            .unwrap();
        let issued = app.sandbox.batch_keys();
        assert_eq!(
            Some(issued.last().unwrap()),
            app.sandbox.batch_key(&key).as_ref(),
            "the key KCP issued"
        );
        key
    };

    assert_eq!(register("4111-1111-1111-1111").await["code"], 0);
    let first = batch_keys().await;
    let (_, paid) = app
        .post(
            "/subscribe/payments/again",
            Some(&token),
            serde_json::json!({"customer_uid": "log-bk-cust", "merchant_uid": "log-bk-1", "amount": 1000}),
        )
        .await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    app.sandbox.inject(
        FaultRule::new(paths::HUB_PAYMENT, Fault::HttpStatus { status: 502 })
            .when("tx_type", "10005010"),
    );
    assert_eq!(register("5555-5555-5555-4444").await["code"], 0);
    let second = batch_keys().await;
    app.advance(openport::service::retired_keys::retry_backoff(1) + 1);
    assert_eq!(
        app.app.gateway.retry_key_deletions(10).await.unwrap(),
        1,
        "the failed delete retried"
    );
    let token = app.token().await;
    let res = app
        .http
        .delete(app.url("/subscribe/customers/log-bk-cust"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(crate::helpers::TestApp::read(res).await.1["code"], 0);

    let logs = crate::helpers::captured_logs();
    assert!(
        logs.contains("could not delete a retired billing key at KCP, will retry"),
        "the capture works: the failed delete's WARN is in it"
    );
    assert!(
        !logs.contains("log-bk-cust"),
        "nor the customer_uid (personal data)"
    );
    for needle in [
        first.as_str(),
        second.as_str(),
        "4111111111111111",
        "4111-1111-1111-1111",
        "5555-5555-5555-4444",
        "\"740516\"",
        "=740516",
    ] {
        assert!(!logs.contains(needle), "{needle} reached the logs");
    }
}

#[tokio::test]
async fn the_operator_token_is_refused_in_the_query_string_while_merchants_keep_it() {
    let app = spawn_app().await;
    let merchant = app.token().await;
    for path in ["/admin/merchants", "/payments/status/all"] {
        let (status, body) = app.get(&format!("{path}?_token={ADMIN_TOKEN}"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["code"], -1);
        let (status, _) = app.get(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{path} with the header");
    }
    let res = app
        .http
        .get(app.url("/admin/merchants"))
        .header("X-ImpTokenHeader", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the legacy header is a header"
    );
    let (status, _) = app
        .get(&format!("/payments/status/all?_token={merchant}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "merchants keep `_token`");
}

#[tokio::test]
async fn outside_test_mode_the_seeds_kcp_settings_make_the_first_merchant_with_its_own_credentials()
{
    use base64::Engine;
    use secrecy::{ExposeSecret, SecretString};
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    // KCP_SITE_CD, KCP_CERT_INFO, KCP_PRIVATE_KEY_PATH and its password are set by the helper.
    let app = crate::helpers::spawn_app_with(move |c| {
        c.test_mode = false;
        c.master_key = Some(SecretString::from(key));
        c.public_url = Some("https://pay.example.com".into());
    })
    .await;
    let created = app
        .app
        .demo
        .as_ref()
        .expect("an empty database gets the merchant");
    assert!(
        !created.merchant.test_mode,
        "a live merchant, not the demo one"
    );
    assert_eq!(created.merchant.site_cd, crate::helpers::LIVE_SITE_CD);
    assert_ne!(
        created.merchant.imp_key, "imp_apikey",
        "never the public test key"
    );
    assert_ne!(created.merchant.imp_code, "imp00000000");
    let (status, body) = app
        .post(
            "/users/getToken",
            None,
            serde_json::json!({"imp_key": created.merchant.imp_key,
                               "imp_secret": created.imp_secret.expose_secret()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 0, "{body}");
}

#[tokio::test]
async fn a_merchant_on_its_own_kcp_origin_pays_and_cancels_there_and_the_instances_kcp_sees_nothing(
) {
    let app = spawn_app().await;
    // Another KCP (a second sandbox, trusting the same CA as KCP trusts its certificates).
    let own_kcp = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(kcp_sandbox::serve(own_kcp.clone(), listener));

    let (key, secret) = app.merchant_on_kcp(Some(&format!("{origin}/"))).await;
    let token = app.token_for(&key, &secret).await;
    let paid = app.paid(&token, "own-kcp-1", 3000).await;
    assert_eq!(own_kcp.ledger().len(), 1, "charged at the merchant's KCP");
    assert_eq!(own_kcp.ledger()[0].tno, paid["pg_tid"].as_str().unwrap());
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            serde_json::json!({"imp_uid": paid["imp_uid"], "amount": 1000}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(own_kcp.ledger()[0].balance, 2000, "cancelled there too");
    assert!(
        app.sandbox.ledger().is_empty(),
        "the instance's KCP saw nothing"
    );

    // The demo merchant still pays on the instance's KCP.
    let demo = app.token().await;
    app.paid(&demo, "instance-kcp-1", 1000).await;
    assert_eq!(app.sandbox.ledger().len(), 1);
    assert_eq!(own_kcp.ledger().len(), 1);

    let (_, body) = app.get("/admin/merchants", Some(ADMIN_TOKEN)).await;
    let listed: Vec<_> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kcp_api_base"].clone())
        .collect();
    assert!(listed.contains(&serde_json::Value::Null), "{body}");
    assert!(
        listed.contains(&serde_json::json!(origin)),
        "stored as an origin: {body}"
    );
}

#[tokio::test]
async fn an_operator_token_configured_with_a_trailing_newline_is_the_token_without_it() {
    // Read from a file (`OPENPORT_ADMIN_TOKEN="$(cat token)"` keeps it; a Kubernetes secret too).
    let app = spawn_app_with(|c| {
        c.admin_token = Some(secrecy::SecretString::from(format!("  {ADMIN_TOKEN}\n")));
    })
    .await;
    let (status, body) = app.get("/admin/merchants", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `PUT|GET /admin/merchants/{id}/redirect-origins`: the operator's only (a merchant's token is
/// refused), the list replaced whole and answered normalised; anything but up to 50 http(s)
/// `scheme://host[:port]` origins is refused with an iamport-style HTTP 400 naming why, never a
/// 500, and changes nothing; `[]` removes the list.
#[tokio::test]
async fn redirect_origins_are_validated_normalised_and_operator_only() {
    let app = spawn_app().await;
    let id = app.app.demo.as_ref().expect("demo merchant").merchant.id;
    let path = format!("/admin/merchants/{id}/redirect-origins");
    let (status, body) = app.get(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["origins"], serde_json::json!([]), "{body}");

    let (status, body) = app
        .put(
            &path,
            ADMIN_TOKEN,
            serde_json::json!({"origins": ["HTTPS://Shop.Example:443/", "http://localhost:8080", "https://shop.example"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let set = serde_json::json!(["https://shop.example", "http://localhost:8080"]);
    assert_eq!(body["response"]["origins"], set, "{body}");
    assert_eq!(body["response"]["merchant_id"], id, "{body}");

    let too_many: Vec<String> = (0..51).map(|i| format!("https://s{i}.example")).collect();
    for (bad, why) in [
        (
            serde_json::json!({"origins": ["https://shop.example/done"]}),
            "https://shop.example/done",
        ),
        (
            serde_json::json!({"origins": ["https://shop.example?a=1"]}),
            "https://shop.example?a=1",
        ),
        (
            serde_json::json!({"origins": ["https://shop.example#x"]}),
            "https://shop.example#x",
        ),
        (
            serde_json::json!({"origins": ["ftp://shop.example"]}),
            "ftp://shop.example",
        ),
        (
            serde_json::json!({"origins": ["javascript:alert(1)"]}),
            "javascript:alert(1)",
        ),
        (
            serde_json::json!({"origins": ["shop.example"]}),
            "shop.example",
        ),
        (
            serde_json::json!({"origins": ["https://a.example", " "]}),
            "origin",
        ),
        (serde_json::json!({"origins": too_many}), "50"),
        (serde_json::json!({"origins": [1]}), "'1'"),
        (serde_json::json!({"origins": {"a": 1}}), "origins"),
        (serde_json::json!({}), "origins"),
        (serde_json::json!({"origins": null}), "origins"),
    ] {
        let (status, body) = app.put(&path, ADMIN_TOKEN, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], -1, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(why),
            "{bad}: {body}"
        );
    }
    let (_, body) = app.get(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(
        body["response"]["origins"], set,
        "nothing refused was stored: {body}"
    );

    for (path, status) in [
        (
            "/admin/merchants/x/redirect-origins",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/merchants/424242/redirect-origins",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (got, body) = app
            .put(path, ADMIN_TOKEN, serde_json::json!({"origins": []}))
            .await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["code"], -1, "{body}");
        let (got, _) = app.get(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(got, status, "GET {path}");
    }
    let token = app.token().await;
    let (status, _) = app
        .put(&path, &token, serde_json::json!({"origins": []}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.get(&path, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = app
        .put(&path, ADMIN_TOKEN, serde_json::json!({"origins": []}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["origins"], serde_json::json!([]), "{body}");
}

/// An operator sees which KCP group each merchant's billing keys are issued in, as the CLI's
/// `merchant list` shows it, and null before one is set.
#[tokio::test]
async fn the_merchant_list_names_each_merchants_kcp_group() {
    let app = spawn_app().await;
    let listed = |body: serde_json::Value| body["response"][0]["kcp_group_id"].clone();
    let (_, body) = app.get("/admin/merchants", Some(ADMIN_TOKEN)).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(listed(body.clone()), serde_json::Value::Null, "{body}");

    openport::service::merchants::set_kcp_group_id(
        &app.app.gateway.db,
        openport::service::merchants::DEMO_IMP_CODE,
        "T00002000002",
    )
    .await
    .unwrap();
    let (_, body) = app.get("/admin/merchants", Some(ADMIN_TOKEN)).await;
    assert_eq!(listed(body.clone()), "T00002000002", "{body}");
}
