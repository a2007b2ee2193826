//! Virtual accounts without the payment window, field for field (docs/kcp.md §10). spec/kcp.md
//! gives only the answer (§2.4); the request is the one KCP's `pp_cli` VCNT sample and public
//! merchant integrations of this hub call send: the key-in order fields (§2.7: `cust_ip`,
//! `amount`, `currency`, `ordr_idxx`, `good_name`, `buyr_*`; certificate, no signature, §3) plus
//! the account's `va_*` fields — `va_txtype` 41100000, `va_mny` (the amount again; KCP refuses
//! another), `va_bankcode` (the window's `BKxx`), `va_name` (입금자명: who is expected to pay in,
//! i.e. the buyer), `va_date` (the deadline) and `va_receipt_gubn`. There is no field for the
//! account's holder: KCP answers it as `depositor`. The answer is the window's virtual-account
//! answer (§2.4), read by the window's parser.
//!
//! Revocation is a full cancel (`STSC`, §2.9) of the account's `tno`; inquiry is `std/inquery`
//! with `pay_type PAVC` (§2.10, `stat_va_cd`).

use serde::Serialize;

use super::window::PAY_TYPE_VBANK;
use super::{
    amount, contact, format_kcp_time, free_text, invalid_request, order_no, parse_won, time_or_now,
    InquiryResponse, WireError, BUYR_MAIL_MAX, BUYR_NAME_MAX, BUYR_TEL_MAX, CURRENCY_KRW,
    GOOD_NAME_MAX, STAT_APPROVED, STAT_CANCELLED, STAT_PARTIALLY_CANCELLED,
};
use crate::pg::kcp::sign::KcpSigner;
use crate::pg::{
    DeclineReason, IssuedVirtualAccount, PgError, VbankIssueRequest, VbankState, WindowApproval,
};

/// `pay_method` of a window-less issuance: the window registration's code for virtual accounts
/// (spec §2.1).
pub const PAY_METHOD_VBANK: &str = "VCNT";
/// `va_txtype` of an issuance (pp_cli's VCNT sample).
pub const VA_TXTYPE_ISSUE: &str = "41100000";
/// `va_receipt_gubn`: no cash receipt. openport takes no cash-receipt fields on `POST /vbanks`.
const VA_RECEIPT_NONE: &str = "0";
/// `stat_va_cd` of an account issued and not paid in full yet. KCP publishes no such word; `STIS`
/// is the sandbox's (docs/sandbox.md), and anything else unknown stays an unknown outcome.
pub const STAT_ISSUED: &str = "STIS";

/// Issuance of a virtual account on `gw/hub/v1/payment` (`pay_method VCNT`), in the order of
/// KCP's sample.
#[derive(Serialize, Clone)]
pub struct VbankIssueBody {
    site_cd: String,
    kcp_cert_info: String,
    pay_method: &'static str,
    /// Empty, as for billing charges: no buyer's browser is behind a server call.
    cust_ip: &'static str,
    amount: String,
    /// Must equal `amount` (KCP refuses the issuance otherwise).
    va_mny: String,
    currency: &'static str,
    ordr_idxx: String,
    good_name: String,
    buyr_name: String,
    buyr_mail: String,
    buyr_tel2: String,
    va_txtype: &'static str,
    va_bankcode: String,
    /// 입금자명: who is expected to pay in, the buyer (`buyr_name`, sanitized alike). Empty when
    /// the merchant named no buyer, as KCP's samples send fields they have no value for.
    va_name: String,
    va_date: String,
    va_receipt_gubn: &'static str,
}

/// Only identifiers: buyer data is personal data.
impl std::fmt::Debug for VbankIssueBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VbankIssueBody")
            .field("site_cd", &self.site_cd)
            .field("ordr_idxx", &self.ordr_idxx)
            .field("amount", &self.amount)
            .field("va_bankcode", &self.va_bankcode)
            .field("va_date", &self.va_date)
            .finish_non_exhaustive()
    }
}

