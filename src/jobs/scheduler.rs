//! Runs due schedules (service/schedules.rs). Every instance runs one; the claim in the
//! database makes each schedule run once.
use std::time::Duration;

use crate::config::SchedulerSettings;
use crate::service::Gateway;
use crate::store::billing;

/// How often a paused scheduler says again that it is paused: a pause forgotten after a restore
/// leaves every subscription uncharged without another word.
const PAUSED_REMINDER: Duration = Duration::from_secs(3600);

/// Starts the scheduler: every `every`, claims and charges batches of `settings.batch` due
/// schedules. Once `stop` is set it claims no more, and the task ends when the batch in hand is
/// charged and recorded (`App::shutdown` waits for it). Started paused
/// ([`SchedulerSettings::paused`]), it claims nothing at all and only says so.
pub fn spawn(
    gateway: Gateway,
    every: Duration,
    settings: &SchedulerSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if settings.paused {
        return tokio::spawn(paused(gateway, stop));
    }
    let batch = settings.batch.max(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // Drain in batches while there is work, so a backlog does not wait for the timer.
            while !*stop.borrow() {
                match gateway.run_due_schedules(batch).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!("scheduler: {e}");
                        break;
                    }
                }
            }
        }
    })
}

/// The scheduler held (docs/operations.md "Restoring a backup"): no schedule is claimed, so none
/// is charged, until openport is started without the pause. A schedule already claimed before
/// (an instance that died holding it) is not taken over either. Says at start, and every
/// [`PAUSED_REMINDER`] after, how many schedules are due, which an instance that runs its
/// scheduler would charge at once.
async fn paused(gateway: Gateway, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match billing::count_due_schedules(
            &gateway.db.read,
            gateway.served_merchants(),
            gateway.clock.unix(),
        )
        .await
        {
            Ok(due) => tracing::warn!(
                due,
                "the scheduler is paused (OPENPORT_SCHEDULER__PAUSED): no schedule is charged; \
                 {due} schedule(s) are due now (`openport schedule list --due`), and are charged \
                 once openport is started without the pause (docs/operations.md \"Restoring a \
                 backup\")"
            ),
            Err(e) => tracing::warn!(
                "the scheduler is paused (OPENPORT_SCHEDULER__PAUSED): no schedule is charged; \
                 the due schedules could not be counted: {e}"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(PAUSED_REMINDER) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
