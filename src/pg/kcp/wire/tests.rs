use super::*;
use crate::pg::{CancelConfirmation, CardSecret, PointApproval, TradeState};
use secrecy::SecretString;
use serde_json::{json, Value};

const CERT: &str = include_str!("../../../../tests/fixtures/kcp/splCert.pem");
const KEY: &str = include_str!("../../../../tests/fixtures/kcp/splPrikeyPKCS8.pem");

pub(super) fn signer() -> KcpSigner {
    KcpSigner::from_pem(CERT, KEY, &SecretString::from("changeit".to_owned()))
        .expect("fixture key loads")
}

pub(super) fn golden(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/kcp/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

/// Field-by-field so a failure names the field; also fails on extra or missing fields.
pub(super) fn assert_matches_golden(built: &impl Serialize, name: &str) {
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

/// Seed 002's example request, with `birth` and `pwd` as given.
fn key_in(birth: Option<&str>, pwd: Option<&str>) -> KeyInRequest {
    let mut request = KeyInRequest::sample();
    request.card.birth = birth.map(Into::into);
    request.card.pwd_2digit = pwd.map(Into::into);
    request
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
fn escrow_cancels_send_their_ste_mod_type_signed_over_it_and_match_the_golden_fixtures() {
    for (escrow, golden) in [
        (
            EscrowCancel::BeforeShipping,
            "cancel-escrow-before-shipping",
        ),
        (EscrowCancel::AfterShipping, "cancel-escrow-after-shipping"),
        (EscrowCancel::CloseVbank, "cancel-escrow-close-vbank"),
    ] {
        let req = CancelRequest {
            tno: "23336986737476".into(),
            kind: CancelKind::Escrow(escrow),
            reason: "가맹점 DB 처리 실패(자동취소)".into(),
        };
        let body = CancelRequestBody::new("T0000", &signer(), &req).unwrap();
        assert_eq!(body.mod_mny, None, "{golden}: no amount, always whole");
        assert_matches_golden(&body, golden);
    }
}

/// The account a deposited virtual account is refunded to in the refund fixtures.
fn refund_account() -> RefundAccount {
    RefundAccount {
        kcp_bank: "BK88",
        number: "110123456789".into(),
        holder: "홍길동".into(),
    }
}

#[test]
fn vbank_refunds_send_sthd_or_stpd_with_the_account_signed_over_the_mod_type_and_match_the_golden_fixtures(
) {
    let whole = CancelRequest {
        tno: "23336986737476".into(),
        kind: CancelKind::Refund(refund_account()),
        reason: "가상계좌 환불".into(),
    };
    assert_matches_golden(
        &CancelRequestBody::new("T0000", &signer(), &whole).unwrap(),
        "cancel-vbank-refund-full",
    );
    let part = CancelRequest {
        tno: "23336986737476".into(),
        kind: CancelKind::PartialRefund {
            amount: 3000,
            balance_before: 7000,
            to: refund_account(),
        },
        reason: "부분 환불".into(),
    };
    let body = CancelRequestBody::new("T0000", &signer(), &part).unwrap();
    let shown = format!("{body:?}");
    assert!(
        !shown.contains("110123456789") && !shown.contains("홍길동"),
        "the account stays out of Debug: {shown}"
    );
    assert_matches_golden(&body, "cancel-vbank-refund-partial");
}

/// A deposited escrow account's refund is its escrow cancel (`STE2`/`STE4`, signed over it, no
/// amount and no `mod_sub_type`: always whole) carrying the account fields `STHD` carries, masked
/// in Debug; an `STE5` (the close of an unpaid account) never carries one.
#[test]
fn escrow_vbank_refunds_send_ste2_or_ste4_with_the_sthd_account_fields_and_match_the_golden_fixtures(
) {
    for (escrow, golden) in [
        (
            EscrowCancel::BeforeShipping,
            "cancel-escrow-vbank-refund-before-shipping",
        ),
        (
            EscrowCancel::AfterShipping,
            "cancel-escrow-vbank-refund-after-shipping",
        ),
    ] {
        let req = CancelRequest {
            tno: "23336986737476".into(),
            kind: CancelKind::EscrowRefund(escrow, refund_account()),
            reason: "에스크로 가상계좌 환불".into(),
        };
        let body = CancelRequestBody::new("T0000", &signer(), &req).unwrap();
        let shown = format!("{body:?} {req:?}");
        assert!(
            !shown.contains("110123456789") && !shown.contains("홍길동"),
            "the account stays out of Debug: {shown}"
        );
        assert_matches_golden(&body, golden);
    }
    let close = cancel(CancelKind::EscrowRefund(
        EscrowCancel::CloseVbank,
        refund_account(),
    ));
    let (code, _) =
        declined_reason(CancelRequestBody::new("T0000", &signer(), &close).unwrap_err());
    assert_eq!(code, "invalid_request");
}

#[test]
fn a_refund_account_kcp_would_refuse_is_not_sent() {
    for to in [
        RefundAccount {
            kcp_bank: "088",
            ..refund_account()
        },
        RefundAccount {
            number: "110-123".into(),
            ..refund_account()
        },
        RefundAccount {
            holder: "홍,길동".into(),
            ..refund_account()
        },
        RefundAccount {
            holder: " ".into(),
            ..refund_account()
        },
    ] {
        let err = CancelRequestBody::new("T0000", &signer(), &cancel(CancelKind::Refund(to)))
            .unwrap_err();
        let (code, _) = declined_reason(err);
        assert_eq!(code, "invalid_request");
    }
}

#[test]
fn a_partial_refund_answer_is_checked_as_a_partial_cancels_and_a_whole_refund_leaves_nothing() {
    let kind = CancelKind::PartialRefund {
        amount: 3000,
        balance_before: 7000,
        to: refund_account(),
    };
    let req = cancel(kind.clone());
    let answered = |body: Value| confirmation_of(&req, body);
    let as_asked = answered(json!({"res_cd":"0000","mod_mny":"3000","rem_mny":"4000"}));
    assert_eq!((as_asked.remaining, as_asked.cancelled), (4000, Some(3000)));
    assert!(as_asked.as_asked(&kind));
    assert_eq!(answered(json!({"res_cd":"0000"})).remaining, 4000);
    assert!(!answered(json!({"res_cd":"0000","mod_mny":"3000","rem_mny":"7000"})).as_asked(&kind));
    assert!(!answered(json!({"res_cd":"0000","mod_mny":"7000","rem_mny":"4000"})).as_asked(&kind));
    let whole = CancelKind::Refund(refund_account());
    let done: CancelResponse =
        serde_json::from_value(json!({"res_cd":"0000","mod_mny":"1","rem_mny":"5"})).unwrap();
    let done = done.into_confirmation(&cancel(whole.clone())).unwrap();
    assert_eq!((done.remaining, done.cancelled), (0, None));
    assert!(done.as_asked(&whole));
}

#[test]
fn an_escrow_cancel_answer_leaves_nothing_to_cancel() {
    let resp: CancelResponse = serde_json::from_str(
        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","canc_time":"20260311090000"}"#,
    )
    .unwrap();
    let done = resp
        .into_confirmation(&cancel(CancelKind::Escrow(EscrowCancel::AfterShipping)))
        .unwrap();
    assert_eq!(done.remaining, 0);
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
            is_check_card: Some(true),
            partial_cancel_allowed: Some(true),
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
fn partcanc_yn_n_is_a_partial_cancel_kcp_refuses_and_anything_else_but_y_says_nothing() {
    let with = |value: &str| {
        let resp: CardPaymentResponse = serde_json::from_str(&CARD_SAMPLE.replace(
            r#""partcanc_yn":"Y""#,
            &format!(r#""partcanc_yn":"{value}""#),
        ))
        .unwrap();
        CardApproval::try_from(resp).unwrap().partial_cancel_allowed
    };
    assert_eq!(with("Y"), Some(true));
    assert_eq!(with(" N "), Some(false));
    assert_eq!(with(""), None);
    assert_eq!(with("X"), None);
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
    assert_eq!(approval.partial_cancel_allowed, None, "KCP said nothing");
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
    // A mask made elsewhere is masked again, never trusted.
    assert_eq!(mask_card_number("411111111111111*"), "411111******111*");
    assert_eq!(mask_card_number("4111-11**-****-1111"), "411111******1111");
    assert_eq!(mask_card_number("*4111111111111111"), "*41111*******1111");
    assert_eq!(mask_card_number("N/A"), "");
}

/// KCP's success answer `body` to cancel `req`, as the connector reads it.
fn confirmation_of(req: &CancelRequest, body: Value) -> CancelConfirmation {
    serde_json::from_value::<CancelResponse>(body)
        .unwrap()
        .into_confirmation(req)
        .unwrap()
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
    assert_eq!(approval.is_check_card, Some(false));
}

#[test]
fn an_inquiry_without_the_check_card_flag_says_nothing_about_it() {
    let mut answer = inquiry("STSR", Some("1000"));
    answer.card_bin_type_02 = None;
    let TradeState::Approved { approval, .. } = TradeState::try_from(answer).unwrap() else {
        panic!("not approved")
    };
    assert_eq!(approval.is_check_card, None, "unknown, not 'credit'");
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

fn point_inquiry(stat: &str) -> InquiryResponse {
    serde_json::from_value(json!({"res_cd":"0000","res_msg":"정상처리","tno":"20260310123456",
        "order_no":"OP000000000123","pay_method":"PAPT","amount":"7000","rem_mny":"7000",
        "stat_pt_cd":stat,"app_time":"20260310120000","app_no":"0264502327","canc_time":"20260311090000"}))
    .unwrap()
}

#[test]
fn a_point_inquiry_reads_stat_pt_cd_and_leaves_the_card_fields_empty() {
    let TradeState::Approved {
        approval,
        remaining,
    } = point_inquiry("STSR").into_point_state().unwrap()
    else {
        panic!("not approved")
    };
    assert_eq!(
        (
            approval.tno.as_str(),
            approval.order_no.as_str(),
            approval.amount,
            approval.app_no.as_str(),
            remaining
        ),
        ("20260310123456", "OP000000000123", 7000, "0264502327", 7000)
    );
    assert_eq!(
        (
            approval.issuer_code.as_str(),
            approval.masked_card_number.as_str(),
            approval.quota
        ),
        ("", "", 0)
    );
    assert!(matches!(
        point_inquiry("STSC").into_point_state().unwrap(),
        TradeState::Cancelled { .. }
    ));
}

#[test]
fn a_point_inquiry_without_stat_pt_cd_or_about_a_card_is_not_guessed() {
    let mut no_status = point_inquiry("STSR");
    no_status.stat_pt_cd = None;
    no_status.stat_ca_cd = Some("STSR".into());
    assert!(no_status.into_point_state().is_err());
    let mut card = point_inquiry("STSR");
    card.pay_method = Some("PACA".into());
    assert!(card.into_point_state().is_err());
    assert!(
        TradeState::try_from(point_inquiry("STSR")).is_err(),
        "a card parse refuses PAPT"
    );
}

#[test]
fn a_point_inquiry_is_signed_over_the_papt_pay_type() {
    let s = signer();
    let by_tno = InquiryRequest::for_tno("T0000", &s, "20260310123456", PAY_TYPE_POINT).unwrap();
    assert_eq!(by_tno.pay_type, "PAPT");
    assert_eq!(
        by_tno.kcp_sign_data,
        s.sign("T0000^20260310123456^PAPT").unwrap()
    );
    let by_order = InquiryRequest::for_order_no("T0000", &s, "OP1", PAY_TYPE_POINT).unwrap();
    assert_eq!(
        (by_order.tno.as_str(), by_order.order_no.as_deref()),
        ("", Some("OP1"))
    );
    assert_eq!(by_order.kcp_sign_data, s.sign("T0000^OP1^PAPT").unwrap());
}

// ----- billing keys and Benepia points -------------------------------------------------------

/// The spec §2.6 example's merchant and key, with seed 002's test card.
pub(crate) fn batch_key_request(birth: Option<&str>, pwd: Option<&str>) -> BatchKeyRequest {
    BatchKeyRequest {
        order_no: "BATCH20230405001".into(),
        group_id: "A52Q71000489".into(),
        card: CardSecret {
            number: "1234567800000000".into(),
            expiry_yymm: "2607".into(),
            birth: birth.map(Into::into),
            pwd_2digit: pwd.map(Into::into),
        },
        buyer_name: "홍길동".into(),
    }
}

pub(crate) fn batch_payment() -> BatchPaymentRequest {
    BatchPaymentRequest {
        order_no: "20230412329".into(),
        amount: 1100,
        good_name: "정기결제 1월분".into(),
        buyer_name: "홍길동".into(),
        buyer_email: "".into(),
        buyer_tel: "".into(),
        batch_key: "2304051168518034".into(),
        group_id: "A52Q71000489".into(),
        quota: 0,
    }
}

pub(crate) fn point_account() -> PointAccount {
    PointAccount {
        id: "benepia01".into(),
        password: "pw1234".into(),
        member_company: "BNP1".into(),
    }
}

pub(crate) fn point_payment() -> PointPaymentRequest {
    PointPaymentRequest {
        order_no: "TEST1234567890".into(),
        amount: 1004,
        good_name: "테스트 상품".into(),
        buyer_name: "홍길동".into(),
        buyer_email: "test@kcp.co.kr".into(),
        buyer_tel: "01000000000".into(),
        account: point_account(),
    }
}

#[test]
fn batch_key_issuance_with_birth_and_pin_matches_the_golden_fixture() {
    let req = batch_key_request(Some("951010"), Some("00"));
    let body = BatchKeyIssueRequest::new("A52Q7", &signer(), &req).unwrap();
    assert_matches_golden(&body, "batch-issue-authenticated");
}

#[test]
fn batch_key_issuance_without_birth_and_pin_sends_neither_field() {
    let mut req = batch_key_request(None, None);
    req.card.number = "4673090000000032".into();
    req.card.expiry_yymm = "3012".into();
    let body = BatchKeyIssueRequest::new("A52Q7", &signer(), &req).unwrap();
    assert_matches_golden(&body, "batch-issue-non-authenticated");
}

#[test]
fn batch_key_issuance_takes_a_birth_date_without_the_pin_prefix() {
    let body =
        BatchKeyIssueRequest::new("A52Q7", &signer(), &batch_key_request(Some("951010"), None))
            .unwrap();
    let json = serde_json::to_value(&body).unwrap();
    assert_eq!(json["card_taxno"], "951010");
    assert!(json.get("card_pwd").is_none(), "{json}");
}

#[test]
fn key_in_still_refuses_a_birth_date_without_the_pin_prefix() {
    let req = key_in(Some("951010"), None);
    assert!(KeyInPaymentRequest::new("T0000", &signer(), &req).is_err());
}

#[test]
fn batch_key_issuance_refuses_card_data_like_key_in() {
    for (birth, pwd) in [(None, Some("00")), (Some("9510"), Some("00"))] {
        let err = BatchKeyIssueRequest::new("A52Q7", &signer(), &batch_key_request(birth, pwd))
            .unwrap_err();
        assert_eq!(
            declined_reason(err),
            ("invalid_request".into(), DeclineReason::CardRejected)
        );
    }
    let mut req = batch_key_request(None, None);
    req.card.number = "1234".into();
    assert!(!BatchKeyIssueRequest::new("A52Q7", &signer(), &req)
        .unwrap_err()
        .to_string()
        .contains("1234"));
}

#[test]
fn batch_payment_body_is_the_spec_example() {
    let body = BatchPaymentRequestBody::new("A52Q7", &signer(), &batch_payment()).unwrap();
    assert_matches_golden(&body, "batch-pay");
}

#[test]
fn batch_payment_sends_amount_and_card_mny_equal_and_a_two_digit_quota() {
    let mut req = batch_payment();
    req.amount = 55_000;
    req.quota = 3;
    let body =
        serde_json::to_value(BatchPaymentRequestBody::new("A52Q7", &signer(), &req).unwrap())
            .unwrap();
    assert_eq!(
        (&body["amount"], &body["card_mny"], &body["quota"]),
        (&json!("55000"), &json!("55000"), &json!("03"))
    );
    req.quota = 100;
    assert!(BatchPaymentRequestBody::new("A52Q7", &signer(), &req).is_err());
    req.quota = 0;
    req.amount = 0;
    assert!(BatchPaymentRequestBody::new("A52Q7", &signer(), &req).is_err());
}

#[test]
fn a_malformed_batch_key_or_group_is_refused_without_echoing_the_key() {
    for (key, group) in [
        ("2304-0511-6851", "A52Q71000489"),
        ("", "A52Q71000489"),
        ("2304051168518034", "A52Q7 1000489"),
    ] {
        let mut req = batch_payment();
        req.batch_key = key.into();
        req.group_id = group.into();
        let err = BatchPaymentRequestBody::new("A52Q7", &signer(), &req).unwrap_err();
        if !key.is_empty() {
            assert!(!err.to_string().contains(key), "{err}");
        }
        assert!(BatchKeyDeleteRequest::new("A52Q7", &signer(), key, group).is_err());
    }
}

#[test]
fn batch_key_delete_body_is_the_spec_example() {
    let body =
        BatchKeyDeleteRequest::new("A52Q7", &signer(), "2304051168518034", "A52Q71000489").unwrap();
    assert_matches_golden(&body, "batch-delete");
}

#[test]
fn point_balance_body_sends_the_fixed_amount_1004() {
    let body =
        PointBalanceRequest::new("T0000", &signer(), "TEST1234567890", &point_account()).unwrap();
    assert_eq!(body.amount, "1004", "seed 003: 포인트 조회 시 '1004' 고정");
    assert_matches_golden(&body, "point-balance");
}

#[test]
fn point_payment_body_matches_the_golden_fixture() {
    let body = PointPaymentRequestBody::new("T0000", &signer(), &point_payment()).unwrap();
    assert_eq!(body.pt_mny, body.amount);
    assert_matches_golden(&body, "point-pay");
}

#[test]
fn point_reapproval_is_signed_over_site_tno_stra_and_matches_the_golden_fixture() {
    let body = PointReapprovalRequest::new(
        "T0000",
        &signer(),
        "23336986737476",
        600,
        "TEST1234567891",
        "테스트 상품",
    )
    .unwrap();
    // The fixture's kcp_sign_data was produced independently with
    // `openssl dgst -sha256 -sign splPrikeyPKCS8.pem` over `T0000^23336986737476^STRA`.
    assert_matches_golden(&body, "point-reapprove");
    let verified = signer().sign("T0000^23336986737476^STRA").unwrap();
    assert_eq!(body.kcp_sign_data, verified);
}

#[test]
fn point_reapproval_refuses_a_bad_tno_amount_or_order() {
    let s = signer();
    assert!(PointReapprovalRequest::new("T0000", &s, "x1", 600, "A1", "g").is_err());
    assert!(PointReapprovalRequest::new("T0000", &s, "1", 0, "A1", "g").is_err());
    assert!(PointReapprovalRequest::new("T0000", &s, "1", 600, "A-1", "g").is_err());
}

#[test]
fn unusable_point_credentials_are_refused_without_echoing_them() {
    for (id, password, company) in [
        ("", "pw1234", "BNP1"),
        ("benepia01", "pw;1234", "BNP1"),
        ("benepia01", " pw1234", "BNP1"),
        ("benepia01", "pw1234", ""),
        // `pt_memcorp_cd` is `String 4` (seed 003).
        ("benepia01", "pw1234", "BNP01"),
    ] {
        let account = PointAccount {
            id: id.into(),
            password: password.into(),
            member_company: company.into(),
        };
        let err = PointBalanceRequest::new("T0000", &signer(), "A1", &account).unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains("pw1234") && !text.contains("benepia01"),
            "{text}"
        );
        let mut req = point_payment();
        req.account = account;
        assert!(PointPaymentRequestBody::new("T0000", &signer(), &req).is_err());
    }
}

#[test]
fn billing_request_debug_output_hides_keys_cards_and_point_credentials() {
    let s = signer();
    let debugs = [
        format!(
            "{:?}",
            BatchKeyIssueRequest::new("A52Q7", &s, &batch_key_request(Some("951010"), Some("00")))
                .unwrap()
        ),
        format!(
            "{:?}",
            BatchPaymentRequestBody::new("A52Q7", &s, &batch_payment()).unwrap()
        ),
        format!(
            "{:?}",
            BatchKeyDeleteRequest::new("A52Q7", &s, "2304051168518034", "A52Q71000489").unwrap()
        ),
        format!(
            "{:?}",
            PointBalanceRequest::new("T0000", &s, "A1", &point_account()).unwrap()
        ),
        format!(
            "{:?}",
            PointPaymentRequestBody::new("T0000", &s, &point_payment()).unwrap()
        ),
    ];
    for debug in debugs {
        for secret in [
            "2304051168518034",
            "1234567800000000",
            "951010",
            "benepia01",
            "pw1234",
            "홍길동",
        ] {
            assert!(!debug.contains(secret), "Debug leaks {secret}: {debug}");
        }
    }
}

/// spec/kcp.md §2.5.
const BATCH_KEY_SAMPLE: &str = r#"{"res_msg":"정상처리","card_cd":"CCDI","card_bin_type_02":"0","card_bank_cd":"0321","batch_key":"2304051168518034",
 "card_name":"현대카드","card_bin_type_01":"0","res_cd":"0000"}"#;

#[test]
fn the_spec_batch_key_sample_parses_and_the_card_is_masked_from_the_request() {
    let resp: BatchKeyResponse = serde_json::from_str(BATCH_KEY_SAMPLE).unwrap();
    let key = resp
        .into_batch_key(&batch_key_request(None, None).card)
        .unwrap();
    assert_eq!(
        key,
        BatchKey {
            batch_key: "2304051168518034".into(),
            issuer_code: "CCDI".into(),
            issuer_name: "현대카드".into(),
            masked_card_number: "123456******0000".into(),
            is_check_card: false,
            is_corporate: false,
        }
    );
    assert!(!format!("{key:?}").contains("2304051168518034"));
}

#[test]
fn a_batch_key_answer_with_card_mask_no_uses_it_masking_it_if_kcp_did_not() {
    let card = batch_key_request(None, None).card;
    for (sent, expected) in [
        ("461954******7815", "461954******7815"),
        ("4619541234567815", "461954******7815"),
    ] {
        let body = json!({"res_cd":"0000","batch_key":"2304051168518034","card_mask_no":sent,
            "card_bin_type_01":"1","card_bin_type_02":"1"});
        let resp: BatchKeyResponse = serde_json::from_value(body).unwrap();
        assert!(!format!("{resp:?}").contains("2304051168518034"));
        let key = resp.into_batch_key(&card).unwrap();
        assert_eq!(key.masked_card_number, expected);
        assert!(key.is_check_card && key.is_corporate);
    }
}

#[test]
fn a_batch_key_success_without_a_key_is_unusable() {
    let card = batch_key_request(None, None).card;
    for body in [
        r#"{"res_cd":"0000","card_cd":"CCDI"}"#,
        r#"{"res_cd":"0000","batch_key":" "}"#,
        r#"{"res_cd":"0000","batch_key":null}"#,
    ] {
        let resp: BatchKeyResponse = serde_json::from_str(body).unwrap();
        assert!(resp.into_batch_key(&card).is_err(), "{body}");
    }
}

#[test]
fn a_batch_payment_answer_is_a_card_approval_with_kcps_masked_number() {
    let resp: CardPaymentResponse = serde_json::from_str(
        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","order_no":"20230412329","amount":"1100",
            "card_mny":"1100","pay_method":"PACA","app_time":"20230412100000","app_no":"30012345","card_cd":"CCLG",
            "card_name":"신한카드","card_no":"461954******7815","quota":"00","card_bin_type_01":"0",
            "card_bin_type_02":"0","partcanc_yn":"Y"}"#,
    )
    .unwrap();
    let approval = CardApproval::try_from(resp).unwrap();
    assert_eq!(approval.masked_card_number, "461954******7815");
    assert_eq!(
        (approval.amount, approval.order_no.as_str()),
        (1100, "20230412329")
    );
}

#[test]
fn a_point_balance_answer_gives_rsv_pnt() {
    let resp: PointBalanceResponse =
        serde_json::from_str(r#"{"res_cd":"0000","res_msg":"정상처리","rsv_pnt":"15000"}"#)
            .unwrap();
    assert_eq!(resp.balance(), Ok(15_000));
    let resp: PointBalanceResponse = serde_json::from_str(r#"{"res_cd":"0000"}"#).unwrap();
    assert!(resp.balance().is_err());
}

#[test]
fn a_point_payment_answer_becomes_a_point_approval() {
    let resp: PointApprovalResponse = serde_json::from_str(
        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737999","pnt_amount":"1004",
            "pnt_app_time":"20230327113214","pnt_app_no":"P0012345","rsv_pnt":"13996","pnt_issue":"SCWB"}"#,
    )
    .unwrap();
    assert_eq!(
        resp.into_approval("TEST1234567890").unwrap(),
        PointApproval {
            tno: "23336986737999".into(),
            order_no: "TEST1234567890".into(),
            amount: 1004,
            app_no: "P0012345".into(),
            approved_at: "2023-03-27T02:32:14Z".parse().unwrap(),
            balance_after: 13_996,
        }
    );
}

#[test]
fn a_point_success_without_tno_or_amount_is_unusable_but_a_missing_balance_is_not() {
    for body in [
        r#"{"res_cd":"0000","pnt_amount":"1004"}"#,
        r#"{"res_cd":"0000","tno":"1"}"#,
        r#"{"res_cd":"0000","tno":"1","pnt_amount":"1,004"}"#,
    ] {
        let resp: PointApprovalResponse = serde_json::from_str(body).unwrap();
        assert!(resp.into_approval("A1").is_err(), "{body}");
    }
    let resp: PointApprovalResponse =
        serde_json::from_str(r#"{"res_cd":"0000","tno":"1","pnt_amount":1004}"#).unwrap();
    let approval = resp.into_approval("A1").unwrap();
    assert_eq!((approval.amount, approval.balance_after), (1004, 0));
}

#[test]
fn bank_and_phone_inquiries_read_their_own_status_and_balance_fields() {
    let bank: InquiryResponse = serde_json::from_value(json!({"res_cd":"0000","tno":"20260310123457",
        "order_no":"OB1","pay_method":"PABK","amount":"3000","stat_bk_cd":"STPC","bk_rem_mny":"2000",
        "app_time":"20260310120000"}))
    .unwrap();
    let TradeState::Approved {
        approval,
        remaining,
    } = bank.into_state_of(PAY_TYPE_BANK).unwrap()
    else {
        panic!("not approved")
    };
    assert_eq!((approval.amount, remaining), (3000, 2000));
    let phone: InquiryResponse =
        serde_json::from_value(json!({"res_cd":"0000","tno":"20260310123458",
        "order_no":"OP1","pay_method":"PAMC","amount":"1500","stat_hp_cd":"STSC","hp_rem_mny":"0",
        "app_time":"20260310120000","canc_time":"20260311090000"}))
        .unwrap();
    assert!(matches!(
        phone.into_state_of(PAY_TYPE_PHONE).unwrap(),
        TradeState::Cancelled { .. }
    ));
}

/// KCP's legacy module partially cancels a bank transfer with `STPA`, and a REST inquiry may
/// report a transfer's status so (docs/kcp.md §9.6): read as partially cancelled with its
/// `bk_rem_mny`, never left unknown. Only in `stat_bk_cd`: a card's `STPA` stays unknown.
#[test]
fn a_bank_transfer_inquiry_reporting_stpa_is_partially_cancelled() {
    let bank: InquiryResponse = serde_json::from_value(json!({"res_cd":"0000","tno":"20260310123457",
        "order_no":"OB1","pay_method":"PABK","amount":"3000","stat_bk_cd":"STPA","bk_rem_mny":"2000",
        "app_time":"20260310120000"}))
    .unwrap();
    let TradeState::Approved {
        approval,
        remaining,
    } = bank.into_state_of(PAY_TYPE_BANK).unwrap()
    else {
        panic!("not approved")
    };
    assert_eq!((approval.amount, remaining), (3000, 2000));
    let without_balance: InquiryResponse =
        serde_json::from_value(json!({"res_cd":"0000","tno":"20260310123457",
        "order_no":"OB1","pay_method":"PABK","amount":"3000","stat_bk_cd":"STPA",
        "app_time":"20260310120000"}))
        .unwrap();
    assert!(without_balance.into_state_of(PAY_TYPE_BANK).is_err());
    let phone: InquiryResponse =
        serde_json::from_value(json!({"res_cd":"0000","tno":"20260310123458",
        "order_no":"OP1","pay_method":"PAMC","amount":"1500","stat_hp_cd":"STPA","hp_rem_mny":"500",
        "app_time":"20260310120000"}))
        .unwrap();
    assert!(phone.into_state_of(PAY_TYPE_PHONE).is_err());
}

#[test]
fn a_window_inquiry_answered_with_the_card_status_or_another_method_is_not_guessed() {
    let card_status: InquiryResponse =
        serde_json::from_value(json!({"res_cd":"0000","tno":"20260310123457",
        "order_no":"OB1","amount":"3000","stat_ca_cd":"STSR","app_time":"20260310120000"}))
        .unwrap();
    assert!(card_status.into_state_of(PAY_TYPE_BANK).is_err());
    let other: InquiryResponse =
        serde_json::from_value(json!({"res_cd":"0000","tno":"20260310123457",
        "pay_method":"PAMC","amount":"3000","stat_bk_cd":"STSR","app_time":"20260310120000"}))
        .unwrap();
    assert!(other.into_state_of(PAY_TYPE_BANK).is_err());
}

#[test]
fn a_partial_cancel_answer_is_as_asked_only_when_its_mod_mny_and_rem_mny_are_the_requests() {
    let kind = CancelKind::Partial {
        amount: 300,
        balance_before: 1000,
    };
    let req = cancel(kind.clone());
    let answered = |body: Value| confirmation_of(&req, body);
    let as_asked = answered(json!({"res_cd":"0000","mod_mny":"300","rem_mny":"700"}));
    assert_eq!(as_asked.cancelled, Some(300));
    assert!(as_asked.as_asked(&kind));
    // Without the amounts, what was asked is all there is to go by.
    assert!(answered(json!({"res_cd":"0000"})).as_asked(&kind));
    assert!(!answered(json!({"res_cd":"0000","mod_mny":"300","rem_mny":"500"})).as_asked(&kind));
    assert!(!answered(json!({"res_cd":"0000","mod_mny":"500","rem_mny":"700"})).as_asked(&kind));
    let unreadable: CancelResponse =
        serde_json::from_value(json!({"res_cd":"0000","mod_mny":"3백"})).unwrap();
    assert!(unreadable.into_confirmation(&req).is_err());
    // A full cancel's answer names no amount to check.
    let full: CancelResponse =
        serde_json::from_value(json!({"res_cd":"0000","mod_mny":"1","rem_mny":"5"})).unwrap();
    assert!(full
        .into_confirmation(&cancel(CancelKind::Full))
        .unwrap()
        .as_asked(&CancelKind::Full));
}

// ----- amounts an answer names (spec/kcp.md §5) -----------------------------------------------

/// The values of an amount field KCP filled in that openport cannot read: a thousands separator,
/// a word, a sign, more than a `Won` holds.
pub(crate) const UNREADABLE_AMOUNTS: [&str; 4] = ["1,000", "abc", "-5", "99999999999999999999"];

#[test]
fn named_amounts_keep_each_field_that_does_not_read_as_an_amount_and_skip_blank_or_absent_ones() {
    for bad in UNREADABLE_AMOUNTS {
        let named = NamedAmounts::of(&[
            ("amount", Some(" 1000 ")),
            ("card_mny", Some(bad)),
            ("bk_mny", Some("  ")),
            ("pnt_amount", None),
            ("other", Some("700")),
        ]);
        assert_eq!(named.read, vec![1000, 700], "{bad}");
        assert_eq!(named.unreadable, vec!["card_mny"], "{bad}");
        let problems: Vec<String> = named.unreadable_problems().collect();
        assert_eq!(problems, ["card_mny is not a readable amount"], "{bad}");
    }
    assert_eq!(
        NamedAmounts::of(&[("amount", Some("")), ("card_mny", None)]),
        NamedAmounts::default(),
        "blank and absent fields name nothing"
    );
}

#[test]
fn a_card_answer_names_amount_and_card_mny_whether_or_not_they_read() {
    let card = |body: Value| -> NamedAmounts {
        serde_json::from_value::<CardPaymentResponse>(body)
            .unwrap()
            .amounts_named()
    };
    for bad in UNREADABLE_AMOUNTS {
        let named = card(json!({"res_cd":"0000","tno":"1","amount":"1000","card_mny":bad}));
        assert_eq!(
            (named.read, named.unreadable),
            (vec![1000], vec!["card_mny"]),
            "{bad}"
        );
        let named = card(json!({"res_cd":"0000","tno":"1","amount":bad,"card_mny":"1000"}));
        assert_eq!(
            (named.read, named.unreadable),
            (vec![1000], vec!["amount"]),
            "{bad}"
        );
    }
    let numeric = card(json!({"res_cd":"0000","tno":"1","amount":1000,"card_mny":1000}));
    assert_eq!(
        (numeric.read, numeric.unreadable.len()),
        (vec![1000, 1000], 0)
    );
    let blank = card(json!({"res_cd":"0000","tno":"1","amount":"1000","card_mny":" "}));
    assert_eq!((blank.read, blank.unreadable.len()), (vec![1000], 0));
}

#[test]
fn a_point_answer_names_its_pnt_amount_whether_or_not_it_reads() {
    let point = |body: Value| -> NamedAmounts {
        serde_json::from_value::<PointApprovalResponse>(body)
            .unwrap()
            .amounts_named()
    };
    for bad in UNREADABLE_AMOUNTS {
        let named = point(json!({"res_cd":"0000","tno":"1","pnt_amount":bad,"rsv_pnt":"5"}));
        assert_eq!(
            (named.read.len(), named.unreadable),
            (0, vec!["pnt_amount"])
        );
    }
    let named = point(json!({"res_cd":"0000","tno":"1","pnt_amount":"1004","rsv_pnt":"x"}));
    assert_eq!(
        (named.read, named.unreadable.len()),
        (vec![1004], 0),
        "rsv_pnt is the balance left, not an amount charged"
    );
}

/// The inquiries the resolver settles unknown outcomes with (`std/inquery`, spec §2.10) read
/// their amount and balance strictly: an answer naming one that cannot be read is no trade state,
/// so the outcome stays unknown rather than honoured or failed on a guess.
#[test]
fn an_inquiry_naming_an_amount_or_balance_that_cannot_be_read_settles_nothing() {
    for bad in UNREADABLE_AMOUNTS {
        let mut card = inquiry("STSR", Some("1000"));
        card.amount = Some(bad.into());
        assert!(TradeState::try_from(card).is_err(), "card amount {bad}");
        assert!(
            TradeState::try_from(inquiry("STSR", Some(bad))).is_err(),
            "card rem_mny {bad}"
        );
        let mut point = point_inquiry("STSR");
        point.amount = Some(bad.into());
        assert!(point.into_point_state().is_err(), "point amount {bad}");
        let mut point = point_inquiry("STSR");
        point.rem_mny = Some(bad.into());
        assert!(point.into_point_state().is_err(), "point rem_mny {bad}");
        let bank: InquiryResponse = serde_json::from_value(json!({"res_cd":"0000",
            "tno":"20260310123457","order_no":"OB1","pay_method":"PABK","amount":"3000",
            "stat_bk_cd":"STSR","bk_rem_mny":bad}))
        .unwrap();
        assert!(
            bank.into_state_of(PAY_TYPE_BANK).is_err(),
            "bk_rem_mny {bad}"
        );
        let phone: InquiryResponse = serde_json::from_value(json!({"res_cd":"0000",
            "tno":"20260310123458","order_no":"OP1","pay_method":"PAMC","amount":bad,
            "stat_hp_cd":"STSR","hp_rem_mny":"1500"}))
        .unwrap();
        assert!(
            phone.into_state_of(PAY_TYPE_PHONE).is_err(),
            "phone amount {bad}"
        );
    }
}
