//! `POST|PUT /payments/prepare`, `GET /payments/prepare/{merchant_uid}` (spec/iamport-v1.md §4.3).
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{ErrorEnvelope, PrepareOutcome, PrepareReply, TokenBodyErrors, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::ApiResult;
use super::extract::{de, Body, MerchantCaller, Path};
use super::order;
use crate::app::AppState;
use crate::store::entity::prepare;

#[derive(Deserialize, ToSchema)]
pub struct PrepareRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, pattern = r"\S", max_length = 80)]
    pub merchant_uid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = i64, required = true, minimum = 0, maximum = 999_999_999_999i64)]
    pub amount: Option<i64>,
    /// KRW only (any case); absent or empty: the charge's currency is not compared.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = Option<String>, pattern = "^([Kk][Rr][Ww])?$")]
    pub currency: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PrepareAnnotation {
    pub merchant_uid: String,
    pub amount: i64,
    /// `KRW` also when none was given: every charge is in KRW, the only currency openport takes,
    /// so that is the currency the merchant_uid will be paid in.
    pub currency: String,
}

impl From<prepare::Model> for PrepareAnnotation {
    fn from(p: prepare::Model) -> Self {
        Self {
            merchant_uid: p.merchant_uid,
            amount: p.amount,
            currency: p.currency.unwrap_or_else(|| "KRW".into()),
        }
    }
}

/// The rules of charges (`order::order`), so that what is prepared can be paid; an amount of 0 is
/// taken too, for the billing-key window, which may be opened with 0 (spec §6).
fn parse(req: PrepareRequest) -> ApiResult<(String, i64, Option<String>)> {
    Ok((
        order::merchant_uid(req.merchant_uid)?,
        order::amount(req.amount, 0)?,
        order::currency(req.currency)?,
    ))
}

#[utoipa::path(post, path = "/payments/prepare", operation_id = "preparePayment", request_body = PrepareRequest,
    responses(
        (status = 200, body = PrepareOutcome, description = "the registered amount; code 1 (response null) when the merchant_uid is already registered"),
        (status = 400, body = ErrorEnvelope, description = "merchant_uid or amount missing, a merchant_uid over 80 characters, an amount under 0 or over 999,999,999,999, a currency other than KRW, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn create(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<PrepareRequest>,
) -> ApiResult<Envelope<PrepareAnnotation>> {
    let (uid, amount, currency) = parse(req)?;
    Ok(ok(s
        .gateway
        .prepare(m.id, &uid, amount, currency)
        .await?
        .into()))
}

#[utoipa::path(put, path = "/payments/prepare", operation_id = "editPreparePayment", request_body = PrepareRequest,
    responses(
        (status = 200, body = PrepareReply),
        (status = 400, body = ErrorEnvelope, description = "merchant_uid or amount missing, a merchant_uid over 80 characters, an amount under 0 or over 999,999,999,999, a currency other than KRW, or a body that is not JSON/form with these types"),
        (status = 404, body = ErrorEnvelope, description = "no amount is registered for this merchant_uid"),
        TokenBodyErrors))]
pub async fn change(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<PrepareRequest>,
) -> ApiResult<Envelope<PrepareAnnotation>> {
    let (uid, amount, currency) = parse(req)?;
    Ok(ok(s
        .gateway
        .change_prepare(m.id, &uid, amount, currency)
        .await?
        .into()))
}

#[utoipa::path(get, path = "/payments/prepare/{merchant_uid}", operation_id = "getPaymentPrepareByMerchantUid",
    params(("merchant_uid" = String, Path, min_length = 1)),
    responses(
        (status = 200, body = PrepareReply),
        (status = 404, body = ErrorEnvelope, description = "no amount is registered for this merchant_uid"),
        TokenErrors))]
pub async fn get(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
) -> ApiResult<Envelope<PrepareAnnotation>> {
    Ok(ok(s.gateway.prepared(m.id, &uid).await?.into()))
}
