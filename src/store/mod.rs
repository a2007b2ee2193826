//! Persistence: sea-orm entities and the queries the services need. No business rules here.
pub mod billing;
pub mod entity;
pub mod escrow;
pub mod key_ids;
pub mod key_issuances;
pub mod merchants;
pub mod notifications;
pub mod payments;
pub mod pg_url;
mod sql_text;
pub mod sqlite;
pub mod startup_lock;
pub mod vbank_checks;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, ExecResult, QueryResult, QuerySelect, Select, SqlErr, SqlxPostgresConnector,
    SqlxSqliteConnector, Statement, TransactionTrait,
};

use sqlite::reader::{SqliteReader, SqliteSnapshot};
use sqlite::writer::{SqliteTransaction, SqliteWriter};

/// Database handles.
///
/// On SQLite all writes go through ONE connection: SQLite allows one writer at a time, and queuing
/// writers (instead of letting them fail with `SQLITE_BUSY` when a read transaction upgrades) is
/// both simpler and faster. Reads use separate connections, which WAL mode lets run beside the
/// writer. For a database file both are `rusqlite` connections without a thread hop per statement
/// ([`sqlite`]); an in-memory database, which only sqlx's connections can share, uses sqlx pools.
/// On PostgreSQL read and write are the same sqlx pool.
#[derive(Clone, Debug)]
pub struct Db {
    pub read: DatabaseConnection,
    pub write: Writer,
    /// What the migrations run on (sea-orm-migration needs a sqlx connection).
    schema: DatabaseConnection,
    /// The read connections behind `read` on a SQLite file, for [`Db::read_snapshot`].
    reader: Option<SqliteReader>,
}

/// Why an operator command does not run on a database ([`Db::migrate_if_new`]).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error(
        "the database lacks {count} migration(s) of this version of openport ({names}); operator \
         commands never change the schema of a database in use: apply them with `openport migrate` \
         (or by starting `openport serve`) once older instances are stopped (docs/operations.md \
         \"Upgrades\"), or run the command with the version the database was migrated by"
    )]
    Pending { count: usize, names: String },
    /// The database holds migrations this binary does not know: a newer openport migrated it (a
    /// rolling deploy half done, or a rollback without restoring the backup). sea-orm's own words
    /// ("migration file … is missing") read as a broken installation.
    #[error(
        "this database was migrated by a newer version of openport (migrations this version does \
         not know: {names}); run that version (or a later one), or restore the backup taken \
         before the upgrade to run this one (docs/operations.md \"Upgrades\")"
    )]
    Newer { names: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported database URL (use sqlite://… or postgres://…)")]
    UnsupportedUrl,
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("database: {0}")]
    Sqlx(#[from] sea_orm::sqlx::Error),
    #[error("database file: {0}")]
    File(std::io::Error),
    /// A `sqlite://` URL without `mode=rwc` opens an existing file only; SQLite's own answer is
    /// "unable to open database file" (code 14), which names neither the cause nor the fix.
    #[error(
        "database file {0} does not exist; add ?mode=rwc to DATABASE_URL to create it \
         (e.g. sqlite:///var/lib/openport/pay.db?mode=rwc)"
    )]
    MissingSqliteFile(String),
    /// PostgreSQL refused or dropped every connection for [`FIRST_CONNECTION_WAIT`]: named with
    /// its host and port (never the URL, which may hold a password) and the last error, where the
    /// pool alone said only "pool timed out while waiting for an open connection".
    #[error(
        "database: PostgreSQL at {host}:{port} accepted no connection within {secs} s: {source}"
    )]
    Unreachable {
        host: String,
        port: u16,
        secs: u64,
        source: sea_orm::sqlx::Error,
    },
    /// A PostgreSQL URL names a query key sqlx would ignore, logging its value ([`pg_url`]).
    #[error(transparent)]
    UnreadKey(#[from] pg_url::UnreadKey),
}

/// 1 when a SQLite database has sea-orm's migrations table, else 0 (asked of the catalogue: the
/// status read of sea-orm creates the table it reads).
const SQLITE_HAS_MIGRATIONS: &str = "SELECT CAST(EXISTS (SELECT 1 FROM sqlite_master \
     WHERE type = 'table' AND name = 'seaql_migrations') AS INTEGER) AS present";

/// Whether the database at `url` holds openport's schema (a migration applied), looked at without
/// making anything: a SQLite file that does not exist is not created (nor opened). For operator
/// commands, which work on the serving instance's database and must not answer "nothing" from a
/// new empty one (`app::operator_gateway`).
pub async fn holds_schema(url: &str) -> Result<bool, SchemaError> {
    use migration::MigratorTrait;
    if url.starts_with("sqlite:") && !(url.contains(":memory:") || url.contains("mode=memory")) {
        let opts: SqliteConnectOptions = url
            .parse()
            .map_err(|e: sea_orm::sqlx::Error| DbErr::Custom(e.to_string()))?;
        if !opts.get_filename().exists() {
            return Ok(false);
        }
        // Read-only, before the pool (which puts a file in WAL mode and opens its writer): an
        // existing file that is not openport's (empty, or another program's) is left as it was.
        use sea_orm::sqlx::{Connection, SqliteConnection};
        let mut conn = SqliteConnection::connect_with(&opts.read_only(true))
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        let present: i32 = sea_orm::sqlx::query_scalar(SQLITE_HAS_MIGRATIONS)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        let _ = conn.close().await;
        if present == 0 {
            return Ok(false);
        }
    }
    let db = Db::connect_with_pool(url, 1)
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    // Asked of the catalogue first: sea-orm's own status read creates its table.
    let backend = db.schema.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT CAST(to_regclass('seaql_migrations') IS NOT NULL AS INTEGER) AS present"
        }
        _ => SQLITE_HAS_MIGRATIONS,
    };
    let present = db
        .schema
        .query_one(Statement::from_string(backend, sql))
        .await?
        .map(|row| row.try_get::<i32>("", "present"))
        .transpose()?
        .unwrap_or(0);
    if present == 0 {
        return Ok(false);
    }
    refuse_newer_migrations(&db.schema).await?;
    let statuses = migration::Migrator::get_migration_with_status(&db.schema).await?;
    Ok(statuses
        .iter()
        .any(|m| m.status() != migration::MigrationStatus::Pending))
}

