use super::*;
use crate::pg::kcp::wire::tests::{assert_matches_golden, signer};
use crate::pg::kcp::wire::BatchKeyResponse;
use chrono::TimeZone;
use serde_json::json;

fn registration() -> TradeRegistration {
    TradeRegistration {
        order_no: "ORD20230502101432KK0630".into(),
        amount: 55_000,
        good_name: "양말 2켤레".into(),
        method: WindowMethod::VirtualAccount,
        return_url: "https://openport.example/checkout/kcp/return?session=4f2a9c&m=1".into(),
        escrow: true,
        user_agent: "mobile".into(),
    }
}

fn window_result(use_pay_method: &str, amount: Won, order_no: &str) -> WindowApprovalRequest {
    WindowApprovalRequest {
        order_no: order_no.into(),
        amount,
        tran_cd: "00100000".into(),
        enc_data: "ZW5jX2RhdGFfb3BhcXVlLXRlc3QuMDAx".into(),
        enc_info: "ZW5jX2luZm9fb3BhcXVlLXRlc3QuMDAx".into(),
        use_pay_method: use_pay_method.into(),
    }
}

fn local_refusal(err: PgError) -> String {
    match err {
        PgError::Declined {
            code,
            message,
            reason: DeclineReason::Other,
        } if code == "invalid_request" => message,
        other => panic!("expected a local invalid_request, got {other:?}"),
    }
}

fn kst(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    chrono::FixedOffset::east_opt(9 * 3600)
        .unwrap()
        .with_ymd_and_hms(y, mo, d, h, mi, s)
        .unwrap()
        .with_timezone(&Utc)
}

fn parse(json: &str) -> WindowApprovalResponse {
    serde_json::from_str(json).expect("answer parses")
}

// ----- requests -------------------------------------------------------------------------------

#[test]
fn trade_registration_body_matches_the_golden_fixture() {
    let body = TradeRegisterRequest::new("T0007", &signer(), &registration()).unwrap();
    assert_matches_golden(&body, "trade-register");
}

#[test]
fn every_window_method_registers_with_its_mobile_pay_method_code() {
    let cases = [
        (WindowMethod::Card, "CARD"),
        (WindowMethod::Bank, "BANK"),
        (WindowMethod::VirtualAccount, "VCNT"),
        (WindowMethod::Phone, "MOBX"),
        (WindowMethod::Point, "TPNT"),
        (WindowMethod::GiftCertificate, "GIFT"),
        (WindowMethod::BatchKey, "AUTH"),
    ];
    for (method, code) in cases {
        let mut req = registration();
        req.method = method;
        req.escrow = false;
        let body =
            serde_json::to_value(TradeRegisterRequest::new("T0000", &signer(), &req).unwrap())
                .unwrap();
        assert_eq!(body["pay_method"], code, "{method:?}");
        assert_eq!(body["escw_used"], "N");
    }
}

#[test]
fn trade_registration_sanitizes_the_product_name_and_refuses_what_kcp_would() {
    let mut req = registration();
    req.good_name = "Shirt, blue <b>".into();
    let body =
        serde_json::to_value(TradeRegisterRequest::new("T0000", &signer(), &req).unwrap()).unwrap();
    assert_eq!(body["good_name"], "Shirt  blue  b");

    for broken in [
        TradeRegistration {
            order_no: "ORDER-1".into(),
            ..registration()
        },
        TradeRegistration {
            amount: 0,
            ..registration()
        },
        TradeRegistration {
            amount: -1,
            method: WindowMethod::BatchKey,
            ..registration()
        },
        TradeRegistration {
            return_url: "/checkout/kcp/return".into(),
            ..registration()
        },
    ] {
        local_refusal(TradeRegisterRequest::new("T0000", &signer(), &broken).unwrap_err());
    }
}

