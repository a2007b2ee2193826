use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{future_expiry, spawn_app, test_cards};

#[tokio::test]
async fn an_authenticated_key_in_payment_is_paid_with_kcp_fields_in_iamport_shape() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "order-1", "amount": 1000, "card_number": "4111-1111-1111-1111",
                   "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "00", "name": "포인트 1000",
                   "buyer_name": "홍길동", "custom_data": {"order": 7, "a": {"z": 1, "b": [2]}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    let p = &body["response"];
    assert_eq!(p["status"], "paid");
    assert_eq!(p["merchant_uid"], "order-1");
    assert_eq!(p["amount"], 1000);
    assert_eq!(p["cancel_amount"], 0);
    assert_eq!(p["currency"], "KRW");
    assert_eq!(p["pay_method"], "card");
    assert_eq!(p["channel"], "api");
    assert_eq!(p["pg_provider"], "kcp");
    assert_eq!(p["pg_id"], "T0000");
    assert_eq!(p["sandbox"], true);
    assert_eq!(p["card_number"], "411111******1111");
    assert_eq!(p["card_code"], "366");
    assert_eq!(p["card_name"], "신한카드");
    assert_eq!(p["card_type"], 0);
    assert_eq!(p["card_quota"], 0);
    // An object is stored as its JSON text, in the client's key order (as iamport keeps it).
    assert_eq!(p["custom_data"], "{\"order\":7,\"a\":{\"z\":1,\"b\":[2]}}");
    assert_eq!(p["failed_at"], 0);
    assert_eq!(p["cancelled_at"], 0);
    assert!(p["paid_at"].as_i64().unwrap() > 0);
    assert!(p["started_at"].as_i64().unwrap() > 0);
    assert_eq!(p["cancel_history"], json!([]));
    assert_eq!(p["cancel_receipt_urls"], json!([]));
    // Fields of iamport's OpenAPI that KCP has no value for are there, null or empty, for code
    // that indexes the object as a map.
    for absent in [
        "card_issuer_code",
        "card_issuer_name",
        "card_publisher_code",
        "card_publisher_name",
        "promotion",
    ] {
        assert!(p.get(absent).is_some_and(Value::is_null), "{absent}: {p}");
    }
    assert_eq!(p["deposit_history"], json!([]));
    assert!(p["imp_uid"].as_str().unwrap().starts_with("imp_"));
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str());
    assert_eq!(p["apply_num"], ledger[0].app_no.as_str());
    // No card digits beyond the mask leave openport.
    assert!(!body.to_string().contains("4111111111111111"));
}

#[tokio::test]
async fn a_non_authenticated_payment_without_birth_is_paid_and_a_check_card_has_card_type_1() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "order-na", "amount": "5000", "card_number": test_cards::SAMSUNG_CHECK, "expiry": future_expiry()}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid");
    assert_eq!(body["response"]["card_type"], 1);
    assert_eq!(body["response"]["card_code"], "365");
}

/// KCP answers the sandbox's Kakao Bank card with issuer `CCKA`: its payment shows iamport's
/// `090`, the code `GET /cards` lists for 카카오뱅크, rather than null.
#[tokio::test]
async fn a_kakao_bank_card_payment_answers_card_code_090_as_get_cards_lists_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .pay(&token, "order-kakao", 1000, test_cards::KAKAO_BANK)
        .await;
    assert_eq!(body["code"], 0, "{body}");
    let p = &body["response"];
    assert_eq!(p["status"], "paid", "{body}");
    assert_eq!(p["card_name"], "카카오뱅크");
    assert_eq!(p["card_code"], "090", "{body}");
    let (status, card) = app.get("/cards/090", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{card}");
    assert_eq!(card["response"]["code"], "090");
}

/// `POST /subscribe/payments/foreign`, which the official Python client's `pay_foreign` and the
/// WooCommerce plugin still call, is onetime's non-authenticated key-in (KCP `11111000`): a
/// `birth` and `pwd_2digit` in its body are ignored, never turning it into the authenticated
/// charge (`11121000`, refused at KCP here so that sending one shows) nor refused as half a pair.
#[tokio::test]
async fn the_old_foreign_route_pays_by_the_non_authenticated_key_in_whatever_birth_it_carries() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(
        FaultRule::new(
            paths::HUB_PAYMENT,
            Fault::Refuse {
                code: "8888".into(),
                message: "authenticated key-in".into(),
            },
        )
        .when("card_tx_type", "11121000")
        .times(100),
    );
    let card = json!({"amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
                      "expiry": future_expiry(), "name": "해외카드"});
    let with = |uid: &str, extra: Value| {
        let mut body = card.clone();
        body["merchant_uid"] = uid.into();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (uid, extra) in [
        ("foreign-1", json!({})),
        ("foreign-2", json!({"birth": "800101", "pwd_2digit": "00"})),
        ("foreign-3", json!({"birth": "800101"})),
    ] {
        let (status, body) = app
            .post(
                "/subscribe/payments/foreign",
                Some(&token),
                with(uid, extra),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{uid}: {body}");
        assert_eq!(body["code"], 0, "{uid}: {body}");
        let p = &body["response"];
        assert_eq!(p["status"], "paid", "{uid}: {body}");
        assert_eq!(p["merchant_uid"], uid);
        assert_eq!(p["channel"], "api");
        assert_eq!(p["card_code"], "366");
    }
    assert_eq!(app.sandbox.ledger().len(), 3);
    // The same body through onetime is the authenticated charge, which KCP refuses here.
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            with(
                "onetime-auth",
                json!({"birth": "800101", "pwd_2digit": "00"}),
            ),
        )
        .await;
    assert_eq!(body["response"]["status"], "failed", "{body}");
    assert_eq!(app.sandbox.ledger().len(), 3);
}

