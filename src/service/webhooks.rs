//! Webhook outbox: enqueue in the state change's transaction, deliver with retries.
