//! One starting instance at a time per database.
//!
//! What a start does once per database (its migrations, the first merchant) is a read followed by
//! a write: "no live merchant yet, so make one". Instances started together (a deploy starting
//! several replicas) would each read "none" and each make one: several live merchants for one KCP
//! site, each with its own credentials file, and in test mode a start failing on the demo
//! merchant's taken `imp_code`. Holding this lock from before the migrations until the first
//! merchant is settled makes the second instance wait and then find what the first one made.
use sea_orm::sqlx::{self, Connection, PgConnection};

use super::{sqlite_file, ConnectError};

/// `pg_advisory_lock`'s key for starting instances: any constant no other advisory lock uses
/// (openport takes no other). "openport" in ASCII.
const PG_KEY: i64 = 0x6f70_656e_706f_7274;

/// Held while an instance starts; released when dropped (or by [`StartupLock::release`]).
pub enum StartupLock {
    /// A session-level advisory lock on a connection of its own, outside the pool: the pool may
    /// have a single connection, which the migrations and the first merchant's writes need.
    /// Closing the connection releases it, also when the process dies.
    Postgres(PgConnection),
    /// An exclusive lock on a file next to the SQLite database (released when the file is
    /// closed, also when the process dies): processes on one host sharing the file.
    SqliteFile(std::fs::File),
    /// An in-memory database: one process, nothing to share.
    Unshared,
}

impl StartupLock {
    /// Waits until no other instance starting on `url` holds the lock, and takes it.
    pub async fn acquire(url: &str) -> Result<Self, ConnectError> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut conn = PgConnection::connect(url).await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_KEY)
                .execute(&mut conn)
                .await?;
            return Ok(Self::Postgres(conn));
        }
        let Some(db_file) = sqlite_file(url) else {
            return Ok(Self::Unshared);
        };
        let mut name = db_file.into_os_string();
        name.push(".startup-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .map_err(ConnectError::File)?;
        // `File::lock` blocks the thread until the other start is done.
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| ConnectError::File(std::io::Error::other(e)))?
            .map(Self::SqliteFile)
            .map_err(ConnectError::File)
    }

    /// Lets the next starting instance go. Dropping does the same; this also tells PostgreSQL at
    /// once rather than when it notices the closed connection.
    pub async fn release(self) {
        if let Self::Postgres(mut conn) = self {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_KEY)
                .execute(&mut conn)
                .await;
            if let Err(e) = unlocked {
                tracing::warn!(error = %e, "startup lock: unlock failed; closing its connection releases it");
            }
            let _ = conn.close().await;
        }
    }
}
