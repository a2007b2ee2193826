mod common;

use chrono::TimeDelta;
use common::*;
use kcp_sandbox::TransactionState;
use serde_json::{json, Value};

#[tokio::test]
async fn a_full_cancel_answers_the_cancel_time_and_empties_the_balance() {
    let harness = spawn().await;
    let tno = harness.approved("full1", "1000").await;
    harness.clock.advance(TimeDelta::minutes(5));

    let reply = harness.cancel(&tno, "STSC", json!({})).await;

    assert_eq!(
        reply,
        json!({"res_cd": "0000", "res_msg": "정상처리", "tno": tno, "canc_time": "20260310120500"})
    );
    let entry = &harness.sandbox.ledger()[0];
    assert_eq!(entry.state, TransactionState::Cancelled);
    assert_eq!(entry.balance, 0);
    assert_eq!(entry.cancels.len(), 1);
    assert_eq!(entry.cancels[0].amount, 1000);
}

#[tokio::test]
async fn cancelling_twice_is_8133() {
    let harness = spawn().await;
    let tno = harness.approved("twice1", "1000").await;
    harness.cancel(&tno, "STSC", json!({})).await;

    let again = harness.cancel(&tno, "STSC", json!({})).await;
    let partial = harness.partial_cancel(&tno, "100", "0").await;

    assert_eq!(again["res_cd"], "8133");
    assert_eq!(partial["res_cd"], "8133");
    assert_eq!(harness.sandbox.ledger()[0].cancels.len(), 1);
}

#[tokio::test]
async fn partial_cancels_count_down_to_zero_and_then_the_payment_is_cancelled() {
    let harness = spawn().await;
    let tno = harness.approved("partial1", "10000").await;

    let first = harness.partial_cancel(&tno, "3000", "10000").await;
    let second = harness.partial_cancel(&tno, "2000", "7000").await;
    let last = harness.partial_cancel(&tno, "5000", "5000").await;

    assert_eq!(first["res_cd"], "0000", "{first}");
    assert_eq!(first["mod_mny"], "3000");
    assert_eq!(first["rem_mny"], "7000");
    assert_eq!(first["card_mod_mny"], "3000");
    assert_eq!(first["mod_pacn_seq_no"], "1");
    assert_eq!(first["tno"], tno.as_str());
    assert!(first["canc_time"].is_string());
    assert_eq!(second["rem_mny"], "5000");
    assert_eq!(second["mod_pacn_seq_no"], "2");
    assert_eq!(last["res_cd"], "0000", "{last}");
    assert_eq!(last["rem_mny"], "0");
    let entry = &harness.sandbox.ledger()[0];
    assert_eq!(entry.state, TransactionState::Cancelled);
    assert_eq!(entry.balance, 0);
    assert_eq!(entry.cancels.len(), 3);
    assert_eq!(
        harness.partial_cancel(&tno, "1", "0").await["res_cd"],
        "8133"
    );
}

#[tokio::test]
async fn a_full_cancel_after_a_partial_takes_the_rest() {
    let harness = spawn().await;
    let tno = harness.approved("rest1", "10000").await;
    harness.partial_cancel(&tno, "4000", "10000").await;

    let reply = harness.cancel(&tno, "STSC", json!({})).await;

    assert_eq!(reply["res_cd"], "0000");
    let entry = &harness.sandbox.ledger()[0];
    assert_eq!(entry.cancels[1].amount, 6000);
    assert_eq!(entry.state, TransactionState::Cancelled);
}

#[tokio::test]
async fn a_partial_cancel_must_state_the_balance_before_it_and_stay_within_it() {
    let harness = spawn().await;
    let tno = harness.approved("bal1", "10000").await;
    harness.partial_cancel(&tno, "4000", "10000").await;

    let stale_balance = harness.partial_cancel(&tno, "1000", "10000").await;
    let too_much = harness.partial_cancel(&tno, "6001", "6000").await;
    let zero = harness.partial_cancel(&tno, "0", "6000").await;
    let missing = harness
        .cancel(&tno, "STPC", json!({"mod_mny": "100"}))
        .await;

    assert_eq!(stale_balance["res_cd"], "8134");
    assert_eq!(too_much["res_cd"], "8135");
    assert_eq!(zero["res_cd"], "8105");
    assert_eq!(missing["res_cd"], "9502");
    assert_eq!(harness.sandbox.ledger()[0].balance, 6000);
}