#[tokio::test]
async fn a_kcp_decline_is_code_0_with_status_failed_and_the_reason() {
    let app = spawn_app().await;
    let token = app.token().await;
    for (uid, card, code) in [
        ("kb-1", test_cards::KB_KOOKMIN, "8102"),
        ("limit-1", test_cards::DAILY_LIMIT_EXCEEDED, "8186"),
    ] {
        let (status, body) = app.pay(&token, uid, 1000, card).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["code"], 0, "{body}");
        let p = &body["response"];
        assert_eq!(p["status"], "failed");
        assert!(p["fail_reason"].as_str().unwrap().contains(code), "{body}");
        assert!(p["failed_at"].as_i64().unwrap() > 0);
        assert_eq!(p["paid_at"], 0);
    }
    assert!(app.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn card_data_openport_can_check_is_refused_before_kcp_with_code_minus_1() {
    let app = spawn_app().await;
    let token = app.token().await;
    let cases = [
        json!({"card_number": "4111-1111-1111-1112", "expiry": future_expiry()}),
        json!({"card_number": "4111", "expiry": future_expiry()}),
        json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": "2020-01"}),
        json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": "12/2030x"}),
        json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(), "birth": "8001"}),
        json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(), "birth": "800101"}),
    ];
    for (i, mut case) in cases.into_iter().enumerate() {
        case["merchant_uid"] = json!(format!("bad-{i}"));
        case["amount"] = json!(1000);
        let (status, body) = app
            .post("/subscribe/payments/onetime", Some(&token), case.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{case} → {body}");
        assert_eq!(body["code"], -1, "{case} → {body}");
        assert!(body["response"].is_null());
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("카드정보 인증에 실패하였습니다."),
            "{body}"
        );
        assert!(
            !body.to_string().contains("4111"),
            "card digits echoed: {body}"
        );
    }
    assert!(app.sandbox.ledger().is_empty(), "nothing may reach KCP");
}

#[tokio::test]
async fn a_wrong_pin_refused_by_kcp_is_code_minus_1() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "pin-1", "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
                   "expiry": future_expiry(), "birth": "800101", "pwd_2digit": "99"}),
        )
        .await;
    assert_eq!(body["code"], -1, "{body}");
    assert!(body["message"].as_str().unwrap().contains("8110"), "{body}");
}

/// The floor is a rule of the order, not of the card: `code 1`, as every business refusal (spec §2),
/// where it was `code -1`, which iamport keeps for card data (`카드정보 인증에 실패하였습니다.`) and
/// tells a client to have the buyer enter the card again.
#[tokio::test]
async fn instalments_under_50000_won_are_a_business_refusal_before_kcp() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "quota-0", "amount": 49999, "card_quota": 3, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    assert_eq!(
        body["message"],
        "할부결제는 50000원 이상 결제에만 가능합니다. (card_quota: 3)"
    );
    let (status, _) = app.get("/payments/find/quota-0", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(app.sandbox.ledger().is_empty());
}

/// Money written as text was read through `f64`, whose rounding made a tiny fraction whole:
/// `"49999.99999999999999"` with instalments was charged 50,000 in three, and a cancel of
/// `"99.99999999999999999"` refunded 100 (found by a model-based review). A fraction is refused.
#[tokio::test]
async fn an_amount_as_text_with_a_tiny_fraction_is_refused_not_rounded_to_a_whole_charge_or_refund()
{
    let app = spawn_app().await;
    let token = app.token().await;
    for (uid, amount, quota) in [
        ("tiny-fraction-1", "999.99999999999999999", 0),
        ("tiny-fraction-2", "49999.99999999999999", 3),
    ] {
        let (status, body) = app
            .post(
                "/subscribe/payments/onetime",
                Some(&token),
                json!({"merchant_uid": uid, "amount": amount, "card_quota": quota, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{amount}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("amount"),
            "{body}"
        );
    }
    assert!(app.sandbox.ledger().is_empty(), "nothing charged");

    let (_, paid) = app
        .pay(
            &token,
            "tiny-fraction-paid",
            1000,
            test_cards::SHINHAN_CREDIT,
        )
        .await;
    let imp_uid = paid["response"]["imp_uid"].as_str().unwrap().to_string();
    let (status, refused) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": "99.99999999999999999"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(app.payment(&token, &imp_uid).await["cancel_amount"], 0);
    // Whole amounts as text still read, exactly.
    let (_, cancelled) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": "1.0e2"}),
        )
        .await;
    assert_eq!(cancelled["response"]["cancel_amount"], 100, "{cancelled}");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn instalments_are_allowed_from_50000_won() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "quota-1", "amount": 50000, "card_quota": 3, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["card_quota"], 3);
}

