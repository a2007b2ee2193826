//! Browser checkout through HTTP, the way a browser drives it: request_pay's server side, the
//! hand-off page, KCP's window (sandbox), the post back to Ret_URL, and the answer.
use serde_json::{json, Value};

use kcp_sandbox::{paths, Fault, FaultRule, TransactionState};

use crate::helpers::{spawn_app, TestApp, SETTLE_SECS};

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The action and the named inputs of the first form of a page.
fn form(html: &str) -> (String, Vec<(String, String)>) {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        Some(unescape(&tag[start..start + tag[start..].find('"')?]))
    };
    let form_start = html.find("<form").expect("a form");
    let form_tag = &html[form_start..form_start + html[form_start..].find('>').unwrap()];
    let action = attr(form_tag, "action").unwrap_or_default();
    let mut fields = Vec::new();
    let mut rest = &html[form_start..];
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..i + rest[i..].find('>').unwrap()];
        if let Some(name) = attr(tag, "name") {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[i + 6..];
    }
    (action, fields)
}

async fn post_form(app: &TestApp, url: &str, fields: &[(String, String)]) -> String {
    app.http
        .post(url)
        .form(fields)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Starts one request_pay (not mobile) and follows it to the hand-off page: the PayUrl and the
/// fields the page posts there.
async fn hand_off(app: &TestApp, params: Value) -> (String, Vec<(String, String)>) {
    hand_off_from(app, json!({"imp_code": "imp00000000", "params": params, "mobile": false, "page_url": "http://shop.test/cart"})).await
}

/// [`hand_off`] for a whole checkout request body (mobile, page_url).
async fn hand_off_from(app: &TestApp, body: Value) -> (String, Vec<(String, String)>) {
    let (_, pay_url, fields) = started_from(app, body).await;
    (pay_url, fields)
}

/// [`hand_off_from`] with the `start_url` the hand-off page was loaded from.
async fn started_from(app: &TestApp, body: Value) -> (String, String, Vec<(String, String)>) {
    let (_, started) = app.post("/checkout/request", None, body).await;
    assert_eq!(started["code"], 0, "{started}");
    let start_url = started["response"]["start_url"]
        .as_str()
        .unwrap()
        .to_string();
    let page = app
        .http
        .get(&start_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (pay_url, fields) = match pc_script(&page) {
        // What KCP's PC script posts into its layer's frame: the form's fields and the page's
        // origin, to the PC window next to the script.
        Some(script) => {
            let (_, mut fields) = form(&page);
            fields.push((
                kcp_sandbox::pc_window::PAGE_ORIGIN_FIELD.to_string(),
                "http://shop.test".to_string(),
            ));
            let base = script.split("/plugin/").next().unwrap().to_string();
            (format!("{base}{}", kcp_sandbox::paths::PC_WINDOW), fields)
        }
        None => form(&page),
    };
    (start_url, pay_url, fields)
}

/// A PC checkout request of 1,000 won as `merchant_uid`, from the shop's cart page.
fn pc_checkout(merchant_uid: &str) -> Value {
    json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
           "params": {"merchant_uid": merchant_uid, "amount": 1000}})
}

/// The overlay's close button of the checkout started at `start_url`: what it answers.
async fn close_the_overlay(app: &TestApp, start_url: &str) -> Value {
    let session = start_url.rsplit('/').next().unwrap();
    let (_, closed) = app
        .post(
            &format!("/checkout/session/{session}/cancel"),
            None,
            json!({}),
        )
        .await;
    closed
}

/// The KCP PC script a hand-off page loads (spec/kcp.md §1.1), if it is a PC-flow page.
fn pc_script(page: &str) -> Option<String> {
    let at = page.find("<script src=\"")? + 13;
    Some(page[at..at + page[at..].find('"')?].to_string())
}

/// Posts the hand-off fields to the window and enters `fill`: the `Ret_URL` and the fields the
/// window's result page posts there (not posted yet).
async fn window_result(
    app: &TestApp,
    pay_url: &str,
    fields: &[(String, String)],
    fill: &[(&str, &str)],
) -> (String, Vec<(String, String)>) {
    let window = post_form(app, pay_url, fields).await;
    assert!(window.contains("id=\"pay\""), "{window}");
    let (submit, mut entered) = form(&window);
    let submit = format!("{}{}", pay_url.split("/pay/").next().unwrap(), submit);
    for (k, v) in fill {
        entered.push((k.to_string(), v.to_string()));
    }
    let back = post_form(app, &submit, &entered).await;
    if !pay_url.ends_with(kcp_sandbox::paths::PC_WINDOW) {
        return form(&back);
    }
    // The PC window hands its answer to the page, whose m_Completepayment posts the form
    // (the hand-off fields, filled with the answer) to Ret_URL.
    let (_, answer) = form(&back);
    let mut posted: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| {
            k != kcp_sandbox::pc_window::PAGE_ORIGIN_FIELD && !answer.iter().any(|(a, _)| a == k)
        })
        .cloned()
        .collect();
    posted.extend(answer);
    let ret_url = field(fields, "Ret_URL").expect("Ret_URL").to_string();
    (ret_url, posted)
}

/// Posts the hand-off fields to the window, enters `fill`, and follows the post back to
/// `Ret_URL`: the `rsp` the result page hands to the merchant page.
async fn through_window(
    app: &TestApp,
    pay_url: &str,
    fields: &[(String, String)],
    fill: &[(&str, &str)],
) -> Value {
    let (ret_url, result) = window_result(app, pay_url, fields, fill).await;
    rsp_of(&post_form(app, &ret_url, &result).await)
}

/// Runs one request_pay through the window; `fill` adds what the buyer enters. Other test
/// modules pay by bank transfer, phone or gift certificate with it: only the window can.
pub(crate) async fn request_pay(app: &TestApp, params: Value, fill: &[(&str, &str)]) -> Value {
    let (pay_url, fields) = hand_off(app, params).await;
    through_window(app, &pay_url, &fields, fill).await
}

#[tokio::test]
async fn a_card_payment_through_the_window_is_paid_and_verifiable_over_rest() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"pg": "kcp", "pay_method": "card", "merchant_uid": "web-1", "name": "포인트 1,000", "amount": 1000, "buyer_name": "홍길동"}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(rsp["status"], "paid");
    assert_eq!(rsp["paid_amount"], 1000);
    let token = app.token().await;
    let (_, p) = app
        .get(
            &format!("/payments/{}", rsp["imp_uid"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(p["response"]["status"], "paid", "{p}");
    assert_eq!(p["response"]["channel"], "pc");
    assert_eq!(p["response"]["card_number"], "411111******1111");
    assert_eq!(
        rsp["receipt_url"], p["response"]["receipt_url"],
        "the callback names KCP's slip as the lookup does"
    );
    assert!(
        rsp["receipt_url"].as_str().is_some_and(
            |u| u.starts_with("https://testadmin8.kcp.co.kr/") && u.contains("cmd=card_bill")
        ),
        "{rsp}"
    );
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn the_buyer_cancelling_in_the_window_fails_the_payment_without_a_charge() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-2", "amount": 1000}),
        &[("action", "cancel")],
    )
    .await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_code"], "3001");
    assert!(app.sandbox.ledger().is_empty());
}

/// The bank-transfer window's answer with the buyer's choice of cash receipt (`""`: none, `0`
/// 소득공제용, `1` 지출증빙용) posted back to `Ret_URL`; the payment as the merchant sees it.
async fn bank_transfer_with_cash_receipt(app: &TestApp, merchant_uid: &str, kind: &str) -> Value {
    let (pay_url, fields) = hand_off(
        app,
        json!({"pay_method": "trans", "merchant_uid": merchant_uid, "amount": 3000}),
    )
    .await;
    let (ret_url, result) = window_result(
        app,
        &pay_url,
        &fields,
        &[("bank", "BK20"), ("cash_receipt", kind), ("action", "pay")],
    )
    .await;
    let answered = |name: &str| {
        result
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let asked = !kind.is_empty();
    assert_eq!(answered("cash_yn"), if asked { "Y" } else { "N" });
    assert_eq!(
        answered("cash_tr_code"),
        kind,
        "KCP names the kind asked for"
    );
    let rsp = rsp_of(&post_form(app, &ret_url, &result).await);
    assert_eq!(rsp["status"], "paid", "{rsp}");
    payment_of(app, &rsp).await
}

#[tokio::test]
async fn a_bank_transfer_whose_window_issued_a_cash_receipt_shows_it_issued() {
    let app = spawn_app().await;
    let issued = bank_transfer_with_cash_receipt(&app, "web-cash-1", "0").await;
    assert_eq!(issued["cash_receipt_issued"], true, "{issued}");
    let proof = bank_transfer_with_cash_receipt(&app, "web-cash-2", "1").await;
    assert_eq!(proof["cash_receipt_issued"], true, "{proof}");
    let none = bank_transfer_with_cash_receipt(&app, "web-cash-3", "").await;
    assert_eq!(none["cash_receipt_issued"], false, "{none}");
}

/// KCP issues a virtual account's cash receipt for the cash received: asked for in the window,
/// it shows issued once the deposit is in.
#[tokio::test]
async fn a_virtual_accounts_cash_receipt_shows_issued_once_the_deposit_is_in() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-cash-vbank", "amount": 5000}),
        &[("bank", "BK04"), ("cash_receipt", "0"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["status"], "ready", "{rsp}");
    let waiting = payment_of(&app, &rsp).await;
    assert_eq!(
        waiting["cash_receipt_issued"], false,
        "nothing received yet"
    );
    let token = app.token().await;
    crate::vbanks::deposit_until_paid(&app, &token, &waiting).await;
    let paid = payment_of(&app, &rsp).await;
    assert_eq!(paid["cash_receipt_issued"], true, "{paid}");
}

/// `cash_yn` comes back through the buyer's browser: on a card window, where KCP issues no cash
/// receipt, a `Y` is not taken.
#[tokio::test]
async fn a_cash_receipt_answered_for_a_card_window_is_not_taken() {
    let app = spawn_app().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-cash-card", "amount": 1000}),
    )
    .await;
    let (ret_url, mut result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    for (k, v) in result.iter_mut() {
        if k == "cash_yn" {
            *v = "Y".into();
        }
    }
    let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(rsp["status"], "paid", "{rsp}");
    assert_eq!(payment_of(&app, &rsp).await["cash_receipt_issued"], false);
}

#[tokio::test]
async fn bank_transfer_and_virtual_account_windows_are_paid_and_issued() {
    let app = spawn_app().await;
    let bank = request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "web-3", "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await;
    assert_eq!(bank["status"], "paid", "{bank}");
    let transfer = payment_of(&app, &bank).await;
    assert_eq!(
        transfer["bank_code"], "020",
        "iamport's standard code for KCP's BK20, as for virtual accounts: {transfer}"
    );
    let vbank = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-4", "amount": 5000}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(vbank["status"], "ready", "{vbank}");
    assert_eq!(
        vbank["paid_amount"], 5000,
        "iamport: 가상계좌 입금예정 금액"
    );
    assert!(vbank["vbank_num"].as_str().unwrap().starts_with('T'));
    assert!(vbank["receipt_url"].is_null(), "nothing paid yet: {vbank}");
    assert!(vbank["vbank_date"].as_i64().unwrap() > 0);
    let token = app.token().await;
    let p = app
        .payment(&token, vbank["imp_uid"].as_str().unwrap())
        .await;
    assert_eq!(
        (p["vbank_code"].as_str(), p["vbank_name"].as_str()),
        (Some("004"), Some("국민은행")),
        "iamport's bank code for KCP's BK04: {p}"
    );
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_window_virtual_account_whose_approval_answer_was_lost_is_revoked_by_the_resolver() {
    let app = spawn_app().await;
    app.sandbox.inject(kcp_sandbox::FaultRule::new(
        kcp_sandbox::paths::ENC_PAYMENT,
        kcp_sandbox::Fault::LoseResponse,
    ));
    let rsp = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-lost", "amount": 5000}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["error_code"], "F500", "{rsp}");
    assert_eq!(
        app.sandbox.ledger()[0].state,
        kcp_sandbox::TransactionState::Issued
    );

    app.advance(crate::helpers::SETTLE_SECS + 1);
    app.resolve_all().await;

    let token = app.token().await;
    let p = app.payment(&token, rsp["imp_uid"].as_str().unwrap()).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(
        app.sandbox.ledger()[0].state,
        kcp_sandbox::TransactionState::Cancelled,
        "nobody was told the account: it is closed at KCP"
    );
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn an_already_paid_merchant_uid_or_a_prepared_amount_mismatch_is_refused_before_the_window() {
    let app = spawn_app().await;
    request_pay(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-5", "amount": 1000}),
        &[
            ("card_no", "4111111111111111"),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
    )
    .await;
    let (_, again) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "params": {"merchant_uid": "web-5", "amount": 1000}}),
        )
        .await;
    assert_eq!(again["code"], 1, "{again}");
    // Anyone with the page's public imp_code may ask: a merchant_uid does not lead to its payment.
    assert_eq!(
        again["message"], "이미 결제가 완료된 merchant_uid입니다.",
        "{again}"
    );
    assert!(again["response"]["imp_uid"].is_null(), "{again}");
    let token = app.token().await;
    app.post(
        "/payments/prepare",
        Some(&token),
        json!({"merchant_uid": "web-6", "amount": 2000}),
    )
    .await;
    let (_, mismatch) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "params": {"merchant_uid": "web-6", "amount": 1999}}),
        )
        .await;
    assert_eq!(mismatch["code"], 1, "{mismatch}");
    assert!(mismatch["response"]["imp_uid"].is_null());
}

/// Waits until the sandbox's notification `noti_id` is acknowledged by the gateway.
async fn acknowledged(app: &TestApp, noti_id: &str) -> kcp_sandbox::NotificationRecord {
    for _ in 0..200 {
        let sent = app.sandbox.notifications();
        if let Some(n) = sent.iter().find(|n| n.noti_id == noti_id && n.acknowledged) {
            return n.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("notification {noti_id} was never acknowledged");
}

#[tokio::test]
async fn a_vbank_deposit_notification_marks_the_payment_paid_once_per_noti_id() {
    let app = spawn_app().await;
    let vbank = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-vb", "amount": 5000}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(vbank["status"], "ready", "{vbank}");
    let token = app.token().await;
    let imp_uid = vbank["imp_uid"].as_str().unwrap();
    let status = || async {
        let (_, p) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
        p["response"].clone()
    };
    let tno = status().await["pg_tid"].as_str().unwrap().to_string();
    let ack = "<html><body><form><input type=\"hidden\" name=\"result\" value=\"0000\"></form></body></html>";
    let post = |fields: Vec<(String, String)>| {
        let req = app.http.post(app.url("/kcp/notify")).form(&fields);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    // A partial deposit keeps it ready.
    let first = app.sandbox.deposit(&tno, 3000, "00").unwrap();
    acknowledged(&app, &first.noti_id).await;
    assert_eq!(status().await["status"], "ready");
    // The rest arrives: paid. KCP re-sending the same noti_id changes nothing.
    let second = app.sandbox.deposit(&tno, 2000, "00").unwrap();
    acknowledged(&app, &second.noti_id).await;
    let paid = status().await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert!(paid["paid_at"].as_i64().unwrap() > 0);
    assert_eq!(post(second.fields.clone()).await, ack);
    assert_eq!(status().await, paid);
    // A deposit cancelled through the bank network (op_cd 13) reverses it.
    let reversal = app.sandbox.deposit(&tno, 2000, "13").unwrap();
    acknowledged(&app, &reversal.noti_id).await;
    assert_eq!(status().await["status"], "ready");
    // An unknown transaction is not acknowledged, so KCP sends it again later.
    let mut unknown = second.fields.clone();
    for (k, v) in &mut unknown {
        match k.as_str() {
            "tno" => *v = "20260101000000".into(),
            "noti_id" => *v = "n-unknown".into(),
            _ => {}
        }
    }
    let body = post(unknown).await;
    assert!(!body.contains("value=\"0000\""), "{body}");
}

#[tokio::test]
async fn escrow_delivery_is_registered_once_and_refused_for_other_payments() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-esc", "amount": 2000, "escrow": true, "buyer_name": "홍길동",
               "kcpProducts": [{"orderNumber": "o1", "name": "양말", "quantity": 2, "amount": 1000}]}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
    let token = app.token().await;
    let imp_uid = rsp["imp_uid"].as_str().unwrap();
    let (_, p) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
    assert_eq!(p["response"]["escrow"], true);
    // Nothing registered yet: iamport's OpenAPI answers 409, never a null delivery at code 0.
    let (status, none) = app
        .get(&format!("/escrows/logis/{imp_uid}"), Some(&token))
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{none}");
    assert_eq!(
        none["message"], "등록된 배송정보가 존재하지 않습니다.",
        "{none}"
    );
    let logis =
        json!({"logis": {"company": "CJ대한통운", "invoice": "123456789", "sent_at": 1795000000}});
    let (status, body) = app
        .post(
            &format!("/escrows/logis/{imp_uid}"),
            Some(&token),
            logis.clone(),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["response"]["invoice"], "123456789", "{body}");
    let (status, _) = app
        .post(
            &format!("/escrows/logis/{imp_uid}"),
            Some(&token),
            logis.clone(),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT);
    let (_, got) = app
        .get(&format!("/escrows/logis/{imp_uid}"), Some(&token))
        .await;
    assert_eq!(got["response"]["company"], "CJ대한통운");
    let plain = app.paid(&token, "web-plain", 1000).await;
    let (status, _) = app
        .post(
            &format!("/escrows/logis/{}", plain["imp_uid"].as_str().unwrap()),
            Some(&token),
            logis.clone(),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    let (status, _) = app
        .post("/escrows/logis/imp_000000000000", Some(&token), logis)
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_deposit_at_the_sandbox_is_notified_and_makes_the_vbank_payment_paid() {
    let app = spawn_app().await;
    let vbank = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-dep", "amount": 8000}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    let token = app.token().await;
    let imp_uid = vbank["imp_uid"].as_str().unwrap();
    let (_, p) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
    let tno = p["response"]["pg_tid"].as_str().unwrap().to_string();
    app.sandbox.deposit(&tno, 8000, "00").unwrap();
    let mut paid = false;
    for _ in 0..50 {
        let (_, p) = app.get(&format!("/payments/{imp_uid}"), Some(&token)).await;
        if p["response"]["status"] == "paid" {
            paid = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(paid, "the TX00 notification made the payment paid");
    let sent = app.sandbox.notifications();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].acknowledged, "{sent:?}");
    assert_eq!(
        app.sandbox.flush_notifications().await,
        0,
        "nothing left to send"
    );
}

/// A local merchant endpoint for confirm_url that refuses with a reason.
async fn refusing_confirm_url() -> String {
    let app = axum::Router::new().route(
        "/confirm",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(json!({"reason": "재고 없음"})),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/confirm", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_confirm_url_refusal_stops_the_payment_before_approval_with_its_reason() {
    let app = spawn_app().await;
    let confirm = refusing_confirm_url().await;
    let rsp = request_pay(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-confirm", "amount": 1000, "confirm_url": confirm}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(
        rsp["error_msg"],
        "고객사 요청에 의해 결제를 중단합니다. (상세사유 : 재고 없음)"
    );
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    let token = app.token().await;
    let (_, p) = app
        .get(
            &format!("/payments/{}", rsp["imp_uid"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(p["response"]["status"], "failed");
}

#[tokio::test]
async fn a_tampered_order_check_in_the_window_result_is_refused_without_approval() {
    let app = spawn_app().await;
    let (pay_url, fields) =
        mobile_hand_off(&app, json!({"merchant_uid": "web-tamper", "amount": 50000})).await;
    let (ret_url, mut result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    // KCP's mobile window posts no `ordr_chk` (spec §2.3); a result that carries one (the PC
    // flow's, §1.1) is checked against the order, here one whose amount the browser rewrote.
    assert_eq!(field(&result, "ordr_chk"), None, "{result:?}");
    let order_no = field(&result, "ordr_idxx").unwrap().to_string();
    result.push(("ordr_chk".into(), format!("{order_no}|500")));
    let location = post_without_following(&ret_url, &result).await;
    assert!(location.contains("imp_success=false"), "{location}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
}

/// A mobile request_pay (with an `m_redirect_url`) followed to its hand-off page: KCP's
/// `PayUrl` and the fields the page posts there (spec/kcp.md §1.2).
async fn mobile_hand_off(app: &TestApp, mut params: Value) -> (String, Vec<(String, String)>) {
    params["m_redirect_url"] = json!("https://shop.test/done");
    let (pay_url, fields) = hand_off_from(
        app,
        json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://shop.test/cart", "params": params}),
    )
    .await;
    assert!(
        pay_url.ends_with(kcp_sandbox::paths::PAY_WINDOW),
        "{pay_url}"
    );
    (pay_url, fields)
}

/// Posts a window result to `Ret_URL` as a mobile browser does and answers the redirect's
/// `Location` (the merchant's `m_redirect_url` with the result), not following it.
async fn post_without_following(ret_url: &str, result: &[(String, String)]) -> String {
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_follow.post(ret_url).form(result).send().await.unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    res.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_billing_key_window_stores_a_key_without_charging_and_again_uses_it() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "web-billing", "amount": 0, "customer_uid": "web-cust"}),
        &MASTERCARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], true, "{rsp}");
    assert!(
        app.sandbox.ledger().is_empty(),
        "issuing a key charges nothing"
    );
    let token = app.token().await;
    let (_, c) = app.get("/subscribe/customers/web-cust", Some(&token)).await;
    assert_eq!(c["response"]["card_number"], "555555******4444", "{c}");
    let (_, p) = app
        .get(
            &format!("/payments/{}", rsp["imp_uid"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(p["response"]["customer_uid_usage"], "issue");
    // The `issue` payment shows the card as the key does.
    for field in ["card_code", "card_name", "card_number", "card_type"] {
        assert_eq!(
            p["response"][field], c["response"][field],
            "{field}: {p} {c}"
        );
    }
    assert!(p["response"]["card_code"].is_string(), "{p}");
    let (_, paid) = crate::billing::again(&app, &token, "web-cust", "web-billing-1", 4900).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(app.sandbox.ledger().len(), 1);

    // The customer registers another card in the window, which the merchant's server allowed by
    // preparing its merchant_uid: the first key is deleted at KCP.
    let (_, prepared) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "web-billing-2", "amount": 0}),
        )
        .await;
    assert_eq!(prepared["code"], 0, "{prepared}");
    let second = request_pay(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "web-billing-2", "amount": 0, "customer_uid": "web-cust"}),
        &CARD_OK,
    )
    .await;
    assert_eq!(second["success"], true, "{second}");
    let states: Vec<(String, kcp_sandbox::BatchKeyState)> = app
        .sandbox
        .batch_keys()
        .into_iter()
        .map(|k| (k.masked_card_no, k.state))
        .collect();
    assert_eq!(
        states,
        [
            (
                "555555******4444".to_string(),
                kcp_sandbox::BatchKeyState::Deleted
            ),
            (
                "411111******1111".to_string(),
                kcp_sandbox::BatchKeyState::Active
            ),
        ],
        "a replaced card is not left chargeable at KCP"
    );
}

const CARD_OK: [(&str, &str); 3] = [
    ("card_no", "4111111111111111"),
    ("card_expiry", "3112"),
    ("action", "pay"),
];

/// The buyer pays with the sandbox's approving Mastercard (`555555******4444`).
const MASTERCARD_OK: [(&str, &str); 3] = [
    ("card_no", "5555555555554444"),
    ("card_expiry", "3112"),
    ("action", "pay"),
];

#[tokio::test]
async fn an_amount_edited_in_the_browser_before_the_window_is_caught_without_a_charge() {
    let app = spawn_app().await;
    let (pay_url, mut fields) =
        hand_off(&app, json!({"merchant_uid": "web-edit", "amount": 50000})).await;
    fields
        .iter_mut()
        .find(|(k, _)| k == "good_mny")
        .expect("the hand-off posts good_mny")
        .1 = "500".into();
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["amount"], 50000);
}

#[tokio::test]
async fn an_approval_for_another_amount_than_the_order_is_net_cancelled() {
    let app = spawn_app().await;
    app.sandbox.inject(FaultRule::new(
        "/gw/enc/v1/payment",
        Fault::AnswerField {
            field: "amount".into(),
            value: "500".into(),
        },
    ));
    let rsp = request_pay(
        &app,
        json!({"merchant_uid": "web-amount", "amount": 50000}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], false, "{rsp}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP approved once");
    assert_eq!(
        ledger[0].state,
        TransactionState::Cancelled,
        "and was net-cancelled"
    );
    assert_eq!(
        ledger[0].cancels[0].mod_desc.as_deref(),
        Some("가맹점 DB 처리 실패(자동취소)"),
        "{:?}",
        ledger[0].cancels
    );
    let p = payment_of(&app, &rsp).await;
    assert_ne!(p["status"], "paid", "{p}");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn an_escrow_approval_for_another_amount_is_net_cancelled_with_ste2() {
    let app = spawn_app().await;
    let rsp = escrow_window_answered(&app, "web-escrow-amount", "amount", "500").await;
    assert_eq!(rsp["success"], false, "{rsp}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "KCP approved once");
    assert_eq!(
        ledger[0].state,
        TransactionState::Cancelled,
        "and was net-cancelled"
    );
    // KCP net-cancels an escrow approval with STE2 (spec/kcp.md §2.11), never STSC.
    assert_eq!(ledger[0].cancels.len(), 1, "{:?}", ledger[0].cancels);
    assert_eq!(ledger[0].cancels[0].mod_type, "STE2");
    let p = payment_of(&app, &rsp).await;
    assert_ne!(p["status"], "paid", "{p}");
    assert_eq!(p["escrow"], true, "{p}");
    app.assert_ledger_agrees().await;
}

/// A window asked for as escrow that KCP approves as a plain trade (`escw_yn` `N`: the merchant
/// has no escrow contract) is recorded as plain, so that it is cancelled and shipped as one.
#[tokio::test]
async fn an_escrow_window_kcp_approves_as_a_plain_trade_is_recorded_as_plain() {
    let app = spawn_app().await;
    let rsp = escrow_window_answered(&app, "web-escrow-plain", "escw_yn", "N").await;
    assert_eq!(rsp["success"], true, "{rsp}");
    let p = payment_of(&app, &rsp).await;
    assert_eq!(
        (p["status"].as_str(), p["escrow"].as_bool()),
        (Some("paid"), Some(false)),
        "{p}"
    );
}

/// An escrow card window of 50,000 won whose approval KCP answers with `field` set to `value`;
/// the `rsp` the merchant's page gets.
async fn escrow_window_answered(
    app: &TestApp,
    merchant_uid: &str,
    field: &str,
    value: &str,
) -> Value {
    app.sandbox.inject(FaultRule::new(
        "/gw/enc/v1/payment",
        Fault::AnswerField {
            field: field.into(),
            value: value.into(),
        },
    ));
    request_pay(
        app,
        json!({"merchant_uid": merchant_uid, "amount": 50000, "escrow": true, "buyer_name": "홍길동",
               "kcpProducts": [{"orderNumber": "o1", "name": "양말", "quantity": 1, "amount": 50000}]}),
        &CARD_OK,
    )
    .await
}

/// The payment behind an `rsp`, as the merchant's server reads it.
async fn payment_of(app: &TestApp, rsp: &Value) -> Value {
    let token = app.token().await;
    app.payment(&token, rsp["imp_uid"].as_str().unwrap()).await
}

/// iamport's `pg` names the PG and, after a dot, the site: `kcp.{site_cd}` opens the window on the
/// merchant's site when it is that one, and is refused when it names another (the payment would
/// be made on a site the merchant did not ask for); another PG is refused (openport has KCP only).
#[tokio::test]
async fn a_pg_naming_another_kcp_site_or_another_pg_is_refused_before_the_window() {
    let app = spawn_app().await;
    let start = |pg: &'static str, uid: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/checkout/request",
                None,
                json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
                       "params": {"pg": pg, "pay_method": "card", "merchant_uid": uid, "amount": 1000}}),
            )
            .await
            .1
        }
    };
    assert_eq!(start("kcp.T0000", "pg-own-site").await["code"], 0);
    for (pg, uid, says) in [
        ("kcp.A52Q7", "pg-other-site", "A52Q7"),
        ("html5_inicis", "pg-other-pg", "html5_inicis"),
        ("tosspayments.im_abc", "pg-other-pg-2", "tosspayments"),
    ] {
        let refused = start(pg, uid).await;
        assert_ne!(refused["code"], 0, "{pg}: {refused}");
        assert!(
            refused["message"].as_str().unwrap().contains(says),
            "{pg}: {refused}"
        );
    }
    let token = app.token().await;
    let (_, found) = app.get("/payments/find/pg-other-site", Some(&token)).await;
    assert_ne!(found["code"], 0, "nothing was opened: {found}");
}

