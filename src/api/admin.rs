//! Operator endpoints (admin token). The iamport lookups also accept the admin token and then
//! search every merchant's payments.
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use axum::http::StatusCode;

use super::doc::{ErrorEnvelope, InstanceStatusReply, MerchantListReply, TokenErrors};
use super::envelope::{ok, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::AdminCaller;
use crate::app::AppState;
use crate::service::schema_check::OUTDATED;
use crate::service::status::{ClockVerdict, InstanceStatus};

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
    /// The KCP group its billing keys are issued in (`openport merchant set-group-id`); null
    /// = none yet, which refuses billing keys outside test mode.
    pub kcp_group_id: Option<String>,
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
            kcp_group_id: m.kcp_group_id,
        })
        .collect()))
}

/// What waits for an operator on this instance and its database, for alerting
/// (docs/operations.md "Monitoring"). Counts are read when asked.
#[derive(Serialize, ToSchema)]
pub struct InstanceStatusView {
    pub mode: InstanceMode,
    /// Attempts closed as conflicts and not reconciled yet (`openport attempt list --conflicts`):
    /// KCP holds something the record does not; alert on any.
    pub conflicts: u64,
    /// Open KCP attempts, every merchant's (`openport attempt list`).
    pub open_attempts: u64,
    /// Seconds since the oldest open attempt was made; null when none is open. One older than a
    /// few settle delays is an outcome inquiry cannot settle.
    #[schema(required = true)]
    pub oldest_open_attempt_age_secs: Option<i64>,
    /// Billing-key issuances whose outcome is not known, every merchant's (`openport attempt list
    /// --issuances`): KCP has no inquiry for an issuance, so none settles by itself; each waits
    /// for an operator to look its order number up in KCP's admin.
    pub open_key_issuances: u64,
    /// Seconds since the oldest open issuance was recorded; null when none is. One older than a
    /// few minutes is an answer lost or a request that died: alert on it.
    #[schema(required = true)]
    pub oldest_open_key_issuance_age_secs: Option<i64>,
    /// Webhook deliveries waiting for their next try, every merchant's.
    pub webhooks_pending: u64,
    /// Webhook deliveries given up after their last retry, kept for `webhooks.retention_days`:
    /// alert when it grows.
    pub webhooks_failed: u64,
    /// KCP notifications no longer asked about and still undecided, every merchant's: a deposit
    /// KCP's inquiry did not confirm in the re-verify sweep's three days, or one naming an account
    /// KCP holds and openport does not. Each waits for an operator to compare it with KCP's admin
    /// (docs/operations.md "KCP notifications"); alert on any.
    pub notifications_for_operator: u64,
    /// Schedules due now of the merchants this instance serves (its mode's).
    pub schedules_due: u64,
    /// This instance was started with its scheduler paused (`OPENPORT_SCHEDULER__PAUSED`): it
    /// charges no schedule.
    pub scheduler_paused: bool,
    pub clock: InstanceClock,
}

/// The instance's mode (`test_mode`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    Test,
    Live,
}

/// This instance's clock against the database server's, as last compared: `not_shared` (SQLite),
/// `in_line`, `skewed` (it opens no KCP attempt until it is back in line), or `not_checked` (the
/// check is off: `resolver.max_clock_skew_secs = 0`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceClock {
    NotShared,
    InLine,
    Skewed,
    NotChecked,
}

impl From<InstanceStatus> for InstanceStatusView {
    fn from(s: InstanceStatus) -> Self {
        Self {
            mode: if s.test_mode {
                InstanceMode::Test
            } else {
                InstanceMode::Live
            },
            conflicts: s.conflicts,
            open_attempts: s.open_attempts,
            oldest_open_attempt_age_secs: s.oldest_open_attempt_secs,
            open_key_issuances: s.open_key_issuances,
            oldest_open_key_issuance_age_secs: s.oldest_open_key_issuance_secs,
            webhooks_pending: s.webhooks_pending,
            webhooks_failed: s.webhooks_failed,
            notifications_for_operator: s.notifications_for_operator,
            schedules_due: s.schedules_due,
            scheduler_paused: s.scheduler_paused,
            clock: match s.clock {
                ClockVerdict::NotShared => InstanceClock::NotShared,
                ClockVerdict::InLine => InstanceClock::InLine,
                ClockVerdict::Skewed => InstanceClock::Skewed,
                ClockVerdict::NotChecked => InstanceClock::NotChecked,
            },
        }
    }
}

/// Once a newer openport migrated the database (service/schema_check.rs): HTTP 503, code -1,
/// naming the migrations this version does not know, in place of counts read from a schema it
/// does not know (an alert on the status fires, and the message says what to do).
#[utoipa::path(get, path = "/admin/status", operation_id = "instanceStatus",
    description = "HTTP 503 (`ErrorEnvelope`, code -1) once a newer openport migrated the \
        database while this instance served it: the message names the migrations this version \
        does not know; the instance takes no more work and must be stopped.",
    responses((status = 200, body = InstanceStatusReply), TokenErrors,
        (status = 503, description = "A newer openport migrated the database.",
            body = ErrorEnvelope)))]
pub async fn status(
    State(s): State<AppState>,
    _admin: AdminCaller,
) -> ApiResult<Envelope<InstanceStatusView>> {
    if let Some(names) = s.gateway.newer_schema() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            -1,
            format!(
                "{OUTDATED} (이 버전이 모르는 마이그레이션: {names}; docs/operations.md \"Upgrades\")"
            ),
        ));
    }
    Ok(ok(s.gateway.instance_status().await?.into()))
}
