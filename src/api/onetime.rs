//! `POST /subscribe/payments/onetime`: key-in card payment (spec/iamport-v1.md §4.4), and its
//! old alias `POST /subscribe/payments/foreign`.
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::{ErrorEnvelope, PaymentOutcome, TokenBodyErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, Body, MerchantCaller};
use super::order::{order, OrderFields};
use super::payment_json::PaymentAnnotation;
use crate::app::AppState;
use crate::domain::card::{CardAuth, CardDataError, CardNumber, Expiry};
use crate::service::pay::OnetimeCommand;
use crate::service::ServiceError;

/// Card fields are kept as received only until they are parsed; this type is never logged.
#[derive(Deserialize, ToSchema)]
pub struct OnetimeRequest {
    #[serde(flatten)]
    pub order: OrderFields,
    /// A card number that does not parse is refused with code -1 (HTTP 200), not 400.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true)]
    pub card_number: Option<String>,
    /// `YYYY-MM` (or `YYYYMM`, `YY/MM`); a bad or past one is refused with code -1 (HTTP 200).
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true)]
    pub expiry: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub birth: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub pwd_2digit: Option<String>,
    /// Accepted for compatibility and discarded: KCP's key-in API takes no CVC.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub cvc: Option<String>,
    /// Keeps the card as this billing key too; at most 80 characters.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(max_length = 80)]
    pub customer_uid: Option<String>,
    /// `kcp` or `kcp_billing` (in any case; blank or absent: the merchant's default), either also
    /// with `.{site_cd}` of the merchant's own KCP site (which the pattern cannot name); another PG
    /// (`html5_inicis`, …) or KCP site is HTTP 400, nothing written and KCP not called.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(pattern = "^([Kk][Cc][Pp](_[Bb][Ii][Ll][Ll][Ii][Nn][Gg])?)?$")]
    pub pg: Option<String>,
}

/// The `pg` of a REST call that charges, issues a virtual account or issues a billing key: the
/// browser checkout's rule ([`crate::domain::pg`]), refused with HTTP 400 `code -1` as these
/// calls' other parameters are, before anything is written or KCP is called.
pub(crate) fn merchants_kcp_site(pg: Option<&str>, site_cd: &str) -> ApiResult<()> {
    crate::domain::pg::merchants_kcp_site(pg, site_cd)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn required<T>(v: Option<T>, name: &str) -> ApiResult<T> {
    v.ok_or_else(|| ApiError::bad_request(format!("{name} 파라메터가 누락되었습니다.")))
}

pub(crate) fn card_error(e: CardDataError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::OK,
        -1,
        format!("카드정보 인증에 실패하였습니다. {e}"),
    )
}

/// Parses the request into domain types; the raw card fields go no further than this function.
pub(crate) fn parse_onetime(
    req: OnetimeRequest,
    today: chrono::NaiveDate,
) -> ApiResult<OnetimeCommand> {
    let mut order = order(req.order)?;
    let card_number =
        CardNumber::parse(&required(req.card_number, "card_number")?).map_err(card_error)?;
    let expiry = Expiry::parse(&required(req.expiry, "expiry")?, today).map_err(card_error)?;
    let auth =
        CardAuth::parse(req.birth.as_deref(), req.pwd_2digit.as_deref()).map_err(card_error)?;
    // KCP's authenticated key-in needs both (spec §2.7); only billing keys take a birth date alone.
    if auth.as_ref().is_some_and(|a| !a.is_complete()) {
        return Err(card_error(CardDataError::AuthPair));
    }
    order.customer_uid = req
        .customer_uid
        .filter(|c| !c.trim().is_empty())
        .map(|c| super::customers::valid_uid(&c).map(|()| c))
        .transpose()?;
    let _ = req.cvc;
    Ok(OnetimeCommand {
        order,
        card_number,
        expiry,
        auth,
        customer_ip: String::new(),
    })
}

#[utoipa::path(post, path = "/subscribe/payments/onetime", operation_id = "onetime", request_body = OnetimeRequest,
    responses(
        (status = 200, body = PaymentOutcome, description = "paid, or failed (code 0) on a PG decline; code -1 when card data is rejected, code 1 when the merchant_uid is taken, for instalments (card_quota ≥ 2) under 50,000 KRW, or when the outcome is not known yet"),
        (status = 400, body = ErrorEnvelope, description = "a missing or invalid order field (merchant_uid, amount, currency, a nonzero tax_free, vat_amount, card_quota, customer_uid, script in a text field), card_number or expiry missing, a pg of another PG or KCP site, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn onetime(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(req): Body<OnetimeRequest>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    pay(s, m, req).await
}

/// iamport's old foreign-card key-in, which iamport has since dropped from its API and Swagger
/// but the official Python client (`pay_foreign`) and the WooCommerce plugin still call: served
/// as `onetime`'s non-authenticated key-in (KCP `11111000`). A foreign card has no Korean birth
/// date or PIN, so `birth` and `pwd_2digit` are ignored (neither stored nor sent to KCP) rather
/// than turning the charge into an authenticated one or refusing a half pair.
#[utoipa::path(post, path = "/subscribe/payments/foreign", operation_id = "foreign", request_body = OnetimeRequest,
    description = "An alias of `POST /subscribe/payments/onetime` kept for old clients (iamport removed it from its docs): always the non-authenticated key-in; `birth` and `pwd_2digit` are ignored.",
    responses(
        (status = 200, body = PaymentOutcome, description = "as onetime: paid, or failed (code 0) on a PG decline; code -1 when card data is rejected, code 1 when the merchant_uid is taken, for instalments (card_quota ≥ 2) under 50,000 KRW, or when the outcome is not known yet"),
        (status = 400, body = ErrorEnvelope, description = "as onetime: a missing or invalid order field (merchant_uid, amount, currency, a nonzero tax_free, vat_amount, card_quota, customer_uid, script in a text field), card_number or expiry missing, a pg of another PG or KCP site, or a body that is not JSON/form with these types"),
        TokenBodyErrors))]
pub async fn foreign(
    State(s): State<AppState>,
    MerchantCaller(m): MerchantCaller,
    Body(mut req): Body<OnetimeRequest>,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    req.birth = None;
    req.pwd_2digit = None;
    pay(s, m, req).await
}

/// The charge both routes make once their request is what `onetime` takes.
async fn pay(
    s: AppState,
    m: std::sync::Arc<crate::store::entity::merchant::Model>,
    req: OnetimeRequest,
) -> ApiResult<Envelope<PaymentAnnotation>> {
    merchants_kcp_site(req.pg.as_deref(), &m.site_cd)?;
    let cmd = parse_onetime(
        req,
        s.gateway
            .clock
            .now()
            .with_timezone(&crate::domain::KST)
            .date_naive(),
    )?;
    // Run to completion even if the client disconnects: an abandoned future could stop between
    // KCP's approval and its recording.
    let gateway = s.gateway.clone();
    let record = tokio::spawn(async move { gateway.pay_onetime(&m, cmd).await })
        .await
        .map_err(|e| ServiceError::Internal(format!("payment task: {e}")))??;
    Ok(ok(record.into()))
}

/// Today in Korea, which decides whether a card has expired.
pub(crate) fn kst_today(s: &AppState) -> chrono::NaiveDate {
    s.gateway
        .clock
        .now()
        .with_timezone(&crate::domain::KST)
        .date_naive()
}
