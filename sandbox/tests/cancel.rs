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
/// account the buyer names (`mod_bankcode`, `mod_account`, `mod_depositor`) with `STHD`/`STPD`; a
/// cancel without one would close the account with nowhere to send the money, so it is refused and
/// nothing changes. `STSC`/`STPC` name no refund account whatever fields come with them: refused
/// the same way, with the account too.
#[tokio::test]
async fn stsc_or_stpc_on_a_deposited_virtual_account_is_refused_even_with_a_refund_account() {
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
    let refund =
        json!({"mod_bankcode": "BK04", "mod_account": "1234567890", "mod_depositor": "홍길동"});
    let mut partial_with_account = refund.clone();
    common::merge(
        &mut partial_with_account,
        json!({"mod_mny": "1000", "rem_mny": "7000"}),
    );

    for (tno, mod_type, extra) in [
        (&paid, "STSC", json!({})),
        (&paid, "STPC", json!({"mod_mny": "1000", "rem_mny": "7000"})),
        (&partly, "STSC", json!({})),
        (&paid, "STSC", json!({"mod_bankcode": "BK04"})),
        (&paid, "STSC", refund.clone()),
        (&paid, "STPC", partial_with_account),
        (&partly, "STSC", refund.clone()),
    ] {
        let reply = harness.cancel(tno, mod_type, extra.clone()).await;
        assert_eq!(reply["res_cd"], "8508", "{mod_type} {extra}: {reply}");
    }
    assert_eq!(harness.sandbox.ledger(), before, "nothing changed");

    let whole = with(
        refund,
        json!({"mod_sub_type": "MDSC00", "mod_comp_type": "MDCP01"}),
    );
    let refunded = harness.cancel(&paid, "STHD", whole.clone()).await;
    assert_eq!(refunded["res_cd"], "0000", "{refunded}");
    let closed = harness.cancel(&partly, "STHD", whole).await;
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

/// `extra` merged into `base`.
fn with(mut base: Value, extra: Value) -> Value {
    common::merge(&mut base, extra);
    base
}

/// A refund's account fields as public merchant integrations send them: 신한 (`BK88`), the holder
/// verified first (`MDCP01`).
fn refund_to(account: &str, depositor: &str) -> Value {
    json!({"mod_bankcode": "BK88", "mod_account": account, "mod_depositor": depositor,
           "mod_comp_type": "MDCP01"})
}

/// An `STHD` (all that is left) to `refund_to(account, depositor)`.
fn sthd(account: &str, depositor: &str) -> Value {
    with(
        refund_to(account, depositor),
        json!({"mod_sub_type": "MDSC00"}),
    )
}

/// An `STPD` of `mod_mny` out of `rem_mny` to `refund_to(account, depositor)`.
fn stpd(mod_mny: &str, rem_mny: &str, account: &str, depositor: &str) -> Value {
    with(
        refund_to(account, depositor),
        json!({"mod_sub_type": "MDSC03", "mod_mny": mod_mny, "rem_mny": rem_mny}),
    )
}

impl Harness {
    /// A window-less virtual account of 7,000 for `order_no`, paid in full; its tno.
    async fn paid_vbank(&self, order_no: &str) -> String {
        self.sandbox
            .set_notify_url("*", "http://127.0.0.1:9/unused");
        let tno = self.pay(&vbank_issue(order_no)).await["tno"]
            .as_str()
            .unwrap()
            .to_owned();
        self.sandbox.deposit(&tno, 7000, "00").unwrap();
        tno
    }

    fn entry(&self, tno: &str) -> kcp_sandbox::LedgerEntry {
        self.sandbox
            .ledger()
            .into_iter()
            .find(|e| e.tno == tno)
            .expect("in the ledger")
    }
}

/// docs/sandbox.md §2.3: `STPD` takes a part of a paid account's balance as `STPC` takes a card's
/// (`mod_mny`, `rem_mny`, sequence number), `MDSC04` as `MDSC03`; `STHD` the rest. The `PAVC`
/// inquiry shows each step (`STPC` with what is left, then `STSC`), and a closed account takes no
/// deposit.
#[tokio::test]
async fn sthd_and_stpd_refund_a_paid_virtual_account_down_to_nothing_as_the_pavc_inquiry_shows() {
    let harness = spawn().await;
    let tno = harness.paid_vbank("VArefunds").await;

    let first = harness
        .cancel(&tno, "STPD", stpd("3000", "7000", "110123456789", "홍길동"))
        .await;
    let after_first = harness.inquire_as("PAVC", &tno).await;
    let mixed = with(
        stpd("1000", "4000", "110123456789", "홍길동"),
        json!({"mod_sub_type": "MDSC04"}),
    );
    let second = harness.cancel(&tno, "STPD", mixed).await;
    let rest = harness
        .cancel(&tno, "STHD", sthd("110123456789", "홍길동"))
        .await;
    let after_rest = harness.inquire_as("PAVC", &tno).await;

    assert_eq!(
        (
            first["res_cd"].as_str(),
            first["mod_mny"].as_str(),
            first["rem_mny"].as_str(),
            first["mod_pacn_seq_no"].as_str()
        ),
        (Some("0000"), Some("3000"), Some("4000"), Some("1")),
        "{first}"
    );
    assert_eq!(
        (
            after_first["stat_va_cd"].as_str(),
            after_first["rem_mny"].as_str()
        ),
        (Some("STPC"), Some("4000")),
        "{after_first}"
    );
    assert_eq!(
        (second["res_cd"].as_str(), second["rem_mny"].as_str()),
        (Some("0000"), Some("3000")),
        "{second}"
    );
    assert_eq!(rest["res_cd"], "0000", "{rest}");
    assert_eq!(
        (
            after_rest["stat_va_cd"].as_str(),
            after_rest["rem_mny"].as_str()
        ),
        (Some("STSC"), Some("0")),
        "{after_rest}"
    );
    let entry = harness.entry(&tno);
    let refunds: Vec<(&str, i64)> = entry
        .cancels
        .iter()
        .map(|c| (c.mod_type.as_str(), c.amount))
        .collect();
    assert_eq!(
        refunds,
        [("STPD", 3000), ("STPD", 1000), ("STHD", 3000)],
        "{entry:?}"
    );
    assert_eq!(
        (entry.state, entry.balance),
        (TransactionState::Cancelled, 0)
    );
    assert!(
        harness.sandbox.deposit(&tno, 1, "00").is_err(),
        "a refunded account takes no deposit"
    );
}

/// A refund carries its account whole, a `mod_sub_type` and a `mod_comp_type` of KCP's, in KCP's
/// shapes, and an `STPD` the amounts `STPC` takes: anything else is refused and nothing moves.
#[tokio::test]
async fn a_refund_missing_its_account_or_with_fields_out_of_shape_is_refused_and_moves_nothing() {
    let harness = spawn().await;
    let tno = harness.paid_vbank("VAshapes").await;
    let before = harness.sandbox.ledger();
    let without = |field: &str| {
        let mut body = sthd("110123456789", "홍길동");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let changed = |field: &str, value: &str| {
        let mut body = sthd("110123456789", "홍길동");
        body[field] = json!(value);
        body
    };

    for (mod_type, body, code) in [
        ("STHD", without("mod_bankcode"), "8508"),
        ("STHD", without("mod_account"), "8508"),
        ("STHD", without("mod_depositor"), "8508"),
        ("STHD", changed("mod_depositor", " "), "8508"),
        ("STHD", without("mod_sub_type"), "9502"),
        ("STHD", changed("mod_sub_type", "MDSC03"), "9503"),
        ("STHD", without("mod_comp_type"), "9502"),
        ("STHD", changed("mod_comp_type", "MDCP09"), "9503"),
        ("STHD", changed("mod_bankcode", "088"), "9503"),
        ("STHD", changed("mod_bankcode", "BK8A"), "9503"),
        ("STHD", changed("mod_account", "110-123-456789"), "9503"),
        ("STHD", changed("mod_depositor", "홍,길동"), "9504"),
        (
            "STPD",
            with(
                stpd("1000", "7000", "110123456789", "홍길동"),
                json!({"mod_sub_type": "MDSC00"}),
            ),
            "9503",
        ),
        (
            "STPD",
            stpd("1000", "6999", "110123456789", "홍길동"),
            "8134",
        ),
        (
            "STPD",
            stpd("8000", "7000", "110123456789", "홍길동"),
            "8135",
        ),
        ("STPD", stpd("0", "7000", "110123456789", "홍길동"), "8105"),
        (
            "STPD",
            stpd("7000", "7000", "110123456789", "홍길동"),
            "8136",
        ),
    ] {
        let reply = harness.cancel(&tno, mod_type, body.clone()).await;
        assert_eq!(reply["res_cd"], code, "{mod_type} {body}: {reply}");
    }
    assert_eq!(harness.sandbox.ledger(), before, "nothing moved");
}

/// `STHD`/`STPD` send a virtual account's deposits back: a card trade is `8511`, an account
/// nobody paid into `8503` (it is revoked with `STSC`), and a part of an account paid short of its
/// amount `8503` as `STPC` is; its `STHD` closes it and sends the deposits back.
#[tokio::test]
async fn a_refund_of_anything_but_a_virtual_account_holding_deposits_is_refused() {
    let harness = spawn().await;
    harness
        .sandbox
        .set_notify_url("*", "http://127.0.0.1:9/unused");
    let card = harness.approved("refundcard", "7000").await;
    let unpaid = harness.pay(&vbank_issue("VAnodeposit")).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    let partly = harness.pay(&vbank_issue("VAshort")).await["tno"]
        .as_str()
        .unwrap()
        .to_owned();
    harness.sandbox.deposit(&partly, 3000, "00").unwrap();
    let before = harness.sandbox.ledger();

    let to_card = harness
        .cancel(&card, "STHD", sthd("110123456789", "홍길동"))
        .await;
    let to_unpaid = harness
        .cancel(&unpaid, "STHD", sthd("110123456789", "홍길동"))
        .await;
    let part_of_short = harness
        .cancel(
            &partly,
            "STPD",
            stpd("1000", "7000", "110123456789", "홍길동"),
        )
        .await;

    assert_eq!(to_card["res_cd"], "8511", "{to_card}");
    assert_eq!(to_unpaid["res_cd"], "8503", "{to_unpaid}");
    assert_eq!(part_of_short["res_cd"], "8503", "{part_of_short}");
    assert_eq!(harness.sandbox.ledger(), before, "nothing moved");
    let closed = harness
        .cancel(&partly, "STHD", sthd("110123456789", "홍길동"))
        .await;
    assert_eq!(closed["res_cd"], "0000", "{closed}");
    assert_eq!(harness.entry(&partly).state, TransactionState::Cancelled);
}

/// docs/sandbox.md §3: with `MDCP01` KCP verifies the refund account before it registers the
/// refund. The test accounts fail it, each with its code (`8509` no such account, `8510` another
/// holder), and nothing moves; the named holder's own account verifies, and `MDCP02` registers an
/// account unverified.
#[tokio::test]
async fn mdcp01_fails_for_the_test_refund_accounts_and_mdcp02_registers_the_account_as_named() {
    use kcp_sandbox::test_refund_accounts::{HOLDER, NAMED_HOLDER_ACCOUNT, NO_SUCH_ACCOUNT};
    let harness = spawn().await;
    let tno = harness.paid_vbank("VAverify").await;
    let before = harness.sandbox.ledger();

    let missing = harness
        .cancel(&tno, "STHD", sthd(NO_SUCH_ACCOUNT, "홍길동"))
        .await;
    let other_holder = harness
        .cancel(
            &tno,
            "STPD",
            stpd("1000", "7000", NAMED_HOLDER_ACCOUNT, "홍길동"),
        )
        .await;

    assert_eq!(
        (missing["res_cd"].as_str(), missing["res_msg"].as_str()),
        (
            Some("8509"),
            Some("계좌인증 실패: 존재하지 않는 계좌입니다.")
        ),
        "{missing}"
    );
    assert_eq!(
        (
            other_holder["res_cd"].as_str(),
            other_holder["res_msg"].as_str()
        ),
        (
            Some("8510"),
            Some("계좌인증 실패: 예금주명이 일치하지 않습니다.")
        ),
        "{other_holder}"
    );
    assert_eq!(harness.sandbox.ledger(), before, "nothing moved");
    let own_holder = harness
        .cancel(
            &tno,
            "STPD",
            stpd("1000", "7000", NAMED_HOLDER_ACCOUNT, HOLDER),
        )
        .await;
    assert_eq!(own_holder["res_cd"], "0000", "{own_holder}");
    let unverified = with(
        stpd("1000", "6000", NO_SUCH_ACCOUNT, "홍길동"),
        json!({"mod_comp_type": "MDCP02"}),
    );
    let registered = harness.cancel(&tno, "STPD", unverified).await;
    assert_eq!(registered["res_cd"], "0000", "{registered}");
    assert_eq!(harness.entry(&tno).balance, 5000);
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
