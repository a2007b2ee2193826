//! Webhook delivery worker (see service/webhooks.rs): every few seconds, delivers what is due. Any
//! number of instances may run it on one database; the lease in `webhook_deliveries` makes each
//! delivery attempt happen once.
use std::time::Duration;

use crate::config::Config;
use crate::service::Gateway;

/// Rows claimed per run; a full batch means more may be waiting, so the worker runs again at once.
const BATCH: u64 = 100;

/// Starts the worker at the resolver's interval, until `shutdown` turns true. Interval 0 means
/// tests drive deliveries themselves (`Gateway::deliver_due_webhooks`): nothing is started.
pub fn spawn(gateway: &Gateway, config: &Config, shutdown: &tokio::sync::watch::Sender<bool>) {
    if config.resolver.interval_ms == 0 {
        return;
    }
    let gateway = gateway.clone();
    let every = Duration::from_millis(config.resolver.interval_ms);
    let mut stop = shutdown.subscribe();
    tokio::spawn(async move {
        let mut pause = every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            pause = match gateway.deliver_due_webhooks(BATCH).await {
                Ok(n) if n as u64 >= BATCH => Duration::ZERO,
                Ok(_) => every,
                Err(e) => {
                    tracing::error!("webhook worker: {e}");
                    every
                }
            };
        }
    });
}