/// `shop_user_id` reaches KCP as other text does (spec §6): KCP's separators and quotes become
/// spaces and it is at most 20 bytes, cut on a character boundary (it was cut at 20 characters,
/// 60 bytes of Korean); one holding script, or nothing KCP may be sent, is refused before the
/// window.
#[tokio::test]
async fn the_shop_user_id_sent_to_kcp_is_cleaned_and_cut_to_20_bytes_and_script_is_refused() {
    let app = spawn_app().await;
    let field = |fields: &[(String, String)]| {
        fields
            .iter()
            .find(|(k, _)| k == "shop_user_id")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (_, fields) = hand_off(
        &app,
        json!({"pay_method": "cultureland", "merchant_uid": "web-shop-id-1", "amount": 2000,
               "bypass": {"shop_user_id": "a,b|c'홍길동홍길동홍길동"}}),
    )
    .await;
    let sent = field(&fields);
    assert_eq!(sent, "a b c 홍길동홍"); // 18 bytes: a fifth syllable would make 21
    assert!(sent.len() <= 20, "{sent}");
    // Phone windows send the merchant_uid when the merchant gave none.
    let (_, fields) = hand_off(
        &app,
        json!({"pay_method": "phone", "merchant_uid": "주문;번호&긴-주문번호-0001", "amount": 2000}),
    )
    .await;
    let sent = field(&fields);
    assert!(sent.len() <= 20 && !sent.contains([';', '&']), "{sent}");

    for bad in ["<script>alert(1)</script>", ",,|"] {
        let (_, refused) = app
            .post(
                "/checkout/request",
                None,
                json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
                       "params": {"pay_method": "cultureland", "merchant_uid": format!("web-shop-id-{bad}"),
                                  "amount": 2000, "bypass": {"shop_user_id": bad}}}),
            )
            .await;
        assert_ne!(refused["code"], 0, "{bad}: {refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("shop_user_id"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn bank_transfer_and_gift_approvals_whose_answer_is_lost_are_paid_after_an_inquiry_of_their_pay_type(
) {
    let cases = [
        (
            json!({"pay_method": "trans", "merchant_uid": "web-lost-bank", "amount": 3000}),
            [("bank", "BK20"), ("action", "pay")],
        ),
        (
            json!({"pay_method": "cultureland", "merchant_uid": "web-lost-gift", "amount": 2000,
                   "bypass": {"shop_user_id": "user123"}}),
            [("pin", "1234567890123456"), ("action", "pay")],
        ),
    ];
    for (params, fill) in cases {
        let app = spawn_app().await;
        app.sandbox
            .inject(FaultRule::new("/gw/enc/v1/payment", Fault::LoseResponse));
        let amount = params["amount"].clone();
        let rsp = request_pay(&app, params, &fill).await;
        assert_eq!(rsp["success"], true, "{rsp}");
        let p = payment_of(&app, &rsp).await;
        assert_eq!(p["status"], "paid", "{p}");
        assert_eq!(p["amount"], amount);
        assert_eq!(p["pg_tid"], app.sandbox.ledger()[0].tno.as_str());
        app.assert_ledger_agrees().await;
    }
}

#[tokio::test]
async fn a_bank_transfer_the_buyer_was_told_failed_is_net_cancelled_when_the_resolver_finds_it() {
    let app = spawn_app().await;
    lose_the_approval_and_the_inquiry(&app);
    let rsp = request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "web-late-bank", "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(
        payment_of(&app, &rsp).await["status"],
        "ready",
        "not concluded from a guess"
    );
    app.resolve_all().await;
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(app.sandbox.ledger()[0].state, TransactionState::Cancelled);
    app.assert_ledger_agrees().await;
}

/// A bank transfer of 3,000 won through the window whose approval KCP answers with each
/// `(field, value)` of `answered` in place of its own; the `rsp` the merchant's page gets.
async fn bank_transfer_answered(
    app: &TestApp,
    merchant_uid: &str,
    answered: &[(&str, &str)],
) -> Value {
    app.sandbox.inject(FaultRule::new(
        paths::ENC_PAYMENT,
        Fault::AnswerFields {
            fields: answered
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
    ));
    request_pay(
        app,
        json!({"pay_method": "trans", "merchant_uid": merchant_uid, "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await
}

/// KCP's manual makes the amount comparison mandatory (spec/kcp.md §5): a bank transfer KCP
/// answers for another amount is net-cancelled, never recorded paid, whichever of the answer's
/// amounts (`amount`, the approval's; `bk_mny`, the transfer's) names it.
#[tokio::test]
async fn a_bank_transfer_kcp_answers_for_another_amount_is_net_cancelled_never_paid() {
    for (i, answered) in [
        &[("amount", "500"), ("bk_mny", "500")][..],
        &[("bk_mny", "500")][..],
        &[("amount", "500")][..],
    ]
    .into_iter()
    .enumerate()
    {
        let app = spawn_app().await;
        let rsp = bank_transfer_answered(&app, &format!("web-bank-amount-{i}"), answered).await;
        assert_eq!(rsp["success"], false, "{answered:?}: {rsp}");
        let ledger = app.sandbox.ledger();
        assert_eq!(ledger.len(), 1, "KCP approved once: {answered:?}");
        assert_eq!(
            ledger[0].state,
            TransactionState::Cancelled,
            "and was net-cancelled: {answered:?}"
        );
        let p = payment_of(&app, &rsp).await;
        assert_eq!(p["status"], "failed", "{answered:?}: {p}");
        assert_eq!(p["amount"], 3000, "{p}");
        app.assert_ledger_agrees().await;
    }
}

/// The same check on an approval learnt by inquiry: the bank transfer's answer is lost, and the
/// inquiry (`PABK`) that finds it names another amount. The buyer is still waiting, so an approval
/// for the order would be honoured; this one is net-cancelled and the payment fails.
#[tokio::test]
async fn a_bank_transfer_whose_lost_approval_an_inquiry_finds_for_another_amount_is_net_cancelled()
{
    let app = spawn_app().await;
    app.sandbox
        .inject(FaultRule::new(paths::ENC_PAYMENT, Fault::LoseResponse));
    app.sandbox.inject(FaultRule::new(
        paths::INQUIRY,
        Fault::AnswerField {
            field: "amount".into(),
            value: "999".into(),
        },
    ));
    let rsp = request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "web-bank-inq-amount", "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await;
    assert!(
        app.sandbox.armed_faults().is_empty(),
        "the approval was lost and the inquiry asked"
    );
    assert_eq!(rsp["success"], false, "{rsp}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].state, TransactionState::Cancelled, "{ledger:?}");
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["pg_tid"], ledger[0].tno.as_str(), "{p}");
    assert!(
        p["fail_reason"]
            .as_str()
            .is_some_and(|r| r.contains("불일치")),
        "{p}"
    );
    assert!(app.conflicts().await.is_empty());
    app.assert_ledger_agrees().await;
}

/// The window's approval answer is lost and the inquiry that follows fails: the outcome stays
/// unknown until the resolver runs.
fn lose_the_approval_and_the_inquiry(app: &TestApp) {
    app.sandbox
        .inject(FaultRule::new("/gw/enc/v1/payment", Fault::LoseResponse));
    app.sandbox.inject(FaultRule::new(
        "/std/inquery",
        Fault::HttpStatus { status: 503 },
    ));
}

/// The `rsp` a result page hands to the merchant page.
fn rsp_of(answer: &str) -> Value {
    let start = answer
        .find("var rsp=")
        .expect("the result page hands rsp to the merchant page")
        + 8;
    let end = answer[start..]
        .find(";\nvar")
        .or_else(|| answer[start..].find(";var"))
        .unwrap()
        + start;
    serde_json::from_str(&answer[start..end].replace("<\\/", "</")).unwrap()
}

/// `kcp.timeout_ms` of [`a_replayed_result_post_while_the_outcome_is_unknown_says_checking_not_failed`],
/// and the most its replayed post may take: a post that waited for an approval (up to the timeout
/// and 5 s, `service::checkout`'s `finish_settled`) takes longer, and one answered at once, on a
/// loaded 2-core runner too, far less. Measured against the tests' 1.5 s timeout, a stalled
/// runner could fail it.
const REPLAY_KCP_TIMEOUT_MS: u64 = 10_000;

#[tokio::test]
async fn a_replayed_result_post_while_the_outcome_is_unknown_says_checking_not_failed() {
    // A long KCP timeout: a post that waits for a held approval waits for up to the timeout and
    // 5 s (15 s here), far past what answering at once may take on a loaded machine.
    let app = crate::helpers::spawn_app_with(|c| {
        c.kcp.timeout_ms = REPLAY_KCP_TIMEOUT_MS;
        c.resolver.settle_secs = 60;
    })
    .await;
    lose_the_approval_and_the_inquiry(&app);
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "web-replayed", "amount": 3000}),
    )
    .await;
    let (ret_url, result) = window_result(
        &app,
        &pay_url,
        &fields,
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await;
    let first = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(first["error_code"], "F500", "{first}");
    // The buyer's second tab, or a reload of the result page: still being checked, so the buyer
    // is not told to pay again. Nobody holds the approval any more (it was let go to the
    // resolver, whose look comes after a settle delay), so the answer does not wait for it.
    let replaying = std::time::Instant::now();
    let replayed = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert!(
        replaying.elapsed() < std::time::Duration::from_millis(REPLAY_KCP_TIMEOUT_MS),
        "answered at once, not after a wait for the approval: {:?}",
        replaying.elapsed()
    );
    assert_eq!(replayed["success"], false, "{replayed}");
    assert_eq!(replayed["error_code"], "F500", "{replayed}");
    assert_eq!(replayed["imp_uid"], first["imp_uid"]);
    assert_eq!(app.sandbox.ledger().len(), 1, "the replay approved nothing");
}

/// The same window result posted twice close together, as a double tap on KCP's final button or
/// the PC page's `m_Completepayment` running `form.submit()` twice does: the first post claims the
/// window and its approval is held at the sandbox until the second post is in; the answers to the
/// first and the second post (PC: the result page; mobile: the redirect's `Location`). A browser
/// shows only the answer to its last submission, the second.
async fn a_result_posted_twice(
    app: &TestApp,
    mobile: bool,
    merchant_uid: &str,
) -> (String, String) {
    let params = json!({"merchant_uid": merchant_uid, "amount": 1000});
    let (pay_url, fields) = if mobile {
        mobile_hand_off(app, params).await
    } else {
        hand_off(app, params).await
    };
    let (ret_url, result) = window_result(app, &pay_url, &fields, &CARD_OK).await;
    app.sandbox.inject(FaultRule::new(
        "/gw/enc/v1/payment",
        Fault::HoldRequest {
            gate: "approval".into(),
        },
    ));
    let post = |ret_url: String, result: Vec<(String, String)>| async move {
        if mobile {
            post_without_following(&ret_url, &result).await
        } else {
            let res = reqwest::Client::new().post(ret_url).form(&result).send();
            res.await.unwrap().text().await.unwrap()
        }
    };
    let first = tokio::spawn(post(ret_url.clone(), result.clone()));
    app.sandbox.until_held("approval").await;
    let second = tokio::spawn(post(ret_url, result));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        !second.is_finished(),
        "the second post waits for the first one's approval instead of answering at once"
    );
    app.sandbox.open_gate("approval");
    (first.await.unwrap(), second.await.unwrap())
}

/// An approval that takes a while (here held at the sandbox): longer KCP timeouts than the other
/// tests', so a slow test machine does not time the held approval out.
async fn spawn_app_with_patient_kcp() -> TestApp {
    crate::helpers::spawn_app_with(|c| {
        c.kcp.timeout_ms = 5_000;
        c.resolver.settle_secs = 16;
    })
    .await
}

#[tokio::test]
async fn a_double_submitted_pc_window_result_answers_the_second_post_with_the_approval_the_first_one_gets(
) {
    let app = spawn_app_with_patient_kcp().await;
    let (first, second) = a_result_posted_twice(&app, false, "web-posted-twice").await;
    let (first, second) = (rsp_of(&first), rsp_of(&second));
    assert_eq!(first["success"], true, "{first}");
    // Not F500 with success false, which has an iamport page tell the buyer the payment failed.
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(second["imp_success"], true, "{second}");
    assert_eq!(second["status"], "paid", "{second}");
    assert_eq!(second["error_code"], Value::Null, "{second}");
    assert_eq!(second["imp_uid"], first["imp_uid"]);
    assert_eq!(second["paid_amount"], 1000);
    assert_eq!(app.sandbox.ledger().len(), 1, "approved once");
    assert_eq!(payment_of(&app, &second).await["status"], "paid");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_double_submitted_mobile_window_result_redirects_the_second_post_with_the_approval_the_first_one_gets(
) {
    let app = spawn_app_with_patient_kcp().await;
    let (first, second) = a_result_posted_twice(&app, true, "web-tapped-twice").await;
    let (first, second) = (query_of(&first), query_of(&second));
    assert_eq!(first["imp_success"], "true", "{first:?}");
    assert_eq!(second["imp_success"], "true", "{second:?}");
    assert!(!second.contains_key("error_code"), "{second:?}");
    assert_eq!(second["imp_uid"], first["imp_uid"]);
    assert_eq!(second["merchant_uid"], "web-tapped-twice");
    assert_eq!(app.sandbox.ledger().len(), 1, "approved once");
    app.assert_ledger_agrees().await;
}

/// The same window result posted twice a moment apart, with nothing held: the second post can find
/// the payment `pending` and, a millisecond later, the first post's approval recorded and its
/// attempt closed. It answers what was recorded, never `F500` beside a paid first answer (review
/// r1: 4 of 40 pairs did). A race, so many pairs are posted; each must agree.
#[tokio::test]
async fn a_window_result_posted_twice_without_a_pause_never_answers_f500_beside_a_paid_answer() {
    let app = spawn_app().await;
    let post = |ret_url: String, result: Vec<(String, String)>| async move {
        let res = reqwest::Client::new().post(ret_url).form(&result).send();
        rsp_of(&res.await.unwrap().text().await.unwrap())
    };
    let mut disagreed = Vec::new();
    for i in 0..40 {
        let merchant_uid = format!("web-twice-race-{i}");
        let params = json!({"merchant_uid": merchant_uid, "amount": 1000});
        let (pay_url, fields) = hand_off(&app, params).await;
        let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
        let first = tokio::spawn(post(ret_url.clone(), result.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(i % 8)).await;
        let second = tokio::spawn(post(ret_url, result));
        let (first, second) = (first.await.unwrap(), second.await.unwrap());
        for answer in [&first, &second] {
            if answer["success"] != true || answer["status"] != "paid" {
                let shown =
                    |a: &Value| format!("{} {} {}", a["success"], a["status"], a["error_code"]);
                disagreed.push(format!(
                    "{merchant_uid}: {} / {}",
                    shown(&first),
                    shown(&second)
                ));
                break;
            }
        }
    }
    assert!(disagreed.is_empty(), "{disagreed:#?}");
    assert_eq!(app.sandbox.ledger().len(), 40, "each approved once");
    app.assert_ledger_agrees().await;
}

/// `GET /checkout/session/{session}/status`, as the SDK calls it from the merchant page's origin:
/// its envelope.
async fn status_of_window(app: &TestApp, start_url: &str) -> Value {
    let res = app
        .http
        .get(format!("{start_url}/status"))
        .header("origin", "http://shop.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string()),
        Some("*".to_string()),
        "the merchant page may read it"
    );
    res.json().await.unwrap()
}

/// The SDK polls the status call after the window's own answer said `F500`: unlike the overlay's
/// close (the cancel call), it changes nothing, so a window whose payment is still `ready` (its
/// buyer may have paid in KCP's window, and its `Ret_URL` post failed before the claim) is never
/// failed as the buyer's cancel by it.
#[tokio::test]
async fn the_status_call_answers_the_payment_as_it_stands_and_never_fails_an_open_window() {
    let app = spawn_app().await;
    let (start_url, pay_url, fields) = started_from(&app, pc_checkout("web-status")).await;
    let open = status_of_window(&app, &start_url).await;
    assert_eq!(open["code"], 0, "{open}");
    assert_eq!(open["response"]["success"], false, "{open}");
    assert_eq!(open["response"]["error_code"], "F500", "{open}");
    assert_eq!(open["response"]["merchant_uid"], "web-status", "{open}");
    let imp_uid = open["response"]["imp_uid"].as_str().unwrap().to_string();
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["success"], true, "the window still pays: {rsp}");
    assert_eq!(rsp["imp_uid"], imp_uid.as_str());
    let paid = status_of_window(&app, &start_url).await;
    assert_eq!(paid["response"]["success"], true, "{paid}");
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(paid["response"]["imp_uid"], imp_uid.as_str(), "{paid}");
    let (_, unknown) = app
        .get(
            "/checkout/session/0123456789abcdef0123456789abcdef/status",
            None,
        )
        .await;
    assert_ne!(unknown["code"], 0, "{unknown}");
}

#[tokio::test]
async fn a_phone_approval_that_never_reached_kcp_fails_only_after_the_inquiry_finds_nothing() {
    let app = spawn_app().await;
    app.sandbox
        .inject(FaultRule::new("/gw/enc/v1/payment", Fault::Drop));
    let rsp = request_pay(
        &app,
        json!({"pay_method": "phone", "merchant_uid": "web-drop-phone", "amount": 1500}),
        &[("mobile_no", "01012345678"), ("action", "pay")],
    )
    .await;
    assert_eq!(rsp["success"], false, "{rsp}");
    app.advance(SETTLE_SECS + 1);
    app.resolve_all().await;
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert!(app.sandbox.ledger().is_empty());
    app.assert_ledger_agrees().await;
}

/// iamport's `vbank_due` (`YYYYMMDDhhmm`, Korea time) is the account's deposit deadline at KCP
/// (`ipgm_date`) and so the payment's `vbank_date`.
#[tokio::test]
async fn a_virtual_account_window_takes_the_deposit_deadline_from_vbank_due() {
    let app = spawn_app().await;
    let due = chrono::Utc::now() + chrono::Duration::days(3);
    let kst = due.with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).unwrap());
    let vbank_due = kst.format("%Y%m%d%H%M").to_string();
    let vbank = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-due", "amount": 5000, "vbank_due": vbank_due}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(vbank["status"], "ready", "{vbank}");
    let expected = chrono::NaiveDateTime::parse_from_str(&format!("{vbank_due}59"), "%Y%m%d%H%M%S")
        .unwrap()
        .and_local_timezone(chrono::FixedOffset::east_opt(9 * 3600).unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(vbank["vbank_date"], expected, "{vbank}");
}

/// Public integrations pass the placeholder `vbank_due: 'YYYYMMDD'` with every method (commit
/// 7748a21): on a virtual account a value in none of the forms is taken as absent, KCP's default
/// deadline (the sandbox's: 7 days), with a warning, instead of keeping the shop's vbank option
/// from ever opening a window.
#[tokio::test]
async fn a_vbank_due_in_no_known_form_opens_the_virtual_account_with_kcps_default_deadline() {
    let app = spawn_app().await;
    for (i, due) in ["YYYYMMDD", "next week"].into_iter().enumerate() {
        let merchant_uid = format!("web-vb-placeholder-due-{i}");
        let (pay_url, fields) = hand_off(
            &app,
            json!({"pay_method": "vbank", "merchant_uid": merchant_uid, "amount": 5000, "vbank_due": due}),
        )
        .await;
        assert_eq!(field(&fields, "ipgm_date"), None, "{fields:?}");
        let before = chrono::Utc::now().timestamp();
        let vbank = through_window(
            &app,
            &pay_url,
            &fields,
            &[("bank", "BK04"), ("action", "pay")],
        )
        .await;
        assert_eq!(vbank["status"], "ready", "{vbank}");
        let due_at = vbank["vbank_date"].as_i64().unwrap();
        assert!(
            due_at >= before + 6 * 86_400 && due_at <= before + 8 * 86_400,
            "KCP's default deadline, about 7 days: {vbank}"
        );
        let logs = crate::helpers::captured_logs();
        assert!(
            logs.lines().any(|l| l.contains("WARN")
                && l.contains("vbank_due")
                && l.contains(&merchant_uid)),
            "a warning names the checkout"
        );
    }
}

/// An account already due could never be paid (KCP's bank refuses every deposit past it) and
/// would hold its merchant_uid until revoked: `POST /vbanks` refuses such a deadline, and so does
/// the window, before anything is written.
#[tokio::test]
async fn a_vbank_due_in_the_past_is_refused_before_the_window_as_post_vbanks_refuses_it() {
    let app = spawn_app().await;
    let an_hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp();
    for (i, due) in [
        json!("2020-01-01"),
        json!("20200101"),
        json!("2020-01-01 10:00:00"),
        json!(an_hour_ago.to_string()),
    ]
    .into_iter()
    .enumerate()
    {
        refused_with(
            &app,
            json!({"pay_method": "vbank", "merchant_uid": format!("web-past-due-{i}"), "amount": 5000, "vbank_due": due}),
            "vbank_due는 현재 이후",
        )
        .await;
    }
}

/// A merchant's confirm_url whose first call is held until the test releases it; later calls
/// are answered 200 at once. It lets a test order two `Ret_URL` posts deterministically.
struct GatedConfirm {
    url: String,
    /// Notified when the first call has arrived (and is being held).
    arrived: std::sync::Arc<tokio::sync::Notify>,
    /// Notify to let the first call be answered.
    release: std::sync::Arc<tokio::sync::Notify>,
    /// The imp_uid of every call, in the order they arrived.
    calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl GatedConfirm {
    /// The first call is answered 200 once released.
    async fn start() -> Self {
        Self::first_answering(axum::http::StatusCode::OK).await
    }

    /// The first call is answered `first` once released (a refusal carries a `reason`).
    async fn first_answering(first: axum::http::StatusCode) -> Self {
        use std::sync::{Arc, Mutex};
        let arrived = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(tokio::sync::Notify::new());
        let calls: Arc<Mutex<Vec<String>>> = Arc::default();
        let (a, r, c) = (arrived.clone(), release.clone(), calls.clone());
        let app = axum::Router::new().route(
            "/confirm",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (a, r, c) = (a.clone(), r.clone(), c.clone());
                async move {
                    let n = {
                        let mut calls = c.lock().unwrap();
                        calls.push(body["imp_uid"].as_str().unwrap_or_default().to_string());
                        calls.len()
                    };
                    if n > 1 {
                        return (axum::http::StatusCode::OK, axum::Json(json!({})));
                    }
                    a.notify_one();
                    r.notified().await;
                    (first, axum::Json(json!({"reason": "재고 없음"})))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/confirm", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            arrived,
            release,
            calls,
        }
    }
}

#[tokio::test]
async fn a_second_result_post_that_read_the_window_before_its_account_was_issued_leaves_the_account_open(
) {
    let app = spawn_app().await;
    let gate = GatedConfirm::start().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-vb-twice", "amount": 5000, "confirm_url": gate.url}),
    )
    .await;
    let (ret_url, result) = window_result(
        &app,
        &pay_url,
        &fields,
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    // The post that redeems the window claims it, then waits on the merchant's confirm_url.
    let redeeming = {
        let (http, url, result) = (app.http.clone(), ret_url.clone(), result.clone());
        tokio::spawn(async move {
            let res = http.post(url).form(&result).send().await.unwrap();
            res.text().await.unwrap()
        })
    };
    gate.arrived.notified().await;
    // A double submit (or a second instance) reads the window before its account is issued: it
    // neither redeems the window nor fails it, but waits for the claiming post's outcome (the
    // claim's lease covers the merchant's answer) and shows the account issued.
    let early = {
        let (http, url, result) = (app.http.clone(), ret_url.clone(), result.clone());
        tokio::spawn(async move {
            let res = http.post(url).form(&result).send().await.unwrap();
            res.text().await.unwrap()
        })
    };
    // Time for it to find the window claimed; arriving later, it reads the outcome instead, and
    // what follows holds all the same.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    gate.release.notify_one();
    let first = rsp_of(&redeeming.await.unwrap());
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["status"], "ready", "{first}");
    let account = first["vbank_num"].as_str().expect("an account").to_string();
    let early = rsp_of(&early.await.unwrap());
    assert_eq!(early["success"], true, "{early}");
    assert_eq!(early["vbank_num"], account.as_str(), "{early}");
    // Its reload shows the account.
    let second = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(second["status"], "ready", "{second}");
    assert_eq!(second["vbank_num"], account.as_str(), "{second}");
    assert_eq!(
        gate.calls.lock().unwrap().len(),
        1,
        "confirm_url asked once"
    );
    let p = payment_of(&app, &first).await;
    assert_eq!(p["status"], "ready", "{p}");
    assert_eq!(p["vbank_num"], account.as_str(), "{p}");
    let tno = p["pg_tid"].as_str().unwrap().to_string();
    app.sandbox.deposit(&tno, 5000, "00").unwrap();
    let mut status = Value::Null;
    for _ in 0..100 {
        status = payment_of(&app, &first).await["status"].clone();
        if status == "paid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, "paid",
        "the deposit to the issued account is honoured"
    );
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_billing_key_window_with_an_amount_shows_it_but_records_no_money_taken() {
    let app = spawn_app().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "web-billing-amount",
               "amount": 5000, "customer_uid": "web-cust-amount"}),
    )
    .await;
    let shown = fields.iter().find(|(k, _)| k == "good_mny").unwrap();
    assert_eq!(shown.1, "5000", "the window shows what the merchant asked");

    let rsp = through_window(&app, &pay_url, &fields, &MASTERCARD_OK).await;

    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(rsp["paid_amount"], 0, "{rsp}");
    assert!(app.sandbox.ledger().is_empty(), "KCP charged nothing");
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(p["amount"], 0, "{p}");
    assert_eq!(p["customer_uid_usage"], "issue", "{p}");
    let token = app.token().await;
    let (_, c) = app
        .get("/subscribe/customers/web-cust-amount", Some(&token))
        .await;
    assert_eq!(c["response"]["card_number"], "555555******4444", "{c}");
}

