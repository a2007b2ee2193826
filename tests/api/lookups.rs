use reqwest::StatusCode;

use crate::helpers::{execute, spawn_app, test_cards, TestApp, ADMIN_TOKEN};

#[tokio::test]
async fn a_payment_is_found_by_imp_uid_with_trailing_and_double_slashes_tolerated() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "look-1", 1000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    for path in [
        format!("/payments/{imp_uid}"),
        format!("/payments/{imp_uid}/"),
        format!("//payments//{imp_uid}"),
    ] {
        let (status, body) = app.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["response"], p, "{path}");
    }
}

/// The Java client's plain `paymentByImpUid` sends `include_sandbox=false`: a merchant being tested
/// (every payment of it a sandbox one) still finds its payments, while the operator's flag hides
/// them.
#[tokio::test]
async fn a_merchants_include_sandbox_false_still_finds_its_test_mode_payment() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "look-java", 1000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let path = format!("/payments/{imp_uid}?include_sandbox=false");
    let (status, body) = app.get(&path, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"], p);
    let (status, _) = app.get(&path, Some(ADMIN_TOKEN)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the operator's flag hides sandbox payments"
    );
}

#[tokio::test]
async fn include_sandbox_is_read_as_every_other_boolean_of_the_api() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "look-sandbox", 1000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    // The operator's flag hides sandbox payments (a merchant's hides nothing: above).
    let lookup = |flag: &'static str| {
        let app = &app;
        async move {
            app.get(
                &format!("/payments/{imp_uid}?include_sandbox={flag}"),
                Some(ADMIN_TOKEN),
            )
            .await
        }
    };
    for hidden in ["false", "False", "FALSE", "0", "n", "no", "off"] {
        let (status, body) = lookup(hidden).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{hidden}: {body}");
    }
    for shown in ["true", "True", "1", "yes", "on", ""] {
        let (status, body) = lookup(shown).await;
        assert_eq!(status, StatusCode::OK, "{shown}: {body}");
        assert_eq!(body["response"]["imp_uid"], imp_uid);
    }
    let (status, body) = lookup("maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .get(
            &format!("/payments/{imp_uid}?include_sandbox=maybe"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a merchant's too: {body}");
    assert_eq!(body["code"], -1);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("include_sandbox"),
        "{body}"
    );
}

