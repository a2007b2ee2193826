//! Recurring payments: `/subscribe/payments/again` and the schedule endpoints (spec §4.4).
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::customers::{parse_customer, CustomerRequest};
use super::doc::{
    uid_or_uids, CustomerSchedules, ErrorEnvelope, PageParams, PaymentOutcome, ScheduleBody,
    ScheduleListOutcome, SchedulePageReply, ScheduleReply, TokenBodyErrors, TokenErrors,
    UnscheduleBody,
};
use super::envelope::{ok, Envelope, Noted};
use super::error::{ApiError, ApiResult};
use super::extract::{de, query_value, Body, MerchantCaller, Path};
use super::onetime::kst_today;
use super::order::{order, OrderFields};
use super::payment_json::PaymentAnnotation;
use super::payments::{number, paging};
use crate::app::AppState;
use crate::domain::payment::PG_KCP_BILLING;
use crate::domain::schedule::ScheduleStatus;
use crate::service::billing::AgainCommand;
use crate::service::lookup::Page;
use crate::service::schedules::{Reschedule, ScheduleItem};
use crate::service::ServiceError;
use crate::store::billing::ScheduleQuery;
use crate::store::entity::schedule;

#[derive(Deserialize, ToSchema)]
pub struct AgainRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, pattern = r"\S")]
    pub customer_uid: Option<String>,
    #[serde(flatten)]
    pub order: OrderFields,
}

fn customer_uid(v: Option<String>) -> ApiResult<String> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("customer_uid 파라메터가 누락되었습니다."))
}

