//! Browser checkout through HTTP, the way a browser drives it: request_pay's server side, the
//! hand-off page, KCP's window (sandbox), the post back to Ret_URL, and the answer.
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

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

/// Runs one request_pay through the window; `fill` adds what the buyer enters.
async fn request_pay(app: &TestApp, params: Value, fill: &[(&str, &str)]) -> Value {
    let (_, started) = app
        .post("/checkout/request", None, json!({"imp_code": "imp00000000", "params": params, "mobile": false, "page_url": "http://shop.test/cart"}))
        .await;
    assert_eq!(started["code"], 0, "{started}");
    let start_url = started["response"]["start_url"].as_str().unwrap();
    let hand_off = app
        .http
        .get(start_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (pay_url, fields) = form(&hand_off);
    let window = post_form(app, &pay_url, &fields).await;
    assert!(window.contains("id=\"pay\""), "{window}");
    let (submit, mut entered) = form(&window);
    let submit = format!("{}{}", pay_url.split("/pay/").next().unwrap(), submit);
    for (k, v) in fill {
        entered.push((k.to_string(), v.to_string()));
    }
    let back = post_form(app, &submit, &entered).await;
    let (ret_url, result) = form(&back);
    let answer = post_form(app, &ret_url, &result).await;
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

#[tokio::test]
async fn a_card_payment_through_the_window_is_paid_and_verifiable_over_rest() {
    let app = spawn_app().await;
    let rsp = request_pay(
        &app,
        json!({"pg": "kcp", "pay_method": "card", "merchant_uid": "web-1", "name": "포인트 1,000", "amount": 1000, "buyer_name": "홍길동"}),
        &[("card_no", "4111111111111111"), ("card_expiry", "3112"), ("action", "pay")],
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
    let vbank = request_pay(
        &app,
        json!({"pay_method": "vbank", "merchant_uid": "web-4", "amount": 5000}),
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    assert_eq!(vbank["status"], "ready", "{vbank}");
    assert!(vbank["vbank_num"].as_str().unwrap().starts_with('T'));
    assert!(vbank["vbank_date"].as_i64().unwrap() > 0);
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
