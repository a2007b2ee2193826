//! One starting instance at a time per database.
//!
//! What a start does once per database (its migrations, the first merchant) is a read followed by
//! a write: "no live merchant yet, so make one". Instances started together (a deploy starting
//! several replicas) would each read "none" and each make one: several live merchants for one KCP
//! site, each with its own credentials file, and in test mode a start failing on the demo
//! merchant's taken `imp_code`. Holding this lock from before the migrations until the first
//! merchant is settled makes the second instance wait and then find what the first one made.
//!
//! On PostgreSQL the lock is a session-level advisory lock, so the database URL must reach one
//! server session for as long as the connection lives: a direct connection or a session-mode
//! pooler. A transaction-mode pooler (PgBouncer's `pool_mode = transaction`) hands each statement
//! to whichever server session is free: the lock stays with a session the pooler keeps, and the
//! unlock lands on another one (docs/operations.md "Databases").
use std::time::Duration;

use sea_orm::sqlx::{self, Connection, PgConnection};

use super::{sqlite_file, ConnectError};

/// `pg_advisory_lock`'s key for starting instances: any constant no other advisory lock uses
/// (openport takes no other). "openport" in ASCII. Public for tests that hold it to queue a start.
pub const PG_KEY: i64 = 0x6f70_656e_706f_7274;

/// How often a start waiting for the lock tries again: at most this long after it is released
/// (starting at [`FIRST_RETRY`] and doubling, as replicas started together take turns quickly).
const RETRY_EVERY: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// How often a waiting start says what it waits for. Taking turns with other starts is normal and
/// brief; a wait this long means the holder is stuck (its migration waiting on a table lock, an
/// operator command left open) and an operator needs its pid to find it.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The sessions holding [`PG_KEY`] in this database (advisory locks are per database; a bigint
/// key is stored as its high and low 32 bits), with what `pg_stat_activity` says of them.
const HOLDERS: &str = "SELECT a.pid, a.application_name, COALESCE(a.state, '') AS state, \
    COALESCE(host(a.client_addr), 'local') AS client, \
    CAST(EXTRACT(EPOCH FROM now() - a.xact_start) AS BIGINT) AS transaction_secs \
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
    WHERE l.locktype = 'advisory' AND l.granted \
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
    AND CAST(l.classid AS BIGINT) = $1 AND CAST(l.objid AS BIGINT) = $2 AND l.objsubid = 1";

/// What the lock connection calls itself to the server when the URL names nothing: what an
/// operator looking at `pg_stat_activity` (or a waiting start's WARN) sees.
const APPLICATION_NAME: &str = "openport startup lock";

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
            let mut options = super::pg_url::options(url)?;
            if options.get_application_name().is_none() {
                options = options.application_name(APPLICATION_NAME);
            }
            let conn = PgConnection::connect_with(&options).await?;
            return Ok(Self::Postgres(take_pg(conn).await?));
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
    /// An unlock PostgreSQL answers `false` to ran in a session that did not hold the lock: the URL
    /// goes through a transaction-mode pooler, and the session that does hold it outlives this
    /// connection in the pooler, so the next start waits for it or, landing on it, takes the lock
    /// beside another start. Logged as an ERROR: the deployment must change.
    pub async fn release(self) {
        if let Self::Postgres(mut conn) = self {
            let unlocked: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                .bind(PG_KEY)
                .fetch_one(&mut conn)
                .await;
            match unlocked {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    "startup lock: PostgreSQL says this session did not hold it: the database URL \
                     goes through a transaction-mode pooler, which keeps the lock in a session of \
                     its own; connect directly or through a session-mode pooler \
                     (docs/operations.md \"Databases\")"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "startup lock: unlock failed; closing its connection releases it"
                ),
            }
            let _ = conn.close().await;
        }
    }
}

/// Takes the advisory lock on `conn`, trying again until it is free rather than waiting in
/// `pg_advisory_lock`, which waits without a word: every [`WARN_EVERY`] a WARN names who holds it.
async fn take_pg(mut conn: PgConnection) -> Result<PgConnection, sqlx::Error> {
    let started = tokio::time::Instant::now();
    let mut warn_at = started + WARN_EVERY;
    let mut retry = FIRST_RETRY;
    loop {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PG_KEY)
            .fetch_one(&mut conn)
            .await?;
        if taken {
            if started.elapsed() >= WARN_EVERY {
                tracing::info!(
                    waited_secs = started.elapsed().as_secs(),
                    "startup lock: taken"
                );
            }
            return Ok(conn);
        }
        if tokio::time::Instant::now() >= warn_at {
            warn_of_holders(&mut conn, started.elapsed()).await?;
            warn_at += WARN_EVERY;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_EVERY);
    }
}

/// One WARN per session holding the lock (one at most, unless a pooler hands it around); one
/// naming nobody when it was released between the try and this look.
async fn warn_of_holders(conn: &mut PgConnection, waited: Duration) -> Result<(), sqlx::Error> {
    let waited_secs = waited.as_secs();
    let rows: Vec<(i32, String, String, String, Option<i64>)> = sqlx::query_as(HOLDERS)
        .bind(PG_KEY >> 32)
        .bind(PG_KEY & 0xffff_ffff)
        .fetch_all(conn)
        .await?;
    if rows.is_empty() {
        tracing::warn!(
            waited_secs,
            "startup lock: waiting for another start or operator command to release it"
        );
    }
    for (pid, application_name, state, client, transaction_secs) in rows {
        let transaction = match transaction_secs {
            Some(secs) => format!("open for {secs} s"),
            None => "none".to_string(),
        };
        tracing::warn!(
            pid,
            application_name = %application_name,
            state = %state,
            client = %client,
            transaction = %transaction,
            waited_secs,
            "startup lock: waiting for the session that holds it (another start's migrations or \
             first merchant, or an operator command); if it does not move, look it up in \
             pg_stat_activity by its pid"
        );
    }
    Ok(())
}
