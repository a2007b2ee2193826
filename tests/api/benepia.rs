//! Benepia welfare points (`/benepia/point`, `/benepia/payment`) and the cancels of point payments,
//! against the sandbox's point accounts (docs/sandbox.md §2.2).
use kcp_sandbox::test_points::{BENEPIA_01, BENEPIA_02};
use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{captured_logs, spawn_app, spawn_app_with, Receiver, TestApp, SETTLE_SECS};
use crate::ownership::{spawn_app_whose_held_calls_wait_for_their_gate, PATIENT_PAST_THE_LEASE};

async fn pay_points(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
    amount: i64,
    user: &str,
    password: &str,
) -> (StatusCode, Value) {
    app.post(
        "/benepia/payment",
        Some(token),
        json!({"benepia_user": user, "benepia_password": password, "benepia_member_code": BENEPIA_01.memcorp_cd,
               "merchant_uid": merchant_uid, "amount": amount, "name": "복지몰 상품",
               "buyer_name": "홍길동", "buyer_email": "buyer@example.com", "buyer_tel": "010-1234-5678",
               "channel_key": "channel-key-ignored"}),
    )
    .await
}

/// Pays with benepia01 and returns the paid Payment object.
pub(crate) async fn paid_with_points(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
    amount: i64,
) -> Value {
    let (status, body) = pay_points(
        app,
        token,
        merchant_uid,
        amount,
        BENEPIA_01.id,
        BENEPIA_01.password,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"]["status"], "paid", "{body}");
    body["response"].clone()
}

pub(crate) async fn cancel(
    app: &TestApp,
    token: &str,
    imp_uid: &Value,
    amount: Option<i64>,
) -> Value {
    let mut req = json!({"imp_uid": imp_uid, "reason": "고객 요청"});
    if let Some(a) = amount {
        req["amount"] = json!(a);
    }
    app.post("/payments/cancel", Some(token), req).await.1
}

pub(crate) async fn payment(app: &TestApp, token: &str, imp_uid: &Value) -> Value {
    let imp_uid = imp_uid.as_str().unwrap();
    app.get(&format!("/payments/{imp_uid}"), Some(token))
        .await
        .1["response"]
        .clone()
}

pub(crate) fn balance(app: &TestApp, id: &str) -> i64 {
    app.sandbox.point_balance(id).expect("sandbox account")
}

/// Arms `fault` (a lost, dropped, delayed, refused or altered answer) for the next `STRA` sent to
/// KCP, the one call of a partial point cancel.
fn the_next_stra_meets(app: &TestApp, fault: Fault) {
    app.sandbox
        .inject(FaultRule::new(paths::CANCEL, fault).when("mod_type", "STRA"));
}

#[tokio::test]
async fn the_balance_of_a_benepia_account_is_answered_as_point() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/benepia/point",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
                   "benepia_member_code": BENEPIA_01.memcorp_cd, "channel_key": "ignored"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(body["response"], json!({"point": 100_000}));
}

#[tokio::test]
async fn the_balance_call_accepts_a_form_body_and_refuses_a_wrong_password_with_code_1() {
    let app = spawn_app().await;
    let token = app.token().await;
    let form = |password: &'static str| {
        app.http
            .post(app.url("/benepia/point"))
            .header("Authorization", &token)
            .form(&[
                ("benepia_user", BENEPIA_02.id),
                ("benepia_password", password),
                ("benepia_member_code", BENEPIA_02.memcorp_cd),
            ])
            .send()
    };
    let (_, body) = TestApp::read(form(BENEPIA_02.password).await.unwrap()).await;
    assert_eq!(body["response"]["point"], 5_000, "{body}");
    let (status, body) = TestApp::read(form("not-the-password").await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], 1, "{body}");
    assert!(body["response"].is_null(), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("[8402]"),
        "{body}"
    );
    assert!(!body.to_string().contains("not-the-password"));
}

#[tokio::test]
async fn missing_benepia_fields_are_400_with_code_minus_1_naming_the_field() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (status, body) = app
        .post(
            "/benepia/point",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": "pw-no-echo-42"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], -1);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("benepia_member_code"));
    assert!(!body.to_string().contains("pw-no-echo-42"));
    let (status, body) = app
        .post(
            "/benepia/payment",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": "pw-no-echo-42",
                   "benepia_member_code": BENEPIA_01.memcorp_cd, "merchant_uid": "bp-missing", "name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], -1);
    assert!(body["message"].as_str().unwrap().contains("amount"));
    assert!(!body.to_string().contains("pw-no-echo-42"));
    assert!(app.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn credentials_kcp_cannot_take_are_400_before_anything_is_written() {
    let app = spawn_app().await;
    let token = app.token().await;
    // KCP's pt_idno and pt_pwd are String 16 (seed 003): 17 bytes is one too many.
    let long = "p".repeat(17);
    for (user, password) in [
        (BENEPIA_01.id, "pa,ss-no-echo"),
        (BENEPIA_01.id, long.as_str()),
        (long.as_str(), BENEPIA_01.password),
        // Six characters, 18 bytes: within the OpenAPI maxLength if it were counted in characters;
        // credentials are printable ASCII, so characters and KCP's bytes are one limit.
        (BENEPIA_01.id, "가나다라마바"),
        ("베네피아", BENEPIA_01.password),
        ("bene'pia", BENEPIA_01.password),
        (" benepia01", BENEPIA_01.password),
    ] {
        let (status, body) = pay_points(&app, &token, "bp-bad", 1000, user, password).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{user}: {body}");
        assert_eq!(body["code"], -1);
        assert!(!body.to_string().contains("pa,ss-no-echo"));
        let (status, body) = app
            .post(
                "/benepia/point",
                Some(&token),
                json!({"benepia_user": user, "benepia_password": password, "benepia_member_code": BENEPIA_01.memcorp_cd}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{user}: {body}");
    }
    let (status, _) = app.get("/payments/find/bp-bad", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no failed payment recorded");
    assert!(app.sandbox.ledger().is_empty());
}

/// KCP takes a member company code of at most 4 characters (`pt_memcorp_cd String 4`, seed 003):
/// a longer one is HTTP 400 naming the field, before a payment is recorded or KCP called.
#[tokio::test]
async fn a_benepia_member_code_over_4_bytes_is_400_before_anything_is_written() {
    let app = spawn_app().await;
    let token = app.token().await;
    let credentials = json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
                             "benepia_member_code": "B0001"});
    let mut payment = credentials.clone();
    payment.as_object_mut().unwrap().extend(
        json!({"merchant_uid": "bp-code", "amount": 1000, "name": "복지몰 상품"})
            .as_object()
            .unwrap()
            .clone(),
    );
    for (path, body) in [
        ("/benepia/point", credentials),
        ("/benepia/payment", payment),
    ] {
        let (status, answer) = app.post(path, Some(&token), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["code"], -1, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("benepia_member_code") && message.contains("4자"),
            "{answer}"
        );
    }
    let (status, _) = app.get("/payments/find/bp-code", Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no failed payment recorded");
    assert!(app.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn a_point_payment_is_paid_as_point_and_debits_the_account() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-1", 7_000).await;
    assert_eq!(p["pay_method"], "point");
    assert_eq!(p["pg_provider"], "kcp");
    assert_eq!(p["emb_pg_provider"], Value::Null);
    assert_eq!(p["amount"], 7_000);
    assert_eq!(p["name"], "복지몰 상품");
    assert!(p["paid_at"].as_i64().unwrap() > 0);
    for field in ["card_code", "card_name", "card_number", "card_type"] {
        assert_eq!(p[field], Value::Null, "{field}");
    }
    assert_eq!(p["card_quota"], 0);
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].pay_method, "PAPT");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str());
    assert_eq!(p["apply_num"], ledger[0].app_no.as_str());
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);
    assert_eq!(payment(&app, &token, &p["imp_uid"]).await, p);
    app.assert_ledger_agrees().await;
}

/// iamport's OpenAPI lists a Benepia payment KCP refuses as an error (`베네피아 포인트 결제 실패`),
/// not `again`'s `code 0` with `status "failed"`: a merchant taking `code 0` for points spent must
/// never see it for an unpaid order. HTTP 200 as every business refusal (never a 500 for the
/// buyer's wrong password); the failed payment stays on record for lookups.
#[tokio::test]
async fn a_wrong_password_and_too_few_points_are_code_1_and_leave_a_failed_payment_on_record() {
    let app = spawn_app().await;
    let token = app.token().await;
    for (uid, user, password, amount, code) in [
        ("bp-pw", BENEPIA_01.id, "wrong-pass", 1_000, "[8402]"),
        (
            "bp-short",
            BENEPIA_02.id,
            BENEPIA_02.password,
            10_000,
            "[8403]",
        ),
    ] {
        let (status, body) = pay_points(&app, &token, uid, amount, user, password).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["code"], 1, "{body}");
        assert!(body["response"].is_null(), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("포인트 결제에 실패하였습니다.") && message.contains(code),
            "{body}"
        );
        let (status, found) = app
            .get(&format!("/payments/find/{uid}"), Some(&token))
            .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let p = &found["response"];
        assert_eq!(p["status"], "failed", "{found}");
        assert_eq!(p["pay_method"], "point");
        assert!(p["imp_uid"].as_str().unwrap().starts_with("imp_"));
        assert!(p["failed_at"].as_i64().unwrap() > 0);
        assert!(
            p["fail_reason"].as_str().unwrap().starts_with(code),
            "{found}"
        );
    }
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    assert_eq!(balance(&app, BENEPIA_02.id), 5_000);
    // A failed merchant_uid can be paid again.
    paid_with_points(&app, &token, "bp-pw", 1_000).await;
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_full_cancel_of_a_point_payment_gives_the_points_back() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-full", 12_000).await;
    let c = cancel(&app, &token, &p["imp_uid"], None).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["status"], "cancelled");
    assert_eq!(c["response"]["cancel_amount"], 12_000);
    assert_eq!(c["response"]["pg_tid"], p["pg_tid"]);
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    assert!(matches!(
        app.sandbox.ledger()[0].state,
        TransactionState::Cancelled
    ));
    app.assert_ledger_agrees().await;
}