#[tokio::test]
async fn missing_or_malformed_parameters_are_a_clear_400() {
    let app = spawn_app().await;
    let token = app.token().await;
    let cases = [
        (
            json!({"amount": 1000, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "merchant_uid",
        ),
        (
            json!({"merchant_uid": "x", "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "amount",
        ),
        (
            json!({"merchant_uid": "x", "amount": -5, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "amount",
        ),
        (
            json!({"merchant_uid": "x", "amount": 10.5, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "`amount`",
        ),
        (
            json!({"merchant_uid": "x", "amount": "1,000", "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "`amount`",
        ),
        (
            json!({"merchant_uid": "x", "amount": 1000, "card_quota": "three", "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "`card_quota`",
        ),
        (
            // JSON can carry it only as a float: it would be stored as "1e23".
            json!({"merchant_uid": 1e23, "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "`merchant_uid`",
        ),
        (
            json!({"merchant_uid": "x", "amount": 1000, "expiry": future_expiry()}),
            "card_number",
        ),
        (
            json!({"merchant_uid": "x", "amount": 1000, "name": "<script>alert(1)</script>", "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
            "스크립트",
        ),
    ];
    for (case, needle) in cases {
        let (status, body) = app
            .post("/subscribe/payments/onetime", Some(&token), case.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case} → {body}");
        assert_eq!(body["code"], -1);
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{case} → {body}"
        );
    }
    let res = app
        .http
        .post(app.url("/subscribe/payments/onetime"))
        .header("Authorization", &token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::TestApp::read(res).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A field given twice is named too (serde loses the path of the shared order fields).
    let res = app
        .http
        .post(app.url("/subscribe/payments/onetime"))
        .header("Authorization", &token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"merchant_uid":"x","amount":1000,"amount":2000,"card_number":"{}","expiry":"{}"}}"#,
            test_cards::SHINHAN_CREDIT,
            future_expiry()
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::TestApp::read(res).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("`amount`"),
        "{body}"
    );
    assert!(app.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn a_paid_merchant_uid_is_refused_but_a_failed_one_can_be_paid_again() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, failed) = app
        .pay(&token, "retry-1", 1000, test_cards::DAILY_LIMIT_EXCEEDED)
        .await;
    assert_eq!(failed["response"]["status"], "failed");
    let paid = app.paid(&token, "retry-1", 1000).await;
    let (_, again) = app
        .pay(&token, "retry-1", 1000, test_cards::SHINHAN_CREDIT)
        .await;
    assert_eq!(again["code"], 1, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("이미 결제가 완료된"),
        "{again}"
    );
    assert_eq!(app.sandbox.ledger().len(), 1);
    // find → the latest; findAll → both attempts.
    let (_, all) = app.get("/payments/findAll/retry-1", Some(&token)).await;
    assert_eq!(all["response"]["total"], 2);
    let (_, found) = app.get("/payments/find/retry-1/paid", Some(&token)).await;
    assert_eq!(found["response"]["imp_uid"], paid["imp_uid"]);
}

#[tokio::test]
async fn many_parallel_payments_with_one_merchant_uid_charge_kcp_once() {
    let app = spawn_app().await;
    let token = app.token().await;
    let calls = (0..24).map(|_| app.pay(&token, "race-1", 1000, test_cards::SHINHAN_CREDIT));
    let results = futures::future::join_all(calls).await;
    let paid = results
        .iter()
        .filter(|(_, b)| b["code"] == 0 && b["response"]["status"] == "paid")
        .count();
    let refused = results.iter().filter(|(_, b)| b["code"] == 1).count();
    assert_eq!(paid, 1, "{results:?}");
    assert_eq!(refused, 23, "{results:?}");
    assert_eq!(app.sandbox.ledger().len(), 1);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_form_encoded_onetime_request_works() {
    let app = spawn_app().await;
    let token = app.token().await;
    let expiry = future_expiry();
    let res = app
        .http
        .post(app.url("/subscribe/payments/onetime"))
        .header("Authorization", &token)
        .form(&[
            ("merchant_uid", "form-1"),
            ("amount", "1200"),
            ("card_number", "4111111111111111"),
            ("expiry", expiry.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (_, body) = crate::helpers::TestApp::read(res).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["amount"], 1200);
}

#[tokio::test]
async fn the_operator_token_cannot_pay_on_a_merchants_behalf() {
    let app = spawn_app().await;
    let (status, _) = app
        .pay(
            crate::helpers::ADMIN_TOKEN,
            "admin-1",
            1000,
            test_cards::SHINHAN_CREDIT,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn two_instances_on_one_database_charge_kcp_once_for_one_merchant_uid() {
    let first = spawn_app().await;
    let second = first.another_instance(|_| {}).await;
    let t1 = first.token().await;
    let t2 = second.token().await;
    let calls = (0..16).map(|i| {
        let (app, token) = if i % 2 == 0 {
            (&first, &t1)
        } else {
            (&second, &t2)
        };
        app.pay(token, "two-instances", 1000, test_cards::SHINHAN_CREDIT)
    });
    let results = futures::future::join_all(calls).await;
    let paid = results
        .iter()
        .filter(|(_, b)| b["response"]["status"] == "paid")
        .count();
    assert_eq!(paid, 1, "{results:?}");
    assert_eq!(first.sandbox.ledger().len(), 1);
    first.assert_ledger_agrees().await;
}

#[tokio::test]
async fn the_test_card_from_kcps_guide_pays_in_test_mode() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .pay(&token, "guide-card", 1000, "4673-0900-0000-0032")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["card_number"], "467309******0032");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_card_quota_of_1_is_a_lump_sum_paid_with_card_quota_0() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "quota-one", "amount": 1000, "card_quota": 1, "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["card_quota"], 0, "{body}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger[0].card.as_ref().unwrap().quota, "00");
}

#[tokio::test]
async fn a_korean_name_longer_than_kcps_100_bytes_is_paid_and_kept_whole() {
    let app = spawn_app().await;
    let token = app.token().await;
    // 40 syllables: 40 characters, 120 bytes in UTF-8. KCP counts bytes.
    let name = "월".repeat(40);
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "long-name", "amount": 1000, "card_number": test_cards::SHINHAN_CREDIT,
                   "expiry": future_expiry(), "name": name, "buyer_name": "가나다라마바사아자차카"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["name"], name.as_str());
    assert_eq!(app.sandbox.ledger().len(), 1);
}

#[tokio::test]
async fn a_name_with_characters_kcp_forbids_is_paid_cleaned_for_kcp_and_script_is_refused() {
    let app = spawn_app().await;
    let token = app.token().await;
    // The sandbox refuses these characters (9504) as KCP does: a paid answer means they were
    // cleaned before the call, and the merchant's own name is kept whole.
    let name = "셔츠, 파랑 & 흰색 <L>; \"특가\" | 'A'";
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "forbidden-chars", "amount": 1000,
                   "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "name": name, "buyer_name": "홍길동, 주식회사"}),
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    assert_eq!(body["response"]["name"], name);
    assert_eq!(app.sandbox.ledger().len(), 1);

    for (field, value) in [
        ("name", "<script>alert(1)</script>"),
        ("buyer_name", "javascript:alert(1)"),
    ] {
        let mut order = json!({"merchant_uid": format!("script-{field}"), "amount": 1000,
                               "card_number": test_cards::SHINHAN_CREDIT,
                               "expiry": future_expiry()});
        order[field] = json!(value);
        let (status, body) = app
            .post("/subscribe/payments/onetime", Some(&token), order)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["code"], -1);
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
        let (status, _) = app
            .get(&format!("/payments/find/script-{field}"), Some(&token))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing written");
    }
    assert_eq!(app.sandbox.ledger().len(), 1, "KCP never asked");
}

#[tokio::test]
async fn a_tax_free_part_is_refused_everywhere_rather_than_charged_or_refunded_as_taxable() {
    let app = spawn_app().await;
    let token = app.token().await;
    let card = json!({"card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                      "birth": "800101", "pwd_2digit": "00"});
    let with = |base: &serde_json::Value, extra: serde_json::Value| {
        let mut body = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let refused = |status: StatusCode, body: &serde_json::Value, field: &str| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    };
    let onetime = |extra: serde_json::Value| {
        let body = with(
            &card,
            with(&json!({"merchant_uid": "tax-1", "amount": 11000}), extra),
        );
        let (app, token) = (&app, &token);
        async move {
            app.post("/subscribe/payments/onetime", Some(token), body)
                .await
        }
    };
    let (status, body) = onetime(json!({"tax_free": 1000})).await;
    refused(status, &body, "TG03");
    let (status, body) = onetime(json!({"tax_free": "1000"})).await;
    refused(status, &body, "TG03");
    let (status, body) = onetime(json!({"vat_amount": 11001})).await;
    refused(status, &body, "vat_amount");
    let (status, body) = onetime(json!({"vat_amount": -1})).await;
    refused(status, &body, "vat_amount");
    let (status, body) = onetime(json!({"vat_amount": 100.5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // `again` and schedules share the order fields.
    let (status, body) = app
        .post(
            "/subscribe/payments/again",
            Some(&token),
            json!({"customer_uid": "c", "merchant_uid": "tax-2", "amount": 1000, "tax_free": 100}),
        )
        .await;
    refused(status, &body, "TG03");
    let (status, body) = app
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            json!({"customer_uid": "c", "schedules": [{"merchant_uid": "tax-3",
                   "schedule_at": 4_000_000_000i64, "amount": 1000, "vat_amount": 2000}]}),
        )
        .await;
    refused(status, &body, "vat_amount");
    assert!(app.sandbox.ledger().is_empty(), "nothing charged");

    // Zero tax-free and a VAT within the amount are taken (KCP computes the VAT itself).
    let (_, paid) = onetime(json!({"tax_free": 0, "vat_amount": 1000})).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    let imp_uid = paid["response"]["imp_uid"].clone();
    let (status, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 1100, "tax_free": 1100}),
        )
        .await;
    refused(status, &body, "TG03");
    let (status, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 1100, "vat_amount": 1200}),
        )
        .await;
    refused(status, &body, "vat_amount");
    assert_eq!(
        app.payment(&token, imp_uid.as_str().unwrap()).await["cancel_amount"],
        0
    );
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 1100, "tax_free": 0, "vat_amount": 100}),
        )
        .await;
    assert_eq!(body["response"]["cancel_amount"], 1100, "{body}");
    // A full cancel comes to the balance (9,900): a VAT above it is refused, and nothing is left
    // open to block the next cancel.
    let (status, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "vat_amount": 9901}),
        )
        .await;
    refused(status, &body, "vat_amount");
    let (_, body) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "vat_amount": 900}),
        )
        .await;
    assert_eq!(body["response"]["cancel_amount"], 11000, "{body}");
    assert_eq!(app.sandbox.ledger()[0].cancels.len(), 2);
    app.assert_ledger_agrees().await;
}

/// openport's KCP order number (`ordr_idxx`) of a payment.
async fn order_no_of(app: &crate::helpers::TestApp, imp_uid: &str) -> String {
    openport::store::payments::all_payments(&app.app.gateway.db.read)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.imp_uid == imp_uid)
        .unwrap()
        .order_no
}

#[tokio::test]
async fn a_paid_or_cancelled_card_payment_shows_kcps_slip_as_receipt_url_and_for_its_cancels_and_a_failed_one_none(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let paid = app.paid(&token, "receipt-1", 1004).await;
    let imp_uid = paid["imp_uid"].as_str().unwrap();
    let expected = format!(
        "https://testadmin8.kcp.co.kr/assist/bill.BillActionNew.do?cmd=card_bill&tno={}&order_no={}&trade_mony=1004",
        paid["pg_tid"].as_str().unwrap(),
        order_no_of(&app, imp_uid).await
    );
    assert_eq!(paid["receipt_url"], expected.as_str());
    let (_, cancelled) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 4}),
        )
        .await;
    assert_eq!(cancelled["response"]["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["response"]["receipt_url"], expected.as_str());
    assert_eq!(
        cancelled["response"]["cancel_history"][0]["receipt_url"],
        expected.as_str()
    );
    let (_, again) = app
        .post(
            "/payments/cancel",
            Some(&token),
            json!({"imp_uid": imp_uid, "amount": 1000}),
        )
        .await;
    let history = &again["response"]["cancel_history"];
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{again}");
    assert_eq!(history[1]["receipt_url"], expected.as_str());
    assert_eq!(
        again["response"]["cancel_receipt_urls"],
        json!([expected, expected]),
        "one entry per cancel, in cancel_history's order, though both show the trade's slip"
    );
    let (_, declined) = app
        .pay(&token, "receipt-2", 1000, test_cards::INSUFFICIENT_LIMIT)
        .await;
    assert_eq!(declined["response"]["status"], "failed", "{declined}");
    assert!(declined["response"]["receipt_url"].is_null());
}

#[tokio::test]
async fn a_value_of_the_wrong_shape_is_a_400_naming_its_field_but_never_its_value() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "shape-1", "amount": 1000, "card_number": {"digits": "4111111111111111"},
                   "expiry": future_expiry()}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("`card_number`"), "{message}");
    assert!(
        !message.contains("4111"),
        "the card number is never echoed: {message}"
    );

    let (status, body) = app
        .post(
            "/subscribe/payments/schedule",
            Some(&token),
            json!({"customer_uid": "shape-c", "schedules": [
                {"merchant_uid": "shape-2", "schedule_at": [1], "amount": 1000}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`schedules[0].schedule_at`"),
        "{body}"
    );
    assert!(app.sandbox.ledger().is_empty());
}

/// KCP's refusal text is stored as the fail_reason and answered: a card number in it (KCP should
/// never send one) is masked like every card number openport shows.
#[tokio::test]
async fn a_card_number_in_kcps_refusal_text_is_masked_in_the_answer_and_the_record() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.inject(FaultRule::new(
        paths::HUB_PAYMENT,
        Fault::Refuse {
            code: "8888".into(),
            message: "거절 4362187392541073".into(),
        },
    ));
    let (_, body) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "masked-refusal", "amount": 1000,
                   "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry()}),
        )
        .await;
    assert!(!body.to_string().contains("4362187392541073"), "{body}");
    let (_, found) = app.get("/payments/find/masked-refusal", Some(&token)).await;
    let reason = found["response"]["fail_reason"].as_str().unwrap();
    assert!(reason.contains("436218******1073"), "{found}");
}

/// Naming the refused field of a charge's body left the body's fields out one at a time, each
/// try parsing the rest again: a body of 20,000 junk keys and two bad order fields was seconds of
/// CPU on a runtime worker, with payments waiting behind it. It is still a 400, at once.
#[tokio::test]
async fn a_refused_body_of_tens_of_thousands_of_unknown_keys_is_400_at_once() {
    let app = spawn_app().await;
    let token = app.token().await;
    let mut body = serde_json::Map::new();
    for i in 0..20_000 {
        body.insert(format!("k{i}"), json!(0));
    }
    body.insert("merchant_uid".into(), json!("junk-1"));
    body.insert("amount".into(), json!(true));
    body.insert("name".into(), json!([1]));
    let started = std::time::Instant::now();
    let (status, answer) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            Value::Object(body),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], -1);
    // Generous for a loaded 2-core CI machine and a debug build; the search took tens of seconds.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// spec/kcp.md §2.4/§2.6/§6: a hub card approval's `amount` equals its `card_mny`, and §5 makes
/// the amount comparison mandatory. KCP answering a key-in charge, or a charge on a billing key,
/// with the order's `amount` but another `card_mny` approved another card amount: the approval is
/// net-cancelled and the payment fails, never paid.
#[tokio::test]
async fn a_card_charge_kcp_answers_with_another_card_mny_is_net_cancelled_never_paid() {
    use kcp_sandbox::{paths, Fault, FaultRule};
    let app = spawn_app().await;
    let token = app.token().await;
    let other_card_mny = |card_tx_type: &str| {
        FaultRule::new(
            paths::HUB_PAYMENT,
            Fault::AnswerField {
                field: "card_mny".into(),
                value: "999".into(),
            },
        )
        .when("card_tx_type", card_tx_type)
    };
    // Key-in, authenticated (spec §2.7).
    app.sandbox.inject(other_card_mny("11121000"));
    let (_, key_in) = app
        .post(
            "/subscribe/payments/onetime",
            Some(&token),
            json!({"merchant_uid": "card-mny-key-in", "amount": 1000,
                   "card_number": test_cards::SHINHAN_CREDIT, "expiry": future_expiry(),
                   "birth": "800101", "pwd_2digit": "00"}),
        )
        .await;
    // A charge on a billing key (spec §2.6, card_tx_type 11511000).
    let registered =
        crate::billing::register(&app, &token, "card-mny-c", test_cards::SHINHAN_CREDIT).await;
    assert_eq!(registered["code"], 0, "{registered}");
    app.sandbox.inject(other_card_mny("11511000"));
    let (_, again) =
        crate::billing::again(&app, &token, "card-mny-c", "card-mny-again", 1000).await;
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "both answers named card_mny 999"
    );

    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2, "KCP approved each charge once: {ledger:?}");
    for (body, entry) in [&key_in, &again].into_iter().zip(&ledger) {
        assert_eq!(body["code"], 0, "{body}");
        crate::unreadable_amounts::assert_failed_and_net_cancelled(&app, &token, body, entry).await;
    }
    app.assert_ledger_agrees().await;
}