#[tokio::test]
async fn a_full_amount_partial_cancel_on_the_approval_day_must_be_stsc() {
    let harness = spawn().await;
    let tno = harness.approved("sameday", "10000").await;

    let same_day = harness.partial_cancel(&tno, "10000", "10000").await;
    assert_eq!(same_day["res_cd"], "8136");

    // 2026-03-10 12:00 KST + 12h is the next day in Korea.
    harness.clock.advance(TimeDelta::hours(12));
    let next_day = harness.partial_cancel(&tno, "10000", "10000").await;
    assert_eq!(next_day["res_cd"], "0000", "{next_day}");
    assert_eq!(next_day["rem_mny"], "0");
    assert_eq!(
        harness.sandbox.ledger()[0].state,
        TransactionState::Cancelled
    );
}

#[tokio::test]
async fn an_unknown_tno_or_another_sites_tno_is_8201() {
    let harness = spawn().await;
    let unknown = harness.cancel("20260310000000", "STSC", json!({})).await;
    assert_eq!(
        unknown,
        json!({"res_cd": "8201", "res_msg": "해당 거래가 존재하지 않습니다."})
    );

    let other = key_in(
        OTHER_SITE,
        kcp_sandbox::test_cards::SHINHAN_CREDIT,
        "theirs",
        "1000",
    );
    let other_tno = harness.pay(&other).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        harness.cancel(&other_tno, "STSC", json!({})).await["res_cd"],
        "8201"
    );
}

#[tokio::test]
async fn a_cancel_with_a_bad_signature_is_refused_and_changes_nothing() {
    let harness = spawn().await;
    let tno = harness.approved("sig1", "1000").await;
    let merchant = merchant(SITE);
    let request = |sign_data: String| {
        json!({
            "site_cd": SITE, "kcp_cert_info": merchant.cert_info, "tno": tno,
            "mod_type": "STSC", "kcp_sign_data": sign_data,
        })
    };

    // Signed over a partial cancel, sent as a full one.
    let wrong_message = request(merchant.sign(&format!("{SITE}^{tno}^STPC")));
    let other_key = request(common::merchant(OTHER_SITE).sign(&format!("{SITE}^{tno}^STSC")));
    let not_base64 = request("!!!".to_owned());
    let mut unsigned = request(String::new());
    unsigned.as_object_mut().unwrap().remove("kcp_sign_data");

    for body in [wrong_message, other_key, not_base64] {
        let reply: Value = harness.post(kcp_sandbox::paths::CANCEL, &body).await;
        assert_eq!(reply["res_cd"], "9512", "{reply}");
    }
    assert_eq!(
        harness.post(kcp_sandbox::paths::CANCEL, &unsigned).await["res_cd"],
        "9502"
    );
    assert_eq!(
        harness.sandbox.ledger()[0].state,
        TransactionState::Approved
    );
}

#[tokio::test]
async fn unsupported_mod_types_and_malformed_tnos_are_refused() {
    let harness = spawn().await;
    let tno = harness.approved("mod1", "1000").await;
    assert_eq!(
        harness.cancel(&tno, "STE9", json!({})).await["res_cd"],
        "9503"
    );
    // Escrow shipping (STE1) exists, but only for escrow approvals.
    assert_eq!(
        harness
            .cancel(&tno, "STE1", json!({"deli_numb": "123", "deli_corp": "CJ"}))
            .await["res_cd"],
        "8501"
    );
    assert_eq!(
        harness.cancel("123", "STSC", json!({})).await["res_cd"],
        "9503"
    );
    assert_eq!(
        harness
            .cancel(&tno, "STSC", json!({"mod_desc": "고객 요청; 환불"}))
            .await["res_cd"],
        "9504"
    );
}

