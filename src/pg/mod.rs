//! What a payment gateway (PG) can do for openport, independent of any PG's wire format.
//!
//! The service layer talks only to [`PgConnector`]; each PG lives in its own module (`kcp/`) that
//! turns these requests into its wire structs and its answers back into these types, so no PG
//! string (result codes, status words) leaks past the connector.

pub mod kcp;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::domain::vbank::RefundAccount;

/// Amounts are integer won (KRW has no minor unit).
pub type Won = i64;

/// A key-in (card-not-present) card approval request: spec/kcp.md §2.7.
#[derive(Clone)]
pub struct KeyInRequest {
    /// Our unique order number for this attempt (KCP `ordr_idxx`, ≤40 letters and digits).
    pub order_no: String,
    pub amount: Won,
    pub good_name: String,
    pub buyer_name: String,
    pub buyer_email: String,
    pub buyer_tel: String,
    pub card: CardSecret,
    /// Instalment months, 0 = lump sum.
    pub quota: u8,
    pub customer_ip: String,
}

#[cfg(test)]
impl KeyInRequest {
    /// Seed 002's example, the authenticated key-in request unit tests send (the connector's
    /// golden fixtures pin its wire form: tests/fixtures/kcp/).
    pub(crate) fn sample() -> Self {
        KeyInRequest {
            order_no: "TEST1234567890".into(),
            amount: 1000,
            good_name: "테스트 상품".into(),
            buyer_name: "홍길동".into(),
            buyer_email: "test@kcp.co.kr".into(),
            buyer_tel: "01000000000".into(),
            card: CardSecret {
                number: "1234567800000000".into(),
                expiry_yymm: "2607".into(),
                birth: Some("951010".into()),
                pwd_2digit: Some("00".into()),
            },
            quota: 0,
            customer_ip: "".into(),
        }
    }
}

/// Card data that must never be stored, logged or echoed. `Debug` is redacted on purpose.
#[derive(Clone)]
pub struct CardSecret {
    /// 13–16 digits, no separators.
    pub number: String,
    /// `YYMM`, as KCP wants it.
    pub expiry_yymm: String,
    /// Present for authenticated key-in (`11121000`): 6-digit birth date or 10-digit business number.
    pub birth: Option<String>,
    /// First two digits of the card PIN, with `birth`.
    pub pwd_2digit: Option<String>,
}

impl std::fmt::Debug for CardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardSecret(<redacted>)")
    }
}

/// A card approval as KCP reported it (spec/kcp.md §2.4 card fields).
#[derive(Debug, Clone, PartialEq)]
pub struct CardApproval {
    /// KCP transaction number (14 digits) → iamport `pg_tid`.
    pub tno: String,
    pub order_no: String,
    pub amount: Won,
    /// Approval number → iamport `apply_num`.
    pub app_no: String,
    pub approved_at: DateTime<Utc>,
    /// KCP issuer code (`card_cd`, e.g. `CCLG`).
    pub issuer_code: String,
    pub issuer_name: String,
    /// Masked by KCP already (e.g. `411111******1111`).
    pub masked_card_number: String,
    pub quota: u8,
    /// `card_bin_type_02`: false = credit, true = check card; None when KCP leaves it out (its
    /// documented inquiry answer has no such field, spec §2.10).
    pub is_check_card: Option<bool>,
    /// `partcanc_yn` (spec §2.4): whether KCP takes a partial cancel of the approval; None when
    /// KCP leaves it out (its inquiry answer has no such field, spec §2.10).
    pub partial_cancel_allowed: Option<bool>,
}

