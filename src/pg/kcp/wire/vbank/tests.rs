use super::*;
use crate::pg::kcp::wire::tests::{assert_matches_golden, signer};
use crate::pg::kcp::wire::InquiryRequest;
use chrono::{DateTime, TimeZone, Utc};

fn kst(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    chrono::FixedOffset::east_opt(9 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, mo, d, h, mi, s)
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn issue_request() -> VbankIssueRequest {
    VbankIssueRequest {
        order_no: "OP123456789012".into(),
        amount: 7000,
        good_name: "테스트 상품".into(),
        buyer_name: "홍길동".into(),
        buyer_email: "buyer@example.com".into(),
        buyer_tel: "01012345678".into(),
        bank_code: "BK07".into(),
        due: kst(2026, 3, 17, 23, 59, 59),
    }
}

fn inquiry(json: &str) -> InquiryResponse {
    serde_json::from_str(json).expect("answer parses")
}

#[test]
fn issuance_body_matches_the_golden_fixture() {
    let body = VbankIssueBody::new("T0000", &signer(), &issue_request()).unwrap();
    assert_matches_golden(&body, "vbank-issue");
}

/// KCP's field set (pp_cli's VCNT sample, public hub integrations): the account's own fields
/// carry the `va_` prefix, `va_mny` repeats the amount (KCP refuses it otherwise), and `va_name`
/// is who is expected to deposit (입금자명), the buyer: KCP has no field for a holder.
#[test]
fn the_body_names_the_buyer_as_depositor_and_repeats_the_amount_in_va_mny() {
    let body =
        serde_json::to_value(VbankIssueBody::new("T0000", &signer(), &issue_request()).unwrap())
            .unwrap();
    for (field, want) in [
        ("va_txtype", "41100000"),
        ("va_bankcode", "BK07"),
        ("va_mny", "7000"),
        ("amount", "7000"),
        ("currency", "410"),
        ("va_name", "홍길동"),
        ("buyr_name", "홍길동"),
        ("va_receipt_gubn", "0"),
        ("cust_ip", ""),
    ] {
        assert_eq!(body[field], want, "{field} in {body}");
    }
    assert!(body.get("bank_code").is_none(), "{body}");
}

/// The depositor name is the buyer name as sent in `buyr_name`: sanitized the same way, and empty
/// (as KCP's samples send unusable fields) when the merchant named no buyer.
#[test]
fn va_name_is_the_sanitized_buyer_name_or_empty_without_one() {
    let req = VbankIssueRequest {
        buyer_name: " 홍<길>동 ".into(),
        ..issue_request()
    };
    let body =
        serde_json::to_value(VbankIssueBody::new("T0000", &signer(), &req).unwrap()).unwrap();
    assert_eq!(body["va_name"], body["buyr_name"], "{body}");
    assert!(!body["va_name"].as_str().unwrap().contains('<'), "{body}");
    let nobody = VbankIssueRequest {
        buyer_name: String::new(),
        ..issue_request()
    };
    let body =
        serde_json::to_value(VbankIssueBody::new("T0000", &signer(), &nobody).unwrap()).unwrap();
    assert_eq!(body["va_name"], "", "{body}");
}

#[test]
fn a_bank_code_that_is_not_kcps_is_refused_before_anything_is_sent() {
    for bank in ["004", "BK7", "BKAB", ""] {
        let req = VbankIssueRequest {
            bank_code: bank.into(),
            ..issue_request()
        };
        match VbankIssueBody::new("T0000", &signer(), &req) {
            Err(PgError::Declined { code, .. }) => assert_eq!(code, "invalid_request", "{bank}"),
            other => panic!("{bank}: expected a local refusal, got {other:?}"),
        }
    }
}

#[test]
fn debug_shows_identifiers_not_the_buyer() {
    let body = VbankIssueBody::new("T0000", &signer(), &issue_request()).unwrap();
    let shown = format!("{body:?}");
    assert!(shown.contains("OP123456789012") && shown.contains("BK07"));
    assert!(!shown.contains("홍길동") && !shown.contains("buyer@example.com"));
}

#[test]
fn inquiry_by_order_no_with_pay_type_pavc_matches_the_golden_fixture() {
    let body =
        InquiryRequest::for_order_no("T0000", &signer(), "OP123456789012", PAY_TYPE_VBANK).unwrap();
    assert_matches_golden(&body, "vbank-inquiry-by-order-no");
}

#[test]
fn an_issued_account_inquires_as_open_with_its_account() {
    let state = inquiry(
        r#"{"res_cd":"0000","tno":"20260310123456","order_no":"OP123456789012","pay_method":"PAVC",
            "amount":"7000","rem_mny":"7000","stat_va_cd":"STIS","app_time":"20260310120000",
            "bankcode":"BK07","bankname":"수협","account":"T0709260000806","depositor":"한국사이버결제",
            "va_name":"홍길동","va_date":"20260317235959"}"#,
    )
    .into_vbank_state()
    .unwrap();
    assert_eq!(
        state,
        VbankState::Open {
            tno: "20260310123456".into(),
            amount: 7000,
            remaining: 7000,
            paid: false,
            account: Some(IssuedVirtualAccount {
                tno: "20260310123456".into(),
                order_no: "OP123456789012".into(),
                amount: 7000,
                bank_code: "BK07".into(),
                bank_name: "수협".into(),
                account: "T0709260000806".into(),
                holder: "한국사이버결제".into(),
                due: kst(2026, 3, 17, 23, 59, 59),
                issued_at: kst(2026, 3, 10, 12, 0, 0),
            }),
        }
    );
}