/// How long a start waits for PostgreSQL to accept a first connection (a server restarting, a
/// container started beside it) before it gives up naming the cause.
pub const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(30);

/// How often the wait for a first connection says so.
const FIRST_CONNECTION_WARN_EVERY: Duration = Duration::from_secs(5);

/// Waits up to `wait` for PostgreSQL at `options` to accept one connection, trying again every half
/// second while it refuses or drops them (I/O errors), with a WARN naming its host, port and the
/// error every [`FIRST_CONNECTION_WARN_EVERY`]. Any other error (no such database, a refused
/// password) is answered at once, as the pool answers it.
async fn first_connection(
    options: &sea_orm::sqlx::postgres::PgConnectOptions,
    wait: Duration,
) -> Result<(), ConnectError> {
    use sea_orm::sqlx::{ConnectOptions, Connection};
    let (host, port) = (options.get_host().to_string(), options.get_port());
    let deadline = tokio::time::Instant::now() + wait;
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let error = match options.connect().await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Err(e @ sea_orm::sqlx::Error::Io(_)) => e,
            Err(e) => return Err(e.into()),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ConnectError::Unreachable {
                host,
                port,
                secs: wait.as_secs(),
                source: error,
            });
        }
        if warned.is_none_or(|at| now.duration_since(at) >= FIRST_CONNECTION_WARN_EVERY) {
            tracing::warn!(%host, port, "PostgreSQL accepts no connection yet; trying again for up to {} s: {error}", wait.as_secs());
            warned = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(500).min(deadline - now)).await;
    }
}

/// PostgreSQL connections one instance opens at most unless configured (`database_pool_size`).
pub const DEFAULT_PG_POOL_SIZE: u32 = 32;

