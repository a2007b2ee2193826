//! Virtual-account issuance without a payment window: `POST /gw/hub/v1/payment` with
//! `pay_method` VCNT.
//!
//! The request is the one KCP's `pp_cli` VCNT sample and public merchant integrations of this hub
//! call send (docs/sandbox.md §2.3): the key-in order fields (`ordr_idxx`, `amount`, `currency`,
//! `good_name`, `buyr_*`; certificate, no signature: spec §3) plus the account's own `va_*`
//! fields — `va_txtype` 41100000, `va_mny` (the amount again, as key-in's `card_mny`),
//! `va_bankcode` (the window's `BKxx`), `va_name` (입금자명: who is expected to pay in, the buyer),
//! `va_date` (the deadline) and `va_receipt_gubn`. The answer is exactly the window's
//! virtual-account answer (§2.4), whose `depositor` is the account's holder (KCP's own name), and
//! the account joins the window's book, so deposits, notifications (§2.12), inquiry (`PAVC`) and
//! revocation (`STSC`) treat both alike. Refusal codes follow key-in's where the case is the same
//! (`8103` transaction type, `8059` amounts that differ, `8105` currency); `8504`/`8505` are the
//! sandbox's own.

use chrono::{DateTime, Utc};

use crate::clock::from_kcp_time;

use crate::codes;
use crate::hub;
use crate::ledger::TransactionState;
use crate::window::{self, BUYER, DEFAULT_DEPOSITOR};
use crate::wire::{self, Fields, Refusal, Reply};
use crate::Shared;

/// `va_txtype` of a virtual-account issuance (pp_cli's VCNT sample).
pub(crate) const ISSUE_TXTYPE: &str = "41100000";
/// `va_receipt_gubn` without a cash receipt, the only one the sandbox takes: it issues none.
const NO_CASH_RECEIPT: &str = "0";

/// A window-less issuance that passed every format check.
struct Issuance<'a> {
    order_no: &'a str,
    amount: i64,
    bank_code: &'a str,
    va_date: &'a str,
    /// Who is expected to pay in (`va_name`, else `buyr_name`, else [`BUYER`]): the answer's
    /// `va_name` and the `ipgm_name`/`remitter` of the account's deposit notifications.
    remitter: &'a str,
}

/// Checks in the order of the other hub calls: the transaction type (8103), order and text
/// fields, amount, `va_mny` (8059) and currency, then the account's own fields (bank 8504,
/// deadline 8505, cash receipt).
fn parse<'a>(shared: &Shared, fields: &'a Fields) -> Result<Issuance<'a>, Refusal> {
    let txtype = fields.required("va_txtype")?;
    if txtype != ISSUE_TXTYPE {
        return Err(Refusal::new(
            codes::TX_TYPE_ERROR,
            format!("가상계좌 발급의 va_txtype 은 {ISSUE_TXTYPE} 입니다: {txtype}"),
        ));
    }
    let order_no = hub::check_order_text(fields)?;
    let amount = wire::amount("amount", fields.required("amount")?)?;
    let va_mny = wire::amount("va_mny", fields.required("va_mny")?)?;
    if amount == 0 {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "입금금액은 0보다 커야 합니다.",
        ));
    }
    if amount != va_mny {
        return Err(Refusal::new(codes::AMOUNT_MISMATCH, "결제금액 불일치"));
    }
    if fields.required("currency")? != "410" {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "샌드박스는 원화(410)만 지원합니다.",
        ));
    }
    let depositor_name = fields.optional("va_name");
    if let Some(name) = depositor_name {
        wire::check_text("va_name", name, 30)?;
    }
    let bank_code = fields.required("va_bankcode")?;
    if window::known_bank(bank_code).is_none() {
        return Err(Refusal::new(
            codes::VBANK_BANK_ERROR,
            format!("가상계좌를 발급할 수 없는 은행코드입니다: {bank_code}"),
        ));
    }
    let va_date = fields.required("va_date")?;
    check_deadline(shared, va_date)?;
    if let Some(receipt) = fields.optional("va_receipt_gubn") {
        if receipt != NO_CASH_RECEIPT {
            return Err(Refusal::new(
                codes::INVALID_FIELD,
                format!("샌드박스는 현금영수증을 발급하지 않습니다(va_receipt_gubn 0): {receipt}"),
            ));
        }
    }
    Ok(Issuance {
        order_no,
        amount,
        bank_code,
        va_date,
        remitter: depositor_name
            .or(fields.optional("buyr_name"))
            .unwrap_or(BUYER),
    })
}

/// `va_date` is `yyyyMMddHHmmss` KST and must lie after now: an account that is already due could
/// never be paid.
fn check_deadline(shared: &Shared, va_date: &str) -> Result<(), Refusal> {
    let Some(due) = deadline(va_date) else {
        return Err(Refusal::new(
            codes::VBANK_DUE_ERROR,
            "va_date 는 yyyyMMddHHmmss 형식의 입금기한입니다.",
        ));
    };
    if due <= shared.now() {
        return Err(Refusal::new(
            codes::VBANK_DUE_ERROR,
            "입금기한(va_date)이 이미 지났습니다.",
        ));
    }
    Ok(())
}

/// The instant a `va_date` names; None when it is not one.
pub(crate) fn deadline(va_date: &str) -> Option<DateTime<Utc>> {
    if va_date.len() != 14 || !wire::is_digits(va_date) {
        return None;
    }
    from_kcp_time(va_date)
}

/// `pay_method` VCNT on the hub: records an `Issued` ledger entry (`PAVC`) and its account, and
/// answers the window's virtual-account fields. One standing order per (site, `ordr_idxx`), as
/// for cards (9520).
pub(crate) fn issue(shared: &Shared, fields: &Fields, site_cd: &str) -> Result<Reply, Refusal> {
    let issuance = parse(shared, fields)?;
    let mut ledger = shared.ledger();
    let mut entry = ledger.new_approval(
        site_cd,
        issuance.order_no,
        "PAVC",
        issuance.amount,
        shared.now(),
        shared.refuses_duplicate_orders(),
    )?;
    entry.state = TransactionState::Issued;
    // The holder is KCP's, as for a window account: the request names no holder.
    let account = window::open_vbank_account(
        shared,
        &entry.tno,
        issuance.bank_code,
        issuance.remitter,
        DEFAULT_DEPOSITOR,
        issuance.remitter,
        issuance.va_date,
    );
    let mut reply = Reply::ok();
    reply
        .set("res_en_msg", "processing completed")
        .set("tno", entry.tno.as_str())
        .set("amount", issuance.amount.to_string())
        .set("order_no", issuance.order_no)
        .set("pay_method", "PAVC")
        .set("app_time", entry.app_time.as_str())
        .set("trace_no", entry.trace_no.as_str())
        .set("escw_yn", "N");
    window::set_vbank_fields(&mut reply, &account);
    tracing::info!(tno = %entry.tno, site_cd, order_no = %issuance.order_no, amount = issuance.amount, bank_code = %issuance.bank_code, "kcp sandbox issued a virtual account without a window");
    ledger.insert(entry);
    Ok(reply)
}
