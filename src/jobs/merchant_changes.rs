//! Drops cached merchant rows that another instance changed (PostgreSQL `LISTEN`).
//!
//! Each instance caches merchant rows for a minute (`service::auth`), so that an authenticated
//! request or a payment's webhook targets cost no read. Webhook targets are resolved when the
//! event happens (docs/webhooks.md), so a webhook URL set for the first time on one instance was
//! not seen by the others for up to that minute, and the events they recorded meanwhile wrote no
//! webhook at all: lost, not late. An instance that changes a merchant now announces it
//! (`store::merchants::announce_change`, `NOTIFY` once committed), and this task drops the row
//! from this instance's cache as the announcement arrives, within milliseconds.
//!
//! Announcements sent while the listening connection is down are lost, so every cached merchant
//! row is dropped each time it (re)connects. The minute's expiry stays as the last resort.
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;

use crate::service::Gateway;
use crate::store::merchants::CHANGED_CHANNEL;

/// How long to wait before connecting again after the listening connection failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts the listener when the database is PostgreSQL (SQLite's database has one instance), until
/// `shutdown` turns true.
pub fn spawn(
    gateway: &Gateway,
    database_url: &str,
    shutdown: &tokio::sync::watch::Sender<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !database_url.starts_with("postgres") {
        return None;
    }
    let gateway = gateway.clone();
    let url = database_url.to_string();
    let mut stop = shutdown.subscribe();
    Some(tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            () = listen(&gateway, &url) => {}
        }
    }))
}

/// Listens for good; every failure is logged and followed by a new connection.
async fn listen(gateway: &Gateway, url: &str) {
    loop {
        let mut listener = match connect(url).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!("merchant change listener: {e}; cached merchant rows expire within a minute meanwhile");
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        // Whatever changed before this connection listened was not announced to it.
        gateway.forget_merchant(None);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match n.payload().parse::<i64>() {
                    Ok(id) => gateway.forget_merchant(Some(id)),
                    Err(_) => gateway.forget_merchant(None),
                },
                // The connection was lost and made again (sqlx reconnects eagerly): what was
                // announced in between never arrives.
                Ok(None) => gateway.forget_merchant(None),
                Err(e) => {
                    tracing::warn!("merchant change listener: {e}; connecting again");
                    break;
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn connect(url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANGED_CHANNEL).await?;
    Ok(listener)
}
