//! KCP's JSON bodies, field for field (spec/kcp.md §2.5–§2.10), and their conversion into
//! openport's PG types.
//!
//! Requests: every value is a JSON string (spec §1); card data, batch keys and point credentials sit
//! in [`Sensitive`] so they can be serialized for KCP but never show up in `Debug`. Responses:
//! every field is optional and accepts a string or a number, unknown fields are ignored, so a new
//! KCP field or a numeric amount cannot turn a successful charge into an unreadable one.

use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::codes::invalid_request;
use super::sign::{KcpSigner, KeyError};
/// Forbidden characters and byte limits (spec §6) are the domain's rule, shared with the
/// service's early checks.
pub(super) use crate::domain::text::{is_forbidden, sanitize as free_text};
use crate::pg::{
    BatchKey, BatchKeyRequest, BatchPaymentRequest, CancelKind, CancelRequest, CardApproval,
    CardSecret, DeclineReason, EscrowCancel, KeyInRequest, PgError, PointAccount, PointApproval,
    PointPaymentRequest, RefundAccount, TradeState, Won,
};

/// KRW (spec §2.7 `currency`: 410 KRW / 840 USD).
pub const CURRENCY_KRW: &str = "410";
/// Card inquiries and approvals use `pay_type` PACA (spec §2.3 table).
pub const PAY_TYPE_CARD: &str = "PACA";
/// Point payments are inquired with `pay_type` PAPT: DOCUMENTED ASSUMPTION (docs/kcp.md §8.4).
pub const PAY_TYPE_POINT: &str = "PAPT";
/// Bank transfer (spec §2.3 table; inquiry fields spec §2.10).
pub const PAY_TYPE_BANK: &str = "PABK";
/// Mobile phone (spec §2.3 table; inquiry fields spec §2.10).
pub const PAY_TYPE_PHONE: &str = "PAMC";
/// Gift certificate (spec §2.3 table).
pub const PAY_TYPE_GIFT: &str = "PATK";
/// Authenticated key-in: with birth date / business number and PIN prefix (spec §2.7).
pub const CARD_TX_TYPE_AUTHENTICATED: &str = "11121000";
/// Non-authenticated key-in (spec §2.7).
pub const CARD_TX_TYPE_NON_AUTHENTICATED: &str = "11111000";
/// Full cancel of the remaining balance (spec §2.9).
pub const MOD_TYPE_FULL: &str = "STSC";
/// Partial cancel (spec §2.9).
pub const MOD_TYPE_PARTIAL: &str = "STPC";
/// Re-approval of a cancelled point payment (spec §2.8, §2.9).
pub const MOD_TYPE_POINT_REAPPROVAL: &str = "STRA";
/// Escrow cancel before the shipping start: DOCUMENTED ASSUMPTION, modelled on the cancel call
/// (spec §2.11, docs/kcp.md §9.5).
pub const MOD_TYPE_ESCROW_CANCEL_BEFORE_SHIPPING: &str = "STE2";
/// Escrow cancel after the shipping start (spec §2.11, assumption as for `STE2`).
pub const MOD_TYPE_ESCROW_CANCEL_AFTER_SHIPPING: &str = "STE4";
/// Closing an issued, unpaid escrow virtual account (spec §2.11, assumption as for `STE2`).
pub const MOD_TYPE_ESCROW_CLOSE_VBANK: &str = "STE5";
/// Refund of all that is left of a deposited virtual account to an account the request names:
/// DOCUMENTED ASSUMPTION from public merchant integrations, modelled on the cancel call
/// (docs/kcp.md §10.2).
pub const MOD_TYPE_VBANK_REFUND: &str = "STHD";
/// Refund of part of a deposited virtual account (assumption as for `STHD`).
pub const MOD_TYPE_VBANK_PARTIAL_REFUND: &str = "STPD";
/// `mod_sub_type` of an `STHD`: the whole balance.
pub const MOD_SUB_TYPE_REFUND_WHOLE: &str = "MDSC00";
/// `mod_sub_type` of an `STPD`: a part, without a tax split (`MDSC04` is the mixed-tax partial
/// refund, which openport does not make).
pub const MOD_SUB_TYPE_REFUND_PART: &str = "MDSC03";
/// `mod_comp_type` of a refund: KCP verifies the account's holder (계좌인증) before it registers
/// the refund (환불등록).
pub const MOD_COMP_TYPE_VERIFY_AND_REFUND: &str = "MDCP01";
/// Billing-key charge (spec §2.6).
pub const CARD_TX_TYPE_BATCH: &str = "11511000";
/// `pay_method` of the billing-key delete call (spec §2.6).
pub const PAY_METHOD_BATCH: &str = "BATCH";
/// `pay_method` of card calls on the hub: key-in, billing-key charges, billing-key issuance.
pub const PAY_METHOD_CARD: &str = "CARD";
/// Billing-key issuance from card data: KCP's `card_tx_type` for an auth (batch) key, as its
/// PayPlus module sends it. The REST form is a DOCUMENTED ASSUMPTION (docs/kcp.md §8.1): spec
/// §2.5 says it was not found and asks for the key-in hub call with this `card_tx_type`.
pub const CARD_TX_TYPE_BATCH_ISSUE: &str = "12100000";
/// `sign_txtype` PayPlus sends with a batch-key issuance ("0001", an auth-key request).
pub const SIGN_TXTYPE_BATCH_ISSUE: &str = "0001";
/// Billing-key delete (spec §2.6).
pub const TX_TYPE_BATCH_DELETE: &str = "10005010";
/// `pay_method` of the point calls (spec §2.8).
pub const PAY_METHOD_POINT: &str = "POINT";
/// Benepia welfare points (spec §2.2 `van_code`, §2.8 `pt_issue`).
pub const PT_ISSUE_BENEPIA: &str = "SCWB";
/// Point balance inquiry (spec §2.8).
pub const PT_TXTYPE_BALANCE: &str = "97000000";
/// Point payment (spec §2.8).
pub const PT_TXTYPE_PAY: &str = "91200000";
/// Point payment code (spec §2.8).
pub const PT_PAYCODE: &str = "04";
/// `stat_ca_cd` values of an inquiry (spec §2.10).
pub const STAT_APPROVED: &str = "STSR";
pub const STAT_PARTIALLY_CANCELLED: &str = "STPC";
pub const STAT_CANCELLED: &str = "STSC";
/// A bank transfer's partially cancelled status as KCP's legacy module names it (its mod_type
/// for a transfer's partial cancel): read as [`STAT_PARTIALLY_CANCELLED`] in `stat_bk_cd`, in case
/// the REST inquiry reports it (documented assumption, docs/kcp.md §9.6).
pub const STAT_BANK_PARTIALLY_CANCELLED: &str = "STPA";

