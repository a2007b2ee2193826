//! [`PgCheckout`] over HTTP against a throw-away local server: what is sent where, and the error
//! semantics of every window call (spec/kcp.md §1–2.5, §2.11; docs/kcp.md §9).

use super::*;
use crate::pg::{
    ApprovedWindow, EscrowDelivery, IssuedVirtualAccount, PgCheckout, RegisteredTrade,
    TradeRegistration, WindowApproval, WindowApprovalRequest, WindowMethod,
};

/// spec/kcp.md §2.4, the real T0000 card answer, verbatim.
const SPEC_CARD: &str = r#"{"order_no":"2023031679884274","partcanc_yn":"Y","noinf":"N","res_msg":"정상처리","trace_no":"T00000RBWE0McICk",
 "card_mny":"1000","res_vat_mny":"91","res_tax_flag":"TG03","acqu_name":"국민카드","card_no":"5272890000006055",
 "quota":"00","van_cd":"VNKC","acqu_cd":"CCKM","amount":"1000","van_apptime":"20230327113214","res_free_mny":"0",
 "pay_method":"PACA","card_bin_bank_cd":"0004","res_cd":"0000","escw_yn":"N","app_time":"20230327113214",
 "tno":"23336986737476","card_bin_type_01":"0","card_bin_type_02":"1","card_cd":"CCKM",
 "res_en_msg":"processing completed","card_name":"국민카드","res_tax_mny":"909","app_no":"82050813"}"#;

/// spec/kcp.md §2.4, the real virtual-account answer, verbatim (it has no `order_no`).
const SPEC_VBANK: &str = r#"{"res_cd":"0000","tno":"20220609985536","amount":"123","pay_method":"PAVC","bankcode":"BK07","bankname":"수협",
 "account":"T0709260000806","depositor":"한국사이버결제","va_name":"홍길동","va_date":"20220616235959",
 "app_time":"20220609114800","escw_yn":"N"}"#;

/// spec/kcp.md §2.1.
const SPEC_REGISTERED: &str = r#"{"Code":"0000","Message":"...","approvalKey":"k/Che+IOTaHYK33mhgeVNAcHyKIPdQ/iE35VBPEo1cQ=",
 "traceNo":"A52Q7LFIWKZTPUKQ","PayUrl":"https://testsmpay.kcp.co.kr/pay/mobileGW.kcp",
 "paymentMethod":"...","request_URI":"..."}"#;

/// spec/kcp.md §2.5.
const SPEC_BATCH_KEY: &str = r#"{"res_msg":"정상처리","card_cd":"CCDI","card_bin_type_02":"0","card_bank_cd":"0321","batch_key":"2304051168518034",
 "card_name":"현대카드","card_bin_type_01":"0","res_cd":"0000"}"#;

const ENC_DATA: &str = "ZW5jX2RhdGFfb3BhcXVlLXRlc3QuMDAx";
const ENC_INFO: &str = "ZW5jX2luZm9fb3BhcXVlLXRlc3QuMDAx";

/// Like [`kcp`], for another site code (the fixtures use T0007 for escrow, A52Q7 for billing).
async fn kcp_site(
    site_cd: &str,
    status: u16,
    body: &'static str,
    delay: Duration,
) -> (KcpConnector, Script) {
    let (kcp, script) = kcp(status, body, delay).await;
    let mut cfg = config(
        kcp.urls.hub.trim_end_matches("/gw/hub/v1/payment"),
        Duration::from_millis(500),
    );
    cfg.site_cd = site_cd.into();
    (
        KcpConnector::new(cfg, reqwest::Client::new()).unwrap(),
        script,
    )
}

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

fn card_result() -> WindowApprovalRequest {
    WindowApprovalRequest {
        order_no: "2023031679884274".into(),
        amount: 1000,
        tran_cd: "00100000".into(),
        enc_data: ENC_DATA.into(),
        enc_info: ENC_INFO.into(),
        use_pay_method: "100000000000".into(),
    }
}