/// The test card KCP marks `partcanc_yn N` (some check and foreign cards, spec §2.4): its trades
/// take no partial cancel (`8137`, assumption), only a full one.
#[tokio::test]
async fn a_card_kcp_marks_partcanc_yn_n_refuses_stpc_and_takes_stsc() {
    let harness = spawn().await;
    let approval = harness
        .pay(&key_in(
            SITE,
            kcp_sandbox::test_cards::NO_PARTIAL_CANCEL,
            "nopart1",
            "10000",
        ))
        .await;
    assert_eq!(approval["res_cd"], "0000", "{approval}");
    assert_eq!(approval["partcanc_yn"], "N");
    let ordinary = harness
        .pay(&key_in(
            SITE,
            kcp_sandbox::test_cards::ANY_OTHER,
            "part1",
            "1000",
        ))
        .await;
    assert_eq!(ordinary["partcanc_yn"], "Y");
    let tno = approval["tno"].as_str().unwrap();
    harness.clock.advance(TimeDelta::days(1));

    let partial = harness.partial_cancel(tno, "3000", "10000").await;
    let full = harness.cancel(tno, "STSC", json!({})).await;

    assert_eq!(partial["res_cd"], "8137", "{partial}");
    assert_eq!(full["res_cd"], "0000", "{full}");
    let entry = &harness.sandbox.ledger()[0];
    assert_eq!(entry.cancels.len(), 1);
    assert_eq!(entry.cancels[0].mod_type, "STSC");
}

/// docs/kcp.md §10.2 (openport's model of KCP): a virtual account holding deposits is refunded to an
/// account the buyer names (`mod_bankcode`, `mod_account`, `mod_depositor`); a cancel without one
/// would close the account with nowhere to send the money, so it is refused and nothing changes.
#[tokio::test]
async fn stsc_on_a_deposited_virtual_account_without_a_refund_account_is_refused() {
    let harness = spawn().await;
    harness
        .sandbox
        .set_notify_url("*", "http://127.0.0.1:9/unused");
    let paid = harness.pay(&vbank_issue("VArefund")).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    harness.sandbox.deposit(&paid, 7000, "00").unwrap();
    let partly = harness.pay(&vbank_issue("VApartly")).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    harness.sandbox.deposit(&partly, 3000, "00").unwrap();
    let before = harness.sandbox.ledger();

    for (tno, mod_type, extra) in [
        (&paid, "STSC", json!({})),
        (&paid, "STPC", json!({"mod_mny": "1000", "rem_mny": "7000"})),
        (&partly, "STSC", json!({})),
        (&paid, "STSC", json!({"mod_bankcode": "BK04"})),
    ] {
        let reply = harness.cancel(tno, mod_type, extra.clone()).await;
        assert_eq!(reply["res_cd"], "8508", "{mod_type} {extra}: {reply}");
    }
    assert_eq!(harness.sandbox.ledger(), before, "nothing changed");

    let refund =
        json!({"mod_bankcode": "BK04", "mod_account": "1234567890", "mod_depositor": "홍길동"});
    let refunded = harness.cancel(&paid, "STSC", refund.clone()).await;
    assert_eq!(refunded["res_cd"], "0000", "{refunded}");
    let closed = harness.cancel(&partly, "STSC", refund).await;
    assert_eq!(closed["res_cd"], "0000", "{closed}");
    let ledger = harness.sandbox.ledger();
    assert!(
        ledger
            .iter()
            .all(|e| e.state == TransactionState::Cancelled),
        "{ledger:?}"
    );
    // An account nobody paid into is still revoked by a plain STSC.
    let unpaid = harness.pay(&vbank_issue("VAunpaid")).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        harness.cancel(&unpaid, "STSC", json!({})).await["res_cd"],
        "0000"
    );
}

