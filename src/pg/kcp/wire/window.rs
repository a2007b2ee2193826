//! KCP's standard payment window, field for field: trade registration (spec/kcp.md §2.1), approval
//! of the window's result and billing keys from the batch window (`gw/enc/v1/payment`, §2.3–§2.5),
//! and escrow shipping start (`STE1`, documented assumption, §2.11).
//!
//! `enc_data` / `enc_info` are opaque to openport (§2.3) and passed through unchanged, but they are
//! the buyer's encrypted payment data: they sit in [`Sensitive`] so no `Debug`, log line or error
//! ever shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    amount, free_text, invalid_request, lenient, order_no, parse_kcp_time, parse_won, sign,
    time_or_now, tno, NamedAmounts, Sensitive, WireError, GOOD_NAME_MAX, PAY_TYPE_CARD,
    PAY_TYPE_POINT,
};
use crate::pg::kcp::sign::KcpSigner;
use crate::pg::{
    DeclineReason, EscrowDelivery, IssuedVirtualAccount, PgError, RegisteredTrade,
    TradeRegistration, WindowApproval, WindowApprovalRequest, WindowMethod, Won,
};

/// `tran_cd` of a payment window's approval (spec §2.3).
pub const TRAN_CD_PAYMENT: &str = "00100000";
/// `tran_cd` of a billing-key (batch) window result (spec §2.3); also what the batch-key
/// issuance call sends (§2.4).
pub const TRAN_CD_BATCH: &str = "00300001";
/// Trade registration answers `Code`, not `res_cd` (spec §1, §2.1).
pub const REGISTRATION_SUCCESS: &str = "0000";
/// Escrow shipping start (spec §2.11, documented assumption).
pub const MOD_TYPE_ESCROW_DELIVERY: &str = "STE1";

/// `pay_type` values of spec §2.3.
pub const PAY_TYPE_BANK: &str = "PABK";
pub const PAY_TYPE_VBANK: &str = "PAVC";
pub const PAY_TYPE_PHONE: &str = "PAMC";
pub const PAY_TYPE_GIFT: &str = "PATK";

use crate::domain::escrow::{invoice_is_sendable, DELIVERY_FIELD_MAX};

/// The mobile `pay_method` code of trade registration (spec §2.1).
pub fn kcp_pay_method(method: WindowMethod) -> &'static str {
    match method {
        WindowMethod::Card => "CARD",
        WindowMethod::Bank => "BANK",
        WindowMethod::VirtualAccount => "VCNT",
        WindowMethod::Phone => "MOBX",
        WindowMethod::Point => "TPNT",
        WindowMethod::GiftCertificate => "GIFT",
        WindowMethod::BatchKey => "AUTH",
    }
}

/// `use_pay_method` bitmask as KCP posted it to `Ret_URL` → approval `pay_type` (spec §2.3 table).
/// Any other mask (several methods, none, garbage) has no approval form.
pub fn pay_type_of(use_pay_method: &str) -> Option<&'static str> {
    Some(match use_pay_method.trim() {
        "100000000000" => PAY_TYPE_CARD,
        "010000000000" => PAY_TYPE_BANK,
        "001000000000" => PAY_TYPE_VBANK,
        "000100000000" => PAY_TYPE_POINT,
        "000010000000" => PAY_TYPE_PHONE,
        "000000001000" => PAY_TYPE_GIFT,
        _ => return None,
    })
}

