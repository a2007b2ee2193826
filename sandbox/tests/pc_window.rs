//! KCP's PC flow (spec §1.1) over real HTTP: the script a merchant page loads, the PC window its
//! layer frames, the answer handed back to the page (with `ordr_chk`), and the approval of that
//! answer's `enc_data`, checked as a mobile window's is.
mod common;

use common::{approval, get, inputs, spawn, Harness};
use kcp_sandbox::paths;
use kcp_sandbox::pc_window::PAGE_ORIGIN_FIELD;

/// What KCP's PC script posts into its frame for a merchant form of `pay_method` and `amount`.
fn pc_form<'a>(order: &'a str, amount: &'a str, pay_method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("site_cd", "T0000"),
        ("ordr_idxx", order),
        ("good_name", "테스트"),
        ("good_mny", amount),
        ("pay_method", pay_method),
        ("currency", "WON"),
        ("module_type", "01"),
        ("buyr_name", "홍길동"),
        (PAGE_ORIGIN_FIELD, "http://shop.test"),
    ]
}

/// Opens the PC window and submits `entered`: the response and the answer's fields.
async fn pc_pay(
    h: &Harness,
    form: &[(&str, &str)],
    entered: &[(&str, &str)],
) -> (String, Vec<(String, String)>) {
    let res = h
        .client
        .post(h.url(paths::PC_WINDOW))
        .form(form)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("x-frame-options").is_none());
    assert!(res.headers().get("content-security-policy").is_none());
    let window = res.text().await.unwrap();
    assert!(window.contains("id=\"pay\""), "{window}");
    let mut fields = inputs(&window);
    fields.extend(entered.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let back = h.post_form(&h.url(paths::PAY_SUBMIT), &fields).await;
    let answer = inputs(&back);
    (back, answer)
}

#[tokio::test]
async fn the_pc_script_defines_kcps_functions_and_opens_its_window_in_a_layer() {
    let h = spawn().await;
    let res = h.client.get(h.url(paths::PC_SCRIPT)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    let script = res.text().await.unwrap();
    for needed in [
        "window.KCP_Pay_Execute_Web = function (form)",
        "window.GetField = function",
        "m_Completepayment(form, close)",
        "kcp_sandbox_layer",
        "position:fixed",
        paths::PC_WINDOW,
        PAGE_ORIGIN_FIELD,
    ] {
        assert!(script.contains(needed), "{needed}: {script}");
    }
    // Only its own frame, at the origin it was loaded from, answers.
    let origin = h.url("");
    let origin = origin.trim_end_matches('/');
    assert!(
        script.contains(&format!("var ORIGIN = \"{origin}\"")),
        "{script}"
    );
}

#[tokio::test]
async fn a_pc_window_answers_the_page_with_ordr_chk_and_its_enc_data_is_approved_once_for_its_amount(
) {
    let h = spawn().await;
    let (page, answer) = pc_pay(
        &h,
        &pc_form("PC1", "5000", "100000000000"),
        &[
            ("card_no", "4111111111111111"),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
    )
    .await;
    assert!(
        page.contains("parent.postMessage(") && page.contains("\"http://shop.test\""),
        "handed to the page's origin only: {page}"
    );
    assert_eq!(get(&answer, "res_cd"), "0000");
    assert_eq!(get(&answer, "ordr_chk"), "PC1|5000");
    assert_eq!(get(&answer, "use_pay_method"), "100000000000");
    assert_eq!(get(&answer, "tran_cd"), "00100000");
    let wrong = h
        .post(paths::ENC_PAYMENT, &approval(&answer, "4999", "PACA"))
        .await;
    assert_eq!(wrong["res_cd"], "8059", "{wrong}");
    let ok = h
        .post(paths::ENC_PAYMENT, &approval(&answer, "5000", "PACA"))
        .await;
    assert_eq!(ok["res_cd"], "0000", "{ok}");
    assert_eq!(ok["order_no"], "PC1", "{ok}");
    let replay = h
        .post(paths::ENC_PAYMENT, &approval(&answer, "5000", "PACA"))
        .await;
    assert_eq!(replay["res_cd"], "9530", "{replay}");
    assert_eq!(h.sandbox.ledger().len(), 1);
}

#[tokio::test]
async fn a_pc_window_closed_by_the_buyer_answers_3001_and_a_bad_form_gets_the_error_page() {
    let h = spawn().await;
    let (_, answer) = pc_pay(
        &h,
        &pc_form("PC2", "5000", "100000000000"),
        &[("action", "cancel")],
    )
    .await;
    assert_eq!(get(&answer, "res_cd"), "3001");
    assert_eq!(get(&answer, "enc_data"), "");
    for (field, value) in [
        ("pay_method", "CARD"),
        ("currency", "USD"),
        ("good_mny", "abc"),
        (PAGE_ORIGIN_FIELD, "javascript:alert(1)"),
        // KCP's forbidden characters (spec §6), in the goods as in the buyer fields.
        ("good_name", "a|b"),
        ("buyr_name", "홍<길동"),
    ] {
        let mut form = pc_form("PC3", "5000", "100000000000");
        form.retain(|(k, _)| *k != field);
        form.push((field, value));
        let page = h.post_form(&h.url(paths::PC_WINDOW), &form).await;
        assert!(page.contains("id=\"error\""), "{field}: {page}");
    }
    assert!(h.sandbox.ledger().is_empty());
}

/// A PC batch window (`pay_method AUTH:CARD`, `card_cert_type BATCH`, spec §2.2) names its group
/// with the PC form's spelling, `kcpgroup_id`, a group of the site (`site_cd` + 7 digits):
/// without it, with the mobile spelling or with another site's group the window is the error page;
/// with it the key is issued in that group, and the answer is spec §2.5's (no masked card).
#[tokio::test]
async fn a_pc_batch_window_needs_its_kcpgroup_id_and_issues_the_key_in_that_group() {
    let h = spawn().await;
    let batch_form = |order: &'static str, group: &[(&'static str, &'static str)]| {
        let mut form = pc_form(order, "0", "AUTH:CARD");
        form.push(("card_cert_type", "BATCH"));
        form.extend_from_slice(group);
        form
    };
    for group in [
        &[][..],
        &[("kcpgroup_id", "")],
        &[("kcp_group_id", "T00001000001")],
        &[("kcpgroup_id", "A52Q71000489")],
        &[("kcpgroup_id", "T00001")],
    ] {
        let page = h
            .post_form(&h.url(paths::PC_WINDOW), &batch_form("PCB1", group))
            .await;
        assert!(page.contains("id=\"error\""), "{group:?}: {page}");
        assert!(page.contains("kcpgroup_id"), "names the field: {page}");
    }
    assert!(h.sandbox.batch_keys().is_empty());

    let (_, answer) = pc_pay(
        &h,
        &batch_form("PCB2", &[("kcpgroup_id", "T00001000002")]),
        &[
            ("card_no", "4111111111111111"),
            ("card_expiry", "3112"),
            ("action", "pay"),
        ],
    )
    .await;
    assert_eq!(get(&answer, "res_cd"), "0000");
    assert_eq!(get(&answer, "tran_cd"), "00300001");
    let issued = h
        .post(paths::ENC_PAYMENT, &approval(&answer, "0", "PACA"))
        .await;
    assert_eq!(issued["res_cd"], "0000", "{issued}");
    assert_eq!(issued["batch_key"].as_str().unwrap().len(), 16);
    assert!(issued.get("card_mask_no").is_none(), "{issued}");
    let keys = h.sandbox.batch_keys();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].group_id, "T00001000002");
}

