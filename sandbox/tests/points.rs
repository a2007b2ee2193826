mod common;

use chrono::TimeDelta;
use common::*;
use kcp_sandbox::test_points::{BENEPIA_01, BENEPIA_02};
use kcp_sandbox::TransactionState;
use serde_json::{json, Value};

fn with(mut body: Value, extra: Value) -> Value {
    merge(&mut body, extra);
    body
}

fn is_digits(value: &Value, len: usize) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test]
async fn a_balance_inquiry_answers_the_points_left() {
    let harness = spawn().await;

    let rich = harness.pay(&point_balance(&BENEPIA_01)).await;
    let poor = harness.pay(&point_balance(&BENEPIA_02)).await;

    assert_eq!(
        rich,
        json!({"res_cd": "0000", "res_msg": "정상처리", "rsv_pnt": "100000"})
    );
    assert_eq!(poor["rsv_pnt"], "5000");
    assert!(harness.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn balance_inquiries_check_the_account_and_the_fixed_fields() {
    let harness = spawn().await;
    let base = || point_balance(&BENEPIA_01);
    let cases = [
        (json!({"pt_pwd": "wrong"}), "8402"),
        (json!({"pt_idno": "nobody"}), "8401"),
        (json!({"pt_memcorp_cd": "B002"}), "8401"),
        // `String 4` (seed 003 §2.2).
        (json!({"pt_memcorp_cd": "B0001"}), "9503"),
        (json!({"amount": "1000"}), "8105"),
        (json!({"currency": "840"}), "8105"),
        (json!({"pt_issue": "SCSK"}), "9503"),
        (json!({"pt_txtype": "97000001"}), "8103"),
        (json!({"pt_memcorp_cd": ""}), "9502"),
        (json!({"pt_idno": "a".repeat(17)}), "9503"),
        // Lengths count bytes: six Korean syllables are 18.
        (json!({"pt_pwd": "가".repeat(6)}), "9503"),
        (json!({"ordr_idxx": ""}), "9502"),
    ];
    for (extra, code) in cases {
        let reply = harness.pay(&with(base(), extra.clone())).await;
        assert_eq!(reply["res_cd"], code, "{extra}: {reply}");
        assert_eq!(reply.as_object().unwrap().len(), 2, "{reply}");
    }
}

#[tokio::test]
async fn a_point_payment_takes_the_points_and_answers_the_point_approval() {
    let harness = spawn().await;

    let reply = harness.pay(&point_pay(&BENEPIA_01, "pt1", "1004")).await;

    let mut names: Vec<&str> = reply
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "pnt_amount",
            "pnt_app_no",
            "pnt_app_time",
            "res_cd",
            "res_msg",
            "rsv_pnt",
            "tno"
        ]
    );
    assert_eq!(reply["res_cd"], "0000");
    assert_eq!(reply["res_msg"], "정상처리");
    assert!(is_digits(&reply["tno"], 14), "{reply}");
    assert!(is_digits(&reply["pnt_app_no"], 10), "{reply}");
    assert_eq!(reply["pnt_amount"], "1004");
    assert_eq!(reply["pnt_app_time"], "20260310120000");
    assert_eq!(reply["rsv_pnt"], "98996");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(98_996));
    assert_eq!(harness.sandbox.point_balance(BENEPIA_02.id), Some(5_000));
    assert_eq!(harness.sandbox.point_balance("nobody"), None);

    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].tno, reply["tno"].as_str().unwrap());
    assert_eq!(ledger[0].pay_method, "PAPT");
    assert_eq!(ledger[0].order_no, "pt1");
    assert_eq!(ledger[0].amount, 1004);
    assert_eq!(ledger[0].app_no, reply["pnt_app_no"].as_str().unwrap());
    assert!(ledger[0].card.is_none());
    let point = ledger[0].point.as_ref().unwrap();
    assert_eq!(point.pt_issue, "SCWB");
    assert_eq!(point.account_id, BENEPIA_01.id);
}