#[tokio::test]
async fn cancelling_a_billing_key_windows_issue_payment_is_refused_as_nothing_to_cancel() {
    let app = spawn_app().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "web-billing-cancel",
               "amount": 0, "customer_uid": "web-cust-cancel"}),
    )
    .await;
    let rsp = through_window(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    assert_eq!(rsp["success"], true, "{rsp}");
    let issued = payment_of(&app, &rsp).await;
    assert_eq!(issued["customer_uid_usage"], "issue", "{issued}");
    let token = app.token().await;

    for by in [
        json!({"imp_uid": issued["imp_uid"]}),
        json!({"merchant_uid": "web-billing-cancel"}),
    ] {
        let (status, body) = app.post("/payments/cancel", Some(&token), by).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        assert_eq!(body["code"], 1, "{body}");
        assert_eq!(
            body["message"], "취소할 금액이 없습니다. (0원 결제건은 취소할 수 없습니다)",
            "not 'no such payment': {body}"
        );
    }
    assert_eq!(payment_of(&app, &rsp).await, issued, "nothing changed");
    let (_, c) = app
        .get("/subscribe/customers/web-cust-cancel", Some(&token))
        .await;
    assert_eq!(c["code"], 0, "the key stays: {c}");
}

#[tokio::test]
async fn with_private_targets_off_a_confirm_url_on_this_host_is_never_called_and_nothing_is_charged(
) {
    let app = crate::helpers::spawn_app_with(|c| c.webhooks.private_targets = Some(false)).await;
    let receiver = crate::helpers::Receiver::start().await;

    // By address: refused before the window opens.
    let (_, started) = app
        .post("/checkout/request", None, json!({"imp_code": "imp00000000", "page_url": "http://shop.test/cart",
            "params": {"merchant_uid": "web-ssrf-ip", "amount": 1000, "confirm_url": receiver.url("/confirm")}}))
        .await;
    assert_ne!(started["code"], 0, "{started}");
    assert!(
        started["message"].as_str().unwrap().contains("confirm_url"),
        "{started}"
    );

    // By name: it resolves to this host only when called, so the window's result is stopped.
    let by_name = receiver.url("/confirm").replace("127.0.0.1", "localhost");
    let rsp = request_pay(
        &app,
        json!({"merchant_uid": "web-ssrf-name", "amount": 1000, "confirm_url": by_name}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(
        rsp["error_msg"],
        "고객사 요청에 의해 결제를 중단합니다. (상세사유 : 알 수 없음)"
    );
    assert_eq!(payment_of(&app, &rsp).await["status"], "failed");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());
}

#[tokio::test]
async fn a_result_post_without_its_windows_return_key_neither_reads_nor_fails_the_payment() {
    let app = spawn_app().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-forged", "amount": 1000, "buyer_name": "홍길동"}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let field = |k: &str| {
        result
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let order_no = field("ordr_idxx");
    // Whoever learnt the imp_uid (so the order number) posts a cancel for the open window, and
    // another tries a guessed key.
    let forged = |res_cd: &str| {
        vec![
            ("res_cd".to_string(), res_cd.to_string()),
            ("ordr_idxx".to_string(), order_no.clone()),
            ("param_opt_1".to_string(), field("param_opt_1")),
        ]
    };
    let mut guessed = result.clone();
    for (k, v) in guessed.iter_mut() {
        if k == "param_opt_2" {
            *v = "0".repeat(v.len());
        }
    }
    for post in [forged("3001"), guessed] {
        let page = post_form(&app, &ret_url, &post).await;
        assert!(!page.contains("var rsp="), "{page}");
    }

    let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(
        rsp["status"], "paid",
        "the window's own result still pays: {rsp}"
    );

    // Once paid, a post without the key reveals nothing of the buyer.
    let page = post_form(&app, &ret_url, &forged("0000")).await;
    assert!(!page.contains("var rsp="), "{page}");
    assert!(!page.contains("홍길동"), "{page}");
    app.assert_ledger_agrees().await;
}

#[tokio::test]
async fn a_failed_trade_registration_shows_the_buyer_kcps_refusal_but_never_transport_details() {
    // Only the mobile flow registers a trade (seed 000: "거래등록 (Mobile 필수)").
    let app = spawn_app().await;
    let start = |merchant_uid: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/checkout/request",
                None,
                json!({"imp_code": "imp00000000", "mobile": true, "page_url": "http://shop.test/cart",
                       "params": {"merchant_uid": merchant_uid, "amount": 1000}}),
            )
            .await
            .1
        }
    };
    app.sandbox.inject(FaultRule::new(
        paths::TRADE_REGISTER,
        Fault::HttpStatus { status: 503 },
    ));
    let unreachable = start("web-reg-503").await;
    assert_eq!(unreachable["code"], 1, "{unreachable}");
    let message = unreachable["message"].as_str().unwrap();
    assert!(message.contains("거래등록에 실패"), "{message}");
    assert!(
        !message.contains("http") && !message.contains("503") && !message.contains("127.0.0.1"),
        "no transport detail: {message}"
    );

    // KCP's refusal (its registration answers `Code`/`Message`, spec/kcp.md §2.1): `0003`.
    app.sandbox.inject(FaultRule::new(
        paths::TRADE_REGISTER,
        Fault::AnswerField {
            field: "Code".into(),
            value: "0003".into(),
        },
    ));
    let refused = start("web-reg-refused").await;
    assert_eq!(refused["code"], 1, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("([0003] "),
        "KCP's code is the buyer's to read: {refused}"
    );
}

/// `POST /checkout/request` as the SDK sends it from `http://shop.test/cart` (PC): the envelope.
async fn start_checkout(app: &TestApp, params: Value) -> Value {
    app.post(
        "/checkout/request",
        None,
        json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart", "params": params}),
    )
    .await
    .1
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Seed 004: KCP's billing window issues a key and never charges, its payment window charges and
/// never issues one; a customer_uid must never end up charged without a key.
#[tokio::test]
async fn a_customer_uid_never_opens_a_charging_window_without_issuing_its_key() {
    let app = spawn_app().await;
    let on_kcp = start_checkout(
        &app,
        json!({"pg": "kcp", "pay_method": "card", "merchant_uid": "web-cuid-kcp", "amount": 5000, "customer_uid": "cust-kcp"}),
    )
    .await;
    assert_eq!(on_kcp["code"], -1, "{on_kcp}");
    assert!(
        on_kcp["message"].as_str().unwrap().contains("kcp_billing"),
        "{on_kcp}"
    );
    let without_uid = start_checkout(
        &app,
        json!({"pg": "kcp_billing", "merchant_uid": "web-cuid-missing", "amount": 0}),
    )
    .await;
    assert_eq!(without_uid["code"], -1, "{without_uid}");
    assert!(
        without_uid["message"]
            .as_str()
            .unwrap()
            .contains("customer_uid"),
        "{without_uid}"
    );
    let token = app.token().await;
    for uid in ["web-cuid-kcp", "web-cuid-missing"] {
        let (status, _) = app
            .get(&format!("/payments/find/{uid}"), Some(&token))
            .await;
        assert_eq!(status, 404, "no payment was opened for {uid}");
    }

    // Without a pg (the default channel, seed 004) customer_uid opens the billing window: the
    // amount is shown, a key is issued, nothing is charged.
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-cuid-default", "amount": 5000, "customer_uid": "cust-default"}),
    )
    .await;
    // KCP's PC spelling of the billing window (spec/kcp.md §2.2).
    assert_eq!(field(&fields, "pay_method"), Some("AUTH:CARD"));
    assert_eq!(field(&fields, "card_cert_type"), Some("BATCH"));
    assert_eq!(field(&fields, "good_mny"), Some("5000"));
    let rsp = through_window(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(rsp["paid_amount"], 0, "{rsp}");
    assert!(app.sandbox.ledger().is_empty(), "KCP charged nothing");
    let (_, c) = app
        .get("/subscribe/customers/cust-default", Some(&token))
        .await;
    assert_eq!(c["response"]["card_number"], "555555******4444", "{c}");
}

/// PortOne's documented `vbank_due` forms include `YYYY-MM-DD HH:mm:ss`; and the `'YYYYMMDD'`
/// placeholder public integrations pass with every method stops no card payment.
#[tokio::test]
async fn vbank_due_takes_the_dashed_forms_and_is_ignored_by_other_pay_methods() {
    let app = spawn_app().await;
    let (_, fields) = hand_off(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-due-dashed", "amount": 5000, "vbank_due": "2031-12-24 18:30:15"}),
    )
    .await;
    assert_eq!(field(&fields, "ipgm_date"), Some("20311224183015"));
    let (_, fields) = hand_off(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-due-day", "amount": 5000, "vbank_due": "2031-12-24"}),
    )
    .await;
    assert_eq!(field(&fields, "ipgm_date"), Some("20311224235959"));

    let rsp = request_pay(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-due-card", "amount": 1000, "vbank_due": "YYYYMMDD"}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
}

/// The mobile flow ends with a redirect answered from openport's `Ret_URL`: a relative
/// m_redirect_url must be the merchant page's, not openport's, and its fragment stays last.
#[tokio::test]
async fn a_relative_m_redirect_url_brings_the_mobile_buyer_back_to_the_merchants_host() {
    let app = spawn_app().await;
    let (pay_url, fields) = hand_off_from(
        &app,
        json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://shop.test/cart/pay?step=2",
               "params": {"merchant_uid": "web-rel-redirect", "amount": 1000, "m_redirect_url": "/done?order=9#receipt"}}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_follow.post(&ret_url).form(&result).send().await.unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("https://shop.test/done?order=9&imp_uid=imp_"),
        "{location}"
    );
    assert!(
        location.ends_with("&imp_success=true#receipt"),
        "{location}"
    );

    for bad in ["javascript:alert(1)", "data:text/html,hi"] {
        let refused = app
            .post("/checkout/request", None, json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://shop.test/cart",
                "params": {"merchant_uid": "web-bad-redirect", "amount": 1000, "m_redirect_url": bad}}))
            .await
            .1;
        assert_eq!(refused["code"], -1, "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("m_redirect_url"),
            "{refused}"
        );
    }
}

/// A mobile page without `m_redirect_url` gets the buyer back to itself (`page_url`, the SDK's
/// `location.href`), which after an earlier attempt still carries that attempt's result: the
/// return names this payment's result only, once (a parser taking a key's first value would
/// otherwise read the old failure of a paid order), and keeps the page's own parameters.
#[tokio::test]
async fn a_mobile_return_to_the_page_carries_only_this_payments_result_and_the_pages_own_parameters(
) {
    let app = spawn_app().await;
    let page = "https://shop.test/cart?step=2&imp_uid=imp_old&merchant_uid=old-order\
                &imp_success=false&error_code=3001&error_msg=%EC%B7%A8%EC%86%8C#pay";
    let (pay_url, fields) = hand_off_from(
        &app,
        json!({"imp_code": "imp00000000", "mobile": true, "page_url": page,
               "params": {"merchant_uid": "web-page-again", "amount": 1000}}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let location = post_without_following(&ret_url, &result).await;
    assert!(
        location.starts_with("https://shop.test/cart?step=2&imp_uid=imp_"),
        "{location}"
    );
    assert!(location.ends_with("#pay"), "{location}");
    let pairs: Vec<(String, String)> = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let values = |key: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("step"), ["2"], "{location}");
    assert_eq!(values("merchant_uid"), ["web-page-again"], "{location}");
    assert_eq!(values("imp_success"), ["true"], "{location}");
    let imp_uid = values("imp_uid");
    assert_eq!(imp_uid.len(), 1, "{location}");
    assert_ne!(imp_uid[0], "imp_old", "{location}");
    assert!(values("error_code").is_empty(), "{location}");
    assert!(values("error_msg").is_empty(), "{location}");
    let paid = payment_of(&app, &json!({"imp_uid": imp_uid[0]})).await;
    assert_eq!(paid["status"], "paid", "{paid}");
}

#[tokio::test]
async fn iamports_script_paths_serve_the_same_sdk() {
    let app = spawn_app().await;
    let body = |path: &'static str| {
        let app = &app;
        async move {
            let res = app
                .http
                .get(format!("{}{path}", app.base))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            assert!(res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/javascript"));
            res.text().await.unwrap()
        }
    };
    let sdk = body("/js/iamport.js").await;
    assert!(sdk.contains("window.IMP = IMP"));
    assert_eq!(body("/v1/iamport.js").await, sdk);
    for version in ["1.2.0", "1.1.5", "1.1.7", "1.1.8"] {
        let path: &'static str = format!("/js/iamport.payment-{version}.js").leak();
        assert_eq!(body(path).await, sdk);
    }
    for other in [
        "/js/iamport.payment-.js",
        "/js/iamport.payment-1..2.js",
        "/js/iamport.payment-1.2.0.css",
        "/js/other.js",
    ] {
        let res = app
            .http
            .get(format!("{}{other}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{other}");
        let json: serde_json::Value = res.json().await.unwrap();
        assert_eq!(json["code"], -1, "{other}");
    }
}

/// The minified names of iamport's scripts, which the SDK's base detection takes for its own
/// paths (`SCRIPT_PATH`), serve the same SDK: a merchant swapping only the host of a minified
/// iamport URL gets `IMP`.
#[tokio::test]
async fn iamports_minified_script_paths_serve_the_same_sdk() {
    let app = spawn_app().await;
    let get = |path: &'static str| app.http.get(format!("{}{path}", app.base)).send();
    let sdk = get("/js/iamport.js").await.unwrap().text().await.unwrap();
    for path in [
        "/js/iamport.min.js",
        "/js/iamport.payment-1.2.0.min.js",
        "/js/iamport.payment-1.1.5.min.js",
    ] {
        let res = get(path).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/javascript"),
            "{path}"
        );
        assert_eq!(res.text().await.unwrap(), sdk, "{path}");
    }
    for other in [
        "/js/iamport.min.min.js",
        "/js/iamport.payment-.min.js",
        "/js/iamport.payment-1.2.min.0.js",
        "/js/other.min.js",
    ] {
        assert_eq!(get(other).await.unwrap().status(), 404, "{other}");
    }
}

/// iamport makes a merchant_uid up when request_pay has none; so does openport, and the rsp
/// names it.
#[tokio::test]
async fn a_request_pay_without_merchant_uid_is_given_a_unique_one() {
    let app = spawn_app().await;
    let first = start_checkout(&app, json!({"amount": 1000})).await;
    assert_eq!(first["code"], 0, "{first}");
    let generated = first["response"]["merchant_uid"].as_str().unwrap();
    assert!(generated.starts_with("mid_"), "{first}");
    let second = start_checkout(&app, json!({"amount": 1000})).await;
    assert_ne!(second["response"]["merchant_uid"], generated, "{second}");

    let rsp = request_pay(
        &app,
        json!({"pay_method": "card", "amount": 1200}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
    let merchant_uid = rsp["merchant_uid"].as_str().unwrap();
    assert!(merchant_uid.starts_with("mid_"), "{rsp}");
    assert_eq!(payment_of(&app, &rsp).await["merchant_uid"], merchant_uid);
}

/// With `OPENPORT_PUBLIC_URL` every URL handed out is built on it: neither the request's `Host`
/// nor an `X-Forwarded-Proto` from a client that is no trusted proxy names openport.
#[tokio::test]
async fn the_configured_public_url_makes_ret_url_and_start_url_whatever_the_host_header_says() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.public_url = Some("https://pay.example.test/pg/".into())
    })
    .await;
    let res = app
        .http
        .post(app.url("/checkout/request"))
        .header("host", "evil.test")
        .header("x-forwarded-proto", "http")
        .json(
            &json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
                      "params": {"merchant_uid": "web-public-url", "amount": 1000}}),
        )
        .send()
        .await
        .unwrap();
    let started: Value = res.json().await.unwrap();
    assert_eq!(started["code"], 0, "{started}");
    let start_url = started["response"]["start_url"].as_str().unwrap();
    let path = start_url
        .strip_prefix("https://pay.example.test/pg/checkout/session/")
        .unwrap_or_else(|| panic!("{start_url}"));
    // The proxy strips /pg: the hand-off page is openport's /checkout/session/{token}.
    let page = app
        .http
        .get(app.url(&format!("/checkout/session/{path}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, fields) = form(&page);
    assert_eq!(
        field(&fields, "Ret_URL"),
        Some("https://pay.example.test/pg/checkout/kcp/return")
    );
}

/// The cookie that marks the browser that opened a mobile window was named after the session
/// token, the window's bearer capability, and had no `Secure`: on an https deployment an attacker
/// on the network who redirected the buyer once to any `http://` URL of the host under
/// `/checkout/session/` read every window token of the last day from its `Cookie` header. Over
/// an https public URL it is `Secure`; over plain http (test mode) it cannot be, and either way
/// its name is a digest, never the token.
#[tokio::test]
async fn the_hand_off_cookie_is_secure_over_an_https_public_url_and_never_carries_the_token() {
    for (public_url, secure) in [(Some("https://pay.example.test/pg/"), true), (None, false)] {
        let app =
            crate::helpers::spawn_app_with(|c| c.public_url = public_url.map(Into::into)).await;
        let (_, started) = app
            .post(
                "/checkout/request",
                None,
                json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://shop.test/cart",
                       "params": {"merchant_uid": "m-cookie", "amount": 1000,
                                  "m_redirect_url": "https://shop.test/done"}}),
            )
            .await;
        assert_eq!(started["code"], 0, "{started}");
        let token = started["response"]["session"].as_str().unwrap();
        let start_url = started["response"]["start_url"].as_str().unwrap();
        assert!(
            start_url.ends_with(&format!("/checkout/session/{token}")),
            "{start_url}"
        );
        // The proxy strips /pg: the hand-off page is openport's /checkout/session/{token}.
        let res = app
            .http
            .get(app.url(&format!("/checkout/session/{token}")))
            .send()
            .await
            .unwrap();
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with("openport_window_"), "{cookie}");
        assert!(!cookie.contains(token), "{cookie}");
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        assert_eq!(
            attributes.contains(&"Secure"),
            secure,
            "{public_url:?}: {cookie}"
        );
        assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    }
}

/// The demo verifier (test mode) calls this instance on its listen address: a `Host` naming
/// another server neither receives a request from openport nor has its answer shown.
#[tokio::test]
async fn the_demo_verifier_calls_only_openport_whatever_host_the_request_names() {
    let app = spawn_app().await;
    let receiver = crate::helpers::Receiver::start().await;
    let rsp = request_pay(
        &app,
        json!({"merchant_uid": "demo-points-1000-abc", "amount": 1000}),
        &CARD_OK,
    )
    .await;
    let imp_uid = rsp["imp_uid"].as_str().unwrap();
    let other_host = receiver
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let res = app
        .http
        .get(app.url(&format!("/demo/api/verify/{imp_uid}")))
        .header("host", other_host)
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["verified"], true, "{answer}");
    assert_eq!(answer["payment"]["imp_uid"], imp_uid);
    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());

    let (status, _) = app.get("/demo/api/verify/imp_1%3Fx%3D1", None).await;
    assert_eq!(status, 400);
}

/// kcpProducts go into KCP's `good_info` under good_name's rules (spec/kcp.md §6): a product
/// name cannot add items or fields with good_info's own separators, and script is refused.
#[tokio::test]
async fn kcp_products_text_is_sanitized_like_good_name_before_it_reaches_good_info() {
    let app = spawn_app().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-escrow-text", "amount": 3000, "escrow": true, "buyer_name": "홍길동",
               "kcpProducts": [
                   {"orderNumber": "sock;1", "name": "양말\u{1f}good_amtx=1\u{1e}seq=9|x", "quantity": 2, "amount": 1000},
                   {"orderNumber": "cap-1", "name": "모자, \"blue\"", "quantity": 1, "amount": 1000}
               ]}),
    )
    .await;
    let info = field(&fields, "good_info").unwrap();
    assert_eq!(
        info,
        "seq=1\u{1f}ordr_numb=sock 1\u{1f}good_name=양말 good_amtx=1 seq=9 x\u{1f}good_cntx=2\u{1f}good_amtx=1000\
         \u{1e}seq=2\u{1f}ordr_numb=cap-1\u{1f}good_name=모자   blue\u{1f}good_cntx=1\u{1f}good_amtx=1000"
    );
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["status"], "paid", "{rsp}");

    let refused = start_checkout(
        &app,
        json!({"merchant_uid": "web-escrow-script", "amount": 1000, "escrow": true,
               "kcpProducts": [{"orderNumber": "o1", "name": "<script>alert(1)</script>", "quantity": 1, "amount": 1000}]}),
    )
    .await;
    assert_eq!(refused["code"], -1, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("kcpProducts.name"),
        "{refused}"
    );
}

