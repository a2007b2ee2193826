//! `POST|PUT|GET /escrows/logis/{imp_uid}` (spec/iamport-v1.md §4.6).
use axum::extract::State;
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::{ErrorEnvelope, LogisOutcome, LogisReply, TokenBodyErrors, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, Body, MerchantCaller, Path};
use crate::app::AppState;
use crate::domain::escrow::{invoice_is_sendable, Delivery, Waybill, DELIVERY_FIELD_MAX};
use crate::domain::text::is_forbidden;
use crate::domain::LAST_UNIX_SECS;
use crate::service::escrow::{EscrowRefusal, Logis};
use crate::service::ServiceError;

#[derive(Deserialize, ToSchema, Default)]
pub struct LogisFields {
    /// The carrier's code: at most 100 characters, none of them one KCP forbids.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, max_length = 100, pattern = r#"^[^,&;\\|'"<>\x00-\x1F\x7F-\x9F]*[^\s,&;\\|'"<>\x00-\x1F\x7F-\x9F][^,&;\\|'"<>\x00-\x1F\x7F-\x9F]*$"#)]
    pub company: Option<String>,
    /// The waybill number: at most 100 bytes (UTF-8) once trimmed, sent to KCP verbatim.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, max_length = 100, pattern = r#"^[^,&;\\|'"<>\x00-\x1F\x7F-\x9F]*[^\s,&;\\|'"<>\x00-\x1F\x7F-\x9F][^,&;\\|'"<>\x00-\x1F\x7F-\x9F]*$"#)]
    pub invoice: Option<String>,
    /// Unix seconds, after 1970 and before the year 10000; a fraction is floored.
    #[serde(default, deserialize_with = "de::opt_unix_secs")]
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 253_402_300_799i64)]
    pub sent_at: Option<i64>,
    /// The expected day of receipt, `YYYYMMDD` (a real day); empty is none.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = Option<String>, pattern = "^(|[0-9]{4}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])|[0-9]{4}(0[13-9]|1[0-2])(29|30)|[0-9]{4}(0[13578]|1[02])31|([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)0229)$")]
    pub receiving_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LogisRequest {
    #[serde(default)]
    #[schema(value_type = LogisFields, required = true)]
    pub logis: Option<LogisFields>,
    /// Accepted as iamport documents them; KCP's STE1 takes carrier and waybill only.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub sender: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub receiver: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub products: Option<serde_json::Value>,
}

fn refusal(e: EscrowRefusal) -> ApiError {
    match e {
        EscrowRefusal::NotFound => ApiError::not_found("존재하지 않는 결제정보입니다."),
        EscrowRefusal::NotEscrow => ApiError::bad_request("에스크로 결제건이 아닙니다."),
        EscrowRefusal::AlreadyRegistered => ApiError::new(
            StatusCode::CONFLICT,
            -1,
            "이미 배송정보가 등록된 결제건입니다.",
        ),
        EscrowRefusal::NotRegistered => ApiError::new(
            StatusCode::CONFLICT,
            -1,
            "등록된 배송정보가 존재하지 않습니다.",
        ),
        EscrowRefusal::NotEditable => ApiError::new(
            StatusCode::CONFLICT,
            -1,
            "배송정보를 등록하거나 수정할 수 없는 상태입니다.",
        ),
        EscrowRefusal::Service(e) => e.into(),
    }
}

/// The delivery of a POST or a PUT, with the same rules for both: what KCP's shipping start
/// cannot take as it is (`domain::escrow::invoice_is_sendable`, a carrier with a character KCP
/// forbids) is HTTP 400 here, before anything is recorded or sent, and a PUT cannot store what a
/// POST would refuse.
fn parse(req: LogisRequest) -> ApiResult<Delivery> {
    let l = req
        .logis
        .ok_or_else(|| ApiError::bad_request("logis 파라메터가 누락되었습니다."))?;
    let company = l
        .company
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("logis.company 파라메터가 누락되었습니다."))?;
    if company.chars().count() > DELIVERY_FIELD_MAX || company.chars().any(is_forbidden) {
        return Err(ApiError::bad_request(format!(
            "logis.company는 {DELIVERY_FIELD_MAX}자 이하이며 , & ; \\ | ' \" < > 문자를 포함할 수 없습니다."
        )));
    }
    let invoice = l
        .invoice
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("logis.invoice 파라메터가 누락되었습니다."))?;
    if !invoice_is_sendable(&invoice) {
        return Err(ApiError::bad_request(format!(
            "logis.invoice는 {DELIVERY_FIELD_MAX}바이트 이하이며 , & ; \\ | ' \" < > 문자를 포함할 수 없습니다."
        )));
    }
    let sent_at = l
        .sent_at
        .ok_or_else(|| ApiError::bad_request("logis.sent_at 파라메터가 누락되었습니다."))?;
    if !(1..=LAST_UNIX_SECS).contains(&sent_at) {
        return Err(ApiError::bad_request(
            "logis.sent_at은 발송일시(Unix 시각, 초)여야 합니다.",
        ));
    }
    if let Some(day) = l.receiving_at.as_deref().filter(|d| !d.is_empty()) {
        if day.len() != 8 || NaiveDate::parse_from_str(day, "%Y%m%d").is_err() {
            return Err(ApiError::bad_request(
                "logis.receiving_at은 YYYYMMDD 형식의 날짜여야 합니다.",
            ));
        }
    }
    let _ = (req.sender, req.receiver, req.products);
    Ok(Delivery {
        waybill: Waybill {
            carrier: company,
            invoice,
        },
        sent_at,
        receiving_at: l.receiving_at,
    })
}