fn vbank_result() -> WindowApprovalRequest {
    WindowApprovalRequest {
        order_no: "VBANK20220609001".into(),
        amount: 123,
        enc_data: "ZW5jX2RhdGFfdmJhbmstdGVzdC4wMDI".into(),
        enc_info: "ZW5jX2luZm9fdmJhbmstdGVzdC4wMDI".into(),
        use_pay_method: "001000000000".into(),
        ..card_result()
    }
}

fn batch_result() -> WindowApprovalRequest {
    WindowApprovalRequest {
        order_no: "BATCH1".into(),
        amount: 0,
        tran_cd: "00300001".into(),
        enc_data: "ZW5jX2RhdGFfYmF0Y2gtdGVzdC4wMDM".into(),
        enc_info: "ZW5jX2luZm9fYmF0Y2gtdGVzdC4wMDM".into(),
        use_pay_method: "100000000000".into(),
    }
}

fn delivery() -> EscrowDelivery {
    EscrowDelivery {
        tno: "23336986737476".into(),
        carrier: "CJ대한통운".into(),
        invoice: "630012345678".into(),
    }
}

fn declined(result: Result<impl std::fmt::Debug, PgError>) -> (String, String, DeclineReason) {
    match result {
        Err(PgError::Declined {
            code,
            message,
            reason,
        }) => (code, message, reason),
        other => panic!("expected Declined, got {other:?}"),
    }
}