impl Db {
    /// [`Db::connect_with_pool`] with [`DEFAULT_PG_POOL_SIZE`]: the operator commands.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with_pool(url, DEFAULT_PG_POOL_SIZE).await
    }

    /// Opens `url`; on PostgreSQL with at most `pg_pool_size` connections.
    pub async fn connect_with_pool(url: &str, pg_pool_size: u32) -> Result<Self, ConnectError> {
        if url.starts_with("sqlite:") {
            let opts: SqliteConnectOptions = url.parse()?;
            // Durable commits (design.md §2): WAL with synchronous=FULL fsyncs every commit.
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let sqlx_pool = |max| {
                SqlitePoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(30))
            };
            if url.contains(":memory:") || url.contains("mode=memory") {
                let write = SqlxSqliteConnector::from_sqlx_sqlite_pool(
                    sqlx_pool(1).connect_with(opts.clone()).await?,
                );
                let read = SqlxSqliteConnector::from_sqlx_sqlite_pool(
                    sqlx_pool(8).connect_with(opts).await?,
                );
                return Ok(Self {
                    read,
                    write: Writer::Sqlx(write.clone()),
                    schema: write,
                    reader: None,
                });
            }
            if url.contains("mode=rwc") {
                create_private(opts.get_filename())?;
            } else if !opts.get_filename().exists() {
                return Err(ConnectError::MissingSqliteFile(
                    opts.get_filename().display().to_string(),
                ));
            }
            // Creates the file (mode=rwc) and puts it in WAL mode before rusqlite opens it; then
            // only the migrations use it, and it closes when idle.
            let schema = SqlxSqliteConnector::from_sqlx_sqlite_pool(
                sqlx_pool(1)
                    .min_connections(0)
                    .idle_timeout(Duration::from_secs(5))
                    .connect_with(opts.clone())
                    .await?,
            );
            let path = opts.get_filename();
            let reader = SqliteReader::open(path)?;
            Ok(Self {
                read: Database::connect_proxy(
                    DbBackend::Sqlite,
                    Arc::new(Box::new(reader.clone())),
                )
                .await?,
                write: Writer::Sqlite(Arc::new(SqliteWriter::open(path)?)),
                schema,
                reader: Some(reader),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // No ping before each checkout: that is one more round trip to PostgreSQL per statement
            // or transaction (a third of a payment's round trips), and it cannot rule out a
            // connection breaking right after it anyway. A broken connection fails its statement
            // and is dropped from the pool; the payment flows are safe at every such failure
            // (design.md §2: attempt first, unknown outcomes resolved).
            // Parsed once, refusing a query key sqlx would log with its value (pg_url.rs).
            let options = pg_url::options(url)?;
            first_connection(&options, FIRST_CONNECTION_WAIT).await?;
            let pool = PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(pg_pool_size)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await?;
            let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
            Ok(Self {
                read: conn.clone(),
                write: Writer::Sqlx(conn.clone()),
                schema: conn,
                reader: None,
            })
        } else {
            Err(ConnectError::UnsupportedUrl)
        }
    }

    /// Reads that agree with each other: every statement run on the snapshot sees the database
    /// as one moment left it, whatever commits meanwhile (a payment and its cancel history, a
    /// page and its count). It costs a transaction, so reads that are one statement do without.
    /// On a SQLite file, a deferred read transaction on one reader connection (no I/O, no lock on
    /// the writer); on PostgreSQL a `REPEATABLE READ, READ ONLY` transaction.
    pub async fn read_snapshot(&self) -> Result<ReadSnapshot, DbErr> {
        if let Some(reader) = &self.reader {
            return Ok(ReadSnapshot::Sqlite(reader.snapshot()?));
        }
        let txn = self.read.begin().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            // PostgreSQL's default, READ COMMITTED, takes a new snapshot for every statement.
            txn.execute_unprepared("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
        }
        Ok(ReadSnapshot::Sqlx(txn))
    }

    /// Applies the pending migrations, each one whole or not at all. sea-orm-migration runs them in
    /// one transaction on PostgreSQL but on SQLite lets every statement commit on its own and
    /// writes the version row after the migration: one stopped half-way (a start timeout, a
    /// deploy, a power cut during an index build) left a column or table that its next run then
    /// failed to create again, and no start could migrate that database without hand surgery. On
    /// SQLite each pending migration now runs in its own transaction with its version row (SQLite's
    /// DDL is transactional, and no migration relies on a PRAGMA, which would be a no-op inside
    /// one), so a later start finds it either done or not begun. Each of those transactions takes
    /// the write lock before anything else ([`TAKE_WRITE_LOCK`]), so a migration waits out another
    /// process's write (a running instance, an operator command) instead of failing the start.
    ///
    /// On PostgreSQL the transaction waits at most [`MIGRATION_LOCK_TIMEOUT`] for each table lock
    /// (unless the session already has a `lock_timeout`, from the role or the URL): a DDL queued
    /// behind another session (an older instance left running, a session idle in a transaction)
    /// fails the start naming the wait, instead of hanging it and every start queued behind its
    /// startup lock (store/startup_lock.rs). Its backend also checks every
    /// [`MIGRATION_CLIENT_CHECK_INTERVAL`] that openport is still connected
    /// ([`check_for_a_gone_client`]): an openport killed mid-migration (a deploy's timeout during
    /// an index build) left the statement running, and its locks held, until the backend next
    /// wrote to the dead connection, and the next start waited behind them.
    ///
    /// A database a newer openport migrated is refused before anything is applied
    /// ([`SchemaError::Newer`]).
    ///
    /// Answers how many migrations it applied, so `openport migrate` can say whether it upgraded
    /// anything (an operator checking an upgrade reads "0" as "this database was already there").
    pub async fn migrate(&self) -> Result<usize, SchemaError> {
        use migration::MigratorTrait;
        if self.schema.get_database_backend() != DbBackend::Sqlite {
            // sea-orm-migration's own transaction becomes a savepoint in this one.
            let txn = self.schema.begin().await?;
            txn.execute_unprepared(&set_migration_lock_timeout())
                .await?;
            check_for_a_gone_client(&txn).await?;
            refuse_newer_migrations(&txn).await?;
            let pending = migration::Migrator::get_pending_migrations(&txn)
                .await?
                .len();
            migration::Migrator::up(&txn, None)
                .await
                .map_err(lock_wait_named)?;
            txn.commit().await?;
            return Ok(pending);
        }
        // Looked at outside a transaction, so a start with nothing to apply takes no write lock.
        // It also creates the version table the lock statement names on a new database (a write
        // of its own, which waits for the lock as any first write does).
        refuse_newer_migrations(&self.schema).await?;
        let mut applied = 0;
        while !migration::Migrator::get_pending_migrations(&self.schema)
            .await?
            .is_empty()
        {
            let txn = self.schema.begin().await?;
            txn.execute_unprepared(TAKE_WRITE_LOCK).await?;
            migration::Migrator::up(&txn, Some(1)).await?;
            txn.commit().await?;
            applied += 1;
        }
        Ok(applied)
    }

    /// The migrations an operator command may apply: all of them to a database nothing was
    /// migrated into yet (a first `merchant create` before any start), none to a database in use.
    /// Applying them there is an upgrade, with its order to keep (older instances stopped first:
    /// docs/operations.md "Upgrades"), and some of them lock tables or log every merchant out; a
    /// newer binary run only to list attempts must not do that at a moment nobody chose. A
    /// database in use that lacks some of this binary's migrations is refused, naming them.
    pub async fn migrate_if_new(&self) -> Result<(), SchemaError> {
        use migration::MigratorTrait;
        refuse_newer_migrations(&self.schema).await?;
        let statuses = migration::Migrator::get_migration_with_status(&self.schema).await?;
        if statuses
            .iter()
            .all(|m| m.status() == migration::MigrationStatus::Pending)
        {
            return self.migrate().await.map(drop);
        }
        let pending: Vec<&str> = statuses
            .iter()
            .filter(|m| m.status() == migration::MigrationStatus::Pending)
            .map(|m| m.name())
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(SchemaError::Pending {
                count: pending.len(),
                names: pending.join(", "),
            })
        }
    }

    /// The applied migrations this binary does not know, oldest first: empty unless a newer
    /// openport migrated the database after this one started (service/schema_check.rs). One
    /// small read of the version table on the read side, never sea-orm-migration's status query,
    /// which first creates the table it reads (a DDL statement, every time it is asked).
    pub async fn unknown_migrations(&self) -> Result<Vec<String>, DbErr> {
        let backend = self.read.get_database_backend();
        let rows = self
            .read
            .query_all(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations ORDER BY version",
            ))
            .await?;
        let versions = rows
            .iter()
            .map(|row| row.try_get::<String>("", "version"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(unknown_of(versions))
    }

    /// The database server's clock (Unix milliseconds), which every instance sharing it can be
    /// compared with; None on SQLite, whose file only one host uses (service/clock.rs).
    pub async fn server_time_ms(&self) -> Result<Option<i64>, DbErr> {
        if self.read.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let row = self
            .read
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT) AS ms",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("the database did not tell its time".into()))?;
        Ok(Some(row.try_get::<i64>("", "ms")?))
    }

    /// Runs `SELECT 1` on the read side and, at once, commits a write of the one row of
    /// `health_probe` on the writer (`GET /health`, at `now`): a database that answers but cannot
    /// commit a write (a full disk, a read-only file or session) fails here as every payment would.
    /// On a SQLite file these are different connections, and the write waits for the writer (and
    /// takes the file's write lock, as every write does): a writer held by a transaction that
    /// does not end, or by another process, does not answer. On PostgreSQL both sides are one pool,
    /// so each statement needs a connection from it.
    pub async fn answers(&self, now: i64) -> Result<(), DbErr> {
        async fn select_one(db: &impl ConnectionTrait) -> Result<(), DbErr> {
            let one = Statement::from_string(db.get_database_backend(), "SELECT 1 AS one");
            db.query_one(one).await.map(|_| ())
        }
        async fn write_probe(db: &impl ConnectionTrait, now: i64) -> Result<(), DbErr> {
            let update = sea_orm::sea_query::Query::update()
                .table(sea_orm::sea_query::Alias::new("health_probe"))
                .value(sea_orm::sea_query::Alias::new("checked_at"), now)
                .and_where(Expr::col(sea_orm::sea_query::Alias::new("id")).eq(1))
                .to_owned();
            let done = db.execute(db.get_database_backend().build(&update)).await?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(DbErr::Custom("the health_probe row is missing".into()))
            }
        }
        futures::try_join!(select_one(&self.read), write_probe(&self.write, now))?;
        Ok(())
    }
}

