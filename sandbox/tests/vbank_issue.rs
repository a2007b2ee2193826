//! Virtual accounts issued without a window (`pay_method` VCNT on the hub, docs/sandbox.md §2.3)
//! and their revocation (`STSC` on an unpaid account), over HTTP.
mod common;

use common::{merge, spawn, vbank_issue, OTHER_SITE};
use kcp_sandbox::{paths, DepositError, Fault, FaultRule, TransactionState};
use serde_json::json;

#[tokio::test]
async fn an_account_is_issued_without_a_window_and_paid_by_deposits() {
    let h = spawn().await;
    let issued = h.pay(&vbank_issue("VA1")).await;
    for (field, value) in [
        ("res_cd", "0000"),
        ("pay_method", "PAVC"),
        ("amount", "7000"),
        ("order_no", "VA1"),
        ("bankcode", "BK07"),
        ("bankname", "수협"),
        ("depositor", "한국사이버결제"),
        ("va_name", "홍길동"),
        ("va_date", "20260317235959"),
        ("app_time", "20260310120000"),
        ("escw_yn", "N"),
    ] {
        assert_eq!(issued[field], value, "{field} in {issued}");
    }
    let account = issued["account"].as_str().unwrap();
    assert!(account.starts_with('T') && account.len() == 14, "{account}");
    let tno = issued["tno"].as_str().unwrap();
    assert_eq!(tno.len(), 14);
    let ledger = h.sandbox.ledger();
    assert_eq!(
        (ledger[0].pay_method.as_str(), ledger[0].state),
        ("PAVC", TransactionState::Issued)
    );

    // Inquiry by order number (how a lost answer is recovered) names the account too.
    let found = h.inquire_order_as("PAVC", "VA1").await;
    assert_eq!(
        (
            found["tno"].as_str(),
            found["stat_va_cd"].as_str(),
            found["account"].as_str(),
            found["va_date"].as_str(),
            found["bankcode"].as_str(),
        ),
        (
            Some(tno),
            Some("STIS"),
            Some(account),
            Some("20260317235959"),
            Some("BK07")
        ),
        "{found}"
    );

    h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
    let deposit = h.sandbox.deposit(tno, 7000, "00").unwrap();
    assert_eq!(deposit.field("account"), Some(account));
    assert_eq!(deposit.field("ipgm_name"), Some("홍길동"));
    assert_eq!(h.sandbox.ledger()[0].state, TransactionState::Approved);
    assert_eq!(h.inquire_as("PAVC", tno).await["stat_va_cd"], "STSR");
}

/// `va_name` is who is expected to pay in (입금자명, KCP's pp_cli sample): the notifications name
/// them as `ipgm_name`/`remitter`, while the account's holder (`depositor`) stays KCP's own.
#[tokio::test]
async fn va_name_is_who_deposits_and_the_holder_stays_kcps() {
    let h = spawn().await;
    let mut body = vbank_issue("VA2");
    merge(&mut body, json!({"va_name": "김입금"}));
    let issued = h.pay(&body).await;
    assert_eq!(issued["res_cd"], "0000", "{issued}");
    assert_eq!(
        (issued["depositor"].as_str(), issued["va_name"].as_str()),
        (Some("한국사이버결제"), Some("김입금"))
    );
    h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
    let tno = issued["tno"].as_str().unwrap();
    let deposit = h.sandbox.deposit(tno, 7000, "00").unwrap();
    assert_eq!(
        (deposit.field("ipgm_name"), deposit.field("remitter")),
        (Some("김입금"), Some("김입금"))
    );

    // Without a depositor name the buyer is expected, as in the window.
    let mut body = vbank_issue("VA2b");
    body.as_object_mut().unwrap().remove("va_name");
    let issued = h.pay(&body).await;
    assert_eq!(issued["va_name"], "홍길동", "{issued}");
    let deposit = h
        .sandbox
        .deposit(issued["tno"].as_str().unwrap(), 7000, "00")
        .unwrap();
    assert_eq!(deposit.field("ipgm_name"), Some("홍길동"));
}