#[tokio::test]
async fn point_payments_are_refused_without_enough_points_or_the_right_fields() {
    let harness = spawn().await;
    let base = || point_pay(&BENEPIA_02, "ptrefused", "3000");
    let cases = [
        (json!({"amount": "6000", "pt_mny": "6000"}), "8403"),
        (json!({"pt_mny": "2999"}), "8059"),
        (json!({"amount": "0", "pt_mny": "0"}), "8105"),
        (json!({"pt_paycode": "01"}), "9503"),
        (json!({"pt_pwd": "pass01"}), "8402"),
        (json!({"pt_idno": "benepia99"}), "8401"),
        (json!({"good_name": "운동화; 양말"}), "9504"),
        (json!({"pt_mny": ""}), "9502"),
    ];
    for (extra, code) in cases {
        let reply = harness.pay(&with(base(), extra.clone())).await;
        assert_eq!(reply["res_cd"], code, "{extra}: {reply}");
        assert_eq!(reply.as_object().unwrap().len(), 2, "{reply}");
    }
    assert!(harness.sandbox.ledger().is_empty());
    assert_eq!(harness.sandbox.point_balance(BENEPIA_02.id), Some(5_000));

    // Exactly the balance is enough; then nothing is left.
    let all = harness.pay(&point_pay(&BENEPIA_02, "ptall", "5000")).await;
    let more = harness.pay(&point_pay(&BENEPIA_02, "ptmore", "1")).await;
    assert_eq!(all["rsv_pnt"], "0", "{all}");
    assert_eq!(more["res_cd"], "8403");
}

#[tokio::test]
async fn a_point_order_is_never_charged_twice() {
    let harness = spawn().await;
    let first = harness.pay(&point_pay(&BENEPIA_01, "ptdup", "1000")).await;
    let second = harness.pay(&point_pay(&BENEPIA_01, "ptdup", "1000")).await;
    assert_eq!(first["res_cd"], "0000");
    assert_eq!(second["res_cd"], "9520");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(99_000));
}

#[tokio::test]
async fn a_full_cancel_gives_the_points_back_and_a_partial_one_is_refused() {
    let harness = spawn().await;
    let paid = harness.pay(&point_pay(&BENEPIA_01, "ptc", "10000")).await;
    let tno = paid["tno"].as_str().unwrap();
    harness.clock.advance(TimeDelta::minutes(3));

    let partial = harness.partial_cancel(tno, "3000", "10000").await;
    let full = harness
        .cancel(tno, "STSC", json!({"mod_desc": "고객변심"}))
        .await;
    let again = harness.cancel(tno, "STSC", json!({})).await;

    assert_eq!(partial["res_cd"], "8404", "{partial}");
    assert_eq!(
        full,
        json!({"res_cd": "0000", "res_msg": "정상처리", "tno": tno, "canc_time": "20260310120300"})
    );
    assert_eq!(again["res_cd"], "8133");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(100_000));
    let entry = &harness.sandbox.ledger()[0];
    assert_eq!(entry.state, TransactionState::Cancelled);
    assert_eq!(entry.cancels.len(), 1);
}

#[tokio::test]
async fn a_point_payment_is_inquired_with_pay_type_papt_and_stat_pt_cd() {
    let harness = spawn().await;
    let paid = harness.pay(&point_pay(&BENEPIA_01, "ptinq", "2000")).await;
    let tno = paid["tno"].as_str().unwrap();

    let approved = harness.inquire_as("PAPT", tno).await;
    harness.clock.advance(TimeDelta::minutes(1));
    harness.cancel(tno, "STSC", json!({})).await;
    let cancelled = harness.inquire_order_as("PAPT", "ptinq").await;
    let as_card = harness.inquire_as("PACA", tno).await;
    let card_order_as_point = {
        harness.approved("card1", "1000").await;
        harness.inquire_order_as("PAPT", "card1").await
    };

    assert_eq!(
        approved,
        json!({
            "res_cd": "0000", "res_msg": "정상처리", "tno": tno, "order_no": "ptinq",
            "pay_method": "PAPT", "amount": "2000", "rem_mny": "2000", "stat_pt_cd": "STSR",
            "app_time": paid["pnt_app_time"], "app_no": paid["pnt_app_no"],
        })
    );
    assert_eq!(cancelled["stat_pt_cd"], "STSC");
    assert_eq!(cancelled["rem_mny"], "0");
    assert_eq!(cancelled["canc_time"], "20260310120100");
    assert_eq!(as_card["res_cd"], "8201");
    assert_eq!(card_order_as_point["res_cd"], "8201");
}

