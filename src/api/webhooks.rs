//! Operator endpoints for webhook deliveries (docs/webhooks.md).
use axum::body::Bytes;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::routing::{get, post};
use axum::Router;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::doc::{
    ErrorEnvelope, TokenBodyErrors, TokenErrors, WebhookDeliveryListReply, WebhookDeliveryOutcome,
    WebhookSettingsReply,
};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, query_value, AdminCaller, Body, Path};
use crate::app::AppState;
use crate::service::webhooks::{shown_url, DeliveryRecord, WebhookContentType, WebhookSettings};
use crate::store::webhooks::DeliveryQuery;

/// The largest page of the delivery history, and its default `limit`.
const MAX_LIST: u64 = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/webhooks", get(list))
        .route("/admin/webhooks/{id}/resend", post(resend))
        .route(
            "/admin/merchants/{id}/webhook",
            get(settings).put(configure),
        )
}

/// One HTTP attempt of a delivery.
#[derive(Serialize, ToSchema)]
pub struct WebhookAttemptView {
    /// Query values and any password shown as `***`.
    pub url: String,
    pub attempted_at: i64,
    /// None when no HTTP answer came.
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// At most 200 characters of the receiver's answer.
    pub response_excerpt: Option<String>,
    pub duration_ms: i64,
}

/// A webhook delivery with its attempts, oldest first.
#[derive(Serialize, ToSchema)]
pub struct WebhookDeliveryView {
    pub id: i64,
    /// Standard Webhooks `webhook-id` of this delivery.
    pub message_id: String,
    pub merchant_id: i64,
    pub imp_uid: String,
    pub merchant_uid: String,
    pub status: String,
    pub cancellation_id: Option<String>,
    /// The target, query values and any password shown as `***` (they may carry the merchant's
    /// own token); the POST goes to the whole URL.
    pub url: String,
    pub content_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempt_count: i32,
    pub next_attempt_at: i64,
    pub last_http_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub attempts: Vec<WebhookAttemptView>,
}

impl From<DeliveryRecord> for WebhookDeliveryView {
    fn from(r: DeliveryRecord) -> Self {
        let d = r.delivery;
        Self {
            message_id: d.message_id,
            id: d.id,
            merchant_id: d.merchant_id,
            imp_uid: d.imp_uid,
            merchant_uid: d.merchant_uid,
            status: d.status,
            cancellation_id: d.cancellation_id,
            url: shown_url(&d.url),
            content_type: d.content_type,
            state: d.state,
            attempt_count: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_http_status: d.last_http_status,
            last_error: d.last_error,
            created_at: d.created_at,
            updated_at: d.updated_at,
            attempts: r
                .attempts
                .into_iter()
                .map(|a| WebhookAttemptView {
                    url: shown_url(&a.url),
                    attempted_at: a.attempted_at,
                    http_status: a.http_status,
                    error: a.error,
                    response_excerpt: a.response_excerpt,
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

/// An integer path or query value (`id`, `merchant_id`), or HTTP 400 naming it; also the
/// merchant id of the other `/admin/merchants/{id}/…` resources.
pub(super) fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("{what}는 정수여야 합니다.")))
}

/// A positive integer query value (`before_id`, `limit`) up to `max`, or HTTP 400 naming it.
fn positive(q: Option<&str>, name: &str, max: i64) -> ApiResult<Option<i64>> {
    let Some(raw) = query_value(q, name) else {
        return Ok(None);
    };
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ if max == i64::MAX => Err(ApiError::bad_request(format!(
            "{name}는 1 이상의 정수여야 합니다."
        ))),
        _ => Err(ApiError::bad_request(format!(
            "{name}는 1부터 {max}까지의 정수여야 합니다."
        ))),
    }
}

/// Delivery history, newest first, `limit` a page (at most and by default 100), optionally
/// narrowed by `imp_uid`, `merchant_id` and `state` (`pending` | `delivered` | `failed`). The
/// next page is `before_id=<the last id of this one>`; a page shorter than `limit` is the last.
/// A cursor, not an offset: after a receiver outage the operator pages back through every failed
/// delivery to resend it, while new ones keep arriving at the front (review rI F5: past the
/// newest 100 nothing could be listed).
#[utoipa::path(get, path = "/admin/webhooks", operation_id = "listWebhookDeliveries",
    params(
        ("imp_uid" = Option<String>, Query),
        ("merchant_id" = Option<i64>, Query),
        ("state" = Option<String>, Query, pattern = "^(pending|delivered|failed)?$",
            description = "empty: no filter, as for any empty query value"),
        ("before_id" = Option<i64>, Query, minimum = 1,
            description = "only deliveries with a lower id: the next page is `before_id=<the last id of the page before>`; a page shorter than `limit` is the last"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100,
            description = "deliveries a page; default 100"),
    ),
    responses(
        (status = 200, body = WebhookDeliveryListReply),
        (status = 400, body = ErrorEnvelope, description = "merchant_id not an integer, an unknown state, before_id not a positive integer, or limit not an integer from 1 to 100"),
        TokenErrors))]