#[utoipa::path(post, path = "/escrows/logis/{imp_uid}", operation_id = "escrow_logis_save",
    params(("imp_uid" = String, Path, min_length = 1)), request_body = LogisRequest,
    responses(
        (status = 200, body = LogisOutcome, description = "the registered delivery, with `pg_logis`: the shipping start KCP holds as far as openport knows. Code 1 (response null) when KCP refuses or does not answer; a lost answer is remembered, and the retried POST that KCP answers 'already registered' registers the delivery with `pg_logis.confirmed` false"),
        (status = 400, body = ErrorEnvelope, description = "logis, logis.company, logis.invoice or logis.sent_at missing or outside the rules of `LogisFields` (a character KCP forbids, over 100 bytes, a sent_at that is not a time, a receiving_at that is not a YYYYMMDD day), not an escrow payment, or a body that is not JSON/form with these types"),
        (status = 404, body = ErrorEnvelope, description = "no such payment"),
        (status = 409, body = ErrorEnvelope, description = "a delivery is registered already, or the payment's state allows none"),
        TokenBodyErrors))]
pub async fn register(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(imp_uid): Path<String>,
    Body(req): Body<LogisRequest>,
) -> ApiResult<Envelope<Logis>> {
    let delivery = parse(req)?;
    // Run to completion even if the client disconnects: an abandoned future could stop between
    // KCP's shipping start and its recording, leaving it unanswered and every cancel refused.
    let gateway = s.gateway.clone();
    let logis =
        tokio::spawn(async move { gateway.register_escrow_logis(&m, &imp_uid, delivery).await })
            .await
            .map_err(|e| ServiceError::Internal(format!("escrow task: {e}")))?
            .map_err(refusal)?;
    Ok(ok(logis))
}

#[utoipa::path(put, path = "/escrows/logis/{imp_uid}", operation_id = "escrow_logis_edit",
    params(("imp_uid" = String, Path, min_length = 1)), request_body = LogisRequest,
    responses(
        (status = 200, body = LogisOutcome, description = "the changed delivery. KCP has no call that changes a shipping start: nothing is sent, only openport's record changes, and `pg_logis` keeps what KCP holds. Code 1 (response null) when concurrent requests keep changing the delivery"),
        (status = 400, body = ErrorEnvelope, description = "logis, logis.company, logis.invoice or logis.sent_at missing or outside the rules of `LogisFields` (a character KCP forbids, over 100 bytes, a sent_at that is not a time, a receiving_at that is not a YYYYMMDD day), not an escrow payment, or a body that is not JSON/form with these types"),
        (status = 404, body = ErrorEnvelope, description = "no such payment"),
        (status = 409, body = ErrorEnvelope, description = "no delivery is registered yet, or the payment's state allows no change"),
        TokenBodyErrors))]
pub async fn change(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(imp_uid): Path<String>,
    Body(req): Body<LogisRequest>,
) -> ApiResult<Envelope<Logis>> {
    let delivery = parse(req)?;
    Ok(ok(s
        .gateway
        .change_escrow_logis(&m, &imp_uid, delivery)
        .await
        .map_err(refusal)?))
}

#[utoipa::path(get, path = "/escrows/logis/{imp_uid}", operation_id = "escrow_logis_get",
    params(("imp_uid" = String, Path, min_length = 1)),
    responses(
        (status = 200, body = LogisReply, description = "the delivery as registered or changed last, with `pg_logis` (what KCP holds)"),
        (status = 400, body = ErrorEnvelope, description = "not an escrow payment"),
        (status = 404, body = ErrorEnvelope, description = "no such payment"),
        (status = 409, body = ErrorEnvelope, description = "등록된 배송정보가 존재하지 않습니다. (no delivery registered yet), as iamport's OpenAPI says"),
        TokenErrors))]
pub async fn get(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(imp_uid): Path<String>,
) -> ApiResult<Envelope<Logis>> {
    let logis = s
        .gateway
        .escrow_logis(&m, &imp_uid)
        .await
        .map_err(refusal)?;
    Ok(ok(
        logis.ok_or_else(|| refusal(EscrowRefusal::NotRegistered))?
    ))
}
