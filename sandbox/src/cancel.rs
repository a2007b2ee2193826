//! `POST /gw/mod/v1/cancel`: full (`STSC`) and partial (`STPC`) cancels of a card approval
//! (spec/kcp.md §2.9), full cancels of a Benepia point payment (which give the points back) and
//! its partial cancel by re-approval (`STRA`, spec §2.8, seed 003; assumption in `point`), cancels
//! of window payments (bank transfer, phone, gift), the revocation of an unpaid virtual account
//! (`STSC` on an issued account closes it: later deposits are refused; assumption, docs/sandbox.md
//! §6), the refund of a virtual account holding deposits to an account the request names (`STHD`
//! whole, `STPD` a part, after verifying the account with `MDCP01`; an account holding deposits
//! takes no `STSC`/`STPC`: assumption from public merchant integrations, docs/sandbox.md §2.3),
//! escrow shipping start (`STE1`, in `escrow`) and escrow cancels (`STE2`/`STE4`/`STE5`, whole; an
//! escrow trade takes no `STSC`/`STPC`: rules in `escrow`); a paid escrow virtual account's
//! `STE2`/`STE4` may name the account its deposit goes back to, verified as `STHD`'s (assumption
//! from public merchant integrations, docs/sandbox.md §2.3).

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
    Cancel(Modification<'a>),
    /// `STRA`: a live point payment cancelled and its rest approved anew (assumption in `point`).
    Reapprove(Reapproval<'a>),
}

/// The kind of cancel asked for.
enum Modification<'a> {
    Full,
    Partial {
        mod_mny: i64,
        rem_mny: i64,
    },
    /// `STE2`, `STE4` or `STE5`: an escrow trade cancelled whole (rules in `escrow`). A paid
    /// escrow virtual account's `STE2`/`STE4` may name the account its deposit goes back to (`to`,
    /// the fields `STHD` names it with), verified as a refund's.
    Escrow {
        to: Option<RefundTo<'a>>,
    },
    /// `STHD` (`part` None: all that is left) or `STPD` (`part`: `mod_mny` of `rem_mny`): the
    /// money of a virtual account holding deposits sent back to the account `to` names.
    Refund {
        part: Option<(i64, i64)>,
        to: RefundTo<'a>,
    },
}

impl Modification<'_> {
    /// `STPC`, or `STPD`: a part of the balance.
    fn is_partial(&self) -> bool {
        matches!(
            self,
            Modification::Partial { .. } | Modification::Refund { part: Some(_), .. }
        )
    }
}