#[test]
fn a_billing_key_window_registers_zero_won() {
    let req = TradeRegistration {
        amount: 0,
        method: WindowMethod::BatchKey,
        ..registration()
    };
    let body =
        serde_json::to_value(TradeRegisterRequest::new("A52Q7", &signer(), &req).unwrap()).unwrap();
    assert_eq!(
        (&body["good_mny"], &body["pay_method"]),
        (&json!("0"), &json!("AUTH"))
    );
}

#[test]
fn card_window_approval_body_matches_the_golden_fixture() {
    let req = window_result("100000000000", 1000, "2023031679884274");
    let body = WindowApprovalBody::new("T0000", &signer(), &req).unwrap();
    assert_eq!(body.pay_type(), "PACA");
    assert_matches_golden(&body, "window-approval-card");
}

#[test]
fn vbank_window_approval_body_matches_the_golden_fixture() {
    let req = WindowApprovalRequest {
        enc_data: "ZW5jX2RhdGFfdmJhbmstdGVzdC4wMDI".into(),
        enc_info: "ZW5jX2luZm9fdmJhbmstdGVzdC4wMDI".into(),
        ..window_result("001000000000", 123, "VBANK20220609001")
    };
    let body = WindowApprovalBody::new("T0000", &signer(), &req).unwrap();
    assert_matches_golden(&body, "window-approval-vbank");
}

#[test]
fn use_pay_method_bitmasks_map_to_the_spec_pay_types() {
    let table = [
        ("100000000000", "PACA"),
        ("010000000000", "PABK"),
        ("001000000000", "PAVC"),
        ("000100000000", "PAPT"),
        ("000010000000", "PAMC"),
        ("000000001000", "PATK"),
    ];
    for (mask, pay_type) in table {
        assert_eq!(pay_type_of(mask), Some(pay_type), "{mask}");
        let req = window_result(mask, 1000, "A1");
        let body = WindowApprovalBody::new("T0000", &signer(), &req).unwrap();
        assert_eq!(serde_json::to_value(&body).unwrap()["pay_type"], pay_type);
    }
}

#[test]
fn a_mask_outside_the_spec_table_is_refused_locally() {
    for mask in [
        "",
        "000000000000",
        "110000000000",
        "000000000100",
        "1",
        "PACA",
    ] {
        let req = window_result(mask, 1000, "A1");
        let message = local_refusal(WindowApprovalBody::new("T0000", &signer(), &req).unwrap_err());
        assert!(message.contains("use_pay_method"), "{message}");
    }
}

#[test]
fn a_window_result_without_its_data_or_a_payments_tran_cd_is_refused_locally() {
    let base = window_result("100000000000", 1000, "A1");
    for req in [
        WindowApprovalRequest {
            enc_data: " ".into(),
            ..base.clone()
        },
        WindowApprovalRequest {
            enc_info: String::new(),
            ..base.clone()
        },
        WindowApprovalRequest {
            tran_cd: String::new(),
            ..base.clone()
        },
        // A billing-key window's tran_cd on a payment window's result (it crosses the browser).
        WindowApprovalRequest {
            tran_cd: "00300001".into(),
            ..base.clone()
        },
        WindowApprovalRequest {
            tran_cd: "00100001".into(),
            ..base.clone()
        },
        WindowApprovalRequest {
            order_no: "A-1".into(),
            ..base.clone()
        },
        WindowApprovalRequest {
            amount: -5,
            ..base.clone()
        },
    ] {
        local_refusal(WindowApprovalBody::new("T0000", &signer(), &req).unwrap_err());
    }
}

#[test]
fn window_bodies_never_show_enc_data_or_enc_info_in_debug() {
    let req = window_result("100000000000", 1000, "A1");
    let approval = format!(
        "{:?}",
        WindowApprovalBody::new("T0000", &signer(), &req).unwrap()
    );
    let batch = format!(
        "{:?}",
        WindowBatchKeyBody::new("T0000", &signer(), &req).unwrap()
    );
    for shown in [approval, batch] {
        assert!(!shown.contains(&req.enc_data), "{shown}");
        assert!(!shown.contains(&req.enc_info), "{shown}");
    }
}

