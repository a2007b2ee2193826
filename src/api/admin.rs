//! Operator endpoints (admin token). The iamport lookups also accept the admin token and then
//! search every merchant's payments.
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::doc::{MerchantListReply, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::ApiResult;
use super::extract::AdminCaller;
use crate::app::AppState;

/// A merchant as the operator sees it: never a secret or key.
#[derive(Serialize, ToSchema)]
pub struct MerchantSummary {
    pub id: i64,
    pub imp_code: String,
    pub name: String,
    pub imp_key: String,
    pub site_cd: String,
    pub test_mode: bool,
    pub created_at: i64,
    /// The merchant's own KCP origin; null = the instance's.
    pub kcp_api_base: Option<String>,
}

#[utoipa::path(get, path = "/admin/merchants", operation_id = "listMerchants",
    responses((status = 200, body = MerchantListReply), TokenErrors))]
pub async fn merchants(
    State(s): State<AppState>,
    _admin: AdminCaller,
) -> ApiResult<Envelope<Vec<MerchantSummary>>> {
    let list = s.gateway.list_merchants().await?;
    Ok(ok(list
        .into_iter()
        .map(|m| MerchantSummary {
            id: m.id,
            imp_code: m.imp_code,
            name: m.name,
            imp_key: m.imp_key,
            site_cd: m.site_cd,
            test_mode: m.test_mode,
            created_at: m.created_at,
            kcp_api_base: m.kcp_api_base,
        })
        .collect()))
}
