mod common;

use chrono::TimeDelta;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn an_inquiry_by_tno_reports_an_approved_card_payment() {
    let harness = spawn().await;
    let approval = harness
        .pay(&key_in(
            SITE,
            kcp_sandbox::test_cards::SAMSUNG_CHECK,
            "inq1",
            "25000",
        ))
        .await;
    let tno = approval["tno"].as_str().unwrap();

    let reply = harness.inquire_tno(tno).await;

    assert_eq!(
        reply,
        json!({
            "res_cd": "0000", "res_msg": "정상처리", "tno": tno, "order_no": "inq1",
            "pay_method": "PACA", "amount": "25000", "rem_mny": "25000", "stat_ca_cd": "STSR",
            "app_time": approval["app_time"], "app_no": approval["app_no"],
            "card_no": "555555******4444", "card_cd": "CCSS", "card_name": "삼성카드",
            "quota": "00", "card_bin_type_01": "0", "card_bin_type_02": "1",
        })
    );
}

#[tokio::test]
async fn an_inquiry_follows_partial_and_full_cancels() {
    let harness = spawn().await;
    let tno = harness.approved("inq2", "10000").await;

    harness.partial_cancel(&tno, "4000", "10000").await;
    let partial = harness.inquire_tno(&tno).await;
    harness.clock.advance(TimeDelta::minutes(1));
    harness.cancel(&tno, "STSC", json!({})).await;
    let cancelled = harness.inquire_tno(&tno).await;

    assert_eq!(partial["stat_ca_cd"], "STPC");
    assert_eq!(partial["rem_mny"], "6000");
    assert_eq!(partial["amount"], "10000");
    assert!(partial.get("canc_time").is_none());
    assert_eq!(cancelled["stat_ca_cd"], "STSC");
    assert_eq!(cancelled["rem_mny"], "0");
    assert_eq!(cancelled["canc_time"], "20260310120100");
}

#[tokio::test]
async fn an_inquiry_by_order_number_finds_the_approval_when_the_tno_is_unknown() {
    let harness = spawn().await;
    let tno = harness.approved("lostanswer1", "1000").await;

    let reply = harness.inquire_order("lostanswer1").await;

    assert_eq!(reply["res_cd"], "0000");
    assert_eq!(reply["tno"], tno.as_str());
    assert_eq!(reply["order_no"], "lostanswer1");
    assert_eq!(reply["stat_ca_cd"], "STSR");
}

#[tokio::test]
async fn an_inquiry_for_nothing_is_8201() {
    let harness = spawn().await;
    let expected = json!({"res_cd": "8201", "res_msg": "해당 거래가 존재하지 않습니다."});

    assert_eq!(harness.inquire_order("neversent").await, expected);
    assert_eq!(harness.inquire_tno("20260310123456").await, expected);
}

#[tokio::test]
async fn an_inquiry_must_be_signed_over_the_identifier_it_uses() {
    let harness = spawn().await;
    let tno = harness.approved("inq3", "1000").await;
    let merchant = merchant(SITE);

    let signed_over_tno_sent_by_order: Value = harness
        .post(
            kcp_sandbox::paths::INQUIRY,
            &json!({
                "site_cd": SITE, "kcp_cert_info": merchant.cert_info, "order_no": "inq3",
                "pay_type": "PACA", "kcp_sign_data": merchant.sign(&format!("{SITE}^{tno}^PACA")),
            }),
        )
        .await;
    let signed_by_another_site: Value = harness
        .post(
            kcp_sandbox::paths::INQUIRY,
            &json!({
                "site_cd": SITE, "kcp_cert_info": merchant.cert_info, "tno": tno,
                "pay_type": "PACA",
                "kcp_sign_data": common::merchant(OTHER_SITE).sign(&format!("{SITE}^{tno}^PACA")),
            }),
        )
        .await;
    let neither: Value = harness
        .post(
            kcp_sandbox::paths::INQUIRY,
            &json!({
                "site_cd": SITE, "kcp_cert_info": merchant.cert_info, "pay_type": "PACA",
                "kcp_sign_data": merchant.sign(&format!("{SITE}^^PACA")),
            }),
        )
        .await;

    assert_eq!(signed_over_tno_sent_by_order["res_cd"], "9512");
    assert_eq!(signed_by_another_site["res_cd"], "9512");
    assert_eq!(neither["res_cd"], "9502");
}

#[tokio::test]
async fn another_sites_transaction_is_invisible() {
    let harness = spawn().await;
    let other = key_in(
        OTHER_SITE,
        kcp_sandbox::test_cards::SHINHAN_CREDIT,
        "sharedorder",
        "1000",
    );
    let tno = harness.pay(&other).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(harness.inquire_tno(&tno).await["res_cd"], "8201");
    assert_eq!(harness.inquire_order("sharedorder").await["res_cd"], "8201");
}