#[test]
fn batch_key_window_body_has_tran_cd_00300001_and_no_amount() {
    let req = WindowApprovalRequest {
        tran_cd: "00100000".into(),
        enc_data: "ZW5jX2RhdGFfYmF0Y2gtdGVzdC4wMDM".into(),
        enc_info: "ZW5jX2luZm9fYmF0Y2gtdGVzdC4wMDM".into(),
        ..window_result("100000000000", 0, "BATCH1")
    };
    let body = WindowBatchKeyBody::new("A52Q7", &signer(), &req).unwrap();
    assert_matches_golden(&body, "window-batch-key");
}

#[test]
fn escrow_delivery_body_is_signed_over_site_tno_ste1_and_matches_the_golden_fixture() {
    // `kcp_sign_data` produced with `openssl dgst -sha256 -sign splPrikeyPKCS8.pem` over
    // `T0007^23336986737476^STE1`.
    let req = EscrowDelivery {
        tno: "23336986737476".into(),
        carrier: "CJ대한통운".into(),
        invoice: "630012345678".into(),
    };
    let body = EscrowDeliveryBody::new("T0007", &signer(), &req).unwrap();
    assert_matches_golden(&body, "escrow-delivery");
}

#[test]
fn escrow_delivery_refuses_a_bad_tno_invoice_or_carrier() {
    let good = EscrowDelivery {
        tno: "23336986737476".into(),
        carrier: "CJ대한통운".into(),
        invoice: "630012345678".into(),
    };
    for req in [
        EscrowDelivery {
            tno: "imp_123".into(),
            ..good.clone()
        },
        EscrowDelivery {
            invoice: String::new(),
            ..good.clone()
        },
        EscrowDelivery {
            invoice: "6300;12345".into(),
            ..good.clone()
        },
        EscrowDelivery {
            carrier: " <> ".into(),
            ..good.clone()
        },
    ] {
        local_refusal(EscrowDeliveryBody::new("T0007", &signer(), &req).unwrap_err());
    }
}

// ----- answers --------------------------------------------------------------------------------

#[test]
fn the_spec_registration_answer_gives_the_window_its_key_trace_and_url() {
    let resp: TradeRegisterResponse = serde_json::from_str(
        r#"{"Code":"0000","Message":"...","approvalKey":"k/Che+IOTaHYK33mhgeVNAcHyKIPdQ/iE35VBPEo1cQ=",
            "traceNo":"A52Q7LFIWKZTPUKQ","PayUrl":"https://testsmpay.kcp.co.kr/pay/mobileGW.kcp",
            "paymentMethod":"...","request_URI":"..."}"#,
    )
    .unwrap();
    assert_eq!(resp.code.as_deref(), Some("0000"));
    assert_eq!(
        resp.into_registered().unwrap(),
        RegisteredTrade {
            approval_key: "k/Che+IOTaHYK33mhgeVNAcHyKIPdQ/iE35VBPEo1cQ=".into(),
            trace_no: "A52Q7LFIWKZTPUKQ".into(),
            pay_url: "https://testsmpay.kcp.co.kr/pay/mobileGW.kcp".into(),
        }
    );
}

#[test]
fn a_registration_answer_without_pay_url_is_unusable() {
    let resp: TradeRegisterResponse =
        serde_json::from_str(r#"{"Code":"0000","approvalKey":"k","traceNo":"T0000ABC"}"#).unwrap();
    assert!(resp.into_registered().is_err());
}

#[test]
fn the_spec_vbank_answer_parses_into_a_virtual_account() {
    let resp = parse(
        r#"{"res_cd":"0000","tno":"20220609985536","amount":"123","pay_method":"PAVC","bankcode":"BK07","bankname":"수협",
            "account":"T0709260000806","depositor":"한국사이버결제","va_name":"홍길동","va_date":"20220616235959",
            "app_time":"20220609114800","escw_yn":"N"}"#,
    );
    assert_eq!(
        resp.into_approval("PAVC").unwrap(),
        WindowApproval::VirtualAccount(IssuedVirtualAccount {
            tno: "20220609985536".into(),
            order_no: String::new(),
            amount: 123,
            bank_code: "BK07".into(),
            bank_name: "수협".into(),
            account: "T0709260000806".into(),
            holder: "한국사이버결제".into(),
            due: kst(2022, 6, 16, 23, 59, 59),
            issued_at: kst(2022, 6, 9, 11, 48, 0),
        })
    );
}