/// How to cancel: spec/kcp.md §2.9.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelKind {
    /// `STSC`: cancel the whole remaining balance.
    Full,
    /// `STPC`: cancel `amount` out of `balance_before` (KCP's `mod_mny` / `rem_mny`).
    Partial { amount: Won, balance_before: Won },
    /// An escrow trade's cancel: KCP cancels an escrow trade with an escrow status change, never
    /// with `STSC`/`STPC`, and always whole (documented assumption, spec §2.11, docs/kcp.md §9.5).
    Escrow(EscrowCancel),
    /// `STHD`: refund all that is left of a deposited virtual account to the buyer's account. KCP
    /// refunds a deposit only to an account it is named (the card cancel names none); the call is
    /// a documented assumption from public merchant integrations (docs/kcp.md §10.2).
    Refund(RefundAccount),
    /// `STPD`: refund `amount` out of `balance_before` of a deposited virtual account to the
    /// buyer's account (`mod_mny` / `rem_mny` as for `STPC`; assumption as for `Refund`).
    PartialRefund {
        amount: Won,
        balance_before: Won,
        to: RefundAccount,
    },
    /// A deposited escrow virtual account refunded whole by its escrow cancel (`STE2` before the
    /// shipping start, `STE4` after it) carrying the buyer's account as `STHD` carries it: KCP
    /// cancels an escrow trade only by its escrow status change, and a deposit goes back only to
    /// an account it is named (documented assumption, docs/kcp.md §9.5a). Never `CloseVbank`:
    /// an account nobody paid into has nothing to refund.
    EscrowRefund(EscrowCancel, RefundAccount),
}

impl CancelKind {
    /// A partial cancel's or refund's amount and the balance before it (`mod_mny`, `rem_mny`);
    /// None for a kind that takes all that is left.
    pub fn partial_amounts(&self) -> Option<(Won, Won)> {
        match self {
            CancelKind::Partial {
                amount,
                balance_before,
            }
            | CancelKind::PartialRefund {
                amount,
                balance_before,
                ..
            } => Some((*amount, *balance_before)),
            CancelKind::Full
            | CancelKind::Escrow(_)
            | CancelKind::Refund(_)
            | CancelKind::EscrowRefund(..) => None,
        }
    }
}

/// The escrow status change that cancels an escrow trade (spec/kcp.md §2.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowCancel {
    /// `STE2`: cancel before the shipping start (`STE1`) is registered; also every net-cancel of
    /// an escrow approval, which was never shipped.
    BeforeShipping,
    /// `STE4`: cancel after the shipping start.
    AfterShipping,
    /// `STE5`: close an escrow virtual account that was issued and not paid.
    CloseVbank,
}

