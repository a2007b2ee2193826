mod common;

use common::*;
use kcp_sandbox::test_cards;
use serde_json::{json, Value};

fn with(mut body: Value, extra: Value) -> Value {
    merge(&mut body, extra);
    body
}

fn card(card_no: &str, order_no: &str) -> Value {
    key_in(SITE, card_no, order_no, "1000")
}

#[tokio::test]
async fn a_key_in_approval_answers_exactly_the_card_approval_fields() {
    let harness = spawn().await;

    let reply = harness
        .pay(&card(test_cards::SHINHAN_CREDIT, "order1"))
        .await;

    let mut names: Vec<&str> = reply
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    let mut expected = vec![
        "res_cd",
        "res_msg",
        "res_en_msg",
        "tno",
        "amount",
        "card_mny",
        "order_no",
        "pay_method",
        "app_time",
        "app_no",
        "trace_no",
        "card_cd",
        "card_name",
        "acqu_cd",
        "acqu_name",
        "card_no",
        "quota",
        "noinf",
        "partcanc_yn",
        "card_bin_type_01",
        "card_bin_type_02",
        "escw_yn",
        "van_cd",
        "van_apptime",
        "res_tax_flag",
        "res_tax_mny",
        "res_vat_mny",
        "res_free_mny",
        "card_bin_bank_cd",
        "mall_taxno",
        "mcht_taxno",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(reply.as_object().unwrap().values().all(Value::is_string));

    assert_eq!(reply["res_cd"], "0000");
    assert_eq!(reply["res_msg"], "정상처리");
    assert_eq!(reply["res_en_msg"], "processing completed");
    let tno = reply["tno"].as_str().unwrap();
    assert!(
        tno.len() == 14 && tno.bytes().all(|b| b.is_ascii_digit()),
        "{tno}"
    );
    assert_eq!(reply["amount"], "1000");
    assert_eq!(reply["card_mny"], "1000");
    assert_eq!(reply["order_no"], "order1");
    assert_eq!(reply["pay_method"], "PACA");
    // 2026-03-10T03:00:00Z is 12:00 in Korea.
    assert_eq!(reply["app_time"], "20260310120000");
    assert_eq!(reply["van_apptime"], "20260310120000");
    let app_no = reply["app_no"].as_str().unwrap();
    assert!(app_no.len() == 8 && app_no.bytes().all(|b| b.is_ascii_digit()));
    let trace_no = reply["trace_no"].as_str().unwrap();
    assert_eq!(trace_no.len(), 16);
    assert!(trace_no.starts_with(SITE));
    assert!(trace_no[5..]
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert_eq!(reply["card_cd"], "CCLG");
    assert_eq!(reply["card_name"], "신한카드");
    assert_eq!(reply["card_no"], "411111******1111");
    assert_eq!(reply["quota"], "00");
    assert_eq!(reply["noinf"], "N");
    assert_eq!(reply["partcanc_yn"], "Y");
    assert_eq!(reply["card_bin_type_02"], "0");
    assert_eq!(reply["escw_yn"], "N");
    assert_eq!(reply["res_vat_mny"], "91");
    assert_eq!(reply["res_tax_mny"], "909");
    assert_eq!(reply["res_free_mny"], "0");

    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].tno, tno);
    assert_eq!(ledger[0].balance, 1000);
}

#[tokio::test]
async fn each_approving_test_card_reports_its_issuer() {
    let harness = spawn().await;
    let cases = [
        (
            test_cards::SAMSUNG_CHECK,
            "CCSS",
            "삼성카드",
            "1",
            "555555******4444",
        ),
        (
            test_cards::LOTTE_AMEX,
            "CCAM",
            "롯데아멕스",
            "0",
            "376000******0004",
        ),
        (
            test_cards::ANY_OTHER,
            "CCBC",
            "비씨카드",
            "0",
            "400000******0002",
        ),
    ];
    for (index, (number, card_cd, card_name, bin_02, masked)) in cases.into_iter().enumerate() {
        let reply = harness.pay(&card(number, &format!("issuer{index}"))).await;
        assert_eq!(reply["res_cd"], "0000", "{number}: {reply}");
        assert_eq!(reply["card_cd"], card_cd);
        assert_eq!(reply["card_name"], card_name);
        assert_eq!(reply["card_bin_type_02"], bin_02);
        assert_eq!(reply["card_no"], masked);
    }
}

