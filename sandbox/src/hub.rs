//! `POST /gw/hub/v1/payment`: payments without a window, dispatched on `pay_method`:
//! key-in card payments (`CARD`, spec/kcp.md §2.7, here), batch payments and batch key
//! issuance (`CARD` with `card_tx_type` 11511000 / 12100000) and deletion (`BATCH`) in `batch`
//! (§2.5, §2.6), Benepia points (`POINT`) in `point` (§2.8), virtual accounts without a window
//! (`VCNT`, an assumption) in `vbank`.
//!
//! The card checks and the card approval answer live here and are shared with batch payments.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Datelike;

use crate::auth;
use crate::batch;
use crate::clock::kst;
use crate::codes;
use crate::ledger::{self, CardSummary, LedgerEntry};
use crate::point;
use crate::test_cards::{self, Issuer, IssuerDecision};
use crate::vbank;
use crate::wire::{self, Fields, Refusal, Reply};
use crate::Shared;

/// `card_tx_type` for key-in with birth date/business number and PIN prefix (spec §2.7).
const AUTHENTICATED_KEY_IN: &str = "11121000";
/// `card_tx_type` for key-in with card number and expiry only (spec §2.7).
const NON_AUTHENTICATED_KEY_IN: &str = "11111000";
/// Installments are allowed from 50,000 KRW (spec §4).
const INSTALLMENT_MINIMUM: i64 = 50_000;

pub(crate) async fn payment(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match handle(&shared, &body) {
        Ok(reply) => reply.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

fn handle(shared: &Shared, body: &Bytes) -> Result<Reply, Refusal> {
    let fields = Fields::parse(body)?;
    let site_cd = fields.site_cd()?;
    // Hub payments carry a certificate but no signature (spec §3).
    auth::authenticate(&shared.ca, &fields, site_cd)?;
    match fields.required("pay_method")? {
        "CARD" => match fields.optional("card_tx_type") {
            Some(batch::BATCH_PAYMENT) => batch::pay(shared, &fields, site_cd),
            Some(batch::BATCH_ISSUE) => batch::issue(shared, &fields, site_cd),
            _ => key_in(shared, &fields, site_cd),
        },
        "BATCH" => batch::manage(shared, &fields, site_cd),
        "POINT" => point::hub(shared, &fields, site_cd),
        "VCNT" => vbank::issue(shared, &fields, site_cd),
        other => Err(Refusal::new(
            codes::PAY_METHOD_ERROR,
            format!("샌드박스가 지원하지 않는 pay_method 입니다: {other}"),
        )),
    }
}

/// The birth date / business number and PIN prefix of an authenticated key-in.
pub(crate) struct CardHolderProof<'a> {
    taxno: &'a str,
    pin_prefix: &'a str,
}

/// The order part of a card charge (key-in or batch), format-checked.
pub(crate) struct CardOrder<'a> {
    pub order_no: &'a str,
    pub amount: i64,
    pub quota: &'a str,
}

/// A key-in request that passed every format check.
struct KeyIn<'a> {
    order: CardOrder<'a>,
    card_no: &'a str,
    proof: Option<CardHolderProof<'a>>,
}

fn parse_key_in<'a>(shared: &Shared, fields: &'a Fields) -> Result<KeyIn<'a>, Refusal> {
    let tx_type = fields.required("card_tx_type")?;
    let authenticated = match tx_type {
        AUTHENTICATED_KEY_IN => true,
        NON_AUTHENTICATED_KEY_IN => false,
        other => {
            return Err(Refusal::new(
                codes::TX_TYPE_ERROR,
                format!("샌드박스가 지원하지 않는 card_tx_type 입니다: {other}"),
            ))
        }
    };

    let order = parse_card_order(fields)?;
    let card_no = fields.required("card_no")?;
    check_card_number(card_no)?;
    check_expiry(shared, fields.required("card_expiry")?)?;

    let proof = if authenticated {
        Some(parse_holder_proof(
            fields.required("card_taxno")?,
            fields.required("card_pwd")?,
        )?)
    } else {
        // A non-authenticated key-in has no business sending a PIN or birth date.
        if fields.optional("card_taxno").is_some() || fields.optional("card_pwd").is_some() {
            return Err(Refusal::new(
                codes::AUTHENTICATION_ERROR,
                "비인증 결제(11111000)에는 card_taxno/card_pwd 를 보내지 않습니다.",
            ));
        }
        None
    };

    Ok(KeyIn {
        order,
        card_no,
        proof,
    })
}

