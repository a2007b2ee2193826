//! `GET /users/pg`: the PG settings of the calling merchant, in iamport's `PgSettingAnnotation`
//! shape. openport serves one KCP site per merchant (`site_cd`), through each channel it offers:
//! the payment window and REST key-in (`kcp`), billing keys by window and by REST (`kcp_billing`).
use serde::Serialize;
use utoipa::ToSchema;

use super::doc::{PgSettingListReply, TokenErrors};
use super::envelope::{ok, Envelope};
use super::extract::MerchantCaller;
use crate::domain::payment::{PG_KCP, PG_KCP_BILLING};

/// iamport's `PgSettingAnnotation`.
#[derive(Serialize, ToSchema)]
pub struct PgSettingAnnotation {
    /// `kcp` or `kcp_billing`, as payments show `pg_provider`.
    pub pg_provider: &'static str,
    /// The merchant's KCP site code, as payments show `pg_id`.
    pub pg_id: String,
    /// Whether the merchant's payments are sandbox ones (a merchant made in test mode).
    pub sandbox: bool,
    /// `payment`: through the payment window (`IMP.request_pay`); `api_payment`: by REST.
    pub r#type: &'static str,
}

#[utoipa::path(get, path = "/users/pg", operation_id = "getPgSettingList",
    responses((status = 200, body = PgSettingListReply), TokenErrors))]
pub async fn pg_settings(MerchantCaller(m): MerchantCaller) -> Envelope<Vec<PgSettingAnnotation>> {
    let setting = |pg_provider, r#type| PgSettingAnnotation {
        pg_provider,
        pg_id: m.site_cd.clone(),
        sandbox: m.test_mode,
        r#type,
    };
    ok(vec![
        setting(PG_KCP, "payment"),
        setting(PG_KCP, "api_payment"),
        setting(PG_KCP_BILLING, "payment"),
        setting(PG_KCP_BILLING, "api_payment"),
    ])
}