/// A cancel in KCP's admin console, notified as KCP does (spec §2.12): the common fields only, no
/// `noti_id`, `TX06` for a card, `TX07` for an account closed unpaid, `TX01` for a paid one
/// refunded; sent through the notification book deposits use.
#[tokio::test]
async fn a_cancel_in_the_admin_console_is_notified_with_kcps_common_fields() {
    let harness = spawn().await;
    harness
        .sandbox
        .set_notify_url("*", "http://127.0.0.1:9/unused");
    let card = harness.approved("admincard", "1000").await;
    let unpaid = harness.pay(&vbank_issue("VAadminunpaid")).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    let paid = harness.pay(&vbank_issue("VAadminpaid")).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    harness.sandbox.deposit(&paid, 7000, "00").unwrap();

    for (tno, tx_cd) in [(&card, "TX06"), (&unpaid, "TX07"), (&paid, "TX01")] {
        let sent = harness
            .sandbox
            .cancel_in_admin_notified(tno)
            .expect("cancelled and notified");
        assert_eq!(sent.tx_cd, tx_cd);
        let names: Vec<&str> = sent.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["site_cd", "tno", "order_no", "tx_cd", "tx_tm"]);
        assert_eq!(sent.field("tno"), Some(tno.as_str()));
        assert_eq!(sent.field("tx_tm"), Some("20260310120000"));
        assert!(harness
            .sandbox
            .notifications()
            .iter()
            .any(|n| n.noti_id == sent.noti_id));
    }
    assert!(harness
        .sandbox
        .ledger()
        .iter()
        .all(|e| e.state == TransactionState::Cancelled));
    assert!(
        harness.sandbox.cancel_in_admin_notified(&card).is_none(),
        "nothing left to cancel"
    );
}

