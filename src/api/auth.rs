//! `POST /users/getToken` (spec/iamport-v1.md §1).
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::doc::{BodyErrors, ErrorEnvelope, TokenReply};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{de, Body};
use crate::app::AppState;

#[derive(Deserialize, ToSchema)]
pub struct GetTokenRequest {
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub imp_key: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string")]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub imp_secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    pub access_token: String,
    pub now: i64,
    pub expired_at: i64,
}

/// Issues a 30-minute token; the same token while it is valid, extended in its last minute.
#[utoipa::path(post, path = "/users/getToken", operation_id = "getToken", request_body = GetTokenRequest,
    responses(
        (status = 200, body = TokenReply),
        (status = 400, body = ErrorEnvelope, description = "imp_key or imp_secret missing or empty, or a body that is not JSON/form"),
        (status = 401, body = ErrorEnvelope, description = "no merchant has this imp_key and imp_secret"),
        BodyErrors))]
pub async fn get_token(
    State(state): State<AppState>,
    Body(req): Body<GetTokenRequest>,
) -> ApiResult<Envelope<AccessToken>> {
    let (Some(key), Some(secret)) = (
        req.imp_key.filter(|s| !s.is_empty()),
        req.imp_secret.filter(|s| !s.is_empty()),
    ) else {
        return Err(ApiError::bad_request(
            "imp_key, imp_secret 파라메터가 누락되었습니다.",
        ));
    };
    let t = state.gateway.get_token(&key, &secret).await?;
    Ok(ok(AccessToken {
        access_token: t.access_token,
        now: t.now,
        expired_at: t.expired_at,
    }))
}