/// Of the applied migrations `versions`, those this binary does not know: a newer openport's.
fn unknown_of(versions: impl IntoIterator<Item = String>) -> Vec<String> {
    use migration::MigratorTrait;
    let known: std::collections::HashSet<String> = migration::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    versions
        .into_iter()
        .filter(|v| !known.contains(v))
        .collect()
}

/// Refuses a database holding applied migrations this binary does not know (an older openport on
/// a database a newer one migrated), naming them. Reading the version table creates it on a new
/// database, as sea-orm-migration's own status query does.
async fn refuse_newer_migrations(db: &impl ConnectionTrait) -> Result<(), SchemaError> {
    use migration::MigratorTrait;
    // The version table is the first thing a start reads: a lock another session holds on it
    // is named as the migrations' own waits are.
    let unknown = unknown_of(
        migration::Migrator::get_migration_models(db)
            .await
            .map_err(lock_wait_named)?
            .into_iter()
            .map(|m| m.version),
    );
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Newer {
            names: unknown.join(", "),
        })
    }
}

/// The first statement of each SQLite migration's transaction: it takes the write lock there, as
/// `BEGIN IMMEDIATE` would, which sea-orm cannot begin (its `begin()` is a plain, deferred
/// `BEGIN`). A deferred transaction asks for the write lock at its first write. Asked for before
/// anything was read, SQLite waits for it under the busy timeout (10 s, [`Db::connect_with_pool`]);
/// asked for later, after the migration read `seaql_migrations`, SQLite answers `database is
/// locked` at once (waiting there could deadlock two readers both wanting to write), and also when
/// another process committed since that read, so a start failed whenever another process wrote at
/// that moment. The statement changes nothing (it matches no row), but a DELETE takes the write
/// lock before it looks for rows.
const TAKE_WRITE_LOCK: &str = "DELETE FROM seaql_migrations WHERE 0";

/// How long a PostgreSQL migration waits for a table lock another session holds ([`Db::migrate`]).
pub const MIGRATION_LOCK_TIMEOUT: &str = "60s";

/// [`MIGRATION_LOCK_TIMEOUT`] for the migrations' transaction only (`is_local`), unless the
/// session has a lock timeout already: an operator who needs a longer wait sets one on the role.
fn set_migration_lock_timeout() -> String {
    format!(
        "SELECT set_config('lock_timeout', '{MIGRATION_LOCK_TIMEOUT}', true) \
         WHERE current_setting('lock_timeout') = '0'"
    )
}

