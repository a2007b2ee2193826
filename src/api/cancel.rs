//! `POST /payments/cancel` (spec/iamport-v1.md §4.2).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::{CancelBody, ErrorEnvelope, PaymentOutcome, TokenBodyErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, Body, MerchantCaller};
use super::payment_json::PaymentAnnotation;
use crate::app::AppState;
use crate::domain::text::refuse_script;
use crate::domain::vbank::{RefundAccount, RefundFieldRefused};
use crate::service::cancel::CancelCommand;
use crate::service::ServiceError;

/// The payment is named by `imp_uid` or `merchant_uid` (see `CancelBody`); a blank one is absent.
#[derive(Deserialize, ToSchema)]
pub struct CancelRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub imp_uid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub merchant_uid: Option<String>,
    /// The amount to cancel; absent (or null) for all that is left. A blank string is refused
    /// (HTTP 400), never taken for "all".
    #[serde(default, deserialize_with = "de::opt_i64_not_blank")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub amount: Option<i64>,
    /// 0 or absent: openport does not make mixed-tax (KCP `TG03`) cancels (HTTP 400 otherwise).
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 0)]
    pub tax_free: Option<i64>,
    /// From 0 to `amount` (HTTP 400 otherwise); not sent: KCP computes the VAT itself.
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub vat_amount: Option<i64>,
    /// Absent (or null): not compared. A blank string is refused (HTTP 400).
    #[serde(default, deserialize_with = "de::opt_i64_not_blank")]
    #[schema(value_type = Option<i64>)]
    pub checksum: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    pub enable_webhook: Option<bool>,
    /// A virtual account holding deposits (paid, or refunded in part) is refunded to this
    /// account, which `refund_holder`, `refund_bank` and `refund_account` name together (required
    /// for such a payment, `code 1` without them; not used for any other). The holder's name as
    /// the bank holds it; a character KCP forbids (`, & ; \ | ' " < >`, control characters) or
    /// over 60 bytes is HTTP 400, never cleaned (KCP verifies the name).
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(max_length = 60)]
    pub refund_holder: Option<String>,
    /// The refund account's bank, iamport's standard code (`004` KB국민, `088` 신한, `090`
    /// 카카오뱅크, …; leading zeros may be left out): any bank KCP has a code for, else HTTP 400.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub refund_bank: Option<String>,
    /// The refund account's number: `-` and spaces are dropped, then 10 to 16 digits (HTTP 400
    /// otherwise). Sent to KCP only: never stored, logged or echoed.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub refund_account: Option<String>,
    /// Accepted and not sent: KCP's refund takes no phone number.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub refund_tel: Option<String>,
}

#[utoipa::path(post, path = "/payments/cancel", operation_id = "cancelPayment", request_body = CancelBody,
    responses(
        (status = 200, body = PaymentOutcome, description = "the cancelled payment; code 1 (response null) when no such payment, the amount or checksum does not fit, a deposited virtual account comes without its refund account, or KCP refuses"),
        (status = 400, body = ErrorEnvelope, description = "neither imp_uid nor merchant_uid, a negative amount, a nonzero tax_free, a vat_amount under 0 or over the amount cancelled (for a full cancel, the balance), a reason with script-like content (`<script`, `javascript:`, `eval(`: KCP refuses it), a refund_bank KCP has no code for, a refund_account that is not 10 to 16 digits (`-` and spaces aside), a refund_holder KCP would refuse, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn cancel(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<CancelRequest>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let blank = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    if req.amount.is_some_and(|a| a < 0) {
        return Err(ApiError::bad_request("amount는 0 이상이어야 합니다."));
    }
    super::order::tax_fields(req.tax_free, req.vat_amount, req.amount.filter(|a| *a > 0))?;
    if let Some(reason) = &req.reason {
        refuse_script("reason", reason).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let refund = refund_account(
        blank(req.refund_bank),
        blank(req.refund_account),
        blank(req.refund_holder),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let cmd = CancelCommand {
        imp_uid: blank(req.imp_uid),
        merchant_uid: blank(req.merchant_uid),
        amount: req.amount,
        checksum: req.checksum,
        reason: blank(req.reason),
        vat_amount: req.vat_amount,
        enable_webhook: req.enable_webhook.unwrap_or(false),
        refund,
        caller_gone: Arc::default(),
    };
    // Dropped with this handler: when the merchant's client gives up (hyper drops the request's
    // future) while the cancel waits for another of its payment, that cancel is not made
    // (`CancelCommand::caller_gone`). Once it writes anything it runs to its end regardless.
    let _caller = CallerGone(cmd.caller_gone.clone());
    let gateway = s.gateway.clone();
    let record = tokio::spawn(async move { gateway.cancel_payment(&m, cmd).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("cancel task: {e}")))??;
    Ok(ok(record.into()))
}

/// Marks a cancel's caller gone when dropped: at the handler's end, or when hyper drops the
/// handler because the client closed its connection.
struct CallerGone(Arc<AtomicBool>);

impl Drop for CallerGone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The refund account the three fields name, each checked when given (a bad one is refused even
/// when the payment turns out to need none: the merchant meant it); None unless all three are
/// given, which the service refuses for a deposited virtual account and ignores otherwise.
fn refund_account(
    bank: Option<String>,
    number: Option<String>,
    holder: Option<String>,
) -> Result<Option<RefundAccount>, RefundFieldRefused> {
    let kcp_bank = bank.as_deref().map(RefundAccount::bank).transpose()?;
    let number = number.as_deref().map(RefundAccount::number).transpose()?;
    let holder = holder.as_deref().map(RefundAccount::holder).transpose()?;
    Ok(match (kcp_bank, number, holder) {
        (Some(kcp_bank), Some(number), Some(holder)) => Some(RefundAccount {
            kcp_bank,
            number,
            holder,
        }),
        _ => None,
    })
}
