//! Webhook delivery worker (see service/webhooks.rs).
