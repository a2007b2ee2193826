//! Webhook delivery worker (see service/webhooks.rs): every few seconds, delivers what is due, and
//! once an hour deletes finished deliveries, and KCP notifications, past `[webhooks]
//! retention_days`. Any number of
//! instances may run it on one database; the lease in `webhook_deliveries` makes each delivery
//! attempt happen once.
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::service::Gateway;

/// Rows claimed per run; a full batch means more may be waiting, so the worker runs again at once.
const BATCH: u64 = 100;

/// Finished deliveries deleted per pruning run; a full batch means more are old enough, so the
/// next run prunes again instead of waiting [`PRUNE_EVERY`].
const PRUNE_BATCH: u64 = 1000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Starts the worker at the resolver's interval, until `shutdown` turns true. Interval 0 means
/// tests drive deliveries themselves (`Gateway::deliver_due_webhooks`): nothing is started.
pub fn spawn(gateway: &Gateway, config: &Config, shutdown: &tokio::sync::watch::Sender<bool>) {
    if config.resolver.interval_ms == 0 {
        return;
    }
    let gateway = gateway.clone();
    let every = Duration::from_millis(config.resolver.interval_ms);
    let retention_days = config.webhooks.retention_days;
    let mut stop = shutdown.subscribe();
    tokio::spawn(async move {
        let mut pause = every;
        let mut next_prune = Instant::now();
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
            if Instant::now() >= next_prune {
                if let Err(e) = gateway
                    .prune_notifications(retention_days, PRUNE_BATCH)
                    .await
                {
                    tracing::error!("KCP notification pruning: {e}");
                }
                next_prune = match gateway
                    .prune_webhook_history(retention_days, PRUNE_BATCH)
                    .await
                {
                    Ok(n) if n >= PRUNE_BATCH => Instant::now(),
                    Ok(_) => Instant::now() + PRUNE_EVERY,
                    Err(e) => {
                        tracing::error!("webhook history pruning: {e}");
                        Instant::now() + PRUNE_EVERY
                    }
                };
            }
        }
    });
}