#[utoipa::path(post, path = "/subscribe/payments/again", operation_id = "again", request_body = AgainRequest,
    responses(
        (status = 200, body = PaymentOutcome, description = "paid, or failed (code 0) on a decline; code 1 (response null) for an unknown customer_uid, a merchant_uid already taken, instalments (card_quota ≥ 2) under 50,000 KRW or an outcome not known yet"),
        (status = 400, body = ErrorEnvelope, description = "customer_uid missing, an invalid order field (merchant_uid, amount, currency, a nonzero tax_free, vat_amount, card_quota, script in a text field), or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
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
    /// The buyer's id: the schedule request's `customer_id`, else the billing key's.
    pub customer_id: Option<String>,
    /// iamport's promotion id: a feature openport has not, so always null.
    pub promotion_id: Option<String>,
    pub merchant_uid: String,
    pub imp_uid: Option<String>,
    /// `kcp_billing`: a schedule charges a billing key.
    pub pg_provider: String,
    /// KCP's site_cd.
    pub pg_id: String,
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

impl ScheduleAnnotation {
    /// Schedule `s` of the merchant whose KCP site is `site_cd`.
    pub fn of(s: schedule::Model, site_cd: &str) -> Self {
        // A schedule names its payment from the moment the charge opens (so that a run taking it
        // over finds the payment); iamport shows it once the schedule is executed.
        let imp_uid = s.imp_uid.filter(|_| s.status == "executed");
        Self {
            schedule_status: if s.status == "executing" {
                "scheduled".into()
            } else {
                s.status
            },
            customer_uid: s.customer_uid,
            customer_id: s.customer_id,
            promotion_id: None,
            merchant_uid: s.merchant_uid,
            imp_uid,
            pg_provider: PG_KCP_BILLING.into(),
            pg_id: site_cd.into(),
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

impl SchedulePage {
    fn of(p: Page<schedule::Model>, site_cd: &str) -> Self {
        Self {
            total: p.total,
            previous: p.previous,
            next: p.next,
            list: annotated(p.list, site_cd),
        }
    }
}

fn annotated(list: Vec<schedule::Model>, site_cd: &str) -> Vec<ScheduleAnnotation> {
    list.into_iter()
        .map(|s| ScheduleAnnotation::of(s, site_cd))
        .collect()
}

#[derive(Deserialize, ToSchema)]
pub struct ScheduleRequest {
    /// At most 80 characters (`domain::order::customer_uid`): a key may be issued under it.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, pattern = r"\S", max_length = 80)]
    pub customer_uid: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    #[schema(value_type = Option<i64>)]
    pub checking_amount: Option<i64>,
    #[serde(flatten)]
    pub card: CustomerRequest,
    /// All or nothing: one invalid schedule refuses the request.
    #[serde(default)]
    #[schema(required = true, min_items = 1)]
    pub schedules: Vec<ScheduleFields>,
}

/// One schedule: the order fields plus when to charge.
#[derive(Deserialize, ToSchema)]
pub struct ScheduleFields {
    #[serde(flatten)]
    pub order: OrderFields,
    /// Unix seconds, in the future (else code 1, HTTP 200), of at most 10 digits (9999999999,
    /// 2286-11-20; a longer number, a date written `YYYYMMDDHHmm` or milliseconds, is HTTP 400); a
    /// fraction is floored (`Date.now() / 1000 + 3600`).
    #[serde(default, deserialize_with = "de::opt_unix_secs")]
    #[schema(value_type = i64, required = true)]
    pub schedule_at: Option<i64>,
}

/// Schedules charges on the customer's billing key, issuing the key first from the card data when
/// the customer_uid has none. Card data beside a customer_uid that has a key is not read at all,
/// neither blank fields nor a stale card: iamport schedules such a request on the registered key
/// ("카드정보 선택사항", its OpenAPI for this operation) and a schedule request never replaces a
/// key here, so refusing it for card fields it would not use (an expired card the merchant still
/// sends, one field of the pair) only lost the schedule.
#[utoipa::path(post, path = "/subscribe/payments/schedule", operation_id = "schedule", request_body = ScheduleBody,
    responses(
        (status = 200, body = ScheduleListOutcome, description = "the schedules made; code 1 (response null) for a schedule_at not in the future, instalments (card_quota ≥ 2) under 50,000 KRW, a merchant_uid already used or prepared with another amount, an unknown customer_uid without card data (blank card_number and expiry count as none), or a billing key KCP would not issue; code -1 for refused card data (read only when a key is to be issued)"),
        (status = 400, body = ErrorEnvelope, description = "customer_uid or schedules missing, customer_uid over 80 characters, only one of card_number and expiry (a blank one counts as missing) or a pg of another PG or KCP site, for a customer_uid without a billing key (card data beside a registered one is not read, pg included), an item without schedule_at, with a schedule_at of more than 10 digits (over 9999999999: a date written YYYYMMDDHHmm or milliseconds, not Unix seconds) or with an invalid order field, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn schedule(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<ScheduleRequest>,
) -> ApiResult<Envelope<Vec<ScheduleAnnotation>>> {
    let uid = customer_uid(req.customer_uid)?;
    // It may register a billing key under this customer_uid: the rule of `POST /subscribe/customers`.
    super::customers::valid_uid(&uid)?;
    // The buyer's id of the schedules (ScheduleResult `customer_id`), with or without card data.
    let customer_id = req.card.customer_id.clone().filter(|id| !id.is_empty());
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
    // Card data is read only when a key is to be issued from it (see above). A key deleted
    // between this read and the service's own is refused there as for any unknown customer
    // (`등록되지 않은 구매자입니다.`), as a delete just before the request would be.
    let registered = !s
        .gateway
        .customers(&m, std::slice::from_ref(&uid))
        .await?
        .is_empty();
    let card = if registered {
        None
    } else {
        parse_customer(&uid, req.card, kst_today(&s), &m.site_cd)?
    };
    // May issue a billing key at KCP first: run to the end whether or not the client waits.
    let gateway = s.gateway.clone();
    let site_cd = m.site_cd.clone();
    let list = tokio::spawn(async move {
        gateway
            .schedule_payments(&m, &uid, customer_id, card, items)
            .await
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("schedule task: {e}")))??;
    Ok(ok(annotated(list, &site_cd)))
}

/// The most merchant_uids one unschedule names: each is one bound parameter of the statement that
/// reads them, and a list past the database's limit (SQLite 32,766, PostgreSQL 65,535) failed the
/// statement (HTTP 500). All of a customer's schedules need no list (customer_uid alone).
pub const UNSCHEDULE_UIDS_MAX: usize = 1000;

#[derive(Deserialize, ToSchema)]
pub struct UnscheduleRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_uid: Option<String>,
    /// Absent, or an empty list beside a customer_uid: all of the customer's pending schedules.
    /// One merchant_uid or a list; a blank one (`""`, `[""]`, a form's `merchant_uid=`) is
    /// refused, never taken for "all".
    #[serde(default, deserialize_with = "de::opt_string_list")]
    #[schema(schema_with = uid_or_uids)]
    pub merchant_uid: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/subscribe/payments/unschedule", operation_id = "unschedule", request_body = UnscheduleBody,
    responses(
        (status = 200, body = ScheduleListOutcome, description = "the schedules revoked (`message` names those left because their charge is in progress at KCP); code 1 (response null) when there was none to revoke, saying so, or, when those named are being charged, that a charge is in progress, naming each merchant_uid and imp_uid"),
        (status = 400, body = ErrorEnvelope, description = "neither customer_uid nor merchant_uid, a blank merchant_uid (or a blank item in its list), an empty merchant_uid list without a customer_uid, more than 1,000 merchant_uids, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn unschedule(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<UnscheduleRequest>,
) -> ApiResult<Noted<Vec<ScheduleAnnotation>>> {
    // Spec: without merchant_uid all of the customer's schedules are revoked, without customer_uid
    // the named ones whoever's they are (the service refuses neither). The official Java client's
    // `UnscheduleData(customer_uid)` always sends `"merchant_uid": []`, meaning "all of this
    // customer's", so beside a customer_uid an empty list is taken as absent; alone it names
    // nothing and is refused rather than taken for "all". A blank merchant_uid (`""`, `"  "`,
    // `[""]`, a form's `merchant_uid=`) is no such request: it comes from an unset variable or a
    // NULL rendered as text where one schedule was meant, and read as "none named" it revoked all
    // of the customer's (code 0, later months never charged). It is refused, as the OpenAPI
    // document says (non-blank items) and as a blank that would widen a destructive request is
    // elsewhere (`de::opt_i64_not_blank`); spec §4.4 gives "all" to a missing merchant_uid only.
    let uid = req.customer_uid.filter(|s| !s.trim().is_empty());
    let names_none = |list: &[String]| {
        list.iter().any(|u| u.trim().is_empty()) || (list.is_empty() && uid.is_none())
    };
    let only = match req.merchant_uid {
        Some(list) if names_none(&list) => {
            return Err(ApiError::bad_request(
                "merchant_uid 파라메터가 비어 있습니다.",
            ))
        }
        Some(list) if list.is_empty() => None,
        Some(list) if list.len() > UNSCHEDULE_UIDS_MAX => {
            return Err(ApiError::bad_request(format!(
                "merchant_uid 파라메터는 {UNSCHEDULE_UIDS_MAX}개 이하여야 합니다."
            )))
        }
        only => only,
    };
    let done = s.gateway.unschedule(&m, uid.as_deref(), only).await?;
    let message = done.note();
    Ok(Noted {
        envelope: ok(annotated(done.revoked, &m.site_cd)),
        message,
    })
}

/// The status filter given as `name` (the first of `names` present): one of iamport's three
/// words or HTTP 400, never a filter that silently matches nothing (domain/schedule.rs). The
/// literal `undefined`, what merchant JS building the query from an unset variable sends, is no
/// filter, as it is for the payment lookups (`StatusFilter::parse`, spec/iamport-v1.md §4.1).
fn schedule_status(q: Option<&str>, names: &[&str]) -> ApiResult<Option<ScheduleStatus>> {
    let Some((name, value)) = names
        .iter()
        .find_map(|name| query_value(q, name).map(|v| (name, v)))
    else {
        return Ok(None);
    };
    if value == "undefined" {
        return Ok(None);
    }
    ScheduleStatus::parse(&value).map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name}는 {} 중 하나여야 합니다.",
            ScheduleStatus::WORDS.join(", ")
        ))
    })
}

/// Schedules whose `schedule_at` lies in `schedule_from` ≤ t < `schedule_to`; the range must be
/// non-empty and at most 3 months long (HTTP 400 otherwise), which OpenAPI cannot say.
#[utoipa::path(get, path = "/subscribe/payments/schedule", operation_id = "findSchedulesByRange",
    params(
        ("schedule_from" = i64, Query, minimum = 0, description = "Unix seconds, inclusive"),
        ("schedule_to" = i64, Query, minimum = 0, description = "Unix seconds, exclusive; after schedule_from, and at most 3 months after it"),
        ("schedule_status" = Option<String>, Query, description = "`scheduled` (includes one being charged now), `executed` or `revoked`; `undefined` (an unset script variable) is no filter, any other value HTTP 400"),
        ("sorting" = Option<String>, Query, description = "`scheduled` for the earliest `schedule_at` first; otherwise (iamport's default) the latest first"),
        PageParams,
    ),
    responses(
        (status = 200, body = SchedulePageReply),
        (status = 400, body = ErrorEnvelope, description = "schedule_from or schedule_to missing, an empty or longer than 3 months range, a schedule_status other than scheduled, executed, revoked or undefined, or a parameter that is not an integer"),
        TokenErrors))]