fn mismatch(result: Result<ApprovedWindow, PgError>) -> (String, String) {
    match result {
        Err(PgError::Mismatch { tno, detail, .. }) => (tno, detail),
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

/// Every window call once, with what it returned (`None` = success).
async fn every_window_call(kcp: &KcpConnector) -> Vec<(&'static str, Option<PgError>)> {
    vec![
        (
            "register_trade",
            kcp.register_trade(&registration()).await.err(),
        ),
        (
            "approve_window",
            kcp.approve_window(&card_result()).await.err(),
        ),
        (
            "issue_batch_key_from_window",
            kcp.issue_batch_key_from_window(&batch_result()).await.err(),
        ),
        (
            "escrow_delivery",
            kcp.escrow_delivery(&delivery()).await.err(),
        ),
    ]
}

// ----- trade registration ---------------------------------------------------------------------

#[tokio::test]
async fn registering_a_trade_posts_the_golden_body_and_returns_what_the_window_needs() {
    let (kcp, script) = kcp_site("T0007", 200, SPEC_REGISTERED, Duration::ZERO).await;

    let trade = kcp.register_trade(&registration()).await.unwrap();

    assert_eq!(
        trade,
        RegisteredTrade {
            approval_key: "k/Che+IOTaHYK33mhgeVNAcHyKIPdQ/iE35VBPEo1cQ=".into(),
            trace_no: "A52Q7LFIWKZTPUKQ".into(),
            pay_url: "https://testsmpay.kcp.co.kr/pay/mobileGW.kcp".into(),
        }
    );
    let seen = script.seen.lock().unwrap();
    let (path, content_type, body) = &seen[0];
    assert_eq!(path, "/std/tradeReg/register");
    assert!(content_type.starts_with("application/json"));
    assert_eq!(body, &golden("trade-register"));
}

#[tokio::test]
async fn a_registration_code_other_than_0000_is_declined_with_kcps_code_and_message() {
    for (code, body) in [
        ("0001", r#"{"Code":"0001","Message":"필수 파라미터 누락"}"#),
        ("0002", r#"{"Code":"0002","Message":"파라미터 오류"}"#),
        ("0003", r#"{"Code":"0003","Message":"인증 실패"}"#),
        ("0004", r#"{"Code":"0004","Message":"결제 실패"}"#),
    ] {
        let (kcp, _) = kcp(200, body, Duration::ZERO).await;
        let (got, message, reason) = declined(kcp.register_trade(&registration()).await);
        assert_eq!((got.as_str(), reason), (code, DeclineReason::Other));
        assert!(!message.is_empty());
    }
}

#[tokio::test]
async fn a_registration_refusal_with_a_4xx_status_is_still_declined() {
    let (kcp, _) = kcp(400, r#"{"Code":"0002","Message":"x"}"#, Duration::ZERO).await;
    let (code, _, _) = declined(kcp.register_trade(&registration()).await);
    assert_eq!(code, "0002");
}

#[tokio::test]
async fn a_registration_that_cannot_be_read_is_unknown() {
    for (status, body) in [
        (503, r#"{"Code":"0004","Message":"x"}"#),
        (200, "<html>bad gateway</html>"),
        (200, ""),
        (200, r#"{"Message":"no code"}"#),
        (200, r#"{"res_cd":"0000"}"#),
        (
            200,
            r#"{"Code":"0000","Message":"ok","traceNo":"T0000ABCDEFGHIJK"}"#,
        ),
    ] {
        let (kcp, _) = kcp(status, body, Duration::ZERO).await;
        assert_unknown(kcp.register_trade(&registration()).await);
    }
}

// ----- approval with window data --------------------------------------------------------------

#[tokio::test]
async fn the_spec_card_answer_is_a_card_approval_and_the_golden_body_is_sent() {
    let (kcp, script) = kcp(200, SPEC_CARD, Duration::ZERO).await;

    let approved = kcp.approve_window(&card_result()).await.unwrap();

    assert_eq!(approved.escrow, Some(false), "escw_yn N: a plain trade");
    match approved.approval {
        WindowApproval::Card(card) => {
            assert_eq!(card.tno, "23336986737476");
            assert_eq!(card.order_no, "2023031679884274");
            assert_eq!(card.amount, 1000);
            assert_eq!(card.app_no, "82050813");
            assert_eq!(card.issuer_code, "CCKM");
            assert_eq!(card.masked_card_number, "527289******6055");
            assert!(card.is_check_card == Some(true) && card.partial_cancel_allowed == Some(true));
            assert_eq!(card.approved_at.to_rfc3339(), "2023-03-27T02:32:14+00:00");
        }
        other => panic!("{other:?}"),
    }
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/enc/v1/payment");
    assert_eq!(seen[0].2, golden("window-approval-card"));
}

#[tokio::test]
async fn the_spec_vbank_answer_is_an_issued_virtual_account_for_the_order_asked() {
    let (kcp, script) = kcp(200, SPEC_VBANK, Duration::ZERO).await;

    let approved = kcp.approve_window(&vbank_result()).await.unwrap();

    assert_eq!(approved.escrow, Some(false), "escw_yn N: a plain trade");
    match approved.approval {
        WindowApproval::VirtualAccount(IssuedVirtualAccount {
            tno,
            order_no,
            amount,
            account,
            bank_code,
            holder,
            ..
        }) => assert_eq!(
            (
                tno.as_str(),
                order_no.as_str(),
                amount,
                account.as_str(),
                bank_code.as_str(),
                holder.as_str()
            ),
            (
                "20220609985536",
                "VBANK20220609001",
                123,
                "T0709260000806",
                "BK07",
                "한국사이버결제"
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        script.seen.lock().unwrap()[0].2,
        golden("window-approval-vbank")
    );
}

#[tokio::test]
async fn a_window_approval_for_another_amount_is_a_mismatch_naming_the_tno() {
    let card = SPEC_CARD
        .replace(r#""amount":"1000""#, r#""amount":"10000""#)
        .leak();
    let (kcp, _) = kcp(200, card, Duration::ZERO).await;
    let (tno, detail) = mismatch(kcp.approve_window(&card_result()).await);
    assert_eq!(tno, "23336986737476");
    assert!(detail.contains("amount 10000"), "{detail}");

    let (vbank, _) = super::kcp(200, SPEC_VBANK, Duration::ZERO).await;
    let (tno, _) = mismatch(
        vbank
            .approve_window(&WindowApprovalRequest {
                amount: 124,
                ..vbank_result()
            })
            .await,
    );
    assert_eq!(tno, "20220609985536");
}

#[tokio::test]
async fn a_window_approval_for_another_order_is_a_mismatch_for_every_method() {
    let (kcp, _) = kcp(200, SPEC_CARD, Duration::ZERO).await;
    let mut req = card_result();
    req.order_no = "OTHER1".into();
    mismatch(kcp.approve_window(&req).await);

    let bank = r#"{"res_cd":"0000","tno":"23336986737477","order_no":"SOMEONEELSE","bk_mny":"1000","bank_code":"BK04"}"#;
    let (bank_kcp, _) = super::kcp(200, bank, Duration::ZERO).await;
    let (tno, detail) = mismatch(
        bank_kcp
            .approve_window(&WindowApprovalRequest {
                use_pay_method: "010000000000".into(),
                ..card_result()
            })
            .await,
    );
    assert_eq!(tno, "23336986737477");
    assert!(detail.contains("order_no SOMEONEELSE"), "{detail}");
}

#[tokio::test]
async fn points_from_the_window_are_checked_on_pnt_amount() {
    let point = r#"{"res_cd":"0000","tno":"23336986737479","amount":"1000","pnt_amount":"900","pnt_app_no":"P1"}"#;
    let (kcp, _) = kcp(200, point, Duration::ZERO).await;
    let (tno, _) = mismatch(
        kcp.approve_window(&WindowApprovalRequest {
            use_pay_method: "000100000000".into(),
            ..card_result()
        })
        .await,
    );
    assert_eq!(tno, "23336986737479");
}

#[tokio::test]
async fn kcps_own_amount_check_8059_is_a_decline_nothing_was_approved() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"8059","res_msg":"결제금액 불일치"}"#,
        Duration::ZERO,
    )
    .await;
    let (code, message, reason) = declined(kcp.approve_window(&card_result()).await);
    assert_eq!(
        (code.as_str(), message.as_str(), reason),
        ("8059", "결제금액 불일치", DeclineReason::Other)
    );
}

#[tokio::test]
async fn an_unknown_use_pay_method_is_refused_before_anything_is_sent() {
    let (kcp, script) = kcp(200, SPEC_CARD, Duration::ZERO).await;
    let (code, _, reason) = declined(
        kcp.approve_window(&WindowApprovalRequest {
            use_pay_method: "110000000000".into(),
            ..card_result()
        })
        .await,
    );
    assert_eq!(
        (code.as_str(), reason),
        ("invalid_request", DeclineReason::Other)
    );
    assert!(script.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_window_success_without_tno_or_required_fields_is_unknown() {
    for (mask, body) in [
        ("100000000000", r#"{"res_cd":"0000","amount":"1000"}"#),
        (
            "001000000000",
            r#"{"res_cd":"0000","tno":"20220609985536","amount":"123"}"#,
        ),
        (
            "010000000000",
            r#"{"res_cd":"0000","tno":"23336986737477"}"#,
        ),
    ] {
        let (kcp, _) = kcp(200, body, Duration::ZERO).await;
        assert_unknown(
            kcp.approve_window(&WindowApprovalRequest {
                use_pay_method: mask.into(),
                ..card_result()
            })
            .await,
        );
    }
}

// ----- billing key from the window ------------------------------------------------------------

#[tokio::test]
async fn a_batch_key_from_the_window_posts_the_golden_body_and_returns_the_key() {
    let (kcp, script) = kcp_site("A52Q7", 200, SPEC_BATCH_KEY, Duration::ZERO).await;

    let key = kcp
        .issue_batch_key_from_window(&batch_result())
        .await
        .unwrap();

    assert_eq!(key.batch_key, "2304051168518034");
    assert_eq!(key.issuer_code, "CCDI");
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/enc/v1/payment");
    assert_eq!(seen[0].2, golden("window-batch-key"));
}

#[tokio::test]
async fn a_batch_window_success_without_a_key_is_unknown() {
    let (kcp, _) = kcp(200, r#"{"res_cd":"0000","card_cd":"CCDI"}"#, Duration::ZERO).await;
    assert_unknown(kcp.issue_batch_key_from_window(&batch_result()).await);
}

// ----- escrow ---------------------------------------------------------------------------------

#[tokio::test]
async fn escrow_delivery_posts_the_signed_golden_body_to_the_cancel_path() {
    let (kcp, script) = kcp_site(
        "T0007",
        200,
        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476"}"#,
        Duration::ZERO,
    )
    .await;

    kcp.escrow_delivery(&delivery()).await.unwrap();

    let seen = script.seen.lock().unwrap();
    assert_eq!(seen[0].0, "/gw/mod/v1/cancel");
    assert_eq!(seen[0].2, golden("escrow-delivery"));
}

#[tokio::test]
async fn an_escrow_answer_about_another_tno_is_unknown() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"0000","tno":"99999999999999"}"#,
        Duration::ZERO,
    )
    .await;
    assert_unknown(kcp.escrow_delivery(&delivery()).await);
}

#[tokio::test]
async fn an_escrow_shipping_start_kcp_already_holds_is_declined_as_already_shipped() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"8502","res_msg":"이미 배송시작이 등록된 거래입니다."}"#,
        Duration::ZERO,
    )
    .await;
    let Err(PgError::Declined { code, reason, .. }) = kcp.escrow_delivery(&delivery()).await else {
        panic!("not declined")
    };
    assert_eq!(
        (code.as_str(), reason),
        ("8502", DeclineReason::AlreadyShipped)
    );
}

// ----- every window call ----------------------------------------------------------------------

#[tokio::test]
async fn every_window_call_is_declined_on_a_kcp_refusal() {
    // Registration reads `Code`; the others `res_cd`. One body carrying both refuses all four.
    let (kcp, _) = kcp(
        200,
        r#"{"Code":"0004","Message":"실패","res_cd":"9999","res_msg":"시스템 오류"}"#,
        Duration::ZERO,
    )
    .await;
    for (call, err) in every_window_call(&kcp).await {
        assert!(
            matches!(err, Some(PgError::Declined { .. })),
            "{call}: {err:?}"
        );
    }
}

#[tokio::test]
async fn every_window_call_treats_5xx_and_unreadable_answers_as_unknown() {
    for (status, body) in [
        (502, r#"{"Code":"0004","res_cd":"9999","res_msg":"x"}"#),
        (200, "<html>bad gateway</html>"),
        (200, r#"{"note":"neither Code nor res_cd"}"#),
    ] {
        let (kcp, _) = kcp(status, body, Duration::ZERO).await;
        for (call, err) in every_window_call(&kcp).await {
            assert!(
                matches!(err, Some(PgError::Unknown(_))),
                "{call} on {status} {body}: {err:?}"
            );
        }
    }
}

#[tokio::test]
async fn every_window_call_is_unknown_when_kcp_hangs() {
    let (kcp, _) = kcp(200, SPEC_CARD, Duration::from_secs(30)).await;
    let started = std::time::Instant::now();
    for (call, err) in every_window_call(&kcp).await {
        assert!(matches!(err, Some(PgError::Unknown(_))), "{call}: {err:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn window_errors_never_carry_enc_data_or_enc_info() {
    let (kcp, _) = kcp(
        200,
        r#"{"res_cd":"8059","res_msg":"결제금액 불일치"}"#,
        Duration::ZERO,
    )
    .await;
    let mut shown = Vec::new();
    shown.push(format!("{:?}", kcp.approve_window(&card_result()).await));
    shown.push(format!(
        "{:?}",
        kcp.issue_batch_key_from_window(&card_result()).await
    ));
    let mut no_mask = card_result();
    no_mask.use_pay_method = "0".into();
    shown.push(format!("{:?}", kcp.approve_window(&no_mask).await));
    let (garbled, _) = super::kcp(200, "<html>", Duration::ZERO).await;
    shown.push(format!(
        "{:?}",
        garbled.approve_window(&card_result()).await
    ));
    for s in shown {
        assert!(!s.contains(ENC_DATA) && !s.contains(ENC_INFO), "{s}");
    }
}