/// The window's opaque result, refused locally when missing (KCP could only answer with an error).
fn enc_field(value: &str, name: &str) -> Result<Sensitive, PgError> {
    if value.trim().is_empty() {
        return Err(invalid_request(
            format!("window result without {name}"),
            DeclineReason::Other,
        ));
    }
    Ok(Sensitive::new(value))
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Trade registration, `std/tradeReg/register` (spec §2.1, the newer endpoint with
/// `kcp_cert_info`). Nothing is charged by it.
#[derive(Serialize, Debug, Clone)]
pub struct TradeRegisterRequest {
    site_cd: String,
    kcp_cert_info: String,
    ordr_idxx: String,
    good_mny: String,
    good_name: String,
    pay_method: &'static str,
    /// Case-sensitive name (spec §2.1).
    #[serde(rename = "Ret_URL")]
    ret_url: String,
    escw_used: &'static str,
    user_agent: String,
}

impl TradeRegisterRequest {
    /// `good_name` is sanitized like key-in (§6); `Ret_URL` and `user_agent` are sent verbatim (a
    /// URL's `&` or a browser's `;` are what they are), but `Ret_URL` must be an absolute URL. An
    /// order number or amount KCP would refuse is refused locally.
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        req: &TradeRegistration,
    ) -> Result<Self, PgError> {
        if reqwest::Url::parse(&req.return_url).is_err() {
            return Err(invalid_request(
                "Ret_URL must be an absolute URL",
                DeclineReason::Other,
            ));
        }
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            ordr_idxx: order_no(&req.order_no)?,
            good_mny: registration_amount(req)?,
            good_name: free_text(&req.good_name, GOOD_NAME_MAX),
            pay_method: kcp_pay_method(req.method),
            ret_url: req.return_url.clone(),
            escw_used: if req.escrow { "Y" } else { "N" },
            user_agent: req.user_agent.clone(),
        })
    }
}

/// `good_mny`: 1 … 999,999,999,999 won, or `0` for a billing-key window (iamport's 0-won
/// `customer_uid` issuance: nothing is charged, the window only authenticates the card).
fn registration_amount(req: &TradeRegistration) -> Result<String, PgError> {
    if req.amount == 0 && req.method == WindowMethod::BatchKey {
        return Ok("0".to_owned());
    }
    amount(req.amount)
}

/// Approval with the window's data, `gw/enc/v1/payment` (spec §2.4). `ordr_mony` is the merchant's
/// own amount, which KCP compares with the window's (`8059` on a difference); `ordr_no` asks KCP to
/// check the order number too. Not signed (spec §3).
#[derive(Serialize, Clone)]
pub struct WindowApprovalBody {
    tran_cd: String,
    site_cd: String,
    kcp_cert_info: String,
    enc_data: Sensitive,
    enc_info: Sensitive,
    ordr_mony: String,
    pay_type: &'static str,
    ordr_no: String,
}

impl std::fmt::Debug for WindowApprovalBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowApprovalBody")
            .field("tran_cd", &self.tran_cd)
            .field("site_cd", &self.site_cd)
            .field("pay_type", &self.pay_type)
            .field("ordr_no", &self.ordr_no)
            .field("ordr_mony", &self.ordr_mony)
            .finish_non_exhaustive()
    }
}

impl WindowApprovalBody {
    /// Refuses locally (nothing sent) a `use_pay_method` outside the §2.3 table, a missing
    /// `tran_cd` / `enc_data` / `enc_info`, and an order number or amount KCP would refuse.
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        req: &WindowApprovalRequest,
    ) -> Result<Self, PgError> {
        let pay_type = pay_type_of(&req.use_pay_method).ok_or_else(|| {
            invalid_request(
                "use_pay_method is not a single payment method KCP can approve",
                DeclineReason::Other,
            )
        })?;
        // A payment window's approval is `00100000` (spec §2.3), whatever the browser posted back:
        // the value crosses the buyer's browser, and `00300001` with a payment window's result
        // would have KCP issue a billing key nobody asked for.
        if req.tran_cd.trim() != TRAN_CD_PAYMENT {
            return Err(invalid_request(
                "window result whose tran_cd is not a payment's (00100000)",
                DeclineReason::Other,
            ));
        }
        Ok(Self {
            tran_cd: TRAN_CD_PAYMENT.to_owned(),
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            enc_data: enc_field(&req.enc_data, "enc_data")?,
            enc_info: enc_field(&req.enc_info, "enc_info")?,
            ordr_mony: amount(req.amount)?,
            pay_type,
            ordr_no: order_no(&req.order_no)?,
        })
    }

    pub fn pay_type(&self) -> &'static str {
        self.pay_type
    }
}

