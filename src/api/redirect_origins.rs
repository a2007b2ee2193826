//! Operator endpoints for a merchant's redirect origins (domain/redirect_origins.rs): where its
//! mobile buyers may be sent when a payment window ends.
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doc::{ErrorEnvelope, RedirectOriginsReply, TokenBodyErrors, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, AdminCaller, Body, Path};
use super::webhooks::parse_id;
use crate::app::AppState;
use crate::service::redirect_origins::RedirectOrigins;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/admin/merchants/{id}/redirect-origins",
        get(current).put(replace),
    )
}

/// The origins a merchant's mobile buyers may be redirected to; an empty list: any (iamport's
/// behaviour, an open redirect on openport's host: docs/security.md).
#[utoipa::path(get, path = "/admin/merchants/{id}/redirect-origins", operation_id = "getRedirectOrigins",
    params(("id" = i64, Path)),
    responses(
        (status = 200, body = RedirectOriginsReply),
        (status = 400, body = ErrorEnvelope, description = "id not an integer"),
        (status = 404, body = ErrorEnvelope, description = "no such merchant"),
        TokenErrors))]
pub async fn current(
    State(s): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
) -> ApiResult<Envelope<RedirectOrigins>> {
    let id = parse_id(&id, "id")?;
    Ok(ok(s.gateway.redirect_origins(id).await?))
}

/// `PUT /admin/merchants/{id}/redirect-origins`: the whole list is replaced.
#[derive(Deserialize, ToSchema)]
pub struct RedirectOriginsRequest {
    /// `scheme://host[:port]` of each origin (http or https; no path, query or fragment; a
    /// trailing `/` is taken), at most 50; stored normalised (host lower-cased, the default port
    /// dropped), each once. `[]` removes the list: any http(s) URL again.
    #[serde(default, deserialize_with = "de::opt_string_list")]
    #[schema(value_type = Vec<String>, max_items = 50)]
    pub origins: Option<Vec<String>>,
}

#[utoipa::path(put, path = "/admin/merchants/{id}/redirect-origins", operation_id = "setRedirectOrigins",
    params(("id" = i64, Path)),
    request_body = RedirectOriginsRequest,
    responses(
        (status = 200, body = RedirectOriginsReply),
        (status = 400, body = ErrorEnvelope, description = "id not an integer, origins missing, more than 50 origins, an origin that is not an http(s) scheme://host[:port], or a body that is not JSON/form with these types"),
        (status = 404, body = ErrorEnvelope, description = "no such merchant"),
        TokenBodyErrors))]
pub async fn replace(
    State(s): State<AppState>,
    _admin: AdminCaller,
    Path(id): Path<String>,
    Body(req): Body<RedirectOriginsRequest>,
) -> ApiResult<Envelope<RedirectOrigins>> {
    let id = parse_id(&id, "id")?;
    // Required: a body that forgot it must not read as "no list", which allows every origin.
    let origins = req.origins.ok_or_else(|| {
        ApiError::bad_request("origins가 필요합니다. (목록을 지우려면 빈 배열 [])")
    })?;
    Ok(ok(s.gateway.set_redirect_origins(id, &origins).await?))
}