/// KCP's escrow window requires a receiver (spec §2.11 `rcvr_*`, "에스크로결제 사용시 필수 정보"
/// in KCP's samples): openport sends the buyer as the receiver, made fit for KCP as the `buyr_*`
/// fields are (a comma in the address becomes a space). The sandbox, as KCP would, refuses an
/// escrow window without `rcvr_name`, or whose `good_info` holds another number of items than
/// `bask_cntx`; an escrow checkout without a `buyer_name` is refused before anything is written.
#[tokio::test]
async fn an_escrow_window_sends_the_buyer_as_kcps_receiver_and_a_basket_kcp_can_count() {
    let app = spawn_app().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-escrow-rcvr", "amount": 3000, "escrow": true,
        "buyer_name": "홍길동", "buyer_tel": "010-1234-5678", "buyer_email": "buyer@example.com",
        "buyer_addr": "서울시 강남구, 101호", "buyer_postcode": "06236",
        "kcpProducts": [
            {"orderNumber": "sock-1", "name": "양말", "quantity": 2, "amount": 1000},
            {"orderNumber": "cap-1", "name": "모자", "quantity": 1, "amount": 1000}
        ]}),
    )
    .await;
    for (name, wanted) in [
        ("rcvr_name", "홍길동"),
        ("rcvr_tel1", "010-1234-5678"),
        ("rcvr_tel2", "010-1234-5678"),
        ("rcvr_mail", "buyer@example.com"),
        ("rcvr_zipx", "06236"),
        ("rcvr_add1", "서울시 강남구  101호"),
        ("rcvr_add2", ""),
        ("bask_cntx", "2"),
    ] {
        assert_eq!(field(&fields, name), Some(wanted), "{name}");
    }
    let edited = |name: &str, value: Option<&str>| -> Vec<(String, String)> {
        fields
            .iter()
            .filter(|(k, _)| k != name || value.is_some())
            .map(|(k, v)| {
                let v = if k == name {
                    value.unwrap().to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    };
    for (name, value) in [
        ("rcvr_name", None),
        ("rcvr_name", Some("")),
        ("bask_cntx", Some("1")),
        ("bask_cntx", Some("3")),
    ] {
        let page = post_form(&app, &pay_url, &edited(name, value)).await;
        assert!(page.contains("id=\"error\""), "{name}={value:?}: {page}");
        assert!(page.contains(name), "names {name}: {page}");
    }
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
    assert_eq!(payment_of(&app, &rsp).await["escrow"], true);

    for buyer_name in [None, Some(""), Some(" , ")] {
        let mut params = json!({"merchant_uid": "web-escrow-no-rcvr", "amount": 1000, "escrow": true,
               "kcpProducts": [{"orderNumber": "o1", "name": "양말", "quantity": 1, "amount": 1000}]});
        if let Some(n) = buyer_name {
            params["buyer_name"] = json!(n);
        }
        let refused = start_checkout(&app, params).await;
        assert_eq!(refused["code"], -1, "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains("buyer_name"),
            "{refused}"
        );
    }
}

/// Mixed taxation is not sent to KCP: a tax_free amount is refused, not dropped (it would be
/// taxed); 0 is no tax-free part.
#[tokio::test]
async fn a_nonzero_tax_free_is_refused_before_the_window_and_zero_is_no_tax_free_part() {
    let app = spawn_app().await;
    for tax_free in [json!(100), json!("100")] {
        let refused = start_checkout(
            &app,
            json!({"merchant_uid": "web-tax-free", "amount": 1000, "tax_free": tax_free}),
        )
        .await;
        assert_eq!(refused["code"], -1, "{refused}");
        assert_eq!(
            refused["message"],
            "면세공급가액(tax_free)은 지원하지 않습니다. KCP 복합과세(TG03) 결제를 지원하지 않으므로 tax_free는 0이거나 생략해야 합니다."
        );
    }
    let rsp = request_pay(
        &app,
        json!({"merchant_uid": "web-tax-free-0", "amount": 1000, "tax_free": 0}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["status"], "paid", "{rsp}");
    assert!(app.sandbox.ledger().iter().all(|e| e.amount == 1000));
}

/// `use_pay_method` comes back through the buyer's browser and decides the approval's pay_type;
/// KCP's window only offers the method it was opened with, so another one is refused before
/// anything is sent to KCP.
#[tokio::test]
async fn a_result_naming_another_pay_method_than_the_window_was_opened_with_is_never_approved() {
    let app = spawn_app().await;
    let probe = FaultRule::new(paths::ENC_PAYMENT, Fault::Delay { ms: 0 });
    app.sandbox.inject(probe.clone());
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-method-swap", "amount": 1000}),
    )
    .await;
    let (ret_url, mut result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(field(&result, "use_pay_method"), Some("100000000000"));
    for (k, v) in result.iter_mut() {
        if k == "use_pay_method" {
            *v = "001000000000".into(); // a virtual account
        }
    }
    let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(rsp["success"], false, "{rsp}");
    assert!(
        rsp["error_msg"]
            .as_str()
            .unwrap()
            .contains("use_pay_method"),
        "{rsp}"
    );
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["pay_method"], "card");
    assert_eq!(
        app.sandbox.armed_faults(),
        vec![probe],
        "no approval call reached KCP"
    );
    assert!(app.sandbox.ledger().is_empty());

    // The genuine result of the same window is not approved afterwards either.
    for (k, v) in result.iter_mut() {
        if k == "use_pay_method" {
            *v = "100000000000".into();
        }
    }
    let again = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(again["status"], "failed", "{again}");
    assert!(app.sandbox.ledger().is_empty());
    app.assert_ledger_agrees().await;
}

/// A merchant_uid whose account waits for its deposit, or whose approval is still being decided,
/// is not "already paid": the refusal says what it is.
#[tokio::test]
async fn a_merchant_uid_with_an_issued_account_or_a_payment_in_flight_is_refused_for_what_it_is() {
    let app = spawn_app().await;
    let vbank = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-taken-vbank", "amount": 5000}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(vbank["status"], "ready", "{vbank}");
    let refused = start_checkout(
        &app,
        json!({"merchant_uid": "web-taken-vbank", "amount": 5000}),
    )
    .await;
    assert_eq!(refused["code"], 1, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("가상계좌가 발급"), "{message}");
    assert!(!message.contains("완료"), "{message}");

    lose_the_approval_and_the_inquiry(&app);
    let in_flight = request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "web-taken-pending", "amount": 3000}),
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await;
    assert_eq!(in_flight["error_code"], "F500", "{in_flight}");
    let refused = start_checkout(
        &app,
        json!({"merchant_uid": "web-taken-pending", "amount": 3000}),
    )
    .await;
    assert_eq!(refused["code"], 1, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("진행 중인 결제"), "{message}");
    assert!(!message.contains("완료"), "{message}");
}

/// Starts a checkout with `params` (naming its `merchant_uid`), which must be refused with a
/// message containing `wanted` and leave nothing behind ([`refused_without_a_trace`]).
async fn refused_with(app: &TestApp, params: Value, wanted: &str) {
    let uid = params["merchant_uid"].as_str().map(str::to_string);
    let refused = start_checkout(app, params.clone()).await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains(wanted),
        "{params}: {refused}"
    );
    refused_without_a_trace(app, &refused, uid.as_deref()).await;
}

/// A refusal of `POST /checkout/request` before the window, as the SDK reads it (`code -1`,
/// `imp_uid` null), that left nothing behind: no payment (none at all, and none `GET
/// /payments/find` knows under `merchant_uid` when the REST API can name it), no session, nothing
/// sent to KCP.
async fn refused_without_a_trace(app: &TestApp, refused: &Value, merchant_uid: Option<&str>) {
    use sea_orm::EntityTrait;
    assert_eq!(refused["code"], -1, "{refused}");
    assert!(refused["response"]["imp_uid"].is_null(), "{refused}");
    let payments = openport::store::payments::all_payments(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert!(
        payments.is_empty(),
        "no payment is written: {refused} left {:?}",
        payments
            .iter()
            .map(|p| (&p.merchant_uid, p.amount, &p.status))
            .collect::<Vec<_>>()
    );
    let sessions = openport::store::entity::checkout_session::Entity::find()
        .all(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert!(sessions.is_empty(), "no session is opened: {refused}");
    if let Some(uid) = merchant_uid {
        let token = app.token().await;
        let (status, found) = app
            .get(&format!("/payments/find/{uid}"), Some(&token))
            .await;
        assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{found}");
    }
    assert!(app.sandbox.ledger().is_empty());
}

/// KCP's `good_mny` has 12 digits: an amount over 999,999,999,999 (`1e20` no longer saturates
/// into a stored `i64::MAX`), or one that is no positive whole number, is refused as the REST
/// API refuses it, before a payment is opened that KCP would only fail.
#[tokio::test]
async fn an_amount_over_the_maximum_or_not_a_positive_whole_number_is_refused_before_anything_is_written(
) {
    let app = spawn_app().await;
    let over = [
        json!(1e20),
        json!(1_000_000_000_000i64),
        json!(i64::MAX),
        json!(u64::MAX),
        json!("1000000000000"),
    ];
    for (i, amount) in over.into_iter().enumerate() {
        let uid = format!("web-amount-over-{i}");
        let refused = start_checkout(
            &app,
            json!({"pg": "kcp", "pay_method": "card", "merchant_uid": uid, "amount": amount}),
        )
        .await;
        assert_eq!(
            refused["message"], "amount는 999999999999 이하여야 합니다.",
            "{amount}: {refused}"
        );
        refused_without_a_trace(&app, &refused, Some(&uid)).await;
    }
    let not_whole = [
        json!(1000.5),
        json!(-1000),
        json!(0),
        json!("12.5"),
        json!(null),
    ];
    for (i, amount) in not_whole.into_iter().enumerate() {
        let uid = format!("web-amount-bad-{i}");
        refused_with(
            &app,
            json!({"pay_method": "card", "merchant_uid": uid, "amount": amount}),
            "amount",
        )
        .await;
    }
    // A billing-key window shows its amount too: the same ceiling.
    let refused = start_checkout(
        &app,
        json!({"pg": "kcp_billing", "customer_uid": "user-big", "merchant_uid": "web-amount-billing", "amount": 1e13}),
    )
    .await;
    refused_without_a_trace(&app, &refused, Some("web-amount-billing")).await;
}

/// The REST API takes merchant_uid and customer_uid of 1 to 80 characters, not blank, without
/// control characters; a payment opened in the browser under another one could not be found by
/// it (`GET /payments/find/{merchant_uid}` refuses the control character in its path).
#[tokio::test]
async fn a_merchant_uid_or_customer_uid_the_rest_api_would_refuse_opens_no_payment() {
    let app = spawn_app().await;
    for (merchant_uid, wanted) in [
        (json!("a\u{1}b"), "merchant_uid에 허용되지 않는 제어 문자"),
        (
            json!("order\u{1b}[2J"),
            "merchant_uid에 허용되지 않는 제어 문자",
        ),
        (json!("   "), "merchant_uid 파라메터가 누락되었습니다."),
        (
            json!("m".repeat(81)),
            "merchant_uid는 80자 이하여야 합니다.",
        ),
        (json!({"id": 7}), "merchant_uid 값은 문자열이어야 합니다."),
    ] {
        let refused = start_checkout(
            &app,
            json!({"pg": "kcp", "pay_method": "card", "merchant_uid": merchant_uid, "amount": 1000}),
        )
        .await;
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .contains(wanted),
            "{merchant_uid}: {refused}"
        );
        refused_without_a_trace(&app, &refused, None).await;
    }
    for (i, (customer_uid, wanted)) in [
        (json!("c".repeat(500)), "customer_uid는 1~80자여야 합니다."),
        (json!("  "), "customer_uid는 1~80자여야 합니다."),
        (
            json!("user\u{7}42"),
            "customer_uid에 허용되지 않는 제어 문자",
        ),
        (json!(["user-42"]), "customer_uid 값은 문자열이어야 합니다."),
    ]
    .into_iter()
    .enumerate()
    {
        let uid = format!("web-customer-uid-{i}");
        refused_with(
            &app,
            json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": uid,
                   "customer_uid": customer_uid, "amount": 0}),
            wanted,
        )
        .await;
    }
}

/// A `Host` that is no `host[:port]` is the client's error: HTTP 400 with the SDK's envelope,
/// a warning at most, and not the 503 "public URL not configured" that tells an operator to
/// act (test mode takes any well-formed Host).
#[tokio::test]
async fn a_malformed_host_header_is_a_400_for_the_client_not_a_503_for_the_operator() {
    let app = spawn_app().await;
    let request_id = format!("r-{}", openport::domain::ids::random_hex(8));
    let res = app
        .http
        .post(app.url("/checkout/request"))
        .header("host", "evil.example\"><script>")
        .header("x-request-id", &request_id)
        .json(
            &json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
                      "params": {"merchant_uid": "web-bad-host", "amount": 1000}}),
        )
        .send()
        .await
        .unwrap();
    let (status, refused) = TestApp::read(res).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Host"),
        "{refused}"
    );
    assert_eq!(refused["response"]["merchant_uid"], "web-bad-host");
    refused_without_a_trace(&app, &refused, Some("web-bad-host")).await;
    let logs = crate::helpers::captured_logs();
    // This request's lines: another test logs the 503's ERROR on purpose.
    let field = format!("request_id={request_id}");
    let own: Vec<&str> = logs.lines().filter(|l| l.contains(&field)).collect();
    assert!(
        own.iter()
            .any(|l| l.contains("the request's Host header is not a host[:port]")),
        "a warning names the refusal: {own:#?}"
    );
    assert!(
        !own.iter()
            .any(|l| l.contains("OPENPORT_PUBLIC_URL is not set") || l.contains(" ERROR ")),
        "no ERROR line for the operator: {own:#?}"
    );
    assert!(
        !logs.contains("evil.example\"><script>"),
        "nor the header's text"
    );
}

/// Outside test mode without `OPENPORT_PUBLIC_URL`, a checkout from a shop's host is the
/// operator's to fix: HTTP 503 and one ERROR line saying what to set. The request log added a
/// second ERROR line for the same request, saying only "503".
#[tokio::test]
async fn a_checkout_without_a_public_url_outside_test_mode_is_a_503_logged_once_at_error() {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let app = crate::helpers::spawn_app_with(move |c| {
        c.test_mode = false;
        c.master_key = Some(secrecy::SecretString::from(key));
    })
    .await;
    let imp_code = app.app.demo.as_ref().unwrap().merchant.imp_code.clone();
    let request_id = format!("r-{}", openport::domain::ids::random_hex(8));
    let res = app
        .http
        .post(app.url("/checkout/request"))
        .header("host", "shop.example.com")
        .header("x-request-id", &request_id)
        .json(
            &json!({"imp_code": imp_code, "mobile": false, "page_url": "https://shop.example.com/cart",
                    "params": {"merchant_uid": "web-no-public-url", "amount": 1000}}),
        )
        .send()
        .await
        .unwrap();
    let (status, refused) = TestApp::read(res).await;
    assert_eq!(
        status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "{refused}"
    );
    let field = format!("request_id={request_id}");
    let errors: Vec<String> = crate::helpers::captured_logs()
        .lines()
        .filter(|l| l.contains(&field) && l.contains(" ERROR "))
        .map(str::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("OPENPORT_PUBLIC_URL is not set"),
        "{}",
        errors[0]
    );
}

/// `escrow` is a boolean in iamport's SDK: `"true"` was ignored, opening a plain payment the
/// merchant meant as escrow; it is refused, not guessed. `kcpProducts` that are not products
/// (not objects, quantity below 1, a negative amount, not an array) never reach `good_info`.
#[tokio::test]
async fn escrow_that_is_no_boolean_and_kcp_products_that_are_no_products_are_refused_before_anything_is_written(
) {
    let app = spawn_app().await;
    let product = |quantity: Value, amount: Value| json!([{"orderNumber": "o1", "name": "양말", "quantity": quantity, "amount": amount}]);
    let cases = [
        (
            json!("true"),
            product(json!(1), json!(1000)),
            "escrow 값은 true 또는 false",
        ),
        (
            json!(1),
            product(json!(1), json!(1000)),
            "escrow 값은 true 또는 false",
        ),
        (json!(true), json!([1, 2]), "kcpProducts[0]는 상품 객체"),
        (json!(true), json!("양말"), "kcpProducts는 상품 객체"),
        (
            json!(true),
            product(json!(-2), json!(1000)),
            "kcpProducts[0].quantity",
        ),
        (
            json!(true),
            product(json!(0), json!(1000)),
            "kcpProducts[0].quantity",
        ),
        (
            json!(true),
            product(json!(1), json!(-1000)),
            "kcpProducts[0].amount",
        ),
        (
            json!(true),
            product(json!(1.5), json!(1000)),
            "kcpProducts[0].quantity",
        ),
        (
            json!(true),
            product(json!(1), json!(1e20)),
            "kcpProducts[0].amount",
        ),
    ];
    for (i, (escrow, products, wanted)) in cases.into_iter().enumerate() {
        let uid = format!("web-escrow-input-{i}");
        refused_with(
            &app,
            json!({"pay_method": "card", "merchant_uid": uid, "amount": 1000,
                   "escrow": escrow, "kcpProducts": products}),
            wanted,
        )
        .await;
    }
}

/// The checkout reads `notice_url` as the REST API does (`domain::text::string_list`): an object,
/// `true`, or a list with an item that is not text is refused before anything is written, where
/// it used to be dropped, sending the payment's webhooks to the merchant's default URL instead.
#[tokio::test]
async fn a_notice_url_that_is_no_text_or_list_of_texts_is_refused_before_anything_is_written() {
    let app = spawn_app().await;
    let cases = [
        (json!({"url": "https://shop.example/hook"}), "notice_url"),
        (json!(true), "notice_url"),
        (json!(["https://shop.example/hook", {"u": 1}]), "notice_url"),
        (json!(["https://shop.example/hook", false]), "notice_url"),
        (json!("ftp://shop.example/hook"), "http:// 또는 https://"),
    ];
    for (i, (notice_url, wanted)) in cases.into_iter().enumerate() {
        let uid = format!("web-notice-url-{i}");
        refused_with(
            &app,
            json!({"pay_method": "card", "merchant_uid": uid, "amount": 1000,
                   "notice_url": notice_url}),
            wanted,
        )
        .await;
    }
    let opened = start_checkout(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-notice-url-ok", "amount": 1000,
               "notice_url": ["https://shop.example/a", "https://shop.example/b"]}),
    )
    .await;
    assert_eq!(opened["code"], 0, "{opened}");
}

/// The billing-key window is opened by anyone who has the shop page's public imp_code: it replaces
/// a customer's existing key (deleting the old one at KCP) only on the merchant's word, a
/// merchant_uid its server prepared. Without it the window is refused before it opens and the key
/// stays; a first key needs no such word.
#[tokio::test]
async fn an_anonymous_billing_key_window_cannot_replace_a_customers_key_without_the_merchants_word()
{
    let app = spawn_app().await;
    let token = app.token().await;
    let first = request_pay(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "key-1", "amount": 0, "customer_uid": "victim"}),
        &MASTERCARD_OK,
    )
    .await;
    assert_eq!(first["success"], true, "a first key needs no word: {first}");
    let refused = start_checkout(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "key-2", "amount": 0, "customer_uid": "victim"}),
    )
    .await;
    assert_eq!(refused["code"], 1, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("사전등록"),
        "{refused}"
    );
    let (_, c) = app.get("/subscribe/customers/victim", Some(&token)).await;
    assert_eq!(c["response"]["card_number"], "555555******4444", "{c}");
    let states: Vec<kcp_sandbox::BatchKeyState> = app
        .sandbox
        .batch_keys()
        .into_iter()
        .map(|k| k.state)
        .collect();
    assert_eq!(
        states,
        [kcp_sandbox::BatchKeyState::Active],
        "the key lives on at KCP"
    );
    let (status, _) = app.get("/payments/find/key-2", Some(&token)).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "nothing opened");
}

/// A billing-key window opened (PC or `mobile`) for the demo merchant in group `T00001000489`,
/// whose group an operator changes (`openport merchant set-group-id`) to `T00002000002` while the
/// buyer is in the window: KCP issues the key in the group the window was opened with, so openport
/// stores it there, and it charges (a key stored under the new group is refused every charge,
/// 8302 "no such batch key"). The window's form spells the group per flow (spec/kcp.md §2.2).
/// `kept_before`: the session is as a version that did not keep the group apart left it, with the
/// group in its form only.
async fn a_billing_window_across_a_group_change(mobile: bool, kept_before: bool) {
    use openport::service::merchants::{set_kcp_group_id, DEMO_IMP_CODE};
    let app =
        crate::helpers::spawn_app_with(|c| c.kcp.group_id = Some("T00001000489".into())).await;
    let uid = match (mobile, kept_before) {
        (true, _) => "moved-mobile",
        (false, false) => "moved-pc",
        (false, true) => "moved-pc-old",
    };
    let params = json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": format!("{uid}-issue"),
                        "amount": 0, "customer_uid": uid});
    let (pay_url, fields) = if mobile {
        mobile_hand_off(&app, params).await
    } else {
        hand_off(&app, params).await
    };
    let (spelling, other) = if mobile {
        ("kcp_group_id", "kcpgroup_id")
    } else {
        ("kcpgroup_id", "kcp_group_id")
    };
    assert_eq!(field(&fields, spelling), Some("T00001000489"), "{fields:?}");
    assert_eq!(field(&fields, other), None, "{fields:?}");
    if kept_before {
        forget_the_windows_kept_group(&app).await;
    }

    set_kcp_group_id(&app.app.gateway.db, DEMO_IMP_CODE, "T00002000002")
        .await
        .unwrap();
    // This instance learns of the change (as PostgreSQL's announcement or the cache's minute
    // makes it) before the buyer finishes.
    app.app.gateway.forget_merchant(None);

    let (ret_url, result) = window_result(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    if mobile {
        post_without_following(&ret_url, &result).await;
    } else {
        let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
        assert_eq!(rsp["success"], true, "{rsp}");
    }
    let token = app.token().await;
    let (_, issued) = app
        .get(&format!("/payments/find/{uid}-issue"), Some(&token))
        .await;
    assert_eq!(issued["response"]["status"], "paid", "{issued}");
    let kcp_groups: Vec<String> = app
        .sandbox
        .batch_keys()
        .into_iter()
        .map(|k| k.group_id)
        .collect();
    assert_eq!(kcp_groups, ["T00001000489"]);

    let (_, paid) = crate::billing::again(&app, &token, uid, &format!("{uid}-1"), 1000).await;
    assert_eq!(paid["response"]["status"], "paid", "{paid}");
    assert_eq!(app.sandbox.ledger().len(), 1);
    let rows = crate::billing::key_rows(&app, uid).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].group_id, "T00001000489", "{rows:?}");
}

/// Takes the group out of every checkout session's kept params, leaving it in the window's form.
async fn forget_the_windows_kept_group(app: &TestApp) {
    use openport::store::entity::checkout_session;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    for session in checkout_session::Entity::find()
        .all(&app.app.gateway.db.write)
        .await
        .unwrap()
    {
        let mut params: Value = serde_json::from_str(&session.params).unwrap();
        params.as_object_mut().unwrap().remove("group_id");
        let mut row: checkout_session::ActiveModel = session.into();
        row.params = Set(params.to_string());
        row.update(&app.app.gateway.db.write).await.unwrap();
    }
}

#[tokio::test]
async fn a_pc_billing_windows_key_is_stored_and_charged_in_the_group_the_window_was_opened_with_after_the_group_changed(
) {
    a_billing_window_across_a_group_change(false, false).await;
}

#[tokio::test]
async fn a_mobile_billing_windows_key_is_stored_and_charged_in_the_group_the_window_was_opened_with_after_the_group_changed(
) {
    a_billing_window_across_a_group_change(true, false).await;
}

/// A PC window opened by a version that kept its group only in the form (as `kcpgroup_id`).
#[tokio::test]
async fn a_pc_billing_window_opened_before_its_group_was_kept_apart_stores_its_key_in_the_group_the_window_was_opened_with(
) {
    a_billing_window_across_a_group_change(false, true).await;
}

/// KCP's PC window returns a billing key's masked card (`batch_cardno_return_yn=Y`) in the form's
/// own `card_mask_no` input, which KCP's PC batch sample declares empty as it does the other answer
/// inputs; KCP's issuance answer carries no mask (spec/kcp.md §2.5), so it is the card the key is
/// shown with. The mobile window posts it to `Ret_URL` itself (§2.3): its post sends none.
#[tokio::test]
async fn a_pc_billing_windows_form_declares_the_card_mask_no_input_kcp_returns_the_masked_card_in()
{
    let app = spawn_app().await;
    let billing = |uid: &str| {
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": format!("{uid}-issue"),
               "amount": 0, "customer_uid": uid})
    };
    let (_, pc) = hand_off(&app, billing("mask-pc")).await;
    assert_eq!(field(&pc, "batch_cardno_return_yn"), Some("Y"), "{pc:?}");
    assert_eq!(field(&pc, "card_mask_no"), Some(""), "{pc:?}");
    let (_, mobile) = mobile_hand_off(&app, billing("mask-mobile")).await;
    assert_eq!(
        field(&mobile, "batch_cardno_return_yn"),
        Some("Y"),
        "{mobile:?}"
    );
    assert_eq!(field(&mobile, "card_mask_no"), None, "{mobile:?}");
    // A card window is not asked for one.
    let (_, card) = hand_off(&app, json!({"merchant_uid": "mask-card", "amount": 1000})).await;
    assert_eq!(field(&card, "card_mask_no"), None, "{card:?}");

    // The PC window fills it and the key shows it.
    let (pay_url, fields) = hand_off(&app, billing("mask-pc-2")).await;
    let rsp = through_window(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    assert_eq!(rsp["success"], true, "{rsp}");
    let token = app.token().await;
    let (_, c) = app
        .get("/subscribe/customers/mask-pc-2", Some(&token))
        .await;
    assert_eq!(c["response"]["card_number"], "555555******4444", "{c}");
}

/// A key registered for the customer_uid while a window was open (here over REST) is not replaced
/// by the window's completion either: the key KCP just issued for the window is deleted there and
/// the window's payment fails.
#[tokio::test]
async fn a_key_registered_while_the_window_was_open_is_kept_and_the_windows_new_key_deleted_at_kcp()
{
    let app = spawn_app().await;
    let token = app.token().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "race-1", "amount": 0, "customer_uid": "race-cust"}),
    )
    .await;
    let registered = crate::billing::register(
        &app,
        &token,
        "race-cust",
        crate::helpers::test_cards::SHINHAN_CREDIT,
    )
    .await;
    assert_eq!(registered["code"], 0, "{registered}");
    let rsp = through_window(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    assert_eq!(rsp["success"], false, "{rsp}");
    let (_, c) = app
        .get("/subscribe/customers/race-cust", Some(&token))
        .await;
    assert_eq!(c["response"]["card_number"], "411111******1111", "{c}");
    let (_, p) = app.get("/payments/find/race-1", Some(&token)).await;
    assert_eq!(p["response"]["status"], "failed", "{p}");
    let mut states: Vec<(String, kcp_sandbox::BatchKeyState)> = app
        .sandbox
        .batch_keys()
        .into_iter()
        .map(|k| (k.masked_card_no, k.state))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        [
            (
                "411111******1111".to_string(),
                kcp_sandbox::BatchKeyState::Active
            ),
            (
                "555555******4444".to_string(),
                kcp_sandbox::BatchKeyState::Deleted
            ),
        ]
    );
    // The window's key is on record as retired and deleted at KCP, so had KCP not answered the
    // deletion, the resolver would have tried again.
    let rows = crate::billing::key_rows(&app, "race-cust").await;
    let retired: Vec<_> = rows.iter().filter(|r| r.status == "replaced").collect();
    assert_eq!(retired.len(), 1, "{rows:?}");
    assert_eq!(retired[0].card_number.as_deref(), Some("555555******4444"));
    assert!(retired[0].pg_deleted_at.is_some());
    assert_eq!(retired[0].batch_key_sealed, "");
}

