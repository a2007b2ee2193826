//! KCP's JSON bodies, field for field (spec/kcp.md §2.7, §2.9, §2.10), and their conversion into
//! openport's PG types.
//!
//! Requests: every value is a JSON string (spec §1), card data sits in [`Sensitive`] so it can be
//! serialized for KCP but never shows up in `Debug`. Responses: every field is optional and
//! accepts a string or a number, unknown fields are ignored, so a new KCP field or a numeric
//! amount cannot turn a successful charge into an unreadable one.

use std::net::IpAddr;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::codes::invalid_request;
use super::sign::{KcpSigner, KeyError};
use crate::pg::{
    CancelKind, CancelRequest, CardApproval, DeclineReason, KeyInRequest, PgError, TradeState, Won,
};

/// KRW (spec §2.7 `currency`: 410 KRW / 840 USD).
pub const CURRENCY_KRW: &str = "410";
/// Card inquiries and approvals use `pay_type` PACA (spec §2.3 table).
pub const PAY_TYPE_CARD: &str = "PACA";
/// Authenticated key-in: with birth date / business number and PIN prefix (spec §2.7).
pub const CARD_TX_TYPE_AUTHENTICATED: &str = "11121000";
/// Non-authenticated key-in (spec §2.7).
pub const CARD_TX_TYPE_NON_AUTHENTICATED: &str = "11111000";
/// Full cancel of the remaining balance (spec §2.9).
pub const MOD_TYPE_FULL: &str = "STSC";
/// Partial cancel (spec §2.9).
pub const MOD_TYPE_PARTIAL: &str = "STPC";
/// `stat_ca_cd` values of an inquiry (spec §2.10).
pub const STAT_APPROVED: &str = "STSR";
pub const STAT_PARTIALLY_CANCELLED: &str = "STPC";
pub const STAT_CANCELLED: &str = "STSC";

/// Byte limits from spec §6 and §2.9 (`mod_desc` ≤100 bytes).
const GOOD_NAME_MAX: usize = 100;
const BUYR_NAME_MAX: usize = 30;
const BUYR_MAIL_MAX: usize = 50;
const BUYR_TEL_MAX: usize = 20;
const MOD_DESC_MAX: usize = 100;
const ORDR_IDXX_MAX: usize = 40;
const MAX_AMOUNT: Won = 999_999_999_999;

/// A string KCP must receive but nobody may read in logs: serialized as-is, `Debug` redacted,
/// zeroed when dropped.
#[derive(Serialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    fn new(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Sensitive {
    fn drop(&mut self) {
        secrecy::zeroize::Zeroize::zeroize(&mut self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Key-in card approval, `gw/hub/v1/payment` (spec §2.7). No `kcp_sign_data`: hub payments are
/// not signed (spec §3).
#[derive(Serialize, Clone)]
pub struct KeyInPaymentRequest {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub pay_method: &'static str,
    pub cust_ip: String,
    pub amount: String,
    /// Must equal `amount` (spec §2.6, §6).
    pub card_mny: String,
    pub currency: &'static str,
    pub quota: String,
    pub ordr_idxx: String,
    pub good_name: String,
    pub buyr_name: String,
    pub buyr_mail: String,
    pub buyr_tel2: String,
    pub card_tx_type: &'static str,
    pub card_no: Sensitive,
    pub card_expiry: Sensitive,
    /// Authenticated key-in only; KCP's samples omit the field otherwise (seed 002).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_taxno: Option<Sensitive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_pwd: Option<Sensitive>,
}

/// Only identifiers: buyer data is personal data and card data is secret.
impl std::fmt::Debug for KeyInPaymentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInPaymentRequest")
            .field("site_cd", &self.site_cd)
            .field("ordr_idxx", &self.ordr_idxx)
            .field("amount", &self.amount)
            .field("quota", &self.quota)
            .field("card_tx_type", &self.card_tx_type)
            .finish_non_exhaustive()
    }
}