/// Review rK F4: a JSON body sent without `Content-Type: application/json` (`curl -d '{…}'` sends
/// `application/x-www-form-urlencoded`) was read as a form of one key, the whole JSON text, and
/// answered "merchant_uid 파라메터가 누락되었습니다.", a field the merchant can see in the body. A
/// form body that is JSON text (an object or an array) is refused saying so and naming the
/// header; a form with JSON in a value (`custom_data={…}`) is still a form.
#[tokio::test]
async fn a_json_body_sent_as_a_form_is_a_400_naming_the_content_type_it_needs() {
    let app = spawn_app().await;
    let token = app.token().await;
    let json_text = format!(
        r#"{{"merchant_uid":"form-json-1","amount":1000,"card_number":"{}","expiry":"{}","notice_url":"https://shop.test/hook?a=b&c=d"}}"#,
        test_cards::SHINHAN_CREDIT,
        future_expiry()
    );
    for body in [json_text.clone(), format!(" [{json_text}]")] {
        let res = app
            .http
            .post(app.url("/subscribe/payments/onetime"))
            .header("Authorization", &token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, answer) = crate::helpers::TestApp::read(res).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["code"], -1, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("JSON") && message.contains("Content-Type: application/json"),
            "{message}"
        );
        assert!(!message.contains("merchant_uid"), "{message}");
        assert!(
            !message.contains(test_cards::SHINHAN_CREDIT),
            "never the body: {message}"
        );
    }

    let expiry = future_expiry();
    let (status, paid) = app
        .post_form(
            "/subscribe/payments/onetime",
            &token,
            &[
                ("merchant_uid", "form-json-2"),
                ("amount", "1000"),
                ("card_number", test_cards::SHINHAN_CREDIT),
                ("expiry", &expiry),
                ("custom_data", r#"{"order":7}"#),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["code"], 0, "{paid}");
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
}

/// Review rK F5: a body that is a bare JSON value (`null`, `1`, `"x"`, `true`) was answered
/// "요청 본문(JSON)의 요청 본문 값 형식이 올바르지 않습니다."; it gets the words an array gets.
#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_told_it_must_be_one() {
    let app = spawn_app().await;
    let token = app.token().await;
    for body in ["null", "1", "\"x\"", "true", " [1, 2]", "\u{feff}false"] {
        let (status, answer) = app
            .post_text(
                "/subscribe/payments/onetime",
                &token,
                "application/json",
                body,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(
            answer["message"], "요청 본문(JSON)은 객체({…})여야 합니다.",
            "{body}: {answer}"
        );
    }
    assert!(app.sandbox.ledger().is_empty());
}

/// go-iamport builds its forms from `protojson` text, which on some builds puts a space after each
/// comma: every key but the first arrives with a space before it, which PHP's parser (iamport's
/// clients were written against it) drops.
#[tokio::test]
async fn a_form_whose_keys_start_with_a_space_as_go_iamport_sends_them_is_read_by_its_keys() {
    let app = spawn_app().await;
    let token = app.token().await;
    let body = format!(
        "merchant_uid=go-spaced& amount=1300& card_number=4111111111111111& expiry={}& name=go",
        future_expiry()
    );
    let (_, body) = app
        .post_text(
            "/subscribe/payments/onetime",
            &token,
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["amount"], 1300);
    assert_eq!(body["response"]["name"], "go");
    assert_eq!(app.sandbox.ledger().len(), 1);
}

/// A key given twice is refused (no first or last wins with money in it), in words that say so and
/// name the key where it is, not as a value of the wrong form the merchant would look for in vain.
#[tokio::test]
async fn a_json_key_given_twice_is_refused_naming_the_key_and_where_it_is() {
    let app = spawn_app().await;
    let token = app.token().await;
    let send = |path, body| app.post_text(path, &token, "application/json", body);
    let (status, body) = send(
        "/payments/prepare",
        r#"{"merchant_uid":"twice-1","amount":100,"amount":100000}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("`amount` 필드가 두 번 있습니다"),
        "{message}"
    );
    assert!(!message.contains("형식"), "{message}");
    let (status, body) = send(
        "/subscribe/payments/schedule",
        r#"{"customer_uid":"c-twice","schedules":[{"merchant_uid":"s-twice","schedule_at":1900000000,"amount":100,"amount":100000}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("`schedules[0].amount` 필드가 두 번 있습니다"),
        "{message}"
    );
    let (_, prepared) = app.get("/payments/prepare/twice-1", Some(&token)).await;
    assert_ne!(prepared["code"], 0, "nothing prepared: {prepared}");
}

/// What a refused request must leave as it was: payments, KCP attempts, billing keys and
/// schedules here, charges, virtual accounts and batch keys at KCP.
async fn written(app: &crate::helpers::TestApp) -> [u64; 6] {
    use openport::store::entity::{billing_key, payment, pg_attempt, schedule};
    use sea_orm::{EntityTrait, PaginatorTrait};
    let db = &app.app.gateway.db.read;
    [
        payment::Entity::find().count(db).await.unwrap(),
        pg_attempt::Entity::find().count(db).await.unwrap(),
        billing_key::Entity::find().count(db).await.unwrap(),
        schedule::Entity::find().count(db).await.unwrap(),
        app.sandbox.ledger().len() as u64,
        app.sandbox.batch_keys().len() as u64,
    ]
}

/// Every REST call taking a `pg` that charges, issues a virtual account or issues a billing key,
/// with that `pg` and a fresh `n` in its merchant_uid and customer_uid.
fn calls_with_pg(
    app: &crate::helpers::TestApp,
    pg: &str,
    n: usize,
) -> [(&'static str, String, Value); 6] {
    let card = |mut body: Value| {
        body["card_number"] = json!(test_cards::SHINHAN_CREDIT);
        body["expiry"] = json!(future_expiry());
        body["pg"] = json!(pg);
        body
    };
    let in_a_day = app.app.gateway.clock.unix() + 86_400;
    [
        (
            "onetime",
            "/subscribe/payments/onetime".into(),
            card(json!({"merchant_uid": format!("pg-o-{n}"), "amount": 1000})),
        ),
        (
            "onetime keeping the card",
            "/subscribe/payments/onetime".into(),
            card(json!({"merchant_uid": format!("pg-k-{n}"), "amount": 1000,
                       "customer_uid": format!("pg-kept-{n}"), "birth": "800101", "pwd_2digit": "00"})),
        ),
        (
            "foreign",
            "/subscribe/payments/foreign".into(),
            card(json!({"merchant_uid": format!("pg-f-{n}"), "amount": 1000})),
        ),
        (
            "billing key",
            format!("/subscribe/customers/pg-c-{n}"),
            card(json!({"birth": "800101", "pwd_2digit": "00"})),
        ),
        (
            "schedule issuing a key",
            "/subscribe/payments/schedule".into(),
            card(
                json!({"customer_uid": format!("pg-s-{n}"), "birth": "800101", "pwd_2digit": "00",
                        "schedules": [{"merchant_uid": format!("pg-s-{n}"), "amount": 1000,
                                       "schedule_at": in_a_day}]}),
            ),
        ),
        (
            "virtual account",
            "/vbanks".into(),
            json!({"merchant_uid": format!("pg-v-{n}"), "amount": 5000, "vbank_code": "004",
                   "vbank_due": in_a_day, "pg": pg}),
        ),
    ]
}

/// `pg` picks the PG, and after a dot the KCP site, a call goes to at iamport; openport has the
/// merchant's one KCP site. The REST calls that charge or issue a key ignored it, so
/// `html5_inicis`, `tosspayments` or another KCP site was charged on the merchant's site (another
/// contract than the merchant's code chose) with code 0 (review rR F2). They now take the browser
/// checkout's rule, in its words: another PG or site is HTTP 400 code -1 before anything is
/// written or KCP is called, while no `pg`, `kcp` and `kcp_billing` in any case, and
/// `kcp.{the merchant's site_cd}` are served as before.
#[tokio::test]
async fn a_rest_charge_or_key_naming_another_pg_or_kcp_site_is_refused_before_anything_is_written()
{
    let app = spawn_app().await;
    let token = app.token().await;
    let other_pg = |pg: &str| {
        format!("지원하지 않는 PG사입니다: pg '{pg}' (openport는 KCP('kcp', 'kcp_billing')만 지원합니다).")
    };
    let other_site = "pg 'kcp.A52CY'의 사이트코드가 가맹점의 KCP 사이트코드(T0000)와 다릅니다.";
    let refused = [
        ("html5_inicis", other_pg("html5_inicis")),
        ("html5_inicis.MOI0000", other_pg("html5_inicis")),
        ("TossPayments", other_pg("tosspayments")),
        ("nicepay", other_pg("nicepay")),
        ("kcp.A52CY", other_site.to_string()),
        ("KCP_BILLING.a52cy", other_site.to_string()),
    ];
    let before = written(&app).await;
    for (n, (pg, says)) in refused.iter().enumerate() {
        for (call, path, body) in calls_with_pg(&app, pg, n) {
            let (status, answer) = app.post(&path, Some(&token), body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{call}, {pg}: {answer}");
            assert_eq!(answer["code"], -1, "{call}, {pg}: {answer}");
            assert_eq!(answer["message"], says.as_str(), "{call}, {pg}: {answer}");
            assert_eq!(written(&app).await, before, "{call}, {pg}: nothing written");
        }
    }
    // A form body is read alike.
    let (status, answer) = app
        .post_form(
            "/subscribe/payments/onetime",
            &token,
            &[
                ("merchant_uid", "pg-form"),
                ("amount", "1000"),
                ("card_number", test_cards::SHINHAN_CREDIT),
                ("expiry", &future_expiry()),
                ("pg", "kcp.A52CY"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["message"], other_site, "{answer}");
    assert_eq!(written(&app).await, before, "nothing written");

    for (n, pg) in ["kcp.T0000", "KCP", "kcp_billing", " kcp_billing.t0000 ", ""]
        .into_iter()
        .enumerate()
    {
        for (call, path, body) in calls_with_pg(&app, pg, 100 + n) {
            let (status, answer) = app.post(&path, Some(&token), body).await;
            assert_eq!(status, StatusCode::OK, "{call}, {pg:?}: {answer}");
            assert_eq!(answer["code"], 0, "{call}, {pg:?}: {answer}");
        }
    }
    let [payments, _, keys, schedules, at_kcp, batch_keys] = written(&app).await;
    // Per pg: four payments (three charges, one account) and two keys (a registration, a
    // schedule's), the onetime's kept card a third.
    assert_eq!(
        (payments, keys, schedules, at_kcp, batch_keys),
        (20, 15, 5, 20, 15),
        "every accepted call was served"
    );
}