/// PostgreSQL, two stores of a key for one customer_uid at once: a REST re-registration has
/// retired the customer's key and is held in its transaction (a trigger on its key's insert)
/// while a billing-key window, prepared with amount 0 (the merchant's word that it may replace
/// the key), finishes. The window reads the old key as still active; its retirement of it waits
/// for the re-registration, then finds it replaced. The window tries again on the key the
/// customer has now and, as its prepare allows, replaces it, as it would had the two come one
/// after the other. It was answered as a database failure ("빌링키를 저장하지 못해…"), its key
/// deleted at KCP and an ERROR logged for an operator, over timing alone.
#[tokio::test]
async fn a_billing_window_finishing_while_a_rest_re_registration_commits_replaces_the_new_key_as_prepared(
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let app = spawn_app().await;
    if !app.database_url.starts_with("postgres") {
        return; // SQLite's one writer runs the two stores one after the other
    }
    let token = app.token().await;
    let first = crate::billing::register(
        &app,
        &token,
        "race-both",
        crate::helpers::test_cards::SHINHAN_CREDIT,
    )
    .await;
    assert_eq!(first["code"], 0, "{first}");
    let (_, prepared) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "race-both-w", "amount": 0}),
        )
        .await;
    assert_eq!(prepared["code"], 0, "{prepared}");
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "race-both-w", "amount": 0, "customer_uid": "race-both"}),
    )
    .await;
    // The buyer is done in the window; its result is not posted back yet.
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    crate::helpers::slow_writes(
        &app,
        "slow_rest_key",
        "INSERT",
        "billing_keys",
        "NEW.customer_uid = 'race-both' AND NEW.card_number = '411111******1111'",
    )
    .await;

    let done = AtomicBool::new(false);
    let race = async {
        let registering = crate::billing::register(
            &app,
            &token,
            "race-both",
            crate::helpers::test_cards::SHINHAN_CREDIT,
        );
        let finishing = async {
            crate::helpers::until_a_write_is_held(&app).await;
            rsp_of(&post_form(&app, &ret_url, &result).await)
        };
        let raced = tokio::join!(registering, finishing);
        done.store(true, Ordering::SeqCst);
        raced
    };
    // Whether the window's store waited for the re-registration's lock: the race took place.
    let watching = async {
        let mut waited = false;
        while !done.load(Ordering::SeqCst) {
            waited |= crate::helpers::backends_waiting(&app, "wait_event_type = 'Lock'").await > 0;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        waited
    };
    let ((registered, rsp), waited) = tokio::join!(race, watching);
    crate::helpers::execute(
        &app,
        vec![
            "DROP TRIGGER slow_rest_key ON billing_keys".to_string(),
            "DROP FUNCTION slow_rest_key()".to_string(),
        ],
    )
    .await;

    assert!(
        waited,
        "the window's store never waited for the re-registration"
    );
    assert_eq!(registered["code"], 0, "{registered}");
    assert_eq!(rsp["success"], true, "{rsp}");
    let (_, p) = app.get("/payments/find/race-both-w", Some(&token)).await;
    assert_eq!(p["response"]["status"], "paid", "{p}");
    let (_, c) = app
        .get("/subscribe/customers/race-both", Some(&token))
        .await;
    assert_eq!(c["response"]["card_number"], "555555******4444", "{c}");
    let rows = crate::billing::key_rows(&app, "race-both").await;
    let states: Vec<(&str, Option<&str>, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.status.as_str(),
                r.card_number.as_deref(),
                r.pg_deleted_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("replaced", Some("411111******1111"), true),
            ("replaced", Some("411111******1111"), true),
            ("active", Some("555555******4444"), false),
        ],
        "the first key replaced by the re-registration's, and that one by the window's"
    );
    let mut at_kcp: Vec<(String, kcp_sandbox::BatchKeyState)> = app
        .sandbox
        .batch_keys()
        .into_iter()
        .map(|k| (k.masked_card_no, k.state))
        .collect();
    at_kcp.sort_by(|a, b| a.0.cmp(&b.0));
    use kcp_sandbox::BatchKeyState::{Active, Deleted};
    assert_eq!(
        at_kcp,
        [
            ("411111******1111".to_string(), Deleted),
            ("411111******1111".to_string(), Deleted),
            ("555555******4444".to_string(), Active),
        ]
    );
}

/// When the database fails to store the key KCP issued for a billing-key window (a statement
/// refused, or a `COMMIT` that fails after every statement went through), the key is deleted at
/// KCP instead of staying chargeable under a key nobody holds, and the window's payment fails.
#[tokio::test]
async fn a_billing_key_windows_key_the_database_could_not_store_is_deleted_at_kcp_and_the_payment_fails(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    crate::billing::refuse_key_inserts(
        &app,
        "NEW.customer_uid = 'unstored-web' AND NEW.status = 'active'",
    )
    .await;
    crate::billing::refuse_commits_of_keys(&app, "uncommitted-web").await;
    for (i, uid) in ["unstored-web", "uncommitted-web"].into_iter().enumerate() {
        let merchant_uid = format!("{uid}-window");
        let rsp = request_pay(
            &app,
            json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": merchant_uid, "amount": 0, "customer_uid": uid}),
            &MASTERCARD_OK,
        )
        .await;
        assert_eq!(rsp["success"], false, "{uid}: {rsp}");
        let (_, p) = app
            .get(&format!("/payments/find/{merchant_uid}"), Some(&token))
            .await;
        assert_eq!(p["response"]["status"], "failed", "{uid}: {p}");
        assert!(
            p["response"]["fail_reason"]
                .as_str()
                .unwrap()
                .contains("빌링키를 저장하지 못해"),
            "{uid}: {p}"
        );
        let (_, c) = app
            .get(&format!("/subscribe/customers/{uid}"), Some(&token))
            .await;
        assert_eq!(c["code"], 1, "{uid}: not registered: {c}");
        let keys = app.sandbox.batch_keys();
        assert_eq!(keys.len(), i + 1, "{keys:?}");
        assert_eq!(
            keys[i].state,
            kcp_sandbox::BatchKeyState::Deleted,
            "{uid}: KCP holds no chargeable key"
        );
        let rows = crate::billing::key_rows(&app, uid).await;
        assert_eq!(rows.len(), 1, "{uid}: recorded as a retired key: {rows:?}");
        assert_eq!(rows[0].status, "replaced");
        assert!(rows[0].pg_deleted_at.is_some(), "{uid}");
    }
}

/// A refusal posted back from the window is shown and stored with any card number in its text
/// masked, as KCP's refusals over REST are: it becomes the payment's fail_reason and the rsp's
/// error_msg, which a mobile redirect puts in the merchant's URL.
#[tokio::test]
async fn a_card_number_in_the_windows_refusal_text_is_masked_wherever_the_refusal_shows() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-refused-text", "amount": 1000}),
    )
    .await;
    let (ret_url, mut result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    for (name, value) in result.iter_mut() {
        match name.as_str() {
            "res_cd" => *value = "8888".into(),
            "res_msg" => *value = "거절 4111111111111111".into(),
            _ => {}
        }
    }
    let page = post_form(&app, &ret_url, &result).await;
    assert!(!page.contains("4111111111111111"), "{page}");
    let rsp = rsp_of(&page);
    assert_eq!(rsp["success"], false, "{rsp}");
    let (_, p) = app
        .get("/payments/find/web-refused-text", Some(&token))
        .await;
    let reason = p["response"]["fail_reason"].as_str().unwrap();
    assert!(reason.contains("411111******1111"), "{p}");
    assert!(!reason.contains("4111111111111111"), "{p}");
    assert!(app.sandbox.ledger().is_empty(), "nothing approved");
}

/// A window payment records the buyer's browser (the `User-Agent` of the SDK's request from it)
/// as its `user_agent`, as iamport does; REST payments have none.
#[tokio::test]
async fn a_window_payment_records_the_buyers_user_agent() {
    let app = spawn_app().await;
    let browser = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
    let res = app
        .http
        .post(app.url("/checkout/request"))
        .header("User-Agent", browser)
        .json(
            &json!({"imp_code": "imp00000000", "mobile": true, "page_url": "http://shop.test/cart",
                      "params": {"pay_method": "card", "merchant_uid": "web-ua", "amount": 1000}}),
        )
        .send()
        .await
        .unwrap();
    let (_, started) = TestApp::read(res).await;
    assert_eq!(started["code"], 0, "{started}");
    let token = app.token().await;
    let (_, p) = app.get("/payments/find/web-ua", Some(&token)).await;
    assert_eq!(p["response"]["user_agent"], browser, "{p}");
    let paid = app.paid(&token, "rest-ua", 1000).await;
    assert!(paid["user_agent"].is_null(), "{paid}");
}

/// The checkout session's token opens and cancels the buyer's window: only its digest is stored,
/// as for access tokens, and the window's return key is derived from it, so reading the database
/// gives neither.
#[tokio::test]
async fn a_checkout_session_token_is_stored_only_as_its_digest() {
    use sea_orm::EntityTrait;
    let app = spawn_app().await;
    let started = start_checkout(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-digest", "amount": 1000}),
    )
    .await;
    let token = started["response"]["session"].as_str().unwrap().to_string();
    let sessions = openport::store::entity::checkout_session::Entity::find()
        .all(&app.app.gateway.db.read)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_ne!(sessions[0].token, token);
    assert!(!sessions[0].params.contains(&token));
    // Nor the window's return key, which the hand-off page derives from the token.
    let return_key = openport::service::checkout::return_key_of(&token);
    assert!(!sessions[0].params.contains(&return_key));
    assert_eq!(
        sessions[0].token,
        openport::service::secrets::token_digest(&token)
    );
    // The token still opens the window, whose hand-off page carries the return key.
    let page = app
        .http
        .get(started["response"]["start_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, fields) = form(&page);
    assert!(
        fields
            .iter()
            .any(|(k, v)| k == openport::service::checkout::RETURN_KEY_FIELD && *v == return_key),
        "{page}"
    );
}

/// A payment window opened for a merchant_uid and left without paying does not hold the
/// merchant_uid against the merchant's server: abandoned attempts may share it (spec/iamport-v1.md
/// §8.9), so a REST charge with it goes through, and the left window can no longer be approved.
#[tokio::test]
async fn a_window_left_unpaid_does_not_block_a_rest_charge_with_its_merchant_uid() {
    let app = spawn_app().await;
    let token = app.token().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pay_method": "card", "merchant_uid": "left-window", "amount": 1000}),
    )
    .await;
    let paid = app.paid(&token, "left-window", 1000).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    // The buyer comes back to the old window and pays: nothing is approved.
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(app.sandbox.ledger().len(), 1, "only the REST charge");
    let (_, all) = app.get("/payments/findAll/left-window", Some(&token)).await;
    let statuses: Vec<&str> = all["response"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "{all}");
    assert!(
        statuses.contains(&"paid") && statuses.contains(&"failed"),
        "{all}"
    );
    app.assert_ledger_agrees().await;
}

/// spec §4.3: a prepared merchant_uid only accepts its prepared amount. The window's page knows
/// its merchant_uid, so a prepare can come after the window opened; it is checked again in the
/// last write before KCP's approval, as a REST charge's is, and nothing reaches KCP.
#[tokio::test]
async fn a_prepare_made_while_the_window_is_open_refuses_the_windows_other_amount_before_anything_is_approved(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-prep-late", "amount": 100}),
    )
    .await;
    let (_, prepared) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "web-prep-late", "amount": 50000}),
        )
        .await;
    assert_eq!(prepared["code"], 0, "{prepared}");
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    let refusal = "사전등록된 결제정보와 일치하지 않습니다. (사전등록 금액: 50000, 요청 금액: 100)";
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_code"], "F400", "{rsp}");
    assert_eq!(rsp["error_msg"], refusal, "{rsp}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["fail_reason"], refusal, "{p}");
    app.assert_ledger_agrees().await;
}

/// The same for a prepare changed (`PUT /payments/prepare`) while the window is open: the window
/// opened with the old prepared amount does not approve it.
#[tokio::test]
async fn a_prepare_changed_while_the_window_is_open_refuses_the_windows_old_amount_before_anything_is_approved(
) {
    let app = spawn_app().await;
    let token = app.token().await;
    let (_, prepared) = app
        .post(
            "/payments/prepare",
            Some(&token),
            json!({"merchant_uid": "web-prep-put", "amount": 1000}),
        )
        .await;
    assert_eq!(prepared["code"], 0, "{prepared}");
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-prep-put", "amount": 1000}),
    )
    .await;
    let (_, changed) = app
        .put(
            "/payments/prepare",
            &token,
            json!({"merchant_uid": "web-prep-put", "amount": 1200}),
        )
        .await;
    assert_eq!(changed["code"], 0, "{changed}");
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["success"], false, "{rsp}");
    let message = rsp["error_msg"].as_str().unwrap_or_default();
    assert!(message.contains("사전등록 금액: 1200"), "{rsp}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    assert_eq!(payment_of(&app, &rsp).await["status"], "failed");
    app.assert_ledger_agrees().await;
}

/// spec §7: confirm_url is asked once, just before the approval, and a refusal fails the payment.
/// A double submit of KCP's post back (a reload, a proxy retrying on another instance) must not
/// ask it twice and let a later 200 approve what the merchant refused: only the post that claims
/// the window asks, and a post that finds it claimed answers with the payment as it stands.
#[tokio::test]
async fn a_double_submitted_window_result_asks_confirm_url_once_and_a_refusal_is_never_overridden()
{
    let app = spawn_app().await;
    let gate = GatedConfirm::first_answering(axum::http::StatusCode::CONFLICT).await;
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-confirm-twice", "amount": 1000, "confirm_url": gate.url}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let first = {
        let (http, url, result) = (app.http.clone(), ret_url.clone(), result.clone());
        tokio::spawn(async move {
            let res = http.post(url).form(&result).send().await.unwrap();
            res.text().await.unwrap()
        })
    };
    gate.arrived.notified().await;
    // The same result posted again while the merchant is still being asked: it waits for the
    // claiming post's outcome (the claim's lease covers the merchant's answer), so the merchant
    // answers meanwhile.
    let second = {
        let (http, url, result) = (app.http.clone(), ret_url.clone(), result.clone());
        tokio::spawn(async move {
            let res = http.post(url).form(&result).send().await.unwrap();
            res.text().await.unwrap()
        })
    };
    // Time for it to find the window claimed; arriving later, it reads the outcome instead, and
    // what follows holds all the same.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    gate.release.notify_one();
    let first = rsp_of(&first.await.unwrap());
    let second = rsp_of(&second.await.unwrap());

    let calls = gate.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "confirm_url asked once: {calls:?}");
    assert_eq!(first["success"], false, "{first}");
    assert_eq!(
        first["error_msg"], "고객사 요청에 의해 결제를 중단합니다. (상세사유 : 재고 없음)",
        "{first}"
    );
    assert_eq!(second["success"], false, "{second}");
    assert_ne!(second["status"], "paid", "{second}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    let p = payment_of(&app, &first).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(
        p["fail_reason"], "고객사 요청에 의해 결제를 중단합니다. (상세사유 : 재고 없음)",
        "{p}"
    );
    app.assert_ledger_agrees().await;
}

/// A configuration failure at request_pay (credentials that cannot be unsealed after a master-key
/// rotation, a bad `kcp_api_base`) is the operator's to fix: logged at ERROR, shown to the buyer
/// only as a generic refusal (never openport's internal text, the merchant's id or a URL), and no
/// payment is left `ready` for it.
#[tokio::test]
async fn a_merchant_whose_kcp_credentials_cannot_be_opened_gets_a_generic_refusal_an_error_in_the_log_and_no_ready_payment(
) {
    use openport::store::entity::merchant;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    merchant::Entity::update_many()
        .col_expr(
            merchant::Column::KcpPrivateKeySealed,
            sea_orm::sea_query::Expr::value("v1:not-sealed-at-all"),
        )
        .filter(merchant::Column::ImpCode.eq("imp00000000"))
        .exec(&app.app.gateway.db.write)
        .await
        .unwrap();
    let logged_before = crate::helpers::captured_logs().len();
    let refused = start_checkout(
        &app,
        json!({"merchant_uid": "web-no-credentials", "amount": 1000}),
    )
    .await;
    assert_ne!(refused["code"], 0, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("결제를 시작하지 못했습니다"),
        "a generic refusal: {refused}"
    );
    for internal in ["internal error", "merchant", "KCP credentials"] {
        assert!(!message.contains(internal), "{internal} in {refused}");
    }
    let logs = crate::helpers::captured_logs();
    let logged = &logs[logged_before..];
    assert!(
        logged
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("KCP credentials")),
        "an ERROR names the failure for the operator"
    );
    let token = app.token().await;
    let (status, found) = app
        .get("/payments/find/web-no-credentials", Some(&token))
        .await;
    assert!(
        status == reqwest::StatusCode::NOT_FOUND || found["response"]["status"] == "failed",
        "no ready payment: {found}"
    );
    assert!(app.sandbox.ledger().is_empty());
}

/// spec/kcp.md §2.2: KCP's window takes `quotaopt` from 0 to 12. `display.card_quota` months above
/// 12 are refused before the window, naming the field, rather than sent to KCP (or silently shown
/// as fewer months).
#[tokio::test]
async fn display_card_quota_above_12_never_reaches_kcp_as_a_quotaopt_above_12() {
    let app = spawn_app().await;
    for (i, quota) in [json!([24]), json!([2, 3, 36]), json!([13])]
        .into_iter()
        .enumerate()
    {
        refused_with(
            &app,
            json!({"merchant_uid": format!("web-quota-{i}"), "amount": 100000, "display": {"card_quota": quota}}),
            "display.card_quota",
        )
        .await;
    }
    let (_, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-quota-ok", "amount": 100000, "display": {"card_quota": [2, 3, 12]}}),
    )
    .await;
    assert_eq!(field(&fields, "quotaopt"), Some("12"));
}

/// What real mobile KCP does with an amount the buyer's browser edited on the hand-off form: its
/// window charges that amount and posts no `ordr_chk` back (spec §2.3), so the gateway's own
/// comparison has nothing to compare; the approval sends the payment's amount as `ordr_mony`,
/// KCP refuses it (`8059`), and the payment fails with KCP's refusal, whose code the buyer is
/// sent back with, as with a refusal in KCP's window.
#[tokio::test]
async fn an_amount_edited_in_the_browser_is_refused_by_kcps_ordr_mony_check_when_the_result_carries_no_ordr_chk(
) {
    let app = spawn_app().await;
    let (pay_url, mut fields) = mobile_hand_off(
        &app,
        json!({"merchant_uid": "web-edit-8059", "amount": 50000}),
    )
    .await;
    fields
        .iter_mut()
        .find(|(k, _)| k == "good_mny")
        .expect("the hand-off posts good_mny")
        .1 = "500".into();
    let (ret_url, mut result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    result.retain(|(k, _)| k != "ordr_chk");
    assert_eq!(
        field(&result, "good_mny"),
        Some("500"),
        "the window took the edit"
    );
    let location = post_without_following(&ret_url, &result).await;
    assert!(location.contains("imp_success=false"), "{location}");
    assert_eq!(query_of(&location)["error_code"], "8059", "{location}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    let token = app.token().await;
    let (_, found) = app.get("/payments/find/web-edit-8059", Some(&token)).await;
    let p = &found["response"];
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["amount"], 50000, "{p}");
    let reason = p["fail_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("[8059]"), "{p}");
    app.assert_ledger_agrees().await;
}

/// A window's approval is a KCP attempt like any other: an instance whose clock is off the
/// database's opens none (service/clock_check.rs). The window ends failed with nothing sent to
/// KCP, and the buyer can pay again once the clock is back.
#[tokio::test]
async fn a_window_result_reaching_an_instance_whose_clock_is_off_is_failed_before_anything_is_approved(
) {
    use openport::service::clock_check::{judge, CLOCK_SKEWED};
    let app = spawn_app().await;
    let (start_url, pay_url, fields) = started_from(&app, pc_checkout("web-clock-off")).await;
    let gateway = &app.app.gateway;
    let now = chrono::Utc::now();
    gateway.record_clock_reading(judge(now, now, now.timestamp_millis() - 60_000, 5_000));
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_msg"], CLOCK_SKEWED, "{rsp}");
    // Failed, not being checked: F500 would have the page wait for an outcome that is already
    // known, and every later answer of the payment reads F400 from its fail_reason.
    assert_eq!(rsp["status"], "failed", "{rsp}");
    assert_ne!(rsp["error_code"], "F500", "{rsp}");
    assert_eq!(rsp["error_code"], "F400", "{rsp}");
    let closed = close_the_overlay(&app, &start_url).await;
    assert_eq!(
        closed["response"]["error_code"], rsp["error_code"],
        "{closed}"
    );
    assert_eq!(closed["response"]["error_msg"], CLOCK_SKEWED, "{closed}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    assert_eq!(payment_of(&app, &rsp).await["status"], "failed");

    let now = chrono::Utc::now();
    gateway.record_clock_reading(judge(now, now, now.timestamp_millis(), 5_000));
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-clock-off", "amount": 1000}),
    )
    .await;
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["success"], true, "{rsp}");
    app.assert_ledger_agrees().await;
}

/// A merchant on KCP's staging (`kcp_api_base` = `https://stg-spl.kcp.co.kr`, as docs/operations.md
/// advises) is on KCP's test environment: its PC checkout page loads KCP's PC script from the
/// host spec/kcp.md §1 lists for it (`testspay`), not from the REST host, which does not serve it.
#[tokio::test]
async fn a_merchant_on_kcps_staging_gets_a_pc_page_loading_kcps_test_pc_script() {
    let app = spawn_app().await;
    app.merchant_on_kcp(Some("https://stg-spl.kcp.co.kr")).await;
    let (_, merchants) = app
        .get("/admin/merchants", Some(crate::helpers::ADMIN_TOKEN))
        .await;
    let imp_code = merchants["response"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kcp_api_base"] == "https://stg-spl.kcp.co.kr")
        .and_then(|m| m["imp_code"].as_str())
        .unwrap_or_else(|| panic!("the staging merchant: {merchants}"))
        .to_string();
    let (_, started) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": imp_code, "mobile": false, "page_url": "http://shop.test/cart",
            "params": {"merchant_uid": "web-pc-staging", "amount": 1000, "name": "포인트"}}),
        )
        .await;
    assert_eq!(started["code"], 0, "{started}");
    let page = app
        .http
        .get(started["response"]["start_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        pc_script(&page).as_deref(),
        Some("https://testspay.kcp.co.kr/plugin/kcp_spay_hub.js"),
        "{page}"
    );
}