/// Byte limits from spec §6 and §2.9 (`mod_desc` ≤100 bytes).
const GOOD_NAME_MAX: usize = 100;
/// `mod_ordr_goods` of a point re-approval: 50 bytes (seed 003 §2.4), not good_name's 100. A
/// longer name is refused by KCP after the full cancel before it went through, which would give
/// the buyer all the points back instead of part.
const REAPPROVAL_GOOD_NAME_MAX: usize = 50;
const BUYR_NAME_MAX: usize = 30;
const BUYR_MAIL_MAX: usize = 50;
const BUYR_TEL_MAX: usize = 20;
const MOD_DESC_MAX: usize = 100;
/// `mod_depositor`: openport's own bound (KCP publishes none), as the API checks it.
const MOD_DEPOSITOR_MAX: usize = crate::domain::vbank::REFUND_HOLDER_MAX_BYTES;
const ORDR_IDXX_MAX: usize = 40;
const MAX_AMOUNT: Won = 999_999_999_999;
/// Not in spec §6; generous bounds for identifiers KCP issues (batch keys are 16 characters, group
/// ids 12), so a malformed value is refused locally instead of breaking KCP's parser.
const KCP_ID_MAX: usize = 64;

/// A string KCP must receive but nobody may read in logs: serialized as-is, `Debug` redacted,
/// zeroed when dropped.
#[derive(Serialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    fn new(value: &str) -> Self {
        Self(value.to_owned())
    }

    /// The value itself, for the few places that must hand it on (never to a log or an error).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Billing keys come back in answers (spec §2.5) and must stay as hidden there as in requests.
impl<'de> Deserialize<'de> for Sensitive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Sensitive(lenient(d)?.unwrap_or_default()))
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
        let ordr_idxx = order_no(&req.order_no)?;
        let amount = amount(req.amount)?;
        let quota = quota(req.quota)?;
        let card = CheckedCard::new(&req.card, false)?;
        let card_tx_type = if card.is_authenticated() {
            CARD_TX_TYPE_AUTHENTICATED
        } else {
            CARD_TX_TYPE_NON_AUTHENTICATED
        };
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            pay_method: PAY_METHOD_CARD,
            cust_ip: req
                .customer_ip
                .trim()
                .parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            card_mny: amount.clone(),
            amount,
            currency: CURRENCY_KRW,
            quota,
            ordr_idxx,
            good_name: free_text(&req.good_name, GOOD_NAME_MAX),
            buyr_name: free_text(&req.buyer_name, BUYR_NAME_MAX),
            buyr_mail: contact(&req.buyer_email, BUYR_MAIL_MAX),
            buyr_tel2: contact(&req.buyer_tel, BUYR_TEL_MAX),
            card_tx_type,
            card_no: card.card_no,
            card_expiry: card.card_expiry,
            card_taxno: card.card_taxno,
            card_pwd: card.card_pwd,
        })
    }
}

/// The card fields of spec §2.7, checked (§6 formats): number, expiry, and birth date / business
/// number with the PIN prefix either both present (authenticated) or both absent. Shared by key-in
/// and billing-key issuance so both refuse the same card data the same way.
struct CheckedCard {
    card_no: Sensitive,
    card_expiry: Sensitive,
    card_taxno: Option<Sensitive>,
    card_pwd: Option<Sensitive>,
}

impl CheckedCard {
    /// Errors never quote the card data. `birth_alone` allows a birth date without the PIN prefix:
    /// billing-key issuance takes it (iamport's `pwd_2digit` is optional there); key-in does not
    /// (spec §2.7: authenticated key-in needs both).
    fn new(card: &CardSecret, birth_alone: bool) -> Result<Self, PgError> {
        let card_data = DeclineReason::CardRejected;
        if !is_digits(&card.number, 13, 16) {
            return Err(invalid_request(
                "card number must be 13–16 digits",
                card_data,
            ));
        }
        if !is_expiry_yymm(&card.expiry_yymm) {
            return Err(invalid_request("card expiry must be YYMM", card_data));
        }
        let (card_taxno, card_pwd) = match (&card.birth, &card.pwd_2digit) {
            (Some(birth), Some(pwd)) => {
                if !(is_digits(birth, 6, 6) || is_digits(birth, 10, 10)) {
                    return Err(invalid_request(
                        "birth must be 6 digits or a 10-digit business number",
                        card_data,
                    ));
                }
                if !is_digits(pwd, 2, 2) {
                    return Err(invalid_request(
                        "card password must be its first 2 digits",
                        card_data,
                    ));
                }
                (Some(Sensitive::new(birth)), Some(Sensitive::new(pwd)))
            }
            (Some(birth), None) if birth_alone => {
                if !(is_digits(birth, 6, 6) || is_digits(birth, 10, 10)) {
                    return Err(invalid_request(
                        "birth must be 6 digits or a 10-digit business number",
                        card_data,
                    ));
                }
                (Some(Sensitive::new(birth)), None)
            }
            (None, None) => (None, None),
            // Silently downgrading to a non-authenticated call would surprise the merchant.
            _ => {
                return Err(invalid_request(
                    "birth and card password must be given together (authenticated key-in) or not at all",
                    card_data,
                ))
            }
        };
        Ok(Self {
            card_no: Sensitive::new(&card.number),
            card_expiry: Sensitive::new(&card.expiry_yymm),
            card_taxno,
            card_pwd,
        })
    }

    fn is_authenticated(&self) -> bool {
        self.card_taxno.is_some()
    }
}

