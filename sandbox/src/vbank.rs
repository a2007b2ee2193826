//! Virtual-account issuance without a payment window: `POST /gw/hub/v1/payment` with
//! `pay_method` VCNT.
//!
//! Assumption (docs/sandbox.md §2.3, §6): KCP publishes no server-side issuance of a virtual
//! account (spec/kcp.md §2.4 shows only the window's answer). The request is modelled on the other
//! hub calls (certificate, no signature: spec §3; `ordr_idxx`, `amount`, `good_name`, `buyr_*` as
//! key-in §2.7) plus `bank_code` (the window's `BKxx` codes), `va_date` (the deadline, the
//! answer's own field) and an optional `va_name` (the holder to show). The answer is exactly the
//! window's virtual-account answer (§2.4), and the account joins the window's book, so deposits,
//! notifications (§2.12), inquiry (`PAVC`) and revocation (`STSC`) treat both alike.

use chrono::{DateTime, Utc};

use crate::clock::from_kcp_time;

use crate::codes;
use crate::hub;
use crate::ledger::TransactionState;
use crate::window::{self, BUYER, DEFAULT_DEPOSITOR};
use crate::wire::{self, Fields, Refusal, Reply};
use crate::Shared;

/// A window-less issuance that passed every format check.
struct Issuance<'a> {
    order_no: &'a str,
    amount: i64,
    bank_code: &'a str,
    va_date: &'a str,
    /// The holder to show (`va_name`), if the merchant named one.
    holder: Option<&'a str>,
    buyer: &'a str,
}

/// Checks in the order of the other hub calls: order and text fields, amount, then the account's
/// own fields (bank 8504, deadline 8505).
fn parse<'a>(shared: &Shared, fields: &'a Fields) -> Result<Issuance<'a>, Refusal> {
    let order_no = hub::check_order_text(fields)?;
    let amount = wire::amount("amount", fields.required("amount")?)?;
    if amount == 0 {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "입금금액은 0보다 커야 합니다.",
        ));
    }
    let holder = fields.optional("va_name");
    if let Some(holder) = holder {
        wire::check_text("va_name", holder, 30)?;
    }
    let bank_code = fields.required("bank_code")?;
    if window::known_bank(bank_code).is_none() {
        return Err(Refusal::new(
            codes::VBANK_BANK_ERROR,
            format!("가상계좌를 발급할 수 없는 은행코드입니다: {bank_code}"),
        ));
    }
    let va_date = fields.required("va_date")?;
    check_deadline(shared, va_date)?;
    Ok(Issuance {
        order_no,
        amount,
        bank_code,
        va_date,
        holder,
        buyer: fields.optional("buyr_name").unwrap_or(BUYER),
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
    let account = window::open_vbank_account(
        shared,
        &entry.tno,
        issuance.bank_code,
        issuance.buyer,
        issuance.holder.unwrap_or(DEFAULT_DEPOSITOR),
        issuance.holder.unwrap_or(issuance.buyer),
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