/// A PC checkout is KCP's PC flow (spec/kcp.md §1.1), never the mobile `PayUrl` in a frame
/// (§1.2: "no iframe/popup"): the hand-off page declares `m_Completepayment`, then loads KCP's PC
/// script and calls `KCP_Pay_Execute_Web` with a form of KCP's PC fields whose action is
/// `Ret_URL`. No trade is registered for it (seed 000: "거래등록 (Mobile 필수)").
#[tokio::test]
async fn a_pc_checkout_loads_kcps_pc_script_with_its_pc_form_and_registers_no_trade() {
    let app = spawn_app().await;
    let (_, started) = app
        .post("/checkout/request", None, json!({"imp_code": "imp00000000", "mobile": false, "page_url": "http://shop.test/cart",
            "params": {"merchant_uid": "web-pc-page", "amount": 1000, "name": "포인트", "buyer_name": "홍길동"}}))
        .await;
    assert_eq!(started["code"], 0, "{started}");
    let page = app
        .http
        .get(started["response"]["start_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let script = pc_script(&page).expect("the page loads KCP's PC script");
    assert!(script.ends_with("/plugin/kcp_spay_hub.js"), "{script}");
    let declared = page
        .find("function m_Completepayment(")
        .expect("m_Completepayment");
    assert!(
        declared < page.find("<script src=").unwrap(),
        "declared before the script"
    );
    assert!(page.contains("KCP_Pay_Execute_Web(form)"), "{page}");
    let (action, fields) = form(&page);
    assert!(action.ends_with("/checkout/kcp/return"), "{action}");
    assert_eq!(field(&fields, "site_cd"), Some("T0000"));
    assert_eq!(field(&fields, "good_mny"), Some("1000"));
    assert_eq!(field(&fields, "pay_method"), Some("100000000000"));
    assert_eq!(field(&fields, "currency"), Some("WON"));
    assert_eq!(field(&fields, "buyr_name"), Some("홍길동"));
    assert!(field(&fields, "ordr_idxx").is_some_and(|o| !o.is_empty()));
    for answer in [
        "res_cd",
        "enc_data",
        "enc_info",
        "tran_cd",
        "use_pay_method",
        "ordr_chk",
    ] {
        assert_eq!(field(&fields, answer), Some(""), "{answer} waits for KCP");
    }
    assert_eq!(
        field(&fields, "approval_key"),
        None,
        "no trade registration"
    );
}

/// KCP's PC flow always answers with `ordr_chk` (`ordr_idxx|good_mny`, spec/kcp.md §1.1), and
/// the merchant must compare it before approving: a PC result without one, or with another
/// order's or amount's, fails before anything is sent to KCP.
#[tokio::test]
async fn a_pc_window_result_without_its_ordr_chk_or_with_another_is_refused_before_kcp() {
    let app = spawn_app().await;
    for (merchant_uid, chk) in [("web-pc-nochk", None), ("web-pc-badchk", Some("|500"))] {
        let (pay_url, fields) =
            hand_off(&app, json!({"merchant_uid": merchant_uid, "amount": 50000})).await;
        let (ret_url, mut result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
        let order_no = field(&result, "ordr_idxx").unwrap().to_string();
        assert_eq!(
            field(&result, "ordr_chk"),
            Some(format!("{order_no}|50000").as_str()),
            "the PC window answers with its ordr_chk"
        );
        result.retain(|(k, _)| k != "ordr_chk");
        if let Some(amount) = chk {
            result.push(("ordr_chk".into(), format!("{order_no}{amount}")));
        }
        let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
        assert_eq!(rsp["success"], false, "{rsp}");
        assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
        let p = payment_of(&app, &rsp).await;
        assert_eq!(p["status"], "failed", "{p}");
    }
    app.assert_ledger_agrees().await;
}

/// KCP reads a window's `enc_data` only with the `enc_info` it was answered with (spec/kcp.md
/// §2.3; the sandbox answers `9533` otherwise): a result posted back with another window's
/// `enc_info`, or a cut one, is refused at approval. The payment ends failed with KCP's code in
/// the merchant's answer and in its fail_reason, nothing is approved at KCP, and the other
/// window, posted with its own pair, is still paid.
#[tokio::test]
async fn a_window_result_whose_enc_info_is_not_its_own_is_refused_at_kcp_and_the_payment_fails() {
    let app = spawn_app().await;
    let (other_pay_url, other_fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-encinfo-other", "amount": 1000}),
    )
    .await;
    let (other_ret_url, other_result) =
        window_result(&app, &other_pay_url, &other_fields, &CARD_OK).await;
    let other_enc_info = field(&other_result, "enc_info").unwrap().to_string();
    let token = app.token().await;
    for (merchant_uid, crossed) in [("web-encinfo-crossed", true), ("web-encinfo-cut", false)] {
        let (pay_url, fields) =
            hand_off(&app, json!({"merchant_uid": merchant_uid, "amount": 1000})).await;
        let (ret_url, mut result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
        let enc_info = &mut result
            .iter_mut()
            .find(|(k, _)| k == "enc_info")
            .expect("the window answers enc_info")
            .1;
        assert!(!enc_info.is_empty() && *enc_info != other_enc_info);
        *enc_info = if crossed {
            other_enc_info.clone()
        } else {
            enc_info[..enc_info.len() - 1].to_string()
        };
        let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
        assert_eq!(rsp["success"], false, "{merchant_uid}: {rsp}");
        assert_eq!(rsp["error_code"], "9533", "{merchant_uid}: {rsp}");
        assert!(
            rsp["error_msg"]
                .as_str()
                .is_some_and(|m| m.contains("enc_info")),
            "{merchant_uid}: {rsp}"
        );
        let (_, found) = app
            .get(&format!("/payments/find/{merchant_uid}"), Some(&token))
            .await;
        let p = &found["response"];
        assert_eq!(p["status"], "failed", "{p}");
        assert!(
            p["fail_reason"]
                .as_str()
                .is_some_and(|r| r.contains("[9533]")),
            "{p}"
        );
        assert!(
            app.sandbox.ledger().is_empty(),
            "{merchant_uid}: nothing was approved"
        );
    }
    let paid = rsp_of(&post_form(&app, &other_ret_url, &other_result).await);
    assert_eq!(paid["success"], true, "{paid}");
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(app.sandbox.ledger().len(), 1);
    app.assert_ledger_agrees().await;
}

/// The PC flow end to end: KCP's answer, posted by the page with its `ordr_chk`, is approved at
/// the order's amount and paid; the buyer's close in KCP's layer (`res_cd` 3001) is a cancel.
#[tokio::test]
async fn a_pc_window_result_with_its_ordr_chk_is_approved_and_a_close_is_a_buyer_cancel() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"merchant_uid": "web-pc-paid", "amount": 1000}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(rsp["status"], "paid", "{rsp}");
    assert_eq!(rsp["paid_amount"], 1000, "{rsp}");
    assert_eq!(app.sandbox.ledger().len(), 1);
    let closed = request_pay(
        &app,
        json!({"merchant_uid": "web-pc-closed", "amount": 1000}),
        &[("action", "cancel")],
    )
    .await;
    assert_eq!(closed["success"], false, "{closed}");
    let p = payment_of(&app, &closed).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["fail_reason"], "사용자가 결제를 취소하였습니다.", "{p}");
    assert_eq!(app.sandbox.ledger().len(), 1, "the close approved nothing");
    app.assert_ledger_agrees().await;
}

/// iamport's manual types `display.card_quota` as an array of integers (`[]`: lump sum only).
/// Months a page builds from `<option value>` text are taken as the numbers they spell; anything
/// else (a negative or fractional month, a word, a bare number instead of an array) is refused
/// before the window, naming the field, never turned into `quotaopt=0` (lump sum only) or
/// KCP's default of up to 12 months.
#[tokio::test]
async fn display_card_quota_with_text_or_negative_months_is_refused_not_sent_as_lump_sum_only() {
    let app = spawn_app().await;
    for (i, quota) in [
        json!([-1]),
        json!([6.5]),
        json!(["six"]),
        json!([2, "-3"]),
        json!(6),
        json!("2,3,6"),
        json!([[6]]),
    ]
    .into_iter()
    .enumerate()
    {
        refused_with(
            &app,
            json!({"merchant_uid": format!("web-quota-text-{i}"), "amount": 120000, "display": {"card_quota": quota}}),
            "display.card_quota는 0~12 정수의 배열이어야 합니다.",
        )
        .await;
    }
    let (_, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-quota-strings", "amount": 120000, "display": {"card_quota": ["2", "3", "6"]}}),
    )
    .await;
    assert_eq!(
        field(&fields, "quotaopt"),
        Some("6"),
        "digit strings are months"
    );
}

/// A shop builds one params object for its method picker, card options included. They mean
/// nothing to a bank transfer, virtual account or phone window (iamport ignores them there), so
/// such a window opens whatever they hold (`appCard`, `card.direct`, a bare-number
/// `display.card_quota`, a malformed `card.detail`), as a card payment ignores `vbank_due`, and
/// none of them reaches KCP's form.
#[tokio::test]
async fn a_bank_transfer_whose_params_carry_card_only_options_opens_its_window() {
    let app = spawn_app().await;
    // The card window still refuses a malformed one.
    refused_with(
        &app,
        json!({"merchant_uid": "web-card-opts-card", "amount": 120000, "pay_method": "card",
               "display": {"card_quota": 3}}),
        "display.card_quota는 0~12 정수의 배열이어야 합니다.",
    )
    .await;
    for method in ["trans", "vbank", "phone"] {
        let (_, fields) = hand_off(
            &app,
            json!({"merchant_uid": format!("web-card-opts-{method}"), "amount": 120000,
                   "pay_method": method, "appCard": true, "display": {"card_quota": 3},
                   "card": {"direct": {"code": "367", "quota": 0}, "detail": "BC"}}),
        )
        .await;
        assert_eq!(field(&fields, "quotaopt"), None, "{method}: {fields:?}");
        assert_eq!(field(&fields, "used_card"), None, "{method}: {fields:?}");
    }
}

/// Seed 004 §3 keys KCP's window fields (spec/kcp.md §2.2) cannot carry are refused before the
/// window, naming the key, with nothing written: `card.direct` (a card company's module opened
/// directly, fixed instalments), `appCard: true` (app cards only), and the `card.detail` lists `used_card` cannot say (a card taken out of all the others,
/// nothing left, a code KCP's window has no issuer code for, entries that are not
/// `{card_code, enabled}`). None of them opens a window with every card and plan instead.
#[tokio::test]
async fn card_direct_card_detail_and_app_card_are_refused_before_the_window_not_silently_dropped() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"card": {"direct": {"code": "367", "quota": 3}}}),
            "card.direct",
        ),
        (json!({"appCard": true}), "appCard"),
        (json!({"appCard": "Y"}), "appCard"),
        (
            json!({"card": {"detail": [{"card_code": "366", "enabled": false}]}}),
            "card.detail",
        ),
        (
            json!({"card": {"detail": [{"card_code": "*", "enabled": false}]}}),
            "card.detail",
        ),
        (
            json!({"card": {"detail": [{"card_code": "*", "enabled": false}, {"card_code": "090", "enabled": true}]}}),
            "card_code '090'",
        ),
        (
            json!({"card": {"detail": [{"card_code": "366", "enabled": "Y"}]}}),
            "card.detail[0]",
        ),
        (json!({"card": {"detail": "366"}}), "card.detail"),
        (json!({"card": "366"}), "card"),
    ];
    for (i, (extra, wanted)) in cases.into_iter().enumerate() {
        let mut params = json!({"merchant_uid": format!("web-card-opt-{i}"), "amount": 60000});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        refused_with(&app, params, wanted).await;
    }
    assert!(app.sandbox.ledger().is_empty());
}

/// `card.detail` "특정 카드사 노출" (seed 004 §3: every card off, then Shinhan `366` on) opens
/// KCP's window with `used_card=CCLG` (spec/kcp.md §2.2; on PC with `used_card_YN=Y`, as KCP's PC
/// form needs), and a window opened so takes no other issuer's card; `company` is the window's
/// `shop_name`, and `language: 'ko'` is KCP's window as it is.
#[tokio::test]
async fn a_card_detail_for_one_card_company_opens_a_window_that_takes_only_its_cards() {
    let app = spawn_app().await;
    let shinhan_only = json!({"detail": [{"card_code": "*", "enabled": false}, {"card_code": "366", "enabled": true}]});
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-detail-other", "amount": 60000, "card": shinhan_only,
               "company": "오픈상점", "language": "ko"}),
    )
    .await;
    assert_eq!(field(&fields, "used_card"), Some("CCLG"));
    assert_eq!(field(&fields, "used_card_YN"), Some("Y"));
    assert_eq!(field(&fields, "shop_name"), Some("오픈상점"));
    let samsung = [
        ("card_no", kcp_sandbox::test_cards::SAMSUNG_CHECK),
        ("card_expiry", "3112"),
        ("action", "pay"),
    ];
    let refused = through_window(&app, &pay_url, &fields, &samsung).await;
    assert_eq!(refused["success"], false, "{refused}");
    assert!(
        app.sandbox.ledger().is_empty(),
        "no other issuer's card is charged"
    );
    let paid = request_pay(
        &app,
        json!({"merchant_uid": "web-detail-shinhan", "amount": 60000, "card": shinhan_only}),
        &CARD_OK,
    )
    .await;
    assert_eq!(paid["success"], true, "{paid}");
    assert_eq!(paid["card_name"], "신한카드", "{paid}");
    let (_, mobile) = mobile_hand_off(
        &app,
        json!({"merchant_uid": "web-detail-mobile", "amount": 60000,
               "card": {"detail": [{"card_code": "*", "enabled": false}, {"card_code": "374", "enabled": true}, {"card_code": "366", "enabled": true}]}}),
    )
    .await;
    assert_eq!(field(&mobile, "used_card"), Some("CCHN:CCKE:CCLG"));
    assert_eq!(
        field(&mobile, "used_card_YN"),
        None,
        "spec §2.2 has used_card alone"
    );
    app.assert_ledger_agrees().await;
}

/// iamport's easy pays on KCP (samsung, kakaopay, naverpay, payco, PAYCO 허브형 included) would
/// open KCP's plain card window here (the fields that open it on an easy pay are not in
/// spec/kcp.md), where the buyer pays with any card: recorded as `kakaopay` with
/// `emb_pg_provider: "kakaopay"`, the payment would claim an easy pay no approval confirmed. They
/// are refused before the window, naming the pay_method and the way that works; a card window
/// claims no easy pay.
#[tokio::test]
async fn a_kakaopay_request_paid_with_a_plain_card_is_not_recorded_as_kakaopay() {
    let app = spawn_app().await;
    for easy_pay in ["kakaopay", "naverpay", "samsung", "payco"] {
        refused_with(
            &app,
            json!({"merchant_uid": format!("web-easy-{easy_pay}"), "amount": 1000, "pay_method": easy_pay}),
            &format!("pay_method '{easy_pay}'는 지원하지 않습니다"),
        )
        .await;
    }
    let paid = request_pay(
        &app,
        json!({"merchant_uid": "web-easy-card", "amount": 1000, "pay_method": "card"}),
        &CARD_OK,
    )
    .await;
    assert_eq!(paid["success"], true, "{paid}");
    assert_eq!(paid["pay_method"], "card", "{paid}");
    assert!(paid["emb_pg_provider"].is_null(), "{paid}");
    let p = payment_of(&app, &paid).await;
    assert!(p["emb_pg_provider"].is_null(), "{p}");
}

/// A billing-key window records 0 whatever amount it shows, so its merchant_uid may be prepared
/// with amount 0, as the refusal of a window that would replace a key says: a page that shows
/// 9,900 won replaces the customer's key once the merchant's server prepared 0, at the start and
/// at `Ret_URL` alike. Any other amount, the shown one too, is refused before the window with what
/// to prepare instead, and one changed to it while the buyer is in the window fails the window
/// before KCP is asked for a key.
#[tokio::test]
async fn a_billing_window_showing_an_amount_replaces_a_key_after_a_prepare_of_zero() {
    let app = spawn_app().await;
    let token = app.token().await;
    let window = |merchant_uid: &str| {
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": merchant_uid,
               "amount": 9900, "customer_uid": "shown-cust"})
    };
    let first = request_pay(&app, window("shown-1"), &MASTERCARD_OK).await;
    assert_eq!(first["success"], true, "a first key needs no word: {first}");
    let refused = start_checkout(&app, window("shown-2")).await;
    assert_eq!(refused["code"], 1, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("amount 0"),
        "{refused}"
    );
    let prepare = |merchant_uid: &'static str, amount: i64| {
        let (app, token) = (&app, &token);
        async move {
            let (_, prepared) = app
                .post(
                    "/payments/prepare",
                    Some(token),
                    json!({"merchant_uid": merchant_uid, "amount": amount}),
                )
                .await;
            assert_eq!(prepared["code"], 0, "{prepared}");
        }
    };

    // As told: prepared with 0, the window showing 9,900 replaces the key. The customer is still
    // registered since the first key, as after a REST re-registration: only `updated` moves.
    let (_, registered) = app
        .get("/subscribe/customers/shown-cust", Some(&token))
        .await;
    app.advance(60);
    prepare("shown-2", 0).await;
    let second = request_pay(&app, window("shown-2"), &CARD_OK).await;
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(second["paid_amount"], 0, "{second}");
    let (_, c) = app
        .get("/subscribe/customers/shown-cust", Some(&token))
        .await;
    assert_eq!(c["response"]["card_number"], "411111******1111", "{c}");
    assert_eq!(
        c["response"]["inserted"], registered["response"]["inserted"],
        "{c}"
    );
    assert!(
        c["response"]["updated"].as_i64().unwrap()
            >= registered["response"]["updated"].as_i64().unwrap() + 60,
        "{c}"
    );
    assert!(app.sandbox.ledger().is_empty(), "no key charged anything");

    // Prepared with the amount it shows: refused before the window, saying to prepare 0.
    prepare("shown-3", 9900).await;
    let refused = start_checkout(&app, window("shown-3")).await;
    assert_eq!(refused["code"], 1, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "사전등록된 결제정보와 일치하지 않습니다. (사전등록 금액: 9900, 요청 금액: 0)"
        ),
        "{refused}"
    );
    assert!(message.contains("amount 0으로 사전등록"), "{refused}");

    // Prepared with 0, changed to the shown amount while the buyer is in the window: the window
    // fails at Ret_URL with the same words, and KCP issues no key.
    prepare("shown-4", 0).await;
    let (pay_url, fields) = hand_off(&app, window("shown-4")).await;
    let (_, changed) = app
        .put(
            "/payments/prepare",
            &token,
            json!({"merchant_uid": "shown-4", "amount": 9900}),
        )
        .await;
    assert_eq!(changed["code"], 0, "{changed}");
    let keys_before = app.sandbox.batch_keys().len();
    let rsp = through_window(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_code"], "F400", "{rsp}");
    assert!(
        rsp["error_msg"]
            .as_str()
            .unwrap_or_default()
            .contains("amount 0으로 사전등록"),
        "{rsp}"
    );
    assert_eq!(app.sandbox.batch_keys().len(), keys_before, "no key issued");
    let (_, c) = app
        .get("/subscribe/customers/shown-cust", Some(&token))
        .await;
    assert_eq!(c["response"]["card_number"], "411111******1111", "{c}");
}

/// A billing-key window records 0 whatever it shows (KCP charges nothing when it issues a key),
/// so a merchant_uid prepared with an order's price never gets one (spec §4.3, §7: a payment under
/// a prepared merchant_uid is at the prepared amount). A buyer who adds `pg: 'kcp_billing'` and a
/// `customer_uid` to the page's request_pay, the amount unchanged, is refused before the window,
/// and the order is still paid at its price in a payment window; a prepare made while such a
/// window is open fails it at `Ret_URL` before KCP is asked for a key.
#[tokio::test]
async fn a_prepared_card_order_cannot_be_paid_at_zero_through_a_billing_window() {
    let app = spawn_app().await;
    let token = app.token().await;
    let prepare = |merchant_uid: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let (_, prepared) = app
                .post(
                    "/payments/prepare",
                    Some(token),
                    json!({"merchant_uid": merchant_uid, "amount": 50000}),
                )
                .await;
            assert_eq!(prepared["code"], 0, "{prepared}");
        }
    };
    let billing_window = |merchant_uid: &str| {
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": merchant_uid,
               "amount": 50000, "customer_uid": "x"})
    };
    let mismatch = "사전등록된 결제정보와 일치하지 않습니다. (사전등록 금액: 50000, 요청 금액: 0)";

    prepare("order-555").await;
    let refused = start_checkout(&app, billing_window("order-555")).await;
    assert_eq!(refused["code"], 1, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(mismatch), "{refused}");
    assert!(message.contains("amount 0으로 사전등록"), "{refused}");
    let (status, _) = app.get("/payments/find/order-555", Some(&token)).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "nothing opened");
    let paid = request_pay(
        &app,
        json!({"pg": "kcp", "pay_method": "card", "merchant_uid": "order-555", "amount": 50000}),
        &CARD_OK,
    )
    .await;
    assert_eq!(paid["success"], true, "{paid}");
    assert_eq!(paid["paid_amount"], 50000, "{paid}");

    // Prepared only once the billing window is open: its result is refused before KCP.
    let (pay_url, fields) = hand_off(&app, billing_window("order-556")).await;
    prepare("order-556").await;
    let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_code"], "F400", "{rsp}");
    assert!(
        rsp["error_msg"]
            .as_str()
            .unwrap_or_default()
            .starts_with(mismatch),
        "{rsp}"
    );
    let (_, found) = app.get("/payments/find/order-556", Some(&token)).await;
    assert_eq!(found["response"]["status"], "failed", "{found}");
    assert!(app.sandbox.batch_keys().is_empty(), "KCP issued no key");
    let (_, c) = app.get("/subscribe/customers/x", Some(&token)).await;
    assert_eq!(c["code"], 1, "{c}");
}

/// A mobile request_pay (with an `m_redirect_url`) started and its hand-off page loaded, as the
/// buyer's browser does: the `start_url`, KCP's `PayUrl`, the form posted to it, and the cookie
/// the hand-off page set (`name=value`), which marks this browser as the one that opened the
/// window.
async fn mobile_start(
    app: &TestApp,
    mut params: Value,
) -> (String, String, Vec<(String, String)>, String) {
    params["m_redirect_url"] = json!("https://shop.test/done");
    let (_, started) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://shop.test/cart", "params": params}),
        )
        .await;
    assert_eq!(started["code"], 0, "{started}");
    let start_url = started["response"]["start_url"]
        .as_str()
        .unwrap()
        .to_string();
    let res = app.http.get(&start_url).send().await.unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .unwrap_or_default();
    let page = res.text().await.unwrap();
    let (pay_url, fields) = form(&page);
    assert!(pay_url.ends_with(paths::PAY_WINDOW), "{pay_url}");
    (start_url, pay_url, fields, cookie)
}

/// What the hand-off page at `start_url` answers a browser sending `cookie` (empty: none), not
/// following a redirect: its status, its `Location` (if any), its `Cache-Control` and its body.
async fn hand_off_answer(
    start_url: &str,
    cookie: &str,
) -> (reqwest::StatusCode, String, String, String) {
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut get = no_follow.get(start_url);
    if !cookie.is_empty() {
        get = get.header("cookie", cookie);
    }
    let res = get.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (location, cache) = (header("location"), header("cache-control"));
    (res.status(), location, cache, res.text().await.unwrap())
}