#[derive(Debug, Clone)]
pub struct CancelRequest {
    pub tno: String,
    pub kind: CancelKind,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CancelConfirmation {
    pub tno: String,
    pub cancelled_at: DateTime<Utc>,
    /// Balance left at KCP after this cancel (0 after a full cancel).
    pub remaining: Won,
    /// What KCP says this cancel took, where its answer says it (a partial cancel's `mod_mny`).
    pub cancelled: Option<Won>,
}

impl CancelConfirmation {
    /// Whether KCP's success answer names the amounts `kind` asked for: a partial cancel's (or
    /// partial refund's) `mod_mny` its amount and `rem_mny` the balance before less that
    /// (spec/kcp.md §2.9). A success for other amounts means KCP holds something else than the
    /// plan: the service asks KCP before it records anything. A full cancel's answer names no
    /// amount.
    pub fn as_asked(&self, kind: &CancelKind) -> bool {
        match kind.partial_amounts() {
            None => true,
            Some((amount, balance_before)) => {
                self.remaining == balance_before - amount
                    && self.cancelled.is_none_or(|took| took == amount)
            }
        }
    }
}

/// What an inquiry says about a transaction: spec/kcp.md §2.10.
#[derive(Debug, Clone, PartialEq)]
pub enum TradeState {
    /// KCP has no approval for this order (it never reached KCP, or KCP declined it).
    NotFound,
    /// Approved; `remaining` is what can still be cancelled.
    Approved {
        approval: CardApproval,
        remaining: Won,
    },
    /// Fully cancelled.
    Cancelled {
        approval: CardApproval,
        cancelled_at: DateTime<Utc>,
    },
}

/// Which transaction to ask about. The order number is used when the approval answer was lost and
/// no `tno` is known (see docs/kcp.md for this documented assumption about `std/inquery`).
#[derive(Debug, Clone)]
pub enum TradeRef {
    Tno(String),
    OrderNo(String),
}

/// Why a PG call did not succeed. The distinction between `Declined` and `Unknown` is what keeps
/// money safe: only a definite refusal may mark a payment failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The PG answered and definitely refused; nothing was charged or changed.
    #[error("{message} ({code})")]
    Declined {
        code: String,
        message: String,
        reason: DeclineReason,
    },
    /// We do not know what happened (timeout, 5xx, dropped connection, unreadable body):
    /// the call may or may not have taken effect and must be resolved by inquiry.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The PG approved, but not what was asked (its `amount` or `order_no` differs from the
    /// request): spec/kcp.md §5. Money HAS moved under `tno`, and the payment must not be marked
    /// paid. An approval of another amount is net-cancelled in full.
    #[error("PG approved {tno} but the answer does not match the request: {detail}")]
    Mismatch {
        tno: String,
        detail: String,
        /// The order number the answer names when it is not the request's: the answer is about
        /// another order's trade (misdirected, cross-wired), so it says nothing of this call, and
        /// `tno` is not this call's approval to cancel (service/orphans.rs
        /// `Gateway::misdirected_answer`).
        other_order: Option<String>,
    },
    /// Our own configuration is unusable (bad key, bad URL); nothing was sent.
    #[error("PG configuration error: {0}")]
    Config(String),
    /// No connection to the PG could be made (refused, DNS, TLS handshake), or the request could
    /// not even be built (an unusable URL): it was never sent, so nothing happened there. Not `Unknown`: an approval that never left openport must
    /// not hold its merchant_uid until an inquiry by order number, which may not be trusted
    /// (docs/kcp.md §4), settles it.
    #[error("the PG could not be reached or the request made, nothing was sent: {0}")]
    NotSent(String),
}

impl PgError {
    /// KCP's own refusal, quoted as iamport's messages quote a PG's ([`quoted_refusal`]): the part
    /// of a failure a merchant or buyer may read. None for every other failure, whose detail
    /// (KCP's URL, the host, a transport or key error) is the operator's and belongs in the log.
    pub fn refusal(&self) -> Option<String> {
        match self {
            PgError::Declined { code, message, .. } => Some(quoted_refusal(code, message)),
            _ => None,
        }
    }
}

/// A PG's refusal as iamport's messages (and openport's recorded `fail_reason`s) show it:
/// `[code] message`.
pub fn quoted_refusal(code: &str, message: &str) -> String {
    format!("[{code}] {message}")
}

/// Coarse decline categories the service layer and API messages care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    /// Card data refused (number, expiry, birth, PIN, card not accepted): iamport code -1.
    CardRejected,
    /// Limit, balance, issuer refusal.
    CardDeclined,
    /// Already cancelled at the PG (KCP 8133).
    AlreadyCancelled,
    /// The billing key was deleted at the PG (KCP 8303): a delete that meets it already happened.
    BatchKeyDeleted,
    /// The PG holds no such billing key (KCP 8302): for a key it issued to openport, it no longer
    /// exists there (see `service::retired_keys`).
    BatchKeyNotFound,
    /// The escrow transaction already has a shipping start at the PG (KCP 8502, documented
    /// assumption): a retried one whose first answer was lost meets this.
    AlreadyShipped,
    /// The virtual account holds deposits, and the cancel or close named no account to refund
    /// them to (KCP 8508, documented assumption): closing it would keep the money nowhere.
    HoldsDeposits,
    /// The PG holds no such transaction (KCP 8201, documented assumption: spec/kcp.md names no
    /// code for it). For a trade it approved, that contradicts the PG's own record: a cancel
    /// refused so is a disagreement for an operator, not a plain failure (service/resolve.rs
    /// `refused_cancel`).
    NoSuchTrade,
    /// Anything else the PG refused.
    Other,
}

