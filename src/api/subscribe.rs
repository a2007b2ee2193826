//! Recurring payments: `/subscribe/payments/again` and the schedule endpoints (spec §4.4).
use axum::extract::{Path, RawQuery, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::customers::{parse_customer, CustomerRequest};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, query_value, Body, MerchantCaller};
use super::onetime::kst_today;
use super::order::{order, OrderFields};
use super::payment_json::PaymentAnnotation;
use crate::app::AppState;
use crate::service::billing::AgainCommand;
use crate::service::lookup::{Page, Paging};
use crate::service::schedules::{Reschedule, ScheduleItem};
use crate::service::ServiceError;
use crate::store::billing::ScheduleQuery;
use crate::store::entity::schedule;

#[derive(Deserialize, ToSchema)]
pub struct AgainRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_uid: Option<String>,
    #[serde(flatten)]
    pub order: OrderFields,
}

fn customer_uid(v: Option<String>) -> ApiResult<String> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("customer_uid 파라메터가 누락되었습니다."))
}

#[utoipa::path(post, path = "/subscribe/payments/again", request_body = AgainRequest,
    responses((status = 200, body = PaymentAnnotation, description = "paid, or failed (code 0) on a decline; code 1 for an unknown customer_uid")))]
pub async fn again(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<AgainRequest>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let cmd = AgainCommand {
        customer_uid: customer_uid(req.customer_uid)?,
        order: order(req.order)?,
    };
    let gateway = s.gateway.clone();
    let record = tokio::spawn(async move { gateway.pay_again(&m, cmd).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("payment task: {e}")))??;
    Ok(ok(record.into()))
}

/// iamport's ScheduleResult: imp_uid and payment_status null until executed, times 0 when unset.
#[derive(Serialize, ToSchema)]
pub struct ScheduleAnnotation {
    pub customer_uid: String,
    pub merchant_uid: String,
    pub imp_uid: Option<String>,
    pub schedule_at: i64,
    pub executed_at: i64,
    pub revoked_at: i64,
    pub amount: i64,
    pub currency: String,
    pub name: Option<String>,
    pub buyer_name: Option<String>,
    pub buyer_email: Option<String>,
    pub buyer_tel: Option<String>,
    pub buyer_addr: Option<String>,
    pub buyer_postcode: Option<String>,
    pub custom_data: Option<String>,
    pub schedule_status: String,
    pub payment_status: Option<String>,
    pub fail_reason: Option<String>,
}

