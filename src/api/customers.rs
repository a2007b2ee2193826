//! Billing keys: `/subscribe/customers…` (spec/iamport-v1.md §4.5).
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{
    CustomerListReply, CustomerOutcome, CustomerRegistration, ErrorEnvelope, NonBlank,
    PaymentPageReply, TokenBodyErrors, TokenErrors,
};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, query_values, Body, MerchantCaller, Path};
use super::onetime::{card_error, kst_today, merchants_kcp_site};
use super::payment_json::PaymentPage;
use crate::app::AppState;
use crate::domain::card::{CardAuth, CardNumber, Expiry};
use crate::service::billing::CustomerCommand;
use crate::service::lookup::Paging;
use crate::service::ServiceError;
use crate::store::entity::billing_key;

/// Card data and the customer's details. A card that does not parse (number, `expiry`,
/// `birth`, `pwd_2digit`) is refused with code -1 (HTTP 200), not 400; `customer_name` with script
/// in it is refused with HTTP 400.
#[derive(Deserialize, ToSchema, Default)]
pub struct CustomerRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    pub card_number: Option<String>,
    /// `YYYY-MM` (or `YYYYMM`, `YY/MM`).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub expiry: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub birth: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub pwd_2digit: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub cvc: Option<String>,
    /// `kcp` or `kcp_billing` (in any case; blank or absent: the merchant's default), either also
    /// with `.{site_cd}` of the merchant's own KCP site (which the pattern cannot name); another PG
    /// (`html5_inicis`, …) or KCP site is HTTP 400, nothing written and KCP not called (read with the card data only:
    /// beside a schedule's registered key it is not read, as the card is not).
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(pattern = "^([Kk][Cc][Pp](_[Bb][Ii][Ll][Ll][Ii][Nn][Gg])?)?$")]
    pub pg: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_tel: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_email: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_addr: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_postcode: Option<String>,
}

/// iamport's CustomerAnnotation. Never the batch key.
#[derive(Serialize, ToSchema)]
pub struct CustomerAnnotation {
    pub customer_uid: String,
    pub pg_provider: String,
    pub pg_id: String,
    pub card_name: Option<String>,
    pub card_code: Option<String>,
    pub card_number: Option<String>,
    pub card_type: Option<i32>,
    #[serde(flatten)]
    pub card_issuer: super::payment_json::CardIssuerAnnotation,
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub customer_tel: Option<String>,
    pub customer_email: Option<String>,
    pub customer_addr: Option<String>,
    pub customer_postcode: Option<String>,
    pub inserted: i64,
    pub updated: i64,
    pub sandbox: bool,
}

impl From<billing_key::Model> for CustomerAnnotation {
    fn from(k: billing_key::Model) -> Self {
        Self {
            customer_uid: k.customer_uid,
            pg_provider: crate::domain::payment::PG_KCP_BILLING.into(),
            pg_id: k.pg_id,
            card_name: k.card_name,
            card_code: k.card_code,
            card_number: k.card_number,
            card_type: k.card_type,
            card_issuer: Default::default(),
            customer_id: k.customer_id,
            customer_name: k.customer_name,
            customer_tel: k.customer_tel,
            customer_email: k.customer_email,
            customer_addr: k.customer_addr,
            customer_postcode: k.customer_postcode,
            inserted: k.inserted_at,
            updated: k.updated_at,
            sandbox: k.sandbox,
        }
    }
}

/// Card fields → a customer command; None when no card data was given at all. A blank
/// `card_number` or `expiry` (`""`, a form's `card_number=`) counts as absent, as a blank `birth`
/// or `pwd_2digit` does (`CardAuth::parse`): it is an empty field of a form relay or an unset
/// variable, not a card that failed its check, so a registration without them is told they are
/// missing (HTTP 400), and a schedule needing none is not refused for them.
pub(crate) fn parse_customer(
    uid: &str,
    req: CustomerRequest,
    today: chrono::NaiveDate,
    site_cd: &str,
) -> ApiResult<Option<CustomerCommand>> {
    let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let (number, expiry) = match (given(req.card_number), given(req.expiry)) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "card_number 파라메터가 누락되었습니다.",
            ))
        }
        (Some(_), None) => return Err(ApiError::bad_request("expiry 파라메터가 누락되었습니다.")),
        (Some(number), Some(expiry)) => (number, expiry),
    };
    // The key is issued on the merchant's KCP site: a `pg` naming another is refused, not ignored.
    merchants_kcp_site(req.pg.as_deref(), site_cd)?;
    let _ = req.cvc;
    Ok(Some(CustomerCommand {
        customer_uid: uid.to_string(),
        card_number: CardNumber::parse(&number).map_err(card_error)?,
        expiry: Expiry::parse(&expiry, today).map_err(card_error)?,
        auth: CardAuth::parse(req.birth.as_deref(), req.pwd_2digit.as_deref())
            .map_err(card_error)?,
        customer_id: req.customer_id,
        customer_name: req.customer_name,
        customer_tel: req.customer_tel,
        customer_email: req.customer_email,
        customer_addr: req.customer_addr,
        customer_postcode: req.customer_postcode,
    }))
}