#[test]
fn a_paid_account_is_open_and_paid_and_an_answer_without_the_account_names_none() {
    let state = inquiry(
        r#"{"res_cd":"0000","tno":"20260310123456","pay_method":"PAVC","amount":"7000","stat_va_cd":"STSR"}"#,
    )
    .into_vbank_state()
    .unwrap();
    assert_eq!(
        state,
        VbankState::Open {
            tno: "20260310123456".into(),
            amount: 7000,
            remaining: 7000,
            paid: true,
            account: None
        }
    );
}

#[test]
fn a_revoked_account_is_closed_at_its_cancel_time() {
    let state = inquiry(
        r#"{"res_cd":"0000","tno":"20260310123456","pay_method":"PAVC","amount":"7000","rem_mny":"0",
            "stat_va_cd":"STSC","canc_time":"20260311090000"}"#,
    )
    .into_vbank_state()
    .unwrap();
    assert_eq!(
        state,
        VbankState::Closed {
            tno: "20260310123456".into(),
            closed_at: kst(2026, 3, 11, 9, 0, 0)
        }
    );
}

#[test]
fn an_unknown_status_another_method_or_no_tno_is_never_guessed() {
    for json in [
        r#"{"res_cd":"0000","tno":"20260310123456","pay_method":"PAVC","amount":"7000","stat_va_cd":"STXX"}"#,
        r#"{"res_cd":"0000","tno":"20260310123456","pay_method":"PAVC","amount":"7000"}"#,
        r#"{"res_cd":"0000","tno":"20260310123456","pay_method":"PACA","amount":"7000","stat_va_cd":"STIS"}"#,
        r#"{"res_cd":"0000","pay_method":"PAVC","amount":"7000","stat_va_cd":"STIS"}"#,
        r#"{"res_cd":"0000","tno":"20260310123456","pay_method":"PAVC","stat_va_cd":"STIS"}"#,
    ] {
        assert!(inquiry(json).into_vbank_state().is_err(), "{json}");
    }
}

/// A virtual account's inquiry reads its amount and balance strictly: one that cannot be read
/// is no account state, so what became of the account stays unknown.
#[test]
fn an_inquiry_naming_an_amount_or_balance_that_cannot_be_read_is_never_guessed() {
    for bad in crate::pg::kcp::wire::tests::UNREADABLE_AMOUNTS {
        for (field, value) in [("amount", bad), ("rem_mny", bad)] {
            let mut body = serde_json::json!({"res_cd":"0000","tno":"20260310123456",
                "pay_method":"PAVC","amount":"7000","rem_mny":"7000","stat_va_cd":"STSR"});
            body[field] = serde_json::json!(value);
            assert!(
                inquiry(&body.to_string()).into_vbank_state().is_err(),
                "{field} {bad}"
            );
        }
    }
}