/// One STRA on the live tno, answered with the re-approval's new tno (docs/kcp.md §8.3): never a
/// full cancel (STSC) first, which KCP would make whatever became of the re-approval after it.
#[tokio::test]
async fn a_partial_cancel_of_points_is_one_reapproval_of_the_rest_under_a_new_tno_without_a_full_cancel(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-part", 10_000).await;
    let first_tno = p["pg_tid"].clone();
    // A full cancel would be refused: the partial ones must not need one.
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8888".into(),
                message: "STSC 거절".into(),
            },
        )
        .when("mod_type", "STSC")
        .times(10),
    );

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    let r = &c["response"];
    assert_eq!(r["cancel_amount"], 3_000);
    assert_eq!(r["amount"], 10_000);
    assert_ne!(
        r["pg_tid"], first_tno,
        "the re-approval's tno is the payment's"
    );
    let history = r["cancel_history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["amount"], 3_000);
    assert_eq!(history[0]["pg_tid"], first_tno);
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2);
    let modified: Vec<_> = ledger[0]
        .cancels
        .iter()
        .map(|c| c.mod_type.as_str())
        .collect();
    assert_eq!(modified, ["STRA"], "one call on the live tno");
    assert_eq!(ledger[1].reapproval_of.as_deref(), first_tno.as_str());
    assert_eq!(ledger[1].balance, 7_000);
    assert_eq!(r["pg_tid"], ledger[1].tno.as_str());
    app.assert_ledger_agrees().await;

    // A second partial cancel re-approves the re-approval; the rest is then cancelled with STSC.
    let c = cancel(&app, &token, &p["imp_uid"], Some(2_000)).await;
    assert_eq!(c["response"]["cancel_amount"], 5_000, "{c}");
    assert_eq!(balance(&app, BENEPIA_01.id), 95_000);
    app.assert_ledger_agrees().await;
    app.sandbox.clear_faults();
    let c = cancel(&app, &token, &p["imp_uid"], None).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["cancel_amount"], 10_000);
    assert_eq!(c["response"]["cancel_history"].as_array().unwrap().len(), 3);
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    app.assert_ledger_agrees().await;
}
/// Seed 003's examples answer STRA with the payment's own tno: KCP may re-approve the rest in
/// place (`stra_same_tno`), the trade then holding `mod_mny`. openport used to read the original
/// still approved as "both live" and made every such partial cancel a conflict for the operator
/// while KCP had given the points back. Now the same tno, approved for exactly the rest planned, is
/// the partial cancel applied: `pg_tid` unchanged, cumulative `cancel_amount`, one history entry
/// each; a later full cancel (STSC of what is left) works on the same tno.
#[tokio::test]
async fn a_partial_point_cancel_kcp_re_approves_under_the_same_tno_is_recorded() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-same", 10_000).await;
    let tno = p["pg_tid"].clone();
    app.sandbox.set_stra_same_tno(true);

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    let r = &c["response"];
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(r["cancel_amount"], 3_000, "{r}");
    assert_eq!(r["pg_tid"], tno, "re-approved in place: the same trade");
    assert_eq!(r["apply_num"], p["apply_num"], "{r}");
    let history = r["cancel_history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["amount"], 3_000);
    assert_eq!(history[0]["pg_tid"], tno);
    assert!(app.conflicts().await.is_empty());
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "no new trade: {ledger:?}");
    assert_eq!(
        (ledger[0].state, ledger[0].balance),
        (TransactionState::PartiallyCancelled, 7_000)
    );
    app.assert_ledger_agrees().await;

    let c = cancel(&app, &token, &p["imp_uid"], Some(2_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["cancel_amount"], 5_000, "{c}");
    assert_eq!(c["response"]["pg_tid"], tno);
    assert_eq!(balance(&app, BENEPIA_01.id), 95_000);
    app.assert_ledger_agrees().await;

    let c = cancel(&app, &token, &p["imp_uid"], None).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["cancel_amount"], 10_000, "{c}");
    assert_eq!(c["response"]["cancel_history"].as_array().unwrap().len(), 3);
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    assert!(matches!(
        app.sandbox.ledger()[0].state,
        TransactionState::Cancelled
    ));
    settled_with_nothing_open_and_no_conflict(&app).await;
}

/// The same KCP with the STRA's answer lost: the inquiry of the tno shows it approved for exactly
/// the rest planned, which only the STRA landing in place explains: recorded, not left to the
/// operator nor closed as not applied.
#[tokio::test]
async fn a_lost_answer_of_a_partial_point_cancel_kcp_re_approved_in_place_is_recorded() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-same-lost", 10_000).await;
    let tno = p["pg_tid"].clone();
    app.sandbox.set_stra_same_tno(true);
    the_next_stra_meets(&app, Fault::LoseResponse);

    let c = cancel(&app, &token, &p["imp_uid"], Some(4_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["cancel_amount"], 4_000, "{c}");
    assert_eq!(c["response"]["pg_tid"], tno);
    assert!(app.conflicts().await.is_empty());
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000);
    settled_with_nothing_open_and_no_conflict(&app).await;
}

/// Once every settle delay has passed and the resolver has run, the cancels KCP applied on the
/// payment's own tno (re-approved in place) have left nothing behind: no attempt open (no second
/// look, no STRA sent again), no conflict for the operator, and the record agrees with KCP's
/// ledger. The tail of the same-tno tests.
async fn settled_with_nothing_open_and_no_conflict(app: &TestApp) {
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// A same-tno answer whose trade KCP then shows holding another balance than the rest planned is
/// no in-place re-approval: a conflict for the operator, as before. Played by a KCP that approves
/// the rest beside the original (`stra_keeps_original`) while its answer names the original's tno:
/// the original still holds 10,000, not the 7,000 planned.
#[tokio::test]
async fn a_same_tno_reapproval_whose_trade_holds_another_balance_is_a_conflict() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-same-off", 10_000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let tno = p["pg_tid"].as_str().unwrap();
    app.sandbox.set_stra_keeps_original(true);
    next_reapproval_names(&app, tno);

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    assert!(note.contains("10000") && note.contains("7000"), "{note}");
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["cancel_amount"], 0, "{now}");
    assert_eq!(now["pg_tid"], tno, "{now}");
}

/// A STRA answered for other points than the rest asked (`pnt_amount` 5,000 for the 7,000 asked)
/// names a re-approval the record cannot explain: nothing is recorded (the payment keeps its
/// balance and its tno), the re-approval is left at KCP (a net-cancel would refund the rest too),
/// and the attempt is a conflict for the operator whose note names the STRA's re-approval; the
/// merchant hears "cancelled at KCP, the record disagrees", never "결제취소에 실패".
#[tokio::test]
async fn a_reapproval_kcp_answers_for_other_points_is_a_conflict_naming_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-other", 10_000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    the_next_stra_meets(
        &app,
        Fault::AnswerField {
            field: "pnt_amount".into(),
            value: "5000".into(),
        },
    );

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert_eq!(
        c["message"],
        format!(
            "PG사에서는 취소되었으나 결제 기록과 일치하지 않아 운영자 확인이 필요합니다. (imp_uid: {imp_uid}, attempt {})",
            conflicts[0].id
        ),
        "{c}"
    );
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    let names_it = format!("STRA re-approval {} mismatch: ", ledger[1].tno);
    assert!(note.starts_with(&names_it), "{note}");
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000, "left at KCP");
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(
        (now["status"].as_str(), now["cancel_amount"].as_i64()),
        (Some("paid"), Some(0)),
        "{now}"
    );
    assert_eq!(now["pg_tid"], p["pg_tid"], "{now}");
}