pub async fn list(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<SchedulePage>> {
    let q = q.as_deref();
    let query = ScheduleQuery {
        merchant_id: m.id,
        customer_uid: None,
        from: number(q, "schedule_from")?,
        to: number(q, "schedule_to")?,
        status: schedule_status(q, &["schedule_status"])?,
    };
    // iamport: "scheduled : 예약일자 과거순 (Default : 예약일자 최신순)".
    let desc = query_value(q, "sorting").as_deref() != Some("scheduled");
    let page = s
        .gateway
        .schedules(&m, query, paging(q, 1000)?, desc)
        .await?;
    Ok(ok(SchedulePage::of(page, &m.site_cd)))
}

#[utoipa::path(get, path = "/subscribe/payments/schedule/customers/{customer_uid}", operation_id = "findSchedulesByCustomer",
    params(
        ("customer_uid" = String, Path, min_length = 1),
        CustomerSchedules,
    ),
    responses(
        (status = 200, body = SchedulePageReply),
        (status = 400, body = ErrorEnvelope, description = "from, to, page or limit not an integer; from and to both given but an empty or longer than 3 months range; a schedule-status other than scheduled, executed, revoked or undefined"),
        TokenErrors))]
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
        from: number(q, "from")?,
        to: number(q, "to")?,
        status: schedule_status(q, &["schedule-status", "schedule_status"])?,
    };
    // iamport: "예약된 시각 기준으로 최신순으로 정렬되어 전달됩니다."
    let page = s
        .gateway
        .schedules(&m, query, paging(q, 1000)?, true)
        .await?;
    Ok(ok(SchedulePage::of(page, &m.site_cd)))
}

