//! Browser checkout over KCP's standard payment window (spec/kcp.md §1.2, §2.1–2.4;
//! spec/iamport-v1.md §6–7): `IMP.request_pay` → trade registration → the window → `Ret_URL` →
//! approval with the merchant's own amount → callback or redirect.
//!
//! Money rules are the key-in ones: the approval attempt is committed before
//! `gw/enc/v1/payment` is called; the payment moves `ready → pending` with a conditional update so
//! a window can be redeemed once; KCP's amount and order are compared with ours and anything that
//! cannot stand is net-cancelled.
use futures::future::FutureExt;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set};
use serde::Serialize;

use super::billing::{KeyNotStored, Storing};
use super::pay::{prepared_mismatch, taken_reason};
use super::pay::{ApprovalOutcome, ChargeOrder, Settling};
use super::{Gateway, ServiceError, ServiceResult};
use crate::domain::checkout::{
    cash_receipt_asked, escrow_good_info, escrow_items, method_of_bitmask, pc_pay_method,
    window_plan, WindowMethod, WindowPlan,
};
use crate::domain::ids::{new_imp_uid, order_no_for, random_hex};
use crate::domain::payment::{PaymentStatus, PG_KCP, PG_KCP_BILLING};
use crate::domain::text::for_kcp;
use crate::domain::vbank::VbankBank;
use crate::pg::{
    quoted_refusal, PgError, TradeRegistration, WindowApproval, WindowApprovalRequest,
};
use crate::store::entity::{checkout_session, merchant, payment, pg_attempt};
use crate::store::{billing, is_trade_clash, is_unique_violation, merchants, payments};

/// The refusal of a billing-key window that would replace a customer's key without the merchant's
/// word (`replacement_refused`).
pub const KEY_REPLACEMENT_REFUSED: &str = "이미 빌링키가 등록된 customer_uid입니다. 결제창에서 카드를 변경하려면 가맹점 서버에서 이 merchant_uid를 먼저 사전등록(POST /payments/prepare, amount 0)해 주세요.";

/// The refusal of a mobile checkout from a page that is not http(s) without `m_redirect_url`.
const MOBILE_NEEDS_REDIRECT: &str = "모바일 결제에는 m_redirect_url(http/https)이 필요합니다.";

/// The window's payment when the database failed before its key was stored (the key is deleted
/// at KCP).
const WINDOW_KEY_NOT_STORED: &str =
    "빌링키를 저장하지 못해 등록하지 않았습니다. 잠시 후 다시 시도해 주세요.";

/// What became of a billing-key window's key once KCP issued it.
enum WindowKey {
    /// Stored as the customer's, replacing `replaced`.
    Stored {
        replaced: Option<Box<crate::store::entity::billing_key::Model>>,
    },
    /// Another holder settled the window's attempt first: its outcome stands.
    SettledElsewhere,
    /// The customer_uid got a key since the window opened that the merchant did not let it
    /// replace ([`replacement_refused`]).
    ReplacementRefused,
}

/// What came of [`Gateway::claim_window`].
enum WindowClaim {
    /// This request redeems the window: the payment is pending, with this attempt, held.
    Held(Box<pg_attempt::Model>),
    /// The merchant_uid's prepared amount (or currency) differs from the window's: the payment
    /// failed with this reason, and nothing was sent to KCP.
    PreparedDiffers(String),
    /// The window opened longer ago than `checkout.window_ttl_secs`: the payment failed with this
    /// reason ([`window_expired_reason`]), and nothing was sent to KCP.
    Expired(String),
    /// Another post redeemed or closed the window first: the payment as it stands is the answer.
    Taken,
}

/// What confirm_url decided for a claimed window ([`Gateway::confirm_claimed`]).
enum Confirmed {
    /// Approve, with the attempt (still held).
    Go(Box<pg_attempt::Model>),
    /// Nothing is sent to KCP; the answer is the payment as it stands, with this error when the
    /// merchant's refusal failed it.
    Stop(Option<(&'static str, String)>),
}

/// A `request_pay` as the SDK sends it, parsed.
#[derive(Debug, Clone, Default)]
pub struct CheckoutRequest {
    pub order: ChargeOrder,
    pub pay_method: String,
    pub billing: bool,
    /// The KCP site `pg` named (`kcp.{site_cd}`), which must be the merchant's.
    pub pg_site_cd: Option<String>,
    pub escrow: bool,
    /// iamport `kcpProducts`: (orderNumber, name, quantity, amount).
    pub products: Vec<(String, String, i64, i64)>,
    /// `display.card_quota`: allowed instalment months (empty = lump sum only).
    pub card_quota: Option<Vec<u8>>,
    /// `card.detail`'s enabled cards as KCP issuer codes (`used_card`); empty = every card.
    pub used_card: Vec<&'static str>,
    /// iamport `company`, made fit for KCP: the window's `shop_name`.
    pub shop_name: Option<String>,
    pub shop_user_id: Option<String>,
    pub confirm_url: Option<String>,
    pub redirect_url: Option<String>,
    pub mobile: bool,
    /// Origin of the merchant page, where the result is posted back (PC).
    pub page_origin: String,
    /// The merchant page itself, without an earlier checkout's result parameters: where a mobile
    /// flow without `m_redirect_url` returns.
    pub page_url: String,
    pub digital: bool,
    /// iamport `vbank_due`: the virtual account's deposit deadline (KCP `ipgm_date`).
    pub vbank_due: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone)]
pub struct CheckoutStarted {
    pub imp_uid: String,
    pub merchant_uid: String,
    pub token: String,
}

/// The session token opens the buyer's window: `Debug` never shows it.
impl std::fmt::Debug for CheckoutStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutStarted")
            .field("imp_uid", &self.imp_uid)
            .field("merchant_uid", &self.merchant_uid)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A refusal before the window opens: reported to the SDK with the imp_uid when one exists.
#[derive(Debug)]
pub struct CheckoutRefused {
    pub code: i32,
    pub message: String,
    pub imp_uid: Option<String>,
}

impl From<ServiceError> for CheckoutRefused {
    /// The message reaches the buyer's browser: a database or internal failure is logged here
    /// and named only in general terms.
    fn from(e: ServiceError) -> Self {
        let code = match e {
            ServiceError::CardRejected(_) | ServiceError::BadRequest(_) => -1,
            _ => 1,
        };
        let message = match e {
            ServiceError::Db(_) | ServiceError::Internal(_) => {
                tracing::error!("checkout refused on an internal failure: {e}");
                "결제를 시작하지 못했습니다. 잠시 후 다시 시도해 주세요.".to_string()
            }
            e => e.to_string(),
        };
        Self {
            code,
            message,
            imp_uid: None,
        }
    }
}

/// The window fields the hand-off page posts to KCP, kept with the session.
#[derive(Clone, Serialize, serde::Deserialize, Default)]
pub struct WindowFields {
    pub fields: Vec<(String, String)>,
    pub page_origin: String,
    #[serde(default)]
    pub page_url: String,
    /// The order's merchant_uid, kept with the window so that an answer given while its payment
    /// cannot be read (the outcome being checked) still names it: iamport's redirect to
    /// `m_redirect_url` always carries `merchant_uid` (spec/iamport-v1.md §6), and a merchant page
    /// told only an imp_uid it has not stored yet cannot find its order. Empty in the params of a
    /// window opened before it was kept.
    #[serde(default)]
    pub merchant_uid: String,
    /// The digest (`secrets::token_digest`) of this window's return key ([`return_key_of`] the
    /// session token), which the hand-off page sends in [`RETURN_KEY_FIELD`] and KCP posts back to
    /// `Ret_URL` unchanged (spec/kcp.md §2.2–2.3). Only the buyer's browser (through the hand-off
    /// page) and KCP see the key, so a post naming the window's `ordr_idxx` without it is not the
    /// window's result: whoever learnt an imp_uid can neither read the buyer's `rsp` nor fail an
    /// open window with `res_cd=3001`. Only its digest is stored, and the session token it is
    /// derived from is stored as a digest too, so reading the database does not give it.
    #[serde(default)]
    pub return_key: String,
    /// The window is KCP's PC flow (spec/kcp.md §1.1): the hand-off page loads KCP's PC script
    /// and posts KCP's answer to `Ret_URL` itself, so the answer must carry `ordr_chk`, which
    /// is compared with the order before anything is approved. False: the mobile flow (§1.2),
    /// whose answer has no `ordr_chk`.
    #[serde(default)]
    pub pc_flow: bool,
    /// The KCP batch group a billing-key window was opened with, where KCP issues its key: the
    /// key is stored under it ([`window_group_id`]), whatever the merchant's group is by the time
    /// the buyer finishes (`openport merchant set-group-id` meanwhile). Kept apart from the form
    /// because the form spells it per flow (spec/kcp.md §2.2: `kcp_group_id` on the mobile post,
    /// `kcpgroup_id` on the PC form). Empty for other windows, and in the params of a window
    /// opened before it was kept.
    #[serde(default)]
    pub group_id: String,
}

/// [`Gateway::fail_ready`] in `db` (a transaction of the caller's), at `now`.
async fn fail_ready_in(
    db: &impl sea_orm::ConnectionTrait,
    p: &payment::Model,
    reason: &str,
    now: i64,
) -> Result<bool, sea_orm::DbErr> {
    let res = payment::Entity::update_many()
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::Failed.as_db()),
        )
        .col_expr(payment::Column::FailReason, Expr::value(reason))
        .col_expr(payment::Column::FailedAt, Expr::value(now))
        .col_expr(payment::Column::UpdatedAt, Expr::value(now))
        .filter(payment::Column::Id.eq(p.id))
        .filter(payment::Column::Status.eq(PaymentStatus::Ready.as_db()))
        .filter(payment::Column::PgTid.is_null())
        .filter(payment::Column::VbankNum.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The KCP group a billing-key window was opened with ([`WindowFields::group_id`]), kept with the
/// session. A window opened before it was kept has it only in its form, under the flow's spelling
/// (spec/kcp.md §2.2): `kcp_group_id` (mobile) or `kcpgroup_id` (PC). Reading one spelling only
/// took every PC window's group for none, and its key was stored under the merchant's group of
/// the moment, where KCP does not have it.
fn window_group_id(s: &checkout_session::Model) -> Option<String> {
    let window: WindowFields = serde_json::from_str(&s.params).ok()?;
    if !window.group_id.is_empty() {
        return Some(window.group_id);
    }
    window
        .fields
        .into_iter()
        .find(|(name, _)| name == "kcp_group_id" || name == "kcpgroup_id")
        .map(|(_, group_id)| group_id)
        .filter(|group_id| !group_id.is_empty())
}

/// Whether the window is sent the buyer's id at the merchant (`shop_user_id`, spec §2.2: required
/// for phone, point and gift certificate windows).
fn sends_shop_user_id(plan: &WindowPlan) -> bool {
    plan.needs_shop_user_id || matches!(plan.method, WindowMethod::Phone | WindowMethod::Point)
}

/// The `shop_user_id` sent to KCP: the merchant's `bypass.shop_user_id`, else the merchant_uid,
/// made fit for KCP as any text it is sent (spec §6: forbidden characters become spaces, at most
/// 20 bytes, cut on a character boundary; script refused). Refused when nothing is left.
fn shop_user_id(req: &CheckoutRequest) -> ServiceResult<String> {
    let id = req
        .shop_user_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .unwrap_or(&req.order.merchant_uid);
    let fit = for_kcp("bypass.shop_user_id", id, 20)
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    if fit.is_empty() {
        return Err(ServiceError::BadRequest(
            "bypass.shop_user_id에 KCP에 보낼 수 있는 문자가 없습니다.".into(),
        ));
    }
    Ok(fit)
}

/// The return key of the window whose session token is `token`: derived, never stored, so the
/// hand-off page (which has the token in its URL) can send it and the database holds neither.
pub fn return_key_of(token: &str) -> String {
    super::secrets::token_digest(&format!("openport window return key\0{token}"))[..32].to_string()
}

/// Whether a billing-key window for merchant_uid `merchant_uid` may not replace `current`, the
/// customer's active key (none: a first key, always allowed). The window is opened by anyone who
/// has the page's public `imp_code`, and a replaced key is deleted at KCP: so an existing key is
/// replaced only when the merchant's server prepared the window's merchant_uid
/// (`POST /payments/prepare`, amount 0), which only its REST credentials can do. Asked when the
/// window opens and again, in its transaction, when it completes.
async fn replacement_refused(
    db: &impl sea_orm::ConnectionTrait,
    current: Option<&crate::store::entity::billing_key::Model>,
    merchant_id: i64,
    merchant_uid: &str,
) -> Result<bool, sea_orm::DbErr> {
    if current.is_none() {
        return Ok(false);
    }
    Ok(payments::prepare_by_uid(db, merchant_id, merchant_uid)
        .await?
        .is_none())
}

/// The amount a request's payment records, and so the one its merchant_uid's prepare is compared
/// with (spec §4.3, §7: a payment under a prepared merchant_uid is at the prepared amount), at the
/// start and again in [`Gateway::claim_window`]: what the merchant asked for, except that a
/// billing-key window records 0 whatever it shows, KCP charging nothing when it issues a key
/// (seed 004). Never the amount a billing window shows: a buyer who adds `pg: 'kcp_billing'` and a
/// `customer_uid` to the page's request_pay would otherwise turn an order prepared at its price
/// into a `paid` payment of 0 won under its merchant_uid (review rD F1).
fn recorded_amount(req: &CheckoutRequest) -> i64 {
    if req.billing {
        0
    } else {
        req.order.amount
    }
}

/// What a billing window whose merchant_uid was prepared with another amount than 0 is told
/// besides the usual mismatch: it pays nothing, so only a prepare of 0 is its own, and an order
/// prepared at its price is paid in a payment window.
const BILLING_PREPARE_HINT: &str = "빌링키 발급 결제창은 결제 금액 없이 0원으로 기록되므로, 빌링키 발급 결제창의 merchant_uid는 amount 0으로 사전등록해 주세요. (금액으로 사전등록된 주문은 결제창(pg 'kcp')으로 결제해야 합니다)";

/// A prepared-amount refusal (`prepared_mismatch`) of a billing window, with
/// [`BILLING_PREPARE_HINT`]; anything else as it is.
fn for_billing_window(billing: bool, e: ServiceError) -> ServiceError {
    match e {
        ServiceError::Refused(message) if billing => {
            ServiceError::Refused(format!("{message} {BILLING_PREPARE_HINT}"))
        }
        e => e,
    }
}

/// The return key (and the window's fields, which carry it) never show in `Debug`.
impl std::fmt::Debug for WindowFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowFields")
            .field("fields", &format_args!("<{} fields>", self.fields.len()))
            .field("page_origin", &self.page_origin)
            .field("page_url", &self.page_url)
            .field("merchant_uid", &self.merchant_uid)
            .field("return_key", &"<redacted>")
            .field("group_id", &self.group_id)
            .finish()
    }
}