#[tokio::test]
async fn a_lost_point_payment_answer_is_recovered_by_the_papt_inquiry() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    let p = paid_with_points(&app, &token, "bp-lost", 4_000).await;
    assert_eq!(p["pay_method"], "point");
    assert_eq!(p["pg_tid"], app.sandbox.ledger()[0].tno.as_str());
    assert_eq!(p["card_name"], Value::Null);
    assert_eq!(balance(&app, BENEPIA_01.id), 96_000);
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_point_payment_that_never_reached_kcp_fails_once_settled_and_charges_nothing() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::Drop));
    let (_, body) = pay_points(
        &app,
        &token,
        "bp-drop",
        4_000,
        BENEPIA_01.id,
        BENEPIA_01.password,
    )
    .await;
    assert_eq!(body["code"], 1, "{body}");
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    let p = paid_with_points(&app, &token, "bp-drop", 4_000).await;
    assert_eq!(p["status"], "paid");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_lost_reapproval_answer_is_found_by_its_order_number() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-lost", 10_000).await;
    the_next_stra_meets(&app, Fault::LoseResponse);
    let c = cancel(&app, &token, &p["imp_uid"], Some(4_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["cancel_amount"], 4_000);
    assert_eq!(
        c["response"]["pg_tid"],
        app.sandbox.ledger()[1].tno.as_str()
    );
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000);
    app.assert_ledger_agrees().await;
}

/// A re-approval lost on its way leaves KCP's trade live: once settled, the inquiry of the
/// original tno closes the cancel as not applied, never re-sent on a guess.
#[tokio::test]
async fn a_reapproval_that_never_reached_kcp_leaves_the_payment_whole_and_is_closed_as_not_applied()
{
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-drop", 10_000).await;
    the_next_stra_meets(&app, Fault::Drop);
    let c = cancel(&app, &token, &p["imp_uid"], Some(4_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    assert_eq!(balance(&app, BENEPIA_01.id), 90_000);
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["status"], "paid");
    assert_eq!(now["cancel_amount"], 0);
    assert_eq!(now["cancel_history"], json!([]));
    // The open cancel attempt holds the payment: another cancel waits for it.
    let busy = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert_eq!(busy["code"], 1, "{busy}");

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let done = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(done["cancel_amount"], 0, "{done}");
    assert_eq!(done["pg_tid"], p["pg_tid"]);
    assert_eq!(balance(&app, BENEPIA_01.id), 90_000);
    assert_eq!(app.sandbox.ledger().len(), 1, "nothing re-approved");
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;

    // Not applied: the merchant may ask again.
    let again = cancel(&app, &token, &p["imp_uid"], Some(4_000)).await;
    assert_eq!(again["code"], 0, "{again}");
    assert_eq!(again["response"]["cancel_amount"], 4_000);
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000);
    app.resolve_all().await;
    app.assert_ledger_agrees().await;
}
#[tokio::test]
async fn the_benepia_password_never_appears_in_logs_or_answers() {
    let app = spawn_app().await;
    let token = app.token().await;
    let secret = "Zq9-bnp-Secret";
    let (_, body) = app
        .post(
            "/benepia/point",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": secret,
                   "benepia_member_code": BENEPIA_01.memcorp_cd}),
        )
        .await;
    assert_eq!(body["code"], 1, "{body}");
    let (status, body) = pay_points(&app, &token, "bp-log", 1_000, BENEPIA_01.id, secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], 1, "{body}");
    assert!(!body.to_string().contains(secret));
    paid_with_points(&app, &token, "bp-log-ok", 1_000).await;
    let logs = captured_logs();
    assert!(!logs.contains(secret), "the Benepia password was logged");
    assert!(
        !logs.contains(BENEPIA_01.password),
        "the Benepia password was logged"
    );
}

/// KCP takes 50 bytes of product name on a point re-approval (seed 003 §2.4), half of a payment's
/// 100: a partial cancel of a payment with a long Korean name re-approves the rest, cut to fit,
/// instead of being refused after its full cancel went through.
#[tokio::test]
async fn a_partial_point_cancel_of_a_payment_with_a_long_name_reapproves_the_rest() {
    let app = spawn_app().await;
    let token = app.token().await;
    let name = "복지몰 한정 특가 상품 세트 구성 안내".repeat(2); // 40 characters, 104 bytes
    let (_, body) = app
        .post(
            "/benepia/payment",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
                   "benepia_member_code": BENEPIA_01.memcorp_cd, "merchant_uid": "bp-long", "amount": 10_000,
                   "name": name}),
        )
        .await;
    assert_eq!(body["response"]["status"], "paid", "{body}");
    let c = cancel(&app, &token, &body["response"]["imp_uid"], Some(4_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["cancel_amount"], 4_000, "{c}");
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000);
    app.assert_ledger_agrees().await;
}

/// KCP refusing the re-approval refuses the partial cancel: STRA is the whole call, nothing was
/// cancelled before it.
#[tokio::test]
async fn a_refused_reapproval_cancels_nothing_and_is_answered_code_1_with_kcps_message() {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let (status, body) = app
        .post(
            "/benepia/payment",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
                   "benepia_member_code": BENEPIA_01.memcorp_cd, "merchant_uid": "bp-stra-refused",
                   "amount": 10_000, "name": "복지몰 상품", "buyer_name": "홍길동",
                   "notice_url": hooks.url("/hook")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = body["response"].clone();
    assert_eq!(p["status"], "paid", "{body}");
    let statuses = || async {
        app.app.gateway.deliver_due_webhooks(100).await.unwrap();
        hooks
            .requests()
            .iter()
            .map(|r| r.json()["status"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses().await, ["paid"]);
    the_next_stra_meets(
        &app,
        Fault::Refuse {
            code: "8888".into(),
            message: "재승인 불가".into(),
        },
    );

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;

    assert_eq!(c["code"], 1, "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("재승인 불가"),
        "{c}"
    );
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["status"], "paid", "{now}");
    assert_eq!(now["cancel_amount"], 0, "{now}");
    assert_eq!(balance(&app, BENEPIA_01.id), 90_000, "nothing moved");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].state, TransactionState::Approved);
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());
    app.assert_ledger_agrees().await;
    assert_eq!(statuses().await, ["paid"], "no cancel to announce");
}
/// A re-approval whose answer was lost, whose original KCP shows cancelled and which KCP cannot
/// find under its order number: KCP holds something neither outcome explains (every point back,
/// or a re-approval the inquiry misses). Never guessed: a conflict for the operator once settled,
/// and the payment takes no cancel meanwhile.
#[tokio::test]
async fn a_lost_reapproval_kcp_cannot_find_under_its_order_number_is_left_to_the_operator() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-unfound", 10_000).await;
    the_next_stra_meets(&app, Fault::LoseResponse);
    // Every inquiry by order number (tno "") answers "no such trade".
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::Refuse {
                code: "8201".into(),
                message: "해당 거래가 존재하지 않습니다.".into(),
            },
        )
        .when("tno", "")
        .times(100),
    );

    let c = cancel(&app, &token, &p["imp_uid"], Some(4_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0
    );
    assert!(app.conflicts().await.is_empty(), "not before it is settled");

    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(100).await.unwrap();
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, p["imp_uid"].as_str().unwrap());
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0,
        "not recorded on a guess"
    );
    let again = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "held for the operator: {again}"
    );
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000, "what KCP did");
}
/// A cancel attempt whose request stopped before it renamed the attempt to the payment's current
/// tno never reached KCP; the resolver closes it as not sent. Inquired, its old tno (cancelled by
/// the partial cancel that re-approved the rest under a new one) would have passed for this
/// attempt's own cancel, with KCP still holding the new tno's points.
#[tokio::test]
async fn an_open_cancel_naming_a_tno_the_payment_no_longer_holds_is_closed_as_never_sent() {
    use openport::store::entity::pg_attempt;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stale", 10_000).await;
    let old_tno = p["pg_tid"].as_str().unwrap().to_string();
    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    assert_ne!(c["response"]["pg_tid"], old_tno.as_str());

    // What a second cancel, planned from a read taken before the first completed, leaves when its
    // process dies between opening its attempt and renaming it.
    let record =
        openport::store::payments::live_by_merchant_uid(&app.app.gateway.db.read, 1, "bp-stale")
            .await
            .unwrap()
            .expect("the payment");
    let now = app.app.gateway.clock.unix();
    let stale = openport::store::payments::insert_attempt(
        &app.app.gateway.db.write,
        pg_attempt::ActiveModel {
            payment_id: Set(record.id),
            tno: Set(Some(old_tno.clone())),
            reason: Set(Some("고객 요청".into())),
            ..openport::service::attempts::new_attempt(
                "cancel",
                record.order_no.clone(),
                2_000,
                now,
            )
        },
    )
    .await
    .unwrap();

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let closed = pg_attempt::Entity::find()
        .filter(pg_attempt::Column::Id.eq(stale.id))
        .one(&app.app.gateway.db.read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.state, "failed", "{closed:?}");
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["cancel_amount"], 3_000, "{now}");
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);
    app.assert_ledger_agrees().await;
}

