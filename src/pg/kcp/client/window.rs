//! [`PgCheckout`] for KCP's standard payment window (spec/kcp.md §1–2.5, §2.11): trade
//! registration, approval of the window's result at `gw/enc/v1/payment`, billing keys from the
//! batch window, and the escrow shipping start. The error semantics are the connector's (module
//! table in `client.rs`): transport failure, timeout, HTTP 5xx or an unreadable answer is
//! `Unknown`; a readable refusal is `Declined`; KCP approving another amount or order than asked,
//! or naming an amount that cannot be read, is `Mismatch { tno }`, which the gateway net-cancels.
//!
//! `enc_data` / `enc_info` never appear in a span, a log line or an error.

use crate::pg::ApprovedWindow;
use async_trait::async_trait;
use tracing::Instrument as _;

use super::{
    check_approval_matches, codes, refuse_unreadable_amounts, unreadable, unusable, Answer,
    KcpConnector,
};
use crate::pg::kcp::wire::window::{
    approval_identity, EscrowDeliveryBody, EscrowDeliveryResponse, TradeRegisterRequest,
    TradeRegisterResponse, WindowApprovalBody, WindowApprovalResponse, WindowBatchKeyBody,
    REGISTRATION_SUCCESS,
};
use crate::pg::kcp::wire::{
    parse_won, BatchKeyResponse, CardPaymentResponse, NamedAmounts, PAY_TYPE_BANK, PAY_TYPE_CARD,
    PAY_TYPE_GIFT, PAY_TYPE_PHONE,
};
use crate::pg::{
    BatchKey, CardApproval, DeclineReason, EscrowDelivery, PgCheckout, PgError, RegisteredTrade,
    TradeRef, TradeRegistration, TradeState, WindowApproval, WindowApprovalRequest, WindowMethod,
    Won,
};

/// The amounts of a card window's answer that are compared with the order's (spec/kcp.md §5,
/// [`check_approval_matches`]): `amount`, the trade's, always; `card_mny`, the card's part, unless
/// it is less than `amount`. `amount == card_mny` is the hub's contract (spec §2.6, §6: key-in and
/// billing-key charges, compared whole in `client.rs`); a window's trade is one KCP itself checked
/// against `ordr_mony` (§2.4, `8059`), and where the buyer used a KCP coupon or points in the
/// window the card pays only part of it (docs/kcp.md §5; unconfirmed, spec/kcp.md shows no such
/// answer). That answer is the order's trade, not another one, and net-cancelling it would refund
/// a payment the buyer made. A card part above the trade's amount charged the card more than the
/// order: still a mismatch. A `card_mny` that cannot be read is not a part: the answer does not
/// confirm what the card paid, and is refused ([`refuse_unreadable_amounts`]).
fn window_card_amounts(resp: &CardPaymentResponse) -> NamedAmounts {
    let won = |v: &Option<String>| v.as_deref().and_then(parse_won);
    match (won(&resp.amount), won(&resp.card_mny)) {
        (Some(amount), Some(card_mny)) if card_mny < amount => {
            tracing::warn!(
                amount,
                card_mny,
                "KCP card window approval: the card paid part of the trade (a coupon or points?)"
            );
            NamedAmounts {
                read: vec![amount],
                unreadable: Vec::new(),
            }
        }
        _ => resp.amounts_named(),
    }
}

/// The cross-check KCP's manual makes mandatory (spec/kcp.md §5), for every window method: an
/// approval for another amount or order must be net-cancelled. An answer without `order_no` (the
/// vbank sample has none) is taken to be about the order asked for.
/// `named` is every amount the answer names that reads as one
/// ([`WindowApprovalResponse::amounts_named`]): a bank transfer answered with `bk_mny` of the order
/// but another `amount` is a mismatch too. One naming an amount that cannot be read was refused
/// before ([`refuse_unreadable_amounts`]).
pub(super) fn check_window_matches(
    mut approval: WindowApproval,
    named: &[Won],
    amount: Won,
    order_no: &str,
) -> Result<WindowApproval, PgError> {
    let (tno, got_amount, got_order) = approval_identity(&mut approval);
    let mut problems = Vec::new();
    if got_amount != amount {
        problems.push(format!("amount {got_amount} (requested {amount})"));
    }
    for other in named.iter().filter(|a| **a != amount && **a != got_amount) {
        problems.push(format!("an amount named {other} (requested {amount})"));
    }
    let mut other_order = None;
    if got_order.is_empty() {
        order_no.clone_into(got_order);
    } else if got_order != order_no {
        problems.push(format!("order_no {got_order} (requested {order_no})"));
        other_order = Some(got_order.clone());
    }
    if problems.is_empty() {
        return Ok(approval);
    }
    let detail = problems.join(", ");
    tracing::error!(%tno, problems = %detail, "KCP approved something else; net-cancel required");
    Err(PgError::Mismatch {
        tno: tno.to_owned(),
        detail,
        other_order,
    })
}

