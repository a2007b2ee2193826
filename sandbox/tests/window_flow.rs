//! The standard payment window end to end over real HTTP, the way a browser drives it: trade
//! registration (both endpoints), the window page, its form submitted and the auto-submitting
//! post back delivered to a real `Ret_URL` receiver, approval per method, replay refusal, cancel,
//! virtual-account deposits with `TX00` notifications, escrow `STE1`, and the batch window.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{batch_pay, merchant, spawn, Harness, GROUP, SITE};
use kcp_sandbox::{paths, test_cards, TransactionState};
use serde_json::{json, Value};

type Form = Vec<(String, String)>;
/// A window case: method, amount, element ids expected, extra window fields.
type Case = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The action and named inputs of the first form of a page.
fn form(html: &str) -> (String, Form) {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!(" {name}=\"");
        let start = tag.find(&key)? + key.len();
        Some(unescape(&tag[start..start + tag[start..].find('"')?]))
    };
    let start = html.find("<form").expect("a form");
    let tag = &html[start..start + html[start..].find('>').unwrap()];
    let action = attr(tag, "action").unwrap_or_default();
    let mut fields = Vec::new();
    let mut rest = &html[start..];
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..i + rest[i..].find('>').unwrap()];
        if let Some(name) = attr(tag, "name") {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[i + 6..];
    }
    (action, fields)
}

fn get<'a>(fields: &'a [(String, String)], k: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// A merchant endpoint recording every form posted to it and answering with `reply(n)`.
struct Receiver {
    url: String,
    forms: Arc<Mutex<Vec<Form>>>,
}

