//! Background workers that run inside `openport serve`.
pub mod scheduler;
pub mod webhooks;
