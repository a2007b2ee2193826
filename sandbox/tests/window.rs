//! The standard payment window over real HTTP: registration, the window page, the post back to
//! Ret_URL, and the approval that redeems the window's result once.
mod common;

use common::{approval, get, inputs, merchant, spawn, Harness};
use serde_json::{json, Value};

/// The registration's answer, with the method registered added as `_method` for [`pay`].
async fn register(h: &Harness, order: &str, amount: &str, method: &str) -> Value {
    let mut reg = h
        .post(
            kcp_sandbox::paths::TRADE_REGISTER,
            &json!({"site_cd": "T0000", "kcp_cert_info": merchant("T0000").cert_info, "ordr_idxx": order, "good_mny": amount,
                    "good_name": "테스트", "pay_method": method, "Ret_URL": "http://shop.test/return", "escw_used": "N", "user_agent": "pc"}),
        )
        .await;
    reg["_method"] = json!(method);
    reg
}

/// Opens the window and submits it; returns the fields posted back to Ret_URL.
/// The window post (spec §2.2) for a `CARD` or `VCNT` trade, whose `ActionResult` is the method
/// in lower case.
async fn pay(
    h: &Harness,
    reg: &Value,
    order: &str,
    amount: &str,
    entered: &[(&str, &str)],
) -> Vec<(String, String)> {
    let method = reg["_method"].as_str().unwrap();
    let window = h
        .post_form(
            &h.url(kcp_sandbox::paths::PAY_WINDOW),
            &[
                ("approval_key", reg["approvalKey"].as_str().unwrap()),
                ("traceNo", reg["traceNo"].as_str().unwrap()),
                ("PayUrl", h.url(kcp_sandbox::paths::PAY_WINDOW).as_str()),
                ("site_cd", "T0000"),
                ("ordr_idxx", order),
                ("good_name", "테스트"),
                ("good_mny", amount),
                ("req_tx", "pay"),
                ("currency", "410"),
                ("escw_used", "N"),
                ("pay_method", method),
                ("ActionResult", &method.to_ascii_lowercase()),
                ("Ret_URL", "http://shop.test/return"),
            ],
        )
        .await;
    assert!(
        window.contains("id=\"pay\"") && window.contains("id=\"cancel\""),
        "{window}"
    );
    let mut form = inputs(&window);
    for (k, v) in entered {
        form.push((k.to_string(), v.to_string()));
    }
    let back = h.post_form(&h.url("/pay/submit"), &form).await;
    assert!(
        back.contains("action=\"http://shop.test/return\""),
        "{back}"
    );
    inputs(&back)
}

#[tokio::test]
async fn registration_gives_an_approval_key_trace_no_and_the_window_url() {
    let h = spawn().await;
    let reg = register(&h, "W1", "1000", "CARD").await;
    assert_eq!(reg["Code"], "0000", "{reg}");
    assert!(reg["traceNo"].as_str().unwrap().starts_with("T0000"));
    assert!(reg["PayUrl"]
        .as_str()
        .unwrap()
        .ends_with("/pay/mobileGW.kcp"));
    let bad = register(&h, "W-1", "1000", "CARD").await;
    assert_eq!(bad["Code"], "0002");
}