async fn receiver(fail_first: usize) -> Receiver {
    let forms: Arc<Mutex<Vec<Form>>> = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let (f, s) = (forms.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |body: axum::body::Bytes| {
            let n = s.fetch_add(1, Ordering::SeqCst);
            f.lock()
                .unwrap()
                .push(form_urlencoded::parse(&body).into_owned().collect());
            async move {
                if n < fail_first {
                    "<html><body>busy</body></html>".to_string()
                } else {
                    "<html><body><form><input type=\"hidden\" name=\"result\" value=\"0000\"></form></body></html>".to_string()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, forms }
}

async fn register_with(h: &Harness, body: Value) -> Value {
    let mut req = json!({"site_cd": SITE, "kcp_cert_info": merchant(SITE).cert_info, "good_name": "테스트 상품",
                         "Ret_URL": "http://shop.test/return", "escw_used": "N", "user_agent": "Mozilla/5.0"});
    common::merge(&mut req, body);
    h.post(paths::TRADE_REGISTER, &req).await
}

async fn register(h: &Harness, order: &str, amount: &str, method: &str, ret_url: &str) -> Value {
    let reg = register_with(
        h,
        json!({"ordr_idxx": order, "good_mny": amount, "pay_method": method, "Ret_URL": ret_url}),
    )
    .await;
    assert_eq!(reg["Code"], "0000", "{reg}");
    reg
}

/// The spec §2.2 fields a merchant page posts to PayUrl, plus `extra`.
fn window_fields(
    reg: &Value,
    order: &str,
    amount: &str,
    method: &str,
    ret_url: &str,
    extra: &[(&str, &str)],
) -> Form {
    let action = match method {
        "CARD" => "card",
        "BANK" => "acnt",
        "VCNT" => "vcnt",
        "MOBX" => "mobx",
        "TPNT" => "tpnt",
        "GIFT" => "sccl",
        _ => "batch",
    };
    let mut f: Vec<(&str, &str)> = vec![
        ("approval_key", reg["approvalKey"].as_str().unwrap()),
        ("traceNo", reg["traceNo"].as_str().unwrap()),
        ("PayUrl", reg["PayUrl"].as_str().unwrap()),
        ("site_cd", SITE),
        ("ordr_idxx", order),
        ("good_name", "테스트 상품"),
        ("good_mny", amount),
        ("req_tx", "pay"),
        ("currency", "410"),
        ("escw_used", "N"),
        ("pay_method", method),
        ("ActionResult", action),
        ("Ret_URL", ret_url),
        ("buyr_name", "홍길동"),
        ("buyr_tel1", "02-0000-0000"),
        ("buyr_tel2", "010-0000-0000"),
        ("buyr_mail", "buyer@example.com"),
        ("encoding_trans", "UTF-8"),
        ("param_opt_1", "imp_123"),
    ];
    if matches!(method, "MOBX" | "TPNT" | "GIFT") {
        f.push(("shop_user_id", "buyer-1")); // required for these windows (spec §2.2)
    }
    f.extend_from_slice(extra);
    f.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

/// Opens the window, fills it, submits it and lets the post back reach `Ret_URL` like a browser
/// would; returns the window page and the fields `Ret_URL` received.
async fn browse(
    h: &Harness,
    window: Form,
    entered: &[(&str, &str)],
    ret: &Receiver,
) -> (String, Form) {
    let pay_url = get(&window, "PayUrl").unwrap().to_string();
    let page = h.post_form(&pay_url, &window).await;
    let (action, mut fields) = form(&page);
    assert_eq!(action, "/pay/submit", "{page}");
    fields.extend(entered.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let back = h.post_form(&h.url(&action), &fields).await;
    assert!(
        back.contains(".submit()"),
        "the post back submits itself: {back}"
    );
    let (ret_url, result) = form(&back);
    assert_eq!(ret_url, get(&window, "Ret_URL").unwrap());
    let before = ret.forms.lock().unwrap().len();
    h.post_form(&ret_url, &result).await;
    let received = ret.forms.lock().unwrap()[before].clone();
    assert_eq!(received, result);
    (page, received)
}

/// Registration, window and post back in one go for `method`.
async fn window_result(
    h: &Harness,
    ret: &Receiver,
    order: &str,
    amount: &str,
    method: &str,
    extra: &[(&str, &str)],
    entered: &[(&str, &str)],
) -> Form {
    let ret_url = format!("{}/return", ret.url);
    let reg = register(h, order, amount, method, &ret_url).await;
    let (_, back) = browse(
        h,
        window_fields(&reg, order, amount, method, &ret_url, extra),
        entered,
        ret,
    )
    .await;
    back
}

fn approval(back: &Form, ordr_mony: &str, pay_type: &str) -> Value {
    json!({"tran_cd": get(back, "tran_cd").unwrap(), "site_cd": SITE, "kcp_cert_info": merchant(SITE).cert_info,
           "enc_data": get(back, "enc_data").unwrap_or(""), "enc_info": get(back, "enc_info").unwrap_or(""),
           "ordr_mony": ordr_mony, "pay_type": pay_type, "ordr_no": get(back, "ordr_idxx").unwrap()})
}

#[tokio::test]
async fn both_registration_endpoints_answer_a_key_a_trace_number_and_this_sandboxs_window_url() {
    let h = spawn().await;
    let reg = register(&h, "R1", "1000", "CARD", "http://shop.test/return").await;
    assert_eq!(reg["Message"], "정상처리");
    assert_eq!(reg["approvalKey"].as_str().unwrap().len(), 44);
    let trace = reg["traceNo"].as_str().unwrap();
    assert!(trace.starts_with(SITE) && trace.len() == 16, "{trace}");
    assert!(trace[5..]
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert_eq!(
        reg["PayUrl"],
        h.url(paths::PAY_WINDOW),
        "PayUrl follows the Host header"
    );
    assert_eq!(reg["paymentMethod"], "CARD");
    assert_eq!(reg["request_URI"], paths::PAY_WINDOW);

    // The older mobile endpoint: no certificate, JSON or form.
    let form_reg: Value = h
        .client
        .post(h.url(paths::MOBILE_TRADE_REGISTER))
        .form(&[
            ("site_cd", SITE),
            ("ordr_idxx", "R2"),
            ("good_mny", "1000"),
            ("good_name", "상품"),
            ("pay_method", "BANK"),
            ("Ret_URL", "http://shop.test/r"),
            ("escw_used", "N"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(form_reg["Code"], "0000", "{form_reg}");
    let json_reg = h
        .post(
            paths::MOBILE_TRADE_REGISTER,
            &json!({"site_cd": SITE, "ordr_idxx": "R3", "good_mny": "1000",
              "good_name": "상품", "pay_method": "VCNT", "Ret_URL": "http://shop.test/r"}),
        )
        .await;
    assert_eq!(json_reg["Code"], "0000", "{json_reg}");

    // 0001 missing, 0002 bad, 0003 authentication.
    let code = |v: Value| v["Code"].as_str().unwrap().to_string();
    assert_eq!(
        code(register_with(&h, json!({"ordr_idxx": "R4", "good_mny": "1000"})).await),
        "0001"
    );
    assert_eq!(
        code(
            h.post(
                paths::TRADE_REGISTER,
                &json!({"site_cd": SITE, "ordr_idxx": "R4", "good_mny": "1000", "good_name": "x",
             "pay_method": "CARD", "Ret_URL": "http://shop.test/r"})
            )
            .await
        ),
        "0001",
        "the newer endpoint needs kcp_cert_info"
    );
    for bad in [
        json!({"ordr_idxx": "R-4", "good_mny": "1000", "pay_method": "CARD"}),
        json!({"ordr_idxx": "R4", "good_mny": "1,000", "pay_method": "CARD"}),
        json!({"ordr_idxx": "R4", "good_mny": "0", "pay_method": "CARD"}),
        json!({"ordr_idxx": "R4", "good_mny": "1000", "pay_method": "PAYCO"}),
        json!({"ordr_idxx": "R4", "good_mny": "1000", "pay_method": "CARD", "escw_used": "X"}),
        json!({"ordr_idxx": "R4", "good_mny": "1000", "pay_method": "CARD", "good_name": "가".repeat(34)}),
        json!({"ordr_idxx": "R4", "good_mny": "1000", "pay_method": "CARD", "Ret_URL": "/relative"}),
    ] {
        assert_eq!(code(register_with(&h, bad.clone()).await), "0002", "{bad}");
    }
    let foreign = register_with(
        &h,
        json!({"site_cd": "A52Q7", "ordr_idxx": "R5", "good_mny": "1000", "pay_method": "CARD"}),
    )
    .await;
    assert_eq!(code(foreign), "0003", "T0000's certificate is not A52Q7's");
    // A billing-key window may register 0 won.
    assert_eq!(
        code(
            register_with(
                &h,
                json!({"ordr_idxx": "R6", "good_mny": "0", "pay_method": "AUTH"})
            )
            .await
        ),
        "0000"
    );
}

#[tokio::test]
async fn the_window_page_has_the_driver_ids_for_each_method_and_refuses_a_mismatch() {
    let h = spawn().await;
    let ret = "http://shop.test/return";
    let cases: [Case; 7] = [
        (
            "CARD",
            "60000",
            &["card_no", "card_expiry", "quota"],
            &[("quotaopt", "3")],
        ),
        ("BANK", "1000", &["bank"], &[]),
        ("VCNT", "1000", &["bank"], &[]),
        ("MOBX", "1000", &["carrier", "mobile_no"], &[]),
        ("TPNT", "1000", &["pin"], &[("van_code", "SCSK")]),
        ("GIFT", "1000", &["pin"], &[("van_code", "SCCL")]),
        (
            "AUTH",
            "0",
            &["card_no", "card_expiry"],
            &[("kcp_group_id", GROUP)],
        ),
    ];
    for (i, (method, amount, ids, extra)) in cases.into_iter().enumerate() {
        let order = format!("P{i}");
        let reg = register(&h, &order, amount, method, ret).await;
        let page = h
            .post_form(
                &h.url(paths::PAY_WINDOW),
                &window_fields(&reg, &order, amount, method, ret, extra),
            )
            .await;
        for id in ids.iter().chain(&["pay", "cancel"]) {
            assert!(
                page.contains(&format!("id=\"{id}\"")),
                "{method}: #{id} missing in {page}"
            );
        }
        assert!(page.contains("charset=\"utf-8\""));
        assert!(!page.contains("id=\"error\""), "{page}");
        if method == "CARD" {
            assert!(
                page.contains("value=\"03\"") && !page.contains("value=\"04\""),
                "quotaopt 3 → up to 3 months"
            );
        }
    }
    // Installments are not offered under 50,000 won, whatever quotaopt says.
    let reg = register(&h, "Q1", "49000", "CARD", ret).await;
    let page = h
        .post_form(
            &h.url(paths::PAY_WINDOW),
            &window_fields(&reg, "Q1", "49000", "CARD", ret, &[("quotaopt", "12")]),
        )
        .await;
    assert!(
        page.contains("id=\"quota\"") && !page.contains("value=\"02\""),
        "{page}"
    );
    // Order number or trace number other than registered, or no amount → an error page.
    let reg = register(&h, "Q2", "1000", "CARD", ret).await;
    for (k, v) in [
        ("good_mny", "1,000"),
        ("ordr_idxx", "Q3"),
        ("traceNo", "T0000XXXXXXXXXXX"),
        ("approval_key", "nope="),
    ] {
        let mut fields = window_fields(&reg, "Q2", "1000", "CARD", ret, &[]);
        fields.iter_mut().find(|(n, _)| n == k).unwrap().1 = v.into();
        let page = h.post_form(&h.url(paths::PAY_WINDOW), &fields).await;
        assert!(
            page.contains("id=\"error\"") && !page.contains("id=\"pay\""),
            "{k}: {page}"
        );
    }
}

/// spec §2.2: `quotaopt` runs from 0 to 12. Anything else gets KCP's error page instead of being
/// taken as 12, so a merchant sending 24 or 36 months finds out in the sandbox.
#[tokio::test]
async fn a_window_posted_a_quotaopt_above_12_is_refused() {
    let h = spawn().await;
    let ret = "http://shop.test/return";
    for (i, quotaopt) in ["13", "24", "36", "-1", "+3", "x", "3개월"]
        .into_iter()
        .enumerate()
    {
        let order = format!("QO{i}");
        let reg = register(&h, &order, "60000", "CARD", ret).await;
        let page = h
            .post_form(
                &h.url(paths::PAY_WINDOW),
                &window_fields(
                    &reg,
                    &order,
                    "60000",
                    "CARD",
                    ret,
                    &[("quotaopt", quotaopt)],
                ),
            )
            .await;
        assert!(
            page.contains("id=\"error\"")
                && page.contains("quotaopt")
                && !page.contains("id=\"pay\""),
            "quotaopt {quotaopt}: {page}"
        );
    }
    for (order, quotaopt, last) in [("QA", "12", "value=\"12\""), ("QB", "0", "value=\"00\"")] {
        let reg = register(&h, order, "60000", "CARD", ret).await;
        let page = h
            .post_form(
                &h.url(paths::PAY_WINDOW),
                &window_fields(&reg, order, "60000", "CARD", ret, &[("quotaopt", quotaopt)]),
            )
            .await;
        assert!(
            page.contains("id=\"pay\"") && page.contains(last),
            "{quotaopt}: {page}"
        );
    }
}

#[tokio::test]
async fn a_card_window_posts_spec_fields_to_ret_url_and_is_approved_once() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let back = window_result(
        &h,
        &ret,
        "C1",
        "60000",
        "CARD",
        &[("quotaopt", "6"), ("param_opt_2", "p2")],
        &[
            ("card_no", "4111-1111-1111-1111"),
            ("card_expiry", "3112"),
            ("quota", "03"),
            ("action", "pay"),
        ],
    )
    .await;
    for (k, v) in [
        ("req_tx", "pay"),
        ("res_cd", "0000"),
        ("res_msg", "정상처리"),
        ("site_cd", SITE),
        ("tran_cd", "00100000"),
        ("ordr_idxx", "C1"),
        ("good_name", "테스트 상품"),
        ("good_mny", "60000"),
        ("buyr_name", "홍길동"),
        ("buyr_tel1", "02-0000-0000"),
        ("buyr_tel2", "010-0000-0000"),
        ("buyr_mail", "buyer@example.com"),
        ("use_pay_method", "100000000000"),
        ("param_opt_1", "imp_123"),
        ("param_opt_2", "p2"),
        ("param_opt_3", ""),
        ("cash_yn", "N"),
        ("escw_used", "N"),
    ] {
        assert_eq!(get(&back, k), Some(v), "{k} in {back:?}");
    }
    // spec §2.3 lists no `ordr_chk`: only the PC flow (§1.1) fills it.
    assert_eq!(get(&back, "ordr_chk"), None, "{back:?}");
    let enc_data = get(&back, "enc_data").unwrap();
    assert!(
        !enc_data.is_empty()
            && enc_data
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    );
    assert!(!enc_data.contains("4111") && !get(&back, "enc_info").unwrap().is_empty());

    let mismatch = h
        .post(paths::ENC_PAYMENT, &approval(&back, "59000", "PACA"))
        .await;
    assert_eq!(mismatch["res_cd"], "8059", "{mismatch}");
    assert_eq!(mismatch["res_msg"], "결제금액 불일치");
    let wrong_type = h
        .post(paths::ENC_PAYMENT, &approval(&back, "60000", "PABK"))
        .await;
    assert_eq!(wrong_type["res_cd"], "8104");
    let mut wrong_order = approval(&back, "60000", "PACA");
    wrong_order["ordr_no"] = json!("C2");
    assert_eq!(
        h.post(paths::ENC_PAYMENT, &wrong_order).await["res_cd"],
        "9532"
    );
    let mut no_tran = approval(&back, "60000", "PACA");
    no_tran.as_object_mut().unwrap().remove("tran_cd");
    assert_eq!(h.post(paths::ENC_PAYMENT, &no_tran).await["res_cd"], "9562");

    let held = h.sandbox.windows_held();
    assert_eq!((held.results, held.card_numbers), (1, 1), "until redeemed");
    let ok = h
        .post(paths::ENC_PAYMENT, &approval(&back, "60000", "PACA"))
        .await;
    assert_eq!(ok["res_cd"], "0000", "{ok}");
    let held = h.sandbox.windows_held();
    assert_eq!(
        (held.results, held.card_numbers),
        (1, 0),
        "the card number goes once the result is redeemed; the result stays to refuse a replay"
    );
    for k in [
        "res_en_msg",
        "tno",
        "app_time",
        "app_no",
        "trace_no",
        "card_cd",
        "card_name",
        "van_cd",
        "res_vat_mny",
    ] {
        assert!(ok[k].as_str().is_some_and(|v| !v.is_empty()), "{k} in {ok}");
    }
    assert_eq!(
        (
            ok["amount"].as_str(),
            ok["pay_method"].as_str(),
            ok["quota"].as_str()
        ),
        (Some("60000"), Some("PACA"), Some("03"))
    );
    assert_eq!(ok["card_no"], "411111******1111");
    assert_eq!(ok["order_no"], "C1");
    assert_eq!(ok["escw_yn"], "N");

    let replay = h
        .post(paths::ENC_PAYMENT, &approval(&back, "60000", "PACA"))
        .await;
    assert_eq!(replay["res_cd"], "9530", "{replay}");
    let mut unknown = approval(&back, "60000", "PACA");
    unknown["enc_data"] = json!("made.up");
    assert_eq!(h.post(paths::ENC_PAYMENT, &unknown).await["res_cd"], "9531");

    let ledger = h.sandbox.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].trace_no, ok["trace_no"].as_str().unwrap());
    let tno = ok["tno"].as_str().unwrap();
    assert_eq!(h.inquire_tno(tno).await["stat_ca_cd"], "STSR");
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "0000");
    assert_eq!(h.inquire_tno(tno).await["stat_ca_cd"], "STSC");
}

/// `enc_data` and `enc_info` are one opaque pair (spec §2.3): at KCP a result cannot be read with
/// another window's `enc_info`. A gateway that relays the wrong one (another tab's, a truncated
/// one, the two swapped) fails every window payment in production, so it fails here too.
#[tokio::test]
async fn a_window_result_is_approved_only_with_its_own_enc_info() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let card = [
        ("card_no", test_cards::SHINHAN_CREDIT),
        ("card_expiry", "3112"),
        ("action", "pay"),
    ];
    let a = window_result(&h, &ret, "PAIR1", "1000", "CARD", &[], &card).await;
    let b = window_result(&h, &ret, "PAIR2", "2000", "CARD", &[], &card).await;

    let mut crossed = approval(&a, "1000", "PACA");
    crossed["enc_info"] = json!(get(&b, "enc_info").unwrap());
    let refused = h.post(paths::ENC_PAYMENT, &crossed).await;
    assert_eq!(refused["res_cd"], "9533", "{refused}");
    let mut swapped = approval(&a, "1000", "PACA");
    swapped["enc_data"] = json!(get(&a, "enc_info").unwrap());
    swapped["enc_info"] = json!(get(&a, "enc_data").unwrap());
    assert_eq!(h.post(paths::ENC_PAYMENT, &swapped).await["res_cd"], "9531");
    assert!(h.sandbox.ledger().is_empty(), "nothing was approved");

    // Nothing was redeemed: each result still approves with its own pair.
    let ok = h
        .post(paths::ENC_PAYMENT, &approval(&a, "1000", "PACA"))
        .await;
    assert_eq!(ok["res_cd"], "0000", "{ok}");
    let ok = h
        .post(paths::ENC_PAYMENT, &approval(&b, "2000", "PACA"))
        .await;
    assert_eq!(ok["res_cd"], "0000", "{ok}");
    assert_eq!(h.sandbox.ledger().len(), 2);
}

/// Trades anyone can register through a merchant's public checkout, and results a gateway never
/// redeemed (with the card number typed in), are not kept for good.
#[tokio::test]
async fn trades_and_window_results_older_than_an_hour_are_forgotten_with_their_card_numbers() {
    let h = spawn().await;
    let ret = receiver(0).await;
    window_result(
        &h,
        &ret,
        "OLD1",
        "1000",
        "CARD",
        &[],
        &[
            ("card_no", "4111111111111111"),
            ("card_expiry", "3112"),
            ("quota", "00"),
            ("action", "pay"),
        ],
    )
    .await;
    let held = h.sandbox.windows_held();
    assert_eq!((held.trades, held.results, held.card_numbers), (1, 1, 1));

    h.clock.advance(chrono::TimeDelta::minutes(61));
    register(&h, "NEW1", "1000", "CARD", &ret.url).await;
    let held = h.sandbox.windows_held();
    assert_eq!(
        (held.trades, held.results, held.card_numbers),
        (1, 0, 0),
        "only the new trade"
    );
}

#[tokio::test]
async fn an_amount_edited_on_the_hand_off_form_is_what_the_window_charges_and_approval_refuses_it()
{
    let h = spawn().await;
    let ret = receiver(0).await;
    let ret_url = format!("{}/return", ret.url);
    let reg = register(&h, "T1", "50000", "CARD", &ret_url).await;
    // The buyer's browser posts 500 where the merchant registered 50,000.
    let (page, back) = browse(
        &h,
        window_fields(&reg, "T1", "500", "CARD", &ret_url, &[]),
        &[
            ("card_no", "4111111111111111"),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
        &ret,
    )
    .await;
    assert!(page.contains("500원"), "{page}");
    assert_eq!(get(&back, "good_mny"), Some("500"));
    // No `ordr_chk` (spec §2.3): KCP's own `ordr_mony` check is what stops it.
    assert_eq!(get(&back, "ordr_chk"), None);
    let refused = h
        .post(paths::ENC_PAYMENT, &approval(&back, "50000", "PACA"))
        .await;
    assert_eq!(refused["res_cd"], "8059", "{refused}");
    assert!(h.sandbox.ledger().is_empty(), "nothing was approved");
}

#[tokio::test]
async fn buyer_cancel_declines_and_a_closed_window_come_back_without_enc_data() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let back = window_result(&h, &ret, "D1", "1000", "CARD", &[], &[("action", "cancel")]).await;
    assert_eq!(get(&back, "res_cd"), Some("3001"));
    assert_eq!(get(&back, "res_msg"), Some("사용자가 취소하였습니다"));
    assert_eq!(get(&back, "enc_data"), None);
    for (order, card, code) in [
        ("D2", test_cards::KB_KOOKMIN, "8102"),
        ("D3", test_cards::MONTHLY_LIMIT_EXCEEDED, "8188"),
        ("D4", test_cards::INSUFFICIENT_LIMIT, "8187"),
        ("D5", "4111111111111112", "8108"),
    ] {
        let back = window_result(
            &h,
            &ret,
            order,
            "1000",
            "CARD",
            &[],
            &[
                ("card_no", card),
                ("card_expiry", "3112"),
                ("action", "pay"),
            ],
        )
        .await;
        assert_eq!(get(&back, "res_cd"), Some(code), "{card}");
        assert_eq!(get(&back, "enc_data"), None);
    }
    // An installment the window did not offer (quotaopt absent) is refused in the window.
    let back = window_result(
        &h,
        &ret,
        "D6",
        "60000",
        "CARD",
        &[],
        &[
            ("card_no", test_cards::SHINHAN_CREDIT),
            ("card_expiry", "3112"),
            ("quota", "03"),
            ("action", "pay"),
        ],
    )
    .await;
    assert_eq!(get(&back, "res_cd"), Some("8106"));

    // The window of a finished registration does not open again.
    let ret_url = format!("{}/return", ret.url);
    let reg = register(&h, "D7", "1000", "CARD", &ret_url).await;
    let fields = window_fields(&reg, "D7", "1000", "CARD", &ret_url, &[]);
    browse(&h, fields.clone(), &[("action", "cancel")], &ret).await;
    let again = h.post_form(&h.url(paths::PAY_WINDOW), &fields).await;
    assert!(again.contains("id=\"error\""), "{again}");
    assert!(h.sandbox.ledger().is_empty());
}

#[tokio::test]
async fn bank_phone_point_and_gift_windows_answer_their_own_fields() {
    let h = spawn().await;
    let ret = receiver(0).await;

    let back = window_result(
        &h,
        &ret,
        "M1",
        "3000",
        "BANK",
        &[],
        &[("bank", "BK20"), ("action", "pay")],
    )
    .await;
    assert_eq!(get(&back, "use_pay_method"), Some("010000000000"));
    let bank = h
        .post(paths::ENC_PAYMENT, &approval(&back, "3000", "PABK"))
        .await;
    assert_eq!(
        (bank["res_cd"].as_str(), bank["pay_method"].as_str()),
        (Some("0000"), Some("PABK")),
        "{bank}"
    );
    assert_eq!(
        (
            bank["bank_code"].as_str(),
            bank["bank_name"].as_str(),
            bank["bk_mny"].as_str()
        ),
        (Some("BK20"), Some("우리은행"), Some("3000"))
    );
    assert_eq!(bank["app_time"].as_str().unwrap().len(), 14);
    let inquiry = h.inquire_as("PABK", bank["tno"].as_str().unwrap()).await;
    assert_eq!(
        (
            inquiry["stat_bk_cd"].as_str(),
            inquiry["bk_rem_mny"].as_str()
        ),
        (Some("STSR"), Some("3000")),
        "{inquiry}"
    );

    let back = window_result(
        &h,
        &ret,
        "M2",
        "4000",
        "MOBX",
        &[],
        &[
            ("carrier", "KTF"),
            ("mobile_no", "010-1234-5678"),
            ("action", "pay"),
        ],
    )
    .await;
    assert_eq!(get(&back, "use_pay_method"), Some("000010000000"));
    let phone = h
        .post(paths::ENC_PAYMENT, &approval(&back, "4000", "PAMC"))
        .await;
    assert_eq!(
        (
            phone["commid"].as_str(),
            phone["mobile_no"].as_str(),
            phone["pay_method"].as_str()
        ),
        (Some("KTF"), Some("01012345678"), Some("PAMC")),
        "{phone}"
    );
    let bad_phone = window_result(
        &h,
        &ret,
        "M3",
        "4000",
        "MOBX",
        &[],
        &[("mobile_no", "12345"), ("action", "pay")],
    )
    .await;
    assert_eq!(get(&bad_phone, "res_cd"), Some("9503"));

    let back = window_result(
        &h,
        &ret,
        "M4",
        "5000",
        "TPNT",
        &[("van_code", "SCSK")],
        &[("pin", "1234567890123456"), ("action", "pay")],
    )
    .await;
    assert_eq!(get(&back, "use_pay_method"), Some("000100000000"));
    let point = h
        .post(paths::ENC_PAYMENT, &approval(&back, "5000", "PAPT"))
        .await;
    for (k, v) in [
        ("pnt_issue", "SCSK"),
        ("pnt_amount", "5000"),
        ("use_pnt", "5000"),
        ("add_pnt", "0"),
        ("rsv_pnt", "995000"),
        ("pay_method", "PAPT"),
    ] {
        assert_eq!(point[k], v, "{k} in {point}");
    }
    assert_eq!(point["pnt_app_no"].as_str().unwrap().len(), 10);

    let back = window_result(
        &h,
        &ret,
        "M5",
        "10000",
        "GIFT",
        &[("van_code", "SCHM")],
        &[("pin", "1234567890123456"), ("action", "pay")],
    )
    .await;
    assert_eq!(get(&back, "use_pay_method"), Some("000000001000"));
    let gift = h
        .post(paths::ENC_PAYMENT, &approval(&back, "10000", "PATK"))
        .await;
    assert_eq!(
        (gift["tk_van_code"].as_str(), gift["pay_method"].as_str()),
        (Some("SCHM"), Some("PATK")),
        "{gift}"
    );
    assert_eq!(gift["tk_app_time"].as_str().unwrap().len(), 14);
    assert!(!gift["tk_app_no"].as_str().unwrap().is_empty());
    let empty_pin = window_result(&h, &ret, "M6", "10000", "GIFT", &[], &[("action", "pay")]).await;
    assert_eq!(get(&empty_pin, "res_cd"), Some("9502"));

    for answer in [&bank, &phone, &point, &gift] {
        assert_eq!(answer["escw_yn"], "N");
        assert!(answer["trace_no"].as_str().unwrap().starts_with(SITE));
    }
    // Cancels work on window payments like on cards.
    let tno = phone["tno"].as_str().unwrap();
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "0000");
    assert_eq!(h.inquire_as("PAMC", tno).await["stat_hp_cd"], "STSC");
    assert_eq!(h.sandbox.ledger().len(), 4);
}

/// A point payment takes no partial cancel (`STPC`, `8404`), whether the hub's Benepia payment or
/// the window's (`TPNT`, `PAPT` too): spec §2.8 and seed 003 give points STSC and STRA only, and a
/// gateway whose guard against it regressed must fail here. The window's point payment is cancelled
/// whole (`STSC`); it is no Benepia trade STRA could re-approve (`8405`).
#[tokio::test]
async fn a_window_point_payment_takes_no_partial_cancel_only_a_full_one() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let back = window_result(
        &h,
        &ret,
        "PTW1",
        "5000",
        "TPNT",
        &[("van_code", "SCSK")],
        &[("pin", "1234567890123456"), ("action", "pay")],
    )
    .await;
    let point = h
        .post(paths::ENC_PAYMENT, &approval(&back, "5000", "PAPT"))
        .await;
    assert_eq!(point["res_cd"], "0000", "{point}");
    let tno = point["tno"].as_str().unwrap();

    let partial = h.partial_cancel(tno, "2000", "5000").await;
    assert_eq!(partial["res_cd"], "8404", "{partial}");
    let held = entry(&h, tno);
    assert_eq!(
        (held.state, held.balance, held.cancels.len()),
        (TransactionState::Approved, 5000, 0)
    );
    let reapproved = h.reapprove(tno, "3000", "PTW2").await;
    assert_eq!(reapproved["res_cd"], "8405", "{reapproved}");

    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "0000");
    assert_eq!(entry(&h, tno).state, TransactionState::Cancelled);
}

#[tokio::test]
async fn the_batch_window_issues_a_key_the_batch_payment_accepts() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let back = window_result(
        &h,
        &ret,
        "B1",
        "0",
        "AUTH",
        &[("kcp_group_id", GROUP), ("batch_cardno_return_yn", "Y")],
        &[
            ("card_no", test_cards::SAMSUNG_CHECK),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
    )
    .await;
    assert_eq!(get(&back, "res_cd"), Some("0000"));
    assert_eq!(get(&back, "tran_cd"), Some("00300001"));
    assert_eq!(get(&back, "card_mask_no"), Some("555555******4444"));
    // A payment tran_cd on a batch result is refused, without using it up.
    let as_payment = h.post(paths::ENC_PAYMENT, &json!({"tran_cd": "00100000", "site_cd": SITE, "kcp_cert_info": merchant(SITE).cert_info,
        "enc_data": get(&back, "enc_data"), "enc_info": get(&back, "enc_info"), "ordr_mony": "0", "pay_type": "PACA"})).await;
    assert_eq!(as_payment["res_cd"], "8103", "{as_payment}");
    let body = json!({"tran_cd": "00300001", "site_cd": SITE, "kcp_cert_info": merchant(SITE).cert_info,
        "enc_data": get(&back, "enc_data"), "enc_info": get(&back, "enc_info")});
    let issued = h.post(paths::ENC_PAYMENT, &body).await;
    assert_eq!(issued["res_cd"], "0000", "{issued}");
    assert_eq!(
        (
            issued["card_cd"].as_str(),
            issued["card_bin_type_02"].as_str()
        ),
        (Some("CCSS"), Some("1"))
    );
    let key = issued["batch_key"].as_str().unwrap();
    assert_eq!(key.len(), 16);
    // Exactly spec §2.5's fields: no tno, and no masked card number (the Ret_URL post has it).
    let mut names: Vec<&str> = issued
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "batch_key",
            "card_bank_cd",
            "card_bin_type_01",
            "card_bin_type_02",
            "card_cd",
            "card_name",
            "res_cd",
            "res_msg"
        ],
        "{issued}"
    );
    assert_eq!(
        h.sandbox.batch_keys()[0].group_id,
        GROUP,
        "the window's group"
    );
    assert_eq!(h.post(paths::ENC_PAYMENT, &body).await["res_cd"], "9530");
    let paid = h.pay(&batch_pay(SITE, key, "B2", "9900")).await;
    assert_eq!(paid["res_cd"], "0000", "{paid}");
    assert_eq!(paid["card_no"], "555555******4444");
}