#[test]
fn a_vbank_deadline_given_as_a_date_is_the_end_of_that_day() {
    let resp = parse(
        r#"{"res_cd":"0000","tno":"20220609985536","amount":"123","account":"T0709260000806","va_date":"20220616"}"#,
    );
    match resp.into_approval("PAVC").unwrap() {
        WindowApproval::VirtualAccount(IssuedVirtualAccount { due, .. }) => {
            assert_eq!(due, kst(2022, 6, 16, 23, 59, 59))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_vbank_answer_without_account_or_deadline_is_unusable() {
    for json in [
        r#"{"res_cd":"0000","tno":"20220609985536","amount":"123","va_date":"20220616235959"}"#,
        r#"{"res_cd":"0000","tno":"20220609985536","amount":"123","account":"T0709260000806"}"#,
        r#"{"res_cd":"0000","tno":"20220609985536","amount":"123","account":"T0709260000806","va_date":"soon"}"#,
    ] {
        assert!(parse(json).into_approval("PAVC").is_err(), "{json}");
    }
}

#[test]
fn a_bank_transfer_answer_reads_bk_mny_and_the_underscored_bank_fields() {
    let resp = parse(
        r#"{"res_cd":"0000","tno":"23336986737477","order_no":"BANK1","amount":"5000","bk_mny":"5000",
            "pay_method":"PABK","bank_code":"BK04","bank_name":"국민은행","app_time":"20230327113214"}"#,
    );
    assert_eq!(
        resp.into_approval("PABK").unwrap(),
        WindowApproval::Bank {
            tno: "23336986737477".into(),
            order_no: "BANK1".into(),
            amount: 5000,
            approved_at: kst(2023, 3, 27, 11, 32, 14),
            bank_code: "BK04".into(),
            bank_name: "국민은행".into(),
        }
    );
    let without_bk_mny = parse(r#"{"res_cd":"0000","tno":"23336986737477","amount":"4000"}"#);
    assert!(matches!(
        without_bk_mny.into_approval("PABK").unwrap(),
        WindowApproval::Bank { amount: 4000, .. }
    ));
}

#[test]
fn phone_point_and_gift_answers_read_their_own_fields() {
    let phone = parse(
        r#"{"res_cd":"0000","tno":"23336986737478","amount":"3000","pay_method":"PAMC","app_time":"20230327113214",
            "commid":"SKT","mobile_no":"01012345678"}"#,
    );
    assert_eq!(
        phone.into_approval("PAMC").unwrap(),
        WindowApproval::Phone {
            tno: "23336986737478".into(),
            order_no: String::new(),
            amount: 3000,
            approved_at: kst(2023, 3, 27, 11, 32, 14),
            carrier: "SKT".into(),
            mobile_no: "01012345678".into(),
        }
    );

    let point = parse(
        r#"{"res_cd":"0000","tno":"23336986737479","amount":"9999","pnt_amount":"2000","pnt_app_no":"P1234567",
            "pnt_app_time":"20230327120000","pnt_issue":"SCWB","rsv_pnt":"8000"}"#,
    );
    assert_eq!(
        point.into_approval("PAPT").unwrap(),
        WindowApproval::Point {
            tno: "23336986737479".into(),
            order_no: String::new(),
            amount: 2000,
            approved_at: kst(2023, 3, 27, 12, 0, 0),
            app_no: "P1234567".into(),
        }
    );

    let gift = parse(
        r#"{"res_cd":"0000","tno":"23336986737480","order_no":"GIFT1","amount":"10000","tk_van_code":"SCCL",
            "tk_app_no":"G7654321","tk_app_time":"20230327130000","app_time":"20230327125959"}"#,
    );
    assert_eq!(
        gift.into_approval("PATK").unwrap(),
        WindowApproval::Gift {
            tno: "23336986737480".into(),
            order_no: "GIFT1".into(),
            amount: 10000,
            approved_at: kst(2023, 3, 27, 13, 0, 0),
            van_code: "SCCL".into(),
            app_no: "G7654321".into(),
        }
    );
}