impl KeyInPaymentRequest {
    /// Builds the body, refusing (as a local decline: nothing is sent) what KCP would refuse or
    /// what could break KCP's parser: spec §6 formats and forbidden characters. Free-text fields
    /// (`good_name`, `buyr_name`) are sanitized instead of refused; contact fields that are not
    /// usable are sent empty, as KCP's own samples do with `cust_ip`.
    pub fn new(site_cd: &str, signer: &KcpSigner, req: &KeyInRequest) -> Result<Self, PgError> {
        let card_data = DeclineReason::CardRejected;
        let ordr_idxx = order_no(&req.order_no)?;
        let amount = amount(req.amount)?;
        if req.quota > 99 {
            return Err(invalid_request(
                "quota must be 0–99 months",
                DeclineReason::Other,
            ));
        }
        let card = &req.card;
        if !is_digits(&card.number, 13, 16) {
            return Err(invalid_request(
                "card number must be 13–16 digits",
                card_data,
            ));
        }
        if !is_expiry_yymm(&card.expiry_yymm) {
            return Err(invalid_request("card expiry must be YYMM", card_data));
        }
        let (card_tx_type, card_taxno, card_pwd) = match (&card.birth, &card.pwd_2digit) {
            (Some(birth), Some(pwd)) => {
                if !(is_digits(birth, 6, 6) || is_digits(birth, 10, 10)) {
                    return Err(invalid_request("birth must be 6 digits or a 10-digit business number", card_data));
                }
                if !is_digits(pwd, 2, 2) {
                    return Err(invalid_request("card password must be its first 2 digits", card_data));
                }
                (CARD_TX_TYPE_AUTHENTICATED, Some(Sensitive::new(birth)), Some(Sensitive::new(pwd)))
            }
            (None, None) => (CARD_TX_TYPE_NON_AUTHENTICATED, None, None),
            // Silently downgrading to a non-authenticated charge would surprise the merchant.
            _ => {
                return Err(invalid_request(
                    "birth and card password must be given together (authenticated key-in) or not at all",
                    card_data,
                ))
            }
        };
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            pay_method: "CARD",
            cust_ip: req
                .customer_ip
                .trim()
                .parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            card_mny: amount.clone(),
            amount,
            currency: CURRENCY_KRW,
            quota: format!("{:02}", req.quota),
            ordr_idxx,
            good_name: free_text(&req.good_name, GOOD_NAME_MAX),
            buyr_name: free_text(&req.buyer_name, BUYR_NAME_MAX),
            buyr_mail: contact(&req.buyer_email, BUYR_MAIL_MAX),
            buyr_tel2: contact(&req.buyer_tel, BUYR_TEL_MAX),
            card_tx_type,
            card_no: Sensitive::new(&card.number),
            card_expiry: Sensitive::new(&card.expiry_yymm),
            card_taxno,
            card_pwd,
        })
    }
}

/// Cancel / modify, `gw/mod/v1/cancel` (spec §2.9), signed over `site_cd^tno^mod_type`.
#[derive(Serialize, Debug, Clone)]
pub struct CancelRequestBody {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub kcp_sign_data: String,
    pub tno: String,
    pub mod_type: &'static str,
    pub mod_desc: String,
    /// STPC: amount to cancel now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_mny: Option<String>,
    /// STPC: cancellable balance BEFORE this cancel (spec §2.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rem_mny: Option<String>,
}

impl CancelRequestBody {
    pub fn new(site_cd: &str, signer: &KcpSigner, req: &CancelRequest) -> Result<Self, PgError> {
        let tno = tno(&req.tno)?;
        let (mod_type, mod_mny, rem_mny) = match req.kind {
            CancelKind::Full => (MOD_TYPE_FULL, None, None),
            CancelKind::Partial {
                amount: cancel,
                balance_before,
            } => {
                if cancel > balance_before {
                    return Err(invalid_request(
                        "partial cancel amount exceeds the balance",
                        DeclineReason::Other,
                    ));
                }
                (
                    MOD_TYPE_PARTIAL,
                    Some(amount(cancel)?),
                    Some(amount(balance_before)?),
                )
            }
        };
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            kcp_sign_data: sign(signer, &format!("{site_cd}^{tno}^{mod_type}"))?,
            tno,
            mod_type,
            mod_desc: free_text(&req.reason, MOD_DESC_MAX),
            mod_mny,
            rem_mny,
        })
    }
}

/// Transaction inquiry, `std/inquery` (spec §2.10), signed over `site_cd^tno^pay_type`.
///
/// Documented assumption (docs/kcp.md): when no `tno` is known, `order_no` carries the
/// `ordr_idxx`, `tno` is sent as an empty string and the signature covers
/// `site_cd^order_no^pay_type`.
#[derive(Serialize, Debug, Clone)]
pub struct InquiryRequest {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub tno: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_no: Option<String>,
    pub pay_type: &'static str,
    pub kcp_sign_data: String,
}