/// What a partial point cancel of an older openport (STSC, then STRA on the cancelled tno) left
/// open when its STSC went through and its STRA was still owed: the cancel attempt
/// `reapprove_pending`, under the re-approval's order number `<order_no>R<attempt id>`. The
/// payment of 10,000 is paid by benepia01, its tno cancelled at KCP (the points back).
async fn owed_by_an_older_version(app: &TestApp, token: &str, merchant_uid: &str) -> Value {
    let p = paid_with_points(app, token, merchant_uid, 10_000).await;
    let tno = p["pg_tid"].as_str().unwrap().to_string();
    assert!(
        app.sandbox.cancel_in_admin(&tno),
        "the older version's STSC"
    );
    left_owing_a_reapproval(app, merchant_uid, &tno).await;
    p
}

/// A re-approval (`STRA`) of `amount` points on trade `tno` under `order_no`, sent to KCP with the
/// demo merchant's own connector as openport's cancel would send it, behind openport's back (an
/// older version's, or one landing late): the re-approval's tno.
pub(crate) async fn reapproved_at_kcp(
    app: &TestApp,
    tno: &str,
    amount: i64,
    order_no: &str,
) -> String {
    let gateway = &app.app.gateway;
    let merchant = openport::store::merchants::by_id(&gateway.db.read, 1)
        .await
        .unwrap()
        .expect("the merchant");
    gateway
        .connectors
        .for_merchant(&merchant, &gateway.secrets)
        .unwrap()
        .reapprove_points(tno, amount, order_no, "복지몰 상품")
        .await
        .expect("the re-approval at KCP")
        .tno
}

/// The cancel attempt (4,000) of [`owed_by_an_older_version`] on the payment of `merchant_uid`,
/// whose tno is `tno`, `reapprove_pending` under `<order_no>R<attempt id>`; that order number.
pub(crate) async fn left_owing_a_reapproval(
    app: &TestApp,
    merchant_uid: &str,
    tno: &str,
) -> String {
    use openport::store::entity::pg_attempt;
    use sea_orm::{ActiveModelTrait, Set};
    let tno = tno.to_string();
    let gateway = &app.app.gateway;
    let record = openport::store::payments::live_by_merchant_uid(&gateway.db.read, 1, merchant_uid)
        .await
        .unwrap()
        .expect("the payment");
    let now = gateway.clock.unix();
    let opened = openport::store::payments::insert_attempt(
        &gateway.db.write,
        pg_attempt::ActiveModel {
            payment_id: Set(record.id),
            tno: Set(Some(tno)),
            reason: Set(Some("고객 요청".into())),
            ..openport::service::attempts::new_attempt(
                "cancel",
                record.order_no.clone(),
                4_000,
                now,
            )
        },
    )
    .await
    .unwrap();
    let reorder = format!("{}R{}", record.order_no, opened.id);
    let mut a: pg_attempt::ActiveModel = opened.into();
    a.state = Set("unknown".into());
    a.result_message = Set(Some(format!(
        "reapprove_pending: STSC done, STRA owed as {reorder}"
    )));
    a.order_no = Set(reorder.clone());
    a.update(&gateway.db.write).await.unwrap();
    reorder
}

/// Upgrading with such an attempt open: the resolver still finishes it the older way. Against a
/// KCP that refuses STRA on a cancelled trade (this sandbox's reading, docs/kcp.md §8.3) and holds
/// no re-approval, every point is back with the member, and the payment is recorded cancelled in
/// full, with a `cancelled` webhook whatever the request asked.
#[tokio::test]
async fn a_reapproval_an_older_version_owed_is_settled_by_the_resolver_as_what_kcp_holds() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = owed_by_an_older_version(&app, &token, "bp-older").await;
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let done = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["cancel_amount"], 10_000, "{done}");
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// Where an inquiry by order number is not trusted (real KCP), the owed re-approval's "not found"
/// proves nothing until an operator finds nothing under its order number in KCP's admin: the one
/// cancel `attempt confirm-absent` takes (every other is refused, tests/api/reliability.rs).
#[tokio::test]
async fn an_operators_word_settles_a_reapproval_an_older_version_owed_where_order_numbers_are_not_trusted(
) {
    let app = spawn_app_with(|c| c.kcp.order_no_inquiry = Some(false)).await;
    let token = app.token().await;
    let p = owed_by_an_older_version(&app, &token, "bp-older-word").await;
    app.advance(SETTLE_SECS + 1);
    app.app.gateway.resolve_due(100).await.unwrap();
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "left open without the word: {open:?}");

    let settled = app
        .app
        .gateway
        .confirm_absent_at_kcp(open[0].id, &open[0].order_no)
        .await
        .unwrap();

    assert_eq!(settled.state, "succeeded", "{settled:?}");
    let done = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    app.assert_ledger_agrees().await;
}

/// The older way's STRA, which the resolver sends, is not sent again before a settle delay has
/// passed since it was sent: KCP may still be applying the first, and "not found" meanwhile proves
/// nothing.
#[tokio::test]
async fn a_reapproval_an_older_version_owed_is_not_sent_again_before_a_settle_delay_after_it() {
    let settle = 30;
    let app = spawn_app_with(|c| c.resolver.settle_secs = settle).await;
    let token = app.token().await;
    let p = owed_by_an_older_version(&app, &token, "bp-older-wait").await;
    // Two re-approvals that never reach KCP: each one sent consumes one.
    app.sandbox.inject(
        FaultRule::new(paths::CANCEL, Fault::Drop)
            .when("mod_type", "STRA")
            .times(2),
    );
    let stra_left = |app: &TestApp| {
        app.sandbox
            .armed_faults()
            .iter()
            .find(|r| r.when == Some(("mod_type".into(), "STRA".into())))
            .map_or(0, |r| r.times)
    };

    app.advance(settle + 1);
    app.app.gateway.resolve_due(100).await.unwrap();
    assert_eq!(stra_left(&app), 1, "the resolver sent the re-approval");
    // The resolver's backoff after a second unknown outcome (20 s) has passed, the settle delay
    // since the STRA has not.
    app.advance(21);
    app.app.gateway.resolve_due(100).await.unwrap();
    assert_eq!(stra_left(&app), 1, "not sent again so soon");
    app.advance(settle);
    app.app.gateway.resolve_due(100).await.unwrap();
    assert_eq!(stra_left(&app), 0, "sent again once settled");
    app.resolve_all().await;
    let done = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(done["cancel_amount"], 10_000, "{done}");
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000);
    app.assert_ledger_agrees().await;
}

/// KCP answering a partial point cancel with "already cancelled" (the points went back through
/// KCP's admin) is not a refusal that leaves the payment paid for good: the attempt is a conflict
/// for the operator, and further cancels wait for the operator's reconciliation.
#[tokio::test]
async fn a_partial_point_cancel_kcp_says_is_already_cancelled_is_left_to_the_operator() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-admin", 10_000).await;
    assert!(app.sandbox.cancel_in_admin(p["pg_tid"].as_str().unwrap()));
    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("운영자 확인"),
        "{c}"
    );
    let again = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "held for the operator: {again}"
    );
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000, "nothing re-approved");
    assert_eq!(app.sandbox.ledger().len(), 1, "no re-approval");
}

/// The merchant's answer to a cancel closed as conflict `attempt` of `imp_uid`: the operator's
/// wording (service/cancel.rs `conflict_refusal`), never "cancelled" nor "not cancelled".
fn operator_wording(imp_uid: &str, attempt: i64) -> String {
    format!(
        "이 결제건은 PG사 내역과 일치하지 않아 운영자 확인이 필요합니다. (imp_uid: {imp_uid}, attempt {attempt})"
    )
}