/// A batch window names the group its key is issued in (`kcp_group_id`, spec §2.2), a group of
/// the site as the hub's batch calls require (`site_cd` + 7 digits): without one, with the PC
/// window's spelling, a malformed one or another site's, the window is KCP's error page and no
/// key is issued, never a key in a group the sandbox made up.
#[tokio::test]
async fn a_batch_window_without_its_group_id_or_with_another_sites_gets_the_error_page() {
    let h = spawn().await;
    let ret = "http://shop.test/return";
    let cases: [&[(&str, &str)]; 6] = [
        &[],
        &[("kcp_group_id", "")],
        &[("kcpgroup_id", GROUP)],
        &[("kcp_group_id", "T0000100000")],
        &[("kcp_group_id", "T0000100000A")],
        &[("kcp_group_id", "A52Q71000489")],
    ];
    for (i, extra) in cases.into_iter().enumerate() {
        let order = format!("G{i}");
        let reg = register(&h, &order, "0", "AUTH", ret).await;
        let page = h
            .post_form(
                &h.url(paths::PAY_WINDOW),
                &window_fields(&reg, &order, "0", "AUTH", ret, extra),
            )
            .await;
        assert!(page.contains("id=\"error\""), "{extra:?}: {page}");
        assert!(page.contains("kcp_group_id"), "names the field: {page}");
        assert!(!page.contains("id=\"pay\""), "{extra:?}: {page}");
    }
    assert!(h.sandbox.batch_keys().is_empty());
}

