//! Background workers that run inside `openport serve`.
pub mod webhooks;