/// Billing-key issuance from the batch window, `gw/enc/v1/payment` with `tran_cd 00300001` and no
/// `ordr_mony` (spec §2.4): exactly the five fields KCP's sample sends.
#[derive(Serialize, Clone)]
pub struct WindowBatchKeyBody {
    tran_cd: &'static str,
    site_cd: String,
    kcp_cert_info: String,
    enc_data: Sensitive,
    enc_info: Sensitive,
}

impl std::fmt::Debug for WindowBatchKeyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowBatchKeyBody")
            .field("tran_cd", &self.tran_cd)
            .field("site_cd", &self.site_cd)
            .finish_non_exhaustive()
    }
}

impl WindowBatchKeyBody {
    /// `tran_cd` is always `00300001`, whatever the window posted: this call issues a key.
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        req: &WindowApprovalRequest,
    ) -> Result<Self, PgError> {
        Ok(Self {
            tran_cd: TRAN_CD_BATCH,
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            enc_data: enc_field(&req.enc_data, "enc_data")?,
            enc_info: enc_field(&req.enc_info, "enc_info")?,
        })
    }
}

/// Escrow shipping start on `gw/mod/v1/cancel` — documented assumption (spec §2.11 has only
/// legacy socket evidence): signed like a cancel over `site_cd^tno^STE1`, with the waybill in
/// `deli_numb` and the carrier in `deli_corp`.
#[derive(Serialize, Debug, Clone)]
pub struct EscrowDeliveryBody {
    site_cd: String,
    kcp_cert_info: String,
    kcp_sign_data: String,
    tno: String,
    mod_type: &'static str,
    deli_numb: String,
    deli_corp: String,
}

impl EscrowDeliveryBody {
    /// The waybill number is only useful verbatim: empty, oversized or containing a character KCP
    /// forbids (§6) is refused. The carrier is display text, sanitized like `good_name`.
    pub fn new(site_cd: &str, signer: &KcpSigner, req: &EscrowDelivery) -> Result<Self, PgError> {
        let tno = tno(&req.tno)?;
        let invoice = req.invoice.trim();
        if !invoice_is_sendable(invoice) {
            return Err(invalid_request(
                "invoice (deli_numb) must be 1–100 bytes without , & ; \\ | ' \" < >",
                DeclineReason::Other,
            ));
        }
        let carrier = free_text(&req.carrier, DELIVERY_FIELD_MAX);
        if carrier.is_empty() {
            return Err(invalid_request(
                "carrier (deli_corp) is required",
                DeclineReason::Other,
            ));
        }
        let mod_type = MOD_TYPE_ESCROW_DELIVERY;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            kcp_sign_data: sign(signer, &format!("{site_cd}^{tno}^{mod_type}"))?,
            tno,
            mod_type,
            deli_numb: invoice.to_owned(),
            deli_corp: carrier,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// Answer of trade registration (spec §2.1). `paymentMethod` and `request_URI` are not used.
#[derive(Deserialize, Debug, Default)]
pub struct TradeRegisterResponse {
    #[serde(rename = "Code", default, deserialize_with = "lenient")]
    pub code: Option<String>,
    #[serde(rename = "Message", default, deserialize_with = "lenient")]
    pub message: Option<String>,
    #[serde(rename = "approvalKey", default, deserialize_with = "lenient")]
    pub approval_key: Option<String>,
    #[serde(rename = "traceNo", default, deserialize_with = "lenient")]
    pub trace_no: Option<String>,
    #[serde(rename = "PayUrl", default, deserialize_with = "lenient")]
    pub pay_url: Option<String>,
}

impl TradeRegisterResponse {
    /// A `Code 0000` answer without the three values the window needs cannot be used.
    pub fn into_registered(self) -> Result<RegisteredTrade, WireError> {
        let need = |v: Option<String>, name: &str| {
            v.map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| WireError(format!("registration answer without {name}")))
        };
        Ok(RegisteredTrade {
            approval_key: need(self.approval_key, "approvalKey")?,
            trace_no: need(self.trace_no, "traceNo")?,
            pay_url: need(self.pay_url, "PayUrl")?,
        })
    }
}

/// Answer of the escrow status change: `{res_cd, res_msg, tno}` (spec §2.11, assumed like §2.9).
#[derive(Deserialize, Debug, Default)]
pub struct EscrowDeliveryResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tno: Option<String>,
}