/// A deadline that has passed by the approval (it issues the account) is refused as the
/// window-less issuance refuses it (`8505`): an account already due could never be paid.
#[tokio::test]
async fn a_window_whose_ipgm_date_has_passed_issues_no_account() {
    let h = spawn().await;
    let ret = receiver(0).await;
    // Now is KST 2026-03-10 12:00.
    for (order, ipgm_date) in [
        ("VP1", "20260309"),
        ("VP2", "20260310115959"),
        ("VP3", "20261399"),
    ] {
        let back = window_result(
            &h,
            &ret,
            order,
            "7000",
            "VCNT",
            &[("ipgm_date", ipgm_date)],
            &[("bank", "BK07"), ("action", "pay")],
        )
        .await;
        let refused = h
            .post(paths::ENC_PAYMENT, &approval(&back, "7000", "PAVC"))
            .await;
        assert_eq!(refused["res_cd"], "8505", "{ipgm_date}: {refused}");
        assert!(refused.get("account").is_none(), "{refused}");
    }
    assert!(h.sandbox.ledger().is_empty(), "no account was issued");
    // Still ahead, the same day: issued.
    let back = window_result(
        &h,
        &ret,
        "VP4",
        "7000",
        "VCNT",
        &[("ipgm_date", "20260310")],
        &[("bank", "BK07"), ("action", "pay")],
    )
    .await;
    let issued = h
        .post(paths::ENC_PAYMENT, &approval(&back, "7000", "PAVC"))
        .await;
    assert_eq!(issued["res_cd"], "0000", "{issued}");
    assert_eq!(issued["va_date"], "20260310235959");
}

