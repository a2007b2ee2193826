//! How an iamport `pay_method` (and `pg`) opens KCP's standard window (spec/kcp.md §2.1–2.2,
//! spec/iamport-v1.md §6).
use super::text::{for_kcp, ScriptRefused};

/// Pay methods of KCP's standard payment window (spec/kcp.md §2.1–2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowMethod {
    /// `CARD`: the card window.
    Card,
    /// `BANK`: real-time account transfer.
    Bank,
    /// `VCNT`: virtual account.
    VirtualAccount,
    /// `MOBX`: mobile phone.
    Phone,
    /// `TPNT`: points (with a `van_code`).
    Point,
    /// `GIFT`: gift certificates (with a `van_code`).
    GiftCertificate,
    /// `AUTH`: billing-key (batch key) issuance window.
    BatchKey,
}

/// The KCP side of one pay method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    pub method: WindowMethod,
    /// `pay_method` of the registration and window (`CARD`, `BANK`, …).
    pub kcp_pay_method: &'static str,
    /// `ActionResult` of the mobile window.
    pub action_result: &'static str,
    pub van_code: Option<&'static str>,
    /// Gift certificates need the buyer's id at the issuer (`bypass.shop_user_id`).
    pub needs_shop_user_id: bool,
}

const fn plan(method: WindowMethod, kcp: &'static str, action: &'static str) -> WindowPlan {
    WindowPlan {
        method,
        kcp_pay_method: kcp,
        action_result: action,
        van_code: None,
        needs_shop_user_id: false,
    }
}

/// iamport's easy-pay `pay_method`s on KCP (seed 004 §2, PAYCO 허브형: seed 001 §5). KCP's
/// fields that open its window on one (its 간편결제 direct call) are not in spec/kcp.md: such a
/// request would open the plain card window, and the payment would claim an easy pay no answer
/// confirmed. Refused before the window, saying why and what works.
pub const EASY_PAY_METHODS: &[&str] = &["samsung", "kakaopay", "naverpay", "payco"];

/// None when KCP's window has no such method.
pub fn window_plan(pay_method: &str, billing: bool) -> Option<WindowPlan> {
    use WindowMethod::*;
    if billing {
        return Some(plan(BatchKey, "AUTH", "batch"));
    }
    let gift = |van| WindowPlan {
        van_code: Some(van),
        needs_shop_user_id: true,
        ..plan(GiftCertificate, "GIFT", "scbl")
    };
    Some(match pay_method {
        "" | "card" => plan(Card, "CARD", "card"),
        "trans" => plan(Bank, "BANK", "acnt"),
        "vbank" => plan(VirtualAccount, "VCNT", "vcnt"),
        "phone" => plan(Phone, "MOBX", "mobx"),
        // iamport's `point` on KCP is Benepia welfare points (seed 004), `van_code` SCWB
        // (spec/kcp.md §2.2); SCSK would open OK캐쉬백's window.
        "point" => WindowPlan {
            van_code: Some("SCWB"),
            ..plan(Point, "TPNT", "tpnt")
        },
        "cultureland" | "smartculture" => WindowPlan {
            action_result: "sccl",
            ..gift("SCCL")
        },
        "booknlife" => gift("SCBL"),
        "happymoney" => WindowPlan {
            action_result: "schm",
            ..gift("SCHM")
        },
        // Payments and windows earlier versions opened for an easy pay were KCP's card window
        // (inquired as cards, `PACA`); new requests for one are refused before the window
        // ([`EASY_PAY_METHODS`]).
        "samsung" | "kakaopay" | "naverpay" | "payco" => plan(Card, "CARD", "card"),
        _ => return None,
    })
}

/// KCP's issuer codes (`card_cd`, spec/kcp.md §4): what KCP's window field `used_card` lists.
const KCP_CARD_CODES: &[&str] = &[
    "CCKM", "CCNH", "CCSG", "CCCT", "CCHM", "CVSF", "CCAM", "CCLO", "CCBC", "CCWR", "CCHN", "CCSS",
    "CCKJ", "CCSU", "CCJB", "CCCJ", "CCLG", "CMCF", "CJCF", "CCKE", "CCDI", "CCUF",
];