/// The query of a redirect's `Location`, as a map.
fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A mobile window whose result the database cannot take (here the write that claims the window
/// before KCP's approval fails): the buyer is still sent back to `m_redirect_url`, with the
/// imp_uid and the "being checked" error (`F500`) used wherever the outcome is not known, instead
/// of being left on openport's error page with no way back to the shop.
#[tokio::test]
async fn a_mobile_result_the_database_cannot_record_still_redirects_the_buyer_with_checking() {
    let app = spawn_app().await;
    let (_, pay_url, fields, _) = mobile_start(
        &app,
        json!({"merchant_uid": "m-unrecorded", "amount": 1000}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    crate::helpers::refuse_writes(
        &app,
        "refuse_claim",
        "UPDATE",
        "payments",
        "NEW.status = 'pending'",
    )
    .await;
    let location = post_without_following(&ret_url, &result).await;
    assert!(
        location.starts_with("https://shop.test/done?"),
        "{location}"
    );
    let q = query_of(&location);
    let imp_uid = field(&fields, "param_opt_1").unwrap();
    assert_eq!(q["imp_uid"], imp_uid, "{location}");
    assert_eq!(q["merchant_uid"], "m-unrecorded", "{location}");
    assert_eq!(q["imp_success"], "false", "{location}");
    assert_eq!(q["error_code"], "F500", "{location}");
    assert!(q["error_msg"].contains(imp_uid), "{location}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
}

/// KCP approved and the payment is recorded paid, but closing the checkout session (a cosmetic
/// write) fails: the answer is still the paid payment, on PC (the overlay's `rsp`) and on mobile
/// (the redirect to `m_redirect_url`), not an error page over a paid payment. The session left
/// open does not reopen KCP's window: its hand-off page sends a mobile buyer on with the result.
#[tokio::test]
async fn a_paid_window_whose_session_cannot_be_closed_still_answers_paid_and_never_reopens() {
    let app = spawn_app().await;
    crate::helpers::refuse_writes(
        &app,
        "refuse_close",
        "UPDATE",
        "checkout_sessions",
        "NEW.state = 'completed'",
    )
    .await;
    let rsp = request_pay(
        &app,
        json!({"merchant_uid": "pc-unclosed", "amount": 1000}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(rsp["status"], "paid", "{rsp}");

    let (start_url, pay_url, fields, cookie) =
        mobile_start(&app, json!({"merchant_uid": "m-unclosed", "amount": 1000})).await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let location = post_without_following(&ret_url, &result).await;
    let q = query_of(&location);
    assert_eq!(q["imp_success"], "true", "{location}");
    assert_eq!(q["merchant_uid"], "m-unclosed", "{location}");
    let paid = payment_of(&app, &json!({"imp_uid": q["imp_uid"]})).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(app.sandbox.ledger().len(), 2);

    let (status, again, _, page) = hand_off_answer(&start_url, &cookie).await;
    assert!(status.is_redirection(), "{status}: {page}");
    assert_eq!(again, location, "the same answer as Ret_URL's");
}

/// Back from the shop's result page (or a reload) brings a mobile buyer to the hand-off page of a
/// window that ended: it sends them on with the payment as it stands, as `Ret_URL` did, instead
/// of a dead end (the browser that opened the window: it carries the hand-off page's cookie).
/// The page is never cached: it carries the window's return key.
#[tokio::test]
async fn the_hand_off_page_of_an_ended_mobile_window_sends_the_buyer_on_with_its_result() {
    let app = spawn_app().await;
    let (start_url, pay_url, fields, cookie) =
        mobile_start(&app, json!({"merchant_uid": "m-ended", "amount": 1000})).await;
    let (status, _, open_cache, page) = hand_off_answer(&start_url, &cookie).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{page}");
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let location = post_without_following(&ret_url, &result).await;
    assert_eq!(query_of(&location)["imp_success"], "true", "{location}");

    let (status, again, ended_cache, page) = hand_off_answer(&start_url, &cookie).await;
    assert!(status.is_redirection(), "{status}: {page}");
    assert_eq!(again, location);

    // A window the buyer cancelled: sent on with the cancel, as Ret_URL sent them.
    let (start_url, pay_url, fields, cookie) = mobile_start(
        &app,
        json!({"merchant_uid": "m-ended-cancel", "amount": 1000}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &[("action", "cancel")]).await;
    let location = post_without_following(&ret_url, &result).await;
    let q = query_of(&location);
    assert_eq!(q["imp_success"], "false", "{location}");
    let (status, again, _, page) = hand_off_answer(&start_url, &cookie).await;
    assert!(status.is_redirection(), "{status}: {page}");
    let again = query_of(&again);
    assert_eq!(again["imp_success"], "false");
    assert_eq!(again["imp_uid"], q["imp_uid"]);
    assert_eq!(again["error_msg"], q["error_msg"]);
    assert_eq!(
        app.sandbox.ledger().len(),
        1,
        "the hand-off reopened nothing"
    );
    assert_eq!(open_cache, "no-store");
    assert_eq!(ended_cache, "no-store");
}

/// Anyone can start a mobile checkout with a merchant's public imp_code, naming any
/// `m_redirect_url`, and end it through its session's cancel call (both CORS `*`). The hand-off
/// URL of that ended window, on openport's own host, must not then send whichever browser opens
/// it to the URL the request named: it would be an open redirect for phishing. Only the browser
/// that opened the window (its hand-off page's cookie) is sent on.
#[tokio::test]
async fn the_hand_off_page_of_a_mobile_window_cancelled_through_its_session_does_not_redirect_another_browser_to_the_m_redirect_url_the_request_named(
) {
    let app = spawn_app().await;
    let (_, started) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "mobile": true, "page_url": "https://evil.example/",
                   "params": {"merchant_uid": "m-phish", "amount": 1000,
                              "m_redirect_url": "https://evil.example/login"}}),
        )
        .await;
    assert_eq!(started["code"], 0, "{started}");
    let start_url = started["response"]["start_url"].as_str().unwrap();
    let cancelled = close_the_overlay(&app, start_url).await;
    assert_eq!(cancelled["code"], 0, "{cancelled}");

    let (status, location, cache, page) = hand_off_answer(start_url, "").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{location}");
    assert!(location.is_empty(), "{location}");
    assert!(page.contains("이미 종료된 결제입니다."), "{page}");
    assert!(!page.contains("evil.example"), "no link either: {page}");
    assert_eq!(cache, "no-store");

    // Nor a browser carrying another window's cookie.
    let (_, _, _, other) =
        mobile_start(&app, json!({"merchant_uid": "m-other", "amount": 1000})).await;
    assert!(other.starts_with("openport_window_"), "{other}");
    let (status, location, _, _) = hand_off_answer(start_url, &other).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{location}");
}

/// A buyer who opened a mobile window before the upgrade that named the window cookie after a
/// digest (review rG F6) still carries `openport_window_{token}`: coming back to the ended
/// window's hand-off page, they are sent on to `m_redirect_url`, not left on "이미 종료된
/// 결제입니다." with no way back to the shop.
#[tokio::test]
async fn the_opener_of_a_window_from_before_the_cookie_was_renamed_is_still_sent_on() {
    let app = spawn_app().await;
    let (start_url, _, _, cookie) = mobile_start(
        &app,
        json!({"merchant_uid": "m-old-cookie", "amount": 1000}),
    )
    .await;
    let token = start_url.rsplit('/').next().unwrap().to_string();
    assert!(!cookie.contains(&token), "{cookie}");
    let cancelled = close_the_overlay(&app, &start_url).await;
    assert_eq!(cancelled["code"], 0, "{cancelled}");

    let old_name = format!("openport_window_{token}=1");
    let (status, location, _, page) = hand_off_answer(&start_url, &old_name).await;
    assert!(status.is_redirection(), "{status}: {page}");
    assert!(
        location.starts_with("https://shop.test/done?"),
        "{location}"
    );
    assert_eq!(query_of(&location)["merchant_uid"], "m-old-cookie");
}

/// A card window whose approval KCP answers with another order's trade, one a REST payment still
/// pending holds (its own answer lost, no `pg_tid` yet): not this window's answer, so that trade
/// is never net-cancelled on the window's behalf (its buyer would be refunded while that payment
/// is recorded paid); it is listed for the operator, and the window is settled by its own order
/// number, as the REST charges are (`Gateway::misdirected_answer`).
#[tokio::test]
async fn a_window_answer_naming_a_pending_payments_trade_never_cancels_it() {
    let app = spawn_app().await;
    let token = app.token().await;
    app.sandbox
        .inject(FaultRule::new(paths::HUB_PAYMENT, Fault::LoseResponse));
    app.sandbox
        .inject(FaultRule::new(paths::INQUIRY, Fault::Drop));
    let (_, first) = app
        .pay(
            &token,
            "misdirected-rest",
            1000,
            crate::helpers::test_cards::SHINHAN_CREDIT,
        )
        .await;
    assert_eq!(first["code"], 1, "{first}");
    let first_tno = app.sandbox.ledger()[0].tno.clone();
    let first_order = app.sandbox.ledger()[0].order_no.clone();
    app.sandbox.inject(FaultRule::new(
        paths::ENC_PAYMENT,
        Fault::AnswerFields {
            fields: [
                ("tno".to_string(), first_tno.clone()),
                ("order_no".to_string(), first_order),
            ]
            .into(),
        },
    ));

    let rsp = request_pay(
        &app,
        json!({"pay_method": "card", "merchant_uid": "misdirected-window", "amount": 1000}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], false, "not this window's answer: {rsp}");
    let ledger = app.sandbox.ledger();
    assert_eq!(ledger.len(), 2, "KCP approved both: {ledger:?}");
    assert!(
        ledger.iter().all(|e| e.state == TransactionState::Approved),
        "nothing cancelled on the misdirected answer: {ledger:?}"
    );
    let conflicts = app.conflicts().await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(
        conflicts[0].kind,
        openport::store::payments::MISDIRECTED_ANSWER
    );
    assert_eq!(conflicts[0].tno.as_deref(), Some(first_tno.as_str()));

    // Each settled by its own order number: KCP's books and openport's agree.
    app.advance(SETTLE_SECS + 10);
    app.resolve_all().await;
    app.assert_ledger_agrees().await;
}

/// The window's payment can no longer be read (here a column the read names is gone): a mobile
/// buyer is still sent back to `m_redirect_url`, from `Ret_URL` and from the hand-off page of a
/// window that ended, and the redirect names the order, `merchant_uid` and `imp_uid`, as iamport's
/// always does: both are the window's own, known without the payment, and a merchant page given
/// an empty merchant_uid cannot find the order it is to look up.
#[tokio::test]
async fn a_mobile_buyer_whose_payment_cannot_be_read_is_sent_back_naming_the_order() {
    let app = spawn_app().await;
    let (_, pay_url, fields, _) =
        mobile_start(&app, json!({"merchant_uid": "m-unread", "amount": 1000})).await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let (ended_url, ended_pay_url, ended_fields, cookie) = mobile_start(
        &app,
        json!({"merchant_uid": "m-unread-ended", "amount": 1000}),
    )
    .await;
    let (cancel_url, cancel) =
        window_result(&app, &ended_pay_url, &ended_fields, &[("action", "cancel")]).await;
    post_without_following(&cancel_url, &cancel).await;
    crate::helpers::execute(
        &app,
        vec!["ALTER TABLE payments RENAME COLUMN started_at TO started_at_gone".into()],
    )
    .await;

    let location = post_without_following(&ret_url, &result).await;
    assert!(
        location.starts_with("https://shop.test/done?"),
        "{location}"
    );
    let q = query_of(&location);
    assert_eq!(q["merchant_uid"], "m-unread", "{location}");
    assert_eq!(
        q["imp_uid"],
        field(&fields, "param_opt_1").unwrap(),
        "{location}"
    );
    assert_eq!(q["imp_success"], "false", "{location}");
    assert_eq!(q["error_code"], "F500", "{location}");

    let (status, location, _, page) = hand_off_answer(&ended_url, &cookie).await;
    assert!(status.is_redirection(), "{status}: {page}");
    let q = query_of(&location);
    assert_eq!(q["merchant_uid"], "m-unread-ended", "{location}");
    assert_eq!(
        q["imp_uid"],
        field(&ended_fields, "param_opt_1").unwrap(),
        "{location}"
    );
    assert_eq!(q["imp_success"], "false", "{location}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
}

/// A buyer who cancels is answered alike however the window was closed: KCP's window (`Ret_URL`
/// with `res_cd` 3001), openport's overlay (the session's cancel call, before KCP answered), on
/// mobile, and in every later answer of the payment (a replayed post, the hand-off page of the
/// ended window): `error_code` 3001, KCP's own code for it, which iamport passes on as the PG
/// gave it, and the same `error_msg`.
#[tokio::test]
async fn a_buyer_cancel_answers_kcps_3001_whichever_way_the_window_was_closed() {
    let app = spawn_app().await;
    const CANCELLED: &str = "사용자가 결제를 취소하였습니다.";
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "cancel-in-kcp", "amount": 1000}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &[("action", "cancel")]).await;
    let in_kcp = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(in_kcp["error_code"], "3001", "{in_kcp}");
    assert_eq!(in_kcp["error_msg"], CANCELLED, "{in_kcp}");
    let replayed = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(replayed["error_code"], "3001", "{replayed}");
    assert_eq!(replayed["error_msg"], CANCELLED, "{replayed}");

    let started = start_checkout(
        &app,
        json!({"merchant_uid": "cancel-overlay", "amount": 1000}),
    )
    .await;
    let start_url = started["response"]["start_url"].as_str().unwrap();
    let closed = close_the_overlay(&app, start_url).await;
    assert_eq!(closed["code"], 0, "{closed}");
    let closed = &closed["response"];
    assert_eq!(closed["success"], false, "{closed}");
    assert_eq!(closed["error_code"], "3001", "{closed}");
    assert_eq!(closed["error_msg"], CANCELLED, "{closed}");
    assert_eq!(closed["status"], "failed", "{closed}");

    let (start_url, pay_url, fields, cookie) = mobile_start(
        &app,
        json!({"merchant_uid": "cancel-mobile", "amount": 1000}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &[("action", "cancel")]).await;
    let location = post_without_following(&ret_url, &result).await;
    let q = query_of(&location);
    assert_eq!(q["error_code"], "3001", "{location}");
    assert_eq!(q["error_msg"], CANCELLED, "{location}");
    let (_, again, _, page) = hand_off_answer(&start_url, &cookie).await;
    assert_eq!(
        again, location,
        "the ended window answers as Ret_URL did: {page}"
    );
    assert!(app.sandbox.ledger().is_empty());
}

/// `result` (a window's post back to `Ret_URL`) as KCP's window posts a refusal `res_cd`.
fn refused_in_the_window(
    mut result: Vec<(String, String)>,
    res_cd: &str,
    res_msg: &str,
) -> Vec<(String, String)> {
    for (k, v) in result.iter_mut() {
        match k.as_str() {
            "res_cd" => *v = res_cd.to_string(),
            "res_msg" => *v = res_msg.to_string(),
            _ => {}
        }
    }
    result
}

/// A refusal in KCP's window other than the buyer's cancel is answered with KCP's `res_cd` as
/// `error_code`, and every later answer of the payment says the same: on mobile the redirect from
/// the ended hand-off page (Back from the shop), on PC the overlay's close-button poll and the
/// frame reloaded, so merchant code that branches on `error_code` sees one code per payment.
#[tokio::test]
async fn a_refusal_in_kcps_window_answers_its_code_alike_in_every_answer_of_the_payment() {
    let app = spawn_app().await;
    const REFUSED: &str = "[9999] 거래가 거절되었습니다";

    let (start_url, pay_url, fields, cookie) = mobile_start(
        &app,
        json!({"merchant_uid": "refused-mobile", "amount": 1000}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &[("action", "cancel")]).await;
    let result = refused_in_the_window(result, "9999", "거래가 거절되었습니다");
    let location = post_without_following(&ret_url, &result).await;
    let q = query_of(&location);
    assert_eq!(q["imp_success"], "false", "{location}");
    assert_eq!(q["error_code"], "9999", "{location}");
    assert_eq!(q["error_msg"], REFUSED, "{location}");
    let (status, again, _, page) = hand_off_answer(&start_url, &cookie).await;
    assert!(status.is_redirection(), "{status}: {page}");
    assert_eq!(again, location, "the ended window answers as Ret_URL did");

    let (start_url, pay_url, fields) = started_from(&app, pc_checkout("refused-pc")).await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &[("action", "cancel")]).await;
    let result = refused_in_the_window(result, "9999", "거래가 거절되었습니다");
    let first = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(first["success"], false, "{first}");
    assert_eq!(first["error_code"], "9999", "{first}");
    assert_eq!(first["error_msg"], REFUSED, "{first}");
    let closed = close_the_overlay(&app, &start_url).await;
    assert_eq!(closed["response"], first, "the close-button poll");
    let (_, _, _, page) = hand_off_answer(&start_url, "").await;
    assert_eq!(rsp_of(&page), first, "the frame reloaded");
    let p = payment_of(&app, &first).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["fail_reason"], REFUSED, "{p}");
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
}

/// A PC hand-off page loaded again once its window ended (the overlay's frame reloaded, or the
/// page reached after the end) shows the result page `Ret_URL` showed, which hands the payment as
/// recorded to the merchant page (whose `IMP.request_pay` callback then runs, as at any other
/// end; js-sdk/test/checkout.test.mjs runs it in a browser), not a bare text page: paid, and
/// cancelled through the overlay. It opens nothing at KCP and is never cached.
#[tokio::test]
async fn the_hand_off_page_of_an_ended_pc_window_hands_the_recorded_outcome_to_the_merchant_page() {
    let app = spawn_app().await;
    let (start_url, pay_url, fields) = started_from(&app, pc_checkout("pc-ended-paid")).await;
    let paid = through_window(&app, &pay_url, &fields, &CARD_OK).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    let (status, location, cache, page) = hand_off_answer(&start_url, "").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{location}");
    assert_eq!(cache, "no-store");
    assert_eq!(rsp_of(&page), paid, "the rsp Ret_URL answered");
    assert!(
        page.contains("postMessage({source:'openport',rsp:rsp},\"http://shop.test\")"),
        "handed to the merchant page's origin only: {page}"
    );

    let (start_url, _, _) = started_from(&app, pc_checkout("pc-ended-closed")).await;
    let closed = close_the_overlay(&app, &start_url).await;
    let (status, _, _, page) = hand_off_answer(&start_url, "").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let ended = rsp_of(&page);
    assert_eq!(ended, closed["response"], "{page}");
    assert_eq!(ended["success"], false, "{ended}");
    assert_eq!(
        app.sandbox.ledger().len(),
        1,
        "the hand-off reopened nothing"
    );
}

/// KCP's escrow (구매안전) covers cards, bank transfers and virtual accounts, as PortOne documents
/// it for KCP: an escrow window for a phone, point or gift-certificate payment would be refused by
/// KCP in the buyer's face or approved as a plain trade, so it is refused before anything is
/// written or registered, naming the methods that take escrow. A bank transfer still opens one.
#[tokio::test]
async fn an_escrow_window_for_phone_point_or_gift_is_refused_before_the_window() {
    let app = spawn_app().await;
    // A tripwire: a registration reaching KCP is answered with this.
    app.sandbox.inject(FaultRule::new(
        paths::TRADE_REGISTER,
        Fault::HttpStatus { status: 503 },
    ));
    let products = json!([{"orderNumber": "o1", "name": "양말", "quantity": 1, "amount": 1000}]);
    for (i, method) in ["phone", "point", "cultureland"].into_iter().enumerate() {
        for mobile in [false, true] {
            let uid = format!("web-escrow-method-{i}-{mobile}");
            let (_, refused) = app
                .post(
                    "/checkout/request",
                    None,
                    json!({"imp_code": "imp00000000", "mobile": mobile, "page_url": "http://shop.test/cart",
                           "params": {"pay_method": method, "merchant_uid": uid, "amount": 1000, "escrow": true,
                                      "kcpProducts": products, "bypass": {"shop_user_id": "user123"},
                                      "m_redirect_url": "https://shop.test/done"}}),
                )
                .await;
            let message = refused["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("에스크로")
                    && ["card", "trans", "vbank"]
                        .iter()
                        .all(|m| message.contains(m)),
                "{method} mobile={mobile}: {refused}"
            );
            refused_without_a_trace(&app, &refused, Some(&uid)).await;
            assert_eq!(
                app.sandbox.armed_faults().len(),
                1,
                "a trade was registered"
            );
        }
    }

    app.sandbox.clear_faults();
    let (_, opened) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "mobile": true, "page_url": "http://shop.test/cart",
                   "params": {"pay_method": "trans", "merchant_uid": "web-escrow-trans", "amount": 1000,
                              "escrow": true, "buyer_name": "홍길동", "kcpProducts": products, "m_redirect_url": "https://shop.test/done"}}),
        )
        .await;
    assert_eq!(opened["code"], 0, "{opened}");
}

/// KCP's window has no language field (spec/kcp.md), so it is Korean whatever is asked.
/// `language: 'en'` (an English storefront written for iamport) opens that Korean window with one
/// warning for the checkout, rather than being refused, which left such a shop with no payment
/// at all.
#[tokio::test]
async fn a_language_kcps_window_does_not_have_opens_the_korean_window_with_a_warning() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"merchant_uid": "web-lang-en", "amount": 1000, "language": "en"}),
        &CARD_OK,
    )
    .await;
    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(payment_of(&app, &rsp).await["status"], "paid");
    let logs = crate::helpers::captured_logs();
    let warned = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("language") && l.contains("web-lang-en"))
        .count();
    assert_eq!(warned, 1, "one warning for the checkout");
}

/// seed 001 §2.1: iamport ignores `m_redirect_url` on PC ("PC에서는 해당 파라메터를 무시하므로 코드
/// 일관성을 위해 PC결제에도 `m_redirect_url` 파라메터 전달이 무방합니다"), where the answer is the
/// overlay's callback. An app-scheme URL, or a relative one from a page that is not http(s) (an
/// app shell's `file://`), opens a PC window and pays; on mobile, where the redirect is the
/// buyer's way back, they are still refused before the window.
#[tokio::test]
async fn an_m_redirect_url_a_mobile_checkout_refuses_is_ignored_by_a_pc_checkout() {
    let app = spawn_app().await;
    let cases = [
        ("http://shop.test/pay", "myapp://payment/complete"),
        ("file:///C:/shop/pay.html", "/done"),
    ];
    for (i, (page_url, redirect)) in cases.into_iter().enumerate() {
        let body = |mobile: bool| {
            json!({"imp_code": "imp00000000", "mobile": mobile, "page_url": page_url,
                   "params": {"merchant_uid": format!("web-pc-redirect-{i}-{mobile}"), "amount": 1000,
                              "m_redirect_url": redirect}})
        };
        let (_, refused) = app.post("/checkout/request", None, body(true)).await;
        assert_eq!(refused["code"], -1, "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("m_redirect_url"),
            "{refused}"
        );
        let (pay_url, fields) = hand_off_from(&app, body(false)).await;
        let rsp = through_window(&app, &pay_url, &fields, &CARD_OK).await;
        assert_eq!(rsp["success"], true, "{page_url} {redirect}: {rsp}");
        assert_eq!(payment_of(&app, &rsp).await["status"], "paid");
    }
}

