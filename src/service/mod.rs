//! Use cases. Transactions live here; HTTP and KCP wire formats do not.
pub mod attempts;
pub mod auth;
pub mod benepia;
pub mod billing;
pub mod cancel;
pub mod cancel_recheck;
pub mod checkout;
pub mod clock_check;
mod confirm;
pub mod connectors;
pub mod escrow;
pub(crate) mod inquiry;
mod kept_cards;
pub mod key_check;
pub mod key_issuances;
pub mod lookup;
pub mod merchants;
pub mod notifications;
pub(crate) mod orphans;
pub mod outbound;
pub mod pay;
pub mod payment_recheck;
pub mod prepare;
pub mod redirect_origins;
pub mod resolve;
pub mod retired_keys;
pub mod schedules;
pub mod schema_check;
pub mod secrets;
pub mod status;
pub mod vbank_checks;
pub mod vbanks;
pub mod webhooks;
pub(crate) mod write_retry;

use std::sync::Arc;

use sea_orm::DbErr;

use crate::clock::Clock;
use crate::store::entity::{cancellation, payment};
use crate::store::Db;
use connectors::Connectors;
use secrets::MasterKey;

/// Errors of the use cases, each with one place in the iamport envelope (api/error.rs).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// HTTP 401, code -1.
    #[error("Unauthorized")]
    Unauthorized,
    /// HTTP 404, code -1.
    #[error("{0}")]
    NotFound(String),
    /// HTTP 400, code -1: the request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// HTTP 200, code -1: card data refused (by openport's checks or by KCP).
    #[error("{0}")]
    CardRejected(String),
    /// HTTP 200, code 1: a business rule refused the request.
    #[error("{0}")]
    Refused(String),
    /// HTTP 200, code 1, as a refusal: another request's charge of the merchant_uid is being
    /// decided (`pay::IN_PROGRESS`), so nothing was opened at KCP. Unlike a refusal it does not
    /// last: how that charge ends decides whether the merchant_uid is free again, so the
    /// scheduler gives the schedule back for a later run instead of failing it.
    #[error("{0}")]
    InProgress(String),
    /// A scheduled charge was not opened: its run no longer holds the schedule (another instance
    /// took it over, or the merchant revoked it). Handled by the scheduler; an API caller that
    /// meets it gets code 1 like any refusal.
    #[error("예약결제가 다른 곳에서 처리되고 있어 실행하지 않았습니다.")]
    ScheduleNotHeld,
    /// HTTP 200, code 1, as a refusal: this host's clock is off the database's, so nothing was
    /// opened at KCP or written (`Gateway::refuse_while_skewed`). Unlike a refusal it says
    /// nothing of the request and passes once the clock is right, or on another instance: the
    /// scheduler gives the schedule back for a later run instead of failing it.
    #[error("{}", clock_check::CLOCK_SKEWED)]
    ClockSkewed,
    /// HTTP 500 with an opaque message; logged once with the cause.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    /// Whether this is the database refusing a payment a KCP trade another payment holds
    /// (`store::is_trade_clash`): refused for good, never a database failure to answer as one.
    pub(crate) fn is_trade_clash(&self) -> bool {
        matches!(self, Self::Db(e) if crate::store::is_trade_clash(e))
    }
}

/// A payment with its cancellations: what every iamport Payment object is rendered from.
#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub payment: payment::Model,
    pub cancellations: Vec<cancellation::Model>,
}

/// Knobs of the gateway's behaviour that come from configuration.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub test_mode: bool,
    /// See `config::ResolverSettings::settle_secs`.
    pub settle_secs: i64,
    /// How long a holder of a KCP attempt owns it before another may claim it (see
    /// `config::Config::attempt_lease_secs` and `service::attempts`).
    pub lease_secs: i64,
    /// See `config::SchedulerSettings::concurrency`.
    pub schedule_concurrency: usize,
    /// See `config::WebhookSettings::private_targets` (resolved against test mode).
    pub webhook_private_targets: bool,
    /// See `config::KcpSettings::order_no_inquiry` (resolved against the embedded sandbox).
    pub trust_order_no_inquiry: bool,
    /// See `config::ResolverSettings::max_clock_skew_secs`, in milliseconds; 0 = not checked.
    pub max_clock_skew_ms: i64,
    /// See `config::SchedulerSettings::paused`: reported by `GET /admin/status` (the scheduler job
    /// reads the configuration itself).
    pub scheduler_paused: bool,
    /// See `config::Config::cancel_wait`.
    pub cancel_wait: std::time::Duration,
    /// See `config::CheckoutSettings::window_ttl_secs`.
    pub window_ttl_secs: i64,
}

/// Everything the use cases need, shared by the HTTP handlers and the background jobs.
#[derive(Clone)]
pub struct Gateway {
    pub db: Db,
    pub clock: Clock,
    pub secrets: MasterKey,
    pub connectors: Connectors,
    pub settings: GatewaySettings,
    pub tokens: Arc<auth::TokenCache>,
    pub admin_token: Option<Arc<secrecy::SecretString>>,
    /// The last clock reading found this host's clock off the database's: no attempt is claimed
    /// (service/clock_check.rs).
    pub clock_skewed: Arc<std::sync::atomic::AtomicBool>,
    /// Set, once and for good, when a newer openport migrated the database while this instance
    /// served it: the migrations this binary does not know. Every request but the health check
    /// and the operator status is refused, and background work claims nothing
    /// (service/schema_check.rs).
    pub newer_schema: Arc<std::sync::OnceLock<String>>,
    /// Rung when this instance writes a webhook into the outbox, so that its worker lists due
    /// deliveries at once instead of at its next tick (jobs/webhooks.rs).
    pub webhooks_written: Arc<tokio::sync::Notify>,
}
