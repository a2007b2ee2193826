//! Background workers that run inside `openport serve`.
pub mod merchant_changes;
pub mod scheduler;
pub mod webhooks;