#[async_trait]
impl PgCheckout for KcpConnector {
    /// `std/inquery` with the method's `pay_type` (PABK, PAMC, PATK). Virtual accounts are
    /// inquired elsewhere, under `PAVC` with their own states (`inquire_vbank`, client/vbank.rs);
    /// card-like methods under `PACA` (`inquire`); window points are not inquired and stay with
    /// the operator.
    async fn inquire_window(
        &self,
        trade: &TradeRef,
        method: WindowMethod,
    ) -> Result<TradeState, PgError> {
        let pay_type = match method {
            WindowMethod::Bank => PAY_TYPE_BANK,
            WindowMethod::Phone => PAY_TYPE_PHONE,
            WindowMethod::GiftCertificate => PAY_TYPE_GIFT,
            other => {
                return Err(PgError::Config(format!(
                    "no KCP inquiry for window method {other:?}"
                )))
            }
        };
        self.inquire_as(trade, pay_type, move |r| r.into_state_of(pay_type))
            .await
    }

    /// `std/tradeReg/register` (spec §2.1). Its answer carries `Code`/`Message`, not
    /// `res_cd`/`res_msg`: `Code` ≠ `0000` (`0001` missing parameter, `0002` bad parameter, `0003`
    /// authentication, `0004` failure) is `Declined` with [`DeclineReason::Other`]; no `Code`, an
    /// unreadable body, a 5xx or a transport failure is `Unknown`. Nothing is charged by a
    /// registration, so the caller may simply register again.
    async fn register_trade(&self, req: &TradeRegistration) -> Result<RegisteredTrade, PgError> {
        let span = tracing::info_span!("kcp.register_trade", site_cd = %self.site_cd, ordr_idxx = %req.order_no);
        async {
            let body = TradeRegisterRequest::new(&self.site_cd, &self.signer, req)?;
            let (status, text) = self.post(&self.urls.trade_register, &body).await?;
            let resp: TradeRegisterResponse =
                serde_json::from_str(&text).map_err(|e| unreadable(status, &e))?;
            let code = resp.code.as_deref().map(str::trim).unwrap_or_default();
            if code.is_empty() {
                return Err(PgError::Unknown(format!(
                    "KCP registration answer (HTTP {status}) has no Code"
                )));
            }
            tracing::info!(code, "KCP registration result");
            if code != REGISTRATION_SUCCESS {
                let code = code.to_owned();
                let message = resp.message.as_deref().map(str::trim).unwrap_or_default();
                return Err(PgError::Declined {
                    message: if message.is_empty() {
                        format!("KCP refused the trade registration (Code {code})")
                    } else {
                        message.to_owned()
                    },
                    code,
                    reason: DeclineReason::Other,
                });
            }
            resp.into_registered().map_err(unusable)
        }
        .instrument(span)
        .await
    }