impl From<schedule::Model> for ScheduleAnnotation {
    fn from(s: schedule::Model) -> Self {
        Self {
            schedule_status: if s.status == "executing" {
                "scheduled".into()
            } else {
                s.status
            },
            customer_uid: s.customer_uid,
            merchant_uid: s.merchant_uid,
            imp_uid: s.imp_uid,
            schedule_at: s.schedule_at,
            executed_at: s.executed_at.unwrap_or(0),
            revoked_at: s.revoked_at.unwrap_or(0),
            amount: s.amount,
            currency: s.currency,
            name: s.name,
            buyer_name: s.buyer_name,
            buyer_email: s.buyer_email,
            buyer_tel: s.buyer_tel,
            buyer_addr: s.buyer_addr,
            buyer_postcode: s.buyer_postcode,
            custom_data: s.custom_data,
            payment_status: s.payment_status,
            fail_reason: s.fail_reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SchedulePage {
    pub total: u64,
    pub previous: u64,
    pub next: u64,
    pub list: Vec<ScheduleAnnotation>,
}

impl From<Page<schedule::Model>> for SchedulePage {
    fn from(p: Page<schedule::Model>) -> Self {
        Self {
            total: p.total,
            previous: p.previous,
            next: p.next,
            list: p.list.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ScheduleRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_uid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>)]
    pub checking_amount: Option<i64>,
    #[serde(flatten)]
    pub card: CustomerRequest,
    #[serde(default)]
    pub schedules: Vec<ScheduleFields>,
}

/// One schedule: the order fields plus when to charge.
#[derive(Deserialize, ToSchema)]
pub struct ScheduleFields {
    #[serde(flatten)]
    pub order: OrderFields,
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>)]
    pub schedule_at: Option<i64>,
}

#[utoipa::path(post, path = "/subscribe/payments/schedule", request_body = ScheduleRequest, responses((status = 200, body = [ScheduleAnnotation])))]
pub async fn schedule(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<ScheduleRequest>,
) -> ApiResult<Envelope<Vec<ScheduleAnnotation>>> {
    let uid = customer_uid(req.customer_uid)?;
    let card = parse_customer(&uid, req.card, kst_today(&s))?;
    // Not made: KCP checks the card when it issues the key (docs/api.md).
    let _ = req.checking_amount;
    let mut items = Vec::with_capacity(req.schedules.len());
    for f in req.schedules {
        let at = f
            .schedule_at
            .ok_or_else(|| ApiError::bad_request("schedule_at 파라메터가 누락되었습니다."))?;
        items.push(ScheduleItem {
            schedule_at: at,
            order: order(f.order)?,
        });
    }
    let list = s.gateway.schedule_payments(&m, &uid, card, items).await?;
    Ok(ok(list.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct UnscheduleRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_uid: Option<String>,
    /// Absent: all of the customer's pending schedules.
    #[serde(default, deserialize_with = "de::opt_string_list")]
    pub merchant_uid: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/subscribe/payments/unschedule", request_body = UnscheduleRequest, responses((status = 200, body = [ScheduleAnnotation])))]
pub async fn unschedule(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<UnscheduleRequest>,
) -> ApiResult<Envelope<Vec<ScheduleAnnotation>>> {
    // Spec: without merchant_uid all of the customer's schedules are revoked, without customer_uid
    // the named ones whoever's they are (the service refuses neither); an empty list names nothing
    // and is refused rather than taken for "all".
    let uid = req.customer_uid.filter(|s| !s.trim().is_empty());
    let only = match req.merchant_uid {
        Some(list) if list.is_empty() => {
            return Err(ApiError::bad_request(
                "merchant_uid 파라메터가 비어 있습니다.",
            ))
        }
        only => only,
    };
    let list = s.gateway.unschedule(&m, uid.as_deref(), only).await?;
    Ok(ok(list.into_iter().map(Into::into).collect()))
}

fn int(q: Option<&str>, name: &str) -> ApiResult<Option<i64>> {
    match query_value(q, name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name}는 정수여야 합니다."))),
    }
}

fn paging(q: Option<&str>) -> ApiResult<Paging> {
    Ok(Paging::new(
        int(q, "page")?.map(|p| p.max(1) as u64),
        int(q, "limit")?.map(|l| l.max(1) as u64),
        1000, // OpenAPI: limit ≤ 1000
    ))
}

#[utoipa::path(get, path = "/subscribe/payments/schedule", responses((status = 200, body = SchedulePage)))]
pub async fn list(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<SchedulePage>> {
    let q = q.as_deref();
    let query = ScheduleQuery {
        merchant_id: m.id,
        customer_uid: None,
        from: int(q, "schedule_from")?,
        to: int(q, "schedule_to")?,
        status: query_value(q, "schedule_status"),
    };
    let desc = query_value(q, "sorting").as_deref() == Some("-schedule_at");
    Ok(ok(s
        .gateway
        .schedules(&m, query, paging(q)?, desc)
        .await?
        .into()))
}

#[utoipa::path(get, path = "/subscribe/payments/schedule/customers/{customer_uid}", params(("customer_uid" = String, Path)), responses((status = 200, body = SchedulePage)))]
pub async fn by_customer(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<SchedulePage>> {
    let q = q.as_deref();
    let query = ScheduleQuery {
        merchant_id: m.id,
        customer_uid: Some(uid),
        from: int(q, "from")?,
        to: int(q, "to")?,
        status: query_value(q, "schedule-status").or_else(|| query_value(q, "schedule_status")),
    };
    Ok(ok(s
        .gateway
        .schedules(&m, query, paging(q)?, false)
        .await?
        .into()))
}

#[utoipa::path(get, path = "/subscribe/payments/schedule/{merchant_uid}", params(("merchant_uid" = String, Path)), responses((status = 200, body = ScheduleAnnotation), (status = 404)))]
pub async fn get_one(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
) -> ApiResult<Envelope<ScheduleAnnotation>> {
    Ok(ok(s.gateway.schedule(&m, &uid).await?.into()))
}

#[derive(Deserialize, ToSchema)]
pub struct RescheduleRequest {
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>)]
    pub schedule_at: Option<i64>,
}

#[utoipa::path(put, path = "/subscribe/payments/schedule/{merchant_uid}", params(("merchant_uid" = String, Path)), request_body = RescheduleRequest, responses((status = 200, body = ScheduleAnnotation)))]
pub async fn update(
    s: State<AppState>,
    m: MerchantCaller,
    uid: Path<String>,
    req: Body<RescheduleRequest>,
) -> ApiResult<Envelope<ScheduleAnnotation>> {
    retime(s, m, uid, req, Reschedule::Pending).await
}

#[utoipa::path(post, path = "/subscribe/payments/schedule/{merchant_uid}/reschedule", params(("merchant_uid" = String, Path)), request_body = RescheduleRequest, responses((status = 200, body = ScheduleAnnotation)))]
pub async fn reschedule(
    s: State<AppState>,
    m: MerchantCaller,
    uid: Path<String>,
    req: Body<RescheduleRequest>,
) -> ApiResult<Envelope<ScheduleAnnotation>> {
    retime(s, m, uid, req, Reschedule::FailedOrRevoked).await
}

async fn retime(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
    Body(req): Body<RescheduleRequest>,
    how: Reschedule,
) -> ApiResult<Envelope<ScheduleAnnotation>> {
    let at = req
        .schedule_at
        .ok_or_else(|| ApiError::bad_request("schedule_at 파라메터가 누락되었습니다."))?;
    Ok(ok(s.gateway.reschedule(&m, &uid, at, how).await?.into()))
}

#[utoipa::path(post, path = "/subscribe/payments/schedule/{merchant_uid}/retry", params(("merchant_uid" = String, Path)), responses((status = 200, body = PaymentAnnotation)))]
pub async fn retry(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let gateway = s.gateway.clone();
    let record = tokio::spawn(async move { gateway.retry_schedule(&m, &uid).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("payment task: {e}")))??;
    Ok(ok(record.into()))
}

#[utoipa::path(get, path = "/subscribe/customers/{customer_uid}/schedules", params(("customer_uid" = String, Path)), responses((status = 200, body = SchedulePage)))]
pub async fn customer_schedules(
    s: State<AppState>,
    m: MerchantCaller,
    p: Path<String>,
    q: RawQuery,
) -> ApiResult<Envelope<SchedulePage>> {
    by_customer(s, m, p, q).await
}