impl WindowFields {
    /// Whether a `Ret_URL` post carrying `posted` in [`RETURN_KEY_FIELD`] comes from this window.
    pub fn returned_by_its_window(&self, posted: &str) -> bool {
        use subtle::ConstantTimeEq;
        let posted = super::secrets::token_digest(posted);
        bool::from(self.return_key.as_bytes().ct_eq(posted.as_bytes()))
    }

    /// The fields the hand-off page of session `token` posts to KCP: the stored ones and the
    /// window's return key.
    pub fn hand_off_fields(&self, token: &str) -> Vec<(String, String)> {
        let mut fields = self.fields.clone();
        fields.push((RETURN_KEY_FIELD.to_string(), return_key_of(token)));
        fields
    }

    /// The amount the window showed (`good_mny`).
    fn shown_amount(&self) -> Option<i64> {
        self.fields
            .iter()
            .find(|(k, _)| k == "good_mny")
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// The hidden inputs of a PC window form that KCP's PC script fills with its answer
/// (spec/kcp.md §1.1), present and empty when the page loads.
pub const PC_RESULT_FIELDS: &[&str] = &[
    "res_cd",
    "res_msg",
    "enc_info",
    "enc_data",
    "ret_pay_method",
    "tran_cd",
    "use_pay_method",
    "ordr_chk",
    "cash_yn",
    "cash_tr_code",
    "cash_id_info",
];

/// The window field that carries [`WindowFields::return_key`] (`param_opt_1` carries the imp_uid).
pub const RETURN_KEY_FIELD: &str = "param_opt_2";

/// KCP's `pay_method` of the billing-key (batch key) window (spec/kcp.md §2.2).
const BILLING_WINDOW: &str = "AUTH";

/// Unknown order number, or a post that is not the window's own: answered alike, so a guess
/// learns nothing.
fn unknown_window() -> ServiceError {
    ServiceError::NotFound("결제창 정보가 존재하지 않습니다.".into())
}

/// iamport's `rsp` (RequestPayResponse).
#[derive(Debug, Clone, Serialize)]
pub struct Rsp {
    pub success: bool,
    pub imp_success: bool,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub imp_uid: Option<String>,
    pub merchant_uid: String,
    pub pay_method: Option<String>,
    pub paid_amount: i64,
    pub status: Option<String>,
    pub name: Option<String>,
    pub pg_provider: String,
    pub emb_pg_provider: Option<String>,
    pub pg_tid: Option<String>,
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_tel: Option<String>,
    pub buyer_addr: Option<String>,
    pub buyer_postcode: Option<String>,
    pub custom_data: Option<String>,
    pub paid_at: i64,
    pub receipt_url: Option<String>,
    pub apply_num: Option<String>,
    pub card_name: Option<String>,
    pub card_number: Option<String>,
    pub card_quota: i32,
    /// The card's issuer code, as `GET /payments/{imp_uid}` names it (null but for cards).
    pub card_code: Option<String>,
    /// A bank transfer's bank, as `GET /payments/{imp_uid}` names it (null but for transfers).
    pub bank_name: Option<String>,
    pub currency: String,
    pub vbank_num: Option<String>,
    pub vbank_name: Option<String>,
    pub vbank_holder: Option<String>,
    pub vbank_date: i64,
}

/// The `error_code` of a payment whose outcome is not known yet: the buyer is told to look again
/// later, not that it failed.
const CHECKING: &str = "F500";

fn checking_message(imp_uid: &str) -> String {
    format!("결제 결과를 확인 중입니다. 잠시 후 결제내역을 조회해 주세요. (imp_uid: {imp_uid})")
}

impl Rsp {
    pub fn of(p: &payment::Model, error: Option<(&str, String)>) -> Self {
        let status = PaymentStatus::from_db(&p.status);
        let ok = error.is_none() && matches!(status, PaymentStatus::Paid | PaymentStatus::Ready);
        let (error_code, error_msg) = match error {
            Some((c, m)) => (Some(c.to_string()), Some(m)),
            // Still in flight (a second tab or a replayed post while the first is approving): not
            // a failure, which could make the buyer pay again under another order.
            None if status == PaymentStatus::Pending => {
                (Some(CHECKING.into()), Some(checking_message(&p.imp_uid)))
            }
            None if !ok => (
                Some(failure_code(p.fail_reason.as_deref()).into()),
                p.fail_reason.clone(),
            ),
            None => (None, None),
        };
        Self {
            success: ok,
            imp_success: ok,
            error_code,
            error_msg,
            imp_uid: Some(p.imp_uid.clone()),
            merchant_uid: p.merchant_uid.clone(),
            pay_method: Some(p.pay_method.clone()),
            // iamport's manual: "실제 결제승인된 금액이나 가상계좌 입금예정 금액" — an issued
            // virtual account reports the amount due.
            paid_amount: match status {
                PaymentStatus::Paid => p.amount,
                PaymentStatus::Ready if p.vbank_num.is_some() => p.amount,
                _ => 0,
            },
            status: Some(status.as_iamport().to_string()),
            name: p.name.clone(),
            pg_provider: p.pg_provider.clone(),
            emb_pg_provider: p.emb_pg_provider.clone(),
            pg_tid: p.pg_tid.clone(),
            buyer_name: p.buyer_name.clone(),
            buyer_email: p.buyer_email.clone(),
            buyer_tel: p.buyer_tel.clone(),
            buyer_addr: p.buyer_addr.clone(),
            buyer_postcode: p.buyer_postcode.clone(),
            custom_data: p.custom_data.clone(),
            paid_at: p.paid_at.unwrap_or(0),
            receipt_url: p.receipt_url(),
            apply_num: p.apply_num.clone(),
            card_name: p.card_name.clone(),
            card_number: p.card_number.clone(),
            card_quota: p.card_quota,
            card_code: p.card_code.clone(),
            bank_name: p.bank_name.clone(),
            currency: p.currency.clone(),
            vbank_num: p.vbank_num.clone(),
            vbank_name: p.vbank_name.clone(),
            vbank_holder: p.vbank_holder.clone(),
            vbank_date: p.vbank_date.unwrap_or(0),
        }
    }

    /// Session `s`'s answer when its payment could not be read: the order as the window knows it
    /// (its imp_uid, and `merchant_uid`, kept with the window's fields) and `error`.
    fn unread(
        s: &checkout_session::Model,
        merchant_uid: &str,
        error: Option<(&str, String)>,
    ) -> Self {
        let (code, message) = error.unwrap_or((CHECKING, checking_message(&s.imp_uid)));
        let mut rsp = Self::refused(merchant_uid, Some(s.imp_uid.clone()), &message);
        rsp.error_code = Some(code.to_string());
        rsp.status = None;
        if s.kcp_pay_method == BILLING_WINDOW {
            rsp.pg_provider = PG_KCP_BILLING.into();
        }
        rsp
    }

    /// A refusal before any payment existed.
    pub fn refused(merchant_uid: &str, imp_uid: Option<String>, message: &str) -> Self {
        Self {
            success: false,
            imp_success: false,
            error_code: Some("F400".into()),
            error_msg: Some(message.to_string()),
            imp_uid,
            merchant_uid: merchant_uid.to_string(),
            pay_method: None,
            paid_amount: 0,
            status: Some("failed".into()),
            name: None,
            pg_provider: PG_KCP.into(),
            emb_pg_provider: None,
            pg_tid: None,
            buyer_name: None,
            buyer_email: None,
            buyer_tel: None,
            buyer_addr: None,
            buyer_postcode: None,
            custom_data: None,
            paid_at: 0,
            receipt_url: None,
            apply_num: None,
            card_name: None,
            card_number: None,
            card_quota: 0,
            card_code: None,
            bank_name: None,
            currency: "KRW".into(),
            vbank_num: None,
            vbank_name: None,
            vbank_holder: None,
            vbank_date: 0,
        }
    }
}

/// A `Ret_URL` post [`Gateway::complete_checkout`] could not answer from the payment's record.
pub struct ReturnFailed {
    pub error: ServiceError,
    /// Once the post is known to be its window's: the window's answer saying that the outcome is
    /// being checked (`F500`, with the imp_uid and merchant_uid, the window's own). A mobile buyer
    /// is sent back with it (the redirect is the only way back to the shop, and the merchant page
    /// learns the imp_uid); a PC window still open is failed and answered with why
    /// ([`Gateway::stop_unanswered_window`]), any other shows the error page, whose overlay's
    /// close then asks for the payment as it stands.
    pub checking: Option<CheckoutFinish>,
}

/// What [`Gateway::hand_off`] found.
pub enum HandOff {
    /// The window is still to be opened: the hand-off page posts it.
    Open(Box<checkout_session::Model>),
    /// The window ended (its session is closed, or its payment has moved on): the payment as it
    /// stands, for a mobile buyer who comes back to the page (Back from KCP's window, a reload)
    /// to be sent on as `Ret_URL` would have sent them, never into KCP's window again.
    Ended(Box<CheckoutFinish>),
}

/// The fail_reason of a window completed (or handed off) more than `ttl_secs` after it opened
/// (`checkout.window_ttl_secs`): shown to the buyer, and the merchant's callback or redirect
/// carries it with `error_code` `F400`.
fn window_expired_reason(ttl_secs: i64) -> String {
    let limit = if ttl_secs % 3600 == 0 {
        format!("{}시간", ttl_secs / 3600)
    } else if ttl_secs % 60 == 0 {
        format!("{}분", ttl_secs / 60)
    } else {
        format!("{ttl_secs}초")
    };
    format!("결제창을 연 지 오래되어({limit} 초과) 결제를 진행할 수 없습니다. 다시 결제해 주세요.")
}

/// Whether nothing came of `p`'s window yet: `ready` without a KCP trade (an issued account is
/// `ready` too, with its tno and account).
fn window_open(p: &payment::Model) -> bool {
    p.status == PaymentStatus::Ready.as_db() && p.pg_tid.is_none() && p.vbank_num.is_none()
}

/// Whether `p`'s outcome is recorded: neither its open window nor an approval in flight
/// (`pending`), and so the answer as it stands.
fn outcome_recorded(p: &payment::Model) -> bool {
    !window_open(p) && p.status != PaymentStatus::Pending.as_db()
}

/// The "being checked" error of payment `imp_uid`.
fn checking(imp_uid: &str) -> (&'static str, String) {
    (CHECKING, checking_message(imp_uid))
}

/// How often a `Ret_URL` post that found its window redeemed by another post reads the payment
/// again while that post's approval is in flight ([`Gateway::finish_settled`]).
const SETTLED_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// What such a post waits beyond the approval call's timeout (`kcp.timeout_ms`): the writes
/// around the call (the claim's, the outcome's). A window with a confirm_url also waits for the
/// merchant's answer, asked after the claim and before the approval ([`settled_wait`]).
const SETTLED_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a `Ret_URL` post that found its window claimed waits for the claiming post's outcome
/// ([`Gateway::finish_settled`]): the approval call's timeout (`kcp_timeout`) and
/// [`SETTLED_MARGIN`], and, when the window has a confirm_url, its timeout too
/// ([`super::confirm::CONFIRM_TIMEOUT`]): the claiming post may spend up to that long in it
/// before the approval call even starts. Shorter, a mobile buyer double-tapping KCP's final
/// button could be redirected with `imp_success=false` (`F500`) a moment before the payment is
/// recorded `paid`, and pay again under a new order.
fn settled_wait(kcp_timeout: std::time::Duration, confirm_url: bool) -> std::time::Duration {
    let confirm = if confirm_url {
        super::confirm::CONFIRM_TIMEOUT
    } else {
        std::time::Duration::ZERO
    };
    kcp_timeout + SETTLED_MARGIN + confirm
}

/// How the browser is answered at the end.
pub struct CheckoutFinish {
    pub rsp: Rsp,
    pub mobile: bool,
    pub redirect_url: Option<String>,
    pub page_origin: String,
    /// The window's merchant, whose redirect origins a mobile answer is checked against again
    /// before it redirects (`Gateway::redirect_still_allowed`).
    pub merchant_id: i64,
}

/// The failure of a window the buyer cancelled, whichever way: KCP's window closed (`Ret_URL`
/// with `res_cd` [`USER_CANCEL_CODE`]) or openport's overlay closed before KCP answered (the
/// session's cancel call).
const USER_CANCEL: &str = "사용자가 결제를 취소하였습니다.";

/// The `error_code` of a buyer's cancel: KCP's (spec/kcp.md "3001 user cancelled in the window"),
/// which iamport passes on as the PG gave it (PortOne: error_code and error_msg are the PG's,
/// unprocessed). The overlay's close is the same event and answers the same, as does every later
/// answer of the payment (a replayed post, the hand-off page of the ended window).
const USER_CANCEL_CODE: &str = "3001";

/// The `error_code` of a payment that failed with `reason` when no other is given: the buyer's
/// cancel ([`USER_CANCEL_CODE`], known from the reason both cancel paths record), KCP's code when
/// the reason quotes KCP's refusal ([`pg_code`]: a refusal in KCP's window, a declined approval),
/// else `F400`. The first answer of a window KCP refused takes its code from here too, so that
/// every answer of the payment (a replayed post, the overlay's close, the ended hand-off page)
/// says the same.
fn failure_code(reason: Option<&str>) -> &str {
    match reason {
        Some(USER_CANCEL) => USER_CANCEL_CODE,
        Some(reason) => pg_code(reason).unwrap_or("F400"),
        None => "F400",
    }
}

/// KCP's code in a reason that quotes its refusal ([`quoted_refusal`]: `[code] message`). The
/// code of a window's refusal comes from the buyer's browser (`res_cd`, posted back to `Ret_URL`),
/// so only what KCP's codes look like is taken (up to 4 ASCII letters or digits: `res_cd 4`,
/// spec/kcp.md §6), and never [`CHECKING`], which the SDK reads as an approval in flight.
fn pg_code(reason: &str) -> Option<&str> {
    let (code, _) = reason.strip_prefix('[')?.split_once(']')?;
    let kcp_like =
        !code.is_empty() && code.len() <= 4 && code.bytes().all(|b| b.is_ascii_alphanumeric());
    (kcp_like && code != CHECKING).then_some(code)
}

impl Gateway {
    pub async fn merchant_by_code(&self, imp_code: &str) -> ServiceResult<merchant::Model> {
        merchants::by_imp_code(&self.db.read, imp_code)
            .await?
            // A merchant made in test mode has no checkout outside test mode, as no token.
            .filter(|m| super::merchants::serves_in_mode(self.settings.test_mode, m))
            .ok_or_else(|| {
                ServiceError::BadRequest("등록되지 않은 가맹점 식별코드입니다. (IMP.init)".into())
            })
    }

    /// Everything before the window: rules, the payment (`ready`), KCP's trade registration and
    /// the session. `return_url` is openport's `Ret_URL` as the browser reaches it.
    pub async fn start_checkout(
        &self,
        m: &merchant::Model,
        mut req: CheckoutRequest,
        return_url: &str,
    ) -> Result<CheckoutStarted, CheckoutRefused> {
        let plan = window_plan(&req.pay_method, req.billing).ok_or_else(|| {
            ServiceError::BadRequest(format!("지원하지 않는 결제수단입니다: {}", req.pay_method))
        })?;
        // The REST API's range (a billing-key window may show 0): checked before anything is
        // written, so an amount KCP would refuse never opens a payment.
        crate::domain::order::amount(Some(req.order.amount), if req.billing { 0 } else { 1 })
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        crate::domain::pg::own_site(req.pg_site_cd.as_deref(), &m.site_cd)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        if plan.needs_shop_user_id && req.shop_user_id.as_deref().is_none_or(str::is_empty) {
            return Err(ServiceError::BadRequest(
                "상품권 결제에는 bypass.shop_user_id가 필요합니다.".into(),
            )
            .into());
        }
        if sends_shop_user_id(&plan) {
            req.shop_user_id = Some(shop_user_id(&req)?);
        }
        req.products =
            escrow_items(&req.products).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        // KCP's escrow (구매안전) covers cards, bank transfers and virtual accounts (as PortOne
        // documents it for KCP): an escrow phone, point or gift window would be refused in the
        // buyer's face or approved plain. Refused before anything is written or registered.
        if req.escrow
            && matches!(
                plan.method,
                WindowMethod::Phone | WindowMethod::Point | WindowMethod::GiftCertificate
            )
        {
            return Err(ServiceError::BadRequest(format!(
                "KCP 에스크로 결제는 신용카드(card), 실시간 계좌이체(trans), 가상계좌(vbank)만 지원합니다: pay_method '{}'",
                req.pay_method
            ))
            .into());
        }
        if req.escrow && req.products.is_empty() {
            return Err(ServiceError::BadRequest(
                "KCP 에스크로 결제에는 kcpProducts가 필요합니다.".into(),
            )
            .into());
        }
        // KCP's escrow needs a receiver (`rcvr_name`, spec §2.11), sent from `buyer_name`
        // (`window_fields`): without one KCP's window would refuse it in the buyer's face.
        let receiver = req.order.buyer_name.as_deref().unwrap_or("");
        if req.escrow
            && for_kcp("buyer", receiver, 30)
                .unwrap_or_default()
                .is_empty()
        {
            return Err(ServiceError::BadRequest(
                "KCP 에스크로 결제에는 수취인으로 보낼 buyer_name이 필요합니다.".into(),
            )
            .into());
        }
        if let Some(url) = &req.confirm_url {
            self.check_confirm_url(url)?;
        }
        // Where a mobile buyer is redirected at the end ([`Self::answer_of`]): `m_redirect_url`,
        // else the page. The request names both freely (a public imp_code is all it takes), so a
        // merchant that lists its origins has any other refused before anything is written.
        if req.mobile {
            let (url, page) = match (&req.redirect_url, req.page_url.is_empty()) {
                (Some(url), _) => (url.as_str(), false),
                (None, false) => (req.page_url.as_str(), true),
                // A page that is not http(s) (an app's WebView on `file://`, `capacitor://`): after
                // paying, the buyer would be left on openport's result page, whose message goes to
                // no page. Refused here, so the page's callback gets it.
                (None, true) => {
                    return Err(ServiceError::BadRequest(MOBILE_NEEDS_REDIRECT.into()).into())
                }
            };
            if let Some(message) = super::redirect_origins::refused_target(m, url, page) {
                return Err(ServiceError::BadRequest(message).into());
            }
        }
        if let Some(due) = req.vbank_due {
            crate::domain::vbank::deposit_deadline(due, self.clock.now())
                .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        }
        // With the amount the payment records ([`recorded_amount`]), as `claim_window` checks it
        // again.
        let (uid, currency) = (&req.order.merchant_uid, &req.order.currency);
        self.check_prepared(m.id, uid, recorded_amount(&req), currency)
            .await
            .map_err(|e| for_billing_window(req.billing, e))?;
        if req.billing {
            if let Some(uid) = &req.order.customer_uid {
                let current = billing::active_key(&self.db.read, m.id, uid)
                    .await
                    .map_err(ServiceError::from)?;
                if replacement_refused(
                    &self.db.read,
                    current.as_ref(),
                    m.id,
                    &req.order.merchant_uid,
                )
                .await
                .map_err(ServiceError::from)?
                {
                    return Err(CheckoutRefused {
                        code: 1,
                        message: KEY_REPLACEMENT_REFUSED.into(),
                        imp_uid: None,
                    });
                }
            }
        }
        let good_name = for_kcp("name", req.order.name.as_deref().unwrap_or(""), 100)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let good_name = if good_name.is_empty() {
            "openport".to_string()
        } else {
            good_name
        };
        // Before anything is written: a live merchant without its KCP group gets no window, and
        // no payment is opened for one.
        let group_id = match plan.method {
            WindowMethod::BatchKey => Some(self.group_id(m)?),
            _ => None,
        };
        // Its configuration (credentials that cannot be unsealed, a bad KCP URL) is the
        // operator's to fix: checked before anything is written, logged and shown to the buyer
        // in general terms only (`CheckoutRefused::from`).
        let connector = self.connectors.for_merchant(m, &self.secrets)?;
        let payment = self.open_checkout_payment(m, &req).await?;
        let refuse = |message: String| CheckoutRefused {
            code: 1,
            message,
            imp_uid: Some(payment.imp_uid.clone()),
        };
        // PC: KCP's PC script on openport's page (spec/kcp.md §1.1), which needs no trade
        // registration (seed 000: "거래등록 (Mobile 필수)"); mobile: the registration, then
        // a full-page post to its `PayUrl` (§1.2).
        let pc_flow = !req.mobile;
        let trade = if pc_flow {
            None
        } else {
            let registration = TradeRegistration {
                order_no: payment.order_no.clone(),
                amount: req.order.amount,
                good_name: good_name.clone(),
                method: plan.method,
                return_url: return_url.to_string(),
                escrow: req.escrow,
                user_agent: "mobile".into(),
            };
            match connector.register_trade(&registration).await {
                Ok(t) => Some(t),
                Err(e) => {
                    let reason = match e.refusal() {
                        Some(refusal) => format!("PG사 거래등록에 실패하였습니다. ({refusal})"),
                        None => {
                            tracing::error!(imp_uid = %payment.imp_uid, "KCP trade registration failed: {e}");
                            "PG사 거래등록에 실패하였습니다. 잠시 후 다시 시도해 주세요."
                                .to_string()
                        }
                    };
                    self.fail_ready(&payment, &reason)
                        .await
                        .map_err(CheckoutRefused::from)?;
                    return Err(refuse(reason));
                }
            }
        };
        // Where the hand-off page sends the buyer: the registration's `PayUrl`, or KCP's PC
        // script for the merchant's KCP.
        let pay_url = match &trade {
            Some(t) => t.pay_url.clone(),
            None => {
                self.connectors
                    .urls_for(m.kcp_api_base.as_deref())
                    .pc_script
            }
        };
        let token = random_hex(16);
        let window = WindowFields {
            fields: self.window_fields(
                m,
                &req,
                &plan,
                &payment,
                &good_name,
                trade.as_ref(),
                return_url,
                group_id.as_deref(),
            ),
            page_origin: req.page_origin.clone(),
            page_url: req.page_url.clone(),
            merchant_uid: payment.merchant_uid.clone(),
            return_key: super::secrets::token_digest(&return_key_of(&token)),
            pc_flow,
            group_id: group_id.unwrap_or_default(),
        };
        let now = self.clock.unix();
        let session = checkout_session::ActiveModel {
            // Its digest, as access tokens are kept: whoever reads the database cannot open or
            // cancel a buyer's window with it.
            token: Set(super::secrets::token_digest(&token)),
            payment_id: Set(payment.id),
            merchant_id: Set(m.id),
            imp_uid: Set(payment.imp_uid.clone()),
            method: Set(req.pay_method.clone()),
            kcp_pay_method: Set(plan.kcp_pay_method.into()),
            action_result: Set(plan.action_result.into()),
            van_code: Set(plan.van_code.map(str::to_string)),
            approval_key: Set(trade.as_ref().map(|t| t.approval_key.clone())),
            trace_no: Set(trade.as_ref().map(|t| t.trace_no.clone())),
            pay_url: Set(Some(pay_url)),
            mobile: Set(req.mobile),
            redirect_url: Set(req.redirect_url.clone()),
            confirm_url: Set(req.confirm_url.clone()),
            params: Set(serde_json::to_string(&window).unwrap_or_default()),
            state: Set("open".into()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db.write)
        .await;
        if let Err(e) = session {
            let refused = CheckoutRefused::from(ServiceError::from(e));
            // No window can reach this payment: not left `ready` (best effort, the database
            // having just failed; a payment left so is retired by the merchant_uid's next
            // request).
            if let Err(e) = self.fail_ready(&payment, &refused.message).await {
                tracing::error!(imp_uid = %payment.imp_uid, "the payment of a window that did not open stays ready: {e}");
            }
            return Err(refuse(refused.message));
        }
        Ok(CheckoutStarted {
            imp_uid: payment.imp_uid,
            merchant_uid: payment.merchant_uid,
            token,
        })
    }

    /// The `ready` payment of this request. A previous `ready` one (a window the buyer left) is
    /// retired; a paid or in-flight one refuses the request (spec §6: already paid → refused).
    async fn open_checkout_payment(
        &self,
        m: &merchant::Model,
        req: &CheckoutRequest,
    ) -> ServiceResult<payment::Model> {
        for _ in 0..3 {
            let now = self.clock.unix();
            let imp_uid = new_imp_uid();
            let o = &req.order;
            let row = payment::ActiveModel {
                order_no: Set(order_no_for(&imp_uid)),
                imp_uid: Set(imp_uid),
                merchant_id: Set(m.id),
                merchant_uid: Set(o.merchant_uid.clone()),
                status: Set(PaymentStatus::Ready.as_db().into()),
                pay_method: Set(if req.billing {
                    "card".into()
                } else {
                    req.pay_method.clone()
                }),
                channel: Set(if req.mobile {
                    "mobile".into()
                } else {
                    "pc".into()
                }),
                pg_provider: Set(if req.billing { PG_KCP_BILLING } else { PG_KCP }.into()),
                pg_id: Set(m.site_cd.clone()),
                pg_tid: Set(None),
                // KCP charges nothing when it issues a billing key, whatever amount the window
                // showed (seed 004: "KCP는 빌링키 발급시 실 결제는 발생되지 않습니다 (금액을
                // 지정해도 결제가 발생되지 않음)"): the `issue` payment records no money, so
                // neither its amount nor the `rsp`'s paid_amount claims any.
                amount: Set(recorded_amount(req)),
                cancel_amount: Set(0),
                currency: Set(o.currency.clone()),
                name: Set(o.name.clone()),
                buyer_name: Set(o.buyer_name.clone()),
                buyer_email: Set(o.buyer_email.clone()),
                buyer_tel: Set(o.buyer_tel.clone()),
                buyer_addr: Set(o.buyer_addr.clone()),
                buyer_postcode: Set(o.buyer_postcode.clone()),
                custom_data: Set(o.custom_data.clone()),
                notice_url: Set((!o.notice_url.is_empty())
                    .then(|| serde_json::to_string(&o.notice_url).unwrap_or_default())),
                user_agent: Set(req.order.user_agent.clone()),
                card_code: Set(None),
                card_name: Set(None),
                card_number: Set(None),
                card_type: Set(None),
                card_quota: Set(0),
                apply_num: Set(None),
                fail_reason: Set(None),
                cancel_reason: Set(None),
                // The instance's mode decides which KCP approves (the sandbox in test mode), not the
                // merchant's flag (`Connectors::for_merchant` keeps the two in line).
                sandbox: Set(self.settings.test_mode),
                customer_uid: Set(o.customer_uid.clone()),
                customer_uid_usage: Set(req.billing.then(|| "issue".to_string())),
                started_at: Set(now),
                paid_at: Set(None),
                failed_at: Set(None),
                cancelled_at: Set(None),
                updated_at: Set(now),
                // No window here names an easy pay, and no approval answer is read for one:
                // none is claimed (docs/api.md "pay methods").
                emb_pg_provider: Set(None),
                escrow: Set(req.escrow),
                ..Default::default()
            };
            match payments::insert(&self.db.write, row).await {
                Ok(p) => return Ok(p),
                Err(e) if is_unique_violation(&e) => {
                    let Some(live) =
                        payments::live_by_merchant_uid(&self.db.write, m.id, &o.merchant_uid)
                            .await?
                    else {
                        continue;
                    };
                    let abandoned =
                        live.status == PaymentStatus::Ready.as_db() && live.vbank_num.is_none();
                    if !abandoned {
                        return Err(ServiceError::Refused(taken_reason(&live, now).into()));
                    }
                    self.fail_ready(&live, "새 결제 요청으로 대체되었습니다.")
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Refused(
            "같은 merchant_uid로 처리 중인 결제가 있습니다.".into(),
        ))
    }

    /// `ready` → `failed` only if still `ready` (a window being redeemed right now wins).
    pub(crate) async fn fail_ready(&self, p: &payment::Model, reason: &str) -> ServiceResult<bool> {
        Ok(fail_ready_in(&self.db.write, p, reason, self.clock.unix()).await?)
    }

    /// The window's fields: those of the mobile window post (spec/kcp.md §2.2) when `trade` is
    /// its registration, else those of KCP's PC window form (§1.1: `pay_method` as a bitmask,
    /// `currency=WON`, no registration, and KCP's answer inputs, empty).
    #[allow(clippy::too_many_arguments)]
    fn window_fields(
        &self,
        m: &merchant::Model,
        req: &CheckoutRequest,
        plan: &WindowPlan,
        p: &payment::Model,
        good_name: &str,
        trade: Option<&crate::pg::RegisteredTrade>,
        return_url: &str,
        group_id: Option<&str>,
    ) -> Vec<(String, String)> {
        let text = |v: &Option<String>, max| {
            for_kcp("buyer", v.as_deref().unwrap_or(""), max).unwrap_or_default()
        };
        let mut f: Vec<(&str, String)> = match trade {
            Some(trade) => vec![
                ("approval_key", trade.approval_key.clone()),
                ("traceNo", trade.trace_no.clone()),
                ("PayUrl", trade.pay_url.clone()),
                ("site_cd", m.site_cd.clone()),
                ("ordr_idxx", p.order_no.clone()),
                ("good_name", good_name.to_string()),
                // What the merchant asked for: a billing-key window shows it and charges
                // nothing.
                ("good_mny", req.order.amount.to_string()),
                ("req_tx", "pay".into()),
                ("currency", "410".into()),
                ("escw_used", if req.escrow { "Y" } else { "N" }.into()),
                ("pay_method", plan.kcp_pay_method.into()),
                ("ActionResult", plan.action_result.into()),
                ("Ret_URL", return_url.to_string()),
            ],
            None => vec![
                ("site_cd", m.site_cd.clone()),
                ("ordr_idxx", p.order_no.clone()),
                ("good_name", good_name.to_string()),
                ("good_mny", req.order.amount.to_string()),
                ("pay_method", pc_pay_method(plan.method).into()),
                ("currency", "WON".into()),
                ("module_type", "01".into()),
                ("escw_used", if req.escrow { "Y" } else { "N" }.into()),
                // Where the page posts KCP's answer (the form's action), for the record.
                ("Ret_URL", return_url.to_string()),
            ],
        };
        f.extend([
            ("buyr_name", text(&req.order.buyer_name, 30)),
            ("buyr_tel1", text(&req.order.buyer_tel, 20)),
            ("buyr_tel2", text(&req.order.buyer_tel, 20)),
            ("buyr_mail", text(&req.order.buyer_email, 50)),
            ("encoding_trans", "UTF-8".into()),
            ("param_opt_1", p.imp_uid.clone()),
        ]);
        if let Some(v) = plan.van_code {
            f.push(("van_code", v.into()));
        }
        if sends_shop_user_id(plan) {
            // Made fit for KCP when the request was taken (`shop_user_id`).
            f.push(("shop_user_id", req.shop_user_id.clone().unwrap_or_default()));
        }
        if plan.method == WindowMethod::Phone {
            f.push(("digital", if req.digital { "Y" } else { "N" }.into()));
        }
        if let Some(q) = &req.card_quota {
            // Instalments only from 50,000 won (spec/kcp.md §4); `[]` = lump sum only.
            let max = if p.amount >= 50_000 {
                q.iter().copied().max().unwrap_or(0)
            } else {
                0
            };
            f.push(("quotaopt", max.to_string()));
        }
        let card_window = matches!(plan.method, WindowMethod::Card | WindowMethod::BatchKey);
        if card_window && !req.used_card.is_empty() {
            // The cards the window offers (spec/kcp.md §2.2), colon-separated as KCP's samples
            // write it (`CCBC:CCLG`); KCP's PC form applies it only with `used_card_YN=Y`.
            f.push(("used_card", req.used_card.join(":")));
            if trade.is_none() {
                f.push(("used_card_YN", "Y".into()));
            }
        }
        if let Some(name) = &req.shop_name {
            f.push(("shop_name", name.clone()));
        }
        if let (WindowMethod::VirtualAccount, Some(due)) = (plan.method, req.vbank_due) {
            f.push(("ipgm_date", crate::pg::kcp::wire::format_kcp_time(due)));
        }
        if let (WindowMethod::BatchKey, Some(group_id)) = (plan.method, group_id) {
            if trade.is_some() {
                f.push(("kcp_group_id", group_id.to_string()));
            } else {
                // KCP's PC spelling, and its batch certification (spec/kcp.md §2.2).
                f.push(("kcpgroup_id", group_id.to_string()));
                f.push(("card_cert_type", "BATCH".into()));
            }
            f.push(("batch_cardno_return_yn", "Y".into()));
            if trade.is_none() {
                // The PC window returns the masked card in the form's own input, declared empty
                // as its other answer inputs are (KCP's PC batch sample: "batch_cardno_return_yn
                // 설정시 결제창에서 리턴" over `<input type='hidden' name='card_mask_no'
                // value=''>`); the mobile window posts it to Ret_URL itself (§2.3). The issuance
                // answer carries none (§2.5), so without the input a PC key's card is unknown.
                f.push(("card_mask_no", String::new()));
            }
        }
        if req.escrow {
            f.push(("pay_mod", "Y".into()));
            f.push(("deli_term", "00".into()));
            f.push(("bask_cntx", req.products.len().to_string()));
            f.push(("good_info", escrow_good_info(&req.products)));
            // The receiver KCP's escrow requires (spec §2.11, "에스크로결제 사용시 필수 정보" in
            // KCP's samples): iamport has no receiver of its own, so the buyer, made fit for KCP
            // as the `buyr_*` fields are. Limits: the buyer's for name, phones and mail; 10 and
            // 100 bytes for the postcode and the address (the spec gives none, docs/kcp.md §9.2).
            f.extend([
                ("rcvr_name", text(&req.order.buyer_name, 30)),
                ("rcvr_tel1", text(&req.order.buyer_tel, 20)),
                ("rcvr_tel2", text(&req.order.buyer_tel, 20)),
                ("rcvr_mail", text(&req.order.buyer_email, 50)),
                ("rcvr_zipx", text(&req.order.buyer_postcode, 10)),
                ("rcvr_add1", text(&req.order.buyer_addr, 100)),
                ("rcvr_add2", String::new()),
            ]);
        }
        if trade.is_none() {
            f.extend(PC_RESULT_FIELDS.iter().map(|k| (*k, String::new())));
        }
        f.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    pub async fn checkout_session(&self, token: &str) -> ServiceResult<checkout_session::Model> {
        checkout_session::Entity::find()
            .filter(checkout_session::Column::Token.eq(super::secrets::token_digest(token)))
            .one(&self.db.read)
            .await?
            .ok_or_else(|| ServiceError::NotFound("결제창 정보가 존재하지 않습니다.".into()))
    }

    /// The buyer closed the window before paying (overlay close button).
    pub async fn cancel_checkout(&self, token: &str) -> ServiceResult<CheckoutFinish> {
        let s = self.checkout_session(token).await?;
        let p = self.session_payment(&s).await?;
        if self.fail_ready(&p, USER_CANCEL).await? {
            self.close_session(&s, "cancelled").await;
        }
        self.finish(&s, None).await
    }

    /// Marks the session ended, once its payment's outcome is recorded. Only the hand-off page
    /// reads the state (and it also looks at the payment, `hand_off`), so a failure to write it
    /// is logged and changes nothing: the answer is the payment as recorded.
    async fn close_session(&self, s: &checkout_session::Model, state: &str) {
        let written = checkout_session::Entity::update_many()
            .col_expr(checkout_session::Column::State, Expr::value(state))
            .col_expr(
                checkout_session::Column::UpdatedAt,
                Expr::value(self.clock.unix()),
            )
            .filter(checkout_session::Column::Id.eq(s.id))
            .exec(&self.db.write)
            .await;
        if let Err(e) = written {
            tracing::error!(imp_uid = %s.imp_uid, state, "closing the checkout session failed; its payment's outcome stands: {e}");
        }
    }

    async fn finish(
        &self,
        s: &checkout_session::Model,
        error: Option<(&str, String)>,
    ) -> ServiceResult<CheckoutFinish> {
        let p = self.session_payment(s).await?;
        Ok(self.answer_of(s, Some(&p), error))
    }

    /// [`Self::finish`] for a `Ret_URL` post that found its window redeemed by another post: the
    /// same result posted twice close together (a double tap on KCP's final button, the PC page's
    /// `form.submit()` run twice), or by another instance. A browser shows only the answer to its
    /// last form submission, so this answer is the one the buyer sees, and the other post's never
    /// arrives. While the payment is `pending` with its approval attempt held (by the other post,
    /// or the resolver), the outcome is seconds away: the payment is read again every
    /// [`SETTLED_POLL`] until it is recorded, at most for the approval call's timeout, a
    /// confirm_url's and [`SETTLED_MARGIN`] ([`settled_wait`]), and only then answered. Answered at once, `pending` was `F500` with
    /// `success: false`, and a page written for iamport (`if (rsp.success) … else alert('결제에
    /// 실패하였습니다')`) had the buyer pay again under a new order while the first was approved.
    /// Still pending after the wait, or with no holder (an outcome let go to the resolver, which
    /// takes a settle delay), it is `F500` as before. Nothing is held while waiting: each read is
    /// one query, outside any transaction.
    async fn finish_settled(&self, s: &checkout_session::Model) -> ServiceResult<CheckoutFinish> {
        let deadline = tokio::time::Instant::now()
            + settled_wait(self.connectors.timeout(), s.confirm_url.is_some());
        loop {
            let p = self.session_payment(s).await?;
            if p.status != PaymentStatus::Pending.as_db() || tokio::time::Instant::now() >= deadline
            {
                return Ok(self.answer_of(s, Some(&p), None));
            }
            if !self.approval_held(&p).await? {
                // The holder may have recorded the outcome between the two reads: its attempt is
                // closed in the transaction that records the payment, so the payment read again
                // now shows what it recorded. Answered from the first read, a payment paid a
                // millisecond earlier was `F500` with `success: false` (review r1).
                let p = self.session_payment(s).await?;
                return Ok(self.answer_of(s, Some(&p), None));
            }
            tokio::time::sleep(SETTLED_POLL).await;
        }
    }

    /// The payment of checkout session `s`, read on the writer (the latest committed state).
    async fn session_payment(&self, s: &checkout_session::Model) -> ServiceResult<payment::Model> {
        payments::by_id(&self.db.write, s.payment_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))
    }

    /// Whether an open attempt of `p` is held by someone now (its lease not run out), who will
    /// record its outcome: not one let go to the resolver (service/attempts.rs).
    async fn approval_held(&self, p: &payment::Model) -> ServiceResult<bool> {
        let now = self.clock.unix();
        Ok(payments::open_attempts_of(&self.db.write, p.id)
            .await?
            .iter()
            .any(|a| a.lease_until > now))
    }

    /// The payment of session `token` as the merchant page may be told it, changing nothing
    /// (`GET /checkout/session/{token}/status`): what the SDK polls once the window's own answer
    /// said the outcome is being checked. Unlike the cancel call, it never fails a `ready`
    /// payment as the buyer's cancel (a window whose `Ret_URL` post failed before the claim is
    /// still `ready`, and its buyer did pay in KCP's window). An outcome not recorded yet (the
    /// window open, an approval in flight) is `F500`.
    pub async fn checkout_status(&self, token: &str) -> ServiceResult<CheckoutFinish> {
        let s = self.checkout_session(token).await?;
        let p = self.session_payment(&s).await?;
        let error = (!outcome_recorded(&p)).then(|| checking(&s.imp_uid));
        Ok(self.answer_of(&s, Some(&p), error))
    }

    /// Session `s`'s answer with payment `p` (none: it could not be read, and `error` says it is
    /// being checked).
    fn answer_of(
        &self,
        s: &checkout_session::Model,
        p: Option<&payment::Model>,
        error: Option<(&str, String)>,
    ) -> CheckoutFinish {
        let window: WindowFields = serde_json::from_str(&s.params).unwrap_or_default();
        // A mobile page that gave no m_redirect_url is sent back to where it came from.
        let redirect_url = s
            .redirect_url
            .clone()
            .or_else(|| (s.mobile && !window.page_url.is_empty()).then(|| window.page_url.clone()));
        let rsp = match p {
            Some(p) => Rsp::of(p, error),
            None => Rsp::unread(s, &window.merchant_uid, error),
        };
        CheckoutFinish {
            rsp,
            mobile: s.mobile,
            redirect_url,
            page_origin: window.page_origin,
            merchant_id: s.merchant_id,
        }
    }

    /// Fails a window that nothing came of and answers with why; when it is no longer such a
    /// window (another post redeemed it meanwhile: an issued account, an approval in flight),
    /// the answer is the payment as it stands, not this post's reason.
    async fn stop_window(
        &self,
        s: &checkout_session::Model,
        p: &payment::Model,
        code: &str,
        reason: String,
        close_as: Option<&str>,
    ) -> ServiceResult<CheckoutFinish> {
        if !self.fail_ready(p, &reason).await? {
            return self.finish_settled(s).await;
        }
        if let Some(state) = close_as {
            self.close_session(s, state).await;
        }
        self.finish(s, Some((code, reason))).await
    }

    /// `Ret_URL`: what KCP's window posted (spec/kcp.md §2.3). Always answers the browser; the
    /// money decisions are recorded before it does. A failure once the post is known to be its
    /// window's is answered from the payment as it stands when its outcome is recorded (the
    /// payment row is the truth; what failed afterwards was only the answer), and otherwise
    /// with [`ReturnFailed::checking`].
    pub async fn complete_checkout(
        &self,
        form: &[(String, String)],
    ) -> Result<CheckoutFinish, ReturnFailed> {
        let (s, window) = self
            .window_of_post(form)
            .await
            .map_err(|error| ReturnFailed {
                error,
                checking: None,
            })?;
        let read = payments::by_id(&self.db.write, s.payment_id)
            .await
            .map_err(ServiceError::from)
            .and_then(|p| p.ok_or_else(|| ServiceError::Internal("payment vanished".into())));
        let (p, error) = match read {
            Ok(p) => match self.complete_window(&s, &window, p.clone(), form).await {
                Ok(finish) => return Ok(finish),
                Err(e) => (Some(p), e),
            },
            Err(e) => (None, e),
        };
        self.answer_despite(&s, p, error).await
    }

    /// The session (and its window's fields) a `Ret_URL` post is for: the one of its order number
    /// (`ordr_idxx`), only when the post carries that window's return key. Else (no such order,
    /// not its key) the unknown window's error.
    async fn window_of_post(
        &self,
        form: &[(String, String)],
    ) -> ServiceResult<(checkout_session::Model, WindowFields)> {
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let s = checkout_session::Entity::find()
            .filter(
                checkout_session::Column::PaymentId.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(payment::Column::Id)
                        .from(payment::Entity)
                        .and_where(payment::Column::OrderNo.eq(get("ordr_idxx")))
                        .to_owned(),
                ),
            )
            .one(&self.db.read)
            .await?
            .ok_or_else(unknown_window)?;
        let window: WindowFields = serde_json::from_str(&s.params).unwrap_or_default();
        if !window.returned_by_its_window(&get(RETURN_KEY_FIELD)) {
            tracing::warn!(imp_uid = %s.imp_uid, "Ret_URL post without its window's return key; ignored");
            return Err(unknown_window());
        }
        Ok((s, window))
    }

    /// A PC window's `Ret_URL` post that openport could not answer ([`Self::complete_checkout`]
    /// failed, or its task panicked) while nothing came of the window yet: its payment is still
    /// `ready`, so nothing was sent to KCP (the claim comes before any call). The window is
    /// failed with `reason` (openport's general message with the request id) and answered with
    /// it, so the merchant page's callback runs at once with that failure. Left open, the
    /// buyer's only way out was the overlay's ×, which records a `ready` payment as the buyer's
    /// cancel (`3001`). None (the caller shows its error page, as before) for a post that is not
    /// the window's (no such order, not its return key), a mobile window (answered with the
    /// redirect), a window something came of (an approval in flight, an outcome), or when
    /// failing it fails too.
    pub async fn stop_unanswered_window(
        &self,
        form: &[(String, String)],
        reason: String,
    ) -> Option<CheckoutFinish> {
        let (s, _) = self.window_of_post(form).await.ok()?;
        if s.mobile {
            return None;
        }
        let p = payments::by_id(&self.db.write, s.payment_id).await.ok()??;
        if !window_open(&p) {
            return None;
        }
        match self.stop_window(&s, &p, "F400", reason, None).await {
            Ok(finish) => Some(finish),
            Err(e) => {
                tracing::error!(imp_uid = %s.imp_uid, "failing a window whose Ret_URL post could not be answered failed too: {e}");
                None
            }
        }
    }

    /// The answer to a window's `Ret_URL` post that failed with `error` after the window was
    /// known (`read`: the payment as read before, if it was). The payment is read again: an
    /// outcome it records (paid, failed, an issued account) is the answer, `error` logged; one
    /// it does not (still `ready` or `pending`, or unreadable) is "being checked" (`F500`).
    async fn answer_despite(
        &self,
        s: &checkout_session::Model,
        read: Option<payment::Model>,
        error: ServiceError,
    ) -> Result<CheckoutFinish, ReturnFailed> {
        let again = match payments::by_id(&self.db.write, s.payment_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(imp_uid = %s.imp_uid, "reading the payment again after a Ret_URL failure failed too: {e}");
                None
            }
        };
        match again {
            Some(p) if outcome_recorded(&p) => {
                tracing::error!(imp_uid = %s.imp_uid, "Ret_URL failed after the outcome was recorded; answered with the payment as recorded: {error}");
                Ok(self.answer_of(s, Some(&p), None))
            }
            again => {
                let p = again.or(read);
                Err(ReturnFailed {
                    error,
                    checking: Some(self.answer_of(s, p.as_ref(), Some(checking(&s.imp_uid)))),
                })
            }
        }
    }

    /// What the hand-off page of session `token` does: open the window while nothing came of it
    /// yet, else answer as the window's end does ([`HandOff::Ended`]).
    pub async fn hand_off(&self, token: &str) -> ServiceResult<HandOff> {
        let s = self.checkout_session(token).await?;
        let p = payments::by_id(&self.db.write, s.payment_id).await;
        if s.state == "open" {
            match &p {
                // A window whose payment took an outcome although the session was not closed (its
                // write failed, `close_session`) is not opened again.
                Ok(Some(p)) if !window_open(p) => {}
                // Too old to be completed (`claim_window` would refuse its result): not opened
                // into KCP's window for the buyer to enter a card for nothing, but ended now as
                // its `Ret_URL` post would end it.
                Ok(Some(p)) if self.window_expired(&s, self.clock.unix()) => {
                    let reason = window_expired_reason(self.settings.window_ttl_secs);
                    tracing::warn!(imp_uid = %s.imp_uid, "hand-off page of a window opened longer ago than checkout.window_ttl_secs; the payment fails, nothing sent to KCP");
                    let finish = self
                        .stop_window(&s, p, "F400", reason, Some("expired"))
                        .await?;
                    return Ok(HandOff::Ended(Box::new(finish)));
                }
                // Unreadable: the window opens; its `Ret_URL` decides, as ever.
                _ => return Ok(HandOff::Open(Box::new(s))),
            }
        }
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(imp_uid = %s.imp_uid, "reading the payment of an ended window failed: {e}");
                None
            }
        };
        let error = match &p {
            Some(p) if outcome_recorded(p) || p.status == PaymentStatus::Pending.as_db() => None,
            _ => Some(checking(&s.imp_uid)),
        };
        Ok(HandOff::Ended(Box::new(self.answer_of(
            &s,
            p.as_ref(),
            error,
        ))))
    }

    /// One window's `Ret_URL` post, its session and payment `p` read.
    async fn complete_window(
        &self,
        s: &checkout_session::Model,
        window: &WindowFields,
        p: payment::Model,
        form: &[(String, String)],
    ) -> ServiceResult<CheckoutFinish> {
        let s = s.clone();
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if p.status != PaymentStatus::Ready.as_db() || p.pg_tid.is_some() {
            // Already decided (a replayed post, or the buyer's second tab): show what it is, once
            // an approval in flight has an outcome.
            return self.finish_settled(&s).await;
        }
        let res_cd = get("res_cd");
        if res_cd != "0000" {
            // Shown to the buyer and the merchant and stored as the fail_reason: masked as KCP's
            // refusals over REST are (pg/kcp/client.rs), since its text is not trusted to be free
            // of a card number, and a mobile redirect carries it in the merchant's URL.
            let msg = crate::domain::card::mask_card_numbers_in(&get("res_msg"));
            let reason = if res_cd == USER_CANCEL_CODE {
                USER_CANCEL.to_string()
            } else {
                quoted_refusal(&res_cd, &msg)
            };
            // Read back from the reason, as every later answer of the payment reads it.
            let code = failure_code(Some(&reason)).to_string();
            return self
                .stop_window(&s, &p, &code, reason, Some("cancelled"))
                .await;
        }
        // The merchant must check ordr_chk against its own order before approving (spec §1.1).
        // A billing-key window showed the amount the merchant asked for but records none.
        let shown = if s.kcp_pay_method == BILLING_WINDOW {
            window.shown_amount().unwrap_or(p.amount)
        } else {
            p.amount
        };
        let expected = format!("{}|{}", p.order_no, shown);
        // KCP's PC flow always answers with one, so a PC window's result without it is not
        // KCP's; the mobile flow (§2.3) sends none, and one is compared when present.
        let chk = get("ordr_chk");
        if (window.pc_flow || !chk.is_empty()) && chk != expected {
            let reason = "주문정보가 일치하지 않아 결제를 중단합니다.".to_string();
            return self.stop_window(&s, &p, "F400", reason, None).await;
        }
        // The approval's pay_type comes from `use_pay_method`, which the buyer's browser posts
        // back; KCP's standard window only offers the method it was opened with. Another one
        // would approve (or fail to approve) under the wrong pay_type while the payment keeps the
        // method it was opened with, so inquiries would ask with the wrong pay_type and a virtual
        // account issued under a card payment would never match its deposits. Refused before the
        // approval call and before the attempt is claimed, so nothing is sent to KCP.
        if s.kcp_pay_method != BILLING_WINDOW {
            let opened = window_plan(&s.method, false).map(|pl| pl.method);
            let used = method_of_bitmask(get("use_pay_method").trim());
            if used.is_none() || used != opened {
                tracing::warn!(imp_uid = %p.imp_uid, opened = %s.kcp_pay_method, "window result names another pay method than the window was opened with; not approved");
                let reason =
                    "결제창을 연 결제수단과 다른 결제수단(use_pay_method)의 결과여서 결제를 \
                              중단합니다."
                        .to_string();
                return self.stop_window(&s, &p, "F400", reason, None).await;
            }
        }
        let m = self.merchant(p.merchant_id).await?;
        let connector = self.connectors.for_merchant(&m, &self.secrets)?;
        let opened = window_plan(&s.method, false).map(|pl| pl.method);
        let cash_receipt = opened.is_some_and(|method| cash_receipt_asked(method, &get("cash_yn")));
        // No approval attempt from an instance whose clock is off (clock_check.rs): the window
        // ends failed with nothing sent to KCP, and the buyer may pay again. Its code is the one
        // every later answer of the payment reads from the reason (`failure_code`: F400), never
        // F500, which tells the page the outcome is still being checked.
        if self.clock_is_skewed() {
            let reason = super::clock_check::CLOCK_SKEWED.to_string();
            let code = failure_code(Some(&reason)).to_string();
            return self.stop_window(&s, &p, &code, reason, None).await;
        }
        let confirm_url = s.confirm_url.is_some();
        let attempt = match self.claim_window(&s, &p, cash_receipt, confirm_url).await? {
            WindowClaim::Held(attempt) => *attempt,
            WindowClaim::PreparedDiffers(reason) | WindowClaim::Expired(reason) => {
                return self.finish(&s, Some(("F400", reason))).await
            }
            WindowClaim::Taken => return self.finish_settled(&s).await,
        };
        let req = WindowApprovalRequest {
            order_no: p.order_no.clone(),
            amount: p.amount,
            tran_cd: get("tran_cd"),
            enc_data: get("enc_data"),
            enc_info: get("enc_info"),
            use_pay_method: get("use_pay_method"),
        };
        let p = payments::by_id(&self.db.write, p.id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?;
        let attempt = match &s.confirm_url {
            Some(url) => match self.confirm_claimed(url, p.clone(), attempt).await? {
                Confirmed::Go(attempt) => *attempt,
                Confirmed::Stop(error) => return self.finish(&s, error).await,
            },
            None => attempt,
        };
        if s.kcp_pay_method == BILLING_WINDOW {
            self.complete_billing_window(
                &m,
                connector.as_ref(),
                &s,
                p,
                attempt,
                &req,
                &get("card_mask_no"),
            )
            .await?;
            self.close_session(&s, "completed").await;
            return self.finish(&s, None).await;
        }
        let outcome = match connector.approve_window(&req).await {
            Ok(approved) => {
                let p = self.escrow_as_kcp_holds(p, approved.escrow).await;
                self.settle_window(connector.as_ref(), p, attempt, approved.approval)
                    .await?
            }
            Err(e @ (PgError::Declined { .. } | PgError::NotSent(_))) => {
                let (code, message) = match e {
                    PgError::Declined { code, message, .. } => {
                        (Some(code.clone()), quoted_refusal(&code, &message))
                    }
                    _ => (None, super::pay::NOT_SENT.to_string()),
                };
                let payment_id = p.id;
                let written = self.record_failure(p, attempt, code, &message).await?;
                self.written_or_decided(payment_id, written, |payment| ApprovalOutcome::Declined {
                    payment,
                    reason: crate::pg::DeclineReason::Other,
                    message,
                })
                .await?
            }
            // An answer about another order's trade is not this window's: never cancelled on its
            // behalf, the window settled by its own order number (service/orphans.rs).
            Err(PgError::Mismatch {
                tno,
                other_order: Some(order_no),
                ..
            }) => self.misdirected_answer(p, attempt, &tno, &order_no).await?,
            Err(PgError::Mismatch { tno, detail, .. }) => {
                tracing::error!(imp_uid = %p.imp_uid, %tno, "window approval differs from the order ({detail}); net-cancelling");
                self.net_cancel(
                    connector.as_ref(),
                    p,
                    attempt,
                    &tno,
                    "승인금액 또는 주문번호 불일치로 자동취소(망취소)되었습니다.",
                )
                .await?
            }
            Err(e) => {
                tracing::warn!(imp_uid = %p.imp_uid, "window approval outcome unknown: {e}");
                // The buyer has not been answered yet, so an approval an inquiry finds now is
                // honoured: this request still holds the attempt, so nobody else settles it
                // meanwhile. Window points and virtual accounts are let go to the resolver
                // (which net-cancels what it finds later, the buyer having been told it failed).
                let inquirable = matches!(
                    opened,
                    Some(
                        WindowMethod::Card
                            | WindowMethod::Bank
                            | WindowMethod::Phone
                            | WindowMethod::GiftCertificate
                    )
                );
                if inquirable {
                    match self.mark_unknown(attempt, &e.to_string()).await? {
                        Some(attempt) => {
                            self.resolve_approval(connector.as_ref(), p, attempt, true)
                                .await?
                        }
                        None => self.approval_decided(p.id).await?,
                    }
                } else {
                    match self.let_go(attempt, &e.to_string()).await? {
                        Some(_) => ApprovalOutcome::Unknown(p),
                        None => self.approval_decided(p.id).await?,
                    }
                }
            }
        };
        self.close_session(&s, "completed").await;
        let error = match &outcome {
            ApprovalOutcome::Unknown(p) => Some((CHECKING, checking_message(&p.imp_uid))),
            ApprovalOutcome::Conflict(p) => {
                Some((CHECKING, super::pay::conflict_message(&p.imp_uid)))
            }
            _ => None,
        };
        self.finish(&s, error).await
    }

    /// `ready` → `pending` plus the approval attempt, in one transaction: a window is redeemed once.
    /// Only a window nothing came of yet: an issued virtual account is `ready` too, with its tno
    /// and account, and a second `Ret_URL` post that read the payment before the account was
    /// recorded (a double submit, another instance) must not redeem the window again, since
    /// KCP's refusal of the replay (9530) would fail a payment whose account stays open at KCP
    /// and whose deposit would then be ignored. Whether the buyer asked the window for a cash
    /// receipt (`cash_receipt`) is kept with it: it is known only from this post, and the outcome
    /// may be recorded by the resolver.
    ///
    /// The last write before KCP's approval, so the merchant_uid's prepared amount is checked here
    /// (spec §4.3) against the payment's amount (a billing window's 0, never the amount it
    /// showed), as at the start ([`recorded_amount`]), in the same transaction, as REST charges
    /// check it in the write that opens them (`payments::open_charge`): the window's page knows
    /// its merchant_uid, and a prepare made or changed while the buyer is in the window would
    /// otherwise be approved at the window's amount. Such a window fails without a call to KCP.
    ///
    /// A window opened (session `s` made) longer ago than `checkout.window_ttl_secs` is not
    /// claimed: its payment fails ([`window_expired_reason`]) in one conditional write, and nothing
    /// is sent to KCP. KCP has approved nothing at this point for any window (card, bank
    /// transfer, phone, points, gift certificates), issued no virtual account and no billing key:
    /// each is the effect of openport's own call after the claim (`gw/enc/v1/payment`, spec/kcp.md
    /// §2.4–2.5). A claim made in time proceeds however long KCP's answer then takes.
    ///
    /// The claim's lease covers the merchant's confirm_url when the window has one
    /// ([`Self::window_claim_lease`]).
    async fn claim_window(
        &self,
        s: &checkout_session::Model,
        p: &payment::Model,
        cash_receipt: bool,
        confirm_url: bool,
    ) -> ServiceResult<WindowClaim> {
        let now = self.clock.unix();
        if self.window_expired(s, now) {
            let reason = window_expired_reason(self.settings.window_ttl_secs);
            let failed = fail_ready_in(&self.db.write, p, &reason, now).await?;
            tracing::warn!(imp_uid = %p.imp_uid, opened_secs_ago = now.saturating_sub(s.created_at), "window result refused: the window opened longer ago than checkout.window_ttl_secs; nothing sent to KCP");
            return Ok(if failed {
                WindowClaim::Expired(reason)
            } else {
                WindowClaim::Taken
            });
        }
        let txn = self.db.write.begin().await?;
        if let Some(prepared) =
            payments::prepare_by_uid(&txn, p.merchant_id, &p.merchant_uid).await?
        {
            if payments::prepared_refuses(&prepared, p.amount, &p.currency) {
                let billing = p.pg_provider == PG_KCP_BILLING;
                let reason =
                    for_billing_window(billing, prepared_mismatch(prepared.amount, p.amount))
                        .to_string();
                let failed = fail_ready_in(&txn, p, &reason, now).await?;
                txn.commit().await?;
                tracing::warn!(imp_uid = %p.imp_uid, "window result refused: its merchant_uid was prepared with another amount since the window opened");
                return Ok(if failed {
                    WindowClaim::PreparedDiffers(reason)
                } else {
                    WindowClaim::Taken
                });
            }
        }
        let res = payment::Entity::update_many()
            .col_expr(
                payment::Column::Status,
                Expr::value(PaymentStatus::Pending.as_db()),
            )
            .col_expr(payment::Column::CashReceipt, Expr::value(cash_receipt))
            .col_expr(payment::Column::UpdatedAt, Expr::value(now))
            .filter(payment::Column::Id.eq(p.id))
            .filter(payment::Column::Status.eq(PaymentStatus::Ready.as_db()))
            .filter(payment::Column::PgTid.is_null())
            .filter(payment::Column::VbankNum.is_null())
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Ok(WindowClaim::Taken);
        }
        let attempt = payments::insert_attempt(
            &txn,
            pg_attempt::ActiveModel {
                payment_id: Set(p.id),
                next_check_at: Set(now + self.settings.settle_secs),
                // This request holds it until it records the outcome or lets go
                // (service/attempts.rs).
                lease_until: Set(self.window_claim_lease(now, confirm_url)),
                ..super::attempts::new_attempt("approve", p.order_no.clone(), p.amount, now)
            },
        )
        .await?;
        txn.commit().await?;
        Ok(WindowClaim::Held(Box::new(attempt)))
    }

    /// Whether session `s`'s window opened longer ago than `checkout.window_ttl_secs` at `now`.
    fn window_expired(&self, s: &checkout_session::Model, now: i64) -> bool {
        now.saturating_sub(s.created_at) > self.settings.window_ttl_secs
    }

    /// The lease a window's claim writes at `now`: a holder's ([`Self::lease_from`]), and for a
    /// window with a confirm_url ([`Self::confirm_claimed`]) the merchant's wait on top
    /// ([`super::confirm::CONFIRM_TIMEOUT`]), which the claiming post may spend before its first
    /// KCP call, renewing the lease only then. A holder's lease alone (3 KCP timeouts and a
    /// second) is shorter than that wait when KCP's timeout is under about 3 s: the lease ran out
    /// while the merchant was still being asked, the resolver took the attempt, found nothing at
    /// KCP and failed the payment, and the merchant's 200 then approved nothing (the buyer told
    /// it failed), while a second post of the result stopped waiting for it (`F500`).
    fn window_claim_lease(&self, now: i64, confirm_url: bool) -> i64 {
        let confirm = if confirm_url {
            let secs = super::confirm::CONFIRM_TIMEOUT.as_millis().div_ceil(1000);
            i64::try_from(secs).unwrap_or(i64::MAX)
        } else {
            0
        };
        self.lease_from(now).saturating_add(confirm)
    }

    /// confirm_url (spec §7), asked once per window: by the post that claimed it, after the
    /// claim, so a double submit of KCP's post back neither asks twice nor lets a later 200
    /// approve what the merchant refused. A 200 goes on to the approval with the attempt's lease
    /// renewed (the merchant may have taken up to 10 s) and its settle delay counted from the
    /// approval. Anything else fails the payment and closes the attempt as not sent, in one write
    /// (`record_failure`): KCP was never called, and an inquiry would find nothing.
    async fn confirm_claimed(
        &self,
        url: &str,
        p: payment::Model,
        attempt: pg_attempt::Model,
    ) -> ServiceResult<Confirmed> {
        if let Err(reason) = self.confirm(url, &p).await {
            let reason = format!("고객사 요청에 의해 결제를 중단합니다. (상세사유 : {reason})");
            // None: another holder settled the attempt (its lease ran out meanwhile).
            let failed = self.record_failure(p, attempt, None, &reason).await?;
            return Ok(Confirmed::Stop(failed.map(|_| ("F400", reason))));
        }
        Ok(match self.renew_before_settling_call(attempt).await? {
            Some(attempt) => Confirmed::Go(Box::new(attempt)),
            None => Confirmed::Stop(None),
        })
    }

    /// Records a window approval per method, or cancels it at KCP when it must not stand. A
    /// virtual account (from the window or from `POST /vbanks`) becomes `ready` with its account
    /// and a `ready` webhook; its `vbank_code` is iamport's code for KCP's bank. Like every
    /// outcome, only while this holder still holds the attempt open and the payment is pending;
    /// otherwise the answer is what another holder decided.
    /// The payment as KCP holds it: asked for as escrow, approved by KCP as a plain trade (the
    /// merchant has no escrow contract: `escw_yn` `N`), it is recorded as plain, so that it is
    /// cancelled and shipped as one. Written before the approval is recorded, only while the
    /// payment is still pending. A failure to write it changes nothing else: the approval is
    /// recorded all the same (KCP has the buyer's money), as escrow, whose cancels fall back to
    /// `STSC` when KCP refuses them (`Gateway::cancel_at_kcp`, service/cancel.rs).
    async fn escrow_as_kcp_holds(
        &self,
        mut p: payment::Model,
        kcp_escrow: Option<bool>,
    ) -> payment::Model {
        if !(p.escrow && kcp_escrow == Some(false)) {
            return p;
        }
        tracing::warn!(imp_uid = %p.imp_uid, "KCP approved as a plain trade a window asked for as escrow (no escrow contract?); recorded as plain");
        let written = payment::Entity::update_many()
            .col_expr(payment::Column::Escrow, Expr::value(false))
            .filter(payment::Column::Id.eq(p.id))
            .filter(payment::Column::Status.eq(PaymentStatus::Pending.as_db()))
            .exec(&self.db.write)
            .await;
        match written {
            Ok(_) => p.escrow = false,
            Err(e) => {
                tracing::error!(imp_uid = %p.imp_uid, "recording the payment as plain failed; it stays escrow: {e}")
            }
        }
        p
    }

    pub(crate) fn settle_window<'a>(
        &'a self,
        connector: &'a dyn crate::pg::Pg,
        p: payment::Model,
        attempt: pg_attempt::Model,
        approval: WindowApproval,
    ) -> Settling<'a> {
        async move {
            if let WindowApproval::Card(card) = approval {
                return self
                    .settle_approval(connector, p, attempt, card, true)
                    .await;
            }
            let now = self.clock.unix();
            let (tno, amount) = approval.tno_and_amount();
            let tno = tno.to_string();
            if amount != p.amount {
                return self
                    .net_cancel(
                        connector,
                        p,
                        attempt,
                        &tno,
                        "승인금액 불일치로 자동취소(망취소)되었습니다.",
                    )
                    .await;
            }
            // Another payment's trade is not this payment's to record (service/orphans.rs).
            if let Some(outcome) = self.answer_of_another_trade(&p, &attempt, &tno).await? {
                return Ok(outcome);
            }
            let mut am: payment::ActiveModel = p.clone().into();
            am.pg_tid = Set(Some(tno.clone()));
            am.updated_at = Set(now);
            let mut webhook = "paid";
            match &approval {
                WindowApproval::Bank {
                    approved_at,
                    bank_code,
                    bank_name,
                    ..
                } => {
                    am.status = Set(PaymentStatus::Paid.as_db().into());
                    am.paid_at = Set(Some(approved_at.timestamp()));
                    // Empty when the approval is known from an inquiry, which names no bank.
                    // KCP's code (`BK04`) as iamport's standard one (`004`), as for accounts.
                    am.bank_code = Set(Some(bank_code.as_str())
                        .filter(|c| !c.is_empty())
                        .map(VbankBank::iamport_code_of_kcp));
                    am.bank_name = Set(Some(bank_name.clone()).filter(|n| !n.is_empty()));
                }
                WindowApproval::VirtualAccount(account) => {
                    am.status = Set(PaymentStatus::Ready.as_db().into());
                    super::vbanks::set_account(&mut am, account);
                    webhook = "ready";
                }
                WindowApproval::Phone { approved_at, .. } => {
                    am.status = Set(PaymentStatus::Paid.as_db().into());
                    am.paid_at = Set(Some(approved_at.timestamp()));
                }
                WindowApproval::Point {
                    approved_at,
                    app_no,
                    ..
                }
                | WindowApproval::Gift {
                    approved_at,
                    app_no,
                    ..
                } => {
                    am.status = Set(PaymentStatus::Paid.as_db().into());
                    am.paid_at = Set(Some(approved_at.timestamp()));
                    am.apply_num = Set(Some(app_no.clone()));
                }
                WindowApproval::Card(_) => unreachable!("handled above"),
            }
            // Every failure to record, opening the transaction included, ends in the net-cancel
            // below: KCP has taken the buyer's money.
            let recorded = async {
                let txn = self.db.write.begin().await?;
                let mut a: pg_attempt::ActiveModel = attempt.clone().into();
                a.state = Set("succeeded".into());
                a.tno = Set(Some(tno.clone()));
                a.result_code = Set(Some("0000".into()));
                a.updated_at = Set(now);
                if !payments::write_held_attempt(&txn, &attempt, a).await? {
                    txn.rollback().await?;
                    return Ok(None);
                }
                let pending = PaymentStatus::Pending.as_db();
                let pending = Condition::all().add(payment::Column::Status.eq(pending));
                let Some(p) = payments::update_payment_if(&txn, am, pending).await? else {
                    txn.rollback().await?;
                    return Ok(None);
                };
                self.enqueue_webhook(&txn, &p, webhook, None).await?;
                // An account awaiting its deposit is looked at by the resolver too, should no
                // notification of its deposit reach openport (service/vbank_checks.rs).
                if p.status == PaymentStatus::Ready.as_db() {
                    let first = now + crate::domain::vbank::FIRST_CHECK_AFTER_SECS;
                    crate::store::vbank_checks::schedule(&txn, p.id, first).await?;
                }
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(Some(p))
            }
            .await;
            match recorded {
                Ok(Some(p)) => Ok(ApprovalOutcome::Paid(p)),
                // Another holder settled the attempt: the approval in hand stands only if the
                // payment holds it (service/orphans.rs).
                Ok(None) => self.approval_orphaned(connector, p.id, &tno, false).await,
                // Another payment's record of the trade committed after the check above.
                Err(e) if is_trade_clash(&e) => {
                    self.trade_taken_meanwhile(p, attempt, &tno).await
                }
                // `net_cancel` renews the lease first: an attempt the record closed after all is
                // answered from the database, not cancelled.
                Err(e) => {
                    tracing::error!(imp_uid = %p.imp_uid, "cannot record KCP's approval (a payment window's, or a virtual account's issuance), net-cancelling unless it was recorded after all: {e}");
                    self.net_cancel(
                        connector,
                        p,
                        attempt,
                        &tno,
                        "결제 결과를 기록하지 못해 자동취소(망취소)되었습니다.",
                    )
                    .await
                }
            }
        }
        .boxed()
    }

    /// Stores the window's key as customer `uid`'s and the `issue` payment as paid (`paid`), in
    /// one transaction conditional on this holder still holding `attempt`, the way a REST
    /// registration stores its key (`Gateway::store_issued_key`, which tries again when a
    /// registration of the same customer_uid commits meanwhile).
    #[allow(clippy::too_many_arguments)]
    async fn store_window_key(
        &self,
        m: &merchant::Model,
        attempt: &pg_attempt::Model,
        row: crate::store::entity::billing_key::ActiveModel,
        paid: payment::ActiveModel,
        uid: &str,
        merchant_uid: &str,
        now: i64,
    ) -> Result<WindowKey, KeyNotStored> {
        let merchant_id = m.id;
        let stored = self
            .store_issued_key(merchant_id, uid, row, now, |txn, current| {
                let (attempt, paid, merchant_uid) =
                    (attempt.clone(), paid.clone(), merchant_uid.to_owned());
                async move {
                    let mut a: pg_attempt::ActiveModel = attempt.clone().into();
                    a.state = Set("succeeded".into());
                    a.updated_at = Set(now);
                    if !payments::write_held_attempt(txn, &attempt, a).await? {
                        return Ok(Some(WindowKey::SettledElsewhere));
                    }
                    // A key registered for this customer_uid since the window opened: replaced
                    // only on the merchant's word, as at the start; otherwise the new key is
                    // deleted at KCP.
                    if replacement_refused(txn, current, merchant_id, &merchant_uid).await? {
                        return Ok(Some(WindowKey::ReplacementRefused));
                    }
                    paid.update(txn).await?;
                    Ok(None)
                }
                .boxed()
            })
            .await?;
        Ok(match stored {
            Storing::Stored { replaced, .. } => WindowKey::Stored { replaced },
            Storing::Refused(window_key) => window_key,
        })
    }

    /// The billing-key window: the key is stored for the session's customer_uid; the 0-won
    /// `issue` payment is shown as paid (iamport's `customer_uid_usage: "issue"`).
    #[allow(clippy::too_many_arguments)]
    async fn complete_billing_window(
        &self,
        m: &merchant::Model,
        connector: &dyn crate::pg::Pg,
        s: &checkout_session::Model,
        p: payment::Model,
        attempt: pg_attempt::Model,
        req: &WindowApprovalRequest,
        card_mask_no: &str,
    ) -> ServiceResult<()> {
        // The group the window was opened with: KCP issues the key there, even if the merchant's
        // group was changed while the buyer was in the window.
        let group_id = match window_group_id(s).map_or_else(|| self.group_id(m), Ok) {
            Ok(group_id) => group_id,
            Err(e) => {
                let reason = format!("빌링키 발급에 실패하였습니다. {e}");
                self.record_failure(p, attempt, None, &reason).await?;
                return Ok(());
            }
        };
        let key = match connector.issue_batch_key_from_window(req).await {
            Ok(k) => k,
            // A refusal, or nothing sent: KCP issued no key.
            Err(e @ (PgError::Declined { .. } | PgError::NotSent(_) | PgError::Config(_))) => {
                let reason = match e.refusal() {
                    Some(refusal) => format!("빌링키 발급에 실패하였습니다. {refusal}"),
                    None => {
                        tracing::warn!(imp_uid = %p.imp_uid, "billing-key issuance not sent: {e}");
                        "빌링키 발급에 실패하였습니다. (PG사에 요청을 보내지 못했습니다.)".into()
                    }
                };
                // None: another holder settled the attempt, and its outcome stands.
                self.record_failure(p, attempt, None, &reason).await?;
                return Ok(());
            }
            // KCP may have issued a key whose answer was lost: never concluded either way. KCP
            // has no inquiry for an issuance (spec/kcp.md §2.5), so the resolver leaves it open
            // for an operator (`resolve_approval`); the buyer is told it is being checked.
            Err(e) => {
                tracing::error!(imp_uid = %p.imp_uid, "billing-key issuance outcome unknown: {e}");
                self.let_go(attempt, &e.to_string()).await?;
                return Ok(());
            }
        };
        let uid = p.customer_uid.clone().unwrap_or_default();
        let now = self.clock.unix();
        let masked = if key.masked_card_number.is_empty() {
            // Posted by the buyer's browser: masked here whatever it holds.
            crate::domain::card::mask_card_number(card_mask_no)
        } else {
            key.masked_card_number.clone()
        };
        // The `issue` payment shows the card as its key does.
        let card_code =
            crate::domain::card::iamport_card_code(&key.issuer_code).map(str::to_string);
        let card_type = Some(i32::from(key.is_check_card));
        let row = crate::store::entity::billing_key::ActiveModel {
            merchant_id: Set(m.id),
            customer_uid: Set(uid.clone()),
            status: Set("active".into()),
            batch_key_sealed: Set(self.secrets.seal(key.batch_key.as_bytes())),
            group_id: Set(group_id),
            pg_id: Set(m.site_cd.clone()),
            card_code: Set(card_code.clone()),
            card_name: Set(Some(key.issuer_name.clone())),
            card_number: Set(Some(masked.clone())),
            card_type: Set(card_type),
            customer_id: Set(None),
            customer_name: Set(p.buyer_name.clone()),
            customer_tel: Set(p.buyer_tel.clone()),
            customer_email: Set(p.buyer_email.clone()),
            customer_addr: Set(p.buyer_addr.clone()),
            customer_postcode: Set(p.buyer_postcode.clone()),
            // The instance's mode decides which KCP approves (the sandbox in test mode), not the
            // merchant's flag (`Connectors::for_merchant` keeps the two in line).
            sandbox: Set(self.settings.test_mode),
            inserted_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
            ..Default::default()
        };
        let mut am: payment::ActiveModel = p.clone().into();
        am.status = Set(PaymentStatus::Paid.as_db().into());
        am.paid_at = Set(Some(now));
        am.card_number = Set(Some(masked));
        am.card_name = Set(Some(key.issuer_name));
        am.card_code = Set(card_code);
        am.card_type = Set(card_type);
        am.updated_at = Set(now);
        match self
            .store_window_key(m, &attempt, row.clone(), am, &uid, &p.merchant_uid, now)
            .await
        {
            // As a REST re-registration does: the card the customer replaced is deleted at KCP.
            Ok(WindowKey::Stored { replaced }) => {
                if let Some(old) = replaced {
                    self.delete_replaced_key(m, old.id).await;
                }
            }
            Ok(WindowKey::SettledElsewhere) => {
                tracing::warn!(imp_uid = %p.imp_uid, "billing-key window settled by another holder; its outcome stands");
                // A key nobody will store: deleted at KCP, durably (as a REST registration's).
                self.discard_issued_key(m, row, now).await;
            }
            Ok(WindowKey::ReplacementRefused) => {
                self.discard_issued_key(m, row, now).await;
                self.record_failure(p, attempt, None, KEY_REPLACEMENT_REFUSED)
                    .await?;
            }
            // The database failed before the key was stored: it is deleted at KCP as a REST
            // registration's is, and the payment fails (should that write fail too, the attempt's
            // lease runs out and the resolver leaves it to an operator, its key already gone).
            Err(KeyNotStored::Certainly(e)) => {
                tracing::error!(imp_uid = %p.imp_uid, "cannot store the billing-key window's key, deleting it at KCP: {e}");
                self.discard_issued_key(m, row, now).await;
                self.record_failure(p, attempt, None, WINDOW_KEY_NOT_STORED)
                    .await?;
            }
            // Maybe stored (`commit_storing` logged it for an operator): kept at KCP, the attempt
            // left held, so the resolver reports it once its lease runs out unless it committed.
            Err(KeyNotStored::Unknown(e)) => return Err(e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_post_waits_for_the_confirm_url_the_first_one_may_be_asking_before_its_approval() {
        let kcp = std::time::Duration::from_secs(30);
        assert_eq!(settled_wait(kcp, false), kcp + SETTLED_MARGIN);
        assert_eq!(
            settled_wait(kcp, true),
            kcp + SETTLED_MARGIN + super::super::confirm::CONFIRM_TIMEOUT
        );
    }

    #[test]
    fn a_windows_lifetime_is_named_in_hours_minutes_or_seconds_and_answered_f400() {
        let reason = window_expired_reason(3_600);
        assert_eq!(
            reason,
            "결제창을 연 지 오래되어(1시간 초과) 결제를 진행할 수 없습니다. 다시 결제해 주세요."
        );
        assert_eq!(failure_code(Some(&reason)), "F400");
        assert!(window_expired_reason(5_400).contains("(90분 초과)"));
        assert!(window_expired_reason(7_200).contains("(2시간 초과)"));
        assert!(window_expired_reason(301).contains("(301초 초과)"));
    }

    #[test]
    fn a_failure_answers_kcps_quoted_code_the_buyers_cancel_or_else_f400() {
        assert_eq!(failure_code(Some(USER_CANCEL)), "3001");
        assert_eq!(failure_code(Some("[9999] 거래 거절")), "9999");
        assert_eq!(
            failure_code(Some(&quoted_refusal("8059", "금액 불일치"))),
            "8059"
        );
        assert_eq!(failure_code(Some("[S004]")), "S004");
        for no_code in [
            None,
            Some("주문정보가 일치하지 않아 결제를 중단합니다."),
            Some("[] 거절"),
            Some("[F500] 확인 중"),
            Some("[12345] 다섯 자리"),
            Some("[운영] 메모"),
            Some("[9 9] 공백"),
            Some("9999] 거절"),
            Some("[9999 거절"),
        ] {
            assert_eq!(failure_code(no_code), "F400", "{no_code:?}");
        }
    }
}