#[tokio::test]
async fn a_card_window_result_is_approved_once_for_the_right_amount() {
    let h = spawn().await;
    let reg = register(&h, "W2", "5000", "CARD").await;
    let back = pay(
        &h,
        &reg,
        "W2",
        "5000",
        &[
            ("card_no", "4111111111111111"),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
    )
    .await;
    assert_eq!(get(&back, "res_cd"), "0000");
    assert_eq!(get(&back, "use_pay_method"), "100000000000");
    // spec §2.3: the mobile window posts no `ordr_chk` (only the PC flow of §1.1 fills it).
    assert!(!back.iter().any(|(k, _)| k == "ordr_chk"), "{back:?}");
    assert!(
        !get(&back, "enc_data").contains("4111"),
        "enc_data never carries the card number"
    );
    let wrong = h
        .post(
            kcp_sandbox::paths::ENC_PAYMENT,
            &approval(&back, "4999", "PACA"),
        )
        .await;
    assert_eq!(wrong["res_cd"], "8059", "{wrong}");
    let ok = h
        .post(
            kcp_sandbox::paths::ENC_PAYMENT,
            &approval(&back, "5000", "PACA"),
        )
        .await;
    assert_eq!(ok["res_cd"], "0000", "{ok}");
    assert_eq!(ok["card_no"], "411111******1111");
    let replay = h
        .post(
            kcp_sandbox::paths::ENC_PAYMENT,
            &approval(&back, "5000", "PACA"),
        )
        .await;
    assert_eq!(replay["res_cd"], "9530", "{replay}");
    assert_eq!(h.sandbox.ledger().len(), 1);
}

#[tokio::test]
async fn a_buyer_cancel_or_a_declining_card_comes_back_without_enc_data() {
    let h = spawn().await;
    let reg = register(&h, "W3", "1000", "CARD").await;
    let back = pay(&h, &reg, "W3", "1000", &[("action", "cancel")]).await;
    assert_eq!(get(&back, "res_cd"), "3001");
    assert_eq!(get(&back, "enc_data"), "");
    let reg = register(&h, "W4", "1000", "CARD").await;
    let back = pay(
        &h,
        &reg,
        "W4",
        "1000",
        &[
            ("card_no", kcp_sandbox::test_cards::DAILY_LIMIT_EXCEEDED),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
    )
    .await;
    assert_eq!(get(&back, "res_cd"), "8186");
}

#[tokio::test]
async fn a_virtual_account_window_issues_an_account_with_a_deadline() {
    let h = spawn().await;
    let reg = register(&h, "W5", "7000", "VCNT").await;
    let back = pay(
        &h,
        &reg,
        "W5",
        "7000",
        &[("bank", "BK07"), ("action", "pay")],
    )
    .await;
    let ok = h
        .post(
            kcp_sandbox::paths::ENC_PAYMENT,
            &approval(&back, "7000", "PAVC"),
        )
        .await;
    assert_eq!(ok["res_cd"], "0000", "{ok}");
    assert_eq!(ok["bankcode"], "BK07");
    assert!(ok["account"].as_str().unwrap().starts_with('T'));
    assert_eq!(ok["va_date"].as_str().unwrap().len(), 14);
    let wrong_type = register(&h, "W6", "7000", "VCNT").await;
    let back = pay(
        &h,
        &wrong_type,
        "W6",
        "7000",
        &[("bank", "BK07"), ("action", "pay")],
    )
    .await;
    let refused = h
        .post(
            kcp_sandbox::paths::ENC_PAYMENT,
            &approval(&back, "7000", "PACA"),
        )
        .await;
    assert_eq!(refused["res_cd"], "8104", "{refused}");
}

/// A notification receiver that refuses the first `fail` notifications, then acknowledges.
async fn receiver(fail: usize) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < fail {
                    "<html><body>error</body></html>".to_string()
                } else {
                    "<html><body><form><input type=\"hidden\" name=\"result\" value=\"0000\"></form></body></html>".to_string()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn a_deposit_notification_is_sent_again_until_the_merchant_answers_0000() {
    let h = spawn().await;
    let reg = register(&h, "W7", "7000", "VCNT").await;
    let back = pay(
        &h,
        &reg,
        "W7",
        "7000",
        &[("bank", "BK04"), ("action", "pay")],
    )
    .await;
    let ok = h
        .post(
            kcp_sandbox::paths::ENC_PAYMENT,
            &approval(&back, "7000", "PAVC"),
        )
        .await;
    let tno = ok["tno"].as_str().unwrap().to_string();
    let (url, seen) = receiver(2).await;
    h.sandbox.set_notify_url("T0000", &url);
    let record = h.sandbox.deposit(&tno, 7000, "00").unwrap();
    assert_eq!(record.total, 7000);
    // Don't wait for the backoff: flush until acknowledged (bounded).
    for _ in 0..5 {
        if h.sandbox.notifications()[0].acknowledged {
            break;
        }
        h.sandbox.flush_notifications().await;
    }
    let sent = h.sandbox.notifications();
    assert!(sent[0].acknowledged, "{sent:?}");
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(
        h.sandbox.deposit("20260101000000", 1, "00").is_err(),
        "only issued accounts take deposits"
    );
}

/// The window post's required fields (spec §2.2): a merchant page that leaves one out, or posts a
/// method, escrow flag, `ActionResult` or `Ret_URL` other than the trade's, gets an error page,
/// not a window; so does a phone, point or gift window without `shop_user_id`.
#[tokio::test]
async fn a_window_post_without_a_required_field_or_disagreeing_with_the_trade_is_refused() {
    let h = spawn().await;
    let pay_url = h.url(kcp_sandbox::paths::PAY_WINDOW);
    let opened = |reg: &Value, method: &'static str, action: &'static str| {
        vec![
            (
                "approval_key",
                reg["approvalKey"].as_str().unwrap().to_string(),
            ),
            ("traceNo", reg["traceNo"].as_str().unwrap().to_string()),
            ("PayUrl", pay_url.clone()),
            ("site_cd", "T0000".into()),
            ("ordr_idxx", reg["_order"].as_str().unwrap().to_string()),
            ("good_name", "테스트".into()),
            ("good_mny", "1000".into()),
            ("req_tx", "pay".into()),
            ("currency", "410".into()),
            ("escw_used", "N".into()),
            ("pay_method", method.into()),
            ("ActionResult", action.into()),
            ("Ret_URL", "http://shop.test/return".into()),
        ]
    };
    let page = |form: Vec<(&'static str, String)>| {
        let h = &h;
        async move {
            h.post_form(&h.url(kcp_sandbox::paths::PAY_WINDOW), &form)
                .await
        }
    };
    let reg = |order: &'static str, method: &'static str| {
        let h = &h;
        async move {
            let mut r = register(h, order, "1000", method).await;
            r["_order"] = json!(order);
            r
        }
    };

    let card = reg("R1", "CARD").await;
    let full = opened(&card, "CARD", "card");
    for (i, (name, _)) in full.iter().enumerate() {
        let mut form = full.clone();
        form.remove(i);
        let refused = page(form).await;
        assert!(
            refused.contains("id=\"error\""),
            "without {name}: {refused}"
        );
    }
    for (name, value) in [
        ("req_tx", "mod"),
        ("currency", "840"),
        ("pay_method", "BANK"),
        ("escw_used", "Y"),
        ("ActionResult", "acnt"),
        ("Ret_URL", "http://elsewhere.test/return"),
    ] {
        let mut form = full.clone();
        form.iter_mut().find(|(n, _)| *n == name).unwrap().1 = value.into();
        let refused = page(form).await;
        assert!(
            refused.contains("id=\"error\""),
            "{name}={value}: {refused}"
        );
    }
    let window = page(full).await;
    assert!(window.contains("id=\"pay\""), "{window}");

    let phone = reg("R2", "MOBX").await;
    let refused = page(opened(&phone, "MOBX", "mobx")).await;
    assert!(refused.contains("shop_user_id"), "{refused}");
    let mut form = opened(&phone, "MOBX", "mobx");
    form.push(("shop_user_id", "buyer-1".into()));
    assert!(page(form).await.contains("id=\"pay\""));
}

/// KCP forbids `, & ; \\ | ' " < >` and newlines in all request data (spec §6): the registration's
/// `good_name` and the buyer fields of the window post are refused with them (`Code 0002`, the
/// error page), as the hub refuses them, and are held to their lengths in bytes (buyr_name 30,
/// buyr_tel1/2 20, buyr_mail 50).
#[tokio::test]
async fn a_forbidden_character_in_the_registered_goods_or_the_windows_buyer_fields_is_refused() {
    let h = spawn().await;
    for name in ["a|b", "a&b", "<b>", "a,b"] {
        for path in [
            kcp_sandbox::paths::TRADE_REGISTER,
            kcp_sandbox::paths::MOBILE_TRADE_REGISTER,
        ] {
            let reg = h
                .post(
                    path,
                    &json!({"site_cd": "T0000", "kcp_cert_info": merchant("T0000").cert_info, "ordr_idxx": "G1",
                            "good_mny": "1000", "good_name": name, "pay_method": "CARD",
                            "Ret_URL": "http://shop.test/return", "escw_used": "N", "user_agent": "pc"}),
                )
                .await;
            assert_eq!(reg["Code"], "0002", "{path} {name}: {reg}");
        }
    }

    let pay_url = h.url(kcp_sandbox::paths::PAY_WINDOW);
    for (field, value) in [
        ("buyr_name", "홍<길동"),
        ("buyr_name", "O'Brien"),
        ("buyr_tel1", "02;0000"),
        ("buyr_tel2", "010|0000"),
        ("buyr_mail", "a\"b@example.com"),
        ("buyr_name", "가나다라마바사아자차카"),
        ("buyr_mail", &format!("{}@example.com", "a".repeat(40))),
    ] {
        let reg = register(&h, "B1", "1000", "CARD").await;
        let form = [
            ("approval_key", reg["approvalKey"].as_str().unwrap()),
            ("traceNo", reg["traceNo"].as_str().unwrap()),
            ("PayUrl", pay_url.as_str()),
            ("site_cd", "T0000"),
            ("ordr_idxx", "B1"),
            ("good_name", "테스트"),
            ("good_mny", "1000"),
            ("req_tx", "pay"),
            ("currency", "410"),
            ("escw_used", "N"),
            ("pay_method", "CARD"),
            ("ActionResult", "card"),
            ("Ret_URL", "http://shop.test/return"),
            (field, value),
        ];
        let page = h.post_form(&pay_url, &form).await;
        assert!(
            page.contains("id=\"error\"") && page.contains(field),
            "{field}={value}: {page}"
        );
    }
}

/// KCP's mobile window is a full-page form post (spec §1.2: "no iframe/popup"): the sandbox's
/// refuses to be framed, so a merchant page that frames it fails here as it would at KCP.
#[tokio::test]
async fn the_mobile_window_forbids_framing() {
    let h = spawn().await;
    let reg = register(&h, "WFRAME", "5000", "CARD").await;
    let res = h
        .client
        .post(h.url(kcp_sandbox::paths::PAY_WINDOW))
        .form(&[
            ("approval_key", reg["approvalKey"].as_str().unwrap()),
            ("traceNo", reg["traceNo"].as_str().unwrap()),
            ("PayUrl", h.url(kcp_sandbox::paths::PAY_WINDOW).as_str()),
            ("site_cd", "T0000"),
            ("ordr_idxx", "WFRAME"),
            ("good_name", "테스트"),
            ("good_mny", "5000"),
            ("req_tx", "pay"),
            ("currency", "410"),
            ("escw_used", "N"),
            ("pay_method", "CARD"),
            ("ActionResult", "card"),
            ("Ret_URL", "http://shop.test/return"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(
        res.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    assert!(res.text().await.unwrap().contains("id=\"pay\""));
}

/// KCP's escrow covers cards, bank transfers and virtual accounts: a phone, point or gift trade
/// registered with `escw_used=Y` is refused (`Code 0002`, assumption) and no window is opened for
/// it; the escrow methods still register.
#[tokio::test]
async fn an_escrow_registration_of_a_phone_point_or_gift_trade_is_refused() {
    let h = spawn().await;
    let register = |method: &'static str, order: &'static str| {
        let h = &h;
        async move {
            h.post(
                kcp_sandbox::paths::TRADE_REGISTER,
                &json!({"site_cd": "T0000", "kcp_cert_info": merchant("T0000").cert_info, "ordr_idxx": order,
                        "good_mny": "1000", "good_name": "테스트", "pay_method": method,
                        "Ret_URL": "http://shop.test/return", "escw_used": "Y", "user_agent": "pc"}),
            )
            .await
        }
    };
    for (method, order) in [("MOBX", "E1"), ("TPNT", "E2"), ("GIFT", "E3")] {
        let reg = register(method, order).await;
        assert_eq!(reg["Code"], "0002", "{method}: {reg}");
        assert!(reg["approvalKey"].is_null(), "{method}: {reg}");
    }
    for (method, order) in [("CARD", "E4"), ("BANK", "E5"), ("VCNT", "E6")] {
        let reg = register(method, order).await;
        assert_eq!(reg["Code"], "0000", "{method}: {reg}");
    }
}