impl InquiryRequest {
    pub fn by_tno(site_cd: &str, signer: &KcpSigner, tno_value: &str) -> Result<Self, PgError> {
        let tno = tno(tno_value)?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            kcp_sign_data: sign(signer, &format!("{site_cd}^{tno}^{PAY_TYPE_CARD}"))?,
            tno,
            order_no: None,
            pay_type: PAY_TYPE_CARD,
        })
    }

    pub fn by_order_no(
        site_cd: &str,
        signer: &KcpSigner,
        ordr_idxx: &str,
    ) -> Result<Self, PgError> {
        let order = order_no(ordr_idxx)?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            kcp_sign_data: sign(signer, &format!("{site_cd}^{order}^{PAY_TYPE_CARD}"))?,
            tno: String::new(),
            order_no: Some(order),
            pay_type: PAY_TYPE_CARD,
        })
    }
}

fn sign(signer: &KcpSigner, message: &str) -> Result<String, PgError> {
    signer
        .sign(message)
        .map_err(|e: KeyError| PgError::Config(e.to_string()))
}

fn is_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_expiry_yymm(s: &str) -> bool {
    is_digits(s, 4, 4) && matches!(s[2..].parse::<u8>(), Ok(1..=12))
}

/// `ordr_idxx`: ≤40 letters and digits (spec §2.1, §6).
fn order_no(value: &str) -> Result<String, PgError> {
    if value.is_empty()
        || value.len() > ORDR_IDXX_MAX
        || !value.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(invalid_request(
            "order number must be 1–40 letters and digits",
            DeclineReason::Other,
        ));
    }
    Ok(value.to_owned())
}

/// `tno`: 14 digits (spec §6); anything else cannot be a KCP transaction.
fn tno(value: &str) -> Result<String, PgError> {
    if !is_digits(value, 1, 20) {
        return Err(invalid_request(
            "KCP tno must be digits",
            DeclineReason::Other,
        ));
    }
    Ok(value.to_owned())
}

/// Amounts are digit strings without separators, ≤12 digits (spec §6).
fn amount(value: Won) -> Result<String, PgError> {
    if !(1..=MAX_AMOUNT).contains(&value) {
        return Err(invalid_request(
            "amount must be between 1 and 999,999,999,999 won",
            DeclineReason::Other,
        ));
    }
    Ok(value.to_string())
}

/// Characters KCP forbids in request data (spec §6, seed 003).
fn is_forbidden(c: char) -> bool {
    matches!(
        c,
        ',' | '&' | ';' | '\n' | '\r' | '\\' | '|' | '\'' | '"' | '<' | '>' | '\0'
    ) || c.is_control()
}

/// Display text: forbidden characters become spaces (removing `<`/`>` also defuses markup), then
/// cut to `max_bytes` on a character boundary. Sanitizing rather than refusing means a product
/// called "Shirt, blue" still sells.
fn free_text(value: &str, max_bytes: usize) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if is_forbidden(c) { ' ' } else { c })
        .collect();
    truncate_bytes(cleaned.trim(), max_bytes)
        .trim_end()
        .to_owned()
}

/// Contact data that is only useful verbatim: unusable values are sent empty (KCP treats these
/// fields as optional) rather than altered.
fn contact(value: &str, max_bytes: usize) -> String {
    let value = value.trim();
    if value.len() > max_bytes || value.chars().any(is_forbidden) {
        tracing::warn!(max_bytes, "dropping a buyer contact field KCP would refuse");
        return String::new();
    }
    value.to_owned()
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A response that is not what the success code promised (e.g. no `tno` with `res_cd` 0000).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("KCP response unusable: {0}")]
pub struct WireError(pub String);

/// The two fields every KCP answer has (spec §1). Parsed first and alone, so a refusal is
/// recognised even when the rest of the body is odd.
#[derive(Deserialize, Debug, Default)]
pub struct ResultHead {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
}

/// A card number as KCP returned it; `Debug` shows only the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNo(String);

impl CardNo {
    pub fn masked(&self) -> String {
        mask_card_number(&self.0)
    }
}

impl std::fmt::Debug for CardNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNo({})", self.masked())
    }
}

impl<'de> Deserialize<'de> for CardNo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(CardNo(lenient(d)?.unwrap_or_default()))
    }
}

/// Approval answer of `gw/hub/v1/payment` / `gw/enc/v1/payment` for a card (spec §2.4).
#[derive(Deserialize, Debug, Default)]
pub struct CardPaymentResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tno: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub order_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub amount: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_mny: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub pay_method: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub app_time: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub app_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_name: Option<String>,
    #[serde(default)]
    pub card_no: Option<CardNo>,
    #[serde(default, deserialize_with = "lenient")]
    pub quota: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_bin_type_01: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_bin_type_02: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub partcanc_yn: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub trace_no: Option<String>,
}

