mod common;

use common::*;
use kcp_sandbox::{test_cards, BatchKeyState, TransactionState};
use serde_json::{json, Value};

fn with(mut body: Value, extra: Value) -> Value {
    merge(&mut body, extra);
    body
}

fn sorted_names(reply: &Value) -> Vec<String> {
    let mut names: Vec<String> = reply.as_object().unwrap().keys().cloned().collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn issuing_a_batch_key_answers_the_key_and_the_masked_card() {
    let harness = spawn().await;

    let reply = harness
        .pay(&batch_issue(SITE, GROUP, test_cards::SHINHAN_CREDIT))
        .await;

    let mut expected = vec![
        "res_cd",
        "res_msg",
        "batch_key",
        "card_cd",
        "card_name",
        "card_bank_cd",
        "card_bin_type_01",
        "card_bin_type_02",
        "card_mask_no",
    ];
    expected.sort_unstable();
    assert_eq!(sorted_names(&reply), expected);
    assert!(reply.as_object().unwrap().values().all(Value::is_string));
    assert_eq!(reply["res_cd"], "0000");
    assert_eq!(reply["res_msg"], "정상처리");
    let key = reply["batch_key"].as_str().unwrap();
    assert!(
        key.len() == 16 && key.bytes().all(|b| b.is_ascii_digit()),
        "{key}"
    );
    // KST 2026-03-10: the key starts with yyMMdd like KCP's.
    assert!(key.starts_with("260310"), "{key}");
    assert_eq!(reply["card_cd"], "CCLG");
    assert_eq!(reply["card_name"], "신한카드");
    assert_eq!(reply["card_bank_cd"], "0088");
    assert_eq!(reply["card_bin_type_01"], "0");
    assert_eq!(reply["card_bin_type_02"], "0");
    assert_eq!(reply["card_mask_no"], "411111******1111");

    let keys = harness.sandbox.batch_keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(harness.sandbox.batch_key(key).as_ref(), Some(&keys[0]));
    assert_eq!(keys[0].id.len(), 16);
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    assert!(
        !digest.starts_with(&keys[0].id),
        "the id shown is not a digest of the key"
    );
    assert_eq!(keys[0].site_cd, SITE);
    assert_eq!(keys[0].group_id, GROUP);
    assert_eq!(keys[0].masked_card_no, "411111******1111");
    assert_eq!(keys[0].state, BatchKeyState::Active);
    assert_eq!(keys[0].issued_at, "20260310120000");
    assert!(
        harness.sandbox.ledger().is_empty(),
        "issuance is no payment"
    );
}

#[tokio::test]
async fn every_issuance_gets_its_own_key() {
    let harness = spawn().await;
    let first = harness.batch_key(test_cards::SHINHAN_CREDIT).await;
    let second = harness.batch_key(test_cards::SHINHAN_CREDIT).await;
    assert_ne!(first, second);
    assert_eq!(harness.sandbox.batch_keys().len(), 2);
}

#[tokio::test]
async fn issuance_checks_the_card_like_key_in_and_the_group_id() {
    let harness = spawn().await;
    let base = || batch_issue(SITE, GROUP, test_cards::SHINHAN_CREDIT);
    let cases = [
        (json!({"card_no": "4111111111111112"}), "8108"),
        (json!({"card_no": "411111111111"}), "8107"),
        (json!({"card_expiry": "2602"}), "8109"),
        (json!({"card_expiry": "12/30"}), "8109"),
        (json!({"card_taxno": "900101", "card_pwd": "12"}), "8110"),
        (json!({"card_taxno": "000000", "card_pwd": "00"}), "8110"),
        (json!({"card_taxno": "000000"}), "8110"),
        (json!({"card_taxno": "9001011"}), "8110"),
        (json!({"card_pwd": "00"}), "8110"),
        (json!({"group_id": "A52Q71000489"}), "8301"),
        (json!({"group_id": "T0000100000"}), "8301"),
        (json!({"group_id": "T000010000012"}), "8301"),
        (json!({"group_id": "T0000100000A"}), "8301"),
        (json!({"group_id": ""}), "9502"),
        (json!({"ordr_idxx": ""}), "9502"),
        (json!({"sign_txtype": "0002"}), "8103"),
        (
            json!({"pay_method": "BATCH", "tx_type": "10005000"}),
            "8103",
        ),
        (json!({"sign_txtype": ""}), "9502"),
        (json!({"card_mny": "1000"}), "8105"),
        (json!({"amount": "1000"}), "8105"),
        (json!({"buyr_name": "<b>"}), "9504"),
    ];
    for (extra, code) in cases {
        let reply = harness.pay(&with(base(), extra.clone())).await;
        assert_eq!(reply["res_cd"], code, "{extra}: {reply}");
        assert_eq!(reply.as_object().unwrap().len(), 2, "{reply}");
    }
    assert!(harness.sandbox.batch_keys().is_empty());

    for (index, extra) in [
        json!({"card_taxno": "900101", "card_pwd": "00"}),
        json!({"card_taxno": "1234567890", "card_pwd": "00"}),
        json!({"card_taxno": "900101"}),
        json!({"card_mny": ""}),
        json!({}),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = harness.pay(&with(base(), extra.clone())).await;
        assert_eq!(reply["res_cd"], "0000", "{index} {extra}: {reply}");
    }
}

#[tokio::test]
async fn another_sites_group_id_is_its_own_site_code_and_seven_digits() {
    let harness = spawn().await;
    let reply = harness
        .pay(&batch_issue(
            OTHER_SITE,
            "A52Q71000489",
            test_cards::ANY_OTHER,
        ))
        .await;
    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert_eq!(reply["card_cd"], "CCBC");
}

#[tokio::test]
async fn a_batch_payment_answers_the_card_approval_fields_with_the_card_masked() {
    let harness = spawn().await;
    let key = harness.batch_key(test_cards::SAMSUNG_CHECK).await;
    let key_in_reply = harness
        .pay(&key_in(SITE, test_cards::SAMSUNG_CHECK, "keyin1", "1100"))
        .await;

    let reply = harness
        .pay(&batch_pay(SITE, &key, "20230412329", "1100"))
        .await;

    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert_eq!(sorted_names(&reply), sorted_names(&key_in_reply));
    assert!(reply.as_object().unwrap().values().all(Value::is_string));
    assert_eq!(reply["pay_method"], "PACA");
    assert_eq!(reply["order_no"], "20230412329");
    assert_eq!(reply["amount"], "1100");
    assert_eq!(reply["card_mny"], "1100");
    assert_eq!(reply["card_no"], "555555******4444");
    assert_eq!(reply["card_cd"], "CCSS");
    assert_eq!(reply["card_bin_type_02"], "1");
    assert_eq!(reply["res_vat_mny"], "100");
    let tno = reply["tno"].as_str().unwrap();
    let entry = harness
        .sandbox
        .ledger()
        .into_iter()
        .find(|entry| entry.tno == tno)
        .unwrap();
    assert_eq!(entry.pay_method, "PACA");
    assert_eq!(
        entry.card.unwrap().masked_card_no,
        "555555******4444",
        "masked only"
    );
}

#[tokio::test]
async fn batch_payments_check_amount_quota_group_and_key() {
    let harness = spawn().await;
    let key = harness.batch_key(test_cards::SHINHAN_CREDIT).await;
    let other_group = {
        let reply = harness
            .pay(&batch_issue(
                SITE,
                "T00001000002",
                test_cards::SHINHAN_CREDIT,
            ))
            .await;
        reply["batch_key"].as_str().unwrap().to_owned()
    };
    let other_site = {
        let reply = harness
            .pay(&batch_issue(
                OTHER_SITE,
                "A52Q71000489",
                test_cards::SHINHAN_CREDIT,
            ))
            .await;
        reply["batch_key"].as_str().unwrap().to_owned()
    };
    let base = || batch_pay(SITE, &key, "checks", "1000");
    let cases = [
        (json!({"card_mny": "999"}), "8059"),
        (json!({"amount": "0", "card_mny": "0"}), "8105"),
        (json!({"currency": "840"}), "8105"),
        (json!({"quota": "03"}), "8106"),
        (json!({"quota": "3"}), "8106"),
        (json!({"good_name": "a,b"}), "9504"),
        (json!({"bt_group_id": "A52Q71000489"}), "8301"),
        (json!({"bt_group_id": "T00001"}), "8301"),
        (json!({"bt_batch_key": "0000000000000000"}), "8302"),
        (json!({"bt_batch_key": ""}), "9502"),
        (json!({"bt_batch_key": other_group}), "8302"),
        (json!({"bt_batch_key": other_site}), "8302"),
    ];
    for (extra, code) in cases {
        let reply = harness.pay(&with(base(), extra.clone())).await;
        assert_eq!(reply["res_cd"], code, "{extra}: {reply}");
        assert_eq!(reply.as_object().unwrap().len(), 2, "{reply}");
    }
    assert!(harness.sandbox.ledger().is_empty());

    let installments = harness
        .pay(&with(
            batch_pay(SITE, &key, "quotaok", "50000"),
            json!({"quota": "03"}),
        ))
        .await;
    assert_eq!(installments["res_cd"], "0000", "{installments}");
    assert_eq!(installments["quota"], "03");
}

#[tokio::test]
async fn kb_nh_and_kakao_bank_keys_are_issued_but_their_charges_are_refused_with_8102() {
    // Outside test mode too: billing is refused for these issuers, not just in KCP's test mode.
    for test_mode in [true, false] {
        let harness = spawn_with(test_mode).await;
        for (card_no, card_cd, card_name) in [
            (test_cards::KB_KOOKMIN, "CCKM", "국민카드"),
            (test_cards::NH_NONGHYUP, "CCNH", "NH농협카드"),
            (test_cards::KAKAO_BANK, "CCKA", "카카오뱅크"),
        ] {
            let issued = harness.pay(&batch_issue(SITE, GROUP, card_no)).await;
            assert_eq!(issued["res_cd"], "0000", "{card_no}: {issued}");
            assert_eq!(issued["card_cd"], card_cd);
            assert_eq!(issued["card_name"], card_name);
            let key = issued["batch_key"].as_str().unwrap();

            let charged = harness
                .pay(&batch_pay(SITE, key, &format!("bill{card_cd}"), "1000"))
                .await;

            assert_eq!(charged["res_cd"], "8102", "{card_no}: {charged}");
            let message = charged["res_msg"].as_str().unwrap();
            assert!(message.contains(card_name), "{message}");
            assert!(message.contains("비인증"), "{message}");
        }
        assert!(harness.sandbox.ledger().is_empty());
    }
}

#[tokio::test]
async fn nh_and_kakao_bank_cards_still_approve_a_key_in() {
    let harness = spawn().await;
    for (index, card_no) in [test_cards::NH_NONGHYUP, test_cards::KAKAO_BANK]
        .into_iter()
        .enumerate()
    {
        let reply = harness
            .pay(&key_in(SITE, card_no, &format!("ki{index}"), "1000"))
            .await;
        assert_eq!(reply["res_cd"], "0000", "{card_no}: {reply}");
    }
}

#[tokio::test]
async fn limit_cards_are_issued_keys_but_their_charges_are_declined() {
    let harness = spawn().await;
    for (card_no, code, message) in [
        (test_cards::INSUFFICIENT_LIMIT, "8187", "한도초과"),
        (test_cards::DAILY_LIMIT_EXCEEDED, "8186", "일일한도초과"),
        (test_cards::MONTHLY_LIMIT_EXCEEDED, "8188", "월한도초과"),
    ] {
        let key = harness.batch_key(card_no).await;
        let reply = harness
            .pay(&batch_pay(SITE, &key, &format!("limit{code}"), "1000"))
            .await;
        assert_eq!(
            reply,
            json!({"res_cd": code, "res_msg": message}),
            "{card_no}"
        );
    }
    let key_in_reply = harness
        .pay(&key_in(
            SITE,
            test_cards::INSUFFICIENT_LIMIT,
            "kilimit",
            "1000",
        ))
        .await;
    assert_eq!(key_in_reply["res_cd"], "8187");
    assert!(harness.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn a_deleted_key_cannot_be_charged_or_deleted_again() {
    let harness = spawn().await;
    let key = harness.batch_key(test_cards::SHINHAN_CREDIT).await;
    let paid = harness.pay(&batch_pay(SITE, &key, "before", "1000")).await;
    assert_eq!(paid["res_cd"], "0000", "{paid}");
    harness.clock.advance(chrono::TimeDelta::minutes(1));

    let deleted = harness.pay(&batch_delete(SITE, GROUP, &key)).await;
    let charged = harness.pay(&batch_pay(SITE, &key, "after", "1000")).await;
    let again = harness.pay(&batch_delete(SITE, GROUP, &key)).await;

    assert_eq!(deleted, json!({"res_cd": "0000", "res_msg": "정상처리"}));
    assert_eq!(charged["res_cd"], "8303", "{charged}");
    assert_eq!(again["res_cd"], "8303", "{again}");
    let keys = harness.sandbox.batch_keys();
    assert_eq!(keys[0].state, BatchKeyState::Deleted);
    assert_eq!(keys[0].deleted_at.as_deref(), Some("20260310120100"));
    assert_eq!(harness.sandbox.ledger().len(), 1);
}

#[tokio::test]
async fn deleting_an_unknown_or_foreign_key_is_refused() {
    let harness = spawn().await;
    let key = harness.batch_key(test_cards::SHINHAN_CREDIT).await;
    let foreign = {
        let reply = harness
            .pay(&batch_issue(
                OTHER_SITE,
                "A52Q71000489",
                test_cards::ANY_OTHER,
            ))
            .await;
        reply["batch_key"].as_str().unwrap().to_owned()
    };

    let unknown = harness
        .pay(&batch_delete(SITE, GROUP, "1234567890123456"))
        .await;
    let wrong_group = harness.pay(&batch_delete(SITE, "T00001000002", &key)).await;
    let other_site = harness.pay(&batch_delete(SITE, GROUP, &foreign)).await;
    let bad_group = harness.pay(&batch_delete(SITE, "T0000", &key)).await;

    assert_eq!(unknown["res_cd"], "8302", "{unknown}");
    assert_eq!(wrong_group["res_cd"], "8302", "{wrong_group}");
    assert_eq!(other_site["res_cd"], "8302", "{other_site}");
    assert_eq!(bad_group["res_cd"], "8301", "{bad_group}");
    assert!(harness
        .sandbox
        .batch_keys()
        .iter()
        .all(|key| key.state == BatchKeyState::Active));
}

#[tokio::test]
async fn a_batch_payment_is_cancelled_and_inquired_like_a_key_in() {
    let harness = spawn().await;
    let key = harness.batch_key(test_cards::SHINHAN_CREDIT).await;
    let paid = harness.pay(&batch_pay(SITE, &key, "sub1", "10000")).await;
    let tno = paid["tno"].as_str().unwrap();

    let partial = harness.partial_cancel(tno, "3000", "10000").await;
    let by_tno = harness.inquire_tno(tno).await;
    let full = harness.cancel(tno, "STSC", json!({})).await;
    let by_order = harness.inquire_order("sub1").await;

    assert_eq!(partial["res_cd"], "0000", "{partial}");
    assert_eq!(partial["rem_mny"], "7000");
    assert_eq!(by_tno["stat_ca_cd"], "STPC");
    assert_eq!(by_tno["card_no"], "411111******1111");
    assert_eq!(by_tno["pay_method"], "PACA");
    assert_eq!(full["res_cd"], "0000", "{full}");
    assert_eq!(by_order["tno"], tno);
    assert_eq!(by_order["stat_ca_cd"], "STSC");
    assert_eq!(by_order["rem_mny"], "0");
    assert_eq!(
        harness.sandbox.ledger()[0].state,
        TransactionState::Cancelled
    );
}

#[tokio::test]
async fn a_batch_payment_never_charges_an_order_twice() {
    let harness = spawn().await;
    let key = harness.batch_key(test_cards::SHINHAN_CREDIT).await;
    let first = harness.pay(&batch_pay(SITE, &key, "twice", "1000")).await;
    let second = harness.pay(&batch_pay(SITE, &key, "twice", "1000")).await;
    assert_eq!(first["res_cd"], "0000");
    assert_eq!(second["res_cd"], "9520");
    assert_eq!(harness.sandbox.ledger().len(), 1);
}

#[tokio::test]
async fn the_control_api_lists_key_states_and_their_order_numbers_without_the_keys() {
    let harness = spawn().await;
    let key = harness.batch_key(test_cards::LOTTE_AMEX).await;
    harness.pay(&batch_delete(SITE, GROUP, &key)).await;

    let listed = harness.get_json("/_sandbox/batch-keys").await;

    assert!(!listed.to_string().contains(&key));
    assert_eq!(
        listed,
        json!([{
            "id": harness.sandbox.batch_key(&key).unwrap().id,
            "site_cd": SITE,
            "group_id": GROUP,
            "order_no": "issue1",
            "masked_card_no": "376000******0004",
            "card_cd": "CCAM",
            "card_name": "롯데아멕스",
            "card_bank_cd": "0000",
            "card_bin_type_02": "0",
            "state": "deleted",
            "issued_at": "20260310120000",
            "deleted_at": "20260310120000",
        }])
    );
}