/// The order fields every hub charge opens with (spec §2.7, §6): `ordr_idxx` (returned; letters
/// and digits only), `good_name`, and the optional `buyr_name`, `buyr_mail`, `buyr_tel2`.
pub(crate) fn check_order_text(fields: &Fields) -> Result<&str, Refusal> {
    let order_no = fields.required("ordr_idxx")?;
    wire::check_order_no("ordr_idxx", order_no)?;
    wire::check_text("good_name", fields.required("good_name")?, 100)?;
    for (name, max) in [("buyr_name", 30), ("buyr_mail", 50), ("buyr_tel2", 20)] {
        if let Some(value) = fields.optional(name) {
            wire::check_text(name, value, max)?;
        }
    }
    Ok(order_no)
}

/// `ordr_idxx` … `quota` of a card charge, checked in the order KCP lists them (spec §2.6, §2.7).
pub(crate) fn parse_card_order(fields: &Fields) -> Result<CardOrder<'_>, Refusal> {
    let order_no = check_order_text(fields)?;

    let amount = wire::amount("amount", fields.required("amount")?)?;
    let card_mny = wire::amount("card_mny", fields.required("card_mny")?)?;
    if amount == 0 {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "결제금액은 0보다 커야 합니다.",
        ));
    }
    if amount != card_mny {
        return Err(Refusal::new(codes::AMOUNT_MISMATCH, "결제금액 불일치"));
    }
    if fields.required("currency")? != "410" {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "샌드박스는 원화(410)만 지원합니다.",
        ));
    }

    let quota = fields.required("quota")?;
    if quota.len() != 2 || !wire::is_digits(quota) {
        return Err(Refusal::new(
            codes::INSTALLMENT_ERROR,
            "할부개월 형식이 올바르지 않습니다.",
        ));
    }
    if quota != "00" && amount < INSTALLMENT_MINIMUM {
        return Err(Refusal::new(
            codes::INSTALLMENT_ERROR,
            "5만원 미만은 할부가 불가능합니다.",
        ));
    }

    Ok(CardOrder {
        order_no,
        amount,
        quota,
    })
}

/// 13–16 digits (8107) passing Luhn (8108), spec §4.
pub(crate) fn check_card_number(card_no: &str) -> Result<(), Refusal> {
    if !(13..=16).contains(&card_no.len()) || !wire::is_digits(card_no) {
        return Err(Refusal::new(
            codes::CARD_NUMBER_FORMAT,
            "카드번호 형식이 올바르지 않습니다.",
        ));
    }
    // KCP's guide card fails Luhn; the issuer step decides it (test server only).
    if card_no != test_cards::KCP_GUIDE_CARD && !test_cards::luhn_valid(card_no) {
        return Err(card_number_error());
    }
    Ok(())
}

fn card_number_error() -> Refusal {
    Refusal::new(codes::CARD_NUMBER_ERROR, "카드번호 오류")
}

/// `card_taxno` (6-digit birth date or 10-digit business number) and `card_pwd` (2 digits),
/// format only (8110).
pub(crate) fn parse_holder_proof<'a>(
    taxno: &'a str,
    pin_prefix: &'a str,
) -> Result<CardHolderProof<'a>, Refusal> {
    check_taxno(taxno)?;
    if pin_prefix.len() != 2 || !wire::is_digits(pin_prefix) {
        return Err(Refusal::new(
            codes::AUTHENTICATION_ERROR,
            "비밀번호 앞 2자리 형식이 올바르지 않습니다.",
        ));
    }
    Ok(CardHolderProof { taxno, pin_prefix })
}