/// KCP's escrow covers cards, bank transfers and virtual accounts, in the PC window as at the
/// registration (`Code 0002` there): a phone, point or gift-certificate bitmask with
/// `escw_used=Y` gets the error page naming `escw_used`, not a window to pay in; the
/// card, transfer and virtual-account bitmasks still open an escrow window.
#[tokio::test]
async fn a_pc_escrow_window_for_phone_point_or_gift_gets_the_error_page() {
    let h = spawn().await;
    let escrow_form = |order: &'static str, pay_method: &'static str| {
        let mut form = pc_form(order, "5000", pay_method);
        form.extend_from_slice(&[
            ("escw_used", "Y"),
            ("shop_user_id", "buyer1"),
            ("rcvr_name", "홍길동"),
            ("bask_cntx", "1"),
            (
                "good_info",
                "seq=1\u{1f}ordr_numb=o1\u{1f}good_name=양말\u{1f}good_cntx=1\u{1f}good_amtx=5000",
            ),
        ]);
        form
    };
    for (pay_method, order) in [
        ("000010000000", "PCE1"),
        ("000100000000", "PCE2"),
        ("000000001000", "PCE3"),
    ] {
        let page = h
            .post_form(&h.url(paths::PC_WINDOW), &escrow_form(order, pay_method))
            .await;
        assert!(page.contains("id=\"error\""), "{pay_method}: {page}");
        assert!(page.contains("escw_used"), "names the field: {page}");
        assert!(!page.contains("id=\"pay\""), "{pay_method}: {page}");
    }
    for (pay_method, order) in [
        ("100000000000", "PCE4"),
        ("010000000000", "PCE5"),
        ("001000000000", "PCE6"),
    ] {
        let page = h
            .post_form(&h.url(paths::PC_WINDOW), &escrow_form(order, pay_method))
            .await;
        assert!(page.contains("id=\"pay\""), "{pay_method}: {page}");
    }
}