pub async fn list(
    State(s): State<AppState>,
    _admin: AdminCaller,
    RawQuery(q): RawQuery,
) -> ApiResult<Envelope<Vec<WebhookDeliveryView>>> {
    let q = q.as_deref();
    let state = query_value(q, "state");
    if let Some(st) = &state {
        if !matches!(st.as_str(), "pending" | "delivered" | "failed") {
            return Err(ApiError::bad_request(
                "state는 pending, delivered, failed 중 하나입니다.",
            ));
        }
    }
    let merchant_id = query_value(q, "merchant_id")
        .map(|m| parse_id(&m, "merchant_id"))
        .transpose()?;
    let before_id = positive(q, "before_id", i64::MAX)?;
    let limit = positive(q, "limit", MAX_LIST as i64)?.map_or(MAX_LIST, |n| n as u64);
    let list = s
        .gateway
        .webhook_history(&DeliveryQuery {
            imp_uid: query_value(q, "imp_uid"),
            merchant_id,
            state,
            before_id,
            limit,
        })
        .await?;
    Ok(ok(list.into_iter().map(Into::into).collect()))
}

/// Re-queues a delivery: due now, with a fresh retry schedule.
#[utoipa::path(post, path = "/admin/webhooks/{id}/resend", operation_id = "resendWebhook",
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = WebhookDeliveryOutcome),
        (status = 400, body = ErrorEnvelope, description = "id not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no such delivery"),
        TokenErrors))]
pub async fn resend(
    State(s): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Envelope<WebhookDeliveryView>> {
    let id = parse_id(&id, "id")?;
    Ok(ok(s.gateway.resend_webhook(id).await?.into()))
}

/// A merchant's webhook settings, as the PUT that replaces them answers: whether webhooks are
/// signed, never the secret. An operator reads them before a PUT, which replaces the whole
/// setting (a PUT without the secret turns signatures off).
#[utoipa::path(get, path = "/admin/merchants/{id}/webhook", operation_id = "getWebhookSettings",
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = WebhookSettingsReply),
        (status = 400, body = ErrorEnvelope, description = "id not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no such merchant"),
        TokenErrors))]
pub async fn settings(
    State(s): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Envelope<WebhookSettings>> {
    let id = parse_id(&id, "id")?;
    Ok(ok(s.gateway.webhook_settings(id).await?))
}

/// `PUT /admin/merchants/{id}/webhook`: the whole setting is replaced; an absent or empty
/// `secret` turns signatures off. No other field is taken ([`SettingsBody`]).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettingsRequest {
    /// Default target when a payment has no notice_url; null or empty = none. Required, as
    /// `origins` of the redirect-origins PUT is: a body that forgot it (`{}`, a misspelt key)
    /// must not read as "no URL", which silently stops the merchant's webhooks.
    #[serde(default, deserialize_with = "given")]
    #[schema(schema_with = super::doc::webhook_url, required = true)]
    pub url: Option<Option<String>>,
    /// `json` (default) or `form`.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(pattern = "^(json|form)?$")]
    pub content_type: Option<String>,
    /// Standard Webhooks secret: a key of 24 to 64 bytes (the standard's bounds) in base64, with
    /// or without the `whsec_` prefix, as the standard's libraries take it. Never returned.
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = Option<String>, pattern = "^(|(whsec_)?(([A-Za-z0-9+/]{4}){8,20}([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?|([A-Za-z0-9+/]{4}){21}([A-Za-z0-9+/][AQgw]==)?))$")]
    pub secret: Option<String>,
}

