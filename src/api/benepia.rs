//! `POST /benepia/point` and `POST /benepia/payment`: Benepia welfare points over KCP (iamport
//! OpenAPI `queryBenepiaPoint` / `payBenepiaPoint`, KCP spec/kcp.md §2.8).
//!
//! The Benepia password is kept only until it is handed to the service: it is never echoed in an
//! error, and the request types have no `Debug`.
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::doc::{
    BenepiaPaymentBody, BenepiaPointOutcome, ErrorEnvelope, PaymentOutcome, TokenBodyErrors,
};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, Body, MerchantCaller};
use super::order::{order, OrderFields};
use super::payment_json::PaymentAnnotation;
use crate::app::AppState;
use crate::domain::payment::PaymentStatus;
use crate::domain::text::{
    is_sendable_credential, is_sendable_member_code, POINT_FIELD_MAX, POINT_MEMBER_CODE_MAX,
};
use crate::pg::PointAccount;
use crate::service::benepia::PointPaymentCommand;
use crate::service::ServiceError;

/// iamport's `merchant_uid` limit for this API (OpenAPI `maxLength 40`).
const MERCHANT_UID_MAX: usize = 40;

/// A Benepia credential (user, password, member code): it goes to KCP as it is, so it is at most
/// 16 printable ASCII characters (KCP's `String 16` bytes), without white space at its ends or a
/// character KCP forbids (`, & ; \\ | ' " < >`).
pub struct BenepiaCredential;

/// The characters KCP takes in a credential: printable ASCII but space and `, & ; \ | ' " < >`
/// (a space only inside, never at an end).
const CREDENTIAL_CHARS: &str = r#"!#$%()*+\-\./0-9:=?@A-Z\[\]^_`a-z{}~"#;

/// [`BenepiaCredential`]'s characters (see [`CREDENTIAL_CHARS`]).
fn credential_pattern() -> String {
    format!("^[{CREDENTIAL_CHARS}]([{CREDENTIAL_CHARS} ]*[{CREDENTIAL_CHARS}])?$")
}

impl utoipa::PartialSchema for BenepiaCredential {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(POINT_FIELD_MAX))
            .pattern(Some(credential_pattern()))
            .into()
    }
}

impl ToSchema for BenepiaCredential {}

/// A Benepia member company code (KCP's `pt_memcorp_cd`): at most 4 printable ASCII characters,
/// KCP's `String 4` (seed 003), none of them one KCP forbids.
pub struct BenepiaMemberCode;

impl utoipa::PartialSchema for BenepiaMemberCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(POINT_MEMBER_CODE_MAX))
            .pattern(Some(format!("^[{CREDENTIAL_CHARS}]{{1,4}}$")))
            .into()
    }
}

impl ToSchema for BenepiaMemberCode {}

#[derive(Deserialize, ToSchema)]
pub struct BenepiaPointRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = BenepiaCredential, required = true)]
    pub benepia_user: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = BenepiaCredential, required = true)]
    pub benepia_password: Option<String>,
    /// Required by openport: KCP's balance call needs `pt_memcorp_cd` (spec/kcp.md §2.8).
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = BenepiaMemberCode, required = true)]
    pub benepia_member_code: Option<String>,
    /// Accepted and ignored: a merchant has one KCP site in openport.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub channel_key: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BenepiaPointAnnotation {
    /// Points left on the account.
    pub point: i64,
}

#[derive(Deserialize, ToSchema)]
pub struct BenepiaPaymentRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = BenepiaCredential, required = true)]
    pub benepia_user: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = BenepiaCredential, required = true)]
    pub benepia_password: Option<String>,
    /// Required by openport (iamport treats a missing code as a test payment; KCP needs
    /// `pt_memcorp_cd`).
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = BenepiaMemberCode, required = true)]
    pub benepia_member_code: Option<String>,
    /// Accepted and ignored, as for `/benepia/point`.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub channel_key: Option<String>,
    #[serde(flatten)]
    pub order: OrderFields,
}

fn required(v: Option<String>, name: &str) -> ApiResult<String> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("{name} 파라메터가 누락되었습니다.")))
}

/// The three credentials, all required, and each one KCP can be sent as it is
/// (`domain::text::is_sendable_credential`; the member code at most KCP's 4 bytes,
/// `is_sendable_member_code`): refused here with HTTP 400, before anything is written, rather than
/// by the connector or KCP after the payment is recorded. Values are never quoted in a message.
fn account(
    user: Option<String>,
    password: Option<String>,
    member_code: Option<String>,
) -> ApiResult<PointAccount> {
    let field = |v: Option<String>, name: &str, sendable: fn(&str) -> bool, max: usize| {
        let v = required(v, name)?;
        if !sendable(&v) {
            return Err(ApiError::bad_request(format!(
                "{name}는 {max}자 이하의 영문, 숫자, 기호여야 하며 앞뒤 공백이나 , & ; \\ | ' \" < > 문자를 포함할 수 없습니다."
            )));
        }
        Ok(v)
    };
    let credential = is_sendable_credential as fn(&str) -> bool;
    Ok(PointAccount {
        id: field(user, "benepia_user", credential, POINT_FIELD_MAX)?,
        password: field(password, "benepia_password", credential, POINT_FIELD_MAX)?,
        member_company: field(
            member_code,
            "benepia_member_code",
            is_sendable_member_code,
            POINT_MEMBER_CODE_MAX,
        )?,
    })
}