/// Seed 003 does not say what `STRA` does to the trade it names (docs/kcp.md §8.3). A KCP that
/// approves the rest as a new trade and leaves the original approved has taken the member's
/// points twice: openport, asking KCP about the original before it records anything, finds it
/// still approved. The partial cancel is not recorded (the payment keeps its whole balance and
/// its tno), nothing more is sent to KCP, the attempt is listed as a conflict naming both trades
/// and their amounts, and the merchant gets the operator's wording.
#[tokio::test]
async fn a_reapproval_that_leaves_the_original_trade_live_is_a_conflict_not_a_partial_cancel() {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-both", 10_000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let original = p["pg_tid"].as_str().unwrap();
    app.sandbox.set_stra_keeps_original(true);

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;

    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let conflict = &conflicts[0];
    assert_eq!(
        (conflict.imp_uid.as_str(), conflict.kind.as_str()),
        (imp_uid, "cancel")
    );
    assert_eq!(c["code"], 1, "{c}");
    assert_eq!(c["message"], operator_wording(imp_uid, conflict.id), "{c}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    let reapproval = &ledger[1];
    assert_eq!(reapproval.reapproval_of.as_deref(), Some(original));
    assert_eq!(
        (ledger[0].state, ledger[0].balance),
        (TransactionState::Approved, 10_000),
        "KCP left the original approved"
    );
    assert_eq!(
        (reapproval.state, reapproval.balance),
        (TransactionState::Approved, 7_000)
    );
    let note = conflict.result_message.clone().unwrap_or_default();
    for named in [original, reapproval.tno.as_str(), "10000", "7000"] {
        assert!(note.contains(named), "the note names {named}: {note}");
    }
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["status"], "paid", "{now}");
    assert_eq!(now["cancel_amount"], 0, "{now}");
    assert_eq!(now["pg_tid"], original, "{now}");
    assert_eq!(now["cancel_history"], json!([]), "{now}");
    assert_eq!(balance(&app, BENEPIA_01.id), 83_000, "what KCP took");

    // Nothing is left open for the resolver, and nothing more reaches KCP: no net-cancel of
    // either trade, no second STRA. Further cancels wait for the operator.
    assert!(app.app.gateway.open_attempts(10).await.unwrap().is_empty());
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let again = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "held for the operator: {again}"
    );
    assert_eq!(app.sandbox.ledger(), ledger, "nothing more sent to KCP");
    assert_eq!(app.conflicts().await.len(), 1);
}

/// The same KCP with the `STRA`'s answer lost: the original still approved once settled used to
/// close the cancel as not applied (the merchant told "not cancelled" and free to send it again,
/// the member charged a third time). The resolver looks for the re-approval under its order
/// number first and, finding it beside the live original, closes the cancel as a conflict.
#[tokio::test]
async fn a_lost_reapproval_answer_found_beside_a_live_original_is_a_conflict_not_a_cancel_not_applied(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-both-lost", 10_000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    let original = p["pg_tid"].as_str().unwrap();
    app.sandbox.set_stra_keeps_original(true);
    the_next_stra_meets(&app, Fault::LoseResponse);

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    assert!(app.conflicts().await.is_empty(), "not before it is settled");

    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(100).await.unwrap();
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    let reapproval = app.sandbox.ledger()[1].tno.clone();
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    assert!(
        note.contains(original) && note.contains(&reapproval),
        "{note}"
    );
    assert!(
        app.app.gateway.open_attempts(10).await.unwrap().is_empty(),
        "no second look at a cancel \"not applied\""
    );
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["cancel_amount"], 0, "{now}");
    assert_eq!(now["pg_tid"], original, "{now}");
    let again = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "never sent again: {again}"
    );
    assert_eq!(app.sandbox.ledger().len(), 2);
    assert_eq!(balance(&app, BENEPIA_01.id), 83_000);
}

/// A re-approval KCP confirms whose original trade cannot be inquired right after: the outcome
/// is unknown, never guessed either way. The cancel stays open (the merchant is told it is being
/// checked) and the resolver, once settled, decides it by the same check: against a KCP that
/// cancelled the original the partial cancel is recorded; against one that left it approved it
/// is a conflict.
#[tokio::test]
async fn a_confirmed_reapproval_whose_original_cannot_be_inquired_is_left_open_and_the_resolver_checks_the_original(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let cut = paid_with_points(&app, &token, "bp-stra-unasked-1", 10_000).await;
    let both = paid_with_points(&app, &token, "bp-stra-unasked-2", 10_000).await;
    let unanswered = |p: &Value| {
        FaultRule::new(paths::INQUIRY, Fault::HttpStatus { status: 503 })
            .when("tno", p["pg_tid"].as_str().unwrap())
    };
    app.sandbox.inject(unanswered(&cut));
    let c = cancel(&app, &token, &cut["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("자동으로 확인"),
        "{c}"
    );
    app.sandbox.set_stra_keeps_original(true);
    app.sandbox.inject(unanswered(&both));
    let c = cancel(&app, &token, &both["imp_uid"], Some(3_000)).await;
    assert!(
        c["message"].as_str().unwrap().contains("자동으로 확인"),
        "{c}"
    );
    assert!(app.sandbox.armed_faults().is_empty());
    assert_eq!(app.app.gateway.open_attempts(10).await.unwrap().len(), 2);
    for p in [&cut, &both] {
        let now = payment(&app, &token, &p["imp_uid"]).await;
        assert_eq!(now["cancel_amount"], 0, "nothing recorded yet: {now}");
    }

    app.advance(SETTLE_SECS + 20);
    app.resolve_all().await;

    let recorded = payment(&app, &token, &cut["imp_uid"]).await;
    assert_eq!(recorded["cancel_amount"], 3_000, "{recorded}");
    assert_eq!(recorded["pg_tid"], app.sandbox.ledger()[2].tno.as_str());
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, both["imp_uid"].as_str().unwrap());
    let kept = payment(&app, &token, &both["imp_uid"]).await;
    assert_eq!(kept["cancel_amount"], 0, "{kept}");
    assert_eq!(kept["pg_tid"], both["pg_tid"], "{kept}");
    assert_eq!(app.sandbox.ledger().len(), 4, "one STRA each, nothing more");
}

/// KCP refusing a partial point cancel as "no such trade" (8201, `DeclineReason::NoSuchTrade`)
/// contradicts its own approval of a payment openport holds paid, as for a card cancel refused so
/// (service/resolve.rs `refused_cancel`): the attempt is listed as a conflict and the merchant
/// gets the operator's wording, never "결제취소에 실패" with nothing listed.
#[tokio::test]
async fn a_partial_point_cancel_kcp_refuses_as_no_such_trade_is_listed_for_the_operator_not_answered_as_a_failure(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-8201", 10_000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    the_next_stra_meets(
        &app,
        Fault::Refuse {
            code: "8201".into(),
            message: "해당 거래가 존재하지 않습니다.".into(),
        },
    );

    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;

    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert!(
        conflicts[0]
            .result_message
            .as_deref()
            .unwrap_or_default()
            .contains("8201"),
        "{conflicts:?}"
    );
    assert_eq!(c["code"], 1, "{c}");
    assert_eq!(
        c["message"],
        operator_wording(imp_uid, conflicts[0].id),
        "{c}"
    );
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["status"], "paid", "{now}");
    assert_eq!(now["cancel_amount"], 0, "{now}");
    assert_eq!(balance(&app, BENEPIA_01.id), 90_000, "nothing moved");
    assert_eq!(app.sandbox.ledger().len(), 1);
    let again = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "held for the operator: {again}"
    );
}

/// A partial point cancel (3,000) of `p` in the background, KCP holding its `STRA` unapplied at
/// gate [`STRA_HELD`] until the test opens it (within the request's KCP timeout: the tests run it
/// on [`spawn_app_whose_held_calls_wait_for_their_gate`], whose timeout a slow machine does not
/// reach first); returns once the STRA has reached KCP, with the request still waiting for its
/// answer.
async fn cancel_with_its_stra_held(
    app: &TestApp,
    token: &str,
    p: &Value,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    the_next_stra_meets(
        app,
        Fault::HoldRequest {
            gate: STRA_HELD.into(),
        },
    );
    let request = app.cancel_in_background(token, p["imp_uid"].as_str().unwrap(), 3_000);
    app.sandbox.until_held(STRA_HELD).await;
    request
}

/// Where [`cancel_with_its_stra_held`] holds the STRA.
const STRA_HELD: &str = "stra-held";

/// KCP confirms a partial point cancel's STRA to its request while the resolver, which took the
/// attempt over, still waits for its inquiry's stale "approved" of the old tno. The request
/// records the re-approval: never closed as "not applied" while KCP holds only the rest.
#[tokio::test]
async fn a_reapproval_kcp_confirms_while_the_resolver_still_inquires_is_recorded() {
    let app = spawn_app_whose_held_calls_wait_for_their_gate().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-held", 10_000).await;
    let request = cancel_with_its_stra_held(&app, &token, &p).await;
    // Past the request's lease: the resolver takes the cancel over and asks KCP about the old
    // tno before the STRA is applied; the answer arrives after KCP confirmed the STRA.
    app.advance(PATIENT_PAST_THE_LEASE);
    let inquiry = "resolver-inquiry";
    let resolver = app.resolve_due_with_its_inquiry_held(inquiry).await;
    app.sandbox.open_gate(STRA_HELD);

    let (_, body) = request.await.unwrap();
    app.sandbox.open_gate(inquiry);
    assert_eq!(resolver.await.unwrap().unwrap(), 1);
    app.resolve_all().await;
    assert_eq!(body["code"], 0, "{body}");
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["cancel_amount"], 3_000, "{now}");
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);
    app.assert_ledger_agrees().await;
}

