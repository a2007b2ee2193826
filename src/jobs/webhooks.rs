//! Webhook delivery worker (see service/webhooks.rs): keeps up to [`PARALLEL_DELIVERIES`] POSTs in
//! flight, at most [`MERCHANT_IN_FLIGHT`] of them for one merchant, with slots kept for merchants'
//! configured URLs that `notice_url`s cannot take ([`MERCHANT_NOTICE_URLS_IN_FLIGHT`],
//! [`NOTICE_URLS_IN_FLIGHT`]), and tops the slots up as POSTs end; once an hour it deletes
//! finished deliveries, and KCP notifications, past `[webhooks] retention_days`. Any number of instances may run it on one database; the lease in
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
use crate::store::webhooks::{DueDelivery, LeftOut};

/// POSTs one merchant may have in flight on one instance, of its [`PARALLEL_DELIVERIES`]. A
/// receiver that accepts connections and never answers holds each POST for the whole 30 s
/// timeout; capped, it slows only its own merchant's webhooks, and the other slots keep serving
/// everyone else. Per merchant, not per host: the merchant is the gateway's unit of fairness (its
/// settings, its payments, its `notice_url`s), one merchant's `notice_url`s can name any number
/// of hosts (a per-host cap would let it take every slot), and merchants sharing a host (a shop
/// platform) each keep their own share.
pub const MERCHANT_IN_FLIGHT: usize = 4;

/// Of a merchant's [`MERCHANT_IN_FLIGHT`], the POSTs to `notice_url`s it may have in flight: one
/// fewer, so that one slot is always free for its configured `webhook_url`. A `notice_url` comes
/// from the buyer's browser (`request_pay`, up to 10 per payment, and a virtual-account window
/// costs nothing): without this, a few windows whose `notice_url`s accept the connection and
/// never answer held every slot of the merchant's for 30 s per attempt, six attempts each, and
/// the merchant's own webhooks, claimed oldest first, waited behind them for hours. The
/// configured URL's deliveries may use all [`MERCHANT_IN_FLIGHT`]; a `notice_url` that is the
/// configured URL counts as it (`webhook_deliveries.to_merchant_url`).
pub const MERCHANT_NOTICE_URLS_IN_FLIGHT: usize = MERCHANT_IN_FLIGHT - 1;

/// Of the instance's [`PARALLEL_DELIVERIES`], the POSTs to `notice_url`s all merchants together
/// may have in flight: the rest, one merchant's cap, are kept for configured URLs, so that
/// `notice_url`s of several merchants (each merchant's `imp_code` is on its shop's pages) cannot
/// hold every slot of the instance either. As many merchants are needed to fill the
/// `notice_url`s' share as were needed to fill all the slots before.
pub const NOTICE_URLS_IN_FLIGHT: usize = PARALLEL_DELIVERIES - MERCHANT_IN_FLIGHT;

/// How long a graceful shutdown waits for POSTs in flight to end and record their result. Those
/// still running then are dropped: their lease expires and another run retries them, the
/// at-least-once delivery the outbox already has (a crash does the same). Waiting out a
/// receiver that never answers would hold the stop for the full 30 s timeout, longer than most
/// service managers give a process before they kill it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Finished deliveries, and KCP notifications, deleted per pruning run; a full batch of either
/// means more are old enough, so the next run prunes again instead of waiting [`PRUNE_EVERY`].
const PRUNE_BATCH: u64 = 1000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// One merchant's POSTs in flight.
#[derive(Debug, Clone, Copy, Default)]
struct Slots {
    all: usize,
    /// Those to `notice_url`s (not to the merchant's configured URL).
    notice_urls: usize,
}

impl Slots {
    /// The merchant takes no more POSTs of any kind.
    fn full(&self) -> bool {
        self.all >= MERCHANT_IN_FLIGHT
    }

    /// The merchant takes no more POSTs to `notice_url`s.
    fn notice_urls_full(&self) -> bool {
        self.notice_urls >= MERCHANT_NOTICE_URLS_IN_FLIGHT
    }
}