/// Assumption (docs/kcp.md §8.3): `STRA` on a live point payment cancels it and approves
/// `mod_mny`, what is left of it, under a new tno, in one call.
#[tokio::test]
async fn a_re_approval_cancels_a_live_point_payment_and_approves_the_rest_under_a_new_tno() {
    let harness = spawn().await;
    let paid = harness.pay(&point_pay(&BENEPIA_01, "ptra", "10000")).await;
    let tno = paid["tno"].as_str().unwrap().to_owned();
    harness.clock.advance(TimeDelta::minutes(2));

    let reply = harness.reapprove(&tno, "7000", "ptra2").await;

    let new_tno = reply["tno"].as_str().unwrap().to_owned();
    let mut names: Vec<&str> = reply
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    // Seed 003's re-approval answer: no pnt_app_time, no rsv_pnt.
    assert_eq!(
        names,
        ["pnt_amount", "pnt_app_no", "res_cd", "res_msg", "tno"]
    );
    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert!(is_digits(&reply["tno"], 14));
    assert_ne!(new_tno, tno);
    assert_eq!(reply["pnt_amount"], "7000");
    assert!(is_digits(&reply["pnt_app_no"], 10));
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(93_000));

    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].reapproved_by.as_deref(), Some(new_tno.as_str()));
    assert_eq!(ledger[0].state, TransactionState::Cancelled);
    assert_eq!(ledger[0].balance, 0);
    assert_eq!(ledger[0].cancels.len(), 1);
    assert_eq!(ledger[0].cancels[0].mod_type, "STRA");
    assert_eq!(ledger[0].cancels[0].amount, 10_000);
    assert_eq!(ledger[1].tno, new_tno);
    assert_eq!(ledger[1].order_no, "ptra2");
    assert_eq!(ledger[1].pay_method, "PAPT");
    assert_eq!(ledger[1].app_time, "20260310120200");
    assert_eq!(ledger[1].amount, 7000);
    assert_eq!(ledger[1].reapproval_of.as_deref(), Some(tno.as_str()));

    // The original is cancelled: neither re-approved again nor cancelled.
    let twice = harness.reapprove(&tno, "5000", "ptra3").await;
    assert_eq!(twice["res_cd"], "8133", "{twice}");
    let cancel_original = harness.cancel(&tno, "STSC", json!({})).await;
    assert_eq!(cancel_original["res_cd"], "8133", "{cancel_original}");
    let original = harness.inquire_as("PAPT", &tno).await;
    assert_eq!(original["stat_pt_cd"], "STSC");
    let inquiry = harness.inquire_order_as("PAPT", "ptra2").await;
    assert_eq!(inquiry["tno"], new_tno.as_str());
    assert_eq!(inquiry["stat_pt_cd"], "STSR");

    // The re-approval is a payment of its own: re-approved in part again, then cancelled whole.
    let again = harness.reapprove(&new_tno, "5000", "ptra4").await;
    assert_eq!(again["res_cd"], "0000", "{again}");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(95_000));
    let last = again["tno"].as_str().unwrap();
    let cancelled = harness.cancel(last, "STSC", json!({})).await;
    assert_eq!(cancelled["res_cd"], "0000", "{cancelled}");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(100_000));
}

#[tokio::test]
async fn a_re_approval_without_an_order_number_keeps_the_original_one() {
    let harness = spawn().await;
    let paid = harness.pay(&point_pay(&BENEPIA_01, "ptsame", "4000")).await;
    let tno = paid["tno"].as_str().unwrap();

    let reply = harness
        .cancel(tno, "STRA", json!({"mod_mny": "1500"}))
        .await;

    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert_eq!(harness.sandbox.ledger()[1].order_no, "ptsame");
    let inquiry = harness.inquire_order_as("PAPT", "ptsame").await;
    assert_eq!(inquiry["tno"], reply["tno"]);
    assert_eq!(inquiry["amount"], "1500");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(98_500));
}

