//! spec/kcp.md §5 for amounts openport cannot read: a success answer that names, in any of its
//! amount fields, a value that is present and not blank but does not read as an amount (`"1,000"`,
//! `"abc"`, `"-5"`, an overflow) does not confirm what KCP charged. Every approval path refuses it
//! as it refuses another amount (`Mismatch` on its `tno`, which the gateway net-cancels), naming
//! the field and never echoing the value; blank or absent fields stay ignored.

use super::*;
use crate::pg::kcp::wire::tests::UNREADABLE_AMOUNTS;
use crate::pg::kcp::wire::vbank::tests::issue_request;
use crate::pg::{PgCheckout, PgVirtualAccounts, WindowApproval, WindowApprovalRequest};

/// `body` with `"field":"from"` replaced by `"field":"to"` (which must be there).
fn with_field(body: &str, field: &str, from: &str, to: &str) -> &'static str {
    let changed = body.replace(
        &format!(r#""{field}":"{from}""#),
        &format!(r#""{field}":"{to}""#),
    );
    assert_ne!(changed, body, "the answer names {field}");
    changed.leak()
}

/// The `Mismatch` of `result`, on `tno`, whose detail names `field` unreadable and does not
/// quote `bad`; its `other_order`.
fn unreadable_mismatch<T: std::fmt::Debug>(
    result: Result<T, PgError>,
    tno: &str,
    field: &str,
    bad: &str,
) -> Option<String> {
    match result {
        Err(PgError::Mismatch {
            tno: got,
            detail,
            other_order,
        }) => {
            assert_eq!(got, tno, "{field} {bad}");
            assert!(
                detail.contains(&format!("{field} is not a readable amount")),
                "{field} {bad}: {detail}"
            );
            assert!(!detail.contains(bad), "the value is not echoed: {detail}");
            other_order
        }
        other => panic!("{field} {bad}: expected Mismatch, got {other:?}"),
    }
}

/// A window approval of 1,000 won for the order `TEST1234567890` with `use_pay_method`.
fn window(use_pay_method: &str) -> WindowApprovalRequest {
    WindowApprovalRequest {
        order_no: "TEST1234567890".into(),
        amount: 1000,
        tran_cd: "00100000".into(),
        enc_data: "ZW5jX2RhdGE".into(),
        enc_info: "ZW5jX2luZm8".into(),
        use_pay_method: use_pay_method.into(),
    }
}

#[tokio::test]
async fn a_card_approval_naming_an_unreadable_card_mny_is_a_mismatch_on_every_card_path() {
    for bad in UNREADABLE_AMOUNTS {
        let (key_in_kcp, _) = kcp(
            200,
            with_field(APPROVED, "card_mny", "1000", bad),
            Duration::ZERO,
        )
        .await;
        let other = unreadable_mismatch(
            key_in_kcp.approve_key_in(&KeyInRequest::sample()).await,
            "23336986737476",
            "card_mny",
            bad,
        );
        assert_eq!(other, None, "the order's own trade, to net-cancel");

        let (batch_kcp, _) =
            kcp_billing(200, with_field(BATCH_APPROVED, "card_mny", "1100", bad)).await;
        unreadable_mismatch(
            batch_kcp.pay_with_batch_key(&batch_payment()).await,
            "23336986737476",
            "card_mny",
            bad,
        );

        let (window_kcp, _) = kcp(
            200,
            with_field(APPROVED, "card_mny", "1000", bad),
            Duration::ZERO,
        )
        .await;
        unreadable_mismatch(
            approve_card_window(&window_kcp).await,
            "23336986737476",
            "card_mny",
            bad,
        );
    }
}

/// The approval's own amount unreadable is the same refusal, not an unknown outcome: KCP approved
/// under its `tno`, and the answer does not say for how much.
#[tokio::test]
async fn a_card_approval_whose_own_amount_cannot_be_read_is_a_mismatch_too() {
    let without_card_mny = APPROVED.replace(r#""card_mny":"1000","#, "");
    for bad in UNREADABLE_AMOUNTS {
        for body in [
            with_field(APPROVED, "amount", "1000", bad),
            with_field(&without_card_mny, "amount", "1000", bad),
        ] {
            let (kcp, _) = kcp(200, body, Duration::ZERO).await;
            unreadable_mismatch(
                kcp.approve_key_in(&KeyInRequest::sample()).await,
                "23336986737476",
                "amount",
                bad,
            );
        }
    }
}

#[tokio::test]
async fn a_window_answer_naming_an_unreadable_amount_is_a_mismatch_for_every_method() {
    let tno = "23336986737477";
    let answers = |bad: &str| {
        [
            // Bank transfer: its own bk_mny, or the trade's amount beside a readable bk_mny.
            (
                "010000000000",
                "bk_mny",
                format!(
                    r#"{{"res_cd":"0000","tno":"{tno}","order_no":"TEST1234567890","amount":"1000","bk_mny":"{bad}"}}"#
                ),
            ),
            (
                "010000000000",
                "amount",
                format!(
                    r#"{{"res_cd":"0000","tno":"{tno}","order_no":"TEST1234567890","amount":"{bad}","bk_mny":"1000"}}"#
                ),
            ),
            // Points: pnt_amount, or amount beside it.
            (
                "000100000000",
                "pnt_amount",
                format!(
                    r#"{{"res_cd":"0000","tno":"{tno}","amount":"1000","pnt_amount":"{bad}","pnt_app_no":"P1"}}"#
                ),
            ),
            (
                "000100000000",
                "amount",
                format!(
                    r#"{{"res_cd":"0000","tno":"{tno}","amount":"{bad}","pnt_amount":"1000","pnt_app_no":"P1"}}"#
                ),
            ),
            // Phone and gift certificate: amount alone; a phone answer with a stray bk_mny.
            (
                "000010000000",
                "amount",
                format!(r#"{{"res_cd":"0000","tno":"{tno}","amount":"{bad}","commid":"SKT"}}"#),
            ),
            (
                "000010000000",
                "bk_mny",
                format!(
                    r#"{{"res_cd":"0000","tno":"{tno}","amount":"1000","bk_mny":"{bad}","commid":"SKT"}}"#
                ),
            ),
            (
                "000000001000",
                "amount",
                format!(r#"{{"res_cd":"0000","tno":"{tno}","amount":"{bad}","tk_app_no":"G1"}}"#),
            ),
            // A virtual account from the window.
            (
                "001000000000",
                "amount",
                format!(
                    r#"{{"res_cd":"0000","tno":"{tno}","amount":"{bad}","account":"T0709260000806","va_date":"20260317235959","bankcode":"BK07"}}"#
                ),
            ),
        ]
    };
    for bad in UNREADABLE_AMOUNTS {
        for (method, field, body) in answers(bad) {
            let (kcp, _) = kcp(200, body.leak(), Duration::ZERO).await;
            unreadable_mismatch(kcp.approve_window(&window(method)).await, tno, field, bad);
        }
    }
}

#[tokio::test]
async fn a_virtual_account_issued_for_an_unreadable_amount_is_a_mismatch_to_revoke() {
    for bad in UNREADABLE_AMOUNTS {
        let body = format!(
            r#"{{"res_cd":"0000","tno":"20260310123456","order_no":"OP123456789012","amount":"{bad}",
            "bankcode":"BK07","account":"T0709260000806","va_date":"20260317235959"}}"#
        );
        let (kcp, _) = kcp(200, body.leak(), Duration::ZERO).await;
        unreadable_mismatch(
            kcp.issue_vbank(&issue_request()).await,
            "20260310123456",
            "amount",
            bad,
        );
    }
}

#[tokio::test]
async fn benepia_point_answers_with_an_unreadable_pnt_amount_are_a_mismatch() {
    for bad in UNREADABLE_AMOUNTS {
        let (pay, _) = kcp(
            200,
            with_field(POINTS_APPROVED, "pnt_amount", "1004", bad),
            Duration::ZERO,
        )
        .await;
        unreadable_mismatch(
            pay.pay_with_points(&point_payment()).await,
            "23336986737999",
            "pnt_amount",
            bad,
        );
        let (reapprove, _) = kcp(
            200,
            with_field(POINTS_REAPPROVED, "pnt_amount", "600", bad),
            Duration::ZERO,
        )
        .await;
        unreadable_mismatch(
            reapprove
                .reapprove_points("23336986737476", 600, "TEST1234567891", "테스트 상품")
                .await,
            "23336986738000",
            "pnt_amount",
            bad,
        );
    }
}

/// An answer naming another order is that order's trade whatever its amounts say: the mismatch
/// names the other order, so the gateway does not cancel it on this call's behalf.
#[tokio::test]
async fn an_unreadable_amount_in_an_answer_about_another_order_names_that_order() {
    let body = with_field(APPROVED, "card_mny", "1000", "1,000")
        .replace("TEST1234567890", "SOMEONEELSE")
        .leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;
    let other = unreadable_mismatch(
        kcp.approve_key_in(&KeyInRequest::sample()).await,
        "23336986737476",
        "card_mny",
        "1,000",
    );
    assert_eq!(other.as_deref(), Some("SOMEONEELSE"));
}

/// Without a `tno` there is no trade to cancel: the answer stays unusable, an unknown outcome.
#[tokio::test]
async fn an_unreadable_amount_without_a_tno_is_an_unknown_outcome() {
    let body = with_field(APPROVED, "card_mny", "1000", "1,000")
        .replace(r#""tno":"23336986737476","#, "")
        .leak();
    let (kcp, _) = kcp(200, body, Duration::ZERO).await;
    assert_unknown(kcp.approve_key_in(&KeyInRequest::sample()).await);
}

/// Blank amount fields name nothing, as before: the answer is approved on the ones it fills in.
#[tokio::test]
async fn blank_amount_fields_are_ignored_and_the_approval_stands() {
    for blank in ["", "  "] {
        let (card, _) = kcp(
            200,
            with_field(APPROVED, "card_mny", "1000", blank),
            Duration::ZERO,
        )
        .await;
        assert_eq!(
            card.approve_key_in(&KeyInRequest::sample())
                .await
                .unwrap()
                .amount,
            1000
        );
        assert_eq!(approve_card_window(&card).await.unwrap().amount, 1000);

        let bank = format!(
            r#"{{"res_cd":"0000","tno":"23336986737477","order_no":"TEST1234567890","amount":"1000","bk_mny":"{blank}","pnt_amount":"{blank}"}}"#
        );
        let (bank_kcp, _) = kcp(200, bank.leak(), Duration::ZERO).await;
        match bank_kcp.approve_window(&window("010000000000")).await {
            Ok(approved) => assert!(
                matches!(approved.approval, WindowApproval::Bank { amount: 1000, .. }),
                "{:?}",
                approved.approval
            ),
            Err(e) => panic!("blank bk_mny {blank:?}: {e:?}"),
        }
    }
}
