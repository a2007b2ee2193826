//! Persistence: sea-orm entities and the queries the services need. No business rules here.
pub mod billing;
pub mod entity;
pub mod merchants;
pub mod payments;
pub mod webhooks;

use std::time::Duration;

use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{DatabaseConnection, DbErr, SqlErr, SqlxPostgresConnector, SqlxSqliteConnector};

/// Database handles. On SQLite all writes go through ONE connection: SQLite allows one writer at
/// a time, and queuing writers in the pool (instead of letting them fail with `SQLITE_BUSY` when a
/// read transaction upgrades) is both simpler and faster. Reads use a separate pool, which WAL
/// mode lets run beside the writer. On PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Db {
    pub read: DatabaseConnection,
    pub write: DatabaseConnection,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported database URL (use sqlite://… or postgres://…)")]
    UnsupportedUrl,
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("database: {0}")]
    Sqlx(#[from] sea_orm::sqlx::Error),
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        if url.starts_with("sqlite:") {
            let opts: SqliteConnectOptions = url.parse()?;
            // Durable commits (design.md §2): WAL with synchronous=FULL fsyncs every commit.
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(false))
                .await?;
            Ok(Self {
                read: SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
                write: SqlxSqliteConnector::from_sqlx_sqlite_pool(write),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(30))
                .connect(url)
                .await?;
            let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
            Ok(Self {
                read: conn.clone(),
                write: conn,
            })
        } else {
            Err(ConnectError::UnsupportedUrl)
        }
    }

    pub async fn migrate(&self) -> Result<(), DbErr> {
        use migration::MigratorTrait;
        migration::Migrator::up(&self.write, None).await
    }
}

/// True when `err` is a unique-constraint violation (the double-charge guard, duplicate prepares).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// A database URL with its password hidden, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_password_never_reaches_a_log_line() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            super::redact_url("sqlite://openport.db?mode=rwc"),
            "sqlite://openport.db?mode=rwc"
        );
    }
}
