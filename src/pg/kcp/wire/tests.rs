use super::*;
use crate::pg::{CardSecret, TradeState};
use secrecy::SecretString;
use serde_json::{json, Value};

const CERT: &str = include_str!("../../../../tests/fixtures/kcp/splCert.pem");
const KEY: &str = include_str!("../../../../tests/fixtures/kcp/splPrikeyPKCS8.pem");

fn signer() -> KcpSigner {
    KcpSigner::from_pem(CERT, KEY, &SecretString::from("changeit".to_owned()))
        .expect("fixture key loads")
}

fn golden(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/kcp/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

/// Field-by-field so a failure names the field; also fails on extra or missing fields.
fn assert_matches_golden(built: &impl Serialize, name: &str) {
    let built = serde_json::to_value(built).unwrap();
    let expected = golden(name);
    let (built, expected) = (built.as_object().unwrap(), expected.as_object().unwrap());
    for (field, want) in expected {
        assert_eq!(built.get(field), Some(want), "{name}: field `{field}`");
    }
    for field in built.keys() {
        assert!(
            expected.contains_key(field),
            "{name}: unexpected field `{field}`"
        );
    }
    assert!(
        built.values().all(Value::is_string),
        "{name}: every value must be a JSON string"
    );
}

/// Seed 002's example request.
fn key_in(birth: Option<&str>, pwd: Option<&str>) -> KeyInRequest {
    KeyInRequest {
        order_no: "TEST1234567890".into(),
        amount: 1000,
        good_name: "테스트 상품".into(),
        buyer_name: "홍길동".into(),
        buyer_email: "test@kcp.co.kr".into(),
        buyer_tel: "01000000000".into(),
        card: CardSecret {
            number: "1234567800000000".into(),
            expiry_yymm: "2607".into(),
            birth: birth.map(Into::into),
            pwd_2digit: pwd.map(Into::into),
        },
        quota: 0,
        customer_ip: "".into(),
    }
}

fn declined_reason(err: PgError) -> (String, DeclineReason) {
    match err {
        PgError::Declined { code, reason, .. } => (code, reason),
        other => panic!("expected a local decline, got {other:?}"),
    }
}

#[test]
fn authenticated_key_in_body_matches_the_golden_fixture() {
    let body =
        KeyInPaymentRequest::new("T0000", &signer(), &key_in(Some("951010"), Some("00"))).unwrap();
    assert_matches_golden(&body, "keyin-authenticated");
}

#[test]
fn non_authenticated_key_in_body_matches_the_golden_fixture() {
    let mut req = key_in(None, None);
    req.amount = 55_000;
    req.quota = 3;
    req.customer_ip = "203.0.113.7".into();
    req.card.number = "4673090000000032".into();
    req.card.expiry_yymm = "3012".into();
    let body = KeyInPaymentRequest::new("T0000", &signer(), &req).unwrap();
    assert_matches_golden(&body, "keyin-non-authenticated");
}

#[test]
fn full_cancel_body_matches_the_golden_fixture() {
    let req = CancelRequest {
        tno: "23336986737476".into(),
        kind: CancelKind::Full,
        reason: "가맹점 DB 처리 실패(자동취소)".into(),
    };
    assert_matches_golden(
        &CancelRequestBody::new("T0000", &signer(), &req).unwrap(),
        "cancel-full",
    );
}

#[test]
fn partial_cancel_body_sends_the_balance_before_and_matches_the_golden_fixture() {
    let req = CancelRequest {
        tno: "23336986737476".into(),
        kind: CancelKind::Partial {
            amount: 300,
            balance_before: 1000,
        },
        reason: "부분취소".into(),
    };
    assert_matches_golden(
        &CancelRequestBody::new("T0000", &signer(), &req).unwrap(),
        "cancel-partial",
    );
}

#[test]
fn inquiry_by_tno_body_matches_the_golden_fixture() {
    let body = InquiryRequest::by_tno("T0000", &signer(), "23336986737476").unwrap();
    assert_matches_golden(&body, "inquiry-by-tno");
}

#[test]
fn inquiry_by_order_no_sends_an_empty_tno_and_signs_the_order_number() {
    let body = InquiryRequest::by_order_no("T0000", &signer(), "TEST1234567890").unwrap();
    assert_matches_golden(&body, "inquiry-by-order-no");
}

#[test]
fn full_cancel_signature_is_the_published_vector() {
    let body = CancelRequestBody::new(
        "T0000",
        &signer(),
        &CancelRequest {
            tno: "23336986737476".into(),
            kind: CancelKind::Full,
            reason: String::new(),
        },
    )
    .unwrap();
    let vectors: Value =
        serde_json::from_str(include_str!("../../../../tests/fixtures/kcp/vectors.json")).unwrap();
    assert_eq!(
        body.kcp_sign_data,
        vectors["vectors"][1]["kcp_sign_data"].as_str().unwrap()
    );
}

#[test]
fn key_in_debug_output_contains_no_card_or_buyer_data() {
    let body =
        KeyInPaymentRequest::new("T0000", &signer(), &key_in(Some("951010"), Some("00"))).unwrap();
    let debug = format!("{body:?}");
    for secret in [
        "1234567800000000",
        "2607",
        "951010",
        "홍길동",
        "test@kcp.co.kr",
        "01000000000",
    ] {
        assert!(!debug.contains(secret), "Debug leaks {secret}: {debug}");
    }
    assert!(debug.contains("TEST1234567890"));
    assert_eq!(format!("{:?}", body.card_pwd), "Some(<redacted>)");
}

#[test]
fn only_one_of_birth_and_password_is_refused_as_card_data() {
    let err =
        KeyInPaymentRequest::new("T0000", &signer(), &key_in(Some("951010"), None)).unwrap_err();
    assert_eq!(
        declined_reason(err),
        ("invalid_request".into(), DeclineReason::CardRejected)
    );
}

#[test]
fn malformed_card_data_is_refused_locally_without_echoing_it() {
    let cases: [(&str, &str, Option<&str>, Option<&str>); 5] = [
        ("12345678", "2607", None, None),
        ("1234-5678-0000-0000", "2607", None, None),
        ("1234567800000000", "2613", None, None),
        ("1234567800000000", "0726", Some("9510"), Some("00")),
        ("1234567800000000", "2607", Some("951010"), Some("0")),
    ];
    for (number, expiry, birth, pwd) in cases {
        let mut req = key_in(birth, pwd);
        req.card.number = number.into();
        req.card.expiry_yymm = expiry.into();
        let err = KeyInPaymentRequest::new("T0000", &signer(), &req).unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains(number) && !text.contains(expiry),
            "error echoes card data: {text}"
        );
        assert_eq!(declined_reason(err).1, DeclineReason::CardRejected);
    }
}