#[utoipa::path(get, path = "/subscribe/payments/schedule/{merchant_uid}", operation_id = "getScheduleByMid",
    params(("merchant_uid" = String, Path, min_length = 1)),
    responses(
        (status = 200, body = ScheduleReply),
        (status = 404, body = ErrorEnvelope, description = "no schedule has this merchant_uid"),
        TokenErrors))]
pub async fn get_one(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
) -> ApiResult<Envelope<ScheduleAnnotation>> {
    Ok(ok(ScheduleAnnotation::of(
        s.gateway.schedule(&m, &uid).await?,
        &m.site_cd,
    )))
}

#[derive(Deserialize, ToSchema)]
pub struct RescheduleRequest {
    /// Unix seconds, in the future (HTTP 400 otherwise, checked against the server's clock), of
    /// at most 10 digits (9999999999, 2286-11-20; a date written `YYYYMMDDHHmm` or milliseconds
    /// is HTTP 400); a fraction is floored.
    #[serde(default, deserialize_with = "de::opt_unix_secs")]
    #[schema(value_type = i64, required = true)]
    pub schedule_at: Option<i64>,
}

/// Moves a schedule that has not run yet (one a run claimed but has not charged included).
#[utoipa::path(put, path = "/subscribe/payments/schedule/{merchant_uid}", operation_id = "updateScheduleByMid",
    params(("merchant_uid" = String, Path, min_length = 1)), request_body = RescheduleRequest,
    responses(
        (status = 200, body = ScheduleReply),
        (status = 400, body = ErrorEnvelope, description = "schedule_at missing, not in the future or of more than 10 digits (not Unix seconds), the schedule already ran, was revoked or has its charge open, its merchant_uid is prepared with another amount or currency (POST /payments/prepare; the words of the schedule request's code 1), or a body that is not JSON/form with these types"),
        (status = 404, body = ErrorEnvelope, description = "no schedule has this merchant_uid"),
        TokenBodyErrors))]
