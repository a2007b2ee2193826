//! Webhook delivery worker (see service/webhooks.rs): keeps up to [`PARALLEL_DELIVERIES`] POSTs in
//! flight, at most [`MERCHANT_IN_FLIGHT`] of them for one merchant, and tops the slots up as POSTs
//! end; once an hour it deletes finished deliveries, and KCP notifications, past `[webhooks]
//! retention_days`. Any number of instances may run it on one database; the lease in
//! `webhook_deliveries` makes each delivery attempt happen once.
//!
//! It used to list a batch, POST it and wait for the whole batch before listing again: a
//! receiver that accepts the connection and never answers held every slot for the 30 s timeout,
//! batch after batch, and every other merchant's webhooks waited behind it.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::MissedTickBehavior;

use crate::config::Config;
use crate::service::webhooks::{ClaimedWebhook, PARALLEL_DELIVERIES};
use crate::service::{Gateway, ServiceResult};

/// POSTs one merchant may have in flight on one instance, of its [`PARALLEL_DELIVERIES`]. A
/// receiver that accepts connections and never answers holds each POST for the whole 30 s
/// timeout; capped, it slows only its own merchant's webhooks, and the other slots keep serving
/// everyone else. Per merchant, not per host: the merchant is the gateway's unit of fairness (its
/// settings, its payments, its `notice_url`s), one merchant's `notice_url`s can name any number
/// of hosts (a per-host cap would let it take every slot), and merchants sharing a host (a shop
/// platform) each keep their own share.
pub const MERCHANT_IN_FLIGHT: usize = 4;

/// How long a graceful shutdown waits for POSTs in flight to end and record their result. Those
/// still running then are dropped: their lease expires and another run retries them, the
/// at-least-once delivery the outbox already has (a crash does the same). Waiting out a
/// receiver that never answers would hold the stop for the full 30 s timeout, longer than most
/// service managers give a process before they kill it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Finished deliveries deleted per pruning run; a full batch means more are old enough, so the
/// next run prunes again instead of waiting [`PRUNE_EVERY`].
const PRUNE_BATCH: u64 = 1000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The POSTs this instance has in flight, by merchant, and the claiming that refills them.
pub struct WebhookWorker {
    gateway: Gateway,
    running: JoinSet<ServiceResult<()>>,
    /// The merchant of each running POST, by task, so that a task that panics frees its slot too.
    merchant_of: HashMap<Id, i64>,
    /// POSTs in flight per merchant; merchants with none are absent.
    per_merchant: HashMap<i64, usize>,
}

impl WebhookWorker {
    pub fn new(gateway: Gateway) -> Self {
        Self {
            gateway,
            running: JoinSet::new(),
            merchant_of: HashMap::new(),
            per_merchant: HashMap::new(),
        }
    }

    /// POSTs in flight.
    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    fn in_flight_for(&self, merchant_id: i64) -> usize {
        self.per_merchant.get(&merchant_id).copied().unwrap_or(0)
    }