#[test]
fn an_order_number_with_symbols_or_over_40_characters_is_refused() {
    for order in ["order-1", "", &"A".repeat(41)] {
        let mut req = key_in(None, None);
        req.order_no = order.into();
        assert!(
            KeyInPaymentRequest::new("T0000", &signer(), &req).is_err(),
            "{order}"
        );
    }
}

#[test]
fn forbidden_characters_in_display_text_become_spaces_and_long_text_is_cut_on_a_char_boundary() {
    let mut req = key_in(None, None);
    req.good_name = format!("Shirt, blue <b>&\"x\"|{}", "가".repeat(60));
    req.buyer_name = "Kim;\nO'Neil".into();
    req.buyer_email = "a,b@example.com".into();
    req.buyer_tel = "010-1234-5678".into();
    req.customer_ip = "not an ip".into();
    let body = KeyInPaymentRequest::new("T0000", &signer(), &req).unwrap();
    assert!(body.good_name.starts_with("Shirt  blue  b   x"));
    assert!(body.good_name.len() <= 100);
    assert_eq!(body.buyr_name, "Kim  O Neil");
    assert_eq!(
        body.buyr_mail, "",
        "an unusable e-mail is dropped, not altered"
    );
    assert_eq!(body.buyr_tel2, "010-1234-5678");
    assert_eq!(body.cust_ip, "");
}

#[test]
fn amount_and_card_mny_are_equal_digit_strings() {
    let mut req = key_in(None, None);
    req.amount = 1_234_567;
    let body =
        serde_json::to_value(KeyInPaymentRequest::new("T0000", &signer(), &req).unwrap()).unwrap();
    assert_eq!(body["amount"], "1234567");
    assert_eq!(body["card_mny"], "1234567");
    assert!(body.get("card_taxno").is_none() && body.get("card_pwd").is_none());
}

#[test]
fn zero_negative_and_excessive_amounts_are_refused() {
    for amount in [0, -1, 1_000_000_000_000] {
        let mut req = key_in(None, None);
        req.amount = amount;
        assert!(
            KeyInPaymentRequest::new("T0000", &signer(), &req).is_err(),
            "{amount}"
        );
    }
}

#[test]
fn a_partial_cancel_larger_than_the_balance_is_refused() {
    let req = CancelRequest {
        tno: "23336986737476".into(),
        kind: CancelKind::Partial {
            amount: 1001,
            balance_before: 1000,
        },
        reason: String::new(),
    };
    assert!(CancelRequestBody::new("T0000", &signer(), &req).is_err());
}

// ----- responses -----------------------------------------------------------------------------