/// The same STRA confirmed only after the resolver closed the attempt as not applied: KCP holds
/// the rest under a new tno and the record does not say so. Never answered "not cancelled": a
/// conflict for the operator, and the payment takes no cancel until it is reconciled.
#[tokio::test]
async fn a_reapproval_kcp_confirms_after_the_resolver_closed_it_as_not_applied_is_a_conflict() {
    let app = spawn_app_whose_held_calls_wait_for_their_gate().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-late", 10_000).await;
    let request = cancel_with_its_stra_held(&app, &token, &p).await;
    app.advance(PATIENT_PAST_THE_LEASE);
    assert_eq!(app.app.gateway.resolve_due(10).await.unwrap(), 1);
    app.sandbox.open_gate(STRA_HELD);

    let (_, body) = request.await.unwrap();
    assert_eq!(body["code"], 1, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("PG사에서는 취소되었으나"),
        "{body}"
    );
    assert_eq!(
        balance(&app, BENEPIA_01.id),
        93_000,
        "KCP re-approved the rest"
    );
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, p["imp_uid"].as_str().unwrap());
    let again = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "held for the operator: {again}"
    );
}

/// A partial point cancel's STRA that KCP applies after the resolver closed it as not applied has
/// cancelled the payment's tno and re-approved the rest under one the record does not know: the
/// second look finds the tno cancelled at KCP and leaves it to the operator (recording it an hour
/// after the merchant was told "not cancelled" would be a guess), holding further cancels
/// meanwhile.
#[tokio::test]
async fn a_reapproval_kcp_applies_after_it_was_closed_as_not_applied_is_found_by_a_second_look_as_a_conflict(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-later", 10_000).await;
    let gate = "bp-stra-later";
    the_next_stra_meets(&app, Fault::HoldRequest { gate: gate.into() });
    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    crate::helpers::kcp_applies_the_held_call(&app, gate, "KCP applied it since", || {
        balance(&app, BENEPIA_01.id) == 93_000
    })
    .await;
    assert!(app.conflicts().await.is_empty());

    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].kind, openport::service::cancel_recheck::KIND);
    assert_eq!(conflicts[0].imp_uid, p["imp_uid"].as_str().unwrap());
    let again = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "held for the operator: {again}"
    );
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0
    );
}

/// A partial point cancel whose STRA answer is lost and whose inquiry says "no such trade" (8201)
/// for the payment's tno: KCP contradicts its own approval, and whether the STRA landed (here it
/// did: the rest is re-approved) is for the operator to find out. The merchant gets the operator's
/// wording naming the attempt, never "결제취소에 실패", the attempt is listed as a conflict, and
/// the payment takes no other cancel meanwhile.
#[tokio::test]
async fn a_partial_point_cancel_whose_answer_is_lost_and_whose_inquiry_says_no_such_trade_is_the_operators(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-absent", 10_000).await;
    let imp_uid = p["imp_uid"].as_str().unwrap();
    the_next_stra_meets(&app, Fault::LoseResponse);
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::Refuse {
                code: "8201".into(),
                message: "해당 거래가 존재하지 않습니다.".into(),
            },
        )
        .times(100),
    );

    let c = cancel(&app, &token, &p["imp_uid"], Some(4_000)).await;

    assert_eq!(c["code"], 1, "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(message.contains("운영자 확인"), "{c}");
    assert!(!message.contains("실패"), "never a plain failure: {c}");
    assert!(!message.contains("자동으로"), "not the resolver's: {c}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, imp_uid);
    assert!(
        message.contains(imp_uid) && message.contains(&format!("attempt {}", conflicts[0].id)),
        "{c}"
    );
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000, "KCP applied the STRA");
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0
    );
    let again = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert!(
        again["message"].as_str().unwrap().contains("운영자 확인"),
        "held for the operator: {again}"
    );
}

/// An older version's partial cancel whose re-approval did reach KCP and was then cancelled in
/// KCP's admin (openport never learnt its tno): the original went back whole with the STSC, the
/// rest with the re-approval's cancel, and KCP holds nothing for the payment. The resolver records
/// what KCP holds, the whole balance cancelled, instead of leaving a
/// payment that shows 10,000 paid while every point is back with the member.
#[tokio::test]
async fn a_reapproval_an_older_version_owed_found_cancelled_at_kcp_is_recorded_as_the_whole_payment_cancelled(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-older-undone", 10_000).await;
    let tno = p["pg_tid"].as_str().unwrap().to_string();
    let reorder = left_owing_a_reapproval(&app, "bp-older-undone", &tno).await;
    // The older version's cancel and re-approval at KCP (this sandbox takes STRA on the live tno
    // only, which cancels it as the STSC did), then the re-approval cancelled in KCP's admin.
    let reapproval = reapproved_at_kcp(&app, &tno, 6_000, &reorder).await;
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000);
    assert!(app.sandbox.cancel_in_admin(&reapproval));
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000, "every point back");

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let done = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["cancel_amount"], 10_000, "{done}");
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// An older version's owed re-approval that KCP approves for another amount than the rest (its
/// answer's `pnt_amount` 5,000 for the 6,000 asked): the older STSC cancelled the original, and
/// KCP holds a re-approval the record cannot explain. Closed as a conflict naming that
/// re-approval, listed for the operator and left at KCP (never net-cancelled: that would refund
/// the rest too), as this version's own STRA answered so is; the payment keeps its record, every
/// cancel of it is answered with the operator's wording (never "결제취소에 실패"), and KCP's notice
/// of the original's cancel is left to the operator too.
#[tokio::test]
async fn a_reapproval_an_older_version_owed_that_kcp_approves_for_another_amount_is_left_to_the_operator(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-older-other", 10_000).await;
    let tno = p["pg_tid"].as_str().unwrap().to_string();
    // The older version's STSC is stood for by the STRA itself: this sandbox takes STRA on the
    // live tno only, which cancels it as the STSC did.
    let reorder = left_owing_a_reapproval(&app, "bp-older-other", &tno).await;
    the_next_stra_meets(
        &app,
        Fault::AnswerField {
            field: "pnt_amount".into(),
            value: "5000".into(),
        },
    );

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    let reapproval = ledger[1].tno.clone();
    assert_eq!(ledger[1].order_no, reorder);
    assert_eq!(
        balance(&app, BENEPIA_01.id),
        94_000,
        "the re-approval stays at KCP"
    );
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, p["imp_uid"].as_str().unwrap());
    assert_eq!(conflicts[0].order_no, reorder);
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    assert!(
        note.starts_with("reapprove_pending: re-approval") && note.contains("mismatch"),
        "the owed STRA's answer: {note}"
    );
    assert!(note.contains(&reapproval), "names the re-approval: {note}");
    let shown = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_amount"].as_i64()),
        (Some("paid"), Some(0)),
        "left for the operator: {shown}"
    );
    let c = cancel(&app, &token, &p["imp_uid"], Some(1_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("운영자 확인")
            && message.contains(&format!("attempt {}", conflicts[0].id)),
        "{c}"
    );
    assert!(!message.contains("실패"), "never a plain failure: {c}");

    let answer = app
        .http
        .post(app.url("/kcp/notify"))
        .form(&[
            ("site_cd", "T0000"),
            ("tno", tno.as_str()),
            ("tx_cd", "TX06"),
            ("tx_tm", "20261208120000"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("value=\"0000\""), "{answer}");
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0,
        "a notice of the original's cancel records nothing the operator has not settled"
    );
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000);
}

