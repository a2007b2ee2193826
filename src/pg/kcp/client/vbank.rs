//! [`PgVirtualAccounts`] for KCP — DOCUMENTED ASSUMPTION (docs/kcp.md §10): issuance without the
//! window on the hub (`pay_method VCNT`), revocation by a full cancel (`STSC`; `STE5` for an escrow account), inquiry with
//! `pay_type PAVC`. The error semantics are the connector's (module table in `client.rs`):
//! transport failure, timeout, HTTP 5xx or an unreadable answer is `Unknown` (KCP may have issued
//! an account; the service inquires by order number, never guesses); a readable refusal is
//! `Declined`; an account for another amount or order, or naming an amount that cannot be read,
//! is `Mismatch { tno }`, which the service revokes.

use async_trait::async_trait;
use tracing::Instrument as _;

use super::window::check_window_matches;
use super::{codes, refuse_unreadable_amounts, unusable, Answer, KcpConnector};
use crate::pg::kcp::codes::NO_SUCH_TRADE;
use crate::pg::kcp::wire::vbank::{issued_account, VbankIssueBody};
use crate::pg::kcp::wire::window::{WindowApprovalResponse, PAY_TYPE_VBANK};
use crate::pg::kcp::wire::{InquiryRequest, InquiryResponse};
use crate::pg::{
    CancelConfirmation, CancelKind, CancelRequest, EscrowCancel, IssuedVirtualAccount, PgConnector,
    PgError, PgVirtualAccounts, TradeRef, VbankIssueRequest, VbankState,
};

#[async_trait]
impl PgVirtualAccounts for KcpConnector {
    /// `gw/hub/v1/payment` with `pay_method VCNT`; the §2.4 answer is read by the window's parser:
    /// `tno`, `amount`, `account` and a readable `va_date` are required (else `Unknown`: an account
    /// may exist that the buyer cannot be told about), then the spec §5 cross-check.
    async fn issue_vbank(&self, req: &VbankIssueRequest) -> Result<IssuedVirtualAccount, PgError> {
        let span = tracing::info_span!("kcp.issue_vbank", site_cd = %self.site_cd, ordr_idxx = %req.order_no, tno = tracing::field::Empty);
        async {
            let body = VbankIssueBody::new(&self.site_cd, &self.signer, req)?;
            match self
                .exchange::<_, WindowApprovalResponse>(&self.urls.hub, &body)
                .await?
            {
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(resp) => {
                    if let Some(tno) = resp.tno.as_deref() {
                        tracing::Span::current().record("tno", tno.trim());
                    }
                    let named = resp.amounts_named();
                    refuse_unreadable_amounts(
                        resp.tno.as_deref(),
                        resp.order_no.as_deref(),
                        &named,
                        req.amount,
                        &req.order_no,
                    )?;
                    let approval = resp.into_approval(PAY_TYPE_VBANK).map_err(unusable)?;
                    let approval =
                        check_window_matches(approval, &named.read, req.amount, &req.order_no)?;
                    issued_account(approval).map_err(unusable)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The cancel call's `STSC` on the account's `tno`: for an unpaid account KCP has nothing to
    /// refund and closes it, so deposits are refused from then on. An escrow account is closed
    /// with `STE5` instead (spec §2.11, documented assumption: docs/kcp.md §9.5), once: when KCP
    /// refuses it, the service renews its attempt and asks again with `escrow` false
    /// (`Gateway::cancel_at_kcp`, service/cancel.rs).
    async fn revoke_vbank(
        &self,
        tno: &str,
        escrow: bool,
        reason: &str,
    ) -> Result<CancelConfirmation, PgError> {
        let span =
            tracing::info_span!("kcp.revoke_vbank", site_cd = %self.site_cd, tno = %tno, escrow);
        self.cancel(&CancelRequest {
            tno: tno.to_owned(),
            kind: if escrow {
                CancelKind::Escrow(EscrowCancel::CloseVbank)
            } else {
                CancelKind::Full
            },
            reason: reason.to_owned(),
        })
        .instrument(span)
        .await
    }

    /// `std/inquery` with `pay_type PAVC` (by `tno`, or by order number when the issuance answer
    /// was lost, docs/kcp.md §4); `8201` is `NotFound`. An answer naming another `tno` / order than
    /// the one asked for says nothing about ours and is `Unknown`.
    async fn inquire_vbank(&self, trade: &TradeRef) -> Result<VbankState, PgError> {
        let (span, body) = match trade {
            TradeRef::Tno(tno) => (
                tracing::info_span!("kcp.inquire", site_cd = %self.site_cd, pay_type = PAY_TYPE_VBANK, tno = %tno),
                InquiryRequest::for_tno(&self.site_cd, &self.signer, tno, PAY_TYPE_VBANK),
            ),
            TradeRef::OrderNo(order) => (
                tracing::info_span!("kcp.inquire", site_cd = %self.site_cd, pay_type = PAY_TYPE_VBANK, ordr_idxx = %order),
                InquiryRequest::for_order_no(&self.site_cd, &self.signer, order, PAY_TYPE_VBANK),
            ),
        };
        async {
            let body = body?;
            match self
                .exchange::<_, InquiryResponse>(&self.urls.inquiry, &body)
                .await?
            {
                Answer::Refused { code, .. } if code == NO_SUCH_TRADE => Ok(VbankState::NotFound),
                Answer::Refused { code, message } => Err(codes::declined(&code, &message)),
                Answer::Success(mut resp) => {
                    answers_for(&mut resp, trade)?;
                    resp.into_vbank_state()
                        .map_err(|e| PgError::Unknown(e.to_string()))
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The identifier asked by must be the one answered for; an answer that omits it is taken to be
/// about it (as for card inquiries).
fn answers_for(resp: &mut InquiryResponse, trade: &TradeRef) -> Result<(), PgError> {
    let (field, asked, got) = match trade {
        TradeRef::Tno(tno) => ("tno", tno, &mut resp.tno),
        TradeRef::OrderNo(order) => ("order_no", order, &mut resp.order_no),
    };
    match got.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
        None => *got = Some(asked.clone()),
        Some(g) if g != asked => {
            return Err(PgError::Unknown(format!(
                "KCP inquiry answered {field} {g} for {asked}"
            )))
        }
        Some(_) => {}
    }
    Ok(())
}
