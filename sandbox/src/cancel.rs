//! `POST /gw/mod/v1/cancel`: full (`STSC`) and partial (`STPC`) cancels of a card approval
//! (spec/kcp.md §2.9), full cancels of a Benepia point payment (which give the points back) and
//! its partial cancel by re-approval (`STRA`, spec §2.8, seed 003; assumption in `point`), cancels of window payments (bank transfer, a paid
//! virtual account, phone, gift), the revocation of an unpaid virtual account (`STSC` on an issued
//! account closes it: later deposits are refused; assumption, docs/sandbox.md §6; an account
//! holding deposits takes `STSC`/`STPC` only with the account to refund them to), escrow
//! shipping start (`STE1`, in `escrow`) and escrow cancels (`STE2`/`STE4`/`STE5`, whole; an escrow
//! trade takes no `STSC`/`STPC`: rules in `escrow`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};

use crate::auth;
use crate::clock::{kcp_time, kst, kst_date};
use crate::codes;
use crate::ledger::{LedgerEntry, TransactionState};
use crate::point::{self, Reapproval};
use crate::wire::{self, Fields, Refusal, Reply};
use crate::Shared;

pub(crate) async fn cancel(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match handle(&shared, &body) {
        Ok(reply) => reply.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// What `mod_type` asks for.
enum Request<'a> {
    Cancel(Modification),
    /// `STRA`: a live point payment cancelled and its rest approved anew (assumption in `point`).
    Reapprove(Reapproval<'a>),
}

/// The kind of cancel asked for.
enum Modification {
    Full,
    Partial {
        mod_mny: i64,
        rem_mny: i64,
    },
    /// `STE2`, `STE4` or `STE5`: an escrow trade cancelled whole (rules in `escrow`).
    Escrow,
}

fn handle(shared: &Shared, body: &Bytes) -> Result<Reply, Refusal> {
    let fields = Fields::parse(body)?;
    let site_cd = fields.site_cd()?;
    let merchant = auth::authenticate(&shared.ca, &fields, site_cd)?;
    let tno = fields.required("tno")?;
    let mod_type = fields.required("mod_type")?;
    merchant.verify_signature(&fields, &format!("{site_cd}^{tno}^{mod_type}"))?;

    if tno.len() != 14 || !wire::is_digits(tno) {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            "tno 는 숫자 14자리입니다.",
        ));
    }
    let mod_desc = fields.optional("mod_desc");
    if let Some(desc) = mod_desc {
        wire::check_text("mod_desc", desc, 100)?;
    }
    if mod_type == "STE1" {
        return crate::escrow::ship(shared, site_cd, tno, &fields);
    }
    let request = match mod_type {
        "STSC" => Request::Cancel(Modification::Full),
        "STPC" => Request::Cancel(Modification::Partial {
            mod_mny: wire::amount("mod_mny", fields.required("mod_mny")?)?,
            rem_mny: wire::amount("rem_mny", fields.required("rem_mny")?)?,
        }),
        "STRA" => Request::Reapprove(parse_reapproval(&fields)?),
        "STE2" | "STE4" | "STE5" => Request::Cancel(Modification::Escrow),
        other => {
            return Err(Refusal::new(
                codes::INVALID_FIELD,
                format!("샌드박스가 지원하지 않는 mod_type 입니다: {other}"),
            ))
        }
    };

    let now = shared.now();
    let canc_time = kcp_time(now);
    let mut ledger = shared.ledger();
    let modification = match request {
        Request::Cancel(modification) => modification,
        Request::Reapprove(reapproval) => {
            return point::reapprove(shared, &mut ledger, site_cd, tno, canc_time, &reapproval)
        }
    };
    let entry = ledger
        .get_mut(tno)
        .filter(|entry| entry.site_cd == site_cd)
        .ok_or_else(|| Refusal::new(codes::NO_SUCH_TRANSACTION, codes::NO_SUCH_TRANSACTION_MSG))?;
    if entry.state == TransactionState::Cancelled {
        return Err(Refusal::new(
            codes::ALREADY_CANCELLED,
            "이미 취소된 거래입니다.",
        ));
    }
    // An escrow trade is cancelled by its escrow status change only, a plain one never by one.
    match crate::escrow::shipped(shared, tno) {
        Some(shipped) => crate::escrow::check_cancel(mod_type, entry.state, shipped)?,
        None if matches!(modification, Modification::Escrow) => {
            return Err(Refusal::new(codes::NOT_ESCROW, "에스크로 거래가 아닙니다."))
        }
        None => {}
    }
    // An unpaid virtual account can only be closed as a whole (STSC: revocation, assumption in
    // docs/sandbox.md §6; an escrow one's STE5); there is nothing paid to refund part of.
    if entry.state == TransactionState::Issued
        && matches!(modification, Modification::Partial { .. })
    {
        return Err(Refusal::new(
            codes::VBANK_NOT_DEPOSITED,
            "입금이 완료되지 않은 가상계좌는 부분취소할 수 없습니다.",
        ));
    }
    // An approval KCP answered `partcanc_yn N` takes no partial cancel (spec §2.4).
    if entry.card.as_ref().is_some_and(|card| !card.partial_cancel)
        && matches!(modification, Modification::Partial { .. })
    {
        return Err(Refusal::new(
            codes::PARTIAL_CANCEL_NOT_ALLOWED,
            "부분취소가 불가능한 거래입니다. 전체취소(STSC)로 요청하십시오.",
        ));
    }
    // A deposit is refunded to an account the buyer names; a cancel that names none would close
    // the account and keep the money nowhere (docs/kcp.md §10.2, openport's model of KCP). An
    // escrow account's `STE5` closes it as `STSC` closes a plain one, so the same rule holds for
    // the deposits short of its amount it may hold: exempt, it let a deposit and a revocation both
    // succeed (docs/sandbox.md §2.3). `STE2`/`STE4` of a paid escrow account are KCP's escrow
    // refund (`escrow::check_cancel`) and name no account.
    if entry.pay_method == "PAVC"
        && (!matches!(modification, Modification::Escrow) || mod_type == "STE5")
        && holds_deposits(shared, entry)
        && !names_refund_account(&fields)
    {
        return Err(Refusal::new(
            codes::VBANK_REFUND_ACCOUNT_MISSING,
            "입금된 가상계좌는 환불계좌(mod_bankcode, mod_account, mod_depositor)를 지정해야 취소할 수 있습니다.",
        ));
    }
    // A point payment is cancelled whole (STSC) or, a Benepia one, in part by re-approving the
    // rest (STRA): spec §2.8 and seed 003 give points no STPC. Keyed on the payment means, not on
    // the Benepia account, so a window's point payment (`TPNT`, `PAPT` without one) is refused too.
    if entry.pay_method == "PAPT" && matches!(modification, Modification::Partial { .. }) {
        return Err(Refusal::new(
            codes::POINT_PARTIAL_CANCEL,
            "포인트 거래는 부분취소(STPC)가 불가능합니다. 남길 금액으로 재승인(STRA)하십시오.",
        ));
    }
    check_method_rules(entry, &modification, now)?;
    let mod_desc = mod_desc.map(str::to_owned);

    let mut reply = Reply::ok();
    reply.set("tno", tno).set("canc_time", canc_time.as_str());
    match modification {
        Modification::Full | Modification::Escrow => {
            let balance = entry.balance;
            entry.record_cancel(mod_type, balance, canc_time, mod_desc);
            if let Some(point) = &entry.point {
                shared.points().refund(&point.account_id, balance);
            }
        }
        Modification::Partial { mod_mny, rem_mny } => {
            if mod_mny == 0 {
                return Err(Refusal::new(
                    codes::AMOUNT_ERROR,
                    "취소 금액은 0보다 커야 합니다.",
                ));
            }
            if rem_mny != entry.balance {
                return Err(Refusal::new(
                    codes::BALANCE_MISMATCH,
                    "취소 가능 잔액(rem_mny)이 일치하지 않습니다.",
                ));
            }
            if mod_mny > entry.balance {
                return Err(Refusal::new(
                    codes::CANCEL_EXCEEDS_BALANCE,
                    "취소 요청 금액이 취소 가능 잔액보다 큽니다.",
                ));
            }
            // A same-day full-amount cancel must be STSC (spec §2.9).
            if mod_mny == entry.amount && kst_date(entry.approved_at) == kst_date(now) {
                return Err(Refusal::new(
                    codes::FULL_PARTIAL_CANCEL_SAME_DAY,
                    "당일 전액 취소는 전체취소(STSC)로 요청하십시오.",
                ));
            }
            let record = entry.record_cancel(mod_type, mod_mny, canc_time, mod_desc);
            let mod_mny = record.amount.to_string();
            reply
                .set("mod_mny", mod_mny.as_str())
                .set("rem_mny", record.balance_after.to_string())
                .set("mod_pacn_seq_no", record.seq.to_string())
                .set("card_mod_mny", mod_mny);
        }
    }
    tracing::info!(
        tno,
        site_cd,
        mod_type,
        balance = entry.balance,
        "kcp sandbox cancelled"
    );
    Ok(reply)
}