/// Cancels `tno` in KCP's admin, lets the sandbox post its own notice of it (`TX06`, spec §2.12)
/// and waits until openport has acknowledged it: by then openport has judged it.
pub(crate) async fn cancelled_in_kcps_admin_and_acknowledged(app: &TestApp, tno: &str) {
    let sent = app
        .sandbox
        .cancel_in_admin_notified(tno)
        .expect("cancelled and notified");
    assert_eq!(sent.tx_cd, "TX06");
    for _ in 0..200 {
        if app
            .sandbox
            .notifications()
            .iter()
            .any(|n| n.noti_id == sent.noti_id && n.acknowledged)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("openport never acknowledged KCP's notice of {tno}");
}

/// The statuses of the webhooks `hooks` got so far, once every due one is sent.
pub(crate) async fn webhook_statuses(app: &TestApp, hooks: &Receiver) -> Vec<String> {
    app.app.gateway.deliver_due_webhooks(100).await.unwrap();
    hooks
        .requests()
        .iter()
        .map(|r| r.json()["status"].as_str().unwrap().to_string())
        .collect()
}

/// A point payment, made in KCP's window (`TPNT`) or with `POST /benepia/payment`, that the
/// merchant's staff cancel in KCP's admin: KCP's `TX06` is checked by the point inquiry (`PAPT`)
/// and recorded with a `cancelled` webhook, as a card's is. It used to be acknowledged and
/// ignored, leaving the payment `paid` while every point was back with the member.
#[tokio::test]
async fn a_point_payment_cancelled_in_kcps_admin_is_recorded_from_kcps_tx06_with_a_cancelled_webhook(
) {
    for window in [true, false] {
        let app = spawn_app().await;
        let token = app.token().await;
        let hooks = Receiver::start().await;
        let p = if window {
            let rsp = crate::checkout::request_pay(
                &app,
                json!({"pay_method": "point", "merchant_uid": "bp-admin-window", "amount": 2500,
                       "notice_url": hooks.url("/hook")}),
                &[("pin", "1234567890123456"), ("action", "pay")],
            )
            .await;
            assert_eq!(rsp["status"], "paid", "{rsp}");
            payment(&app, &token, &rsp["imp_uid"]).await
        } else {
            let (_, body) = app
                .post(
                    "/benepia/payment",
                    Some(&token),
                    json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
                           "benepia_member_code": BENEPIA_01.memcorp_cd,
                           "merchant_uid": "bp-admin-hub", "amount": 2500, "name": "복지몰 상품",
                           "notice_url": hooks.url("/hook")}),
                )
                .await;
            body["response"].clone()
        };
        assert_eq!(p["status"], "paid", "window {window}: {p}");
        assert_eq!(p["pay_method"], "point", "window {window}: {p}");
        assert_eq!(webhook_statuses(&app, &hooks).await, ["paid"]);

        cancelled_in_kcps_admin_and_acknowledged(&app, p["pg_tid"].as_str().unwrap()).await;

        let shown = payment(&app, &token, &p["imp_uid"]).await;
        assert_eq!(
            (
                shown["status"].as_str(),
                shown["cancel_amount"].as_i64(),
                shown["cancel_history"][0]["reason"].as_str()
            ),
            (Some("cancelled"), Some(2500), Some("PG사 취소 통보 (TX06)")),
            "window {window}: {shown}"
        );
        assert_eq!(
            webhook_statuses(&app, &hooks).await,
            ["paid", "cancelled"],
            "window {window}"
        );
        assert!(app.conflicts().await.is_empty(), "window {window}");
        app.assert_ledger_agrees().await;
    }
}

/// After a partial cancel the payment's trade is the re-approval, under a new tno that no cancel
/// attempt names. Cancelled in KCP's admin, KCP's notice names that tno: openport finds the
/// payment by it and records the rest cancelled with a `cancelled` webhook. It used to keep the
/// notice as one of "a trade no payment holds".
#[tokio::test]
async fn a_benepia_payment_partly_cancelled_and_then_cancelled_in_kcps_admin_is_found_by_the_reapprovals_tno(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let hooks = Receiver::start().await;
    let (_, body) = app
        .post(
            "/benepia/payment",
            Some(&token),
            json!({"benepia_user": BENEPIA_01.id, "benepia_password": BENEPIA_01.password,
                   "benepia_member_code": BENEPIA_01.memcorp_cd, "merchant_uid": "bp-admin-rest",
                   "amount": 10_000, "name": "복지몰 상품", "notice_url": hooks.url("/hook")}),
        )
        .await;
    let p = body["response"].clone();
    assert_eq!(p["status"], "paid", "{body}");
    assert_eq!(webhook_statuses(&app, &hooks).await, ["paid"]);
    let c = cancel(&app, &token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 0, "{c}");
    let reapproval = c["response"]["pg_tid"].as_str().unwrap().to_string();
    assert_ne!(reapproval, p["pg_tid"].as_str().unwrap());
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);

    cancelled_in_kcps_admin_and_acknowledged(&app, &reapproval).await;

    assert_eq!(balance(&app, BENEPIA_01.id), 100_000, "every point back");
    let shown = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert_eq!(shown["cancel_amount"], 10_000, "{shown}");
    let history = shown["cancel_history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{shown}");
    assert_eq!(history[1]["amount"], 7_000, "{shown}");
    assert_eq!(history[1]["reason"], "PG사 취소 통보 (TX06)", "{shown}");
    assert_eq!(history[1]["pg_tid"], reapproval.as_str(), "{shown}");
    // The partial API cancel asked for no webhook; KCP's cancel is announced.
    assert_eq!(webhook_statuses(&app, &hooks).await, ["paid", "cancelled"]);
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// A partial point cancel of 3,000 (of 10,000) whose STRA never reached KCP, closed as not applied
/// once settled (KCP still held the tno live) with its second look due an hour later; then the
/// same STRA lands at KCP after all, under the order number the attempt named: KCP cancels the
/// payment's tno (unless it plays the third reading, `stra_keeps_original`) and holds the rest
/// under a re-approval the record does not know. The payment, its tno and the re-approval's.
async fn reapproved_after_closed(
    app: &TestApp,
    token: &str,
    merchant_uid: &str,
) -> (Value, String, String) {
    let p = paid_with_points(app, token, merchant_uid, 10_000).await;
    let tno = p["pg_tid"].as_str().unwrap().to_string();
    the_next_stra_meets(app, Fault::Drop);
    let c = cancel(app, token, &p["imp_uid"], Some(3_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    app.advance(SETTLE_SECS + 20);
    app.app.gateway.resolve_due(10).await.unwrap();
    let open = app.app.gateway.open_attempts(10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].kind, openport::service::cancel_recheck::KIND);
    // The STRA lands late, under the order number the attempt named.
    let reapproval = reapproved_at_kcp(app, &tno, 7_000, &open[0].order_no).await;
    (p, tno, reapproval)
}

/// [`reapproved_after_closed`]'s late STRA, then a notice of the payment's tno cancelled (here
/// posted as KCP would, `TX06`): not recorded as the whole payment cancelled, which would tell the
/// merchant every point went back while KCP holds 7,000 of them. It is left to the second look,
/// which makes it a conflict for the operator.
#[tokio::test]
async fn a_notice_of_a_tno_a_late_reapproval_cancelled_is_left_to_the_second_look_not_recorded_as_the_whole_payment_cancelled(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let (p, tno, _) = reapproved_after_closed(&app, &token, "bp-stra-notice").await;
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);

    let answer = app
        .http
        .post(app.url("/kcp/notify"))
        .form(&[
            ("site_cd", "T0000"),
            ("tno", tno.as_str()),
            ("tx_cd", "TX06"),
            ("tx_tm", "20261205120000"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("value=\"0000\""), "{answer}");

    let shown = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(
        (shown["status"].as_str(), shown["cancel_amount"].as_i64()),
        (Some("paid"), Some(0)),
        "{shown}"
    );
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].kind, openport::service::cancel_recheck::KIND);
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0
    );
}

/// [`reapproved_after_closed`]'s late STRA, then the merchant cancels the whole payment: `STSC` on
/// the payment's tno meets KCP's "already cancelled" (8133, the STRA cancelled it), whose inquiry
/// shows that tno cancelled. That used to be recorded as the 10,000 refunded, answered code 0,
/// while KCP kept 7,000 points under the re-approval, which no payment named and no conflict
/// listed. The re-approval is looked up under the order number of the cancel's second look and,
/// found approved, the cancel is a conflict naming both trades, answered with the operator's
/// wording; nothing is recorded, then or when the second look runs.
#[tokio::test]
async fn a_full_cancel_after_a_late_reapproval_is_a_conflict_not_recorded_as_every_point_back() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (p, tno, reapproval) = reapproved_after_closed(&app, &token, "bp-stra-full").await;
    let imp_uid = p["imp_uid"].as_str().unwrap();

    let c = cancel(&app, &token, &p["imp_uid"], None).await;

    assert_ne!(c["code"], 0, "{c}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].kind, "cancel");
    assert_eq!(
        c["message"],
        operator_wording(imp_uid, conflicts[0].id),
        "{c}"
    );
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    for named in [tno.as_str(), reapproval.as_str()] {
        assert!(note.contains(named), "the note names {named}: {note}");
    }
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0
    );
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(
        (now["status"].as_str(), now["cancel_amount"].as_i64()),
        (Some("paid"), Some(0)),
        "{now}"
    );
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000, "KCP keeps the rest");
}

/// The same, with KCP refusing the full cancel otherwise than as "already cancelled" (any refusal
/// is checked against KCP's balance, service/resolve.rs `refused_cancel`): the payment's tno shown
/// cancelled is not read as this cancel landed either.
#[tokio::test]
async fn a_full_cancel_kcp_refuses_after_a_late_reapproval_is_a_conflict_too() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (p, tno, reapproval) = reapproved_after_closed(&app, &token, "bp-stra-refused").await;
    app.sandbox.inject(
        FaultRule::new(
            paths::CANCEL,
            Fault::Refuse {
                code: "8999".into(),
                message: "취소 불가".into(),
            },
        )
        .when("mod_type", "STSC"),
    );

    let c = cancel(&app, &token, &p["imp_uid"], None).await;

    assert_ne!(c["code"], 0, "{c}");
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    for named in [tno.as_str(), reapproval.as_str()] {
        assert!(note.contains(named), "the note names {named}: {note}");
    }
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        0
    );
    assert_eq!(balance(&app, BENEPIA_01.id), 93_000);
}