/// A virtual account's own answer fields (spec §2.4: `bankcode` / `bankname` without the
/// underscore), in an approval or issuance answer and, when it repeats them, an inquiry's.
#[derive(Deserialize, Debug, Default)]
pub struct VirtualAccountFields {
    #[serde(default, deserialize_with = "lenient")]
    pub bankcode: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub bankname: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub account: Option<String>,
    /// The account holder shown to the buyer.
    #[serde(default, deserialize_with = "lenient")]
    pub depositor: Option<String>,
    /// The deposit deadline.
    #[serde(default, deserialize_with = "lenient")]
    pub va_date: Option<String>,
}

impl VirtualAccountFields {
    /// The account of transaction `tno`. The number and a readable deadline are what the buyer
    /// must be told, so without them there is no usable account; bank and holder default to empty.
    pub fn account(
        &self,
        tno: String,
        order_no: String,
        amount: Won,
        issued_at: DateTime<Utc>,
    ) -> Result<IssuedVirtualAccount, WireError> {
        let account = text(self.account.as_deref());
        if account.is_empty() {
            return Err(WireError(format!(
                "virtual account {tno} issued without account"
            )));
        }
        let due = self.va_date.as_deref().and_then(parse_due).ok_or_else(|| {
            WireError(format!(
                "virtual account {tno} issued without a readable va_date"
            ))
        })?;
        Ok(IssuedVirtualAccount {
            bank_code: text(self.bankcode.as_deref()),
            bank_name: text(self.bankname.as_deref()),
            holder: text(self.depositor.as_deref()),
            account,
            due,
            tno,
            order_no,
            amount,
            issued_at,
        })
    }
}

/// Non-card answers of `gw/enc/v1/payment` (spec §2.4): the common fields plus each method's own.
#[derive(Deserialize, Debug, Default)]
pub struct WindowApprovalResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    /// As `CardPaymentResponse::escw_yn`.
    #[serde(default, deserialize_with = "lenient")]
    pub escw_yn: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tno: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub order_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub amount: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub pay_method: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub app_time: Option<String>,
    /// Bank transfer.
    #[serde(default, deserialize_with = "lenient")]
    pub bank_code: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub bank_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub bk_mny: Option<String>,
    /// Virtual account.
    #[serde(flatten)]
    pub vbank: VirtualAccountFields,
    /// Mobile phone.
    #[serde(default, deserialize_with = "lenient")]
    pub commid: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub mobile_no: Option<String>,
    /// Point.
    #[serde(default, deserialize_with = "lenient")]
    pub pnt_app_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub pnt_amount: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub pnt_app_time: Option<String>,
    /// Gift certificate.
    #[serde(default, deserialize_with = "lenient")]
    pub tk_van_code: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tk_app_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tk_app_time: Option<String>,
}

fn text(v: Option<&str>) -> String {
    v.map(str::trim).unwrap_or_default().to_owned()
}

/// The first present, non-blank value.
fn first<'a>(values: &[Option<&'a str>]) -> Option<&'a str> {
    values
        .iter()
        .flatten()
        .copied()
        .find(|v| !v.trim().is_empty())
}

/// A deposit deadline: `yyyyMMddHHmmss` KST (spec §2.4), or a bare `yyyyMMdd`, read as the end of
/// that day.
fn parse_due(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    match value.len() {
        8 => parse_kcp_time(&format!("{value}235959")),
        _ => parse_kcp_time(value),
    }
}

impl WindowApprovalResponse {
    /// Every amount the answer names (`amount`, `bk_mny`, `pnt_amount`), read or not
    /// ([`NamedAmounts`]). The approval is read from the method's own field (`bk_mny`,
    /// `pnt_amount`) before `amount`, so the cross-check of spec §5 compares these too: an answer
    /// naming another amount in any of them, or one that cannot be read, is a mismatch, whichever
    /// field the approval was read from.
    pub fn amounts_named(&self) -> NamedAmounts {
        NamedAmounts::of(&[
            ("amount", self.amount.as_deref()),
            ("bk_mny", self.bk_mny.as_deref()),
            ("pnt_amount", self.pnt_amount.as_deref()),
        ])
    }

