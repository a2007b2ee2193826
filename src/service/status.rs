//! What a load balancer and an operator's alerting ask of a running instance: whether its database
//! answers (`GET /health`), and what waits for an operator (`GET /admin/status`, docs/operations.md
//! "Monitoring").
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend};

use super::{Gateway, ServiceResult};
use crate::store::{billing, key_issuances, notifications, payments, webhooks};

/// How long `GET /health` waits for the database before it answers "unavailable": well below a
/// load balancer's check timeout, and far above a `SELECT 1` on a database that works.
pub const HEALTH_BOUND: Duration = Duration::from_secs(2);

/// What comparing this instance's clock with the database's last found (service/clock_check.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockVerdict {
    /// SQLite: one host, nothing to compare.
    NotShared,
    /// Within `resolver.max_clock_skew_secs` of the database server's.
    InLine,
    /// Not judged: the check is off (`resolver.max_clock_skew_secs = 0`), so however far off this
    /// host's clock is, it is never called skewed; said so rather than `InLine`.
    NotChecked,
    /// Off: this instance opens no KCP attempt until the resolver finds it back in line.
    Skewed,
}

/// The numbers an operator alerts on, read when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// `test_mode` of the configuration.
    pub test_mode: bool,
    /// Attempts closed as conflicts and not reconciled (`openport attempt list --conflicts`):
    /// KCP holds something the record does not, and the payment takes no API cancel.
    pub conflicts: u64,
    /// Open attempts (`openport attempt list`), every merchant's.
    pub open_attempts: u64,
    /// Seconds since the oldest open attempt was made, on the gateway's clock; None when none is.
    pub oldest_open_attempt_secs: Option<i64>,
    /// Billing-key issuances whose outcome is not known (`openport attempt list --issuances`):
    /// KCP may hold a key nothing here does.
    pub open_key_issuances: u64,
    /// Seconds since the oldest open issuance was recorded; None when none is.
    pub oldest_open_key_issuance_secs: Option<i64>,
    /// Webhook deliveries waiting for their next try, every merchant's.
    pub webhooks_pending: u64,
    /// Webhook deliveries given up after their last retry, while they are kept
    /// (`webhooks.retention_days`).
    pub webhooks_failed: u64,
    /// KCP notifications out of the re-verify sweep for good and still undecided
    /// (`notifications::count_for_operator`).
    pub notifications_for_operator: u64,
    /// Schedules due now of the merchants this instance serves (its mode's): what its scheduler
    /// would claim at once (`openport schedule list --due` lists every merchant's).
    pub schedules_due: u64,
    /// Started with `scheduler.paused`: this instance charges no schedule.
    pub scheduler_paused: bool,
    pub clock: ClockVerdict,
}

impl Gateway {
    /// Whether the database answers a trivial read and commits a trivial write (its one
    /// `health_probe` row) within [`HEALTH_BOUND`]. A failure is logged at WARN (its cause included); the caller is told
    /// nothing more, since `GET /health` is public.
    pub async fn database_answers(&self) -> bool {
        match tokio::time::timeout(HEALTH_BOUND, self.db.answers(self.clock.unix())).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!("health check: the database failed: {e}");
                false
            }
            Err(_) => {
                tracing::warn!(
                    bound_ms = HEALTH_BOUND.as_millis() as u64,
                    "health check: the database did not answer in time"
                );
                false
            }
        }
    }

    /// The instance's [`InstanceStatus`]: a few counts, each one statement on an index.
    pub async fn instance_status(&self) -> ServiceResult<InstanceStatus> {
        let db = &self.db.read;
        let now = self.clock.unix();
        // A second look is due an hour after it is made: its age is no outcome waiting.
        let second_looks = [super::resolve::ABSENCE_RECHECK, super::cancel_recheck::KIND];
        let (open_attempts, oldest) = payments::open_attempts_summary(db, &second_looks).await?;
        let (open_key_issuances, oldest_issuance) = key_issuances::open_summary(db).await?;
        let age = |at: i64| now.saturating_sub(at).max(0);
        Ok(InstanceStatus {
            test_mode: self.settings.test_mode,
            conflicts: payments::count_conflict_attempts(db).await?,
            open_attempts,
            oldest_open_attempt_secs: oldest.map(age),
            open_key_issuances,
            oldest_open_key_issuance_secs: oldest_issuance.map(age),
            webhooks_pending: webhooks::count_in_state(db, "pending").await?,
            webhooks_failed: webhooks::count_in_state(db, "failed").await?,
            notifications_for_operator: notifications::count_for_operator(
                db,
                now,
                super::notifications::REVERIFY_FOR_SECS,
            )
            .await?,
            schedules_due: billing::count_due_schedules(db, self.served_merchants(), now).await?,
            scheduler_paused: self.settings.scheduler_paused,
            clock: self.clock_verdict(),
        })
    }

    fn clock_verdict(&self) -> ClockVerdict {
        if self.db.read.get_database_backend() != DbBackend::Postgres {
            ClockVerdict::NotShared
        } else if self.settings.max_clock_skew_ms == 0 {
            ClockVerdict::NotChecked
        } else if self.clock_is_skewed() {
            ClockVerdict::Skewed
        } else {
            ClockVerdict::InLine
        }
    }
}
