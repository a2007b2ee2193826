//! `POST|PUT /payments/prepare`, `GET /payments/prepare/{merchant_uid}` (spec/iamport-v1.md §4.3).
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{ErrorEnvelope, PrepareOutcome, PrepareReply, TokenBodyErrors, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, Body, MerchantCaller};
use crate::app::AppState;
use crate::store::entity::prepare;

#[derive(Deserialize, ToSchema)]
pub struct PrepareRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, pattern = r"\S")]
    pub merchant_uid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = i64, required = true, minimum = 0)]
    pub amount: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub currency: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PrepareAnnotation {
    pub merchant_uid: String,
    pub amount: i64,
    pub currency: Option<String>,
}

impl From<prepare::Model> for PrepareAnnotation {
    fn from(p: prepare::Model) -> Self {
        Self {
            merchant_uid: p.merchant_uid,
            amount: p.amount,
            currency: p.currency,
        }
    }
}

fn parse(req: PrepareRequest) -> ApiResult<(String, i64, Option<String>)> {
    let uid = req
        .merchant_uid
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("merchant_uid 파라메터가 누락되었습니다."))?;
    let amount = req
        .amount
        .ok_or_else(|| ApiError::bad_request("amount 파라메터가 누락되었습니다."))?;
    if amount < 0 {
        return Err(ApiError::bad_request("amount는 0 이상이어야 합니다."));
    }
    // Charges upper-case their currency (`order::order`), and a prepared currency must compare
    // equal to theirs (spec §4.3).
    let currency = req
        .currency
        .filter(|c| !c.is_empty())
        .map(|c| c.to_ascii_uppercase());
    Ok((uid, amount, currency))
}

#[utoipa::path(post, path = "/payments/prepare", operation_id = "preparePayment", request_body = PrepareRequest,
    responses(
        (status = 200, body = PrepareOutcome, description = "the registered amount; code 1 (response null) when the merchant_uid is already registered"),
        (status = 400, body = ErrorEnvelope, description = "merchant_uid or amount missing, a negative amount, or a body that is not JSON/form with these types"),
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
        (status = 400, body = ErrorEnvelope, description = "merchant_uid or amount missing, a negative amount, or a body that is not JSON/form with these types"),
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