pub async fn update(
    s: State<AppState>,
    m: MerchantCaller,
    uid: Path<String>,
    req: Body<RescheduleRequest>,
) -> ApiResult<Envelope<ScheduleAnnotation>> {
    retime(s, m, uid, req, Reschedule::Pending).await
}

/// Schedules again a schedule whose charge failed or that was revoked.
#[utoipa::path(post, path = "/subscribe/payments/schedule/{merchant_uid}/reschedule", operation_id = "rescheduleByMid",
    params(("merchant_uid" = String, Path, min_length = 1)), request_body = RescheduleRequest,
    responses(
        (status = 200, body = ScheduleReply),
        (status = 400, body = ErrorEnvelope, description = "schedule_at missing, not in the future or of more than 10 digits (not Unix seconds), the schedule neither failed nor was revoked, its merchant_uid is prepared with another amount or currency (POST /payments/prepare; the words of the schedule request's code 1), or a body that is not JSON/form with these types"),
        (status = 404, body = ErrorEnvelope, description = "no schedule has this merchant_uid, or its customer has no billing key (deleted): nothing is re-armed"),
        TokenBodyErrors))]
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
    Ok(ok(ScheduleAnnotation::of(
        s.gateway.reschedule(&m, &uid, at, how).await?,
        &m.site_cd,
    )))
}

/// Charges now a schedule whose charge failed or that was revoked.
#[utoipa::path(post, path = "/subscribe/payments/schedule/{merchant_uid}/retry", operation_id = "retryScheduleByMid",
    params(("merchant_uid" = String, Path, min_length = 1)),
    responses(
        (status = 200, body = PaymentOutcome, description = "the payment the run made (paid or failed, code 0), also when recording it on the schedule failed; code 1 (response null) when it could not run, or when its result could not be read back (the message says how to look it up)"),
        (status = 400, body = ErrorEnvelope, description = "the schedule neither failed nor was revoked"),
        (status = 404, body = ErrorEnvelope, description = "no schedule has this merchant_uid, or its customer has no billing key (deleted): nothing is run"),
        TokenErrors))]
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

#[utoipa::path(get, path = "/subscribe/customers/{customer_uid}/schedules", operation_id = "findSchedulesByCustomerUid",
    params(
        ("customer_uid" = String, Path, min_length = 1),
        CustomerSchedules,
    ),
    responses(
        (status = 200, body = SchedulePageReply),
        (status = 400, body = ErrorEnvelope, description = "from, to, page or limit not an integer; from and to both given but an empty or longer than 3 months range; a schedule-status other than scheduled, executed, revoked or undefined"),
        TokenErrors))]
pub async fn customer_schedules(
    s: State<AppState>,
    m: MerchantCaller,
    p: Path<String>,
    q: RawQuery,
) -> ApiResult<Envelope<SchedulePage>> {
    by_customer(s, m, p, q).await
}