#[test]
fn a_success_without_tno_or_amount_is_unusable_for_every_method() {
    for pay_type in ["PABK", "PAVC", "PAMC", "PAPT", "PATK"] {
        let no_tno =
            parse(r#"{"res_cd":"0000","amount":"1000","account":"T1","va_date":"20220616235959"}"#);
        assert!(no_tno.into_approval(pay_type).is_err(), "{pay_type}");
        let no_amount = parse(
            r#"{"res_cd":"0000","tno":"23336986737476","account":"T1","va_date":"20220616235959"}"#,
        );
        assert!(no_amount.into_approval(pay_type).is_err(), "{pay_type}");
    }
}

#[test]
fn the_spec_batch_window_answer_becomes_a_batch_key_without_a_guessed_card_number() {
    let resp: BatchKeyResponse = serde_json::from_str(
        r#"{"res_msg":"정상처리","card_cd":"CCDI","card_bin_type_02":"0","card_bank_cd":"0321","batch_key":"2304051168518034",
            "card_name":"현대카드","card_bin_type_01":"0","res_cd":"0000"}"#,
    )
    .unwrap();
    let key = resp.into_window_batch_key().unwrap();
    assert_eq!(key.batch_key, "2304051168518034");
    assert_eq!(
        (key.issuer_code.as_str(), key.issuer_name.as_str()),
        ("CCDI", "현대카드")
    );
    assert_eq!(key.masked_card_number, "");
    assert!(!key.is_check_card && !key.is_corporate);

    let with_mask: BatchKeyResponse = serde_json::from_str(
        r#"{"res_cd":"0000","batch_key":"2304051168518034","card_mask_no":"4619540000007815"}"#,
    )
    .unwrap();
    assert_eq!(
        with_mask
            .into_window_batch_key()
            .unwrap()
            .masked_card_number,
        "461954******7815"
    );
}

/// spec/kcp.md §5: whichever field a window approval is read from, every amount the answer names
/// is cross-checked, and a field KCP filled in that does not read as an amount is kept (by name)
/// for the cross-check to refuse, never dropped.
#[test]
fn a_window_answer_names_amount_bk_mny_and_pnt_amount_whether_or_not_they_read() {
    use crate::pg::kcp::wire::tests::UNREADABLE_AMOUNTS;
    for bad in UNREADABLE_AMOUNTS {
        for (field, readable) in [
            ("bk_mny", "amount"),
            ("pnt_amount", "amount"),
            ("amount", "bk_mny"),
        ] {
            let body = serde_json::json!({"res_cd":"0000","tno":"23336986737477", field: bad, readable: "1000"});
            let named = parse(&body.to_string()).amounts_named();
            assert_eq!(named.read, vec![1000], "{field} {bad}");
            assert_eq!(named.unreadable, vec![field], "{field} {bad}");
        }
    }
    let blank = parse(
        r#"{"res_cd":"0000","tno":"23336986737477","amount":"1000","bk_mny":"","pnt_amount":" "}"#,
    );
    assert_eq!(blank.amounts_named().read, vec![1000]);
    assert!(
        blank.amounts_named().unreadable.is_empty(),
        "blank fields name nothing"
    );
}