/// The account a refund (`STHD`/`STPD`) goes to, as the request names it.
struct RefundTo<'a> {
    account: &'a str,
    depositor: &'a str,
    /// `mod_comp_type` `MDCP01`: the account's holder is verified before the refund is registered;
    /// `MDCP02` registers it as named.
    verify: bool,
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
        "STHD" => {
            sub_type(&fields, &["MDSC00"])?;
            Request::Cancel(Modification::Refund {
                part: None,
                to: parse_refund_to(&fields)?,
            })
        }
        "STPD" => {
            sub_type(&fields, &["MDSC03", "MDSC04"])?;
            let part = (
                wire::amount("mod_mny", fields.required("mod_mny")?)?,
                wire::amount("rem_mny", fields.required("rem_mny")?)?,
            );
            Request::Cancel(Modification::Refund {
                part: Some(part),
                to: parse_refund_to(&fields)?,
            })
        }
        "STRA" => Request::Reapprove(parse_reapproval(&fields)?),
        "STE2" | "STE4" => Request::Cancel(Modification::Escrow {
            to: names_any_refund_field(&fields)
                .then(|| parse_refund_to(&fields))
                .transpose()?,
        }),
        "STE5" => Request::Cancel(Modification::Escrow { to: None }),
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
    let refund = matches!(modification, Modification::Refund { .. });
    // An escrow trade is cancelled by its escrow status change only, a plain one never by one;
    // and it is not refunded with STHD/STPD, which are no escrow status changes.
    match crate::escrow::shipped(shared, tno) {
        Some(_) if refund => {
            return Err(Refusal::new(
                codes::ESCROW_CANCEL_TYPE,
                "에스크로 거래는 STHD/STPD로 환불할 수 없습니다. 배송 전 STE2, 배송 후 STE4로 요청하십시오.",
            ))
        }
        Some(shipped) => crate::escrow::check_cancel(mod_type, entry.state, shipped)?,
        None if matches!(modification, Modification::Escrow { .. }) => {
            return Err(Refusal::new(codes::NOT_ESCROW, "에스크로 거래가 아닙니다."))
        }
        None => {}
    }
    // STHD/STPD send a virtual account's deposits back: nothing else takes them, nor an account
    // nobody paid into (revoked with STSC). Nor does an escrow cancel of anything but a virtual
    // account name an account to send money to.
    let names_account = refund || matches!(modification, Modification::Escrow { to: Some(_) });
    if names_account && entry.pay_method != "PAVC" {
        return Err(Refusal::new(
            codes::REFUND_NOT_VBANK,
            "가상계좌 거래가 아닙니다. STHD/STPD는 입금된 가상계좌의 환불에만 사용할 수 있습니다.",
        ));
    }
    if refund && !holds_deposits(shared, entry) {
        return Err(Refusal::new(
            codes::VBANK_NOT_DEPOSITED,
            "입금되지 않은 가상계좌는 환불할 수 없습니다. 발급취소는 STSC로 요청하십시오.",
        ));
    }
    // An unpaid virtual account can only be closed as a whole (STSC: revocation, assumption in
    // docs/sandbox.md §6; an escrow one's STE5; with deposits short of its amount, STHD); there is
    // nothing paid to refund part of.
    if entry.state == TransactionState::Issued && modification.is_partial() {
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
    // A deposit is refunded to an account the buyer names, with STHD/STPD; STSC/STPC name none
    // and would close the account and keep the money nowhere (docs/kcp.md §10.2, openport's model
    // of KCP from public merchant integrations), whatever else they carry. An escrow account's
    // `STE5` closes it as `STSC` closes a plain one, so the deposits short of its amount it may
    // hold are not closed without the account either: exempt, it let a deposit and a revocation
    // both succeed (docs/sandbox.md §2.3). `STE2`/`STE4` of a paid escrow account are KCP's escrow
    // refund (`escrow::check_cancel`), only with the account to refund to (checked below): without
    // one they too would cancel the trade and keep the money nowhere.
    if entry.pay_method == "PAVC" && holds_deposits(shared, entry) {
        let refused = match modification {
            Modification::Full | Modification::Partial { .. } => true,
            Modification::Escrow { ref to } => to.is_none(),
            Modification::Refund { .. } => false,
        };
        if refused {
            return Err(Refusal::new(
                codes::VBANK_REFUND_ACCOUNT_MISSING,
                "입금된 가상계좌는 환불계좌(mod_bankcode, mod_account, mod_depositor)를 지정해 STHD(전액) 또는 STPD(부분)로 환불해야 합니다.",
            ));
        }
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
    if let Modification::Refund { to, .. } | Modification::Escrow { to: Some(to) } = &modification {
        verify_refund_account(to)?;
    }
    let mod_desc = mod_desc.map(str::to_owned);

    let mut reply = Reply::ok();
    reply.set("tno", tno).set("canc_time", canc_time.as_str());
    match modification {
        Modification::Full
        | Modification::Escrow { .. }
        | Modification::Refund { part: None, .. } => {
            let balance = entry.balance;
            entry.record_cancel(mod_type, balance, canc_time, mod_desc);
            if let Some(point) = &entry.point {
                shared.points().refund(&point.account_id, balance);
            }
        }
        Modification::Partial { mod_mny, rem_mny }
        | Modification::Refund {
            part: Some((mod_mny, rem_mny)),
            ..
        } => {
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
            // A same-day full-amount cancel must be STSC (spec §2.9); a refund's, STHD.
            if mod_mny == entry.amount && kst_date(entry.approved_at) == kst_date(now) {
                return Err(Refusal::new(
                    codes::FULL_PARTIAL_CANCEL_SAME_DAY,
                    if refund {
                        "당일 전액 환불은 전액환불(STHD)로 요청하십시오."
                    } else {
                        "당일 전액 취소는 전체취소(STSC)로 요청하십시오."
                    },
                ));
            }
            let record = entry.record_cancel(mod_type, mod_mny, canc_time, mod_desc);
            let mod_mny = record.amount.to_string();
            reply
                .set("mod_mny", mod_mny.as_str())
                .set("rem_mny", record.balance_after.to_string())
                .set("mod_pacn_seq_no", record.seq.to_string());
            if !refund {
                reply.set("card_mod_mny", mod_mny);
            }
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

/// The account fields a refund names (docs/kcp.md §10.2).
const REFUND_ACCOUNT_FIELDS: [&str; 3] = ["mod_bankcode", "mod_account", "mod_depositor"];

/// Whether the cancel names the account a deposit is refunded to (every field of it).
fn names_refund_account(fields: &Fields) -> bool {
    REFUND_ACCOUNT_FIELDS
        .iter()
        .all(|name| fields.optional(name).is_some_and(|v| !v.trim().is_empty()))
}

/// Whether the cancel names any part of a refund account (an account field or `mod_comp_type`):
/// an escrow cancel that does is an escrow refund, whose account is then checked whole.
fn names_any_refund_field(fields: &Fields) -> bool {
    REFUND_ACCOUNT_FIELDS
        .iter()
        .chain(&["mod_comp_type"])
        .any(|name| fields.optional(name).is_some_and(|v| !v.trim().is_empty()))
}

/// `mod_sub_type`, required, one of `allowed` (`MDSC00` for `STHD`; `MDSC03`, or the mixed-tax
/// `MDSC04`, for `STPD`).
fn sub_type(fields: &Fields, allowed: &[&str]) -> Result<(), Refusal> {
    let sub_type = fields.required("mod_sub_type")?;
    if !allowed.contains(&sub_type) {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            format!("mod_sub_type 이 올바르지 않습니다: {sub_type}"),
        ));
    }
    Ok(())
}

/// A refund's account (`STHD`/`STPD`, or an escrow refund's `STE2`/`STE4`): every field of it
/// (`8508` otherwise), `mod_comp_type`
/// `MDCP01` (verify, then register) or `MDCP02` (register), `mod_bankcode` `BK` + 2 digits,
/// `mod_account` digits only (1 to 20), `mod_depositor` as any free text (§6; 60 bytes).
fn parse_refund_to(fields: &Fields) -> Result<RefundTo<'_>, Refusal> {
    if !names_refund_account(fields) {
        return Err(Refusal::new(
            codes::VBANK_REFUND_ACCOUNT_MISSING,
            "환불계좌(mod_bankcode, mod_account, mod_depositor)를 모두 지정하십시오.",
        ));
    }
    let verify = match fields.required("mod_comp_type")? {
        "MDCP01" => true,
        "MDCP02" => false,
        other => {
            return Err(Refusal::new(
                codes::INVALID_FIELD,
                format!("mod_comp_type 이 올바르지 않습니다: {other}"),
            ))
        }
    };
    let bankcode = fields.required("mod_bankcode")?;
    if bankcode.len() != 4 || !bankcode.starts_with("BK") || !wire::is_digits(&bankcode[2..]) {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            "mod_bankcode 는 BK + 숫자 2자리입니다.",
        ));
    }
    let account = fields.required("mod_account")?;
    if account.len() > 20 || !wire::is_digits(account) {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            "mod_account 는 숫자 20자리 이하입니다.",
        ));
    }
    let depositor = fields.required("mod_depositor")?;
    wire::check_text("mod_depositor", depositor, 60)?;
    Ok(RefundTo {
        account,
        depositor,
        verify,
    })
}

/// KCP's account verification (계좌인증, `MDCP01`) against the bank's record, played by the test
/// refund accounts (`test_refund_accounts`, docs/sandbox.md §3): an account that does not exist
/// (`8509`), one whose holder is not the one named (`8510`). Every other account verifies.
fn verify_refund_account(to: &RefundTo) -> Result<(), Refusal> {
    use crate::test_refund_accounts::{HOLDER, NAMED_HOLDER_ACCOUNT, NO_SUCH_ACCOUNT};
    if !to.verify {
        return Ok(());
    }
    if to.account == NO_SUCH_ACCOUNT {
        return Err(Refusal::new(
            codes::REFUND_ACCOUNT_NOT_FOUND,
            "계좌인증 실패: 존재하지 않는 계좌입니다.",
        ));
    }
    if to.account == NAMED_HOLDER_ACCOUNT && to.depositor.trim() != HOLDER {
        return Err(Refusal::new(
            codes::REFUND_HOLDER_MISMATCH,
            "계좌인증 실패: 예금주명이 일치하지 않습니다.",
        ));
    }
    Ok(())
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