pub(crate) fn check_taxno(taxno: &str) -> Result<(), Refusal> {
    if !(taxno.len() == 6 || taxno.len() == 10) || !wire::is_digits(taxno) {
        return Err(Refusal::new(
            codes::AUTHENTICATION_ERROR,
            "생년월일(6자리) 또는 사업자번호(10자리) 형식이 올바르지 않습니다.",
        ));
    }
    Ok(())
}

/// The PIN prefix must be [`test_cards::PIN_PREFIX`]; [`test_cards::WRONG_BIRTH`] never matches.
pub(crate) fn check_pin_prefix(pin_prefix: &str) -> Result<(), Refusal> {
    if pin_prefix != test_cards::PIN_PREFIX {
        return Err(Refusal::new(
            codes::AUTHENTICATION_ERROR,
            "비밀번호가 일치하지 않습니다.",
        ));
    }
    Ok(())
}

pub(crate) fn check_birth(taxno: &str) -> Result<(), Refusal> {
    if taxno == test_cards::WRONG_BIRTH {
        return Err(Refusal::new(
            codes::AUTHENTICATION_ERROR,
            "생년월일이 일치하지 않습니다.",
        ));
    }
    Ok(())
}

/// `card_expiry` is YYMM; a card is good through the last day of that month (KST).
pub(crate) fn check_expiry(shared: &Shared, expiry: &str) -> Result<(), Refusal> {
    let format_error = || Refusal::new(codes::EXPIRY_ERROR, "유효기간 형식이 올바르지 않습니다.");
    if expiry.len() != 4 || !wire::is_digits(expiry) {
        return Err(format_error());
    }
    let year = 2000 + expiry[..2].parse::<i32>().map_err(|_| format_error())?;
    let month = expiry[2..].parse::<u32>().map_err(|_| format_error())?;
    if !(1..=12).contains(&month) {
        return Err(format_error());
    }
    let today = kst(shared.now());
    if (year, month) < (today.year(), today.month()) {
        return Err(Refusal::new(
            codes::EXPIRY_ERROR,
            "유효기간이 만료된 카드입니다.",
        ));
    }
    Ok(())
}

fn key_in(shared: &Shared, fields: &Fields, site_cd: &str) -> Result<Reply, Refusal> {
    let payment = parse_key_in(shared, fields)?;
    let issuer = test_cards::issuer(payment.card_no);

    if let Some(proof) = &payment.proof {
        check_pin_prefix(proof.pin_prefix)?;
        check_birth(proof.taxno)?;
    }
    issuer_decides(shared, &issuer)?;
    let card = card_summary(
        &issuer,
        test_cards::mask(payment.card_no),
        payment.order.quota,
    );
    let mut ledger = shared.ledger();
    let reply = approve(shared, &mut ledger, site_cd, &payment.order, card, &issuer)?;
    tracing::info!(tno = %reply.tno, site_cd, order_no = %payment.order.order_no, amount = payment.order.amount, "kcp sandbox approved key-in payment");
    Ok(reply.reply)
}

/// The issuer's answer to a charge that passed every format check (spec §4, test cards).
pub(crate) fn issuer_decides(shared: &Shared, issuer: &Issuer) -> Result<(), Refusal> {
    match issuer.decision {
        IssuerDecision::Approve => Ok(()),
        IssuerDecision::RefuseInTestMode if !shared.config.test_mode => Ok(()),
        IssuerDecision::RefuseInTestMode => Err(Refusal::new(
            codes::CARD_NOT_ALLOWED,
            "KCP 테스트 모드에서는 국민카드(KB) 승인이 불가합니다.",
        )),
        IssuerDecision::DailyLimit => Err(Refusal::new(codes::DAILY_LIMIT, "일일한도초과")),
        IssuerDecision::MonthlyLimit => Err(Refusal::new(codes::MONTHLY_LIMIT, "월한도초과")),
        IssuerDecision::LimitExceeded => Err(Refusal::new(codes::LIMIT_EXCEEDED, "한도초과")),
        IssuerDecision::TestServerOnly if shared.config.test_mode => Ok(()),
        IssuerDecision::TestServerOnly => Err(card_number_error()),
    }
}