/// spec/kcp.md §2.4, the real T0000 card response.
const CARD_SAMPLE: &str = r#"{"order_no":"2023031679884274","partcanc_yn":"Y","noinf":"N","res_msg":"정상처리","trace_no":"T00000RBWE0McICk",
 "card_mny":"1000","res_vat_mny":"91","res_tax_flag":"TG03","acqu_name":"국민카드","card_no":"5272890000006055",
 "quota":"00","van_cd":"VNKC","acqu_cd":"CCKM","amount":"1000","van_apptime":"20230327113214","res_free_mny":"0",
 "pay_method":"PACA","card_bin_bank_cd":"0004","res_cd":"0000","escw_yn":"N","app_time":"20230327113214",
 "tno":"23336986737476","card_bin_type_01":"0","card_bin_type_02":"1","card_cd":"CCKM",
 "res_en_msg":"processing completed","card_name":"국민카드","res_tax_mny":"909","app_no":"82050813"}"#;

#[test]
fn the_spec_card_sample_parses_into_an_approval_with_a_masked_number() {
    let resp: CardPaymentResponse = serde_json::from_str(CARD_SAMPLE).unwrap();
    let approval = CardApproval::try_from(resp).unwrap();
    assert_eq!(
        approval,
        CardApproval {
            tno: "23336986737476".into(),
            order_no: "2023031679884274".into(),
            amount: 1000,
            app_no: "82050813".into(),
            approved_at: "2023-03-27T02:32:14Z".parse().unwrap(),
            issuer_code: "CCKM".into(),
            issuer_name: "국민카드".into(),
            masked_card_number: "527289******6055".into(),
            quota: 0,
            is_check_card: true,
            partial_cancel_allowed: true,
        }
    );
}

#[test]
fn response_debug_shows_only_the_masked_card_number() {
    let resp: CardPaymentResponse = serde_json::from_str(CARD_SAMPLE).unwrap();
    let debug = format!("{resp:?}");
    assert!(!debug.contains("5272890000006055"));
    assert!(debug.contains("527289******6055"));
}

#[test]
fn numeric_amounts_and_unknown_fields_are_tolerated() {
    let resp: CardPaymentResponse = serde_json::from_str(
        r#"{"res_cd":"0000","tno":23336986737476,"amount":1000,"order_no":"A1","brand_new_field":{"x":[1]},"card_no":"461954******7815"}"#,
    )
    .unwrap();
    let approval = CardApproval::try_from(resp).unwrap();
    assert_eq!(
        (approval.tno.as_str(), approval.amount),
        ("23336986737476", 1000)
    );
    assert_eq!(approval.masked_card_number, "461954******7815");
    assert!(!approval.partial_cancel_allowed);
}