#[tokio::test]
async fn a_virtual_account_is_issued_deposited_notified_until_acknowledged_and_then_cancellable() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let back = window_result(
        &h,
        &ret,
        "V1",
        "7000",
        "VCNT",
        &[("ipgm_date", "20260315")],
        &[("bank", "BK07"), ("action", "pay")],
    )
    .await;
    assert_eq!(get(&back, "use_pay_method"), Some("001000000000"));
    let vbank = h
        .post(paths::ENC_PAYMENT, &approval(&back, "7000", "PAVC"))
        .await;
    for (k, v) in [
        ("res_cd", "0000"),
        ("pay_method", "PAVC"),
        ("amount", "7000"),
        ("bankcode", "BK07"),
        ("bankname", "수협"),
        ("depositor", "한국사이버결제"),
        ("va_name", "홍길동"),
        ("va_date", "20260315235959"),
        ("escw_yn", "N"),
    ] {
        assert_eq!(vbank[k], v, "{k} in {vbank}");
    }
    let account = vbank["account"].as_str().unwrap();
    assert!(account.starts_with('T'));
    let tno = vbank["tno"].as_str().unwrap();
    assert_eq!(h.sandbox.ledger()[0].state, TransactionState::Issued);
    assert_eq!(h.inquire_as("PAVC", tno).await["stat_va_cd"], "STIS");
    // Unpaid: nothing paid to refund part of (a whole STSC would close it: tests/vbank_issue.rs).
    assert_eq!(
        h.partial_cancel(tno, "1000", "7000").await["res_cd"],
        "8503"
    );

    // Without ipgm_date the deadline is 7 days later, 23:59:59 KST.
    let other = window_result(
        &h,
        &ret,
        "V2",
        "1000",
        "VCNT",
        &[],
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    let other = h
        .post(paths::ENC_PAYMENT, &approval(&other, "1000", "PAVC"))
        .await;
    assert_eq!(other["va_date"], "20260317235959");

    // A notification receiver that refuses twice. Deposit over HTTP: 3,000 then the rest.
    let noti = receiver(2).await;
    let set: reqwest::Response = h
        .client
        .post(h.url("/_sandbox/notify-url"))
        .json(&json!({"site_cd": SITE, "url": format!("{}/kcp/notify", noti.url)}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let first: Value = h
        .client
        .post(h.url("/_sandbox/vbank/deposit"))
        .json(&json!({"tno": tno, "amount": 3000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (first["amount"].as_i64(), first["total"].as_i64()),
        (Some(3000), Some(3000)),
        "{first}"
    );
    assert_eq!(
        h.sandbox.ledger()[0].state,
        TransactionState::Issued,
        "a partial deposit does not pay it"
    );
    for _ in 0..10 {
        if h.sandbox.notifications().iter().all(|n| n.acknowledged) {
            break;
        }
        let flushed: Value = h
            .client
            .post(h.url("/_sandbox/notifications/flush"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(flushed["acknowledged"].is_u64());
    }
    let sent = h.sandbox.notifications();
    assert!(sent[0].acknowledged && sent[0].attempts >= 3, "{sent:?}");
    assert!(!sent[0].tries[0].acknowledged && sent[0].tries.last().unwrap().acknowledged);
    assert_eq!(sent[0].tries[0].http_status, Some(200));
    let received = noti.forms.lock().unwrap().clone();
    assert!(
        received.len() >= 3 && received.iter().all(|f| f == &received[0]),
        "re-sent unchanged, same noti_id"
    );
    let f = &received[0];
    for (k, v) in [
        ("site_cd", SITE),
        ("tno", tno),
        ("order_no", "V1"),
        ("tx_cd", "TX00"),
        ("ipgm_name", "홍길동"),
        ("remitter", "홍길동"),
        ("ipgm_mnyx", "3000"),
        ("totl_mnyx", "3000"),
        ("bank_code", "BK07"),
        ("account", account),
        ("op_cd", "00"),
    ] {
        assert_eq!(get(f, k), Some(v), "{k} in {f:?}");
    }
    for k in ["tx_tm", "ipgm_time"] {
        assert_eq!(get(f, k).unwrap().len(), 14);
    }

    let second = h.sandbox.deposit(tno, 4000, "00").unwrap();
    assert_eq!(second.total, 7000);
    assert_ne!(
        second.noti_id, sent[0].noti_id,
        "noti_id is unique per notification"
    );
    assert_eq!(
        h.sandbox.ledger()[0].state,
        TransactionState::Approved,
        "paid in full"
    );
    assert_eq!(h.inquire_as("PAVC", tno).await["stat_va_cd"], "STSR");
    h.sandbox.flush_notifications().await;
    assert!(h.sandbox.notifications()[1].acknowledged);
    // A reversal (op_cd 13) takes it back under the amount.
    let reversal = h.sandbox.deposit(tno, 4000, "13").unwrap();
    assert_eq!(
        (reversal.total, reversal.field("op_cd")),
        (3000, Some("13"))
    );
    assert_eq!(h.sandbox.ledger()[0].state, TransactionState::Issued);
    h.sandbox.deposit(tno, 5000, "00").unwrap();
    assert_eq!(
        h.sandbox.ledger()[0].state,
        TransactionState::Approved,
        "an over-deposit pays it too"
    );

    // A paid account is refunded to an account the buyer names (STHD), never closed without one
    // (STSC names none, whatever comes with it).
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "8508");
    let refund =
        json!({"mod_bankcode": "BK04", "mod_account": "1234567890", "mod_depositor": "홍길동"});
    assert_eq!(
        h.cancel(tno, "STSC", refund.clone()).await["res_cd"],
        "8508"
    );
    let mut sthd = refund;
    common::merge(
        &mut sthd,
        json!({"mod_sub_type": "MDSC00", "mod_comp_type": "MDCP01"}),
    );
    assert_eq!(h.cancel(tno, "STHD", sthd).await["res_cd"], "0000");
    assert!(
        h.sandbox.deposit(tno, 1, "00").is_err(),
        "a cancelled account takes no deposit"
    );
    assert!(h.sandbox.deposit("20260101000000", 1, "00").is_err());
    let missing = h
        .client
        .post(h.url("/_sandbox/vbank/deposit"))
        .json(&json!({"tno": "20260101000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn escrow_payments_carry_escw_yn_and_take_one_shipping_start() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let ret_url = format!("{}/return", ret.url);
    let reg = register_with(&h, json!({"ordr_idxx": "E1", "good_mny": "20000", "pay_method": "CARD", "Ret_URL": ret_url, "escw_used": "Y"})).await;
    let mut fields = window_fields(
        &reg,
        "E1",
        "20000",
        "CARD",
        &ret_url,
        &[
            ("pay_mod", "Y"),
            ("rcvr_name", "홍길동"),
            ("bask_cntx", "1"),
            ("good_info", ESCROW_GOOD_INFO),
        ],
    );
    fields.iter_mut().find(|(k, _)| k == "escw_used").unwrap().1 = "Y".into();
    let (_, back) = browse(
        &h,
        fields,
        &[
            ("card_no", test_cards::SHINHAN_CREDIT),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
        &ret,
    )
    .await;
    assert_eq!(get(&back, "escw_used"), Some("Y"));
    let ok = h
        .post(paths::ENC_PAYMENT, &approval(&back, "20000", "PACA"))
        .await;
    assert_eq!(ok["escw_yn"], "Y", "{ok}");
    let tno = ok["tno"].as_str().unwrap();

    let ship = json!({"deli_numb": "123456789012", "deli_corp": "CJ대한통운"});
    assert_eq!(
        h.cancel(tno, "STE1", json!({"deli_corp": "CJ대한통운"}))
            .await["res_cd"],
        "9502",
        "waybill required"
    );
    assert_eq!(
        h.sandbox.escrow_shipment(tno),
        None,
        "a refused STE1 registers nothing"
    );
    let shipped = h.cancel(tno, "STE1", ship.clone()).await;
    assert_eq!(
        (shipped["res_cd"].as_str(), shipped["tno"].as_str()),
        (Some("0000"), Some(tno)),
        "{shipped}"
    );
    // KCP has no call that changes a shipment: another STE1 is refused, whatever it carries,
    // and the first one stays.
    assert_eq!(h.cancel(tno, "STE1", ship.clone()).await["res_cd"], "8502");
    let other = json!({"deli_numb": "999", "deli_corp": "한진택배"});
    assert_eq!(h.cancel(tno, "STE1", other).await["res_cd"], "8502");
    let held = h.sandbox.escrow_shipment(tno).expect("a shipment");
    assert_eq!(
        (held.deli_corp.as_str(), held.deli_numb.as_str()),
        ("CJ대한통운", "123456789012")
    );
    let listed = h.get_json("/_sandbox/escrow-shipments").await;
    assert_eq!(listed[0]["deli_numb"], "123456789012", "{listed}");
    assert_eq!(listed[0]["tno"], tno, "{listed}");

    let plain = h.approved("E2", "1000").await;
    assert_eq!(
        h.cancel(&plain, "STE1", ship.clone()).await["res_cd"],
        "8501"
    );
    // The signature is over site_cd^tno^STE1.
    let mut forged = json!({"site_cd": SITE, "kcp_cert_info": merchant(SITE).cert_info, "tno": tno, "mod_type": "STE1",
                            "kcp_sign_data": merchant(SITE).sign(&format!("{SITE}^{tno}^STSC"))});
    common::merge(&mut forged, ship);
    assert_eq!(h.post(paths::CANCEL, &forged).await["res_cd"], "9512");
}

/// An escrow window payment of `order` approved with `method` (`CARD` or `VCNT`): its answer.
async fn escrow_approval(h: &Harness, ret: &Receiver, order: &str, method: &str) -> Value {
    let ret_url = format!("{}/return", ret.url);
    let reg = register_with(h, json!({"ordr_idxx": order, "good_mny": "20000", "pay_method": method, "Ret_URL": ret_url, "escw_used": "Y"})).await;
    let mut fields = window_fields(
        &reg,
        order,
        "20000",
        method,
        &ret_url,
        &[
            ("pay_mod", "Y"),
            ("rcvr_name", "홍길동"),
            ("bask_cntx", "1"),
            ("good_info", ESCROW_GOOD_INFO),
        ],
    );
    fields.iter_mut().find(|(k, _)| k == "escw_used").unwrap().1 = "Y".into();
    let entered: &[(&str, &str)] = if method == "CARD" {
        &[
            ("card_no", test_cards::SHINHAN_CREDIT),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ]
    } else {
        &[("bank", "BK07"), ("action", "pay")]
    };
    let (_, back) = browse(h, fields, entered, ret).await;
    let pay_type = if method == "CARD" { "PACA" } else { "PAVC" };
    let ok = h
        .post(paths::ENC_PAYMENT, &approval(&back, "20000", pay_type))
        .await;
    assert_eq!(
        (ok["res_cd"].as_str(), ok["escw_yn"].as_str()),
        (Some("0000"), Some("Y")),
        "{ok}"
    );
    ok
}

fn entry(h: &Harness, tno: &str) -> kcp_sandbox::LedgerEntry {
    h.sandbox
        .ledger()
        .into_iter()
        .find(|e| e.tno == tno)
        .expect("in the ledger")
}

#[tokio::test]
async fn an_escrow_trade_is_cancelled_whole_with_ste2_before_shipping_and_ste4_after_never_stsc() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let ship = json!({"deli_numb": "123456789012", "deli_corp": "CJ대한통운"});

    // Before the shipping start: STSC/STPC and STE4/STE5 are refused, STE2 cancels it whole.
    let before = escrow_approval(&h, &ret, "EC1", "CARD").await;
    let tno = before["tno"].as_str().unwrap();
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "8506");
    assert_eq!(
        h.partial_cancel(tno, "1000", "20000").await["res_cd"],
        "8506"
    );
    assert_eq!(h.cancel(tno, "STE4", json!({})).await["res_cd"], "8507");
    assert_eq!(h.cancel(tno, "STE5", json!({})).await["res_cd"], "8507");
    assert_eq!(entry(&h, tno).cancels, vec![], "refusals cancel nothing");
    let done = h.cancel(tno, "STE2", json!({})).await;
    assert_eq!(
        (done["res_cd"].as_str(), done["tno"].as_str()),
        (Some("0000"), Some(tno)),
        "{done}"
    );
    assert!(
        done["canc_time"].as_str().is_some_and(|t| t.len() == 14),
        "{done}"
    );
    let cancelled = entry(&h, tno);
    assert_eq!(cancelled.state, TransactionState::Cancelled);
    assert_eq!((cancelled.balance, cancelled.cancels.len()), (0, 1));
    assert_eq!(
        (
            cancelled.cancels[0].mod_type.as_str(),
            cancelled.cancels[0].amount
        ),
        ("STE2", 20000)
    );
    let inquiry = h.inquire_as("PACA", tno).await;
    assert_eq!(inquiry["stat_ca_cd"], "STSC", "{inquiry}");
    assert_eq!(
        h.cancel(tno, "STE2", json!({})).await["res_cd"],
        "8133",
        "already cancelled"
    );
    assert_eq!(h.cancel(tno, "STE1", ship.clone()).await["res_cd"], "8133");

    // After the shipping start: STE2 is refused, STE4 cancels it whole.
    let after = escrow_approval(&h, &ret, "EC2", "CARD").await;
    let tno = after["tno"].as_str().unwrap();
    assert_eq!(h.cancel(tno, "STE1", ship.clone()).await["res_cd"], "0000");
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "8506");
    assert_eq!(h.cancel(tno, "STE2", json!({})).await["res_cd"], "8507");
    assert_eq!(h.cancel(tno, "STE4", json!({})).await["res_cd"], "0000");
    let cancelled = entry(&h, tno);
    assert_eq!(cancelled.state, TransactionState::Cancelled);
    assert_eq!(cancelled.cancels[0].mod_type, "STE4");

    // A plain trade takes no escrow cancel; the signature is over site_cd^tno^STE2.
    let plain = h.approved("EC3", "1000").await;
    for mod_type in ["STE2", "STE4", "STE5"] {
        assert_eq!(
            h.cancel(&plain, mod_type, json!({})).await["res_cd"],
            "8501",
            "{mod_type}"
        );
    }
    let escrow = escrow_approval(&h, &ret, "EC4", "CARD").await;
    let tno = escrow["tno"].as_str().unwrap();
    let forged = json!({"site_cd": SITE, "kcp_cert_info": merchant(SITE).cert_info, "tno": tno, "mod_type": "STE2",
                        "kcp_sign_data": merchant(SITE).sign(&format!("{SITE}^{tno}^STSC"))});
    assert_eq!(h.post(paths::CANCEL, &forged).await["res_cd"], "9512");
    assert_eq!(entry(&h, tno).state, TransactionState::Approved);
}

#[tokio::test]
async fn an_unpaid_escrow_virtual_account_is_closed_with_ste5_only() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let vbank = escrow_approval(&h, &ret, "EV1", "VCNT").await;
    let tno = vbank["tno"].as_str().unwrap();
    assert_eq!(entry(&h, tno).state, TransactionState::Issued);
    assert_eq!(h.cancel(tno, "STSC", json!({})).await["res_cd"], "8506");
    assert_eq!(h.cancel(tno, "STE2", json!({})).await["res_cd"], "8507");
    assert_eq!(h.cancel(tno, "STE4", json!({})).await["res_cd"], "8507");
    let closed = h.cancel(tno, "STE5", json!({})).await;
    assert_eq!(closed["res_cd"], "0000", "{closed}");
    let entry = entry(&h, tno);
    assert_eq!(
        (entry.state, entry.balance),
        (TransactionState::Cancelled, 0)
    );
    assert_eq!(entry.cancels[0].mod_type, "STE5");
    assert!(
        h.sandbox.deposit(tno, 20000, "00").is_err(),
        "a closed account takes no deposit"
    );

    // A plain unpaid account is still revoked with STSC, and takes no STE5.
    let plain = window_result(
        &h,
        &ret,
        "EV2",
        "7000",
        "VCNT",
        &[],
        &[("bank", "BK07"), ("action", "pay")],
    )
    .await;
    let plain = h
        .post(paths::ENC_PAYMENT, &approval(&plain, "7000", "PAVC"))
        .await;
    let plain = plain["tno"].as_str().unwrap();
    assert_eq!(h.cancel(plain, "STE5", json!({})).await["res_cd"], "8501");
    assert_eq!(h.cancel(plain, "STSC", json!({})).await["res_cd"], "0000");
}

/// A paid escrow virtual account is not refunded with `STHD`/`STPD`, which are no escrow status
/// changes (`8506`, nothing moves), nor with an escrow cancel that names no account (`8508`): its
/// refund is KCP's escrow cancel (`STE2` before shipping) with the account to refund to.
#[tokio::test]
async fn a_paid_escrow_virtual_account_is_not_refunded_with_sthd_or_stpd() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let vbank = escrow_approval(&h, &ret, "EV4", "VCNT").await;
    let tno = vbank["tno"].as_str().unwrap();
    h.sandbox.set_notify_url("*", &format!("{}/noti", ret.url));
    h.sandbox.deposit(tno, 20000, "00").unwrap();
    let refund = json!({"mod_bankcode": "BK04", "mod_account": "1234567890",
                        "mod_depositor": "홍길동", "mod_comp_type": "MDCP01"});
    let mut sthd = refund.clone();
    common::merge(&mut sthd, json!({"mod_sub_type": "MDSC00"}));
    let mut stpd = refund;
    common::merge(
        &mut stpd,
        json!({"mod_sub_type": "MDSC03", "mod_mny": "1000", "rem_mny": "20000"}),
    );

    let whole = h.cancel(tno, "STHD", sthd).await;
    let part = h.cancel(tno, "STPD", stpd).await;

    assert_eq!(whole["res_cd"], "8506", "{whole}");
    assert_eq!(part["res_cd"], "8506", "{part}");
    let entry = entry(&h, tno);
    assert_eq!(
        (entry.state, entry.balance, entry.cancels.len()),
        (TransactionState::Approved, 20000, 0)
    );
    assert_eq!(
        h.cancel(tno, "STE2", json!({})).await["res_cd"],
        "8508",
        "nor with an escrow cancel naming no account to refund to"
    );
}

/// `STE5` closes an unpaid escrow account as `STSC` closes a plain one, so an account holding
/// deposits short of its amount is not closed without the account to refund them to (`8508`,
/// nothing changes), as a plain one is not (docs/sandbox.md §2.3): a deposit and a revocation
/// never both succeed, escrow or not.
#[tokio::test]
async fn an_escrow_virtual_account_holding_a_partial_deposit_is_not_closed_with_ste5() {
    let h = spawn().await;
    let ret = receiver(0).await;
    let vbank = escrow_approval(&h, &ret, "EV3", "VCNT").await;
    let tno = vbank["tno"].as_str().unwrap();
    h.sandbox.set_notify_url("*", &format!("{}/noti", ret.url));
    h.sandbox.deposit(tno, 1000, "00").unwrap();
    assert_eq!(entry(&h, tno).state, TransactionState::Issued);

    let refused = h.cancel(tno, "STE5", json!({})).await;

    assert_eq!(refused["res_cd"], "8508", "{refused}");
    let entry = entry(&h, tno);
    assert_eq!(
        (entry.state, entry.balance, entry.cancels.len()),
        (TransactionState::Issued, 20000, 0)
    );
    assert!(
        h.sandbox.deposit(tno, 19000, "00").is_ok(),
        "the account is still open"
    );
}

/// A paid escrow virtual account's `STE2` (before shipping) or `STE4` (after) may name the account
/// its deposit goes back to, with the fields and verification of `STHD` (docs/sandbox.md §2.3):
/// an account that does not verify is `8509`/`8510`, an account named in part `8508`, one without
/// `mod_comp_type` `9502`, and nothing moves; a verified one cancels the balance (an inquiry then
/// shows `STSC`). An escrow card trade's cancel names no account (`8511`).
#[tokio::test]
async fn a_paid_escrow_virtual_accounts_ste2_or_ste4_refunds_to_the_account_it_names_once_verified()
{
    use kcp_sandbox::test_refund_accounts::{HOLDER, NAMED_HOLDER_ACCOUNT, NO_SUCH_ACCOUNT};
    let h = spawn().await;
    let ret = receiver(0).await;
    h.sandbox.set_notify_url("*", &format!("{}/noti", ret.url));
    let to = |account: &str, holder: &str| {
        json!({"mod_bankcode": "BK88", "mod_account": account, "mod_depositor": holder,
               "mod_comp_type": "MDCP01"})
    };

    for (order, mod_type) in [("EVR1", "STE2"), ("EVR2", "STE4")] {
        let vbank = escrow_approval(&h, &ret, order, "VCNT").await;
        let tno = vbank["tno"].as_str().unwrap();
        h.sandbox.deposit(tno, 20000, "00").unwrap();
        if mod_type == "STE4" {
            let ship = json!({"deli_numb": "123456789012", "deli_corp": "CJ대한통운"});
            assert_eq!(h.cancel(tno, "STE1", ship).await["res_cd"], "0000");
        }
        let mut no_comp_type = to("1234567890", "홍길동");
        no_comp_type
            .as_object_mut()
            .unwrap()
            .remove("mod_comp_type");
        for (extra, code) in [
            (to(NO_SUCH_ACCOUNT, "홍길동"), "8509"),
            (to(NAMED_HOLDER_ACCOUNT, "홍길동"), "8510"),
            (
                json!({"mod_bankcode": "BK88", "mod_account": "1234567890"}),
                "8508",
            ),
            (no_comp_type, "9502"),
        ] {
            let refused = h.cancel(tno, mod_type, extra.clone()).await;
            assert_eq!(refused["res_cd"], code, "{mod_type} {extra}: {refused}");
        }
        let refused = entry(&h, tno);
        assert_eq!(
            (refused.state, refused.balance, refused.cancels.len()),
            (TransactionState::Approved, 20000, 0),
            "{mod_type}: refusals move nothing"
        );

        let done = h
            .cancel(tno, mod_type, to(NAMED_HOLDER_ACCOUNT, HOLDER))
            .await;

        assert_eq!(done["res_cd"], "0000", "{mod_type}: {done}");
        let refunded = entry(&h, tno);
        assert_eq!(
            (refunded.state, refunded.balance),
            (TransactionState::Cancelled, 0)
        );
        assert_eq!(
            (
                refunded.cancels[0].mod_type.as_str(),
                refunded.cancels[0].amount
            ),
            (mod_type, 20000)
        );
        assert_eq!(h.inquire_as("PAVC", tno).await["stat_va_cd"], "STSC");
    }

    let card = escrow_approval(&h, &ret, "EVR3", "CARD").await;
    let card = card["tno"].as_str().unwrap();
    let refused = h.cancel(card, "STE2", to("1234567890", "홍길동")).await;
    assert_eq!(refused["res_cd"], "8511", "{refused}");
    assert_eq!(entry(&h, card).state, TransactionState::Approved);
}

/// One item of an escrow window's basket (`good_info`, KCP's US/RS separators), as an escrow
/// window must carry with `bask_cntx` 1 and a receiver (docs/sandbox.md §2.1).
const ESCROW_GOOD_INFO: &str =
    "seq=1\u{1f}ordr_numb=E1\u{1f}good_name=양말\u{1f}good_cntx=1\u{1f}good_amtx=20000";
