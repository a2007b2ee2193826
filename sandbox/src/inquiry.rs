//! `POST /std/inquery`: what became of a transaction (spec/kcp.md §2.10). This is how the
//! gateway resolves an unknown outcome after a lost answer (spec §5).
//!
//! Assumption, which the gateway relies on (docs/sandbox.md): a caller that lost the approval
//! answer knows no tno, so it sends `order_no` (its `ordr_idxx`) with `tno` absent or empty,
//! signed over `site_cd^order_no^pay_type`; the latest approval for (site_cd, order_no) answers.
//!
//! Assumption (docs/sandbox.md §6): a Benepia point payment is inquired with `pay_type` PAPT and
//! answered like a card, minus the card fields, with `stat_pt_cd` in place of `stat_ca_cd`.
//! `pay_type` picks the kind: a PACA inquiry never finds a point payment, nor PAPT a card.
//! Window payments are inquired with their own `pay_type` (PABK, PAVC, PAMC, PATK); a virtual
//! account's answer also names the account (`bankcode`, `bankname`, `account`, `depositor`,
//! `va_name`, `va_date`: assumption, docs/sandbox.md §6).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::auth;
use crate::codes;
use crate::wire::{self, Fields, Refusal, Reply};
use crate::Shared;

pub(crate) async fn inquire(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match handle(&shared, &body) {
        Ok(reply) => reply.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// How the caller names the transaction.
enum Key<'a> {
    Tno(&'a str),
    OrderNo(&'a str),
}

fn handle(shared: &Shared, body: &Bytes) -> Result<Reply, Refusal> {
    let fields = Fields::parse(body)?;
    let site_cd = fields.site_cd()?;
    let merchant = auth::authenticate(&shared.ca, &fields, site_cd)?;
    let pay_type = fields.required("pay_type")?;
    let key = match (fields.optional("tno"), fields.optional("order_no")) {
        (Some(tno), _) => Key::Tno(tno),
        (None, Some(order_no)) => Key::OrderNo(order_no),
        (None, None) => {
            return Err(Refusal::new(
                codes::MISSING_FIELD,
                "필수 항목 tno (또는 order_no) 이(가) 없습니다.",
            ))
        }
    };
    let signed_id = match key {
        Key::Tno(tno) | Key::OrderNo(tno) => tno,
    };
    merchant.verify_signature(&fields, &format!("{site_cd}^{signed_id}^{pay_type}"))?;

    if !matches!(
        pay_type,
        "PACA" | "PAPT" | "PABK" | "PAVC" | "PAMC" | "PATK"
    ) {
        return Err(Refusal::new(
            codes::INVALID_FIELD,
            format!("샌드박스가 지원하지 않는 pay_type 입니다: {pay_type}"),
        ));
    }
    let ledger = shared.ledger();
    let entry = match key {
        Key::Tno(tno) => {
            if tno.len() != 14 || !wire::is_digits(tno) {
                return Err(Refusal::new(
                    codes::INVALID_FIELD,
                    "tno 는 숫자 14자리입니다.",
                ));
            }
            ledger
                .get(tno)
                .filter(|entry| entry.site_cd == site_cd && entry.pay_method == pay_type)
        }
        Key::OrderNo(order_no) => ledger.by_order_and_method(site_cd, order_no, pay_type),
    }
    .ok_or_else(|| Refusal::new(codes::NO_SUCH_TRANSACTION, codes::NO_SUCH_TRANSACTION_MSG))?;

    let mut reply = Reply::ok();
    reply
        .set("tno", entry.tno.as_str())
        .set("order_no", entry.order_no.as_str())
        .set("pay_method", entry.pay_method.as_str())
        .set("amount", entry.amount.to_string())
        .set("rem_mny", entry.balance.to_string());
    match &entry.card {
        Some(card) => {
            reply
                .set("stat_ca_cd", entry.state.stat_ca_cd())
                .set("app_time", entry.app_time.as_str())
                .set("app_no", entry.app_no.as_str())
                .set("card_no", card.masked_card_no.as_str())
                .set("card_cd", card.card_cd.as_str())
                .set("card_name", card.card_name.as_str())
                .set("quota", card.quota.as_str())
                .set("card_bin_type_01", card.bin_type_01.as_str())
                .set("card_bin_type_02", card.bin_type_02.as_str());
        }
        None => {
            // Bank transfer and phone follow spec §2.10 (`stat_bk_cd` + `bk_rem_mny`, `stat_hp_cd`
            // + `hp_rem_mny`); points, virtual accounts and gift certificates are assumptions.
            let (stat, rem) = match entry.pay_method.as_str() {
                "PABK" => ("stat_bk_cd", Some("bk_rem_mny")),
                "PAMC" => ("stat_hp_cd", Some("hp_rem_mny")),
                "PAVC" => ("stat_va_cd", None),
                "PATK" => ("stat_tk_cd", None),
                _ => ("stat_pt_cd", None),
            };
            reply
                .set(stat, entry.state.stat_ca_cd())
                .set("app_time", entry.app_time.as_str())
                .set("app_no", entry.app_no.as_str());
            if let Some(rem) = rem {
                reply.set(rem, entry.balance.to_string());
            }
            // Assumption (docs/sandbox.md §6): a virtual account's inquiry repeats the account of
            // the issuance answer, so a caller that lost that answer can still tell the buyer
            // where to pay.
            if entry.pay_method == "PAVC" {
                if let Some(account) = crate::window::vbank_account(shared, &entry.tno) {
                    crate::window::set_vbank_fields(&mut reply, &account);
                }
            }
        }
    }
    if let Some(canc_time) = entry.canc_time() {
        reply.set("canc_time", canc_time);
    }
    Ok(reply)
}
