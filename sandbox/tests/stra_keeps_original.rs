//! The `stra_keeps_original` switch (docs/sandbox.md §2.2): a point re-approval (`STRA`) that
//! approves `mod_mny` under a new tno and leaves the original trade approved, a reading of seed
//! 003 KCP has not ruled out, switched on over the control API.
mod common;

use common::*;
use kcp_sandbox::test_points::BENEPIA_01;
use kcp_sandbox::TransactionState;
use serde_json::{json, Value};

async fn switch(harness: &Harness, body: Value) -> reqwest::Response {
    harness
        .client
        .post(harness.url("/_sandbox/settings"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn switched_on_a_reapproval_approves_the_rest_anew_and_leaves_the_original_trade_approved() {
    let harness = spawn().await;
    assert_eq!(
        harness.get_json("/_sandbox/settings").await["stra_keeps_original"],
        false,
        "off by default: STRA cancels the live trade"
    );
    let on = switch(&harness, json!({"stra_keeps_original": true})).await;
    assert_eq!(on.status(), 200);
    assert_eq!(
        on.json::<Value>().await.unwrap()["stra_keeps_original"],
        true
    );
    assert!(harness.sandbox.stra_keeps_original());
    let paid = harness
        .pay(&point_pay(&BENEPIA_01, "ptkeep", "10000"))
        .await;
    let tno = paid["tno"].as_str().unwrap().to_owned();

    let reply = harness.reapprove(&tno, "7000", "ptkeep2").await;

    assert_eq!(reply["res_cd"], "0000", "{reply}");
    let new_tno = reply["tno"].as_str().unwrap().to_owned();
    assert_ne!(new_tno, tno);
    assert_eq!(reply["pnt_amount"], "7000");
    assert_eq!(
        harness.sandbox.point_balance(BENEPIA_01.id),
        Some(83_000),
        "the member paid both"
    );
    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].state, TransactionState::Approved);
    assert_eq!(ledger[0].balance, 10_000);
    assert!(ledger[0].cancels.is_empty());
    assert_eq!(ledger[0].reapproved_by, None);
    assert_eq!(ledger[1].tno, new_tno);
    assert_eq!(ledger[1].order_no, "ptkeep2");
    assert_eq!(ledger[1].state, TransactionState::Approved);
    assert_eq!(ledger[1].balance, 7_000);
    assert_eq!(ledger[1].reapproval_of.as_deref(), Some(tno.as_str()));
    let original = harness.inquire_as("PAPT", &tno).await;
    assert_eq!(original["stat_pt_cd"], "STSR", "{original}");
    assert_eq!(original["rem_mny"], "10000");
    let found = harness.inquire_order_as("PAPT", "ptkeep2").await;
    assert_eq!(found["tno"], new_tno.as_str());

    // The same refusals as the default reading: a full cancel is STSC.
    let whole = harness.reapprove(&tno, "10000", "ptkeep3").await;
    assert_eq!(whole["res_cd"], "8105", "{whole}");

    // Switched off again, STRA cancels the live trade.
    let off = switch(&harness, json!({"stra_keeps_original": false})).await;
    assert_eq!(off.status(), 200);
    let paid = harness.pay(&point_pay(&BENEPIA_01, "ptcut", "5000")).await;
    let cut = harness
        .reapprove(paid["tno"].as_str().unwrap(), "2000", "ptcut2")
        .await;
    assert_eq!(cut["res_cd"], "0000", "{cut}");
    assert_eq!(
        harness.sandbox.ledger()[2].state,
        TransactionState::Cancelled
    );
}

/// `mod_ordr_idxx` is optional (seed 003 §2.4): a re-approval without it, or with the original's
/// order number, keeps the original's. Switched on, that is KCP's own second trade on an order
/// whose first still stands, not a merchant's repeated charge: it is approved as the default
/// reading approves it, not refused by the sandbox's duplicate-order rule (`9520`), which no
/// source gives for it. Another order's standing number is still refused.
#[tokio::test]
async fn switched_on_a_reapproval_keeping_the_original_order_number_is_approved_not_refused_9520() {
    let harness = spawn().await;
    harness.sandbox.set_stra_keeps_original(true);
    assert!(harness.sandbox.refuses_duplicate_orders(), "the default");
    let paid = harness
        .pay(&point_pay(&BENEPIA_01, "ptsame", "10000"))
        .await;
    let tno = paid["tno"].as_str().unwrap().to_owned();

    let without = harness
        .cancel(&tno, "STRA", json!({"mod_mny": "7000"}))
        .await;
    assert_eq!(without["res_cd"], "0000", "{without}");
    let named = harness.reapprove(&tno, "2000", "ptsame").await;
    assert_eq!(named["res_cd"], "0000", "{named}");

    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 3);
    for (entry, amount) in ledger.iter().zip([10_000, 7_000, 2_000]) {
        assert_eq!(
            (entry.order_no.as_str(), entry.state, entry.balance),
            ("ptsame", TransactionState::Approved, amount),
            "{entry:?}"
        );
    }
    assert_eq!(ledger[1].reapproval_of.as_deref(), Some(tno.as_str()));
    assert_eq!(
        harness.sandbox.point_balance(BENEPIA_01.id),
        Some(81_000),
        "the member paid all three"
    );

    let other = harness
        .pay(&point_pay(&BENEPIA_01, "ptother", "1000"))
        .await;
    assert_eq!(other["res_cd"], "0000", "{other}");
    let taken = harness.reapprove(&tno, "3000", "ptother").await;
    assert_eq!(taken["res_cd"], "9520", "another order's number: {taken}");
}

#[tokio::test]
async fn a_setting_the_sandbox_does_not_know_is_refused_and_changes_nothing() {
    let harness = spawn().await;
    let misspelt = switch(&harness, json!({"stra_keep_original": true})).await;
    assert_eq!(misspelt.status(), 422);
    assert!(!harness.sandbox.stra_keeps_original());
}