/// A field that is given, null included (`Some(None)`); absent it is None (`serde(default)`).
fn given<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    de::opt_string(d).map(Some)
}

/// The fields of [`WebhookSettingsRequest`].
const SETTINGS_FIELDS: [&str; 3] = ["url", "content_type", "secret"];

/// The most characters of an unknown field's name a refusal quotes.
const FIELD_NAME_SHOWN: usize = 40;

/// [`WebhookSettingsRequest`] from a JSON or form body ([`Body`]) with no field but its own (review
/// rR F1): a misspelt one (`webhook_url`, `URL`) used to be ignored, and the PUT, which replaces
/// the whole setting, read as "no URL, unsigned", wiping the URL and the secret with code 0. An
/// unknown field is refused naming it; serde's own refusal (`deny_unknown_fields`, kept for the
/// document's `additionalProperties: false`) would call that field's value malformed. The body is
/// read as [`Body`] reads it twice: its field names, then the request.
pub struct SettingsBody(pub WebhookSettingsRequest);

impl<S: Send + Sync> FromRequest<S> for SettingsBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("요청 본문을 읽을 수 없습니다."))?;
        let again = || {
            let mut req = Request::new(axum::body::Body::from(bytes.clone()));
            if let Some(content_type) = &content_type {
                req.headers_mut().insert(CONTENT_TYPE, content_type.clone());
            }
            req
        };
        let Body(fields) = Body::<Map<String, Value>>::from_request(again(), state).await?;
        if let Some(name) = fields
            .keys()
            .find(|name| !SETTINGS_FIELDS.contains(&name.as_str()))
        {
            let mut shown: String = name.chars().take(FIELD_NAME_SHOWN).collect();
            if shown.len() < name.len() {
                shown.push('…');
            }
            return Err(ApiError::bad_request(format!(
                "알 수 없는 필드입니다: `{shown}` (받는 필드: url, content_type, secret)"
            )));
        }
        let Body(settings) = Body::from_request(again(), state).await?;
        Ok(SettingsBody(settings))
    }
}

#[utoipa::path(put, path = "/admin/merchants/{id}/webhook", operation_id = "configureWebhook",
    params(("id" = i64, Path)),
    request_body = WebhookSettingsRequest,
    responses(
        (status = 200, body = WebhookSettingsReply),
        (status = 400, body = ErrorEnvelope, description = "id not an integer, url missing (null or empty clears it), a field other than url, content_type and secret, an unknown content_type, a url that is not an absolute http(s) URL, a secret that is not a base64 key of 24 to 64 bytes, or a body that is not JSON/form with these types"),
        (status = 404, body = ErrorEnvelope, description = "no such merchant"),
        TokenBodyErrors))]
pub async fn configure(
    State(s): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
    SettingsBody(req): SettingsBody,
) -> ApiResult<Envelope<WebhookSettings>> {
    let id = parse_id(&id, "id")?;
    // Required: a body that forgot it must not read as "no URL" (and, the whole setting being
    // replaced, no secret either).
    let url = req.url.ok_or_else(|| {
        ApiError::bad_request("url이 필요합니다. (기본 URL을 지우려면 \"url\": null 또는 빈 값)")
    })?;
    let content_type = match req.content_type.as_deref().map(str::trim) {
        None | Some("") | Some("json") => WebhookContentType::Json,
        Some("form") => WebhookContentType::Form,
        Some(_) => {
            return Err(ApiError::bad_request(
                "content_type은 json 또는 form입니다.",
            ))
        }
    };
    let settings = s
        .gateway
        .set_webhook_settings(id, url, content_type, req.secret.map(SecretString::from))
        .await?;
    Ok(ok(settings))
}
