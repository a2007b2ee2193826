//! [`PgVirtualAccounts`] over HTTP against a throw-away local server: what is sent where, and the
//! error semantics of issuance, revocation and inquiry (docs/kcp.md §10).

use super::*;
use crate::pg::kcp::wire::vbank::tests::issue_request;
use crate::pg::{PgVirtualAccounts, VbankState};

/// The window's virtual-account answer (spec/kcp.md §2.4) for [`issue_request`]: `depositor` is
/// the account's holder as KCP names it, `va_name` the buyer the request named as who pays in
/// (입금자명, docs/kcp.md §10), not a holder.
const ISSUED: &str = r#"{"res_cd":"0000","res_msg":"정상처리","tno":"20260310123456","order_no":"OP123456789012",
 "amount":"7000","pay_method":"PAVC","bankcode":"BK07","bankname":"수협","account":"T0709260000806",
 "depositor":"한국사이버결제","va_name":"홍길동","va_date":"20260317235959","app_time":"20260310120000","escw_yn":"N"}"#;

/// The account's holder is KCP's `depositor`; the answer's `va_name` repeats the buyer (the
/// request's expected depositor) and is never taken for the holder.
#[tokio::test]
async fn an_issuance_posts_the_golden_body_to_the_hub_and_reads_the_account() {
    let (kcp, script) = kcp(200, ISSUED, Duration::ZERO).await;

    let account = kcp.issue_vbank(&issue_request()).await.unwrap();

    assert_eq!(
        (
            account.tno.as_str(),
            account.account.as_str(),
            account.bank_code.as_str(),
            account.bank_name.as_str(),
            account.holder.as_str(),
            account.amount
        ),
        (
            "20260310123456",
            "T0709260000806",
            "BK07",
            "수협",
            "한국사이버결제",
            7000
        )
    );
    assert_eq!(account.due, issue_request().due);
    let seen = script.seen.lock().unwrap();
    let (path, _, body) = &seen[0];
    assert_eq!(path, "/gw/hub/v1/payment");
    assert_eq!(body, &golden("vbank-issue"));
}

#[tokio::test]
async fn an_issuance_without_an_account_or_deadline_is_an_unknown_outcome() {
    for answer in [
        r#"{"res_cd":"0000","tno":"20260310123456","amount":"7000","va_date":"20260317235959"}"#,
        r#"{"res_cd":"0000","tno":"20260310123456","amount":"7000","account":"T0709260000806"}"#,
        r#"{"res_cd":"0000","amount":"7000","account":"T0709260000806","va_date":"20260317235959"}"#,
    ] {
        let (kcp, _) = kcp(200, answer, Duration::ZERO).await;
        assert_unknown(kcp.issue_vbank(&issue_request()).await);
    }
}

#[tokio::test]
async fn a_timeout_a_5xx_or_garbage_is_unknown_and_a_refusal_is_declined() {
    let (slow, _) = kcp(200, ISSUED, Duration::from_millis(800)).await;
    assert_unknown(slow.issue_vbank(&issue_request()).await);
    let (down, _) = kcp(503, "<html>busy</html>", Duration::ZERO).await;
    assert_unknown(down.issue_vbank(&issue_request()).await);
    let (odd, _) = kcp(200, "not json", Duration::ZERO).await;
    assert_unknown(odd.issue_vbank(&issue_request()).await);
    let (refusing, _) = kcp(
        200,
        r#"{"res_cd":"8504","res_msg":"가상계좌를 발급할 수 없는 은행코드입니다"}"#,
        Duration::ZERO,
    )
    .await;
    match refusing.issue_vbank(&issue_request()).await {
        Err(PgError::Declined { code, message, .. }) => {
            assert_eq!(code, "8504");
            assert!(message.contains("은행코드"));
        }
        other => panic!("expected Declined, got {other:?}"),
    }
}

#[tokio::test]
async fn an_account_for_another_amount_is_a_mismatch_to_revoke() {
    let body = ISSUED
        .replace(r#""amount":"7000""#, r#""amount":"700""#)
        .leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;
    match kcp.issue_vbank(&issue_request()).await {
        Err(PgError::Mismatch { tno, detail, .. }) => {
            assert_eq!(tno, "20260310123456");
            assert!(detail.contains("amount 700"), "{detail}");
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

/// Revokes the account of tno `23336986737476` (an escrow one when `escrow`) at a KCP that accepts
/// it; the body KCP received.
async fn revocation_sent(escrow: bool) -> Value {
    let (kcp, script) = kcp(
        200,
        r#"{"res_cd":"0000","res_msg":"정상처리","tno":"23336986737476","canc_time":"20260311090000"}"#,
        Duration::ZERO,
    )
    .await;
    let done = kcp
        .revoke_vbank("23336986737476", escrow, "가맹점 DB 처리 실패(자동취소)")
        .await
        .unwrap();
    assert_eq!(done.remaining, 0);
    let seen = script.seen.lock().unwrap();
    let (path, _, body) = &seen[0];
    assert_eq!(path, "/gw/mod/v1/cancel");
    body.clone()
}

#[tokio::test]
async fn a_revocation_is_exactly_the_signed_full_cancel_of_the_accounts_tno() {
    assert_eq!(revocation_sent(false).await, golden("cancel-full"));
}

#[tokio::test]
async fn an_escrow_accounts_revocation_is_the_signed_ste5_of_its_tno() {
    assert_eq!(
        revocation_sent(true).await,
        golden("cancel-escrow-close-vbank")
    );
}

#[tokio::test]
async fn an_inquiry_by_order_number_finds_the_account_or_nothing() {
    let open = r#"{"res_cd":"0000","tno":"20260310123456","order_no":"OP123456789012","pay_method":"PAVC",
        "amount":"7000","stat_va_cd":"STIS","account":"T0709260000806","va_date":"20260317235959"}"#;
    let (kcp, script) = kcp(200, open, Duration::ZERO).await;
    let trade = TradeRef::OrderNo("OP123456789012".into());
    match kcp.inquire_vbank(&trade).await.unwrap() {
        VbankState::Open {
            tno,
            paid: false,
            account: Some(account),
            ..
        } => assert_eq!(
            (tno.as_str(), account.account.as_str()),
            ("20260310123456", "T0709260000806")
        ),
        other => panic!("expected an open account, got {other:?}"),
    }
    assert_eq!(
        script.seen.lock().unwrap()[0].2,
        golden("vbank-inquiry-by-order-no")
    );

    let (none, _) =
        kcp_answering(r#"{"res_cd":"8201","res_msg":"해당 거래가 존재하지 않습니다."}"#).await;
    assert_eq!(
        none.inquire_vbank(&trade).await.unwrap(),
        VbankState::NotFound
    );
    let other = open.replace("OP123456789012", "OP999999999999").leak();
    let (elsewhere, _) = kcp_answering(other).await;
    assert_unknown(elsewhere.inquire_vbank(&trade).await);
}

async fn kcp_answering(body: &'static str) -> (KcpConnector, Script) {
    kcp(200, body, Duration::ZERO).await
}