    /// Claims due deliveries into the free slots, merchants at their cap left out, and starts
    /// their POSTs. Returns true when due deliveries may be left waiting for a slot (the claim
    /// filled the free slots, or rows went back because their merchant reached its cap within
    /// the batch): the caller refills again as soon as a POST ends. Rows not taken stay
    /// unclaimed, or are given back at once, so another instance may take them.
    ///
    /// One statement claims the whole batch (on PostgreSQL `FOR UPDATE SKIP LOCKED`), so
    /// instances claiming at once take disjoint rows. It used to list the oldest due rows and
    /// claim them one by one: every instance listed the same ones, and one that lost every race
    /// started nothing and waited for its next tick while a backlog was due.
    ///
    /// POSTs that have ended are collected first ([`Self::reap`]): one that ended but was not yet
    /// collected would otherwise still hold its slot and count against its merchant's cap.
    pub async fn refill(&mut self) -> ServiceResult<bool> {
        let mut skipped = false;
        loop {
            self.reap();
            let free = PARALLEL_DELIVERIES.saturating_sub(self.running.len());
            if free == 0 {
                return Ok(true);
            }
            let capped: Vec<i64> = self
                .per_merchant
                .iter()
                .filter(|(_, n)| **n >= MERCHANT_IN_FLIGHT)
                .map(|(m, _)| *m)
                .collect();
            let claimed = self
                .gateway
                .claim_due_webhooks(free as u64, &capped)
                .await?;
            let full = claimed.len() == free;
            let mut over_cap = Vec::new();
            for (merchant_id, claim) in claimed {
                if self.in_flight_for(merchant_id) >= MERCHANT_IN_FLIGHT {
                    over_cap.push(claim);
                } else {
                    self.start(merchant_id, claim);
                }
            }
            let given_back = !over_cap.is_empty();
            // Not given back, the rows wait for their lease to run out: late, not lost.
            if let Err(e) = self.gateway.release_webhooks(over_cap).await {
                tracing::warn!("webhook worker: claimed deliveries not given back: {e}");
            }
            // Rows went back with slots still free: claim again, the merchants now at their cap
            // left out (each round caps one more merchant at least, so this ends).
            skipped |= given_back;
            if !(full && given_back) || self.running.len() >= PARALLEL_DELIVERIES {
                return Ok(full || skipped);
            }
        }
    }

    fn start(&mut self, merchant_id: i64, claim: ClaimedWebhook) {
        let gateway = self.gateway.clone();
        let task = self
            .running
            .spawn(async move { gateway.send_webhook(claim).await });
        self.merchant_of.insert(task.id(), merchant_id);
        *self.per_merchant.entry(merchant_id).or_default() += 1;
    }

    /// Waits for a POST in flight to end, then collects every other one that has ended too
    /// (their results are recorded by then; failures are logged here). Returns whether that
    /// freed a slot of a merchant that was at its cap, whose due rows the last claim left out;
    /// None when nothing is in flight. Cancel safe.
    ///
    /// All of them, not one: under load POSTs end faster than the worker wakes up, and a worker
    /// that collected one per wake-up counted the others as busy slots, refilling one slot at a
    /// time (about one webhook per 100 ms while payments kept ringing the write signal).
    pub async fn finished(&mut self) -> Option<bool> {
        let first = self.running.join_next_with_id().await?;
        let freed_capped = self.collect(first);
        Some(self.reap() || freed_capped)
    }

    /// Collects, without waiting, every POST that has ended; true when one of them freed a slot
    /// of a merchant that was at its cap.
    fn reap(&mut self) -> bool {
        let mut freed_capped = false;
        while let Some(done) = self.running.try_join_next_with_id() {
            freed_capped |= self.collect(done);
        }
        freed_capped
    }

    /// Frees the slot of one ended POST (logging its failure); true when its merchant was at
    /// its cap.
    fn collect(&mut self, done: Result<(Id, ServiceResult<()>), JoinError>) -> bool {
        let task = match done {
            Ok((task, Ok(()))) => task,
            Ok((task, Err(e))) => {
                tracing::error!("webhook delivery: {e}");
                task
            }
            Err(e) => {
                tracing::error!("webhook delivery task: {e}");
                e.id()
            }
        };
        let Some(merchant_id) = self.merchant_of.remove(&task) else {
            return false;
        };
        let count = self.per_merchant.entry(merchant_id).or_default();
        let was_capped = *count >= MERCHANT_IN_FLIGHT;
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.per_merchant.remove(&merchant_id);
        }
        was_capped
    }

    /// Lets the POSTs in flight end for up to `grace`, then drops the rest (see
    /// [`SHUTDOWN_GRACE`]).
    pub async fn wind_down(mut self, grace: Duration) {
        let _ =
            tokio::time::timeout(grace, async { while self.finished().await.is_some() {} }).await;
        if !self.running.is_empty() {
            tracing::warn!(
                in_flight = self.running.len(),
                "webhook POSTs dropped at shutdown; their leases expire and another run retries them"
            );
            self.running.shutdown().await;
        }
    }
}