/// Everything openport needs from a PG for the core flows. One instance serves one PG merchant
/// account (KCP `site_cd`).
#[async_trait]
pub trait PgConnector: Send + Sync {
    /// Key-in card approval (`gw/hub/v1/payment`, `card_tx_type` 11121000 or 11111000).
    async fn approve_key_in(&self, req: &KeyInRequest) -> Result<CardApproval, PgError>;
    /// Full or partial cancel (`gw/mod/v1/cancel`, signed).
    async fn cancel(&self, req: &CancelRequest) -> Result<CancelConfirmation, PgError>;
    /// Transaction inquiry (`std/inquery`, signed) for a card payment.
    async fn inquire(&self, trade: &TradeRef) -> Result<TradeState, PgError>;
}

/// Billing-key (batch key) issuance from card data without a window. KCP's REST form of this
/// call was not found; openport models it on the hub key-in call as spec/kcp.md §2.5 asks
/// (docs/kcp.md §8.1, a documented assumption): `pay_method "CARD"`, `card_tx_type
/// "12100000"`, the card fields of §2.7 and the merchant's batch group id.
#[derive(Debug, Clone)]
pub struct BatchKeyRequest {
    /// Our order number for this call (letters and digits).
    pub order_no: String,
    pub group_id: String,
    pub card: CardSecret,
    pub buyer_name: String,
}

/// A billing key KCP issued (spec/kcp.md §2.5). The key itself is a secret: `Debug` hides it.
#[derive(Clone, PartialEq)]
pub struct BatchKey {
    pub batch_key: String,
    pub issuer_code: String,
    pub issuer_name: String,
    /// Masked (first 6 + last 4).
    pub masked_card_number: String,
    pub is_check_card: bool,
    pub is_corporate: bool,
}

impl std::fmt::Debug for BatchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchKey")
            .field("batch_key", &"<redacted>")
            .field("issuer_code", &self.issuer_code)
            .field("masked_card_number", &self.masked_card_number)
            .finish()
    }
}

/// A charge on a billing key: spec/kcp.md §2.6 (`card_tx_type 11511000`, `amount == card_mny`).
#[derive(Clone)]
pub struct BatchPaymentRequest {
    pub order_no: String,
    pub amount: Won,
    pub good_name: String,
    pub buyer_name: String,
    pub buyer_email: String,
    pub buyer_tel: String,
    pub batch_key: String,
    pub group_id: String,
    pub quota: u8,
}

impl std::fmt::Debug for BatchPaymentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchPaymentRequest")
            .field("order_no", &self.order_no)
            .field("amount", &self.amount)
            .field("batch_key", &"<redacted>")
            .finish()
    }
}

/// Benepia welfare-point account credentials (seed 003): never stored or logged.
#[derive(Clone)]
pub struct PointAccount {
    pub id: String,
    pub password: String,
    /// `pt_memcorp_cd`: the member company code.
    pub member_company: String,
}

impl std::fmt::Debug for PointAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PointAccount(<redacted>)")
    }
}

/// A Benepia point payment request: spec/kcp.md §2.8 (`pt_txtype 91200000`).
#[derive(Debug, Clone)]
pub struct PointPaymentRequest {
    pub order_no: String,
    pub amount: Won,
    pub good_name: String,
    pub buyer_name: String,
    pub buyer_email: String,
    pub buyer_tel: String,
    pub account: PointAccount,
}

/// A Benepia point approval.
#[derive(Debug, Clone, PartialEq)]
pub struct PointApproval {
    pub tno: String,
    pub order_no: String,
    pub amount: Won,
    pub app_no: String,
    pub approved_at: DateTime<Utc>,
    /// Balance left on the point account after the payment.
    pub balance_after: Won,
}