#[tokio::test]
async fn a_multi_get_answers_207_when_some_are_missing_and_404_when_none_are_found() {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "multi-a", 1000).await;
    let b = app.paid(&token, "multi-b", 1000).await;
    let (ia, ib) = (
        a["imp_uid"].as_str().unwrap(),
        b["imp_uid"].as_str().unwrap(),
    );
    let (status, body) = app
        .get(
            &format!("/payments?imp_uid[]={ia}&imp_uid[]={ib}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"].as_array().unwrap().len(), 2);
    let (status, body) = app
        .get(
            &format!("/payments?imp_uid[0]={ia}&imp_uid[1]=imp_000000000000"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["code"], 0);
    assert_eq!(body["response"][0]["imp_uid"], ia);
    let (status, body) = app
        .get(
            &format!("/payments?imp_uid={ia}&merchant_uid[]=multi-b"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"].as_array().unwrap().len(), 2);
    let (status, _) = app
        .get("/payments?imp_uid[]=imp_000000000000", Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_multi_get_of_more_than_100_ids_is_a_400_and_100_are_answered() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = app.paid(&token, "multi-100", 1000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let ids = |n: usize| {
        let mut q: Vec<String> = (1..n)
            .map(|i| format!("merchant_uid[]=absent-{i}"))
            .collect();
        q.push(format!("imp_uid[]={imp_uid}"));
        format!("/payments?{}", q.join("&"))
    };
    let (status, body) = app.get(&ids(100), Some(&token)).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(body["response"][0]["imp_uid"], imp_uid);
    let (status, body) = app.get(&ids(101), Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], -1);
    assert_eq!(
        body["message"],
        "한 번에 최대 100건까지 조회할 수 있습니다."
    );
}

#[tokio::test]
async fn find_all_pages_the_attempts_of_one_order_and_sorts_them_by_start() {
    let app = spawn_app().await;
    let token = app.token().await;
    // Three attempts of one order a second apart: two declined, then paid.
    app.pay(&token, "fa-1", 1000, test_cards::DAILY_LIMIT_EXCEEDED)
        .await;
    app.advance(1);
    app.pay(&token, "fa-1", 1000, test_cards::DAILY_LIMIT_EXCEEDED)
        .await;
    app.advance(1);
    let paid = app.paid(&token, "fa-1", 1000).await;
    let (_, all) = app
        .get("/payments/findAll/fa-1?sorting=started", Some(&token))
        .await;
    assert_eq!(all["response"]["total"], 3, "{all}");
    let list = all["response"]["list"].as_array().unwrap().clone();
    assert_eq!(list[2]["imp_uid"], paid["imp_uid"], "oldest first: {all}");

    let (_, page) = app
        .get(
            "/payments/findAll/fa-1?limit=2&page=2&sorting=started",
            Some(&token),
        )
        .await;
    let r = &page["response"];
    assert_eq!(r["total"], 3, "{page}");
    assert_eq!(r["previous"], 1);
    assert_eq!(r["next"], 0);
    assert_eq!(r["list"].as_array().unwrap().len(), 1);
    assert_eq!(r["list"][0]["imp_uid"], paid["imp_uid"]);
}

#[tokio::test]
async fn sorting_by_update_differs_from_sorting_by_start_once_an_older_payment_is_cancelled() {
    let app = spawn_app().await;
    let token = app.token().await;
    let older = app.paid(&token, "upd-older", 1000).await;
    app.advance(1);
    let newer = app.paid(&token, "upd-newer", 1000).await;
    app.advance(60);
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            serde_json::json!({"imp_uid": older["imp_uid"], "amount": 100}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    let first = |body: serde_json::Value| body["response"]["list"][0]["imp_uid"].clone();
    for (sorting, expected) in [
        ("-started", &newer),
        ("started", &older),
        ("-updated", &older),
        ("updated", &newer),
    ] {
        let (_, body) = app
            .get(
                &format!("/payments/status/all?sorting={sorting}"),
                Some(&token),
            )
            .await;
        assert_eq!(first(body), expected["imp_uid"], "sorting={sorting}");
    }
}

#[tokio::test]
async fn status_lists_are_paged_sorted_and_filtered_by_time() {
    let app = spawn_app().await;
    let token = app.token().await;
    for i in 0..5 {
        app.paid(&token, &format!("page-{i}"), 1000 + i).await;
    }
    app.pay(
        &token,
        "page-failed",
        1000,
        test_cards::DAILY_LIMIT_EXCEEDED,
    )
    .await;
    let (_, body) = app
        .get(
            "/payments/status/paid?limit=2&page=2&sorting=started",
            Some(&token),
        )
        .await;
    let r = &body["response"];
    assert_eq!(r["total"], 5);
    assert_eq!(r["previous"], 1);
    assert_eq!(r["next"], 3);
    assert_eq!(r["list"].as_array().unwrap().len(), 2);
    assert_eq!(r["list"][0]["merchant_uid"], "page-2");
    // A page past the data is iamport's 400; the first page of nothing is an empty page.
    let (status, past) = app
        .get("/payments/status/paid?limit=2&page=4", Some(&token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{past}");
    assert_eq!(past["code"], -1, "{past}");
    let (status, empty) = app.get("/payments/status/cancelled", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["response"]["list"], serde_json::json!([]));
    let (_, body) = app.get("/payments/status/all", Some(&token)).await;
    assert_eq!(body["response"]["total"], 6);
    assert_eq!(body["response"]["previous"], 0);
    assert_eq!(body["response"]["next"], 0);
    let (_, body) = app.get("/payments/status/failed", Some(&token)).await;
    assert_eq!(body["response"]["total"], 1);
    let (_, body) = app
        .get("/payments/status/paid?from=1&to=2", Some(&token))
        .await;
    assert_eq!(body["response"]["total"], 0);
    let (status, body) = app.get("/payments/status/bogus", Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "지원되지 않는 상태값입니다.");
}

#[tokio::test]
async fn find_treats_undefined_as_no_status_filter_and_answers_404_when_nothing_matches() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.paid(&token, "find-1", 1000).await;
    let (status, body) = app
        .get("/payments/find/find-1/undefined", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["merchant_uid"], "find-1");
    let (status, _) = app
        .get("/payments/find/find-1/cancelled", Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get("/payments/findAll/none", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "존재하지 않는 결제정보입니다.");
}

#[tokio::test]
async fn an_unknown_route_is_an_iamport_style_404() {
    let app = spawn_app().await;
    let (status, body) = app.get("/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], -1);
}

/// iamport operations openport does not serve answered the router's 404, which iamport's OpenAPI
/// reads as "no such payment" or "no cash receipt issued" (a merchant checking a receipt the
/// payment says was issued recorded that none was, and `/balance` called a valid imp_uid
/// invalid), "no such billing key or member" (`/kcpquick/*`) or "no such tier" (`/tiers`); so
/// did the easy pays' order APIs (`/payments/{imp_uid}/naver/*`, `/payco/*`, `/kakao/*`,
/// `/paymentwall/*`). They answer HTTP 501 naming the feature, once the token is checked; unknown paths
/// stay 404. `GET /vbanks/holder` answered 405 (taken for `DELETE /vbanks/{imp_uid}`), even
/// without a token.
#[tokio::test]
async fn an_iamport_endpoint_openport_does_not_offer_answers_501_not_404_and_401_without_a_token() {
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "unoffered-1", 1000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap();
    let calls = [
        ("GET", format!("/receipts/{imp_uid}"), "현금영수증"),
        ("POST", format!("/receipts/{imp_uid}"), "현금영수증"),
        ("DELETE", format!("/receipts/{imp_uid}"), "현금영수증"),
        ("GET", "/receipts/external/unoffered-1".into(), "현금영수증"),
        (
            "POST",
            "/receipts/external/unoffered-1".into(),
            "현금영수증",
        ),
        (
            "DELETE",
            "/receipts/external/unoffered-1".into(),
            "현금영수증",
        ),
        (
            "POST",
            format!("/partners/receipts/{imp_uid}"),
            "현금영수증",
        ),
        ("GET", format!("/payments/{imp_uid}/balance"), "balance"),
        ("GET", "/certifications/imp_000000000000".into(), "본인인증"),
        (
            "DELETE",
            "/certifications/imp_000000000000".into(),
            "본인인증",
        ),
        ("POST", "/certifications/otp/request".into(), "본인인증"),
        (
            "POST",
            "/certifications/otp/confirm/imp_000000000000".into(),
            "본인인증",
        ),
        // iamport's 404 here is "no such billing key": a client deleting one would stop.
        ("DELETE", "/kcpquick/autopay/cust-1".into(), "퀵페이"),
        ("DELETE", "/kcpquick/members/member-1".into(), "퀵페이"),
        (
            "POST",
            "/kcpquick/members/member-1/fido/release".into(),
            "퀵페이",
        ),
        ("POST", "/kcpquick/payment/money".into(), "퀵페이"),
        ("POST", "/kcpquick/payment/autopay".into(), "퀵페이"),
        ("POST", "/kcpquick/prepare/unoffered-2".into(), "퀵페이"),
        ("PUT", "/kcpquick/prepare/unoffered-2".into(), "퀵페이"),
        ("GET", "/tiers/tier-1".into(), "tier"),
        ("POST", "/cvs".into(), "편의점"),
        ("DELETE", format!("/cvs/{imp_uid}"), "편의점"),
        // iamport's 404 under `/payments/{imp_uid}/naver/` is "no such payment".
        (
            "POST",
            format!("/payments/{imp_uid}/naver/place"),
            "네이버페이",
        ),
        (
            "GET",
            format!("/payments/{imp_uid}/naver/cash-amount"),
            "네이버페이",
        ),
        (
            "GET",
            format!("/payments/{imp_uid}/naver/product-orders"),
            "네이버페이",
        ),
        (
            "GET",
            "/naver/product-orders/2024010112345".into(),
            "네이버페이",
        ),
        ("GET", "/naver/reviews".into(), "네이버페이"),
        ("POST", format!("/payco/orders/status/{imp_uid}"), "페이코"),
        ("GET", "/kakao/payment/orders".into(), "카카오페이"),
        ("POST", "/paymentwall/delivery".into(), "페이먼트월"),
        // The official Node client's `Vbanks.getHolder`: 405 before the token, as if the merchant
        // had used a wrong method, while the path was taken for `/vbanks/{imp_uid}`.
        (
            "GET",
            "/vbanks/holder?bank_code=004&bank_num=1234567890".into(),
            "예금주",
        ),
    ];
    for (method, path, feature) in &calls {
        let send = |token: Option<&str>| {
            let mut req = app
                .http
                .request(method.parse().unwrap(), app.url(path))
                .json(&serde_json::json!({"amount": 1000}));
            if let Some(t) = token {
                req = req.header("Authorization", t);
            }
            async move { crate::helpers::TestApp::read(req.send().await.expect("request")).await }
        };
        let (status, body) = send(Some(&token)).await;
        assert_eq!(
            status,
            StatusCode::NOT_IMPLEMENTED,
            "{method} {path}: {body}"
        );
        assert_eq!(body["code"], -1, "{method} {path}: {body}");
        assert!(body["response"].is_null(), "{method} {path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(feature) && message.contains("KCP"),
            "{method} {path}: {body}"
        );
        for bad in [None, Some("not-a-token")] {
            let (status, body) = send(bad).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {bad:?}: {body}"
            );
        }
    }
    for path in [
        "/receipts",
        "/certifications/otp/other",
        "/payments/x/balance/y",
        "/kcpquick/other",
        "/tiers",
    ] {
        let (status, body) = app.get(path, Some(&token)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}

/// The log lines of the request `x-request-id: request_id`.
fn logged_for(request_id: &str) -> Vec<String> {
    let field = format!("request_id={request_id}");
    crate::helpers::captured_logs()
        .lines()
        .filter(|l| l.contains(&field))
        .map(str::to_string)
        .collect()
}

/// A GET `path` with the token, under a request id of its own; its status and that id.
async fn get_identified(app: &TestApp, path: &str, token: &str) -> (StatusCode, String) {
    let request_id = format!("r-{}", openport::domain::ids::random_hex(8));
    let res = app
        .http
        .get(app.url(path))
        .header("Authorization", token)
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("request");
    (res.status(), request_id)
}

/// A 501 is ordinary merchant traffic (a shop asking for the cash receipt on every order page),
/// but the request log wrote an ERROR line for each, and operators alert on every ERROR line
/// (docs/operations.md "Monitoring"): any merchant could page them, for nothing they could do. It
/// is an intended answer, logged at DEBUG as every answer is, never at ERROR.
#[tokio::test]
async fn an_unoffered_iamport_operation_answers_501_without_an_error_line_in_the_log() {
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "unoffered-log", 1000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap();

    let (status, request_id) = get_identified(&app, &format!("/receipts/{imp_uid}"), &token).await;

    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    let lines = logged_for(&request_id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("route=/receipts/{imp_uid}")),
        "the request is in the log: {lines:#?}"
    );
    let errors: Vec<_> = lines.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// A genuine 500 (the payments table gone) is still an ERROR with its cause, and one line only:
/// the request log added a second one saying nothing but the status.
#[tokio::test]
async fn a_database_failure_is_a_500_logged_once_at_error_with_its_cause() {
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "gone-table", 1000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap();
    execute(
        &app,
        vec!["ALTER TABLE payments RENAME TO payments_gone".into()],
    )
    .await;

    let (status, request_id) = get_identified(&app, &format!("/payments/{imp_uid}"), &token).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let lines = logged_for(&request_id);
    let errors: Vec<_> = lines.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    assert!(errors[0].contains("database error: "), "{}", errors[0]);
    assert!(errors[0].contains("payments"), "the cause: {}", errors[0]);
}

#[tokio::test]
async fn status_all_compares_from_and_to_with_the_time_of_each_payments_own_status() {
    const DAY: i64 = 24 * 3600;
    let app = spawn_app().await;
    let token = app.token().await;
    let cancel = |token: String, p: serde_json::Value| {
        let app = &app;
        async move {
            let (_, body) = app
                .post(
                    "/payments/cancel",
                    Some(&token),
                    serde_json::json!({"imp_uid": p["imp_uid"]}),
                )
                .await;
            assert_eq!(body["response"]["status"], "cancelled", "{body}");
            body["response"]["cancelled_at"].as_i64().unwrap()
        }
    };
    // Started and paid on day 0, cancelled on day 10.
    let early = app.paid(&token, "span-early", 1000).await;
    app.advance(10 * DAY);
    let token = app.token().await;
    let day10 = cancel(token.clone(), early).await;
    // Started and paid on day 10, cancelled on day 20.
    let middle = app.paid(&token, "span-middle", 1000).await;
    app.advance(10 * DAY);
    let token = app.token().await;
    let day20 = cancel(token.clone(), middle).await;
    // Started and paid on day 20.
    app.paid(&token, "span-late", 1000).await;
    let listed = |day: i64| {
        let (app, token) = (&app, token.clone());
        async move {
            let (status, body) = app
                .get(
                    &format!(
                        "/payments/status/all?from={}&to={}&sorting=started",
                        day - 60,
                        day + 60
                    ),
                    Some(&token),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let r = &body["response"];
            let uids: Vec<String> = r["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["merchant_uid"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(r["total"], uids.len(), "{body}");
            uids
        }
    };

    assert_eq!(listed(day10).await, ["span-early"]);
    assert_eq!(listed(day20).await, ["span-middle", "span-late"]);
}

/// spec §4.1: find with a status answers "the latest with that status", whatever `sorting` says
/// (iamport's OpenAPI: "해당 status에 해당하는 가장 최신 데이터"); without one, the first by the sorting.
#[tokio::test]
async fn find_with_a_status_answers_the_latest_with_that_status_whatever_the_sorting() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, first) = app
        .pay(
            &token,
            "find-latest",
            1000,
            test_cards::DAILY_LIMIT_EXCEEDED,
        )
        .await;
    app.advance(60);
    let (_, second) = app
        .pay(
            &token,
            "find-latest",
            1000,
            test_cards::MONTHLY_LIMIT_EXCEEDED,
        )
        .await;
    for sorting in ["", "?sorting=started", "?sorting=-started", "?sorting=paid"] {
        let (status, found) = app
            .get(
                &format!("/payments/find/find-latest/failed{sorting}"),
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(
            found["response"]["imp_uid"], second["response"]["imp_uid"],
            "{sorting}"
        );
    }
    let (_, found) = app
        .get("/payments/find/find-latest?sorting=started", Some(&token))
        .await;
    assert_eq!(found["response"]["imp_uid"], first["response"]["imp_uid"]);
}

#[tokio::test]
async fn sorting_by_paid_time_puts_payments_never_paid_last_on_every_database() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, failed) = app
        .pay(&token, "sort-1", 1000, test_cards::DAILY_LIMIT_EXCEEDED)
        .await;
    assert_eq!(failed["response"]["status"], "failed", "{failed}");
    app.advance(60);
    let paid = app.paid(&token, "sort-1", 1000).await;
    app.advance(60);
    let later = app.paid(&token, "sort-2", 1000).await;

    let (status, found) = app
        .get("/payments/find/sort-1?sorting=-paid", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["response"]["imp_uid"], paid["imp_uid"]);
    let (_, found) = app
        .get("/payments/find/sort-1?sorting=paid", Some(&token))
        .await;
    assert_eq!(
        found["response"]["imp_uid"], failed["response"]["imp_uid"],
        "an unset paid_at is 0, the earliest"
    );
    let (_, list) = app
        .get("/payments/status/all?sorting=-paid", Some(&token))
        .await;
    let order: Vec<&serde_json::Value> = list["response"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["imp_uid"])
        .collect();
    assert_eq!(
        order,
        [
            &later["imp_uid"],
            &paid["imp_uid"],
            &failed["response"]["imp_uid"]
        ]
    );
}

/// `batches` × `per_batch` paid payments of 1,000 won, `<prefix>-0`, `<prefix>-1`, …, each batch's
/// made at once.
async fn pay_in_batches(
    app: &TestApp,
    token: &str,
    prefix: &str,
    batches: usize,
    per_batch: usize,
) {
    for batch in 0..batches {
        let calls = (0..per_batch).map(|i| {
            let uid = format!("{prefix}-{}", batch * per_batch + i);
            async move { app.paid(token, &uid, 1000).await }
        });
        futures::future::join_all(calls).await;
    }
}

#[tokio::test]
async fn status_lists_take_a_limit_of_up_to_1000() {
    let app = spawn_app().await;
    let token = app.token().await;
    pay_in_batches(&app, &token, "many", 11, 10).await;
    let (status, body) = app
        .get("/payments/status/paid?limit=1000", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["total"], 110);
    assert_eq!(body["response"]["list"].as_array().unwrap().len(), 110);
    assert_eq!(body["response"]["next"], 0);
}

#[tokio::test]
async fn an_empty_status_segment_lists_payments_of_every_status() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.paid(&token, "empty-1", 1000).await;
    app.pay(&token, "empty-2", 1000, test_cards::DAILY_LIMIT_EXCEEDED)
        .await;
    for path in [
        "/payments/status",
        "/payments/status/",
        "/payments/status//",
        "/payments/status/undefined",
    ] {
        let (status, body) = app.get(path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["response"]["total"], 2, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_multi_get_naming_one_payment_twice_or_by_imp_uid_and_merchant_uid_answers_it_once_with_200(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let a = app.paid(&token, "both-a", 1000).await;
    let ia = a["imp_uid"].as_str().unwrap();
    let (status, body) = app
        .get(
            &format!("/payments?imp_uid[]={ia}&merchant_uid[]=both-a"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["response"][0]["imp_uid"], ia);
    let (status, body) = app
        .get(
            &format!("/payments?imp_uid[]={ia}&imp_uid[]={ia}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"].as_array().unwrap().len(), 1, "{body}");
    let (status, body) = app
        .get(
            &format!("/payments?imp_uid[]={ia}&merchant_uid[]=both-a&merchant_uid[]=none"),
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(body["response"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn a_page_far_past_the_end_or_an_extreme_schedule_range_is_answered_not_crashed() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.paid(&token, "far-1", 1000).await;
    for path in [
        "/payments/status/paid?page=9223372036854775807&limit=1000",
        "/payments/status/all?page=18446744073709551615",
        "/subscribe/customers/nobody/schedules?page=9223372036854775807",
    ] {
        let (status, body) = app.get(path, Some(&token)).await;
        assert!(
            status.is_success() || status.is_client_error(),
            "{path}: {status} {body}"
        );
        if status.is_success() && body["response"]["list"].is_array() {
            assert_eq!(
                body["response"]["list"],
                serde_json::json!([]),
                "{path}: {body}"
            );
        }
    }
    let (status, body) = app
        .get(
            "/subscribe/payments/schedule?schedule_from=-9223372036854775808&schedule_to=9223372036854775807",
            Some(&token),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// A `to` (or `from`) as large as i64 goes, Java's `Long.MAX_VALUE` for "no upper bound", lists
/// the payments up to then once the merchant's paid listing has a margin (`paid_lag_secs`, set by
/// a payment paid long after it started): PostgreSQL added that margin to the `to` in SQL and
/// answered `bigint out of range`, an HTTP 500, also to the operator's listing across merchants.
/// Any other extreme value is answered too: one ≤ 0 is absent, a `from` past the `to` lists
/// nothing.
#[tokio::test]
async fn a_to_as_large_as_i64_lists_the_payments_up_to_then_once_the_paid_listing_has_a_margin() {
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "far-to-1", 1000).await;
    execute(
        &app,
        vec!["UPDATE merchants SET paid_lag_secs = 86400".into()],
    )
    .await;
    let max = i64::MAX;
    let min = i64::MIN;
    for who in [token.as_str(), ADMIN_TOKEN] {
        for status in ["paid", "all", ""] {
            let path = format!("/payments/status/{status}?from=1&to={max}");
            let (code, body) = app.get(&path, Some(who)).await;
            assert_eq!(code, StatusCode::OK, "{path}: {body}");
            assert_eq!(body["code"], 0, "{path}: {body}");
            assert_eq!(body["response"]["total"], 1, "{path}: {body}");
            assert_eq!(
                body["response"]["list"][0]["imp_uid"], paid["imp_uid"],
                "{path}: {body}"
            );
        }
    }
    let merchant_id = &app
        .payment(ADMIN_TOKEN, paid["imp_uid"].as_str().unwrap())
        .await["merchant_id"];
    let (code, body) = app
        .get(
            &format!("/payments/status/paid?from=1&to={max}&merchant_id={merchant_id}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["total"], 1, "{body}");
    for query in [
        format!("to={max}"),
        format!("from={max}"),
        format!("from={max}&to={max}"),
        format!("from={min}&to={max}"),
        format!("from={max}&to={min}"),
        format!("from={min}&to={min}"),
    ] {
        for status in ["paid", "all"] {
            let path = format!("/payments/status/{status}?{query}");
            let (code, body) = app.get(&path, Some(&token)).await;
            assert_eq!(code, StatusCode::OK, "{path}: {body}");
            assert_eq!(body["code"], 0, "{path}: {body}");
        }
    }
    // ≤ 0 is absent: `to` now, `from` 90 days before it.
    let (_, body) = app
        .get(
            &format!("/payments/status/paid?from={min}&to={min}"),
            Some(&token),
        )
        .await;
    assert_eq!(body["response"]["total"], 1, "{body}");
}

/// "No upper bound" with no `from` (a `to` past 9999, `Long.MAX_VALUE`, or any `to` in the
/// future, with the `from` absent or ≤ 0) lists what no `to` lists, the last 90 days: the default
/// window ends at `to` or now, whichever is earlier. It ended at `to`, so that "everything up to
/// forever" listed the last 90 days of 9999, nothing, with `code 0`. A `to` in the past still
/// windows the 90 days before it.
#[tokio::test]
async fn a_to_in_the_future_with_no_from_lists_the_last_90_days_as_no_to_does() {
    let app = spawn_app().await;
    let token = app.token().await;
    let recent = app.paid(&token, "no-bound-recent", 1000).await;
    let old = app.paid(&token, "no-bound-old", 1000).await;
    let old_uid = old["imp_uid"].as_str().unwrap();
    // 95 days ago: outside the last 90 days, well inside the 90 days before ten days ago.
    execute(
        &app,
        vec![format!(
            "UPDATE payments SET started_at = started_at - 95 * 86400, \
             paid_at = paid_at - 95 * 86400 WHERE imp_uid = '{old_uid}'"
        )],
    )
    .await;
    let max = i64::MAX;
    let tomorrow = chrono::Utc::now().timestamp() + 86400;
    for who in [token.as_str(), ADMIN_TOKEN] {
        for status in ["paid", "all"] {
            for query in [
                String::new(),
                format!("to={max}"),
                format!("from=0&to={max}"),
                format!("from=-1&to={max}"),
                "to=253402300799".to_string(),
                format!("to={tomorrow}"),
            ] {
                let path = format!("/payments/status/{status}?{query}");
                let (code, body) = app.get(&path, Some(who)).await;
                assert_eq!(code, StatusCode::OK, "{path}: {body}");
                assert_eq!(body["code"], 0, "{path}: {body}");
                assert_eq!(body["response"]["total"], 1, "{path}: {body}");
                assert_eq!(
                    body["response"]["list"][0]["imp_uid"], recent["imp_uid"],
                    "{path}: {body}"
                );
            }
        }
    }
    // An explicit `from` still reaches back past the 90 days, and a `to` in the past still
    // windows the 90 days before it.
    let (_, body) = app
        .get(
            &format!("/payments/status/paid?from=1&to={max}"),
            Some(&token),
        )
        .await;
    assert_eq!(body["response"]["total"], 2, "{body}");
    let ten_days_ago = chrono::Utc::now().timestamp() - 10 * 86400;
    let (_, body) = app
        .get(
            &format!("/payments/status/paid?to={ten_days_ago}"),
            Some(&token),
        )
        .await;
    assert_eq!(body["response"]["total"], 1, "{body}");
    assert_eq!(
        body["response"]["list"][0]["imp_uid"], old["imp_uid"],
        "{body}"
    );
}

/// Merchant JS that builds `schedule-status=${status}` from an unset variable sends the literal
/// `undefined`: it is no filter, as for the payment lookups (`/payments/find/{uid}/undefined`),
/// on both spellings and every schedule list, while a mistyped status is still refused.
#[tokio::test]
async fn a_schedule_status_of_undefined_lists_the_schedules_as_no_filter_does() {
    let app = spawn_app().await;
    let token = app.token().await;
    crate::billing::register(&app, &token, "s-undefined", test_cards::SHINHAN_CREDIT).await;
    let base = chrono::Utc::now().timestamp() + 1000;
    let (_, body) = app
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            serde_json::json!({"customer_uid": "s-undefined", "schedules": [
                {"merchant_uid": "u-wait", "schedule_at": base, "amount": 1000},
                {"merchant_uid": "u-revoke", "schedule_at": base + 100, "amount": 1000},
            ]}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    let (_, body) = app
        .post(
            "/subscribe/payments/unschedule",
            Some(&token),
            serde_json::json!({"customer_uid": "s-undefined", "merchant_uid": "u-revoke"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");

    let range = format!("schedule_from={}&schedule_to={}", base - 10, base + 1000);
    for (path, sep) in [
        (
            "/subscribe/payments/schedule/customers/s-undefined".to_string(),
            "?",
        ),
        (
            "/subscribe/customers/s-undefined/schedules".to_string(),
            "?",
        ),
        (format!("/subscribe/payments/schedule?{range}"), "&"),
    ] {
        let (status, unfiltered) = app.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {unfiltered}");
        assert_eq!(unfiltered["response"]["total"], 2, "{path}: {unfiltered}");
        for name in ["schedule-status", "schedule_status"] {
            let filtered = format!("{path}{sep}{name}=undefined");
            let (status, body) = app.get(&filtered, Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{filtered}: {body}");
            assert_eq!(body, unfiltered, "{filtered}");
        }
        let (status, body) = app
            .get(&format!("{path}{sep}schedule_status=revoked"), Some(&token))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["response"]["total"], 1, "{path}: {body}");
        let (status, body) = app
            .get(
                &format!("{path}{sep}schedule_status=undefine"),
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], -1, "{path}: {body}");
    }
}

/// A path segment that is not UTF-8 once percent-decoded is refused with iamport's envelope, as
/// every other refusal: axum's own answer was plain text, which a client parsing error bodies as
/// JSON could not read.
#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_400_with_the_envelope() {
    let app = spawn_app().await;
    let token = app.token().await;
    for path in ["/payments/%FF", "/subscribe/customers/%C3%28", "/banks/%FF"] {
        let (status, body) = app.get(path, Some(&token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], -1, "{path}: {body}");
        assert!(body["response"].is_null(), "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("요청 경로"),
            "{body}"
        );
    }
}

/// Sum of a Payment object's `cancel_history`.
fn history_sum(p: &serde_json::Value) -> i64 {
    p["cancel_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].as_i64().unwrap())
        .sum()
}

async fn cancel_part(app: &crate::helpers::TestApp, token: &str, imp_uid: &str, amount: i64) {
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(token),
            serde_json::json!({"imp_uid": imp_uid, "amount": amount}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
}

/// A lookup reads the payment, then its cancel history: a partial cancel committing in between
/// (here: made after the payment was read) must not show the payment's old `cancel_amount` next
/// to the new history.
#[tokio::test]
async fn a_payment_read_before_a_partial_cancel_is_answered_with_the_history_it_agrees_with() {
    use openport::api::payment_json::PaymentAnnotation;
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "snap-1", 10000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap();
    cancel_part(&app, &token, imp_uid, 3000).await;
    let gateway = &app.app.gateway;
    let read = openport::store::payments::by_imp_uid(&gateway.db.read, None, imp_uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.cancel_amount, 3000);

    cancel_part(&app, &token, imp_uid, 2000).await;
    let shown = serde_json::to_value(PaymentAnnotation::from(
        gateway.payment_record(read).await.unwrap(),
    ))
    .unwrap();

    assert_eq!(shown["cancel_amount"], 5000, "{shown}");
    assert_eq!(history_sum(&shown), 5000, "{shown}");
}

/// What the lookups rest on: statements run on a read snapshot see the database as it was at
/// the first one, on SQLite (a reader connection's deferred transaction) and on PostgreSQL
/// (REPEATABLE READ), while a cancel commits beside them.
#[tokio::test]
async fn a_read_snapshot_does_not_see_a_cancel_committed_after_its_first_read() {
    use openport::store::payments;
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "snap-2", 10000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap();
    cancel_part(&app, &token, imp_uid, 3000).await;
    let db = &app.app.gateway.db;

    let snapshot = db.read_snapshot().await.unwrap();
    let p = payments::by_imp_uid(&snapshot, None, imp_uid)
        .await
        .unwrap()
        .unwrap();
    cancel_part(&app, &token, imp_uid, 2000).await;
    let history = payments::cancellations_of(&snapshot, &[p.id])
        .await
        .unwrap();
    let again = payments::by_id(&snapshot, p.id).await.unwrap().unwrap();
    snapshot.end().await.unwrap();

    assert_eq!(p.cancel_amount, 3000);
    assert_eq!(again.cancel_amount, 3000, "the payment as first read");
    assert_eq!(history.iter().map(|c| c.amount).sum::<i64>(), 3000);
    let now = payments::cancellations_of(&db.read, &[p.id]).await.unwrap();
    assert_eq!(now.len(), 2, "outside the snapshot the cancel is there");
}

/// Lookups and lists made while partial cancels commit always show a `cancel_amount` that is
/// the sum of the `cancel_history` beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookups_made_while_partial_cancels_commit_show_a_cancel_amount_their_history_sums_to() {
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "snap-3", 100_000).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap().to_string();
    cancel_part(&app, &token, &imp_uid, 100).await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let look = |path: String| {
        let (app, token, done) = (&app, &token, &done);
        async move {
            let mut seen = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let (_, body) = app.get(&path, Some(token)).await;
                let p = match &body["response"]["list"] {
                    serde_json::Value::Array(list) => list[0].clone(),
                    _ => body["response"].clone(),
                };
                assert_eq!(p["cancel_amount"].as_i64().unwrap(), history_sum(&p), "{p}");
                seen += 1;
            }
            seen
        }
    };
    let cancels = async {
        for _ in 0..30 {
            cancel_part(&app, &token, &imp_uid, 100).await;
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (_, one, two, list) = tokio::join!(
        cancels,
        look(format!("/payments/{imp_uid}")),
        look(format!("/payments/{imp_uid}")),
        look("/payments/status/all".to_string()),
    );
    assert!(one > 0 && two > 0 && list > 0, "{one} {two} {list}");
    let last = app.payment(&token, &imp_uid).await;
    assert_eq!(last["cancel_amount"], 3100, "{last}");
}

/// The official Java client always sends `limit` (`GetScheduleData(from, to, status, page,
/// limit)`), and 0 there means "not set": a `limit` of 0 or below is the default 20 a page, as a
/// `page` of 0 is page 1, on the payment and the schedule listings. It was served one row a page,
/// so a caller reading the first page saw one payment or schedule out of many.
#[tokio::test]
async fn a_limit_of_0_or_below_pages_by_the_default_20_not_by_1() {
    let app = spawn_app().await;
    let token = app.token().await;
    pay_in_batches(&app, &token, "zero-limit", 3, 7).await;
    for query in ["limit=0", "limit=0&page=0", "limit=-5"] {
        let path = format!("/payments/status/all?{query}");
        let (status, body) = app.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let r = &body["response"];
        assert_eq!(r["total"], 21, "{path}: {body}");
        assert_eq!(r["list"].as_array().unwrap().len(), 20, "{path}: {body}");
        assert_eq!(r["next"], 2, "{path}: {body}");
    }

    crate::billing::register(&app, &token, "s-zero-limit", test_cards::SHINHAN_CREDIT).await;
    let base = chrono::Utc::now().timestamp() + 1000;
    let schedules: Vec<serde_json::Value> = (0..21)
        .map(|i| serde_json::json!({"merchant_uid": format!("zl-{i}"), "schedule_at": base + i, "amount": 1000}))
        .collect();
    let (_, body) = app
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            serde_json::json!({"customer_uid": "s-zero-limit", "schedules": schedules}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    for path in [
        format!(
            "/subscribe/payments/schedule?schedule_from={}&schedule_to={}&page=0&limit=0",
            base - 10,
            base + 1000
        ),
        "/subscribe/payments/schedule/customers/s-zero-limit?limit=0".to_string(),
        "/subscribe/customers/s-zero-limit/schedules?limit=-1".to_string(),
    ] {
        let (status, body) = app.get(&path, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let r = &body["response"];
        assert_eq!(r["total"], 21, "{path}: {body}");
        assert_eq!(r["list"].as_array().unwrap().len(), 20, "{path}: {body}");
        assert_eq!(r["next"], 2, "{path}: {body}");
    }
}