/// A re-approval leaves part of a live point payment: a cancelled one (the other reading of seed
/// 003, STSC first) is refused as any cancel of a cancelled trade is, and one for nothing or for
/// the whole amount or more is refused (a full cancel must be STSC, seed 003 §2.4). A refused one
/// changes nothing, even when it got as far as the new order number.
#[tokio::test]
async fn re_approval_is_refused_unless_it_leaves_part_of_a_live_point_payment() {
    let harness = spawn().await;
    let card_tno = harness.approved("cardra", "1000").await;
    let live = harness.pay(&point_pay(&BENEPIA_02, "ptlive", "1000")).await;
    assert_eq!(live["res_cd"], "0000", "{live}");
    let big = harness.pay(&point_pay(&BENEPIA_02, "ptbig", "3000")).await;
    let big_tno = big["tno"].as_str().unwrap();
    let gone = harness.pay(&point_pay(&BENEPIA_02, "ptgone", "500")).await;
    let gone_tno = gone["tno"].as_str().unwrap();
    harness.cancel(gone_tno, "STSC", json!({})).await;
    // benepia02 holds 1,000 of its 5,000.
    assert_eq!(harness.sandbox.point_balance(BENEPIA_02.id), Some(1000));

    let on_card = harness.reapprove(&card_tno, "500", "ra1").await;
    let on_cancelled = harness.reapprove(gone_tno, "100", "ra2").await;
    let whole = harness.reapprove(big_tno, "3000", "ra3").await;
    let too_much = harness.reapprove(big_tno, "3001", "ra4").await;
    let zero = harness.reapprove(big_tno, "0", "ra5").await;
    let taken_order = harness.reapprove(big_tno, "100", "ptlive").await;
    let unknown = harness.reapprove("20260310999999", "100", "ra7").await;

    assert_eq!(on_card["res_cd"], "8405", "{on_card}");
    assert_eq!(on_cancelled["res_cd"], "8133", "{on_cancelled}");
    assert_eq!(whole["res_cd"], "8105", "{whole}");
    assert_eq!(too_much["res_cd"], "8105", "{too_much}");
    assert_eq!(zero["res_cd"], "8105", "{zero}");
    assert_eq!(taken_order["res_cd"], "9520", "{taken_order}");
    assert_eq!(unknown["res_cd"], "8201", "{unknown}");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_02.id), Some(1000));
    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 4, "nothing re-approved");
    let big_entry = ledger.iter().find(|e| e.tno == big_tno).unwrap();
    assert_eq!(big_entry.state, TransactionState::Approved);
    assert_eq!(big_entry.balance, 3000);
    assert!(big_entry.cancels.is_empty());

    let fits = harness.reapprove(big_tno, "500", "ra8").await;
    assert_eq!(fits["res_cd"], "0000", "{fits}");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_02.id), Some(3500));
}

#[tokio::test]
async fn a_re_approval_must_be_signed_over_stra() {
    let harness = spawn().await;
    let paid = harness.pay(&point_pay(&BENEPIA_01, "ptsig", "1000")).await;
    let tno = paid["tno"].as_str().unwrap();
    let merchant = merchant(SITE);

    let reply = harness
        .post(
            kcp_sandbox::paths::CANCEL,
            &json!({
                "site_cd": SITE,
                "kcp_cert_info": merchant.cert_info,
                "kcp_sign_data": merchant.sign(&format!("{SITE}^{tno}^STSC")),
                "tno": tno,
                "mod_type": "STRA",
                "mod_mny": "400",
            }),
        )
        .await;

    assert_eq!(reply["res_cd"], "9512", "{reply}");
    assert_eq!(harness.sandbox.ledger().len(), 1);
    assert_eq!(
        harness.sandbox.ledger()[0].state,
        TransactionState::Approved
    );
}

#[tokio::test]
async fn the_control_api_lists_balances_without_passwords() {
    let harness = spawn().await;
    harness.pay(&point_pay(&BENEPIA_02, "ptctl", "1200")).await;

    let listed = harness.get_json("/_sandbox/points").await;

    assert_eq!(
        listed,
        json!([
            {"pt_idno": "benepia01", "pt_memcorp_cd": "B001", "balance": 100000},
            {"pt_idno": "benepia02", "pt_memcorp_cd": "B001", "balance": 3800},
        ])
    );
    assert!(!listed.to_string().contains("pass0"));
}
