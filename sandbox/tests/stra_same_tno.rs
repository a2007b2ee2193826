//! The `stra_same_tno` switch (docs/sandbox.md §2.2): a point re-approval (`STRA`) that keeps the
//! trade and lowers what it holds to `mod_mny`, answering the trade's own tno, as seed 003's
//! examples can be read, switched on over the control API.
mod common;

use common::*;
use kcp_sandbox::test_points::BENEPIA_01;
use kcp_sandbox::TransactionState;
use serde_json::{json, Value};

#[tokio::test]
async fn switched_on_a_reapproval_keeps_the_trade_and_its_tno_and_gives_the_difference_back() {
    let harness = spawn().await;
    assert_eq!(
        harness.get_json("/_sandbox/settings").await["stra_same_tno"],
        false,
        "off by default"
    );
    let on = harness
        .client
        .post(harness.url("/_sandbox/settings"))
        .json(&json!({"stra_same_tno": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(on.status(), 200);
    assert_eq!(on.json::<Value>().await.unwrap()["stra_same_tno"], true);
    assert!(harness.sandbox.stra_same_tno());
    let paid = harness
        .pay(&point_pay(&BENEPIA_01, "ptinplace", "10000"))
        .await;
    let tno = paid["tno"].as_str().unwrap().to_owned();

    let reply = harness.reapprove(&tno, "7000", "ptinplace2").await;

    assert_eq!(reply["res_cd"], "0000", "{reply}");
    assert_eq!(reply["tno"], tno.as_str(), "the same tno");
    assert_eq!(reply["pnt_amount"], "7000");
    assert_eq!(reply["pnt_app_no"], paid["pnt_app_no"]);
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(93_000));
    let ledger = harness.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "no new trade");
    assert_eq!(
        (
            ledger[0].state,
            ledger[0].balance,
            ledger[0].order_no.as_str()
        ),
        (TransactionState::PartiallyCancelled, 7_000, "ptinplace")
    );
    assert_eq!(ledger[0].cancels[0].mod_type, "STRA");
    assert_eq!(ledger[0].cancels[0].amount, 3_000);
    let inquired = harness.inquire_as("PAPT", &tno).await;
    assert_eq!(inquired["stat_pt_cd"], "STPC", "{inquired}");
    assert_eq!(inquired["rem_mny"], "7000");

    // The same refusals: a re-approval of the whole balance left is a full cancel (STSC).
    let whole = harness.reapprove(&tno, "7000", "ptinplace3").await;
    assert_eq!(whole["res_cd"], "8105", "{whole}");
    let cancelled = harness.cancel(&tno, "STSC", json!({})).await;
    assert_eq!(cancelled["res_cd"], "0000", "{cancelled}");
    assert_eq!(harness.sandbox.point_balance(BENEPIA_01.id), Some(100_000));
}