/// Cancel / modify, `gw/mod/v1/cancel` (spec §2.9), signed over `site_cd^tno^mod_type`; also a
/// deposited virtual account's refund (`STHD`/`STPD`, documented assumption: docs/kcp.md §10.2)
/// and a deposited escrow one's (`STE2`/`STE4` with the same account fields, §9.5a), whose account
/// number and holder sit in [`Sensitive`].
#[derive(Serialize, Debug, Clone)]
pub struct CancelRequestBody {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub kcp_sign_data: String,
    pub tno: String,
    pub mod_type: &'static str,
    pub mod_desc: String,
    /// STPC / STPD: amount to cancel now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_mny: Option<String>,
    /// STPC / STPD: cancellable balance BEFORE this cancel (spec §2.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rem_mny: Option<String>,
    /// STHD / STPD: `MDSC00` whole, `MDSC03` a part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_sub_type: Option<&'static str>,
    /// STHD / STPD / an escrow refund's STE2 / STE4: KCP's code of the refund account's bank
    /// (`BK` + 2 digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_bankcode: Option<String>,
    /// As `mod_bankcode`: the refund account's number, digits only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_account: Option<Sensitive>,
    /// As `mod_bankcode`: the refund account's holder, as KCP verifies it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_depositor: Option<Sensitive>,
    /// As `mod_bankcode`: `MDCP01`, verify the holder then register the refund.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_comp_type: Option<&'static str>,
}

/// A refund's `mod_sub_type`, `mod_bankcode`, `mod_account`, `mod_depositor`, `mod_comp_type`.
type RefundFields = (
    Option<&'static str>,
    Option<String>,
    Option<Sensitive>,
    Option<Sensitive>,
    Option<&'static str>,
);

impl CancelRequestBody {
    pub fn new(site_cd: &str, signer: &KcpSigner, req: &CancelRequest) -> Result<Self, PgError> {
        let tno = tno(&req.tno)?;
        let mod_type = match &req.kind {
            CancelKind::Full => MOD_TYPE_FULL,
            CancelKind::Escrow(EscrowCancel::BeforeShipping) => {
                MOD_TYPE_ESCROW_CANCEL_BEFORE_SHIPPING
            }
            CancelKind::Escrow(EscrowCancel::AfterShipping) => {
                MOD_TYPE_ESCROW_CANCEL_AFTER_SHIPPING
            }
            CancelKind::Escrow(EscrowCancel::CloseVbank) => MOD_TYPE_ESCROW_CLOSE_VBANK,
            CancelKind::Partial { .. } => MOD_TYPE_PARTIAL,
            CancelKind::Refund(_) => MOD_TYPE_VBANK_REFUND,
            CancelKind::PartialRefund { .. } => MOD_TYPE_VBANK_PARTIAL_REFUND,
            CancelKind::EscrowRefund(EscrowCancel::BeforeShipping, _) => {
                MOD_TYPE_ESCROW_CANCEL_BEFORE_SHIPPING
            }
            CancelKind::EscrowRefund(EscrowCancel::AfterShipping, _) => {
                MOD_TYPE_ESCROW_CANCEL_AFTER_SHIPPING
            }
            // STE5 closes an account nobody paid into: there is no deposit to send anywhere.
            CancelKind::EscrowRefund(EscrowCancel::CloseVbank, _) => {
                return Err(invalid_request(
                    "an escrow refund is STE2 or STE4, never the close of an unpaid account",
                    DeclineReason::Other,
                ))
            }
        };
        let (mod_mny, rem_mny) = match req.kind.partial_amounts() {
            None => (None, None),
            Some((cancel, balance_before)) => {
                if cancel > balance_before {
                    return Err(invalid_request(
                        "partial cancel amount exceeds the balance",
                        DeclineReason::Other,
                    ));
                }
                (Some(amount(cancel)?), Some(amount(balance_before)?))
            }
        };
        let (mod_sub_type, mod_bankcode, mod_account, mod_depositor, mod_comp_type): RefundFields =
            match &req.kind {
                CancelKind::Refund(to) => refund_to(Some(MOD_SUB_TYPE_REFUND_WHOLE), to)?,
                CancelKind::PartialRefund { to, .. } => {
                    refund_to(Some(MOD_SUB_TYPE_REFUND_PART), to)?
                }
                // Always whole, as every escrow cancel: no mod_sub_type (docs/kcp.md §9.5a).
                CancelKind::EscrowRefund(_, to) => refund_to(None, to)?,
                _ => (None, None, None, None, None),
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
            mod_sub_type,
            mod_bankcode,
            mod_account,
            mod_depositor,
            mod_comp_type,
        })
    }
}