/// Everything a merchant's PG connector offers: the core, billing, the window and virtual
/// accounts issued without it.
pub trait Pg: PgConnector + PgBilling + PgCheckout + PgVirtualAccounts {}

impl<T: PgConnector + PgBilling + PgCheckout + PgVirtualAccounts> Pg for T {}

fn unsupported<T>(what: &str) -> Result<T, PgError> {
    Err(PgError::Config(format!(
        "this PG connector does not support {what}"
    )))
}

/// Billing keys and Benepia points: separate from [`PgConnector`]'s core so a PG without them
/// still implements the core. Every method has a refusing default.
#[async_trait]
pub trait PgBilling: Send + Sync {
    /// Issues a billing key from card data (`gw/hub/v1/payment`, documented assumption).
    async fn issue_batch_key(&self, _req: &BatchKeyRequest) -> Result<BatchKey, PgError> {
        unsupported("billing keys")
    }
    /// Charges a billing key (`card_tx_type 11511000`).
    async fn pay_with_batch_key(
        &self,
        _req: &BatchPaymentRequest,
    ) -> Result<CardApproval, PgError> {
        unsupported("billing keys")
    }
    /// Deletes a billing key at the PG (`pay_method BATCH`, `tx_type 10005010`).
    async fn delete_batch_key(&self, _batch_key: &str, _group_id: &str) -> Result<(), PgError> {
        unsupported("billing keys")
    }
    /// Benepia point balance (`pt_txtype 97000000`).
    async fn point_balance(
        &self,
        _order_no: &str,
        _account: &PointAccount,
    ) -> Result<Won, PgError> {
        unsupported("Benepia points")
    }
    /// Benepia point payment (`pt_txtype 91200000`, `pt_paycode 04`).
    async fn pay_with_points(&self, _req: &PointPaymentRequest) -> Result<PointApproval, PgError> {
        unsupported("Benepia points")
    }
    /// Inquiry of a Benepia point payment (`std/inquery`, `pay_type PAPT`, docs/kcp.md §8.4): how
    /// an unknown point-payment or re-approval outcome is resolved. The [`CardApproval`] inside
    /// the answer carries the point approval's `tno`, `order_no`, `amount`, `app_no` and time; its
    /// card fields are empty.
    async fn inquire_points(&self, _trade: &TradeRef) -> Result<TradeState, PgError> {
        unsupported("Benepia points")
    }
    /// Re-approves `amount` of the live point payment `tno` under a new tno (`mod_type STRA`),
    /// cancelling `tno`: how a partial cancel of points is done, `amount` being what is left
    /// (spec/kcp.md §2.8, seed 003 §2.4; a documented assumption, docs/kcp.md §8.3).
    async fn reapprove_points(
        &self,
        _tno: &str,
        _amount: Won,
        _order_no: &str,
        _good_name: &str,
    ) -> Result<PointApproval, PgError> {
        unsupported("Benepia points")
    }
}

pub use crate::domain::checkout::WindowMethod;

/// Trade registration before the window opens (spec/kcp.md §2.1, `std/tradeReg/register`).
#[derive(Debug, Clone)]
pub struct TradeRegistration {
    /// KCP `ordr_idxx`.
    pub order_no: String,
    pub amount: Won,
    pub good_name: String,
    pub method: WindowMethod,
    /// Where KCP posts the window's result (`Ret_URL`).
    pub return_url: String,
    pub escrow: bool,
    pub user_agent: String,
}

/// KCP's answer to a trade registration: what the hand-off page posts to the window.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredTrade {
    pub approval_key: String,
    pub trace_no: String,
    pub pay_url: String,
}