impl TryFrom<CardPaymentResponse> for CardApproval {
    type Error = WireError;

    fn try_from(r: CardPaymentResponse) -> Result<Self, Self::Error> {
        card_approval(CardFields {
            tno: r.tno.as_deref(),
            order_no: r.order_no.as_deref(),
            amount: r.amount.as_deref().or(r.card_mny.as_deref()),
            app_time: r.app_time.as_deref(),
            app_no: r.app_no.as_deref(),
            card_cd: r.card_cd.as_deref(),
            card_name: r.card_name.as_deref(),
            card_no: r.card_no.as_ref(),
            quota: r.quota.as_deref(),
            card_bin_type_02: r.card_bin_type_02.as_deref(),
            partcanc_yn: r.partcanc_yn.as_deref(),
        })
    }
}

/// Answer of `gw/mod/v1/cancel` (spec §2.9).
#[derive(Deserialize, Debug, Default)]
pub struct CancelResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tno: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub canc_time: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub mod_mny: Option<String>,
    /// Balance AFTER this cancel (request `rem_mny` − `mod_mny`).
    #[serde(default, deserialize_with = "lenient")]
    pub rem_mny: Option<String>,
    /// The sources disagree on the sequence number's spelling; both are accepted (spec §2.9).
    /// Separate fields rather than a serde alias: an answer carrying both must still parse.
    #[serde(default, deserialize_with = "lenient")]
    pub mod_pacn_seq_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub mod_pcan_seq_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_mod_mny: Option<String>,
}

impl CancelResponse {
    /// The partial-cancel sequence number, whichever name KCP used.
    pub fn partial_cancel_seq_no(&self) -> Option<&str> {
        self.mod_pacn_seq_no
            .as_deref()
            .or(self.mod_pcan_seq_no.as_deref())
            .filter(|s| !s.is_empty())
    }

    /// A success answer as a [`crate::pg::CancelConfirmation`]. The cancel has happened, so
    /// missing descriptive fields are filled in (time: now; balance: computed from the request)
    /// instead of turning a definite success into an unknown outcome.
    pub fn into_confirmation(
        self,
        req: &CancelRequest,
    ) -> Result<crate::pg::CancelConfirmation, WireError> {
        let tno = match self.tno.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(tno) if tno != req.tno => {
                return Err(WireError(format!(
                    "cancel answer is for tno {tno}, not {}",
                    req.tno
                )));
            }
            _ => req.tno.clone(),
        };
        let remaining = match req.kind {
            CancelKind::Full => 0,
            CancelKind::Partial {
                amount,
                balance_before,
            } => match self.rem_mny.as_deref() {
                Some(s) => {
                    parse_won(s).ok_or_else(|| WireError("rem_mny is not an amount".into()))?
                }
                None => balance_before - amount,
            },
        };
        let cancelled_at = time_or_now(self.canc_time.as_deref(), "canc_time");
        Ok(crate::pg::CancelConfirmation {
            tno,
            cancelled_at,
            remaining,
        })
    }
}

/// Answer of `std/inquery` (spec §2.10) for a card trade.
#[derive(Deserialize, Debug, Default)]
pub struct InquiryResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tno: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub order_no: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub pay_method: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub amount: Option<String>,
    /// Cancellable balance of a card trade.
    #[serde(default, deserialize_with = "lenient")]
    pub rem_mny: Option<String>,
    /// STSR approved, STPC partially cancelled, STSC cancelled.
    #[serde(default, deserialize_with = "lenient")]
    pub stat_ca_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub app_time: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub app_no: Option<String>,
    #[serde(default)]
    pub card_no: Option<CardNo>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub quota: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_bin_type_01: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_bin_type_02: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub partcanc_yn: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub canc_time: Option<String>,
}

impl TryFrom<InquiryResponse> for TradeState {
    type Error = WireError;