#[tokio::test]
async fn a_bad_bank_a_past_or_malformed_deadline_and_bad_amounts_are_refused() {
    let h = spawn().await;
    let cases = [
        (json!({"va_bankcode": "BK99"}), "8504"),
        (json!({"va_bankcode": "004"}), "8504"),
        (json!({"va_date": "20260310115959"}), "8505"),
        (json!({"va_date": "20260310120000"}), "8505"),
        (json!({"va_date": "20260317"}), "8505"),
        (json!({"va_date": "20261332000000"}), "8505"),
        (json!({"amount": "0", "va_mny": "0"}), "8105"),
        (json!({"amount": "7,000"}), "8105"),
        (json!({"good_name": ""}), "9502"),
        (json!({"va_bankcode": ""}), "9502"),
        (json!({"va_name": "a<b"}), "9504"),
        (json!({"va_receipt_gubn": "1"}), "9503"),
        (json!({"ordr_idxx": "a".repeat(41)}), "9503"),
        (json!({"site_cd": OTHER_SITE}), "9511"),
    ];
    for (extra, code) in cases {
        let mut body = vbank_issue("VA3");
        merge(&mut body, extra.clone());
        let reply = h.pay(&body).await;
        assert_eq!(reply["res_cd"], code, "{extra}: {reply}");
    }
    assert!(h.sandbox.ledger().is_empty());
}

/// The fields of KCP's VCNT request that the first model of this call lacked (docs/kcp.md §10.1):
/// a body without them, or with `va_mny` other than the amount (KCP refuses it), issues nothing,
/// so a gateway that drops one fails here and not only against KCP.
#[tokio::test]
async fn a_body_without_va_txtype_or_va_bankcode_or_with_va_mny_other_than_the_amount_is_refused() {
    let h = spawn().await;
    let without = |field: &str| {
        let mut body = vbank_issue("VA7");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let with = |extra: serde_json::Value| {
        let mut body = vbank_issue("VA7");
        merge(&mut body, extra);
        body
    };
    let mut renamed = without("va_bankcode");
    merge(&mut renamed, json!({"bank_code": "BK07"}));
    let cases = [
        ("no va_txtype", without("va_txtype"), "9502"),
        (
            "another va_txtype",
            with(json!({"va_txtype": "41200000"})),
            "8103",
        ),
        ("no va_mny", without("va_mny"), "9502"),
        (
            "va_mny under the amount",
            with(json!({"va_mny": "6000"})),
            "8059",
        ),
        (
            "va_mny over the amount",
            with(json!({"va_mny": "70000"})),
            "8059",
        ),
        (
            "va_mny not an amount",
            with(json!({"va_mny": "7,000"})),
            "8105",
        ),
        ("no currency", without("currency"), "9502"),
        ("dollars", with(json!({"currency": "840"})), "8105"),
        ("no va_bankcode", without("va_bankcode"), "9502"),
        ("bank_code for va_bankcode", renamed, "9502"),
    ];
    for (what, body, code) in cases {
        let reply = h.pay(&body).await;
        assert_eq!(reply["res_cd"], code, "{what}: {reply}");
    }
    assert!(h.sandbox.ledger().is_empty());
    assert_eq!(h.pay(&vbank_issue("VA7")).await["res_cd"], "0000");
}

#[tokio::test]
async fn a_second_account_for_a_standing_order_is_refused_until_the_first_is_revoked() {
    let h = spawn().await;
    let first = h.pay(&vbank_issue("VA4")).await;
    assert_eq!(first["res_cd"], "0000");
    assert_eq!(h.pay(&vbank_issue("VA4")).await["res_cd"], "9520");
    let tno = first["tno"].as_str().unwrap();
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "0000");
    assert_eq!(h.pay(&vbank_issue("VA4")).await["res_cd"], "0000");
}