    /// The answer for `pay_type` (one of §2.3's non-card types). `tno` and the amount are what
    /// money safety depends on (they are required, else the outcome is unknown); for a virtual
    /// account so are `account` and `va_date`, which the buyer must be told. Descriptive fields
    /// default to empty, times to now (with a warning). `order_no` is left empty when KCP omits it
    /// (the caller fills in the one it asked for).
    pub fn into_approval(self, pay_type: &str) -> Result<WindowApproval, WireError> {
        let tno = text(self.tno.as_deref());
        if tno.is_empty() {
            return Err(WireError("success answer without tno".into()));
        }
        let won = |values: &[Option<&str>], names: &str| {
            first(values).and_then(parse_won).ok_or_else(|| {
                WireError(format!(
                    "success answer for tno {tno} without a readable {names}"
                ))
            })
        };
        let order_no = text(self.order_no.as_deref());
        let app_time = self.app_time.as_deref();
        Ok(match pay_type {
            PAY_TYPE_BANK => WindowApproval::Bank {
                amount: won(&[self.bk_mny.as_deref(), self.amount.as_deref()], "bk_mny")?,
                approved_at: time_or_now(app_time, "app_time"),
                bank_code: text(self.bank_code.as_deref()),
                bank_name: text(self.bank_name.as_deref()),
                tno,
                order_no,
            },
            PAY_TYPE_VBANK => {
                let amount = won(&[self.amount.as_deref()], "amount")?;
                let issued_at = time_or_now(app_time, "app_time");
                WindowApproval::VirtualAccount(
                    self.vbank.account(tno, order_no, amount, issued_at)?,
                )
            }
            PAY_TYPE_PHONE => WindowApproval::Phone {
                amount: won(&[self.amount.as_deref()], "amount")?,
                approved_at: time_or_now(app_time, "app_time"),
                carrier: text(self.commid.as_deref()),
                mobile_no: text(self.mobile_no.as_deref()),
                tno,
                order_no,
            },
            PAY_TYPE_POINT => WindowApproval::Point {
                amount: won(
                    &[self.pnt_amount.as_deref(), self.amount.as_deref()],
                    "pnt_amount",
                )?,
                approved_at: time_or_now(
                    first(&[self.pnt_app_time.as_deref(), app_time]),
                    "pnt_app_time",
                ),
                app_no: text(self.pnt_app_no.as_deref()),
                tno,
                order_no,
            },
            PAY_TYPE_GIFT => WindowApproval::Gift {
                amount: won(&[self.amount.as_deref()], "amount")?,
                approved_at: time_or_now(
                    first(&[self.tk_app_time.as_deref(), app_time]),
                    "tk_app_time",
                ),
                van_code: text(self.tk_van_code.as_deref()),
                app_no: text(self.tk_app_no.as_deref()),
                tno,
                order_no,
            },
            other => {
                return Err(WireError(format!(
                    "no window approval form for pay_type {other}"
                )))
            }
        })
    }
}

/// The (`tno`, amount, order number) of any window approval, for the cross-check of spec §5.
pub fn approval_identity(approval: &mut WindowApproval) -> (&str, Won, &mut String) {
    match approval {
        WindowApproval::Card(c) => (c.tno.as_str(), c.amount, &mut c.order_no),
        WindowApproval::VirtualAccount(a) => (a.tno.as_str(), a.amount, &mut a.order_no),
        WindowApproval::Bank {
            tno,
            amount,
            order_no,
            ..
        }
        | WindowApproval::Phone {
            tno,
            amount,
            order_no,
            ..
        }
        | WindowApproval::Point {
            tno,
            amount,
            order_no,
            ..
        }
        | WindowApproval::Gift {
            tno,
            amount,
            order_no,
            ..
        } => (tno.as_str(), *amount, order_no),
    }
}

#[cfg(test)]
mod tests;