#[test]
fn a_success_without_tno_or_amount_is_unusable() {
    let no_tno: CardPaymentResponse =
        serde_json::from_str(r#"{"res_cd":"0000","amount":"1000"}"#).unwrap();
    assert!(CardApproval::try_from(no_tno).is_err());
    let no_amount: CardPaymentResponse =
        serde_json::from_str(r#"{"res_cd":"0000","tno":"1"}"#).unwrap();
    assert!(CardApproval::try_from(no_amount).is_err());
    let bad_amount: CardPaymentResponse =
        serde_json::from_str(r#"{"res_cd":"0000","tno":"1","amount":"1,000"}"#).unwrap();
    assert!(CardApproval::try_from(bad_amount).is_err());
}

#[test]
fn kcp_times_are_korea_time() {
    assert_eq!(
        parse_kcp_time("20230327113214"),
        Some("2023-03-27T02:32:14Z".parse().unwrap())
    );
    assert_eq!(
        parse_kcp_time("20230101000000"),
        Some("2022-12-31T15:00:00Z".parse().unwrap())
    );
    assert_eq!(parse_kcp_time("2023032711321"), None);
    assert_eq!(parse_kcp_time("20231327113214"), None);
}

#[test]
fn unmasked_numbers_keep_the_first_six_and_last_four_digits() {
    assert_eq!(mask_card_number("4673090000000032"), "467309******0032");
    assert_eq!(mask_card_number("4673090000032"), "467309***0032");
    assert_eq!(mask_card_number("411111******1111"), "411111******1111");
    assert_eq!(mask_card_number("12345678"), "****5678");
    assert_eq!(mask_card_number("1234"), "****");
}

fn cancel(kind: CancelKind) -> CancelRequest {
    CancelRequest {
        tno: "23336986737476".into(),
        kind,
        reason: "test".into(),
    }
}

#[test]
fn a_partial_cancel_answer_gives_the_balance_after_and_either_sequence_name() {
    let req = cancel(CancelKind::Partial {
        amount: 300,
        balance_before: 1000,
    });
    for seq_field in ["mod_pacn_seq_no", "mod_pcan_seq_no"] {
        let body = json!({"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","canc_time":"20230327120000",
            "mod_mny":"300","rem_mny":"700", seq_field: "1", "card_mod_mny":"300"});
        let resp: CancelResponse = serde_json::from_value(body).unwrap();
        assert_eq!(resp.partial_cancel_seq_no(), Some("1"), "{seq_field}");
        let done = resp.into_confirmation(&req).unwrap();
        assert_eq!(done.remaining, 700);
        assert_eq!(
            done.cancelled_at,
            "2023-03-27T03:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}

#[test]
fn an_answer_with_both_sequence_names_still_parses() {
    let resp: CancelResponse =
        serde_json::from_str(r#"{"res_cd":"0000","mod_pacn_seq_no":"2","mod_pcan_seq_no":"2"}"#)
            .unwrap();
    assert_eq!(resp.partial_cancel_seq_no(), Some("2"));
}

#[test]
fn a_full_cancel_leaves_nothing_and_a_partial_without_rem_mny_is_computed() {
    let full: CancelResponse =
        serde_json::from_str(r#"{"res_cd":"0000","tno":"23336986737476"}"#).unwrap();
    assert_eq!(
        full.into_confirmation(&cancel(CancelKind::Full))
            .unwrap()
            .remaining,
        0
    );
    let partial: CancelResponse = serde_json::from_str(r#"{"res_cd":"0000"}"#).unwrap();
    let req = cancel(CancelKind::Partial {
        amount: 250,
        balance_before: 1000,
    });
    assert_eq!(partial.into_confirmation(&req).unwrap().remaining, 750);
}

#[test]
fn a_cancel_answer_for_another_tno_is_unusable() {
    let resp: CancelResponse =
        serde_json::from_str(r#"{"res_cd":"0000","tno":"99999999999999"}"#).unwrap();
    assert!(resp.into_confirmation(&cancel(CancelKind::Full)).is_err());
}

fn inquiry(stat: &str, rem: Option<&str>) -> InquiryResponse {
    let mut body = json!({"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","order_no":"2023031679884274",
        "pay_method":"PACA","amount":"1000","stat_ca_cd":stat,"app_time":"20230327113214","app_no":"82050813",
        "card_no":"527289******6055","card_cd":"CCKM","card_name":"국민카드","quota":"00",
        "card_bin_type_01":"0","card_bin_type_02":"0","canc_time":"20230328090000","extra":"ignored"});
    if let Some(rem) = rem {
        body["rem_mny"] = json!(rem);
    }
    serde_json::from_value(body).unwrap()
}

#[test]
fn an_approved_inquiry_reports_the_remaining_balance() {
    let TradeState::Approved {
        approval,
        remaining,
    } = TradeState::try_from(inquiry("STSR", Some("1000"))).unwrap()
    else {
        panic!("not approved")
    };
    assert_eq!(
        (approval.tno.as_str(), approval.amount, remaining),
        ("23336986737476", 1000, 1000)
    );
    assert!(!approval.is_check_card);
}

#[test]
fn an_approved_inquiry_without_rem_mny_has_the_whole_amount_left() {
    let state = TradeState::try_from(inquiry("STSR", None)).unwrap();
    assert!(matches!(
        state,
        TradeState::Approved {
            remaining: 1000,
            ..
        }
    ));
}

#[test]
fn a_partially_cancelled_inquiry_is_approved_with_its_balance() {
    let state = TradeState::try_from(inquiry("STPC", Some("700"))).unwrap();
    assert!(matches!(state, TradeState::Approved { remaining: 700, .. }));
    assert!(
        TradeState::try_from(inquiry("STPC", None)).is_err(),
        "STPC without a balance says too little"
    );
}

#[test]
fn a_cancelled_inquiry_carries_the_cancel_time() {
    let TradeState::Cancelled { cancelled_at, .. } =
        TradeState::try_from(inquiry("STSC", Some("0"))).unwrap()
    else {
        panic!("not cancelled")
    };
    assert_eq!(
        cancelled_at,
        "2023-03-28T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
}

#[test]
fn an_unknown_status_is_not_guessed() {
    assert!(TradeState::try_from(inquiry("STXX", None)).is_err());
    let mut no_status = inquiry("STSR", None);
    no_status.stat_ca_cd = None;
    assert!(TradeState::try_from(no_status).is_err());
}

#[test]
fn a_minimal_inquiry_answer_with_only_required_fields_parses() {
    let resp: InquiryResponse = serde_json::from_str(
        r#"{"res_cd":"0000","tno":"23336986737476","amount":"1000","stat_ca_cd":"STSR"}"#,
    )
    .unwrap();
    let TradeState::Approved { approval, .. } = TradeState::try_from(resp).unwrap() else {
        panic!("not approved")
    };
    assert_eq!(approval.masked_card_number, "");
}