/// How long the worker waits, once this instance has written a webhook, before claiming: the
/// write's transaction commits after it (a group commit's p99 is a few milliseconds here).
const COMMIT_GRACE: Duration = Duration::from_millis(100);

/// Starts the worker, until `shutdown` turns true; the handle ends once the POSTs in flight have
/// ended or been dropped ([`SHUTDOWN_GRACE`]). It claims due deliveries every resolver interval,
/// at once when POSTs end while deliveries are waiting for a slot, and [`COMMIT_GRACE`] after
/// this instance wrote a webhook (`Gateway::webhooks_written`), so a webhook leaves within a
/// fraction of a second rather than up to an interval later. Without background jobs
/// (`Config::background_jobs`: tests drive deliveries themselves, `Gateway::deliver_due_webhooks`)
/// nothing is started.
///
/// POSTs ending come first (`biased`), and the grace after a write is a deadline the loop keeps
/// serving POSTs towards, not a sleep: under load every payment rings the write signal, and a
/// worker that slept on each ring (or picked the ring over a POST that ended) left its slots
/// idle and refilled them one at a time.
pub fn spawn(
    gateway: &Gateway,
    config: &Config,
    shutdown: &tokio::sync::watch::Sender<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.background_jobs {
        return None;
    }
    let gateway = gateway.clone();
    let every = Duration::from_millis(config.resolver.interval_ms);
    let retention_days = config.webhooks.retention_days;
    let mut stop = shutdown.subscribe();
    Some(tokio::spawn(async move {
        let mut worker = WebhookWorker::new(gateway.clone());
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut waiting = false;
        // When to claim webhooks this instance wrote: COMMIT_GRACE after the first ring since
        // the last such claim (later rings do not push it back).
        let mut written_due: Option<tokio::time::Instant> = None;
        let mut next_prune = Instant::now();
        loop {
            let mut claim_now = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                freed = worker.finished(), if worker.in_flight() > 0 => {
                    waiting || freed == Some(true)
                }
                () = tokio::time::sleep_until(
                    written_due.unwrap_or_else(tokio::time::Instant::now)
                ), if written_due.is_some() => true,
                _ = ticks.tick() => true,
                () = gateway.webhooks_written.notified() => {
                    // Rung while the write is still in its transaction: claim once it has had
                    // time to commit. One that takes longer is claimed at the next tick.
                    written_due.get_or_insert(tokio::time::Instant::now() + COMMIT_GRACE);
                    false
                }
            };
            if written_due.is_some_and(|at| at <= tokio::time::Instant::now()) {
                written_due = None;
                claim_now = true;
            }
            if !claim_now {
                continue;
            }
            waiting = match worker.refill().await {
                Ok(waiting) => waiting,
                Err(e) => {
                    tracing::error!("webhook worker: {e}");
                    false
                }
            };
            if Instant::now() >= next_prune {
                next_prune = prune(&gateway, retention_days).await;
            }
        }
        worker.wind_down(SHUTDOWN_GRACE).await;
    }))
}

/// Deletes history past the retention; returns when to prune next.
async fn prune(gateway: &Gateway, retention_days: u64) -> Instant {
    if let Err(e) = gateway
        .prune_notifications(retention_days, PRUNE_BATCH)
        .await
    {
        tracing::error!("KCP notification pruning: {e}");
    }
    match gateway
        .prune_webhook_history(retention_days, PRUNE_BATCH)
        .await
    {
        Ok(n) if n >= PRUNE_BATCH => Instant::now(),
        Ok(_) => Instant::now() + PRUNE_EVERY,
        Err(e) => {
            tracing::error!("webhook history pruning: {e}");
            Instant::now() + PRUNE_EVERY
        }
    }
}
