//! One migration path for SQLite (embedded default) and PostgreSQL (production).
pub use m20261209_000029_paid_listing_without_index::PAID_LAG_FREE_SECS;
pub use m20261219_000039_one_payment_per_trade::SHARED_TRADE;
pub use m20261221_000041_webhook_urls_normalised::stored_form as webhook_url_stored_form;
pub use sea_orm_migration::prelude::*;
pub use sea_orm_migration::MigrationStatus;

mod m20261122_000001_core;
mod m20261122_000002_billing;
mod m20261122_000003_webhooks;
mod m20261122_000004_checkout;
mod m20261202_000005_fewer_index_writes;
mod m20261202_000006_schedule_card_quota;
mod m20261202_000007_one_live_token;
mod m20261203_000008_tokens_at_rest;
mod m20261203_000009_prepared_currency_upper;
mod m20261203_000010_notification_outcome;
mod m20261203_000011_attempt_notify;
mod m20261203_000012_attempts_by_tno;
mod m20261203_000013_attempt_absent_order_no;
mod m20261203_000014_cancel_amount_range;
mod m20261203_000015_schedule_customer_id;
mod m20261204_000016_billing_key_pg_delete;
mod m20261204_000017_merchant_kcp_api_base;
mod m20261204_000018_notifications_by_tno;
mod m20261205_000019_schedule_claim_token;
mod m20261205_000020_payment_cash_receipt;
mod m20261205_000021_billing_key_payment;
mod m20261205_000022_webhook_previous_secret;
mod m20261205_000023_payment_partial_cancel;
mod m20261206_000024_vbank_checks;
mod m20261206_000025_notification_deposited_at;
mod m20261207_000026_listing_indexes;
mod m20261207_000027_schedules_by_imp_uid;
mod m20261208_000028_point_reapproval_attempts;
mod m20261209_000029_paid_listing_without_index;
mod m20261210_000030_webhook_to_merchant_url;
mod m20261211_000031_conflict_attempts_index;
mod m20261212_000032_notifications_by_age;
mod m20261213_000033_key_issuances;
mod m20261214_000034_webhook_message_id;
mod m20261215_000035_attempt_sent_at;
mod m20261216_000036_health_probe;
mod m20261218_000038_attempt_unsent;
mod m20261219_000039_one_payment_per_trade;
mod m20261220_000040_merchant_redirect_origins;
mod m20261221_000041_webhook_urls_normalised;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_core::Migration),
            Box::new(m20261122_000002_billing::Migration),
            Box::new(m20261122_000003_webhooks::Migration),
            Box::new(m20261122_000004_checkout::Migration),
            Box::new(m20261202_000005_fewer_index_writes::Migration),
            Box::new(m20261202_000006_schedule_card_quota::Migration),
            Box::new(m20261202_000007_one_live_token::Migration),
            Box::new(m20261203_000008_tokens_at_rest::Migration),
            Box::new(m20261203_000009_prepared_currency_upper::Migration),
            Box::new(m20261203_000010_notification_outcome::Migration),
            Box::new(m20261203_000011_attempt_notify::Migration),
            Box::new(m20261203_000012_attempts_by_tno::Migration),
            Box::new(m20261203_000013_attempt_absent_order_no::Migration),
            Box::new(m20261203_000014_cancel_amount_range::Migration),
            Box::new(m20261203_000015_schedule_customer_id::Migration),
            Box::new(m20261204_000016_billing_key_pg_delete::Migration),
            Box::new(m20261204_000017_merchant_kcp_api_base::Migration),
            Box::new(m20261204_000018_notifications_by_tno::Migration),
            Box::new(m20261205_000019_schedule_claim_token::Migration),
            Box::new(m20261205_000020_payment_cash_receipt::Migration),
            Box::new(m20261205_000021_billing_key_payment::Migration),
            Box::new(m20261205_000022_webhook_previous_secret::Migration),
            Box::new(m20261205_000023_payment_partial_cancel::Migration),
            Box::new(m20261206_000024_vbank_checks::Migration),
            Box::new(m20261206_000025_notification_deposited_at::Migration),
            Box::new(m20261207_000026_listing_indexes::Migration),
            Box::new(m20261207_000027_schedules_by_imp_uid::Migration),
            Box::new(m20261208_000028_point_reapproval_attempts::Migration),
            Box::new(m20261209_000029_paid_listing_without_index::Migration),
            Box::new(m20261210_000030_webhook_to_merchant_url::Migration),
            Box::new(m20261211_000031_conflict_attempts_index::Migration),
            Box::new(m20261212_000032_notifications_by_age::Migration),
            Box::new(m20261213_000033_key_issuances::Migration),
            Box::new(m20261214_000034_webhook_message_id::Migration),
            Box::new(m20261215_000035_attempt_sent_at::Migration),
            Box::new(m20261216_000036_health_probe::Migration),
            Box::new(m20261218_000038_attempt_unsent::Migration),
            Box::new(m20261219_000039_one_payment_per_trade::Migration),
            Box::new(m20261220_000040_merchant_redirect_origins::Migration),
            Box::new(m20261221_000041_webhook_urls_normalised::Migration),
        ]
    }
}