/// The opaque window result KCP posted to `Ret_URL`, to redeem at `gw/enc/v1/payment`.
/// `Debug` hides `enc_data` / `enc_info`: they are what the buyer entered, encrypted.
#[derive(Clone)]
pub struct WindowApprovalRequest {
    pub order_no: String,
    /// The merchant's own amount (`ordr_mony`): KCP compares it with the window amount (8059).
    pub amount: Won,
    /// `tran_cd` as posted (`00100000` payment, `00300001` batch-key authentication).
    pub tran_cd: String,
    pub enc_data: String,
    pub enc_info: String,
    /// `use_pay_method` 12-digit bitmask as posted; the connector derives `pay_type` from it.
    pub use_pay_method: String,
}

impl std::fmt::Debug for WindowApprovalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowApprovalRequest")
            .field("order_no", &self.order_no)
            .field("amount", &self.amount)
            .field("tran_cd", &self.tran_cd)
            .field("use_pay_method", &self.use_pay_method)
            .field("enc_data", &"<redacted>")
            .finish()
    }
}

/// A window approval and whether KCP holds it as escrow (`escw_yn`; None when KCP did not say):
/// KCP approves a trade asked for as escrow as a plain one when the merchant has no escrow
/// contract, and a plain trade is cancelled as one.
#[derive(Debug, Clone)]
pub struct ApprovedWindow {
    pub approval: WindowApproval,
    pub escrow: Option<bool>,
}

/// A window approval, per method (spec/kcp.md §2.4).
#[derive(Debug, Clone, PartialEq)]
pub enum WindowApproval {
    Card(CardApproval),
    Bank {
        tno: String,
        order_no: String,
        amount: Won,
        approved_at: DateTime<Utc>,
        bank_code: String,
        bank_name: String,
    },
    /// Issued, awaiting deposit: the same account as one issued without the window.
    VirtualAccount(IssuedVirtualAccount),
    Phone {
        tno: String,
        order_no: String,
        amount: Won,
        approved_at: DateTime<Utc>,
        carrier: String,
        mobile_no: String,
    },
    Point {
        tno: String,
        order_no: String,
        amount: Won,
        approved_at: DateTime<Utc>,
        app_no: String,
    },
    Gift {
        tno: String,
        order_no: String,
        amount: Won,
        approved_at: DateTime<Utc>,
        van_code: String,
        app_no: String,
    },
}

impl WindowApproval {
    /// KCP's transaction number and the amount approved, whatever the method.
    pub fn tno_and_amount(&self) -> (&str, Won) {
        match self {
            Self::Card(c) => (&c.tno, c.amount),
            Self::Bank { tno, amount, .. }
            | Self::VirtualAccount(IssuedVirtualAccount { tno, amount, .. })
            | Self::Phone { tno, amount, .. }
            | Self::Point { tno, amount, .. }
            | Self::Gift { tno, amount, .. } => (tno, *amount),
        }
    }
}

/// Escrow delivery registration (`STE1`, documented assumption: spec/kcp.md §2.11).
#[derive(Debug, Clone)]
pub struct EscrowDelivery {
    pub tno: String,
    pub carrier: String,
    pub invoice: String,
}

/// KCP's standard payment window (browser checkout): registration, approval of the window's
/// result, billing keys from the window, escrow. Every method has a refusing default.
#[async_trait]
pub trait PgCheckout: Send + Sync {
    async fn register_trade(&self, _req: &TradeRegistration) -> Result<RegisteredTrade, PgError> {
        unsupported("the payment window")
    }
    /// `gw/enc/v1/payment` with `ordr_mony` and the `pay_type` of `use_pay_method`.
    async fn approve_window(
        &self,
        _req: &WindowApprovalRequest,
    ) -> Result<ApprovedWindow, PgError> {
        unsupported("the payment window")
    }
    /// `gw/enc/v1/payment` with `tran_cd 00300001` (no `ordr_mony`): a batch key from the window.
    async fn issue_batch_key_from_window(
        &self,
        _req: &WindowApprovalRequest,
    ) -> Result<BatchKey, PgError> {
        unsupported("the payment window")
    }
    /// Escrow: shipping started (`STE1`).
    async fn escrow_delivery(&self, _req: &EscrowDelivery) -> Result<(), PgError> {
        unsupported("escrow")
    }
    /// Inquiry of a window payment that is not a card (spec/kcp.md §2.10): bank transfer, phone
    /// or gift certificate. What it can tell is the common part (tno, amount, approval time and
    /// number, status); method details such as the bank are not in KCP's inquiry answer.
    async fn inquire_window(
        &self,
        _trade: &TradeRef,
        _method: WindowMethod,
    ) -> Result<TradeState, PgError> {
        unsupported("inquiry of window payments")
    }
}