    /// `gw/enc/v1/payment` with `ordr_mony`, `ordr_no` and the `pay_type` of `use_pay_method`
    /// (spec §2.3–§2.4). A mask outside the §2.3 table is refused before anything is sent. `8059`
    /// (KCP's own amount check failed, nothing approved) is an ordinary `Declined`.
    async fn approve_window(&self, req: &WindowApprovalRequest) -> Result<ApprovedWindow, PgError> {
        let span = tracing::info_span!("kcp.approve_window", site_cd = %self.site_cd, ordr_idxx = %req.order_no, pay_type = tracing::field::Empty, tno = tracing::field::Empty);
        async {
            let body = WindowApprovalBody::new(&self.site_cd, &self.signer, req)?;
            let pay_type = body.pay_type();
            tracing::Span::current().record("pay_type", pay_type);
            let url = &self.urls.enc_payment;
            let approval = if pay_type == PAY_TYPE_CARD {
                match self.exchange::<_, CardPaymentResponse>(url, &body).await? {
                    Answer::Refused { code, message } => {
                        return Err(codes::declined(&code, &message))
                    }
                    Answer::Success(resp) => {
                        warn_on_other_method(resp.pay_method.as_deref(), pay_type);
                        let escrow = escrow_of(resp.escw_yn.as_deref());
                        if let Some(tno) = resp.tno.as_deref() {
                            tracing::Span::current().record("tno", tno.trim());
                        }
                        let named = window_card_amounts(&resp);
                        refuse_unreadable_amounts(
                            resp.tno.as_deref(),
                            resp.order_no.as_deref(),
                            &named,
                            req.amount,
                            &req.order_no,
                        )?;
                        let card = CardApproval::try_from(resp).map_err(unusable)?;
                        ApprovedWindow {
                            approval: WindowApproval::Card(check_approval_matches(
                                card,
                                &named.read,
                                req.amount,
                                &req.order_no,
                            )?),
                            escrow,
                        }
                    }
                }
            } else {
                match self
                    .exchange::<_, WindowApprovalResponse>(url, &body)
                    .await?
                {
                    Answer::Refused { code, message } => {
                        return Err(codes::declined(&code, &message))
                    }
                    Answer::Success(resp) => {
                        warn_on_other_method(resp.pay_method.as_deref(), pay_type);
                        if let Some(tno) = resp.tno.as_deref() {
                            tracing::Span::current().record("tno", tno.trim());
                        }
                        let escrow = escrow_of(resp.escw_yn.as_deref());
                        let named = resp.amounts_named();
                        refuse_unreadable_amounts(
                            resp.tno.as_deref(),
                            resp.order_no.as_deref(),
                            &named,
                            req.amount,
                            &req.order_no,
                        )?;
                        let approval = resp.into_approval(pay_type).map_err(unusable)?;
                        ApprovedWindow {
                            approval: check_window_matches(
                                approval,
                                &named.read,
                                req.amount,
                                &req.order_no,
                            )?,
                            escrow,
                        }
                    }
                }
            };
            Ok(approval)
        }
        .instrument(span)
        .await
    }

    /// `gw/enc/v1/payment` with `tran_cd 00300001` and no `ordr_mony` (spec §2.4); the §2.5 answer
    /// is read like a hub-issued key. A success without `batch_key` is `Unknown` (KCP may hold a
    /// key we cannot name). Without `card_mask_no` in the answer the masked number is empty: the
    /// caller has the one the window posted to `Ret_URL`.
    async fn issue_batch_key_from_window(
        &self,
        req: &WindowApprovalRequest,
    ) -> Result<BatchKey, PgError> {
        let span = tracing::info_span!("kcp.batch_key_window", site_cd = %self.site_cd, ordr_idxx = %req.order_no);
        async {
            let body = WindowBatchKeyBody::new(&self.site_cd, &self.signer, req)?;
            match self
                .exchange::<_, BatchKeyResponse>(&self.urls.enc_payment, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => {
                    let key = resp.into_window_batch_key().map_err(unusable)?;
                    tracing::info!(issuer = %key.issuer_code, "KCP issued a billing key from the window");
                    Ok(key)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// `gw/mod/v1/cancel` `mod_type STE1`, signed over `site_cd^tno^STE1` — documented assumption
    /// (spec §2.11, docs/kcp.md §9.4). An answer naming another `tno` says nothing about ours and
    /// is `Unknown`.
    async fn escrow_delivery(&self, req: &EscrowDelivery) -> Result<(), PgError> {
        let span =
            tracing::info_span!("kcp.escrow_delivery", site_cd = %self.site_cd, tno = %req.tno);
        async {
            let body = EscrowDeliveryBody::new(&self.site_cd, &self.signer, req)?;
            match self
                .exchange::<_, EscrowDeliveryResponse>(&self.urls.cancel, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => match resp.tno.as_deref().map(str::trim) {
                    Some(tno) if !tno.is_empty() && tno != req.tno.trim() => Err(PgError::Unknown(
                        format!("KCP escrow answer names tno {tno}"),
                    )),
                    _ => Ok(()),
                },
            }
        }
        .instrument(span)
        .await
    }
}

/// KCP answering with another method than the one asked for is odd but not, by itself, a reason
/// to refuse money that moved: the answer is still read as `pay_type` (and fails as `Unknown` if it
/// lacks that method's required fields).
fn warn_on_other_method(answered: Option<&str>, asked: &str) {
    if let Some(answered) = answered.map(str::trim).filter(|m| !m.is_empty()) {
        if answered != asked {
            tracing::warn!(
                answered,
                asked,
                "KCP answered a window approval with another pay_method"
            );
        }
    }
}

/// KCP's `escw_yn`: `Y` escrow, `N` plain, anything else unsaid.
fn escrow_of(escw_yn: Option<&str>) -> Option<bool> {
    match escw_yn.map(str::trim) {
        Some("Y") => Some(true),
        Some("N") => Some(false),
        _ => None,
    }
}