/// The card facts the ledger keeps: masked number and issuer only.
pub(crate) fn card_summary(issuer: &Issuer, masked_card_no: String, quota: &str) -> CardSummary {
    CardSummary {
        masked_card_no,
        card_cd: issuer.card_cd.to_owned(),
        card_name: issuer.card_name.to_owned(),
        quota: quota.to_owned(),
        bin_type_01: "0".to_owned(),
        bin_type_02: issuer.bin_type_02.to_owned(),
        partial_cancel: issuer.partial_cancel,
    }
}

/// A card approval's answer and its tno.
pub(crate) struct Approval {
    pub tno: String,
    pub reply: Reply,
}

/// Records a card approval (`PACA`) and builds the card approval answer of spec §2.4, for key-in
/// and batch payments alike. The caller holds the ledger so its checks and this insert are one step.
pub(crate) fn approve(
    shared: &Shared,
    ledger: &mut ledger::Ledger,
    site_cd: &str,
    order: &CardOrder<'_>,
    card: CardSummary,
    issuer: &Issuer,
) -> Result<Approval, Refusal> {
    let mut entry = ledger.new_approval(
        site_cd,
        order.order_no,
        "PACA",
        order.amount,
        shared.now(),
        shared.refuses_duplicate_orders(),
    )?;
    entry.card = Some(card);
    let reply = approval_reply(&entry, issuer);
    let tno = entry.tno.clone();
    ledger.insert(entry);
    Ok(Approval { tno, reply })
}

fn approval_reply(entry: &LedgerEntry, issuer: &Issuer) -> Reply {
    let amount = entry.amount.to_string();
    let (masked_card_no, quota) = entry
        .card
        .as_ref()
        .map(|card| (card.masked_card_no.as_str(), card.quota.as_str()))
        .unwrap_or_default();
    // VAT is 1/11 of a VAT-inclusive amount, rounded (1000 → 91 in KCP's real answer, §2.4).
    let vat = (2 * entry.amount + 11) / 22;
    let mut reply = Reply::ok();
    reply
        .set("res_en_msg", "processing completed")
        .set("tno", entry.tno.as_str())
        .set("amount", amount.as_str())
        .set("card_mny", amount.as_str())
        .set("order_no", entry.order_no.as_str())
        .set("pay_method", "PACA")
        .set("app_time", entry.app_time.as_str())
        .set("app_no", entry.app_no.as_str())
        .set("trace_no", entry.trace_no.as_str())
        .set("card_cd", issuer.card_cd)
        .set("card_name", issuer.card_name)
        .set("acqu_cd", issuer.card_cd)
        .set("acqu_name", issuer.card_name)
        .set("card_no", masked_card_no)
        .set("quota", quota)
        .set("noinf", "N")
        .set("partcanc_yn", if issuer.partial_cancel { "Y" } else { "N" })
        .set("card_bin_type_01", "0")
        .set("card_bin_type_02", issuer.bin_type_02)
        .set("card_bin_bank_cd", issuer.bank_cd)
        .set("escw_yn", "N")
        .set("van_cd", "VNKC")
        .set("van_apptime", entry.app_time.as_str())
        .set("res_tax_flag", "TG03")
        .set("res_tax_mny", (entry.amount - vat).to_string())
        .set("res_vat_mny", vat.to_string())
        .set("res_free_mny", "0")
        .set("mall_taxno", "0000000000")
        .set("mcht_taxno", "0000000000");
    reply
}
