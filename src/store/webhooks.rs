//! Webhook outbox rows and delivery attempts.