/// The POSTs this instance has in flight, by merchant, and the claiming that refills them.
pub struct WebhookWorker {
    gateway: Gateway,
    running: JoinSet<ServiceResult<bool>>,
    /// The merchant and target of each running POST, by task, so that a task that panics frees
    /// its slot too.
    target_of: HashMap<Id, DueDelivery>,
    /// POSTs in flight per merchant; merchants with none are absent.
    per_merchant: HashMap<i64, Slots>,
}

impl WebhookWorker {
    pub fn new(gateway: Gateway) -> Self {
        Self {
            gateway,
            running: JoinSet::new(),
            target_of: HashMap::new(),
            per_merchant: HashMap::new(),
        }
    }

    /// POSTs in flight.
    pub fn in_flight(&self) -> usize {
        self.running.len()
    }

    fn slots_of(&self, merchant_id: i64) -> Slots {
        self.per_merchant
            .get(&merchant_id)
            .copied()
            .unwrap_or_default()
    }

    /// Whether the instance's share of POSTs to `notice_url`s (all merchants') is taken.
    fn notice_urls_full(&self) -> bool {
        let in_flight: usize = self.per_merchant.values().map(|s| s.notice_urls).sum();
        in_flight >= NOTICE_URLS_IN_FLIGHT
    }

    /// Whether a POST of `d` fits: its merchant below its cap and, for a `notice_url`, the
    /// merchant's and the instance's `notice_url` shares too. The one statement of the caps:
    /// the claim of [`Self::refill`] leaves out exactly the rows this refuses (so it takes none
    /// it would give back), and a POST that ended freed a slot at a cap exactly when its row
    /// did not fit before it ended ([`Self::collect`]).
    fn fits(&self, d: &DueDelivery) -> bool {
        let slots = self.slots_of(d.merchant_id);
        !slots.full()
            && (d.to_merchant_url || !(slots.notice_urls_full() || self.notice_urls_full()))
    }