/// Whether virtual account `entry` holds money: paid in full (`Approved`, or refunded in part), or
/// with deposits short of its amount (still `Issued`).
fn holds_deposits(shared: &Shared, entry: &LedgerEntry) -> bool {
    entry.state != TransactionState::Issued || crate::notify::deposited(shared, &entry.tno) > 0
}

/// Whether the cancel names the account a deposit is refunded to (every field of it).
fn names_refund_account(fields: &Fields) -> bool {
    ["mod_bankcode", "mod_account", "mod_depositor"]
        .iter()
        .all(|name| fields.optional(name).is_some_and(|v| !v.trim().is_empty()))
}

/// `mod_mny` (> 0), `mod_ordr_idxx`, `mod_ordr_goods` and `mod_desc` of an `STRA` (seed 003 §2.4).
fn parse_reapproval(fields: &Fields) -> Result<Reapproval<'_>, Refusal> {
    let mod_mny = wire::amount("mod_mny", fields.required("mod_mny")?)?;
    if mod_mny == 0 {
        return Err(Refusal::new(
            codes::AMOUNT_ERROR,
            "재승인 금액은 0보다 커야 합니다.",
        ));
    }
    let order_no = fields.optional("mod_ordr_idxx");
    if let Some(order_no) = order_no {
        wire::check_order_no("mod_ordr_idxx", order_no)?;
    }
    if let Some(goods) = fields.optional("mod_ordr_goods") {
        // 50 bytes (seed 003 §2.4), not characters: a Korean syllable is three.
        if goods.len() > 50 {
            return Err(Refusal::new(
                codes::INVALID_FIELD,
                "mod_ordr_goods 는 최대 50바이트입니다.",
            ));
        }
        wire::check_text("mod_ordr_goods", goods, 50)?;
    }
    Ok(Reapproval {
        mod_mny,
        order_no,
        mod_desc: fields.optional("mod_desc"),
    })
}

