//! sea-orm entities, one per table of `migrations/`.
pub mod access_token;
pub mod billing_key;
pub mod cancellation;
pub mod checkout_session;
pub mod kcp_notification;
pub mod key_issuance;
pub mod merchant;
pub mod payment;
pub mod pg_attempt;
pub mod prepare;
pub mod schedule;
pub mod vbank_check;
pub mod webhook_attempt;
pub mod webhook_delivery;