#[tokio::test]
async fn an_unpaid_account_is_revoked_by_a_full_cancel_and_takes_no_deposit_after() {
    let h = spawn().await;
    let issued = h.pay(&vbank_issue("VA5")).await;
    let tno = issued["tno"].as_str().unwrap();
    assert_eq!(
        h.partial_cancel(tno, "1000", "7000").await["res_cd"],
        "8503",
        "an unpaid account has nothing to refund in part"
    );
    let revoked = h
        .cancel(tno, "STSC", json!({"mod_desc": "가상계좌 발급취소"}))
        .await;
    assert_eq!(
        (revoked["res_cd"].as_str(), revoked["tno"].as_str()),
        (Some("0000"), Some(tno)),
        "{revoked}"
    );
    assert_eq!(revoked["canc_time"], "20260310120000");
    let entry = &h.sandbox.ledger()[0];
    assert_eq!(
        (entry.state, entry.balance),
        (TransactionState::Cancelled, 0)
    );

    h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
    assert!(matches!(
        h.sandbox.deposit(tno, 7000, "00"),
        Err(DepositError::Closed)
    ));
    let refused = h
        .client
        .post(h.url("/_sandbox/vbank/deposit"))
        .json(&json!({"tno": tno}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let inquiry = h.inquire_as("PAVC", tno).await;
    assert_eq!(
        (
            inquiry["stat_va_cd"].as_str(),
            inquiry["canc_time"].as_str()
        ),
        (Some("STSC"), Some("20260310120000"))
    );
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "8133");
    assert!(h.sandbox.notifications().is_empty());
}

#[tokio::test]
async fn a_lost_issuance_answer_still_issued_the_account_once() {
    let h = spawn().await;
    h.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse).when("ordr_idxx", "VA6"));
    let lost = h
        .client
        .post(h.url(paths::HUB_PAYMENT))
        .json(&vbank_issue("VA6"))
        .send()
        .await;
    assert!(lost.is_err(), "no answer arrives");
    let found = h.inquire_order_as("PAVC", "VA6").await;
    assert_eq!(found["stat_va_cd"], "STIS", "{found}");
    assert!(found["account"].as_str().unwrap().starts_with('T'));
    assert_eq!(h.pay(&vbank_issue("VA6")).await["res_cd"], "9520");
    assert_eq!(h.sandbox.ledger().len(), 1);
    assert_eq!(h.inquire_order_as("PACA", "VA6").await["res_cd"], "8201");
}

