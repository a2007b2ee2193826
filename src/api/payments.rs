//! Lookups (spec/iamport-v1.md §4.1).
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;

use super::doc::{
    ErrorEnvelope, NonBlank, OperatorMerchant, PageParams, PaymentListReply, PaymentPageReply,
    PaymentReply, PaymentSorting, PaymentStatusParam, TokenErrors,
};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, query_value, query_values, Caller, Path};
use super::payment_json::{PaymentAnnotation, PaymentPage};
use crate::app::AppState;
use crate::domain::payment::StatusFilter;
use crate::service::auth::Principal;
use crate::service::lookup::{Paging, Scope, StatusQuery, NOT_FOUND};
use crate::store::payments::Sorting;

fn sorting(q: Option<&str>) -> ApiResult<Sorting> {
    Sorting::parse(query_value(q, "sorting").as_deref()).ok_or_else(|| {
        ApiError::bad_request(
            "지원되지 않는 정렬 방식입니다. (-started, started, -paid, paid, -updated, updated)",
        )
    })
}

fn status(s: &str) -> ApiResult<StatusFilter> {
    StatusFilter::parse(s).ok_or_else(|| ApiError::bad_request("지원되지 않는 상태값입니다."))
}

pub(super) fn number(q: Option<&str>, name: &str) -> ApiResult<Option<i64>> {
    match query_value(q, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name}는 정수여야 합니다."))),
    }
}

/// Whose payments the caller reads ([`Scope`]): the operator may name a merchant with
/// `merchant_id`, which never widens or narrows a merchant token's reads (iamport has no such
/// parameter). It is checked to be an integer whoever sends it, so a request the OpenAPI document
/// calls malformed is refused for every caller alike.
fn scope(who: &Principal, q: Option<&str>) -> ApiResult<Scope> {
    let named = number(q, "merchant_id")?;
    let named = match who {
        Principal::Admin => named,
        Principal::Merchant(_) => None,
    };
    Ok(Scope::of(who, named))
}

/// `page` (1-based) and `limit` of a paged list, each an integer or HTTP 400. A `page` below 1
/// reads as 1 and a `limit` below 1 as absent (20 a page: clients that always send `limit` send
/// 0 for "not set", and were served one row a page); `limit` is capped at `max`.
pub(super) fn paging(q: Option<&str>, max: u64) -> ApiResult<Paging> {
    let page = number(q, "page")?.map(|n| n.max(1) as u64);
    let limit = number(q, "limit")?.filter(|n| *n >= 1).map(|n| n as u64);
    Ok(Paging::new(page, limit, max))
}

/// `include_sandbox` defaults to true for openport: in test mode every payment is a sandbox one.
/// A merchant's `include_sandbox=false` is read (a value that is no boolean is HTTP 400) and hides
/// nothing: a merchant's payments are all sandbox ones (test mode) or none (live), so the flag
/// could only hide every payment of a merchant being tested, and the Java client sends it on its
/// plain `paymentByImpUid` (review rO, F1). The operator's hides sandbox payments; the flag is
/// read as every boolean of the API is (`de::bool_text`), so `False` or `0` hides them too.
#[utoipa::path(get, path = "/payments/{imp_uid}", operation_id = "getPaymentByImpUid",
    params(
        ("imp_uid" = String, Path, min_length = 1),
        ("include_sandbox" = Option<bool>, Query, description = "With the operator token, false hides sandbox payments; default true. With a merchant's token it hides nothing (its payments are all sandbox ones in test mode, none live). Read as the API's other booleans: `true`/`false` in any case, `1`/`0`, `y`/`n`, `yes`/`no`, `on`/`off`; anything else is HTTP 400"),
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentReply),
        (status = 400, body = ErrorEnvelope, description = "`include_sandbox` not a boolean, or (operator) `merchant_id` not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no such payment (of this merchant)"),
        TokenErrors))]