/// A refund's account fields (docs/kcp.md §10.2), checked once more as every value sent is: a
/// bank code `BK` + 2 digits, an account number of digits, a holder KCP takes as it is (never
/// cleaned: KCP verifies it against the bank's record). The errors name the field, never its value.
/// The same four account fields for `STHD`/`STPD` and an escrow refund (`STE2`/`STE4`, which has
/// no `sub_type`): one shape of "refund account" on the REST cancel.
fn refund_to(sub_type: Option<&'static str>, to: &RefundAccount) -> Result<RefundFields, PgError> {
    let bank = to.kcp_bank;
    if bank.len() != 4 || !bank.starts_with("BK") || !is_digits(&bank[2..], 2, 2) {
        return Err(invalid_request(
            "refund bank code must be BK and 2 digits",
            DeclineReason::Other,
        ));
    }
    if !is_digits(&to.number, 1, 20) {
        return Err(invalid_request(
            "refund account number must be digits",
            DeclineReason::Other,
        ));
    }
    let holder = to.holder.trim();
    if holder.is_empty() || holder.len() > MOD_DEPOSITOR_MAX || holder.chars().any(is_forbidden) {
        return Err(invalid_request(
            "refund account holder is empty, too long or holds a character KCP forbids",
            DeclineReason::Other,
        ));
    }
    Ok((
        sub_type,
        Some(bank.to_owned()),
        Some(Sensitive::new(&to.number)),
        Some(Sensitive::new(holder)),
        Some(MOD_COMP_TYPE_VERIFY_AND_REFUND),
    ))
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
    /// Card inquiry (`pay_type` PACA) by tno.
    pub fn by_tno(site_cd: &str, signer: &KcpSigner, tno_value: &str) -> Result<Self, PgError> {
        Self::for_tno(site_cd, signer, tno_value, PAY_TYPE_CARD)
    }

    /// Card inquiry (`pay_type` PACA) by order number.
    pub fn by_order_no(
        site_cd: &str,
        signer: &KcpSigner,
        ordr_idxx: &str,
    ) -> Result<Self, PgError> {
        Self::for_order_no(site_cd, signer, ordr_idxx, PAY_TYPE_CARD)
    }

    /// Inquiry of `tno` for a `pay_type` (PACA card, PAPT points), signed over
    /// `site_cd^tno^pay_type`.
    pub fn for_tno(
        site_cd: &str,
        signer: &KcpSigner,
        tno_value: &str,
        pay_type: &'static str,
    ) -> Result<Self, PgError> {
        let tno = tno(tno_value)?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            kcp_sign_data: sign(signer, &format!("{site_cd}^{tno}^{pay_type}"))?,
            tno,
            order_no: None,
            pay_type,
        })
    }

    /// Inquiry by order number (documented assumption, see the type's doc), signed over
    /// `site_cd^order_no^pay_type`.
    pub fn for_order_no(
        site_cd: &str,
        signer: &KcpSigner,
        ordr_idxx: &str,
        pay_type: &'static str,
    ) -> Result<Self, PgError> {
        let order = order_no(ordr_idxx)?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            kcp_sign_data: sign(signer, &format!("{site_cd}^{order}^{pay_type}"))?,
            tno: String::new(),
            order_no: Some(order),
            pay_type,
        })
    }
}

/// Billing-key issuance from card data, `gw/hub/v1/payment`. DOCUMENTED ASSUMPTION (docs/kcp.md
/// §8.1): spec §2.5 says KCP's window-less REST form was not found and asks for the key-in hub
/// call (§2.7: `pay_method CARD`, the same card fields, the same "birth + PIN prefix both or
/// neither" rule) with the batch-issuance `card_tx_type`. That type, `sign_txtype` and
/// `group_id` are what KCP's PayPlus module sends for the same request (tran_cd 00300001); there
/// is no amount. Not signed (hub call, §3).
#[derive(Serialize, Clone)]
pub struct BatchKeyIssueRequest {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub pay_method: &'static str,
    pub card_tx_type: &'static str,
    pub sign_txtype: &'static str,
    pub group_id: String,
    pub ordr_idxx: String,
    pub card_no: Sensitive,
    pub card_expiry: Sensitive,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_taxno: Option<Sensitive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_pwd: Option<Sensitive>,
    pub buyr_name: String,
}

impl std::fmt::Debug for BatchKeyIssueRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchKeyIssueRequest")
            .field("site_cd", &self.site_cd)
            .field("ordr_idxx", &self.ordr_idxx)
            .field("group_id", &self.group_id)
            .field("authenticated", &self.card_taxno.is_some())
            .finish_non_exhaustive()
    }
}

impl BatchKeyIssueRequest {
    pub fn new(site_cd: &str, signer: &KcpSigner, req: &BatchKeyRequest) -> Result<Self, PgError> {
        let ordr_idxx = order_no(&req.order_no)?;
        let group_id = kcp_id(&req.group_id, "batch group id")?;
        let card = CheckedCard::new(&req.card, true)?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            pay_method: PAY_METHOD_CARD,
            card_tx_type: CARD_TX_TYPE_BATCH_ISSUE,
            sign_txtype: SIGN_TXTYPE_BATCH_ISSUE,
            group_id,
            ordr_idxx,
            card_no: card.card_no,
            card_expiry: card.card_expiry,
            card_taxno: card.card_taxno,
            card_pwd: card.card_pwd,
            buyr_name: free_text(&req.buyer_name, BUYR_NAME_MAX),
        })
    }
}

/// A charge on a billing key, `gw/hub/v1/payment` (spec §2.6, field for field; `cust_ip` is sent
/// empty as in KCP's example: a billing charge has no customer browser).
#[derive(Serialize, Clone)]
pub struct BatchPaymentRequestBody {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub pay_method: &'static str,
    pub cust_ip: &'static str,
    pub amount: String,
    /// Must equal `amount` (spec §2.6).
    pub card_mny: String,
    pub currency: &'static str,
    pub quota: String,
    pub ordr_idxx: String,
    pub good_name: String,
    pub buyr_name: String,
    pub buyr_mail: String,
    pub buyr_tel2: String,
    pub card_tx_type: &'static str,
    pub bt_batch_key: Sensitive,
    pub bt_group_id: String,
}

impl std::fmt::Debug for BatchPaymentRequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchPaymentRequestBody")
            .field("site_cd", &self.site_cd)
            .field("ordr_idxx", &self.ordr_idxx)
            .field("amount", &self.amount)
            .field("quota", &self.quota)
            .field("bt_group_id", &self.bt_group_id)
            .finish_non_exhaustive()
    }
}

impl BatchPaymentRequestBody {
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        req: &BatchPaymentRequest,
    ) -> Result<Self, PgError> {
        let ordr_idxx = order_no(&req.order_no)?;
        let amount = amount(req.amount)?;
        let quota = quota(req.quota)?;
        let bt_batch_key = Sensitive::new(&kcp_id(&req.batch_key, "billing key")?);
        let bt_group_id = kcp_id(&req.group_id, "batch group id")?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            pay_method: PAY_METHOD_CARD,
            cust_ip: "",
            card_mny: amount.clone(),
            amount,
            currency: CURRENCY_KRW,
            quota,
            ordr_idxx,
            good_name: free_text(&req.good_name, GOOD_NAME_MAX),
            buyr_name: free_text(&req.buyer_name, BUYR_NAME_MAX),
            buyr_mail: contact(&req.buyer_email, BUYR_MAIL_MAX),
            buyr_tel2: contact(&req.buyer_tel, BUYR_TEL_MAX),
            card_tx_type: CARD_TX_TYPE_BATCH,
            bt_batch_key,
            bt_group_id,
        })
    }
}