/// A virtual account issued without the payment window (`POST /vbanks`). KCP publishes no such
/// call; openport models it on the hub (docs/kcp.md §10, documented assumption).
#[derive(Debug, Clone)]
pub struct VbankIssueRequest {
    /// Our order number for this attempt (KCP `ordr_idxx`).
    pub order_no: String,
    pub amount: Won,
    pub good_name: String,
    pub buyer_name: String,
    pub buyer_email: String,
    pub buyer_tel: String,
    /// KCP's bank code (`BK04` …), already mapped from iamport's.
    pub bank_code: String,
    /// The deposit deadline.
    pub due: DateTime<Utc>,
}

/// A virtual account KCP issued (spec/kcp.md §2.4's virtual-account answer), awaiting deposits.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedVirtualAccount {
    pub tno: String,
    pub order_no: String,
    pub amount: Won,
    /// KCP's bank code (`bankcode`, e.g. `BK07`) and name (`bankname`).
    pub bank_code: String,
    pub bank_name: String,
    pub account: String,
    /// The account holder shown to the buyer (`depositor`).
    pub holder: String,
    /// Deposit deadline (`va_date`).
    pub due: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
}

/// What an inquiry (`pay_type PAVC`, docs/kcp.md §10) says about a virtual account.
#[derive(Debug, Clone, PartialEq)]
pub enum VbankState {
    /// KCP issued no account for this order (it never reached KCP, or KCP refused it).
    NotFound,
    /// KCP holds the account open: awaiting deposits, or `paid` in full. `amount` is what KCP
    /// holds the account for (`paid` means the deposits reached it, so a deposit notification is
    /// believed only when it also covers the payment's own amount); `remaining` is what a cancel
    /// could still take; `account` is set when the answer names the account (number and
    /// deadline), which is what the buyer must be told.
    Open {
        tno: String,
        amount: Won,
        remaining: Won,
        paid: bool,
        account: Option<IssuedVirtualAccount>,
    },
    /// Closed (`STSC`): revoked before payment, or refunded in full.
    Closed {
        tno: String,
        closed_at: DateTime<Utc>,
    },
}

/// Virtual accounts without the window: issuance, revocation and inquiry. Separate from
/// [`PgCheckout`] because KCP's window-less form is an assumption a PG may not offer; every
/// method has a refusing default.
#[async_trait]
pub trait PgVirtualAccounts: Send + Sync {
    /// Issues an account (`gw/hub/v1/payment`, `pay_method VCNT`, documented assumption).
    async fn issue_vbank(&self, _req: &VbankIssueRequest) -> Result<IssuedVirtualAccount, PgError> {
        unsupported("virtual accounts without the window")
    }
    /// Closes an unpaid account (`gw/mod/v1/cancel`, `STSC`; an escrow account's `STE5`, spec
    /// §2.11): later deposits are refused.
    async fn revoke_vbank(
        &self,
        _tno: &str,
        _escrow: bool,
        _reason: &str,
    ) -> Result<CancelConfirmation, PgError> {
        unsupported("virtual accounts without the window")
    }
    /// Inquiry of a virtual account (`std/inquery`, `pay_type PAVC`): how an unknown issuance or
    /// revocation is resolved.
    async fn inquire_vbank(&self, _trade: &TradeRef) -> Result<VbankState, PgError> {
        unsupported("virtual accounts without the window")
    }
}