    /// Only for `res_cd` 0000; a `stat_ca_cd` we do not know is an error (the caller treats the
    /// outcome as still unknown) rather than a guess.
    fn try_from(r: InquiryResponse) -> Result<Self, Self::Error> {
        if let Some(method) = r.pay_method.as_deref().filter(|m| !m.is_empty()) {
            if method != PAY_TYPE_CARD {
                return Err(WireError(format!(
                    "inquiry answered for pay_method {method}, not a card"
                )));
            }
        }
        let approval = card_approval(CardFields {
            tno: r.tno.as_deref(),
            order_no: r.order_no.as_deref(),
            amount: r.amount.as_deref(),
            app_time: r.app_time.as_deref(),
            app_no: r.app_no.as_deref(),
            card_cd: r.card_cd.as_deref(),
            card_name: r.card_name.as_deref(),
            card_no: r.card_no.as_ref(),
            quota: r.quota.as_deref(),
            card_bin_type_02: r.card_bin_type_02.as_deref(),
            partcanc_yn: r.partcanc_yn.as_deref(),
        })?;
        let rem_mny = r
            .rem_mny
            .as_deref()
            .map(|s| parse_won(s).ok_or_else(|| WireError("rem_mny is not an amount".into())));
        match r.stat_ca_cd.as_deref().map(str::trim) {
            Some(STAT_APPROVED) => {
                let remaining = rem_mny.transpose()?.unwrap_or(approval.amount);
                Ok(TradeState::Approved {
                    approval,
                    remaining,
                })
            }
            Some(STAT_PARTIALLY_CANCELLED) => {
                let remaining = rem_mny
                    .transpose()?
                    .ok_or_else(|| WireError("partially cancelled trade without rem_mny".into()))?;
                Ok(TradeState::Approved {
                    approval,
                    remaining,
                })
            }
            Some(STAT_CANCELLED) => {
                let cancelled_at = time_or_now(r.canc_time.as_deref(), "canc_time");
                Ok(TradeState::Cancelled {
                    approval,
                    cancelled_at,
                })
            }
            Some(other) => Err(WireError(format!("unknown stat_ca_cd `{other}`"))),
            None => Err(WireError("inquiry answer without stat_ca_cd".into())),
        }
    }
}

/// The card fields shared by approval and inquiry answers.
struct CardFields<'a> {
    tno: Option<&'a str>,
    order_no: Option<&'a str>,
    amount: Option<&'a str>,
    app_time: Option<&'a str>,
    app_no: Option<&'a str>,
    card_cd: Option<&'a str>,
    card_name: Option<&'a str>,
    card_no: Option<&'a CardNo>,
    quota: Option<&'a str>,
    card_bin_type_02: Option<&'a str>,
    partcanc_yn: Option<&'a str>,
}

/// `tno` and `amount` are what money safety depends on (the trade's identity for cancels, the
/// amount comparison of spec §5); without them a success answer is unusable. Descriptive fields
/// default: `order_no` empty (the caller fills in what it asked for), `partcanc_yn` absent =
/// partial cancel not allowed (conservative), `quota` unreadable = 0.
fn card_approval(f: CardFields<'_>) -> Result<CardApproval, WireError> {
    let text = |v: Option<&str>| v.map(str::trim).unwrap_or_default().to_owned();
    let tno = text(f.tno);
    if tno.is_empty() {
        return Err(WireError("success answer without tno".into()));
    }
    let amount = f.amount.and_then(parse_won).ok_or_else(|| {
        WireError(format!(
            "success answer for tno {tno} without a readable amount"
        ))
    })?;
    Ok(CardApproval {
        order_no: text(f.order_no),
        amount,
        app_no: text(f.app_no),
        approved_at: time_or_now(f.app_time, "app_time"),
        issuer_code: text(f.card_cd),
        issuer_name: text(f.card_name),
        masked_card_number: f.card_no.map(CardNo::masked).unwrap_or_default(),
        quota: f.quota.and_then(|q| q.trim().parse().ok()).unwrap_or(0),
        is_check_card: f.card_bin_type_02.map(str::trim) == Some("1"),
        partial_cancel_allowed: f.partcanc_yn.map(str::trim) == Some("Y"),
        tno,
    })
}

/// Accepts a JSON string, number or bool (KCP sends strings; a proxy or a future version might
/// not), `null` and absence.
fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde_json::Value;
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(_) => return Err(serde::de::Error::custom("expected a string")),
    })
}

/// Digit-only won amount.
pub fn parse_won(s: &str) -> Option<Won> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `yyyyMMddHHmmss` in Korea time (UTC+9, no DST) → UTC (spec §6).
pub fn parse_kcp_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.len() != 14 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok()?;
    let kst = FixedOffset::east_opt(9 * 3600)?;
    kst.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

fn time_or_now(value: Option<&str>, field: &'static str) -> DateTime<Utc> {
    match value.and_then(parse_kcp_time) {
        Some(t) => t,
        None => {
            tracing::warn!(
                field,
                "KCP answer without a readable time; using the current time"
            );
            Utc::now()
        }
    }
}

pub use crate::domain::card::mask_card_number;

#[cfg(test)]
mod tests;