/// Billing-key delete, `gw/hub/v1/payment` (spec §2.6, field for field).
#[derive(Serialize, Clone)]
pub struct BatchKeyDeleteRequest {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub batch_key: Sensitive,
    pub group_id: String,
    pub pay_method: &'static str,
    pub tx_type: &'static str,
}

impl std::fmt::Debug for BatchKeyDeleteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchKeyDeleteRequest")
            .field("site_cd", &self.site_cd)
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl BatchKeyDeleteRequest {
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        batch_key: &str,
        group_id: &str,
    ) -> Result<Self, PgError> {
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            batch_key: Sensitive::new(&kcp_id(batch_key, "billing key")?),
            group_id: kcp_id(group_id, "batch group id")?,
            pay_method: PAY_METHOD_BATCH,
            tx_type: TX_TYPE_BATCH_DELETE,
        })
    }
}

/// Benepia point balance, `gw/hub/v1/payment` (spec §2.8). `amount` is fixed at `"1004"` for a
/// balance inquiry ("포인트 조회 시 '1004' 고정", seed 003); KCP refuses anything else with 8105.
#[derive(Serialize, Clone)]
pub struct PointBalanceRequest {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub pay_method: &'static str,
    pub amount: String,
    pub currency: &'static str,
    pub pt_issue: &'static str,
    pub pt_txtype: &'static str,
    pub pt_idno: Sensitive,
    pub pt_pwd: Sensitive,
    pub pt_memcorp_cd: String,
    pub ordr_idxx: String,
}

impl std::fmt::Debug for PointBalanceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointBalanceRequest")
            .field("site_cd", &self.site_cd)
            .field("ordr_idxx", &self.ordr_idxx)
            .field("pt_txtype", &self.pt_txtype)
            .finish_non_exhaustive()
    }
}

/// The balance amount KCP requires (see [`PointBalanceRequest`]): a fixed marker, not a purchase.
pub const POINT_BALANCE_AMOUNT: &str = "1004";

impl PointBalanceRequest {
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        order: &str,
        account: &PointAccount,
    ) -> Result<Self, PgError> {
        let ordr_idxx = order_no(order)?;
        let (pt_idno, pt_pwd, pt_memcorp_cd) = point_account(account)?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            pay_method: PAY_METHOD_POINT,
            amount: POINT_BALANCE_AMOUNT.to_owned(),
            currency: CURRENCY_KRW,
            pt_issue: PT_ISSUE_BENEPIA,
            pt_txtype: PT_TXTYPE_BALANCE,
            pt_idno,
            pt_pwd,
            pt_memcorp_cd,
            ordr_idxx,
        })
    }
}

/// Benepia point payment, `gw/hub/v1/payment` (spec §2.8): the balance fields with
/// `pt_txtype 91200000`, `pt_paycode 04`, `pt_mny` (= `amount`) and the order fields.
#[derive(Serialize, Clone)]
pub struct PointPaymentRequestBody {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub pay_method: &'static str,
    pub amount: String,
    pub currency: &'static str,
    pub pt_issue: &'static str,
    pub pt_txtype: &'static str,
    pub pt_paycode: &'static str,
    pub pt_idno: Sensitive,
    pub pt_pwd: Sensitive,
    pub pt_memcorp_cd: String,
    pub pt_mny: String,
    pub ordr_idxx: String,
    pub good_name: String,
    pub buyr_name: String,
    pub buyr_mail: String,
    pub buyr_tel2: String,
}

impl std::fmt::Debug for PointPaymentRequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointPaymentRequestBody")
            .field("site_cd", &self.site_cd)
            .field("ordr_idxx", &self.ordr_idxx)
            .field("amount", &self.amount)
            .finish_non_exhaustive()
    }
}

impl PointPaymentRequestBody {
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        req: &PointPaymentRequest,
    ) -> Result<Self, PgError> {
        let ordr_idxx = order_no(&req.order_no)?;
        let amount = amount(req.amount)?;
        let (pt_idno, pt_pwd, pt_memcorp_cd) = point_account(&req.account)?;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            pay_method: PAY_METHOD_POINT,
            pt_mny: amount.clone(),
            amount,
            currency: CURRENCY_KRW,
            pt_issue: PT_ISSUE_BENEPIA,
            pt_txtype: PT_TXTYPE_PAY,
            pt_paycode: PT_PAYCODE,
            pt_idno,
            pt_pwd,
            pt_memcorp_cd,
            ordr_idxx,
            good_name: free_text(&req.good_name, GOOD_NAME_MAX),
            buyr_name: free_text(&req.buyer_name, BUYR_NAME_MAX),
            buyr_mail: contact(&req.buyer_email, BUYR_MAIL_MAX),
            buyr_tel2: contact(&req.buyer_tel, BUYR_TEL_MAX),
        })
    }
}

/// Point re-approval, `gw/mod/v1/cancel` `mod_type STRA` (spec §2.8, §2.9, seed 003 §2.4): on the
/// live `tno` of a point payment, cancels it and re-approves `mod_mny` (what is left) under a new
/// `tno`; this is how a partial cancel of points is done (documented assumption, docs/kcp.md §8.3:
/// not after a full cancel `STSC`). Signed over `site_cd^tno^STRA` like every modify call (§3).
#[derive(Serialize, Debug, Clone)]
pub struct PointReapprovalRequest {
    pub site_cd: String,
    pub kcp_cert_info: String,
    pub kcp_sign_data: String,
    pub tno: String,
    pub mod_type: &'static str,
    pub mod_mny: String,
    pub mod_ordr_idxx: String,
    pub mod_ordr_goods: String,
    /// Optional in KCP's form; [`crate::pg::PgBilling::reapprove_points`] carries no reason, so
    /// the connector omits it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_desc: Option<String>,
}