/// A trade paid in the mobile window (spec §2.1–§2.4) with `method` (`BANK`, `MOBX` or `GIFT`) at
/// the sandbox clock's time: registration, window, post back and approval. Its tno.
async fn paid_in_window(h: &Harness, order: &str, amount: &str, method: &str) -> String {
    type Pairs = &'static [(&'static str, &'static str)];
    let (action, pay_type, extra, entered): (&str, &str, Pairs, Pairs) = match method {
        "BANK" => ("acnt", "PABK", &[], &[("bank", "BK20"), ("action", "pay")]),
        "MOBX" => (
            "mobx",
            "PAMC",
            &[("shop_user_id", "buyer-1")],
            &[
                ("carrier", "KTF"),
                ("mobile_no", "01012345678"),
                ("action", "pay"),
            ],
        ),
        "GIFT" => (
            "sccl",
            "PATK",
            &[("shop_user_id", "buyer-1"), ("van_code", "SCCL")],
            &[("pin", "1234567890123456"), ("action", "pay")],
        ),
        other => panic!("no window helper for {other}"),
    };
    let ret_url = "http://shop.test/return";
    let reg = h
        .post(
            kcp_sandbox::paths::TRADE_REGISTER,
            &json!({"site_cd": SITE, "kcp_cert_info": merchant(SITE).cert_info, "ordr_idxx": order,
                    "good_mny": amount, "good_name": "테스트", "pay_method": method, "Ret_URL": ret_url,
                    "escw_used": "N", "user_agent": "pc"}),
        )
        .await;
    assert_eq!(reg["Code"], "0000", "{reg}");
    let pay_url = h.url(kcp_sandbox::paths::PAY_WINDOW);
    let mut window: Vec<(&str, &str)> = vec![
        ("approval_key", reg["approvalKey"].as_str().unwrap()),
        ("traceNo", reg["traceNo"].as_str().unwrap()),
        ("PayUrl", &pay_url),
        ("site_cd", SITE),
        ("ordr_idxx", order),
        ("good_name", "테스트"),
        ("good_mny", amount),
        ("req_tx", "pay"),
        ("currency", "410"),
        ("escw_used", "N"),
        ("pay_method", method),
        ("ActionResult", action),
        ("Ret_URL", ret_url),
    ];
    window.extend_from_slice(extra);
    let page = h.post_form(&pay_url, &window).await;
    let mut form = inputs(&page);
    form.extend(entered.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let back = inputs(&h.post_form(&h.url("/pay/submit"), &form).await);
    assert_eq!(get(&back, "res_cd"), "0000", "{back:?}");
    let approved = h
        .post(
            kcp_sandbox::paths::ENC_PAYMENT,
            &approval(&back, amount, pay_type),
        )
        .await;
    assert_eq!(approved["res_cd"], "0000", "{approved}");
    approved["tno"].as_str().unwrap().to_owned()
}

/// Carriers refund no part of a phone bill's charge, and KCP documents no partial cancel of a
/// phone or gift-certificate trade: `STPC` on one is `8138` (assumption) and changes nothing;
/// `STSC` takes it whole.
#[tokio::test]
async fn stpc_on_a_phone_or_gift_trade_is_refused_and_stsc_takes_it() {
    let harness = spawn().await;
    for (order, method) in [("PH1", "MOBX"), ("GF1", "GIFT")] {
        let tno = paid_in_window(&harness, order, "10000", method).await;
        harness.clock.advance(TimeDelta::days(1));

        let partial = harness.partial_cancel(&tno, "3000", "10000").await;

        assert_eq!(partial["res_cd"], "8138", "{method}: {partial}");
        let entry = harness
            .sandbox
            .ledger()
            .into_iter()
            .find(|e| e.tno == tno)
            .unwrap();
        assert_eq!((entry.balance, entry.cancels.len()), (10000, 0));
        let full = harness.cancel(&tno, "STSC", json!({})).await;
        assert_eq!(full["res_cd"], "0000", "{method}: {full}");
    }
}

/// A carrier refunds a phone payment only within the month (KST) it was made in: a cancel of a
/// `PAMC` trade after it is `8139` (assumption) and changes nothing; a gift certificate has no
/// such rule.
#[tokio::test]
async fn a_phone_trade_is_cancelled_only_within_its_approval_month() {
    let harness = spawn().await;
    let within = paid_in_window(&harness, "PH1", "1000", "MOBX").await;
    let after = paid_in_window(&harness, "PH2", "1000", "MOBX").await;
    let gift = paid_in_window(&harness, "GF1", "1000", "GIFT").await;
    // 2026-03-10 12:00 KST → 2026-03-31 23:59 KST, the last minute of the month.
    harness
        .clock
        .advance(TimeDelta::days(21) + TimeDelta::minutes(719));
    let last_minute = harness.cancel(&within, "STSC", json!({})).await;
    harness.clock.advance(TimeDelta::minutes(1));

    let next_month = harness.cancel(&after, "STSC", json!({})).await;
    let gift_cancel = harness.cancel(&gift, "STSC", json!({})).await;

    assert_eq!(last_minute["res_cd"], "0000", "{last_minute}");
    assert_eq!(next_month["res_cd"], "8139", "{next_month}");
    assert_eq!(gift_cancel["res_cd"], "0000", "{gift_cancel}");
    let entry = harness
        .sandbox
        .ledger()
        .into_iter()
        .find(|e| e.tno == after)
        .unwrap();
    assert_eq!(entry.state, TransactionState::Approved);
    assert!(entry.cancels.is_empty());
}

/// KCP takes a bank transfer's partial cancel from the day after its approval (KST) on, as its own
/// integrations refuse it on the payment day: `STPC` on a `PABK` trade that day is `8140`
/// (assumption) and changes nothing; `STSC` is taken that day, `STPC` the next.
#[tokio::test]
async fn a_bank_transfer_takes_a_partial_cancel_from_the_day_after_its_approval() {
    let harness = spawn().await;
    let partly = paid_in_window(&harness, "BK1", "10000", "BANK").await;
    let whole = paid_in_window(&harness, "BK2", "10000", "BANK").await;

    let same_day = harness.partial_cancel(&partly, "3000", "10000").await;
    let full = harness.cancel(&whole, "STSC", json!({})).await;

    assert_eq!(same_day["res_cd"], "8140", "{same_day}");
    assert_eq!(full["res_cd"], "0000", "{full}");
    let entry = harness
        .sandbox
        .ledger()
        .into_iter()
        .find(|e| e.tno == partly)
        .unwrap();
    assert_eq!((entry.balance, entry.cancels.len()), (10000, 0));
    // 2026-03-10 12:00 KST + 12h is the next day in Korea.
    harness.clock.advance(TimeDelta::hours(12));
    let next_day = harness.partial_cancel(&partly, "3000", "10000").await;
    assert_eq!(next_day["res_cd"], "0000", "{next_day}");
    assert_eq!(next_day["rem_mny"], "7000");
}