/// [`reapproved_after_closed`]'s late re-approval cancelled in KCP's admin before the merchant
/// cancels the whole payment: KCP holds nothing for it any more (the payment's tno cancelled by
/// the STRA, the rest by the admin's cancel), so the full cancel is recorded as KCP holds it, the
/// payment naming the re-approval (what KCP's notices of it name), as a lost re-approval found
/// cancelled is; the second look then has nothing to look for.
#[tokio::test]
async fn a_full_cancel_after_a_late_reapproval_cancelled_in_kcps_admin_is_recorded_naming_the_reapproval(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let (p, _, reapproval) = reapproved_after_closed(&app, &token, "bp-stra-undone-late").await;
    assert!(app.sandbox.cancel_in_admin(&reapproval));
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000, "every point back");

    let c = cancel(&app, &token, &p["imp_uid"], None).await;

    assert_eq!(c["code"], 0, "{c}");
    assert_eq!(c["response"]["status"], "cancelled", "{c}");
    assert_eq!(c["response"]["cancel_amount"], 10_000, "{c}");
    assert_eq!(c["response"]["pg_tid"], reapproval.as_str(), "{c}");
    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;
    assert!(app.conflicts().await.is_empty());
    assert_eq!(
        payment(&app, &token, &p["imp_uid"]).await["cancel_amount"],
        10_000
    );
    app.assert_ledger_agrees().await;
}

/// Under the third reading (`stra_keeps_original`: KCP approves the rest as a new trade and leaves
/// the original approved), [`reapproved_after_closed`]'s late STRA leaves the payment's tno whole,
/// so its second look, comparing that tno's balance only, closed the cancel as still not applied
/// while the member had paid 7,000 more. The look asks for the re-approval under the cancel's
/// order number too, as the resolver's first look does, and finds both trades live: a conflict.
#[tokio::test]
async fn a_second_look_finds_a_late_reapproval_beside_a_live_original_as_a_conflict() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox.set_stra_keeps_original(true);
    let (p, tno, reapproval) = reapproved_after_closed(&app, &token, "bp-stra-both-late").await;
    assert_eq!(balance(&app, BENEPIA_01.id), 83_000, "both taken");

    app.advance(30 * SETTLE_SECS);
    app.resolve_all().await;

    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].kind, openport::service::cancel_recheck::KIND);
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    for named in [tno.as_str(), reapproval.as_str()] {
        assert!(note.contains(named), "the note names {named}: {note}");
    }
    let now = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(now["cancel_amount"], 0, "{now}");
}

/// This version's partial point cancel (one `STRA` on the live tno) whose answer is lost, and
/// whose re-approval is cancelled in KCP's admin before anyone looked it up: KCP holds nothing
/// for the payment (the original cancelled by the `STRA`, the rest by the admin's cancel), so the
/// whole balance is recorded cancelled, naming the re-approval. It used to be closed as a
/// conflict, the payment showing 6,000 won of points KCP no longer held.
#[tokio::test]
async fn a_lost_reapproval_cancelled_in_kcps_admin_before_it_was_found_is_recorded_as_the_whole_payment_cancelled(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let p = paid_with_points(&app, &token, "bp-stra-undone", 10_000).await;
    the_next_stra_meets(&app, Fault::LoseResponse);
    // The request's own look by order number fails: the resolver looks later.
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop).when("tno", ""));
    let c = cancel(&app, &token, &p["imp_uid"], Some(4_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    let ledger = app.sandbox.ledger();
    assert_eq!(
        ledger.len(),
        2,
        "the original and its re-approval: {ledger:?}"
    );
    let reapproval = ledger[1].tno.clone();
    assert_eq!(balance(&app, BENEPIA_01.id), 94_000);
    assert!(app.sandbox.cancel_in_admin(&reapproval));
    assert_eq!(balance(&app, BENEPIA_01.id), 100_000, "every point back");

    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;

    let done = payment(&app, &token, &p["imp_uid"]).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["cancel_amount"], 10_000, "{done}");
    assert_eq!(done["pg_tid"], reapproval.as_str(), "{done}");
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// Arms KCP's answers to the next `STRA` to name trade `tno` as the re-approval's.
fn next_reapproval_names(app: &TestApp, tno: &str) {
    the_next_stra_meets(
        app,
        Fault::AnswerField {
            field: "tno".into(),
            value: tno.into(),
        },
    );
}

/// What a re-approval naming another payment's trade leaves: the cancel attempt a conflict for
/// the operator naming that trade, the payment still under its own trade with nothing cancelled,
/// the other payment untouched, and a further cancel refused with the operator's wording.
async fn left_as_a_conflict(app: &TestApp, token: &str, pa: &Value, pb: &Value) {
    let t_pa = pa["pg_tid"].as_str().unwrap();
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].imp_uid, pb["imp_uid"].as_str().unwrap());
    assert_eq!(conflicts[0].kind, "cancel", "{conflicts:?}");
    let note = conflicts[0].result_message.clone().unwrap_or_default();
    assert!(
        note.contains(t_pa),
        "names the other payment's trade: {note}"
    );
    assert!(
        note.contains(pa["imp_uid"].as_str().unwrap()),
        "and that payment: {note}"
    );
    let shown = payment(app, token, &pb["imp_uid"]).await;
    assert_eq!(shown["pg_tid"], pb["pg_tid"], "{shown}");
    assert_eq!(shown["cancel_amount"], 0, "{shown}");
    let other = payment(app, token, &pa["imp_uid"]).await;
    assert_eq!(other["pg_tid"], t_pa, "{other}");
    assert_eq!(other["cancel_amount"], 0, "{other}");
    assert_eq!(other["status"], "paid", "{other}");
    let c = cancel(app, token, &pb["imp_uid"], Some(1_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("운영자 확인"),
        "{c}"
    );
}

/// Review r1 F3: a `STRA` answer naming another payment's trade as the re-approval would move this
/// payment onto that trade, whose next cancel would refund another member. The database refused
/// it: a database error, the cancel answered "confirmed automatically" and its attempt left open
/// on the payment's only cancel slot. Like a re-approval of another amount, it is a conflict for
/// the operator, nothing recorded.
#[tokio::test]
async fn a_reapproval_naming_another_payments_trade_is_a_conflict() {
    let app = spawn_app().await;
    let token = app.token().await;
    let pa = paid_with_points(&app, &token, "bp-clash-a", 3_000).await;
    let pb = paid_with_points(&app, &token, "bp-clash-b", 10_000).await;
    next_reapproval_names(&app, pa["pg_tid"].as_str().unwrap());

    let c = cancel(&app, &token, &pb["imp_uid"], Some(4_000)).await;

    assert_eq!(c["code"], 1, "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("운영자 확인"),
        "the operator's, never 'confirmed automatically': {c}"
    );
    assert!(app.sandbox.armed_faults().is_empty(), "the STRA was sent");
    app.advance(SETTLE_SECS + 1);
    app.app.gateway.resolve_due(10).await.unwrap();
    left_as_a_conflict(&app, &token, &pa, &pb).await;
}

/// The same re-approval found by the resolver, after the `STRA` answer was lost, under the
/// re-approval's order number (an inquiry checks the order only): a conflict, never a database
/// error on every pass while KCP's answer names that trade.
#[tokio::test]
async fn a_lost_reapproval_found_naming_another_payments_trade_is_a_conflict() {
    let app = spawn_app().await;
    let token = app.token().await;
    let pa = paid_with_points(&app, &token, "bp-clash-la", 3_000).await;
    let pb = paid_with_points(&app, &token, "bp-clash-lb", 10_000).await;
    the_next_stra_meets(&app, Fault::LoseResponse);
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let c = cancel(&app, &token, &pb["imp_uid"], Some(4_000)).await;
    assert_eq!(c["code"], 1, "{c}");
    // The original's inquiry (by its tno) is answered as it is; the re-approval's (by its order
    // number) names PA's trade, on every pass.
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Delay { ms: 0 }));
    app.sandbox.inject(
        FaultRule::new(
            paths::INQUIRY,
            Fault::AnswerField {
                field: "tno".into(),
                value: pa["pg_tid"].as_str().unwrap().into(),
            },
        )
        .times(5),
    );

    for _ in 0..2 {
        app.advance(SETTLE_SECS + 100);
        app.app.gateway.resolve_due(10).await.unwrap();
    }

    left_as_a_conflict(&app, &token, &pa, &pb).await;
}
