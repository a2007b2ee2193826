//! Runs due schedules (service/schedules.rs). Every instance runs one; the claim in the
//! database makes each schedule run once.
use std::time::Duration;

use crate::service::Gateway;

/// Starts the scheduler: every `every`, claims and charges batches of `batch` due schedules. Once
/// `stop` is set it claims no more, and the task ends when the batch in hand is charged and
/// recorded (`App::shutdown` waits for it).
pub fn spawn(
    gateway: Gateway,
    every: Duration,
    batch: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let batch = batch.max(1);
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