pub(super) fn valid_uid(uid: &str) -> ApiResult<()> {
    crate::domain::order::customer_uid(uid.to_owned())
        .map(drop)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

#[utoipa::path(post, path = "/subscribe/customers/{customer_uid}", operation_id = "customer_save",
    params(("customer_uid" = String, Path, min_length = 1, max_length = 80, pattern = r"\S")),
    request_body = CustomerRegistration,
    responses(
        (status = 200, body = CustomerOutcome, description = "the billing key; code -1 (response null) when the card data or KCP refuses the card, code 1 when KCP's answer is unknown"),
        (status = 400, body = ErrorEnvelope, description = "customer_uid blank or over 80 characters, card_number or expiry missing, a pg of another PG or KCP site, script in customer_name, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn register(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
    Body(req): Body<CustomerRequest>,
) -> ApiResult<Envelope<CustomerAnnotation>> {
    valid_uid(&uid)?;
    let cmd = parse_customer(&uid, req, kst_today(&s), &m.site_cd)?
        .ok_or_else(|| ApiError::bad_request("card_number, expiry 파라메터가 누락되었습니다."))?;
    let gateway = s.gateway.clone();
    let key = tokio::spawn(async move { gateway.register_customer(&m, cmd).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("billing key task: {e}")))??;
    Ok(ok(key.into()))
}

#[utoipa::path(get, path = "/subscribe/customers/{customer_uid}", operation_id = "customer_view",
    params(("customer_uid" = String, Path, min_length = 1)),
    responses(
        (status = 200, body = CustomerOutcome, description = "the billing key; code 1 (response null) when none is registered under this customer_uid, as iamport answers"),
        TokenErrors))]
pub async fn get(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
) -> ApiResult<Envelope<CustomerAnnotation>> {
    Ok(ok(s.gateway.customer(&m, &uid).await?.into()))
}

#[utoipa::path(delete, path = "/subscribe/customers/{customer_uid}", operation_id = "customer_delete",
    params(("customer_uid" = String, Path, min_length = 1)),
    responses(
        (status = 200, body = CustomerOutcome, description = "the deleted billing key (its pending schedules are revoked; its deletion at KCP is retried by the resolver if KCP refuses or does not answer now); code 1 (response null) when none is registered under this customer_uid"),
        TokenErrors))]
pub async fn delete(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
) -> ApiResult<Envelope<CustomerAnnotation>> {
    // Retires the key and revokes its schedules, then deletes it at KCP: run to the end whether
    // or not the client waits (as every call with an effect at KCP).
    let gateway = s.gateway.clone();
    let key = tokio::spawn(async move { gateway.delete_customer(&m, &uid).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("billing key task: {e}")))??;
    Ok(ok(key.into()))
}

/// `customer_uid` and `customer_uid[0]` are read as `customer_uid[]` too.
#[utoipa::path(get, path = "/subscribe/customers", operation_id = "customer_view_multiple",
    params(("customer_uid[]" = Vec<NonBlank>, Query, min_items = 1, max_items = 100, style = Form, explode = true)),
    responses(
        (status = 200, body = CustomerListReply, description = "every billing key asked, in the order asked"),
        (status = 207, body = CustomerListReply, description = "some found (those are listed), some not"),
        (status = 400, body = ErrorEnvelope, description = "no customer_uid[], or more than 100"),
        (status = 404, body = ErrorEnvelope, description = "none found"),
        TokenErrors))]
pub async fn get_many(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<Vec<CustomerAnnotation>>> {
    let uids = query_values(q.as_deref(), "customer_uid");
    if uids.is_empty() || uids.len() > 100 {
        return Err(ApiError::bad_request(
            "customer_uid[] 파라메터는 1~100개여야 합니다.",
        ));
    }
    let found = s.gateway.customers(&m, &uids).await?;
    if found.is_empty() {
        return Err(ApiError::not_found(
            "요청하신 customer_uid로 등록된 정보를 찾을 수 없습니다.",
        ));
    }
    let status = if found.len() < uids.len() {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::OK
    };
    Ok(Envelope {
        status,
        response: found.into_iter().map(Into::into).collect(),
    })
}

/// Payments made with a billing key, newest first, 20 a page.
#[utoipa::path(get, path = "/subscribe/customers/{customer_uid}/payments", operation_id = "customer_payments",
    params(
        ("customer_uid" = String, Path, min_length = 1),
        ("page" = Option<i64>, Query, description = "1-based; default 1, and below 1 reads as 1"),
    ),
    responses((status = 200, body = PaymentPageReply),
        (status = 400, body = ErrorEnvelope, description = "`page` not an integer"),
        (status = 404, body = ErrorEnvelope, description = "유효하지 않은 customer_uid: no billing key was ever registered under it (a deleted customer still lists its payments)"),
        TokenErrors))]
pub async fn payments(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Path(uid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<PaymentPage>> {
    // As every paged list: an integer or HTTP 400 (it read anything else as page 1, so a
    // client's `page=2abc` silently showed the first page again).
    let page = super::payments::number(q.as_deref(), "page")?.map(|n| n.max(1) as u64);
    let page = s
        .gateway
        .customer_payments(&m, &uid, Paging::new(page, Some(20), 100))
        .await?;
    Ok(ok(page.into()))
}