#[tokio::test]
async fn an_account_past_its_deadline_takes_no_deposit_but_a_reversal_still_goes_through() {
    let h = spawn().await;
    h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
    let issued = h.pay(&vbank_issue("VAdue")).await;
    let tno = issued["tno"].as_str().unwrap();
    assert_eq!(issued["va_date"], "20260317235959", "{issued}");
    h.sandbox.deposit(tno, 1000, "00").unwrap();

    h.clock.advance(chrono::TimeDelta::days(8));
    assert!(matches!(
        h.sandbox.deposit(tno, 6000, "00"),
        Err(DepositError::Expired)
    ));
    let refused = h
        .client
        .post(h.url("/_sandbox/vbank/deposit"))
        .json(&json!({"tno": tno, "amount": 6000}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("deadline"));
    let reversal = h.sandbox.deposit(tno, 1000, "13").unwrap();
    assert_eq!(reversal.total, 0);
}

/// A reversal (`op_cd` 13) takes back money the bank took in, never more: one larger than the
/// running total is refused (HTTP 400 at the control API, `ReversalOverTotal` from Rust) and
/// records nothing, and one whose amount is not given reverses the last deposit, not the whole
/// account. KCP's `totl_mnyx` is what a merchant keeps the account's money by; a sandbox whose
/// reversals clamped it at 0 announced money taken back that never arrived.
#[tokio::test]
async fn a_reversal_takes_back_the_last_deposit_and_never_more_than_was_deposited() {
    let h = spawn().await;
    h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
    let issued = h.pay(&vbank_issue("VArev")).await;
    let tno = issued["tno"].as_str().unwrap();
    let deposit = |body: serde_json::Value| {
        h.client
            .post(h.url("/_sandbox/vbank/deposit"))
            .json(&body)
            .send()
    };

    let nothing = deposit(json!({"tno": tno, "op_cd": "13"})).await.unwrap();
    assert_eq!(nothing.status(), 400, "nothing deposited to reverse");
    for amount in [3000, 1000] {
        let sent = deposit(json!({"tno": tno, "amount": amount}))
            .await
            .unwrap();
        assert_eq!(sent.status(), 200);
    }
    let too_much = deposit(json!({"tno": tno, "amount": 4001, "op_cd": "13"}))
        .await
        .unwrap();
    assert_eq!(too_much.status(), 400);
    assert!(too_much.text().await.unwrap().contains("4000 deposited"));
    assert!(matches!(
        h.sandbox.deposit(tno, 4001, "13"),
        Err(DepositError::ReversalOverTotal {
            amount: 4001,
            total: 4000
        })
    ));
    assert_eq!(
        h.sandbox.notifications().len(),
        2,
        "a refusal records nothing"
    );

    let last: serde_json::Value = deposit(json!({"tno": tno, "op_cd": "13"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (last["amount"].as_i64(), last["total"].as_i64()),
        (Some(1000), Some(3000)),
        "the last deposit reversed: {last}"
    );
    let rest = h.sandbox.deposit(tno, 3000, "13").unwrap();
    assert_eq!(rest.total, 0);
    assert!(matches!(
        h.sandbox.deposit(tno, 1, "13"),
        Err(DepositError::ReversalOverTotal {
            amount: 1,
            total: 0
        })
    ));
    assert_eq!(h.inquire_as("PAVC", tno).await["stat_va_cd"], "STIS");
}

/// A deposit and a revocation of the same account at once: the bank takes the money into an open
/// account and the close is refused (the account holds a deposit), or the close comes first and the
/// bank refuses the money. Never both: a deposit on a closed account is money nobody can find.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposit_and_a_revocation_at_once_never_leave_a_deposit_on_a_closed_account() {
    let h = std::sync::Arc::new(spawn().await);
    h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
    let mut pairs = Vec::new();
    for i in 0..60 {
        let tno = h.pay(&vbank_issue(&format!("VArace{i}"))).await["tno"]
            .as_str()
            .unwrap()
            .to_owned();
        let sandbox = h.sandbox.clone();
        let deposit_tno = tno.clone();
        let deposit =
            tokio::task::spawn_blocking(move || sandbox.deposit(&deposit_tno, 7000, "00"));
        let closer = h.clone();
        let close_tno = tno.clone();
        let close = tokio::spawn(async move { closer.cancel(&close_tno, "STSC", json!({})).await });
        pairs.push((tno, deposit, close));
    }
    for (tno, deposit, close) in pairs {
        let deposit = deposit.await.unwrap();
        let close = close.await.unwrap();
        match (&deposit, close["res_cd"].as_str()) {
            (Ok(_), Some("8508")) | (Err(DepositError::Closed), Some("0000")) => {}
            other => panic!("{tno}: {other:?}"),
        }
        let entry = h
            .sandbox
            .ledger()
            .into_iter()
            .find(|e| e.tno == tno)
            .unwrap();
        let expected = if deposit.is_ok() {
            TransactionState::Approved
        } else {
            TransactionState::Cancelled
        };
        assert_eq!(entry.state, expected, "{tno}");
    }
}

/// Two sandboxes of one process (as the gateway's tests run them, side by side), their clocks at
/// the same second: their first deposits' `noti_id`s differ. Each sandbox counted on its own, so
/// both were `<second>000001`, and a test counting log lines by `noti_id` counted the other's too.
#[tokio::test]
async fn two_sandboxes_of_one_process_never_give_the_same_noti_id_in_the_same_second() {
    let mut deposits = Vec::new();
    for order_no in ["VAONE", "VATWO"] {
        let h = spawn().await;
        let issued = h.pay(&vbank_issue(order_no)).await;
        assert_eq!(issued["res_cd"], "0000", "{issued}");
        h.sandbox.set_notify_url("*", "http://127.0.0.1:9/unused");
        let tno = issued["tno"].as_str().unwrap();
        deposits.push(h.sandbox.deposit(tno, 7000, "00").unwrap());
    }
    let (one, two) = (&deposits[0], &deposits[1]);
    assert_eq!(one.field("tx_tm"), two.field("tx_tm"), "the same second");
    assert_ne!(one.noti_id, two.noti_id);
    for deposit in [one, two] {
        let noti_id = &deposit.noti_id;
        assert_eq!(Some(noti_id.as_str()), deposit.field("noti_id"));
        assert!(
            noti_id.len() == 20 && noti_id.bytes().all(|b| b.is_ascii_digit()),
            "KCP time and a six-digit count: {noti_id}"
        );
        assert!(noti_id.starts_with(deposit.field("tx_tm").unwrap()));
    }
}