/// How often a PostgreSQL backend running openport's migrations checks that openport is still
/// connected ([`Db::migrate`]).
pub const MIGRATION_CLIENT_CHECK_INTERVAL: &str = "5s";

/// Sets `client_connection_check_interval` to [`MIGRATION_CLIENT_CHECK_INTERVAL`] for the
/// migrations' transaction only (`is_local`), unless the session has one already (from the role
/// or the URL), as for the lock timeout. Without it a backend notices that its client is gone only
/// when it next writes to it: a migration whose openport was killed went on with its statement (a
/// `CREATE INDEX` over a large table, a wait for a table lock) and held its locks meanwhile.
///
/// PostgreSQL before 14 has no such setting: `current_setting(…, true)` is NULL there and nothing
/// is set. A server on a system without the kernel events the check needs (Windows) refuses any
/// value but 0; that refusal is logged and the migrations run without the check, in a savepoint of
/// their transaction so the refusal does not abort it.
async fn check_for_a_gone_client(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let set = format!(
        "SELECT set_config('client_connection_check_interval', \
         '{MIGRATION_CLIENT_CHECK_INTERVAL}', true) \
         WHERE current_setting('client_connection_check_interval', true) = '0'"
    );
    let savepoint = txn.begin().await?;
    match savepoint.execute_unprepared(&set).await {
        Ok(_) => savepoint.commit().await,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "migrations: the database refused client_connection_check_interval; a migration \
                 whose openport is killed runs on until it next writes to it"
            );
            savepoint.rollback().await
        }
    }
}

/// A migration stopped by `lock_timeout` (SQLSTATE 55P03) said only "canceling statement due to
/// lock timeout": this says what waited, that nothing was applied, and where to look.
fn lock_wait_named(e: DbErr) -> DbErr {
    let code = match &e {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(s))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(s)) => s
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    };
    if code.as_deref() != Some("55P03") {
        return e;
    }
    DbErr::Custom(format!(
        "a migration waited longer than its lock_timeout ({MIGRATION_LOCK_TIMEOUT} unless the \
         role or the URL sets one) for a table lock another session holds, so none was applied: \
         stop every instance of the older version and end the sessions holding locks on \
         openport's tables (pg_locks, pg_stat_activity), then start again (docs/operations.md \
         \"Upgrades\"): {e}"
    ))
}

/// The write connection: sqlx's (PostgreSQL, in-memory SQLite) or the SQLite writer.
#[derive(Clone, Debug)]
pub enum Writer {
    Sqlx(DatabaseConnection),
    Sqlite(Arc<SqliteWriter>),
}

/// A transaction on the [`Writer`]. Dropped without `commit`, it rolls back.
#[derive(Debug)]
pub enum WriteTransaction {
    Sqlx(DatabaseTransaction),
    Sqlite(SqliteTransaction),
}

impl Writer {
    pub async fn begin(&self) -> Result<WriteTransaction, DbErr> {
        Ok(match self {
            Writer::Sqlx(db) => WriteTransaction::Sqlx(db.begin().await?),
            Writer::Sqlite(w) => WriteTransaction::Sqlite(w.begin().await?),
        })
    }

    /// Runs `work`, a transaction that does nothing but run statements on the connection it is
    /// given, and commits or rolls it back as it decides. On the SQLite writer it is handed over
    /// whole and committed in a group (`sqlite::writer`, "Transactions handed over whole"), so
    /// `work` must not await anything but its statements; elsewhere it is an ordinary transaction.
    /// An error rolls it back.
    pub async fn transact<T, F>(&self, work: F) -> Result<T, DbErr>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Within<'c>) -> BoxFuture<'c, Result<Decided<T>, DbErr>> + Send + 'static,
    {
        match self {
            Writer::Sqlite(w) => w.transact(work).await,
            Writer::Sqlx(db) => {
                let txn = db.begin().await?;
                match work(Within(&txn)).await? {
                    Decided::Commit(value) => txn.commit().await.map(|()| value),
                    Decided::Rollback(value) => txn.rollback().await.map(|()| value),
                }
            }
        }
    }

    fn connection(&self) -> &dyn ConnectionTrait {
        match self {
            Writer::Sqlx(db) => db,
            Writer::Sqlite(w) => w.as_ref(),
        }
    }
}

/// A read snapshot ([`Db::read_snapshot`]); it ends when dropped, or with [`ReadSnapshot::end`].
#[derive(Debug)]
pub enum ReadSnapshot {
    Sqlx(DatabaseTransaction),
    Sqlite(SqliteSnapshot),
}

impl ReadSnapshot {
    /// Ends the read transaction now (on sqlx, dropping it would leave its rollback to the
    /// connection's next use).
    pub async fn end(self) -> Result<(), DbErr> {
        match self {
            ReadSnapshot::Sqlx(t) => t.commit().await,
            ReadSnapshot::Sqlite(_) => Ok(()),
        }
    }

    fn connection(&self) -> &dyn ConnectionTrait {
        match self {
            ReadSnapshot::Sqlx(t) => t,
            ReadSnapshot::Sqlite(s) => s,
        }
    }
}

/// What a transaction run by [`Writer::transact`] decided, with its answer.
#[derive(Debug)]
pub enum Decided<T> {
    /// Keep its changes; answered once they are durable.
    Commit(T),
    /// Undo them.
    Rollback(T),
}