impl VbankIssueBody {
    /// Text is treated as in key-in (sanitized names, contact fields sent empty when unusable); an
    /// order number, amount or bank code KCP would refuse is refused locally, nothing sent.
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        req: &VbankIssueRequest,
    ) -> Result<Self, PgError> {
        let bank = req.bank_code.trim();
        let well_formed = bank.len() == 4
            && bank.starts_with("BK")
            && bank[2..].bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(invalid_request(
                "bank_code must be KCP's BK + 2 digits",
                DeclineReason::Other,
            ));
        }
        let amount = amount(req.amount)?;
        let buyr_name = free_text(&req.buyer_name, BUYR_NAME_MAX);
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            pay_method: PAY_METHOD_VBANK,
            cust_ip: "",
            va_mny: amount.clone(),
            amount,
            currency: CURRENCY_KRW,
            ordr_idxx: order_no(&req.order_no)?,
            good_name: free_text(&req.good_name, GOOD_NAME_MAX),
            va_name: buyr_name.clone(),
            buyr_name,
            buyr_mail: contact(&req.buyer_email, BUYR_MAIL_MAX),
            buyr_tel2: contact(&req.buyer_tel, BUYR_TEL_MAX),
            va_txtype: VA_TXTYPE_ISSUE,
            va_bankcode: bank.to_owned(),
            va_date: format_kcp_time(req.due),
            va_receipt_gubn: VA_RECEIPT_NONE,
        })
    }
}

/// The account of a window-style virtual-account approval (what the window's parser makes of the
/// §2.4 answer for `pay_type PAVC`).
pub fn issued_account(approval: WindowApproval) -> Result<IssuedVirtualAccount, WireError> {
    match approval {
        WindowApproval::VirtualAccount(account) => Ok(account),
        other => Err(WireError(format!(
            "expected a virtual account, got {other:?}"
        ))),
    }
}

impl InquiryResponse {
    /// A virtual account's answer (`pay_type PAVC`): `stat_va_cd` `STIS` issued, `STSR` paid
    /// (`STPC` partly refunded) → [`VbankState::Open`]; `STSC` → [`VbankState::Closed`]. `tno` and
    /// `amount` are required, a status we do not know is an error (the outcome stays unknown).
    /// The account itself is read when the answer names it (`account` and a readable `va_date`).
    pub fn into_vbank_state(self) -> Result<VbankState, WireError> {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_owned();
        if let Some(method) = self.pay_method.as_deref().filter(|m| !m.is_empty()) {
            if method != PAY_TYPE_VBANK {
                return Err(WireError(format!(
                    "inquiry answered for pay_method {method}, not a virtual account"
                )));
            }
        }
        let tno = text(&self.tno);
        if tno.is_empty() {
            return Err(WireError("inquiry answer without tno".into()));
        }
        let amount = self
            .amount
            .as_deref()
            .and_then(parse_won)
            .ok_or_else(|| WireError(format!("inquiry of {tno} without a readable amount")))?;
        let remaining = match self.rem_mny.as_deref() {
            Some(s) => parse_won(s).ok_or_else(|| WireError("rem_mny is not an amount".into()))?,
            None => amount,
        };
        let account = self
            .vbank
            .account(
                tno.clone(),
                text(&self.order_no),
                amount,
                time_or_now(self.app_time.as_deref(), "app_time"),
            )
            .ok();
        let open = |paid| VbankState::Open {
            tno: tno.clone(),
            amount,
            remaining,
            paid,
            account: account.clone(),
        };
        match self.stat_va_cd.as_deref().map(str::trim) {
            Some(STAT_ISSUED) => Ok(open(false)),
            Some(STAT_APPROVED | STAT_PARTIALLY_CANCELLED) => Ok(open(true)),
            Some(STAT_CANCELLED) => Ok(VbankState::Closed {
                closed_at: time_or_now(self.canc_time.as_deref(), "canc_time"),
                tno,
            }),
            Some(other) => Err(WireError(format!("unknown stat_va_cd `{other}`"))),
            None => Err(WireError("inquiry answer without stat_va_cd".into())),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