/// Benepia point balance. `benepia_member_code` is REQUIRED here although iamport's OpenAPI does
/// not list it for this call: KCP's balance request needs `pt_memcorp_cd` (spec/kcp.md §2.8).
/// Missing credentials → HTTP 400, code -1; a KCP refusal (unknown account, wrong password) →
/// code 1 with KCP's code and message.
#[utoipa::path(post, path = "/benepia/point", operation_id = "queryBenepiaPoint", request_body = BenepiaPointRequest,
    responses(
        (status = 200, body = BenepiaPointOutcome, description = "the account's balance; code 1 (response null) with KCP's code and message when KCP refuses (unknown account, wrong password) or does not answer"),
        (status = 400, body = ErrorEnvelope, description = "benepia_user, benepia_password or benepia_member_code missing or blank, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn point(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<BenepiaPointRequest>,
) -> ApiResult<Envelope<BenepiaPointAnnotation>> {
    let _ = req.channel_key;
    let account = account(
        req.benepia_user,
        req.benepia_password,
        req.benepia_member_code,
    )?;
    let point = s.gateway.point_balance(&m, &account).await?;
    Ok(ok(BenepiaPointAnnotation { point }))
}

/// iamport's OpenAPI lists a Benepia failure as an error (`500 베네피아 포인트 결제 실패`), not as
/// `again`'s success-shaped `code 0` with `status "failed"`: so a refused payment is `code 1` with
/// KCP's code and message, and a merchant taking `code 0` for points spent (as the official
/// clients do) never ships an unpaid order. At HTTP 200, as every business refusal here (spec §2):
/// a 500 would say the server failed, and a wrong password is the buyer's input. The failed
/// payment stays on record (`GET /payments/find/{merchant_uid}`).
fn payment_failed(reason: Option<String>) -> ApiError {
    ApiError::refused(format!(
        "포인트 결제에 실패하였습니다. {}",
        reason.unwrap_or_default()
    ))
}

fn parse_payment(req: BenepiaPaymentRequest) -> ApiResult<PointPaymentCommand> {
    let account = account(
        req.benepia_user,
        req.benepia_password,
        req.benepia_member_code,
    )?;
    let _ = req.channel_key;
    required(req.order.name.clone(), "name")?;
    let order = order(req.order)?;
    if order.merchant_uid.chars().count() > MERCHANT_UID_MAX {
        return Err(ApiError::bad_request(format!(
            "merchant_uid는 {MERCHANT_UID_MAX}자 이하여야 합니다."
        )));
    }
    Ok(PointPaymentCommand { order, account })
}

/// Benepia point payment. `benepia_member_code` is REQUIRED (iamport makes a test payment without
/// it; openport needs KCP's `pt_memcorp_cd`). A KCP refusal (wrong password, not enough points)
/// is code 1 `포인트 결제에 실패하였습니다. [code] message`, as iamport's OpenAPI lists it as an
/// error, and the failed payment stays on record (docs/api.md); an outcome that could not be
/// confirmed is code 1 too and is settled by the resolver (PAPT inquiry). A partial cancel of the
/// payment (`/payments/cancel`) is done as KCP's re-approval of the rest (`STRA`), which gives the
/// payment a new `pg_tid`.
#[utoipa::path(post, path = "/benepia/payment", operation_id = "payBenepiaPoint", request_body = BenepiaPaymentBody,
    responses(
        (status = 200, body = PaymentOutcome, description = "paid; code 1 (response null) when KCP refuses (포인트 결제에 실패하였습니다. with KCP's code and message; the failed payment stays on record), the merchant_uid is taken, or the outcome could not be confirmed yet (settled by inquiry)"),
        (status = 400, body = ErrorEnvelope, description = "a Benepia credential or name missing or blank, merchant_uid over 40 characters, an invalid order field, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn payment(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<BenepiaPaymentRequest>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let cmd = parse_payment(req)?;
    // Run to completion even if the client disconnects: an abandoned future could stop between
    // KCP's approval and its recording.
    let gateway = s.gateway.clone();
    let record = tokio::spawn(async move { gateway.pay_with_points(&m, cmd).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("point payment task: {e}")))??;
    if record.payment.status == PaymentStatus::Failed.as_db() {
        return Err(payment_failed(record.payment.fail_reason));
    }
    Ok(ok(record.into()))
}