pub async fn get_one(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(imp_uid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let include = match query_value(q.as_deref(), "include_sandbox") {
        None => true,
        Some(v) => de::bool_text(&v)
            .ok_or_else(|| ApiError::bad_request("include_sandbox는 true 또는 false여야 합니다."))?
            .unwrap_or(true),
    };
    let include = include || matches!(who, Principal::Merchant(_));
    Ok(ok(s
        .gateway
        .payment_by_imp_uid(scope(&who, q.as_deref())?, &imp_uid, include)
        .await
        .map(|r| PaymentAnnotation::shown_to(r, &who))?))
}

/// `GET /payments?imp_uid[]=…&merchant_uid[]=…`: 207 when some are missing, 404 when none found.
/// At least one id in all and at most 100, which OpenAPI cannot say across two parameters.
/// `imp_uid` and `imp_uid[0]` are read as `imp_uid[]` too (and `merchant_uid` likewise).
#[utoipa::path(get, path = "/payments", operation_id = "getPaymentListByImpUid",
    params(
        ("imp_uid[]" = Option<Vec<NonBlank>>, Query, max_items = 100, style = Form, explode = true,
            description = "imp_uids to look up; with `merchant_uid[]`, 1 to 100 ids in all (else HTTP 400)"),
        ("merchant_uid[]" = Option<Vec<NonBlank>>, Query, max_items = 100, style = Form, explode = true,
            description = "merchant_uids to look up (each its newest attempt); with `imp_uid[]`, 1 to 100 ids in all (else HTTP 400)"),
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentListReply, description = "every id found, in the order asked"),
        (status = 207, body = PaymentListReply, description = "some ids found (those are listed), some not"),
        (status = 400, body = ErrorEnvelope, description = "no id given, or more than 100; (operator) `merchant_uid[]` without `merchant_id`, or `merchant_id` not an integer"),
        (status = 404, body = ErrorEnvelope, description = "none of the ids found"),
        TokenErrors))]
pub async fn get_many(
    State(s): State<AppState>,
    Caller(who): Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<Vec<PaymentAnnotation>>> {
    let imp_uids = query_values(q.as_deref(), "imp_uid");
    let merchant_uids = query_values(q.as_deref(), "merchant_uid");
    let asked = imp_uids.len() + merchant_uids.len();
    if asked == 0 {
        return Err(ApiError::bad_request(
            "imp_uid[] 또는 merchant_uid[] 파라메터가 필요합니다.",
        ));
    }
    if asked > 100 {
        return Err(ApiError::bad_request(
            "한 번에 최대 100건까지 조회할 수 있습니다.",
        ));
    }
    let found = s
        .gateway
        .payments_by_ids(scope(&who, q.as_deref())?, &imp_uids, &merchant_uids)
        .await?;
    if found.records.is_empty() {
        return Err(ApiError::not_found(NOT_FOUND));
    }
    let status = if found.unmatched > 0 {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::OK
    };
    Ok(Envelope {
        status,
        response: found
            .records
            .into_iter()
            .map(|r| PaymentAnnotation::shown_to(r, &who))
            .collect(),
    })
}

/// The first payment with this merchant_uid, of any status, by `sorting` (by default `-started`:
/// the newest attempt).
#[utoipa::path(get, path = "/payments/find/{merchant_uid}", operation_id = "getPaymentByMerchantUidAnyStatus",
    params(
        ("merchant_uid" = String, Path, min_length = 1),
        ("sorting" = Option<PaymentSorting>, Query, description = "which payment comes first; default `-started` (the newest attempt)"),
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentReply),
        (status = 400, body = ErrorEnvelope, description = "unknown `sorting`; (operator) no `merchant_id`, or not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no payment has this merchant_uid"),
        TokenErrors))]
pub async fn find(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(uid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    find_with(s, who, uid, String::new(), q).await
}

/// The latest payment with this merchant_uid and status: the newest by `started`, whatever
/// `sorting` says (spec/iamport-v1.md §4.1; iamport's OpenAPI: "해당 status에 해당하는 가장 최신
/// 데이터"). `sorting` is still read, so an unknown value is refused as on every lookup.
#[utoipa::path(get, path = "/payments/find/{merchant_uid}/{payment_status}", operation_id = "getPaymentByMerchantUid",
    params(
        ("merchant_uid" = String, Path, min_length = 1),
        ("payment_status" = PaymentStatusParam, Path),
        ("sorting" = Option<PaymentSorting>, Query, description = "ignored here (the newest by `started` is taken), but an unknown value is HTTP 400; `all`/`undefined` as status reads as no status, and then `sorting` picks the payment as on `/payments/find/{merchant_uid}`"),
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentReply),
        (status = 400, body = ErrorEnvelope, description = "unknown `payment_status` or `sorting`; (operator) no `merchant_id`, or not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no payment has this merchant_uid and status"),
        TokenErrors))]
pub async fn find_status(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path((uid, st)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    find_with(s, who, uid, st, q).await
}

async fn find_with(
    s: AppState,
    who: Principal,
    uid: String,
    st: String,
    q: Option<String>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    let q = q.as_deref();
    let r = s
        .gateway
        .find_payment(scope(&who, q)?, &uid, status(&st)?, sorting(q)?)
        .await?;
    Ok(ok(PaymentAnnotation::shown_to(r, &who)))
}

/// Every payment (attempt) with this merchant_uid, of any status, a page at a time.
#[utoipa::path(get, path = "/payments/findAll/{merchant_uid}", operation_id = "getAllPaymentsByMerchantUidAnyStatus",
    params(
        ("merchant_uid" = String, Path, min_length = 1),
        ("sorting" = Option<PaymentSorting>, Query),
        PageParams,
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentPageReply),
        (status = 400, body = ErrorEnvelope, description = "unknown `sorting`, or `page`/`limit` not an integer; (operator) no `merchant_id`, or not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no payment has this merchant_uid"),
        TokenErrors))]