/// The KCP issuer codes of one iamport standard card-company code (`card.detail`'s `card_code`,
/// seed 004 "특정 카드사 노출"), by the mapping openport answers `card_code` with
/// ([`super::card::iamport_card_code`]), read backwards: `374` 하나 is KCP's `CCHN` and `CCKE`
/// (하나(외환)), `368` 롯데 `CCLO` and `CCAM`. Empty for a code KCP's window cannot name (a bank
/// card without its own KCP code, a foreign brand).
pub fn kcp_card_codes(iamport_code: &str) -> Vec<&'static str> {
    KCP_CARD_CODES
        .iter()
        .copied()
        .filter(|kcp| super::card::iamport_card_code(kcp) == Some(iamport_code))
        .collect()
}

/// Whether the buyer asked KCP's window for a cash receipt: KCP's window answer says so with
/// `cash_yn` `Y` (spec/kcp.md §1.1, §2.3; `cash_tr_code` is the kind, 소득공제 or 지출증빙). KCP
/// issues them for cash only, bank transfers and virtual accounts: on any other method the flag
/// means nothing and is not taken.
pub fn cash_receipt_asked(method: WindowMethod, cash_yn: &str) -> bool {
    matches!(method, WindowMethod::Bank | WindowMethod::VirtualAccount)
        && cash_yn.trim().eq_ignore_ascii_case("y")
}

/// `pay_method` of KCP's PC window form (spec/kcp.md §1.1): the 12-digit bitmask of §2.3 that
/// the window answers in `use_pay_method`, and for the billing-key window KCP's PC spelling
/// `AUTH:CARD` (§2.2, with `card_cert_type=BATCH`).
pub fn pc_pay_method(method: WindowMethod) -> &'static str {
    use WindowMethod::*;
    match method {
        Card => "100000000000",
        Bank => "010000000000",
        VirtualAccount => "001000000000",
        Point => "000100000000",
        Phone => "000010000000",
        GiftCertificate => "000000001000",
        BatchKey => "AUTH:CARD",
    }
}

/// `use_pay_method` bitmask (spec/kcp.md §2.3) → iamport pay_method family, for checking that
/// the window paid the way it was opened.
pub fn method_of_bitmask(mask: &str) -> Option<WindowMethod> {
    use WindowMethod::*;
    Some(match mask {
        "100000000000" => Card,
        "010000000000" => Bank,
        "001000000000" => VirtualAccount,
        "000100000000" => Point,
        "000010000000" => Phone,
        "000000001000" => GiftCertificate,
        _ => return None,
    })
}

/// iamport `kcpProducts` (orderNumber, name, quantity, amount) with their text made fit for KCP
/// by the rules `good_name` follows (spec/kcp.md §6, [`for_kcp`]): script is refused, forbidden
/// characters become spaces. That includes every control character, so `good_info`'s own
/// separators (US 0x1F, RS 0x1E) cannot be smuggled in to add or rewrite fields or items. Names
/// take `good_name`'s 100 bytes, order numbers `ordr_idxx`'s 40.
pub fn escrow_items(
    items: &[(String, String, i64, i64)],
) -> Result<Vec<(String, String, i64, i64)>, ScriptRefused> {
    items
        .iter()
        .map(|(order, name, qty, amount)| {
            Ok((
                for_kcp("kcpProducts.orderNumber", order, 40)?,
                for_kcp("kcpProducts.name", name, 100)?,
                *qty,
                *amount,
            ))
        })
        .collect()
}