/// The cancel rules of phone (`PAMC`), gift-certificate (`PATK`) and bank-transfer (`PABK`)
/// trades (assumptions, docs/sandbox.md §4): phone and gift trades take no partial cancel
/// (`STPC`), a carrier refunds a phone payment only within the month (KST) it was approved in,
/// and a bank transfer takes a partial cancel from the day after its approval (KST) on.
fn check_method_rules(
    entry: &LedgerEntry,
    modification: &Modification,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let partial = matches!(modification, Modification::Partial { .. });
    if partial && matches!(entry.pay_method.as_str(), "PAMC" | "PATK") {
        return Err(Refusal::new(
            codes::PHONE_OR_GIFT_PARTIAL_CANCEL,
            "휴대폰/상품권 거래는 부분취소가 불가능합니다. 전체취소(STSC)로 요청하십시오.",
        ));
    }
    let month = |at: DateTime<Utc>| {
        let at = kst(at);
        (at.year(), at.month())
    };
    if entry.pay_method == "PAMC" && month(entry.approved_at) != month(now) {
        return Err(Refusal::new(
            codes::PHONE_CANCEL_AFTER_MONTH,
            "휴대폰 결제는 결제한 달에만 취소할 수 있습니다.",
        ));
    }
    if partial && entry.pay_method == "PABK" && kst_date(entry.approved_at) == kst_date(now) {
        return Err(Refusal::new(
            codes::BANK_PARTIAL_CANCEL_SAME_DAY,
            "실시간 계좌이체 부분취소는 결제일 익일부터 가능합니다.",
        ));
    }
    Ok(())
}
