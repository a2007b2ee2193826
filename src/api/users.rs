//! `GET /users/pg`: the PG settings of the calling merchant, in iamport's `PgSettingAnnotation`
//! shape. openport serves one KCP site per merchant (`site_cd`), through each channel it offers:
//! the payment window and REST key-in (`kcp`), billing keys by window and by REST (`kcp_billing`).
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::doc::{PgSettingListReply, TokenErrors};
use super::envelope::{ok, Envelope};
use super::extract::MerchantCaller;
use crate::app::AppState;
use crate::domain::payment::{PG_KCP, PG_KCP_BILLING};
use crate::service::merchants::runs_in_mode;

/// iamport's `PgSettingAnnotation`.
#[derive(Serialize, ToSchema)]
pub struct PgSettingAnnotation {
    /// `kcp` or `kcp_billing`, as payments show `pg_provider`.
    pub pg_provider: &'static str,
    /// The merchant's KCP site code, as payments show `pg_id`.
    pub pg_id: String,
    /// Whether the merchant's payments are sandbox ones, as each payment's `sandbox` records it.
    pub sandbox: bool,
    /// `payment`: through the payment window (`IMP.request_pay`); `api_payment`: by REST.
    pub r#type: &'static str,
}

#[utoipa::path(get, path = "/users/pg", operation_id = "getPgSettingList",
    responses((status = 200, body = PgSettingListReply), TokenErrors))]
pub async fn pg_settings(
    State(state): State<AppState>,
    MerchantCaller(m): MerchantCaller,
) -> Envelope<Vec<PgSettingAnnotation>> {
    // What the merchant's payments record, not its row's flag: a payment's `sandbox` is the mode
    // of the instance that took it (the instance decides which KCP approves), and an instance
    // takes payments only of merchants of its own mode (`runs_in_mode`). A merchant with the demo
    // imp_key whose row says test_mode=false is one a test-mode instance takes, as sandbox ones;
    // a live merchant answered by a test-mode instance (lookups only) has its payments taken by
    // live instances, as real ones.
    let test_mode = state.gateway.settings.test_mode;
    let sandbox = test_mode && runs_in_mode(test_mode, &m);
    let setting = |pg_provider, r#type| PgSettingAnnotation {
        pg_provider,
        pg_id: m.site_cd.clone(),
        sandbox,
        r#type,
    };
    ok(vec![
        setting(PG_KCP, "payment"),
        setting(PG_KCP, "api_payment"),
        setting(PG_KCP_BILLING, "payment"),
        setting(PG_KCP_BILLING, "api_payment"),
    ])
}