pub async fn find_all(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(uid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentPage>> {
    find_all_with(s, who, uid, String::new(), q).await
}

/// Every payment (attempt) with this merchant_uid and status, a page at a time.
#[utoipa::path(get, path = "/payments/findAll/{merchant_uid}/{payment_status}", operation_id = "getAllPaymentsByMerchantUid",
    params(
        ("merchant_uid" = String, Path, min_length = 1),
        ("payment_status" = PaymentStatusParam, Path),
        ("sorting" = Option<PaymentSorting>, Query),
        PageParams,
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentPageReply),
        (status = 400, body = ErrorEnvelope, description = "unknown `payment_status` or `sorting`, or `page`/`limit` not an integer; (operator) no `merchant_id`, or not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no payment has this merchant_uid and status"),
        TokenErrors))]
pub async fn find_all_status(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path((uid, st)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentPage>> {
    find_all_with(s, who, uid, st, q).await
}

async fn find_all_with(
    s: AppState,
    who: Principal,
    uid: String,
    st: String,
    q: Option<String>,
) -> ApiResult<Envelope<PaymentPage>> {
    let q = q.as_deref();
    let page = s
        .gateway
        .find_all_payments(
            scope(&who, q)?,
            &uid,
            status(&st)?,
            sorting(q)?,
            paging(q, 1000)?,
        )
        .await?;
    Ok(ok(PaymentPage::shown_to(page, &who)))
}

/// Payments of a status whose time of that status (`all`: of their current status) lies in
/// `from` ≤ t ≤ `to`, a page at a time.
#[utoipa::path(get, path = "/payments/status/{payment_status}", operation_id = "getPaymentsByStatus",
    params(
        ("payment_status" = PaymentStatusParam, Path),
        ("from" = Option<i64>, Query, description = "Unix seconds; default (or ≤ 0) 90 days before `to` or now, whichever is earlier; past 9999-12-31 23:59:59 UTC read as then"),
        ("to" = Option<i64>, Query, description = "Unix seconds; default (or ≤ 0) now; past 9999-12-31 23:59:59 UTC (253402300799) read as then"),
        ("sorting" = Option<PaymentSorting>, Query),
        PageParams,
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentPageReply),
        (status = 400, body = ErrorEnvelope, description = "unknown `payment_status` or `sorting`, `from`/`to`/`page`/`limit` (or the operator's `merchant_id`) not an integer, or a `page` past the data (데이터 범위를 넘어선 page)"),
        TokenErrors))]
pub async fn by_status(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(st): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentPage>> {
    by_status_with(s, who, st, q).await
}

/// `/payments/status` and `/payments/status/` (the trailing slash is dropped before routing): an
/// empty status segment means no filter (spec/iamport-v1.md §4.1).
#[utoipa::path(get, path = "/payments/status", operation_id = "getPaymentsOfAnyStatus",
    params(
        ("from" = Option<i64>, Query, description = "Unix seconds; default (or ≤ 0) 90 days before `to` or now, whichever is earlier; past 9999-12-31 23:59:59 UTC read as then"),
        ("to" = Option<i64>, Query, description = "Unix seconds; default (or ≤ 0) now; past 9999-12-31 23:59:59 UTC (253402300799) read as then"),
        ("sorting" = Option<PaymentSorting>, Query),
        PageParams,
        OperatorMerchant,
    ),
    responses(
        (status = 200, body = PaymentPageReply),
        (status = 400, body = ErrorEnvelope, description = "unknown `sorting`, or `from`/`to`/`page`/`limit` (or the operator's `merchant_id`) not an integer"),
        TokenErrors))]
pub async fn by_any_status(
    State(s): State<AppState>,
    Caller(who): Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentPage>> {
    by_status_with(s, who, String::new(), q).await
}

async fn by_status_with(
    s: AppState,
    who: Principal,
    st: String,
    q: Option<String>,
) -> ApiResult<Envelope<PaymentPage>> {
    let q = q.as_deref();
    let query = StatusQuery {
        filter: status(&st)?,
        from: number(q, "from")?,
        to: number(q, "to")?,
        sorting: sorting(q)?,
        paging: paging(q, 1000)?,
    };
    let page = s.gateway.payments_by_status(scope(&who, q)?, query).await?;
    Ok(ok(PaymentPage::shown_to(page, &who)))
}