/// The connection [`Writer::transact`] gives its transaction.
pub struct Within<'c>(&'c dyn ConnectionTrait);

impl Within<'_> {
    fn connection(&self) -> &dyn ConnectionTrait {
        self.0
    }
}

impl WriteTransaction {
    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            WriteTransaction::Sqlx(t) => t.commit().await,
            WriteTransaction::Sqlite(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        match self {
            WriteTransaction::Sqlx(t) => t.rollback().await,
            WriteTransaction::Sqlite(t) => t.rollback().await,
        }
    }

    fn connection(&self) -> &dyn ConnectionTrait {
        match self {
            WriteTransaction::Sqlx(t) => t,
            WriteTransaction::Sqlite(t) => t,
        }
    }
}

/// Both write handles are sea-orm connections: the store's functions take `&impl ConnectionTrait`.
macro_rules! delegate_connection {
    ($t:ty) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for $t {
            fn get_database_backend(&self) -> DbBackend {
                self.connection().get_database_backend()
            }
            async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                self.connection().execute(stmt).await
            }
            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                self.connection().execute_unprepared(sql).await
            }
            async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                self.connection().query_one(stmt).await
            }
            async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                self.connection().query_all(stmt).await
            }
        }
    };
}
delegate_connection!(Writer);
delegate_connection!(WriteTransaction);
delegate_connection!(Within<'_>);
delegate_connection!(ReadSnapshot);

/// `SELECT *` for a query of whole rows. sea-query otherwise writes out and quotes every column of
/// the entity (about 60 for a payment) on every call, which profiled at ≈ 20 % of a lookup's CPU;
/// rows are read back by column name either way.
pub fn every_column<E: EntityTrait>(query: Select<E>) -> Select<E> {
    query.select_only().expr(Expr::cust("*"))
}

/// `id` is one of the ids the sub-select `ids` picks: the condition of a batch claim's UPDATE,
/// whose sub-select locks the `LIMIT` oldest due rows (`store::billing::claim_due_schedules`,
/// `store::webhooks::claim_due_deliveries`).
///
/// Not `id IN (SELECT …)` on PostgreSQL: it may plan that as a nested-loop semi-join that runs the
/// sub-select again for every candidate row, and each run skips the rows this statement has
/// already updated and locks `limit` more, so the batch grows past the LIMIT (seen: all 10 due
/// rows claimed with LIMIT 4). `ANY(ARRAY(…))` is an InitPlan, evaluated once. SQLite runs an
/// uncorrelated IN sub-select once, and has no row locks to skip.
pub(crate) fn one_of_the_ids(
    backend: DbBackend,
    id: impl sea_orm::ColumnTrait,
    ids: sea_orm::sea_query::SelectStatement,
) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::SimpleExpr;
    match backend {
        DbBackend::Postgres => Expr::cust_with_exprs(
            "$1 = ANY(ARRAY $2)",
            [
                Expr::col(id.as_column_ref()).into(),
                SimpleExpr::SubQuery(None, Box::new(ids.into_sub_query_statement())),
            ],
        ),
        _ => id.in_subquery(ids),
    }
}

/// Writes `new` into `column` of the rows `row` selects, only where the column still holds `old`
/// (a compare-and-set: a value changed since it was read keeps its change); how many rows took it.
pub async fn replace_value<E: EntityTrait>(
    db: &impl ConnectionTrait,
    column: E::Column,
    row: sea_orm::Condition,
    old: &str,
    new: String,
) -> Result<u64, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    Ok(E::update_many()
        .col_expr(column, Expr::value(new))
        .filter(row)
        .filter(column.eq(old))
        .exec(db)
        .await?
        .rows_affected)
}

/// The rows a 1-based `page` of `limit` skips. A page far past the end (the API takes any `page`
/// a client sends) skips at most `i64::MAX` rows, the most either database takes: an empty page,
/// not an overflow.
pub fn page_offset(page: u64, limit: u64) -> u64 {
    page.saturating_sub(1)
        .saturating_mul(limit)
        .min(i64::MAX as u64)
}

/// True when `err` is a unique-constraint violation (the double-charge guard, duplicate prepares).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
        || matches!(err, DbErr::Exec(sea_orm::RuntimeErr::Internal(m)) if m.starts_with(sqlite::UNIQUE_MARKER))
}

/// Whether `err` is the database refusing a payment a KCP trade another payment holds: the claim
/// of migration 000039's triggers (`payment_trades`), whose violation names that table on both
/// databases (PostgreSQL: its primary key `payment_trades_pkey`; SQLite: `payment_trades.tno`).
pub fn is_trade_clash(err: &DbErr) -> bool {
    is_unique_violation(err) && err.to_string().contains("payment_trades")
}