#[tokio::test]
async fn every_decline_card_is_refused_with_its_code_and_nothing_is_recorded() {
    let harness = spawn().await;
    let cases = [
        (test_cards::KB_KOOKMIN, "8102"),
        (test_cards::DAILY_LIMIT_EXCEEDED, "8186"),
        (test_cards::MONTHLY_LIMIT_EXCEEDED, "8188"),
        ("4111111111111112", "8108"),
        ("411111111111", "8107"),
        ("41111111111111111", "8107"),
        ("4111-1111-1111-11", "8107"),
    ];
    for (number, code) in cases {
        let reply = harness.pay(&card(number, "declined")).await;
        assert_eq!(reply["res_cd"], code, "{number}: {reply}");
        assert!(!reply["res_msg"].as_str().unwrap().is_empty());
        assert_eq!(reply.as_object().unwrap().len(), 2, "{reply}");
    }
    assert!(harness.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn kb_cards_are_refused_in_test_mode_with_an_explanation() {
    let harness = spawn().await;
    let reply = harness.pay(&card(test_cards::KB_KOOKMIN, "kb1")).await;
    assert_eq!(reply["res_cd"], "8102");
    assert!(reply["res_msg"].as_str().unwrap().contains("테스트"));
}

#[tokio::test]
async fn kb_cards_approve_outside_test_mode() {
    let harness = spawn_with(false).await;
    let reply = harness.pay(&card(test_cards::KB_KOOKMIN, "kb2")).await;
    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert_eq!(reply["card_cd"], "CCKM");
}

#[tokio::test]
async fn an_authenticated_key_in_needs_the_right_pin_and_birth_date() {
    let harness = spawn().await;
    let number = test_cards::SHINHAN_CREDIT;

    let ok = harness
        .pay(&authenticated_key_in(number, "auth1", "900101", "00"))
        .await;
    let business = harness
        .pay(&authenticated_key_in(number, "auth2", "1234567890", "00"))
        .await;
    let wrong_pin = harness
        .pay(&authenticated_key_in(number, "auth3", "900101", "12"))
        .await;
    let wrong_birth = harness
        .pay(&authenticated_key_in(number, "auth4", "000000", "00"))
        .await;
    let bad_taxno = harness
        .pay(&authenticated_key_in(number, "auth5", "9001011", "00"))
        .await;
    let bad_pwd = harness
        .pay(&authenticated_key_in(number, "auth6", "900101", "0"))
        .await;
    let mut no_pwd = authenticated_key_in(number, "auth7", "900101", "00");
    no_pwd.as_object_mut().unwrap().remove("card_pwd");
    let no_pwd = harness.pay(&no_pwd).await;

    assert_eq!(ok["res_cd"], "0000", "{ok}");
    assert_eq!(business["res_cd"], "0000", "{business}");
    assert_eq!(wrong_pin["res_cd"], "8110");
    assert!(wrong_pin["res_msg"].as_str().unwrap().contains("비밀번호"));
    assert_eq!(wrong_birth["res_cd"], "8110");
    assert!(wrong_birth["res_msg"]
        .as_str()
        .unwrap()
        .contains("생년월일"));
    assert_eq!(bad_taxno["res_cd"], "8110");
    assert_eq!(bad_pwd["res_cd"], "8110");
    assert_eq!(no_pwd["res_cd"], "9502");
}

#[tokio::test]
async fn a_non_authenticated_key_in_must_not_carry_a_pin() {
    let harness = spawn().await;
    let body = with(
        card(test_cards::SHINHAN_CREDIT, "nopin"),
        json!({"card_pwd": "00", "card_taxno": "900101"}),
    );
    assert_eq!(harness.pay(&body).await["res_cd"], "8110");
}

#[tokio::test]
async fn amounts_quota_currency_and_expiry_are_checked() {
    let harness = spawn().await;
    let base = || card(test_cards::SHINHAN_CREDIT, "checks");
    let cases = [
        (json!({"card_mny": "999"}), "8059"),
        (json!({"amount": "1,000", "card_mny": "1,000"}), "8105"),
        (json!({"amount": "0", "card_mny": "0"}), "8105"),
        (json!({"currency": "840"}), "8105"),
        (json!({"quota": "3"}), "8106"),
        (json!({"quota": "03"}), "8106"),
        (json!({"card_expiry": "2602"}), "8109"),
        (json!({"card_expiry": "3013"}), "8109"),
        (json!({"card_expiry": "12/30"}), "8109"),
        (json!({"card_tx_type": "11911000"}), "8103"),
        (json!({"pay_method": "BANK"}), "8104"),
        (json!({"good_name": "양말, 신발"}), "9504"),
        (json!({"buyr_name": "<script>"}), "9504"),
        (json!({"ordr_idxx": "a".repeat(41)}), "9503"),
        // KCP's limits are bytes: 34 syllables are 102 bytes in UTF-8.
        (json!({"good_name": "양".repeat(34)}), "9503"),
        (json!({"buyr_name": "홍".repeat(11)}), "9503"),
        (json!({"site_cd": "T00000"}), "9503"),
    ];
    for (extra, code) in cases {
        let reply = harness.pay(&with(base(), extra.clone())).await;
        assert_eq!(reply["res_cd"], code, "{extra}: {reply}");
    }
    assert!(harness.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn installments_and_this_months_expiry_are_accepted() {
    let harness = spawn().await;
    let body = with(
        key_in(SITE, test_cards::SHINHAN_CREDIT, "quota", "50000"),
        json!({"quota": "03", "card_expiry": "2603"}),
    );
    let reply = harness.pay(&body).await;
    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert_eq!(reply["quota"], "03");
}

#[tokio::test]
async fn non_string_values_and_missing_fields_are_refused_not_crashed() {
    let harness = spawn().await;
    let number = with(
        card(test_cards::SHINHAN_CREDIT, "strict"),
        json!({"amount": 1000}),
    );
    let null = with(
        card(test_cards::SHINHAN_CREDIT, "strict"),
        json!({"quota": null}),
    );
    let mut missing = card(test_cards::SHINHAN_CREDIT, "strict");
    missing.as_object_mut().unwrap().remove("card_expiry");

    assert_eq!(harness.pay(&number).await["res_cd"], "9501");
    assert_eq!(harness.pay(&null).await["res_cd"], "9501");
    assert_eq!(
        harness.pay(&json!(["not", "an", "object"])).await["res_cd"],
        "9501"
    );
    assert_eq!(harness.pay(&missing).await["res_cd"], "9502");

    let garbage = harness
        .client
        .post(harness.url(kcp_sandbox::paths::HUB_PAYMENT))
        .body("site_cd=T0000")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 200);
    assert_eq!(garbage.json::<Value>().await.unwrap()["res_cd"], "9501");
}

#[tokio::test]
async fn a_certificate_from_another_ca_or_for_another_site_is_refused() {
    let harness = spawn().await;
    let kcp_cert = include_str!("fixtures/kcp-public-test-cert.pem").replace('\n', "");
    let foreign = with(
        card(test_cards::SHINHAN_CREDIT, "cert1"),
        json!({"kcp_cert_info": kcp_cert}),
    );
    let other_site = with(
        card(test_cards::SHINHAN_CREDIT, "cert2"),
        json!({"kcp_cert_info": merchant(OTHER_SITE).cert_info}),
    );
    let garbage = with(
        card(test_cards::SHINHAN_CREDIT, "cert3"),
        json!({"kcp_cert_info": "-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----"}),
    );
    let mut missing = card(test_cards::SHINHAN_CREDIT, "cert4");
    missing.as_object_mut().unwrap().remove("kcp_cert_info");
    // The sandbox's own certificate for this site, as a PEM file holds it (64 characters a line):
    // KCP takes it only serialised on one line (spec §3).
    let one_line = &merchant(SITE).cert_info;
    let body = one_line
        .strip_prefix("-----BEGIN CERTIFICATE-----")
        .and_then(|b| b.strip_suffix("-----END CERTIFICATE-----"))
        .unwrap();
    let lines: Vec<String> = body
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    let multi_line = with(
        card(test_cards::SHINHAN_CREDIT, "cert7"),
        json!({"kcp_cert_info": pem}),
    );
    assert_eq!(harness.pay(&multi_line).await["res_cd"], "9510");

    assert_eq!(harness.pay(&foreign).await["res_cd"], "9510");
    assert_eq!(harness.pay(&other_site).await["res_cd"], "9511");
    assert_eq!(harness.pay(&garbage).await["res_cd"], "9510");
    assert_eq!(harness.pay(&missing).await["res_cd"], "9502");
    // The other site's own certificate works for its own site_cd.
    let own = key_in(OTHER_SITE, test_cards::SHINHAN_CREDIT, "cert5", "1000");
    assert_eq!(harness.pay(&own).await["res_cd"], "0000");
    // Once verified (and remembered), the certificate is still refused for another site, and a
    // refused one stays refused.
    let other_site_again = with(
        card(test_cards::SHINHAN_CREDIT, "cert6"),
        json!({"kcp_cert_info": merchant(OTHER_SITE).cert_info}),
    );
    assert_eq!(harness.pay(&other_site_again).await["res_cd"], "9511");
    assert_eq!(harness.pay(&foreign).await["res_cd"], "9510");
}

#[tokio::test]
async fn an_order_number_cannot_be_approved_twice_while_the_first_stands() {
    let harness = spawn().await;
    let tno = harness.approved("twice", "1000").await;

    let again = harness
        .pay(&card(test_cards::SHINHAN_CREDIT, "twice"))
        .await;
    assert_eq!(again["res_cd"], "9520");

    assert_eq!(
        harness.cancel(&tno, "STSC", json!({})).await["res_cd"],
        "0000"
    );
    let after_cancel = harness
        .pay(&card(test_cards::SHINHAN_CREDIT, "twice"))
        .await;
    assert_eq!(after_cancel["res_cd"], "0000");
}

/// Nothing in spec/kcp.md says KCP refuses an order number it approved: with
/// `refuse_duplicate_orders` off (`POST /_sandbox/settings`) the same order is approved a second
/// time under a new tno, both stand in the ledger, and an inquiry by order number answers the
/// newest. On again, the order is refused (`9520`) as by default.
#[tokio::test]
async fn with_refuse_duplicate_orders_off_an_order_number_is_approved_again_under_a_new_tno() {
    let harness = spawn().await;
    assert!(harness.sandbox.refuses_duplicate_orders(), "the default");
    assert_eq!(
        harness.get_json("/_sandbox/settings").await,
        json!({"refuse_duplicate_orders": true, "stra_keeps_original": false, "stra_same_tno": false})
    );
    let settings = |body: Value| {
        harness
            .client
            .post(harness.url("/_sandbox/settings"))
            .json(&body)
            .send()
    };
    let switched = settings(json!({"refuse_duplicate_orders": false}))
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    assert_eq!(
        switched.json::<Value>().await.unwrap(),
        json!({"refuse_duplicate_orders": false, "stra_keeps_original": false, "stra_same_tno": false})
    );
    assert!(!harness.sandbox.refuses_duplicate_orders());
    // A switch the sandbox does not know is refused, not ignored.
    let unknown = settings(json!({"refuse_duplicate_order": true}))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 422);
    assert!(!harness.sandbox.refuses_duplicate_orders());

    let first = harness.approved("dup1", "1000").await;
    let second = harness.approved("dup1", "1000").await;
    assert_ne!(first, second);
    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 2);
    assert!(ledger
        .iter()
        .all(|e| e.order_no == "dup1" && e.state == kcp_sandbox::TransactionState::Approved));
    assert_eq!(
        harness.inquire_order_as("PACA", "dup1").await["tno"],
        second.as_str()
    );

    harness.sandbox.set_refuse_duplicate_orders(true);
    let third = harness.pay(&card(test_cards::SHINHAN_CREDIT, "dup1")).await;
    assert_eq!(third["res_cd"], "9520", "{third}");
    assert_eq!(harness.sandbox.ledger().len(), 2);

    // The switch's first value is the config's.
    let taking = kcp_sandbox::Sandbox::new(kcp_sandbox::SandboxConfig {
        refuse_duplicate_orders: false,
        ..kcp_sandbox::SandboxConfig::default()
    })
    .unwrap();
    assert!(!taking.refuses_duplicate_orders());
}

#[tokio::test]
async fn kcps_guide_card_approves_on_the_test_server_only_though_it_fails_luhn() {
    let test = spawn().await;
    let reply = test.pay(&card(test_cards::KCP_GUIDE_CARD, "guide1")).await;
    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert_eq!(reply["card_cd"], "CCBC");
    assert_eq!(test.sandbox.ledger().len(), 1);

    let live = spawn_with(false).await;
    let reply = live.pay(&card(test_cards::KCP_GUIDE_CARD, "guide2")).await;
    assert_eq!(reply["res_cd"], "8108", "{reply}");
    assert!(live.sandbox.ledger().is_empty());
}

/// KCP takes an order number of letters and digits only (spec §2.1, seeds 002/003 "주문번호는
/// 영문과 숫자로"), as the sandbox's registration and PC window already required: every hub call
/// refuses another (`9503`), and so does a point re-approval's `mod_ordr_idxx`, so that a gateway
/// sending a merchant_uid such as `OP-123_x` verbatim fails here rather than at KCP.
#[tokio::test]
async fn an_order_number_of_anything_but_letters_and_digits_is_refused_on_every_hub_call() {
    use kcp_sandbox::test_points::BENEPIA_01;
    let h = spawn().await;
    let key = h.batch_key(test_cards::SHINHAN_CREDIT).await;
    let paid = h.pay(&point_pay(&BENEPIA_01, "PT1", "10000")).await;
    assert_eq!(paid["res_cd"], "0000", "{paid}");
    let point_tno = paid["tno"].as_str().unwrap().to_owned();
    for order in ["A-1", "A_1", "A 1", "A.1", "주문1"] {
        let with_order = |mut body: Value| {
            body["ordr_idxx"] = json!(order);
            body
        };
        for (call, body) in [
            ("key-in", card(test_cards::SHINHAN_CREDIT, order)),
            ("batch payment", batch_pay(SITE, &key, order, "1000")),
            (
                "batch key issuance",
                with_order(batch_issue(SITE, GROUP, test_cards::SHINHAN_CREDIT)),
            ),
            ("point balance", with_order(point_balance(&BENEPIA_01))),
            ("point payment", point_pay(&BENEPIA_01, order, "1000")),
            ("virtual account", vbank_issue(order)),
        ] {
            let refused = h.pay(&body).await;
            assert_eq!(refused["res_cd"], "9503", "{call} {order}: {refused}");
        }
        let refused = h.reapprove(&point_tno, "7000", order).await;
        assert_eq!(refused["res_cd"], "9503", "STRA {order}: {refused}");
    }
    assert_eq!(h.sandbox.ledger().len(), 1, "only the point payment");
    assert_eq!(h.sandbox.point_balance(BENEPIA_01.id), Some(90_000));

    let longest = "A1".repeat(20);
    assert_eq!(
        h.pay(&card(test_cards::SHINHAN_CREDIT, &longest)).await["res_cd"],
        "0000"
    );
    let too_long = format!("{longest}A");
    assert_eq!(
        h.pay(&card(test_cards::SHINHAN_CREDIT, &too_long)).await["res_cd"],
        "9503"
    );
}
