//! `POST /vbanks` and `DELETE /vbanks/{imp_uid}`: virtual accounts without the payment window
//! (spec/iamport-v1.md §4.7), over KCP's window-less issuance (documented assumption, docs/kcp.md
//! §10).
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::{ErrorEnvelope, PaymentOutcome, TokenBodyErrors, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, Body, MerchantCaller, Path};
use super::order::{order, OrderFields};
use super::payment_json::PaymentAnnotation;
use crate::app::AppState;
use crate::domain::unix_secs::{too_long_message, LAST_INPUT_SECS};
use crate::domain::vbank::VbankBank;
use crate::service::vbanks::VbankCommand;
use crate::service::ServiceError;

#[derive(Deserialize, ToSchema)]
pub struct VbankRequest {
    #[serde(flatten)]
    pub order: OrderFields,
    /// iamport's bank code (`004` KB국민, `088` 신한, `020` 우리, `081` 하나, `011` NH농협, `003` IBK기업,
    /// `007` 수협; `005` 외환, merged into 하나: issued at 하나, shown `081`).
    /// Also without its leading zeros (`4`, `88`).
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, pattern = "^(0{0,2}[3457]|0?(11|20|81|88))$")]
    pub vbank_code: Option<String>,
    /// Deposit deadline, Unix seconds of at most 10 digits, in the future (HTTP 400 otherwise,
    /// checked against the server's clock; a date written `YYYYMMDDHHmm` is refused naming it); a
    /// fraction is floored.
    #[serde(default, deserialize_with = "de::opt_unix_secs")]
    #[schema(value_type = i64, required = true)]
    pub vbank_due: Option<i64>,
    /// Accepted and ignored over KCP (script in it → HTTP 400): KCP names the account's holder
    /// itself, and the Payment's `vbank_holder` shows it (docs/api.md).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub vbank_holder: Option<String>,
    /// Accepted for compatibility and ignored: one KCP site per merchant, no channels.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub channel_key: Option<String>,
    /// `kcp` or `kcp_billing` (in any case; blank or absent: the merchant's default), either also
    /// with `.{site_cd}` of the merchant's own KCP site (which the pattern cannot name); another PG
    /// (`html5_inicis`, …) or KCP site is HTTP 400, nothing written and KCP not called:
    /// the account is issued, and its deposit settles, on the merchant's site.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(pattern = "^([Kk][Cc][Pp](_[Bb][Ii][Ll][Ll][Ii][Nn][Gg])?)?$")]
    pub pg: Option<String>,
}

/// Parses the request into the service's command; every refusal here is a 400 before anything is
/// written.
fn parse(req: VbankRequest, site_cd: &str) -> ApiResult<VbankCommand> {
    let order = order(req.order)?;
    let code = req
        .vbank_code
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("vbank_code 파라메터가 누락되었습니다."))?;
    let bank = VbankBank::parse(&code).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let due = req
        .vbank_due
        .ok_or_else(|| ApiError::bad_request("vbank_due 파라메터가 누락되었습니다."))?;
    // Unix seconds of at most 10 digits (2286-11-20), as the browser checkout reads them. A longer
    // number is another form: the checkout's `YYYYMMDDHHmm` (or `…ss`), which read as seconds is a
    // deadline in the year 8403 (an account that never expires, its merchant_uid `ready` for
    // good), or milliseconds. Refused, naming Unix seconds and the date the digits write, rather
    // than told "before 9999-12-31" or issued at KCP.
    if due > LAST_INPUT_SECS {
        return Err(ApiError::bad_request(format!(
            "{} (vbank_due: {due})",
            too_long_message("vbank_due는", due)
        )));
    }
    super::onetime::merchants_kcp_site(req.pg.as_deref(), site_cd)?;
    let _ = req.channel_key;
    Ok(VbankCommand {
        order,
        bank,
        due,
        holder: req.vbank_holder.filter(|h| !h.trim().is_empty()),
    })
}

#[utoipa::path(post, path = "/vbanks", operation_id = "createVbank", request_body = VbankRequest,
    responses(
        (status = 200, body = PaymentOutcome, description = "status `ready` with the account; code 1 (response null) when KCP refuses or the merchant_uid is taken"),
        (status = 400, body = ErrorEnvelope, description = "a missing or invalid parameter (vbank_code, vbank_due in the past or over 10 digits (not Unix seconds), an order field, script in vbank_holder, a pg of another PG or KCP site), or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn issue(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<VbankRequest>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let cmd = parse(req, &m.site_cd)?;
    // Run to completion even if the client disconnects: an abandoned future could stop between
    // KCP's issuance and its recording.
    let gateway = s.gateway.clone();
    let record = tokio::spawn(async move { gateway.issue_vbank(&m, cmd).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("vbank task: {e}")))??;
    Ok(ok(record.into()))
}

#[utoipa::path(delete, path = "/vbanks/{imp_uid}", operation_id = "revokeVbank",
    params(("imp_uid" = String, Path, min_length = 1)),
    responses(
        (status = 200, body = PaymentOutcome, description = "`cancelled`; code 1 (response null) when KCP refuses or does not answer"),
        (status = 400, body = ErrorEnvelope, description = "not a virtual account awaiting its deposit (`ready`)"),
        (status = 404, body = ErrorEnvelope, description = "no such imp_uid"),
        TokenErrors))]
pub async fn revoke(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(imp_uid): Path<String>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let gateway = s.gateway.clone();
    let record = tokio::spawn(async move { gateway.revoke_vbank(&m, &imp_uid).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("vbank task: {e}")))??;
    Ok(ok(record.into()))
}