/// A database URL with its password hidden, for logs and messages: the userinfo's
/// (`postgres://u:pw@h/db`), and the value of every query key that names a password whatever its
/// case (`password=`, `sslpassword=`, `PASSWORD=`…) and, on PostgreSQL, of every key sqlx does not
/// read: such a URL is refused ([`pg_url`]) only after the start has logged it. A URL that does not
/// parse is not shown at all.
pub fn redact_url(url: &str) -> String {
    const MASK: &str = "***";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(a URL that does not parse; not shown)".into();
    };
    let mut masked = false;
    if parsed.password().is_some() {
        masked = parsed.set_password(Some(MASK)).is_ok();
    }
    let postgres = matches!(parsed.scheme(), "postgres" | "postgresql");
    let secret =
        |k: &str| k.to_ascii_lowercase().contains("pass") || (postgres && !pg_url::sqlx_reads(k));
    if parsed.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    MASK.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        masked = true;
    }
    if masked {
        parsed.to_string()
    } else {
        url.to_string()
    }
}

/// Creates a new database file readable by its owner only (0600): it holds buyers' details and
/// sealed secrets, and SQLite gives its `-wal` and `-shm` files the database file's permissions.
/// Under the common umask 022 SQLite alone would make all three readable by every local user. An
/// existing file is left as it is.
fn create_private(path: &std::path::Path) -> Result<(), ConnectError> {
    match crate::private_file::create(path, false) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ConnectError::File(e)),
    }
}

/// The file of a `sqlite:` database URL as [`Db::connect`] opens it; `None` for an in-memory
/// database or any other URL.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let opts: SqliteConnectOptions = url.parse().ok()?;
    Some(opts.get_filename().to_path_buf())
}