/// KCP's escrow `good_info`: fields separated by US (0x1F), items by RS (0x1E), no trailing
/// separator (spec/kcp.md §2.11).
pub fn escrow_good_info(items: &[(String, String, i64, i64)]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, (order, name, qty, amount))| {
            format!(
                "seq={}\u{1f}ordr_numb={}\u{1f}good_name={}\u{1f}good_cntx={}\u{1f}good_amtx={}",
                i + 1,
                order,
                name,
                qty,
                amount
            )
        })
        .collect::<Vec<_>>()
        .join("\u{1e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iamport_methods_open_the_right_kcp_window() {
        assert_eq!(window_plan("card", false).unwrap().kcp_pay_method, "CARD");
        assert_eq!(window_plan("trans", false).unwrap().action_result, "acnt");
        assert_eq!(window_plan("vbank", false).unwrap().kcp_pay_method, "VCNT");
        for easy_pay in EASY_PAY_METHODS {
            assert_eq!(
                window_plan(easy_pay, false).unwrap().method,
                WindowMethod::Card,
                "what earlier versions opened for {easy_pay}"
            );
        }
        let gift = window_plan("happymoney", false).unwrap();
        assert_eq!(
            (gift.kcp_pay_method, gift.van_code, gift.needs_shop_user_id),
            ("GIFT", Some("SCHM"), true)
        );
        let point = window_plan("point", false).unwrap();
        assert_eq!(
            (point.kcp_pay_method, point.van_code),
            ("TPNT", Some("SCWB")),
            "Benepia, not OK캐쉬백"
        );
        assert_eq!(window_plan("card", true).unwrap().kcp_pay_method, "AUTH");
        assert!(window_plan("paypal", false).is_none());
    }

    #[test]
    fn iamport_card_codes_name_every_kcp_issuer_code_that_answers_with_them() {
        assert_eq!(kcp_card_codes("366"), vec!["CCLG"]);
        assert_eq!(kcp_card_codes("374"), vec!["CCHN", "CCKE"]);
        assert_eq!(kcp_card_codes("368"), vec!["CCAM", "CCLO"]);
        assert!(kcp_card_codes("090").is_empty(), "no KCP code of its own");
        assert!(kcp_card_codes("*").is_empty());
    }

    #[test]
    fn product_text_loses_kcps_forbidden_characters_and_the_separators_of_good_info() {
        let items = escrow_items(&[(
            "o-1;2".into(),
            "양말\u{1f}good_amtx=1\u{1e}seq=9, \"blue\"".into(),
            2,
            1000,
        )])
        .unwrap();
        assert_eq!(
            items,
            vec![(
                "o-1 2".into(),
                "양말 good_amtx=1 seq=9   blue".into(),
                2,
                1000
            )]
        );
        let info = escrow_good_info(&items);
        assert_eq!(info.matches('\u{1f}').count(), 4);
        assert!(!info.contains('\u{1e}'));
    }

    #[test]
    fn script_in_a_product_is_refused_with_the_field_named() {
        let err = escrow_items(&[("o1".into(), "<script>x</script>".into(), 1, 1)]).unwrap_err();
        assert_eq!(err.field, "kcpProducts.name");
    }

    #[test]
    fn good_info_uses_us_and_rs_separators_without_a_trailing_one() {
        let s = escrow_good_info(&[
            ("o1".into(), "양말".into(), 2, 1000),
            ("o2".into(), "모자".into(), 1, 500),
        ]);
        assert_eq!(s, "seq=1\u{1f}ordr_numb=o1\u{1f}good_name=양말\u{1f}good_cntx=2\u{1f}good_amtx=1000\u{1e}seq=2\u{1f}ordr_numb=o2\u{1f}good_name=모자\u{1f}good_cntx=1\u{1f}good_amtx=500");
    }

    #[test]
    fn a_cash_receipt_is_taken_from_the_window_for_cash_methods_only() {
        assert!(cash_receipt_asked(WindowMethod::Bank, "Y"));
        assert!(cash_receipt_asked(WindowMethod::VirtualAccount, "y"));
        assert!(!cash_receipt_asked(WindowMethod::Bank, "N"));
        assert!(!cash_receipt_asked(WindowMethod::Bank, ""));
        assert!(!cash_receipt_asked(WindowMethod::Card, "Y"));
        assert!(!cash_receipt_asked(WindowMethod::Phone, "Y"));
    }
}