impl PointReapprovalRequest {
    pub fn new(
        site_cd: &str,
        signer: &KcpSigner,
        tno_value: &str,
        mod_mny: Won,
        ordr_idxx: &str,
        good_name: &str,
    ) -> Result<Self, PgError> {
        let tno = tno(tno_value)?;
        let mod_type = MOD_TYPE_POINT_REAPPROVAL;
        Ok(Self {
            site_cd: site_cd.to_owned(),
            kcp_cert_info: signer.cert_info().to_owned(),
            kcp_sign_data: sign(signer, &format!("{site_cd}^{tno}^{mod_type}"))?,
            mod_mny: amount(mod_mny)?,
            mod_ordr_idxx: order_no(ordr_idxx)?,
            mod_ordr_goods: free_text(good_name, REAPPROVAL_GOOD_NAME_MAX),
            mod_desc: None,
            tno,
            mod_type,
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
    if !is_digits(value, 14, 14) {
        return Err(invalid_request(
            "KCP tno must be 14 digits",
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

/// `quota`: two digits, `00` = lump sum (spec §2.7, §6).
fn quota(months: u8) -> Result<String, PgError> {
    if months > 99 {
        return Err(invalid_request(
            "quota must be 0–99 months",
            DeclineReason::Other,
        ));
    }
    Ok(format!("{months:02}"))
}

/// An identifier KCP issued (batch key, batch group id): letters and digits only. The error names
/// what was wrong, never the value (a billing key is a secret).
fn kcp_id(value: &str, what: &str) -> Result<String, PgError> {
    if value.is_empty()
        || value.len() > KCP_ID_MAX
        || !value.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(invalid_request(
            format!("{what} must be 1–{KCP_ID_MAX} letters and digits"),
            DeclineReason::Other,
        ));
    }
    Ok(value.to_owned())
}

/// Benepia credentials as KCP's `pt_idno` / `pt_pwd` / `pt_memcorp_cd` (spec §2.8; lengths from
/// seed 003). Only what KCP forbids (§6) or an empty / oversized value is refused, and never
/// altered: a sanitized password would just be a wrong one. Errors never quote the values.
fn point_account(account: &PointAccount) -> Result<(Sensitive, Sensitive, String), PgError> {
    let usable = crate::domain::text::is_sendable_credential;
    if !usable(&account.id) || !usable(&account.password) {
        return Err(invalid_request(
            "point account id and password must be non-empty, at most 16 bytes, without spaces at the ends or , & ; \\ | ' \" < >",
            DeclineReason::Other,
        ));
    }
    if !crate::domain::text::is_sendable_member_code(&account.member_company) {
        return Err(invalid_request(
            "point member company code (pt_memcorp_cd) is missing or malformed",
            DeclineReason::Other,
        ));
    }
    Ok((
        Sensitive::new(&account.id),
        Sensitive::new(&account.password),
        account.member_company.clone(),
    ))
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
    /// `Y` when KCP holds the trade as escrow (spec §2.4): a merchant without an escrow contract
    /// gets a plain trade although the window asked for escrow.
    #[serde(default, deserialize_with = "lenient")]
    pub escw_yn: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub trace_no: Option<String>,
}

impl CardPaymentResponse {
    /// Every amount the answer names (`amount`, `card_mny`), read or not ([`NamedAmounts`]). The
    /// approval is read from `amount` (`card_mny` only when it is absent), but KCP's card amount is
    /// `card_mny` and the hub's contract is `amount == card_mny` (spec §2.4, §2.6, §6): the
    /// cross-check of spec §5 compares both, so an answer naming another card amount, or one that
    /// cannot be read, is a mismatch even when its `amount` is the order's.
    pub fn amounts_named(&self) -> NamedAmounts {
        NamedAmounts::of(&[
            ("amount", self.amount.as_deref()),
            ("card_mny", self.card_mny.as_deref()),
        ])
    }
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
        let partial = req.kind.partial_amounts();
        let remaining = match partial {
            None => 0,
            Some((amount, balance_before)) => match self.rem_mny.as_deref() {
                Some(s) => {
                    parse_won(s).ok_or_else(|| WireError("rem_mny is not an amount".into()))?
                }
                None => balance_before - amount,
            },
        };
        let cancelled = match (partial, self.mod_mny.as_deref()) {
            (Some(_), Some(s)) => {
                Some(parse_won(s).ok_or_else(|| WireError("mod_mny is not an amount".into()))?)
            }
            _ => None,
        };
        let cancelled_at = time_or_now(self.canc_time.as_deref(), "canc_time");
        Ok(crate::pg::CancelConfirmation {
            tno,
            cancelled_at,
            remaining,
            cancelled,
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
    /// The same status for a point trade (`pay_type` PAPT, docs/kcp.md §8.4).
    #[serde(default, deserialize_with = "lenient")]
    pub stat_pt_cd: Option<String>,
    /// The status of a bank transfer (`pay_type` PABK, spec §2.10).
    #[serde(default, deserialize_with = "lenient")]
    pub stat_bk_cd: Option<String>,
    /// Cancellable balance of a bank transfer.
    #[serde(default, deserialize_with = "lenient")]
    pub bk_rem_mny: Option<String>,
    /// The status of a phone payment (`pay_type` PAMC, spec §2.10).
    #[serde(default, deserialize_with = "lenient")]
    pub stat_hp_cd: Option<String>,
    /// Cancellable balance of a phone payment.
    #[serde(default, deserialize_with = "lenient")]
    pub hp_rem_mny: Option<String>,
    /// The status of a gift-certificate payment (`pay_type` PATK): DOCUMENTED ASSUMPTION
    /// (docs/kcp.md), spec §2.10 names only the card, bank and phone fields.
    #[serde(default, deserialize_with = "lenient")]
    pub stat_tk_cd: Option<String>,
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
    /// The status of a virtual account (`pay_type` PAVC, docs/kcp.md §10).
    #[serde(default, deserialize_with = "lenient")]
    pub stat_va_cd: Option<String>,
    /// A virtual account's own fields, when the answer repeats them (docs/kcp.md §10).
    #[serde(flatten)]
    pub vbank: window::VirtualAccountFields,
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
        trade_state(
            approval,
            r.stat_ca_cd.as_deref(),
            "stat_ca_cd",
            r.rem_mny.as_deref(),
            r.canc_time.as_deref(),
        )
    }
}

impl InquiryResponse {
    /// A point trade's answer (`pay_type` PAPT, docs/kcp.md §8.4): `stat_pt_cd` instead of
    /// `stat_ca_cd`, the point approval number in `app_no`, no card fields.
    ///
    /// [`TradeState`] carries a [`CardApproval`]; for points its card fields stay empty
    /// (`issuer_*`, `masked_card_number` "", `quota` 0, not a check card, no partial cancel, which
    /// KCP indeed refuses for points). Only `tno`, `order_no`, `amount`, `app_no` and `approved_at`
    /// are read by the point flows, so one trade type serves both kinds without a parallel enum.
    pub fn into_point_state(self) -> Result<TradeState, WireError> {
        self.into_state_of(PAY_TYPE_POINT)
    }

    /// A non-card trade's answer for `pay_type` (PAPT points, PABK bank transfer, PAMC phone,
    /// PATK gift certificate): the status and balance fields of that kind, the common fields
    /// (`tno`, `order_no`, `amount`, `app_time`, `app_no`) in a [`CardApproval`] shell whose card
    /// fields stay empty. An answer for another kind is an error, never a guess.
    pub fn into_state_of(self, pay_type: &str) -> Result<TradeState, WireError> {
        if let Some(method) = self.pay_method.as_deref().filter(|m| !m.is_empty()) {
            if method != pay_type {
                return Err(WireError(format!(
                    "inquiry answered for pay_method {method}, not {pay_type}"
                )));
            }
        }
        let (stat, stat_field, rem_mny) = match pay_type {
            PAY_TYPE_POINT => (self.stat_pt_cd, "stat_pt_cd", self.rem_mny),
            PAY_TYPE_BANK => (self.stat_bk_cd, "stat_bk_cd", self.bk_rem_mny),
            PAY_TYPE_PHONE => (self.stat_hp_cd, "stat_hp_cd", self.hp_rem_mny),
            PAY_TYPE_GIFT => (self.stat_tk_cd, "stat_tk_cd", self.rem_mny),
            other => {
                return Err(WireError(format!(
                    "no inquiry status field known for pay_type {other}"
                )))
            }
        };
        let approval = card_approval(CardFields {
            tno: self.tno.as_deref(),
            order_no: self.order_no.as_deref(),
            amount: self.amount.as_deref(),
            app_time: self.app_time.as_deref(),
            app_no: self.app_no.as_deref(),
            card_cd: None,
            card_name: None,
            card_no: None,
            quota: None,
            card_bin_type_02: None,
            partcanc_yn: None,
        })?;
        trade_state(
            approval,
            stat.as_deref(),
            stat_field,
            rem_mny.as_deref(),
            self.canc_time.as_deref(),
        )
    }
}

/// An inquiry's status word (STSR / STPC / STSC; a bank transfer's STPA) and balance as a
/// [`TradeState`]; a status we do not know is an error (the caller treats the outcome as still
/// unknown) rather than a guess.
fn trade_state(
    approval: CardApproval,
    stat: Option<&str>,
    stat_field: &str,
    rem_mny: Option<&str>,
    canc_time: Option<&str>,
) -> Result<TradeState, WireError> {
    let rem_mny =
        rem_mny.map(|s| parse_won(s).ok_or_else(|| WireError("rem_mny is not an amount".into())));
    match stat.map(str::trim) {
        Some(STAT_APPROVED) => {
            let remaining = rem_mny.transpose()?.unwrap_or(approval.amount);
            Ok(TradeState::Approved {
                approval,
                remaining,
            })
        }
        // `STPA` only as a bank transfer's status (its legacy partial cancel, docs/kcp.md §9.6).
        Some(stat)
            if stat == STAT_PARTIALLY_CANCELLED
                || (stat == STAT_BANK_PARTIALLY_CANCELLED && stat_field == "stat_bk_cd") =>
        {
            let remaining = rem_mny
                .transpose()?
                .ok_or_else(|| WireError("partially cancelled trade without rem_mny".into()))?;
            Ok(TradeState::Approved {
                approval,
                remaining,
            })
        }
        Some(STAT_CANCELLED) => {
            let cancelled_at = time_or_now(canc_time, "canc_time");
            Ok(TradeState::Cancelled {
                approval,
                cancelled_at,
            })
        }
        Some(other) => Err(WireError(format!("unknown {stat_field} `{other}`"))),
        None => Err(WireError(format!("inquiry answer without {stat_field}"))),
    }
}

/// Answer of billing-key issuance (spec §2.5 fields; via the hub call by assumption, docs/kcp.md
/// §8.1). `Debug` hides the key and shows the card number masked.
#[derive(Deserialize, Debug, Default)]
pub struct BatchKeyResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    #[serde(default)]
    pub batch_key: Option<Sensitive>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub card_bank_cd: Option<String>,
    /// `0` personal, `1` corporate.
    #[serde(default, deserialize_with = "lenient")]
    pub card_bin_type_01: Option<String>,
    /// `0` credit, `1` check.
    #[serde(default, deserialize_with = "lenient")]
    pub card_bin_type_02: Option<String>,
    /// Spec §2.3 (`batch_cardno_return_yn=Y`); masked by KCP, masked again here if it is not.
    #[serde(default)]
    pub card_mask_no: Option<CardNo>,
}

impl BatchKeyResponse {
    /// A success answer as a [`BatchKey`]. Without a key the answer is unusable: KCP may have
    /// registered a key we cannot name, so the caller reports an unknown outcome. When KCP does
    /// not return the masked number, it is masked from the card the merchant sent.
    pub fn into_batch_key(self, card: &CardSecret) -> Result<BatchKey, WireError> {
        self.into_batch_key_or(|| mask_card_number(&card.number))
    }

    /// The same for a key issued from the batch window (spec §2.5), where openport never saw the
    /// card: without `card_mask_no` the masked number is left empty.
    pub fn into_window_batch_key(self) -> Result<BatchKey, WireError> {
        self.into_batch_key_or(String::new)
    }

    fn into_batch_key_or(
        self,
        fallback_mask: impl FnOnce() -> String,
    ) -> Result<BatchKey, WireError> {
        let batch_key = self
            .batch_key
            .as_ref()
            .map(|k| k.expose().trim())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| WireError("success answer without batch_key".into()))?
            .to_owned();
        let masked_card_number = self
            .card_mask_no
            .as_ref()
            .map(CardNo::masked)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(fallback_mask);
        let text = |v: Option<&str>| v.map(str::trim).unwrap_or_default().to_owned();
        Ok(BatchKey {
            batch_key,
            issuer_code: text(self.card_cd.as_deref()),
            issuer_name: text(self.card_name.as_deref()),
            masked_card_number,
            is_check_card: self.card_bin_type_02.as_deref().map(str::trim) == Some("1"),
            is_corporate: self.card_bin_type_01.as_deref().map(str::trim) == Some("1"),
        })
    }
}

/// Answer of the Benepia balance call (spec §2.8).
#[derive(Deserialize, Debug, Default)]
pub struct PointBalanceResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    /// Usable points (1 point = 1 won).
    #[serde(default, deserialize_with = "lenient")]
    pub rsv_pnt: Option<String>,
}

impl PointBalanceResponse {
    pub fn balance(&self) -> Result<Won, WireError> {
        self.rsv_pnt
            .as_deref()
            .and_then(parse_won)
            .ok_or_else(|| WireError("balance answer without a readable rsv_pnt".into()))
    }
}

/// Answer of a Benepia point payment (spec §2.8) and of a point re-approval (`STRA`, whose `tno`
/// is the NEW transaction's).
#[derive(Deserialize, Debug, Default)]
pub struct PointApprovalResponse {
    #[serde(default, deserialize_with = "lenient")]
    pub res_cd: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub res_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub tno: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub pnt_amount: Option<String>,
    /// `yyyyMMddHHmmss`, Korea time.
    #[serde(default, deserialize_with = "lenient")]
    pub pnt_app_time: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub pnt_app_no: Option<String>,
    /// Balance left after the payment.
    #[serde(default, deserialize_with = "lenient")]
    pub rsv_pnt: Option<String>,
}

impl PointApprovalResponse {
    /// The answer's one amount, `pnt_amount`, read or not ([`NamedAmounts`]), for the cross-check
    /// of spec §5 (`rsv_pnt` is the balance left, not an amount charged: see `into_approval`).
    pub fn amounts_named(&self) -> NamedAmounts {
        NamedAmounts::of(&[("pnt_amount", self.pnt_amount.as_deref())])
    }

    /// Like [`card_approval`]: `tno` and `pnt_amount` are what money safety depends on, so
    /// without them the answer is unusable; descriptive fields default (time: now, approval
    /// number: empty). KCP's point answers carry no order number, so `order_no` is the one asked
    /// for. A missing or unreadable `rsv_pnt` does not undo a payment that happened: the balance
    /// is reported as 0 and logged.
    pub fn into_approval(self, order_no: &str) -> Result<PointApproval, WireError> {
        let tno = self
            .tno
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        if tno.is_empty() {
            return Err(WireError("point success answer without tno".into()));
        }
        let amount = self
            .pnt_amount
            .as_deref()
            .and_then(parse_won)
            .ok_or_else(|| {
                WireError(format!(
                    "point success answer for tno {tno} without a readable pnt_amount"
                ))
            })?;
        let balance_after = match self.rsv_pnt.as_deref().and_then(parse_won) {
            Some(balance) => balance,
            None => {
                tracing::warn!(%tno, "KCP point answer without a readable rsv_pnt; reporting 0");
                0
            }
        };
        Ok(PointApproval {
            order_no: order_no.to_owned(),
            amount,
            app_no: self
                .pnt_app_no
                .as_deref()
                .map(str::trim)
                .unwrap_or_default()
                .to_owned(),
            approved_at: time_or_now(self.pnt_app_time.as_deref(), "pnt_app_time"),
            balance_after,
            tno,
        })
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
/// default: `order_no` empty (the caller fills in what it asked for), `partcanc_yn` other than
/// `Y`/`N` = unknown (the cancel rules then follow the payment, as before KCP said anything),
/// `quota` unreadable = 0.
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
        is_check_card: match f.card_bin_type_02.map(str::trim) {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        },
        partial_cancel_allowed: match f.partcanc_yn.map(str::trim) {
            Some("Y") => Some(true),
            Some("N") => Some(false),
            _ => None,
        },
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

/// The amounts a success answer names, for the cross-check of spec §5: those that read as one
/// (`read`), and the fields present and not blank that do not (`unreadable`: `"1,000"`, `"abc"`,
/// `"-5"`, more than a `Won` holds). A blank or absent field names nothing. An amount field KCP
/// filled in but openport cannot read does not confirm what was charged, so the cross-check
/// refuses the approval as it refuses another amount (net-cancelled, never recorded paid); it is
/// never dropped, which would honour an answer whose other field happens to be the order's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NamedAmounts {
    pub read: Vec<Won>,
    /// The fields' names only: a value that is not an amount is not echoed (a body might, against
    /// KCP's contract, carry card data in any field).
    pub unreadable: Vec<&'static str>,
}

impl NamedAmounts {
    /// `(field name, value as answered)` pairs, in the answer's order of importance.
    pub fn of(fields: &[(&'static str, Option<&str>)]) -> Self {
        let mut named = Self::default();
        for (field, value) in fields {
            let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            match parse_won(value) {
                Some(won) => named.read.push(won),
                None => named.unreadable.push(field),
            }
        }
        named
    }

    /// The cross-check's problem for each unreadable field, naming it.
    pub fn unreadable_problems(&self) -> impl Iterator<Item = String> + '_ {
        self.unreadable
            .iter()
            .map(|field| format!("{field} is not a readable amount"))
    }
}

/// `yyyyMMddHHmmss` in Korea time (UTC+9, no DST) → UTC (spec §6).
pub fn parse_kcp_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.len() != 14 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok()?;
    crate::domain::KST
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// UTC → `yyyyMMddHHmmss` in Korea time, the form of every KCP time field (spec §6).
pub fn format_kcp_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&crate::domain::KST)
        .format("%Y%m%d%H%M%S")
        .to_string()
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

pub mod vbank;
pub mod window;

#[cfg(test)]
pub(crate) mod tests;