/// A double tap on KCP's final button of a mobile window with a confirm_url: the post that
/// claims the window may spend up to confirm_url's 10 s before its approval call even starts, so
/// the second post, whose redirect is the one the browser follows, waits for that too. Here the
/// merchant answers after the approval call's timeout and the 5 s margin (the second post's
/// whole wait without a confirm_url) but within its own 10 s: the buyer is sent back with the
/// approval, never with `imp_success=false` (`F500`) a moment before the payment is recorded
/// `paid`. The smallest KCP timeout the config takes (1 s) leaves the most room between the two:
/// the merchant answers 1.5 s after the second post's wait without a confirm_url would have
/// ended and 2.5 s before its own 10 s (together 4 s: the 10 s less that 6 s wait). The claim's
/// lease covers the merchant's wait, so the second post is waiting on a held attempt throughout.
#[tokio::test]
async fn a_double_submitted_mobile_result_waits_for_a_slow_confirm_url_and_redirects_with_the_approval(
) {
    const KCP_TIMEOUT_MS: u64 = openport::config::MIN_KCP_TIMEOUT_MS;
    let app = crate::helpers::spawn_app_with(|c| c.kcp.timeout_ms = KCP_TIMEOUT_MS).await;
    let gate = GatedConfirm::start().await;
    let (pay_url, fields) = mobile_hand_off(
        &app,
        json!({"merchant_uid": "web-slow-confirm-twice", "amount": 1000, "confirm_url": gate.url}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let post = |ret_url: String, result: Vec<(String, String)>| async move {
        post_without_following(&ret_url, &result).await
    };
    let first = tokio::spawn(post(ret_url.clone(), result.clone()));
    gate.arrived.notified().await;
    let second = tokio::spawn(post(ret_url, result));
    // Past the approval call's timeout and the 5 s margin, 2.5 s within confirm_url's 10 s.
    let slow = KCP_TIMEOUT_MS + 5_000 + 1_500;
    tokio::time::sleep(std::time::Duration::from_millis(slow)).await;
    if second.is_finished() {
        let answered = second.await.unwrap();
        panic!("the second post gave up while confirm_url was being asked: {answered}");
    }
    gate.release.notify_one();
    let (first, second) = (
        query_of(&first.await.unwrap()),
        query_of(&second.await.unwrap()),
    );
    assert_eq!(first["imp_success"], "true", "{first:?}");
    assert_eq!(second["imp_success"], "true", "{second:?}");
    assert_eq!(second.get("error_code"), None, "{second:?}");
    assert_eq!(second["imp_uid"], first["imp_uid"]);
    assert_eq!(app.sandbox.ledger().len(), 1, "approved once");
    assert_eq!(
        gate.calls.lock().unwrap().len(),
        1,
        "confirm_url asked once"
    );
    app.assert_ledger_agrees().await;
}

/// A window whose confirm_url answers after a holder's lease (3 KCP timeouts and a second: 6 s
/// at the tests' 1.5 s) and the settle delay (5 s), within its own 10 s: the claim's lease
/// covers the merchant's wait, so the resolver, run while the merchant is still being asked,
/// finds nothing to take, and the merchant's 200 approves the payment. With a holder's lease
/// alone the resolver took the attempt once that ran out, found no trade at KCP and failed the
/// payment, and the buyer who paid in KCP's window was told it failed.
#[tokio::test]
async fn a_confirm_url_answering_after_a_holders_lease_keeps_the_window_claimed_and_approves() {
    let app = spawn_app().await;
    let gate = GatedConfirm::start().await;
    let (pay_url, fields) = mobile_hand_off(
        &app,
        json!({"merchant_uid": "web-confirm-past-lease", "amount": 1000, "confirm_url": gate.url}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let claiming = tokio::spawn(async move { post_without_following(&ret_url, &result).await });
    gate.arrived.notified().await;
    // The merchant has been asked for 8 s (on the gateway's clock): past the 6 s lease.
    app.advance(8);
    let looked_at = app.app.gateway.resolve_due(10).await.unwrap();
    gate.release.notify_one();
    let answered = query_of(&claiming.await.unwrap());
    assert_eq!(looked_at, 0, "the resolver took the attempt the post holds");
    assert_eq!(answered["imp_success"], "true", "{answered:?}");
    assert_eq!(answered.get("error_code"), None, "{answered:?}");
    let token = app.token().await;
    let p = app.payment(&token, &answered["imp_uid"]).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(app.sandbox.ledger().len(), 1, "approved once");
    app.assert_ledger_agrees().await;
}

/// A PC window's `Ret_URL` post that openport cannot answer before anything was sent to KCP
/// (here the database refuses the write that claims the window): the payment is still `ready`,
/// so the window is failed with a general message naming the request id and the result page
/// hands that failure to the merchant page at once (`F400`), instead of a dead end whose × then
/// records the buyer's cancel (`3001`). Later answers of the payment say the same.
#[tokio::test]
async fn a_pc_result_openport_cannot_take_before_the_claim_fails_the_window_and_answers_the_page() {
    let app = spawn_app().await;
    let (start_url, pay_url, fields) = started_from(&app, pc_checkout("web-pc-unrecorded")).await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    crate::helpers::refuse_writes(
        &app,
        "refuse_pc_claim",
        "UPDATE",
        "payments",
        "NEW.status = 'pending'",
    )
    .await;
    let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_code"], "F400", "{rsp}");
    let message = rsp["error_msg"].as_str().unwrap().to_string();
    assert!(message.contains("요청번호: "), "{rsp}");
    assert!(!message.contains("injected"), "no internals: {rsp}");
    let imp_uid = field(&fields, "param_opt_1").unwrap();
    assert_eq!(rsp["imp_uid"], imp_uid, "{rsp}");
    assert_eq!(rsp["merchant_uid"], "web-pc-unrecorded", "{rsp}");
    let p = payment_of(&app, &rsp).await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["fail_reason"], message.as_str(), "{p}");
    // The overlay's close (the SDK's × after a result page it did not get) says the same.
    let closed = close_the_overlay(&app, &start_url).await;
    assert_eq!(closed["response"]["error_code"], "F400", "{closed}");
    assert_eq!(
        closed["response"]["error_msg"],
        message.as_str(),
        "{closed}"
    );
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
    crate::helpers::allow_writes(&app, "refuse_pc_claim", "payments").await;
}

/// The default `checkout.window_ttl_secs`: how long after `IMP.request_pay` a window may be
/// completed.
const WINDOW_TTL_SECS: i64 = openport::config::DEFAULT_WINDOW_TTL_SECS as i64;

/// What a window completed past its lifetime is answered and recorded with.
const WINDOW_TOO_OLD: &str =
    "결제창을 연 지 오래되어(1시간 초과) 결제를 진행할 수 없습니다. 다시 결제해 주세요.";

/// Where the tests' windows ask their webhooks to go (written to the outbox, never delivered:
/// the tests drive no delivery).
const NOTICE_URL: &str = "http://127.0.0.1:9/hook";

/// Asserts that payment `rsp` names failed with [`WINDOW_TOO_OLD`] and that no webhook of any kind
/// was written for `merchant_uid` (an ordinary failure has none, spec/iamport-v1.md §5).
async fn failed_as_too_old(app: &TestApp, rsp: &Value, merchant_uid: &str) {
    let p = payment_of(app, rsp).await;
    assert_eq!(p["status"], "failed", "{merchant_uid}: {p}");
    assert_eq!(p["fail_reason"], WINDOW_TOO_OLD, "{merchant_uid}: {p}");
    for status in ["paid", "ready", "failed"] {
        assert_eq!(
            crate::schedules::webhooks_of(app, merchant_uid, status).await,
            0,
            "{merchant_uid}: no {status} webhook"
        );
    }
}

/// A time-accelerated soak found a window that never expires: a mobile card window completed
/// 24.9 hours after `IMP.request_pay` was approved and announced `paid`, to a shop that had long
/// treated the order as abandoned. A `Ret_URL` post more than `checkout.window_ttl_secs` (an hour)
/// after the window opened is not sent to KCP: the payment fails with the reason, which the buyer
/// is sent back with, and no webhook is written. For every kind of window, since none has
/// anything approved or issued at KCP before openport's own approval call.
#[tokio::test]
async fn a_window_completed_after_its_lifetime_is_failed_with_nothing_approved_at_kcp_and_no_webhook(
) {
    let app = spawn_app().await;
    app.stop_clock();
    let (_, pay_url, fields, _) = mobile_start(
        &app,
        json!({"merchant_uid": "old-mobile-card", "amount": 1000, "notice_url": NOTICE_URL}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    app.advance(89_765);
    let location = post_without_following(&ret_url, &result).await;
    let q = query_of(&location);
    assert!(
        location.starts_with("https://shop.test/done?"),
        "{location}"
    );
    assert_eq!(q["imp_success"], "false", "{location}");
    assert_eq!(q["error_code"], "F400", "{location}");
    assert_eq!(q["error_msg"], WINDOW_TOO_OLD, "{location}");
    failed_as_too_old(&app, &json!({"imp_uid": q["imp_uid"]}), "old-mobile-card").await;

    // Every other kind of window (PC), one second past the limit.
    let mut windows: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (
            json!({"merchant_uid": "cx-card", "amount": 1000}),
            CARD_OK.to_vec(),
        ),
        (
            json!({"pay_method": "vbank", "merchant_uid": "cx-vbank", "amount": 5000}),
            vec![("bank", "BK04"), ("action", "pay")],
        ),
        (
            json!({"pay_method": "point", "merchant_uid": "cx-point", "amount": 2000}),
            vec![("pin", "1234"), ("action", "pay")],
        ),
    ];
    windows.extend(
        crate::cancel::window_payments()
            .into_iter()
            .map(|(params, fill)| (params, fill.to_vec())),
    );
    for (mut params, fill) in windows {
        params["notice_url"] = json!(NOTICE_URL);
        let merchant_uid = params["merchant_uid"].as_str().unwrap().to_string();
        let (pay_url, fields) = hand_off(&app, params).await;
        let (ret_url, result) = window_result(&app, &pay_url, &fields, &fill).await;
        app.advance(WINDOW_TTL_SECS + 1);
        let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
        assert_eq!(rsp["success"], false, "{merchant_uid}: {rsp}");
        assert_eq!(rsp["error_code"], "F400", "{merchant_uid}: {rsp}");
        assert_eq!(rsp["error_msg"], WINDOW_TOO_OLD, "{merchant_uid}: {rsp}");
        assert_eq!(rsp["status"], "failed", "{merchant_uid}: {rsp}");
        failed_as_too_old(&app, &rsp, &merchant_uid).await;
    }
    assert!(
        app.sandbox.ledger().is_empty(),
        "nothing approved or issued at KCP: {:?}",
        app.sandbox.ledger()
    );
    app.assert_ledger_agrees().await;
}

/// The limit is checked where the window is claimed (`ready → pending`), just before KCP's
/// approval: a window claimed on the last second of its hour is approved, and stays paid when
/// KCP's answer arrives after the hour.
#[tokio::test]
async fn a_window_claimed_on_the_last_second_of_its_lifetime_is_paid_though_kcp_answers_after_it() {
    let app = spawn_app_with_patient_kcp().await;
    app.stop_clock();
    let (pay_url, fields) = hand_off(
        &app,
        json!({"merchant_uid": "web-last-second", "amount": 1000, "notice_url": NOTICE_URL}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    app.advance(WINDOW_TTL_SECS);
    app.sandbox.inject(FaultRule::new(
        "/gw/enc/v1/payment",
        Fault::HoldRequest {
            gate: "approval".into(),
        },
    ));
    let posted = tokio::spawn(async move {
        let res = reqwest::Client::new().post(ret_url).form(&result).send();
        res.await.unwrap().text().await.unwrap()
    });
    app.sandbox.until_held("approval").await;
    app.advance(2);
    app.sandbox.open_gate("approval");
    let rsp = rsp_of(&posted.await.unwrap());
    assert_eq!(rsp["success"], true, "{rsp}");
    assert_eq!(rsp["status"], "paid", "{rsp}");
    assert_eq!(payment_of(&app, &rsp).await["status"], "paid");
    assert_eq!(
        crate::schedules::webhooks_of(&app, "web-last-second", "paid").await,
        1
    );
    assert_eq!(app.sandbox.ledger().len(), 1);
    app.assert_ledger_agrees().await;
}

/// A billing-key window past its lifetime issues no key: KCP issues one only on openport's
/// issuance call (spec/kcp.md §2.5), which is never made, so there is no key to delete at KCP and
/// none stored for the customer_uid.
#[tokio::test]
async fn a_billing_key_window_completed_after_its_lifetime_leaves_no_key_at_kcp() {
    let app = spawn_app().await;
    app.stop_clock();
    let (pay_url, fields) = hand_off(
        &app,
        json!({"pg": "kcp_billing", "pay_method": "card", "merchant_uid": "web-old-billing",
               "amount": 0, "customer_uid": "web-old-cust", "notice_url": NOTICE_URL}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &MASTERCARD_OK).await;
    app.advance(WINDOW_TTL_SECS + 1);
    let rsp = rsp_of(&post_form(&app, &ret_url, &result).await);
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_code"], "F400", "{rsp}");
    assert_eq!(rsp["error_msg"], WINDOW_TOO_OLD, "{rsp}");
    failed_as_too_old(&app, &rsp, "web-old-billing").await;
    assert!(
        app.sandbox.batch_keys().is_empty(),
        "no key issued at KCP: {:?}",
        app.sandbox.batch_keys()
    );
    let token = app.token().await;
    let (_, customer) = app
        .get("/subscribe/customers/web-old-cust", Some(&token))
        .await;
    assert!(customer["response"].is_null(), "{customer}");
}

/// The hand-off page loaded past the window's lifetime (a tab restored the next day, Back into
/// it) does not open KCP's window for a card that could not be charged: the window ends failed
/// as its `Ret_URL` post would, on PC (the result page hands the `rsp` to the merchant page) and
/// on mobile (the browser that opened the window is sent back to `m_redirect_url`).
#[tokio::test]
async fn the_hand_off_page_of_a_window_past_its_lifetime_ends_it_failed_instead_of_opening_kcps_window(
) {
    let app = spawn_app().await;
    app.stop_clock();
    let (_, started) = app
        .post("/checkout/request", None, pc_checkout("web-late-hand-off"))
        .await;
    assert_eq!(started["code"], 0, "{started}");
    let start_url = started["response"]["start_url"].as_str().unwrap();
    app.advance(WINDOW_TTL_SECS + 1);
    let page = app.http.get(start_url).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(
        pc_script(&page).is_none(),
        "KCP's window not opened: {page}"
    );
    let rsp = rsp_of(&page);
    assert_eq!(rsp["success"], false, "{rsp}");
    assert_eq!(rsp["error_code"], "F400", "{rsp}");
    assert_eq!(rsp["error_msg"], WINDOW_TOO_OLD, "{rsp}");
    failed_as_too_old(&app, &rsp, "web-late-hand-off").await;
    let closed = close_the_overlay(&app, start_url).await;
    assert_eq!(closed["response"]["error_msg"], WINDOW_TOO_OLD, "{closed}");

    let (start_url, _, _, cookie) = mobile_start(
        &app,
        json!({"merchant_uid": "m-late-hand-off", "amount": 1000}),
    )
    .await;
    app.advance(WINDOW_TTL_SECS + 1);
    let (status, location, _, page) = hand_off_answer(&start_url, &cookie).await;
    assert!(status.is_redirection(), "{status}: {page}");
    let q = query_of(&location);
    assert_eq!(q["imp_success"], "false", "{location}");
    assert_eq!(q["error_msg"], WINDOW_TOO_OLD, "{location}");
    failed_as_too_old(&app, &json!({"imp_uid": q["imp_uid"]}), "m-late-hand-off").await;
    assert!(app.sandbox.ledger().is_empty(), "nothing was approved");
}

/// `PUT /admin/merchants/{id}/redirect-origins` for the demo merchant, which must take it.
async fn allow_redirects_to(app: &TestApp, origins: &[&str]) {
    let id = app.app.demo.as_ref().expect("demo merchant").merchant.id;
    let (status, body) = app
        .put(
            &format!("/admin/merchants/{id}/redirect-origins"),
            crate::helpers::ADMIN_TOKEN,
            json!({ "origins": origins }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
}

/// A mobile `POST /checkout/request` of the demo merchant from `page_url`, naming
/// `m_redirect_url` when given: what it answers.
async fn mobile_request(
    app: &TestApp,
    merchant_uid: &str,
    page_url: &str,
    m_redirect_url: Option<&str>,
) -> Value {
    let mut params = json!({"merchant_uid": merchant_uid, "amount": 1000});
    if let Some(url) = m_redirect_url {
        params["m_redirect_url"] = json!(url);
    }
    app.post(
        "/checkout/request",
        None,
        json!({"imp_code": "imp00000000", "mobile": true, "page_url": page_url, "params": params}),
    )
    .await
    .1
}

/// The buyer of the mobile window started at `start_url` closes KCP's window (`res_cd` 3001):
/// what `Ret_URL` answers, not followed (status, `Location`, body).
async fn cancelled_in_the_window(
    app: &TestApp,
    start_url: &str,
) -> (reqwest::StatusCode, String, String) {
    let page = app.http.get(start_url).send().await.unwrap();
    let (pay_url, fields) = form(&page.text().await.unwrap());
    let (ret_url, result) = window_result(app, &pay_url, &fields, &[("action", "cancel")]).await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_follow.post(&ret_url).form(&result).send().await.unwrap();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (res.status(), location, res.text().await.unwrap())
}

/// Review rD F4: with a merchant's public imp_code anyone can open a mobile window naming any
/// `m_redirect_url` (or, without one, any `page_url`, where the buyer is sent back) and end it at
/// `Ret_URL`, which answered with a 303 from openport's own host to that URL. A merchant that
/// lists its redirect origins has a mobile window sending its buyer anywhere else refused before
/// anything is written, with the origin named; a relative URL is judged where it resolves.
#[tokio::test]
async fn a_mobile_checkout_redirecting_outside_the_merchants_origins_is_refused_naming_the_origin()
{
    let app = spawn_app().await;
    allow_redirects_to(&app, &["https://shop.test"]).await;
    for (page_url, redirect) in [
        ("https://shop.test/cart", Some("https://evil.example/login")),
        ("https://shop.test/cart", Some("http://shop.test/done")),
        (
            "https://shop.test/cart",
            Some("https://shop.test:8443/done"),
        ),
        ("https://evil.example/cart", Some("/login")),
        ("https://evil.example/cart", None),
    ] {
        let refused = mobile_request(&app, "m-elsewhere", page_url, redirect).await;
        let message = refused["message"].as_str().unwrap_or_default().to_string();
        let origin = reqwest::Url::parse(page_url)
            .unwrap()
            .join(redirect.unwrap_or(page_url))
            .unwrap()
            .origin()
            .ascii_serialization();
        assert!(
            message.contains(&origin) && message.contains("리다이렉트 origin"),
            "{redirect:?} from {page_url}: {refused}"
        );
        refused_without_a_trace(&app, &refused, Some("m-elsewhere")).await;
    }
    // A PC window never redirects: its m_redirect_url is ignored, as iamport ignores it.
    let (_, pc) = app
        .post(
            "/checkout/request",
            None,
            json!({"imp_code": "imp00000000", "mobile": false, "page_url": "https://evil.example/",
                   "params": {"merchant_uid": "pc-elsewhere", "amount": 1000,
                              "m_redirect_url": "https://evil.example/login"}}),
        )
        .await;
    assert_eq!(pc["code"], 0, "{pc}");
}

/// A listed origin opens as before, however the operator wrote it (upper case, the default
/// port, a trailing `/`), and the buyer's cancel in KCP's window is redirected there.
#[tokio::test]
async fn a_mobile_checkout_to_a_listed_origin_opens_and_ret_url_redirects_there() {
    let app = spawn_app().await;
    allow_redirects_to(&app, &["HTTPS://Shop.Test:443/", "https://m.shop.test"]).await;
    let started = mobile_request(
        &app,
        "m-listed",
        "https://m.shop.test/cart",
        Some("https://shop.test/done?from=m"),
    )
    .await;
    assert_eq!(started["code"], 0, "{started}");
    let (status, location, page) =
        cancelled_in_the_window(&app, started["response"]["start_url"].as_str().unwrap()).await;
    assert!(status.is_redirection(), "{status}: {page}");
    assert!(
        location.starts_with("https://shop.test/done?from=m&imp_uid="),
        "{location}"
    );
    assert_eq!(query_of(&location)["error_code"], "3001", "{location}");

    // Without m_redirect_url the buyer goes back to the page, whose origin is listed too.
    let started = mobile_request(&app, "m-listed-page", "https://m.shop.test/cart", None).await;
    assert_eq!(started["code"], 0, "{started}");
    let (status, location, _) =
        cancelled_in_the_window(&app, started["response"]["start_url"].as_str().unwrap()).await;
    assert!(status.is_redirection(), "{status}");
    assert!(
        location.starts_with("https://m.shop.test/cart?imp_uid="),
        "{location}"
    );
}

/// Without a list (every merchant before the upgrade) any http(s) `m_redirect_url` is taken and
/// redirected to, as at iamport: docs/security.md tells operators to set one.
#[tokio::test]
async fn without_redirect_origins_any_m_redirect_url_is_taken_as_at_iamport() {
    let app = spawn_app().await;
    let started = mobile_request(
        &app,
        "m-unlisted",
        "https://shop.test/cart",
        Some("https://elsewhere.example/done"),
    )
    .await;
    assert_eq!(started["code"], 0, "{started}");
    let (status, location, _) =
        cancelled_in_the_window(&app, started["response"]["start_url"].as_str().unwrap()).await;
    assert!(status.is_redirection(), "{status}");
    assert!(
        location.starts_with("https://elsewhere.example/done?imp_uid="),
        "{location}"
    );
}

/// Windows opened to an origin the list no longer holds (opened before the list was set, or
/// before the operator took the origin out): `Ret_URL`, a cross-site POST from KCP's window that
/// carries no cookie and so cannot tell the buyer from anyone else, never redirects there. It
/// answers the ended page, with no link; the payment's outcome is recorded all the same. The
/// hand-off page does not send even its opener there either.
#[tokio::test]
async fn a_window_whose_redirect_origin_was_delisted_after_it_opened_ends_at_ret_url_without_redirecting(
) {
    let app = spawn_app().await;
    let started = mobile_request(
        &app,
        "m-delisted",
        "https://evil.example/cart",
        Some("https://evil.example/login"),
    )
    .await;
    assert_eq!(started["code"], 0, "{started}");
    let start_url = started["response"]["start_url"].as_str().unwrap();
    let imp_uid = started["response"]["imp_uid"].as_str().unwrap();
    let page = app.http.get(start_url).send().await.unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .unwrap_or_default();
    let (pay_url, fields) = form(&page.text().await.unwrap());

    allow_redirects_to(&app, &["https://shop.test"]).await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &[("action", "cancel")]).await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_follow.post(&ret_url).form(&result).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert!(res.headers().get("location").is_none());
    let page = res.text().await.unwrap();
    assert!(page.contains("이미 종료된 결제입니다."), "{page}");
    assert!(!page.contains("evil.example"), "no link either: {page}");
    let failed = payment_of(&app, &json!({ "imp_uid": imp_uid })).await;
    assert_eq!(
        failed["status"], "failed",
        "the cancel is recorded: {failed}"
    );

    let (status, location, _, page) = hand_off_answer(start_url, &cookie).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{location}");
    assert!(location.is_empty(), "{location}");
    assert!(page.contains("이미 종료된 결제입니다."), "{page}");
}

/// The targets that try to pass for the listed `https://shop.test` from the shop's page, each
/// with where it really sends the buyer (its origin) and whether that is the shop (review rN,
/// F4): the check holds only because both sides are compared as URLs once `m_redirect_url` is
/// resolved against the page; a string prefix compare, or a compare of the raw
/// `m_redirect_url`, passes the others.
const DISGUISED_TARGETS: [(&str, &str, bool); 9] = [
    // Userinfo: the host is what follows the `@`.
    (
        "https://shop.test@evil.example/",
        "https://evil.example",
        false,
    ),
    // A backslash ends the host of an http(s) URL (WHATWG): `@shop.test/` is a path.
    (
        "https://evil.example\\@shop.test/",
        "https://evil.example",
        false,
    ),
    // Another host string (fails closed): the trailing dot.
    ("https://shop.test./done", "https://shop.test.", false),
    // An IDN look-alike (Cyrillic `ѕ`): its own punycode host.
    ("https://ѕhop.test/done", "https://xn--", false),
    // Scheme-relative: resolved against the page, it goes to evil.example.
    ("//evil.example/x", "https://evil.example", false),
    // Another scheme than the page's: absolute, evil.example.
    ("http:evil.example", "http://evil.example", false),
    // The page's own scheme without `//`: a relative path on the shop (WHATWG), so it stays.
    ("https:evil.example", "https://shop.test", true),
    // Case and the default port: the listed origin.
    ("HTTPS://SHOP.TEST:443/done", "https://shop.test", true),
    ("https://Shop.Test/done", "https://shop.test", true),
];

/// Review rN, F4: each disguised target is refused at `/checkout/request`, naming where it
/// really goes, and each spelling of the listed origin opens.
#[tokio::test]
async fn a_disguised_m_redirect_url_is_refused_by_the_origin_it_really_goes_to() {
    let app = spawn_app().await;
    allow_redirects_to(&app, &["https://shop.test"]).await;
    for (n, (target, origin, to_the_shop)) in DISGUISED_TARGETS.into_iter().enumerate() {
        let uid = format!("m-disguised-{n}");
        let answer = mobile_request(&app, &uid, "https://shop.test/cart", Some(target)).await;
        if to_the_shop {
            assert_eq!(answer["code"], 0, "{target}: {answer}");
            continue;
        }
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(origin) && message.contains("리다이렉트 origin"),
            "{target}: {answer}"
        );
        refused_without_a_trace(&app, &answer, Some(&uid)).await;
    }
}

/// Review rN, F4: windows opened to the disguised targets before the list was set end at
/// `Ret_URL` with no `Location` (the ended page, no link); those that go to the listed origin
/// are redirected there.
#[tokio::test]
async fn windows_opened_to_disguised_targets_before_the_list_was_set_are_not_redirected() {
    let app = spawn_app().await;
    let mut windows = Vec::new();
    for (n, (target, _, to_the_shop)) in DISGUISED_TARGETS.into_iter().enumerate() {
        let uid = format!("m-disguised-open-{n}");
        let started = mobile_request(&app, &uid, "https://shop.test/cart", Some(target)).await;
        assert_eq!(started["code"], 0, "{target}: no list yet: {started}");
        let start_url = started["response"]["start_url"]
            .as_str()
            .unwrap()
            .to_string();
        windows.push((target, to_the_shop, start_url));
    }
    allow_redirects_to(&app, &["https://shop.test"]).await;
    for (target, to_the_shop, start_url) in windows {
        let (status, location, page) = cancelled_in_the_window(&app, &start_url).await;
        if to_the_shop {
            assert!(status.is_redirection(), "{target}: {status}: {page}");
            assert!(
                location.starts_with("https://shop.test/"),
                "{target}: {location}"
            );
        } else {
            assert_eq!(status, reqwest::StatusCode::OK, "{target}: {location}");
            assert!(location.is_empty(), "{target}: {location}");
            assert!(page.contains("이미 종료된 결제입니다."), "{target}: {page}");
            assert!(!page.contains("evil.example"), "{target}: no link: {page}");
        }
    }
}

/// Review rU, F2: a mobile checkout from a page that is not http(s) (a hybrid app's
/// `file:///android_asset/…`, `capacitor://localhost/`) without `m_redirect_url` has nowhere to
/// send the buyer once the window ends: the SDK's page is gone, and the result page would post to
/// no parent. Refused before the window (`code -1`, naming `m_redirect_url`, nothing written), so
/// the page's callback gets it; with `m_redirect_url` the same page pays and the buyer is sent
/// there.
#[tokio::test]
async fn a_mobile_checkout_from_a_page_that_is_not_http_without_m_redirect_url_is_refused_before_the_window(
) {
    let app = spawn_app().await;
    for (i, page_url) in [
        Some("file:///android_asset/pay.html"),
        Some("capacitor://localhost/"),
        Some("about:blank"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let uid = format!("web-app-shell-{i}");
        let (_, refused) = app
            .post(
                "/checkout/request",
                None,
                json!({"imp_code": "imp00000000", "mobile": true, "page_url": page_url,
                       "params": {"merchant_uid": uid, "amount": 1000}}),
            )
            .await;
        assert_eq!(
            refused["message"], "모바일 결제에는 m_redirect_url(http/https)이 필요합니다.",
            "{page_url:?}: {refused}"
        );
        refused_without_a_trace(&app, &refused, Some(&uid)).await;
    }

    let (pay_url, fields) = hand_off_from(
        &app,
        json!({"imp_code": "imp00000000", "mobile": true, "page_url": "file:///android_asset/pay.html",
               "params": {"merchant_uid": "web-app-shell-redirect", "amount": 1000,
                          "m_redirect_url": "https://shop.test/done"}}),
    )
    .await;
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let location = post_without_following(&ret_url, &result).await;
    assert!(
        location.starts_with("https://shop.test/done?imp_uid=imp_"),
        "{location}"
    );
    assert!(location.ends_with("&imp_success=true"), "{location}");
}

/// Review rU, F3: `app_scheme` (seed 001 §3: the app a buyer returns to from a card or bank app)
/// has no field in KCP's window (spec/kcp.md), so it is not sent. The checkout is not refused for
/// it (an app integration written for iamport would have no payment at all), but it is not
/// dropped unseen either: one warning per checkout, as for `language`, and the docs name it.
#[tokio::test]
async fn an_app_scheme_is_accepted_not_sent_to_kcp_and_warned_about_once_per_checkout() {
    let app = spawn_app().await;
    let (pay_url, fields) = mobile_hand_off(
        &app,
        json!({"merchant_uid": "web-app-scheme", "amount": 1000, "app_scheme": "myshopapp"}),
    )
    .await;
    assert!(
        fields.iter().all(|(_, v)| !v.contains("myshopapp")),
        "{fields:?}"
    );
    let (ret_url, result) = window_result(&app, &pay_url, &fields, &CARD_OK).await;
    let location = post_without_following(&ret_url, &result).await;
    assert!(location.contains("imp_success=true"), "{location}");
    let warned = crate::helpers::captured_logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("app_scheme") && l.contains("web-app-scheme"))
        .count();
    assert_eq!(warned, 1, "one warning for the checkout");
    let docs = include_str!("../../docs/api.md");
    assert!(
        docs.lines()
            .any(|l| l.starts_with("| `app_scheme`") && l.contains("not sent to KCP")),
        "docs/api.md's request_pay table names app_scheme"
    );
}

/// Review rU, F4: iamport pages forward the callback's rsp to their server field by field; the
/// rsp names `bank_name` (a bank transfer's bank) and `card_code` (a card's issuer) as the same
/// payment over REST does, null where they do not apply.
#[tokio::test]
async fn the_callback_rsp_names_the_bank_and_the_card_code_as_rest_does() {
    let app = spawn_app().await;
    let card = request_pay(
        &app,
        json!({"pay_method": "card", "merchant_uid": "web-rsp-card-code", "amount": 1000}),
        &CARD_OK,
    )
    .await;
    assert_eq!(card["status"], "paid", "{card}");
    let rest = payment_of(&app, &card).await;
    assert!(rest["card_code"].is_string(), "{rest}");
    assert_eq!(card["card_code"], rest["card_code"], "{card}");
    assert!(card["bank_name"].is_null(), "{card}");
    assert!(
        card.as_object().unwrap().contains_key("bank_name"),
        "{card}"
    );

    let bank = request_pay(
        &app,
        json!({"pay_method": "trans", "merchant_uid": "web-rsp-bank-name", "amount": 3000}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(bank["status"], "paid", "{bank}");
    let rest = payment_of(&app, &bank).await;
    assert_eq!(rest["bank_name"], "국민은행", "{rest}");
    assert_eq!(bank["bank_name"], "국민은행", "{bank}");
    assert!(bank["card_code"].is_null(), "{bank}");
    assert!(
        bank.as_object().unwrap().contains_key("card_code"),
        "{bank}"
    );
}

/// Review rR, F3: the checkout's JSON endpoints refuse a path segment that is not UTF-8 once
/// percent-decoded with the envelope, as the REST API does: the SDK parses their answers as
/// JSON, and axum's own rejection is plain text.
#[tokio::test]
async fn a_session_token_or_imp_uid_that_is_not_utf8_is_refused_with_the_json_envelope() {
    let app = spawn_app().await;
    for (method, path) in [
        (reqwest::Method::GET, "/checkout/session/%ff/status"),
        (reqwest::Method::POST, "/checkout/session/%C0%AF/cancel"),
        (reqwest::Method::GET, "/demo/api/verify/%ff"),
    ] {
        let mut req = app.http.request(method.clone(), app.url(path));
        if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST, "{path}");
        let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], -1, "{path}: {body}");
        assert!(body["message"].is_string(), "{path}: {body}");
    }
}