/// What SQLite's planner does with `stmt` on `db`'s writer: the `detail` of each line of its
/// query plan (the store's tests check which index a statement reads).
#[cfg(test)]
pub(crate) async fn sqlite_plan(db: &Db, stmt: sea_orm::Statement) -> String {
    let explain = sea_orm::Statement {
        sql: format!("EXPLAIN QUERY PLAN {}", stmt.sql),
        ..stmt
    };
    let rows = db.write.query_all(explain).await.unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "detail").unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use futures::future::FutureExt;
    use sea_orm::{ConnectionTrait, DbErr, Statement};

    use super::{Db, Decided};

    /// A start against a PostgreSQL that refuses connections gives up after its wait naming the
    /// host, the port and the refusal, never the password (the pool alone said "pool timed out").
    #[tokio::test]
    async fn a_postgresql_that_refuses_connections_is_named_with_the_refusal_and_no_password() {
        let url = "postgres://openport:s3cret-pw@127.0.0.1:1/shop";
        let started = std::time::Instant::now();
        let options = super::pg_url::options(url).unwrap();

        let refused = super::first_connection(&options, std::time::Duration::from_millis(1200))
            .await
            .unwrap_err();

        let text = refused.to_string();
        assert!(
            matches!(refused, super::ConnectError::Unreachable { port: 1, .. }),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(1200),
            "tried again until the wait ran out"
        );
    }

    /// sqlx-postgres logged a query key it does not read with its value, at WARN, which the default
    /// filter let through: libpq's `sslpassword=` or a `Password=` was printed in clear by every
    /// start and operator command (`key=sslpassword value=SECRETSSL`), then ignored. Refused at
    /// once naming the key; no line logged holds the value.
    #[tokio::test]
    async fn a_password_sqlx_ignores_is_never_logged() {
        for (query, key) in [
            ("sslpassword=s3cret", "sslpassword"),
            ("Password=s3cret", "Password"),
        ] {
            let url = format!("postgres://u@127.0.0.1:1/db?{query}");
            let (subscriber, buffer) =
                crate::logging::capture::subscriber(crate::logging::filter(None));
            let refused = {
                let _logging = tracing::subscriber::set_default(subscriber);
                // Without the check, the first connection is tried for 30 s.
                tokio::time::timeout(std::time::Duration::from_secs(10), Db::connect(&url))
                    .await
                    .map(|connected| connected.err().map(|e| e.to_string()))
            };
            let log = buffer.text();
            assert!(!log.contains("s3cret"), "{query}: {log}");
            let text = refused
                .unwrap_or_else(|_| panic!("{query}: not refused at once"))
                .unwrap_or_else(|| panic!("{query}: connected"));
            assert!(text.contains(&format!("{key:?}")), "{query}: {text}");
            assert!(!text.contains("s3cret"), "{query}: {text}");
        }
    }

    #[tokio::test]
    async fn transact_keeps_or_undoes_a_transaction_as_it_decides_on_sqlx_connections_too() {
        // An in-memory database is written through sqlx, not the SQLite writer.
        let db = Db::connect("sqlite::memory:").await.unwrap();
        db.write
            .execute_unprepared("CREATE TABLE t (x INTEGER UNIQUE)")
            .await
            .unwrap();
        for (x, keep) in [(1, true), (2, false)] {
            let answer = db
                .write
                .transact(move |txn| {
                    async move {
                        txn.execute_unprepared(&format!("INSERT INTO t (x) VALUES ({x})"))
                            .await?;
                        Ok(if keep {
                            Decided::Commit(x)
                        } else {
                            Decided::Rollback(x)
                        })
                    }
                    .boxed()
                })
                .await;
            assert_eq!(answer.unwrap(), x);
        }
        let failed: Result<(), DbErr> = db
            .write
            .transact(|txn| {
                async move {
                    txn.execute_unprepared("INSERT INTO t (x) VALUES (3)")
                        .await?;
                    txn.execute_unprepared("INSERT INTO t (x) VALUES (3)")
                        .await?;
                    Ok(Decided::Commit(()))
                }
                .boxed()
            })
            .await;
        assert!(super::is_unique_violation(&failed.unwrap_err()));
        let rows = db
            .write
            .query_all(Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT x FROM t ORDER BY x",
            ))
            .await
            .unwrap();
        let xs: Vec<i64> = rows.iter().map(|r| r.try_get("", "x").unwrap()).collect();
        assert_eq!(xs, vec![1]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_database_and_its_wal_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("private.db");
        let db = super::Db::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        for name in ["private.db", "private.db-wal", "private.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name}: {mode:o}");
        }
    }

    /// Another process writing to the file (a running instance, an operator command) holds
    /// SQLite's write lock for a moment while a start migrates. The migration waits for it under
    /// the busy timeout and then applies everything. A migration whose transaction began as a
    /// reader (a plain `BEGIN`: its first statements read `seaql_migrations`) asked for the write
    /// lock only at its first DDL, and SQLite answers that upgrade `database is locked` at once,
    /// without waiting, so the start failed.
    #[tokio::test]
    async fn a_migration_waits_for_a_write_lock_another_connection_holds_instead_of_failing() {
        use migration::MigratorTrait;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shared.db");
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        // A database with its version table and migrations pending: an older version's, or a
        // new one after `migrate_if_new` looked at it.
        migration::Migrator::up(&db.schema, Some(1)).await.unwrap();
        let other = rusqlite::Connection::open(&file).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            other.execute_batch("COMMIT").unwrap();
        });

        let migrated = db.migrate().await;
        holder.join().unwrap();
        migrated.expect("the migrations wait for the other writer, then run");
        let pending = migration::Migrator::get_pending_migrations(&db.schema)
            .await
            .unwrap();
        assert!(pending.is_empty(), "{} still pending", pending.len());
    }

    /// A start with nothing to migrate takes no write lock: it does not wait (nor, past the busy
    /// timeout, fail) because another process is writing.
    #[tokio::test]
    async fn a_start_with_nothing_to_migrate_does_not_wait_for_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shared.db");
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let other = rusqlite::Connection::open(&file).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        tokio::time::timeout(std::time::Duration::from_secs(2), db.migrate())
            .await
            .expect("no wait for the write lock")
            .unwrap();
        other.execute_batch("COMMIT").unwrap();
    }

    #[tokio::test]
    async fn a_sqlite_file_database_commits_durably_on_the_writer_and_the_readers() {
        // design.md §2: WAL with synchronous=FULL, so an answered commit survives a power cut.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("durable.db");
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        async fn pragma(conn: &impl ConnectionTrait, name: &str) -> sea_orm::QueryResult {
            let sql = format!("PRAGMA {name}");
            let stmt = Statement::from_string(sea_orm::DbBackend::Sqlite, sql);
            conn.query_one(stmt).await.unwrap().unwrap()
        }
        for (side, sync, mode) in [
            (
                "writer",
                pragma(&db.write, "synchronous").await,
                pragma(&db.write, "journal_mode").await,
            ),
            (
                "reader",
                pragma(&db.read, "synchronous").await,
                pragma(&db.read, "journal_mode").await,
            ),
        ] {
            // 2 is FULL (0 OFF, 1 NORMAL, 3 EXTRA).
            assert_eq!(sync.try_get_by_index::<i64>(0).unwrap(), 2, "{side}");
            assert_eq!(mode.try_get_by_index::<String>(0).unwrap(), "wal", "{side}");
        }
    }

    #[test]
    fn a_sqlite_url_names_its_file_and_an_in_memory_or_postgres_one_none() {
        for (url, file) in [
            ("sqlite://openport.db?mode=rwc", Some("openport.db")),
            ("sqlite:openport.db", Some("openport.db")),
            (
                "sqlite:///var/lib/openport/pay.db?mode=rwc",
                Some("/var/lib/openport/pay.db"),
            ),
            ("sqlite::memory:", None),
            ("sqlite://shared?mode=memory&cache=shared", None),
            ("postgres://u:p@h:5432/openport", None),
        ] {
            assert_eq!(
                super::sqlite_file(url).as_deref(),
                file.map(Path::new),
                "{url}"
            );
        }
    }

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

    #[test]
    fn a_database_password_in_the_query_string_or_the_userinfo_is_masked() {
        for (url, shown) in [
            (
                "postgres://u@h:5432/db?password=secret",
                "postgres://u@h:5432/db?password=***",
            ),
            (
                "postgres://u@h/db?sslmode=disable&PASSWORD=secret&application_name=op",
                "postgres://u@h/db?sslmode=disable&PASSWORD=***&application_name=op",
            ),
            (
                "postgres://u:secret@h/db?sslpassword=secret",
                "postgres://u:***@h/db?sslpassword=***",
            ),
            ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?sslmode=disable",
                "postgres://h/db?sslmode=disable",
            ),
            (
                "postgres://h/db?sslmode=disable&connect_timeout=10&pwd=secret&passphrase=secret",
                "postgres://h/db?sslmode=disable&connect_timeout=***&pwd=***&passphrase=***",
            ),
            (
                "sqlite://x.db?mode=rwc&Password=secret",
                "sqlite://x.db?mode=rwc&Password=***",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
        ] {
            assert_eq!(super::redact_url(url), shown, "{url}");
        }
        assert!(!super::redact_url("not a url secret").contains("secret"));
    }
}