    /// Claims due deliveries into the free slots, those that would not fit left out (merchants
    /// at their cap; `notice_url`s where their share is full), and starts their POSTs. Returns
    /// true when due deliveries may be left waiting for a slot (the claim filled the free slots,
    /// or rows went back because a cap was reached within the batch): the caller refills again
    /// as soon as a POST ends. Rows not taken stay unclaimed, or are given back at once, so
    /// another instance may take them.
    ///
    /// A merchant's rows to its configured URL are claimed while a slot of the merchant's is
    /// free, however many older rows to `notice_url`s are due: those are left out of the claim
    /// once their share is full, not sent first.
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
            let capped = self.merchants_where(Slots::full);
            let notice_capped = self.merchants_where(Slots::notice_urls_full);
            let left_out = LeftOut {
                merchants: &capped,
                notice_urls_of: &notice_capped,
                all_notice_urls: self.notice_urls_full(),
            };
            let claimed = self
                .gateway
                .claim_due_webhooks(free as u64, left_out)
                .await?;
            let full = claimed.len() == free;
            let mut over_cap = Vec::new();
            for (due, claim) in claimed {
                if self.fits(&due) {
                    self.start(due, claim);
                } else {
                    over_cap.push(claim);
                }
            }
            let given_back = !over_cap.is_empty();
            // Not given back, the rows wait for their lease to run out: late, not lost.
            if let Err(e) = self.gateway.release_webhooks(over_cap).await {
                tracing::warn!("webhook worker: claimed deliveries not given back: {e}");
            }
            // Rows went back with slots still free: claim again, what reached its cap left out
            // (each round adds a merchant, a merchant's notice_urls or all notice_urls to what
            // is left out, so this ends).
            skipped |= given_back;
            if !(full && given_back) || self.running.len() >= PARALLEL_DELIVERIES {
                return Ok(full || skipped);
            }
        }
    }

    /// The merchants with POSTs in flight whose slots match `at_cap`.
    fn merchants_where(&self, at_cap: impl Fn(&Slots) -> bool) -> Vec<i64> {
        self.per_merchant
            .iter()
            .filter(|(_, s)| at_cap(s))
            .map(|(m, _)| *m)
            .collect()
    }

    fn start(&mut self, due: DueDelivery, claim: ClaimedWebhook) {
        let gateway = self.gateway.clone();
        let task = self
            .running
            .spawn(async move { gateway.send_webhook(claim).await });
        self.target_of.insert(task.id(), due);
        let slots = self.per_merchant.entry(due.merchant_id).or_default();
        slots.all += 1;
        if !due.to_merchant_url {
            slots.notice_urls += 1;
        }
    }

    /// Waits for a POST in flight to end, then collects every other one that has ended too
    /// (their results are recorded by then; failures are logged here). Returns whether rows the
    /// last claim could not take may be due now: a slot at a cap was freed (a merchant's, or a
    /// `notice_url`s' share), or a delivery was done with, so the next event of its payment to
    /// its URL, held back behind it (`store::webhooks`), may go at once rather than at the next
    /// tick; None when nothing is in flight. Cancel safe.
    ///
    /// All of them, not one: under load POSTs end faster than the worker wakes up, and a worker
    /// that collected one per wake-up counted the others as busy slots, refilling one slot at a
    /// time (about one webhook per 100 ms while payments kept ringing the write signal).
    pub async fn finished(&mut self) -> Option<bool> {
        let first = self.running.join_next_with_id().await?;
        let claim_again = self.collect(first);
        Some(self.reap() || claim_again)
    }

    /// Collects, without waiting, every POST that has ended; true when one of them freed a slot
    /// at a cap or was done with its delivery.
    fn reap(&mut self) -> bool {
        let mut claim_again = false;
        while let Some(done) = self.running.try_join_next_with_id() {
            claim_again |= self.collect(done);
        }
        claim_again
    }

    /// Frees the slot of one ended POST (logging its failure); true when it was at a cap that a
    /// claim leaves rows out for (its merchant's, or for a `notice_url` the merchant's or the
    /// instance's `notice_url` share), or when its delivery is done with (the next one of its
    /// payment to its URL may be due).
    fn collect(&mut self, done: Result<(Id, ServiceResult<bool>), JoinError>) -> bool {
        let mut done_with = false;
        let task = match done {
            Ok((task, Ok(finished))) => {
                done_with = finished;
                task
            }
            Ok((task, Err(e))) => {
                tracing::error!("webhook delivery: {e}");
                task
            }
            Err(e) => {
                tracing::error!("webhook delivery task: {e}");
                e.id()
            }
        };
        let Some(due) = self.target_of.remove(&task) else {
            return false;
        };
        let was_capped = !self.fits(&due);
        let slots = self.per_merchant.entry(due.merchant_id).or_default();
        slots.all = slots.all.saturating_sub(1);
        if !due.to_merchant_url {
            slots.notice_urls = slots.notice_urls.saturating_sub(1);
        }
        if slots.all == 0 {
            self.per_merchant.remove(&due.merchant_id);
        }
        was_capped || done_with
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

/// Deletes history past the retention; returns when to prune next: at once while either table
/// had a full batch to delete (more are old enough), else in [`PRUNE_EVERY`]. Only the webhook
/// history's batch used to count: KCP notifications past the retention went 1,000 an hour,
/// fewer than a busy gateway receives.
async fn prune(gateway: &Gateway, retention_days: u64) -> Instant {
    let notifications = gateway
        .prune_notifications(retention_days, PRUNE_BATCH)
        .await
        .inspect_err(|e| tracing::error!("KCP notification pruning: {e}"));
    let history = gateway
        .prune_webhook_history(retention_days, PRUNE_BATCH)
        .await
        .inspect_err(|e| tracing::error!("webhook history pruning: {e}"));
    let full = |pruned: ServiceResult<u64>| pruned.is_ok_and(|n| n >= PRUNE_BATCH);
    if full(notifications) || full(history) {
        Instant::now()
    } else {
        Instant::now() + PRUNE_EVERY
    }
}
